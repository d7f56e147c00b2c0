/*
 * rules.c: the updater's rescheduling, expiry and repricing rules. See rules.h.
 *
 * Repricing does not re-implement the deal arithmetic: it builds the product a full fetch
 * would have returned if the stored buy offer were still the cheapest one at the fresh price
 * (one live offer with the stored condition, shipping and seller; the stored fees) and hands
 * it to dm_deal, so the updater judges a deal by exactly the committer's rules.
 */
#include "updater/rules.h"

#include <stdlib.h>
#include <string.h>

enum { PT_NEW = 1, PT_USED = 2, PT_SALES = 3 };

int64_t updater_scale_ms(int64_t cfg_ms, int64_t minute_ms)
{
    struct cfg c = {.tokens_minute_ms = minute_ms};
    return cfg_keepa_ms(&c, cfg_ms);
}

void updater_policy_from_cfg(const struct cfg *c, struct updater_policy *out)
{
    memset(out, 0, sizeof(*out));
    out->min_interval_ms = updater_scale_ms(c->update_min_interval_ms, c->tokens_minute_ms);
    out->max_interval_ms = updater_scale_ms(c->update_max_interval_ms, c->tokens_minute_ms);
    if (out->max_interval_ms < out->min_interval_ms)
        out->max_interval_ms = out->min_interval_ms;
    out->expire_after_failures =
        c->update_expire_after_failures > 0 ? (uint32_t)c->update_expire_after_failures : 1;
    out->retry_base_ms = updater_scale_ms(CFG_MS_MIN, c->tokens_minute_ms);
    out->retry_max_ms = updater_scale_ms(30 * CFG_MS_MIN, c->tokens_minute_ms);
}

int64_t updater_next_interval(int64_t prev_ms, bool is_volatile, int64_t min_ms, int64_t max_ms)
{
    if (is_volatile || prev_ms <= 0)
        return min_ms;
    int64_t next = prev_ms > INT64_MAX / 2 ? INT64_MAX : prev_ms * 2;
    if (next < min_ms)
        next = min_ms;
    if (next > max_ms)
        next = max_ms;
    return next;
}

/* |A - B| >= BP basis points of B (any change from or to "none" counts). */
static bool moved(int64_t before, int64_t after, int64_t bp)
{
    if (before <= 0 || after <= 0)
        return (before > 0) != (after > 0);
    __int128 d = (__int128)(after > before ? after - before : before - after);
    return d * 10000 >= (__int128)before * bp;
}

bool updater_is_volatile(const struct st_deal *before, const struct st_deal *after)
{
    return moved(before->buy_price_cents, after->buy_price_cents, UPDATER_VOLATILE_PRICE_BP) ||
           moved(before->expected_sell_cents, after->expected_sell_cents,
                 UPDATER_VOLATILE_PRICE_BP) ||
           moved(before->sales_rank, after->sales_rank, UPDATER_VOLATILE_RANK_BP);
}

int64_t updater_retry_backoff_ms(const struct updater_policy *p, unsigned failures)
{
    int64_t b = p->retry_base_ms > 0 ? p->retry_base_ms : 1;
    for (unsigned i = 1; i < failures && b < p->retry_max_ms; i++)
        b *= 2;
    return b < p->retry_max_ms ? b : p->retry_max_ms;
}

static int64_t positive_or_unknown(int64_t v)
{
    return v > 0 ? v : -1;
}

void updater_fresh_from_stats(const struct kp_stats *st, const struct cfg *c,
                              struct updater_fresh *out)
{
    memset(out, 0, sizeof(*out));
    if (!st->present) {
        out->used_cents = out->new_cents = out->sell_estimate_cents = -1;
        out->sales_rank = out->buy_box_cents = -1;
        out->rank_drops_30 = out->rank_drops_90 = out->rank_drops_180 = out->rank_drops_365 = -1;
        return;
    }
    out->used_cents = positive_or_unknown(st->current[PT_USED]);
    out->new_cents = positive_or_unknown(st->current[PT_NEW]);
    out->sell_estimate_cents = dm_sell_estimate(st, c);
    out->sales_rank = positive_or_unknown(st->current[PT_SALES]);
    out->rank_drops_30 = st->sales_rank_drops30;
    out->rank_drops_90 = st->sales_rank_drops90;
    out->rank_drops_180 = st->sales_rank_drops180;
    out->rank_drops_365 = st->sales_rank_drops365;
    out->buy_box_cents = positive_or_unknown(st->buy_box_price_cents);
}

enum updater_check updater_classify(enum kp_result_code code, bool returned,
                                    enum kp_asin_status status, bool any_returned, size_t batch_n)
{
    if (code != KP_OK || status == KP_ASIN_MALFORMED)
        return UPDATER_NOT_CHECKED;
    if (returned)
        return UPDATER_REFRESHED;
    if (status != KP_ASIN_MISSING)
        return UPDATER_NOT_CHECKED;
    if (!any_returned && batch_n > 1)
        return UPDATER_NOT_CHECKED; /* suspect: retried alone */
    return UPDATER_MISSING;
}

static bool is_used(int condition)
{
    return condition >= 2 && condition <= 5;
}

static int32_t clamp32(int64_t v)
{
    return v > INT32_MAX ? INT32_MAX : (int32_t)v;
}

static int32_t fresh_or(int32_t fresh, int32_t stored)
{
    return fresh >= 0 ? fresh : stored;
}

enum dm_verdict updater_reprice(const struct st_deal *stored, const struct updater_fresh *f,
                                const struct cfg *c, struct st_deal *out)
{
    *out = *stored;
    /* The buy price in the stored offer's condition; without one, the configured order. */
    int condition = stored->buy_condition;
    int64_t buy = -1;
    if (is_used(condition)) {
        buy = f->used_cents;
    } else if (condition == 1) {
        buy = f->new_cents;
    } else {
        bool new_first =
            c->filter_buy_price == CFG_BUY_NEW || c->filter_buy_price == CFG_BUY_NEW_THEN_USED;
        bool only = c->filter_buy_price == CFG_BUY_USED || c->filter_buy_price == CFG_BUY_NEW;
        int64_t first = new_first ? f->new_cents : f->used_cents;
        int64_t second = new_first ? f->used_cents : f->new_cents;
        bool took_new = new_first;
        buy = first;
        if (buy <= 0 && !only) {
            buy = second;
            took_new = !new_first;
        }
        condition = took_new ? 1 : 2;
    }
    int64_t sell =
        f->sell_estimate_cents > 0 ? f->sell_estimate_cents : stored->expected_sell_cents;
    int64_t rank = f->sales_rank > 0 ? f->sales_rank : stored->sales_rank;
    out->sales_rank = rank > 0 ? rank : -1;
    out->rank_drops_30 = fresh_or(f->rank_drops_30, stored->rank_drops_30);
    out->rank_drops_90 = fresh_or(f->rank_drops_90, stored->rank_drops_90);
    out->rank_drops_180 = fresh_or(f->rank_drops_180, stored->rank_drops_180);
    out->rank_drops_365 = fresh_or(f->rank_drops_365, stored->rank_drops_365);
    if (f->buy_box_cents > 0)
        out->buy_box_cents = f->buy_box_cents;
    if (buy <= 0 || buy > INT32_MAX)
        return DM_NO_BUY_PRICE;

    struct kp_product *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return DM_NO_BUY_PRICE; /* judged again at the next check */
    memcpy(p->asin, stored->asin, sizeof(stored->asin));
    p->domain_id = stored->domain;
    struct kp_stats *st = &p->stats;
    st->present = true;
    for (int i = 0; i < KP_NPRICE; i++)
        st->current[i] = st->avg[i] = st->avg30[i] = st->avg90[i] = st->avg180[i] = st->avg365[i] =
            -1;
    st->current[PT_SALES] = clamp32(out->sales_rank);
    st->avg90[PT_USED] = st->avg365[PT_USED] = sell > 0 ? clamp32(sell) : -1;
    st->sales_rank_drops30 = out->rank_drops_30;
    st->sales_rank_drops90 = out->rank_drops_90;
    st->sales_rank_drops180 = out->rank_drops_180;
    st->sales_rank_drops365 = out->rank_drops_365;
    st->buy_box_price_cents = out->buy_box_cents > 0 ? clamp32(out->buy_box_cents) : -2;
    st->offer_count_fba = stored->offers_fba;
    st->offer_count_fbm = stored->offers_fbm;
    p->referral_fee_percent =
        stored->referral_fee_bp > 0 ? (double)stored->referral_fee_bp / 100.0 : -1.0;
    p->pick_and_pack_fee_cents = stored->fba_fee_cents > 0 ? clamp32(stored->fba_fee_cents) : -1;
    p->offers_successful = 1;
    p->live_order_present = true;
    p->n_offers = 1;
    struct kp_offer *o = &p->offers[0];
    o->price_cents = (int32_t)buy;
    o->shipping_cents = clamp32(stored->buy_shipping_cents > 0 ? stored->buy_shipping_cents : 0);
    o->condition = (int8_t)condition;
    o->is_fba = stored->buy_is_fba ? 1 : 0;
    o->last_seen_keepa_min = o->csv_time_keepa_min = -1;
    memcpy(o->seller_id, stored->buy_seller_id,
           strnlen(stored->buy_seller_id, sizeof(o->seller_id) - 1));

    struct cfg cc = *c; /* the stored deal's costs, and only the offer above */
    cc.costs_prep_cents = stored->prep_cents;
    cc.costs_inbound_shipping_cents = stored->inbound_cents;
    cc.filter_buy_price = is_used(condition) ? CFG_BUY_USED : CFG_BUY_NEW;
    struct st_deal fresh;
    enum dm_verdict v = dm_deal(p, &cc, &fresh);
    free(p);
    if (v == DM_NO_OFFER || v == DM_OFFERS_FAILED)
        return v; /* cannot happen with the offer above; keep the stored numbers */
    out->buy_price_cents = fresh.buy_price_cents;
    out->tax_cents = fresh.tax_cents;
    out->landed_buy_cents = fresh.landed_buy_cents;
    if (v == DM_NO_SELL_ESTIMATE)
        return v;
    out->expected_sell_cents = fresh.expected_sell_cents;
    out->referral_fee_cents = fresh.referral_fee_cents;
    out->referral_fee_bp = fresh.referral_fee_bp;
    out->fba_fee_cents = fresh.fba_fee_cents;
    out->profit_cents = fresh.profit_cents;
    out->margin_bp = fresh.margin_bp;
    out->roi_bp = fresh.roi_bp;
    return v;
}

/*
 * True when a full fetch could not make the deal pass again. The light fetch's current price
 * is the lowest live price of its condition without shipping, so no offer the committer could
 * find lands cheaper than that price with free shipping; the sell estimate, rank drops and
 * fees come from the same stats. A verdict about the buy price itself (none, or no sell
 * estimate) is left to a full fetch.
 */
static bool definitely_failed(const struct st_deal *stored, const struct updater_fresh *f,
                              const struct cfg *c, enum dm_verdict verdict)
{
    if (verdict == DM_PASS || verdict == DM_NO_BUY_PRICE || verdict == DM_NO_SELL_ESTIMATE ||
        verdict == DM_NO_OFFER || verdict == DM_OFFERS_FAILED)
        return false;
    struct st_deal free_shipping = *stored;
    free_shipping.buy_shipping_cents = 0;
    struct st_deal best;
    return updater_reprice(&free_shipping, f, c, &best) != DM_PASS;
}

static bool economics_changed(const struct st_deal *a, const struct st_deal *b)
{
    return a->buy_price_cents != b->buy_price_cents ||
           a->expected_sell_cents != b->expected_sell_cents || a->profit_cents != b->profit_cents ||
           a->roi_bp != b->roi_bp || a->sales_rank != b->sales_rank;
}

void updater_apply(struct st_deal *d, enum updater_check check, const struct updater_fresh *f,
                   const struct cfg *c, const struct updater_policy *p, int64_t now_ms,
                   struct updater_outcome *out)
{
    memset(out, 0, sizeof(*out));
    if (check == UPDATER_NOT_CHECKED || (check == UPDATER_REFRESHED && f == NULL))
        return;
    int64_t prev_interval = d->last_checked_ms > 0 && d->next_check_ms > d->last_checked_ms
                                ? d->next_check_ms - d->last_checked_ms
                                : 0;
    struct st_deal next = *d;
    if (check == UPDATER_MISSING) {
        out->verdict = DM_NO_BUY_PRICE;
        out->failed = true;
        out->is_volatile = true;
    } else {
        out->verdict = updater_reprice(d, f, c, &next);
        out->failed = out->verdict != DM_PASS;
        out->is_volatile = out->failed || updater_is_volatile(d, &next);
        out->changed = economics_changed(d, &next);
    }
    uint32_t failures = out->failed ? d->check_failures + 1 : 0;
    if (failures >= p->expire_after_failures) {
        out->expire = true;
        return;
    }
    if (check == UPDATER_REFRESHED) {
        bool price_jump =
            moved(d->buy_price_cents, next.buy_price_cents, UPDATER_RECOMMIT_PRICE_BP);
        /* Stale offer data no longer makes it a deal: the first such check asks for fresh
         * offers (a cheaper one may exist); later ones wait for that answer. A failure that
         * fresh offers cannot undo is not paid for a second time. */
        out->recommit = !definitely_failed(d, f, c, out->verdict) &&
                        (price_jump || (out->failed && failures == 1));
    }
    out->interval_ms = updater_next_interval(prev_interval, out->is_volatile, p->min_interval_ms,
                                             p->max_interval_ms);
    next.check_failures = failures;
    next.last_checked_ms = now_ms;
    if (out->changed)
        next.last_changed_ms = now_ms;
    next.next_check_ms = now_ms + out->interval_ms;
    next.revision = d->revision + 1;
    *d = next;
}
