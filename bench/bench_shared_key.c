/*
 * bench_shared_key.c: two instances of the daemon sharing one key. Usage:
 *
 *   bench_shared_key BUILD_DIR      (runs BUILD_DIR/kdeals and BUILD_DIR/kdeals-sim)
 *
 * One kdeals-sim on a 5/min plan at 600x time (--minute-ms 100 --refill-rate 5, bucket 60
 * minutes, starting empty so that no refill is lost while the daemons start), and two daemons
 * with the same key for two marketplaces: instance a (domain 1, [tokens] weight 2) and
 * instance b (domain 3, weight 1), each with its own store and default config but for
 * bench_pipeline's selection (deals on Used, 10-100 % below the 90-day average). The window
 * runs from the moment both are spending for BENCH_SHARED_KEY_MINUTES Keepa minutes (default
 * 1440: a simulated day, 144 s). Figures, as `BENCH <name> <value> <unit>`:
 *
 *   pipeline.shared_key.utilisation   tokens the simulator charged over the window / what the
 *                                     plan offered in it (the balance at the start, plus every
 *                                     refill, those the cap cut off included); over 100 % when
 *                                     the window ends in debt
 *   pipeline.shared_key.http_429      429 answers over the whole run (target 0)
 *   pipeline.shared_key.share.a/b     each instance's part of what both were charged (their
 *                                     tokens_spent + tokens_lost counters), %
 *   pipeline.shared_key.share_error.a/b   share - weight share, percentage points
 *   pipeline.shared_key.tokens.a/b    tokens each was charged in the window
 *
 * With BENCH_SHARED_KEY_KILL=S instance b is killed with -9 (supervisor and workers) every S
 * seconds and restarted, and the figures are printed under pipeline.shared_key_kill.*: the
 * share then measures what b could spend while it was up. The simulator's seed and catalog:
 * BENCH_SHARED_KEY_SEED (default 1), BENCH_SHARED_KEY_PRODUCTS (default 20000). When the
 * simulator knows --economy, the rich economy is used: these figures are about tokens.
 * Nothing is asserted.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "base/clock.h"
#include "base/key.h"
#include "bench/util.h"
#include "shm/counters.h"
#include "shm/keyseg.h"
#include "shm/segment.h"

#define MINUTE_MS 100

/* ---- the simulator ----------------------------------------------------------------------- */

/* Starts ARGV with stdout and stderr to LOG; it dies with us. */
static pid_t spawn(char *const argv[], const char *log)
{
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    int out = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
    int devnull = open("/dev/null", O_RDONLY);
    if (out < 0 || devnull < 0)
        _exit(127);
    dup2(devnull, 0);
    dup2(out, 1);
    dup2(out, 2);
    execv(argv[0], argv);
    _exit(127);
}

/* True when the simulator at SIM takes --economy (the calibrated economy's branch). */
static bool sim_has_economy(const char *sim)
{
    char cmd[PATH_MAX + 32];
    snprintf(cmd, sizeof(cmd), "'%s' --help 2>&1", sim);
    FILE *p = popen(cmd, "r");
    if (p == NULL)
        return false;
    char line[512];
    bool has = false;
    while (fgets(line, sizeof(line), p) != NULL)
        has |= strstr(line, "--economy") != NULL;
    pclose(p);
    return has;
}

/* ---- the daemons ------------------------------------------------------------------------- */

struct daemon {
    char dir[PATH_MAX];
    char conf[PATH_MAX + 32];
    char log[PATH_MAX + 32];
    char instance[48];
    pid_t pid;
};

static int daemon_config(struct daemon *d, const char *root, const char *tag, int port,
                         const char *key_path, int domain, int weight)
{
    snprintf(d->dir, sizeof(d->dir), "%s/%s", root, tag);
    mkdir(d->dir, 0700);
    snprintf(d->conf, sizeof(d->conf), "%s/kdeals.conf", d->dir);
    snprintf(d->log, sizeof(d->log), "%s/kdeals.log", d->dir);
    snprintf(d->instance, sizeof(d->instance), "bench%d%s", (int)getpid(), tag);
    /* bench_pipeline's selection (a feed the first pass does not finish in a day), for this
     * instance's marketplace. */
    char sel[PATH_MAX + 32];
    snprintf(sel, sizeof(sel), "%s/selection.json", d->dir);
    int rc = bu_write_file(sel, 0600,
                           "{\"domainId\":%d,\"priceTypes\":[2],\"dateRange\":3,\"sortType\":4,"
                           "\"isRangeEnabled\":true,\"deltaPercentRange\":[10,100]}\n",
                           domain);
    if (rc != 0)
        return rc;
    return bu_write_file(d->conf, 0600,
                         "[keepa]\nbase_url = http://127.0.0.1:%d\nkey_file = %s\ndomain = %d\n\n"
                         "[daemon]\ninstance = %s\nrun_dir = %s\nstop_timeout = 20s\n\n"
                         "[store]\npath = %s/store\nmap_size_mb = 256\n\n"
                         "[tokens]\nminute = %dms\nweight = %d\n\n[scan]\nselection_file = %s\n",
                         port, key_path, domain, d->instance, d->dir, d->dir, MINUTE_MS, weight,
                         sel);
}

static int daemon_start(struct daemon *d, const char *kdeals)
{
    char *argv[] = {(char *)kdeals, "run", "-c", d->conf, NULL};
    d->pid = spawn(argv, d->log);
    if (d->pid < 0)
        return -errno;
    for (int64_t end = bu_mono_ms() + 30000; bu_mono_ms() < end; bu_sleep_ms(20)) {
        struct shm_status st;
        if (shm_status_read(d->dir, d->instance, &st) == 0 && st.pid == d->pid && st.locked &&
            strcmp(st.state, "running") == 0)
            return 0;
        if (waitpid(d->pid, NULL, WNOHANG) == d->pid)
            break;
    }
    fprintf(stderr, "bench_shared_key: %s did not start (see %s)\n", d->instance, d->log);
    return -1;
}

static void daemon_stop(struct daemon *d)
{
    if (d->pid <= 0)
        return;
    kill(d->pid, SIGTERM);
    for (int64_t end = bu_mono_ms() + 40000; bu_mono_ms() < end; bu_sleep_ms(20))
        if (waitpid(d->pid, NULL, WNOHANG) == d->pid) {
            d->pid = 0;
            return;
        }
    kill(d->pid, SIGKILL);
    waitpid(d->pid, NULL, 0);
    d->pid = 0;
}

/* Kills every process of D with -9 and reaps its supervisor. */
static void daemon_kill(struct daemon *d)
{
    struct shm_segment seg;
    char err[256];
    if (shm_segment_attach(&seg, d->instance, SHM_READ_ONLY, err, sizeof(err)) == 0) {
        for (int r = SHM_ROLE_SCANNER; r < SHM_ROLE_COUNT; r++) {
            int64_t pid = atomic_load(&seg.layout->procs[r].pid);
            if (pid > 0)
                kill((pid_t)pid, SIGKILL);
        }
        shm_segment_detach(&seg);
    }
    kill(d->pid, SIGKILL);
    waitpid(d->pid, NULL, 0);
    d->pid = 0;
}

/* What instance D was charged so far (its counters), or -1 when it is not running. */
static int64_t charged(const struct daemon *d)
{
    struct shm_segment seg;
    char err[256];
    if (shm_segment_attach(&seg, d->instance, SHM_READ_ONLY, err, sizeof(err)) != 0)
        return -1;
    int64_t n = shm_counter_total(seg.layout, SHM_C_tokens_spent) +
                shm_counter_total(seg.layout, SHM_C_tokens_lost);
    shm_segment_detach(&seg);
    return n;
}

static void bench(const char *prefix, const char *name, double v, const char *unit)
{
    bool whole = strcmp(unit, "tokens") == 0 || strcmp(unit, "answers") == 0;
    printf("BENCH pipeline.%s.%s %.*f %s\n", prefix, name, whole ? 0 : 2, v, unit);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: bench_shared_key BUILD_DIR\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    long minutes = bu_env_long("bench_shared_key", "BENCH_SHARED_KEY_MINUTES", 1440, 10, 100000);
    long kill_every_s = bu_env_long("bench_shared_key", "BENCH_SHARED_KEY_KILL", 0, 0, 3600);
    long seed = bu_env_long("bench_shared_key", "BENCH_SHARED_KEY_SEED", 1, 0, LONG_MAX);
    long products =
        bu_env_long("bench_shared_key", "BENCH_SHARED_KEY_PRODUCTS", 20000, 1, 100000000);
    const char *prefix = kill_every_s > 0 ? "shared_key_kill" : "shared_key";
    char sim_bin[PATH_MAX], kdeals[PATH_MAX];
    snprintf(sim_bin, sizeof(sim_bin), "%s/kdeals-sim", argv[1]);
    snprintf(kdeals, sizeof(kdeals), "%s/kdeals", argv[1]);
    if (access(sim_bin, X_OK) != 0 || access(kdeals, X_OK) != 0) {
        fprintf(stderr, "bench_shared_key: %s or %s is not built\n", sim_bin, kdeals);
        return 1;
    }
    char root[] = "/tmp/bench_shared_key.XXXXXX";
    if (mkdtemp(root) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    CURL *curl = curl_easy_init();

    /* A key of this run: its bucket is nobody else's. */
    char key[64], key_path[PATH_MAX + 16], port_file[PATH_MAX + 16], sim_log[PATH_MAX + 16];
    snprintf(key, sizeof(key), "BenchSharedKey%d", (int)getpid());
    snprintf(key_path, sizeof(key_path), "%s/key", root);
    snprintf(port_file, sizeof(port_file), "%s/sim.port", root);
    snprintf(sim_log, sizeof(sim_log), "%s/sim.log", root);
    bu_write_file(key_path, 0600, "%s\n", key);
    char seed_s[32], products_s[32];
    snprintf(seed_s, sizeof(seed_s), "%ld", seed);
    snprintf(products_s, sizeof(products_s), "%ld", products);
    char *sargv[24] = {sim_bin,         "--port-file", port_file,        "--quiet",
                       "--keys",        key,           "--minute-ms",    "100",
                       "--refill-rate", "5",           "--start-tokens", "0",
                       "--seed",        seed_s,        "--products",     products_s};
    int n = 16;
    if (sim_has_economy(sim_bin)) {
        sargv[n++] = "--economy";
        sargv[n++] = "rich";
    }
    sargv[n] = NULL;
    pid_t sim = spawn(sargv, sim_log);
    int port = 0;
    for (int64_t end = bu_mono_ms() + 20000; bu_mono_ms() < end && port <= 0; bu_sleep_ms(20)) {
        FILE *f = fopen(port_file, "r");
        if (f != NULL) {
            if (fscanf(f, "%d", &port) != 1)
                port = 0;
            fclose(f);
        }
    }
    struct daemon a, b;
    memset(&a, 0, sizeof(a));
    memset(&b, 0, sizeof(b));
    int rc = port > 0 ? 0 : -1;
    if (rc == 0)
        rc = daemon_config(&a, root, "a", port, key_path, 1, 2);
    if (rc == 0)
        rc = daemon_config(&b, root, "b", port, key_path, 3, 1);
    if (rc == 0)
        rc = daemon_start(&a, kdeals);
    if (rc == 0)
        rc = daemon_start(&b, kdeals);
    /* Both spending: the window starts. */
    for (int64_t end = bu_mono_ms() + 30000; rc == 0 && bu_mono_ms() < end; bu_sleep_ms(50))
        if (charged(&a) > 0 && charged(&b) > 0)
            break;
    if (rc != 0) {
        fprintf(stderr, "bench_shared_key: set-up failed (folder %s kept)\n", root);
        daemon_stop(&a);
        daemon_stop(&b);
        kill(sim, SIGTERM);
        waitpid(sim, NULL, 0);
        return 1;
    }
    struct bu_ledger l0 = bu_ledger_read(curl, port);
    int64_t a0 = charged(&a), b0 = charged(&b);
    int64_t b_done = 0; /* what earlier incarnations of b were charged in the window */
    int kills = 0;
    int64_t start = bu_mono_ms(), end = start + minutes * MINUTE_MS;
    int64_t next_kill = kill_every_s > 0 ? start + kill_every_s * 1000 : INT64_MAX;
    while (bu_mono_ms() < end) {
        bu_sleep_ms(end - bu_mono_ms() < 200 ? end - bu_mono_ms() : 200);
        if (bu_mono_ms() >= next_kill && bu_mono_ms() < end) {
            int64_t before = charged(&b);
            if (before >= 0)
                b_done += before - b0;
            daemon_kill(&b);
            kills++;
            if (daemon_start(&b, kdeals) != 0)
                break;
            b0 = 0; /* a new incarnation counts from 0 */
            next_kill = bu_mono_ms() + kill_every_s * 1000;
        }
    }
    struct bu_ledger l1 = bu_ledger_read(curl, port);
    int64_t da = charged(&a) - a0, db = b_done + charged(&b) - b0;
    daemon_stop(&a);
    daemon_stop(&b);
    struct bu_ledger l2 = bu_ledger_read(curl, port);
    kill(sim, SIGTERM);
    waitpid(sim, NULL, 0);

    double offered = (double)(l0.left + (l1.earned - l0.earned) + (l1.expired - l0.expired));
    double use = offered > 0 ? 100.0 * (double)(l1.consumed - l0.consumed) / offered : NAN;
    double share_a = da + db > 0 ? 100.0 * (double)da / (double)(da + db) : NAN;
    printf("-- two instances, one key: 5/min plan, %ld Keepa minutes at %d ms (%.0f s), weights "
           "2 (a) and 1 (b)%s\n",
           minutes, MINUTE_MS, (double)minutes * MINUTE_MS / 1000.0,
           kills > 0 ? ", b killed with -9 every few seconds" : "");
    if (kills > 0)
        printf("   instance b killed and restarted %d times\n", kills);
    bench(prefix, "utilisation", use, "%");
    bench(prefix, "http_429", (double)l2.http_429, "answers");
    bench(prefix, "tokens.a", (double)da, "tokens");
    bench(prefix, "tokens.b", (double)db, "tokens");
    bench(prefix, "share.a", share_a, "%");
    bench(prefix, "share.b", 100.0 - share_a, "%");
    bench(prefix, "share_error.a", share_a - 200.0 / 3.0, "points");
    bench(prefix, "share_error.b", (100.0 - share_a) - 100.0 / 3.0, "points");

    char cmd[PATH_MAX + 16];
    if (getenv("BENCH_SHARED_KEY_KEEP") == NULL) {
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
        if (system(cmd) != 0)
            fprintf(stderr, "bench_shared_key: could not remove %s\n", root);
    } else {
        printf("   folders kept in %s\n", root);
    }
    /* A key segment left by a daemon killed at the very end. */
    char fp[KD_KEY_FP_LEN + 1], name[64];
    if (kd_key_fingerprint(key, fp) == 0) {
        ks_name(fp, name, sizeof(name));
        shm_unlink(name);
    }
    curl_easy_cleanup(curl);
    curl_global_cleanup();
    return 0;
}
