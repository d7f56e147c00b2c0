/*
 * decode.c: streaming Keepa body decoder on yajl callbacks. See decode.h.
 *
 * Structure: a stack of frames, one per open JSON container we care about. Each frame names
 * what the container is (ctx) and, for objects, which key is current; for arrays, the index
 * of the next element. A container we do not care about is not pushed: it only bumps
 * skip_depth, and squeeze() then keeps its inside away from yajl altogether (it only checks
 * bracket balance and depth), so unknown subtrees (csv histories, images, buyBoxStats: most
 * of a product body) cost a byte scan. Numbers arrive through yajl_number as text and are
 * converted only when a frame wants them, so out-of-range or fractional numbers in unknown
 * fields never fail the body.
 *
 * yajl is fed in slices of at most FEED_SLICE bytes, and its tracked heap is checked after
 * every slice: yajl copies a token only while it spans a slice boundary, so its buffers stay
 * below max_token_bytes plus a slice, and a 50 MB string is refused instead of buffered.
 */
#include "keepa/decode.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yajl/yajl_parse.h>

#define FEED_SLICE   (64u * 1024u)
#define STAGE_BYTES  (16u * 1024u)
#define STACK_MAX    64 /* hard cap on frames; max_depth is checked before this */
#define NUM_TEXT_MAX 64

/* What a frame is. */
enum ctx {
    C_ROOT = 1,
    C_ERROR,
    C_PRODUCTS,
    C_PRODUCT,
    C_PCATS,
    C_STATS,
    C_STATS_ARR, /* aux = which per-index array */
    C_OFFERS,
    C_OFFER,
    C_OFFERCSV,
    C_LIVE_ORDER,
    C_FBAFEES,
    C_DEALS,
    C_DR,
    C_DEAL,
    C_DCATS,
    C_DEAL_ARR1, /* aux = which 1-D array */
    C_DEAL_ARR2, /* aux = which 2-D array, outer */
    C_DEAL_ROW,  /* aux = which 2-D array, row = parent idx */
    C_SELLERS,
    C_SELLER,
    C_ASINLIST,
    C_HAZMAT,      /* hazardousMaterials: only whether it lists anything */
    C_CATTREE,     /* categoryTree: [{catId, name}, ...], root first */
    C_CATNODE,     /* one categoryTree node; idx = its position */
    C_PCODES,      /* eanList / upcList: strings */
    C_LDEALS,      /* lightningDeals: [LightningDeal, ...] */
    C_LDEAL,       /* one LightningDeal */
    C_BESTSELLERS, /* bestSellersList: {domainId, lastUpdate, categoryId, asinList} */
};

struct frame {
    uint8_t ctx;
    uint8_t aux;
    int16_t key; /* objects: id of the current key, -1 unknown */
    int32_t idx; /* arrays: index of the next element; rows: the row */
};

/* Keys, per object kind. The id is the position in the table. */
static const char *const root_keys[] = {
    "timestamp",          "tokensLeft",     "refillIn",           "refillRate",
    "tokenFlowReduction", "tokensConsumed", "processingTimeInMs", "error",
    "products",           "deals",          "dealsCached",        "sellers",
    "asinList",           "totalResults",   "lightningDeals",     "bestSellersList"};
enum {
    RK_TIMESTAMP,
    RK_TOKENS_LEFT,
    RK_REFILL_IN,
    RK_REFILL_RATE,
    RK_FLOW,
    RK_CONSUMED,
    RK_PROCESSING,
    RK_ERROR,
    RK_PRODUCTS,
    RK_DEALS,
    RK_DEALS_CACHED,
    RK_SELLERS,
    RK_ASIN_LIST,
    RK_TOTAL_RESULTS,
    RK_LIGHTNING,
    RK_BESTSELLERS
};

static const char *const error_keys[] = {"type", "message", "details"};

static const char *const product_keys[] = {"asin",
                                           "title",
                                           "domainId",
                                           "productType",
                                           "rootCategory",
                                           "categories",
                                           "lastUpdate",
                                           "lastPriceChange",
                                           "stats",
                                           "offers",
                                           "liveOffersOrder",
                                           "fbaFees",
                                           "referralFeePercentage",
                                           "referralFeePercent",
                                           "offersSuccessful",
                                           "monthlySold",
                                           "availabilityAmazon",
                                           "packageWeight",
                                           "parentAsin",
                                           "variableClosingFee",
                                           "isHeatSensitive",
                                           "isAdultProduct",
                                           "hazardousMaterials",
                                           "packageHeight",
                                           "packageLength",
                                           "packageWidth",
                                           "categoryTree",
                                           "eanList",
                                           "upcList"};
enum {
    PK_ASIN,
    PK_TITLE,
    PK_DOMAIN,
    PK_TYPE,
    PK_ROOT_CAT,
    PK_CATEGORIES,
    PK_LAST_UPDATE,
    PK_LAST_PRICE_CHANGE,
    PK_STATS,
    PK_OFFERS,
    PK_LIVE_ORDER,
    PK_FBA_FEES,
    PK_REFERRAL_PCT_D,
    PK_REFERRAL_PCT_I,
    PK_OFFERS_OK,
    PK_MONTHLY_SOLD,
    PK_AVAILABILITY,
    PK_PACKAGE_WEIGHT,
    PK_PARENT_ASIN,
    PK_CLOSING_FEE,
    PK_HEAT_SENSITIVE,
    PK_ADULT,
    PK_HAZMAT,
    PK_PACKAGE_HEIGHT,
    PK_PACKAGE_LENGTH,
    PK_PACKAGE_WIDTH,
    PK_CATEGORY_TREE,
    PK_EAN_LIST,
    PK_UPC_LIST
};

static const char *const stats_keys[] = {"current",
                                         "avg",
                                         "avg30",
                                         "avg90",
                                         "avg180",
                                         "avg365",
                                         "salesRankDrops30",
                                         "salesRankDrops90",
                                         "salesRankDrops180",
                                         "salesRankDrops365",
                                         "buyBoxPrice",
                                         "buyBoxShipping",
                                         "buyBoxIsFBA",
                                         "buyBoxIsAmazon",
                                         "offerCountFBA",
                                         "offerCountFBM",
                                         "totalOfferCount",
                                         "retrievedOfferCount",
                                         "buyBoxSellerId",
                                         "buyBoxIsUsed",
                                         "buyBoxUsedPrice",
                                         "buyBoxUsedShipping"};
enum {
    SK_CURRENT, /* SK_CURRENT..SK_AVG365 are the per-index arrays, in struct order */
    SK_AVG,
    SK_AVG30,
    SK_AVG90,
    SK_AVG180,
    SK_AVG365,
    SK_DROPS30,
    SK_DROPS90,
    SK_DROPS180,
    SK_DROPS365,
    SK_BB_PRICE,
    SK_BB_SHIPPING,
    SK_BB_FBA,
    SK_BB_AMAZON,
    SK_OC_FBA,
    SK_OC_FBM,
    SK_TOTAL_OC,
    SK_RETRIEVED_OC,
    SK_BB_SELLER,
    SK_BB_IS_USED,
    SK_BB_USED_PRICE,
    SK_BB_USED_SHIPPING
};

static const char *const offer_keys[] = {"lastSeen", "sellerId", "offerCSV", "condition",
                                         "isPrime",  "isAmazon", "isFBA",    "offerId"};
enum { OK_LAST_SEEN, OK_SELLER, OK_CSV, OK_CONDITION, OK_PRIME, OK_AMAZON, OK_FBA, OK_ID };

static const char *const fba_keys[] = {"pickAndPackFee"};

static const char *const catnode_keys[] = {"catId", "name"};

static const char *const deals_keys[] = {"dr"};

static const char *const deal_keys[] = {"asin",
                                        "title",
                                        "rootCat",
                                        "categories",
                                        "lastUpdate",
                                        "creationDate",
                                        "current",
                                        "currentSince",
                                        "deltaLast",
                                        "avg",
                                        "delta",
                                        "deltaPercent",
                                        "salesRankDrops30",
                                        "salesRankDrops90",
                                        "salesRankDrops180",
                                        "salesRankDrops365",
                                        "warehouseCondition"};
enum {
    DK_ASIN,
    DK_TITLE,
    DK_ROOT_CAT,
    DK_CATEGORIES,
    DK_LAST_UPDATE,
    DK_CREATION,
    DK_CURRENT, /* DK_CURRENT..DK_DELTA_LAST: 1-D arrays */
    DK_CURRENT_SINCE,
    DK_DELTA_LAST,
    DK_AVG, /* DK_AVG..DK_DELTA_PCT: 2-D arrays */
    DK_DELTA,
    DK_DELTA_PCT,
    DK_DROPS30,
    DK_DROPS90,
    DK_DROPS180,
    DK_DROPS365,
    DK_WAREHOUSE
};

static const char *const ldeal_keys[] = {
    "asin",         "title",           "sellerId",           "sellerName", "dealId",
    "domainId",     "lastUpdate",      "startTime",          "endTime",    "dealPrice",
    "currentPrice", "percentClaimed",  "percentOff",         "rating",     "totalReviews",
    "dealState",    "isPrimeEligible", "isFulfilledByAmazon"};
enum {
    LK_ASIN,
    LK_TITLE,
    LK_SELLER,
    LK_SELLER_NAME,
    LK_DEAL_ID,
    LK_DOMAIN,
    LK_LAST_UPDATE,
    LK_START,
    LK_END,
    LK_DEAL_PRICE,
    LK_CURRENT_PRICE,
    LK_CLAIMED,
    LK_OFF,
    LK_RATING,
    LK_REVIEWS,
    LK_STATE,
    LK_PRIME,
    LK_FBA
};

static const char *const bestsellers_keys[] = {"categoryId", "lastUpdate", "asinList"};
enum { BK_CATEGORY, BK_LAST_UPDATE, BK_ASIN_LIST };

static const char *const seller_keys[] = {
    "sellerId",          "sellerName", "domainId", "currentRating", "currentRatingCount",
    "ratingsLast30Days", "isScammer",  "hasFBA",   "lastUpdate"};
enum {
    EK_ID,
    EK_NAME,
    EK_DOMAIN,
    EK_RATING,
    EK_RATING_COUNT,
    EK_RATINGS_30,
    EK_SCAMMER,
    EK_HAS_FBA,
    EK_LAST_UPDATE
};

/*
 * The JSON kind each extracted product field must have (kp_product.type_errors). J_ANY is not
 * checked: unknown keys, and everything outside products (a garbled deal, seller or envelope
 * field only leaves its default). null passes everywhere: Keepa sends it for "absent".
 */
enum jkind { J_ANY = 0, J_NUM, J_STR, J_BOOL, J_OBJ, J_ARR };

static const uint8_t product_kinds[] = {[PK_ASIN] = J_STR,
                                        [PK_TITLE] = J_STR,
                                        [PK_DOMAIN] = J_NUM,
                                        [PK_TYPE] = J_NUM,
                                        [PK_ROOT_CAT] = J_NUM,
                                        [PK_CATEGORIES] = J_ARR,
                                        [PK_LAST_UPDATE] = J_NUM,
                                        [PK_LAST_PRICE_CHANGE] = J_NUM,
                                        [PK_STATS] = J_OBJ,
                                        [PK_OFFERS] = J_ARR,
                                        [PK_LIVE_ORDER] = J_ARR,
                                        [PK_FBA_FEES] = J_OBJ,
                                        [PK_REFERRAL_PCT_D] = J_NUM,
                                        [PK_REFERRAL_PCT_I] = J_NUM,
                                        [PK_OFFERS_OK] = J_BOOL,
                                        [PK_MONTHLY_SOLD] = J_NUM,
                                        [PK_AVAILABILITY] = J_NUM,
                                        [PK_PACKAGE_WEIGHT] = J_NUM,
                                        [PK_PARENT_ASIN] = J_STR,
                                        [PK_CLOSING_FEE] = J_NUM,
                                        [PK_HEAT_SENSITIVE] = J_BOOL,
                                        [PK_ADULT] = J_BOOL,
                                        [PK_HAZMAT] = J_ARR,
                                        [PK_PACKAGE_HEIGHT] = J_NUM,
                                        [PK_PACKAGE_LENGTH] = J_NUM,
                                        [PK_PACKAGE_WIDTH] = J_NUM,
                                        [PK_CATEGORY_TREE] = J_ARR,
                                        [PK_EAN_LIST] = J_ARR,
                                        [PK_UPC_LIST] = J_ARR};
_Static_assert(sizeof(product_kinds) == sizeof(product_keys) / sizeof(product_keys[0]),
               "a kind for every product key");

static const uint8_t stats_kinds[] = {
    [SK_CURRENT] = J_ARR,         [SK_AVG] = J_ARR,         [SK_AVG30] = J_ARR,
    [SK_AVG90] = J_ARR,           [SK_AVG180] = J_ARR,      [SK_AVG365] = J_ARR,
    [SK_DROPS30] = J_NUM,         [SK_DROPS90] = J_NUM,     [SK_DROPS180] = J_NUM,
    [SK_DROPS365] = J_NUM,        [SK_BB_PRICE] = J_NUM,    [SK_BB_SHIPPING] = J_NUM,
    [SK_BB_FBA] = J_BOOL,         [SK_BB_AMAZON] = J_BOOL,  [SK_OC_FBA] = J_NUM,
    [SK_OC_FBM] = J_NUM,          [SK_TOTAL_OC] = J_NUM,    [SK_RETRIEVED_OC] = J_NUM,
    [SK_BB_SELLER] = J_STR,       [SK_BB_IS_USED] = J_BOOL, [SK_BB_USED_PRICE] = J_NUM,
    [SK_BB_USED_SHIPPING] = J_NUM};
_Static_assert(sizeof(stats_kinds) == sizeof(stats_keys) / sizeof(stats_keys[0]),
               "a kind for every stats key");

static const uint8_t offer_kinds[] = {
    [OK_LAST_SEEN] = J_NUM, [OK_SELLER] = J_STR,  [OK_CSV] = J_ARR,  [OK_CONDITION] = J_NUM,
    [OK_PRIME] = J_BOOL,    [OK_AMAZON] = J_BOOL, [OK_FBA] = J_BOOL, [OK_ID] = J_NUM};
_Static_assert(sizeof(offer_kinds) == sizeof(offer_keys) / sizeof(offer_keys[0]),
               "a kind for every offer key");

/* One buffered offer before liveOffersOrder is applied. */
struct raw_offer {
    struct kp_offer o;
    int32_t triple[3]; /* values of the offerCSV triple being read */
};

struct kp_decoder {
    struct kp_decode_opts opts;
    struct kp_decode_cbs cbs;
    yajl_handle yh;
    yajl_alloc_funcs af;
    size_t heap_now, heap_peak;
    size_t fed;
    int err;
    char errmsg[200];
    bool root_seen;

    /* Whitespace squeezer state (see squeeze()). */
    bool sq_in_str, sq_esc, sq_pending_ws;
    unsigned char sq_last;
    unsigned sq_drop_levels; /* skipped containers whose rest is being dropped */
    unsigned sq_rel;         /* nesting inside the dropped region */
    unsigned char stage[STAGE_BYTES];

    unsigned nframes;
    unsigned skip_depth;
    struct frame st[STACK_MAX];

    struct kp_envelope env;

    /* Objects under construction (reused). */
    struct kp_product prod;
    struct kp_deal deal;
    struct kp_seller seller;
    struct kp_lightning_deal ldeal;
    bool referral_from_double;
    uint32_t n_raw;
    struct raw_offer raw[KP_RAW_OFFERS];
    uint32_t n_live;
    int32_t live_order[KP_MAX_OFFERS];
    bool live_order_truncated;
};

/* ---- tracked allocation for yajl ---- */

#define HDR 16 /* keeps max_align_t alignment for yajl's buffers */

static void *track_malloc(void *ctx, size_t sz)
{
    struct kp_decoder *d = ctx;
    unsigned char *p = malloc(sz + HDR);
    if (p == NULL)
        return NULL;
    memcpy(p, &sz, sizeof(sz));
    d->heap_now += sz;
    if (d->heap_now > d->heap_peak)
        d->heap_peak = d->heap_now;
    return p + HDR;
}

static void track_free(void *ctx, void *ptr)
{
    struct kp_decoder *d = ctx;
    if (ptr == NULL)
        return;
    unsigned char *p = (unsigned char *)ptr - HDR;
    size_t sz;
    memcpy(&sz, p, sizeof(sz));
    d->heap_now -= sz;
    free(p);
}

static void *track_realloc(void *ctx, void *ptr, size_t sz)
{
    struct kp_decoder *d = ctx;
    if (ptr == NULL)
        return track_malloc(ctx, sz);
    unsigned char *p = (unsigned char *)ptr - HDR;
    size_t old;
    memcpy(&old, p, sizeof(old));
    unsigned char *np = realloc(p, sz + HDR);
    if (np == NULL)
        return NULL;
    memcpy(np, &sz, sizeof(sz));
    d->heap_now = d->heap_now - old + sz;
    if (d->heap_now > d->heap_peak)
        d->heap_peak = d->heap_now;
    return np + HDR;
}

/* ---- helpers ---- */

static int fail(struct kp_decoder *d, int err, const char *what)
{
    if (d->err == 0) {
        d->err = err;
        snprintf(d->errmsg, sizeof(d->errmsg), "decode: %s (near byte %zu)", what, d->fed);
    }
    return 0; /* yajl: cancel */
}

static int fail_depth(struct kp_decoder *d)
{
    if (d->err == 0) {
        d->err = -ELOOP;
        snprintf(d->errmsg, sizeof(d->errmsg),
                 "decode: JSON nested deeper than %u levels near byte %zu", d->opts.max_depth,
                 d->fed);
    }
    return 0;
}

static int key_id(const char *const *table, size_t n, const unsigned char *k, size_t len)
{
    for (size_t i = 0; i < n; i++) {
        const char *t = table[i];
        if (strlen(t) == len && memcmp(t, k, len) == 0)
            return (int)i;
    }
    return -1;
}

#define KEY_ID(table, k, len) key_id(table, sizeof(table) / sizeof(table[0]), k, len)

/* Bounded copy of a decoded JSON string, cut at a UTF-8 character boundary. */
static bool copy_str(char *dst, size_t dstsz, const unsigned char *s, size_t len)
{
    bool truncated = false;
    if (len >= dstsz) {
        len = dstsz - 1;
        /* Do not end inside a multi-byte sequence. */
        while (len > 0 && (s[len] & 0xC0) == 0x80)
            len--;
        truncated = true;
    }
    memcpy(dst, s, len);
    dst[len] = '\0';
    return truncated;
}

/* A parsed number: integer tokens fit int64 exactly; others are doubles (or unusable). */
struct num {
    bool ok;     /* a finite value */
    bool is_int; /* integer token within int64 */
    int64_t i;
    double f;
};

/*
 * A server double within a range every consumer can convert to an integer without undefined
 * behaviour (|v| <= 2^53, where every integer is exact), else unusable: the envelope's token
 * figures are cast to int64 by the spending code.
 */
#define KP_DOUBLE_MAX 9007199254740992.0

static bool num_bounded(struct num n, double lo, double hi)
{
    return n.ok && isfinite(n.f) && n.f >= lo && n.f <= hi;
}

static struct num parse_num(const char *s, size_t len)
{
    struct num n = {0};
    /* Fast path: -?[0-9]{1,18} */
    size_t k = 0;
    bool neg = false;
    if (len > 0 && s[0] == '-') {
        neg = true;
        k = 1;
    }
    if (len > k && len - k <= 18) {
        int64_t v = 0;
        size_t j = k;
        for (; j < len; j++) {
            unsigned c = (unsigned char)s[j] - '0';
            if (c > 9)
                break;
            v = v * 10 + (int64_t)c;
        }
        if (j == len) {
            n.ok = n.is_int = true;
            n.i = neg ? -v : v;
            n.f = (double)n.i;
            return n;
        }
    }
    if (len >= NUM_TEXT_MAX)
        return n;
    char buf[NUM_TEXT_MAX];
    memcpy(buf, s, len);
    buf[len] = '\0';
    bool integral = strpbrk(buf, ".eE") == NULL;
    errno = 0;
    if (integral) {
        long long v = strtoll(buf, NULL, 10);
        if (errno == 0) {
            n.ok = n.is_int = true;
            n.i = v;
            n.f = (double)v;
            return n;
        }
    }
    errno = 0;
    double f = strtod(buf, NULL);
    if (errno == 0 && isfinite(f)) {
        n.ok = true;
        n.f = f;
    }
    return n;
}

static bool num_i32(struct num n, int32_t *out)
{
    if (n.is_int && n.i >= INT32_MIN && n.i <= INT32_MAX) {
        *out = (int32_t)n.i;
        return true;
    }
    return false;
}

static void set_i32(int32_t *dst, struct num n)
{
    int32_t v;
    if (num_i32(n, &v))
        *dst = v;
}

static void set_i64(int64_t *dst, struct num n)
{
    if (n.is_int)
        *dst = n.i;
}

static void init_product(struct kp_decoder *d)
{
    struct kp_product *p = &d->prod;
    /* Offers are filled at emission; only the head of the struct needs resetting. */
    memset(p, 0, offsetof(struct kp_product, offers));
    p->domain_id = -1;
    p->product_type = -1;
    p->root_category = -1;
    p->last_update_keepa_min = -1;
    p->last_price_change_keepa_min = -1;
    memset(&p->stats, 0xff, sizeof(p->stats)); /* every int field and array entry = -1 */
    p->stats.present = false;
    p->stats.buy_box_seller_id[0] = '\0';
    p->monthly_sold = -1;
    p->availability_amazon = -2;
    p->package_weight_g = -1;
    p->package_height_mm = -1;
    p->package_length_mm = -1;
    p->package_width_mm = -1;
    p->variable_closing_fee_cents = -1;
    p->is_heat_sensitive = -1;
    p->is_adult = -1;
    p->hazmat = -1;
    p->pick_and_pack_fee_cents = -1;
    p->referral_fee_percent = -1;
    p->offers_successful = -1;
    d->referral_from_double = false;
    d->n_raw = 0;
    d->n_live = 0;
    d->live_order_truncated = false;
}

static void init_deal(struct kp_decoder *d)
{
    struct kp_deal *x = &d->deal;
    memset(x, 0xff, sizeof(*x)); /* -1 everywhere, then fix the rest */
    x->asin[0] = '\0';
    x->title[0] = '\0';
    x->title_truncated = false;
    x->n_categories = 0;
    x->n_categories_total = 0;
    x->n_price = 0;
}

static void init_ldeal(struct kp_lightning_deal *x)
{
    memset(x, 0xff, sizeof(*x)); /* -1 everywhere, then fix the rest */
    x->asin[0] = '\0';
    x->title[0] = '\0';
    x->title_truncated = false;
    x->seller_id[0] = '\0';
    x->seller_name[0] = '\0';
    x->deal_id[0] = '\0';
    x->state = KP_LD_UNKNOWN;
}

static const char *const ld_state_names[] = {
    [KP_LD_UNKNOWN] = "UNKNOWN",   [KP_LD_AVAILABLE] = "AVAILABLE",
    [KP_LD_UPCOMING] = "UPCOMING", [KP_LD_WAITLIST] = "WAITLIST",
    [KP_LD_SOLDOUT] = "SOLDOUT",   [KP_LD_WAITLISTFULL] = "WAITLISTFULL",
    [KP_LD_EXPIRED] = "EXPIRED",   [KP_LD_SUPPRESSED] = "SUPPRESSED"};

const char *kp_ld_state_name(int state)
{
    return state > KP_LD_UNKNOWN && state <= KP_LD_SUPPRESSED ? ld_state_names[state] : "UNKNOWN";
}

static int8_t ld_state_of(const unsigned char *s, size_t len)
{
    for (int i = KP_LD_AVAILABLE; i <= KP_LD_SUPPRESSED; i++)
        if (strlen(ld_state_names[i]) == len && memcmp(ld_state_names[i], s, len) == 0)
            return (int8_t)i;
    return KP_LD_UNKNOWN;
}

static void init_seller(struct kp_seller *s)
{
    memset(s, 0xff, sizeof(*s));
    s->seller_id[0] = '\0';
    s->name[0] = '\0';
}

static void init_raw_offer(struct raw_offer *r, uint32_t index)
{
    memset(r, 0xff, sizeof(*r));
    r->o.seller_id[0] = '\0';
    r->o.index = (int16_t)index;
    r->o.condition = -1;
}

/* Builds prod.offers from the buffered raw offers and liveOffersOrder. */
static void finish_offers(struct kp_decoder *d)
{
    struct kp_product *p = &d->prod;
    p->n_offers = 0;
    if (p->live_order_present) {
        for (uint32_t i = 0; i < d->n_live && p->n_offers < KP_MAX_OFFERS; i++) {
            int32_t k = d->live_order[i];
            if (k >= 0 && (uint32_t)k < d->n_raw)
                p->offers[p->n_offers++] = d->raw[k].o;
            else if (k >= 0 && (uint32_t)k < p->n_offers_seen)
                p->offers_truncated = true; /* existed, but beyond KP_RAW_OFFERS */
        }
        if (d->live_order_truncated)
            p->offers_truncated = true;
    } else {
        for (uint32_t i = 0; i < d->n_raw && p->n_offers < KP_MAX_OFFERS; i++)
            p->offers[p->n_offers++] = d->raw[i].o;
        if (p->n_offers_seen > p->n_offers)
            p->offers_truncated = true;
    }
}

static struct frame *top(struct kp_decoder *d)
{
    return d->nframes ? &d->st[d->nframes - 1] : NULL;
}

/* After a value (scalar or closed container) at the current position. */
static void value_done(struct kp_decoder *d)
{
    struct frame *f = top(d);
    if (f != NULL && f->key == -2) /* array frames use key -2 */
        f->idx++;
}

static int push(struct kp_decoder *d, uint8_t ctx, uint8_t aux, bool is_array, int32_t idx)
{
    if (d->nframes + d->skip_depth + 1 > d->opts.max_depth || d->nframes >= STACK_MAX)
        return fail_depth(d);
    struct frame *f = &d->st[d->nframes++];
    f->ctx = ctx;
    f->aux = aux;
    f->key = is_array ? -2 : -1;
    f->idx = idx;
    return 1;
}

static int skip_container(struct kp_decoder *d)
{
    if (d->nframes + d->skip_depth + 1 > d->opts.max_depth)
        return fail_depth(d);
    d->skip_depth++;
    return 1;
}

/* The kind the value at F's current position must have. */
static uint8_t expected_kind(const struct frame *f)
{
    switch (f->ctx) {
    case C_PRODUCT:
        return f->key >= 0 ? product_kinds[f->key] : J_ANY;
    case C_STATS:
        return f->key >= 0 ? stats_kinds[f->key] : J_ANY;
    case C_OFFER:
        return f->key >= 0 ? offer_kinds[f->key] : J_ANY;
    case C_FBAFEES:
        return f->key == 0 ? J_NUM : J_ANY;
    case C_PCATS:
    case C_STATS_ARR:
    case C_OFFERCSV:
    case C_LIVE_ORDER:
        return J_NUM;
    case C_PCODES:
        return J_STR;
    case C_OFFERS:
        return J_OBJ;
    default:
        return J_ANY;
    }
}

/* Counts a value of kind GOT (never null) at F's position if the field wants another kind. */
static void check_kind(struct kp_decoder *d, const struct frame *f, uint8_t got)
{
    uint8_t want = expected_kind(f);
    if (want != J_ANY && want != got)
        d->prod.type_errors++;
}

/* ---- scalars ---- */

enum skind { S_NULL, S_BOOL, S_NUM, S_STR };

struct scalar {
    enum skind kind;
    int b;
    const unsigned char *s;
    size_t len;
};

static struct num scalar_num(const struct scalar *v)
{
    struct num n = {0};
    if (v->kind == S_NUM)
        n = parse_num((const char *)v->s, v->len);
    return n;
}

static int8_t scalar_tri(const struct scalar *v)
{
    if (v->kind == S_BOOL)
        return (int8_t)(v->b ? 1 : 0);
    return -1;
}

static void envelope_scalar(struct kp_decoder *d, int key, const struct scalar *v)
{
    struct kp_envelope *e = &d->env;
    struct num n = scalar_num(v);
    switch (key) {
    case RK_TIMESTAMP:
        if (n.is_int) {
            e->timestamp_ms = n.i;
            e->have |= KP_ENV_TIMESTAMP;
        }
        break;
    case RK_TOKENS_LEFT:
        if (num_bounded(n, -KP_DOUBLE_MAX, KP_DOUBLE_MAX)) {
            e->tokens_left = n.f;
            e->have |= KP_ENV_TOKENS_LEFT;
        }
        break;
    case RK_REFILL_IN:
        if (n.ok) {
            e->refill_in_ms = n.is_int ? n.i : (int64_t)llround(fmin(fmax(n.f, -1e15), 1e15));
            e->have |= KP_ENV_REFILL_IN;
        }
        break;
    case RK_REFILL_RATE:
        if (num_bounded(n, -KP_DOUBLE_MAX, KP_DOUBLE_MAX)) {
            e->refill_rate = n.f;
            e->have |= KP_ENV_REFILL_RATE;
        }
        break;
    case RK_FLOW:
        if (num_bounded(n, -KP_DOUBLE_MAX, KP_DOUBLE_MAX)) {
            e->token_flow_reduction = n.f;
            e->have |= KP_ENV_FLOW_REDUCTION;
        }
        break;
    case RK_CONSUMED:
        if (num_bounded(n, -KP_DOUBLE_MAX, KP_DOUBLE_MAX)) {
            e->tokens_consumed = n.f;
            e->have |= KP_ENV_TOKENS_CONSUMED;
        }
        break;
    case RK_PROCESSING:
        if (n.ok) {
            e->processing_ms = n.is_int ? n.i : (int64_t)llround(fmin(fmax(n.f, -1e15), 1e15));
            e->have |= KP_ENV_PROCESSING;
        }
        break;
    case RK_ERROR:
        if (v->kind == S_STR) { /* tolerate "error": "text" */
            copy_str(e->error_message, sizeof(e->error_message), v->s, v->len);
            e->have |= KP_ENV_ERROR;
        }
        break;
    case RK_PRODUCTS:
        e->have |= KP_ENV_PRODUCTS; /* products: null */
        if (v->kind != S_NULL)
            e->shape_errors++;
        break;
    case RK_DEALS_CACHED:
        e->deals_cached = scalar_tri(v);
        break;
    case RK_TOTAL_RESULTS:
        set_i64(&e->total_results, n);
        break;
    default:
        break;
    }
}

static void product_scalar(struct kp_decoder *d, int key, const struct scalar *v)
{
    struct kp_product *p = &d->prod;
    switch (key) {
    case PK_ASIN:
        if (v->kind == S_STR)
            copy_str(p->asin, sizeof(p->asin), v->s, v->len);
        break;
    case PK_TITLE:
        if (v->kind == S_STR)
            p->title_truncated = copy_str(p->title, sizeof(p->title), v->s, v->len);
        break;
    case PK_DOMAIN:
        set_i32(&p->domain_id, scalar_num(v));
        break;
    case PK_TYPE:
        set_i32(&p->product_type, scalar_num(v));
        break;
    case PK_ROOT_CAT:
        set_i64(&p->root_category, scalar_num(v));
        break;
    case PK_LAST_UPDATE:
        set_i64(&p->last_update_keepa_min, scalar_num(v));
        break;
    case PK_LAST_PRICE_CHANGE:
        set_i64(&p->last_price_change_keepa_min, scalar_num(v));
        break;
    case PK_REFERRAL_PCT_D: {
        /* A percentage: anything outside 0..100 is not one (the judgement multiplies it). */
        struct num n = scalar_num(v);
        if (num_bounded(n, 0, 100)) {
            p->referral_fee_percent = n.f;
            d->referral_from_double = true;
        }
        break;
    }
    case PK_REFERRAL_PCT_I: {
        struct num n = scalar_num(v);
        if (num_bounded(n, 0, 100) && !d->referral_from_double)
            p->referral_fee_percent = n.f;
        break;
    }
    case PK_OFFERS_OK:
        p->offers_successful = scalar_tri(v);
        break;
    case PK_MONTHLY_SOLD:
        set_i32(&p->monthly_sold, scalar_num(v));
        break;
    case PK_AVAILABILITY:
        set_i32(&p->availability_amazon, scalar_num(v));
        break;
    case PK_PACKAGE_WEIGHT:
        set_i32(&p->package_weight_g, scalar_num(v));
        break;
    case PK_PARENT_ASIN:
        if (v->kind == S_STR)
            copy_str(p->parent_asin, sizeof(p->parent_asin), v->s, v->len);
        break;
    case PK_CLOSING_FEE:
        set_i32(&p->variable_closing_fee_cents, scalar_num(v));
        break;
    case PK_HEAT_SENSITIVE:
        p->is_heat_sensitive = scalar_tri(v);
        break;
    case PK_ADULT:
        p->is_adult = scalar_tri(v);
        break;
    case PK_HAZMAT:
        if (v->kind == S_NULL)
            p->hazmat = 0; /* Keepa lists nothing */
        break;
    case PK_PACKAGE_HEIGHT:
        set_i32(&p->package_height_mm, scalar_num(v));
        break;
    case PK_PACKAGE_LENGTH:
        set_i32(&p->package_length_mm, scalar_num(v));
        break;
    case PK_PACKAGE_WIDTH:
        set_i32(&p->package_width_mm, scalar_num(v));
        break;
    default:
        break;
    }
}

static void stats_scalar(struct kp_decoder *d, int key, const struct scalar *v)
{
    struct kp_stats *s = &d->prod.stats;
    struct num n = scalar_num(v);
    switch (key) {
    case SK_DROPS30:
        set_i32(&s->sales_rank_drops30, n);
        break;
    case SK_DROPS90:
        set_i32(&s->sales_rank_drops90, n);
        break;
    case SK_DROPS180:
        set_i32(&s->sales_rank_drops180, n);
        break;
    case SK_DROPS365:
        set_i32(&s->sales_rank_drops365, n);
        break;
    case SK_BB_PRICE:
        set_i32(&s->buy_box_price_cents, n);
        break;
    case SK_BB_SHIPPING:
        set_i32(&s->buy_box_shipping_cents, n);
        break;
    case SK_BB_FBA:
        s->buy_box_is_fba = scalar_tri(v);
        break;
    case SK_BB_AMAZON:
        s->buy_box_is_amazon = scalar_tri(v);
        break;
    case SK_OC_FBA:
        set_i32(&s->offer_count_fba, n);
        break;
    case SK_OC_FBM:
        set_i32(&s->offer_count_fbm, n);
        break;
    case SK_TOTAL_OC:
        set_i32(&s->total_offer_count, n);
        break;
    case SK_RETRIEVED_OC:
        set_i32(&s->retrieved_offer_count, n);
        break;
    case SK_BB_IS_USED:
        s->buy_box_is_used = scalar_tri(v);
        break;
    case SK_BB_USED_PRICE:
        set_i32(&s->buy_box_used_price_cents, n);
        break;
    case SK_BB_USED_SHIPPING:
        set_i32(&s->buy_box_used_shipping_cents, n);
        break;
    case SK_BB_SELLER:
        if (v->kind == S_STR)
            copy_str(s->buy_box_seller_id, sizeof(s->buy_box_seller_id), v->s, v->len);
        break;
    default:
        break;
    }
}

static struct raw_offer *cur_raw(struct kp_decoder *d)
{
    /* The innermost C_OFFER frame's idx holds the slot, or -1 when the buffer was full. */
    for (unsigned i = d->nframes; i-- > 0;) {
        const struct frame *f = &d->st[i];
        if (f->ctx == C_OFFER)
            return f->idx >= 0 ? &d->raw[f->idx] : NULL;
    }
    return NULL;
}

static void offer_scalar(struct kp_decoder *d, int key, const struct scalar *v)
{
    struct raw_offer *r = cur_raw(d);
    if (r == NULL)
        return;
    struct num n = scalar_num(v);
    switch (key) {
    case OK_LAST_SEEN:
        set_i64(&r->o.last_seen_keepa_min, n);
        break;
    case OK_SELLER:
        if (v->kind == S_STR)
            copy_str(r->o.seller_id, sizeof(r->o.seller_id), v->s, v->len);
        break;
    case OK_CONDITION: {
        int32_t c;
        if (num_i32(n, &c) && c >= -1 && c <= 127)
            r->o.condition = (int8_t)c;
        break;
    }
    case OK_PRIME:
        r->o.is_prime = scalar_tri(v);
        break;
    case OK_AMAZON:
        r->o.is_amazon = scalar_tri(v);
        break;
    case OK_FBA:
        r->o.is_fba = scalar_tri(v);
        break;
    case OK_ID:
        set_i32(&r->o.offer_id, n);
        break;
    default:
        break;
    }
}

static void deal_scalar(struct kp_decoder *d, int key, const struct scalar *v)
{
    struct kp_deal *x = &d->deal;
    struct num n = scalar_num(v);
    switch (key) {
    case DK_ASIN:
        if (v->kind == S_STR)
            copy_str(x->asin, sizeof(x->asin), v->s, v->len);
        break;
    case DK_TITLE:
        if (v->kind == S_STR)
            x->title_truncated = copy_str(x->title, sizeof(x->title), v->s, v->len);
        break;
    case DK_ROOT_CAT:
        set_i64(&x->root_cat, n);
        break;
    case DK_LAST_UPDATE:
        set_i64(&x->last_update_keepa_min, n);
        break;
    case DK_CREATION:
        set_i64(&x->creation_date_keepa_min, n);
        break;
    case DK_DROPS30:
        set_i32(&x->sales_rank_drops30, n);
        break;
    case DK_DROPS90:
        set_i32(&x->sales_rank_drops90, n);
        break;
    case DK_DROPS180:
        set_i32(&x->sales_rank_drops180, n);
        break;
    case DK_DROPS365:
        set_i32(&x->sales_rank_drops365, n);
        break;
    case DK_WAREHOUSE:
        set_i32(&x->warehouse_condition, n);
        break;
    default:
        break;
    }
}

static void ldeal_scalar(struct kp_decoder *d, int key, const struct scalar *v)
{
    struct kp_lightning_deal *x = &d->ldeal;
    struct num n = scalar_num(v);
    switch (key) {
    case LK_ASIN:
        if (v->kind == S_STR)
            copy_str(x->asin, sizeof(x->asin), v->s, v->len);
        break;
    case LK_TITLE:
        if (v->kind == S_STR)
            x->title_truncated = copy_str(x->title, sizeof(x->title), v->s, v->len);
        break;
    case LK_SELLER:
        if (v->kind == S_STR)
            copy_str(x->seller_id, sizeof(x->seller_id), v->s, v->len);
        break;
    case LK_SELLER_NAME:
        if (v->kind == S_STR)
            copy_str(x->seller_name, sizeof(x->seller_name), v->s, v->len);
        break;
    case LK_DEAL_ID:
        if (v->kind == S_STR)
            copy_str(x->deal_id, sizeof(x->deal_id), v->s, v->len);
        break;
    case LK_DOMAIN:
        set_i32(&x->domain_id, n);
        break;
    case LK_LAST_UPDATE:
        set_i64(&x->last_update_keepa_min, n);
        break;
    case LK_START:
        set_i64(&x->start_keepa_min, n);
        break;
    case LK_END:
        set_i64(&x->end_keepa_min, n);
        break;
    case LK_DEAL_PRICE:
        set_i32(&x->deal_price_cents, n);
        break;
    case LK_CURRENT_PRICE:
        set_i32(&x->current_price_cents, n);
        break;
    case LK_CLAIMED:
        set_i32(&x->percent_claimed, n);
        break;
    case LK_OFF:
        set_i32(&x->percent_off, n);
        break;
    case LK_RATING:
        set_i32(&x->rating, n);
        break;
    case LK_REVIEWS:
        set_i32(&x->total_reviews, n);
        break;
    case LK_STATE:
        if (v->kind == S_STR)
            x->state = ld_state_of(v->s, v->len);
        break;
    case LK_PRIME:
        x->is_prime_eligible = scalar_tri(v);
        break;
    case LK_FBA:
        x->is_fba = scalar_tri(v);
        break;
    default:
        break;
    }
}

static void seller_scalar(struct kp_decoder *d, int key, const struct scalar *v)
{
    struct kp_seller *s = &d->seller;
    struct num n = scalar_num(v);
    switch (key) {
    case EK_ID:
        if (v->kind == S_STR)
            copy_str(s->seller_id, sizeof(s->seller_id), v->s, v->len);
        break;
    case EK_NAME:
        if (v->kind == S_STR)
            copy_str(s->name, sizeof(s->name), v->s, v->len);
        break;
    case EK_DOMAIN:
        set_i32(&s->domain_id, n);
        break;
    case EK_RATING:
        set_i32(&s->current_rating, n);
        break;
    case EK_RATING_COUNT:
        set_i32(&s->current_rating_count, n);
        break;
    case EK_RATINGS_30:
        set_i32(&s->ratings_last30_days, n);
        break;
    case EK_SCAMMER:
        s->is_scammer = scalar_tri(v);
        break;
    case EK_HAS_FBA:
        s->has_fba = scalar_tri(v);
        break;
    case EK_LAST_UPDATE:
        set_i64(&s->last_update_keepa_min, n);
        break;
    default:
        break;
    }
}

static int32_t *stats_array(struct kp_stats *s, unsigned which)
{
    switch (which) {
    case SK_CURRENT:
        return s->current;
    case SK_AVG:
        return s->avg;
    case SK_AVG30:
        return s->avg30;
    case SK_AVG90:
        return s->avg90;
    case SK_AVG180:
        return s->avg180;
    default:
        return s->avg365;
    }
}

static int32_t *deal_array1(struct kp_deal *x, unsigned which)
{
    switch (which) {
    case DK_CURRENT:
        return x->current;
    case DK_CURRENT_SINCE:
        return x->current_since;
    default:
        return x->delta_last;
    }
}

static int32_t (*deal_array2(struct kp_deal *x, unsigned which))[KP_NPRICE]
{
    switch (which) {
    case DK_AVG:
        return x->avg;
    case DK_DELTA:
        return x->delta;
    default:
        return x->delta_percent;
    }
}

/*
 * An element of a per-price-type integer array (stats current/avg..., a deal's current,
 * currentSince, deltaLast, or a row of avg/delta/deltaPercent) at F's position: N is the
 * number, NULL when the element is not a number. Shared by on_scalar() and the integer-array
 * fast path in squeeze(), so both store exactly the same.
 */
static void int_array_elem(struct kp_decoder *d, const struct frame *f, const struct num *n)
{
    switch (f->ctx) {
    case C_STATS_ARR:
        if (f->idx < KP_NPRICE && n != NULL)
            set_i32(&stats_array(&d->prod.stats, f->aux)[f->idx], *n);
        break;
    case C_DEAL_ARR1:
        if (f->idx < KP_NPRICE && n != NULL)
            set_i32(&deal_array1(&d->deal, f->aux)[f->idx], *n);
        if (f->aux == DK_CURRENT && (uint32_t)f->idx < KP_NPRICE)
            d->deal.n_price = (uint32_t)f->idx + 1;
        break;
    case C_DEAL_ROW: {
        int32_t row = d->st[d->nframes - 2].idx;
        if (row >= 0 && row < KP_DEAL_RANGES && f->idx < KP_NPRICE && n != NULL)
            set_i32(&deal_array2(&d->deal, f->aux)[row][f->idx], *n);
        break;
    }
    default:
        break;
    }
}

static int on_scalar(struct kp_decoder *d, const struct scalar *v)
{
    if (d->skip_depth > 0)
        return 1;
    struct frame *f = top(d);
    if (f == NULL)
        return fail(d, -EBADMSG, "top-level value is not a JSON object");
    if (v->kind != S_NULL) {
        static const uint8_t got[] = {[S_BOOL] = J_BOOL, [S_NUM] = J_NUM, [S_STR] = J_STR};
        check_kind(d, f, got[v->kind]);
    }
    struct num n;
    switch (f->ctx) {
    case C_ROOT:
        envelope_scalar(d, f->key, v);
        break;
    case C_ERROR:
        if (v->kind == S_STR && f->key >= 0) {
            struct kp_envelope *e = &d->env;
            char *dst = f->key == 0   ? e->error_type
                        : f->key == 1 ? e->error_message
                                      : e->error_details;
            size_t sz = f->key == 0   ? sizeof(e->error_type)
                        : f->key == 1 ? sizeof(e->error_message)
                                      : sizeof(e->error_details);
            copy_str(dst, sz, v->s, v->len);
        }
        break;
    case C_PRODUCT:
        product_scalar(d, f->key, v);
        break;
    case C_PCATS:
        n = scalar_num(v);
        d->prod.n_categories_total++;
        if (n.is_int && d->prod.n_categories < KP_MAX_CATS)
            d->prod.categories[d->prod.n_categories++] = n.i;
        break;
    case C_STATS:
        stats_scalar(d, f->key, v);
        break;
    case C_STATS_ARR:
    case C_DEAL_ARR1:
    case C_DEAL_ROW:
        n = scalar_num(v);
        int_array_elem(d, f, v->kind == S_NUM ? &n : NULL);
        break;
    case C_OFFER:
        offer_scalar(d, f->key, v);
        break;
    case C_OFFERCSV: {
        struct raw_offer *r = cur_raw(d);
        if (r == NULL)
            break;
        n = scalar_num(v);
        int32_t val = -1;
        int k = (int)(f->idx % 3);
        num_i32(n, &val);
        r->triple[k] = val;
        if (k == 2) {
            r->o.csv_time_keepa_min = r->triple[0];
            r->o.price_cents = r->triple[1];
            r->o.shipping_cents = r->triple[2];
        }
        break;
    }
    case C_LIVE_ORDER:
        n = scalar_num(v);
        if (d->n_live < KP_MAX_OFFERS) {
            int32_t k = -1;
            num_i32(n, &k);
            d->live_order[d->n_live++] = k;
        } else {
            d->live_order_truncated = true;
        }
        break;
    case C_FBAFEES:
        if (f->key == 0)
            set_i32(&d->prod.pick_and_pack_fee_cents, scalar_num(v));
        break;
    case C_HAZMAT:
        if (v->kind != S_NULL)
            d->prod.hazmat = 1;
        break;
    case C_PCODES:
        if (v->kind == S_STR && v->len > 0 && v->len < KP_CODE_LEN &&
            d->prod.n_codes < KP_CODES_MAX)
            copy_str(d->prod.codes[d->prod.n_codes++], KP_CODE_LEN, v->s, v->len);
        break;
    case C_CATNODE:
        /* The root is the first node; its name is what a seller calls the category. */
        if (f->idx == 0 && f->key == 1 && v->kind == S_STR)
            copy_str(d->prod.root_category_name, sizeof(d->prod.root_category_name), v->s, v->len);
        break;
    case C_DEAL:
        deal_scalar(d, f->key, v);
        break;
    case C_DCATS:
        n = scalar_num(v);
        d->deal.n_categories_total++;
        if (n.is_int && d->deal.n_categories < KP_MAX_CATS)
            d->deal.categories[d->deal.n_categories++] = n.i;
        break;
    case C_SELLER:
        seller_scalar(d, f->key, v);
        break;
    case C_LDEAL:
        ldeal_scalar(d, f->key, v);
        break;
    case C_BESTSELLERS:
        if (f->key == BK_CATEGORY)
            set_i64(&d->env.bestsellers_category, scalar_num(v));
        else if (f->key == BK_LAST_UPDATE)
            set_i64(&d->env.bestsellers_last_update_keepa_min, scalar_num(v));
        break;
    case C_ASINLIST:
        if (v->kind == S_STR) {
            char asin[KP_ASIN_MAX];
            copy_str(asin, sizeof(asin), v->s, v->len);
            d->env.n_asins++;
            if (d->cbs.on_asin != NULL && d->cbs.on_asin(asin, d->cbs.ud) != 0)
                return fail(d, -ECANCELED, "stopped by the consumer");
        }
        break;
    case C_PRODUCTS:
        d->env.shape_errors++; /* a scalar where a product object belongs */
        break;
    default: /* arrays of objects (offers, dr): a scalar element is ignored */
        break;
    }
    value_done(d);
    return 1;
}

static int cb_null(void *ctx)
{
    struct scalar v = {.kind = S_NULL};
    return on_scalar(ctx, &v);
}

static int cb_bool(void *ctx, int b)
{
    struct scalar v = {.kind = S_BOOL, .b = b};
    return on_scalar(ctx, &v);
}

static int cb_number(void *ctx, const char *s, size_t len)
{
    struct kp_decoder *d = ctx;
    if (d->skip_depth > 0)
        return 1;
    struct scalar v = {.kind = S_NUM, .s = (const unsigned char *)s, .len = len};
    return on_scalar(d, &v);
}

static int cb_string(void *ctx, const unsigned char *s, size_t len)
{
    struct kp_decoder *d = ctx;
    if (d->skip_depth > 0)
        return 1;
    struct scalar v = {.kind = S_STR, .s = s, .len = len};
    return on_scalar(d, &v);
}

/* ---- containers ---- */

static int cb_start_map(void *ctx)
{
    struct kp_decoder *d = ctx;
    if (d->skip_depth > 0)
        return skip_container(d);
    struct frame *f = top(d);
    if (f == NULL) {
        if (d->root_seen)
            return fail(d, -EBADMSG, "more than one top-level value");
        d->root_seen = true;
        return push(d, C_ROOT, 0, false, 0);
    }
    switch (f->ctx) {
    case C_ROOT:
        if (f->key == RK_ERROR) {
            d->env.have |= KP_ENV_ERROR;
            return push(d, C_ERROR, 0, false, 0);
        }
        if (f->key == RK_DEALS) {
            d->env.have |= KP_ENV_DEALS;
            return push(d, C_DEALS, 0, false, 0);
        }
        if (f->key == RK_SELLERS) {
            d->env.have |= KP_ENV_SELLERS;
            return push(d, C_SELLERS, 0, false, 0);
        }
        if (f->key == RK_BESTSELLERS) {
            d->env.have |= KP_ENV_BESTSELLERS;
            return push(d, C_BESTSELLERS, 0, false, 0);
        }
        if (f->key == RK_PRODUCTS) {
            d->env.have |= KP_ENV_PRODUCTS;
            d->env.shape_errors++; /* an object where the products array belongs */
        }
        break;
    case C_PRODUCTS:
        init_product(d);
        return push(d, C_PRODUCT, 0, false, 0);
    case C_PRODUCT:
        if (f->key == PK_STATS) {
            d->prod.stats.present = true;
            return push(d, C_STATS, 0, false, 0);
        }
        if (f->key == PK_FBA_FEES)
            return push(d, C_FBAFEES, 0, false, 0);
        break;
    case C_HAZMAT:
        d->prod.hazmat = 1; /* any entry: the product is listed as hazardous */
        return skip_container(d);
    case C_CATTREE:
        return push(d, C_CATNODE, 0, false, f->idx);
    case C_OFFERS: {
        int32_t slot = -1;
        d->prod.n_offers_seen++;
        if (d->n_raw < KP_RAW_OFFERS) {
            slot = (int32_t)d->n_raw++;
            init_raw_offer(&d->raw[slot], (uint32_t)f->idx);
        }
        return push(d, C_OFFER, 0, false, slot);
    }
    case C_DEALS:
        break;
    case C_DR:
        init_deal(d);
        return push(d, C_DEAL, 0, false, 0);
    case C_SELLERS:
        init_seller(&d->seller);
        return push(d, C_SELLER, 0, false, 0);
    case C_LDEALS:
        init_ldeal(&d->ldeal);
        return push(d, C_LDEAL, 0, false, 0);
    default:
        break;
    }
    check_kind(d, f, J_OBJ);
    return skip_container(d);
}

static int cb_start_array(void *ctx)
{
    struct kp_decoder *d = ctx;
    if (d->skip_depth > 0)
        return skip_container(d);
    struct frame *f = top(d);
    if (f == NULL)
        return fail(d, -EBADMSG, "top-level value is not a JSON object");
    switch (f->ctx) {
    case C_ROOT:
        if (f->key == RK_PRODUCTS) {
            d->env.have |= KP_ENV_PRODUCTS;
            return push(d, C_PRODUCTS, 0, true, 0);
        }
        if (f->key == RK_ASIN_LIST) {
            d->env.have |= KP_ENV_ASIN_LIST;
            return push(d, C_ASINLIST, 0, true, 0);
        }
        if (f->key == RK_LIGHTNING) {
            d->env.have |= KP_ENV_LIGHTNING;
            return push(d, C_LDEALS, 0, true, 0);
        }
        break;
    case C_BESTSELLERS:
        if (f->key == BK_ASIN_LIST)
            return push(d, C_ASINLIST, 0, true, 0);
        break;
    case C_PRODUCT:
        if (f->key == PK_CATEGORIES)
            return push(d, C_PCATS, 0, true, 0);
        if (f->key == PK_OFFERS)
            return push(d, C_OFFERS, 0, true, 0);
        if (f->key == PK_LIVE_ORDER) {
            d->prod.live_order_present = true;
            d->n_live = 0;
            return push(d, C_LIVE_ORDER, 0, true, 0);
        }
        if (f->key == PK_HAZMAT) {
            d->prod.hazmat = 0; /* an empty list says nothing is hazardous */
            return push(d, C_HAZMAT, 0, true, 0);
        }
        if (f->key == PK_CATEGORY_TREE)
            return push(d, C_CATTREE, 0, true, 0);
        if (f->key == PK_EAN_LIST || f->key == PK_UPC_LIST)
            return push(d, C_PCODES, 0, true, 0);
        break;
    case C_STATS:
        if (f->key >= SK_CURRENT && f->key <= SK_AVG365)
            return push(d, C_STATS_ARR, (uint8_t)f->key, true, 0);
        break;
    case C_OFFER:
        if (f->key == OK_CSV)
            return push(d, C_OFFERCSV, 0, true, 0);
        break;
    case C_DEALS:
        if (f->key == 0)
            return push(d, C_DR, 0, true, 0);
        break;
    case C_DEAL:
        if (f->key == DK_CATEGORIES)
            return push(d, C_DCATS, 0, true, 0);
        if (f->key >= DK_CURRENT && f->key <= DK_DELTA_LAST)
            return push(d, C_DEAL_ARR1, (uint8_t)f->key, true, 0);
        if (f->key >= DK_AVG && f->key <= DK_DELTA_PCT)
            return push(d, C_DEAL_ARR2, (uint8_t)f->key, true, 0);
        break;
    case C_DEAL_ARR2:
        return push(d, C_DEAL_ROW, f->aux, true, 0);
    case C_PRODUCTS:
        d->env.shape_errors++; /* an array where a product object belongs */
        return skip_container(d);
    default:
        break;
    }
    check_kind(d, f, J_ARR);
    return skip_container(d);
}

static int emit(struct kp_decoder *d, uint8_t ctx)
{
    int rc = 0;
    switch (ctx) {
    case C_PRODUCT:
        finish_offers(d);
        d->env.n_products++;
        if (d->cbs.on_product != NULL)
            rc = d->cbs.on_product(&d->prod, d->cbs.ud);
        break;
    case C_DEAL:
        d->env.n_deals++;
        if (d->cbs.on_deal != NULL)
            rc = d->cbs.on_deal(&d->deal, d->cbs.ud);
        break;
    case C_SELLER:
        d->env.n_sellers++;
        if (d->cbs.on_seller != NULL)
            rc = d->cbs.on_seller(&d->seller, d->cbs.ud);
        break;
    case C_LDEAL:
        d->env.n_lightning++;
        if (d->cbs.on_lightning != NULL)
            rc = d->cbs.on_lightning(&d->ldeal, d->cbs.ud);
        break;
    default:
        break;
    }
    if (rc != 0)
        return fail(d, -ECANCELED, "stopped by the consumer");
    return 1;
}

static int cb_end(void *ctx)
{
    struct kp_decoder *d = ctx;
    if (d->skip_depth > 0) {
        d->skip_depth--;
        if (d->skip_depth == 0)
            value_done(d);
        return 1;
    }
    if (d->nframes == 0)
        return fail(d, -EBADMSG, "unbalanced JSON");
    uint8_t ctx_closed = d->st[d->nframes - 1].ctx;
    d->nframes--;
    if (emit(d, ctx_closed) == 0)
        return 0;
    value_done(d);
    return 1;
}

static int cb_map_key(void *ctx, const unsigned char *k, size_t len)
{
    struct kp_decoder *d = ctx;
    if (d->skip_depth > 0)
        return 1;
    struct frame *f = top(d);
    if (f == NULL)
        return 1;
    int id = -1;
    switch (f->ctx) {
    case C_ROOT:
        id = KEY_ID(root_keys, k, len);
        break;
    case C_ERROR:
        id = KEY_ID(error_keys, k, len);
        break;
    case C_PRODUCT:
        id = KEY_ID(product_keys, k, len);
        break;
    case C_STATS:
        id = KEY_ID(stats_keys, k, len);
        break;
    case C_OFFER:
        id = KEY_ID(offer_keys, k, len);
        break;
    case C_FBAFEES:
        id = KEY_ID(fba_keys, k, len);
        break;
    case C_CATNODE:
        id = KEY_ID(catnode_keys, k, len);
        break;
    case C_DEALS:
        id = KEY_ID(deals_keys, k, len);
        break;
    case C_DEAL:
        id = KEY_ID(deal_keys, k, len);
        break;
    case C_SELLER:
        id = KEY_ID(seller_keys, k, len);
        break;
    case C_LDEAL:
        id = KEY_ID(ldeal_keys, k, len);
        break;
    case C_BESTSELLERS:
        id = KEY_ID(bestsellers_keys, k, len);
        break;
    case C_SELLERS:
        id = 0; /* keys are seller ids; the value object carries sellerId too */
        break;
    default:
        break;
    }
    f->key = (int16_t)id;
    return 1;
}

static const yajl_callbacks callbacks = {
    .yajl_null = cb_null,
    .yajl_boolean = cb_bool,
    .yajl_number = cb_number,
    .yajl_string = cb_string,
    .yajl_start_map = cb_start_map,
    .yajl_map_key = cb_map_key,
    .yajl_end_map = cb_end,
    .yajl_start_array = cb_start_array,
    .yajl_end_array = cb_end,
};

/* ---- public ---- */

static void clear_body_state(struct kp_decoder *d)
{
    memset(&d->env, 0, sizeof(d->env));
    d->env.deals_cached = -1;
    d->env.total_results = -1;
    d->env.bestsellers_category = -1;
    d->env.bestsellers_last_update_keepa_min = -1;
    d->fed = 0;
    d->err = 0;
    d->errmsg[0] = '\0';
    d->root_seen = false;
    d->nframes = 0;
    d->skip_depth = 0;
    d->sq_in_str = d->sq_esc = d->sq_pending_ws = false;
    d->sq_last = 0;
    d->sq_drop_levels = 0;
    d->sq_rel = 0;
}

int kp_decoder_reset(struct kp_decoder *d)
{
    if (d->yh != NULL)
        yajl_free(d->yh);
    clear_body_state(d);
    d->yh = yajl_alloc(&callbacks, &d->af, d);
    if (d->yh == NULL) {
        d->err = -ENOMEM;
        snprintf(d->errmsg, sizeof(d->errmsg), "decode: out of memory");
        return -ENOMEM;
    }
    return 0;
}

struct kp_decoder *kp_decoder_new(const struct kp_decode_opts *opts,
                                  const struct kp_decode_cbs *cbs)
{
    struct kp_decoder *d = calloc(1, sizeof(*d));
    if (d == NULL)
        return NULL;
    if (opts != NULL)
        d->opts = *opts;
    if (d->opts.max_body_bytes == 0)
        d->opts.max_body_bytes = KP_DECODE_MAX_BODY;
    if (d->opts.max_depth == 0)
        d->opts.max_depth = KP_DECODE_MAX_DEPTH;
    if (d->opts.max_depth > STACK_MAX)
        d->opts.max_depth = STACK_MAX;
    if (d->opts.max_token_bytes == 0)
        d->opts.max_token_bytes = KP_DECODE_MAX_TOKEN;
    if (cbs != NULL)
        d->cbs = *cbs;
    d->af.malloc = track_malloc;
    d->af.realloc = track_realloc;
    d->af.free = track_free;
    d->af.ctx = d;
    if (kp_decoder_reset(d) != 0) {
        free(d);
        return NULL;
    }
    return d;
}

void kp_decoder_free(struct kp_decoder *d)
{
    if (d == NULL)
        return;
    if (d->yh != NULL)
        yajl_free(d->yh);
    free(d);
}

static int yajl_failed(struct kp_decoder *d, yajl_status st, const unsigned char *buf, size_t len)
{
    if (d->err != 0)
        return d->err; /* our callback cancelled, message already set */
    if (st == yajl_status_client_canceled)
        return fail(d, -ECANCELED, "cancelled"), d->err;
    unsigned char *msg = yajl_get_error(d->yh, 0, buf, len);
    char line[160];
    snprintf(line, sizeof(line), "%s", msg != NULL ? (const char *)msg : "malformed JSON");
    if (msg != NULL)
        yajl_free_error(d->yh, msg);
    /* yajl's message ends with a newline and may span lines: keep one line. */
    for (char *p = line; *p; p++)
        if (*p == '\n' || *p == '\r')
            *p = ' ';
    size_t l = strlen(line);
    while (l > 0 && line[l - 1] == ' ')
        line[--l] = '\0';
    d->err = -EBADMSG;
    snprintf(d->errmsg, sizeof(d->errmsg), "decode: malformed JSON near byte %zu: %s", d->fed,
             line);
    return d->err;
}

/* Bytes that can be part of a number or literal token. */
static bool tok_char(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-' ||
           c == '+' || c == '.';
}

/* Bytes that matter while dropping a skipped subtree, inside and outside strings. */
#define DROP_IN_STR  1u
#define DROP_OUT_STR 2u
static const unsigned char drop_class[256] = {
    ['"'] = DROP_IN_STR | DROP_OUT_STR,
    ['\\'] = DROP_IN_STR,
    ['['] = DROP_OUT_STR,
    [']'] = DROP_OUT_STR,
    ['{'] = DROP_OUT_STR,
    ['}'] = DROP_OUT_STR,
};

/* After one of these, a closing bracket is valid JSON, even if yajl holds a partial number. */
static bool droppable_after(unsigned char c)
{
    return (c >= '0' && c <= '9') || c == '[' || c == '{' || c == ']' || c == '}';
}

/*
 * The integer-array fast path. A /deal page is mostly arrays of small integers (a deal's
 * avg, delta and deltaPercent rows, current, currentSince, deltaLast: some 540 numbers a deal,
 * 80 000 a page), and yajl's lexer plus one callback per number was most of its decode. When
 * yajl has just opened such an array (the top frame is C_STATS_ARR, C_DEAL_ARR1 or C_DEAL_ROW
 * at index 0) and IN holds the array's whole inside in the canonical form the simulator and
 * Keepa send, `-?(0|[1-9][0-9]*)` (at most 18 digits) separated by single commas with no
 * whitespace, up to its closing ']', the numbers are stored here (int_array_elem(), as
 * on_scalar() would) and yajl receives only the ']', which closes the array it opened.
 * Anything else (a fraction, an exponent, a leading zero, whitespace, null, a string, a
 * nested container, an array longer than FAST_ARRAY_MAX or not whole in IN) takes the usual
 * way through yajl, byte for byte, so every body is accepted or refused exactly as before and
 * decodes to the same values. Returns the bytes of IN consumed (0: not taken).
 */
#define FAST_ARRAY_MAX 64

static size_t fast_int_array(struct kp_decoder *d, const unsigned char *in, size_t n)
{
    struct frame *f = top(d);
    if (f == NULL || f->key != -2 || f->idx != 0 ||
        (f->ctx != C_STATS_ARR && f->ctx != C_DEAL_ARR1 && f->ctx != C_DEAL_ROW))
        return 0;
    int64_t vals[FAST_ARRAY_MAX];
    size_t count = 0, i = 0;
    for (;;) {
        if (count == FAST_ARRAY_MAX || i == n)
            return 0;
        bool neg = in[i] == '-';
        size_t start = i + (neg ? 1 : 0), j = start;
        int64_t v = 0;
        while (j < n && in[j] >= '0' && in[j] <= '9' && j - start < 19) {
            v = v * 10 + (int64_t)(in[j] - '0');
            j++;
        }
        size_t digits = j - start;
        if (digits == 0 || digits > 18 || (in[start] == '0' && digits > 1) || j == n)
            return 0;
        vals[count++] = neg ? -v : v;
        if (in[j] == ']') {
            i = j;
            break;
        }
        if (in[j] != ',')
            return 0;
        i = j + 1;
    }
    for (size_t k = 0; k < count; k++) {
        struct num num = {.ok = true, .is_int = true, .i = vals[k], .f = (double)vals[k]};
        int_array_elem(d, f, &num);
        f->idx++;
    }
    return i;
}

/*
 * Prepares the next bytes for yajl. Two jobs, both because yajl's lexer walks every byte
 * through its full state machine:
 *
 * 1. Whitespace between tokens is dropped (strings are copied verbatim). Pretty-printed
 *    bodies, like the re-serialised fixtures, are 60 % indentation. Where whitespace
 *    separated two scalar tokens ("1 2", invalid JSON) one space is kept, so a malformed body
 *    stays malformed.
 * 2. The inside of a container the decoder skips (csv histories, images, buyBoxStats: most
 *    of a product body) is not given to yajl at all: the stage ends after every '[' / '{', so
 *    once yajl has seen an opening bracket the decoder knows whether it is skipped; if it is,
 *    the bytes up to the matching close are only scanned for brackets and strings (nesting
 *    depth still limited) and yajl receives just the closing bracket. Skipped subtrees are
 *    therefore checked for balance and depth, not for full JSON grammar.
 * 3. Right after an integer array the decoder keeps opened, fast_int_array() may store its
 *    numbers and leave yajl only the closing bracket (see there: same values, same verdicts).
 *
 * Returns the bytes of IN consumed; *OUTN receives the bytes written (at most CAP). On a
 * depth error sets d->err.
 */
static size_t squeeze(struct kp_decoder *d, const unsigned char *in, size_t n, unsigned char *out,
                      size_t cap, size_t *outn)
{
    size_t i = 0, o = 0;
    bool in_str = d->sq_in_str, esc = d->sq_esc, pend = d->sq_pending_ws;
    unsigned char last = d->sq_last;
    if (d->sq_drop_levels == 0 && d->skip_depth > 0 && !in_str && droppable_after(last)) {
        d->sq_drop_levels = d->skip_depth;
        d->sq_rel = 0;
        pend = false;
    }
    /* Inside a skipped container but not yet at a point where dropping is valid (after ','
     * or ':'): end the stage at the next digit, so dropping starts right after it. */
    bool want_drop_point = d->sq_drop_levels == 0 && d->skip_depth > 0;
    if (d->sq_drop_levels == 0 && d->skip_depth == 0 && !in_str && !pend && last == '[')
        i = fast_int_array(d, in, n);
    while (i < n && o + 2 <= cap) {
        if (d->sq_drop_levels > 0) {
            /* Fast scan to the next byte that matters in this state. */
            if (!esc) { /* an escaped byte is consumed below, whatever it is */
                unsigned mask = in_str ? DROP_IN_STR : DROP_OUT_STR;
                while (i < n && (drop_class[in[i]] & mask) == 0)
                    i++;
                if (i == n)
                    break;
            }
            unsigned char c = in[i++];
            if (in_str) {
                if (esc)
                    esc = false;
                else if (c == '\\')
                    esc = true;
                else if (c == '"')
                    in_str = false;
                continue;
            }
            if (c == '"') {
                in_str = true;
            } else if (c == '[' || c == '{') {
                d->sq_rel++;
                if (d->nframes + d->sq_drop_levels + d->sq_rel > d->opts.max_depth) {
                    fail_depth(d);
                    break;
                }
            } else if (c == ']' || c == '}') {
                if (d->sq_rel > 0) {
                    d->sq_rel--;
                } else {
                    out[o++] = c;
                    last = c;
                    d->sq_drop_levels--;
                }
            }
            continue;
        }
        unsigned char c = in[i++];
        if (in_str) {
            out[o++] = c;
            if (esc)
                esc = false;
            else if (c == '\\')
                esc = true;
            else if (c == '"') {
                in_str = false;
                last = c;
            }
            continue;
        }
        if (c == ' ' || c == '\n' || c == '\r' || c == '\t') {
            pend = true;
            continue;
        }
        if (pend) {
            if (tok_char(last) && tok_char(c))
                out[o++] = ' ';
            pend = false;
        }
        out[o++] = c;
        last = c;
        if (c == '"')
            in_str = true;
        else if (c == '[' || c == '{')
            break; /* let yajl tell whether this container is skipped */
        else if (want_drop_point && c >= '0' && c <= '9')
            break;
    }
    d->sq_in_str = in_str;
    d->sq_esc = esc;
    d->sq_pending_ws = pend;
    d->sq_last = last;
    *outn = o;
    return i;
}

int kp_decoder_feed(struct kp_decoder *d, const void *buf, size_t len)
{
    if (d->err != 0)
        return d->err;
    const unsigned char *p = buf;
    /* Decode up to the limit (so the envelope of an oversized body is still read), then stop. */
    bool over = len > d->opts.max_body_bytes - d->fed;
    if (over)
        len = d->opts.max_body_bytes - d->fed;
    while (len > 0) {
        size_t n = len < FEED_SLICE ? len : FEED_SLICE;
        d->fed += n;
        for (size_t i = 0; i < n;) {
            size_t o = 0;
            i += squeeze(d, p + i, n - i, d->stage, sizeof(d->stage), &o);
            if (d->err != 0)
                return d->err;
            if (o == 0)
                continue;
            yajl_status st = yajl_parse(d->yh, d->stage, o);
            if (st != yajl_status_ok)
                return yajl_failed(d, st, d->stage, o);
            if (d->heap_now > d->opts.max_token_bytes + 4 * FEED_SLICE) {
                d->err = -E2BIG;
                snprintf(d->errmsg, sizeof(d->errmsg),
                         "decode: a single JSON string or number is longer than %zu bytes",
                         d->opts.max_token_bytes);
                return d->err;
            }
        }
        p += n;
        len -= n;
    }
    if (over) {
        d->err = -EFBIG;
        snprintf(d->errmsg, sizeof(d->errmsg), "decode: body larger than the limit of %zu bytes",
                 d->opts.max_body_bytes);
        return d->err;
    }
    return 0;
}

int kp_decoder_finish(struct kp_decoder *d)
{
    if (d->err != 0)
        return d->err;
    yajl_status st = yajl_complete_parse(d->yh);
    if (st != yajl_status_ok)
        return yajl_failed(d, st, NULL, 0);
    if (!d->root_seen) {
        d->err = -EBADMSG;
        snprintf(d->errmsg, sizeof(d->errmsg), "decode: empty body");
        return d->err;
    }
    return 0;
}

const struct kp_envelope *kp_decoder_envelope(const struct kp_decoder *d)
{
    return &d->env;
}

const char *kp_decoder_error(const struct kp_decoder *d)
{
    return d->errmsg;
}

size_t kp_decoder_bytes(const struct kp_decoder *d)
{
    return d->fed;
}

size_t kp_decoder_peak_bytes(const struct kp_decoder *d)
{
    return sizeof(*d) + d->heap_peak;
}

int kp_decode_buffer(const void *buf, size_t len, const struct kp_decode_opts *opts,
                     const struct kp_decode_cbs *cbs, struct kp_envelope *env, char *err,
                     size_t errsz)
{
    struct kp_decoder *d = kp_decoder_new(opts, cbs);
    if (d == NULL) {
        if (err != NULL && errsz > 0)
            snprintf(err, errsz, "decode: out of memory");
        return -ENOMEM;
    }
    int rc = kp_decoder_feed(d, buf, len);
    if (rc == 0)
        rc = kp_decoder_finish(d);
    if (env != NULL)
        *env = d->env;
    if (err != NULL && errsz > 0)
        snprintf(err, errsz, "%s", d->errmsg);
    kp_decoder_free(d);
    return rc;
}
