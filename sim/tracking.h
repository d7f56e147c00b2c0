/*
 * tracking.h: Keepa's tracking API (/tracking?type=add|get|list|remove|removeAll|notification|
 * webhook) with per-key state, and the control hook that raises notifications
 * (POST /_sim/notify; sim/README.md, "Tracking").
 *
 * Trackings and notifications live in memory, per API key, under one mutex: a test adds
 * trackings, makes the simulator raise a notification for an ASIN, and reads it back with
 * type=notification, as it would from Keepa. Notifications are raised only through the control
 * endpoint (prices crossing a tracking's thresholds do not raise one by themselves), and no
 * webhook is ever called: the URL is stored and shown. Expired trackings (ttl) go when next
 * touched, with an EXPIRED notification when expireNotify was set.
 */
#ifndef SIM_TRACKING_H
#define SIM_TRACKING_H

#include <stddef.h>
#include <stdint.h>

#include "sim/catalog.h"
#include "sim/jbuf.h"
#include "sim/selection.h"

#define SIM_TRACK_MAX        100000 /* trackings over all keys */
#define SIM_TRACK_NOTES_MAX  100000 /* notifications kept over all keys (oldest dropped) */
#define SIM_TRACK_BATCH      1000   /* trackings in one add */
#define SIM_TRACK_THRESHOLDS 16
#define SIM_TRACK_NOTIFY_IF  8

struct sim_tracking;

/* A new, empty tracking store; NULL when out of memory. */
struct sim_tracking *sim_tracking_new(void);
void sim_tracking_free(struct sim_tracking *t);

/*
 * Answers one /tracking request of KEY at catalog minute NOW: writes the payload members (each
 * followed by ',') into OUT and the cost into *COST (1 per tracking added, else 0). Returns 200,
 * or 400 with a reason in ERR. GET reads the parameters; add takes the TrackingRequest JSON
 * (one object or an array) from the `tracking` parameter or the request body.
 */
unsigned sim_tracking_request(struct sim_tracking *t, const struct sim_catalog *c, const char *key,
                              int64_t now, sim_param_fn get, void *get_ctx, const char *body,
                              size_t body_len, struct sim_buf *out, int64_t *cost, char *err,
                              size_t errsz);

/*
 * Raises a notification for every tracking of ASIN (of KEY, or of every key when KEY is NULL)
 * at minute NOW, with csv type CSV_TYPE (-1: the tracking's first threshold's, else NEW) and
 * cause CAUSE (Tracking.TrackingNotificationCause: 0 EXPIRED, 1 DESIRED_PRICE, ...). Returns how
 * many were raised.
 */
int sim_tracking_notify(struct sim_tracking *t, const struct sim_catalog *c, const char *key,
                        const char *asin, int csv_type, int cause, int64_t now);

#endif
