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

/* Product Finder (/query). Filters are `<field>_<TYPE>_gte|lte` on current/avg* values. */
enum sim_qfield {
    SIM_QF_CURRENT,
    SIM_QF_AVG30,
    SIM_QF_AVG90,
    SIM_QF_AVG180,
    SIM_QF_AVG365,
    SIM_QF_DROPS30,
    SIM_QF_DROPS90
};
struct sim_qfilter {
    enum sim_qfield field;
    int type; /* csv index */
    int is_lte;
    int64_t value;
};
struct sim_query {
    int page, per_page;
    int n_filters;
    struct sim_qfilter filters[16];
    int n_roots;
    int64_t roots[16];
    int sort_set;
    enum sim_qfield sort_field;
    int sort_type;
    int sort_desc;
};

/* Parses a /query selection; same return convention as sim_selection_parse. */
int sim_query_parse(const char *json, size_t len, struct sim_query *q, char *err, size_t errsz);

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

/* Strict decimal integer parse of S (optional sign); returns 0 or -EINVAL. */
int sim_parse_i64(const char *s, int64_t *out);

#endif
