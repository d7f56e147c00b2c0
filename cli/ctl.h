/*
 * ctl.h: operator commands that act on a running daemon: start, stop, reload, status.
 *
 * They find the daemon through the instance's status file (pid, state, and whether a live
 * supervisor holds its lock) and its shared memory segment, never through a pid guess, and
 * read the store through a read-only snapshot.
 */
#ifndef KD_CLI_CTL_H
#define KD_CLI_CTL_H

#include "base/config.h"
#include "supervisor/supervisor.h"

/*
 * `kdeals start [--wait]`: daemonises a supervisor with OPT. With WAIT, returns once every
 * worker is ready (0), or 1 with the reason when the daemon failed to come up.
 */
int cli_start(struct sup_options *opt, int wait, int timeout_s);

/* `kdeals stop [--fast]`: graceful stop (TERM) or immediate (QUIT); waits for the exit. */
int cli_stop(const struct cfg *c, const char *instance, const char *run_dir, int fast);

/* `kdeals reload`: HUP, then waits for and prints the verdict. 0 applied, 2 rejected. */
int cli_reload(const struct cfg *c, const char *instance, const char *run_dir);

/* `kdeals status [--json]`. 0 running, 1 not running (or broken). */
int cli_status(const struct cfg *c, const char *instance, const char *run_dir, int json);

#endif
