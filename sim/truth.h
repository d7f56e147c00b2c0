/*
 * truth.h: the simulator's truth judged by the project's own deal judgement (judge/judge.h).
 *
 * A benchmark measures kdeals against what a client knowing the simulator's catalog could have
 * done, so the oracle must call a product a deal exactly when kdeals would after a full fetch
 * at the same Keepa minute: same inputs, same rules, same arithmetic. sim_truth_inputs() fills
 * struct jd_inputs straight from the catalog's product with the values this simulator's
 * /product answer (stats and offers=N) carries, and picks the offer to buy the way
 * judge/inputs.c does: among the N cheapest live offers (landed, liveOffersOrder), the cheapest
 * landed one of the wanted condition, whole. tests/unit/test_sim_units.c holds it equal, field
 * by field, to jd_inputs_from_product() on the decoded answer, so the two cannot drift apart.
 *
 * Over time a product's judgement changes only where its market does (price epochs, cheap Used
 * copies) or, when the sell price comes from an average, as the average drifts: a timeline is
 * judged at every market change (sim_catalog_breaks) and, while the sell basis is an average,
 * every STEP minutes in between. sim/README.md ("The truth") documents the oracle endpoints
 * built on it.
 *
 * Pure: no I/O, no clock, no allocation except sim_truth_timeline's caller-sized buffers.
 */
#ifndef SIM_TRUTH_H
#define SIM_TRUTH_H

#include <stddef.h>
#include <stdint.h>

#include "judge/judge.h"
#include "sim/catalog.h"
#include "sim/jbuf.h"
#include "sim/selection.h"

#define SIM_TRUTH_OFFERS    20    /* offers per full fetch: kdeals' [commit] offers default */
#define SIM_TRUTH_MAX_BREAK 16384 /* evaluation moments of one product's timeline */

/* One product judged at one Keepa minute. */
struct sim_truth {
    int64_t minute;
    struct jd_inputs in;
    struct jd_verdict v;
    int live_offers;  /* live offers now */
    int fetch_tokens; /* what /product with offers=N costs for it: 6 x max(1, offer pages) */
};

/*
 * Fills IN with what judge/inputs.c reads from this simulator's answer to /product for P with
 * stats and offers=OFFERS (20..100) answered at AT_MS (epoch ms): the inputs of a full fetch.
 * R's buy_condition picks the offer.
 */
void sim_truth_inputs(const struct sim_catalog *c, const struct sim_product *p, int offers,
                      const struct jd_rules *r, int64_t at_ms, struct jd_inputs *in);

/*
 * Judges P (already computed for its minute, catalog or synthetic) under R as a full fetch with
 * OFFERS offers would: OUT gets the inputs, the verdict and the fetch's token cost.
 */
void sim_truth_judge(const struct sim_catalog *c, const struct sim_product *p, int offers,
                     const struct jd_rules *r, struct sim_truth *out);

/* A stretch of minutes [start, end) during which a product is a deal, and its best moment. */
struct sim_truth_seg {
    int64_t start, end;
    int64_t peak_profit_cents, peak_roi_bp, peak_at;
    int peak_fetch_tokens;
};

/* What one product's timeline over [FROM, TO) adds up to. */
struct sim_truth_span {
    int n_segs;                /* segments written (at most the caller's MAX) */
    int n_segs_total;          /* segments found */
    int64_t deal_min;          /* minutes during which it is a deal */
    int64_t first_deal;        /* first minute it is a deal, -1 never */
    struct sim_truth_seg peak; /* the segment holding the highest profit (n_segs_total > 0) */
    int64_t listed_at; /* with a selection: first judged moment it is a deal and listed, -1 */
};

/*
 * Judges product IDX (ASIN: its ASIN, for synthetic products) over [FROM, TO): at FROM, at every
 * market change, and every STEP minutes (>= 1) while the sell price comes from an average.
 * Writes at most MAX segments into SEGS (may be NULL with MAX 0) and the totals into SPAN. With
 * SEL (may be NULL), also notes the first judged moment at which the product is both a deal and
 * listed by the /deal feed under SEL. P is scratch space for one product. Returns 0, -EINVAL
 * (TO <= FROM, STEP < 1) or -E2BIG (more than SIM_TRUTH_MAX_BREAK moments).
 */
int sim_truth_timeline(const struct sim_catalog *c, int64_t idx, const char *asin, int64_t from,
                       int64_t to, int64_t step, int offers, const struct jd_rules *r,
                       const struct sim_selection *sel, struct sim_product *p,
                       struct sim_truth_seg *segs, int max, struct sim_truth_span *span);

/*
 * Overrides the fields of R (start from jd_rules_default()) named by query parameters, with
 * struct jd_rules' own names: buy_condition (used_then_new|used|new|new_then_used or 0-3),
 * basis_new and basis_used (comma lists of basis names), cap_at_buy_box (0/1), amazon_cap_bp,
 * max_sell_cents, min_roi_bp, min_profit_cents, min_sell_cents, min_drops365, max_rank, unknown
 * (fail|pass), near_roi_bp, near_profit_cents, fulfilment (fba|fbm), prep_cents, inbound_cents,
 * tax_bp, default_referral_bp, referral_min_cents, default_fba_fee_cents, closing_fee_cents,
 * fbm_shipping_cents, media (comma list of root category ids). Returns 0 or -EINVAL with the
 * offending parameter in ERR.
 */
int sim_truth_rules(sim_param_fn get, void *ctx, struct jd_rules *r, char *err, size_t errsz);

/*
 * Appends T as a JSON object for product ASIN: deal, near, reason, the money figures (null when
 * not priced), sell basis and side, the ceilings that applied, the fees, max cost, the offer to
 * buy (null when none), live offers and fetch_tokens.
 */
void sim_truth_render(struct sim_buf *b, const char *asin, const struct sim_truth *t);

#endif
