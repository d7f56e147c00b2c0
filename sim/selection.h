/*
 * selection.h: pure parsers for everything a client sends the simulator.
 *
 * Deal selections (/deal and the /_sim/deals oracle), Product Finder selections (/query) and
 * /product parameters are turned into plain structs here, with no I/O and no globals, so the
 * libFuzzer target (tests/fuzz/fuzz_sim_selection.c) can drive them directly. JSON input is
 * bounded before yajl sees it (size and nesting depth), so a hostile body costs at most a
 * bounded parse. Leniency follows docs/keepa-api.md §8: domainId may be a string, priceTypes a
 * scalar, dateRange 4 means 90 days, and dateRange/sortType sent as strings are ignored.
 */
#ifndef SIM_SELECTION_H
#define SIM_SELECTION_H

#include <stddef.h>
#include <stdint.h>
#include <yajl/yajl_tree.h>

#define SIM_SEL_MAX_BYTES   (256 * 1024)
#define SIM_SEL_MAX_DEPTH   16
#define SIM_SEL_MAX_CATS    500
#define SIM_PRODUCT_MAX_IDS 100

struct sim_range {
    int set;
    int64_t lo, hi; /* hi < 0 means open */
};

struct sim_selection {
    int page;
    int domain_id; /* 0 = absent */
    int price_type;
    int date_range; /* 0..3 */
    int sort_type;  /* ±1..4 */
    int is_range_enabled, is_filter_enabled;
    int single_variation, is_risers, has_reviews;
    int must_have_amazon, must_not_have_amazon;
    int min_rating; /* -1 = off */
    struct sim_range current, delta, delta_percent, delta_last, sales_rank;
    int n_include, n_exclude;
    int64_t include_cats[SIM_SEL_MAX_CATS];
    int64_t exclude_cats[SIM_SEL_MAX_CATS];
};

/*
 * Parses a deal selection of LEN bytes (no NUL needed). Returns 0, or -EINVAL (not JSON, not
 * an object, no or bad priceTypes, bad page) or -E2BIG (too large or too deep) with a short
 * reason in ERR (size ERRSZ).
 */
int sim_selection_parse(const char *json, size_t len, struct sim_selection *sel, char *err,
                        size_t errsz);

/* A canonical string of SEL without its page (the /deal cache key) into OUT; returns 0. */
int sim_selection_key(const struct sim_selection *sel, char *out, size_t outsz);

/*
 * Product Finder (/query; sim/README.md, "Product Finder"). Numeric filters are
 * `<field>_gte` / `<field>_lte`: per csv type (`current_`, `avg1_`, `avg7_`, `avg30_`, `avg90_`,
 * `avg180_`, `avg365_`, `delta1_`..`delta90_`, `deltaPercent1_`..`deltaPercent90_`,
 * `deltaLast_` followed by a csv type name such as USED or BUY_BOX_SHIPPING) or product-wide
 * (salesRankDrops30, monthlySold, packageWeight, ...). Text filters (title keywords; author,
 * brand, manufacturer, binding, productGroup, type: any of a list), category filters
 * (rootCategory, categories_include, categories_exclude), lists (productType,
 * availabilityAmazon, sellerIds, sellerIdsLowestFBA/FBM) and booleans (hasReviews,
 * isAdultProduct, isHazMat, isHeatSensitive, singleVariation, hasParentASIN, isSNS) are
 * honoured. Every other key is accepted and named in IGNORED, so the answer can say which
 * filters it did not apply.
 */
enum sim_qfield {
    /* per csv type */
    SIM_QF_CURRENT,
    SIM_QF_AVG1,
    SIM_QF_AVG7,
    SIM_QF_AVG30,
    SIM_QF_AVG90,
    SIM_QF_AVG180,
    SIM_QF_AVG365,
    SIM_QF_DELTA1,
    SIM_QF_DELTA7,
    SIM_QF_DELTA30,
    SIM_QF_DELTA90,
    SIM_QF_DELTA_PCT1,
    SIM_QF_DELTA_PCT7,
    SIM_QF_DELTA_PCT30,
    SIM_QF_DELTA_PCT90,
    SIM_QF_DELTA_LAST,
    SIM_QF_PER_TYPE, /* the fields above take a csv type */
    /* product-wide */
    SIM_QF_DROPS30 = SIM_QF_PER_TYPE,
    SIM_QF_DROPS90,
    SIM_QF_DROPS180,
    SIM_QF_DROPS365,
    SIM_QF_MONTHLY_SOLD,
    SIM_QF_OFFERS_FBA,
    SIM_QF_OFFERS_FBM,
    SIM_QF_TOTAL_OFFERS,
    SIM_QF_PKG_WEIGHT,
    SIM_QF_PKG_LENGTH,
    SIM_QF_PKG_WIDTH,
    SIM_QF_PKG_HEIGHT,
    SIM_QF_FBA_FEES,
    SIM_QF_TRACKING_SINCE,
    SIM_QF_LISTED_SINCE,
    SIM_QF_LAST_UPDATE,
    SIM_QF_LAST_PRICE_CHANGE,
    SIM_QF_PUBLICATION_DATE,
    SIM_QF_COUNT
};

enum sim_qtext {
    SIM_QT_AUTHOR,
    SIM_QT_BRAND,
    SIM_QT_MANUFACTURER,
    SIM_QT_BINDING,
    SIM_QT_PRODUCT_GROUP,
    SIM_QT_TYPE,
    SIM_QT_COUNT
};

enum sim_qbool {
    SIM_QB_HAS_REVIEWS,
    SIM_QB_ADULT,
    SIM_QB_HAZMAT,
    SIM_QB_HEAT,
    SIM_QB_SINGLE_VAR,
    SIM_QB_HAS_PARENT,
    SIM_QB_SNS,
    SIM_QB_COUNT
};

enum sim_qseller { SIM_QS_ANY, SIM_QS_LOWEST_FBA, SIM_QS_LOWEST_FBM, SIM_QS_COUNT };

#define SIM_Q_MAX_FILTERS 64
#define SIM_Q_MAX_WORDS   16 /* strings in one text list, keywords in a title */
#define SIM_Q_WORD        64 /* bytes of one string, NUL included */

struct sim_qfilter {
    enum sim_qfield field;
    int type; /* csv index for the per-type fields, else -1 */
    int is_lte;
    int64_t value;
};

struct sim_qwords {
    int n;
    char w[SIM_Q_MAX_WORDS][SIM_Q_WORD];
};

struct sim_query {
    int page, per_page;
    int n_filters;
    struct sim_qfilter filters[SIM_Q_MAX_FILTERS];
    struct sim_qwords title;              /* every keyword in the title (case-insensitive) */
    struct sim_qwords text[SIM_QT_COUNT]; /* one of the strings (case-insensitive, whole) */
    struct sim_qwords sellers[SIM_QS_COUNT];
    int n_roots, n_include, n_exclude;
    int64_t roots[SIM_SEL_MAX_CATS], include[SIM_SEL_MAX_CATS], exclude[SIM_SEL_MAX_CATS];
    int n_product_types, n_availability;
    int64_t product_types[16], availability[16];
    int bools[SIM_QB_COUNT]; /* -1 unset, 0, 1 */
    int sort_set;
    enum sim_qfield sort_field;
    int sort_type;
    int sort_desc;
    char ignored[512]; /* keys accepted but not modelled, comma-separated (may be cut short) */
};

/* Parses a /query selection; same return convention as sim_selection_parse. */
int sim_query_parse(const char *json, size_t len, struct sim_query *q, char *err, size_t errsz);

/* The Product Finder name of csv type TYPE ("USED", ...), NULL when it has none. */
const char *sim_query_type_name(int type);

/* /product parameters. */
enum sim_stats_mode { SIM_STATS_NONE, SIM_STATS_DAYS, SIM_STATS_RANGE };
struct sim_product_req {
    int n_ids;
    int by_code;
    char ids[SIM_PRODUCT_MAX_IDS][24];
    enum sim_stats_mode stats_mode;
    int64_t stats_days;
    int64_t stats_from_ms, stats_to_ms;
    int history;  /* default 1 */
    int64_t days; /* 0 = no limit */
    int offers;   /* 0 = none, else 20..100 */
    int only_live_offers, rating, buybox, stock, historical_variations;
    int update; /* hours; default 1; 0 = live; -1 = never */
};

/* Returns the value of query parameter NAME or NULL. */
typedef const char *(*sim_param_fn)(void *ctx, const char *name);

/*
 * Fills R from the request's query parameters (GET). OFFERS_ZERO_OK turns `offers=0` into
 * "no offers" instead of a 400. Returns 0 or -EINVAL with a reason in ERR.
 */
int sim_product_req_parse(sim_param_fn get, void *ctx, int offers_zero_ok,
                          struct sim_product_req *r, char *err, size_t errsz);

/*
 * Parses LEN bytes of JSON with the selections' bounds (size, nesting depth, no NUL): an object,
 * or with OBJECT_ONLY 0 also an array. Returns the tree (yajl_tree_free it), or NULL with *RC
 * -EINVAL / -E2BIG / -ENOMEM and a reason in ERR.
 */
yajl_val sim_json_parse(const char *json, size_t len, int object_only, char *err, size_t errsz,
                        int *rc);

/* Strict decimal integer parse of S (optional sign); returns 0 or -EINVAL. */
int sim_parse_i64(const char *s, int64_t *out);

#endif
