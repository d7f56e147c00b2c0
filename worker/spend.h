/*
 * spend.h: every Keepa request a worker makes goes through here, and only after the shared
 * token bucket granted it.
 *
 * This is the spending policy every stage spends through; the Fn in brackets are the failures
 * of the replaced system it rules out (docs/failure-modes.md).
 *
 * A stage hands over a job: the request kind and size (for the learned cost), its priority,
 * a builder that fills the kp_call when tokens are granted, and the decoder callbacks. The
 * spender reserves the estimated cost from a key's bucket (shm/tokens.h, in the key's segment
 * shared by every instance that uses the key: shm/keyseg.h); with several keys, from the first
 * whose bucket grants it. If no grant is possible yet it arms a timer on the worker's loop and
 * returns to it holding nothing, so the stage keeps serving its ring and signals (F3-F4: no
 * livelock, no unreachable wait target). It makes the free /token call only when a bucket says
 * a reading is warranted, and never while the projection is below zero (F5-F6). Every answer's
 * reading re-anchors its key's bucket, with the job's own reservation excluded (F8: one shared
 * balance); 200 answers teach the per-kind cost (F1-F2); a 429 re-anchors and puts the job back
 * at the head of the queue to wait for its new grant (F9), never a blind retry.
 *
 * Every attempt that can be charged is gated and counted: the client makes one attempt per
 * request, and a transient failure (5xx, reset, timeout) is retried here, up to SP_MAX_TRIES
 * attempts with backoff, each with a grant of its own and its own reading applied. An attempt
 * lost without an answer (a timeout, a reset before the envelope, a request cancelled in flight
 * when the worker stops) is counted as charged at its estimate (F14: tokens_lost) until a
 * reading says otherwise. A key Keepa refuses (402 no access, 400 invalid key) is set aside,
 * shown by `kdeals status`, and the job goes to another key; once every key is set aside the
 * jobs end with KP_KEY_UNUSABLE. The stage's on_done sees only final outcomes (OK, PERMANENT,
 * KEY_UNUSABLE, FAILED, CANCELLED) and keeps the items of anything but OK (F10: failed fetches
 * are never silently dropped).
 *
 * Sharing a key between instances: each instance is a member of the key's segment, and a
 * request is granted only when the share rule of shm/keyseg.h lets this instance spend now.
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
#include "shm/keyseg.h"
#include "shm/tokens.h"

#define SP_MAX_TRIES 3 /* attempts of one request that failed transiently, each with its grant */

enum sp_priority { SP_PRIO_COMMIT = 0, SP_PRIO_UPDATE = 1, SP_PRIO_DISCOVER = 2 };

/* Fills CALL when the job's tokens are granted. Returns 0, or a negative errno (the job then
 * ends with KP_PERMANENT and its reservation is returned). */
typedef int (*sp_build_fn)(struct kp_call *call, void *ud);

struct sp_job_spec {
    enum tb_kind kind;
    int64_t units;        /* ASINs (pages for /deal) the request covers: the cost estimate's base */
    int64_t least_tokens; /* what the stage knows the request costs at least (0: nothing): the
                             reservation is the larger of it and the learned estimate */
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

/* One API key of the worker: its bucket's segment and this instance's member slot in it. */
struct sp_key {
    struct ks_segment ks;
    int member;  /* in ks, -1 when none */
    bool joined; /* the member was joined here (no supervisor did): left at close */
    int ref;     /* index in the instance segment's keys[], -1 when it is not listed there */
    bool set_aside;
    bool status_call_in_flight;
};

struct spend {
    struct wk *wk;
    struct kp_client *client;
    struct shm_tokens *tb; /* the first key's bucket (cost estimates); sp_stats() for all */
    struct sp_key keys[KD_KEYS_MAX];
    unsigned n_keys;
    int64_t owner; /* the member owner: the supervisor's pid */
    uv_timer_t wait_timer;
    uv_timer_t retry_timer;
    struct sp_job *head, *tail; /* waiting for tokens, in order */
    struct sp_job *backoff;     /* failed attempts waiting to be tried again, by due time */
    unsigned in_flight;         /* the stages' jobs sent, or in backoff (/token calls aside) */
    unsigned max_in_flight;
    bool key_unusable; /* every key is set aside */
    bool closing;
    bool timers_open;
    int64_t wait_since_ns; /* 0 when not waiting */
    uint64_t rng;
    void (*on_closed)(void *ud);
    void *closed_ud;
};

/*
 * Sets up the spender of worker WK: a Keepa client on WK's loop with WK's config and keys,
 * and each key's bucket segment (opened, or created with WK's [tokens] settings) with this
 * instance's member slot (the supervisor's; joined here when no supervisor did). Returns 0,
 * -ENOKEY when the worker has no API key (nothing can be spent; the stage should idle), or
 * another negative errno with ERR saying why (nothing is held then).
 */
int sp_init(struct spend *sp, struct wk *wk, char *err, size_t errlen);

/*
 * Queues a job. Returns 0 (on_done will run exactly once), -EKEYREJECTED once every key was
 * set aside (Keepa said 402 or invalid key: nothing is spent any more), -ESHUTDOWN while
 * closing, -EINVAL for a bad spec, -ENOMEM. On failure no callback runs.
 */
int sp_submit(struct spend *sp, const struct sp_job_spec *spec);

/* Jobs queued, in flight or waiting to be tried again. */
unsigned sp_pending(const struct spend *sp);

/*
 * The buckets of every usable key together at NOW_NS: anchored if any is, the projected
 * balances, refill rates and caps summed; the other fields from the first anchored one.
 * Returns 0, or -ENOKEY when no key is usable.
 */
int sp_stats(const struct spend *sp, int64_t now_ns, struct tb_stats *out);

/*
 * Cancels queued jobs and those waiting to be tried again (their on_done gets KP_CANCELLED),
 * cancels the requests in flight (counted as charged: tokens_lost), closes the client and the
 * key segments, and calls ON_CLOSED from the loop once everything is closed.
 */
void sp_close(struct spend *sp, void (*on_closed)(void *ud), void *ud);

#endif
