/*
 * catalog.c: deterministic, lazily generated products (see catalog.h).
 *
 * Every value derives from sim_hash(seed, index, tag, k): per product the base price, rank,
 * category and offer counts; per (product, epoch) the price and rank factors. An epoch is
 * epoch_len_min Keepa minutes long and each product's epochs are phase-shifted, so deals
 * appear and vanish continuously rather than all at once. In a "deal epoch" (about one in four)
 * the used price sits at 45-80 % of its averages; otherwise it hovers around them. Averages
 * drift slowly (per day) around the base values, so delta = avg - current is large exactly in
 * deal epochs. The invariants the rest of the simulator relies on: the same inputs always give
 * the same struct, USED current equals the cheapest live used offer, and lastUpdate <= now.
 */
#include "sim/catalog.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#define ASIN_SPACE   2821109907456ULL       /* 36^8 */
#define SELLER_SPACE 4738381338321616896ULL /* 36^12 */
#define DEAL_SHARE   0.25

static const char B36[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";

static const struct {
    int64_t id;
    const char *name;
    int weight;
    const char *sub_name;
} ROOTS[] = {
    {283155, "Books", 40, "Literature & Fiction"},
    {1055398, "Home & Kitchen", 10, "Storage & Organization"},
    {165793011, "Toys & Games", 8, "Puzzles"},
    {3760911, "Beauty & Personal Care", 6, "Skin Care"},
    {172282, "Electronics", 8, "Accessories & Supplies"},
    {165796011, "Baby Products", 4, "Nursery"},
    {2972638011, "Patio, Lawn & Garden", 5, "Gardening & Lawn Care"},
    {16310091, "Industrial & Scientific", 4, "Lab & Scientific Products"},
    {3375251, "Sports & Outdoors", 8, "Outdoor Recreation"},
    {228013, "Tools & Home Improvement", 7, "Power & Hand Tools"},
};
#define ROOT_COUNT ((int)(sizeof(ROOTS) / sizeof(ROOTS[0])))

static uint64_t mix64(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ULL;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
    return x ^ (x >> 31);
}

uint64_t sim_hash(uint64_t seed, uint64_t a, uint64_t b, uint64_t c)
{
    return mix64(seed ^ mix64(a * 0xD6E8FEB86659FD93ULL ^ mix64(b + 0x632BE59BD9B4E019ULL) ^
                              (c * 0x9E3779B97F4A7C15ULL)));
}

static double u01(uint64_t h)
{
    return (double)(h >> 11) * (1.0 / 9007199254740992.0);
}

/* Multiplicative inverse of odd A modulo M (A coprime with M), by extended Euclid. */
static uint64_t inverse_mod(uint64_t a, uint64_t m)
{
    __int128 t = 0, nt = 1, r = (__int128)m, nr = (__int128)(a % m);
    while (nr != 0) {
        __int128 q = r / nr, tmp = t - q * nt;
        t = nt;
        nt = tmp;
        tmp = r - q * nr;
        r = nr;
        nr = tmp;
    }
    if (t < 0)
        t += (__int128)m;
    return (uint64_t)t;
}

static uint64_t mulmod(uint64_t a, uint64_t b, uint64_t m)
{
    return (uint64_t)(((unsigned __int128)a * b) % m);
}

int sim_catalog_init(struct sim_catalog *c, uint64_t seed, int64_t products, double volatility)
{
    if (products < 1 || (uint64_t)products > ASIN_SPACE || !(volatility >= 0) || volatility > 1e6)
        return -EINVAL;
    memset(c, 0, sizeof(*c));
    c->seed = seed;
    c->products = products;
    c->volatility = volatility;
    c->epoch_len_min = volatility > 0 ? (int64_t)llround(360.0 / volatility) : (int64_t)1 << 40;
    if (c->epoch_len_min < 1)
        c->epoch_len_min = 1;
    /* Multipliers coprime with 2 and 3 (36^k = 2^2k * 3^2k) so the maps are bijections. */
    c->asin_mul = 2654435761ULL;
    c->asin_inv = inverse_mod(c->asin_mul, ASIN_SPACE);
    c->asin_off = mix64(seed) % ASIN_SPACE;
    c->seller_mul = 0x9E3779B1ULL * 5ULL + 2ULL; /* odd, not a multiple of 3: checked below */
    while (c->seller_mul % 3 == 0 || c->seller_mul % 2 == 0)
        c->seller_mul++;
    c->seller_inv = inverse_mod(c->seller_mul, SELLER_SPACE);
    c->seller_off = mix64(seed ^ 0x5E11E5ULL) % SELLER_SPACE;
    return 0;
}

static void encode36(uint64_t x, char *out, int digits)
{
    for (int i = digits - 1; i >= 0; i--) {
        out[i] = B36[x % 36];
        x /= 36;
    }
}

static int decode36(const char *s, int digits, uint64_t *x)
{
    uint64_t v = 0;
    for (int i = 0; i < digits; i++) {
        char ch = s[i];
        int d;
        if (ch >= '0' && ch <= '9')
            d = ch - '0';
        else if (ch >= 'A' && ch <= 'Z')
            d = ch - 'A' + 10;
        else
            return -1;
        v = v * 36 + (uint64_t)d;
    }
    *x = v;
    return 0;
}

void sim_catalog_asin(const struct sim_catalog *c, int64_t idx, char out[11])
{
    uint64_t x = (mulmod((uint64_t)idx, c->asin_mul, ASIN_SPACE) + c->asin_off) % ASIN_SPACE;
    out[0] = 'B';
    out[1] = '0';
    encode36(x, out + 2, 8);
    out[10] = '\0';
}

int64_t sim_catalog_lookup(const struct sim_catalog *c, const char *asin)
{
    if (asin == NULL || strlen(asin) != 10 || asin[0] != 'B' || asin[1] != '0')
        return -1;
    uint64_t x;
    if (decode36(asin + 2, 8, &x) != 0)
        return -1;
    uint64_t y = (x + ASIN_SPACE - c->asin_off) % ASIN_SPACE;
    uint64_t idx = mulmod(y, c->asin_inv, ASIN_SPACE);
    return idx < (uint64_t)c->products ? (int64_t)idx : -1;
}

void sim_catalog_seller_id(const struct sim_catalog *c, int64_t idx, char out[14])
{
    uint64_t x =
        (mulmod((uint64_t)idx, c->seller_mul, SELLER_SPACE) + c->seller_off) % SELLER_SPACE;
    out[0] = 'A';
    encode36(x, out + 1, 12);
    out[13] = '\0';
}

int64_t sim_catalog_seller_lookup(const struct sim_catalog *c, const char *id)
{
    if (id == NULL || strlen(id) != 13 || id[0] != 'A')
        return -1;
    uint64_t x;
    if (decode36(id + 1, 12, &x) != 0)
        return -1;
    uint64_t y = (x + SELLER_SPACE - c->seller_off) % SELLER_SPACE;
    uint64_t idx = mulmod(y, c->seller_inv, SELLER_SPACE);
    return idx < SIM_SELLERS ? (int64_t)idx : -1;
}

int sim_catalog_root_count(void)
{
    return ROOT_COUNT;
}

int64_t sim_catalog_root_id(int slot)
{
    return ROOTS[slot].id;
}

const char *sim_catalog_root_name(int slot)
{
    return ROOTS[slot].name;
}

enum tag {
    T_CAT = 1,
    T_NEW,
    T_USEDSHARE,
    T_RANK,
    T_AMZ,
    T_HASUSED,
    T_PHASE,
    T_DEAL,
    T_FUSED,
    T_FNEW,
    T_FRANK,
    T_DRIFT,
    T_STALE,
    T_LUPHASE,
    T_VAR,
    T_RATING,
    T_OFFERS,
    T_MISC,
    T_TITLE,
};

static uint64_t H(const struct sim_catalog *c, int64_t idx, enum tag t, int64_t k)
{
    return sim_hash(c->seed, (uint64_t)idx, (uint64_t)t, (uint64_t)k);
}

static const char *ADJ[] = {"Premium", "Classic", "Compact", "Deluxe",     "Essential", "Portable",
                            "Vintage", "Modern",  "Organic", "Heavy Duty", "Ultra",     "Smart"};
static const char *NOUN[] = {"Notebook",   "Storage Bags", "Puzzle",     "Face Cream", "Headphones",
                             "Crib Sheet", "Garden Hose",  "Funnel Set", "Tent",       "Drill Set",
                             "Cookbook",   "Water Bottle", "Desk Lamp",  "Novel",      "Backpack"};
static const char *EXTRA[] = {"for Home and Office", "2nd Edition", "Pack of 4",   "Large",
                              "with Carry Case",     "Set of 10",   "(Dark Gray)", "Paperback"};

void sim_catalog_title(const struct sim_catalog *c, int64_t idx, char *out, int n)
{
    uint64_t h = H(c, idx, T_TITLE, 0);
    snprintf(out, (size_t)n, "%s %s %s, Model %llu", ADJ[h % 12], NOUN[(h >> 8) % 15],
             EXTRA[(h >> 16) % 8], (unsigned long long)(idx % 100000));
}

/* Price factor of the used price in EPOCH: well below 1 in deal epochs. */
static double used_factor(const struct sim_catalog *c, int64_t idx, int64_t epoch)
{
    if (c->volatility <= 0)
        epoch = 0;
    double u = u01(H(c, idx, T_FUSED, epoch));
    if (u01(H(c, idx, T_DEAL, epoch)) < DEAL_SHARE)
        return 0.45 + 0.35 * u;
    return 0.95 + 0.15 * u;
}

static double new_factor(const struct sim_catalog *c, int64_t idx, int64_t epoch)
{
    if (c->volatility <= 0)
        epoch = 0;
    return 0.88 + 0.2 * u01(H(c, idx, T_FNEW, epoch));
}

static double rank_factor(const struct sim_catalog *c, int64_t idx, int64_t epoch)
{
    if (c->volatility <= 0)
        epoch = 0;
    return 0.6 + 0.9 * u01(H(c, idx, T_FRANK, epoch));
}

static int64_t cents(double v)
{
    int64_t r = (int64_t)llround(v);
    return r < 1 ? 1 : r;
}

int64_t sim_catalog_value_at(const struct sim_catalog *c, const struct sim_product *p, int type,
                             int64_t epoch)
{
    int64_t idx = p->idx;
    switch (type) {
    case 0: /* AMAZON */
        return p->has_amazon ? cents((double)p->base_new_cents * 0.97 * new_factor(c, idx, epoch))
                             : -1;
    case 1:  /* NEW */
    case 10: /* NEW_FBA */
    case 18: /* BUY_BOX_SHIPPING (price part) */
        return cents((double)p->base_new_cents * new_factor(c, idx, epoch) *
                     (type == 10 ? 1.04 : 1.0));
    case 7: /* NEW_FBM_SHIPPING (price part) */
        return cents((double)p->base_new_cents * new_factor(c, idx, epoch) * 1.01);
    case 2:  /* USED */
    case 21: /* USED_GOOD_SHIPPING: the cheapest used offer */
    case 32: /* BUY_BOX_USED_SHIPPING */
        return p->has_used ? cents((double)p->base_used_cents * used_factor(c, idx, epoch)) : -1;
    case 19:
        return p->has_used ? cents((double)p->base_used_cents * used_factor(c, idx, epoch) * 1.15)
                           : -1;
    case 20:
        return p->has_used ? cents((double)p->base_used_cents * used_factor(c, idx, epoch) * 1.08)
                           : -1;
    case 22:
        return p->has_used ? cents((double)p->base_used_cents * used_factor(c, idx, epoch) * 1.02)
                           : -1;
    case 3: /* SALES rank */
        return cents((double)p->base_rank * rank_factor(c, idx, epoch));
    case 4: /* LISTPRICE */
        return cents((double)p->base_new_cents * 1.25);
    case 11:
        return 1 + (int64_t)(H(c, idx, T_OFFERS, 11 + 100 * (c->volatility > 0 ? epoch : 0)) % 12);
    case 12:
        return p->has_used
                   ? 1 + (int64_t)(H(c, idx, T_OFFERS, 12 + 100 * (c->volatility > 0 ? epoch : 0)) %
                                   15)
                   : 0;
    case 16:
        return p->rating;
    case 17:
        return p->reviews;
    case 34: /* COUNT_NEW_FBA */
        return (sim_catalog_value_at(c, p, 11, epoch) + 1) / 2;
    case 35:
        return sim_catalog_value_at(c, p, 11, epoch) / 2;
    default:
        return -1;
    }
}

/* Types that carry data in this catalog (others stay -1 / null). */
static int type_has_data(const struct sim_product *p, int t)
{
    switch (t) {
    case 0:
        return p->has_amazon;
    case 2:
    case 19:
    case 20:
    case 21:
    case 22:
    case 32:
        return p->has_used;
    case 1:
    case 3:
    case 4:
    case 7:
    case 10:
    case 11:
    case 12:
    case 16:
    case 17:
    case 18:
    case 34:
    case 35:
        return 1;
    default:
        return 0;
    }
}

void sim_catalog_product(const struct sim_catalog *c, int64_t idx, int64_t keepa_min,
                         struct sim_product *p)
{
    memset(p, 0, sizeof(*p));
    p->idx = idx;
    p->keepa_min = keepa_min;
    sim_catalog_asin(c, idx, p->asin);

    uint64_t hc = H(c, idx, T_CAT, 0);
    int total = 0;
    for (int i = 0; i < ROOT_COUNT; i++)
        total += ROOTS[i].weight;
    int pick = (int)(hc % (uint64_t)total), slot = 0;
    while (pick >= ROOTS[slot].weight) {
        pick -= ROOTS[slot].weight;
        slot++;
    }
    p->cat_slot = slot;
    p->root_cat = ROOTS[slot].id;
    p->root_name = ROOTS[slot].name;
    p->cat_name = ROOTS[slot].sub_name;
    p->cats[0] = ROOTS[slot].id * 10 + 1 + (int64_t)((hc >> 32) % 7);
    p->cats[1] = 1000000000LL + (int64_t)((hc >> 16) % 900000000ULL);

    int books = p->root_cat == 283155;
    double lo = books ? 699 : 999, hi = books ? 6000 : 19999;
    p->base_new_cents = cents(lo * pow(hi / lo, u01(H(c, idx, T_NEW, 0))));
    p->base_used_cents =
        cents((double)p->base_new_cents * (0.55 + 0.35 * u01(H(c, idx, T_USEDSHARE, 0))));
    p->base_rank = cents(1000.0 * pow(3000.0, u01(H(c, idx, T_RANK, 0))));
    p->has_amazon = u01(H(c, idx, T_AMZ, 0)) < 0.25;
    p->has_used = u01(H(c, idx, T_HASUSED, 0)) < (books ? 0.95 : 0.75);
    uint64_t hv = H(c, idx, T_VAR, 0);
    p->is_variation = !books && (hv % 100) < 20;
    p->variation_primary = p->is_variation ? (int)((hv >> 8) % 3 == 0) : 1;
    p->parent_idx = p->is_variation ? (int64_t)((hv >> 16) % (uint64_t)c->products) : -1;
    uint64_t hr = H(c, idx, T_RATING, 0);
    p->rating = 30 + (int)(hr % 21);
    p->reviews = (int)((hr >> 8) % 5000);

    int64_t phase = (int64_t)(H(c, idx, T_PHASE, 0) % (uint64_t)c->epoch_len_min);
    int64_t t = keepa_min;
    p->epoch =
        c->volatility > 0 ? (int64_t)floor((double)(t + phase) / (double)c->epoch_len_min) : 0;
    p->epoch_start = c->volatility > 0 ? p->epoch * c->epoch_len_min - phase : t - 1440 * 200;

    /* Keepa refreshes each product on a 2-hour cycle; about 10 % are stale (> 12 h old). */
    int64_t lph = (int64_t)(H(c, idx, T_LUPHASE, 0) % 120);
    int64_t lu = t - ((t + lph) % 120);
    if (lu < p->epoch_start)
        lu = p->epoch_start;
    p->stale = u01(H(c, idx, T_STALE, 0)) < 0.10;
    if (p->stale)
        lu = t - 900 - (int64_t)(H(c, idx, T_STALE, 1) % 2000);
    p->last_update = lu;
    p->creation = p->epoch_start > lu ? lu : p->epoch_start;
    uint64_t hm = H(c, idx, T_MISC, 0);
    p->tracking_since = t - 1440 * (200 + (int64_t)(hm % 1500));
    p->listed_since = p->tracking_since - (int64_t)((hm >> 12) % 5000);

    double drifts[8];
    for (int k = 0; k < 8; k++)
        drifts[k] = 0.97 + 0.06 * u01(H(c, idx, T_DRIFT, (t / 1440) * 16 + k));
    for (int i = 0; i < SIM_CSV_TYPES; i++) {
        p->cur[i] = -1;
        p->last[i] = -1;
        p->since[i] = -1;
        for (int r = 0; r < SIM_DEAL_RANGES; r++)
            p->avg_dr[r][i] = -2;
        p->avg30[i] = p->avg90[i] = p->avg180[i] = p->avg365[i] = -1;
        if (!type_has_data(p, i))
            continue;
        p->cur[i] = sim_catalog_value_at(c, p, i, p->epoch);
        p->last[i] = sim_catalog_value_at(c, p, i, p->epoch - 1);
        p->since[i] = p->cur[i] != p->last[i] ? p->epoch_start : p->epoch_start - c->epoch_len_min;
        if (p->since[i] < p->tracking_since)
            p->since[i] = p->tracking_since;
        /* Averages: the base value of the type (its non-deal level), drifting per day. */
        double base;
        switch (i) {
        case 2:
        case 21:
        case 32:
            base = (double)p->base_used_cents * 1.02;
            break;
        case 19:
            base = (double)p->base_used_cents * 1.02 * 1.15;
            break;
        case 20:
            base = (double)p->base_used_cents * 1.02 * 1.08;
            break;
        case 22:
            base = (double)p->base_used_cents * 1.02 * 1.02;
            break;
        case 3:
            base = (double)p->base_rank * 1.05;
            break;
        case 0:
        case 1:
        case 7:
        case 10:
        case 18:
            base = (double)sim_catalog_value_at(c, p, i, p->epoch) / new_factor(c, idx, p->epoch) *
                   0.98;
            break;
        default:
            base = (double)p->cur[i];
            break;
        }
        int64_t w[8];
        for (int k = 0; k < 8; k++) {
            double drift = drifts[k];
            w[k] = (i >= 11 && i <= 17 && i != 16) || i >= 34 ? p->cur[i] : cents(base * drift);
            if (i == 16)
                w[k] = p->rating;
        }
        p->avg_dr[0][i] = w[0];
        p->avg_dr[1][i] = w[1];
        p->avg_dr[2][i] = w[2];
        p->avg_dr[3][i] = w[3];
        p->avg30[i] = w[2];
        p->avg90[i] = w[3];
        p->avg180[i] = w[4];
        p->avg365[i] = w[5];
    }

    double r = (double)p->base_rank;
    p->drops30 = (int)(60.0 * pow(r / 1000.0, -0.45)) + (int)(hm % 3);
    if ((hm >> 20) % 10 == 0)
        p->drops30 = 0;
    p->drops90 = p->drops30 * 3 + (int)((hm >> 24) % 3);
    p->drops180 = p->drops90 * 2 + (int)((hm >> 28) % 4);
    p->drops365 = p->drops180 * 2 + (int)((hm >> 32) % 5);
    p->monthly_sold = p->drops30 >= 10 ? p->drops30 * 10 : -1;

    uint64_t ho = H(c, idx, T_OFFERS, 0);
    p->n_new_offers = 1 + (int)(ho % 8);
    p->n_used_offers = p->has_used ? 1 + (int)((ho >> 8) % 14) : 0;
    p->n_hist_offers = (int)((ho >> 16) % 7);
    p->fba_fee_cents = 300 + (int)((ho >> 24) % 300);
    p->referral_pct = books ? 15 : 8 + (int)((ho >> 32) % 8);
    p->weight_g = 100 + (int)((ho >> 40) % 2000);
    p->height_mm = 10 + (int)((hm >> 40) % 100);
    p->length_mm = 100 + (int)((hm >> 48) % 200);
    p->width_mm = 50 + (int)((hm >> 56) % 150);
}
