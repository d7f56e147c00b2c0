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
 * old it is (docs/judgement.md, "One offer, whole"). What only offers carry (the Buy Boxes,
 * the lowest Used FBA offer) a read without them cannot refresh: the full fetch's values stay
 * beside its offer, so the re-check judges on the numbers the full fetch did and fails a deal
 * for a change in its market, never for a read that lacked its sell basis. When the fresh lowest
 * listing of the offer's condition has moved by UPDATER_RECOMMIT_PRICE_BP or more from the offer's
 * price (and is not the listing the last read saw: that one had its full fetch already), or on the
 * first failed check, the committer is asked for a full fetch (fresh offers), unless the failure is
 * definite: even buying at the fresh lowest listing with free shipping fails the criteria, so no
 * offer a full fetch could find would pass.
 *
 * Leaving the deals (docs/failure-modes.md: "stale deals deleted while ingestion was
 * stalled" must be impossible): only after expire_after_failures consecutive failed checks
 * (REFRESHED and failing, or MISSING); time passing never counts, and NOT_CHECKED never
 * reaches these rules. The record stays (REJECTED, expired_ms set) with its history.
 *
 * The offer gone (with the "gone" rule of [tokens] value_rules): when the fresh lowest listing
 * of the offer's condition is above the offer's own price, the offer is no longer listed (it
 * would be the lowest otherwise): the deal the record shows cannot be bought, so the check
 * fails at once (it leaves the deal view, FAILING) and, unless no offer could pass, the
 * committer is asked for fresh offers. Without the rule the record stays a deal until that
 * full fetch answers.
 *
 * A failure that is final (with the "final" rule of [tokens] value_rules): the confirmations
 * expire_after_failures asks for guard against a read that is wrong once; they cost a token each
 * and cannot bring back a deal whose market would have to move far to pass again. A REFRESHED
 * check whose fresh lowest listing of the offer's condition, bought with free shipping, fails
 * on ROI or profit alone and lies UPDATER_FINAL_PRICE_BP or more above the highest buy cost that
 * passes (or no cost passes), expires the record at once (updater_failure_final). A failure on
 * anything else (sell price, rank, drops, a missing product) keeps the confirmations. An
 * expired record is no obstacle to the deal's return: a new cheap offer changes the feed's
 * entry, and the scanner peeks it again.
 *
 * Schedule: a failed re-check comes back after the minimum interval. With the "recheck" rule
 * (docs/architecture.md, "The spending policy") a passing one comes back after the interval
 * that spends the re-check budget where a stale display costs most: a deal of profit P whose
 * class vanishes at hazard L is re-checked every SCALE / sqrt(L x P) Keepa minutes, SCALE
 * chosen so that all shown deals together take the budget (updater_value_scale); the
 * square root is what minimises the stale profit-minutes shown for a given number of
 * re-checks. Without it (or before there is a budget to share), a volatile record (its sell price
 * moved by 5 % or more, its sales rank by 25 % or more, or its verdict changed) comes back after
 * the minimum interval and a stable one after twice its previous interval. Both are clamped to
 * [min, max].
 *
 * With the "age" rule the same interval is placed by the age of the deal's price (the Keepa
 * minutes since lastPriceChange, the Keepa minute now estimated from what the answers say:
 * updater_price_age_min): it ends where the learned hazard at those ages (struct val_age)
 * accrues as much as the constant hazard would over the interval above, so a deal whose
 * price has a fixed life is checked just after it ends rather than at even steps while it
 * cannot vanish. A flat hazard by age gives the interval above.
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
#include "worker/value.h"

#define UPDATER_VOLATILE_PRICE_BP 500  /* sell price move that makes a record volatile */
#define UPDATER_VOLATILE_RANK_BP  2500 /* sales rank move that makes a record volatile */
#define UPDATER_RECOMMIT_PRICE_BP 1000 /* listing move from the offer's price: fresh offers */
#define UPDATER_RECHECK_SHARE     0.25 /* of the refill, for re-checks while tokens are scarce */
#define UPDATER_BUDGET_FLOOR      0.05 /* of the refill: the "budget" rule's least share */
#define UPDATER_ACT_MIN           30   /* Keepa minutes a seller takes to act on a shown deal */
#define UPDATER_FINAL_PRICE_BP    2500 /* "final": the best listing this far above what passes */

/* The rules' parameters in real milliseconds (already scaled by the Keepa minute), and the
 * value rules' learned terms. */
struct updater_policy {
    int64_t min_interval_ms;
    int64_t max_interval_ms;
    uint32_t expire_after_failures;
    int64_t retry_base_ms;     /* first backoff after a failed fetch */
    int64_t retry_max_ms;      /* longest backoff */
    int64_t minute_ms;         /* real ms of a Keepa minute */
    bool offer_gone_fails;     /* the "gone" rule */
    bool value_intervals;      /* the "recheck" rule: the terms below are set */
    bool final_failures;       /* the "final" rule: updater_failure_final expires at once */
    bool age_intervals;        /* the "age" rule: the terms below place passing re-checks */
    bool first_checks;         /* the "first" rule: updater_first_check_ms places new deals' */
    const struct val_age *age; /* the hazard by the age of the price; NULL: not yet */
    bool keepa_offset_known;   /* the Keepa minute now = now_ms / minute_ms + keepa_offset_min */
    double keepa_offset_min;
    double lambda[VAL_CLASSES]; /* vanish hazard per Keepa minute of each class */
    double scale_min;           /* updater_value_scale */
};

enum updater_check { UPDATER_NOT_CHECKED = 0, UPDATER_REFRESHED, UPDATER_MISSING };

/* What updater_recheck decided. */
struct updater_outcome {
    bool failed;     /* counted as a failed re-check */
    bool offer_gone; /* the offer is no longer listed (the "gone" rule failed the check) */
    bool is_volatile;
    bool changed;  /* the verdict's money figures moved */
    bool expire;   /* the record left the deals (event ST_EV_EXPIRE) */
    bool final;    /* the "final" rule found the failure final (updater_failure_final) */
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

/* The policy of config C (intervals scaled by C->tokens_minute_ms; the value rules' learned
 * terms at their priors: the caller sets what it learned). */
void updater_policy_from_cfg(const struct cfg *c, struct updater_policy *out);

/* The re-check budget, in tokens per Keepa minute, of a plan refilling RATE tokens a minute
 * whose bucket is FILL full (0..1): UPDATER_RECHECK_SHARE of the refill, growing to all of it
 * as the bucket fills from half to full (tokens nothing else wants are spent on fresher
 * deals rather than lost to the cap). */
double updater_recheck_budget(int64_t rate, double fill);

/*
 * The re-check budget by marginal value (the "budget" rule of [tokens] value_rules), in tokens
 * per Keepa minute. Shown deals whose claims sqrt(hazard x profit) sum to ROOT_SUM, re-checked
 * B times a minute by the sqrt rule, show S = ROOT_SUM^2 / (2 B) cents of profit that is gone
 * (stale) at any moment; one re-check more a minute ends ROOT_SUM^2 / (2 B^2) cent-minutes of
 * stale display. A seller acts on a shown deal within ACT_MIN Keepa minutes on average, so a
 * stale cent shown for a minute costs 1 / ACT_MIN cents (the profit counted on and not there),
 * while a token spent on acquisition instead buys TOKEN_VALUE cents of expected profit (the
 * commit backlog's while survivors wait, else what discovery and commits found: the
 * committer's token_value gauge). The budget is where the two are equal: B = ROOT_SUM /
 * sqrt(2 x TOKEN_VALUE x PER_CHECK x ACT_MIN) re-checks a minute of PER_CHECK tokens each. A
 * full backlog of good survivors takes tokens from the re-checks; an empty one, or many shown
 * deals worth much, gives them more. Clamped to [UPDATER_BUDGET_FLOOR, 1] of RATE, and never
 * below updater_recheck_budget's surplus as the bucket FILLs from half to full (tokens nothing
 * else wants). Without a token value yet (<= 0): updater_recheck_budget.
 */
double updater_marginal_budget(double root_sum, double token_value_cents, double act_min,
                               double per_check, int64_t rate, double fill);

/*
 * The SCALE (Keepa minutes x sqrt(hazard x cents)) at which N_DEALS shown deals whose
 * sqrt(hazard x profit) averages MEAN_ROOT take CHECKS_PER_MIN re-checks a Keepa minute:
 * N_DEALS x MEAN_ROOT / CHECKS_PER_MIN. 0 when there is nothing to share or no budget.
 */
double updater_value_scale(int64_t n_deals, double mean_root, double checks_per_min);

/* sqrt(LAMBDA x PROFIT_CENTS), a profit under 1 cent counting as 1: a deal's claim on the
 * re-check budget. */
double updater_value_root(double lambda, int64_t profit_cents);

/*
 * The interval after a passing re-check of a deal of PROFIT_CENTS whose class vanishes at
 * LAMBDA, at SCALE_MIN: SCALE_MIN / updater_value_root Keepa minutes in real ms (MINUTE_MS
 * each), clamped to [MIN_MS, MAX_MS]; MAX_MS when SCALE_MIN is 0.
 */
int64_t updater_value_interval_ms(double lambda, int64_t profit_cents, double scale_min,
                                  int64_t minute_ms, int64_t min_ms, int64_t max_ms);

/*
 * The age in Keepa minutes at NOW_MS of a price last changed at Keepa minute CHANGE_MIN, by
 * P's estimate of the Keepa minute now; -1 when either is unknown or the age is negative.
 */
double updater_price_age_min(const struct updater_policy *p, int64_t change_min, int64_t now_ms);

/*
 * The interval INTERVAL_MS (the constant hazard LAMBDA's) placed by the age of the price:
 * the span after AGE_MIN over which P->age's hazard accrues LAMBDA x INTERVAL_MS, clamped to
 * [MIN, MAX] of P. INTERVAL_MS itself without a table or an age (AGE_MIN < 0).
 */
int64_t updater_age_interval_ms(const struct updater_policy *p, double lambda, double age_min,
                                int64_t interval_ms);

/*
 * The "first" rule: when the first re-check of R, a deal the committer has just stored (its
 * last read, at R->last_checked_ms, the full fetch that found it), should come: that read
 * counts as a passing re-check, so the interval is the one the "recheck" rule gives a passing
 * re-check of R now, placed by the age of its price at that read with the "age" rule, after
 * it (epoch ms; it may lie in the past: check at once). -1 when P does not place it (the rule
 * off, "recheck" off, no budget shared yet, R not a deal or never read): the committer's time
 * stands (a typical deal's interval, the committer knowing neither R's claim on the budget nor
 * the hazard by age).
 */
int64_t updater_first_check_ms(const struct updater_policy *p, const struct st_record *r);

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
 * True when the failed re-check of R (a record whose inputs FRESH, a light read, already
 * refreshed) is final under RULES: judged at the fresh lowest listing of its offer's condition
 * with free shipping, it fails on ROI and/or profit alone, and that listing is at least
 * UPDATER_FINAL_PRICE_BP above the verdict's highest passing buy cost (or no buy cost passes).
 * False when the listing is unknown, when the judgement at it passes, or when another
 * criterion fails. See the file comment.
 */
bool updater_failure_final(const struct st_record *r, const struct jd_inputs *fresh,
                           const struct jd_rules *rules);

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
