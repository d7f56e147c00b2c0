/*
 * ring.h: single-producer single-consumer byte ring for variable-length records.
 *
 * The shape of Aeron's OneToOneRingBuffer. Records are length-prefixed (an 8-byte header:
 * payload length, record type) and padded to 8 bytes. Positions are 64-bit byte counts that
 * never wrap; the offset in the data area is position & (capacity - 1). When a record does
 * not fit before the end of the data area, the producer writes a padding record there and
 * the record at offset 0, and publishes both with one release store of the tail.
 *
 * Crash safety follows from the publication order: the tail moves only after the header and
 * payload are written, so a producer killed mid-write leaves nothing to repair (its restart
 * simply overwrites the unpublished bytes); the head moves only when the consumer
 * acknowledges, so a consumer killed before acknowledging gets the same records again after
 * its restart (at-least-once; the committer makes it exactly-once by storing the consumed
 * position in LMDB with its results, see ring_skip_to()).
 *
 * Wake-up: a consumer that found the ring empty calls ring_prepare_wait(), which sets the
 * shared "sleeping" word and re-checks; the producer writes the eventfd only when that word
 * is set, so a busy pipeline makes no system calls. The eventfd can be watched with poll(2)
 * (ring_wait()) or a libuv uv_poll_t (then call ring_wait_done() in the callback); keep a
 * safety timer as well.
 *
 * A `struct ring` is a per-process handle over a shared `struct shm_ring` control block and
 * its data area. One process produces and one consumes; the handle caches the other side's
 * position so the shared line is read only when the cache says the ring is full or empty.
 */
#ifndef KD_SHM_RING_H
#define KD_SHM_RING_H

#include <stddef.h>
#include <stdint.h>

#include "shm/layout.h"

#define RING_HEADER_BYTES 8u
#define RING_ALIGN        8u
#define RING_MIN_CAPACITY 256u
#define RING_MAX_CAPACITY (1ULL << 32)

struct ring {
    struct shm_ring *ctl;
    uint8_t *data;
    uint64_t capacity;
    uint64_t mask;
    uint64_t max_record;
    uint64_t head_cache; /* producer: the consumer's head as last read */
    uint64_t tail_cache; /* consumer: the producer's tail as last read */
    uint64_t read_pos;   /* consumer: next record to read; head <= read_pos <= tail */
    uint64_t claim_end;  /* producer: tail after the claimed record, 0 when none */
    int wake_fd;         /* eventfd shared by both sides, or -1 */
};

/*
 * Formats a control block for a data area of CAPACITY bytes located DATA_OFFSET bytes from
 * the start of the segment. CAPACITY must be a power of two between RING_MIN_CAPACITY and
 * RING_MAX_CAPACITY. Records of up to capacity / 4 bytes are accepted. Called once, by the
 * creator, before anyone attaches. Returns 0 or -EINVAL.
 */
int ring_format(struct shm_ring *ctl, uint64_t capacity, uint64_t data_offset);

/*
 * Opens a handle on a formatted ring whose data area starts at DATA. WAKE_FD is the eventfd
 * used for wake-ups (or -1 for none). A consumer handle starts reading at the acknowledged
 * head, so a restarted consumer resumes where its predecessor acknowledged. Returns 0, or
 * -EINVAL if the control block is not a valid formatted ring.
 */
int ring_open(struct ring *r, struct shm_ring *ctl, void *data, int wake_fd);

/* ---- producer ---- */

/*
 * Copies a record of LEN bytes into the ring and publishes it. Returns 0; -EAGAIN when the
 * ring has no room now (retry after the consumer acknowledges); -EMSGSIZE when LEN exceeds
 * the ring's max_record (it will never fit); -EINVAL when LEN is 0; -EBADMSG when the ring's
 * positions are corrupt.
 */
int ring_write(struct ring *r, const void *rec, size_t len);

/*
 * Zero-copy variant: reserves room for a record of LEN bytes and returns where to write it.
 * Nothing is visible to the consumer until ring_publish(). Same errors as ring_write(). A
 * second claim without a publish replaces the first.
 */
int ring_claim(struct ring *r, size_t len, void **buf);

/* Publishes the record claimed last, then wakes a sleeping consumer. */
void ring_publish(struct ring *r);

/* ---- consumer ---- */

/*
 * Reads the next record after the read position without acknowledging it: *REC points into
 * the ring and stays valid until the record is acknowledged. Returns 0; -EAGAIN when no
 * record is available; -EBADMSG when the ring holds a corrupt header or corrupt positions (a
 * broken producer, a damaged segment): the record never lies outside the data area.
 */
int ring_read(struct ring *r, const void **rec, size_t *len);

/* Acknowledges every record read so far: the producer may reuse their space. */
void ring_ack(struct ring *r);

/* Moves the read position back to the acknowledged head (re-deliver unacknowledged records). */
void ring_rewind(struct ring *r);

/*
 * Acknowledges up to POS, a position previously returned by ring_read_pos(), for example the
 * one the committer stored in LMDB before a crash. Returns 0, or -EINVAL when POS is outside
 * [head, tail].
 */
int ring_skip_to(struct ring *r, uint64_t pos);

/* Position just after the last record read (what ring_ack() would acknowledge). */
uint64_t ring_read_pos(const struct ring *r);

/*
 * Prepares to sleep: returns 0 when the ring is empty and the producer will now write the
 * eventfd on its next publish (wait for it, then call ring_wait_done()), or -EAGAIN when a
 * record arrived in the meantime (do not sleep).
 */
int ring_prepare_wait(struct ring *r);

/* Clears the sleeping word and drains the eventfd. Call after waking, whatever woke you. */
void ring_wait_done(struct ring *r);

/*
 * Blocks until a record is available or TIMEOUT_MS passes (-1: no limit): it watches the
 * tail for a few microseconds, then sleeps in poll(2) on the eventfd. For consumers without
 * an event loop (tests, benchmarks). Returns 0 when a
 * record is available, -ETIMEDOUT, or another negative errno.
 */
int ring_wait(struct ring *r, int timeout_ms);

/* ---- either side, and read-only observers ---- */

/* Bytes published and not yet acknowledged. Safe from any process. */
uint64_t ring_depth(const struct shm_ring *ctl);

#endif
