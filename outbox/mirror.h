/*
 * mirror.h: the PostgreSQL mirror, one lane of the outbox (docs/mirror.md).
 *
 * It makes a PostgreSQL database hold what the store holds: every record (deal or not) with its
 * verdict, offer, reasons and mark, and every change of the log, under this instance's name
 * ([mirror] instance). It reads the change log after its position (meta "mirror.seq"), reads
 * the records those changes name from the same snapshot, and writes them in one database
 * transaction per batch; only after that transaction committed does it move its position. A
 * crash between the two replays the batch, and the database is the side that makes a replay
 * harmless: products are upserted by (instance, domain, asin) only when the row's seq (the
 * change seq as of which it is true) is not newer, changes inserted by (instance, seq) unless
 * present. So each change is in the database exactly once, in order, whatever is killed when.
 *
 * When the position is no longer in the log (trimmed while the database was away: the log keeps
 * ST_CHANGES_MAX changes, so the store's disk stays bounded however long it is away), or this
 * store never mirrored and its log no longer starts at 1, the mirror resynchronises: in one
 * database transaction it replaces the instance's products with every record of one store
 * snapshot, then takes that snapshot's last seq as its position.
 *
 * Identity. The store gets a random id the first time it mirrors (meta "outbox.store_id",
 * alertdb.h); the database's instances table records which store mirrors under each name. A fresh
 * store (no position yet) takes a name over, replacing the old store's rows; a store with a
 * position that finds its name taken by another store refuses and says so, as does a second live
 * connection for the same name (each instance's connection holds an advisory lock on its name; a
 * lock left by this store's own dead predecessor is ended).
 *
 * The step never fails for good: an unreachable or refusing database is retried with a
 * backoff doubling from 1 s to [mirror] retry_max, counted (mirror_failed) and logged once per
 * new error; the lag (mirror_lag) says how far behind it is.
 */
#ifndef KD_OUTBOX_MIRROR_H
#define KD_OUTBOX_MIRROR_H

#include <stdint.h>

#include "outbox/outbox.h"

struct ob_mirror;

/* A mirror lane on CTX (not connected yet). Returns 0 and *OUT, or -ENOMEM. */
int ob_mirror_new(struct ob_ctx *ctx, struct ob_mirror **out);

/*
 * One step: (re)connect, migrate and claim when needed, then mirror one batch (or resync).
 * Returns how many milliseconds to wait before the next step: 0 when there is more to do at
 * once, the poll interval when caught up, the backoff after a failure. Runs on the lane's
 * thread.
 */
int64_t ob_mirror_step(struct ob_mirror *m);

/* Cancels the query in flight, if any (from any thread): the step returns soon after. */
void ob_mirror_cancel(struct ob_mirror *m);

/* Disconnects and frees M (after its lane ended). NULL is ignored. */
void ob_mirror_free(struct ob_mirror *m);

/* Meta name of the mirror's position (store/store.h, db meta). */
#define OB_META_MIRROR_SEQ "mirror.seq"

#endif
