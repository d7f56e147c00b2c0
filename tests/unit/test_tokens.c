/*
 * test_tokens.c: the shared token bucket (shm/tokens.c).
 *
 * Three groups:
 *   - unit tests of the rules: tick projection, admission, deficit bound, waits bounded by the
 *     fill time, reservations and their slots (no double grant, no double free, write-off of
 *     a dead owner), re-anchoring with requests in flight, rate trust, learned costs, and
 *     misuse (bad sizes, negative values, garbage readings such as the zeroed 400 body);
 *   - the reference model: an independent model of Keepa's server bucket (per-minute ticks,
 *     cap = 60 x rate, admitted iff > 0, charged in full) driven by simulated workers for 7
 *     days of virtual time at 5/min and at 20/min, with costs 4x too low, a flapping refill
 *     rate, outlier readings, balance jumps of +-200, latency (readings arrive while other
 *     requests are in flight, out of order) and workers dying with tokens reserved. It asserts
 *     the properties docs/failure-modes.md asks for (F1-F18 below) and prints the utilisation;
 *   - concurrency: processes (fork, MAP_SHARED) and threads reserving, settling and dying at
 *     the same time never over-grant, never hand out a slot twice.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/kd_assert.h"
#include "kd_test.h"
#include "shm/keyseg.h"
#include "shm/tokens.h"

#define SEC    1000000000LL
#define MS     1000000LL
#define MINUTE (60 * SEC)
#define T0     (1000 * SEC) /* an arbitrary monotonic start */

static struct shm_tokens *new_bucket(const struct tb_params *p, int64_t now)
{
    struct shm_tokens *tb = aligned_alloc(64, sizeof(*tb));
    assert_non_null(tb);
    memset(tb, 0xa5, sizeof(*tb)); /* stale memory: tb_init must not depend on zeroes */
    assert_int_equal(tb_init(tb, p, now), 0);
    return tb;
}

static struct tb_reading reading(double left, int64_t refill_in_ms, int64_t rate, int64_t ts)
{
    return (struct tb_reading){left, refill_in_ms, rate, ts, 0};
}

/* A bucket anchored at T0 with LEFT tokens, the next tick in 30 s, at RATE per minute. */
static struct shm_tokens *anchored(double left, int64_t rate)
{
    struct shm_tokens *tb = new_bucket(NULL, T0);
    struct tb_reading r = reading(left, 30000, rate, 1700000000000);
    assert_int_equal(tb_apply_reading(tb, &r, T0, NULL), 0);
    return tb;
}

/* ---- unit tests ----------------------------------------------------------------------- */

static void test_init_rejects_bad_params(void **state)
{
    (void)state;
    struct shm_tokens *tb = aligned_alloc(64, sizeof(*tb));
    memset(tb, 0, sizeof(*tb));
    struct tb_params bad[] = {
        {.bucket_minutes = -1},     {.bucket_minutes = 65},
        {.max_deficit_tokens = -5}, {.max_deficit_tokens = TB_COST_MAX + 1},
        {.minute_ns = 999},         {.minute_ns = 1500000}, /* not whole ms */
        {.minute_ns = INT64_MAX},   {.initial_rate = -5},
        {.initial_rate = 1 << 20},  {.stale_minutes = -1},
    };
    for (size_t i = 0; i < KD_ARRAY_LEN(bad); i++)
        assert_int_equal(tb_init(tb, &bad[i], T0), -EINVAL);
    assert_int_equal(tb_init(NULL, NULL, T0), -EINVAL);
    assert_int_equal(tb_init(tb, NULL, -1), -EINVAL);

    /* Uninitialised memory: every call refuses cleanly. */
    struct tb_grant g;
    int64_t wait;
    struct tb_reading r = reading(100, 1000, 5, 1);
    struct tb_stats st;
    assert_int_equal(tb_reserve(tb, T0, 5, 1, &g, &wait), -EINVAL);
    assert_int_equal(tb_apply_reading(tb, &r, T0, NULL), -EINVAL);
    assert_int_equal(tb_writeoff_owner(tb, 1, T0), -EINVAL);
    assert_false(tb_needs_reading(tb, T0));
    assert_int_equal(tb_project(tb, T0), 0);
    assert_int_equal(tb_stats(tb, T0, &st), -EINVAL);
    assert_int_equal(tb_cost_estimate(tb, TB_KIND_PEEK, 1), -EINVAL);
    free(tb);
}

static void test_unanchored_grants_nothing_and_asks_for_a_reading(void **state)
{
    (void)state;
    struct shm_tokens *tb = new_bucket(NULL, T0);
    struct tb_grant g;
    int64_t wait = 0;
    assert_int_equal(tb_reserve(tb, T0, 5, 42, &g, &wait), -EAGAIN);
    assert_true(wait > T0 && wait <= T0 + 2 * SEC); /* a short retry, never a livelock */
    assert_true(tb_needs_reading(tb, T0));
    assert_int_equal(tb_time_to_fill_ns(tb, T0), -1);
    /* One process claims the /token call; the others are told it is taken. */
    assert_int_equal(tb_claim_status_call(tb, T0), 0);
    assert_int_equal(tb_claim_status_call(tb, T0 + SEC), -EALREADY);
    assert_false(tb_needs_reading(tb, T0 + SEC));
    assert_true(tb_needs_reading(tb, T0 + 11 * SEC)); /* that call failed: ask again */
    /* A free request is admitted whatever the state. */
    assert_int_equal(tb_reserve(tb, T0, 0, 42, &g, &wait), 0);
    assert_int_equal(g.slot, TB_SLOT_NONE);
    assert_int_equal(tb_settle(tb, &g, T0, 0), 0);
    /* The first reading anchors it. */
    struct tb_reading r = reading(300, 20000, 5, 1700000000000);
    assert_int_equal(tb_apply_reading(tb, &r, T0 + 2 * SEC, NULL), 0);
    assert_false(tb_needs_reading(tb, T0 + 2 * SEC));
    assert_int_equal(tb_reserve(tb, T0 + 2 * SEC, 5, 42, &g, &wait), 0);
    assert_int_equal(tb_project(tb, T0 + 2 * SEC), 295);
    free(tb);
}

static void test_garbage_readings_are_ignored(void **state)
{
    (void)state;
    struct shm_tokens *tb = anchored(100, 5);
    int64_t ts = 1700000001000;
    struct tb_reading bad[] = {
        reading(0, 0, 0, ts),        /* the zeroed token fields of a 400 bad-key body */
        reading(250, 30000, 0, ts),  /* refillRate 0 */
        reading(250, 30000, -5, ts), /* negative rate */
        reading(NAN, 30000, 5, ts),
        reading(INFINITY, 30000, 5, ts),
        reading(1e12, 30000, 5, ts),      /* absurd balance */
        reading(250, -1, 5, ts),          /* negative refillIn */
        reading(250, 60001, 5, ts),       /* refillIn beyond a minute */
        reading(250, 30000, 5, 0),        /* no timestamp */
        reading(250, 30000, 1 << 20, ts), /* absurd rate */
    };
    for (size_t i = 0; i < KD_ARRAY_LEN(bad); i++) {
        assert_int_equal(tb_apply_reading(tb, &bad[i], T0 + SEC, NULL), -EINVAL);
        assert_int_equal(tb_project(tb, T0 + SEC), 100);
    }
    struct tb_reading neg = reading(250, 30000, 5, ts);
    neg.tokens_consumed = -1;
    assert_int_equal(tb_apply_reading(tb, &neg, T0 + SEC, NULL), -EINVAL);
    assert_int_equal(tb_apply_reading(tb, NULL, T0 + SEC, NULL), -EINVAL);
    struct tb_stats st;
    assert_int_equal(tb_stats(tb, T0 + SEC, &st), 0);
    assert_int_equal(st.readings_ignored, KD_ARRAY_LEN(bad) + 2); /* + negative, NULL */
    assert_int_equal(st.refill_rate, 5);
    /* Floats are accepted and floored (docs/failure-modes.md F17). */
    struct tb_reading f = reading(54.5, 30000, 5, ts);
    assert_int_equal(tb_apply_reading(tb, &f, T0 + SEC, NULL), 0);
    assert_int_equal(tb_project(tb, T0 + SEC), 54);
    f = reading(-13.5, 30000, 5, ts + 1);
    assert_int_equal(tb_apply_reading(tb, &f, T0 + SEC, NULL), 0);
    assert_int_equal(tb_project(tb, T0 + SEC), -14);
    assert_int_equal(tb_stats(tb, T0 + SEC, &st), 0);
    assert_true(st.last_reading.tokens_left == -13.5);
    free(tb);
}

static void test_projection_counts_whole_ticks_up_to_the_cap(void **state)
{
    (void)state;
    struct shm_tokens *tb = anchored(10, 5); /* next tick at T0 + 30 s */
    assert_int_equal(tb_project(tb, T0 + 30 * SEC - 1), 10);
    assert_int_equal(tb_project(tb, T0 + 30 * SEC), 15);
    assert_int_equal(tb_project(tb, T0 + 90 * SEC - 1), 15);
    assert_int_equal(tb_project(tb, T0 + 90 * SEC), 20);
    assert_int_equal(tb_project(tb, T0 + 3 * 3600 * SEC), 300);  /* cap = 60 x 5 */
    assert_int_equal(tb_project(tb, T0 + 40 * 3600 * SEC), 300); /* after any idle */
    /* Time to fill: 290 tokens = 58 ticks, the first at +30 s. */
    assert_int_equal(tb_time_to_fill_ns(tb, T0), 30 * SEC + 57 * MINUTE);
    assert_int_equal(tb_time_to_fill_ns(tb, T0 + 3 * 3600 * SEC), 0);
    /* A server balance above our cap stays (full stays full) until spent. */
    struct tb_reading r = reading(400, 30000, 5, 1700000100000);
    assert_int_equal(tb_apply_reading(tb, &r, T0 + 100 * SEC, NULL), 0);
    assert_int_equal(tb_project(tb, T0 + 100 * SEC + 5 * MINUTE), 400);
    free(tb);
}

static void test_admission_and_deficit_bound(void **state)
{
    (void)state;
    struct tb_grant g;
    int64_t wait;
    /* Balance 1: Keepa admits anything; the bound allows spending down to -60. */
    struct shm_tokens *tb = anchored(1, 5);
    assert_int_equal(tb_reserve(tb, T0, 62, 7, &g, &wait), -EAGAIN); /* 1 - 62 < -60 */
    assert_int_equal(tb_reserve(tb, T0, 61, 7, &g, &wait), 0);
    assert_int_equal(tb_project(tb, T0), -60);
    /* Balance <= 0: nothing, and the wait is the tick where it becomes > 0 (13 ticks). */
    assert_int_equal(tb_reserve(tb, T0, 1, 7, &g, &wait), -EAGAIN);
    assert_int_equal(wait, T0 + 30 * SEC + 12 * MINUTE);
    assert_int_equal(tb_reserve(tb, wait - 1, 1, 7, &g, &wait), -EAGAIN);
    assert_int_equal(tb_reserve(tb, wait, 1, 7, &g, &wait), 0);
    free(tb);

    /* Balance 0 exactly: Keepa answers 429, so neither do we grant. */
    tb = anchored(0, 5);
    assert_int_equal(tb_reserve(tb, T0, 1, 7, &g, &wait), -EAGAIN);
    assert_int_equal(wait, T0 + 30 * SEC);
    assert_false(tb_needs_reading(tb, T0 + 100 * SEC) && tb_project(tb, T0 + 100 * SEC) <= 0);
    free(tb);
}

static void test_huge_costs_are_granted_when_full_never_waited_for_forever(void **state)
{
    (void)state;
    struct tb_grant g;
    int64_t wait;
    struct shm_tokens *tb = anchored(200, 5); /* cap 300, max deficit 60 */
    /* 480 > cap + deficit (docs/failure-modes.md F3: AA waited for 480 with a 300 cap, forever). */
    assert_int_equal(tb_reserve(tb, T0, 480, 7, &g, &wait), -EAGAIN);
    assert_int_equal(wait - T0, tb_time_to_fill_ns(tb, T0));
    assert_int_equal(tb_reserve(tb, wait, 480, 7, &g, &wait), 0);
    assert_int_equal(tb_project(tb, g.granted_ns), 300 - 480);
    /* Misuse: negative or beyond the largest cost. */
    assert_int_equal(tb_reserve(tb, T0, -1, 7, &g, &wait), -EINVAL);
    assert_int_equal(tb_reserve(tb, T0, TB_COST_MAX + 1, 7, &g, &wait), -EINVAL);
    assert_int_equal(tb_reserve(tb, T0, INT64_MAX, 7, &g, &wait), -EINVAL);
    assert_int_equal(tb_reserve(tb, T0, 1, 0, &g, &wait), -EINVAL);
    assert_int_equal(tb_reserve(tb, T0, 1, -3, &g, &wait), -EINVAL);
    assert_int_equal(tb_reserve(tb, T0, 1, 7, NULL, &wait), -EINVAL);
    assert_int_equal(tb_reserve(tb, -1, 1, 7, &g, &wait), -EINVAL);
    /* The largest cost is still granted once the bucket is full. */
    int64_t t2 = g.granted_ns + 20 * MINUTE;
    assert_int_equal(tb_reserve(tb, t2, TB_COST_MAX, 7, &g, &wait), -EAGAIN);
    int64_t fill = tb_time_to_fill_ns(tb, t2);
    assert_true(fill > 0 && wait - t2 == fill);
    assert_int_equal(tb_reserve(tb, wait, TB_COST_MAX, 7, &g, &wait), 0);
    free(tb);
}

/*
 * The same huge cost for a request that may be skipped (the 500-token lightning list on a plan
 * of 5 a minute): never granted below -max_deficit. Beyond cap + deficit it is refused at once
 * (-EDQUOT: no refill makes it affordable, nothing to wait for), unless a balance above the cap
 * (a first reading, a rate not trusted yet) covers it; within cap + deficit it waits, always
 * for a reachable balance, and leaves at most -max_deficit.
 */
static void test_within_deficit_never_overdraws_nor_waits_forever(void **state)
{
    (void)state;
    struct tb_grant g;
    int64_t wait;
    struct shm_tokens *tb = anchored(300, 5); /* full: cap 300, max deficit 60 */
    assert_int_equal(tb_reserve_within(tb, T0, 500, 7, &g, &wait), -EDQUOT);
    assert_int_equal(tb_project(tb, T0), 300); /* nothing charged, no slot held */
    assert_int_equal(tb_reserve_within(tb, T0 + 30 * MINUTE, 500, 7, &g, &wait), -EDQUOT);
    assert_int_equal(tb_reserve_within(tb, T0, 200, 7, &g, &wait), 0); /* affordable: as ever */
    free(tb);

    /* A first reading above what the trusted rate caps (18 000 at 300/min, trusted 5): paid
     * within the bound now. */
    tb = anchored(18000, 300);
    assert_int_equal(tb_reserve_within(tb, T0, 500, 7, &g, &wait), 0);
    assert_true(tb_project(tb, T0) >= -60);
    free(tb);

    /* A bound of 240: 500 needs a balance of 260, reached by refill, with a peek in flight. */
    struct tb_params p = {.max_deficit_tokens = 240};
    tb = new_bucket(&p, T0);
    struct tb_reading r = reading(100, 30000, 5, 1700000000000);
    assert_int_equal(tb_apply_reading(tb, &r, T0, NULL), 0);
    struct tb_grant peek;
    assert_int_equal(tb_reserve_within(tb, T0, 50, 8, &peek, &wait), 0);
    assert_int_equal(tb_reserve_within(tb, T0, 500, 7, &g, &wait), -EAGAIN);
    assert_true(wait > T0 && wait - T0 <= tb_time_to_fill_ns(tb, T0));
    for (int i = 0; i < 100 && tb_reserve_within(tb, wait, 500, 7, &g, &wait) == -EAGAIN; i++)
        ;
    assert_int_equal(g.cost_tokens, 500);
    assert_true(tb_project(tb, g.granted_ns) >= -240);
    free(tb);
}

/* Property: over random states and costs, a wait is never past the time the bucket fills. */
static void test_waits_never_exceed_the_fill_time(void **state)
{
    (void)state;
    srand(12345);
    for (int round = 0; round < 2000; round++) {
        int64_t rate = 1 + rand() % 100;
        double left = (double)(rand() % (int)(rate * 80)) - (double)(rate * 20);
        struct shm_tokens *tb = new_bucket(NULL, T0);
        struct tb_reading r = reading(left, rand() % 60001, rate, 1700000000000);
        assert_int_equal(tb_apply_reading(tb, &r, T0, NULL), 0);
        int64_t now = T0 + (rand() % 7200) * SEC;
        int64_t cost = 1 + rand() % (rate * 90);
        struct tb_grant g;
        int64_t wait;
        int rc = tb_reserve(tb, now, cost, 3, &g, &wait);
        if (rc == -EAGAIN) {
            int64_t fill = tb_time_to_fill_ns(tb, now);
            assert_true(wait > now);
            assert_true(wait - now <= fill);
            /* ... and at that time it is granted. */
            assert_int_equal(tb_reserve(tb, wait, cost, 3, &g, &wait), 0);
        } else {
            assert_int_equal(rc, 0);
        }
        free(tb);
    }
}

static void test_settle_corrects_once_and_never_frees_twice(void **state)
{
    (void)state;
    struct shm_tokens *tb = anchored(200, 5);
    struct tb_grant a, b;
    int64_t wait;
    assert_int_equal(tb_reserve(tb, T0, 50, 11, &a, &wait), 0);
    assert_int_equal(tb_project(tb, T0), 150);
    /* Charged 38 of the 50 reserved, no reading came: 12 come back. */
    assert_int_equal(tb_settle(tb, &a, T0, 38), 0);
    assert_int_equal(tb_project(tb, T0), 162);
    assert_int_equal(tb_settle(tb, &a, T0, 38), -ESTALE);
    assert_int_equal(tb_project(tb, T0), 162);
    /* The slot is reused with a new generation; the old grant cannot touch it. */
    assert_int_equal(tb_reserve(tb, T0, 10, 11, &b, &wait), 0);
    assert_int_equal(b.slot, a.slot);
    assert_int_not_equal(b.generation, a.generation);
    assert_int_equal(tb_settle(tb, &a, T0, 0), -ESTALE);
    /* Charged more than reserved: the difference is taken. */
    assert_int_equal(tb_settle(tb, &b, T0, 40), 0);
    assert_int_equal(tb_project(tb, T0), 122);
    /* Misuse. */
    struct tb_grant bogus = a;
    bogus.slot = 999;
    assert_int_equal(tb_settle(tb, &bogus, T0, 1), -EINVAL);
    assert_int_equal(tb_settle(tb, &a, T0, -1), -ESTALE); /* stale first: nothing to end */
    /* A grant whose copy was tampered with is corrected by what the slot really reserved. */
    struct tb_grant c;
    assert_int_equal(tb_reserve(tb, T0, 20, 11, &c, &wait), 0);
    int64_t before = tb_project(tb, T0);
    struct tb_grant forged = c;
    forged.cost_tokens = 1000;
    assert_int_equal(tb_settle(tb, &forged, T0, 20), 0);
    assert_int_equal(tb_project(tb, T0), before);
    /* Times beyond any monotonic clock are refused, not overflowed. */
    struct tb_reading r = reading(10, 1000, 5, 1700000000000);
    assert_int_equal(tb_reserve(tb, INT64_MAX, 1, 11, &c, &wait), -EINVAL);
    assert_int_equal(tb_settle(tb, &c, INT64_MAX, 1), -EINVAL);
    assert_int_equal(tb_apply_reading(tb, &r, INT64_MAX, NULL), -EINVAL);
    assert_int_equal(tb_project(tb, INT64_MAX), 0);
    assert_int_equal(tb_time_to_fill_ns(tb, INT64_MAX), -1);
    assert_false(tb_needs_reading(tb, INT64_MAX));
    assert_int_equal(tb_claim_status_call(tb, INT64_MAX), -EINVAL);
    assert_int_equal(tb_writeoff_owner(tb, 11, INT64_MAX), -EINVAL);
    assert_int_equal(tb_settle(tb, NULL, T0, 1), -EINVAL);
    free(tb);
}

static void test_slots_run_out_cleanly(void **state)
{
    (void)state;
    struct shm_tokens *tb = anchored(5000, 100);
    struct tb_grant g[SHM_TOKEN_SLOTS + 1];
    int64_t wait;
    for (int i = 0; i < SHM_TOKEN_SLOTS; i++)
        assert_int_equal(tb_reserve(tb, T0, 1, 5, &g[i], &wait), 0);
    for (int i = 0; i < SHM_TOKEN_SLOTS; i++)
        for (int j = 0; j < i; j++)
            assert_int_not_equal(g[i].slot, g[j].slot);
    assert_int_equal(tb_reserve(tb, T0, 1, 5, &g[SHM_TOKEN_SLOTS], &wait), -ENOSPC);
    assert_int_equal(tb_project(tb, T0), 5000 - SHM_TOKEN_SLOTS); /* -ENOSPC charged nothing */
    assert_int_equal(tb_settle(tb, &g[3], T0, 1), 0);
    assert_int_equal(tb_reserve(tb, T0, 1, 5, &g[SHM_TOKEN_SLOTS], &wait), 0);
    free(tb);
}

/*
 * A settle refused for an absurd tokensConsumed (negative, or beyond any balance) still ends
 * the reservation: before, the slot stayed held for good, and SHM_TOKEN_SLOTS such answers
 * left every worker with -ENOSPC. The reservation counts as charged at its estimate.
 */
static void test_absurd_settle_frees_its_slot(void **state)
{
    (void)state;
    struct shm_tokens *tb = anchored(5000, 100);
    int64_t wait;
    for (int round = 0; round < 3; round++) {
        struct tb_grant g[SHM_TOKEN_SLOTS];
        for (int i = 0; i < SHM_TOKEN_SLOTS; i++)
            assert_int_equal(tb_reserve(tb, T0, 1, 5, &g[i], &wait), 0);
        for (int i = 0; i < SHM_TOKEN_SLOTS; i++) {
            int64_t absurd = i % 2 ? TB_BALANCE_MAX + 1 : -7;
            assert_int_equal(tb_settle(tb, &g[i], T0, absurd), -ERANGE);
            assert_int_equal(tb_settle(tb, &g[i], T0, 1), -ESTALE); /* ended, once */
        }
        struct tb_stats st;
        assert_int_equal(tb_stats(tb, T0, &st), 0);
        assert_int_equal(st.slots_in_use, 0);
        assert_int_equal(st.inflight_tokens, 0);
    }
    /* Charged at the reservations, not at the absurd amounts; and the slots serve again. */
    assert_int_equal(tb_project(tb, T0), 5000 - 3 * SHM_TOKEN_SLOTS);
    struct tb_grant g;
    assert_int_equal(tb_reserve(tb, T0, 1, 5, &g, &wait), 0);
    /* A reading already applied for it: the slot is freed the same way. */
    struct tb_reading r = reading(4000, 30000, 100, 1700000001000);
    assert_int_equal(tb_apply_reading(tb, &r, T0, &g), 0);
    assert_int_equal(tb_settle(tb, &g, T0, -1), -ERANGE);
    struct tb_stats st;
    assert_int_equal(tb_stats(tb, T0, &st), 0);
    assert_int_equal(st.slots_in_use, 0);
    free(tb);
}

/*
 * Untouched for longer than the word's 9.3-hour horizon after a deep deficit: the tick phase
 * is lost but the time is not, and the projection claims only the refills of the whole
 * minutes elapsed (a lower bound), never a full bucket. Before, it said 300 (full) 10 hours
 * after -10 000 on a 5/min plan, which still owes 7 000 tokens then.
 */
static void test_long_idle_after_a_deep_deficit_is_not_full(void **state)
{
    (void)state;
    const int64_t hours[] = {10, 15, 19, 25, 30};
    for (size_t i = 0; i < KD_ARRAY_LEN(hours); i++) {
        struct shm_tokens *tb = anchored(-10000, 5);
        int64_t now = T0 + hours[i] * 3600 * SEC;
        int64_t owed = -10000 + 5 * 60 * hours[i]; /* the true balance: a tick every minute */
        int64_t p = tb_project(tb, now);
        /* At most the truth, and at most two ticks under it (the phase is not known). */
        assert_true(p <= owed);
        assert_true(p >= owed - 2 * 5);
        struct tb_grant g;
        int64_t wait;
        assert_int_equal(tb_reserve(tb, now, 10, 9, &g, &wait), -EAGAIN);
        /* Granted once the refills can really have paid the debt, not before. */
        assert_true(wait - now >= (-owed / 5 - 2) * MINUTE);
        assert_true(wait - now <= tb_time_to_fill_ns(tb, now));
        assert_false(tb_needs_reading(tb, now)); /* below zero: a reading cannot help */
        /* Later, while the bucket keeps being written (as a running daemon does), the tick
         * phase is known again and the debt is paid off tick by tick. */
        int64_t later = wait;
        assert_int_equal(tb_reserve(tb, later, 10, 9, &g, &wait), 0);
        free(tb);
    }
    /* 40 hours: the debt is paid and the refills beyond the cap are lost: full. */
    struct shm_tokens *tb = anchored(-10000, 5);
    assert_int_equal(tb_project(tb, T0 + 40 * 3600 * SEC), 300);
    free(tb);
}

/*
 * A request lost without an answer (or whose owner died) may have been charged: it stays
 * charged, and a reading the server made before charging it, arriving later on another
 * connection, must not give its tokens back. Its reservation is subtracted from every reading
 * for a hold of two Keepa minutes (at least 5 s), or until the answer to a request granted at
 * least 3 s after the loss; then its slot serves again.
 */
static void test_lost_request_held_against_older_readings(void **state)
{
    (void)state;
    struct shm_tokens *tb = anchored(200, 5);
    struct tb_grant lost, other;
    int64_t wait;
    assert_int_equal(tb_reserve(tb, T0, 40, 11, &lost, &wait), 0);
    assert_int_equal(tb_reserve(tb, T0, 10, 12, &other, &wait), 0);
    assert_int_equal(tb_settle_lost(tb, &lost, T0 + SEC), 0);
    assert_int_equal(tb_settle_lost(tb, &lost, T0 + SEC), -ESTALE); /* once */
    assert_int_equal(tb_project(tb, T0 + SEC), 150);                /* charged at 40 */
    struct tb_stats st;
    assert_int_equal(tb_stats(tb, T0 + SEC, &st), 0);
    assert_int_equal(st.slots_in_use, 1);
    assert_int_equal(st.inflight_tokens, 10);
    assert_int_equal(st.lost_slots, 1);
    assert_int_equal(st.lost_tokens, 40);
    /* The other request's answer was made before the server charged the lost one: 190 left
     * after its own 10. Still 40 lower: the lost one's cost is not given back. */
    struct tb_reading r = reading(190, 30000, 5, 1700000001000);
    r.tokens_consumed = 10;
    assert_int_equal(tb_apply_reading(tb, &r, T0 + 2 * SEC, &other), 0);
    assert_int_equal(tb_settle(tb, &other, T0 + 2 * SEC, 10), 0);
    assert_int_equal(tb_project(tb, T0 + 2 * SEC), 150);
    /* The answer to a request granted well after the loss (3 s or more) shows its cost: the
     * hold ends there. */
    struct tb_grant soon, after;
    assert_int_equal(tb_reserve(tb, T0 + SEC + SEC / 2, 3, 12, &soon, &wait), 0);
    assert_int_equal(tb_reserve(tb, T0 + 5 * SEC, 5, 12, &after, &wait), 0);
    /* Granted half a second after the loss: its answer may predate the lost request's
     * charge (a killed process's last bytes still on their way), so the hold goes on. */
    struct tb_reading rs = reading(140, 30000, 5, 1700000003000);
    rs.tokens_consumed = 3;
    assert_int_equal(tb_apply_reading(tb, &rs, T0 + 3 * SEC, &soon), 0);
    assert_int_equal(tb_settle(tb, &soon, T0 + 3 * SEC, 3), 0);
    assert_int_equal(tb_stats(tb, T0 + 3 * SEC, &st), 0);
    assert_int_equal(st.lost_slots, 1);
    struct tb_reading ra = reading(135, 30000, 5, 1700000004000); /* it shows the lost cost */
    ra.tokens_consumed = 5;
    assert_int_equal(tb_apply_reading(tb, &ra, T0 + 6 * SEC, &after), 0);
    assert_int_equal(tb_settle(tb, &after, T0 + 6 * SEC, 5), 0);
    assert_int_equal(tb_project(tb, T0 + 6 * SEC), 135);
    assert_int_equal(tb_stats(tb, T0 + 6 * SEC, &st), 0);
    assert_int_equal(st.lost_slots, 0);
    /* Without such an answer it ends after two Keepa minutes. */
    struct tb_grant lost2;
    assert_int_equal(tb_reserve(tb, T0 + 7 * SEC, 20, 11, &lost2, &wait), 0);
    assert_int_equal(tb_settle_lost(tb, &lost2, T0 + 7 * SEC), 0);
    int64_t later = T0 + 2 * MINUTE + 8 * SEC;
    assert_int_equal(tb_stats(tb, later, &st), 0);
    assert_int_equal(st.lost_slots, 0);
    struct tb_reading r2 = reading(115, 30000, 5, 1700000200000);
    assert_int_equal(tb_apply_reading(tb, &r2, later, NULL), 0);
    assert_int_equal(tb_project(tb, later), 115);
    struct tb_grant g[SHM_TOKEN_SLOTS];
    for (int i = 0; i < SHM_TOKEN_SLOTS; i++)
        assert_int_equal(tb_reserve(tb, later, 1, 5, &g[i], &wait), 0);
    /* A dead owner's reservations are held the same way. */
    struct shm_tokens *tb2 = anchored(200, 5);
    struct tb_grant d;
    assert_int_equal(tb_reserve(tb2, T0, 30, 77, &d, &wait), 0);
    assert_int_equal(tb_writeoff_owner(tb2, 77, T0 + SEC), 1);
    assert_int_equal(tb_stats(tb2, T0 + SEC, &st), 0);
    assert_int_equal(st.lost_tokens, 30);
    assert_int_equal(st.writeoff_tokens, 30);
    assert_int_equal(tb_settle(tb2, &d, T0 + SEC, 0), -ESTALE);
    free(tb);
    free(tb2);
}

static void test_writeoff_releases_a_dead_owners_slots(void **state)
{
    (void)state;
    struct shm_tokens *tb = anchored(300, 5);
    struct tb_grant d1, d2, live;
    int64_t wait;
    assert_int_equal(tb_reserve(tb, T0, 30, 1001, &d1, &wait), 0);
    assert_int_equal(tb_reserve(tb, T0, 20, 1001, &d2, &wait), 0);
    assert_int_equal(tb_reserve(tb, T0, 10, 1002, &live, &wait), 0);
    assert_int_equal(tb_writeoff_owner(tb, 1001, T0), 2);
    assert_int_equal(tb_writeoff_owner(tb, 1001, T0), 0); /* nothing twice */
    /* Written off = counted as spent; the dead owner's grants are void. */
    assert_int_equal(tb_project(tb, T0), 240);
    assert_int_equal(tb_settle(tb, &d1, T0, 0), -ESTALE);
    assert_int_equal(tb_project(tb, T0), 240);
    struct tb_stats st;
    assert_int_equal(tb_stats(tb, T0, &st), 0);
    assert_int_equal(st.slots_in_use, 1);
    assert_int_equal(st.inflight_tokens, 10);
    assert_int_equal(st.writeoffs, 2);
    assert_int_equal(tb_settle(tb, &live, T0, 10), 0);
    assert_int_equal(tb_writeoff_owner(tb, 0, T0), -EINVAL);
    assert_int_equal(tb_writeoff_owner(tb, -1, T0), -EINVAL);
    free(tb);
}

/* A reading that does not yet include other in-flight requests must not free their tokens. */
static void test_reading_subtracts_requests_in_flight(void **state)
{
    (void)state;
    struct shm_tokens *tb = anchored(100, 5);
    struct tb_grant a, b;
    int64_t wait;
    assert_int_equal(tb_reserve(tb, T0, 40, 21, &a, &wait), 0);
    assert_int_equal(tb_reserve(tb, T0, 30, 22, &b, &wait), 0);
    assert_int_equal(tb_project(tb, T0), 30);
    /* A's answer: the server charged A only (B not yet arrived): 100 - 45 = 55 left. */
    struct tb_reading ra = reading(55, 25000, 5, 1700000000500);
    ra.tokens_consumed = 45;
    assert_int_equal(tb_apply_reading(tb, &ra, T0 + SEC, &a), 0);
    assert_int_equal(tb_project(tb, T0 + SEC), 55 - 30); /* B is still owed */
    /* A's settle after its own reading changes nothing more. */
    assert_int_equal(tb_settle(tb, &a, T0 + SEC, 45), 0);
    assert_int_equal(tb_project(tb, T0 + SEC), 25);
    /* A /token reading (not the answer to a reservation) also keeps B owed. */
    struct tb_reading rt = reading(55, 24000, 5, 1700000000600);
    assert_int_equal(tb_apply_reading(tb, &rt, T0 + 2 * SEC, NULL), 0);
    assert_int_equal(tb_project(tb, T0 + 2 * SEC), 25);
    /* A stale grant used as "own" must not hide someone else's reservation. */
    assert_int_equal(tb_apply_reading(tb, &rt, T0 + 2 * SEC, &a), 0);
    assert_int_equal(tb_project(tb, T0 + 2 * SEC), 25);
    /* B's answer: 55 - 30 = 25; no reservation left in flight. */
    struct tb_reading rb = reading(25, 23000, 5, 1700000000700);
    assert_int_equal(tb_apply_reading(tb, &rb, T0 + 3 * SEC, &b), 0);
    assert_int_equal(tb_settle(tb, &b, T0 + 3 * SEC, 30), 0);
    assert_int_equal(tb_project(tb, T0 + 3 * SEC), 25);
    free(tb);
}

static void test_older_reading_does_not_override_a_newer_one(void **state)
{
    (void)state;
    struct shm_tokens *tb = anchored(100, 5);
    struct tb_grant before, after;
    int64_t wait;
    assert_int_equal(tb_reserve(tb, T0 + SEC / 2, 0, 31, &before, &wait), 0); /* a free call */
    struct tb_reading newer = reading(40, 20000, 5, 1700000005000);
    struct tb_reading older = reading(90, 25000, 5, 1700000004000);
    assert_int_equal(tb_apply_reading(tb, &newer, T0 + SEC, NULL), 0);
    assert_int_equal(tb_apply_reading(tb, &older, T0 + 2 * SEC, NULL), -ESTALE);
    assert_int_equal(tb_apply_reading(tb, &older, T0 + 2 * SEC, &before), -ESTALE);
    assert_int_equal(tb_project(tb, T0 + 2 * SEC), 40);
    /* However late it arrives, it was made before: refused (it may be an answer that took
     * long, and the requests charged in between may have been settled). */
    assert_int_equal(tb_apply_reading(tb, &older, T0 + 3 * MINUTE, &before), -ESTALE);
    assert_int_equal(tb_apply_reading(tb, &older, T0 + 3 * MINUTE, NULL), -ESTALE);
    /* The answer to a call sent after the newer reading was applied was made after it: an
     * older timestamp means the server's clock went back (a restart), and it is applied. */
    assert_int_equal(tb_reserve(tb, T0 + 3 * MINUTE, 0, 31, &after, &wait), 0);
    assert_int_equal(tb_apply_reading(tb, &older, T0 + 3 * MINUTE + SEC, &after), 0);
    assert_int_equal(tb_project(tb, T0 + 3 * MINUTE + SEC), 90);
    free(tb);
}

/*
 * A reading refused because another process held the reading lock (for up to a second when
 * that one was killed holding it) is not applied, and its request is settled as charged. A
 * reading made before it, arriving later, must be refused as if the busy one had been applied:
 * applied, it gave that request's tokens back.
 */
static void test_reading_refused_busy_still_orders_the_later_ones(void **state)
{
    (void)state;
    const int64_t ts0 = 1700000000000;
    struct shm_tokens *tb = anchored(100, 5);
    struct tb_grant a, b, c;
    int64_t wait;
    assert_int_equal(tb_reserve(tb, T0 + 1 * MS, 10, 41, &a, &wait), 0);
    assert_int_equal(tb_reserve(tb, T0 + 2 * MS, 60, 42, &b, &wait), 0);
    struct tb_reading ra = reading(90, 29000, 5, ts0 + 1003); /* A charged first */
    ra.tokens_consumed = 10;
    struct tb_reading rb = reading(30, 29000, 5, ts0 + 1004); /* then B */
    rb.tokens_consumed = 60;
    /* Process 4242 is applying a reading (or died doing it): B's is refused. */
    atomic_store(&tb->reading_lock, 4242);
    atomic_store(&tb->reading_lock_ns, T0 + 20 * MS);
    assert_int_equal(tb_apply_reading(tb, &rb, T0 + 20 * MS, &b), -EBUSY);
    assert_int_equal(tb_settle(tb, &b, T0 + 20 * MS, 60), 0);
    assert_int_equal(tb_writeoff_owner(tb, 4242, T0 + 30 * MS), 0); /* the lock is freed */
    /* A's answer, made before B was charged, but after the last reading applied. */
    assert_int_equal(tb_apply_reading(tb, &ra, T0 + 40 * MS, &a), -ESTALE);
    assert_int_equal(tb_settle(tb, &a, T0 + 40 * MS, 10), 0);
    assert_true(tb_project(tb, T0 + 40 * MS) <= 30);
    /* The next reading made after B's is applied, and the busy one is forgotten. */
    assert_int_equal(tb_reserve(tb, T0 + 50 * MS, 5, 43, &c, &wait), 0);
    struct tb_reading rc = reading(25, 28000, 5, ts0 + 1100);
    rc.tokens_consumed = 5;
    assert_int_equal(tb_apply_reading(tb, &rc, T0 + 60 * MS, &c), 0);
    assert_int_equal(tb_settle(tb, &c, T0 + 60 * MS, 5), 0);
    assert_int_equal(tb_project(tb, T0 + 60 * MS), 25);
    assert_int_equal(atomic_load(&tb->busy_timestamp_ms), INT64_MIN);
    free(tb);
}

/*
 * refillIn counts whole ms from the moment the server made the reading, and the answer is
 * read a fraction of a ms later: the tick is placed no earlier than now + refillIn rounded
 * up. Rounded down, a grant timed to the projected tick reached a server that had not ticked
 * yet (a 429 at the start of test_shared_key on loopback).
 */
static void test_tick_never_projected_before_the_servers(void **state)
{
    (void)state;
    const int64_t minute = 100 * MS;
    struct tb_params p = {.minute_ns = minute};
    struct shm_tokens *tb = new_bucket(&p, T0);
    /* The server ticks at T0 + 20.5 ms; it answers at T0 + 10.6 ms: refillIn = ceil(9.9) =
     * 10, with 0 left. The answer is read at T0 + 10.7 ms. */
    struct tb_reading r = reading(0, 10, 5, 1700000000000);
    assert_int_equal(tb_apply_reading(tb, &r, T0 + 10 * MS + 700000, NULL), 0);
    struct tb_grant g;
    int64_t wait = 0;
    for (int64_t t = T0 + 10 * MS + 700000; t < T0 + 20 * MS + 500000; t += 100000) {
        assert_int_equal(tb_project(tb, t), 0);
        assert_int_equal(tb_reserve(tb, t, 5, 51, &g, &wait), -EAGAIN);
        assert_true(wait >= T0 + 20 * MS + 500000); /* a timer set for it is not early */
    }
    assert_int_equal(tb_project(tb, T0 + 21 * MS), 5);
    assert_int_equal(tb_reserve(tb, T0 + 21 * MS, 5, 51, &g, &wait), 0);
    free(tb);
}

/*
 * Two answers overtake each other by more than a Keepa minute (a slow answer; here 100 ms
 * minutes and 350 ms of latency, as in test_shared_key): A is charged first, B second; B's
 * answer arrives first and B is settled, then A's answer, made before B was charged, arrives.
 * Applied, it gave B's tokens back (B is no longer in flight), and the next grants met a 429
 * (one run in four of test_shared_key's kill case). It is refused however late it arrives,
 * and the bucket never projects more than the server holds.
 */
static void test_reading_overtaken_by_minutes_gives_nothing_back(void **state)
{
    (void)state;
    const int64_t minute = 100 * MS, ts0 = 1700000000000;
    struct tb_params p = {.minute_ns = minute};
    struct shm_tokens *tb = new_bucket(&p, T0);
    /* The server: 100 tokens, ticks at T0 + 50 ms + k minutes. */
    int64_t server = 100, first_tick = T0 + 50 * MS;
    struct tb_reading r0 = reading(100, 50, 5, ts0);
    assert_int_equal(tb_apply_reading(tb, &r0, T0, NULL), 0);
    struct tb_grant a, b;
    int64_t wait;
    assert_int_equal(tb_reserve(tb, T0 + 1 * MS, 10, 41, &a, &wait), 0);
    assert_int_equal(tb_reserve(tb, T0 + 2 * MS, 60, 42, &b, &wait), 0);
    server -= 10; /* A charged at T0 + 3 ms */
    struct tb_reading ra = reading((double)server, 47, 5, ts0 + 3);
    ra.tokens_consumed = 10;
    server -= 60; /* B charged at T0 + 4 ms */
    struct tb_reading rb = reading((double)server, 46, 5, ts0 + 4);
    rb.tokens_consumed = 60;
    assert_int_equal(tb_apply_reading(tb, &rb, T0 + 20 * MS, &b), 0);
    assert_int_equal(tb_settle(tb, &b, T0 + 20 * MS, 60), 0);
    /* A's answer, 3.3 Keepa minutes after B's. */
    int64_t late = T0 + 350 * MS;
    assert_int_equal(tb_apply_reading(tb, &ra, late, &a), -ESTALE);
    assert_int_equal(tb_settle(tb, &a, late, 10), 0);
    for (int64_t t = late; t < late + 3 * minute; t += MS) {
        int64_t truth = server + 5 * (t >= first_tick ? 1 + (t - first_tick) / minute : 0);
        assert_true(tb_project(tb, t) <= truth);
    }
    struct tb_stats st;
    assert_int_equal(tb_stats(tb, late, &st), 0);
    assert_int_equal(st.slots_in_use, 0);
    free(tb);
}

/*
 * Two answers of the same server millisecond cannot be ordered: one made just before the
 * server charged another request, processed after that request was settled, still shows the
 * tokens that request took. Applied as it is, it raised the balance by that request's cost, and
 * two instances on one key met a 429 in a simulated day. It may lower the balance, never raise
 * it.
 */
static void test_reading_of_the_same_millisecond_never_raises(void **state)
{
    (void)state;
    struct shm_tokens *tb = anchored(100, 5);
    struct tb_grant x, y;
    int64_t wait;
    assert_int_equal(tb_reserve(tb, T0, 30, 11, &x, &wait), 0);
    assert_int_equal(tb_reserve(tb, T0, 10, 12, &y, &wait), 0);
    /* The server answers y (its envelope made at ms 5000, before charging x), then charges x
     * and answers it in the same ms; x's answer is processed first. */
    struct tb_reading rx = reading(60, 20000, 5, 1700000005000);
    rx.tokens_consumed = 30;
    assert_int_equal(tb_apply_reading(tb, &rx, T0 + SEC, &x), 0);
    assert_int_equal(tb_settle(tb, &x, T0 + SEC, 30), 0);
    assert_int_equal(tb_project(tb, T0 + SEC), 60 - 10);         /* y still in flight */
    struct tb_reading ry = reading(90, 20000, 5, 1700000005000); /* without x's 30 */
    ry.tokens_consumed = 10;
    assert_int_equal(tb_apply_reading(tb, &ry, T0 + SEC, &y), 0);
    assert_int_equal(tb_settle(tb, &y, T0 + SEC, 10), 0);
    assert_true(tb_project(tb, T0 + SEC) <= 60); /* not 90 */
    /* A lower one of the same millisecond is taken. */
    struct tb_reading low = reading(20, 20000, 5, 1700000005000);
    assert_int_equal(tb_apply_reading(tb, &low, T0 + SEC, NULL), 0);
    assert_int_equal(tb_project(tb, T0 + SEC), 20);
    free(tb);
}

static void test_higher_rate_trusted_only_as_far_as_observed(void **state)
{
    (void)state;
    struct shm_tokens *tb = new_bucket(NULL, T0);
    struct tb_stats st;
    int64_t ts = 1700000000000, now = T0;
    /* The server ticks at ts0 + 30 s + k minutes; a reading at server time t sees
     * left(t) = 5 x ticks so far while the true rate is 5. */
    const int64_t ts0 = ts;
#define TICKS_AT(t)  ((t) < ts0 + 30000 ? 0 : 1 + ((t)-ts0 - 30000) / 60000)
#define REFILL_IN(t) (60000 - (((t)-ts0 - 30000) % 60000 + 60000) % 60000)
    struct tb_reading r = reading(0, 30000, 5, ts);
    assert_int_equal(tb_apply_reading(tb, &r, now, NULL), 0);
    /* Outliers of 12 on a 5/min plan (docs/failure-modes.md F7), even many in a row: the bucket
     * grows by 5 a tick, so 12 is never believed. */
    for (int i = 1; i <= 30; i++) {
        int64_t t = ts0 + i * 40000;
        r = reading((double)(5 * TICKS_AT(t)), REFILL_IN(t), 12, t);
        assert_int_equal(tb_apply_reading(tb, &r, T0 + (t - ts0) * MS, NULL), 0);
        tb_stats(tb, T0 + (t - ts0) * MS, &st);
        assert_int_equal(st.refill_rate, 5);
        assert_int_equal(st.cap_tokens, 300);
    }
    free(tb);

    /* A real plan change to 25: the bucket shows it between two readings, believed at once. */
    tb = new_bucket(NULL, T0);
    ts = ts0;
    r = reading(0, 30000, 5, ts);
    assert_int_equal(tb_apply_reading(tb, &r, now, NULL), 0);
    r = reading(50, 50000, 25, ts + 100000); /* two ticks later: +50 */
    assert_int_equal(tb_apply_reading(tb, &r, now + 100 * SEC, NULL), 0);
    tb_stats(tb, now + 100 * SEC, &st);
    assert_int_equal(st.refill_rate, 25);
    assert_int_equal(st.cap_tokens, 25 * 60);
    /* Its own charge counts: 30 spent, +25 a tick, one tick: the balance drops by only 5. */
    struct tb_grant g;
    int64_t wait;
    free(tb);
    tb = new_bucket(NULL, T0);
    r = reading(100, 30000, 5, ts);
    assert_int_equal(tb_apply_reading(tb, &r, now, NULL), 0);
    assert_int_equal(tb_reserve(tb, now + SEC, 30, 3, &g, &wait), 0);
    r = reading(95, 50000, 25, ts + 40000);
    r.tokens_consumed = 30;
    assert_int_equal(tb_apply_reading(tb, &r, now + 40 * SEC, &g), 0);
    tb_stats(tb, now + 40 * SEC, &st);
    assert_int_equal(st.refill_rate, 25); /* (95 - 100 + 30) / 1 tick */
    free(tb);
    /* ... but only if it was granted after the previous reading (else it may have been
     * charged before that reading, and counting it would invent refill). */
    tb = new_bucket(NULL, T0);
    r = reading(100, 30000, 5, ts);
    assert_int_equal(tb_apply_reading(tb, &r, now, NULL), 0);
    assert_int_equal(tb_reserve(tb, now + SEC, 30, 3, &g, &wait), 0);
    r = reading(70, 29000, 5, ts + 1000); /* a /token reading: it was charged already */
    assert_int_equal(tb_apply_reading(tb, &r, now + 2 * SEC, NULL), 0);
    r = reading(75, 50000, 25, ts + 40000);
    r.tokens_consumed = 30;
    assert_int_equal(tb_apply_reading(tb, &r, now + 40 * SEC, &g), 0);
    tb_stats(tb, now + 40 * SEC, &st);
    assert_int_equal(st.refill_rate, 5); /* (75 - 70) / 1 tick: nothing proves 25 */
    /* A lower rate is believed at once (it can only make us more careful). */
    r = reading(95, 40000, 5, ts + 50000);
    assert_int_equal(tb_apply_reading(tb, &r, now + 50 * SEC, NULL), 0);
    tb_stats(tb, now + 50 * SEC, &st);
    assert_int_equal(st.refill_rate, 5);
    /* A refund (balance up by far more than the reported rate) proves nothing. */
    r = reading(500, 50000, 12, ts + 100000); /* one tick later */
    assert_int_equal(tb_apply_reading(tb, &r, now + 100 * SEC, NULL), 0);
    tb_stats(tb, now + 100 * SEC, &st);
    assert_int_equal(st.refill_rate, 5);
    free(tb);

    /* When requests in flight hide the refill (the balance never seems to grow), a rate every
     * reading reports is believed after TB_RATE_TRUST_MINUTES. */
    tb = new_bucket(NULL, T0);
    r = reading(0, 30000, 5, ts);
    assert_int_equal(tb_apply_reading(tb, &r, now, NULL), 0);
    for (int i = 1; i <= TB_RATE_TRUST_MINUTES + 1; i++) {
        r = reading(0, 30000, 25, ts + i * 60000);
        assert_int_equal(tb_apply_reading(tb, &r, now + i * MINUTE, NULL), 0);
        tb_stats(tb, now + i * MINUTE, &st);
        /* First reported at minute 1: believed from minute 1 + TB_RATE_TRUST_MINUTES. */
        assert_int_equal(st.refill_rate, i <= TB_RATE_TRUST_MINUTES ? 5 : 25);
    }
    free(tb);
#undef TICKS_AT
#undef REFILL_IN
}

static void test_needs_reading_policy(void **state)
{
    (void)state;
    struct shm_tokens *tb = anchored(-100, 5);
    /* Deep below zero: no /token call however old the reading (docs/failure-modes.md F5, F6). */
    for (int64_t t = T0; t < T0 + 20 * MINUTE; t += 10 * SEC)
        if (tb_project(tb, t) <= 0)
            assert_false(tb_needs_reading(tb, t));
    /* Positive but the reading is fresh: no call either. */
    struct tb_reading r = reading(50, 30000, 5, 1700000900000);
    assert_int_equal(tb_apply_reading(tb, &r, T0 + 20 * MINUTE, NULL), 0);
    assert_false(tb_needs_reading(tb, T0 + 21 * MINUTE));
    /* Positive and old (long idle): one call, claimed by one process. */
    int64_t later = T0 + 20 * MINUTE + TB_DEFAULT_STALE_MINUTES * MINUTE;
    assert_true(tb_needs_reading(tb, later));
    assert_int_equal(tb_claim_status_call(tb, later), 0);
    assert_false(tb_needs_reading(tb, later + SEC));
    /* Over a day of idle with no answer: at most one call per 10 s claim window. */
    int calls = 0;
    for (int64_t t = later; t < later + 24 * 3600 * SEC; t += SEC)
        if (tb_needs_reading(tb, t) && tb_claim_status_call(tb, t) == 0)
            calls++;
    assert_true(calls <= 24 * 360);
    free(tb);
}

static void test_cost_estimates_learn_up_fast_and_down_slowly(void **state)
{
    (void)state;
    struct shm_tokens *tb = new_bucket(NULL, T0);
    assert_int_equal(tb_cost_estimate(tb, TB_KIND_TOKEN, 1), 0);
    assert_int_equal(tb_cost_estimate(tb, TB_KIND_DEAL_PAGE, 1), 5);
    assert_int_equal(tb_cost_estimate(tb, TB_KIND_COMMIT, 5), 65);
    assert_int_equal(tb_cost_estimate(tb, TB_KIND_QUERY, 100), 11);
    /* The AA case (docs/failure-modes.md F1): 50 ASINs that cost 386. Drive the estimate 4x too low
     * first. */
    for (int i = 0; i < 200; i++)
        assert_int_equal(tb_cost_learn(tb, TB_KIND_PEEK, 50, 97), 0);
    int64_t low = tb_cost_estimate(tb, TB_KIND_PEEK, 50);
    assert_true(low >= 97 && low <= 100);
    assert_int_equal(tb_cost_learn(tb, TB_KIND_PEEK, 50, 386), 0);
    assert_true(tb_cost_estimate(tb, TB_KIND_PEEK, 50) >= 386); /* after ONE answer */
    /* One cheap answer barely moves it. */
    assert_int_equal(tb_cost_learn(tb, TB_KIND_PEEK, 50, 50), 0);
    int64_t after = tb_cost_estimate(tb, TB_KIND_PEEK, 50);
    assert_true(after >= 340 && after < 386);
    /* Per-unit: 15 ASINs are estimated from the same per-ASIN figure. */
    assert_true(tb_cost_estimate(tb, TB_KIND_PEEK, 15) >= after * 15 / 50);
    /* Misuse. */
    assert_int_equal(tb_cost_estimate(tb, TB_KIND_PEEK, 0), -EINVAL);
    assert_int_equal(tb_cost_estimate(tb, TB_KIND_PEEK, -4), -EINVAL);
    assert_int_equal(tb_cost_estimate(tb, TB_KIND_PEEK, TB_UNITS_MAX + 1), -EINVAL);
    assert_int_equal(tb_cost_estimate(tb, (enum tb_kind)99, 1), -EINVAL);
    assert_int_equal(tb_cost_learn(tb, TB_KIND_PEEK, 1, -1), -EINVAL);
    assert_int_equal(tb_cost_learn(tb, TB_KIND_PEEK, 0, 5), -EINVAL);
    assert_int_equal(tb_cost_learn(tb, TB_KIND_PEEK, 1, INT64_MAX), -EINVAL);
    /* The dear lists (docs/keepa-api.md §2.6): their documented price is a floor. A best-seller
     * list that found nothing charged 0, and the next category still reserves 50. */
    assert_int_equal(tb_cost_estimate(tb, TB_KIND_LIGHTNING, 1), 500);
    assert_int_equal(tb_cost_estimate(tb, TB_KIND_BESTSELLERS, 1), 50);
    for (int i = 0; i < 100; i++)
        assert_int_equal(tb_cost_learn(tb, TB_KIND_BESTSELLERS, 1, 0), 0);
    assert_int_equal(tb_cost_estimate(tb, TB_KIND_BESTSELLERS, 1), 50);
    assert_int_equal(tb_cost_learn(tb, TB_KIND_LIGHTNING, 1, 520), 0); /* dearer than documented */
    assert_int_equal(tb_cost_estimate(tb, TB_KIND_LIGHTNING, 1), 520);
    /* Huge learned costs are clamped to what a reservation accepts. */
    assert_int_equal(tb_cost_learn(tb, TB_KIND_SELLER, 1, TB_COST_MAX), 0);
    assert_int_equal(tb_cost_estimate(tb, TB_KIND_SELLER, TB_UNITS_MAX), TB_COST_MAX);
    free(tb);
}

/* Idle for any length of time: the bucket is full afterwards, and waits stay bounded. */
static void test_long_idle_and_stale_callers(void **state)
{
    (void)state;
    const int64_t idles[] = {2 * 3600 * SEC,
                             9 * 3600 * SEC,
                             10 * 3600 * SEC,
                             15 * 3600 * SEC,
                             18 * 3600 * SEC + 38 * MINUTE,
                             19 * 3600 * SEC,
                             30 * 3600 * SEC,
                             72 * 3600 * SEC,
                             40LL * 24 * 3600 * SEC};
    for (size_t i = 0; i < KD_ARRAY_LEN(idles); i++) {
        struct shm_tokens *tb = anchored(-50, 5);
        int64_t now = T0 + idles[i];
        struct tb_grant g;
        int64_t wait;
        assert_int_equal(tb_project(tb, now), 300);
        assert_int_equal(tb_time_to_fill_ns(tb, now), 0);
        assert_true(tb_needs_reading(tb, now)); /* old reading, positive: worth a /token */
        assert_int_equal(tb_reserve(tb, now, 100, 9, &g, &wait), 0);
        assert_int_equal(tb_project(tb, now), 200);
        assert_int_equal(tb_reserve(tb, now, 300, 9, &g, &wait), -EAGAIN);
        /* 240 needed, 40 missing: 8 ticks, the first at most a minute away. */
        assert_true(wait - now <= 8 * MINUTE);
        assert_true(wait - now <= tb_time_to_fill_ns(tb, now));
        assert_int_equal(tb_reserve(tb, wait, 300, 9, &g, &wait), 0);
        free(tb);
    }
    /* A caller whose clock reading is older than the last writer's never sees more. */
    struct shm_tokens *tb = anchored(100, 5);
    struct tb_grant g;
    int64_t wait;
    assert_int_equal(tb_reserve(tb, T0 + 10 * MINUTE, 10, 9, &g, &wait), 0);
    int64_t fresh = tb_project(tb, T0 + 10 * MINUTE);
    assert_int_equal(fresh, 100 + 10 * 5 - 10);
    for (int64_t lag = SEC; lag <= 5 * 3600 * SEC; lag *= 3) {
        int64_t stale_now = T0 + 10 * MINUTE - lag;
        if (stale_now < 0)
            break;
        assert_true(tb_project(tb, stale_now) <= fresh);
        if (tb_reserve(tb, stale_now, 1000, 9, &g, &wait) == -EAGAIN)
            assert_true(wait > stale_now && wait <= T0 + 11 * MINUTE + 300 * MINUTE);
    }
    free(tb);
}

static void test_accelerated_minute(void **state)
{
    (void)state;
    struct tb_params p = {.minute_ns = 100 * MS, .bucket_minutes = 60, .initial_rate = 20};
    struct shm_tokens *tb = new_bucket(&p, T0);
    struct tb_reading r = reading(0, 40, 20, 1700000000000);
    assert_int_equal(tb_apply_reading(tb, &r, T0, NULL), 0);
    assert_int_equal(tb_project(tb, T0 + 40 * MS), 20);
    assert_int_equal(tb_project(tb, T0 + 140 * MS), 40);
    assert_int_equal(tb_time_to_fill_ns(tb, T0), 40 * MS + 59 * 100 * MS);
    r = reading(0, 101, 20, 1700000000001); /* refillIn beyond the (short) minute */
    assert_int_equal(tb_apply_reading(tb, &r, T0, NULL), -EINVAL);
    free(tb);
}

/* ---- the reference model: Keepa's server bucket against the shared estimate ---------------- */

#define REF_WORKERS 4
#define REF_DAYS    7
#define DAY         (24 * 3600 * SEC)
#define HOUR        (3600 * SEC)

static uint64_t rng_state;

static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static int64_t rnd_range(int64_t lo, int64_t hi) /* [lo, hi] */
{
    return lo + (int64_t)(rnd() % (uint64_t)(hi - lo + 1));
}

/* Keepa's bucket as docs/keepa-api.md §4.1 describes it, written independently of tokens.c. */
struct ref_server {
    int64_t balance;
    int64_t rate; /* true refill rate */
    int64_t next_tick;
    int64_t earned, charged, lost, requests, answered_429, min_balance;
};

static void ref_tick(struct ref_server *s)
{
    int64_t cap = s->rate * 60;
    s->earned += s->rate;
    if (s->balance >= cap) {
        s->lost += s->rate; /* full stays full */
    } else {
        int64_t b = s->balance + s->rate;
        if (b > cap) {
            s->lost += b - cap;
            b = cap;
        }
        s->balance = b;
    }
    s->next_tick += MINUTE;
}

enum { W_IDLE, W_TO_SERVER, W_TO_CLIENT, W_DEAD };

struct ref_req {
    bool token_call, checked, die_before, die_after, admitted, truthful;
    enum tb_kind kind;
    int64_t units, reserved, true_cost, t_grant, t_srv, t_resp;
    struct tb_grant g;
    struct tb_reading rd;
};

struct ref_worker {
    int64_t pid;
    int role, st;
    int64_t next, step;
    struct ref_req q;
};

struct ref_result {
    int64_t earned, charged, granted, lost, final_balance, requests, answered_429;
    int64_t violations_429, violations_deficit, grants, grants_checked, token_calls, deaths;
    int64_t max_wait_ns, min_projection, min_server_balance, waits;
};

static void ref_pick(struct ref_worker *w, int64_t now, int64_t start)
{
    struct ref_req *q = &w->q;
    int64_t day = (now - start) / DAY, hour = ((now - start) % DAY) / HOUR;
    bool expensive = day % 3 == 1 && hour >= 6 && hour < 9; /* offers pages x4 */
    q->true_cost = 0;
    switch (w->role) {
    case 0: /* scanner: a deal page, then a peek of 50 */
        if (w->step % 2 == 0) {
            q->kind = TB_KIND_DEAL_PAGE, q->units = 1, q->true_cost = 5;
        } else {
            q->kind = TB_KIND_PEEK, q->units = 50;
            for (int i = 0; i < 50; i++)
                q->true_cost += rnd() % 5 == 0 ? 2 : 1;
        }
        break;
    case 2: /* updater: light refresh of 20 */
        q->kind = TB_KIND_UPDATE, q->units = 20;
        for (int i = 0; i < 20; i++)
            q->true_cost += rnd() % 2 ? 6 : 12;
        break;
    default: { /* committers: 5 with offers */
        static const int64_t per_asin[] = {6, 7, 12, 13};
        q->kind = TB_KIND_COMMIT, q->units = 5;
        for (int i = 0; i < 5; i++)
            q->true_cost += per_asin[rnd() % 4] * (expensive ? 4 : 1);
    } break;
    }
    w->step++;
}

static void run_reference(int64_t plan_rate, uint64_t seed, struct ref_result *res)
{
    rng_state = seed;
    memset(res, 0, sizeof(*res));
    const int64_t start = T0, end = T0 + REF_DAYS * DAY, high_rate = plan_rate * 12 / 5;
    const int64_t epoch0_ms = 1764000000000;
    struct tb_params p = {.initial_rate = plan_rate};
    struct shm_tokens *tb = new_bucket(&p, start);
    const int64_t deficit = TB_DEFAULT_MAX_DEFICIT;

    /* Estimates start 4x too low (the AA seed, docs/failure-modes.md F1). */
    for (int i = 0; i < 200; i++) {
        tb_cost_learn(tb, TB_KIND_PEEK, 50, 15);
        tb_cost_learn(tb, TB_KIND_COMMIT, 5, 15);
        tb_cost_learn(tb, TB_KIND_UPDATE, 20, 60);
    }

    struct ref_server srv = {.rate = plan_rate, .next_tick = start + 17300 * MS};
    srv.balance = srv.rate * 60;
    srv.earned = srv.balance;
    srv.min_balance = srv.balance;
    int64_t last_surprise = start, last_applied_gen = -1, next_pid = 1000;
    int64_t next_jump = start + 3 * HOUR, jump_sign = -1;
    int64_t next_flap = start + 10 * HOUR;
    res->min_projection = INT64_MAX;

    struct ref_worker w[REF_WORKERS];
    for (int i = 0; i < REF_WORKERS; i++)
        w[i] = (struct ref_worker){.pid = next_pid++, .role = i, .st = W_IDLE, .next = start};

    for (;;) {
        int64_t now = srv.next_tick;
        int who = -1;
        if (next_jump < now)
            now = next_jump, who = -2;
        if (next_flap < now)
            now = next_flap, who = -3;
        for (int i = 0; i < REF_WORKERS; i++)
            if (w[i].next < now)
                now = w[i].next, who = i;
        if (now >= end)
            break;

        if (who == -1) {
            ref_tick(&srv);
            continue;
        }
        if (who == -2) { /* someone else spends 200 on the key, or gets 200 back */
            srv.balance += 200 * jump_sign;
            srv.earned += 200 * jump_sign;
            if (jump_sign < 0)
                last_surprise = now;
            jump_sign = -jump_sign;
            next_jump += 6 * HOUR;
            continue;
        }
        if (who == -3) { /* the plan's refill rate flaps: high for two hours a day */
            if (srv.rate == plan_rate) {
                srv.rate = high_rate;
                next_flap += 2 * HOUR;
            } else {
                srv.rate = plan_rate;
                last_surprise = now; /* we may still project at the higher rate */
                next_flap += 22 * HOUR;
            }
            continue;
        }

        struct ref_worker *k = &w[who];
        struct ref_req *q = &k->q;
        if (k->st == W_DEAD) { /* the supervisor reaped it: write off, restart */
            assert_true(tb_writeoff_owner(tb, k->pid, now) >= 0);
            k->pid = next_pid++;
            k->st = W_IDLE;
            k->next = now + 5 * SEC;
        } else if (k->st == W_TO_SERVER) { /* the server receives the request */
            int64_t consumed = 0;
            if (!q->token_call) {
                srv.requests++;
                if (last_surprise > q->t_grant)
                    q->checked = false;
                if (srv.balance > 0) {
                    q->admitted = true;
                    consumed = q->true_cost;
                    srv.balance -= consumed;
                    srv.charged += consumed;
                    if (consumed > q->reserved)
                        last_surprise = now;
                    if (q->checked && consumed <= q->reserved && srv.balance < -deficit)
                        res->violations_deficit++;
                } else {
                    srv.answered_429++;
                    if (q->checked) {
                        res->violations_429++;
                        fprintf(stderr,
                                "429 on a re-anchored grant: at %+.3f s, granted %+.3f s, "
                                "reserved %lld, last surprise %+.3f s, last reading %+.3f s\n",
                                (double)(now - start) / 1e9, (double)(q->t_grant - start) / 1e9,
                                (long long)q->reserved, (double)(last_surprise - start) / 1e9,
                                (double)(last_applied_gen - start) / 1e9);
                    }
                }
                if (srv.balance < srv.min_balance)
                    srv.min_balance = srv.balance;
            }
            int64_t reported = srv.rate;
            if (srv.rate == plan_rate && rnd() % 100 < 3)
                reported = high_rate; /* a transient outlier (docs/failure-modes.md F7) */
            q->truthful = reported == srv.rate;
            q->rd = (struct tb_reading){(double)srv.balance, (srv.next_tick - now) / MS, reported,
                                        epoch0_ms + now / MS, consumed};
            q->t_srv = now;
            if (q->die_after) {
                k->st = W_DEAD;
                k->next = now + 2 * SEC;
            } else {
                k->st = W_TO_CLIENT;
                k->next = q->t_resp;
            }
        } else if (k->st == W_TO_CLIENT) { /* the answer arrives */
            int rc = tb_apply_reading(tb, &q->rd, now, q->token_call ? NULL : &q->g);
            /* Re-anchored = a reading that told the truth was applied (an outlier reading
             * that happens to come right after a real rate drop cannot be told apart). */
            if (rc == 0 && q->truthful)
                last_applied_gen = q->t_srv;
            if (rc != 0)
                assert_int_equal(rc, -ESTALE); /* older than one applied already */
            if (!q->token_call) {
                if (q->admitted)
                    assert_int_equal(tb_cost_learn(tb, q->kind, q->units, q->rd.tokens_consumed),
                                     0);
                assert_int_equal(tb_settle(tb, &q->g, now, q->rd.tokens_consumed), 0);
            }
            k->st = W_IDLE;
            k->next = now;
        } else { /* idle: a free /token call if warranted, else reserve the next batch */
            memset(q, 0, sizeof(*q));
            if (tb_needs_reading(tb, now) && tb_claim_status_call(tb, now) == 0) {
                int64_t l1 = rnd_range(20, 300) * MS;
                q->token_call = true;
                q->t_grant = now;
                q->t_resp = now + l1 + rnd_range(100, 300) * MS;
                k->st = W_TO_SERVER;
                k->next = now + l1;
                res->token_calls++;
                continue;
            }
            ref_pick(k, now, start);
            int64_t est = tb_cost_estimate(tb, q->kind, q->units), wait = 0;
            assert_true(est > 0);
            int rc = tb_reserve(tb, now, est, k->pid, &q->g, &wait);
            if (rc == -EAGAIN) {
                k->step--; /* the same batch again later */
                assert_true(wait > now);
                int64_t fill = tb_time_to_fill_ns(tb, now);
                if (fill >= 0) {
                    assert_true(wait - now <= fill);
                    if (wait - now > res->max_wait_ns)
                        res->max_wait_ns = wait - now;
                }
                res->waits++;
                k->next = wait;
                continue;
            }
            assert_int_equal(rc, 0);
            int64_t proj = tb_project(tb, now);
            assert_true(proj >= -deficit); /* never a deficit beyond the bound */
            if (proj < res->min_projection)
                res->min_projection = proj;
            q->reserved = est;
            q->t_grant = now;
            /* Checked: the estimate had been re-anchored after the last thing it could not
             * know, and no request in flight carries an unknown underestimate. */
            q->checked = last_applied_gen >= last_surprise;
            for (int i = 0; i < REF_WORKERS; i++)
                if (i != who && w[i].st == W_TO_SERVER && !w[i].q.token_call &&
                    w[i].q.true_cost > w[i].q.reserved)
                    q->checked = false;
            res->grants++;
            res->grants_checked += q->checked;
            res->granted += est;
            bool offers = q->kind == TB_KIND_COMMIT || q->kind == TB_KIND_UPDATE;
            int64_t l1 = rnd_range(20, 300) * MS;
            int64_t l2 = offers ? rnd_range(2000, 20000) * MS : rnd_range(100, 800) * MS;
            q->t_resp = now + l1 + l2;
            uint64_t fate = rnd() % 400;
            q->die_before = fate == 0;
            q->die_after = fate == 1;
            res->deaths += q->die_before || q->die_after;
            k->st = q->die_before ? W_DEAD : W_TO_SERVER;
            k->next = q->die_before ? now + 2 * SEC : now + l1;
        }
    }
    res->earned = srv.earned;
    res->charged = srv.charged;
    res->lost = srv.lost;
    res->final_balance = srv.balance;
    res->requests = srv.requests;
    res->answered_429 = srv.answered_429;
    res->min_server_balance = srv.min_balance;
    free(tb);
}

/* Seeds per plan: the first is printed in full, the others summarised. */
#define REF_SEEDS 10

static void check_reference(int64_t plan_rate)
{
    double util_min = 2, util_max = 0;
    int64_t violations = 0, answered_429 = 0, requests = 0;
    for (int k = 0; k < REF_SEEDS; k++) {
        struct ref_result r;
        uint64_t seed = (0x9e3779b97f4a7c15ULL ^ (uint64_t)plan_rate) + (uint64_t)k * 7919;
        run_reference(plan_rate, seed, &r);
        double util = (double)r.charged / (double)r.earned;
        if (k == 0) {
            printf("reference %lld/min, %d days: earned %lld, charged %lld (utilisation %.2f%%), "
                   "reserved %lld (%.2f%%), lost to a full bucket %lld, final balance %lld\n",
                   (long long)plan_rate, REF_DAYS, (long long)r.earned, (long long)r.charged,
                   100 * util, (long long)r.granted, 100.0 * (double)r.granted / (double)r.earned,
                   (long long)r.lost, (long long)r.final_balance);
            printf("  requests %lld, 429 %lld (on re-anchored grants: %lld), grants %lld (checked "
                   "%lld), waits %lld (longest %.1f s), /token calls %lld, deaths %lld, lowest "
                   "projection %lld, lowest server balance %lld, deficit violations %lld\n",
                   (long long)r.requests, (long long)r.answered_429, (long long)r.violations_429,
                   (long long)r.grants, (long long)r.grants_checked, (long long)r.waits,
                   (double)r.max_wait_ns / 1e9, (long long)r.token_calls, (long long)r.deaths,
                   (long long)r.min_projection, (long long)r.min_server_balance,
                   (long long)r.violations_deficit);
            fflush(stdout);
        }
        assert_int_equal(r.violations_429, 0);
        assert_int_equal(r.violations_deficit, 0);
        assert_true(util >= 0.99);
        assert_true(r.grants_checked * 2 >= r.grants); /* the 429 check is not vacuous */
        assert_true(r.deaths > 0);
        assert_true(r.token_calls <= REF_DAYS * 24); /* no /token polling (F5) */
        assert_true(r.min_projection >= -TB_DEFAULT_MAX_DEFICIT);
        util_min = util < util_min ? util : util_min;
        util_max = util > util_max ? util : util_max;
        violations += r.violations_429 + r.violations_deficit;
        answered_429 += r.answered_429;
        requests += r.requests;
    }
    printf("  %d seeds: utilisation %.2f%% .. %.2f%%, %lld requests, %lld answered 429 (all "
           "before a re-anchor), %lld violations\n",
           REF_SEEDS, 100 * util_min, 100 * util_max, (long long)requests, (long long)answered_429,
           (long long)violations);
    fflush(stdout);
}

static void test_reference_model_7_days_5_per_min(void **state)
{
    (void)state;
    check_reference(5);
}

static void test_reference_model_7_days_20_per_min(void **state)
{
    (void)state;
    check_reference(20);
}

/* ---- concurrency: processes and threads ---------------------------------------------------- */

#define CC_WORKERS    4
#define CC_MAX_GRANTS 20000
#define CC_BUDGET     30000
#define CC_HOLD       4 /* unsettled grants a worker keeps at most */

struct cc_log {
    _Atomic int64_t n;
    struct tb_grant g[CC_MAX_GRANTS];
    _Atomic int64_t settled_twice;
    _Atomic int64_t errors;
    _Atomic int64_t held_at_exit; /* reservations a dying worker left behind */
};

struct cc_shared {
    struct shm_tokens tb;
    struct cc_log log[CC_WORKERS + 1];
};

/*
 * Reserves costs 1..7 until the bucket refuses, settling with the reserved amount (so the
 * balance must end at exactly budget - sum of grants), keeping up to CC_HOLD grants in
 * flight. All within one Keepa minute of the anchor: no refill, so nothing may be granted
 * beyond the budget and the deficit bound. Worker DIE_EARLY stops without settling its last
 * grants (a crash with tokens reserved).
 */
static void cc_worker(struct shm_tokens *tb, struct cc_log *log, int id, int64_t owner,
                      bool die_early)
{
    struct tb_grant held[CC_HOLD];
    int nheld = 0;
    int64_t now = T0 + SEC, seq = 0;
    for (;;) {
        struct tb_grant g;
        int64_t wait;
        int64_t cost = 1 + (seq++ + id) % 7;
        int rc = tb_reserve(tb, now, cost, owner, &g, &wait);
        if (rc == -EAGAIN)
            break;
        if (rc == -ENOSPC)
            continue;
        if (rc != 0 || log->n >= CC_MAX_GRANTS) {
            atomic_fetch_add(&log->errors, 1);
            break;
        }
        log->g[atomic_fetch_add(&log->n, 1)] = g;
        held[nheld++] = g;
        if (nheld == CC_HOLD) {
            if (tb_settle(tb, &held[0], now, held[0].cost_tokens) != 0)
                atomic_fetch_add(&log->errors, 1);
            if (tb_settle(tb, &held[0], now, held[0].cost_tokens) != -ESTALE)
                atomic_fetch_add(&log->settled_twice, 1);
            memmove(held, held + 1, sizeof(held[0]) * (CC_HOLD - 1));
            nheld--;
        }
        /* Readers (stat, needs_reading) run alongside. */
        (void)tb_project(tb, now);
        (void)tb_needs_reading(tb, now);
    }
    atomic_store(&log->held_at_exit, die_early ? nheld : 0);
    if (!die_early)
        for (int i = 0; i < nheld; i++)
            if (tb_settle(tb, &held[i], now, held[i].cost_tokens) != 0)
                atomic_fetch_add(&log->errors, 1);
}

static struct cc_shared *cc_setup(bool shared_mapping)
{
    struct cc_shared *sh;
    if (shared_mapping) {
        sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        assert_true(sh != MAP_FAILED);
    } else {
        sh = aligned_alloc(64, (sizeof(*sh) + 63) / 64 * 64);
        assert_non_null(sh);
    }
    memset(sh, 0, sizeof(*sh));
    assert_int_equal(tb_init(&sh->tb, NULL, T0), 0);
    /* Budget tokens, the next tick a full minute away; the workers stay inside it. */
    struct tb_reading r = reading(CC_BUDGET, 60000, 5, 1700000000000);
    assert_int_equal(tb_apply_reading(&sh->tb, &r, T0, NULL), 0);
    return sh;
}

static void cc_check(struct shm_tokens *tb, struct cc_log *logs, int64_t dead_owner)
{
    int64_t left_behind = atomic_load(&logs[CC_WORKERS - 1].held_at_exit);
    int64_t sum = 0, total = 0;
    for (int id = 0; id < CC_WORKERS; id++) {
        struct cc_log *log = &logs[id];
        assert_int_equal(atomic_load(&log->errors), 0);
        assert_int_equal(atomic_load(&log->settled_twice), 0);
        for (int64_t i = 0; i < log->n; i++)
            sum += log->g[i].cost_tokens;
        total += log->n;
    }
    /* No reservation granted twice: every (slot, generation) pair is unique. */
    static uint8_t seen[SHM_TOKEN_SLOTS][CC_WORKERS * CC_MAX_GRANTS / 8 + 64];
    memset(seen, 0, sizeof(seen));
    for (int id = 0; id < CC_WORKERS; id++)
        for (int64_t i = 0; i < logs[id].n; i++) {
            struct tb_grant *g = &logs[id].g[i];
            assert_true(g->slot < SHM_TOKEN_SLOTS);
            assert_true(g->generation < sizeof(seen[0]) * 8);
            uint8_t bit = (uint8_t)(1u << (g->generation % 8));
            assert_false(seen[g->slot][g->generation / 8] & bit);
            seen[g->slot][g->generation / 8] |= bit;
        }
    /* The supervisor writes off what the dead one held: exactly those slots, once. */
    assert_int_equal(tb_writeoff_owner(tb, dead_owner, T0 + 2 * SEC), left_behind);
    assert_int_equal(tb_writeoff_owner(tb, dead_owner, T0 + 2 * SEC), 0);
    struct tb_stats st;
    assert_int_equal(tb_stats(tb, T0 + 2 * SEC, &st), 0);
    assert_int_equal(st.slots_in_use, 0);
    /* Never over-granted: every grant was charged exactly once, and the bucket stopped
     * within the deficit bound. A worker stops at its first refusal, which with grants of
     * other sizes in flight (the order-proof rule) can come while a few tokens are left. */
    assert_int_equal(st.projected_tokens, CC_BUDGET - sum);
    assert_true(st.projected_tokens >= -TB_DEFAULT_MAX_DEFICIT);
    assert_true(st.projected_tokens < 7);
    assert_int_equal((int64_t)st.grants, total);
    printf("  %lld grants, %lld tokens, final balance %lld\n", (long long)total, (long long)sum,
           (long long)st.projected_tokens);
}

static void test_processes_reserving_concurrently_never_over_grant(void **state)
{
    (void)state;
    struct cc_shared *sh = cc_setup(true);
    pid_t pids[CC_WORKERS];
    for (int id = 0; id < CC_WORKERS; id++) {
        pids[id] = fork();
        assert_true(pids[id] >= 0);
        if (pids[id] == 0) {
            cc_worker(&sh->tb, &sh->log[id], id, getpid(), id == CC_WORKERS - 1);
            _exit(0);
        }
    }
    for (int id = 0; id < CC_WORKERS; id++) {
        int status;
        assert_int_equal(waitpid(pids[id], &status, 0), pids[id]);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    /* The supervisor reaped the one that died holding reservations. */
    cc_check(&sh->tb, sh->log, pids[CC_WORKERS - 1]);
    munmap(sh, sizeof(*sh));
}

/* The same over a real key segment: the first opener creates it and initialises the bucket,
 * workers open it by name (their own mappings, at other addresses, each holding its shared
 * lock), and `kdeals status` reads it through a read-only mapping. The last to close removes
 * it. */
static void test_processes_over_a_real_segment(void **state)
{
    (void)state;
    char fp[SHM_KEY_FP_MAX], err[256];
    snprintf(fp, sizeof(fp), "ee%08lx", (unsigned long)getpid());
    struct ks_segment ks;
    if (ks_open(&ks, fp, NULL, err, sizeof(err)) != 0)
        fail_msg("key segment: %s", err);
    kd_test_track_shm(ks.name);
    struct shm_tokens *tb = &ks.layout->tokens;
    assert_int_equal(tb_init(tb, NULL, T0), 0); /* virtual time from T0, as the others */
    struct tb_reading r = reading(CC_BUDGET, 60000, 5, 1700000000000);
    assert_int_equal(tb_apply_reading(tb, &r, T0, NULL), 0);
    struct cc_log *logs = mmap(NULL, sizeof(struct cc_log) * CC_WORKERS, PROT_READ | PROT_WRITE,
                               MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    assert_true(logs != MAP_FAILED);
    memset(logs, 0, sizeof(struct cc_log) * CC_WORKERS);
    pid_t pids[CC_WORKERS];
    for (int id = 0; id < CC_WORKERS; id++) {
        pids[id] = fork();
        assert_true(pids[id] >= 0);
        if (pids[id] == 0) {
            struct ks_segment mine;
            char e[256];
            if (ks_open(&mine, fp, NULL, e, sizeof(e)) != 0)
                _exit(3);
            cc_worker(&mine.layout->tokens, &logs[id], id, getpid(), id == CC_WORKERS - 1);
            if (ks_close(&mine) != 0)
                _exit(4); /* the test's own handle is still open: never the last */
            _exit(0);
        }
    }
    for (int id = 0; id < CC_WORKERS; id++) {
        int status;
        assert_int_equal(waitpid(pids[id], &status, 0), pids[id]);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    /* A read-only reader sees what the workers did. */
    struct ks_segment ro;
    assert_int_equal(ks_attach_ro(&ro, fp, err, sizeof(err)), 0);
    struct tb_stats st;
    assert_int_equal(tb_stats(&ro.layout->tokens, T0 + 2 * SEC, &st), 0);
    assert_true(st.anchored);
    assert_int_equal(st.projected_tokens, tb_project(tb, T0 + 2 * SEC));
    assert_int_equal(ks_close(&ro), 0); /* read-only: never unlinks */
    cc_check(tb, logs, pids[CC_WORKERS - 1]);
    munmap(logs, sizeof(struct cc_log) * CC_WORKERS);
    char name[sizeof(ks.name)];
    memcpy(name, ks.name, sizeof(name));
    assert_int_equal(ks_close(&ks), 1); /* the last one out removes it */
    assert_true(shm_open(name, O_RDONLY, 0) < 0 && errno == ENOENT);
}

struct cc_thread_arg {
    struct cc_shared *sh;
    int id;
};

static void *cc_thread(void *p)
{
    struct cc_thread_arg *a = p;
    cc_worker(&a->sh->tb, &a->sh->log[a->id], a->id, 500 + a->id, a->id == CC_WORKERS - 1);
    return NULL;
}

/* Readings, write-offs and stats racing with reservations (TSan checks the memory model). */
static void *cc_reader_thread(void *p)
{
    struct cc_shared *sh = p;
    for (int i = 0; i < 2000; i++) {
        struct tb_stats st;
        tb_stats(&sh->tb, T0 + SEC, &st);
        (void)tb_time_to_fill_ns(&sh->tb, T0 + SEC);
        (void)tb_cost_estimate(&sh->tb, TB_KIND_COMMIT, 5);
        tb_cost_learn(&sh->tb, TB_KIND_COMMIT, 5, 30 + i % 40);
        (void)tb_writeoff_owner(&sh->tb, 99999, T0 + SEC); /* nobody's: must release nothing */
    }
    return NULL;
}

static void test_threads_reserving_concurrently_never_over_grant(void **state)
{
    (void)state;
    struct cc_shared *sh = cc_setup(false);
    pthread_t t[CC_WORKERS], reader;
    struct cc_thread_arg args[CC_WORKERS];
    assert_int_equal(pthread_create(&reader, NULL, cc_reader_thread, sh), 0);
    for (int id = 0; id < CC_WORKERS; id++) {
        args[id] = (struct cc_thread_arg){sh, id};
        assert_int_equal(pthread_create(&t[id], NULL, cc_thread, &args[id]), 0);
    }
    for (int id = 0; id < CC_WORKERS; id++)
        pthread_join(t[id], NULL);
    pthread_join(reader, NULL);
    cc_check(&sh->tb, sh->log, 500 + CC_WORKERS - 1);
    free(sh);
}

/*
 * Readings applied while other threads reserve and settle: whatever the interleaving, a
 * reading never lets two grants spend the same tokens. The "server" here is exact: a reading
 * reports budget - everything charged so far, taken under a mutex with the charge itself, so
 * after the dust settles the estimate must equal the server's balance minus nothing.
 */
struct rd_shared {
    struct shm_tokens tb;
    pthread_mutex_t server_lock;
    int64_t server_balance;
    int64_t ts;
    _Atomic int errors;
};

static void *rd_thread(void *p)
{
    struct rd_shared *sh = p;
    int64_t owner = (int64_t)(uintptr_t)pthread_self() % 100000 + 1;
    for (int i = 0; i < 3000; i++) {
        struct tb_grant g;
        int64_t wait;
        int64_t cost = 1 + i % 5;
        int rc = tb_reserve(&sh->tb, T0 + SEC, cost, owner, &g, &wait);
        if (rc == -EAGAIN || rc == -ENOSPC)
            continue;
        if (rc != 0) {
            atomic_fetch_add(&sh->errors, 1);
            continue;
        }
        /* The server charges it and answers with a reading. */
        pthread_mutex_lock(&sh->server_lock);
        sh->server_balance -= cost;
        struct tb_reading r = reading((double)sh->server_balance, 50000, 5, ++sh->ts);
        r.tokens_consumed = cost;
        pthread_mutex_unlock(&sh->server_lock);
        rc = tb_apply_reading(&sh->tb, &r, T0 + SEC, &g);
        if (rc != 0 && rc != -EBUSY && rc != -ESTALE)
            atomic_fetch_add(&sh->errors, 1);
        if (tb_settle(&sh->tb, &g, T0 + SEC, cost) != 0)
            atomic_fetch_add(&sh->errors, 1);
    }
    return NULL;
}

static void test_readings_racing_with_reservations(void **state)
{
    (void)state;
    struct rd_shared *sh = aligned_alloc(64, (sizeof(*sh) + 63) / 64 * 64);
    memset(sh, 0, sizeof(*sh));
    pthread_mutex_init(&sh->server_lock, NULL);
    assert_int_equal(tb_init(&sh->tb, NULL, T0), 0);
    sh->server_balance = 100000;
    sh->ts = 1700000000000;
    struct tb_reading r = reading(100000, 60000, 5, sh->ts);
    assert_int_equal(tb_apply_reading(&sh->tb, &r, T0, NULL), 0);
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&t[i], NULL, rd_thread, sh), 0);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(atomic_load(&sh->errors), 0);
    /* Every request answered and settled: the estimate is the server's balance or below
     * (a reading that raced a charge may count it twice until the next one), never above. */
    int64_t est = tb_project(&sh->tb, T0 + SEC);
    printf("  server %lld, estimate %lld\n", (long long)sh->server_balance, (long long)est);
    assert_true(est <= sh->server_balance);
    r = reading((double)sh->server_balance, 50000, 5, ++sh->ts);
    assert_int_equal(tb_apply_reading(&sh->tb, &r, T0 + SEC, NULL), 0);
    assert_int_equal(tb_project(&sh->tb, T0 + SEC), sh->server_balance);
    pthread_mutex_destroy(&sh->server_lock);
    free(sh);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_init_rejects_bad_params),
        cmocka_unit_test(test_unanchored_grants_nothing_and_asks_for_a_reading),
        cmocka_unit_test(test_garbage_readings_are_ignored),
        cmocka_unit_test(test_projection_counts_whole_ticks_up_to_the_cap),
        cmocka_unit_test(test_admission_and_deficit_bound),
        cmocka_unit_test(test_huge_costs_are_granted_when_full_never_waited_for_forever),
        cmocka_unit_test(test_within_deficit_never_overdraws_nor_waits_forever),
        cmocka_unit_test(test_waits_never_exceed_the_fill_time),
        cmocka_unit_test(test_settle_corrects_once_and_never_frees_twice),
        cmocka_unit_test(test_slots_run_out_cleanly),
        cmocka_unit_test(test_absurd_settle_frees_its_slot),
        cmocka_unit_test(test_long_idle_after_a_deep_deficit_is_not_full),
        cmocka_unit_test(test_lost_request_held_against_older_readings),
        cmocka_unit_test(test_writeoff_releases_a_dead_owners_slots),
        cmocka_unit_test(test_reading_subtracts_requests_in_flight),
        cmocka_unit_test(test_older_reading_does_not_override_a_newer_one),
        cmocka_unit_test(test_reading_overtaken_by_minutes_gives_nothing_back),
        cmocka_unit_test(test_tick_never_projected_before_the_servers),
        cmocka_unit_test(test_reading_refused_busy_still_orders_the_later_ones),
        cmocka_unit_test(test_reading_of_the_same_millisecond_never_raises),
        cmocka_unit_test(test_higher_rate_trusted_only_as_far_as_observed),
        cmocka_unit_test(test_needs_reading_policy),
        cmocka_unit_test(test_cost_estimates_learn_up_fast_and_down_slowly),
        cmocka_unit_test(test_long_idle_and_stale_callers),
        cmocka_unit_test(test_accelerated_minute),
        cmocka_unit_test(test_reference_model_7_days_5_per_min),
        cmocka_unit_test(test_reference_model_7_days_20_per_min),
        cmocka_unit_test(test_processes_reserving_concurrently_never_over_grant),
        cmocka_unit_test(test_processes_over_a_real_segment),
        cmocka_unit_test(test_threads_reserving_concurrently_never_over_grant),
        cmocka_unit_test(test_readings_racing_with_reservations),
    };
    return KD_RUN_TESTS(tests, argc, argv);
}
