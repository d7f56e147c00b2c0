/*
 * worker.h: the worker runtime: one main() for every worker process, driven by its stage.
 *
 * The supervisor starts a worker as `kdeals worker ROLE ...` (the contract is worker/spawn.h).
 * wk_main() picks the stage of that role from the table the binary hands it, and does what
 * every worker does besides its stage: it arranges to die with the supervisor (PR_SET_PDEATHSIG,
 * then a check that the parent is still the supervisor that created the segment), reads the
 * API keys from their pipe, keeps the store lock it inherited open, attaches to the segment
 * read-write, loads the published config, opens the rings, installs TERM/INT/QUIT/HUP/USR1 as libuv
 * signal watchers (never work in a signal handler) and a heartbeat timer, and marks the
 * process-table slot. Then it runs the stage through its hooks, as nginx runs its modules'
 * init_process hooks:
 *
 *   start    sets the stage up on wk->loop and kicks its work off (the process is READY
 *            once it returns 0);
 *   stop     TERM/INT: finish or hand back the work in flight, then call wk_stop();
 *   reload   HUP, once wk->cfg holds the newly published config;
 *   release  after the loop ended, whatever ended it (a graceful stop, QUIT, the supervisor's
 *            death, or a start that failed half-way): frees what start acquired.
 *
 * The stop sequence is the same for every stage: the stage's stop hook drains what it must,
 * the stage closes its spender (worker/spend.h) and calls wk_stop() from the spender's close
 * callback; wk_stop() closes the runtime's handles so the loop ends; the runtime closes what is
 * still open, calls release, then detaches from the segment and wipes the key (a stage's own
 * threads may count into the segment until release stopped them). Nothing is freed twice,
 * because nothing but release frees.
 */
#ifndef KD_WORKER_H
#define KD_WORKER_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "base/config.h"
#include "base/key.h"
#include "shm/counters.h"
#include "shm/ring.h"
#include "shm/segment.h"
#include "worker/spawn.h"

struct wk;
struct st_env;

/* One worker stage. Every hook gets the worker; the stage's state is wk->data. */
struct wk_stage {
    const char *name; /* the role name: `kdeals worker NAME` */
    enum shm_role role;
    size_t state_size; /* wk->data: this many zeroed bytes, allocated before start */
    /* Returns 0, or a negative errno after logging why (the worker exits 1 and the
     * supervisor restarts it with backoff). Called once. */
    int (*start)(struct wk *wk);
    void (*stop)(struct wk *wk);    /* NULL: wk_stop() at once */
    void (*reload)(struct wk *wk);  /* NULL: nothing to reload */
    void (*release)(struct wk *wk); /* NULL: nothing to free; must cope with zeroed fields */
};

struct wk {
    const struct wk_stage *stage;
    enum shm_role role;
    uv_loop_t *loop;
    struct shm_segment seg;
    struct shm_proc_slot *slot;
    struct shm_counter_block *counters;
    struct ring rings[SHM_RING_COUNT];
    bool stopping;
    struct cfg cfg; /* the config published by the supervisor */
    int64_t cfg_generation;
    struct kd_keys keys; /* the API keys read from WK_FD_KEY; none: keys.n == 0 */
    int64_t supervisor_pid;
    void *data;           /* the stage's state */
    const char *log_file; /* NULL: stderr */
    uv_signal_t sig_term, sig_int, sig_quit, sig_hup, sig_usr1;
    uv_timer_t heartbeat;
    unsigned beats;         /* heartbeats so far */
    struct st_env *store;   /* the store wk_store_open opened, checked on the heartbeat */
    bool store_lost;        /* st_check failed last time (said once) */
    int64_t sibling_deaths; /* the supervisor's restart count when readers were checked */
    bool cannot_run;        /* exit WK_EXIT_CANNOT_RUN: a restart would not help */
};

/*
 * The main() of every worker: ARGV is `worker ROLE --instance NAME [--log-file FILE]`
 * (worker/spawn.h), STAGES the stages this binary has. Runs the stage of ROLE until the
 * supervisor stops it or dies. Returns the process exit code: 0 after a stop, 1 when the
 * worker could not start, WK_EXIT_CANNOT_RUN when it never could (wk_store_open), 2 for an
 * unknown role. SIGPIPE is ignored, and every descriptor above the spawn contract's is closed
 * first thing.
 */
int wk_main(const struct wk_stage *const *stages, size_t n_stages, int argc, char **argv);

/* Sets the process-table state (enum shm_proc_state). */
void wk_set_state(struct wk *wk, enum shm_proc_state state);

/* Ends the worker: closes the runtime's handles, so the loop ends once the stage's are closed
 * too. Call it when the stage's work is done (the end of the stop hook's sequence). */
void wk_stop(struct wk *wk);

/* wk_stop() in the shape of a close callback: sp_close(&sp, wk_stop_cb, wk). */
void wk_stop_cb(void *wk);

/* Records a last-error message in the process-table slot (shown by `kdeals status`). */
void wk_set_error(struct wk *wk, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * Opens the store named by the worker's config ([store] path, map sizes) and clears the reader
 * slots of dead processes. Returns 0 and *ENV, or a negative errno after logging why and
 * recording it as the worker's last error; a store that cannot be opened for a reason a
 * restart would not change (truncated, not a kdeals store, newer, unreadable) also marks the
 * worker to exit WK_EXIT_CANNOT_RUN, so the supervisor stops instead of restarting it.
 *
 * From then on the heartbeat watches that store: every WK_STORE_CHECK_MS it checks that the
 * folder and data.mdb at the configured path are still the ones open (st_check; a removed
 * store is said loudly, and writes fail so the stage pauses spending), and it clears the reader
 * slots of dead processes every WK_READER_CHECK_MS and whenever the supervisor restarted a
 * sibling (a reader that died mid-read would otherwise pin a snapshot and grow the file).
 */
int wk_store_open(struct wk *wk, struct st_env **env);

#define WK_STORE_CHECK_MS  2000
#define WK_READER_CHECK_MS 10000

#endif
