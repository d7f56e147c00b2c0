/*
 * server.h: the kdeals-sim HTTP server (libmicrohttpd, epoll + internal thread pool).
 *
 * Owns the catalog, the token bucket, the fault state, the ledger and the /deal cache, and
 * serves the Keepa endpoints and the /_sim/ control endpoints (sim/README.md). Latency faults
 * suspend the connection and a timer thread resumes it, so a 20 s offers delay never holds a
 * pool thread.
 */
#ifndef SIM_SERVER_H
#define SIM_SERVER_H

#include <stdint.h>

#define SIM_MAX_KEYS 64

struct sim_config {
    const char *listen_addr; /* IPv4 literal */
    int listen_explicit;
    int port;
    const char *port_file;
    uint64_t seed;
    int64_t products;
    int64_t minute_ms, bucket_minutes, refill_rate, start_tokens; /* start < 0: full */
    int n_keys, n_expired;
    int bucket_per_key; /* each of KEYS has its own bucket (else one bucket for every key) */
    const char *keys[SIM_MAX_KEYS];
    const char *expired[SIM_MAX_KEYS];
    const char *faults;
    double volatility;
    int economy; /* enum sim_economy: SIM_ECONOMY_CALIBRATED (default) or SIM_ECONOMY_RICH */
    int offers_zero_ok;
    int threads;
    int quiet;
    int64_t clock_ms; /* 0: the wall clock; else the simulated clock starts here */
    /* With an accelerated minute the catalog clock starts this many real hours of
     * acceleration behind the wall clock, so it never runs ahead of the answers' timestamp
     * (sim/README.md, "Clocks"). */
    int64_t catch_up_hours;
    const char *replay_deal, *replay_product;
    int64_t max_connections;
    /* zlib level of gzip'd bodies (0-9; 1 by default): a speed choice, the inflated bytes are
     * the same at every level. 0 (stored blocks) costs both sides least CPU at 600x. */
    int gzip_level;
};

struct sim_server;

/*
 * Validates CFG, builds the state and starts listening; writes the port file and the
 * "listening on" line. Returns 0 and the server in *OUT, or a negative errno after logging
 * what failed.
 */
int sim_server_start(const struct sim_config *cfg, struct sim_server **out);

/* Stops serving and frees everything. */
void sim_server_stop(struct sim_server *s);

#endif
