/*
 * api.h: the JSON API of the web role, apart from HTTP (docs/operations.md, "The web API").
 *
 * web/server.c turns each HTTP request into a struct web_request (method, path, query
 * parameters, content type, body, the custom header of a write) and sends back the
 * struct web_reply this module fills: the HTTP library (libmicrohttpd) parses, this module
 * decides. Tests call web_api_handle() directly, without a socket.
 *
 * What it reads, and how:
 *   - the store, in short read transactions: the records of the deal table are decoded once
 *     per change of the store's change log (st_changes_last) and kept as one snapshot in
 *     memory, so a page of deals costs a selection, not a read of every record; reading the
 *     snapshot has a time budget (WEB_READ_BUDGET_MS), over which the request is answered 503
 *     and the next request tries again. One deal (with its history) is read fresh.
 *   - the segment through a read-only mapping of its own (attached, and attached again when
 *     the daemon restarts): status, counters, /metrics. Nothing that handles a request can
 *     write shared memory.
 * The only write is a mark (bought, ignored, cleared): one write transaction that bumps the
 * record's revision and logs ST_EV_MARK, like every other record change.
 *
 * The deals are the view of docs/view.md: every query parameter is a key of its vocabulary
 * (view/filter.h, URL spelling) and is parsed by vw_filter_parse_arg, so a URL filters exactly
 * as `kdeals deals` does; each deal is the object `kdeals deals --format json` writes
 * (view/export.h). Errors are JSON objects with a status that means what it says:
 * {"error": {"status": 400, "message": "...", "parameter": "min_roi"}}.
 *
 * Not thread-safe: the web role runs it on its one loop.
 */
#ifndef KD_WEB_API_H
#define KD_WEB_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/config.h"
#include "store/codec.h"

#define WEB_LIMIT_DEFAULT   50   /* deals per page when the request names no limit */
#define WEB_LIMIT_MAX       500  /* the most deals one page may ask for */
#define WEB_READ_BUDGET_MS  3000 /* reading the records for a snapshot takes at most this */
#define WEB_BODY_MAX        4096 /* a request body (a mark) is at most this many bytes */
#define WEB_PARAMS_MAX      32   /* query parameters per request */
#define WEB_SAMPLE_EVERY_MS 10000
#define WEB_SAMPLES_MAX     2160 /* six hours of samples, one every WEB_SAMPLE_EVERY_MS */
#define WEB_WRITE_HEADER    "X-Kdeals-Request" /* a write must carry it (docs/operations.md) */

struct web_api;

/* What the API serves, and from where. */
struct web_api_options {
    const struct cfg *cfg; /* copied: [store], the rules, the domain, [web] */
    const char *instance;  /* the segment to read (copied) */
    const char *run_dir;   /* holds <instance>.status; NULL: [daemon] run_dir */
};

struct web_param {
    const char *name;
    const char *value; /* "" for a parameter without '=' */
};

struct web_request {
    const char *method; /* "GET", "POST", ... */
    const char *path;   /* without the query: "/api/v1/deals" */
    const struct web_param *params;
    size_t n_params;
    const char *content_type; /* NULL when absent */
    bool write_header;        /* WEB_WRITE_HEADER was sent */
    const char *body;         /* NULL or BODY_LEN bytes */
    size_t body_len;
    int64_t now_ms; /* wall clock */
};

struct web_reply {
    unsigned status;
    char *body; /* malloc'd; the caller frees it */
    size_t len;
    const char *content_type; /* static */
    const char *allow;        /* the methods a 405 names (Allow header), else NULL */
    unsigned retry_after_s;   /* > 0: a Retry-After header (503) */
};

/* One sample of the engine for the chart (kept WEB_SAMPLES_MAX, oldest dropped). */
struct web_sample {
    int64_t at_ms;
    int64_t tokens;      /* projected balance */
    int64_t refill_rate; /* tokens per Keepa minute */
    int64_t spent[3];    /* tokens charged so far: scanner, committer, updater */
    int64_t http_429;
    int64_t committed; /* deals committed so far (all roles) */
    int64_t deals;     /* deals stored now; -1 unknown */
};

/* Opens the API (it attaches and opens lazily: a store or daemon that is not there yet makes
 * requests answer 503, not the start fail). Returns 0 or -ENOMEM. */
int web_api_open(struct web_api **out, const struct web_api_options *o);

/* Takes a newly published config (the rules the reasons use, [web] keys that reload). */
void web_api_reload(struct web_api *api, const struct cfg *cfg);

/* Closes the store and the segment and frees API. NULL is ignored. */
void web_api_close(struct web_api *api);

/* Answers RQ into OUT (always filled, body always valid JSON or text). */
void web_api_handle(struct web_api *api, const struct web_request *rq, struct web_reply *out);

/* Whether PATH is served by web_api_handle (under /api/ or /metrics). */
bool web_api_path(const char *path);

/* Takes a sample of the engine now (the server calls it every WEB_SAMPLE_EVERY_MS) and writes
 * it as a JSON object into a malloc'd *JSON (*LEN); *JSON is NULL when out of memory. */
void web_api_sample(struct web_api *api, int64_t now_ms, char **json, size_t *len);

/*
 * The change log after position AFTER: up to MAX changes into OUT (*N of them) and the last
 * sequence number into *LAST. Returns 0, or a negative errno when the store cannot be read.
 */
int web_api_changes(struct web_api *api, uint64_t after, struct st_change *out, size_t max,
                    size_t *n, uint64_t *last);

/* A change as the JSON object the event stream sends, into a malloc'd *JSON (*LEN). */
void web_api_change_json(const struct st_change *c, char **json, size_t *len);

/* Fills OUT with an error reply: {"error": {"status", "message", "parameter"?}}. */
void web_api_error(struct web_reply *out, unsigned status, const char *parameter, const char *fmt,
                   ...) __attribute__((format(printf, 4, 5)));

#endif
