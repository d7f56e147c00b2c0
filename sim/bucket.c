/*
 * bucket.c: the token bucket (see bucket.h). Due ticks are applied in closed form, so a long
 * idle period with a 1 ms Keepa minute costs O(1), not one loop turn per tick.
 */
#include "sim/bucket.h"

#include <errno.h>

int sim_bucket_init(struct sim_bucket *b, int64_t minute_ms, int64_t bucket_minutes, int64_t rate,
                    int64_t start_tokens, int64_t now_ns)
{
    if (minute_ms < 1 || bucket_minutes < 1 || rate < 0)
        return -EINVAL;
    pthread_mutex_init(&b->mu, NULL);
    b->minute_ns = minute_ms * 1000000LL;
    b->bucket_minutes = bucket_minutes;
    b->rate = rate;
    b->balance = start_tokens == SIM_START_FULL ? rate * bucket_minutes : start_tokens;
    b->start_ns = now_ns;
    b->ticks_done = 0;
    b->earned = b->consumed = b->expired = 0;
    return 0;
}

void sim_bucket_destroy(struct sim_bucket *b)
{
    pthread_mutex_destroy(&b->mu);
}

static void advance(struct sim_bucket *b, int64_t now_ns)
{
    int64_t due = now_ns > b->start_ns ? (now_ns - b->start_ns) / b->minute_ns : 0;
    int64_t n = due - b->ticks_done;
    if (n <= 0)
        return;
    b->ticks_done = due;
    int64_t cap = b->rate * b->bucket_minutes;
    int64_t offered = n > INT64_MAX / (b->rate + 1) ? INT64_MAX / 2 : n * b->rate;
    if (b->balance >= cap) {
        b->expired += offered;
        return;
    }
    int64_t room = cap - b->balance;
    if (offered <= room) {
        b->balance += offered;
        b->earned += offered;
        return;
    }
    /* The ticks that fill the bucket add in full (the last one partly); the rest expire. */
    b->balance = cap;
    b->earned += room;
    b->expired += offered - room;
}

static void view(struct sim_bucket *b, int64_t now_ns, struct sim_bucket_view *v)
{
    if (v == NULL)
        return;
    int64_t next = b->start_ns + (b->ticks_done + 1) * b->minute_ns;
    int64_t in_ns = next - now_ns;
    int64_t in_ms = (in_ns + 999999) / 1000000;
    int64_t minute_ms = b->minute_ns / 1000000;
    if (in_ms < 1)
        in_ms = 1;
    if (in_ms > minute_ms)
        in_ms = minute_ms;
    v->balance = b->balance;
    v->refill_in_ms = in_ms;
    v->rate = b->rate;
    v->ticks = b->ticks_done;
}

void sim_bucket_peek(struct sim_bucket *b, int64_t now_ns, struct sim_bucket_view *v)
{
    pthread_mutex_lock(&b->mu);
    advance(b, now_ns);
    view(b, now_ns, v);
    pthread_mutex_unlock(&b->mu);
}

int sim_bucket_charge(struct sim_bucket *b, int64_t now_ns, int64_t cost, int force_refuse,
                      struct sim_bucket_view *v)
{
    pthread_mutex_lock(&b->mu);
    advance(b, now_ns);
    int ok = !force_refuse && b->balance > 0;
    if (ok) {
        b->balance -= cost;
        b->consumed += cost;
    }
    view(b, now_ns, v);
    pthread_mutex_unlock(&b->mu);
    return ok;
}

void sim_bucket_debit(struct sim_bucket *b, int64_t now_ns, int64_t cost)
{
    pthread_mutex_lock(&b->mu);
    advance(b, now_ns);
    b->balance -= cost;
    b->consumed += cost;
    pthread_mutex_unlock(&b->mu);
}

void sim_bucket_set_balance(struct sim_bucket *b, int64_t now_ns, int64_t balance)
{
    pthread_mutex_lock(&b->mu);
    advance(b, now_ns);
    b->balance = balance;
    pthread_mutex_unlock(&b->mu);
}

void sim_bucket_set_rate(struct sim_bucket *b, int64_t now_ns, int64_t rate)
{
    pthread_mutex_lock(&b->mu);
    advance(b, now_ns);
    b->rate = rate < 0 ? 0 : rate;
    pthread_mutex_unlock(&b->mu);
}

void sim_bucket_totals(struct sim_bucket *b, int64_t now_ns, int64_t *earned, int64_t *consumed,
                       int64_t *expired, int64_t *balance, int64_t *rate)
{
    pthread_mutex_lock(&b->mu);
    advance(b, now_ns);
    *earned = b->earned;
    *consumed = b->consumed;
    *expired = b->expired;
    *balance = b->balance;
    *rate = b->rate;
    pthread_mutex_unlock(&b->mu);
}

void sim_bucket_reset_totals(struct sim_bucket *b)
{
    pthread_mutex_lock(&b->mu);
    b->earned = b->consumed = b->expired = 0;
    pthread_mutex_unlock(&b->mu);
}
