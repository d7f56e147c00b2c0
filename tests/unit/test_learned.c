/*
 * test_learned.c: the store's learned-state record (store/codec.h st_learned_*, store.h
 * st_meta_*_learned, st_learned_copy): a round trip through the codec and through a real
 * LMDB store across a close and reopen; every kind of bad record (missing, another version,
 * truncated, not a map, a field missing, twice or of another length, a number that is NaN,
 * infinite, negative, above its bound or not a number) refused with the fields untouched; a
 * state the decoder would refuse is never encoded; whole numbers kept as integers; the copy from
 * one store into another.
 */
#include "kd_test.h"

#include "store/codec.h"
#include "store/store.h"

#include <errno.h>
#include <math.h>
#include <msgpack.h>
#include <stdio.h>
#include <string.h>

/* A stage's learned state as the tests keep it: two fields of numbers. */
struct state {
    double rate[3];
    double bins[4];
};

static size_t fields(struct state *s, struct st_learned_field *f)
{
    f[0] = (struct st_learned_field){"rate", s->rate, 3, 1e6};
    f[1] = (struct st_learned_field){"bins", s->bins, 4, 100};
    return 2;
}

static struct state sample(void)
{
    return (struct state){{2.5, 346.2, 4.0}, {0, 0.125, 99.5, 100}};
}

static void test_round_trip(void **state)
{
    (void)state;
    struct state a = sample(), b;
    memset(&b, 0, sizeof(b));
    struct st_learned_field fa[2], fb[2];
    static uint8_t buf[ST_LEARNED_BYTES];
    size_t len = 0;
    assert_int_equal(st_learned_encode(fa, fields(&a, fa), buf, sizeof(buf), &len), 0);
    assert_int_equal(st_learned_decode(buf, len, fb, fields(&b, fb)), 0);
    assert_memory_equal(&a, &b, sizeof(a)); /* doubles exactly as they were */

    /* The record is plain msgpack any library reads: "v" and one array per field. */
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    assert_int_equal(msgpack_unpack_next(&u, (const char *)buf, len, &off), MSGPACK_UNPACK_SUCCESS);
    assert_int_equal(u.data.type, MSGPACK_OBJECT_MAP);
    assert_int_equal(u.data.via.map.size, 3);
    assert_int_equal(u.data.via.map.ptr[0].val.via.u64, ST_LEARNED_VERSION);
    assert_int_equal(u.data.via.map.ptr[2].val.type, MSGPACK_OBJECT_ARRAY);
    assert_int_equal(u.data.via.map.ptr[2].val.via.array.size, 4);
    /* A whole number is an integer (short and exact), any other a double. */
    const msgpack_object *rate = u.data.via.map.ptr[1].val.via.array.ptr;
    assert_int_equal(rate[0].type, MSGPACK_OBJECT_FLOAT64);
    assert_int_equal(rate[2].type, MSGPACK_OBJECT_POSITIVE_INTEGER);
    assert_int_equal(rate[2].via.u64, 4);
    msgpack_unpacked_destroy(&u);

    /* Too small a buffer: -ENOBUFS, not a cut record. */
    assert_int_equal(st_learned_encode(fa, 2, buf, 10, &len), -ENOBUFS);
}

/* Packs a map of "v" V and the fields as the test writes them (MODE picks a fault). */
enum fault {
    F_NONE,
    F_NAN,
    F_INF,
    F_NEGATIVE,
    F_ABOVE_MAX,
    F_STRING,
    F_SHORT_ARRAY,
    F_LONG_ARRAY,
    F_MISSING_FIELD,
    F_TWICE,
    F_NO_VERSION,
    F_HUGE_ARRAY
};

static size_t pack(uint8_t *out, size_t cap, uint64_t v, enum fault fault)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    size_t n = fault == F_NO_VERSION ? 2 : fault == F_MISSING_FIELD ? 2 : fault == F_TWICE ? 4 : 3;
    msgpack_pack_map(&pk, n);
    if (fault != F_NO_VERSION) {
        msgpack_pack_str(&pk, 1);
        msgpack_pack_str_body(&pk, "v", 1);
        msgpack_pack_uint64(&pk, v);
    }
    msgpack_pack_str(&pk, 4);
    msgpack_pack_str_body(&pk, "rate", 4);
    msgpack_pack_array(&pk, 3);
    msgpack_pack_double(&pk, fault == F_NAN ? NAN : fault == F_INF ? INFINITY : 2.5);
    msgpack_pack_double(&pk, fault == F_NEGATIVE ? -1.0 : fault == F_ABOVE_MAX ? 2e6 : 346.0);
    if (fault == F_STRING) {
        msgpack_pack_str(&pk, 1);
        msgpack_pack_str_body(&pk, "4", 1);
    } else {
        msgpack_pack_int64(&pk, 4); /* an integer is a number too */
    }
    if (fault != F_MISSING_FIELD) {
        size_t len = fault == F_SHORT_ARRAY ? 3 : fault == F_LONG_ARRAY ? 5 : 4;
        msgpack_pack_str(&pk, 4);
        msgpack_pack_str_body(&pk, "bins", 4);
        if (fault == F_HUGE_ARRAY) { /* claims more elements than bytes follow */
            const uint8_t hdr[5] = {0xdd, 0x7f, 0xff, 0xff, 0xff};
            msgpack_sbuffer_write(&sb, (const char *)hdr, sizeof(hdr));
        } else {
            msgpack_pack_array(&pk, len);
            for (size_t i = 0; i < len; i++)
                msgpack_pack_double(&pk, 1.0);
        }
    }
    if (fault == F_TWICE) {
        msgpack_pack_str(&pk, 4);
        msgpack_pack_str_body(&pk, "bins", 4);
        msgpack_pack_array(&pk, 4);
        for (size_t i = 0; i < 4; i++)
            msgpack_pack_double(&pk, 1.0);
    }
    size_t len = sb.size < cap ? sb.size : cap;
    memcpy(out, sb.data, len);
    msgpack_sbuffer_destroy(&sb);
    return len;
}

static int decode(const uint8_t *buf, size_t len, struct state *s)
{
    struct st_learned_field f[2];
    return st_learned_decode(buf, len, f, fields(s, f));
}

static void test_bad_records_refused_untouched(void **state)
{
    (void)state;
    uint8_t buf[512];
    struct state s;
    /* The test's own good record decodes: each fault below is the only thing wrong. */
    size_t len = pack(buf, sizeof(buf), ST_LEARNED_VERSION, F_NONE);
    assert_int_equal(decode(buf, len, &s), 0);
    assert_true(s.rate[2] == 4.0 && s.bins[3] == 1.0);

    static const struct {
        enum fault fault;
        int rc;
    } cases[] = {{F_NAN, -EBADMSG},        {F_INF, -EBADMSG},           {F_NEGATIVE, -EBADMSG},
                 {F_ABOVE_MAX, -EBADMSG},  {F_STRING, -EBADMSG},        {F_SHORT_ARRAY, -EBADMSG},
                 {F_LONG_ARRAY, -EBADMSG}, {F_MISSING_FIELD, -EBADMSG}, {F_TWICE, -EBADMSG},
                 {F_NO_VERSION, -EBADMSG}, {F_HUGE_ARRAY, -EBADMSG}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        len = pack(buf, sizeof(buf), ST_LEARNED_VERSION, cases[i].fault);
        s = sample();
        struct state before = s;
        if (decode(buf, len, &s) != cases[i].rc)
            fail_msg("fault %d: not refused with %d", (int)cases[i].fault, cases[i].rc);
        assert_memory_equal(&s, &before, sizeof(s));
    }

    /* Another version: newer -ENOTSUP, older -EPROTONOSUPPORT; untouched either way. */
    struct state before = sample();
    len = pack(buf, sizeof(buf), ST_LEARNED_VERSION + 1, F_NONE);
    s = before;
    assert_int_equal(decode(buf, len, &s), -ENOTSUP);
    assert_memory_equal(&s, &before, sizeof(s));
#if ST_LEARNED_VERSION > 1
    len = pack(buf, sizeof(buf), ST_LEARNED_VERSION - 1, F_NONE);
#else
    len = pack(buf, sizeof(buf), 0, F_NONE); /* no version 0 is written: refused as garbage */
#endif
    s = before;
    assert_true(decode(buf, len, &s) < 0);
    assert_memory_equal(&s, &before, sizeof(s));

    /* Every truncation of a good record, and garbage. */
    len = pack(buf, sizeof(buf), ST_LEARNED_VERSION, F_NONE);
    for (size_t cut = 0; cut < len; cut++) {
        s = before;
        assert_int_equal(decode(buf, cut, &s), -EBADMSG);
        assert_memory_equal(&s, &before, sizeof(s));
    }
    static const uint8_t junk[] = {0x93, 0x01, 0x02, 0x03}; /* an array, not a map */
    assert_int_equal(decode(junk, sizeof(junk), &s), -EBADMSG);
    assert_int_equal(decode(NULL, 0, &s), -EBADMSG);
}

static void test_unkeepable_state_not_encoded(void **state)
{
    (void)state;
    static uint8_t buf[ST_LEARNED_BYTES];
    size_t len = 0;
    struct st_learned_field f[2];
    double bad[] = {NAN, INFINITY, -1e-9, 1e7};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct state s = sample();
        s.rate[1] = bad[i];
        assert_int_equal(st_learned_encode(f, fields(&s, f), buf, sizeof(buf), &len), -EINVAL);
    }
    static double many[ST_LEARNED_MAX + 1];
    struct st_learned_field big = {"big", many, ST_LEARNED_MAX + 1, 1};
    assert_int_equal(st_learned_encode(&big, 1, buf, sizeof(buf), &len), -EINVAL);
}

/* ---- through a store --------------------------------------------------------------------- */

static struct st_env *open_at(const char *name)
{
    char path[512], err[512] = "";
    snprintf(path, sizeof(path), "%s/%s", kd_test_tmpdir(), name);
    struct st_options opt = {.path = path};
    struct st_env *env = NULL;
    if (st_open(&opt, &env, err, sizeof(err)) != 0)
        fail_msg("st_open(%s): %s", path, err);
    return env;
}

static int put_fn(struct st_txn *txn, void *ud)
{
    struct state *s = ud;
    struct st_learned_field f[2];
    int rc = st_meta_put_learned(txn, ST_META_LEARNED_UPDATER, f, fields(s, f));
    if (rc == 0)
        rc = st_meta_put_bytes(txn, "scan.cursor", "x", 1); /* not a learned record */
    return rc;
}

static int get(struct st_env *env, const char *name, struct state *s)
{
    struct st_txn *txn;
    assert_int_equal(st_read_begin(env, &txn), 0);
    struct st_learned_field f[2];
    int rc = st_meta_get_learned(txn, name, f, fields(s, f));
    st_read_end(txn);
    return rc;
}

static int garbage_fn(struct st_txn *txn, void *ud)
{
    (void)ud;
    return st_meta_put_bytes(txn, ST_META_LEARNED_UPDATER, "\xc1", 1); /* a bin, not the map */
}

struct copy {
    struct st_txn *from;
    size_t n;
};

static int copy_fn(struct st_txn *txn, void *ud)
{
    struct copy *c = ud;
    return st_learned_copy(c->from, txn, &c->n);
}

static void test_store_keeps_it_across_a_reopen(void **state)
{
    (void)state;
    struct st_env *env = open_at("learned");
    struct state a = sample(), b;
    assert_int_equal(get(env, ST_META_LEARNED_UPDATER, &b), -ENOENT);
    assert_int_equal(st_write(env, put_fn, &a), 0);
    st_close(env);
    env = open_at("learned"); /* a restart */
    memset(&b, 0, sizeof(b));
    assert_int_equal(get(env, ST_META_LEARNED_UPDATER, &b), 0);
    assert_memory_equal(&a, &b, sizeof(a));
    assert_int_equal(get(env, ST_META_LEARNED_COMMITTER, &b), -ENOENT);

    /* Copied into another store: the learned record and nothing else. */
    struct st_env *other = open_at("learned_copy");
    struct copy c = {0};
    assert_int_equal(st_read_begin(env, &c.from), 0);
    assert_int_equal(st_write(other, copy_fn, &c), 0);
    st_read_end(c.from);
    assert_int_equal(c.n, 1);
    memset(&b, 0, sizeof(b));
    assert_int_equal(get(other, ST_META_LEARNED_UPDATER, &b), 0);
    assert_memory_equal(&a, &b, sizeof(a));
    struct st_txn *txn;
    char cur[8];
    size_t n = 0;
    assert_int_equal(st_read_begin(other, &txn), 0);
    assert_int_equal(st_meta_get_bytes(txn, "scan.cursor", cur, sizeof(cur), &n), -ENOENT);
    st_read_end(txn);
    st_close(other);

    /* A damaged record reads as an error, never as numbers. */
    assert_int_equal(st_write(env, garbage_fn, NULL), 0);
    b = sample();
    assert_int_equal(get(env, ST_META_LEARNED_UPDATER, &b), -EBADMSG);
    st_close(env);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_bad_records_refused_untouched),
        cmocka_unit_test(test_unkeepable_state_not_encoded),
        cmocka_unit_test(test_store_keeps_it_across_a_reopen),
    };
    return KD_RUN_TESTS(tests, argc, argv);
}
