/*
 * dealmath.c: peek filter and deal economics. See dealmath.h for the rules.
 */
#include "judge/dealmath.h"

#include <stdio.h>
#include <string.h>

enum { PT_NEW = 1, PT_USED = 2, PT_SALES = 3 };

static const char *const verdict_names[DM_VERDICT_COUNT] = {
    "pass",         "no-buy-price", "no-sell-estimate", "no-rank-drops", "sell-too-low",
    "buy-too-high", "roi-too-low",  "profit-too-low",   "no-live-offer", "offers-failed"};

const char *dm_verdict_name(enum dm_verdict v)
{
    return (unsigned)v < DM_VERDICT_COUNT ? verdict_names[v] : "?";
}

/* Rounds a * b / d to the nearest integer (d > 0), for money and basis points. */
static int64_t muldiv(int64_t a, int64_t b, int64_t d)
{
    __int128 p = (__int128)a * b;
    __int128 h = d / 2;
    return (int64_t)(p >= 0 ? (p + h) / d : -((-p + h) / d));
}

static int64_t positive(int32_t v)
{
    return v > 0 ? v : -1;
}

int64_t dm_sell_estimate(const struct kp_stats *st, const struct cfg *c)
{
    int64_t a90 = positive(st->avg90[PT_USED]);
    int64_t a365 = positive(st->avg365[PT_USED]);
    switch (c->filter_sell_estimate) {
    case CFG_SELL_USED_AVG90:
        return a90;
    case CFG_SELL_USED_AVG365:
        return a365;
    case CFG_SELL_USED_MIN90_365:
        if (a90 > 0 && a365 > 0)
            return a90 < a365 ? a90 : a365;
        return a90 > 0 ? a90 : a365;
    default:
        if (a90 > 0 && a365 > 0)
            return (a90 + a365 + 1) / 2;
        return a90 > 0 ? a90 : a365;
    }
}

static int64_t peek_buy_price(const struct kp_stats *st, const struct cfg *c)
{
    int64_t used = positive(st->current[PT_USED]);
    int64_t fresh = positive(st->current[PT_NEW]);
    switch (c->filter_buy_price) {
    case CFG_BUY_USED:
        return used;
    case CFG_BUY_NEW:
        return fresh;
    case CFG_BUY_NEW_THEN_USED:
        return fresh > 0 ? fresh : used;
    default:
        return used > 0 ? used : fresh;
    }
}

enum dm_verdict dm_peek(const struct kp_stats *st, const struct cfg *c, struct dm_peek *out)
{
    memset(out, 0, sizeof(*out));
    out->buy_cents = peek_buy_price(st, c);
    out->sell_estimate_cents = dm_sell_estimate(st, c);
    out->rank_drops_365 = st->sales_rank_drops365;
    if (out->buy_cents > 0 && out->sell_estimate_cents > 0)
        out->gross_roi_bp =
            muldiv(out->sell_estimate_cents - out->buy_cents, 10000, out->buy_cents);

    int64_t drops = st->sales_rank_drops365 > 0 ? st->sales_rank_drops365 : 0;
    if (drops < c->filter_min_rank_drops_365)
        return DM_NO_RANK_DROPS;
    if (out->buy_cents <= 0)
        return DM_NO_BUY_PRICE;
    if (out->sell_estimate_cents <= 0)
        return DM_NO_SELL_ESTIMATE;
    if (out->sell_estimate_cents < c->filter_min_sell_cents)
        return DM_SELL_TOO_LOW;
    if ((__int128)out->buy_cents * 10000 >
        (__int128)c->filter_max_buy_pct_bp * out->sell_estimate_cents)
        return DM_BUY_TOO_HIGH;
    if (out->gross_roi_bp < c->filter_min_gross_roi_pct_bp)
        return DM_ROI_TOO_LOW;
    return DM_PASS;
}

/* The product's referral fee in basis points, else the configured default. */
static int64_t referral_bp_of(const struct kp_product *p, const struct cfg *c)
{
    return p->referral_fee_percent >= 0 ? (int64_t)(p->referral_fee_percent * 100.0 + 0.5)
                                        : c->costs_default_referral_pct_bp;
}

static int64_t fba_fee_of(const struct kp_product *p, const struct cfg *c)
{
    return p->pick_and_pack_fee_cents > 0 ? p->pick_and_pack_fee_cents
                                          : c->costs_default_fba_fee_cents;
}

enum dm_verdict dm_peek_product(const struct kp_product *p, const struct cfg *c,
                                struct dm_peek *out)
{
    enum dm_verdict v = dm_peek(&p->stats, c, out);
    if (v != DM_PASS)
        return v;
    int64_t sell = out->sell_estimate_cents;
    int64_t landed = out->buy_cents + muldiv(out->buy_cents, c->costs_tax_pct_bp, 10000) +
                     c->costs_prep_cents + c->costs_inbound_shipping_cents;
    out->est_profit_cents =
        sell - muldiv(sell, referral_bp_of(p, c), 10000) - fba_fee_of(p, c) - landed;
    out->est_roi_bp = landed > 0 ? muldiv(out->est_profit_cents, 10000, landed) : 0;
    if (out->est_profit_cents < c->filter_min_profit_cents)
        return DM_PROFIT_TOO_LOW;
    if (out->est_roi_bp < c->filter_min_roi_pct_bp)
        return DM_ROI_TOO_LOW;
    return DM_PASS;
}

static int is_used(int condition)
{
    return condition >= 2 && condition <= 5;
}

/* Cheapest landed live offer whose condition satisfies WANT_USED; NULL if none. */
static const struct kp_offer *cheapest(const struct kp_product *p, int want_used)
{
    const struct kp_offer *best = NULL;
    int64_t best_landed = 0;
    for (uint32_t i = 0; i < p->n_offers; i++) {
        const struct kp_offer *o = &p->offers[i];
        if (o->price_cents <= 0)
            continue;
        if (want_used ? !is_used(o->condition) : o->condition != 1)
            continue;
        int64_t landed = (int64_t)o->price_cents + (o->shipping_cents > 0 ? o->shipping_cents : 0);
        if (best == NULL || landed < best_landed) {
            best = o;
            best_landed = landed;
        }
    }
    return best;
}

static const struct kp_offer *buy_offer(const struct kp_product *p, const struct cfg *c)
{
    switch (c->filter_buy_price) {
    case CFG_BUY_USED:
        return cheapest(p, 1);
    case CFG_BUY_NEW:
        return cheapest(p, 0);
    case CFG_BUY_NEW_THEN_USED: {
        const struct kp_offer *o = cheapest(p, 0);
        return o ? o : cheapest(p, 1);
    }
    default: {
        const struct kp_offer *o = cheapest(p, 1);
        return o ? o : cheapest(p, 0);
    }
    }
}

enum dm_verdict dm_deal(const struct kp_product *p, const struct cfg *c, struct st_deal *out)
{
    const struct kp_stats *st = &p->stats;
    memset(out, 0, sizeof(*out));
    size_t asin_len = strnlen(p->asin, sizeof(out->asin) - 1);
    memcpy(out->asin, p->asin, asin_len);
    out->asin[asin_len] = '\0';
    out->domain = (uint8_t)(p->domain_id > 0 ? p->domain_id : c->keepa_domain);
    st_deal_set_title(out, p->title, strlen(p->title));
    out->sales_rank = st->present ? st->current[PT_SALES] : -1;
    if (out->sales_rank <= 0)
        out->sales_rank = -1;
    out->rank_drops_30 = st->sales_rank_drops30;
    out->rank_drops_90 = st->sales_rank_drops90;
    out->rank_drops_180 = st->sales_rank_drops180;
    out->rank_drops_365 = st->sales_rank_drops365;
    out->offers_fba = st->offer_count_fba;
    out->offers_fbm = st->offer_count_fbm;
    out->buy_box_cents = st->buy_box_price_cents > 0 ? st->buy_box_price_cents : -1;
    int32_t n_new = 0, n_used = 0;
    for (uint32_t i = 0; i < p->n_offers; i++) {
        n_new += p->offers[i].condition == 1;
        n_used += is_used(p->offers[i].condition);
    }
    out->offers_new = p->live_order_present || p->n_offers > 0 ? n_new : -1;
    out->offers_used = p->live_order_present || p->n_offers > 0 ? n_used : -1;

    if (p->offers_successful == 0)
        return DM_OFFERS_FAILED;
    const struct kp_offer *o = buy_offer(p, c);
    if (o == NULL)
        return DM_NO_OFFER;
    out->buy_price_cents = o->price_cents;
    out->buy_shipping_cents = o->shipping_cents > 0 ? o->shipping_cents : 0;
    out->buy_condition = (uint8_t)(o->condition > 0 ? o->condition : 0);
    out->buy_is_fba = o->is_fba == 1;
    size_t sid_len = strnlen(o->seller_id, sizeof(out->buy_seller_id) - 1);
    memcpy(out->buy_seller_id, o->seller_id, sid_len);
    out->buy_seller_id[sid_len] = '\0';

    out->expected_sell_cents = dm_sell_estimate(st, c);
    int64_t referral_bp = referral_bp_of(p, c);
    out->referral_fee_bp = (int32_t)referral_bp;
    out->fba_fee_cents = fba_fee_of(p, c);
    out->prep_cents = c->costs_prep_cents;
    out->inbound_cents = c->costs_inbound_shipping_cents;
    out->tax_cents = muldiv(out->buy_price_cents, c->costs_tax_pct_bp, 10000);
    out->landed_buy_cents = out->buy_price_cents + out->buy_shipping_cents + out->tax_cents +
                            out->prep_cents + out->inbound_cents;

    int64_t drops = st->sales_rank_drops365 > 0 ? st->sales_rank_drops365 : 0;
    if (out->expected_sell_cents <= 0) {
        out->expected_sell_cents = -1;
        return DM_NO_SELL_ESTIMATE;
    }
    out->referral_fee_cents = muldiv(out->expected_sell_cents, referral_bp, 10000);
    out->profit_cents = out->expected_sell_cents - out->referral_fee_cents - out->fba_fee_cents -
                        out->landed_buy_cents;
    out->margin_bp = (int32_t)muldiv(out->profit_cents, 10000, out->expected_sell_cents);
    out->roi_bp = (int32_t)muldiv(out->profit_cents, 10000, out->landed_buy_cents);

    if (drops < c->filter_min_rank_drops_365)
        return DM_NO_RANK_DROPS;
    if (out->expected_sell_cents < c->filter_min_sell_cents)
        return DM_SELL_TOO_LOW;
    if (out->profit_cents < c->filter_min_profit_cents)
        return DM_PROFIT_TOO_LOW;
    if (out->roi_bp < c->filter_min_roi_pct_bp)
        return DM_ROI_TOO_LOW;
    return DM_PASS;
}
