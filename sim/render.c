/*
 * render.c: Keepa-shaped JSON (see render.h).
 *
 * History: one row per price epoch (at most HISTORY_MAX epochs) at the epoch's start minute,
 * plus, in the calibrated economy, a row where a short Used dip starts and one where it ends;
 * each row holds every csv type, read off the market of that moment (sim_catalog_market_at),
 * and a series repeats a value only when it changed, as Keepa does. So history, stats,
 * offers and counts come from the same offers: the last row is the product now.
 */
#include "sim/render.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HISTORY_MAX 300

void sim_render_envelope(struct sim_buf *b, const struct sim_envelope *e)
{
    sim_buf_puts(b, "{\"timestamp\":");
    sim_buf_int(b, e->timestamp_ms);
    sim_buf_puts(b, ",\"tokensLeft\":");
    sim_buf_int(b, e->tokens_left);
    sim_buf_puts(b, ",\"refillIn\":");
    sim_buf_int(b, e->refill_in_ms);
    sim_buf_puts(b, ",\"refillRate\":");
    sim_buf_int(b, e->refill_rate);
    sim_buf_puts(b, ",\"tokenFlowReduction\":0.0,\"tokensConsumed\":");
    sim_buf_int(b, e->tokens_consumed);
    sim_buf_puts(b, ",\"processingTimeInMs\":");
    sim_buf_int(b, e->processing_ms);
    sim_buf_putc(b, ',');
}

void sim_product_ean(int64_t idx, char out[14])
{
    snprintf(out, 14, "074%010lld", (long long)idx);
}

int64_t sim_product_from_code(const struct sim_catalog *c, const char *code)
{
    char ean[14];
    if (strlen(code) == 12) { /* a UPC is the EAN-13 without its leading 0 */
        ean[0] = '0';
        memcpy(ean + 1, code, 13);
        code = ean;
    }
    if (strlen(code) != 13 || strncmp(code, "074", 3) != 0)
        return -1;
    int64_t v = 0;
    for (int i = 3; i < 13; i++) {
        if (code[i] < '0' || code[i] > '9')
            return -1;
        v = v * 10 + (code[i] - '0');
    }
    return v < c->products ? v : -1;
}

static uint64_t ph(const struct sim_catalog *c, const struct sim_product *p, uint64_t tag,
                   uint64_t k)
{
    return sim_hash(c->seed, (uint64_t)p->idx, 1000 + tag, k);
}

int sim_offer_pages(const struct sim_catalog *c, const struct sim_product *p, int n)
{
    (void)c;
    int live = p->mkt.n_live;
    if (live > n)
        live = n;
    return (live + 9) / 10;
}

/* Whether this request shows csv type T of P (history and stats alike). */
static int visible(const struct sim_product *p, const struct sim_product_req *r, int t)
{
    int offers = r->offers > 0;
    switch (t) {
    case 0:
        return p->has_amazon;
    case 1:
    case 4:
        return p->has_new;
    case 3:
        return p->has_rank;
    case 11:
    case 12:
    case 34:
    case 35:
        return 1;
    case 2:
        return p->has_used;
    case 16:
    case 17:
        return r->rating;
    case 18:
        return offers || r->buybox;
    case 32:
        return (offers || r->buybox) && p->has_used;
    case 7:
    case 10:
        return offers && p->has_new;
    case 19:
    case 20:
    case 21:
    case 22:
        return offers && p->has_used;
    default:
        return 0;
    }
}

static int is_triple(int t)
{
    return t == 7 || (t >= 18 && t <= 29) || t == 32;
}

/* One history row: a minute and every csv type's value (and shipping) from then on, and the
 * Buy Box holders then (seller pool index, -1 Amazon, -2 none). */
struct hist_row {
    int64_t minute;
    int32_t v[SIM_CSV_TYPES];
    int32_t ship[SIM_CSV_TYPES];
    int64_t bb_seller, bb_used_seller;
    int bb_used_cond, bb_used_fba;
};

static void row_from_market(struct hist_row *row, const struct sim_catalog *c,
                            const struct sim_product *p, int64_t epoch, const struct sim_market *m)
{
    row->bb_seller = m->bb >= 0 ? m->offers[m->bb].seller_idx : -2;
    row->bb_used_seller = m->bb_used >= 0 ? m->offers[m->bb_used].seller_idx : -2;
    row->bb_used_cond = m->bb_used >= 0 ? m->offers[m->bb_used].cond : 0;
    row->bb_used_fba = m->bb_used >= 0 ? m->offers[m->bb_used].fba : 0;
    for (int t = 0; t < SIM_CSV_TYPES; t++) {
        int64_t ship = 0, v;
        switch (t) {
        case 3:
        case 4:
        case 16:
        case 17:
            v = sim_catalog_value_at(c, p, t, epoch, NULL);
            break;
        default:
            v = m->price[t];
            ship = m->ship[t];
            break;
        }
        row->v[t] = (int32_t)v;
        row->ship[t] = (int32_t)ship;
    }
}

/*
 * The rows of P's history from WINDOW_START on (at most HISTORY_MAX epochs, never before
 * tracking_since). Returns a malloc'd array and its length in *N (NULL when out of memory).
 */
static struct hist_row *history_rows(const struct sim_catalog *c, const struct sim_product *p,
                                     int64_t window_start, int *n)
{
    int64_t L = c->epoch_len_min;
    int64_t floor_min = window_start > p->tracking_since ? window_start : p->tracking_since;
    int64_t first = p->epoch, phase = p->epoch * L - p->epoch_start;
    if (c->volatility > 0) {
        first = p->epoch - (HISTORY_MAX - 1);
        int64_t kmin = (floor_min + phase) / L;
        if (first < kmin)
            first = kmin;
        if (first > p->epoch)
            first = p->epoch;
    }
    int cap = (int)(p->epoch - first + 1) * 3;
    struct hist_row *rows = malloc((size_t)cap * sizeof(*rows));
    struct sim_market *m = malloc(sizeof(*m));
    if (rows == NULL || m == NULL) {
        free(rows);
        free(m);
        return NULL;
    }
    int k = 0;
    for (int64_t e = first; e <= p->epoch; e++) {
        int64_t tm = c->volatility > 0 ? e * L - phase : floor_min;
        if (tm < floor_min)
            tm = floor_min;
        sim_catalog_market_at(c, p, e, m);
        rows[k].minute = tm;
        row_from_market(&rows[k++], c, p, e, m);
        int64_t ds, de;
        if (c->volatility > 0 && sim_catalog_dip(c, p, e, &ds, &de, m) && ds <= p->keepa_min &&
            de > tm) {
            /* the cheap copy from ds (or the window's start) to de, then the epoch again */
            struct hist_row epoch_row = rows[k - 1];
            if (ds <= tm)
                k--; /* listed when the window starts: the copy is the first point */
            rows[k].minute = ds > tm ? ds : tm;
            row_from_market(&rows[k++], c, p, e, m);
            if (de <= p->keepa_min) {
                rows[k] = epoch_row;
                rows[k++].minute = de;
            }
        }
    }
    free(m);
    *n = k;
    return rows;
}

/* Whether series T has any value in the rows (else it is null). */
static int series_has_data(const struct hist_row *rows, int n, int t)
{
    for (int i = 0; i < n; i++)
        if (rows[i].v[t] >= 0)
            return 1;
    return 0;
}

static void csv_series(struct sim_buf *b, const struct hist_row *rows, int n, int t)
{
    int triple = is_triple(t);
    int64_t prev = INT64_MIN, prev_ship = INT64_MIN;
    sim_buf_putc(b, '[');
    for (int i = 0; i < n; i++) {
        int64_t v = rows[i].v[t], ship = rows[i].ship[t];
        if (v == prev && (!triple || ship == prev_ship))
            continue;
        prev = v;
        prev_ship = ship;
        sim_buf_int(b, rows[i].minute);
        sim_buf_putc(b, ',');
        sim_buf_int(b, v);
        sim_buf_putc(b, ',');
        if (triple) {
            sim_buf_int(b, v < 0 ? -1 : ship);
            sim_buf_putc(b, ',');
        }
    }
    sim_buf_uncomma(b);
    sim_buf_putc(b, ']');
}

static void int_array(struct sim_buf *b, const char *key, const int64_t *v, const int *vis, int n)
{
    sim_buf_key(b, key);
    sim_buf_putc(b, '[');
    for (int i = 0; i < n; i++) {
        if (i)
            sim_buf_putc(b, ',');
        sim_buf_int(b, vis[i] && v[i] >= 0 ? v[i] : -1);
    }
    sim_buf_puts(b, "],");
}

static void minmax_array(struct sim_buf *b, const char *key, const int64_t *v, const int *vis,
                         int64_t when)
{
    sim_buf_key(b, key);
    sim_buf_putc(b, '[');
    for (int i = 0; i < SIM_CSV_TYPES; i++) {
        if (i)
            sim_buf_putc(b, ',');
        if (!vis[i] || v[i] < 0) {
            sim_buf_puts(b, "null");
        } else {
            sim_buf_putc(b, '[');
            sim_buf_int(b, when);
            sim_buf_putc(b, ',');
            sim_buf_int(b, v[i]);
            sim_buf_putc(b, ']');
        }
    }
    sim_buf_puts(b, "],");
}

static void seller_of(const struct sim_catalog *c, const struct sim_offer *o, char sid[14])
{
    if (o->seller_idx < 0)
        strcpy(sid, SIM_AMAZON_SELLER);
    else
        sim_catalog_seller_id(c, o->seller_idx, sid);
}

static void seller_id_of(const struct sim_catalog *c, int64_t idx, char sid[14])
{
    if (idx == -2)
        sid[0] = '\0';
    else if (idx < 0)
        strcpy(sid, SIM_AMAZON_SELLER);
    else
        sim_catalog_seller_id(c, idx, sid);
}

/*
 * buyBoxSellerIdHistory ["time", "sellerId", ...] ("-1": nobody held it) and buyBoxUsedHistory
 * ["time", "sellerId", "condition", "isFBA", ...] ("": no Used offer qualified), a pair or a
 * quadruple each time the holder changed, read off the same rows as csv 18 and 32.
 */
static void render_buy_box_histories(struct sim_buf *b, const struct sim_catalog *c,
                                     const struct hist_row *rows, int n)
{
    char sid[14];
    sim_buf_puts(b, "\"buyBoxSellerIdHistory\":[");
    for (int i = 0; i < n; i++) {
        if (i > 0 && rows[i].bb_seller == rows[i - 1].bb_seller)
            continue;
        seller_id_of(c, rows[i].bb_seller, sid);
        sim_buf_printf(b, "\"%lld\",\"%s\",", (long long)rows[i].minute,
                       rows[i].bb_seller == -2 ? "-1" : sid);
    }
    sim_buf_uncomma(b);
    sim_buf_puts(b, "],\"buyBoxUsedHistory\":[");
    for (int i = 0; i < n; i++) {
        if (i > 0 && rows[i].bb_used_seller == rows[i - 1].bb_used_seller &&
            rows[i].bb_used_cond == rows[i - 1].bb_used_cond &&
            rows[i].bb_used_fba == rows[i - 1].bb_used_fba)
            continue;
        seller_id_of(c, rows[i].bb_used_seller, sid);
        sim_buf_printf(b, "\"%lld\",\"%s\",\"%d\",\"%d\",", (long long)rows[i].minute, sid,
                       rows[i].bb_used_cond, rows[i].bb_used_fba);
    }
    sim_buf_uncomma(b);
    sim_buf_puts(b, "],");
}

/* The Buy Box fields of stats (docs/keepa-api.md §7.3) for offer BB of P's market, or none. */
static void render_buy_box(struct sim_buf *b, const struct sim_catalog *c,
                           const struct sim_product *p)
{
    const struct sim_market *m = &p->mkt;
    if (m->bb < 0) { /* no offer qualifies for the Buy Box */
        sim_buf_puts(b,
                     "\"buyBoxPrice\":-1,\"buyBoxShipping\":-1,\"buyBoxIsUnqualified\":true,"
                     "\"buyBoxIsShippable\":null,\"buyBoxIsPreorder\":null,"
                     "\"buyBoxIsBackorder\":null,\"buyBoxIsFBA\":null,\"buyBoxIsAmazon\":null,"
                     "\"buyBoxIsMAP\":null,\"buyBoxIsUsed\":null,\"buyBoxIsPrimeExclusive\":null,"
                     "\"buyBoxIsFreeShippingEligible\":null,\"buyBoxIsPrimeEligible\":null,"
                     "\"buyBoxIsWarehouseDeal\":null,\"buyBoxSellerId\":null,"
                     "\"buyBoxCondition\":null,\"buyBoxAvailabilityMessage\":null,"
                     "\"buyBoxShippingCountry\":null,");
        sim_buf_printf(b, "\"lastBuyBoxUpdate\":%lld,\"buyBoxStats\":{},",
                       (long long)p->last_update);
    } else {
        const struct sim_offer *o = &m->offers[m->bb];
        char sid[14];
        seller_of(c, o, sid);
        sim_buf_printf(b,
                       "\"buyBoxPrice\":%lld,\"buyBoxShipping\":%lld,\"buyBoxIsUnqualified\":false,"
                       "\"buyBoxIsShippable\":true,\"buyBoxIsPreorder\":false,"
                       "\"buyBoxIsBackorder\":false,\"buyBoxIsFBA\":%s,\"buyBoxIsAmazon\":%s,"
                       "\"buyBoxIsMAP\":false,\"buyBoxIsUsed\":%s,"
                       "\"buyBoxIsPrimeExclusive\":false,\"buyBoxIsFreeShippingEligible\":%s,"
                       "\"buyBoxIsPrimeEligible\":%s,\"buyBoxIsWarehouseDeal\":false,"
                       "\"buyBoxSellerId\":\"%s\",\"buyBoxCondition\":%d,"
                       "\"buyBoxAvailabilityMessage\":\"IN_STOCK\","
                       "\"buyBoxShippingCountry\":null,\"lastBuyBoxUpdate\":%lld,",
                       (long long)o->price, (long long)o->ship, o->fba ? "true" : "false",
                       o->amazon ? "true" : "false", m->bb_is_used ? "true" : "false",
                       o->ship == 0 ? "true" : "false", o->prime ? "true" : "false", sid, o->cond,
                       (long long)p->last_update);
        /* buyBoxStats: the holder most of the time, the runner-up the rest */
        int won = 70 + (int)(ph(c, p, 6, 0) % 30);
        sim_buf_printf(b,
                       "\"buyBoxStats\":{\"%s\":{\"avgNewOfferCount\":%d,\"avgPrice\":%lld,"
                       "\"avgUsedOfferCount\":%d,\"isFBA\":%s,\"lastSeen\":%lld,"
                       "\"percentageWon\":%d.0}",
                       sid, m->n_new, (long long)(o->price + o->ship), m->n_used,
                       o->fba || o->amazon ? "true" : "false", (long long)p->last_update, won);
        for (int i = 0; i < m->n; i++) {
            const struct sim_offer *x = &m->offers[i];
            if (i == m->bb || !x->live || !x->bb_eligible || (x->cond == 1) != (o->cond == 1))
                continue;
            char xid[14];
            seller_of(c, x, xid);
            sim_buf_printf(b,
                           ",\"%s\":{\"avgNewOfferCount\":%d,\"avgPrice\":%lld,"
                           "\"avgUsedOfferCount\":%d,\"isFBA\":%s,\"lastSeen\":%lld,"
                           "\"percentageWon\":%d.0}",
                           xid, m->n_new, (long long)(x->price + x->ship), m->n_used,
                           x->fba || x->amazon ? "true" : "false",
                           (long long)(p->last_update - 1440), 100 - won);
            break;
        }
        sim_buf_puts(b, "},");
    }
    if (m->bb_used < 0) {
        sim_buf_puts(b, "\"buyBoxUsedPrice\":-1,\"buyBoxUsedShipping\":-1,"
                        "\"buyBoxUsedSellerId\":null,\"buyBoxUsedIsFBA\":null,"
                        "\"buyBoxUsedCondition\":null,\"buyBoxUsedStats\":null,");
        return;
    }
    const struct sim_offer *u = &m->offers[m->bb_used];
    char uid[14];
    seller_of(c, u, uid);
    sim_buf_printf(b,
                   "\"buyBoxUsedPrice\":%lld,\"buyBoxUsedShipping\":%lld,"
                   "\"buyBoxUsedSellerId\":\"%s\",\"buyBoxUsedIsFBA\":%s,"
                   "\"buyBoxUsedCondition\":%d,\"buyBoxUsedStats\":{\"%s\":{\"avgPrice\":%lld,"
                   "\"condition\":%d,\"isFBA\":%s,\"lastSeen\":%lld,\"percentageWon\":100.0}},",
                   (long long)u->price, (long long)u->ship, uid, u->fba ? "true" : "false", u->cond,
                   uid, (long long)(u->price + u->ship), u->cond, u->fba ? "true" : "false",
                   (long long)p->last_update);
}

static void render_stats(struct sim_buf *b, const struct sim_catalog *c,
                         const struct sim_product *p, const struct sim_product_req *r,
                         int offers_ok)
{
    const struct sim_market *mk = &p->mkt;
    int vis[SIM_CSV_TYPES], cvis[SIM_CSV_TYPES];
    int64_t cur[SIM_CSV_TYPES], mn[SIM_CSV_TYPES], mx[SIM_CSV_TYPES], oos[SIM_CSV_TYPES];
    for (int i = 0; i < SIM_CSV_TYPES; i++) {
        vis[i] = visible(p, r, i);
        cvis[i] = vis[i] && p->cur[i] >= 0;
        cur[i] = p->cur[i] >= 0 && is_triple(i) ? p->cur[i] + mk->ship[i] : p->cur[i];
        int64_t a = p->avg365[i], v = p->cur[i] >= 0 ? p->cur[i] : a;
        mn[i] = a > 0 && a * 6 / 10 < v ? a * 6 / 10 : v;
        mx[i] = a > 0 && a * 14 / 10 > v ? a * 14 / 10 : v;
        oos[i] = vis[i] ? 0 : -1;
    }
    oos[0] = p->has_amazon ? 10 : 100;
    int64_t days = r->stats_mode == SIM_STATS_DAYS ? r->stats_days
                                                   : (r->stats_to_ms - r->stats_from_ms) / 86400000;
    const int64_t *avg = days <= 30    ? p->avg30
                         : days <= 90  ? p->avg90
                         : days <= 180 ? p->avg180
                                       : p->avg365;
    int none[SIM_CSV_TYPES];
    memset(none, 0, sizeof(none));
    const int *ivis = days > 0 ? vis : none; /* stats=0: interval arrays all -1 (REC-CLI) */
    sim_buf_puts(b, "\"stats\":{");
    int_array(b, "current", cur, cvis, SIM_CSV_TYPES);
    int_array(b, "avg", avg, ivis, SIM_CSV_TYPES);
    int_array(b, "avg30", p->avg30, vis, SIM_CSV_TYPES);
    int_array(b, "avg90", p->avg90, vis, SIM_CSV_TYPES);
    int_array(b, "avg180", p->avg180, vis, SIM_CSV_TYPES);
    int_array(b, "avg365", p->avg365, vis, SIM_CSV_TYPES);
    int_array(b, "atIntervalStart", avg, ivis, SIM_CSV_TYPES);
    minmax_array(b, "min", mn, vis, p->tracking_since + 1440);
    minmax_array(b, "max", mx, vis, p->tracking_since + 2880);
    minmax_array(b, "minInInterval", mn, ivis, p->keepa_min - 1440 * (days > 1 ? days - 1 : 1));
    minmax_array(b, "maxInInterval", mx, ivis, p->keepa_min - 1440 * (days > 2 ? days - 2 : 1));
    sim_buf_puts(b, "\"isLowest\":[");
    for (int i = 0; i < SIM_CSV_TYPES; i++)
        sim_buf_puts(b, cvis[i] && p->cur[i] <= mn[i] ? "true," : "false,");
    sim_buf_uncomma(b);
    sim_buf_puts(b, "],\"isLowest90\":[");
    for (int i = 0; i < SIM_CSV_TYPES; i++)
        sim_buf_puts(b, cvis[i] && p->cur[i] <= mn[i] ? "true," : "false,");
    sim_buf_uncomma(b);
    sim_buf_puts(b, "],");
    int all[SIM_CSV_TYPES];
    for (int i = 0; i < SIM_CSV_TYPES; i++)
        all[i] = 1;
    int_array(b, "outOfStockPercentageInInterval", oos, all, SIM_CSV_TYPES);
    int_array(b, "outOfStockPercentage365", oos, all, SIM_CSV_TYPES);
    int_array(b, "outOfStockPercentage180", oos, all, SIM_CSV_TYPES);
    int_array(b, "outOfStockPercentage90", oos, all, SIM_CSV_TYPES);
    int_array(b, "outOfStockPercentage30", oos, all, SIM_CSV_TYPES);
    sim_buf_printf(b, "\"outOfStockCountAmazon30\":%d,\"outOfStockCountAmazon90\":%d,",
                   p->cur[0] > 0 ? 0 : 1, p->cur[0] > 0 ? 0 : 1);
    sim_buf_printf(b, "\"deltaPercent90_monthlySold\":%d,", p->monthly_sold > 0 ? -5 : 0);
    sim_buf_printf(b, "\"lastOffersUpdate\":%lld,", (long long)p->last_update);
    sim_buf_printf(b,
                   "\"salesRankDrops30\":%d,\"salesRankDrops90\":%d,\"salesRankDrops180\":%d,"
                   "\"salesRankDrops365\":%d,",
                   p->drops30, p->drops90, p->drops180, p->drops365);
    struct sim_lightning ld;
    if (sim_catalog_lightning(c, p->idx, p->keepa_min, &ld)) /* running or upcoming */
        sim_buf_printf(b, "\"totalOfferCount\":%d,\"lightningDealInfo\":[%lld,%lld],", mk->n_live,
                       (long long)ld.start, (long long)ld.end);
    else
        sim_buf_printf(b, "\"totalOfferCount\":%d,\"lightningDealInfo\":null,", mk->n_live);
    int with_offers = r->offers > 0 && offers_ok;
    if (with_offers) {
        int lowest[2] = {-1, -1}; /* the lowest third-party New FBA / FBM offers */
        for (int i = 0; i < mk->n; i++) {
            const struct sim_offer *o = &mk->offers[i];
            if (!o->live || o->cond != 1 || o->amazon)
                continue;
            int f = o->fba ? 0 : 1;
            if (lowest[f] < 0 ||
                o->price + o->ship < mk->offers[lowest[f]].price + mk->offers[lowest[f]].ship)
                lowest[f] = i;
        }
        const char *names[2] = {"sellerIdsLowestFBA", "sellerIdsLowestFBM"};
        for (int f = 0; f < 2; f++) {
            sim_buf_key(b, names[f]);
            if (lowest[f] >= 0) {
                char sid[14];
                seller_of(c, &mk->offers[lowest[f]], sid);
                sim_buf_putc(b, '[');
                sim_buf_str(b, sid);
                sim_buf_puts(b, "],");
            } else {
                sim_buf_puts(b, "null,");
            }
        }
        int retrieved = mk->n_live < r->offers ? mk->n_live : r->offers;
        sim_buf_printf(b, "\"offerCountFBA\":%d,\"offerCountFBM\":%d,\"retrievedOfferCount\":%d,",
                       mk->n_new_fba, mk->n_new_fbm, retrieved);
    } else {
        sim_buf_puts(b, "\"sellerIdsLowestFBA\":null,\"sellerIdsLowestFBM\":null,"
                        "\"offerCountFBA\":-2,\"offerCountFBM\":-2,\"retrievedOfferCount\":-2,");
    }
    sim_buf_puts(b, "\"tradeInPrice\":-2,");
    if (r->buybox || with_offers) {
        /* the saving against the list price Amazon shows next to the Buy Box */
        int64_t bbp = mk->bb >= 0 ? mk->offers[mk->bb].price : -1, list = p->cur[4];
        if (bbp > 0 && list > bbp)
            sim_buf_printf(b,
                           "\"buyBoxSavingBasis\":%lld,\"buyBoxSavingBasisType\":\"LIST_PRICE\","
                           "\"buyBoxSavingPercentage\":%lld,",
                           (long long)list, (long long)((list - bbp) * 100 / list));
        else
            sim_buf_puts(b, "\"buyBoxSavingBasis\":-1,\"buyBoxSavingBasisType\":null,"
                            "\"buyBoxSavingPercentage\":-1,");
        if (mk->bb >= 0)
            sim_buf_puts(b, mk->offers[mk->bb].fba || mk->offers[mk->bb].amazon
                                ? "\"buyBoxShippingTime\":[0,0],"
                                : "\"buyBoxShippingTime\":[24,72],");
        else
            sim_buf_puts(b, "\"buyBoxShippingTime\":null,");
        render_buy_box(b, c, p);
    } else {
        sim_buf_puts(b,
                     "\"buyBoxPrice\":-2,\"buyBoxShipping\":-2,\"buyBoxIsUnqualified\":null,"
                     "\"buyBoxIsShippable\":null,\"buyBoxIsPreorder\":null,"
                     "\"buyBoxIsBackorder\":null,\"buyBoxIsFBA\":null,\"buyBoxIsAmazon\":null,"
                     "\"buyBoxIsMAP\":null,\"buyBoxIsUsed\":null,\"buyBoxIsPrimeExclusive\":null,"
                     "\"buyBoxIsFreeShippingEligible\":null,\"buyBoxIsPrimeEligible\":null,"
                     "\"buyBoxIsWarehouseDeal\":null,\"buyBoxSellerId\":null,"
                     "\"buyBoxCondition\":null,\"buyBoxAvailabilityMessage\":null,"
                     "\"buyBoxShippingCountry\":null,\"lastBuyBoxUpdate\":null,"
                     "\"buyBoxUsedPrice\":-2,\"buyBoxUsedShipping\":-2,"
                     "\"buyBoxUsedSellerId\":null,\"buyBoxUsedIsFBA\":null,"
                     "\"buyBoxUsedCondition\":null,");
    }
    sim_buf_uncomma(b);
    sim_buf_puts(b, "},");
}

static int cmp_landed(const struct sim_offer *a, const struct sim_offer *b)
{
    int64_t x = a->price + a->ship, y = b->price + b->ship;
    return x < y ? -1 : x > y;
}

static void render_offers(struct sim_buf *b, const struct sim_catalog *c,
                          const struct sim_product *p, const struct sim_product_req *r)
{
    const struct sim_market *mk = &p->mkt;
    const struct sim_offer *all = mk->offers;
    int n_all = mk->n;
    /* Returned offers: up to r->offers live ones (cheapest first), then historical ones. */
    int order[SIM_MAX_OFFERS], n_live = 0;
    for (int i = 0; i < n_all; i++)
        if (all[i].live)
            order[n_live++] = i;
    for (int i = 1; i < n_live; i++) { /* insertion sort by landed price */
        int v = order[i], j = i - 1;
        while (j >= 0 && cmp_landed(&all[order[j]], &all[v]) > 0) {
            order[j + 1] = order[j];
            j--;
        }
        order[j + 1] = v;
    }
    if (n_live > r->offers)
        n_live = r->offers;
    int ret[SIM_MAX_OFFERS], n_ret = 0;
    for (int i = 0; i < n_all; i++) { /* keep catalog order (stable offer positions) */
        int keep = 0;
        for (int j = 0; j < n_live; j++)
            keep |= order[j] == i;
        if (keep || (!all[i].live && !r->only_live_offers))
            ret[n_ret++] = i;
    }
    sim_buf_puts(b, "\"offers\":[");
    for (int k = 0; k < n_ret; k++) {
        const struct sim_offer *o = &all[ret[k]];
        char sid[14];
        seller_of(c, o, sid);
        sim_buf_printf(b, "{\"lastSeen\":%lld,\"sellerId\":\"%s\",\"offerCSV\":[",
                       (long long)o->last_seen, sid);
        int64_t t0 = o->last_seen - 2880;
        sim_buf_printf(b, "%lld,%lld,%lld,%lld,%lld,%lld", (long long)t0,
                       (long long)(o->price + o->price / 20), (long long)o->ship,
                       (long long)o->last_seen, (long long)o->price, (long long)o->ship);
        sim_buf_printf(b,
                       "],\"condition\":%d,\"conditionComment\":%s,\"isPrime\":%s,"
                       "\"isMAP\":false,\"isShippable\":true,\"isAddonItem\":false,"
                       "\"isPreorder\":false,\"isWarehouseDeal\":false,\"isScam\":false,"
                       "\"isAmazon\":%s,\"isPrimeExcl\":false,\"offerId\":%d,\"isFBA\":%s,"
                       "\"shipsFromChina\":false,\"minOrderQty\":0,\"couponHistory\":null,"
                       "\"lastStockUpdate\":%lld",
                       o->cond,
                       o->cond >= 2 && o->cond <= 5 ? "\"Ships fast. Good condition.\"" : "null",
                       o->prime ? "true" : "false", o->amazon ? "true" : "false", o->offer_id,
                       o->fba ? "true" : "false", (long long)(o->live ? p->last_update : 0));
        if (r->stock)
            sim_buf_printf(b, ",\"stockCSV\":[%lld,%d]", (long long)o->last_seen,
                           1 + (int)(ph(c, p, 5, (uint64_t)o->offer_id) % 30));
        sim_buf_puts(b, "},");
    }
    sim_buf_uncomma(b);
    sim_buf_puts(b, "],\"liveOffersOrder\":[");
    for (int j = 0; j < n_live; j++) {
        for (int k = 0; k < n_ret; k++)
            if (ret[k] == order[j]) {
                sim_buf_int(b, k);
                sim_buf_putc(b, ',');
            }
    }
    sim_buf_uncomma(b);
    sim_buf_puts(b, "],");
}

/*
 * The product's page fields the recorded bodies carry, which the catalog does not model beyond
 * their shape: the display group of the root, a URL slug, item and page counts, the review
 * counts, and null for the content (A+, features, ingredients, videos, deals, ...) as Keepa
 * sends null for a product without it. With history, couponHistory and parentAsinHistory.
 */
static void render_content_fields(struct sim_buf *b, const struct sim_catalog *c,
                                  const struct sim_product *p, const struct sim_product_req *r)
{
    struct sim_category root;
    if (sim_catalog_category(c, p->root_cat, &root) != 0)
        snprintf(root.display_group, sizeof(root.display_group), "%s", "");
    sim_buf_puts(b, "\"websiteDisplayGroup\":");
    sim_buf_str(b, root.display_group);
    sim_buf_puts(b, ",\"websiteDisplayGroupName\":");
    sim_buf_str(b, p->root_name);
    char title[160], slug[96];
    sim_catalog_title(c, p->idx, title, sizeof(title));
    size_t k = 0;
    for (const char *q = title; *q && k + 1 < sizeof(slug); q++) /* "Vintage-Tent-Paperback" */
        if ((*q >= 'A' && *q <= 'Z') || (*q >= 'a' && *q <= 'z') || (*q >= '0' && *q <= '9'))
            slug[k++] = *q;
        else if (k > 0 && slug[k - 1] != '-')
            slug[k++] = '-';
    while (k > 0 && slug[k - 1] == '-')
        k--;
    slug[k] = '\0';
    sim_buf_puts(b, ",\"urlSlug\":");
    sim_buf_str(b, slug);
    int books = p->root_cat == 283155;
    sim_buf_printf(b,
                   ",\"numberOfItems\":1,\"numberOfPages\":%d,\"competitivePriceThreshold\":%lld,"
                   "\"reviews\":{\"lastUpdate\":%lld,\"ratingCount\":[%lld,%d],"
                   "\"reviewCount\":[%lld,%d]},",
                   books ? 96 + (int)(p->idx % 400) : -1,
                   (long long)(p->cur[18] > 0 ? p->cur[18] + p->mkt.ship[18] : -1),
                   (long long)p->last_update, (long long)p->tracking_since,
                   p->reviews + p->reviews / 4, (long long)p->tracking_since, p->reviews);
    static const char *const NULLS[] = {"aPlus",
                                        "activeIngredients",
                                        "brandStoreName",
                                        "brandStoreUrl",
                                        "brandStoreUrlName",
                                        "deals",
                                        "description",
                                        "ebayListingIds",
                                        "features",
                                        "frequentlyBoughtTogether",
                                        "g",
                                        "includedComponents",
                                        "ingredients",
                                        "itemForm",
                                        "itemTypeKeyword",
                                        "languages",
                                        "primeDealEndTime",
                                        "productBenefit",
                                        "recommendedUsesForProduct",
                                        "safetyWarning",
                                        "scent",
                                        "specialIngredients",
                                        "targetAudienceKeyword",
                                        "unitCount",
                                        "videos"};
    for (size_t i = 0; i < sizeof(NULLS) / sizeof(NULLS[0]); i++)
        sim_buf_printf(b, "\"%s\":null,", NULLS[i]);
    if (r->history)
        sim_buf_puts(b, "\"couponHistory\":null,\"parentAsinHistory\":null,");
}

/* hazardousMaterials of a hazmat product (Keepa sends null for the others). */
static void render_hazmat(struct sim_buf *b, int kind)
{
    static const char *const classes[4][2] = {{NULL, NULL},
                                              {"Lithium Ion Batteries", "UN3481"},
                                              {"Aerosols", "UN1950"},
                                              {"Flammable Liquid", "UN1993"}};
    if (kind <= 0 || kind > 3) {
        sim_buf_puts(b, "\"hazardousMaterials\":null,");
        return;
    }
    sim_buf_printf(b,
                   "\"hazardousMaterials\":[{\"aspect\":\"hazmat_type\",\"value\":\"%s\"},"
                   "{\"aspect\":\"un_number\",\"value\":\"%s\"}],",
                   classes[kind][0], classes[kind][1]);
}

void sim_render_product(struct sim_buf *b, const struct sim_catalog *c, const struct sim_product *p,
                        const struct sim_product_opts *o)
{
    const struct sim_product_req *r = o->req;
    char title[160], ean[14], parent[11];
    sim_catalog_title(c, p->idx, title, sizeof(title));
    sim_product_ean(p->idx, ean);
    struct hist_row *rows = NULL;
    int n_rows = 0;
    if (r->history) {
        int64_t window = r->days > 0 ? p->keepa_min - r->days * 1440 : INT64_MIN / 2;
        rows = history_rows(c, p, window, &n_rows);
        if (rows == NULL) {
            b->oom = 1;
            return;
        }
    }
    sim_buf_puts(b, "{\"csv\":");
    if (!r->history) {
        sim_buf_puts(b, "null");
    } else {
        sim_buf_putc(b, '[');
        for (int i = 0; i < SIM_CSV_TYPES; i++) {
            if (i)
                sim_buf_putc(b, ',');
            if (visible(p, r, i) && series_has_data(rows, n_rows, i))
                csv_series(b, rows, n_rows, i);
            else
                sim_buf_puts(b, "null");
        }
        sim_buf_putc(b, ']');
    }
    int books = p->root_cat == 283155;
    sim_buf_printf(b, ",\"asin\":\"%s\",\"domainId\":1,\"productType\":0,\"title\":", p->asin);
    sim_buf_str(b, title);
    sim_buf_printf(b,
                   ",\"trackingSince\":%lld,\"listedSince\":%lld,\"lastUpdate\":%lld,"
                   "\"lastRatingUpdate\":%lld,\"lastPriceChange\":%lld,\"lastSoldUpdate\":%lld,",
                   (long long)p->tracking_since, (long long)p->listed_since,
                   (long long)p->last_update, (long long)p->last_update, (long long)p->epoch_start,
                   (long long)p->last_update);
    sim_buf_printf(b, "\"rootCategory\":%lld,\"categories\":[%lld],\"categoryTree\":[",
                   (long long)p->root_cat, (long long)p->cats[1]);
    const int64_t tree[3] = {p->root_cat, p->cats[0], p->cats[1]};
    for (int k = 0; k < 3; k++) {
        struct sim_category cat;
        if (sim_catalog_category(c, tree[k], &cat) != 0)
            snprintf(cat.name, sizeof(cat.name), "%s", k == 0 ? p->root_name : p->cat_name);
        sim_buf_printf(b, "%s{\"catId\":%lld,\"name\":", k ? "," : "", (long long)tree[k]);
        sim_buf_str(b, cat.name);
        sim_buf_putc(b, '}');
    }
    sim_buf_puts(b, "],\"parentAsin\":");
    if (p->parent_idx >= 0) {
        sim_catalog_asin(c, p->parent_idx, parent);
        sim_buf_str(b, parent);
    } else {
        sim_buf_puts(b, "null");
    }
    struct sim_texts tx;
    sim_catalog_texts(c, p, &tx);
    sim_buf_puts(b, ",\"variations\":null,\"manufacturer\":");
    sim_buf_str(b, tx.manufacturer);
    sim_buf_puts(b, ",\"brand\":");
    sim_buf_str(b, tx.brand);
    const char *texts[3][2] = {
        {"author", tx.author}, {"binding", tx.binding}, {"productGroup", tx.product_group}};
    for (int k = 0; k < 3; k++) {
        sim_buf_printf(b, ",\"%s\":", texts[k][0]);
        if (texts[k][1][0])
            sim_buf_str(b, texts[k][1]);
        else
            sim_buf_puts(b, "null");
    }
    sim_buf_puts(b, ",\"partNumber\":null,\"model\":null,\"color\":null,\"size\":null,"
                    "\"edition\":null,\"format\":null,");
    sim_buf_printf(b, "\"publicationDate\":%d,\"releaseDate\":0,",
                   books ? 20200101 + (int)(p->idx % 28) : 0);
    if (p->idx < c->products) /* a synthetic product has no code the catalog resolves */
        sim_buf_printf(b, "\"eanList\":[\"%s\"],\"upcList\":[\"%s\"],", ean, ean + 1);
    else
        sim_buf_puts(b, "\"eanList\":null,\"upcList\":null,");
    sim_buf_printf(b, "\"images\":[{\"m\":\"41Sim%06lldL.jpg\",\"mH\":500,\"mW\":500}],",
                   (long long)(p->idx % 1000000));
    sim_buf_printf(b,
                   "\"packageHeight\":%d,\"packageLength\":%d,\"packageWidth\":%d,"
                   "\"packageWeight\":%d,\"packageQuantity\":1,\"itemHeight\":0,\"itemLength\":0,"
                   "\"itemWidth\":0,\"itemWeight\":0,\"availabilityAmazon\":%d,",
                   p->height_mm, p->length_mm, p->width_mm, p->weight_g, p->availability_amazon);
    const int *el = p->mkt.eligible;
    sim_buf_printf(b, "\"buyBoxEligibleOfferCounts\":[%d,%d,%d,%d,0,0,0,0],", el[0], el[1], el[2],
                   el[3]);
    if (p->fba_fee_cents >= 0)
        sim_buf_printf(b, "\"fbaFees\":{\"lastUpdate\":%lld,\"pickAndPackFee\":%d},",
                       (long long)(p->keepa_min - 10080), p->fba_fee_cents);
    else
        sim_buf_puts(b, "\"fbaFees\":null,");
    if (p->referral_bp % 100 == 0)
        sim_buf_printf(b, "\"referralFeePercent\":%d,\"referralFeePercentage\":%d.0,",
                       p->referral_pct, p->referral_bp / 100);
    else
        sim_buf_printf(b, "\"referralFeePercent\":%d,\"referralFeePercentage\":%d.%02d,",
                       p->referral_pct, p->referral_bp / 100, p->referral_bp % 100);
    if (p->closing_fee_cents >= 0)
        sim_buf_printf(b, "\"variableClosingFee\":%d,", p->closing_fee_cents);
    sim_buf_printf(b, "\"monthlySold\":%d,", p->monthly_sold);
    if (r->history) {
        sim_buf_printf(b, "\"monthlySoldHistory\":[%lld,%d],", (long long)(p->keepa_min - 43200),
                       p->monthly_sold);
        sim_buf_printf(b, "\"salesRankReference\":%lld,\"salesRankReferenceHistory\":[%lld,%lld],",
                       (long long)(p->has_rank ? p->root_cat : -1), (long long)p->tracking_since,
                       (long long)(p->has_rank ? p->root_cat : -1));
        if (p->has_rank && series_has_data(rows, n_rows, 3)) {
            sim_buf_printf(b, "\"salesRanks\":{\"%lld\":", (long long)p->cats[0]);
            csv_series(b, rows, n_rows, 3);
            sim_buf_puts(b, "},");
        } else {
            sim_buf_puts(b, "\"salesRanks\":null,");
        }
    } else {
        sim_buf_printf(b, "\"salesRankReference\":%lld,",
                       (long long)(p->has_rank ? p->root_cat : -1));
    }
    sim_buf_printf(b,
                   "\"salesRankDisplayGroup\":\"sim_display_on_website\",\"type\":\"%s\","
                   "\"hasReviews\":%s,\"isAdultProduct\":%s,\"isRedirectASIN\":false,"
                   "\"isSNS\":false,\"isEligibleForTradeIn\":false,"
                   "\"isEligibleForSuperSaverShipping\":true,\"isHeatSensitive\":%s,",
                   tx.type, p->reviews > 0 ? "true" : "false", p->adult ? "true" : "false",
                   p->heat_sensitive ? "true" : "false");
    render_hazmat(b, p->hazmat);
    sim_buf_puts(b,
                 "\"launchpad\":false,\"lastEbayUpdate\":0,\"coupon\":null,\"promotions\":null,");
    render_content_fields(b, c, p, r);

    int with_offers = r->offers > 0 && !o->offers_failed;
    sim_buf_printf(b, "\"offersSuccessful\":%s,", with_offers ? "true" : "false");
    if (with_offers)
        render_offers(b, c, p, r);
    else
        sim_buf_puts(b, "\"liveOffersOrder\":null,");
    if (r->history && (r->buybox || with_offers))
        render_buy_box_histories(b, c, rows, n_rows);
    else
        sim_buf_puts(b, "\"buyBoxSellerIdHistory\":null,\"buyBoxUsedHistory\":null,");
    free(rows);
    if (r->stats_mode != SIM_STATS_NONE)
        render_stats(b, c, p, r, with_offers);
    sim_buf_uncomma(b);
    sim_buf_putc(b, '}');
}

void sim_render_deal(struct sim_buf *b, const struct sim_catalog *c, const struct sim_product *p,
                     int64_t creation)
{
    char title[160];
    sim_catalog_title(c, p->idx, title, sizeof(title));
    int64_t row[SIM_DEAL_TYPES];
    sim_buf_puts(b, "{\"flags\":null,\"delta\":[");
    for (int r = 0; r < SIM_DEAL_RANGES; r++) {
        for (int i = 0; i < SIM_DEAL_TYPES; i++) {
            int64_t a = p->avg_dr[r][i], v = p->cur[i];
            row[i] = a > 0 && v > 0 ? a - v : 0;
        }
        sim_buf_puts(b, r > 0 ? ",[" : "[");
        sim_buf_ints(b, row, SIM_DEAL_TYPES);
        sim_buf_putc(b, ']');
    }
    sim_buf_puts(b, "],\"deltaPercent\":[");
    for (int r = 0; r < SIM_DEAL_RANGES; r++) {
        for (int i = 0; i < SIM_DEAL_TYPES; i++) {
            int64_t a = p->avg_dr[r][i], v = p->cur[i];
            row[i] = a > 0 && v > 0 ? (a - v) * 100 / a : 0;
        }
        sim_buf_puts(b, r > 0 ? ",[" : "[");
        sim_buf_ints(b, row, SIM_DEAL_TYPES);
        sim_buf_putc(b, ']');
    }
    sim_buf_puts(b, "],\"deltaLast\":[");
    for (int i = 0; i < SIM_DEAL_TYPES; i++)
        row[i] = p->cur[i] > 0 && p->last[i] > 0 ? p->last[i] - p->cur[i] : 0;
    sim_buf_ints(b, row, SIM_DEAL_TYPES);
    sim_buf_puts(b, "],\"avg\":[");
    for (int r = 0; r < SIM_DEAL_RANGES; r++) {
        for (int i = 0; i < SIM_DEAL_TYPES; i++)
            row[i] = p->avg_dr[r][i];
        sim_buf_puts(b, r > 0 ? ",[" : "[");
        sim_buf_ints(b, row, SIM_DEAL_TYPES);
        sim_buf_putc(b, ']');
    }
    sim_buf_puts(b, "],\"current\":[");
    for (int i = 0; i < SIM_DEAL_TYPES; i++)
        row[i] = p->cur[i];
    sim_buf_ints(b, row, SIM_DEAL_TYPES);
    sim_buf_printf(b, "],\"rootCat\":%lld,\"creationDate\":%lld,\"image\":[",
                   (long long)p->root_cat, (long long)creation);
    char img[24];
    snprintf(img, sizeof(img), "41S%07lldL.jpg", (long long)(p->idx % 10000000));
    for (const char *q = img; *q; q++) {
        sim_buf_int(b, (unsigned char)*q);
        if (q[1])
            sim_buf_putc(b, ',');
    }
    sim_buf_puts(b, "],\"title\":");
    sim_buf_str(b, title);
    sim_buf_printf(b, ",\"categories\":[%lld,%lld],\"asin\":\"%s\",\"lastUpdate\":%lld,",
                   (long long)p->cats[0], (long long)p->cats[1], p->asin,
                   (long long)p->last_update);
    struct sim_lightning ld;
    int has_ld = sim_catalog_lightning(c, p->idx, p->keepa_min, &ld);
    sim_buf_printf(b,
                   "\"lightningEnd\":%lld,\"salesRankDrops30\":%d,\"salesRankDrops90\":%d,"
                   "\"salesRankDrops180\":%d,\"salesRankDrops365\":%d,\"backInStock\":[",
                   (long long)(has_ld ? ld.end : 0), p->drops30, p->drops90, p->drops180,
                   p->drops365);
    for (int i = 0; i < SIM_DEAL_TYPES; i++)
        sim_buf_puts(b, i + 1 < SIM_DEAL_TYPES ? "false," : "false");
    sim_buf_printf(b,
                   "],\"dateIntervalIndex\":0,\"lightningStart\":%lld,\"warehouseCondition\":0,"
                   "\"warehouseConditionComment\":null,\"currentSince\":[",
                   (long long)(has_ld ? ld.start : 0));
    for (int i = 0; i < SIM_DEAL_TYPES; i++)
        row[i] = p->since[i];
    sim_buf_ints(b, row, SIM_DEAL_TYPES);
    sim_buf_puts(b, "]}");
}
