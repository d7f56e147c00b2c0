/*
 * report.h: the segment as documents: what `kdeals status --json`, `kdeals stat --json` and
 * `kdeals stat --prom` print, and the web API serves (/api/v1/status, /api/v1/stat,
 * /metrics). One writer per document, so the commands and the API cannot drift apart.
 *
 * The writers only read the segment (a read-only mapping does), and for the tokens each of the
 * instance's key segments, found by the fingerprints the segment lists (shm/keyseg.h), through
 * read-only mappings of their own: every value is one relaxed atomic load, a value may be one
 * update old, never torn. JSON goes into the caller's yajl
 * generator (the caller owns the document around it and prints it); Prometheus text goes to
 * a FILE (the web role hands an open_memstream).
 */
#ifndef KD_SHM_REPORT_H
#define KD_SHM_REPORT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <yajl/yajl_gen.h>

#include "shm/counters.h"
#include "shm/layout.h"
#include "shm/segment.h"
#include "shm/tokens.h"

/* The spending policy's learned rates and what its rules did (docs/architecture.md, "Value per
 * token"): the gauges `kdeals stat --json` groups under "value", in that order. */
#define SHM_VALUE_GAUGES 12
extern const enum shm_counter_id shm_value_gauges[SHM_VALUE_GAUGES];

/*
 * `kdeals stat --json`: instance, generation, processes (not the empty slot of a role that does
 * not run here, as the web role without [web] listen), rings, "value" (the spending policy's
 * learned rates and what its rules did, by counter name), and every counter with its total,
 * its value per role and, for a COUNTER, "rate_per_s": the change since PREV (totals taken
 * DT_S seconds earlier, indexed by enum shm_counter_id) per second, or with PREV NULL the
 * average since the daemon started; histograms add "count", "p50" and "p99". NOW_MS is the
 * wall clock. Writes one JSON object into G.
 */
void shm_report_stat_json(yajl_gen g, const struct shm_layout *l, const int64_t *prev, double dt_s,
                          int64_t now_ms);

/*
 * `kdeals stat --prom`: the Prometheus text exposition (version 0.0.4) of every counter (a
 * `role` label per process that runs here), the rings, restarts, whether each process is up, the
 * generation. Returns 0, or -EIO when OUT failed.
 */
int shm_report_prom(FILE *out, const struct shm_layout *l);

/* What `kdeals status` knows: the status file, and the segment when it could attach. */
struct shm_report_status {
    const char *instance;
    const struct shm_status *st; /* the status file (meaningful when have_status) */
    bool have_status;
    bool running;               /* a live supervisor holds the instance */
    int64_t pid;                /* the supervisor's (status file, or the segment's if torn) */
    int64_t deals;              /* deals stored, -1 when the store could not be read */
    const char *store_error;    /* why the store could not be read, or "" */
    const char *segment_error;  /* running, but the segment could not be read, or "" */
    const struct shm_layout *l; /* NULL: not attached (tokens and processes left out) */
    const struct tb_stats *tbs; /* the keys' buckets together at now (shm_report_tokens) */
    int64_t now_ms;             /* wall clock */
};

/*
 * The buckets of L's usable keys together, at NOW_NS: each key's bucket lives in the key's own
 * segment (shm/keyseg.h), shared with the other instances of the host that use the key. The
 * sums of projection, refill, cap and in flight over the anchored keys (the spending policy's
 * rule); zeroed when there is none, or no key segment could be read.
 */
void shm_report_tokens(const struct shm_layout *l, int64_t now_ns, struct tb_stats *out);

/* `kdeals status`: one line per key of L (state, or why it was set aside; its bucket, what it
 * was charged) and one per instance sharing it (weight, share, whether it has work), to OUT. */
void shm_report_keys_text(FILE *out, const struct shm_layout *l, int64_t now_ns);

/* `kdeals status --json`: one JSON object into G; processes as in stat; "keys": each key of
 * the instance by fingerprint (never the key) with its state, bucket and the instances sharing
 * it. */
void shm_report_status_json(yajl_gen g, const struct shm_report_status *s);

/* The web role's address in L as "http://HOST:PORT/" into BUF (LEN bytes); false when it is
 * not listening. */
bool shm_report_web_url(const struct shm_layout *l, char *buf, size_t len);

#endif
