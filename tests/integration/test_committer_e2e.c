/*
 * test_committer_e2e.c: the real daemon (`kdeals run -c FILE`) committing survivors against
 * kdeals-sim with an accelerated Keepa minute.
 *
 * The store is pre-populated before the daemon starts, as the scanner and the updater would
 * leave it: `pending` records for ASINs the simulator's oracle (/_sim/deals) lists as deals,
 * for products that are clearly not deals, for one ASIN that does not exist, and for two
 * stored deals sent back for a recommit. Discovery is off (source = asins with an empty list)
 * so nothing else writes pending. Then the test asserts from the outside (LMDB, the shm
 * counters, the simulator's truth, the daemon's log):
 *
 *   - every pending survivor ends committed, rejected (verdict in `seen`) or, for the ASIN
 *     Keepa never returns, given up after bounded retries with a warning naming it: pending
 *     empties and nothing disappears silently;
 *   - no full fetch carries more than 5 ASINs;
 *   - each stored deal's economics agree with an independent recomputation from the
 *     simulator's truth for the product (/_sim/product), and the deal rules hold;
 *   - a stored deal that fails its recommit gets check_failures + 1, and is deleted at the
 *     expiry threshold;
 *   - kill -9 of the committer mid-batch loses no survivor (each is committed or still
 *     pending right after the kill, and settled after the restart) and corrupts nothing
 *     (every record decodes; mdb_stat opens the environment);
 *   - the values are plain msgpack: msgpack-c's msgpack_unpack_next reads every deal and
 *     pending record as a map with the documented string keys and types;
 *   - what the full fetches taught of the peeks (hit rate, profit ratio) survives kill -9 of
 *     the committer up to its last periodic save: the restarted committer shows what the
 *     store saved, not the prior.
 *
 * Prices are frozen (--volatility 0) and the simulated clock starts at a UTC midnight so the
 * slowly drifting averages cannot change during a run (a simulated day lasts 144 s here).
 */
#include "base/key.h"
#include "kd_harness.h"
#include "kd_test.h"

#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <math.h>
#include <msgpack.h>
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
#include <yajl/yajl_tree.h>

#include "base/clock.h"
#include "base/log.h"
#include "judge/rules.h"
#include "shm/counters.h"
#include "shm/ring.h"
#include "shm/segment.h"
#include "shm/tokens.h"
#include "store/store.h"
#include "worker/value.h"

#define KEY       "CommitterTestKey0123456789"
#define SIM       KD_BUILD_DIR "/kdeals-sim"
#define KDEALS    KD_BUILD_DIR "/kdeals"
#define MINUTE_MS 100
#define MIDNIGHT  "1796083200000" /* 2026-12-01T00:00Z */
#define UNKNOWN   "B0ZZZZZZZZ"

/* Fails the test (keeping the daemon's log when KD_KEEP_LOG is set) unless COND becomes true
 * within SECONDS. */
#define ASSERT_WAIT(cond, seconds)                                                                 \
    do {                                                                                           \
        if (!KDH_WAIT_FOR(cond, seconds)) {                                                        \
            keep_log();                                                                            \
            fail_msg("timed out after %d s waiting for %s", (int)(seconds), #cond);                \
        }                                                                                          \
    } while (0)

static void keep_log(void);

/* A folder of this test case's own (kd_test_tmpdir() is shared by the cases of a file). */
static const char *test_dir(void)
{
    static char dir[512];
    if (dir[0] == '\0') {
        snprintf(dir, sizeof(dir), "%s/case-%ld", kd_test_tmpdir(), (long)getpid());
        assert_int_equal(mkdir(dir, 0700), 0);
    }
    return dir;
}

/* ---------------------------------------------------------------- simulator */

static struct kdh_sim sim = {.pid = -1};
static pid_t sup_pid;
static char sim_base[64];

static char log_path[4200];

static void stop_all(void)
{
    keep_log();
    if (sup_pid > 0) {
        kill(sup_pid, SIGKILL);
        waitpid(sup_pid, NULL, 0);
        sup_pid = 0;
    }
    kdh_sim_stop(&sim);
}

static void sim_start(const char *faults)
{
    const char *args[] = {"--keys",
                          KEY,
                          "--seed",
                          "5",
                          "--products",
                          "3000",
                          "--minute-ms",
                          "100",
                          "--refill-rate",
                          "300",
                          "--volatility",
                          "0",
                          "--clock-ms",
                          MIDNIGHT,
                          faults ? "--faults" : NULL,
                          faults,
                          NULL};
    kdh_sim_start(&sim, args);
    atexit(stop_all);
    snprintf(sim_base, sizeof(sim_base), "%s", sim.base);
}

static yajl_val sim_json(const char *path_and_query)
{
    return kdh_sim_get(&sim, path_and_query);
}

static yajl_val sim_json_post(const char *path_and_query)
{
    return kdh_sim_post(&sim, path_and_query);
}

static yajl_val jget(yajl_val v, const char *a, const char *b)
{
    const char *path[] = {a, b, NULL};
    return yajl_tree_get(v, path, yajl_t_any);
}

static int64_t jint(yajl_val v, const char *a, const char *b)
{
    yajl_val x = jget(v, a, b);
    assert_true(x != NULL && YAJL_IS_NUMBER(x));
    return YAJL_GET_INTEGER(x);
}

static int64_t jidx(yajl_val v, const char *key, size_t i)
{
    yajl_val a = jget(v, key, NULL);
    assert_true(a != NULL && YAJL_IS_ARRAY(a) && i < a->u.array.len);
    return YAJL_GET_INTEGER(a->u.array.values[i]);
}

/* The oracle's deals for one price type (90-day range), in its order. */
static size_t oracle_deals(int price_type, char out[][11], size_t max)
{
    char q[256];
    snprintf(
        q, sizeof(q),
        "/_sim/deals?selection=%%7B%%22priceTypes%%22%%3A%%5B%d%%5D%%2C%%22dateRange%%22%%3A3%%7D",
        price_type);
    yajl_val v = sim_json(q);
    yajl_val arr = jget(v, "asins", NULL);
    assert_true(arr != NULL && YAJL_IS_ARRAY(arr));
    size_t n = 0;
    for (size_t i = 0; i < arr->u.array.len && n < max; i++) {
        const char *s = YAJL_GET_STRING(arr->u.array.values[i]);
        if (s != NULL && strlen(s) == 10)
            snprintf(out[n++], 11, "%.10s", s);
    }
    yajl_tree_free(v);
    return n;
}

static yajl_val truth(const char *asin)
{
    char q[64];
    snprintf(q, sizeof(q), "/_sim/product?asin=%.10s", asin);
    return sim_json(q);
}

#define PT_NEW  1
#define PT_USED 2

/* A product no rule can call a deal under this test's sell bases (its averages): it is
 * offered used at or above both of its Used averages. */
static int clearly_not_a_deal(const char *asin)
{
    yajl_val t = truth(asin);
    int64_t used = jidx(t, "current", PT_USED);
    int64_t a90 = jidx(t, "avg90", PT_USED), a365 = jidx(t, "avg365", PT_USED);
    yajl_tree_free(t);
    return used > 0 && a90 > 0 && used >= a90 && used >= a365;
}

/* ---------------------------------------------------------------- daemon */

static char conf_path[4200], store_path[4200];
static const char *instance;
static int without_key;  /* write no key_file: the workers get no API key */
static int store_cap_mb; /* > 0: the store's map is this size and cannot grow */

/* Reservations in flight in the bucket of the daemon's key (its own segment: shm/keyseg.h). */
static int64_t slots_in_use(void)
{
    char fp[KD_KEY_FP_LEN + 1], err[256];
    assert_int_equal(kd_key_fingerprint(kdh_key(KEY), fp), 0);
    struct ks_segment ks;
    if (ks_attach_ro(&ks, fp, err, sizeof(err)) != 0)
        return 0;
    struct tb_stats ts;
    int64_t n = tb_stats(&ks.layout->tokens, kd_mono_ns(), &ts) == 0 ? ts.slots_in_use : 0;
    ks_close(&ks);
    return n;
}

static void write_config(const char *extra)
{
    const char *dir = test_dir();
    char key_path[4200], asins_path[4200];
    snprintf(key_path, sizeof(key_path), "%s/key", dir);
    snprintf(asins_path, sizeof(asins_path), "%s/asins.txt", dir);
    snprintf(store_path, sizeof(store_path), "%s/store", dir);
    snprintf(conf_path, sizeof(conf_path), "%s/kdeals.conf", dir);
    snprintf(log_path, sizeof(log_path), "%s/kdeals.log", dir);
    if (instance == NULL) /* a rewrite (for a reload) keeps the instance */
        instance = kd_test_instance();
    int fd = open(key_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_true(dprintf(fd, "%s\n", kdh_key(KEY)) > 0); /* this process's key (kd_harness.h) */
    close(fd);
    FILE *f = fopen(asins_path, "w"); /* discovery finds nothing: only our pending records */
    assert_non_null(f);
    fclose(f);
    f = fopen(conf_path, "w");
    assert_non_null(f);
    fprintf(f,
            "[keepa]\nbase_url = %s\n%s%s\n"
            "[daemon]\ninstance = %s\nrun_dir = %s\nstop_timeout = 10s\n"
            "[store]\npath = %s\nmap_size_mb = %d\nmax_map_size_mb = %d\n"
            "[tokens]\nminute = %dms\n"
            "[scan]\nsource = asins\nasins_file = %s\n"
            /* Sold against the averages (the simulator's deals are price drops below them):
             * a product offered at or above both is then certainly not a deal. */
            KDH_JUDGEMENT "[commit]\nlinger_ms = 300\n%s",
            sim_base, without_key ? "# no key_file: " : "key_file = ", key_path, instance, dir,
            store_path, store_cap_mb > 0 ? store_cap_mb : 16,
            store_cap_mb > 0 ? store_cap_mb : 65536, MINUTE_MS, asins_path, extra ? extra : "");
    fclose(f);
}

/* Debugging aid: KD_KEEP_LOG=FILE keeps a copy of the daemon's log. */
static void keep_log(void)
{
    if (getenv("KD_KEEP_LOG") != NULL && log_path[0] != '\0') {
        char cmd[9000];
        snprintf(cmd, sizeof(cmd), "cp '%s' '%s'", log_path, getenv("KD_KEEP_LOG"));
        if (system(cmd) != 0)
            fprintf(stderr, "could not copy %s\n", log_path);
    }
}

static void daemon_start(void)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0600);
        dup2(fd, 2);
        execl(KDEALS, KDEALS, "run", "-c", conf_path, (char *)NULL);
        _exit(127);
    }
    sup_pid = pid;
}

static int daemon_stop_raw(void)
{
    keep_log();
    kill(sup_pid, SIGTERM);
    int status = -1;
    int64_t deadline = kd_mono_ns() + 30 * KD_NS_PER_SEC;
    while (kd_mono_ns() < deadline) {
        if (waitpid(sup_pid, &status, WNOHANG) == sup_pid) {
            sup_pid = 0;
            return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        }
        kdh_nap_ms(10);
    }
    return -1;
}

/* Forward declaration: defined with the log helpers below. */
static int log_contains(const char *needle);

/* SIGTERM, wait for the exit; also fails on any sanitizer report in the daemon's log. */
static int daemon_stop(void)
{
    int rc = daemon_stop_raw();
    size_t len = 0;
    char *log = kd_read_file(log_path, &len);
    const char *bad = NULL;
    if (log != NULL && (bad = strstr(log, "Sanitizer")) == NULL)
        bad = strstr(log, "runtime error:");
    if (bad != NULL) {
        const char *from = bad;
        while (from > log && from[-1] != '\n')
            from--;
        fail_msg("sanitizer report in the daemon log: %.600s", from);
    }
    free(log);
    return rc;
}

static int attach(struct shm_segment *seg)
{
    char err[256];
    return shm_segment_attach(seg, instance, SHM_READ_ONLY, err, sizeof(err));
}

static int64_t committer_counter(struct shm_segment *seg, enum shm_counter_id id)
{
    return shm_counter_get(&seg->layout->counters[SHM_ROLE_COMMITTER], id);
}

/* ---------------------------------------------------------------- store */

static struct st_env *store_open(void)
{
    struct st_options o = {.path = store_path, .map_size_bytes = 16u << 20};
    struct st_env *env = NULL;
    char err[512];
    int rc = st_open(&o, &env, err, sizeof(err));
    if (rc != 0)
        fail_msg("st_open: %s", err);
    return env;
}

struct prefill {
    char (*asins)[11];
    size_t n;
    uint8_t source;
    int64_t peek_profit_cents; /* the peek's estimate; 0: none (no profit ratio is learned) */
};

static int prefill_fn(struct st_txn *txn, void *ud)
{
    const struct prefill *p = ud;
    for (size_t i = 0; i < p->n; i++) {
        struct st_pending s;
        memset(&s, 0, sizeof(s));
        snprintf(s.asin, sizeof(s.asin), "%.10s", p->asins[i]);
        s.domain = 1;
        s.peek_ms = kd_wall_ms();
        s.peek_buy_cents = 1000;
        s.sell_estimate_cents = 2000;
        s.source = p->source;
        s.peek_profit_cents = p->peek_profit_cents;
        int rc = st_pending_put(txn, &s);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static void put_pending(struct st_env *env, char (*asins)[11], size_t n, uint8_t source)
{
    struct prefill p = {asins, n, source, 0};
    assert_int_equal(st_write(env, prefill_fn, &p), 0);
}

static int put_record_fn(struct st_txn *txn, void *ud)
{
    return st_record_put(txn, ud, ST_EV_COMMIT, 1000);
}

/* A stored deal (state DEAL) with CHECK_FAILURES failed re-checks behind it. */
static void put_stored_deal(struct st_env *env, const char *asin, uint32_t check_failures)
{
    struct st_record r;
    st_record_init(&r);
    snprintf(r.asin, sizeof(r.asin), "%.10s", asin);
    r.domain = 1;
    r.in.buy_source = JD_BUY_OFFER;
    r.in.buy_condition = 3;
    r.in.buy_price_cents = 500;
    r.in.buy_shipping_cents = 0;
    r.in.used_avg90_cents = 3000;
    r.in.data_ms = 0; /* inputs never read (as a migrated record): the start's re-judge skips it */
    r.v.deal = true;
    r.v.priced = r.v.payout_known = true;
    r.v.sell_cents = 3000;
    r.v.profit_cents = 1200;
    r.v.roi_bp = 9000;
    r.state = check_failures > 0 ? ST_STATE_FAILING : ST_STATE_DEAL;
    r.first_seen_ms = 1000;
    r.last_checked_ms = 1000;
    r.last_changed_ms = 1000;
    r.check_failures = check_failures;
    r.next_check_ms = kd_wall_ms() + 3600 * 1000;
    r.revision = 1;
    assert_int_equal(st_write(env, put_record_fn, &r), 0);
}

static uint64_t count_db(enum st_db db)
{
    struct st_env *env = store_open();
    struct st_txn *txn;
    assert_int_equal(st_read_begin(env, &txn), 0);
    uint64_t n = 0;
    assert_int_equal(st_count(txn, db, &n), 0);
    st_read_end(txn);
    st_close(env);
    return n;
}

enum fate { F_NONE, F_DEAL, F_PENDING, F_REJECTED, F_ERROR };

/* What became of ASIN: a record in the deal view, a record judged not a deal, pending, ... */
static enum fate fate_of(struct st_txn *txn, const char *asin, struct st_record *rec)
{
    struct st_key k;
    assert_int_equal(st_key_make(1, asin, &k), 0);
    static struct st_record d;
    struct st_pending p;
    struct st_seen s;
    if (st_record_get(txn, &k, &d) == 0) {
        if (rec != NULL)
            *rec = d;
        return d.state == ST_STATE_DEAL ? F_DEAL : F_REJECTED;
    }
    if (st_pending_get(txn, &k, &p) == 0)
        return F_PENDING;
    if (st_seen_get(txn, &k, &s) == 0)
        return s.verdict == ST_VERDICT_REJECTED ? F_REJECTED
               : s.verdict == ST_VERDICT_ERROR  ? F_ERROR
                                                : F_NONE;
    return F_NONE;
}

/* Every record decodes through the store's own cursor. Returns how many there are; *DEALS
 * (if not NULL) how many are in the deal view. */
static size_t all_records_decode(struct st_env *env, size_t *deals)
{
    struct st_txn *txn;
    assert_int_equal(st_read_begin(env, &txn), 0);
    struct st_cursor *cur;
    assert_int_equal(st_cursor_open(txn, ST_DB_PRODUCTS, &cur), 0);
    size_t n = 0, nd = 0;
    int rc;
    static struct st_record d;
    while ((rc = st_cursor_next_record(cur, &d)) == 0) {
        n++;
        nd += d.state == ST_STATE_DEAL;
    }
    if (deals != NULL)
        *deals = nd;
    assert_int_equal(rc, -ENOENT);
    st_cursor_close(cur);
    st_read_end(txn);
    return n;
}

static void mdb_stat_opens(void)
{
    char cmd[4400];
    snprintf(cmd, sizeof(cmd), "mdb_stat -a '%s' > /dev/null 2>&1", store_path);
    if (access("/usr/bin/mdb_stat", X_OK) == 0) {
        assert_int_equal(system(cmd), 0);
        return;
    }
    /* Without the tool: the same check through the library. */
    MDB_env *e;
    assert_int_equal(mdb_env_create(&e), 0);
    mdb_env_set_maxdbs(e, 8);
    assert_int_equal(mdb_env_open(e, store_path, MDB_RDONLY, 0600), 0);
    MDB_stat st;
    assert_int_equal(mdb_env_stat(e, &st), 0);
    mdb_env_close(e);
}

/* ---------------------------------------------------------------- msgpack, independently */

static const msgpack_object *map_get(const msgpack_object *m, const char *key)
{
    for (uint32_t i = 0; i < m->via.map.size; i++) {
        const msgpack_object *k = &m->via.map.ptr[i].key;
        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == strlen(key) &&
            memcmp(k->via.str.ptr, key, k->via.str.size) == 0)
            return &m->via.map.ptr[i].val;
    }
    return NULL;
}

static int is_int(const msgpack_object *o)
{
    return o != NULL && (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER ||
                         o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER);
}

static void check_msgpack_record(const MDB_val *val, const char *const *int_keys, size_t n_int)
{
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    assert_int_equal(msgpack_unpack_next(&u, val->mv_data, val->mv_size, &off),
                     MSGPACK_UNPACK_SUCCESS);
    assert_int_equal(off, val->mv_size); /* one object, nothing after it */
    const msgpack_object *m = &u.data;
    assert_int_equal(m->type, MSGPACK_OBJECT_MAP);
    for (uint32_t i = 0; i < m->via.map.size; i++)
        assert_int_equal(m->via.map.ptr[i].key.type, MSGPACK_OBJECT_STR);
    const msgpack_object *v = map_get(m, "v");
    assert_true(v != NULL && v->type == MSGPACK_OBJECT_POSITIVE_INTEGER && v->via.u64 >= 1);
    const msgpack_object *asin = map_get(m, "asin");
    assert_true(asin != NULL && asin->type == MSGPACK_OBJECT_STR && asin->via.str.size == 10);
    for (size_t i = 0; i < n_int; i++) {
        const msgpack_object *x = map_get(m, int_keys[i]);
        if (!is_int(x))
            fail_msg("msgpack record: key %s missing or not an integer", int_keys[i]);
    }
    msgpack_unpacked_destroy(&u);
}

/* Reads DB NAME raw through LMDB and checks each value with msgpack-c. Returns the count. */
static size_t msgpack_check_db(const char *name, const char *const *int_keys, size_t n_int)
{
    MDB_env *e;
    assert_int_equal(mdb_env_create(&e), 0);
    mdb_env_set_maxdbs(e, 8);
    assert_int_equal(mdb_env_open(e, store_path, MDB_RDONLY, 0600), 0);
    MDB_txn *txn;
    assert_int_equal(mdb_txn_begin(e, NULL, MDB_RDONLY, &txn), 0);
    MDB_dbi dbi;
    assert_int_equal(mdb_dbi_open(txn, name, 0, &dbi), 0);
    MDB_cursor *c;
    assert_int_equal(mdb_cursor_open(txn, dbi, &c), 0);
    MDB_val k, v;
    size_t n = 0;
    while (mdb_cursor_get(c, &k, &v, n == 0 ? MDB_FIRST : MDB_NEXT) == 0) {
        assert_int_equal(k.mv_size, ST_KEY_LEN);
        check_msgpack_record(&v, int_keys, n_int);
        n++;
    }
    mdb_cursor_close(c);
    mdb_txn_abort(txn);
    mdb_env_close(e);
    return n;
}

static const char *const record_int_keys[] = {
    "domain",   "buy_price_cents", "landed_cents",  "sell_cents",      "profit_cents",
    "roi_bp",   "margin_bp",       "first_seen_ms", "last_checked_ms", "next_check_ms",
    "revision", "check_failures",  "state",         "rules_hash",      "max_cost_cents"};
static const char *const pending_int_keys[] = {"domain", "peek_ms", "attempts", "source"};

/* ---------------------------------------------------------------- deal maths */

/*
 * A committed deal against the simulator's truth: its verdict is exactly the judgement of its
 * stored inputs under the test's rules (judge/judge.h), its offer is one live Used offer no
 * cheaper than the truth's lowest Used price, its fees are the product's.
 */
static void check_deal_against_truth(const struct st_record *d)
{
    yajl_val t = truth(d->asin);
    int64_t used_now = jidx(t, "current", PT_USED);
    int64_t referral_pct = jint(t, "referralFeePercent", NULL);
    int64_t fba = jint(t, "fbaFee", NULL);
    int64_t a90 = jidx(t, "avg90", PT_USED);
    yajl_tree_free(t);

    struct cfg c;
    cfg_defaults(&c);
    snprintf(c.sell_basis_new, sizeof(c.sell_basis_new), "avg90, avg365");
    snprintf(c.sell_basis_used, sizeof(c.sell_basis_used), "avg90, avg365");
    c.sell_cap_at_buy_box = false; /* as KDH_JUDGEMENT says */
    struct jd_rules rules;
    jd_rules_from_cfg(&c, &rules);
    struct jd_verdict v;
    assert_true(jd_judge(&d->in, &rules, &v));
    assert_true(d->v.deal);
    assert_int_equal(d->v.sell_cents, v.sell_cents);
    assert_int_equal(d->v.landed_cents, v.landed_cents);
    assert_int_equal(d->v.profit_cents, v.profit_cents);
    assert_int_equal(d->v.roi_bp, v.roi_bp);
    assert_int_equal(d->v.max_cost_cents, v.max_cost_cents);
    assert_int_equal(d->rules_hash, jd_rules_hash(&rules));

    /* One live Used offer, whole. */
    assert_int_equal(d->in.buy_source, JD_BUY_OFFER);
    assert_true(d->in.buy_condition >= 2 && d->in.buy_condition <= 5);
    assert_true(d->in.buy_price_cents >= used_now);
    assert_true(d->in.buy_price_cents + d->in.buy_shipping_cents <= used_now + 2000);
    assert_true(d->in.buy_seller_id[0] != '\0');
    assert_true(d->in.buy_seen_ms == d->last_checked_ms);
    /* The inputs are the product's. */
    assert_int_equal(d->in.referral_bp, referral_pct * 100);
    assert_int_equal(d->in.fba_fee_cents, fba > 0 ? fba : -1);
    assert_int_equal(d->in.used_avg90_cents, a90);
    /* The deal rules (defaults: profit >= $5, ROI >= 25 %, sell >= $12). */
    assert_true(v.profit_cents >= 500);
    assert_true(v.roi_bp >= 2500);
    assert_true(v.sell_cents >= 1200);
    /* Bookkeeping of a fresh commit. */
    assert_int_equal(d->state, ST_STATE_DEAL);
    assert_int_equal(d->check_failures, 0);
    assert_true(d->first_seen_ms > 0 && d->last_checked_ms >= d->first_seen_ms);
    assert_true(d->next_check_ms >= d->last_checked_ms + 60 * MINUTE_MS /* 1 h of Keepa time */);
    assert_true(d->revision >= 1);
}

/* ---------------------------------------------------------------- log */

/* Checks every "commit batch of N:" line has N <= MAX; returns the number of lines. */
static size_t batch_lines_after(const char *from, size_t max, size_t *asins_total)
{
    size_t len = 0;
    char *log = kd_read_file(log_path, &len);
    assert_non_null(log);
    size_t lines = 0;
    *asins_total = 0;
    char *start = from != NULL ? strstr(log, from) : log;
    assert_non_null(start);
    for (char *p = start; (p = strstr(p, "commit batch of ")) != NULL; p++) {
        unsigned n = 0;
        char colon = 0;
        if (sscanf(p, "commit batch of %u%c", &n, &colon) == 2 && colon == ':' &&
            strstr(p, ": nothing usable") != strchr(p, ':')) { /* not the pause notice */
            if (n < 1 || n > max)
                fail_msg("a commit request carried %u ASINs", n);
            lines++;
            *asins_total += n;
        }
    }
    free(log);
    return lines;
}

static int log_contains(const char *needle)
{
    size_t len = 0;
    char *log = kd_read_file(log_path, &len);
    int found = log != NULL && strstr(log, needle) != NULL;
    free(log);
    return found;
}

/* ---------------------------------------------------------------- tests */

#define N_DEALS 12
#define N_NON   6

static void ring_push(struct ring *r, const char *asin)
{
    struct st_pending p;
    memset(&p, 0, sizeof(p));
    snprintf(p.asin, sizeof(p.asin), "%.10s", asin);
    p.domain = 1;
    p.peek_ms = kd_wall_ms();
    p.source = ST_SOURCE_DEALS;
    uint8_t buf[ST_RECORD_MAX];
    size_t len = 0;
    assert_int_equal(st_pending_encode(&p, buf, sizeof(buf), &len), 0);
    assert_int_equal(ring_write(r, buf, len), 0);
}

static void test_pending_survivors_committed_with_right_maths(void **state)
{
    (void)state;
    kd_test_set_timeout(120);
    sim_start(NULL);
    /* No re-check before the deals are read: the first one an hour of Keepa time after the
     * commit (the default floor is 10 minutes, docs/architecture.md "Value per token"). */
    write_config("[update]\nmin_interval = 1h\n");

    char deals[N_DEALS][11];
    size_t nd = oracle_deals(PT_USED, deals, N_DEALS);
    assert_int_equal(nd, N_DEALS);
    /* Products that are no deal at all, two of them stored deals sent back for a recommit. */
    char cand[200][11], non[N_NON + 2][11];
    size_t nc = oracle_deals(PT_NEW, cand, 200), nn = 0;
    for (size_t i = 0; i < nc && nn < N_NON + 2; i++) {
        int dup = 0;
        for (size_t j = 0; j < nd; j++)
            dup |= strcmp(cand[i], deals[j]) == 0;
        if (!dup && clearly_not_a_deal(cand[i]))
            snprintf(non[nn++], 11, "%.10s", cand[i]);
    }
    assert_int_equal(nn, N_NON + 2);
    const char *expiring = non[N_NON], *rechecked = non[N_NON + 1];
    char unknown[1][11] = {UNKNOWN};

    struct st_env *env = store_open();
    put_pending(env, deals, N_DEALS, ST_SOURCE_DEALS);
    put_pending(env, non, N_NON, ST_SOURCE_DEALS);
    put_pending(env, unknown, 1, ST_SOURCE_DEALS);
    put_stored_deal(env, expiring, 2); /* expire_after_failures = 3: this failure expires it */
    put_stored_deal(env, rechecked, 0);
    put_pending(env, non + N_NON, 2, ST_SOURCE_RECOMMIT);
    st_close(env);
    size_t total = N_DEALS + N_NON + 1 + 2;
    assert_int_equal(count_db(ST_DB_PENDING), total);

    daemon_start();
    struct shm_segment seg;
    ASSERT_WAIT(attach(&seg) == 0, 15);
    ASSERT_WAIT(count_db(ST_DB_PENDING) == 0, 60);
    ASSERT_WAIT(committer_counter(&seg, SHM_C_commit_backlog) == 0, 5);

    env = store_open();
    struct st_txn *txn;
    assert_int_equal(st_read_begin(env, &txn), 0);
    size_t committed = 0;
    for (size_t i = 0; i < N_DEALS; i++) {
        static struct st_record d;
        enum fate f = fate_of(txn, deals[i], &d);
        assert_true(f == F_DEAL || f == F_REJECTED);
        if (f == F_DEAL) {
            check_deal_against_truth(&d);
            committed++;
        }
    }
    for (size_t i = 0; i < N_NON; i++)
        assert_int_equal(fate_of(txn, non[i], NULL), F_REJECTED);
    /* The ASIN Keepa never returns: retried, then given up loudly. */
    assert_int_equal(fate_of(txn, UNKNOWN, NULL), F_ERROR);
    uint64_t given_up = 0;
    assert_int_equal(st_meta_get_u64(txn, "committer_given_up", &given_up), 0);
    assert_int_equal(given_up, 1);
    /* The recommits: one failure more, and the one at the threshold left the deals (kept,
     * with its fresh inputs and verdict, not re-checked any more). */
    static struct st_record r;
    struct st_key k;
    assert_int_equal(st_key_make(1, expiring, &k), 0);
    assert_int_equal(st_record_get(txn, &k, &r), 0);
    assert_int_equal(r.state, ST_STATE_REJECTED);
    assert_true(r.expired_ms > 0);
    assert_int_equal(r.next_check_ms, 0);
    assert_int_equal(st_key_make(1, rechecked, &k), 0);
    assert_int_equal(st_record_get(txn, &k, &r), 0);
    assert_int_equal(r.state, ST_STATE_FAILING);
    assert_int_equal(r.check_failures, 1);
    assert_int_equal(r.revision, 2);
    assert_true(r.last_checked_ms > 1000);
    assert_false(r.v.deal); /* the full fetch's verdict, one offer whole */
    assert_int_equal(r.in.buy_source, JD_BUY_OFFER);
    /* Every judged product is kept: the deals, the non-deals and both recommits. */
    st_read_end(txn);
    size_t in_view = 0;
    assert_int_equal(all_records_decode(env, &in_view), N_DEALS + N_NON + 2);
    assert_int_equal(in_view, committed);
    st_close(env);

    kd_info("committed %zu of %d oracle deals", committed, N_DEALS);
    keep_log();
    assert_true(committed >= 1); /* the oracle's deals include real ones under the default rules */
    /* Counters and log lines follow the batch's write: waited for like it. */
    ASSERT_WAIT(committer_counter(&seg, SHM_C_deals_committed) == (int64_t)committed, 10);
    ASSERT_WAIT(committer_counter(&seg, SHM_C_deals_expired) == 1, 10);
    assert_true(KDH_WAIT_FOR(log_contains("giving up on " UNKNOWN), 10));

    /* Requests carried at most 5 ASINs: the log of every batch, and the histogram (no value
     * of 8 or more). */
    size_t asins_sent = 0;
    size_t batches = batch_lines_after(NULL, 5, &asins_sent);
    assert_true(batches >= (total + 4) / 5);
    assert_true(asins_sent >= total);
    const struct shm_histogram *h =
        &seg.layout->counters[SHM_ROLE_COMMITTER].hist[SHM_H_batch_asins];
    for (int b = 4; b < SHM_HIST_BUCKETS; b++)
        assert_int_equal(atomic_load(&h->buckets[b]), 0);
    assert_true(atomic_load(&h->count) >= batches);

    /* A recommit of a deal that still is one (the updater's request, by pending + ring):
     * stored again with revision + 1, first seen and last changed kept (prices are frozen),
     * checked now. */
    const char *live = NULL;
    static struct st_record before;
    env = store_open();
    assert_int_equal(st_read_begin(env, &txn), 0);
    for (size_t i = 0; i < N_DEALS && live == NULL; i++)
        if (fate_of(txn, deals[i], &before) == F_DEAL)
            live = deals[i];
    st_read_end(txn);
    assert_non_null(live);
    char again[1][11];
    snprintf(again[0], sizeof(again[0]), "%.10s", live);
    put_pending(env, again, 1, ST_SOURCE_RECOMMIT);
    st_close(env);
    struct shm_segment rw;
    char err[256];
    assert_int_equal(shm_segment_attach(&rw, instance, SHM_READ_WRITE, err, sizeof(err)), 0);
    struct ring ring;
    assert_int_equal(ring_open(&ring, &rw.layout->rings[SHM_RING_RECOMMIT],
                               shm_segment_ring_data(&rw, SHM_RING_RECOMMIT), -1),
                     0);
    ring_push(&ring, live);
    shm_segment_detach(&rw);
    assert_true(
        KDH_WAIT_FOR(count_db(ST_DB_PENDING) == 0 &&
                         committer_counter(&seg, SHM_C_deals_committed) == (int64_t)committed + 1,
                     30));
    env = store_open();
    assert_int_equal(st_read_begin(env, &txn), 0);
    static struct st_record after;
    assert_int_equal(fate_of(txn, live, &after), F_DEAL);
    st_read_end(txn);
    st_close(env);
    assert_int_equal(after.revision, before.revision + 1);
    assert_int_equal(after.first_seen_ms, before.first_seen_ms);
    assert_int_equal(after.last_changed_ms, before.last_changed_ms);
    assert_true(after.last_checked_ms >= before.last_checked_ms);
    assert_int_equal(after.v.profit_cents, before.v.profit_cents);
    assert_int_equal(after.check_failures, 0);

    /* Independent msgpack decoding of the raw values. */
    assert_int_equal(msgpack_check_db("products", record_int_keys,
                                      sizeof(record_int_keys) / sizeof(record_int_keys[0])),
                     N_DEALS + N_NON + 2);
    mdb_stat_opens();

    assert_int_equal(daemon_stop(), 0);
    shm_segment_detach(&seg);
}

static int kill_snapshot_ok(char (*asins)[11], size_t n)
{
    struct st_env *env = store_open();
    struct st_txn *txn;
    assert_int_equal(st_read_begin(env, &txn), 0);
    int ok = 1;
    for (size_t i = 0; i < n; i++) {
        enum fate f = fate_of(txn, asins[i], NULL);
        if (f != F_DEAL && f != F_PENDING && f != F_REJECTED) {
            kd_error("after kill -9: %s is neither committed, rejected nor pending", asins[i]);
            ok = 0;
        }
    }
    st_read_end(txn);
    all_records_decode(env, NULL);
    st_close(env);
    return ok;
}

static void test_kill_9_mid_batch_loses_nothing(void **state)
{
    (void)state;
    kd_test_set_timeout(150);
    /* Slow offers answers keep a batch in flight most of the time. */
    sim_start("offers_latency_ms=400-700");
    write_config(NULL);
    enum { N = 30 };
    char asins[N][11];
    assert_int_equal(oracle_deals(PT_USED, asins, N), N);
    struct st_env *env = store_open();
    put_pending(env, asins, N, ST_SOURCE_DEALS);
    st_close(env);

    daemon_start();
    struct shm_segment seg;
    ASSERT_WAIT(attach(&seg) == 0, 15);
    struct shm_proc_slot *slot = &seg.layout->procs[SHM_ROLE_COMMITTER];

    int kills = 0;
    for (int round = 0; round < 3 && count_db(ST_DB_PENDING) > 5; round++) {
        /* Let this incarnation write a batch, then kill it while its next request is out:
         * the shared bucket holds the request's reservation from grant to answer. */
        int64_t before = committer_counter(&seg, SHM_C_store_writes);
        ASSERT_WAIT(committer_counter(&seg, SHM_C_store_writes) > before, 30);
        ASSERT_WAIT(slots_in_use() > 0, 10);
        int64_t pid = atomic_load(&slot->pid);
        assert_true(pid > 0);
        kill((pid_t)pid, SIGKILL);
        kills++;
        /* Right after the kill: nothing lost, nothing corrupt. */
        assert_true(kill_snapshot_ok(asins, N));
        mdb_stat_opens();
        /* The supervisor restarts it; it reloads pending. */
        ASSERT_WAIT(atomic_load(&slot->pid) != pid && atomic_load(&slot->pid) > 0 &&
                        atomic_load(&slot->state) == SHM_PROC_READY,
                    20);
    }
    assert_true(kills >= 1);
    ASSERT_WAIT(count_db(ST_DB_PENDING) == 0, 60);

    env = store_open();
    struct st_txn *txn;
    assert_int_equal(st_read_begin(env, &txn), 0);
    size_t committed = 0;
    for (size_t i = 0; i < N; i++) {
        enum fate f = fate_of(txn, asins[i], NULL);
        assert_true(f == F_DEAL || f == F_REJECTED);
        committed += f == F_DEAL;
    }
    st_read_end(txn);
    size_t in_view = 0;
    assert_int_equal(all_records_decode(env, &in_view), N);
    assert_int_equal(in_view, committed);
    st_close(env);
    assert_int_equal(msgpack_check_db("products", record_int_keys,
                                      sizeof(record_int_keys) / sizeof(record_int_keys[0])),
                     N);
    mdb_stat_opens();
    assert_int_equal(daemon_stop(), 0);
    shm_segment_detach(&seg);
}

static uint64_t meta_u64(const char *name)
{
    struct st_env *env = store_open();
    struct st_txn *txn;
    assert_int_equal(st_read_begin(env, &txn), 0);
    uint64_t v = 0;
    int rc = st_meta_get_u64(txn, name, &v);
    st_read_end(txn);
    st_close(env);
    return rc == 0 ? v : 0;
}

/* Smallest `attempts` among the pending records (UINT32_MAX when there are none). */
static uint32_t min_pending_attempts(void)
{
    struct st_env *env = store_open();
    struct st_txn *txn;
    assert_int_equal(st_read_begin(env, &txn), 0);
    struct st_cursor *cur;
    assert_int_equal(st_cursor_open(txn, ST_DB_PENDING, &cur), 0);
    uint32_t min = UINT32_MAX;
    struct st_pending p;
    while (st_cursor_next_pending(cur, &p) == 0)
        if (p.attempts < min)
            min = p.attempts;
    st_cursor_close(cur);
    st_read_end(txn);
    st_close(env);
    return min;
}

static void test_failed_fetches_are_retried_never_dropped(void **state)
{
    (void)state;
    kd_test_set_timeout(120);
    /* Keepa cannot refresh any offers: every product comes back without them. */
    sim_start("offers_fail=1");
    write_config(NULL);
    enum { N = 5 };
    char asins[N][11];
    assert_int_equal(oracle_deals(PT_USED, asins, N), N);
    struct st_env *env = store_open();
    put_pending(env, asins, N, ST_SOURCE_DEALS);
    st_close(env);
    daemon_start();
    struct shm_segment seg;
    ASSERT_WAIT(attach(&seg) == 0, 15);

    /* Each failure is counted durably on the pending record; nothing leaves pending. (Switch
     * faults soon after, before the bounded retries run out.) */
    ASSERT_WAIT(min_pending_attempts() >= 1 && min_pending_attempts() != UINT32_MAX, 30);
    assert_int_equal(count_db(ST_DB_PENDING), N);
    /* The backlog gauge counts the queue, not a batch in flight: between retries it holds all
     * N (read at once, it was 4 in one ASan run: one survivor out of the queue). */
    ASSERT_WAIT(committer_counter(&seg, SHM_C_commit_backlog) == N, 30);

    /* Then the server fails outright (HTTP 500): every attempt fails, and once its tries are
     * spent (each with its own grant) the batch is kept and retried later. */
    yajl_tree_free(sim_json_post("/_sim/faults?spec=http500=1"));
    int64_t errors = committer_counter(&seg, SHM_C_http_errors);
    ASSERT_WAIT(
        log_contains("retried later") && committer_counter(&seg, SHM_C_http_errors) > errors, 30);
    assert_int_equal(count_db(ST_DB_PENDING), N);

    /* Keepa recovers: every survivor is judged, none given up. */
    yajl_tree_free(sim_json_post("/_sim/faults?spec=clear"));
    ASSERT_WAIT(count_db(ST_DB_PENDING) == 0, 60);
    env = store_open();
    struct st_txn *txn;
    assert_int_equal(st_read_begin(env, &txn), 0);
    for (size_t i = 0; i < N; i++) {
        enum fate f = fate_of(txn, asins[i], NULL);
        assert_true(f == F_DEAL || f == F_REJECTED);
    }
    st_read_end(txn);
    st_close(env);
    assert_int_equal(meta_u64("committer_given_up"), 0);
    assert_true(KDH_WAIT_FOR(log_contains("retried later"), 10));
    assert_int_equal(daemon_stop(), 0);
    shm_segment_detach(&seg);
}

static void test_graceful_stop_finishes_the_batch_in_flight(void **state)
{
    (void)state;
    kd_test_set_timeout(120);
    sim_start("offers_latency_ms=1500-1600");
    write_config(NULL);
    enum { N = 10 };
    char asins[N][11];
    assert_int_equal(oracle_deals(PT_USED, asins, N), N);
    struct st_env *env = store_open();
    put_pending(env, asins, N, ST_SOURCE_DEALS);
    st_close(env);
    daemon_start();
    struct shm_segment seg;
    ASSERT_WAIT(attach(&seg) == 0, 15);
    assert_true(KDH_WAIT_FOR(slots_in_use() > 0, 15));
    assert_int_equal(committer_counter(&seg, SHM_C_store_writes), 0);
    /* TERM while the first batch's slow answer is on its way. */
    assert_int_equal(daemon_stop(), 0);
    assert_int_equal(atomic_load(&seg.layout->procs[SHM_ROLE_COMMITTER].last_exit_status), 0);
    /* That batch was finished and stored; no other batch was started. */
    assert_int_equal(meta_u64("committer_batches"), 1);
    assert_int_equal(count_db(ST_DB_PENDING), N - 5);
    assert_true(log_contains("stopping after the commit batch in flight"));
    shm_segment_detach(&seg);
}

static void test_ring_survivors_queued_once_and_only_if_pending(void **state)
{
    (void)state;
    kd_test_set_timeout(120);
    sim_start(NULL);
    write_config(NULL);
    char asins[2][11];
    assert_int_equal(oracle_deals(PT_USED, asins, 2), 2);
    daemon_start();
    struct shm_segment seg;
    ASSERT_WAIT(attach(&seg) == 0, 15);
    assert_true(KDH_WAIT_FOR(
        atomic_load(&seg.layout->procs[SHM_ROLE_COMMITTER].state) == SHM_PROC_READY, 15));

    /* Play the scanner: pending first, then the ring (no eventfd here: the committer's
     * safety timer finds the records). A third record has no pending entry, as if it had
     * been committed before a restart: it must not be fetched. */
    struct st_env *env = store_open();
    put_pending(env, asins, 2, ST_SOURCE_DEALS);
    st_close(env);
    struct shm_segment rw;
    char err[256];
    assert_int_equal(shm_segment_attach(&rw, instance, SHM_READ_WRITE, err, sizeof(err)), 0);
    struct ring r;
    assert_int_equal(ring_open(&r, &rw.layout->rings[SHM_RING_SURVIVORS],
                               shm_segment_ring_data(&rw, SHM_RING_SURVIVORS), -1),
                     0);
    ring_push(&r, "B0NOTPEND1");
    ring_push(&r, asins[0]);
    ring_push(&r, asins[0]); /* announced twice */
    ring_push(&r, asins[1]);

    ASSERT_WAIT(committer_counter(&seg, SHM_C_ring_records_in) == 4, 15);
    ASSERT_WAIT(count_db(ST_DB_PENDING) == 0, 30);
    assert_int_equal(ring_depth(&rw.layout->rings[SHM_RING_SURVIVORS]), 0); /* acknowledged */
    yajl_val st = sim_json("/_sim/stats");
    assert_int_equal(jint(st, "asins_requested", NULL), 2);
    yajl_tree_free(st);
    env = store_open();
    struct st_txn *txn;
    assert_int_equal(st_read_begin(env, &txn), 0);
    for (int i = 0; i < 2; i++) {
        enum fate f = fate_of(txn, asins[i], NULL);
        assert_true(f == F_DEAL || f == F_REJECTED);
    }
    assert_int_equal(fate_of(txn, "B0NOTPEND1", NULL), F_NONE);
    st_read_end(txn);
    st_close(env);
    shm_segment_detach(&rw);
    assert_int_equal(daemon_stop(), 0);
    shm_segment_detach(&seg);
}

static void test_reload_applies_the_new_batch_size(void **state)
{
    (void)state;
    kd_test_set_timeout(120);
    sim_start("offers_latency_ms=200-300");
    write_config(NULL);
    enum { N = 20 };
    char asins[N][11];
    assert_int_equal(oracle_deals(PT_USED, asins, N), N);
    struct st_env *env = store_open();
    put_pending(env, asins, N, ST_SOURCE_DEALS);
    st_close(env);
    daemon_start();
    struct shm_segment seg;
    ASSERT_WAIT(attach(&seg) == 0, 15);
    ASSERT_WAIT(committer_counter(&seg, SHM_C_store_writes) >= 1, 30);

    write_config("batch = 2\n");
    kill(sup_pid, SIGHUP);
    ASSERT_WAIT(log_contains("reload: commit batch 2,"), 15);
    ASSERT_WAIT(count_db(ST_DB_PENDING) == 0, 60);

    /* After the reload line, only the batch that was already in flight may carry more than
     * 2 ASINs; every later one carries 1 or 2. */
    size_t len = 0;
    char *log = kd_read_file(log_path, &len);
    assert_non_null(log);
    char *p = strstr(log, "reload: commit batch 2,");
    assert_non_null(p);
    size_t lines = 0, asins_after = 0;
    for (; (p = strstr(p, "commit batch of ")) != NULL; p++) {
        unsigned n = 0;
        char colon = 0;
        if (sscanf(p, "commit batch of %u%c", &n, &colon) != 2 || colon != ':')
            continue;
        if (lines > 0 && n > 2)
            fail_msg("a batch after the reload carried %u ASINs", n);
        lines++;
        asins_after += n;
    }
    free(log);
    assert_true(lines >= 3);
    assert_true(asins_after >= N - 10);
    assert_int_equal(daemon_stop(), 0);
    shm_segment_detach(&seg);
}

static void test_without_key_survivors_stay_pending(void **state)
{
    (void)state;
    sim_start(NULL);
    without_key = 1;
    unsetenv("KEEPA_API_KEY");
    write_config(NULL);
    char asins[3][11];
    assert_int_equal(oracle_deals(PT_USED, asins, 3), 3);
    struct st_env *env = store_open();
    put_pending(env, asins, 3, ST_SOURCE_DEALS);
    st_close(env);
    daemon_start();
    struct shm_segment seg;
    ASSERT_WAIT(attach(&seg) == 0, 15);
    assert_true(KDH_WAIT_FOR(
        atomic_load(&seg.layout->procs[SHM_ROLE_COMMITTER].state) == SHM_PROC_READY, 15));
    ASSERT_WAIT(log_contains("the committer idles"), 15);
    /* It still knows its backlog (spend keeps room for it), fetches nothing, keeps all. */
    assert_int_equal(committer_counter(&seg, SHM_C_commit_backlog), 3);
    assert_int_equal(count_db(ST_DB_PENDING), 3);
    yajl_val st = sim_json("/_sim/stats");
    yajl_val pr = jget(st, "endpoints", "product");
    const char *rq[] = {"requests", NULL};
    yajl_val n = yajl_tree_get(pr, rq, yajl_t_number);
    assert_non_null(n);
    assert_int_equal(YAJL_GET_INTEGER(n), 0);
    yajl_tree_free(st);
    assert_int_equal(daemon_stop(), 0);
    assert_int_equal(atomic_load(&seg.layout->procs[SHM_ROLE_COMMITTER].last_exit_status), 0);
    assert_int_equal(count_db(ST_DB_PENDING), 3);
    shm_segment_detach(&seg);
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

static void test_full_store_keeps_the_batch_and_retries_the_write(void **state)
{
    (void)state;
    kd_test_set_timeout(120);
    sim_start(NULL);
    store_cap_mb = 1; /* a store that cannot grow: 1 MiB, capped at 1 MiB */
    write_config(NULL);
    enum { N = 5 };
    char asins[N][11];
    assert_int_equal(oracle_deals(PT_USED, asins, N), N);
    struct st_options o = {
        .path = store_path, .map_size_bytes = 1u << 20, .max_map_size_bytes = 1u << 20};
    struct st_env *env = NULL;
    char err[512];
    assert_int_equal(st_open(&o, &env, err, sizeof(err)), 0);
    put_pending(env, asins, N, ST_SOURCE_DEALS);
    /* Fill it up to the last few pages. */
    int filled = 0, rc = 0;
    while (rc == 0) {
        struct junk j = {filled, 1, false};
        rc = st_write(env, junk_fn, &j);
        if (rc == 0)
            filled++;
    }
    assert_int_equal(rc, -EFBIG);
    assert_true(filled > 10);
    st_close(env);

    daemon_start();
    struct shm_segment seg;
    ASSERT_WAIT(attach(&seg) == 0, 15);
    /* The fetched batch cannot be stored: said loudly, kept, retried; no new batch. */
    ASSERT_WAIT(log_contains("storing a batch of 5 failed"), 30);
    ASSERT_WAIT(committer_counter(&seg, SHM_C_http_requests) >= 1, 5);
    int64_t requests = committer_counter(&seg, SHM_C_http_requests);
    assert_int_equal(count_db(ST_DB_PENDING), N);

    /* Room again (what an operator freeing space does; here another process grows the map,
     * which the committer adopts at its next transaction): the retry stores the batch. */
    env = NULL;
    o.map_size_bytes = o.max_map_size_bytes = 4u << 20;
    assert_int_equal(st_open(&o, &env, err, sizeof(err)), 0);
    struct junk j = {0, filled, true};
    assert_int_equal(st_write(env, junk_fn, &j), 0);
    /* LMDB reuses pages freed by a transaction only once a later one has committed. */
    struct junk touch = {filled + 1, 1, false};
    assert_int_equal(st_write(env, junk_fn, &touch), 0);
    st_close(env);
    ASSERT_WAIT(count_db(ST_DB_PENDING) == 0, 30);
    /* The line is written after the transaction commits: wait for it, as for the store. */
    ASSERT_WAIT(log_contains("the delayed store write succeeded"), 10);
    /* Stored from memory: Keepa was not asked again for the same batch. */
    assert_int_equal(committer_counter(&seg, SHM_C_http_requests), requests);
    env = store_open();
    struct st_txn *txn;
    assert_int_equal(st_read_begin(env, &txn), 0);
    for (size_t i = 0; i < N; i++) {
        enum fate fa = fate_of(txn, asins[i], NULL);
        assert_true(fa == F_DEAL || fa == F_REJECTED);
    }
    st_read_end(txn);
    st_close(env);
    assert_int_equal(daemon_stop(), 0);
    shm_segment_detach(&seg);
}

static void test_pending_values_are_plain_msgpack(void **state)
{
    (void)state;
    /* The pending records the pipeline writes decode with msgpack-c too (the deals are
     * checked above, after the daemon wrote them). */
    snprintf(store_path, sizeof(store_path), "%s/store", test_dir());
    char asins[3][11] = {"B0AAAAAAA1", "B0AAAAAAA2", "B0AAAAAAA3"};
    struct st_env *env = store_open();
    put_pending(env, asins, 3, ST_SOURCE_DEALS);
    st_close(env);
    assert_int_equal(msgpack_check_db("pending", pending_int_keys, 4), 3);
}

/* ---------------------------------------------------------------- what is learned */

/* The peeks' confidence as `kdeals stat` shows it: hit rate and profit ratio, basis points. */
struct conf_bp {
    int64_t hit, ratio;
};

static struct conf_bp conf_bp_of(const struct val_conf *c)
{
    return (struct conf_bp){llround(val_conf_hit(c) * 10000), llround(val_conf_ratio(c) * 10000)};
}

/* The peeks' confidence the committer last saved in the store (meta learned_committer, as
 * committer/committer.c writes it). False when there is none. */
static bool saved_conf(struct val_conf *c)
{
    double nums[VAL_CONF_NUMS];
    struct st_learned_field f = {"conf", nums, VAL_CONF_NUMS, 8 * VAL_WEIGHT_MAX};
    struct st_env *env = store_open();
    struct st_txn *txn;
    assert_int_equal(st_read_begin(env, &txn), 0);
    int rc = st_meta_get_learned(txn, ST_META_LEARNED_COMMITTER, &f, 1);
    st_read_end(txn);
    st_close(env);
    if (rc == -ENOENT)
        return false;
    assert_int_equal(rc, 0);
    assert_true(val_conf_unpack(nums, c));
    return true;
}

/* How many times the daemon's log holds NEEDLE. */
static int log_count(const char *needle)
{
    size_t len = 0;
    char *log = kd_read_file(log_path, &len);
    int n = 0;
    for (const char *p = log; p != NULL && (p = strstr(p, needle)) != NULL; p++)
        n++;
    free(log);
    return n;
}

/*
 * What the full fetches taught survives a crash, up to the last periodic save
 * (docs/architecture.md, "What is learned survives a restart"): 24 survivors whose peeks
 * estimated $10 of profit are fetched (more than the 16 outcomes after which the committer
 * saves its confidence in a batch's write), moving the hit rate and profit ratio off their
 * prior; then the committer is killed (SIGKILL: no stop, no final save) and the supervisor
 * restarts it. The new committer shows what the store held, not the prior. (The gauges live in
 * shared memory, but a starting committer publishes what it read, the prior if nothing.)
 */
static void test_learned_confidence_survives_a_killed_committer(void **state)
{
    (void)state;
    kd_test_set_timeout(150);
    sim_start(NULL);
    write_config("[update]\nmin_interval = 1h\n"); /* no re-check, no recommit meanwhile */
    enum { N = 24 };
    char asins[N][11];
    assert_int_equal(oracle_deals(PT_USED, asins, N), N);
    struct st_env *env = store_open();
    struct prefill pf = {asins, N, ST_SOURCE_DEALS, 1000};
    assert_int_equal(st_write(env, prefill_fn, &pf), 0);
    st_close(env);

    daemon_start();
    struct shm_segment seg;
    ASSERT_WAIT(attach(&seg) == 0, 15);
    struct shm_proc_slot *slot = &seg.layout->procs[SHM_ROLE_COMMITTER];
    ASSERT_WAIT(count_db(ST_DB_PENDING) == 0, 60);
    ASSERT_WAIT(committer_counter(&seg, SHM_C_commit_backlog) == 0, 10);
    assert_int_equal(log_count("no learned peek confidence in the store"), 1);

    /* Every outcome was learned; at least one periodic save is in the store, off the prior. */
    struct val_conf prior, saved;
    val_conf_init(&prior);
    if (!saved_conf(&saved))
        fail_msg("%d survivors fetched and no learned confidence saved in the store (meta %s)", N,
                 ST_META_LEARNED_COMMITTER);
    struct conf_bp p = conf_bp_of(&prior), s = conf_bp_of(&saved);
    if (s.hit == p.hit && s.ratio == p.ratio)
        fail_msg("the fetches taught nothing: hit %lld bp, profit ratio %lld bp, as the prior",
                 (long long)s.hit, (long long)s.ratio);
    struct conf_bp taught = {kdh_stat_value(conf_path, "peek_hit_bp"),
                             kdh_stat_value(conf_path, "peek_profit_ratio_bp")};
    assert_true(taught.hit > 0 && taught.ratio > 0);

    int64_t pid = atomic_load(&slot->pid);
    uint32_t restarts = atomic_load(&slot->restarts);
    assert_true(pid > 0);
    assert_int_equal(kill((pid_t)pid, SIGKILL), 0);
    ASSERT_WAIT(atomic_load(&slot->restarts) > restarts && atomic_load(&slot->pid) != pid &&
                    atomic_load(&slot->pid) > 0 && atomic_load(&slot->state) == SHM_PROC_READY,
                30);
    if (!KDH_WAIT_FOR(log_count("learned peek confidence read from the store") == 1, 10))
        fail_msg("the restarted committer read no learned confidence back (see %s)", log_path);
    struct conf_bp back = {kdh_stat_value(conf_path, "peek_hit_bp"),
                           kdh_stat_value(conf_path, "peek_profit_ratio_bp")};
    if (back.hit != s.hit || back.ratio != s.ratio)
        fail_msg("after SIGKILL and a restart the committer shows hit %lld bp, profit ratio "
                 "%lld bp; the store saved %lld and %lld (the prior: %lld and %lld)",
                 (long long)back.hit, (long long)back.ratio, (long long)s.hit, (long long)s.ratio,
                 (long long)p.hit, (long long)p.ratio);
    print_message("taught hit %lld bp, profit ratio %lld bp; saved %lld and %lld; after SIGKILL "
                  "and a restart, %lld and %lld\n",
                  (long long)taught.hit, (long long)taught.ratio, (long long)s.hit,
                  (long long)s.ratio, (long long)back.hit, (long long)back.ratio);
    assert_int_equal(daemon_stop(), 0);
    shm_segment_detach(&seg);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pending_survivors_committed_with_right_maths),
        cmocka_unit_test(test_kill_9_mid_batch_loses_nothing),
        cmocka_unit_test(test_failed_fetches_are_retried_never_dropped),
        cmocka_unit_test(test_graceful_stop_finishes_the_batch_in_flight),
        cmocka_unit_test(test_ring_survivors_queued_once_and_only_if_pending),
        cmocka_unit_test(test_reload_applies_the_new_batch_size),
        cmocka_unit_test(test_without_key_survivors_stay_pending),
        cmocka_unit_test(test_full_store_keeps_the_batch_and_retries_the_write),
        cmocka_unit_test(test_pending_values_are_plain_msgpack),
        cmocka_unit_test(test_learned_confidence_survives_a_killed_committer),
    };
    return KD_RUN_TESTS(tests, argc, argv);
}
