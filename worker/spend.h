/*
 * spend.h: every Keepa request a worker makes goes through here, and only after the shared
 * token bucket granted it.
 *
 * This is the spending policy every stage spends through; the Fn in brackets are the failures
 * of the replaced system it rules out (docs/failure-modes.md).
 *
 * A stage hands over a job: the request kind and size (for the learned cost), its priority,
 * a builder that fills the kp_call when tokens are granted, and the decoder callbacks. The
 * spender reserves the estimated cost from the shared bucket (shm/tokens.h); if the grant is
 * in the future it arms a timer on the worker's loop and returns to it holding nothing, so
 * the stage keeps serving its ring and signals (F3-F4: no livelock, no unreachable wait
 * target). It makes the free /token call only when the bucket says a reading is warranted,
 * and never while the projection is below zero (F5-F6). Every answer's reading re-anchors the
 * bucket, with the job's own reservation excluded (F8: one shared balance); 200 answers teach
 * the per-kind cost (F1-F2); a 429 re-anchors and puts the job back at the head of the queue
 * to wait for its new grant (F9), never a blind retry; a timed-out or reset request is settled
 * as charged (F14). The stage's on_done sees only final outcomes (OK, PERMANENT, KEY_UNUSABLE,
 * FAILED, CANCELLED) and keeps the items of anything but OK (F10: failed fetches are never
 * silently dropped).
 *
 * A job may ask never to be granted beyond the deficit bound (within_deficit): one that no
 * bucket of this key can pay within it ends at once, unsent, instead of waiting for a full
 * bucket and overdrawing it.
 *
 * Priority between processes (docs/architecture.md, "Tokens"): commits of paid-for survivors
 * first, then due updates, then discovery. A lower-priority job is granted only while the projected
 * balance after it still covers the estimated cost of the higher-priority backlog that the other
 * workers publish in shared memory (commit_backlog, updates_due gauges).
 */
#ifndef KD_SPEND_H
#define KD_SPEND_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "worker/worker.h"
#include "keepa/client.h"
#include "shm/tokens.h"

enum sp_priority { SP_PRIO_COMMIT = 0, SP_PRIO_UPDATE = 1, SP_PRIO_DISCOVER = 2 };

/* Fills CALL when the job's tokens are granted. Returns 0, or a negative errno (the job then
 * ends with KP_PERMANENT and its reservation is returned). */
typedef int (*sp_build_fn)(struct kp_call *call, void *ud);

struct sp_job_spec {
    enum tb_kind kind;
    int64_t units; /* ASINs (pages for /deal) the request covers: the cost estimate's base */
    enum sp_priority prio;
    /*
     * Never beyond the deficit bound (tb_reserve_within). The bucket grants a cost above
     * cap + max_deficit once it is full, so that no wait is unreachable (docs/failure-modes.md
     * F3), which leaves the balance below -max_deficit. A job that may be skipped (a discovery
     * list of 500 tokens on a bucket of 300) sets this instead: while no refill can make it
     * affordable within the bound, it ends with KP_PERMANENT, nothing sent (http_status 0, the
     * error saying what it costs and which key to change).
     */
    bool within_deficit;
    sp_build_fn build;
    struct kp_request_cbs cbs; /* cbs.ud goes to build too */
};

struct sp_job;

struct spend {
    struct wk *wk;
    struct kp_client *client;
    struct shm_tokens *tb;
    uv_timer_t wait_timer;
    struct sp_job *head, *tail; /* waiting for tokens, in order */
    unsigned in_flight;
    unsigned max_in_flight;
    bool status_call_in_flight;
    bool key_unusable;
    bool closing;
    int64_t wait_since_ns; /* 0 when not waiting */
    void (*on_closed)(void *ud);
    void *closed_ud;
};

/*
 * Sets up the spender of worker WK: a Keepa client on WK's loop with WK's config and key.
 * Returns 0, -ENOKEY when the worker has no API key (nothing can be spent; the stage should
 * idle), or another negative errno with ERR saying why.
 */
int sp_init(struct spend *sp, struct wk *wk, char *err, size_t errlen);

/*
 * Queues a job. Returns 0 (on_done will run exactly once), -EKEYREJECTED after Keepa said 402
 * (the key is unusable: nothing is spent any more), -ESHUTDOWN while closing, -EINVAL for a
 * bad spec, -ENOMEM. On failure no callback runs.
 */
int sp_submit(struct spend *sp, const struct sp_job_spec *spec);

/* Jobs queued or in flight. */
unsigned sp_pending(const struct spend *sp);

/*
 * Cancels queued jobs (their on_done gets KP_CANCELLED), lets in-flight ones finish or be
 * cancelled by the client, and calls ON_CLOSED from the loop once everything is closed.
 */
void sp_close(struct spend *sp, void (*on_closed)(void *ud), void *ud);

#endif
