/*
 * test_supervisor.c: the real `kdeals run` binary with its real worker processes.
 *
 * Every wait here is for an observable event (the status file's state, a pid in the process
 * table, a process exit), polled with a deadline; no test sleeps and hopes.
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

#include "kd_harness.h"
#include "kd_test.h"
#include "shm/segment.h"

#define KDEALS KD_BUILD_DIR "/kdeals"

/* A config whose store lives in the test's folder (the default is /var/lib/kdeals), and
 * whose workers get STOP_TIMEOUT to stop. */
static const char *test_config(const char *stop_timeout)
{
    static char path[512];
    snprintf(path, sizeof(path), "%s/kdeals.conf", kd_test_tmpdir());
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "[store]\npath = %s/store\nmap_size_mb = 16\n[daemon]\nstop_timeout = %s\n",
            kd_test_tmpdir(), stop_timeout);
    fclose(f);
    return path;
}

static pid_t start_kdeals_stop(const char *instance, const char *logname, const char *stop_timeout)
{
    char log[512];
    const char *conf = test_config(stop_timeout);
    snprintf(log, sizeof(log), "%s/%s", kd_test_tmpdir(), logname);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
        dup2(fd, 2);
        execl(KDEALS, KDEALS, "run", "-c", conf, "--instance", instance, "--run-dir",
              kd_test_tmpdir(), (char *)NULL);
        _exit(127);
    }
    return pid;
}

static pid_t start_kdeals(const char *instance, const char *logname)
{
    return start_kdeals_stop(instance, logname, "30s");
}

static int status_is(const char *instance, const char *state)
{
    struct shm_status st;
    return shm_status_read(kd_test_tmpdir(), instance, &st) == 0 && strcmp(st.state, state) == 0;
}

/* The status file names supervisor PID and says it is running (a dead one's file may too). */
static int running_as(const char *instance, pid_t pid)
{
    struct shm_status st;
    return shm_status_read(kd_test_tmpdir(), instance, &st) == 0 &&
           strcmp(st.state, "running") == 0 && st.pid == pid && st.locked;
}

static int attach(struct shm_segment *seg, const char *instance)
{
    char err[256];
    return shm_segment_attach(seg, instance, SHM_READ_ONLY, err, sizeof(err));
}

static int exited(pid_t pid, int *status)
{
    return waitpid(pid, status, WNOHANG) == pid;
}

static int alive(int64_t pid)
{
    return pid > 0 && kill((pid_t)pid, 0) == 0;
}

static void read_file_into(const char *path, char *buf, size_t len)
{
    buf[0] = '\0';
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return;
    size_t n = fread(buf, 1, len - 1, f);
    buf[n] = '\0';
    fclose(f);
}

static void test_start_restart_refuse_stop(void **state)
{
    (void)state;
    const char *inst = kd_test_instance();
    pid_t sup = start_kdeals(inst, "sup.log");
    assert_true(KDH_WAIT_FOR(running_as(inst, sup), 10));

    struct shm_segment seg;
    assert_int_equal(attach(&seg, inst), 0);
    struct shm_layout *l = seg.layout;
    assert_int_equal(l->header.supervisor_pid, sup);
    int64_t pids[SHM_ROLE_COUNT];
    for (int r = SHM_ROLE_SCANNER; r < SHM_PIPELINE_ROLES; r++) {
        pids[r] = atomic_load(&l->procs[r].pid);
        assert_true(alive(pids[r]));
        assert_int_equal(atomic_load(&l->procs[r].state), SHM_PROC_READY);
        /* The process title names the role; the command line holds no secret. */
        char path[64], cmdline[256];
        snprintf(path, sizeof(path), "/proc/%lld/cmdline", (long long)pids[r]);
        read_file_into(path, cmdline, sizeof(cmdline));
        char want[64];
        snprintf(want, sizeof(want), "kdeals: %s", shm_role_name((enum shm_role)r));
        assert_string_equal(cmdline, want);
    }

    /* kill -9 of one worker: only that one is restarted. */
    kill((pid_t)pids[SHM_ROLE_COMMITTER], SIGKILL);
    assert_true(KDH_WAIT_FOR(atomic_load(&l->procs[SHM_ROLE_COMMITTER].restarts) == 1 &&
                                 atomic_load(&l->procs[SHM_ROLE_COMMITTER].state) == SHM_PROC_READY,
                             10));
    int64_t new_committer = atomic_load(&l->procs[SHM_ROLE_COMMITTER].pid);
    assert_true(new_committer != pids[SHM_ROLE_COMMITTER] && alive(new_committer));
    assert_int_equal(atomic_load(&l->procs[SHM_ROLE_COMMITTER].last_exit_status), SIGKILL);
    assert_int_equal(atomic_load(&l->procs[SHM_ROLE_SCANNER].pid), pids[SHM_ROLE_SCANNER]);
    assert_int_equal(atomic_load(&l->procs[SHM_ROLE_UPDATER].pid), pids[SHM_ROLE_UPDATER]);
    assert_int_equal(atomic_load(&l->procs[SHM_ROLE_UPDATER].restarts), 0);

    /* A second supervisor on the same instance is refused and says why. */
    pid_t second = start_kdeals(inst, "second.log");
    int status;
    assert_true(KDH_WAIT_FOR(exited(second, &status), 10));
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 1);
    char log[1024], path[512];
    snprintf(path, sizeof(path), "%s/second.log", kd_test_tmpdir());
    read_file_into(path, log, sizeof(log));
    assert_non_null(strstr(log, "already running"));

    /* Graceful stop: exit 0, workers gone, segment removed, status "stopped". */
    kill(sup, SIGTERM);
    assert_true(KDH_WAIT_FOR(exited(sup, &status), 15));
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_false(alive(new_committer));
    assert_false(alive(pids[SHM_ROLE_SCANNER]));
    assert_int_equal(shm_segment_check(&seg), -ESTALE);
    assert_true(status_is(inst, "stopped"));
    /* Every worker exited cleanly (status 0; under ASan a leak would make it non-zero). */
    for (int r = SHM_ROLE_SCANNER; r < SHM_PIPELINE_ROLES; r++)
        assert_int_equal(atomic_load(&l->procs[r].last_exit_status), 0);
    shm_segment_detach(&seg);
}

static void test_supervisor_killed_workers_follow_and_restart_recovers(void **state)
{
    (void)state;
    const char *inst = kd_test_instance();
    pid_t sup = start_kdeals(inst, "a.log");
    assert_true(KDH_WAIT_FOR(running_as(inst, sup), 10));
    struct shm_segment seg;
    assert_int_equal(attach(&seg, inst), 0);
    uint64_t gen = seg.generation;
    int64_t workers[3];
    for (int r = 1; r < SHM_PIPELINE_ROLES; r++)
        workers[r - 1] = atomic_load(&seg.layout->procs[r].pid);

    kill(sup, SIGKILL);
    int status;
    waitpid(sup, &status, 0);
    /* Workers exit by themselves when the supervisor dies. */
    for (int i = 0; i < 3; i++)
        assert_true(KDH_WAIT_FOR(!alive(workers[i]), 10));

    /* The next start replaces the stale segment; an old reader notices. */
    struct shm_status stale;
    assert_int_equal(shm_status_read(kd_test_tmpdir(), inst, &stale), 0);
    assert_false(stale.locked); /* the dead supervisor's lock went with it */
    pid_t sup2 = start_kdeals(inst, "b.log");
    assert_true(KDH_WAIT_FOR(running_as(inst, sup2), 10));
    assert_int_equal(shm_segment_check(&seg), -ESTALE);
    shm_segment_detach(&seg);
    assert_int_equal(attach(&seg, inst), 0);
    assert_int_equal(seg.generation, gen + 1);
    assert_int_equal(seg.layout->header.supervisor_pid, sup2);
    shm_segment_detach(&seg);
    kill(sup2, SIGTERM);
    assert_true(KDH_WAIT_FOR(exited(sup2, &status), 15));
    assert_int_equal(WEXITSTATUS(status), 0);
}

static void test_restart_intensity_stops_daemon(void **state)
{
    (void)state;
    const char *inst = kd_test_instance();
    pid_t sup = start_kdeals(inst, "c.log");
    assert_true(KDH_WAIT_FOR(running_as(inst, sup), 10));
    struct shm_segment seg;
    assert_int_equal(attach(&seg, inst), 0);
    int status = 0, done = 0;
    /* Kill the updater every time it comes back: the sixth death within 60 s ends it. */
    for (int kills = 0; kills < 10 && !done; kills++) {
        int64_t pid = 0;
        if (!KDH_WAIT_FOR((pid = atomic_load(&seg.layout->procs[SHM_ROLE_UPDATER].pid)) > 0 ||
                              (done = exited(sup, &status)),
                          20))
            fail_msg("updater did not come back");
        if (done)
            break;
        kill((pid_t)pid, SIGKILL);
        KDH_WAIT_FOR(atomic_load(&seg.layout->procs[SHM_ROLE_UPDATER].pid) != pid ||
                         (done = exited(sup, &status)),
                     10);
    }
    if (!done)
        assert_true(KDH_WAIT_FOR(exited(sup, &status), 20));
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 1);
    char log[8192], path[512];
    snprintf(path, sizeof(path), "%s/c.log", kd_test_tmpdir());
    read_file_into(path, log, sizeof(log));
    assert_non_null(strstr(log, "stopping the daemon"));
    shm_segment_detach(&seg);
}

/*
 * A worker that does not stop cleanly makes the daemon's exit status 1: the updater is
 * stopped (SIGSTOP) so it cannot answer TERM, the stop deadline (1 s) SIGKILLs it, and the
 * supervisor says so and exits 1 instead of reporting a clean stop to systemd or a script.
 */
static void test_unclean_worker_stop_exits_1(void **state)
{
    (void)state;
    const char *inst = kd_test_instance();
    pid_t sup = start_kdeals_stop(inst, "d.log", "1s");
    assert_true(KDH_WAIT_FOR(running_as(inst, sup), 10));
    struct shm_segment seg;
    assert_int_equal(attach(&seg, inst), 0);
    int64_t updater = atomic_load(&seg.layout->procs[SHM_ROLE_UPDATER].pid);
    assert_true(alive(updater));
    assert_int_equal(kill((pid_t)updater, SIGSTOP), 0);
    kill(sup, SIGTERM);
    int status;
    assert_true(KDH_WAIT_FOR(exited(sup, &status), 15));
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 1);
    assert_false(alive(updater));
    assert_int_equal(atomic_load(&seg.layout->procs[SHM_ROLE_UPDATER].last_exit_status), SIGKILL);
    assert_int_equal(atomic_load(&seg.layout->procs[SHM_ROLE_SCANNER].last_exit_status), 0);
    char log[16384], path[512];
    snprintf(path, sizeof(path), "%s/d.log", kd_test_tmpdir());
    read_file_into(path, log, sizeof(log));
    assert_non_null(strstr(log, "updater did not stop cleanly (signal 9)"));
    assert_true(status_is(inst, "stopped"));
    shm_segment_detach(&seg);
}

static void test_usage_errors(void **state)
{
    (void)state;
    int rc = system(KDEALS " run --no-such-flag 2>/dev/null");
    assert_int_equal(WEXITSTATUS(rc), 2);
    rc = system(KDEALS " frobnicate 2>/dev/null");
    assert_int_equal(WEXITSTATUS(rc), 2);
    rc = system(KDEALS " run --help >/dev/null");
    assert_int_equal(WEXITSTATUS(rc), 0);
    rc = system(KDEALS " stat --instance nosuchinstance -1 2>/dev/null");
    assert_int_equal(WEXITSTATUS(rc), 1);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_start_restart_refuse_stop),
        cmocka_unit_test(test_supervisor_killed_workers_follow_and_restart_recovers),
        cmocka_unit_test(test_restart_intensity_stops_daemon),
        cmocka_unit_test(test_unclean_worker_stop_exits_1),
        cmocka_unit_test(test_usage_errors),
    };
    return KD_RUN_TESTS(tests, argc, argv);
}
