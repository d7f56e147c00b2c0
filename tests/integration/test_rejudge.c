/*
 * test_rejudge.c: a reload that changes the judgement's rules judges every stored record
 * again from its stored inputs, with zero tokens, and `kdeals reload` says what moved.
 *
 * A store of N records, all deals under the config's rules, the daemon running against the
 * real simulator with nothing to spend on (an empty ASIN list; the records are not due). A
 * reload that raises min ROI takes the deal count down and names the criterion; a reload back
 * brings every record back, scheduled for a re-check. The simulator's ledger shows no token
 * spent by either re-judge; each record's history and the change log show the two re-judges.
 * A restart with changed rules judges again at start.
 */
#include "kd_harness.h"
#include "kd_test.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "judge/rules.h"
#include "store/record.h"
#include "store/store.h"

#define KEY       "rejudge-test-key"
#define N_RECORDS 40

static const char *const sim_args[] = {"--keys", KEY, NULL};

/* The test's config: nothing to discover, records not due for a day; MIN_ROI as given. The
 * first call makes D's folder; later ones rewrite its config for a reload. */
static void config(struct kdh_daemon *d, const struct kdh_sim *sim, const char *min_roi)
{
    char asins[700], extra[1600];
    snprintf(asins, sizeof(asins), "%s/asins.txt", kd_test_tmpdir());
    FILE *f = fopen(asins, "w");
    assert_non_null(f);
    fclose(f);
    snprintf(extra, sizeof(extra),
             "[scan]\nsource = asins\nasins_file = %s\n"
             "[update]\nmin_interval = 1d\nmax_interval = 2d\n"
             "[filter]\nmin_roi_pct = %s\nmin_profit = 1.00\nmin_rank_drops_365 = 0\n",
             asins, min_roi);
    if (d->dir[0] == '\0')
        kdh_daemon_config(d, sim, KEY, 100, extra);
    else
        kdh_daemon_rewrite(d, sim, KEY, 100, extra);
}

static struct jd_rules rules_of(const struct kdh_daemon *d)
{
    struct cfg c;
    char err[512];
    if (cfg_load_file(d->conf, &c, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    struct jd_rules r;
    jd_rules_from_cfg(&c, &r);
    return r;
}

/* Record I: one Used offer at 10.00, sold at a 90-day Used average that gives ROI from about
 * 40 % (I = 0) up to about 240 % (I = N - 1) under the default costs. */
static void make_record(struct st_record *r, int i, const struct jd_rules *rules, int64_t now)
{
    st_record_init(r);
    snprintf(r->asin, sizeof(r->asin), "B0RJ%06d", i);
    r->domain = 1;
    st_record_set_title(r, "re-judge test", 13);
    struct jd_inputs *in = &r->in;
    in->root_category = 172282;
    in->used_cents = 1000;
    in->used_avg90_cents = 2600 + 150 * i;
    in->drops365 = 30;
    in->fees_known = true;
    in->referral_bp = 1500;
    in->fba_fee_cents = 300;
    in->buy_source = JD_BUY_OFFER;
    in->buy_condition = 3;
    in->buy_price_cents = 1000;
    in->buy_shipping_cents = 0;
    snprintf(in->buy_seller_id, sizeof(in->buy_seller_id), "A1SELLER");
    in->buy_seen_ms = in->data_ms = now;
    r->first_seen_ms = now;
    struct jd_verdict v;
    jd_judge(in, rules, &v);
    st_record_judged(r, &v, jd_rules_hash(rules), ST_EV_COMMIT, now, 3, now + 86400000);
}

struct seed {
    const struct jd_rules *rules;
    int64_t now;
};

static int seed_fn(struct st_txn *txn, void *ud)
{
    const struct seed *s = ud;
    for (int i = 0; i < N_RECORDS; i++) {
        static struct st_record r;
        make_record(&r, i, s->rules, s->now);
        int rc = st_record_put(txn, &r, ST_EV_COMMIT, s->now);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* Deals in the store now, and how many records carry the rules hash HASH. */
static int store_deals(const struct kdh_daemon *d, uint64_t hash, int *with_hash)
{
    struct st_options so = {.path = d->store};
    struct st_env *env;
    char err[512];
    assert_int_equal(st_open_existing(&so, &env, err, sizeof(err)), 0);
    struct st_txn *txn;
    assert_int_equal(st_read_begin(env, &txn), 0);
    struct st_cursor *cur;
    assert_int_equal(st_cursor_open(txn, ST_DB_PRODUCTS, &cur), 0);
    static struct st_record r;
    int deals = 0, hashed = 0, rc;
    while ((rc = st_cursor_next_record(cur, &r)) == 0) {
        deals += r.state == ST_STATE_DEAL;
        hashed += r.rules_hash == hash;
        if (r.state == ST_STATE_DEAL)
            assert_true(r.next_check_ms > 0); /* a deal is re-checked */
        else
            assert_int_equal(r.next_check_ms, 0); /* a non-deal costs no tokens */
    }
    assert_int_equal(rc, -ENOENT);
    st_cursor_close(cur);
    st_read_end(txn);
    st_close(env);
    if (with_hash != NULL)
        *with_hash = hashed;
    return deals;
}

/* Runs `kdeals reload` and returns its output (free it); the exit status must be 0. Not
 * inlined: GCC's -Wdangling-pointer (at -O2 and above) then takes the returned text for a
 * pointer to the local that received it. */
__attribute__((noinline)) static char *reload(const struct kdh_daemon *d)
{
    static const char *const argv[] = {"reload", NULL};
    char *out = NULL;
    int rc = kdh_cli(d, argv, 90, &out);
    if (rc != 0)
        fail_msg("kdeals reload exited %d: %s", rc, out ? out : "");
    return out;
}

/* "judged 40 records again (no tokens): 40 deals -> 12: 0 added, 28 no longer pass: roi 28" */
static void parse_moved(const char *out, long *records, long *before, long *after, long *added,
                        long *removed)
{
    const char *p = strstr(out, "judged ");
    if (p == NULL)
        fail_msg("no re-judge line in: %s", out);
    if (sscanf(p, "judged %ld records again (no tokens): %ld deals -> %ld: %ld added, %ld", records,
               before, after, added, removed) != 5)
        fail_msg("cannot read the re-judge line: %s", p);
}

static void test_reload_rejudges_with_zero_tokens(void **state)
{
    (void)state;
    kd_test_set_timeout(240);
    struct kdh_sim sim;
    kdh_sim_start(&sim, sim_args);
    struct kdh_daemon d;
    memset(&d, 0, sizeof(d));
    config(&d, &sim, "25");
    struct jd_rules loose = rules_of(&d);
    {
        struct st_options so = {.path = d.store};
        struct st_env *env;
        char err[512];
        assert_int_equal(st_open(&so, &env, err, sizeof(err)), 0);
        struct seed s = {&loose, kd_wall_ms()};
        assert_int_equal(st_write(env, seed_fn, &s), 0);
        st_close(env);
    }
    assert_int_equal(store_deals(&d, jd_rules_hash(&loose), NULL), N_RECORDS);

    kdh_daemon_start(&d);
    struct shm_segment seg;
    kdh_daemon_attach(&d, &seg);
    int64_t spent_before = kdh_sim_stat(&sim, "tokens_consumed", NULL);

    /* Tighten: ROI of 150 % or more. */
    config(&d, &sim, "150");
    struct jd_rules tight = rules_of(&d);
    char *out = reload(&d);
    long records, before, after, added, removed;
    parse_moved(out, &records, &before, &after, &added, &removed);
    assert_non_null(strstr(out, "no longer pass: roi "));
    free(out);
    int expect_tight = 0;
    for (int i = 0; i < N_RECORDS; i++) {
        static struct st_record r;
        make_record(&r, i, &tight, 1);
        expect_tight += r.v.deal;
    }
    assert_true(expect_tight > 0 && expect_tight < N_RECORDS);
    assert_int_equal(records, N_RECORDS);
    assert_int_equal(before, N_RECORDS);
    assert_int_equal(after, expect_tight);
    assert_int_equal(added, 0);
    assert_int_equal(removed, N_RECORDS - expect_tight);
    int hashed = 0;
    assert_int_equal(store_deals(&d, jd_rules_hash(&tight), &hashed), expect_tight);
    assert_int_equal(hashed, N_RECORDS);

    /* Loosen again: every record is a deal once more, with no token spent to know it. */
    config(&d, &sim, "25");
    out = reload(&d);
    parse_moved(out, &records, &before, &after, &added, &removed);
    free(out);
    assert_int_equal(before, expect_tight);
    assert_int_equal(after, N_RECORDS);
    assert_int_equal(added, N_RECORDS - expect_tight);
    assert_int_equal(removed, 0);
    assert_int_equal(store_deals(&d, jd_rules_hash(&loose), NULL), N_RECORDS);
    assert_int_equal(kdh_sim_stat(&sim, "tokens_consumed", NULL), spent_before);

    /* A reload that changes no judgement key judges nothing again. */
    out = reload(&d);
    assert_null(strstr(out, "judged "));
    free(out);

    /* The history of a record that left and came back, and the change log, say so. */
    {
        struct st_options so = {.path = d.store};
        struct st_env *env;
        char err[512];
        assert_int_equal(st_open_existing(&so, &env, err, sizeof(err)), 0);
        struct st_txn *txn;
        assert_int_equal(st_read_begin(env, &txn), 0);
        struct st_key key;
        assert_int_equal(st_key_make(1, "B0RJ000000", &key), 0);
        struct st_history h[8];
        size_t nh = 0;
        assert_int_equal(st_history_list(txn, &key, h, 8, &nh), 0);
        assert_int_equal(nh, 3);
        assert_int_equal(h[0].event, ST_EV_REJUDGE);
        assert_int_equal(h[0].state, ST_STATE_DEAL);
        assert_int_equal(h[1].event, ST_EV_REJUDGE);
        assert_int_equal(h[1].state, ST_STATE_REJECTED);
        assert_int_equal(h[2].event, ST_EV_COMMIT);
        uint64_t last = 0;
        assert_int_equal(st_changes_last(txn, &last), 0);
        assert_int_equal(last, N_RECORDS + 2 * (uint64_t)N_RECORDS);
        st_read_end(txn);
        st_close(env);
    }

    /* Rules changed while stopped: the start judges again. */
    assert_int_equal(kdh_daemon_stop(&d), 0);
    config(&d, &sim, "150");
    kdh_daemon_start(&d);
    assert_true(KDH_WAIT_FOR(store_deals(&d, jd_rules_hash(&tight), NULL) == expect_tight, 30));
    assert_true(KDH_WAIT_FOR(kdh_log_contains(&d, "re-judge: 40 records judged again"), 10));
    assert_int_equal(kdh_sim_stat(&sim, "tokens_consumed", NULL), spent_before);
    assert_int_equal(kdh_daemon_stop(&d), 0);
    shm_segment_detach(&seg);
    kdh_sim_stop(&sim);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reload_rejudges_with_zero_tokens),
    };
    return KD_RUN_TESTS(tests, argc, argv);
}
