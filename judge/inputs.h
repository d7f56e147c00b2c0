/*
 * inputs.h: the judgement's inputs from what Keepa answered, so every stage reads a product
 * the same way (judge.h says what each input means and which Keepa field it comes from).
 *
 * From a /product answer with offers (the committer's full fetch), the buy side is ONE live
 * offer, whole: the cheapest landed offer (price + shipping) of the wanted condition among the
 * live offers; nothing of another offer is mixed in. From a /product answer without offers
 * (the scanner's peek, the updater's light re-check, a recorded body), the buy side is the
 * current lowest listing of the wanted condition from stats, shipping unknown: never more than
 * an offer at that price costs. From a /deal entry (the free pre-filter) only prices, ranks and
 * averages are known: fees_known is false and the judgement is an upper bound.
 *
 * Pure: no I/O, no clock (the caller passes the answer's time).
 */
#ifndef KD_JUDGE_INPUTS_H
#define KD_JUDGE_INPUTS_H

#include <stdint.h>

#include "judge/judge.h"
#include "keepa/decode.h"

/* How a product answer's buy side is read. */
enum jd_read {
    JD_READ_AUTO = 0, /* offers when the answer has them (offers requested), else the listing */
    JD_READ_LISTING   /* the listing from stats even if offers came along */
};

/*
 * Fills OUT from product P answered at AT_MS (epoch ms) under R (its buy_condition picks the
 * offer's condition). OUT->buy_source is JD_BUY_OFFER with one live offer, JD_BUY_LISTING, or
 * JD_BUY_NONE (offers were fetched and none is live in the wanted condition, or there is no
 * listing price).
 */
void jd_inputs_from_product(const struct kp_product *p, const struct jd_rules *r, int64_t at_ms,
                            enum jd_read how, struct jd_inputs *out);

/* Fills OUT from a /deal entry D seen at AT_MS (the free pre-filter: fees unknown). */
void jd_inputs_from_deal(const struct kp_deal *d, const struct jd_rules *r, int64_t at_ms,
                         struct jd_inputs *out);

/*
 * Replaces the sell-side, velocity, fee and flag inputs of IN with those of FRESH (a newer
 * light read of the same product) and keeps IN's buy side exactly as it was: the offer is never
 * mixed with another one. IN's buy_seen_ms keeps the offer's age.
 */
void jd_inputs_refresh(struct jd_inputs *in, const struct jd_inputs *fresh);

/* Sets IN's buy side to the seller's own COST_CENTS for CONDITION (1 new, 2-5 used), seen at
 * AT_MS: the offer search is skipped. */
void jd_inputs_set_own_cost(struct jd_inputs *in, int64_t cost_cents, int condition, int64_t at_ms);

#endif
