/*
 * oracle.h: the simulator's truth for benchmarks, as JSON answers of the /_sim/ control
 * endpoints (sim/README.md, "The truth").
 *
 * A benchmark asks what was really a deal, when, and for how much: /_sim/truth judges listed
 * ASINs at a Keepa minute (or one minute per ASIN), /_sim/timeline gives the stretches during
 * which each ASIN was a deal, /_sim/true-deals lists every catalog product that was a deal at
 * some moment of a window with its peak profit and the tokens a full fetch of it costs. Each
 * judges with the project's own judgement (sim/truth.h) under the default rules, or the rules
 * the request names (sim_truth_rules), and reports the rules' hash (jd_rules_hash) so a
 * benchmark can check that the oracle judged under the daemon's rules.
 *
 * The functions only read the catalog: the caller (sim/server.c) supplies the catalog's minute
 * now and how a wall-clock time maps to a catalog minute. No I/O.
 */
#ifndef SIM_ORACLE_H
#define SIM_ORACLE_H

#include <stdint.h>

#include "sim/catalog.h"
#include "sim/jbuf.h"
#include "sim/selection.h"

#define SIM_ORACLE_MAX_ASINS  1000  /* ASINs of one /_sim/truth request */
#define SIM_ORACLE_MAX_WINDOW 44640 /* Keepa minutes of one timeline or scan: 31 days */

struct sim_oracle_req {
    const struct sim_catalog *cat;
    int64_t now_min; /* the catalog's Keepa minute now */
    /* The catalog minute at wall-clock time MS (epoch ms), for at_ms= parameters. */
    int64_t (*min_of_wall_ms)(const void *clock, int64_t ms);
    const void *clock;
    sim_param_fn get; /* query parameters */
    void *get_ctx;
    const char *body; /* request body (a selection may come from it), may be NULL */
    size_t body_len;
};

/*
 * GET /_sim/truth?asin=A,B,...[&at=M|M1,M2,...|&at_ms=MS|MS1,...][&offers=N][rules]: each ASIN
 * judged at minute M (default now; one minute for all or one per ASIN). Writes the JSON body
 * into OUT and returns the HTTP status (200, or 400 with {"error":...}).
 */
unsigned sim_oracle_truth(const struct sim_oracle_req *q, struct sim_buf *out);

/*
 * GET /_sim/timeline?asin=A,...&from=M[&to=M][&step=S][&offers=N][rules]: the stretches of
 * [from, to) during which each ASIN is a deal, with their peak profit. Status as above.
 */
unsigned sim_oracle_timeline(const struct sim_oracle_req *q, struct sim_buf *out);

/*
 * GET /_sim/true-deals?from=M[&to=M][&step=S][&selection=JSON][&offers=N][rules]: every catalog
 * product that is a deal at some moment of [from, to), highest peak profit first, with the
 * tokens a full fetch costs at its peak and, with a selection, when the feed listed it while it
 * was a deal. Status as above.
 */
unsigned sim_oracle_true_deals(const struct sim_oracle_req *q, struct sim_buf *out);

#endif
