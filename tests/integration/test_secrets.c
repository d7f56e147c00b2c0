/*
 * test_secrets.c: where the Keepa API key must never appear.
 *
 * A distinctive key ("SECRETkey-" + 40 random hex digits) is the only one kdeals-sim
 * accepts. The daemon runs with debug logging against the simulator with 500s and connection
 * resets on, so error paths (which are the ones that tend to print URLs) are exercised, and
 * one worker is killed with SIGSEGV while RLIMIT_CORE is unlimited. The test asserts:
 *
 *   * a key file readable by others is refused before anything starts, with a clear message
 *     that does not contain the key;
 *   * while running: no byte of the shm segment (read whole), no status file, no
 *     `kdeals status --json` / `kdeals stat --json` output, no /proc/PID/cmdline or
 *     /proc/PID/environ of the supervisor or of a worker holds the key; the segment and the
 *     status file are mode 0600;
 *   * the SIGSEGV'd worker leaves no core file. core_pattern is global, so the test does not
 *     touch it: when it is a plain file name and a control process (an exec'd `sleep`, which
 *     holds no key) does leave a core in the same conditions, the absence of the worker's core
 *     shows it was non-dumpable (PR_SET_DUMPABLE 0); otherwise only the absence is asserted
 *     and the test says the check was weaker;
 *   * after the stop: no file the daemon wrote (log with the crash lines, status, store, CLI
 *     outputs) contains the key, nor its first or last 12 hex digits (a half-redacted key).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kd_harness.h"
#include "kd_test.h"
#include "shm/counters.h"

#define MINUTE_MS 100

static char key[64];   /* SECRETkey-<40 hex> */
static char head[16];  /* first 12 hex digits */
static char tail_[16]; /* last 12 hex digits */

static void make_key(void)
{
    unsigned char raw[20];
    int fd = open("/dev/urandom", O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(read(fd, raw, sizeof(raw)), (ssize_t)sizeof(raw));
    close(fd);
    char hex[41];
    for (int i = 0; i < 20; i++)
        snprintf(hex + 2 * i, 3, "%02x", raw[i]);
    snprintf(key, sizeof(key), "SECRETkey-%s", hex);
    memcpy(head, hex, 12);
    head[12] = '\0';
    memcpy(tail_, hex + 28, 12);
    tail_[12] = '\0';
}

/* The name of the first of the key's forms found in BUF, or NULL. */
static const char *leak_in(const char *buf, size_t len)
{
    if (buf == NULL)
        return NULL;
    if (memmem(buf, len, key, strlen(key)) != NULL)
        return "the key";
    if (memmem(buf, len, head, strlen(head)) != NULL)
        return "the key's first 12 hex digits";
    if (memmem(buf, len, tail_, strlen(tail_)) != NULL)
        return "the key's last 12 hex digits";
    return NULL;
}

static void assert_no_key_in_file(const char *path, int must_exist)
{
    size_t len = 0;
    char *buf = kd_read_file(path, &len);
    if (buf == NULL) {
        if (must_exist)
            fail_msg("cannot read %s: %s", path, strerror(errno));
        return;
    }
    const char *what = leak_in(buf, len);
    free(buf);
    if (what != NULL)
        fail_msg("%s holds %s", path, what);
}

static void assert_no_key_in_text(const char *what_text, const char *text)
{
    const char *what = leak_in(text, strlen(text));
    if (what != NULL)
        fail_msg("%s holds %s: %s", what_text, what, text);
}

/* Every regular file under DIR except SKIP (the key file itself). Returns the count. */
static unsigned scan_tree(const char *dir, const char *skip)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *e;
    unsigned n = 0;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char path[1024];
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        struct stat st;
        if (lstat(path, &st) != 0)
            continue;
        if (S_ISDIR(st.st_mode))
            n += scan_tree(path, skip);
        else if (S_ISREG(st.st_mode) && strcmp(path, skip) != 0) {
            assert_no_key_in_file(path, 1);
            n++;
        }
    }
    closedir(d);
    return n;
}

static void assert_proc_clean(pid_t pid, const char *who)
{
    char path[64];
    const char *files[] = {"cmdline", "environ"};
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, files[i]);
        size_t len = 0;
        char *buf = kd_read_file(path, &len);
        if (buf == NULL)
            fail_msg("cannot read %s of the %s: %s", path, who, strerror(errno));
        const char *what = leak_in(buf, len);
        free(buf);
        if (what != NULL)
            fail_msg("%s of the %s holds %s", path, who, what);
    }
}

/* Number of files whose name starts with "core" in DIR. */
static unsigned count_cores(const char *dir)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return 0;
    struct dirent *e;
    unsigned n = 0;
    while ((e = readdir(d)) != NULL)
        n += strncmp(e->d_name, "core", 4) == 0;
    closedir(d);
    return n;
}

/*
 * Whether a dumpable process killed by SIGSEGV here leaves a core file in its cwd: an
 * exec'd `sleep` (it holds nothing secret) in DIR.
 */
static int cores_observable(const char *dir)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (chdir(dir) != 0)
            _exit(126);
        execl("/bin/sleep", "sleep", "30", (char *)NULL);
        _exit(127);
    }
    /* Once it runs sleep (not this test's image), its comm says so. */
    char comm_path[64];
    snprintf(comm_path, sizeof(comm_path), "/proc/%d/comm", (int)pid);
    KDH_WAIT_FOR(({
                     char *c = kd_read_file(comm_path, NULL);
                     int is = c != NULL && strncmp(c, "sleep", 5) == 0;
                     free(c);
                     is;
                 }),
                 10);
    kill(pid, SIGSEGV);
    int status = 0;
    waitpid(pid, &status, 0);
    unsigned n = count_cores(dir);
    return WIFSIGNALED(status) && WCOREDUMP(status) && n > 0;
}

static void test_key_file_readable_by_others_is_refused(void **state)
{
    (void)state;
    make_key();
    const char *args[] = {"--keys", key, "--minute-ms", "100", NULL};
    struct kdh_sim sim;
    kdh_sim_start(&sim, args);
    struct kdh_daemon d;
    kdh_daemon_config(&d, &sim, key, MINUTE_MS, "[daemon]\nlog_level = debug\n");
    char key_path[700];
    snprintf(key_path, sizeof(key_path), "%s/key", d.dir);
    assert_int_equal(chmod(key_path, 0644), 0);
    const char *run[] = {"run", NULL};
    char *out = NULL;
    int rc = kdh_cli(&d, run, 20, &out);
    /* The message goes to stderr, or to the log file once the config named one. */
    char *log = kd_read_file(d.log, NULL);
    printf("    mode 0644 key file: exit %d; stderr: %s; log: %s", rc, out, log ? log : "(none)");
    assert_true(rc > 0 && rc < 128);
    assert_true(strstr(out, "readable by others") != NULL ||
                (log != NULL && strstr(log, "readable by others") != NULL));
    assert_no_key_in_text("the refusal message", out);
    free(out);
    free(log);
    /* Nothing was started and nothing spent. */
    assert_int_equal(kdh_sim_stat(&sim, "requests", NULL), 0);
    char seg_path[128];
    snprintf(seg_path, sizeof(seg_path), "/dev/shm/kdeals-%s", d.instance);
    assert_int_equal(access(seg_path, F_OK), -1);
    scan_tree(d.dir, key_path);
    kdh_sim_stop(&sim);
}

static void test_key_never_leaks(void **state)
{
    (void)state;
    make_key();
    const char *args[] = {"--keys",      key,          "--seed",
                          "41",          "--products", "5000",
                          "--minute-ms", "100",        "--refill-rate",
                          "20",          "--faults",   "http500=0.15,reset=0.1,truncate=0.05",
                          NULL};
    struct kdh_sim sim;
    kdh_sim_start(&sim, args);
    struct kdh_daemon d;
    kdh_daemon_config(&d, &sim, key, MINUTE_MS,
                      "[daemon]\nlog_level = debug\n[scan]\npass_pause = 1s\n");
    char key_path[700];
    snprintf(key_path, sizeof(key_path), "%s/key", d.dir);
    /* Cores would land in the daemon's cwd (core_pattern is "core"-like or a pipe). */
    struct rlimit unlimited = {RLIM_INFINITY, RLIM_INFINITY};
    assert_int_equal(setrlimit(RLIMIT_CORE, &unlimited), 0);
    char control[700];
    snprintf(control, sizeof(control), "%s/control", d.dir);
    mkdir(control, 0700);
    int observable = cores_observable(control);
    char rm[800];
    snprintf(rm, sizeof(rm), "rm -rf '%s'", control);
    assert_int_equal(system(rm), 0);
    assert_int_equal(chdir(d.dir), 0);

    kdh_daemon_start(&d);
    struct shm_segment seg;
    kdh_daemon_attach(&d, &seg);
    /* Real traffic, including failed requests. */
    if (!KDH_WAIT_FOR(shm_counter_total(seg.layout, SHM_C_http_errors) >= 20 &&
                          shm_counter_total(seg.layout, SHM_C_deals_committed) >= 5,
                      120))
        fail_msg("too little traffic after 120 s (see %s)", d.log);

    /* A SIGSEGV'd worker leaves no core with the key. */
    int64_t victim = atomic_load(&seg.layout->procs[SHM_ROLE_COMMITTER].pid);
    assert_true(victim > 0);
    char cwd_link[64], cwd[700] = "";
    snprintf(cwd_link, sizeof(cwd_link), "/proc/%d/cwd", (int)victim);
    ssize_t cl = readlink(cwd_link, cwd, sizeof(cwd) - 1);
    assert_true(cl > 0);
    cwd[cl] = '\0';
    assert_int_equal(kill((pid_t)victim, SIGSEGV), 0);
    if (!KDH_WAIT_FOR(atomic_load(&seg.layout->procs[SHM_ROLE_COMMITTER].pid) != victim &&
                          atomic_load(&seg.layout->procs[SHM_ROLE_COMMITTER].pid) > 0,
                      20))
        fail_msg("the committer was not restarted after SIGSEGV (see %s)", d.log);
    assert_int_equal(count_cores(cwd), 0);
    assert_int_equal(count_cores(d.dir), 0);
    printf("    SIGSEGV to committer pid %lld (cwd %s): no core file; %s\n", (long long)victim, cwd,
           observable ? "a dumpable control process did leave one here, so the worker was "
                        "non-dumpable"
                      : "core files are not observable here (core_pattern / limits), so only "
                        "their absence is checked");

    /* The live surfaces. */
    for (int r = SHM_ROLE_SCANNER; r < SHM_PIPELINE_ROLES; r++) {
        int64_t pid = 0;
        assert_true(KDH_WAIT_FOR((pid = atomic_load(&seg.layout->procs[r].pid)) > 0, 20));
        assert_proc_clean((pid_t)pid, shm_role_name((enum shm_role)r));
    }
    assert_proc_clean(d.pid, "supervisor");
    char seg_path[128];
    snprintf(seg_path, sizeof(seg_path), "/dev/shm/kdeals-%s", d.instance);
    struct stat st;
    assert_int_equal(stat(seg_path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_no_key_in_file(seg_path, 1);
    char status_path[700];
    snprintf(status_path, sizeof(status_path), "%s/%s.status", d.run_dir, d.instance);
    assert_int_equal(stat(status_path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_no_key_in_file(status_path, 1);
    const char *status[] = {"status", "--json", NULL};
    const char *stat_json[] = {"stat", "--json", NULL};
    const char *const *cmds[] = {status, stat_json};
    for (int i = 0; i < 2; i++) {
        char *out = NULL;
        int rc = kdh_cli(&d, cmds[i], 30, &out);
        if (rc != 0)
            fail_msg("kdeals %s --json exited %d: %s", cmds[i][0], rc, out);
        assert_no_key_in_text(cmds[i][0], out);
        free(out);
    }
    int64_t errors = shm_counter_total(seg.layout, SHM_C_http_errors);
    int64_t deals = shm_counter_total(seg.layout, SHM_C_deals_committed);
    shm_segment_detach(&seg);
    assert_int_equal(kdh_daemon_stop(&d), 0);

    /* The search itself works: the key file (the one place the key belongs) is found. */
    size_t klen = 0;
    char *kbuf = kd_read_file(key_path, &klen);
    assert_non_null(kbuf);
    assert_non_null(leak_in(kbuf, klen));
    free(kbuf);
    /* The crash was reported, and nothing on disk holds the key. */
    /* (signal 11; under ASan its handler reports the SEGV and exits with status 1) */
    char died[96];
    snprintf(died, sizeof(died), "committer pid %lld died", (long long)victim);
    assert_true(kdh_log_contains(&d, died));
    unsigned files = scan_tree(d.dir, key_path);
    printf("    %lld HTTP errors, %lld deals; %u files, the segment, /proc of 4 processes and "
           "2 CLI outputs checked: no trace of the key\n",
           (long long)errors, (long long)deals, files);
    kdh_sim_stop(&sim);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key_file_readable_by_others_is_refused),
        cmocka_unit_test(test_key_never_leaks),
    };
    kd_test_set_timeout(240);
    return KD_RUN_TESTS(tests, argc, argv);
}
