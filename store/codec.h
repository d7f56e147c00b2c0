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

#include "judge/judge.h"

#define ST_ASIN_LEN          10
#define ST_KEY_LEN           11   /* domain byte + ASIN */
#define ST_TITLE_MAX         200  /* bytes including the NUL; longer titles are cut (UTF-8 safe) */
#define ST_SELLER_ID_MAX     32   /* bytes including the NUL (Amazon seller ids are ~14) */
#define ST_RECORD_MAX        4096 /* no encoded record is longer */
#define ST_CATEGORY_NAME_MAX 64
#define ST_URL_MAX           200 /* a list line's source_url, bytes including the NUL */
#define ST_NOTE_MAX          100 /* a list line's note, bytes including the NUL */

#define ST_RECORD_VERSION  2 /* a judged product (v1 was the deal record, migrated) */
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

/*
 * A record: a fully fetched product with its judgement inputs and its verdict, deal or not
 * (every token spent to judge it is kept). Three parts: the head and tail below, the inputs
 * (struct jd_inputs, encoded under the names of JD_INPUT_FIELDS) and the verdict (the members
 * of struct jd_verdict listed in ST_VERDICT_FIELDS, encoded under the third name). The
 * verdict's per-criterion detail (jd_verdict.crit) is not stored: jd_judge() on the stored
 * inputs gives it back.
 */
#define ST_RECORD_HEAD_FIELDS(X)                                                                   \
    X(STR, asin, ST_ASIN_LEN + 1)                                                                  \
    X(U8, domain, 0)                                                                               \
    X(STR, title, ST_TITLE_MAX)                                                                    \
    X(STR, category_name, ST_CATEGORY_NAME_MAX) /* categoryTree[0].name; "" unknown */             \
    X(U8, source, 0)                            /* enum st_source that found it */                 \
    X(STR, source_url, ST_URL_MAX) /* the seller's list: where they buy it; "" none */             \
    X(STR, note, ST_NOTE_MAX)      /* the seller's list: their note; "" none */

/* X(kind, member of struct jd_verdict, name in the record) */
#define ST_VERDICT_FIELDS(X)                                                                       \
    X(BOOL, deal, verdict_deal)                                                                    \
    X(BOOL, near, verdict_near)                                                                    \
    X(U32, fails, verdict_fails)       /* bit per enum jd_crit */                                  \
    X(U32, unknowns, verdict_unknowns) /* bit per enum jd_crit */                                  \
    X(U8, side, sell_side)             /* enum jd_side */                                          \
    X(U8, basis, sell_basis)           /* enum jd_basis */                                         \
    X(U8, caps, sell_caps)             /* JD_CAP_* */                                              \
    X(I64, basis_cents, sell_basis_cents)                                                          \
    X(I64, sell_cents, sell_cents)                                                                 \
    X(I64, referral_bp, fee_referral_bp)                                                           \
    X(BOOL, referral_default, fee_referral_default)                                                \
    X(BOOL, referral_min_applied, fee_referral_min_applied)                                        \
    X(I64, referral_cents, fee_referral_cents)                                                     \
    X(I64, closing_cents, fee_closing_cents)                                                       \
    X(I64, fba_cents, fee_fba_cents)                                                               \
    X(BOOL, fba_default, fee_fba_default)                                                          \
    X(I64, fbm_shipping_cents, fee_fbm_shipping_cents)                                             \
    X(BOOL, payout_known, payout_known)                                                            \
    X(I64, payout_cents, payout_cents)                                                             \
    X(I64, buy_cents, buy_total_cents)                                                             \
    X(I64, tax_cents, cost_tax_cents)                                                              \
    X(I64, prep_cents, cost_prep_cents)                                                            \
    X(I64, inbound_cents, cost_inbound_cents)                                                      \
    X(I64, landed_cents, landed_cents)                                                             \
    X(BOOL, priced, priced)                                                                        \
    X(I64, profit_cents, profit_cents)                                                             \
    X(I64, roi_bp, roi_bp)                                                                         \
    X(I64, margin_bp, margin_bp)                                                                   \
    X(I64, max_cost_cents, max_cost_cents)                                                         \
    X(I64, max_cost_roi_cents, max_cost_roi_cents)                                                 \
    X(I64, max_cost_profit_cents, max_cost_profit_cents)                                           \
    X(BOOL, oversize, oversize)

#define ST_RECORD_TAIL_FIELDS(X)                                                                   \
    X(U8, state, 0)            /* enum st_state */                                                 \
    X(U64, rules_hash, 0)      /* jd_rules_hash of the rules that judged it; 0 never judged */     \
    X(I64, judged_ms, 0)       /* when the verdict was last computed */                            \
    X(I64, first_seen_ms, 0)   /* when first committed */                                          \
    X(I64, deal_since_ms, 0)   /* when it last became a deal; 0 not a deal */                      \
    X(I64, last_checked_ms, 0) /* last successful fetch (full or light) */                         \
    X(I64, last_changed_ms, 0) /* last time the verdict's money figures changed */                 \
    X(U32, check_failures, 0)  /* consecutive re-checks that found it no longer a deal */          \
    X(I64, next_check_ms, 0)   /* re-check schedule; 0 = not scheduled */                          \
    X(I64, expired_ms, 0)      /* when failed re-checks ended it; 0 never */                       \
    X(U64, revision, 0)        /* bumped by the writer on every change */                          \
    X(U8, mark, 0)             /* enum st_mark */                                                  \
    X(I64, mark_ms, 0)                                                                             \
    X(I64, bought_cost_cents, 0) /* the seller's own cost per unit; -1 none */                     \
    X(I32, bought_qty, 0)

/* What happened to a record (history entries and the change log say it). */
enum st_event {
    ST_EV_NONE = 0,
    ST_EV_COMMIT = 1,  /* a full fetch judged it */
    ST_EV_RECHECK = 2, /* a light re-check (or a free refresh from a peek) judged it again */
    ST_EV_REJUDGE = 3, /* the rules changed: judged again from its stored inputs, no tokens */
    ST_EV_MARK = 4,    /* the seller marked it (bought, ignored, cleared) */
    ST_EV_EXPIRE = 5,  /* failed re-checks ended it as a deal */
    ST_EV_DELETE = 6,  /* pruned: the record is gone */
    ST_EV_MIGRATE = 7  /* converted from an older store */
};

/* One entry of a record's history (db history, key ‖ be64(revision)). */
#define ST_HISTORY_FIELDS(X)                                                                       \
    X(I64, at_ms, 0)                                                                               \
    X(U64, revision, 0)                                                                            \
    X(U8, event, 0) /* enum st_event */                                                            \
    X(U8, state, 0) /* enum st_state after it */                                                   \
    X(I64, buy_total_cents, 0)                                                                     \
    X(I64, landed_cents, 0)                                                                        \
    X(I64, sell_cents, 0)                                                                          \
    X(I64, profit_cents, 0)                                                                        \
    X(I64, roi_bp, 0)                                                                              \
    X(I64, max_cost_cents, 0)                                                                      \
    X(U32, fails, 0)    /* verdict_fails then */                                                   \
    X(U32, checks, 0)   /* judgements it stands for: > 1 a run of unchanged re-checks */           \
    X(I64, first_ms, 0) /* with checks > 1: when that run began (at_ms: its last) */

/* One entry of the change log (db changes, be64(seq)): a record changed. */
#define ST_CHANGE_FIELDS(X)                                                                        \
    X(U64, seq, 0)                                                                                 \
    X(STR, asin, ST_ASIN_LEN + 1)                                                                  \
    X(U8, domain, 0)                                                                               \
    X(U64, revision, 0)                                                                            \
    X(U8, event, 0)      /* enum st_event */                                                       \
    X(U8, state, 0)      /* enum st_state after it (NONE when deleted) */                          \
    X(U8, prev_state, 0) /* before it */                                                           \
    X(I64, at_ms, 0)

#define ST_HISTORY_VERSION 1
#define ST_CHANGE_VERSION  1

/* What the scanner remembers about a peeked ASIN (dedup). */
#define ST_SEEN_FIELDS(X)                                                                          \
    X(I64, peek_ms, 0)              /* when it was peeked */                                       \
    X(U8, verdict, 0)               /* enum st_verdict */                                          \
    X(I64, feed_last_update_min, 0) /* the feed's lastUpdate then (Keepa minutes) */               \
    X(U64, feed_price_hash, 0)      /* hash of the feed's prices then */

/*
 * A peek survivor not yet committed: paid-for work that must survive a crash. Also the record
 * of the scanner's free refreshes and the updater's recommit requests. It carries the peek's
 * judgement inputs (struct jd_inputs, under the names of JD_INPUT_FIELDS: a listing read, no
 * offers) and what the peek concluded from them.
 */
#define ST_PENDING_FIELDS(X)                                                                       \
    X(STR, asin, ST_ASIN_LEN + 1)                                                                  \
    X(U8, domain, 0)                                                                               \
    X(I64, peek_ms, 0)                                                                             \
    X(I64, peek_buy_cents, 0)      /* buy price seen by the peek (the lowest listing) */           \
    X(I64, sell_estimate_cents, 0) /* the peek's sell price */                                     \
    X(U8, source, 0)               /* enum st_source */                                            \
    X(U32, attempts, 0)            /* commit attempts that failed so far */                        \
    X(BOOL, peek_priced, 0)        /* the peek computed a profit */                                \
    X(I64, peek_profit_cents, 0)   /* the peek's profit estimate (shipping unknown: 0) */          \
    X(I64, peek_roi_bp, 0)                                                                         \
    X(I64, peek_max_cost_cents, 0)

/* Where a record stands. */
enum st_state {
    ST_STATE_NONE = 0,
    ST_STATE_DEAL = 1,    /* its verdict passes the current rules: in the deal view, re-checked */
    ST_STATE_FAILING = 2, /* was a deal, failed its latest re-check(s); still re-checked until
                             [update] expire_after_failures, then REJECTED with expired_ms */
    ST_STATE_REJECTED = 3 /* not a deal: kept (no tokens), pruned after [store] keep_rejected */
};
enum st_mark { ST_MARK_NONE = 0, ST_MARK_BOUGHT = 1, ST_MARK_IGNORED = 2 };

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
    ST_SOURCE_RECOMMIT = 4,
    ST_SOURCE_LIST = 5,       /* the seller's list ([scan] source = list), with or without a cost */
    ST_SOURCE_LIGHTNING = 6,  /* Keepa's lightning deals ([scan] source = lightning) */
    ST_SOURCE_BESTSELLERS = 7 /* best-seller lists ([scan] source = bestsellers) */
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

struct st_record {
    ST_RECORD_HEAD_FIELDS(ST_MEMBER)
    struct jd_inputs in;
    struct jd_verdict v;
    ST_RECORD_TAIL_FIELDS(ST_MEMBER)
};

struct st_seen {
    ST_SEEN_FIELDS(ST_MEMBER)
};

struct st_history {
    ST_HISTORY_FIELDS(ST_MEMBER)
};

struct st_change {
    ST_CHANGE_FIELDS(ST_MEMBER)
};

struct st_pending {
    ST_PENDING_FIELDS(ST_MEMBER)
    struct jd_inputs in; /* the peek's inputs; every field unknown in an older record */
};

/*
 * Builds the key of (DOMAIN, ASIN). ASIN must be exactly 10 characters of [0-9A-Z] (a
 * lowercase ASIN is refused, not folded) and DOMAIN 1..255. Returns 0 or -EINVAL.
 */
int st_key_make(unsigned domain, const char *asin, struct st_key *out);

/* The domain of KEY, and its ASIN as a NUL-terminated string in OUT. */
unsigned st_key_domain(const struct st_key *key);
void st_key_asin(const struct st_key *key, char out[ST_ASIN_LEN + 1]);

/* A record with every input unknown, no verdict, no schedule, no mark. */
void st_record_init(struct st_record *r);

/* A pending record with every input unknown. */
void st_pending_init(struct st_pending *p);

/* Copies at most ST_TITLE_MAX - 1 bytes of TITLE (LEN bytes) into D, never cutting a UTF-8
 * sequence in half. */
void st_deal_set_title(struct st_deal *d, const char *title, size_t len);

/* The same into a record's title (ST_TITLE_MAX) or category name (ST_CATEGORY_NAME_MAX). */
void st_record_set_title(struct st_record *r, const char *title, size_t len);
void st_record_set_category(struct st_record *r, const char *name, size_t len);
/* ... or its list line's source_url (ST_URL_MAX) and note (ST_NOTE_MAX). */
void st_record_set_source_url(struct st_record *r, const char *url, size_t len);
void st_record_set_note(struct st_record *r, const char *note, size_t len);

/*
 * Encoders: write the record as msgpack into BUF (CAP bytes; ST_RECORD_MAX always suffices)
 * and set *LEN. Return 0, -EINVAL when the asin/domain are not a valid key (deal, pending), or
 * -ENOBUFS when CAP is too small.
 */
int st_deal_encode(const struct st_deal *d, uint8_t *buf, size_t cap, size_t *len);
int st_record_encode(const struct st_record *r, uint8_t *buf, size_t cap, size_t *len);
int st_history_encode(const struct st_history *h, uint8_t *buf, size_t cap, size_t *len);
int st_change_encode(const struct st_change *c, uint8_t *buf, size_t cap, size_t *len);
int st_seen_encode(const struct st_seen *s, uint8_t *buf, size_t cap, size_t *len);
int st_pending_encode(const struct st_pending *p, uint8_t *buf, size_t cap, size_t *len);

/*
 * Decoders: parse LEN bytes at BUF into OUT. Return 0, -EBADMSG (not a valid record: OUT is
 * untouched), -ENOTSUP (a newer record version) or -ENOMEM.
 */
int st_deal_decode(const void *buf, size_t len, struct st_deal *out);
/* A record absent fields of which keep st_record_init's values (unknown, not zero). */
int st_record_decode(const void *buf, size_t len, struct st_record *out);
int st_history_decode(const void *buf, size_t len, struct st_history *out);
int st_change_decode(const void *buf, size_t len, struct st_change *out);

/* Names of states, events and marks ("deal", "commit", "bought"); "?" when out of range. */
const char *st_state_name(unsigned state);
const char *st_event_name(unsigned event);
const char *st_mark_name(unsigned mark);
int st_seen_decode(const void *buf, size_t len, struct st_seen *out);
int st_pending_decode(const void *buf, size_t len, struct st_pending *out);

/* The key of a decoded deal or pending record (-EINVAL if its asin/domain are invalid). */
int st_deal_key(const struct st_deal *d, struct st_key *out);
int st_record_key(const struct st_record *r, struct st_key *out);
int st_pending_key(const struct st_pending *p, struct st_key *out);

/*
 * Learned state (docs/architecture.md, "Value per token", "What is learned survives a
 * restart"): what a stage learned of the market, kept in meta under its own name (store.h,
 * ST_META_LEARNED_*) so a restart does not pay to learn it again. One msgpack map: "v" is
 * ST_LEARNED_VERSION, every other key names an array of numbers in the order of the stage's
 * table: a whole number below 2^53 as a msgpack integer (exact, and small numbers are short),
 * any other as a double. The table below says each field's name, length and the largest value it
 * may hold; the stage checks what the numbers mean (worker/value.h, val_*_valid).
 *
 * Unlike the other records, a learned record is all or nothing and of exactly one version:
 * a rate half read would be a poisoned rate, and an older layout is not worth converting (the
 * prior stands in, and a day of re-checks teaches it again).
 */
#define ST_LEARNED_VERSION 1
#define ST_LEARNED_MAX     16384                       /* numbers in one record */
#define ST_LEARNED_BYTES   (ST_LEARNED_MAX * 9 + 4096) /* no encoded learned record is longer */

struct st_learned_field {
    const char *name; /* the map key */
    double *v;        /* N numbers: written by the encoder, filled by the decoder */
    size_t n;
    double max; /* each number must be finite and in [0, MAX] */
};

/*
 * Encodes the NF fields F as a learned record into BUF (CAP bytes; ST_LEARNED_BYTES suffices
 * when the fields hold at most ST_LEARNED_MAX numbers) and sets *LEN. Returns 0, -EINVAL (more
 * than ST_LEARNED_MAX numbers, or a number the decoder would refuse: NaN, infinite, negative,
 * above its max) or -ENOBUFS.
 */
int st_learned_encode(const struct st_learned_field *f, size_t nf, uint8_t *buf, size_t cap,
                      size_t *len);

/*
 * Decodes LEN bytes at BUF into the fields F (all or nothing: on any error no field is
 * touched). Returns 0; -ENOTSUP for a newer version, -EPROTONOSUPPORT for an older one;
 * -EBADMSG for anything else that is not exactly this record: not one msgpack map, a field
 * missing or twice, an array of another length, a number that is NaN, infinite, negative or
 * above its field's max; -ENOMEM. Safe on any bytes.
 */
int st_learned_decode(const void *buf, size_t len, const struct st_learned_field *f, size_t nf);

/*
 * msgpack helpers shared with store.c: a u64 or a byte string as a one-object msgpack value.
 * Encoders return 0 or -ENOBUFS; decoders 0 or -EBADMSG.
 */
int st_u64_encode(uint64_t v, uint8_t *buf, size_t cap, size_t *len);
int st_u64_decode(const void *buf, size_t len, uint64_t *v);
int st_bytes_encode(const void *p, size_t n, uint8_t *buf, size_t cap, size_t *len);
int st_bytes_decode(const void *buf, size_t len, const uint8_t **p, size_t *n);

#endif
