/*
 * record.h: the lifecycle of a judged-product record (struct st_record, codec.h), as one pure
 * function every writer uses: the committer after a full fetch, the updater after a re-check
 * and after a re-judge. No I/O: the caller reads the record, applies the verdict here and puts
 * it back with st_record_put in the same transaction.
 *
 *   a verdict that passes           -> DEAL (check_failures 0; deal_since set when it was not one)
 *   a check (COMMIT or RECHECK) that fails a record that was DEAL or FAILING
 *                                   -> FAILING, check_failures + 1, still re-checked; once the
 *                                      failures reach expire_after: REJECTED, expired_ms set
 *                                      (event EXPIRE): only real checks end a deal
 *   anything else that fails (a new product, a re-judge under new rules)
 *                                   -> REJECTED: kept with its inputs, never re-checked
 *
 * Only DEAL and FAILING records are scheduled (next_check_ms > 0), and only while the seller
 * has not marked them (bought, ignored); a REJECTED one costs no tokens and is pruned after
 * [store] keep_rejected (a marked one is kept).
 */
#ifndef KD_STORE_RECORD_H
#define KD_STORE_RECORD_H

#include <stdbool.h>
#include <stdint.h>

#include "judge/judge.h"
#include "store/codec.h"

/*
 * Stores verdict V (judged under rules RULES_HASH at NOW_MS, by a check of kind EVENT:
 * ST_EV_COMMIT, ST_EV_RECHECK or ST_EV_REJUDGE) in R and moves R's state as the file comment
 * says. NEXT_CHECK_MS is when a DEAL or FAILING record is checked next (a REJECTED one gets 0).
 * Sets judged_ms; a COMMIT or RECHECK also sets last_checked_ms, and last_changed_ms when the
 * money figures moved. Returns the event to log: EVENT, or ST_EV_EXPIRE.
 */
enum st_event st_record_judged(struct st_record *r, const struct jd_verdict *v, uint64_t rules_hash,
                               enum st_event event, int64_t now_ms, uint32_t expire_after,
                               int64_t next_check_ms);

/*
 * The seller's mark MARK (enum st_mark) on R at NOW_MS, as `kdeals mark` and the web API write
 * it: mark_ms is NOW_MS; a bought mark keeps COST_CENTS (the seller's cost per unit, -1 none)
 * and QTY units, any other mark clears them; a marked product is taken off the re-check
 * schedule, a cleared deal is put back on it; the revision goes up. The caller puts R back with
 * st_record_put(..., ST_EV_MARK, NOW_MS) in the transaction it read R in.
 */
void st_record_mark(struct st_record *r, unsigned mark, int64_t cost_cents, int32_t qty,
                    int64_t now_ms);

/* True when the verdict's money figures (sell, buy, landed, profit, ROI, max cost, state of
 * the deal) differ between A and B. */
bool st_verdict_moved(const struct jd_verdict *a, const struct jd_verdict *b);

#endif
