/*
 * test_scanner_rules.c: the scanner's pure rules (scanner/rules.h, scanner/selection.h): the free
 * pre-filter, dedup, the discovery cursor (it moves only past recorded pages; a pass ends on
 * a short or last page, never on anything else), the page of candidates (a failed peek puts
 * its ASINs back), ASIN list lines and the page selections; the free pre-score (the feed's
 * own upper bound on profit, halved per half-life of age) and the page taken best first; the
 * pause between passes (none over the feed while tokens pile up).
 */
#include <errno.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yajl/yajl_tree.h>

#include "kd_test.h"
#include "judge/inputs.h"
#include "judge/rules.h"
#include "keepa/request.h"
#include "scanner/rules.h"
#include "scanner/selection.h"

static void deal_init(struct kp_deal *d, const char *asin)
{
    memset(d, 0, sizeof(*d));
    snprintf(d->asin, sizeof(d->asin), "%s", asin);
    d->n_price = 34;
    for (int i = 0; i < KP_NPRICE; i++) {
        d->current[i] = -1;
        for (int r = 0; r < KP_DEAL_RANGES; r++)
            d->avg[r][i] = -1;
    }
    d->current[2] = 1500; /* Used */
    d->avg[3][2] = 3000;  /* 90-day Used average */
    d->sales_rank_drops365 = 40;
    d->last_update_keepa_min = 7536888;
}

static bool keep(const struct kp_deal *d, const struct jd_rules *r, const char **why)
{
    *why = "";
    return scanner_prefilter_deal(d, r, why);
}

/* The free pre-filter is the judgement on the feed's numbers with no fees (an upper bound),
 * and the unknown rule applies exactly as it does after paying. */
static void test_prefilter(void **state)
{
    (void)state;
    struct cfg c;
    cfg_defaults(&c);
    c.filter_min_sell_cents = 1200;
    c.filter_min_rank_drops_365 = 5;
    struct jd_rules r;
    jd_rules_from_cfg(&c, &r);
    struct kp_deal d;
    const char *why;

    deal_init(&d, "B000000001");
    assert_true(keep(&d, &r, &why));

    /* No price in the wanted condition. */
    d.current[2] = -1;
    assert_false(keep(&d, &r, &why));
    assert_string_equal(why, "no-buy");
    d.current[1] = 2000; /* New only: fine for used_then_new (sold against New bases) */
    d.avg[3][1] = 4000;
    assert_true(keep(&d, &r, &why));
    r.buy_condition = CFG_BUY_USED;
    assert_false(keep(&d, &r, &why));
    r.buy_condition = CFG_BUY_USED_THEN_NEW;

    /* Rank drops: known and low drops it; unknown (-1) follows the unknown rule. */
    deal_init(&d, "B000000001");
    d.sales_rank_drops365 = 4;
    assert_false(keep(&d, &r, &why));
    assert_string_equal(why, "drops365");
    d.sales_rank_drops365 = -1;
    assert_false(keep(&d, &r, &why));
    assert_string_equal(why, "drops365-unknown");
    r.unknown = JD_UNKNOWN_PASSES;
    assert_true(keep(&d, &r, &why));
    r.unknown = JD_UNKNOWN_FAILS;
    d.sales_rank_drops365 = 5;
    assert_true(keep(&d, &r, &why));

    /* The sell price (the 90-day Used average here) under the minimum drops it. */
    d.current[2] = 300;
    d.avg[3][2] = 1199;
    assert_false(keep(&d, &r, &why));
    d.avg[3][2] = 1200;
    assert_true(keep(&d, &r, &why));
    /* No sell basis at all: nothing could make it a deal. */
    d.avg[3][2] = -2;
    assert_false(keep(&d, &r, &why));
    assert_string_equal(why, "no-sell");
    /* Even with no fees, a buy price this close to the sell price cannot make the profit. */
    d.avg[3][2] = 1600;
    d.current[2] = 1500;
    assert_false(keep(&d, &r, &why));
    /* Amazon selling at 14.00 caps a 30.00 average at 12.60: the ceiling applies for free. */
    d.avg[3][2] = 3000;
    d.current[2] = 300;
    d.current[0] = 1400;
    assert_true(keep(&d, &r, &why));
    d.current[0] = 1300; /* 90 % is 11.70: under the minimum sell */
    assert_false(keep(&d, &r, &why));
    assert_string_equal(why, "sell-too-low");
}

static void test_feed_hash(void **state)
{
    (void)state;
    struct kp_deal a, b;
    deal_init(&a, "B000000001");
    deal_init(&b, "B000000001");
    assert_true(scanner_feed_hash(&a) == scanner_feed_hash(&b));
    b.current[2] = 1499;
    assert_true(scanner_feed_hash(&a) != scanner_feed_hash(&b));
    b.current[2] = 1500;
    b.current[20] = 7; /* Used, good */
    assert_true(scanner_feed_hash(&a) != scanner_feed_hash(&b));
    b.current[20] = -1;
    b.current[3] = 52000; /* the sales rank moved: not a price */
    b.current[12] = 9;    /* nor the used offer count */
    assert_true(scanner_feed_hash(&a) == scanner_feed_hash(&b));
}

static void test_dedup(void **state)
{
    (void)state;
    const int64_t now = 1800000000000, window = 24 * 3600 * 1000LL;
    struct st_seen s = {.peek_ms = now - 1000,
                        .verdict = ST_VERDICT_REJECTED,
                        .feed_last_update_min = 100,
                        .feed_price_hash = 42};
    assert_false(scanner_dedup_skip(NULL, now, window, 100, 42)); /* never peeked */
    assert_true(scanner_dedup_skip(&s, now, window, 100, 42));    /* young, unchanged */
    s.verdict = ST_VERDICT_SURVIVOR;
    assert_true(scanner_dedup_skip(&s, now, window, 100, 42));
    assert_false(scanner_dedup_skip(&s, now, window, 101, 42)); /* Keepa updated it */
    assert_false(scanner_dedup_skip(&s, now, window, 100, 43)); /* a price moved */
    assert_false(scanner_dedup_skip(&s, now, 1000, 100, 42));   /* window ended */
    assert_true(scanner_dedup_skip(&s, now, 1001, 100, 42));
    assert_false(scanner_dedup_skip(&s, now, 0, 100, 42)); /* dedup off */
    s.verdict = ST_VERDICT_ERROR;
    assert_false(scanner_dedup_skip(&s, now, window, 100, 42));
    /* Sources without feed data: the window alone decides. */
    struct st_seen l = {
        .peek_ms = now - 5, .verdict = ST_VERDICT_REJECTED, .feed_last_update_min = -1};
    assert_true(scanner_dedup_skip(&l, now, window, -1, 0));
}

/* A product the seller marked (bought, ignored) costs no discovery tokens again. */
static void test_mark_skip(void **state)
{
    (void)state;
    assert_false(scanner_mark_skip(ST_MARK_NONE)); /* never marked, or cleared */
    assert_true(scanner_mark_skip(ST_MARK_BOUGHT));
    assert_true(scanner_mark_skip(ST_MARK_IGNORED));
    assert_true(scanner_mark_skip(ST_MARK_IGNORED + 1)); /* a newer build's mark */
}

/*
 * A peek's result by its stored record: a survivor whose record is not a deal (rejected at its
 * full fetch, or expired) goes to the committer like a new one, and so does every result
 * after it in the batch (a found record once ended the batch's write: 27 % of the survivors
 * of a day benchmark never reached the committer).
 */
static void test_peek_route(void **state)
{
    (void)state;
    assert_int_equal(scanner_peek_route(-ENOENT, 0, true), SCANNER_ROUTE_COMMIT);
    assert_int_equal(scanner_peek_route(-ENOENT, 0, false), SCANNER_ROUTE_NONE);
    assert_int_equal(scanner_peek_route(0, ST_STATE_REJECTED, true), SCANNER_ROUTE_COMMIT);
    assert_int_equal(scanner_peek_route(0, ST_STATE_NONE, true), SCANNER_ROUTE_COMMIT);
    assert_int_equal(scanner_peek_route(0, ST_STATE_REJECTED, false), SCANNER_ROUTE_NONE);
    /* A stored deal, shown or failing: the updater's free refresh, whatever the verdict. */
    assert_int_equal(scanner_peek_route(0, ST_STATE_DEAL, true), SCANNER_ROUTE_REFRESH);
    assert_int_equal(scanner_peek_route(0, ST_STATE_DEAL, false), SCANNER_ROUTE_REFRESH);
    assert_int_equal(scanner_peek_route(0, ST_STATE_FAILING, true), SCANNER_ROUTE_REFRESH);
    /* A record this build cannot read counts as none; any other answer is a store error. */
    assert_int_equal(scanner_peek_route(-EBADMSG, 0, true), SCANNER_ROUTE_COMMIT);
    assert_int_equal(scanner_peek_route(-ENOTSUP, 0, true), SCANNER_ROUTE_COMMIT);
    assert_int_equal(scanner_peek_route(-EIO, 0, true), SCANNER_ROUTE_ERROR);
    assert_int_equal(scanner_peek_route(-EIO, 0, false), SCANNER_ROUTE_ERROR);
}

/*
 * A product whose stored record, read in full before, fails even at the lowest listings seen
 * now is known to fail: no peek, no full fetch to say so again.
 */
static void test_known_fail(void **state)
{
    (void)state;
    struct cfg c;
    cfg_defaults(&c);
    struct jd_rules rules;
    jd_rules_from_cfg(&c, &rules);
    struct kp_deal d;
    deal_init(&d, "B000000001"); /* Used at $15 against a 90-day Used average of $30 */
    struct jd_inputs peek;
    struct jd_verdict pv;
    jd_inputs_from_deal(&d, &rules, 0, &peek);
    assert_true(jd_judge(&peek, &rules, &pv));
    /* The record of its full fetch: a Used offer at $15 that a sell price of $30 made a deal. */
    struct st_record r;
    memset(&r, 0, sizeof(r));
    r.in = peek;
    r.in.buy_condition = 2;
    r.in.buy_price_cents = 1500;
    r.state = ST_STATE_REJECTED;
    r.rules_hash = 1;
    const int64_t AGE = 12 * 3600 * 1000LL, NOW = 1764000000000LL;
    r.in.data_ms = NOW - AGE; /* read 12 hours ago: still trusted */
    /* At the $15 seen now it passes on the record's own inputs: worth a peek and a fetch. */
    assert_false(scanner_known_fail(&r, -1, 1500, &rules, NOW, AGE));
    /* The full read sold it lower ($16 of Used average, what the feed and the peek do not
     * see): it fails there. */
    r.in.used_avg90_cents = 1600;
    assert_true(scanner_known_fail(&r, -1, 1500, &rules, NOW, AGE));
    /* A cheaper listing that passes even there: worth it again. */
    assert_false(scanner_known_fail(&r, -1, 300, &rules, NOW, AGE));
    /* Both sides are tried: a New listing cheap enough passes on the New side. */
    r.in.new_avg90_cents = 3000;
    assert_true(scanner_known_fail(&r, 2900, 1500, &rules, NOW, AGE));
    assert_false(scanner_known_fail(&r, 1000, 1500, &rules, NOW, AGE));
    /* The record says nothing: a stored deal (the updater's), never judged, no listing. */
    r.state = ST_STATE_DEAL;
    assert_false(scanner_known_fail(&r, -1, 1500, &rules, NOW, AGE));
    r.state = ST_STATE_REJECTED;
    r.rules_hash = 0;
    assert_false(scanner_known_fail(&r, -1, 1500, &rules, NOW, AGE));
    r.rules_hash = 1;
    assert_false(scanner_known_fail(&r, -1, -1, &rules, NOW, AGE));
    assert_true(scanner_known_fail(&r, -1, 1500, &rules, NOW, AGE));
    /* A read older than the bound, or of no known time, rules nothing out: peeked again. */
    r.in.data_ms = NOW - AGE - 1;
    assert_false(scanner_known_fail(&r, -1, 1500, &rules, NOW, AGE));
    r.in.data_ms = 0;
    assert_false(scanner_known_fail(&r, -1, 1500, &rules, NOW, AGE));
}

static void test_cursor_bytes(void **state)
{
    (void)state;
    struct scanner_cursor c = {.source = CFG_SOURCE_ASINS,
                               .pass = 7,
                               .position = 123456789012ULL,
                               .selection_hash = 0xfedcba9876543210ULL};
    uint8_t buf[SCANNER_CURSOR_BYTES];
    scanner_cursor_encode(&c, buf);
    struct scanner_cursor d;
    assert_int_equal(scanner_cursor_decode(buf, sizeof(buf), &d), 0);
    assert_int_equal(d.source, c.source);
    assert_int_equal(d.pass, c.pass);
    assert_true(d.position == c.position);
    assert_true(d.selection_hash == c.selection_hash);
    memset(&d, 0xab, sizeof(d));
    struct scanner_cursor before = d;
    assert_int_equal(scanner_cursor_decode(buf, sizeof(buf) - 1, &d), -EBADMSG);
    buf[0] = 99;
    assert_int_equal(scanner_cursor_decode(buf, sizeof(buf), &d), -EBADMSG);
    assert_int_equal(scanner_cursor_decode(NULL, 0, &d), -EBADMSG);
    assert_memory_equal(&d, &before, sizeof(d));
}

static void test_cursor_resume(void **state)
{
    (void)state;
    struct scanner_cursor none = scanner_cursor_resume(NULL, CFG_SOURCE_DEALS, 5);
    assert_int_equal(none.pass, 0);
    assert_true(none.position == 0 && none.selection_hash == 5);
    struct scanner_cursor st = {
        .source = CFG_SOURCE_DEALS, .pass = 3, .position = 9, .selection_hash = 5};
    struct scanner_cursor r = scanner_cursor_resume(&st, CFG_SOURCE_DEALS, 5);
    assert_true(r.position == 9 && r.pass == 3);
    r = scanner_cursor_resume(&st, CFG_SOURCE_DEALS, 6); /* another selection */
    assert_true(r.position == 0 && r.pass == 3 && r.selection_hash == 6);
    r = scanner_cursor_resume(&st, CFG_SOURCE_QUERY, 5); /* another source */
    assert_true(r.position == 0 && r.source == CFG_SOURCE_QUERY);
}

static void test_cursor_paging(void **state)
{
    (void)state;
    struct scanner_cursor c = {.source = CFG_SOURCE_DEALS};
    /* Full pages move on one page at a time; the order of the deals plays no part. */
    for (uint64_t p = 0; p < 5; p++) {
        assert_true(c.position == p);
        assert_false(scanner_cursor_after_page(&c, 150, 150, 66));
    }
    /* A short page ends the pass: the next pass starts at page 0. */
    assert_true(scanner_cursor_after_page(&c, 149, 150, 66));
    assert_true(c.position == 0 && c.pass == 1);
    /* An empty page too. */
    assert_true(scanner_cursor_after_page(&c, 0, 150, 66));
    assert_true(c.position == 0 && c.pass == 2);
    /* Page 66 is the last Keepa serves, even when full. */
    c.position = 65;
    assert_false(scanner_cursor_after_page(&c, 150, 150, 66));
    assert_true(c.position == 66);
    assert_true(scanner_cursor_after_page(&c, 150, 150, 66));
    assert_true(c.position == 0 && c.pass == 3);

    struct scanner_cursor l = {.source = CFG_SOURCE_ASINS};
    assert_false(scanner_cursor_after_chunk(&l, 160, false));
    assert_true(l.position == 160);
    assert_true(scanner_cursor_after_chunk(&l, 170, true));
    assert_true(l.position == 0 && l.pass == 1);
}

static void test_page_states(void **state)
{
    (void)state;
    struct scanner_page *p = malloc(sizeof(*p));
    assert_non_null(p);
    scanner_page_reset(p);
    assert_true(scanner_page_complete(p)); /* empty */
    char asin[16];
    for (int i = 0; i < 120; i++) {
        snprintf(asin, sizeof(asin), "B%09d", i);
        assert_int_equal(scanner_page_add(p, asin, i, (uint64_t)i), 0);
    }
    assert_int_equal(scanner_page_add(p, "B000000007", 1, 1), 1); /* repeat: ignored */
    assert_int_equal(p->n, 120);
    assert_int_equal(scanner_page_add(p, "b000000007", 1, 1), -EINVAL);
    assert_int_equal(scanner_page_add(p, "B00000000", 1, 1), -EINVAL);
    assert_int_equal(scanner_page_add(p, "B0000000001", 1, 1), -EINVAL);

    uint16_t a[KP_MAX_BATCH], b[KP_MAX_BATCH];
    assert_int_equal(scanner_page_take(p, 50, a), 50);
    assert_int_equal(a[0], 0);
    assert_int_equal(a[49], 49);
    assert_int_equal(scanner_page_take(p, 50, b), 50);
    assert_int_equal(b[0], 50);
    assert_false(scanner_page_complete(p));

    /* The first batch failed: its ASINs are queued again, the next take gets them first. */
    scanner_page_release(p, a, 50, false);
    assert_int_equal(scanner_page_count(p, SCANNER_CAND_QUEUED), 70);
    uint16_t c[KP_MAX_BATCH];
    assert_int_equal(scanner_page_take(p, 10, c), 10); /* a smaller batch after a HUP */
    assert_int_equal(c[0], 0);
    assert_int_equal(c[9], 9);
    scanner_page_release(p, c, 10, true);
    scanner_page_release(p, b, 50, true);
    assert_false(scanner_page_complete(p));
    size_t n;
    while ((n = scanner_page_take(p, 7, c)) > 0) {
        assert_true(n <= 7);
        scanner_page_release(p, c, n, true);
    }
    assert_true(scanner_page_complete(p));

    /* A page holds at most SCANNER_PAGE_MAX candidates. */
    scanner_page_reset(p);
    for (int i = 0; i < SCANNER_PAGE_MAX; i++) {
        snprintf(asin, sizeof(asin), "B%09d", i);
        assert_int_equal(scanner_page_add(p, asin, -1, 0), 0);
    }
    assert_int_equal(scanner_page_add(p, "BZZZZZZZZZ", -1, 0), -ENOSPC);
    free(p);
}

static void test_asin_lines(void **state)
{
    (void)state;
    char a[ST_ASIN_LEN + 1];
    assert_int_equal(scanner_parse_asin_line("B0F7XPYCSJ\n", a), 1);
    assert_string_equal(a, "B0F7XPYCSJ");
    assert_int_equal(scanner_parse_asin_line("  b0d8w1yvbx  # a comment\r\n", a), 1);
    assert_string_equal(a, "B0D8W1YVBX");
    assert_int_equal(scanner_parse_asin_line("0306406152", a), 1);
    assert_int_equal(scanner_parse_asin_line("\n", a), 0);
    assert_int_equal(scanner_parse_asin_line("   ", a), 0);
    assert_int_equal(scanner_parse_asin_line("# B0F7XPYCSJ", a), 0);
    assert_int_equal(scanner_parse_asin_line("B0F7XPYCS", a), -EINVAL);
    assert_int_equal(scanner_parse_asin_line("B0F7XPYCSJX", a), -EINVAL);
    assert_int_equal(scanner_parse_asin_line("B0F7XPYCSJ B0D8W1YVBX", a), -EINVAL);
    assert_int_equal(scanner_parse_asin_line("B0F7-PYCSJ", a), -EINVAL);
}

/* Parses JSON and returns the integer member KEY of the top-level object (or -999). */
static long long json_int(const char *json, const char *key)
{
    char err[128];
    yajl_val v = yajl_tree_parse(json, err, sizeof(err));
    assert_non_null(v);
    const char *path[] = {key, NULL};
    yajl_val m = yajl_tree_get(v, path, yajl_t_number);
    long long r = m != NULL && YAJL_IS_INTEGER(m) ? YAJL_GET_INTEGER(m) : -999;
    yajl_tree_free(v);
    return r;
}

static void test_selection_builtin(void **state)
{
    (void)state;
    struct scanner_selection s;
    char err[256];
    assert_int_equal(scanner_selection_load(&s, CFG_SOURCE_DEALS, 3, NULL, "", err, sizeof(err)),
                     0);
    assert_int_equal(s.per_page, 150);
    assert_int_equal(s.last_page, 66);
    char *j0 = NULL, *j5 = NULL;
    size_t n;
    assert_int_equal(scanner_selection_render(&s, 0, &j0, &n), 0);
    assert_int_equal(scanner_selection_render(&s, 5, &j5, &n), 0);
    assert_int_equal(json_int(j0, "page"), 0);
    assert_int_equal(json_int(j5, "page"), 5);
    assert_int_equal(json_int(j0, "domainId"), 3);
    assert_int_equal(json_int(j0, "dateRange"), 3);
    assert_int_equal(json_int(j0, "sortType"), 4);
    assert_non_null(strstr(j0, "\"priceTypes\":[2]"));
    assert_non_null(strstr(j0, "\"isRangeEnabled\":true"));
    free(j0);
    free(j5);
    /* Another domain is another selection (another cursor). */
    struct scanner_selection t;
    assert_int_equal(scanner_selection_load(&t, CFG_SOURCE_DEALS, 1, NULL, "", err, sizeof(err)),
                     0);
    assert_true(s.hash != t.hash);
    scanner_selection_free(&s);
    scanner_selection_free(&t);
    /* /query has no built-in selection. */
    assert_int_equal(scanner_selection_load(&s, CFG_SOURCE_QUERY, 1, NULL, "", err, sizeof(err)),
                     -EINVAL);
    assert_non_null(strstr(err, "selection_file"));
}

static void test_selection_checks(void **state)
{
    (void)state;
    struct scanner_selection s;
    char err[256];
    /* The file's own page is ignored; a string domainId that matches is fine. */
    const char *ok = "{\"domainId\":\"1\",\"priceTypes\":[2],\"page\":9,\"sortType\":4,"
                     "\"deltaPercentRange\":[10,2147483647],\"salesRankRange\":[1000,-1]}";
    assert_int_equal(
        scanner_selection_parse(&s, CFG_SOURCE_DEALS, 1, NULL, ok, "f", err, sizeof(err)), 0);
    char *j = NULL;
    size_t n;
    assert_int_equal(scanner_selection_render(&s, 2, &j, &n), 0);
    assert_int_equal(json_int(j, "page"), 2);
    assert_null(strstr(j, "\"page\":9"));
    assert_non_null(strstr(j, "[10,2147483647]")); /* numbers kept as written */
    assert_non_null(strstr(j, "\"domainId\":\"1\""));
    free(j);
    /* The page is not part of the selection's identity. */
    const char *ok2 = "{\"domainId\":\"1\",\"priceTypes\":[2],\"page\":3,\"sortType\":4,"
                      "\"deltaPercentRange\":[10,2147483647],\"salesRankRange\":[1000,-1]}";
    struct scanner_selection s2;
    assert_int_equal(
        scanner_selection_parse(&s2, CFG_SOURCE_DEALS, 1, NULL, ok2, "f", err, sizeof(err)), 0);
    assert_true(s.hash == s2.hash);
    scanner_selection_free(&s2);
    scanner_selection_free(&s);

    static const struct {
        const char *json, *needle;
    } bad[] = {
        {"{\"priceTypes\":[2],\"dateRange\":\"3\"}", "dateRange"}, /* docs/failure-modes.md F12 */
        {"{\"priceTypes\":[2],\"sortType\":\"4\"}", "sortType"},
        {"{\"dateRange\":3}", "priceTypes"},
        {"{\"priceTypes\":[2,1]}", "priceTypes"},
        {"{\"priceTypes\":[2],\"domainId\":3}", "domainId"},
        {"[1,2]", "object"},
        {"{\"priceTypes\":", "JSON"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        assert_int_equal(scanner_selection_parse(&s, CFG_SOURCE_DEALS, 1, NULL, bad[i].json, "f",
                                                 err, sizeof(err)),
                         -EINVAL);
        if (strstr(err, bad[i].needle) == NULL)
            fail_msg("%s: error '%s' does not name %s", bad[i].json, err, bad[i].needle);
    }

    /* /query: perPage defaults to 150, is bounded, and is always sent. */
    assert_int_equal(scanner_selection_parse(&s, CFG_SOURCE_QUERY, 1, NULL,
                                             "{\"current_SALES_lte\":50000}", "q", err,
                                             sizeof(err)),
                     0);
    assert_int_equal(s.per_page, 150);
    assert_int_equal(s.last_page, 10000 / 150 - 1);
    assert_int_equal(scanner_selection_render(&s, 1, &j, &n), 0);
    assert_int_equal(json_int(j, "perPage"), 150);
    assert_int_equal(json_int(j, "page"), 1);
    free(j);
    scanner_selection_free(&s);
    assert_int_equal(scanner_selection_parse(&s, CFG_SOURCE_QUERY, 1, NULL, "{\"perPage\":5000}",
                                             "q", err, sizeof(err)),
                     -EINVAL);
    assert_int_equal(scanner_selection_parse(&s, CFG_SOURCE_QUERY, 1, NULL, "{\"perPage\":500}",
                                             "q", err, sizeof(err)),
                     0);
    assert_int_equal(s.last_page, 19);
    scanner_selection_free(&s);
}

struct fixture_count {
    const struct jd_rules *r;
    int deals, kept, no_price;
    uint64_t first_hash;
    int distinct_hashes;
};

static int count_deal(const struct kp_deal *d, void *ud)
{
    struct fixture_count *fc = ud;
    fc->deals++;
    const char *why = "";
    bool kept = scanner_prefilter_deal(d, fc->r, &why);
    fc->kept += kept;
    fc->no_price += !kept && strcmp(why, "no-buy") == 0;
    uint64_t h = scanner_feed_hash(d);
    if (fc->deals == 1)
        fc->first_hash = h;
    else if (h != fc->first_hash)
        fc->distinct_hashes++;
    return 0;
}

/* The real recorded /deal page: every deal has a Used price, so none lacks a price. */
static void test_prefilter_real_page(void **state)
{
    (void)state;
    const char *path = kd_fixture_path("deal_page.json");
    size_t len = 0;
    char *body = kd_read_file(path, &len);
    assert_non_null(body);
    struct cfg c;
    cfg_defaults(&c);
    struct jd_rules r;
    jd_rules_from_cfg(&c, &r);
    struct fixture_count fc = {.r = &r};
    struct kp_decode_cbs cbs = {.on_deal = count_deal, .ud = &fc};
    assert_int_equal(kp_decode_buffer(body, len, NULL, &cbs, NULL, NULL, 0), 0);
    free(body);
    assert_int_equal(fc.deals, 150);
    assert_int_equal(fc.no_price, 0);
    assert_true(fc.kept > 0 && fc.kept <= 150);
    assert_true(fc.distinct_hashes > 100);
}

/*
 * The commit backlog discovery may build follows the bucket: a 5/min plan with an empty
 * bucket allows what 150 tokens fetch (2 batches of 5 at 52 tokens), a full one (300) more,
 * plenty of tokens the old fixed 200, never less than one batch, one batch before any
 * reading, the most while the commit cost is unknown.
 */
static void test_backlog_limit(void **state)
{
    (void)state;
    assert_int_equal(scanner_backlog_limit(0, 5, 52, 5), 10);
    assert_int_equal(scanner_backlog_limit(-400, 5, 52, 5), 10); /* a deficit counts as 0 */
    assert_int_equal(scanner_backlog_limit(300, 5, 52, 5), 40);
    assert_int_equal(scanner_backlog_limit(0, 1, 52, 5), 5); /* 30 tokens: still one batch */
    assert_int_equal(scanner_backlog_limit(1000000, 30000, 52, 5), 200);
    assert_int_equal(scanner_backlog_limit(0, 0, 52, 5), 5);  /* no reading yet */
    assert_int_equal(scanner_backlog_limit(0, 5, 0, 5), 200); /* cost unknown */
    assert_int_equal(scanner_backlog_limit(0, 5, 11, 1), 13); /* batch 1 */
    assert_int_equal(scanner_backlog_limit(0, 5, 52, 0), 2);  /* batch < 1 taken as 1 */
}

/*
 * A peek holds only as many ASINs as its expected survivors need to fill the backlog: at a
 * survivor rate of 1/2 (nothing seen yet, or 49 of 98) 10 free places want 20 ASINs; peeks
 * in flight count with their expected survivors; a full backlog wants none while a peek is
 * in flight but one when none is, so discovery never stalls.
 */
static void test_peek_room(void **state)
{
    (void)state;
    assert_int_equal(scanner_peek_room(10, 0, 0, 0, 0), 20);
    assert_int_equal(scanner_peek_room(10, 0, 0, 98, 49), 20);
    assert_int_equal(scanner_peek_room(10, 0, 0, 398, 99), 40); /* rate 1/4 */
    assert_int_equal(scanner_peek_room(10, 6, 0, 398, 99), 16);
    assert_int_equal(scanner_peek_room(10, 0, 20, 98, 49), 0); /* 20 in flight fill it */
    assert_int_equal(scanner_peek_room(10, 0, 10, 98, 49), 10);
    assert_int_equal(scanner_peek_room(10, 10, 0, 98, 49), 1); /* full, nothing in flight */
    assert_int_equal(scanner_peek_room(10, 50, 0, 98, 49), 1); /* over full */
    assert_int_equal(scanner_peek_room(10, 50, 5, 98, 49), 0);
    assert_int_equal(scanner_peek_room(200, 0, 0, 1000, 0), 200 * 1002); /* a rare survivor */
}

/* ---- the seller's list, codes, discovery filters ---- */

static void test_list_lines(void **state)
{
    (void)state;
    struct scanner_list_line l;
    char why[256];
    assert_int_equal(scanner_parse_list_line("b0f7xpycsj,12.50\r\n", 1, &l, why, sizeof(why)), 1);
    assert_string_equal(l.asin, "B0F7XPYCSJ");
    assert_string_equal(l.code, "");
    assert_int_equal(l.cost_cents, 1250);
    assert_int_equal(
        scanner_parse_list_line("0747474801770, $3 ,https://shop.example/a?b=1,\"case, of 12\"\n",
                                1, &l, why, sizeof(why)),
        1);
    assert_string_equal(l.code, "0747474801770");
    assert_int_equal(l.cost_cents, 300);
    assert_string_equal(l.url, "https://shop.example/a?b=1");
    assert_string_equal(l.note, "case, of 12");
    assert_int_equal(scanner_parse_list_line("747474801770,\n", 1, &l, why, sizeof(why)), 1);
    assert_string_equal(l.code, "747474801770");
    assert_int_equal(l.cost_cents, -1); /* no cost: judged on Amazon's offers */
    assert_int_equal(scanner_parse_list_line("0747474801770", 1, &l, why, sizeof(why)), 1);
    assert_int_equal(scanner_parse_list_line("B0F7XPYCSJ,1500", 5, &l, why, sizeof(why)), 1);
    assert_int_equal(l.cost_cents, 1500); /* yen: whole units */
    assert_int_equal(scanner_parse_list_line("\"B0F7XPYCSJ\",\"4.5\",,\"say \"\"hi\"\"\"", 1, &l,
                                             why, sizeof(why)),
                     1);
    assert_int_equal(l.cost_cents, 450);
    assert_string_equal(l.note, "say \"hi\"");
    /* Skipped: blank, comment, header. */
    assert_int_equal(scanner_parse_list_line("  \n", 1, &l, why, sizeof(why)), 0);
    assert_int_equal(scanner_parse_list_line("# supplier A\n", 1, &l, why, sizeof(why)), 0);
    assert_int_equal(
        scanner_parse_list_line("code,cost,source_url,note\n", 1, &l, why, sizeof(why)), 0);
    assert_int_equal(scanner_parse_list_line("ASIN,Cost\n", 1, &l, why, sizeof(why)), 0);
    /* Errors say what is wrong with the line. */
    static const struct {
        const char *line, *why;
    } bad[] = {
        {"B0F7XPYCS,1", "'B0F7XPYCS' is not an ASIN (10 letters and digits), a UPC (12 digits) or "
                        "an EAN (13 digits)"},
        {"07474748017701,1", "is not an ASIN"},
        {"B0F7XPYCSJ,12.505", "cost '12.505': money in USD, e.g. 12.50 (not cents)"},
        {"B0F7XPYCSJ,abc", "cost 'abc'"},
        {"B0F7XPYCSJ,-3", "cost '-3'"},
        {"B0F7XPYCSJ,1,u,n,extra", "more than 4 fields"},
        {"B0F7XPYCSJ,1,u,\"open", "the note is longer than 99 bytes or not a CSV field"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(scanner_parse_list_line(bad[i].line, 1, &l, why, sizeof(why)), -EINVAL);
        if (strstr(why, bad[i].why) == NULL)
            fail_msg("'%s': '%s' lacks '%s'", bad[i].line, why, bad[i].why);
    }
    assert_int_equal(scanner_parse_list_line("B0F7XPYCSJ,1500.5", 5, &l, why, sizeof(why)),
                     -EINVAL);
    assert_non_null(strstr(why, "money in JPY, e.g. 1500"));
}

static void test_code_matches(void **state)
{
    (void)state;
    struct kp_product p;
    memset(&p, 0, sizeof(p));
    p.n_codes = 2;
    strcpy(p.codes[0], "0747474801770");
    strcpy(p.codes[1], "8809875456477");
    assert_true(scanner_code_matches(&p, "0747474801770"));
    assert_true(scanner_code_matches(&p, "747474801770")); /* the UPC of that EAN */
    assert_true(scanner_code_matches(&p, "8809875456477"));
    assert_false(scanner_code_matches(&p, "809875456477")); /* not a leading-0 EAN */
    assert_false(scanner_code_matches(&p, "0747474801771"));
    strcpy(p.codes[0], "747474801770");
    assert_true(scanner_code_matches(&p, "0747474801770"));
    p.n_codes = 0;
    assert_false(scanner_code_matches(&p, "747474801770"));
}

static void test_discovery_filters(void **state)
{
    (void)state;
    struct cfg c;
    char err[512];
    const char *text = "[scan]\nmax_rank = 200000\ncategories = 283155, 172282\n"
                       "exclude_categories = 5174\nno_amazon = true\nmin_price = 3\n"
                       "max_price = 40\n[filter]\nbuy_condition = new\n";
    assert_int_equal(cfg_load_buffer(text, strlen(text), "t", &c, err, sizeof(err)), 0);
    struct scanner_discovery d;
    scanner_discovery_from_cfg(&c, &d);
    assert_true(scanner_discovery_any(&d));
    assert_int_equal(d.price_type, 1);
    assert_int_equal(d.n_include, 2);
    assert_int_equal(d.min_price_cents, 300);
    struct jd_inputs in;
    jd_inputs_init(&in);
    in.sales_rank = 150000;
    in.root_category = 283155;
    in.amazon_availability = -1;
    in.buy_source = JD_BUY_LISTING;
    in.buy_price_cents = 1000;
    in.buy_shipping_cents = -1;
    const char *why = "x";
    assert_true(scanner_discovery_pass(&d, &in, &why));
    assert_null(why);
    struct jd_inputs t = in;
    t.sales_rank = 200001;
    assert_false(scanner_discovery_pass(&d, &t, &why));
    assert_string_equal(why, "max_rank");
    t.sales_rank = -1; /* unknown: not "at most 200 000" */
    assert_false(scanner_discovery_pass(&d, &t, &why));
    t = in;
    t.root_category = 5174;
    assert_false(scanner_discovery_pass(&d, &t, &why));
    assert_string_equal(why, "category");
    t.root_category = 0;
    assert_false(scanner_discovery_pass(&d, &t, &why));
    t = in;
    t.amazon_availability = 0;
    assert_false(scanner_discovery_pass(&d, &t, &why));
    assert_string_equal(why, "amazon");
    t = in;
    t.buy_price_cents = 4001;
    assert_false(scanner_discovery_pass(&d, &t, &why));
    assert_string_equal(why, "price");
    t.buy_price_cents = 3900;
    t.buy_shipping_cents = 200; /* the price a seller pays: with shipping */
    assert_false(scanner_discovery_pass(&d, &t, &why));
    t.buy_price_cents = 299;
    t.buy_shipping_cents = 0;
    assert_false(scanner_discovery_pass(&d, &t, &why));
    t.buy_source = JD_BUY_NONE;
    t.buy_price_cents = -1;
    assert_false(scanner_discovery_pass(&d, &t, &why));
    /* Nothing set: everything passes. */
    cfg_defaults(&c);
    scanner_discovery_from_cfg(&c, &d);
    assert_false(scanner_discovery_any(&d));
    jd_inputs_init(&t);
    assert_true(scanner_discovery_pass(&d, &t, NULL));
    assert_int_equal(d.price_type, 2); /* used_then_new buys Used first */
}

/* The discovery filters in the selections, as Keepa's keys; the file's own keys win. */
static void test_selection_discovery(void **state)
{
    (void)state;
    struct scanner_discovery d;
    memset(&d, 0, sizeof(d));
    d.max_rank = 200000;
    d.include[0] = 283155;
    d.n_include = 1;
    d.exclude[0] = 5174;
    d.exclude[1] = 2625373011;
    d.n_exclude = 2;
    d.no_amazon = true;
    d.min_price_cents = 300;
    d.max_price_cents = 4000;
    d.price_type = 1;
    struct scanner_selection s;
    char err[256], *j = NULL;
    size_t n;
    assert_int_equal(scanner_selection_load(&s, CFG_SOURCE_DEALS, 1, &d, "", err, sizeof(err)), 0);
    assert_int_equal(scanner_selection_render(&s, 0, &j, &n), 0);
    assert_non_null(strstr(j, "\"priceTypes\":[1]")); /* a New buy: New price drops */
    assert_non_null(strstr(j, "\"salesRankRange\":[0,200000]"));
    assert_non_null(strstr(j, "\"currentRange\":[300,4000]"));
    assert_non_null(strstr(j, "\"includeCategories\":[283155]"));
    assert_non_null(strstr(j, "\"excludeCategories\":[5174,2625373011]"));
    assert_non_null(strstr(j, "\"mustNotHaveAmazonOffer\":true"));
    assert_non_null(strstr(j, "\"isFilterEnabled\":true"));
    const char *p = strstr(j, "\"isRangeEnabled\":true");
    assert_non_null(p);
    assert_null(strstr(p + 1, "\"isRangeEnabled\"")); /* once: the built-in has it */
    uint64_t with = s.hash;
    free(j);
    scanner_selection_free(&s);
    assert_int_equal(scanner_selection_load(&s, CFG_SOURCE_DEALS, 1, NULL, "", err, sizeof(err)),
                     0);
    assert_true(s.hash != with); /* other filters, another walk */
    scanner_selection_free(&s);
    /* A file's own key wins. */
    const char *file = "{\"priceTypes\":[2],\"salesRankRange\":[0,5000],\"isRangeEnabled\":false}";
    assert_int_equal(
        scanner_selection_parse(&s, CFG_SOURCE_DEALS, 1, &d, file, "f", err, sizeof(err)), 0);
    assert_int_equal(scanner_selection_render(&s, 0, &j, &n), 0);
    assert_non_null(strstr(j, "\"salesRankRange\":[0,5000]"));
    assert_null(strstr(j, "200000"));
    assert_non_null(strstr(j, "\"isRangeEnabled\":false"));
    assert_non_null(strstr(j, "\"currentRange\":[300,4000]"));
    free(j);
    scanner_selection_free(&s);
    /* The product finder's spelling. */
    assert_int_equal(scanner_selection_parse(&s, CFG_SOURCE_QUERY, 1, &d, "{\"perPage\":100}", "q",
                                             err, sizeof(err)),
                     0);
    assert_int_equal(scanner_selection_render(&s, 0, &j, &n), 0);
    assert_int_equal(json_int(j, "current_SALES_lte"), 200000);
    assert_int_equal(json_int(j, "current_SALES_gte"), 1);
    assert_non_null(strstr(j, "\"rootCategory\":[283155]"));
    assert_non_null(strstr(j, "\"categories_exclude\":[5174,2625373011]"));
    assert_int_equal(json_int(j, "availabilityAmazon"), -1);
    assert_int_equal(json_int(j, "current_NEW_gte"), 300);
    assert_int_equal(json_int(j, "current_NEW_lte"), 4000);
    free(j);
    scanner_selection_free(&s);
}

static void test_page_kinds(void **state)
{
    (void)state;
    struct scanner_page *p = malloc(sizeof(*p));
    assert_non_null(p);
    scanner_page_reset(p);
    assert_int_equal(scanner_page_add(p, "B000000001", -1, 0), 0);
    assert_int_equal(scanner_page_add_code(p, "0747474801770", 3), 0);
    assert_int_equal(scanner_page_add_code(p, "0747474801770", 4), 1);
    assert_int_equal(scanner_page_add_code(p, "12ab", 4), -EINVAL);
    assert_int_equal(scanner_page_add(p, "B000000002", -1, 0), 0);
    assert_int_equal(scanner_page_add_code(p, "747474801771", 5), 0);
    uint16_t idx[8];
    /* One kind per request: the ASINs first, then the codes. */
    assert_int_equal(scanner_page_take(p, 8, idx), 2);
    assert_int_equal(idx[0], 0);
    assert_int_equal(idx[1], 2);
    assert_int_equal(scanner_page_take(p, 8, idx), 2);
    assert_int_equal(idx[0], 1);
    assert_int_equal(idx[1], 3);
    assert_int_equal(p->c[1].item, 3);
    assert_int_equal(p->c[0].item, -1);
    assert_int_equal(scanner_page_take(p, 8, idx), 0);
    free(p);
}

/* A lightning deal in the simulator's shape (docs/keepa-api.md §2.6). */
static void ld_init(struct kp_lightning_deal *ld, const char *asin, int state, int64_t start,
                    int64_t end)
{
    memset(ld, 0, sizeof(*ld));
    snprintf(ld->asin, sizeof(ld->asin), "%s", asin);
    snprintf(ld->seller_id, sizeof(ld->seller_id), "A8MJPPQ0C96PU");
    snprintf(ld->seller_name, sizeof(ld->seller_name), "Sim Seller");
    snprintf(ld->deal_id, sizeof(ld->deal_id), "f3ded0ccfe966257");
    ld->state = (int8_t)state;
    ld->start_keepa_min = start;
    ld->end_keepa_min = end;
    ld->deal_price_cents = state == KP_LD_UPCOMING ? -1 : 1600;
    ld->current_price_cents = state == KP_LD_UPCOMING ? -1 : 2000;
}

static bool ld_keep(const struct kp_lightning_deal *ld, int64_t now, int64_t soon,
                    const struct scanner_discovery *d, const char **why)
{
    struct scanner_list_entry e;
    assert_int_equal(scanner_lightning_entry(ld, &e), 0);
    *why = "";
    return scanner_lightning_candidate(&e, now, soon, d, why);
}

/*
 * Which lightning deals are candidates: running now, or starting within [scan] lightning_soon;
 * never sold out, expired, suppressed or past their window. The deal's own data decides
 * no_amazon and (for a New buyer) the price range for free; what it does not give is left to
 * the peek.
 */
static void test_lightning_candidates(void **state)
{
    (void)state;
    const int64_t now = 8163342, soon = 60;
    struct kp_lightning_deal ld;
    const char *why;
    ld_init(&ld, "B0LIGHT001", KP_LD_AVAILABLE, now - 100, now + 140);
    assert_true(ld_keep(&ld, now, soon, NULL, &why));
    ld.state = KP_LD_WAITLIST;
    assert_true(ld_keep(&ld, now, soon, NULL, &why));
    ld.state = KP_LD_SOLDOUT;
    assert_false(ld_keep(&ld, now, soon, NULL, &why));
    assert_string_equal(why, "sold_out");
    ld.state = KP_LD_EXPIRED;
    assert_false(ld_keep(&ld, now, soon, NULL, &why));
    assert_string_equal(why, "ended");
    ld.state = KP_LD_SUPPRESSED;
    assert_false(ld_keep(&ld, now, soon, NULL, &why));
    /* Its window ended by the list's clock, whatever the state says. */
    ld_init(&ld, "B0LIGHT001", KP_LD_AVAILABLE, now - 360, now);
    assert_false(ld_keep(&ld, now, soon, NULL, &why));
    assert_string_equal(why, "ended");
    /* Upcoming: a candidate within `soon`, not beyond; a start that is not known is not soon. */
    ld_init(&ld, "B0LIGHT001", KP_LD_UPCOMING, now + 60, now + 300);
    assert_true(ld_keep(&ld, now, soon, NULL, &why));
    ld.start_keepa_min = now + 61;
    assert_false(ld_keep(&ld, now, soon, NULL, &why));
    assert_string_equal(why, "not_soon");
    assert_true(ld_keep(&ld, now, 0 + 61, NULL, &why));
    ld.start_keepa_min = -1;
    assert_false(ld_keep(&ld, now, soon, NULL, &why));
    /* A state Keepa adds later counts by its window. */
    ld_init(&ld, "B0LIGHT001", KP_LD_UNKNOWN, now - 5, now + 5);
    assert_true(ld_keep(&ld, now, soon, NULL, &why));
    ld.start_keepa_min = now + 500;
    ld.end_keepa_min = now + 800;
    assert_false(ld_keep(&ld, now, soon, NULL, &why));
    assert_string_equal(why, "not_soon");
    /* A malformed ASIN is no entry. */
    struct scanner_list_entry e;
    ld_init(&ld, "B0LIGHT", KP_LD_AVAILABLE, now - 5, now + 5);
    assert_int_equal(scanner_lightning_entry(&ld, &e), -EINVAL);

    /* The discovery filters the deal's data decides. */
    struct cfg c;
    char err[512];
    const char *text = "[scan]\nno_amazon = true\nmin_price = 10\nmax_price = 18\n"
                       "max_rank = 1000\ncategories = 283155\n[filter]\nbuy_condition = new\n";
    assert_int_equal(cfg_load_buffer(text, strlen(text), "t", &c, err, sizeof(err)), 0);
    struct scanner_discovery d;
    scanner_discovery_from_cfg(&c, &d);
    ld_init(&ld, "B0LIGHT001", KP_LD_AVAILABLE, now - 5, now + 100);
    assert_true(ld_keep(&ld, now, soon, &d, &why)); /* deal 16.00 in range; rank, category: peek */
    snprintf(ld.seller_id, sizeof(ld.seller_id), "ATVPDKIKX0DER");
    assert_false(ld_keep(&ld, now, soon, &d, &why));
    assert_string_equal(why, "amazon");
    snprintf(ld.seller_id, sizeof(ld.seller_id), "A3JWKAKR8XB7XF");
    snprintf(ld.seller_name, sizeof(ld.seller_name), "Amazon.de");
    assert_false(ld_keep(&ld, now, soon, &d, &why));
    ld_init(&ld, "B0LIGHT001", KP_LD_AVAILABLE, now - 5, now + 100);
    ld.deal_price_cents = 1900; /* both prices above 18.00 */
    assert_false(ld_keep(&ld, now, soon, &d, &why));
    assert_string_equal(why, "price");
    ld.deal_price_cents = 900;
    ld.current_price_cents = 950; /* both below 10.00 */
    assert_false(ld_keep(&ld, now, soon, &d, &why));
    ld.current_price_cents = 1200; /* one of them in range: the peek decides */
    assert_true(ld_keep(&ld, now, soon, &d, &why));
    ld_init(&ld, "B0LIGHT001", KP_LD_UPCOMING, now + 10, now + 100);
    assert_true(ld_keep(&ld, now, soon, &d, &why)); /* no price yet: the peek decides */
    /* A Used buyer: the deal's New prices say nothing about the buy. */
    text = "[scan]\nmax_price = 5\n";
    assert_int_equal(cfg_load_buffer(text, strlen(text), "t", &c, err, sizeof(err)), 0);
    scanner_discovery_from_cfg(&c, &d);
    ld_init(&ld, "B0LIGHT001", KP_LD_AVAILABLE, now - 5, now + 100);
    assert_true(ld_keep(&ld, now, soon, &d, &why));
}

/* What `seen` keeps for a lightning deal: the same deal is one hash, a new or changed one not. */
static void test_lightning_hash(void **state)
{
    (void)state;
    struct kp_lightning_deal ld;
    struct scanner_list_entry a, b;
    ld_init(&ld, "B0LIGHT001", KP_LD_UPCOMING, 1000, 1360);
    assert_int_equal(scanner_lightning_entry(&ld, &a), 0);
    ld.percent_claimed = 40; /* claims move all the time: not a reason to pay again */
    ld.rating = 45;
    assert_int_equal(scanner_lightning_entry(&ld, &b), 0);
    assert_true(a.hash == b.hash);
    assert_true(a.start_min == 1000 && a.end_min == 1360 && a.state == KP_LD_UPCOMING);
    ld.deal_price_cents = 1500; /* it went live with a price */
    assert_int_equal(scanner_lightning_entry(&ld, &b), 0);
    assert_true(a.hash != b.hash);
    ld_init(&ld, "B0LIGHT001", KP_LD_UPCOMING, 2440, 2800); /* the next day's deal */
    snprintf(ld.deal_id, sizeof(ld.deal_id), "0123456789abcdef");
    assert_int_equal(scanner_lightning_entry(&ld, &b), 0);
    assert_true(a.hash != b.hash);
    assert_int_equal(scanner_bestseller_entry("B0BEST0001", &b), 0);
    assert_true(b.hash == 0 && b.start_min == -1 && b.deal_price_cents == -1);
    assert_int_equal(scanner_bestseller_entry("b0best0001", &b), -EINVAL);
}

/* The cursor over lists and their chunks moves past a chunk only when asked to, in order. */
static void test_list_cursor(void **state)
{
    (void)state;
    struct scanner_cursor c = {.source = CFG_SOURCE_BESTSELLERS};
    /* Three categories: 320 entries, none, 100. */
    assert_false(scanner_cursor_after_list_chunk(&c, 150, 320, 3));
    assert_true(c.position == SCANNER_LIST_POS(0, 150));
    assert_int_equal(SCANNER_LIST_OF(c.position), 0);
    assert_int_equal(SCANNER_OFFSET_OF(c.position), 150);
    assert_false(scanner_cursor_after_list_chunk(&c, 300, 320, 3));
    assert_false(scanner_cursor_after_list_chunk(&c, 320, 320, 3));
    assert_true(c.position == SCANNER_LIST_POS(1, 0));
    assert_false(scanner_cursor_after_list_chunk(&c, 0, 0, 3)); /* nothing found: next */
    assert_true(c.position == SCANNER_LIST_POS(2, 0));
    assert_true(scanner_cursor_after_list_chunk(&c, 100, 100, 3));
    assert_true(c.position == 0 && c.pass == 1);
    /* The lightning list is one list. */
    struct scanner_cursor l = {.source = CFG_SOURCE_LIGHTNING};
    assert_false(scanner_cursor_after_list_chunk(&l, 150, 151, 1));
    assert_true(scanner_cursor_after_list_chunk(&l, 151, 151, 1));
    assert_true(l.position == 0 && l.pass == 1);
    /* Its byte form keeps list and offset. */
    c.position = SCANNER_LIST_POS(31, 99999);
    uint8_t buf[SCANNER_CURSOR_BYTES];
    scanner_cursor_encode(&c, buf);
    struct scanner_cursor back;
    assert_int_equal(scanner_cursor_decode(buf, sizeof(buf), &back), 0);
    assert_int_equal(SCANNER_LIST_OF(back.position), 31);
    assert_int_equal(SCANNER_OFFSET_OF(back.position), 99999);

    /* The list's clock: its reference minute advanced by the Keepa minutes since. */
    assert_int_equal(scanner_list_clock(1000, 5, 5 + 2500, 100), 1025);
    assert_int_equal(scanner_list_clock(1000, 5, 4, 100), 1000);
}

/* The configured best-seller lists, and the hash that restarts the walk when they change. */
static void test_bestseller_config(void **state)
{
    (void)state;
    struct cfg c;
    char err[512];
    const char *text = "[scan]\nsource = bestsellers\nbestseller_categories = 283155, 2831551\n"
                       "bestseller_range = 90\n";
    assert_int_equal(cfg_load_buffer(text, strlen(text), "t", &c, err, sizeof(err)), 0);
    int64_t ids[SCANNER_CATS_MAX];
    size_t n;
    int range;
    uint64_t h1, h2, h3;
    assert_int_equal(scanner_bestsellers_from_cfg(&c, ids, &n, &range, &h1), 0);
    assert_int_equal(n, 2);
    assert_true(ids[0] == 283155 && ids[1] == 2831551);
    assert_int_equal(range, 90);
    snprintf(c.scan_bestseller_categories, sizeof(c.scan_bestseller_categories), "2831551, 283155");
    assert_int_equal(scanner_bestsellers_from_cfg(&c, ids, &n, &range, &h2), 0);
    assert_true(h1 != h2); /* the order is the walk's */
    c.scan_bestseller_range = 30;
    assert_int_equal(scanner_bestsellers_from_cfg(&c, ids, &n, &range, &h3), 0);
    assert_true(h3 != h2);
    c.scan_bestseller_range = 60;
    assert_int_equal(scanner_bestsellers_from_cfg(&c, ids, &n, &range, &h3), -EINVAL);
}

/* The list kept in the store reads back field for field; other bytes are refused. */
static void test_saved_list_round_trip(void **state)
{
    (void)state;
    struct scanner_list_entry e[3] = {{.asin = "B0D8W1YVBX",
                                       .state = 2,
                                       .amazon = true,
                                       .deal_price_cents = 1999,
                                       .current_price_cents = 2999,
                                       .start_min = 7000123,
                                       .end_min = 7000483,
                                       .hash = 0xfedcba9876543210ULL},
                                      {.asin = "0316769487",
                                       .state = 0,
                                       .amazon = false,
                                       .deal_price_cents = -1,
                                       .current_price_cents = -1,
                                       .start_min = -1,
                                       .end_min = -1,
                                       .hash = 0},
                                      {.asin = "B000000001",
                                       .state = -1,
                                       .deal_price_cents = 2147483647,
                                       .current_price_cents = -2,
                                       .start_min = INT64_MAX,
                                       .end_min = INT64_MIN,
                                       .hash = 1}};
    struct scanner_saved_list head = {.source = 4,
                                      .truncated = true,
                                      .pass = 7,
                                      .index = 3,
                                      .walk_hash = 0x0123456789abcdefULL,
                                      .ref_min = 7000200,
                                      .saved_wall_ms = 1765000000123LL,
                                      .n = 3};
    size_t len = scanner_list_bytes(3);
    assert_int_equal(len, SCANNER_SAVED_HEAD_BYTES + 3 * SCANNER_SAVED_ENTRY_BYTES);
    uint8_t *buf = malloc(len);
    assert_non_null(buf);
    scanner_list_encode(&head, e, buf);
    struct scanner_saved_list h;
    assert_int_equal(scanner_list_decode_head(buf, len, &h), 0);
    assert_int_equal(h.source, 4);
    assert_true(h.truncated);
    assert_int_equal(h.pass, 7);
    assert_int_equal(h.index, 3);
    assert_true(h.walk_hash == head.walk_hash);
    assert_true(h.ref_min == head.ref_min && h.saved_wall_ms == head.saved_wall_ms);
    assert_int_equal(h.n, 3);
    for (size_t i = 0; i < 3; i++) {
        struct scanner_list_entry out;
        scanner_list_decode_entry(buf, i, &out);
        assert_string_equal(out.asin, e[i].asin);
        assert_int_equal(out.state, e[i].state);
        assert_int_equal(out.amazon, e[i].amazon);
        assert_int_equal(out.deal_price_cents, e[i].deal_price_cents);
        assert_int_equal(out.current_price_cents, e[i].current_price_cents);
        assert_true(out.start_min == e[i].start_min && out.end_min == e[i].end_min);
        assert_true(out.hash == e[i].hash);
    }
    /* A byte short, a byte more, another version: refused. */
    assert_int_equal(scanner_list_decode_head(buf, len - 1, &h), -EBADMSG);
    assert_int_equal(scanner_list_decode_head(buf, SCANNER_SAVED_HEAD_BYTES - 1, &h), -EBADMSG);
    uint8_t *more = calloc(1, len + 1);
    memcpy(more, buf, len);
    assert_int_equal(scanner_list_decode_head(more, len + 1, &h), -EBADMSG);
    free(more);
    buf[0] = 2;
    assert_int_equal(scanner_list_decode_head(buf, len, &h), -EBADMSG);
    free(buf);
}

/* ---- value per token: the free pre-score, remembered fees, the pass pause ---- */

static void test_prescore(void **state)
{
    (void)state;
    struct cfg c;
    cfg_defaults(&c);
    struct jd_rules r;
    jd_rules_from_cfg(&c, &r);
    struct kp_deal d;
    deal_init(&d, "B000000001");
    d.creation_date_keepa_min = 7536800;
    int64_t profit = 0, at = 0;
    scanner_prescore_deal(&d, &r, NULL, false, &profit, &at);
    /* The upper bound of the feed's judgement: at least what the full judgement could find. */
    struct jd_inputs in;
    struct jd_verdict v;
    jd_inputs_from_deal(&d, &r, 0, &in);
    jd_judge(&in, &r, &v);
    assert_true(v.priced);
    assert_int_equal(profit, v.profit_cents);
    assert_true(profit > 0);
    assert_int_equal(at, 7536800);
    /* A deeper drop scores more; without a creation date, lastUpdate is its moment. */
    int64_t deeper = 0;
    d.current[2] = 1000;
    d.creation_date_keepa_min = 0;
    scanner_prescore_deal(&d, &r, NULL, false, &deeper, &at);
    assert_true(deeper > profit);
    assert_int_equal(at, 7536888);
    /* No price: no score. */
    d.current[2] = -1;
    scanner_prescore_deal(&d, &r, NULL, false, &deeper, &at);
    assert_int_equal(deeper, 0);

    /* Worth: halved per half-life of age behind the newest moment. */
    assert_true(fabs(scanner_prescore(1000, 100, 100, 60) - 1000) < 1e-9);
    assert_true(fabs(scanner_prescore(1000, 40, 100, 60) - 500) < 1e-9);
    assert_true(fabs(scanner_prescore(1000, 0, 100, 60) - 1000) < 1e-9); /* moment unknown */
    assert_true(fabs(scanner_prescore(1000, -20 + 100, 100, 0) -
                     1000 * exp2(-20.0 / SCANNER_HALF_LIFE_MIN)) < 1e-9); /* the prior */
    assert_true(scanner_prescore(0, 100, 100, 60) == 0);
}

/* The fees a peek read are remembered, and the pre-score judges the next feed entry with
 * them: a product that only looked like a deal with fees counted 0 is a sure fail. */
static void test_prescore_with_learned_fees(void **state)
{
    (void)state;
    struct cfg c;
    cfg_defaults(&c);
    struct jd_rules r;
    jd_rules_from_cfg(&c, &r);
    static struct scanner_fees fees;
    memset(&fees, 0, sizeof(fees));
    struct kp_deal d;
    deal_init(&d, "B000000001");
    d.current[2] = 1900; /* Used 19.00 against a 30.00 average: ROI 58 % before any fee */
    int64_t bare = 0, with = 0, at = 0;
    scanner_prescore_deal(&d, &r, &fees, false, &bare, &at);
    assert_true(bare > 0); /* fees not known yet: the upper bound */

    /* A peek read this product's fees: 15 % referral, a 6.50 FBA fee. */
    struct jd_inputs peeked;
    jd_inputs_init(&peeked);
    peeked.referral_bp = 1500;
    peeked.fba_fee_cents = 650;
    peeked.closing_fee_cents = -1;
    scanner_fees_put(&fees, "B000000002", &peeked); /* not known: not remembered */
    assert_false(scanner_fees_get(&fees, "B000000002", &peeked));
    peeked.fees_known = true;
    scanner_fees_put(&fees, "B000000001", &peeked);
    struct jd_inputs got;
    jd_inputs_init(&got);
    assert_true(scanner_fees_get(&fees, "B000000001", &got));
    assert_true(got.fees_known);
    assert_int_equal(got.referral_bp, 1500);
    assert_int_equal(got.fba_fee_cents, 650);
    assert_false(scanner_fees_get(&fees, "B000000009", &got));
    /* 30.00 - 4.50 - 6.50 = 19.00 payout against 19.00 + 1.75 landed: a sure fail. */
    scanner_prescore_deal(&d, &r, &fees, false, &with, &at);
    assert_int_equal(with, -1);
    /* Cheaper now: still a deal with its fees, worth less than without them. */
    d.current[2] = 1000;
    scanner_prescore_deal(&d, &r, NULL, false, &bare, &at);
    scanner_prescore_deal(&d, &r, &fees, false, &with, &at);
    assert_true(with > 0);
    assert_true(with < bare);
    /* A peek has no Buy Box: a feed Buy Box below the average does not make it a sure fail. */
    d.current[32] = 1200; /* Used Buy Box 12.00 (landed) */
    scanner_prescore_deal(&d, &r, &fees, false, &with, &at);
    assert_true(with > 0);
}

static void learn_fees(struct scanner_fees *f, int64_t root, int n, int32_t referral_bp,
                       int32_t fba_cents, int32_t fba_step)
{
    for (int i = 0; i < n; i++) {
        struct jd_verdict v;
        memset(&v, 0, sizeof(v));
        v.payout_known = true;
        v.referral_bp = referral_bp;
        v.fba_cents = fba_cents + fba_step * i;
        v.closing_cents = 0;
        scanner_fees_learn(f, root, &v);
    }
}

/* `lowfees`: a product never peeked is judged at the low fees peeks found (the 10th percentile
 * of each, per root category once it has enough), not at none; a feed bound learns nothing. */
static void test_prescore_with_low_fees(void **state)
{
    (void)state;
    struct cfg c;
    cfg_defaults(&c);
    struct jd_rules r;
    jd_rules_from_cfg(&c, &r);
    static struct scanner_fees fees;
    memset(&fees, 0, sizeof(fees));
    scanner_fees_init(&fees);
    struct kp_deal d;
    deal_init(&d, "B000000001");
    d.current[2] = 1900; /* Used 19.00 against a 30.00 average: ROI 58 % before any fee */
    int64_t profit = 0, at = 0;
    struct jd_inputs in;
    jd_inputs_init(&in);

    struct jd_verdict bound;
    memset(&bound, 0, sizeof(bound));
    bound.payout_known = bound.bound = true;
    for (int i = 0; i < 2 * SCANNER_FEES_LOW_MIN; i++)
        scanner_fees_learn(&fees, 0, &bound); /* the feed's bound: not fees */
    learn_fees(&fees, 0, SCANNER_FEES_LOW_MIN - 1, 1500, 650, 10);
    assert_false(scanner_fees_low(&fees, 0, &in)); /* too few yet */
    scanner_prescore_deal(&d, &r, &fees, true, &profit, &at);
    assert_true(profit > 0); /* the upper bound, as before */

    /* 15 % referral, FBA 6.50 .. 8.90, most 6.50, the oldest forgotten: the 10th percentile. */
    learn_fees(&fees, 0, SCANNER_FEES_LOW_N + 7 - (SCANNER_FEES_LOW_MIN - 1), 1500, 650, 0);
    learn_fees(&fees, 0, 25, 1500, 650, 10);
    assert_true(scanner_fees_low(&fees, 0, &in));
    assert_true(in.fees_known);
    assert_int_equal(in.referral_bp, 1500);
    assert_int_equal(in.fba_fee_cents, 650);
    assert_int_equal(in.closing_fee_cents, 0);
    /* 30.00 - 4.50 - 6.50 = 19.00 against 20.75 landed: a sure fail, though never peeked... */
    scanner_prescore_deal(&d, &r, &fees, true, &profit, &at);
    assert_int_equal(profit, -1);
    /* ... and without the rule the upper bound lets it through. */
    scanner_prescore_deal(&d, &r, &fees, false, &profit, &at);
    assert_true(profit > 0);
    /* Cheaper: a deal even at the low fees. */
    d.current[2] = 1000;
    scanner_prescore_deal(&d, &r, &fees, true, &profit, &at);
    assert_true(profit > 0);
    d.current[2] = 1900;

    /* A root category with its own fees (8 %, FBA 1.00) stands alone once it has enough. */
    d.root_cat = 172282;
    learn_fees(&fees, 172282, SCANNER_FEES_LOW_MIN - 1, 800, 100, 0);
    struct jd_inputs all;
    jd_inputs_init(&all);
    assert_true(scanner_fees_low(&fees, 0, &all));
    assert_true(scanner_fees_low(&fees, 172282, &in));
    assert_int_equal(in.referral_bp, all.referral_bp); /* leans on every product's fees */
    assert_int_equal(in.fba_fee_cents, all.fba_fee_cents);
    assert_int_equal(all.referral_bp, 800); /* they count there too: 23 of the last 128 */
    learn_fees(&fees, 172282, 1, 800, 100, 0);
    assert_true(scanner_fees_low(&fees, 172282, &in));
    assert_int_equal(in.referral_bp, 800);
    assert_int_equal(in.fba_fee_cents, 100);
    scanner_prescore_deal(&d, &r, &fees, true, &profit, &at);
    assert_true(profit > 0); /* 30.00 - 2.40 - 1.00 = 26.60 against 20.75 */
    /* An FBA fee of 0 learned is charged as 1 cent, not as the judgement's default. */
    memset(&fees, 0, sizeof(fees));
    scanner_fees_init(&fees);
    learn_fees(&fees, 0, SCANNER_FEES_LOW_MIN, 1500, 0, 0);
    assert_true(scanner_fees_low(&fees, 0, &in));
    assert_int_equal(in.fba_fee_cents, 1);
}

/* `peekrate`: a pre-score's class is what it knew (fees), whether only the feed's Buy Box made
 * it a deal, and its profit band; a class whose peeks pass less than 1 in 4 is not peeked, but
 * for one candidate in SCANNER_PEEK_EXPLORE, and the page is taken without them. */
static void test_peek_rate(void **state)
{
    (void)state;
    struct cfg c;
    cfg_defaults(&c);
    struct jd_rules r;
    jd_rules_from_cfg(&c, &r);
    static struct scanner_fees fees;
    memset(&fees, 0, sizeof(fees));
    scanner_fees_init(&fees);

    /* The classes. */
    uint8_t none = scanner_peek_class(0, false, 1500), own = scanner_peek_class(2, false, 1500);
    uint8_t own_bb = scanner_peek_class(2, true, 1500),
            own_dear = scanner_peek_class(2, false, 5000);
    assert_true(none != own && own != own_bb && own != own_dear && none != own_bb);
    assert_true(own_bb < SCANNER_PEEK_CLASSES && own_dear < SCANNER_PEEK_CLASSES);
    assert_int_equal(scanner_peek_class(2, false, 1000), scanner_peek_class(2, false, 1999));
    assert_true(scanner_peek_class(2, false, 999) != scanner_peek_class(2, false, 1000));

    /* The pre-score's class: fees unknown, then the product's own fees, then a deal only at
     * the feed's Used Buy Box (a peek, which reads none, sells at the 90-day average). */
    struct kp_deal d;
    deal_init(&d, "B000000001");
    d.current[2] = 1600;
    int64_t profit = 0, at = 0;
    uint8_t cls = 0;
    scanner_prescore_deal_class(&d, &r, &fees, true, &profit, &at, &cls);
    assert_true(profit > 0);
    assert_int_equal(cls, scanner_peek_class(0, false, profit));
    struct jd_inputs peeked;
    jd_inputs_init(&peeked);
    peeked.referral_bp = 1500;
    peeked.fba_fee_cents = 650;
    peeked.closing_fee_cents = -1;
    peeked.fees_known = true;
    scanner_fees_put(&fees, "B000000001", &peeked);
    d.current[2] = 1000;
    scanner_prescore_deal_class(&d, &r, &fees, true, &profit, &at, &cls);
    assert_true(profit > 0);
    assert_int_equal(cls, scanner_peek_class(2, false, profit));
    d.current[2] = 1900; /* a sure fail at 30.00 with its fees ... */
    scanner_prescore_deal_class(&d, &r, &fees, true, &profit, &at, &cls);
    assert_int_equal(profit, -1);
    assert_int_equal(cls, SCANNER_PEEK_NONE);
    d.current[32] = 4500; /* ... but a deal sold at a Used Buy Box of 45.00 */
    scanner_prescore_deal_class(&d, &r, &fees, true, &profit, &at, &cls);
    assert_true(profit > 0);
    assert_int_equal(cls, scanner_peek_class(2, true, profit));

    /* Too few outcomes: peeked. */
    for (int i = 0; i < SCANNER_PEEK_MIN - 1; i++)
        scanner_peek_learn(&fees, own_bb, false);
    assert_false(scanner_peek_skip(&fees, own_bb));
    assert_int_equal(scanner_peek_classes_shut(&fees), 0);
    scanner_peek_learn(&fees, own_bb, false);
    assert_int_equal(scanner_peek_classes_shut(&fees), 1); /* what `kdeals stat` shows */
    /* Now 16 failures of 16: skipped, but one in SCANNER_PEEK_EXPLORE. */
    int peeked_n = 0;
    for (int i = 0; i < 4 * SCANNER_PEEK_EXPLORE; i++)
        peeked_n += !scanner_peek_skip(&fees, own_bb);
    assert_int_equal(peeked_n, 4);
    /* 1 in 4 of the last outcomes passing is enough; fewer is not. */
    for (int i = 0; i < SCANNER_PEEK_WINDOW; i++)
        scanner_peek_learn(&fees, own, i % 4 == 0);
    assert_false(scanner_peek_skip(&fees, own));
    scanner_peek_learn(&fees, own, false); /* 7 of the last 32 */
    assert_true(scanner_peek_skip(&fees, own) || scanner_peek_skip(&fees, own));
    assert_int_equal(scanner_peek_classes_shut(&fees), 2);
    /* Only the last SCANNER_PEEK_WINDOW count: a class that passes again is peeked again. */
    for (int i = 0; i < SCANNER_PEEK_WINDOW / 2; i++)
        scanner_peek_learn(&fees, own_bb, true);
    assert_false(scanner_peek_skip(&fees, own_bb));
    assert_int_equal(scanner_peek_classes_shut(&fees), 1);
    assert_false(scanner_peek_skip(&fees, SCANNER_PEEK_NONE)); /* no class: peeked */
    scanner_peek_learn(&fees, SCANNER_PEEK_NONE, false);       /* nothing learned */

    /* The page: the candidate of a failing class is done unpeeked; without the rates, taken. */
    static struct scanner_page p;
    const char *asins[] = {"B000000001", "B000000002", "B000000003"};
    uint8_t classes[] = {own_dear, none, own_dear};
    for (int i = 0; i < SCANNER_PEEK_WINDOW; i++)
        scanner_peek_learn(&fees, none, false);
    fees.peek[none].skipped = 0;
    for (int pass = 0; pass < 2; pass++) {
        scanner_page_reset(&p);
        for (int i = 0; i < 3; i++) {
            assert_int_equal(scanner_page_add(&p, asins[i], -1, 0), 0);
            p.c[i].prescore_profit_cents = 3000 - 100 * i;
            p.c[i].peek_class = classes[i];
        }
        uint16_t idx[3];
        size_t dropped = 0;
        size_t n = pass == 0 ? scanner_page_take_rated(&p, 3, idx, 60, &fees, &dropped)
                             : scanner_page_take_rated(&p, 3, idx, 60, NULL, &dropped);
        assert_int_equal(n, pass == 0 ? 2 : 3);
        assert_int_equal(dropped, pass == 0 ? 1 : 0);
        assert_int_equal(idx[0], 0);
        assert_int_equal(idx[1], pass == 0 ? 2 : 1);
        assert_int_equal(p.c[1].state, pass == 0 ? SCANNER_CAND_DONE : SCANNER_CAND_IN_FLIGHT);
        assert_true(scanner_page_complete(&p) == false);
    }
    /* A candidate without a feed row has no class. */
    scanner_page_reset(&p);
    scanner_page_add(&p, "B000000009", -1, 0);
    assert_int_equal(p.c[0].peek_class, SCANNER_PEEK_NONE);
    scanner_page_add_code(&p, "012345678905", 3);
    assert_int_equal(p.c[1].peek_class, SCANNER_PEEK_NONE);
}

static void test_page_take_best(void **state)
{
    (void)state;
    static struct scanner_page p;
    scanner_page_reset(&p);
    const char *asins[] = {"B000000001", "B000000002", "B000000003", "B000000004", "B000000005"};
    int64_t profit[] = {500, 3000, 3000, 0, 900};
    int64_t at[] = {1000, 1000, 880, 1000, 1000}; /* the third is two half-lives older */
    for (int i = 0; i < 5; i++) {
        assert_int_equal(scanner_page_add(&p, asins[i], -1, 0), 0);
        p.c[i].prescore_profit_cents = profit[i];
        p.c[i].prescore_at_min = at[i];
    }
    uint16_t idx[5];
    assert_int_equal(scanner_page_take_best(&p, 3, idx, 60), 3);
    assert_int_equal(idx[0], 1); /* 3000 */
    assert_int_equal(idx[1], 4); /* 900 */
    assert_int_equal(idx[2], 2); /* 3000 / 4 = 750 */
    assert_int_equal(scanner_page_take_best(&p, 5, idx, 60), 2);
    assert_int_equal(idx[0], 0);
    assert_int_equal(idx[1], 3);
    assert_int_equal(scanner_page_take_best(&p, 5, idx, 60), 0);
    /* A source without feed data (every score 0) keeps its page order. */
    scanner_page_reset(&p);
    for (int i = 0; i < 5; i++)
        scanner_page_add(&p, asins[4 - i], -1, 0);
    assert_int_equal(scanner_page_take_best(&p, 5, idx, 60), 5);
    for (int i = 0; i < 5; i++)
        assert_int_equal(idx[i], i);
}

static void test_pass_pause(void **state)
{
    (void)state;
    /* Tokens scarce, or the rule off: the configured pause. */
    assert_int_equal(scanner_pass_pause_ms(30000, true, 40, 5, 50), 30000);
    assert_int_equal(scanner_pass_pause_ms(30000, false, 6000, 100, 50), 30000);
    assert_int_equal(scanner_pass_pause_ms(30000, true, 0, 0, 50), 30000); /* no reading yet */
    /* More than SCANNER_BUSY_MIN minutes of refill in the bucket: the next pass at once. */
    assert_int_equal(scanner_pass_pause_ms(30000, true, 5 * SCANNER_BUSY_MIN + 1, 5, 50), 0);
    assert_int_equal(scanner_pass_pause_ms(30000, true, 5 * SCANNER_BUSY_MIN, 5, 50), 30000);
    assert_int_equal(scanner_pass_pause_ms(-1, true, 0, 5, 50), 0);
    /* A pass that peeked nothing: the configured pause, however full the bucket. */
    assert_int_equal(scanner_pass_pause_ms(30000, true, 5 * SCANNER_BUSY_MIN + 1, 5, 0), 30000);
}

static void test_fresh_walk(void **state)
{
    (void)state;
    /* A full walk (horizon 0) is ended only by a short or the last page. */
    assert_false(scanner_fresh_ends_pass(0, 1000));
    /* A page reaching entries older than the horizon ends the pass; one that does not, or
     * whose entries told no moment, does not. */
    assert_true(scanner_fresh_ends_pass(1000, 999));
    assert_false(scanner_fresh_ends_pass(1000, 1000));
    assert_false(scanner_fresh_ends_pass(1000, 5000));
    assert_false(scanner_fresh_ends_pass(1000, 0));
    /* The next horizon: the newest moment of the pass less the margin, while tokens are
     * scarce; a full walk when nothing told a moment or the bucket holds tokens to spare. */
    assert_int_equal(scanner_fresh_horizon(8000, 40, 5 * SCANNER_FRESH_FULL_MIN),
                     8000 - SCANNER_FRESH_MARGIN_MIN);
    assert_int_equal(scanner_fresh_horizon(8000, 0, 0), 8000 - SCANNER_FRESH_MARGIN_MIN);
    assert_int_equal(scanner_fresh_horizon(0, 40, 5 * SCANNER_FRESH_FULL_MIN), 0);
    assert_int_equal(
        scanner_fresh_horizon(8000, 5 * SCANNER_FRESH_FULL_MIN, 5 * SCANNER_FRESH_FULL_MIN),
        8000 - SCANNER_FRESH_MARGIN_MIN);
    assert_int_equal(
        scanner_fresh_horizon(8000, 5 * SCANNER_FRESH_FULL_MIN + 1, 5 * SCANNER_FRESH_FULL_MIN), 0);
    /* Deal-age order, newest first, with the margin's slack; unknown moments prove nothing. */
    assert_true(scanner_fresh_in_order(0, 5000));
    assert_true(scanner_fresh_in_order(5000, 4000));
    assert_true(scanner_fresh_in_order(5000, 5000 + SCANNER_FRESH_MARGIN_MIN));
    assert_false(scanner_fresh_in_order(5000, 5001 + SCANNER_FRESH_MARGIN_MIN));
    assert_true(scanner_fresh_in_order(5000, 0));
    /* The pause after a fresh pass ends when the bucket would pay for a full walk. */
    assert_int_equal(scanner_fresh_pause_ms(30000, 0, 5, 100, 5 * SCANNER_FRESH_FULL_MIN),
                     (SCANNER_FRESH_FULL_MIN + 1) * 100);
    assert_int_equal(scanner_fresh_pause_ms(30000, 5 * SCANNER_FRESH_FULL_MIN, 5, 100,
                                            5 * SCANNER_FRESH_FULL_MIN),
                     100);
    assert_int_equal(scanner_fresh_pause_ms(30000, 5 * SCANNER_FRESH_FULL_MIN + 1, 5, 100,
                                            5 * SCANNER_FRESH_FULL_MIN),
                     0);
    assert_int_equal(scanner_fresh_pause_ms(500, 0, 5, 100, 5 * SCANNER_FRESH_FULL_MIN),
                     500); /* the pause is shorter */
    assert_int_equal(scanner_fresh_pause_ms(30000, 0, 0, 100, 5 * SCANNER_FRESH_FULL_MIN),
                     30000); /* no reading */
    assert_int_equal(scanner_fresh_pause_ms(0, 0, 5, 100, 5 * SCANNER_FRESH_FULL_MIN), 0);
    /* The reserve is what the last full walk cost, never more than the minutes of refill: a
     * 20/min plan whose walk costs 340 tokens walks past 340, not 600; on 5/min (150 tokens
     * of refill) the walk's 340 do not raise it; with no walk seen yet, the minutes. */
    assert_int_equal(scanner_fresh_full_tokens(20, 340), 340);
    assert_int_equal(scanner_fresh_full_tokens(5, 340), 5 * SCANNER_FRESH_FULL_MIN);
    assert_int_equal(scanner_fresh_full_tokens(20, 0), 20 * SCANNER_FRESH_FULL_MIN);
    assert_int_equal(scanner_fresh_full_tokens(0, 340), 0);
    assert_int_equal(scanner_fresh_horizon(8000, 341, scanner_fresh_full_tokens(20, 340)), 0);
    assert_int_equal(scanner_fresh_horizon(8000, 340, scanner_fresh_full_tokens(20, 340)),
                     8000 - SCANNER_FRESH_MARGIN_MIN);
    assert_int_equal(scanner_fresh_pause_ms(30000, 300, 20, 100, 340), 300); /* 41 tokens: 3 min */
    assert_int_equal(scanner_fresh_pause_ms(30000, 300, 20, 100, 0), 30000); /* no reading */
    /* Ending the pass where it stands. */
    struct scanner_cursor c = {.source = 1, .pass = 7, .position = 4};
    scanner_cursor_end_pass(&c);
    assert_int_equal(c.position, 0);
    assert_int_equal(c.pass, 8);
}

static void test_selection_sorted(void **state)
{
    (void)state;
    struct scanner_selection s;
    char err[256];
    const char *json = "{\"domainId\":1,\"priceTypes\":[2],\"sortType\":4,\"dateRange\":3,"
                       "\"isRangeEnabled\":true,\"deltaPercentRange\":[10,100]}";
    assert_int_equal(
        scanner_selection_parse(&s, CFG_SOURCE_DEALS, 1, NULL, json, "t", err, sizeof(err)), 0);
    char *own = NULL, *fresh = NULL, *same = NULL;
    size_t n;
    assert_int_equal(scanner_selection_render(&s, 3, &own, &n), 0);
    assert_int_equal(scanner_selection_render_sorted(&s, 3, SCANNER_FRESH_SORT, &fresh, &n), 0);
    assert_int_equal(scanner_selection_render_sorted(&s, 3, 0, &same, &n), 0);
    assert_int_equal(json_int(own, "sortType"), 4);
    assert_int_equal(json_int(fresh, "sortType"), 1);
    assert_string_equal(own, same);
    /* Only the order changes: the seller's filters, the page and the domain are kept, and
     * sortType is sent once. */
    assert_int_equal(json_int(fresh, "page"), 3);
    assert_int_equal(json_int(fresh, "dateRange"), 3);
    assert_non_null(strstr(fresh, "\"deltaPercentRange\":[10,100]"));
    assert_non_null(strstr(fresh, "\"priceTypes\":[2]"));
    assert_null(strstr(strstr(fresh, "sortType") + 1, "sortType"));
    free(own);
    free(fresh);
    free(same);
    scanner_selection_free(&s);
    /* A selection without a sortType gets one. */
    assert_int_equal(scanner_selection_parse(&s, CFG_SOURCE_DEALS, 1, NULL, "{\"priceTypes\":[2]}",
                                             "t", err, sizeof(err)),
                     0);
    assert_int_equal(scanner_selection_render_sorted(&s, 0, SCANNER_FRESH_SORT, &fresh, &n), 0);
    assert_int_equal(json_int(fresh, "sortType"), 1);
    free(fresh);
    scanner_selection_free(&s);
}

static void test_probe_floor(void **state)
{
    (void)state;
    struct scanner_drops d;
    memset(&d, 0, sizeof(d));
    /* Too few survivors told their drop: no probe. */
    for (int i = 0; i < SCANNER_PROBE_MIN_SAMPLES - 1; i++)
        scanner_drops_put(&d, 60);
    assert_int_equal(scanner_probe_floor(&d, 10), 0);
    scanner_drops_put(&d, 60);
    assert_int_equal(scanner_probe_floor(&d, 10), 60);
    /* Out of range drops are not kept. */
    scanner_drops_put(&d, -1);
    scanner_drops_put(&d, 101);
    assert_int_equal(d.n, SCANNER_PROBE_MIN_SAMPLES);
    /* The SCANNER_PROBE_QUANTILE_PCT percentile: of 40..79, one each, the fifth lowest. */
    memset(&d, 0, sizeof(d));
    for (int i = 0; i < 40; i++)
        scanner_drops_put(&d, 79 - i);
    assert_int_equal(scanner_probe_floor(&d, 10), 40 + 40 * SCANNER_PROBE_QUANTILE_PCT / 100);
    /* Not above the seller's own floor: the probe would read the seller's selection. */
    assert_int_equal(scanner_probe_floor(&d, 44), 0);
    /* A ring: the oldest drops make room for the newest. */
    for (int i = 0; i < SCANNER_PROBE_SAMPLES; i++)
        scanner_drops_put(&d, 90);
    assert_int_equal(d.n, SCANNER_PROBE_SAMPLES);
    assert_int_equal(scanner_probe_floor(&d, 10), 90);
}

static void test_probe_pass(void **state)
{
    (void)state;
    /* A probe needs a floor and a recent pass over the seller's selection. */
    assert_true(scanner_probe_pass(50, 1000, 1000 - SCANNER_PROBE_SELLER_MIN + 1, false));
    assert_false(scanner_probe_pass(50, 1000, 1000 - SCANNER_PROBE_SELLER_MIN, false));
    assert_false(scanner_probe_pass(0, 1000, 990, false));
    assert_false(scanner_probe_pass(50, 1000, 0, false));
    /* A full walk is the seller's. */
    assert_false(scanner_probe_pass(50, 1000, 990, true));
}

/*
 * `lane`: the first delta page is also read between passes, once its interval has passed since
 * it was last read; the pair still comes with a pass's start.
 */
static void test_delta_lane(void **state)
{
    (void)state;
    uint32_t first = 9;
    /* Without the lane: the pair at a pass's start when due, nothing elsewhere. */
    assert_int_equal(scanner_delta_next(1000, 980, 995, 10, false, true, false, true, &first),
                     SCANNER_DELTA_PAGES);
    assert_int_equal(first, 0);
    assert_int_equal(scanner_delta_next(1000, 995, 980, 10, false, true, false, true, &first), 0);
    assert_int_equal(scanner_delta_next(1000, 980, 980, 10, false, false, false, true, &first), 0);
    /* With it: the first page alone inside a pass or in the pause, once due. */
    assert_int_equal(scanner_delta_next(1000, 995, 990, 10, false, false, true, true, &first), 1);
    assert_int_equal(first, 0);
    assert_int_equal(scanner_delta_next(1000, 995, 991, 10, false, false, true, true, &first), 0);
    assert_int_equal(scanner_delta_next(1000, 0, 0, 10, false, false, true, true, &first), 1);
    /* At a pass's start: the pair when due, less the first page read within the interval ... */
    assert_int_equal(scanner_delta_next(1000, 980, 995, 10, false, true, true, true, &first),
                     SCANNER_DELTA_PAGES - 1);
    assert_int_equal(first, 1);
    assert_int_equal(scanner_delta_next(1000, 980, 985, 10, false, true, true, true, &first),
                     SCANNER_DELTA_PAGES);
    assert_int_equal(first, 0);
    /* ... and the first page alone when only it is due. */
    assert_int_equal(scanner_delta_next(1000, 995, 985, 10, false, true, true, true, &first), 1);
    assert_int_equal(first, 0);
    assert_int_equal(scanner_delta_next(1000, 995, 995, 10, false, true, true, true, &first), 0);
    /* Not twice in a row away from a pass's start: a page of the pass itself comes between. */
    assert_int_equal(scanner_delta_next(1000, 995, 990, 10, false, false, true, false, &first), 0);
    assert_int_equal(scanner_delta_next(1000, 980, 995, 10, false, true, true, false, &first),
                     SCANNER_DELTA_PAGES - 1);
    assert_int_equal(scanner_delta_next(1000, 995, 985, 10, false, true, true, false, &first), 1);
    /* A full walk reads every page: no delta page before it. */
    assert_int_equal(scanner_delta_next(1000, 0, 0, 10, true, true, true, true, &first), 0);
    assert_int_equal(scanner_delta_next(1000, 0, 0, 10, true, false, true, true, &first), 0);
}

/* `delta`: pages of the biggest absolute drops before a fresh pass, once an interval. */
static void test_delta_page(void **state)
{
    (void)state;
    /* The first fresh pass that is not a full walk begins with one. */
    assert_true(scanner_delta_page(1000, 0, 10, false));
    /* Then once the interval has passed since the last, not sooner. */
    assert_false(scanner_delta_page(1009, 1000, 10, false));
    assert_true(scanner_delta_page(1010, 1000, 10, false));
    assert_true(scanner_delta_page(1300, 1000, 10, false));
    /* A full walk reads every page: never a delta page before it. */
    assert_false(scanner_delta_page(1300, 1000, 10, true));
    assert_false(scanner_delta_page(1000, 0, 10, true));
    /* The pages render the seller's filters with Keepa's absolute-delta order, from page 0. */
    struct scanner_selection s;
    char err[256], *j = NULL;
    size_t n;
    const char *json = "{\"domainId\":1,\"priceTypes\":[2],\"sortType\":4,\"dateRange\":3,"
                       "\"isRangeEnabled\":true,\"deltaPercentRange\":[10,90]}";
    assert_int_equal(
        scanner_selection_parse(&s, CFG_SOURCE_DEALS, 1, NULL, json, "t", err, sizeof(err)), 0);
    assert_int_equal(scanner_selection_render_sorted(&s, 0, SCANNER_DELTA_SORT, &j, &n), 0);
    assert_int_equal(json_int(j, "sortType"), 2);
    assert_int_equal(json_int(j, "page"), 0);
    assert_non_null(strstr(j, "\"deltaPercentRange\":[10,90]"));
    free(j);
    assert_true(SCANNER_DELTA_PAGES >= 1);
    assert_int_equal(
        scanner_selection_render_sorted(&s, SCANNER_DELTA_PAGES - 1, SCANNER_DELTA_SORT, &j, &n),
        0);
    assert_int_equal(json_int(j, "page"), SCANNER_DELTA_PAGES - 1);
    assert_int_equal(json_int(j, "sortType"), 2);
    free(j);
    scanner_selection_free(&s);
}

static void test_selection_probe(void **state)
{
    (void)state;
    struct scanner_selection s;
    char err[256], *j = NULL;
    size_t n;
    const char *json = "{\"domainId\":1,\"priceTypes\":[2],\"sortType\":4,\"dateRange\":3,"
                       "\"isRangeEnabled\":true,\"deltaPercentRange\":[10,90]}";
    assert_int_equal(
        scanner_selection_parse(&s, CFG_SOURCE_DEALS, 1, NULL, json, "t", err, sizeof(err)), 0);
    assert_true(s.probe_ok);
    assert_int_equal(s.price_type, 2);
    assert_int_equal(s.date_range, 3);
    assert_int_equal(s.delta_pct_min, 10);
    assert_int_equal(s.delta_pct_max, 90);
    uint64_t hash = s.hash;
    assert_int_equal(scanner_selection_render_probe(&s, 1, SCANNER_FRESH_SORT, 55, &j, &n), 0);
    /* The floor is raised, the ceiling and every other filter kept, each key once. */
    assert_non_null(strstr(j, "\"deltaPercentRange\":[55,90]"));
    assert_null(strstr(strstr(j, "deltaPercentRange") + 1, "deltaPercentRange"));
    assert_null(strstr(strstr(j, "isRangeEnabled") + 1, "isRangeEnabled"));
    assert_int_equal(json_int(j, "sortType"), 1);
    assert_int_equal(json_int(j, "page"), 1);
    assert_int_equal(json_int(j, "dateRange"), 3);
    assert_int_equal(s.hash, hash); /* the same walk */
    free(j);
    /* A floor under the seller's keeps the seller's; no floor renders the fresh order alone. */
    assert_int_equal(scanner_selection_render_probe(&s, 0, SCANNER_FRESH_SORT, 5, &j, &n), 0);
    assert_non_null(strstr(j, "\"deltaPercentRange\":[10,90]"));
    free(j);
    char *fresh = NULL;
    assert_int_equal(scanner_selection_render_probe(&s, 0, SCANNER_FRESH_SORT, 0, &j, &n), 0);
    assert_int_equal(scanner_selection_render_sorted(&s, 0, SCANNER_FRESH_SORT, &fresh, &n), 0);
    assert_string_equal(j, fresh);
    free(j);
    free(fresh);
    scanner_selection_free(&s);
    /* No range of the seller's: the floor comes with isRangeEnabled. */
    assert_int_equal(scanner_selection_parse(&s, CFG_SOURCE_DEALS, 1, NULL, "{\"priceTypes\":[2]}",
                                             "t", err, sizeof(err)),
                     0);
    assert_true(s.probe_ok);
    assert_int_equal(scanner_selection_render_probe(&s, 0, SCANNER_FRESH_SORT, 40, &j, &n), 0);
    assert_non_null(strstr(j, "\"deltaPercentRange\":[40,100]"));
    assert_non_null(strstr(j, "\"isRangeEnabled\":true"));
    free(j);
    scanner_selection_free(&s);
    /* Ranges the seller switched off, or wrote without switching on, are never switched on. */
    const char *off[] = {
        "{\"priceTypes\":[2],\"isRangeEnabled\":false,\"deltaPercentRange\":[10,100]}",
        "{\"priceTypes\":[2],\"currentRange\":[100,5000]}"};
    for (size_t i = 0; i < 2; i++) {
        assert_int_equal(
            scanner_selection_parse(&s, CFG_SOURCE_DEALS, 1, NULL, off[i], "t", err, sizeof(err)),
            0);
        assert_false(s.probe_ok);
        assert_int_equal(scanner_selection_render_probe(&s, 0, SCANNER_FRESH_SORT, 40, &j, &n), 0);
        assert_null(strstr(j, "[40,"));
        free(j);
        scanner_selection_free(&s);
    }
}

static void test_pass_interval(void **state)
{
    (void)state;
    /* sqrt(2 x tokens x half-life / (rate x ln 2)). */
    assert_int_equal(scanner_pass_interval_min(5, 5, 37), 10);
    assert_int_equal(scanner_pass_interval_min(25, 5, 37), 23);
    assert_int_equal(scanner_pass_interval_min(5, 20, 37), 5);
    /* Dearer pages, scarcer tokens or longer-lived deals: passes further apart. */
    assert_true(scanner_pass_interval_min(10, 5, 37) > scanner_pass_interval_min(5, 5, 37));
    assert_true(scanner_pass_interval_min(5, 5, 37) > scanner_pass_interval_min(5, 100, 37));
    assert_true(scanner_pass_interval_min(5, 5, 120) > scanner_pass_interval_min(5, 5, 37));
    /* Before a half-life is learned: the prior. */
    assert_int_equal(scanner_pass_interval_min(5, 5, 0),
                     scanner_pass_interval_min(5, 5, SCANNER_HALF_LIFE_MIN));
    /* No reading, or nothing paid: no bound. */
    assert_int_equal(scanner_pass_interval_min(5, 0, 37), 0);
    assert_int_equal(scanner_pass_interval_min(0, 5, 37), 0);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fresh_walk),
        cmocka_unit_test(test_selection_sorted),
        cmocka_unit_test(test_prefilter),
        cmocka_unit_test(test_feed_hash),
        cmocka_unit_test(test_dedup),
        cmocka_unit_test(test_mark_skip),
        cmocka_unit_test(test_peek_route),
        cmocka_unit_test(test_known_fail),
        cmocka_unit_test(test_cursor_bytes),
        cmocka_unit_test(test_cursor_resume),
        cmocka_unit_test(test_cursor_paging),
        cmocka_unit_test(test_page_states),
        cmocka_unit_test(test_asin_lines),
        cmocka_unit_test(test_selection_builtin),
        cmocka_unit_test(test_selection_checks),
        cmocka_unit_test(test_prefilter_real_page),
        cmocka_unit_test(test_backlog_limit),
        cmocka_unit_test(test_peek_room),
        cmocka_unit_test(test_list_lines),
        cmocka_unit_test(test_code_matches),
        cmocka_unit_test(test_discovery_filters),
        cmocka_unit_test(test_selection_discovery),
        cmocka_unit_test(test_page_kinds),
        cmocka_unit_test(test_lightning_candidates),
        cmocka_unit_test(test_lightning_hash),
        cmocka_unit_test(test_list_cursor),
        cmocka_unit_test(test_saved_list_round_trip),
        cmocka_unit_test(test_bestseller_config),
        cmocka_unit_test(test_prescore),
        cmocka_unit_test(test_prescore_with_learned_fees),
        cmocka_unit_test(test_prescore_with_low_fees),
        cmocka_unit_test(test_peek_rate),
        cmocka_unit_test(test_page_take_best),
        cmocka_unit_test(test_pass_pause),
        cmocka_unit_test(test_probe_floor),
        cmocka_unit_test(test_probe_pass),
        cmocka_unit_test(test_delta_page),
        cmocka_unit_test(test_delta_lane),
        cmocka_unit_test(test_selection_probe),
        cmocka_unit_test(test_pass_interval),
    };
    return KD_RUN_TESTS(tests, argc, argv);
}
