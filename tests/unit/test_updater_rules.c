/*
 * test_updater_rules.c: the updater's rules (updater/rules.h) as pure functions: interval doubling
 * and clamping, volatility, the failure count that ends a deal, what counts as a check (a
 * product not returned does, a failed fetch never does), recommit requests (only when fresh
 * offers could change the verdict), a re-check that keeps the stored offer whole and judges by
 * the judgement's rules, and the re-judge after a reload (no tokens). With the value rules: a
 * re-check that finds the offer no longer listed ends the display at once, and the intervals
 * share a re-check budget by sqrt(vanish rate x profit), and a failure no listing near the
 * market could undo expires the record at once, and with the hazard learned by the age of
 * the deal's price a re-check comes just after the price's life.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "judge/inputs.h"
#include "kd_test.h"
#include "store/record.h"
#include "updater/rules.h"

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

static struct jd_rules rules(void)
{
    struct jd_rules r;
    jd_rules_default(&r);
    return r;
}

/* Inputs as a full fetch reads them: one Used - Very Good offer at BUY + 3.99 shipping from
 * A1SELLER, sold against the 90-day Used average SELL, 20 rank drops a year. */
static struct jd_inputs full_inputs(int64_t buy, int64_t sell)
{
    struct jd_inputs in;
    jd_inputs_init(&in);
    in.root_category = 172282;
    in.used_cents = buy;
    in.used_avg90_cents = sell;
    in.sales_rank = 50000;
    in.drops30 = 2;
    in.drops365 = 20;
    in.fees_known = true;
    in.referral_bp = 1500;
    in.fba_fee_cents = 300;
    in.buy_source = JD_BUY_OFFER;
    in.buy_condition = 3;
    in.buy_price_cents = buy;
    in.buy_shipping_cents = 399;
    strcpy(in.buy_seller_id, "A1SELLER");
    in.buy_is_fba = false;
    in.buy_seen_ms = NOW_MS - 4000;
    in.data_ms = NOW_MS - 4000;
    return in;
}

/* A light read (no offers): the lowest Used listing BUY, the 90-day Used average SELL. */
static struct jd_inputs light_inputs(int64_t buy, int64_t sell)
{
    struct jd_inputs in;
    jd_inputs_init(&in);
    in.root_category = 172282;
    in.used_cents = buy;
    in.used_avg90_cents = sell;
    in.sales_rank = 50000;
    in.drops30 = 2;
    in.drops365 = 20;
    in.fees_known = true;
    in.referral_bp = 1500;
    in.fba_fee_cents = 300;
    in.buy_source = JD_BUY_LISTING;
    in.buy_condition = 2;
    in.buy_price_cents = buy;
    in.buy_shipping_cents = -1;
    in.data_ms = NOW_MS;
    return in;
}

/* A stored deal: judged from full_inputs, last checked 4 s ago, due now. */
static struct st_record stored(int64_t buy, int64_t sell)
{
    struct st_record r;
    st_record_init(&r);
    strcpy(r.asin, "B000TEST01");
    r.domain = 1;
    r.in = full_inputs(buy, sell);
    struct jd_rules ru = rules();
    struct jd_verdict v;
    assert_true(jd_judge(&r.in, &ru, &v));
    st_record_judged(&r, &v, jd_rules_hash(&ru), ST_EV_COMMIT, NOW_MS - 4000, 3, NOW_MS);
    r.first_seen_ms = NOW_MS - 100000;
    return r;
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
    struct st_record a = stored(1000, 4000), b = a;
    assert_false(updater_is_volatile(&a, &b));
    b.v.sell_cents = 3801; /* 4.975 % */
    assert_false(updater_is_volatile(&a, &b));
    b.v.sell_cents = 3800; /* 5 % */
    assert_true(updater_is_volatile(&a, &b));
    b = a;
    b.in.sales_rank = 60000; /* 20 % */
    assert_false(updater_is_volatile(&a, &b));
    b.in.sales_rank = 70000; /* 40 % */
    assert_true(updater_is_volatile(&a, &b));
    b = a;
    b.in.sales_rank = -1; /* the rank vanished */
    assert_true(updater_is_volatile(&a, &b));
    b = a;
    b.v.deal = false; /* the verdict changed */
    assert_true(updater_is_volatile(&a, &b));
}

/* The wall clock steps back an hour after a check: the next check is still due one interval
 * later, measured on the monotonic clock. */
static void test_schedule_follows_the_monotonic_clock(void **state)
{
    (void)state;
    struct updater_policy p = policy(3);
    const int64_t hour = 3600 * 1000;
    struct updater_clock c;
    int64_t wall = 1700000000000LL, mono = 5000;
    updater_clock_init(&c, wall, mono);
    assert_int_equal(updater_clock_now_ms(&c, mono), wall);
    int64_t checked = updater_clock_now_ms(&c, mono + 100);
    int64_t next = checked + updater_next_interval(0, false, p.min_interval_ms, p.max_interval_ms);
    /* The system clock is stepped back an hour now: the updater's clock does not follow it
     * (it is never read again), so the check falls due one interval after it was made. */
    wall -= hour;
    (void)wall;
    assert_int_equal(updater_clock_now_ms(&c, mono + 100 + p.min_interval_ms), next);
    assert_true(updater_clock_now_ms(&c, mono + 99 + p.min_interval_ms) < next);
    /* And it only moves forward. */
    for (int64_t m = mono; m < mono + 10000; m += 977)
        assert_true(updater_clock_now_ms(&c, m + 1) > updater_clock_now_ms(&c, m));
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
    struct updater_policy p = policy(1);
    struct jd_rules ru = rules();
    struct st_record d = stored(1000, 4000);
    d.next_check_ms = NOW_MS - 365LL * 24 * 3600 * 1000; /* overdue for a year */
    struct st_record before = d;
    struct jd_inputs f = light_inputs(1000, 4000);
    struct updater_outcome o;
    updater_recheck(&d, UPDATER_NOT_CHECKED, &f, &ru, jd_rules_hash(&ru), &p, NOW_MS, &o);
    assert_memory_equal(&d, &before, sizeof(d));
    assert_false(o.expire);
    assert_false(o.recommit);
    assert_false(o.failed);
}

static void test_stable_refresh_doubles_and_resets_failures(void **state)
{
    (void)state;
    struct updater_policy p = policy(3);
    struct jd_rules ru = rules();
    uint64_t h = jd_rules_hash(&ru);
    struct st_record d = stored(1000, 4000);
    d.check_failures = 0;
    d.state = ST_STATE_FAILING;
    d.check_failures = 2;
    uint64_t rev = d.revision;
    struct jd_inputs f = light_inputs(1000, 4000);
    struct updater_outcome o;
    updater_recheck(&d, UPDATER_REFRESHED, &f, &ru, h, &p, NOW_MS, &o);
    assert_false(o.failed);
    assert_false(o.expire);
    assert_int_equal(d.state, ST_STATE_DEAL);
    assert_int_equal(d.check_failures, 0);
    assert_int_equal(d.revision, rev + 1);
    assert_int_equal(d.last_checked_ms, NOW_MS);
    /* 4 s since the last check: the stable interval doubles to 8 s. */
    assert_int_equal(o.interval_ms, 8000);
    assert_int_equal(d.next_check_ms, NOW_MS + 8000);
    assert_int_equal(o.event, ST_EV_RECHECK);
}

/* A re-check never mixes offers: the stored offer stays whole (price, shipping, seller,
 * condition, FBA, when it was seen); the rest of the inputs are the fresh read's. */
static void test_recheck_keeps_the_offer_whole(void **state)
{
    (void)state;
    struct updater_policy p = policy(3);
    struct jd_rules ru = rules();
    struct st_record d = stored(1000, 4000);
    struct jd_inputs before = d.in;
    struct jd_inputs f = light_inputs(700, 4400); /* someone else lists it cheaper now */
    struct updater_outcome o;
    updater_recheck(&d, UPDATER_REFRESHED, &f, &ru, jd_rules_hash(&ru), &p, NOW_MS, &o);
    assert_int_equal(d.in.buy_source, JD_BUY_OFFER);
    assert_int_equal(d.in.buy_price_cents, before.buy_price_cents);
    assert_int_equal(d.in.buy_shipping_cents, before.buy_shipping_cents);
    assert_string_equal(d.in.buy_seller_id, before.buy_seller_id);
    assert_int_equal(d.in.buy_condition, before.buy_condition);
    assert_int_equal(d.in.buy_is_fba, before.buy_is_fba);
    assert_int_equal(d.in.buy_seen_ms, before.buy_seen_ms);
    assert_int_equal(d.in.used_cents, 700);
    assert_int_equal(d.in.used_avg90_cents, 4400);
    assert_int_equal(d.in.data_ms, NOW_MS);
    /* Judged on the stored offer: buy 10.00 + 3.99, sell 44.00. */
    assert_int_equal(d.v.buy_cents, 1399);
    assert_int_equal(d.v.sell_cents, 4400);
    /* The listing moved 30 % from the offer's price: fresh offers may be cheaper. */
    assert_true(o.recommit);
}

/* The judgement of a re-check is exactly jd_judge on the refreshed inputs. */
static void test_recheck_judges_by_the_judgement(void **state)
{
    (void)state;
    struct updater_policy p = policy(3);
    struct jd_rules ru = rules();
    for (int64_t sell = 1500; sell <= 6000; sell += 250) {
        struct st_record d = stored(1000, 4000);
        struct jd_inputs f = light_inputs(1000, sell);
        struct updater_outcome o;
        updater_recheck(&d, UPDATER_REFRESHED, &f, &ru, jd_rules_hash(&ru), &p, NOW_MS, &o);
        struct jd_inputs want = full_inputs(1000, sell);
        want.data_ms = NOW_MS;
        struct jd_verdict v;
        bool deal = jd_judge(&want, &ru, &v);
        assert_int_equal(d.v.deal, deal);
        assert_int_equal(d.v.profit_cents, v.profit_cents);
        assert_int_equal(d.v.roi_bp, v.roi_bp);
        assert_int_equal(o.failed, !deal);
    }
}

static void test_failed_criteria_end_a_deal_after_n_consecutive_checks(void **state)
{
    (void)state;
    struct updater_policy p = policy(3);
    struct jd_rules ru = rules();
    uint64_t h = jd_rules_hash(&ru);
    struct st_record d = stored(1000, 4000);
    struct jd_inputs bad = light_inputs(1000, 1500); /* sell 15.00: a loss */
    struct updater_outcome o;
    updater_recheck(&d, UPDATER_REFRESHED, &bad, &ru, h, &p, NOW_MS, &o);
    assert_true(o.failed);
    assert_false(o.expire);
    assert_int_equal(d.state, ST_STATE_FAILING);
    assert_int_equal(d.check_failures, 1);
    assert_true(d.next_check_ms > 0); /* still re-checked */
    assert_int_equal(o.interval_ms, p.min_interval_ms);
    /* A good check in between resets the count. */
    struct jd_inputs good = light_inputs(1000, 4000);
    updater_recheck(&d, UPDATER_REFRESHED, &good, &ru, h, &p, NOW_MS + 1000, &o);
    assert_int_equal(d.state, ST_STATE_DEAL);
    assert_int_equal(d.check_failures, 0);
    /* Three failed checks in a row: no longer a deal, kept with its inputs, not scheduled. */
    for (int i = 1; i <= 3; i++) {
        updater_recheck(&d, UPDATER_REFRESHED, &bad, &ru, h, &p, NOW_MS + 1000 * (i + 1), &o);
        assert_int_equal(o.expire, i == 3);
    }
    assert_int_equal(o.event, ST_EV_EXPIRE);
    assert_int_equal(d.state, ST_STATE_REJECTED);
    assert_int_equal(d.next_check_ms, 0);
    assert_int_equal(d.expired_ms, NOW_MS + 4000);
    assert_false(o.recommit);
}

/*
 * A failed re-check asks for fresh offers only when they could change the verdict: if even
 * the fresh lowest listing with free shipping fails, no offer a full fetch finds would pass.
 */
static void test_recommit_only_when_fresh_offers_could_pass(void **state)
{
    (void)state;
    struct updater_policy p = policy(3);
    struct jd_rules ru = rules();
    uint64_t h = jd_rules_hash(&ru);
    /* Stored offer 10.00 + 3.99; the market's sell fell to 22.00: at the stored offer profit
     * 22.00 - 3.30 - 3.00 - 15.74 = -0.04: fails. The lowest listing is 4.00: bought there
     * with free shipping, profit 22.00 - 6.30 - 5.75 = 9.95: passes. Fresh offers could pass. */
    struct st_record d = stored(1000, 4000);
    struct jd_inputs f = light_inputs(400, 2200);
    struct updater_outcome o;
    updater_recheck(&d, UPDATER_REFRESHED, &f, &ru, h, &p, NOW_MS, &o);
    assert_true(o.failed);
    assert_true(o.recommit);
    /* The sell fell to 9.00: even a free 0.01 listing fails (sell under min_sell): definite. */
    d = stored(1000, 4000);
    f = light_inputs(400, 900);
    updater_recheck(&d, UPDATER_REFRESHED, &f, &ru, h, &p, NOW_MS, &o);
    assert_true(o.failed);
    assert_false(o.recommit);
    /* A second failed check, the listing where the offer is, waits for the first recommit's
     * answer (a listing that moved asks again: the updater keeps one request pending). */
    f = light_inputs(1000, 2200);
    updater_recheck(&d, UPDATER_REFRESHED, &f, &ru, h, &p, NOW_MS + 1000, &o);
    assert_true(o.failed);
    assert_false(o.recommit);
}

static void test_not_returned_counts_fetch_failure_does_not(void **state)
{
    (void)state;
    struct updater_policy p = policy(2);
    struct jd_rules ru = rules();
    uint64_t h = jd_rules_hash(&ru);
    struct st_record d = stored(1000, 4000);
    struct updater_outcome o;
    updater_recheck(&d, UPDATER_MISSING, NULL, &ru, h, &p, NOW_MS, &o);
    assert_true(o.failed);
    assert_int_equal(d.check_failures, 1);
    for (int i = 0; i < 10; i++) {
        updater_recheck(&d, UPDATER_NOT_CHECKED, NULL, &ru, h, &p, NOW_MS + i, &o);
        assert_false(o.failed);
    }
    assert_int_equal(d.check_failures, 1);
    updater_recheck(&d, UPDATER_MISSING, NULL, &ru, h, &p, NOW_MS + 20, &o);
    assert_true(o.expire);
}

/* A reload's re-judge: from the stored inputs alone, no check counted, no tokens. */
static void test_rejudge(void **state)
{
    (void)state;
    struct jd_rules ru = rules();
    struct st_record d = stored(1000, 4000);
    int64_t due = d.next_check_ms;
    /* profit 40.00 - 6.00 - 3.00 - 15.74 = 15.26, ROI 97 %: fails at min ROI 120 %. */
    struct jd_rules tight = ru;
    tight.min_roi_bp = 12000;
    assert_int_equal(updater_rejudge(&d, &tight, jd_rules_hash(&tight), 3, NOW_MS), ST_STATE_DEAL);
    assert_int_equal(d.state, ST_STATE_REJECTED);
    assert_int_equal(d.next_check_ms, 0); /* no longer re-checked: no tokens */
    assert_int_equal(d.check_failures, 0);
    assert_int_equal(d.rules_hash, jd_rules_hash(&tight));
    /* Loosened again: a deal once more, re-checked now (its data may be old). */
    assert_int_equal(updater_rejudge(&d, &ru, jd_rules_hash(&ru), 3, NOW_MS + 5),
                     ST_STATE_REJECTED);
    assert_int_equal(d.state, ST_STATE_DEAL);
    assert_int_equal(d.next_check_ms, NOW_MS + 5);
    (void)due;
    /* A record whose inputs were never read (migrated) is left alone. */
    d.in.data_ms = 0;
    struct st_record before = d;
    assert_int_equal(updater_rejudge(&d, &tight, jd_rules_hash(&tight), 3, NOW_MS + 9),
                     ST_STATE_NONE);
    assert_memory_equal(&d, &before, sizeof(d));
}

/*
 * The "gone" rule: the lowest Used listing above the stored offer's own price means the offer
 * is no longer listed. The deal cannot be bought: the check fails at once (the record leaves
 * the deal view) and fresh offers are asked for, since another offer may still pass.
 */
static void test_offer_gone_ends_the_display(void **state)
{
    (void)state;
    struct updater_policy p = policy(3);
    p.offer_gone_fails = true;
    struct jd_rules ru = rules();
    uint64_t h = jd_rules_hash(&ru);
    struct st_record d = stored(1000, 4000);
    struct jd_inputs f = light_inputs(1300, 4000); /* the 10.00 offer sold; 13.00 is lowest */
    struct updater_outcome o;
    updater_recheck(&d, UPDATER_REFRESHED, &f, &ru, h, &p, NOW_MS, &o);
    assert_true(o.offer_gone);
    assert_true(o.failed);
    assert_int_equal(d.state, ST_STATE_FAILING);
    assert_false(d.v.deal);
    assert_true(d.v.fails & (1u << JD_C_BUY));
    assert_int_equal(d.in.buy_price_cents, 1000); /* the offer stays whole in the record */
    assert_true(o.recommit);                      /* 13.00 could still be a deal */
    assert_int_equal(o.interval_ms, p.min_interval_ms);
    /* Without the rule the stored offer still judges a deal; only the recommit says more. */
    p.offer_gone_fails = false;
    d = stored(1000, 4000);
    updater_recheck(&d, UPDATER_REFRESHED, &f, &ru, h, &p, NOW_MS, &o);
    assert_false(o.offer_gone);
    assert_false(o.failed);
    assert_int_equal(d.state, ST_STATE_DEAL);
    assert_true(o.recommit);
    /* The listing at or below the offer's price: the offer may well be it. */
    p.offer_gone_fails = true;
    for (int64_t listing = 600; listing <= 1000; listing += 400) {
        d = stored(1000, 4000);
        f = light_inputs(listing, 4000);
        updater_recheck(&d, UPDATER_REFRESHED, &f, &ru, h, &p, NOW_MS, &o);
        assert_false(o.offer_gone);
        assert_int_equal(d.state, ST_STATE_DEAL);
    }
    /* The seller's own cost is no listed offer: never gone. */
    d = stored(1000, 4000);
    d.in.buy_source = JD_BUY_OWN_COST;
    f = light_inputs(1300, 4000);
    updater_recheck(&d, UPDATER_REFRESHED, &f, &ru, h, &p, NOW_MS, &o);
    assert_false(o.offer_gone);
}

/*
 * The full fetch chose the cheapest landed offer: 11.00 with free shipping, though a 9.50
 * copy (plus 3.99 shipping) is the lowest listing. A re-check seeing that same listing must
 * not buy the same full fetch again; a listing that moved since does ask for fresh offers.
 */
static void test_recommit_only_when_the_listing_moved_since(void **state)
{
    (void)state;
    struct updater_policy p = policy(3);
    struct jd_rules ru = rules();
    uint64_t h = jd_rules_hash(&ru);
    struct st_record d = stored(1100, 4000);
    d.in.buy_shipping_cents = 0;
    d.in.used_cents = 950;
    struct jd_inputs f = light_inputs(950, 4000);
    struct updater_outcome o;
    updater_recheck(&d, UPDATER_REFRESHED, &f, &ru, h, &p, NOW_MS, &o);
    assert_false(o.failed);
    assert_false(o.recommit);
    updater_recheck(&d, UPDATER_REFRESHED, &f, &ru, h, &p, NOW_MS + 1000, &o);
    assert_false(o.recommit);
    f = light_inputs(800, 4000); /* a cheaper copy now */
    updater_recheck(&d, UPDATER_REFRESHED, &f, &ru, h, &p, NOW_MS + 2000, &o);
    assert_true(o.recommit);
}

/*
 * The full fetch sold at the Used Buy Box (53.00); a read without offers carries none. The
 * Buy Box seen stays a ceiling, never a basis (docs/judgement.md): the re-check sells at the
 * average when it is lower, and never above 53.00 when the average is higher.
 */
static void test_recheck_buy_box_seen_is_a_ceiling(void **state)
{
    (void)state;
    struct updater_policy p = policy(3);
    struct jd_rules ru = rules();
    uint64_t h = jd_rules_hash(&ru);
    struct st_record d = stored(1000, 4000);
    d.in.used_buy_box_cents = 5300;
    struct jd_inputs f = light_inputs(1000, 6000); /* no Buy Box; the average above it */
    struct updater_outcome o;
    updater_recheck(&d, UPDATER_REFRESHED, &f, &ru, h, &p, NOW_MS, &o);
    assert_false(o.failed);
    assert_int_equal(d.state, ST_STATE_DEAL);
    assert_int_equal(d.in.used_buy_box_seen_cents, 5300);
    assert_true(d.v.caps & JD_CAP_BUY_BOX_SEEN);
    assert_true(d.v.sell_cents <= 5300);
    /* A read that carries a Buy Box: the fresh one counts. */
    f.used_buy_box_cents = 1500;
    updater_recheck(&d, UPDATER_REFRESHED, &f, &ru, h, &p, NOW_MS + 1000, &o);
    assert_true(o.failed);
    assert_int_equal(d.in.used_buy_box_cents, 1500);
}

static void test_marginal_budget(void **state)
{
    (void)state;
    /* Claims summing to 100, a token worth 100 cents, a seller acting within 20 minutes, a
     * check of 1 token: 100 / sqrt(2 x 100 x 20) = 1.58 checks a minute. */
    double b = updater_marginal_budget(100, 100, 20, 1, 5, 0);
    assert_true(fabs(b - 100 / sqrt(4000)) < 1e-9);
    /* Where the two are equal: a check's stale cent-minutes, at 1 / ACT cents each, are worth
     * a token: X^2 / (2 B^2) / 20 = 100. */
    assert_true(fabs(100.0 * 100 / (2 * b * b) / 20 - 100) < 1e-6);
    /* A backlog worth 4x a token: half the re-checks; worth a quarter: twice as many. */
    assert_true(fabs(updater_marginal_budget(100, 400, 20, 1, 5, 0) - b / 2) < 1e-9);
    assert_true(fabs(updater_marginal_budget(100, 25, 20, 1, 5, 0) - b * 2) < 1e-9);
    /* More shown deals (or worth more, or vanishing faster), or a seller quicker to act:
     * more re-checks. */
    assert_true(updater_marginal_budget(150, 100, 20, 1, 5, 0) > b);
    assert_true(updater_marginal_budget(100, 100, 5, 1, 5, 0) > b);
    /* A re-check of two tokens: the same checks cost sqrt(2) x the tokens' worth. */
    assert_true(fabs(updater_marginal_budget(100, 100, 20, 2, 5, 0) - b * sqrt(2)) < 1e-9);
    /* Clamped to [floor, all] of the refill. */
    assert_true(fabs(updater_marginal_budget(100, 1e9, 20, 1, 5, 0) - 5 * UPDATER_BUDGET_FLOOR) <
                1e-9);
    assert_true(fabs(updater_marginal_budget(1000, 100, 20, 1, 5, 0) - 5) < 1e-9);
    assert_true(fabs(updater_marginal_budget(0, 100, 20, 1, 5, 0) - 5 * UPDATER_BUDGET_FLOOR) <
                1e-9);
    /* A filling bucket gives its surplus to re-checks as before: all of it when full. */
    assert_true(fabs(updater_marginal_budget(100, 1e9, 20, 1, 5, 1) - 5) < 1e-9);
    assert_true(fabs(updater_marginal_budget(100, 1e9, 20, 1, 5, 0.75) - 2.5) < 1e-9);
    assert_true(fabs(updater_marginal_budget(100, 100, 20, 1, 5, 0.5) - b) < 1e-9);
    /* No token value known yet: the fixed share. */
    assert_true(fabs(updater_marginal_budget(100, 0, 20, 1, 5, 0) - updater_recheck_budget(5, 0)) <
                1e-9);
    assert_true(updater_marginal_budget(100, 100, 20, 1, 0, 0) == 0);
}

static void test_recheck_budget_and_scale(void **state)
{
    (void)state;
    /* A quarter of the refill while the bucket is at most half full, all of it when full. */
    assert_true(fabs(updater_recheck_budget(20, 0) - 20 * UPDATER_RECHECK_SHARE) < 1e-9);
    assert_true(fabs(updater_recheck_budget(20, 0.5) - 20 * UPDATER_RECHECK_SHARE) < 1e-9);
    assert_true(fabs(updater_recheck_budget(20, 1) - 20) < 1e-9);
    assert_true(fabs(updater_recheck_budget(20, 7) - 20) < 1e-9);
    assert_true(updater_recheck_budget(20, 0.8) > updater_recheck_budget(20, 0.6));
    assert_true(updater_recheck_budget(0, 0.5) == 0);
    /* N deals each re-checked every SCALE / root minutes take N x mean / SCALE a minute. */
    double scale = updater_value_scale(40, 3.0, 2.0);
    assert_true(fabs(scale - 60) < 1e-9);
    assert_true(updater_value_scale(0, 3.0, 2.0) == 0);
    assert_true(updater_value_scale(40, 3.0, 0) == 0);
    /* The claim: sqrt(hazard x profit), a loss counting as one cent. */
    assert_true(fabs(updater_value_root(0.01, 900) - 3.0) < 1e-9);
    assert_true(fabs(updater_value_root(0.01, -500) - 0.1) < 1e-9);
    /* Four times the profit (or the hazard): half the interval; clamped to [min, max]. */
    int64_t t1 = updater_value_interval_ms(0.01, 900, 60, 1000, 1000, 1000000);
    int64_t t4 = updater_value_interval_ms(0.01, 3600, 60, 1000, 1000, 1000000);
    assert_int_equal(t1, 20000); /* 60 / 3 = 20 Keepa minutes of 1 s */
    assert_int_equal(t4, 10000);
    assert_int_equal(updater_value_interval_ms(0.04, 900, 60, 1000, 1000, 1000000), 10000);
    assert_int_equal(updater_value_interval_ms(0.01, 900, 60, 1000, 30000, 1000000), 30000);
    assert_int_equal(updater_value_interval_ms(0.01, 900, 60, 1000, 1000, 15000), 15000);
    assert_int_equal(updater_value_interval_ms(0.01, 900, 0, 1000, 1000, 15000), 15000);
    /* Spent as a whole: the budget is met whatever the mix of deals. */
    double roots[] = {1, 2, 3, 5, 8};
    double mean = (1 + 2 + 3 + 5 + 8) / 5.0, rate = 0;
    double sc = updater_value_scale(5, mean, 0.5);
    for (int i = 0; i < 5; i++)
        rate += roots[i] / sc; /* checks a minute of deal i */
    assert_true(fabs(rate - 0.5) < 1e-9);
}

static void test_recheck_interval_by_value(void **state)
{
    (void)state;
    struct updater_policy p = policy(3);
    p.min_interval_ms = 1000;
    p.max_interval_ms = 10000000;
    p.minute_ms = 1000;
    p.value_intervals = true;
    for (int k = 0; k < VAL_CLASSES; k++)
        p.lambda[k] = 0.01;
    p.scale_min = 600;
    struct jd_rules ru = rules();
    uint64_t h = jd_rules_hash(&ru);
    struct st_record d = stored(1000, 4000);
    struct jd_inputs f = light_inputs(1000, 4000);
    struct updater_outcome o;
    updater_recheck(&d, UPDATER_REFRESHED, &f, &ru, h, &p, NOW_MS, &o);
    assert_false(o.failed);
    int64_t want = updater_value_interval_ms(0.01, d.v.profit_cents, 600, 1000, 1000, 10000000);
    assert_int_equal(o.interval_ms, want);
    assert_int_equal(d.next_check_ms, NOW_MS + want);
    /* A richer deal comes back sooner. */
    struct st_record rich = stored(1000, 6000);
    f = light_inputs(1000, 6000);
    struct updater_outcome o2;
    updater_recheck(&rich, UPDATER_REFRESHED, &f, &ru, h, &p, NOW_MS, &o2);
    assert_true(o2.interval_ms < o.interval_ms);
    /* A failed check: the minimum, to settle it. */
    f = light_inputs(1000, 1500);
    updater_recheck(&d, UPDATER_REFRESHED, &f, &ru, h, &p, NOW_MS + 1, &o);
    assert_true(o.failed);
    assert_int_equal(o.interval_ms, p.min_interval_ms);
}

/*
 * The "final" rule: a failed re-check whose fresh lowest listing is far above what could pass
 * expires at once; a near miss, a failure on another criterion, a missing product, or the
 * rule off keep the expire_after_failures confirmations.
 */
static void test_final_failure_expires_at_once(void **state)
{
    (void)state;
    struct updater_policy p = policy(3);
    p.offer_gone_fails = true;
    p.final_failures = true;
    struct jd_rules ru = rules();
    uint64_t h = jd_rules_hash(&ru);
    struct updater_outcome o;
    /* The 10.00 offer sold and the lowest listing is back at 38.00 against a 40.00 sell:
     * bought there with free shipping it loses money, far above any cost that passes. */
    struct st_record d = stored(1000, 4000);
    struct jd_inputs f = light_inputs(3800, 4000);
    assert_true(updater_failure_final(&d, &f, &ru));
    updater_recheck(&d, UPDATER_REFRESHED, &f, &ru, h, &p, NOW_MS, &o);
    assert_true(o.failed);
    assert_true(o.final);
    assert_true(o.expire);
    assert_false(o.recommit);
    assert_int_equal(o.event, ST_EV_EXPIRE);
    assert_int_equal(d.state, ST_STATE_REJECTED);
    assert_int_equal(d.next_check_ms, 0);
    assert_int_equal(d.expired_ms, NOW_MS);
    /* Without the rule the same check leaves two confirmations to pay for. */
    p.final_failures = false;
    d = stored(1000, 4000);
    updater_recheck(&d, UPDATER_REFRESHED, &f, &ru, h, &p, NOW_MS, &o);
    assert_true(o.failed);
    assert_false(o.final);
    assert_false(o.expire);
    assert_int_equal(d.state, ST_STATE_FAILING);
    p.final_failures = true;
    /* A near miss: the 13.00 listing could still pass (a cheaper copy, a fresh fetch): the
     * record stays, hidden, and fresh offers are asked for. */
    d = stored(1000, 4000);
    f = light_inputs(1300, 4000);
    assert_false(updater_failure_final(&d, &f, &ru));
    updater_recheck(&d, UPDATER_REFRESHED, &f, &ru, h, &p, NOW_MS, &o);
    assert_true(o.failed);
    assert_false(o.final);
    assert_false(o.expire);
    assert_true(o.recommit);
    /* Just over what passes but not a quarter above it: not final. The highest passing cost
     * at a 40.00 sell, bought with free shipping, is found by the judgement itself. */
    struct jd_inputs probe = full_inputs(1000, 4000);
    probe.buy_shipping_cents = 0;
    struct jd_verdict v;
    jd_judge(&probe, &ru, &v);
    assert_true(v.max_cost_cents > 0);
    d = stored(1000, 4000);
    f = light_inputs(v.max_cost_cents + 1, 4000);
    assert_false(updater_failure_final(&d, &f, &ru));
    f = light_inputs(v.max_cost_cents * (10000 + UPDATER_FINAL_PRICE_BP) / 10000 + 1, 4000);
    assert_true(updater_failure_final(&d, &f, &ru));
    /* A failure on another criterion (the sell under min_sell) keeps the confirmations. */
    d = stored(1000, 4000);
    f = light_inputs(3800, 900);
    struct st_record read = d;
    jd_inputs_refresh(&read.in, &f); /* as updater_recheck reads it */
    assert_false(updater_failure_final(&read, &f, &ru));
    updater_recheck(&d, UPDATER_REFRESHED, &f, &ru, h, &p, NOW_MS, &o);
    assert_false(o.expire);
    /* A product not returned is no read of its market. */
    d = stored(1000, 4000);
    updater_recheck(&d, UPDATER_MISSING, NULL, &ru, h, &p, NOW_MS, &o);
    assert_true(o.failed);
    assert_false(o.final);
    assert_false(o.expire);
    /* A hidden record (one failure already) whose market moved far off expires on this check. */
    d = stored(1000, 4000);
    f = light_inputs(1300, 4000);
    updater_recheck(&d, UPDATER_REFRESHED, &f, &ru, h, &p, NOW_MS, &o);
    assert_int_equal(d.state, ST_STATE_FAILING);
    f = light_inputs(3800, 4000);
    updater_recheck(&d, UPDATER_REFRESHED, &f, &ru, h, &p, NOW_MS + 1000, &o);
    assert_true(o.expire);
    assert_int_equal(d.check_failures, 2);
    /* The rule comes from [tokens] value_rules. */
    struct cfg c = cfg();
    snprintf(c.tokens_value_rules, sizeof(c.tokens_value_rules), "gone, final");
    struct updater_policy q;
    updater_policy_from_cfg(&c, &q);
    assert_true(q.final_failures);
    snprintf(c.tokens_value_rules, sizeof(c.tokens_value_rules), "gone");
    updater_policy_from_cfg(&c, &q);
    assert_false(q.final_failures);
}

/*
 * A policy of Keepa minutes of 100 ms, re-checks 10 to 1440 minutes apart, value intervals, a
 * vanish rate of 0.005 a minute in every class, the Keepa minute known (8 000 000 at NOW_MS),
 * and A (initialised here) a table that learned prices live 360 minutes: 400 deals seen every
 * 30 minutes from ages spread over 0-330, each ending at 360.
 */
static struct updater_policy price_life_policy(struct val_age *a)
{
    struct updater_policy p = policy(3);
    p.minute_ms = 100;
    p.min_interval_ms = 10 * 100;
    p.max_interval_ms = 1440 * 100;
    p.value_intervals = true;
    for (int k = 0; k < VAL_CLASSES; k++)
        p.lambda[k] = 0.005;
    val_age_init(a);
    for (int deal = 0; deal < 400; deal++)
        for (double t = (deal * 7) % 330; t < 360; t += 30)
            val_age_observe(a, t, t + 30, t + 30 >= 360, 360);
    p.keepa_offset_known = true;
    p.keepa_offset_min = 8000000.0 - (double)NOW_MS / 100;
    return p;
}

/*
 * The "age" rule: a passing re-check of a deal whose price is 100 Keepa minutes old, where
 * prices are learned to live 360, comes back just after 360, not after the constant
 * hazard's interval; without a table, an age, or the rule, the interval is the constant one.
 */
static void test_age_places_the_recheck_after_the_price_life(void **state)
{
    (void)state;
    struct val_age a;
    struct updater_policy p = price_life_policy(&a);
    /* The Keepa minute now is NOW_MS / 100 + offset; the price changed 100 minutes before. */
    assert_true(fabs(updater_price_age_min(&p, 8000000 - 100, NOW_MS) - 100) < 1e-6);
    assert_true(updater_price_age_min(&p, 8000000 + 5, NOW_MS) < 0); /* not yet: unknown */
    assert_true(updater_price_age_min(&p, 0, NOW_MS) < 0);
    p.age = &a;
    int64_t t0 = 30 * 100;
    int64_t t = updater_age_interval_ms(&p, 0.005, 100, t0);
    assert_true(t > 260 * 100 && t < 262 * 100);
    assert_int_equal(updater_age_interval_ms(&p, 0.005, -1, t0), t0);
    p.age = NULL;
    assert_int_equal(updater_age_interval_ms(&p, 0.005, 100, t0), t0);
    /* Through updater_recheck: the fresh read carries the price's change. */
    p.age = &a;
    p.age_intervals = true;
    p.scale_min = 30 * sqrt(0.005 * 1000); /* the constant rule: 30 minutes at 10.00 profit */
    struct jd_rules ru = rules();
    uint64_t h = jd_rules_hash(&ru);
    struct st_record d = stored(1000, 4000);
    struct jd_inputs f = light_inputs(1000, 4000);
    f.price_change_min = 8000000 - 100;
    struct updater_outcome o;
    updater_recheck(&d, UPDATER_REFRESHED, &f, &ru, h, &p, NOW_MS, &o);
    assert_false(o.failed);
    assert_true(o.interval_ms > 200 * 100);
    int64_t placed = o.interval_ms;
    p.age_intervals = false;
    d = stored(1000, 4000);
    updater_recheck(&d, UPDATER_REFRESHED, &f, &ru, h, &p, NOW_MS, &o);
    assert_true(o.interval_ms < placed / 3);
    /* The rule comes from [tokens] value_rules. */
    struct cfg c = cfg();
    snprintf(c.tokens_value_rules, sizeof(c.tokens_value_rules), "recheck, age");
    struct updater_policy q;
    updater_policy_from_cfg(&c, &q);
    assert_true(q.age_intervals);
}

/*
 * The "first" rule: a deal just stored by a full fetch at a price 100 Keepa minutes old,
 * where prices are learned to live 360, is first re-checked just after 360, as a passing
 * re-check at that moment would be; with "recheck" alone, after its own claim's interval;
 * without the rule, "recheck", a shared budget or a deal, the committer's time stands (-1).
 */
static void test_first_check_placed_as_a_recheck(void **state)
{
    (void)state;
    struct val_age a;
    struct updater_policy p = price_life_policy(&a);
    p.first_checks = true;
    p.scale_min = 30 * sqrt(0.005 * 1000); /* 30 minutes at 10.00 profit */
    /* Stored by a full fetch 4 s (40 Keepa minutes) ago at a price then 100 minutes old. */
    struct st_record d = stored(1000, 4000);
    int64_t read_ms = d.last_checked_ms;
    d.in.price_change_min = (int64_t)llround((double)read_ms / 100 + p.keepa_offset_min) - 100;
    int64_t profit = d.v.profit_cents;
    assert_true(profit > 0);
    /* "recheck" alone: the deal's own claim, scale / sqrt(lambda x profit). */
    int64_t own = read_ms + updater_value_interval_ms(0.005, profit, p.scale_min, 100,
                                                      p.min_interval_ms, p.max_interval_ms);
    assert_int_equal(updater_first_check_ms(&p, &d), own);
    /* With "age": just after the price's life, 260 minutes after the read. */
    p.age = &a;
    p.age_intervals = true;
    int64_t at = updater_first_check_ms(&p, &d);
    assert_true(at > read_ms + 259 * 100 && at < read_ms + 262 * 100);
    assert_true(at > own + 100 * 100);
    /* The price's age unknown: the deal's own interval. */
    struct st_record u = d;
    u.in.price_change_min = 0;
    assert_int_equal(updater_first_check_ms(&p, &u), own);
    /* Nothing to place by: the committer's time stands. */
    p.first_checks = false;
    assert_int_equal(updater_first_check_ms(&p, &d), -1);
    p.first_checks = true;
    p.scale_min = 0;
    assert_int_equal(updater_first_check_ms(&p, &d), -1);
    p.scale_min = 30 * sqrt(0.005 * 1000);
    p.value_intervals = false;
    assert_int_equal(updater_first_check_ms(&p, &d), -1);
    p.value_intervals = true;
    struct st_record f = d;
    f.state = ST_STATE_FAILING;
    assert_int_equal(updater_first_check_ms(&p, &f), -1);
    /* The rule comes from [tokens] value_rules. */
    struct cfg c = cfg();
    snprintf(c.tokens_value_rules, sizeof(c.tokens_value_rules), "recheck, age, first");
    struct updater_policy q;
    updater_policy_from_cfg(&c, &q);
    assert_true(q.first_checks);
    snprintf(c.tokens_value_rules, sizeof(c.tokens_value_rules), "recheck, age");
    updater_policy_from_cfg(&c, &q);
    assert_false(q.first_checks);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scale_follows_the_keepa_minute),
        cmocka_unit_test(test_interval_doubles_for_stable_deals_within_bounds),
        cmocka_unit_test(test_volatility),
        cmocka_unit_test(test_retry_backoff_doubles_to_a_cap),
        cmocka_unit_test(test_schedule_follows_the_monotonic_clock),
        cmocka_unit_test(test_classify_counts_only_real_checks),
        cmocka_unit_test(test_classify_malformed_not_checked),
        cmocka_unit_test(test_not_checked_changes_nothing),
        cmocka_unit_test(test_stable_refresh_doubles_and_resets_failures),
        cmocka_unit_test(test_recheck_keeps_the_offer_whole),
        cmocka_unit_test(test_recheck_judges_by_the_judgement),
        cmocka_unit_test(test_failed_criteria_end_a_deal_after_n_consecutive_checks),
        cmocka_unit_test(test_recommit_only_when_fresh_offers_could_pass),
        cmocka_unit_test(test_not_returned_counts_fetch_failure_does_not),
        cmocka_unit_test(test_rejudge),
        cmocka_unit_test(test_offer_gone_ends_the_display),
        cmocka_unit_test(test_recommit_only_when_the_listing_moved_since),
        cmocka_unit_test(test_final_failure_expires_at_once),
        cmocka_unit_test(test_age_places_the_recheck_after_the_price_life),
        cmocka_unit_test(test_first_check_placed_as_a_recheck),
        cmocka_unit_test(test_recheck_buy_box_seen_is_a_ceiling),
        cmocka_unit_test(test_recheck_budget_and_scale),
        cmocka_unit_test(test_marginal_budget),
        cmocka_unit_test(test_recheck_interval_by_value),
    };
    return KD_RUN_TESTS(tests, argc, argv);
}
