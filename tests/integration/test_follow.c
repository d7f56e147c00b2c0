/*
 * test_follow.c: `kdeals deals --follow`, the change feed, against the real daemon.
 *
 *   resume    a follower from seq 0 is killed (-9, mid-write) while the daemon commits and
 *             re-checks; the daemon is stopped and started again; a second follower resumes
 *             with --from the seq of the first one's last complete line. Together their lines
 *             are the store's change log, seq 1 to its end, each change once (no gap, no
 *             duplicate), each line the logged change with its record.
 *   resync    --from a position the log does not hold: a "resync" line, every record as a
 *             "sync" line at the old position, then "synced" at the log's end, then the
 *             changes after it.
 *   usage     --from without --follow, and filters with --follow, are usage errors.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <yajl/yajl_tree.h>

#include "kd_harness.h"
#include "kd_test.h"
#include "store/store.h"

#define KEY        "FollowTestKey0123456789abcdef"
#define MINUTE_MS  100
#define KDEALS_BIN KD_BUILD_DIR "/kdeals"

static const char *const sim_args[] = {"--keys",        KEY,   "--seed",      "5",
                                       "--products",    "800", "--minute-ms", "100",
                                       "--refill-rate", "200", NULL};

/* Re-checks often, so the log moves by commits and re-checks alike. */
#define EXTRA "[scan]\npass_pause = 1s\n[update]\nmin_interval = 2m\nmax_interval = 4m\n"

/* Starts `kdeals deals --follow [--from FROM]` writing its stdout to OUT. */
static pid_t follower_start(const struct kdh_daemon *d, const char *from, const char *out)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd >= 0)
            dup2(fd, 1);
        if (from != NULL)
            execl(KDEALS_BIN, KDEALS_BIN, "deals", "--follow", "--from", from, "-c", d->conf,
                  (char *)NULL);
        else
            execl(KDEALS_BIN, KDEALS_BIN, "deals", "--follow", "-c", d->conf, (char *)NULL);
        _exit(127);
    }
    return pid;
}

/* The complete lines of a follower's output (a killed one may leave half a line). */
struct lines {
    yajl_val *v;
    size_t n;
};

static void lines_read(const char *path, struct lines *l)
{
    memset(l, 0, sizeof(*l));
    size_t cap = 64;
    l->v = malloc(cap * sizeof(*l->v));
    char *text = kd_read_file(path, NULL);
    if (text == NULL)
        return; /* not written yet */
    char *p = text;
    for (;;) {
        char *nl = strchr(p, '\n');
        if (nl == NULL)
            break; /* a trailing half line is not a line */
        *nl = '\0';
        char err[256];
        yajl_val v = yajl_tree_parse(p, err, sizeof(err));
        if (v == NULL)
            fail_msg("%s: a line is not JSON (%s): %.200s", path, err, p);
        if (l->n == cap)
            l->v = realloc(l->v, (cap *= 2) * sizeof(*l->v));
        l->v[l->n++] = v;
        p = nl + 1;
    }
    free(text);
}

static void lines_free(struct lines *l)
{
    for (size_t i = 0; i < l->n; i++)
        yajl_tree_free(l->v[i]);
    free(l->v);
}

static const char *jstr(yajl_val v, const char *k)
{
    const char *path[] = {k, NULL};
    yajl_val x = yajl_tree_get(v, path, yajl_t_string);
    return x != NULL ? YAJL_GET_STRING(x) : NULL;
}

static size_t lines_count(const char *path)
{
    struct lines l;
    lines_read(path, &l);
    size_t n = l.n;
    lines_free(&l);
    return n;
}

/* The store's whole change log (malloc'd), and its length. */
static struct st_change *store_log(const struct kdh_daemon *d, size_t *n)
{
    struct st_options so = {.path = d->store};
    struct st_env *env;
    char err[512];
    if (st_open_existing(&so, &env, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    struct st_txn *txn;
    assert_int_equal(st_read_begin(env, &txn), 0);
    size_t cap = 1024;
    struct st_change *log = malloc(cap * sizeof(*log));
    *n = 0;
    for (;;) {
        if (*n + 256 > cap)
            log = realloc(log, (cap *= 2) * sizeof(*log));
        size_t got = 0;
        assert_int_equal(st_changes_read(txn, *n > 0 ? log[*n - 1].seq : 0, log + *n, 256, &got),
                         0);
        if (got == 0)
            break;
        *n += got;
    }
    st_read_end(txn);
    st_close(env);
    return log;
}

static uint64_t store_last_seq(const struct kdh_daemon *d)
{
    size_t n;
    struct st_change *log = store_log(d, &n);
    uint64_t last = n > 0 ? log[n - 1].seq : 0;
    free(log);
    return last;
}

static void stop_follower(pid_t pid, int sig)
{
    kill(pid, sig);
    int status;
    waitpid(pid, &status, 0);
    if (sig == SIGTERM)
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

static void test_resume_without_gap_or_duplicate(void **state)
{
    (void)state;
    struct kdh_sim sim;
    kdh_sim_start(&sim, sim_args);
    struct kdh_daemon d;
    kdh_daemon_config(&d, &sim, KEY, MINUTE_MS, EXTRA);
    kdh_daemon_start(&d);

    char out1[700], out2[700];
    snprintf(out1, sizeof(out1), "%s/follow1.jsonl", d.dir);
    snprintf(out2, sizeof(out2), "%s/follow2.jsonl", d.dir);
    pid_t f1 = follower_start(&d, "0", out1);
    if (!KDH_WAIT_FOR(lines_count(out1) >= 40, 120))
        fail_msg("fewer than 40 changes followed in 120 s (see %s)", d.log);
    stop_follower(f1, SIGKILL); /* wherever it was, a half line included */
    struct lines a;
    lines_read(out1, &a);
    assert_true(a.n >= 40);
    long long resume = kdh_jint(a.v[a.n - 1], "seq", NULL);

    /* The daemon restarts; the log goes on from where it was. */
    assert_int_equal(kdh_daemon_stop(&d), 0);
    kdh_daemon_start(&d);
    char from[32];
    snprintf(from, sizeof(from), "%lld", resume);
    pid_t f2 = follower_start(&d, from, out2);
    uint64_t target = store_last_seq(&d) + 40;
    if (!KDH_WAIT_FOR(store_last_seq(&d) >= target, 120))
        fail_msg("the log did not grow by 40 after the restart (see %s)", d.log);
    assert_int_equal(kdh_daemon_stop(&d), 0);
    uint64_t last = store_last_seq(&d);
    /* The follower reads the stopped daemon's store to its end. */
    if (!KDH_WAIT_FOR(({
                          struct lines b;
                          lines_read(out2, &b);
                          int done =
                              b.n > 0 && (uint64_t)kdh_jint(b.v[b.n - 1], "seq", NULL) == last;
                          lines_free(&b);
                          done;
                      }),
                      30))
        fail_msg("the second follower did not reach seq %llu", (unsigned long long)last);
    stop_follower(f2, SIGTERM);

    struct lines b;
    lines_read(out2, &b);
    size_t n_log;
    struct st_change *log = store_log(&d, &n_log);
    assert_int_equal(log[0].seq, 1); /* nothing trimmed in a run this short */
    assert_int_equal(n_log, last);
    size_t gaps = 0, dups = 0, wrong = 0, n = 0;
    uint64_t expect = 1;
    for (int part = 0; part < 2; part++) {
        struct lines *l = part == 0 ? &a : &b;
        for (size_t i = 0; i < l->n; i++, n++) {
            uint64_t seq = (uint64_t)kdh_jint(l->v[i], "seq", NULL);
            if (seq < expect) {
                dups++;
                continue;
            }
            if (seq > expect)
                gaps += seq - expect;
            expect = seq + 1;
            const struct st_change *c = &log[seq - 1];
            const char *ev = jstr(l->v[i], "event"), *asin = jstr(l->v[i], "asin");
            const char *rpath[] = {"record", NULL};
            yajl_val rec = yajl_tree_get(l->v[i], rpath, yajl_t_any);
            const char *rasin = rec != NULL && YAJL_IS_OBJECT(rec) ? jstr(rec, "asin") : NULL;
            if (ev == NULL || strcmp(ev, st_event_name(c->event)) != 0 || asin == NULL ||
                strcmp(asin, c->asin) != 0 ||
                (uint64_t)kdh_jint(l->v[i], "revision", NULL) != c->revision ||
                (c->event != ST_EV_DELETE && (rasin == NULL || strcmp(rasin, c->asin) != 0)))
                wrong++;
        }
    }
    printf("    %zu lines (%zu before the kill, resumed from %lld), log 1..%llu: %zu missing, "
           "%zu twice, %zu unlike the log\n",
           n, a.n, resume, (unsigned long long)last, gaps + (last + 1 - expect), dups, wrong);
    assert_int_equal(expect, last + 1);
    assert_int_equal(gaps, 0);
    assert_int_equal(dups, 0);
    assert_int_equal(wrong, 0);
    free(log);
    lines_free(&a);
    lines_free(&b);
    kdh_sim_stop(&sim);
}

static void test_resync_when_the_position_is_not_in_the_log(void **state)
{
    (void)state;
    struct kdh_sim sim;
    kdh_sim_start(&sim, sim_args);
    struct kdh_daemon d;
    kdh_daemon_config(&d, &sim, KEY, MINUTE_MS, EXTRA);
    kdh_daemon_start(&d);
    if (!KDH_WAIT_FOR(store_last_seq(&d) >= 20, 120))
        fail_msg("fewer than 20 changes in 120 s (see %s)", d.log);
    assert_int_equal(kdh_daemon_stop(&d), 0);
    uint64_t last = store_last_seq(&d);
    uint64_t records = 0;
    {
        struct st_options so = {.path = d.store};
        struct st_env *env;
        char err[512];
        assert_int_equal(st_open_existing(&so, &env, err, sizeof(err)), 0);
        struct st_txn *txn;
        assert_int_equal(st_read_begin(env, &txn), 0);
        assert_int_equal(st_count(txn, ST_DB_PRODUCTS, &records), 0);
        st_read_end(txn);
        st_close(env);
    }
    char out[700];
    snprintf(out, sizeof(out), "%s/resync.jsonl", d.dir);
    /* A position past the end: a store other than the one the position came from. */
    pid_t f = follower_start(&d, "99999999", out);
    if (!KDH_WAIT_FOR(lines_count(out) >= records + 2, 30))
        fail_msg("no resync within 30 s");
    stop_follower(f, SIGTERM);
    struct lines l;
    lines_read(out, &l);
    assert_int_equal(l.n, records + 2);
    assert_string_equal(jstr(l.v[0], "event"), "resync");
    assert_int_equal(kdh_jint(l.v[0], "seq", NULL), 99999999);
    assert_non_null(jstr(l.v[0], "reason"));
    for (size_t i = 1; i <= records; i++) {
        assert_string_equal(jstr(l.v[i], "event"), "sync");
        assert_int_equal(kdh_jint(l.v[i], "seq", NULL), 99999999); /* not past it until done */
    }
    assert_string_equal(jstr(l.v[records + 1], "event"), "synced");
    assert_int_equal(kdh_jint(l.v[records + 1], "seq", NULL), (long long)last);
    assert_int_equal(kdh_jint(l.v[records + 1], "records", NULL), (long long)records);
    printf("    resync: %llu records, then synced at %llu\n", (unsigned long long)records,
           (unsigned long long)last);
    lines_free(&l);
    kdh_sim_stop(&sim);
}

static void test_usage_errors(void **state)
{
    (void)state;
    struct kdh_sim sim;
    kdh_sim_start(&sim, sim_args);
    struct kdh_daemon d;
    kdh_daemon_config(&d, &sim, KEY, MINUTE_MS, NULL);
    static const char *const a1[] = {"deals", "--from", "3", NULL};
    static const char *const a2[] = {"deals", "--follow", "--min-roi", "30", NULL};
    static const char *const a3[] = {"deals", "--follow", "--format", "csv", NULL};
    static const char *const a4[] = {"deals", "--follow", "--from", "x", NULL};
    assert_int_equal(kdh_cli(&d, a1, 10, NULL), 2);
    assert_int_equal(kdh_cli(&d, a2, 10, NULL), 2);
    assert_int_equal(kdh_cli(&d, a3, 10, NULL), 2);
    assert_int_equal(kdh_cli(&d, a4, 10, NULL), 2);
    kdh_sim_stop(&sim);
}

int main(int argc, char **argv)
{
    kd_test_set_timeout(300);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resume_without_gap_or_duplicate),
        cmocka_unit_test(test_resync_when_the_position_is_not_in_the_log),
        cmocka_unit_test(test_usage_errors),
    };
    return KD_RUN_TESTS(tests, argc, argv);
}
