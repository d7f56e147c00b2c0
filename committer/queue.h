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
 * Batching: a batch is up to `batch` ready items of one domain, oldest first. A full batch
 * goes at once; a partial one waits until its oldest item has been ready for `linger_ms`, so
 * a lone survivor is fetched after at most the linger time instead of waiting for company
 * forever. Pure functions of (queue, now): tests drive them with made-up times.
 */
#ifndef KD_COMMITTER_QUEUE_H
#define KD_COMMITTER_QUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/codec.h"

#define COMMITTER_MAX_BATCH 5

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
 * Takes up to MAX (1..COMMITTER_MAX_BATCH) ready items of one domain, oldest first, marks them
 * in flight and copies their keys into KEYS. Returns how many were taken.
 */
size_t committer_queue_take(struct committer_queue *q, int64_t now_ms, size_t max,
                            struct st_key *keys);

/*
 * Backoff after the ATTEMPTS-th consecutive failure (1 = first) when a Keepa minute lasts
 * MINUTE_MS: a quarter of a minute, doubling, at most 30 minutes.
 */
int64_t committer_backoff_ms(uint32_t attempts, int64_t minute_ms);

#endif
