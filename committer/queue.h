/*
 * queue.h: the committer's in-memory queue of survivors waiting for a full fetch, and the
 * pure rules that decide when a batch goes out.
 *
 * The queue is a cache of the `pending` db, never the truth: every item in it has a pending
 * record in LMDB, written by the scanner or the updater before they pushed it on a ring (or
 * found there at start). So the queue may be dropped at any moment (kill -9) and rebuilt from
 * pending; what it adds is deduplication by key (an ASIN announced twice is fetched once),
 * arrival order, the in-flight mark and per-item backoff after failed fetches.
 *
 * Batching: a batch is up to `batch` ready items of one domain, the most valuable first (or,
 * with the value order off, the oldest first). A full batch goes at once; a partial one waits
 * until its oldest item has been ready for `linger_ms`, so a lone survivor is fetched after at
 * most the linger time instead of waiting for company forever. Pure functions of (queue, now,
 * value model): tests drive them with made-up times and rates.
 *
 * Value (docs/architecture.md, "The spending policy"): a survivor is worth what its full fetch
 * is expected to find: the peek's profit estimate times the learned profit ratio, times the
 * learned hit rate, times the chance a deal of its class (worker/value.h) is still there
 * after the Keepa minutes since its peek; the backlog is taken by that worth per token of its
 * full fetch (the peek's offer counts say what it costs). A recommit (a stored deal the
 * updater wants fetched again) is worth its stored profit undiscounted: it is shown while it
 * waits. A survivor whose deal has most likely vanished (its class's survival since the peek
 * below COMMITTER_DROP_CHANCE) is not worth its fetch: the committer drops it unfetched.
 */
#ifndef KD_COMMITTER_QUEUE_H
#define KD_COMMITTER_QUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/codec.h"
#include "worker/value.h"

#define COMMITTER_MAX_BATCH   5
#define COMMITTER_DROP_CHANCE 0.1 /* a survivor less likely than this to last is dropped */

/* What the backlog is ordered by: the learned rates (worker/value.h) and the fetch's terms. */
struct committer_value {
    bool on;                    /* false: arrival order */
    double lambda[VAL_CLASSES]; /* vanish hazard per Keepa minute of each class */
    double hit;                 /* val_conf_hit */
    double ratio;               /* val_conf_ratio */
    int64_t minute_ms;          /* real ms of a Keepa minute (> 0) */
    int64_t offers;             /* offers asked per full fetch */
};

struct committer_item {
    struct st_pending p;
    struct st_key key;
    int64_t ready_ms;   /* when it may be fetched (arrival, or after a backoff) */
    bool in_flight;     /* part of the batch being fetched */
    uint32_t failures;  /* consecutive failed fetches of any kind (backoff) */
    uint32_t permanent; /* consecutive KP_PERMANENT answers */
};

struct committer_queue {
    struct committer_item *items; /* arrival order */
    size_t n, cap;
};

void committer_queue_init(struct committer_queue *q);
void committer_queue_free(struct committer_queue *q);

/*
 * Adds survivor P, ready at NOW_MS. Returns 1 when added, 0 when its key is already queued
 * (the queued item is kept as it is), -EINVAL for an invalid asin/domain, -ENOMEM.
 */
int committer_queue_add(struct committer_queue *q, const struct st_pending *p, int64_t now_ms);

/* The item with KEY, or NULL. The pointer is valid until the next add or remove. */
struct committer_item *committer_queue_find(struct committer_queue *q, const struct st_key *key);

/* Removes the item with KEY. Returns 0 or -ENOENT. */
int committer_queue_remove(struct committer_queue *q, const struct st_key *key);

/* Items not in flight and ready at NOW_MS; *OLDEST_MS gets the smallest ready_ms of them. */
size_t committer_queue_ready(const struct committer_queue *q, int64_t now_ms, int64_t *oldest_ms);

/* The earliest ready_ms of an item not in flight that is not ready at NOW_MS, or -1. */
int64_t committer_queue_next_ready(const struct committer_queue *q, int64_t now_ms);

/*
 * What to do now with READY ready items (the oldest ready since OLDEST_MS), batches of
 * BATCH and a linger of LINGER_MS: returns 0 to send a batch now, or the ms to wait
 * before looking again (> 0), or -1 when there is nothing to send. STOPPING never sends.
 */
int64_t committer_batch_wait_ms(size_t ready, int64_t oldest_ms, int64_t now_ms, int64_t batch,
                                int64_t linger_ms, bool stopping);

/*
 * The chance that a deal like survivor P, seen a deal by its peek at P->peek_ms, is still
 * there at wall-clock NOW_WALL_MS: its class's survival over the Keepa minutes since (1 for a
 * recommit).
 */
double committer_survival(const struct st_pending *p, int64_t now_wall_ms,
                          const struct committer_value *m);

/* The chance that P is a deal at NOW_WALL_MS: the hit rate times committer_survival (1 for a
 * recommit). */
double committer_still_deal(const struct st_pending *p, int64_t now_wall_ms,
                            const struct committer_value *m);

/*
 * What a full fetch of P at NOW_WALL_MS is expected to find, in cents of profit per token it
 * costs: the peek's profit (at least 1 cent) times the profit ratio times
 * committer_still_deal, over val_fetch_tokens of the peek's offer counts.
 */
double committer_value_per_token(const struct st_pending *p, int64_t now_wall_ms,
                                 const struct committer_value *m);

/*
 * The profit (cents) a token buys in acquisition, what a re-check competes with (the updater's
 * "budget" rule): the greater of the mean committer_value_per_token at NOW_WALL_MS of the
 * queued survivors (not recommits; none when M is off or none wait), and FOUND_CENTS over
 * SPENT_TOKENS, the profit the deals found from survivors carried over every token discovery
 * and commits spent. 0 when neither is known.
 */
double committer_token_value(const struct committer_queue *q, int64_t now_wall_ms,
                             const struct committer_value *m, double found_cents,
                             double spent_tokens);

/*
 * Takes up to MAX (1..COMMITTER_MAX_BATCH) ready items of one domain, marks them in flight
 * and copies their keys into KEYS: the highest committer_value_per_token at NOW_WALL_MS first
 * when M is on, else the oldest first (ties go to the older too). Returns how many were taken.
 * NOW_MS is the queue's (monotonic) time of readiness.
 */
size_t committer_queue_take(struct committer_queue *q, int64_t now_ms, int64_t now_wall_ms,
                            const struct committer_value *m, size_t max, struct st_key *keys);

/*
 * Copies into KEYS (at most MAX) the keys of the queued survivors, not in flight, whose
 * committer_survival at NOW_WALL_MS is below COMMITTER_DROP_CHANCE (never a recommit): a
 * peek, however trusted, says little after that long. Returns how many.
 */
size_t committer_queue_hopeless(const struct committer_queue *q, int64_t now_wall_ms,
                                const struct committer_value *m, size_t max, struct st_key *keys);

/*
 * Backoff after the ATTEMPTS-th consecutive failure (1 = first) when a Keepa minute lasts
 * MINUTE_MS: a quarter of a minute, doubling, at most 30 minutes.
 */
int64_t committer_backoff_ms(uint32_t attempts, int64_t minute_ms);

#endif
