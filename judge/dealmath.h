/*
 * dealmath.h: the reseller's arithmetic, shared by the scanner's peek filter, the
 * committer's deal computation and the updater's re-check, so all three judge a product by
 * the same rules. Pure functions of (Keepa data, config): no I/O, no clock.
 *
 * Peek (stats only, no offers; one token per ASIN): buy price = current Used, else New
 * (configurable); sell estimate = mean of the Used 90- and 365-day averages (either alone if
 * the other is missing; configurable). Rejected: fewer rank drops in a year than the minimum,
 * a sell estimate under the minimum, a buy price over max_buy_pct of the sell estimate, a
 * gross ROI ((sell - buy) / buy) under the minimum.
 *
 * Deal (full fetch with live offers): buy = the cheapest landed live offer of the configured
 * condition; landed buy = price + shipping + tax + prep + inbound shipping; fees = referral
 * (the product's percentage, else the default) on the sell price + FBA pick-and-pack (the
 * product's, else the default); profit = sell - fees - landed buy; ROI = profit / landed buy;
 * margin = profit / sell. A deal needs profit >= min_profit_cents and ROI >= min_roi_pct.
 * Money is integer cents, ratios integer basis points; rounding is to the nearest cent.
 */
#ifndef KD_DEALMATH_H
#define KD_DEALMATH_H

#include <stdint.h>

#include "base/config.h"
#include "keepa/decode.h"
#include "store/codec.h"

enum dm_verdict {
    DM_PASS = 0,
    DM_NO_BUY_PRICE,     /* no current price in the wanted condition */
    DM_NO_SELL_ESTIMATE, /* no Used 90/365-day average */
    DM_NO_RANK_DROPS,    /* fewer rank drops in a year than the minimum */
    DM_SELL_TOO_LOW,
    DM_BUY_TOO_HIGH,
    DM_ROI_TOO_LOW,
    DM_PROFIT_TOO_LOW,
    DM_NO_OFFER,      /* full fetch: no live offer in the wanted condition */
    DM_OFFERS_FAILED, /* full fetch: Keepa could not refresh the offers; try again later */
    DM_VERDICT_COUNT
};

struct dm_peek {
    int64_t buy_cents;           /* -1 none */
    int64_t sell_estimate_cents; /* -1 none */
    int64_t gross_roi_bp;        /* (sell - buy) / buy; 0 when undefined */
    int32_t rank_drops_365;
    int64_t est_profit_cents; /* dm_peek_product: after fees and costs, shipping unknown (0) */
    int64_t est_roi_bp;
};

/* Judges a peeked product from its stats. Returns the verdict and fills OUT. */
enum dm_verdict dm_peek(const struct kp_stats *st, const struct cfg *c, struct dm_peek *out);

/*
 * dm_peek, then the deal thresholds on an estimate of the deal itself: the product's own
 * referral percentage and FBA fee (both come with a peek at no extra cost; else the
 * defaults), tax, prep and inbound shipping, with the current price as the buy price and its
 * shipping taken as 0. The estimate is never below what the full fetch will compute for the
 * cheapest live offer at that price, so nothing that would be a deal is rejected here, and a
 * product whose fees eat the margin is not paid for twice (peek, then a full fetch) to learn
 * it. Returns DM_PROFIT_TOO_LOW / DM_ROI_TOO_LOW for those.
 */
enum dm_verdict dm_peek_product(const struct kp_product *p, const struct cfg *c,
                                struct dm_peek *out);

/* The sell estimate from stats under C (-1 when there is none). */
int64_t dm_sell_estimate(const struct kp_stats *st, const struct cfg *c);

/*
 * Computes the deal economics of a fully fetched product P under C into OUT (every field but
 * first_seen_ms, last_checked_ms, last_changed_ms, check_failures, next_check_ms and revision,
 * which are the caller's). Returns DM_PASS when it is a deal, else why not; OUT is filled as
 * far as the data allows in every case except DM_OFFERS_FAILED and DM_NO_OFFER.
 */
enum dm_verdict dm_deal(const struct kp_product *p, const struct cfg *c, struct st_deal *out);

/* Short names for logs: "pass", "no-buy-price", ... */
const char *dm_verdict_name(enum dm_verdict v);

#endif
