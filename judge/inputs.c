/*
 * inputs.c: the judgement's inputs from decoded Keepa answers. See inputs.h.
 */
#include "judge/inputs.h"

#include <string.h>

/* Keepa's csv / stats indices (docs/keepa-api.md, the csv index table). */
enum {
    IX_AMAZON = 0,
    IX_NEW = 1,
    IX_USED = 2,
    IX_SALES = 3,
    IX_NEW_FBA = 10,
    IX_COUNT_NEW = 11,
    IX_COUNT_USED = 12,
    IX_BUY_BOX_SHIPPING = 18,
    IX_BUY_BOX_USED_SHIPPING = 32
};
enum { DR_90_DAYS = 3 };

static int64_t pos(int64_t v)
{
    return v > 0 ? v : -1;
}

/* A count: 0 is a real value; anything negative is unknown. */
static int32_t count(int32_t v)
{
    return v >= 0 ? v : -1;
}

/* The preferred condition's side for a listing buy: 1 = New, 2 = Used. */
static int listing_condition(int64_t new_cents, int64_t used_cents, int buy_condition)
{
    switch (buy_condition) {
    case 1:
        return used_cents > 0 ? 2 : 0;
    case 2:
        return new_cents > 0 ? 1 : 0;
    case 3:
        return new_cents > 0 ? 1 : used_cents > 0 ? 2 : 0;
    default:
        return used_cents > 0 ? 2 : new_cents > 0 ? 1 : 0;
    }
}

static void set_listing_buy(struct jd_inputs *in, int buy_condition, int64_t at_ms)
{
    int cond = listing_condition(in->new_cents, in->used_cents, buy_condition);
    in->buy_condition = (uint8_t)cond;
    in->buy_seller_id[0] = '\0';
    in->buy_is_fba = in->buy_is_amazon = false;
    if (cond == 0) {
        in->buy_source = JD_BUY_NONE;
        in->buy_price_cents = -1;
        in->buy_shipping_cents = -1;
        in->buy_seen_ms = 0;
        return;
    }
    in->buy_source = JD_BUY_LISTING;
    in->buy_price_cents = cond == 1 ? in->new_cents : in->used_cents;
    in->buy_shipping_cents = -1;
    in->buy_seen_ms = at_ms;
}

static int64_t landed(const struct kp_offer *o)
{
    return (int64_t)o->price_cents + (o->shipping_cents > 0 ? o->shipping_cents : 0);
}

/* Cheapest landed live offer of P on SIDE; FBA_ONLY keeps FBA offers only. NULL if none. */
static const struct kp_offer *cheapest(const struct kp_product *p, int side, bool fba_only)
{
    const struct kp_offer *best = NULL;
    for (uint32_t i = 0; i < p->n_offers; i++) {
        const struct kp_offer *o = &p->offers[i];
        if (o->price_cents <= 0 || jd_side_of_condition(o->condition) != side)
            continue;
        if (fba_only && o->is_fba != 1)
            continue;
        if (best == NULL || landed(o) < landed(best))
            best = o;
    }
    return best;
}

static const struct kp_offer *buy_offer(const struct kp_product *p, int buy_condition)
{
    const struct kp_offer *n, *u;
    switch (buy_condition) {
    case 1:
        return cheapest(p, JD_USED, false);
    case 2:
        return cheapest(p, JD_NEW, false);
    case 3:
        n = cheapest(p, JD_NEW, false);
        return n != NULL ? n : cheapest(p, JD_USED, false);
    default:
        u = cheapest(p, JD_USED, false);
        return u != NULL ? u : cheapest(p, JD_NEW, false);
    }
}

void jd_inputs_from_product(const struct kp_product *p, const struct jd_rules *r, int64_t at_ms,
                            enum jd_read how, struct jd_inputs *out)
{
    const struct kp_stats *st = &p->stats;
    jd_inputs_init(out);
    out->root_category = p->root_category > 0 ? p->root_category : 0;
    out->amazon_availability = p->availability_amazon;
    out->keepa_last_update_min = p->last_update_keepa_min;
    out->price_change_min = p->last_price_change_keepa_min;
    out->monthly_sold = count(p->monthly_sold);
    out->referral_bp =
        p->referral_fee_percent >= 0 ? (int32_t)(p->referral_fee_percent * 100.0 + 0.5) : -1;
    out->fba_fee_cents = pos(p->pick_and_pack_fee_cents);
    out->closing_fee_cents =
        p->variable_closing_fee_cents >= 0 ? p->variable_closing_fee_cents : -1;
    out->hazmat = p->hazmat;
    out->heat_sensitive = p->is_heat_sensitive;
    out->adult = p->is_adult;
    out->package_weight_g = p->package_weight_g;
    out->package_length_mm = p->package_length_mm;
    out->package_width_mm = p->package_width_mm;
    out->package_height_mm = p->package_height_mm;
    out->fees_known = true;
    out->data_ms = at_ms;

    if (st->present) {
        out->amazon_cents = pos(st->current[IX_AMAZON]);
        out->buy_box_is_amazon = st->buy_box_is_amazon;
        out->new_cents = pos(st->current[IX_NEW]);
        out->used_cents = pos(st->current[IX_USED]);
        out->new_avg90_cents = pos(st->avg90[IX_NEW]);
        out->new_avg180_cents = pos(st->avg180[IX_NEW]);
        out->new_avg365_cents = pos(st->avg365[IX_NEW]);
        out->used_avg90_cents = pos(st->avg90[IX_USED]);
        out->used_avg180_cents = pos(st->avg180[IX_USED]);
        out->used_avg365_cents = pos(st->avg365[IX_USED]);
        out->sales_rank = pos(st->current[IX_SALES]);
        out->drops30 = count(st->sales_rank_drops30);
        out->drops90 = count(st->sales_rank_drops90);
        out->drops180 = count(st->sales_rank_drops180);
        out->drops365 = count(st->sales_rank_drops365);
        out->offers_new = count(st->current[IX_COUNT_NEW]);
        out->offers_used = count(st->current[IX_COUNT_USED]);
        out->offers_fba = count(st->offer_count_fba);
        out->offers_fbm = count(st->offer_count_fbm);
        out->new_lowest_fba_cents = pos(st->current[IX_NEW_FBA]);
        out->new_buy_box_cents = pos(st->current[IX_BUY_BOX_SHIPPING]);
        if (out->new_buy_box_cents < 0 && st->buy_box_price_cents > 0 && st->buy_box_is_used != 1)
            out->new_buy_box_cents =
                st->buy_box_price_cents +
                (st->buy_box_shipping_cents > 0 ? st->buy_box_shipping_cents : 0);
        out->used_buy_box_cents = pos(st->current[IX_BUY_BOX_USED_SHIPPING]);
        if (out->used_buy_box_cents < 0 && st->buy_box_used_price_cents > 0)
            out->used_buy_box_cents =
                st->buy_box_used_price_cents +
                (st->buy_box_used_shipping_cents > 0 ? st->buy_box_used_shipping_cents : 0);
        if (out->used_buy_box_cents < 0 && st->buy_box_is_used == 1 && st->buy_box_price_cents > 0)
            out->used_buy_box_cents =
                st->buy_box_price_cents +
                (st->buy_box_shipping_cents > 0 ? st->buy_box_shipping_cents : 0);
    }

    bool with_offers = how == JD_READ_AUTO && (p->live_order_present || p->n_offers > 0) &&
                       p->offers_successful != 0;
    if (with_offers) {
        const struct kp_offer *f;
        if (out->new_lowest_fba_cents < 0 && (f = cheapest(p, JD_NEW, true)) != NULL)
            out->new_lowest_fba_cents = landed(f);
        if ((f = cheapest(p, JD_USED, true)) != NULL)
            out->used_lowest_fba_cents = landed(f);
        if (out->amazon_cents < 0)
            for (uint32_t i = 0; i < p->n_offers; i++)
                if (p->offers[i].is_amazon == 1 && p->offers[i].condition == 1 &&
                    p->offers[i].price_cents > 0)
                    out->amazon_cents = p->offers[i].price_cents;
        const struct kp_offer *o = buy_offer(p, r->buy_condition);
        if (o == NULL) {
            out->buy_source = JD_BUY_NONE;
            return;
        }
        out->buy_source = JD_BUY_OFFER;
        out->buy_condition = (uint8_t)o->condition;
        out->buy_price_cents = o->price_cents;
        out->buy_shipping_cents = o->shipping_cents >= 0 ? o->shipping_cents : -1;
        size_t n = strnlen(o->seller_id, sizeof(out->buy_seller_id) - 1);
        memcpy(out->buy_seller_id, o->seller_id, n);
        out->buy_seller_id[n] = '\0';
        out->buy_is_fba = o->is_fba == 1;
        out->buy_is_amazon = o->is_amazon == 1;
        out->buy_seen_ms = at_ms;
        return;
    }
    set_listing_buy(out, r->buy_condition, at_ms);
}

void jd_inputs_from_deal(const struct kp_deal *d, const struct jd_rules *r, int64_t at_ms,
                         struct jd_inputs *out)
{
    jd_inputs_init(out);
    out->root_category = d->root_cat > 0 ? d->root_cat : 0;
    out->keepa_last_update_min = d->last_update_keepa_min;
    out->amazon_cents = pos(d->current[IX_AMAZON]);
    out->new_cents = pos(d->current[IX_NEW]);
    out->used_cents = pos(d->current[IX_USED]);
    out->new_lowest_fba_cents = pos(d->current[IX_NEW_FBA]);
    out->new_buy_box_cents = pos(d->current[IX_BUY_BOX_SHIPPING]);
    out->used_buy_box_cents = pos(d->current[IX_BUY_BOX_USED_SHIPPING]);
    out->new_avg90_cents = pos(d->avg[DR_90_DAYS][IX_NEW]);
    out->used_avg90_cents = pos(d->avg[DR_90_DAYS][IX_USED]);
    out->sales_rank = pos(d->current[IX_SALES]);
    out->drops30 = count(d->sales_rank_drops30);
    out->drops90 = count(d->sales_rank_drops90);
    out->drops180 = count(d->sales_rank_drops180);
    out->drops365 = count(d->sales_rank_drops365);
    out->offers_new = count(d->current[IX_COUNT_NEW]);
    out->offers_used = count(d->current[IX_COUNT_USED]);
    out->fees_known = false;
    out->data_ms = at_ms;
    set_listing_buy(out, r->buy_condition, at_ms);
}

void jd_inputs_refresh(struct jd_inputs *in, const struct jd_inputs *fresh)
{
    struct jd_inputs keep = *in;
    *in = *fresh;
    in->buy_source = keep.buy_source;
    in->buy_condition = keep.buy_condition;
    in->buy_price_cents = keep.buy_price_cents;
    in->buy_shipping_cents = keep.buy_shipping_cents;
    memcpy(in->buy_seller_id, keep.buy_seller_id, sizeof(in->buy_seller_id));
    in->buy_is_fba = keep.buy_is_fba;
    in->buy_is_amazon = keep.buy_is_amazon;
    in->buy_seen_ms = keep.buy_seen_ms;
    /* A light read carries no Buy Box: the last one seen stays as a ceiling only (never a
     * basis), so the re-check judges no more optimistically than the read that had it. */
    if (in->new_buy_box_cents <= 0 || in->used_buy_box_cents <= 0) {
        bool new_kept = in->new_buy_box_cents <= 0 && keep.new_buy_box_cents > 0;
        bool used_kept = in->used_buy_box_cents <= 0 && keep.used_buy_box_cents > 0;
        in->new_buy_box_seen_cents = in->new_buy_box_cents > 0 ? -1
                                     : new_kept                ? keep.new_buy_box_cents
                                                               : keep.new_buy_box_seen_cents;
        in->used_buy_box_seen_cents = in->used_buy_box_cents > 0 ? -1
                                      : used_kept                ? keep.used_buy_box_cents
                                                                 : keep.used_buy_box_seen_cents;
        in->buy_box_seen_ms = new_kept || used_kept ? keep.data_ms : keep.buy_box_seen_ms;
    }
    /* A light read has no offers: keep the offer counts the full read saw (shown, never
     * judged). Offer-derived prices are not kept: a stale price must not become a basis. */
    if (in->offers_fba < 0)
        in->offers_fba = keep.offers_fba;
    if (in->offers_fbm < 0)
        in->offers_fbm = keep.offers_fbm;
    /* Fees are the product's and rarely move: one the light read did not carry stays as the
     * last read that did. */
    if (in->referral_bp < 0)
        in->referral_bp = keep.referral_bp;
    if (in->fba_fee_cents < 0)
        in->fba_fee_cents = keep.fba_fee_cents;
    if (in->closing_fee_cents < 0)
        in->closing_fee_cents = keep.closing_fee_cents;
    in->fees_known = in->fees_known || keep.fees_known;
}

void jd_inputs_set_own_cost(struct jd_inputs *in, int64_t cost_cents, int condition, int64_t at_ms)
{
    in->buy_source = JD_BUY_OWN_COST;
    in->buy_condition = (uint8_t)condition;
    in->buy_price_cents = cost_cents;
    in->buy_shipping_cents = 0;
    in->buy_seller_id[0] = '\0';
    in->buy_is_fba = in->buy_is_amazon = false;
    in->buy_seen_ms = at_ms;
}
