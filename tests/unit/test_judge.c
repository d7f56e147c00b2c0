/*
 * test_judge.c: the deal judgement (judge/judge.h, inputs.h, market.h).
 *
 * The two recorded real products are judged under the default rules and every figure is
 * checked against arithmetic done by hand below; the recorded deal page is held to the sell
 * ceilings and the media closing fee; the model is held to its properties on random inputs
 * (fees only lower profit, max cost is monotone in the target and exact to the cent, the peek
 * is never more pessimistic than the full judgement on the same data, the feed's bound is an
 * upper bound); a re-check never mixes two offers.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "judge/inputs.h"
#include "judge/judge.h"
#include "judge/market.h"
#include "kd_test.h"

/* ---- helpers ---- */

struct one_product {
    struct kp_product p;
    int n;
};

static int keep_product(const struct kp_product *p, void *ud)
{
    struct one_product *o = ud;
    if (o->n++ == 0)
        o->p = *p;
    return 0;
}

/* Decodes the fixture NAME (a /product body with one product) into OUT. */
static void load_product(const char *name, struct kp_product *out)
{
    const char *path = kd_fixture_path(name);
    assert_non_null(path);
    size_t len = 0;
    char *body = kd_read_file(path, &len);
    assert_non_null(body);
    static struct one_product one;
    memset(&one, 0, sizeof(one));
    struct kp_decode_cbs cbs = {.on_product = keep_product, .ud = &one};
    char err[256];
    assert_int_equal(kp_decode_buffer(body, len, NULL, &cbs, NULL, err, sizeof(err)), 0);
    free(body);
    assert_int_equal(one.n, 1);
    *out = one.p;
}

static const char *crit_text(const struct jd_verdict *v, unsigned c)
{
    static char buf[256];
    jd_format_criterion(v, c, 1, buf, sizeof(buf));
    return buf;
}

/* ---- the recorded real products, by hand ---- */

/*
 * B0D8W1YVBX (Beauty, root 3760911; no offers in the recording; Buy Box New $14.99, free
 * shipping; referralFeePercentage 15.01; fbaFees.pickAndPackFee 409):
 *   sell   = Buy Box New (stats.current[18]) = 1499 (the 90-day New average, 1797, is not
 *            used: buy_box comes first, and it would be capped at the Buy Box anyway)
 *   payout = 1499 - round(1499 x 15.01 %) - 409 = 1499 - 225 - 409 = 865
 *   with prep 100 and inbound 75, max landed at 25 % ROI = floor(865 / 1.25) = 692,
 *   max buy cost = 692 - 175 = 517 ($5.17); at $5.00 min profit: 865 - 500 - 175 = 190.
 *   Buy side: no offers, so the lowest New listing (stats.current[1]) 1499: landed 1674,
 *   profit -809: not a deal.
 */
static void test_real_b0d8w1yvbx(void **state)
{
    (void)state;
    static struct kp_product p;
    load_product("product_B0D8W1YVBX.json", &p);
    struct jd_rules r;
    jd_rules_default(&r);
    struct jd_inputs in;
    jd_inputs_from_product(&p, &r, 1778386768884, JD_READ_AUTO, &in);
    assert_int_equal(in.new_buy_box_cents, 1499);
    assert_int_equal(in.referral_bp, 1501);
    assert_int_equal(in.fba_fee_cents, 409);
    assert_int_equal(in.root_category, 3760911);
    assert_int_equal(in.drops365, 424);
    assert_int_equal(in.monthly_sold, 100000);
    assert_int_equal(in.heat_sensitive, 0);
    assert_int_equal(in.adult, 0);
    assert_int_equal(in.package_height_mm, 35);
    assert_int_equal(in.package_length_mm, 104);
    assert_int_equal(in.package_width_mm, 55);
    assert_int_equal(in.package_weight_g, 141);
    assert_int_equal(in.buy_source, JD_BUY_LISTING);
    assert_int_equal(in.buy_condition, 1);
    assert_int_equal(in.buy_price_cents, 1499);

    struct jd_verdict v;
    assert_false(jd_judge(&in, &r, &v));
    assert_int_equal(v.side, JD_NEW);
    assert_int_equal(v.basis, JD_BASIS_BUY_BOX);
    assert_int_equal(v.sell_cents, 1499);
    assert_int_equal(v.caps, 0);
    assert_int_equal(v.referral_cents, 225);
    assert_int_equal(v.closing_cents, 0);
    assert_int_equal(v.fba_cents, 409);
    assert_false(v.fba_default);
    assert_int_equal(v.payout_cents, 865);
    assert_int_equal(v.landed_cents, 1674);
    assert_int_equal(v.profit_cents, -809);
    assert_int_equal(v.max_cost_roi_cents, 517);
    assert_int_equal(v.max_cost_profit_cents, 190);
    assert_int_equal(v.max_cost_cents, 190);
    assert_true(v.fails & (1u << JD_C_ROI));
    assert_true(v.fails & (1u << JD_C_PROFIT));
    assert_string_equal(crit_text(&v, JD_C_PROFIT), "profit -$8.09 vs $5.00: fail by $13.09");
    assert_string_equal(crit_text(&v, JD_C_DROPS365), "rank drops 365 424 vs min 1: pass by 423");
    assert_false(v.oversize);

    /* At min profit 0 the max cost is the ROI bound alone: $5.17. */
    r.min_profit_cents = 0;
    jd_judge(&in, &r, &v);
    assert_int_equal(v.max_cost_cents, 517);
    /* Bought at the max cost it is a deal; one cent more is not. */
    in.buy_price_cents = 517;
    in.buy_shipping_cents = 0;
    assert_true(jd_judge(&in, &r, &v));
    in.buy_price_cents = 518;
    assert_false(jd_judge(&in, &r, &v));
    assert_string_equal(jd_reason(&v), "roi");
}

/*
 * B0F7XPYCSJ (Industrial & Scientific 16310091; no Buy Box: buyBoxPrice -2, csv[18] empty;
 * no NEW_FBA; referral 12.0; pickAndPackFee 435; 90-day New average 2599):
 *   sell   = 90-day New average 2599 (no Buy Box, no FBA offer; no ceiling applies: Amazon
 *            does not sell it)
 *   payout = 2599 - round(2599 x 12 %) - 435 = 2599 - 312 - 435 = 1852
 *   max landed at 25 % = floor(1852 / 1.25) = 1481 -> max cost 1481 - 175 = 1306;
 *   at $5.00 profit: 1852 - 500 - 175 = 1177 -> max cost $11.77.
 *   Buy side: the lowest New listing 2599: landed 2774, profit -922: not a deal. Sales rank
 *   unknown (stats.current[3] = -1) but max_rank is off by default, so it does not count.
 */
static void test_real_b0f7xpycsj(void **state)
{
    (void)state;
    static struct kp_product p;
    load_product("product_B0F7XPYCSJ.json", &p);
    struct jd_rules r;
    jd_rules_default(&r);
    struct jd_inputs in;
    jd_inputs_from_product(&p, &r, 1778386622667, JD_READ_AUTO, &in);
    assert_int_equal(in.new_buy_box_cents, -1);
    assert_int_equal(in.new_avg90_cents, 2599);
    assert_int_equal(in.sales_rank, -1);
    assert_int_equal(in.drops365, 99);
    struct jd_verdict v;
    assert_false(jd_judge(&in, &r, &v));
    assert_int_equal(v.basis, JD_BASIS_AVG90);
    assert_int_equal(v.sell_cents, 2599);
    assert_int_equal(v.referral_cents, 312);
    assert_int_equal(v.fba_cents, 435);
    assert_int_equal(v.payout_cents, 1852);
    assert_int_equal(v.max_cost_roi_cents, 1306);
    assert_int_equal(v.max_cost_profit_cents, 1177);
    assert_int_equal(v.max_cost_cents, 1177);
    assert_int_equal(v.profit_cents, 1852 - 2774);
    assert_int_equal(v.crit[JD_C_MAX_RANK].state, JD_OFF);
    /* With a max rank set, the unknown rank is its own state, failing by default. */
    r.max_rank = 500000;
    jd_judge(&in, &r, &v);
    assert_int_equal(v.crit[JD_C_MAX_RANK].state, JD_UNKNOWN);
    assert_true(v.fails & (1u << JD_C_MAX_RANK));
    assert_string_equal(crit_text(&v, JD_C_MAX_RANK), "sales rank: unknown (counts as a fail)");
    r.unknown = JD_UNKNOWN_PASSES;
    jd_judge(&in, &r, &v);
    assert_false(v.fails & (1u << JD_C_MAX_RANK));
    assert_true(v.unknowns & (1u << JD_C_MAX_RANK));
}

/* ---- the recorded deal page: ceilings and the closing fee ---- */

struct page {
    struct jd_rules r;
    int n, books, capped_bb, capped_amazon;
};

static int judge_deal(const struct kp_deal *d, void *ud)
{
    struct page *pg = ud;
    struct jd_inputs in;
    jd_inputs_from_deal(d, &pg->r, 1746053307585, &in);
    /* Judged as a peek would be: fees from the defaults. */
    in.fees_known = true;
    struct jd_verdict v;
    jd_judge(&in, &pg->r, &v);
    pg->n++;
    if (v.sell_cents > 0) {
        int64_t bb = v.side == JD_USED ? in.used_buy_box_cents : in.new_buy_box_cents;
        if (bb > 0)
            assert_true(v.sell_cents <= bb);
        if (in.amazon_cents > 0)
            assert_true(v.sell_cents * 10 <= in.amazon_cents * 9);
        pg->capped_bb += (v.caps & JD_CAP_BUY_BOX) != 0;
        pg->capped_amazon += (v.caps & JD_CAP_AMAZON) != 0;
        size_t n_media = 0;
        const int64_t *media = jd_media_categories(1, &n_media);
        bool is_media = false;
        for (size_t i = 0; i < n_media; i++)
            is_media |= media[i] == in.root_category;
        pg->books += in.root_category == 283155;
        if (is_media) {
            assert_int_equal(v.closing_cents, 180);
            assert_int_equal(v.referral_min_applied, false);
        } else {
            assert_int_equal(v.closing_cents, 0);
            assert_true(v.referral_cents >= 30);
        }
    }
    return 0;
}

static void test_deal_page_ceilings(void **state)
{
    (void)state;
    const char *path = kd_fixture_path("deal_page.json");
    assert_non_null(path);
    size_t len = 0;
    char *body = kd_read_file(path, &len);
    assert_non_null(body);
    static struct page pg;
    memset(&pg, 0, sizeof(pg));
    jd_rules_default(&pg.r);
    struct kp_decode_cbs cbs = {.on_deal = judge_deal, .ud = &pg};
    assert_int_equal(kp_decode_buffer(body, len, NULL, &cbs, NULL, NULL, 0), 0);
    free(body);
    assert_int_equal(pg.n, 150);
    assert_true(pg.books > 50);
    /* The 90-day Used average of some recorded deals is above Amazon's price: the cap bites. */
    assert_true(pg.capped_amazon > 0);
}

/* ---- properties on random inputs ---- */

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;
static int64_t rnd(int64_t lo, int64_t hi)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return lo + (int64_t)(rng_state % (uint64_t)(hi - lo + 1));
}

static void random_inputs(struct jd_inputs *in)
{
    jd_inputs_init(in);
    in->root_category = rnd(0, 3) == 0 ? 283155 : 172282;
    in->amazon_cents = rnd(0, 2) == 0 ? rnd(500, 20000) : -1;
    in->new_buy_box_cents = rnd(0, 1) ? rnd(500, 20000) : -1;
    in->used_buy_box_cents = rnd(0, 1) ? rnd(300, 15000) : -1;
    in->new_lowest_fba_cents = rnd(0, 1) ? rnd(500, 20000) : -1;
    in->used_lowest_fba_cents = rnd(0, 1) ? rnd(300, 15000) : -1;
    in->new_cents = rnd(0, 3) ? rnd(300, 20000) : -1;
    in->used_cents = rnd(0, 3) ? rnd(100, 15000) : -1;
    in->new_avg90_cents = rnd(0, 5) ? rnd(500, 25000) : -1;
    in->used_avg90_cents = rnd(0, 5) ? rnd(300, 20000) : -1;
    in->drops365 = (int32_t)(rnd(0, 5) ? rnd(0, 200) : -1);
    in->sales_rank = rnd(0, 5) ? rnd(1, 3000000) : -1;
    in->referral_bp = (int32_t)(rnd(0, 3) ? rnd(600, 2000) : -1);
    in->fba_fee_cents = rnd(0, 3) ? rnd(250, 900) : -1;
    in->fees_known = true;
    in->buy_source = JD_BUY_OFFER;
    in->buy_condition = (uint8_t)rnd(1, 5);
    in->buy_price_cents = rnd(100, 15000);
    in->buy_shipping_cents = rnd(0, 2) ? 0 : rnd(100, 600);
}

static void random_rules(struct jd_rules *r)
{
    jd_rules_default(r);
    r->min_roi_bp = rnd(-2000, 20000);
    r->min_profit_cents = rnd(-500, 2000);
    r->tax_bp = rnd(0, 1) ? 0 : rnd(0, 1200);
    r->prep_cents = rnd(0, 200);
    r->inbound_cents = rnd(0, 200);
    r->fulfilment = rnd(0, 3) == 0 ? JD_FBM : JD_FBA;
    r->max_rank = rnd(0, 1) ? 0 : rnd(1000, 2000000);
}

static void test_fees_only_lower_profit(void **state)
{
    (void)state;
    for (int i = 0; i < 20000; i++) {
        struct jd_inputs in, more;
        struct jd_rules r;
        random_inputs(&in);
        random_rules(&r);
        more = in;
        int which = (int)rnd(0, 2);
        if (which == 0)
            more.fba_fee_cents =
                (in.fba_fee_cents > 0 ? in.fba_fee_cents : r.default_fba_fee_cents) + rnd(1, 500);
        else if (which == 1)
            more.referral_bp =
                (in.referral_bp >= 0 ? in.referral_bp : (int32_t)r.default_referral_bp) +
                (int32_t)rnd(1, 500);
        struct jd_verdict a, b;
        jd_judge(&in, &r, &a);
        if (which == 2)
            more.closing_fee_cents = (a.closing_cents > 0 ? a.closing_cents : 0) + rnd(1, 500);
        jd_judge(&more, &r, &b);
        if (!a.payout_known)
            continue;
        assert_true(b.payout_cents <= a.payout_cents);
        if (a.crit[JD_C_PROFIT].state != JD_OFF) {
            if (b.profit_cents > a.profit_cents)
                fail_msg("which %d: profit %lld -> %lld, payout %lld -> %lld, ref %lld -> %lld "
                         "close %lld -> %lld fba %lld -> %lld",
                         which, (long long)a.profit_cents, (long long)b.profit_cents,
                         (long long)a.payout_cents, (long long)b.payout_cents,
                         (long long)a.referral_cents, (long long)b.referral_cents,
                         (long long)a.closing_cents, (long long)b.closing_cents,
                         (long long)a.fba_cents, (long long)b.fba_cents);
            if (b.deal)
                assert_true(a.deal);
        }
        if (a.max_cost_cents > 0 && b.max_cost_cents > 0)
            assert_true(b.max_cost_cents <= a.max_cost_cents);
    }
}

static void test_max_cost_monotone_and_exact(void **state)
{
    (void)state;
    for (int i = 0; i < 20000; i++) {
        struct jd_inputs in;
        struct jd_rules r;
        random_inputs(&in);
        random_rules(&r);
        struct jd_verdict v, w;
        jd_judge(&in, &r, &v);
        struct jd_rules higher = r;
        higher.min_roi_bp += rnd(1, 5000);
        jd_judge(&in, &higher, &w);
        if (v.max_cost_roi_cents > 0 && w.max_cost_roi_cents > 0)
            assert_true(w.max_cost_roi_cents <= v.max_cost_roi_cents);
        if (v.max_cost_roi_cents <= 0)
            assert_true(w.max_cost_roi_cents <= 0);
        if (v.max_cost_cents <= 0)
            continue;
        /* Buying at max cost passes both money criteria; one cent more fails one. */
        struct jd_inputs at = in;
        at.buy_price_cents = v.max_cost_cents;
        at.buy_shipping_cents = 0;
        jd_judge(&at, &r, &w);
        assert_int_equal(w.sell_cents, v.sell_cents);
        assert_int_equal(w.crit[JD_C_ROI].state, JD_PASS);
        assert_int_equal(w.crit[JD_C_PROFIT].state, JD_PASS);
        at.buy_price_cents = v.max_cost_cents + 1;
        jd_judge(&at, &r, &w);
        assert_true(w.crit[JD_C_ROI].state == JD_FAIL || w.crit[JD_C_PROFIT].state == JD_FAIL);
    }
}

static void test_peek_never_more_pessimistic(void **state)
{
    (void)state;
    for (int i = 0; i < 20000; i++) {
        struct jd_inputs full;
        struct jd_rules r;
        random_inputs(&full);
        random_rules(&r);
        /* The same product read without offers: the listing is the lowest price of the
         * condition, at most the offer's price, shipping unknown. */
        struct jd_inputs peek = full;
        peek.buy_source = JD_BUY_LISTING;
        peek.buy_price_cents = full.buy_price_cents - rnd(0, full.buy_price_cents - 1);
        peek.buy_shipping_cents = -1;
        peek.buy_condition = full.buy_condition == 1 ? 1 : 2;
        struct jd_verdict vf, vp;
        jd_judge(&full, &r, &vf);
        jd_judge(&peek, &r, &vp);
        assert_int_equal(vp.sell_cents, vf.sell_cents);
        if (vf.crit[JD_C_PROFIT].state != JD_OFF) {
            assert_true(vp.profit_cents >= vf.profit_cents);
            /* ROI is monotone while the profit is not negative (a loss over a smaller cost
             * is a worse ratio, not a worse deal). */
            if (vf.profit_cents >= 0)
                assert_true(vp.roi_bp >= vf.roi_bp);
            for (unsigned c = 0; c < JD_C_COUNT; c++)
                if (vf.crit[c].state == JD_PASS)
                    assert_int_equal(vp.crit[c].state, JD_PASS);
        }
        if (vf.deal)
            assert_true(vp.deal);
        /* The feed's bound (no fees yet) is never below the judgement with fees. */
        struct jd_inputs feed = peek;
        feed.fees_known = false;
        struct jd_verdict vb;
        jd_judge(&feed, &r, &vb);
        assert_true(vb.bound);
        if (vp.crit[JD_C_PROFIT].state != JD_OFF)
            assert_true(vb.profit_cents >= vp.profit_cents);
        if (vp.deal)
            assert_true(vb.deal);
    }
}

/* ---- the sell model ---- */

static void base_inputs(struct jd_inputs *in)
{
    jd_inputs_init(in);
    in->root_category = 172282; /* Electronics */
    in->fees_known = true;
    in->referral_bp = 1500;
    in->fba_fee_cents = 300;
    in->drops365 = 50;
    in->buy_source = JD_BUY_OFFER;
    in->buy_condition = 3; /* Used - Very Good */
    in->buy_price_cents = 1000;
    in->buy_shipping_cents = 399;
    strcpy(in->buy_seller_id, "A2SELLER");
}

static void test_sell_model(void **state)
{
    (void)state;
    struct jd_rules r;
    jd_rules_default(&r);
    struct jd_inputs in;
    struct jd_verdict v;
    base_inputs(&in);

    /* A Used buy is sold against Used bases only, whatever the New side says. */
    in.new_buy_box_cents = 9000;
    in.new_avg90_cents = 9000;
    in.used_avg90_cents = 4000;
    jd_judge(&in, &r, &v);
    assert_int_equal(v.side, JD_USED);
    assert_int_equal(v.basis, JD_BASIS_AVG90);
    assert_int_equal(v.sell_cents, 4000);
    assert_int_equal(v.buy_cents, 1399);

    /* The first basis with a value wins; a basis above the Buy Box is capped at it. */
    in.used_lowest_fba_cents = 3800;
    jd_judge(&in, &r, &v);
    assert_int_equal(v.basis, JD_BASIS_LOWEST_FBA);
    assert_int_equal(v.sell_cents, 3800);
    in.used_buy_box_cents = 3500;
    r.basis[JD_USED][0] = JD_BASIS_AVG90;
    r.n_basis[JD_USED] = 1;
    jd_judge(&in, &r, &v);
    assert_int_equal(v.basis_cents, 4000);
    assert_int_equal(v.sell_cents, 3500);
    assert_int_equal(v.caps, JD_CAP_BUY_BOX);

    /* Never above 90 % of Amazon's own price. */
    in.amazon_cents = 3600;
    jd_judge(&in, &r, &v);
    assert_int_equal(v.sell_cents, 3240);
    assert_int_equal(v.caps, JD_CAP_BUY_BOX | JD_CAP_AMAZON);

    /* ... and never above the maximum. */
    r.max_sell_cents = 3000;
    jd_judge(&in, &r, &v);
    assert_int_equal(v.sell_cents, 3000);
    assert_true(v.caps & JD_CAP_MAX_SELL);

    /* Ceilings off: the basis stands. */
    r.max_sell_cents = 0;
    r.amazon_cap_bp = 0;
    r.cap_at_buy_box = false;
    jd_judge(&in, &r, &v);
    assert_int_equal(v.sell_cents, 4000);
    assert_int_equal(v.caps, 0);

    /* No basis: the sell criterion fails and nothing is computed from it. */
    jd_rules_default(&r);
    base_inputs(&in);
    jd_judge(&in, &r, &v);
    assert_int_equal(v.crit[JD_C_SELL].state, JD_FAIL);
    assert_int_equal(v.crit[JD_C_ROI].state, JD_OFF);
    assert_string_equal(jd_reason(&v), "no-sell");
    assert_int_equal(v.max_cost_cents, -1);

    /* Opt-in bases: the mean of the 90- and 365-day averages, the current listing. */
    in.used_avg90_cents = 3000;
    in.used_avg365_cents = 2001;
    in.used_cents = 1800;
    r.basis[JD_USED][0] = JD_BASIS_AVG90_365;
    r.n_basis[JD_USED] = 1;
    jd_judge(&in, &r, &v);
    assert_int_equal(v.sell_cents, 2501);
    r.basis[JD_USED][0] = JD_BASIS_CURRENT;
    jd_judge(&in, &r, &v);
    assert_int_equal(v.sell_cents, 1800);
}

static void test_fees(void **state)
{
    (void)state;
    struct jd_rules r;
    jd_rules_default(&r);
    struct jd_inputs in;
    struct jd_verdict v;
    base_inputs(&in);
    in.used_avg90_cents = 150;
    r.min_sell_cents = 0;

    /* The referral minimum per unit outside media: 15 % of $1.50 is 23 cents, so 30. */
    jd_judge(&in, &r, &v);
    assert_int_equal(v.referral_cents, 30);
    assert_true(v.referral_min_applied);
    assert_int_equal(v.closing_cents, 0);

    /* A book: no referral minimum, the $1.80 closing fee. */
    in.root_category = 283155;
    jd_judge(&in, &r, &v);
    assert_int_equal(v.referral_cents, 23);
    assert_false(v.referral_min_applied);
    assert_int_equal(v.closing_cents, 180);

    /* Keepa's variableClosingFee wins over the category rule. */
    in.closing_fee_cents = 135;
    jd_judge(&in, &r, &v);
    assert_int_equal(v.closing_cents, 135);

    /* Defaults when Keepa has no fee data, flagged. */
    in.fba_fee_cents = -1;
    in.referral_bp = -1;
    in.used_avg90_cents = 2000;
    jd_judge(&in, &r, &v);
    assert_true(v.fba_default);
    assert_int_equal(v.fba_cents, 365);
    assert_true(v.referral_default);
    assert_int_equal(v.referral_cents, 300);

    /* FBM: no FBA fee, no inbound, the seller's own shipping per unit. */
    r.fulfilment = JD_FBM;
    jd_judge(&in, &r, &v);
    assert_int_equal(v.fba_cents, 0);
    assert_int_equal(v.fbm_shipping_cents, 450);
    assert_int_equal(v.inbound_cents, 0);
    assert_int_equal(v.payout_cents, 2000 - 300 - 135 - 450);
    assert_int_equal(v.landed_cents, 1399 + 100);

    /* Tax on price + shipping. */
    r.fulfilment = JD_FBA;
    r.tax_bp = 800;
    jd_judge(&in, &r, &v);
    assert_int_equal(v.tax_cents, 112); /* 8 % of 13.99 = 1.1192 */
    assert_int_equal(v.landed_cents, 1399 + 112 + 100 + 75);
}

static void test_unknown_rule_same_before_and_after_paying(void **state)
{
    (void)state;
    struct jd_rules r;
    jd_rules_default(&r);
    /* A feed entry with salesRankDrops365 = -1: the free pre-filter and the full judgement
     * say the same thing about it. */
    struct kp_deal d;
    memset(&d, 0xff, sizeof(d));
    strcpy(d.asin, "B000UNKNWN");
    d.root_cat = 283155;
    d.current[2] = 500;
    d.avg[3][2] = 5000;
    d.sales_rank_drops365 = -1;
    struct jd_inputs feed;
    jd_inputs_from_deal(&d, &r, 0, &feed);
    struct jd_verdict vf, vd;
    jd_judge(&feed, &r, &vf);
    assert_false(vf.deal);
    assert_string_equal(jd_reason(&vf), "drops365-unknown");

    struct jd_inputs full = feed;
    full.fees_known = true;
    full.buy_source = JD_BUY_OFFER;
    full.buy_condition = 4;
    full.buy_shipping_cents = 0;
    jd_judge(&full, &r, &vd);
    assert_false(vd.deal);
    assert_int_equal(vd.crit[JD_C_DROPS365].state, JD_UNKNOWN);

    r.unknown = JD_UNKNOWN_PASSES;
    jd_judge(&feed, &r, &vf);
    jd_judge(&full, &r, &vd);
    assert_true(vf.deal);
    assert_true(vd.deal);
}

static void test_refresh_keeps_one_offer(void **state)
{
    (void)state;
    struct jd_rules r;
    jd_rules_default(&r);
    struct jd_inputs in;
    base_inputs(&in);
    in.buy_seen_ms = 1000;
    in.buy_is_fba = true;
    in.used_cents = 1000;
    struct jd_inputs fresh;
    jd_inputs_init(&fresh);
    fresh.used_cents = 700; /* a cheaper listing now, from someone else */
    fresh.used_avg90_cents = 3000;
    fresh.buy_source = JD_BUY_LISTING;
    fresh.buy_condition = 2;
    fresh.buy_price_cents = 700;
    fresh.buy_shipping_cents = -1;
    fresh.data_ms = 5000;
    fresh.fees_known = true;
    fresh.referral_bp = 1500;
    jd_inputs_refresh(&in, &fresh);
    assert_int_equal(in.buy_source, JD_BUY_OFFER);
    assert_int_equal(in.buy_condition, 3);
    assert_int_equal(in.buy_price_cents, 1000);
    assert_int_equal(in.buy_shipping_cents, 399);
    assert_string_equal(in.buy_seller_id, "A2SELLER");
    assert_true(in.buy_is_fba);
    assert_int_equal(in.buy_seen_ms, 1000);
    assert_int_equal(in.used_cents, 700);
    assert_int_equal(in.used_avg90_cents, 3000);
    assert_int_equal(in.data_ms, 5000);
    /* Fees the light read did not carry stay as the full read learned them. */
    assert_int_equal(in.fba_fee_cents, 300);
}

/*
 * A light re-check carries no Buy Box. The full read capped the sell at the Used Buy Box
 * ($25.00, below the 90-day average $40.00); the re-check must not sell at the average for lack
 * of the figure: the last Buy Box seen stays as a ceiling (never a basis), and goes once a read
 * carries a Buy Box again.
 */
static void test_refresh_never_more_optimistic(void **state)
{
    (void)state;
    struct jd_rules r;
    jd_rules_default(&r);
    struct jd_inputs in;
    struct jd_verdict full, again;
    base_inputs(&in);
    in.used_buy_box_cents = 2500;
    in.used_avg90_cents = 4000;
    in.data_ms = 1000;
    jd_judge(&in, &r, &full);
    assert_int_equal(full.basis, JD_BASIS_BUY_BOX);
    assert_int_equal(full.sell_cents, 2500);

    struct jd_inputs fresh;
    jd_inputs_init(&fresh);
    fresh.used_avg90_cents = 4000;
    fresh.used_cents = 1000;
    fresh.drops365 = 50;
    fresh.data_ms = 9000;
    fresh.fees_known = true;
    jd_inputs_refresh(&in, &fresh);
    assert_int_equal(in.used_buy_box_cents, -1);
    assert_int_equal(in.used_buy_box_seen_cents, 2500);
    assert_int_equal(in.buy_box_seen_ms, 1000);
    jd_judge(&in, &r, &again);
    assert_int_equal(again.basis, JD_BASIS_AVG90);
    assert_int_equal(again.sell_cents, 2500);
    assert_true(again.caps & JD_CAP_BUY_BOX_SEEN);
    assert_true(again.profit_cents <= full.profit_cents);
    assert_string_equal(jd_cap_name(3), "buy_box_seen");

    /* A second light read keeps the same ceiling and its time. */
    fresh.data_ms = 12000;
    jd_inputs_refresh(&in, &fresh);
    assert_int_equal(in.used_buy_box_seen_cents, 2500);
    assert_int_equal(in.buy_box_seen_ms, 1000);

    /* A read with a Buy Box (a full fetch) replaces it: the current one rules again. */
    fresh.used_buy_box_cents = 3500;
    jd_inputs_refresh(&in, &fresh);
    assert_int_equal(in.used_buy_box_seen_cents, -1);
    jd_judge(&in, &r, &again);
    assert_int_equal(again.sell_cents, 3500);
    assert_int_equal(again.basis, JD_BASIS_BUY_BOX);
    assert_int_equal(again.caps, 0);

    /* Off when the rules do not cap at the Buy Box. */
    fresh.used_buy_box_cents = -1;
    jd_inputs_refresh(&in, &fresh);
    r.cap_at_buy_box = false;
    jd_judge(&in, &r, &again);
    assert_int_equal(again.sell_cents, 4000);
    assert_int_equal(again.caps, 0);
}

static void test_offer_is_one_offer(void **state)
{
    (void)state;
    /* The full read picks one live offer, whole: the cheapest landed one. */
    static struct kp_product p;
    memset(&p, 0, sizeof(p));
    strcpy(p.asin, "B000OFFERS");
    p.stats.present = true;
    memset(p.stats.current, 0xff, sizeof(p.stats.current));
    memset(p.stats.avg90, 0xff, sizeof(p.stats.avg90));
    memset(p.stats.avg180, 0xff, sizeof(p.stats.avg180));
    memset(p.stats.avg365, 0xff, sizeof(p.stats.avg365));
    p.stats.current[2] = 900;
    p.offers_successful = 1;
    p.live_order_present = true;
    p.referral_fee_percent = 15;
    p.pick_and_pack_fee_cents = 300;
    struct {
        int cond, price, ship, fba;
        const char *seller;
    } o[] = {
        {4, 900, 399, 0, "ACHEAPITEM"}, {2, 1100, 0, 1, "ALANDEDWIN"}, {1, 500, 0, 1, "ANEWOFFER"}};
    for (int i = 0; i < 3; i++) {
        struct kp_offer *k = &p.offers[p.n_offers++];
        k->condition = (int8_t)o[i].cond;
        k->price_cents = o[i].price;
        k->shipping_cents = o[i].ship;
        k->is_fba = (int8_t)o[i].fba;
        strcpy(k->seller_id, o[i].seller);
    }
    struct jd_rules r;
    jd_rules_default(&r); /* used then new */
    struct jd_inputs in;
    jd_inputs_from_product(&p, &r, 42, JD_READ_AUTO, &in);
    assert_int_equal(in.buy_source, JD_BUY_OFFER);
    assert_string_equal(in.buy_seller_id, "ALANDEDWIN");
    assert_int_equal(in.buy_price_cents, 1100);
    assert_int_equal(in.buy_shipping_cents, 0);
    assert_int_equal(in.buy_condition, 2);
    assert_true(in.buy_is_fba);
    assert_int_equal(in.buy_seen_ms, 42);
    assert_int_equal(in.used_lowest_fba_cents, 1100);
    /* New only: the New offer. */
    r.buy_condition = 2;
    jd_inputs_from_product(&p, &r, 42, JD_READ_AUTO, &in);
    assert_string_equal(in.buy_seller_id, "ANEWOFFER");
    /* Offers fetched, none live in the condition: nothing to buy (no listing fallback). */
    p.n_offers = 2;
    jd_inputs_from_product(&p, &r, 42, JD_READ_AUTO, &in);
    assert_int_equal(in.buy_source, JD_BUY_NONE);
    /* Offers failed: read as a listing. */
    p.offers_successful = 0;
    r.buy_condition = 0;
    jd_inputs_from_product(&p, &r, 42, JD_READ_AUTO, &in);
    assert_int_equal(in.buy_source, JD_BUY_LISTING);
    assert_int_equal(in.buy_price_cents, 900);
    assert_int_equal(in.buy_shipping_cents, -1);
}

static void test_near_and_words(void **state)
{
    (void)state;
    struct jd_rules r;
    jd_rules_default(&r);
    struct jd_inputs in;
    base_inputs(&in);
    in.buy_shipping_cents = 0;
    in.used_avg90_cents = 2400;
    /* payout = 2400 - 360 - 300 = 1740; landed = 1000 + 175 = 1175; profit 565;
     * ROI = 565 / 1175 = 48.09 % */
    struct jd_verdict v;
    assert_true(jd_judge(&in, &r, &v));
    assert_int_equal(v.profit_cents, 565);
    assert_int_equal(v.roi_bp, 4809);
    assert_string_equal(crit_text(&v, JD_C_ROI), "ROI 48.09 % vs 25 %: pass by 23.09 pts");
    assert_string_equal(crit_text(&v, JD_C_PROFIT), "profit $5.65 vs $5.00: pass by $0.65");
    assert_string_equal(crit_text(&v, JD_C_SELL), "sell: $24.00 from avg90 (used)");
    assert_string_equal(jd_reason(&v), "deal");
    /* $1.50 short of the profit: near (within $2.00). */
    r.min_profit_cents = 715;
    jd_judge(&in, &r, &v);
    assert_false(v.deal);
    assert_true(v.near);
    /* $2.50 short: not near. */
    r.min_profit_cents = 815;
    jd_judge(&in, &r, &v);
    assert_false(v.near);
    /* A velocity failure is never near. */
    r.min_profit_cents = 500;
    in.drops365 = 0;
    jd_judge(&in, &r, &v);
    assert_false(v.deal);
    assert_false(v.near);
}

static void test_rules_hash(void **state)
{
    (void)state;
    struct jd_rules a, b;
    jd_rules_default(&a);
    jd_rules_default(&b);
    assert_true(jd_rules_hash(&a) == jd_rules_hash(&b));
    b.min_roi_bp++;
    assert_true(jd_rules_hash(&a) != jd_rules_hash(&b));
    jd_rules_default(&b);
    b.basis[JD_NEW][1] = JD_BASIS_AVG180;
    assert_true(jd_rules_hash(&a) != jd_rules_hash(&b));
}

static void test_market(void **state)
{
    (void)state;
    char buf[64];
    jd_money(1, 1499, buf, sizeof(buf));
    assert_string_equal(buf, "$14.99");
    jd_money(1, -160, buf, sizeof(buf));
    assert_string_equal(buf, "-$1.60");
    jd_money(3, 320, buf, sizeof(buf));
    assert_string_equal(buf, "\xe2\x82\xac"
                             "3.20");
    jd_money(5, 1500, buf, sizeof(buf));
    assert_string_equal(buf, "\xc2\xa5"
                             "1500");
    int64_t v;
    assert_int_equal(jd_money_parse(1, "5", &v), 0);
    assert_int_equal(v, 500);
    assert_int_equal(jd_money_parse(1, "$5.5", &v), 0);
    assert_int_equal(v, 550);
    assert_int_equal(jd_money_parse(1, "-1.25", &v), 0);
    assert_int_equal(v, -125);
    assert_int_equal(jd_money_parse(5, "1500", &v), 0);
    assert_int_equal(v, 1500);
    assert_int_equal(jd_money_parse(1, "1.234", &v), -EINVAL);
    assert_int_equal(jd_money_parse(5, "1.5", &v), -EINVAL);
    assert_int_equal(jd_money_parse(1, "abc", &v), -EINVAL);
    assert_int_equal(jd_money_parse(1, "", &v), -EINVAL);
    assert_int_equal(jd_money_parse(1, "99999999999999999999", &v), -EINVAL);
    jd_link_amazon(2, "B0D8W1YVBX", buf, sizeof(buf));
    assert_string_equal(buf, "https://www.amazon.co.uk/dp/B0D8W1YVBX");
    jd_link_keepa(1, "B0D8W1YVBX", buf, sizeof(buf));
    assert_string_equal(buf, "https://keepa.com/#!product/1-B0D8W1YVBX");
    assert_string_equal(jd_category_name(1, 283155), "Books");
    assert_null(jd_category_name(1, 42));
    assert_string_equal(jd_condition_name(4), "Used - Good");
}

static void test_oversize(void **state)
{
    (void)state;
    struct jd_rules r;
    jd_rules_default(&r);
    struct jd_inputs in;
    base_inputs(&in);
    struct jd_verdict v;
    in.package_length_mm = 450;
    in.package_width_mm = 350;
    in.package_height_mm = 200;
    in.package_weight_g = 9000;
    jd_judge(&in, &r, &v);
    assert_false(v.oversize);
    in.package_length_mm = 460; /* 18.1 in */
    jd_judge(&in, &r, &v);
    assert_true(v.oversize);
    in.package_length_mm = 450;
    in.package_weight_g = 9100; /* over 20 lb */
    jd_judge(&in, &r, &v);
    assert_true(v.oversize);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_real_b0d8w1yvbx),
        cmocka_unit_test(test_real_b0f7xpycsj),
        cmocka_unit_test(test_deal_page_ceilings),
        cmocka_unit_test(test_fees_only_lower_profit),
        cmocka_unit_test(test_max_cost_monotone_and_exact),
        cmocka_unit_test(test_peek_never_more_pessimistic),
        cmocka_unit_test(test_sell_model),
        cmocka_unit_test(test_fees),
        cmocka_unit_test(test_unknown_rule_same_before_and_after_paying),
        cmocka_unit_test(test_refresh_keeps_one_offer),
        cmocka_unit_test(test_refresh_never_more_optimistic),
        cmocka_unit_test(test_offer_is_one_offer),
        cmocka_unit_test(test_near_and_words),
        cmocka_unit_test(test_rules_hash),
        cmocka_unit_test(test_market),
        cmocka_unit_test(test_oversize),
    };
    return KD_RUN_TESTS(tests, argc, argv);
}
