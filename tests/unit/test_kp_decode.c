/*
 * test_kp_decode.c: the streaming Keepa decoder (keepa/decode.h).
 *
 * Real recorded bodies (tests/fixtures/keepa) are decoded and every extracted field is
 * compared with a second, independent reading of the same file through jansson's DOM, so
 * the expected values come from the JSON itself rather than from this file. Hand-written
 * bodies cover what the fixtures lack (offers, liveOffersOrder, sellers, /query, fractional
 * token fields), and hostile bodies (truncated anywhere, invalid UTF-8, out-of-range
 * numbers, wrong types, deep nesting, huge strings, 50 MB) must end in a clean error or a
 * clean success with the decoder's own heap staying small.
 */
#include "kd_test.h"

#include "keepa/decode.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef KP_HAVE_JANSSON
#include <jansson.h>
#endif

/* ---- collectors ---- */

struct sink {
    size_t n_products, n_deals, n_sellers, n_asins, n_lightning;
    struct kp_lightning_deal lightning[8];
    struct kp_product *products; /* up to cap */
    struct kp_deal *deals;
    struct kp_seller sellers[8];
    char asins[16][KP_ASIN_MAX];
    size_t cap;
    int stop_after; /* >0: return nonzero at that product */
};

static int sink_product(const struct kp_product *p, void *ud)
{
    struct sink *s = ud;
    if (s->products != NULL && s->n_products < s->cap)
        s->products[s->n_products] = *p;
    s->n_products++;
    if (s->stop_after > 0 && (int)s->n_products >= s->stop_after)
        return 1;
    return 0;
}

static int sink_deal(const struct kp_deal *d, void *ud)
{
    struct sink *s = ud;
    if (s->deals != NULL && s->n_deals < s->cap)
        s->deals[s->n_deals] = *d;
    s->n_deals++;
    return 0;
}

static int sink_seller(const struct kp_seller *x, void *ud)
{
    struct sink *s = ud;
    if (s->n_sellers < 8)
        s->sellers[s->n_sellers] = *x;
    s->n_sellers++;
    return 0;
}

static int sink_asin(const char *asin, void *ud)
{
    struct sink *s = ud;
    if (s->n_asins < 16)
        snprintf(s->asins[s->n_asins], KP_ASIN_MAX, "%s", asin);
    s->n_asins++;
    return 0;
}

static int sink_lightning(const struct kp_lightning_deal *x, void *ud)
{
    struct sink *s = ud;
    if (s->n_lightning < 8)
        s->lightning[s->n_lightning] = *x;
    s->n_lightning++;
    return 0;
}

static struct sink *sink_new(size_t cap)
{
    struct sink *s = calloc(1, sizeof(*s));
    assert_non_null(s);
    s->cap = cap;
    s->products = calloc(cap ? cap : 1, sizeof(struct kp_product));
    s->deals = calloc(cap ? cap : 1, sizeof(struct kp_deal));
    assert_non_null(s->products);
    assert_non_null(s->deals);
    return s;
}

static void sink_free(struct sink *s)
{
    free(s->products);
    free(s->deals);
    free(s);
}

static struct kp_decode_cbs sink_cbs(struct sink *s)
{
    struct kp_decode_cbs c = {.on_product = sink_product,
                              .on_deal = sink_deal,
                              .on_seller = sink_seller,
                              .on_asin = sink_asin,
                              .on_lightning = sink_lightning,
                              .ud = s};
    return c;
}

/* Decodes BODY feeding it in chunks of CHUNK bytes (0: all at once). */
static int decode_chunked(const char *body, size_t len, size_t chunk, struct sink *s,
                          struct kp_envelope *env, char *err, size_t errsz, size_t *peak)
{
    struct kp_decode_cbs cbs = sink_cbs(s);
    struct kp_decoder *d = kp_decoder_new(NULL, &cbs);
    assert_non_null(d);
    int rc = 0;
    if (chunk == 0)
        chunk = len ? len : 1;
    for (size_t off = 0; off < len && rc == 0; off += chunk)
        rc = kp_decoder_feed(d, body + off, len - off < chunk ? len - off : chunk);
    if (rc == 0)
        rc = kp_decoder_finish(d);
    if (env != NULL)
        *env = *kp_decoder_envelope(d);
    if (err != NULL)
        snprintf(err, errsz, "%s", kp_decoder_error(d));
    if (peak != NULL)
        *peak = kp_decoder_peak_bytes(d);
    kp_decoder_free(d);
    return rc;
}

static int decode_str(const char *body, struct sink *s, struct kp_envelope *env, char *err,
                      size_t errsz)
{
    return decode_chunked(body, strlen(body), 0, s, env, err, errsz, NULL);
}

/* ---- independent reading through jansson ---- */

#ifdef KP_HAVE_JANSSON
static json_t *load_json(const char *path)
{
    json_error_t je;
    json_t *root = json_load_file(path, JSON_DECODE_INT_AS_REAL * 0, &je);
    if (root == NULL)
        fail_msg("jansson cannot read %s: %s", path, je.text);
    return root;
}

/* Integer member, or DFLT when absent/null/not an integer. */
static long long jint(const json_t *obj, const char *key, long long dflt)
{
    json_t *v = json_object_get(obj, key);
    return json_is_integer(v) ? json_integer_value(v) : dflt;
}

static int jtri(const json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    return json_is_boolean(v) ? (json_is_true(v) ? 1 : 0) : -1;
}

static double jnum(const json_t *obj, const char *key)
{
    return json_number_value(json_object_get(obj, key));
}

static void check_index_array(const json_t *arr, const int32_t *got, const char *what)
{
    for (size_t i = 0; i < KP_NPRICE; i++) {
        json_t *v = json_array_get(arr, i);
        long long want = json_is_integer(v) ? json_integer_value(v) : -1;
        if (want != got[i])
            fail_msg("%s[%zu]: decoder %d, JSON %lld", what, i, got[i], want);
    }
}

static void check_envelope(const json_t *root, const struct kp_envelope *e)
{
    assert_int_equal(e->timestamp_ms, jint(root, "timestamp", -99));
    assert_true(e->tokens_left == jnum(root, "tokensLeft"));
    assert_int_equal(e->refill_in_ms, jint(root, "refillIn", -99));
    assert_true(e->refill_rate == jnum(root, "refillRate"));
    assert_true(e->token_flow_reduction == jnum(root, "tokenFlowReduction"));
    assert_true(e->tokens_consumed == jnum(root, "tokensConsumed"));
    assert_int_equal(e->processing_ms, jint(root, "processingTimeInMs", -99));
    assert_true((e->have & KP_ENV_TOKEN_CORE) == KP_ENV_TOKEN_CORE);
    assert_true(e->have & KP_ENV_TOKENS_CONSUMED);
}

static void check_categories(const json_t *arr, const int64_t *got, uint32_t n, uint32_t total)
{
    assert_int_equal(total, json_array_size(arr));
    assert_int_equal(n, total < KP_MAX_CATS ? total : KP_MAX_CATS);
    for (uint32_t i = 0; i < n; i++)
        assert_int_equal(got[i], json_integer_value(json_array_get(arr, i)));
}

static void check_title(const json_t *obj, const char *got, bool truncated)
{
    const char *want = json_string_value(json_object_get(obj, "title"));
    assert_non_null(want);
    size_t gl = strlen(got);
    if (strlen(want) < KP_TITLE_MAX) {
        assert_string_equal(got, want);
        assert_false(truncated);
    } else {
        assert_true(truncated);
        assert_true(gl > KP_TITLE_MAX - 5 && gl < KP_TITLE_MAX);
        assert_memory_equal(got, want, gl);
    }
}

static void check_product(const json_t *jp, const struct kp_product *p)
{
    assert_string_equal(p->asin, json_string_value(json_object_get(jp, "asin")));
    check_title(jp, p->title, p->title_truncated);
    assert_int_equal(p->domain_id, jint(jp, "domainId", -1));
    assert_int_equal(p->product_type, jint(jp, "productType", -1));
    assert_int_equal(p->root_category, jint(jp, "rootCategory", -1));
    check_categories(json_object_get(jp, "categories"), p->categories, p->n_categories,
                     p->n_categories_total);
    assert_int_equal(p->last_update_keepa_min, jint(jp, "lastUpdate", -1));
    assert_int_equal(p->last_price_change_keepa_min, jint(jp, "lastPriceChange", -1));
    assert_int_equal(p->pick_and_pack_fee_cents,
                     jint(json_object_get(jp, "fbaFees"), "pickAndPackFee", -1));
    assert_true(p->referral_fee_percent == jnum(jp, "referralFeePercentage"));
    assert_int_equal(p->offers_successful, jtri(jp, "offersSuccessful"));
    assert_int_equal(p->monthly_sold, jint(jp, "monthlySold", -1));
    assert_int_equal(p->availability_amazon, jint(jp, "availabilityAmazon", -2));
    assert_int_equal(p->package_weight_g, jint(jp, "packageWeight", -1));
    const char *parent = json_string_value(json_object_get(jp, "parentAsin"));
    assert_string_equal(p->parent_asin, parent != NULL ? parent : "");
    json_t *offers = json_object_get(jp, "offers");
    assert_int_equal(p->n_offers_seen, json_is_array(offers) ? json_array_size(offers) : 0);
    assert_int_equal(p->live_order_present, json_is_array(json_object_get(jp, "liveOffersOrder")));

    const json_t *js = json_object_get(jp, "stats");
    assert_int_equal(p->stats.present, json_is_object(js));
    static const char *const arrays[] = {"current", "avg", "avg30", "avg90", "avg180", "avg365"};
    const int32_t *got[] = {p->stats.current, p->stats.avg,    p->stats.avg30,
                            p->stats.avg90,   p->stats.avg180, p->stats.avg365};
    for (size_t i = 0; i < 6; i++)
        check_index_array(json_object_get(js, arrays[i]), got[i], arrays[i]);
    assert_int_equal(p->stats.sales_rank_drops30, jint(js, "salesRankDrops30", -1));
    assert_int_equal(p->stats.sales_rank_drops90, jint(js, "salesRankDrops90", -1));
    assert_int_equal(p->stats.sales_rank_drops180, jint(js, "salesRankDrops180", -1));
    assert_int_equal(p->stats.sales_rank_drops365, jint(js, "salesRankDrops365", -1));
    assert_int_equal(p->stats.buy_box_price_cents, jint(js, "buyBoxPrice", -1));
    assert_int_equal(p->stats.buy_box_shipping_cents, jint(js, "buyBoxShipping", -1));
    assert_int_equal(p->stats.buy_box_is_fba, jtri(js, "buyBoxIsFBA"));
    assert_int_equal(p->stats.buy_box_is_amazon, jtri(js, "buyBoxIsAmazon"));
    assert_int_equal(p->stats.offer_count_fba, jint(js, "offerCountFBA", -1));
    assert_int_equal(p->stats.offer_count_fbm, jint(js, "offerCountFBM", -1));
    assert_int_equal(p->stats.total_offer_count, jint(js, "totalOfferCount", -1));
    assert_int_equal(p->stats.retrieved_offer_count, jint(js, "retrievedOfferCount", -1));
    const char *bbs = json_string_value(json_object_get(js, "buyBoxSellerId"));
    assert_string_equal(p->stats.buy_box_seller_id, bbs != NULL ? bbs : "");
}
#endif

static char *read_fixture(const char *name, size_t *len)
{
    const char *path = kd_fixture_path(name);
    char *body = kd_read_file(path, len);
    assert_non_null(body);
    return body;
}

/* Decodes a one-product fixture whole and in odd-sized chunks; checks against jansson. */
static void product_fixture(const char *name, struct kp_product *out, struct kp_envelope *env)
{
    size_t len;
    char *body = read_fixture(name, &len);
    struct sink *s = sink_new(2);
    char err[256];
    assert_int_equal(decode_chunked(body, len, 0, s, env, err, sizeof(err), NULL), 0);
    assert_int_equal(s->n_products, 1);
    assert_int_equal(env->n_products, 1);
    *out = s->products[0];
    /* A real body is well typed: nothing in it may count as garbled. */
    assert_int_equal(out->type_errors, 0);

    /* The same body in 7-byte chunks gives the same product, byte for byte. */
    struct sink *s2 = sink_new(2);
    struct kp_envelope env2;
    assert_int_equal(decode_chunked(body, len, 7, s2, &env2, err, sizeof(err), NULL), 0);
    assert_int_equal(s2->n_products, 1);
    assert_memory_equal(&s2->products[0], out, sizeof(*out));
    assert_memory_equal(&env2, env, sizeof(env2));

#ifdef KP_HAVE_JANSSON
    json_t *root = load_json(kd_fixture_path(name));
    check_envelope(root, env);
    check_product(json_array_get(json_object_get(root, "products"), 0), out);
    json_decref(root);
#endif
    sink_free(s);
    sink_free(s2);
    free(body);
}

static void test_fixture_product_b0f7(void **state)
{
    (void)state;
    struct kp_product p;
    struct kp_envelope e;
    product_fixture("product_B0F7XPYCSJ.json", &p, &e);
    /* The figures docs/keepa-api.md §9 states for this file. */
    assert_string_equal(p.asin, "B0F7XPYCSJ");
    assert_int_equal(p.stats.sales_rank_drops30, 13);
    assert_int_equal(p.stats.sales_rank_drops90, 35);
    assert_int_equal(p.stats.sales_rank_drops180, 84);
    assert_int_equal(p.stats.sales_rank_drops365, 99);
    assert_int_equal(p.pick_and_pack_fee_cents, 435);
    assert_int_equal(p.monthly_sold, 300);
    assert_true(p.referral_fee_percent == 12.0);
    assert_int_equal(p.stats.buy_box_price_cents, -2);
    assert_int_equal(p.stats.offer_count_fba, -2);
    assert_int_equal(p.offers_successful, 0);
    assert_false(p.live_order_present);
    assert_int_equal(p.n_offers, 0);
    assert_true(e.tokens_consumed == 1.0);
    assert_true(e.refill_rate == 60.0);
    assert_true(e.tokens_left == 42.0);
    assert_int_equal(e.refill_in_ms, 18815);
    assert_int_equal(e.timestamp_ms, 1778386622667LL);
    /* Its codes, for Keepa's code lookup: eanList, then upcList. */
    assert_int_equal(p.n_codes, 2);
    assert_string_equal(p.codes[0], "0747474801770");
    assert_string_equal(p.codes[1], "747474801770");
}

static void test_fixture_product_b0d8(void **state)
{
    (void)state;
    struct kp_product p;
    struct kp_envelope e;
    product_fixture("product_B0D8W1YVBX.json", &p, &e);
    assert_string_equal(p.asin, "B0D8W1YVBX");
    assert_int_equal(p.stats.buy_box_price_cents, 1499);
    assert_int_equal(p.stats.buy_box_shipping_cents, 0);
    assert_int_equal(p.stats.buy_box_is_fba, 1);
    assert_int_equal(p.stats.buy_box_is_amazon, 0);
    assert_int_equal(p.pick_and_pack_fee_cents, 409);
    assert_string_equal(p.stats.buy_box_seller_id, "AFZNN5H6MIT2Z");
    assert_int_equal(p.monthly_sold, 100000);
    assert_true(fabs(p.referral_fee_percent - 15.01) < 1e-9);
    assert_true(e.tokens_consumed == 4.0);
    assert_true(e.tokens_left == 94.0);
    assert_int_equal(e.refill_in_ms, 53441);
    assert_int_equal(p.n_codes, 1); /* "upcList": null adds none */
    assert_string_equal(p.codes[0], "8809875456477");
}

static void test_fixture_deal_page(void **state)
{
    (void)state;
    size_t len;
    char *body = read_fixture("deal_page.json", &len);
    struct sink *s = sink_new(200);
    struct kp_envelope e;
    char err[256];
    assert_int_equal(decode_chunked(body, len, 4093, s, &e, err, sizeof(err), NULL), 0);
    assert_int_equal(s->n_deals, 150);
    assert_int_equal(e.n_deals, 150);
    assert_true(e.tokens_left == 295.0);
    assert_int_equal(e.refill_in_ms, 27893);
    assert_true(e.refill_rate == 5.0);
    assert_true(e.tokens_consumed == 5.0);
    assert_int_equal(e.deals_cached, 0);
    assert_true(e.have & KP_ENV_DEALS);
    assert_int_equal(s->deals[0].n_price, 34);
#ifdef KP_HAVE_JANSSON
    json_t *root = load_json(kd_fixture_path("deal_page.json"));
    check_envelope(root, &e);
    json_t *dr = json_object_get(json_object_get(root, "deals"), "dr");
    assert_int_equal(json_array_size(dr), s->n_deals);
    for (size_t i = 0; i < s->n_deals; i++) {
        const json_t *jd = json_array_get(dr, i);
        const struct kp_deal *d = &s->deals[i];
        assert_string_equal(d->asin, json_string_value(json_object_get(jd, "asin")));
        check_title(jd, d->title, d->title_truncated);
        assert_int_equal(d->root_cat, jint(jd, "rootCat", -1));
        check_categories(json_object_get(jd, "categories"), d->categories, d->n_categories,
                         d->n_categories_total);
        assert_int_equal(d->last_update_keepa_min, jint(jd, "lastUpdate", -1));
        assert_int_equal(d->creation_date_keepa_min, jint(jd, "creationDate", -1));
        check_index_array(json_object_get(jd, "current"), d->current, "current");
        check_index_array(json_object_get(jd, "currentSince"), d->current_since, "currentSince");
        check_index_array(json_object_get(jd, "deltaLast"), d->delta_last, "deltaLast");
        for (size_t r = 0; r < KP_DEAL_RANGES; r++) {
            check_index_array(json_array_get(json_object_get(jd, "avg"), r), d->avg[r], "avg");
            check_index_array(json_array_get(json_object_get(jd, "delta"), r), d->delta[r],
                              "delta");
            check_index_array(json_array_get(json_object_get(jd, "deltaPercent"), r),
                              d->delta_percent[r], "deltaPercent");
        }
        assert_int_equal(d->sales_rank_drops30, jint(jd, "salesRankDrops30", -1));
        assert_int_equal(d->sales_rank_drops90, jint(jd, "salesRankDrops90", -1));
        assert_int_equal(d->sales_rank_drops180, jint(jd, "salesRankDrops180", -1));
        assert_int_equal(d->sales_rank_drops365, jint(jd, "salesRankDrops365", -1));
        assert_int_equal(d->warehouse_condition, jint(jd, "warehouseCondition", -1));
    }
    json_decref(root);
#else
    assert_string_equal(s->deals[0].asin, "B0916T3WFJ");
#endif
    sink_free(s);
    free(body);
}

/*
 * A kdeals-sim /product body with offers (tests/fuzz/corpus): the fixtures have none, so the
 * offers extraction (liveOffersOrder, newest offerCSV triple, flags) is checked here, again
 * against jansson.
 */
static void test_sim_body_offers(void **state)
{
    (void)state;
    const char *path = KD_SOURCE_DIR "/tests/fuzz/corpus/kp_decode/sim_product_offers.json";
    size_t len;
    char *body = kd_read_file(path, &len);
    assert_non_null(body);
    struct sink *s = sink_new(4);
    struct kp_envelope e;
    char err[256];
    assert_int_equal(decode_chunked(body, len, 1000, s, &e, err, sizeof(err), NULL), 0);
    assert_true(s->n_products >= 1);
#ifdef KP_HAVE_JANSSON
    json_t *root = load_json(path);
    check_envelope(root, &e);
    json_t *products = json_object_get(root, "products");
    assert_int_equal(json_array_size(products), s->n_products);
    for (size_t k = 0; k < s->n_products; k++) {
        const json_t *jp = json_array_get(products, k);
        const struct kp_product *p = &s->products[k];
        assert_int_equal(p->type_errors, 0); /* the simulator's honest bodies are well typed */
        check_product(jp, p);
        json_t *order = json_object_get(jp, "liveOffersOrder");
        json_t *offers = json_object_get(jp, "offers");
        assert_true(json_is_array(order));
        assert_int_equal(p->n_offers, json_array_size(order));
        for (size_t i = 0; i < p->n_offers; i++) {
            size_t idx = (size_t)json_integer_value(json_array_get(order, i));
            const json_t *jo = json_array_get(offers, idx);
            const struct kp_offer *o = &p->offers[i];
            assert_int_equal(o->index, idx);
            assert_string_equal(o->seller_id, json_string_value(json_object_get(jo, "sellerId")));
            json_t *csv = json_object_get(jo, "offerCSV");
            size_t n = json_array_size(csv) / 3 * 3;
            assert_true(n >= 3);
            assert_int_equal(o->csv_time_keepa_min, json_integer_value(json_array_get(csv, n - 3)));
            assert_int_equal(o->price_cents, json_integer_value(json_array_get(csv, n - 2)));
            assert_int_equal(o->shipping_cents, json_integer_value(json_array_get(csv, n - 1)));
            assert_int_equal(o->condition, jint(jo, "condition", -1));
            assert_int_equal(o->is_fba, jtri(jo, "isFBA"));
            assert_int_equal(o->is_prime, jtri(jo, "isPrime"));
            assert_int_equal(o->is_amazon, jtri(jo, "isAmazon"));
            assert_int_equal(o->last_seen_keepa_min, jint(jo, "lastSeen", -1));
            assert_int_equal(o->offer_id, jint(jo, "offerId", -1));
        }
    }
    json_decref(root);
#endif
    sink_free(s);
    free(body);
}

/*
 * /lightningdeal and /bestsellers bodies as the simulator serves them (tests/fuzz/corpus, taken
 * from kdeals-sim; docs/keepa-api.md §2.6 lists the LightningDeal and BestSellers fields):
 * every field kdeals reads equals jansson's reading, whole and in chunks of 7 bytes.
 */
static void test_sim_lightning_and_bestsellers(void **state)
{
    (void)state;
    const char *ld_path = KD_SOURCE_DIR "/tests/fuzz/corpus/kp_decode/sim_lightning_list.json";
    size_t len;
    char *body = kd_read_file(ld_path, &len);
    assert_non_null(body);
    for (size_t chunk = 0; chunk <= 7; chunk += 7) {
        struct sink *s = sink_new(1);
        struct kp_envelope e;
        char err[256];
        assert_int_equal(decode_chunked(body, len, chunk, s, &e, err, sizeof(err), NULL), 0);
        assert_true(e.have & KP_ENV_LIGHTNING);
        assert_false(e.have & KP_ENV_BESTSELLERS);
        assert_int_equal(e.n_lightning, s->n_lightning);
        assert_int_equal(s->n_lightning, 3);
        assert_int_equal(s->lightning[0].state, KP_LD_AVAILABLE);
        assert_int_equal(s->lightning[1].state, KP_LD_UPCOMING);
        assert_int_equal(s->lightning[2].state, KP_LD_SOLDOUT);
        assert_int_equal(s->lightning[1].deal_price_cents, -1); /* upcoming: no price yet */
        assert_true(s->lightning[0].deal_price_cents > 0);
        assert_true(s->lightning[0].deal_price_cents < s->lightning[0].current_price_cents);
#ifdef KP_HAVE_JANSSON
        json_t *root = load_json(ld_path);
        check_envelope(root, &e);
        json_t *list = json_object_get(root, "lightningDeals");
        assert_int_equal(json_array_size(list), s->n_lightning);
        for (size_t k = 0; k < s->n_lightning; k++) {
            const json_t *j = json_array_get(list, k);
            const struct kp_lightning_deal *x = &s->lightning[k];
            assert_string_equal(x->asin, json_string_value(json_object_get(j, "asin")));
            assert_string_equal(x->title, json_string_value(json_object_get(j, "title")));
            assert_string_equal(x->seller_id, json_string_value(json_object_get(j, "sellerId")));
            assert_string_equal(x->seller_name,
                                json_string_value(json_object_get(j, "sellerName")));
            assert_string_equal(x->deal_id, json_string_value(json_object_get(j, "dealId")));
            assert_string_equal(kp_ld_state_name(x->state),
                                json_string_value(json_object_get(j, "dealState")));
            assert_int_equal(x->domain_id, jint(j, "domainId", -1));
            assert_int_equal(x->last_update_keepa_min, jint(j, "lastUpdate", -1));
            assert_int_equal(x->start_keepa_min, jint(j, "startTime", -1));
            assert_int_equal(x->end_keepa_min, jint(j, "endTime", -1));
            assert_true(x->start_keepa_min > 0 && x->end_keepa_min > x->start_keepa_min);
            assert_int_equal(x->deal_price_cents, jint(j, "dealPrice", -1));
            assert_int_equal(x->current_price_cents, jint(j, "currentPrice", -1));
            assert_int_equal(x->percent_claimed, jint(j, "percentClaimed", -1));
            assert_int_equal(x->percent_off, jint(j, "percentOff", -1));
            assert_int_equal(x->rating, jint(j, "rating", -1));
            assert_int_equal(x->total_reviews, jint(j, "totalReviews", -1));
            assert_int_equal(x->is_prime_eligible, jtri(j, "isPrimeEligible"));
            assert_int_equal(x->is_fba, jtri(j, "isFulfilledByAmazon"));
        }
        json_decref(root);
#endif
        sink_free(s);
    }
    free(body);

    const char *bs_path = KD_SOURCE_DIR "/tests/fuzz/corpus/kp_decode/sim_bestsellers_sub.json";
    body = kd_read_file(bs_path, &len);
    assert_non_null(body);
    struct sink *s = sink_new(1);
    struct kp_envelope e;
    char err[256];
    assert_int_equal(decode_chunked(body, len, 5, s, &e, err, sizeof(err), NULL), 0);
    assert_true(e.have & KP_ENV_BESTSELLERS);
    assert_false(e.have & KP_ENV_ASIN_LIST); /* the list inside bestSellersList, not /query's */
    assert_int_equal(e.n_asins, s->n_asins);
    assert_true(s->n_asins > 16);
    assert_int_equal(e.bestsellers_category, 2831551);
    assert_true(e.bestsellers_last_update_keepa_min > 0);
    assert_int_equal(e.tokens_consumed, 50.0);
#ifdef KP_HAVE_JANSSON
    json_t *root = load_json(bs_path);
    check_envelope(root, &e);
    json_t *bl = json_object_get(root, "bestSellersList");
    json_t *asins = json_object_get(bl, "asinList");
    assert_int_equal(json_array_size(asins), s->n_asins);
    for (size_t k = 0; k < 16; k++)
        assert_string_equal(s->asins[k], json_string_value(json_array_get(asins, k)));
    assert_int_equal(e.bestsellers_last_update_keepa_min, jint(bl, "lastUpdate", -1));
    json_decref(root);
#endif
    sink_free(s);
    free(body);

    /* Nothing found: no bestSellersList, charged 0 (docs/keepa-api.md §2.6). */
    body =
        kd_read_file(KD_SOURCE_DIR "/tests/fuzz/corpus/kp_decode/sim_bestsellers_none.json", &len);
    assert_non_null(body);
    s = sink_new(1);
    assert_int_equal(decode_chunked(body, len, 0, s, &e, err, sizeof(err), NULL), 0);
    assert_false(e.have & KP_ENV_BESTSELLERS);
    assert_int_equal(s->n_asins, 0);
    assert_int_equal(e.bestsellers_category, -1);
    assert_int_equal(e.tokens_consumed, 0.0);
    sink_free(s);
    free(body);
}

/*
 * Lightning deals the way a client must survive them: an unknown dealState, fields of the wrong
 * JSON type (left at their defaults, never a failed body), nulls, scalars and nulls in the
 * array, unknown nested keys; and bestSellersList/lightningDeals sent as null.
 */
static void test_lightning_odd_shapes(void **state)
{
    (void)state;
    struct sink *s = sink_new(1);
    struct kp_envelope e;
    char err[256];
    const char *odd =
        "{\"tokensLeft\":3,\"lightningDeals\":[{\"asin\":\"B0LIGHT001\",\"dealState\":"
        "\"PAUSED\",\"startTime\":\"8163300\",\"endTime\":1e400,\"dealPrice\":null,"
        "\"currentPrice\":[1],\"rating\":{\"x\":1},\"isPrimeEligible\":1,\"sellerId\":123,"
        "\"variation\":{\"a\":[1,2,{\"b\":null}]},\"percentOff\":25},7,null,"
        "{\"asin\":null,\"dealState\":\"EXPIRED\",\"isFulfilledByAmazon\":false}],"
        "\"bestSellersList\":{\"categoryId\":\"x\",\"asinList\":[\"B1\",null,3,\"B2\"],"
        "\"lastUpdate\":99}}";
    assert_int_equal(decode_str(odd, s, &e, err, sizeof(err)), 0);
    assert_int_equal(s->n_lightning, 2);
    const struct kp_lightning_deal *x = &s->lightning[0];
    assert_string_equal(x->asin, "B0LIGHT001");
    assert_int_equal(x->state, KP_LD_UNKNOWN);
    assert_string_equal(kp_ld_state_name(x->state), "UNKNOWN");
    assert_int_equal(x->start_keepa_min, -1);
    assert_int_equal(x->end_keepa_min, -1);
    assert_int_equal(x->deal_price_cents, -1);
    assert_int_equal(x->current_price_cents, -1);
    assert_int_equal(x->rating, -1);
    assert_int_equal(x->is_prime_eligible, -1);
    assert_string_equal(x->seller_id, "");
    assert_int_equal(x->percent_off, 25);
    assert_string_equal(s->lightning[1].asin, "");
    assert_int_equal(s->lightning[1].state, KP_LD_EXPIRED);
    assert_int_equal(s->lightning[1].is_fba, 0);
    assert_int_equal(s->n_asins, 2);
    assert_string_equal(s->asins[1], "B2");
    assert_int_equal(e.bestsellers_category, -1);
    assert_int_equal(e.bestsellers_last_update_keepa_min, 99);

    sink_free(s);
    s = sink_new(1);
    const char *nulls = "{\"tokensLeft\":3,\"lightningDeals\":null,\"bestSellersList\":null}";
    assert_int_equal(decode_str(nulls, s, &e, err, sizeof(err)), 0);
    assert_int_equal(s->n_lightning + s->n_asins, 0);
    assert_false(e.have & (KP_ENV_LIGHTNING | KP_ENV_BESTSELLERS));
    for (int st = KP_LD_AVAILABLE; st <= KP_LD_SUPPRESSED; st++)
        assert_string_not_equal(kp_ld_state_name(st), "UNKNOWN");
    assert_string_equal(kp_ld_state_name(99), "UNKNOWN");
    sink_free(s);
}

/* A /product body with offers, in the shape of the simulator and of REC-LOG. */
static const char offers_body[] =
    "{\"timestamp\":1778386622667,\"tokensLeft\":54.5,\"refillIn\":1000,\"refillRate\":20,"
    "\"tokenFlowReduction\":0.5,\"tokensConsumed\":-13.0,\"processingTimeInMs\":4000,"
    "\"products\":[{\"asin\":\"B000000001\",\"title\":\"caf\\u00e9 \\\"x\\\"\",\"domainId\":1,"
    "\"productType\":0,\"rootCategory\":9223372036854775807,\"categories\":[1,2,3],"
    "\"unknown\":{\"a\":[1,2,{\"b\":null}],\"c\":\"d\"},"
    "\"offers\":["
    "{\"lastSeen\":100,\"sellerId\":\"SELLER0\",\"offerCSV\":[1,1000,0,2,900,50],"
    "\"condition\":1,\"isPrime\":true,\"isAmazon\":false,\"isFBA\":true,\"offerId\":7},"
    "{\"lastSeen\":50,\"sellerId\":\"SELLER1\",\"offerCSV\":[1,2000,100,5],\"condition\":3,"
    "\"isFBA\":false,\"extra\":[[[]]]},"
    "{\"lastSeen\":101,\"sellerId\":null,\"offerCSV\":null,\"condition\":\"new\"}],"
    "\"liveOffersOrder\":[2,0,9],"
    "\"stats\":{\"current\":[1,null,\"x\",4,{\"y\":1},6],\"buyBoxPrice\":null,"
    "\"buyBoxIsFBA\":true,\"offerCountFBA\":3,\"totalOfferCount\":99999999999},"
    "\"fbaFees\":null,\"referralFeePercent\":8,\"offersSuccessful\":true},"
    "{\"asin\":\"B000000002\",\"liveOffersOrder\":null,\"stats\":null,"
    "\"fbaFees\":{\"pickAndPackFee\":1.5},\"referralFeePercentage\":15.03,"
    "\"referralFeePercent\":15}]}";

static void test_offers_and_live_order(void **state)
{
    (void)state;
    struct sink *s = sink_new(4);
    struct kp_envelope e;
    char err[256];
    assert_int_equal(decode_str(offers_body, s, &e, err, sizeof(err)), 0);
    assert_true(e.tokens_left == 54.5);
    assert_true(e.tokens_consumed == -13.0);
    assert_true(e.token_flow_reduction == 0.5);
    assert_int_equal(s->n_products, 2);
    const struct kp_product *p = &s->products[0];
    assert_string_equal(p->title, "caf\xc3\xa9 \"x\"");
    assert_int_equal(p->root_category, 9223372036854775807LL);
    assert_int_equal(p->n_categories, 3);
    assert_int_equal(p->n_offers_seen, 3);
    assert_true(p->live_order_present);
    /* liveOffersOrder [2,0,9]: offer 2, then offer 0; 9 does not exist and is not invented. */
    assert_int_equal(p->n_offers, 2);
    assert_int_equal(p->offers[0].index, 2);
    assert_int_equal(p->offers[0].price_cents, -1);
    assert_int_equal(p->offers[0].condition, -1);
    assert_int_equal(p->offers[0].last_seen_keepa_min, 101);
    assert_int_equal(p->offers[1].index, 0);
    assert_string_equal(p->offers[1].seller_id, "SELLER0");
    assert_int_equal(p->offers[1].price_cents, 900); /* newest triple is last */
    assert_int_equal(p->offers[1].shipping_cents, 50);
    assert_int_equal(p->offers[1].csv_time_keepa_min, 2);
    assert_int_equal(p->offers[1].is_prime, 1);
    assert_int_equal(p->offers[1].is_amazon, 0);
    assert_int_equal(p->offers[1].is_fba, 1);
    assert_int_equal(p->offers[1].offer_id, 7);
    assert_int_equal(p->stats.current[0], 1);
    assert_int_equal(p->stats.current[1], -1);
    assert_int_equal(p->stats.current[2], -1);
    assert_int_equal(p->stats.current[3], 4);
    assert_int_equal(p->stats.current[4], -1);
    assert_int_equal(p->stats.current[5], 6);
    assert_int_equal(p->stats.current[6], -1);
    assert_int_equal(p->stats.buy_box_price_cents, -1);
    assert_int_equal(p->stats.buy_box_is_fba, 1);
    assert_int_equal(p->stats.offer_count_fba, 3);
    assert_int_equal(p->stats.total_offer_count, -1); /* out of int32 range */
    assert_int_equal(p->pick_and_pack_fee_cents, -1);
    assert_true(p->referral_fee_percent == 8.0); /* int fallback */
    assert_int_equal(p->offers_successful, 1);
    /* current "x" and {"y":1}, condition "new"; null, 99999999999 and unknown keys are not. */
    assert_int_equal(p->type_errors, 3);

    const struct kp_product *q = &s->products[1];
    assert_string_equal(q->asin, "B000000002");
    assert_false(q->live_order_present);
    assert_false(q->stats.present);
    assert_int_equal(q->pick_and_pack_fee_cents, -1); /* 1.5 is not an integer */
    assert_true(q->referral_fee_percent == 15.03);    /* double wins over the int */
    assert_int_equal(q->n_offers, 0);
    assert_int_equal(q->title[0], '\0');
    assert_int_equal(q->type_errors, 0); /* pickAndPackFee 1.5: a number, merely not an int */
    sink_free(s);
}

static void test_offers_without_live_order_and_order_first(void **state)
{
    (void)state;
    /* liveOffersOrder before offers (the fixtures' sorted order) must work the same way. */
    const char *body = "{\"products\":[{\"liveOffersOrder\":[1],\"offers\":["
                       "{\"offerCSV\":[1,10,0]},{\"offerCSV\":[1,20,0]}]},"
                       "{\"offers\":[{\"offerCSV\":[1,10,0]},{\"offerCSV\":[1,20,0]}]}]}";
    struct sink *s = sink_new(2);
    char err[256];
    assert_int_equal(decode_str(body, s, NULL, err, sizeof(err)), 0);
    assert_int_equal(s->products[0].n_offers, 1);
    assert_int_equal(s->products[0].offers[0].price_cents, 20);
    assert_int_equal(s->products[1].n_offers, 2);
    assert_false(s->products[1].live_order_present);
    sink_free(s);
}

static void expect_error(const char *body, size_t len, int want, const char *what);

/* Unknown subtrees are skipped without yajl; strings in them may hold brackets and escapes. */
static void test_skipped_subtrees(void **state)
{
    (void)state;
    const char *body =
        "{\"timestamp\":5,\"junk\":[\"a\\nb\\\"]\", \"[{\", {\"k\":[[1,2],[3]],\"s\":\"}\\\\\"}],"
        "\"products\":[{\"csv\":[[1,2,3],null,[4,5]],\"images\":[{\"l\":\"x.jpg\"}],"
        "\"asin\":\"B0SKIPPED1\",\"buyBoxStats\":{\"A\":{\"isFBA\":true}},"
        "\"stats\":{\"min\":[null,[7,8]],\"current\":[11,12],\"salesRankDrops30\":4},"
        "\"title\":\"T\"}],\"tokensLeft\":7}";
    size_t len = strlen(body);
    for (size_t chunk = 1; chunk <= len; chunk = chunk < 8 ? chunk + 1 : chunk * 3) {
        struct sink *s = sink_new(1);
        struct kp_envelope e;
        char err[256];
        if (decode_chunked(body, len, chunk, s, &e, err, sizeof(err), NULL) != 0)
            fail_msg("chunk %zu: %s", chunk, err);
        assert_int_equal(s->n_products, 1);
        assert_string_equal(s->products[0].asin, "B0SKIPPED1");
        assert_string_equal(s->products[0].title, "T");
        assert_int_equal(s->products[0].stats.current[1], 12);
        assert_int_equal(s->products[0].stats.sales_rank_drops30, 4);
        assert_true(e.tokens_left == 7);
        assert_int_equal(e.timestamp_ms, 5);
        sink_free(s);
    }
    /* Unbalanced or mismatched brackets inside a skipped subtree are still errors. */
    static const char *const bad[] = {"{\"x\":[[1,2],3}", "{\"x\":[[1,2],3", "{\"x\":{\"a\":[1]]}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        expect_error(bad[i], strlen(bad[i]), -EBADMSG, bad[i]);
}

static void test_many_offers_bounded(void **state)
{
    (void)state;
    size_t cap = 1 << 20;
    char *body = malloc(cap);
    assert_non_null(body);
    size_t n = (size_t)snprintf(body, cap, "{\"products\":[{\"asin\":\"B1\",\"offers\":[");
    for (int i = 0; i < 500; i++)
        n += (size_t)snprintf(body + n, cap - n, "%s{\"offerCSV\":[1,%d,0],\"offerId\":%d}",
                              i ? "," : "", 100 + i, i);
    n += (size_t)snprintf(body + n, cap - n, "]}]}");
    struct sink *s = sink_new(1);
    char err[256];
    assert_int_equal(decode_chunked(body, n, 0, s, NULL, err, sizeof(err), NULL), 0);
    assert_int_equal(s->products[0].n_offers_seen, 500);
    assert_int_equal(s->products[0].n_offers, KP_MAX_OFFERS);
    assert_true(s->products[0].offers_truncated);
    assert_int_equal(s->products[0].offers[99].offer_id, 99);
    sink_free(s);
    free(body);
}

static void test_sellers_query_error(void **state)
{
    (void)state;
    struct sink *s = sink_new(1);
    struct kp_envelope e;
    char err[256];
    const char *sellers = "{\"tokensLeft\":5,\"sellers\":{\"A1\":{\"sellerId\":\"A1\","
                          "\"sellerName\":\"Shop\",\"currentRating\":97,\"currentRatingCount\":"
                          "1234,\"isScammer\":false,\"hasFBA\":true,\"csv\":[[1,2]]},"
                          "\"A2\":{\"sellerId\":\"A2\"}}}";
    assert_int_equal(decode_str(sellers, s, &e, err, sizeof(err)), 0);
    assert_int_equal(s->n_sellers, 2);
    assert_string_equal(s->sellers[0].seller_id, "A1");
    assert_string_equal(s->sellers[0].name, "Shop");
    assert_int_equal(s->sellers[0].current_rating, 97);
    assert_int_equal(s->sellers[0].current_rating_count, 1234);
    assert_int_equal(s->sellers[0].is_scammer, 0);
    assert_int_equal(s->sellers[0].has_fba, 1);
    assert_int_equal(s->sellers[1].current_rating, -1);

    const char *query = "{\"tokensConsumed\":11,\"asinList\":[\"B1\",\"B2\",7,\"B3\"],"
                        "\"totalResults\":12345}";
    assert_int_equal(decode_str(query, s, &e, err, sizeof(err)), 0);
    assert_int_equal(s->n_asins, 3);
    assert_string_equal(s->asins[2], "B3");
    assert_int_equal(e.total_results, 12345);

    const char *bad = "{\"timestamp\":1,\"tokensLeft\":0,\"refillIn\":0,\"refillRate\":0,"
                      "\"tokenFlowReduction\":0,\"tokensConsumed\":0,\"processingTimeInMs\":0,"
                      "\"error\":{\"type\":\"invalidParameter\",\"message\":\"You used an "
                      "invalid parameter\",\"details\":null}}";
    assert_int_equal(decode_str(bad, s, &e, err, sizeof(err)), 0);
    assert_true(e.have & KP_ENV_ERROR);
    assert_string_equal(e.error_type, "invalidParameter");
    assert_string_equal(e.error_message, "You used an invalid parameter");
    assert_string_equal(e.error_details, "");
    assert_false(e.have & KP_ENV_PRODUCTS);
    sink_free(s);
}

static void expect_error(const char *body, size_t len, int want, const char *what)
{
    struct sink *s = sink_new(1);
    char err[256] = "";
    int rc = decode_chunked(body, len, 0, s, NULL, err, sizeof(err), NULL);
    if (rc != want)
        fail_msg("%s: rc %d, want %d (%s)", what, rc, want, err);
    assert_true(strncmp(err, "decode: ", 8) == 0);
    assert_null(strchr(err, '\n'));
    sink_free(s);
}

/*
 * The integer-array fast path (fast_int_array in keepa/decode.c) stores a compact array's
 * numbers itself and gives yajl only the closing bracket. Fed one byte at a time, no array is
 * ever whole in a feed, so every number goes through yajl: the two decodings must agree on
 * the verdict and on every stored value, for canonical arrays, for every form the fast path
 * leaves to yajl, and for malformed arrays (which must stay refused).
 */
static int decode_deal_arrays(const char *arrays, size_t chunk, struct sink *s, char *err,
                              size_t errsz)
{
    char body[4096];
    int n =
        snprintf(body, sizeof(body),
                 "{\"timestamp\":1,\"tokensLeft\":2,\"deals\":{\"dr\":[{\"asin\":\"B000000001\","
                 "%s},{\"asin\":\"B000000002\",\"current\":[5,-6,0]}]},\"stats\":"
                 "{\"current\":[1,2,3]}}",
                 arrays);
    assert_true(n > 0 && (size_t)n < sizeof(body));
    return decode_chunked(body, (size_t)n, chunk, s, NULL, err, errsz, NULL);
}

static void same_deal_arrays(const struct kp_deal *a, const struct kp_deal *b)
{
    assert_string_equal(a->asin, b->asin);
    assert_int_equal(a->n_price, b->n_price);
    assert_memory_equal(a->current, b->current, sizeof(a->current));
    assert_memory_equal(a->current_since, b->current_since, sizeof(a->current_since));
    assert_memory_equal(a->delta_last, b->delta_last, sizeof(a->delta_last));
    assert_memory_equal(a->avg, b->avg, sizeof(a->avg));
    assert_memory_equal(a->delta, b->delta, sizeof(a->delta));
    assert_memory_equal(a->delta_percent, b->delta_percent, sizeof(a->delta_percent));
}

static void test_int_array_fast_path_same_as_yajl(void **state)
{
    (void)state;
    char seventy[512] = "\"currentSince\":[";
    for (int i = 0; i < 70; i++)
        snprintf(seventy + strlen(seventy), sizeof(seventy) - strlen(seventy), "%s%d", i ? "," : "",
                 i * 3 - 7);
    strcat(seventy, "]");
    const char *valid[] = {
        "\"current\":[0,-0,7,-7,2147483647,-2147483648],\"deltaLast\":[1,2],"
        "\"avg\":[[1,2,3],[4,5,6],[-1,-2,-3],[7],[8]],\"delta\":[[],[0]],"
        "\"deltaPercent\":[[99,-99]]",
        /* out of int32, 18 and 19 digits, 20 digits: left unset or stored as yajl would */
        "\"current\":[2147483648,-2147483649,123456789012345678,1234567890123456789,"
        "-999999999999999999,99999999999999999999]",
        /* what the fast path leaves to yajl: fractions, exponents, null, strings, spaces */
        "\"current\":[1.5,2,3],\"deltaLast\":[1e3,4],\"currentSince\":[null,5,\"6\",true]",
        "\"current\":[ 1,2],\"deltaLast\":[1 ,2],\"avg\":[[1, 2],[ 3 ]]",
        "\"current\":[1,[2,3],4],\"avg\":[[1,{\"a\":2},3]]",
        seventy,
    };
    const char *malformed[] = {
        "\"current\":[01,2]", "\"current\":[1,]",   "\"current\":[-]",   "\"current\":[1,,2]",
        "\"current\":[+1]",   "\"current\":[1 2]",  "\"current\":[--1]", "\"current\":[,1]",
        "\"current\":[1]]",   "\"current\":[1,2}",  "\"avg\":[[1,2]",    "\"current\":[-01]",
        "\"current\":[1.]",   "\"current\":[0x10]", "\"current\":[1-2]", "\"current\":[00]",
    };
    for (size_t k = 0; k < sizeof(valid) / sizeof(valid[0]); k++) {
        struct sink *whole = sink_new(4), *bytes = sink_new(4);
        char err[256];
        int rc_whole = decode_deal_arrays(valid[k], 0, whole, err, sizeof(err));
        if (rc_whole != 0)
            fail_msg("valid[%zu]: %s", k, err);
        assert_int_equal(decode_deal_arrays(valid[k], 1, bytes, err, sizeof(err)), 0);
        assert_int_equal(whole->n_deals, 2);
        assert_int_equal(bytes->n_deals, 2);
        for (size_t i = 0; i < 2; i++)
            same_deal_arrays(&whole->deals[i], &bytes->deals[i]);
        sink_free(whole);
        sink_free(bytes);
    }
    for (size_t k = 0; k < sizeof(malformed) / sizeof(malformed[0]); k++) {
        struct sink *whole = sink_new(4), *bytes = sink_new(4);
        char err[256];
        int rc_whole = decode_deal_arrays(malformed[k], 0, whole, err, sizeof(err));
        int rc_bytes = decode_deal_arrays(malformed[k], 1, bytes, err, sizeof(err));
        if (rc_whole != -EBADMSG || rc_bytes != -EBADMSG)
            fail_msg("malformed[%zu] %s: rc %d whole, %d byte by byte", k, malformed[k], rc_whole,
                     rc_bytes);
        sink_free(whole);
        sink_free(bytes);
    }
    /* The canonical values themselves, as stored. */
    struct sink *s = sink_new(4);
    char err[256];
    assert_int_equal(decode_deal_arrays(valid[0], 0, s, err, sizeof(err)), 0);
    const struct kp_deal *d = &s->deals[0];
    assert_int_equal(d->n_price, 6);
    assert_int_equal(d->current[0], 0);
    assert_int_equal(d->current[2], 7);
    assert_int_equal(d->current[3], -7);
    assert_int_equal(d->current[4], INT32_MAX);
    assert_int_equal(d->current[5], INT32_MIN);
    assert_int_equal(d->avg[2][1], -2);
    assert_int_equal(d->avg[3][0], 7);
    assert_int_equal(d->delta[1][0], 0);
    assert_int_equal(d->delta_percent[0][1], -99);
    assert_int_equal(s->deals[1].n_price, 3);
    assert_int_equal(s->deals[1].current[1], -6);
    sink_free(s);
}

static void test_hostile_small(void **state)
{
    (void)state;
    expect_error("", sizeof("") - 1, -EBADMSG, "empty");
    expect_error("[1,2]", sizeof("[1,2]") - 1, -EBADMSG, "top-level array");
    expect_error("42", sizeof("42") - 1, -EBADMSG, "top-level number");
    expect_error("{\"a\":1}{", sizeof("{\"a\":1}{") - 1, -EBADMSG, "trailing");
    expect_error("{\"title\":\"\xff\xfe\"}", sizeof("{\"title\":\"\xff\xfe\"}") - 1, -EBADMSG,
                 "invalid UTF-8");
    expect_error("{\"products\":[{\"asin\":\"\xc3\"}]}",
                 sizeof("{\"products\":[{\"asin\":\"\xc3\"}]}") - 1, -EBADMSG, "cut UTF-8");
    expect_error("{\"a\":tru}", sizeof("{\"a\":tru}") - 1, -EBADMSG, "bad literal");
    expect_error("{\"a\":1,}", sizeof("{\"a\":1,}") - 1, -EBADMSG, "trailing comma");

    /* Out-of-range numbers: in known and unknown fields, they never fail the body. */
    struct sink *s = sink_new(1);
    struct kp_envelope e;
    char err[256];
    const char *big = "{\"tokensLeft\":1e999,\"refillIn\":-99999999999999999999999,"
                      "\"x\":123456789012345678901234567890,\"products\":[{\"domainId\":"
                      "1e5,\"rootCategory\":99999999999999999999,\"stats\":{\"current\":"
                      "[1e400,-1e-400,2147483648,-2147483649,3]}}]}";
    int rc = decode_str(big, s, &e, err, sizeof(err));
    if (rc != 0 && rc != -EBADMSG)
        fail_msg("out of range: rc %d (%s)", rc, err);
    if (rc == 0) {
        assert_false(e.have & KP_ENV_TOKENS_LEFT);
        assert_int_equal(s->products[0].domain_id, -1);
        assert_int_equal(s->products[0].root_category, -1);
        assert_int_equal(s->products[0].stats.current[2], -1);
        assert_int_equal(s->products[0].stats.current[3], -1);
        assert_int_equal(s->products[0].stats.current[4], 3);
        assert_int_equal(s->products[0].type_errors, 0); /* numbers, only out of range */
    }
    /* Finite but beyond what an integer holds: the token figures every consumer converts to
     * integers, and a referral percentage, are unusable, never cast (undefined behaviour). */
    sink_free(s);
    s = sink_new(1);
    const char *vast = "{\"tokensLeft\":1e300,\"refillRate\":-1e300,\"tokensConsumed\":9.3e18,"
                       "\"tokenFlowReduction\":1e19,\"products\":[{\"asin\":\"B000000001\","
                       "\"referralFeePercentage\":1e300}]}";
    assert_int_equal(decode_str(vast, s, &e, err, sizeof(err)), 0);
    assert_false(e.have & KP_ENV_TOKENS_LEFT);
    assert_false(e.have & KP_ENV_REFILL_RATE);
    assert_false(e.have & KP_ENV_TOKENS_CONSUMED);
    assert_false(e.have & KP_ENV_FLOW_REDUCTION);
    assert_true(s->products[0].referral_fee_percent < 0);
    sink_free(s);
    s = sink_new(1);
    const char *sane = "{\"tokensLeft\":-54.5,\"refillRate\":5,\"tokensConsumed\":13.0,"
                       "\"products\":[{\"asin\":\"B000000001\",\"referralFeePercentage\":15.5}]}";
    assert_int_equal(decode_str(sane, s, &e, err, sizeof(err)), 0);
    assert_true(e.have & KP_ENV_TOKENS_LEFT);
    assert_true(e.tokens_left == -54.5);
    assert_true(e.refill_rate == 5.0);
    assert_true(s->products[0].referral_fee_percent == 15.5);

    /* Wrong types and nulls everywhere. */
    const char *types = "{\"timestamp\":\"now\",\"tokensLeft\":null,\"refillIn\":[],"
                        "\"refillRate\":{},\"products\":[null,1,\"x\",[],{\"asin\":5,\"title\":"
                        "[\"t\"],\"categories\":{\"a\":1},\"stats\":[1,2],\"offers\":{},"
                        "\"liveOffersOrder\":\"0\",\"fbaFees\":[1],\"offersSuccessful\":1}]}";
    sink_free(s);
    s = sink_new(1);
    assert_int_equal(decode_str(types, s, &e, err, sizeof(err)), 0);
    assert_int_equal(e.have & KP_ENV_TOKEN_CORE, 0);
    assert_int_equal(e.n_products, 1);
    /* asin, title, categories, stats, offers, liveOffersOrder, fbaFees, offersSuccessful. */
    assert_int_equal(s->products[0].type_errors, 8);
    sink_free(s);

    /* Deep nesting: 32 levels pass, 33 fail, 100000 fail without recursion or crash. */
    char deep[200];
    size_t n = 0;
    for (int i = 0; i < 31; i++)
        deep[n++] = '[';
    deep[n] = '\0';
    char ok[300], bad[300];
    snprintf(ok, sizeof(ok), "{\"x\":%s", deep);
    n = strlen(ok);
    for (int i = 0; i < 31; i++)
        ok[n++] = ']';
    ok[n++] = '}';
    ok[n] = '\0';
    struct sink *s2 = sink_new(1);
    assert_int_equal(decode_str(ok, s2, NULL, err, sizeof(err)), 0);
    snprintf(bad, sizeof(bad), "{\"x\":[%s", deep);
    n = strlen(bad);
    for (int i = 0; i < 32; i++)
        bad[n++] = ']';
    bad[n++] = '}';
    bad[n] = '\0';
    expect_error(bad, strlen(bad), -ELOOP, "33 levels");
    size_t hl = 100000;
    char *huge = malloc(hl + 2);
    huge[0] = '{';
    memcpy(huge + 1, "\"a\":", 4);
    memset(huge + 5, '[', hl - 5);
    expect_error(huge, hl, -ELOOP, "100000 levels");
    free(huge);
    sink_free(s2);
}

/*
 * Every kind of mistyping in a field the decoder extracts counts in type_errors, in
 * any chunking; null, numbers out of range and unknown keys do not.
 */
static void test_type_errors(void **state)
{
    (void)state;
    static const struct {
        const char *fields;
        uint32_t want;
    } cases[] = {
        {"\"asin\":5", 1},
        {"\"title\":5", 1},
        {"\"domainId\":\"1\"", 1},
        {"\"productType\":true", 1},
        {"\"rootCategory\":[1]", 1},
        {"\"categories\":{\"a\":1}", 1},
        {"\"categories\":[1,\"2\",3,{},null]", 2},
        {"\"lastUpdate\":{}", 1},
        {"\"lastPriceChange\":false", 1},
        {"\"stats\":[]", 1},
        {"\"stats\":\"x\"", 1},
        {"\"stats\":{\"current\":[\"abc\",{},[],true,5,null]}", 4},
        {"\"stats\":{\"current\":{}}", 1},
        {"\"stats\":{\"avg90\":\"1,2\",\"avg365\":7}", 2},
        {"\"stats\":{\"salesRankDrops365\":\"12\"}", 1},
        {"\"stats\":{\"buyBoxPrice\":\"1499\",\"buyBoxIsFBA\":1,\"buyBoxSellerId\":7}", 3},
        {"\"stats\":{\"offerCountFBA\":[],\"retrievedOfferCount\":{}}", 2},
        {"\"offers\":{}", 1},
        {"\"offers\":[1,\"x\",[],null]", 3},
        {"\"offers\":[{\"offerCSV\":[\"1\",\"2\",\"3\"]}]", 3},
        {"\"offers\":[{\"offerCSV\":{}}]", 1},
        {"\"offers\":[{\"condition\":[]}]", 1},
        {"\"offers\":[{\"condition\":\"1\",\"isFBA\":\"true\",\"sellerId\":5,\"lastSeen\":true,"
         "\"offerId\":\"7\",\"isPrime\":0,\"isAmazon\":{}}]",
         7},
        {"\"liveOffersOrder\":{}", 1},
        {"\"liveOffersOrder\":[\"0\",1]", 1},
        {"\"fbaFees\":[]", 1},
        {"\"fbaFees\":{\"pickAndPackFee\":\"435\"}", 1},
        {"\"referralFeePercentage\":\"15.0\",\"referralFeePercent\":true", 2},
        {"\"offersSuccessful\":1", 1},
        {"\"monthlySold\":\"300\"", 1},
        {"\"availabilityAmazon\":[]", 1},
        {"\"packageWeight\":{}", 1},
        {"\"parentAsin\":0", 1},
        /* Legal: null wherever Keepa uses it, numbers out of range, unknown keys of any type. */
        {"\"title\":null,\"domainId\":null,\"categories\":null,\"stats\":{\"current\":[null,1],"
         "\"buyBoxIsFBA\":null,\"buyBoxSellerId\":null,\"buyBoxPrice\":null},\"offers\":null,"
         "\"liveOffersOrder\":null,\"fbaFees\":null,\"parentAsin\":null,\"offersSuccessful\":null",
         0},
        {"\"offers\":[{\"offerCSV\":null,\"sellerId\":null,\"condition\":null,\"isFBA\":null}],"
         "\"liveOffersOrder\":[0,null]",
         0},
        {"\"domainId\":1e5,\"monthlySold\":1.5,\"rootCategory\":99999999999999999999,"
         "\"stats\":{\"current\":[2147483648,-1e-400],\"salesRankDrops30\":-3000000000},"
         "\"fbaFees\":{\"pickAndPackFee\":4.35}",
         0},
        {"\"brand\":5,\"csv\":\"x\",\"images\":{},\"stats\":{\"min\":\"x\",\"csv\":{}},"
         "\"offers\":[{\"foo\":[],\"bar\":\"1\"}],\"fbaFees\":{\"lastUpdate\":\"x\"}",
         0},
    };
    char body[1024];
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        /* The mistyped product first, then a clean one: the count is per product. */
        int len = snprintf(body, sizeof(body),
                           "{\"products\":[{\"asin\":\"B0TYPE0001\",%s},"
                           "{\"asin\":\"B0TYPE0002\",\"domainId\":1,\"stats\":{\"current\":[1]}}]}",
                           cases[i].fields);
        assert_true(len > 0 && (size_t)len < sizeof(body));
        static const size_t chunks[] = {0, 1, 7};
        for (size_t c = 0; c < sizeof(chunks) / sizeof(chunks[0]); c++) {
            struct sink *s = sink_new(2);
            char err[256];
            if (decode_chunked(body, (size_t)len, chunks[c], s, NULL, err, sizeof(err), NULL) != 0)
                fail_msg("%s: %s", cases[i].fields, err);
            assert_int_equal(s->n_products, 2);
            assert_string_equal(s->products[0].asin, "B0TYPE0001");
            if (s->products[0].type_errors != cases[i].want)
                fail_msg("%s (chunk %zu): type_errors %u, want %u", cases[i].fields, chunks[c],
                         s->products[0].type_errors, cases[i].want);
            assert_int_equal(s->products[1].type_errors, 0);
            assert_int_equal(s->products[1].domain_id, 1);
            sink_free(s);
        }
    }

    /* A mistyped field keeps its default: the count is the only trace of it. */
    struct sink *s = sink_new(1);
    char err[256];
    assert_int_equal(decode_str("{\"products\":[{\"asin\":\"B0TYPE0001\",\"domainId\":\"1\","
                                "\"stats\":{\"salesRankDrops365\":\"12\",\"current\":[\"5\",6]}}]}",
                                s, NULL, err, sizeof(err)),
                     0);
    assert_int_equal(s->products[0].domain_id, -1);
    assert_int_equal(s->products[0].stats.sales_rank_drops365, -1);
    assert_int_equal(s->products[0].stats.current[0], -1);
    assert_int_equal(s->products[0].stats.current[1], 6);
    assert_int_equal(s->products[0].type_errors, 3);
    sink_free(s);
}

/*
 * "products" that is not null or an array of objects counts in the envelope's shape_errors
 * (the client then fails the answer rather than calling every requested ASIN missing); the
 * well-formed products beside a misplaced value are still delivered.
 */
static void test_products_shape_errors(void **state)
{
    (void)state;
    static const struct {
        const char *body;
        uint32_t want_errors, want_products;
    } cases[] = {
        {"{\"products\":null}", 0, 0},
        {"{\"products\":[]}", 0, 0},
        {"{\"products\":[{\"asin\":\"B0SHAPE001\"}]}", 0, 1},
        {"{\"products\":{}}", 1, 0},
        {"{\"products\":{\"asin\":\"B0SHAPE001\"}}", 1, 0},
        {"{\"products\":\"x\"}", 1, 0},
        {"{\"products\":5}", 1, 0},
        {"{\"products\":[1,\"x\",[],true,null,{\"asin\":\"B0SHAPE001\"}]}", 5, 1},
        {"{\"products\":[[{\"asin\":\"B0SHAPE001\"}]]}", 1, 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        static const size_t chunks[] = {0, 1, 3};
        for (size_t c = 0; c < sizeof(chunks) / sizeof(chunks[0]); c++) {
            struct sink *s = sink_new(2);
            struct kp_envelope env;
            char err[256];
            if (decode_chunked(cases[i].body, strlen(cases[i].body), chunks[c], s, &env, err,
                               sizeof(err), NULL) != 0)
                fail_msg("%s: %s", cases[i].body, err);
            if (env.shape_errors != cases[i].want_errors || s->n_products != cases[i].want_products)
                fail_msg("%s (chunk %zu): shape_errors %u, products %zu; want %u, %u",
                         cases[i].body, chunks[c], env.shape_errors, (size_t)s->n_products,
                         cases[i].want_errors, cases[i].want_products);
            assert_true(env.have & KP_ENV_PRODUCTS);
            sink_free(s);
        }
    }
}

static void test_truncated_everywhere(void **state)
{
    (void)state;
    size_t len = strlen(offers_body);
    for (size_t cut = 0; cut < len; cut++) {
        struct sink *s = sink_new(2);
        char err[256];
        int rc = decode_chunked(offers_body, cut, 3, s, NULL, err, sizeof(err), NULL);
        if (rc != -EBADMSG)
            fail_msg("cut at %zu: rc %d (%s)", cut, rc, err);
        sink_free(s);
    }
}

static void test_truncated_fixture(void **state)
{
    (void)state;
    size_t len;
    char *body = read_fixture("product_B0D8W1YVBX.json", &len);
    for (size_t cut = 0; cut < len; cut += 997) {
        struct sink *s = sink_new(2);
        char err[256];
        int rc = decode_chunked(body, cut, 4096, s, NULL, err, sizeof(err), NULL);
        if (rc != -EBADMSG)
            fail_msg("cut at %zu: rc %d (%s)", cut, rc, err);
        assert_int_equal(s->n_products, 0); /* a half product is never emitted */
        sink_free(s);
    }
    free(body);
}

static void test_huge_string_refused(void **state)
{
    (void)state;
    size_t len = 50u * 1024 * 1024;
    char *body = malloc(len);
    assert_non_null(body);
    memcpy(body, "{\"products\":[{\"title\":\"", 23);
    memset(body + 23, 'a', len - 23);
    struct sink *s = sink_new(1);
    char err[256];
    size_t peak = 0;
    int rc = decode_chunked(body, len, 16384, s, NULL, err, sizeof(err), &peak);
    assert_int_equal(rc, -E2BIG);
    assert_true(peak < 4u * 1024 * 1024);
    sink_free(s);
    free(body);
}

/* Builds about TARGET bytes of /product body: many products with long csv histories. */
static char *big_body(size_t target, size_t *len, size_t *n_products)
{
    size_t cap = target + (1u << 20);
    char *b = malloc(cap);
    assert_non_null(b);
    size_t n = (size_t)snprintf(b, cap,
                                "{\"timestamp\":1,\"tokensLeft\":1,\"refillIn\":1,"
                                "\"refillRate\":1,\"tokenFlowReduction\":0.0,"
                                "\"tokensConsumed\":1,\"processingTimeInMs\":1,"
                                "\"products\":[");
    size_t np = 0;
    while (n < target) {
        n += (size_t)snprintf(b + n, cap - n,
                              "%s{\"asin\":\"B%09zu\",\"title\":\"Product \\u00e9 %zu\","
                              "\"csv\":[[",
                              np ? "," : "", np, np);
        for (int i = 0; i < 4000; i++)
            n += (size_t)snprintf(b + n, cap - n, "%s%d", i ? "," : "", 7000000 + i);
        n += (size_t)snprintf(b + n, cap - n,
                              "]],\"stats\":{\"current\":[1,2,3],\"salesRankDrops30\":%zu}}", np);
        np++;
    }
    n += (size_t)snprintf(b + n, cap - n, "]}");
    *len = n;
    *n_products = np;
    return b;
}

static void test_50mb_body_bounded_memory(void **state)
{
    (void)state;
    size_t len, np;
    char *body = big_body(50u * 1024 * 1024, &len, &np);
    struct sink *s = sink_new(0);
    char err[256];
    size_t peak = 0;
    assert_int_equal(decode_chunked(body, len, 16384, s, NULL, err, sizeof(err), &peak), 0);
    assert_int_equal(s->n_products, np);
    /* The decoder's own heap (struct + yajl buffers) stays far below the body size. */
    assert_true(peak < 1u * 1024 * 1024);
    sink_free(s);

    /* Over a 16 MiB limit, the same body is refused cleanly. */
    struct kp_decode_opts o = {.max_body_bytes = 16u * 1024 * 1024};
    struct kp_decoder *d = kp_decoder_new(&o, NULL);
    assert_int_equal(kp_decoder_feed(d, body, len), -EFBIG);
    assert_int_equal(kp_decoder_finish(d), -EFBIG);
    assert_non_null(strstr(kp_decoder_error(d), "limit"));
    kp_decoder_free(d);
    free(body);
}

static void test_consumer_stop_and_reset(void **state)
{
    (void)state;
    struct sink *s = sink_new(2);
    s->stop_after = 1;
    struct kp_decode_cbs cbs = sink_cbs(s);
    struct kp_decoder *d = kp_decoder_new(NULL, &cbs);
    assert_int_equal(kp_decoder_feed(d, offers_body, strlen(offers_body)), -ECANCELED);
    assert_int_equal(s->n_products, 1);
    /* Reset makes it reusable for a new body. */
    s->stop_after = 0;
    s->n_products = 0;
    assert_int_equal(kp_decoder_reset(d), 0);
    assert_int_equal(kp_decoder_feed(d, offers_body, strlen(offers_body)), 0);
    assert_int_equal(kp_decoder_finish(d), 0);
    assert_int_equal(s->n_products, 2);
    assert_true(kp_decoder_envelope(d)->tokens_left == 54.5);
    kp_decoder_free(d);
    sink_free(s);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixture_product_b0f7),
        cmocka_unit_test(test_fixture_product_b0d8),
        cmocka_unit_test(test_fixture_deal_page),
        cmocka_unit_test(test_sim_body_offers),
        cmocka_unit_test(test_sim_lightning_and_bestsellers),
        cmocka_unit_test(test_lightning_odd_shapes),
        cmocka_unit_test(test_offers_and_live_order),
        cmocka_unit_test(test_offers_without_live_order_and_order_first),
        cmocka_unit_test(test_skipped_subtrees),
        cmocka_unit_test(test_many_offers_bounded),
        cmocka_unit_test(test_sellers_query_error),
        cmocka_unit_test(test_int_array_fast_path_same_as_yajl),
        cmocka_unit_test(test_hostile_small),
        cmocka_unit_test(test_type_errors),
        cmocka_unit_test(test_products_shape_errors),
        cmocka_unit_test(test_truncated_everywhere),
        cmocka_unit_test(test_truncated_fixture),
        cmocka_unit_test(test_huge_string_refused),
        cmocka_unit_test(test_50mb_body_bounded_memory),
        cmocka_unit_test(test_consumer_stop_and_reset),
    };
    return KD_RUN_TESTS(tests, argc, argv);
}
