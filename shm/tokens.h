/*
 * tokens.h: the shared Keepa token bucket (docs/architecture.md, "Tokens", docs/keepa-api.md §4).
 *
 * One estimate of the key's token balance, shared by every process through struct shm_tokens
 * in the segment, updated lock-free. Workers ask for a reservation of the estimated cost of
 * their next request and get either a grant or the time at which it would be granted; nothing
 * here sleeps, takes a lock that another process can hold, or reads a clock: every function
 * takes the caller's CLOCK_MONOTONIC time `now_ns`, so tests run days of virtual time in
 * milliseconds. The design and its invariants are described at the top of tokens.c.
 *
 * Typical worker cycle:
 *
 *     cost = tb_cost_estimate(tb, TB_KIND_COMMIT, n_asins);
 *     rc = tb_reserve(tb, now, cost, getpid(), &grant, &wake_at);
 *     -EAGAIN: arm a timer for wake_at (and if tb_needs_reading(): one free /token call, with
 *              the free grant of tb_reserve(tb, now, 0, ...) for its reading);
 *     0: send the request; on the response:
 *         tb_apply_reading(tb, &reading, now, &grant);  (every response, 429 included; its
 *                                                         non-zero returns need no handling)
 *         tb_cost_learn(tb, TB_KIND_COMMIT, n_asins, reading.tokens_consumed);   (200 only)
 *         tb_settle(tb, &grant, now, reading.tokens_consumed);
 *       on a failure without a body (timeout, reset, cancelled): tb_settle_lost(tb, &grant, now)
 *       (it may have been charged: it stays charged; the readings resync).
 *
 * The supervisor calls tb_init() once on a fresh segment and tb_writeoff_owner() after reaping
 * a worker.
 */
#ifndef KD_SHM_TOKENS_H
#define KD_SHM_TOKENS_H

#include <stdbool.h>
#include <stdint.h>

#include "shm/layout.h"

/* Limits. Arguments outside them are refused with -EINVAL. */
#define TB_COST_MAX           (1LL << 21) /* tokens one reservation may ask for */
#define TB_RATE_MAX           32767LL     /* tokens per Keepa minute */
#define TB_BUCKET_MINUTES_MAX 64LL
#define TB_BALANCE_MAX        ((1LL << 22) - 1)       /* |balance| kept in the state word */
#define TB_UNITS_MAX          100000LL                /* ASINs (or pages, sellers) per estimate */
#define TB_MINUTE_NS_MIN      1000000LL               /* 1 ms */
#define TB_MINUTE_NS_MAX      (1048576LL * 1000000LL) /* ~17.5 min */
#define TB_OWNER_MAX          0x7fffffffLL
#define TB_NOW_MAX            (1LL << 62) /* monotonic ns; later times are refused */
#define TB_SLOT_NONE          UINT32_MAX

/* Defaults for struct tb_params fields left 0. */
#define TB_DEFAULT_BUCKET_MINUTES 60
#define TB_DEFAULT_MAX_DEFICIT    60
#define TB_DEFAULT_MINUTE_NS      (60LL * 1000000000LL)
#define TB_DEFAULT_INITIAL_RATE   5
#define TB_DEFAULT_STALE_MINUTES  15
/* A higher refill rate is trusted as far as the bucket is seen to refill between readings;
 * on reports alone only once this many consecutive readings, spanning at least this many
 * Keepa minutes, have all reported it. */
#define TB_RATE_TRUST_READINGS 6
#define TB_RATE_TRUST_MINUTES  60

struct tb_params {
    int64_t bucket_minutes;     /* cap = refill rate x this; 0 = 60 */
    int64_t max_deficit_tokens; /* 0 = 60 (one commit batch); at most TB_COST_MAX */
    int64_t minute_ns;          /* Keepa minute; 0 = 60 s; a whole number of ms */
    int64_t initial_rate;       /* trusted rate until readings prove a higher one; 0 = 5 */
    int64_t stale_minutes;      /* reading age after which /token is worth a call; 0 = 15 */
};

/* A server reading: the envelope of any Keepa response (docs/keepa-api.md §5). */
struct tb_reading {
    double tokens_left;      /* may be negative or fractional (54.5 is accepted, floored) */
    int64_t refill_in_ms;    /* ms until the next refill tick, 0..minute */
    int64_t refill_rate;     /* tokens per minute, > 0 */
    int64_t timestamp_ms;    /* server time, epoch ms, > 0 */
    int64_t tokens_consumed; /* charged for this call (0 on 429) */
};

/* A granted reservation. Copyable; the slot/generation pair names it uniquely. */
struct tb_grant {
    uint32_t slot; /* TB_SLOT_NONE for a free (0-token) grant */
    uint32_t generation;
    int64_t owner;
    int64_t cost_tokens;
    int64_t granted_ns;
};

/* Request kinds with their own learned cost (docs/keepa-api.md §3). */
enum tb_kind {
    TB_KIND_TOKEN = 0,   /* /token: free */
    TB_KIND_DEAL_PAGE,   /* /deal: 5 per page; units = pages */
    TB_KIND_PEEK,        /* /product without offers; units = ASINs; seed 2 */
    TB_KIND_COMMIT,      /* /product offers=20 (+rating); units = ASINs; seed 13 */
    TB_KIND_UPDATE,      /* light refresh (stats, no offers); units = ASINs; seed 2 */
    TB_KIND_QUERY,       /* /query: 10 + 1 per 100 ASINs; units = ASINs asked for */
    TB_KIND_SELLER,      /* /seller: 1 per seller; units = sellers */
    TB_KIND_LIGHTNING,   /* /lightningdeal, the whole list: 500 a request; units = 1 */
    TB_KIND_BESTSELLERS, /* /bestsellers: 50 a list (0 when nothing is found); units = 1 */
    TB_KIND_COUNT
};

/* Read-only snapshot for `kdeals stat` / `status`. */
struct tb_stats {
    bool anchored;            /* a server reading has been applied */
    int64_t projected_tokens; /* tb_project() at now */
    int64_t refill_rate;      /* trusted rate */
    int64_t cap_tokens;
    int64_t max_deficit_tokens;
    int64_t time_to_fill_ns;
    int64_t next_refill_ns;  /* monotonic time of the next tick */
    int64_t inflight_tokens; /* reserved and not yet accounted by a reading */
    int64_t slots_in_use;
    int64_t lost_tokens; /* lost requests' reservations still subtracted from readings */
    int64_t lost_slots;
    int64_t last_reading_age_ns; /* -1 if none */
    struct tb_reading last_reading;
    uint64_t readings_applied;
    uint64_t readings_ignored;
    uint64_t grants;
    uint64_t granted_tokens;
    uint64_t writeoffs;
    int64_t writeoff_tokens; /* reserved by the written-off owners */
};

/*
 * Initialises TB (zeroed or stale memory) with P (NULL = all defaults) at NOW_NS. Must run
 * before the segment is shared (the supervisor calls it while creating the segment). The
 * bucket starts unanchored: nothing is granted until the first server reading (tb_needs_reading
 * is true). Returns 0, or -EINVAL for a NULL TB, a negative time or a parameter outside the
 * documented limits (nothing is written then).
 */
int tb_init(struct shm_tokens *tb, const struct tb_params *p, int64_t now_ns);

/*
 * Reserves COST_TOKENS for one request of OWNER (a pid, 1..TB_OWNER_MAX). Never sleeps.
 * Returns 0 and fills GRANT: the estimate has been charged and a reservation slot records it
 * until tb_settle / tb_apply_reading / tb_writeoff_owner. A cost of 0 is granted at once with
 * slot TB_SLOT_NONE. Grant rule: the projected balance B is > 0 (Keepa admits),
 * B - cost >= -max_deficit, and B - cost + (smallest reservation still unanswered) > 0 so that
 * every request in flight is admitted in whatever order Keepa receives them; a cost above
 * cap + max_deficit is granted as soon as the bucket is full. Returns -EAGAIN with *WAIT_UNTIL_NS =
 * the monotonic time at which the same request would be granted if nobody else spends (never later
 * than the bucket takes to fill; before the first reading a short retry time, and
 * tb_needs_reading() is true); -ENOSPC when all reservation slots are in use (retry after a
 * settle); -EINVAL for bad arguments or an uninitialised bucket. WAIT_UNTIL_NS may be NULL.
 */
int tb_reserve(struct shm_tokens *tb, int64_t now_ns, int64_t cost_tokens, int64_t owner,
               struct tb_grant *grant, int64_t *wait_until_ns);

/*
 * As tb_reserve, for a request that may be skipped rather than overdraw: never granted below
 * -max_deficit, not even a cost above cap + max_deficit once the bucket is full. Such a cost is
 * granted only while the projected balance already covers cost - max_deficit (a first reading,
 * or a trusted rate below the real one, may put it above the cap); otherwise -EDQUOT: no refill
 * will make it affordable, so there is nothing to wait for (docs/failure-modes.md F3, F4).
 * Other returns as tb_reserve.
 */
int tb_reserve_within(struct shm_tokens *tb, int64_t now_ns, int64_t cost_tokens, int64_t owner,
                      struct tb_grant *grant, int64_t *wait_until_ns);

/*
 * Ends the reservation GRANT once its request is answered (or failed) with ACTUAL_TOKENS
 * charged. If no reading was applied for it, the balance is corrected by reserved - actual.
 * Returns 0; -ERANGE when ACTUAL_TOKENS is negative or above TB_BALANCE_MAX: the reservation
 * ends all the same, settled as charged at its reserved amount (a refused settle must not keep
 * its slot); -ESTALE if the reservation was already settled or written off (nothing changes:
 * a slot is never freed twice); -EINVAL for bad arguments (nothing changes).
 */
int tb_settle(struct shm_tokens *tb, const struct tb_grant *grant, int64_t now_ns,
              int64_t actual_tokens);

/*
 * Ends the reservation GRANT of a request that may have been charged but got no answer (lost
 * in flight, cancelled): it stays charged at its reserved amount, and readings keep
 * subtracting it as if it were in flight, since a reading generated before the server charged
 * it (an answer on another connection, still on its way) does not show its cost yet; until the
 * answer to a request granted at least 3 s after it is applied (that one shows it), or for
 * two Keepa minutes (at least 5 s) at most. Then its slot is free again. Returns 0; -ESTALE if the
 * reservation was already ended; -EINVAL for bad arguments. tb_writeoff_owner() ends a dead
 * owner's reservations the same way.
 */
int tb_settle_lost(struct shm_tokens *tb, const struct tb_grant *grant, int64_t now_ns);

/*
 * Re-anchors the bucket to a server reading R received at NOW_NS (read the clock after the
 * response arrived): balance = floor(tokensLeft) minus every reservation still in flight other
 * than OWN, next tick = now + refillIn (rounded up to the ms). OWN is the grant of the request R
 * answers (for a free call such as /token, the free grant tb_reserve gave it: its granted_ns says
 * when it was sent), or NULL when there is none. A lower refill rate is adopted at once; a higher
 * one only as far as the balance is seen to grow between readings, or after TB_RATE_TRUST_READINGS
 * consecutive readings spanning TB_RATE_TRUST_MINUTES. Returns 0 when applied; -EINVAL for
 * garbage (refillRate <= 0, the zeroed 400 body, non-finite or out-of-range fields); -ESTALE
 * when R was made before a reading already applied: its server timestamp is older, and OWN
 * was granted before that reading was applied (or is NULL), however long ago that was (one of
 * the same server millisecond is applied, but may only lower the balance: the two cannot be
 * ordered; an older timestamp on the answer to a request granted after it means the server's
 * clock went back, and R is applied); -EBUSY when another process is applying a reading at this
 * moment (R's timestamp is kept: readings made before it are refused as if it had been
 * applied). After any non-zero return the balance is unchanged and OWN stays in flight: the
 * caller just goes on (tb_settle then corrects by reserved - actual).
 */
int tb_apply_reading(struct shm_tokens *tb, const struct tb_reading *r, int64_t now_ns,
                     const struct tb_grant *own);

/*
 * Releases every reservation of OWNER (a dead worker), counting the reserved tokens as spent
 * (the server may have charged them): held as lost requests, as tb_settle_lost() does. Also
 * frees the reading lock if OWNER died holding it. Returns the number of reservations ended, or
 * -EINVAL.
 */
int tb_writeoff_owner(struct shm_tokens *tb, int64_t owner, int64_t now_ns);

/*
 * Releases every reservation whose owner ALIVE(owner, UD) says is dead, as tb_writeoff_owner
 * does for one owner (for owners nobody reaps: the workers of an instance killed with -9).
 * Returns the number of slots released, or -EINVAL.
 */
int tb_writeoff_dead(struct shm_tokens *tb, int64_t now_ns, bool (*alive)(int64_t owner, void *ud),
                     void *ud);

/*
 * True when a free /token call is warranted: never anchored, or the projected balance is > 0
 * while the last reading is older than the stale bound (long idle). Never true while the
 * projection is <= 0, nor within a short while after another process claimed the call.
 */
bool tb_needs_reading(const struct shm_tokens *tb, int64_t now_ns);

/*
 * Claims the /token call that tb_needs_reading() suggested, so concurrent processes do not all
 * make it: 0 = the caller makes it; -EALREADY = someone claimed it within the last 1/6 minute.
 */
int tb_claim_status_call(struct shm_tokens *tb, int64_t now_ns);

/* Projected balance at NOW_NS (0 when unanchored or uninitialised). Pure. */
int64_t tb_project(const struct shm_tokens *tb, int64_t now_ns);

/* Nanoseconds until the projected balance reaches the cap (0 if full; -1 unanchored). Pure. */
int64_t tb_time_to_fill_ns(const struct shm_tokens *tb, int64_t now_ns);

/* Fills OUT with a snapshot at NOW_NS. Returns 0 or -EINVAL. */
int tb_stats(const struct shm_tokens *tb, int64_t now_ns, struct tb_stats *out);

/*
 * Tokens to reserve for one request of KIND covering UNITS ASINs (pages, sellers): the learned
 * per-unit estimate plus the kind's fixed part, rounded up. TB_KIND_TOKEN costs 0. Returns
 * the estimate (>= 0) or -EINVAL (bad kind, units < 1 or > TB_UNITS_MAX, uninitialised).
 */
int64_t tb_cost_estimate(const struct shm_tokens *tb, enum tb_kind kind, int64_t units);

/*
 * Learns from a 200 answer of KIND for UNITS that charged TOKENS_CONSUMED. An estimate that
 * was too low is raised to the observation at once; one that was too high decays by 1/8 of
 * the gap per answer. Returns 0 or -EINVAL.
 */
int tb_cost_learn(struct shm_tokens *tb, enum tb_kind kind, int64_t units, int64_t tokens_consumed);

#endif
