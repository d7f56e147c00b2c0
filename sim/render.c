/*
 * render.c: Keepa-shaped JSON (see render.h).
 *
 * History points are one per price epoch (at most HISTORY_MAX per series), at the epoch's
 * start minute, with repeated values collapsed as Keepa does. Offers are derived from the
 * product so that the cheapest live used offer equals csv USED current and the cheapest new
 * offer equals NEW current.
 */
#include "sim/render.h"

#include <stdio.h>
#include <string.h>

#define HISTORY_MAX 300
#define FBM_SHIP    399

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

int sim_offers_build(const struct sim_catalog *c, const struct sim_product *p,
                     struct sim_offer *out)
{
    int n = 0, id = 0;
    int64_t t = p->keepa_min;
    if (p->has_amazon) {
        out[n++] = (struct sim_offer){p->cur[0], 0, 1, 1, 1, 1, -1, t, id++};
    }
    for (int j = 0; j < p->n_new_offers; j++) {
        uint64_t h = ph(c, p, 1, (uint64_t)j);
        int fba = (h & 1) != 0;
        int64_t price = j == 0 ? p->cur[1] : p->cur[1] + p->cur[1] * (4 * j + (int)(h % 4)) / 100;
        out[n++] = (struct sim_offer){
            price, fba ? 0 : FBM_SHIP, 1, fba, 0, 1, (int64_t)((h >> 8) % SIM_SELLERS), t, id++};
    }
    static const int used_cond[4] = {4, 3, 2, 5};
    static const int used_type[4] = {21, 20, 19, 22};
    for (int j = 0; j < p->n_used_offers; j++) {
        uint64_t h = ph(c, p, 2, (uint64_t)j);
        int cond, fba = (h & 1) != 0;
        int64_t price, ship;
        if (j < 4) {
            cond = used_cond[j];
            price = p->cur[used_type[j]];
            ship = 0;
        } else {
            cond = 2 + (int)((h >> 4) % 4);
            price = p->cur[2] + p->cur[2] * (20 + 5 * j) / 100;
            ship = fba ? 0 : FBM_SHIP;
        }
        out[n++] = (struct sim_offer){
            price, ship, cond, fba, 0, 1, (int64_t)((h >> 8) % SIM_SELLERS), t, id++};
    }
    for (int j = 0; j < p->n_hist_offers && n < SIM_MAX_OFFERS; j++) {
        uint64_t h = ph(c, p, 3, (uint64_t)j);
        int cond = 1 + (int)(h % 5);
        int64_t base = cond == 1 ? p->base_new_cents : p->base_used_cents;
        out[n++] = (struct sim_offer){base + base * (int64_t)((h >> 8) % 30) / 100,
                                      (h >> 16) & 1 ? 0 : FBM_SHIP,
                                      cond,
                                      (int)((h >> 20) & 1),
                                      0,
                                      0,
                                      (int64_t)((h >> 24) % SIM_SELLERS),
                                      t - 1440 - (int64_t)((h >> 40) % 40000),
                                      id++};
    }
    return n;
}

int sim_offer_pages(const struct sim_catalog *c, const struct sim_product *p, int n)
{
    (void)c;
    int live = p->has_amazon + p->n_new_offers + p->n_used_offers;
    if (live > n)
        live = n;
    return (live + 9) / 10;
}

/* Which csv types this request shows. */
static int visible(const struct sim_product *p, const struct sim_product_req *r, int t)
{
    int offers = r->offers > 0;
    switch (t) {
    case 0:
        return p->has_amazon;
    case 1:
    case 3:
    case 4:
    case 11:
    case 34:
    case 35:
        return 1;
    case 2:
    case 12:
        return p->has_used || t == 12;
    case 16:
    case 17:
        return r->rating;
    case 18:
        return offers || r->buybox;
    case 7:
    case 10:
        return offers;
    case 19:
    case 20:
    case 21:
    case 22:
    case 32:
        return offers && p->has_used;
    default:
        return 0;
    }
}

static int is_triple(int t)
{
    return t == 7 || (t >= 18 && t <= 29) || t == 32;
}

static int64_t ship_of(int t)
{
    return t == 7 ? FBM_SHIP : 0;
}

static void csv_series(struct sim_buf *b, const struct sim_catalog *c, const struct sim_product *p,
                       int t, int64_t window_start)
{
    int64_t L = c->epoch_len_min;
    int64_t phase = p->epoch * L - p->epoch_start;
    int triple = is_triple(t);
    sim_buf_putc(b, '[');
    if (c->volatility <= 0) {
        sim_buf_int(b, p->tracking_since > window_start ? p->tracking_since : window_start);
        sim_buf_putc(b, ',');
        sim_buf_int(b, p->cur[t]);
        if (triple) {
            sim_buf_putc(b, ',');
            sim_buf_int(b, ship_of(t));
        }
        sim_buf_putc(b, ']');
        return;
    }
    int64_t first = p->epoch - (HISTORY_MAX - 1);
    int64_t floor_min = window_start > p->tracking_since ? window_start : p->tracking_since;
    int64_t kmin = (floor_min + phase) / L;
    if (first < kmin)
        first = kmin;
    if (first > p->epoch)
        first = p->epoch;
    int64_t prev = INT64_MIN;
    for (int64_t k = first; k <= p->epoch; k++) {
        int64_t v = k == p->epoch ? p->cur[t] : sim_catalog_value_at(c, p, t, k);
        if (v == prev)
            continue;
        prev = v;
        int64_t tm = k * L - phase;
        if (tm < floor_min)
            tm = floor_min;
        sim_buf_int(b, tm);
        sim_buf_putc(b, ',');
        sim_buf_int(b, v);
        sim_buf_putc(b, ',');
        if (triple) {
            sim_buf_int(b, ship_of(t));
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
        sim_buf_int(b, vis[i] ? v[i] : -1);
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

static void render_stats(struct sim_buf *b, const struct sim_catalog *c,
                         const struct sim_product *p, const struct sim_product_req *r,
                         const struct sim_offer *offers, int n_offers, int offers_ok)
{
    int vis[SIM_CSV_TYPES];
    int64_t cur[SIM_CSV_TYPES], mn[SIM_CSV_TYPES], mx[SIM_CSV_TYPES], oos[SIM_CSV_TYPES];
    for (int i = 0; i < SIM_CSV_TYPES; i++) {
        vis[i] = visible(p, r, i) && p->cur[i] >= 0;
        cur[i] = p->cur[i] >= 0 && is_triple(i) ? p->cur[i] + ship_of(i) : p->cur[i];
        int64_t a = p->avg365[i];
        mn[i] = a > 0 && a * 6 / 10 < p->cur[i] ? a * 6 / 10 : p->cur[i];
        mx[i] = a > 0 && a * 14 / 10 > p->cur[i] ? a * 14 / 10 : p->cur[i];
        oos[i] = vis[i] ? 0 : -1;
    }
    if (!p->has_amazon)
        oos[0] = 100;
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
    int_array(b, "current", cur, vis, SIM_CSV_TYPES);
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
        sim_buf_puts(b, vis[i] && p->cur[i] <= mn[i] ? "true," : "false,");
    sim_buf_uncomma(b);
    sim_buf_puts(b, "],\"isLowest90\":[");
    for (int i = 0; i < SIM_CSV_TYPES; i++)
        sim_buf_puts(b, vis[i] && p->cur[i] <= mn[i] ? "true," : "false,");
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
                   p->has_amazon ? 0 : 1, p->has_amazon ? 0 : 1);
    sim_buf_printf(b, "\"deltaPercent90_monthlySold\":%d,", p->monthly_sold > 0 ? -5 : 0);
    sim_buf_printf(b, "\"lastOffersUpdate\":%lld,", (long long)p->last_update);
    sim_buf_printf(b,
                   "\"salesRankDrops30\":%d,\"salesRankDrops90\":%d,\"salesRankDrops180\":%d,"
                   "\"salesRankDrops365\":%d,",
                   p->drops30, p->drops90, p->drops180, p->drops365);
    sim_buf_printf(b, "\"totalOfferCount\":%d,\"lightningDealInfo\":null,",
                   p->has_amazon + p->n_new_offers + p->n_used_offers);
    int with_offers = r->offers > 0 && offers_ok;
    int fba = 0, fbm = 0, retrieved = 0;
    char lowest_fba[14] = "", lowest_fbm[14] = "";
    int64_t best_fba = INT64_MAX, best_fbm = INT64_MAX;
    for (int i = 0; i < n_offers; i++) {
        if (!offers[i].live || offers[i].cond != 1)
            continue;
        if (offers[i].fba) {
            fba++;
            if (offers[i].price < best_fba && offers[i].seller_idx >= 0) {
                best_fba = offers[i].price;
                sim_catalog_seller_id(c, offers[i].seller_idx, lowest_fba);
            }
        } else {
            fbm++;
            if (offers[i].price + offers[i].ship < best_fbm && offers[i].seller_idx >= 0) {
                best_fbm = offers[i].price + offers[i].ship;
                sim_catalog_seller_id(c, offers[i].seller_idx, lowest_fbm);
            }
        }
    }
    for (int i = 0; i < n_offers; i++)
        retrieved += offers[i].live;
    if (retrieved > r->offers)
        retrieved = r->offers;
    if (with_offers) {
        sim_buf_puts(b, "\"sellerIdsLowestFBA\":");
        if (lowest_fba[0]) {
            sim_buf_putc(b, '[');
            sim_buf_str(b, lowest_fba);
            sim_buf_puts(b, "],");
        } else {
            sim_buf_puts(b, "null,");
        }
        sim_buf_puts(b, "\"sellerIdsLowestFBM\":");
        if (lowest_fbm[0]) {
            sim_buf_putc(b, '[');
            sim_buf_str(b, lowest_fbm);
            sim_buf_puts(b, "],");
        } else {
            sim_buf_puts(b, "null,");
        }
        sim_buf_printf(b, "\"offerCountFBA\":%d,\"offerCountFBM\":%d,\"retrievedOfferCount\":%d,",
                       fba, fbm, retrieved);
    } else {
        sim_buf_puts(b, "\"sellerIdsLowestFBA\":null,\"sellerIdsLowestFBM\":null,"
                        "\"offerCountFBA\":-2,\"offerCountFBM\":-2,\"retrievedOfferCount\":-2,");
    }
    sim_buf_puts(b, "\"tradeInPrice\":-2,");
    int bb = r->buybox || with_offers;
    if (bb) {
        int bb_amz = p->has_amazon;
        char sid[14];
        if (bb_amz)
            strcpy(sid, SIM_AMAZON_SELLER);
        else
            sim_catalog_seller_id(c, (int64_t)(ph(c, p, 4, 0) % SIM_SELLERS), sid);
        sim_buf_printf(b,
                       "\"buyBoxPrice\":%lld,\"buyBoxShipping\":0,\"buyBoxIsUnqualified\":false,"
                       "\"buyBoxIsShippable\":true,\"buyBoxIsPreorder\":false,"
                       "\"buyBoxIsBackorder\":false,\"buyBoxIsFBA\":true,\"buyBoxIsAmazon\":%s,"
                       "\"buyBoxIsMAP\":false,\"buyBoxIsUsed\":false,"
                       "\"buyBoxIsPrimeExclusive\":false,\"buyBoxIsFreeShippingEligible\":true,"
                       "\"buyBoxIsPrimeEligible\":true,\"buyBoxIsWarehouseDeal\":false,"
                       "\"buyBoxSellerId\":\"%s\",\"buyBoxCondition\":1,"
                       "\"buyBoxAvailabilityMessage\":\"In Stock\","
                       "\"buyBoxShippingCountry\":null,\"lastBuyBoxUpdate\":%lld,",
                       (long long)p->cur[18], bb_amz ? "true" : "false", sid,
                       (long long)p->last_update);
        sim_buf_printf(b,
                       "\"buyBoxStats\":{\"%s\":{\"avgNewOfferCount\":%d,\"avgPrice\":%lld,"
                       "\"avgUsedOfferCount\":-1,\"isFBA\":true,\"lastSeen\":%lld,"
                       "\"percentageWon\":100.0}},",
                       sid, p->n_new_offers, (long long)p->avg90[18], (long long)p->last_update);
    } else {
        sim_buf_puts(b,
                     "\"buyBoxPrice\":-2,\"buyBoxShipping\":-2,\"buyBoxIsUnqualified\":null,"
                     "\"buyBoxIsShippable\":null,\"buyBoxIsPreorder\":null,"
                     "\"buyBoxIsBackorder\":null,\"buyBoxIsFBA\":null,\"buyBoxIsAmazon\":null,"
                     "\"buyBoxIsMAP\":null,\"buyBoxIsUsed\":null,\"buyBoxIsPrimeExclusive\":null,"
                     "\"buyBoxIsFreeShippingEligible\":null,\"buyBoxIsPrimeEligible\":null,"
                     "\"buyBoxIsWarehouseDeal\":null,\"buyBoxSellerId\":null,"
                     "\"buyBoxCondition\":null,\"buyBoxAvailabilityMessage\":null,"
                     "\"buyBoxShippingCountry\":null,\"lastBuyBoxUpdate\":null,");
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
                          const struct sim_product *p, const struct sim_product_req *r,
                          const struct sim_offer *all, int n_all)
{
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
        if (o->seller_idx < 0)
            strcpy(sid, SIM_AMAZON_SELLER);
        else
            sim_catalog_seller_id(c, o->seller_idx, sid);
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
                       o->fba ? "true" : "false", o->amazon ? "true" : "false", o->offer_id,
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

void sim_render_product(struct sim_buf *b, const struct sim_catalog *c, const struct sim_product *p,
                        const struct sim_product_opts *o)
{
    const struct sim_product_req *r = o->req;
    char title[160], ean[14], parent[11];
    sim_catalog_title(c, p->idx, title, sizeof(title));
    sim_product_ean(p->idx, ean);
    sim_buf_puts(b, "{\"csv\":");
    if (!r->history) {
        sim_buf_puts(b, "null");
    } else {
        int64_t window = r->days > 0 ? p->keepa_min - r->days * 1440 : INT64_MIN / 2;
        sim_buf_putc(b, '[');
        for (int i = 0; i < SIM_CSV_TYPES; i++) {
            if (i)
                sim_buf_putc(b, ',');
            if (visible(p, r, i) && p->cur[i] >= 0)
                csv_series(b, c, p, i, window);
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
                   (long long)p->root_cat, (long long)p->cats[0]);
    sim_buf_printf(b, "{\"catId\":%lld,\"name\":", (long long)p->root_cat);
    sim_buf_str(b, p->root_name);
    sim_buf_printf(b, "},{\"catId\":%lld,\"name\":", (long long)p->cats[0]);
    sim_buf_str(b, p->cat_name);
    sim_buf_puts(b, "}],\"parentAsin\":");
    if (p->parent_idx >= 0) {
        sim_catalog_asin(c, p->parent_idx, parent);
        sim_buf_str(b, parent);
    } else {
        sim_buf_puts(b, "null");
    }
    sim_buf_printf(b,
                   ",\"variations\":null,\"manufacturer\":\"SimWorks %d\",\"brand\":\"SimBrand "
                   "%d\",\"author\":%s,\"binding\":%s,\"productGroup\":%s,\"partNumber\":null,"
                   "\"model\":null,\"color\":null,\"size\":null,\"edition\":null,\"format\":null,",
                   (int)(p->idx % 97), (int)(p->idx % 89),
                   books ? "\"A. Simulated Author\"" : "null", books ? "\"Paperback\"" : "null",
                   books ? "\"Book\"" : "null");
    sim_buf_printf(b,
                   "\"publicationDate\":%d,\"releaseDate\":0,\"eanList\":[\"%s\"],\"upcList\":"
                   "[\"%s\"],\"images\":[{\"m\":\"41Sim%06lldL.jpg\",\"mH\":500,\"mW\":500}],",
                   books ? 20200101 + (int)(p->idx % 28) : 0, ean, ean + 1,
                   (long long)(p->idx % 1000000));
    sim_buf_printf(b,
                   "\"packageHeight\":%d,\"packageLength\":%d,\"packageWidth\":%d,"
                   "\"packageWeight\":%d,\"packageQuantity\":1,\"itemHeight\":0,\"itemLength\":0,"
                   "\"itemWidth\":0,\"itemWeight\":0,\"availabilityAmazon\":%d,",
                   p->height_mm, p->length_mm, p->width_mm, p->weight_g, p->has_amazon ? 0 : -1);
    sim_buf_printf(b, "\"buyBoxEligibleOfferCounts\":[%d,%d,%d,%d,0,0,0,0],",
                   (p->n_new_offers + 1) / 2, p->n_new_offers / 2, (p->n_used_offers + 1) / 2,
                   p->n_used_offers / 2);
    sim_buf_printf(b,
                   "\"fbaFees\":{\"lastUpdate\":%lld,\"pickAndPackFee\":%d},"
                   "\"referralFeePercent\":%d,\"referralFeePercentage\":%d.0,",
                   (long long)(p->keepa_min - 10080), p->fba_fee_cents, p->referral_pct,
                   p->referral_pct);
    sim_buf_printf(b, "\"monthlySold\":%d,", p->monthly_sold);
    if (r->history) {
        sim_buf_printf(b, "\"monthlySoldHistory\":[%lld,%d],", (long long)(p->keepa_min - 43200),
                       p->monthly_sold);
        sim_buf_printf(b, "\"salesRankReference\":%lld,\"salesRankReferenceHistory\":[%lld,%lld],",
                       (long long)p->root_cat, (long long)p->tracking_since,
                       (long long)p->root_cat);
        sim_buf_printf(b, "\"salesRanks\":{\"%lld\":", (long long)p->cats[0]);
        int64_t sub[SIM_CSV_TYPES];
        (void)sub;
        csv_series(b, c, p, 3, r->days > 0 ? p->keepa_min - r->days * 1440 : INT64_MIN / 2);
        sim_buf_puts(b, "},");
    } else {
        sim_buf_printf(b, "\"salesRankReference\":%lld,", (long long)p->root_cat);
    }
    sim_buf_printf(b,
                   "\"salesRankDisplayGroup\":\"sim_display_on_website\",\"type\":\"%s\","
                   "\"hasReviews\":%s,\"isAdultProduct\":false,\"isRedirectASIN\":false,"
                   "\"isSNS\":false,\"isEligibleForTradeIn\":false,"
                   "\"isEligibleForSuperSaverShipping\":true,\"isHeatSensitive\":false,"
                   "\"launchpad\":false,\"lastEbayUpdate\":0,\"coupon\":null,\"promotions\":null,",
                   books ? "ABIS_BOOK" : "SIM_ITEM", p->reviews > 0 ? "true" : "false");

    struct sim_offer offers[SIM_MAX_OFFERS];
    int n_offers = 0;
    int with_offers = r->offers > 0 && !o->offers_failed;
    if (with_offers)
        n_offers = sim_offers_build(c, p, offers);
    sim_buf_printf(b, "\"offersSuccessful\":%s,", with_offers ? "true" : "false");
    if (with_offers)
        render_offers(b, c, p, r, offers, n_offers);
    else
        sim_buf_puts(b, "\"liveOffersOrder\":null,");
    if (r->history && (r->buybox || with_offers)) {
        char sid[14];
        if (p->has_amazon)
            strcpy(sid, SIM_AMAZON_SELLER);
        else
            sim_catalog_seller_id(c, (int64_t)(ph(c, p, 4, 0) % SIM_SELLERS), sid);
        sim_buf_printf(b, "\"buyBoxSellerIdHistory\":[\"%lld\",\"%s\"],", (long long)p->epoch_start,
                       sid);
    } else {
        sim_buf_puts(b, "\"buyBoxSellerIdHistory\":null,");
    }
    if (r->stats_mode != SIM_STATS_NONE)
        render_stats(b, c, p, r, offers, n_offers, with_offers);
    sim_buf_uncomma(b);
    sim_buf_putc(b, '}');
}

void sim_render_deal(struct sim_buf *b, const struct sim_catalog *c, const struct sim_product *p)
{
    char title[160];
    sim_catalog_title(c, p->idx, title, sizeof(title));
    sim_buf_puts(b, "{\"flags\":null,\"delta\":[");
    for (int r = 0; r < SIM_DEAL_RANGES; r++) {
        sim_buf_putc(b, '[');
        for (int i = 0; i < SIM_DEAL_TYPES; i++) {
            int64_t a = p->avg_dr[r][i], v = p->cur[i];
            sim_buf_int(b, a > 0 && v > 0 ? a - v : 0);
            sim_buf_putc(b, ',');
        }
        sim_buf_uncomma(b);
        sim_buf_puts(b, "],");
    }
    sim_buf_uncomma(b);
    sim_buf_puts(b, "],\"deltaPercent\":[");
    for (int r = 0; r < SIM_DEAL_RANGES; r++) {
        sim_buf_putc(b, '[');
        for (int i = 0; i < SIM_DEAL_TYPES; i++) {
            int64_t a = p->avg_dr[r][i], v = p->cur[i];
            sim_buf_int(b, a > 0 && v > 0 ? (a - v) * 100 / a : 0);
            sim_buf_putc(b, ',');
        }
        sim_buf_uncomma(b);
        sim_buf_puts(b, "],");
    }
    sim_buf_uncomma(b);
    sim_buf_puts(b, "],\"deltaLast\":[");
    for (int i = 0; i < SIM_DEAL_TYPES; i++) {
        sim_buf_int(b, p->cur[i] > 0 && p->last[i] > 0 ? p->last[i] - p->cur[i] : 0);
        sim_buf_putc(b, ',');
    }
    sim_buf_uncomma(b);
    sim_buf_puts(b, "],\"avg\":[");
    for (int r = 0; r < SIM_DEAL_RANGES; r++) {
        sim_buf_putc(b, '[');
        for (int i = 0; i < SIM_DEAL_TYPES; i++) {
            sim_buf_int(b, p->avg_dr[r][i]);
            sim_buf_putc(b, ',');
        }
        sim_buf_uncomma(b);
        sim_buf_puts(b, "],");
    }
    sim_buf_uncomma(b);
    sim_buf_puts(b, "],\"current\":[");
    for (int i = 0; i < SIM_DEAL_TYPES; i++) {
        sim_buf_int(b, p->cur[i]);
        sim_buf_putc(b, ',');
    }
    sim_buf_uncomma(b);
    sim_buf_printf(b, "],\"rootCat\":%lld,\"creationDate\":%lld,\"image\":[",
                   (long long)p->root_cat, (long long)p->creation);
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
    sim_buf_printf(b,
                   "\"lightningEnd\":0,\"salesRankDrops30\":%d,\"salesRankDrops90\":%d,"
                   "\"salesRankDrops180\":%d,\"salesRankDrops365\":%d,\"backInStock\":[",
                   p->drops30, p->drops90, p->drops180, p->drops365);
    for (int i = 0; i < SIM_DEAL_TYPES; i++)
        sim_buf_puts(b, i + 1 < SIM_DEAL_TYPES ? "false," : "false");
    sim_buf_puts(b, "],\"dateIntervalIndex\":0,\"lightningStart\":0,\"warehouseCondition\":0,"
                    "\"warehouseConditionComment\":null,\"currentSince\":[");
    for (int i = 0; i < SIM_DEAL_TYPES; i++) {
        sim_buf_int(b, p->since[i]);
        if (i + 1 < SIM_DEAL_TYPES)
            sim_buf_putc(b, ',');
    }
    sim_buf_puts(b, "]}");
}

void sim_render_seller(struct sim_buf *b, const struct sim_catalog *c, int64_t idx,
                       int64_t keepa_min)
{
    char sid[14];
    sim_catalog_seller_id(c, idx, sid);
    uint64_t h = sim_hash(c->seed, (uint64_t)idx, 77, 0);
    int rating = 70 + (int)(h % 31), count = 10 + (int)((h >> 8) % 50000);
    int64_t since = keepa_min - 1440 * (300 + (int64_t)((h >> 24) % 3000));
    sim_buf_printf(b,
                   "{\"domainId\":1,\"trackedSince\":%lld,\"lastUpdate\":%lld,\"sellerId\":\"%s\","
                   "\"sellerName\":\"Sim Seller %lld\",\"csv\":[[%lld,%d,%lld,%d],[%lld,%d,%lld,"
                   "%d]],\"isScammer\":false,\"hasFBA\":%s,\"currentRating\":%d,"
                   "\"currentRatingCount\":%d,\"ratingsLast30Days\":%d}",
                   (long long)since, (long long)(keepa_min - (int64_t)((h >> 40) % 600)), sid,
                   (long long)idx, (long long)since, rating - 2, (long long)(keepa_min - 1440),
                   rating, (long long)since, count / 2, (long long)(keepa_min - 1440), count,
                   (h >> 50) & 1 ? "true" : "false", rating, count, (int)((h >> 16) % 200));
}
