/*
 * value.h: value per token. The learned rates the stages spend by, and the pure arithmetic of
 * what a token buys (docs/architecture.md, "The spending policy"). No I/O, no clock, no
 * allocation: the caller supplies every time and every observation.
 *
 * A deal is a moment: a cheap offer is listed and sells, a price recovers. A full fetch is
 * worth the deal's profit times the chance that it is still a deal when the answer comes; a
 * re-check is worth the stale display it ends. Both chances are learned from what kdeals' own
 * fetches found, so the policy follows the market it actually sees:
 *
 *   - how fast deals vanish (struct val_rate): every real re-check of a shown deal says
 *     whether it survived the Keepa minutes since it was last seen a deal. Vanishing is
 *     modelled as a constant hazard (exponential survival) estimated actuarially: vanishings /
 *     exposure, a survivor contributing its elapsed time and a vanished deal half of it. Each
 *     new observation weighs 1 and the past fades by VAL_DECAY per observation, so the rate
 *     follows a market that changes. A prior (VAL_PRIOR_HALF_LIFE_MIN, weighing
 *     VAL_PRIOR_WEIGHT observations) stands in before there are any and fades like the rest.
 *     Deals are classed by sales rank (val_class): a class with few observations of its own
 *     leans on the rate of all deals (val_class_lambda).
 *   - how the hazard moves with the age of the deal's price (struct val_age, the "age" rule):
 *     the same observations, placed on the Keepa minutes since the product's price last
 *     changed (lastPriceChange) at each end of the interval, in VAL_AGE_BIN_MIN bins. A bin's
 *     hazard is its vanishings over its exposure, leaning on the constant hazard with
 *     VAL_AGE_PRIOR_MIN minutes of exposure, so a bin little seen behaves like the constant
 *     model. A deal whose price came with a fixed life (a sale that ends, a price epoch) shows
 *     no hazard until that age and all of it then; a market without such a life shows a flat
 *     curve, and the rule changes nothing.
 *   - how far a peek can be trusted (struct val_conf): of the survivors the committer fetched,
 *     the deals found over the deals expected from their age (the hit rate), and the mean over
 *     those deals of the full fetch's profit over the peek's estimate (the profit ratio).
 *
 * Rates are per Keepa minute; money in cents.
 */
#ifndef KD_WORKER_VALUE_H
#define KD_WORKER_VALUE_H

#include <stdbool.h>
#include <stdint.h>

#include "base/config.h"

/*
 * The rules of value per token ([tokens] value_rules; each on when listed). Every stage reads
 * them from its config, so a reload switches one on or off.
 */
enum {
    VAL_RULE_ORDER = 1u << 0,    /* the commit backlog by expected value per token */
    VAL_RULE_DROP = 1u << 1,     /* survivors that are likely gone are dropped unfetched */
    VAL_RULE_PRESCORE = 1u << 2, /* a feed page's candidates are peeked best pre-score first */
    VAL_RULE_RECHECK = 1u << 3,  /* re-check intervals from the vanish rate and the profit */
    VAL_RULE_GONE = 1u << 4,     /* a re-check that finds the offer gone ends the display */
    VAL_RULE_BUSY = 1u << 5,     /* no pass pause while the bucket holds more than it needs */
    VAL_RULE_FEES = 1u << 6,     /* the pre-score judges with the fees a peek taught */
    VAL_RULE_FRESH = 1u << 7,    /* the /deal feed read newest first, down to the last pass */
    VAL_RULE_BUDGET = 1u << 8,   /* the re-check budget by marginal value against acquisition */
    VAL_RULE_PROBE = 1u << 9,    /* fresh passes between the seller's read the deep drops only */
    VAL_RULE_CADENCE = 1u << 10, /* fresh passes no more often than their pages pay for */
    VAL_RULE_LOWFEES = 1u << 11, /* the pre-score judges a product never peeked at low fees */
    VAL_RULE_FINAL = 1u << 12,   /* a re-check failure no listing near the market undoes expires */
    VAL_RULE_AGE = 1u << 13,     /* re-checks placed by the hazard at the age of the deal's price */
    VAL_RULE_DELTA = 1u << 14,   /* a page of the biggest absolute drops before a fresh pass */
    VAL_RULE_FIRST = 1u << 15,   /* a new deal's first re-check placed as a re-check's would be */
    VAL_RULE_PEEKRATE = 1u << 16, /* a class of candidate whose peeks seldom pass is not peeked */
    VAL_RULE_LANE = 1u << 17      /* the first delta page also read between passes when due */
};

/* The VAL_RULE_* bits of config C's [tokens] value_rules (validated by the config). */
unsigned val_rules(const struct cfg *c);

#define VAL_DECAY               (1.0 / 512) /* weight the past loses per new observation */
#define VAL_PRIOR_HALF_LIFE_MIN 120         /* Keepa minutes, before any observation */
#define VAL_PRIOR_WEIGHT        4.0         /* observations the prior is worth */
#define VAL_CLASS_SHRINK        16.0        /* observations before a class stands alone */
#define VAL_CLASSES             3           /* sales rank <= 100 000, <= 1 000 000, else */

/* Decayed vanishings and exposure (Keepa minutes) of deals. */
struct val_rate {
    double vanished;
    double exposure_min;
    double weight; /* observations, decayed (the prior counts VAL_PRIOR_WEIGHT) */
};

/* A rate holding only the prior: a half-life of VAL_PRIOR_HALF_LIFE_MIN. */
void val_rate_init(struct val_rate *r);

/*
 * Records that a deal seen a deal ELAPSED_MIN Keepa minutes ago was found VANISHED (or still
 * a deal) now. A negative elapsed time counts as 0.
 */
void val_rate_observe(struct val_rate *r, bool vanished, double elapsed_min);

/* The hazard per Keepa minute (> 0). */
double val_rate_lambda(const struct val_rate *r);

/*
 * The hazard of class CLS given ALL (the rate of every deal): the class's own estimate
 * weighed by its observations against the overall one weighed VAL_CLASS_SHRINK.
 */
double val_class_lambda(const struct val_rate *cls, const struct val_rate *all);

/* The class of a deal of SALES_RANK (-1 or 0: unknown): 0 up to 100 000, 1 up to 1 000 000,
 * 2 beyond or unknown. Fast sellers' cheap offers go first. */
int val_class(int64_t sales_rank);

/* The chance a deal seen AGE_MIN Keepa minutes ago is still there at hazard LAMBDA. */
double val_survival(double lambda, double age_min);

/* Half-life (Keepa minutes, rounded) of hazard LAMBDA; and back. */
int64_t val_half_life_min(double lambda);
double val_lambda_of_half_life(int64_t half_life_min);

#define VAL_AGE_BIN_MIN   30           /* Keepa minutes of price age per bin */
#define VAL_AGE_BINS      48           /* 24 Keepa hours; older prices share the last bin */
#define VAL_AGE_PRIOR_MIN 60.0         /* exposure at the constant hazard each bin starts from */
#define VAL_AGE_DECAY     (1.0 / 2048) /* per observation: spread over the bins, they fade slower */

/* Vanishings and exposure (Keepa minutes) of shown deals by the age of their price. */
struct val_age {
    double vanished[VAL_AGE_BINS];
    double exposure_min[VAL_AGE_BINS];
};

/* An empty table: every bin at the constant hazard. */
void val_age_init(struct val_age *a);

/*
 * Records that a deal seen a deal when its price was FROM_MIN Keepa minutes old was found
 * VANISHED (or still a deal) when it was TO_MIN old. A vanished deal vanished at VANISH_MIN
 * when that is known (its price changed then: within [FROM_MIN, TO_MIN]), else halfway. The
 * past fades by VAL_AGE_DECAY per observation. Negative or reversed ages are ignored.
 */
void val_age_observe(struct val_age *a, double from_min, double to_min, bool vanished,
                     double vanish_min);

/* The hazard per Keepa minute of bin BIN, leaning on LAMBDA (the constant hazard). */
double val_age_lambda(const struct val_age *a, int bin, double lambda);

/*
 * The Keepa minutes after price age AGE_MIN within which MASS of hazard accrues (the expected
 * vanishings the constant model allows an interval), by the bins' hazards leaning on LAMBDA;
 * at most MAX_MIN. A bin the table knows little of (exposure under VAL_AGE_PRIOR_MIN, no
 * vanishing) after one it knows ends the span at its start: no interval reaches beyond the
 * ages the table has seen (deals are checked there, and it learns). Ages it knows nothing of
 * accrue at LAMBDA: an empty table gives MASS / LAMBDA.
 */
double val_age_span(const struct val_age *a, double age_min, double mass, double lambda,
                    double max_min);

/* Decayed outcomes of fetched survivors. */
struct val_conf {
    double deals;     /* survivors that were deals */
    double expected;  /* the survival each had at its age, summed */
    double ratio_sum; /* on the deals: the full fetch's profit over the peek's, summed */
    double ratio_n;   /* ... over this many deals */
};

/* Before any outcome: a hit rate of 1/2 and a profit ratio of 1, weighing VAL_PRIOR_WEIGHT. */
void val_conf_init(struct val_conf *c);

/*
 * Records one fetched survivor: DEAL or not, SURVIVAL its age implied (0..1), and on a deal
 * the peek's PEEK_PROFIT and the full fetch's FULL_PROFIT (cents).
 */
void val_conf_observe(struct val_conf *c, bool deal, double survival, int64_t peek_profit,
                      int64_t full_profit);

/* Deals found over deals expected, in [0.01, 1]. */
double val_conf_hit(const struct val_conf *c);

/* The mean over deals of the full fetch's profit over the peek's, in [0.1, 2]. */
double val_conf_ratio(const struct val_conf *c);

/*
 * What is learned survives a restart (docs/architecture.md, "Value per token"): each stage
 * keeps its learned state in the store (store/codec.h, st_learned_*) and reads it back at
 * start. A state read back is used only when the observe functions above could have reached
 * it from their prior: every number finite and non-negative, vanishings and deals within the
 * observations, every sum within what the decay lets accumulate (an observation is credited
 * at most VAL_ELAPSED_MAX_MIN). Anything else (a damaged or hostile record) is refused whole,
 * so the prior stands in: never a poisoned rate.
 */
#define VAL_ELAPSED_MAX_MIN 1e7 /* Keepa minutes (19 years): an observation's longest credit */
#define VAL_WEIGHT_MAX      (1.0 / VAL_DECAY + VAL_PRIOR_WEIGHT) /* observations, decayed */
#define VAL_RATE_NUMS       3 /* a struct val_rate as numbers: vanished, exposure, weight */
#define VAL_CONF_NUMS       4 /* a struct val_conf: deals, expected, ratio_sum, ratio_n */

/* R as numbers, and back: unpack returns false (R untouched) for a rate no observing makes. */
void val_rate_pack(const struct val_rate *r, double out[VAL_RATE_NUMS]);
bool val_rate_unpack(const double in[VAL_RATE_NUMS], struct val_rate *r);

/* The same for a peek's confidence. */
void val_conf_pack(const struct val_conf *c, double out[VAL_CONF_NUMS]);
bool val_conf_unpack(const double in[VAL_CONF_NUMS], struct val_conf *c);

/* Whether A is a table val_age_observe could have filled (its numbers are its own). */
bool val_age_valid(const struct val_age *a);

/*
 * Tokens one full fetch of a product with LIVE_OFFERS live offers costs with OFFERS offers
 * asked (Keepa: 6 per started 10 offers returned, at least 6; docs/keepa-api.md §3). Unknown
 * counts (< 0) assume the most.
 */
int64_t val_fetch_tokens(int64_t live_offers, int64_t offers);

#endif
