/*
 * test_sim_units.c: unit tests of kdeals-sim's pure parts: the catalog (ASIN mapping,
 * determinism, deal share, the market behind every offer-derived value, the calibrated feed's
 * window and its view of a product at a past minute), the token bucket, the selection / product
 * / fault parsers and deal matching; the truth (sim/truth.h): its inputs equal, field by field,
 * what judge/inputs.c reads from the rendered and decoded answer, and its timelines; synthetic
 * products for ASINs outside the catalog.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "judge/inputs.h"
#include "kd_test.h"
#include "keepa/decode.h"
#include "sim/bucket.h"
#include "sim/catalog.h"
#include "sim/deals.h"
#include "sim/faults.h"
#include "sim/render.h"
#include "sim/selection.h"
#include "sim/truth.h"

#define MS 1000000LL

static void test_asin_roundtrip(void **state)
{
    (void)state;
    struct sim_catalog c;
    assert_int_equal(sim_catalog_init(&c, 42, 300000, 1.0, SIM_ECONOMY_RICH), 0);
    for (int64_t i = 0; i < 300000; i += 997) {
        char a[11];
        sim_catalog_asin(&c, i, a);
        assert_int_equal(strlen(a), 10);
        assert_memory_equal(a, "B0", 2);
        assert_int_equal(sim_catalog_lookup(&c, a), i);
    }
    char last[11];
    sim_catalog_asin(&c, 299999, last);
    assert_int_equal(sim_catalog_lookup(&c, last), 299999);
    /* ASINs outside the catalog, malformed or lower-case are unknown. */
    assert_int_equal(sim_catalog_lookup(&c, "B0ZZZZZZZZ") == -1 ||
                         sim_catalog_lookup(&c, "B0ZZZZZZZZ") < 300000,
                     1);
    assert_int_equal(sim_catalog_lookup(&c, "XXXXXXXXXX"), -1);
    assert_int_equal(sim_catalog_lookup(&c, "B0abc"), -1);
    assert_int_equal(sim_catalog_lookup(&c, "b0aaaaaaaa"), -1);
    /* Another seed maps the same index elsewhere. */
    struct sim_catalog d;
    sim_catalog_init(&d, 43, 300000, 1.0, SIM_ECONOMY_RICH);
    char a1[11], a2[11];
    sim_catalog_asin(&c, 5, a1);
    sim_catalog_asin(&d, 5, a2);
    assert_string_not_equal(a1, a2);
}

static void test_seller_roundtrip(void **state)
{
    (void)state;
    struct sim_catalog c;
    sim_catalog_init(&c, 7, 1000, 1.0, SIM_ECONOMY_RICH);
    for (int64_t i = 0; i < SIM_SELLERS; i += 37) {
        char id[14];
        sim_catalog_seller_id(&c, i, id);
        assert_int_equal(strlen(id), 13);
        assert_int_equal(sim_catalog_seller_lookup(&c, id), i);
    }
    assert_int_equal(sim_catalog_seller_lookup(&c, "A"), -1);
}

static void test_catalog_deterministic_and_moving(void **state)
{
    (void)state;
    struct sim_catalog c;
    sim_catalog_init(&c, 9, 5000, 1.0, SIM_ECONOMY_RICH);
    struct sim_product a, b;
    int changed = 0;
    for (int64_t i = 0; i < 200; i++) {
        sim_catalog_product(&c, i, 8000000, &a);
        sim_catalog_product(&c, i, 8000000, &b);
        assert_memory_equal(&a, &b, sizeof(a));
        assert_true(a.last_update <= a.keepa_min);
        assert_true(a.cur[1] > 0 && a.cur[3] > 0);
        assert_int_equal(a.cur[8], -1); /* a type without data */
        sim_catalog_product(&c, i, 8000000 + 3 * 1440, &b);
        changed += a.cur[2] != b.cur[2];
    }
    assert_true(changed > 50); /* prices move over three days */
    /* volatility 0: prices never move */
    sim_catalog_init(&c, 9, 5000, 0.0, SIM_ECONOMY_RICH);
    sim_catalog_product(&c, 3, 8000000, &a);
    sim_catalog_product(&c, 3, 8000000 + 10 * 1440, &b);
    assert_int_equal(a.cur[2], b.cur[2]);
    assert_int_equal(a.cur[1], b.cur[1]);
}

static void test_meaningful_deal_share(void **state)
{
    (void)state;
    struct sim_catalog c;
    sim_catalog_init(&c, 1, 20000, 1.0, SIM_ECONOMY_RICH);
    /* A typical reseller filter: used price >= 20 % under the 90-day average, rank drops. */
    int deals = 0;
    struct sim_product p;
    for (int64_t i = 0; i < 20000; i++) {
        sim_catalog_product(&c, i, 8100000, &p);
        if (p.cur[2] > 0 && p.avg90[2] > 0 && p.cur[2] * 100 <= p.avg90[2] * 80 &&
            p.cur[2] < p.avg365[2] && p.drops90 > 0)
            deals++;
    }
    assert_true(deals > 20000 / 20); /* more than 5 % */
    assert_true(deals < 20000 / 2);
}

static void test_bucket_rules(void **state)
{
    (void)state;
    struct sim_bucket b;
    struct sim_bucket_view v;
    assert_int_equal(sim_bucket_init(&b, 1000, 4, 5, 3, 0), 0);
    /* admitted when > 0, charged in full, may go negative */
    assert_int_equal(sim_bucket_charge(&b, 10 * MS, 10, 0, &v), 1);
    assert_int_equal(v.balance, -7);
    assert_int_equal(sim_bucket_charge(&b, 20 * MS, 1, 0, &v), 0);
    assert_int_equal(v.balance, -7);
    assert_true(v.refill_in_ms > 0 && v.refill_in_ms <= 1000);
    /* one tick at 1000 ms adds the rate */
    sim_bucket_peek(&b, 1000 * MS, &v);
    assert_int_equal(v.balance, -2);
    assert_int_equal(v.refill_in_ms, 1000);
    /* many ticks: capped at rate * minutes = 20, the rest expires */
    sim_bucket_peek(&b, 100000 * MS, &v);
    assert_int_equal(v.balance, 20);
    int64_t earned, consumed, expired, bal, rate;
    sim_bucket_totals(&b, 100000 * MS, &earned, &consumed, &expired, &bal, &rate);
    assert_int_equal(earned, 27);
    assert_int_equal(consumed, 10);
    assert_int_equal(expired, 100 * 5 - 27);
    /* forced refusal charges nothing; zero cost admitted */
    assert_int_equal(sim_bucket_charge(&b, 100000 * MS, 3, 1, &v), 0);
    assert_int_equal(v.balance, 20);
    sim_bucket_set_balance(&b, 100000 * MS, 0);
    assert_int_equal(sim_bucket_charge(&b, 100000 * MS, 0, 0, &v), 0);
    sim_bucket_set_rate(&b, 100000 * MS, 7);
    sim_bucket_peek(&b, 101000 * MS, &v);
    assert_int_equal(v.balance, 7);
    sim_bucket_destroy(&b);
}

static void test_selection_lenient(void **state)
{
    (void)state;
    struct sim_selection s;
    char err[128];
    const char *aa = "{\"domainId\":\"1\",\"includeCategories\":[283155],\"priceTypes\":[2],"
                     "\"deltaRange\":[0,2147483647],\"deltaPercentRange\":[10,2147483647],"
                     "\"salesRankRange\":[10000,-1],\"currentRange\":[2000,45100],"
                     "\"minRating\":10,\"isRangeEnabled\":true,\"isFilterEnabled\":true,"
                     "\"singleVariation\":true,\"sortType\":4,\"dateRange\":4,"
                     "\"warehouseConditions\":[2,3,4,5],\"unknownKey\":{\"x\":[1]}}";
    assert_int_equal(sim_selection_parse(aa, strlen(aa), &s, err, sizeof(err)), 0);
    assert_int_equal(s.domain_id, 1);
    assert_int_equal(s.price_type, 2);
    assert_int_equal(s.date_range, 3);
    assert_int_equal(s.sort_type, 4);
    assert_int_equal(s.n_include, 1);
    assert_true(s.sales_rank.set && s.sales_rank.hi == -1);
    assert_int_equal(s.min_rating, 10);
    const char *scalar = "{\"priceTypes\":0,\"dateRange\":\"2\",\"sortType\":\"4\"}";
    assert_int_equal(sim_selection_parse(scalar, strlen(scalar), &s, err, sizeof(err)), 0);
    assert_int_equal(s.price_type, 0);
    assert_int_equal(s.date_range, 0); /* strings ignored */
    assert_int_equal(s.sort_type, 1);
    const char *bad[] = {"",
                         "not json",
                         "[1,2]",
                         "{\"domainId\":1}",
                         "{\"priceTypes\":[2,3]}",
                         "{\"priceTypes\":[4]}",
                         "{\"priceTypes\":[2],\"page\":-1}",
                         "{\"priceTypes\":[2]"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(sim_selection_parse(bad[i], strlen(bad[i]), &s, err, sizeof(err)),
                         -EINVAL);
    /* nesting bombs and oversized input are refused before yajl */
    size_t n = 100000;
    char *deep = malloc(n + 1);
    memset(deep, '[', n);
    deep[n] = '\0';
    assert_int_equal(sim_selection_parse(deep, n, &s, err, sizeof(err)), -E2BIG);
    free(deep);
    char *big = malloc(SIM_SEL_MAX_BYTES + 10);
    memset(big, ' ', SIM_SEL_MAX_BYTES + 10);
    assert_int_equal(sim_selection_parse(big, SIM_SEL_MAX_BYTES + 10, &s, err, sizeof(err)),
                     -E2BIG);
    free(big);
}

struct kv {
    const char *k[12];
    const char *v[12];
};
static const char *get_kv(void *ctx, const char *name)
{
    struct kv *p = ctx;
    for (int i = 0; i < 12 && p->k[i]; i++)
        if (strcmp(p->k[i], name) == 0)
            return p->v[i];
    return NULL;
}

static void test_product_params(void **state)
{
    (void)state;
    struct sim_product_req r;
    char err[128];
    char list[101 * 11 + 1];
    list[0] = '\0';
    for (int i = 0; i < 100; i++)
        strcat(list, i ? ",B000000000" : "B000000000");
    struct kv q = {{"asin", "stats", "history", "days", "offers", "update"},
                   {list, "90", "0", "0", "20", "0"}};
    assert_int_equal(sim_product_req_parse(get_kv, &q, 0, &r, err, sizeof(err)), 0);
    assert_int_equal(r.n_ids, 100);
    assert_int_equal(r.stats_mode, SIM_STATS_DAYS);
    assert_int_equal(r.history, 0);
    assert_int_equal(r.offers, 20);
    assert_int_equal(r.update, 0);
    strcat(list, ",B000000000");
    assert_int_equal(sim_product_req_parse(get_kv, &q, 0, &r, err, sizeof(err)), -EINVAL);
    struct kv s1 = {{"asin", "stats"}, {"B000000001", "1444000000000,1445000000000"}};
    assert_int_equal(sim_product_req_parse(get_kv, &s1, 0, &r, err, sizeof(err)), 0);
    assert_int_equal(r.stats_mode, SIM_STATS_RANGE);
    struct kv s2 = {{"asin", "stats"}, {"B000000001", "2015-10-20,2015-12-24"}};
    assert_int_equal(sim_product_req_parse(get_kv, &s2, 0, &r, err, sizeof(err)), 0);
    assert_int_equal(r.stats_from_ms, 1445299200000LL);
    struct kv s3 = {{"asin", "stats"}, {"B000000001", "yesterday"}};
    assert_int_equal(sim_product_req_parse(get_kv, &s3, 0, &r, err, sizeof(err)), -EINVAL);
    struct kv z = {{"asin", "offers"}, {"B000000001", "0"}};
    assert_int_equal(sim_product_req_parse(get_kv, &z, 0, &r, err, sizeof(err)), -EINVAL);
    assert_int_equal(sim_product_req_parse(get_kv, &z, 1, &r, err, sizeof(err)), 0);
    assert_int_equal(r.offers, 0);
    struct kv both = {{"asin", "code"}, {"B000000001", "0747474801770"}};
    assert_int_equal(sim_product_req_parse(get_kv, &both, 0, &r, err, sizeof(err)), -EINVAL);
    struct kv none = {{"domain"}, {"1"}};
    assert_int_equal(sim_product_req_parse(get_kv, &none, 0, &r, err, sizeof(err)), -EINVAL);
}

static void test_fault_spec(void **state)
{
    (void)state;
    struct sim_fault_spec f;
    char err[128];
    const char *spec = "latency_ms=5-10,offers_latency_ms=2000-20000,http500=0.1,http503=0.2,"
                       "storm429=3,reset=0.01,truncate=0.02,malformed=0.03,offers_fail=0.5,"
                       "no_products=0.04,refill_flap=12:5,charge_errors=1";
    assert_int_equal(sim_faults_parse(spec, &f, err, sizeof(err)), 0);
    assert_int_equal(f.latency_lo_ms, 5);
    assert_int_equal(f.offers_latency_hi_ms, 20000);
    assert_int_equal(f.storm429, 3);
    assert_true(f.flap_on && f.flap_a == 12 && f.flap_b == 5);
    assert_int_equal(f.charge_errors, 1);
    char text[512];
    sim_faults_format(&f, text, sizeof(text));
    struct sim_fault_spec g;
    assert_int_equal(sim_faults_parse(text, &g, err, sizeof(err)), 0);
    assert_memory_equal(&f, &g, sizeof(f));
    assert_int_equal(sim_faults_parse("latency_ms=7", &f, err, sizeof(err)), 0);
    assert_int_equal(f.latency_hi_ms, 7);
    assert_int_equal(sim_faults_parse("reset_all=1", &f, err, sizeof(err)), 0);
    assert_true(f.reset == 1.0);
    assert_int_equal(sim_faults_parse("http500=0.5,clear", &f, err, sizeof(err)), 0);
    assert_true(f.p500 == 0.0);
    const char *bad[] = {"http500=2",   "nope=1",        "latency_ms=9-3",
                         "storm429=-1", "refill_flap=3", "http500"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(sim_faults_parse(bad[i], &f, err, sizeof(err)), -EINVAL);
    /* storm429 counts down; draws are reproducible from the seed */
    struct sim_faults a, b;
    sim_faults_parse("storm429=2,http500=0.5", &f, err, sizeof(err));
    sim_faults_init(&a, 5, &f);
    sim_faults_init(&b, 5, &f);
    struct sim_fault_draw da, db;
    int storms = 0;
    for (int i = 0; i < 50; i++) {
        sim_faults_draw(&a, 1, 0, &da);
        sim_faults_draw(&b, 1, 0, &db);
        assert_memory_equal(&da, &db, sizeof(da));
        storms += da.storm429;
    }
    assert_int_equal(storms, 2);
    sim_faults_destroy(&a);
    sim_faults_destroy(&b);
}

static void test_deal_match_rules(void **state)
{
    (void)state;
    struct sim_catalog c;
    sim_catalog_init(&c, 3, 4000, 1.0, SIM_ECONOMY_RICH);
    struct sim_selection s;
    char err[64];
    const char *j = "{\"priceTypes\":[2],\"dateRange\":3,\"deltaPercentRange\":[20,-1],"
                    "\"isRangeEnabled\":true}";
    assert_int_equal(sim_selection_parse(j, strlen(j), &s, err, sizeof(err)), 0);
    struct sim_product p;
    int matched = 0;
    for (int64_t i = 0; i < 4000; i++) {
        sim_catalog_product(&c, i, 8200000, &p);
        struct sim_deal_metrics m;
        sim_deal_metrics(&p, 3, 2, &m);
        int expect = !p.stale && p.last_update >= p.keepa_min - 720 && m.cur > 0 && m.avg > 0 &&
                     m.delta > 0 && m.delta_pct >= 20;
        assert_int_equal(sim_deal_match(&c, &s, &p, 1, NULL), expect);
        matched += expect;
    }
    assert_true(matched > 100);
    struct sim_deal_result r;
    assert_int_equal(sim_deal_scan(&c, &s, 8200000, 0, &r), 0);
    assert_int_equal((int)r.n, matched);
    sim_deal_result_free(&r);
}

static void test_economy_names(void **state)
{
    (void)state;
    enum sim_economy e;
    assert_int_equal(sim_economy_parse("rich", &e), 0);
    assert_int_equal(e, SIM_ECONOMY_RICH);
    assert_int_equal(sim_economy_parse("Calibrated", &e), 0);
    assert_int_equal(e, SIM_ECONOMY_CALIBRATED);
    assert_int_equal(sim_economy_parse("poor", &e), -EINVAL);
    assert_string_equal(sim_economy_name(SIM_ECONOMY_RICH), "rich");
    assert_string_equal(sim_economy_name(SIM_ECONOMY_CALIBRATED), "calibrated");
    struct sim_catalog c;
    assert_int_equal(sim_catalog_init(&c, 1, 10, 1.0, (enum sim_economy)7), -EINVAL);
}

/* The feed's cheap view of a product at a past minute is exactly the product at that minute. */
static void test_calibrated_point_is_the_product_then(void **state)
{
    (void)state;
    struct sim_catalog c;
    sim_catalog_init(&c, 4, 5000, 1.0, SIM_ECONOMY_CALIBRATED);
    struct sim_product *p = malloc(sizeof(*p)), *q = malloc(sizeof(*q));
    assert_non_null(p);
    assert_non_null(q);
    int dips = 0, points = 0;
    for (int64_t i = 0; i < 5000; i += 17) {
        sim_catalog_product(&c, i, 8300000, p);
        for (int dr = 0; dr < SIM_DEAL_RANGES; dr++) {
            int64_t m[SIM_WINDOW_MAX];
            int n = sim_catalog_window(&c, p, dr, m, SIM_WINDOW_MAX);
            assert_true(n >= 1 && n <= SIM_WINDOW_MAX);
            assert_int_equal(m[n - 1], 8300000); /* now is always looked at */
            for (int k = 0; k < n; k++) {
                assert_true(k == 0 || m[k - 1] < m[k]);
                sim_catalog_product(&c, i, m[k], q);
                for (int pt = 0; pt <= 3; pt++) {
                    struct sim_point v;
                    sim_catalog_point(&c, p, pt, dr, m[k], &v);
                    assert_int_equal(v.cur, q->cur[pt]);
                    assert_int_equal(v.avg, q->avg_dr[dr][pt]);
                    assert_int_equal(v.last, q->last[pt]);
                    assert_int_equal(v.rank, q->cur[3]);
                    assert_int_equal(v.amazon, q->cur[0] > 0);
                    points++;
                }
            }
        }
        for (int64_t e = p->epoch - 15; e <= p->epoch; e++) {
            int64_t s0, s1;
            dips += sim_catalog_dip(&c, p, e, &s0, &s1, NULL);
        }
    }
    assert_true(points > 1000);
    assert_true(dips > 0); /* cheap copies come and go */
    free(p);
    free(q);
}

/* One offer list behind every offer-derived value, in both economies. */
static void test_market_is_consistent(void **state)
{
    (void)state;
    for (int e = 0; e < 2; e++) {
        struct sim_catalog c;
        sim_catalog_init(&c, 6, 3000, 1.0, (enum sim_economy)e);
        struct sim_product *p = malloc(sizeof(*p));
        assert_non_null(p);
        int amazon = 0, bb = 0;
        for (int64_t i = 0; i < 3000; i += 3) {
            sim_catalog_product(&c, i, 8400000 + i, p);
            const struct sim_market *m = &p->mkt;
            int64_t min_new = -1, min_new_landed = -1, min_used = -1, min_used_landed = -1;
            int n_new = 0, n_used = 0, amz = 0;
            for (int k = 0; k < m->n; k++) {
                const struct sim_offer *o = &m->offers[k];
                if (!o->live)
                    continue;
                int64_t landed = o->price + o->ship;
                if (o->cond == 1) {
                    n_new++;
                    amz += o->amazon;
                    if (min_new < 0 || o->price < min_new)
                        min_new = o->price;
                    if (min_new_landed < 0 || landed < min_new_landed)
                        min_new_landed = landed;
                } else {
                    n_used++;
                    if (min_used < 0 || o->price < min_used)
                        min_used = o->price;
                    if (min_used_landed < 0 || landed < min_used_landed)
                        min_used_landed = landed;
                }
            }
            assert_int_equal(p->cur[1], min_new);
            assert_int_equal(p->cur[2], min_used);
            assert_int_equal(p->cur[11], n_new);
            assert_int_equal(p->cur[12], n_used);
            assert_int_equal(p->cur[0] > 0, amz);
            assert_int_equal(p->availability_amazon, amz ? 0 : -1);
            amazon += amz;
            if (m->bb >= 0 && !m->bb_is_used) {
                assert_true(p->cur[18] + m->ship[18] >= min_new_landed);
                bb++;
            }
            if (m->bb_used >= 0)
                assert_true(p->cur[32] + m->ship[32] >= min_used_landed);
            assert_true(p->mkt.n_live == n_new + n_used);
        }
        assert_true(amazon > 50 && bb > 500);
        free(p);
    }
}

/*
 * The calibrated feed lists every product that qualifies now and others that qualified
 * earlier in the window; each records a moment at which it did.
 */
/* Scans with a memo answer exactly what scans without one answer, minute after minute across
 * price epochs, forwards, backwards and for another selection after a reset; and the memo is
 * what makes a repeated scan cheap (it is filled). */
static void test_deal_scan_memo_is_exact(void **state)
{
    (void)state;
    struct sim_catalog c;
    sim_catalog_init(&c, 5, 3000, 1.0, SIM_ECONOMY_CALIBRATED);
    const char *sels[] = {"{\"priceTypes\":[2],\"dateRange\":3,\"deltaPercentRange\":[10,100],"
                          "\"isRangeEnabled\":true,\"sortType\":4}",
                          "{\"priceTypes\":[1],\"dateRange\":1,\"isRisers\":true,\"sortType\":1,"
                          "\"isFilterEnabled\":true,\"mustHaveAmazonOffer\":false}"};
    struct sim_deal_memo memo;
    assert_int_equal(sim_deal_memo_init(&memo, c.products), 0);
    assert_int_equal(sim_deal_memo_init(&(struct sim_deal_memo){0}, 0), -EINVAL);
    const int64_t minutes[] = {8500000, 8500001, 8500007, 8500150, 8500359, 8500360,
                               8500401, 8500777, 8500778, 8501300, 8500779, 8499000,
                               8499001, 8507200, 8507201, 8514500, 8514859, 8514860};
    for (size_t si = 0; si < sizeof(sels) / sizeof(sels[0]); si++) {
        struct sim_selection s;
        char err[64];
        assert_int_equal(sim_selection_parse(sels[si], strlen(sels[si]), &s, err, sizeof(err)), 0);
        sim_deal_memo_reset(&memo);
        for (size_t m = 0; m < sizeof(minutes) / sizeof(minutes[0]); m++) {
            struct sim_deal_result a, b;
            assert_int_equal(sim_deal_scan(&c, &s, minutes[m], 0, &a), 0);
            assert_int_equal(sim_deal_scan_memo(&c, &s, minutes[m], 0, &memo, &b), 0);
            assert_true(a.n > 0);
            assert_int_equal(a.n, b.n);
            assert_memory_equal(a.idx, b.idx, a.n * sizeof(a.idx[0]));
            for (size_t i = 0; i < a.n; i++) {
                assert_int_equal(a.hit[i].minute, b.hit[i].minute);
                assert_int_equal(a.hit[i].cur, b.hit[i].cur);
                assert_int_equal(a.hit[i].avg, b.hit[i].avg);
                assert_int_equal(a.hit[i].delta, b.hit[i].delta);
                assert_int_equal(a.hit[i].delta_pct, b.hit[i].delta_pct);
            }
            assert_memory_equal(a.root_counts, b.root_counts, sizeof(a.root_counts));
            sim_deal_result_free(&a);
            sim_deal_result_free(&b);
        }
    }
    int64_t kept = 0, levels = 0, statics = 0;
    for (int64_t i = 0; i < memo.n; i++) {
        kept += memo.e[i].epoch != INT64_MIN;
        levels += memo.e[i].levels_epoch != INT64_MIN;
        statics += memo.e[i].has_static;
    }
    assert_true(kept > memo.n / 2);
    assert_true(levels > memo.n / 2); /* the levels are kept, not drawn at every scan */
    assert_true(statics > memo.n / 2);
    /* a bare product given its levels is the light product, byte for byte */
    struct sim_product *a = malloc(sizeof(*a)), *b = malloc(sizeof(*b));
    assert_non_null(a);
    assert_non_null(b);
    for (int64_t i = 0; i < 50; i++) {
        sim_catalog_product_light(&c, i, 8514860, a);
        sim_catalog_product_bare(&c, i, 8514860, b);
        sim_catalog_product_levels(&c, b);
        assert_memory_equal(a, b, sizeof(*a));
        /* and the bare product from its kept static draws is the bare one */
        struct sim_product_static st;
        sim_catalog_product_bare(&c, i, 8500000, a);
        sim_catalog_product_static(a, &st);
        sim_catalog_product_bare(&c, i, 8514860, a);
        sim_catalog_product_bare_from(&c, &st, i, 8514860, b);
        assert_memory_equal(a, b, sizeof(*a));
    }
    free(a);
    free(b);
    sim_deal_memo_free(&memo);
}

static void test_calibrated_feed_window(void **state)
{
    (void)state;
    struct sim_catalog c;
    sim_catalog_init(&c, 8, 6000, 1.0, SIM_ECONOMY_CALIBRATED);
    struct sim_selection s;
    char err[64];
    const char *j = "{\"priceTypes\":[2],\"dateRange\":3,\"deltaPercentRange\":[10,-1],"
                    "\"isRangeEnabled\":true,\"sortType\":4}";
    assert_int_equal(sim_selection_parse(j, strlen(j), &s, err, sizeof(err)), 0);
    struct sim_product *p = malloc(sizeof(*p));
    assert_non_null(p);
    int now = 0, earlier = 0;
    for (int64_t i = 0; i < 6000; i++) {
        sim_catalog_product(&c, i, 8500000, p);
        struct sim_deal_metrics m;
        sim_deal_metrics(p, 3, 2, &m);
        int fresh = !p->stale && p->last_update >= p->keepa_min - 720;
        int qualifies_now = fresh && m.cur > 0 && m.avg > 0 && m.delta_pct >= 10;
        struct sim_deal_hit h;
        int listed = sim_deal_match(&c, &s, p, 1, &h);
        if (qualifies_now)
            assert_true(listed);
        if (!listed)
            continue;
        assert_true(h.delta_pct >= 10 && h.delta > 0);
        assert_true(h.minute <= 8500000 && h.minute >= 8500000 - 17 * c.epoch_len_min);
        if (qualifies_now)
            assert_true(h.delta_pct >= m.delta_pct); /* the deepest moment is recorded */
        now += qualifies_now;
        earlier += !qualifies_now;
    }
    assert_true(now > 100 && earlier > 100);
    free(p);
}

/* ---------- the truth ---------- */

struct decoded {
    struct kp_product p;
    int n;
};

static int keep_product(const struct kp_product *p, void *ud)
{
    struct decoded *d = ud;
    d->p = *p;
    d->n++;
    return 0;
}

/* Renders P as this simulator's /product answer with stats=180 and OFFERS offers, decodes it
 * with kdeals' decoder into D. */
static void render_decode(const struct sim_catalog *c, const struct sim_product *p, int offers,
                          struct decoded *d)
{
    struct sim_product_req req;
    memset(&req, 0, sizeof(req));
    req.stats_mode = SIM_STATS_DAYS;
    req.stats_days = 180;
    req.history = 0;
    req.offers = offers;
    req.update = 1;
    struct sim_product_opts o = {&req, 0};
    struct sim_buf b;
    sim_buf_init(&b);
    struct sim_envelope e = {kd_keepa_min_to_ms(p->keepa_min), 100, 1000, 5, 1, 1};
    sim_render_envelope(&b, &e);
    sim_buf_puts(&b, "\"products\":[");
    sim_render_product(&b, c, p, &o);
    sim_buf_puts(&b, "]}");
    assert_true(sim_buf_ok(&b));
    struct kp_decode_cbs cbs = {0};
    cbs.on_product = keep_product;
    cbs.ud = d;
    d->n = 0;
    struct kp_envelope env;
    char err[256] = "";
    int rc = kp_decode_buffer(b.data, b.len, NULL, &cbs, &env, err, sizeof(err));
    if (rc != 0)
        fail_msg("decode: %s", err);
    assert_int_equal(d->n, 1);
    sim_buf_free(&b);
}

#define CMP_I64(name, size)                                                                        \
    if (a->name != b->name)                                                                        \
        fail_msg("%s idx %lld: %s: truth %lld, decoded answer %lld", what, (long long)idx, #name,  \
                 (long long)a->name, (long long)b->name);
#define CMP_I32  CMP_I64
#define CMP_U8   CMP_I64
#define CMP_BOOL CMP_I64
#define CMP_STR(name, size)                                                                        \
    if (strcmp(a->name, b->name) != 0)                                                             \
        fail_msg("%s idx %lld: %s: truth %s, decoded answer %s", what, (long long)idx, #name,      \
                 a->name, b->name);
#define CMP(kind, name, size) CMP_##kind(name, size)

static void inputs_equal(const char *what, int64_t idx, const struct jd_inputs *a,
                         const struct jd_inputs *b)
{
    JD_INPUT_FIELDS(CMP)
}

/* The oracle's inputs are exactly what kdeals reads from the simulator's full fetch: every
 * field, both economies, offers 20 and 100, every buy condition, catalog and synthetic. */
static void test_truth_inputs_equal_decoded_answer(void **state)
{
    (void)state;
    static const char *const EXT[] = {"B0D8W1YVBX", "0545010225", "B07XJ8C8F5", "1400079985"};
    struct sim_product *p = malloc(sizeof(*p));
    struct decoded *d = malloc(sizeof(*d));
    assert_non_null(p);
    assert_non_null(d);
    int offered = 0, bought = 0, deals = 0;
    for (int e = 0; e < 2; e++) {
        struct sim_catalog c;
        assert_int_equal(sim_catalog_init(&c, 3, 20000, 1.0, (enum sim_economy)e), 0);
        for (int64_t k = 0; k < 1200 + 4; k++) {
            int64_t idx = k < 1200 ? k * 16 + e : sim_catalog_resolve(&c, EXT[k - 1200]);
            int64_t minute = 8000000 + k * 37;
            sim_catalog_product(&c, idx, minute, p);
            if (k >= 1200)
                snprintf(p->asin, sizeof(p->asin), "%s", EXT[k - 1200]);
            int offers = k % 3 == 0 ? 100 : 20;
            render_decode(&c, p, offers, d);
            struct jd_rules r;
            jd_rules_default(&r);
            r.buy_condition = (int)(k % 4);
            int64_t at_ms = kd_keepa_min_to_ms(minute);
            struct jd_inputs truth, read;
            sim_truth_inputs(&c, p, offers, &r, at_ms, &truth);
            jd_inputs_from_product(&d->p, &r, at_ms, JD_READ_AUTO, &read);
            inputs_equal(e ? "rich" : "calibrated", idx, &truth, &read);
            offered += p->mkt.n_live > 0;
            bought += truth.buy_source == JD_BUY_OFFER;
            struct sim_truth t;
            sim_truth_judge(&c, p, offers, &r, &t);
            struct jd_verdict v;
            jd_judge(&read, &r, &v);
            assert_int_equal(t.v.deal, v.deal);
            assert_int_equal(t.v.profit_cents, v.profit_cents);
            deals += v.deal;
        }
    }
    /* the comparison covered real offers and both verdicts */
    assert_true(offered > 1500);
    assert_true(bought > 1000);
    assert_true(deals > 0);
    free(p);
    free(d);
}

/* A timeline's segments are the moments a judgement at any minute calls a deal. */
static void test_truth_timeline_matches_pointwise(void **state)
{
    (void)state;
    struct sim_catalog c;
    assert_int_equal(sim_catalog_init(&c, 1, 20000, 1.0, SIM_ECONOMY_RICH), 0);
    struct jd_rules r;
    jd_rules_default(&r);
    struct sim_product *p = malloc(sizeof(*p));
    struct sim_truth *t = malloc(sizeof(*t));
    struct sim_truth_seg segs[64];
    int64_t from = 8000000, to = from + 2 * 1440;
    int with_deals = 0;
    for (int64_t idx = 0; idx < 20000 && with_deals < 5; idx += 7) {
        struct sim_truth_span span;
        assert_int_equal(
            sim_truth_timeline(&c, idx, NULL, from, to, 60, 20, &r, NULL, p, segs, 64, &span), 0);
        if (span.n_segs_total == 0)
            continue;
        with_deals++;
        int64_t sum = 0;
        for (int k = 0; k < span.n_segs; k++) {
            assert_true(segs[k].start < segs[k].end);
            assert_true(k == 0 || segs[k - 1].end < segs[k].start); /* merged, in order */
            sum += segs[k].end - segs[k].start;
        }
        assert_int_equal(sum, span.deal_min);
        assert_int_equal(span.first_deal, segs[0].start);
        /* every 17 minutes: a deal exactly inside a segment (the rich economy's sell basis is
         * the Buy Box or an offer, which move only at the market's changes) */
        for (int64_t m = from; m < to; m += 17) {
            sim_catalog_product(&c, idx, m, p);
            sim_truth_judge(&c, p, 20, &r, t);
            int inside = 0;
            for (int k = 0; k < span.n_segs; k++)
                inside |= m >= segs[k].start && m < segs[k].end;
            if (t->v.basis >= JD_BASIS_AVG90 && t->v.basis <= JD_BASIS_AVG90_365)
                continue; /* an average's drift between two judged moments */
            if (inside != t->v.deal)
                fail_msg("idx %lld minute %lld: deal %d, in a segment %d", (long long)idx,
                         (long long)m, t->v.deal, inside);
        }
        assert_true(span.peak.peak_profit_cents >= r.min_profit_cents);
    }
    assert_int_equal(with_deals, 5);
    free(p);
    free(t);
}

/* Rules from query parameters: names, values and errors. */
static const char *const *rule_params;
static const char *rule_get(void *ctx, const char *name)
{
    (void)ctx;
    for (const char *const *kv = rule_params; *kv; kv += 2)
        if (strcmp(kv[0], name) == 0)
            return kv[1];
    return NULL;
}

static void test_truth_rules_from_params(void **state)
{
    (void)state;
    static const char *const ok[] = {"min_roi_bp",
                                     "4000",
                                     "buy_condition",
                                     "new",
                                     "basis_used",
                                     "avg90,buy_box",
                                     "fulfilment",
                                     "fbm",
                                     "unknown",
                                     "pass",
                                     "media",
                                     "283155,5174",
                                     "cap_at_buy_box",
                                     "0",
                                     NULL};
    struct jd_rules r, d;
    jd_rules_default(&r);
    jd_rules_default(&d);
    char err[200];
    rule_params = ok;
    assert_int_equal(sim_truth_rules(rule_get, NULL, &r, err, sizeof(err)), 0);
    assert_int_equal(r.min_roi_bp, 4000);
    assert_int_equal(r.buy_condition, 2);
    assert_int_equal(r.n_basis[JD_USED], 2);
    assert_int_equal(r.basis[JD_USED][0], JD_BASIS_AVG90);
    assert_int_equal(r.fulfilment, JD_FBM);
    assert_int_equal(r.unknown, JD_UNKNOWN_PASSES);
    assert_int_equal(r.n_media_categories, 2);
    assert_false(r.cap_at_buy_box);
    assert_int_equal(r.min_profit_cents, d.min_profit_cents); /* untouched */
    assert_true(jd_rules_hash(&r) != jd_rules_hash(&d));
    static const char *const bad1[] = {"min_roi_bp", "x", NULL};
    static const char *const bad2[] = {"basis_new", "buy_box,bogus", NULL};
    static const char *const bad3[] = {"buy_condition", "old", NULL};
    const char *const *bad[] = {bad1, bad2, bad3};
    for (int i = 0; i < 3; i++) {
        rule_params = bad[i];
        err[0] = '\0';
        assert_int_equal(sim_truth_rules(rule_get, NULL, &r, err, sizeof(err)), -EINVAL);
        assert_non_null(strstr(err, bad[i][0]));
    }
}

/* Any well-formed ASIN is a product; the same ASIN and seed the same product; malformed and
 * reserved ones are not; an ISBN-10 is a book; catalog ASINs keep their index. */
static void test_synthetic_products(void **state)
{
    (void)state;
    struct sim_catalog c, c2;
    assert_int_equal(sim_catalog_init(&c, 5, 20000, 1.0, SIM_ECONOMY_CALIBRATED), 0);
    assert_int_equal(sim_catalog_init(&c2, 6, 20000, 1.0, SIM_ECONOMY_CALIBRATED), 0);
    char own[11];
    sim_catalog_asin(&c, 1234, own);
    assert_int_equal(sim_catalog_resolve(&c, own), 1234);
    int64_t a = sim_catalog_resolve(&c, "B0D8W1YVBX"), isbn = sim_catalog_resolve(&c, "0545010225");
    assert_true(a >= SIM_EXT_BASE);
    assert_true(isbn >= SIM_EXT_BASE);
    assert_int_equal(a, sim_catalog_resolve(&c2, "B0D8W1YVBX")); /* the ASIN's, not the seed's */
    assert_true(a != sim_catalog_resolve(&c, "B0D8W1YVBZ"));
    static const char *const bad[] = {"B0ZZZZZZZZ", "b0d8w1yvbx", "B0D8W1YVB",  "B0D8W1YVBXX",
                                      "B0D8W1-VBX", "",           "1234567ZZZZ"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(sim_catalog_resolve(&c, bad[i]), -1);
    struct sim_product *p = malloc(sizeof(*p)), *q = malloc(sizeof(*q));
    sim_catalog_product(&c, isbn, 8000000, p);
    assert_int_equal(p->root_cat, 283155);
    assert_string_equal(p->asin, ""); /* the caller's to set */
    sim_catalog_product(&c, a, 8000000, p);
    sim_catalog_product(&c, a, 8000000, q);
    assert_memory_equal(p, q, sizeof(*p));
    sim_catalog_product(&c2, a, 8000000, q); /* another seed: another product */
    assert_true(p->base_used_cents != q->base_used_cents || p->root_cat != q->root_cat ||
                p->base_rank != q->base_rank);
    free(p);
    free(q);
}

/* The category tree: unique ids across levels, parents and children agree, every product sits
 * in a leaf of its root. */
static void test_category_tree(void **state)
{
    (void)state;
    for (int e = 0; e < 2; e++) {
        struct sim_catalog c;
        assert_int_equal(sim_catalog_init(&c, 1, 5000, 1.0, (enum sim_economy)e), 0);
        int n = sim_catalog_root_count(&c), total = 0;
        int64_t *ids = malloc((size_t)n * (1 + SIM_SUBS * (1 + SIM_LEAVES)) * sizeof(*ids));
        for (int r = 0; r < n; r++) {
            int64_t root = sim_catalog_root_id(&c, r);
            ids[total++] = root;
            for (int k = 0; k < SIM_SUBS; k++) {
                int64_t sub = sim_catalog_category_child(&c, root, k);
                struct sim_category cat;
                assert_int_equal(sim_catalog_category(&c, sub, &cat), 0);
                assert_int_equal(cat.parent, root);
                assert_int_equal(cat.level, 1);
                ids[total++] = sub;
                for (int l = 0; l < SIM_LEAVES; l++) {
                    int64_t leaf = sim_catalog_category_child(&c, sub, l);
                    assert_int_equal(sim_catalog_category(&c, leaf, &cat), 0);
                    assert_int_equal(cat.parent, sub);
                    assert_int_equal(cat.level, 2);
                    assert_int_equal(sim_catalog_category_child(&c, leaf, 0), -1);
                    ids[total++] = leaf;
                }
            }
        }
        for (int i = 0; i < total; i++) /* unique: each id names one category */
            for (int j = i + 1; j < total; j++)
                if (ids[i] == ids[j])
                    fail_msg("category id %lld twice", (long long)ids[i]);
        free(ids);
        struct sim_category cat;
        assert_int_equal(sim_catalog_category(&c, 42, &cat), -ENOENT);
        struct sim_product *p = malloc(sizeof(*p));
        for (int64_t idx = 0; idx < 5000; idx += 97) {
            sim_catalog_product(&c, idx, 8000000, p);
            int slot, sub, leaf;
            sim_catalog_placement(&c, idx, &slot, &sub, &leaf);
            assert_int_equal(sim_catalog_category(&c, p->cats[1], &cat), 0);
            assert_int_equal(cat.parent, p->cats[0]);
            assert_int_equal(cat.root_slot, slot);
            assert_int_equal(sim_catalog_root_id(&c, slot), p->root_cat);
            assert_int_equal(cat.sub, sub);
            assert_int_equal(cat.leaf, leaf);
        }
        free(p);
    }
}

/* Lightning deals: a deterministic schedule whose states follow the clock. */
static void test_lightning_schedule(void **state)
{
    (void)state;
    struct sim_catalog c;
    assert_int_equal(sim_catalog_init(&c, 3, 20000, 1.0, SIM_ECONOMY_RICH), 0);
    int64_t t0 = 8000000;
    int found = 0;
    for (int64_t idx = 0; idx < 20000 && found < 20; idx++) {
        struct sim_lightning ld, again;
        if (!sim_catalog_lightning(&c, idx, t0, &ld))
            continue;
        found++;
        assert_int_equal(sim_catalog_lightning(&c, idx, t0, &again), 1);
        assert_true(ld.start == again.start && ld.end == again.end && ld.deal_id == again.deal_id &&
                    ld.state == again.state && ld.percent_off == again.percent_off);
        assert_true(ld.end > t0 && ld.start <= t0 + 1440 && ld.start < ld.end);
        assert_true(ld.percent_off >= 15 && ld.percent_off <= 50);
        assert_int_equal(ld.state == SIM_LD_UPCOMING, t0 < ld.start);
        /* at its start it runs, claimed from 0; at its end it is gone (or the next one) */
        struct sim_lightning at;
        assert_int_equal(sim_catalog_lightning(&c, idx, ld.start, &at), 1);
        assert_int_equal(at.state, SIM_LD_AVAILABLE);
        assert_int_equal(at.percent_claimed, 0);
        struct sim_lightning late;
        int claimed = 0;
        for (int64_t t = ld.start; t < ld.end; t += 30) {
            assert_int_equal(sim_catalog_lightning(&c, idx, t, &late), 1);
            assert_true(late.percent_claimed >= claimed);
            claimed = late.percent_claimed;
            assert_int_equal(late.state == SIM_LD_SOLDOUT, claimed >= 100);
        }
        if (sim_catalog_lightning(&c, idx, ld.end, &late))
            assert_true(late.start >= ld.end || late.deal_id != ld.deal_id);
    }
    assert_int_equal(found, 20);
}

/* The Product Finder's parser: every family of filters, and the keys it does not apply. */
static void test_query_parse_families(void **state)
{
    (void)state;
    const char *sel = "{\"current_USED_gte\":100,\"avg90_BUY_BOX_SHIPPING_lte\":5000,"
                      "\"deltaPercent90_USED_gte\":20,\"salesRankDrops365_gte\":2,"
                      "\"monthlySold_gte\":50,\"title\":\"red  novel\",\"author\":[\"Ada Nash\"],"
                      "\"brand\":\"SimBrand 3\",\"categories_include\":[283155,2831551],"
                      "\"categories_exclude\":5174,\"rootCategory\":[\"283155\"],"
                      "\"isHazMat\":false,\"singleVariation\":true,"
                      "\"sellerIds\":[\"A1\",\"A2\"],\"productType\":[0,1],"
                      "\"isLowest_USED\":true,\"edition\":[\"1st\"],\"perPage\":60,\"page\":2,"
                      "\"sort\":[[\"avg90_USED\",\"desc\"]]}";
    struct sim_query *q = malloc(sizeof(*q));
    char err[160];
    assert_int_equal(sim_query_parse(sel, strlen(sel), q, err, sizeof(err)), 0);
    assert_int_equal(q->n_filters, 5);
    assert_int_equal(q->filters[0].field, SIM_QF_CURRENT);
    assert_int_equal(q->filters[0].type, 2);
    assert_int_equal(q->filters[1].type, 18);
    assert_true(q->filters[1].is_lte);
    assert_int_equal(q->filters[2].field, SIM_QF_DELTA_PCT90);
    assert_int_equal(q->filters[3].field, SIM_QF_DROPS365);
    assert_int_equal(q->filters[4].field, SIM_QF_MONTHLY_SOLD);
    assert_int_equal(q->title.n, 2);
    assert_string_equal(q->title.w[1], "novel");
    assert_int_equal(q->text[SIM_QT_AUTHOR].n, 1);
    assert_int_equal(q->text[SIM_QT_BRAND].n, 1);
    assert_int_equal(q->n_include, 2);
    assert_int_equal(q->n_exclude, 1);
    assert_int_equal(q->n_roots, 1);
    assert_int_equal(q->bools[SIM_QB_HAZMAT], 0);
    assert_int_equal(q->bools[SIM_QB_SINGLE_VAR], 1);
    assert_int_equal(q->bools[SIM_QB_ADULT], -1);
    assert_int_equal(q->sellers[SIM_QS_ANY].n, 2);
    assert_int_equal(q->n_product_types, 2);
    assert_int_equal(q->per_page, 60);
    assert_int_equal(q->page, 2);
    assert_true(q->sort_set && q->sort_desc);
    assert_int_equal(q->sort_field, SIM_QF_AVG90);
    assert_string_equal(q->ignored, "isLowest_USED,edition");
    assert_string_equal(sim_query_type_name(32), "BUY_BOX_USED_SHIPPING");
    free(q);
}

/* sim_buf_int and sim_buf_ints write what printf's %lld writes, comma-separated, at every
 * digit count and sign, across buffer growth. */
static void test_buf_ints_equal_printf(void **state)
{
    (void)state;
    int64_t vals[160];
    size_t n = 0;
    vals[n++] = 0;
    vals[n++] = INT64_MAX;
    vals[n++] = INT64_MIN;
    for (int64_t p = 1; p <= INT64_MAX / 10 && n + 6 <= 160; p *= 10) {
        vals[n++] = p - 1, vals[n++] = p, vals[n++] = p + 1;
        vals[n++] = -(p - 1), vals[n++] = -p, vals[n++] = -(p + 1);
    }
    struct sim_buf one, many;
    sim_buf_init(&one);
    sim_buf_init(&many);
    char want[160 * 22] = "", *w = want;
    for (size_t i = 0; i < n; i++) {
        w += sprintf(w, "%s%lld", i > 0 ? "," : "", (long long)vals[i]);
        if (i > 0)
            sim_buf_putc(&one, ',');
        sim_buf_int(&one, vals[i]);
    }
    sim_buf_puts(&many, "[");
    sim_buf_ints(&many, vals, n);
    sim_buf_ints(&many, vals, 0);
    sim_buf_puts(&many, "]");
    assert_true(sim_buf_ok(&one) && sim_buf_ok(&many));
    assert_string_equal(one.data, want);
    assert_int_equal(one.len, strlen(want));
    assert_int_equal(many.len, strlen(want) + 2);
    assert_memory_equal(many.data + 1, want, strlen(want));
    assert_string_equal(many.data + 1 + strlen(want), "]");
    sim_buf_free(&one);
    sim_buf_free(&many);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_asin_roundtrip),
        cmocka_unit_test(test_seller_roundtrip),
        cmocka_unit_test(test_catalog_deterministic_and_moving),
        cmocka_unit_test(test_meaningful_deal_share),
        cmocka_unit_test(test_bucket_rules),
        cmocka_unit_test(test_selection_lenient),
        cmocka_unit_test(test_product_params),
        cmocka_unit_test(test_fault_spec),
        cmocka_unit_test(test_deal_match_rules),
        cmocka_unit_test(test_economy_names),
        cmocka_unit_test(test_calibrated_point_is_the_product_then),
        cmocka_unit_test(test_market_is_consistent),
        cmocka_unit_test(test_calibrated_feed_window),
        cmocka_unit_test(test_deal_scan_memo_is_exact),
        cmocka_unit_test(test_truth_inputs_equal_decoded_answer),
        cmocka_unit_test(test_truth_timeline_matches_pointwise),
        cmocka_unit_test(test_truth_rules_from_params),
        cmocka_unit_test(test_synthetic_products),
        cmocka_unit_test(test_category_tree),
        cmocka_unit_test(test_lightning_schedule),
        cmocka_unit_test(test_query_parse_families),
        cmocka_unit_test(test_buf_ints_equal_printf),
    };
    return KD_RUN_TESTS(tests, argc, argv);
}
