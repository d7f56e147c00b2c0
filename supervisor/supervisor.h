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
 *
 * Config: the supervisor alone reads the file. It publishes the validated config (without
 * the API key) in the segment's config slot; workers load it from there, never from the file,
 * which may have changed again. On HUP it re-reads and validates the file: an invalid file
 * keeps the running config and the error is logged and left in the slot's reload verdict;
 * a valid one is published, the workers get HUP, and keys that need a restart are named.
 *
 * How a worker is started (argv, the descriptors, the environment) is worker/spawn.h. The API
 * key reaches each worker through a pipe the worker reads once at start: never argv, the
 * environment, the segment or a file the worker opens. Processes that hold the key are not
 * dumpable (no core file, no /proc/PID/environ for other users).
 */
#ifndef KD_SUPERVISOR_H
#define KD_SUPERVISOR_H

#include <stdint.h>

#include "base/config.h"

struct sup_options {
    const char *config_path; /* the file HUP re-reads; NULL: defaults only, no reload */
    struct cfg cfg;          /* the validated config to start with */
    const char *instance;
    const char *run_dir;
    const char *log_file;      /* NULL: stderr */
    unsigned restart_max;      /* more than this many restarts of one role ... */
    unsigned restart_window_s; /* ... within this many seconds stops the daemon */
    unsigned stop_timeout_ms;  /* graceful stop deadline before SIGKILL */
    uint64_t ring_capacity;    /* bytes per ring, power of two; 0: default */
    /* The checkers of the config's named sections ([view.NAME], ...), applied to a reloaded
     * file as `kdeals` applies them at start (cfg_named_check); none when 0. */
    const struct cfg_named_checker *const *named_checkers;
    size_t n_named_checkers;
};

/* Fills the defaults: config defaults, 5 restarts in 60 s, 10 s stop deadline. */
void sup_options_defaults(struct sup_options *opt);

/*
 * Runs the supervisor until it is stopped. Returns the process exit code: 0 after a clean
 * stop, 1 for a runtime failure (instance already running, restart intensity exceeded, a
 * failed system call), after logging the reason.
 */
int sup_run(const struct sup_options *opt);

#endif
