/*
 * alertdb.h: what the alerts keep in the store (db `alerts`, store/store.h): for each alert and
 * product, whether the product is in the alert's view, and one delivery per entry into it.
 *
 * Keys (47 bytes, so one alert's records are contiguous and sort by product, then entry):
 *
 *     alert name, NUL-padded to CFG_NAME_MAX (32) ‖ product key (11) ‖ be32(entry)
 *
 * entry 0 is the membership (struct ob_member): in the view or not, since when, how many
 * entries so far. Entry N >= 1 is the delivery of the N-th entry (struct ob_delivery): its
 * status, attempts, next attempt, last outcome and the record as it was when it entered. Values
 * are msgpack maps with a version "v", as every value of the store: any msgpack library reads
 * them, and a newer version is refused rather than misread.
 *
 * Meta values of an alert (db meta): "alert.NAME.seq", the last change of the log it evaluated;
 * "alert.NAME.bucket", its rate limiter (so the limit holds across restarts); "alert.NAME.kick",
 * bumped by `kdeals alerts retry` so the outbox reads the deliveries again.
 *
 * Delivery ids are stable per entry: "kd-<store id>-<alert>-<domain>-<asin>-<seq>", seq being
 * the change that made the product enter (unique in a store for ever, unlike the entry count,
 * which restarts when an old membership is pruned), the same on every attempt, so a receiver
 * can deduplicate (docs/alerts.md, "What once means").
 */
#ifndef KD_OUTBOX_ALERTDB_H
#define KD_OUTBOX_ALERTDB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/config.h"
#include "store/codec.h"

#define OB_ALERT_KEY_LEN   (CFG_NAME_MAX + ST_KEY_LEN + 4)
#define OB_ALERT_ERR_MAX   160
#define OB_DELIVERY_ID_MAX 128
#define OB_ALERTDB_VERSION 1

/* The store's id (meta "outbox.store_id"): 32 hex digits, made the first time it is needed. */
#define OB_META_STORE_ID "outbox.store_id"

/* The status of a delivery: X(ID, "word"). */
#define OB_DELIVERY_STATES(X)                                                                      \
    X(NONE, "none")                                                                                \
    X(PENDING, "pending") /* to be sent at next_ms */                                              \
    X(SENDING, "sending") /* an attempt started; its outcome is not recorded (yet) */              \
    X(SENT, "sent")       /* the target accepted it */                                             \
    X(DEAD, "dead")       /* attempts exhausted or refused for good: a dead letter */              \
    X(DROPPED, "dropped") /* an attempt's outcome was lost and on_unknown = drop */

enum ob_delivery_state {
#define OB_D_ENUM(id, word) OB_D_##id,
    OB_DELIVERY_STATES(OB_D_ENUM)
#undef OB_D_ENUM
        OB_D_COUNT
};

struct ob_member {
    bool in_view;
    uint32_t entries;   /* entries into the view so far (deliveries 1..entries) */
    int64_t entered_ms; /* the latest entry */
    int64_t left_ms;    /* when it last left the view; 0 never */
    uint64_t seq;       /* the change that last moved it */
};

struct ob_delivery {
    uint8_t status;      /* enum ob_delivery_state */
    uint32_t attempts;   /* attempts started */
    int64_t next_ms;     /* PENDING: not before this */
    int64_t entered_ms;  /* when the product entered the view */
    uint64_t seq;        /* the change that made it enter */
    int64_t sent_ms;     /* SENT: when */
    int32_t last_status; /* HTTP status or the command's exit status of the last attempt; 0 */
    char last_error[OB_ALERT_ERR_MAX];
    uint8_t record[ST_RECORD_MAX]; /* the record when it entered (store/codec.h encoding) */
    size_t record_len;
};

/* The word of a delivery status ("pending"), "?" out of range. */
const char *ob_delivery_state_name(unsigned s);

/* The key of ALERT's record ENTRY of product KEY. Returns 0, or -EINVAL for a bad name. */
int ob_alert_key(const char *alert, const struct st_key *key, uint32_t entry,
                 uint8_t out[OB_ALERT_KEY_LEN]);

/* The product and entry of an alert key of ALERT; false when K is not one of ALERT's. */
bool ob_alert_key_parse(const char *alert, const void *k, size_t klen, struct st_key *key,
                        uint32_t *entry);

/* Encoders (BUF of CAP bytes; ST_RECORD_MAX + 512 always suffices): 0 or -ENOBUFS. Decoders:
 * 0, -EBADMSG (OUT untouched) or -ENOTSUP (a newer version). Safe on any bytes. */
int ob_member_encode(const struct ob_member *m, uint8_t *buf, size_t cap, size_t *len);
int ob_member_decode(const void *buf, size_t len, struct ob_member *out);
int ob_delivery_encode(const struct ob_delivery *d, uint8_t *buf, size_t cap, size_t *len);
int ob_delivery_decode(const void *buf, size_t len, struct ob_delivery *out);

struct st_txn;

/* Reads or writes ALERT's record ENTRY of KEY in TXN (get: -ENOENT when absent). */
int ob_member_get(struct st_txn *txn, const char *alert, const struct st_key *key,
                  struct ob_member *out);
int ob_member_put(struct st_txn *txn, const char *alert, const struct st_key *key,
                  const struct ob_member *m);
int ob_delivery_get(struct st_txn *txn, const char *alert, const struct st_key *key, uint32_t entry,
                    struct ob_delivery *out);
int ob_delivery_put(struct st_txn *txn, const char *alert, const struct st_key *key, uint32_t entry,
                    const struct ob_delivery *d);

/* Meta names of ALERT: "alert.NAME.seq", ".bucket", ".kick", into BUF (64 bytes). */
const char *ob_alert_meta(const char *alert, const char *what, char buf[64]);

/* The delivery id of ALERT's entry of KEY at change SEQ in store STORE_ID, into BUF. */
void ob_delivery_id(const char *store_id, const char *alert, const struct st_key *key, uint64_t seq,
                    char buf[OB_DELIVERY_ID_MAX]);

/* This store's id (32 hex digits and a NUL in ID): read, or made and recorded in TXN (a write
 * transaction) the first time. Returns 0 or a negative errno. */
int ob_store_id(struct st_txn *txn, char id[33]);

#endif
