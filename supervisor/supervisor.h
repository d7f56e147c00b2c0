/*
 * supervisor.h: the supervisor process (`kdeals run`).
 *
 * It creates the instance's segment and the rings' eventfds, spawns the workers
 * (fork + exec of its own binary with a role argument, so every child starts with a fresh
 * libuv loop, fresh curl state and only the fds it is given), restarts a worker that dies
 * (only that one) with exponential backoff and a restart-intensity limit, and stops them in
 * reverse start order with a deadline, then SIGKILL. Signals reach it as libuv events:
 * TERM/INT graceful stop, QUIT immediate stop, HUP reload, USR1 reopen the log file. It
 * never opens LMDB and never takes a lock in shared memory.
 */
#ifndef KD_SUPERVISOR_H
#define KD_SUPERVISOR_H

#include <stdint.h>

struct sup_options {
    const char *instance;
    const char *run_dir;
    const char *log_file;      /* NULL: stderr */
    unsigned restart_max;      /* more than this many restarts of one role ... */
    unsigned restart_window_s; /* ... within this many seconds stops the daemon */
    unsigned stop_timeout_ms;  /* graceful stop deadline before SIGKILL */
    uint64_t ring_capacity;    /* bytes per ring, power of two; 0: default */
};

/* Fills the defaults: 5 restarts in 60 s, 10 s stop deadline. */
void sup_options_defaults(struct sup_options *opt);

/*
 * Runs the supervisor until it is stopped. Returns the process exit code: 0 after a clean
 * stop, 1 for a runtime failure (instance already running, restart intensity exceeded, a
 * failed system call), after logging the reason.
 */
int sup_run(const struct sup_options *opt);

#endif
