/*
 * worker.h: what every worker process does besides its stage.
 *
 * A worker is started by the supervisor as `kdeals worker ROLE --instance NAME [--log-file F]` with
 * the rings' eventfds at fds 3, 4 and 5 (one per ring, in enum shm_ring_id order) and nothing else
 * inherited. wk_start() attaches to the segment read-write, arranges to die with the supervisor
 * (PR_SET_PDEATHSIG, then a check that the parent is still the supervisor that created the
 * segment), opens the rings, installs TERM/INT/QUIT/HUP handlers as libuv signal watchers (never
 * work in a signal handler) and a heartbeat timer, and marks the process-table slot. The stage then
 * adds its own handles to wk->loop and calls wk_run().
 */
#ifndef KD_WORKER_H
#define KD_WORKER_H

#include <stdbool.h>
#include <uv.h>

#include "base/config.h"
#include "shm/counters.h"
#include "shm/ring.h"
#include "shm/segment.h"

#define WK_FIRST_WAKE_FD 3
#define WK_KEY_FD        (WK_FIRST_WAKE_FD + SHM_RING_COUNT)
#define WK_KEY_MAX       512

struct wk;

/* Called on the loop when the supervisor asks the worker to stop (TERM/INT) or reload (HUP). */
typedef void (*wk_event_cb)(struct wk *wk);

struct wk {
    enum shm_role role;
    uv_loop_t *loop;
    struct shm_segment seg;
    struct shm_proc_slot *slot;
    struct shm_counter_block *counters;
    struct ring rings[SHM_RING_COUNT];
    bool stopping;
    struct cfg cfg; /* the config published by the supervisor */
    int64_t cfg_generation;
    char key[WK_KEY_MAX]; /* the API key read from fd 6; "" when none */
    int64_t supervisor_pid;
    wk_event_cb on_stop;   /* default: stop the loop */
    wk_event_cb on_reload; /* default: nothing */
    void *data;            /* the stage's state */
    const char *log_file;  /* NULL: stderr */
    uv_signal_t sig_term, sig_int, sig_quit, sig_hup, sig_usr1;
    uv_timer_t heartbeat;
};

/*
 * Parses `--instance NAME` from ARGV (argv[0] is the role), attaches and sets everything up
 * on LOOP. Returns 0, or a negative errno after logging why (the caller exits non-zero,
 * and the supervisor restarts it with backoff).
 */
int wk_start(struct wk *wk, enum shm_role role, uv_loop_t *loop, int argc, char **argv);

/* Sets the process-table state (enum shm_proc_state). */
void wk_set_state(struct wk *wk, enum shm_proc_state state);

/* Runs the loop until the worker stops; closes its handles and detaches. Returns 0. */
int wk_run(struct wk *wk);

/* Ends the worker: stops its handles so wk_run() returns after in-flight work is done. */
void wk_stop(struct wk *wk);

/* Records a last-error message in the process-table slot (shown by `kdeals status`). */
void wk_set_error(struct wk *wk, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
