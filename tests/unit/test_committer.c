/*
 * test_committer.c: the committer's pure queue and batching rules (committer/queue.h).
 *
 * What the pipeline relies on: an ASIN announced twice (pending at start and again on a
 * ring, or by both producers) is queued and fetched once; a batch never exceeds the
 * configured size (<= 5) nor mixes domains; a full batch goes at once, a lone survivor after
 * the linger time and not before; items in flight or backing off are not taken again; the
 * backoff grows and is bounded. With value order the backlog goes by expected profit per token
 * (the peek's profit, its learned confidence, the survival of a deal that old, the fetch's
 * cost), recommits are not discounted by age, and survivors whose deals have most likely
 * vanished are found for dropping.
 */
#include "kd_test.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "committer/queue.h"

#define MINUTE_MS 60000LL
#define T0        1800000000000LL /* a wall-clock moment */

/* A model with the order on, every class vanishing with a half-life of HALF minutes. */
static struct committer_value model(int64_t half)
{
    struct committer_value m = {
        .on = true, .hit = 0.8, .ratio = 0.9, .minute_ms = MINUTE_MS, .offers = 20};
    for (int k = 0; k < VAL_CLASSES; k++)
        m.lambda[k] = val_lambda_of_half_life(half);
    return m;
}

static struct st_pending valued(const char *asin, int64_t profit, int64_t age_min, int offers)
{
    struct st_pending p;
    memset(&p, 0, sizeof(p));
    st_pending_init(&p);
    snprintf(p.asin, sizeof(p.asin), "%s", asin);
    p.domain = 1;
    p.source = ST_SOURCE_DEALS;
    p.peek_ms = T0 - age_min * MINUTE_MS;
    p.peek_priced = true;
    p.peek_profit_cents = profit;
    p.in.offers_new = 0;
    p.in.offers_used = offers;
    p.in.sales_rank = 50000;
    return p;
}

static struct st_pending survivor(const char *asin, unsigned domain)
{
    struct st_pending p;
    memset(&p, 0, sizeof(p));
    snprintf(p.asin, sizeof(p.asin), "%s", asin);
    p.domain = (uint8_t)domain;
    p.peek_ms = 1000;
    p.source = ST_SOURCE_DEALS;
    return p;
}

static void asin_n(char out[11], int i)
{
    snprintf(out, 11, "B0TEST%04d", i);
}

static void test_dedup_by_asin_and_domain(void **state)
{
    (void)state;
    struct committer_queue q;
    committer_queue_init(&q);
    struct st_pending a = survivor("B0AAAAAAAA", 1);
    assert_int_equal(committer_queue_add(&q, &a, 10), 1);
    a.peek_ms = 99; /* a later announcement of the same ASIN */
    assert_int_equal(committer_queue_add(&q, &a, 20), 0);
    assert_int_equal(q.n, 1);
    assert_int_equal(q.items[0].p.peek_ms, 1000); /* the queued one is kept */
    assert_int_equal(q.items[0].ready_ms, 10);
    struct st_pending other_domain = survivor("B0AAAAAAAA", 3);
    assert_int_equal(committer_queue_add(&q, &other_domain, 20), 1);
    assert_int_equal(q.n, 2);
    struct st_pending bad = survivor("b0lower000", 1);
    assert_int_equal(committer_queue_add(&q, &bad, 20), -EINVAL);
    assert_int_equal(q.n, 2);

    struct st_key k;
    assert_int_equal(st_key_make(1, "B0AAAAAAAA", &k), 0);
    assert_non_null(committer_queue_find(&q, &k));
    assert_int_equal(committer_queue_remove(&q, &k), 0);
    assert_null(committer_queue_find(&q, &k));
    assert_int_equal(committer_queue_remove(&q, &k), -ENOENT);
    assert_int_equal(q.n, 1);
    /* Once removed (committed), a new announcement is a new item. */
    assert_int_equal(committer_queue_add(&q, &a, 30), 1);
    committer_queue_free(&q);
}

static void test_take_respects_batch_order_domain_and_in_flight(void **state)
{
    (void)state;
    struct committer_queue q;
    committer_queue_init(&q);
    char asin[11];
    for (int i = 0; i < 12; i++) {
        asin_n(asin, i);
        struct st_pending p = survivor(asin, i == 2 ? 3 : 1);
        assert_int_equal(committer_queue_add(&q, &p, 100 + i), 1);
    }
    int64_t oldest;
    assert_int_equal(committer_queue_ready(&q, 1000, &oldest), 12);
    assert_int_equal(oldest, 100);

    struct st_key keys[COMMITTER_MAX_BATCH];
    /* Asking for more than 5 still gives at most 5, all of the first item's domain. */
    size_t n = committer_queue_take(&q, 1000, 0, NULL, 50, keys);
    assert_int_equal(n, COMMITTER_MAX_BATCH);
    const int want[] = {0, 1, 3, 4, 5};
    for (size_t i = 0; i < n; i++) {
        asin_n(asin, want[i]);
        char got[11];
        st_key_asin(&keys[i], got);
        assert_string_equal(got, asin);
        assert_int_equal(st_key_domain(&keys[i]), 1);
        assert_true(committer_queue_find(&q, &keys[i])->in_flight);
    }
    /* In-flight items are neither ready nor taken again. */
    assert_int_equal(committer_queue_ready(&q, 1000, &oldest), 7);
    assert_int_equal(oldest, 102);
    n = committer_queue_take(&q, 1000, 0, NULL, 5, keys);
    assert_int_equal(n, 1); /* the domain-3 item is the oldest ready: alone */
    assert_int_equal(st_key_domain(&keys[0]), 3);
    n = committer_queue_take(&q, 1000, 0, NULL, 3, keys);
    assert_int_equal(n, 3);
    committer_queue_free(&q);
}

static void test_backoff_delays_readiness(void **state)
{
    (void)state;
    struct committer_queue q;
    committer_queue_init(&q);
    struct st_pending a = survivor("B0AAAAAAAA", 1), b = survivor("B0BBBBBBBB", 1);
    committer_queue_add(&q, &a, 0);
    committer_queue_add(&q, &b, 0);
    struct st_key k;
    st_key_make(1, "B0AAAAAAAA", &k);
    committer_queue_find(&q, &k)->ready_ms = 500; /* backing off until 500 */
    int64_t oldest;
    assert_int_equal(committer_queue_ready(&q, 100, &oldest), 1);
    assert_int_equal(committer_queue_next_ready(&q, 100), 500);
    struct st_key keys[5];
    assert_int_equal(committer_queue_take(&q, 100, 0, NULL, 5, keys), 1);
    assert_int_equal(committer_queue_next_ready(&q, 100), 500);
    assert_int_equal(committer_queue_take(&q, 100, 0, NULL, 5, keys), 0);
    assert_int_equal(committer_queue_take(&q, 500, 0, NULL, 5, keys), 1);
    assert_int_equal(committer_queue_next_ready(&q, 500), -1);
    committer_queue_free(&q);
}

static void test_linger_rule(void **state)
{
    (void)state;
    /* Nothing ready: nothing to send. */
    assert_int_equal(committer_batch_wait_ms(0, -1, 1000, 5, 1000, false), -1);
    /* A full batch goes at once, whatever the linger. */
    assert_int_equal(committer_batch_wait_ms(5, 1000, 1000, 5, 60000, false), 0);
    assert_int_equal(committer_batch_wait_ms(7, 1000, 1000, 5, 60000, false), 0);
    /* A lone survivor waits for the rest of the linger, then goes. */
    assert_int_equal(committer_batch_wait_ms(1, 1000, 1000, 5, 1000, false), 1000);
    assert_int_equal(committer_batch_wait_ms(1, 1000, 1700, 5, 1000, false), 300);
    assert_int_equal(committer_batch_wait_ms(1, 1000, 2000, 5, 1000, false), 0);
    assert_int_equal(committer_batch_wait_ms(4, 1000, 5000, 5, 1000, false), 0);
    /* Linger 0 and batch 1 never wait. */
    assert_int_equal(committer_batch_wait_ms(1, 1000, 1000, 5, 0, false), 0);
    assert_int_equal(committer_batch_wait_ms(1, 1000, 1000, 1, 5000, false), 0);
    /* Stopping: no new batch. */
    assert_int_equal(committer_batch_wait_ms(5, 0, 1000, 5, 0, true), -1);
}

static void test_backoff_grows_and_is_bounded(void **state)
{
    (void)state;
    int64_t minute = 60000;
    assert_int_equal(committer_backoff_ms(1, minute), 15000);
    assert_int_equal(committer_backoff_ms(2, minute), 30000);
    assert_int_equal(committer_backoff_ms(3, minute), 60000);
    int64_t prev = 0;
    for (uint32_t a = 1; a < 64; a++) {
        int64_t d = committer_backoff_ms(a, minute);
        assert_true(d >= prev);
        assert_true(d <= 30 * minute);
        prev = d;
    }
    assert_int_equal(committer_backoff_ms(UINT32_MAX, minute), 30 * minute);
    assert_true(committer_backoff_ms(1, 100) >= 1); /* accelerated minutes */
    assert_true(committer_backoff_ms(1, 0) >= 1);
}

static void test_value_of_a_survivor(void **state)
{
    (void)state;
    struct committer_value m = model(60);
    struct st_pending p = valued("B0AAAAAAAA", 2000, 0, 5);
    /* Fresh: hit x profit ratio x profit / 6 tokens. */
    assert_true(fabs(committer_still_deal(&p, T0, &m) - 0.8) < 1e-9);
    assert_true(fabs(committer_value_per_token(&p, T0, &m) - 0.8 * 0.9 * 2000 / 6) < 1e-6);
    /* One half-life later, half of that. */
    assert_true(fabs(committer_survival(&p, T0 + 60 * MINUTE_MS, &m) - 0.5) < 1e-9);
    assert_true(fabs(committer_value_per_token(&p, T0 + 60 * MINUTE_MS, &m) -
                     0.5 * 0.8 * 0.9 * 2000 / 6) < 1e-6);
    /* Twice the offers: twice the fetch, half the value per token. */
    struct st_pending many = valued("B0BBBBBBBB", 2000, 0, 15);
    assert_true(fabs(committer_value_per_token(&many, T0, &m) * 2 -
                     committer_value_per_token(&p, T0, &m)) < 1e-6);
    /* A recommit: the stored profit, undiscounted by age or confidence. */
    struct st_pending re = valued("B0CCCCCCCC", 2000, 600, 5);
    re.source = ST_SOURCE_RECOMMIT;
    assert_true(committer_still_deal(&re, T0, &m) == 1.0);
    assert_true(fabs(committer_value_per_token(&re, T0, &m) - 2000.0 / 6) < 1e-6);
    /* No profit estimate: worth a cent, not nothing (it still sorts by age and cost). */
    struct st_pending none = valued("B0DDDDDDDD", -300, 0, 5);
    assert_true(committer_value_per_token(&none, T0, &m) > 0);
}

static void test_take_by_value_not_arrival(void **state)
{
    (void)state;
    struct committer_queue q;
    committer_queue_init(&q);
    struct committer_value m = model(60);
    /* Arrival order: a small old one, a big stale one, a big fresh one, a mid fresh one. */
    struct st_pending a = valued("B0AAAAAAAA", 600, 10, 5);
    struct st_pending b = valued("B0BBBBBBBB", 5000, 240, 5);
    struct st_pending c = valued("B0CCCCCCCC", 5000, 5, 5);
    struct st_pending d = valued("B0DDDDDDDD", 1500, 0, 5);
    committer_queue_add(&q, &a, 1);
    committer_queue_add(&q, &b, 2);
    committer_queue_add(&q, &c, 3);
    committer_queue_add(&q, &d, 4);
    struct st_key keys[5];
    char asin[11];
    assert_int_equal(committer_queue_take(&q, 100, T0, &m, 2, keys), 2);
    st_key_asin(&keys[0], asin);
    assert_string_equal(asin, "B0CCCCCCCC"); /* 5000 x 0.94 */
    st_key_asin(&keys[1], asin);
    assert_string_equal(asin, "B0DDDDDDDD"); /* 1500: more than 5000 x 1/16 */
    /* The order off: arrival order. */
    m.on = false;
    assert_int_equal(committer_queue_take(&q, 100, T0, &m, 1, keys), 1);
    st_key_asin(&keys[0], asin);
    assert_string_equal(asin, "B0AAAAAAAA");
    committer_queue_free(&q);
}

static void test_hopeless_survivors(void **state)
{
    (void)state;
    struct committer_queue q;
    committer_queue_init(&q);
    struct committer_value m = model(60);
    m.hit = 0.01; /* however little the peeks are trusted, only age makes a survivor hopeless */
    struct st_pending young = valued("B0AAAAAAAA", 3000, 180, 5); /* 1/8 left */
    struct st_pending old = valued("B0BBBBBBBB", 3000, 240, 5);   /* 1/16 left */
    struct st_pending re = valued("B0CCCCCCCC", 3000, 6000, 5);
    re.source = ST_SOURCE_RECOMMIT;
    committer_queue_add(&q, &young, 1);
    committer_queue_add(&q, &old, 1);
    committer_queue_add(&q, &re, 1);
    struct st_key keys[5];
    char asin[11];
    assert_int_equal(committer_queue_hopeless(&q, T0, &m, 5, keys), 1);
    st_key_asin(&keys[0], asin);
    assert_string_equal(asin, "B0BBBBBBBB");
    /* In flight: not dropped under the batch's feet. */
    committer_queue_find(&q, &keys[0])->in_flight = true;
    assert_int_equal(committer_queue_hopeless(&q, T0, &m, 5, keys), 0);
    committer_queue_free(&q);
}

static void test_token_value(void **state)
{
    (void)state;
    struct committer_queue q;
    committer_queue_init(&q);
    struct committer_value m = model(60);
    /* Nothing known: 0. Nothing waits: the average of what acquisition found per token. */
    assert_true(committer_token_value(&q, T0, &m, 0, 0) == 0);
    assert_true(fabs(committer_token_value(&q, T0, &m, 30000, 200) - 150) < 1e-9);
    /* Survivors wait: their mean value per token when it is more (the recommit is no
     * acquisition and does not count). */
    struct st_pending a = valued("B0AAAAAAAA", 3000, 0, 5);
    struct st_pending b = valued("B0BBBBBBBB", 1000, 0, 5);
    struct st_pending re = valued("B0CCCCCCCC", 90000, 0, 5);
    re.source = ST_SOURCE_RECOMMIT;
    committer_queue_add(&q, &a, 1);
    committer_queue_add(&q, &b, 1);
    committer_queue_add(&q, &re, 1);
    double mean =
        (committer_value_per_token(&a, T0, &m) + committer_value_per_token(&b, T0, &m)) / 2;
    assert_true(fabs(committer_token_value(&q, T0, &m, 30000, 200) - mean) < 1e-9); /* 240 */
    /* A backlog worth less than the average: the average. */
    assert_true(fabs(committer_token_value(&q, T0, &m, 90000, 200) - 450) < 1e-9);
    /* The order off: the backlog is not valued, only the average counts. */
    m.on = false;
    assert_true(fabs(committer_token_value(&q, T0, &m, 30000, 200) - 150) < 1e-9);
    committer_queue_free(&q);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dedup_by_asin_and_domain),
        cmocka_unit_test(test_take_respects_batch_order_domain_and_in_flight),
        cmocka_unit_test(test_backoff_delays_readiness),
        cmocka_unit_test(test_linger_rule),
        cmocka_unit_test(test_backoff_grows_and_is_bounded),
        cmocka_unit_test(test_value_of_a_survivor),
        cmocka_unit_test(test_take_by_value_not_arrival),
        cmocka_unit_test(test_hopeless_survivors),
        cmocka_unit_test(test_token_value),
    };
    return KD_RUN_TESTS(tests, argc, argv);
}
