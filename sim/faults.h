/*
 * faults.h: fault-injection SPEC parsing (pure) and per-request fault draws.
 *
 * SPEC is comma-separated name=value (see sim/README.md): latency_ms=N|A-B,
 * offers_latency_ms=A-B, http500=P, http503=P, storm429=N, reset=P, truncate=P, malformed=P,
 * offers_fail=P, no_products=P, refill_flap=A:B, reset_all=0|1, charge_errors=0|1 (500/503
 * answers are charged the request's cost, as a server that did the work would), the hostile
 * bodies endless=P,
 * huge=P, drip=P, deep=P, mistyped=P, mistyped_fields=P (each also as offers_NAME=P, which applies
 * to /product with offers only), and `clear`. Draws come from one PRNG seeded by --seed, so a run
 * with the same request sequence is reproducible.
 *
 * The hostile bodies are kinds of one fault family (enum sim_hostile): at most one is drawn per
 * request, after the other body-shaping faults, and each is counted under its own name in the
 * ledger whichever scope fired it.
 */
#ifndef SIM_FAULTS_H
#define SIM_FAULTS_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

enum sim_fault_kind {
    SIM_F_LATENCY,
    SIM_F_OFFERS_LATENCY,
    SIM_F_HTTP500,
    SIM_F_HTTP503,
    SIM_F_STORM429,
    SIM_F_RESET,
    SIM_F_TRUNCATE,
    SIM_F_MALFORMED,
    SIM_F_OFFERS_FAIL,
    SIM_F_NO_PRODUCTS,
    SIM_F_REFILL_FLAP,
    SIM_F_ENDLESS,
    SIM_F_HUGE,
    SIM_F_DRIP,
    SIM_F_DEEP,
    SIM_F_MISTYPED,
    SIM_F_MISTYPED_FIELDS,
    SIM_F_COUNT
};

/* Hostile response bodies (sim/README.md "Fault injection"), in ledger order. */
enum sim_hostile {
    SIM_H_NONE,
    SIM_H_ENDLESS,         /* 200, a valid prefix then array elements for ever */
    SIM_H_HUGE,            /* 200, SIM_HUGE_BODY_BYTES of padding then the real body */
    SIM_H_DRIP,            /* the real body, SIM_DRIP_BYTES every SIM_DRIP_PAUSE_MS */
    SIM_H_DEEP,            /* `products` nested SIM_DEEP_LEVELS arrays deep */
    SIM_H_MISTYPED,        /* the real shape, every product field of the wrong JSON type */
    SIM_H_MISTYPED_FIELDS, /* the same, but each product's asin kept valid */
    SIM_H_COUNT
};

#define SIM_HUGE_BODY_BYTES ((uint64_t)160 * 1024 * 1024)
#define SIM_DRIP_BYTES      16
#define SIM_DRIP_PAUSE_MS   250
#define SIM_DEEP_LEVELS     1000000

/* The ledger's fault kind of a hostile body. */
enum sim_fault_kind sim_hostile_fault(enum sim_hostile h);

struct sim_fault_spec {
    int64_t latency_lo_ms, latency_hi_ms;
    int64_t offers_latency_lo_ms, offers_latency_hi_ms;
    double p500, p503, reset, truncate, malformed, offers_fail, no_products;
    int64_t storm429;
    int flap_on;
    int64_t flap_a, flap_b;
    int charge_errors;                  /* 500/503 answers charge the request's full cost */
    double hostile[SIM_H_COUNT];        /* any cost-bearing request; [SIM_H_NONE] unused */
    double offers_hostile[SIM_H_COUNT]; /* /product with offers only */
};

/*
 * Parses SPEC into OUT (starting from an empty spec). Returns 0 or -EINVAL with the offending
 * item in ERR. An empty string or "clear" gives an empty spec.
 */
int sim_faults_parse(const char *spec, struct sim_fault_spec *out, char *err, size_t errsz);

/* Writes SPEC back in SPEC syntax (for GET /_sim/faults). */
void sim_faults_format(const struct sim_fault_spec *spec, char *out, size_t outsz);

/* Fault names as used in SPEC and in the ledger's faults_injected. */
const char *sim_fault_name(enum sim_fault_kind k);

/* Runtime state: the current spec, the PRNG, the storm counter and injection counts. */
struct sim_faults {
    pthread_mutex_t mu;
    struct sim_fault_spec spec;
    uint64_t rng;
    int64_t storm_left;
    uint64_t flap_counter;
    int64_t injected[SIM_F_COUNT];
};

void sim_faults_init(struct sim_faults *f, uint64_t seed, const struct sim_fault_spec *spec);
void sim_faults_destroy(struct sim_faults *f);
void sim_faults_replace(struct sim_faults *f, const struct sim_fault_spec *spec);
void sim_faults_get(struct sim_faults *f, struct sim_fault_spec *spec);

/* Per-request decision for a cost-bearing request. */
struct sim_fault_draw {
    int storm429, http500, http503, reset, truncate, malformed, no_products;
    int charge_error; /* http500/503 under charge_errors: charged like a normal answer */
    enum sim_hostile hostile;
    int64_t latency_ms;
};

/*
 * Draws this request's faults and counts them. IS_PRODUCT: a /product request (the only one
 * no_products applies to); OFFERS: a /product request with offers.
 */
void sim_faults_draw(struct sim_faults *f, int is_product, int offers, struct sim_fault_draw *d);

/* One Bernoulli draw of the offers_fail probability (per product); counts it when it fires. */
int sim_faults_offers_fail(struct sim_faults *f);

/* Reported refillRate for the next response: REAL unless refill_flap is on. */
int64_t sim_faults_refill_rate(struct sim_faults *f, int64_t real);

/* Copies the injection counters. */
void sim_faults_counts(struct sim_faults *f, int64_t out[SIM_F_COUNT]);
void sim_faults_reset_counts(struct sim_faults *f);

#endif
