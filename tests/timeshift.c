/*
 * timeshift.c: a preloaded shim (LD_PRELOAD) that steps CLOCK_REALTIME for the daemon under
 * test, and for nothing else on the machine.
 *
 * The wall clock a process reads (clock_gettime of CLOCK_REALTIME and CLOCK_REALTIME_COARSE,
 * gettimeofday, time) is moved by the signed number of milliseconds held in the first 8 bytes
 * of the file named by KD_TIMESHIFT_FILE, mapped shared, so a test steps the clock of a running
 * daemon by writing that file. Monotonic clocks are untouched. The supervisor starts its
 * workers with a clean environment, so the shim also wraps execvp and execve to hand its own
 * variables (and the sanitizers' options) to whatever the process executes.
 *
 * A time namespace cannot do this (it shifts CLOCK_MONOTONIC and CLOCK_BOOTTIME, never
 * CLOCK_REALTIME), and stepping the real clock would step every other test of the machine.
 */
#include <dlfcn.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static _Atomic int64_t *shift_ms;
static pthread_once_t once = PTHREAD_ONCE_INIT;
static int (*real_clock_gettime)(clockid_t, struct timespec *);
static int (*real_execve)(const char *, char *const[], char *const[]);

/* The variables handed on to every program this process executes, as they were at load
 * (libuv replaces environ with the worker's clean one just before the exec). */
static const char *const handed_on[] = {"LD_PRELOAD",    "KD_TIMESHIFT_FILE", "ASAN_OPTIONS",
                                        "UBSAN_OPTIONS", "LSAN_OPTIONS",      NULL};
static char *handed_value[sizeof(handed_on) / sizeof(handed_on[0])];

__attribute__((constructor)) static void save_handed_on(void)
{
    for (size_t v = 0; handed_on[v] != NULL; v++) {
        const char *value = getenv(handed_on[v]);
        handed_value[v] = value != NULL ? strdup(value) : NULL;
    }
}

static void init(void)
{
    real_clock_gettime = dlsym(RTLD_NEXT, "clock_gettime");
    real_execve = dlsym(RTLD_NEXT, "execve");
    const char *path = getenv("KD_TIMESHIFT_FILE");
    if (path == NULL)
        return;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    void *p = mmap(NULL, sizeof(int64_t), PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    if (p != MAP_FAILED)
        shift_ms = p;
}

static int64_t shift_ns(void)
{
    pthread_once(&once, init);
    return shift_ms != NULL ? atomic_load(shift_ms) * 1000000 : 0;
}

static void shift(struct timespec *ts)
{
    int64_t ns = (int64_t)ts->tv_sec * 1000000000 + ts->tv_nsec + shift_ns();
    ts->tv_sec = (time_t)(ns / 1000000000);
    ts->tv_nsec = (long)(ns % 1000000000);
    if (ts->tv_nsec < 0) {
        ts->tv_nsec += 1000000000;
        ts->tv_sec--;
    }
}

int clock_gettime(clockid_t id, struct timespec *ts)
{
    pthread_once(&once, init);
    int rc = real_clock_gettime(id, ts);
    if (rc == 0 && (id == CLOCK_REALTIME || id == CLOCK_REALTIME_COARSE))
        shift(ts);
    return rc;
}

int gettimeofday(struct timeval *tv, void *tz)
{
    (void)tz;
    struct timespec ts;
    int rc = clock_gettime(CLOCK_REALTIME, &ts);
    if (rc == 0) {
        tv->tv_sec = ts.tv_sec;
        tv->tv_usec = ts.tv_nsec / 1000;
    }
    return rc;
}

time_t time(time_t *out)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (out != NULL)
        *out = ts.tv_sec;
    return ts.tv_sec;
}

/* ENV plus the handed-on variables it lacks (malloc'd; leaked: an exec follows). */
static char **with_shim(char *const env[])
{
    size_t n = 0;
    while (env != NULL && env[n] != NULL)
        n++;
    char **out = calloc(n + 8, sizeof(*out));
    if (out == NULL)
        return (char **)env;
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        out[k++] = env[i];
    for (size_t v = 0; handed_on[v] != NULL; v++) {
        const char *value = handed_value[v];
        size_t len = strlen(handed_on[v]);
        int present = 0;
        for (size_t i = 0; i < n; i++)
            present |= strncmp(env[i], handed_on[v], len) == 0 && env[i][len] == '=';
        if (value == NULL || present)
            continue;
        char *entry = malloc(len + strlen(value) + 2);
        if (entry == NULL)
            continue;
        sprintf(entry, "%s=%s", handed_on[v], value);
        out[k++] = entry;
    }
    out[k] = NULL;
    return out;
}

int execve(const char *file, char *const argv[], char *const envp[])
{
    pthread_once(&once, init);
    return real_execve(file, argv, with_shim(envp));
}

/* libuv executes a worker with execvp after setting environ; the file is a path. */
int execvp(const char *file, char *const argv[])
{
    pthread_once(&once, init);
    extern char **environ;
    return real_execve(file, argv, with_shim(environ));
}
