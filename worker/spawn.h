/*
 * spawn.h: how the supervisor starts a worker: the one contract both sides include.
 *
 * The supervisor (supervisor/supervisor.c) fork+execs its own binary with
 *
 *     argv:  TITLE "worker" ROLE "--instance" NAME ["--log-file" FILE]
 *     fds:   0, 1, 2                 the supervisor's stdin, stdout and stderr
 *            WK_FD_WAKE(ring)        the eventfd of ring RING (enum shm_ring_id), one per ring
 *            WK_FD_KEY               read end of a pipe holding the API keys, one a line (no
 *                                    key: empty), then end of file; the worker reads it once
 *                                    and closes it
 *            WK_FD_SEGMENT           the instance's shared memory segment, read-write
 *            WK_FD_STORE_LOCK        the store lock (supervisor/storelock.h): the worker keeps it
 *                                    open, untouched, until it exits, so the store stays locked
 *                                    while any worker of the instance runs
 *     env:   WK_SPAWN_ENV only (no key, no config path)
 *     exe:   the supervisor's own running image (/proc/self/exe opened at its start), never
 *            the path on disk, so an upgraded or removed binary cannot start a worker that
 *            does not match the segment
 *
 * and nothing else inherited: every other fd of the supervisor is close-on-exec, and the
 * worker closes any fd above WK_FD_STORE_LOCK it finds at start (one inherited from whoever
 * started the supervisor). The worker uses the segment it was handed, so a segment whose name
 * was removed under the running daemon still works. TITLE is "kdeals: ROLE", what ps shows. ROLE is
 * a role name of shm/layout.h ("scanner", "committer", "updater") and NAME the instance whose
 * segment the worker attaches (shm/segment.h). The worker reads everything else (the config) from
 * the segment, never from the config file, which may have changed since the supervisor validated
 * it. The worker runtime (worker/worker.h) is the other side: `kdeals worker ROLE ...` reaches
 * wk_main().
 */
#ifndef KD_WORKER_SPAWN_H
#define KD_WORKER_SPAWN_H

#include "shm/layout.h"

/* argv[1] of a worker, and the option names that follow the role. */
#define WK_SPAWN_COMMAND      "worker"
#define WK_SPAWN_OPT_INSTANCE "--instance"
#define WK_SPAWN_OPT_LOG_FILE "--log-file"

/* The inherited descriptors. */
#define WK_FD_FIRST_WAKE 3
#define WK_FD_WAKE(ring) (WK_FD_FIRST_WAKE + (int)(ring))
#define WK_FD_KEY        (WK_FD_FIRST_WAKE + SHM_RING_COUNT)
#define WK_FD_SEGMENT    (WK_FD_KEY + 1)
#define WK_FD_STORE_LOCK (WK_FD_SEGMENT + 1)
#define WK_FD_COUNT      (WK_FD_STORE_LOCK + 1) /* stdio and every fd above: 0..WK_FD_STORE_LOCK */

/*
 * The exit status of a worker that cannot run at all, whatever the number of restarts (its
 * store cannot be opened: truncated, not a kdeals store, newer, unreadable): the supervisor
 * does not restart it but stops the daemon with the worker's reason. Any other failure exits
 * 1 and is restarted with backoff.
 */
#define WK_EXIT_CANNOT_RUN 78

/* The most key bytes the pipe carries (every key and its newline); the worker reads at most
 * this much. */
#define WK_KEY_MAX 1280

/* The whole environment of a worker. */
#define WK_SPAWN_ENV "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

#endif
