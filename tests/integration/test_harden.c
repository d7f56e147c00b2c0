/*
 * test_harden.c: kdeals against another local user, a store that moves or rots, and the
 * operator's own paths and processes, as users run it (`kdeals start` daemonised from the
 * config's folder with a relative -c, nobody reaping it, or `kdeals run` in the foreground).
 *
 * Each case reproduces one way things went wrong and asserts what the operator relies on
 * instead: a clear error naming the file or the owner, the daemon still running (or stopping
 * at once with the reason, never looping), no process signalled that is not this instance's
 * supervisor, nothing written where it should not be. Cases that need a second uid use uid
 * 65534 (nobody) through setresuid in a forked child or chown, and are skipped with a message
 * when the test is not root.
 */
#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kd_harness.h"
#include "kd_test.h"
#include "shm/counters.h"
#include "shm/segment.h"
#include "store/store.h"

#define KDEALS    KD_BUILD_DIR "/kdeals"
#define PYTHON    "/usr/bin/python3"
#define OTHER_UID 65534 /* nobody */
#define KEY       "HardenTestKey0123456789abcdef"

/* ---- helpers ------------------------------------------------------------------------------ */

/* A daemon's folder: config (no key unless EXTRA sets one), run folder, store, log. */
struct box {
    char dir[600];
    char conf[700];
    char run[700];
    char store[700];
    char log[700];
    char inst[64];
    pid_t pid; /* `kdeals run` started by run_daemon, else 0 */
};

static void box_make(struct box *b, const char *extra)
{
    static unsigned n;
    memset(b, 0, sizeof(*b));
    snprintf(b->dir, sizeof(b->dir), "%s/b%d-%u", kd_test_tmpdir(), (int)getpid(), n++);
    assert_int_equal(mkdir(b->dir, 0700), 0);
    snprintf(b->conf, sizeof(b->conf), "%s/kdeals.conf", b->dir);
    snprintf(b->run, sizeof(b->run), "%s/run", b->dir);
    snprintf(b->store, sizeof(b->store), "%s/store", b->dir);
    snprintf(b->log, sizeof(b->log), "%s/kdeals.log", b->dir);
    snprintf(b->inst, sizeof(b->inst), "%s", kd_test_instance());
    assert_int_equal(mkdir(b->run, 0700), 0);
    FILE *f = fopen(b->conf, "w");
    assert_non_null(f);
    fprintf(f,
            "[daemon]\ninstance = %s\nrun_dir = %s\nlog_file = %s\nstop_timeout = 10s\n"
            "[store]\npath = %s\nmap_size_mb = 16\n%s",
            b->inst, b->run, b->log, b->store, extra ? extra : "");
    fclose(f);
    chmod(b->conf, 0600);
}

/* Runs CMD through sh (stdout and stderr into OUT). Returns the exit status (128+signal). */
static int sh(char *out, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int sh(char *out, size_t len, const char *fmt, ...)
{
    char cmd[8192], full[8300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    snprintf(full, sizeof(full), "%s 2>&1", cmd);
    FILE *p = popen(full, "r");
    assert_non_null(p);
    size_t n = 0;
    char sink[4096];
    if (out == NULL) {
        out = sink;
        len = sizeof(sink);
    }
    n = fread(out, 1, len - 1, p);
    out[n] = '\0';
    while (fread(sink, 1, sizeof(sink), p) > 0) {
    }
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static int file_contains(const char *path, const char *needle)
{
    char *text = kd_read_file(path, NULL);
    int found = text != NULL && strstr(text, needle) != NULL;
    free(text);
    return found;
}

static int count_in_file(const char *path, const char *needle)
{
    char *text = kd_read_file(path, NULL);
    int n = 0;
    for (const char *p = text; p != NULL && (p = strstr(p, needle)) != NULL; p++)
        n++;
    free(text);
    return n;
}

static int status_running(const struct box *b, const char *run_dir)
{
    struct shm_status st;
    return shm_status_read(run_dir ? run_dir : b->run, b->inst, &st) == 0 && st.locked &&
           strcmp(st.state, "running") == 0;
}

static int64_t status_pid(const struct box *b)
{
    struct shm_status st;
    if (shm_status_read(b->run, b->inst, &st) != 0 || !st.locked)
        return 0;
    return st.pid;
}

/* `kdeals run -c CONF` in the foreground as our child, with stderr to ERR_FD (or the log). */
static void run_daemon(struct box *b, const char *binary, int err_fd)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fd = err_fd >= 0 ? err_fd : open(b->log, O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (fd >= 0)
            dup2(fd, 2);
        execl(binary, binary, "run", "-c", b->conf, (char *)NULL);
        _exit(127);
    }
    b->pid = pid;
    if (!KDH_WAIT_FOR(status_running(b, NULL) || waitpid(pid, NULL, WNOHANG) == pid, 20) ||
        !status_running(b, NULL))
        fail_msg("kdeals did not start (see %s)", b->log);
}

static int stop_daemon(struct box *b)
{
    if (b->pid <= 0)
        return -1;
    kill(b->pid, SIGTERM);
    int status = 0;
    if (!KDH_WAIT_FOR(waitpid(b->pid, &status, WNOHANG) == b->pid, 30)) {
        kill(b->pid, SIGKILL);
        waitpid(b->pid, &status, 0);
    }
    b->pid = 0;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static void attach_ro(const struct box *b, struct shm_segment *seg)
{
    char err[512];
    if (shm_segment_attach(seg, b->inst, SHM_READ_ONLY, err, sizeof(err)) != 0)
        fail_msg("attach: %s", err);
}

static int proc_state(pid_t pid)
{
    char path[64], text[512];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 0;
    size_t n = fread(text, 1, sizeof(text) - 1, f);
    fclose(f);
    text[n] = '\0';
    const char *p = strrchr(text, ')');
    return p != NULL && p[1] == ' ' ? p[2] : 0;
}

/* A worker of ROLE whose pid is not OLD is up and ready. */
static int restarted(const struct shm_segment *seg, enum shm_role role, int64_t old)
{
    const struct shm_proc_slot *p = &seg->layout->procs[role];
    int64_t pid = atomic_load(&p->pid);
    uint32_t st = atomic_load(&p->state);
    return pid > 0 && pid != old && (st == SHM_PROC_READY || st == SHM_PROC_WAITING_TOKENS) &&
           kill((pid_t)pid, 0) == 0;
}

static void need_root(const char *what)
{
    if (geteuid() != 0) {
        char why[300];
        snprintf(why, sizeof(why), "%s: needs root to act as a second user (uid %d)", what,
                 OTHER_UID);
        kd_test_skip(why);
    }
}

/* A child that sleeps until killed: a process nobody should signal. */
static pid_t bystander(void)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        for (;;)
            pause();
    }
    return pid;
}

/* ---- 1. the run folder, the status and log files, stop/reload ----------------------------- */

static void test_run_folder_of_another_user_is_refused(void **state)
{
    (void)state;
    need_root("another user's run folder");
    struct box b;
    box_make(&b, NULL);
    char out[8192];
    /* A victim file of root's, and another user's folder holding links to it under the
     * status and log names (the hijack: root's start rewrote and chmod'ed it). */
    char victim[800], evil[800], path[900];
    snprintf(victim, sizeof(victim), "%s/victim", b.dir);
    FILE *f = fopen(victim, "w");
    fputs("precious\n", f);
    fclose(f);
    chmod(victim, 0644);
    snprintf(evil, sizeof(evil), "%s/evil", b.dir);
    assert_int_equal(mkdir(evil, 0777), 0);
    chmod(evil, 0777);
    snprintf(path, sizeof(path), "%s/%s.status", evil, b.inst);
    assert_int_equal(symlink(victim, path), 0);
    snprintf(path, sizeof(path), "%s/%s.log", evil, b.inst);
    assert_int_equal(symlink(victim, path), 0);
    assert_int_equal(chown(evil, OTHER_UID, OTHER_UID), 0);
    assert_int_equal(chmod(b.dir, 0755), 0);

    /* The log file name comes from the run folder: without [daemon] log_file. */
    FILE *c = fopen(b.conf, "w");
    fprintf(c, "[daemon]\ninstance = %s\n[store]\npath = %s\nmap_size_mb = 16\n", b.inst, b.store);
    fclose(c);
    assert_int_equal(
        sh(out, sizeof(out), KDEALS " start -c %s --run-dir %s --wait --timeout 10", b.conf, evil),
        1);
    if (strstr(out, "belongs to uid 65534") == NULL)
        fail_msg("start in another user's folder: %s", out);
    struct stat st;
    assert_int_equal(stat(victim, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0644);
    assert_true(file_contains(victim, "precious\n"));
    assert_false(file_contains(victim, "pid="));
    assert_int_equal(sh(out, sizeof(out), KDEALS " stop -c %s --run-dir %s", b.conf, evil), 1);
    assert_non_null(strstr(out, "belongs to uid 65534"));
    assert_null(strstr(out, "not running"));

    /* A folder of ours that others may write in: refused, with what to do. */
    char open_dir[800];
    snprintf(open_dir, sizeof(open_dir), "%s/open", b.dir);
    assert_int_equal(mkdir(open_dir, 0777), 0);
    chmod(open_dir, 0777);
    assert_int_equal(sh(out, sizeof(out), KDEALS " start -c %s --run-dir %s --wait --timeout 10",
                        b.conf, open_dir),
                     1);
    assert_non_null(strstr(out, "chmod 700"));

    /* Without a config file or XDG_RUNTIME_DIR, the run folder is never one under /tmp that
     * anybody could have created first. */
    char empty[800];
    snprintf(empty, sizeof(empty), "%s/empty", b.dir);
    mkdir(empty, 0700);
    sh(out, sizeof(out), "cd %s && env -u XDG_RUNTIME_DIR " KDEALS " status --instance %s", empty,
       b.inst);
    assert_null(strstr(out, "/tmp/kdeals-"));
}

/* A status file (in the right folder, locked by a live process) that names a process which is
 * not this instance's supervisor: stop and reload signal nothing. */
static void test_stop_signals_only_a_proven_supervisor(void **state)
{
    (void)state;
    struct box b;
    box_make(&b, NULL);
    pid_t victim = bystander();
    char path[800], out[4096];
    snprintf(path, sizeof(path), "%s/%s.status", b.run, b.inst);
    /* Without a start time, and with one that is not the process's. */
    const char *ticks[] = {"", "start_ticks=12345\n"};
    for (size_t i = 0; i < 2; i++) {
        int fds[2];
        assert_int_equal(pipe(fds), 0);
        pid_t holder = fork();
        if (holder == 0) {
            int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
            dprintf(fd, "pid=%d\nstart_ms=1\n%sgeneration=1\nstate=running\n", (int)victim,
                    ticks[i]);
            flock(fd, LOCK_EX);
            char ok = 1;
            if (write(fds[1], &ok, 1) != 1)
                _exit(1);
            pause();
            _exit(0);
        }
        char ok;
        assert_int_equal(read(fds[0], &ok, 1), 1);
        close(fds[0]);
        close(fds[1]);
        assert_int_equal(sh(out, sizeof(out), KDEALS " stop -c %s", b.conf), 1);
        assert_int_equal(sh(out, sizeof(out), KDEALS " reload -c %s", b.conf), 1);
        assert_int_equal(sh(out, sizeof(out), KDEALS " stop --fast -c %s", b.conf), 1);
        kdh_nap_ms(200);
        assert_int_equal(kill(victim, 0), 0);
        assert_int_equal(waitpid(victim, NULL, WNOHANG), 0); /* not killed */
        kill(holder, SIGKILL);
        waitpid(holder, NULL, 0);
    }
    kill(victim, SIGKILL);
    waitpid(victim, NULL, 0);
}

/* ---- 2. /dev/shm squatting ------------------------------------------------------------------ */

static void test_squatted_segment_names_its_owner(void **state)
{
    (void)state;
    need_root("another user's segment");
    struct box b;
    box_make(&b, NULL);
    char name[128];
    snprintf(name, sizeof(name), "/kdeals-%s", b.inst);
    pid_t pid = fork();
    if (pid == 0) {
        if (setresgid(OTHER_UID, OTHER_UID, OTHER_UID) != 0 ||
            setresuid(OTHER_UID, OTHER_UID, OTHER_UID) != 0)
            _exit(3);
        int fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0644);
        if (fd < 0 || ftruncate(fd, 1 << 20) != 0)
            _exit(4);
        struct shm_header *h = mmap(NULL, sizeof(*h), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        h->magic = SHM_MAGIC;
        h->supervisor_pid = 1;
        atomic_store(&h->layout_version, SHM_LAYOUT_VERSION);
        _exit(0);
    }
    int status;
    waitpid(pid, &status, 0);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    char out[4096];
    assert_int_equal(sh(out, sizeof(out), KDEALS " start -c %s --wait --timeout 10", b.conf), 1);
    if (strstr(out, "belongs to uid 65534 (nobody)") == NULL)
        fail_msg("start: %s", out);
    assert_null(strstr(out, "pid 1"));
    assert_int_equal(sh(out, sizeof(out), KDEALS " stat -1 -c %s", b.conf), 1);
    assert_non_null(strstr(out, "belongs to uid 65534"));
    shm_unlink(name);
}

/* ---- 3 and 16. server text in status; status --json always JSON --------------------------- */

static void test_status_shows_server_text_safely_and_as_json(void **state)
{
    (void)state;
    struct box b;
    box_make(&b, NULL);
    run_daemon(&b, KDEALS, -1);
    struct shm_segment rw;
    char err[512], out[16384];
    assert_int_equal(shm_segment_attach(&rw, b.inst, SHM_READ_WRITE, err, sizeof(err)), 0);
    /* What a server (or a torn write) can leave in a last error: a newline and a forged line,
     * escape sequences, a bell, bytes that are not UTF-8. */
    const char *evil = "HTTP 400 bad\n2030-01-01 INFO all good \x1b[2J\x1b]0;owned\x07 "
                       "\xff\xfe\xc3 end";
    snprintf(rw.layout->procs[SHM_ROLE_SCANNER].last_error, SHM_MESSAGE_MAX, "%s", evil);
    assert_int_equal(sh(out, sizeof(out), KDEALS " status -c %s", b.conf), 0);
    assert_null(strchr(out, '\x1b'));
    assert_null(strchr(out, '\x07'));
    assert_null(strstr(out, "\xff"));
    assert_null(strstr(out, "\n2030-01-01"));
    assert_non_null(strstr(out, "HTTP 400 bad\\x0a2030-01-01"));
    assert_int_equal(sh(out, sizeof(out),
                        KDEALS " status -c %s --json | " PYTHON
                               " -c 'import json,sys; s=json.load(sys.stdin); "
                               "e=[p[\"last_error\"] for p in s[\"processes\"] if p[\"role\"]"
                               "==\"scanner\"][0]; assert \"HTTP 400 bad\" in e, e; "
                               "assert \"\\x1b\" not in e and \"\\n\" not in e, e'",
                        b.conf),
                     0);
    /* A state torn into bytes that are not UTF-8 in the status file: still JSON. */
    shm_segment_detach(&rw);
    assert_int_equal(stop_daemon(&b), 0);
    char path[800];
    snprintf(path, sizeof(path), "%s/%s.status", b.run, b.inst);
    FILE *f = fopen(path, "w");
    fputs("pid=1\nstate=run\xff\xfe\n", f);
    fclose(f);
    assert_int_equal(sh(out, sizeof(out),
                        KDEALS " status -c %s --json | " PYTHON
                               " -c 'import json,sys; json.load(sys.stdin)'",
                        b.conf),
                     0);
}

/* ---- 4. --instance ----------------------------------------------------------------------------
 */

static void test_instance_flag_is_validated(void **state)
{
    (void)state;
    struct box b;
    box_make(&b, NULL);
    char out[4096];
    const char *cmds[] = {
        "start --wait --timeout 5", "run", "stop", "reload", "status", "stat -1", "deals"};
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
        assert_int_equal(
            sh(out, sizeof(out), KDEALS " %s -c %s --instance ../escape", cmds[i], b.conf), 2);
        assert_non_null(strstr(out, "--instance '../escape'"));
    }
    char outside[800];
    snprintf(outside, sizeof(outside), "%s/escape.log", b.dir);
    assert_int_equal(access(outside, F_OK), -1);
    snprintf(outside, sizeof(outside), "%s/escape.status", b.dir);
    assert_int_equal(access(outside, F_OK), -1);
}

/* ---- 5. a truncated data.mdb ------------------------------------------------------------------
 */

static int fill_store(struct st_txn *txn, void *ud)
{
    (void)ud;
    for (unsigned i = 0; i < 20000; i++) {
        char asin[16];
        snprintf(asin, sizeof(asin), "B%09u", i);
        struct st_key key;
        assert_int_equal(st_key_make(1, asin, &key), 0);
        struct st_seen s = {.peek_ms = 1700000000000LL + i, .verdict = ST_VERDICT_REJECTED};
        int rc = st_seen_put(txn, &key, &s);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static void make_store(const char *path)
{
    struct st_options so = {.path = path, .map_size_bytes = 16u << 20};
    struct st_env *env;
    char err[512];
    if (st_open(&so, &env, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    assert_int_equal(st_write(env, fill_store, NULL), 0);
    st_close(env);
}

static void test_truncated_store_is_an_error_not_a_crash_loop(void **state)
{
    (void)state;
    struct box b;
    box_make(&b, NULL);
    make_store(b.store);
    char data[800], out[8192];
    snprintf(data, sizeof(data), "%s/data.mdb", b.store);
    struct stat st;
    assert_int_equal(stat(data, &st), 0);
    assert_true(st.st_size > 1 << 20);
    assert_int_equal(truncate(data, st.st_size / 2), 0);

    int rc = sh(out, sizeof(out), KDEALS " deals -c %s", b.conf);
    if (rc != 1)
        fail_msg("deals on a truncated store: exit %d: %s", rc, out);
    assert_non_null(strstr(out, data));
    assert_non_null(strstr(out, "truncated"));
    sh(out, sizeof(out), KDEALS " status -c %s", b.conf);
    assert_non_null(strstr(out, "truncated"));

    /* The daemon: a worker that cannot open the store is not restarted in a loop; the daemon
     * stops at once, status 2, the reason in its log. */
    pid_t pid = fork();
    if (pid == 0) {
        execl(KDEALS, KDEALS, "run", "-c", b.conf, (char *)NULL);
        _exit(127);
    }
    int status = 0;
    if (!KDH_WAIT_FOR(waitpid(pid, &status, WNOHANG) == pid, 20)) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        fail_msg("the daemon kept running on a truncated store (see %s)", b.log);
    }
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 2);
    assert_true(file_contains(b.log, "cannot run"));
    assert_true(file_contains(b.log, "truncated"));
    assert_int_equal(count_in_file(b.log, "started committer"), 1);
    assert_int_equal(count_in_file(b.log, "restarting"), 0);
}

/* ---- 6. the store folder removed under a running daemon -------------------------------------- */

static const char *const spend_sim[] = {"--keys",        KEY,     "--seed",      "41",
                                        "--products",    "20000", "--minute-ms", "100",
                                        "--refill-rate", "20",    NULL};

static int64_t consumed(const struct kdh_sim *sim)
{
    return kdh_sim_stat(sim, "tokens_consumed", NULL);
}

static void test_store_removed_is_noticed_and_spending_pauses(void **state)
{
    (void)state;
    kd_test_set_timeout(120);
    struct kdh_sim sim;
    kdh_sim_start(&sim, spend_sim);
    struct kdh_daemon d;
    kdh_daemon_config(&d, &sim, KEY, 100, "[scan]\npass_pause = 1s\n");
    kdh_daemon_start(&d);
    struct shm_segment seg;
    kdh_daemon_attach(&d, &seg);
    if (!KDH_WAIT_FOR(consumed(&sim) > 200, 30))
        fail_msg("the daemon does not spend (see %s)", d.log);
    char cmd[800];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", d.store);
    assert_int_equal(system(cmd), 0);
    /* Noticed within seconds, loudly, in the log and in status. */
    if (!KDH_WAIT_FOR(kdh_log_contains(&d, "STORE LOST"), 10))
        fail_msg("no STORE LOST within 10 s (see %s)", d.log);
    const char *status[] = {"status", "--json", NULL};
    char *out = NULL;
    assert_int_equal(kdh_cli(&d, status, 30, &out), 0);
    if (strstr(out, "removed or replaced") == NULL)
        fail_msg("status does not say the store is gone: %s", out);
    free(out);
    /* Spending pauses: after the requests in flight, the ledger stays nearly flat (running,
     * 20 tokens a 100 ms minute make 800 in 4 s). */
    kdh_nap_ms(3000);
    int64_t c0 = consumed(&sim);
    kdh_nap_ms(4000);
    int64_t c1 = consumed(&sim);
    printf("    store removed: %lld tokens consumed in a 4 s window\n", (long long)(c1 - c0));
    assert_true(c1 - c0 <= 100);
    for (int r = SHM_ROLE_SCANNER; r < SHM_PIPELINE_ROLES; r++)
        assert_int_equal(atomic_load(&seg.layout->procs[r].restarts), 0);
    shm_segment_detach(&seg);
    kdh_daemon_stop(&d);
    kdh_sim_stop(&sim);
}

/* ---- 7. readers do not write; what is not a kdeals store is refused -------------------------- */

static void test_readers_refuse_what_is_not_a_kdeals_store(void **state)
{
    (void)state;
    struct box b;
    box_make(&b, NULL);
    /* Another program's LMDB environment. */
    assert_int_equal(mkdir(b.store, 0700), 0);
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    assert_int_equal(mdb_env_create(&env), 0);
    mdb_env_set_maxdbs(env, 4);
    assert_int_equal(mdb_env_open(env, b.store, 0, 0600), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, "theirs", MDB_CREATE, &dbi), 0);
    MDB_val k = {3, "key"}, v = {5, "value"};
    assert_int_equal(mdb_put(txn, dbi, &k, &v, 0), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
    char data[800], out[8192];
    snprintf(data, sizeof(data), "%s/data.mdb", b.store);
    size_t before_len = 0, after_len = 0;
    char *before = kd_read_file(data, &before_len);

    assert_int_equal(sh(out, sizeof(out), KDEALS " deals -c %s", b.conf), 1);
    if (strstr(out, "not a kdeals store") == NULL)
        fail_msg("deals on another program's LMDB file: %s", out);
    sh(out, sizeof(out), KDEALS " status -c %s", b.conf);
    assert_non_null(strstr(out, "not a kdeals store"));
    char *after = kd_read_file(data, &after_len);
    assert_int_equal(before_len, after_len);
    assert_memory_equal(before, after, before_len); /* nothing written in it */
    free(before);
    free(after);
    assert_int_equal(mdb_env_create(&env), 0);
    mdb_env_set_maxdbs(env, 12);
    assert_int_equal(mdb_env_open(env, b.store, MDB_RDONLY, 0600), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, "meta", 0, &dbi), MDB_NOTFOUND);
    mdb_txn_abort(txn);
    mdb_env_close(env);
    /* The daemon refuses it too, at once. */
    assert_int_equal(sh(out, sizeof(out), KDEALS " run -c %s", b.conf), 2);
    assert_true(file_contains(b.log, "not a kdeals store"));

    /* An empty data.mdb is not a new store. */
    snprintf(out, sizeof(out), "rm -rf '%s' && mkdir '%s' && : > '%s'", b.store, b.store, data);
    assert_int_equal(system(out), 0);
    assert_int_equal(sh(out, sizeof(out), KDEALS " deals -c %s", b.conf), 1);
    assert_non_null(strstr(out, "empty"));
    int rc = sh(out, sizeof(out), KDEALS " run -c %s", b.conf);
    if (rc != 2)
        fail_msg("run on an empty data.mdb: %d %s (see %s)", rc, out, b.log);
    struct stat st;
    assert_int_equal(stat(data, &st), 0);
    assert_int_equal(st.st_size, 0);
}

/* ---- 8. a reader that died mid-read -----------------------------------------------------------
 */

static int reader_listed(const char *store, pid_t pid)
{
    char out[16384], needle[32];
    sh(out, sizeof(out), "mdb_stat -r '%s'", store);
    snprintf(needle, sizeof(needle), " %d ", (int)pid);
    return strstr(out, needle) != NULL;
}

static void test_dead_readers_slots_are_cleared(void **state)
{
    (void)state;
    if (access("/usr/bin/mdb_stat", X_OK) != 0)
        kd_test_skip("mdb_stat (lmdb-utils) not installed");
    kd_test_set_timeout(90);
    struct box b;
    box_make(&b, NULL);
    run_daemon(&b, KDEALS, -1);
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t reader = fork();
    if (reader == 0) {
        MDB_env *env;
        MDB_txn *txn;
        if (mdb_env_create(&env) != 0 || mdb_env_set_maxdbs(env, 12) != 0 ||
            mdb_env_open(env, b.store, MDB_RDONLY, 0600) != 0 ||
            mdb_txn_begin(env, NULL, MDB_RDONLY, &txn) != 0)
            _exit(3);
        char ok = 1;
        if (write(fds[1], &ok, 1) != 1)
            _exit(4);
        pause(); /* killed mid-read: its slot pins a snapshot */
        _exit(0);
    }
    char ok;
    assert_int_equal(read(fds[0], &ok, 1), 1);
    assert_true(reader_listed(b.store, reader));
    kill(reader, SIGKILL);
    waitpid(reader, NULL, 0);
    assert_true(reader_listed(b.store, reader));
    /* Checked periodically by the running daemon. */
    if (!KDH_WAIT_FOR(!reader_listed(b.store, reader), 20))
        fail_msg("the dead reader's slot stays taken after 20 s (see %s)", b.log);
    assert_int_equal(stop_daemon(&b), 0);
}

/* ---- 9. deals when its read transaction cannot begin ------------------------------------------
 */

static void test_deals_when_no_read_transaction_can_begin(void **state)
{
    (void)state;
    struct box b;
    box_make(&b, NULL);
    /* The store's reader table sized 2 (by its first opener, us), and both slots taken. */
    struct st_options so = {.path = b.store, .map_size_bytes = 16u << 20, .max_readers = 2};
    struct st_env *env;
    char err[512], out[4096];
    assert_int_equal(st_open(&so, &env, err, sizeof(err)), 0);
    struct st_txn *t1, *t2;
    assert_int_equal(st_read_begin(env, &t1), 0);
    assert_int_equal(st_read_begin(env, &t2), 0);
    int rc = sh(out, sizeof(out), KDEALS " deals -c %s", b.conf);
    if (rc != 1)
        fail_msg("deals with every reader slot taken: exit %d: %s", rc, out);
    assert_non_null(strstr(out, "reader slots full"));
    rc = sh(out, sizeof(out), KDEALS " status -c %s", b.conf);
    assert_true(rc == 1);
    assert_non_null(strstr(out, "reader slots full"));
    st_read_end(t2);
    st_read_end(t1);
    st_close(env);
    assert_int_equal(sh(out, sizeof(out), KDEALS " deals -c %s", b.conf), 0);
}

/* ---- 10. relative paths, daemonised, reload ----------------------------------------------------
 */

static void test_relative_config_daemonised_reloads(void **state)
{
    (void)state;
    kd_test_set_timeout(90);
    struct box b;
    box_make(&b, NULL);
    /* A store path of 400 bytes, relative to the config's folder. */
    char deep[512] = "", mk[1200];
    size_t n = 0;
    while (n < 390) {
        n += (size_t)snprintf(deep + n, sizeof(deep) - n, "%sd%03zu-%s", n ? "/" : "", n,
                              "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJ");
    }
    deep[400] = '\0';
    if (deep[399] == '/')
        deep[399] = 'x';
    snprintf(mk, sizeof(mk), "cd '%s' && mkdir -p \"$(dirname '%s')\"", b.dir, deep);
    assert_int_equal(system(mk), 0);
    FILE *f = fopen(b.conf, "w");
    fprintf(f,
            "[daemon]\ninstance = %s\nrun_dir = run\nlog_file = kdeals.log\nstop_timeout = 10s\n"
            "[store]\npath = %s\nmap_size_mb = 16\n",
            b.inst, deep);
    fclose(f);
    int root_log = access("/kdeals.log", F_OK) == 0;
    char out[8192];
    int rc = sh(out, sizeof(out), "cd '%s' && " KDEALS " start -c kdeals.conf --wait", b.dir);
    if (rc != 0)
        fail_msg("start from the config's folder: %d %s", rc, out);
    assert_int_equal(sh(out, sizeof(out), "cd '%s' && " KDEALS " reload -c kdeals.conf", b.dir), 0);
    assert_non_null(strstr(out, "applied"));
    assert_true(file_contains(b.log, "reload applied"));
    assert_int_equal(access("/kdeals.log", F_OK) == 0, root_log);
    char data[1200];
    snprintf(data, sizeof(data), "%s/%s/data.mdb", b.dir, deep);
    assert_true(KDH_WAIT_FOR(access(data, F_OK) == 0, 10));
    assert_int_equal(sh(out, sizeof(out), "cd / && " KDEALS " status -c '%s'", b.conf), 0);
    assert_int_equal(sh(out, sizeof(out), "cd '%s' && " KDEALS " stop -c kdeals.conf", b.dir), 0);

    /* A relative --run-dir is the start folder's. */
    rc = sh(out, sizeof(out),
            "cd '%s' && " KDEALS " start -c kdeals.conf --run-dir run2 --instance %s-2 --wait",
            b.dir, b.inst);
    if (rc != 0)
        fail_msg("start with a relative --run-dir: %d %s", rc, out);
    char status[800];
    snprintf(status, sizeof(status), "%s/run2/%s-2.status", b.dir, b.inst);
    assert_int_equal(access(status, F_OK), 0);
    assert_int_equal(sh(out, sizeof(out),
                        "cd '%s' && " KDEALS " stop -c kdeals.conf --run-dir run2 "
                        "--instance %s-2",
                        b.dir, b.inst),
                     0);
}

/* ---- 11. a zombie supervisor, a dead one's pid reused ------------------------------------------
 */

static void test_start_after_zombie_or_reused_pid_supervisor(void **state)
{
    (void)state;
    kd_test_set_timeout(90);
    /* We are the container's PID 1 that never reaps: the daemon `start` orphans is ours. */
    assert_int_equal(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
    struct box b;
    box_make(&b, NULL);
    char out[8192];
    assert_int_equal(sh(out, sizeof(out), KDEALS " start -c %s --wait", b.conf), 0);
    pid_t first = (pid_t)status_pid(&b);
    assert_true(first > 0);
    kill(first, SIGKILL);
    assert_true(KDH_WAIT_FOR(proc_state(first) == 'Z', 10)); /* never reaped */
    int rc = sh(out, sizeof(out), KDEALS " start -c %s --wait", b.conf);
    if (rc != 0)
        fail_msg("start after a zombie supervisor: %d %s", rc, out);
    pid_t second = (pid_t)status_pid(&b);
    assert_true(second > 0 && second != first);
    assert_int_equal(proc_state(first), 'Z');

    /* Killed again, and this time its pid belongs to a live process (ours, started long
     * before): still dead, the leftover is replaced. */
    struct shm_segment rw;
    char err[512];
    assert_int_equal(shm_segment_attach(&rw, b.inst, SHM_READ_WRITE, err, sizeof(err)), 0);
    kill(second, SIGKILL);
    waitpid(second, NULL, 0);
    rw.layout->header.supervisor_pid = getpid();
    shm_segment_detach(&rw);
    rc = sh(out, sizeof(out), KDEALS " start -c %s --wait", b.conf);
    if (rc != 0)
        fail_msg("start after a supervisor whose pid is reused: %d %s", rc, out);
    assert_int_equal(sh(out, sizeof(out), KDEALS " stop -c %s", b.conf), 0);
    assert_int_equal(kill(getpid(), 0), 0);
}

/* ---- 12. workers from the running image
 * ---------------------------------------------------------- */

static void test_workers_restart_from_the_running_image(void **state)
{
    (void)state;
    kd_test_set_timeout(90);
    struct box b;
    box_make(&b, NULL);
    char copy[800], other[800], cmd[2000];
    snprintf(copy, sizeof(copy), "%s/kdeals-copy", b.dir);
    snprintf(other, sizeof(other), "%s/other", b.dir);
    snprintf(cmd, sizeof(cmd), "cp '%s' '%s' && cp /bin/false '%s'", KDEALS, copy, other);
    assert_int_equal(system(cmd), 0);
    run_daemon(&b, copy, -1);
    struct shm_segment seg;
    attach_ro(&b, &seg);
    /* An upgrade replaced the binary on disk (another build that would refuse this
     * segment; here one that fails at once): a worker that dies is restarted as before. */
    assert_int_equal(rename(other, copy), 0);
    int64_t old = atomic_load(&seg.layout->procs[SHM_ROLE_COMMITTER].pid);
    kill((pid_t)old, SIGKILL);
    if (!KDH_WAIT_FOR(restarted(&seg, SHM_ROLE_COMMITTER, old), 15))
        fail_msg("the committer was not restarted from the running image (see %s)", b.log);
    /* The binary removed: the same. */
    assert_int_equal(unlink(copy), 0);
    old = atomic_load(&seg.layout->procs[SHM_ROLE_UPDATER].pid);
    kill((pid_t)old, SIGKILL);
    if (!KDH_WAIT_FOR(restarted(&seg, SHM_ROLE_UPDATER, old), 15))
        fail_msg("the updater was not restarted with its binary removed (see %s)", b.log);
    assert_true(status_running(&b, NULL));
    shm_segment_detach(&seg);
    assert_int_equal(stop_daemon(&b), 0);
}

/* ---- 13. the key file: a FIFO; check-config as strict as start
 * ------------------------------------ */

static void test_key_file_fifo_and_check_config(void **state)
{
    (void)state;
    kd_test_set_timeout(60);
    struct box b;
    char extra[1000], fifo[800], out[8192];
    box_make(&b, NULL);
    snprintf(fifo, sizeof(fifo), "%s/key", b.dir);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    snprintf(extra, sizeof(extra), "[keepa]\nkey_file = %s\n", fifo);
    FILE *f = fopen(b.conf, "a");
    fputs(extra, f);
    fclose(f);
    /* start fails at once with the reason (it blocked forever, status saying "not running"). */
    int rc = sh(out, sizeof(out), "timeout 20 " KDEALS " start -c %s --wait --timeout 15", b.conf);
    if (rc != 2)
        fail_msg("start with a FIFO as key_file: %d %s", rc, out);
    assert_non_null(strstr(out, "not a regular file"));
    assert_int_equal(sh(out, sizeof(out), KDEALS " check-config -c %s", b.conf), 2);
    assert_non_null(strstr(out, "not a regular file"));

    /* A key file others may read: check-config refuses it as start does. */
    unlink(fifo);
    f = fopen(fifo, "w");
    fputs("SomeKey0123456789\n", f);
    fclose(f);
    chmod(fifo, 0644);
    assert_int_equal(sh(out, sizeof(out), KDEALS " check-config -c %s", b.conf), 2);
    assert_non_null(strstr(out, "chmod 600"));
    chmod(fifo, 0600);
    assert_int_equal(sh(out, sizeof(out), KDEALS " check-config -c %s", b.conf), 0);

    /* A key inline in a config others may read: an error, not a warning. */
    f = fopen(b.conf, "w");
    fprintf(f, "[daemon]\ninstance = %s\nrun_dir = %s\n[keepa]\nkey = InlineKey0123456789\n",
            b.inst, b.run);
    fclose(f);
    chmod(b.conf, 0644);
    assert_int_equal(sh(out, sizeof(out), KDEALS " check-config -c %s", b.conf), 2);
    assert_non_null(strstr(out, "chmod 600"));
    assert_null(strstr(out, "InlineKey0123456789"));
    assert_int_equal(sh(out, sizeof(out), KDEALS " start -c %s --wait --timeout 10", b.conf), 2);
}

/* ---- 14. the segment or the status file lost under a running daemon ----------------------------
 */

static void test_segment_and_status_file_lost_under_the_daemon(void **state)
{
    (void)state;
    kd_test_set_timeout(90);
    struct box b;
    box_make(&b, NULL);
    run_daemon(&b, KDEALS, -1);
    struct shm_segment seg;
    attach_ro(&b, &seg); /* kept: the name goes away below */
    char name[128], out[8192];
    snprintf(name, sizeof(name), "/kdeals-%s", b.inst);
    assert_int_equal(shm_unlink(name), 0);
    if (!KDH_WAIT_FOR(file_contains(b.log, "was removed under the running daemon"), 5))
        fail_msg("the supervisor did not report the removed segment (see %s)", b.log);
    /* The commands agree: it runs, its segment is gone. */
    assert_int_equal(sh(out, sizeof(out), KDEALS " status -c %s", b.conf), 0);
    assert_non_null(strstr(out, "supervisor pid"));
    assert_non_null(strstr(out, "not running (no shared memory"));
    assert_non_null(strstr(out, "the daemon runs"));
    assert_int_equal(sh(out, sizeof(out), KDEALS " stat -1 -c %s", b.conf), 1);
    assert_non_null(strstr(out, "runs (supervisor pid"));
    /* The next worker death does not stop the daemon. */
    int64_t old = atomic_load(&seg.layout->procs[SHM_ROLE_SCANNER].pid);
    kill((pid_t)old, SIGKILL);
    if (!KDH_WAIT_FOR(restarted(&seg, SHM_ROLE_SCANNER, old), 15))
        fail_msg("the scanner was not restarted without the segment's name (see %s)", b.log);
    assert_int_equal(waitpid(b.pid, NULL, WNOHANG), 0);

    /* The status file truncated: written again; stop still works. */
    char path[800];
    snprintf(path, sizeof(path), "%s/%s.status", b.run, b.inst);
    assert_int_equal(truncate(path, 0), 0);
    assert_true(KDH_WAIT_FOR(file_contains(path, "pid="), 5));
    assert_int_equal(truncate(path, 0), 0);
    assert_int_equal(sh(out, sizeof(out), KDEALS " stop -c %s", b.conf), 0);
    int status = 0;
    assert_true(KDH_WAIT_FOR(waitpid(b.pid, &status, WNOHANG) == b.pid, 20));
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    b.pid = 0;
    shm_segment_detach(&seg);
}

/* ---- 16. SIGPIPE, inherited descriptors, permission denied, gauges
 * ------------------------------- */

static void test_closed_log_pipe_does_not_kill_the_daemon(void **state)
{
    (void)state;
    struct box b;
    box_make(&b, NULL);
    /* The log goes to stderr, a pipe whose reader goes away. */
    FILE *f = fopen(b.conf, "w");
    fprintf(f, "[daemon]\ninstance = %s\nrun_dir = %s\n[store]\npath = %s\nmap_size_mb = 16\n",
            b.inst, b.run, b.store);
    fclose(f);
    int p[2];
    assert_int_equal(pipe(p), 0);
    pid_t pid = fork();
    if (pid == 0) {
        close(p[0]);
        dup2(p[1], 2);
        execl(KDEALS, KDEALS, "run", "-c", b.conf, (char *)NULL);
        _exit(127);
    }
    close(p[1]);
    b.pid = pid;
    assert_true(KDH_WAIT_FOR(status_running(&b, NULL), 20));
    close(p[0]);
    /* Logging now meets EPIPE: a reload, a worker's death and its restart all log. */
    kill(pid, SIGHUP);
    struct shm_segment seg;
    attach_ro(&b, &seg);
    int64_t old = atomic_load(&seg.layout->procs[SHM_ROLE_UPDATER].pid);
    kill((pid_t)old, SIGKILL);
    assert_true(KDH_WAIT_FOR(restarted(&seg, SHM_ROLE_UPDATER, old), 15));
    shm_segment_detach(&seg);
    assert_int_equal(waitpid(pid, NULL, WNOHANG), 0);
    assert_int_equal(stop_daemon(&b), 0);
    char shm[160];
    snprintf(shm, sizeof(shm), "/dev/shm/kdeals-%s", b.inst);
    assert_int_equal(access(shm, F_OK), -1); /* cleaned up, not left behind */
}

static void test_workers_inherit_no_stray_descriptor(void **state)
{
    (void)state;
    need_root("reading the workers' /proc/PID/fd (they are not dumpable)");
    struct box b;
    box_make(&b, NULL);
    char marker[800];
    snprintf(marker, sizeof(marker), "%s/marker", b.dir);
    int fd = open(marker, O_RDWR | O_CREAT, 0600); /* not close-on-exec */
    assert_true(fd >= 0);
    assert_int_equal(dup2(fd, 40), 40);
    close(fd);
    run_daemon(&b, KDEALS, -1);
    close(40);
    struct shm_segment seg;
    attach_ro(&b, &seg);
    for (int r = SHM_ROLE_SCANNER; r < SHM_PIPELINE_ROLES; r++) {
        int64_t pid = atomic_load(&seg.layout->procs[r].pid);
        assert_true(pid > 0);
        for (int n = 0; n < 256; n++) {
            char link[64], target[1024];
            snprintf(link, sizeof(link), "/proc/%lld/fd/%d", (long long)pid, n);
            ssize_t len = readlink(link, target, sizeof(target) - 1);
            if (len <= 0)
                continue;
            target[len] = '\0';
            if (strcmp(target, marker) == 0)
                fail_msg("%s holds the inherited fd %d (%s)", shm_role_name((enum shm_role)r), n,
                         target);
        }
    }
    shm_segment_detach(&seg);
    assert_int_equal(stop_daemon(&b), 0);
}

static void test_permission_denied_is_said_as_such(void **state)
{
    (void)state;
    need_root("a user who may not read the run folder");
    struct box b;
    box_make(&b, NULL);
    assert_int_equal(chmod(kd_test_tmpdir(), 0755), 0);
    assert_int_equal(chmod(b.dir, 0755), 0);
    run_daemon(&b, KDEALS, -1);
    const char *cmds[] = {"status", "stop", "reload"};
    for (size_t i = 0; i < 3; i++) {
        char out[4096] = "";
        int p[2];
        assert_int_equal(pipe(p), 0);
        pid_t pid = fork();
        if (pid == 0) {
            dup2(p[1], 1);
            dup2(p[1], 2);
            if (chdir("/") != 0 || setresgid(OTHER_UID, OTHER_UID, OTHER_UID) != 0 ||
                setresuid(OTHER_UID, OTHER_UID, OTHER_UID) != 0)
                _exit(3);
            execl(KDEALS, KDEALS, cmds[i], "--run-dir", b.run, "--instance", b.inst, (char *)NULL);
            _exit(127);
        }
        close(p[1]);
        ssize_t n = read(p[0], out, sizeof(out) - 1);
        out[n > 0 ? n : 0] = '\0';
        close(p[0]);
        int status;
        waitpid(pid, &status, 0);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) != 0);
        if (strstr(out, "Permission denied") == NULL || strstr(out, "not running") != NULL)
            fail_msg("kdeals %s as another user: %s", cmds[i], out);
    }
    assert_true(status_running(&b, NULL));
    assert_int_equal(stop_daemon(&b), 0);
}

static void test_stat_shows_a_gauge_once_not_summed(void **state)
{
    (void)state;
    struct kdh_sim sim;
    const char *args[] = {"--keys", KEY, "--minute-ms", "100", "--refill-rate", "5", NULL};
    kdh_sim_start(&sim, args);
    struct kdh_daemon d;
    kdh_daemon_config(&d, &sim, KEY, 100, NULL);
    kdh_daemon_start(&d);
    struct shm_segment seg;
    kdh_daemon_attach(&d, &seg);
    /* Every worker publishes the shared bucket's refill rate. */
    int all =
        KDH_WAIT_FOR(({
                         int k = 0;
                         for (int r = SHM_ROLE_SCANNER; r < SHM_PIPELINE_ROLES; r++)
                             k += shm_counter_get(&seg.layout->counters[r], SHM_C_refill_rate) == 5;
                         k == 3;
                     }),
                     30);
    if (!all)
        fail_msg("the workers did not all publish refill_rate 5 (see %s)", d.log);
    const char *stat[] = {"stat", "-1", NULL};
    char *out = NULL;
    assert_int_equal(kdh_cli(&d, stat, 30, &out), 0);
    const char *line = strstr(out, "\nrefill_rate ");
    assert_non_null(line);
    long long v = -1;
    assert_int_equal(sscanf(line, "\nrefill_rate %lld", &v), 1);
    if (v != 5)
        fail_msg("stat shows refill_rate %lld for a rate of 5:\n%s", v, out);
    free(out);
    shm_segment_detach(&seg);
    kdh_daemon_stop(&d);
    kdh_sim_stop(&sim);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_run_folder_of_another_user_is_refused),
        cmocka_unit_test(test_stop_signals_only_a_proven_supervisor),
        cmocka_unit_test(test_squatted_segment_names_its_owner),
        cmocka_unit_test(test_status_shows_server_text_safely_and_as_json),
        cmocka_unit_test(test_instance_flag_is_validated),
        cmocka_unit_test(test_truncated_store_is_an_error_not_a_crash_loop),
        cmocka_unit_test(test_store_removed_is_noticed_and_spending_pauses),
        cmocka_unit_test(test_readers_refuse_what_is_not_a_kdeals_store),
        cmocka_unit_test(test_dead_readers_slots_are_cleared),
        cmocka_unit_test(test_deals_when_no_read_transaction_can_begin),
        cmocka_unit_test(test_relative_config_daemonised_reloads),
        cmocka_unit_test(test_start_after_zombie_or_reused_pid_supervisor),
        cmocka_unit_test(test_workers_restart_from_the_running_image),
        cmocka_unit_test(test_key_file_fifo_and_check_config),
        cmocka_unit_test(test_segment_and_status_file_lost_under_the_daemon),
        cmocka_unit_test(test_closed_log_pipe_does_not_kill_the_daemon),
        cmocka_unit_test(test_workers_inherit_no_stray_descriptor),
        cmocka_unit_test(test_permission_denied_is_said_as_such),
        cmocka_unit_test(test_stat_shows_a_gauge_once_not_summed),
    };
    return KD_RUN_TESTS(tests, argc, argv);
}
