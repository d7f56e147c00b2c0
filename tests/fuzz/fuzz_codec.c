/*
 * fuzz_codec.c: libFuzzer target for every decoder of bytes that cross a trust boundary:
 * the store's records (deal, seen, pending, meta scalars, a stage's learned state; an LMDB
 * file can be damaged or written by another version) and the config encoding read from shared
 * memory.
 *
 * The first input byte picks the decoder, the rest is its input. For each input that
 * decodes, re-encoding and decoding again must give the same bytes (the codec is canonical),
 * so a decoder can never accept something its encoder cannot represent.
 *
 * Built with -DKD_FUZZ=ON (clang) it is a libFuzzer binary:
 *   ./fuzz_codec tests/fuzz/corpus/codec
 * Every build also makes fuzz_codec_corpus (the replay main() of tests/fuzz/replay.c), run by
 * ctest over the seed corpus.
 */
#include "base/config.h"
#include "store/codec.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_codec: property violated: %s\n", what);
        abort();
    }
}

#define ROUND_TRIP(type, in, decode, encode)                                                       \
    do {                                                                                           \
        static uint8_t b1[ST_RECORD_MAX], b2[ST_RECORD_MAX];                                       \
        static type r2;                                                                            \
        size_t l1 = 0, l2 = 0;                                                                     \
        check(encode(in, b1, sizeof(b1), &l1) == 0, #encode " of a decoded record failed");        \
        check(decode(b1, l1, &r2) == 0, #decode " of an encoding failed");                         \
        check(encode(&r2, b2, sizeof(b2), &l2) == 0, #encode " failed the second time");           \
        check(l1 == l2 && memcmp(b1, b2, l1) == 0, #type " encoding is not canonical");            \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    const uint8_t *p = data + 1;
    size_t n = size - 1;
    switch (data[0] % 7) {
    case 0: {
        static struct st_deal d;
        if (st_deal_decode(p, n, &d) == 0)
            ROUND_TRIP(struct st_deal, &d, st_deal_decode, st_deal_encode);
        static struct st_record r;
        if (st_record_decode(p, n, &r) == 0)
            ROUND_TRIP(struct st_record, &r, st_record_decode, st_record_encode);
        break;
    }
    case 1: {
        static struct st_seen s;
        if (st_seen_decode(p, n, &s) == 0)
            ROUND_TRIP(struct st_seen, &s, st_seen_decode, st_seen_encode);
        break;
    }
    case 2: {
        static struct st_pending q;
        if (st_pending_decode(p, n, &q) == 0)
            ROUND_TRIP(struct st_pending, &q, st_pending_decode, st_pending_encode);
        break;
    }
    case 3: {
        static struct cfg c, c2;
        if (cfg_decode(p, n, &c) == 0) {
            char err[512];
            check(cfg_validate(&c, err, sizeof(err)) == 0, "a decoded config does not validate");
            check(c.keepa_key[0] == '\0', "a decoded config holds a key");
            char *buf = NULL;
            size_t len = 0;
            check(cfg_encode(&c, &buf, &len) == 0, "cfg_encode failed");
            check(cfg_decode(buf, len, &c2) == 0, "cfg_decode of an encoding failed");
            check(cfg_diff(&c, &c2, NULL, NULL, NULL) == 0, "config round trip changed keys");
            free(buf);
        }
        break;
    }
    case 4: {
        uint64_t v;
        uint8_t b[16];
        size_t len = 0;
        if (st_u64_decode(p, n, &v) == 0) {
            check(st_u64_encode(v, b, sizeof(b), &len) == 0, "st_u64_encode failed");
            uint64_t w = ~v;
            check(st_u64_decode(b, len, &w) == 0 && w == v, "u64 round trip");
        }
        break;
    }
    case 6: {
        /* A learned record of two fields; what decodes is within bounds and re-encodes the
         * same. */
        static double v[7], w[7];
        struct st_learned_field f[2] = {{"rate", v, 3, 1e6}, {"bins", v + 3, 4, 100}};
        struct st_learned_field g[2] = {{"rate", w, 3, 1e6}, {"bins", w + 3, 4, 100}};
        static uint8_t b1[ST_LEARNED_BYTES], b2[ST_LEARNED_BYTES];
        size_t l1 = 0, l2 = 0;
        if (st_learned_decode(p, n, f, 2) == 0) {
            for (int i = 0; i < 7; i++)
                check(v[i] >= 0 && v[i] <= (i < 3 ? 1e6 : 100), "a learned number out of bounds");
            check(st_learned_encode(f, 2, b1, sizeof(b1), &l1) == 0, "learned encode failed");
            check(st_learned_decode(b1, l1, g, 2) == 0, "learned decode of an encoding failed");
            check(st_learned_encode(g, 2, b2, sizeof(b2), &l2) == 0 && l1 == l2 &&
                      memcmp(b1, b2, l1) == 0,
                  "learned encoding is not canonical");
        }
        break;
    }
    default: {
        const uint8_t *bytes;
        size_t len;
        if (st_bytes_decode(p, n, &bytes, &len) == 0)
            check(bytes >= p && bytes + len == p + n, "bytes outside the input");
        break;
    }
    }
    return 0;
}
