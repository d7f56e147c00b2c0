/*
 * test_ring.c: the SPSC byte ring, alone and across real processes over a real segment.
 *
 * The cross-process tests push N records of random sizes 1 B - 4 KiB whose length and bytes
 * are a pure function of their sequence number, so the consumer checks every byte without a
 * side channel: a lost, duplicated, reordered or corrupted record fails the test. The kill
 * variants SIGKILL the producer (or the consumer) at random moments and restart it; the
 * restarted side recovers its sequence number from one 64-bit word it wrote next to its
 * ring operation (see producer_main/consumer_main), the way the committer keeps its ring
 * position in LMDB.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "kd_test.h"
#include "shm/ring.h"
#include "shm/segment.h"

#ifdef KD_SANITIZED
#define CROSS_RECORDS      1000000u /* sanitizers are ~10x slower; the normal build runs 10 M */
#define CROSS_KILL_RECORDS 1000000u
#else
#define CROSS_RECORDS      10000000u
/* With a kill every 1-21 ms, 2 M records see about 200 kills of the producer or the consumer,
 * each at a point of its loop the last did not hit (10 M saw 1 000, and kept two cores busy for
 * 25 s of the suite). */
#define CROSS_KILL_RECORDS 2000000u
#endif
#define MAX_REC 4096u

/* ---- records that check themselves ---- */

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

static size_t rec_len(uint64_t seq)
{
    return 1 + (size_t)(mix64(seq) % MAX_REC);
}

/* Bytes of record SEQ: its sequence number first (when it fits), then a keyed pattern. */
static void rec_fill(uint64_t seq, uint8_t *buf, size_t len)
{
    uint64_t key = mix64(seq ^ 0x9e3779b97f4a7c15ULL);
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t w = i == 0 ? seq : key ^ (i * 0x100000001b3ULL);
        memcpy(buf + i, &w, 8);
    }
    for (; i < len; i++)
        buf[i] = (uint8_t)(key >> (8 * (i & 7)));
}

static int rec_check(uint64_t seq, const uint8_t *rec, size_t len)
{
    uint8_t want[MAX_REC];
    if (len != rec_len(seq))
        return -1;
    rec_fill(seq, want, len);
    return memcmp(want, rec, len) == 0 ? 0 : -1;
}

/* ---- single-process behaviour ---- */

struct local_ring {
    struct shm_ring ctl;
    uint8_t *data;
};

static void local_ring_init(struct local_ring *lr, uint64_t cap)
{
    lr->data = aligned_alloc(64, cap);
    assert_non_null(lr->data);
    memset(lr->data, 0, cap);
    assert_int_equal(ring_format(&lr->ctl, cap, 0), 0);
}

static void test_format_rejects_bad_capacity(void **state)
{
    (void)state;
    struct shm_ring ctl;
    assert_int_equal(ring_format(&ctl, 0, 0), -EINVAL);
    assert_int_equal(ring_format(&ctl, 1000, 0), -EINVAL);
    assert_int_equal(ring_format(&ctl, 128, 0), -EINVAL);
    assert_int_equal(ring_format(&ctl, 1ULL << 40, 0), -EINVAL);
    assert_int_equal(ring_format(&ctl, 4096, 0), 0);
    assert_int_equal(ctl.max_record, 1024);

    struct ring r;
    struct shm_ring garbage;
    memset(&garbage, 0xff, sizeof(garbage));
    uint8_t data[256];
    assert_int_equal(ring_open(&r, &garbage, data, -1), -EINVAL);
}

static void test_write_read_in_order(void **state)
{
    (void)state;
    struct local_ring lr;
    local_ring_init(&lr, 4096);
    struct ring p, c;
    assert_int_equal(ring_open(&p, &lr.ctl, lr.data, -1), 0);
    assert_int_equal(ring_open(&c, &lr.ctl, lr.data, -1), 0);

    const void *rec;
    size_t len;
    assert_int_equal(ring_read(&c, &rec, &len), -EAGAIN);
    for (uint64_t i = 0; i < 3; i++) {
        uint8_t buf[64];
        rec_fill(i, buf, 10 + i);
        assert_int_equal(ring_write(&p, buf, 10 + i), 0);
    }
    assert_int_equal(ring_depth(&lr.ctl), 3 * 24);
    for (uint64_t i = 0; i < 3; i++) {
        assert_int_equal(ring_read(&c, &rec, &len), 0);
        assert_int_equal(len, 10 + i);
        uint8_t want[64];
        rec_fill(i, want, len);
        assert_memory_equal(rec, want, len);
    }
    assert_int_equal(ring_read(&c, &rec, &len), -EAGAIN);
    ring_ack(&c);
    assert_int_equal(ring_depth(&lr.ctl), 0);
    free(lr.data);
}

static void test_misuse_sizes(void **state)
{
    (void)state;
    struct local_ring lr;
    local_ring_init(&lr, 1024);
    struct ring p;
    assert_int_equal(ring_open(&p, &lr.ctl, lr.data, -1), 0);
    uint8_t big[2048] = {0};
    assert_int_equal(ring_write(&p, big, 0), -EINVAL);
    assert_int_equal(ring_write(&p, big, 257), -EMSGSIZE);
    assert_int_equal(ring_write(&p, big, 256), 0);
    assert_int_equal(ring_write(&p, big, SIZE_MAX), -EMSGSIZE);
    void *buf;
    assert_int_equal(ring_claim(&p, 5000, &buf), -EMSGSIZE);
    free(lr.data);
}

static void test_full_then_space_after_ack(void **state)
{
    (void)state;
    struct local_ring lr;
    local_ring_init(&lr, 1024);
    struct ring p, c;
    assert_int_equal(ring_open(&p, &lr.ctl, lr.data, -1), 0);
    assert_int_equal(ring_open(&c, &lr.ctl, lr.data, -1), 0);
    uint8_t buf[248];
    memset(buf, 7, sizeof(buf));
    /* 248 + 8 = 256 bytes each: exactly four fit. */
    for (int i = 0; i < 4; i++)
        assert_int_equal(ring_write(&p, buf, sizeof(buf)), 0);
    assert_int_equal(ring_write(&p, buf, 1), -EAGAIN);

    const void *rec;
    size_t len;
    assert_int_equal(ring_read(&c, &rec, &len), 0);
    /* Read but not acknowledged: the space is still the consumer's. */
    assert_int_equal(ring_write(&p, buf, 1), -EAGAIN);
    ring_ack(&c);
    assert_int_equal(ring_write(&p, buf, sizeof(buf)), 0);
    free(lr.data);
}

static void test_wrap_uses_padding(void **state)
{
    (void)state;
    struct local_ring lr;
    local_ring_init(&lr, 1024);
    struct ring p, c;
    assert_int_equal(ring_open(&p, &lr.ctl, lr.data, -1), 0);
    assert_int_equal(ring_open(&c, &lr.ctl, lr.data, -1), 0);
    const void *rec;
    size_t len;
    uint64_t seq = 0, next = 0;
    /* Sizes chosen so records straddle the end many times; every byte is checked. */
    for (int round = 0; round < 2000; round++) {
        size_t n = 1 + (size_t)(mix64((uint64_t)round) % 200);
        uint8_t buf[256];
        rec_fill(seq, buf, n);
        int rc = ring_write(&p, buf, n);
        if (rc == -EAGAIN) {
            while (ring_read(&c, &rec, &len) == 0) {
                rec_fill(next, buf, len);
                assert_memory_equal(rec, buf, len);
                next++;
            }
            ring_ack(&c);
            rec_fill(seq, buf, n);
            rc = ring_write(&p, buf, n);
        }
        assert_int_equal(rc, 0);
        seq++;
    }
    while (ring_read(&c, &rec, &len) == 0)
        next++;
    assert_int_equal(next, seq);
    free(lr.data);
}

static void test_restarted_consumer_resumes_from_ack(void **state)
{
    (void)state;
    struct local_ring lr;
    local_ring_init(&lr, 4096);
    struct ring p, c;
    assert_int_equal(ring_open(&p, &lr.ctl, lr.data, -1), 0);
    assert_int_equal(ring_open(&c, &lr.ctl, lr.data, -1), 0);
    for (uint64_t i = 0; i < 5; i++) {
        uint8_t b = (uint8_t)i;
        assert_int_equal(ring_write(&p, &b, 1), 0);
    }
    const void *rec;
    size_t len;
    assert_int_equal(ring_read(&c, &rec, &len), 0);
    assert_int_equal(ring_read(&c, &rec, &len), 0);
    ring_ack(&c); /* 0 and 1 acknowledged */
    assert_int_equal(ring_read(&c, &rec, &len), 0);
    assert_int_equal(*(const uint8_t *)rec, 2);
    /* The consumer "dies" here without acknowledging 2; its successor opens a new handle. */
    struct ring c2;
    assert_int_equal(ring_open(&c2, &lr.ctl, lr.data, -1), 0);
    assert_int_equal(ring_read(&c2, &rec, &len), 0);
    assert_int_equal(*(const uint8_t *)rec, 2);
    uint64_t pos_after_2 = ring_read_pos(&c2);
    /* rewind re-delivers what was not acknowledged */
    ring_rewind(&c2);
    assert_int_equal(ring_read(&c2, &rec, &len), 0);
    assert_int_equal(*(const uint8_t *)rec, 2);
    /* skip_to: the position recorded elsewhere (LMDB) wins over an older head */
    struct ring c3;
    assert_int_equal(ring_open(&c3, &lr.ctl, lr.data, -1), 0);
    assert_int_equal(ring_skip_to(&c3, pos_after_2), 0);
    assert_int_equal(ring_read(&c3, &rec, &len), 0);
    assert_int_equal(*(const uint8_t *)rec, 3);
    assert_int_equal(ring_skip_to(&c3, 1ULL << 40), -EINVAL);
    assert_int_equal(ring_skip_to(&c3, 0), -EINVAL); /* behind the head */
    free(lr.data);
}

static void test_unpublished_claim_is_invisible(void **state)
{
    (void)state;
    struct local_ring lr;
    local_ring_init(&lr, 4096);
    struct ring p, c;
    assert_int_equal(ring_open(&p, &lr.ctl, lr.data, -1), 0);
    assert_int_equal(ring_open(&c, &lr.ctl, lr.data, -1), 0);
    void *buf;
    assert_int_equal(ring_claim(&p, 100, &buf), 0);
    memset(buf, 0xAB, 50); /* producer "killed" half-way through the payload */
    const void *rec;
    size_t len;
    assert_int_equal(ring_read(&c, &rec, &len), -EAGAIN);
    /* A restarted producer writes over the unpublished bytes. */
    struct ring p2;
    assert_int_equal(ring_open(&p2, &lr.ctl, lr.data, -1), 0);
    uint8_t good[7] = {1, 2, 3, 4, 5, 6, 7};
    assert_int_equal(ring_write(&p2, good, sizeof(good)), 0);
    assert_int_equal(ring_read(&c, &rec, &len), 0);
    assert_int_equal(len, sizeof(good));
    assert_memory_equal(rec, good, sizeof(good));
    assert_int_equal(ring_read(&c, &rec, &len), -EAGAIN);
    free(lr.data);
}

static void test_corrupt_header_is_reported(void **state)
{
    (void)state;
    struct local_ring lr;
    local_ring_init(&lr, 1024);
    struct ring p, c;
    assert_int_equal(ring_open(&p, &lr.ctl, lr.data, -1), 0);
    assert_int_equal(ring_open(&c, &lr.ctl, lr.data, -1), 0);
    uint8_t b[16] = {0};
    assert_int_equal(ring_write(&p, b, sizeof(b)), 0);
    uint32_t bad_len = 1u << 30;
    memcpy(lr.data, &bad_len, sizeof(bad_len));
    const void *rec;
    size_t len;
    assert_int_equal(ring_read(&c, &rec, &len), -EBADMSG);
    free(lr.data);
}

/* Positions a damaged segment can hold: the consumer and the producer fail with -EBADMSG at
 * once, and never touch a byte outside the data area (under ASan) nor spin. */
static void test_corrupt_positions_are_reported(void **state)
{
    (void)state;
    kd_test_set_timeout(10);
    const uint64_t cap = 1024;
    const void *rec;
    size_t len;
    struct {
        uint64_t head, tail;
    } bad[] = {
        {0, 1ULL << 62},     /* the tail far ahead: a reader walked padding for ever */
        {0, cap + 8},        /* more than a capacity */
        {3, 19},             /* unaligned: a header straddling the end */
        {cap - 4, cap + 12}, /* unaligned near the end */
        {1ULL << 40, 8},     /* the head past the tail */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct local_ring lr;
        local_ring_init(&lr, cap);
        /* A whole area of padding records, as garbage may look. */
        for (uint64_t off = 0; off < cap; off += 8) {
            uint32_t h[2] = {(uint32_t)(cap - off - 8), 2};
            memcpy(lr.data + off, h, 8);
        }
        atomic_store(&lr.ctl.head, bad[i].head);
        atomic_store(&lr.ctl.tail, bad[i].tail);
        struct ring c, p;
        assert_int_equal(ring_open(&c, &lr.ctl, lr.data, -1), 0);
        assert_int_equal(ring_read(&c, &rec, &len), -EBADMSG);
        assert_int_equal(ring_open(&p, &lr.ctl, lr.data, -1), 0);
        uint8_t b[16] = {0};
        assert_int_equal(ring_write(&p, b, sizeof(b)), -EBADMSG);
        free(lr.data);
    }
    /* A padding record at offset 0, or one reaching the tail, is corrupt too. */
    struct local_ring lr;
    local_ring_init(&lr, cap);
    uint32_t pad0[2] = {(uint32_t)(cap - 8), 2};
    memcpy(lr.data, pad0, 8);
    atomic_store(&lr.ctl.tail, 64);
    struct ring c;
    assert_int_equal(ring_open(&c, &lr.ctl, lr.data, -1), 0);
    assert_int_equal(ring_read(&c, &rec, &len), -EBADMSG);
    free(lr.data);
}

static void test_wakeup_only_when_sleeping(void **state)
{
    (void)state;
    struct local_ring lr;
    local_ring_init(&lr, 4096);
    int efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    assert_true(efd >= 0);
    struct ring p, c;
    assert_int_equal(ring_open(&p, &lr.ctl, lr.data, efd), 0);
    assert_int_equal(ring_open(&c, &lr.ctl, lr.data, efd), 0);
    uint8_t b = 1;
    /* Consumer awake: no eventfd write. */
    assert_int_equal(ring_write(&p, &b, 1), 0);
    assert_int_equal(lr.ctl.wakeups_sent, 0);
    /* Not empty: prepare_wait refuses to sleep. */
    assert_int_equal(ring_prepare_wait(&c), -EAGAIN);
    const void *rec;
    size_t len;
    assert_int_equal(ring_read(&c, &rec, &len), 0);
    ring_ack(&c);
    assert_int_equal(ring_wait(&c, 0), -ETIMEDOUT);
    /* Empty and sleeping: the next publish writes the eventfd exactly once. */
    assert_int_equal(ring_prepare_wait(&c), 0);
    assert_int_equal(ring_write(&p, &b, 1), 0);
    assert_int_equal(ring_write(&p, &b, 1), 0);
    assert_int_equal(lr.ctl.wakeups_sent, 1);
    uint64_t v = 0;
    assert_int_equal(read(efd, &v, sizeof(v)), (ssize_t)sizeof(v));
    assert_int_equal(v, 1);
    ring_wait_done(&c);
    assert_int_equal(ring_wait(&c, 1000), 0);
    close(efd);
    free(lr.data);
}

/* ---- cross-process over a real segment ---- */

struct xshared {
    _Atomic uint64_t producer_word;      /* (seq << 32) | low32(tail / 8) before each claim */
    _Atomic uint64_t consumer_prepared;  /* (next seq << 32) | low32(pos / 8), before ack */
    _Atomic uint64_t consumer_committed; /* the same, after ack */
    _Atomic uint64_t consumer_done;
    _Atomic uint64_t errors;
    char error[256];
};

static uint64_t pack(uint64_t seq, uint64_t pos)
{
    return (seq << 32) | ((pos / 8) & 0xffffffffULL);
}

static int same_pos(uint64_t word, uint64_t pos)
{
    return (word & 0xffffffffULL) == ((pos / 8) & 0xffffffffULL);
}

static void fail_shared(struct xshared *x, const char *msg, uint64_t seq)
{
    if (atomic_fetch_add(&x->errors, 1) == 0)
        snprintf(x->error, sizeof(x->error), "%s (seq %llu)", msg, (unsigned long long)seq);
}

static void producer_main(const char *instance, int efd, struct xshared *x, uint64_t total,
                          int throttle)
{
    struct shm_segment seg;
    char err[256];
    if (shm_segment_attach(&seg, instance, SHM_READ_WRITE, err, sizeof(err)) != 0)
        _exit(3);
    struct ring p;
    if (ring_open(&p, &seg.layout->rings[SHM_RING_SURVIVORS],
                  shm_segment_ring_data(&seg, SHM_RING_SURVIVORS), efd) != 0)
        _exit(4);
    uint64_t w = atomic_load(&x->producer_word);
    uint64_t tail = atomic_load(&p.ctl->tail);
    uint64_t seq = w >> 32;
    if (!same_pos(w, tail))
        seq++; /* the record announced in W was published before the kill */
    uint8_t buf[MAX_REC];
    while (seq < total) {
        size_t len = rec_len(seq);
        rec_fill(seq, buf, len);
        atomic_store(&x->producer_word, pack(seq, atomic_load(&p.ctl->tail)));
        void *dst;
        int rc;
        while ((rc = ring_claim(&p, len, &dst)) == -EAGAIN)
            sched_yield();
        if (rc != 0)
            _exit(5);
        memcpy(dst, buf, len);
        ring_publish(&p);
        seq++;
        if (throttle && seq % 1000 == 0) {
            struct timespec ts = {0, 200000};
            nanosleep(&ts, NULL);
        }
    }
    _exit(0);
}

static void consumer_main(const char *instance, int efd, struct xshared *x, uint64_t total)
{
    struct shm_segment seg;
    char err[256];
    if (shm_segment_attach(&seg, instance, SHM_READ_WRITE, err, sizeof(err)) != 0)
        _exit(3);
    struct ring c;
    if (ring_open(&c, &seg.layout->rings[SHM_RING_SURVIVORS],
                  shm_segment_ring_data(&seg, SHM_RING_SURVIVORS), efd) != 0)
        _exit(4);
    uint64_t head = atomic_load(&c.ctl->head);
    uint64_t prepared = atomic_load(&x->consumer_prepared);
    uint64_t committed = atomic_load(&x->consumer_committed);
    uint64_t expect;
    if (same_pos(prepared, head))
        expect = prepared >> 32;
    else if (same_pos(committed, head))
        expect = committed >> 32;
    else {
        fail_shared(x, "consumer restart: head matches neither recorded position", 0);
        _exit(6);
    }
    unsigned since_ack = 0;
    while (expect < total) {
        const void *rec;
        size_t len;
        int rc = ring_read(&c, &rec, &len);
        if (rc == -EAGAIN) {
            if (since_ack > 0) {
                atomic_store(&x->consumer_prepared, pack(expect, ring_read_pos(&c)));
                ring_ack(&c);
                atomic_store(&x->consumer_committed, pack(expect, ring_read_pos(&c)));
                since_ack = 0;
            }
            rc = ring_wait(&c, 100);
            if (rc != 0 && rc != -ETIMEDOUT)
                _exit(7);
            continue;
        }
        if (rc != 0) {
            fail_shared(x, "ring_read failed", expect);
            _exit(8);
        }
        uint64_t got = len >= 8 ? *(const uint64_t *)rec : expect;
        if (got != expect || rec_check(expect, rec, len) != 0) {
            fail_shared(x, got != expect ? "sequence gap or duplicate" : "corrupted record",
                        expect);
            _exit(9);
        }
        expect++;
        if (++since_ack == 64) {
            atomic_store(&x->consumer_prepared, pack(expect, ring_read_pos(&c)));
            ring_ack(&c);
            atomic_store(&x->consumer_committed, pack(expect, ring_read_pos(&c)));
            since_ack = 0;
        }
    }
    atomic_store(&x->consumer_prepared, pack(expect, ring_read_pos(&c)));
    ring_ack(&c);
    atomic_store(&x->consumer_committed, pack(expect, ring_read_pos(&c)));
    atomic_store(&x->consumer_done, 1);
    _exit(0);
}

enum kill_mode { KILL_NONE, KILL_PRODUCER, KILL_CONSUMER };

static pid_t spawn(void (*fn)(const char *, int, struct xshared *, uint64_t), const char *inst,
                   int efd, struct xshared *x, uint64_t total)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        fn(inst, efd, x, total);
    return pid;
}

static void producer_fast(const char *i, int e, struct xshared *x, uint64_t t)
{
    producer_main(i, e, x, t, 0);
}

static void cross_process(enum kill_mode mode, uint64_t total)
{
    const char *inst = kd_test_instance();
    struct shm_segment_options opt = {.instance = inst, .run_dir = kd_test_tmpdir()};
    opt.ring_capacity[SHM_RING_SURVIVORS] = 1u << 20;
    struct shm_segment seg;
    char err[256];
    assert_int_equal(shm_segment_create(&seg, &opt, err, sizeof(err)), 0);
    shm_segment_publish(&seg);
    int efd = eventfd(0, EFD_NONBLOCK);
    assert_true(efd >= 0);
    struct xshared *x =
        mmap(NULL, sizeof(*x), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    assert_true(x != MAP_FAILED);
    memset(x, 0, sizeof(*x));

    pid_t prod = spawn(producer_fast, inst, efd, x, total);
    pid_t cons = spawn(consumer_main, inst, efd, x, total);
    unsigned kills = 0;
    uint64_t rng = 42;
    int prod_done = 0;
    while (!atomic_load(&x->consumer_done) && atomic_load(&x->errors) == 0) {
        int status;
        pid_t r = waitpid(-1, &status, WNOHANG);
        if (r == prod) {
            assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
            prod_done = 1;
        } else if (r == cons) {
            if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0))
                fail_msg("consumer exited with status %d: %s", status, x->error);
            break;
        }
        rng = mix64(rng);
        struct timespec ts = {0, (long)(1000000 + rng % 20000000)};
        nanosleep(&ts, NULL);
        if (mode == KILL_PRODUCER && !prod_done) {
            kill(prod, SIGKILL);
            waitpid(prod, &status, 0);
            kills++;
            prod = spawn(producer_fast, inst, efd, x, total);
        } else if (mode == KILL_CONSUMER && !atomic_load(&x->consumer_done)) {
            kill(cons, SIGKILL);
            waitpid(cons, &status, 0);
            if (atomic_load(&x->consumer_done))
                break;
            kills++;
            cons = spawn(consumer_main, inst, efd, x, total);
        }
    }
    if (atomic_load(&x->errors) != 0)
        fail_msg("%s", x->error);
    assert_true(atomic_load(&x->consumer_done));
    int status;
    while (waitpid(-1, &status, 0) > 0) {
    }
    assert_int_equal(ring_depth(&seg.layout->rings[SHM_RING_SURVIVORS]), 0);
    if (mode != KILL_NONE) {
        printf("    %llu records, %u kills of the %s\n", (unsigned long long)total, kills,
               mode == KILL_PRODUCER ? "producer" : "consumer");
        assert_true(kills > 0);
    }
    shm_segment_destroy(&seg);
}

static void test_cross_process_10m(void **state)
{
    (void)state;
    kd_test_set_timeout(600);
    cross_process(KILL_NONE, CROSS_RECORDS);
}

static void test_cross_process_producer_killed(void **state)
{
    (void)state;
    cross_process(KILL_PRODUCER, CROSS_KILL_RECORDS);
}

static void test_cross_process_consumer_killed(void **state)
{
    (void)state;
    cross_process(KILL_CONSUMER, CROSS_KILL_RECORDS);
}

/* ---- libuv consumer: uv_poll on the eventfd, plus a safety timer ---- */

struct uv_consumer {
    struct ring ring;
    uv_poll_t poll;
    uv_timer_t safety;
    uint64_t expect;
    uint64_t total;
    int failed;
};

static void uv_drain(struct uv_consumer *u)
{
    const void *rec;
    size_t len;
    while (ring_read(&u->ring, &rec, &len) == 0) {
        if (rec_check(u->expect, rec, len) != 0)
            u->failed = 1;
        u->expect++;
    }
    ring_ack(&u->ring);
    if (u->expect >= u->total || u->failed) {
        uv_poll_stop(&u->poll);
        uv_timer_stop(&u->safety);
        return;
    }
    if (ring_prepare_wait(&u->ring) == -EAGAIN)
        uv_drain(u);
}

static void on_wake(uv_poll_t *h, int status, int events)
{
    (void)events;
    struct uv_consumer *u = h->data;
    if (status < 0)
        u->failed = 1;
    ring_wait_done(&u->ring);
    uv_drain(u);
}

static void on_safety(uv_timer_t *t)
{
    struct uv_consumer *u = t->data;
    ring_wait_done(&u->ring);
    uv_drain(u);
}

static void producer_throttled(const char *i, int e, struct xshared *x, uint64_t t)
{
    producer_main(i, e, x, t, 1);
}

static void test_libuv_consumer(void **state)
{
    (void)state;
    const char *inst = kd_test_instance();
    struct shm_segment_options opt = {.instance = inst, .run_dir = kd_test_tmpdir()};
    struct shm_segment seg;
    char err[256];
    assert_int_equal(shm_segment_create(&seg, &opt, err, sizeof(err)), 0);
    shm_segment_publish(&seg);
    int efd = eventfd(0, EFD_NONBLOCK);
    struct xshared *x =
        mmap(NULL, sizeof(*x), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    memset(x, 0, sizeof(*x));

    uv_loop_t loop;
    uv_loop_init(&loop);
    struct uv_consumer u = {.total = 20000};
    assert_int_equal(ring_open(&u.ring, &seg.layout->rings[SHM_RING_SURVIVORS],
                               shm_segment_ring_data(&seg, SHM_RING_SURVIVORS), efd),
                     0);
    uv_poll_init(&loop, &u.poll, efd);
    u.poll.data = &u;
    uv_timer_init(&loop, &u.safety);
    u.safety.data = &u;
    uv_poll_start(&u.poll, UV_READABLE, on_wake);
    uv_timer_start(&u.safety, on_safety, 500, 500);
    pid_t prod = spawn(producer_throttled, inst, efd, x, u.total);
    uv_drain(&u);
    uv_run(&loop, UV_RUN_DEFAULT);
    int status;
    waitpid(prod, &status, 0);
    assert_false(u.failed);
    assert_int_equal(u.expect, u.total);
    /* The producer paused every 1000 records, so the consumer slept and was woken. */
    assert_true(seg.layout->rings[SHM_RING_SURVIVORS].wakeups_sent > 0);
    uv_close((uv_handle_t *)&u.poll, NULL);
    uv_close((uv_handle_t *)&u.safety, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    shm_segment_destroy(&seg);
}

/* ---- threads (run under TSan by `make test`) ---- */

struct thread_arg {
    struct local_ring *lr;
    int efd;
    uint64_t total;
    int failed;
};

static void *thread_producer(void *arg)
{
    struct thread_arg *a = arg;
    struct ring p;
    ring_open(&p, &a->lr->ctl, a->lr->data, a->efd);
    uint8_t buf[MAX_REC];
    for (uint64_t seq = 0; seq < a->total; seq++) {
        size_t len = rec_len(seq);
        rec_fill(seq, buf, len);
        while (ring_write(&p, buf, len) == -EAGAIN)
            sched_yield();
    }
    return NULL;
}

static void *thread_consumer(void *arg)
{
    struct thread_arg *a = arg;
    struct ring c;
    ring_open(&c, &a->lr->ctl, a->lr->data, a->efd);
    uint64_t expect = 0;
    while (expect < a->total) {
        const void *rec;
        size_t len;
        int rc = ring_read(&c, &rec, &len);
        if (rc == -EAGAIN) {
            ring_ack(&c);
            ring_wait(&c, 100);
            continue;
        }
        if (rc != 0 || rec_check(expect, rec, len) != 0) {
            a->failed = 1;
            return NULL;
        }
        expect++;
        if (expect % 32 == 0)
            ring_ack(&c);
    }
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    struct local_ring lr;
    local_ring_init(&lr, 1u << 16);
    int efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    struct thread_arg a = {.lr = &lr, .efd = efd, .total = 200000};
    pthread_t tp, tc;
    pthread_create(&tc, NULL, thread_consumer, &a);
    pthread_create(&tp, NULL, thread_producer, &a);
    pthread_join(tp, NULL);
    pthread_join(tc, NULL);
    assert_false(a.failed);
    close(efd);
    free(lr.data);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format_rejects_bad_capacity),
        cmocka_unit_test(test_write_read_in_order),
        cmocka_unit_test(test_misuse_sizes),
        cmocka_unit_test(test_full_then_space_after_ack),
        cmocka_unit_test(test_wrap_uses_padding),
        cmocka_unit_test(test_restarted_consumer_resumes_from_ack),
        cmocka_unit_test(test_unpublished_claim_is_invisible),
        cmocka_unit_test(test_corrupt_header_is_reported),
        cmocka_unit_test(test_corrupt_positions_are_reported),
        cmocka_unit_test(test_wakeup_only_when_sleeping),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_libuv_consumer),
        cmocka_unit_test(test_cross_process_10m),
        cmocka_unit_test(test_cross_process_producer_killed),
        cmocka_unit_test(test_cross_process_consumer_killed),
    };
    kd_test_set_timeout(600);
    return KD_RUN_TESTS(tests, argc, argv);
}
