/*
 * fuzz_kp_decode.c: libFuzzer target for the streaming Keepa decoder (keepa/decode.h).
 *
 * Each input is decoded twice: whole, and in small chunks whose size comes from the first
 * byte (so chunk boundaries land inside tokens, strings and skipped subtrees). Besides the
 * sanitizers, the target checks the decoder's own invariants: every emitted struct respects
 * its bounds, and when both decodings succeed they saw the same objects and envelope.
 *
 * With KD_FUZZ=ON (clang, -fsanitize=fuzzer,address,undefined) this is a libFuzzer binary:
 *   build-fuzz/fuzz_kp_decode tests/fuzz/corpus/kp_decode tests/fixtures/keepa
 * (the real fixtures may be given as extra seed folders at run time, never copied in).
 * Every build also makes fuzz_kp_decode_corpus with the replay main() of tests/fuzz/replay.c,
 * which runs every file of the folders or files given once: ctest runs it over the corpus.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keepa/decode.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct seen {
    uint32_t products, deals, sellers, asins, lightning;
    uint64_t digest; /* order-sensitive mix of what was emitted */
};

static void mix(struct seen *s, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        s->digest = (s->digest ^ b[i]) * 1099511628211ull;
}

static void check(int cond, const char *what)
{
    if (!cond) {
        fprintf(stderr, "fuzz_kp_decode: invariant broken: %s\n", what);
        abort();
    }
}

static int on_product(const struct kp_product *p, void *ud)
{
    struct seen *s = ud;
    check(memchr(p->asin, '\0', sizeof(p->asin)) != NULL, "asin terminated");
    check(memchr(p->title, '\0', sizeof(p->title)) != NULL, "title terminated");
    check(p->n_categories <= KP_MAX_CATS && p->n_categories <= p->n_categories_total,
          "categories bounded");
    check(p->n_offers <= KP_MAX_OFFERS, "offers bounded");
    for (uint32_t i = 0; i < p->n_offers; i++)
        check(memchr(p->offers[i].seller_id, '\0', KP_SELLER_ID_MAX) != NULL, "seller id");
    s->products++;
    mix(s, p->asin, strlen(p->asin));
    mix(s, &p->stats.current, sizeof(p->stats.current));
    mix(s, &p->stats.avg, sizeof(p->stats.avg));
    mix(s, &p->stats.avg365, sizeof(p->stats.avg365));
    mix(s, &p->n_offers, sizeof(p->n_offers));
    return 0;
}

static int on_deal(const struct kp_deal *d, void *ud)
{
    struct seen *s = ud;
    check(memchr(d->asin, '\0', sizeof(d->asin)) != NULL, "deal asin terminated");
    check(d->n_price <= KP_NPRICE, "deal n_price bounded");
    check(d->n_categories <= KP_MAX_CATS, "deal categories bounded");
    s->deals++;
    mix(s, d->asin, strlen(d->asin));
    mix(s, d->current, sizeof(d->current));
    mix(s, d->current_since, sizeof(d->current_since));
    mix(s, d->delta_last, sizeof(d->delta_last));
    mix(s, d->avg, sizeof(d->avg));
    mix(s, d->delta, sizeof(d->delta));
    mix(s, d->delta_percent, sizeof(d->delta_percent));
    mix(s, &d->n_price, sizeof(d->n_price));
    return 0;
}

static int on_seller(const struct kp_seller *x, void *ud)
{
    struct seen *s = ud;
    check(memchr(x->seller_id, '\0', sizeof(x->seller_id)) != NULL, "seller id terminated");
    check(memchr(x->name, '\0', sizeof(x->name)) != NULL, "seller name terminated");
    s->sellers++;
    mix(s, x->seller_id, strlen(x->seller_id));
    return 0;
}

static int on_asin(const char *asin, void *ud)
{
    struct seen *s = ud;
    check(strlen(asin) < KP_ASIN_MAX, "query asin bounded");
    s->asins++;
    mix(s, asin, strlen(asin));
    return 0;
}

static int on_lightning(const struct kp_lightning_deal *x, void *ud)
{
    struct seen *s = ud;
    check(memchr(x->asin, '\0', sizeof(x->asin)) != NULL, "lightning asin terminated");
    check(memchr(x->title, '\0', sizeof(x->title)) != NULL, "lightning title terminated");
    check(memchr(x->seller_id, '\0', sizeof(x->seller_id)) != NULL, "lightning seller terminated");
    check(memchr(x->deal_id, '\0', sizeof(x->deal_id)) != NULL, "lightning deal id terminated");
    check(memchr(x->seller_name, '\0', sizeof(x->seller_name)) != NULL,
          "lightning seller name terminated");
    check(x->state >= KP_LD_UNKNOWN && x->state <= KP_LD_SUPPRESSED, "lightning state known");
    s->lightning++;
    mix(s, x->asin, strlen(x->asin));
    mix(s, &x->start_keepa_min, sizeof(x->start_keepa_min));
    mix(s, &x->end_keepa_min, sizeof(x->end_keepa_min));
    mix(s, &x->deal_price_cents, sizeof(x->deal_price_cents));
    return 0;
}

static int decode(const uint8_t *data, size_t size, size_t chunk, struct seen *s,
                  struct kp_envelope *env, size_t *peak)
{
    struct kp_decode_cbs cbs = {.on_product = on_product,
                                .on_deal = on_deal,
                                .on_seller = on_seller,
                                .on_asin = on_asin,
                                .on_lightning = on_lightning,
                                .ud = s};
    struct kp_decode_opts opts = {.max_body_bytes = 4u << 20, .max_token_bytes = 64u << 10};
    struct kp_decoder *d = kp_decoder_new(&opts, &cbs);
    check(d != NULL, "decoder allocated");
    int rc = 0;
    for (size_t off = 0; off < size && rc == 0; off += chunk)
        rc = kp_decoder_feed(d, data + off, size - off < chunk ? size - off : chunk);
    if (rc == 0)
        rc = kp_decoder_finish(d);
    check(rc <= 0, "negative errno");
    const char *err = kp_decoder_error(d);
    check((rc == 0) == (err[0] == '\0'), "error text iff error");
    check(strchr(err, '\n') == NULL, "one-line error");
    *env = *kp_decoder_envelope(d);
    *peak = kp_decoder_peak_bytes(d);
    kp_decoder_free(d);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct seen a = {0}, b = {0};
    struct kp_envelope ea, eb;
    size_t pa, pb;
    int ra = decode(data, size, size ? size : 1, &a, &ea, &pa);
    size_t chunk = size ? 1 + data[0] % 61 : 1;
    int rb = decode(data, size, chunk, &b, &eb, &pb);
    /* Memory stays bounded whatever the input: struct + a few yajl buffers. */
    check(pa < (1u << 20) && pb < (1u << 20), "decoder heap bounded");
    if (ra == 0 && rb == 0) {
        check(a.products == b.products && a.deals == b.deals && a.sellers == b.sellers &&
                  a.asins == b.asins && a.lightning == b.lightning && a.digest == b.digest,
              "chunking does not change what is emitted");
        check(memcmp(&ea, &eb, sizeof(ea)) == 0, "chunking does not change the envelope");
    }
    return 0;
}
