/*
 * test_mirror.c: the PostgreSQL mirror against a real PostgreSQL server (Debian's postgresql,
 * started by the test on a loopback port: tests/kd_pg.h) and the real daemon against
 * kdeals-sim.
 *
 *   equal       while the daemon commits and re-checks: the database is stopped for a few
 *               seconds and started again (the mirror counts failures, lags, then catches up),
 *               the outbox is killed -9 at random moments, then the whole daemon (supervisor
 *               and every worker) is killed -9 mid-batch and started again. After each, once
 *               the mirror caught up with a quiet store, the database equals the store: the
 *               same products at the same revisions and states, and every change of the log
 *               exactly once, in order.
 *   two         two daemons with their own stores mirror into one database under two instance
 *               names: each instance's rows equal its own store; the schema was made once.
 *   resync      the log is trimmed past the mirror's position while the daemon is stopped
 *               (the first changes deleted from the store, as ST_CHANGES_MAX trimming does):
 *               the mirror says so, resynchronises from the records, and the database equals
 *               the store again, rows deleted behind its back included.
 *   refuse      a second store that claims an instance name already mirrored by another one
 *               is refused, and its database rows are untouched.
 */
#include <errno.h>
#include <inttypes.h>
#include <lmdb.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kd_harness.h"
#include "kd_pg.h"
#include "kd_test.h"
#include "shm/counters.h"
#include "store/store.h"

#define KEY       "MirrorTestKey0123456789abcdef"
#define MINUTE_MS 100

static const char *const sim_args[] = {"--keys",        KEY,   "--seed",      "7",
                                       "--products",    "400", "--minute-ms", "100",
                                       "--refill-rate", "200", NULL};

/* Busy: commits, then re-checks every few hundred ms. Quiet: nothing due for a day (and the
 * value rules that end a pass pause while tokens pile up, busy and fresh, off). */
#define BUSY "[scan]\npass_pause = 1s\n[update]\nmin_interval = 2m\nmax_interval = 4m\n"
#define QUIET                                                                                      \
    "[scan]\npass_pause = 1d\n[update]\nmin_interval = 1d\nmax_interval = 2d\n"                    \
    "[tokens]\nvalue_rules = none\n"

static void config(struct kdh_daemon *d, const struct kdh_sim *sim, const struct kdpg *pg,
                   const char *db, const char *instance, const char *mode)
{
    char ci[256], extra[1024];
    snprintf(extra, sizeof(extra),
             "%s[mirror]\npostgres = %s\ninstance = %s\nbatch = 40\nretry_max = 2s\n", mode,
             kdpg_conninfo(pg, db, ci, sizeof(ci)), instance);
    if (d->dir[0] == '\0')
        kdh_daemon_config(d, sim, KEY, MINUTE_MS, extra);
    else
        kdh_daemon_rewrite(d, sim, KEY, MINUTE_MS, extra);
}

/* ---- the store's side ------------------------------------------------------------------ */

struct row {
    int domain;
    char asin[ST_ASIN_LEN + 1];
    uint64_t revision;
    char state[16];
};

static struct st_env *open_store(const struct kdh_daemon *d)
{
    struct st_options so = {.path = d->store, .map_size_bytes = 64u << 20};
    struct st_env *env;
    char err[512];
    if (st_open(&so, &env, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    return env;
}

/* The store's records (key order) into *ROWS, and its log's last seq. */
static size_t store_rows(const struct kdh_daemon *d, struct row **rows, uint64_t *last)
{
    struct st_env *env = open_store(d);
    struct st_txn *txn;
    assert_int_equal(st_read_begin(env, &txn), 0);
    if (st_meta_get_u64(txn, ST_META_CHANGES_SEQ, last) != 0)
        *last = 0;
    size_t n = 0, cap = 256;
    *rows = malloc(cap * sizeof(**rows));
    struct st_cursor *cur;
    assert_int_equal(st_cursor_open(txn, ST_DB_PRODUCTS, &cur), 0);
    static struct st_record r;
    int rc;
    while ((rc = st_cursor_next_record(cur, &r)) == 0) {
        if (n == cap)
            *rows = realloc(*rows, (cap *= 2) * sizeof(**rows));
        struct row *x = &(*rows)[n++];
        x->domain = r.domain;
        memcpy(x->asin, r.asin, sizeof(x->asin));
        x->revision = r.revision;
        snprintf(x->state, sizeof(x->state), "%s", st_state_name(r.state));
    }
    assert_int_equal(rc, -ENOENT);
    st_cursor_close(cur);
    st_read_end(txn);
    st_close(env);
    return n;
}

static uint64_t store_last(const struct kdh_daemon *d)
{
    struct row *rows;
    uint64_t last;
    store_rows(d, &rows, &last);
    free(rows);
    return last;
}

/* ---- the database's side ---------------------------------------------------------------- */

static long long mirrored_seq(PGconn *c, const char *instance)
{
    char sql[256];
    snprintf(sql, sizeof(sql),
             "SELECT coalesce((SELECT mirrored_seq FROM kdeals.instances WHERE instance = '%s'), "
             "-1)",
             instance);
    return kdpg_int(c, sql);
}

static bool schema_exists(PGconn *c)
{
    return kdpg_int(c, "SELECT count(*) FROM pg_tables WHERE schemaname = 'kdeals' AND "
                       "tablename = 'instances'") == 1;
}

/*
 * Waits until the store is quiet (its last seq unchanged for 1.5 s) and the database has
 * mirrored up to it. Returns the seq.
 */
static uint64_t wait_caught_up(const struct kdh_daemon *d, PGconn *c, const char *instance,
                               int seconds)
{
    uint64_t last = 0, stable_since = 0;
    int64_t t0 = 0;
    for (int i = 0; i < seconds * 10; i++) {
        uint64_t now_last = store_last(d);
        if (now_last != last) {
            last = now_last;
            stable_since = (uint64_t)i;
        }
        (void)t0;
        if (i - (int)stable_since >= 15 && schema_exists(c) &&
            mirrored_seq(c, instance) == (long long)last)
            return last;
        kdh_nap_ms(100);
    }
    fail_msg("the mirror of %s did not catch up with the store (log at %llu, database at %lld; "
             "see %s)",
             instance, (unsigned long long)last, schema_exists(c) ? mirrored_seq(c, instance) : -1,
             d->log);
    return 0;
}

/*
 * The database equals the store: the same products at the same revisions and states, and
 * every change of the log once, with the same product and event. Prints what it compared.
 */
static void assert_equal(const struct kdh_daemon *d, PGconn *c, const char *instance,
                         bool all_changes)
{
    struct row *rows;
    uint64_t last;
    size_t n = store_rows(d, &rows, &last);
    char sql[512];
    snprintf(sql, sizeof(sql),
             "SELECT domain, asin, revision, state FROM kdeals.products WHERE instance = '%s' "
             "ORDER BY domain, asin",
             instance);
    PGresult *r = kdpg_query(c, sql);
    size_t m = (size_t)PQntuples(r), same = 0;
    for (size_t i = 0; i < n && i < m; i++) {
        const struct row *x = &rows[i];
        if (atoi(PQgetvalue(r, (int)i, 0)) == x->domain &&
            strcmp(PQgetvalue(r, (int)i, 1), x->asin) == 0 &&
            strtoull(PQgetvalue(r, (int)i, 2), NULL, 10) == x->revision &&
            strcmp(PQgetvalue(r, (int)i, 3), x->state) == 0)
            same++;
        else
            fprintf(stderr, "    differs: store %s rev %llu %s, database %s rev %s %s\n", x->asin,
                    (unsigned long long)x->revision, x->state, PQgetvalue(r, (int)i, 1),
                    PQgetvalue(r, (int)i, 2), PQgetvalue(r, (int)i, 3));
    }
    PQclear(r);
    /* The generated columns read the record: a deal's verdict and figures are there. */
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM kdeals.deals WHERE instance = '%s' AND (verdict_deal IS NOT "
             "TRUE OR profit_cents IS NULL OR roi_bp IS NULL OR first_seen_at IS NULL)",
             instance);
    long long bad_deals = kdpg_int(c, sql);
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM kdeals.reasons WHERE instance = '%s' AND criterion IS NULL",
             instance);
    long long bad_reasons = kdpg_int(c, sql);

    /* Changes: each seq of the log once, as in the log. */
    struct st_env *env = open_store(d);
    struct st_txn *txn;
    assert_int_equal(st_read_begin(env, &txn), 0);
    uint64_t first = 0;
    assert_int_equal(st_changes_first(txn, &first), 0);
    snprintf(sql, sizeof(sql),
             "SELECT seq, asin, event FROM kdeals.changes WHERE instance = '%s' ORDER BY seq",
             instance);
    r = kdpg_query(c, sql);
    size_t rows_c = (size_t)PQntuples(r), matched = 0;
    uint64_t after = 0;
    size_t k = 0;
    static struct st_change batch[256];
    for (;;) {
        size_t got = 0;
        assert_int_equal(st_changes_read(txn, after, batch, 256, &got), 0);
        if (got == 0)
            break;
        for (size_t i = 0; i < got; i++, k++) {
            /* The database's changes start where this store began mirroring. */
            while (matched < rows_c &&
                   strtoull(PQgetvalue(r, (int)matched, 0), NULL, 10) < batch[i].seq &&
                   !all_changes)
                matched++;
            if (matched < rows_c &&
                strtoull(PQgetvalue(r, (int)matched, 0), NULL, 10) == batch[i].seq &&
                strcmp(PQgetvalue(r, (int)matched, 1), batch[i].asin) == 0 &&
                strcmp(PQgetvalue(r, (int)matched, 2), st_event_name(batch[i].event)) == 0)
                matched++;
            else if (all_changes)
                fprintf(stderr, "    change %llu (%s %s) is not in the database as it is\n",
                        (unsigned long long)batch[i].seq, batch[i].asin,
                        st_event_name(batch[i].event));
        }
        after = batch[got - 1].seq;
    }
    st_read_end(txn);
    st_close(env);
    snprintf(sql, sizeof(sql),
             "SELECT count(*) - count(DISTINCT seq) FROM kdeals.changes WHERE instance = '%s'",
             instance);
    long long dup = kdpg_int(c, sql);
    PQclear(r);
    printf("    %s: store %zu products, log %llu..%llu; database %zu products (%zu equal), %zu "
           "changes (%lld twice)\n",
           instance, n, (unsigned long long)first, (unsigned long long)last, m, same, rows_c, dup);
    assert_true(n > 0);
    assert_int_equal(m, n);
    assert_int_equal(same, n);
    assert_int_equal(bad_deals, 0);
    assert_int_equal(bad_reasons, 0);
    assert_int_equal(dup, 0);
    if (all_changes) {
        assert_int_equal(first, 1);
        assert_int_equal(rows_c, k);
        assert_int_equal(matched, k);
    }
    free(rows);
}

/* Whether a mirror connection is inside a transaction right now. */
static bool mirror_in_transaction(PGconn *c)
{
    return kdpg_int(c, "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE "
                       "'kdeals-mirror%' AND xact_start IS NOT NULL") > 0;
}

static int64_t counter(const struct shm_segment *seg, enum shm_counter_id id)
{
    return shm_counter_total(seg->layout, id);
}

static pid_t role_pid(const struct shm_segment *seg, int role)
{
    return (pid_t)atomic_load(&seg->layout->procs[role].pid);
}

/* kill -9 of the supervisor and every worker at once: the whole daemon crashes. */
static void crash_daemon(struct kdh_daemon *d, struct shm_segment *seg)
{
    pid_t pids[SHM_ROLE_COUNT];
    for (int r = 1; r < SHM_ROLE_COUNT; r++)
        pids[r] = role_pid(seg, r);
    kill(d->pid, SIGKILL);
    for (int r = 1; r < SHM_ROLE_COUNT; r++)
        if (pids[r] > 0)
            kill(pids[r], SIGKILL);
    waitpid(d->pid, NULL, 0);
    d->pid = 0;
    shm_segment_detach(seg);
    /* The workers were reparented to the test (a subreaper) or to init: wait for them to go. */
    for (int r = 1; r < SHM_ROLE_COUNT; r++)
        if (pids[r] > 0 &&
            !KDH_WAIT_FOR(kill(pids[r], 0) != 0 || waitpid(pids[r], NULL, WNOHANG) == pids[r], 10))
            fail_msg("worker pid %d survived kill -9", (int)pids[r]);
}

/* With KDH_KEEP=DIR, the daemon's folder (log, store) is copied there for a look afterwards. */
static void keep(const struct kdh_daemon *d)
{
    const char *to = getenv("KDH_KEEP");
    char cmd[1400];
    snprintf(cmd, sizeof(cmd), "cp -a '%s' '%s'", d->dir, to != NULL ? to : "");
    if (to != NULL && system(cmd) != 0)
        fprintf(stderr, "could not copy %s\n", d->dir);
}

static void test_database_equals_store_through_outages_and_kills(void **state)
{
    (void)state;
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    struct kdpg pg;
    kdpg_start(&pg);
    kdpg_createdb(&pg, "deals");
    PGconn *c = kdpg_connect(&pg, "deals");
    struct kdh_sim sim;
    kdh_sim_start(&sim, sim_args);
    struct kdh_daemon d;
    memset(&d, 0, sizeof(d));
    config(&d, &sim, &pg, "deals", "shop-a", BUSY);
    kdh_daemon_start(&d);
    struct shm_segment seg;
    kdh_daemon_attach(&d, &seg);
    if (!KDH_WAIT_FOR(schema_exists(c) && mirrored_seq(c, "shop-a") >= 30, 60))
        fail_msg("the mirror did not reach 30 changes in 60 s (see %s)", d.log);

    /* 1. The database goes away for 4 s while the store keeps changing. */
    kdpg_stop(&pg);
    uint64_t at_stop = store_last(&d);
    if (!KDH_WAIT_FOR(counter(&seg, SHM_C_mirror_failed) >= 2 && store_last(&d) > at_stop + 20 &&
                          counter(&seg, SHM_C_mirror_lag) > 0,
                      60))
        fail_msg("no failed attempts or no lag while the database was down (see %s)", d.log);
    kdh_nap_ms(2000);
    int64_t failed = counter(&seg, SHM_C_mirror_failed), lag = counter(&seg, SHM_C_mirror_lag);
    kdpg_restart(&pg);
    PQfinish(c);
    c = kdpg_connect(&pg, "deals");
    if (!KDH_WAIT_FOR(mirrored_seq(c, "shop-a") >= (long long)store_last(&d) - 5, 60))
        fail_msg("the mirror did not catch up after the database came back (see %s)", d.log);
    printf("    database down 4 s: %lld failed attempts, lag up to %lld changes; caught up\n",
           (long long)failed, (long long)lag);
    assert_true(KDH_WAIT_FOR(kdh_log_contains(&d, "the database answers again"), 10));

    /* 2. The outbox killed -9 at random moments while it mirrors. Each write of products
     * takes 0.3 s more (a trigger), so most kills land inside a database transaction; how many
     * did is read from pg_stat_activity just before each kill. */
    PQclear(kdpg_query(c, "CREATE FUNCTION public.slow() RETURNS trigger LANGUAGE plpgsql AS "
                          "$$BEGIN PERFORM pg_sleep(0.3); RETURN NULL; END$$"));
    PQclear(kdpg_query(c, "CREATE TRIGGER slow AFTER INSERT OR UPDATE ON kdeals.products FOR "
                          "EACH STATEMENT EXECUTE FUNCTION public.slow()"));
    uint64_t rng = 0x9e3779b97f4a7c15ULL ^ (uint64_t)getpid();
    unsigned kills = 0, in_txn = 0;
    for (int i = 0; i < 4; i++) {
        rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
        kdh_nap_ms(150 + (long)(rng % 600));
        pid_t pid = role_pid(&seg, SHM_ROLE_OUTBOX);
        if (pid <= 0 && !KDH_WAIT_FOR((pid = role_pid(&seg, SHM_ROLE_OUTBOX)) > 0, 20))
            fail_msg("no outbox to kill (see %s)", d.log);
        in_txn += mirror_in_transaction(c);
        kill(pid, SIGKILL);
        kills++;
        if (!KDH_WAIT_FOR(
                role_pid(&seg, SHM_ROLE_OUTBOX) != pid && role_pid(&seg, SHM_ROLE_OUTBOX) > 0, 30))
            fail_msg("the outbox was not restarted after kill -9 (see %s)", d.log);
    }
    /* 3. The whole daemon killed -9 while the mirror has a transaction open. */
    if (!KDH_WAIT_FOR(mirror_in_transaction(c), 30))
        fail_msg("the mirror never had a transaction open to crash in (see %s)", d.log);
    crash_daemon(&d, &seg);
    kills++;
    in_txn++;
    kdh_daemon_start(&d);
    kdh_daemon_attach(&d, &seg);
    PQclear(kdpg_query(c, "DROP TRIGGER slow ON kdeals.products"));

    /* Quiet, caught up, equal. */
    config(&d, &sim, &pg, "deals", "shop-a", QUIET);
    static const char *const reload[] = {"reload", NULL};
    assert_int_equal(kdh_cli(&d, reload, 30, NULL), 0);
    wait_caught_up(&d, c, "shop-a", 120);
    printf("    %u kills -9 (4 of the outbox, 1 of the whole daemon), %u of them inside a "
           "database transaction of the mirror\n",
           kills, in_txn);
    keep(&d);
    assert_equal(&d, c, "shop-a", true);
    assert_int_equal(kdpg_int(c, "SELECT count(*) FROM kdeals.schema_version"), 1);

    shm_segment_detach(&seg);
    assert_int_equal(kdh_daemon_stop(&d), 0);
    PQfinish(c);
    kdh_sim_stop(&sim);
    kdpg_stop(&pg);
}

static void test_two_instances_into_one_database(void **state)
{
    (void)state;
    struct kdpg pg;
    kdpg_start(&pg);
    kdpg_createdb(&pg, "shared");
    PGconn *c = kdpg_connect(&pg, "shared");
    struct kdh_sim sim;
    kdh_sim_start(&sim, sim_args);
    struct kdh_daemon a, b;
    memset(&a, 0, sizeof(a));
    memset(&b, 0, sizeof(b));
    config(&a, &sim, &pg, "shared", "host-1/us", BUSY);
    config(&b, &sim, &pg, "shared", "host-2/us", BUSY);
    /* Both start together: both migrate, one of them first. */
    kdh_daemon_start(&a);
    kdh_daemon_start(&b);
    if (!KDH_WAIT_FOR(schema_exists(c) && mirrored_seq(c, "host-1/us") >= 30 &&
                          mirrored_seq(c, "host-2/us") >= 30,
                      90))
        fail_msg("the two mirrors did not both reach 30 changes (see %s and %s)", a.log, b.log);
    config(&a, &sim, &pg, "shared", "host-1/us", QUIET);
    config(&b, &sim, &pg, "shared", "host-2/us", QUIET);
    static const char *const reload[] = {"reload", NULL};
    assert_int_equal(kdh_cli(&a, reload, 30, NULL), 0);
    assert_int_equal(kdh_cli(&b, reload, 30, NULL), 0);
    wait_caught_up(&a, c, "host-1/us", 120);
    wait_caught_up(&b, c, "host-2/us", 120);
    assert_equal(&a, c, "host-1/us", true);
    assert_equal(&b, c, "host-2/us", true);
    assert_int_equal(kdpg_int(c, "SELECT count(*) FROM kdeals.schema_version"), 1);
    assert_int_equal(kdpg_int(c, "SELECT count(*) FROM kdeals.instances"), 2);
    assert_int_equal(kdh_daemon_stop(&a), 0);
    assert_int_equal(kdh_daemon_stop(&b), 0);
    PQfinish(c);
    kdh_sim_stop(&sim);
    kdpg_stop(&pg);
}

/* Deletes the store's changes up to and including UPTO, as the log's trimming does. */
static void trim_log(const struct kdh_daemon *d, uint64_t upto)
{
    MDB_env *env;
    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_set_maxdbs(env, 16), 0);
    assert_int_equal(mdb_env_set_mapsize(env, 64u << 20), 0);
    assert_int_equal(mdb_env_open(env, d->store, 0, 0600), 0);
    MDB_txn *txn;
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    MDB_dbi dbi;
    assert_int_equal(mdb_dbi_open(txn, "changes", 0, &dbi), 0);
    for (uint64_t s = 1; s <= upto; s++) {
        uint8_t k[8];
        for (int i = 0; i < 8; i++)
            k[i] = (uint8_t)(s >> (56 - 8 * i));
        MDB_val key = {8, k};
        int rc = mdb_del(txn, dbi, &key, NULL);
        assert_true(rc == 0 || rc == MDB_NOTFOUND);
    }
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
}

static void test_resync_when_the_log_was_trimmed(void **state)
{
    (void)state;
    struct kdpg pg;
    kdpg_start(&pg);
    kdpg_createdb(&pg, "deals");
    PGconn *c = kdpg_connect(&pg, "deals");
    struct kdh_sim sim;
    kdh_sim_start(&sim, sim_args);
    struct kdh_daemon d;
    memset(&d, 0, sizeof(d));
    config(&d, &sim, &pg, "deals", "shop-r", BUSY);
    kdh_daemon_start(&d);
    if (!KDH_WAIT_FOR(schema_exists(c) && mirrored_seq(c, "shop-r") >= 60, 60))
        fail_msg("the mirror did not reach 60 changes (see %s)", d.log);
    /* The database goes away; the store goes on; the log is trimmed past the mirror. */
    kdpg_stop(&pg);
    kdh_nap_ms(1500);
    assert_int_equal(kdh_daemon_stop(&d), 0);
    uint64_t last = store_last(&d);
    trim_log(&d, last - 5);
    kdpg_restart(&pg);
    PQfinish(c);
    c = kdpg_connect(&pg, "deals");
    /* Rows lost behind the mirror's back come back with the resync too. */
    PQclear(kdpg_query(c, "DELETE FROM kdeals.products WHERE ctid IN (SELECT ctid FROM "
                          "kdeals.products LIMIT 5)"));
    config(&d, &sim, &pg, "deals", "shop-r", QUIET);
    kdh_daemon_start(&d);
    struct shm_segment seg;
    kdh_daemon_attach(&d, &seg);
    if (!KDH_WAIT_FOR(counter(&seg, SHM_C_mirror_resyncs) == 1, 60))
        fail_msg("no resync (see %s)", d.log);
    wait_caught_up(&d, c, "shop-r", 120);
    assert_true(
        KDH_WAIT_FOR(kdh_log_contains(&d, "the log no longer holds the changes after"), 10));
    assert_equal(&d, c, "shop-r", false);
    assert_int_equal(counter(&seg, SHM_C_mirror_resyncs), 1);
    shm_segment_detach(&seg);
    assert_int_equal(kdh_daemon_stop(&d), 0);
    PQfinish(c);
    kdh_sim_stop(&sim);
    kdpg_stop(&pg);
}

static void test_an_instance_name_of_another_store_is_refused(void **state)
{
    (void)state;
    struct kdpg pg;
    kdpg_start(&pg);
    kdpg_createdb(&pg, "deals");
    PGconn *c = kdpg_connect(&pg, "deals");
    struct kdh_sim sim;
    kdh_sim_start(&sim, sim_args);
    struct kdh_daemon a, b;
    memset(&a, 0, sizeof(a));
    memset(&b, 0, sizeof(b));
    config(&a, &sim, &pg, "deals", "same-name", BUSY);
    kdh_daemon_start(&a);
    if (!KDH_WAIT_FOR(schema_exists(c) && mirrored_seq(c, "same-name") >= 20, 60))
        fail_msg("the first mirror did not reach 20 changes (see %s)", a.log);
    assert_int_equal(kdh_daemon_stop(&a), 0);
    long long rows = kdpg_int(c, "SELECT count(*) FROM kdeals.products");
    /* B mirrors under another name first, so it has a position of its own... */
    config(&b, &sim, &pg, "deals", "other-name", BUSY);
    kdh_daemon_start(&b);
    if (!KDH_WAIT_FOR(mirrored_seq(c, "other-name") >= 5, 60))
        fail_msg("the second mirror did not start (see %s)", b.log);
    assert_int_equal(kdh_daemon_stop(&b), 0);
    /* ...then claims A's name: refused, A's rows untouched. */
    config(&b, &sim, &pg, "deals", "same-name", QUIET);
    kdh_daemon_start(&b);
    if (!KDH_WAIT_FOR(kdh_log_contains(&b, "is mirrored from another store"), 30))
        fail_msg("no refusal in %s", b.log);
    assert_int_equal(kdpg_int(c, "SELECT count(*) FROM kdeals.products WHERE instance = "
                                 "'same-name'"),
                     rows);
    assert_int_equal(kdh_daemon_stop(&b), 0);
    PQfinish(c);
    kdh_sim_stop(&sim);
    kdpg_stop(&pg);
}

int main(int argc, char **argv)
{
    kd_test_set_timeout(300);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_database_equals_store_through_outages_and_kills),
        cmocka_unit_test(test_two_instances_into_one_database),
        cmocka_unit_test(test_resync_when_the_log_was_trimmed),
        cmocka_unit_test(test_an_instance_name_of_another_store_is_refused),
    };
    return KD_RUN_TESTS(tests, argc, argv);
}
