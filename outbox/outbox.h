/*
 * outbox.h: the outbox worker: deals out to where the business works (docs/architecture.md,
 * "The outbox"; docs/mirror.md).
 *
 * A process of its own (`kdeals worker outbox`), started by the supervisor only when the config
 * asks for it ([mirror] postgres, [alert.NAME] sections), never given the API key. It follows
 * the store's change log (store/store.h, db `changes`: written in the same transaction as every
 * record change) with its own positions in the store's meta db, and carries the changes out: to
 * a PostgreSQL database (outbox/mirror.h), and each deal entering an alert's view to its webhook
 * or command (outbox/alerts.h). Everything it does waits on the network, so it runs apart from
 * the pipeline: a dead database or a slow target costs the scanner, committer and updater
 * nothing, not even a shared thread.
 *
 * Inside, each consumer is a lane: a thread that runs the consumer's step again and again,
 * sleeping between steps for as long as the step asks (a poll interval, a backoff) unless the
 * worker stops or reloads. The process's libuv loop does only the worker runtime's work
 * (signals, heartbeat, reload): a lane blocked for a minute on a hung database never stops the
 * worker from answering. A lane touches the store through its own short transactions (LMDB
 * serialises writers, readers never block) and never holds one across a network call except to
 * keep one snapshot for a resynchronisation.
 *
 * Stop: TERM asks every lane to stop at its next wait and cancels what a lane is waiting on (a
 * query: PQcancel); the worker stops once every lane has returned. A lane killed in the middle
 * of anything (kill -9) loses nothing: every consumer records its position after the far side
 * committed, and the far side is idempotent (docs/mirror.md, "Exactly once").
 */
#ifndef KD_OUTBOX_H
#define KD_OUTBOX_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "base/config.h"
#include "shm/layout.h"
#include "worker/worker.h"

struct st_env;
struct st_txn;

#define OB_ALERT_LANES_MAX CFG_NAMED_MAX /* one lane per [alert.NAME] */

/* What the lanes share. Members after `lock` are guarded by it. */
struct ob_ctx {
    struct st_env *env; /* the store, opened by the worker: use it through ob_read_begin and
                           ob_write, which hold store_lock */
    uv_mutex_t store_lock;
    struct shm_counter_block *counters; /* the outbox's counters (shm/counters.def) */
    char hostname[64];
    uv_mutex_t lock;
    uv_cond_t wake;
    bool stopping;
    struct cfg cfg;       /* the published config, replaced on reload */
    uint64_t cfg_version; /* bumped on every reload */
    /* Each alert lane's pending and dead deliveries and lag, summed into the gauges. */
    int64_t alert_pending[OB_ALERT_LANES_MAX];
    int64_t alert_dead[OB_ALERT_LANES_MAX];
    int64_t alert_lag[OB_ALERT_LANES_MAX];
};

/*
 * Copies the current config into *OUT (under the lock) and returns its version. A lane calls
 * this at the start of each step, so a reload reaches it at its next step.
 */
uint64_t ob_config(struct ob_ctx *ctx, struct cfg *out);

/*
 * The store from a lane. One st_env serves every lane (LMDB allows one environment per process),
 * and growing its map needs no transaction open in the process: so a lane holds the context's
 * store lock from ob_read_begin to ob_read_end and during ob_write, and keeps both short (no
 * network call inside, but for a resynchronisation's snapshot). Same contracts as st_read_begin,
 * st_read_end and st_write.
 */
int ob_read_begin(struct ob_ctx *ctx, struct st_txn **txn);
void ob_read_end(struct ob_ctx *ctx, struct st_txn *txn);
int ob_write(struct ob_ctx *ctx, int (*fn)(struct st_txn *txn, void *ud), void *ud);

/* Whether the worker is stopping (lanes end their step early when it is). */
bool ob_stopping(struct ob_ctx *ctx);

/* The outbox stage (worker/worker.h), for cli/main.c. */
extern const struct wk_stage outbox_stage;

#endif
