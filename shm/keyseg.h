/*
 * keyseg.h: the key segment: one token bucket per Keepa API key, shared by every instance on
 * the host that uses the key (docs/architecture.md, "Tokens").
 *
 * Keepa's tokens belong to the key, across every marketplace: two instances (say .com and .de)
 * with one key draw on one bucket. So the bucket (shm/tokens.h) lives in a segment of its own,
 * named by the key's fingerprint (base/key.h kd_key_fingerprint: never the key itself):
 *
 *     /dev/shm/kdeals-key-<fingerprint>     mode 0600, owned by the user running kdeals
 *
 * and everything shm/tokens.c guarantees across processes (lock-free grants, owner-tagged
 * reservations, re-anchoring to every answer net of what is in flight, learned costs, the
 * deficit bound) holds across the instances as it does across one instance's workers.
 *
 * Life: ks_open() opens the segment or creates it (the first instance to start initialises the
 * bucket with its [tokens] settings) and holds a shared flock on it while it stays open; the
 * supervisor and each worker of every instance hold one. ks_close() takes the lock exclusively
 * when it can, which means nobody else holds the segment, and then unlinks it: a key nobody
 * uses leaves nothing behind. A creator holds the lock exclusively until the segment is
 * initialised; an opener that finds it unlinked under it (its link count 0) opens again. A
 * segment owned by another user, or of another layout version, is refused, naming its owner.
 *
 * Members: each instance holds a member slot while it runs (its supervisor joins, with the
 * instance's [tokens] weight; its workers find the slot by instance name and supervisor pid).
 * A member's account holds what it was charged (estimates until the answer says otherwise).
 * The share rule: when several members have work, one whose account per unit of weight is
 * ahead of another's waits for the others; a member that had no work for a while restarts level
 * with the others (idle time banks no credit); so the plan is shared by weight while everybody
 * has work, and all of it flows to whoever has work otherwise. The rule yields when the bucket
 * is about to overflow: tokens are never lost to it. Dead members (their supervisor gone) and
 * the reservations of dead processes are swept by whoever notices (ks_sweep), so an instance
 * killed with -9 leaks neither tokens nor slots.
 */
#ifndef KD_SHM_KEYSEG_H
#define KD_SHM_KEYSEG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "shm/layout.h"
#include "shm/tokens.h"

#define KS_NAME_PREFIX "/kdeals-key-"
#define KS_WEIGHT_MAX  1000

struct ks_segment {
    struct shm_key_layout *layout; /* NULL when not open */
    size_t size;
    int fd;
    bool writable;
    char fingerprint[SHM_KEY_FP_MAX];
    char name[SHM_KEY_FP_MAX + 16]; /* KS_NAME_PREFIX fingerprint */
};

/* Writes the shm name of the key segment of FINGERPRINT into OUT (LEN bytes). */
void ks_name(const char *fingerprint, char *out, size_t len);

/*
 * Opens the key segment of FINGERPRINT read-write, creating and initialising it (bucket with
 * P, see tb_init) when there is none, and holds a shared lock on it until ks_close. Returns 0;
 * -EACCES when the segment belongs to another user or its mode lets others in (ERR names the
 * owner); -EPROTO for a segment of another layout version or a foreign file; -EINVAL for a bad
 * fingerprint or P; -ETIMEDOUT when a creator never finished; another negative errno. ERR
 * (ERRLEN bytes) receives one line saying why.
 */
int ks_open(struct ks_segment *ks, const char *fingerprint, const struct tb_params *p, char *err,
            size_t errlen);

/*
 * Maps the key segment of FINGERPRINT read-only, without a lock (for `kdeals status`: it
 * cannot disturb anybody). Returns 0, -ENOENT when it does not exist, or the errors of ks_open.
 */
int ks_attach_ro(struct ks_segment *ks, const char *fingerprint, char *err, size_t errlen);

/*
 * Unmaps and closes KS. A read-write handle that turns out to be the last one holding the
 * segment unlinks it. Returns 1 when it unlinked, else 0.
 */
int ks_close(struct ks_segment *ks);

/*
 * Joins KS as the member INSTANCE owned by OWNER (the supervisor's pid) with WEIGHT
 * (1..KS_WEIGHT_MAX) at NOW_NS, or finds the slot it already holds. A new member starts level
 * with the members that have work. Returns the member index, -ENOSPC when every slot is held
 * by a live instance, or -EINVAL.
 */
int ks_join(struct ks_segment *ks, const char *instance, int64_t owner, int64_t weight,
            int64_t now_ns);

/* The member index of INSTANCE owned by OWNER, or -ENOENT. */
int ks_find(const struct ks_segment *ks, const char *instance, int64_t owner);

/* Frees member M if OWNER still holds it. */
void ks_leave(struct ks_segment *ks, int member, int64_t owner);

/* Sets member M's weight (1..KS_WEIGHT_MAX) if OWNER still holds it. */
void ks_set_weight(struct ks_segment *ks, int member, int64_t owner, int64_t weight);

/*
 * Frees the member slots whose owner is dead and writes off the reservations of dead processes
 * (counted as charged at their reserved amount; the next reading resyncs). Runs at most once
 * per MIN_INTERVAL_NS across every process (0: now). Returns how many slots (member and
 * reservation) it freed.
 */
int ks_sweep(struct ks_segment *ks, int64_t now_ns, int64_t min_interval_ns);

/*
 * The share rule for member M (owned by OWNER) asking for COST tokens at NOW_NS: true when it
 * may reserve now. False when another member with work is behind it in tokens per unit of
 * weight and the bucket is not about to overflow; *RETRY_NS then says when to ask again.
 * A member index < 0 (no member) is always allowed.
 */
bool ks_share_ok(const struct ks_segment *ks, int member, int64_t owner, int64_t now_ns,
                 int64_t *retry_ns);

/*
 * Says that member M has work waiting for tokens until UNTIL_NS (NOW_NS is the caller's
 * clock). A member that had none restarts level with the others that have work.
 */
void ks_mark_active(struct ks_segment *ks, int member, int64_t owner, int64_t now_ns,
                    int64_t until_ns);

/*
 * Accounts for member M (if OWNER still holds it; the key's totals in any case): USED_DELTA
 * tokens to its share account (a grant's estimate, then actual - estimate), SPENT tokens that
 * an answer said were charged, LOST tokens estimated for a request that may have been charged
 * without an answer.
 */
void ks_account(struct ks_segment *ks, int member, int64_t owner, int64_t used_delta, int64_t spent,
                int64_t lost);

/* Live members of KS (a snapshot). */
int ks_members(const struct ks_segment *ks);

/* True when member slot M is held by a running instance; its owner (supervisor pid) to
 * *OWNER when not NULL. For readers (`kdeals status`). */
bool ks_member_held(const struct shm_key_member *m, int64_t *owner);

#endif
