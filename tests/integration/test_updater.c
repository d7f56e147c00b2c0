/*
 * test_updater.c: the real daemon (`kdeals run -c FILE`) re-checking stored deals against
 * kdeals-sim with an accelerated Keepa minute (100 ms: the configured intervals shrink 600x).
 *
 * Each test pre-populates the LMDB store with deals for sim ASINs (priced at the sim's truth,
 * read from /_sim/product) before the daemon starts, then watches the store, the updater's
 * counters in the segment and the sim's ledger. Every wait polls for an observable event with
 * a deadline. The filters are wide open so every known product stays a deal; an ASIN the sim
 * does not know stands for a product Keepa stopped returning.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "base/clock.h"
#include "kd_harness.h"
#include "kd_test.h"
#include "shm/counters.h"
#include "shm/ring.h"
#include "shm/segment.h"
#include "sim/catalog.h"
#include "judge/rules.h"
#include "store/store.h"
#include "worker/value.h"

#define KDEALS   KD_BUILD_DIR "/kdeals"
#define SIM      KD_BUILD_DIR "/kdeals-sim"
#define SEED     7
#define PRODUCTS 3000
#define UNKNOWN  "B0ZZZZZZZZ"

/* ---- processes ------------------------------------------------------------------------- */

struct world {
    pid_t sim, daemon;
    int port;
    char dir[256];
    char conf[512];
    char log[512];
    const char *instance;
    struct shm_segment seg;
    bool attached;
    struct st_env *env;
    int store_mb;            /* 16 (growing to 64), or less: a store capped at this size */
    const char *min_roi;     /* [filter] min_roi_pct: "-100" keeps every product a deal */
    const char *value_rules; /* [tokens] value_rules; NULL: the default */
};

static pid_t spawn(const char *log, char *const argv[])
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execv(argv[0], argv);
        _exit(127);
    }
    return pid;
}

static int read_int_file(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    int v = -1;
    if (fscanf(f, "%d", &v) != 1)
        v = -1;
    fclose(f);
    return v;
}

static void start_sim(struct world *w, const char *faults)
{
    char portfile[512], log[512];
    snprintf(portfile, sizeof(portfile), "%s/sim.port", w->dir);
    snprintf(log, sizeof(log), "%s/sim.log", w->dir);
    char seed[16], products[16];
    snprintf(seed, sizeof(seed), "%d", SEED);
    snprintf(products, sizeof(products), "%d", PRODUCTS);
    char *argv[24];
    int n = 0;
    argv[n++] = SIM;
    argv[n++] = "--port";
    argv[n++] = "0";
    argv[n++] = "--port-file";
    argv[n++] = portfile;
    argv[n++] = "--minute-ms";
    argv[n++] = "100";
    argv[n++] = "--refill-rate";
    argv[n++] = "50";
    argv[n++] = "--volatility";
    argv[n++] = "0";
    argv[n++] = "--seed";
    argv[n++] = seed;
    argv[n++] = "--products";
    argv[n++] = products;
    argv[n++] = "--quiet";
    argv[n++] = "--economy=rich"; /* the stored deals stay deals */
    if (faults != NULL) {
        argv[n++] = "--faults";
        argv[n++] = (char *)faults;
    }
    argv[n] = NULL;
    w->sim = spawn(log, argv);
    assert_true(KDH_WAIT_FOR((w->port = read_int_file(portfile)) > 0, 20));
}

/* Writes the daemon's config; BATCH, MIN/MAX interval (Keepa time) and EXPIRE vary per test. */
/* The judgement's rules of the config last written (each test runs in its own process). */
static struct jd_rules g_rules;
static uint64_t g_rules_hash;

static void write_config(struct world *w, int batch, const char *min_interval,
                         const char *max_interval, int expire)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/key", w->dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "%s\n", kdh_key("testkey123")); /* this process's own key and bucket */
    fclose(f);
    chmod(path, 0600);
    snprintf(path, sizeof(path), "%s/asins.txt", w->dir);
    f = fopen(path, "w");
    assert_non_null(f);
    fputs("B0ZZZZZZZY\n", f); /* the scanner (once it lands) has nothing real to look at */
    fclose(f);
    char tmp[600];
    snprintf(tmp, sizeof(tmp), "%s.tmp", w->conf);
    f = fopen(tmp, "w");
    assert_non_null(f);
    fprintf(f,
            "[keepa]\nbase_url = http://127.0.0.1:%d\nkey_file = %s/key\nrequest_timeout = 10s\n"
            "[daemon]\ninstance = %s\nrun_dir = %s/run\nlog_level = info\nstop_timeout = 20s\n"
            "[store]\npath = %s/store\nmap_size_mb = %d\nmax_map_size_mb = %d\n"
            "[tokens]\nminute = 100ms\n%s%s%s"
            "[scan]\nsource = asins\nasins_file = %s/asins.txt\npass_pause = 1d\n"
            "[update]\nbatch = %d\nmin_interval = %s\nmax_interval = %s\n"
            "expire_after_failures = %d\n" KDH_JUDGEMENT
            "[filter]\nmin_rank_drops_365 = 0\nmin_sell = 0\nmin_profit = -1000000\n"
            "min_roi_pct = %s\n",
            w->port, w->dir, w->instance, w->dir, w->dir, w->store_mb,
            w->store_mb < 16 ? w->store_mb : 64, w->value_rules ? "value_rules = " : "",
            w->value_rules ? w->value_rules : "", w->value_rules ? "\n" : "", w->dir, batch,
            min_interval, max_interval, expire, w->min_roi);
    fclose(f);
    assert_int_equal(rename(tmp, w->conf), 0);
    /* The rules the daemon will judge by: records seeded with their hash are not judged again
     * at start. */
    struct cfg c;
    char err[512];
    if (cfg_load_file(w->conf, &c, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    jd_rules_from_cfg(&c, &g_rules);
    g_rules_hash = jd_rules_hash(&g_rules);
}

static int attach(struct world *w)
{
    char err[256];
    if (w->attached)
        return 0;
    if (shm_segment_attach(&w->seg, w->instance, SHM_READ_ONLY, err, sizeof(err)) != 0)
        return -1;
    w->attached = true;
    return 0;
}

static int updater_ready(struct world *w)
{
    return attach(w) == 0 &&
           atomic_load(&w->seg.layout->procs[SHM_ROLE_UPDATER].state) == SHM_PROC_READY;
}

static void start_daemon(struct world *w)
{
    char *argv[] = {KDEALS, "run", "-c", w->conf, NULL};
    w->daemon = spawn(w->log, argv);
    assert_true(KDH_WAIT_FOR(updater_ready(w), 20));
}

static int exited(pid_t pid, int *status)
{
    return waitpid(pid, status, WNOHANG) == pid;
}

static void stop_all(struct world *w)
{
    int status = 0;
    if (getenv("KD_TEST_SHOW_LOG") != NULL) { /* debugging aid: the daemon's log */
        char *text = kd_read_file(w->log, NULL);
        fprintf(stderr, "---- %s ----\n%s\n----\n", w->log, text ? text : "(none)");
        free(text);
    }
    if (w->daemon > 0) {
        kill(w->daemon, SIGTERM);
        assert_true(KDH_WAIT_FOR(exited(w->daemon, &status), 30));
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
        /* The updater exited cleanly (under ASan a leak would make it non-zero). */
        assert_int_equal(atomic_load(&w->seg.layout->procs[SHM_ROLE_UPDATER].last_exit_status), 0);
    }
    if (w->attached)
        shm_segment_detach(&w->seg);
    if (w->env != NULL)
        st_close(w->env);
    if (w->sim > 0) {
        kill(w->sim, SIGTERM);
        waitpid(w->sim, &status, 0);
    }
}

static void world_init(struct world *w)
{
    memset(w, 0, sizeof(*w));
    w->instance = kd_test_instance();
    w->store_mb = 16;
    w->min_roi = "-100";
    snprintf(w->dir, sizeof(w->dir), "%s/%s", kd_test_tmpdir(), w->instance);
    assert_int_equal(mkdir(w->dir, 0700), 0);
    snprintf(w->conf, sizeof(w->conf), "%s/kdeals.conf", w->dir);
    snprintf(w->log, sizeof(w->log), "%s/kdeals.log", w->dir);
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* ---- the sim over HTTP ------------------------------------------------------------------- */

struct body {
    char p[65536];
    size_t n;
};

static size_t on_data(char *d, size_t sz, size_t nm, void *ud)
{
    struct body *b = ud;
    size_t n = sz * nm;
    size_t room = sizeof(b->p) - 1 - b->n;
    size_t k = n < room ? n : room;
    memcpy(b->p + b->n, d, k);
    b->n += k;
    b->p[b->n] = '\0';
    return n;
}

static long http(struct world *w, const char *method, const char *path, struct body *b)
{
    char url[1024];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", w->port, path);
    CURL *c = curl_easy_init();
    assert_non_null(c);
    b->n = 0;
    b->p[0] = '\0';
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, b);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 20L);
    if (strcmp(method, "POST") == 0) {
        curl_easy_setopt(c, CURLOPT_POST, 1L);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, "");
    }
    long status = 0;
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(c);
    return status;
}

/* Reads N integers of the JSON array after "NAME":[ in JSON. */
static int json_array(const char *json, const char *name, int64_t *out, int n)
{
    char key[64];
    snprintf(key, sizeof(key), "\"%s\":[", name);
    const char *p = strstr(json, key);
    if (p == NULL)
        return -1;
    p += strlen(key);
    for (int i = 0; i < n; i++) {
        char *end;
        out[i] = strtoll(p, &end, 10);
        if (end == p)
            return -1;
        p = end;
        while (*p == ',' || *p == ' ')
            p++;
    }
    return 0;
}

/* Integer after "NAME": (the first occurrence) in JSON; -1 if absent. */
static int64_t json_int(const char *json, const char *name)
{
    char key[64];
    snprintf(key, sizeof(key), "\"%s\":", name);
    const char *p = strstr(json, key);
    return p ? strtoll(p + strlen(key), NULL, 10) : -1;
}

static int64_t sim_stat(struct world *w, const char *name)
{
    struct body b;
    if (http(w, "GET", "/_sim/stats", &b) != 200)
        return -1;
    return json_int(b.p, name);
}

static int64_t sim_product_requests(struct world *w)
{
    struct body b;
    if (http(w, "GET", "/_sim/stats", &b) != 200)
        return -1;
    const char *p = strstr(b.p, "\"product\":");
    return p ? json_int(p, "requests") : -1;
}

/* The sim's truth for ASIN: current Used price, condition, Used averages, rank. */
struct truth {
    int64_t buy, a90, a365, rank;
    int condition;
};

static int sim_truth(struct world *w, const char *asin, struct truth *t)
{
    char path[128];
    snprintf(path, sizeof(path), "/_sim/product?asin=%s", asin);
    struct body b;
    if (http(w, "GET", path, &b) != 200)
        return -1;
    int64_t cur[4], a90[4], a365[4];
    if (json_array(b.p, "current", cur, 4) || json_array(b.p, "avg90", a90, 4) ||
        json_array(b.p, "avg365", a365, 4))
        return -1;
    if (cur[2] <= 0 || a90[2] < 2000 || a365[2] < 2000)
        return -1; /* Used price and Used averages of $20 or more: every fee is paid for, so
                    * the permissive rules of these tests keep them deals */
    t->buy = cur[2];
    t->condition = 3;
    t->a90 = a90[2];
    t->a365 = a365[2];
    t->rank = cur[3] > 0 ? cur[3] : -1;
    return 0;
}

/* ---- the store --------------------------------------------------------------------------- */

static void open_store(struct world *w)
{
    char path[512], err[256];
    snprintf(path, sizeof(path), "%s/store", w->dir);
    struct st_options o = {.path = path, .map_size_bytes = (uint64_t)w->store_mb << 20};
    if (w->store_mb < 16)
        o.max_map_size_bytes = o.map_size_bytes;
    int rc = st_open(&o, &w->env, err, sizeof(err));
    if (rc != 0)
        fail_msg("st_open: %s", err);
}

/* What a light read of the truth T says, BUY its lowest Used listing, read at AT_MS. */
static struct jd_inputs light_read(const struct truth *t, int64_t buy, int64_t at_ms)
{
    struct jd_inputs in;
    jd_inputs_init(&in);
    in.used_cents = buy;
    in.used_avg90_cents = t->a90;
    in.used_avg365_cents = t->a365;
    in.sales_rank = t->rank;
    in.fees_known = true;
    in.referral_bp = 1500;
    in.fba_fee_cents = 350;
    in.buy_source = JD_BUY_LISTING;
    in.buy_condition = 2;
    in.buy_price_cents = buy;
    in.buy_shipping_cents = -1;
    in.buy_seen_ms = at_ms;
    in.data_ms = at_ms;
    return in;
}

/* A stored deal: one Used offer at the truth's price from A1TESTSELLER, judged by the rules of
 * the config (its hash stored: the daemon's start does not judge it again), state DEAL. */
static struct st_record make_deal(const char *asin, const struct truth *t, int64_t last_ms,
                                  int64_t next_ms)
{
    struct st_record d;
    st_record_init(&d);
    snprintf(d.asin, sizeof(d.asin), "%s", asin);
    d.domain = 1;
    st_record_set_title(&d, "test deal", 9);
    d.in = light_read(t, t->buy, last_ms);
    d.in.buy_source = JD_BUY_OFFER;
    d.in.buy_condition = (uint8_t)t->condition;
    d.in.buy_shipping_cents = 0;
    snprintf(d.in.buy_seller_id, sizeof(d.in.buy_seller_id), "A1TESTSELLER");
    jd_judge(&d.in, &g_rules, &d.v);
    d.state = ST_STATE_DEAL; /* a deal when stored (a test may have tightened the rules) */
    d.rules_hash = g_rules_hash;
    d.judged_ms = last_ms;
    d.first_seen_ms = last_ms;
    d.deal_since_ms = last_ms;
    d.last_checked_ms = last_ms;
    d.last_changed_ms = last_ms;
    d.next_check_ms = next_ms;
    d.revision = 1;
    return d;
}

struct seed_deals {
    size_t n;
    struct st_record d[64];
};

static int put_all_fn(struct st_txn *txn, void *ud)
{
    struct seed_deals *s = ud;
    for (size_t i = 0; i < s->n; i++) {
        int rc = st_record_put(txn, &s->d[i], ST_EV_COMMIT, s->d[i].last_checked_ms);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* Fills ASINS with N sim products that have Used prices (TRUTHS gets their truth). */
static void pick_products(struct world *w, size_t n, char asins[][ST_ASIN_LEN + 1],
                          struct truth *truths)
{
    struct sim_catalog cat;
    assert_int_equal(sim_catalog_init(&cat, SEED, PRODUCTS, 0, SIM_ECONOMY_RICH), 0);
    size_t got = 0;
    for (int64_t idx = 0; idx < PRODUCTS && got < n; idx++) {
        char asin[11];
        sim_catalog_asin(&cat, idx, asin);
        if (sim_truth(w, asin, &truths[got]) == 0)
            memcpy(asins[got++], asin, 11);
    }
    assert_int_equal(got, n);
    assert_int_equal(sim_catalog_lookup(&cat, UNKNOWN), -1);
}

/*
 * Picks N of the simulator's products, opens the store and stores them as deals checked 30 s
 * ago and due 20 s ago: deals the updater re-checks as soon as it starts. Returns the moment
 * taken as now.
 */
static int64_t seed_due_deals(struct world *w, size_t n, char asins[][ST_ASIN_LEN + 1],
                              struct truth *truths)
{
    pick_products(w, n, asins, truths);
    int64_t t0 = kd_wall_ms();
    open_store(w);
    static struct seed_deals s;
    assert_true(n <= sizeof(s.d) / sizeof(s.d[0]));
    s.n = 0;
    for (size_t i = 0; i < n; i++)
        s.d[s.n++] = make_deal(asins[i], &truths[i], t0 - 30000, t0 - 20000);
    assert_int_equal(st_write(w->env, put_all_fn, &s), 0);
    return t0;
}

static int get_deal_in(struct world *w, unsigned domain, const char *asin, struct st_record *out)
{
    struct st_key key;
    assert_int_equal(st_key_make(domain, asin, &key), 0);
    struct st_txn *txn;
    assert_int_equal(st_read_begin(w->env, &txn), 0);
    int rc = st_record_get(txn, &key, out);
    st_read_end(txn);
    return rc;
}

static int get_deal(struct world *w, const char *asin, struct st_record *out)
{
    struct st_key key;
    assert_int_equal(st_key_make(1, asin, &key), 0);
    struct st_txn *txn;
    assert_int_equal(st_read_begin(w->env, &txn), 0);
    int rc = st_record_get(txn, &key, out);
    st_read_end(txn);
    return rc;
}

static int get_pending(struct world *w, const char *asin, struct st_pending *out)
{
    struct st_key key;
    assert_int_equal(st_key_make(1, asin, &key), 0);
    struct st_txn *txn;
    assert_int_equal(st_read_begin(w->env, &txn), 0);
    int rc = st_pending_get(txn, &key, out);
    st_read_end(txn);
    return rc;
}

static int64_t upd_counter(struct world *w, enum shm_counter_id id)
{
    return shm_counter_get(&w->seg.layout->counters[SHM_ROLE_UPDATER], id);
}

static uint64_t upd_hist_bucket(struct world *w, unsigned bucket)
{
    return atomic_load(
        &w->seg.layout->counters[SHM_ROLE_UPDATER].hist[SHM_H_batch_asins].buckets[bucket]);
}

/* True when ASIN left the deals after failed checks: kept, REJECTED, expired_ms set. */
static int expired(struct world *w, const char *asin)
{
    static struct st_record d;
    return get_deal(w, asin, &d) == 0 && d.state == ST_STATE_REJECTED && d.expired_ms > 0 &&
           d.next_check_ms == 0;
}

/* True when the deal of ASIN was checked after AFTER_MS. */
static int checked_after(struct world *w, const char *asin, int64_t after_ms)
{
    static struct st_record d;
    return get_deal(w, asin, &d) == 0 && d.last_checked_ms > after_ms;
}

static int all_checked_after(struct world *w, char asins[][ST_ASIN_LEN + 1], size_t n,
                             int64_t after_ms)
{
    for (size_t i = 0; i < n; i++)
        if (!checked_after(w, asins[i], after_ms))
            return 0;
    return 1;
}

static int log_contains(struct world *w, const char *needle)
{
    size_t len = 0;
    char *text = kd_read_file(w->log, &len);
    int found = text != NULL && strstr(text, needle) != NULL;
    free(text);
    return found;
}

/* ---- tests ------------------------------------------------------------------------------- */

/*
 * Ten due deals, two not due, one the sim does not know, one whose stored buy price is 30 %
 * off. Batch 4, intervals 10m..80m Keepa time = 1..8 s real, expiry after 2 failed checks.
 * The gone rule of value per token is left out: it would fail the 30 % deal at once (its
 * offer is below the lowest listing, so no longer listed) and, at 1 s between re-checks, expire
 * it before the committer's fresh offers; test_updater_rules holds that rule.
 */
static void test_due_deals_rechecked_in_batches_and_rescheduled(void **state)
{
    (void)state;
    struct world w;
    world_init(&w);
    w.value_rules = "order, prescore, fees, recheck, busy";
    start_sim(&w, NULL);
    write_config(&w, 4, "10m", "80m", 2);

    enum { N_DUE = 10, N_LATER = 2 };
    char asins[N_DUE + N_LATER + 1][ST_ASIN_LEN + 1];
    struct truth truths[N_DUE + N_LATER + 1];
    pick_products(&w, N_DUE + N_LATER + 1, asins, truths);
    const char *jump = asins[N_DUE + N_LATER]; /* stored 30 % cheaper than the truth */

    int64_t t0 = kd_wall_ms();
    open_store(&w);
    static struct seed_deals s;
    s.n = 0;
    struct truth unknown = {.buy = 1000, .a90 = 4000, .a365 = 4000, .rank = 1000, .condition = 3};
    s.d[s.n++] = make_deal(UNKNOWN, &unknown, t0 - 60000, t0 - 50000); /* stalest */
    for (int i = 0; i < N_DUE; i++)
        s.d[s.n++] = make_deal(asins[i], &truths[i], t0 - 30000, t0 - 28000 + i);
    for (int i = N_DUE; i < N_DUE + N_LATER; i++)
        s.d[s.n++] = make_deal(asins[i], &truths[i], t0, t0 + 3600 * 1000);
    struct truth cheap = truths[N_DUE + N_LATER];
    cheap.buy = cheap.buy * 7 / 10;
    s.d[s.n++] = make_deal(jump, &cheap, t0 - 30000, t0 - 20000);
    assert_int_equal(st_write(w.env, put_all_fn, &s), 0);

    start_daemon(&w);

    /* Every due deal is re-checked and rescheduled within [min, max] of its check. */
    assert_true(KDH_WAIT_FOR(all_checked_after(&w, asins, N_DUE, t0), 30));
    assert_true(KDH_WAIT_FOR(checked_after(&w, jump, t0), 10));
    int64_t groups_ms[N_DUE];
    size_t group_n[N_DUE], n_groups = 0;
    for (int i = 0; i < N_DUE; i++) {
        static struct st_record d;
        assert_int_equal(get_deal(&w, asins[i], &d), 0);
        int64_t interval = d.next_check_ms - d.last_checked_ms;
        assert_true(interval >= 1000 && interval <= 8000);
        assert_true(d.revision >= 2);
        assert_int_equal(d.check_failures, 0);
        /* The stored offer, whole: the light read never replaces it. */
        assert_int_equal(d.in.buy_price_cents, truths[i].buy);
        assert_string_equal(d.in.buy_seller_id, "A1TESTSELLER");
        size_t g = 0;
        while (g < n_groups && groups_ms[g] != d.last_checked_ms)
            g++;
        if (g == n_groups) {
            groups_ms[n_groups] = d.last_checked_ms;
            group_n[n_groups++] = 0;
        }
        group_n[g]++;
    }
    /* One write per batch, one timestamp per write: no batch held more than 4 deals. */
    for (size_t g = 0; g < n_groups; g++)
        assert_true(group_n[g] <= 4);
    /* The histogram agrees: requests of 1..7 ASINs, none of 8 or more. */
    for (unsigned b = 4; b < SHM_HIST_BUCKETS; b++)
        assert_int_equal(upd_hist_bucket(&w, b), 0);
    assert_true(upd_hist_bucket(&w, 3) > 0);
    assert_true(sim_product_requests(&w) >= 3);

    /* Deals not due are left alone. */
    for (int i = N_DUE; i < N_DUE + N_LATER; i++) {
        static struct st_record d;
        assert_int_equal(get_deal(&w, asins[i], &d), 0);
        assert_int_equal(d.last_checked_ms, t0);
        assert_int_equal(d.revision, 1);
    }

    /* The 30 % move of the listing from the stored offer's price: re-checked on the stored
     * offer, and the committer is asked for fresh offers. Whatever it did by now, the record
     * names one offer, whole: the stored one as it was, or the committer's fresh one. */
    static struct st_record dj;
    assert_int_equal(get_deal(&w, jump, &dj), 0);
    if (strcmp(dj.in.buy_seller_id, "A1TESTSELLER") == 0)
        assert_int_equal(dj.in.buy_price_cents, cheap.buy);
    else
        assert_true(dj.in.buy_price_cents >= truths[N_DUE + N_LATER].buy);
    assert_true(KDH_WAIT_FOR(upd_counter(&w, SHM_C_ring_records_out) >= 1, 10));
    assert_true(KDH_WAIT_FOR(log_contains(&w, "1 recommits"), 10));
    struct st_pending p;
    if (get_pending(&w, jump, &p) == 0) /* unless a committer took it already */
        assert_int_equal(p.source, ST_SOURCE_RECOMMIT);

    /* The unknown ASIN: one failed check keeps it, the second ends it as a deal. */
    assert_true(KDH_WAIT_FOR(expired(&w, UNKNOWN), 20));
    /* Counters and the batch's log line follow its write: waited for like it. */
    assert_true(KDH_WAIT_FOR(upd_counter(&w, SHM_C_deals_expired) == 1, 10));
    assert_true(KDH_WAIT_FOR(upd_counter(&w, SHM_C_deals_refreshed) >= N_DUE + 1, 10));
    assert_true(
        KDH_WAIT_FOR(log_contains(&w, "1 not returned, 0 expired"), 10)); /* first check: kept */
    assert_true(KDH_WAIT_FOR(log_contains(&w, "1 not returned, 1 expired"),
                             10)); /* second check: expired */
    stop_all(&w);
}

/*
 * The wall clock stepped back an hour under the running daemon (the time shim, tests/timeshift.c,
 * steps CLOCK_REALTIME for the daemon's processes alone): the re-checks go on at their
 * intervals, which are measured on the monotonic clock (updater/rules.h, "Clock"). With the
 * wall clock in charge every deal's next check would lie an hour ahead and none would come.
 */
static void test_wall_clock_step_back_keeps_rechecks(void **state)
{
    (void)state;
    kd_test_set_timeout(120);
    struct world w;
    world_init(&w);
    start_sim(&w, NULL);
    write_config(&w, 50, "10m", "20m", 100); /* 1..2 s real */
    enum { N = 10 };
    char asins[N][ST_ASIN_LEN + 1];
    struct truth truths[N];
    pick_products(&w, N, asins, truths);
    int64_t t0 = kd_wall_ms();
    open_store(&w);
    static struct seed_deals s;
    s.n = 0;
    for (int i = 0; i < N; i++)
        s.d[s.n++] = make_deal(asins[i], &truths[i], t0 - 30000, t0 - 1000 + i);
    assert_int_equal(st_write(w.env, put_all_fn, &s), 0);

    char shift_path[600];
    snprintf(shift_path, sizeof(shift_path), "%s/wall-shift", w.dir);
    int fd = open(shift_path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    int64_t shift = 0;
    assert_int_equal(pwrite(fd, &shift, sizeof(shift), 0), (ssize_t)sizeof(shift));
    char asan[1024];
    const char *prev = getenv("ASAN_OPTIONS");
    snprintf(asan, sizeof(asan), "%s%sverify_asan_link_order=0", prev ? prev : "", prev ? ":" : "");
    setenv("ASAN_OPTIONS", asan, 1);
    setenv("KD_TIMESHIFT_FILE", shift_path, 1);
    setenv("LD_PRELOAD", KD_TIMESHIFT_SO, 1);
    start_daemon(&w);
    unsetenv("LD_PRELOAD");
    unsetenv("KD_TIMESHIFT_FILE");

    /* Running: every deal re-checked, again and again. */
    assert_true(KDH_WAIT_FOR(all_checked_after(&w, asins, N, t0), 30));
    assert_true(KDH_WAIT_FOR(upd_counter(&w, SHM_C_http_requests) >= 3, 20));

    /* The wall clock steps back an hour. */
    uint64_t revision[N];
    for (int i = 0; i < N; i++) {
        static struct st_record d;
        assert_int_equal(get_deal(&w, asins[i], &d), 0);
        revision[i] = d.revision;
    }
    int64_t requests = upd_counter(&w, SHM_C_http_requests);
    shift = -3600 * 1000;
    assert_int_equal(pwrite(fd, &shift, sizeof(shift), 0), (ssize_t)sizeof(shift));
    close(fd);
    /* Re-checks go on within their intervals (1..2 s): each deal twice more in 20 s. */
    int all =
        KDH_WAIT_FOR(({
                         int ok = 1;
                         for (int i = 0; i < N && ok; i++) {
                             static struct st_record d;
                             ok = get_deal(&w, asins[i], &d) == 0 && d.revision >= revision[i] + 2;
                         }
                         ok;
                     }),
                     20);
    if (!all)
        fail_msg("re-checks stopped after the wall clock stepped back an hour: %lld update "
                 "requests since (see %s)",
                 (long long)(upd_counter(&w, SHM_C_http_requests) - requests), w.log);
    stop_all(&w);
}

/*
 * docs/failure-modes.md F20, "stale deals deleted while ingestion was stalled": every request fails
 * (HTTP 500) for a while. Expiry after ONE failed check, so any miscount would show. Nothing
 * is expired or moved; the schedule is retried; once the fault clears the checks succeed and
 * only the unknown ASIN goes.
 */
static void test_failing_fetches_never_expire_or_move_deals(void **state)
{
    (void)state;
    struct world w;
    world_init(&w);
    start_sim(&w, "http500=1");
    write_config(&w, 10, "10m", "80m", 1);

    enum { N = 5 };
    char asins[N][ST_ASIN_LEN + 1];
    struct truth truths[N];
    pick_products(&w, N, asins, truths);
    int64_t t0 = kd_wall_ms();
    open_store(&w);
    static struct seed_deals s;
    s.n = 0;
    struct truth unknown = {.buy = 1000, .a90 = 4000, .a365 = 4000, .rank = 1000, .condition = 3};
    s.d[s.n++] = make_deal(UNKNOWN, &unknown, t0 - 60000, t0 - 50000);
    for (int i = 0; i < N; i++)
        s.d[s.n++] = make_deal(asins[i], &truths[i], t0 - 30000, t0 - 20000);
    assert_int_equal(st_write(w.env, put_all_fn, &s), 0);

    start_daemon(&w);

    /* Four failed update jobs (each tried 3 times by the client), with growing backoff: the
     * stall outlasts the max interval (8 s) while every deal is overdue. */
    assert_true(KDH_WAIT_FOR(upd_counter(&w, SHM_C_http_errors) >= 12, 60));
    assert_true(sim_stat(&w, "http500") >= 12);
    assert_int_equal(upd_counter(&w, SHM_C_deals_expired), 0);
    assert_int_equal(upd_counter(&w, SHM_C_deals_refreshed), 0);
    assert_int_equal(upd_counter(&w, SHM_C_updates_due), N + 1);
    for (size_t i = 0; i < s.n; i++) {
        static struct st_record d;
        assert_int_equal(get_deal(&w, s.d[i].asin, &d), 0);
        assert_int_equal(d.last_checked_ms, s.d[i].last_checked_ms);
        assert_int_equal(d.next_check_ms, s.d[i].next_check_ms); /* still due */
        assert_int_equal(d.check_failures, 0);
        assert_int_equal(d.revision, 1);
    }

    /* Keepa is back: the same deals are checked now. */
    struct body b;
    assert_int_equal(http(&w, "POST", "/_sim/faults?spec=clear", &b), 200);
    assert_true(KDH_WAIT_FOR(all_checked_after(&w, asins, N, t0), 30));
    static struct st_record d;
    assert_true(KDH_WAIT_FOR(expired(&w, UNKNOWN), 20));
    assert_int_equal(upd_counter(&w, SHM_C_deals_expired), 1);
    for (int i = 0; i < N; i++) {
        assert_int_equal(get_deal(&w, asins[i], &d), 0);
        assert_int_equal(d.check_failures, 0);
    }
    stop_all(&w);
}

/* Counts ASINS whose last check happened in a batch of exactly K (same last_checked_ms). */
static size_t largest_group(struct world *w, char asins[][ST_ASIN_LEN + 1], size_t n)
{
    static struct st_record d[16];
    size_t best = 0;
    for (size_t i = 0; i < n; i++)
        assert_int_equal(get_deal(w, asins[i], &d[i]), 0);
    for (size_t i = 0; i < n; i++) {
        size_t k = 0;
        for (size_t j = 0; j < n; j++)
            k += d[j].last_checked_ms == d[i].last_checked_ms;
        if (k > best)
            best = k;
    }
    return best;
}

/*
 * HUP changes the batch size live: six deals due now go in batches of 2; after the reload
 * to batch 5, six deals that fall due together go as 5 + 1.
 */
static void test_hup_changes_batch_size(void **state)
{
    (void)state;
    struct world w;
    world_init(&w);
    start_sim(&w, NULL);
    write_config(&w, 2, "60m", "160m", 3); /* 6..16 s real */

    enum { N = 6 };
    char asins[2 * N][ST_ASIN_LEN + 1];
    struct truth truths[2 * N];
    pick_products(&w, 2 * N, asins, truths);
    int64_t t0 = kd_wall_ms();
    open_store(&w);
    static struct seed_deals s;
    s.n = 0;
    for (int i = 0; i < N; i++) /* previous interval 16 s: the next one is 16 s too */
        s.d[s.n++] = make_deal(asins[i], &truths[i], t0 - 20000, t0 - 4000);
    int64_t later = t0 + 8000;
    for (int i = N; i < 2 * N; i++)
        s.d[s.n++] = make_deal(asins[i], &truths[i], t0 - 20000, later);
    assert_int_equal(st_write(w.env, put_all_fn, &s), 0);

    start_daemon(&w);
    assert_true(KDH_WAIT_FOR(all_checked_after(&w, asins, N, t0), 20));
    assert_true(largest_group(&w, asins, N) <= 2);
    for (unsigned b = 3; b < SHM_HIST_BUCKETS; b++)
        assert_int_equal(upd_hist_bucket(&w, b), 0);

    write_config(&w, 5, "60m", "160m", 3);
    kill(w.daemon, SIGHUP);
    assert_true(KDH_WAIT_FOR(log_contains(&w, "reload: update batch 5"), 10));
    assert_true(kd_wall_ms() < later); /* the reload landed before the next deals fall due */

    assert_true(KDH_WAIT_FOR(all_checked_after(&w, asins + N, N, later - 1), 20));
    assert_int_equal(largest_group(&w, asins + N, N), 5);
    assert_true(upd_hist_bucket(&w, 3) >= 1); /* a request of 4..7 ASINs */
    for (unsigned b = 4; b < SHM_HIST_BUCKETS; b++)
        assert_int_equal(upd_hist_bucket(&w, b), 0);
    stop_all(&w);
}

/* TERM to the updater while its batch is on the wire (1.5 s of injected latency): it waits
 * for the answer, stores it, and exits 0. */
static void test_stop_finishes_the_batch_in_flight(void **state)
{
    (void)state;
    struct world w;
    world_init(&w);
    start_sim(&w, "latency_ms=1500");
    write_config(&w, 10, "10m", "80m", 3);
    enum { N = 3 };
    char asins[N][ST_ASIN_LEN + 1];
    struct truth truths[N];
    int64_t t0 = seed_due_deals(&w, N, asins, truths);

    start_daemon(&w);
    /* The updater's request is on the wire (spend records its size when it sends it). */
    struct shm_histogram *h = &w.seg.layout->counters[SHM_ROLE_UPDATER].hist[SHM_H_batch_asins];
    assert_true(KDH_WAIT_FOR(atomic_load(&h->count) >= 1, 20));
    assert_false(checked_after(&w, asins[0], t0)); /* the answer is still on its way */
    int64_t pid = atomic_load(&w.seg.layout->procs[SHM_ROLE_UPDATER].pid);
    assert_true(pid > 0);
    kill((pid_t)pid, SIGTERM);
    /* It exits 0 after storing the answer (the supervisor then starts a new one). */
    assert_true(KDH_WAIT_FOR(kill((pid_t)pid, 0) != 0, 30));
    assert_true(
        KDH_WAIT_FOR(atomic_load(&w.seg.layout->procs[SHM_ROLE_UPDATER].restarts) >= 1, 10));
    assert_int_equal(atomic_load(&w.seg.layout->procs[SHM_ROLE_UPDATER].last_exit_status), 0);
    assert_true(all_checked_after(&w, asins, N, t0));
    assert_true(log_contains(&w, "stopping after the update batch in flight (3 asins, at most "));
    assert_true(log_contains(&w, "update batch: 3 asins"));
    stop_all(&w);
}

/*
 * An answer slower than the updater's share of the stop deadline (a quarter of stop_timeout,
 * 5 s here; the answer takes 9 s): the batch is cancelled, the updater exits 0 well within the
 * supervisor's deadline, and its deals stay due (nothing was stored from an answer not read).
 */
static void test_stop_deadline_cancels_a_slow_batch(void **state)
{
    (void)state;
    struct world w;
    world_init(&w);
    start_sim(&w, "latency_ms=9000");
    write_config(&w, 10, "10m", "80m", 3);
    enum { N = 3 };
    char asins[N][ST_ASIN_LEN + 1];
    struct truth truths[N];
    int64_t t0 = seed_due_deals(&w, N, asins, truths);

    start_daemon(&w);
    struct shm_histogram *h = &w.seg.layout->counters[SHM_ROLE_UPDATER].hist[SHM_H_batch_asins];
    assert_true(KDH_WAIT_FOR(atomic_load(&h->count) >= 1, 20));
    int64_t pid = atomic_load(&w.seg.layout->procs[SHM_ROLE_UPDATER].pid);
    assert_true(pid > 0);
    int64_t sent = kd_mono_ns();
    kill((pid_t)pid, SIGTERM);
    assert_true(KDH_WAIT_FOR(kill((pid_t)pid, 0) != 0, 30));
    int64_t took_ms = (kd_mono_ns() - sent) / KD_NS_PER_MS;
    assert_true(
        KDH_WAIT_FOR(atomic_load(&w.seg.layout->procs[SHM_ROLE_UPDATER].restarts) >= 1, 10));
    printf("    stopped %lld ms after TERM with a 9 s answer on the wire\n", (long long)took_ms);
    assert_int_equal(atomic_load(&w.seg.layout->procs[SHM_ROLE_UPDATER].last_exit_status), 0);
    assert_true(log_contains(&w, "stop deadline: cancelling the update batch in flight"));
    for (int i = 0; i < N; i++)
        assert_false(checked_after(&w, asins[i], t0)); /* still due: checked after the restart */
    stop_all(&w);
}

/*
 * Free refreshes: the test plays the scanner's side of the REFRESH ring (the scanner itself
 * only looks at an ASIN the sim does not know, so it never produces here). A refresh with a
 * 7 % lower buy price is applied without any request and reschedules the deal at the minimum
 * interval (no recommit under 10 %); a refresh older than the stored check and one for an
 * ASIN that is no deal change nothing.
 */
static void test_refresh_ring_applies_free_refreshes(void **state)
{
    (void)state;
    struct world w;
    world_init(&w);
    start_sim(&w, NULL);
    write_config(&w, 10, "60m", "160m", 3); /* 6..16 s real */
    enum { N = 3 };
    char asins[N][ST_ASIN_LEN + 1];
    struct truth truths[N];
    pick_products(&w, N, asins, truths);
    int64_t t0 = kd_wall_ms();
    open_store(&w);
    static struct seed_deals s;
    s.n = 0;
    for (int i = 0; i < 2; i++) /* not due for an hour */
        s.d[s.n++] = make_deal(asins[i], &truths[i], t0, t0 + 3600 * 1000);
    assert_int_equal(st_write(w.env, put_all_fn, &s), 0);
    start_daemon(&w);

    struct shm_segment rw;
    char err[256];
    assert_int_equal(shm_segment_attach(&rw, w.instance, SHM_READ_WRITE, err, sizeof(err)), 0);
    struct ring r;
    assert_int_equal(ring_open(&r, &rw.layout->rings[SHM_RING_REFRESH],
                               shm_segment_ring_data(&rw, SHM_RING_REFRESH), -1),
                     0);
    static struct st_pending recs[3];
    int64_t peek_ms = kd_wall_ms();
    /* 0: the lowest listing fell 7 %; 1: older than the stored check; 2: not a stored deal. */
    for (int i = 0; i < 3; i++) {
        st_pending_init(&recs[i]);
        memcpy(recs[i].asin, asins[i], sizeof(recs[i].asin));
        recs[i].domain = 1;
        recs[i].peek_ms = i == 1 ? t0 - 1000 : peek_ms;
        int64_t listing = i == 0 ? truths[i].buy * 93 / 100 : truths[i].buy;
        recs[i].in = light_read(&truths[i], listing, recs[i].peek_ms);
        recs[i].peek_buy_cents = listing;
        recs[i].source = ST_SOURCE_DEALS;
        uint8_t buf[ST_RECORD_MAX];
        size_t len = 0;
        assert_int_equal(st_pending_encode(&recs[i], buf, sizeof(buf), &len), 0);
        assert_int_equal(ring_write(&r, buf, len), 0);
    }
    int64_t requests = upd_counter(&w, SHM_C_http_requests);

    assert_true(KDH_WAIT_FOR(upd_counter(&w, SHM_C_ring_records_in) == 3, 10));
    static struct st_record d;
    assert_int_equal(get_deal(&w, asins[0], &d), 0);
    /* The stored offer stays whole; the lowest listing and the rest are the peek's. */
    assert_int_equal(d.in.buy_price_cents, truths[0].buy);
    assert_string_equal(d.in.buy_seller_id, "A1TESTSELLER");
    assert_int_equal(d.in.used_cents, truths[0].buy * 93 / 100);
    assert_int_equal(d.in.data_ms, peek_ms);
    assert_int_equal(d.last_checked_ms, peek_ms);
    /* Nothing the verdict reads moved: stable, the interval doubles (up to the 16 s max). */
    assert_int_equal(d.next_check_ms, peek_ms + 16000);
    assert_int_equal(d.revision, 2);
    assert_int_equal(d.v.profit_cents, s.d[0].v.profit_cents);
    assert_int_equal(get_deal(&w, asins[1], &d), 0);
    assert_int_equal(d.revision, 1);
    assert_int_equal(d.last_checked_ms, t0);
    assert_int_equal(get_deal(&w, asins[2], &d), -ENOENT);
    assert_int_equal(upd_counter(&w, SHM_C_deals_refreshed), 1);
    struct st_pending p;
    assert_int_equal(get_pending(&w, asins[0], &p), -ENOENT); /* under 10 %: no recommit */
    /* The updater made no request for it (the committer's full fetch is its own). */
    assert_int_equal(upd_counter(&w, SHM_C_http_requests), requests);
    shm_segment_detach(&rw);
    stop_all(&w);
}

/* Fills or empties meta records test_junk_FIRST.. (SIZE bytes each; 0 = 3000). */
struct junk {
    int first, count;
    bool del;
    size_t size;
};

static int junk_fn(struct st_txn *txn, void *ud)
{
    const struct junk *j = ud;
    static uint8_t blob[3000];
    for (int i = j->first; i < j->first + j->count; i++) {
        char name[32];
        snprintf(name, sizeof(name), "test_junk_%d", i);
        int rc = j->del ? st_meta_del(txn, name)
                        : st_meta_put_bytes(txn, name, blob, j->size ? j->size : sizeof(blob));
        if (rc != 0 && !(j->del && rc == -ENOENT))
            return rc;
    }
    return 0;
}

/*
 * A store that cannot take the answer (1 MiB, capped, filled up): the batch is kept in
 * memory, nothing new is fetched, and once there is room again the same answer is stored
 * without asking Keepa again.
 */
static void test_full_store_keeps_the_answered_batch(void **state)
{
    (void)state;
    struct world w;
    world_init(&w);
    w.store_mb = 1;
    start_sim(&w, NULL);
    write_config(&w, 50, "10m", "80m", 3);
    enum { N = 30 }; /* a rewrite of 30 deals needs more pages than a small write frees */
    char asins[N][ST_ASIN_LEN + 1];
    struct truth truths[N];
    pick_products(&w, N, asins, truths);
    int64_t t0 = kd_wall_ms();
    open_store(&w);
    static struct seed_deals s;
    s.n = 0;
    for (int i = 0; i < N; i++)
        s.d[s.n++] = make_deal(asins[i], &truths[i], t0 - 30000, t0 - 20000);
    assert_int_equal(st_write(w.env, put_all_fn, &s), 0);
    /* Fill it with ever smaller records until not even the deals can be rewritten. */
    int filled = 0;
    const size_t sizes[] = {3000, 500, 50, 8};
    for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
        for (int fails = 0; fails < 3;) {
            struct junk j = {filled, 1, false, sizes[k]};
            if (st_write(w.env, junk_fn, &j) == 0)
                filled++;
            else
                fails++;
        }
    }
    assert_int_equal(st_write(w.env, put_all_fn, &s), -EFBIG);
    st_close(w.env);
    w.env = NULL;

    start_daemon(&w);
    assert_true(KDH_WAIT_FOR(log_contains(&w, "writing an update batch failed"), 20));
    int64_t requests = upd_counter(&w, SHM_C_http_requests);
    assert_true(requests >= 1);
    assert_int_equal(upd_counter(&w, SHM_C_deals_refreshed), 0);

    /* Room again (another process grows the map; the updater adopts it at its next write). */
    char path[512], err[256];
    snprintf(path, sizeof(path), "%s/store", w.dir);
    struct st_options o = {
        .path = path, .map_size_bytes = 4u << 20, .max_map_size_bytes = 4u << 20};
    assert_int_equal(st_open(&o, &w.env, err, sizeof(err)), 0);
    struct junk j = {0, filled, true, 0};
    assert_int_equal(st_write(w.env, junk_fn, &j), 0);
    struct junk touch = {filled + 1, 1, false, 0}; /* freed pages are reused after a later commit */
    assert_int_equal(st_write(w.env, junk_fn, &touch), 0);

    assert_true(KDH_WAIT_FOR(all_checked_after(&w, asins, N, t0), 30));
    /* The line is logged just after the commit the records above were read from. */
    assert_true(
        KDH_WAIT_FOR(log_contains(&w, "the delayed write of an update batch succeeded"), 10));
    /* ... and the batch is counted after it. */
    (void)KDH_WAIT_FOR(upd_counter(&w, SHM_C_deals_refreshed) >= N, 10);
    assert_int_equal(upd_counter(&w, SHM_C_deals_refreshed), N);
    /* Stored from memory: no second request for the same deals. */
    assert_int_equal(upd_counter(&w, SHM_C_http_requests), requests);
    static struct st_record d;
    assert_int_equal(get_deal(&w, asins[0], &d), 0);
    assert_int_equal(d.revision, 2);
    stop_all(&w);
}

/*
 * Deals Keepa refuses to be asked about (domain 7 has no marketplace: 400) are found one at a
 * time and set aside, still due and uncounted, so the deals behind them are checked.
 */
static void test_refused_deals_do_not_block_the_others(void **state)
{
    (void)state;
    struct world w;
    world_init(&w);
    start_sim(&w, NULL);
    write_config(&w, 10, "10m", "80m", 1);
    enum { N = 3 };
    char asins[N][ST_ASIN_LEN + 1];
    struct truth truths[N];
    pick_products(&w, N, asins, truths);
    int64_t t0 = kd_wall_ms();
    open_store(&w);
    static struct seed_deals s;
    s.n = 0;
    for (int i = 0; i < 2; i++) { /* stalest: the batch starts with them */
        s.d[s.n] = make_deal(asins[i], &truths[i], t0 - 60000, t0 - 50000 + i);
        s.d[s.n++].domain = 7;
    }
    for (int i = 0; i < N; i++)
        s.d[s.n++] = make_deal(asins[i], &truths[i], t0 - 30000, t0 - 20000);
    assert_int_equal(st_write(w.env, put_all_fn, &s), 0);
    start_daemon(&w);

    assert_true(KDH_WAIT_FOR(all_checked_after(&w, asins, N, t0), 20));
    assert_true(KDH_WAIT_FOR(log_contains(&w, "asking for them one at a time"), 10));
    assert_true(KDH_WAIT_FOR(log_contains(&w, "set aside"), 10));
    for (int i = 0; i < 2; i++) {
        static struct st_record d;
        assert_int_equal(get_deal_in(&w, 7, asins[i], &d), 0); /* never expired */
        assert_int_equal(d.check_failures, 0);
        assert_int_equal(d.next_check_ms, s.d[i].next_check_ms); /* still due */
        assert_int_equal(d.revision, 1);
    }
    assert_int_equal(upd_counter(&w, SHM_C_deals_expired), 0);
    stop_all(&w);
}

/*
 * Deals that no longer pass the criteria (an ROI of 10000 % is asked for): each real re-check
 * counts and the third expires the deal. No offer could reach that ROI, so no check pays for
 * fresh offers (were one asked, offers_fail=1 would leave it pending in the committer). The
 * default rules without `final`, which would expire such a failure at once
 * (tests/unit/test_updater_rules.c): the confirmations are what this test is about.
 */
static void test_failing_criteria_expire_after_n_checks(void **state)
{
    (void)state;
    struct world w;
    world_init(&w);
    w.value_rules =
        "order, prescore, fees, recheck, gone, busy, fresh, probe, cadence, lowfees, age";
    w.min_roi = "10000";
    start_sim(&w, "offers_fail=1");
    write_config(&w, 10, "10m", "80m", 3);
    enum { N = 4 };
    char asins[N][ST_ASIN_LEN + 1];
    struct truth truths[N];
    int64_t t0 = seed_due_deals(&w, N, asins, truths);
    start_daemon(&w);

    /* First failed check: kept, counted, rescheduled at the minimum interval. */
    static struct st_record d;
    assert_true(KDH_WAIT_FOR(checked_after(&w, asins[0], t0), 20));
    int rc = get_deal(&w, asins[0], &d);
    if (rc == 0 && d.check_failures == 1) /* unless the second check came first */
        assert_int_equal(d.next_check_ms - d.last_checked_ms, 1000);
    for (int i = 0; i < N; i++)
        assert_true(KDH_WAIT_FOR(expired(&w, asins[i]), 20));
    assert_true(KDH_WAIT_FOR(upd_counter(&w, SHM_C_deals_expired) == N, 10));
    assert_true(KDH_WAIT_FOR(
        log_contains(&w, "4 failed the criteria, 0 not returned, 0 expired, 0 recommits"), 10));
    assert_true(KDH_WAIT_FOR(
        log_contains(&w, "4 failed the criteria, 0 not returned, 4 expired, 0 recommits"), 10));
    assert_false(log_contains(&w, "4 recommits"));
    for (int i = 0; i < N; i++) {
        struct st_pending p;
        assert_int_equal(get_pending(&w, asins[i], &p), -ENOENT);
    }
    stop_all(&w);
}

/*
 * The same deals under the default rules: `final` sees that no offer near the market reaches
 * that ROI, so each expires at its first failed check, without the two confirmations.
 */
static void test_final_failure_expires_at_the_first_check(void **state)
{
    (void)state;
    struct world w;
    world_init(&w);
    w.min_roi = "10000";
    start_sim(&w, "offers_fail=1");
    write_config(&w, 10, "10m", "80m", 3);
    enum { N = 4 };
    char asins[N][ST_ASIN_LEN + 1];
    struct truth truths[N];
    seed_due_deals(&w, N, asins, truths);
    start_daemon(&w);
    for (int i = 0; i < N; i++)
        assert_true(KDH_WAIT_FOR(expired(&w, asins[i]), 20));
    for (int i = 0; i < N; i++) {
        static struct st_record d;
        assert_int_equal(get_deal(&w, asins[i], &d), 0);
        assert_int_equal(d.check_failures, 1);
    }
    assert_int_equal(upd_counter(&w, SHM_C_deals_expired), N);
    assert_false(log_contains(&w, "4 recommits"));
    stop_all(&w);
}

/*
 * The "first" rule, through the daemon and the store: a deal the committer stores with its
 * first re-check a day away is moved, by the updater following the change log, to where a
 * passing re-check would place it (within [update] max_interval of its full fetch), with no
 * history entry, no revision and no change of its own.
 */
static void test_first_recheck_of_a_new_deal_is_placed(void **state)
{
    (void)state;
    struct world w;
    world_init(&w);
    start_sim(&w, NULL);
    write_config(&w, 10, "10m", "80m", 3);
    enum { N = 5 };
    char asins[N + 1][ST_ASIN_LEN + 1];
    struct truth truths[N + 1];
    /* Deals due now: the updater steps (and has read the log's end) once it re-checks them.
     * The products are taken in one order: the first N are seeded, the last is the new deal. */
    pick_products(&w, N + 1, asins, truths);
    seed_due_deals(&w, N, asins, truths);
    start_daemon(&w);
    assert_true(KDH_WAIT_FOR(upd_counter(&w, SHM_C_deals_refreshed) >= 1, 20));

    /* A new deal, as the committer stores it, its first check a day away. */
    int64_t t1 = kd_wall_ms();
    static struct seed_deals s;
    s.n = 0;
    s.d[s.n++] = make_deal(asins[N], &truths[N], t1, t1 + 24 * 3600 * 1000LL);
    s.d[0].revision = 7; /* a revision the re-checks of this test never write */
    assert_int_equal(st_write(w.env, put_all_fn, &s), 0);
    uint64_t seq0 = 0;
    struct st_txn *txn;
    assert_int_equal(st_read_begin(w.env, &txn), 0);
    assert_int_equal(st_changes_last(txn, &seq0), 0);
    st_read_end(txn);

    /* 80 Keepa minutes of 100 ms: a passing re-check's interval is at most 8 s. */
    static struct st_record d;
    if (!KDH_WAIT_FOR(get_deal(&w, asins[N], &d) == 0 &&
                          (d.revision != 7 || d.next_check_ms <= t1 + 8000),
                      30))
        fail_msg("the new deal's first re-check stayed a day away (see %s)", w.log);
    if (d.revision == 7) {
        /* Moved, and nothing else: no history entry, no change logged for the move. */
        struct st_key key;
        struct st_history h[4];
        size_t nh = 0;
        assert_int_equal(st_key_make(1, asins[N], &key), 0);
        assert_int_equal(st_read_begin(w.env, &txn), 0);
        assert_int_equal(st_history_list(txn, &key, h, 4, &nh), 0);
        struct st_change ch[64];
        size_t nc = 0;
        assert_int_equal(st_changes_read(txn, seq0, ch, 64, &nc), 0);
        st_read_end(txn);
        assert_int_equal(nh, 1);
        for (size_t i = 0; i < nc; i++)
            assert_string_not_equal(ch[i].asin, asins[N]);
        assert_true(d.next_check_ms > t1);
    } /* else re-checked already: long before its day, so it was moved */
    stop_all(&w);
}

/*
 * The learning tests' start: N due deals (at most 64) whose every re-check fails, a daemon
 * whose updater re-checks them until each has expired (3 failures), teaching a vanish rate.
 */
static void teach_failing_deals(struct world *w, size_t n)
{
    static char asins[64][ST_ASIN_LEN + 1];
    static struct truth truths[64];
    assert_true(n <= 64);
    world_init(w);
    w->value_rules = "order, prescore, fees, recheck, gone, busy, fresh, probe, cadence, lowfees";
    w->min_roi = "10000";
    start_sim(w, "offers_fail=1");
    write_config(w, 10, "10m", "80m", 3);
    seed_due_deals(w, n, asins, truths);
    start_daemon(w);
    for (size_t i = 0; i < n; i++)
        assert_true(KDH_WAIT_FOR(expired(w, asins[i]), 30));
}

/*
 * What the re-checks taught survives `kdeals stop` and `start`: deals that fail every re-check
 * teach a half-life other than the prior's 120 Keepa minutes; after a stop and a start, before
 * any new re-check (every deal expired: none is due), `kdeals stat` shows the same learned
 * figures, read back from the store.
 */
static void test_learned_rates_survive_a_restart(void **state)
{
    (void)state;
    struct world w;
    enum { N = 8 };
    teach_failing_deals(&w, N);
    assert_true(KDH_WAIT_FOR(upd_counter(&w, SHM_C_deals_expired) == N, 10));
    static const char *const names[] = {"vanish_half_life_min",
                                        "vanish_half_life_fast_min",
                                        "vanish_half_life_mid_min",
                                        "vanish_half_life_slow_min",
                                        "peek_hit_bp",
                                        "peek_profit_ratio_bp"};
    enum { NV = sizeof(names) / sizeof(names[0]) };
    int64_t before[NV];
    for (int i = 0; i < NV; i++)
        before[i] = kdh_stat_value(w.conf, names[i]);
    if (before[0] <= 0 || before[0] == VAL_PRIOR_HALF_LIFE_MIN)
        fail_msg("the re-checks taught no half-life: %lld", (long long)before[0]);
    int64_t checks = upd_counter(&w, SHM_C_deals_refreshed) + upd_counter(&w, SHM_C_deals_expired);

    /* `kdeals stop` (TERM) and start again: same store, nothing due. */
    int status = 0;
    kill(w.daemon, SIGTERM);
    assert_true(KDH_WAIT_FOR(exited(w.daemon, &status), 30));
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    shm_segment_detach(&w.seg);
    w.attached = false;
    start_daemon(&w);
    assert_true(KDH_WAIT_FOR(
        atomic_load(&w.seg.layout->procs[SHM_ROLE_COMMITTER].state) == SHM_PROC_READY, 20));
    for (int i = 0; i < NV; i++) {
        int64_t after = kdh_stat_value(w.conf, names[i]);
        if (after != before[i])
            fail_msg("%s: %lld before the restart, %lld after (see %s)", names[i],
                     (long long)before[i], (long long)after, w.log);
    }
    /* No re-check taught them again: the new run checked nothing. */
    assert_int_equal(upd_counter(&w, SHM_C_deals_refreshed) + upd_counter(&w, SHM_C_deals_expired),
                     0);
    assert_true(checks >= N);
    assert_true(log_contains(&w, "learned vanish rates read from the store"));
    stop_all(&w);
}

/* The half-life the updater's log says it read back from the store, or -1. */
static int64_t read_back_half_life(struct world *w)
{
    static const char needle[] = "learned vanish rates read from the store: a half-life of ";
    size_t len = 0;
    char *text = kd_read_file(w->log, &len);
    const char *p = text != NULL ? strstr(text, needle) : NULL;
    long long v = -1;
    if (p == NULL || sscanf(p + sizeof(needle) - 1, "%lld", &v) != 1)
        v = -1;
    free(text);
    return v;
}

/*
 * What the re-checks taught survives a crash, up to the last periodic save: 40 deals fail
 * their re-checks, more than the 32 observations after which the updater saves its rates in
 * a batch's write; then the updater is killed (SIGKILL: no stop, no final save) and the
 * supervisor restarts it. The new updater reads a learned half-life back from the store, not
 * the prior's 120 Keepa minutes. (The gauges live in shared memory and outlive the process,
 * so the log line of the read is what tells.)
 */
static void test_learned_rates_survive_a_killed_updater(void **state)
{
    (void)state;
    struct world w;
    teach_failing_deals(&w, 40);
    int64_t taught = kdh_stat_value(w.conf, "vanish_half_life_min");
    if (taught <= 0 || taught == VAL_PRIOR_HALF_LIFE_MIN)
        fail_msg("the re-checks taught no half-life: %lld", (long long)taught);
    assert_true(log_contains(&w, "no learned vanish rates in the store"));
    assert_int_equal(read_back_half_life(&w), -1);

    struct shm_proc_slot *slot = &w.seg.layout->procs[SHM_ROLE_UPDATER];
    pid_t pid = (pid_t)atomic_load(&slot->pid);
    uint32_t restarts = atomic_load(&slot->restarts);
    assert_true(pid > 0);
    assert_int_equal(kill(pid, SIGKILL), 0);
    assert_true(KDH_WAIT_FOR(atomic_load(&slot->restarts) > restarts &&
                                 (pid_t)atomic_load(&slot->pid) != pid && updater_ready(&w),
                             30));
    int64_t back = -1;
    if (!KDH_WAIT_FOR((back = read_back_half_life(&w)) > 0, 10))
        fail_msg("the restarted updater read no learned rates back (see %s)", w.log);
    if (back == VAL_PRIOR_HALF_LIFE_MIN)
        fail_msg("the restarted updater read the prior's half-life back (see %s)", w.log);
    print_message("taught a half-life of %lld Keepa minutes; after SIGKILL and a restart, %lld "
                  "read back\n",
                  (long long)taught, (long long)back);
    stop_all(&w);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_due_deals_rechecked_in_batches_and_rescheduled),
        cmocka_unit_test(test_failing_fetches_never_expire_or_move_deals),
        cmocka_unit_test(test_wall_clock_step_back_keeps_rechecks),
        cmocka_unit_test(test_hup_changes_batch_size),
        cmocka_unit_test(test_stop_finishes_the_batch_in_flight),
        cmocka_unit_test(test_stop_deadline_cancels_a_slow_batch),
        cmocka_unit_test(test_refresh_ring_applies_free_refreshes),
        cmocka_unit_test(test_full_store_keeps_the_answered_batch),
        cmocka_unit_test(test_refused_deals_do_not_block_the_others),
        cmocka_unit_test(test_failing_criteria_expire_after_n_checks),
        cmocka_unit_test(test_final_failure_expires_at_the_first_check),
        cmocka_unit_test(test_first_recheck_of_a_new_deal_is_placed),
        cmocka_unit_test(test_learned_rates_survive_a_restart),
        cmocka_unit_test(test_learned_rates_survive_a_killed_updater),
    };
    kd_test_set_timeout(120);
    return KD_RUN_TESTS(tests, argc, argv);
}
