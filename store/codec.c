/*
 * codec.c: msgpack encoding of the store's records and keys. See codec.h for the format.
 *
 * The three record kinds share one table-driven codec: each field list in codec.h becomes a
 * table of (name, kind, offset, size), the encoder walks it and the decoder looks each map
 * key up in it. Encoding writes into a caller's fixed buffer (records are small and
 * bounded), so a put costs no allocation. Decoding first runs a pre-scan that proves the
 * bytes are exactly one msgpack object whose containers cannot claim more elements than
 * bytes remain; only then does msgpack-c build its object tree, so hostile input cannot make
 * it allocate more than a small multiple of the input size.
 */
#include "store/codec.h"

#include "base/mpcheck.h"

#include "base/kd_assert.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <msgpack.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/* ---- keys ------------------------------------------------------------------------------ */

static bool asin_valid(const char *asin, size_t n)
{
    if (n != ST_ASIN_LEN)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = asin[i];
        if (!((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z')))
            return false;
    }
    return true;
}

int st_key_make(unsigned domain, const char *asin, struct st_key *out)
{
    if (asin == NULL || domain < 1 || domain > 255 ||
        !asin_valid(asin, strnlen(asin, ST_ASIN_LEN + 1)))
        return -EINVAL;
    out->b[0] = (uint8_t)domain;
    memcpy(out->b + 1, asin, ST_ASIN_LEN);
    return 0;
}

unsigned st_key_domain(const struct st_key *key)
{
    return key->b[0];
}

void st_key_asin(const struct st_key *key, char out[ST_ASIN_LEN + 1])
{
    memcpy(out, key->b + 1, ST_ASIN_LEN);
    out[ST_ASIN_LEN] = '\0';
}

int st_deal_key(const struct st_deal *d, struct st_key *out)
{
    return st_key_make(d->domain, d->asin, out);
}

int st_record_key(const struct st_record *r, struct st_key *out)
{
    return st_key_make(r->domain, r->asin, out);
}

int st_pending_key(const struct st_pending *p, struct st_key *out)
{
    return st_key_make(p->domain, p->asin, out);
}

/* Copies at most CAP - 1 bytes of TEXT (LEN bytes, stops at a NUL) into DST, never cutting a
 * UTF-8 sequence in half. */
static void set_text(char *dst, size_t cap, const char *text, size_t len)
{
    const char *nul = memchr(text, '\0', len);
    if (nul != NULL)
        len = (size_t)(nul - text);
    size_t n = len < cap - 1 ? len : cap - 1;
    if (n < len) {
        /* Do not keep the first bytes of a multi-byte sequence cut at n. */
        while (n > 0 && ((unsigned char)text[n] & 0xC0) == 0x80)
            n--;
    }
    memcpy(dst, text, n);
    dst[n] = '\0';
}

void st_deal_set_title(struct st_deal *d, const char *title, size_t len)
{
    set_text(d->title, sizeof(d->title), title, len);
}

void st_record_set_title(struct st_record *r, const char *title, size_t len)
{
    set_text(r->title, sizeof(r->title), title, len);
}

void st_record_set_category(struct st_record *r, const char *name, size_t len)
{
    set_text(r->category_name, sizeof(r->category_name), name, len);
}

void st_record_set_source_url(struct st_record *r, const char *url, size_t len)
{
    set_text(r->source_url, sizeof(r->source_url), url, len);
}

void st_record_set_note(struct st_record *r, const char *note, size_t len)
{
    set_text(r->note, sizeof(r->note), note, len);
}

void st_pending_init(struct st_pending *p)
{
    memset(p, 0, sizeof(*p));
    jd_inputs_init(&p->in);
    p->peek_buy_cents = p->sell_estimate_cents = -1;
}

void st_record_init(struct st_record *r)
{
    memset(r, 0, sizeof(*r));
    jd_inputs_init(&r->in);
    memset(&r->v, 0, sizeof(r->v));
    r->v.sell_cents = r->v.basis_cents = r->v.buy_cents = r->v.landed_cents = -1;
    r->v.max_cost_cents = r->v.max_cost_roi_cents = r->v.max_cost_profit_cents = -1;
    r->v.referral_cents = r->v.closing_cents = r->v.fba_cents = r->v.fbm_shipping_cents = -1;
    r->v.tax_cents = r->v.prep_cents = r->v.inbound_cents = r->v.referral_bp = -1;
    r->bought_cost_cents = -1;
}

/* ---- field tables ---------------------------------------------------------------------- */

enum st_kind { K_I64, K_I32, K_U32, K_U64, K_U8, K_BOOL, K_STR };

struct st_field {
    const char *name;
    enum st_kind kind;
    size_t off, size;
};

#define ROW(T, kind, name, size)      {#name, K_##kind, offsetof(T, name), sizeof(((T *)0)->name)},
#define DEAL_ROW(kind, name, size)    ROW(struct st_deal, kind, name, size)
#define SEEN_ROW(kind, name, size)    ROW(struct st_seen, kind, name, size)
#define PENDING_ROW(kind, name, size) ROW(struct st_pending, kind, name, size)

static const struct st_field deal_fields[] = {ST_DEAL_FIELDS(DEAL_ROW)};

#define RECORD_ROW(kind, name, size) ROW(struct st_record, kind, name, size)
#define INPUT_ROW(kind, name, size)                                                                \
    {#name, K_##kind, offsetof(struct st_record, in.name),                                         \
     sizeof(((struct st_record *)0)->in.name)},
#define VERDICT_ROW(kind, member, key)                                                             \
    {#key, K_##kind, offsetof(struct st_record, v.member),                                         \
     sizeof(((struct st_record *)0)->v.member)},
static const struct st_field record_fields[] = {ST_RECORD_HEAD_FIELDS(RECORD_ROW) JD_INPUT_FIELDS(
    INPUT_ROW) ST_VERDICT_FIELDS(VERDICT_ROW) ST_RECORD_TAIL_FIELDS(RECORD_ROW)};
static const struct st_field seen_fields[] = {ST_SEEN_FIELDS(SEEN_ROW)};
#define HISTORY_ROW(kind, name, size) ROW(struct st_history, kind, name, size)
#define CHANGE_ROW(kind, name, size)  ROW(struct st_change, kind, name, size)
static const struct st_field history_fields[] = {ST_HISTORY_FIELDS(HISTORY_ROW)};
static const struct st_field change_fields[] = {ST_CHANGE_FIELDS(CHANGE_ROW)};
#define PENDING_INPUT_ROW(kind, name, size)                                                        \
    {#name, K_##kind, offsetof(struct st_pending, in.name),                                        \
     sizeof(((struct st_pending *)0)->in.name)},
static const struct st_field pending_fields[] = {ST_PENDING_FIELDS(PENDING_ROW)
                                                     JD_INPUT_FIELDS(PENDING_INPUT_ROW)};

#define ST_FIELDS_MAX 256 /* the decoder's bitmap of fields seen */
_Static_assert(KD_ARRAY_LEN(record_fields) <= ST_FIELDS_MAX, "the decoder tracks fields seen");

/* ---- encoding -------------------------------------------------------------------------- */

struct fixed_buf {
    uint8_t *p;
    size_t cap, len;
};

static int fixed_write(void *data, const char *buf, size_t len)
{
    struct fixed_buf *fb = data;
    if (len > fb->cap - fb->len)
        return -1;
    memcpy(fb->p + fb->len, buf, len);
    fb->len += len;
    return 0;
}

static int pack_cstr(msgpack_packer *pk, const char *s, size_t n)
{
    return msgpack_pack_str(pk, n) | msgpack_pack_str_body(pk, s, n);
}

static int encode_fields(const struct st_field *f, size_t nf, uint64_t version, const void *rec,
                         uint8_t *buf, size_t cap, size_t *len)
{
    struct fixed_buf fb = {buf, cap, 0};
    msgpack_packer pk;
    msgpack_packer_init(&pk, &fb, fixed_write);
    int bad = msgpack_pack_map(&pk, nf + 1);
    bad |= pack_cstr(&pk, "v", 1);
    bad |= msgpack_pack_uint64(&pk, version);
    for (size_t i = 0; i < nf; i++) {
        const char *p = (const char *)rec + f[i].off;
        bad |= pack_cstr(&pk, f[i].name, strlen(f[i].name));
        switch (f[i].kind) {
        case K_I64: {
            int64_t v;
            memcpy(&v, p, sizeof(v));
            bad |= msgpack_pack_int64(&pk, v);
            break;
        }
        case K_I32: {
            int32_t v;
            memcpy(&v, p, sizeof(v));
            bad |= msgpack_pack_int32(&pk, v);
            break;
        }
        case K_U32: {
            uint32_t v;
            memcpy(&v, p, sizeof(v));
            bad |= msgpack_pack_uint32(&pk, v);
            break;
        }
        case K_U64: {
            uint64_t v;
            memcpy(&v, p, sizeof(v));
            bad |= msgpack_pack_uint64(&pk, v);
            break;
        }
        case K_U8:
            bad |= msgpack_pack_uint8(&pk, *(const uint8_t *)p);
            break;
        case K_BOOL:
            bad |= *(const bool *)p ? msgpack_pack_true(&pk) : msgpack_pack_false(&pk);
            break;
        case K_STR:
            bad |= pack_cstr(&pk, p, strnlen(p, f[i].size - 1));
            break;
        }
    }
    if (bad != 0)
        return -ENOBUFS;
    *len = fb.len;
    return 0;
}

int st_deal_encode(const struct st_deal *d, uint8_t *buf, size_t cap, size_t *len)
{
    struct st_key k;
    if (st_deal_key(d, &k) != 0)
        return -EINVAL;
    return encode_fields(deal_fields, KD_ARRAY_LEN(deal_fields), ST_DEAL_VERSION, d, buf, cap, len);
}

int st_record_encode(const struct st_record *r, uint8_t *buf, size_t cap, size_t *len)
{
    struct st_key k;
    if (st_record_key(r, &k) != 0)
        return -EINVAL;
    return encode_fields(record_fields, KD_ARRAY_LEN(record_fields), ST_RECORD_VERSION, r, buf, cap,
                         len);
}

int st_history_encode(const struct st_history *h, uint8_t *buf, size_t cap, size_t *len)
{
    return encode_fields(history_fields, KD_ARRAY_LEN(history_fields), ST_HISTORY_VERSION, h, buf,
                         cap, len);
}

int st_change_encode(const struct st_change *c, uint8_t *buf, size_t cap, size_t *len)
{
    return encode_fields(change_fields, KD_ARRAY_LEN(change_fields), ST_CHANGE_VERSION, c, buf, cap,
                         len);
}

int st_seen_encode(const struct st_seen *s, uint8_t *buf, size_t cap, size_t *len)
{
    return encode_fields(seen_fields, KD_ARRAY_LEN(seen_fields), ST_SEEN_VERSION, s, buf, cap, len);
}

int st_pending_encode(const struct st_pending *p, uint8_t *buf, size_t cap, size_t *len)
{
    struct st_key k;
    if (st_pending_key(p, &k) != 0)
        return -EINVAL;
    return encode_fields(pending_fields, KD_ARRAY_LEN(pending_fields), ST_PENDING_VERSION, p, buf,
                         cap, len);
}

/* ---- decoding -------------------------------------------------------------------------- */

static bool obj_is(const msgpack_object *o, const char *s, size_t n)
{
    return o->type == MSGPACK_OBJECT_STR && o->via.str.size == n &&
           memcmp(o->via.str.ptr, s, n) == 0;
}

/* An integer object as [lo, hi]-checked int64 (hi <= INT64_MAX) or as a u64. */
static int obj_int(const msgpack_object *o, int64_t lo, int64_t hi, int64_t *v)
{
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
        if (o->via.u64 > (uint64_t)hi)
            return -EBADMSG;
        *v = (int64_t)o->via.u64;
    } else if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
        *v = o->via.i64;
    } else {
        return -EBADMSG;
    }
    return *v < lo || *v > hi ? -EBADMSG : 0;
}

static int decode_value(const struct st_field *f, const msgpack_object *o, char *p)
{
    int64_t v = 0;
    switch (f->kind) {
    case K_I64:
        if (obj_int(o, INT64_MIN, INT64_MAX, &v) != 0)
            return -EBADMSG;
        memcpy(p, &v, sizeof(v));
        return 0;
    case K_I32: {
        if (obj_int(o, INT32_MIN, INT32_MAX, &v) != 0)
            return -EBADMSG;
        int32_t x = (int32_t)v;
        memcpy(p, &x, sizeof(x));
        return 0;
    }
    case K_U32: {
        if (obj_int(o, 0, UINT32_MAX, &v) != 0)
            return -EBADMSG;
        uint32_t x = (uint32_t)v;
        memcpy(p, &x, sizeof(x));
        return 0;
    }
    case K_U64:
        if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
            return -EBADMSG;
        memcpy(p, &o->via.u64, sizeof(uint64_t));
        return 0;
    case K_U8:
        if (obj_int(o, 0, UINT8_MAX, &v) != 0)
            return -EBADMSG;
        *(uint8_t *)p = (uint8_t)v;
        return 0;
    case K_BOOL:
        if (o->type != MSGPACK_OBJECT_BOOLEAN)
            return -EBADMSG;
        *(bool *)p = o->via.boolean;
        return 0;
    case K_STR:
        if (o->type != MSGPACK_OBJECT_STR || o->via.str.size >= f->size ||
            memchr(o->via.str.ptr, '\0', o->via.str.size) != NULL)
            return -EBADMSG;
        memcpy(p, o->via.str.ptr, o->via.str.size);
        p[o->via.str.size] = '\0';
        return 0;
    }
    return -EBADMSG;
}

/* Decodes into the scratch record REC, whose absent fields keep their initial values. */
static int decode_fields(const struct st_field *f, size_t nf, uint64_t version, const void *buf,
                         size_t len, void *rec)
{
    if (buf == NULL || kd_msgpack_precheck(buf, len) != 0)
        return -EBADMSG;
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    int rc = -EBADMSG;
    msgpack_unpack_return ur = msgpack_unpack_next(&u, buf, len, &off);
    if (ur == MSGPACK_UNPACK_NOMEM_ERROR)
        rc = -ENOMEM;
    if (ur != MSGPACK_UNPACK_SUCCESS || off != len || u.data.type != MSGPACK_OBJECT_MAP)
        goto out;
    const msgpack_object_map *m = &u.data.via.map;

    /* The version first: a newer record is refused whatever else it holds. */
    int64_t v = -1;
    for (uint32_t i = 0; i < m->size; i++) {
        if (obj_is(&m->ptr[i].key, "v", 1)) {
            if (v != -1 || obj_int(&m->ptr[i].val, 1, INT64_MAX, &v) != 0)
                goto out;
        }
    }
    if (v == -1)
        goto out;
    if ((uint64_t)v > version) {
        rc = -ENOTSUP;
        goto out;
    }

    uint64_t seen[ST_FIELDS_MAX / 64] = {0};
    for (uint32_t i = 0; i < m->size; i++) {
        const msgpack_object *key = &m->ptr[i].key;
        if (key->type != MSGPACK_OBJECT_STR)
            goto out;
        if (obj_is(key, "v", 1))
            continue;
        /* Encoders write the fields in table order, so try entry i-1 first. */
        size_t idx = nf;
        if (i >= 1 && i - 1 < nf && obj_is(key, f[i - 1].name, strlen(f[i - 1].name))) {
            idx = i - 1;
        } else {
            for (size_t j = 0; j < nf; j++) {
                if (obj_is(key, f[j].name, strlen(f[j].name))) {
                    idx = j;
                    break;
                }
            }
        }
        if (idx == nf)
            continue; /* a field this version does not know */
        if ((seen[idx / 64] >> (idx % 64)) & 1)
            goto out;
        seen[idx / 64] |= (uint64_t)1 << (idx % 64);
        if (decode_value(&f[idx], &m->ptr[i].val, (char *)rec + f[idx].off) != 0)
            goto out;
    }
    rc = 0;
out:
    msgpack_unpacked_destroy(&u);
    return rc;
}

int st_deal_decode(const void *buf, size_t len, struct st_deal *out)
{
    struct st_deal tmp;
    memset(&tmp, 0, sizeof(tmp));
    int rc = decode_fields(deal_fields, KD_ARRAY_LEN(deal_fields), ST_DEAL_VERSION, buf, len, &tmp);
    struct st_key k;
    if (rc == 0 && st_deal_key(&tmp, &k) != 0)
        rc = -EBADMSG;
    if (rc == 0)
        *out = tmp;
    return rc;
}

int st_record_decode(const void *buf, size_t len, struct st_record *out)
{
    struct st_record tmp;
    st_record_init(&tmp);
    int rc = decode_fields(record_fields, KD_ARRAY_LEN(record_fields), ST_RECORD_VERSION, buf, len,
                           &tmp);
    struct st_key k;
    if (rc == 0 && st_record_key(&tmp, &k) != 0)
        rc = -EBADMSG;
    if (rc == 0)
        *out = tmp;
    return rc;
}

int st_history_decode(const void *buf, size_t len, struct st_history *out)
{
    struct st_history tmp;
    memset(&tmp, 0, sizeof(tmp));
    int rc = decode_fields(history_fields, KD_ARRAY_LEN(history_fields), ST_HISTORY_VERSION, buf,
                           len, &tmp);
    if (rc == 0)
        *out = tmp;
    return rc;
}

int st_change_decode(const void *buf, size_t len, struct st_change *out)
{
    struct st_change tmp;
    memset(&tmp, 0, sizeof(tmp));
    int rc = decode_fields(change_fields, KD_ARRAY_LEN(change_fields), ST_CHANGE_VERSION, buf, len,
                           &tmp);
    if (rc == 0)
        *out = tmp;
    return rc;
}

static const char *const state_names[] = {"none", "deal", "failing", "rejected"};
static const char *const event_names[] = {"none", "commit", "recheck", "rejudge",
                                          "mark", "expire", "delete",  "migrate"};
static const char *const mark_names[] = {"none", "bought", "ignored"};

const char *st_state_name(unsigned state)
{
    return state < KD_ARRAY_LEN(state_names) ? state_names[state] : "?";
}

const char *st_event_name(unsigned event)
{
    return event < KD_ARRAY_LEN(event_names) ? event_names[event] : "?";
}

const char *st_mark_name(unsigned mark)
{
    return mark < KD_ARRAY_LEN(mark_names) ? mark_names[mark] : "?";
}

int st_seen_decode(const void *buf, size_t len, struct st_seen *out)
{
    struct st_seen tmp;
    memset(&tmp, 0, sizeof(tmp));
    int rc = decode_fields(seen_fields, KD_ARRAY_LEN(seen_fields), ST_SEEN_VERSION, buf, len, &tmp);
    if (rc == 0)
        *out = tmp;
    return rc;
}

int st_pending_decode(const void *buf, size_t len, struct st_pending *out)
{
    struct st_pending tmp;
    st_pending_init(&tmp);
    tmp.peek_buy_cents = tmp.sell_estimate_cents = 0;
    int rc = decode_fields(pending_fields, KD_ARRAY_LEN(pending_fields), ST_PENDING_VERSION, buf,
                           len, &tmp);
    struct st_key k;
    if (rc == 0 && st_pending_key(&tmp, &k) != 0)
        rc = -EBADMSG;
    if (rc == 0)
        *out = tmp;
    return rc;
}

/* ---- scalar values (meta) -------------------------------------------------------------- */

int st_u64_encode(uint64_t v, uint8_t *buf, size_t cap, size_t *len)
{
    struct fixed_buf fb = {buf, cap, 0};
    msgpack_packer pk;
    msgpack_packer_init(&pk, &fb, fixed_write);
    if (msgpack_pack_uint64(&pk, v) != 0)
        return -ENOBUFS;
    *len = fb.len;
    return 0;
}

int st_u64_decode(const void *buf, size_t len, uint64_t *v)
{
    const uint8_t *p = buf;
    if (buf == NULL || len == 0)
        return -EBADMSG;
    if (p[0] <= 0x7f) {
        if (len != 1)
            return -EBADMSG;
        *v = p[0];
        return 0;
    }
    size_t n = p[0] == 0xcc ? 1 : p[0] == 0xcd ? 2 : p[0] == 0xce ? 4 : p[0] == 0xcf ? 8 : 0;
    if (n == 0 || len != n + 1)
        return -EBADMSG;
    uint64_t x = 0;
    for (size_t i = 1; i <= n; i++)
        x = x << 8 | p[i];
    *v = x;
    return 0;
}

int st_bytes_encode(const void *p, size_t n, uint8_t *buf, size_t cap, size_t *len)
{
    struct fixed_buf fb = {buf, cap, 0};
    msgpack_packer pk;
    msgpack_packer_init(&pk, &fb, fixed_write);
    if ((msgpack_pack_bin(&pk, n) | msgpack_pack_bin_body(&pk, p, n)) != 0)
        return -ENOBUFS;
    *len = fb.len;
    return 0;
}

int st_bytes_decode(const void *buf, size_t len, const uint8_t **p, size_t *n)
{
    const uint8_t *b = buf;
    if (buf == NULL || len == 0)
        return -EBADMSG;
    size_t hdr = b[0] == 0xc4 ? 1 : b[0] == 0xc5 ? 2 : b[0] == 0xc6 ? 4 : 0;
    if (hdr == 0 || len < 1 + hdr)
        return -EBADMSG;
    uint64_t x = 0;
    for (size_t i = 1; i <= hdr; i++)
        x = x << 8 | b[i];
    if (x != len - 1 - hdr)
        return -EBADMSG;
    *p = b + 1 + hdr;
    *n = (size_t)x;
    return 0;
}

/* ---- learned state ---------------------------------------------------------------------- */

static bool learned_ok(double x, double max)
{
    return isfinite(x) && x >= 0 && x <= max;
}

static size_t learned_count(const struct st_learned_field *f, size_t nf)
{
    size_t total = 0;
    for (size_t i = 0; i < nf; i++)
        total += f[i].n;
    return total;
}

int st_learned_encode(const struct st_learned_field *f, size_t nf, uint8_t *buf, size_t cap,
                      size_t *len)
{
    if (learned_count(f, nf) > ST_LEARNED_MAX)
        return -EINVAL;
    for (size_t i = 0; i < nf; i++)
        for (size_t j = 0; j < f[i].n; j++)
            if (!learned_ok(f[i].v[j], f[i].max))
                return -EINVAL;
    struct fixed_buf fb = {buf, cap, 0};
    msgpack_packer pk;
    msgpack_packer_init(&pk, &fb, fixed_write);
    int bad = msgpack_pack_map(&pk, nf + 1);
    bad |= pack_cstr(&pk, "v", 1);
    bad |= msgpack_pack_uint64(&pk, ST_LEARNED_VERSION);
    for (size_t i = 0; i < nf; i++) {
        bad |= pack_cstr(&pk, f[i].name, strlen(f[i].name));
        bad |= msgpack_pack_array(&pk, f[i].n);
        for (size_t j = 0; j < f[i].n; j++) {
            double x = f[i].v[j];
            if (x == floor(x) && x < 9007199254740992.0) /* 2^53: every whole number exact */
                bad |= msgpack_pack_uint64(&pk, (uint64_t)x);
            else
                bad |= msgpack_pack_double(&pk, x);
        }
    }
    if (bad != 0)
        return -ENOBUFS;
    *len = fb.len;
    return 0;
}

/* A msgpack number as a double; false when O is no number. */
static bool obj_number(const msgpack_object *o, double *x)
{
    switch (o->type) {
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        *x = o->via.f64;
        return true;
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        *x = (double)o->via.u64;
        return true;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        *x = (double)o->via.i64;
        return true;
    default:
        return false;
    }
}

int st_learned_decode(const void *buf, size_t len, const struct st_learned_field *f, size_t nf)
{
    size_t total = learned_count(f, nf);
    if (buf == NULL || total > ST_LEARNED_MAX || nf > ST_FIELDS_MAX ||
        kd_msgpack_precheck(buf, len) != 0)
        return -EBADMSG;
    double *scratch = malloc((total > 0 ? total : 1) * sizeof(double));
    if (scratch == NULL)
        return -ENOMEM;
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    int rc = -EBADMSG;
    msgpack_unpack_return ur = msgpack_unpack_next(&u, buf, len, &off);
    if (ur != MSGPACK_UNPACK_SUCCESS || off != len || u.data.type != MSGPACK_OBJECT_MAP)
        goto out;
    const msgpack_object_map *m = &u.data.via.map;
    int64_t v = -1;
    for (uint32_t i = 0; i < m->size; i++) {
        if (obj_is(&m->ptr[i].key, "v", 1)) {
            if (v != -1 || obj_int(&m->ptr[i].val, 1, INT64_MAX, &v) != 0)
                goto out;
        }
    }
    if (v == -1)
        goto out;
    if (v != ST_LEARNED_VERSION) {
        rc = v > ST_LEARNED_VERSION ? -ENOTSUP : -EPROTONOSUPPORT;
        goto out;
    }
    uint64_t seen[ST_FIELDS_MAX / 64] = {0};
    size_t found = 0;
    for (uint32_t i = 0; i < m->size; i++) {
        const msgpack_object *key = &m->ptr[i].key;
        if (key->type != MSGPACK_OBJECT_STR)
            goto out;
        if (obj_is(key, "v", 1))
            continue;
        size_t idx = nf, at = 0;
        for (size_t j = 0; j < nf; j++) {
            if (obj_is(key, f[j].name, strlen(f[j].name))) {
                idx = j;
                break;
            }
            at += f[j].n;
        }
        if (idx == nf)
            continue; /* a field this binary does not keep */
        if ((seen[idx / 64] >> (idx % 64)) & 1)
            goto out;
        seen[idx / 64] |= (uint64_t)1 << (idx % 64);
        found++;
        const msgpack_object *val = &m->ptr[i].val;
        if (val->type != MSGPACK_OBJECT_ARRAY || val->via.array.size != f[idx].n)
            goto out;
        for (size_t j = 0; j < f[idx].n; j++) {
            double x;
            if (!obj_number(&val->via.array.ptr[j], &x) || !learned_ok(x, f[idx].max))
                goto out;
            scratch[at + j] = x;
        }
    }
    if (found != nf)
        goto out;
    size_t at = 0;
    for (size_t i = 0; i < nf; i++) {
        memcpy(f[i].v, scratch + at, f[i].n * sizeof(double));
        at += f[i].n;
    }
    rc = 0;
out:
    msgpack_unpacked_destroy(&u);
    free(scratch);
    return rc;
}
