/*
 * test_store_lock.c: one store, one instance (supervisor/storelock.h), with the real daemon.
 *
 * Two instances on one store would both run and pay twice for the same survivors. What an
 * operator relies on: a second instance pointed at a store another instance holds is refused
 * at once, and the refusal names the holder (instance and supervisor pid); the lock also
 * covers the window in which a supervisor killed with -9 leaves its workers finishing their
 * batches in flight: another instance is refused meanwhile, and the instance's own restart
 * waits for them and then starts.
 */
#include "kd_test.h"

#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/proc.h"
#include "kd_harness.h"

#define KEY       "StoreLockTestKey0123456789"
#define MINUTE_MS 100

/* Points D's config at STORE instead of its own store. */
static void use_store(struct kdh_daemon *d, const char *store)
{
    char *text = kd_read_file(d->conf, NULL);
    assert_non_null(text);
    char line[700];
    snprintf(line, sizeof(line), "path = %s\n", d->store);
    char *at = strstr(text, line);
    assert_non_null(at);
    FILE *f = fopen(d->conf, "w");
    assert_non_null(f);
    fprintf(f, "%.*spath = %s\n%s", (int)(at - text), text, store, at + strlen(line));
    fclose(f);
    free(text);
    snprintf(d->store, sizeof(d->store), "%s", store);
}

/* Running, not a zombie (whoever reaps orphans here may be slow to). */
static bool alive(int64_t pid)
{
    return kd_pid_running(pid);
}

static void test_second_instance_on_a_held_store_is_refused(void **state)
{
    (void)state;
    const char *args[] = {"--keys", KEY, "--minute-ms", "100", "--refill-rate", "20", NULL};
    struct kdh_sim sim;
    kdh_sim_start(&sim, args);
    struct kdh_daemon a, b;
    kdh_daemon_config(&a, &sim, KEY, MINUTE_MS, NULL);
    kdh_daemon_config(&b, &sim, KEY, MINUTE_MS, NULL);
    use_store(&b, a.store);
    kdh_daemon_start(&a);

    char *out = NULL;
    const char *run[] = {"run", NULL};
    int rc = kdh_cli(&b, run, 30, &out);
    printf("    second instance: exit %d: %s", rc, out);
    assert_int_equal(rc, 1);
    char holder[200];
    snprintf(holder, sizeof(holder), "held by instance '%s' (supervisor pid %d)", a.instance,
             (int)a.pid);
    assert_non_null(strstr(out, holder));
    assert_non_null(strstr(out, a.store));
    free(out);
    /* The holder was not disturbed. */
    struct shm_status st;
    assert_int_equal(shm_status_read(a.run_dir, a.instance, &st), 0);
    assert_true(st.locked && st.pid == a.pid);
    assert_int_equal(kdh_daemon_stop(&a), 0);

    /* Free again: the other instance starts on it. */
    kdh_daemon_start(&b);
    assert_int_equal(kdh_daemon_stop(&b), 0);
    kdh_sim_stop(&sim);
}

/* Lets the held WORKERS go (SIGCONT) once D's log says its start waits for them, or after
 * 30 s whatever it says; run in a child while the start blocks. Never returns. */
static void release_when_waited_for(const struct kdh_daemon *d, const int64_t *workers)
{
    for (int i = 0; i < 600; i++) {
        if (kdh_log_contains(d, "still held by the workers of the previous supervisor"))
            break;
        kdh_nap_ms(50);
    }
    for (int r = SHM_ROLE_SCANNER; r < SHM_ROLE_COUNT; r++)
        if (workers[r] > 0)
            kill((pid_t)workers[r], SIGCONT);
    _exit(0);
}

static void test_old_workers_still_stopping_hold_the_store(void **state)
{
    (void)state;
    /* Every request takes 3 s: the workers have one in flight to finish. */
    const char *args[] = {"--keys",        KEY,        "--minute-ms",
                          "100",           "--faults", "latency_ms=3000",
                          "--refill-rate", "20",       NULL};
    struct kdh_sim sim;
    kdh_sim_start(&sim, args);
    struct kdh_daemon a, b;
    kdh_daemon_config(&a, &sim, KEY, MINUTE_MS, NULL);
    kdh_daemon_config(&b, &sim, KEY, MINUTE_MS, NULL);
    use_store(&b, a.store);
    kdh_daemon_start(&a);
    struct shm_segment seg;
    kdh_daemon_attach(&a, &seg);
    /* The scanner's first page is on its way (3 s). */
    kdh_nap_ms(1000);
    int64_t workers[SHM_ROLE_COUNT] = {0};
    for (int r = SHM_ROLE_SCANNER; r < SHM_ROLE_COUNT; r++)
        workers[r] = atomic_load(&seg.layout->procs[r].pid);
    shm_segment_detach(&seg);

    /* The supervisor dies; its workers would stop by themselves within a second or so (their
     * heartbeat sees the parent gone). They are held (SIGSTOP) until this instance's restart
     * has met them, so that the other instance's try and the restart both find them however
     * loaded the machine is: a worker slow to stop, on purpose. */
    for (int r = SHM_ROLE_SCANNER; r < SHM_ROLE_COUNT; r++)
        if (workers[r] > 0)
            kill((pid_t)workers[r], SIGSTOP);
    pid_t old = a.pid;
    kill(old, SIGKILL);
    waitpid(old, NULL, 0);
    a.pid = 0;
    bool stopping = false;
    for (int r = SHM_ROLE_SCANNER; r < SHM_ROLE_COUNT; r++)
        stopping |= alive(workers[r]);
    assert_true(stopping);

    char *out = NULL;
    const char *run[] = {"run", NULL};
    int rc = kdh_cli(&b, run, 30, &out);
    printf("    other instance meanwhile: exit %d: %s", rc, out);
    char holder[200];
    snprintf(holder, sizeof(holder), "held by instance '%s' (supervisor pid %d, gone; its workers",
             a.instance, (int)old);
    bool refused = rc == 1 && strstr(out, holder) != NULL;
    free(out);

    /* The instance's own restart waits for them, then runs: a child lets them go once the
     * restart has said it waits. */
    pid_t helper = fork();
    assert_true(helper >= 0);
    if (helper == 0)
        release_when_waited_for(&a, workers);
    kdh_daemon_start(&a);
    waitpid(helper, NULL, 0);
    assert_true(refused);
    assert_true(kdh_log_contains(&a, "still held by the workers of the previous supervisor"));
    for (int r = SHM_ROLE_SCANNER; r < SHM_ROLE_COUNT; r++)
        assert_false(alive(workers[r]));
    assert_int_equal(kdh_daemon_stop(&a), 0);
    kdh_sim_stop(&sim);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_second_instance_on_a_held_store_is_refused),
        cmocka_unit_test(test_old_workers_still_stopping_hold_the_store),
    };
    return KD_RUN_TESTS(tests, argc, argv);
}
