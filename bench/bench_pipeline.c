/*
 * bench_pipeline.c: the whole daemon against kdeals-sim. Usage:
 *
 *   bench_pipeline BUILD_DIR      (runs BUILD_DIR/kdeals, kdeals-sim and bench_legacy)
 *
 * Every scenario starts a fresh simulator (--port 0, --port-file, --quiet) and a fresh daemon
 * (`kdeals run -c FILE` with a config written into a private temp folder: [tokens] minute =
 * the simulator's --minute-ms, [keepa] base_url, a 0600 key_file, store, run_dir, a unique
 * instance). Figures come from the simulator's ledger (GET /_sim/stats), the daemon's
 * counters (its shm segment attached read-only), its LMDB store and /proc. Every figure is
 * printed as `BENCH <name> <value> <unit>`; nothing is asserted.
 *
 * (a) Unlimited tokens (huge --start-tokens and --refill-rate; [scan] pass_pause = 0 and
 *     dedup_window = 0 so the scanner never idles). After the workers are ready and a short
 *     warm-up, a window of BENCH_PIPELINE_THROUGHPUT_S seconds (default 20) is measured:
 *       asins_per_s      /product ASINs the simulator served (peek + commit + update) / s
 *       peek/commit/update_asins_per_s   per role, from the batch_asins histogram sums
 *       cpu_us_per_asin  CPU (user + system, /proc/<pid>/stat) of the supervisor and the
 *                        three workers over the window / ASINs served over the window
 *       rss_peak.<role>  VmHWM of each process at the end of the window
 *     The simulator's own CPU is not counted in cpu_us_per_asin (sim_cpu_pct shows it: on a
 *     2-core machine the simulator and the daemon share the cores). The simulator runs at
 *     --refill-rate 30000 (the token layer's TB_RATE_MAX is 32767 per minute) from a full
 *     1.8 M bucket: 300 000 tokens per second, far more than the pipeline can spend.
 *
 * (b) A plan of BENCH_PIPELINE_RATE tokens a minute (default 5; 20 and 100 are the bigger plans)
 *     at 600x time (--minute-ms 100 --refill-rate RATE, bucket 60 minutes, starting full at
 *     60 x RATE) for BENCH_PIPELINE_MINUTES Keepa minutes (default 1440: a simulated day,
 *     144 s). Plans above 50 tokens a minute run slower by default, a Keepa minute lasting
 *     2 ms per token of the plan's minute (100/min: 200 ms, 300x, a day of 288 s): at 600x the
 *     100/min plan's 1000 tokens a second are some 200 /deal pages a second, which the day's
 *     simulator, the daemon and the two legacy runs beside it cannot all serve and read on a
 *     2-core machine (bench/README.md, "The 100/min plan at 600x"), so the day would measure
 *     the machine; at Keepa's pace the plan is 1.7 tokens a second. BENCH_PIPELINE_MINUTE_MS
 *     sets another length of a Keepa minute (100: 600x on every plan; e.g. 1000, 60x, with a
 *     shorter day, shows what a plan would spend nearer Keepa's pace). kdeals
 * runs with its default config (plus the fixed selection below), and at the same time, each against
 * its own fresh simulator with the same seed and catalog clock, two runs of bench_legacy
 * (bench/bench_legacy.c: the replaced system's policy): prefix `legacy.` walks every /deal page
 * before starting over (the variant most favourable to legacy, and the headline ratio),
 * `legacy_page0.` reads page 0 alone on every pass, as the deployed system did
 * (docs/failure-modes.md F11). For each side: Window: from just before the client starts to just
 * after it stopped (the final ledger is read after the exit, so requests in flight at the stop are
 * counted). utilisation = tokens consumed / tokens offered, where offered = the balance at the
 *         window start (the full bucket: 300) + tokens earned + tokens expired (refills the
 *         cap cut off) during the window. 100 % means every token the plan offered,
 *         including the initial bucket, was spent; what is left in the bucket at the end
 *         counts as unused, and a window that ends in debt (a batch charged past zero)
 *         reads slightly above 100 %.
 *       tokens_expired   tokens lost to a full bucket during the window.
 *       http_429         429 answers the simulator gave during the window.
 *       deals            distinct ASINs stored as deals during the run (kdeals: the deals db
 *                        is scanned every 2 s and at the end, so a deal stored then expired
 *                        still counts; legacy: its distinct deal ASINs).
 *       tokens_per_deal  tokens consumed (every endpoint, kdeals' updater included) / deals.
 *                        tokens_per_deal_acquire counts the scanner's and committer's tokens
 *                        only (daemon counters; tokens_per_deal_acquire_vs_oracle divides it
 *                        by oracle_min_tokens_per_deal); peeks_per_deal and commits_per_deal
 *                        are the ASINs each stage fetched per stored deal (batch_asins
 *                        histograms): the commit count is where most of the tokens go.
 *       oracle_min_tokens_per_deal  the least a client knowing the simulator's truth could
 *                        pay per stored deal: for each kdeals deal, one peek token plus one
 *                        commit of that ASIN alone with offers=20 (6 x max(1, ceil(min(live
 *                        offers, 20) / 10)), live offers from /_sim/product at the end), the
 *                        mean over the deals. /deal pages (5 per 150 listed) are left out.
 *       time_to_store_median  over the stored deals that the oracle (/_sim/deals with the
 *                        same selection, polled every 5 Keepa minutes) first listed after
 *                        its first poll: store time (kdeals: first_seen_ms of the record;
 *                        legacy: when it judged the deal) - the first poll that listed it,
 *                        in Keepa minutes (resolution: the poll interval; negative values
 *                        count as 0). Deals never stored do not count; oracle_listed gives
 *                        how many distinct deals the oracle listed during the run.
 *       vs_legacy_tokens_per_deal = legacy tokens per deal / kdeals tokens per deal (and
 *                        vs_legacy_page0_tokens_per_deal for the page-0 variant).
 *     The value figures, from the simulator's truth at the end of the run (the oracle endpoints
 *     of sim/README.md, "The truth"; bench/README.md, "Value figures", defines each):
 *       profit_captured  over every stretch kdeals showed a record as a deal (state DEAL, from
 *                        the store's change log): the truth's profit at the stretch's first
 *                        moment, 0 when it was not a deal then, counted once per stretch of the
 *                        truth (a deal shown, failed and shown again within one truth stretch
 *                        counts once). legacy.profit_captured: the same at each deal's first find.
 *       profit_bound     /_sim/true-deals of the run's window: taken greedily by peak profit per
 *                        fetch token until the tokens the plan offered kdeals are spent;
 *                        profit_bound_listed the same over the deals the selection's feed listed.
 *       profit_capture_pct = captured / bound; vs_legacy_profit = kdeals / legacy captured.
 *       time_to_store_top10_median  the top tenth of the listed true deals by peak profit: from
 *                        the first moment each was a deal and listed (listed_at) to the first
 *                        moment kdeals showed it after that, Keepa minutes; one never shown counts
 *                        as never (inf when more than half were never shown); the median over
 *                        those shown is time_to_store_top10_stored_median.
 *       deal_hours_per_deal, stale_hours_per_deal  Keepa hours the shown stretches overlapped the
 *                        truth's deal stretches (/_sim/timeline), and did not, per distinct ASIN
 *                        shown.
 *     Targets (the design's, not asserted): utilisation >= 98 %, zero 429s, vs_legacy >= 3;
 *     profit_capture_pct >= 60 and vs_legacy_profit >= 2 on every plan,
 *     time_to_store_top10_median <= 30 on 5/min.
 *     The daemon keeps its default config except the selection (written to a file that
 *     bench_legacy and the oracle polls use too) and [scan] pass_pause: its default of 5 minutes,
 *     written as 5 accelerated minutes (the pause is wall time; dedup_window and every other
 *     interval of the daemon are Keepa time already).
 *     BENCH_PIPELINE_CONF can switch rules of value per token off ([tokens] value_rules) to
 *     measure what each buys. The fresh rule, on by default, reads the selection below newest
 *     first (sortType 1) in place of its sortType 4, its filters unchanged; legacy and the
 *     oracle polls keep sortType 4.
 *
 * The figures depend on the simulated economy (BENCH_PIPELINE_ECONOMY: calibrated, the
 * default, whose feed is calibrated against a recorded real /deal page, or rich, where
 * deals are many and quick to find; sim/README.md), on the seed and catalog size
 * (BENCH_PIPELINE_SEED, default 1; BENCH_PIPELINE_PRODUCTS, default 20000), on the selection and
 * the [filter] defaults (what share of listed deals survive the peek and the commit), and on
 * machine load only through timing (a and the time-to-store; and b's utilisation when a big
 * plan runs at 600x, where the machine's speed limits: bench/README.md). Every simulator
 * gzips at BENCH_PIPELINE_SIM_GZIP (kdeals-sim --gzip-level, default 0 here: the bytes
 * decoded are the same, the CPU of both sides least) with BENCH_PIPELINE_SIM_THREADS threads
 * (kdeals-sim --threads, default 2). BENCH_PIPELINE_KEEP=1 keeps the temp
 * folders (logs, configs, stores) and prints their path. BENCH_PIPELINE_CONF=FILE appends FILE's
 * INI text to every config (kdeals' and legacy's alike), e.g. to try other [filter] values; the run
 * then no longer measures the defaults, and says so. BENCH_PIPELINE_ONLY=a or b runs one scenario.
 * BENCH_PIPELINE_LEARNED=STORE starts the day's daemon warm: its fresh store first gets the
 * learned state (store.h, ST_META_LEARNED_*) of the kdeals store folder STORE, e.g. the
 * day/store a BENCH_PIPELINE_KEEP=1 run of another seed kept (bench/README.md, "Warm").
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
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "base/clock.h"
#include "bench/util.h"
#include "shm/counters.h"
#include "shm/layout.h"
#include "shm/report.h"
#include "shm/segment.h"
#include "store/store.h"

#define MINUTE_MS_DEFAULT 100
/* Above 50 tokens a minute, the default Keepa minute is this many ms per token of the plan's
 * minute (see the top comment). */
#define MINUTE_MS_PER_TOKEN 2
#define POLL_KEEPA_MIN      5
#define STORE_SCAN_MS       2000
#define WARMUP_MS           2000
#define STOP_DEADLINE_MS    30000
#define SELECTION                                                                                  \
    "{\"domainId\":1,\"priceTypes\":[2],\"dateRange\":3,\"sortType\":4,\"isRangeEnabled\":true,"   \
    "\"deltaPercentRange\":[10,100]}"

/* Real ms of a Keepa minute for the whole run (BENCH_PIPELINE_MINUTE_MS; the day's scenario). */
static int64_t g_minute_ms = MINUTE_MS_DEFAULT;

static const char *const role_names[SHM_PIPELINE_ROLES] = {"supervisor", "scanner", "committer",
                                                           "updater"};

/* ---- small helpers ------------------------------------------------------------------- */

static double median(double *v, size_t n)
{
    if (n == 0)
        return NAN;
    for (size_t i = 1; i < n; i++) { /* insertion sort: a few thousand values at most */
        double x = v[i];
        size_t j = i;
        for (; j > 0 && v[j - 1] > x; j--)
            v[j] = v[j - 1];
        v[j] = x;
    }
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static double ratio(double a, double b)
{
    return b > 0 ? a / b : NAN;
}

/* ---- HTTP (the simulator's control endpoints) ----------------------------------------- */

/* ---- ASIN -> time tables (open addressing, grown on demand) ---------------------------- */

struct seen_entry {
    char asin[16];
    int64_t ms;
};

struct seen_set {
    struct seen_entry *e;
    size_t cap, n;
};

static uint64_t hash_asin(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

static struct seen_entry *seen_find(const struct seen_set *s, const char *asin)
{
    if (s->cap == 0)
        return NULL;
    for (size_t i = hash_asin(asin) & (s->cap - 1);; i = (i + 1) & (s->cap - 1)) {
        if (s->e[i].asin[0] == '\0')
            return NULL;
        if (strcmp(s->e[i].asin, asin) == 0)
            return &s->e[i];
    }
}

/* Records ASIN at MS, keeping the earliest time. Returns 0 or -ENOMEM. */
static int seen_add(struct seen_set *s, const char *asin, int64_t ms)
{
    if (asin[0] == '\0' || strlen(asin) >= sizeof(s->e[0].asin))
        return 0;
    if ((s->n + 1) * 2 > s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 4096;
        struct seen_entry *e = calloc(cap, sizeof(*e));
        if (e == NULL)
            return -ENOMEM;
        for (size_t i = 0; i < s->cap; i++) {
            if (s->e[i].asin[0] == '\0')
                continue;
            size_t j = hash_asin(s->e[i].asin) & (cap - 1);
            while (e[j].asin[0] != '\0')
                j = (j + 1) & (cap - 1);
            e[j] = s->e[i];
        }
        free(s->e);
        s->e = e;
        s->cap = cap;
    }
    size_t i = hash_asin(asin) & (s->cap - 1);
    for (; s->e[i].asin[0] != '\0'; i = (i + 1) & (s->cap - 1)) {
        if (strcmp(s->e[i].asin, asin) == 0) {
            if (ms < s->e[i].ms)
                s->e[i].ms = ms;
            return 0;
        }
    }
    snprintf(s->e[i].asin, sizeof(s->e[i].asin), "%s", asin);
    s->e[i].ms = ms;
    s->n++;
    return 0;
}

static void seen_free(struct seen_set *s)
{
    free(s->e);
    memset(s, 0, sizeof(*s));
}

/* ---- child processes ----------------------------------------------------------------- */

/* Starts ARGV with stdout to OUT_PATH and stderr to ERR_PATH (NULL: the same file). */
static pid_t spawn(char *const argv[], const char *out_path, const char *err_path, int deathsig)
{
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    prctl(PR_SET_PDEATHSIG, deathsig);
    int out = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    int err = err_path ? open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600) : out;
    int devnull = open("/dev/null", O_RDONLY);
    if (out < 0 || err < 0 || devnull < 0)
        _exit(127);
    dup2(devnull, 0);
    dup2(out, 1);
    dup2(err, 2);
    execv(argv[0], argv);
    _exit(127);
}

/* Waits up to DEADLINE_MS for PID; on timeout SIGKILLs it. Fills *RU (may be NULL). */
static int reap(pid_t pid, int64_t deadline_ms, struct rusage *ru)
{
    int64_t end = bu_mono_ms() + deadline_ms;
    int status = 0;
    for (;;) {
        pid_t r = wait4(pid, &status, WNOHANG, ru);
        if (r == pid)
            return status;
        if (r < 0)
            return -1;
        if (bu_mono_ms() > end) {
            kill(pid, SIGKILL);
            wait4(pid, &status, 0, ru);
            return status;
        }
        bu_sleep_ms(20);
    }
}

struct sim {
    pid_t pid;
    int port;
};

/* --economy=NAME from BENCH_PIPELINE_ECONOMY (calibrated, the simulator's default, or rich). */
static const char *economy_arg(void)
{
    static char arg[64];
    const char *e = getenv("BENCH_PIPELINE_ECONOMY");
    snprintf(arg, sizeof(arg), "--economy=%s", e != NULL && *e != '\0' ? e : "calibrated");
    return arg;
}

static int sim_start(struct sim *s, const char *bin, const char *dir, const char *tag,
                     char *const extra[])
{
    char port_file[PATH_MAX], log[PATH_MAX];
    snprintf(port_file, sizeof(port_file), "%s/%s.port", dir, tag);
    snprintf(log, sizeof(log), "%s/%s.log", dir, tag);
    char *argv[40];
    int n = 0;
    argv[n++] = (char *)bin;
    argv[n++] = "--port";
    argv[n++] = "0";
    argv[n++] = "--port-file";
    argv[n++] = port_file;
    argv[n++] = "--quiet";
    argv[n++] = (char *)economy_arg(); /* every simulator of a run: one economy */
    for (int i = 0; extra[i] != NULL && n < 38; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    s->pid = spawn(argv, log, NULL, SIGKILL);
    if (s->pid < 0)
        return -errno;
    int64_t end = bu_mono_ms() + 10000;
    while (bu_mono_ms() < end) {
        FILE *f = fopen(port_file, "r");
        if (f != NULL) {
            int ok = fscanf(f, "%d", &s->port);
            fclose(f);
            if (ok == 1 && s->port > 0)
                return 0;
        }
        if (waitpid(s->pid, NULL, WNOHANG) == s->pid) {
            s->pid = -1;
            return -ECHILD;
        }
        bu_sleep_ms(20);
    }
    return -ETIMEDOUT;
}

static void sim_stop(struct sim *s)
{
    if (s->pid > 0) {
        kill(s->pid, SIGTERM);
        reap(s->pid, 5000, NULL);
        s->pid = -1;
    }
}

/* ---- the daemon ---------------------------------------------------------------------- */

struct daemon {
    char dir[512];
    char conf[PATH_MAX];
    char store[PATH_MAX];
    char instance[48];
    pid_t pid;
    struct shm_segment seg;
    bool attached;
};

/*
 * Writes the key file, the selection and the config into DIR. EXTRA is more [scan] INI text;
 * USER (may be NULL) is appended last (BENCH_PIPELINE_CONF).
 */
static int write_config(const char *dir, const char *instance, int port, const char *extra,
                        const char *user, char *conf, size_t confsz, char *store, size_t storesz)
{
    char key[PATH_MAX], sel[PATH_MAX];
    snprintf(key, sizeof(key), "%s/key", dir);
    snprintf(sel, sizeof(sel), "%s/selection.json", dir);
    snprintf(conf, confsz, "%s/kdeals.conf", dir);
    snprintf(store, storesz, "%s/store", dir);
    int rc = bu_write_file(key, 0600, "benchkey%d\n", port);
    if (rc == 0)
        rc = bu_write_file(sel, 0600, "%s\n", SELECTION);
    if (rc == 0)
        rc = bu_write_file(conf, 0600,
                           "[keepa]\nbase_url = http://127.0.0.1:%d\nkey_file = %s\n\n"
                           "[daemon]\ninstance = %s\nrun_dir = %s\nstop_timeout = 20s\n\n"
                           "[store]\npath = %s\nmap_size_mb = 256\n\n"
                           "[tokens]\nminute = %dms\n\n"
                           "[scan]\nselection_file = %s\n%s\n%s\n",
                           port, key, instance, dir, store, (int)g_minute_ms, sel, extra,
                           user != NULL ? user : "");
    return rc;
}

static bool workers_ready(const struct shm_layout *l)
{
    for (int r = SHM_ROLE_SCANNER; r < SHM_PIPELINE_ROLES; r++) {
        uint32_t st = atomic_load(&l->procs[r].state);
        if (st != SHM_PROC_READY && st != SHM_PROC_WAITING_TOKENS)
            return false;
    }
    return true;
}

/* Starts `kdeals run -c CONF` and waits for the segment and ready workers. */
static int daemon_start(struct daemon *d, const char *kdeals)
{
    char log[PATH_MAX];
    snprintf(log, sizeof(log), "%s/kdeals.log", d->dir);
    char *argv[] = {(char *)kdeals, "run", "-c", d->conf, NULL};
    d->pid = spawn(argv, log, NULL, SIGTERM);
    if (d->pid < 0)
        return -errno;
    int64_t end = bu_mono_ms() + 20000;
    char err[256];
    while (!d->attached) {
        if (shm_segment_attach(&d->seg, d->instance, SHM_READ_ONLY, err, sizeof(err)) == 0)
            d->attached = true;
        else if (bu_mono_ms() > end || waitpid(d->pid, NULL, WNOHANG) == d->pid) {
            fprintf(stderr, "bench_pipeline: daemon did not start (%s); see %s\n", err, log);
            return -ECHILD;
        } else
            bu_sleep_ms(20);
    }
    while (!workers_ready(d->seg.layout)) {
        if (bu_mono_ms() > end) {
            fprintf(stderr, "bench_pipeline: workers not ready after 20 s; measuring anyway\n");
            break;
        }
        bu_sleep_ms(20);
    }
    return 0;
}

/* SIGTERM, then wait for the graceful stop. RU receives the daemon's and reaped workers' usage. */
static int daemon_stop(struct daemon *d, struct rusage *ru)
{
    if (d->pid <= 0)
        return 0;
    kill(d->pid, SIGTERM);
    int status = reap(d->pid, STOP_DEADLINE_MS, ru);
    d->pid = -1;
    return status;
}

/* CPU seconds (user + system) of PID so far, from /proc/PID/stat; -1 if unreadable. */
static double proc_cpu_s(pid_t pid)
{
    char path[64], line[2048];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    size_t n = fread(line, 1, sizeof(line) - 1, f);
    fclose(f);
    line[n] = '\0';
    char *p = strrchr(line, ')'); /* comm may hold spaces */
    if (p == NULL)
        return -1;
    unsigned long utime = 0, stime = 0;
    /* after ") ": state(3) ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt
     * utime(14) stime(15) */
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime, &stime) != 2)
        return -1;
    return (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
}

/* VmHWM of PID in KiB; -1 if unreadable. */
static long proc_hwm_kb(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    long kb = -1;
    while (fgets(line, sizeof(line), f) != NULL)
        if (sscanf(line, "VmHWM: %ld kB", &kb) == 1)
            break;
    fclose(f);
    return kb;
}

static pid_t role_pid(const struct daemon *d, int role)
{
    if (role == SHM_ROLE_SUPERVISOR)
        return d->pid;
    return (pid_t)atomic_load(&d->seg.layout->procs[role].pid);
}

/* CPU seconds per role now (supervisor and workers), and their sum. */
static double daemon_cpu(const struct daemon *d, double per_role[SHM_PIPELINE_ROLES])
{
    double total = 0;
    for (int r = 0; r < SHM_PIPELINE_ROLES; r++) {
        pid_t pid = role_pid(d, r);
        per_role[r] = pid > 0 ? proc_cpu_s(pid) : -1;
        if (per_role[r] > 0)
            total += per_role[r];
    }
    return total;
}

static int64_t role_counter(const struct daemon *d, int role, enum shm_counter_id id)
{
    return shm_counter_get(&d->seg.layout->counters[role], id);
}

static uint64_t role_hist_sum(const struct daemon *d, int role, enum shm_counter_id id)
{
    return atomic_load_explicit(&d->seg.layout->counters[role].hist[id].sum, memory_order_relaxed);
}

/* Deals in the store at the last scan, and those whose sell price a ceiling lowered. */
static int64_t g_scan_deals, g_scan_capped;

/* Adds every deal in the store (a record in the deal view) to SET with the time it became one.
 * Returns the count or -errno. */
static int64_t store_scan(struct st_env *env, struct seen_set *set)
{
    struct st_txn *txn = NULL;
    int rc = st_read_begin(env, &txn);
    if (rc != 0)
        return rc;
    struct st_cursor *cur = NULL;
    int64_t n = 0;
    int64_t capped = 0;
    if (st_cursor_open(txn, ST_DB_PRODUCTS, &cur) == 0) {
        static struct st_record rec;
        for (;;) {
            rc = st_cursor_next_record(cur, &rec);
            if (rc == -ENOENT)
                break;
            if (rc != 0 || rec.state != ST_STATE_DEAL)
                continue;
            seen_add(set, rec.asin, rec.deal_since_ms > 0 ? rec.deal_since_ms : rec.first_seen_ms);
            capped += rec.v.caps != 0;
            n++;
        }
        st_cursor_close(cur);
    }
    g_scan_deals = n;
    g_scan_capped = capped;
    st_read_end(txn);
    return n;
}

/* ---- the simulator ledger -------------------------------------------------------------- */

/* Polls the oracle: every deal listed now is recorded with the poll time. */
static int oracle_poll(CURL *c, int port, struct seen_set *first_listed, int64_t now_ms)
{
    char *esc = curl_easy_escape(c, SELECTION, 0);
    if (esc == NULL)
        return -ENOMEM;
    char path[1024];
    snprintf(path, sizeof(path), "/_sim/deals?selection=%s", esc);
    curl_free(esc);
    json_t *j = bu_sim_get(c, port, path);
    if (j == NULL)
        return -EIO;
    json_t *asins = json_object_get(j, "asins");
    size_t i;
    json_t *a;
    json_array_foreach(asins, i, a)
    {
        const char *s = json_string_value(a);
        if (s != NULL)
            seen_add(first_listed, s, now_ms);
    }
    json_decref(j);
    return 0;
}

/* Median delay (Keepa minutes) from first listing to store, for deals listed after T0_MS. */
static double time_to_store(const struct seen_set *stored, const struct seen_set *listed,
                            int64_t first_poll_ms, size_t *n_out)
{
    double *v = calloc(stored->n + 1, sizeof(double));
    size_t n = 0;
    for (size_t i = 0; v != NULL && i < stored->cap; i++) {
        const struct seen_entry *e = &stored->e[i];
        if (e->asin[0] == '\0')
            continue;
        const struct seen_entry *l = seen_find(listed, e->asin);
        if (l == NULL || l->ms <= first_poll_ms)
            continue;
        double d = (double)(e->ms - l->ms) / (double)g_minute_ms;
        v[n++] = d < 0 ? 0 : d;
    }
    double m = median(v, n);
    free(v);
    *n_out = n;
    return m;
}

/* Mean oracle-minimum cost of the stored deals (see the top comment). */
static double oracle_min_per_deal(CURL *c, int port, const struct seen_set *stored)
{
    double sum = 0;
    size_t n = 0;
    for (size_t i = 0; i < stored->cap; i++) {
        const struct seen_entry *e = &stored->e[i];
        if (e->asin[0] == '\0')
            continue;
        char path[128];
        snprintf(path, sizeof(path), "/_sim/product?asin=%s", e->asin);
        json_t *j = bu_sim_get(c, port, path);
        if (j == NULL)
            continue;
        int64_t live = bu_jint(j, "liveOffers");
        json_decref(j);
        int64_t pages = ((live < 20 ? live : 20) + 9) / 10;
        sum += 1.0 + 6.0 * (double)(pages < 1 ? 1 : pages);
        n++;
    }
    return n ? sum / (double)n : NAN;
}

/* ---- the value figures: the simulator's truth (sim/README.md, "The truth") ---------------- */

/* How a simulator maps the wall clock to its catalog's Keepa minutes (GET /_sim/clock). */
struct sim_clock {
    int64_t start_wall_ms, catalog_start_ms, minute_ms, now_min;
    bool ok;
};

static struct sim_clock clock_read(CURL *c, int port)
{
    struct sim_clock k;
    memset(&k, 0, sizeof(k));
    json_t *j = bu_sim_get(c, port, "/_sim/clock");
    if (j == NULL)
        return k;
    k.start_wall_ms = bu_jint(j, "start_wall_ms");
    k.catalog_start_ms = bu_jint(j, "catalog_start_ms");
    k.minute_ms = bu_jint(j, "minute_ms");
    k.now_min = bu_jint(j, "keepa_minute");
    k.ok = k.minute_ms > 0;
    json_decref(j);
    return k;
}

/* The catalog's Keepa minute at wall-clock WALL_MS, as the simulator computes it for at_ms=. */
static int64_t clock_min(const struct sim_clock *k, int64_t wall_ms)
{
    int64_t t = k->catalog_start_ms + (wall_ms - k->start_wall_ms) * 60000 / k->minute_ms;
    return kd_ms_to_keepa_min(t < wall_ms ? t : wall_ms);
}

/* A stretch during which kdeals showed ASIN as a deal (a record in state DEAL), from the change
 * log; truth_* is the truth at its first moment. */
struct shown {
    char asin[ST_ASIN_LEN + 1];
    int64_t from_ms, to_ms;
    int64_t from_min, to_min;
    bool truth_deal;      /* the truth at from_ms */
    int64_t truth_profit; /* its profit then, cents */
};

struct shown_list {
    struct shown *v;
    size_t n, cap;
};

static struct shown *shown_push(struct shown_list *l)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 1024;
        struct shown *v = realloc(l->v, cap * sizeof(*v));
        if (v == NULL)
            return NULL;
        l->v = v;
        l->cap = cap;
    }
    memset(&l->v[l->n], 0, sizeof(l->v[0]));
    return &l->v[l->n++];
}

struct change_row {
    char asin[ST_ASIN_LEN + 1];
    uint64_t seq;
    int64_t at_ms;
    uint8_t state, prev;
};

static int cmp_change_row(const void *a, const void *b)
{
    const struct change_row *x = a, *y = b;
    int c = strcmp(x->asin, y->asin);
    return c != 0 ? c : x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* The shown stretches of every record, from the store's change log; stretches still open close
 * at END_MS. Returns 0 or a negative errno. */
static int shown_from_changes(struct st_env *env, int64_t end_ms, struct shown_list *out)
{
    struct st_txn *txn = NULL;
    int rc = st_read_begin(env, &txn);
    if (rc != 0)
        return rc;
    size_t n = 0, cap = 4096;
    struct change_row *rows = malloc(cap * sizeof(*rows));
    static struct st_change chunk[512];
    uint64_t after = 0;
    while (rows != NULL) {
        size_t got = 0;
        if (st_changes_read(txn, after, chunk, 512, &got) != 0 || got == 0)
            break;
        for (size_t i = 0; i < got; i++) {
            after = chunk[i].seq;
            if (n == cap) {
                struct change_row *r = realloc(rows, cap * 2 * sizeof(*rows));
                if (r == NULL)
                    break;
                rows = r;
                cap *= 2;
            }
            struct change_row *r = &rows[n++];
            memcpy(r->asin, chunk[i].asin, sizeof(r->asin));
            r->seq = chunk[i].seq;
            r->at_ms = chunk[i].at_ms;
            r->state = chunk[i].state;
            r->prev = chunk[i].prev_state;
        }
    }
    st_read_end(txn);
    if (rows == NULL)
        return -ENOMEM;
    qsort(rows, n, sizeof(*rows), cmp_change_row);
    struct shown *open = NULL;
    for (size_t i = 0; i < n; i++) {
        const struct change_row *r = &rows[i];
        if (open != NULL && strcmp(open->asin, r->asin) != 0) {
            open->to_ms = end_ms;
            open = NULL;
        }
        bool deal = r->state == ST_STATE_DEAL;
        if (deal && open == NULL) {
            open = shown_push(out);
            if (open == NULL)
                break;
            memcpy(open->asin, r->asin, sizeof(open->asin));
            open->from_ms = r->at_ms;
        } else if (!deal && open != NULL) {
            open->to_ms = r->at_ms;
            open = NULL;
        }
    }
    if (open != NULL)
        open->to_ms = end_ms;
    free(rows);
    return 0;
}

/* The truth of ASINS[i] at wall-clock AT_MS[i] (N of them), from /_sim/truth in chunks.
 * DEAL[i] and PROFIT[i] get the verdict (false / 0 when unknown). */
static void truth_at(CURL *c, int port, char (*asins)[ST_ASIN_LEN + 1], const int64_t *at_ms,
                     size_t n, bool *deal, int64_t *profit)
{
    enum { CHUNK = 100 };
    for (size_t base = 0; base < n; base += CHUNK) {
        size_t m = n - base < CHUNK ? n - base : CHUNK;
        char path[4096];
        size_t off = (size_t)snprintf(path, sizeof(path), "/_sim/truth?asin=");
        for (size_t i = 0; i < m && off < sizeof(path); i++)
            off += (size_t)snprintf(path + off, sizeof(path) - off, "%s%s", i ? "," : "",
                                    asins[base + i]);
        off += (size_t)snprintf(path + off, sizeof(path) - off, "&at_ms=");
        for (size_t i = 0; i < m && off < sizeof(path); i++)
            off += (size_t)snprintf(path + off, sizeof(path) - off, "%s%" PRId64, i ? "," : "",
                                    at_ms[base + i]);
        for (size_t i = 0; i < m; i++) {
            deal[base + i] = false;
            profit[base + i] = 0;
        }
        json_t *j = off < sizeof(path) ? bu_sim_get(c, port, path) : NULL;
        json_t *prods = json_object_get(j, "products");
        size_t k;
        json_t *p;
        json_array_foreach(prods, k, p)
        {
            const char *a = json_string_value(json_object_get(p, "asin"));
            /* Answers come in request order, unknown ASINs left out: match by ASIN from K. */
            for (size_t i = k; a != NULL && i < m; i++) {
                if (strcmp(asins[base + i], a) != 0)
                    continue;
                deal[base + i] = json_is_true(json_object_get(p, "deal"));
                profit[base + i] = deal[base + i] ? bu_jint(p, "profit_cents") : 0;
                break;
            }
        }
        json_decref(j);
    }
}

/* One ASIN's stretches of being a deal in the truth: [start, end) Keepa minutes. */
struct segs {
    char asin[ST_ASIN_LEN + 1];
    size_t n;
    int64_t (*s)[2];
};

static int cmp_segs(const void *a, const void *b)
{
    return strcmp(((const struct segs *)a)->asin, ((const struct segs *)b)->asin);
}

/* Timelines of the N distinct ASINS over [FROM, TO) from /_sim/timeline into OUT (N entries,
 * sorted by ASIN). Returns 0 or -ENOMEM. */
static int timelines(CURL *c, int port, char (*asins)[ST_ASIN_LEN + 1], size_t n, int64_t from,
                     int64_t to, struct segs *out)
{
    enum { CHUNK = 100 };
    for (size_t i = 0; i < n; i++) {
        memcpy(out[i].asin, asins[i], sizeof(out[i].asin));
        out[i].n = 0;
        out[i].s = NULL;
    }
    for (size_t base = 0; base < n; base += CHUNK) {
        size_t m = n - base < CHUNK ? n - base : CHUNK;
        char path[4096];
        size_t off = (size_t)snprintf(
            path, sizeof(path),
            "/_sim/timeline?step=10&from=%" PRId64 "&to=%" PRId64 "&asin=", from, to);
        for (size_t i = 0; i < m && off < sizeof(path); i++)
            off += (size_t)snprintf(path + off, sizeof(path) - off, "%s%s", i ? "," : "",
                                    asins[base + i]);
        json_t *j = off < sizeof(path) ? bu_sim_get(c, port, path) : NULL;
        size_t k;
        json_t *p;
        json_array_foreach(json_object_get(j, "products"), k, p)
        {
            const char *a = json_string_value(json_object_get(p, "asin"));
            for (size_t i = 0; a != NULL && i < m; i++) {
                struct segs *sg = &out[base + i];
                if (strcmp(sg->asin, a) != 0)
                    continue;
                json_t *arr = json_object_get(p, "segments");
                size_t ns = json_array_size(arr);
                sg->s = ns ? calloc(ns, sizeof(*sg->s)) : NULL;
                if (ns && sg->s == NULL) {
                    json_decref(j);
                    return -ENOMEM;
                }
                for (size_t q = 0; q < ns; q++) {
                    json_t *seg = json_array_get(arr, q);
                    sg->s[q][0] = (int64_t)json_integer_value(json_array_get(seg, 0));
                    sg->s[q][1] = (int64_t)json_integer_value(json_array_get(seg, 1));
                }
                sg->n = ns;
                break;
            }
        }
        json_decref(j);
    }
    qsort(out, n, sizeof(*out), cmp_segs);
    return 0;
}

/* The index of the segment of SG holding minute M, or -1. */
static ptrdiff_t seg_of(const struct segs *sg, int64_t m)
{
    for (size_t q = 0; sg != NULL && q < sg->n; q++)
        if (m >= sg->s[q][0] && m < sg->s[q][1])
            return (ptrdiff_t)q;
    return -1;
}

/* Minutes of [A, B) inside SG's segments. */
static int64_t overlap_min(const struct segs *sg, int64_t a, int64_t b)
{
    int64_t sum = 0;
    for (size_t q = 0; sg != NULL && q < sg->n; q++) {
        int64_t lo = a > sg->s[q][0] ? a : sg->s[q][0];
        int64_t hi = b < sg->s[q][1] ? b : sg->s[q][1];
        if (hi > lo)
            sum += hi - lo;
    }
    return sum;
}

/* A true deal of the run's window (/_sim/true-deals). */
struct true_deal {
    char asin[ST_ASIN_LEN + 1];
    int64_t peak_profit, fetch_tokens, listed_at;
};

static int cmp_by_profit_per_token(const void *a, const void *b)
{
    const struct true_deal *x = a, *y = b;
    double px = (double)x->peak_profit / (double)(x->fetch_tokens > 0 ? x->fetch_tokens : 1);
    double py = (double)y->peak_profit / (double)(y->fetch_tokens > 0 ? y->fetch_tokens : 1);
    return px > py ? -1 : px < py;
}

/* What the oracle says about a run: the true deals of [FROM, TO) under the selection, highest
 * peak profit first. Returns how many (*OUT malloc'd) or -1. */
static ssize_t true_deals(CURL *c, int port, int64_t from, int64_t to, struct true_deal **out)
{
    char *esc = curl_easy_escape(c, SELECTION, 0);
    if (esc == NULL)
        return -1;
    char path[1024];
    snprintf(path, sizeof(path),
             "/_sim/true-deals?step=10&from=%" PRId64 "&to=%" PRId64 "&selection=%s", from, to,
             esc);
    curl_free(esc);
    json_t *j = bu_sim_get(c, port, path);
    json_t *arr = json_object_get(j, "deals");
    size_t n = json_array_size(arr);
    *out = calloc(n + 1, sizeof(**out));
    if (j == NULL || *out == NULL) {
        json_decref(j);
        free(*out);
        *out = NULL;
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *d = json_array_get(arr, i);
        struct true_deal *t = &(*out)[i];
        snprintf(t->asin, sizeof(t->asin), "%s", json_string_value(json_object_get(d, "asin")));
        t->peak_profit = bu_jint(d, "peak_profit_cents");
        t->fetch_tokens = bu_jint(d, "fetch_tokens");
        t->listed_at = bu_jint(d, "listed_at");
    }
    json_decref(j);
    return (ssize_t)n;
}

/* The greedy bound: true deals by peak profit per fetch token until BUDGET tokens are spent
 * (LISTED_ONLY: only those the selection's feed listed). */
static double greedy_bound(const struct true_deal *td, size_t n, double budget, bool listed_only,
                           size_t *taken)
{
    struct true_deal *v = malloc((n + 1) * sizeof(*v));
    if (v == NULL)
        return NAN;
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (!listed_only || td[i].listed_at >= 0)
            v[m++] = td[i];
    qsort(v, m, sizeof(*v), cmp_by_profit_per_token);
    double spent = 0, profit = 0;
    *taken = 0;
    for (size_t i = 0; i < m; i++) {
        double cost = (double)(v[i].fetch_tokens > 0 ? v[i].fetch_tokens : 1);
        if (spent + cost > budget)
            continue;
        spent += cost;
        profit += (double)v[i].peak_profit;
        (*taken)++;
    }
    free(v);
    return profit;
}

/* The value figures of one kdeals run (bench/README.md, "Value figures"). */
struct value_figs {
    size_t true_n, listed_n;              /* true deals of the window; of them listed by the feed */
    double bound, bound_listed;           /* cents */
    size_t bound_n, bound_listed_n;       /* deals the greedy took */
    double captured;                      /* cents */
    size_t captured_n;                    /* truth segments credited */
    size_t shown_n, shown_asins;          /* shown stretches, distinct ASINs shown */
    double deal_min, stale_min;           /* Keepa minutes shown while a deal / after */
    size_t top_n, top_stored;             /* top tenth of the listed true deals; of them stored */
    double top_median, top_stored_median; /* Keepa minutes (never stored: infinite) */
};

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The first stretch of SHOWN (sorted by ASIN) of ASIN, or NULL. */
static const struct shown *shown_first(const struct shown_list *l, const char *asin)
{
    size_t lo = 0, hi = l->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (strcmp(l->v[mid].asin, asin) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < l->n && strcmp(l->v[lo].asin, asin) == 0 ? &l->v[lo] : NULL;
}

static void value_kdeals(CURL *c, int port, struct shown_list *sl, const struct sim_clock *k,
                         int64_t from_min, int64_t to_min, double budget, const char *dump,
                         struct value_figs *vf)
{
    memset(vf, 0, sizeof(*vf));
    vf->top_median = vf->top_stored_median = NAN;
    size_t n = sl->n;
    char(*asins)[ST_ASIN_LEN + 1] = calloc(n + 1, sizeof(*asins));
    int64_t *at = calloc(n + 1, sizeof(*at));
    bool *deal = calloc(n + 1, sizeof(*deal));
    int64_t *profit = calloc(n + 1, sizeof(*profit));
    struct segs *sg = calloc(n + 1, sizeof(*sg));
    if (asins == NULL || at == NULL || deal == NULL || profit == NULL || sg == NULL)
        goto out;
    for (size_t i = 0; i < n; i++) {
        struct shown *s = &sl->v[i];
        s->from_min = clock_min(k, s->from_ms);
        s->to_min = clock_min(k, s->to_ms);
        memcpy(asins[i], s->asin, sizeof(asins[i]));
        at[i] = s->from_ms;
    }
    truth_at(c, port, asins, at, n, deal, profit);
    size_t distinct = 0;
    for (size_t i = 0; i < n; i++) {
        sl->v[i].truth_deal = deal[i];
        sl->v[i].truth_profit = profit[i];
        if (distinct == 0 || strcmp(asins[distinct - 1], sl->v[i].asin) != 0)
            memcpy(asins[distinct++], sl->v[i].asin, sizeof(asins[0]));
    }
    vf->shown_n = n;
    vf->shown_asins = distinct;
    if (timelines(c, port, asins, distinct, from_min, to_min, sg) != 0)
        goto out;
    /* Deal- and stale-minutes; profit once per truth segment, at the first stretch shown in it. */
    size_t g = 0;
    uint64_t credited = 0; /* bit per segment of sg[g] (segments beyond 63 share the last bit) */
    for (size_t i = 0; i < n; i++) {
        const struct shown *s = &sl->v[i];
        if (strcmp(sg[g].asin, s->asin) != 0) {
            while (g + 1 < distinct && strcmp(sg[g].asin, s->asin) < 0)
                g++;
            credited = 0;
        }
        const struct segs *mine = strcmp(sg[g].asin, s->asin) == 0 ? &sg[g] : NULL;
        int64_t len = s->to_min > s->from_min ? s->to_min - s->from_min : 0;
        int64_t in = overlap_min(mine, s->from_min, s->to_min);
        vf->deal_min += (double)in;
        vf->stale_min += (double)(len - in);
        if (!s->truth_deal)
            continue;
        ptrdiff_t q = seg_of(mine, s->from_min);
        uint64_t bit = q < 0 ? 0 : 1ull << (q < 63 ? q : 63);
        if (bit != 0 && (credited & bit))
            continue;
        credited |= bit;
        vf->captured += (double)s->truth_profit;
        vf->captured_n++;
    }
    /* The oracle's bound and the top tenth's time to store. */
    struct true_deal *td = NULL;
    ssize_t ntd = true_deals(c, port, from_min, to_min, &td);
    if (ntd >= 0) {
        vf->true_n = (size_t)ntd;
        vf->bound = greedy_bound(td, vf->true_n, budget, false, &vf->bound_n);
        vf->bound_listed = greedy_bound(td, vf->true_n, budget, true, &vf->bound_listed_n);
        for (size_t i = 0; i < vf->true_n; i++)
            vf->listed_n += td[i].listed_at >= 0;
        vf->top_n = (vf->listed_n + 9) / 10;
        double *tts = calloc(vf->top_n + 1, sizeof(double));
        double *stored = calloc(vf->top_n + 1, sizeof(double));
        size_t k_top = 0;
        /* With BENCH_PIPELINE_KEEP: the listed true deals and when each was first shown, for
         * tools/missed-top.py. */
        FILE *df = dump != NULL ? fopen(dump, "w") : NULL;
        if (df != NULL)
            fprintf(df, "# clock %" PRId64 " %" PRId64 " %" PRId64 "\n", k->start_wall_ms,
                    k->catalog_start_ms, k->minute_ms);
        for (size_t i = 0; df != NULL && i < vf->true_n; i++) {
            if (td[i].listed_at < 0)
                continue;
            int64_t first = -1;
            const struct shown *s = shown_first(sl, td[i].asin);
            for (; s != NULL && s < sl->v + sl->n && strcmp(s->asin, td[i].asin) == 0; s++)
                if (s->to_min > td[i].listed_at) {
                    first = s->from_min;
                    break;
                }
            fprintf(df, "%s\t%" PRId64 "\t%" PRId64 "\t%" PRId64 "\t%" PRId64 "\n", td[i].asin,
                    td[i].peak_profit, td[i].fetch_tokens, td[i].listed_at, first);
        }
        if (df != NULL)
            fclose(df);
        for (size_t i = 0; tts != NULL && stored != NULL && i < vf->true_n && k_top < vf->top_n;
             i++) {
            if (td[i].listed_at < 0)
                continue;
            double t = INFINITY;
            const struct shown *s = shown_first(sl, td[i].asin);
            for (; s != NULL && s < sl->v + sl->n && strcmp(s->asin, td[i].asin) == 0; s++) {
                if (s->to_min <= td[i].listed_at)
                    continue;
                t = s->from_min > td[i].listed_at ? (double)(s->from_min - td[i].listed_at) : 0;
                break;
            }
            tts[k_top++] = t;
            if (isfinite(t))
                stored[vf->top_stored++] = t;
        }
        if (tts != NULL && k_top > 0) {
            qsort(tts, k_top, sizeof(double), cmp_double);
            vf->top_median = k_top % 2 ? tts[k_top / 2] : (tts[k_top / 2 - 1] + tts[k_top / 2]) / 2;
        }
        if (stored != NULL && vf->top_stored > 0)
            vf->top_stored_median = median(stored, vf->top_stored);
        free(tts);
        free(stored);
        free(td);
    }
out:
    for (size_t i = 0; sg != NULL && i < n; i++)
        free(sg[i].s);
    free(sg);
    free(asins);
    free(at);
    free(deal);
    free(profit);
}

/* Profit captured by legacy: the truth at the moment it found each distinct deal. */
static double value_legacy(CURL *c, int port, const struct seen_set *found, size_t *n_deal)
{
    size_t n = 0;
    char(*asins)[ST_ASIN_LEN + 1] = calloc(found->n + 1, sizeof(*asins));
    int64_t *at = calloc(found->n + 1, sizeof(*at));
    bool *deal = calloc(found->n + 1, sizeof(*deal));
    int64_t *profit = calloc(found->n + 1, sizeof(*profit));
    double sum = 0;
    *n_deal = 0;
    if (asins != NULL && at != NULL && deal != NULL && profit != NULL) {
        for (size_t i = 0; i < found->cap; i++) {
            if (found->e[i].asin[0] == '\0' || strlen(found->e[i].asin) != ST_ASIN_LEN)
                continue;
            memcpy(asins[n], found->e[i].asin, ST_ASIN_LEN + 1);
            at[n++] = found->e[i].ms;
        }
        truth_at(c, port, asins, at, n, deal, profit);
        for (size_t i = 0; i < n; i++) {
            sum += (double)profit[i];
            *n_deal += deal[i];
        }
    }
    free(asins);
    free(at);
    free(deal);
    free(profit);
    return sum;
}

static void bench(const char *name, double v, const char *unit)
{
    if (isnan(v))
        printf("BENCH pipeline.%s nan %s\n", name, unit);
    else if (strcmp(unit, "%") != 0 && (fabs(v) >= 100 || v == floor(v)))
        printf("BENCH pipeline.%s %.0f %s\n", name, v, unit);
    else
        printf("BENCH pipeline.%s %.2f %s\n", name, v, unit);
    fflush(stdout);
}

/* ---- shared run context ---------------------------------------------------------------- */

struct ctx {
    char kdeals[PATH_MAX], sim[PATH_MAX], legacy[PATH_MAX];
    char root[256]; /* temp folder of this run */
    long seed, products;
    bool keep;
    char *conf_extra; /* BENCH_PIPELINE_CONF's contents, appended to every config; or NULL */
    CURL *curl;
};

/* ---- (a) unlimited tokens ------------------------------------------------------------- */

static int scenario_throughput(struct ctx *cx)
{
    long seconds = bu_env_long("bench_pipeline", "BENCH_PIPELINE_THROUGHPUT_S", 20, 1, 3600);
    struct daemon d;
    memset(&d, 0, sizeof(d));
    snprintf(d.dir, sizeof(d.dir), "%s/throughput", cx->root);
    mkdir(d.dir, 0700);
    snprintf(d.instance, sizeof(d.instance), "bench%da", (int)getpid());
    char seed[32], products[32];
    snprintf(seed, sizeof(seed), "%ld", cx->seed);
    snprintf(products, sizeof(products), "%ld", cx->products);
    char *extra[] = {"--minute-ms",
                     "100",
                     "--refill-rate",
                     "30000",
                     "--start-tokens",
                     "1800000",
                     "--seed",
                     seed,
                     "--products",
                     products,
                     NULL};
    struct sim s = {.pid = -1};
    if (sim_start(&s, cx->sim, d.dir, "sim", extra) != 0) {
        fprintf(stderr, "bench_pipeline: kdeals-sim did not start\n");
        return -1;
    }
    int rc = write_config(d.dir, d.instance, s.port, "pass_pause = 0\ndedup_window = 0\n",
                          cx->conf_extra, d.conf, sizeof(d.conf), d.store, sizeof(d.store));
    if (rc == 0)
        rc = daemon_start(&d, cx->kdeals);
    if (rc != 0) {
        sim_stop(&s);
        return -1;
    }
    bu_sleep_ms(WARMUP_MS);
    double cpu0[SHM_PIPELINE_ROLES], cpu1[SHM_PIPELINE_ROLES];
    int64_t t0 = bu_mono_ms();
    struct bu_ledger L0 = bu_ledger_read(cx->curl, s.port);
    double c0 = daemon_cpu(&d, cpu0);
    double sim_c0 = proc_cpu_s(s.pid);
    uint64_t h0[SHM_PIPELINE_ROLES];
    for (int r = 0; r < SHM_PIPELINE_ROLES; r++)
        h0[r] = role_hist_sum(&d, r, SHM_C_batch_asins);
    bu_sleep_ms(seconds * 1000);
    double c1 = daemon_cpu(&d, cpu1);
    double sim_c1 = proc_cpu_s(s.pid);
    struct bu_ledger L1 = bu_ledger_read(cx->curl, s.port);
    int64_t t1 = bu_mono_ms();
    uint64_t h1[SHM_PIPELINE_ROLES];
    long hwm[SHM_PIPELINE_ROLES];
    for (int r = 0; r < SHM_PIPELINE_ROLES; r++) {
        h1[r] = role_hist_sum(&d, r, SHM_C_batch_asins);
        pid_t pid = role_pid(&d, r);
        hwm[r] = pid > 0 ? proc_hwm_kb(pid) : -1;
    }
    uint32_t restarts = 0;
    for (int r = SHM_ROLE_SCANNER; r < SHM_PIPELINE_ROLES; r++)
        restarts += atomic_load(&d.seg.layout->procs[r].restarts);
    int64_t deals = shm_counter_total(d.seg.layout, SHM_C_deals_committed);
    daemon_stop(&d, NULL);
    if (d.attached)
        shm_segment_detach(&d.seg);
    sim_stop(&s);

    double secs = (double)(t1 - t0) / 1000.0;
    double asins = (double)(L1.asins_requested - L0.asins_requested);
    double cpu = c1 - c0;
    printf("-- (a) unlimited tokens: %.1f s window, seed %ld, %ld products, %s\n", secs, cx->seed,
           cx->products, economy_arg() + 2);
    bench("asins_per_s", asins / secs, "asins/s");
    bench("peek_asins_per_s", (double)(h1[SHM_ROLE_SCANNER] - h0[SHM_ROLE_SCANNER]) / secs,
          "asins/s");
    bench("commit_asins_per_s", (double)(h1[SHM_ROLE_COMMITTER] - h0[SHM_ROLE_COMMITTER]) / secs,
          "asins/s");
    bench("update_asins_per_s", (double)(h1[SHM_ROLE_UPDATER] - h0[SHM_ROLE_UPDATER]) / secs,
          "asins/s");
    bench("product_requests_per_s", (double)(L1.product_requests - L0.product_requests) / secs,
          "req/s");
    bench("cpu_us_per_asin", asins > 0 ? cpu * 1e6 / asins : NAN, "us");
    bench("cpu_pct", cpu * 100.0 / secs, "%");
    bench("sim_cpu_pct", (sim_c1 - sim_c0) * 100.0 / secs, "%");
    for (int r = 0; r < SHM_PIPELINE_ROLES; r++) {
        char name[64];
        snprintf(name, sizeof(name), "cpu_s.%s", role_names[r]);
        bench(name, cpu1[r] >= 0 && cpu0[r] >= 0 ? cpu1[r] - cpu0[r] : NAN, "s");
    }
    for (int r = 0; r < SHM_PIPELINE_ROLES; r++) {
        char name[64];
        snprintf(name, sizeof(name), "rss_peak.%s", role_names[r]);
        bench(name, hwm[r] >= 0 ? (double)hwm[r] : NAN, "KiB");
    }
    printf("   %.0f ASINs served in %.1f s (%.0f /s), daemon CPU %.2f s (%.0f us per ASIN), "
           "simulator CPU %.2f s, %" PRId64 " deals committed, %u worker restarts\n",
           asins, secs, asins / secs, cpu, asins > 0 ? cpu * 1e6 / asins : NAN, sim_c1 - sim_c0,
           deals, restarts);
    return 0;
}

/* ---- (b) a simulated day on a 5/min plan, kdeals vs legacy ------------------------------- */

struct side {
    struct bu_ledger L0, L1;
    struct seen_set listed; /* oracle: ASIN -> first poll that listed it (wall ms) */
    struct seen_set stored; /* ASIN -> stored (wall ms) */
    int64_t first_poll_ms;
};

static void side_figures(const char *prefix, struct side *sd, double *tpd_out)
{
    struct bu_ledger *a = &sd->L0, *b = &sd->L1;
    double consumed = (double)(b->consumed - a->consumed);
    double offered = (double)(a->left + (b->earned - a->earned) + (b->expired - a->expired));
    double deals = (double)sd->stored.n;
    double tpd = deals > 0 ? consumed / deals : NAN;
    char name[96];
#define FIG(n, v, u)                                                                               \
    do {                                                                                           \
        snprintf(name, sizeof(name), "%s%s", prefix, n);                                           \
        bench(name, v, u);                                                                         \
    } while (0)
    FIG("utilisation", 100.0 * ratio(consumed, offered), "%");
    FIG("http_429", (double)(b->http_429 - a->http_429), "count");
    FIG("tokens_expired", (double)(b->expired - a->expired), "tokens");
    FIG("tokens_consumed", consumed, "tokens");
    FIG("tokens_offered", offered, "tokens");
    FIG("deals", deals, "deals");
    FIG("tokens_per_deal", tpd, "tokens");
    size_t n_tts = 0;
    double tts = time_to_store(&sd->stored, &sd->listed, sd->first_poll_ms, &n_tts);
    FIG("time_to_store_median", tts, "keepa_min");
    FIG("time_to_store_samples", (double)n_tts, "deals");
    FIG("oracle_listed", (double)sd->listed.n, "deals");
#undef FIG
    *tpd_out = tpd;
}

static int parse_legacy(const char *path, struct seen_set *stored, char *summary, size_t sumsz)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -errno;
    char line[256], a[64];
    long long v;
    size_t off = 0;
    summary[0] = '\0';
    while (fgets(line, sizeof(line), f) != NULL) {
        if (sscanf(line, "LEGACY_DEAL %63s %lld", a, &v) == 2)
            seen_add(stored, a, v);
        else if (sscanf(line, "LEGACY %63s %lld", a, &v) == 2 && off < sumsz)
            off += (size_t)snprintf(summary + off, sumsz - off, " %s=%lld", a, v);
    }
    fclose(f);
    return 0;
}

/* One bench_legacy run: its own simulator, folder, output and figures. */
struct legacy_run {
    const char *tag;  /* BENCH prefix and folder name */
    const char *mode; /* NULL: all pages; "page0": page 0 only */
    char dir[512];
    char conf[PATH_MAX], store[PATH_MAX], sel[PATH_MAX], out[PATH_MAX], err[PATH_MAX];
    struct sim sim;
    pid_t pid;
    int status;
    struct side side;
    char summary[1024];
};

#define N_LEGACY 2

static void legacies_kill(struct legacy_run *lr)
{
    for (int i = 0; i < N_LEGACY; i++) {
        if (lr[i].pid > 0) {
            kill(lr[i].pid, SIGKILL);
            reap(lr[i].pid, 1000, NULL);
            lr[i].pid = -1;
        }
        sim_stop(&lr[i].sim);
    }
}

static int learned_import(const char *from, const char *to);

static int scenario_day(struct ctx *cx)
{
    long minutes = bu_env_long("bench_pipeline", "BENCH_PIPELINE_MINUTES", 1440, 10, 100000);
    long rate = bu_env_long("bench_pipeline", "BENCH_PIPELINE_RATE", 5, 1, 10000);
    long minute_default = rate * MINUTE_MS_PER_TOKEN > MINUTE_MS_DEFAULT
                              ? rate * MINUTE_MS_PER_TOKEN
                              : MINUTE_MS_DEFAULT;
    g_minute_ms =
        bu_env_long("bench_pipeline", "BENCH_PIPELINE_MINUTE_MS", minute_default, 10, 60000);
    int64_t duration_ms = minutes * g_minute_ms;
    char seed[32], products[32], clock_ms[32], dur[32], refill[32];
    snprintf(refill, sizeof(refill), "%ld", rate);
    snprintf(seed, sizeof(seed), "%ld", cx->seed);
    snprintf(products, sizeof(products), "%ld", cx->products);
    snprintf(dur, sizeof(dur), "%" PRId64, duration_ms);
    /* Every simulator shares the catalog clock, so all see the same deals at the same time. */
    snprintf(clock_ms, sizeof(clock_ms), "%" PRId64, kd_wall_ms());
    char minute_ms[32];
    snprintf(minute_ms, sizeof(minute_ms), "%" PRId64, g_minute_ms);
    /* The simulators' gzip level (a speed choice: the inflated bytes are the same; stored
     * blocks by default, the cheapest for both sides at 600x). */
    char gzip_level[16];
    snprintf(gzip_level, sizeof(gzip_level), "%ld",
             bu_env_long("bench_pipeline", "BENCH_PIPELINE_SIM_GZIP", 0, 0, 9));
    /* The simulators' threads (kdeals-sim --threads): a connection is served by one thread
     * for life, so with few threads a /deal page may wait behind another role's render. */
    char threads[16];
    snprintf(threads, sizeof(threads), "%ld",
             bu_env_long("bench_pipeline", "BENCH_PIPELINE_SIM_THREADS", 2, 1, 64));
    char *extra[] = {"--minute-ms",  minute_ms,    "--refill-rate", refill,       "--seed",
                     seed,           "--products", products,        "--clock-ms", clock_ms,
                     "--gzip-level", gzip_level,   "--threads",     threads,      NULL};

    struct daemon d;
    memset(&d, 0, sizeof(d));
    snprintf(d.dir, sizeof(d.dir), "%s/day", cx->root);
    mkdir(d.dir, 0700);
    snprintf(d.instance, sizeof(d.instance), "bench%db", (int)getpid());
    static struct legacy_run lr[N_LEGACY];
    memset(lr, 0, sizeof(lr));
    lr[0].tag = "legacy";
    lr[1].tag = "legacy_page0";
    lr[1].mode = "page0";

    struct sim sk = {.pid = -1};
    int rc = sim_start(&sk, cx->sim, d.dir, "sim", extra);
    char pause[64];
    snprintf(pause, sizeof(pause), "pass_pause = %" PRId64 "ms\n", 5 * g_minute_ms);
    if (rc == 0)
        rc = write_config(d.dir, d.instance, sk.port, pause, cx->conf_extra, d.conf, sizeof(d.conf),
                          d.store, sizeof(d.store));
    for (int i = 0; i < N_LEGACY; i++) {
        lr[i].sim.pid = lr[i].pid = -1;
        snprintf(lr[i].dir, sizeof(lr[i].dir), "%s/%s", cx->root, lr[i].tag);
        mkdir(lr[i].dir, 0700);
        if (rc == 0)
            rc = sim_start(&lr[i].sim, cx->sim, lr[i].dir, "sim", extra);
        if (rc == 0)
            rc = write_config(lr[i].dir, "unused", lr[i].sim.port, "", cx->conf_extra, lr[i].conf,
                              sizeof(lr[i].conf), lr[i].store, sizeof(lr[i].store));
        char dir[sizeof(lr[i].dir)];
        memcpy(dir, lr[i].dir, sizeof(dir));
        snprintf(lr[i].sel, sizeof(lr[i].sel), "%s/selection.json", dir);
        snprintf(lr[i].out, sizeof(lr[i].out), "%s/legacy.out", dir);
        snprintf(lr[i].err, sizeof(lr[i].err), "%s/legacy.log", dir);
    }
    if (rc != 0) {
        fprintf(stderr, "bench_pipeline: a kdeals-sim did not start or a config failed\n");
        sim_stop(&sk);
        legacies_kill(lr);
        return -1;
    }

    struct side K;
    memset(&K, 0, sizeof(K));
    K.L0 = bu_ledger_read(cx->curl, sk.port);
    struct sim_clock clk0 = clock_read(cx->curl, sk.port);
    for (int i = 0; i < N_LEGACY; i++) {
        lr[i].side.L0 = bu_ledger_read(cx->curl, lr[i].sim.port);
        char *largv[] = {cx->legacy, lr[i].conf, lr[i].sel, dur, (char *)lr[i].mode, NULL};
        lr[i].pid = spawn(largv, lr[i].out, lr[i].err, SIGKILL);
    }
    const char *learned = getenv("BENCH_PIPELINE_LEARNED");
    if (learned != NULL && *learned != '\0' && learned_import(learned, d.store) != 0) {
        sim_stop(&sk);
        legacies_kill(lr);
        return -1;
    }
    int64_t start = bu_mono_ms();
    rc = daemon_start(&d, cx->kdeals);
    if (rc != 0) {
        sim_stop(&sk);
        legacies_kill(lr);
        return -1;
    }
    char err[256];
    struct st_env *env = NULL;
    struct st_options so = {.path = d.store, .map_size_bytes = 256ull << 20};
    if (st_open(&so, &env, err, sizeof(err)) != 0)
        fprintf(stderr, "bench_pipeline: store: %s (deals counted at the end only)\n", err);

    /* The run: poll every oracle every POLL_KEEPA_MIN Keepa minutes, scan the store. */
    int64_t end = start + duration_ms;
    int64_t next_scan = 0;
    for (int64_t now = bu_mono_ms(); now < end; now = bu_mono_ms()) {
        int64_t wall = kd_wall_ms();
        oracle_poll(cx->curl, sk.port, &K.listed, wall);
        for (int i = 0; i < N_LEGACY; i++)
            oracle_poll(cx->curl, lr[i].sim.port, &lr[i].side.listed, wall);
        if (K.first_poll_ms == 0) {
            K.first_poll_ms = wall;
            for (int i = 0; i < N_LEGACY; i++)
                lr[i].side.first_poll_ms = wall;
        }
        if (env != NULL && now >= next_scan) {
            store_scan(env, &K.stored);
            next_scan = now + STORE_SCAN_MS;
        }
        int64_t next = now + POLL_KEEPA_MIN * g_minute_ms;
        if (next > end)
            next = end;
        int64_t left = next - bu_mono_ms();
        if (left > 0)
            bu_sleep_ms(left);
    }
    double cpu_roles[SHM_PIPELINE_ROLES];
    double cpu_end = daemon_cpu(&d, cpu_roles);
    long hwm[SHM_PIPELINE_ROLES];
    for (int r = 0; r < SHM_PIPELINE_ROLES; r++) {
        pid_t pid = role_pid(&d, r);
        hwm[r] = pid > 0 ? proc_hwm_kb(pid) : -1;
    }
    struct rusage ru;
    memset(&ru, 0, sizeof(ru));
    int st = daemon_stop(&d, &ru);
    int64_t end_wall_ms = kd_wall_ms();
    K.L1 = bu_ledger_read(cx->curl, sk.port);
    struct sim_clock clk1 = clock_read(cx->curl, sk.port);
    struct shown_list shown = {0};
    if (env != NULL) {
        store_scan(env, &K.stored);
        if (shown_from_changes(env, end_wall_ms, &shown) != 0)
            fprintf(stderr, "bench_pipeline: the store's change log could not be read\n");
        st_close(env);
    }
    for (int i = 0; i < N_LEGACY; i++) {
        lr[i].status = reap(lr[i].pid, STOP_DEADLINE_MS, NULL);
        lr[i].pid = -1;
        lr[i].side.L1 = bu_ledger_read(cx->curl, lr[i].sim.port);
        parse_legacy(lr[i].out, &lr[i].side.stored, lr[i].summary, sizeof(lr[i].summary));
    }

    /* The segment stays mapped after the daemon removed it: the final counters. */
    const struct shm_layout *l = d.seg.layout;
    int64_t peeked = shm_counter_total(l, SHM_C_asins_peeked);
    int64_t discovered = shm_counter_total(l, SHM_C_asins_discovered);
    int64_t survivors = shm_counter_total(l, SHM_C_survivors);
    int64_t committed = shm_counter_total(l, SHM_C_deals_committed);
    int64_t expired = shm_counter_total(l, SHM_C_deals_expired);
    int64_t refreshed = shm_counter_total(l, SHM_C_deals_refreshed);
    int64_t spent[SHM_PIPELINE_ROLES];
    for (int r = 0; r < SHM_PIPELINE_ROLES; r++)
        spent[r] = role_counter(&d, r, SHM_C_tokens_spent);
    int64_t daemon_429 = shm_counter_total(l, SHM_C_http_429);
    uint64_t peek_asins = role_hist_sum(&d, SHM_ROLE_SCANNER, SHM_C_batch_asins);
    uint64_t commit_asins = role_hist_sum(&d, SHM_ROLE_COMMITTER, SHM_C_batch_asins);
    uint32_t restarts = 0;
    for (int r = SHM_ROLE_SCANNER; r < SHM_PIPELINE_ROLES; r++)
        restarts += atomic_load(&l->procs[r].restarts);
    /* What value per token learned and did (`kdeals stat` shows the same gauges). */
    int64_t learned_v[SHM_VALUE_GAUGES];
    for (size_t i = 0; i < SHM_VALUE_GAUGES; i++)
        learned_v[i] = shm_counter_total(l, shm_value_gauges[i]);
    shm_segment_detach(&d.seg);

    double oracle = oracle_min_per_deal(cx->curl, sk.port, &K.stored);
    /* The value figures, from the truth of kdeals' simulator (legacy's has the same catalog
     * and clock); the bound spends the tokens the plan offered kdeals. */
    struct value_figs vf;
    double offered_k =
        (double)(K.L0.left + K.L1.earned - K.L0.earned + K.L1.expired - K.L0.expired);
    char dump[sizeof(d.dir) + 16];
    snprintf(dump, sizeof(dump), "%s/truth.tsv", d.dir);
    value_kdeals(cx->curl, sk.port, &shown, &clk1, clk0.now_min, clk1.now_min + 1, offered_k,
                 cx->keep ? dump : NULL, &vf);
    double legacy_captured[N_LEGACY];
    size_t legacy_captured_n[N_LEGACY];
    for (int i = 0; i < N_LEGACY; i++)
        legacy_captured[i] =
            value_legacy(cx->curl, lr[i].sim.port, &lr[i].side.stored, &legacy_captured_n[i]);
    sim_stop(&sk);
    legacies_kill(lr);

    printf("-- (b) %ld/min plan, %ld Keepa minutes at %d ms each (%.0f s), seed %ld, %ld "
           "products, %s\n",
           rate, minutes, (int)g_minute_ms, (double)duration_ms / 1000.0, cx->seed, cx->products,
           economy_arg() + 2);
    bench("rate", (double)rate, "tokens/min");
    double tpd_k = NAN, tpd_g[N_LEGACY];
    side_figures("", &K, &tpd_k);
    bench("tokens_per_deal_acquire",
          ratio((double)(spent[SHM_ROLE_SCANNER] + spent[SHM_ROLE_COMMITTER]), (double)K.stored.n),
          "tokens");
    bench("peeks_per_deal", ratio((double)peek_asins, (double)K.stored.n), "asins");
    /* The deals in the store at the end whose sell price a ceiling (the Buy Box of the
     * condition, 90 % of Amazon's price, the maximum) lowered from its basis. */
    bench("deals_capped_pct",
          g_scan_deals > 0 ? 100.0 * (double)g_scan_capped / (double)g_scan_deals : 0.0, "%");
    bench("commits_per_deal", ratio((double)commit_asins, (double)K.stored.n), "asins");
    bench("oracle_min_tokens_per_deal", oracle, "tokens");
    bench("tokens_per_deal_vs_oracle", ratio(tpd_k, oracle), "x");
    /* The same against acquisition only (pages, peeks, full fetches: the scanner's and the
     * committer's tokens, recommits included), what the oracle's minimum prices; the figure
     * above adds the updater's re-checks, which the oracle, knowing the truth, never needs. */
    bench("tokens_per_deal_acquire_vs_oracle",
          ratio(ratio((double)(spent[SHM_ROLE_SCANNER] + spent[SHM_ROLE_COMMITTER]),
                      (double)K.stored.n),
                oracle),
          "x");
    /* The value figures (bench/README.md, "Value figures"). */
    bench("true_deals", (double)vf.true_n, "deals");
    bench("true_deals_listed", (double)vf.listed_n, "deals");
    bench("profit_bound", vf.bound / 100.0, "usd");
    bench("profit_bound_deals", (double)vf.bound_n, "deals");
    bench("profit_bound_listed", vf.bound_listed / 100.0, "usd");
    bench("profit_captured", vf.captured / 100.0, "usd");
    bench("profit_captured_deals", (double)vf.captured_n, "deals");
    bench("profit_capture_pct", 100.0 * ratio(vf.captured, vf.bound), "%");
    bench("profit_capture_listed_pct", 100.0 * ratio(vf.captured, vf.bound_listed), "%");
    for (int i = 0; i < N_LEGACY; i++) { /* legacy captured nothing: infinitely better */
        char name[96];
        snprintf(name, sizeof(name), "vs_%s_profit", lr[i].tag);
        bench(name,
              legacy_captured[i] > 0 ? vf.captured / legacy_captured[i]
              : vf.captured > 0      ? INFINITY
                                     : NAN,
              "x");
    }
    bench("time_to_store_top10_median", vf.top_median, "keepa_min");
    bench("time_to_store_top10_stored_median", vf.top_stored_median, "keepa_min");
    bench("top10_deals", (double)vf.top_n, "deals");
    bench("top10_stored", (double)vf.top_stored, "deals");
    bench("shown_deals", (double)vf.shown_asins, "deals");
    bench("deal_hours_per_deal", ratio(vf.deal_min / 60.0, (double)vf.shown_asins), "keepa_h");
    bench("stale_hours_per_deal", ratio(vf.stale_min / 60.0, (double)vf.shown_asins), "keepa_h");
    for (int i = 0; i < N_LEGACY; i++) {
        char prefix[64], name[96];
        snprintf(prefix, sizeof(prefix), "%s.", lr[i].tag);
        side_figures(prefix, &lr[i].side, &tpd_g[i]);
        snprintf(name, sizeof(name), "vs_%s_tokens_per_deal", lr[i].tag);
        bench(name, ratio(tpd_g[i], tpd_k), "x");
        snprintf(name, sizeof(name), "%s.profit_captured", lr[i].tag);
        bench(name, legacy_captured[i] / 100.0, "usd");
        snprintf(name, sizeof(name), "%s.profit_captured_deals", lr[i].tag);
        bench(name, (double)legacy_captured_n[i], "deals");
    }
    for (size_t i = 0; i < SHM_VALUE_GAUGES; i++) {
        char name[96];
        snprintf(name, sizeof(name), "learned.%s", shm_counter_meta[shm_value_gauges[i]].name);
        bench(name, (double)learned_v[i],
              strstr(name, "_bp")    ? "bp"
              : strstr(name, "_min") ? "keepa_min"
                                     : "count");
    }
    double cpu_life = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
                      (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
    bench("day.cpu_s", cpu_life, "s");
    for (int r = 0; r < SHM_PIPELINE_ROLES; r++) {
        char name[64];
        snprintf(name, sizeof(name), "day.rss_peak.%s", role_names[r]);
        bench(name, hwm[r] >= 0 ? (double)hwm[r] : NAN, "KiB");
    }

    printf("   kdeals: %" PRId64 " ASINs discovered, %" PRId64 " peeked, %" PRId64
           " survivors, %" PRId64 " deals committed, %" PRId64 " refreshed, %" PRId64
           " expired; %zu distinct deals stored; tokens by role (daemon counters): scanner "
           "%" PRId64 ", committer %" PRId64 ", updater %" PRId64 "; sim ledger: %" PRId64
           " /deal requests, %" PRId64 " /product requests (%" PRId64 " ASINs, %" PRId64
           " distinct), %" PRId64 " /token calls; daemon saw %" PRId64
           " 429s; %u worker restarts; CPU %.1f s (at stop: %.1f s); exit status %d\n",
           discovered, peeked, survivors, committed, refreshed, expired, K.stored.n,
           spent[SHM_ROLE_SCANNER], spent[SHM_ROLE_COMMITTER], spent[SHM_ROLE_UPDATER],
           K.L1.deal_requests - K.L0.deal_requests, K.L1.product_requests - K.L0.product_requests,
           K.L1.asins_requested - K.L0.asins_requested, K.L1.asins_distinct,
           K.L1.token_requests - K.L0.token_requests, daemon_429, restarts, cpu_life, cpu_end, st);
    for (int i = 0; i < N_LEGACY; i++) {
        const struct bu_ledger *a = &lr[i].side.L0, *b = &lr[i].side.L1;
        printf("   %s:%s; sim ledger: %" PRId64 " /deal, %" PRId64 " /product requests "
               "(%" PRId64 " ASINs, %" PRId64 " distinct); exit status %d\n",
               lr[i].tag, lr[i].summary, b->deal_requests - a->deal_requests,
               b->product_requests - a->product_requests, b->asins_requested - a->asins_requested,
               b->asins_distinct, lr[i].status);
    }
    printf("   summary: kdeals %.1f tokens/deal (oracle minimum %.1f), utilisation %.1f %%, "
           "%" PRId64 " 429s; legacy (all pages) %.1f tokens/deal = %.2fx kdeals; legacy "
           "(page 0 only) %.1f tokens/deal = %.2fx kdeals (targets: >= 98 %%, 0 429s, >= 3x)\n",
           tpd_k, oracle,
           100.0 *
               ratio((double)(K.L1.consumed - K.L0.consumed),
                     (double)(K.L0.left + K.L1.earned - K.L0.earned + K.L1.expired - K.L0.expired)),
           K.L1.http_429 - K.L0.http_429, tpd_g[0], ratio(tpd_g[0], tpd_k), tpd_g[1],
           ratio(tpd_g[1], tpd_k));
    seen_free(&K.listed);
    seen_free(&K.stored);
    free(shown.v);
    for (int i = 0; i < N_LEGACY; i++) {
        seen_free(&lr[i].side.listed);
        seen_free(&lr[i].side.stored);
    }
    return 0;
}

/* ---- main ------------------------------------------------------------------------------ */

struct learned_copy {
    struct st_txn *from;
    size_t n;
};

static int learned_copy_fn(struct st_txn *txn, void *ud)
{
    struct learned_copy *lc = ud;
    return st_learned_copy(lc->from, txn, &lc->n);
}

/* Gives the new store at TO what the store at FROM learned. Returns 0 or -1 (said). */
static int learned_import(const char *from, const char *to)
{
    char err[256];
    struct st_env *src = NULL, *dst = NULL;
    struct st_options so = {.path = from}, dopt = {.path = to, .map_size_bytes = 256ull << 20};
    struct learned_copy lc = {0};
    int rc = st_open_existing(&so, &src, err, sizeof(err));
    if (rc == 0)
        rc = st_open(&dopt, &dst, err, sizeof(err));
    if (rc == 0 && (rc = st_read_begin(src, &lc.from)) == 0) {
        rc = st_write(dst, learned_copy_fn, &lc);
        st_read_end(lc.from);
        snprintf(err, sizeof(err), "%s", st_strerror(rc));
    }
    st_close(dst);
    st_close(src);
    if (rc != 0 || lc.n == 0) {
        fprintf(stderr, "bench_pipeline: BENCH_PIPELINE_LEARNED=%s: %s\n", from,
                rc != 0 ? err : "no learned state in that store");
        return -1;
    }
    printf("   warm: the daemon starts with the learned state of %s (%zu records)\n", from, lc.n);
    return 0;
}

static int rm_rf(const char *path)
{
    char cmd[PATH_MAX + 32];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", path);
    return system(cmd);
}

int main(int argc, char **argv)
{
    const char *build = argc > 1 ? argv[1] : "build";
    struct ctx cx;
    memset(&cx, 0, sizeof(cx));
    snprintf(cx.kdeals, sizeof(cx.kdeals), "%s/kdeals", build);
    snprintf(cx.sim, sizeof(cx.sim), "%s/kdeals-sim", build);
    snprintf(cx.legacy, sizeof(cx.legacy), "%s/bench_legacy", build);
    const char *need[] = {cx.kdeals, cx.sim, cx.legacy};
    for (size_t i = 0; i < 3; i++) {
        if (access(need[i], X_OK) != 0) {
            fprintf(stderr, "bench_pipeline: %s: not found; usage: bench_pipeline BUILD_DIR\n",
                    need[i]);
            return 2;
        }
    }
    cx.seed = bu_env_long("bench_pipeline", "BENCH_PIPELINE_SEED", 1, 0, LONG_MAX);
    cx.products = bu_env_long("bench_pipeline", "BENCH_PIPELINE_PRODUCTS", 20000, 1, 100000000);
    const char *keep = getenv("BENCH_PIPELINE_KEEP");
    cx.keep = keep != NULL && strcmp(keep, "1") == 0;
    const char *extra_path = getenv("BENCH_PIPELINE_CONF");
    if (extra_path != NULL && *extra_path != '\0') {
        FILE *f = fopen(extra_path, "r");
        size_t len = 0;
        if (f != NULL) {
            cx.conf_extra = calloc(1, 65536);
            len = cx.conf_extra ? fread(cx.conf_extra, 1, 65535, f) : 0;
            fclose(f);
        }
        if (cx.conf_extra == NULL || len == 0) {
            fprintf(stderr, "bench_pipeline: BENCH_PIPELINE_CONF=%s: unreadable or empty\n",
                    extra_path);
            return 2;
        }
        printf("   every config ends with %s:\n%s\n", extra_path, cx.conf_extra);
    }
    const char *tmp = getenv("TMPDIR");
    snprintf(cx.root, sizeof(cx.root), "%s/bench_pipeline.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (mkdtemp(cx.root) == NULL) {
        perror("bench_pipeline: mkdtemp");
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    cx.curl = curl_easy_init();
    int rc = 0;
    const char *only = getenv("BENCH_PIPELINE_ONLY"); /* "a" or "b" */
    if (only == NULL || strcmp(only, "b") != 0)
        rc |= scenario_throughput(&cx) != 0;
    if (only == NULL || strcmp(only, "a") != 0)
        rc |= scenario_day(&cx) != 0;
    curl_easy_cleanup(cx.curl);
    curl_global_cleanup();
    free(cx.conf_extra);
    if (cx.keep || rc != 0)
        printf("   files kept in %s\n", cx.root);
    else
        rm_rf(cx.root);
    return rc;
}
