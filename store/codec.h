/*
 * codec.h: the records kept in the LMDB store, their keys, and their msgpack encoding.
 *
 * Keys. A product is keyed by its domain-prefixed ASIN: 11 bytes, the Keepa domain id as one
 * byte (1 = com, 3 = de, ...) followed by the 10 ASCII characters of the ASIN ([0-9A-Z]).
 * Fixed length keeps the schedule key (8-byte big-endian time ‖ key) fixed too, and keys
 * sort by domain, then ASIN. `mdb_dump -p` shows them as "\01B0D8W1YVBX".
 *
 * Values. Every record is one msgpack map with string keys, readable by any msgpack library:
 * "v" is the record format version, the other keys are the struct member names below, with
 * their unit in the name ("buy_price_cents", "roi_bp", "next_check_ms"). Money is integer
 * cents (the marketplace's smallest unit, as Keepa sends it); ratios are integer basis points
 * (1 bp = 0.01 %, so a 25 % ROI is 2500): integers compare exactly and survive any language.
 * Times are epoch milliseconds unless the name says "_min" (Keepa minutes). -1 means unknown
 * where Keepa uses -1 (prices, ranks, counts).
 *
 * Compatibility. Encoders always write every field. Decoders accept any map whose "v" is
 * at most the version they know, ignore keys they do not know (so a field can be added
 * without a version bump) and leave absent fields at their zero value; a record whose "v" is
 * newer is refused with -ENOTSUP rather than misread. Decoding is safe on any bytes
 * (truncated, garbage, hostile sizes): it returns -EBADMSG and leaves the output untouched.
 * It is fuzzed (tests/fuzz/fuzz_codec.c).
 */
#ifndef KD_STORE_CODEC_H
#define KD_STORE_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ST_ASIN_LEN      10
#define ST_KEY_LEN       11   /* domain byte + ASIN */
#define ST_TITLE_MAX     200  /* bytes including the NUL; longer titles are cut (UTF-8 safe) */
#define ST_SELLER_ID_MAX 32   /* bytes including the NUL (Amazon seller ids are ~14) */
#define ST_RECORD_MAX    2048 /* no encoded record is longer */

#define ST_DEAL_VERSION    1
#define ST_SEEN_VERSION    1
#define ST_PENDING_VERSION 1

/* A domain-prefixed ASIN, the key of deals, seen and pending. */
struct st_key {
    uint8_t b[ST_KEY_LEN];
};

/*
 * Field lists: X(kind, name, size). kind is I64, I32, U32, U64, U8, BOOL or STR (a char
 * array of SIZE bytes, always NUL-terminated). They generate the structs and drive the codec.
 */

/* A deal: a committed product with its computed economics. */
#define ST_DEAL_FIELDS(X)                                                                          \
    X(STR, asin, ST_ASIN_LEN + 1) /* 10-character ASIN */                                          \
    X(U8, domain, 0)              /* Keepa domain id */                                            \
    X(STR, title, ST_TITLE_MAX)   /* set with st_deal_set_title() */                               \
    X(I64, buy_price_cents, 0)    /* item price of the offer to buy */                             \
    X(U8, buy_condition, 0)       /* Keepa offer condition: 1 new, 2-5 used (like new,             \
                                     very good, good, acceptable), 6 refurbished, 7-10             \
                                     collectible, 0 unknown */                                     \
    X(STR, buy_seller_id, ST_SELLER_ID_MAX)                                                        \
    X(BOOL, buy_is_fba, 0)                                                                         \
    X(I64, buy_shipping_cents, 0)                                                                  \
    X(I64, landed_buy_cents, 0) /* price + shipping + tax + prep + inbound */                      \
    X(I64, expected_sell_cents, 0)                                                                 \
    X(I64, referral_fee_cents, 0)                                                                  \
    X(I32, referral_fee_bp, 0)                                                                     \
    X(I64, fba_fee_cents, 0)                                                                       \
    X(I64, prep_cents, 0)                                                                          \
    X(I64, inbound_cents, 0)                                                                       \
    X(I64, tax_cents, 0)                                                                           \
    X(I64, profit_cents, 0)  /* expected sell - fees - landed buy */                               \
    X(I32, margin_bp, 0)     /* profit / expected sell */                                          \
    X(I32, roi_bp, 0)        /* profit / landed buy */                                             \
    X(I64, sales_rank, 0)    /* current, -1 none */                                                \
    X(I32, rank_drops_30, 0) /* Keepa salesRankDrops30; -1 unknown */                              \
    X(I32, rank_drops_90, 0)                                                                       \
    X(I32, rank_drops_180, 0)                                                                      \
    X(I32, rank_drops_365, 0)                                                                      \
    X(I32, offers_new, 0) /* live offer counts; -1 unknown */                                      \
    X(I32, offers_used, 0)                                                                         \
    X(I32, offers_fba, 0)                                                                          \
    X(I32, offers_fbm, 0)                                                                          \
    X(I64, buy_box_cents, 0)   /* -1 none */                                                       \
    X(I64, first_seen_ms, 0)   /* when first committed */                                          \
    X(I64, last_checked_ms, 0) /* last successful fetch */                                         \
    X(I64, last_changed_ms, 0) /* last time an economic field changed */                           \
    X(U32, check_failures, 0)  /* consecutive re-checks that failed the criteria */                \
    X(I64, next_check_ms, 0)   /* schedule time; 0 = not scheduled */                              \
    X(U64, revision, 0)        /* bumped by the writer on every change */

/* What the scanner remembers about a peeked ASIN (dedup). */
#define ST_SEEN_FIELDS(X)                                                                          \
    X(I64, peek_ms, 0)              /* when it was peeked */                                       \
    X(U8, verdict, 0)               /* enum st_verdict */                                          \
    X(I64, feed_last_update_min, 0) /* the feed's lastUpdate then (Keepa minutes) */               \
    X(U64, feed_price_hash, 0)      /* hash of the feed's prices then */

/* A peek survivor not yet committed: paid-for work that must survive a crash. */
#define ST_PENDING_FIELDS(X)                                                                       \
    X(STR, asin, ST_ASIN_LEN + 1)                                                                  \
    X(U8, domain, 0)                                                                               \
    X(I64, peek_ms, 0)                                                                             \
    X(I64, peek_buy_cents, 0) /* buy price seen by the peek */                                     \
    X(I64, sell_estimate_cents, 0)                                                                 \
    X(U8, source, 0)    /* enum st_source */                                                       \
    X(U32, attempts, 0) /* commit attempts that failed so far */

enum st_verdict {
    ST_VERDICT_NONE = 0,
    ST_VERDICT_SURVIVOR = 1,
    ST_VERDICT_REJECTED = 2,
    ST_VERDICT_ERROR = 3
};
enum st_source {
    ST_SOURCE_NONE = 0,
    ST_SOURCE_DEALS = 1,
    ST_SOURCE_ASINS = 2,
    ST_SOURCE_QUERY = 3,
    ST_SOURCE_RECOMMIT = 4
};

#define ST_MEMBER_I64(name, size)   int64_t name;
#define ST_MEMBER_I32(name, size)   int32_t name;
#define ST_MEMBER_U32(name, size)   uint32_t name;
#define ST_MEMBER_U64(name, size)   uint64_t name;
#define ST_MEMBER_U8(name, size)    uint8_t name;
#define ST_MEMBER_BOOL(name, size)  bool name;
#define ST_MEMBER_STR(name, size)   char name[size];
#define ST_MEMBER(kind, name, size) ST_MEMBER_##kind(name, size)

struct st_deal {
    ST_DEAL_FIELDS(ST_MEMBER)
};

struct st_seen {
    ST_SEEN_FIELDS(ST_MEMBER)
};

struct st_pending {
    ST_PENDING_FIELDS(ST_MEMBER)
};

/*
 * Builds the key of (DOMAIN, ASIN). ASIN must be exactly 10 characters of [0-9A-Z] (a
 * lowercase ASIN is refused, not folded) and DOMAIN 1..255. Returns 0 or -EINVAL.
 */
int st_key_make(unsigned domain, const char *asin, struct st_key *out);

/* The domain of KEY, and its ASIN as a NUL-terminated string in OUT. */
unsigned st_key_domain(const struct st_key *key);
void st_key_asin(const struct st_key *key, char out[ST_ASIN_LEN + 1]);

/* Copies at most ST_TITLE_MAX - 1 bytes of TITLE (LEN bytes) into D, never cutting a UTF-8
 * sequence in half. */
void st_deal_set_title(struct st_deal *d, const char *title, size_t len);

/*
 * Encoders: write the record as msgpack into BUF (CAP bytes; ST_RECORD_MAX always suffices)
 * and set *LEN. Return 0, -EINVAL when the asin/domain are not a valid key (deal, pending), or
 * -ENOBUFS when CAP is too small.
 */
int st_deal_encode(const struct st_deal *d, uint8_t *buf, size_t cap, size_t *len);
int st_seen_encode(const struct st_seen *s, uint8_t *buf, size_t cap, size_t *len);
int st_pending_encode(const struct st_pending *p, uint8_t *buf, size_t cap, size_t *len);

/*
 * Decoders: parse LEN bytes at BUF into OUT. Return 0, -EBADMSG (not a valid record: OUT is
 * untouched), -ENOTSUP (a newer record version) or -ENOMEM.
 */
int st_deal_decode(const void *buf, size_t len, struct st_deal *out);
int st_seen_decode(const void *buf, size_t len, struct st_seen *out);
int st_pending_decode(const void *buf, size_t len, struct st_pending *out);

/* The key of a decoded deal or pending record (-EINVAL if its asin/domain are invalid). */
int st_deal_key(const struct st_deal *d, struct st_key *out);
int st_pending_key(const struct st_pending *p, struct st_key *out);

/*
 * msgpack helpers shared with store.c: a u64 or a byte string as a one-object msgpack value.
 * Encoders return 0 or -ENOBUFS; decoders 0 or -EBADMSG.
 */
int st_u64_encode(uint64_t v, uint8_t *buf, size_t cap, size_t *len);
int st_u64_decode(const void *buf, size_t len, uint64_t *v);
int st_bytes_encode(const void *p, size_t n, uint8_t *buf, size_t cap, size_t *len);
int st_bytes_decode(const void *buf, size_t len, const uint8_t **p, size_t *n);

#endif
