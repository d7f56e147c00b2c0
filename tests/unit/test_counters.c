/*
 * test_counters.c: the counter list, per-role blocks, gauges and log2 histograms.
 */
#include <stdlib.h>
#include <string.h>

#include "kd_test.h"
#include "shm/counters.h"

static struct shm_layout *new_layout(void)
{
    struct shm_layout *l = aligned_alloc(64, sizeof(*l));
    assert_non_null(l);
    memset(l, 0, sizeof(*l));
    return l;
}

static void test_meta_is_complete_and_unique(void **state)
{
    (void)state;
    for (int i = 0; i < SHM_COUNTER_COUNT; i++) {
        assert_non_null(shm_counter_meta[i].name);
        assert_true(strlen(shm_counter_meta[i].help) > 10);
        for (int j = i + 1; j < SHM_COUNTER_COUNT; j++)
            assert_string_not_equal(shm_counter_meta[i].name, shm_counter_meta[j].name);
        assert_int_equal(shm_counter_find(shm_counter_meta[i].name), i);
    }
    assert_int_equal(shm_counter_find("no_such_counter"), -1);
    /* The counters the operator surface promises exist. */
    const char *required[] = {"tokens_spent",    "tokens_projected", "refill_rate",
                              "asins_peeked",    "survivors",        "deals_committed",
                              "deals_refreshed", "deals_expired",    "http_requests",
                              "http_429",        "http_errors",      "token_wait_ns"};
    for (size_t i = 0; i < sizeof(required) / sizeof(required[0]); i++)
        assert_true(shm_counter_find(required[i]) >= 0);
    assert_int_equal(shm_counter_meta[SHM_C_http_latency_ms].kind, SHM_HISTOGRAM);
    assert_int_equal(shm_counter_meta[SHM_C_tokens_projected].kind, SHM_GAUGE);
    assert_int_equal(shm_counter_meta[SHM_C_http_requests].kind, SHM_COUNTER);
}

static void test_blocks_are_per_role_and_summed(void **state)
{
    (void)state;
    struct shm_layout *l = new_layout();
    shm_counter_add(&l->counters[SHM_ROLE_SCANNER], SHM_C_http_requests, 3);
    shm_counter_add(&l->counters[SHM_ROLE_COMMITTER], SHM_C_http_requests, 4);
    shm_counter_add(&l->counters[SHM_ROLE_COMMITTER], SHM_C_http_requests, 1);
    assert_int_equal(shm_counter_get(&l->counters[SHM_ROLE_SCANNER], SHM_C_http_requests), 3);
    assert_int_equal(shm_counter_get(&l->counters[SHM_ROLE_COMMITTER], SHM_C_http_requests), 5);
    assert_int_equal(shm_counter_total(l, SHM_C_http_requests), 8);

    shm_gauge_set(&l->counters[SHM_ROLE_SCANNER], SHM_C_tokens_projected, -231);
    assert_int_equal(shm_counter_get(&l->counters[SHM_ROLE_SCANNER], SHM_C_tokens_projected), -231);

    /* A gauge every worker publishes (the shared bucket's refill rate) is its level, not the
     * sum over the workers: 5, not 15; a role that never set it does not count. */
    for (int r = SHM_ROLE_SCANNER; r <= SHM_ROLE_UPDATER; r++)
        shm_gauge_set(&l->counters[r], SHM_C_refill_rate, 5);
    assert_int_equal(shm_counter_value(l, SHM_C_refill_rate), 5);
    shm_gauge_set(&l->counters[SHM_ROLE_COMMITTER], SHM_C_tokens_projected, -240);
    assert_int_equal(shm_counter_value(l, SHM_C_tokens_projected), -231);
    assert_int_equal(shm_counter_value(l, SHM_C_commit_backlog), 0);
    assert_int_equal(shm_counter_value(l, SHM_C_http_requests), 8);
    free(l);
}

static void test_histogram_buckets(void **state)
{
    (void)state;
    assert_int_equal(shm_hist_bucket(0), 0);
    assert_int_equal(shm_hist_bucket(1), 1);
    assert_int_equal(shm_hist_bucket(2), 2);
    assert_int_equal(shm_hist_bucket(3), 2);
    assert_int_equal(shm_hist_bucket(4), 3);
    assert_int_equal(shm_hist_bucket(1023), 10);
    assert_int_equal(shm_hist_bucket(1024), 11);
    assert_int_equal(shm_hist_bucket(UINT64_MAX), SHM_HIST_BUCKETS - 1);

    struct shm_layout *l = new_layout();
    assert_int_equal(shm_hist_quantile(l, SHM_C_http_latency_ms, 0.5), 0);
    for (uint64_t v = 1; v <= 100; v++)
        shm_hist_record(&l->counters[SHM_ROLE_UPDATER], SHM_C_http_latency_ms, v);
    const struct shm_histogram *h = &l->counters[SHM_ROLE_UPDATER].hist[SHM_C_http_latency_ms];
    assert_int_equal(h->count, 100);
    assert_int_equal(h->sum, 5050);
    /* Median 50 lies in [32, 64): reported as the bucket's upper bound. */
    assert_int_equal(shm_hist_quantile(l, SHM_C_http_latency_ms, 0.5), 63);
    assert_int_equal(shm_hist_quantile(l, SHM_C_http_latency_ms, 1.0), 127);
    assert_int_equal(shm_hist_quantile(l, SHM_C_http_latency_ms, 0.0), 1);
    free(l);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_meta_is_complete_and_unique),
        cmocka_unit_test(test_blocks_are_per_role_and_summed),
        cmocka_unit_test(test_histogram_buckets),
    };
    return KD_RUN_TESTS(tests, argc, argv);
}
