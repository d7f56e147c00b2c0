/*
 * rules.h: the updater's decisions as pure functions of (stored deal, fresh numbers, config,
 * now): how a re-check changes a deal, when it is checked next, when it is expired, when the
 * committer must fetch it again in full. No I/O, no clock: updater.c supplies the time, and
 * tests/unit/test_updater_rules.c checks every rule.
 *
 * What a re-check may conclude (enum updater_check):
 *   REFRESHED    the product came back: its fresh numbers are applied and judged;
 *   MISSING      asked for, in an answer that demonstrably worked, and not returned;
 *   NOT_CHECKED  anything else: the request failed, timed out, got 429, was cancelled, or the
 *                answer is suspect. Nothing about the deal changes: not its failure count,
 *                not its schedule (it stays due and is retried with backoff).
 *
 * Expiry (docs/failure-modes.md F20: "stale deals deleted while ingestion was stalled" must be
 * impossible): a deal is expired only when its consecutive failed re-checks (REFRESHED and
 * failing the deal criteria, or MISSING) reach expire_after_failures. Time passing never
 * counts, and NOT_CHECKED never reaches updater_apply.
 *
 * Schedule: a volatile deal (buy price or sell estimate moved by 5 % or more, the sales rank
 * by 25 % or more, or the verdict changed) and a failed re-check come back after the minimum
 * interval; a stable one after twice its previous interval, clamped to [min, max].
 *
 * Time: the configured intervals are in Keepa time. Against Keepa a Keepa minute is 60 s;
 * against an accelerated kdeals-sim ([tokens] minute = 100ms) the whole daemon runs in the
 * sim's time, so the intervals shrink by the same factor (updater_policy_from_cfg).
 */
#ifndef KD_UPDATER_RULES_H
#define KD_UPDATER_RULES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/config.h"
#include "judge/dealmath.h"
#include "keepa/client.h"
#include "store/codec.h"

#define UPDATER_VOLATILE_PRICE_BP 500  /* price / sell estimate move that makes a deal volatile */
#define UPDATER_VOLATILE_RANK_BP  2500 /* sales rank move that makes a deal volatile */
#define UPDATER_RECOMMIT_PRICE_BP 1000 /* buy price move that needs fresh offer data */

/* The rules' parameters in real milliseconds (already scaled by the Keepa minute). */
struct updater_policy {
    int64_t min_interval_ms;
    int64_t max_interval_ms;
    uint32_t expire_after_failures;
    int64_t retry_base_ms; /* first backoff after a failed fetch */
    int64_t retry_max_ms;  /* longest backoff */
};

enum updater_check { UPDATER_NOT_CHECKED = 0, UPDATER_REFRESHED, UPDATER_MISSING };

/* Fresh numbers for one deal, from a light fetch's stats or from a scanner peek. -1 = unknown
 * (the stored value is kept). */
struct updater_fresh {
    int64_t used_cents; /* current Used price */
    int64_t new_cents;  /* current New price */
    int64_t sell_estimate_cents;
    int64_t sales_rank;
    int32_t rank_drops_30, rank_drops_90, rank_drops_180, rank_drops_365;
    int64_t buy_box_cents;
};

/* What updater_apply decided. */
struct updater_outcome {
    enum dm_verdict verdict; /* of the refreshed numbers (DM_PASS for MISSING is never set) */
    bool failed;             /* counted as a failed re-check */
    bool is_volatile;
    bool changed;  /* an economic field changed */
    bool expire;   /* delete the deal */
    bool recommit; /* ask the committer for a full fetch */
    int64_t interval_ms;
};

/* A configured Keepa-time duration CFG_MS in real ms when a Keepa minute lasts MINUTE_MS
 * (at least 1). */
int64_t updater_scale_ms(int64_t cfg_ms, int64_t minute_ms);

/* The policy of config C (intervals scaled by C->tokens_minute_ms). */
void updater_policy_from_cfg(const struct cfg *c, struct updater_policy *out);

/* The interval after a check: MIN when VOLATILE or PREV_MS <= 0, else 2 * PREV_MS clamped to
 * [MIN, MAX]. */
int64_t updater_next_interval(int64_t prev_ms, bool is_volatile, int64_t min_ms, int64_t max_ms);

/* True when AFTER moved notably from BEFORE (see the file comment). */
bool updater_is_volatile(const struct st_deal *before, const struct st_deal *after);

/* Backoff before retrying after FAILURES consecutive failed fetches (>= 1): base doubling up
 * to the max. */
int64_t updater_retry_backoff_ms(const struct updater_policy *p, unsigned failures);

/* The stats of a light fetch as fresh numbers (the sell estimate under C). */
void updater_fresh_from_stats(const struct kp_stats *st, const struct cfg *c,
                              struct updater_fresh *out);

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
 * Reprices STORED with the fresh numbers F under C into OUT (a copy of STORED with the buy
 * price, tax, landed cost, sell estimate, fees, profit, margin, ROI, rank and rank drops
 * refreshed): the stored offer's condition, shipping, seller, referral and FBA fees, prep and
 * inbound costs are kept; the rules are dealmath's (dm_deal). Returns the verdict.
 */
enum dm_verdict updater_reprice(const struct st_deal *stored, const struct updater_fresh *f,
                                const struct cfg *c, struct st_deal *out);

/*
 * Applies one re-check (CHECK is REFRESHED with F, or MISSING; F may be NULL then) made at
 * NOW_MS to the deal D in place: repriced, check_failures counted or reset, last_checked_ms,
 * last_changed_ms, next_check_ms and revision set. OUT says whether to expire it (D is then
 * left as it was) and whether to ask for a recommit: after a buy price jump of 10 % or more,
 * or on the first failed check, unless the failure is definite (even the fresh lowest price
 * with free shipping fails the criteria, so no offer a full fetch finds could pass).
 */
void updater_apply(struct st_deal *d, enum updater_check check, const struct updater_fresh *f,
                   const struct cfg *c, const struct updater_policy *p, int64_t now_ms,
                   struct updater_outcome *out);

#endif
