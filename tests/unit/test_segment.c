/*
 * test_segment.c: creating, attaching, replacing and retiring the instance segment.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kd_test.h"
#include "shm/segment.h"

static void create_ok(struct shm_segment *seg, const char *inst)
{
    struct shm_segment_options opt = {.instance = inst, .run_dir = kd_test_tmpdir()};
    char err[256] = "";
    int rc = shm_segment_create(seg, &opt, err, sizeof(err));
    if (rc != 0)
        fail_msg("create: %d %s", rc, err);
    shm_segment_publish(seg);
}

static void test_create_attach_fields_and_modes(void **state)
{
    (void)state;
    const char *inst = kd_test_instance();
    struct shm_segment seg;
    create_ok(&seg, inst);

    char path[256];
    snprintf(path, sizeof(path), "/dev/shm/kdeals-%s", inst);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(stat(seg.status_path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);

    struct shm_segment rw, ro;
    char err[256];
    assert_int_equal(shm_segment_attach(&rw, inst, SHM_READ_WRITE, err, sizeof(err)), 0);
    assert_int_equal(shm_segment_attach(&ro, inst, SHM_READ_ONLY, err, sizeof(err)), 0);
    const struct shm_header *h = &ro.layout->header;
    assert_int_equal(h->magic, SHM_MAGIC);
    assert_int_equal(h->layout_version, SHM_LAYOUT_VERSION);
    assert_int_equal(h->supervisor_pid, getpid());
    assert_true(h->start_time_ms > 1700000000000LL);
    assert_string_equal(h->instance, inst);
    assert_int_equal(ro.generation, seg.generation);
    assert_int_equal(shm_segment_check(&ro), 0);

    /* What one process writes, the others see. */
    atomic_store(&rw.layout->procs[SHM_ROLE_SCANNER].pid, 4242);
    assert_int_equal(atomic_load(&ro.layout->procs[SHM_ROLE_SCANNER].pid), 4242);
    assert_int_equal(atomic_load(&ro.layout->procs[SHM_ROLE_UPDATER].last_exit_status), -1);

    struct shm_status status;
    assert_int_equal(shm_status_read(kd_test_tmpdir(), inst, &status), 0);
    assert_int_equal(status.pid, getpid());
    assert_int_equal(status.generation, seg.generation);
    assert_true(status.locked);

    shm_segment_detach(&rw);
    shm_segment_detach(&ro);
    shm_segment_destroy(&seg);
    assert_int_equal(shm_status_read(kd_test_tmpdir(), inst, &status), 0);
    assert_false(status.locked);
    assert_string_equal(status.state, "stopped");
}

static void on_segv(int sig)
{
    (void)sig;
    _exit(42);
}

static void test_read_only_mapping_cannot_write(void **state)
{
    (void)state;
    const char *inst = kd_test_instance();
    struct shm_segment seg;
    create_ok(&seg, inst);
    pid_t pid = fork();
    if (pid == 0) {
        struct shm_segment ro;
        char err[256];
        if (shm_segment_attach(&ro, inst, SHM_READ_ONLY, err, sizeof(err)) != 0)
            _exit(3);
        struct sigaction sa = {.sa_handler = on_segv};
        sigaction(SIGSEGV, &sa, NULL);
        atomic_store(&ro.layout->procs[0].pid, 1); /* must fault */
        _exit(0);
    }
    int status;
    waitpid(pid, &status, 0);
    /* The write faulted (our handler's exit code), it did not go through. */
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 42);
    assert_int_equal(atomic_load(&seg.layout->procs[0].pid), 0);
    shm_segment_destroy(&seg);
}

static void test_attach_before_publish_and_when_absent(void **state)
{
    (void)state;
    const char *inst = kd_test_instance();
    struct shm_segment seg, a;
    char err[256];
    assert_int_equal(shm_segment_attach(&a, inst, SHM_READ_ONLY, err, sizeof(err)), -ENOENT);
    assert_non_null(strstr(err, "not running"));

    struct shm_segment_options opt = {.instance = inst, .run_dir = kd_test_tmpdir()};
    assert_int_equal(shm_segment_create(&seg, &opt, err, sizeof(err)), 0);
    assert_int_equal(shm_segment_attach(&a, inst, SHM_READ_ONLY, err, sizeof(err)), -EAGAIN);
    shm_segment_publish(&seg);
    assert_int_equal(shm_segment_attach(&a, inst, SHM_READ_ONLY, err, sizeof(err)), 0);
    shm_segment_detach(&a);
    shm_segment_destroy(&seg);
}

static void test_second_supervisor_refused(void **state)
{
    (void)state;
    const char *inst = kd_test_instance();
    struct shm_segment seg;
    create_ok(&seg, inst);
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    if (pid == 0) {
        struct shm_segment other;
        struct shm_segment_options opt = {.instance = inst, .run_dir = kd_test_tmpdir()};
        char err[256] = "";
        int rc = shm_segment_create(&other, &opt, err, sizeof(err));
        if (write(fds[1], err, strlen(err) + 1) < 0)
            _exit(4);
        _exit(rc == -EBUSY ? 0 : 1);
    }
    int status;
    waitpid(pid, &status, 0);
    char msg[256] = "";
    assert_true(read(fds[0], msg, sizeof(msg)) > 0);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    char pidtext[32];
    snprintf(pidtext, sizeof(pidtext), "pid %d", (int)getpid());
    assert_non_null(strstr(msg, "already running"));
    assert_non_null(strstr(msg, pidtext));
    /* The running segment is untouched. */
    assert_int_equal(shm_segment_check(&seg), 0);
    shm_segment_destroy(&seg);
}

static void test_dead_supervisor_segment_replaced_and_reader_notices(void **state)
{
    (void)state;
    const char *inst = kd_test_instance();
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    if (pid == 0) {
        struct shm_segment seg;
        struct shm_segment_options opt = {.instance = inst, .run_dir = kd_test_tmpdir()};
        char err[256];
        if (shm_segment_create(&seg, &opt, err, sizeof(err)) != 0)
            _exit(3);
        shm_segment_publish(&seg);
        char ok = 1;
        if (write(fds[1], &ok, 1) != 1)
            _exit(4);
        pause(); /* killed by the parent: no cleanup runs */
        _exit(0);
    }
    char ok;
    assert_int_equal(read(fds[0], &ok, 1), 1);

    struct shm_segment reader;
    char err[256];
    assert_int_equal(shm_segment_attach(&reader, inst, SHM_READ_ONLY, err, sizeof(err)), 0);
    uint64_t old_gen = reader.generation;
    assert_int_equal(reader.layout->header.supervisor_pid, pid);

    kill(pid, SIGKILL);
    int status;
    waitpid(pid, &status, 0);
    /* Still mapped and unchanged: a dead supervisor alone does not retire it. */
    assert_int_equal(shm_segment_check(&reader), 0);

    struct shm_segment next;
    create_ok(&next, inst);
    assert_int_equal(next.generation, old_gen + 1);
    assert_int_equal(shm_segment_check(&reader), -ESTALE);
    shm_segment_detach(&reader);
    assert_int_equal(shm_segment_attach(&reader, inst, SHM_READ_ONLY, err, sizeof(err)), 0);
    assert_int_equal(reader.generation, old_gen + 1);
    assert_int_equal(reader.layout->header.supervisor_pid, getpid());
    shm_segment_detach(&reader);
    shm_segment_destroy(&next);
}

static void test_generation_survives_clean_restart(void **state)
{
    (void)state;
    const char *inst = kd_test_instance();
    struct shm_segment a, b, reader;
    char err[256];
    create_ok(&a, inst);
    uint64_t g = a.generation;
    assert_int_equal(shm_segment_attach(&reader, inst, SHM_READ_ONLY, err, sizeof(err)), 0);
    shm_segment_destroy(&a);
    assert_int_equal(shm_segment_check(&reader), -ESTALE);
    shm_segment_detach(&reader);
    assert_int_equal(shm_segment_attach(&reader, inst, SHM_READ_ONLY, err, sizeof(err)), -ENOENT);
    create_ok(&b, inst);
    assert_int_equal(b.generation, g + 1);
    shm_segment_destroy(&b);
}

static void test_wrong_version_and_foreign_segments(void **state)
{
    (void)state;
    const char *inst = kd_test_instance();
    struct shm_segment seg, a;
    char err[256];
    create_ok(&seg, inst);
    atomic_store(&seg.layout->header.layout_version, SHM_LAYOUT_VERSION + 1);
    assert_int_equal(shm_segment_attach(&a, inst, SHM_READ_ONLY, err, sizeof(err)), -EPROTO);
    assert_non_null(strstr(err, "layout version"));
    shm_segment_publish(&seg);
    seg.layout->header.magic = 0x1234;
    assert_int_equal(shm_segment_attach(&a, inst, SHM_READ_ONLY, err, sizeof(err)), -EPROTO);
    assert_non_null(strstr(err, "magic"));
    seg.layout->header.magic = SHM_MAGIC;
    shm_segment_destroy(&seg);

    /* A tiny foreign object under our name. */
    char name[128];
    snprintf(name, sizeof(name), "/kdeals-%s", inst);
    int fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, 16), 0);
    assert_int_equal(shm_segment_attach(&a, inst, SHM_READ_ONLY, err, sizeof(err)), -EAGAIN);
    close(fd);
    shm_unlink(name);
}

static void test_invalid_arguments(void **state)
{
    (void)state;
    struct shm_segment seg;
    char err[256];
    const char *bad_names[] = {"", "a/b", "..", "x y",
                               "name-that-is-far-too-long-for-an-instance-0123456789"};
    for (size_t i = 0; i < sizeof(bad_names) / sizeof(bad_names[0]); i++) {
        struct shm_segment_options opt = {.instance = bad_names[i], .run_dir = kd_test_tmpdir()};
        assert_int_equal(shm_segment_create(&seg, &opt, err, sizeof(err)), -EINVAL);
        assert_int_equal(shm_segment_attach(&seg, bad_names[i], SHM_READ_ONLY, err, sizeof(err)),
                         -EINVAL);
    }
    struct shm_segment_options opt = {.instance = kd_test_instance(), .run_dir = kd_test_tmpdir()};
    opt.ring_capacity[1] = 3000;
    assert_int_equal(shm_segment_create(&seg, &opt, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "power of two"));
    opt.ring_capacity[1] = 1ULL << 40;
    assert_int_equal(shm_segment_create(&seg, &opt, err, sizeof(err)), -EINVAL);
    /* A failed create leaves the instance free. */
    opt.ring_capacity[1] = 0;
    assert_int_equal(shm_segment_create(&seg, &opt, err, sizeof(err)), 0);
    shm_segment_destroy(&seg);

    struct shm_segment_options nodir = {.instance = kd_test_instance(),
                                        .run_dir = "/nonexistent/kdeals"};
    assert_int_equal(shm_segment_create(&seg, &nodir, err, sizeof(err)), -ENOENT);
    assert_non_null(strstr(err, "/nonexistent/kdeals"));
}

static void test_role_names(void **state)
{
    (void)state;
    for (int r = 0; r < SHM_ROLE_COUNT; r++)
        assert_int_equal(shm_role_parse(shm_role_name((enum shm_role)r)), r);
    assert_int_equal(shm_role_parse("janitor"), -EINVAL);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create_attach_fields_and_modes),
        cmocka_unit_test(test_read_only_mapping_cannot_write),
        cmocka_unit_test(test_attach_before_publish_and_when_absent),
        cmocka_unit_test(test_second_supervisor_refused),
        cmocka_unit_test(test_dead_supervisor_segment_replaced_and_reader_notices),
        cmocka_unit_test(test_generation_survives_clean_restart),
        cmocka_unit_test(test_wrong_version_and_foreign_segments),
        cmocka_unit_test(test_invalid_arguments),
        cmocka_unit_test(test_role_names),
    };
    return KD_RUN_TESTS(tests, argc, argv);
}
