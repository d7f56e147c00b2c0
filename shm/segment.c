/*
 * segment.c: create, attach, replace and retire the instance segment. See segment.h.
 *
 * Why flock on a status file rather than a pid file check: the kernel releases a flock when
 * its holder dies, however it dies, so there is no window in which a dead supervisor still
 * "owns" the instance and no pid-reuse guesswork. The status file itself stays on disk
 * between runs and carries the last generation, so generations increase across restarts
 * even after a clean shutdown removed the segment.
 *
 * Files other users could have put in the way are never trusted by name: the run folder is
 * opened once, checked, and the status file opened relative to it (openat, O_NOFOLLOW) and
 * checked once open; a segment is checked (owner, mode, then every size and offset) before
 * anything in it is read.
 */
#include "shm/segment.h"

#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/log.h"
#include "shm/ring.h"

#define SHM_RING_ALIGN 4096u

bool shm_instance_valid(const char *name)
{
    size_t n = name ? strlen(name) : 0;
    if (n == 0 || n >= SHM_INSTANCE_MAX || name[0] == '.')
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-' || c == '.'))
            return false;
    }
    return true;
}

#define NAME_OF(id, name, ...) name,
static const char *const role_names[SHM_ROLE_COUNT] = {SHM_ROLES(NAME_OF)};
static const char *const state_names[SHM_PROC_STATE_COUNT] = {SHM_PROC_STATES(NAME_OF)};
static const char *const ring_names[SHM_RING_COUNT] = {SHM_RINGS(NAME_OF)};
#undef NAME_OF

const char *shm_role_name(enum shm_role role)
{
    return (unsigned)role < SHM_ROLE_COUNT ? role_names[role] : "?";
}

const char *shm_proc_state_name(uint32_t state)
{
    return state < SHM_PROC_STATE_COUNT ? state_names[state] : "?";
}

const char *shm_ring_name(enum shm_ring_id ring)
{
    return (unsigned)ring < SHM_RING_COUNT ? ring_names[ring] : "?";
}

int shm_role_parse(const char *name)
{
    for (int i = 0; i < SHM_ROLE_COUNT; i++) {
        if (strcmp(name, role_names[i]) == 0)
            return i;
    }
    return -EINVAL;
}

static void segment_reset(struct shm_segment *seg)
{
    memset(seg, 0, sizeof(*seg));
    seg->fd = -1;
    seg->lock_fd = -1;
    seg->run_dir_fd = -1;
}

/* "uid 1000 (alice)" */
static void describe_uid(uid_t uid, char *buf, size_t len)
{
    struct passwd pw, *found = NULL;
    char text[1024];
    if (getpwuid_r(uid, &pw, text, sizeof(text), &found) == 0 && found != NULL)
        snprintf(buf, len, "uid %u (%s)", (unsigned)uid, found->pw_name);
    else
        snprintf(buf, len, "uid %u", (unsigned)uid);
}

/* ---- processes ---- */

/* Reads the state letter and start time of PID from /proc/PID/stat. 0, or -ESRCH. */
static int proc_stat(int64_t pid, char *state, uint64_t *start_ticks)
{
    char path[64], text[1024];
    if (pid <= 0 || pid > INT32_MAX)
        return -ESRCH;
    snprintf(path, sizeof(path), "/proc/%lld/stat", (long long)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -ESRCH;
    ssize_t n = read(fd, text, sizeof(text) - 1);
    close(fd);
    if (n <= 0)
        return -ESRCH;
    text[n] = '\0';
    /* "pid (comm) S ppid ...": comm may hold anything, so fields start after the last ')'. */
    const char *p = strrchr(text, ')');
    if (p == NULL || p[1] != ' ')
        return -ESRCH;
    p += 2;
    *state = *p;
    /* Field 22 (starttime) is the 20th after the state (field 3). */
    for (int field = 3; field < 22 && p != NULL; field++) {
        p = strchr(p, ' ');
        if (p != NULL)
            p++;
    }
    if (p == NULL)
        return -ESRCH;
    *start_ticks = strtoull(p, NULL, 10);
    return 0;
}

uint64_t shm_proc_start_ticks(int64_t pid)
{
    char state;
    uint64_t ticks = 0;
    return proc_stat(pid, &state, &ticks) == 0 ? ticks : 0;
}

bool shm_proc_alive(int64_t pid, uint64_t start_ticks)
{
    char state;
    uint64_t ticks = 0;
    if (proc_stat(pid, &state, &ticks) != 0)
        return false;
    if (state == 'Z' || state == 'X')
        return false; /* exited; its parent has not reaped it (yet) */
    return start_ticks == 0 || ticks == start_ticks;
}

/* ---- the run folder ---- */

int shm_run_dir_open(const char *run_dir, bool create, char *err, size_t errlen)
{
    if (run_dir == NULL || run_dir[0] == '\0') {
        kd_seterr(err, errlen, "no run_dir: set [daemon] run_dir or --run-dir");
        return -EINVAL;
    }
    if (create && mkdir(run_dir, 0700) != 0 && errno != EEXIST) {
        int e = errno;
        kd_seterr(err, errlen,
                  "cannot create run_dir %s: %s (create it, mode 0700, or set [daemon] run_dir "
                  "or --run-dir)",
                  run_dir, strerror(e));
        return -e;
    }
    int fd = open(run_dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        if (e == ELOOP || e == ENOTDIR) {
            struct stat lst;
            bool link = lstat(run_dir, &lst) == 0 && S_ISLNK(lst.st_mode);
            kd_seterr(err, errlen, "run_dir %s is %s: use a real folder of your own (mode 0700)",
                      run_dir, link ? "a symbolic link" : "not a folder");
            return link ? -EPERM : -ENOTDIR;
        }
        kd_seterr(err, errlen, "cannot open run_dir %s: %s", run_dir, strerror(e));
        return -e;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        kd_seterr(err, errlen, "cannot stat run_dir %s: %s", run_dir, strerror(e));
        return -e;
    }
    if (st.st_uid != geteuid()) {
        char owner[300];
        describe_uid(st.st_uid, owner, sizeof(owner));
        kd_seterr(err, errlen,
                  "run_dir %s belongs to %s, not to you (uid %u): another user could control "
                  "the status and log files in it; use a folder of your own (mode 0700)",
                  run_dir, owner, (unsigned)geteuid());
        close(fd);
        return -EPERM;
    }
    if ((st.st_mode & 022) != 0) {
        kd_seterr(err, errlen,
                  "run_dir %s has mode %04o: others may create files in it; chmod 700 %s", run_dir,
                  (unsigned)(st.st_mode & 07777), run_dir);
        close(fd);
        return -EPERM;
    }
    return fd;
}

/*
 * Opens the status file NAME in the checked run folder DIRFD without following a link and
 * checks what was opened: a regular file of the caller's with one name. FLAGS are open(2)'s.
 */
static int status_open(int dirfd, const char *name, int flags)
{
    int fd = openat(dirfd, name, flags | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC, 0600);
    if (fd < 0)
        return errno == ELOOP ? -EPERM : -errno;
    struct stat st;
    int rc = 0;
    if (fstat(fd, &st) != 0)
        rc = -errno;
    else if (!S_ISREG(st.st_mode) || st.st_uid != geteuid() || st.st_nlink != 1)
        rc = -EPERM;
    if (rc != 0) {
        close(fd);
        return rc;
    }
    return fd;
}

/* The instance lock's exclusive flock on the status file FD. shm_status_read (`kdeals status`,
 * a health check, a test waiting for a start) holds a shared lock on the same file for the span
 * of two system calls to learn whether a supervisor holds it; a start that meets one must not
 * take it for a running instance, so EWOULDBLOCK is tried again for SHM_LOCK_RETRY_MS. A
 * supervisor holds its lock for life, which stays EWOULDBLOCK and is refused. For a start only
 * (shm_status_repair runs on the supervisor's loop). Returns 0 or -errno. */
#define SHM_LOCK_RETRY_MS 250
static int lock_instance(int fd)
{
    int64_t deadline = kd_mono_ns() + SHM_LOCK_RETRY_MS * KD_NS_PER_MS;
    for (;;) {
        if (flock(fd, LOCK_EX | LOCK_NB) == 0)
            return 0;
        int e = errno;
        if (e != EINTR && (e != EWOULDBLOCK || kd_mono_ns() >= deadline))
            return -e;
        struct timespec nap = {0, KD_NS_PER_MS};
        nanosleep(&nap, NULL);
    }
}

/* ---- status file ---- */

static int parse_status(const char *text, struct shm_status *st)
{
    memset(st, 0, sizeof(*st));
    const char *p = text;
    while (*p != '\0') {
        const char *eol = strchr(p, '\n');
        size_t len = eol ? (size_t)(eol - p) : strlen(p);
        char line[128];
        if (len < sizeof(line)) {
            memcpy(line, p, len);
            line[len] = '\0';
            char *eq = strchr(line, '=');
            if (eq != NULL) {
                *eq = '\0';
                const char *v = eq + 1;
                if (strcmp(line, "pid") == 0)
                    st->pid = strtoll(v, NULL, 10);
                else if (strcmp(line, "start_ms") == 0)
                    st->start_ms = strtoll(v, NULL, 10);
                else if (strcmp(line, "start_ticks") == 0)
                    st->start_ticks = strtoull(v, NULL, 10);
                else if (strcmp(line, "generation") == 0)
                    st->generation = strtoull(v, NULL, 10);
                else if (strcmp(line, "state") == 0)
                    snprintf(st->state, sizeof(st->state), "%s", v);
            }
        }
        p += len;
        if (*p == '\n')
            p++;
    }
    return 0;
}

static int read_fd_text(int fd, char *buf, size_t size)
{
    ssize_t n = pread(fd, buf, size - 1, 0);
    if (n < 0)
        return -errno;
    buf[n] = '\0';
    return 0;
}

int shm_status_read(const char *run_dir, const char *instance, struct shm_status *st)
{
    char name[SHM_INSTANCE_MAX + 16];
    if (!shm_instance_valid(instance))
        return -EINVAL;
    int dirfd = shm_run_dir_open(run_dir, false, NULL, 0);
    if (dirfd < 0)
        return dirfd == -ENOTDIR ? -EPERM : dirfd;
    snprintf(name, sizeof(name), "%s.status", instance);
    int fd = status_open(dirfd, name, O_RDONLY);
    close(dirfd);
    if (fd < 0)
        return fd;
    char text[512];
    int rc = read_fd_text(fd, text, sizeof(text));
    if (rc == 0) {
        parse_status(text, st);
        /* A shared lock succeeds only when no supervisor holds the exclusive one. */
        if (flock(fd, LOCK_SH | LOCK_NB) == 0) {
            st->locked = false;
            flock(fd, LOCK_UN);
        } else {
            st->locked = errno == EWOULDBLOCK;
        }
    }
    close(fd);
    return rc;
}

/* The status file's text for STATE. Returns its length, or -EINVAL. */
static int status_text(const struct shm_segment *seg, const char *state, char *text, size_t len)
{
    const struct shm_header *h = &seg->layout->header;
    int n = snprintf(
        text, len, "pid=%lld\nstart_ms=%lld\nstart_ticks=%llu\ngeneration=%llu\nstate=%s\n",
        (long long)h->supervisor_pid, (long long)h->start_time_ms,
        (unsigned long long)h->supervisor_start_ticks, (unsigned long long)seg->generation, state);
    return n < 0 || (size_t)n >= len ? -EINVAL : n;
}

int shm_status_write(struct shm_segment *seg, const char *state)
{
    if (seg->lock_fd < 0)
        return -EBADF;
    char text[256];
    int n = status_text(seg, state, text, sizeof(text));
    if (n < 0)
        return n;
    if (pwrite(seg->lock_fd, text, (size_t)n, 0) != n)
        return -errno;
    if (ftruncate(seg->lock_fd, n) != 0)
        return -errno;
    seg->status_len = (size_t)n;
    return 0;
}

int shm_status_repair(struct shm_segment *seg, const char *state)
{
    if (seg->lock_fd < 0 || seg->run_dir_fd < 0)
        return -EBADF;
    struct stat held, named;
    if (fstat(seg->lock_fd, &held) != 0)
        return -errno;
    bool same = fstatat(seg->run_dir_fd, seg->status_name, &named, AT_SYMLINK_NOFOLLOW) == 0 &&
                named.st_dev == held.st_dev && named.st_ino == held.st_ino;
    if (!same) {
        /* Removed or replaced: a new file at the name, locked, or the old lock is kept. */
        int fd = status_open(seg->run_dir_fd, seg->status_name, O_RDWR | O_CREAT);
        if (fd < 0) {
            if (fd == -EPERM) /* not ours, or a link: out of the way, then ours */
                unlinkat(seg->run_dir_fd, seg->status_name, 0);
            fd = status_open(seg->run_dir_fd, seg->status_name, O_RDWR | O_CREAT | O_EXCL);
            if (fd < 0)
                return fd;
        }
        /* No retry here: this runs on the supervisor's loop once a second, and the next
         * second tries again. */
        if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
            int e = errno;
            close(fd);
            return -e;
        }
        (void)fchmod(fd, 0600);
        close(seg->lock_fd);
        seg->lock_fd = fd;
    } else if ((size_t)held.st_size == seg->status_len) {
        char text[256], now[256];
        int n = status_text(seg, state, text, sizeof(text));
        ssize_t r = pread(seg->lock_fd, now, sizeof(now), 0);
        if (n > 0 && r == n && memcmp(text, now, (size_t)n) == 0)
            return 0;
    }
    int rc = shm_status_write(seg, state);
    return rc == 0 ? 1 : rc;
}

/* ---- create ---- */

static uint64_t align_to(uint64_t n, uint64_t a)
{
    return (n + a - 1) / a * a;
}

/* "/dev/shm/kdeals-x" for messages, from the shm_open name "/kdeals-x". */
static const char *shm_path(const char *name, char *buf, size_t len)
{
    snprintf(buf, len, "/dev/shm%s", name);
    return buf;
}

/*
 * Checks that the segment open at FD is one of the caller's: a regular file of its effective
 * uid with mode 0600 (how kdeals creates them). Fills *ST. Returns 0, or -EPERM with ERR
 * naming the owner and what to do.
 */
static int check_owner(int fd, const char *name, struct stat *st, char *err, size_t errlen)
{
    char path[SHM_INSTANCE_MAX + 32];
    shm_path(name, path, sizeof(path));
    if (fstat(fd, st) != 0) {
        int e = errno;
        kd_seterr(err, errlen, "cannot stat %s: %s", path, strerror(e));
        return -e;
    }
    if (st->st_uid != geteuid()) {
        char owner[300];
        describe_uid(st->st_uid, owner, sizeof(owner));
        kd_seterr(err, errlen,
                  "%s belongs to %s, not to you (uid %u): it is not a segment of yours and is "
                  "not used; if no kdeals of that user runs this instance, remove it (rm %s)",
                  path, owner, (unsigned)geteuid(), path);
        return -EPERM;
    }
    if (!S_ISREG(st->st_mode) || (st->st_mode & 07777) != 0600) {
        kd_seterr(err, errlen,
                  "%s has mode %04o, not 0600: kdeals did not create it and does not use it; "
                  "remove it (rm %s)",
                  path, (unsigned)(st->st_mode & 07777), path);
        return -EPERM;
    }
    return 0;
}

/* shm_open, with a message in ERR on failure (a symbolic link at the name included). */
static int open_segment(const char *name, int flags, char *err, size_t errlen)
{
    /* glibc's shm_open adds O_NOFOLLOW and O_CLOEXEC. */
    int fd = shm_open(name, flags | O_CLOEXEC | O_NOFOLLOW, 0);
    if (fd >= 0)
        return fd;
    int e = errno;
    char path[SHM_INSTANCE_MAX + 32];
    shm_path(name, path, sizeof(path));
    if (e == ELOOP)
        kd_seterr(err, errlen,
                  "%s is a symbolic link, not a kdeals segment: it is not used; remove it (rm %s)",
                  path, path);
    else
        kd_seterr(err, errlen, "cannot open shared memory %s: %s", path, strerror(e));
    return e == ELOOP ? -EPERM : -e;
}

/*
 * Deals with a segment left behind by a dead supervisor: marks it retired so readers still
 * mapping it reattach, remembers its generation, unlinks it. Refuses (-EBUSY) when its
 * recorded supervisor is alive and not retired, which means the status file was deleted
 * under a running daemon: two supervisors must never share an instance. A dead supervisor is
 * one whose process is gone, is a zombie nobody reaped, or whose pid another process has now
 * (shm_proc_alive). Refuses (-EPERM) a file that is not one of ours, naming its owner: it is
 * neither read nor removed.
 */
static int retire_leftover(const char *name, uint64_t *generation, char *err, size_t errlen)
{
    int fd = open_segment(name, O_RDWR, err, errlen);
    if (fd == -ENOENT)
        return 0;
    if (fd < 0)
        return fd;
    struct stat st;
    int rc = check_owner(fd, name, &st, err, errlen);
    if (rc == 0 && (size_t)st.st_size >= sizeof(struct shm_header)) {
        struct shm_header *h = mmap(NULL, sizeof(*h), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (h != MAP_FAILED) {
            if (h->magic == SHM_MAGIC) {
                int64_t pid = h->supervisor_pid;
                uint64_t ticks = atomic_load(&h->layout_version) == SHM_LAYOUT_VERSION
                                     ? h->supervisor_start_ticks
                                     : 0;
                if (pid > 0 && pid != getpid() && shm_proc_alive(pid, ticks) &&
                    !atomic_load(&h->retired)) {
                    kd_seterr(err, errlen,
                              "segment %s belongs to live supervisor pid %lld but its status file "
                              "is unlocked (was it deleted?); stop pid %lld first",
                              name, (long long)pid, (long long)pid);
                    rc = -EBUSY;
                } else {
                    if (h->generation > *generation)
                        *generation = h->generation;
                    atomic_store_explicit(&h->retired, 1, memory_order_release);
                    kd_warn(
                        "replacing stale segment %s of dead supervisor pid %lld (generation %llu)",
                        name, (long long)pid, (unsigned long long)h->generation);
                }
            }
            munmap(h, sizeof(*h));
        }
    }
    close(fd);
    if (rc == 0 && shm_unlink(name) != 0 && errno != ENOENT) {
        rc = -errno;
        kd_seterr(err, errlen, "cannot remove the stale segment %s: %s", name, strerror(-rc));
    }
    return rc;
}

int shm_segment_create(struct shm_segment *seg, const struct shm_segment_options *opt, char *err,
                       size_t errlen)
{
    segment_reset(seg);
    if (!shm_instance_valid(opt->instance)) {
        kd_seterr(err, errlen, "invalid instance name '%s': use 1-47 of [A-Za-z0-9_.-]",
                  opt->instance ? opt->instance : "");
        return -EINVAL;
    }
    uint64_t caps[SHM_RING_COUNT];
    for (int i = 0; i < SHM_RING_COUNT; i++) {
        caps[i] = opt->ring_capacity[i] ? opt->ring_capacity[i] : SHM_DEFAULT_RING_CAPACITY;
        if ((caps[i] & (caps[i] - 1)) != 0 || caps[i] < RING_MIN_CAPACITY ||
            caps[i] > RING_MAX_CAPACITY) {
            kd_seterr(err, errlen, "ring %d capacity %llu: must be a power of two in [%u, %llu]", i,
                      (unsigned long long)caps[i], RING_MIN_CAPACITY,
                      (unsigned long long)RING_MAX_CAPACITY);
            return -EINVAL;
        }
    }
    snprintf(seg->name, sizeof(seg->name), "/kdeals-%s", opt->instance);
    snprintf(seg->status_path, sizeof(seg->status_path), "%s/%s.status", opt->run_dir,
             opt->instance);
    snprintf(seg->status_name, sizeof(seg->status_name), "%s.status", opt->instance);

    /* 1. The instance lock, in the checked run folder. */
    int dirfd = shm_run_dir_open(opt->run_dir, false, err, errlen);
    if (dirfd < 0)
        return dirfd;
    int lfd = status_open(dirfd, seg->status_name, O_RDWR | O_CREAT);
    if (lfd < 0) {
        close(dirfd);
        if (lfd == -EPERM)
            kd_seterr(err, errlen,
                      "status file %s is not a regular file of yours (a link, another owner or "
                      "more than one name): remove it",
                      seg->status_path);
        else
            kd_seterr(err, errlen, "cannot open status file %s: %s", seg->status_path,
                      strerror(-lfd));
        return lfd;
    }
    int locked = lock_instance(lfd);
    if (locked != 0) {
        int e = -locked;
        char text[512] = "";
        struct shm_status st = {0};
        if (read_fd_text(lfd, text, sizeof(text)) == 0)
            parse_status(text, &st);
        close(lfd);
        close(dirfd);
        if (e == EWOULDBLOCK) {
            kd_seterr(err, errlen,
                      "instance '%s' is already running (supervisor pid %lld, status file %s); "
                      "stop it first with `kdeals stop`",
                      opt->instance, (long long)st.pid, seg->status_path);
            return -EBUSY;
        }
        kd_seterr(err, errlen, "cannot lock %s: %s", seg->status_path, strerror(e));
        return -e;
    }
    (void)fchmod(lfd, 0600);
    seg->lock_fd = lfd;
    seg->run_dir_fd = dirfd;

    /* 2. The previous generation: from the status file and from any leftover segment. */
    char text[512] = "";
    struct shm_status prev = {0};
    if (read_fd_text(lfd, text, sizeof(text)) == 0)
        parse_status(text, &prev);
    uint64_t generation = prev.generation;
    int rc = retire_leftover(seg->name, &generation, err, errlen);
    if (rc != 0)
        goto fail;

    /* 3. The new segment. */
    uint64_t size = align_to(sizeof(struct shm_layout), SHM_RING_ALIGN);
    uint64_t offsets[SHM_RING_COUNT];
    for (int i = 0; i < SHM_RING_COUNT; i++) {
        offsets[i] = size;
        size = align_to(size + caps[i], SHM_RING_ALIGN);
    }
    int fd = shm_open(seg->name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        rc = -errno;
        kd_seterr(err, errlen, "cannot create shared memory %s: %s", seg->name, strerror(-rc));
        goto fail;
    }
    seg->fd = fd;
    if (fchmod(fd, 0600) != 0 || ftruncate(fd, (off_t)size) != 0) {
        rc = -errno;
        kd_seterr(err, errlen, "cannot size shared memory %s to %llu bytes: %s", seg->name,
                  (unsigned long long)size, strerror(-rc));
        goto fail_unlink;
    }
    void *map = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (map == MAP_FAILED) {
        rc = -errno;
        kd_seterr(err, errlen, "cannot map %s: %s", seg->name, strerror(-rc));
        goto fail_unlink;
    }
    seg->layout = map;
    seg->size = size;
    seg->writable = true;
    seg->creator = true;
    seg->generation = generation + 1;
    struct stat st;
    if (fstat(fd, &st) == 0) {
        seg->dev = st.st_dev;
        seg->ino = st.st_ino;
    }

    struct shm_layout *l = seg->layout;
    struct shm_header *h = &l->header;
    h->magic = SHM_MAGIC;
    h->fixed_size = (uint32_t)sizeof(struct shm_layout);
    h->segment_size = size;
    h->generation = seg->generation;
    h->supervisor_pid = getpid();
    h->start_time_ms = kd_wall_ms();
    h->supervisor_start_ticks = shm_proc_start_ticks(getpid());
    h->ring_count = SHM_RING_COUNT;
    snprintf(h->instance, sizeof(h->instance), "%s", opt->instance);
    for (int i = 0; i < SHM_RING_COUNT; i++) {
        h->ring_data_offset[i] = offsets[i];
        h->ring_capacity[i] = caps[i];
        rc = ring_format(&l->rings[i], caps[i], offsets[i]);
        if (rc != 0) {
            kd_seterr(err, errlen, "cannot format ring %d", i);
            goto fail_unmap;
        }
    }
    for (int i = 0; i < SHM_ROLE_COUNT; i++)
        atomic_store_explicit(&l->procs[i].last_exit_status, -1, memory_order_relaxed);

    rc = shm_status_write(seg, "starting");
    if (rc != 0) {
        kd_seterr(err, errlen, "cannot write status file %s: %s", seg->status_path, strerror(-rc));
        goto fail_unmap;
    }
    return 0;

fail_unmap:
    munmap(seg->layout, seg->size);
    seg->layout = NULL;
fail_unlink:
    shm_unlink(seg->name);
    close(seg->fd);
    seg->fd = -1;
fail:
    close(seg->lock_fd);
    seg->lock_fd = -1;
    close(seg->run_dir_fd);
    seg->run_dir_fd = -1;
    return rc;
}

void shm_segment_publish(struct shm_segment *seg)
{
    atomic_store_explicit(&seg->layout->header.layout_version, SHM_LAYOUT_VERSION,
                          memory_order_release);
}

/* ---- attach ---- */

/* The header's identity: magic, version (0: being initialised), fixed size. */
static int check_header(const struct shm_header *h, char *err, size_t errlen)
{
    uint32_t version = atomic_load_explicit(&h->layout_version, memory_order_acquire);
    if (version == 0) { /* the creator publishes the version last */
        kd_seterr(err, errlen, "being initialised");
        return -EAGAIN;
    }
    if (h->magic != SHM_MAGIC) {
        kd_seterr(err, errlen, "not a kdeals segment (bad magic)");
        return -EPROTO;
    }
    if (version != SHM_LAYOUT_VERSION || h->fixed_size != sizeof(struct shm_layout)) {
        kd_seterr(err, errlen,
                  "layout version %u, this kdeals understands %u: run the same kdeals version as "
                  "the daemon",
                  version, SHM_LAYOUT_VERSION);
        return -EPROTO;
    }
    return 0;
}

int shm_layout_check(const struct shm_layout *l, size_t size, char *err, size_t errlen)
{
    const struct shm_header *h = &l->header;
    if (size < sizeof(struct shm_header)) {
        kd_seterr(err, errlen, "being initialised");
        return -EAGAIN;
    }
    int rc = check_header(h, err, errlen);
    if (rc != 0)
        return rc;
    if (size < sizeof(struct shm_layout) || h->segment_size > size ||
        h->segment_size < sizeof(struct shm_layout)) {
        kd_seterr(err, errlen, "truncated (%zu bytes, the header says %llu)", size,
                  (unsigned long long)h->segment_size);
        return -EPROTO;
    }
    if (h->ring_count != SHM_RING_COUNT || memchr(h->instance, '\0', sizeof(h->instance)) == NULL) {
        kd_seterr(err, errlen, "corrupt header (ring count %u)", h->ring_count);
        return -EPROTO;
    }
    uint64_t next_free = align_to(sizeof(struct shm_layout), SHM_RING_ALIGN);
    for (int i = 0; i < SHM_RING_COUNT; i++) {
        uint64_t cap = h->ring_capacity[i], off = h->ring_data_offset[i];
        const struct shm_ring *ctl = &l->rings[i];
        if ((cap & (cap - 1)) != 0 || cap < RING_MIN_CAPACITY || cap > RING_MAX_CAPACITY ||
            off % SHM_RING_ALIGN != 0 || off < next_free || off > h->segment_size ||
            cap > h->segment_size - off || ctl->capacity != cap || ctl->data_offset != off ||
            ctl->max_record != cap / 4) {
            kd_seterr(err, errlen, "corrupt %s ring (capacity %llu at offset %llu)",
                      shm_ring_name((enum shm_ring_id)i), (unsigned long long)cap,
                      (unsigned long long)off);
            return -EPROTO;
        }
        next_free = off + cap;
    }
    return 0;
}

static int attach_fd(struct shm_segment *seg, int fd, const char *instance, enum shm_access access,
                     char *err, size_t errlen)
{
    bool rw = access == SHM_READ_WRITE;
    char path[SHM_INSTANCE_MAX + 32];
    shm_path(seg->name, path, sizeof(path));
    struct stat st;
    int rc = check_owner(fd, seg->name, &st, err, errlen);
    if (rc != 0)
        goto out_fd;
    if ((size_t)st.st_size < sizeof(struct shm_header)) {
        /* ftruncate has not happened yet: a creator is mid-way. */
        kd_seterr(err, errlen, "shared memory %s is being initialised", path);
        rc = -EAGAIN;
        goto out_fd;
    }
    struct shm_header *probe = mmap(NULL, sizeof(*probe), PROT_READ, MAP_SHARED, fd, 0);
    if (probe == MAP_FAILED) {
        rc = -errno;
        kd_seterr(err, errlen, "cannot map %s: %s", path, strerror(-rc));
        goto out_fd;
    }
    uint64_t size = probe->segment_size;
    char why[200];
    rc = check_header(probe, why, sizeof(why));
    munmap(probe, sizeof(*probe));
    if (rc != 0) {
        kd_seterr(err, errlen, "shared memory %s: %s", path, why);
        goto out_fd;
    }
    if (size > (uint64_t)st.st_size || size < sizeof(struct shm_layout)) {
        kd_seterr(err, errlen, "%s is truncated (%lld of %llu bytes)", path, (long long)st.st_size,
                  (unsigned long long)size);
        rc = -EPROTO;
        goto out_fd;
    }
    void *map = mmap(NULL, size, rw ? PROT_READ | PROT_WRITE : PROT_READ, MAP_SHARED, fd, 0);
    if (map == MAP_FAILED) {
        rc = -errno;
        kd_seterr(err, errlen, "cannot map %s: %s", path, strerror(-rc));
        goto out_fd;
    }
    rc = shm_layout_check(map, size, why, sizeof(why));
    if (rc == 0 && strcmp(((const struct shm_layout *)map)->header.instance, instance) != 0) {
        snprintf(why, sizeof(why), "it is the segment of instance '%.47s', not '%s'",
                 ((const struct shm_layout *)map)->header.instance, instance);
        rc = -EPROTO;
    }
    if (rc != 0) {
        kd_seterr(err, errlen, "shared memory %s: %s", path, why);
        munmap(map, size);
        goto out_fd;
    }
    seg->layout = map;
    seg->size = size;
    seg->fd = fd;
    seg->writable = rw;
    seg->generation = seg->layout->header.generation;
    seg->dev = st.st_dev;
    seg->ino = st.st_ino;
    return 0;

out_fd:
    close(fd);
    return rc;
}

int shm_segment_attach(struct shm_segment *seg, const char *instance, enum shm_access access,
                       char *err, size_t errlen)
{
    segment_reset(seg);
    if (!shm_instance_valid(instance)) {
        kd_seterr(err, errlen, "invalid instance name '%s'", instance ? instance : "");
        return -EINVAL;
    }
    snprintf(seg->name, sizeof(seg->name), "/kdeals-%s", instance);
    int fd = open_segment(seg->name, access == SHM_READ_WRITE ? O_RDWR : O_RDONLY, err, errlen);
    if (fd == -ENOENT)
        kd_seterr(err, errlen, "instance '%s' is not running (no shared memory /dev/shm%s)",
                  instance, seg->name);
    if (fd < 0)
        return fd;
    return attach_fd(seg, fd, instance, access, err, errlen);
}

int shm_segment_attach_fd(struct shm_segment *seg, int fd, const char *instance,
                          enum shm_access access, char *err, size_t errlen)
{
    segment_reset(seg);
    if (!shm_instance_valid(instance)) {
        kd_seterr(err, errlen, "invalid instance name '%s'", instance ? instance : "");
        close(fd);
        return -EINVAL;
    }
    snprintf(seg->name, sizeof(seg->name), "/kdeals-%s", instance);
    if (fcntl(fd, F_SETFD, FD_CLOEXEC) != 0) {
        int e = errno;
        kd_seterr(err, errlen, "shared memory descriptor %d: %s", fd, strerror(e));
        close(fd);
        return -e;
    }
    return attach_fd(seg, fd, instance, access, err, errlen);
}

int shm_segment_check(const struct shm_segment *seg)
{
    if (seg->layout == NULL)
        return -ENOENT;
    if (atomic_load_explicit(&seg->layout->header.retired, memory_order_acquire))
        return -ESTALE;
    int fd = shm_open(seg->name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW, 0);
    if (fd < 0)
        return errno == ENOENT ? -ENOENT : errno == ELOOP ? -ESTALE : -errno;
    struct stat st;
    int rc = 0;
    if (fstat(fd, &st) != 0)
        rc = -errno;
    else if (st.st_ino != seg->ino || st.st_dev != seg->dev)
        rc = -ESTALE;
    close(fd);
    return rc;
}

void shm_segment_detach(struct shm_segment *seg)
{
    if (seg->layout != NULL)
        munmap(seg->layout, seg->size);
    if (seg->fd >= 0)
        close(seg->fd);
    if (seg->lock_fd >= 0)
        close(seg->lock_fd);
    if (seg->run_dir_fd >= 0)
        close(seg->run_dir_fd);
    segment_reset(seg);
}

void shm_segment_destroy(struct shm_segment *seg)
{
    if (seg->layout != NULL && seg->creator) {
        atomic_store_explicit(&seg->layout->header.retired, 1, memory_order_release);
        shm_unlink(seg->name);
        shm_status_write(seg, "stopped");
    }
    shm_segment_detach(seg);
}

void *shm_segment_ring_data(const struct shm_segment *seg, enum shm_ring_id id)
{
    return (uint8_t *)seg->layout + seg->layout->header.ring_data_offset[id];
}

/* ---- config slot ---- */

int64_t shm_config_publish(struct shm_layout *l, const void *buf, size_t len)
{
    struct shm_config_slot *c = &l->config;
    if (len > SHM_CONFIG_MAX)
        return -E2BIG;
    uint64_t gen = atomic_load_explicit(&c->generation, memory_order_relaxed);
    unsigned next = (unsigned)((gen + 1) & 1);
    /* A reader still copying this buffer from two publications ago must see the new
     * generation if it sees any new byte: the fence orders the stores below after it. */
    atomic_thread_fence(memory_order_release);
    const uint8_t *src = buf;
    for (size_t i = 0; i * 8 < len; i++) {
        uint64_t w = 0;
        memcpy(&w, src + i * 8, len - i * 8 < 8 ? len - i * 8 : 8);
        atomic_store_explicit(&c->buf[next][i], w, memory_order_relaxed);
    }
    atomic_store_explicit(&c->len[next], (uint32_t)len, memory_order_relaxed);
    atomic_store_explicit(&c->generation, gen + 1, memory_order_release);
    return (int64_t)(gen + 1);
}

int64_t shm_config_read(const struct shm_layout *l, void *buf, size_t cap, size_t *len)
{
    const struct shm_config_slot *c = &l->config;
    uint8_t *dst = buf;
    for (int tries = 0; tries < 100; tries++) {
        uint64_t gen = atomic_load_explicit(&c->generation, memory_order_acquire);
        if (gen == 0)
            return 0;
        unsigned cur = (unsigned)(gen & 1);
        size_t n = atomic_load_explicit(&c->len[cur], memory_order_relaxed);
        if (n > cap || n > SHM_CONFIG_MAX)
            return -E2BIG;
        for (size_t i = 0; i * 8 < n; i++) {
            uint64_t w = atomic_load_explicit(&c->buf[cur][i], memory_order_relaxed);
            memcpy(dst + i * 8, &w, n - i * 8 < 8 ? n - i * 8 : 8);
        }
        atomic_thread_fence(memory_order_acquire);
        /* The writer fills the other buffer; a changed generation may mean it wrapped onto
         * ours, so only an unchanged one proves the copy is whole. */
        if (atomic_load_explicit(&c->generation, memory_order_relaxed) == gen) {
            *len = n;
            return (int64_t)gen;
        }
    }
    return -EAGAIN;
}
