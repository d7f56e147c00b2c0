/*
 * kd_harness.h: run the real kdeals-sim and the real daemon from a test.
 *
 * A test starts a simulator (a child process on a free loopback port, found through its port
 * file), writes a kdeals config pointing at it into its private folder, starts `kdeals run`,
 * and observes from the outside only: the simulator's ledger and oracle over HTTP, the
 * daemon's counters through a read-only mapping of its segment, and its LMDB store. Every
 * wait is for an observable condition with a deadline (KDH_WAIT_FOR), never a blind sleep.
 */
#ifndef KD_HARNESS_H
#define KD_HARNESS_H

#include <stdint.h>
#include <sys/types.h>
#include <yajl/yajl_tree.h>

#include "shm/keyseg.h"
#include "shm/layout.h"
#include "shm/segment.h"

/* The [sell] section of every daemon test config (kd_harness.c says why). */
#define KDH_JUDGEMENT                                                                              \
    "[sell]\nbasis_new = avg90, avg365\nbasis_used = avg90, avg365\ncap_at_buy_box = false\n"

void kdh_nap_ms(long ms);

/* Polls COND every 10 ms for up to SECONDS; evaluates to whether it became true. */
#define KDH_WAIT_FOR(cond, seconds)                                                                \
    ({                                                                                             \
        int ok_ = 0;                                                                               \
        for (long i_ = 0; i_ < (long)(seconds)*100; i_++) {                                        \
            if (cond) {                                                                            \
                ok_ = 1;                                                                           \
                break;                                                                             \
            }                                                                                      \
            kdh_nap_ms(10);                                                                        \
        }                                                                                          \
        ok_;                                                                                       \
    })

struct kdh_sim {
    pid_t pid;
    int port;
    char base[64]; /* http://127.0.0.1:PORT */
};

/*
 * The API key a test process uses for BASE: BASE-p<pid>. A key's token bucket is shared by
 * every process on the host that uses the key (shm/keyseg.h), and several suites run at once,
 * so every test process has keys of its own; the bucket segment of each is removed after the
 * test (kd_test_track_shm). The harness applies it itself: to the keys after --keys and
 * --expired-keys in kdh_sim_start's ARGS, and to kdh_daemon_config's KEY (every line of it).
 * The string is static (a few live at once).
 */
const char *kdh_key(const char *base);

/*
 * Starts kdeals-sim with ARGS (NULL-terminated, after the port options), waits for its port
 * file. The simulator runs the rich economy, where deals are many and quick to find; ARGS may
 * say --economy=calibrated. Fails the test when the binaries are not built.
 */
void kdh_sim_start(struct kdh_sim *sim, const char *const *args);
void kdh_sim_stop(struct kdh_sim *sim);

/* GET (or POST) a control or API path; returns the parsed JSON (yajl_tree_free it). */
yajl_val kdh_sim_get(const struct kdh_sim *sim, const char *path);
yajl_val kdh_sim_post(const struct kdh_sim *sim, const char *path);

/* Integer at a path of object keys (NULL-terminated); fails the test when absent. */
int64_t kdh_jint(yajl_val v, ...);

/* One ledger integer: kdh_sim_stat(sim, "http_429", NULL) or ("endpoints", "token", "requests"). */
int64_t kdh_sim_stat(const struct kdh_sim *sim, ...);

struct kdh_daemon {
    char key[512]; /* what the key file holds (kdh_key of the test's key: one a line) */
    char dir[512];
    char conf[600];
    char store[600];
    char run_dir[600];
    char log[600];
    char instance[64];
    pid_t pid;
};

/*
 * Writes a config for a daemon talking to SIM (key file mode 0600 holding kdh_key(KEY), or of
 * each line of KEY, a unique instance, run_dir/store/log inside the test folder, [tokens]
 * minute = MINUTE_MS) followed by the INI text EXTRA (may be NULL). Sections in EXTRA may
 * repeat none of the ones written here except by adding keys the base does not set.
 */
void kdh_daemon_config(struct kdh_daemon *d, const struct kdh_sim *sim, const char *key,
                       int minute_ms, const char *extra);

/* Writes D's config again (same folder, store and instance) with EXTRA, atomically, e.g.
 * before a reload. */
void kdh_daemon_rewrite(struct kdh_daemon *d, const struct kdh_sim *sim, const char *key,
                        int minute_ms, const char *extra);

/* Starts `kdeals run -c CONF` and waits until the status file says running. */
void kdh_daemon_start(struct kdh_daemon *d);

/* SIGTERM and wait; returns the exit status (wait status decoded: 0..255, 128+signal). */
int kdh_daemon_stop(struct kdh_daemon *d);

/* Attaches read-only to the daemon's segment. */
void kdh_daemon_attach(const struct kdh_daemon *d, struct shm_segment *seg);

/*
 * Attaches read-only to the token bucket of the daemon's key number I (0: the first line of
 * its key file), waiting up to 10 s for it to exist. Returns the bucket; ks_close(KS) after.
 */
const struct shm_tokens *kdh_daemon_bucket(const struct kdh_daemon *d, unsigned i,
                                           struct ks_segment *ks);

/* True when the daemon's log contains NEEDLE. */
int kdh_log_contains(const struct kdh_daemon *d, const char *needle);

/*
 * Invariants of the daemon's LMDB store, valid while it runs (one read snapshot) or after it
 * stopped: every ASIN seen with verdict SURVIVOR is a stored deal or still pending (paid-for
 * work is never lost), every deal, pending and seen record decodes (cursors end with
 * -ENOENT), and `mdb_stat -a` opens the store. Returns the number of deals; the number of
 * survivors goes to *SURVIVORS when not NULL. With KDH_KEEP=DIR in the environment, a lost
 * survivor makes it copy the daemon's folder (log, store) to DIR first, for a post-mortem.
 */
uint64_t kdh_check_store(const struct kdh_daemon *d, unsigned *survivors);

/*
 * The pending db of the daemon's store now, in one read snapshot: the keys of its first MAX
 * records go to KEYS (when not NULL); returns how many records there are.
 */
struct st_key;
unsigned kdh_pending_keys(const struct kdh_daemon *d, struct st_key *keys, unsigned max);

/*
 * How many records of the daemon's store were due for a re-check at or before AT_MS (epoch
 * ms), by its schedule, in one read snapshot; at most 64.
 */
unsigned kdh_schedule_due(const struct kdh_daemon *d, int64_t at_ms);

/* Prints the simulator's faults_injected counts on one line; returns their total. */
long long kdh_print_faults(const struct kdh_sim *sim);

/* Every ring of SEG: head <= tail and tail - head <= capacity (a byte ring may be exactly full). */
void kdh_check_rings(const struct shm_segment *seg);

/*
 * Counters never go backwards within a generation: each COUNTER entry summed over roles is
 * >= its previous sample while SEG's generation is the one sampled before. M starts zeroed.
 */
struct kdh_counter_sample {
    int have;
    uint64_t generation;
    int64_t v[SHM_COUNTER_COUNT];
};
void kdh_check_counters(const struct shm_segment *seg, struct kdh_counter_sample *m);

/* The learned figure NAME as `kdeals stat -c CONF --json` shows it (its "value" object); -1 when
 * the command fails or does not show it. */
int64_t kdh_stat_value(const char *conf, const char *name);

/*
 * Runs `kdeals ARGV... -c CONF` (ARGV NULL-terminated, e.g. {"reload", NULL}), waits up to
 * TIMEOUT_S seconds (then kills it and returns -1). Returns the exit status (128+signal when
 * killed by one); stdout and stderr together go to *OUT when not NULL (free it).
 */
int kdh_cli(const struct kdh_daemon *d, const char *const *argv, int timeout_s, char **out);

#endif
