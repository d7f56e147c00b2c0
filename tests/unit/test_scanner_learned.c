/*
 * test_scanner_learned.c: the scanner's learned low fees (scanner/learned.h) as numbers for the
 * store and back: a state learned over many peeks of several categories reads back with the
 * same low fees for every category, and goes on learning as the original does (the kept
 * observations in order); numbers no peek makes are refused and leave the table untouched.
 * The same for the `peekrate` outcomes by class.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kd_test.h"
#include "scanner/learned.h"

static void learn(struct scanner_fees *f, int64_t cat, int64_t i)
{
    struct jd_verdict v;
    memset(&v, 0, sizeof(v));
    v.payout_known = true;
    v.referral_bp = 800 + (i * 37) % 900;
    v.fba_cents = 250 + (i * 53) % 700;
    v.closing_cents = i % 5 == 0 ? 180 : 0;
    scanner_fees_learn(f, cat, &v);
}

/* The low fees F judges a product of CAT at (all -1 when too few are learned). */
static void low(const struct scanner_fees *f, int64_t cat, int64_t out[3])
{
    struct jd_inputs in;
    memset(&in, 0, sizeof(in));
    if (!scanner_fees_low(f, cat, &in)) {
        out[0] = out[1] = out[2] = -1;
        return;
    }
    out[0] = in.referral_bp;
    out[1] = in.fba_fee_cents;
    out[2] = in.closing_fee_cents;
}

static void same_lows(const struct scanner_fees *a, const struct scanner_fees *b)
{
    static const int64_t cats[] = {0, 11, 22, 33, 44, 99};
    for (size_t i = 0; i < sizeof(cats) / sizeof(cats[0]); i++) {
        int64_t x[3], y[3];
        low(a, cats[i], x);
        low(b, cats[i], y);
        if (memcmp(x, y, sizeof(x)) != 0)
            fail_msg("category %lld: %lld/%lld/%lld against %lld/%lld/%lld", (long long)cats[i],
                     (long long)x[0], (long long)x[1], (long long)x[2], (long long)y[0],
                     (long long)y[1], (long long)y[2]);
    }
}

static void test_round_trip_learns_on_alike(void **state)
{
    (void)state;
    struct scanner_fees *a = calloc(1, sizeof(*a)), *b = calloc(1, sizeof(*b));
    struct scanner_fees *scratch = calloc(1, sizeof(*scratch));
    double *n = calloc(SCANNER_FEES_NUMS, sizeof(double));
    assert_non_null(a);
    assert_non_null(b);
    assert_non_null(scratch);
    assert_non_null(n);
    scanner_fees_init(a);
    scanner_fees_init(b);
    /* Category 11 past its ring (300 peeks), 22 within it (40), 33 below the minimum (5). */
    for (int64_t i = 0; i < 300; i++)
        learn(a, 11, i);
    for (int64_t i = 0; i < 40; i++)
        learn(a, 22, 1000 + i);
    for (int64_t i = 0; i < 5; i++)
        learn(a, 33, 2000 + i);
    scanner_fees_pack(a, n);
    assert_true(scanner_fees_unpack(n, b, scratch));
    same_lows(a, b);
    int64_t x[3];
    low(b, 22, x);
    assert_true(x[0] > 0); /* learned: not the fees of every product, not none */
    /* Both go on learning alike: the ring's order came back with it. */
    for (int64_t i = 0; i < 200; i++) {
        learn(a, i % 2 ? 11 : 44, 5000 + i);
        learn(b, i % 2 ? 11 : 44, 5000 + i);
        same_lows(a, b);
    }
    /* Empty reads back empty. */
    scanner_fees_init(a);
    scanner_fees_pack(a, n);
    assert_true(scanner_fees_unpack(n, b, scratch));
    low(b, 0, x);
    assert_int_equal(x[0], -1);
    free(a);
    free(b);
    free(scratch);
    free(n);
}

static void test_numbers_no_peek_makes_are_refused(void **state)
{
    (void)state;
    struct scanner_fees *a = calloc(1, sizeof(*a)), *b = calloc(1, sizeof(*b));
    struct scanner_fees *scratch = calloc(1, sizeof(*scratch));
    double *good = calloc(SCANNER_FEES_NUMS, sizeof(double));
    double *n = calloc(SCANNER_FEES_NUMS, sizeof(double));
    assert_non_null(a);
    assert_non_null(b);
    assert_non_null(scratch);
    assert_non_null(good);
    assert_non_null(n);
    scanner_fees_init(a);
    for (int64_t i = 0; i < 60; i++)
        learn(a, i % 2 ? 11 : 22, i);
    scanner_fees_pack(a, good);
    const size_t C = SCANNER_FEES_CLASS_NUMS;
    /* Class 1 is category 22's slot (learned first), class 2 category 11's, class 3 free. */
    struct {
        size_t at;
        double v;
    } bad[] = {{2, 0.5}, {2, NAN}, {2, -1},        {2, 3e9},    {1, 129},
               {0, 2},   {C, 1},   {3 * C + 1, 1}, {2 * C, 23}, {C + 2, INFINITY}};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        memcpy(n, good, SCANNER_FEES_NUMS * sizeof(double));
        n[bad[i].at] = bad[i].v;
        scanner_fees_init(b);
        learn(b, 77, 1);
        struct scanner_fees_low before = b->all;
        if (scanner_fees_unpack(n, b, scratch))
            fail_msg("case %zu taken", i);
        assert_memory_equal(&b->all, &before, sizeof(before));
        assert_int_equal(b->cat[0].root_category, 77);
    }
    free(a);
    free(b);
    free(scratch);
    free(good);
    free(n);
}

/* The `peekrate` outcomes come back as they were: the same classes shut, the same skips. */
static void test_peek_rates_round_trip(void **state)
{
    (void)state;
    struct scanner_fees *a = calloc(1, sizeof(*a)), *b = calloc(1, sizeof(*b));
    double n[SCANNER_PEEK_NUMS];
    assert_non_null(a);
    assert_non_null(b);
    scanner_fees_init(a);
    scanner_fees_init(b);
    uint8_t seldom = scanner_peek_class(0, false, 1500), often = scanner_peek_class(2, false, 1500);
    uint8_t few = scanner_peek_class(2, true, 5000);
    for (int i = 0; i < 40; i++) {
        scanner_peek_learn(a, seldom, i % 10 == 0);
        scanner_peek_learn(a, often, i % 2 == 0);
    }
    for (int i = 0; i < 5; i++)
        scanner_peek_learn(a, few, false);
    for (int i = 0; i < 3; i++)
        (void)scanner_peek_skip(a, seldom);
    assert_int_equal(scanner_peek_classes_shut(a), 1);
    scanner_peek_pack(a, n);
    assert_true(scanner_peek_unpack(n, b->peek));
    assert_int_equal(scanner_peek_classes_shut(b), 1);
    /* The next skips and the next outcomes go alike. */
    for (int i = 0; i < 3 * SCANNER_PEEK_EXPLORE; i++) {
        assert_int_equal(scanner_peek_skip(a, seldom), scanner_peek_skip(b, seldom));
        assert_int_equal(scanner_peek_skip(a, few), scanner_peek_skip(b, few));
        scanner_peek_learn(a, few, false);
        scanner_peek_learn(b, few, false);
    }
    assert_int_equal(scanner_peek_classes_shut(a), scanner_peek_classes_shut(b));
    assert_int_equal(scanner_peek_classes_shut(b), 2);
    free(a);
    free(b);
}

/* Outcomes no peek makes are refused, the rates left as they were. */
static void test_peek_rates_refused(void **state)
{
    (void)state;
    struct scanner_fees *a = calloc(1, sizeof(*a));
    assert_non_null(a);
    scanner_fees_init(a);
    uint8_t cls = scanner_peek_class(2, false, 1500);
    for (int i = 0; i < 3; i++)
        scanner_peek_learn(a, cls, true); /* passed 0b111 of n 3 */
    double good[SCANNER_PEEK_NUMS], n[SCANNER_PEEK_NUMS];
    scanner_peek_pack(a, good);
    struct {
        size_t at;
        double v;
    } bad[] = {{3u * cls, 15},    /* an outcome bit beyond the 3 outcomes */
               {3u * cls + 1, 2}, /* ... the same: fewer outcomes than bits */
               {3u * cls, 0.5},     {3u * cls + 1, -1}, {3u * cls + 2, 4294967296.0},
               {3u * cls + 2, NAN}, {0, INFINITY}};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        memcpy(n, good, sizeof(n));
        n[bad[i].at] = bad[i].v;
        struct scanner_peek_rate before[SCANNER_PEEK_CLASSES];
        memcpy(before, a->peek, sizeof(before));
        if (scanner_peek_unpack(n, a->peek))
            fail_msg("case %zu taken", i);
        assert_memory_equal(a->peek, before, sizeof(before));
    }
    assert_true(scanner_peek_unpack(good, a->peek));
    free(a);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_learns_on_alike),
        cmocka_unit_test(test_numbers_no_peek_makes_are_refused),
        cmocka_unit_test(test_peek_rates_round_trip),
        cmocka_unit_test(test_peek_rates_refused),
    };
    return KD_RUN_TESTS(tests, argc, argv);
}
