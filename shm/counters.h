/*
 * counters.h: per-process counters, gauges and log2 histograms in shared memory.
 *
 * The list lives in counters.def (X-macro): it is the single source for the enum ids in
 * layout.h, the metadata table below, `kdeals stat` and its JSON and Prometheus output.
 * Each role writes only its own block; updates are relaxed atomics (cheap, and a reader
 * never sees a torn value). Counters are monotonic within a segment generation.
 */
#ifndef KD_SHM_COUNTERS_H
#define KD_SHM_COUNTERS_H

#include <stdatomic.h>
#include <stdint.h>

#include "shm/layout.h"

struct shm_counter_meta {
    const char *name;
    enum shm_counter_kind kind;
    const char *help;
};

/* Metadata of every entry of counters.def, indexed by enum shm_counter_id. */
extern const struct shm_counter_meta shm_counter_meta[SHM_COUNTER_COUNT];

/* Adds N to a COUNTER (or moves a GAUGE by N). */
static inline void shm_counter_add(struct shm_counter_block *b, enum shm_counter_id id, int64_t n)
{
    atomic_fetch_add_explicit(&b->values[id], n, memory_order_relaxed);
}

/* Sets a GAUGE. */
static inline void shm_gauge_set(struct shm_counter_block *b, enum shm_counter_id id, int64_t v)
{
    atomic_store_explicit(&b->values[id], v, memory_order_relaxed);
}

/* Reads one value of one block. */
static inline int64_t shm_counter_get(const struct shm_counter_block *b, enum shm_counter_id id)
{
    return atomic_load_explicit(&b->values[id], memory_order_relaxed);
}

/* Index of the log2 bucket that VALUE falls in: 0 for 0, else 1 + floor(log2(value)). */
unsigned shm_hist_bucket(uint64_t value);

/* Records VALUE in histogram ID of block B. */
void shm_hist_record(struct shm_counter_block *b, enum shm_counter_id id, uint64_t value);

/* Sum of entry ID over every role's block: the total of a COUNTER. */
int64_t shm_counter_total(const struct shm_layout *l, enum shm_counter_id id);

/*
 * The level of GAUGE ID across the roles. A gauge is a level, not an amount: where several
 * processes publish the same one (the shared bucket's refill rate and projection, seen by
 * each worker), adding them up would count it once per process. The level is the highest
 * value among the roles that set one (not 0), or 0 when none did.
 */
int64_t shm_gauge_level(const struct shm_layout *l, enum shm_counter_id id);

/* What `kdeals stat` shows for entry ID: the total of a counter, the level of a gauge. */
int64_t shm_counter_value(const struct shm_layout *l, enum shm_counter_id id);

/*
 * Approximate quantile Q (0..1) of histogram ID summed over all roles, as the upper bound
 * of the bucket that holds it. Returns 0 for an empty histogram.
 */
uint64_t shm_hist_quantile(const struct shm_layout *l, enum shm_counter_id id, double q);

/* Looks an entry up by name. Returns its id, or -1. */
int shm_counter_find(const char *name);

#endif
