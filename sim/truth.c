/*
 * truth.c: the simulator's truth under the deal judgement (see truth.h).
 *
 * sim_truth_inputs() mirrors two files line by line and must change with them: sim/render.c
 * (which csv/stats values a /product answer with stats and offers shows: render_stats,
 * visible(), render_offers) and judge/inputs.c (how jd_inputs_from_product reads them). The
 * equality test in tests/unit/test_sim_units.c fails when either moves alone.
 */
#include "sim/truth.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "sim/deals.h"
#include "sim/render.h"

static int64_t pos(int64_t v)
{
    return v > 0 ? v : -1;
}

static int32_t count_of(int64_t v)
{
    return v >= 0 ? (int32_t)v : -1;
}

static int64_t landed(const struct sim_offer *o)
{
    return o->price + (o->ship > 0 ? o->ship : 0);
}

/* The live offers of M an answer with OFFERS offers carries, cheapest landed first (stable). */
static int returned_live(const struct sim_market *m, int offers, int order[SIM_MAX_OFFERS])
{
    int n = 0;
    for (int i = 0; i < m->n; i++)
        if (m->offers[i].live)
            order[n++] = i;
    for (int i = 1; i < n; i++) { /* insertion sort, as render_offers */
        int v = order[i], j = i - 1;
        while (j >= 0 && m->offers[order[j]].price + m->offers[order[j]].ship >
                             m->offers[v].price + m->offers[v].ship) {
            order[j + 1] = order[j];
            j--;
        }
        order[j + 1] = v;
    }
    return n < offers ? n : offers;
}

/* The first (cheapest landed) of the returned offers on SIDE, FBA only when FBA_ONLY; -1. */
static int cheapest(const struct sim_market *m, const int *order, int n, int side, int fba_only)
{
    int best = -1;
    for (int k = 0; k < n; k++) {
        const struct sim_offer *o = &m->offers[order[k]];
        if (o->price <= 0 || jd_side_of_condition(o->cond) != side)
            continue;
        if (fba_only && !o->fba)
            continue;
        if (best < 0 || landed(o) < landed(&m->offers[best]))
            best = order[k];
    }
    return best;
}

static int buy_offer(const struct sim_market *m, const int *order, int n, int buy_condition)
{
    int o;
    switch (buy_condition) {
    case 1:
        return cheapest(m, order, n, JD_USED, 0);
    case 2:
        return cheapest(m, order, n, JD_NEW, 0);
    case 3:
        o = cheapest(m, order, n, JD_NEW, 0);
        return o >= 0 ? o : cheapest(m, order, n, JD_USED, 0);
    default:
        o = cheapest(m, order, n, JD_USED, 0);
        return o >= 0 ? o : cheapest(m, order, n, JD_NEW, 0);
    }
}

/* csv type T's current value as stats.current shows it with offers (triples landed), -1. */
static int64_t shown_current(const struct sim_product *p, int t)
{
    int64_t v = p->cur[t];
    if (v < 0)
        return -1;
    return t == 18 || t == 32 ? v + p->mkt.ship[t] : v;
}

void sim_truth_inputs(const struct sim_catalog *c, const struct sim_product *p, int offers,
                      const struct jd_rules *r, int64_t at_ms, struct jd_inputs *in)
{
    const struct sim_market *m = &p->mkt;
    jd_inputs_init(in);
    in->root_category = p->root_cat > 0 ? p->root_cat : 0;
    in->amazon_availability = p->availability_amazon;
    in->keepa_last_update_min = p->last_update;
    in->price_change_min = p->epoch_start; /* lastPriceChange, as sim/render.c writes it */
    in->monthly_sold = count_of(p->monthly_sold);
    in->referral_bp = p->referral_bp;
    in->fba_fee_cents = pos(p->fba_fee_cents);
    in->closing_fee_cents = p->closing_fee_cents >= 0 ? p->closing_fee_cents : -1;
    in->hazmat = p->hazmat > 0;
    in->heat_sensitive = p->heat_sensitive != 0;
    in->adult = p->adult != 0;
    in->package_weight_g = p->weight_g;
    in->package_length_mm = p->length_mm;
    in->package_width_mm = p->width_mm;
    in->package_height_mm = p->height_mm;
    in->fees_known = true;
    in->data_ms = at_ms;

    /* stats, as render_stats shows them with offers (visible() decides what is -1) */
    in->amazon_cents = p->has_amazon ? pos(p->cur[0]) : -1;
    in->buy_box_is_amazon = m->bb >= 0 ? m->offers[m->bb].amazon : -1;
    in->new_cents = p->has_new ? pos(p->cur[1]) : -1;
    in->used_cents = p->has_used ? pos(p->cur[2]) : -1;
    in->new_avg90_cents = p->has_new ? pos(p->avg90[1]) : -1;
    in->new_avg180_cents = p->has_new ? pos(p->avg180[1]) : -1;
    in->new_avg365_cents = p->has_new ? pos(p->avg365[1]) : -1;
    in->used_avg90_cents = p->has_used ? pos(p->avg90[2]) : -1;
    in->used_avg180_cents = p->has_used ? pos(p->avg180[2]) : -1;
    in->used_avg365_cents = p->has_used ? pos(p->avg365[2]) : -1;
    in->sales_rank = p->has_rank ? pos(p->cur[3]) : -1;
    in->drops30 = count_of(p->drops30);
    in->drops90 = count_of(p->drops90);
    in->drops180 = count_of(p->drops180);
    in->drops365 = count_of(p->drops365);
    in->offers_new = count_of(p->cur[11]);
    in->offers_used = count_of(p->cur[12]);
    in->offers_fba = m->n_new_fba;
    in->offers_fbm = m->n_new_fbm;
    in->new_lowest_fba_cents = p->has_new ? pos(p->cur[10]) : -1;
    in->new_buy_box_cents = pos(shown_current(p, 18));
    if (in->new_buy_box_cents < 0 && m->bb >= 0 && !m->bb_is_used)
        in->new_buy_box_cents = landed(&m->offers[m->bb]);
    in->used_buy_box_cents = p->has_used ? pos(shown_current(p, 32)) : -1;
    if (in->used_buy_box_cents < 0 && m->bb_used >= 0)
        in->used_buy_box_cents = landed(&m->offers[m->bb_used]);
    if (in->used_buy_box_cents < 0 && m->bb >= 0 && m->bb_is_used)
        in->used_buy_box_cents = landed(&m->offers[m->bb]);

    /* offers: the returned live ones, in liveOffersOrder */
    int order[SIM_MAX_OFFERS];
    int n = returned_live(m, offers, order), f;
    if (in->new_lowest_fba_cents < 0 && (f = cheapest(m, order, n, JD_NEW, 1)) >= 0)
        in->new_lowest_fba_cents = landed(&m->offers[f]);
    if ((f = cheapest(m, order, n, JD_USED, 1)) >= 0)
        in->used_lowest_fba_cents = landed(&m->offers[f]);
    if (in->amazon_cents < 0)
        for (int k = 0; k < n; k++)
            if (m->offers[order[k]].amazon && m->offers[order[k]].cond == 1)
                in->amazon_cents = m->offers[order[k]].price;
    int b = buy_offer(m, order, n, r->buy_condition);
    if (b < 0) {
        in->buy_source = JD_BUY_NONE;
        return;
    }
    const struct sim_offer *o = &m->offers[b];
    in->buy_source = JD_BUY_OFFER;
    in->buy_condition = (uint8_t)o->cond;
    in->buy_price_cents = o->price;
    in->buy_shipping_cents = o->ship >= 0 ? o->ship : -1;
    if (o->seller_idx < 0)
        snprintf(in->buy_seller_id, sizeof(in->buy_seller_id), "%s", SIM_AMAZON_SELLER);
    else
        sim_catalog_seller_id(c, o->seller_idx, in->buy_seller_id);
    in->buy_is_fba = o->fba != 0;
    in->buy_is_amazon = o->amazon != 0;
    in->buy_seen_ms = at_ms;
}

void sim_truth_judge(const struct sim_catalog *c, const struct sim_product *p, int offers,
                     const struct jd_rules *r, struct sim_truth *out)
{
    out->minute = p->keepa_min;
    sim_truth_inputs(c, p, offers, r, kd_keepa_min_to_ms(p->keepa_min), &out->in);
    jd_judge(&out->in, r, &out->v);
    out->live_offers = p->mkt.n_live;
    int pages = sim_offer_pages(c, p, offers);
    out->fetch_tokens = 6 * (pages > 0 ? pages : 1);
}

/* ---------- timelines ---------- */

static int is_avg_basis(unsigned basis)
{
    return basis == JD_BASIS_AVG90 || basis == JD_BASIS_AVG180 || basis == JD_BASIS_AVG365 ||
           basis == JD_BASIS_AVG90_365;
}

/* Product IDX at minute T into P (ASIN set for synthetic products). */
static void product_at(const struct sim_catalog *c, int64_t idx, const char *asin, int64_t t,
                       struct sim_product *p)
{
    sim_catalog_product(c, idx, t, p);
    if (asin != NULL)
        snprintf(p->asin, sizeof(p->asin), "%.10s", asin);
}

struct timeline {
    struct sim_truth_seg *segs;
    int max;
    struct sim_truth_span *span;
    int open; /* a segment is open in cur */
    struct sim_truth_seg cur;
};

static void seg_close(struct timeline *tl, int64_t end)
{
    if (!tl->open)
        return;
    tl->open = 0;
    tl->cur.end = end;
    struct sim_truth_span *sp = tl->span;
    sp->deal_min += end - tl->cur.start;
    if (sp->n_segs_total == 0 || tl->cur.peak_profit_cents > sp->peak.peak_profit_cents)
        sp->peak = tl->cur;
    if (sp->n_segs < tl->max)
        tl->segs[sp->n_segs++] = tl->cur;
    sp->n_segs_total++;
}

/* Records the judgement T made at minute AT (it holds until the next one). */
static void seg_note(struct timeline *tl, int64_t at, const struct sim_truth *t)
{
    if (!t->v.deal) {
        seg_close(tl, at);
        return;
    }
    if (tl->span->first_deal < 0)
        tl->span->first_deal = at;
    if (!tl->open) {
        tl->open = 1;
        memset(&tl->cur, 0, sizeof(tl->cur));
        tl->cur.start = at;
        tl->cur.peak_profit_cents = INT64_MIN;
    }
    if (t->v.profit_cents > tl->cur.peak_profit_cents) {
        tl->cur.peak_profit_cents = t->v.profit_cents;
        tl->cur.peak_roi_bp = t->v.roi_bp;
        tl->cur.peak_at = at;
        tl->cur.peak_fetch_tokens = t->fetch_tokens;
    }
}

int sim_truth_timeline(const struct sim_catalog *c, int64_t idx, const char *asin, int64_t from,
                       int64_t to, int64_t step, int offers, const struct jd_rules *r,
                       const struct sim_selection *sel, struct sim_product *p,
                       struct sim_truth_seg *segs, int max, struct sim_truth_span *span)
{
    memset(span, 0, sizeof(*span));
    span->first_deal = -1;
    span->listed_at = -1;
    if (to <= from || step < 1)
        return -EINVAL;
    int64_t *moments = malloc((SIM_TRUTH_MAX_BREAK + 1) * sizeof(*moments));
    struct sim_truth *t = malloc(sizeof(*t));
    if (moments == NULL || t == NULL) {
        free(moments);
        free(t);
        return -ENOMEM;
    }
    product_at(c, idx, asin, from, p);
    int n = sim_catalog_breaks(c, p, from, to - 1, moments + 1, SIM_TRUTH_MAX_BREAK);
    if (n < 0) {
        free(moments);
        free(t);
        return n;
    }
    moments[0] = from;
    n++;
    struct timeline tl = {segs, max, span, 0, {0}};
    int evaluated = 0;
    for (int i = 0; i < n; i++) {
        int64_t end = i + 1 < n ? moments[i + 1] : to;
        for (int64_t at = moments[i]; at < end; at += step) {
            if (++evaluated > SIM_TRUTH_MAX_BREAK) {
                free(moments);
                free(t);
                return -E2BIG;
            }
            if (at != from || i != 0)
                product_at(c, idx, asin, at, p);
            sim_truth_judge(c, p, offers, r, t);
            seg_note(&tl, at, t);
            if (t->v.deal && sel != NULL && span->listed_at < 0 && idx < c->products &&
                sim_deal_match(c, sel, p, 1, NULL))
                span->listed_at = at;
            if (!is_avg_basis(t->v.basis))
                break; /* nothing else moves before the next market change */
        }
    }
    seg_close(&tl, to);
    free(moments);
    free(t);
    return 0;
}

/* ---------- rules from query parameters ---------- */

static int rule_i64(sim_param_fn get, void *ctx, const char *name, int64_t lo, int64_t hi,
                    int64_t *out, char *err, size_t errsz)
{
    const char *s = get(ctx, name);
    int64_t v;
    if (s == NULL || *s == '\0')
        return 0;
    if (sim_parse_i64(s, &v) != 0 || v < lo || v > hi) {
        snprintf(err, errsz, "%s=%s: expected an integer in [%lld, %lld]", name, s, (long long)lo,
                 (long long)hi);
        return -EINVAL;
    }
    *out = v;
    return 0;
}

/* Parses a comma list of basis names into OUT (at most JD_BASIS_MAX); -EINVAL. */
static int rule_basis(const char *s, uint8_t *out, uint8_t *n)
{
    int k = 0;
    while (*s) {
        const char *e = strchr(s, ',');
        size_t len = e ? (size_t)(e - s) : strlen(s);
        int b = jd_basis_parse(s, len);
        if (b <= 0 || k >= JD_BASIS_MAX)
            return -EINVAL;
        out[k++] = (uint8_t)b;
        if (e == NULL)
            break;
        s = e + 1;
    }
    if (k == 0)
        return -EINVAL;
    *n = (uint8_t)k;
    return 0;
}

int sim_truth_rules(sim_param_fn get, void *ctx, struct jd_rules *r, char *err, size_t errsz)
{
    static const char *const BUY[] = {"used_then_new", "used", "new", "new_then_used"};
    const char *s = get(ctx, "buy_condition");
    if (s != NULL && *s) {
        int found = -1;
        for (int i = 0; i < 4; i++)
            if (strcmp(s, BUY[i]) == 0 || (s[0] == '0' + i && s[1] == '\0'))
                found = i;
        if (found < 0) {
            snprintf(err, errsz,
                     "buy_condition=%s: expected used_then_new, used, new or "
                     "new_then_used",
                     s);
            return -EINVAL;
        }
        r->buy_condition = found;
    }
    const char *bn[JD_SIDES] = {"basis_new", "basis_used"};
    for (int side = 0; side < JD_SIDES; side++) {
        s = get(ctx, bn[side]);
        if (s != NULL && *s && rule_basis(s, r->basis[side], &r->n_basis[side]) != 0) {
            snprintf(err, errsz,
                     "%s=%s: expected a comma list of bases (buy_box, lowest_fba, "
                     "avg90, avg180, avg365, avg90_365, current)",
                     bn[side], s);
            return -EINVAL;
        }
    }
    int64_t v = r->cap_at_buy_box;
    if (rule_i64(get, ctx, "cap_at_buy_box", 0, 1, &v, err, errsz) != 0)
        return -EINVAL;
    r->cap_at_buy_box = v != 0;
    const int64_t BIG = 1000000000000LL;
    struct {
        const char *name;
        int64_t *field;
        int64_t lo, hi;
    } nums[] = {
        {"amazon_cap_bp", &r->amazon_cap_bp, 0, 100000},
        {"max_sell_cents", &r->max_sell_cents, 0, BIG},
        {"min_roi_bp", &r->min_roi_bp, -BIG, BIG},
        {"min_profit_cents", &r->min_profit_cents, -BIG, BIG},
        {"min_sell_cents", &r->min_sell_cents, 0, BIG},
        {"min_drops365", &r->min_drops365, 0, BIG},
        {"max_rank", &r->max_rank, 0, BIG},
        {"near_roi_bp", &r->near_roi_bp, 0, BIG},
        {"near_profit_cents", &r->near_profit_cents, 0, BIG},
        {"prep_cents", &r->prep_cents, 0, BIG},
        {"inbound_cents", &r->inbound_cents, 0, BIG},
        {"tax_bp", &r->tax_bp, 0, 100000},
        {"default_referral_bp", &r->default_referral_bp, 0, 10000},
        {"referral_min_cents", &r->referral_min_cents, 0, BIG},
        {"default_fba_fee_cents", &r->default_fba_fee_cents, 0, BIG},
        {"closing_fee_cents", &r->closing_fee_cents, 0, BIG},
        {"fbm_shipping_cents", &r->fbm_shipping_cents, 0, BIG},
    };
    for (size_t i = 0; i < sizeof(nums) / sizeof(nums[0]); i++)
        if (rule_i64(get, ctx, nums[i].name, nums[i].lo, nums[i].hi, nums[i].field, err, errsz) !=
            0)
            return -EINVAL;
    s = get(ctx, "unknown");
    if (s != NULL && *s) {
        if (strcmp(s, "fail") != 0 && strcmp(s, "pass") != 0) {
            snprintf(err, errsz, "unknown=%s: expected fail or pass", s);
            return -EINVAL;
        }
        r->unknown = s[0] == 'p' ? JD_UNKNOWN_PASSES : JD_UNKNOWN_FAILS;
    }
    s = get(ctx, "fulfilment");
    if (s != NULL && *s) {
        if (strcmp(s, "fba") != 0 && strcmp(s, "fbm") != 0) {
            snprintf(err, errsz, "fulfilment=%s: expected fba or fbm", s);
            return -EINVAL;
        }
        r->fulfilment = strcmp(s, "fbm") == 0 ? JD_FBM : JD_FBA;
    }
    s = get(ctx, "media");
    if (s != NULL && *s) {
        uint8_t k = 0;
        const size_t cap = sizeof(r->media_categories) / sizeof(r->media_categories[0]);
        while (*s) {
            char *end;
            long long id = strtoll(s, &end, 10);
            if (end == s || (*end != ',' && *end != '\0') || id <= 0 || k >= cap) {
                snprintf(err, errsz, "media: expected a comma list of at most %zu category ids",
                         cap);
                return -EINVAL;
            }
            r->media_categories[k++] = id;
            s = *end ? end + 1 : end;
        }
        r->n_media_categories = k;
    }
    return 0;
}

/* ---------- JSON ---------- */

static void money_or_null(struct sim_buf *b, const char *key, int known, int64_t v)
{
    sim_buf_key(b, key);
    if (known)
        sim_buf_int(b, v);
    else
        sim_buf_puts(b, "null");
    sim_buf_putc(b, ',');
}

void sim_truth_render(struct sim_buf *b, const char *asin, const struct sim_truth *t)
{
    const struct jd_verdict *v = &t->v;
    const struct jd_inputs *in = &t->in;
    sim_buf_puts(b, "{\"asin\":");
    sim_buf_str(b, asin);
    sim_buf_printf(b, ",\"at\":%lld,\"deal\":%s,\"near\":%s,\"reason\":", (long long)t->minute,
                   v->deal ? "true" : "false", v->near ? "true" : "false");
    sim_buf_str(b, jd_reason(v));
    sim_buf_putc(b, ',');
    money_or_null(b, "profit_cents", v->priced, v->profit_cents);
    money_or_null(b, "roi_bp", v->priced, v->roi_bp);
    money_or_null(b, "margin_bp", v->priced, v->margin_bp);
    money_or_null(b, "sell_cents", v->payout_known, v->sell_cents);
    money_or_null(b, "payout_cents", v->payout_known, v->payout_cents);
    money_or_null(b, "landed_cents", in->buy_source != JD_BUY_NONE, v->landed_cents);
    sim_buf_puts(b, "\"basis\":");
    sim_buf_str(b, jd_basis_name(v->basis));
    sim_buf_puts(b, ",\"side\":");
    sim_buf_str(b, jd_side_name(v->side));
    sim_buf_puts(b, ",\"caps\":[");
    for (unsigned i = 0; i < JD_CAP_COUNT; i++)
        if (v->caps & (1u << i)) {
            sim_buf_str(b, jd_cap_name(i));
            sim_buf_putc(b, ',');
        }
    sim_buf_uncomma(b);
    sim_buf_printf(b,
                   "],\"basis_cents\":%lld,\"referral_cents\":%lld,\"closing_cents\":%lld,"
                   "\"fba_cents\":%lld,\"max_cost_cents\":%lld,\"offer\":",
                   (long long)v->basis_cents, (long long)v->referral_cents,
                   (long long)v->closing_cents, (long long)v->fba_cents,
                   (long long)v->max_cost_cents);
    if (in->buy_source == JD_BUY_OFFER) {
        sim_buf_puts(b, "{\"seller\":");
        sim_buf_str(b, in->buy_seller_id);
        sim_buf_printf(b,
                       ",\"condition\":%d,\"price_cents\":%lld,\"shipping_cents\":%lld,"
                       "\"fba\":%s,\"amazon\":%s}",
                       in->buy_condition, (long long)in->buy_price_cents,
                       (long long)in->buy_shipping_cents, in->buy_is_fba ? "true" : "false",
                       in->buy_is_amazon ? "true" : "false");
    } else {
        sim_buf_puts(b, "null");
    }
    sim_buf_printf(b, ",\"live_offers\":%d,\"fetch_tokens\":%d}", t->live_offers, t->fetch_tokens);
}
