/*
 * deals.h: which products are deals under a selection, and in what order (pure).
 *
 * Shared by /deal and the /_sim/deals oracle so the two can never disagree. Semantics
 * (documented in sim/README.md): a product is listed when Keepa refreshed it within the last
 * 12 Keepa hours, the category filters and the static filters (minRating, singleVariation,
 * hasReviews) pass, and at some moment of its feed window (sim_catalog_window) it had a
 * current value and an average for the price type and date range, a delta (avg - current)
 * > 0 (< 0 with isRisers) and every enabled range and Amazon-offer switch held. The deal
 * records its deepest such moment (the largest deltaPercent, the latest on a tie): that is
 * its creationDate and what sortType 2 and 4 order by, while the deal object shows the
 * product's current values. The rich economy's window is "now" alone, so there a deal is a
 * product that qualifies now.
 */
#ifndef SIM_DEALS_H
#define SIM_DEALS_H

#include <stddef.h>
#include <stdint.h>

#include "sim/catalog.h"
#include "sim/selection.h"

#define SIM_DEAL_PAGE      150
#define SIM_DEAL_MAX_TOTAL 10000
#define SIM_DEAL_FRESH_MIN 720

/* Deal figures of P now for date range DR and price type PT (delta = avg - current). */
struct sim_deal_metrics {
    int64_t cur, avg, delta, delta_pct, delta_last, rank;
};
void sim_deal_metrics(const struct sim_product *p, int dr, int pt, struct sim_deal_metrics *m);

/* The moment a deal qualified (its creationDate) and its figures then. */
struct sim_deal_hit {
    int64_t minute;
    int64_t cur, avg, delta, delta_pct;
};

/*
 * 1 when P (from sim_catalog_product or sim_catalog_product_light) is listed under S
 * (categories included when CHECK_CATS), else 0. HIT (may be NULL) receives the moment the
 * deal records.
 */
int sim_deal_match(const struct sim_catalog *c, const struct sim_selection *s,
                   const struct sim_product *p, int check_cats, struct sim_deal_hit *hit);

/* Result of a scan: matching indexes in selection order with their hits, and per-root-slot
 * counts of the products that match every filter except the category filters. */
struct sim_deal_result {
    int64_t *idx;
    struct sim_deal_hit *hit;
    size_t n;
    int64_t keepa_min;
    int64_t root_counts[32];
};

/*
 * Scans the whole catalog at KEEPA_MIN. LIMIT caps the returned list (0 = no cap). Returns 0
 * or -ENOMEM; free with sim_deal_result_free().
 */
int sim_deal_scan(const struct sim_catalog *c, const struct sim_selection *s, int64_t keepa_min,
                  size_t limit, struct sim_deal_result *r);
void sim_deal_result_free(struct sim_deal_result *r);

/*
 * What a scan keeps of one product between scans of one selection: the fold of its feed
 * window's moments up to the start of its price epoch EPOCH (INT64_MIN: none), the same at
 * every minute of that epoch, its static draws (sim_catalog_product_static), and its price
 * levels in its epoch LEVELS_EPOCH (sim_catalog_product_levels, which read the same all epoch
 * long; INT64_MIN: none). Only the calibrated economy with moving prices uses it. About 700
 * bytes a product: 14 MB for 20 000 products.
 */
struct sim_deal_memo_entry {
    int64_t epoch;
    int found;
    struct sim_deal_hit best;
    int has_static; /* st holds the product's static draws */
    struct sim_product_static st;
    int64_t levels_epoch, slot_lo;
    int n_slots;
    double slot_used[SIM_SLOT_CACHE], slot_new[SIM_SLOT_CACHE];
    unsigned char slot_amazon[SIM_SLOT_CACHE], slot_bb_off[SIM_SLOT_CACHE];
};

/* One selection's memo: an entry per catalog product. */
struct sim_deal_memo {
    struct sim_deal_memo_entry *e;
    int64_t n;
};

#define SIM_DEAL_MEMO_MAX 1000000 /* products; a larger catalog scans without a memo */

/* 0, -EINVAL (no products, or more than SIM_DEAL_MEMO_MAX) or -ENOMEM. */
int sim_deal_memo_init(struct sim_deal_memo *m, int64_t products);
/* Forgets every entry: the memo's selection changed. */
void sim_deal_memo_reset(struct sim_deal_memo *m);
void sim_deal_memo_free(struct sim_deal_memo *m);

/*
 * sim_deal_scan with MEMO (may be NULL: none), which belongs to this selection and catalog
 * and to one scan at a time: the same result as sim_deal_scan, faster from the second scan
 * of a price epoch on (each product's window is read from its epoch's start only).
 */
int sim_deal_scan_memo(const struct sim_catalog *c, const struct sim_selection *s,
                       int64_t keepa_min, size_t limit, struct sim_deal_memo *memo,
                       struct sim_deal_result *r);

#endif
