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

double committer_survival(const struct st_pending *p, int64_t now_wall_ms,
                          const struct committer_value *m)
{
    if (p->source == ST_SOURCE_RECOMMIT)
        return 1.0;
    double age_min = (double)(now_wall_ms - p->peek_ms) / (double)m->minute_ms;
    return val_survival(m->lambda[val_class(p->in.sales_rank)], age_min);
}

double committer_still_deal(const struct st_pending *p, int64_t now_wall_ms,
                            const struct committer_value *m)
{
    if (p->source == ST_SOURCE_RECOMMIT)
        return 1.0;
    return m->hit * committer_survival(p, now_wall_ms, m);
}

double committer_value_per_token(const struct st_pending *p, int64_t now_wall_ms,
                                 const struct committer_value *m)
{
    double profit = (double)(p->peek_profit_cents > 1 ? p->peek_profit_cents : 1);
    if (p->source != ST_SOURCE_RECOMMIT)
        profit *= m->ratio;
    int64_t live = p->in.offers_new >= 0 && p->in.offers_used >= 0
                       ? (int64_t)p->in.offers_new + p->in.offers_used
                       : -1;
    return profit * committer_still_deal(p, now_wall_ms, m) /
           (double)val_fetch_tokens(live, m->offers);
}

double committer_token_value(const struct committer_queue *q, int64_t now_wall_ms,
                             const struct committer_value *m, double found_cents,
                             double spent_tokens)
{
    double avg = found_cents > 0 && spent_tokens > 0 ? found_cents / spent_tokens : 0;
    double sum = 0;
    size_t n = 0;
    for (size_t i = 0; m != NULL && m->on && i < q->n; i++) {
        const struct committer_item *it = &q->items[i];
        if (it->p.source == ST_SOURCE_RECOMMIT)
            continue;
        sum += committer_value_per_token(&it->p, now_wall_ms, m);
        n++;
    }
    double backlog = n > 0 ? sum / (double)n : 0;
    return backlog > avg ? backlog : avg;
}

/* True when item A goes before item B. */
static bool before(const struct committer_item *a, double va, const struct committer_item *b,
                   double vb, bool by_value)
{
    if (by_value && va != vb)
        return va > vb;
    return a->ready_ms < b->ready_ms;
}

size_t committer_queue_take(struct committer_queue *q, int64_t now_ms, int64_t now_wall_ms,
                            const struct committer_value *m, size_t max, struct st_key *keys)
{
    if (max > COMMITTER_MAX_BATCH)
        max = COMMITTER_MAX_BATCH;
    size_t n = 0;
    int domain = -1;
    bool by_value = m != NULL && m->on;
    /* The most valuable ready item first (or the oldest: arrival order, except that items
     * back from a backoff compete by the time they became ready again). */
    while (n < max) {
        ptrdiff_t best = -1;
        double best_v = 0;
        for (size_t i = 0; i < q->n; i++) {
            const struct committer_item *it = &q->items[i];
            if (it->in_flight || it->ready_ms > now_ms)
                continue;
            if (domain >= 0 && it->p.domain != domain)
                continue;
            double v = by_value ? committer_value_per_token(&it->p, now_wall_ms, m) : 0;
            if (best < 0 || before(it, v, &q->items[best], best_v, by_value)) {
                best = (ptrdiff_t)i;
                best_v = v;
            }
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

size_t committer_queue_hopeless(const struct committer_queue *q, int64_t now_wall_ms,
                                const struct committer_value *m, size_t max, struct st_key *keys)
{
    size_t n = 0;
    for (size_t i = 0; i < q->n && n < max; i++) {
        const struct committer_item *it = &q->items[i];
        if (!it->in_flight && committer_survival(&it->p, now_wall_ms, m) < COMMITTER_DROP_CHANCE)
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
