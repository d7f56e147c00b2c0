/*
 * test_scanner.c: the real daemon (`kdeals run -c FILE`, all three workers) against the real
 * kdeals-sim with an accelerated Keepa minute, checking what the scanner promises:
 *
 *   - survivors are written to `pending` (with their `seen` record) and pushed to the ring;
 *   - every peek request holds at most [scan] peek_batch ASINs (the scanner's batch_asins
 *     histogram in shm: batch sizes 31 and 7 are chosen as log2 bucket edges, so the bucket
 *     bound is exact), and a HUP changes the size of the next batches;
 *   - dedup: over two passes no ASIN is paid for twice (sim ledger: distinct vs peeked);
 *   - a 429 storm does not end discovery (F9 in docs/failure-modes.md): the pass still walks
 *     every page;
 *   - failed fetches (HTTP 500) never move the cursor past an unfetched page (F10): the
 *     cursor in LMDB stays put while every fetch fails, and the scanner's page log shows each
 *     pass as pages 0, 1, 2, ... with no gap, ending only on a short page (F11);
 *   - the ASIN list source reads the file, skips comments and bad lines, and retries ASINs
 *     Keepa did not return on the next pass instead of marking them peeked.
 *   - what the peeks taught (the low fees) survives kill -9 of the scanner up to its last
 *     periodic save: the restarted scanner reads back what the store saved.
 *
 * Waits are for observable events (port file, status file, the cursor in LMDB, counters in
 * the segment, the sim's ledger) polled with a deadline; nothing sleeps and hopes.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <yajl/yajl_tree.h>

#include "kd_harness.h"
#include "kd_test.h"
#include "scanner/learned.h"
#include "scanner/pipe.h"
#include "scanner/rules.h"
#include "shm/counters.h"
#include "shm/segment.h"
#include "store/store.h"

#ifdef KD_SANITIZED
#define KD_SANITIZED_BUILD 1
#else
#define KD_SANITIZED_BUILD 0
#endif

#define KDEALS  KD_BUILD_DIR "/kdeals"
#define SIM_BIN KD_BUILD_DIR "/kdeals-sim"

/* This test's own folder inside the file's shared temp folder, and its instance name. */
static char g_dir[300];
static char g_instance[64];
static int g_store_mb = 64; /* [store] map size and cap, MiB */

static const char *test_dir(void)
{
    if (g_dir[0] == '\0') {
        snprintf(g_instance, sizeof(g_instance), "%s", kd_test_instance());
        snprintf(g_dir, sizeof(g_dir), "%s/%s", kd_test_tmpdir(), g_instance);
        assert_int_equal(mkdir(g_dir, 0700), 0);
    }
    return g_dir;
}

/* ---------- the simulator ---------- */

struct sim {
    pid_t pid;
    int port;
};

static struct sim sim_start_v(const char *const *args)
{
    char port_file[512];
    snprintf(port_file, sizeof(port_file), "%s/sim.port", test_dir());
    const char *argv[64];
    int a = 0;
    argv[a++] = SIM_BIN;
    argv[a++] = "--port";
    argv[a++] = "0";
    argv[a++] = "--port-file";
    argv[a++] = port_file;
    argv[a++] = "--quiet";
    argv[a++] = "--economy=rich"; /* survivors every pass */
    for (int i = 0; args[i] != NULL && a < 62; i++)
        argv[a++] = args[i];
    argv[a] = NULL;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        execv(SIM_BIN, (char *const *)argv);
        _exit(127);
    }
    struct sim s = {pid, 0};
    for (int i = 0; i < 2000; i++) {
        FILE *f = fopen(port_file, "r");
        if (f != NULL) {
            int ok = fscanf(f, "%d", &s.port) == 1;
            fclose(f);
            if (ok && s.port > 0)
                return s;
        }
        kdh_nap_ms(10);
    }
    kill(pid, SIGKILL);
    fail_msg("kdeals-sim wrote no port file within 20 s");
    return s;
}
#define sim_start(...) sim_start_v((const char *const[]){__VA_ARGS__, NULL})

static void sim_stop(struct sim *s)
{
    kill(s->pid, SIGTERM);
    int st = 0;
    waitpid(s->pid, &st, 0);
}

struct growbuf {
    char *p;
    size_t n;
};

static size_t on_data(char *d, size_t sz, size_t nm, void *u)
{
    struct growbuf *g = u;
    char *p = realloc(g->p, g->n + sz * nm + 1);
    assert_non_null(p);
    memcpy(p + g->n, d, sz * nm);
    g->n += sz * nm;
    p[g->n] = '\0';
    g->p = p;
    return sz * nm;
}

/* A control request to the sim; returns the parsed JSON body (caller frees). */
static yajl_val sim_call(struct sim *s, const char *method, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static yajl_val sim_call(struct sim *s, const char *method, const char *fmt, ...)
{
    char path[4096], url[4200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(path, sizeof(path), fmt, ap);
    va_end(ap);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", s->port, path);
    CURL *c = curl_easy_init();
    struct growbuf g = {NULL, 0};
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &g);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
    if (strcmp(method, "POST") == 0) {
        curl_easy_setopt(c, CURLOPT_POST, 1L);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, "");
    }
    CURLcode rc = curl_easy_perform(c);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(c);
    if (rc != CURLE_OK || status != 200)
        fail_msg("sim %s %s: curl %d, HTTP %ld", method, path, (int)rc, status);
    char err[128];
    yajl_val v = yajl_tree_parse(g.p, err, sizeof(err));
    free(g.p);
    assert_non_null(v);
    return v;
}

/* Integer at the dotted PATH ("endpoints.product.requests") of the sim's ledger. */
static long long sim_stat(struct sim *s, const char *dotted)
{
    yajl_val v = sim_call(s, "GET", "/_sim/stats");
    const char *path[8];
    char buf[128];
    snprintf(buf, sizeof(buf), "%s", dotted);
    int n = 0;
    for (char *save = NULL, *t = strtok_r(buf, ".", &save); t != NULL && n < 7;
         t = strtok_r(NULL, ".", &save))
        path[n++] = t;
    path[n] = NULL;
    yajl_val x = yajl_tree_get(v, path, yajl_t_number);
    if (x == NULL || !YAJL_IS_INTEGER(x))
        fail_msg("sim stats: no integer at %s", dotted);
    long long r = YAJL_GET_INTEGER(x);
    yajl_tree_free(v);
    return r;
}

static void sim_faults(struct sim *s, const char *spec)
{
    yajl_tree_free(sim_call(s, "POST", "/_sim/faults?spec=%s", spec));
}

/* Up to MAX ASINs the oracle lists for the built-in selection's price type (Used drops). */
static int sim_deal_asins(struct sim *s, char asins[][11], int max)
{
    yajl_val v =
        sim_call(s, "GET", "/_sim/deals?selection=%%7B%%22priceTypes%%22%%3A%%5B2%%5D%%7D");
    const char *path[] = {"asins", NULL};
    yajl_val list = yajl_tree_get(v, path, yajl_t_array);
    assert_non_null(list);
    int n = 0;
    for (size_t i = 0; i < list->u.array.len && n < max; i++)
        snprintf(asins[n++], 11, "%s", YAJL_GET_STRING(list->u.array.values[i]));
    yajl_tree_free(v);
    return n;
}

/* ---------- the daemon ---------- */

struct daemon {
    pid_t pid;
    char conf[512];
    char log[512];
    char run_dir[512];
    char store[512];
    const char *instance;
    struct shm_segment seg;
    struct st_env *env;
};

/* Writes the config: the common part plus EXTRA lines for [scan] (and more sections). */
static void write_conf(struct daemon *d, struct sim *s, const char *minute, const char *scan)
{
    FILE *f = fopen(d->conf, "w");
    assert_non_null(f);
    fprintf(f,
            "[keepa]\nbase_url = http://127.0.0.1:%d\nkey_file = %s/key\n"
            "[daemon]\ninstance = %s\nrun_dir = %s\nstop_timeout = 10s\nlog_level = debug\n"
            "[store]\npath = %s\nmap_size_mb = %d\nmax_map_size_mb = %d\n"
            "[tokens]\nminute = %s\n" KDH_JUDGEMENT "[scan]\n%s\n",
            s->port, test_dir(), d->instance, d->run_dir, d->store, g_store_mb, g_store_mb, minute,
            scan);
    fclose(f);
}

static void daemon_start(struct daemon *d, struct sim *s, const char *minute, const char *scan)
{
    memset(d, 0, sizeof(*d));
    d->instance = (test_dir(), g_instance);
    snprintf(d->conf, sizeof(d->conf), "%s/kdeals.conf", test_dir());
    snprintf(d->log, sizeof(d->log), "%s/kdeals.log", test_dir());
    snprintf(d->run_dir, sizeof(d->run_dir), "%s/run", test_dir());
    snprintf(d->store, sizeof(d->store), "%s/store", test_dir());
    mkdir(d->run_dir, 0700);
    char key[512];
    snprintf(key, sizeof(key), "%s/key", test_dir());
    int fd = open(key, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    /* A key of this test process: its bucket is nobody else's (kd_harness.h kdh_key). */
    assert_true(dprintf(fd, "%s\n", kdh_key("testkey")) > 0);
    close(fd);
    write_conf(d, s, minute, scan);

    d->pid = fork();
    assert_true(d->pid >= 0);
    if (d->pid == 0) {
        int lfd = open(d->log, O_WRONLY | O_CREAT | O_APPEND, 0600);
        dup2(lfd, 2);
        dup2(lfd, 1);
        execl(KDEALS, KDEALS, "run", "-c", d->conf, (char *)NULL);
        _exit(127);
    }
    struct shm_status st;
    if (!KDH_WAIT_FOR(shm_status_read(d->run_dir, d->instance, &st) == 0 &&
                          strcmp(st.state, "running") == 0 && st.pid == d->pid,
                      20))
        fail_msg("kdeals did not reach running (log %s)", d->log);
    char err[256];
    assert_int_equal(shm_segment_attach(&d->seg, d->instance, SHM_READ_ONLY, err, sizeof(err)), 0);
    if (!KDH_WAIT_FOR(atomic_load(&d->seg.layout->procs[SHM_ROLE_SCANNER].state) == SHM_PROC_READY,
                      20))
        fail_msg("the scanner did not become ready (log %s)", d->log);
    struct st_options so = {.path = d->store,
                            .map_size_bytes = (uint64_t)g_store_mb << 20,
                            .max_map_size_bytes = (uint64_t)g_store_mb << 20};
    assert_int_equal(st_open(&so, &d->env, err, sizeof(err)), 0);
}

/* Stops the daemon; the scanner must exit cleanly (status 0, also under ASan). */
static void daemon_stop(struct daemon *d)
{
    int64_t scanner_pid = atomic_load(&d->seg.layout->procs[SHM_ROLE_SCANNER].pid);
    kill(d->pid, SIGTERM);
    int status = 0;
    assert_true(KDH_WAIT_FOR(waitpid(d->pid, &status, WNOHANG) == d->pid, 30));
    assert_true(scanner_pid > 0);
    assert_int_equal(atomic_load(&d->seg.layout->procs[SHM_ROLE_SCANNER].last_exit_status), 0);
    shm_segment_detach(&d->seg);
    st_close(d->env);
}

static int64_t scanner_counter(struct daemon *d, enum shm_counter_id id)
{
    return shm_counter_get(&d->seg.layout->counters[SHM_ROLE_SCANNER], id);
}

static uint64_t batch_bucket(struct daemon *d, unsigned b)
{
    return atomic_load(
        &d->seg.layout->counters[SHM_ROLE_SCANNER].hist[SHM_C_batch_asins].buckets[b]);
}

/* Peek batches recorded with sizes in buckets [LO, HI] (bucket b holds [2^(b-1), 2^b)). */
static uint64_t batches_in(struct daemon *d, unsigned lo, unsigned hi)
{
    uint64_t n = 0;
    for (unsigned b = lo; b <= hi && b < SHM_HIST_BUCKETS; b++)
        n += batch_bucket(d, b);
    return n;
}

/* The cursor as stored in LMDB (zeroed when none yet). */
static struct scanner_cursor cursor(struct daemon *d)
{
    struct scanner_cursor c;
    memset(&c, 0, sizeof(c));
    struct st_txn *txn;
    assert_int_equal(st_read_begin(d->env, &txn), 0);
    uint8_t buf[SCANNER_CURSOR_BYTES];
    size_t n = 0;
    if (st_meta_get_bytes(txn, "scanner.cursor", buf, sizeof(buf), &n) == 0)
        assert_int_equal(scanner_cursor_decode(buf, n, &c), 0);
    st_read_end(txn);
    return c;
}

static char *read_log(struct daemon *d);

/* Prints the scanner's last log lines (what the test saw), for a failure message. */
static void dump_log(struct daemon *d)
{
    char *log = read_log(d);
    size_t n = strlen(log), lines = 0;
    size_t i = n;
    while (i > 0 && lines < 60)
        if (log[--i] == '\n')
            lines++;
    fprintf(stderr, "---- last lines of %s ----\n%s\n----\n", d->log, log + i);
    free(log);
}

#define EXPECT(d, cond, seconds)                                                                   \
    do {                                                                                           \
        if (!KDH_WAIT_FOR(cond, seconds)) {                                                        \
            dump_log(d);                                                                           \
            fail_msg("timed out waiting for %s", #cond);                                           \
        }                                                                                          \
    } while (0)

static char *read_log(struct daemon *d)
{
    size_t len;
    char *log = kd_read_file(d->log, &len);
    assert_non_null(log);
    return log;
}

static bool log_has(struct daemon *d, const char *needle)
{
    char *log = read_log(d);
    bool has = strstr(log, needle) != NULL;
    free(log);
    return has;
}

/*
 * Checks the scanner's page log lines: every pass is pages 0, 1, 2, ... with no gap and no
 * page recorded twice (a delta page, read between them by the `delta` and `lane` rules once the
 * Keepa minutes allow, is outside the cursor and logged as a "delta page"), every page but a pass's
 * last is full (150), and a pass's last page is short (or page 66, or reached the fresh rule's
 * horizon). Returns the number of complete passes; *FAILED_THEN_OK counts pages that failed and
 * were then fetched (the first success after a failure is the same page).
 */
static int check_page_log(struct daemon *d, int *failed_then_ok)
{
    char *log = read_log(d);
    long long expect_page = 0, pass = 0, last_items = -1, failed_page = -1;
    int passes = 0;
    *failed_then_ok = 0;
    for (char *line = strtok(log, "\n"); line != NULL; line = strtok(NULL, "\n")) {
        if (strstr(line, "scanner[") == NULL)
            continue;
        const char *p;
        long long page, ps, items;
        if ((p = strstr(line, "deal page ")) != NULL &&
            sscanf(p, "deal page %lld (pass %lld): %lld items", &page, &ps, &items) == 3) {
            if (failed_page >= 0) {
                if (page != failed_page)
                    fail_msg("page %lld failed but page %lld came next", failed_page, page);
                (*failed_then_ok)++;
                failed_page = -1;
            }
            if (ps != pass)
                fail_msg("a page of pass %lld was recorded during pass %lld", ps, pass);
            if (page != expect_page) {
                dump_log(d);
                fail_msg("pass %lld: page %lld recorded where page %lld was due", ps, page,
                         expect_page);
            }
            if (page > 0 && last_items != 150)
                fail_msg("pass %lld: page %lld followed a page of %lld items", ps, page,
                         last_items);
            expect_page = page + 1;
            last_items = items;
        } else if ((p = strstr(line, "deal page ")) != NULL && strstr(p, " failed (") != NULL &&
                   sscanf(p, "deal page %lld", &page) == 1) {
            if (page != expect_page)
                fail_msg("page %lld failed while page %lld was due", page, expect_page);
            failed_page = page;
        } else if ((p = strstr(line, "discovery from ")) != NULL &&
                   sscanf(p, "discovery from deals, pass %lld, page %lld", &ps, &page) == 2) {
            /* A (re)started scanner resumes from the stored cursor: the page it was working
             * on when it died is fetched again, later pages were never recorded. */
            if (ps < pass || (ps == pass && page > expect_page))
                fail_msg("restart at pass %lld page %lld after pass %lld page %lld", ps, page, pass,
                         expect_page - 1);
            pass = ps;
            expect_page = page;
            last_items = page > 0 ? 150 : -1;
            failed_page = -1;
        } else if ((p = strstr(line, "INFO  scanner[")) != NULL && strstr(p, " done: ") != NULL &&
                   (p = strstr(p, "]: pass ")) != NULL && sscanf(p, "]: pass %lld", &ps) == 1) {
            /* A pass ends only after a short page (or page 66), or with the fresh rule after
             * a page that reached the last pass's horizon; never on an error. */
            bool horizon = strstr(p, "newest first to the horizon") != NULL;
            if (ps != pass || last_items < 0 ||
                (last_items >= 150 && expect_page - 1 != 66 && !horizon))
                fail_msg("pass %lld ended after page %lld of %lld items", ps, expect_page - 1,
                         last_items);
            passes++;
            pass = ps + 1;
            expect_page = 0;
            last_items = -1;
        }
    }
    free(log);
    return passes;
}

/*
 * Counts the scanner's "peeked again" lines (dedup let an ASIN through), failing on any whose
 * feed data did not change: lastUpdate X -> X with the same prices.
 */
static int count_repeeks(struct daemon *d)
{
    char *log = read_log(d);
    int n = 0;
    for (char *line = strtok(log, "\n"); line != NULL; line = strtok(NULL, "\n")) {
        const char *p = strstr(line, "peeked again: lastUpdate ");
        if (p == NULL || strstr(line, "scanner[") == NULL)
            continue;
        long long a, b;
        if (sscanf(p, "peeked again: lastUpdate %lld -> %lld", &a, &b) != 2)
            fail_msg("unreadable line: %s", line);
        if (a == b && strstr(p, "prices same") != NULL)
            fail_msg("peeked again although unchanged: %s", line);
        n++;
    }
    free(log);
    return n;
}

static uint64_t count_db(struct daemon *d, enum st_db db)
{
    struct st_txn *txn;
    assert_int_equal(st_read_begin(d->env, &txn), 0);
    uint64_t n = 0;
    assert_int_equal(st_count(txn, db, &n), 0);
    st_read_end(txn);
    return n;
}

/* ---------- tests ---------- */

/*
 * Two passes over the built-in deal selection. Commits and refreshes are slowed by latency on
 * offers requests, so the survivors stay in `pending` while the test looks at them.
 */
static void test_survivors_dedup_batches(void **state)
{
    (void)state;
    /* A 2 s Keepa minute: the sim re-stamps a product (lastUpdate) every 120 Keepa minutes,
     * so two passes a few seconds apart see the same feed data and dedup must hold. 1200
     * products give ~160 survivors: below the committer backlog at which the scanner pauses
     * (4 x commit batch x 10), so the second pass follows at once. */
    struct sim s = sim_start("--products", "1200", "--minute-ms", "2000", "--refill-rate", "3000",
                             "--faults", "offers_latency_ms=3000-3000");
    struct daemon d;
    daemon_start(&d, &s, "2000ms", "peek_batch = 31\npass_pause = 1s");

    EXPECT(&d, cursor(&d).pass >= 2, 90);
    int64_t discovered = scanner_counter(&d, SHM_C_asins_discovered);
    int64_t prefiltered = scanner_counter(&d, SHM_C_asins_prefiltered);
    int64_t peeked = scanner_counter(&d, SHM_C_asins_peeked);
    int64_t survivors = scanner_counter(&d, SHM_C_survivors);
    int64_t pushed = scanner_counter(&d, SHM_C_ring_records_out);
    long long distinct = sim_stat(&s, "asins_distinct");

    /* Discovery read the feed twice, the pre-filter and dedup kept most of it from peeks. */
    assert_true(survivors > 0);
    assert_true(prefiltered > 0);
    assert_true(discovered >= peeked + prefiltered);
    /* No ASIN paid for twice unless the feed changed: every peek beyond the distinct ASINs
     * the sim saw is a re-peek the scanner logged with a new lastUpdate or new prices (a few
     * products are re-stamped between passes). The second pass re-read the rest for free. */
    int repeeks = count_repeeks(&d);
    if (peeked > distinct + repeeks || repeeks > distinct / 4) {
        dump_log(&d);
        fail_msg("%lld ASINs peeked for %lld distinct, %d re-peeks of changed products",
                 (long long)peeked, distinct, repeeks);
    }
    assert_true(discovered >= 2 * peeked * 8 / 10);
    /* Every survivor was pushed (refreshes of stored deals come on top). */
    assert_true(pushed >= survivors);

    /* Batches: all of at most 31 ASINs (buckets <= 5), most of them full-sized. */
    assert_int_equal(batches_in(&d, 6, SHM_HIST_BUCKETS - 1), 0);
    assert_true(batch_bucket(&d, 5) > 0);

    /* Survivors are in pending with their seen record (verdict survivor). */
    struct st_txn *txn;
    assert_int_equal(st_read_begin(d.env, &txn), 0);
    struct st_cursor *cur;
    assert_int_equal(st_cursor_open(txn, ST_DB_PENDING, &cur), 0);
    struct st_pending p;
    uint64_t n_pending = 0;
    while (st_cursor_next_pending(cur, &p) == 0) {
        n_pending++;
        assert_int_equal(p.source, ST_SOURCE_DEALS);
        assert_int_equal(p.domain, 1);
        assert_true(p.peek_ms > 0 && p.peek_buy_cents > 0 && p.sell_estimate_cents > 0);
        struct st_key key;
        struct st_seen seen;
        assert_int_equal(st_pending_key(&p, &key), 0);
        assert_int_equal(st_seen_get(txn, &key, &seen), 0);
        assert_int_equal(seen.verdict, ST_VERDICT_SURVIVOR);
    }
    st_cursor_close(cur);
    st_read_end(txn);
    /* The committer is slowed to ~5 ASINs per 3 s: most survivors still wait in pending. */
    if (n_pending < (uint64_t)survivors / 2)
        fail_msg("%llu pending for %lld survivors", (unsigned long long)n_pending,
                 (long long)survivors);
    assert_true(count_db(&d, ST_DB_SEEN) >= (uint64_t)survivors);

    int refetched = 0;
    assert_true(check_page_log(&d, &refetched) >= 2);
    fprintf(stderr,
            "figures: %lld discovered, %lld pre-filtered or deduped, %lld peeked for %lld distinct "
            "(%d re-peeks of changed products), %lld survivors, %llu pending, %lld ring records\n",
            (long long)discovered, (long long)prefiltered, (long long)peeked, distinct, repeeks,
            (long long)survivors, (unsigned long long)n_pending, (long long)pushed);
    daemon_stop(&d);
    sim_stop(&s);
}

/* A 429 storm mid-pass, then every request failing with HTTP 500 for a while. */
static void test_429_storm_and_failed_fetches(void **state)
{
    (void)state;
    /* 1200 products: ~220 deals on 2 pages, and a committer backlog small enough that the
     * scanner is not paused for it (it would then make no request to fail). */
    struct sim s = sim_start("--products", "1200", "--minute-ms", "100", "--refill-rate", "2000");
    struct daemon d;
    /* The pass pause is kept while tokens pile up (the busy rule of value per token left out):
     * the storm must meet a paused scanner. */
    daemon_start(&d, &s, "100ms",
                 "peek_batch = 50\npass_pause = 2s\n[tokens]\n"
                 "value_rules = order, prescore, fees, recheck, gone");

    /* Pass 0 is done and the scanner pauses 2 s: a storm of 429s starts, so the first
     * request of pass 1, the fetch of its page 0, meets it (docs/failure-modes.md F9). */
    EXPECT(&d, cursor(&d).pass >= 1, 60);
    sim_faults(&s, "storm429=1000000");
    EXPECT(&d, scanner_counter(&d, SHM_C_http_429) >= 3, 30);
    struct scanner_cursor stormed = cursor(&d);
    assert_int_equal(stormed.pass, 1);
    assert_true(stormed.position == 0);
    sim_faults(&s, "clear");
    /* After the storm discovery goes on: pass 1 walks every page to its short last page. */
    EXPECT(&d, cursor(&d).pass >= 2, 60);

    /* The scanner pauses again: now every request fails, so the fetch of page 0 of pass 2
     * fails, and keeps failing. */
    sim_faults(&s, "http500=1");
    struct scanner_cursor frozen = cursor(&d);
    assert_int_equal(frozen.pass, 2);
    assert_true(frozen.position == 0);
    int again = 0;
    assert_int_equal(check_page_log(&d, &again), 2);
    int64_t discovered = scanner_counter(&d, SHM_C_asins_discovered);
    int64_t peeked = scanner_counter(&d, SHM_C_asins_peeked);
    int64_t errors0 = scanner_counter(&d, SHM_C_http_errors);
    /* Two failed fetches of 3 tries each, at least. */
    EXPECT(&d, scanner_counter(&d, SHM_C_http_errors) >= errors0 + 6, 60);
    struct scanner_cursor still = cursor(&d);
    assert_int_equal(still.pass, frozen.pass);
    assert_true(still.position == frozen.position);
    assert_int_equal(scanner_counter(&d, SHM_C_asins_discovered), discovered);
    assert_int_equal(scanner_counter(&d, SHM_C_asins_peeked), peeked);

    /* Back to normal: discovery resumes from exactly the page that failed. */
    sim_faults(&s, "clear");
    EXPECT(&d, cursor(&d).pass >= 3 || cursor(&d).position >= 1, 60);
    int failed_then_ok = 0;
    assert_true(check_page_log(&d, &failed_then_ok) >= 1);
    assert_true(failed_then_ok >= 1); /* the failed page 0 was the next page recorded */

    /* Failures in the middle of a pass (peeks or pages): the cursor does not move either. */
    EXPECT(&d, cursor(&d).position >= 1, 30);
    sim_faults(&s, "http500=1");
    errors0 = scanner_counter(&d, SHM_C_http_errors);
    EXPECT(&d, scanner_counter(&d, SHM_C_http_errors) >= errors0 + 3, 60);
    frozen = cursor(&d);
    peeked = scanner_counter(&d, SHM_C_asins_peeked);
    EXPECT(&d, scanner_counter(&d, SHM_C_http_errors) >= errors0 + 9, 60);
    still = cursor(&d);
    assert_int_equal(still.pass, frozen.pass);
    assert_true(still.position == frozen.position);
    assert_int_equal(scanner_counter(&d, SHM_C_asins_peeked), peeked);
    sim_faults(&s, "clear");
    EXPECT(&d, cursor(&d).pass > frozen.pass || cursor(&d).position > frozen.position, 60);
    EXPECT(&d, cursor(&d).pass >= frozen.pass + 1, 60);
    int passes = check_page_log(&d, &failed_then_ok);
    assert_true(passes >= 3);
    fprintf(stderr,
            "figures: %lld 429s seen by the scanner, %lld scanner HTTP errors, %d failed pages "
            "fetched again as the next page, %d passes\n",
            (long long)scanner_counter(&d, SHM_C_http_429),
            (long long)scanner_counter(&d, SHM_C_http_errors), failed_then_ok, passes);

    /* kill -9 of the scanner in the middle of a pass: its successor resumes at the stored
     * page, not at page 0 (and check_page_log sees no gap). Requests fail meanwhile, so the
     * stored cursor cannot move between the kill and the check. */
    EXPECT(&d, cursor(&d).position >= 1, 30);
    sim_faults(&s, "http500=1");
    errors0 = scanner_counter(&d, SHM_C_http_errors);
    EXPECT(&d, scanner_counter(&d, SHM_C_http_errors) >= errors0 + 3, 60);
    struct scanner_cursor at_kill = cursor(&d);
    int64_t old_pid = atomic_load(&d.seg.layout->procs[SHM_ROLE_SCANNER].pid);
    kill((pid_t)old_pid, SIGKILL);
    char want[96];
    snprintf(want, sizeof(want), "discovery from deals, pass %u, page %llu", at_kill.pass,
             (unsigned long long)at_kill.position);
    EXPECT(&d,
           atomic_load(&d.seg.layout->procs[SHM_ROLE_SCANNER].pid) != old_pid &&
               atomic_load(&d.seg.layout->procs[SHM_ROLE_SCANNER].state) == SHM_PROC_READY,
           30);
    char *log = read_log(&d);
    char *last = NULL;
    for (char *q = strstr(log, "discovery from "); q != NULL; q = strstr(q + 1, "discovery from "))
        last = q;
    assert_non_null(last);
    if (strncmp(last, want, strlen(want)) != 0)
        fail_msg("restarted scanner: '%.60s', want '%s'", last, want);
    free(log);
    sim_faults(&s, "clear");
    EXPECT(&d, cursor(&d).pass > at_kill.pass || cursor(&d).position > at_kill.position, 30);
    assert_true(check_page_log(&d, &failed_then_ok) >= passes);
    daemon_stop(&d);
    sim_stop(&s);
}

/*
 * The ASIN list source, and a HUP that shrinks peek_batch from 31 to 7. The list holds real
 * deal ASINs, ASINs Keepa does not know (the simulator reserves those ending in ZZZZ; Keepa
 * leaves them out: they are retried every pass, never marked peeked), comments and a bad line.
 */
static void test_asin_list_and_hup_batch(void **state)
{
    (void)state;
    struct sim s = sim_start("--products", "2000", "--minute-ms", "100", "--refill-rate", "2000");
    static char real[120][11];
    int n_real = sim_deal_asins(&s, real, 120);
    assert_true(n_real >= 60);
    char list[512];
    snprintf(list, sizeof(list), "%s/asins.txt", test_dir());
    FILE *f = fopen(list, "w");
    assert_non_null(f);
    fprintf(f, "# test list\n\nnot-an-asin\n");
    for (int i = 0; i < 400; i++) {
        if (i % 4 == 0 && i / 4 < n_real)
            fprintf(f, "%s  # real\n", real[i / 4]);
        else
            fprintf(f, "ZZ%04dZZZZ\n", i); /* valid form, one Keepa does not know */
    }
    fclose(f);
    char scan[1024];
    snprintf(scan, sizeof(scan),
             "source = asins\nasins_file = %s\npeek_batch = 31\npass_pause = 200ms", list);
    struct daemon d;
    daemon_start(&d, &s, "100ms", scan);

    EXPECT(&d, cursor(&d).pass >= 2, 60);
    assert_int_equal(cursor(&d).source, CFG_SOURCE_ASINS);
    /* Real ASINs are marked peeked; absent ones are not (asked again every pass). */
    struct st_txn *txn;
    assert_int_equal(st_read_begin(d.env, &txn), 0);
    struct st_key key;
    struct st_seen seen;
    assert_int_equal(st_key_make(1, real[0], &key), 0);
    assert_int_equal(st_seen_get(txn, &key, &seen), 0);
    assert_int_equal(st_key_make(1, "ZZ0001ZZZZ", &key), 0);
    assert_int_equal(st_seen_get(txn, &key, &seen), -ENOENT);
    st_read_end(txn);
    assert_true(scanner_counter(&d, SHM_C_asins_discovered) >= 2 * 400);
    assert_int_equal(batches_in(&d, 6, SHM_HIST_BUCKETS - 1), 0);
    assert_true(batch_bucket(&d, 5) > 0);
    char *log = read_log(&d);
    assert_non_null(strstr(log, ":3: not an ASIN"));
    free(log);

    /* HUP with peek_batch = 7: the next batches hold at most 7 ASINs (buckets <= 3). */
    snprintf(scan, sizeof(scan),
             "source = asins\nasins_file = %s\npeek_batch = 7\npass_pause = 200ms", list);
    write_conf(&d, &s, "100ms", scan);
    uint64_t small0 = batches_in(&d, 0, 3);
    kill(d.pid, SIGHUP);
    /* Up to two batches submitted before the reload may still be counted: wait for new
     * small ones first, then the big buckets must stay still. */
    EXPECT(&d, batches_in(&d, 0, 3) >= small0 + 3, 30);
    uint64_t big = batches_in(&d, 4, SHM_HIST_BUCKETS - 1);
    uint64_t small1 = batches_in(&d, 0, 3);
    EXPECT(&d, batches_in(&d, 0, 3) >= small1 + 20, 30);
    assert_true(batches_in(&d, 4, SHM_HIST_BUCKETS - 1) == big);
    assert_true(batch_bucket(&d, 3) > 0); /* batches of 4..7: the new size is used in full */
    fprintf(stderr, "figures: batches before the HUP <= 31: %llu of 16..31; after: %llu of <= 7\n",
            (unsigned long long)batch_bucket(&d, 5),
            (unsigned long long)(batches_in(&d, 0, 3) - small0));
    daemon_stop(&d);
    sim_stop(&s);
}

static int put_rejected_fn(struct st_txn *txn, void *ud)
{
    const char(*asins)[11] = ud;
    for (int i = 0; i < 3; i++) {
        static struct st_record r;
        st_record_init(&r);
        snprintf(r.asin, sizeof(r.asin), "%s", asins[i]);
        r.domain = 1;
        r.state = ST_STATE_REJECTED;
        r.revision = 1;
        r.rules_hash = 1;
        r.in.data_ms = 1; /* read long ago: it rules nothing out now (scanner_known_fail) */
        int rc = st_record_put(txn, &r, ST_EV_COMMIT, 1);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/*
 * Paid-for peeks are all kept: a peek batch whose first products have a stored record that is
 * not a deal (rejected at a full fetch long ago) still records a verdict for every product
 * it delivered, and those after them reach the committer too (once, a write that stopped at
 * the first such product dropped the rest of the batch: peeked again, paid again).
 */
static void test_peek_batch_kept_past_stored_non_deals(void **state)
{
    (void)state;
    struct sim s = sim_start("--products", "2000", "--minute-ms", "100", "--refill-rate", "2000");
    enum { N = 20 };
    static char real[N][11];
    assert_int_equal(sim_deal_asins(&s, real, N), N);
    char list[512], store[512], err[256];
    snprintf(list, sizeof(list), "%s/asins.txt", test_dir());
    FILE *f = fopen(list, "w");
    assert_non_null(f);
    for (int i = 0; i < N; i++)
        fprintf(f, "%s\n", real[i]);
    fclose(f);
    snprintf(store, sizeof(store), "%s/store", test_dir());
    struct st_options so = {.path = store,
                            .map_size_bytes = (uint64_t)g_store_mb << 20,
                            .max_map_size_bytes = (uint64_t)g_store_mb << 20};
    struct st_env *env = NULL;
    assert_int_equal(st_open(&so, &env, err, sizeof(err)), 0);
    assert_int_equal(st_write(env, put_rejected_fn, real), 0);
    st_close(env);

    char scan[1024];
    snprintf(scan, sizeof(scan), "source = asins\nasins_file = %s\npeek_batch = %d\n", list, N);
    struct daemon d;
    daemon_start(&d, &s, "100ms", scan);
    EXPECT(&d, scanner_counter(&d, SHM_C_asins_peeked) >= N, 30);
    /* The batch's write follows the count: wait for the last verdict, then check them all. */
    struct st_key key;
    struct st_seen seen;
    assert_int_equal(st_key_make(1, real[N - 1], &key), 0);
    EXPECT(&d, ({
        struct st_txn *t = NULL;
        bool got = st_read_begin(d.env, &t) == 0;
        got = got && st_seen_get(t, &key, &seen) == 0;
        if (t != NULL)
            st_read_end(t);
        got;
    }),
           30);
    struct st_txn *txn;
    assert_int_equal(st_read_begin(d.env, &txn), 0);
    for (int i = 0; i < N; i++) {
        assert_int_equal(st_key_make(1, real[i], &key), 0);
        if (st_seen_get(txn, &key, &seen) != 0)
            fail_msg("%s (position %d of the batch) was peeked and has no verdict (see %s)",
                     real[i], i, d.log);
    }
    st_read_end(txn);
    daemon_stop(&d);
    sim_stop(&s);
}

/*
 * The committer's backlog pauses discovery: with full fetches slowed to 2 s, the survivors of
 * the first pages push commit_backlog over 4 x commit batch x 10 = 40, and from the moment
 * the scanner says it paused until it says it resumed it sends at most the (up to 2) requests
 * it had already queued, while the committer keeps working. Without the pause it would have
 * peeked on: tokens are plentiful.
 */
static void test_commit_backlog_pauses_discovery(void **state)
{
    (void)state;
    struct sim s = sim_start("--products", "3000", "--minute-ms", "1000", "--refill-rate", "3000",
                             "--faults", "offers_latency_ms=2000-2000");
    struct daemon d;
    /* Commit batches of 1: the pause threshold is then 40, reached within the first pages
     * whatever share of peeks survive the filter. */
    daemon_start(&d, &s, "1000ms", "peek_batch = 50\npass_pause = 100ms\n[commit]\nbatch = 1");
    struct shm_counter_block *committer = &d.seg.layout->counters[SHM_ROLE_COMMITTER];
    EXPECT(&d, log_has(&d, "]: discovery paused"), 60);
    int64_t c0 = shm_counter_get(committer, SHM_C_http_requests);
    EXPECT(&d, shm_counter_get(committer, SHM_C_http_requests) >= c0 + 3, 60);

    char *log = read_log(&d);
    int windows = 0, busy_windows = 0;
    bool paused = false;
    int scanner_reqs = 0, committer_reqs = 0;
    for (char *line = strtok(log, "\n"); line != NULL; line = strtok(NULL, "\n")) {
        bool sc = strstr(line, "scanner[") != NULL;
        if (sc && strstr(line, "]: discovery paused") != NULL) {
            paused = true;
            scanner_reqs = committer_reqs = 0;
        } else if (sc && strstr(line, "]: discovery resumed") != NULL) {
            paused = false;
            windows++;
            busy_windows += committer_reqs > 0;
        } else if (paused && strstr(line, "keepa: ") != NULL &&
                   (strstr(line, "/product?") != NULL || strstr(line, "/deal?") != NULL)) {
            if (sc && ++scanner_reqs > 2)
                fail_msg("the scanner sent a request while paused: %s", line);
            if (strstr(line, "committer[") != NULL)
                committer_reqs++;
        }
    }
    if (paused) {
        windows++;
        busy_windows += committer_reqs > 0;
    }
    free(log);
    assert_true(windows >= 1);
    assert_true(busy_windows >= 1); /* the committer worked while discovery waited */
    fprintf(stderr, "figures: %d pauses for the commit backlog, %d with committer requests\n",
            windows, busy_windows);
    daemon_stop(&d);
    sim_stop(&s);
}

/* /query as the source: pages of perPage ASINs until a short page. */
static void test_query_source(void **state)
{
    (void)state;
    struct sim s = sim_start("--products", "1200", "--minute-ms", "100", "--refill-rate", "2000");
    char sel[512];
    snprintf(sel, sizeof(sel), "%s/query.json", test_dir());
    FILE *f = fopen(sel, "w");
    assert_non_null(f);
    fprintf(f, "{\"current_SALES_lte\": 200000, \"perPage\": 50, \"page\": 7}\n");
    fclose(f);
    char scan[1024];
    snprintf(scan, sizeof(scan), "source = query\nselection_file = %s\npass_pause = 1h", sel);
    struct daemon d;
    daemon_start(&d, &s, "100ms", scan);
    EXPECT(&d, cursor(&d).pass >= 1, 60);
    assert_int_equal(cursor(&d).source, CFG_SOURCE_QUERY);
    long long pages = sim_stat(&s, "endpoints.query.requests");
    int64_t discovered = scanner_counter(&d, SHM_C_asins_discovered);
    /* Every page but the last held perPage ASINs: pages = discovered / 50 + 1. */
    assert_true(discovered > 0);
    assert_int_equal(pages, discovered / 50 + 1);
    assert_true(scanner_counter(&d, SHM_C_asins_peeked) > 0);
    fprintf(stderr, "figures: /query pass: %lld pages, %lld ASINs, %lld peeked\n", pages,
            (long long)discovered, (long long)scanner_counter(&d, SHM_C_asins_peeked));
    daemon_stop(&d);
    sim_stop(&s);
}

struct junk {
    int first, count;
    bool del;
};

static int junk_fn(struct st_txn *txn, void *ud)
{
    const struct junk *j = ud;
    static uint8_t blob[3000];
    for (int i = j->first; i < j->first + j->count; i++) {
        char name[32];
        snprintf(name, sizeof(name), "test_junk_%d", i);
        int rc = j->del ? st_meta_del(txn, name) : st_meta_put_bytes(txn, name, blob, sizeof(blob));
        if (rc != 0 && !(j->del && rc == -ENOENT))
            return rc;
    }
    return 0;
}

/*
 * A store that cannot take the peek results (1 MiB, full, not allowed to grow): the scanner
 * says so, keeps the paid-for results in memory, asks Keepa for nothing more, and stores
 * them once there is room, without asking again.
 */
static void test_full_store_keeps_peeks_and_retries(void **state)
{
    (void)state;
    struct sim s = sim_start("--products", "1200", "--minute-ms", "100", "--refill-rate", "2000");
    g_store_mb = 1;
    char store[512];
    snprintf(store, sizeof(store), "%s/store", test_dir());
    struct st_options o = {
        .path = store, .map_size_bytes = 1u << 20, .max_map_size_bytes = 1u << 20};
    struct st_env *env = NULL;
    char err[512];
    assert_int_equal(st_open(&o, &env, err, sizeof(err)), 0);
    int filled = 0, rc = 0;
    while (rc == 0) {
        struct junk j = {filled, 1, false};
        rc = st_write(env, junk_fn, &j);
        if (rc == 0)
            filled++;
    }
    assert_int_equal(rc, -EFBIG);
    st_close(env);

    struct daemon d;
    daemon_start(&d, &s, "100ms", "peek_batch = 20\npass_pause = 1h");
    EXPECT(&d, log_has(&d, "store write of a peek batch failed"), 30);
    /* (A first batch may still have fitted in the last free pages.) */
    int64_t peeked0 = scanner_counter(&d, SHM_C_asins_peeked);

    /* Room again (another process grows the map and frees the junk; the scanner adopts the
     * larger map at its next transaction). */
    st_close(d.env);
    o.map_size_bytes = o.max_map_size_bytes = 8u << 20;
    assert_int_equal(st_open(&o, &d.env, err, sizeof(err)), 0);
    struct junk j = {0, filled, true};
    assert_int_equal(st_write(d.env, junk_fn, &j), 0);
    struct junk touch = {filled + 1, 1, false};
    assert_int_equal(st_write(d.env, junk_fn, &touch), 0);
    EXPECT(&d, log_has(&d, "the delayed store write succeeded"), 30);
    EXPECT(&d, scanner_counter(&d, SHM_C_asins_peeked) > peeked0, 30);
    assert_true(count_db(&d, ST_DB_SEEN) > 0);

    /* Between the failure and the delayed write the scanner sent no request. */
    if (getenv("KD_SCANNER_DUMP"))
        dump_log(&d);
    char *log = read_log(&d);
    char *from = strstr(log, "store write of a peek batch failed");
    char *to = strstr(log, "the delayed store write succeeded");
    assert_true(from != NULL && to != NULL && from < to);
    *to = '\0';
    int sent = 0;
    for (char *line = strtok(from, "\n"); line != NULL; line = strtok(NULL, "\n"))
        if (strstr(line, "scanner[") != NULL && strstr(line, "keepa: ") != NULL &&
            (strstr(line, "/product?") != NULL || strstr(line, "/deal?") != NULL))
            sent++;
    free(log);
    if (sent != 0)
        fail_msg("%d scanner requests while its results waited for the store", sent);
    daemon_stop(&d);
    sim_stop(&s);
}

/* Lines of the daemon's log that hold NEEDLE, from the scanner. */
static int scanner_lines(struct daemon *d, const char *needle)
{
    char *log = read_log(d);
    int n = 0;
    for (char *line = strtok(log, "\n"); line != NULL; line = strtok(NULL, "\n"))
        if (strstr(line, "scanner[") != NULL && strstr(line, needle) != NULL)
            n++;
    free(log);
    return n;
}

/*
 * Of the pages the scanner's log says were taken from the pipe still in flight, not the last of
 * their pass, how many were read (their "deal page N (pass P): ..." record line) before page N+1
 * of the pass had been asked for; CHECKED gets how many such pages there were. Passes not done
 * yet are left out.
 */
static int pipe_depth_misses(struct daemon *d, int *checked)
{
    char *log = read_log(d);
    size_t cap = 1024, n = 0;
    char **lines = malloc(cap * sizeof(*lines));
    assert_non_null(lines);
    for (char *line = strtok(log, "\n"); line != NULL; line = strtok(NULL, "\n")) {
        if (strstr(line, "scanner[") == NULL)
            continue;
        if (n == cap) {
            cap *= 2;
            lines = realloc(lines, cap * sizeof(*lines));
            assert_non_null(lines);
        }
        lines[n++] = line;
    }
    int misses = 0;
    *checked = 0;
    for (size_t i = 0; i < n; i++) {
        const char *t = strstr(lines[i], "came through the pipe (still in flight)");
        unsigned long long page;
        unsigned pass;
        const char *at = strstr(lines[i], "deal page ");
        if (t == NULL || at == NULL || sscanf(at, "deal page %llu (pass %u)", &page, &pass) != 2)
            continue;
        char done[64], record[64], ahead[96];
        snprintf(done, sizeof(done), "pass %u done: ", pass);
        unsigned long long pages = 0;
        for (size_t j = i; j < n && pages == 0; j++) {
            const char *p = strstr(lines[j], done);
            if (p != NULL && sscanf(p + strlen(done), "%llu pages", &pages) != 1)
                pages = 0;
        }
        if (pages == 0 || page + 1 >= pages)
            continue;
        (*checked)++;
        snprintf(record, sizeof(record), "deal page %llu (pass %u): ", page, pass);
        snprintf(ahead, sizeof(ahead), "pipe: deal page %llu of pass %u asked for ahead", page + 1,
                 pass);
        bool asked = false;
        for (size_t j = 0; j < n && !asked && strstr(lines[j], record) == NULL; j++)
            asked = strstr(lines[j], ahead) != NULL;
        misses += !asked;
    }
    free(lines);
    free(log);
    return misses;
}

/*
 * The pipe (scanner/pipe.h): with tokens piling up, the next /deal pages are requested while
 * this one is fetched and peeked, and a page taken while still in flight has the page after it
 * asked for before it is read (two pages in flight: a pipe of one slot fails on every such page;
 * one that fills a single slot a call, a fault a review found, fails on the passes whose first
 * page had nothing to peek, about one run in three here). Pages are still recorded in order,
 * each pass 0, 1, 2,
 * ... with no gap or repeat, ending on its short page or at its horizon; at most
 * SCANNER_PIPE_SLOTS pages a pass are fetched for nothing (the ones after the pass's end); and
 * a stop meets answers in flight and still exits cleanly.
 */
static void test_pipe_fetches_ahead_in_order(void **state)
{
    (void)state;
    kd_test_set_timeout(KD_SANITIZED_BUILD ? 300 : 180); /* up to 90 s of waiting below */
    /* 6000 products: about 8 pages of deals; a bucket far above 10 minutes of refill. Every
     * answer takes 30 ms, so the cursor reaches most pages of a pass with nothing to peek (the
     * later passes: the scan memo knows their entries) while they are still in flight. */
    struct sim s = sim_start("--products", "6000", "--minute-ms", "100", "--refill-rate", "20000",
                             "--faults", "latency_ms=30-30");
    struct daemon d;
    daemon_start(&d, &s, "100ms", "peek_batch = 50\npass_pause = 100ms");
    /* How many pages are taken in flight depends on the machine's load (on a busy one more
     * answers are in before the cursor gets there): the run lasts until 12 were, polled every
     * 200 ms (each poll reads the whole debug log). Under a sanitizer the daemon reads a page
     * slower than the simulator answers the next, so few or none are taken in flight there:
     * the count is required of the normal build (make test runs it first), and the sanitized
     * run checks whichever pages were. */
    int taken = 0, want = KD_SANITIZED_BUILD ? 0 : 12;
    for (int i = 0; i < 450 && (taken < want || cursor(&d).pass < 4); i++) {
        kdh_nap_ms(200);
        taken = scanner_lines(&d, "came through the pipe (still in flight)");
    }
    /* Both slots kept full (docs/architecture.md, the busy rule's pipe): whenever the cursor
     * takes a page from the pipe still in flight, the page after it is asked for before that
     * page is read, not once it has been (the pipe would then hold one page at a time). */
    int checked = 0;
    int misses = pipe_depth_misses(&d, &checked);
    print_message("figures: %d pages taken from the pipe in flight before their pass's last, "
                  "%d of them read before the page after them was asked for\n",
                  checked, misses);
    if ((want > 0 && checked < 5) || misses > 0) {
        dump_log(&d);
        fail_msg("%d pages taken in flight, %d without the next page in the pipe", checked, misses);
    }
    int again = 0;
    int passes = check_page_log(&d, &again);
    assert_true(passes >= 4);
    long long requests = sim_stat(&s, "endpoints.deal.requests");
    /* A page's record line ("deal page N (pass P): ... items"); its debug lines say other
     * things of it, and the pipe's says it came through the pipe. */
    int pages = scanner_lines(&d, "(pass ") - scanner_lines(&d, "came through the pipe");
    print_message("figures: %d pages recorded, %d through the pipe, %d asked for while the "
                  "page before was in flight, %lld /deal requests, %d passes\n",
                  pages, scanner_lines(&d, "came through the pipe"),
                  scanner_lines(&d, "(in flight)"), requests, passes);
    /* Every request is a recorded page, but the ones after each pass's end and those in
     * flight now (the page and the pipe's), read after the log. */
    assert_true(requests >= pages);
    assert_true(requests <= pages + SCANNER_PIPE_SLOTS * (passes + 1) + 1);
    daemon_stop(&d); /* answers may be in flight: the scanner still exits with status 0 */
    sim_stop(&s);
}

/* How many peeks of every product the low fees the scanner last saved in the store hold (meta
 * learned_scanner, read back as the scanner reads it); -1 when none are saved. */
static long long saved_fee_peeks(struct daemon *d)
{
    static double fees[SCANNER_FEES_NUMS], rates[SCANNER_PEEK_NUMS];
    struct st_learned_field f[2] = {
        {"low_fees", fees, SCANNER_FEES_NUMS, SCANNER_FEES_NUM_MAX},
        {"peek_rates", rates, SCANNER_PEEK_NUMS, UINT32_MAX},
    };
    struct st_txn *txn;
    assert_int_equal(st_read_begin(d->env, &txn), 0);
    int rc = st_meta_get_learned(txn, ST_META_LEARNED_SCANNER, f, 2);
    st_read_end(txn);
    if (rc == -ENOENT)
        return -1;
    assert_int_equal(rc, 0);
    struct scanner_fees *sf = calloc(1, sizeof(*sf)), *scratch = malloc(sizeof(*scratch));
    assert_true(sf != NULL && scratch != NULL);
    scanner_fees_init(sf);
    assert_true(scanner_fees_unpack(fees, sf, scratch));
    struct scanner_peek_rate peek[SCANNER_PEEK_CLASSES];
    assert_true(scanner_peek_unpack(rates, peek));
    long long n = sf->all.n;
    free(sf);
    free(scratch);
    return n;
}

/* The peeks of every product the scanner's log says it read back at start, or -1. */
static long long read_back_fee_peeks(struct daemon *d)
{
    static const char needle[] = "learned low fees read from the store: ";
    char *log = read_log(d);
    const char *p = strstr(log, needle);
    long long n = -1;
    if (p == NULL || sscanf(p + sizeof(needle) - 1, "%lld", &n) != 1)
        n = -1;
    free(log);
    return n;
}

/*
 * What the peeks taught survives a crash, up to the last periodic save (docs/architecture.md,
 * "What is learned survives a restart"): a list of 60 real ASINs is peeked 10 at a time, each
 * peek teaching the low fees, more than the 32 after which the scanner saves them in a peek
 * batch's write; then the scanner is killed (SIGKILL: no stop, no final save) and the
 * supervisor restarts it. The new scanner reads back the low fees of as many peeks as the
 * store saved, not none.
 */
static void test_learned_fees_survive_a_killed_scanner(void **state)
{
    (void)state;
    struct sim s = sim_start("--products", "3000", "--minute-ms", "100", "--refill-rate", "2000");
    static char real[60][11];
    int n_real = sim_deal_asins(&s, real, 60);
    assert_true(n_real >= 50);
    char list[512];
    snprintf(list, sizeof(list), "%s/asins.txt", test_dir());
    FILE *f = fopen(list, "w");
    assert_non_null(f);
    for (int i = 0; i < n_real; i++)
        fprintf(f, "%s\n", real[i]);
    fclose(f);
    char scan[1024];
    snprintf(scan, sizeof(scan),
             "source = asins\nasins_file = %s\npeek_batch = 10\npass_pause = 1d", list);
    struct daemon d;
    daemon_start(&d, &s, "100ms", scan);
    EXPECT(&d, cursor(&d).pass >= 1, 60);
    assert_true(log_has(&d, "no learned low fees in the store"));
    int64_t peeked = scanner_counter(&d, SHM_C_asins_peeked);
    assert_true(peeked >= n_real * 9 / 10);
    long long saved = saved_fee_peeks(&d);
    if (saved <= 0) {
        dump_log(&d);
        fail_msg("%lld peeks and no learned low fees saved in the store (meta %s)",
                 (long long)peeked, ST_META_LEARNED_SCANNER);
    }

    struct shm_proc_slot *slot = &d.seg.layout->procs[SHM_ROLE_SCANNER];
    int64_t pid = atomic_load(&slot->pid);
    uint32_t restarts = atomic_load(&slot->restarts);
    assert_true(pid > 0);
    assert_int_equal(kill((pid_t)pid, SIGKILL), 0);
    EXPECT(&d,
           atomic_load(&slot->restarts) > restarts && atomic_load(&slot->pid) != pid &&
               atomic_load(&slot->pid) > 0 && atomic_load(&slot->state) == SHM_PROC_READY,
           30);
    long long back = -1;
    if (!KDH_WAIT_FOR((back = read_back_fee_peeks(&d)) >= 0, 10)) {
        dump_log(&d);
        fail_msg("the restarted scanner read no learned low fees back (see %s)", d.log);
    }
    if (back != saved)
        fail_msg("the restarted scanner read the low fees of %lld peeks back; the store saved %lld",
                 back, saved);
    fprintf(stderr,
            "figures: %lld peeked; low fees of %lld peeks saved; after SIGKILL and a restart, "
            "%lld read back\n",
            (long long)peeked, saved, back);
    if (getenv("KD_SCANNER_DUMP"))
        dump_log(&d);
    daemon_stop(&d);
    sim_stop(&s);
}

int main(int argc, char **argv)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    kd_test_set_timeout(KD_SANITIZED_BUILD ? 240 : 120);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_survivors_dedup_batches),
        cmocka_unit_test(test_429_storm_and_failed_fetches),
        cmocka_unit_test(test_asin_list_and_hup_batch),
        cmocka_unit_test(test_peek_batch_kept_past_stored_non_deals),
        cmocka_unit_test(test_commit_backlog_pauses_discovery),
        cmocka_unit_test(test_query_source),
        cmocka_unit_test(test_full_store_keeps_peeks_and_retries),
        cmocka_unit_test(test_pipe_fetches_ahead_in_order),
        cmocka_unit_test(test_learned_fees_survive_a_killed_scanner),
    };
    return KD_RUN_TESTS(tests, argc, argv);
}
