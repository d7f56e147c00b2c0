/*
 * queue.c: the committer's survivor queue and batching rules. See queue.h.
 *
 * A plain array in arrival order with linear lookups: the queue holds the survivors of at
 * most a few hours of peeking (thousands), and each lookup is a memcmp of 11 bytes, so a
 * hash would add code without a measurable gain at these sizes.
 */
#include "committer/queue.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void committer_queue_init(struct committer_queue *q)
{
    memset(q, 0, sizeof(*q));
}

void committer_queue_free(struct committer_queue *q)
{
    free(q->items);
    memset(q, 0, sizeof(*q));
}

static ptrdiff_t find_index(const struct committer_queue *q, const struct st_key *key)
{
    for (size_t i = 0; i < q->n; i++)
        if (memcmp(q->items[i].key.b, key->b, ST_KEY_LEN) == 0)
            return (ptrdiff_t)i;
    return -1;
}

int committer_queue_add(struct committer_queue *q, const struct st_pending *p, int64_t now_ms)
{
    struct st_key key;
    if (st_pending_key(p, &key) != 0)
        return -EINVAL;
    if (find_index(q, &key) >= 0)
        return 0;
    if (q->n == q->cap) {
        size_t cap = q->cap ? q->cap * 2 : 64;
        struct committer_item *items = realloc(q->items, cap * sizeof(*items));
        if (items == NULL)
            return -ENOMEM;
        q->items = items;
        q->cap = cap;
    }
    struct committer_item *it = &q->items[q->n++];
    memset(it, 0, sizeof(*it));
    it->p = *p;
    it->key = key;
    it->ready_ms = now_ms;
    return 1;
}

struct committer_item *committer_queue_find(struct committer_queue *q, const struct st_key *key)
{
    ptrdiff_t i = find_index(q, key);
    return i < 0 ? NULL : &q->items[i];
}

int committer_queue_remove(struct committer_queue *q, const struct st_key *key)
{
    ptrdiff_t i = find_index(q, key);
    if (i < 0)
        return -ENOENT;
    memmove(&q->items[i], &q->items[i + 1], (q->n - (size_t)i - 1) * sizeof(q->items[0]));
    q->n--;
    return 0;
}

size_t committer_queue_ready(const struct committer_queue *q, int64_t now_ms, int64_t *oldest_ms)
{
    size_t n = 0;
    int64_t oldest = -1;
    for (size_t i = 0; i < q->n; i++) {
        const struct committer_item *it = &q->items[i];
        if (it->in_flight || it->ready_ms > now_ms)
            continue;
        n++;
        if (oldest < 0 || it->ready_ms < oldest)
            oldest = it->ready_ms;
    }
    if (oldest_ms != NULL)
        *oldest_ms = oldest;
    return n;
}

int64_t committer_queue_next_ready(const struct committer_queue *q, int64_t now_ms)
{
    int64_t next = -1;
    for (size_t i = 0; i < q->n; i++) {
        const struct committer_item *it = &q->items[i];
        if (it->in_flight || it->ready_ms <= now_ms)
            continue;
        if (next < 0 || it->ready_ms < next)
            next = it->ready_ms;
    }
    return next;
}

int64_t committer_batch_wait_ms(size_t ready, int64_t oldest_ms, int64_t now_ms, int64_t batch,
                                int64_t linger_ms, bool stopping)
{
    if (stopping || ready == 0)
        return -1;
    if (batch < 1)
        batch = 1;
    if ((int64_t)ready >= batch)
        return 0;
    int64_t waited = now_ms - oldest_ms;
    if (waited >= linger_ms)
        return 0;
    return linger_ms - waited;
}

size_t committer_queue_take(struct committer_queue *q, int64_t now_ms, size_t max,
                            struct st_key *keys)
{
    if (max > COMMITTER_MAX_BATCH)
        max = COMMITTER_MAX_BATCH;
    size_t n = 0;
    int domain = -1;
    /* Oldest ready first: arrival order, except that items back from a backoff compete
     * by the time they became ready again. */
    while (n < max) {
        ptrdiff_t best = -1;
        for (size_t i = 0; i < q->n; i++) {
            const struct committer_item *it = &q->items[i];
            if (it->in_flight || it->ready_ms > now_ms)
                continue;
            if (domain >= 0 && it->p.domain != domain)
                continue;
            if (best < 0 || it->ready_ms < q->items[best].ready_ms)
                best = (ptrdiff_t)i;
        }
        if (best < 0)
            break;
        struct committer_item *it = &q->items[best];
        it->in_flight = true;
        domain = it->p.domain;
        keys[n++] = it->key;
    }
    return n;
}

int64_t committer_backoff_ms(uint32_t attempts, int64_t minute_ms)
{
    if (minute_ms < 1)
        minute_ms = 1;
    int64_t cap = 30 * minute_ms;
    int64_t d = minute_ms / 4 > 0 ? minute_ms / 4 : 1;
    for (uint32_t i = 1; i < attempts && d < cap; i++)
        d *= 2;
    return d < cap ? d : cap;
}
