/*
 * fuzz_segment.c: libFuzzer target for everything that reads a segment it did not write:
 * the layout check every attacher runs, the ring reader (a consumer trusts nothing of the
 * producer's positions and records) and the stat reader (`kdeals stat` in its three formats).
 *
 * The input is a list of patches laid over a valid, freshly formatted segment with small
 * rings (some records already in them): each patch is a 4-byte little-endian offset (taken
 * modulo the segment size), a 1-byte length and that many bytes. The segment is an exact-size
 * heap block, so a read past its end is an ASan report. The properties:
 *   - shm_layout_check accepts or refuses, nothing else;
 *   - for a segment it accepts, reading every ring ends (a bounded number of calls) and every
 *     record it returns lies inside that ring's data area;
 *   - printing stat in every format reads nothing outside the segment.
 *
 * Built with -DKD_FUZZ=ON (clang) it is a libFuzzer binary:
 *   ./fuzz_segment tests/fuzz/corpus/segment
 * Every build also makes fuzz_segment_corpus (the replay main() of tests/fuzz/replay.c), run by
 * ctest over the seed corpus.
 */
#include "cli/stat.h"
#include "shm/layout.h"
#include "shm/ring.h"
#include "shm/segment.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RING_CAP   256u
#define AREA_ALIGN 4096u

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_segment: property violated: %s\n", what);
        abort();
    }
}

static size_t align_to(size_t n, size_t a)
{
    return (n + a - 1) / a * a;
}

/* A valid published segment of SIZE bytes, as shm_segment_create formats one, with a few
 * records already in each ring (one wrapped) so the reader has something to walk. */
static struct shm_layout *format_segment(size_t *size_out)
{
    size_t size = align_to(sizeof(struct shm_layout), AREA_ALIGN);
    size_t offsets[SHM_RING_COUNT];
    for (int i = 0; i < SHM_RING_COUNT; i++) {
        offsets[i] = size;
        size = align_to(size + RING_CAP, AREA_ALIGN);
    }
    struct shm_layout *l = calloc(1, size);
    check(l != NULL, "out of memory");
    struct shm_header *h = &l->header;
    h->magic = SHM_MAGIC;
    h->fixed_size = (uint32_t)sizeof(struct shm_layout);
    h->segment_size = size;
    h->generation = 1;
    h->supervisor_pid = 1;
    h->ring_count = SHM_RING_COUNT;
    snprintf(h->instance, sizeof(h->instance), "fuzz");
    for (int i = 0; i < SHM_RING_COUNT; i++) {
        h->ring_data_offset[i] = offsets[i];
        h->ring_capacity[i] = RING_CAP;
        check(ring_format(&l->rings[i], RING_CAP, offsets[i]) == 0, "ring_format");
        struct ring p;
        check(ring_open(&p, &l->rings[i], (uint8_t *)l + offsets[i], -1) == 0, "ring_open");
        static const char rec[40] = "0123456789012345678901234567890123456789";
        for (int k = 0; k < 4 + i; k++) {
            if (ring_write(&p, rec, 20 + (size_t)k * 3) != 0)
                break;
        }
        /* Acknowledge some so that the next writes wrap with a padding record. */
        atomic_store(&l->rings[i].head, atomic_load(&l->rings[i].tail));
        for (int k = 0; k < 3; k++)
            (void)ring_write(&p, rec, 40);
    }
    atomic_store(&h->layout_version, SHM_LAYOUT_VERSION);
    *size_out = size;
    return l;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t seg_size;
    struct shm_layout *l = format_segment(&seg_size);
    uint8_t *bytes = (uint8_t *)l;
    size_t at = 0;
    while (at + 5 <= size) {
        uint32_t off = (uint32_t)data[at] | (uint32_t)data[at + 1] << 8 |
                       (uint32_t)data[at + 2] << 16 | (uint32_t)data[at + 3] << 24;
        size_t len = data[at + 4];
        at += 5;
        if (len > size - at)
            len = size - at;
        off %= (uint32_t)seg_size;
        if (len > seg_size - off)
            len = seg_size - off;
        memcpy(bytes + off, data + at, len);
        at += len;
    }

    char err[256];
    int rc = shm_layout_check(l, seg_size, err, sizeof(err));
    check(rc == 0 || rc == -EPROTO || rc == -EAGAIN, "shm_layout_check: unexpected result");
    if (rc == 0) {
        for (int i = 0; i < SHM_RING_COUNT; i++) {
            uint8_t *area = bytes + l->header.ring_data_offset[i];
            struct ring c;
            if (ring_open(&c, &l->rings[i], area, -1) != 0)
                continue;
            /* A ring of RING_CAP bytes holds at most RING_CAP / 8 records (and pads); a
             * reader that goes on longer is spinning. */
            int calls = 0, r;
            const void *rec;
            size_t len;
            while ((r = ring_read(&c, &rec, &len)) == 0) {
                const uint8_t *p = rec;
                check(p >= area && len <= RING_CAP && p + len <= area + RING_CAP,
                      "ring_read returned a record outside the data area");
                check(++calls <= (int)(RING_CAP / 8), "ring_read does not end");
            }
            check(r == -EAGAIN || r == -EBADMSG, "ring_read: unexpected result");
            (void)ring_depth(&l->rings[i]);
            /* The producer side over the same damaged positions writes inside the area. */
            struct ring p;
            if (ring_open(&p, &l->rings[i], area, -1) == 0) {
                static const char rec2[24] = "abcdefghijklmnopqrstuvw";
                (void)ring_write(&p, rec2, sizeof(rec2));
            }
        }
        FILE *sink = fopen("/dev/null", "w");
        check(sink != NULL, "/dev/null");
        cli_stat_print(l, CLI_STAT_TEXT, sink);
        cli_stat_print(l, CLI_STAT_JSON, sink);
        cli_stat_print(l, CLI_STAT_PROM, sink);
        fclose(sink);
    }
    /* The same check over a mapping shorter than the header claims. */
    (void)shm_layout_check(l, seg_size / 2, err, sizeof(err));
    free(l);
    return 0;
}
