/*
 * storelock.c: the store lock. See storelock.h.
 */
#include "supervisor/storelock.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/log.h"
#include "base/proc.h"

#define LOCK_POLL_MS 100

struct holder {
    char instance[64];
    long long pid;
    long long start_ms;
};

static void read_holder(int fd, struct holder *h)
{
    memset(h, 0, sizeof(*h));
    char text[512];
    ssize_t n = pread(fd, text, sizeof(text) - 1, 0);
    if (n <= 0)
        return;
    text[n] = '\0';
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        if (strncmp(line, "instance=", 9) == 0)
            snprintf(h->instance, sizeof(h->instance), "%s", line + 9);
        else if (strncmp(line, "pid=", 4) == 0)
            h->pid = strtoll(line + 4, NULL, 10);
        else if (strncmp(line, "start_ms=", 9) == 0)
            h->start_ms = strtoll(line + 9, NULL, 10);
    }
}

static void nap_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

int sup_store_lock(const char *store_path, const char *instance, int64_t wait_ms, char *err,
                   size_t errlen)
{
    if (mkdir(store_path, 0700) != 0 && errno != EEXIST) {
        int e = errno;
        kd_seterr(err, errlen, "cannot create the store folder %s: %s", store_path, strerror(e));
        return -e;
    }
    char path[PATH_MAX];
    if (snprintf(path, sizeof(path), "%s/%s", store_path, SUP_STORE_LOCK_FILE) >=
        (int)sizeof(path)) {
        kd_seterr(err, errlen, "store path %s is too long", store_path);
        return -ENAMETOOLONG;
    }
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        int e = errno;
        kd_seterr(err, errlen, "cannot open the store lock %s: %s", path, strerror(e));
        return -e;
    }
    int64_t deadline = kd_mono_ns() + wait_ms * KD_NS_PER_MS;
    bool told = false;
    for (;;) {
        if (flock(fd, LOCK_EX | LOCK_NB) == 0)
            break;
        if (errno != EWOULDBLOCK && errno != EINTR) {
            int e = errno;
            kd_seterr(err, errlen, "cannot lock %s: %s", path, strerror(e));
            close(fd);
            return -e;
        }
        struct holder h;
        read_holder(fd, &h);
        bool running = kd_pid_running(h.pid);
        bool mine = strcmp(h.instance, instance) == 0;
        if (running && mine) {
            kd_seterr(err, errlen,
                      "instance '%s' is already running (supervisor pid %lld holds store %s); "
                      "stop it first with `kdeals stop`",
                      instance, h.pid, store_path);
            close(fd);
            return -EBUSY;
        }
        if (running || !mine || kd_mono_ns() >= deadline) {
            kd_seterr(err, errlen,
                      "store %s is held by instance '%s' (supervisor pid %lld%s): one store "
                      "serves one instance; stop that instance first, or give this one its own "
                      "[store] path",
                      store_path, h.instance[0] ? h.instance : "?", h.pid,
                      running ? "" : ", gone; its workers are still stopping");
            close(fd);
            return -EBUSY;
        }
        if (!told) {
            kd_warn("store %s is still held by the workers of the previous supervisor (pid %lld) "
                    "of this instance: waiting up to %lld ms for them to stop",
                    store_path, h.pid, (long long)wait_ms);
            told = true;
        }
        nap_ms(LOCK_POLL_MS);
    }
    char text[256];
    int n = snprintf(text, sizeof(text), "instance=%s\npid=%d\nstart_ms=%lld\n", instance,
                     (int)getpid(), (long long)kd_wall_ms());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, text, (size_t)n, 0) != n) {
        int e = errno;
        kd_seterr(err, errlen, "cannot write the store lock %s: %s", path, strerror(e));
        close(fd);
        return -e;
    }
    (void)fchmod(fd, 0600);
    return fd;
}
