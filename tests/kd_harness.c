/*
 * kd_harness.c: simulator and daemon processes for integration tests. See kd_harness.h.
 */
#include "kd_harness.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "base/key.h"
#include "kd_test.h"
#include "shm/counters.h"
#include "store/store.h"

#define SIM_BIN    KD_BUILD_DIR "/kdeals-sim"
#define KDEALS_BIN KD_BUILD_DIR "/kdeals"

void kdh_nap_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

const char *kdh_key(const char *base)
{
    static char keys[16][KD_KEY_MAX];
    static unsigned next;
    char *out = keys[next++ % 16];
    snprintf(out, KD_KEY_MAX, "%s-p%d", base, (int)getpid());
    char fp[KD_KEY_FP_LEN + 1], name[64];
    if (kd_key_fingerprint(out, fp) == 0) {
        ks_name(fp, name, sizeof(name));
        kd_test_track_shm(name);
    }
    return out;
}

/* kdh_key of each comma-separated key of LIST, into OUT. */
static void keys_list(const char *list, char *out, size_t len)
{
    out[0] = '\0';
    char copy[2048];
    snprintf(copy, sizeof(copy), "%s", list);
    char *save = NULL;
    for (char *k = strtok_r(copy, ",", &save); k != NULL; k = strtok_r(NULL, ",", &save))
        snprintf(out + strlen(out), len - strlen(out), "%s%s", out[0] ? "," : "", kdh_key(k));
}

void kdh_sim_start(struct kdh_sim *sim, const char *const *args)
{
    if (access(SIM_BIN, X_OK) != 0 || access(KDEALS_BIN, X_OK) != 0)
        fail_msg("%s or %s is not built", SIM_BIN, KDEALS_BIN);
    memset(sim, 0, sizeof(*sim));
    char port_file[600], log_file[600];
    snprintf(port_file, sizeof(port_file), "%s/sim%d.port", kd_test_tmpdir(), (int)getpid());
    snprintf(log_file, sizeof(log_file), "%s/sim%d.log", kd_test_tmpdir(), (int)getpid());
    unlink(port_file);
    /* The arguments are made here: the test process's keys carry its pid (kdh_key). */
    const char *argv[64];
    static char lists[4][2048];
    int n = 0, nl = 0;
    argv[n++] = SIM_BIN;
    argv[n++] = "--port-file";
    argv[n++] = port_file;
    argv[n++] = "--quiet";
    argv[n++] = "--economy=rich"; /* many deals quickly; ARGS may override */
    for (int i = 0; args != NULL && args[i] != NULL && n < 62; i++) {
        argv[n++] = args[i];
        bool keys = strcmp(args[i], "--keys") == 0 || strcmp(args[i], "--expired-keys") == 0;
        if (keys && args[i + 1] != NULL && nl < 4 && n < 62) {
            keys_list(args[++i], lists[nl], sizeof(lists[nl]));
            argv[n++] = lists[nl++];
        }
    }
    argv[n] = NULL;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fd = open(log_file, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execv(SIM_BIN, (char *const *)argv);
        _exit(127);
    }
    sim->pid = pid;
    int ok = KDH_WAIT_FOR(({
                              FILE *f = fopen(port_file, "r");
                              int p = 0;
                              if (f != NULL) {
                                  if (fscanf(f, "%d", &p) != 1)
                                      p = 0;
                                  fclose(f);
                              }
                              sim->port = p;
                              p > 0 || waitpid(pid, NULL, WNOHANG) == pid;
                          }),
                          20);
    if (!ok || sim->port <= 0)
        fail_msg("kdeals-sim did not start (see %s)", log_file);
    snprintf(sim->base, sizeof(sim->base), "http://127.0.0.1:%d", sim->port);
}

void kdh_sim_stop(struct kdh_sim *sim)
{
    if (sim->pid > 0) {
        kill(sim->pid, SIGTERM);
        waitpid(sim->pid, NULL, 0);
        sim->pid = 0;
    }
}

struct body {
    char *p;
    size_t n;
};

static size_t body_write(char *p, size_t s, size_t n, void *ud)
{
    struct body *b = ud;
    char *q = realloc(b->p, b->n + s * n + 1);
    if (q == NULL)
        return 0;
    memcpy(q + b->n, p, s * n);
    b->n += s * n;
    q[b->n] = '\0';
    b->p = q;
    return s * n;
}

static yajl_val request(const struct kdh_sim *sim, const char *path, int post)
{
    char url[8192];
    snprintf(url, sizeof(url), "%s%s", sim->base, path);
    struct body b = {NULL, 0};
    CURL *e = curl_easy_init();
    assert_non_null(e);
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
    curl_easy_setopt(e, CURLOPT_TIMEOUT, 20L);
    if (post) {
        curl_easy_setopt(e, CURLOPT_POST, 1L);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, "");
    }
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, body_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, &b);
    CURLcode rc = curl_easy_perform(e);
    curl_easy_cleanup(e);
    if (rc != CURLE_OK || b.p == NULL)
        fail_msg("simulator request %s failed: %s", path, curl_easy_strerror(rc));
    char err[256];
    yajl_val v = yajl_tree_parse(b.p, err, sizeof(err));
    if (v == NULL)
        fail_msg("simulator answer to %s is not JSON: %s", path, err);
    free(b.p);
    return v;
}

yajl_val kdh_sim_get(const struct kdh_sim *sim, const char *path)
{
    return request(sim, path, 0);
}

yajl_val kdh_sim_post(const struct kdh_sim *sim, const char *path)
{
    return request(sim, path, 1);
}

static int64_t jint_va(yajl_val v, va_list ap)
{
    const char *path[8];
    int n = 0;
    const char *k;
    while ((k = va_arg(ap, const char *)) != NULL && n < 7)
        path[n++] = k;
    path[n] = NULL;
    yajl_val x = yajl_tree_get(v, path, yajl_t_number);
    if (x == NULL || !YAJL_IS_INTEGER(x))
        fail_msg("no integer at %s%s%s", path[0], n > 1 ? "." : "", n > 1 ? path[1] : "");
    return YAJL_GET_INTEGER(x);
}

int64_t kdh_jint(yajl_val v, ...)
{
    va_list ap;
    va_start(ap, v);
    int64_t r = jint_va(v, ap);
    va_end(ap);
    return r;
}

int64_t kdh_stat_value(const char *conf, const char *name)
{
    char cmd[PATH_MAX + 64];
    if (strchr(conf, '\'') != NULL ||
        snprintf(cmd, sizeof(cmd), KDEALS_BIN " stat -c '%s' --json 2>/dev/null", conf) >=
            (int)sizeof(cmd))
        fail_msg("config path unusable in a shell command: %s", conf);
    FILE *p = popen(cmd, "r");
    if (p == NULL)
        return -1;
    static char out[1 << 20];
    size_t n = fread(out, 1, sizeof(out) - 1, p);
    out[n] = '\0';
    if (pclose(p) != 0)
        return -1;
    yajl_val v = yajl_tree_parse(out, NULL, 0);
    const char *path[] = {"value", name, NULL};
    yajl_val x = v != NULL ? yajl_tree_get(v, path, yajl_t_number) : NULL;
    int64_t r = x != NULL && YAJL_IS_INTEGER(x) ? YAJL_GET_INTEGER(x) : -1;
    yajl_tree_free(v);
    return r;
}

int64_t kdh_sim_stat(const struct kdh_sim *sim, ...)
{
    yajl_val v = kdh_sim_get(sim, "/_sim/stats");
    va_list ap;
    va_start(ap, sim);
    int64_t r = jint_va(v, ap);
    va_end(ap);
    yajl_tree_free(v);
    return r;
}

void kdh_daemon_config(struct kdh_daemon *d, const struct kdh_sim *sim, const char *key,
                       int minute_ms, const char *extra)
{
    memset(d, 0, sizeof(*d));
    static unsigned n;
    snprintf(d->dir, sizeof(d->dir), "%s/d%d-%u", kd_test_tmpdir(), (int)getpid(), n++);
    mkdir(d->dir, 0700);
    kdh_daemon_rewrite(d, sim, key, minute_ms, extra);
}

void kdh_daemon_rewrite(struct kdh_daemon *d, const struct kdh_sim *sim, const char *key,
                        int minute_ms, const char *extra)
{
    pid_t pid = d->pid;
    snprintf(d->conf, sizeof(d->conf), "%s/kdeals.conf", d->dir);
    snprintf(d->store, sizeof(d->store), "%s/store", d->dir);
    snprintf(d->run_dir, sizeof(d->run_dir), "%s/run", d->dir);
    snprintf(d->log, sizeof(d->log), "%s/kdeals.log", d->dir);
    if (d->instance[0] == '\0') /* a rewrite keeps the instance (a restart-only key) */
        snprintf(d->instance, sizeof(d->instance), "%s", kd_test_instance());
    mkdir(d->run_dir, 0700);
    char key_path[700];
    snprintf(key_path, sizeof(key_path), "%s/key", d->dir);
    FILE *f = fopen(key_path, "w");
    assert_non_null(f);
    d->key[0] = '\0';
    char copy[1024];
    snprintf(copy, sizeof(copy), "%s", key);
    char *save = NULL;
    for (char *k = strtok_r(copy, "\n", &save); k != NULL; k = strtok_r(NULL, "\n", &save)) {
        const char *mine = kdh_key(k);
        fprintf(f, "%s\n", mine);
        snprintf(d->key + strlen(d->key), sizeof(d->key) - strlen(d->key), "%s\n", mine);
    }
    fclose(f);
    chmod(key_path, 0600);
    /* Written aside and renamed, so a reload never reads half a file. */
    char tmp[700];
    snprintf(tmp, sizeof(tmp), "%s.tmp", d->conf);
    f = fopen(tmp, "w");
    assert_non_null(f);
    fprintf(f,
            "[keepa]\nbase_url = %s\nkey_file = %s\n"
            "[daemon]\ninstance = %s\nrun_dir = %s\nlog_file = %s\nstop_timeout = 10s\n"
            "[store]\npath = %s\nmap_size_mb = 64\n"
            "[tokens]\nminute = %dms\n"
            /* The judgement these tests run under: sold at the averages, no Buy Box cap, so
             * the simulator's price drops are deals and the daemon's mechanics have work to
             * do. The default judgement is held to its rules by test_judge (by hand, against
             * the recorded real products) and test_committer_e2e. */
            KDH_JUDGEMENT "%s",
            sim->base, key_path, d->instance, d->run_dir, d->log, d->store, minute_ms,
            extra ? extra : "");
    fclose(f);
    assert_int_equal(rename(tmp, d->conf), 0);
    d->pid = pid;
}

static int running_as(const struct kdh_daemon *d)
{
    struct shm_status st;
    return shm_status_read(d->run_dir, d->instance, &st) == 0 && st.pid == d->pid && st.locked &&
           strcmp(st.state, "running") == 0;
}

void kdh_daemon_start(struct kdh_daemon *d)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fd = open(d->log, O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (fd >= 0)
            dup2(fd, 2);
        execl(KDEALS_BIN, KDEALS_BIN, "run", "-c", d->conf, (char *)NULL);
        _exit(127);
    }
    d->pid = pid;
    if (!KDH_WAIT_FOR(running_as(d) || waitpid(pid, NULL, WNOHANG) == pid, 20) || !running_as(d)) {
        /* The log's last lines say why (for the test's output; the folder is removed after). */
        char cmd[800];
        snprintf(cmd, sizeof(cmd), "tail -n 25 '%s' >&2", d->log);
        fprintf(stderr, "kdeals did not start; the end of its log:\n");
        if (system(cmd) != 0)
            fprintf(stderr, "(no log at %s)\n", d->log);
        fail_msg("kdeals did not start (see %s)", d->log);
    }
}

int kdh_daemon_stop(struct kdh_daemon *d)
{
    if (d->pid <= 0)
        return -1;
    kill(d->pid, SIGTERM);
    int status = 0;
    int reaped = KDH_WAIT_FOR(waitpid(d->pid, &status, WNOHANG) == d->pid, 30);
    if (!reaped) {
        kill(d->pid, SIGKILL);
        waitpid(d->pid, &status, 0);
    }
    d->pid = 0;
    int code = !reaped ? -1 : WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    if (code != 0) {
        /* A stop that was not clean: the log's last lines say why (for the test's output). */
        char cmd[800];
        snprintf(cmd, sizeof(cmd), "tail -n 25 '%s' >&2", d->log);
        fprintf(stderr, "kdeals run exited %d; the end of its log:\n", code);
        if (system(cmd) != 0)
            fprintf(stderr, "(no log at %s)\n", d->log);
    }
    return code;
}

void kdh_daemon_attach(const struct kdh_daemon *d, struct shm_segment *seg)
{
    char err[256];
    if (shm_segment_attach(seg, d->instance, SHM_READ_ONLY, err, sizeof(err)) != 0)
        fail_msg("attach: %s", err);
}

const struct shm_tokens *kdh_daemon_bucket(const struct kdh_daemon *d, unsigned i,
                                           struct ks_segment *ks)
{
    char copy[sizeof(d->key)];
    snprintf(copy, sizeof(copy), "%s", d->key);
    char *save = NULL, *k = strtok_r(copy, "\n", &save);
    for (unsigned n = 0; n < i && k != NULL; n++)
        k = strtok_r(NULL, "\n", &save);
    if (k == NULL)
        fail_msg("the daemon has no key %u", i);
    char fp[KD_KEY_FP_LEN + 1], err[256] = "";
    assert_int_equal(kd_key_fingerprint(k, fp), 0);
    if (!KDH_WAIT_FOR(ks_attach_ro(ks, fp, err, sizeof(err)) == 0, 10))
        fail_msg("the daemon's key bucket: %s", err);
    return &ks->layout->tokens;
}

int kdh_log_contains(const struct kdh_daemon *d, const char *needle)
{
    char *text = kd_read_file(d->log, NULL);
    int found = text != NULL && strstr(text, needle) != NULL;
    free(text);
    return found;
}

unsigned kdh_pending_keys(const struct kdh_daemon *d, struct st_key *keys, unsigned max)
{
    struct st_options so = {.path = d->store, .map_size_bytes = 1u << 20};
    struct st_env *env;
    char err[256];
    if (st_open(&so, &env, err, sizeof(err)) != 0)
        fail_msg("store: %s", err);
    struct st_txn *txn;
    assert_int_equal(st_read_begin(env, &txn), 0);
    struct st_cursor *cur;
    assert_int_equal(st_cursor_open(txn, ST_DB_PENDING, &cur), 0);
    struct st_pending p;
    unsigned n = 0;
    int rc;
    while ((rc = st_cursor_next_pending(cur, &p)) == 0) {
        if (keys != NULL && n < max)
            assert_int_equal(st_key_make(p.domain, p.asin, &keys[n]), 0);
        n++;
    }
    assert_int_equal(rc, -ENOENT);
    st_cursor_close(cur);
    st_read_end(txn);
    st_close(env);
    return n;
}

unsigned kdh_schedule_due(const struct kdh_daemon *d, int64_t at_ms)
{
    struct st_options so = {.path = d->store, .map_size_bytes = 1u << 20};
    struct st_env *env;
    char err[256];
    if (st_open(&so, &env, err, sizeof(err)) != 0)
        fail_msg("store: %s", err);
    struct st_txn *txn;
    assert_int_equal(st_read_begin(env, &txn), 0);
    struct st_sched_entry due[64];
    size_t n = 0;
    assert_int_equal(st_schedule_due(txn, at_ms, due, sizeof(due) / sizeof(due[0]), &n), 0);
    st_read_end(txn);
    st_close(env);
    return (unsigned)n;
}

long long kdh_print_faults(const struct kdh_sim *sim)
{
    yajl_val v = kdh_sim_get(sim, "/_sim/stats");
    const char *path[] = {"faults_injected", NULL};
    yajl_val f = yajl_tree_get(v, path, yajl_t_object);
    long long sum = 0;
    printf("    faults injected:");
    for (size_t i = 0; f != NULL && i < YAJL_GET_OBJECT(f)->len; i++) {
        yajl_val x = YAJL_GET_OBJECT(f)->values[i];
        long long n = YAJL_IS_INTEGER(x) ? YAJL_GET_INTEGER(x) : 0;
        if (n > 0)
            printf(" %s=%lld", YAJL_GET_OBJECT(f)->keys[i], n);
        sum += n;
    }
    printf(" (total %lld)\n", sum);
    yajl_tree_free(v);
    return sum;
}

uint64_t kdh_check_store(const struct kdh_daemon *d, unsigned *survivors_out)
{
    /* A small map: LMDB adopts the size recorded in the file, so this never changes it. */
    struct st_options so = {
        .path = d->store, .map_size_bytes = 1u << 20, .max_map_size_bytes = 1ull << 30};
    struct st_env *env;
    char err[256];
    if (st_open(&so, &env, err, sizeof(err)) != 0)
        fail_msg("store: %s", err);
    struct st_txn *txn;
    assert_int_equal(st_read_begin(env, &txn), 0);
    struct st_cursor *cur;
    assert_int_equal(st_cursor_open(txn, ST_DB_SEEN, &cur), 0);
    struct st_key key;
    struct st_seen seen;
    unsigned survivors = 0, lost = 0;
    int rc;
    while ((rc = st_cursor_next_seen(cur, &key, &seen)) == 0) {
        if (seen.verdict != ST_VERDICT_SURVIVOR)
            continue;
        survivors++;
        struct st_record rec;
        struct st_pending pend;
        if (st_record_get(txn, &key, &rec) != 0 && st_pending_get(txn, &key, &pend) != 0) {
            char asin[ST_ASIN_LEN + 1];
            st_key_asin(&key, asin);
            fprintf(stderr, "survivor %s is neither stored nor pending\n", asin);
            lost++;
        }
    }
    assert_int_equal(rc, -ENOENT);
    st_cursor_close(cur);
    if (lost > 0 && getenv("KDH_KEEP") != NULL) {
        /* Debugging aid: keep the daemon's folder (log, store) for a post-mortem. */
        char cmd[1200];
        snprintf(cmd, sizeof(cmd), "cp -a '%s' '%s'", d->dir, getenv("KDH_KEEP"));
        if (system(cmd) != 0)
            fprintf(stderr, "could not copy %s\n", d->dir);
    }
    assert_int_equal(lost, 0);

    uint64_t n_deals = 0, decoded = 0;
    assert_int_equal(st_count(txn, ST_DB_PRODUCTS, &n_deals), 0);
    assert_int_equal(st_cursor_open(txn, ST_DB_PRODUCTS, &cur), 0);
    struct st_record rec;
    while ((rc = st_cursor_next_record(cur, &rec)) == 0)
        decoded++;
    assert_int_equal(rc, -ENOENT);
    assert_int_equal(decoded, n_deals);
    st_cursor_close(cur);
    assert_int_equal(st_cursor_open(txn, ST_DB_PENDING, &cur), 0);
    struct st_pending p;
    while ((rc = st_cursor_next_pending(cur, &p)) == 0) {
    }
    assert_int_equal(rc, -ENOENT);
    st_cursor_close(cur);
    st_read_end(txn);
    st_close(env);

    char cmd[800];
    snprintf(cmd, sizeof(cmd), "mdb_stat -a '%s' >/dev/null 2>&1", d->store);
    assert_int_equal(system(cmd), 0);
    if (survivors_out != NULL)
        *survivors_out = survivors;
    return n_deals;
}

void kdh_check_rings(const struct shm_segment *seg)
{
    for (int i = 0; i < SHM_RING_COUNT; i++) {
        const struct shm_ring *r = &seg->layout->rings[i];
        /* head is read before tail: the consumer never passes the producer, so head <= tail
         * must hold; a head that moved meanwhile makes the depth stale, so read again. */
        uint64_t head, tail;
        int tries = 0;
        do {
            head = atomic_load(&r->head);
            tail = atomic_load(&r->tail);
        } while (atomic_load(&r->head) != head && ++tries < 100);
        if (head > tail || tail - head > r->capacity)
            fail_msg("ring %d inconsistent: head %llu tail %llu capacity %llu", i,
                     (unsigned long long)head, (unsigned long long)tail,
                     (unsigned long long)r->capacity);
    }
}

void kdh_check_counters(const struct shm_segment *seg, struct kdh_counter_sample *m)
{
    uint64_t gen = seg->layout->header.generation;
    int same = m->have && m->generation == gen;
    for (int i = 0; i < SHM_COUNTER_COUNT; i++) {
        if (shm_counter_meta[i].kind != SHM_COUNTER)
            continue;
        int64_t v = shm_counter_total(seg->layout, (enum shm_counter_id)i);
        if (same && v < m->v[i])
            fail_msg("counter %s went backwards in generation %llu: %lld -> %lld",
                     shm_counter_meta[i].name, (unsigned long long)gen, (long long)m->v[i],
                     (long long)v);
        m->v[i] = v;
    }
    m->have = 1;
    m->generation = gen;
}

int kdh_cli(const struct kdh_daemon *d, const char *const *args, int timeout_s, char **out)
{
    static unsigned n;
    char path[700];
    snprintf(path, sizeof(path), "%s/cli%u.out", d->dir, n++);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        const char *argv[32];
        int k = 0;
        argv[k++] = KDEALS_BIN;
        for (int i = 0; args[i] != NULL && k < 28; i++)
            argv[k++] = args[i];
        argv[k++] = "-c";
        argv[k++] = d->conf;
        argv[k] = NULL;
        execv(KDEALS_BIN, (char *const *)argv);
        _exit(127);
    }
    int status = 0;
    int done = KDH_WAIT_FOR(waitpid(pid, &status, WNOHANG) == pid, timeout_s);
    if (!done) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
    }
    if (out != NULL) {
        *out = kd_read_file(path, NULL);
        if (*out == NULL)
            *out = strdup("");
    }
    unlink(path);
    if (!done)
        return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
