/*
 * test_keyseg.c: the key segment (shm/keyseg.c): one token bucket per key, shared by every
 * instance on the host.
 *
 * What the daemon relies on: the first opener creates and initialises the segment, the others
 * map the same bucket, and the last one out removes it (a holder that is still there keeps it);
 * a segment of another user, or of another layout version, is refused with its owner named;
 * member slots are claimed once, found again by instance and owner, and freed when their owner
 * is dead, as are the dead's token reservations; the share rule holds a member back only while
 * another member with work is behind it per unit of weight, never when the bucket is about to
 * overflow, and a member back from idle starts level with the others. The last case races
 * threads joining, leaving, sweeping and sharing (ThreadSanitizer runs it: label tsan).
 */
#include "kd_test.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/clock.h"
#include "shm/keyseg.h"

#define SEC    1000000000LL
#define MINUTE (60 * SEC)

/* A fingerprint of this test process (several suites run at once), tracked for removal. */
static const char *test_fp(unsigned n)
{
    static char fp[4][SHM_KEY_FP_MAX];
    char *out = fp[n % 4];
    snprintf(out, SHM_KEY_FP_MAX, "%08lx%04x", (unsigned long)getpid(), n);
    char name[64];
    ks_name(out, name, sizeof(name));
    kd_test_track_shm(name);
    return out;
}

static void open_ok(struct ks_segment *ks, const char *fp)
{
    char err[512];
    if (ks_open(ks, fp, NULL, err, sizeof(err)) != 0)
        fail_msg("ks_open: %s", err);
}

static pid_t dead_pid(void)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(0);
    waitpid(pid, NULL, 0);
    return pid;
}

static void test_first_creates_others_share_last_removes(void **state)
{
    (void)state;
    const char *fp = test_fp(0);
    struct ks_segment a, b, ro;
    open_ok(&a, fp);
    open_ok(&b, fp);
    assert_ptr_not_equal(a.layout, b.layout); /* two mappings ... */
    struct tb_reading r = {120, 30000, 5, 1700000000000, 0};
    int64_t now = kd_mono_ns();
    assert_int_equal(tb_apply_reading(&a.layout->tokens, &r, now, NULL), 0);
    assert_int_equal(tb_project(&b.layout->tokens, now), 120); /* ... of one bucket */
    char err[256];
    assert_int_equal(ks_attach_ro(&ro, fp, err, sizeof(err)), 0);
    assert_int_equal(tb_project(&ro.layout->tokens, now), 120);
    assert_int_equal(ks_close(&ro), 0);
    struct stat st;
    assert_int_equal(fstat(a.fd, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    char name[sizeof(a.name)];
    memcpy(name, a.name, sizeof(name));
    assert_int_equal(ks_close(&b), 0); /* a still holds it */
    int fd = shm_open(name, O_RDONLY, 0);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(ks_close(&a), 1); /* the last one out */
    assert_true(shm_open(name, O_RDONLY, 0) < 0 && errno == ENOENT);
    assert_int_equal(ks_attach_ro(&ro, fp, err, sizeof(err)), -ENOENT);
    /* A new opener starts a new bucket (never anchored). */
    open_ok(&a, fp);
    struct tb_stats fresh;
    assert_int_equal(tb_stats(&a.layout->tokens, kd_mono_ns(), &fresh), 0);
    assert_false(fresh.anchored);
    assert_int_equal(ks_close(&a), 1);
    assert_int_equal(ks_open(&a, "NOT-HEX", NULL, err, sizeof(err)), -EINVAL);
}

/* A process killed while it held the segment never blocks the next one, nor leaves it. */
static void test_a_holder_killed_does_not_block(void **state)
{
    (void)state;
    const char *fp = test_fp(1);
    int go[2];
    assert_int_equal(pipe(go), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct ks_segment ks;
        char err[256];
        if (ks_open(&ks, fp, NULL, err, sizeof(err)) != 0)
            _exit(2);
        (void)!write(go[1], "x", 1);
        pause();
        _exit(0);
    }
    char c;
    assert_int_equal(read(go[0], &c, 1), 1);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    struct ks_segment ks;
    open_ok(&ks, fp);
    assert_int_equal(ks_close(&ks), 1);
    close(go[0]);
    close(go[1]);
}

static void test_foreign_segments_refused(void **state)
{
    (void)state;
    const char *fp = test_fp(2);
    char name[64], err[512];
    ks_name(fp, name, sizeof(name));
    struct ks_segment ks;
    /* Another layout version (an older or newer kdeals using the same key). */
    int fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, (off_t)sizeof(struct shm_key_layout)), 0);
    struct shm_key_header *h = mmap(NULL, sizeof(*h), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    assert_true(h != MAP_FAILED);
    h->magic = SHM_KEY_MAGIC;
    h->fixed_size = (uint32_t)sizeof(struct shm_key_layout);
    atomic_store(&h->layout_version, 999);
    munmap(h, sizeof(*h));
    assert_int_equal(ks_open(&ks, fp, NULL, err, sizeof(err)), -EPROTO);
    assert_non_null(strstr(err, "layout version 999"));
    /* Another user's (root can make one): refused, naming the owner. */
    if (geteuid() != 0) {
        close(fd);
        shm_unlink(name);
        kd_test_skip("not root: cannot make a segment of another user");
    }
    assert_int_equal(fchown(fd, 65534, 65534), 0);
    assert_int_equal(ks_open(&ks, fp, NULL, err, sizeof(err)), -EACCES);
    printf("    %s\n", err);
    assert_non_null(strstr(err, "uid 65534"));
    assert_non_null(strstr(err, name));
    close(fd);
    shm_unlink(name);
}

static void test_members_claimed_found_swept(void **state)
{
    (void)state;
    struct ks_segment ks;
    open_ok(&ks, test_fp(3));
    int64_t me = getpid(), now = kd_mono_ns();
    int a = ks_join(&ks, "alpha", me, 2, now);
    int b = ks_join(&ks, "beta", me, 1, now);
    assert_true(a >= 0 && b >= 0 && a != b);
    assert_int_equal(ks_join(&ks, "alpha", me, 2, now), a); /* found, not claimed twice */
    assert_int_equal(ks_find(&ks, "beta", me), b);
    assert_int_equal(ks_find(&ks, "beta", me + 1), -ENOENT);
    assert_int_equal(ks_join(&ks, "gamma", me, 0, now), -EINVAL);
    assert_int_equal(ks_join(&ks, "gamma", me, KS_WEIGHT_MAX + 1, now), -EINVAL);
    /* Dead owners: their members and their reservations go at the next sweep. */
    pid_t dead = dead_pid();
    int c = ks_join(&ks, "gone", dead, 1, now);
    assert_true(c >= 0);
    struct tb_reading r = {200, 30000, 5, 1700000000000, 0};
    assert_int_equal(tb_apply_reading(&ks.layout->tokens, &r, now, NULL), 0);
    struct tb_grant g1, g2, mine;
    int64_t wait;
    assert_int_equal(tb_reserve(&ks.layout->tokens, now, 30, dead, &g1, &wait), 0);
    assert_int_equal(tb_reserve(&ks.layout->tokens, now, 20, dead, &g2, &wait), 0);
    assert_int_equal(tb_reserve(&ks.layout->tokens, now, 10, me, &mine, &wait), 0);
    assert_int_equal(ks_members(&ks), 3);
    assert_int_equal(ks_sweep(&ks, now, 0), 3); /* one member, two reservations */
    assert_int_equal(ks_members(&ks), 2);
    assert_int_equal(ks_find(&ks, "gone", dead), -ENOENT);
    struct tb_stats st;
    assert_int_equal(tb_stats(&ks.layout->tokens, now, &st), 0);
    assert_int_equal(st.slots_in_use, 1);
    assert_int_equal(st.writeoff_tokens, 50);
    assert_int_equal(tb_project(&ks.layout->tokens, now), 140); /* written off = charged */
    assert_int_equal(ks_sweep(&ks, now, SEC), 0);               /* at most once a second */
    /* Every slot taken by live members: the next one is refused, not squeezed in. */
    char name[32];
    int n = ks_members(&ks);
    for (; n < SHM_KEY_MEMBERS; n++) {
        snprintf(name, sizeof(name), "m%d", n);
        assert_true(ks_join(&ks, name, me, 1, now) >= 0);
    }
    assert_int_equal(ks_join(&ks, "one-too-many", me, 1, now), -ENOSPC);
    ks_leave(&ks, a, me + 1); /* not the owner: nothing */
    assert_int_equal(ks_find(&ks, "alpha", me), a);
    ks_leave(&ks, a, me);
    assert_int_equal(ks_find(&ks, "alpha", me), -ENOENT);
    assert_true(ks_join(&ks, "one-too-many", me, 1, now) >= 0);
    tb_settle(&ks.layout->tokens, &mine, now, 10);
    assert_int_equal(ks_close(&ks), 1);
}

static void test_share_rule(void **state)
{
    (void)state;
    struct ks_segment ks;
    open_ok(&ks, test_fp(4));
    struct shm_tokens *tb = &ks.layout->tokens;
    int64_t me = getpid(), now = kd_mono_ns();
    struct tb_reading r = {100, 30000, 5, 1700000000000, 0}; /* cap 300: far from full */
    assert_int_equal(tb_apply_reading(tb, &r, now, NULL), 0);
    int a = ks_join(&ks, "a", me, 2, now), b = ks_join(&ks, "b", me, 1, now);
    int64_t retry = 0;
    /* Alone with work: never held back. */
    ks_mark_active(&ks, a, me, now, now + MINUTE);
    ks_account(&ks, a, me, 200, 0, 0);
    assert_true(ks_share_ok(&ks, a, me, now, &retry));
    /* b has work and is behind (50 for weight 1 against 200 for weight 2): a waits. */
    ks_mark_active(&ks, b, me, now, now + MINUTE);
    int64_t b_used = atomic_load(&ks.layout->members[b].used_tokens);
    assert_int_equal(b_used, 100); /* started level with a: 200 / 2 x 1 */
    ks_account(&ks, b, me, -50, 0, 0);
    assert_false(ks_share_ok(&ks, a, me, now, &retry));
    assert_true(retry > now && retry <= now + MINUTE);
    assert_true(ks_share_ok(&ks, b, me, now, &retry));
    /* b catches up and passes a per unit of weight: now b waits. */
    ks_account(&ks, b, me, 60, 0, 0); /* 110 > 200 / 2 */
    assert_true(ks_share_ok(&ks, a, me, now, &retry));
    assert_false(ks_share_ok(&ks, b, me, now, &retry));
    /* About to overflow: tokens are never lost to the share rule. */
    struct tb_reading full = {299, 30000, 5, 1700000001000, 0};
    assert_int_equal(tb_apply_reading(tb, &full, now, NULL), 0);
    assert_true(ks_share_ok(&ks, b, me, now, &retry));
    assert_int_equal(tb_apply_reading(tb, &r, now, NULL), -ESTALE); /* older: ignored */
    struct tb_reading low = {100, 30000, 5, 1700000002000, 0};
    assert_int_equal(tb_apply_reading(tb, &low, now, NULL), 0);
    assert_false(ks_share_ok(&ks, b, me, now, &retry));
    /* a has no work any more (its mark ran out): b spends alone; when a is back it restarts
     * level with b, banking nothing for its idle time. */
    int64_t later = now + 2 * MINUTE;
    assert_true(ks_share_ok(&ks, b, me, later, &retry));
    ks_account(&ks, b, me, 400, 0, 0); /* 510 for weight 1 */
    ks_mark_active(&ks, b, me, later, later + MINUTE);
    ks_mark_active(&ks, a, me, later, later + MINUTE);
    assert_int_equal(atomic_load(&ks.layout->members[a].used_tokens), 1020); /* 510 x 2 */
    assert_true(ks_share_ok(&ks, a, me, later, &retry));
    assert_true(ks_share_ok(&ks, b, me, later, &retry));
    /* Accounts: spent and lost per member and per key. */
    ks_account(&ks, a, me, 0, 7, 3);
    assert_int_equal(atomic_load(&ks.layout->members[a].spent_tokens), 7);
    assert_int_equal(atomic_load(&ks.layout->lost_tokens), 3);
    /* No member, or another owner's: never held back, never counted to the member. */
    assert_true(ks_share_ok(&ks, -1, me, later, &retry));
    ks_account(&ks, a, me + 1, 1000, 0, 0);
    assert_int_equal(atomic_load(&ks.layout->members[a].used_tokens), 1020);
    assert_int_equal(ks_close(&ks), 1);
}

/* ---- threads racing (ThreadSanitizer) --------------------------------------------------- */

#define RACE_THREADS 6
#define RACE_ROUNDS  2000

struct race {
    struct ks_segment *ks;
    int id;
    int64_t owner;
    int errors;
};

static void *race_thread(void *p)
{
    struct race *r = p;
    char name[32];
    snprintf(name, sizeof(name), "i%d", r->id);
    for (int i = 0; i < RACE_ROUNDS; i++) {
        int64_t now = kd_mono_ns();
        int m = ks_join(r->ks, name, r->owner, 1 + r->id % 3, now);
        if (m < 0 || ks_find(r->ks, name, r->owner) != m) {
            r->errors++;
            continue;
        }
        ks_mark_active(r->ks, m, r->owner, now, now + MINUTE);
        int64_t retry;
        if (ks_share_ok(r->ks, m, r->owner, now, &retry)) {
            struct tb_grant g;
            int64_t wait;
            if (tb_reserve(&r->ks->layout->tokens, now, 3, r->owner, &g, &wait) == 0) {
                ks_account(r->ks, m, r->owner, 3, 0, 0);
                tb_settle(&r->ks->layout->tokens, &g, now, 3);
                ks_account(r->ks, m, r->owner, 0, 3, 0);
            }
        }
        if (i % 7 == 0)
            ks_sweep(r->ks, now, 0);
        if (i % 5 == 0)
            ks_leave(r->ks, m, r->owner);
        (void)ks_members(r->ks);
    }
    return NULL;
}

static void test_threads_join_leave_sweep_and_share(void **state)
{
    (void)state;
    struct ks_segment ks;
    open_ok(&ks, test_fp(5));
    struct tb_reading rd = {100000, 30000, 30000, 1700000000000, 0};
    assert_int_equal(tb_apply_reading(&ks.layout->tokens, &rd, kd_mono_ns(), NULL), 0);
    pthread_t t[RACE_THREADS];
    struct race r[RACE_THREADS];
    for (int i = 0; i < RACE_THREADS; i++) {
        /* Distinct live owners: this process's pid, and its parent's for every other one. */
        r[i] = (struct race){&ks, i, i % 2 ? getppid() : getpid(), 0};
        assert_int_equal(pthread_create(&t[i], NULL, race_thread, &r[i]), 0);
    }
    for (int i = 0; i < RACE_THREADS; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(r[i].errors, 0);
    }
    /* Each live (owner, instance) holds at most one slot, and every reservation ended. */
    assert_true(ks_members(&ks) <= RACE_THREADS);
    struct tb_stats st;
    assert_int_equal(tb_stats(&ks.layout->tokens, kd_mono_ns(), &st), 0);
    assert_int_equal(st.slots_in_use, 0);
    assert_int_equal(atomic_load(&ks.layout->spent_tokens), (int64_t)st.granted_tokens);
    assert_int_equal(ks_close(&ks), 1);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_first_creates_others_share_last_removes),
        cmocka_unit_test(test_a_holder_killed_does_not_block),
        cmocka_unit_test(test_foreign_segments_refused),
        cmocka_unit_test(test_members_claimed_found_swept),
        cmocka_unit_test(test_share_rule),
        cmocka_unit_test(test_threads_join_leave_sweep_and_share),
    };
    return KD_RUN_TESTS(tests, argc, argv);
}
