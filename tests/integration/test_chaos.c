/*
 * test_chaos.c: the whole daemon under chaos against a faulty kdeals-sim (short form).
 *
 * The simulator injects latency (0-30 ms), 500s, connection resets, truncated and malformed
 * bodies for the whole run, plus a 429 storm switched on at run time. Meanwhile the test:
 *
 *   * kills -9 workers round-robin (scanner, committer, updater; >= 50 kills), waiting for
 *     each restart; at most 3 kills per role per supervisor, so the restart-intensity limit
 *     (more than 5 restarts of one role in 60 s stops the daemon) is never reached;
 *   * kills -9 the supervisor 5 times, each followed by a new `kdeals run` of the same
 *     config: the orphaned workers must exit by themselves (the test is their subreaper, so
 *     it reaps them and sees them go), the stale segment is replaced by a new generation, and
 *     the pending work left behind is picked up again;
 *   * sends 100 SIGHUPs within a second to the supervisor: it survives and still answers
 *     `kdeals reload`;
 *   * reloads two broken configs: `kdeals reload` exits 2, the daemon keeps running with the
 *     old config (the config slot generation does not move), and a restored config reloads.
 *
 * After each disturbance and at the end it asserts the invariants: every peeked survivor is
 * a stored deal or still pending, every stored record decodes, mdb_stat opens the store
 * (kdh_check_store, on a live snapshot); every ring has head <= tail <= head + capacity;
 * COUNTER entries summed over roles never go backwards within a generation (sampled after
 * every kill and every 200 ms in the final window); no process of this instance and no
 * zombie child remains at the end, and the status file shows no live holder; the resident
 * memory of each worker stays flat over the final window.
 *
 * What the memory check can and cannot catch: it compares VmRSS of the same worker process
 * sampled early and late in a ~20 s window (late <= 3 x early + 20 MiB). That catches a gross
 * leak on a hot path (e.g. a response body or a batch leaked per request at the rates this
 * test drives) but not a slow leak of a few bytes per request, nor growth that only appears
 * over hours; ASan's leak checker and the unit tests cover the small ones. Under ASan the
 * bound also allows for its 256 MiB quarantine of freed memory, so there it is much weaker.
 */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/clock.h"
#include "kd_harness.h"
#include "kd_test.h"
#include "shm/counters.h"
#include "store/store.h"

/* Under ASan freed memory sits in a quarantine (256 MiB by default; the workers get a clean
 * environment, so ASAN_OPTIONS cannot shrink it): there the RSS bound only catches a leak
 * larger than that. */
#if defined(__SANITIZE_ADDRESS__)
#define KD_ASAN_QUARANTINE_KB (256L * 1024)
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define KD_ASAN_QUARANTINE_KB (256L * 1024)
#endif
#endif
#ifndef KD_ASAN_QUARANTINE_KB
#define KD_ASAN_QUARANTINE_KB 0L
#endif

#define KEY       "ChaosTestKey0123456789abcdef"
#define MINUTE_MS 100
#define FAULTS    "latency_ms=0-30,http500=0.05,reset=0.03,truncate=0.03,malformed=0.03"
/* The first supervisor and 5 successors after kill -9; KD_CHAOS_GENERATIONS=N runs the long
 * form (e.g. 112: 111 supervisor kills and 999 worker kills, about 17 minutes). */
#define GENERATIONS            chaos_generations()
#define KILLS_PER_ROLE_PER_GEN 3

static int chaos_generations(void)
{
    const char *e = getenv("KD_CHAOS_GENERATIONS");
    int n = e != NULL ? atoi(e) : 0;
    return n >= 2 ? n : 6;
}

static const char *const sim_args[] = {
    "--keys",        KEY,  "--seed",   "23",   "--products", "5000", "--minute-ms", "100",
    "--refill-rate", "20", "--faults", FAULTS, NULL};

struct chaos {
    struct kdh_sim sim;
    struct kdh_daemon d;
    struct shm_segment seg;
    struct kdh_counter_sample counters;
    unsigned kills[SHM_ROLE_COUNT];
    unsigned sup_kills, hups, bad_reloads;
    uint64_t rng;
};

static unsigned next_rand(struct chaos *c, unsigned mod)
{
    c->rng ^= c->rng << 13, c->rng ^= c->rng >> 7, c->rng ^= c->rng << 17;
    return (unsigned)(c->rng % mod);
}

static int64_t worker_pid(const struct chaos *c, int role)
{
    return atomic_load(&c->seg.layout->procs[role].pid);
}

static int supervisor_alive(const struct chaos *c)
{
    return c->d.pid > 0 && waitpid(c->d.pid, NULL, WNOHANG) == 0;
}

static void check_all(struct chaos *c, const char *after)
{
    if (!supervisor_alive(c))
        fail_msg("the daemon died after %s (see %s)", after, c->d.log);
    kdh_check_rings(&c->seg);
    kdh_check_counters(&c->seg, &c->counters);
    kdh_check_store(&c->d, NULL);
}

static void start_daemon(struct chaos *c)
{
    kdh_daemon_start(&c->d);
    kdh_daemon_attach(&c->d, &c->seg);
    for (int r = SHM_ROLE_SCANNER; r < SHM_PIPELINE_ROLES; r++)
        if (!KDH_WAIT_FOR(worker_pid(c, r) > 0, 20))
            fail_msg("%s did not start (see %s)", shm_role_name((enum shm_role)r), c->d.log);
}

/* Kills the worker of ROLE with SIGKILL and waits for the supervisor to restart it. */
static void kill_worker(struct chaos *c, int role)
{
    int64_t pid = 0;
    if (!KDH_WAIT_FOR((pid = worker_pid(c, role)) > 0, 20))
        fail_msg("no %s to kill (see %s)", shm_role_name((enum shm_role)role), c->d.log);
    assert_int_equal(kill((pid_t)pid, SIGKILL), 0);
    c->kills[role]++;
    if (!KDH_WAIT_FOR(worker_pid(c, role) != pid && worker_pid(c, role) > 0, 20))
        fail_msg("%s was not restarted after kill -9 (see %s)", shm_role_name((enum shm_role)role),
                 c->d.log);
    kdh_check_rings(&c->seg);
    kdh_check_counters(&c->seg, &c->counters);
}

/* True once PID (an orphan re-parented to this test, its subreaper) has exited. */
static int reaped(pid_t pid)
{
    pid_t r = waitpid(pid, NULL, WNOHANG);
    return r == pid || (r < 0 && errno == ECHILD && kill(pid, 0) != 0);
}

/* kill -9 of the supervisor, then a new `kdeals run` of the same config. */
static void kill_supervisor(struct chaos *c, struct st_key *left, unsigned *n_left)
{
    pid_t old[SHM_ROLE_COUNT] = {0};
    for (int r = SHM_ROLE_SCANNER; r < SHM_PIPELINE_ROLES; r++)
        old[r] = (pid_t)worker_pid(c, r);
    uint64_t gen = c->seg.layout->header.generation;
    assert_int_equal(kill(c->d.pid, SIGKILL), 0);
    assert_int_equal(waitpid(c->d.pid, NULL, 0), c->d.pid);
    c->d.pid = 0;
    c->sup_kills++;
    /* Its workers are now ours (subreaper): each must notice and exit by itself. */
    for (int r = SHM_ROLE_SCANNER; r < SHM_PIPELINE_ROLES; r++)
        if (old[r] > 0 && !KDH_WAIT_FOR(reaped(old[r]), 30))
            fail_msg("%s pid %d outlived its supervisor by 30 s", shm_role_name((enum shm_role)r),
                     (int)old[r]);
    shm_segment_detach(&c->seg);
    /* What they left pending must be picked up by the next generation. */
    unsigned n = kdh_pending_keys(&c->d, left + *n_left, 512 - *n_left);
    *n_left += n < 512 - *n_left ? n : 512 - *n_left;
    start_daemon(c);
    /* The stale segment was replaced by a new generation owned by the new supervisor. */
    assert_true(c->seg.layout->header.generation > gen);
    assert_int_equal(c->seg.layout->header.supervisor_pid, c->d.pid);
    c->counters.have = 0;
    kdh_check_counters(&c->seg, &c->counters);
}

static void hup_storm(struct chaos *c)
{
    for (int i = 0; i < 100; i++) {
        assert_int_equal(kill(c->d.pid, SIGHUP), 0);
        c->hups++;
        kdh_nap_ms(9);
    }
    const char *reload[] = {"reload", NULL};
    char *out = NULL;
    int rc = kdh_cli(&c->d, reload, 30, &out);
    if (rc != 0)
        fail_msg("kdeals reload after the HUP storm exited %d: %s", rc, out);
    free(out);
    for (int r = SHM_ROLE_SCANNER; r < SHM_PIPELINE_ROLES; r++)
        assert_true(KDH_WAIT_FOR(worker_pid(c, r) > 0, 20));
}

static void bad_reloads(struct chaos *c)
{
    char *good = kd_read_file(c->d.conf, NULL);
    assert_non_null(good);
    static const char *const broken[] = {
        "\n[scan]\npeek_batch = 5000\n", /* out of range */
        "\n[keepa\nthis is not an ini line\n",
    };
    const char *reload[] = {"reload", NULL};
    for (size_t i = 0; i < sizeof(broken) / sizeof(broken[0]); i++) {
        uint64_t cfg_gen = atomic_load(&c->seg.layout->config.generation);
        FILE *f = fopen(c->d.conf, "w");
        assert_non_null(f);
        fprintf(f, "%s%s", good, broken[i]);
        fclose(f);
        char *out = NULL;
        int rc = kdh_cli(&c->d, reload, 30, &out);
        if (rc != 2)
            fail_msg("kdeals reload of a broken config exited %d, not 2: %s", rc, out);
        assert_non_null(strstr(out, "rejected"));
        free(out);
        c->bad_reloads++;
        /* The old config stays: nothing was published, and everyone is still there. */
        assert_int_equal(atomic_load(&c->seg.layout->config.generation), cfg_gen);
        assert_true(supervisor_alive(c));
    }
    FILE *f = fopen(c->d.conf, "w");
    assert_non_null(f);
    fputs(good, f);
    fclose(f);
    free(good);
    char *out = NULL;
    int rc = kdh_cli(&c->d, reload, 30, &out);
    if (rc != 0)
        fail_msg("kdeals reload of the restored config exited %d: %s", rc, out);
    free(out);
}

static long rss_kb(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    char *text = kd_read_file(path, NULL);
    long kb = -1;
    const char *p = text ? strstr(text, "VmRSS:") : NULL;
    if (p != NULL)
        kb = strtol(p + 6, NULL, 10);
    free(text);
    return kb;
}

/* No process of this instance, and no child of this test (zombie or not), remains. */
static void check_no_leftovers(const char *instance)
{
    DIR *dir = opendir("/proc");
    assert_non_null(dir);
    struct dirent *e;
    unsigned bad = 0;
    while ((e = readdir(dir)) != NULL) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9')
            continue;
        char path[300];
        snprintf(path, sizeof(path), "/proc/%s/cmdline", e->d_name);
        size_t len = 0;
        char *cmd = kd_read_file(path, &len);
        if (cmd != NULL && len > 8 && strncmp(cmd, "kdeals: ", 8) == 0) {
            for (size_t i = 0; i + 1 < len; i += strlen(cmd + i) + 1)
                if (strcmp(cmd + i, instance) == 0) {
                    fprintf(stderr, "leftover worker pid %s: %s\n", e->d_name, cmd);
                    bad++;
                    break;
                }
        }
        free(cmd);
        snprintf(path, sizeof(path), "/proc/%s/stat", e->d_name);
        char *st = kd_read_file(path, NULL);
        const char *rp = st ? strrchr(st, ')') : NULL;
        char state = 0;
        int ppid = 0;
        if (rp != NULL && sscanf(rp + 1, " %c %d", &state, &ppid) == 2 && ppid == getpid()) {
            fprintf(stderr, "leftover child pid %s in state %c\n", e->d_name, state);
            bad++;
        }
        free(st);
    }
    closedir(dir);
    assert_int_equal(bad, 0);
}

static void test_chaos_loses_nothing(void **state)
{
    (void)state;
    /* Orphaned workers come to us, so we can see them exit (and reap them). */
    assert_int_equal(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
    struct chaos c;
    memset(&c, 0, sizeof(c));
    c.rng = 0x9e3779b97f4a7c15ULL ^ (uint64_t)getpid();
    kdh_sim_start(&c.sim, sim_args);
    kdh_daemon_config(&c.d, &c.sim, KEY, MINUTE_MS, "[scan]\npass_pause = 1s\n");
    static struct st_key left[512];
    unsigned n_left = 0;
    start_daemon(&c);
    kdh_check_counters(&c.seg, &c.counters);

    for (int gen = 0; gen < GENERATIONS; gen++) {
        for (int k = 0; k < KILLS_PER_ROLE_PER_GEN * 3; k++) {
            kdh_nap_ms(100 + next_rand(&c, 400));
            kill_worker(&c, SHM_ROLE_SCANNER + k % 3);
        }
        check_all(&c, "worker kills");
        if (gen == 1) {
            hup_storm(&c);
            check_all(&c, "a HUP storm");
        } else if (gen == 2) {
            bad_reloads(&c);
            check_all(&c, "invalid reloads");
        } else if (gen == 3) {
            yajl_tree_free(kdh_sim_post(&c.sim, "/_sim/faults?spec=" FAULTS ",storm429=40"));
        }
        if (gen + 1 < GENERATIONS) {
            kill_supervisor(&c, left, &n_left);
            check_all(&c, "a supervisor kill -9");
        }
    }

    /* The final window: no more kills; memory of each worker, counters, progress. */
    int64_t committed_before = shm_counter_total(c.seg.layout, SHM_C_deals_committed);
    kdh_nap_ms(2000);
    pid_t pids[SHM_ROLE_COUNT] = {0};
    long early[SHM_ROLE_COUNT] = {0};
    for (int r = SHM_ROLE_SCANNER; r < SHM_PIPELINE_ROLES; r++) {
        pids[r] = (pid_t)worker_pid(&c, r);
        early[r] = rss_kb(pids[r]);
        assert_true(early[r] > 0);
    }
    int64_t deadline = kd_mono_ns() + 20 * KD_NS_PER_SEC;
    while (kd_mono_ns() < deadline) {
        kdh_nap_ms(200);
        kdh_check_counters(&c.seg, &c.counters);
        kdh_check_rings(&c.seg);
    }
    for (int r = SHM_ROLE_SCANNER; r < SHM_PIPELINE_ROLES; r++) {
        assert_int_equal(worker_pid(&c, r), pids[r]); /* the same, long-lived process */
        long late = rss_kb(pids[r]);
        printf("    %s VmRSS %ld kB -> %ld kB over 20 s\n", shm_role_name((enum shm_role)r),
               early[r], late);
        assert_true(late <= 3 * early[r] + 20 * 1024 + KD_ASAN_QUARANTINE_KB);
    }
    check_all(&c, "the final window");
    /* Work goes on after all that: deals are still being committed... */
    if (!KDH_WAIT_FOR(shm_counter_total(c.seg.layout, SHM_C_deals_committed) > committed_before,
                      60))
        fail_msg("no deal committed in the final window (see %s)", c.d.log);
    /* ...and what earlier generations left pending was taken up again (committed, rejected
     * or retried: its pending record changed or went away). */
    unsigned still = 0;
    if (n_left > 0) {
        struct st_key *now = calloc(4096, sizeof(*now));
        unsigned n_now = kdh_pending_keys(&c.d, now, 4096);
        for (unsigned i = 0; i < n_left; i++)
            for (unsigned j = 0; j < n_now && j < 4096; j++)
                if (memcmp(&left[i], &now[j], sizeof(left[i])) == 0) {
                    still++;
                    break;
                }
        free(now);
    }
    printf("    %u ASINs pending at supervisor kills, %u of them still pending\n", n_left, still);
    assert_true(n_left == 0 || still < n_left);

    int64_t deals = shm_counter_total(c.seg.layout, SHM_C_deals_committed);
    int64_t http_err = shm_counter_total(c.seg.layout, SHM_C_http_errors);
    int64_t h429 = shm_counter_total(c.seg.layout, SHM_C_http_429);
    int64_t expired = shm_counter_total(c.seg.layout, SHM_C_deals_expired);
    shm_segment_detach(&c.seg);
    int rc = kdh_daemon_stop(&c.d);
    if (rc != 0)
        fail_msg("kdeals run exited %d at the end (see %s)", rc, c.d.log);
    unsigned survivors = 0;
    uint64_t stored = kdh_check_store(&c.d, &survivors);
    unsigned total_kills =
        c.kills[SHM_ROLE_SCANNER] + c.kills[SHM_ROLE_COMMITTER] + c.kills[SHM_ROLE_UPDATER];
    printf("    kill -9: scanner %u, committer %u, updater %u (total %u); supervisor %u\n",
           c.kills[SHM_ROLE_SCANNER], c.kills[SHM_ROLE_COMMITTER], c.kills[SHM_ROLE_UPDATER],
           total_kills, c.sup_kills);
    printf("    SIGHUPs %u, rejected reloads %u; last generation: %lld deals committed, "
           "%lld expired, %lld HTTP errors, %lld 429s seen\n",
           c.hups, c.bad_reloads, (long long)deals, (long long)expired, (long long)http_err,
           (long long)h429);
    printf("    store: %llu deals, %u survivors peeked, none lost\n", (unsigned long long)stored,
           survivors);
    assert_true(kdh_print_faults(&c.sim) > 0);
    kdh_sim_stop(&c.sim);
    assert_true(total_kills >= 50);
    assert_true(c.sup_kills >= 5);
    assert_true(stored > 0);
    check_no_leftovers(c.d.instance);
    /* The status file agrees: no live supervisor holds the instance, it is not "running". */
    struct shm_status st;
    assert_int_equal(shm_status_read(c.d.run_dir, c.d.instance, &st), 0);
    printf("    status file after the stop: state %s, pid %lld, generation %llu, locked %d\n",
           st.state, (long long)st.pid, (unsigned long long)st.generation, (int)st.locked);
    assert_false(st.locked);
    assert_string_not_equal(st.state, "running");
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chaos_loses_nothing),
    };
    kd_test_set_timeout(290);
    return KD_RUN_TESTS(tests, argc, argv);
}
