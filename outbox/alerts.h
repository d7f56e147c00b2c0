/*
 * alerts.h: one alert ([alert.NAME], alertcfg.h) as a lane of the outbox (docs/alerts.md).
 *
 * Entries. The lane follows the store's change log with its own position (meta
 * "alert.NAME.seq") and decides, change by change in log order, whether the product is in the
 * alert's view: the record as the store holds it with the state the change gave it (exact for
 * the view's verdict, which is what moves; the other filters read the record as it is). A
 * product that comes into the view is an entry when it never was in before, or left it at least
 * [alert] quiet before (both times are the changes' own, so the decision is a function of the
 * log); an entry makes a delivery. The membership, the delivery and the new position are
 * written in one store transaction: an entry is recorded once, and before anything is sent.
 *
 * The first time an alert runs, the deals already in its view are recorded as in it, without a
 * delivery (an alert added to a running shop does not flood the target with old deals). When
 * its position is no longer in the log (trimmed while the outbox was away), it compares every
 * record with its memberships and records the entries and exits it finds as of now.
 *
 * Deliveries. A due delivery is sent when the alert's rate limiter (a token bucket of
 * [alert] burst, refilled at [alert] rate a minute, kept in the store so it holds across
 * restarts) has a token. Before each attempt the lane records the intent (status SENDING,
 * attempts + 1, the token taken) in the store; after it, the outcome: SENT, PENDING again with
 * a backoff doubling from 2 s to [alert] retry_max (or a longer Retry-After), or DEAD after
 * [alert] attempts or a refusal. A delivery found SENDING at start was cut off by a crash: its
 * outcome is unknown, and [alert] on_unknown says whether it is sent again (the same delivery id,
 * so the receiver can tell) or dropped. Every attempt carries the delivery id
 * "kd-<store>-<alert>-<domain>-<asin>-<seq>" (seq: the change that made it enter).
 */
#ifndef KD_OUTBOX_ALERTS_H
#define KD_OUTBOX_ALERTS_H

#include <stdint.h>

#include "outbox/outbox.h"

struct ob_alert_lane;

/* A lane for [alert.NAME] on CTX; INDEX is its slot for the gauges. 0 or -ENOMEM. */
int ob_alert_lane_new(struct ob_ctx *ctx, const char *name, unsigned index,
                      struct ob_alert_lane **out);

/*
 * One step: follow the log, then send at most one delivery. Returns how many milliseconds to
 * wait before the next step, or -1 when the config no longer has the section (the lane ends).
 */
int64_t ob_alert_step(struct ob_alert_lane *l);

/* The name of the alert the lane serves. */
const char *ob_alert_lane_name(const struct ob_alert_lane *l);

/* Frees L (after its lane ended). NULL is ignored. */
void ob_alert_lane_free(struct ob_alert_lane *l);

#endif
