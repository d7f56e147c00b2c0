/*
 * alertdb.c: the alerts' records in the store, their keys and msgpack encoding. See alertdb.h.
 */
#include "outbox/alertdb.h"

#include <errno.h>
#include <inttypes.h>
#include <msgpack.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

#include "base/mpcheck.h"
#include "store/store.h"

static const char *const delivery_state_names[] = {
#define OB_D_NAME(id, word) word,
    OB_DELIVERY_STATES(OB_D_NAME)
#undef OB_D_NAME
};

const char *ob_delivery_state_name(unsigned s)
{
    return s < OB_D_COUNT ? delivery_state_names[s] : "?";
}

int ob_alert_key(const char *alert, const struct st_key *key, uint32_t entry,
                 uint8_t out[OB_ALERT_KEY_LEN])
{
    size_t n = strlen(alert);
    if (n == 0 || n >= CFG_NAME_MAX)
        return -EINVAL;
    memset(out, 0, CFG_NAME_MAX);
    memcpy(out, alert, n);
    memcpy(out + CFG_NAME_MAX, key->b, ST_KEY_LEN);
    for (int i = 0; i < 4; i++)
        out[CFG_NAME_MAX + ST_KEY_LEN + i] = (uint8_t)(entry >> (24 - 8 * i));
    return 0;
}

bool ob_alert_key_parse(const char *alert, const void *k, size_t klen, struct st_key *key,
                        uint32_t *entry)
{
    size_t n = strlen(alert);
    const uint8_t *b = k;
    if (klen != OB_ALERT_KEY_LEN || n == 0 || n >= CFG_NAME_MAX || memcmp(b, alert, n) != 0)
        return false;
    for (size_t i = n; i < CFG_NAME_MAX; i++)
        if (b[i] != 0)
            return false;
    memcpy(key->b, b + CFG_NAME_MAX, ST_KEY_LEN);
    uint32_t e = 0;
    for (int i = 0; i < 4; i++)
        e = e << 8 | b[CFG_NAME_MAX + ST_KEY_LEN + i];
    *entry = e;
    return true;
}

/* ---- msgpack ---------------------------------------------------------------------------- */

struct out {
    uint8_t *buf;
    size_t cap, len;
    bool full;
};

static int out_write(void *data, const char *p, size_t n)
{
    struct out *o = data;
    if (o->len + n > o->cap) {
        o->full = true;
        return -1;
    }
    memcpy(o->buf + o->len, p, n);
    o->len += n;
    return 0;
}

static void pack_key(msgpack_packer *pk, const char *k)
{
    msgpack_pack_str(pk, strlen(k));
    msgpack_pack_str_body(pk, k, strlen(k));
}

int ob_member_encode(const struct ob_member *m, uint8_t *buf, size_t cap, size_t *len)
{
    struct out o = {buf, cap, 0, false};
    msgpack_packer pk;
    msgpack_packer_init(&pk, &o, out_write);
    msgpack_pack_map(&pk, 6);
    pack_key(&pk, "v");
    msgpack_pack_uint64(&pk, OB_ALERTDB_VERSION);
    pack_key(&pk, "in_view");
    m->in_view ? msgpack_pack_true(&pk) : msgpack_pack_false(&pk);
    pack_key(&pk, "entries");
    msgpack_pack_uint32(&pk, m->entries);
    pack_key(&pk, "entered_ms");
    msgpack_pack_int64(&pk, m->entered_ms);
    pack_key(&pk, "left_ms");
    msgpack_pack_int64(&pk, m->left_ms);
    pack_key(&pk, "seq");
    msgpack_pack_uint64(&pk, m->seq);
    if (o.full)
        return -ENOBUFS;
    *len = o.len;
    return 0;
}

int ob_delivery_encode(const struct ob_delivery *d, uint8_t *buf, size_t cap, size_t *len)
{
    struct out o = {buf, cap, 0, false};
    msgpack_packer pk;
    msgpack_packer_init(&pk, &o, out_write);
    msgpack_pack_map(&pk, 10);
    pack_key(&pk, "v");
    msgpack_pack_uint64(&pk, OB_ALERTDB_VERSION);
    pack_key(&pk, "status");
    msgpack_pack_uint8(&pk, d->status);
    pack_key(&pk, "attempts");
    msgpack_pack_uint32(&pk, d->attempts);
    pack_key(&pk, "next_ms");
    msgpack_pack_int64(&pk, d->next_ms);
    pack_key(&pk, "entered_ms");
    msgpack_pack_int64(&pk, d->entered_ms);
    pack_key(&pk, "seq");
    msgpack_pack_uint64(&pk, d->seq);
    pack_key(&pk, "sent_ms");
    msgpack_pack_int64(&pk, d->sent_ms);
    pack_key(&pk, "last_status");
    msgpack_pack_int32(&pk, d->last_status);
    pack_key(&pk, "last_error");
    size_t el = strnlen(d->last_error, sizeof(d->last_error) - 1);
    msgpack_pack_str(&pk, el);
    msgpack_pack_str_body(&pk, d->last_error, el);
    pack_key(&pk, "record");
    msgpack_pack_bin(&pk, d->record_len);
    msgpack_pack_bin_body(&pk, d->record, d->record_len);
    if (o.full || d->record_len > sizeof(d->record))
        return -ENOBUFS;
    *len = o.len;
    return 0;
}

static bool key_is(const msgpack_object *k, const char *s)
{
    size_t n = strlen(s);
    return k->type == MSGPACK_OBJECT_STR && k->via.str.size == n &&
           memcmp(k->via.str.ptr, s, n) == 0;
}

static int get_i64(const msgpack_object *o, int64_t *v)
{
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER && o->via.u64 <= INT64_MAX)
        *v = (int64_t)o->via.u64;
    else if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
        *v = o->via.i64;
    else
        return -EBADMSG;
    return 0;
}

static int get_u64(const msgpack_object *o, uint64_t *v)
{
    if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return -EBADMSG;
    *v = o->via.u64;
    return 0;
}

/* Unpacks BUF into U as one map; checks its version. */
static int unpack_map(const void *buf, size_t len, msgpack_unpacked *u)
{
    if (buf == NULL || kd_msgpack_precheck(buf, len) != 0)
        return -EBADMSG;
    size_t off = 0;
    msgpack_unpack_return ur = msgpack_unpack_next(u, buf, len, &off);
    if (ur == MSGPACK_UNPACK_NOMEM_ERROR)
        return -ENOMEM;
    if (ur != MSGPACK_UNPACK_SUCCESS || off != len || u->data.type != MSGPACK_OBJECT_MAP)
        return -EBADMSG;
    const msgpack_object_map *m = &u->data.via.map;
    for (uint32_t i = 0; i < m->size; i++) {
        uint64_t v;
        if (key_is(&m->ptr[i].key, "v"))
            return get_u64(&m->ptr[i].val, &v) != 0 || v == 0 ? -EBADMSG
                   : v > OB_ALERTDB_VERSION                   ? -ENOTSUP
                                                              : 0;
    }
    return -EBADMSG;
}

int ob_member_decode(const void *buf, size_t len, struct ob_member *out)
{
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    int rc = unpack_map(buf, len, &u);
    struct ob_member m;
    memset(&m, 0, sizeof(m));
    const msgpack_object_map *mp = &u.data.via.map;
    for (uint32_t i = 0; rc == 0 && i < mp->size; i++) {
        const msgpack_object *k = &mp->ptr[i].key, *v = &mp->ptr[i].val;
        uint64_t x = 0;
        if (key_is(k, "in_view")) {
            if (v->type != MSGPACK_OBJECT_BOOLEAN)
                rc = -EBADMSG;
            else
                m.in_view = v->via.boolean;
        } else if (key_is(k, "entries")) {
            rc = get_u64(v, &x) != 0 || x > UINT32_MAX ? -EBADMSG : 0;
            m.entries = (uint32_t)x;
        } else if (key_is(k, "entered_ms")) {
            rc = get_i64(v, &m.entered_ms);
        } else if (key_is(k, "left_ms")) {
            rc = get_i64(v, &m.left_ms);
        } else if (key_is(k, "seq")) {
            rc = get_u64(v, &m.seq);
        }
    }
    msgpack_unpacked_destroy(&u);
    if (rc == 0)
        *out = m;
    return rc;
}

int ob_delivery_decode(const void *buf, size_t len, struct ob_delivery *out)
{
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    int rc = unpack_map(buf, len, &u);
    static __thread struct ob_delivery d;
    memset(&d, 0, sizeof(d));
    const msgpack_object_map *mp = &u.data.via.map;
    for (uint32_t i = 0; rc == 0 && i < mp->size; i++) {
        const msgpack_object *k = &mp->ptr[i].key, *v = &mp->ptr[i].val;
        uint64_t x = 0;
        int64_t y = 0;
        if (key_is(k, "status")) {
            rc = get_u64(v, &x) != 0 || x >= OB_D_COUNT ? -EBADMSG : 0;
            d.status = (uint8_t)x;
        } else if (key_is(k, "attempts")) {
            rc = get_u64(v, &x) != 0 || x > UINT32_MAX ? -EBADMSG : 0;
            d.attempts = (uint32_t)x;
        } else if (key_is(k, "next_ms")) {
            rc = get_i64(v, &d.next_ms);
        } else if (key_is(k, "entered_ms")) {
            rc = get_i64(v, &d.entered_ms);
        } else if (key_is(k, "seq")) {
            rc = get_u64(v, &d.seq);
        } else if (key_is(k, "sent_ms")) {
            rc = get_i64(v, &d.sent_ms);
        } else if (key_is(k, "last_status")) {
            rc = get_i64(v, &y) != 0 || y < INT32_MIN || y > INT32_MAX ? -EBADMSG : 0;
            d.last_status = (int32_t)y;
        } else if (key_is(k, "last_error")) {
            if (v->type != MSGPACK_OBJECT_STR || v->via.str.size >= sizeof(d.last_error))
                rc = -EBADMSG;
            else
                memcpy(d.last_error, v->via.str.ptr, v->via.str.size);
        } else if (key_is(k, "record")) {
            if (v->type != MSGPACK_OBJECT_BIN || v->via.bin.size > sizeof(d.record))
                rc = -EBADMSG;
            else {
                memcpy(d.record, v->via.bin.ptr, v->via.bin.size);
                d.record_len = v->via.bin.size;
            }
        }
    }
    msgpack_unpacked_destroy(&u);
    if (rc == 0)
        *out = d;
    return rc;
}

/* ---- in the store ----------------------------------------------------------------------- */

int ob_member_get(struct st_txn *txn, const char *alert, const struct st_key *key,
                  struct ob_member *out)
{
    uint8_t k[OB_ALERT_KEY_LEN];
    if (ob_alert_key(alert, key, 0, k) != 0)
        return -EINVAL;
    const void *v;
    size_t n;
    int rc = st_raw_get(txn, ST_DB_ALERTS, k, sizeof(k), &v, &n);
    return rc != 0 ? rc : ob_member_decode(v, n, out);
}

int ob_member_put(struct st_txn *txn, const char *alert, const struct st_key *key,
                  const struct ob_member *m)
{
    uint8_t k[OB_ALERT_KEY_LEN], buf[128];
    size_t n;
    if (ob_alert_key(alert, key, 0, k) != 0)
        return -EINVAL;
    int rc = ob_member_encode(m, buf, sizeof(buf), &n);
    return rc != 0 ? rc : st_raw_put(txn, ST_DB_ALERTS, k, sizeof(k), buf, n);
}

int ob_delivery_get(struct st_txn *txn, const char *alert, const struct st_key *key, uint32_t entry,
                    struct ob_delivery *out)
{
    uint8_t k[OB_ALERT_KEY_LEN];
    if (entry == 0 || ob_alert_key(alert, key, entry, k) != 0)
        return -EINVAL;
    const void *v;
    size_t n;
    int rc = st_raw_get(txn, ST_DB_ALERTS, k, sizeof(k), &v, &n);
    return rc != 0 ? rc : ob_delivery_decode(v, n, out);
}

int ob_delivery_put(struct st_txn *txn, const char *alert, const struct st_key *key, uint32_t entry,
                    const struct ob_delivery *d)
{
    uint8_t k[OB_ALERT_KEY_LEN];
    static __thread uint8_t buf[ST_RECORD_MAX + 512];
    size_t n;
    if (entry == 0 || ob_alert_key(alert, key, entry, k) != 0)
        return -EINVAL;
    int rc = ob_delivery_encode(d, buf, sizeof(buf), &n);
    return rc != 0 ? rc : st_raw_put(txn, ST_DB_ALERTS, k, sizeof(k), buf, n);
}

const char *ob_alert_meta(const char *alert, const char *what, char buf[64])
{
    snprintf(buf, 64, "alert.%.31s.%s", alert, what);
    return buf;
}

void ob_delivery_id(const char *store_id, const char *alert, const struct st_key *key, uint64_t seq,
                    char buf[OB_DELIVERY_ID_MAX])
{
    char asin[ST_ASIN_LEN + 1];
    st_key_asin(key, asin);
    snprintf(buf, OB_DELIVERY_ID_MAX, "kd-%.12s-%.31s-%u-%s-%" PRIu64, store_id, alert,
             st_key_domain(key), asin, seq);
}

int ob_store_id(struct st_txn *txn, char id[33])
{
    size_t n = 0;
    int rc = st_meta_get_bytes(txn, OB_META_STORE_ID, id, 32, &n);
    if (rc == 0 && n == 32) {
        id[32] = '\0';
        return 0;
    }
    uint8_t raw[16];
    if (getrandom(raw, sizeof(raw), 0) != (ssize_t)sizeof(raw))
        return -EIO;
    for (int i = 0; i < 16; i++)
        snprintf(id + 2 * i, 3, "%02x", raw[i]);
    return st_meta_put_bytes(txn, OB_META_STORE_ID, id, 32);
}
