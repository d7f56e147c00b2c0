/*
 * selection.h: the JSON selection the scanner sends to /deal or /query, one page at a time.
 *
 * The operator's selection file (Keepa's own JSON, as the Keepa web UI exports it) is parsed
 * once (at start and on HUP) into a tree and checked: it must be an object; for /deal it needs
 * priceTypes, and dateRange/sortType must be numbers, because Keepa silently ignores them
 * when they are strings (docs/failure-modes.md F12); a domainId must match [keepa] domain (it is
 * added when absent). For /query, perPage is bounded so a page fits the scanner's memory bound.
 * Each page is rendered from the tree with its own "page" (any "page" in the file is
 * ignored), so every other field stays byte-identical between pages (Keepa caches a
 * selection's result for 120 s). The hash identifies the selection without its page: the
 * cursor of one selection is not reused for another.
 *
 * The discovery filters of the config (scanner/rules.h struct scanner_discovery: [scan]
 * max_rank, categories, exclude_categories, no_amazon, min_price, max_price) are written into
 * the selection as Keepa's own keys, so a seller never writes Keepa JSON for them:
 *
 *   filter        /deal                                      /query (Product Finder)
 *   max_rank      salesRankRange [0, N]                      current_SALES_gte 1, _lte N
 *   categories    includeCategories [..]                     rootCategory [..]
 *   exclude_...   excludeCategories [..]                     categories_exclude [..]
 *   no_amazon     mustNotHaveAmazonOffer true                availabilityAmazon -1
 *   min/max_price currentRange [min, max] (the buy's type)   current_USED|NEW_gte / _lte
 *
 * with isRangeEnabled / isFilterEnabled turned on where /deal needs them. Precedence: a key
 * the selection file sets itself is sent as written (the file is the seller's explicit
 * Keepa JSON) and the config's value for it is not; either way the peek applies every
 * discovery filter again (scanner_discovery_pass), so the result is the intersection. The
 * built-in /deal selection's price type follows [filter] buy_condition (New for new and
 * new_then_used, else Used).
 */
#ifndef KD_SCANNER_SELECTION_H
#define KD_SCANNER_SELECTION_H

#include <stddef.h>
#include <stdint.h>

#include "base/config.h"
#include "scanner/rules.h"

struct scanner_selection {
    void *tree;                    /* yajl_val of the object (owned) */
    int source;                    /* CFG_SOURCE_DEALS or CFG_SOURCE_QUERY */
    int64_t domain;                /* [keepa] domain: the domainId added when the file has none */
    int64_t per_page;              /* items of a full page: 150 for /deal, perPage for /query */
    int64_t last_page;             /* the last page the endpoint serves */
    uint64_t hash;                 /* of the rendering without the page */
    char origin[CFG_STR_MAX + 1];  /* the file, or "built-in" */
    struct scanner_discovery disc; /* written into every page (see the file comment) */
    /* The probe (scanner/rules.h): /deal only. */
    bool probe_ok;                        /* a deltaPercentRange floor can be added */
    int price_type, date_range;           /* the deal's deltaPercent row the range filters */
    int32_t delta_pct_min, delta_pct_max; /* the seller's deltaPercentRange (0, 100: none) */
};

/*
 * Parses JSON (NUL-terminated) as a selection for SOURCE in DOMAIN with the discovery
 * filters DISC (NULL: none) into OUT. ORIGIN names it in messages. Returns 0, or -EINVAL with
 * a one-line message in ERR (OUT untouched), -ENOMEM.
 */
int scanner_selection_parse(struct scanner_selection *out, int source, int64_t domain,
                            const struct scanner_discovery *disc, const char *json,
                            const char *origin, char *err, size_t errlen);

/*
 * Loads the selection file PATH for SOURCE; an empty PATH gives the built-in /deal selection
 * for DOMAIN (price drops of the buy's side over 90 days of 10..100 %, sorted by percentage).
 * /query requires a file. DISC as for scanner_selection_parse. Returns 0 or a negative errno
 * with a message in ERR (OUT untouched).
 */
int scanner_selection_load(struct scanner_selection *out, int source, int64_t domain,
                           const struct scanner_discovery *disc, const char *path, char *err,
                           size_t errlen);

/*
 * Renders page PAGE of S as compact JSON into a malloc'd NUL-terminated string (*OUT, *LEN;
 * the caller frees it). Returns 0 or -ENOMEM.
 */
int scanner_selection_render(const struct scanner_selection *s, uint64_t page, char **out,
                             size_t *len);

/*
 * As scanner_selection_render, with Keepa's sortType SORT_TYPE (> 0) in place of the
 * selection's own for /deal (the fresh rule reads the feed newest first; every filter stays the
 * seller's). SORT_TYPE 0, or a /query selection, renders as scanner_selection_render.
 */
int scanner_selection_render_sorted(const struct scanner_selection *s, uint64_t page, int sort_type,
                                    char **out, size_t *len);

/*
 * As scanner_selection_render_sorted, with the deltaPercentRange floor raised to FLOOR_PCT (the
 * probe, scanner/rules.h): [max(FLOOR_PCT, the seller's floor), the seller's ceiling or 100],
 * isRangeEnabled on. A selection without probe_ok, or FLOOR_PCT <= 0, renders as
 * scanner_selection_render_sorted.
 */
int scanner_selection_render_probe(const struct scanner_selection *s, uint64_t page, int sort_type,
                                   int32_t floor_pct, char **out, size_t *len);

/* Frees the tree of S (S itself is the caller's). Safe on a zeroed struct. */
void scanner_selection_free(struct scanner_selection *s);

#endif
