/*
 * test_scan_sources.c: the dear list sources ([scan] source = lightning, bestsellers) in the
 * real daemon against the real kdeals-sim (its /lightningdeal and /bestsellers, sim/README.md),
 * with an accelerated Keepa minute. What a seller relies on:
 *
 *   lightning    one 500-token list per pass; the deals running or starting within
 *                lightning_soon are peeked, the others ruled out for free; survivors are
 *                committed and stored with source "lightning"; a second pass does not pay
 *                for the same deals again (dedup on `seen`);
 *   bestsellers  one 50-token list per category per pass (a category Keepa has no list for
 *                costs 0 and is passed), every ASIN peeked once across passes, commits stored
 *                with source "bestsellers"; a reload of bestseller_categories walks the new
 *                lists;
 *   failures     a 429 storm and HTTP 500s on the list request: retried through the bucket,
 *                each list paid exactly once, the pass not ended by them;
 *   restart      a daemon stopped in the middle of a list walks on through it when started
 *                again: the store kept the list, it is not bought twice;
 *   small plan   the 500-token list on a plan of 5 a minute (a bucket of 300,
 *                docs/failure-modes.md F3/F4): with the default deficit bound (60) it is never
 *                sent, the scanner says why, and nothing else stops; with a bound of 240 it is
 *                fetched pass after pass, no 429, the balance never below -240.
 *
 * Each end-to-end test prints a MEASURE line: lists, peeks, commits and deals stored, with
 * their tokens, and how many of the peeked products the simulator's truth calls deals now.
 */
#include "kd_harness.h"
#include "kd_test.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shm/counters.h"
#include "store/store.h"

#define KEY       "ScanSourcesKey0123456789abcdef"
#define MINUTE_MS 100

/* ---- the daemon's log ---- */

/* Occurrences of NEEDLE in D's log. */
static int log_count(const struct kdh_daemon *d, const char *needle)
{
    char *text = kd_read_file(d->log, NULL);
    if (text == NULL)
        return 0;
    int n = 0;
    for (const char *p = strstr(text, needle); p != NULL; p = strstr(p + 1, needle))
        n++;
    free(text);
    return n;
}

/* Lines of D's log that hold both NEEDLE and ALSO. */
static int log_lines(const struct kdh_daemon *d, const char *needle, const char *also)
{
    char *text = kd_read_file(d->log, NULL);
    if (text == NULL)
        return 0;
    int n = 0;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save))
        n += strstr(line, needle) != NULL && strstr(line, also) != NULL;
    free(text);
    return n;
}

/* From the line "pass P done: ..., N peeked": N, or -1 when that pass has not ended. */
static long long pass_peeked(const struct kdh_daemon *d, int pass)
{
    char *text = kd_read_file(d->log, NULL);
    if (text == NULL)
        return -1;
    char needle[32];
    snprintf(needle, sizeof(needle), "pass %d done: ", pass);
    const char *p = strstr(text, needle);
    long long pages = 0, found = 0, peeked = -1;
    if (p != NULL && sscanf(p + strlen(needle), "%lld pages, %lld asins discovered, %lld peeked",
                            &pages, &found, &peeked) != 3)
        peeked = -1;
    free(text);
    return peeked;
}

/* ---- the store ---- */

struct store_view {
    unsigned records, deals, by_source[8];
    unsigned seen;
    char seen_asins[4096][ST_ASIN_LEN + 1];
};

static void read_store(const struct kdh_daemon *d, struct store_view *v)
{
    memset(v, 0, sizeof(*v));
    struct st_options so = {
        .path = d->store, .map_size_bytes = 1u << 20, .max_map_size_bytes = 1ull << 30};
    struct st_env *env;
    char err[256];
    if (st_open_existing(&so, &env, err, sizeof(err)) != 0)
        fail_msg("store %s: %s", d->store, err);
    struct st_txn *txn;
    assert_int_equal(st_read_begin(env, &txn), 0);
    struct st_cursor *cur;
    assert_int_equal(st_cursor_open(txn, ST_DB_PRODUCTS, &cur), 0);
    struct st_record *r = malloc(sizeof(*r));
    assert_non_null(r);
    while (st_cursor_next_record(cur, r) == 0) {
        v->records++;
        v->deals += r->state == ST_STATE_DEAL;
        if (r->source < 8)
            v->by_source[r->source]++;
    }
    free(r);
    st_cursor_close(cur);
    assert_int_equal(st_cursor_open(txn, ST_DB_SEEN, &cur), 0);
    struct st_key key;
    struct st_seen seen;
    while (st_cursor_next_seen(cur, &key, &seen) == 0) {
        if (v->seen < 4096) {
            memcpy(v->seen_asins[v->seen], key.b + 1, ST_ASIN_LEN);
            v->seen_asins[v->seen][ST_ASIN_LEN] = '\0';
        }
        v->seen++;
    }
    st_cursor_close(cur);
    st_read_end(txn);
    st_close(env);
}

/* How many of the first N ASINs the simulator's truth calls deals now (judged under the
 * rules these tests run with: KDH_JUDGEMENT). */
static unsigned truth_deals(const struct kdh_sim *sim, char (*asins)[ST_ASIN_LEN + 1], unsigned n)
{
    unsigned deals = 0;
    for (unsigned i = 0; i < n;) {
        char path[16384];
        int len = snprintf(path, sizeof(path),
                           "/_sim/truth?basis_new=avg90,avg365&basis_used=avg90,avg365&"
                           "cap_at_buy_box=0&asin=");
        unsigned k = 0;
        for (; i < n && k < 500; i++, k++)
            len += snprintf(path + len, sizeof(path) - (size_t)len, "%s%s", k ? "," : "", asins[i]);
        yajl_val v = kdh_sim_get(sim, path);
        const char *pp[] = {"products", NULL};
        yajl_val arr = yajl_tree_get(v, pp, yajl_t_array);
        assert_non_null(arr);
        for (size_t j = 0; j < arr->u.array.len; j++) {
            const char *dp[] = {"deal", NULL};
            yajl_val deal = yajl_tree_get(arr->u.array.values[j], dp, yajl_t_any);
            deals += deal != NULL && YAJL_IS_TRUE(deal);
        }
        yajl_tree_free(v);
    }
    return deals;
}

/* The funnel of one run, from the simulator's ledger and the daemon's counters and store. */
static void measure(const char *what, const struct kdh_sim *sim, const struct kdh_daemon *d,
                    const char *list_endpoint)
{
    struct shm_segment seg;
    kdh_daemon_attach(d, &seg);
    int64_t peeked = shm_counter_total(seg.layout, SHM_C_asins_peeked);
    int64_t survivors = shm_counter_total(seg.layout, SHM_C_survivors);
    int64_t discovered = shm_counter_total(seg.layout, SHM_C_asins_discovered);
    int64_t prefiltered = shm_counter_total(seg.layout, SHM_C_asins_prefiltered);
    shm_segment_detach(&seg);
    struct store_view *v = malloc(sizeof(*v));
    assert_non_null(v);
    read_store(d, v);
    unsigned true_now = truth_deals(sim, v->seen_asins, v->seen < 4096 ? v->seen : 4096);
    printf("MEASURE %s: %lld lists (%lld tokens), %lld entries, %lld ruled out for free "
           "(pre-filter, dedup), "
           "%lld peeked, %lld survivors, %" PRId64 " /product tokens, %u records, %u deals "
           "stored, peeks per deal %.1f, tokens per deal %.1f; %u of %u peeked products are "
           "deals now by the simulator's truth\n",
           what, (long long)kdh_sim_stat(sim, "endpoints", list_endpoint, "requests", NULL),
           (long long)kdh_sim_stat(sim, "endpoints", list_endpoint, "tokens", NULL),
           (long long)discovered, (long long)prefiltered, (long long)peeked, (long long)survivors,
           kdh_sim_stat(sim, "endpoints", "product", "tokens", NULL), v->records, v->deals,
           v->deals ? (double)peeked / v->deals : 0.0,
           v->deals ? (double)kdh_sim_stat(sim, "tokens_consumed", NULL) / v->deals : 0.0, true_now,
           v->seen);
    free(v);
}

/* ---- tests ---- */

/*
 * Lightning deals end to end: one list per pass, the candidates peeked, the survivors
 * committed as "lightning" records, and the second pass pays for no deal already peeked.
 */
static void test_lightning_discovers_peeks_commits(void **state)
{
    (void)state;
    static const char *const args[] = {"--keys",        KEY,   "--seed", "3", "--minute-ms", "100",
                                       "--refill-rate", "600", NULL};
    struct kdh_sim sim;
    kdh_sim_start(&sim, args);
    struct kdh_daemon d;
    kdh_daemon_config(&d, &sim, KEY, MINUTE_MS,
                      "[scan]\nsource = lightning\nlightning_soon = 1h\npass_pause = 2s\n");
    kdh_daemon_start(&d);
    assert_true(KDH_WAIT_FOR(pass_peeked(&d, 1) >= 0, 90));
    /* One list per pass, charged its 500 tokens once. */
    int64_t lists = kdh_sim_stat(&sim, "endpoints", "lightningdeal", "requests", NULL);
    assert_true(lists >= 2);
    assert_int_equal(kdh_sim_stat(&sim, "endpoints", "lightningdeal", "tokens", NULL), 500 * lists);
    assert_true(log_count(&d, "the lightning list: ") >= 2);
    assert_true(log_count(&d, "ruled out for free") >= 1); /* later and sold-out deals */
    long long first = pass_peeked(&d, 0), second = pass_peeked(&d, 1);
    printf("lightning: pass 0 peeked %lld, pass 1 peeked %lld\n", first, second);
    assert_true(first > 0);
    /* Dedup: the second pass peeks only deals it had not seen (new, or gone live). */
    assert_true(second < first);
    assert_true(log_count(&d, "peeked recently and unchanged") >= 1);
    /* Survivors reach the committer and are stored as lightning finds. */
    struct store_view *v = malloc(sizeof(*v));
    assert_non_null(v);
    assert_true(KDH_WAIT_FOR((read_store(&d, v), v->by_source[ST_SOURCE_LIGHTNING] > 0), 60));
    assert_int_equal(v->records, v->by_source[ST_SOURCE_LIGHTNING]);
    free(v);
    measure("lightning (rich economy)", &sim, &d, "lightningdeal");
    kdh_check_store(&d, NULL);
    assert_int_equal(kdh_daemon_stop(&d), 0);
    kdh_sim_stop(&sim);
}

/* The same in the calibrated economy, for the funnel's honest figures (no assertion on them). */
static void test_lightning_calibrated_funnel(void **state)
{
    (void)state;
    static const char *const args[] = {"--keys",
                                       KEY,
                                       "--seed",
                                       "5",
                                       "--minute-ms",
                                       "100",
                                       "--refill-rate",
                                       "600",
                                       "--economy=calibrated",
                                       NULL};
    struct kdh_sim sim;
    kdh_sim_start(&sim, args);
    struct kdh_daemon d;
    kdh_daemon_config(&d, &sim, KEY, MINUTE_MS,
                      "[scan]\nsource = lightning\nlightning_soon = 1h\npass_pause = 2s\n");
    kdh_daemon_start(&d);
    assert_true(KDH_WAIT_FOR(pass_peeked(&d, 2) >= 0, 120));
    assert_true(KDH_WAIT_FOR(kdh_pending_keys(&d, NULL, 0) == 0, 60));
    measure("lightning (calibrated economy)", &sim, &d, "lightningdeal");
    kdh_check_store(&d, NULL);
    assert_int_equal(kdh_daemon_stop(&d), 0);
    kdh_sim_stop(&sim);
}

/*
 * Best sellers end to end: each configured category's list once per pass (an unknown one
 * costs nothing and is passed), every ASIN peeked once across passes (the 180-day ranking
 * barely moves), "bestsellers" records; then a reload of the categories walks the new lists.
 */
static void test_bestsellers_discovers_dedups_reloads(void **state)
{
    (void)state;
    static const char *const args[] = {
        "--keys",        KEY,   "--seed",     "3",    "--minute-ms", "100",
        "--refill-rate", "600", "--products", "3000", NULL};
    struct kdh_sim sim;
    kdh_sim_start(&sim, args);
    struct kdh_daemon d;
    /* Home & Kitchen (a root: every product of it with a rank, 308 in this catalog), Books'
     * first sub-category (its best 100), and an id Keepa does not know. */
    kdh_daemon_config(&d, &sim, KEY, MINUTE_MS,
                      "[scan]\nsource = bestsellers\nbestseller_categories = 1055398, "
                      "2831551, 999999\nbestseller_range = 180\npass_pause = 1s\n");
    kdh_daemon_start(&d);
    assert_true(KDH_WAIT_FOR(pass_peeked(&d, 1) >= 0, 90));
    assert_true(log_count(&d, "best sellers of category 1055398 (range 180): ") >= 2);
    assert_true(log_count(&d, "best sellers of category 2831551 (range 180): ") >= 2);
    assert_true(log_count(&d, "Keepa has no best-seller list for it") >= 2);
    int64_t lists = kdh_sim_stat(&sim, "endpoints", "bestsellers", "requests", NULL);
    assert_true(lists >= 6);
    /* 50 for each list found, 0 for the unknown category (walked last in each pass). */
    int64_t found = lists / 3 * 2 + (lists % 3 > 0) + (lists % 3 > 1);
    assert_int_equal(kdh_sim_stat(&sim, "endpoints", "bestsellers", "tokens", NULL), 50 * found);
    long long first = pass_peeked(&d, 0), second = pass_peeked(&d, 1);
    printf("bestsellers: pass 0 peeked %lld, pass 1 peeked %lld\n", first, second);
    assert_true(first >= 300);
    assert_true(second * 10 <= first); /* dedup across passes */
    struct store_view *v = malloc(sizeof(*v));
    assert_non_null(v);
    assert_true(KDH_WAIT_FOR((read_store(&d, v), v->by_source[ST_SOURCE_BESTSELLERS] > 0), 60));
    assert_int_equal(v->records, v->by_source[ST_SOURCE_BESTSELLERS]);
    assert_true(v->seen <= 308 + 100); /* at most the two lists' ASINs */
    free(v);
    measure("bestsellers (rich economy)", &sim, &d, "bestsellers");

    /* A reload of the list: Home & Kitchen's first sub-category, by the current rank. */
    kdh_daemon_rewrite(&d, &sim, KEY, MINUTE_MS,
                       "[scan]\nsource = bestsellers\nbestseller_categories = 10553981\n"
                       "bestseller_range = 0\npass_pause = 1s\n");
    char *out = NULL;
    const char *const reload[] = {"reload", NULL};
    assert_int_equal(kdh_cli(&d, reload, 60, &out), 0);
    free(out);
    assert_true(KDH_WAIT_FOR(log_count(&d, "the best-seller lists changed") == 1, 30));
    assert_true(
        KDH_WAIT_FOR(log_count(&d, "best sellers of category 10553981 (range 0): ") >= 1, 60));
    kdh_check_store(&d, NULL);
    assert_int_equal(kdh_daemon_stop(&d), 0);
    kdh_sim_stop(&sim);
}

/*
 * A 429 storm on the list request is waited out through the bucket (never read as "no deals",
 * docs/failure-modes.md F9); HTTP 500s are retried with backoff and the pass stays where it is
 * (F10). Each list that arrived was paid once: 500 tokens per list, never twice.
 */
static void test_list_request_429_storm_and_500s(void **state)
{
    (void)state;
    static const char *const args[] = {"--keys",        KEY,   "--seed",   "3",
                                       "--minute-ms",   "100", "--faults", "storm429=4",
                                       "--refill-rate", "600", NULL};
    struct kdh_sim sim;
    kdh_sim_start(&sim, args);
    struct kdh_daemon d;
    kdh_daemon_config(&d, &sim, KEY, MINUTE_MS, "[scan]\nsource = lightning\npass_pause = 3s\n");
    kdh_daemon_start(&d);
    assert_true(KDH_WAIT_FOR(log_count(&d, "the lightning list: ") == 1, 60));
    assert_int_equal(kdh_sim_stat(&sim, "http_429", NULL), 4);
    assert_int_equal(kdh_sim_stat(&sim, "endpoints", "lightningdeal", "requests", NULL), 5);
    assert_int_equal(kdh_sim_stat(&sim, "endpoints", "lightningdeal", "tokens", NULL), 500);
    assert_true(KDH_WAIT_FOR(pass_peeked(&d, 0) >= 0, 60));

    /* Every list request fails with a 500 now: retried, the next pass never ends. */
    yajl_tree_free(kdh_sim_post(&sim, "/_sim/faults?spec=http500=1"));
    assert_true(KDH_WAIT_FOR(log_count(&d, "the lightning list failed") >= 3, 60));
    assert_int_equal(pass_peeked(&d, 1), -1);
    int64_t tried = kdh_sim_stat(&sim, "endpoints", "lightningdeal", "requests", NULL);
    assert_true(tried >= 5 + 3);
    assert_int_equal(kdh_sim_stat(&sim, "endpoints", "lightningdeal", "tokens", NULL), 500);
    /* One attempt per grant: the client did not resend on its own (test_kp_client has the
     * unit-level check); every request the simulator saw is either a failure the scanner saw
     * or a retry the spending policy made with a grant of its own (docs/architecture.md,
     * "Tokens"). Counted once the attempt in flight, if any, has been answered and logged. */
    assert_true(
        KDH_WAIT_FOR(kdh_sim_stat(&sim, "endpoints", "lightningdeal", "requests", NULL) - 5 ==
                         log_count(&d, "the lightning list failed") +
                             log_lines(&d, "/lightningdeal", "with a grant of its own"),
                     20));

    yajl_tree_free(kdh_sim_post(&sim, "/_sim/faults?spec=clear"));
    assert_true(KDH_WAIT_FOR(pass_peeked(&d, 1) >= 0, 90));
    assert_int_equal(kdh_sim_stat(&sim, "endpoints", "lightningdeal", "tokens", NULL), 1000);
    kdh_check_store(&d, NULL);
    assert_int_equal(kdh_daemon_stop(&d), 0);
    kdh_sim_stop(&sim);
}

/* Polls the simulator's balance every 20 ms for SECONDS or until COND; keeps the lowest. */
#define SAMPLE_UNTIL(cond, seconds, lowest)                                                        \
    ({                                                                                             \
        int ok_ = 0;                                                                               \
        for (long i_ = 0; i_ < (long)(seconds)*50; i_++) {                                         \
            int64_t b_ = kdh_sim_stat(&sim, "tokens_left", NULL);                                  \
            if (b_ < (lowest))                                                                     \
                (lowest) = b_;                                                                     \
            if (cond) {                                                                            \
                ok_ = 1;                                                                           \
                break;                                                                             \
            }                                                                                      \
            kdh_nap_ms(20);                                                                        \
        }                                                                                          \
        ok_;                                                                                       \
    })

/*
 * docs/failure-modes.md F3/F4 for the dearest request: the 500-token lightning list on a plan of
 * 5 a minute (a bucket of 300). With the default bound of 60 no grant can pay it within the
 * bound: it is never sent, the scanner's status says which key to change, no 429, and the
 * balance never goes below -60. With a bound of 240 it is granted from a balance of 260: lists
 * keep coming pass after pass (no 429 livelock) and the balance never goes below -240.
 */
static void test_lightning_on_a_5_per_minute_plan(void **state)
{
    (void)state;
    static const char *const args[] = {"--keys",        KEY, "--seed", "3", "--minute-ms", "100",
                                       "--refill-rate", "5", NULL};
    struct kdh_sim sim;
    kdh_sim_start(&sim, args);
    struct kdh_daemon d;
    kdh_daemon_config(&d, &sim, KEY, MINUTE_MS, "[scan]\nsource = lightning\npass_pause = 1s\n");
    kdh_daemon_start(&d);
    int64_t lowest = INT64_MAX;
    assert_true(SAMPLE_UNTIL(log_count(&d, "not sent: it costs 500 tokens") >= 1, 30, lowest));
    struct shm_segment seg;
    kdh_daemon_attach(&d, &seg);
    assert_non_null(strstr(seg.layout->procs[SHM_ROLE_SCANNER].last_error, "max_deficit"));
    shm_segment_detach(&seg);
    SAMPLE_UNTIL(0, 3, lowest); /* a while longer: still nothing sent */
    assert_int_equal(kdh_sim_stat(&sim, "endpoints", "lightningdeal", "requests", NULL), 0);
    assert_int_equal(kdh_sim_stat(&sim, "http_429", NULL), 0);
    assert_true(lowest >= -60);
    assert_int_equal(log_count(&d, "not sent: it costs 500 tokens"), 1); /* said once */
    assert_int_equal(kdh_daemon_stop(&d), 0);

    /* The bound that pays it: 500 - 300 = 200, and a little room. */
    kdh_daemon_rewrite(&d, &sim, KEY, MINUTE_MS,
                       "[tokens]\nmax_deficit = 240\n[scan]\nsource = lightning\npass_pause = "
                       "1s\n");
    kdh_daemon_start(&d);
    lowest = INT64_MAX;
    assert_true(SAMPLE_UNTIL(
        kdh_sim_stat(&sim, "endpoints", "lightningdeal", "requests", NULL) >= 3, 120, lowest));
    printf("5/min plan, max_deficit 240: 3 lists, lowest balance %lld, 429s %lld\n",
           (long long)lowest, (long long)kdh_sim_stat(&sim, "http_429", NULL));
    assert_true(lowest >= -240);
    assert_true(lowest < -60); /* the list did take the balance into the deficit it allows */
    assert_int_equal(kdh_sim_stat(&sim, "http_429", NULL), 0);
    assert_int_equal(kdh_sim_stat(&sim, "endpoints", "lightningdeal", "tokens", NULL),
                     500 * kdh_sim_stat(&sim, "endpoints", "lightningdeal", "requests", NULL));
    assert_true(pass_peeked(&d, 1) >= 0); /* passes end: peeks are not starved either */
    kdh_check_store(&d, NULL);
    assert_int_equal(kdh_daemon_stop(&d), 0);
    kdh_sim_stop(&sim);
}

/*
 * A restart in the middle of a list walks on through the list it paid for: the store kept it,
 * nothing is bought twice, and the pass ends on the one list. Slow refill (10 a second) so the
 * walk is still on the list when the daemon is stopped.
 */
static void test_list_kept_across_a_restart(void **state)
{
    (void)state;
    static const char *const args[] = {
        "--keys",        KEY,  "--seed",         "3",   "--minute-ms", "1000",
        "--refill-rate", "10", "--start-tokens", "520", NULL};
    struct kdh_sim sim;
    kdh_sim_start(&sim, args);
    struct kdh_daemon d;
    const char *conf = "[scan]\nsource = lightning\nlightning_soon = 1h\npass_pause = 2s\n";
    kdh_daemon_config(&d, &sim, KEY, 1000, conf);
    kdh_daemon_start(&d);
    if (!KDH_WAIT_FOR(log_count(&d, "the lightning list: ") >= 1, 60))
        fail_msg("no lightning list in 60 s (see %s)", d.log);
    assert_int_equal(kdh_daemon_stop(&d), 0);
    if (pass_peeked(&d, 0) >= 0)
        fail_msg("the walk of the list ended before the stop: nothing to resume (see %s)", d.log);
    assert_int_equal(kdh_sim_stat(&sim, "endpoints", "lightningdeal", "requests", NULL), 1);

    kdh_daemon_start(&d);
    if (!KDH_WAIT_FOR(pass_peeked(&d, 0) >= 0, 120))
        fail_msg("pass 0 did not end after the restart (see %s)", d.log);
    int64_t lists = kdh_sim_stat(&sim, "endpoints", "lightningdeal", "requests", NULL);
    printf("    restarted in the list's walk: %d kept from before the restart, %lld list(s) "
           "bought for pass 0, %lld peeked in it\n",
           log_count(&d, "kept from before the restart"), (long long)lists,
           (long long)pass_peeked(&d, 0));
    assert_int_equal(log_count(&d, "kept from before the restart"), 1);
    assert_int_equal(lists, 1);
    assert_int_equal(kdh_sim_stat(&sim, "http_429", NULL), 0);
    kdh_check_store(&d, NULL);
    assert_int_equal(kdh_daemon_stop(&d), 0);
    kdh_sim_stop(&sim);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lightning_discovers_peeks_commits),
        cmocka_unit_test(test_lightning_calibrated_funnel),
        cmocka_unit_test(test_bestsellers_discovers_dedups_reloads),
        cmocka_unit_test(test_list_request_429_storm_and_500s),
        cmocka_unit_test(test_lightning_on_a_5_per_minute_plan),
        cmocka_unit_test(test_list_kept_across_a_restart),
    };
    kd_test_set_timeout(180); /* the small plan waits for real refills */
    return KD_RUN_TESTS(tests, argc, argv);
}
