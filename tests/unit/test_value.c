/*
 * test_value.c: value per token's learned rates and arithmetic (worker/value.h) as pure
 * functions: the vanish rate converges to the hazard it observes and follows a market that
 * changes, a class with few observations leans on the rate of all deals, the peek's hit rate
 * is corrected for age, the profit ratio is a mean over deals, a fetch costs what Keepa
 * charges, the hazard by the age of a price finds a fixed life and places an interval after
 * it, and [tokens] value_rules switches each rule.
 */
#include <math.h>
#include <string.h>

#include "kd_test.h"
#include "worker/value.h"

/* Feeds R N observations of deals whose lifetimes are exponential with HALF_LIFE minutes,
 * each re-checked ELAPSED minutes after it was last seen: the expected share vanishes. */
static void feed(struct val_rate *r, int n, double half_life, double elapsed)
{
    double p_gone = 1 - exp2(-elapsed / half_life);
    double acc = 0;
    for (int i = 0; i < n; i++) {
        acc += p_gone;
        bool gone = acc >= 1;
        if (gone)
            acc -= 1;
        val_rate_observe(r, gone, elapsed);
    }
}

static void test_prior_before_any_observation(void **state)
{
    (void)state;
    struct val_rate r;
    val_rate_init(&r);
    assert_int_equal(val_half_life_min(val_rate_lambda(&r)), VAL_PRIOR_HALF_LIFE_MIN);
    assert_true(fabs(val_survival(val_rate_lambda(&r), VAL_PRIOR_HALF_LIFE_MIN) - 0.5) < 1e-9);
    assert_true(val_survival(val_rate_lambda(&r), 0) == 1.0);
    assert_true(val_survival(val_rate_lambda(&r), -5) == 1.0);
}

static void test_rate_learns_the_observed_half_life(void **state)
{
    (void)state;
    /* Short re-check intervals: the actuarial estimate is close to the hazard. */
    struct val_rate r;
    val_rate_init(&r);
    feed(&r, 2000, 40, 5);
    int64_t h = val_half_life_min(val_rate_lambda(&r));
    assert_in_range(h, 36, 44);
    /* A market that changes: the deals now last 300 minutes; the past fades. */
    feed(&r, 4000, 300, 20);
    h = val_half_life_min(val_rate_lambda(&r));
    assert_in_range(h, 260, 340);
}

static void test_rate_is_finite_at_extremes(void **state)
{
    (void)state;
    struct val_rate r;
    val_rate_init(&r);
    for (int i = 0; i < 5000; i++)
        val_rate_observe(&r, false, 0); /* nothing ever vanished, no time passed */
    assert_true(val_rate_lambda(&r) > 0);
    assert_true(isfinite(val_rate_lambda(&r)));
    val_rate_init(&r);
    for (int i = 0; i < 5000; i++)
        val_rate_observe(&r, true, 0); /* everything vanished at once */
    assert_true(isfinite(val_rate_lambda(&r)));
    assert_true(val_survival(val_rate_lambda(&r), 1) < 0.01);
}

static void test_class_leans_on_all_until_it_has_its_own(void **state)
{
    (void)state;
    struct val_rate all, cls;
    val_rate_init(&all);
    val_rate_init(&cls);
    feed(&all, 3000, 100, 10);
    /* The class has only its prior: it follows the rate of all deals, mostly. */
    double l_all = val_rate_lambda(&all);
    double l = val_class_lambda(&cls, &all);
    assert_true(fabs(l - l_all) < fabs(val_rate_lambda(&cls) - l_all));
    /* With many observations of its own (a faster class) it stands on them. */
    feed(&cls, 3000, 20, 5);
    int64_t h = val_half_life_min(val_class_lambda(&cls, &all));
    assert_in_range(h, 18, 26);
}

static void test_classes_by_sales_rank(void **state)
{
    (void)state;
    assert_int_equal(val_class(1), 0);
    assert_int_equal(val_class(100000), 0);
    assert_int_equal(val_class(100001), 1);
    assert_int_equal(val_class(1000000), 1);
    assert_int_equal(val_class(1000001), 2);
    assert_int_equal(val_class(-1), 2);
    assert_int_equal(val_class(0), 2);
}

static void test_half_life_round_trip(void **state)
{
    (void)state;
    for (int64_t h = 1; h < 100000; h = h * 3 + 1)
        assert_int_equal(val_half_life_min(val_lambda_of_half_life(h)), h);
    assert_int_equal(val_half_life_min(0), INT32_MAX);
}

static void test_hit_rate_corrects_for_age(void **state)
{
    (void)state;
    struct val_conf c;
    val_conf_init(&c);
    assert_true(fabs(val_conf_hit(&c) - 0.5) < 1e-9);
    assert_true(fabs(val_conf_ratio(&c) - 1.0) < 1e-9);
    /* Peeks that are always right, fetched when half of such deals had vanished: half are
     * deals, and that is all the age allows, so the peek is trusted fully. */
    for (int i = 0; i < 4000; i++)
        val_conf_observe(&c, i % 2 == 0, 0.5, 1000, 1000);
    assert_true(val_conf_hit(&c) > 0.95);
    /* Peeks right one time in four on fresh survivors. */
    val_conf_init(&c);
    for (int i = 0; i < 4000; i++)
        val_conf_observe(&c, i % 4 == 0, 1.0, 1000, 1000);
    assert_true(fabs(val_conf_hit(&c) - 0.25) < 0.02);
}

static void test_profit_ratio_is_a_mean_over_deals(void **state)
{
    (void)state;
    struct val_conf c;
    val_conf_init(&c);
    /* The full fetch finds 60 % of the peek's profit on each deal, whatever its size;
     * rejections (no deal) do not enter the ratio. */
    for (int i = 0; i < 3000; i++) {
        int64_t peek = 500 + 100 * (i % 50);
        val_conf_observe(&c, true, 1.0, peek, peek * 6 / 10);
        val_conf_observe(&c, false, 1.0, peek, 0);
    }
    assert_true(fabs(val_conf_ratio(&c) - 0.6) < 0.02);
    /* Bounded both ways. */
    val_conf_init(&c);
    for (int i = 0; i < 3000; i++)
        val_conf_observe(&c, true, 1.0, 100, 100000);
    assert_true(val_conf_ratio(&c) <= 2.0);
    val_conf_init(&c);
    for (int i = 0; i < 3000; i++)
        val_conf_observe(&c, true, 1.0, 100, -50);
    assert_true(val_conf_ratio(&c) >= 0.1);
}

static void test_fetch_tokens_as_keepa_charges(void **state)
{
    (void)state;
    assert_int_equal(val_fetch_tokens(0, 20), 6);
    assert_int_equal(val_fetch_tokens(1, 20), 6);
    assert_int_equal(val_fetch_tokens(10, 20), 6);
    assert_int_equal(val_fetch_tokens(11, 20), 12);
    assert_int_equal(val_fetch_tokens(40, 20), 12); /* at most offers=20 are returned */
    assert_int_equal(val_fetch_tokens(40, 100), 24);
    assert_int_equal(val_fetch_tokens(-1, 20), 12); /* unknown: the most */
    assert_int_equal(val_fetch_tokens(-1, 100), 60);
}

/*
 * Prices that live exactly 360 Keepa minutes, their deals re-checked every 30: the table finds
 * no hazard before 360 and all of it at 360, so the span that carries an interval's worth of
 * hazard from age 100 reaches just past 360, where a flat table gives MASS / LAMBDA.
 */
static void test_age_finds_a_fixed_life(void **state)
{
    (void)state;
    struct val_age a;
    val_age_init(&a);
    double lambda = 0.005, mass = lambda * 30;
    /* Empty: every bin at the constant hazard. */
    assert_true(fabs(val_age_lambda(&a, 3, lambda) - lambda) < 1e-12);
    assert_true(fabs(val_age_span(&a, 100, mass, lambda, 1440) - 30) < 1e-9);
    for (int deal = 0; deal < 400; deal++) {
        double start = (deal * 7) % 330; /* found at ages 0..329 */
        for (double t = start; t < 360; t += 30) {
            double next = t + 30;
            if (next < 360)
                val_age_observe(&a, t, next, false, -1);
            else
                val_age_observe(&a, t, next, true, 360); /* the price changed at 360 */
        }
    }
    for (int b = 0; b < 360 / VAL_AGE_BIN_MIN; b++)
        assert_true(val_age_lambda(&a, b, lambda) < lambda / 5);
    assert_true(val_age_lambda(&a, 360 / VAL_AGE_BIN_MIN, lambda) > lambda * 10);
    double t = val_age_span(&a, 100, mass, lambda, 1440);
    assert_true(t > 260 && t < 261);
    /* At the most MAX. */
    assert_true(fabs(val_age_span(&a, 100, mass, lambda, 120) - 120) < 1e-9);
    /* Before any deal was seen at 360 or older, the span stops where the table's knowledge
     * ends, not MASS / LAMBDA into the unknown. */
    struct val_age young;
    val_age_init(&young);
    for (int deal = 0; deal < 400; deal++)
        for (double u = (deal * 7) % 330; u + 30 <= 360; u += 30)
            val_age_observe(&young, u, u + 30, false, -1);
    assert_true(fabs(val_age_span(&young, 100, mass, lambda, 1440) - 260) < 1e-9);
    /* Unknown vanish moment: halfway; reversed or negative ages are ignored. */
    struct val_age b;
    val_age_init(&b);
    val_age_observe(&b, 0, 60, true, -1);
    assert_true(b.vanished[1] == 1.0 && fabs(b.exposure_min[0] - 30) < 1e-9);
    val_age_observe(&b, 50, 40, false, -1);
    val_age_observe(&b, -5, 40, false, -1);
    assert_true(fabs(b.exposure_min[0] - 30) < 1e-9); /* untouched, not even faded */
    /* Ages beyond the table share its last bin. */
    val_age_observe(&b, 5000, 5100, false, -1);
    assert_true(fabs(b.exposure_min[VAL_AGE_BINS - 1] - 100) < 1e-9);
}

/*
 * What is learned survives a restart only when it is a state observing can reach: the prior
 * and any amount of observing read back as they were; a hostile state is refused whole.
 */
static void test_learned_state_read_back_only_when_reachable(void **state)
{
    (void)state;
    double n[VAL_RATE_NUMS];
    struct val_rate r, back;
    val_rate_init(&r);
    val_rate_pack(&r, n);
    assert_true(val_rate_unpack(n, &back));
    assert_memory_equal(&r, &back, sizeof(r));
    feed(&r, 5000, 40, 5);
    val_rate_observe(&r, false, 1e12); /* an absurd interval is credited VAL_ELAPSED_MAX_MIN */
    val_rate_observe(&r, true, 1e12);
    val_rate_pack(&r, n);
    assert_true(val_rate_unpack(n, &back));
    assert_memory_equal(&r, &back, sizeof(r));
    /* Refused, R untouched: what no observing makes. */
    const double bad_rate[][VAL_RATE_NUMS] = {{NAN, 100, 10},
                                              {1, INFINITY, 10},
                                              {-1, 100, 10},
                                              {1, -1, 10},
                                              {1, 100, 0},
                                              {1, 100, 0.5},
                                              {1, 100, 1e6},
                                              {11, 100, 10},
                                              {1, 1e9, 10.0},
                                              {1, 100, NAN},
                                              {1, 100, VAL_WEIGHT_MAX * 1.01}};
    for (size_t i = 0; i < sizeof(bad_rate) / sizeof(bad_rate[0]); i++) {
        back = r;
        if (val_rate_unpack(bad_rate[i], &back))
            fail_msg("rate case %zu taken", i);
        assert_memory_equal(&r, &back, sizeof(r));
    }

    double c[VAL_CONF_NUMS];
    struct val_conf conf, cback;
    val_conf_init(&conf);
    for (int i = 0; i < 3000; i++)
        val_conf_observe(&conf, i % 3 == 0, 0.9, 1000, i % 2 ? 9000 : 500);
    val_conf_pack(&conf, c);
    assert_true(val_conf_unpack(c, &cback));
    assert_memory_equal(&conf, &cback, sizeof(conf));
    const double bad_conf[][VAL_CONF_NUMS] = {
        {NAN, 1, 1, 1}, {1, -1, 1, 1}, {1, 1, 5, 1}, {1e4, 1, 1, 1}, {1, 1, 1, INFINITY}};
    for (size_t i = 0; i < sizeof(bad_conf) / sizeof(bad_conf[0]); i++) {
        cback = conf;
        if (val_conf_unpack(bad_conf[i], &cback))
            fail_msg("confidence case %zu taken", i);
        assert_memory_equal(&conf, &cback, sizeof(conf));
    }

    static struct val_age a, bad;
    val_age_init(&a);
    assert_true(val_age_valid(&a));
    for (int i = 0; i < 20000; i++)
        val_age_observe(&a, (i % 50) * 30.0, (i % 50) * 30.0 + (i % 7 == 0 ? 1e12 : 45), i % 3 == 0,
                        -1);
    assert_true(val_age_valid(&a));
    bad = a;
    bad.vanished[3] = NAN;
    assert_false(val_age_valid(&bad));
    bad = a;
    bad.exposure_min[0] = -1;
    assert_false(val_age_valid(&bad));
    bad = a;
    bad.exposure_min[1] = VAL_AGE_BIN_MIN / VAL_AGE_DECAY * 2; /* more than a bin can hold */
    assert_false(val_age_valid(&bad));
    bad = a;
    for (int b = 0; b < VAL_AGE_BINS; b++)
        bad.vanished[b] = 1.0 / VAL_AGE_DECAY / 2; /* each within bounds, the sum not */
    assert_false(val_age_valid(&bad));
}

static void test_rules_from_the_config(void **state)
{
    (void)state;
    struct cfg c;
    cfg_defaults(&c);
    /* Every rule but drop, which is off by default (docs/architecture.md). */
    unsigned defaults = VAL_RULE_ORDER | VAL_RULE_PRESCORE | VAL_RULE_FEES | VAL_RULE_RECHECK |
                        VAL_RULE_GONE | VAL_RULE_BUSY | VAL_RULE_FRESH | VAL_RULE_PROBE |
                        VAL_RULE_CADENCE | VAL_RULE_LOWFEES | VAL_RULE_FINAL | VAL_RULE_AGE |
                        VAL_RULE_DELTA | VAL_RULE_FIRST | VAL_RULE_PEEKRATE | VAL_RULE_LANE |
                        VAL_RULE_BUDGET;
    assert_int_equal(val_rules(&c), defaults);
    snprintf(c.tokens_value_rules, sizeof(c.tokens_value_rules), "none");
    assert_int_equal(val_rules(&c), 0);
    snprintf(c.tokens_value_rules, sizeof(c.tokens_value_rules), "order, gone");
    assert_int_equal(val_rules(&c), VAL_RULE_ORDER | VAL_RULE_GONE);
    snprintf(c.tokens_value_rules, sizeof(c.tokens_value_rules), "busy,recheck,prescore,drop");
    assert_int_equal(val_rules(&c),
                     VAL_RULE_BUSY | VAL_RULE_RECHECK | VAL_RULE_PRESCORE | VAL_RULE_DROP);
    snprintf(c.tokens_value_rules, sizeof(c.tokens_value_rules), "fees, fresh");
    assert_int_equal(val_rules(&c), VAL_RULE_FEES | VAL_RULE_FRESH);
    snprintf(c.tokens_value_rules, sizeof(c.tokens_value_rules), "recheck, budget");
    assert_int_equal(val_rules(&c), VAL_RULE_RECHECK | VAL_RULE_BUDGET);
    snprintf(c.tokens_value_rules, sizeof(c.tokens_value_rules), "probe, cadence");
    assert_int_equal(val_rules(&c), VAL_RULE_PROBE | VAL_RULE_CADENCE);
    snprintf(c.tokens_value_rules, sizeof(c.tokens_value_rules), "cadence, lowfees");
    assert_int_equal(val_rules(&c), VAL_RULE_CADENCE | VAL_RULE_LOWFEES);
    snprintf(c.tokens_value_rules, sizeof(c.tokens_value_rules), "lowfees, final");
    assert_int_equal(val_rules(&c), VAL_RULE_LOWFEES | VAL_RULE_FINAL);
    snprintf(c.tokens_value_rules, sizeof(c.tokens_value_rules), "final, age");
    assert_int_equal(val_rules(&c), VAL_RULE_FINAL | VAL_RULE_AGE);
    snprintf(c.tokens_value_rules, sizeof(c.tokens_value_rules), "fresh, delta");
    assert_int_equal(val_rules(&c), VAL_RULE_FRESH | VAL_RULE_DELTA);
    snprintf(c.tokens_value_rules, sizeof(c.tokens_value_rules), "age, first");
    assert_int_equal(val_rules(&c), VAL_RULE_AGE | VAL_RULE_FIRST);
    snprintf(c.tokens_value_rules, sizeof(c.tokens_value_rules), "lowfees, peekrate");
    assert_int_equal(val_rules(&c), VAL_RULE_LOWFEES | VAL_RULE_PEEKRATE);
    snprintf(c.tokens_value_rules, sizeof(c.tokens_value_rules), "delta, lane");
    assert_int_equal(val_rules(&c), VAL_RULE_DELTA | VAL_RULE_LANE);
    /* Every rule at once: more than 16 of them. */
    snprintf(c.tokens_value_rules, sizeof(c.tokens_value_rules),
             "order, drop, prescore, recheck, gone, busy, fees, fresh, budget, probe, cadence, "
             "lowfees, final, age, delta, first, peekrate, lane");
    assert_int_equal(val_rules(&c), (VAL_RULE_LANE << 1) - 1);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_prior_before_any_observation),
        cmocka_unit_test(test_rate_learns_the_observed_half_life),
        cmocka_unit_test(test_rate_is_finite_at_extremes),
        cmocka_unit_test(test_class_leans_on_all_until_it_has_its_own),
        cmocka_unit_test(test_classes_by_sales_rank),
        cmocka_unit_test(test_half_life_round_trip),
        cmocka_unit_test(test_hit_rate_corrects_for_age),
        cmocka_unit_test(test_profit_ratio_is_a_mean_over_deals),
        cmocka_unit_test(test_fetch_tokens_as_keepa_charges),
        cmocka_unit_test(test_age_finds_a_fixed_life),
        cmocka_unit_test(test_learned_state_read_back_only_when_reachable),
        cmocka_unit_test(test_rules_from_the_config),
    };
    return KD_RUN_TESTS(tests, argc, argv);
}
