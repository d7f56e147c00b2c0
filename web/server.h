/*
 * server.h: the web role's HTTP server: libmicrohttpd driven by a libuv loop.
 *
 * libmicrohttpd (the simulator's HTTP library) parses every request; it runs in its external
 * epoll mode on the caller's loop (a uv_poll on its epoll descriptor and a timer for its
 * timeouts), so the whole web role is one thread: no lock guards the API, the store or the
 * event streams. What the server adds to the library (docs/operations.md, "The web
 * dashboard"):
 *
 *   - routes: the page (web/static, embedded at build time: web/assets.h), the JSON API
 *     (web/api.h), the event stream /api/v1/events;
 *   - safety: the bearer token on every API request when one is configured (always beyond
 *     loopback), a Host check on a loopback listen (DNS rebinding), writes only as a JSON POST
 *     with the custom header and from the same origin, no CORS header at all, security headers
 *     on every answer (nosniff, no referrer, no framing, a CSP on the page);
 *   - bounds: connections (all, and per client address), the URL (WEB_URI_MAX: 414), headers
 *     (the library's memory pool: it answers 431/414 itself beyond it), the body (413), an idle
 *     timeout against slow clients, event streams (WEB_STREAMS_MAX) each with a bounded queue
 *     and a small kernel send buffer (a client that does not read is dropped once its queue is
 *     full, not after megabytes sit in the kernel for it), and the API's own read budget;
 *   - live data: a timer reads the store's change log from its own position and sends each
 *     change to every event stream ("deal" when a record became a deal, else "change"; a
 *     backlog too long to send becomes one "resync"), and an engine sample every
 *     WEB_SAMPLE_EVERY_MS ("sample"), which the API also keeps for the chart.
 */
#ifndef KD_WEB_SERVER_H
#define KD_WEB_SERVER_H

#include <stddef.h>
#include <uv.h>

#include "base/config.h"
#include "shm/layout.h"

#define WEB_URI_MAX         8192   /* request target (path and query) */
#define WEB_POOL_BYTES      32768  /* the library's memory per connection: request line, headers */
#define WEB_IDLE_TIMEOUT_S  20     /* a connection with no traffic for this long is closed */
#define WEB_STREAMS_MAX     16     /* open event streams */
#define WEB_STREAM_QUEUE    262144 /* bytes queued for one stream before it is dropped */
#define WEB_STREAM_SNDBUF   32768  /* the kernel's send buffer of an event stream's socket */
#define WEB_POLL_CHANGES_MS 1000
#define WEB_KEEPALIVE_MS    10000
#define WEB_BACKLOG_RESYNC  1000 /* changes behind: one "resync" instead */

struct web_server;

struct web_server_options {
    const struct cfg *cfg; /* [web] listen and max_connections, and what the API needs */
    const char *listen;    /* overrides [web] listen when not NULL (`kdeals web --listen`) */
    const char *instance;  /* the segment the API reads */
    const char *run_dir;   /* NULL: [daemon] run_dir */
    const char *token;     /* the bearer token every API request must send; "" or NULL none */
    struct shm_counter_block *counters; /* this role's counters; NULL: kept privately */
    struct shm_web *publish;            /* where to publish the port; NULL: nowhere */
};

/*
 * Listens and starts serving on LOOP. A listen beyond loopback without a token is refused
 * (-EPERM) even if the config let it through. Returns 0 and *OUT, or a negative errno with
 * ERR (ERRLEN bytes) naming the address and what to do.
 */
int web_server_start(struct web_server **out, uv_loop_t *loop, const struct web_server_options *o,
                     char *err, size_t errlen);

/* The port it listens on. */
unsigned web_server_port(const struct web_server *ws);

/* Takes a newly published config. */
void web_server_reload(struct web_server *ws, const struct cfg *cfg);

/*
 * Stops: every connection closed (event streams end), the port unpublished, the handles
 * closed; DONE(UD) runs once they are, and WS is freed then.
 */
void web_server_close(struct web_server *ws, void (*done)(void *), void *ud);

/* For a loop that ended without web_server_close (its handles closed by whoever ended it):
 * stops the library and frees WS without touching the loop. */
void web_server_abandon(struct web_server *ws);

#endif
