/*
 * value.c: the learned rates and the arithmetic of value per token. See value.h.
 */
#include "worker/value.h"

#include <math.h>
#include <string.h>

unsigned val_rules(const struct cfg *c)
{
    int64_t items[32]; /* as many as the config's validation allows */
    char why[128];
    int n = cfg_list_parse(c->tokens_value_rules, CFG_VALUE_RULES, items, 32, why, sizeof(why));
    unsigned rules = 0;
    for (int i = 0; i < n; i++)
        if (items[i] > 0) /* 0 is "none" */
            rules |= 1u << (items[i] - 1);
    return rules;
}

static double fade(double x)
{
    return x * (1.0 - VAL_DECAY);
}

void val_rate_init(struct val_rate *r)
{
    /* VAL_PRIOR_WEIGHT deals, half of them vanished, over the exposure that makes the
     * hazard ln 2 / VAL_PRIOR_HALF_LIFE_MIN. */
    r->weight = VAL_PRIOR_WEIGHT;
    r->vanished = VAL_PRIOR_WEIGHT / 2;
    r->exposure_min = r->vanished / val_lambda_of_half_life(VAL_PRIOR_HALF_LIFE_MIN);
}

void val_rate_observe(struct val_rate *r, bool vanished, double elapsed_min)
{
    if (!(elapsed_min > 0))
        elapsed_min = 0;
    if (elapsed_min > VAL_ELAPSED_MAX_MIN)
        elapsed_min = VAL_ELAPSED_MAX_MIN;
    r->vanished = fade(r->vanished) + (vanished ? 1.0 : 0.0);
    r->exposure_min = fade(r->exposure_min) + (vanished ? elapsed_min / 2 : elapsed_min);
    r->weight = fade(r->weight) + 1.0;
}

double val_rate_lambda(const struct val_rate *r)
{
    /* A floor on both keeps the estimate finite and positive whatever was observed. */
    double v = r->vanished > 1e-6 ? r->vanished : 1e-6;
    double e = r->exposure_min > 1e-3 ? r->exposure_min : 1e-3;
    return v / e;
}

double val_class_lambda(const struct val_rate *cls, const struct val_rate *all)
{
    double w = cls->weight > 0 ? cls->weight : 0;
    return (w * val_rate_lambda(cls) + VAL_CLASS_SHRINK * val_rate_lambda(all)) /
           (w + VAL_CLASS_SHRINK);
}

void val_age_init(struct val_age *a)
{
    memset(a, 0, sizeof(*a));
}

static int age_bin(double age_min)
{
    if (!(age_min > 0))
        return 0;
    double b = age_min / VAL_AGE_BIN_MIN;
    return b >= VAL_AGE_BINS - 1 ? VAL_AGE_BINS - 1 : (int)b;
}

/* Adds the exposure of ages [FROM, TO) to A's bins. */
static void age_expose(struct val_age *a, double from, double to)
{
    while (to > from) {
        int b = age_bin(from);
        double end = b == VAL_AGE_BINS - 1 ? to : (double)(b + 1) * VAL_AGE_BIN_MIN;
        double hi = end < to ? end : to;
        a->exposure_min[b] += hi - from;
        from = hi;
    }
}

void val_age_observe(struct val_age *a, double from_min, double to_min, bool vanished,
                     double vanish_min)
{
    if (!(from_min >= 0) || !(to_min >= from_min))
        return;
    if (to_min - from_min > VAL_ELAPSED_MAX_MIN)
        to_min = from_min + VAL_ELAPSED_MAX_MIN;
    for (int b = 0; b < VAL_AGE_BINS; b++) {
        a->vanished[b] *= 1.0 - VAL_AGE_DECAY;
        a->exposure_min[b] *= 1.0 - VAL_AGE_DECAY;
    }
    if (!vanished) {
        age_expose(a, from_min, to_min);
        return;
    }
    double at =
        vanish_min >= from_min && vanish_min <= to_min ? vanish_min : (from_min + to_min) / 2;
    age_expose(a, from_min, at);
    a->vanished[age_bin(at)] += 1.0;
}

double val_age_lambda(const struct val_age *a, int bin, double lambda)
{
    if (bin < 0)
        bin = 0;
    if (bin >= VAL_AGE_BINS)
        bin = VAL_AGE_BINS - 1;
    double l = lambda > 0 ? lambda : 0;
    return (a->vanished[bin] + l * VAL_AGE_PRIOR_MIN) / (a->exposure_min[bin] + VAL_AGE_PRIOR_MIN);
}

double val_age_span(const struct val_age *a, double age_min, double mass, double lambda,
                    double max_min)
{
    double age = age_min > 0 ? age_min : 0;
    double left = mass > 0 ? mass : 0;
    double t = 0;
    bool was_known = false;
    while (t < max_min) {
        int b = age_bin(age + t);
        /* Past what the table has seen, check at the frontier rather than guess. */
        bool known = a->exposure_min[b] >= VAL_AGE_PRIOR_MIN || a->vanished[b] >= 1.0;
        if (!known && was_known)
            return t;
        was_known = known;
        double h = val_age_lambda(a, b, lambda);
        double width =
            b == VAL_AGE_BINS - 1 ? max_min - t : (double)(b + 1) * VAL_AGE_BIN_MIN - (age + t);
        if (width > max_min - t)
            width = max_min - t;
        if (h * width >= left)
            return t + (h > 0 ? left / h : width);
        left -= h * width;
        t += width;
    }
    return max_min;
}

int val_class(int64_t sales_rank)
{
    if (sales_rank <= 0)
        return VAL_CLASSES - 1;
    return sales_rank <= 100000 ? 0 : sales_rank <= 1000000 ? 1 : 2;
}

double val_survival(double lambda, double age_min)
{
    if (!(age_min > 0) || !(lambda > 0))
        return 1.0;
    return exp(-lambda * age_min);
}

int64_t val_half_life_min(double lambda)
{
    if (!(lambda > 0))
        return INT32_MAX;
    double h = log(2.0) / lambda;
    return h >= (double)INT32_MAX ? INT32_MAX : (int64_t)llround(h);
}

double val_lambda_of_half_life(int64_t half_life_min)
{
    return log(2.0) / (double)(half_life_min > 0 ? half_life_min : 1);
}

void val_conf_init(struct val_conf *c)
{
    c->expected = VAL_PRIOR_WEIGHT;
    c->deals = VAL_PRIOR_WEIGHT / 2;
    c->ratio_sum = c->ratio_n = VAL_PRIOR_WEIGHT; /* a ratio of 1 */
}

void val_conf_observe(struct val_conf *c, bool deal, double survival, int64_t peek_profit,
                      int64_t full_profit)
{
    if (!(survival > 0))
        survival = 0;
    if (survival > 1)
        survival = 1;
    c->deals = fade(c->deals) + (deal ? 1.0 : 0.0);
    c->expected = fade(c->expected) + survival;
    if (deal && peek_profit > 0) {
        /* Each deal weighs one, whatever its size: the ratio of the deal, not of the dollars. */
        double r = full_profit > 0 ? (double)full_profit / (double)peek_profit : 0.0;
        c->ratio_sum = fade(c->ratio_sum) + (r < 4 ? r : 4);
        c->ratio_n = fade(c->ratio_n) + 1.0;
    }
}

double val_conf_hit(const struct val_conf *c)
{
    double h = c->expected > 1e-9 ? c->deals / c->expected : 1.0;
    return h < 0.01 ? 0.01 : h > 1.0 ? 1.0 : h;
}

double val_conf_ratio(const struct val_conf *c)
{
    double r = c->ratio_n > 1e-9 ? c->ratio_sum / c->ratio_n : 1.0;
    return r < 0.1 ? 0.1 : r > 2.0 ? 2.0 : r;
}

/* A learned number that observing can reach: finite, in [0, MAX] (a hair over for rounding). */
static bool in_range(double x, double max)
{
    return isfinite(x) && x >= 0 && x <= max * (1 + 1e-9) + 1e-9;
}

void val_rate_pack(const struct val_rate *r, double out[VAL_RATE_NUMS])
{
    out[0] = r->vanished;
    out[1] = r->exposure_min;
    out[2] = r->weight;
}

bool val_rate_unpack(const double in[VAL_RATE_NUMS], struct val_rate *r)
{
    double w = in[2];
    /* Each observation adds at most 1 vanishing and VAL_ELAPSED_MAX_MIN of exposure for its
     * 1 of weight, and all three fade alike; the prior weighs VAL_PRIOR_WEIGHT, observing only
     * adds. */
    if (!in_range(w, VAL_WEIGHT_MAX) || w < 1.0 || !in_range(in[0], w) ||
        !in_range(in[1], w * VAL_ELAPSED_MAX_MIN))
        return false;
    r->vanished = in[0];
    r->exposure_min = in[1];
    r->weight = w;
    return true;
}

void val_conf_pack(const struct val_conf *c, double out[VAL_CONF_NUMS])
{
    out[0] = c->deals;
    out[1] = c->expected;
    out[2] = c->ratio_sum;
    out[3] = c->ratio_n;
}

bool val_conf_unpack(const double in[VAL_CONF_NUMS], struct val_conf *c)
{
    /* A deal, a survival and a deal's ratio count 1 at most each (a ratio 4 at most). */
    if (!in_range(in[0], VAL_WEIGHT_MAX) || !in_range(in[1], VAL_WEIGHT_MAX) ||
        !in_range(in[3], VAL_WEIGHT_MAX) || !in_range(in[2], 4 * in[3]))
        return false;
    c->deals = in[0];
    c->expected = in[1];
    c->ratio_sum = in[2];
    c->ratio_n = in[3];
    return true;
}

bool val_age_valid(const struct val_age *a)
{
    /* Every observation fades the table by VAL_AGE_DECAY and adds at most 1 vanishing, a bin's
     * width of exposure to a bin (the last: VAL_ELAPSED_MAX_MIN). */
    double vanished = 0;
    for (int b = 0; b < VAL_AGE_BINS; b++) {
        double width = b == VAL_AGE_BINS - 1 ? VAL_ELAPSED_MAX_MIN : VAL_AGE_BIN_MIN;
        if (!in_range(a->vanished[b], 1.0 / VAL_AGE_DECAY) ||
            !in_range(a->exposure_min[b], width / VAL_AGE_DECAY))
            return false;
        vanished += a->vanished[b];
    }
    return in_range(vanished, 1.0 / VAL_AGE_DECAY);
}

int64_t val_fetch_tokens(int64_t live_offers, int64_t offers)
{
    if (offers < 1)
        offers = 20;
    int64_t n = live_offers < 0 || live_offers > offers ? offers : live_offers;
    int64_t pages = (n + 9) / 10;
    return 6 * (pages > 0 ? pages : 1);
}
