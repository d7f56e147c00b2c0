/*
 * segment.c: create, attach, replace and retire the instance segment. See segment.h.
 *
 * Why flock on a status file rather than a pid file check: the kernel releases a flock when
 * its holder dies, however it dies, so there is no window in which a dead supervisor still
 * "owns" the instance and no pid-reuse guesswork. The status file itself stays on disk
 * between runs and carries the last generation, so generations increase across restarts
 * even after a clean shutdown removed the segment.
 */
#include "shm/segment.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
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
    char path[PATH_MAX];
    if (!shm_instance_valid(instance))
        return -EINVAL;
    snprintf(path, sizeof(path), "%s/%s.status", run_dir, instance);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
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

int shm_status_write(struct shm_segment *seg, const char *state)
{
    if (seg->lock_fd < 0)
        return -EBADF;
    char text[256];
    const struct shm_header *h = &seg->layout->header;
    int n = snprintf(text, sizeof(text), "pid=%lld\nstart_ms=%lld\ngeneration=%llu\nstate=%s\n",
                     (long long)h->supervisor_pid, (long long)h->start_time_ms,
                     (unsigned long long)seg->generation, state);
    if (n < 0 || (size_t)n >= sizeof(text))
        return -EINVAL;
    if (pwrite(seg->lock_fd, text, (size_t)n, 0) != n)
        return -errno;
    if (ftruncate(seg->lock_fd, n) != 0)
        return -errno;
    return 0;
}

/* ---- create ---- */

static uint64_t align_to(uint64_t n, uint64_t a)
{
    return (n + a - 1) / a * a;
}

/*
 * Deals with a segment left behind by a dead supervisor: marks it retired so readers still
 * mapping it reattach, remembers its generation, unlinks it. Refuses (-EBUSY) when its
 * recorded supervisor is alive and not retired, which means the status file was deleted
 * under a running daemon: two supervisors must never share an instance.
 */
static int retire_leftover(const char *name, uint64_t *generation, char *err, size_t errlen)
{
    int fd = shm_open(name, O_RDWR, 0);
    if (fd < 0)
        return errno == ENOENT ? 0 : -errno;
    struct stat st;
    int rc = 0;
    if (fstat(fd, &st) == 0 && (size_t)st.st_size >= sizeof(struct shm_header)) {
        struct shm_header *h = mmap(NULL, sizeof(*h), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (h != MAP_FAILED) {
            if (h->magic == SHM_MAGIC) {
                pid_t pid = (pid_t)h->supervisor_pid;
                if (pid > 0 && pid != getpid() && kill(pid, 0) == 0 && !atomic_load(&h->retired)) {
                    kd_seterr(err, errlen,
                              "segment %s belongs to live supervisor pid %d but its status file is "
                              "unlocked (was it deleted?); stop pid %d first",
                              name, (int)pid, (int)pid);
                    rc = -EBUSY;
                } else {
                    if (h->generation > *generation)
                        *generation = h->generation;
                    atomic_store_explicit(&h->retired, 1, memory_order_release);
                    kd_warn(
                        "replacing stale segment %s of dead supervisor pid %d (generation %llu)",
                        name, (int)pid, (unsigned long long)h->generation);
                }
            }
            munmap(h, sizeof(*h));
        }
    }
    close(fd);
    if (rc == 0 && shm_unlink(name) != 0 && errno != ENOENT)
        rc = -errno;
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

    /* 1. The instance lock. */
    int lfd = open(seg->status_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (lfd < 0) {
        int e = errno;
        kd_seterr(err, errlen, "cannot open status file %s: %s (does run_dir exist?)",
                  seg->status_path, strerror(e));
        return -e;
    }
    if (flock(lfd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        char text[512] = "";
        struct shm_status st = {0};
        if (read_fd_text(lfd, text, sizeof(text)) == 0)
            parse_status(text, &st);
        close(lfd);
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
    int fd = shm_open(seg->name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
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
    return rc;
}

void shm_segment_publish(struct shm_segment *seg)
{
    atomic_store_explicit(&seg->layout->header.layout_version, SHM_LAYOUT_VERSION,
                          memory_order_release);
}

/* ---- attach ---- */

int shm_segment_attach(struct shm_segment *seg, const char *instance, enum shm_access access,
                       char *err, size_t errlen)
{
    segment_reset(seg);
    if (!shm_instance_valid(instance)) {
        kd_seterr(err, errlen, "invalid instance name '%s'", instance ? instance : "");
        return -EINVAL;
    }
    snprintf(seg->name, sizeof(seg->name), "/kdeals-%s", instance);
    bool rw = access == SHM_READ_WRITE;
    int fd = shm_open(seg->name, (rw ? O_RDWR : O_RDONLY) | O_CLOEXEC, 0);
    if (fd < 0) {
        int e = errno;
        if (e == ENOENT)
            kd_seterr(err, errlen, "instance '%s' is not running (no shared memory %s)", instance,
                      seg->name);
        else
            kd_seterr(err, errlen, "cannot open shared memory %s: %s", seg->name, strerror(e));
        return -e;
    }
    int rc = 0;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        rc = -errno;
        kd_seterr(err, errlen, "cannot stat %s: %s", seg->name, strerror(-rc));
        goto out_fd;
    }
    if ((size_t)st.st_size < sizeof(struct shm_header)) {
        /* ftruncate has not happened yet: a creator is mid-way. */
        kd_seterr(err, errlen, "shared memory %s is being initialised", seg->name);
        rc = -EAGAIN;
        goto out_fd;
    }
    struct shm_header *probe = mmap(NULL, sizeof(*probe), PROT_READ, MAP_SHARED, fd, 0);
    if (probe == MAP_FAILED) {
        rc = -errno;
        kd_seterr(err, errlen, "cannot map %s: %s", seg->name, strerror(-rc));
        goto out_fd;
    }
    uint32_t version = atomic_load_explicit(&probe->layout_version, memory_order_acquire);
    uint64_t magic = probe->magic;
    uint64_t size = probe->segment_size;
    uint32_t fixed = probe->fixed_size;
    munmap(probe, sizeof(*probe));

    if (version == 0) {
        kd_seterr(err, errlen, "shared memory %s is being initialised", seg->name);
        rc = -EAGAIN;
    } else if (magic != SHM_MAGIC) {
        kd_seterr(err, errlen, "%s is not a kdeals segment (bad magic)", seg->name);
        rc = -EPROTO;
    } else if (version != SHM_LAYOUT_VERSION || fixed != sizeof(struct shm_layout)) {
        kd_seterr(err, errlen,
                  "%s has layout version %u, this kdeals understands %u: run the same kdeals "
                  "version as the daemon",
                  seg->name, version, SHM_LAYOUT_VERSION);
        rc = -EPROTO;
    } else if (size > (uint64_t)st.st_size || size < sizeof(struct shm_layout)) {
        kd_seterr(err, errlen, "%s is truncated (%lld of %llu bytes)", seg->name,
                  (long long)st.st_size, (unsigned long long)size);
        rc = -EPROTO;
    }
    if (rc != 0)
        goto out_fd;
    void *map = mmap(NULL, size, rw ? PROT_READ | PROT_WRITE : PROT_READ, MAP_SHARED, fd, 0);
    if (map == MAP_FAILED) {
        rc = -errno;
        kd_seterr(err, errlen, "cannot map %s: %s", seg->name, strerror(-rc));
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

int shm_segment_check(const struct shm_segment *seg)
{
    if (seg->layout == NULL)
        return -ENOENT;
    if (atomic_load_explicit(&seg->layout->header.retired, memory_order_acquire))
        return -ESTALE;
    int fd = shm_open(seg->name, O_RDONLY | O_CLOEXEC, 0);
    if (fd < 0)
        return errno == ENOENT ? -ENOENT : -errno;
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
    memcpy(c->buf[next], buf, len);
    c->len[next] = (uint32_t)len;
    atomic_store_explicit(&c->generation, gen + 1, memory_order_release);
    return (int64_t)(gen + 1);
}

int64_t shm_config_read(const struct shm_layout *l, void *buf, size_t cap, size_t *len)
{
    const struct shm_config_slot *c = &l->config;
    for (int tries = 0; tries < 100; tries++) {
        uint64_t gen = atomic_load_explicit(&c->generation, memory_order_acquire);
        if (gen == 0)
            return 0;
        unsigned cur = (unsigned)(gen & 1);
        size_t n = c->len[cur];
        if (n > cap || n > SHM_CONFIG_MAX)
            return -E2BIG;
        memcpy(buf, c->buf[cur], n);
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
