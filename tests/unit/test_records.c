/*
 * test_records.c: the store's judged-product records (store/store.h st_record_*): the codec
 * round trip of every field, absent fields read back as unknown, the schedule kept in step,
 * history capped per record and listed newest first, the change log in order and complete,
 * deletion, and the migration of a schema-1 store of deal records.
 */
#include "kd_test.h"

#include "store/codec.h"
#include "store/store.h"

#include <errno.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct st_env *open_at(const char *path)
{
    struct st_options opt = {.path = path};
    struct st_env *env = NULL;
    char err[512] = "";
    int rc = st_open(&opt, &env, err, sizeof(err));
    if (rc != 0)
        fail_msg("st_open(%s): %d %s", path, rc, err);
    return env;
}

static const char *db_path(const char *name)
{
    static char path[512];
    snprintf(path, sizeof(path), "%s/%s", kd_test_tmpdir(), name);
    return path;
}

/* A record for ASIN number N with every part set from N. */
static void make_record(struct st_record *r, unsigned n)
{
    st_record_init(r);
    snprintf(r->asin, sizeof(r->asin), "B%09u", n);
    r->domain = 1;
    const char *title = "A used textbook, \xc3\xa9\x64ition fran\xc3\xa7"
                        "aise";
    st_record_set_title(r, title, strlen(title));
    st_record_set_category(r, "Books", 5);
    r->source = ST_SOURCE_DEALS;
    r->in.root_category = 283155;
    r->in.used_avg90_cents = 4000 + n;
    r->in.used_buy_box_cents = 3900;
    r->in.drops365 = 40;
    r->in.fees_known = true;
    r->in.referral_bp = 1500;
    r->in.fba_fee_cents = 350;
    r->in.buy_source = JD_BUY_OFFER;
    r->in.buy_condition = 3;
    r->in.buy_price_cents = 1000 + n;
    r->in.buy_shipping_cents = 399;
    snprintf(r->in.buy_seller_id, sizeof(r->in.buy_seller_id), "A2SELLER%u", n % 97);
    r->in.buy_is_fba = n % 2;
    r->in.buy_seen_ms = 1764000000000LL;
    r->in.data_ms = 1764000000000LL;
    struct jd_rules rules;
    jd_rules_default(&rules);
    jd_judge(&r->in, &rules, &r->v);
    r->state = r->v.deal ? ST_STATE_DEAL : ST_STATE_REJECTED;
    r->rules_hash = jd_rules_hash(&rules);
    r->judged_ms = 1764000000000LL;
    r->first_seen_ms = 1764000000000LL;
    r->last_checked_ms = 1764000000000LL + n;
    r->next_check_ms = 1764000100000LL + n;
    r->revision = 1;
}

static int put_one(struct st_txn *txn, void *ud)
{
    return st_record_put(txn, ud, ST_EV_COMMIT, 1764000000000LL);
}

static void test_record_round_trip(void **state)
{
    (void)state;
    struct st_record r, back;
    make_record(&r, 7);
    assert_true(r.v.deal);
    uint8_t buf[ST_RECORD_MAX];
    size_t len = 0;
    assert_int_equal(st_record_encode(&r, buf, sizeof(buf), &len), 0);
    assert_true(len < ST_RECORD_MAX);
    assert_int_equal(st_record_decode(buf, len, &back), 0);
    /* Every stored part comes back; the criteria detail is not stored. */
    memset(back.v.crit, 0, sizeof(back.v.crit));
    memset(r.v.crit, 0, sizeof(r.v.crit));
    assert_memory_equal(&back.in, &r.in, sizeof(r.in));
    assert_memory_equal(&back.v, &r.v, sizeof(r.v));
    assert_string_equal(back.title, r.title);
    assert_string_equal(back.category_name, "Books");
    assert_int_equal(back.next_check_ms, r.next_check_ms);

    /* A map with only the key fields: every input reads back unknown, not zero. */
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 3);
    msgpack_pack_str_with_body(&pk, "v", 1);
    msgpack_pack_uint8(&pk, 2);
    msgpack_pack_str_with_body(&pk, "asin", 4);
    msgpack_pack_str_with_body(&pk, "B000000001", 10);
    msgpack_pack_str_with_body(&pk, "domain", 6);
    msgpack_pack_uint8(&pk, 1);
    assert_int_equal(st_record_decode(sb.data, sb.size, &back), 0);
    msgpack_sbuffer_destroy(&sb);
    assert_int_equal(back.in.used_avg90_cents, -1);
    assert_int_equal(back.in.drops365, -1);
    assert_int_equal(back.v.sell_cents, -1);
    assert_int_equal(back.bought_cost_cents, -1);

    /* The longest title and seller still fit. */
    char long_title[400];
    memset(long_title, 'x', sizeof(long_title));
    st_record_set_title(&r, long_title, sizeof(long_title));
    memset(r.in.buy_seller_id, 'S', sizeof(r.in.buy_seller_id) - 1);
    assert_int_equal(st_record_encode(&r, buf, sizeof(buf), &len), 0);
}

static void test_put_schedule_history_changes(void **state)
{
    (void)state;
    struct st_env *env = open_at(db_path("rec"));
    struct st_record r;
    make_record(&r, 1);
    assert_int_equal(st_write(env, put_one, &r), 0);

    /* Forty re-checks: history keeps the newest ST_HISTORY_MAX, the schedule one entry. */
    for (int i = 0; i < 40; i++) {
        r.revision++;
        r.next_check_ms += 1000;
        r.in.used_avg90_cents += 10;
        assert_int_equal(st_write(env, put_one, &r), 0);
    }
    struct st_txn *txn;
    assert_int_equal(st_read_begin(env, &txn), 0);
    struct st_key key;
    assert_int_equal(st_record_key(&r, &key), 0);
    struct st_record back;
    assert_int_equal(st_record_get(txn, &key, &back), 0);
    assert_int_equal(back.revision, 41);
    uint64_t n_sched = 0;
    assert_int_equal(st_count(txn, ST_DB_SCHEDULE, &n_sched), 0);
    assert_int_equal(n_sched, 1);
    struct st_sched_entry due[4];
    size_t nd = 0;
    assert_int_equal(st_schedule_due(txn, INT64_MAX, due, 4, &nd), 0);
    assert_int_equal(nd, 1);
    assert_int_equal(due[0].at_ms, r.next_check_ms);
    struct st_history h[64];
    size_t nh = 0;
    assert_int_equal(st_history_list(txn, &key, h, 64, &nh), 0);
    assert_int_equal(nh, ST_HISTORY_MAX);
    assert_int_equal(h[0].revision, 41);
    assert_int_equal(h[ST_HISTORY_MAX - 1].revision, 41 - ST_HISTORY_MAX + 1);
    uint64_t first = 0, last = 0;
    assert_int_equal(st_changes_first(txn, &first), 0);
    assert_int_equal(st_changes_last(txn, &last), 0);
    assert_int_equal(first, 1);
    assert_int_equal(last, 41);
    struct st_change c[64];
    size_t nc = 0;
    assert_int_equal(st_changes_read(txn, 10, c, 64, &nc), 0);
    assert_int_equal(nc, 31);
    for (size_t i = 0; i < nc; i++) {
        assert_int_equal(c[i].seq, 11 + i);
        assert_string_equal(c[i].asin, r.asin);
        assert_int_equal(c[i].revision, 11 + i);
    }
    assert_int_equal(c[0].event, ST_EV_COMMIT);
    st_read_end(txn);
    st_close(env);
}

struct put_ev {
    struct st_record *r;
    enum st_event event;
    int64_t at_ms;
};

static int put_event(struct st_txn *txn, void *ud)
{
    const struct put_ev *p = ud;
    return st_record_put(txn, p->r, p->event, p->at_ms);
}

static void put_as(struct st_env *env, struct st_record *r, enum st_event event, int64_t at_ms)
{
    r->revision++;
    struct put_ev p = {r, event, at_ms};
    assert_int_equal(st_write(env, put_event, &p), 0);
}

static size_t history_of(struct st_env *env, const struct st_record *r, struct st_history *h,
                         size_t max)
{
    struct st_txn *txn;
    struct st_key key;
    size_t nh = 0;
    assert_int_equal(st_record_key(r, &key), 0);
    assert_int_equal(st_read_begin(env, &txn), 0);
    assert_int_equal(st_history_list(txn, &key, h, max, &nh), 0);
    st_read_end(txn);
    return nh;
}

/* A seller reads what changed: unchanged re-checks become one entry that counts them, so a
 * deal checked every few minutes keeps its commit and its price changes in the history. */
static void test_unchanged_rechecks_fold_into_one_entry(void **state)
{
    (void)state;
    struct st_env *env = open_at(db_path("fold"));
    struct st_record r;
    make_record(&r, 3);
    r.revision = 0;
    const int64_t t0 = 1764000000000LL;
    put_as(env, &r, ST_EV_COMMIT, t0);
    for (int i = 1; i <= 40; i++)
        put_as(env, &r, ST_EV_RECHECK, t0 + i * 60000);
    struct st_history h[ST_HISTORY_MAX];
    size_t nh = history_of(env, &r, h, ST_HISTORY_MAX);
    assert_int_equal(nh, 2);
    assert_int_equal(h[0].event, ST_EV_RECHECK);
    assert_int_equal(h[0].checks, 40);
    assert_int_equal(h[0].first_ms, t0 + 60000);
    assert_int_equal(h[0].at_ms, t0 + 40 * 60000);
    assert_int_equal(h[0].revision, 41);
    assert_int_equal(h[1].event, ST_EV_COMMIT);
    assert_int_equal(h[1].at_ms, t0);

    /* A changed figure is an entry of its own; the run after it counts from it. */
    r.v.profit_cents -= 100;
    put_as(env, &r, ST_EV_RECHECK, t0 + 41 * 60000);
    nh = history_of(env, &r, h, ST_HISTORY_MAX);
    assert_int_equal(nh, 3);
    assert_true(h[0].checks <= 1);
    assert_int_equal(h[1].checks, 40);
    put_as(env, &r, ST_EV_RECHECK, t0 + 42 * 60000);
    nh = history_of(env, &r, h, ST_HISTORY_MAX);
    assert_int_equal(nh, 3);
    assert_int_equal(h[0].checks, 2);
    assert_int_equal(h[0].first_ms, t0 + 41 * 60000);
    assert_int_equal(h[0].at_ms, t0 + 42 * 60000);

    /* A changed state, and a commit with the same figures, are never folded. */
    r.state = ST_STATE_FAILING;
    put_as(env, &r, ST_EV_RECHECK, t0 + 43 * 60000);
    put_as(env, &r, ST_EV_COMMIT, t0 + 44 * 60000);
    put_as(env, &r, ST_EV_COMMIT, t0 + 45 * 60000);
    nh = history_of(env, &r, h, ST_HISTORY_MAX);
    assert_int_equal(nh, 6);
    assert_int_equal(h[0].event, ST_EV_COMMIT);
    assert_int_equal(h[1].event, ST_EV_COMMIT);
    assert_int_equal(h[2].state, ST_STATE_FAILING);
    assert_true(h[2].checks <= 1);
    st_close(env);
}

static int del_one(struct st_txn *txn, void *ud)
{
    return st_record_del(txn, ud, 1764000009999LL);
}

static void test_delete(void **state)
{
    (void)state;
    struct st_env *env = open_at(db_path("del"));
    struct st_record a, b;
    make_record(&a, 1);
    make_record(&b, 2);
    assert_int_equal(st_write(env, put_one, &a), 0);
    assert_int_equal(st_write(env, put_one, &b), 0);
    struct st_key key;
    assert_int_equal(st_record_key(&a, &key), 0);
    assert_int_equal(st_write(env, del_one, &key), 0);
    struct st_txn *txn;
    assert_int_equal(st_read_begin(env, &txn), 0);
    struct st_record back;
    assert_int_equal(st_record_get(txn, &key, &back), -ENOENT);
    struct st_history h[4];
    size_t nh = 9;
    assert_int_equal(st_history_list(txn, &key, h, 4, &nh), 0);
    assert_int_equal(nh, 0);
    struct st_key kb;
    assert_int_equal(st_record_key(&b, &kb), 0);
    assert_int_equal(st_history_list(txn, &kb, h, 4, &nh), 0);
    assert_int_equal(nh, 1);
    uint64_t n_sched = 0;
    assert_int_equal(st_count(txn, ST_DB_SCHEDULE, &n_sched), 0);
    assert_int_equal(n_sched, 1);
    struct st_change c[4];
    size_t nc = 0;
    assert_int_equal(st_changes_read(txn, 2, c, 4, &nc), 0);
    assert_int_equal(nc, 1);
    assert_int_equal(c[0].event, ST_EV_DELETE);
    assert_int_equal(c[0].prev_state, ST_STATE_DEAL);
    assert_int_equal(c[0].state, ST_STATE_NONE);
    st_read_end(txn);
    st_close(env);
}

/* Makes a schema-1 store: deal records in "deals", schema_version 1. */
static int make_v1(struct st_txn *txn, void *ud)
{
    (void)ud;
    for (unsigned n = 1; n <= 3; n++) {
        struct st_deal d;
        memset(&d, 0, sizeof(d));
        snprintf(d.asin, sizeof(d.asin), "B%09u", n);
        d.domain = 1;
        st_deal_set_title(&d, "Old deal", 8);
        d.buy_price_cents = 1000;
        d.buy_condition = 4;
        d.buy_shipping_cents = 399;
        strcpy(d.buy_seller_id, "AOLDSELLER");
        d.landed_buy_cents = 1574;
        d.expected_sell_cents = 4000;
        d.referral_fee_cents = 600;
        d.referral_fee_bp = 1500;
        d.fba_fee_cents = 350;
        d.profit_cents = 1476;
        d.roi_bp = 9378;
        d.sales_rank = 5000;
        d.rank_drops_365 = 30;
        d.first_seen_ms = 1000;
        d.last_checked_ms = 2000;
        d.next_check_ms = 5000 + n;
        d.revision = 4;
        int rc = st_deal_put(txn, &d);
        if (rc != 0)
            return rc;
    }
    return st_meta_put_u64(txn, ST_META_SCHEMA_VERSION, 1);
}

static void test_migrate_v1(void **state)
{
    (void)state;
    const char *path = db_path("v1");
    struct st_env *env = open_at(path);
    assert_int_equal(st_write(env, make_v1, NULL), 0);
    st_close(env);

    env = open_at(path);
    struct st_txn *txn;
    assert_int_equal(st_read_begin(env, &txn), 0);
    uint64_t v = 0, n = 0;
    assert_int_equal(st_meta_get_u64(txn, ST_META_SCHEMA_VERSION, &v), 0);
    assert_int_equal(v, ST_SCHEMA_VERSION);
    assert_int_equal(st_count(txn, ST_DB_DEALS, &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(st_count(txn, ST_DB_PRODUCTS, &n), 0);
    assert_int_equal(n, 3);
    /* The schedule entries still point at the records. */
    struct st_sched_entry due[8];
    size_t nd = 0;
    assert_int_equal(st_schedule_due(txn, INT64_MAX, due, 8, &nd), 0);
    assert_int_equal(nd, 3);
    struct st_record r;
    assert_int_equal(st_record_get(txn, &due[0].key, &r), 0);
    assert_int_equal(r.next_check_ms, due[0].at_ms);
    assert_int_equal(r.state, ST_STATE_DEAL);
    assert_int_equal(r.rules_hash, 0);
    assert_int_equal(r.in.buy_source, JD_BUY_OFFER);
    assert_int_equal(r.in.buy_price_cents, 1000);
    assert_string_equal(r.in.buy_seller_id, "AOLDSELLER");
    assert_int_equal(r.v.profit_cents, 1476);
    assert_int_equal(r.v.sell_cents, 4000);
    assert_int_equal(r.revision, 5);
    /* The sell inputs are unknown until a re-check reads them. */
    assert_int_equal(r.in.used_avg90_cents, -1);
    struct st_change c[8];
    size_t nc = 0;
    assert_int_equal(st_changes_read(txn, 0, c, 8, &nc), 0);
    assert_int_equal(nc, 3);
    assert_int_equal(c[0].event, ST_EV_MIGRATE);
    st_read_end(txn);
    st_close(env);
}

struct resched {
    struct st_key key;
    uint64_t revision;
    int64_t at_ms;
    int rc;
};

static int resched_one(struct st_txn *txn, void *ud)
{
    struct resched *s = ud;
    s->rc = st_record_reschedule(txn, &s->key, s->revision, s->at_ms);
    return 0;
}

/* A reschedule moves the record's next check and its schedule entry together, and nothing
 * else: no history entry, no change, the same revision; a record rewritten since is left. */
static void test_reschedule(void **state)
{
    (void)state;
    struct st_env *env = open_at(db_path("resched"));
    struct st_record r;
    make_record(&r, 1);
    assert_int_equal(st_write(env, put_one, &r), 0);
    struct resched s = {.revision = 1, .at_ms = r.next_check_ms + 3600000};
    assert_int_equal(st_record_key(&r, &s.key), 0);
    assert_int_equal(st_write(env, resched_one, &s), 0);
    assert_int_equal(s.rc, 0);
    struct st_txn *txn;
    assert_int_equal(st_read_begin(env, &txn), 0);
    struct st_record back;
    assert_int_equal(st_record_get(txn, &s.key, &back), 0);
    assert_int_equal(back.next_check_ms, s.at_ms);
    assert_int_equal(back.revision, 1);
    assert_int_equal(back.v.profit_cents, r.v.profit_cents);
    struct st_sched_entry due[4];
    size_t nd = 0;
    assert_int_equal(st_schedule_due(txn, INT64_MAX, due, 4, &nd), 0);
    assert_int_equal(nd, 1);
    assert_int_equal(due[0].at_ms, s.at_ms);
    struct st_history h[4];
    size_t nh = 0;
    assert_int_equal(st_history_list(txn, &s.key, h, 4, &nh), 0);
    assert_int_equal(nh, 1);
    uint64_t last = 0;
    assert_int_equal(st_changes_last(txn, &last), 0);
    assert_int_equal(last, 1);
    st_read_end(txn);
    /* Rewritten since (revision 2): not moved. */
    r.revision = 2;
    assert_int_equal(st_write(env, put_one, &r), 0);
    s.at_ms += 60000;
    assert_int_equal(st_write(env, resched_one, &s), 0);
    assert_int_equal(s.rc, -ECANCELED);
    assert_int_equal(st_read_begin(env, &txn), 0);
    assert_int_equal(st_record_get(txn, &s.key, &back), 0);
    assert_int_equal(back.next_check_ms, r.next_check_ms);
    st_read_end(txn);
    /* Not scheduled, or no time: left. */
    r.revision = 3;
    r.next_check_ms = 0;
    assert_int_equal(st_write(env, put_one, &r), 0);
    s.revision = 3;
    assert_int_equal(st_write(env, resched_one, &s), 0);
    assert_int_equal(s.rc, -ECANCELED);
    s.at_ms = 0;
    assert_int_equal(st_write(env, resched_one, &s), 0);
    assert_int_equal(s.rc, -EINVAL);
    st_close(env);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_record_round_trip),
        cmocka_unit_test(test_put_schedule_history_changes),
        cmocka_unit_test(test_unchanged_rechecks_fold_into_one_entry),
        cmocka_unit_test(test_delete),
        cmocka_unit_test(test_reschedule),
        cmocka_unit_test(test_migrate_v1),
    };
    return KD_RUN_TESTS(tests, argc, argv);
}
