/*
 * learned.h: the scanner's learned low fees (scanner/rules.h, struct scanner_fees: the `lowfees`
 * rule) and its peek outcomes by class (the `peekrate` rule) as numbers for the store's learned
 * record (store/codec.h, st_learned_*), and back, so a restart does not judge never-peeked
 * products at fees 0 until 24 peeks are learned again
 * (docs/architecture.md, "What is learned survives a restart"). Pure: no I/O. The per-product
 * fees table (the `fees` rule) is not kept: it is a cache of recent peeks.
 *
 * Each class (every product, then each category slot) is SCANNER_FEES_CLASS_NUMS numbers: its
 * root category + 1 (0: a free slot; 1: every product), the observations kept (at most
 * SCANNER_FEES_LOW_N), then its referral percentages, FBA fees and closing fees, each
 * SCANNER_FEES_LOW_N long, oldest first, unused places 0. Every number is a whole one.
 */
#ifndef KD_SCANNER_LEARNED_H
#define KD_SCANNER_LEARNED_H

#include <stdbool.h>

#include "scanner/rules.h"

#define SCANNER_FEES_CLASS_NUMS (2 + 3 * SCANNER_FEES_LOW_N)
#define SCANNER_FEES_NUMS       ((1 + SCANNER_FEES_LOW_CATS) * SCANNER_FEES_CLASS_NUMS)
#define SCANNER_FEES_NUM_MAX    9007199254740991.0 /* 2^53 - 1: a root category id at most */

/* F's learned low fees as SCANNER_FEES_NUMS numbers into OUT. */
void scanner_fees_pack(const struct scanner_fees *f, double *out);

/*
 * Restores F's learned low fees from the SCANNER_FEES_NUMS numbers IN, as if the observations
 * kept had been learned again in order (their low fees recomputed). False, F untouched, when
 * IN is not what scanner_fees_pack makes: a number not whole or out of range (a fee above
 * INT32_MAX, more than SCANNER_FEES_LOW_N kept), every product's class not root 0, a slot
 * with root 0, a free slot holding observations, a root category in two slots. SCRATCH is
 * a struct scanner_fees the function may overwrite (its size keeps it off the stack).
 */
bool scanner_fees_unpack(const double *in, struct scanner_fees *f, struct scanner_fees *scratch);

/*
 * The `peekrate` rule's outcomes (struct scanner_peek_rate) as SCANNER_PEEK_NUMS numbers: for
 * each class its outcome bits, its outcomes ever and its skipped candidates, so a restart
 * does not peek again, 16 times each, the kinds of candidate it had learned seldom pass.
 */
#define SCANNER_PEEK_NUMS (3 * SCANNER_PEEK_CLASSES)

void scanner_peek_pack(const struct scanner_fees *f, double *out);

/*
 * Restores the outcomes from the SCANNER_PEEK_NUMS numbers IN into RATES (SCANNER_PEEK_CLASSES
 * of them). False, RATES untouched, when a number is not whole or above UINT32_MAX, or a
 * class holds outcome bits beyond its outcomes ever.
 */
bool scanner_peek_unpack(const double *in, struct scanner_peek_rate *rates);

#endif
