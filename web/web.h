/*
 * web.h: the web role: the dashboard and the JSON API over HTTP (docs/architecture.md, "The
 * web role"; docs/operations.md, "The web dashboard").
 *
 * A read-mostly process: the supervisor starts it as one more worker when [web] listen is
 * set (`kdeals worker web`), after the scanner, and restarts, stops, reloads and counts it
 * like the others. It never holds the Keepa API key (its key pipe is empty). It reads the
 * store in read transactions and the segment through a read-only mapping of its own; its only
 * write is a seller's mark. `kdeals web` runs the same server alone, in the foreground,
 * against a store and (when the daemon runs) its segment, for development.
 *
 * The parts: web/server.h (HTTP, the checks, the event streams), web/api.h (the endpoints),
 * web/assets.h (the page from web/static, embedded at build time).
 */
#ifndef KD_WEB_H
#define KD_WEB_H

#include "base/config.h"
#include "worker/worker.h"

extern const struct wk_stage web_stage;

/*
 * `kdeals web`: serves C's store and INSTANCE's segment (read from RUN_DIR) on LISTEN (NULL:
 * [web] listen, else 127.0.0.1:8480) until SIGINT or SIGTERM. Returns the exit code: 0 after
 * a signal, 1 when it cannot listen, 2 for a bad token file or address.
 */
int web_run(const struct cfg *c, const char *instance, const char *run_dir, const char *listen);

#endif
