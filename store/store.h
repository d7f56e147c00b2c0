/*
 * store.h: the LMDB store (docs/architecture.md, "The store").
 *
 * One environment (a folder holding data.mdb and lock.mdb) with these named dbs:
 *
 *   products  key (codec.h)                    -> msgpack record: every fully fetched product
 *                                                 with its judgement inputs and verdict
 *   history   key ‖ be64(revision)             -> msgpack history entry (last ST_HISTORY_MAX)
 *   changes   be64(seq)                        -> msgpack change: the log every consumer of
 *                                                 record changes reads (alerts, mirror, follow)
 *   schedule  be64(next_check_ms) ‖ key        -> empty; the updater walks it in time order
 *   seen      key                              -> msgpack seen record (dedup of peeks)
 *   pending   key                              -> msgpack survivor record (not yet committed)
 *   alerts    (outbox/alertdb.h)               -> the alerts' memberships and deliveries; its
 *                                                 keys and values belong to outbox/, which
 *                                                 reads and writes them with st_raw_*
 *   meta      name (text)                      -> msgpack value: "schema_version",
 *                                                 discovery cursors, consumed ring positions,
 *                                                 "changes_seq" (the last change's seq),
 *                                                 "learned_updater", "learned_committer",
 *                                                 "learned_scanner" (what each stage
 *                                                 learned: codec.h)
 *   deals     (schema 1 only) the old deal records; emptied by the migration to schema 2
 *
 * Records, history and changes move together: st_record_put writes the record, keeps its
 * schedule entry in step, appends a history entry and a change in the same transaction, so
 * a consumer of the change log never misses or sees twice a change that was committed.
 *
 * Processes. Each worker opens the environment itself after it starts: an st_env never
 * crosses fork() (using one in another process aborts). The env uses MDB_NOTLS, so
 * transactions belong to their st_txn, not to a thread. LMDB serialises writers across
 * processes with a robust mutex and readers never block: `kdeals deals` reads a consistent
 * snapshot while the workers write.
 *
 * Writes. A worker writes one transaction per fetched batch with st_write(): the batch
 * function puts its records, and st_write commits. When the map is full (from a put or the
 * commit) st_write aborts, doubles the map up to its cap and runs the batch function again,
 * so a batch is never dropped for lack of room; the function must therefore do nothing but
 * store calls (and recompute its inputs) because it may run more than once. A full disk
 * makes the commit fail with -ENOSPC and leaves the store exactly as before the batch; the
 * caller keeps the batch, pauses and retries later.
 *
 * Damage and moves. A data.mdb shorter than its last page is refused at open and before every
 * transaction (-EUCLEAN) instead of killing the process with SIGBUS; a store folder removed or
 * replaced under the running writer makes its writes fail (-ESTALE, st_check); a file that is
 * not a kdeals store (an empty data.mdb, another program's LMDB environment) is refused
 * (-EPROTO) rather than adopted.
 *
 * Errors are negative errno values: -ENOENT (no such record), -EBADMSG (a stored value does
 * not decode), -ENOSPC (disk full), -EFBIG (the map reached its cap), -EBUSY (the map must
 * grow but this process holds a read transaction), -ENOTSUP (schema/record version newer
 * than this binary), -EIO (LMDB found corruption; close and reopen), -EINVAL (bad argument),
 * -EUCLEAN (truncated file), -ESTALE (the store moved away), -EPROTO (not a kdeals store),
 * -EUSERS (LMDB's reader slots are full), -EROFS (a write through a read-only open).
 * st_strerror() names them.
 */
#ifndef KD_STORE_STORE_H
#define KD_STORE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/codec.h"

#define ST_SCHEMA_VERSION 2       /* 2: products/history/changes; 1 (deals) is migrated */
#define ST_HISTORY_MAX    32      /* history entries kept per record */
#define ST_CHANGES_MAX    1000000 /* change-log entries kept; older ones are trimmed */

/* Meta names used by kdeals itself. */
#define ST_META_SCHEMA_VERSION "schema_version"
#define ST_META_CHANGES_SEQ    "changes_seq"
/* What a stage learned of the market (codec.h, st_learned_*), each written by its owner. */
#define ST_META_LEARNED_UPDATER   "learned_updater"   /* how fast shown deals vanish */
#define ST_META_LEARNED_COMMITTER "learned_committer" /* how far a peek can be trusted */
#define ST_META_LEARNED_SCANNER   "learned_scanner"   /* the low fees peeks found */

enum st_db {
    ST_DB_DEALS,
    ST_DB_SCHEDULE,
    ST_DB_SEEN,
    ST_DB_PENDING,
    ST_DB_META,
    ST_DB_PRODUCTS,
    ST_DB_HISTORY,
    ST_DB_CHANGES,
    ST_DB_ALERTS,
    ST_DB_COUNT
};

struct st_env;
struct st_txn;
struct st_cursor;

struct st_options {
    const char *path;            /* environment folder; created (0700) if missing */
    uint64_t map_size_bytes;     /* initial map size (0 = 1 GiB) */
    uint64_t max_map_size_bytes; /* growth cap (0 = 64 GiB; at least map_size_bytes) */
    unsigned max_readers;        /* reader slots (0 = 126) */
};

/* One entry of the schedule: the deal KEY is due at AT_MS. */
struct st_sched_entry {
    int64_t at_ms;
    struct st_key key;
};

/*
 * Opens (creating if needed) the environment at OPT->path in this process: creates the named
 * dbs, clears reader slots left by dead processes (mdb_reader_check) and checks the schema
 * version in meta (a fresh store gets ST_SCHEMA_VERSION; a newer one is refused with
 * -ENOTSUP). An empty data.mdb, or an LMDB environment holding data but no kdeals schema
 * version, is refused (-EPROTO); a truncated data.mdb too (-EUCLEAN). Returns 0 and *OUT, or
 * a negative errno with a one-line message in ERR (size ERRLEN) naming the path and what to
 * do.
 */
int st_open(const struct st_options *opt, struct st_env **out, char *err, size_t errlen);

/*
 * For a reader of a daemon's store (`kdeals deals`, `kdeals status`): opens the environment
 * read-only (MDB_RDONLY: it creates and writes nothing, every write returns -EROFS). When
 * OPT->path holds no store it returns -ENOENT (ERR saying so); a file that is not a kdeals
 * store returns -EPROTO, a truncated one -EUCLEAN. A db the store lacks (an older schema) reads
 * as empty.
 */
int st_open_existing(const struct st_options *opt, struct st_env **out, char *err, size_t errlen);

/*
 * As st_open_existing for a command that writes into a daemon's store (`kdeals mark`): the
 * store must exist (-ENOENT), and is opened read-write with st_open's checks.
 */
int st_open_existing_rw(const struct st_options *opt, struct st_env **out, char *err,
                        size_t errlen);

/*
 * For a writer, now and then and before each write (st_write does it): whether the folder and
 * data.mdb at the path it opened are still the ones it has open, and the file still holds its
 * last page. Returns 0, -ESTALE (removed or replaced: writing would go into deleted files) or
 * -EUCLEAN (truncated).
 */
int st_check(struct st_env *env);

/* Closes ENV. Every transaction and cursor of it must be finished. NULL is ignored. */
void st_close(struct st_env *env);

/*
 * Clears reader slots of processes that died (call after a sibling died). Stores the number
 * cleared in *DEAD if not NULL. Returns 0 or a negative errno.
 */
int st_reader_check(struct st_env *env, int *dead);

/* The current map size of this process's view of ENV, in bytes. */
uint64_t st_map_size(struct st_env *env);

/* A short description of a negative code returned by st_* (including store-specific ones). */
const char *st_strerror(int rc);

/*
 * Runs FN(txn, UD) in a write transaction and commits it. FN returns 0 to commit or a
 * negative code to abort (st_write then returns that code). If the map fills up, FN may run
 * several times (see the file comment); st_write returns 0 once a run committed, or -ENOSPC,
 * -EFBIG, -EBUSY, -EIO, ... with nothing of FN's writes stored. FN must not call st_write or
 * keep TXN. Never call st_write from FN.
 */
int st_write(struct st_env *env, int (*fn)(struct st_txn *txn, void *ud), void *ud);

/*
 * Starts a read-only snapshot (for `kdeals deals`, the updater's scan, tests). It sees every
 * transaction committed before it began and nothing after. End it with st_read_end; keep
 * it short in a process that also writes (the map cannot grow while it is open).
 */
int st_read_begin(struct st_env *env, struct st_txn **out);
void st_read_end(struct st_txn *txn);

/*
 * Deals. st_deal_put stores D under its key and keeps the schedule in step: it moves (or
 * adds, or with next_check_ms 0 removes) the deal's schedule entry. st_deal_del deletes the
 * deal and its schedule entry. Puts return -EROFS in a read-only transaction, -EINVAL for an
 * invalid asin/domain, -EFBIG when the map is full (return it from the batch function).
 */
int st_deal_put(struct st_txn *txn, const struct st_deal *d);
int st_deal_get(struct st_txn *txn, const struct st_key *key, struct st_deal *out);
int st_deal_del(struct st_txn *txn, const struct st_key *key);

/*
 * Schedule primitives (st_deal_put/del already maintain it). Times must be >= 0.
 * st_schedule_move removes the entry at OLD_MS if present and adds one at NEW_MS.
 * st_schedule_due fills OUT with up to MAX entries due at or before NOW_MS, stalest first,
 * and sets *N. An entry whose deal is gone or whose deal's next_check_ms differs from the
 * entry's time is stale (e.g. left by an undecodable record): remove it with
 * st_schedule_remove.
 */
int st_schedule_add(struct st_txn *txn, const struct st_key *key, int64_t at_ms);
int st_schedule_remove(struct st_txn *txn, const struct st_key *key, int64_t at_ms);
int st_schedule_move(struct st_txn *txn, const struct st_key *key, int64_t old_ms, int64_t new_ms);
int st_schedule_due(struct st_txn *txn, int64_t now_ms, struct st_sched_entry *out, size_t max,
                    size_t *n);

/*
 * Records. st_record_put stores R under its key (R->revision should be the stored one + 1;
 * the caller sets it), moves its schedule entry to R->next_check_ms (0 removes it), appends a
 * history entry for EVENT at NOW_MS (except for ST_EV_MARK with an unchanged verdict: marks
 * are in the change log only) and a change to the log. st_record_del removes the record, its
 * schedule entry and history, and logs ST_EV_DELETE. Same errors as st_deal_put.
 */
int st_record_put(struct st_txn *txn, const struct st_record *r, enum st_event event,
                  int64_t now_ms);
int st_record_get(struct st_txn *txn, const struct st_key *key, struct st_record *out);
int st_record_del(struct st_txn *txn, const struct st_key *key, int64_t now_ms);

/*
 * Moves the next re-check of the record under KEY to NEW_MS (> 0) when it is still at REVISION
 * and scheduled: the record's next_check_ms and its schedule entry change together and nothing
 * else does (no history entry, no change logged, the revision kept: no judgement changed, only
 * when it is looked at next; the updater places the first re-check of a new deal this way).
 * Returns 0, -ECANCELED when the record was rewritten since or is not scheduled, -EINVAL for
 * NEW_MS <= 0, or st_record_get's errors.
 */
int st_record_reschedule(struct st_txn *txn, const struct st_key *key, uint64_t revision,
                         int64_t new_ms);

/* Up to MAX history entries of KEY, newest first, into OUT; *N how many. */
int st_history_list(struct st_txn *txn, const struct st_key *key, struct st_history *out,
                    size_t max, size_t *n);

/*
 * The change log. st_changes_read fills OUT with up to MAX changes whose seq is > AFTER, in
 * order, and sets *N. st_changes_first / st_changes_last give the oldest kept and the newest
 * seq (0 when the log is empty: a consumer whose position is below first - 1 has missed
 * trimmed changes and must resynchronise from the records).
 */
int st_changes_read(struct st_txn *txn, uint64_t after, struct st_change *out, size_t max,
                    size_t *n);
int st_changes_first(struct st_txn *txn, uint64_t *seq);
int st_changes_last(struct st_txn *txn, uint64_t *seq);

/* Seen (dedup of peeks). */
int st_seen_put(struct st_txn *txn, const struct st_key *key, const struct st_seen *s);
int st_seen_get(struct st_txn *txn, const struct st_key *key, struct st_seen *out);

/* Pending survivors, keyed by their own asin/domain. */
int st_pending_put(struct st_txn *txn, const struct st_pending *p);
int st_pending_get(struct st_txn *txn, const struct st_key *key, struct st_pending *out);
int st_pending_del(struct st_txn *txn, const struct st_key *key);

/*
 * Meta values by NAME (1..255 bytes of text): an unsigned counter/position, or bytes (a
 * cursor), stored as msgpack uint / bin. get_bytes copies at most CAP bytes into BUF and
 * sets *N to the stored length (-ENOBUFS when it is larger than CAP).
 */
int st_meta_put_u64(struct st_txn *txn, const char *name, uint64_t v);
int st_meta_get_u64(struct st_txn *txn, const char *name, uint64_t *v);
int st_meta_put_bytes(struct st_txn *txn, const char *name, const void *p, size_t n);
int st_meta_get_bytes(struct st_txn *txn, const char *name, void *buf, size_t cap, size_t *n);
int st_meta_del(struct st_txn *txn, const char *name);

/*
 * A learned record (codec.h) under meta NAME: put encodes the NF fields F (st_learned_encode's
 * errors, or the put's); get decodes the stored one into F, all or nothing (-ENOENT when there
 * is none, else st_learned_decode's errors).
 */
int st_meta_put_learned(struct st_txn *txn, const char *name, const struct st_learned_field *f,
                        size_t nf);
int st_meta_get_learned(struct st_txn *txn, const char *name, const struct st_learned_field *f,
                        size_t nf);

/*
 * Copies every learned record (ST_META_LEARNED_*) FROM holds into TO, as stored: how a store
 * starts with what another one learned (bench/bench_pipeline.c, BENCH_PIPELINE_LEARNED).
 * Sets *N (may be NULL) to the records copied. Returns 0 or a store error.
 */
int st_learned_copy(struct st_txn *from, struct st_txn *to, size_t *n);

/*
 * Raw access to a db whose keys and values belong to another module (ST_DB_ALERTS; any other db
 * gives -EINVAL). Keys are 1..511 bytes. st_raw_get points *V at the stored bytes, valid until
 * TXN ends. st_cursor_next_raw walks such a db in key order: the first call starts at the
 * first key >= FROM (FROM NULL: the first key), later calls go on; -ENOENT at the end; the
 * pointers stay valid until TXN ends.
 */
int st_raw_put(struct st_txn *txn, enum st_db db, const void *k, size_t klen, const void *v,
               size_t vlen);
int st_raw_get(struct st_txn *txn, enum st_db db, const void *k, size_t klen, const void **v,
               size_t *vlen);
int st_raw_del(struct st_txn *txn, enum st_db db, const void *k, size_t klen);
int st_cursor_next_raw(struct st_cursor *cur, const void *from, size_t from_len, const void **k,
                       size_t *klen, const void **v, size_t *vlen);

/* Number of entries in DB as of TXN. */
int st_count(struct st_txn *txn, enum st_db db, uint64_t *n);

/*
 * Cursors walk a db in key order within TXN; close them before the transaction ends.
 * The typed next functions return 0 with the next record, -ENOENT at the end, or -EBADMSG/
 * -ENOTSUP for a record that does not decode (the cursor has moved past it: call again to
 * continue). st_cursor_next_seen also returns the key.
 */
int st_cursor_open(struct st_txn *txn, enum st_db db, struct st_cursor **out);
int st_cursor_next_deal(struct st_cursor *cur, struct st_deal *out);
int st_cursor_next_record(struct st_cursor *cur, struct st_record *out);
/* Positions a products cursor at the first record whose key is >= KEY (> KEY when AFTER) and
 * returns it as st_cursor_next_record would; later next calls continue from there. */
int st_cursor_seek_record(struct st_cursor *cur, const struct st_key *key, bool after,
                          struct st_record *out);
int st_cursor_next_pending(struct st_cursor *cur, struct st_pending *out);
int st_cursor_next_seen(struct st_cursor *cur, struct st_key *key, struct st_seen *out);
void st_cursor_close(struct st_cursor *cur);

#endif
