/*
 * test_segment.c: creating, attaching, replacing and retiring the instance segment.
 *
 * Also what another local user can put in the way (a file at the segment's name, a run folder
 * of theirs or open to them, links in place of files), a dead supervisor that is still a
 * zombie or whose pid another process has now, a corrupt segment, a status file truncated or
 * removed under the supervisor, and the config slot read while it is written (run under
 * ThreadSanitizer as test_segment_threads).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kd_test.h"
#include "shm/segment.h"

/* Waits until PID is a zombie (exited, not reaped). */
static int wait_zombie(pid_t pid)
{
    char path[64], text[512];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    for (int i = 0; i < 500; i++) {
        FILE *f = fopen(path, "r");
        size_t n = f ? fread(text, 1, sizeof(text) - 1, f) : 0;
        if (f)
            fclose(f);
        text[n] = '\0';
        const char *p = strrchr(text, ')');
        if (p != NULL && p[1] == ' ' && p[2] == 'Z')
            return 1;
        usleep(10000);
    }
    return 0;
}

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

/* `kdeals status` (or a health check polling it) at the moment a supervisor starts: its shared
 * probe of the instance lock must not make the start fail as "already running". A child reads
 * the status in a tight loop while the instance is created and destroyed 300 times. */
static void test_status_readers_do_not_block_a_start(void **state)
{
    (void)state;
    const char *inst = kd_test_instance();
    struct shm_segment seg;
    create_ok(&seg, inst);
    shm_segment_destroy(&seg);
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    if (pid == 0) {
        struct shm_status st;
        unsigned long reads = 0;
        char ok = 1;
        for (;;) {
            if (shm_status_read(kd_test_tmpdir(), inst, &st) == 0 && ++reads == 1 &&
                write(fds[1], &ok, 1) != 1)
                _exit(4);
        }
    }
    char ok;
    assert_int_equal(read(fds[0], &ok, 1), 1);
    int refused = 0;
    char first[256] = "";
    for (int i = 0; i < 300; i++) {
        struct shm_segment_options opt = {.instance = inst, .run_dir = kd_test_tmpdir()};
        char err[256] = "";
        if (shm_segment_create(&seg, &opt, err, sizeof(err)) != 0) {
            if (refused++ == 0)
                snprintf(first, sizeof(first), "%s", err);
            continue;
        }
        shm_segment_publish(&seg);
        shm_segment_destroy(&seg);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    close(fds[0]);
    close(fds[1]);
    if (refused != 0)
        fail_msg("%d of 300 starts refused while a status reader ran; the first: %s", refused,
                 first);
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

#define OTHER_UID 65534 /* nobody */

/* Another user's file at the segment's name: refused by attach and by create, owner named,
 * never read nor removed; so is a file of ours with another mode, and a symbolic link. */
static void test_squatted_segment_refused(void **state)
{
    (void)state;
    const char *inst = kd_test_instance();
    char name[128], path[160], err[256];
    snprintf(name, sizeof(name), "/kdeals-%s", inst);
    snprintf(path, sizeof(path), "/dev/shm%s", name);
    struct shm_segment seg, a;

    /* Ours, but mode 0644: not made by kdeals. */
    create_ok(&seg, inst);
    assert_int_equal(fchmod(seg.fd, 0644), 0);
    assert_int_equal(shm_segment_attach(&a, inst, SHM_READ_ONLY, err, sizeof(err)), -EPERM);
    assert_non_null(strstr(err, "mode 0644"));
    assert_int_equal(fchmod(seg.fd, 0600), 0);
    shm_segment_destroy(&seg);

    /* A symbolic link at the name: a clear message, no uninitialised bytes. */
    char target[600];
    snprintf(target, sizeof(target), "%s/target", kd_test_tmpdir());
    assert_int_equal(symlink(target, path), 0);
    struct shm_segment_options opt = {.instance = inst, .run_dir = kd_test_tmpdir()};
    memset(err, 0x5a, sizeof(err));
    assert_int_equal(shm_segment_create(&seg, &opt, err, sizeof(err)), -EPERM);
    assert_non_null(memchr(err, '\0', sizeof(err)));
    assert_non_null(strstr(err, "symbolic link"));
    memset(err, 0x5a, sizeof(err));
    assert_int_equal(shm_segment_attach(&a, inst, SHM_READ_ONLY, err, sizeof(err)), -EPERM);
    assert_non_null(strstr(err, "symbolic link"));
    assert_int_equal(unlink(path), 0);

    if (geteuid() != 0)
        kd_test_skip("another user's segment: needs root to create a file of another uid");
    /* Another user's, with a header naming pid 1 (alive) as its supervisor. */
    int fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, 1 << 20), 0);
    struct shm_header *h = mmap(NULL, sizeof(*h), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    assert_true(h != MAP_FAILED);
    h->magic = SHM_MAGIC;
    h->supervisor_pid = 1;
    atomic_store(&h->layout_version, SHM_LAYOUT_VERSION);
    munmap(h, sizeof(*h));
    assert_int_equal(fchown(fd, OTHER_UID, OTHER_UID), 0);
    close(fd);
    assert_int_equal(shm_segment_attach(&a, inst, SHM_READ_ONLY, err, sizeof(err)), -EPERM);
    assert_non_null(strstr(err, "belongs to uid 65534"));
    assert_int_equal(shm_segment_create(&seg, &opt, err, sizeof(err)), -EPERM);
    assert_non_null(strstr(err, "belongs to uid 65534"));
    assert_null(strstr(err, "pid 1"));
    struct stat st;
    assert_int_equal(stat(path, &st), 0); /* not removed */
    assert_int_equal(st.st_uid, OTHER_UID);
    shm_unlink(name);
}

/* A run folder another user owns, or that others may write in, or that is a symbolic link, is
 * refused; a status file that is a link is not followed. */
static void test_run_dir_checked(void **state)
{
    (void)state;
    char dir[600], link[600], err[512];
    snprintf(dir, sizeof(dir), "%s/run", kd_test_tmpdir());
    snprintf(link, sizeof(link), "%s/run-link", kd_test_tmpdir());
    int fd = shm_run_dir_open(dir, true, err, sizeof(err));
    assert_true(fd >= 0);
    close(fd);
    struct stat st;
    assert_int_equal(stat(dir, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);

    assert_int_equal(chmod(dir, 0777), 0);
    assert_int_equal(shm_run_dir_open(dir, true, err, sizeof(err)), -EPERM);
    assert_non_null(strstr(err, "chmod 700"));
    struct shm_segment seg;
    struct shm_segment_options opt = {.instance = kd_test_instance(), .run_dir = dir};
    assert_int_equal(shm_segment_create(&seg, &opt, err, sizeof(err)), -EPERM);
    struct shm_status status;
    assert_int_equal(shm_status_read(dir, opt.instance, &status), -EPERM);
    assert_int_equal(chmod(dir, 0700), 0);

    assert_int_equal(symlink(dir, link), 0);
    assert_int_equal(shm_run_dir_open(link, true, err, sizeof(err)), -EPERM);
    assert_non_null(strstr(err, "symbolic link"));

    /* A status file that is a link to a file of ours elsewhere: never opened through it. */
    char victim[600], status_path[700];
    snprintf(victim, sizeof(victim), "%s/victim", kd_test_tmpdir());
    FILE *f = fopen(victim, "w");
    fputs("precious\n", f);
    fclose(f);
    assert_int_equal(chmod(victim, 0644), 0);
    snprintf(status_path, sizeof(status_path), "%s/%s.status", dir, opt.instance);
    assert_int_equal(symlink(victim, status_path), 0);
    assert_int_equal(shm_segment_create(&seg, &opt, err, sizeof(err)), -EPERM);
    assert_int_equal(shm_status_read(dir, opt.instance, &status), -EPERM);
    char *text = kd_read_file(victim, NULL);
    assert_string_equal(text, "precious\n");
    free(text);
    assert_int_equal(stat(victim, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0644); /* not chmod'ed either */
    unlink(status_path);

    if (geteuid() != 0)
        kd_test_skip("another user's run folder: needs root to chown");
    assert_int_equal(chown(dir, OTHER_UID, OTHER_UID), 0);
    assert_int_equal(shm_run_dir_open(dir, true, err, sizeof(err)), -EPERM);
    assert_non_null(strstr(err, "belongs to uid 65534"));
    assert_int_equal(shm_segment_create(&seg, &opt, err, sizeof(err)), -EPERM);
    assert_int_equal(shm_status_read(dir, opt.instance, &status), -EPERM);
}

/* Creates and publishes a segment in a child that then exits without cleaning up. */
static pid_t create_in_child(const char *inst, int exit_at_once)
{
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
        if (!exit_at_once)
            pause();
        _exit(0);
    }
    char ok;
    assert_int_equal(read(fds[0], &ok, 1), 1);
    close(fds[0]);
    close(fds[1]);
    return pid;
}

/* A supervisor killed while nobody reaps it (a zombie), and one whose pid a live process has
 * now: both dead, their segments replaced. */
static void test_zombie_or_reused_pid_supervisor_is_dead(void **state)
{
    (void)state;
    const char *inst = kd_test_instance();
    pid_t pid = create_in_child(inst, 1);
    /* Not reaped: a zombie (its fds, and so the lock, are gone). */
    assert_true(wait_zombie(pid));
    assert_int_equal(kill(pid, 0), 0);
    assert_false(shm_proc_alive(pid, 0));
    struct shm_segment next;
    create_ok(&next, inst);
    assert_int_equal(next.generation, 2);
    shm_segment_destroy(&next);
    waitpid(pid, NULL, 0);

    /* A leftover naming a live process of another start time: the pid was reused. */
    create_ok(&next, inst);
    next.layout->header.supervisor_pid = getppid();
    next.layout->header.supervisor_start_ticks = 1;
    int lock = next.lock_fd;
    next.lock_fd = -1; /* leave the segment behind as a dead supervisor would */
    shm_segment_detach(&next);
    close(lock);
    assert_true(shm_proc_alive(getppid(), 0));
    assert_false(shm_proc_alive(getppid(), 1));
    struct shm_segment again;
    create_ok(&again, inst);
    assert_int_equal(again.generation, 4);
    assert_int_equal(again.layout->header.supervisor_start_ticks, shm_proc_start_ticks(getpid()));
    shm_segment_destroy(&again);
}

/* A segment with a ring outside the mapping, or whose header names another instance, is
 * refused by attach, never used. */
static void test_corrupt_segment_refused(void **state)
{
    (void)state;
    const char *inst = kd_test_instance();
    struct shm_segment seg, a;
    char err[256];
    create_ok(&seg, inst);
    uint64_t off = seg.layout->header.ring_data_offset[1];
    seg.layout->header.ring_data_offset[1] = seg.size;
    assert_int_equal(shm_segment_attach(&a, inst, SHM_READ_ONLY, err, sizeof(err)), -EPROTO);
    assert_non_null(strstr(err, "recommit ring"));
    seg.layout->header.ring_data_offset[1] = off;
    seg.layout->rings[2].capacity = 1u << 30;
    assert_int_equal(shm_segment_attach(&a, inst, SHM_READ_ONLY, err, sizeof(err)), -EPROTO);
    seg.layout->rings[2].capacity = seg.layout->header.ring_capacity[2];
    seg.layout->header.segment_size = (uint64_t)seg.size * 2;
    assert_int_equal(shm_segment_attach(&a, inst, SHM_READ_ONLY, err, sizeof(err)), -EPROTO);
    seg.layout->header.segment_size = seg.size;
    memset(seg.layout->header.instance, 'x', sizeof(seg.layout->header.instance));
    assert_int_equal(shm_segment_attach(&a, inst, SHM_READ_ONLY, err, sizeof(err)), -EPROTO);
    snprintf(seg.layout->header.instance, sizeof(seg.layout->header.instance), "%s", inst);
    assert_int_equal(shm_segment_attach(&a, inst, SHM_READ_ONLY, err, sizeof(err)), 0);
    shm_segment_detach(&a);
    shm_segment_destroy(&seg);
}

/* The status file truncated, or removed, under the supervisor: repaired, locked again. */
static void test_status_file_repaired(void **state)
{
    (void)state;
    const char *inst = kd_test_instance();
    struct shm_segment seg;
    create_ok(&seg, inst);
    assert_int_equal(shm_status_write(&seg, "running"), 0);
    assert_int_equal(shm_status_repair(&seg, "running"), 0);
    struct shm_status st;
    assert_int_equal(truncate(seg.status_path, 0), 0);
    assert_int_equal(shm_status_read(kd_test_tmpdir(), inst, &st), 0);
    assert_int_equal(st.pid, 0);
    assert_int_equal(shm_status_repair(&seg, "running"), 1);
    assert_int_equal(shm_status_read(kd_test_tmpdir(), inst, &st), 0);
    assert_int_equal(st.pid, getpid());
    assert_true(st.locked);
    assert_int_equal(st.start_ticks, shm_proc_start_ticks(getpid()));

    assert_int_equal(unlink(seg.status_path), 0);
    assert_int_equal(shm_status_read(kd_test_tmpdir(), inst, &st), -ENOENT);
    assert_int_equal(shm_status_repair(&seg, "running"), 1);
    assert_int_equal(shm_status_read(kd_test_tmpdir(), inst, &st), 0);
    assert_int_equal(st.pid, getpid());
    assert_true(st.locked); /* a second start is refused again */
    assert_string_equal(st.state, "running");
    shm_segment_destroy(&seg);
}

/* Readers of the config slot while the supervisor publishes: every copy is whole (its bytes
 * all from one publication), and under ThreadSanitizer no data race is reported. */
struct slot_race {
    struct shm_layout *l;
    atomic_int stop;
};

static void *publisher(void *arg)
{
    struct slot_race *r = arg;
    static uint8_t buf[4096];
    for (unsigned i = 1; i < 3000; i++) {
        size_t len = 64 + (i * 37) % (sizeof(buf) - 64);
        memset(buf, (int)(i & 0xff), len);
        shm_config_publish(r->l, buf, len);
    }
    atomic_store(&r->stop, 1);
    return NULL;
}

static void *config_reader(void *arg)
{
    struct slot_race *r = arg;
    static _Thread_local uint8_t buf[SHM_CONFIG_MAX];
    while (!atomic_load(&r->stop)) {
        size_t len = 0;
        int64_t gen = shm_config_read(r->l, buf, sizeof(buf), &len);
        if (gen <= 0)
            continue;
        for (size_t k = 1; k < len; k++) {
            if (buf[k] != buf[0]) {
                fprintf(stderr, "torn config copy at generation %lld\n", (long long)gen);
                abort();
            }
        }
    }
    return NULL;
}

static void test_config_slot_threads(void **state)
{
    (void)state;
    struct shm_layout *l = calloc(1, sizeof(*l));
    assert_non_null(l);
    struct slot_race r = {.l = l};
    pthread_t w, rd[2];
    pthread_create(&rd[0], NULL, config_reader, &r);
    pthread_create(&rd[1], NULL, config_reader, &r);
    pthread_create(&w, NULL, publisher, &r);
    pthread_join(w, NULL);
    pthread_join(rd[0], NULL);
    pthread_join(rd[1], NULL);
    free(l);
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
        cmocka_unit_test(test_status_readers_do_not_block_a_start),
        cmocka_unit_test(test_dead_supervisor_segment_replaced_and_reader_notices),
        cmocka_unit_test(test_generation_survives_clean_restart),
        cmocka_unit_test(test_wrong_version_and_foreign_segments),
        cmocka_unit_test(test_invalid_arguments),
        cmocka_unit_test(test_role_names),
        cmocka_unit_test(test_squatted_segment_refused),
        cmocka_unit_test(test_run_dir_checked),
        cmocka_unit_test(test_zombie_or_reused_pid_supervisor_is_dead),
        cmocka_unit_test(test_corrupt_segment_refused),
        cmocka_unit_test(test_status_file_repaired),
        cmocka_unit_test(test_config_slot_threads),
    };
    return KD_RUN_TESTS(tests, argc, argv);
}
