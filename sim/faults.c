/*
 * faults.c: fault SPEC parsing and per-request draws (see faults.h).
 */
#include "sim/faults.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *NAMES[SIM_F_COUNT] = {
    "latency_ms",  "offers_latency_ms", "http500",   "http503",     "storm429",
    "reset",       "truncate",          "malformed", "offers_fail", "no_products",
    "refill_flap", "endless",           "huge",      "drip",        "deep",
    "mistyped",    "mistyped_fields"};

/* SPEC names of the hostile bodies, indexed by enum sim_hostile. */
static const char *HOSTILE_NAMES[SIM_H_COUNT] = {"",     "endless",  "huge",           "drip",
                                                 "deep", "mistyped", "mistyped_fields"};

enum sim_fault_kind sim_hostile_fault(enum sim_hostile h)
{
    return (enum sim_fault_kind)(SIM_F_ENDLESS + (int)h - (int)SIM_H_ENDLESS);
}

/* The hostile kind named N ("drip"), else SIM_H_NONE. */
static enum sim_hostile hostile_by_name(const char *n)
{
    for (int h = SIM_H_ENDLESS; h < SIM_H_COUNT; h++)
        if (strcmp(n, HOSTILE_NAMES[h]) == 0)
            return (enum sim_hostile)h;
    return SIM_H_NONE;
}

const char *sim_fault_name(enum sim_fault_kind k)
{
    return (unsigned)k < SIM_F_COUNT ? NAMES[k] : "?";
}

static int parse_prob(const char *v, double *p)
{
    char *end;
    double d = strtod(v, &end);
    if (end == v || *end != '\0' || !(d >= 0.0 && d <= 1.0))
        return -EINVAL;
    *p = d;
    return 0;
}

static int parse_u64(const char *v, int64_t *out)
{
    char *end;
    if (*v < '0' || *v > '9')
        return -EINVAL;
    unsigned long long x = strtoull(v, &end, 10);
    if (*end != '\0' || x > 100000000000ULL)
        return -EINVAL;
    *out = (int64_t)x;
    return 0;
}

/* "N" or "A-B" (or "A:B" with SEP ':'). */
static int parse_pair(const char *v, char sep, int single_ok, int ordered, int64_t *a, int64_t *b)
{
    char tmp[64];
    if (strlen(v) >= sizeof(tmp))
        return -EINVAL;
    strcpy(tmp, v);
    char *s = strchr(tmp, sep);
    if (s == NULL) {
        if (!single_ok || parse_u64(tmp, a) != 0)
            return -EINVAL;
        *b = *a;
        return 0;
    }
    *s = '\0';
    if (parse_u64(tmp, a) != 0 || parse_u64(s + 1, b) != 0 || (ordered && *b < *a))
        return -EINVAL;
    return 0;
}

int sim_faults_parse(const char *spec, struct sim_fault_spec *out, char *err, size_t errsz)
{
    memset(out, 0, sizeof(*out));
    if (spec == NULL)
        return 0;
    size_t len = strlen(spec);
    if (len > 4096) {
        snprintf(err, errsz, "fault spec too long");
        return -EINVAL;
    }
    char *copy = strdup(spec), *save = NULL;
    if (copy == NULL)
        return -ENOMEM;
    int rc = 0;
    for (char *item = strtok_r(copy, ",", &save); item != NULL && rc == 0;
         item = strtok_r(NULL, ",", &save)) {
        while (*item == ' ')
            item++;
        if (*item == '\0')
            continue;
        if (strcmp(item, "clear") == 0) {
            memset(out, 0, sizeof(*out));
            continue;
        }
        char *eq = strchr(item, '=');
        if (eq == NULL) {
            rc = -EINVAL;
        } else {
            *eq = '\0';
            const char *n = item, *v = eq + 1;
            if (strcmp(n, "latency_ms") == 0)
                rc = parse_pair(v, '-', 1, 1, &out->latency_lo_ms, &out->latency_hi_ms);
            else if (strcmp(n, "offers_latency_ms") == 0)
                rc = parse_pair(v, '-', 1, 1, &out->offers_latency_lo_ms,
                                &out->offers_latency_hi_ms);
            else if (strcmp(n, "http500") == 0)
                rc = parse_prob(v, &out->p500);
            else if (strcmp(n, "http503") == 0)
                rc = parse_prob(v, &out->p503);
            else if (strcmp(n, "storm429") == 0)
                rc = parse_u64(v, &out->storm429);
            else if (strcmp(n, "reset") == 0)
                rc = parse_prob(v, &out->reset);
            else if (strcmp(n, "reset_all") == 0) {
                int64_t on;
                rc = parse_u64(v, &on);
                if (rc == 0 && on > 1)
                    rc = -EINVAL;
                if (rc == 0)
                    out->reset = on ? 1.0 : 0.0;
            } else if (strcmp(n, "charge_errors") == 0) {
                int64_t on;
                rc = parse_u64(v, &on);
                if (rc == 0 && on > 1)
                    rc = -EINVAL;
                if (rc == 0)
                    out->charge_errors = (int)on;
            } else if (strcmp(n, "truncate") == 0)
                rc = parse_prob(v, &out->truncate);
            else if (strcmp(n, "malformed") == 0)
                rc = parse_prob(v, &out->malformed);
            else if (strcmp(n, "offers_fail") == 0)
                rc = parse_prob(v, &out->offers_fail);
            else if (strcmp(n, "no_products") == 0)
                rc = parse_prob(v, &out->no_products);
            else if (strcmp(n, "refill_flap") == 0) {
                rc = parse_pair(v, ':', 0, 0, &out->flap_a, &out->flap_b);
                out->flap_on = rc == 0;
            } else if (hostile_by_name(n) != SIM_H_NONE)
                rc = parse_prob(v, &out->hostile[hostile_by_name(n)]);
            else if (strncmp(n, "offers_", 7) == 0 && hostile_by_name(n + 7) != SIM_H_NONE)
                rc = parse_prob(v, &out->offers_hostile[hostile_by_name(n + 7)]);
            else
                rc = -EINVAL;
            if (rc != 0)
                *eq = '=';
        }
        if (rc != 0 && err != NULL)
            snprintf(err, errsz, "bad fault item '%s'", item);
    }
    free(copy);
    return rc;
}

void sim_faults_format(const struct sim_fault_spec *s, char *out, size_t outsz)
{
    size_t n = 0;
    out[0] = '\0';
#define ADD(...)                                                                                   \
    do {                                                                                           \
        if (n < outsz)                                                                             \
            n += (size_t)snprintf(out + n, outsz - n, __VA_ARGS__);                                \
    } while (0)
    if (s->latency_hi_ms > 0)
        ADD("latency_ms=%lld-%lld,", (long long)s->latency_lo_ms, (long long)s->latency_hi_ms);
    if (s->offers_latency_hi_ms > 0)
        ADD("offers_latency_ms=%lld-%lld,", (long long)s->offers_latency_lo_ms,
            (long long)s->offers_latency_hi_ms);
    if (s->p500 > 0)
        ADD("http500=%g,", s->p500);
    if (s->p503 > 0)
        ADD("http503=%g,", s->p503);
    if (s->storm429 > 0)
        ADD("storm429=%lld,", (long long)s->storm429);
    if (s->charge_errors)
        ADD("charge_errors=1,");
    if (s->reset > 0)
        ADD("reset=%g,", s->reset);
    if (s->truncate > 0)
        ADD("truncate=%g,", s->truncate);
    if (s->malformed > 0)
        ADD("malformed=%g,", s->malformed);
    if (s->offers_fail > 0)
        ADD("offers_fail=%g,", s->offers_fail);
    if (s->no_products > 0)
        ADD("no_products=%g,", s->no_products);
    if (s->flap_on)
        ADD("refill_flap=%lld:%lld,", (long long)s->flap_a, (long long)s->flap_b);
    for (int h = SIM_H_ENDLESS; h < SIM_H_COUNT; h++) {
        if (s->hostile[h] > 0)
            ADD("%s=%g,", HOSTILE_NAMES[h], s->hostile[h]);
        if (s->offers_hostile[h] > 0)
            ADD("offers_%s=%g,", HOSTILE_NAMES[h], s->offers_hostile[h]);
    }
#undef ADD
    if (n > 0 && n <= outsz && out[n - 1] == ',')
        out[n - 1] = '\0';
}

void sim_faults_init(struct sim_faults *f, uint64_t seed, const struct sim_fault_spec *spec)
{
    memset(f, 0, sizeof(*f));
    pthread_mutex_init(&f->mu, NULL);
    f->rng = seed ^ 0xFA17FA17FA17FA17ULL;
    if (spec != NULL) {
        f->spec = *spec;
        f->storm_left = spec->storm429;
    }
}

void sim_faults_destroy(struct sim_faults *f)
{
    pthread_mutex_destroy(&f->mu);
}

void sim_faults_replace(struct sim_faults *f, const struct sim_fault_spec *spec)
{
    pthread_mutex_lock(&f->mu);
    f->spec = *spec;
    f->storm_left = spec->storm429;
    f->flap_counter = 0;
    pthread_mutex_unlock(&f->mu);
}

void sim_faults_get(struct sim_faults *f, struct sim_fault_spec *spec)
{
    pthread_mutex_lock(&f->mu);
    *spec = f->spec;
    spec->storm429 = f->storm_left;
    pthread_mutex_unlock(&f->mu);
}

/* splitmix64 step; caller holds the mutex. */
static uint64_t next_u64(struct sim_faults *f)
{
    uint64_t z = (f->rng += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static int bern(struct sim_faults *f, double p)
{
    if (p <= 0)
        return 0;
    double u = (double)(next_u64(f) >> 11) * (1.0 / 9007199254740992.0);
    return u < p;
}

static int64_t uniform(struct sim_faults *f, int64_t lo, int64_t hi)
{
    if (hi <= lo)
        return lo;
    return lo + (int64_t)(next_u64(f) % (uint64_t)(hi - lo + 1));
}

void sim_faults_draw(struct sim_faults *f, int is_product, int offers, struct sim_fault_draw *d)
{
    memset(d, 0, sizeof(*d));
    pthread_mutex_lock(&f->mu);
    const struct sim_fault_spec *s = &f->spec;
    if (f->storm_left > 0) {
        f->storm_left--;
        d->storm429 = 1;
        f->injected[SIM_F_STORM429]++;
    }
    if (s->latency_hi_ms > 0) {
        d->latency_ms += uniform(f, s->latency_lo_ms, s->latency_hi_ms);
        f->injected[SIM_F_LATENCY]++;
    }
    if (offers && s->offers_latency_hi_ms > 0) {
        d->latency_ms += uniform(f, s->offers_latency_lo_ms, s->offers_latency_hi_ms);
        f->injected[SIM_F_OFFERS_LATENCY]++;
    }
    if (!d->storm429) {
        if ((d->http500 = bern(f, s->p500)))
            f->injected[SIM_F_HTTP500]++;
        else if ((d->http503 = bern(f, s->p503)))
            f->injected[SIM_F_HTTP503]++;
        else if (is_product && (d->no_products = bern(f, s->no_products)))
            f->injected[SIM_F_NO_PRODUCTS]++;
        else if ((d->reset = bern(f, s->reset)))
            f->injected[SIM_F_RESET]++;
        else if ((d->truncate = bern(f, s->truncate)))
            f->injected[SIM_F_TRUNCATE]++;
        else if ((d->malformed = bern(f, s->malformed)))
            f->injected[SIM_F_MALFORMED]++;
        d->charge_error = (d->http500 || d->http503) && s->charge_errors;
        for (int h = SIM_H_ENDLESS;
             h < SIM_H_COUNT && !d->reset && !d->truncate && !d->malformed && !d->no_products &&
             !d->http500 && !d->http503 && d->hostile == SIM_H_NONE;
             h++) {
            if (bern(f, s->hostile[h]) || (offers && bern(f, s->offers_hostile[h]))) {
                d->hostile = (enum sim_hostile)h;
                f->injected[sim_hostile_fault(d->hostile)]++;
            }
        }
    }
    pthread_mutex_unlock(&f->mu);
}

int sim_faults_offers_fail(struct sim_faults *f)
{
    pthread_mutex_lock(&f->mu);
    int fail = bern(f, f->spec.offers_fail);
    if (fail)
        f->injected[SIM_F_OFFERS_FAIL]++;
    pthread_mutex_unlock(&f->mu);
    return fail;
}

int64_t sim_faults_refill_rate(struct sim_faults *f, int64_t real)
{
    pthread_mutex_lock(&f->mu);
    int64_t r = real;
    if (f->spec.flap_on) {
        r = (f->flap_counter++ % 2 == 0) ? f->spec.flap_a : f->spec.flap_b;
        f->injected[SIM_F_REFILL_FLAP]++;
    }
    pthread_mutex_unlock(&f->mu);
    return r;
}

void sim_faults_counts(struct sim_faults *f, int64_t out[SIM_F_COUNT])
{
    pthread_mutex_lock(&f->mu);
    memcpy(out, f->injected, sizeof(f->injected));
    pthread_mutex_unlock(&f->mu);
}

void sim_faults_reset_counts(struct sim_faults *f)
{
    pthread_mutex_lock(&f->mu);
    memset(f->injected, 0, sizeof(f->injected));
    pthread_mutex_unlock(&f->mu);
}
