/*
 * rules.h: the updater's decisions as pure functions of (stored record, fresh read, rules,
 * now): how a re-check changes a record, when it is checked next, when it leaves the deals,
 * when the committer must fetch it again in full, and how a re-judge moves it. No I/O, no
 * clock: updater.c supplies the time, and tests/unit/test_updater_rules.c checks every rule.
 *
 * What a re-check may conclude (enum updater_check):
 *   REFRESHED    the product came back: its fresh read is applied and judged;
 *   MISSING      asked for, in an answer that demonstrably worked, and not returned;
 *   NOT_CHECKED  anything else: the request failed, timed out, got 429, was cancelled, or the
 *                answer is suspect. Nothing about the record changes: not its failure count,
 *                not its schedule (it stays due and is retried with backoff).
 *
 * A re-check reads the product without offers (a light fetch, or a peek the scanner made
 * anyway). The stored offer stays whole: every other input is refreshed (jd_inputs_refresh)
 * and the judgement runs again on the stored offer at its price; the offer's age shows how
 * old it is (docs/judgement.md, "One offer, whole"). When the fresh lowest listing of the
 * offer's condition has moved by UPDATER_RECOMMIT_PRICE_BP or more from the offer's price,
 * or on the first failed check, the committer is asked for a full fetch (fresh offers),
 * unless the failure is definite: even buying at the fresh lowest listing with free
 * shipping fails the criteria, so no offer a full fetch could find would pass.
 *
 * Leaving the deals (docs/failure-modes.md: "stale deals deleted while ingestion was
 * stalled" must be impossible): only after expire_after_failures consecutive failed checks
 * (REFRESHED and failing, or MISSING); time passing never counts, and NOT_CHECKED never
 * reaches these rules. The record stays (REJECTED, expired_ms set) with its history.
 *
 * Schedule: a volatile record (its sell price moved by 5 % or more, its sales rank by 25 %
 * or more, or its verdict changed) and a failed re-check come back after the minimum
 * interval; a stable one after twice its previous interval, clamped to [min, max].
 *
 * Time: the configured intervals are in Keepa time. Against Keepa a Keepa minute is 60 s;
 * against an accelerated kdeals-sim ([tokens] minute = 100ms) the whole daemon runs in the
 * sim's time, so the intervals shrink by the same factor (updater_policy_from_cfg).
 *
 * Clock: check times are stored as wall time (epoch ms, readable by anyone), but every interval
 * is measured on the monotonic clock. The updater reads "now" from its struct updater_clock:
 * the wall time when it started, advanced by the monotonic clock since, so a step of the system
 * clock while it runs (an hour back) neither holds every re-check back by that hour nor makes
 * them all due at once. (A step between two runs is seen once, by the next run's anchor.)
 */
#ifndef KD_UPDATER_RULES_H
#define KD_UPDATER_RULES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/config.h"
#include "judge/judge.h"
#include "keepa/client.h"
#include "store/codec.h"

#define UPDATER_VOLATILE_PRICE_BP 500  /* sell price move that makes a record volatile */
#define UPDATER_VOLATILE_RANK_BP  2500 /* sales rank move that makes a record volatile */
#define UPDATER_RECOMMIT_PRICE_BP 1000 /* listing move from the offer's price: fresh offers */

/* The rules' parameters in real milliseconds (already scaled by the Keepa minute). */
struct updater_policy {
    int64_t min_interval_ms;
    int64_t max_interval_ms;
    uint32_t expire_after_failures;
    int64_t retry_base_ms; /* first backoff after a failed fetch */
    int64_t retry_max_ms;  /* longest backoff */
};

enum updater_check { UPDATER_NOT_CHECKED = 0, UPDATER_REFRESHED, UPDATER_MISSING };

/* What updater_recheck decided. */
struct updater_outcome {
    bool failed; /* counted as a failed re-check */
    bool is_volatile;
    bool changed;  /* the verdict's money figures moved */
    bool expire;   /* the record left the deals (event ST_EV_EXPIRE) */
    bool recommit; /* ask the committer for a full fetch */
    enum st_event event;
    int64_t interval_ms;
};

/* The updater's clock: the wall time at its start, advanced by the monotonic clock. */
struct updater_clock {
    int64_t wall0_ms;
    int64_t mono0_ms;
};

/* Anchors C at wall time WALL_MS and monotonic time MONO_MS, read together. */
void updater_clock_init(struct updater_clock *c, int64_t wall_ms, int64_t mono_ms);

/* C's "now" (epoch ms) at monotonic time MONO_MS: never moved by a step of the wall clock. */
int64_t updater_clock_now_ms(const struct updater_clock *c, int64_t mono_ms);

/* A configured Keepa-time duration CFG_MS in real ms when a Keepa minute lasts MINUTE_MS
 * (at least 1). */
int64_t updater_scale_ms(int64_t cfg_ms, int64_t minute_ms);

/* The policy of config C (intervals scaled by C->tokens_minute_ms). */
void updater_policy_from_cfg(const struct cfg *c, struct updater_policy *out);

/* The interval after a check: MIN when VOLATILE or PREV_MS <= 0, else 2 * PREV_MS clamped to
 * [MIN, MAX]. */
int64_t updater_next_interval(int64_t prev_ms, bool is_volatile, int64_t min_ms, int64_t max_ms);

/* True when AFTER moved notably from BEFORE (see the file comment). */
bool updater_is_volatile(const struct st_record *before, const struct st_record *after);

/* Backoff before retrying after FAILURES consecutive failed fetches (>= 1): base doubling up
 * to the max. */
int64_t updater_retry_backoff_ms(const struct updater_policy *p, unsigned failures);

/*
 * What a request's answer says about one ASIN of a batch of BATCH_N. CODE is the request's
 * final result, RETURNED whether the product arrived, STATUS its per-ASIN outcome (ignored
 * unless CODE is KP_OK), ANY_RETURNED whether the answer carried at least one product. A
 * multi-ASIN answer without any product is suspect (a dropped "products" key looks the same
 * as all-unknown ASINs): NOT_CHECKED; the caller retries with one ASIN alone. A product
 * answered with fields of the wrong JSON type (KP_ASIN_MALFORMED) was not answered: NOT_CHECKED,
 * whatever RETURNED says, so a server glitch never counts toward expiry.
 */
enum updater_check updater_classify(enum kp_result_code code, bool returned,
                                    enum kp_asin_status status, bool any_returned, size_t batch_n);

/*
 * Applies one re-check of R (a DEAL or FAILING record) made at NOW_MS: CHECK is REFRESHED with
 * FRESH (a read without offers: jd_inputs_from_product with JD_READ_LISTING), or MISSING (FRESH
 * may be NULL). R is judged under RULES (RULES_HASH), its state moved (store/record.h), its
 * next check scheduled; OUT says what happened. NOT_CHECKED leaves R untouched.
 */
void updater_recheck(struct st_record *r, enum updater_check check, const struct jd_inputs *fresh,
                     const struct jd_rules *rules, uint64_t rules_hash,
                     const struct updater_policy *p, int64_t now_ms, struct updater_outcome *out);

/*
 * Judges R again from its stored inputs under new RULES (RULES_HASH) at NOW_MS: no tokens, no
 * check counted. A record that becomes a deal is scheduled for a re-check at NOW_MS unless it
 * already is; one that stops being a deal is no longer checked (REJECTED). Returns the state R
 * had before. A record whose inputs were never read (data_ms 0: migrated from an older store)
 * is left as it is until its first re-check, and ST_STATE_NONE is returned.
 */
enum st_state updater_rejudge(struct st_record *r, const struct jd_rules *rules,
                              uint64_t rules_hash, uint32_t expire_after, int64_t now_ms);

#endif
