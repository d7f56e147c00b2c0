/*
 * keyseg.c: the key segment: open, create, share, sweep, close. See keyseg.h.
 *
 * Why a flock on the segment itself: every process that maps the segment read-write holds a
 * shared lock on its own open file description, and the kernel drops it when the process dies,
 * however it dies. So "nobody uses this key any more" is exactly "an exclusive lock can be
 * taken", with no pid lists to keep and no window in which a dead process still counts. The
 * one subtlety is that flock converts a lock by dropping it first: a process that took the
 * lock exclusively (to create) and then shares it may, for an instant, hold none, and a leaving
 * process may unlink the segment then. So whoever has just taken its shared lock checks that
 * the file is still linked (st_nlink > 0); if not, it opens the name again, and gets (or makes)
 * the segment everyone else will use. Once a shared lock is held the segment cannot be unlinked.
 *
 * Members are claimed like the bucket's reservation slots: one word packs owner, generation and
 * state, and every transition is a CAS on the exact word, so a slot is never handed out twice
 * and a sweep never frees a slot that was re-claimed meanwhile. The share accounts are plain
 * atomics; the share rule reads them without a lock, so it is approximate by at most the
 * requests being decided at the same moment, which only moves a share by one request.
 */
#include "shm/keyseg.h"

#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/log.h"
#include "base/proc.h"

#define KS_OPEN_TRIES   200 /* about 5 s of 25 ms naps for a creator to finish */
#define KS_NAP_NS       (25 * 1000000L)
#define MEMBER_FREE     0u
#define MEMBER_HELD     1u
#define MEMBER_CLAIMING 2u
#define MEMBER_GEN_MASK 0x3fffffffu
#define SHARE_SCALE     1024 /* share accounts are compared in 1/1024 token per weight unit */
#define SHARE_RETRY_DIV 4    /* a member held back asks again after a quarter Keepa minute */

static void nap(void)
{
    struct timespec ts = {0, KS_NAP_NS};
    nanosleep(&ts, NULL);
}

static void reset(struct ks_segment *ks)
{
    memset(ks, 0, sizeof(*ks));
    ks->fd = -1;
}

static bool fingerprint_valid(const char *fp)
{
    size_t n = fp != NULL ? strlen(fp) : 0;
    if (n == 0 || n >= SHM_KEY_FP_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((fp[i] >= '0' && fp[i] <= '9') || (fp[i] >= 'a' && fp[i] <= 'f')))
            return false;
    return true;
}

void ks_name(const char *fingerprint, char *out, size_t len)
{
    snprintf(out, len, "%s%s", KS_NAME_PREFIX, fingerprint);
}

/* "alice (uid 1001)" for UID, or "uid 1001" when it has no name. */
static void owner_text(uid_t uid, char *out, size_t len)
{
    struct passwd pw, *res = NULL;
    char buf[1024];
    if (getpwuid_r(uid, &pw, buf, sizeof(buf), &res) == 0 && res != NULL)
        snprintf(out, len, "user %s (uid %u)", res->pw_name, (unsigned)uid);
    else
        snprintf(out, len, "uid %u", (unsigned)uid);
}

/*
 * Refuses a segment that is not ours, or that others may open: the bucket decides when this
 * user's key is spent, and a segment someone else controls could make it spend into 429s or
 * stop it. Returns 0 or -EACCES (ERR names the owner).
 */
static int check_owner(int fd, const char *name, char *err, size_t errlen)
{
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        kd_seterr(err, errlen, "cannot stat shared memory %s: %s", name, strerror(e));
        return -e;
    }
    if (st.st_uid != geteuid()) {
        char who[300], me[300];
        owner_text(st.st_uid, who, sizeof(who));
        owner_text(geteuid(), me, sizeof(me));
        kd_seterr(err, errlen,
                  "shared memory %s (a key's token bucket) is owned by %s, not by %s who runs "
                  "kdeals: refusing to share a token bucket with another user; run every "
                  "instance of a key as one user",
                  name, who, me);
        return -EACCES;
    }
    if ((st.st_mode & 077) != 0 && fchmod(fd, 0600) != 0) {
        int e = errno;
        kd_seterr(err, errlen, "shared memory %s has mode %04o and cannot be made 0600: %s", name,
                  (unsigned)(st.st_mode & 07777), strerror(e));
        return -e;
    }
    return 0;
}

/* Takes flock OP (non-blocking) on FD, retrying for a few seconds. Returns 0 or -errno. */
static int lock_wait(int fd, int op)
{
    for (int i = 0; i < KS_OPEN_TRIES; i++) {
        if (flock(fd, op | LOCK_NB) == 0)
            return 0;
        if (errno != EWOULDBLOCK && errno != EINTR)
            return -errno;
        nap();
    }
    return -ETIMEDOUT;
}

static bool still_linked(int fd)
{
    struct stat st;
    return fstat(fd, &st) == 0 && st.st_nlink > 0;
}

/* Formats a fresh (or abandoned) segment on FD, whose exclusive lock the caller holds. */
static int format(struct ks_segment *ks, const struct tb_params *p, char *err, size_t errlen)
{
    size_t size = sizeof(struct shm_key_layout);
    if (ftruncate(ks->fd, (off_t)size) != 0) {
        int e = errno;
        kd_seterr(err, errlen, "cannot size shared memory %s: %s", ks->name, strerror(e));
        return -e;
    }
    void *map = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, ks->fd, 0);
    if (map == MAP_FAILED) {
        int e = errno;
        kd_seterr(err, errlen, "cannot map %s: %s", ks->name, strerror(e));
        return -e;
    }
    struct shm_key_layout *l = map;
    memset(l, 0, size);
    int rc = tb_init(&l->tokens, p, kd_mono_ns());
    if (rc != 0) {
        munmap(map, size);
        kd_seterr(err, errlen, "invalid [tokens] settings for the key's bucket");
        return rc;
    }
    l->header.magic = SHM_KEY_MAGIC;
    l->header.fixed_size = (uint32_t)size;
    l->header.created_ms = kd_wall_ms();
    l->header.creator_pid = getpid();
    snprintf(l->header.fingerprint, sizeof(l->header.fingerprint), "%s", ks->fingerprint);
    atomic_store_explicit(&l->header.layout_version, SHM_LAYOUT_VERSION, memory_order_release);
    ks->layout = l;
    ks->size = size;
    return 0;
}

/* Maps an initialised segment (the caller holds a lock on it). -EAGAIN: not initialised. */
static int map_existing(struct ks_segment *ks, bool rw, char *err, size_t errlen)
{
    struct stat st;
    if (fstat(ks->fd, &st) != 0) {
        int e = errno;
        kd_seterr(err, errlen, "cannot stat %s: %s", ks->name, strerror(e));
        return -e;
    }
    if ((size_t)st.st_size < sizeof(struct shm_key_header)) {
        kd_seterr(err, errlen, "shared memory %s is being initialised", ks->name);
        return -EAGAIN;
    }
    const struct shm_key_header *probe =
        mmap(NULL, sizeof(*probe), PROT_READ, MAP_SHARED, ks->fd, 0);
    if (probe == MAP_FAILED) {
        int e = errno;
        kd_seterr(err, errlen, "cannot map %s: %s", ks->name, strerror(e));
        return -e;
    }
    uint32_t version = atomic_load_explicit(&probe->layout_version, memory_order_acquire);
    uint64_t magic = probe->magic;
    uint32_t fixed = probe->fixed_size;
    munmap((void *)probe, sizeof(*probe));
    if (version == 0) {
        kd_seterr(err, errlen, "shared memory %s is being initialised", ks->name);
        return -EAGAIN;
    }
    if (magic != SHM_KEY_MAGIC) {
        kd_seterr(err, errlen, "%s is not a kdeals key segment (bad magic)", ks->name);
        return -EPROTO;
    }
    if (version != SHM_LAYOUT_VERSION || fixed != sizeof(struct shm_key_layout) ||
        (size_t)st.st_size < sizeof(struct shm_key_layout)) {
        kd_seterr(err, errlen,
                  "%s (a key's token bucket) has layout version %u, this kdeals understands %u: "
                  "every instance that uses the key must run the same kdeals version",
                  ks->name, version, SHM_LAYOUT_VERSION);
        return -EPROTO;
    }
    size_t size = sizeof(struct shm_key_layout);
    void *map = mmap(NULL, size, rw ? PROT_READ | PROT_WRITE : PROT_READ, MAP_SHARED, ks->fd, 0);
    if (map == MAP_FAILED) {
        int e = errno;
        kd_seterr(err, errlen, "cannot map %s: %s", ks->name, strerror(e));
        return -e;
    }
    ks->layout = map;
    ks->size = size;
    return 0;
}

static void unmap_close(struct ks_segment *ks)
{
    if (ks->layout != NULL)
        munmap(ks->layout, ks->size);
    if (ks->fd >= 0)
        close(ks->fd);
    ks->layout = NULL;
    ks->fd = -1;
}

/*
 * One try at opening: 0 with the segment mapped and a shared lock held; -EAGAIN to try again
 * (the file was unlinked under us, or its creator has not finished); another error for good.
 */
static int open_once(struct ks_segment *ks, const struct tb_params *p, char *err, size_t errlen)
{
    bool created = false;
    ks->fd = shm_open(ks->name, O_RDWR | O_CLOEXEC, 0);
    if (ks->fd < 0 && errno == ENOENT) {
        ks->fd = shm_open(ks->name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (ks->fd < 0 && errno == EEXIST)
            return -EAGAIN;
        created = ks->fd >= 0;
    }
    if (ks->fd < 0) {
        int e = errno;
        kd_seterr(err, errlen, "cannot open shared memory %s: %s", ks->name, strerror(e));
        return -e;
    }
    int rc = check_owner(ks->fd, ks->name, err, errlen);
    if (rc != 0)
        return rc;
    if (created) {
        /* Nobody can have a lock on a file this new except a racing opener, which then waits
         * for the exclusive one below. */
        if (flock(ks->fd, LOCK_EX) != 0) {
            int e = errno;
            kd_seterr(err, errlen, "cannot lock %s: %s", ks->name, strerror(e));
            return -e;
        }
        if (!still_linked(ks->fd))
            return -EAGAIN;
        rc = format(ks, p, err, errlen);
        if (rc != 0) {
            shm_unlink(ks->name);
            return rc;
        }
        if (flock(ks->fd, LOCK_SH) != 0) {
            int e = errno;
            kd_seterr(err, errlen, "cannot lock %s: %s", ks->name, strerror(e));
            return -e;
        }
        return still_linked(ks->fd) ? 0 : -EAGAIN;
    }
    rc = lock_wait(ks->fd, LOCK_SH);
    if (rc != 0) {
        kd_seterr(err, errlen, "cannot lock %s: %s", ks->name,
                  rc == -ETIMEDOUT ? "held exclusively for seconds" : strerror(-rc));
        return rc == -ETIMEDOUT ? -EAGAIN : rc;
    }
    if (!still_linked(ks->fd))
        return -EAGAIN;
    rc = map_existing(ks, true, err, errlen);
    if (rc != -EAGAIN)
        return rc;
    /* Holding a shared lock and still not initialised: its creator died half-way (it held the
     * lock exclusively until done). Whoever gets the lock exclusively formats it again. */
    if (flock(ks->fd, LOCK_EX | LOCK_NB) != 0)
        return -EAGAIN; /* someone else is at it; our shared lock may be gone: start over */
    if (!still_linked(ks->fd))
        return -EAGAIN;
    rc = format(ks, p, err, errlen);
    if (rc != 0)
        return rc;
    if (flock(ks->fd, LOCK_SH) != 0)
        return -errno;
    return still_linked(ks->fd) ? 0 : -EAGAIN;
}

int ks_open(struct ks_segment *ks, const char *fingerprint, const struct tb_params *p, char *err,
            size_t errlen)
{
    reset(ks);
    if (!fingerprint_valid(fingerprint)) {
        kd_seterr(err, errlen, "invalid key fingerprint");
        return -EINVAL;
    }
    snprintf(ks->fingerprint, sizeof(ks->fingerprint), "%s", fingerprint);
    ks_name(fingerprint, ks->name, sizeof(ks->name));
    int rc = -EAGAIN;
    for (int i = 0; i < KS_OPEN_TRIES && rc == -EAGAIN; i++) {
        if (i > 0)
            nap();
        rc = open_once(ks, p, err, errlen);
        if (rc != 0)
            unmap_close(ks);
    }
    if (rc == -EAGAIN) {
        kd_seterr(err, errlen, "shared memory %s was never initialised by its creator", ks->name);
        rc = -ETIMEDOUT;
    }
    if (rc != 0) {
        char name[sizeof(ks->name)];
        memcpy(name, ks->name, sizeof(name));
        reset(ks);
        memcpy(ks->name, name, sizeof(name));
        return rc;
    }
    ks->writable = true;
    return 0;
}

int ks_attach_ro(struct ks_segment *ks, const char *fingerprint, char *err, size_t errlen)
{
    reset(ks);
    if (!fingerprint_valid(fingerprint)) {
        kd_seterr(err, errlen, "invalid key fingerprint");
        return -EINVAL;
    }
    snprintf(ks->fingerprint, sizeof(ks->fingerprint), "%s", fingerprint);
    ks_name(fingerprint, ks->name, sizeof(ks->name));
    ks->fd = shm_open(ks->name, O_RDONLY | O_CLOEXEC, 0);
    if (ks->fd < 0) {
        int e = errno;
        if (e == ENOENT)
            kd_seterr(err, errlen, "no token bucket for key %.8s (no shared memory %s)",
                      fingerprint, ks->name);
        else
            kd_seterr(err, errlen, "cannot open shared memory %s: %s", ks->name, strerror(e));
        reset(ks);
        return -e;
    }
    int rc = map_existing(ks, false, err, errlen);
    if (rc != 0) {
        unmap_close(ks);
        return rc;
    }
    return 0;
}

int ks_close(struct ks_segment *ks)
{
    int unlinked = 0;
    if (ks->layout != NULL)
        munmap(ks->layout, ks->size);
    ks->layout = NULL;
    /* The last holder unlinks: an exclusive lock means nobody else holds the segment, and
     * while we hold it nobody can start to (see the top of this file). */
    if (ks->fd >= 0 && ks->writable && flock(ks->fd, LOCK_EX | LOCK_NB) == 0 &&
        still_linked(ks->fd) && shm_unlink(ks->name) == 0)
        unlinked = 1;
    if (ks->fd >= 0)
        close(ks->fd);
    reset(ks);
    return unlinked;
}

/* ---- members ---------------------------------------------------------------------------- */

static uint64_t member_word(int64_t owner, uint32_t gen, uint32_t state)
{
    return ((uint64_t)owner << 32) | ((uint64_t)(gen & MEMBER_GEN_MASK) << 2) | state;
}

static uint32_t member_state(uint64_t w)
{
    return (uint32_t)(w & 3u);
}

static int64_t member_owner(uint64_t w)
{
    return (int64_t)(w >> 32);
}

static bool member_held_by(const struct shm_key_member *m, int64_t owner)
{
    uint64_t w = atomic_load(&((struct shm_key_member *)m)->word);
    return member_state(w) == MEMBER_HELD && member_owner(w) == owner;
}

static bool member_valid(const struct ks_segment *ks, int member)
{
    return ks != NULL && ks->layout != NULL && member >= 0 && member < SHM_KEY_MEMBERS;
}

/* Account per unit of weight, in 1/SHARE_SCALE tokens. */
static int64_t member_level(const struct shm_key_member *m)
{
    struct shm_key_member *mm = (struct shm_key_member *)m;
    int64_t w = atomic_load(&mm->weight);
    return atomic_load(&mm->used_tokens) * SHARE_SCALE / (w > 0 ? w : 1);
}

static bool member_active(const struct shm_key_member *m, int64_t now_ns)
{
    return member_state(atomic_load(&((struct shm_key_member *)m)->word)) == MEMBER_HELD &&
           atomic_load(&((struct shm_key_member *)m)->active_until_ns) > now_ns;
}

/* Lowest level among the members other than SELF that have work; INT64_MAX if none. */
static int64_t lowest_active_level(const struct shm_key_layout *l, int self, int64_t now_ns)
{
    int64_t low = INT64_MAX;
    for (int j = 0; j < SHM_KEY_MEMBERS; j++) {
        if (j == self || !member_active(&l->members[j], now_ns))
            continue;
        int64_t v = member_level(&l->members[j]);
        if (v < low)
            low = v;
    }
    return low;
}

/* Lifts member M's account so that it is not below LEVEL (idle time banks no credit). */
static void level_up(struct shm_key_member *m, int64_t level)
{
    if (level == INT64_MAX)
        return;
    int64_t w = atomic_load(&m->weight);
    int64_t want = level / SHARE_SCALE * (w > 0 ? w : 1);
    int64_t cur = atomic_load(&m->used_tokens);
    while (cur < want && !atomic_compare_exchange_weak(&m->used_tokens, &cur, want))
        ;
}

static bool valid_instance(const char *instance)
{
    return instance != NULL && instance[0] != '\0' && strlen(instance) < SHM_INSTANCE_MAX;
}

/* FNV-1a of an instance name: compared atomically, so a lookup never reads the text of a slot
 * that is being freed and claimed again. */
static uint64_t instance_hash(const char *instance)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (const unsigned char *p = (const unsigned char *)instance; *p != '\0'; p++)
        h = (h ^ *p) * 0x100000001b3ULL;
    return h;
}

int ks_find(const struct ks_segment *ks, const char *instance, int64_t owner)
{
    if (ks == NULL || ks->layout == NULL || !valid_instance(instance) || owner < 1)
        return -ENOENT;
    uint64_t hash = instance_hash(instance);
    for (int i = 0; i < SHM_KEY_MEMBERS; i++) {
        struct shm_key_member *m = &ks->layout->members[i];
        if (member_held_by(m, owner) && atomic_load(&m->instance_hash) == hash)
            return i;
    }
    return -ENOENT;
}

int ks_join(struct ks_segment *ks, const char *instance, int64_t owner, int64_t weight,
            int64_t now_ns)
{
    if (ks == NULL || ks->layout == NULL || !ks->writable || !valid_instance(instance) ||
        owner < 1 || owner > TB_OWNER_MAX || weight < 1 || weight > KS_WEIGHT_MAX)
        return -EINVAL;
    int found = ks_find(ks, instance, owner);
    if (found >= 0)
        return found;
    struct shm_key_layout *l = ks->layout;
    for (int i = 0; i < SHM_KEY_MEMBERS; i++) {
        struct shm_key_member *m = &l->members[i];
        uint64_t w = atomic_load(&m->word);
        if (member_state(w) != MEMBER_FREE)
            continue;
        uint32_t gen = ((uint32_t)(w >> 2) + 1) & MEMBER_GEN_MASK;
        /* Claimed first, filled, then HELD: nobody reads a half-filled member as one (every
         * reader looks for HELD) and nobody else claims it meanwhile (they look for FREE). */
        uint64_t mine = member_word(owner, gen, MEMBER_CLAIMING);
        if (!atomic_compare_exchange_strong(&m->word, &w, mine))
            continue;
        atomic_store(&m->weight, weight);
        atomic_store(&m->used_tokens, 0);
        atomic_store(&m->active_until_ns, 0);
        atomic_store(&m->joined_ms, kd_wall_ms());
        atomic_store(&m->grants, 0);
        atomic_store(&m->spent_tokens, 0);
        atomic_store(&m->lost_tokens, 0);
        memset(m->instance, 0, sizeof(m->instance));
        snprintf(m->instance, sizeof(m->instance), "%s", instance);
        atomic_store(&m->instance_hash, instance_hash(instance));
        level_up(m, lowest_active_level(l, i, now_ns));
        if (atomic_compare_exchange_strong(&m->word, &mine, member_word(owner, gen, MEMBER_HELD)))
            return i;
    }
    return -ENOSPC;
}

void ks_leave(struct ks_segment *ks, int member, int64_t owner)
{
    if (!member_valid(ks, member))
        return;
    struct shm_key_member *m = &ks->layout->members[member];
    uint64_t w = atomic_load(&m->word);
    if (member_state(w) == MEMBER_HELD && member_owner(w) == owner)
        atomic_compare_exchange_strong(&m->word, &w,
                                       member_word(0, (uint32_t)(w >> 2), MEMBER_FREE));
}

void ks_set_weight(struct ks_segment *ks, int member, int64_t owner, int64_t weight)
{
    if (!member_valid(ks, member) || weight < 1 || weight > KS_WEIGHT_MAX)
        return;
    struct shm_key_member *m = &ks->layout->members[member];
    if (member_held_by(m, owner))
        atomic_store(&m->weight, weight);
}

static bool pid_alive(int64_t pid, void *ud)
{
    (void)ud;
    return kd_pid_running(pid);
}

int ks_sweep(struct ks_segment *ks, int64_t now_ns, int64_t min_interval_ns)
{
    if (ks == NULL || ks->layout == NULL || !ks->writable)
        return 0;
    struct shm_key_layout *l = ks->layout;
    int64_t last = atomic_load(&l->sweep_ns);
    if (min_interval_ns > 0 && now_ns - last < min_interval_ns)
        return 0;
    if (!atomic_compare_exchange_strong(&l->sweep_ns, &last, now_ns) && min_interval_ns > 0)
        return 0; /* someone else is sweeping */
    int freed = 0;
    for (int i = 0; i < SHM_KEY_MEMBERS; i++) {
        struct shm_key_member *m = &l->members[i];
        uint64_t w = atomic_load(&m->word);
        if (member_state(w) == MEMBER_FREE || pid_alive(member_owner(w), NULL))
            continue;
        if (atomic_compare_exchange_strong(&m->word, &w,
                                           member_word(0, (uint32_t)(w >> 2), MEMBER_FREE))) {
            freed++;
            atomic_fetch_add(&l->members_swept, 1);
            kd_warn("key %.8s: instance '%.*s' (supervisor pid %lld) is gone: its share of the "
                    "key's tokens goes to the others",
                    l->header.fingerprint, SHM_INSTANCE_MAX, m->instance,
                    (long long)member_owner(w));
        }
    }
    int n = tb_writeoff_dead(&l->tokens, now_ns, pid_alive, NULL);
    if (n > 0) {
        freed += n;
        kd_warn("key %.8s: %d token reservation(s) of dead processes written off until the next "
                "reading",
                l->header.fingerprint, n);
    }
    return freed;
}

bool ks_member_held(const struct shm_key_member *m, int64_t *owner)
{
    uint64_t w = atomic_load(&((struct shm_key_member *)m)->word);
    if (owner != NULL)
        *owner = member_owner(w);
    return member_state(w) == MEMBER_HELD;
}

int ks_members(const struct ks_segment *ks)
{
    if (ks == NULL || ks->layout == NULL)
        return 0;
    int n = 0;
    for (int i = 0; i < SHM_KEY_MEMBERS; i++)
        n += member_state(atomic_load(&ks->layout->members[i].word)) == MEMBER_HELD;
    return n;
}

/* ---- sharing ---------------------------------------------------------------------------- */

bool ks_share_ok(const struct ks_segment *ks, int member, int64_t owner, int64_t now_ns,
                 int64_t *retry_ns)
{
    if (!member_valid(ks, member))
        return true;
    const struct shm_key_layout *l = ks->layout;
    const struct shm_key_member *me = &l->members[member];
    if (!member_held_by(me, owner))
        return true;
    int64_t others = lowest_active_level(l, member, now_ns);
    if (others == INT64_MAX || member_level(me) <= others)
        return true;
    /* Behind nobody's share but about to lose tokens to the cap: spend them. */
    struct tb_stats st;
    if (tb_stats(&l->tokens, now_ns, &st) == 0 && st.anchored &&
        st.projected_tokens + st.refill_rate > st.cap_tokens)
        return true;
    if (retry_ns != NULL)
        *retry_ns = now_ns + l->tokens.minute_ns / SHARE_RETRY_DIV;
    return false;
}

void ks_mark_active(struct ks_segment *ks, int member, int64_t owner, int64_t now_ns,
                    int64_t until_ns)
{
    if (!member_valid(ks, member) || !ks->writable)
        return;
    struct shm_key_member *m = &ks->layout->members[member];
    if (!member_held_by(m, owner))
        return;
    int64_t cur = atomic_load(&m->active_until_ns);
    if (cur <= now_ns) /* it had no work: it restarts level with those that have */
        level_up(m, lowest_active_level(ks->layout, member, now_ns));
    while (cur < until_ns && !atomic_compare_exchange_weak(&m->active_until_ns, &cur, until_ns))
        ;
}

void ks_account(struct ks_segment *ks, int member, int64_t owner, int64_t used_delta, int64_t spent,
                int64_t lost)
{
    if (ks == NULL || ks->layout == NULL || !ks->writable)
        return;
    struct shm_key_layout *l = ks->layout;
    if (spent != 0)
        atomic_fetch_add(&l->spent_tokens, spent);
    if (lost != 0)
        atomic_fetch_add(&l->lost_tokens, lost);
    if (!member_valid(ks, member))
        return;
    struct shm_key_member *m = &l->members[member];
    if (!member_held_by(m, owner))
        return;
    if (used_delta != 0)
        atomic_fetch_add(&m->used_tokens, used_delta);
    if (used_delta > 0 && spent == 0 && lost == 0)
        atomic_fetch_add(&m->grants, 1);
    if (spent != 0)
        atomic_fetch_add(&m->spent_tokens, spent);
    if (lost != 0)
        atomic_fetch_add(&m->lost_tokens, lost);
}
