/*
 * keys.h: the supervisor's side of the key segments (shm/keyseg.h).
 *
 * At start the supervisor opens the bucket segment of each of its API keys (creating it with
 * the instance's [tokens] settings if no other instance has), joins it as this instance's
 * member with [tokens] weight, and lists the keys' fingerprints in the instance segment so
 * that workers and `kdeals status` find them. While it runs it writes off the reservations of
 * the workers it reaps, sweeps dead instances and dead processes out of every key segment once
 * a second (an instance killed with -9 has nobody to reap its workers), and passes weight
 * changes on after a reload. At the end it leaves and closes each segment; the last process
 * of a key unlinks its segment.
 */
#ifndef KD_SUPERVISOR_KEYS_H
#define KD_SUPERVISOR_KEYS_H

#include <stddef.h>
#include <stdint.h>

#include "base/config.h"
#include "base/key.h"
#include "shm/keyseg.h"
#include "shm/layout.h"

struct sup_keys {
    unsigned n;
    struct ks_segment ks[KD_KEYS_MAX];
    int member[KD_KEYS_MAX];
    int64_t owner; /* this supervisor's pid */
    int64_t last_sweep_ns;
};

/*
 * Opens the segments of KEYS for INSTANCE with C's [tokens] settings, joins each, and lists
 * the fingerprints in the instance segment L (before it is published). Returns 0, or a negative
 * errno with ERR saying why (a segment of another user, another layout version, every member
 * slot taken); nothing is held then.
 */
int sup_keys_open(struct sup_keys *sk, const struct kd_keys *keys, const char *instance,
                  const struct cfg *c, struct shm_layout *l, char *err, size_t errlen);

/* Writes off worker PID's reservations in every key's bucket; returns how many. */
int sup_keys_writeoff(struct sup_keys *sk, int64_t pid, int64_t now_ns);

/* Sweeps dead members and processes out of every key segment, at most once a second. */
void sup_keys_sweep(struct sup_keys *sk, int64_t now_ns);

/* Sets this instance's weight in every key segment. */
void sup_keys_set_weight(struct sup_keys *sk, int64_t weight);

/* Leaves and closes every key segment. */
void sup_keys_close(struct sup_keys *sk);

#endif
