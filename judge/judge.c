/*
 * judge.c: the deal judgement. See judge.h for the model; docs/judgement.md for the seller's
 * reading of it.
 */
#include "judge/judge.h"

#include <stdio.h>
#include <string.h>

#include "judge/market.h"

/* Rounds A * B / D to the nearest integer, halves away from zero (D > 0). */
static int64_t muldiv(int64_t a, int64_t b, int64_t d)
{
    __int128 p = (__int128)a * b;
    __int128 h = d / 2;
    return (int64_t)(p >= 0 ? (p + h) / d : -((-p + h) / d));
}

/* floor(A * B / D) for D > 0. */
static int64_t muldiv_floor(int64_t a, int64_t b, int64_t d)
{
    __int128 p = (__int128)a * b;
    __int128 q = p / d;
    if (p % d != 0 && p < 0)
        q -= 1;
    return (int64_t)q;
}

static int64_t known(int64_t v)
{
    return v > 0 ? v : -1;
}

void jd_inputs_init(struct jd_inputs *in)
{
    memset(in, 0, sizeof(*in));
#define JD_INIT_I64(name)         in->name = -1;
#define JD_INIT_I32(name)         in->name = -1;
#define JD_INIT_U8(name)          in->name = 0;
#define JD_INIT_BOOL(name)        in->name = false;
#define JD_INIT_STR(name)         in->name[0] = '\0';
#define JD_INIT(kind, name, size) JD_INIT_##kind(name)
    JD_INPUT_FIELDS(JD_INIT)
#undef JD_INIT
#undef JD_INIT_I64
#undef JD_INIT_I32
#undef JD_INIT_U8
#undef JD_INIT_BOOL
#undef JD_INIT_STR
    in->root_category = 0;
    in->amazon_availability = -2;
    in->buy_source = JD_BUY_NONE;
    in->buy_seen_ms = 0;
    in->data_ms = 0;
}

void jd_rules_default(struct jd_rules *r)
{
    memset(r, 0, sizeof(*r));
    r->buy_condition = 0; /* used then new */
    static const uint8_t def_basis[] = {JD_BASIS_BUY_BOX, JD_BASIS_LOWEST_FBA, JD_BASIS_AVG90};
    for (int s = 0; s < JD_SIDES; s++) {
        memcpy(r->basis[s], def_basis, sizeof(def_basis));
        r->n_basis[s] = (uint8_t)sizeof(def_basis);
    }
    r->cap_at_buy_box = true;
    r->amazon_cap_bp = 9000;
    r->max_sell_cents = 0;
    r->min_roi_bp = 2500;
    r->min_profit_cents = 500;
    r->min_sell_cents = 1200;
    r->min_drops365 = 1;
    r->max_rank = 0;
    r->unknown = JD_UNKNOWN_FAILS;
    r->near_roi_bp = 1000;
    r->near_profit_cents = 200;
    r->fulfilment = JD_FBA;
    r->prep_cents = 100;
    r->inbound_cents = 75;
    r->tax_bp = 0;
    r->default_referral_bp = 1500;
    r->referral_min_cents = 30;
    r->default_fba_fee_cents = 365;
    r->closing_fee_cents = 180;
    r->fbm_shipping_cents = 450;
    size_t n = 0;
    const int64_t *media = jd_media_categories(1, &n);
    if (n > sizeof(r->media_categories) / sizeof(r->media_categories[0]))
        n = sizeof(r->media_categories) / sizeof(r->media_categories[0]);
    memcpy(r->media_categories, media, n * sizeof(*media));
    r->n_media_categories = (uint8_t)n;
}

bool jd_amazon_on_listing(const struct jd_inputs *in)
{
    int32_t a = in->amazon_availability;
    return in->amazon_cents > 0 || a == 0 || a == 1 || a == 3 || a == 4 ||
           in->buy_box_is_amazon == 1 || in->buy_is_amazon;
}

int jd_side_of_condition(int condition)
{
    if (condition == 1)
        return JD_NEW;
    if (condition >= 2 && condition <= 5)
        return JD_USED;
    return -1;
}

int64_t jd_landed(int64_t buy_cents, const struct jd_rules *r)
{
    int64_t inbound = r->fulfilment == JD_FBM ? 0 : r->inbound_cents;
    return buy_cents + muldiv(buy_cents, r->tax_bp, 10000) + r->prep_cents + inbound;
}

/* The value of basis B for SIDE in IN (-1 when it has none). */
static int64_t basis_value(const struct jd_inputs *in, int side, unsigned b)
{
    bool used = side == JD_USED;
    switch (b) {
    case JD_BASIS_BUY_BOX:
        return known(used ? in->used_buy_box_cents : in->new_buy_box_cents);
    case JD_BASIS_LOWEST_FBA:
        return known(used ? in->used_lowest_fba_cents : in->new_lowest_fba_cents);
    case JD_BASIS_AVG90:
        return known(used ? in->used_avg90_cents : in->new_avg90_cents);
    case JD_BASIS_AVG180:
        return known(used ? in->used_avg180_cents : in->new_avg180_cents);
    case JD_BASIS_AVG365:
        return known(used ? in->used_avg365_cents : in->new_avg365_cents);
    case JD_BASIS_AVG90_365: {
        int64_t a90 = known(used ? in->used_avg90_cents : in->new_avg90_cents);
        int64_t a365 = known(used ? in->used_avg365_cents : in->new_avg365_cents);
        if (a90 > 0 && a365 > 0)
            return (a90 + a365 + 1) / 2;
        return a90 > 0 ? a90 : a365;
    }
    case JD_BASIS_CURRENT:
        return known(used ? in->used_cents : in->new_cents);
    default:
        return -1;
    }
}

/* The side a judgement without a buy condition sells on, by the rules' preference. */
static int preferred_side(const struct jd_inputs *in, const struct jd_rules *r)
{
    bool has_used = in->used_cents > 0, has_new = in->new_cents > 0;
    switch (r->buy_condition) {
    case 1:
        return JD_USED;
    case 2:
        return JD_NEW;
    case 3:
        return has_new || !has_used ? JD_NEW : JD_USED;
    default:
        return has_used || !has_new ? JD_USED : JD_NEW;
    }
}

static bool is_media(const struct jd_inputs *in, const struct jd_rules *r)
{
    for (unsigned i = 0; i < r->n_media_categories; i++)
        if (r->media_categories[i] == in->root_category)
            return true;
    return false;
}

/* Beyond Amazon's standard size: over 20 lb, or sides over 18 x 14 x 8 inches. */
static bool oversize(const struct jd_inputs *in)
{
    if (in->package_weight_g > 9072)
        return true;
    int32_t d[3] = {in->package_length_mm, in->package_width_mm, in->package_height_mm};
    if (d[0] <= 0 || d[1] <= 0 || d[2] <= 0)
        return false;
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 2 - i; j++)
            if (d[j] < d[j + 1]) {
                int32_t t = d[j];
                d[j] = d[j + 1];
                d[j + 1] = t;
            }
    /* 18 in = 457.2 mm, 14 in = 355.6 mm, 8 in = 203.2 mm */
    return (int64_t)d[0] * 10 > 4572 || (int64_t)d[1] * 10 > 3556 || (int64_t)d[2] * 10 > 2032;
}

/* The largest buy cost whose landed cost is at most LANDED_MAX; -1 when not even 1 fits. */
static int64_t cost_for_landed(int64_t landed_max, const struct jd_rules *r)
{
    int64_t fixed = jd_landed(0, r);
    if (landed_max - fixed < 1)
        return -1;
    int64_t c = muldiv_floor(landed_max - fixed, 10000, 10000 + r->tax_bp);
    while (jd_landed(c + 1, r) <= landed_max)
        c++;
    while (c > 0 && jd_landed(c, r) > landed_max)
        c--;
    return c >= 1 ? c : -1;
}

static void set_crit(struct jd_verdict *v, unsigned c, uint8_t state, int64_t value,
                     int64_t threshold, int64_t margin)
{
    v->crit[c].state = state;
    v->crit[c].value = value;
    v->crit[c].threshold = threshold;
    v->crit[c].margin = margin;
}

bool jd_judge(const struct jd_inputs *in, const struct jd_rules *r, struct jd_verdict *out)
{
    struct jd_verdict *v = out;
    memset(v, 0, sizeof(*v));
    v->basis_cents = v->sell_cents = v->referral_cents = v->closing_cents = -1;
    v->fba_cents = v->payout_cents = v->buy_cents = v->tax_cents = v->landed_cents = -1;
    v->profit_cents = v->max_cost_cents = v->max_cost_roi_cents = v->max_cost_profit_cents = -1;
    v->prep_cents = v->inbound_cents = v->fbm_shipping_cents = -1;
    v->referral_bp = -1;
    v->bound = !in->fees_known;
    v->oversize = oversize(in);

    /* The buy side and the side it sells on. */
    int side = -1;
    if (in->buy_source != JD_BUY_NONE && in->buy_price_cents > 0) {
        side = jd_side_of_condition(in->buy_condition);
        if (side >= 0)
            v->buy_cents =
                in->buy_price_cents + (in->buy_shipping_cents > 0 ? in->buy_shipping_cents : 0);
    }
    if (side < 0)
        side = preferred_side(in, r);
    v->side = (uint8_t)side;
    set_crit(v, JD_C_BUY, v->buy_cents > 0 ? JD_PASS : JD_FAIL, v->buy_cents, 0, 0);

    /* The sell side: the first basis with a value, then the ceilings. */
    int n_basis = r->n_basis[side] <= JD_BASIS_MAX ? r->n_basis[side] : JD_BASIS_MAX;
    for (int i = 0; i < n_basis && v->basis == JD_BASIS_NONE; i++) {
        int64_t value = basis_value(in, side, r->basis[side][i]);
        if (value > 0) {
            v->basis = r->basis[side][i];
            v->basis_cents = value;
        }
    }
    if (v->basis != JD_BASIS_NONE) {
        int64_t sell = v->basis_cents;
        int64_t bb = known(side == JD_USED ? in->used_buy_box_cents : in->new_buy_box_cents);
        /* A read without the Buy Box (a light re-check) is capped by the last one seen: the
         * lack of a figure must not make a judgement more optimistic than the full read's. */
        int64_t seen =
            known(side == JD_USED ? in->used_buy_box_seen_cents : in->new_buy_box_seen_cents);
        if (r->cap_at_buy_box && bb > 0 && sell > bb) {
            sell = bb;
            v->caps |= JD_CAP_BUY_BOX;
        } else if (r->cap_at_buy_box && bb <= 0 && seen > 0 && sell > seen) {
            sell = seen;
            v->caps |= JD_CAP_BUY_BOX_SEEN;
        }
        if (r->amazon_cap_bp > 0 && in->amazon_cents > 0) {
            int64_t cap = muldiv_floor(in->amazon_cents, r->amazon_cap_bp, 10000);
            if (sell > cap) {
                sell = cap;
                v->caps |= JD_CAP_AMAZON;
            }
        }
        if (r->max_sell_cents > 0 && sell > r->max_sell_cents) {
            sell = r->max_sell_cents;
            v->caps |= JD_CAP_MAX_SELL;
        }
        v->sell_cents = sell > 0 ? sell : -1;
    }
    set_crit(v, JD_C_SELL, v->sell_cents > 0 ? JD_PASS : JD_FAIL, v->sell_cents, 0, 0);

    /* Fees and the payout. */
    if (v->sell_cents > 0) {
        int64_t sell = v->sell_cents;
        bool media = is_media(in, r);
        if (in->fees_known) {
            v->referral_default = in->referral_bp < 0;
            v->referral_bp = v->referral_default ? r->default_referral_bp : in->referral_bp;
            v->referral_cents = muldiv(sell, v->referral_bp, 10000);
            int64_t min = media ? 0 : r->referral_min_cents;
            if (v->referral_cents < min) {
                v->referral_cents = min;
                v->referral_min_applied = true;
            }
            v->closing_cents = in->closing_fee_cents >= 0 ? in->closing_fee_cents
                               : media                    ? r->closing_fee_cents
                                                          : 0;
            if (r->fulfilment == JD_FBM) {
                v->fba_cents = 0;
                v->fbm_shipping_cents = r->fbm_shipping_cents;
            } else {
                v->fba_default = in->fba_fee_cents <= 0;
                v->fba_cents = v->fba_default ? r->default_fba_fee_cents : in->fba_fee_cents;
                v->fbm_shipping_cents = 0;
            }
        } else {
            /* The feed: no fees known yet, so the figures are an upper bound. */
            v->referral_bp = 0;
            v->referral_cents = v->closing_cents = v->fba_cents = v->fbm_shipping_cents = 0;
        }
        v->payout_cents =
            sell - v->referral_cents - v->closing_cents - v->fba_cents - v->fbm_shipping_cents;
        v->payout_known = true;
    }

    /* The landed cost, profit, ROI, margin. */
    if (v->buy_cents > 0) {
        v->tax_cents = muldiv(v->buy_cents, r->tax_bp, 10000);
        v->prep_cents = r->prep_cents;
        v->inbound_cents = r->fulfilment == JD_FBM ? 0 : r->inbound_cents;
        v->landed_cents = v->buy_cents + v->tax_cents + v->prep_cents + v->inbound_cents;
    }
    v->priced = v->buy_cents > 0 && v->payout_known;
    if (v->priced) {
        v->profit_cents = v->payout_cents - v->landed_cents;
        v->roi_bp = muldiv(v->profit_cents, 10000, v->landed_cents);
        v->margin_bp = muldiv(v->profit_cents, 10000, v->sell_cents);
        bool roi_ok =
            (__int128)v->profit_cents * 10000 >= (__int128)r->min_roi_bp * v->landed_cents;
        set_crit(v, JD_C_ROI, roi_ok ? JD_PASS : JD_FAIL, v->roi_bp, r->min_roi_bp,
                 v->roi_bp - r->min_roi_bp);
        set_crit(v, JD_C_PROFIT, v->profit_cents >= r->min_profit_cents ? JD_PASS : JD_FAIL,
                 v->profit_cents, r->min_profit_cents, v->profit_cents - r->min_profit_cents);
    } else {
        set_crit(v, JD_C_ROI, JD_OFF, 0, r->min_roi_bp, 0);
        set_crit(v, JD_C_PROFIT, JD_OFF, 0, r->min_profit_cents, 0);
    }
    if (v->sell_cents > 0)
        set_crit(v, JD_C_MIN_SELL, v->sell_cents >= r->min_sell_cents ? JD_PASS : JD_FAIL,
                 v->sell_cents, r->min_sell_cents, v->sell_cents - r->min_sell_cents);
    else
        set_crit(v, JD_C_MIN_SELL, JD_OFF, 0, r->min_sell_cents, 0);

    /* Velocity. */
    if (r->min_drops365 <= 0)
        set_crit(v, JD_C_DROPS365, JD_OFF, in->drops365, r->min_drops365, 0);
    else if (in->drops365 < 0)
        set_crit(v, JD_C_DROPS365, JD_UNKNOWN, -1, r->min_drops365, 0);
    else
        set_crit(v, JD_C_DROPS365, in->drops365 >= r->min_drops365 ? JD_PASS : JD_FAIL,
                 in->drops365, r->min_drops365, in->drops365 - r->min_drops365);
    if (r->max_rank <= 0)
        set_crit(v, JD_C_MAX_RANK, JD_OFF, in->sales_rank, 0, 0);
    else if (in->sales_rank <= 0)
        set_crit(v, JD_C_MAX_RANK, JD_UNKNOWN, -1, r->max_rank, 0);
    else
        set_crit(v, JD_C_MAX_RANK, in->sales_rank <= r->max_rank ? JD_PASS : JD_FAIL,
                 in->sales_rank, r->max_rank, r->max_rank - in->sales_rank);

    for (unsigned c = 0; c < JD_C_COUNT; c++) {
        if (v->crit[c].state == JD_FAIL)
            v->fails |= 1u << c;
        if (v->crit[c].state == JD_UNKNOWN) {
            v->unknowns |= 1u << c;
            if (r->unknown == JD_UNKNOWN_FAILS)
                v->fails |= 1u << c;
        }
    }
    v->deal = v->fails == 0;
    uint32_t money_bits = (1u << JD_C_ROI) | (1u << JD_C_PROFIT);
    v->near =
        !v->deal && (v->fails & ~money_bits) == 0 &&
        (!(v->fails & (1u << JD_C_ROI)) || v->crit[JD_C_ROI].margin >= -r->near_roi_bp) &&
        (!(v->fails & (1u << JD_C_PROFIT)) || v->crit[JD_C_PROFIT].margin >= -r->near_profit_cents);

    /* Max cost: the highest buy cost that meets min_roi and min_profit. */
    if (v->payout_known && v->payout_cents > 0) {
        int64_t den = 10000 + r->min_roi_bp;
        int64_t landed_roi = den > 0 ? muldiv_floor(v->payout_cents, 10000, den) : INT64_MAX / 4;
        int64_t landed_profit = v->payout_cents - r->min_profit_cents;
        v->max_cost_roi_cents = cost_for_landed(landed_roi, r);
        v->max_cost_profit_cents = cost_for_landed(landed_profit, r);
        if (v->max_cost_roi_cents > 0 && v->max_cost_profit_cents > 0)
            v->max_cost_cents = v->max_cost_roi_cents < v->max_cost_profit_cents
                                    ? v->max_cost_roi_cents
                                    : v->max_cost_profit_cents;
    }
    return v->deal;
}

/* FNV-1a over one value at a time, so struct padding never enters the digest. */
static uint64_t mix(uint64_t h, int64_t v)
{
    for (int i = 0; i < 8; i++) {
        h ^= (uint64_t)(v >> (8 * i)) & 0xffu;
        h *= 1099511628211ULL;
    }
    return h;
}

uint64_t jd_rules_hash(const struct jd_rules *r)
{
    uint64_t h = 14695981039346656037ULL;
    h = mix(h, r->buy_condition);
    for (int s = 0; s < JD_SIDES; s++) {
        h = mix(h, r->n_basis[s]);
        for (int i = 0; i < r->n_basis[s] && i < JD_BASIS_MAX; i++)
            h = mix(h, r->basis[s][i]);
    }
    const int64_t scalars[] = {
        r->cap_at_buy_box,      r->amazon_cap_bp,      r->max_sell_cents,
        r->min_roi_bp,          r->min_profit_cents,   r->min_sell_cents,
        r->min_drops365,        r->max_rank,           r->unknown,
        r->near_roi_bp,         r->near_profit_cents,  r->fulfilment,
        r->prep_cents,          r->inbound_cents,      r->tax_bp,
        r->default_referral_bp, r->referral_min_cents, r->default_fba_fee_cents,
        r->closing_fee_cents,   r->fbm_shipping_cents, r->n_media_categories};
    for (size_t i = 0; i < sizeof(scalars) / sizeof(scalars[0]); i++)
        h = mix(h, scalars[i]);
    for (unsigned i = 0; i < r->n_media_categories && i < 32; i++)
        h = mix(h, r->media_categories[i]);
    return h;
}

static const char *const basis_names[JD_BASIS_COUNT] = {
    "none", "buy_box", "lowest_fba", "avg90", "avg180", "avg365", "avg90_365", "current"};
static const char *const crit_names[JD_C_COUNT] = {"buy",      "sell",     "roi",     "profit",
                                                   "min_sell", "drops365", "max_rank"};
static const char *const crit_reasons[JD_C_COUNT] = {"no-buy",       "no-sell",  "roi", "profit",
                                                     "sell-too-low", "drops365", "rank"};
static const char *const state_names[] = {"pass", "fail", "unknown", "off"};
static const char *const source_names[] = {"none", "offer", "own_cost", "listing"};
static const char *const side_names[] = {"new", "used"};
static const char *const cap_names[JD_CAP_COUNT] = {"buy_box", "amazon", "max_sell",
                                                    "buy_box_seen"};

const char *jd_basis_name(unsigned b)
{
    return b < JD_BASIS_COUNT ? basis_names[b] : "?";
}

const char *jd_crit_name(unsigned c)
{
    return c < JD_C_COUNT ? crit_names[c] : "?";
}

const char *jd_state_name(unsigned s)
{
    return s < sizeof(state_names) / sizeof(state_names[0]) ? state_names[s] : "?";
}

const char *jd_buy_source_name(unsigned s)
{
    return s < sizeof(source_names) / sizeof(source_names[0]) ? source_names[s] : "?";
}

const char *jd_side_name(unsigned s)
{
    return s < JD_SIDES ? side_names[s] : "?";
}

const char *jd_cap_name(unsigned bit)
{
    return bit < JD_CAP_COUNT ? cap_names[bit] : "?";
}

int jd_basis_parse(const char *name, size_t len)
{
    for (int b = 1; b < JD_BASIS_COUNT; b++)
        if (strlen(basis_names[b]) == len && memcmp(basis_names[b], name, len) == 0)
            return b;
    return -1;
}

const char *jd_reason(const struct jd_verdict *v)
{
    if (v->deal)
        return "deal";
    for (unsigned c = 0; c < JD_C_COUNT; c++)
        if (v->fails & (1u << c))
            return (v->unknowns & (1u << c)) && c == JD_C_DROPS365 ? "drops365-unknown"
                   : (v->unknowns & (1u << c))                     ? "rank-unknown"
                                                                   : crit_reasons[c];
    return "?";
}

/* Basis points as a percentage with up to two decimals: 2710 -> "27.1", -50 -> "-0.5". */
static void pct(int64_t bp, char *buf, size_t len)
{
    int64_t a = bp < 0 ? -bp : bp;
    if (a % 100 == 0)
        snprintf(buf, len, "%s%lld", bp < 0 ? "-" : "", (long long)(a / 100));
    else if (a % 10 == 0)
        snprintf(buf, len, "%s%lld.%lld", bp < 0 ? "-" : "", (long long)(a / 100),
                 (long long)(a % 100 / 10));
    else
        snprintf(buf, len, "%s%lld.%02lld", bp < 0 ? "-" : "", (long long)(a / 100),
                 (long long)(a % 100));
}

static const char *verb(const struct jd_criterion *k)
{
    return k->margin >= 0 ? "pass by" : "fail by";
}

int jd_format_criterion(const struct jd_verdict *v, unsigned c, unsigned domain, char *buf,
                        size_t len)
{
    if (c >= JD_C_COUNT)
        return snprintf(buf, len, "?");
    const struct jd_criterion *k = &v->crit[c];
    char a[48], b[48], m[48];
    if (k->state == JD_OFF) {
        switch (c) {
        case JD_C_ROI:
        case JD_C_PROFIT:
        case JD_C_MIN_SELL:
            return snprintf(buf, len, "%s: not computed (no %s)", crit_names[c],
                            v->sell_cents > 0 ? "buy price" : "sell price");
        default:
            return snprintf(buf, len, "%s: off", crit_names[c]);
        }
    }
    switch (c) {
    case JD_C_BUY:
        if (k->state != JD_PASS)
            return snprintf(buf, len, "buy: nothing to buy in the wanted condition");
        jd_money(domain, v->buy_cents, a, sizeof(a));
        return snprintf(buf, len, "buy: %s (%s)", a, jd_side_name(v->side));
    case JD_C_SELL:
        if (k->state != JD_PASS)
            return snprintf(buf, len, "sell: no basis has a value (%s side)",
                            jd_side_name(v->side));
        jd_money(domain, v->sell_cents, a, sizeof(a));
        return snprintf(buf, len, "sell: %s from %s (%s)%s", a, jd_basis_name(v->basis),
                        jd_side_name(v->side), v->caps ? ", capped" : "");
    case JD_C_ROI:
        pct(k->value, a, sizeof(a));
        pct(k->threshold, b, sizeof(b));
        pct(k->margin < 0 ? -k->margin : k->margin, m, sizeof(m));
        return snprintf(buf, len, "ROI %s %% vs %s %%: %s %s pts", a, b, verb(k), m);
    case JD_C_PROFIT:
    case JD_C_MIN_SELL:
        jd_money(domain, k->value, a, sizeof(a));
        jd_money(domain, k->threshold, b, sizeof(b));
        jd_money(domain, k->margin < 0 ? -k->margin : k->margin, m, sizeof(m));
        return snprintf(buf, len, "%s %s vs %s: %s %s", c == JD_C_PROFIT ? "profit" : "sell", a, b,
                        verb(k), m);
    case JD_C_DROPS365:
    case JD_C_MAX_RANK: {
        const char *what = c == JD_C_DROPS365 ? "rank drops 365" : "sales rank";
        if (k->state == JD_UNKNOWN)
            return snprintf(buf, len, "%s: unknown (%s)", what,
                            (v->fails & (1u << c)) ? "counts as a fail" : "counts as a pass");
        return snprintf(buf, len, "%s %lld vs %s %lld: %s %lld", what, (long long)k->value,
                        c == JD_C_DROPS365 ? "min" : "max", (long long)k->threshold, verb(k),
                        (long long)(k->margin < 0 ? -k->margin : k->margin));
    }
    default:
        return snprintf(buf, len, "?");
    }
}
