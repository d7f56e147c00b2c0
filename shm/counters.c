/*
 * counters.c: counter metadata and histogram helpers. See counters.h.
 */
#include "shm/counters.h"

#include <stdbool.h>
#include <string.h>

const struct shm_counter_meta shm_counter_meta[SHM_COUNTER_COUNT] = {
#define KD_COUNTER(name, kind, help) [SHM_C_##name] = {#name, SHM_##kind, help},
#include "shm/counters.def"
#undef KD_COUNTER
};

unsigned shm_hist_bucket(uint64_t value)
{
    if (value == 0)
        return 0;
    unsigned b = 64u - (unsigned)__builtin_clzll(value);
    return b < SHM_HIST_BUCKETS ? b : SHM_HIST_BUCKETS - 1;
}

void shm_hist_record(struct shm_counter_block *b, enum shm_counter_id id, uint64_t value)
{
    struct shm_histogram *h = &b->hist[id];
    atomic_fetch_add_explicit(&h->buckets[shm_hist_bucket(value)], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->count, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum, value, memory_order_relaxed);
}

int64_t shm_counter_total(const struct shm_layout *l, enum shm_counter_id id)
{
    int64_t sum = 0;
    for (int r = 0; r < SHM_ROLE_COUNT; r++)
        sum += atomic_load_explicit(&l->counters[r].values[id], memory_order_relaxed);
    return sum;
}

int64_t shm_gauge_level(const struct shm_layout *l, enum shm_counter_id id)
{
    int64_t level = 0;
    bool any = false;
    for (int r = 0; r < SHM_ROLE_COUNT; r++) {
        int64_t v = atomic_load_explicit(&l->counters[r].values[id], memory_order_relaxed);
        if (v != 0 && (!any || v > level)) {
            level = v;
            any = true;
        }
    }
    return level;
}

int64_t shm_counter_value(const struct shm_layout *l, enum shm_counter_id id)
{
    return (unsigned)id < SHM_COUNTER_COUNT && shm_counter_meta[id].kind == SHM_GAUGE
               ? shm_gauge_level(l, id)
               : shm_counter_total(l, id);
}

uint64_t shm_hist_quantile(const struct shm_layout *l, enum shm_counter_id id, double q)
{
    uint64_t buckets[SHM_HIST_BUCKETS] = {0};
    uint64_t total = 0;
    for (int r = 0; r < SHM_ROLE_COUNT; r++) {
        for (unsigned i = 0; i < SHM_HIST_BUCKETS; i++) {
            uint64_t n =
                atomic_load_explicit(&l->counters[r].hist[id].buckets[i], memory_order_relaxed);
            buckets[i] += n;
            total += n;
        }
    }
    if (total == 0)
        return 0;
    if (q < 0)
        q = 0;
    if (q > 1)
        q = 1;
    uint64_t rank = (uint64_t)(q * (double)(total - 1)) + 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < SHM_HIST_BUCKETS; i++) {
        seen += buckets[i];
        if (seen >= rank)
            return i == 0 ? 0 : (i >= 64 ? UINT64_MAX : (1ULL << i) - 1);
    }
    return UINT64_MAX;
}

int shm_counter_find(const char *name)
{
    for (int i = 0; i < SHM_COUNTER_COUNT; i++) {
        if (strcmp(shm_counter_meta[i].name, name) == 0)
            return i;
    }
    return -1;
}
