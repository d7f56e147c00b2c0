/*
 * test_updater_rules.c: the updater's rules (updater/rules.h) as pure functions: interval doubling
 * and clamping, volatility, the failure count that leads to expiry, what counts as a check
 * (a product not returned does, a failed fetch never does), recommit requests, and that a
 * repriced deal is judged exactly as dealmath judges a full fetch.
 */
#include <string.h>

#include "kd_test.h"
#include "updater/rules.h"

enum { PT_NEW = 1, PT_USED = 2, PT_SALES = 3 };

#define NOW_MS 1800000000000LL

static struct cfg cfg(void)
{
    struct cfg c;
    cfg_defaults(&c);
    return c;
}

static struct updater_policy policy(uint32_t expire)
{
    struct updater_policy p = {.min_interval_ms = 1000,
                               .max_interval_ms = 16000,
                               .expire_after_failures = expire,
                               .retry_base_ms = 100,
                               .retry_max_ms = 3000};
    return p;
}

/* A product as a full fetch returns it: one used offer at BUY + 3.99 shipping, sell estimate
 * SELL (Used avg90 = avg365), 20 rank drops a year. */
static void full_product(struct kp_product *p, int32_t buy, int32_t sell)
{
    memset(p, 0, sizeof(*p));
    strcpy(p->asin, "B000TEST01");
    p->domain_id = 1;
    struct kp_stats *st = &p->stats;
    st->present = true;
    for (int i = 0; i < KP_NPRICE; i++)
        st->current[i] = st->avg[i] = st->avg30[i] = st->avg90[i] = st->avg180[i] = st->avg365[i] =
            -1;
    st->current[PT_USED] = buy;
    st->current[PT_SALES] = 50000;
    st->avg90[PT_USED] = st->avg365[PT_USED] = sell;
    st->sales_rank_drops30 = 2;
    st->sales_rank_drops90 = 6;
    st->sales_rank_drops180 = 11;
    st->sales_rank_drops365 = 20;
    st->buy_box_price_cents = -2;
    st->offer_count_fba = st->offer_count_fbm = -2;
    p->referral_fee_percent = -1;
    p->pick_and_pack_fee_cents = -1;
    p->offers_successful = 1;
    p->live_order_present = true;
    p->n_offers = 1;
    p->offers[0].price_cents = buy;
    p->offers[0].shipping_cents = 399;
    p->offers[0].condition = 3;
    strcpy(p->offers[0].seller_id, "A1SELLER");
}

/* A committed deal (dealmath's numbers), last checked 4 s ago and due now. */
static struct st_deal stored_deal(int32_t buy, int32_t sell)
{
    struct cfg c = cfg();
    static struct kp_product p;
    full_product(&p, buy, sell);
    struct st_deal d;
    assert_int_equal(dm_deal(&p, &c, &d), DM_PASS);
    d.first_seen_ms = NOW_MS - 100000;
    d.last_checked_ms = NOW_MS - 4000;
    d.last_changed_ms = NOW_MS - 100000;
    d.next_check_ms = NOW_MS;
    d.revision = 7;
    return d;
}

/* The stats of a light fetch of the same product, now at BUY / SELL. */
static struct updater_fresh fresh(int32_t buy, int32_t sell)
{
    struct cfg c = cfg();
    static struct kp_product p;
    full_product(&p, buy, sell);
    struct updater_fresh f;
    updater_fresh_from_stats(&p.stats, &c, &f);
    return f;
}

static void test_scale_follows_the_keepa_minute(void **state)
{
    (void)state;
    assert_int_equal(updater_scale_ms(CFG_MS_H, CFG_MS_MIN), CFG_MS_H);
    assert_int_equal(updater_scale_ms(CFG_MS_H, 100), 6000);
    assert_int_equal(updater_scale_ms(CFG_MS_MIN, 100), 100);
    assert_int_equal(updater_scale_ms(CFG_MS_MIN, 1), 1);
    assert_int_equal(updater_scale_ms(1, 1), 1); /* never 0 */

    struct cfg c = cfg();
    c.tokens_minute_ms = 100;
    c.update_min_interval_ms = CFG_MS_H;
    c.update_max_interval_ms = 24 * CFG_MS_H;
    struct updater_policy p;
    updater_policy_from_cfg(&c, &p);
    assert_int_equal(p.min_interval_ms, 6000);
    assert_int_equal(p.max_interval_ms, 144000);
    assert_int_equal(p.expire_after_failures, 3);
    assert_int_equal(p.retry_base_ms, 100);
    assert_true(p.retry_max_ms > p.retry_base_ms);
}

static void test_interval_doubles_for_stable_deals_within_bounds(void **state)
{
    (void)state;
    assert_int_equal(updater_next_interval(1000, false, 1000, 16000), 2000);
    assert_int_equal(updater_next_interval(2000, false, 1000, 16000), 4000);
    assert_int_equal(updater_next_interval(12000, false, 1000, 16000), 16000);
    assert_int_equal(updater_next_interval(16000, false, 1000, 16000), 16000);
    assert_int_equal(updater_next_interval(100, false, 1000, 16000), 1000);
    assert_int_equal(updater_next_interval(0, false, 1000, 16000), 1000);
    assert_int_equal(updater_next_interval(-5, false, 1000, 16000), 1000);
    assert_int_equal(updater_next_interval(8000, true, 1000, 16000), 1000);
    assert_int_equal(updater_next_interval(INT64_MAX / 2 + 1, false, 1000, 16000), 16000);
}

static void test_volatility(void **state)
{
    (void)state;
    struct st_deal a = stored_deal(1000, 4000), b = a;
    assert_false(updater_is_volatile(&a, &b));
    b.buy_price_cents = 1049; /* 4.9 % */
    assert_false(updater_is_volatile(&a, &b));
    b.buy_price_cents = 1050; /* 5 % */
    assert_true(updater_is_volatile(&a, &b));
    b.buy_price_cents = 950;
    assert_true(updater_is_volatile(&a, &b));
    b = a;
    b.expected_sell_cents = 3700;
    assert_true(updater_is_volatile(&a, &b));
    b = a;
    b.sales_rank = 60000; /* 20 % */
    assert_false(updater_is_volatile(&a, &b));
    b.sales_rank = 70000; /* 40 % */
    assert_true(updater_is_volatile(&a, &b));
    b = a;
    b.sales_rank = -1; /* the rank vanished */
    assert_true(updater_is_volatile(&a, &b));
}

static void test_retry_backoff_doubles_to_a_cap(void **state)
{
    (void)state;
    struct updater_policy p = policy(3);
    assert_int_equal(updater_retry_backoff_ms(&p, 1), 100);
    assert_int_equal(updater_retry_backoff_ms(&p, 2), 200);
    assert_int_equal(updater_retry_backoff_ms(&p, 3), 400);
    assert_int_equal(updater_retry_backoff_ms(&p, 6), 3000);
    assert_int_equal(updater_retry_backoff_ms(&p, 1000), 3000);
}

static void test_classify_counts_only_real_checks(void **state)
{
    (void)state;
    /* Fetch failures never count, whatever was delivered before the failure. */
    const enum kp_result_code failures[] = {KP_FAILED, KP_CANCELLED, KP_PERMANENT, KP_NOT_ADMITTED,
                                            KP_KEY_UNUSABLE};
    for (size_t i = 0; i < sizeof(failures) / sizeof(failures[0]); i++) {
        assert_int_equal(updater_classify(failures[i], true, KP_ASIN_OK, true, 5),
                         UPDATER_NOT_CHECKED);
        assert_int_equal(updater_classify(failures[i], false, KP_ASIN_MISSING, true, 5),
                         UPDATER_NOT_CHECKED);
        assert_int_equal(updater_classify(failures[i], false, KP_ASIN_REJECTED, false, 1),
                         UPDATER_NOT_CHECKED);
    }
    assert_int_equal(updater_classify(KP_OK, true, KP_ASIN_OK, true, 5), UPDATER_REFRESHED);
    /* Not returned in an answer that returned others: counts. */
    assert_int_equal(updater_classify(KP_OK, false, KP_ASIN_MISSING, true, 5), UPDATER_MISSING);
    /* Asked alone and not returned: counts. */
    assert_int_equal(updater_classify(KP_OK, false, KP_ASIN_MISSING, false, 1), UPDATER_MISSING);
    /* A batch answered without any product is suspect: does not count. */
    assert_int_equal(updater_classify(KP_OK, false, KP_ASIN_MISSING, false, 5),
                     UPDATER_NOT_CHECKED);
    assert_int_equal(updater_classify(KP_OK, false, KP_ASIN_REJECTED, true, 5),
                     UPDATER_NOT_CHECKED);
    assert_int_equal(updater_classify(KP_OK, false, KP_ASIN_UNREQUESTED, true, 5),
                     UPDATER_NOT_CHECKED);
}

/*
 * A product answered with fields of the wrong JSON type was not answered: whether
 * alone or in a batch, beside returned products or not, and even if a copy was returned, it
 * is never refreshed from nor counted as missing (which would move it toward expiry).
 */
static void test_classify_malformed_not_checked(void **state)
{
    (void)state;
    const bool flags[] = {false, true};
    const size_t batches[] = {1, 5};
    for (size_t r = 0; r < 2; r++)
        for (size_t a = 0; a < 2; a++)
            for (size_t b = 0; b < 2; b++)
                assert_int_equal(
                    updater_classify(KP_OK, flags[r], KP_ASIN_MALFORMED, flags[a], batches[b]),
                    UPDATER_NOT_CHECKED);
    /* Its neighbours in the same answer are judged as before. */
    assert_int_equal(updater_classify(KP_OK, true, KP_ASIN_OK, true, 5), UPDATER_REFRESHED);
    assert_int_equal(updater_classify(KP_OK, false, KP_ASIN_MISSING, true, 5), UPDATER_MISSING);
}

static void test_not_checked_changes_nothing(void **state)
{
    (void)state;
    struct cfg c = cfg();
    struct updater_policy p = policy(1);
    struct st_deal d = stored_deal(1000, 4000);
    d.check_failures = 0;
    d.next_check_ms = NOW_MS - 365LL * 24 * 3600 * 1000; /* overdue for a year */
    struct st_deal before = d;
    struct updater_fresh f = fresh(1000, 4000);
    struct updater_outcome o;
    updater_apply(&d, UPDATER_NOT_CHECKED, &f, &c, &p, NOW_MS, &o);
    assert_memory_equal(&d, &before, sizeof(d));
    assert_false(o.expire);
    assert_false(o.recommit);
    assert_false(o.failed);
}

static void test_stable_refresh_doubles_and_resets_failures(void **state)
{
    (void)state;
    struct cfg c = cfg();
    struct updater_policy p = policy(3);
    struct st_deal d = stored_deal(1000, 4000);
    d.check_failures = 2;
    struct st_deal before = d;
    struct updater_fresh f = fresh(1000, 4000);
    struct updater_outcome o;
    updater_apply(&d, UPDATER_REFRESHED, &f, &c, &p, NOW_MS, &o);
    assert_int_equal(o.verdict, DM_PASS);
    assert_false(o.failed);
    assert_false(o.is_volatile);
    assert_false(o.expire);
    assert_false(o.recommit);
    assert_false(o.changed);
    assert_int_equal(o.interval_ms, 8000); /* previous interval was 4 s */
    assert_int_equal(d.check_failures, 0);
    assert_int_equal(d.last_checked_ms, NOW_MS);
    assert_int_equal(d.next_check_ms, NOW_MS + 8000);
    assert_int_equal(d.last_changed_ms, before.last_changed_ms);
    assert_int_equal(d.revision, before.revision + 1);
    assert_int_equal(d.profit_cents, before.profit_cents);
    assert_int_equal(d.roi_bp, before.roi_bp);
    assert_string_equal(d.buy_seller_id, "A1SELLER");

    /* Next stable check: 16 s, then clamped at 16 s. */
    updater_apply(&d, UPDATER_REFRESHED, &f, &c, &p, NOW_MS + 8000, &o);
    assert_int_equal(d.next_check_ms, NOW_MS + 8000 + 16000);
    updater_apply(&d, UPDATER_REFRESHED, &f, &c, &p, NOW_MS + 24000, &o);
    assert_int_equal(o.interval_ms, 16000);
}

static void test_reprice_matches_dealmath(void **state)
{
    (void)state;
    struct cfg c = cfg();
    struct st_deal d = stored_deal(1000, 4000);
    /* The price moved: repricing equals dealmath on a full fetch at the new price. */
    static struct kp_product p;
    full_product(&p, 1300, 4200);
    struct st_deal want;
    assert_int_equal(dm_deal(&p, &c, &want), DM_PASS);
    struct updater_fresh f = fresh(1300, 4200);
    struct st_deal got;
    assert_int_equal(updater_reprice(&d, &f, &c, &got), DM_PASS);
    assert_int_equal(got.buy_price_cents, 1300);
    assert_int_equal(got.buy_shipping_cents, 399); /* the stored offer's shipping */
    assert_int_equal(got.landed_buy_cents, want.landed_buy_cents);
    assert_int_equal(got.expected_sell_cents, want.expected_sell_cents);
    assert_int_equal(got.referral_fee_cents, want.referral_fee_cents);
    assert_int_equal(got.profit_cents, want.profit_cents);
    assert_int_equal(got.roi_bp, want.roi_bp);
    assert_int_equal(got.margin_bp, want.margin_bp);

    /* The stored costs are kept even if the config changed since the commit. */
    c.costs_prep_cents = 1000;
    assert_int_equal(updater_reprice(&d, &f, &c, &got), DM_PASS);
    assert_int_equal(got.prep_cents, d.prep_cents);
    assert_int_equal(got.profit_cents, want.profit_cents);

    /* No Used price any more for a Used deal: no buy price, the stored numbers stay. */
    struct updater_fresh gone = fresh(1000, 4000);
    gone.used_cents = -1;
    gone.new_cents = 900;
    assert_int_equal(updater_reprice(&d, &gone, &c, &got), DM_NO_BUY_PRICE);
    assert_int_equal(got.buy_price_cents, 1000);
}

static void test_reprice_without_stored_condition_follows_the_config(void **state)
{
    (void)state;
    struct cfg c = cfg();
    struct st_deal d = stored_deal(1000, 4000);
    d.buy_condition = 0; /* unknown (e.g. an older record) */
    struct updater_fresh f = fresh(1000, 4000);
    f.new_cents = 1500;
    struct st_deal got;
    assert_int_equal(updater_reprice(&d, &f, &c, &got), DM_PASS); /* used_then_new */
    assert_int_equal(got.buy_price_cents, 1000);
    f.used_cents = -1;
    assert_int_equal(updater_reprice(&d, &f, &c, &got), DM_PASS);
    assert_int_equal(got.buy_price_cents, 1500);
    c.filter_buy_price = CFG_BUY_USED;
    assert_int_equal(updater_reprice(&d, &f, &c, &got), DM_NO_BUY_PRICE);
    c.filter_buy_price = CFG_BUY_NEW_THEN_USED;
    f.used_cents = 900;
    assert_int_equal(updater_reprice(&d, &f, &c, &got), DM_PASS);
    assert_int_equal(got.buy_price_cents, 1500);

    /* A light fetch without stats keeps every stored number and still judges the deal. */
    struct kp_stats none;
    memset(&none, 0, sizeof(none));
    updater_fresh_from_stats(&none, &c, &f);
    assert_int_equal(f.used_cents, -1);
    assert_int_equal(f.sell_estimate_cents, -1);
    d = stored_deal(1000, 4000);
    f.used_cents = 1000; /* the price alone */
    assert_int_equal(updater_reprice(&d, &f, &c, &got), DM_PASS);
    assert_int_equal(got.expected_sell_cents, d.expected_sell_cents);
    assert_int_equal(got.rank_drops_365, d.rank_drops_365);
    assert_int_equal(got.sales_rank, d.sales_rank);
    assert_int_equal(got.profit_cents, d.profit_cents);
}

static void test_price_jump_is_volatile_and_asks_for_recommit(void **state)
{
    (void)state;
    struct cfg c = cfg();
    struct updater_policy p = policy(3);
    struct st_deal d = stored_deal(1000, 4000);
    struct updater_fresh f = fresh(1150, 4000); /* +15 %, still a deal */
    struct updater_outcome o;
    updater_apply(&d, UPDATER_REFRESHED, &f, &c, &p, NOW_MS, &o);
    assert_int_equal(o.verdict, DM_PASS);
    assert_true(o.is_volatile);
    assert_true(o.recommit);
    assert_true(o.changed);
    assert_int_equal(o.interval_ms, p.min_interval_ms);
    assert_int_equal(d.next_check_ms, NOW_MS + p.min_interval_ms);
    assert_int_equal(d.last_changed_ms, NOW_MS);
    assert_int_equal(d.buy_price_cents, 1150);

    /* A 6 % move: volatile, no recommit. */
    struct st_deal e = stored_deal(1000, 4000);
    f = fresh(1060, 4000);
    updater_apply(&e, UPDATER_REFRESHED, &f, &c, &p, NOW_MS, &o);
    assert_true(o.is_volatile);
    assert_false(o.recommit);
}

static void test_failed_criteria_expire_after_n_consecutive_checks(void **state)
{
    (void)state;
    struct cfg c = cfg();
    struct updater_policy p = policy(3);
    struct st_deal d = stored_deal(1000, 4000);
    struct updater_fresh bad = fresh(1000, 2000); /* the sell estimate halved: a loss */
    struct updater_fresh good = fresh(1000, 4000);
    struct updater_outcome o;
    int64_t t = NOW_MS;

    updater_apply(&d, UPDATER_REFRESHED, &bad, &c, &p, t, &o);
    assert_true(o.failed);
    assert_int_equal(o.verdict, DM_PROFIT_TOO_LOW);
    assert_false(o.expire);
    assert_false(o.recommit); /* no offer can make up for a halved sell estimate */
    assert_int_equal(d.check_failures, 1);
    assert_int_equal(d.next_check_ms, t + p.min_interval_ms);

    t += 1000;
    updater_apply(&d, UPDATER_REFRESHED, &bad, &c, &p, t, &o);
    assert_false(o.expire);
    assert_false(o.recommit); /* already asked */
    assert_int_equal(d.check_failures, 2);

    /* A passing check in between resets the count. */
    t += 1000;
    updater_apply(&d, UPDATER_REFRESHED, &good, &c, &p, t, &o);
    assert_false(o.failed);
    assert_int_equal(d.check_failures, 0);

    for (int i = 1; i <= 2; i++) {
        t += 1000;
        updater_apply(&d, UPDATER_REFRESHED, &bad, &c, &p, t, &o);
        assert_false(o.expire);
        assert_int_equal(d.check_failures, (uint32_t)i);
    }
    struct st_deal before = d;
    t += 1000;
    updater_apply(&d, UPDATER_REFRESHED, &bad, &c, &p, t, &o);
    assert_true(o.expire);
    assert_false(o.recommit);
    assert_memory_equal(&d, &before, sizeof(d)); /* the caller deletes it */
}

/*
 * A failed check asks for fresh offers only when they could change the verdict: failing
 * because of the stored offer's shipping (a cheaper-landed offer may exist) asks once;
 * failing even at the fresh lowest price with free shipping never asks, and a price jump
 * into such a definite failure does not either.
 */
static void test_recommit_only_when_fresh_offers_could_pass(void **state)
{
    (void)state;
    struct cfg c = cfg();
    struct updater_policy p = policy(3);
    struct updater_outcome o;
    int ambiguous = 0, definite = 0;
    for (int32_t buy = 1000; buy <= 4000; buy += 5) {
        struct st_deal d = stored_deal(1000, 4000); /* its offer ships for 3.99 */
        struct updater_fresh f = fresh(buy, 4000);
        struct st_deal free_shipping = d, priced;
        free_shipping.buy_shipping_cents = 0;
        bool passes_free = updater_reprice(&free_shipping, &f, &c, &priced) == DM_PASS;
        updater_apply(&d, UPDATER_REFRESHED, &f, &c, &p, NOW_MS, &o);
        if (!o.failed)
            continue;
        if (passes_free) {
            ambiguous++;
            assert_true(o.recommit);
        } else {
            definite++;
            assert_false(o.recommit);
        }
        assert_int_equal(d.check_failures, 1);
    }
    assert_true(ambiguous > 0);
    assert_true(definite > 0);
}

static void test_not_returned_counts_fetch_failure_does_not(void **state)
{
    (void)state;
    struct cfg c = cfg();
    struct updater_policy p = policy(2);
    struct st_deal d = stored_deal(1000, 4000);
    struct updater_outcome o;
    int64_t t = NOW_MS;

    /* Failed fetches in any number: nothing moves, nothing expires. */
    for (int i = 0; i < 100; i++) {
        enum updater_check ck = updater_classify(KP_FAILED, false, KP_ASIN_REJECTED, false, 3);
        struct st_deal before = d;
        updater_apply(&d, ck, NULL, &c, &p, t + i * 1000, &o);
        assert_false(o.expire);
        assert_memory_equal(&d, &before, sizeof(d));
    }
    assert_int_equal(d.next_check_ms, NOW_MS); /* still due: the schedule did not move past */

    /* Not returned: counted, rescheduled soon, no recommit, stored numbers kept. */
    enum updater_check ck = updater_classify(KP_OK, false, KP_ASIN_MISSING, true, 3);
    assert_int_equal(ck, UPDATER_MISSING);
    updater_apply(&d, ck, NULL, &c, &p, t, &o);
    assert_true(o.failed);
    assert_false(o.expire);
    assert_false(o.recommit);
    assert_int_equal(d.check_failures, 1);
    assert_int_equal(d.last_checked_ms, t);
    assert_int_equal(d.next_check_ms, t + p.min_interval_ms);
    assert_int_equal(d.buy_price_cents, 1000);

    /* A 429 between the two misses changes nothing; the second miss expires it. */
    ck = updater_classify(KP_NOT_ADMITTED, false, KP_ASIN_REJECTED, false, 3);
    updater_apply(&d, ck, NULL, &c, &p, t + 500, &o);
    assert_int_equal(d.check_failures, 1);
    ck = updater_classify(KP_OK, false, KP_ASIN_MISSING, false, 1);
    updater_apply(&d, ck, NULL, &c, &p, t + 1000, &o);
    assert_true(o.expire);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scale_follows_the_keepa_minute),
        cmocka_unit_test(test_interval_doubles_for_stable_deals_within_bounds),
        cmocka_unit_test(test_volatility),
        cmocka_unit_test(test_retry_backoff_doubles_to_a_cap),
        cmocka_unit_test(test_classify_counts_only_real_checks),
        cmocka_unit_test(test_classify_malformed_not_checked),
        cmocka_unit_test(test_not_checked_changes_nothing),
        cmocka_unit_test(test_stable_refresh_doubles_and_resets_failures),
        cmocka_unit_test(test_reprice_matches_dealmath),
        cmocka_unit_test(test_reprice_without_stored_condition_follows_the_config),
        cmocka_unit_test(test_price_jump_is_volatile_and_asks_for_recommit),
        cmocka_unit_test(test_recommit_only_when_fresh_offers_could_pass),
        cmocka_unit_test(test_failed_criteria_expire_after_n_consecutive_checks),
        cmocka_unit_test(test_not_returned_counts_fetch_failure_does_not),
    };
    return KD_RUN_TESTS(tests, argc, argv);
}
