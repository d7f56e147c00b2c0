/*
 * test_store.c: the LMDB store (store/store.c) and its record codec (store/codec.c), on real
 * LMDB files in the test's private folder: codec round trips read back by an independent
 * msgpack decoder, garbage and newer versions refused, the schedule order, map-full growth
 * without losing a record, two writer processes, snapshots during writes, reader slots of
 * dead processes, the schema check, a data.mdb short of its free tail (whole) or cut
 * (refused), processes opening a new store at once, mdb_stat on the file, and a full disk (-ENOSPC,
 * nothing half-written) on a private 1 MiB tmpfs.
 */
#include "kd_test.h"

#include "store/codec.h"
#include "store/store.h"

#include <errno.h>
#include <inttypes.h>
#include <lmdb.h>
#include <msgpack.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- helpers --------------------------------------------------------------------------- */

static struct st_env *open_at(const char *path, uint64_t map, uint64_t max)
{
    struct st_options opt = {.path = path, .map_size_bytes = map, .max_map_size_bytes = max};
    struct st_env *env = NULL;
    char err[512] = "";
    int rc = st_open(&opt, &env, err, sizeof(err));
    if (rc != 0)
        fail_msg("st_open(%s): %d %s", path, rc, err);
    return env;
}

static const char *db_path(const char *name)
{
    static char path[8][512];
    static unsigned next;
    char *p = path[next++ % 8];
    snprintf(p, 512, "%s/%s", kd_test_tmpdir(), name);
    return p;
}

/* A deal for ASIN number N (B000000000 + N) with every field set from N. */
static void make_deal(struct st_deal *d, unsigned n, int64_t next_check_ms)
{
    memset(d, 0, sizeof(*d));
    snprintf(d->asin, sizeof(d->asin), "B%09u", n);
    d->domain = 1;
    char title[160];
    snprintf(title, sizeof(title),
             "Product %u: a used textbook with a long enough title to take "
             "some room in the map, \xc3\xa9\x64ition fran\xc3\xa7"
             "aise",
             n);
    st_deal_set_title(d, title, strlen(title));
    d->buy_price_cents = 1000 + n;
    d->buy_condition = 3;
    snprintf(d->buy_seller_id, sizeof(d->buy_seller_id), "A2SELLER%u", n % 97);
    d->buy_is_fba = n % 2;
    d->buy_shipping_cents = 399;
    d->landed_buy_cents = 1600 + n;
    d->expected_sell_cents = 4200;
    d->referral_fee_cents = 630;
    d->referral_fee_bp = 1500;
    d->fba_fee_cents = 350;
    d->prep_cents = 100;
    d->inbound_cents = 75;
    d->tax_cents = -1;
    d->profit_cents = 1620 - (int64_t)n;
    d->margin_bp = -3857;
    d->roi_bp = 10125;
    d->sales_rank = 123456;
    d->rank_drops_30 = 3;
    d->rank_drops_90 = 9;
    d->rank_drops_180 = 17;
    d->rank_drops_365 = -1;
    d->offers_new = 4;
    d->offers_used = 12;
    d->offers_fba = 2;
    d->offers_fbm = 14;
    d->buy_box_cents = -2;
    d->first_seen_ms = 1764000000000LL;
    d->last_checked_ms = 1764000000000LL + n;
    d->last_changed_ms = 1764000000000LL;
    d->check_failures = 1;
    d->next_check_ms = next_check_ms;
    d->revision = UINT64_MAX - n;
}

static void encode_deal(const struct st_deal *d, uint8_t *buf, size_t *len)
{
    assert_int_equal(st_deal_encode(d, buf, ST_RECORD_MAX, len), 0);
}

/* Deals equal iff their encodings are (the encoding is canonical: fixed field order). */
static void assert_deal_equal(const struct st_deal *a, const struct st_deal *b)
{
    uint8_t ba[ST_RECORD_MAX], bb[ST_RECORD_MAX];
    size_t la = 0, lb = 0;
    encode_deal(a, ba, &la);
    encode_deal(b, bb, &lb);
    assert_int_equal(la, lb);
    assert_memory_equal(ba, bb, la);
}

static struct st_key key_of(unsigned n)
{
    char asin[16];
    struct st_key k;
    snprintf(asin, sizeof(asin), "B%09u", n);
    assert_int_equal(st_key_make(1, asin, &k), 0);
    return k;
}

static uint64_t count_of(struct st_env *env, enum st_db db)
{
    struct st_txn *txn;
    uint64_t n = 0;
    assert_int_equal(st_read_begin(env, &txn), 0);
    assert_int_equal(st_count(txn, db, &n), 0);
    st_read_end(txn);
    return n;
}

/* A batch: deals [first, first + count) with next_check first + i, plus a meta counter. */
struct batch {
    unsigned first, count;
    const char *meta_name;
    uint64_t meta_value;
    unsigned runs; /* how many times the batch function ran */
};

static int put_batch(struct st_txn *txn, void *ud)
{
    struct batch *b = ud;
    b->runs++;
    for (unsigned i = 0; i < b->count; i++) {
        struct st_deal d;
        make_deal(&d, b->first + i, 1000 + b->first + i);
        int rc = st_deal_put(txn, &d);
        if (rc != 0)
            return rc;
    }
    if (b->meta_name != NULL)
        return st_meta_put_u64(txn, b->meta_name, b->meta_value);
    return 0;
}

/* ---- keys and codec -------------------------------------------------------------------- */

static void test_keys(void **state)
{
    (void)state;
    struct st_key k;
    char asin[ST_ASIN_LEN + 1];
    assert_int_equal(st_key_make(3, "B0D8W1YVBX", &k), 0);
    assert_int_equal(st_key_domain(&k), 3);
    st_key_asin(&k, asin);
    assert_string_equal(asin, "B0D8W1YVBX");
    assert_int_equal(k.b[0], 3);
    assert_memory_equal(k.b + 1, "B0D8W1YVBX", 10);
    assert_int_equal(st_key_make(1, "b0d8w1yvbx", &k), -EINVAL);
    assert_int_equal(st_key_make(1, "B0D8W1YVB", &k), -EINVAL);
    assert_int_equal(st_key_make(1, "B0D8W1YVBXX", &k), -EINVAL);
    assert_int_equal(st_key_make(0, "B0D8W1YVBX", &k), -EINVAL);
    assert_int_equal(st_key_make(256, "B0D8W1YVBX", &k), -EINVAL);
    assert_int_equal(st_key_make(1, "B0D8W1-VBX", &k), -EINVAL);
    assert_int_equal(st_key_make(1, NULL, &k), -EINVAL);
}

static void test_codec_round_trip(void **state)
{
    (void)state;
    struct st_deal d, e;
    uint8_t buf[ST_RECORD_MAX];
    size_t len = 0;
    make_deal(&d, 42, 1764000360000LL);
    encode_deal(&d, buf, &len);
    memset(&e, 0, sizeof(e));
    assert_int_equal(st_deal_decode(buf, len, &e), 0);
    assert_deal_equal(&d, &e);
    assert_string_equal(e.asin, "B000000042");
    assert_int_equal(e.revision, UINT64_MAX - 42);
    assert_int_equal(e.buy_box_cents, -2);
    assert_int_equal(e.margin_bp, -3857);
    assert_string_equal(e.title, d.title);
    assert_true(e.buy_is_fba == false);

    /* The longest record fits ST_RECORD_MAX. */
    memset(d.title, 'x', sizeof(d.title) - 1);
    memset(d.buy_seller_id, 'y', sizeof(d.buy_seller_id) - 1);
    d.revision = UINT64_MAX;
    assert_int_equal(st_deal_encode(&d, buf, sizeof(buf), &len), 0);
    assert_true(len < ST_RECORD_MAX);
    assert_int_equal(st_deal_encode(&d, buf, 40, &len), -ENOBUFS);
    strcpy(d.asin, "bad");
    assert_int_equal(st_deal_encode(&d, buf, sizeof(buf), &len), -EINVAL);

    /* A long title is cut at a UTF-8 boundary. */
    char title[400];
    memset(title, 'a', sizeof(title));
    title[ST_TITLE_MAX - 2] = (char)0xc3; /* a 2-byte sequence straddling the limit */
    title[ST_TITLE_MAX - 1] = (char)0xa9;
    st_deal_set_title(&e, title, sizeof(title));
    assert_int_equal(strlen(e.title), ST_TITLE_MAX - 2);

    /* seen and pending. */
    struct st_seen s = {.peek_ms = 1764000000123LL,
                        .verdict = ST_VERDICT_REJECTED,
                        .feed_last_update_min = 7536888,
                        .feed_price_hash = 0xfeedfacecafebeefULL},
                   s2;
    assert_int_equal(st_seen_encode(&s, buf, sizeof(buf), &len), 0);
    memset(&s2, 0, sizeof(s2));
    assert_int_equal(st_seen_decode(buf, len, &s2), 0);
    assert_int_equal(s2.peek_ms, s.peek_ms);
    assert_int_equal(s2.verdict, ST_VERDICT_REJECTED);
    assert_int_equal(s2.feed_last_update_min, 7536888);
    assert_true(s2.feed_price_hash == 0xfeedfacecafebeefULL);
    struct st_pending p = {.asin = "0306406152",
                           .domain = 2,
                           .peek_ms = 5,
                           .peek_buy_cents = 999,
                           .sell_estimate_cents = 2500,
                           .source = ST_SOURCE_DEALS,
                           .attempts = 2},
                      p2;
    assert_int_equal(st_pending_encode(&p, buf, sizeof(buf), &len), 0);
    memset(&p2, 0, sizeof(p2));
    assert_int_equal(st_pending_decode(buf, len, &p2), 0);
    assert_string_equal(p2.asin, "0306406152");
    assert_int_equal(p2.domain, 2);
    assert_int_equal(p2.sell_estimate_cents, 2500);
    assert_int_equal(p2.source, ST_SOURCE_DEALS);
    assert_int_equal(p2.attempts, 2);
}

/* An independent reader: msgpack-c's object model, no kdeals decoding code. */
static void test_codec_second_decoder(void **state)
{
    (void)state;
    struct st_deal d;
    uint8_t buf[ST_RECORD_MAX];
    size_t len = 0;
    make_deal(&d, 7, 99);
    encode_deal(&d, buf, &len);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    assert_int_equal(msgpack_unpack_next(&u, (const char *)buf, len, &off), MSGPACK_UNPACK_SUCCESS);
    assert_int_equal(off, len);
    assert_int_equal(u.data.type, MSGPACK_OBJECT_MAP);
    unsigned found = 0;
    for (uint32_t i = 0; i < u.data.via.map.size; i++) {
        const msgpack_object *k = &u.data.via.map.ptr[i].key, *v = &u.data.via.map.ptr[i].val;
        assert_int_equal(k->type, MSGPACK_OBJECT_STR);
        char name[64];
        snprintf(name, sizeof(name), "%.*s", (int)k->via.str.size, k->via.str.ptr);
        if (strcmp(name, "v") == 0) {
            assert_int_equal(v->type, MSGPACK_OBJECT_POSITIVE_INTEGER);
            assert_int_equal(v->via.u64, ST_DEAL_VERSION);
            found |= 1;
        } else if (strcmp(name, "asin") == 0) {
            assert_int_equal(v->type, MSGPACK_OBJECT_STR);
            assert_int_equal(v->via.str.size, 10);
            assert_memory_equal(v->via.str.ptr, "B000000007", 10);
            found |= 2;
        } else if (strcmp(name, "buy_price_cents") == 0) {
            assert_int_equal(v->type, MSGPACK_OBJECT_POSITIVE_INTEGER);
            assert_int_equal(v->via.u64, 1007);
            found |= 4;
        } else if (strcmp(name, "roi_bp") == 0) {
            assert_int_equal(v->via.u64, 10125);
            found |= 8;
        } else if (strcmp(name, "buy_box_cents") == 0) {
            assert_int_equal(v->type, MSGPACK_OBJECT_NEGATIVE_INTEGER);
            assert_int_equal(v->via.i64, -2);
            found |= 16;
        } else if (strcmp(name, "buy_is_fba") == 0) {
            assert_int_equal(v->type, MSGPACK_OBJECT_BOOLEAN);
            found |= 32;
        } else if (strcmp(name, "next_check_ms") == 0) {
            assert_int_equal(v->via.u64, 99);
            found |= 64;
        }
    }
    assert_int_equal(found, 127);
    msgpack_unpacked_destroy(&u);
}

/* Packs a small map {"v": V, "asin": ASIN, "domain": 1, EXTRA: 5} (EXTRA may be NULL). */
static size_t small_record(uint8_t *buf, int64_t v, const char *asin, const char *extra)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, extra ? 4 : 3);
    msgpack_pack_str_with_body(&pk, "v", 1);
    msgpack_pack_int64(&pk, v);
    msgpack_pack_str_with_body(&pk, "asin", 4);
    msgpack_pack_str_with_body(&pk, asin, strlen(asin));
    msgpack_pack_str_with_body(&pk, "domain", 6);
    msgpack_pack_int(&pk, 1);
    if (extra) {
        msgpack_pack_str_with_body(&pk, extra, strlen(extra));
        msgpack_pack_int(&pk, 5);
    }
    size_t n = sb.size;
    memcpy(buf, sb.data, n);
    msgpack_sbuffer_destroy(&sb);
    return n;
}

static void test_codec_garbage(void **state)
{
    (void)state;
    struct st_deal d, out, before;
    uint8_t buf[ST_RECORD_MAX];
    size_t len = 0;
    make_deal(&d, 9, 1);
    encode_deal(&d, buf, &len);
    memset(&out, 0x5a, sizeof(out));
    before = out;
    for (size_t n = 0; n < len; n++)
        assert_int_equal(st_deal_decode(buf, n, &out), -EBADMSG);
    assert_memory_equal(&out, &before, sizeof(out));
    /* Bit flips: a clean error or a record whose key is valid. */
    for (size_t i = 0; i < len; i++) {
        for (unsigned bit = 0; bit < 8; bit += 3) {
            buf[i] ^= (uint8_t)(1u << bit);
            int rc = st_deal_decode(buf, len, &out);
            assert_true(rc == 0 || rc == -EBADMSG || rc == -ENOTSUP);
            if (rc == 0) {
                struct st_key k;
                assert_int_equal(st_deal_key(&out, &k), 0);
            }
            buf[i] ^= (uint8_t)(1u << bit);
        }
    }
    /* Hostile sizes, wrong top-level types, nothing at all. */
    const uint8_t bomb1[] = {0xdf, 0xff, 0xff, 0xff, 0xf0, 0xa1, 'v', 0x01};
    const uint8_t bomb2[] = {0xdd, 0x0f, 0xff, 0xff, 0xf0};
    const uint8_t arr[] = {0x91, 0x01};
    assert_int_equal(st_deal_decode(bomb1, sizeof(bomb1), &out), -EBADMSG);
    assert_int_equal(st_deal_decode(bomb2, sizeof(bomb2), &out), -EBADMSG);
    assert_int_equal(st_deal_decode(arr, sizeof(arr), &out), -EBADMSG);
    assert_int_equal(st_deal_decode(NULL, 0, &out), -EBADMSG);
    assert_int_equal(st_seen_decode("\xc1", 1, (struct st_seen *)&out), -EBADMSG);

    /* Versions: newer refused, unknown keys ignored, "v" required, key validated. */
    len = small_record(buf, ST_DEAL_VERSION + 1, "B000000001", NULL);
    assert_int_equal(st_deal_decode(buf, len, &out), -ENOTSUP);
    len = small_record(buf, ST_DEAL_VERSION, "B000000001", "a_future_field_cents");
    assert_int_equal(st_deal_decode(buf, len, &out), 0);
    assert_string_equal(out.asin, "B000000001");
    assert_int_equal(out.buy_price_cents, 0);
    len = small_record(buf, ST_DEAL_VERSION, "B000000001", "asin");
    assert_int_equal(st_deal_decode(buf, len, &out), -EBADMSG); /* duplicate key */
    len = small_record(buf, 0, "B000000001", NULL);
    assert_int_equal(st_deal_decode(buf, len, &out), -EBADMSG);
    len = small_record(buf, ST_DEAL_VERSION, "lowercase1", NULL);
    assert_int_equal(st_deal_decode(buf, len, &out), -EBADMSG);

    /* meta scalars */
    uint64_t v;
    assert_int_equal(st_u64_decode("\xcf\x01", 2, &v), -EBADMSG);
    assert_int_equal(st_u64_encode(UINT64_MAX, buf, sizeof(buf), &len), 0);
    assert_int_equal(st_u64_decode(buf, len, &v), 0);
    assert_true(v == UINT64_MAX);
}

/* ---- environment ----------------------------------------------------------------------- */

static void test_deals_and_schedule(void **state)
{
    (void)state;
    struct st_env *env = open_at(db_path("deals_and_schedule"), 0, 0);
    struct batch b = {.first = 1, .count = 5};
    assert_int_equal(st_write(env, put_batch, &b), 0);
    assert_int_equal(b.runs, 1);
    /* Due entries come stalest first, only up to now. */
    struct st_txn *txn;
    struct st_sched_entry due[10];
    size_t n = 0;
    assert_int_equal(st_read_begin(env, &txn), 0);
    assert_int_equal(st_schedule_due(txn, 1003, due, 10, &n), 0);
    assert_int_equal(n, 3);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(due[i].at_ms, 1001 + (int64_t)i);
        struct st_key k = key_of(1 + (unsigned)i);
        assert_memory_equal(due[i].key.b, k.b, ST_KEY_LEN);
    }
    assert_int_equal(st_schedule_due(txn, INT64_MAX, due, 2, &n), 0);
    assert_int_equal(n, 2);
    struct st_deal d;
    struct st_key k3 = key_of(3);
    assert_int_equal(st_deal_get(txn, &k3, &d), 0);
    assert_int_equal(d.buy_price_cents, 1003);
    struct st_key k9 = key_of(9);
    assert_int_equal(st_deal_get(txn, &k9, &d), -ENOENT);
    assert_int_equal(st_deal_put(txn, &d), -EROFS);
    st_read_end(txn);

    /* Writing a deal again with the same next_check_ms leaves one schedule entry. */
    struct batch b2 = {.first = 1, .count = 1};
    assert_int_equal(st_write(env, put_batch, &b2), 0); /* same time: no change */
    assert_int_equal(count_of(env, ST_DB_SCHEDULE), 5);

    assert_int_equal(count_of(env, ST_DB_DEALS), 5);
    st_close(env);
}

static int put_deal_fn(struct st_txn *txn, void *ud)
{
    return st_deal_put(txn, ud);
}

static int del_deal_fn(struct st_txn *txn, void *ud)
{
    return st_deal_del(txn, ud);
}

static void test_schedule_follows_deal(void **state)
{
    (void)state;
    struct st_env *env = open_at(db_path("schedule_follows_deal"), 0, 0);
    struct batch b = {.first = 1, .count = 5};
    assert_int_equal(st_write(env, put_batch, &b), 0);
    /* Deal 1 is rescheduled after every other one. */
    struct st_deal d;
    make_deal(&d, 1, 5000);
    assert_int_equal(st_write(env, put_deal_fn, &d), 0);
    assert_int_equal(count_of(env, ST_DB_SCHEDULE), 5);
    struct st_txn *txn;
    struct st_sched_entry due[10];
    size_t n = 0;
    assert_int_equal(st_read_begin(env, &txn), 0);
    assert_int_equal(st_schedule_due(txn, INT64_MAX, due, 10, &n), 0);
    st_read_end(txn);
    assert_int_equal(n, 5);
    assert_int_equal(due[0].at_ms, 1002);
    assert_int_equal(due[4].at_ms, 5000);
    struct st_key k1 = key_of(1);
    assert_memory_equal(due[4].key.b, k1.b, ST_KEY_LEN);
    /* next_check_ms 0 unschedules; deleting a deal removes its entry. */
    make_deal(&d, 2, 0);
    assert_int_equal(st_write(env, put_deal_fn, &d), 0);
    assert_int_equal(count_of(env, ST_DB_SCHEDULE), 4);
    struct st_key k3 = key_of(3);
    assert_int_equal(st_write(env, del_deal_fn, &k3), 0);
    assert_int_equal(count_of(env, ST_DB_SCHEDULE), 3);
    assert_int_equal(count_of(env, ST_DB_DEALS), 4);
    assert_int_equal(st_write(env, del_deal_fn, &k3), -ENOENT);
    /* The cursor walks every deal in key order. */
    struct st_cursor *cur;
    assert_int_equal(st_read_begin(env, &txn), 0);
    assert_int_equal(st_cursor_open(txn, ST_DB_DEALS, &cur), 0);
    unsigned seen = 0;
    char prev[16] = "";
    while (st_cursor_next_deal(cur, &d) == 0) {
        assert_true(strcmp(prev, d.asin) < 0);
        snprintf(prev, sizeof(prev), "%s", d.asin);
        seen++;
    }
    st_cursor_close(cur);
    st_read_end(txn);
    assert_int_equal(seen, 4);
    st_close(env);
}

struct pending_ops {
    struct st_pending p;
    int step;
};

static int pending_fn(struct st_txn *txn, void *ud)
{
    struct pending_ops *o = ud;
    struct st_key k;
    assert_int_equal(st_pending_key(&o->p, &k), 0);
    if (o->step == 0) {
        int rc = st_pending_put(txn, &o->p);
        if (rc != 0)
            return rc;
        struct st_seen s = {.peek_ms = 77, .verdict = ST_VERDICT_SURVIVOR};
        if ((rc = st_seen_put(txn, &k, &s)) != 0)
            return rc;
        if ((rc = st_meta_put_u64(txn, "ring.survivors.consumed", 123456789)) != 0)
            return rc;
        return st_meta_put_bytes(txn, "scan.cursor", "page=3;last=7536888", 19);
    }
    return st_pending_del(txn, &k);
}

static void test_pending_seen_meta(void **state)
{
    (void)state;
    struct st_env *env = open_at(db_path("pending_seen_meta"), 0, 0);
    struct pending_ops o = {.p = {.asin = "B0D8W1YVBX",
                                  .domain = 1,
                                  .peek_ms = 1,
                                  .peek_buy_cents = 500,
                                  .sell_estimate_cents = 2000,
                                  .source = ST_SOURCE_QUERY}};
    assert_int_equal(st_write(env, pending_fn, &o), 0);
    st_close(env);
    /* Survives a close and reopen (a crash or reboot). */
    env = open_at(db_path("pending_seen_meta"), 0, 0);
    struct st_txn *txn;
    struct st_key k;
    assert_int_equal(st_key_make(1, "B0D8W1YVBX", &k), 0);
    assert_int_equal(st_read_begin(env, &txn), 0);
    struct st_pending p;
    assert_int_equal(st_pending_get(txn, &k, &p), 0);
    assert_int_equal(p.sell_estimate_cents, 2000);
    assert_int_equal(p.source, ST_SOURCE_QUERY);
    struct st_seen s;
    assert_int_equal(st_seen_get(txn, &k, &s), 0);
    assert_int_equal(s.verdict, ST_VERDICT_SURVIVOR);
    uint64_t v = 0;
    assert_int_equal(st_meta_get_u64(txn, "ring.survivors.consumed", &v), 0);
    assert_int_equal(v, 123456789);
    assert_int_equal(st_meta_get_u64(txn, ST_META_SCHEMA_VERSION, &v), 0);
    assert_int_equal(v, ST_SCHEMA_VERSION);
    char cursor[64];
    size_t n = 0;
    assert_int_equal(st_meta_get_bytes(txn, "scan.cursor", cursor, sizeof(cursor), &n), 0);
    assert_int_equal(n, 19);
    assert_memory_equal(cursor, "page=3;last=7536888", 19);
    assert_int_equal(st_meta_get_bytes(txn, "scan.cursor", cursor, 4, &n), -ENOBUFS);
    assert_int_equal(st_meta_get_u64(txn, "nope", &v), -ENOENT);
    struct st_cursor *cur;
    assert_int_equal(st_cursor_open(txn, ST_DB_PENDING, &cur), 0);
    assert_int_equal(st_cursor_next_pending(cur, &p), 0);
    assert_string_equal(p.asin, "B0D8W1YVBX");
    assert_int_equal(st_cursor_next_pending(cur, &p), -ENOENT);
    st_cursor_close(cur);
    st_read_end(txn);
    o.step = 1;
    assert_int_equal(st_write(env, pending_fn, &o), 0);
    assert_int_equal(count_of(env, ST_DB_PENDING), 0);
    st_close(env);
}

static int abort_fn(struct st_txn *txn, void *ud)
{
    struct batch *b = ud;
    int rc = put_batch(txn, b);
    return rc != 0 ? rc : -ECANCELED;
}

static void test_write_abort_and_snapshot(void **state)
{
    (void)state;
    struct st_env *env = open_at(db_path("write_abort_and_snapshot"), 0, 0);
    struct batch b = {.first = 1, .count = 3};
    assert_int_equal(st_write(env, abort_fn, &b), -ECANCELED);
    assert_int_equal(count_of(env, ST_DB_DEALS), 0);
    /* A snapshot does not see writes committed after it began. */
    struct st_txn *snap;
    assert_int_equal(st_read_begin(env, &snap), 0);
    assert_int_equal(st_write(env, put_batch, &b), 0);
    uint64_t n = 99;
    assert_int_equal(st_count(snap, ST_DB_DEALS, &n), 0);
    assert_int_equal(n, 0);
    st_read_end(snap);
    assert_int_equal(count_of(env, ST_DB_DEALS), 3);
    st_close(env);
}

static void test_map_full_grows(void **state)
{
    (void)state;
    /* 64 KiB map; one batch of 400 deals (~250 KiB) must grow it and lose nothing. */
    struct st_env *env = open_at(db_path("map_full_grows"), 64 << 10, 64 << 20);
    assert_int_equal(st_map_size(env), 64 << 10);
    struct batch b = {.first = 1, .count = 400, .meta_name = "ring.pos", .meta_value = 400};
    assert_int_equal(st_write(env, put_batch, &b), 0);
    assert_true(b.runs > 1);
    assert_true(st_map_size(env) > (64 << 10));
    assert_int_equal(count_of(env, ST_DB_DEALS), 400);
    assert_int_equal(count_of(env, ST_DB_SCHEDULE), 400);
    struct st_txn *txn;
    struct st_deal d;
    assert_int_equal(st_read_begin(env, &txn), 0);
    for (unsigned i = 1; i <= 400; i++) {
        struct st_key k = key_of(i);
        assert_int_equal(st_deal_get(txn, &k, &d), 0);
        assert_int_equal(d.buy_price_cents, 1000 + i);
    }
    uint64_t v = 0;
    assert_int_equal(st_meta_get_u64(txn, "ring.pos", &v), 0);
    assert_int_equal(v, 400);
    st_read_end(txn);
    uint64_t grown = st_map_size(env);
    st_close(env);
    /* Reopened with the small size, the store keeps what it holds. */
    env = open_at(db_path("map_full_grows"), 64 << 10, 64 << 20);
    assert_true(st_map_size(env) >= grown / 2);
    assert_int_equal(count_of(env, ST_DB_DEALS), 400);
    st_close(env);

    /* At the cap the batch fails as a whole with -EFBIG. */
    env = open_at(db_path("capped"), 64 << 10, 256 << 10);
    struct batch small = {.first = 1, .count = 10};
    assert_int_equal(st_write(env, put_batch, &small), 0);
    struct batch big = {.first = 100, .count = 2000};
    assert_int_equal(st_write(env, put_batch, &big), -EFBIG);
    assert_int_equal(count_of(env, ST_DB_DEALS), 10);
    /* A read transaction open in this process blocks growth: -EBUSY, nothing written. */
    struct st_txn *snap;
    struct st_env *env2 = open_at(db_path("busy"), 64 << 10, 64 << 20);
    assert_int_equal(st_read_begin(env2, &snap), 0);
    struct batch mid = {.first = 1, .count = 400};
    assert_int_equal(st_write(env2, put_batch, &mid), -EBUSY);
    st_read_end(snap);
    assert_int_equal(count_of(env2, ST_DB_DEALS), 0);
    assert_int_equal(st_write(env2, put_batch, &mid), 0);
    st_close(env2);
    st_close(env);
}

#define PROCS            2
#define BATCHES_PER_PROC 150
#define DEALS_PER_BATCH  5

static void writer_proc(const char *path, unsigned id)
{
    /* Opened after fork, with a tiny map so both processes grow it while the other writes. */
    struct st_options opt = {
        .path = path, .map_size_bytes = 64 << 10, .max_map_size_bytes = 256 << 20};
    struct st_env *env = NULL;
    char err[256], name[32];
    if (st_open(&opt, &env, err, sizeof(err)) != 0) {
        fprintf(stderr, "child %u: %s\n", id, err);
        _exit(2);
    }
    snprintf(name, sizeof(name), "ring.%u", id);
    for (unsigned i = 0; i < BATCHES_PER_PROC; i++) {
        struct batch b = {.first = id * 100000 + i * DEALS_PER_BATCH,
                          .count = DEALS_PER_BATCH,
                          .meta_name = name,
                          .meta_value = i + 1};
        int rc = st_write(env, put_batch, &b);
        if (rc != 0) {
            fprintf(stderr, "child %u batch %u: %s\n", id, i, st_strerror(rc));
            _exit(3);
        }
    }
    st_close(env);
    _exit(0);
}

static void test_two_processes(void **state)
{
    (void)state;
    const char *path = db_path("shared");
    /* Create it first so the children race only on writes. */
    st_close(open_at(path, 64 << 10, 256 << 20));
    pid_t pids[PROCS];
    for (unsigned i = 0; i < PROCS; i++) {
        pids[i] = fork();
        assert_true(pids[i] >= 0);
        if (pids[i] == 0)
            writer_proc(path, i + 1);
    }
    /* Meanwhile this process reads snapshots: each is consistent (every deal scheduled). */
    struct st_env *env = open_at(path, 64 << 10, 256 << 20);
    uint64_t last = 0;
    int running = PROCS;
    while (running > 0) {
        struct st_txn *txn;
        uint64_t deals = 0, sched = 0;
        assert_int_equal(st_read_begin(env, &txn), 0);
        assert_int_equal(st_count(txn, ST_DB_DEALS, &deals), 0);
        assert_int_equal(st_count(txn, ST_DB_SCHEDULE, &sched), 0);
        st_read_end(txn);
        assert_int_equal(deals, sched);
        assert_true(deals >= last);
        last = deals;
        for (unsigned i = 0; i < PROCS; i++) {
            int status;
            if (pids[i] > 0 && waitpid(pids[i], &status, WNOHANG) == pids[i]) {
                assert_true(WIFEXITED(status));
                assert_int_equal(WEXITSTATUS(status), 0);
                pids[i] = 0;
                running--;
            }
        }
    }
    assert_int_equal(count_of(env, ST_DB_DEALS), PROCS * BATCHES_PER_PROC * DEALS_PER_BATCH);
    assert_int_equal(count_of(env, ST_DB_SCHEDULE), PROCS * BATCHES_PER_PROC * DEALS_PER_BATCH);
    struct st_txn *txn;
    assert_int_equal(st_read_begin(env, &txn), 0);
    for (unsigned id = 1; id <= PROCS; id++) {
        char name[32];
        uint64_t v = 0;
        snprintf(name, sizeof(name), "ring.%u", id);
        assert_int_equal(st_meta_get_u64(txn, name, &v), 0);
        assert_int_equal(v, BATCHES_PER_PROC);
        for (unsigned n = 0; n < BATCHES_PER_PROC * DEALS_PER_BATCH; n++) {
            struct st_key k = key_of(id * 100000 + n);
            struct st_deal d;
            assert_int_equal(st_deal_get(txn, &k, &d), 0);
        }
    }
    st_read_end(txn);
    st_close(env);
}

static void test_reader_check(void **state)
{
    (void)state;
    const char *path = db_path("reader_check");
    st_close(open_at(path, 0, 0));
    int pipefd[2];
    assert_int_equal(pipe(pipefd), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct st_options opt = {.path = path};
        struct st_env *env;
        struct st_txn *txn;
        char err[256];
        if (st_open(&opt, &env, err, sizeof(err)) != 0 || st_read_begin(env, &txn) != 0)
            _exit(2);
        if (write(pipefd[1], "r", 1) != 1)
            _exit(3);
        pause(); /* dies holding a reader slot */
        _exit(0);
    }
    char c;
    assert_int_equal(read(pipefd[0], &c, 1), 1);
    kill(pid, SIGKILL);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    struct st_env *env = open_at(path, 0, 0); /* st_open itself clears stale slots */
    int dead = -1;
    assert_int_equal(st_reader_check(env, &dead), 0);
    assert_int_equal(dead, 0);
    st_close(env);

    /* The same, with the check called explicitly after the sibling died. */
    env = open_at(path, 0, 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct st_options opt = {.path = path};
        struct st_env *cenv;
        struct st_txn *txn;
        char err[256];
        if (st_open(&opt, &cenv, err, sizeof(err)) != 0 || st_read_begin(cenv, &txn) != 0)
            _exit(2);
        if (write(pipefd[1], "r", 1) != 1)
            _exit(3);
        pause();
        _exit(0);
    }
    assert_int_equal(read(pipefd[0], &c, 1), 1);
    kill(pid, SIGKILL);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_int_equal(st_reader_check(env, &dead), 0);
    assert_int_equal(dead, 1);
    st_close(env);
}

static void test_env_not_shared_across_fork(void **state)
{
    (void)state;
    struct st_env *env = open_at(db_path("env_not_shared_across_fork"), 0, 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct st_txn *txn;
        (void)st_read_begin(env, &txn); /* must abort */
        _exit(0);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGABRT);
    st_close(env);
}

static int set_schema_fn(struct st_txn *txn, void *ud)
{
    return st_meta_put_u64(txn, ST_META_SCHEMA_VERSION, *(uint64_t *)ud);
}

static void test_schema_newer_refused(void **state)
{
    (void)state;
    const char *path = db_path("schema_newer_refused");
    struct st_env *env = open_at(path, 0, 0);
    uint64_t future = ST_SCHEMA_VERSION + 1;
    assert_int_equal(st_write(env, set_schema_fn, &future), 0);
    st_close(env);
    struct st_options opt = {.path = path};
    char err[512] = "";
    env = NULL;
    assert_int_equal(st_open(&opt, &env, err, sizeof(err)), -ENOTSUP);
    assert_null(env);
    assert_non_null(strstr(err, path));
    assert_non_null(strstr(err, "newer than this kdeals supports"));
    /* A folder that is not an LMDB store is refused too. */
    const char *junk = db_path("junk");
    mkdir(junk, 0700);
    char file[600];
    snprintf(file, sizeof(file), "%s/data.mdb", junk);
    FILE *f = fopen(file, "w");
    for (int i = 0; i < 3000; i++)
        fputs("not lmdb ", f);
    fclose(f);
    assert_true(st_open(&(struct st_options){.path = junk}, &env, err, sizeof(err)) < 0);
    assert_non_null(strstr(err, junk));
}

/* The deals db's entry count through a read transaction of ENV. */
static uint64_t deal_count(struct st_env *env)
{
    struct st_txn *txn = NULL;
    assert_int_equal(st_read_begin(env, &txn), 0);
    uint64_t n = 0;
    assert_int_equal(st_count(txn, ST_DB_DEALS, &n), 0);
    st_read_end(txn);
    return n;
}

/* data.mdb's size and the bytes up to the end of the last page its newest meta names. */
static void file_and_last_page(const char *path, off_t *size, uint64_t *need)
{
    MDB_env *mdb = NULL;
    assert_int_equal(mdb_env_create(&mdb), 0);
    assert_int_equal(mdb_env_set_maxdbs(mdb, 16), 0);
    assert_int_equal(mdb_env_open(mdb, path, MDB_RDONLY, 0600), 0);
    MDB_envinfo info;
    MDB_stat est;
    assert_int_equal(mdb_env_info(mdb, &info), 0);
    assert_int_equal(mdb_env_stat(mdb, &est), 0);
    mdb_env_close(mdb);
    char file[600];
    snprintf(file, sizeof(file), "%s/data.mdb", path);
    struct stat st;
    assert_int_equal(stat(file, &st), 0);
    *size = st.st_size;
    *need = ((uint64_t)info.me_last_pgno + 1) * est.ms_psize;
}

/*
 * A healthy data.mdb may end before the last page its meta names: a transaction that
 * allocates pages at the end and frees them before its commit (here a 1 MiB value put and
 * deleted while free pages of an earlier commit are loaded: its overflow pages go back to the
 * free list unwritten) never writes them. Such a store opens and reads, for a reader
 * and a writer (a writer extends it over the free tail); a really truncated one is refused.
 */
static void test_short_file_of_free_pages_is_whole(void **state)
{
    (void)state;
    const char *path = db_path("short_free_tail");
    struct st_env *env = open_at(path, 0, 0);
    struct batch b = {.first = 1, .count = 2000};
    assert_int_equal(st_write(env, put_batch, &b), 0);
    struct batch again = {.first = 1, .count = 500}; /* rewritten: their old pages are free */
    assert_int_equal(st_write(env, put_batch, &again), 0);
    st_close(env);

    MDB_env *mdb = NULL;
    MDB_txn *mt = NULL;
    MDB_dbi dbi;
    assert_int_equal(mdb_env_create(&mdb), 0);
    assert_int_equal(mdb_env_set_maxdbs(mdb, 16), 0);
    assert_int_equal(mdb_env_open(mdb, path, 0, 0600), 0);
    assert_int_equal(mdb_txn_begin(mdb, NULL, 0, &mt), 0);
    assert_int_equal(mdb_dbi_open(mt, "seen", 0, &dbi), 0);
    size_t big = (size_t)1 << 20;
    char *blob = malloc(big);
    assert_non_null(blob);
    memset(blob, 0xab, big);
    MDB_val k = {.mv_size = 8, .mv_data = "zz-probe"}, v = {.mv_size = big, .mv_data = blob};
    assert_int_equal(mdb_put(mt, dbi, &k, &v, 0), 0);
    assert_int_equal(mdb_del(mt, dbi, &k, NULL), 0);
    assert_int_equal(mdb_txn_commit(mt), 0);
    mdb_env_close(mdb);
    free(blob);

    off_t size;
    uint64_t need;
    file_and_last_page(path, &size, &need);
    if ((uint64_t)size >= need)
        fail_msg("LMDB wrote the freed tail (%lld bytes, last page ends at %llu): the case "
                 "this test needs did not arise",
                 (long long)size, (unsigned long long)need);

    struct st_options opt = {.path = path};
    char err[512] = "";
    struct st_env *reader = NULL;
    if (st_open_existing(&opt, &reader, err, sizeof(err)) != 0)
        fail_msg("a whole store %lld bytes short of its free tail refused: %s",
                 (long long)(need - (uint64_t)size), err);
    assert_int_equal(deal_count(reader), 2000);
    st_close(reader);

    env = open_at(path, 0, 0);
    struct batch more = {.first = 5000, .count = 1};
    assert_int_equal(st_write(env, put_batch, &more), 0);
    assert_int_equal(deal_count(env), 2001);
    st_close(env);
    file_and_last_page(path, &size, &need);
    assert_true((uint64_t)size >= need); /* the writer extended it over the free tail */

    /* Cut into the trees: refused, by name, with no SIGBUS here. */
    char file[600];
    snprintf(file, sizeof(file), "%s/data.mdb", path);
    assert_int_equal(truncate(file, (off_t)(need / 4)), 0);
    env = NULL;
    assert_int_equal(st_open(&opt, &env, err, sizeof(err)), -EUCLEAN);
    assert_non_null(strstr(err, "truncated"));
    assert_int_equal(st_open_existing(&opt, &env, err, sizeof(err)), -EUCLEAN);
}

/*
 * Processes opening a new store at the same moment (the workers at the daemon's first start):
 * each opens it, none takes the one being created for an empty file that is not a store.
 */
static void test_concurrent_first_open(void **state)
{
    (void)state;
    enum { ROUNDS = 60, OPENERS = 3 };
    int failed = 0;
    for (int round = 0; round < ROUNDS; round++) {
        char name[32];
        snprintf(name, sizeof(name), "first_open_%d", round);
        const char *path = db_path(name);
        int go[2];
        assert_int_equal(pipe(go), 0);
        pid_t pids[OPENERS];
        for (int i = 0; i < OPENERS; i++) {
            pids[i] = fork();
            assert_true(pids[i] >= 0);
            if (pids[i] == 0) {
                close(go[1]);
                char c;
                if (read(go[0], &c, 1) != 1)
                    _exit(3);
                struct st_options opt = {.path = path, .map_size_bytes = 1u << 20};
                struct st_env *env = NULL;
                char err[512] = "";
                if (st_open(&opt, &env, err, sizeof(err)) != 0) {
                    fprintf(stderr, "opener %d of round %d: %s\n", i, round, err);
                    _exit(1);
                }
                st_close(env);
                _exit(0);
            }
        }
        close(go[0]);
        assert_int_equal(write(go[1], "gogo", OPENERS), OPENERS);
        close(go[1]);
        for (int i = 0; i < OPENERS; i++) {
            int status = 0;
            assert_int_equal(waitpid(pids[i], &status, 0), pids[i]);
            failed += !(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        }
    }
    printf("    %d rounds of %d processes opening a new store at once: %d failed\n", ROUNDS,
           OPENERS, failed);
    assert_int_equal(failed, 0);
}

static void test_mdb_stat_reads_it(void **state)
{
    (void)state;
    if (access("/usr/bin/mdb_stat", X_OK) != 0)
        kd_test_skip("mdb_stat (lmdb-utils) not installed");
    const char *path = db_path("mdb_stat_reads_it");
    struct st_env *env = open_at(path, 0, 0);
    struct batch b = {.first = 1, .count = 3};
    assert_int_equal(st_write(env, put_batch, &b), 0);
    st_close(env);
    char cmd[1200], out[700];
    snprintf(out, sizeof(out), "%s/stat.txt", kd_test_tmpdir());
    snprintf(cmd, sizeof(cmd), "mdb_stat -a '%s' > '%s' 2>&1", path, out);
    int rc = system(cmd);
    assert_true(WIFEXITED(rc));
    assert_int_equal(WEXITSTATUS(rc), 0);
    char *text = kd_read_file(out, NULL);
    assert_non_null(text);
    const char *names[] = {"deals", "schedule", "seen", "pending", "meta"};
    for (size_t i = 0; i < 5; i++) {
        char want[64];
        snprintf(want, sizeof(want), "Status of %s", names[i]);
        if (strstr(text, want) == NULL)
            fail_msg("mdb_stat output lacks '%s':\n%s", want, text);
    }
    assert_non_null(strstr(text, "Entries: 3"));
    free(text);
}

/* A private mount namespace with a 1 MiB tmpfs: ENOSPC without touching the host. */
static void test_disk_full(void **state)
{
    (void)state;
    char mnt[600];
    snprintf(mnt, sizeof(mnt), "%s/tiny", kd_test_tmpdir());
    mkdir(mnt, 0700);
    if (unshare(CLONE_NEWNS) != 0)
        kd_test_skip("cannot create a mount namespace (needs root/CAP_SYS_ADMIN)");
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0 ||
        mount("tmpfs", mnt, "tmpfs", 0, "size=1m") != 0)
        kd_test_skip("cannot mount a tmpfs here");
    char path[700], filler[700];
    snprintf(path, sizeof(path), "%s/db", mnt);
    snprintf(filler, sizeof(filler), "%s/filler", mnt);
    /* A file that takes room now and is deleted later to free space. */
    FILE *f = fopen(filler, "w");
    assert_non_null(f);
    static char chunk[64 << 10];
    memset(chunk, 'f', sizeof(chunk));
    for (int i = 0; i < 4; i++)
        assert_int_equal(fwrite(chunk, 1, sizeof(chunk), f), sizeof(chunk));
    fclose(f);

    struct st_env *env = open_at(path, 8 << 20, 8 << 20);
    unsigned committed = 0;
    int rc = 0;
    struct batch b;
    for (unsigned i = 0; i < 1000; i++) {
        b = (struct batch){
            .first = 1 + i * 10, .count = 10, .meta_name = "ring.pos", .meta_value = i + 1};
        rc = st_write(env, put_batch, &b);
        if (rc != 0)
            break;
        committed++;
    }
    assert_int_equal(rc, -ENOSPC);
    assert_true(committed > 10);
    /* Everything committed is there, nothing of the failed batch is. */
    assert_int_equal(count_of(env, ST_DB_DEALS), committed * 10);
    struct st_txn *txn;
    uint64_t pos = 0;
    assert_int_equal(st_read_begin(env, &txn), 0);
    assert_int_equal(st_meta_get_u64(txn, "ring.pos", &pos), 0);
    assert_int_equal(pos, committed);
    struct st_key k = key_of(b.first);
    struct st_deal d;
    assert_int_equal(st_deal_get(txn, &k, &d), -ENOENT);
    st_read_end(txn);
    /* Once space is freed the same batch goes through. */
    assert_int_equal(unlink(filler), 0);
    assert_int_equal(st_write(env, put_batch, &b), 0);
    st_close(env);
    /* And the store reopens intact. */
    env = open_at(path, 8 << 20, 8 << 20);
    assert_int_equal(count_of(env, ST_DB_DEALS), (committed + 1) * 10);
    assert_int_equal(count_of(env, ST_DB_SCHEDULE), (committed + 1) * 10);
    st_close(env);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keys),
        cmocka_unit_test(test_codec_round_trip),
        cmocka_unit_test(test_codec_second_decoder),
        cmocka_unit_test(test_codec_garbage),
        cmocka_unit_test(test_deals_and_schedule),
        cmocka_unit_test(test_schedule_follows_deal),
        cmocka_unit_test(test_pending_seen_meta),
        cmocka_unit_test(test_write_abort_and_snapshot),
        cmocka_unit_test(test_map_full_grows),
        cmocka_unit_test(test_two_processes),
        cmocka_unit_test(test_reader_check),
        cmocka_unit_test(test_env_not_shared_across_fork),
        cmocka_unit_test(test_schema_newer_refused),
        cmocka_unit_test(test_short_file_of_free_pages_is_whole),
        cmocka_unit_test(test_concurrent_first_open),
        cmocka_unit_test(test_mdb_stat_reads_it),
        cmocka_unit_test(test_disk_full),
    };
    return KD_RUN_TESTS(tests, argc, argv);
}
