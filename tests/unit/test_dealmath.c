/*
 * test_dealmath.c: the reseller's rules, on products built by hand with known answers.
 */
#include <string.h>

#include "judge/dealmath.h"
#include "kd_test.h"

enum { NEW = 1, USED = 2, SALES = 3 };

static void product(struct kp_product *p, int32_t used, int32_t avg90, int32_t avg365)
{
    memset(p, 0, sizeof(*p));
    strcpy(p->asin, "B000TEST01");
    strcpy(p->title, "Test product");
    p->domain_id = 1;
    p->stats.present = true;
    for (int i = 0; i < KP_NPRICE; i++) {
        p->stats.current[i] = p->stats.avg90[i] = p->stats.avg365[i] = -1;
    }
    p->stats.current[USED] = used;
    p->stats.current[NEW] = -1;
    p->stats.current[SALES] = 12345;
    p->stats.avg90[USED] = avg90;
    p->stats.avg365[USED] = avg365;
    p->stats.sales_rank_drops30 = 3;
    p->stats.sales_rank_drops365 = 40;
    p->stats.buy_box_price_cents = -2;
    p->pick_and_pack_fee_cents = -1;
    p->referral_fee_percent = -1;
    p->offers_successful = -1;
}

static void add_offer(struct kp_product *p, int condition, int32_t price, int32_t ship, int fba)
{
    struct kp_offer *o = &p->offers[p->n_offers++];
    memset(o, 0, sizeof(*o));
    o->condition = (int8_t)condition;
    o->price_cents = price;
    o->shipping_cents = ship;
    o->is_fba = (int8_t)fba;
    strcpy(o->seller_id, "A1SELLER");
    p->offers_successful = 1;
    p->live_order_present = true;
}

static void test_peek_rules(void **state)
{
    (void)state;
    struct cfg c;
    cfg_defaults(&c);
    struct kp_product p;
    struct dm_peek pk;

    /* Sell estimate: the mean of the Used 90- and 365-day averages. */
    product(&p, 1000, 3000, 2000);
    assert_int_equal(dm_peek(&p.stats, &c, &pk), DM_PASS);
    assert_int_equal(pk.sell_estimate_cents, 2500);
    assert_int_equal(pk.buy_cents, 1000);
    assert_int_equal(pk.gross_roi_bp, 15000);

    /* Only one average: that one. No Used price: New. */
    product(&p, -1, 3000, -1);
    p.stats.current[NEW] = 1500;
    assert_int_equal(dm_peek(&p.stats, &c, &pk), DM_PASS);
    assert_int_equal(pk.sell_estimate_cents, 3000);
    assert_int_equal(pk.buy_cents, 1500);

    /* Each rejection. */
    product(&p, 1000, 3000, 2000);
    p.stats.sales_rank_drops365 = 0;
    assert_int_equal(dm_peek(&p.stats, &c, &pk), DM_NO_RANK_DROPS);
    product(&p, -1, 3000, 2000);
    assert_int_equal(dm_peek(&p.stats, &c, &pk), DM_NO_BUY_PRICE);
    product(&p, 1000, -1, -1);
    assert_int_equal(dm_peek(&p.stats, &c, &pk), DM_NO_SELL_ESTIMATE);
    product(&p, 500, 1100, 1100); /* $11 < $12 */
    assert_int_equal(dm_peek(&p.stats, &c, &pk), DM_SELL_TOO_LOW);
    product(&p, 2300, 2000, 2000); /* 2300 > 1.1 x 2000 */
    assert_int_equal(dm_peek(&p.stats, &c, &pk), DM_BUY_TOO_HIGH);
    product(&p, 2100, 2000, 2000); /* under 1.1 x, but a loss */
    assert_int_equal(dm_peek(&p.stats, &c, &pk), DM_ROI_TOO_LOW);
    product(&p, 1700, 2000, 2000); /* gross ROI 17.6 % < 20 % */
    assert_int_equal(dm_peek(&p.stats, &c, &pk), DM_ROI_TOO_LOW);
    product(&p, 1666, 2000, 2000); /* 20.05 % */
    assert_int_equal(dm_peek(&p.stats, &c, &pk), DM_PASS);
}

static void test_deal_economics(void **state)
{
    (void)state;
    struct cfg c;
    cfg_defaults(
        &c); /* prep 100, inbound 75, tax 0, FBA 350, referral 15 %, profit >= 500, ROI >= 25 % */
    struct kp_product p;
    struct st_deal d;
    product(&p, 1000, 4000, 4000);
    add_offer(&p, 1, 900, 0, 1); /* new: not wanted while a used offer exists */
    add_offer(&p, 3, 1000, 399, 0);
    add_offer(&p, 4, 1100, 0, 1); /* landed 1100 < 1399: the one to buy */
    p.referral_fee_percent = 12.0;
    p.pick_and_pack_fee_cents = 435;
    assert_int_equal(dm_deal(&p, &c, &d), DM_PASS);
    assert_int_equal(d.buy_price_cents, 1100);
    assert_int_equal(d.buy_shipping_cents, 0);
    assert_int_equal(d.buy_condition, 4);
    assert_true(d.buy_is_fba);
    assert_int_equal(d.expected_sell_cents, 4000);
    assert_int_equal(d.referral_fee_bp, 1200);
    assert_int_equal(d.referral_fee_cents, 480);
    assert_int_equal(d.fba_fee_cents, 435);
    assert_int_equal(d.landed_buy_cents, 1100 + 100 + 75);
    assert_int_equal(d.profit_cents, 4000 - 480 - 435 - 1275);
    assert_int_equal(d.roi_bp, (1810 * 10000 + 1275 / 2) / 1275);
    assert_int_equal(d.margin_bp, 1810 * 10000 / 4000);
    assert_int_equal(d.sales_rank, 12345);
    assert_int_equal(d.offers_new, 1);
    assert_int_equal(d.offers_used, 2);
    assert_string_equal(d.asin, "B000TEST01");

    /* Defaults when the product has no fees; tax on the item price. */
    product(&p, 1000, 4000, 4000);
    add_offer(&p, 2, 1000, 0, 1);
    c.costs_tax_pct_bp = 750;
    assert_int_equal(dm_deal(&p, &c, &d), DM_PASS);
    assert_int_equal(d.fba_fee_cents, 350);
    assert_int_equal(d.referral_fee_cents, 600);
    assert_int_equal(d.tax_cents, 75);
    assert_int_equal(d.profit_cents, 4000 - 600 - 350 - (1000 + 75 + 100 + 75));

    /* Thresholds and unusable answers. */
    cfg_defaults(&c);
    product(&p, 1000, 2000, 2000);
    add_offer(&p, 2, 1000, 0, 1);
    assert_int_equal(dm_deal(&p, &c, &d), DM_PROFIT_TOO_LOW); /* 2000-300-350-1175 = 175 */
    product(&p, 1000, 4000, 4000);
    p.offers_successful = 0;
    assert_int_equal(dm_deal(&p, &c, &d), DM_OFFERS_FAILED);
    product(&p, 1000, 4000, 4000);
    add_offer(&p, 1, 1000, 0, 1);
    c.filter_buy_price = CFG_BUY_USED;
    assert_int_equal(dm_deal(&p, &c, &d), DM_NO_OFFER);
}

/* The peek estimate never rejects what the full fetch would accept at the same price. */
static void test_peek_estimate_is_optimistic(void **state)
{
    (void)state;
    struct cfg c;
    cfg_defaults(&c);
    int rejected_at_peek = 0;
    for (int32_t buy = 500; buy <= 4000; buy += 37) {
        for (int32_t ship = 0; ship <= 600; ship += 150) {
            struct kp_product p;
            struct dm_peek pk;
            struct st_deal d;
            product(&p, buy, 4200, 3800);
            p.referral_fee_percent = 15.0;
            p.pick_and_pack_fee_cents = 400;
            add_offer(&p, 3, buy, ship, ship == 0);
            enum dm_verdict pv = dm_peek_product(&p, &c, &pk);
            enum dm_verdict dv = dm_deal(&p, &c, &d);
            if (dv == DM_PASS)
                assert_int_equal(pv, DM_PASS);
            if (pv == DM_PASS && ship == 0)
                assert_int_equal(pk.est_profit_cents, d.profit_cents);
            rejected_at_peek += pv != DM_PASS && dm_peek(&p.stats, &c, &pk) == DM_PASS;
        }
    }
    /* And it does reject products whose fees eat the margin before a full fetch is paid. */
    assert_true(rejected_at_peek > 0);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_peek_rules),
        cmocka_unit_test(test_deal_economics),
        cmocka_unit_test(test_peek_estimate_is_optimistic),
    };
    return KD_RUN_TESTS(tests, argc, argv);
}
