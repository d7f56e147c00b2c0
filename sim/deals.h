/*
 * deals.h: which products are deals under a selection, and in what order (pure).
 *
 * Shared by /deal and the /_sim/deals oracle so the two can never disagree. Semantics
 * (documented in sim/README.md): a product is a candidate when Keepa refreshed it within the
 * last 12 Keepa hours, it has a current value and an average for the price type and date
 * range, and its delta (avg - current) is > 0 (< 0 with isRisers). isRangeEnabled gates the
 * ranges; isFilterEnabled gates minRating, singleVariation, hasReviews and the Amazon-offer
 * switches; category filters always apply.
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

/* Deal figures of P for date range DR and price type PT (delta = avg - current). */
struct sim_deal_metrics {
    int64_t cur, avg, delta, delta_pct, delta_last, rank;
};
void sim_deal_metrics(const struct sim_product *p, int dr, int pt, struct sim_deal_metrics *m);

/* 1 when P matches S (categories included when CHECK_CATS), else 0. */
int sim_deal_match(const struct sim_selection *s, const struct sim_product *p, int check_cats);

/* Result of a scan: matching indexes in selection order, and per-root-slot counts of the
 * products that match every filter except the category filters. */
struct sim_deal_result {
    int64_t *idx;
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

#endif
