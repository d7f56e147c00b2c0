/*
 * rings.h: a worker's two ends of the rings, as every stage uses them.
 *
 * Consumer: a wk_watch sleeps on a ring's eventfd with uv_poll and drains the ring when woken.
 * The wake-up protocol is shm/ring.h's: drain, then ring_prepare_wait() sets the "sleeping"
 * word and re-checks; the producer writes the eventfd only while that word is set, so a busy
 * pipeline makes no system calls. A stage keeps a safety timer as well (a lost wake-up, a ring
 * without a usable eventfd) and calls wk_watch_serve() from it.
 *
 * Producer: a wk_backlog holds the records that did not fit in a full ring and pushes them,
 * in order, once the consumer made room. Every record on a ring is also durable elsewhere
 * (`pending` holds survivors and recommit requests; a refresh is a free extra), so a record
 * the backlog has no room for is dropped with a warning: the ring is a notification, not the
 * truth.
 */
#ifndef KD_WORKER_RINGS_H
#define KD_WORKER_RINGS_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "store/codec.h"
#include "worker/worker.h"

struct wk_watch;

/*
 * Reads what waits in the ring W->ring (ring_read ... ring_ack). Returns true when the ring may be
 * drained further, false to stop serving it for now (a store write failed and the records stay
 * in the ring for a retry, or the ring is broken).
 */
typedef bool (*wk_drain_fn)(struct wk_watch *w);

/* Called on the loop after a wake-up of the watched ring (its eventfd was written). */
typedef void (*wk_wake_fn)(struct wk_watch *w);

struct wk_watch {
    struct ring *ring;
    enum shm_ring_id id;
    uv_poll_t poll;
    bool polling; /* the eventfd is watched; false: only the stage's safety timer serves it */
    wk_drain_fn drain;
    wk_wake_fn on_wake;
    void *ud;
};

/*
 * Watches ring ID of WK: on a wake-up it clears the wake state and calls ON_WAKE(W), which
 * usually calls wk_watch_serve(). DRAIN(W) reads the ring; UD is the stage's, for both. A ring
 * without a usable eventfd is served by the stage's safety timer alone (logged). Never fails.
 */
void wk_watch_start(struct wk_watch *w, struct wk *wk, enum shm_ring_id id, wk_drain_fn drain,
                    wk_wake_fn on_wake, void *ud);

/* Drains the ring until it is empty and the producer knows to wake us, or DRAIN says stop. */
void wk_watch_serve(struct wk_watch *w);

/* Clears the ring's wake state (call from the safety timer before serving). */
void wk_watch_wait_done(struct wk_watch *w);

/* Stops watching (the stop sequence). Safe to call twice. */
void wk_watch_close(struct wk_watch *w);

/* Records for one ring that did not fit yet, oldest first. */
struct wk_backlog {
    struct wk *wk;
    enum shm_ring_id id;
    const char *on_drop; /* what a dropped record means, for the warning: "it stays in pending" */
    size_t n, cap;
    struct st_pending *rec;
};

/*
 * Sets up a backlog of up to CAP records for ring ID of WK. ON_DROP is a static string.
 * Returns 0 or -ENOMEM. wk_backlog_free releases it (also a zeroed one).
 */
int wk_backlog_init(struct wk_backlog *b, struct wk *wk, enum shm_ring_id id, size_t cap,
                    const char *on_drop);
void wk_backlog_free(struct wk_backlog *b);

/*
 * Pushes REC behind the records still waiting: straight to the ring when none wait and it
 * fits, else into the backlog. Returns 0 (pushed or queued), -ENOBUFS when the backlog is full
 * (REC is dropped, with a warning), or the ring's or the codec's error (REC is dropped, logged).
 */
int wk_backlog_push(struct wk_backlog *b, const struct st_pending *rec);

/* Queues REC without trying the ring (the caller pushes with wk_backlog_flush later). Returns
 * 0, or -ENOBUFS when the backlog is full (REC is not queued; nothing is logged). */
int wk_backlog_add(struct wk_backlog *b, const struct st_pending *rec);

/* Forgets the records queued after the first N (those a failed write transaction added). */
void wk_backlog_truncate(struct wk_backlog *b, size_t n);

/* Pushes waiting records in order until the ring is full. Returns how many still wait. */
size_t wk_backlog_flush(struct wk_backlog *b);

#endif
