/*
 * export.c: the field table and the JSON and CSV writers. See export.h for the conventions.
 *
 * VW_FIELDS is the one description of the outputs: X(name, TYPE, value, source). `value` is an
 * expression over `r` (the record) and `x` (the row being written: links, the re-judged
 * verdict) built with the v_* constructors below, which also decide when a value is null.
 * The writers walk the table in order; test_view parses both outputs back and holds every
 * field to its declared type.
 */
#include "view/export.h"

#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <string.h>

#include "judge/market.h"
#include "view/filter.h"
#include "view/text.h"
#include "view/time.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* A title cleaned to valid UTF-8 can grow to three times its bytes. */
#define CLEAN_MAX (3 * ST_TITLE_MAX + 1)

/* The row being written: the record and what is derived from it once per record. */
struct row {
    const struct st_record *r;
    bool judged; /* j holds the record re-judged under the caller's rules */
    struct jd_verdict j;
    bool current_rules; /* the stored verdict was judged under the caller's rules */
    char amazon_url[96], offers_url[96], keepa_url[96];
    char rules_hash[24];
    bool at_cost; /* c holds the figures at the seller's bought cost (vw_at_cost) */
    struct jd_verdict c;
};

/* A value of a field: which of the members holds it follows the field's type. */
struct value {
    bool null;
    int64_t i;                         /* INTEGER, BOOLEAN (0/1), TIME (ms), LIST (bits) */
    const char *s;                     /* STRING */
    const char *(*name)(unsigned bit); /* LIST: the word for a bit */
};

static struct value v_null(void)
{
    return (struct value){.null = true};
}

static struct value v_str(const char *s)
{
    return s != NULL ? (struct value){.s = s} : v_null();
}

/* A string that is null when empty. */
static struct value v_text(const char *s)
{
    return s != NULL && s[0] != '\0' ? (struct value){.s = s} : v_null();
}

static struct value v_int(int64_t i)
{
    return (struct value){.i = i};
}

/* Null when negative (Keepa's and the store's -1 for unknown). */
static struct value v_nn(int64_t i)
{
    return i >= 0 ? v_int(i) : v_null();
}

/* Null unless positive (a price, a rank, a size of 0 is none). */
static struct value v_pos(int64_t i)
{
    return i > 0 ? v_int(i) : v_null();
}

static struct value v_if(bool known, int64_t i)
{
    return known ? v_int(i) : v_null();
}

static struct value v_bool(bool b)
{
    return (struct value){.i = b};
}

/* Keepa's -1/0/1 flags: 1 true, 0 false, anything else unknown. */
static struct value v_flag(int64_t f)
{
    return f == 0 || f == 1 ? v_bool(f == 1) : v_null();
}

static struct value v_time(int64_t ms)
{
    return ms > 0 ? v_int(ms) : v_null();
}

static struct value v_list(uint32_t bits, const char *(*name)(unsigned))
{
    return (struct value){.i = bits, .name = name};
}

/* ---- words for codes ---- */

static const char *availability_name(int32_t a)
{
    static const char *const names[] = {"none",    "now",       "preorder",
                                        "unknown", "backorder", "delayed"};
    return a >= -1 && a <= 4 ? names[a + 1] : NULL;
}

static const char *source_name(unsigned s)
{
    static const char *const names[] = {NULL,       "deals", "asins",     "query",
                                        "recommit", "list",  "lightning", "bestsellers"};
    return s < ARRAY_LEN(names) ? names[s] : NULL;
}

static const char *category_of(const struct st_record *r)
{
    if (r->category_name[0] != '\0')
        return r->category_name;
    return r->in.root_category > 0 ? jd_category_name(r->domain, r->in.root_category) : NULL;
}

static const char *market_tld(unsigned domain)
{
    const struct jd_market *m = jd_market(domain);
    return m != NULL ? m->tld : NULL;
}

static const char *market_currency(unsigned domain)
{
    const struct jd_market *m = jd_market(domain);
    return m != NULL ? m->currency : NULL;
}

static struct value v_monthly_profit(const struct st_record *r)
{
    int64_t c = 0;
    return vw_monthly_profit(r, &c) ? v_int(c) : v_null();
}

static struct value v_sales_basis(const struct st_record *r)
{
    const char *b;
    vw_monthly_sales(r, &b);
    return v_str(b);
}

static struct value v_reason(const struct st_record *r)
{
    const char *why = jd_reason(&r->v);
    return strcmp(why, "?") != 0 ? v_str(why) : v_null(); /* never judged */
}

/* Keepa minutes (since 2011-01-01) to epoch ms; null when unknown. */
static struct value v_keepa_minutes(int64_t min)
{
    return min > 0 ? v_int((min + 21564000) * 60000) : v_null();
}

/*
 * The fields, in output order. X(name, TYPE, value, source).
 */
#define VW_FIELDS(X)                                                                               \
    X(asin, STRING, v_str(r->asin), "asin")                                                        \
    X(domain, INTEGER, v_int(r->domain),                                                           \
      "Keepa domain id: 1 com, 2 co.uk, 3 de, 4 fr, 5 co.jp, "                                     \
      "6 ca, 8 it, 9 es, 10 in, 11 com.mx, 12 com.br")                                             \
    X(marketplace, STRING, v_str(market_tld(r->domain)), "Amazon's domain for the domain id")      \
    X(currency, STRING, v_str(market_currency(r->domain)),                                         \
      "ISO 4217 code of every _cents field of the record")                                         \
    X(title, STRING, v_text(r->title), "title (cut at 199 bytes)")                                 \
    X(amazon_url, STRING, v_str(x->amazon_url), "the Amazon product page")                         \
    X(offers_url, STRING, v_str(x->offers_url), "Amazon's offer listing (all offers)")             \
    X(keepa_url, STRING, v_str(x->keepa_url), "the Keepa product page")                            \
    X(category_id, INTEGER, v_pos(r->in.root_category), "rootCategory")                            \
    X(category_name, STRING, v_str(category_of(r)),                                                \
      "categoryTree[0].name, else kdeals' name for the root category")                             \
    X(source, STRING, v_str(source_name(r->source)),                                               \
      "what found it: deals (the /deal feed), asins, query (product finder), recommit, list "      \
      "(your list), lightning (lightning deals), bestsellers (best-seller lists)")                 \
    X(source_url, STRING, v_text(r->source_url), "your list's source_url: where you buy it")       \
    X(note, STRING, v_text(r->note), "your list's note")                                           \
    X(state, STRING, v_str(st_state_name(r->state)), "deal, failing or rejected")                  \
    X(verdict_deal, BOOLEAN, v_bool(r->v.deal), "the stored verdict: no criterion fails")          \
    X(verdict_near, BOOLEAN, v_bool(r->v.near),                                                    \
      "the stored verdict: not a deal, fails only ROI/profit within the near margins")             \
    X(verdict_fails, LIST, v_list(r->v.fails, jd_crit_name),                                       \
      "criteria that failed (unknown inputs counted per the rules)")                               \
    X(verdict_unknowns, LIST, v_list(r->v.unknowns, jd_crit_name),                                 \
      "criteria whose input Keepa did not give")                                                   \
    X(reason, STRING, v_reason(r), "the first failing criterion of the stored verdict, or deal")   \
    X(reasons, REASONS, v_null(), "every criterion re-judged from the stored inputs")              \
    X(judged_by_current_rules, BOOLEAN, x->judged ? v_bool(x->current_rules) : v_null(),           \
      "the stored verdict was judged under the rules the reasons use")                             \
    X(buy_source, STRING, v_str(jd_buy_source_name(r->in.buy_source)),                             \
      "offer (one live offer), listing (lowest listing, shipping unknown), own_cost, none")        \
    X(buy_condition, INTEGER, v_pos(r->in.buy_condition),                                          \
      "offers[].condition: 1 new, 2 like new, 3 very good, 4 good, 5 acceptable")                  \
    X(buy_condition_name, STRING,                                                                  \
      r->in.buy_condition > 0 ? v_str(jd_condition_name(r->in.buy_condition)) : v_null(),          \
      "the condition in words")                                                                    \
    X(buy_price_cents, INTEGER, v_nn(r->in.buy_price_cents),                                       \
      "offerCSV's newest price, the listing price, or the seller's own cost")                      \
    X(buy_shipping_cents, INTEGER, v_nn(r->in.buy_shipping_cents),                                 \
      "offerCSV's newest shipping (0 free)")                                                       \
    X(buy_seller_id, STRING, v_text(r->in.buy_seller_id), "offers[].sellerId")                     \
    X(buy_is_fba, BOOLEAN, v_bool(r->in.buy_is_fba), "offers[].isFBA")                             \
    X(buy_is_amazon, BOOLEAN, v_bool(r->in.buy_is_amazon), "offers[].isAmazon")                    \
    X(buy_seen_ms, TIME, v_time(r->in.buy_seen_ms), "when the buy offer was seen")                 \
    X(amazon_on_listing, BOOLEAN, v_bool(vw_amazon_on_listing(r)),                                 \
      "Amazon sells it or holds its Buy Box: amazon_cents, amazon_availability now, preorder, "    \
      "backorder or delayed, buy_box_is_amazon, or buy_is_amazon")                                 \
    X(amazon_cents, INTEGER, v_pos(r->in.amazon_cents), "stats.current[0]: Amazon's own price")    \
    X(amazon_availability, STRING, v_str(availability_name(r->in.amazon_availability)),            \
      "availabilityAmazon: none, now, preorder, unknown, backorder, delayed")                      \
    X(buy_box_is_amazon, BOOLEAN, v_flag(r->in.buy_box_is_amazon), "stats.buyBoxIsAmazon")         \
    X(new_buy_box_cents, INTEGER, v_pos(r->in.new_buy_box_cents),                                  \
      "stats.current[18] (Buy Box with shipping), else stats.buyBoxPrice + buyBoxShipping")        \
    X(used_buy_box_cents, INTEGER, v_pos(r->in.used_buy_box_cents),                                \
      "stats.current[32], else stats.buyBoxUsedPrice + buyBoxUsedShipping")                        \
    X(new_buy_box_seen_cents, INTEGER, v_pos(r->in.new_buy_box_seen_cents),                        \
      "new_buy_box_cents of the last read that had one, when this read has none: a ceiling only")  \
    X(used_buy_box_seen_cents, INTEGER, v_pos(r->in.used_buy_box_seen_cents),                      \
      "used_buy_box_cents of the last read that had one, when this read has none")                 \
    X(buy_box_seen_ms, INTEGER, v_pos(r->in.buy_box_seen_ms), "when those were read")              \
    X(new_lowest_fba_cents, INTEGER, v_pos(r->in.new_lowest_fba_cents),                            \
      "stats.current[10] NEW_FBA, else the lowest live New FBA offer")                             \
    X(used_lowest_fba_cents, INTEGER, v_pos(r->in.used_lowest_fba_cents),                          \
      "the lowest live Used FBA offer")                                                            \
    X(new_cents, INTEGER, v_pos(r->in.new_cents), "stats.current[1]: lowest New listing")          \
    X(used_cents, INTEGER, v_pos(r->in.used_cents), "stats.current[2]: lowest Used listing")       \
    X(new_avg90_cents, INTEGER, v_pos(r->in.new_avg90_cents), "stats.avg90[1]")                    \
    X(new_avg180_cents, INTEGER, v_pos(r->in.new_avg180_cents), "stats.avg180[1]")                 \
    X(new_avg365_cents, INTEGER, v_pos(r->in.new_avg365_cents), "stats.avg365[1]")                 \
    X(used_avg90_cents, INTEGER, v_pos(r->in.used_avg90_cents), "stats.avg90[2]")                  \
    X(used_avg180_cents, INTEGER, v_pos(r->in.used_avg180_cents), "stats.avg180[2]")               \
    X(used_avg365_cents, INTEGER, v_pos(r->in.used_avg365_cents), "stats.avg365[2]")               \
    X(sales_rank, INTEGER, v_pos(r->in.sales_rank), "stats.current[3]")                            \
    X(drops30, INTEGER, v_nn(r->in.drops30), "stats.salesRankDrops30")                             \
    X(drops90, INTEGER, v_nn(r->in.drops90), "stats.salesRankDrops90")                             \
    X(drops180, INTEGER, v_nn(r->in.drops180), "stats.salesRankDrops180")                          \
    X(drops365, INTEGER, v_nn(r->in.drops365), "stats.salesRankDrops365")                          \
    X(monthly_sold, INTEGER, v_nn(r->in.monthly_sold), "monthlySold")                              \
    X(offers_new, INTEGER, v_nn(r->in.offers_new), "stats.current[11] COUNT_NEW")                  \
    X(offers_used, INTEGER, v_nn(r->in.offers_used), "stats.current[12] COUNT_USED")               \
    X(offers_fba, INTEGER, v_nn(r->in.offers_fba),                                                 \
      "stats.offerCountFBA: retrieved live FBA offers, any condition")                             \
    X(offers_fbm, INTEGER, v_nn(r->in.offers_fbm),                                                 \
      "stats.offerCountFBM: retrieved live FBM offers, any condition")                             \
    X(competing_offers, INTEGER, v_nn(vw_competing_offers(r)),                                     \
      "offers_used for a used buy, offers_new for a new one; else offers_fba + offers_fbm")        \
    X(monthly_sales, INTEGER, v_nn(vw_monthly_sales(r, NULL)),                                     \
      "monthly_sold, else drops30 (one rank drop counted as one sale)")                            \
    X(monthly_sales_basis, STRING, v_sales_basis(r), "monthly_sold, drops30 or none")              \
    X(monthly_profit_cents, INTEGER, v_monthly_profit(r),                                          \
      "profit_cents x monthly_sales / (competing_offers + 1), rounded")                            \
    X(referral_bp, INTEGER, v_nn(r->in.referral_bp),                                               \
      "referralFeePercentage x 100 (else referralFeePercent)")                                     \
    X(fba_fee_cents, INTEGER, v_pos(r->in.fba_fee_cents), "fbaFees.pickAndPackFee")                \
    X(closing_fee_cents, INTEGER, v_nn(r->in.closing_fee_cents), "variableClosingFee")             \
    X(fees_known, BOOLEAN, v_bool(r->in.fees_known),                                               \
      "referral and FBA inputs come from a /product answer")                                       \
    X(hazmat, BOOLEAN, v_flag(r->in.hazmat), "hazardousMaterials listed (true) or null (false)")   \
    X(heat_sensitive, BOOLEAN, v_flag(r->in.heat_sensitive), "isHeatSensitive")                    \
    X(adult, BOOLEAN, v_flag(r->in.adult), "isAdultProduct")                                       \
    X(oversize, BOOLEAN, v_bool(r->v.oversize),                                                    \
      "beyond Amazon's standard size: over 20 lb or 18 x 14 x 8 in")                               \
    X(package_weight_g, INTEGER, v_pos(r->in.package_weight_g), "packageWeight")                   \
    X(package_length_mm, INTEGER, v_pos(r->in.package_length_mm), "packageLength")                 \
    X(package_width_mm, INTEGER, v_pos(r->in.package_width_mm), "packageWidth")                    \
    X(package_height_mm, INTEGER, v_pos(r->in.package_height_mm), "packageHeight")                 \
    X(sell_side, STRING, v_str(jd_side_name(r->v.side)), "new or used: the side the buy sells on") \
    X(sell_basis, STRING, r->v.basis ? v_str(jd_basis_name(r->v.basis)) : v_null(),                \
      "the sell price's basis: buy_box, lowest_fba, avg90, avg180, avg365, avg90_365, current")    \
    X(sell_caps, LIST, v_list(r->v.caps, jd_cap_name),                                             \
      "ceilings that lowered the sell price: buy_box, amazon, max_sell, buy_box_seen (the "        \
      "Buy Box of the last full read, when this read has none)")                                   \
    X(sell_basis_cents, INTEGER, v_pos(r->v.basis_cents), "the basis before the ceilings")         \
    X(sell_cents, INTEGER, v_pos(r->v.sell_cents), "the expected sell price")                      \
    X(fee_referral_bp, INTEGER, v_nn(r->v.referral_bp), "the referral percentage used")            \
    X(fee_referral_default, BOOLEAN, v_bool(r->v.referral_default),                                \
      "the rules' default percentage was used")                                                    \
    X(fee_referral_min_applied, BOOLEAN, v_bool(r->v.referral_min_applied),                        \
      "the per-unit referral minimum applied")                                                     \
    X(fee_referral_cents, INTEGER, v_nn(r->v.referral_cents), "referral fee")                      \
    X(fee_closing_cents, INTEGER, v_nn(r->v.closing_cents), "closing fee")                         \
    X(fee_fba_cents, INTEGER, v_nn(r->v.fba_cents), "FBA fee (0 for FBM)")                         \
    X(fee_fba_default, BOOLEAN, v_bool(r->v.fba_default), "the rules' default FBA fee was used")   \
    X(fee_fbm_shipping_cents, INTEGER, v_nn(r->v.fbm_shipping_cents),                              \
      "the seller's own shipping per unit (FBM)")                                                  \
    X(payout_known, BOOLEAN, v_bool(r->v.payout_known), "a sell price: payout is computed")        \
    X(payout_cents, INTEGER, v_if(r->v.payout_known, r->v.payout_cents),                           \
      "sell - referral - closing - FBA fee (or FBM shipping)")                                     \
    X(buy_total_cents, INTEGER, v_pos(r->v.buy_cents), "item price + shipping")                    \
    X(cost_tax_cents, INTEGER, v_nn(r->v.tax_cents), "tax on price + shipping")                    \
    X(cost_prep_cents, INTEGER, v_nn(r->v.prep_cents), "prep per unit")                            \
    X(cost_inbound_cents, INTEGER, v_nn(r->v.inbound_cents), "inbound shipping per unit (FBA)")    \
    X(landed_cents, INTEGER, v_pos(r->v.landed_cents), "buy total + tax + prep + inbound")         \
    X(priced, BOOLEAN, v_bool(r->v.priced), "buy and sell known: profit, ROI, margin computed")    \
    X(profit_cents, INTEGER, v_if(r->v.priced, r->v.profit_cents), "payout - landed")              \
    X(roi_bp, INTEGER, v_if(r->v.priced, r->v.roi_bp), "profit / landed")                          \
    X(margin_bp, INTEGER, v_if(r->v.priced, r->v.margin_bp), "profit / sell")                      \
    X(max_cost_cents, INTEGER, v_pos(r->v.max_cost_cents),                                         \
      "the highest buy cost (price + shipping) meeting min_roi and min_profit")                    \
    X(max_cost_roi_cents, INTEGER, v_pos(r->v.max_cost_roi_cents), "... meeting min_roi alone")    \
    X(max_cost_profit_cents, INTEGER, v_pos(r->v.max_cost_profit_cents),                           \
      "... meeting min_profit alone")                                                              \
    X(rules_hash, STRING, v_text(x->rules_hash), "digest of the rules that judged it (hex)")       \
    X(judged_ms, TIME, v_time(r->judged_ms), "when the verdict was computed")                      \
    X(first_seen_ms, TIME, v_time(r->first_seen_ms), "when first committed")                       \
    X(deal_since_ms, TIME, v_time(r->deal_since_ms), "when it last became a deal")                 \
    X(last_checked_ms, TIME, v_time(r->last_checked_ms), "last successful fetch")                  \
    X(last_changed_ms, TIME, v_time(r->last_changed_ms), "last change of the money figures")       \
    X(data_read_ms, TIME, v_time(r->in.data_ms), "when the inputs were read (the answer's time)")  \
    X(keepa_last_update_min, INTEGER, v_pos(r->in.keepa_last_update_min),                          \
      "lastUpdate (Keepa minutes since 2011-01-01)")                                               \
    X(keepa_last_update_ms, TIME, v_keepa_minutes(r->in.keepa_last_update_min),                    \
      "lastUpdate as a time")                                                                      \
    X(check_failures, INTEGER, v_int(r->check_failures),                                           \
      "consecutive re-checks that found it no longer a deal")                                      \
    X(next_check_ms, TIME, v_time(r->next_check_ms), "next re-check (null: not scheduled)")        \
    X(expired_ms, TIME, v_time(r->expired_ms), "when failed re-checks ended it as a deal")         \
    X(revision, INTEGER, v_int((int64_t)(r->revision & INT64_MAX)), "bumped on every change")      \
    X(mark, STRING, v_str(st_mark_name(r->mark)), "none, bought or ignored")                       \
    X(marked_ms, TIME, v_time(r->mark_ms), "when it was marked")                                   \
    X(bought_cost_cents, INTEGER, v_nn(r->bought_cost_cents), "the seller's own cost per unit")    \
    X(bought_qty, INTEGER, r->mark == ST_MARK_BOUGHT ? v_nn(r->bought_qty) : v_null(),             \
      "units bought")                                                                              \
    X(bought_landed_cents, INTEGER, x->at_cost ? v_pos(x->c.landed_cents) : v_null(),              \
      "at your cost: bought cost + tax + prep + inbound")                                          \
    X(bought_profit_cents, INTEGER, v_if(x->at_cost && x->c.priced, x->c.profit_cents),            \
      "at your cost: payout - bought landed (replaces profit_cents for what you bought)")          \
    X(bought_roi_bp, INTEGER, v_if(x->at_cost && x->c.priced, x->c.roi_bp),                        \
      "at your cost: bought profit / bought landed")                                               \
    X(bought_margin_bp, INTEGER, v_if(x->at_cost && x->c.priced, x->c.margin_bp),                  \
      "at your cost: bought profit / sell")                                                        \
    X(bought_total_profit_cents, INTEGER,                                                          \
      v_if(x->at_cost && x->c.priced && r->bought_qty > 0, x->c.profit_cents * r->bought_qty),     \
      "at your cost: bought profit x bought_qty")

#define FIELD_ENUM(name, type, value, source) F_##name,
enum { VW_FIELDS(FIELD_ENUM) F_COUNT };
#undef FIELD_ENUM

#define FIELD_INFO(name, type, value, source) {#name, VW_T_##type, source},
static const struct vw_field_info fields[] = {VW_FIELDS(FIELD_INFO)};
#undef FIELD_INFO

size_t vw_field_count(void)
{
    return F_COUNT;
}

const struct vw_field_info *vw_field(size_t i)
{
    return i < F_COUNT ? &fields[i] : NULL;
}

const char *vw_ftype_name(enum vw_ftype t)
{
    static const char *const names[] = {"string", "integer", "boolean", "time", "list", "reasons"};
    return (unsigned)t < ARRAY_LEN(names) ? names[t] : "?";
}

static struct value field_value(size_t i, const struct row *x)
{
    const struct st_record *r = x->r;
    switch (i) {
#define FIELD_CASE(name, type, value, source)                                                      \
    case F_##name:                                                                                 \
        return value;
        VW_FIELDS(FIELD_CASE)
#undef FIELD_CASE
    default:
        return v_null();
    }
}

const struct jd_rules *vw_out_rules(const struct vw_out *o, unsigned domain)
{
    if (o == NULL)
        return NULL;
    if (domain < VW_DOMAINS && o->rules_by_domain[domain] != NULL)
        return o->rules_by_domain[domain];
    return o->rules;
}

static void row_init(struct row *x, const struct st_record *r, const struct vw_out *o)
{
    memset(x, 0, sizeof(*x));
    x->r = r;
    const struct jd_rules *rules = vw_out_rules(o, r->domain);
    if (rules != NULL) {
        jd_judge(&r->in, rules, &x->j);
        x->judged = true;
        x->current_rules = r->rules_hash == jd_rules_hash(rules);
    }
    jd_link_amazon(r->domain, r->asin, x->amazon_url, sizeof(x->amazon_url));
    jd_link_offers(r->domain, r->asin, x->offers_url, sizeof(x->offers_url));
    jd_link_keepa(r->domain, r->asin, x->keepa_url, sizeof(x->keepa_url));
    if (r->rules_hash != 0)
        snprintf(x->rules_hash, sizeof(x->rules_hash), "%016" PRIx64, r->rules_hash);
    x->at_cost = vw_at_cost(r, rules, &x->c);
}

/* ---- the reasons ---- */

static const char *crit_unit(unsigned c)
{
    switch (c) {
    case JD_C_ROI:
        return "bp";
    case JD_C_DROPS365:
        return "count";
    case JD_C_MAX_RANK:
        return "rank";
    default:
        return "cents";
    }
}

struct reason {
    const char *criterion, *state, *unit;
    bool fails;
    struct value value, threshold, margin;
    char text[160];
};

static void reason_of(const struct row *x, unsigned c, struct reason *out)
{
    const struct jd_criterion *k = &x->j.crit[c];
    out->criterion = jd_crit_name(c);
    out->state = jd_state_name(k->state);
    out->unit = crit_unit(c);
    out->fails = (x->j.fails & (1u << c)) != 0;
    bool measured = k->state == JD_PASS || k->state == JD_FAIL;
    bool has_threshold = c != JD_C_BUY && c != JD_C_SELL;
    out->value = measured ? v_int(k->value) : v_null();
    out->threshold = has_threshold && k->state != JD_OFF ? v_int(k->threshold) : v_null();
    out->margin = measured && has_threshold ? v_int(k->margin) : v_null();
    char raw[160];
    jd_format_criterion(&x->j, c, x->r->domain, raw, sizeof(raw));
    vw_utf8_clean(raw, false, out->text, sizeof(out->text));
}

/* ---- JSON ---- */

static bool gen_text(yajl_gen g, const char *s)
{
    char clean[CLEAN_MAX];
    vw_utf8_clean(s, false, clean, sizeof(clean));
    return yajl_gen_string(g, (const unsigned char *)clean, strlen(clean)) == yajl_gen_status_ok;
}

static bool gen_value(yajl_gen g, const struct value *v, enum vw_ftype t)
{
    if (v->null)
        return yajl_gen_null(g) == yajl_gen_status_ok;
    switch (t) {
    case VW_T_STRING:
        return gen_text(g, v->s);
    case VW_T_INTEGER:
    case VW_T_TIME:
        return yajl_gen_integer(g, v->i) == yajl_gen_status_ok;
    case VW_T_BOOLEAN:
        return yajl_gen_bool(g, v->i != 0) == yajl_gen_status_ok;
    case VW_T_LIST: {
        bool ok = yajl_gen_array_open(g) == yajl_gen_status_ok;
        for (unsigned b = 0; b < 32; b++)
            if ((uint64_t)v->i & (1u << b))
                ok = ok && gen_text(g, v->name(b));
        return ok && yajl_gen_array_close(g) == yajl_gen_status_ok;
    }
    case VW_T_REASONS:
        return yajl_gen_null(g) == yajl_gen_status_ok;
    }
    return false;
}

static bool gen_reasons(yajl_gen g, const struct row *x)
{
    if (!x->judged)
        return yajl_gen_null(g) == yajl_gen_status_ok;
    bool ok = yajl_gen_array_open(g) == yajl_gen_status_ok;
    for (unsigned c = 0; c < JD_C_COUNT && ok; c++) {
        struct reason rs;
        reason_of(x, c, &rs);
        ok = yajl_gen_map_open(g) == yajl_gen_status_ok;
        ok = ok && gen_text(g, "criterion") && gen_text(g, rs.criterion);
        ok = ok && gen_text(g, "state") && gen_text(g, rs.state);
        ok = ok && gen_text(g, "fails") && yajl_gen_bool(g, rs.fails) == yajl_gen_status_ok;
        ok = ok && gen_text(g, "unit") && gen_text(g, rs.unit);
        ok = ok && gen_text(g, "value") && gen_value(g, &rs.value, VW_T_INTEGER);
        ok = ok && gen_text(g, "threshold") && gen_value(g, &rs.threshold, VW_T_INTEGER);
        ok = ok && gen_text(g, "margin") && gen_value(g, &rs.margin, VW_T_INTEGER);
        ok = ok && gen_text(g, "text") && gen_text(g, rs.text);
        ok = ok && yajl_gen_map_close(g) == yajl_gen_status_ok;
    }
    return ok && yajl_gen_array_close(g) == yajl_gen_status_ok;
}

/* "last_checked_ms" -> "last_checked". */
static void time_text_name(const char *name, char *out, size_t len)
{
    size_t n = strlen(name);
    if (n > 3 && strcmp(name + n - 3, "_ms") == 0)
        n -= 3;
    snprintf(out, len, "%.*s", (int)n, name);
}

int vw_json_record(yajl_gen g, const struct st_record *r, const struct vw_out *o)
{
    struct row x;
    row_init(&x, r, o);
    bool ok = yajl_gen_map_open(g) == yajl_gen_status_ok;
    for (size_t i = 0; i < F_COUNT && ok; i++) {
        const struct vw_field_info *f = &fields[i];
        ok = gen_text(g, f->name);
        if (f->type == VW_T_REASONS) {
            ok = ok && gen_reasons(g, &x);
            continue;
        }
        struct value v = field_value(i, &x);
        ok = ok && gen_value(g, &v, f->type);
        if (f->type == VW_T_TIME && ok) {
            char name[64], iso[40];
            time_text_name(f->name, name, sizeof(name));
            ok = gen_text(g, name);
            if (v.null) {
                ok = ok && yajl_gen_null(g) == yajl_gen_status_ok;
            } else {
                vw_time_iso(v.i, iso, sizeof(iso));
                ok = ok && gen_text(g, iso);
            }
        }
    }
    ok = ok && yajl_gen_map_close(g) == yajl_gen_status_ok;
    return ok ? 0 : -EINVAL;
}

/* An integer member, null when it is not positive (a price or cost) or -1 (a ratio). */
static bool gen_member(yajl_gen g, const char *name, int64_t v, bool money)
{
    bool ok = gen_text(g, name);
    if (money ? v <= 0 : v == -1)
        return ok && yajl_gen_null(g) == yajl_gen_status_ok;
    return ok && yajl_gen_integer(g, v) == yajl_gen_status_ok;
}

int vw_json_history(yajl_gen g, const struct st_history *h, size_t n)
{
    bool ok = yajl_gen_array_open(g) == yajl_gen_status_ok;
    for (size_t i = 0; i < n && ok; i++) {
        const struct st_history *e = &h[i];
        char iso[40];
        vw_time_iso(e->at_ms, iso, sizeof(iso));
        bool priced = e->sell_cents > 0 && e->buy_total_cents > 0;
        ok = yajl_gen_map_open(g) == yajl_gen_status_ok &&
             gen_member(g, "at_ms", e->at_ms, false) && gen_text(g, "at") && gen_text(g, iso) &&
             gen_member(g, "revision", (int64_t)e->revision, false) && gen_text(g, "event") &&
             gen_text(g, st_event_name(e->event)) && gen_text(g, "state") &&
             gen_text(g, st_state_name(e->state)) &&
             gen_member(g, "buy_total_cents", e->buy_total_cents, true) &&
             gen_member(g, "landed_cents", e->landed_cents, true) &&
             gen_member(g, "sell_cents", e->sell_cents, true);
        /* Profit and ROI may be negative: known when both sides were priced. */
        ok = ok && gen_text(g, "profit_cents") &&
             (priced ? yajl_gen_integer(g, e->profit_cents) : yajl_gen_null(g)) ==
                 yajl_gen_status_ok;
        ok = ok && gen_text(g, "roi_bp") &&
             (priced ? yajl_gen_integer(g, e->roi_bp) : yajl_gen_null(g)) == yajl_gen_status_ok;
        /* A run of unchanged re-checks is one entry: how many, and since when. */
        char first[40];
        vw_time_iso(e->checks > 1 ? e->first_ms : e->at_ms, first, sizeof(first));
        ok = ok && gen_member(g, "max_cost_cents", e->max_cost_cents, true) &&
             gen_member(g, "checks", e->checks > 1 ? e->checks : 1, false) &&
             gen_member(g, "first_at_ms", e->checks > 1 ? e->first_ms : e->at_ms, false) &&
             gen_text(g, "first_at") && gen_text(g, first) && gen_text(g, "fails") &&
             yajl_gen_array_open(g) == yajl_gen_status_ok;
        for (unsigned c = 0; c < JD_C_COUNT && ok; c++) {
            if (e->fails & (1u << c))
                ok = gen_text(g, jd_crit_name(c));
        }
        ok = ok && yajl_gen_array_close(g) == yajl_gen_status_ok &&
             yajl_gen_map_close(g) == yajl_gen_status_ok;
    }
    ok = ok && yajl_gen_array_close(g) == yajl_gen_status_ok;
    return ok ? 0 : -EINVAL;
}

/* Writes what G holds to OUT and empties it. */
static int flush(yajl_gen g, FILE *out)
{
    const unsigned char *buf;
    size_t len;
    if (yajl_gen_get_buf(g, &buf, &len) != yajl_gen_status_ok)
        return -EINVAL;
    if (len > 0 && fwrite(buf, 1, len, out) != len)
        return -EIO;
    yajl_gen_clear(g);
    return 0;
}

int vw_json_write(FILE *out, const struct st_record *recs, const size_t *idx, size_t n,
                  const struct vw_out *o)
{
    bool lines = o != NULL && o->json_lines;
    yajl_gen g = yajl_gen_alloc(NULL);
    if (g == NULL)
        return -ENOMEM;
    int rc = 0;
    if (!lines && yajl_gen_array_open(g) != yajl_gen_status_ok)
        rc = -EINVAL;
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (lines) {
            /* A fresh document per line: yajl refuses a second top-level value. */
            yajl_gen_reset(g, NULL);
        }
        rc = vw_json_record(g, &recs[idx != NULL ? idx[i] : i], o);
        if (rc == 0)
            rc = flush(g, out);
        if (rc == 0 && lines && fputc('\n', out) == EOF)
            rc = -EIO;
    }
    if (rc == 0 && !lines) {
        if (yajl_gen_array_close(g) != yajl_gen_status_ok)
            rc = -EINVAL;
        if (rc == 0)
            rc = flush(g, out);
        if (rc == 0 && fputc('\n', out) == EOF)
            rc = -EIO;
    }
    yajl_gen_free(g);
    if (rc == 0 && ferror(out))
        rc = -EIO;
    return rc;
}

/* ---- CSV ---- */

void vw_csv_text(FILE *out, const char *text)
{
    char clean[CLEAN_MAX];
    vw_utf8_clean(text, false, clean, sizeof(clean));
    bool formula = clean[0] == '=' || clean[0] == '+' || clean[0] == '-' || clean[0] == '@' ||
                   clean[0] == '\t' || clean[0] == '\r';
    bool quote = formula || strpbrk(clean, ",\"\r\n") != NULL;
    if (!quote) {
        fputs(clean, out);
        return;
    }
    fputc('"', out);
    if (formula)
        fputc('\'', out);
    for (const char *p = clean; *p; p++) {
        if (*p == '"')
            fputc('"', out);
        fputc(*p, out);
    }
    fputc('"', out);
}

static void csv_value(FILE *out, const struct value *v, enum vw_ftype t)
{
    if (v->null)
        return;
    switch (t) {
    case VW_T_STRING:
        vw_csv_text(out, v->s);
        break;
    case VW_T_INTEGER:
    case VW_T_TIME:
        fprintf(out, "%" PRId64, v->i);
        break;
    case VW_T_BOOLEAN:
        fputs(v->i ? "true" : "false", out);
        break;
    case VW_T_LIST: {
        char words[256] = "";
        size_t used = 0;
        for (unsigned b = 0; b < 32; b++)
            if ((uint64_t)v->i & (1u << b)) {
                int k = snprintf(words + used, sizeof(words) - used, "%s%s", used ? ";" : "",
                                 v->name(b));
                if (k > 0 && (size_t)k < sizeof(words) - used)
                    used += (size_t)k;
            }
        vw_csv_text(out, words);
        break;
    }
    case VW_T_REASONS:
        break;
    }
}

static void csv_reasons(FILE *out, const struct row *x)
{
    if (!x->judged)
        return;
    char all[JD_C_COUNT * 170] = "";
    size_t used = 0;
    for (unsigned c = 0; c < JD_C_COUNT; c++) {
        struct reason rs;
        reason_of(x, c, &rs);
        int k = snprintf(all + used, sizeof(all) - used, "%s%s", c ? "; " : "", rs.text);
        if (k > 0 && (size_t)k < sizeof(all) - used)
            used += (size_t)k;
    }
    vw_csv_text(out, all);
}

int vw_csv_write(FILE *out, const struct st_record *recs, const size_t *idx, size_t n,
                 const struct vw_out *o)
{
    for (size_t i = 0; i < F_COUNT; i++) {
        if (i > 0)
            fputc(',', out);
        fputs(fields[i].name, out);
        if (fields[i].type == VW_T_TIME) {
            char name[64];
            time_text_name(fields[i].name, name, sizeof(name));
            fprintf(out, ",%s", name);
        }
    }
    fputs("\r\n", out);
    for (size_t k = 0; k < n; k++) {
        struct row x;
        row_init(&x, &recs[idx != NULL ? idx[k] : k], o);
        for (size_t i = 0; i < F_COUNT; i++) {
            if (i > 0)
                fputc(',', out);
            if (fields[i].type == VW_T_REASONS) {
                csv_reasons(out, &x);
                continue;
            }
            struct value v = field_value(i, &x);
            csv_value(out, &v, fields[i].type);
            if (fields[i].type == VW_T_TIME) {
                fputc(',', out);
                if (!v.null) {
                    char iso[40];
                    vw_time_iso(v.i, iso, sizeof(iso));
                    fputs(iso, out);
                }
            }
        }
        fputs("\r\n", out);
    }
    return ferror(out) ? -EIO : 0;
}
