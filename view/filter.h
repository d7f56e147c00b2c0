/*
 * filter.h: the seller's view of the store: which records to show, in what order, how many.
 *
 * One vocabulary everywhere. Every view-time filter and sort has one name (min_roi,
 * max_rank, sort, ...) listed once in VW_FILTER_KEYS below. The command line spells it with
 * dashes (`--min-roi 25`), a config preset section (`[view.optimal]`) and a URL query of the
 * web API with underscores (`min_roi = 25`, `?min_roi=25`); vw_filter_parse_arg() accepts all
 * three spellings, so the CLI, the presets, the web API and the alerts cannot drift apart.
 * Values are what a person writes: a percentage for ROI ("25", "12.5"), money in the
 * marketplace's currency for profit ("5.00", not cents), a duration or a date for since.
 * Setting a key again replaces its value (a command-line flag overrides a preset's); keys that
 * take several values take them in one value separated by '|' (Amazon's category names contain
 * commas). docs/view.md lists the vocabulary from the same table (view/doc.h).
 *
 * What the filters read. The record's stored judgement inputs and verdict (store/codec.h):
 * nothing is fetched and nothing is re-judged to filter. A filter on a value the record does
 * not know (no sales rank, no monthlySold, an unpriced record for min_roi) excludes the
 * record: a view that asks for "rank at most 500 000" never shows a product whose rank nobody
 * knows. The one exception is no_hazmat, which excludes only products Keepa lists as hazmat
 * (hazardousMaterials present): Keepa sends nothing for most products, and hiding all of them
 * would hide almost everything.
 *
 * Expected monthly profit (sort=monthly): profit per unit x the monthly sales the seller can
 * expect, the product's monthly sales shared evenly among the live offers of the buy's
 * condition plus the seller's own:
 *
 *     monthly_profit = profit_cents x monthly_sales / (competing_offers + 1)
 *
 * monthly_sales is Keepa's monthlySold; when Keepa does not send it, salesRankDrops30 (each
 * drop of the sales rank in 30 days is counted as one sale, the usual reading); when neither
 * is known, or the competing offers are not known, or the record is not priced, the expected
 * monthly profit is unknown and sorts after every known one. competing_offers is
 * vw_competing_offers() below.
 *
 * Selection is deterministic: matches are sorted by the key, ties (and unknowns, which sort
 * last) by ASIN then domain, so paging with offset/limit never shows a record twice or skips
 * one on the same snapshot.
 *
 * Pure functions: no I/O, no clock (the caller passes now_ms), no allocation. The vocabulary
 * and its parser (view/vocab.c, library kd_view_vocab) link no store; matching and selection
 * are view/filter.c.
 */
#ifndef KD_VIEW_FILTER_H
#define KD_VIEW_FILTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "judge/judge.h"
#include "store/codec.h"

#define VW_CATEGORIES_MAX 16 /* categories in one filter */
#define VW_LIMIT_MAX      1000000

/*
 * The vocabulary: X(ID, name, cli, takes_value, value words, meaning). ID names the enum
 * vw_key, name is the canonical spelling (config and URL), cli the command line's (the name
 * with dashes; tests hold the two together). A key that takes no value is a switch: on the
 * command line its presence sets it; in a preset or a URL it takes true/false (yes/no,
 * on/off, 1/0).
 */
#define VW_FILTER_KEYS(X)                                                                          \
    X(MIN_ROI, "min_roi", "--min-roi", true, "percent, e.g. 25 or 12.5",                           \
      "ROI (profit / landed cost) at least this; unpriced records are excluded")                   \
    X(MIN_PROFIT, "min_profit", "--min-profit", true,                                              \
      "money in the marketplace's currency, e.g. 5.00",                                            \
      "profit per unit at least this; unpriced records are excluded")                              \
    X(MAX_RANK, "max_rank", "--max-rank", true, "a rank >= 1",                                     \
      "current sales rank at most this; records without a rank are excluded")                      \
    X(MIN_DROPS30, "min_drops30", "--min-drops30", true, "a count >= 0",                           \
      "sales rank drops in 30 days at least this; unknown excluded")                               \
    X(MIN_SOLD, "min_sold", "--min-sold", true, "a count >= 0",                                    \
      "Keepa's monthlySold at least this; unknown excluded")                                       \
    X(MAX_OFFERS, "max_offers", "--max-offers", true, "a count >= 0",                              \
      "competing offers (live offers of the buy's condition) at most this; unknown excluded")      \
    X(CATEGORY, "category", "--category", true,                                                    \
      "root category ids or names, several separated by |",                                        \
      "root category is one of these (a name matches case-insensitively)")                         \
    X(CONDITION, "condition", "--condition", true,                                                 \
      "new, used, like_new, very_good, good, acceptable; several separated by |",                  \
      "the buy offer's condition is one of these (used: any of the four used ones)")               \
    X(NO_AMAZON, "no_amazon", "--no-amazon", false, "a switch",                                    \
      "hide products Amazon itself sells or holds the Buy Box of (amazon_on_listing)")             \
    X(NO_HAZMAT, "no_hazmat", "--no-hazmat", false, "a switch",                                    \
      "hide products Keepa lists as hazmat (unknown is kept)")                                     \
    X(VERDICT, "verdict", "--verdict", true, "deal, near, all; several separated by |",            \
      "deal: in the deal state (default); near: not a deal, fails only ROI/profit within the "     \
      "near margins; all: every record, failing and rejected too")                                 \
    X(SINCE, "since", "--since", true,                                                             \
      "a duration back from now (90s, 30m, 2h, 7d, 2w), an ISO 8601 date or time (UTC unless "     \
      "it has an offset), or epoch milliseconds",                                                  \
      "deals that became a deal at or after this time; other records checked at or after it")      \
    X(MARKED, "marked", "--marked", false, "a switch",                                             \
      "show records marked bought or ignored too (hidden by default)")                             \
    X(SORT, "sort", "--sort", true, "roi, profit, monthly, rank, fresh",                           \
      "order: roi, profit and monthly highest first, rank lowest first, fresh most recently "      \
      "checked first; ties by ASIN (default roi)")                                                 \
    X(LIMIT, "limit", "--limit", true, "a count >= 0, 0 for all",                                  \
      "show at most this many records (after offset)")                                             \
    X(OFFSET, "offset", "--offset", true, "a count >= 0",                                          \
      "skip this many matching records first (paging)")

#define VW_KEY_ENUM(id, name, cli, takes_value, value_words, meaning) VW_K_##id,
enum vw_key { VW_FILTER_KEYS(VW_KEY_ENUM) VW_K_COUNT };
#undef VW_KEY_ENUM

/* One key of the vocabulary, for help texts and docs. */
struct vw_key_info {
    enum vw_key id;
    const char *name;        /* canonical: "min_roi" */
    const char *cli;         /* "--min-roi" */
    bool takes_value;        /* false: a switch */
    const char *value_words; /* what the value may be */
    const char *meaning;
};

enum vw_sort { VW_SORT_ROI = 0, VW_SORT_PROFIT, VW_SORT_MONTHLY, VW_SORT_RANK, VW_SORT_FRESH };

/* Record classes for the verdict filter: every record is exactly one of them. */
enum {
    VW_VERDICT_DEAL = 1u << 0,  /* state DEAL */
    VW_VERDICT_NEAR = 1u << 1,  /* not DEAL, stored verdict near */
    VW_VERDICT_OTHER = 1u << 2, /* the rest: failing or rejected, not near */
    VW_VERDICT_ALL = 7u
};

/* Buy conditions for the condition filter: bit (1 << offers[].condition), 1..5. */
#define VW_CONDITION_NEW  (1u << 1)
#define VW_CONDITION_USED ((1u << 2) | (1u << 3) | (1u << 4) | (1u << 5))

struct vw_category {
    int64_t id;                      /* > 0: a root category id; 0: match by name */
    char name[ST_CATEGORY_NAME_MAX]; /* when id is 0 */
};

/*
 * A view: which records, in what order, how many. Fill it with vw_filter_init() and then
 * vw_filter_parse_arg(); the members may be read but are set through the parser so `given`
 * stays right. A numeric filter applies only when its bit is in `given`.
 */
struct vw_filter {
    uint32_t given;  /* bit (1 << enum vw_key) per key set */
    unsigned domain; /* the marketplace whose currency money values were read in */
    int64_t min_roi_bp;
    int64_t min_profit_cents;
    int64_t max_rank;
    int32_t min_drops30;
    int32_t min_sold;
    int32_t max_offers;
    uint8_t n_categories;
    struct vw_category categories[VW_CATEGORIES_MAX];
    uint32_t conditions; /* bit per offers[].condition; 0: any */
    bool no_amazon;
    bool no_hazmat;
    uint8_t verdicts;     /* VW_VERDICT_* bits; default DEAL */
    bool marked;          /* show bought and ignored records too */
    int64_t since_ms;     /* absolute epoch ms, when since_ago_ms is 0 */
    int64_t since_ago_ms; /* > 0: since now_ms - this */
    enum vw_sort sort;    /* default ROI */
    size_t limit;         /* 0: no limit */
    size_t offset;
};

/* The keys of the vocabulary in table order: I < VW_K_COUNT, else NULL. */
const struct vw_key_info *vw_filter_key(size_t i);

/* The default view: deals only, unmarked only, sorted by ROI, no limit; money read in
 * DOMAIN's currency (a Keepa domain id: 1 com, 3 de, ...), or with DOMAIN 0 (a view over
 * several marketplaces) in each record's own currency (vw_money_in). */
void vw_filter_init(struct vw_filter *f, unsigned domain);

/*
 * Whether NAME (any spelling: "--min-roi", "min-roi", "min_roi") is a key of the vocabulary:
 * 1 when it takes a value, 0 when it is a switch, -ENOENT when it is not a key. The CLI asks
 * this to know whether to consume the next argument.
 */
int vw_filter_arity(const char *name);

/*
 * Sets key NAME (any spelling) to VALUE in F, replacing an earlier value of that key. VALUE
 * is NULL for a switch given on the command line (it turns it on); a switch also takes
 * true/false words. Money is read in F->domain's currency. Returns 0; -ENOENT when NAME is not
 * a key; -EINVAL when VALUE is not allowed for it (or is missing). On failure F is unchanged
 * and ERR (ERRLEN bytes, always terminated when ERRLEN > 0) holds one line naming the key as
 * written and what is allowed: "--min-roi 'abc': a percent, e.g. 25 or 12.5".
 */
int vw_filter_parse_arg(struct vw_filter *f, const char *name, const char *value, char *err,
                        size_t errlen);

/*
 * As vw_filter_parse_arg, but ERR gets only what the key allows ("a percent, e.g. 25 or
 * 12.5"; for an unknown key "(known: min_roi, ...)"), for callers that name the key and the
 * value their own way (the config checker of [view.NAME] presets, view/preset.h).
 */
int vw_filter_parse_value(struct vw_filter *f, const char *name, const char *value, char *err,
                          size_t errlen);

/*
 * Writes the keys set in F as "name=value" lines (canonical names, values in the parser's
 * syntax) into BUF (LEN bytes, always terminated when LEN > 0): parsing them back gives the
 * same filter. A relative since is written as its duration. Returns what snprintf returns: the
 * length the whole text needs.
 */
int vw_filter_format(const struct vw_filter *f, char *buf, size_t len);

/* Whether record R passes every filter of F at NOW_MS (epoch ms; resolves a relative since).
 * Ignores sort, limit and offset. */
bool vw_match(const struct st_record *r, const struct vw_filter *f, int64_t now_ms);

/*
 * Selects from RECS (N records) those that match F at NOW_MS, sorts them by F->sort (ties by
 * ASIN, then domain, then position), applies F->offset and F->limit, and writes their indices
 * into OUT (room for N), setting *N_OUT. *N_MATCHED (if not NULL) gets the number of matches
 * before paging, for "21-40 of 135". Returns 0 (it cannot fail on valid arguments).
 */
int vw_select(const struct st_record *recs, size_t n, const struct vw_filter *f, int64_t now_ms,
              size_t *out, size_t *n_out, size_t *n_matched);

/*
 * Derived figures the filters, the sort and the outputs share.
 *
 * vw_amazon_on_listing: Amazon sells the product itself or holds its Buy Box: Amazon's price
 * is known (stats.current[0] > 0), or availabilityAmazon is 0 (now), 1 (preorder), 3 (back
 * order) or 4 (delayed), or buyBoxIsAmazon, or the buy offer is Amazon's own.
 *
 * vw_competing_offers: live offers of the buy's condition, the seller's competition when
 * selling it: COUNT_USED for a used buy, COUNT_NEW for a new one (the verdict's sell side when
 * the condition is unknown); when Keepa has no such count, offerCountFBA + offerCountFBM (every
 * retrieved live offer, any condition) if both are known; else -1.
 *
 * vw_monthly_sales: monthlySold, else salesRankDrops30, else -1; *BASIS (if not NULL) gets
 * "monthly_sold", "drops30" or "none".
 *
 * vw_monthly_profit: the expected monthly profit (formula in the file comment) in cents,
 * rounded to the nearest cent; false when it is unknown.
 */
bool vw_amazon_on_listing(const struct st_record *r);
int32_t vw_competing_offers(const struct st_record *r);
int32_t vw_monthly_sales(const struct st_record *r, const char **basis);
bool vw_monthly_profit(const struct st_record *r, int64_t *cents);

/*
 * The figures at the seller's own cost: for a record marked bought with a cost
 * (bought_cost_cents >= 0), its stored inputs judged under RULES with the buy side set to that
 * cost (judge/inputs.h jd_inputs_set_own_cost, in the condition the record was judged for;
 * tax, prep and inbound as the rules say). The stored verdict stays the estimate of the offer
 * it judged: the outputs show both (docs/view.md). Returns false (OUT untouched) when R has no
 * bought cost or RULES is NULL.
 */
bool vw_at_cost(const struct st_record *r, const struct jd_rules *rules, struct jd_verdict *out);

/*
 * An amount of money of F (min_profit) as a threshold for a record of DOMAIN, in that record's
 * smallest units. A filter of one marketplace (F->domain set) read it in that currency. A
 * view over several marketplaces (F->domain 0) reads money as hundredths of a unit and
 * applies it in each record's own currency: --min-profit 5 is $5.00 on amazon.com, 5.00 EUR on
 * amazon.de, 5 JPY on amazon.co.jp (no currency is converted).
 */
int64_t vw_money_in(const struct vw_filter *f, int64_t amount, unsigned domain);

/* The names of a sort, a verdict class bit and a condition bit ("roi", "near", "like_new"). */
const char *vw_sort_name(enum vw_sort s);

#endif
