/*
 * ring.c: SPSC byte ring. See ring.h for the design and its crash-safety argument.
 *
 * Memory order: the producer writes header and payload with plain stores, then stores the
 * tail with release; the consumer loads the tail with acquire before reading them. The
 * consumer stores the head with release after it is done with the bytes; the producer loads
 * it with acquire before overwriting them. The sleeping handshake is a Dekker pattern (the
 * consumer stores "sleeping" then loads the tail; the producer stores the tail then loads
 * "sleeping"), so both sides use sequentially consistent operations there.
 *
 * Nothing read from the shared control block is trusted: positions must be aligned and at
 * most a capacity apart, a record must lie inside the data area and before the tail, and a
 * padding record must end exactly at the end of the area. A corrupt ring makes a read or a
 * claim fail with -EBADMSG; it never makes either touch memory outside the data area or loop
 * for longer than one capacity's worth of records.
 */
#include "shm/ring.h"

#include <errno.h>
#include <poll.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include "base/kd_assert.h"

enum { RING_REC_DATA = 1, RING_REC_PAD = 2 };

/* Pause instructions ring_wait spends watching the tail before it sleeps (~10-40 µs). */
#define RING_WAIT_SPINS 512

struct ring_rec_header {
    uint32_t len;
    uint32_t type;
};

_Static_assert(sizeof(struct ring_rec_header) == RING_HEADER_BYTES, "record header size");

static uint64_t align_up(uint64_t n)
{
    return (n + RING_ALIGN - 1) & ~(uint64_t)(RING_ALIGN - 1);
}

static int is_pow2(uint64_t n)
{
    return n != 0 && (n & (n - 1)) == 0;
}

int ring_format(struct shm_ring *ctl, uint64_t capacity, uint64_t data_offset)
{
    if (!is_pow2(capacity) || capacity < RING_MIN_CAPACITY || capacity > RING_MAX_CAPACITY)
        return -EINVAL;
    memset(ctl, 0, sizeof(*ctl));
    ctl->capacity = capacity;
    ctl->max_record = capacity / 4;
    ctl->data_offset = data_offset;
    atomic_store_explicit(&ctl->tail, 0, memory_order_relaxed);
    atomic_store_explicit(&ctl->head, 0, memory_order_relaxed);
    atomic_store_explicit(&ctl->consumer_sleeping, 0, memory_order_relaxed);
    return 0;
}

int ring_open(struct ring *r, struct shm_ring *ctl, void *data, int wake_fd)
{
    uint64_t cap = ctl->capacity;
    if (!is_pow2(cap) || cap < RING_MIN_CAPACITY || cap > RING_MAX_CAPACITY ||
        ctl->max_record == 0 || ctl->max_record > cap / 4 || data == NULL)
        return -EINVAL;
    memset(r, 0, sizeof(*r));
    r->ctl = ctl;
    r->data = data;
    r->capacity = cap;
    r->mask = cap - 1;
    r->max_record = ctl->max_record;
    r->wake_fd = wake_fd;
    r->head_cache = atomic_load_explicit(&ctl->head, memory_order_acquire);
    r->tail_cache = atomic_load_explicit(&ctl->tail, memory_order_acquire);
    r->read_pos = r->head_cache;
    return 0;
}

/* ---- producer ---- */

int ring_claim(struct ring *r, size_t len, void **buf)
{
    if (len == 0)
        return -EINVAL;
    if (len > r->max_record)
        return -EMSGSIZE;

    struct shm_ring *ctl = r->ctl;
    uint64_t tail = atomic_load_explicit(&ctl->tail, memory_order_relaxed);
    if ((tail & (RING_ALIGN - 1)) != 0 || tail - r->head_cache > r->capacity)
        return -EBADMSG;
    uint64_t rec_bytes = align_up(RING_HEADER_BYTES + len);
    uint64_t offset = tail & r->mask;
    uint64_t to_end = r->capacity - offset;
    uint64_t pad = rec_bytes > to_end ? to_end : 0;
    uint64_t required = pad + rec_bytes;

    if (required > r->capacity - (tail - r->head_cache)) {
        r->head_cache = atomic_load_explicit(&ctl->head, memory_order_acquire);
        if (tail - r->head_cache > r->capacity)
            return -EBADMSG;
        if (required > r->capacity - (tail - r->head_cache))
            return -EAGAIN;
    }

    if (pad > 0) {
        struct ring_rec_header ph = {(uint32_t)(pad - RING_HEADER_BYTES), RING_REC_PAD};
        memcpy(r->data + offset, &ph, sizeof(ph));
        offset = 0;
    }
    struct ring_rec_header h = {(uint32_t)len, RING_REC_DATA};
    memcpy(r->data + offset, &h, sizeof(h));
    *buf = r->data + offset + RING_HEADER_BYTES;
    r->claim_end = tail + required;
    return 0;
}

void ring_publish(struct ring *r)
{
    struct shm_ring *ctl = r->ctl;
    uint64_t tail = atomic_load_explicit(&ctl->tail, memory_order_relaxed);
    KD_ASSERTF(r->claim_end > tail, "ring_publish without a claim (tail %llu, claim %llu)",
               (unsigned long long)tail, (unsigned long long)r->claim_end);
    atomic_store_explicit(&ctl->tail, r->claim_end, memory_order_seq_cst);
    r->claim_end = 0;
    atomic_fetch_add_explicit(&ctl->records_written, 1, memory_order_relaxed);

    if (atomic_load_explicit(&ctl->consumer_sleeping, memory_order_seq_cst) &&
        atomic_exchange_explicit(&ctl->consumer_sleeping, 0, memory_order_seq_cst)) {
        atomic_fetch_add_explicit(&ctl->wakeups_sent, 1, memory_order_relaxed);
        if (r->wake_fd >= 0) {
            uint64_t one = 1;
            ssize_t w;
            do {
                w = write(r->wake_fd, &one, sizeof(one));
            } while (w < 0 && errno == EINTR);
            /* EAGAIN means the counter is saturated: the consumer is awake anyway. */
        }
    }
}

int ring_write(struct ring *r, const void *rec, size_t len)
{
    void *buf;
    int rc = ring_claim(r, len, &buf);
    if (rc != 0)
        return rc;
    memcpy(buf, rec, len);
    ring_publish(r);
    return 0;
}

/* ---- consumer ---- */

int ring_read(struct ring *r, const void **rec, size_t *len)
{
    struct shm_ring *ctl = r->ctl;
    for (;;) {
        if (r->read_pos == r->tail_cache) {
            r->tail_cache = atomic_load_explicit(&ctl->tail, memory_order_acquire);
            if (r->read_pos == r->tail_cache)
                return -EAGAIN;
        }
        /* Both positions come from shared memory: aligned, and the tail at most one capacity
         * ahead, or the ring is corrupt (this also bounds the loop below). */
        if (((r->read_pos | r->tail_cache) & (RING_ALIGN - 1)) != 0 ||
            r->tail_cache - r->read_pos > r->capacity)
            return -EBADMSG;
        uint64_t offset = r->read_pos & r->mask;
        struct ring_rec_header h;
        memcpy(&h, r->data + offset, sizeof(h));
        uint64_t rec_bytes = align_up(RING_HEADER_BYTES + (uint64_t)h.len);
        if (h.type == RING_REC_PAD) {
            /* Padding fills the end of the area after a record that did not fit there. */
            if (offset == 0 || rec_bytes != r->capacity - offset ||
                r->read_pos + rec_bytes >= r->tail_cache)
                return -EBADMSG;
            r->read_pos += rec_bytes;
            continue;
        }
        if (h.type != RING_REC_DATA || h.len == 0 || h.len > r->max_record ||
            rec_bytes > r->capacity - offset || r->read_pos + rec_bytes > r->tail_cache)
            return -EBADMSG;
        *rec = r->data + offset + RING_HEADER_BYTES;
        *len = h.len;
        r->read_pos += rec_bytes;
        atomic_fetch_add_explicit(&ctl->records_read, 1, memory_order_relaxed);
        return 0;
    }
}

void ring_ack(struct ring *r)
{
    atomic_store_explicit(&r->ctl->head, r->read_pos, memory_order_release);
}

void ring_rewind(struct ring *r)
{
    r->read_pos = atomic_load_explicit(&r->ctl->head, memory_order_acquire);
}

int ring_skip_to(struct ring *r, uint64_t pos)
{
    uint64_t head = atomic_load_explicit(&r->ctl->head, memory_order_acquire);
    uint64_t tail = atomic_load_explicit(&r->ctl->tail, memory_order_acquire);
    if (pos < head || pos > tail || (pos & (RING_ALIGN - 1)) != 0)
        return -EINVAL;
    r->read_pos = pos;
    r->tail_cache = tail;
    atomic_store_explicit(&r->ctl->head, pos, memory_order_release);
    return 0;
}

uint64_t ring_read_pos(const struct ring *r)
{
    return r->read_pos;
}

int ring_prepare_wait(struct ring *r)
{
    struct shm_ring *ctl = r->ctl;
    atomic_store_explicit(&ctl->consumer_sleeping, 1, memory_order_seq_cst);
    uint64_t tail = atomic_load_explicit(&ctl->tail, memory_order_seq_cst);
    if (tail != r->read_pos) {
        atomic_store_explicit(&ctl->consumer_sleeping, 0, memory_order_relaxed);
        r->tail_cache = tail;
        return -EAGAIN;
    }
    return 0;
}

void ring_wait_done(struct ring *r)
{
    atomic_store_explicit(&r->ctl->consumer_sleeping, 0, memory_order_relaxed);
    if (r->wake_fd >= 0) {
        uint64_t v;
        ssize_t n;
        do {
            n = read(r->wake_fd, &v, sizeof(v));
        } while (n < 0 && errno == EINTR);
    }
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

int ring_wait(struct ring *r, int timeout_ms)
{
    /* A producer in full flow publishes again within microseconds: watch the tail briefly
     * before paying for the sleeping handshake and the eventfd round trip. */
    for (int spin = 0; spin < RING_WAIT_SPINS; spin++) {
        if (atomic_load_explicit(&r->ctl->tail, memory_order_acquire) != r->read_pos)
            return 0;
        cpu_relax();
    }
    if (ring_prepare_wait(r) == -EAGAIN)
        return 0;
    if (r->wake_fd < 0) {
        ring_wait_done(r);
        return -EINVAL;
    }
    struct pollfd p = {.fd = r->wake_fd, .events = POLLIN};
    int n;
    do {
        n = poll(&p, 1, timeout_ms);
    } while (n < 0 && errno == EINTR);
    int err = n < 0 ? -errno : 0;
    ring_wait_done(r);
    if (err != 0)
        return err;
    if (atomic_load_explicit(&r->ctl->tail, memory_order_acquire) != r->read_pos)
        return 0;
    return -ETIMEDOUT;
}

uint64_t ring_depth(const struct shm_ring *ctl)
{
    uint64_t head = atomic_load_explicit(&ctl->head, memory_order_acquire);
    uint64_t tail = atomic_load_explicit(&ctl->tail, memory_order_acquire);
    return tail - head;
}
