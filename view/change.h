/*
 * change.h: one entry of the store's change log as JSON, for every program that follows the
 * log: `kdeals deals --follow`, the PostgreSQL mirror and the alerts (docs/view.md, "The change
 * feed").
 *
 * A change says what happened to a record (store/codec.h struct st_change: seq, ASIN, domain,
 * revision, event, state before and after, time); the record itself is written beside it with
 * vw_json_record, so a consumer needs nothing else to act on a line:
 *
 *   {"seq": 1042, "event": "commit", "asin": "B0...", "domain": 1, "revision": 3,
 *    "state": "deal", "prev_state": "none", "at_ms": ..., "at": "2025-...Z", "record": {...}}
 *
 * "record" is the record as it was when the line was written, which may be a later revision
 * than the change's when it changed again since (that later change follows in the log); null
 * when the record is gone (a delete, or a later delete). Same conventions as export.h: times
 * twice (_ms and ISO 8601), words for enumerations, null for unknown.
 */
#ifndef KD_VIEW_CHANGE_H
#define KD_VIEW_CHANGE_H

#include <yajl/yajl_gen.h>

#include "store/codec.h"
#include "view/export.h"

/*
 * Writes change C and record R (NULL: null) as one JSON object into G, with R's reasons judged
 * under O->rules as vw_json_record does. EVENT names the event when not NULL (a consumer's own
 * lines, e.g. "sync"), else C's event does. Returns 0, or -EINVAL when G refused a token.
 */
int vw_json_change(yajl_gen g, const struct st_change *c, const char *event,
                   const struct st_record *r, const struct vw_out *o);

#endif
