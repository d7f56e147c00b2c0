/*
 * bucket.h: Keepa's token bucket (docs/keepa-api.md §4), with accelerated time.
 *
 * Ticks happen at start + k * minute_ms (monotonic clock). Each tick adds refill_rate tokens,
 * capped at refill_rate * bucket_minutes; what the cap cuts off is counted as expired. A
 * cost-bearing request is admitted iff the balance is > 0, then charged in full (the balance
 * may go negative); otherwise it is refused and nothing is charged. All state is behind one
 * mutex, so admission and charge are a single atomic step even with many server threads.
 */
#ifndef SIM_BUCKET_H
#define SIM_BUCKET_H

#include <pthread.h>
#include <stdint.h>

struct sim_bucket {
    pthread_mutex_t mu;
    int64_t minute_ns;
    int64_t bucket_minutes;
    int64_t rate;
    int64_t balance;
    int64_t start_ns;
    int64_t ticks_done;
    int64_t earned, consumed, expired;
};

/* What a response envelope reports. */
struct sim_bucket_view {
    int64_t balance;
    int64_t refill_in_ms; /* 0 < refill_in_ms <= minute_ms */
    int64_t rate;
    int64_t ticks; /* Keepa minutes elapsed since start (the simulated clock) */
};

/* START_TOKENS value meaning "a full bucket" (any other value, negative too, is used as is). */
#define SIM_START_FULL INT64_MIN

/*
 * Initialises B. START_TOKENS is the opening balance and may be negative (a key in debt);
 * SIM_START_FULL means a full bucket. Returns 0 or -EINVAL (minute_ms < 1,
 * bucket_minutes < 1, rate < 0).
 */
int sim_bucket_init(struct sim_bucket *b, int64_t minute_ms, int64_t bucket_minutes, int64_t rate,
                    int64_t start_tokens, int64_t now_ns);
void sim_bucket_destroy(struct sim_bucket *b);

/* Reports the state at NOW_NS (after applying due ticks). */
void sim_bucket_peek(struct sim_bucket *b, int64_t now_ns, struct sim_bucket_view *v);

/*
 * Admission + charge: if FORCE_REFUSE is 0 and the balance is > 0, subtracts COST (>= 0) and
 * returns 1; otherwise changes nothing and returns 0. V receives the state after the call.
 */
int sim_bucket_charge(struct sim_bucket *b, int64_t now_ns, int64_t cost, int force_refuse,
                      struct sim_bucket_view *v);

/* Charges COST without admission (faults that charge after the fact). */
void sim_bucket_debit(struct sim_bucket *b, int64_t now_ns, int64_t cost);

/* Sets the balance (tests) / the refill rate (from the next tick on). */
void sim_bucket_set_balance(struct sim_bucket *b, int64_t now_ns, int64_t balance);
void sim_bucket_set_rate(struct sim_bucket *b, int64_t now_ns, int64_t rate);

/* Ledger totals: earned (added by ticks), consumed (charged), expired (cut off by the cap). */
void sim_bucket_totals(struct sim_bucket *b, int64_t now_ns, int64_t *earned, int64_t *consumed,
                       int64_t *expired, int64_t *balance, int64_t *rate);

/* Zeroes earned/consumed/expired. */
void sim_bucket_reset_totals(struct sim_bucket *b);

#endif
