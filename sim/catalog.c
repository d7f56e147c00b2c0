/*
 * catalog.c: deterministic, lazily generated products and their market (see catalog.h).
 *
 * Every value derives from sim_hash(seed, index, tag, k): per product the static draws
 * (category, price base, rank base, offer counts, fees, size), per (product, price epoch) the
 * epoch draws, and in the calibrated economy per (product, level slot) the price levels and
 * per (product, epoch) an optional short Used dip. An epoch is epoch_len_min Keepa minutes and
 * each product's epochs are phase-shifted, so prices move continuously rather than all at
 * once.
 *
 * Both economies reduce a moment to a few primitives (Amazon's price, the lowest third-party
 * New price and the number of New offers, the lowest Used price and the number of Used
 * offers, a cheap Used copy during a dip), then build the offer list from them (market_build)
 * and read every offer-derived series off that list. So the lowest live Used offer is csv
 * USED, the lowest New offer (Amazon included) is NEW, the Buy Box is a live offer, and the
 * counts are the list's counts, at every moment and in every history point.
 *
 * The calibrated economy (constants below, documented with their targets in sim/README.md):
 *   - Used level: one draw per slot of SLOT_EPOCHS epochs from the quantile table LEVEL_Q (a
 *     factor of the product's base), so a level lasts 5 Keepa days at volatility 1. The part
 *     below 1 is narrowed for fast sellers: a price that nobody buys is the one that slides.
 *   - Used epoch noise: in SPIKE_P of the epochs the cheapest copies have sold and the lowest
 *     price spikes to 1.8-3.2x; otherwise it wobbles by a few percent.
 *   - Averages over D days: the time-weighted mean of the levels in [t - D, t] times the mean
 *     noise. At most SLOT_SPAN_MAX slots are read (the 90-day average exactly, at volatility 1);
 *     older time counts at the expected level, so the 180- and 365-day averages lean towards
 *     the product's long-run level.
 *     The spikes make an average sit above the typical price, as Keepa's do.
 *   - Dips: in DIP_P of the epochs a cheap Used copy is listed at 15-60 % of the 90-day
 *     average for 1/8 to 1/2 of the epoch, then sells.
 *   - New: a level per slot around base_new (the base Used price times a New/Used ratio of
 *     median 1.9), third-party offers a few percent above or below it per epoch; Amazon sells
 *     some products, in stock in most slots, at or above the lowest New offer as a rule.
 *   - Sales rank: a split log-normal base (median 1.5 M) times a per-epoch factor; a share of
 *     media titles have no rank and unknown rank drops. Rank drops follow the rank (Poisson,
 *     about 600 a year at rank 2 500 falling as rank^-0.47, next to none beyond a few
 *     million).
 * The invariants the rest of the simulator relies on: the same inputs always give the same
 * struct, and lastUpdate <= now.
 */
#include "sim/catalog.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define ASIN_SPACE   2821109907456ULL       /* 36^8 */
#define SELLER_SPACE 4738381338321616896ULL /* 36^12 */
#define DEAL_SHARE   0.25                   /* rich: share of deal epochs */
#define FBM_SHIP     399

/* Calibrated economy (sim/README.md, "Economy"). */
#define SLOT_EPOCHS    20   /* epochs per price level: 5 Keepa days at volatility 1 */
#define SLOT_SPAN_MAX  20   /* level slots read for one average: 100 days at volatility 1 */
#define SPIKE_P        0.04 /* epochs whose lowest Used price spikes */
#define SPIKE_LO       1.80
#define SPIKE_HI       3.20
#define NOISE_SD       0.03
#define DIP_P          0.04 /* epochs with a cheap Used copy */
#define DIP_LO         0.15 /* its price, as a share of the 90-day Used average */
#define DIP_HI         0.60
#define WINDOW_EPOCHS  16 /* how far back the feed remembers: 4 Keepa days at volatility 1 */
#define AMAZON_SELLER  0.44
#define AMAZON_INSTOCK 0.90
#define BB_OFF_P       0.03 /* slots in which no offer qualifies for the Buy Box */

/* The Used level as a factor of the product's base: (quantile, factor), increasing. */
static const double LEVEL_Q[][2] = {{0.00, 0.23}, {0.04, 0.40}, {0.10, 0.55}, {0.20, 0.71},
                                    {0.30, 0.81}, {0.40, 0.88}, {0.50, 0.93}, {0.60, 0.97},
                                    {0.70, 1.01}, {0.80, 1.05}, {0.90, 1.10}, {0.95, 1.20},
                                    {1.00, 2.40}};
#define LEVEL_N ((int)(sizeof(LEVEL_Q) / sizeof(LEVEL_Q[0])))

static const char B36[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";

struct root {
    int64_t id;
    const char *name;
    int weight;
    const char *sub_name;
    int media;
    double used_share; /* calibrated: share of products with a Used market */
    int referral_bp;
    int heat, hazmat; /* calibrated: per-mille of heat-sensitive / hazmat products */
};

/* The rich economy's roots: the original catalog, unchanged. */
static const struct root ROOTS_RICH[] = {
    {283155, "Books", 40, "Literature & Fiction", 1, 0, 1500, 0, 0},
    {1055398, "Home & Kitchen", 10, "Storage & Organization", 0, 0, 1500, 0, 30},
    {165793011, "Toys & Games", 8, "Puzzles", 0, 0, 1500, 0, 0},
    {3760911, "Beauty & Personal Care", 6, "Skin Care", 0, 0, 1500, 40, 40},
    {172282, "Electronics", 8, "Accessories & Supplies", 0, 0, 800, 0, 40},
    {165796011, "Baby Products", 4, "Nursery", 0, 0, 1500, 0, 0},
    {2972638011, "Patio, Lawn & Garden", 5, "Gardening & Lawn Care", 0, 0, 1500, 0, 30},
    {16310091, "Industrial & Scientific", 4, "Lab & Scientific Products", 0, 0, 1200, 0, 40},
    {3375251, "Sports & Outdoors", 8, "Outdoor Recreation", 0, 0, 1500, 0, 10},
    {228013, "Tools & Home Improvement", 7, "Power & Hand Tools", 0, 0, 1500, 0, 30},
};

/*
 * The calibrated economy's roots: ids and names as Keepa sends them (the recorded deal page's
 * categoryNames), weighted so that a Used feed is about 70 % books as the recorded page is.
 */
static const struct root ROOTS_CAL[] = {
    {283155, "Books", 66, "Literature & Fiction", 1, 0.97, 1500, 0, 0},
    {5174, "CDs & Vinyl", 8, "Pop", 1, 0.95, 1500, 0, 0},
    {2625373011, "Movies & TV", 6, "Movies", 1, 0.95, 1500, 0, 0},
    {468642, "Video Games", 2, "PlayStation 4", 1, 0.90, 1500, 0, 10},
    {229534, "Software", 1, "Business & Office", 1, 0.60, 1500, 0, 0},
    {1055398, "Home & Kitchen", 10, "Storage & Organization", 0, 0.35, 1500, 20, 40},
    {7141123011, "Clothing, Shoes & Jewelry", 4, "Women", 0, 0.30, 1700, 0, 0},
    {165793011, "Toys & Games", 3, "Puzzles", 0, 0.35, 1500, 10, 20},
    {3375251, "Sports & Outdoors", 2, "Outdoor Recreation", 0, 0.40, 1500, 0, 30},
    {3760901, "Health & Household", 2, "Vitamins & Dietary Supplements", 0, 0.30, 1500, 120, 60},
    {172282, "Electronics", 2, "Accessories & Supplies", 0, 0.60, 800, 0, 80},
    {2619533011, "Pet Supplies", 1, "Dogs", 0, 0.30, 1500, 40, 20},
    {228013, "Tools & Home Improvement", 1, "Power & Hand Tools", 0, 0.40, 1500, 0, 60},
    {3760911, "Beauty & Personal Care", 1, "Skin Care", 0, 0.20, 1500, 80, 80},
    {165796011, "Baby Products", 1, "Nursery", 0, 0.30, 1500, 0, 0},
    {2972638011, "Patio, Lawn & Garden", 1, "Gardening & Lawn Care", 0, 0.30, 1500, 20, 80},
    {16310091, "Industrial & Scientific", 1, "Lab & Scientific Products", 0, 0.30, 1200, 10, 80},
    {15684181, "Automotive", 1, "Replacement Parts", 0, 0.35, 1200, 0, 120},
    {11091801, "Musical Instruments", 1, "Guitars", 0, 0.50, 1500, 0, 0},
    {2335752011, "Cell Phones & Accessories", 1, "Cases, Holsters & Sleeves", 0, 0.50, 800, 0, 80},
};

static const struct root *roots_of(const struct sim_catalog *c, int *n)
{
    if (c->economy == SIM_ECONOMY_RICH) {
        *n = (int)(sizeof(ROOTS_RICH) / sizeof(ROOTS_RICH[0]));
        return ROOTS_RICH;
    }
    *n = (int)(sizeof(ROOTS_CAL) / sizeof(ROOTS_CAL[0]));
    return ROOTS_CAL;
}

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

/* Bits [16 * I, 16 * I + 16) of H as a uniform in [0, 1). */
static double u16(uint64_t h, int i)
{
    return ((double)((h >> (16 * i)) & 0xFFFF) + 0.5) / 65536.0;
}

/* An approximately standard normal value from the four 16-bit lanes of H (Irwin-Hall). */
static double znorm(uint64_t h)
{
    return (u16(h, 0) + u16(h, 1) + u16(h, 2) + u16(h, 3) - 2.0) * 1.7320508075688772;
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

int sim_economy_parse(const char *name, enum sim_economy *out)
{
    if (name != NULL && strcasecmp(name, "calibrated") == 0) {
        *out = SIM_ECONOMY_CALIBRATED;
        return 0;
    }
    if (name != NULL && strcasecmp(name, "rich") == 0) {
        *out = SIM_ECONOMY_RICH;
        return 0;
    }
    return -EINVAL;
}

const char *sim_economy_name(enum sim_economy e)
{
    return e == SIM_ECONOMY_RICH ? "rich" : "calibrated";
}

int sim_catalog_init(struct sim_catalog *c, uint64_t seed, int64_t products, double volatility,
                     enum sim_economy economy)
{
    if (products < 1 || (uint64_t)products > ASIN_SPACE || !(volatility >= 0) || volatility > 1e6 ||
        (economy != SIM_ECONOMY_CALIBRATED && economy != SIM_ECONOMY_RICH))
        return -EINVAL;
    memset(c, 0, sizeof(*c));
    c->seed = seed;
    c->products = products;
    c->volatility = volatility;
    c->economy = economy;
    c->epoch_len_min = volatility > 0 ? (int64_t)llround(360.0 / volatility) : (int64_t)1 << 40;
    if (c->epoch_len_min < 1)
        c->epoch_len_min = 1;
    c->slot_len_min = c->epoch_len_min * SLOT_EPOCHS;
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

int sim_asin_wellformed(const char *asin)
{
    if (asin == NULL || strlen(asin) != 10)
        return 0;
    for (int i = 0; i < 10; i++)
        if (!((asin[i] >= '0' && asin[i] <= '9') || (asin[i] >= 'A' && asin[i] <= 'Z')))
            return 0;
    return 1;
}

/* An ISBN-10: nine digits, then a digit or X. */
static int is_isbn10(const char *asin)
{
    for (int i = 0; i < 9; i++)
        if (asin[i] < '0' || asin[i] > '9')
            return 0;
    return (asin[9] >= '0' && asin[9] <= '9') || asin[9] == 'X';
}

int64_t sim_catalog_resolve(const struct sim_catalog *c, const char *asin)
{
    if (!sim_asin_wellformed(asin) || strcmp(asin + 6, "ZZZZ") == 0 ||
        strpbrk(asin, "0123456789") == NULL) /* every ASIN and ISBN has a digit: XXXXXXXXXX */
        return -1;
    int64_t idx = sim_catalog_lookup(c, asin);
    if (idx >= 0)
        return idx;
    uint64_t h = 1469598103934665603ULL; /* FNV-1a of the ASIN */
    for (int i = 0; i < 10; i++)
        h = (h ^ (unsigned char)asin[i]) * 1099511628211ULL;
    h = mix64(h);
    /* bit 0: a book (pick_root reads it) */
    return SIM_EXT_BASE + (int64_t)((h % (1ULL << 40)) << 1) + is_isbn10(asin);
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

int sim_catalog_root_count(const struct sim_catalog *c)
{
    int n;
    roots_of(c, &n);
    return n;
}

int64_t sim_catalog_root_id(const struct sim_catalog *c, int slot)
{
    int n;
    return roots_of(c, &n)[slot].id;
}

const char *sim_catalog_root_name(const struct sim_catalog *c, int slot)
{
    int n;
    return roots_of(c, &n)[slot].name;
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
    /* calibrated economy */
    T_SLOT,
    T_EPOCH,
    T_EPOCH2,
    T_DIP,
    T_STATIC2,
    T_FLAGS,
    T_DROPS,
    T_LIGHT,
    /* offers (market_build) */
    T_O_RICH_NEW = 1001,
    T_O_RICH_USED = 1002,
    T_O_HIST = 1003,
    T_O_NEW = 1011,
    T_O_NEW_GAP = 1012,
    T_O_USED = 1013,
    T_O_USED_GAP = 1014,
    T_O_DIP = 1015,
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

static const char *const FIRST[] = {"Ada", "Ben",  "Cora", "Dan", "Eva", "Finn",
                                    "Gus", "Hana", "Ivo",  "Jun", "Kai", "Lia"};
static const char *const LAST[] = {"Archer", "Blake", "Carter", "Dalton", "Ellis",  "Foster",
                                   "Grant",  "Hayes", "Irwin",  "Jensen", "Keller", "Lowe",
                                   "Moreno", "Nash",  "Olsen",  "Parker"};

void sim_catalog_texts(const struct sim_catalog *c, const struct sim_product *p,
                       struct sim_texts *t)
{
    memset(t, 0, sizeof(*t));
    sim_catalog_title(c, p->idx, t->title, sizeof(t->title));
    uint64_t h = H(c, p->idx, T_TITLE, 1);
    int books = p->root_cat == 283155;
    snprintf(t->manufacturer, sizeof(t->manufacturer), "SimWorks %d", (int)(p->idx % 97));
    snprintf(t->brand, sizeof(t->brand), "SimBrand %d", (int)(p->idx % 89));
    snprintf(t->type, sizeof(t->type), "%s", books ? "ABIS_BOOK" : "SIM_ITEM");
    if (books) {
        snprintf(t->author, sizeof(t->author), "%s %s", FIRST[h % 12], LAST[(h >> 8) % 16]);
        snprintf(t->binding, sizeof(t->binding), "%s", (h >> 16) % 4 ? "Paperback" : "Hardcover");
        snprintf(t->product_group, sizeof(t->product_group), "Book");
        return;
    }
    static const struct {
        int64_t root;
        const char *binding, *group;
    } MEDIA[] = {{5174, "Audio CD", "Music"},
                 {2625373011, "DVD", "DVD"},
                 {468642, "Video Game", "Video Games"},
                 {229534, "Software", "Software"}};
    for (size_t i = 0; i < sizeof(MEDIA) / sizeof(MEDIA[0]); i++)
        if (p->root_cat == MEDIA[i].root) {
            snprintf(t->binding, sizeof(t->binding), "%s", MEDIA[i].binding);
            snprintf(t->product_group, sizeof(t->product_group), "%s", MEDIA[i].group);
        }
}

/* V rounded to a whole cent (half away from zero), at least 1. */
static int64_t cents(double v)
{
    int64_t r = v > 0 ? (int64_t)(v + 0.5) : 0;
    return r < 1 ? 1 : r;
}

static double clampd(double v, double lo, double hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

static int is_triple(int t)
{
    return t == 7 || (t >= 18 && t <= 29) || t == 32;
}

/* Types read off the market (prices and offer counts). */
static int is_market_type(int t)
{
    return t <= 2 || t == 7 || t == 10 || t == 11 || t == 12 || t == 18 || (t >= 19 && t <= 22) ||
           t == 32 || t == 34 || t == 35;
}

/* ---------- the rich economy's epoch factors (unchanged) ---------- */

/*
 * Price factor of the lowest Used price in EPOCH: well below 1 in deal epochs. *NORMAL (may be
 * NULL) gets the factor of the rest of the Used market, -1 outside deal epochs: a deal epoch is
 * a cheap copy or two below a market (and a Used Buy Box) that stays where it was.
 */
static double used_factor(const struct sim_catalog *c, int64_t idx, int64_t epoch, double *normal)
{
    if (c->volatility <= 0)
        epoch = 0;
    double u = u01(H(c, idx, T_FUSED, epoch));
    if (normal != NULL)
        *normal = -1;
    if (u01(H(c, idx, T_DEAL, epoch)) < DEAL_SHARE) {
        if (normal != NULL)
            *normal = 0.95 + 0.15 * u01(H(c, idx, T_FUSED, epoch + (1LL << 40)));
        return 0.45 + 0.35 * u;
    }
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

/* ---------- the calibrated economy's draws ---------- */

static double level_of_u(double u)
{
    for (int i = 1; i < LEVEL_N; i++)
        if (u <= LEVEL_Q[i][0]) {
            double u0 = LEVEL_Q[i - 1][0], v0 = LEVEL_Q[i - 1][1];
            double u1 = LEVEL_Q[i][0], v1 = LEVEL_Q[i][1];
            return v0 + (v1 - v0) * (u - u0) / (u1 - u0);
        }
    return LEVEL_Q[LEVEL_N - 1][1];
}

/*
 * A product's Used level: LEVEL_Q, with the part below 1 stretched by SPREAD (fast sellers
 * hold their price, slow sellers and titles without a rank slide further).
 */
static double product_level(double u, double spread)
{
    double l = level_of_u(u);
    return l < 1 ? 1 - (1 - l) * spread : l;
}

/* The mean of product_level over u for SPREAD (the level an average converges to), exactly:
 * LEVEL_Q is piecewise linear, so each piece integrates in closed form. */
static double level_mean(double spread)
{
    double s = 0;
    for (int i = 1; i < LEVEL_N; i++) {
        double u0 = LEVEL_Q[i - 1][0], v0 = LEVEL_Q[i - 1][1];
        double u1 = LEVEL_Q[i][0], v1 = LEVEL_Q[i][1];
        if (v0 < 1 && v1 > 1) { /* split the piece where it crosses 1 */
            double um = u0 + (u1 - u0) * (1 - v0) / (v1 - v0);
            s += (um - u0) * (1 - spread * (1 - (v0 + 1) / 2)) + (u1 - um) * (1 + v1) / 2;
        } else if (v1 <= 1) {
            s += (u1 - u0) * (1 - spread * (1 - (v0 + v1) / 2));
        } else {
            s += (u1 - u0) * (v0 + v1) / 2;
        }
    }
    return s;
}

/* exp(X) for |X| < 0.25, to 1e-4: the small log-normal wobbles without a libm call (a scan
 * draws hundreds of them per product). */
static double exp_small(double x)
{
    return 1 + x * (1 + x * (0.5 + x * (1.0 / 6 + x / 24)));
}

/* The mean Used epoch noise: spikes and the few-percent wobble. */
static double noise_mean(void)
{
    return (1 - SPIKE_P) * exp(NOISE_SD * NOISE_SD / 2) + SPIKE_P * (SPIKE_LO + SPIKE_HI) / 2;
}

struct slot {
    double used, fresh; /* level factors */
    int amazon;         /* Amazon in stock (when it sells the product) */
    int bb_off;         /* no offer qualifies for the Buy Box */
};

static void slot_draw(const struct sim_catalog *c, const struct sim_product *p, int64_t j,
                      struct slot *s)
{
    uint64_t h = H(c, p->idx, T_SLOT, j);
    s->used = product_level(u16(h, 0), p->level_spread);
    s->fresh = exp_small(0.08 * (u16(h, 1) + u16(h, 2) - 1.0) * 2.449);
    s->amazon = u16(h, 3) < AMAZON_INSTOCK;
    s->bb_off = (mix64(h) & 0xFF) < (uint64_t)(BB_OFF_P * 256);
}

struct edraw {
    double used_noise, new3p, amz, rank;
    int dn_used, dn_new;
};

static void epoch_draw(const struct sim_catalog *c, int64_t idx, int64_t k, struct edraw *e)
{
    uint64_t h = H(c, idx, T_EPOCH, k), h2 = H(c, idx, T_EPOCH2, k);
    if (u16(h, 0) < SPIKE_P)
        e->used_noise = SPIKE_LO + (SPIKE_HI - SPIKE_LO) * u16(h, 1);
    else
        e->used_noise = exp_small(NOISE_SD * (u16(h, 1) + u16(h, 2) - 1.0) * 2.449);
    e->new3p = 0.92 + 0.16 * u16(h, 3);
    e->amz = 0.95 + 0.20 * u16(h2, 0);
    e->rank = 0.55 + 0.9 * u16(h2, 1); /* mean 1 */
    e->dn_used = (int)((h2 >> 48) % 5) - 2;
    e->dn_new = (int)((h2 >> 56) % 3) - 1;
}

/* ---------- static draws ---------- */

static int pick_root(const struct sim_catalog *c, uint64_t hc)
{
    int n;
    const struct root *r = roots_of(c, &n);
    int total = 0;
    for (int i = 0; i < n; i++)
        total += r[i].weight;
    int pick = (int)(hc % (uint64_t)total), slot = 0;
    while (pick >= r[slot].weight) {
        pick -= r[slot].weight;
        slot++;
    }
    return slot;
}

/* A Poisson draw of mean LAMBDA from the hash H (inverse CDF; normal when large). */
static int poisson(double lambda, uint64_t h)
{
    if (lambda <= 0)
        return 0;
    if (lambda > 60) {
        double v = lambda + znorm(h) * sqrt(lambda);
        return v < 0 ? 0 : (int)llround(v);
    }
    double u = u01(h), p = exp(-lambda), cdf = p;
    int k = 0;
    while (u > cdf && k < 1000) {
        k++;
        p *= lambda / k;
        cdf += p;
    }
    return k;
}

/* Amazon's 2025 US FBA fulfilment fee (non-peak), approximated from the size tier and weight. */
static int fba_fee(int len_mm, int wid_mm, int hgt_mm, int g)
{
    int a = len_mm, b = wid_mm, d = hgt_mm, t;
    if (a < b)
        t = a, a = b, b = t;
    if (b < d)
        t = b, b = d, d = t;
    if (a < b)
        t = a, a = b, b = t;
    if (a <= 381 && b <= 305 && d <= 19 && g <= 454) /* small standard */
        return 306 + 59 * g / 454;
    if (a <= 457 && b <= 356 && d <= 203 && g <= 9072) { /* large standard */
        if (g <= 454)
            return 368 + 87 * g / 454;
        if (g <= 1361)
            return 455 + 207 * (g - 454) / 907;
        return 662 + 8 * (g - 1361) / 113;
    }
    return 961 + 38 * g / 454; /* large bulky */
}

/* Package size and weight: media by format, everything else from a log-uniform length. */
static void package(const struct root *r, uint64_t h, int *l, int *w, int *hh, int *g)
{
    double a = u16(h, 0), b = u16(h, 1), c = u16(h, 2), d = u16(h, 3);
    if (r->id == 283155) { /* a paperback or a hardcover */
        *l = 180 + (int)(100 * a);
        *w = (int)(*l * (0.62 + 0.13 * b));
        *hh = c < 0.7 ? 8 + (int)(30 * d) : 25 + (int)(30 * d);
    } else if (r->id == 5174) {
        *l = 142, *w = 125, *hh = 10 + (int)(10 * c);
    } else if (r->media) {
        *l = 170 + (int)(20 * a), *w = 135, *hh = 14 + (int)(8 * c);
    } else {
        *l = (int)(80 * pow(450.0 / 80, a));
        *w = (int)(*l * (0.3 + 0.6 * b));
        *hh = 10 + (int)(*w * (0.1 + 0.5 * c));
    }
    double vol_cm3 = (double)*l * *w * *hh / 1000.0;
    double density = r->media ? 0.55 + 0.2 * d : 0.12 + 0.4 * d;
    *g = 30 + (int)(vol_cm3 * density);
}

/* The static draws both economies share: category, fees, size and flags, rating. */
static void common_static(const struct sim_catalog *c, struct sim_product *p)
{
    int n;
    const struct root *roots = roots_of(c, &n);
    int64_t idx = p->idx;
    uint64_t hc = H(c, idx, T_CAT, 0);
    int slot = idx >= SIM_EXT_BASE && (idx & 1) ? 0 : pick_root(c, hc); /* 0: Books */
    const struct root *r = &roots[slot];
    p->cat_slot = slot;
    p->root_cat = r->id;
    p->root_name = r->name;
    p->cat_name = r->sub_name;
    p->is_media = r->media;
    p->cats[0] = r->id * 10 + 1 + (int64_t)((hc >> 32) % SIM_SUBS);
    p->cats[1] = p->cats[0] * 100 + 1 + (int64_t)((hc >> 16) % SIM_LEAVES);
    p->referral_bp = r->referral_bp;
    p->closing_fee_cents = r->media ? 180 : -1;
    uint64_t hf = H(c, idx, T_FLAGS, 0);
    p->heat_sensitive = (int)(hf % 1000) < r->heat;
    p->hazmat = (int)((hf >> 10) % 1000) < r->hazmat ? 1 + (int)((hf >> 20) % 3) : 0;
    p->adult = (int)((hf >> 30) % 1000) < (r->media ? 2 : 4);
    package(r, H(c, idx, T_MISC, 1), &p->length_mm, &p->width_mm, &p->height_mm, &p->weight_g);
    p->fba_fee_cents = fba_fee(p->length_mm, p->width_mm, p->height_mm, p->weight_g);
    if (c->economy == SIM_ECONOMY_CALIBRATED && (hf >> 40) % 100 < 3)
        p->fba_fee_cents = -1; /* Keepa has not collected the fees yet: fbaFees null */
    /* referralFeePercentage as Keepa sends it: 15.01 next to 15 now and then */
    if ((hf >> 48) % 4 == 0)
        p->referral_bp += 1;
    p->referral_pct = p->referral_bp / 100;
    uint64_t hr = H(c, idx, T_RATING, 0);
    p->rating = 30 + (int)(hr % 21);
    p->reviews = (int)((hr >> 8) % 5000);
}

/* Calibrated: the static draws. */
static void cal_static(const struct sim_catalog *c, struct sim_product *p)
{
    int n;
    const struct root *r = &roots_of(c, &n)[p->cat_slot];
    int64_t idx = p->idx;
    int books = p->root_cat == 283155;
    double median = books ? 1400 : p->is_media ? 1000 : 2800;
    p->base_used_cents =
        cents(clampd(median * exp(1.2 * znorm(H(c, idx, T_USEDSHARE, 0))), 150, 150000));
    double z = znorm(H(c, idx, T_NEW, 0));
    double ratio = clampd(exp(log(1.9) + (z < 0 ? 0.55 : 1.0) * z), 0.6, 12);
    p->base_new_cents = cents((double)p->base_used_cents * ratio);
    uint64_t ha = H(c, idx, T_AMZ, 0);
    p->has_used = u16(H(c, idx, T_HASUSED, 0), 0) < r->used_share;
    p->has_new = u16(ha, 0) < (p->is_media ? 0.82 : 0.95);
    p->has_amazon = p->has_new && u16(ha, 1) < AMAZON_SELLER;
    uint64_t hk = H(c, idx, T_RANK, 0);
    p->has_rank = !p->is_media || u16(hk, 0) >= 0.18;
    double zr = znorm(mix64(hk));
    p->base_rank = cents(clampd(1.5e6 * exp((zr < 0 ? 2.9 : 1.2) * zr), 100, 15e6));
    /* How far the Used price slides below its average: fast sellers (rank 100 000 and
     * better) 0.45 times as far as the table, slow ones (3 M and worse, or no rank) as far. */
    double slow = p->has_rank ? (log10((double)p->base_rank) - 5.0) / 1.5 : 1;
    p->level_spread = 0.45 + 0.55 * clampd(slow, 0, 1);
    p->level_mean = level_mean(p->level_spread);
    uint64_t hv = H(c, idx, T_VAR, 0);
    p->is_variation = !p->is_media && (hv % 100) < 20;
    p->variation_primary = p->is_variation ? (int)((hv >> 8) % 3 == 0) : 1;
    p->parent_idx = p->is_variation ? (int64_t)((hv >> 16) % (uint64_t)c->products) : -1;
    uint64_t hs = H(c, idx, T_STATIC2, 0);
    p->n_used_offers = p->has_used ? (int)clampd(10 * exp(0.8 * znorm(hs)), 1, 40) : 0;
    p->n_new_offers = p->has_new ? (int)clampd(4 * exp(0.7 * znorm(mix64(hs))), 1, 15) : 0;
    p->n_hist_offers = (int)((hs >> 8) % 5);
    /* Rank drops follow the rank (fitted to the recorded page): about 600 a year at rank
     * 2 500, as rank^-0.47, and next to none beyond a few million; Poisson counts. */
    uint64_t hd = H(c, idx, T_DROPS, 0);
    if (!p->has_rank) {
        int unknown = (hd % 10) != 0;
        p->drops30 = p->drops90 = p->drops180 = p->drops365 = unknown ? -1 : 0;
    } else {
        double rk = (double)p->base_rank;
        double l365 = 600.0 * pow(rk / 2500.0, -0.47) * exp(-(rk / 3e6) * (rk / 3e6));
        p->drops30 = poisson(l365 / 12, H(c, idx, T_DROPS, 1));
        p->drops90 = p->drops30 + poisson(l365 / 5 - l365 / 12, H(c, idx, T_DROPS, 2));
        p->drops180 = p->drops90 + poisson(l365 / 2.2 - l365 / 5, H(c, idx, T_DROPS, 3));
        p->drops365 = p->drops180 + poisson(l365 - l365 / 2.2, H(c, idx, T_DROPS, 4));
    }
    /* Amazon's "bought in past month": about 23 units a month per rank drop, in its steps */
    double sold = p->drops30 > 0 ? 23.0 * p->drops30 : 0;
    if (sold < 50)
        p->monthly_sold = -1;
    else if (sold < 100)
        p->monthly_sold = 50;
    else if (sold < 1000)
        p->monthly_sold = (int)(sold / 100) * 100;
    else if (sold < 10000)
        p->monthly_sold = (int)(sold / 1000) * 1000;
    else
        p->monthly_sold = (int)(sold / 10000) * 10000;
}

/* Rich: the static draws of the original catalog. */
static void rich_static(const struct sim_catalog *c, struct sim_product *p)
{
    int64_t idx = p->idx;
    int books = p->root_cat == 283155;
    double lo = books ? 699 : 999, hi = books ? 6000 : 19999;
    p->base_new_cents = cents(lo * pow(hi / lo, u01(H(c, idx, T_NEW, 0))));
    p->base_used_cents =
        cents((double)p->base_new_cents * (0.55 + 0.35 * u01(H(c, idx, T_USEDSHARE, 0))));
    p->base_rank = cents(1000.0 * pow(3000.0, u01(H(c, idx, T_RANK, 0))));
    p->has_amazon = u01(H(c, idx, T_AMZ, 0)) < 0.25;
    p->has_used = u01(H(c, idx, T_HASUSED, 0)) < (books ? 0.95 : 0.75);
    p->has_new = 1;
    p->has_rank = 1;
    uint64_t hv = H(c, idx, T_VAR, 0);
    p->is_variation = !books && (hv % 100) < 20;
    p->variation_primary = p->is_variation ? (int)((hv >> 8) % 3 == 0) : 1;
    p->parent_idx = p->is_variation ? (int64_t)((hv >> 16) % (uint64_t)c->products) : -1;
    uint64_t hm = H(c, idx, T_MISC, 0);
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
}

/* ---------- time ---------- */

static int64_t epoch_of(const struct sim_catalog *c, const struct sim_product *p, int64_t t)
{
    if (c->volatility <= 0)
        return 0;
    return (int64_t)floor((double)(t + p->phase) / (double)c->epoch_len_min);
}

static int64_t epoch_start_of(const struct sim_catalog *c, const struct sim_product *p, int64_t k)
{
    return k * c->epoch_len_min - p->phase;
}

static int64_t slot_of_epoch(const struct sim_catalog *c, const struct sim_product *p, int64_t k)
{
    if (c->volatility <= 0)
        return 0;
    int64_t x = k + p->slot_phase;
    return x >= 0 ? x / SLOT_EPOCHS : -((-x + SLOT_EPOCHS - 1) / SLOT_EPOCHS);
}

/* First minute of level slot J. */
static int64_t slot_start_of(const struct sim_catalog *c, const struct sim_product *p, int64_t j)
{
    return epoch_start_of(c, p, j * SLOT_EPOCHS - p->slot_phase);
}

static void slot_get(const struct sim_catalog *c, const struct sim_product *p, int64_t j,
                     struct slot *s)
{
    if (j >= p->slot_lo && j < p->slot_lo + p->n_slots) {
        int i = (int)(j - p->slot_lo);
        s->used = p->slot_used[i];
        s->fresh = p->slot_new[i];
        s->amazon = p->slot_amazon[i];
        s->bb_off = p->slot_bb_off[i];
        return;
    }
    slot_draw(c, p, j, s);
}

/*
 * Time-weighted mean of the Used and New level factors over the SPAN_MIN minutes before T:
 * the slots that overlap [T - SPAN_MIN, T), at most SLOT_SPAN_MAX of them; older time counts
 * at the expected level.
 */
static void level_means(const struct sim_catalog *c, const struct sim_product *p, int64_t t,
                        int64_t span_min, double *used, double *fresh)
{
    struct slot s;
    if (c->volatility <= 0) {
        slot_get(c, p, 0, &s);
        *used = s.used;
        *fresh = s.fresh;
        return;
    }
    int64_t from = t - span_min, end = t;
    int64_t j = slot_of_epoch(c, p, epoch_of(c, p, t - 1));
    double su = 0, sf = 0;
    for (int count = 0; end > from && count < SLOT_SPAN_MAX; count++, j--) {
        int64_t start = slot_start_of(c, p, j);
        int64_t lo = start > from ? start : from;
        slot_get(c, p, j, &s);
        su += s.used * (double)(end - lo);
        sf += s.fresh * (double)(end - lo);
        end = lo;
    }
    if (end > from) {
        su += p->level_mean * (double)(end - from);
        sf += 1.0 * (double)(end - from);
    }
    *used = su / (double)span_min;
    *fresh = sf / (double)span_min;
}

/* Fills P's slot cache for the year (and a feed window) before its minute. */
static void slot_cache_fill(const struct sim_catalog *c, struct sim_product *p)
{
    p->n_slots = 0;
    p->slot_lo = 0;
    if (c->volatility <= 0) {
        struct slot s;
        slot_draw(c, p, 0, &s);
        p->slot_used[0] = s.used, p->slot_new[0] = s.fresh;
        p->slot_amazon[0] = (unsigned char)s.amazon, p->slot_bb_off[0] = (unsigned char)s.bb_off;
        p->n_slots = 1;
        return;
    }
    int64_t hi = slot_of_epoch(c, p, epoch_of(c, p, p->keepa_min));
    /* the slots the averages read, from the oldest moment of a feed window on */
    int64_t oldest = p->keepa_min - (WINDOW_EPOCHS + 1) * c->epoch_len_min;
    int64_t lo = slot_of_epoch(c, p, epoch_of(c, p, oldest)) - (SLOT_SPAN_MAX - 1);
    if (hi - lo + 1 > SIM_SLOT_CACHE)
        lo = hi - SIM_SLOT_CACHE + 1;
    p->slot_lo = lo;
    for (int64_t j = lo; j <= hi; j++) {
        struct slot s;
        slot_draw(c, p, j, &s);
        int i = (int)(j - lo);
        p->slot_used[i] = s.used, p->slot_new[i] = s.fresh;
        p->slot_amazon[i] = (unsigned char)s.amazon, p->slot_bb_off[i] = (unsigned char)s.bb_off;
    }
    p->n_slots = (int)(hi - lo + 1);
}

/* ---------- primitives and the market ---------- */

struct prim {
    int64_t amazon;    /* Amazon's price, -1 when it does not sell now */
    int64_t new_low;   /* the lowest third-party New price, -1 none */
    int64_t used_low;  /* the lowest Used price, -1 none */
    int64_t dip;       /* calibrated: a cheap Used copy listed now, -1 none */
    int64_t used_norm; /* rich: in a deal epoch, the rest of the Used market's price, else -1 */
    int n_new, n_used;
    int bb_off;
    int64_t epoch, seen;
    int64_t rank;
};

static void prim_rich(const struct sim_catalog *c, const struct sim_product *p, int64_t k,
                      struct prim *m)
{
    double nf = new_factor(c, p->idx, k);
    m->amazon = p->has_amazon ? cents((double)p->base_new_cents * 0.97 * nf) : -1;
    m->new_low = cents((double)p->base_new_cents * nf);
    double normal;
    double uf = used_factor(c, p->idx, k, &normal);
    m->used_low = p->has_used ? cents((double)p->base_used_cents * uf) : -1;
    m->used_norm = p->has_used && normal > 0 ? cents((double)p->base_used_cents * normal) : -1;
    m->dip = -1;
    m->n_new = p->n_new_offers;
    m->n_used = p->n_used_offers;
    m->bb_off = 0;
    m->epoch = k;
    m->rank = cents((double)p->base_rank * rank_factor(c, p->idx, k));
}

static void prim_cal(const struct sim_catalog *c, const struct sim_product *p, int64_t k,
                     struct prim *m)
{
    struct slot s;
    struct edraw e;
    slot_get(c, p, slot_of_epoch(c, p, k), &s);
    epoch_draw(c, p->idx, c->volatility > 0 ? k : 0, &e);
    double fresh = (double)p->base_new_cents * s.fresh;
    m->new_low = p->has_new ? cents(fresh * e.new3p) : -1;
    m->amazon = p->has_amazon && s.amazon ? cents(fresh * e.amz) : -1;
    m->used_low = p->has_used ? cents((double)p->base_used_cents * s.used * e.used_noise) : -1;
    m->dip = -1;
    m->used_norm = -1;
    m->n_new = p->has_new ? p->n_new_offers + e.dn_new : 0;
    if (p->has_new && m->n_new < 1)
        m->n_new = 1;
    m->n_used = p->has_used ? p->n_used_offers + e.dn_used : 0;
    if (p->has_used && m->n_used < 1)
        m->n_used = 1;
    m->bb_off = s.bb_off;
    m->epoch = k;
    m->rank = p->has_rank ? cents((double)p->base_rank * e.rank) : -1;
}

static void prim_at(const struct sim_catalog *c, const struct sim_product *p, int64_t k,
                    struct prim *m)
{
    if (c->economy == SIM_ECONOMY_RICH)
        prim_rich(c, p, k, m);
    else
        prim_cal(c, p, k, m);
    m->seen = p->last_update;
}

static uint64_t OH(const struct sim_catalog *c, const struct sim_product *p, enum tag t, uint64_t k)
{
    return sim_hash(c->seed, (uint64_t)p->idx, (uint64_t)t, k);
}

static void add_offer(struct sim_market *m, int64_t price, int64_t ship, int cond, int fba,
                      int amazon, int prime, int eligible, int64_t seller, int64_t seen, int live)
{
    if (m->n >= SIM_MAX_OFFERS)
        return;
    struct sim_offer *o = &m->offers[m->n];
    o->price = price < 1 ? 1 : price;
    o->ship = ship;
    o->cond = cond;
    o->fba = fba;
    o->amazon = amazon;
    o->prime = prime;
    o->live = live;
    o->bb_eligible = eligible;
    o->seller_idx = seller;
    o->last_seen = seen;
    o->offer_id = m->n;
    m->n++;
    m->n_live += live;
}

/* The rich economy's offers: the original layout. */
static void offers_rich(const struct sim_catalog *c, const struct sim_product *p,
                        const struct prim *pr, struct sim_market *m)
{
    int64_t t = pr->seen;
    if (pr->amazon > 0)
        add_offer(m, pr->amazon, 0, 1, 0, 1, 1, 1, -1, t, 1);
    for (int j = 0; j < pr->n_new; j++) {
        uint64_t h = OH(c, p, T_O_RICH_NEW, (uint64_t)j);
        int fba = (h & 1) != 0;
        int64_t price =
            j == 0 ? pr->new_low : pr->new_low + pr->new_low * (4 * j + (int)(h % 4)) / 100;
        add_offer(m, price, fba ? 0 : FBM_SHIP, 1, fba, 0, fba, 1,
                  (int64_t)((h >> 8) % SIM_SELLERS), t, 1);
    }
    static const int used_cond[4] = {4, 3, 2, 5};
    static const int used_pct[4] = {100, 108, 115, 102};
    /* In a deal epoch the cheapest copy (and every second one of the first four) is a quick
     * FBM sale that the Buy Box passes over; the others stay at the usual level. */
    int64_t level = pr->used_norm > 0 ? pr->used_norm : pr->used_low;
    for (int j = 0; j < pr->n_used && pr->used_low > 0; j++) {
        uint64_t h = OH(c, p, T_O_RICH_USED, (uint64_t)j);
        int cond, fba = (h & 1) != 0, cheap = pr->used_norm > 0 && j < 4 && j % 2 == 0;
        int64_t price, ship, base = cheap ? pr->used_low : level;
        if (j < 4) {
            cond = used_cond[j];
            price = j == 0 ? base : cents((double)base * used_pct[j] / 100.0);
            ship = 0;
        } else {
            cond = 2 + (int)((h >> 4) % 4);
            price = base + base * (20 + 5 * j) / 100;
            ship = fba ? 0 : FBM_SHIP;
        }
        if (cheap)
            fba = 0;
        add_offer(m, price, ship, cond, fba, 0, fba, !cheap, (int64_t)((h >> 8) % SIM_SELLERS), t,
                  1);
    }
}

/* The calibrated economy's offers: mostly FBM Used copies with shipping, dearer FBA ones. */
static void offers_cal(const struct sim_catalog *c, const struct sim_product *p,
                       const struct prim *pr, struct sim_market *m)
{
    int64_t t = pr->seen;
    uint64_t ek = (uint64_t)pr->epoch * 64;
    if (pr->amazon > 0)
        add_offer(m, pr->amazon, 0, 1, 0, 1, 1, 1, -1, t, 1);
    double price = (double)pr->new_low;
    for (int j = 0; j < pr->n_new && pr->new_low > 0; j++) {
        uint64_t h = OH(c, p, T_O_NEW, (uint64_t)j);
        if (j > 0)
            price *= 1.01 + 0.07 * u01(OH(c, p, T_O_NEW_GAP, ek + (uint64_t)j));
        int fba = u16(h, 0) < 0.55;
        int64_t ship = fba || (h >> 40) & 1 ? 0 : 499;
        int eligible = fba || u16(h, 1) < 0.7;
        int prime = fba || u16(h, 2) < 0.1;
        add_offer(m, cents(price), ship, 1, fba, 0, prime, eligible,
                  (int64_t)((h >> 48) % SIM_SELLERS), t, 1);
    }
    static const double cond0[4] = {0.08, 0.30, 0.75, 1.0}; /* like new, v. good, good, acc. */
    static const double condj[4] = {0.15, 0.45, 0.85, 1.0};
    double base = (double)pr->used_low;
    for (int j = 0; j < pr->n_used && pr->used_low > 0; j++) {
        uint64_t h = OH(c, p, T_O_USED, (uint64_t)j);
        if (j > 0)
            base *= 1.02 + 0.10 * u01(OH(c, p, T_O_USED_GAP, ek + (uint64_t)j));
        double uc = u16(h, 0);
        const double *cd = j == 0 ? cond0 : condj;
        int cond = uc < cd[0] ? 2 : uc < cd[1] ? 3 : uc < cd[2] ? 4 : 5;
        int fba = j > 0 && u16(h, 1) < 0.22;
        double item = fba ? base * (1.15 + 0.35 * u16(h, 2)) : base;
        int eligible = fba || (cond <= 4 && u16(h, 3) < 0.8);
        add_offer(m, cents(item), fba ? 0 : FBM_SHIP, cond, fba, 0, fba, eligible,
                  (int64_t)((h >> 24) % SIM_SELLERS), t, 1);
    }
    if (pr->dip > 0) {
        uint64_t h = OH(c, p, T_O_DIP, (uint64_t)pr->epoch);
        add_offer(m, pr->dip, FBM_SHIP, (h & 1) ? 5 : 4, 0, 0, 0, 0,
                  (int64_t)((h >> 8) % SIM_SELLERS), t, 1);
    }
}

/* Builds the market of P from the primitives PR and reads every derived series off it. */
static void market_build(const struct sim_catalog *c, const struct sim_product *p,
                         const struct prim *pr, struct sim_market *m)
{
    m->n = m->n_live = 0;
    if (c->economy == SIM_ECONOMY_RICH)
        offers_rich(c, p, pr, m);
    else
        offers_cal(c, p, pr, m);
    for (int j = 0; j < p->n_hist_offers && m->n < SIM_MAX_OFFERS; j++) {
        uint64_t h = OH(c, p, T_O_HIST, (uint64_t)j);
        int cond = 1 + (int)(h % 5);
        int64_t base = cond == 1 ? p->base_new_cents : p->base_used_cents;
        int fba = (int)((h >> 20) & 1);
        add_offer(m, base + base * (int64_t)((h >> 8) % 30) / 100, (h >> 16) & 1 ? 0 : FBM_SHIP,
                  cond, fba, 0, fba, 0, (int64_t)((h >> 24) % SIM_SELLERS),
                  pr->seen - 1440 - (int64_t)((h >> 40) % 40000), 0);
    }
    for (int i = 0; i < SIM_CSV_TYPES; i++) {
        m->price[i] = -1;
        m->ship[i] = 0;
    }
    m->n_new = m->n_used = m->n_new_fba = m->n_new_fbm = 0;
    memset(m->eligible, 0, sizeof(m->eligible));
    int bb_new = -1, bb_used = -1;
    int64_t bb_new_score = 0, bb_used_score = 0;
    for (int i = 0; i < m->n; i++) {
        const struct sim_offer *o = &m->offers[i];
        if (!o->live)
            continue;
        int64_t landed = o->price + o->ship;
        if (o->cond == 1) {
            m->n_new++;
            if (o->amazon) {
                m->price[0] = o->price;
            } else if (o->fba) {
                m->n_new_fba++;
                if (m->price[10] < 0 || o->price < m->price[10])
                    m->price[10] = o->price;
            } else {
                m->n_new_fbm++;
                if (m->price[7] < 0 || landed < m->price[7] + m->ship[7])
                    m->price[7] = o->price, m->ship[7] = o->ship;
            }
            if (m->price[1] < 0 || o->price < m->price[1])
                m->price[1] = o->price;
            if (!o->amazon)
                m->eligible[o->fba ? 0 : 1] += o->bb_eligible;
            if (o->bb_eligible) { /* Amazon wins at parity, FBA is preferred over FBM */
                int64_t score = landed * (o->amazon ? 95 : o->fba ? 97 : 100);
                if (bb_new < 0 || score < bb_new_score)
                    bb_new = i, bb_new_score = score;
            }
        } else if (o->cond >= 2 && o->cond <= 5) {
            m->n_used++;
            if (m->price[2] < 0 || o->price < m->price[2])
                m->price[2] = o->price;
            int t = 17 + o->cond; /* 19 like new ... 22 acceptable */
            if (m->price[t] < 0 || landed < m->price[t] + m->ship[t])
                m->price[t] = o->price, m->ship[t] = o->ship;
            m->eligible[o->fba ? 2 : 3] += o->bb_eligible;
            if (o->bb_eligible) {
                int64_t score = landed * (o->fba ? 92 : 100);
                if (bb_used < 0 || score < bb_used_score)
                    bb_used = i, bb_used_score = score;
            }
        }
    }
    m->bb_used = bb_used;
    m->bb = bb_new >= 0 ? bb_new : bb_used;
    m->bb_is_used = bb_new < 0 && bb_used >= 0;
    if (pr->bb_off)
        m->bb = -1, m->bb_is_used = 0;
    if (m->bb >= 0)
        m->price[18] = m->offers[m->bb].price, m->ship[18] = m->offers[m->bb].ship;
    if (bb_used >= 0)
        m->price[32] = m->offers[bb_used].price, m->ship[32] = m->offers[bb_used].ship;
    m->price[11] = m->n_new;
    m->price[12] = m->n_used;
    m->price[34] = m->n_new_fba;
    m->price[35] = m->n_new_fbm;
}

void sim_catalog_market_at(const struct sim_catalog *c, const struct sim_product *p, int64_t epoch,
                           struct sim_market *m)
{
    struct prim pr;
    prim_at(c, p, epoch, &pr);
    market_build(c, p, &pr, m);
}

/* ---------- dips and averages (calibrated) ---------- */

/* The Used average over SPAN_MIN minutes before T (calibrated). */
static int64_t used_avg_at(const struct sim_catalog *c, const struct sim_product *p, int64_t t,
                           int64_t span_min)
{
    double used, fresh;
    level_means(c, p, t, span_min, &used, &fresh);
    return cents((double)p->base_used_cents * noise_mean() * used);
}

/* The dip of epoch K: its minutes and the cheap copy's price, if it lowers the Used price. */
static int dip_of(const struct sim_catalog *c, const struct sim_product *p, int64_t k,
                  int64_t *start, int64_t *end, struct prim *pr)
{
    if (c->economy != SIM_ECONOMY_CALIBRATED || !p->has_used || c->volatility <= 0)
        return 0;
    uint64_t h = H(c, p->idx, T_DIP, k);
    if (u16(h, 0) >= DIP_P)
        return 0;
    int64_t L = c->epoch_len_min, es = epoch_start_of(c, p, k);
    int64_t off = (int64_t)(u16(h, 2) * (double)(L / 2));
    int64_t dur = L / 8 + (int64_t)(u16(h, 3) * (double)(3 * L / 8));
    if (dur < 1)
        dur = 1;
    *start = es + off;
    *end = *start + dur;
    if (*end > es + L)
        *end = es + L;
    prim_at(c, p, k, pr);
    double depth = DIP_LO + (DIP_HI - DIP_LO) * u16(h, 1);
    int64_t price = cents(depth * (double)used_avg_at(c, p, *start, 90 * 1440));
    if (pr->used_low <= 0 || price >= pr->used_low)
        return 0;
    pr->dip = price;
    return 1;
}

int sim_catalog_dip(const struct sim_catalog *c, const struct sim_product *p, int64_t epoch,
                    int64_t *start, int64_t *end, struct sim_market *m)
{
    struct prim pr;
    if (!dip_of(c, p, epoch, start, end, &pr))
        return 0;
    if (m != NULL)
        market_build(c, p, &pr, m);
    return 1;
}

int64_t sim_catalog_value_at(const struct sim_catalog *c, const struct sim_product *p, int type,
                             int64_t epoch, int64_t *ship)
{
    if (ship != NULL)
        *ship = 0;
    if (c->volatility <= 0)
        epoch = 0;
    if (is_market_type(type)) {
        struct sim_market m;
        sim_catalog_market_at(c, p, epoch, &m);
        if (ship != NULL && is_triple(type))
            *ship = m.ship[type];
        return m.price[type];
    }
    switch (type) {
    case 3: {
        struct prim pr;
        prim_at(c, p, epoch, &pr);
        return pr.rank;
    }
    case 4:
        return p->has_new ? cents((double)p->base_new_cents * 1.25) : -1;
    case 16:
        return p->rating;
    case 17:
        return p->reviews;
    default:
        return -1;
    }
}

/* ---------- one product at one minute ---------- */

static const int SPAN_DAYS[6] = {1, 7, 30, 90, 180, 365}; /* avg_dr rows 0-3, then 180, 365 */

/* The mean of the calibrated sales-rank epoch factor. */
static double rank_mean(void)
{
    return 1.0;
}

/*
 * Calibrated: the average of TYPE from the mean level factors MU (Used) and MF (New) of one
 * span; -1 when the product has no such series. The same formula serves the product and the
 * feed's view of it (sim_catalog_point).
 */
static int64_t cal_avg(const struct sim_product *p, int type, double mu, double mf)
{
    double used = (double)p->base_used_cents * noise_mean() * mu;
    double fresh = (double)p->base_new_cents * mf;
    switch (type) {
    case 0:
        return p->has_amazon ? cents(fresh * 1.05) : -1;
    case 1:
        return p->has_new ? cents(fresh * (p->has_amazon ? 0.99 : 1.0)) : -1;
    case 2:
    case 22:
        return p->has_used ? cents(used) : -1;
    case 3:
        return p->has_rank ? cents((double)p->base_rank * rank_mean()) : -1;
    case 7:
        return p->has_new ? cents(fresh * 1.04) : -1;
    case 10:
        return p->has_new ? cents(fresh * 1.03) : -1;
    case 18:
        return p->has_new ? cents(fresh) : p->has_used ? cents(used * 1.25) : -1;
    case 19:
        return p->has_used ? cents(used * 1.35) : -1;
    case 20:
        return p->has_used ? cents(used * 1.20) : -1;
    case 21:
        return p->has_used ? cents(used * 1.08) : -1;
    case 32:
        return p->has_used ? cents(used * 1.25) : -1;
    default:
        return -1;
    }
}

/* Values of csv types that are neither prices from offers nor averaged (4, 16, 17). */
static int64_t static_value(const struct sim_product *p, int type)
{
    switch (type) {
    case 4:
        return p->has_new ? cents((double)p->base_new_cents * 1.25) : -1;
    case 16:
        return p->rating;
    case 17:
        return p->reviews;
    default:
        return -1;
    }
}

/* cur, last and since of every type from the market now and the state before the change. */
static void set_current(const struct sim_catalog *c, struct sim_product *p,
                        const struct sim_market *prev, int64_t rank, int64_t prev_rank,
                        int64_t change_min)
{
    for (int i = 0; i < SIM_CSV_TYPES; i++) {
        int64_t cur, last;
        if (is_market_type(i)) {
            cur = p->mkt.price[i];
            last = prev->price[i];
        } else if (i == 3) {
            cur = rank;
            last = prev_rank;
        } else {
            cur = last = static_value(p, i);
        }
        p->cur[i] = cur;
        p->last[i] = cur >= 0 ? last : -1;
        p->since[i] = -1;
        if (cur >= 0) {
            p->since[i] = cur != last ? change_min : change_min - c->epoch_len_min;
            if (p->since[i] < p->tracking_since)
                p->since[i] = p->tracking_since;
        }
    }
}

static void rich_values(const struct sim_catalog *c, struct sim_product *p)
{
    int64_t k = p->epoch, idx = p->idx, t = p->keepa_min;
    struct prim pr, pp;
    prim_at(c, p, k, &pr);
    market_build(c, p, &pr, &p->mkt);
    struct sim_market prev;
    prim_at(c, p, c->volatility > 0 ? k - 1 : k, &pp);
    market_build(c, p, &pp, &prev);
    set_current(c, p, &prev, pr.rank, pp.rank, p->epoch_start);
    double drifts[8];
    for (int j = 0; j < 8; j++)
        drifts[j] = 0.97 + 0.06 * u01(H(c, idx, T_DRIFT, (t / 1440) * 16 + j));
    for (int i = 0; i < SIM_CSV_TYPES; i++) {
        for (int r = 0; r < SIM_DEAL_RANGES; r++)
            p->avg_dr[r][i] = -2;
        p->avg30[i] = p->avg90[i] = p->avg180[i] = p->avg365[i] = -1;
        if (p->cur[i] < 0)
            continue;
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
            base = (double)p->base_new_cents * 0.98 * 0.97;
            break;
        case 10:
            base = (double)p->base_new_cents * 0.98 * 1.04;
            break;
        case 7:
            base = (double)p->base_new_cents * 0.98 * 1.01;
            break;
        case 1:
        case 18:
            base = (double)p->base_new_cents * 0.98;
            break;
        default:
            base = (double)p->cur[i];
            break;
        }
        int64_t w[8];
        for (int j = 0; j < 8; j++)
            w[j] = (i >= 11 && i <= 17 && i != 16) || i >= 34 ? p->cur[i] : cents(base * drifts[j]);
        if (i == 16)
            for (int j = 0; j < 8; j++)
                w[j] = p->rating;
        for (int r = 0; r < SIM_DEAL_RANGES; r++)
            p->avg_dr[r][i] = w[r];
        p->avg30[i] = w[2];
        p->avg90[i] = w[3];
        p->avg180[i] = w[4];
        p->avg365[i] = w[5];
    }
}

static void cal_values(const struct sim_catalog *c, struct sim_product *p)
{
    int64_t k = p->epoch, t = p->keepa_min;
    struct prim pr, dp, pp;
    prim_at(c, p, k, &pr);
    int64_t ds = 0, de = 0;
    int dipped = dip_of(c, p, k, &ds, &de, &dp) && ds <= t;
    int live = dipped && t < de;
    market_build(c, p, live ? &dp : &pr, &p->mkt);
    struct sim_market prev;
    int64_t change = p->epoch_start, prev_rank;
    if (live) { /* the cheap copy since ds; before it, the epoch's market */
        market_build(c, p, &pr, &prev);
        change = ds;
        prev_rank = pr.rank;
    } else if (dipped) { /* the copy sold at de */
        market_build(c, p, &dp, &prev);
        change = de;
        prev_rank = pr.rank;
    } else {
        prim_at(c, p, c->volatility > 0 ? k - 1 : k, &pp);
        market_build(c, p, &pp, &prev);
        prev_rank = pp.rank;
    }
    set_current(c, p, &prev, pr.rank, prev_rank, change);
    double mu[6], mf[6];
    for (int s = 0; s < 6; s++)
        level_means(c, p, t, (int64_t)SPAN_DAYS[s] * 1440, &mu[s], &mf[s]);
    for (int i = 0; i < SIM_CSV_TYPES; i++) {
        for (int r = 0; r < SIM_DEAL_RANGES; r++)
            p->avg_dr[r][i] = -2;
        p->avg30[i] = p->avg90[i] = p->avg180[i] = p->avg365[i] = -1;
        int64_t a[6];
        int counted = i == 11 || i == 12 || i == 34 || i == 35 || i == 4 || i == 16 || i == 17;
        if (counted && p->cur[i] < 0)
            continue;
        for (int s = 0; s < 6; s++)
            a[s] = counted ? p->cur[i] : cal_avg(p, i, mu[s], mf[s]);
        if (a[0] < 0)
            continue;
        for (int r = 0; r < SIM_DEAL_RANGES; r++)
            p->avg_dr[r][i] = a[r];
        p->avg30[i] = a[2];
        p->avg90[i] = a[3];
        p->avg180[i] = a[4];
        p->avg365[i] = a[5];
    }
}

/* The clock of product P (its static draws made) at its minute; the levels when FILL_SLOTS. */
static void product_clock(const struct sim_catalog *c, struct sim_product *p, int fill_slots);

/* The static draws and the clock of product IDX at KEEPA_MIN: no values yet. */
static void product_base(const struct sim_catalog *c, int64_t idx, int64_t keepa_min,
                         struct sim_product *p, int fill_slots)
{
    memset(p, 0, sizeof(*p));
    p->idx = idx;
    p->keepa_min = keepa_min;
    if (idx < SIM_EXT_BASE)
        sim_catalog_asin(c, idx, p->asin); /* a synthetic product's ASIN is the caller's */
    p->phase = (int64_t)(H(c, idx, T_PHASE, 0) % (uint64_t)c->epoch_len_min);
    p->slot_phase = (int64_t)(H(c, idx, T_PHASE, 1) % SLOT_EPOCHS);
    common_static(c, p);
    if (c->economy == SIM_ECONOMY_RICH)
        rich_static(c, p);
    else
        cal_static(c, p);
    product_clock(c, p, fill_slots);
}

/* The fields of struct sim_product_static, each a field of struct sim_product by that name. */
#define STATIC_FIELDS(X)                                                                           \
    X(root_cat)                                                                                    \
    X(cats[0])                                                                                     \
    X(cats[1])                                                                                     \
    X(parent_idx)                                                                                  \
    X(base_new_cents)                                                                              \
    X(base_used_cents)                                                                             \
    X(base_rank)                                                                                   \
    X(phase)                                                                                       \
    X(slot_phase)                                                                                  \
    X(root_name)                                                                                   \
    X(cat_name)                                                                                    \
    X(level_spread)                                                                                \
    X(level_mean)                                                                                  \
    X(cat_slot)                                                                                    \
    X(is_media)                                                                                    \
    X(has_amazon)                                                                                  \
    X(has_used)                                                                                    \
    X(has_new)                                                                                     \
    X(has_rank)                                                                                    \
    X(is_variation)                                                                                \
    X(variation_primary)                                                                           \
    X(drops30)                                                                                     \
    X(drops90)                                                                                     \
    X(drops180)                                                                                    \
    X(drops365)                                                                                    \
    X(rating)                                                                                      \
    X(reviews)                                                                                     \
    X(monthly_sold)                                                                                \
    X(n_new_offers)                                                                                \
    X(n_used_offers)                                                                               \
    X(n_hist_offers)                                                                               \
    X(fba_fee_cents)                                                                               \
    X(referral_pct)                                                                                \
    X(referral_bp)                                                                                 \
    X(closing_fee_cents)                                                                           \
    X(heat_sensitive)                                                                              \
    X(adult)                                                                                       \
    X(hazmat)                                                                                      \
    X(weight_g)                                                                                    \
    X(height_mm)                                                                                   \
    X(length_mm)                                                                                   \
    X(width_mm)

void sim_catalog_product_static(const struct sim_product *p, struct sim_product_static *st)
{
#define SAVE(f) st->f = p->f;
    STATIC_FIELDS(SAVE)
#undef SAVE
    memcpy(st->asin, p->asin, sizeof(st->asin));
}

void sim_catalog_product_bare_from(const struct sim_catalog *c, const struct sim_product_static *st,
                                   int64_t idx, int64_t keepa_min, struct sim_product *p)
{
    memset(p, 0, sizeof(*p));
    p->idx = idx;
    p->keepa_min = keepa_min;
#define LOAD(f) p->f = st->f;
    STATIC_FIELDS(LOAD)
#undef LOAD
    memcpy(p->asin, st->asin, sizeof(p->asin));
    product_clock(c, p, 0);
}

static void product_clock(const struct sim_catalog *c, struct sim_product *p, int fill_slots)
{
    int64_t t = p->keepa_min, idx = p->idx;
    p->epoch = epoch_of(c, p, t);
    p->epoch_start = c->volatility > 0 ? epoch_start_of(c, p, p->epoch) : t - 1440 * 200;
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
    if (c->economy == SIM_ECONOMY_CALIBRATED && fill_slots)
        slot_cache_fill(c, p);
}

void sim_catalog_product(const struct sim_catalog *c, int64_t idx, int64_t keepa_min,
                         struct sim_product *p)
{
    product_base(c, idx, keepa_min, p, 1);
    if (c->economy == SIM_ECONOMY_RICH)
        rich_values(c, p);
    else
        cal_values(c, p);
    p->availability_amazon = p->cur[0] > 0 ? 0 : -1;
}

void sim_catalog_product_light(const struct sim_catalog *c, int64_t idx, int64_t keepa_min,
                               struct sim_product *p)
{
    if (c->economy == SIM_ECONOMY_RICH) /* its feed reads the values now */
        sim_catalog_product(c, idx, keepa_min, p);
    else
        product_base(c, idx, keepa_min, p, 1);
}

void sim_catalog_product_bare(const struct sim_catalog *c, int64_t idx, int64_t keepa_min,
                              struct sim_product *p)
{
    if (c->economy == SIM_ECONOMY_RICH)
        sim_catalog_product(c, idx, keepa_min, p);
    else
        product_base(c, idx, keepa_min, p, 0);
}

void sim_catalog_product_levels(const struct sim_catalog *c, struct sim_product *p)
{
    if (c->economy == SIM_ECONOMY_CALIBRATED)
        slot_cache_fill(c, p);
}

/* ---------- the feed's view ---------- */

static int window_epochs(const struct sim_catalog *c, int dr)
{
    static const int days[SIM_DEAL_RANGES] = {1, 7, 30, 90};
    if (c->economy == SIM_ECONOMY_RICH || c->volatility <= 0)
        return 1;
    int64_t w = ((int64_t)days[dr < 0   ? 0
                               : dr > 3 ? 3
                                        : dr] *
                     1440 +
                 c->epoch_len_min - 1) /
                c->epoch_len_min;
    return w > WINDOW_EPOCHS ? WINDOW_EPOCHS : w < 1 ? 1 : (int)w;
}

int sim_catalog_window(const struct sim_catalog *c, const struct sim_product *p, int dr,
                       int64_t *minutes, int max)
{
    int64_t t = p->keepa_min;
    int n = 0, w = window_epochs(c, dr);
    if (max < 1)
        return 0;
    if (w <= 1 && (c->economy == SIM_ECONOMY_RICH || c->volatility <= 0)) {
        minutes[0] = t;
        return 1;
    }
    for (int64_t k = p->epoch - w + 1; k <= p->epoch && n < max; k++) {
        int64_t es = epoch_start_of(c, p, k), ds, de;
        struct prim pr;
        if (es <= t)
            minutes[n++] = es;
        if (n < max && dip_of(c, p, k, &ds, &de, &pr) && ds <= t)
            minutes[n++] = ds;
    }
    if (n < max && (n == 0 || minutes[n - 1] != t))
        minutes[n++] = t;
    return n;
}

/* The value of price type PT (0, 1, 2 or 3) in the state PR. */
static int64_t prim_value(const struct prim *pr, int pt)
{
    switch (pt) {
    case 0:
        return pr->amazon;
    case 1:
        if (pr->new_low < 0)
            return pr->amazon;
        return pr->amazon > 0 && pr->amazon < pr->new_low ? pr->amazon : pr->new_low;
    case 2:
        return pr->dip > 0 ? pr->dip : pr->used_low;
    default:
        return pr->rank;
    }
}

void sim_catalog_point(const struct sim_catalog *c, const struct sim_product *p, int pt, int dr,
                       int64_t t, struct sim_point *out)
{
    out->minute = t;
    if (dr < 0 || dr >= SIM_DEAL_RANGES)
        dr = 0;
    if (c->economy == SIM_ECONOMY_RICH || pt < 0 || pt > 3) {
        const struct sim_product *q = p;
        struct sim_product then;
        if (c->economy != SIM_ECONOMY_RICH) { /* P may be light: compute the product then */
            sim_catalog_product(c, p->idx, t, &then);
            q = &then;
        }
        out->cur = pt >= 0 && pt < SIM_CSV_TYPES ? q->cur[pt] : -1;
        out->avg = pt >= 0 && pt < SIM_CSV_TYPES ? q->avg_dr[dr][pt] : -2;
        out->last = pt >= 0 && pt < SIM_CSV_TYPES ? q->last[pt] : -1;
        out->rank = q->cur[3];
        out->amazon = q->cur[0] > 0;
        return;
    }
    /* The calibrated state at t, read the way sim_catalog_product reads it. */
    int64_t k = epoch_of(c, p, t), ds = 0, de = 0;
    struct prim pr, dp, pp;
    prim_at(c, p, k, &pr);
    int dipped = dip_of(c, p, k, &ds, &de, &dp) && ds <= t;
    int live = dipped && t < de;
    const struct prim *now = live ? &dp : &pr, *before;
    if (live) {
        before = &pr;
    } else if (dipped) {
        before = &dp;
    } else {
        prim_at(c, p, c->volatility > 0 ? k - 1 : k, &pp);
        before = &pp;
    }
    out->cur = prim_value(now, pt);
    out->last = out->cur >= 0 ? prim_value(before, pt) : -1;
    out->rank = pr.rank;
    out->amazon = now->amazon > 0;
    double mu, mf;
    level_means(c, p, t, (int64_t)SPAN_DAYS[dr] * 1440, &mu, &mf);
    out->avg = cal_avg(p, pt, mu, mf);
    if (out->avg < 0)
        out->avg = -2;
}

/* ---------- when a judgement's inputs can change ---------- */

static int add_break(int64_t *minutes, int *n, int max, int64_t t)
{
    if (*n >= max)
        return -E2BIG;
    minutes[(*n)++] = t;
    return 0;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

int sim_catalog_breaks(const struct sim_catalog *c, const struct sim_product *p, int64_t from,
                       int64_t to, int64_t *minutes, int max)
{
    int n = 0;
    if (to <= from)
        return 0;
    if (c->volatility > 0) {
        for (int64_t k = epoch_of(c, p, from); k <= epoch_of(c, p, to); k++) {
            int64_t es = epoch_start_of(c, p, k), ds, de;
            struct prim pr;
            if (es > from && es <= to && add_break(minutes, &n, max, es) != 0)
                return -E2BIG;
            if (!dip_of(c, p, k, &ds, &de, &pr))
                continue;
            if (ds > from && ds <= to && add_break(minutes, &n, max, ds) != 0)
                return -E2BIG;
            if (de > from && de <= to && add_break(minutes, &n, max, de) != 0)
                return -E2BIG;
        }
    }
    if (c->economy == SIM_ECONOMY_RICH) { /* the averages drift per Keepa day */
        for (int64_t d = (from / 1440 + 1) * 1440; d <= to; d += 1440)
            if (d > from && add_break(minutes, &n, max, d) != 0)
                return -E2BIG;
    }
    qsort(minutes, (size_t)n, sizeof(*minutes), cmp_i64);
    int k = 0;
    for (int i = 0; i < n; i++)
        if (k == 0 || minutes[k - 1] != minutes[i])
            minutes[k++] = minutes[i];
    return k;
}

/* ---------- the category tree ---------- */

void sim_catalog_placement(const struct sim_catalog *c, int64_t idx, int *root_slot, int *sub,
                           int *leaf)
{
    uint64_t hc = H(c, idx, T_CAT, 0);
    *root_slot = idx >= SIM_EXT_BASE && (idx & 1) ? 0 : pick_root(c, hc);
    *sub = 1 + (int)((hc >> 32) % SIM_SUBS);
    *leaf = 1 + (int)((hc >> 16) % SIM_LEAVES);
}

static void category_fill(const struct root *r, int slot, int sub, int leaf,
                          struct sim_category *out)
{
    memset(out, 0, sizeof(*out));
    out->root_slot = slot;
    out->sub = sub;
    out->leaf = leaf;
    out->media = r->media;
    if (sub == 0) {
        out->id = r->id;
        out->level = 0;
        snprintf(out->name, sizeof(out->name), "%s", r->name);
        /* "Books" -> "books_display_on_website", as Keepa's groups read */
        size_t k = 0;
        for (const char *q = r->name; *q && k + 1 < sizeof(out->display_group); q++)
            if ((*q >= 'A' && *q <= 'Z') || (*q >= 'a' && *q <= 'z'))
                out->display_group[k++] = (char)(*q | 0x20);
            else if (k > 0 && out->display_group[k - 1] != '_')
                out->display_group[k++] = '_';
        while (k > 0 && out->display_group[k - 1] == '_')
            k--;
        out->display_group[k] = '\0';
        snprintf(out->display_group + k, sizeof(out->display_group) - k, "_display_on_website");
        return;
    }
    int64_t sub_id = r->id * 10 + sub;
    if (leaf == 0) {
        out->id = sub_id;
        out->parent = r->id;
        out->level = 1;
        if (sub == 1)
            snprintf(out->name, sizeof(out->name), "%s", r->sub_name);
        else
            snprintf(out->name, sizeof(out->name), "%s %d", r->sub_name, sub);
        return;
    }
    out->id = sub_id * 100 + leaf;
    out->parent = sub_id;
    out->level = 2;
    if (sub == 1)
        snprintf(out->name, sizeof(out->name), "%s, Shelf %d", r->sub_name, leaf);
    else
        snprintf(out->name, sizeof(out->name), "%s %d, Shelf %d", r->sub_name, sub, leaf);
}

int sim_catalog_category(const struct sim_catalog *c, int64_t id, struct sim_category *out)
{
    int n;
    const struct root *roots = roots_of(c, &n);
    for (int i = 0; i < n; i++) {
        int64_t r = roots[i].id;
        if (id == r) {
            category_fill(&roots[i], i, 0, 0, out);
            return 0;
        }
        if (id > r * 10 && id <= r * 10 + SIM_SUBS) {
            category_fill(&roots[i], i, (int)(id - r * 10), 0, out);
            return 0;
        }
        int64_t sub = id / 100, leaf = id % 100;
        if (sub > r * 10 && sub <= r * 10 + SIM_SUBS && leaf >= 1 && leaf <= SIM_LEAVES) {
            category_fill(&roots[i], i, (int)(sub - r * 10), (int)leaf, out);
            return 0;
        }
    }
    return -ENOENT;
}

int64_t sim_catalog_category_child(const struct sim_catalog *c, int64_t id, int k)
{
    struct sim_category cat;
    if (sim_catalog_category(c, id, &cat) != 0 || k < 0)
        return -1;
    if (cat.level == 0)
        return k < SIM_SUBS ? id * 10 + 1 + k : -1;
    if (cat.level == 1)
        return k < SIM_LEAVES ? id * 100 + 1 + k : -1;
    return -1;
}

/* ---------- lightning deals ---------- */

#define LIGHT_P_CAL  0.004 /* a product's chance of a lightning deal on a given Keepa day */
#define LIGHT_P_RICH 0.02

static int lightning_of_day(const struct sim_catalog *c, int64_t idx, int64_t day,
                            struct sim_lightning *out)
{
    uint64_t h = H(c, idx, T_LIGHT, day);
    double chance = c->economy == SIM_ECONOMY_RICH ? LIGHT_P_RICH : LIGHT_P_CAL;
    if (u16(h, 0) >= chance)
        return 0;
    static const int DURATION[3] = {240, 360, 720};
    out->start = day * 1440 + (int64_t)((h >> 16) % 1440);
    out->end = out->start + DURATION[(h >> 32) % 3];
    out->percent_off = 15 + (int)((h >> 40) % 36);
    out->deal_id = mix64(h ^ (uint64_t)idx);
    return 1;
}

int sim_catalog_lightning(const struct sim_catalog *c, int64_t idx, int64_t t,
                          struct sim_lightning *out)
{
    int64_t day = t >= 0 ? t / 1440 : -((-t + 1439) / 1440);
    struct sim_lightning best;
    int found = 0;
    for (int64_t d = day - 1; d <= day + 1; d++) {
        struct sim_lightning l;
        if (!lightning_of_day(c, idx, d, &l) || l.end <= t || l.start > t + 1440)
            continue;
        if (!found || l.start < best.start)
            best = l, found = 1;
    }
    if (!found)
        return 0;
    struct sim_product *p = malloc(sizeof(*p)); /* rare: only now is the product needed */
    if (p == NULL)
        return 0;
    product_base(c, idx, t, p, 0);
    int has_new = p->has_new;
    free(p);
    if (!has_new)
        return 0;
    *out = best;
    if (t < best.start) {
        out->state = SIM_LD_UPCOMING;
        out->percent_claimed = 0;
        return 1;
    }
    /* claimed at a drawn pace: 100 % after 40-160 % of the deal's length */
    double pace = 0.4 + 1.2 * u16(H(c, idx, T_LIGHT, best.start), 1);
    double claimed = (double)(t - best.start) / ((double)(best.end - best.start) * pace) * 100;
    out->percent_claimed = claimed >= 100 ? 100 : (int)claimed;
    out->state = out->percent_claimed >= 100 ? SIM_LD_SOLDOUT : SIM_LD_AVAILABLE;
    return 1;
}

const char *sim_lightning_state_name(int state)
{
    static const char *const NAMES[] = {"AVAILABLE",    "UPCOMING", "WAITLIST",  "SOLDOUT",
                                        "WAITLISTFULL", "EXPIRED",  "SUPPRESSED"};
    return state >= 0 && state <= SIM_LD_SUPPRESSED ? NAMES[state] : "?";
}
