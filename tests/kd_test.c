/*
 * kd_test.c: forking cmocka runner. See kd_test.h.
 */
#include "kd_test.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define KD_SKIP_EXIT 77

/* The deadline main() sets for every test of the file (0: the default). */
static unsigned test_timeout_s;
/* The deadline the running test set for itself (0: none). The test runs in a forked child and
 * the parent enforces the deadline, so the child's word must reach the parent: a shared anonymous
 * mapping made before the first fork, cleared before each test, read at each poll. */
static _Atomic unsigned *test_own_timeout_s;
static int in_test_child;

void kd_test_set_timeout(unsigned seconds)
{
    if (in_test_child && test_own_timeout_s != NULL)
        atomic_store(test_own_timeout_s, seconds);
    else
        test_timeout_s = seconds;
}

void kd_test_skip(const char *why)
{
    fprintf(stderr, "[  SKIPPED ] %s\n", why);
    fflush(NULL);
    _exit(KD_SKIP_EXIT);
}

const char *kd_fixture_path(const char *name)
{
    static char path[4096];
    const char *dir = getenv("KD_FIXTURES_DIR");
    if (dir == NULL)
        dir = KD_FIXTURES_DIR;
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    if (access(path, R_OK) != 0)
        fail_msg("fixture %s is missing (%s): the recorded Keepa bodies are part of the "
                 "repository (tests/fixtures/keepa)",
                 path, strerror(errno));
    return path;
}

char *kd_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    while (buf != NULL) {
        size_t r = fread(buf + n, 1, cap - n, f);
        n += r;
        if (n < cap)
            break;
        cap *= 2;
        char *nb = realloc(buf, cap + 1);
        if (nb == NULL) {
            free(buf);
            buf = NULL;
        }
        buf = nb;
    }
    fclose(f);
    if (buf != NULL) {
        buf[n] = '\0';
        if (len != NULL)
            *len = n;
    }
    return buf;
}

const char *kd_test_tmpdir(void)
{
    static char dir[256];
    if (dir[0] == '\0') {
        const char *base = getenv("TMPDIR");
        snprintf(dir, sizeof(dir), "%s/kdtest.XXXXXX", base ? base : "/tmp");
        if (mkdtemp(dir) == NULL) {
            perror("mkdtemp");
            abort();
        }
    }
    return dir;
}

const char *kd_test_instance(void)
{
    static char name[64];
    static unsigned n;
    snprintf(name, sizeof(name), "t%ld-%u", (long)getpid(), n++);
    return name;
}

/* The file listing the shm names test process PID asked to be removed after it. */
static void tracked_path(long pid, char *out, size_t len)
{
    snprintf(out, len, "%s/shm.%ld", kd_test_tmpdir(), pid);
}

void kd_test_track_shm(const char *name)
{
    char path[512];
    tracked_path((long)getpid(), path, sizeof(path));
    FILE *f = fopen(path, "a");
    if (f == NULL)
        return;
    fprintf(f, "%s\n", name);
    fclose(f);
}

static void unlink_tracked(long pid)
{
    char path[512], line[256];
    tracked_path(pid, path, sizeof(path));
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return;
    while (fgets(line, sizeof(line), f) != NULL) {
        line[strcspn(line, "\n")] = '\0';
        if (line[0] == '/')
            shm_unlink(line);
    }
    fclose(f);
    unlink(path);
}

static void remove_tree(const char *dir)
{
    char cmd[512];
    if (dir[0] == '\0')
        return;
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "warning: could not remove %s\n", dir);
}

/* The deadline of the running test: KD_TEST_TIMEOUT from the environment, else what the test
 * set for itself, else what main() set, else 60 s. */
static unsigned current_limit_s(void)
{
    const char *env = getenv("KD_TEST_TIMEOUT");
    unsigned limit = env != NULL ? (unsigned)strtoul(env, NULL, 10) : 0;
    if (limit == 0 && test_own_timeout_s != NULL)
        limit = atomic_load(test_own_timeout_s);
    if (limit == 0)
        limit = test_timeout_s;
    return limit != 0 ? limit : 60;
}

static int run_one(const char *group, const struct CMUnitTest *test)
{
    fflush(NULL);
    if (test_own_timeout_s == NULL) {
        void *p = mmap(NULL, sizeof(*test_own_timeout_s), PROT_READ | PROT_WRITE,
                       MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) {
            perror("mmap");
            return -1;
        }
        test_own_timeout_s = p;
    }
    atomic_store(test_own_timeout_s, 0);
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        return -1;
    }
    if (pid == 0) {
        setpgid(0, 0);
        in_test_child = 1;
        int failed = _cmocka_run_group_tests(group, test, 1, NULL, NULL);
        fflush(NULL);
        _exit(failed ? 1 : 0);
    }
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    int status = 0;
    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid)
            break;
        if (r < 0 && errno != EINTR) {
            perror("waitpid");
            return -1;
        }
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        unsigned limit = current_limit_s();
        if (now.tv_sec - start.tv_sec >= (time_t)limit) {
            fprintf(stderr, "[  TIMEOUT ] %s: no result after %u s, killing it\n", test->name,
                    limit);
            kill(-pid, SIGKILL);
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            return -1;
        }
        struct timespec nap = {0, 2000000};
        nanosleep(&nap, NULL);
    }
    /* Reap anything the test left in its process group (helpers it forked), and remove
     * shared memory segments it named with kd_test_instance() but did not destroy. */
    kill(-pid, SIGKILL);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -f /dev/shm/kdeals-t%ld-*", (long)pid);
    if (system(cmd) != 0)
        fprintf(stderr, "warning: could not clean /dev/shm after %s\n", test->name);
    unlink_tracked((long)pid);
    if (WIFSIGNALED(status)) {
        fprintf(stderr, "[  CRASHED ] %s: killed by signal %d (%s)\n", test->name, WTERMSIG(status),
                strsignal(WTERMSIG(status)));
        return -1;
    }
    if (WEXITSTATUS(status) == KD_SKIP_EXIT)
        return 1;
    return WEXITSTATUS(status) == 0 ? 0 : -1;
}

int kd_run_tests(const char *group, const struct CMUnitTest *tests, size_t count, int argc,
                 char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--list") == 0) {
        for (size_t i = 0; i < count; i++)
            printf("%s\n", tests[i].name);
        return 0;
    }
    /* A name that is no test of the file is a mistake (a renamed case, a typo in a ctest entry
     * that runs one case): it fails rather than passing with nothing run. */
    for (int a = 1; a < argc; a++) {
        size_t i = 0;
        while (i < count && strcmp(argv[a], tests[i].name) != 0)
            i++;
        if (i == count) {
            fprintf(stderr, "%s: no test named %s (--list prints them)\n", argv[0], argv[a]);
            return 2;
        }
    }
    unsigned passed = 0, failed = 0, skipped = 0;
    /* Created once here so every forked test shares it and it is removed at the end. */
    (void)kd_test_tmpdir();
    for (size_t i = 0; i < count; i++) {
        if (argc > 1) {
            int wanted = 0;
            for (int a = 1; a < argc; a++)
                wanted |= strcmp(argv[a], tests[i].name) == 0;
            if (!wanted)
                continue;
        }
        int r = run_one(group, &tests[i]);
        if (r == 0)
            passed++;
        else if (r > 0)
            skipped++;
        else
            failed++;
    }
    remove_tree(kd_test_tmpdir());
    printf("%s: %u passed, %u failed, %u skipped\n", group, passed, failed, skipped);
    if (failed > 0)
        return 1;
    if (passed == 0 && skipped > 0)
        return KD_SKIP_EXIT;
    return 0;
}
