/*
 * util.h: what the benchmarks that drive the daemon against kdeals-sim share (bench_pipeline,
 * bench_shared_key): sleeping and the monotonic clock in ms, an integer from the environment,
 * a small file written whole, and the simulator's control endpoints (GET as JSON, its ledger).
 * A benchmark asserts nothing, so these report a failure by their return value and go on.
 */
#ifndef KD_BENCH_UTIL_H
#define KD_BENCH_UTIL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <curl/curl.h>
#include <jansson.h>

/* Sleeps MS milliseconds (again after a signal). */
void bu_sleep_ms(int64_t ms);

/* CLOCK_MONOTONIC in ms. */
int64_t bu_mono_ms(void);

/* The integer in environment variable NAME, DEF when unset or empty; a value that is not an
 * integer in MIN..MAX is reported on stderr (prefixed with PROG) and DEF returned. */
long bu_env_long(const char *prog, const char *name, long def, long min, long max);

/* Writes the formatted text to PATH (created with MODE, or truncated). 0 or a negative errno. */
int bu_write_file(const char *path, mode_t mode, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* GET http://127.0.0.1:PORT PATH with C, parsed as JSON; NULL on any failure or a status other
 * than 200. The caller json_decref()s it. */
json_t *bu_sim_get(CURL *c, int port, const char *path);

/* The integer member K of O (0 when absent or not an integer). */
int64_t bu_jint(const json_t *o, const char *k);

/* The simulator's ledger (GET /_sim/stats, sim/README.md). */
struct bu_ledger {
    int64_t earned, consumed, expired, left, http_429, requests, asins_requested, asins_distinct;
    int64_t product_requests, product_tokens, deal_requests, deal_tokens, token_requests;
    bool ok; /* false: the simulator did not answer; every figure is 0 */
};

struct bu_ledger bu_ledger_read(CURL *c, int port);

#endif
