/*
 * rules.c: the updater's rescheduling, expiry and repricing rules. See rules.h.
 *
 * The judgement itself is judge/judge.h's, on the record's inputs refreshed by the light
 * read (judge/inputs.h jd_inputs_refresh): the updater judges by exactly the committer's rules.
 * The state moves by store/record.h, shared with the committer.
 */
#include "updater/rules.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "judge/inputs.h"
#include "store/record.h"

int64_t updater_scale_ms(int64_t cfg_ms, int64_t minute_ms)
{
    struct cfg c = {.tokens_minute_ms = minute_ms};
    return cfg_keepa_ms(&c, cfg_ms);
}

void updater_policy_from_cfg(const struct cfg *c, struct updater_policy *out)
{
    memset(out, 0, sizeof(*out));
    out->min_interval_ms = updater_scale_ms(c->update_min_interval_ms, c->tokens_minute_ms);
    out->max_interval_ms = updater_scale_ms(c->update_max_interval_ms, c->tokens_minute_ms);
    if (out->max_interval_ms < out->min_interval_ms)
        out->max_interval_ms = out->min_interval_ms;
    out->expire_after_failures =
        c->update_expire_after_failures > 0 ? (uint32_t)c->update_expire_after_failures : 1;
    out->retry_base_ms = updater_scale_ms(CFG_MS_MIN, c->tokens_minute_ms);
    out->retry_max_ms = updater_scale_ms(30 * CFG_MS_MIN, c->tokens_minute_ms);
    out->minute_ms = updater_scale_ms(CFG_MS_MIN, c->tokens_minute_ms);
    unsigned rules = val_rules(c);
    out->offer_gone_fails = (rules & VAL_RULE_GONE) != 0;
    out->value_intervals = (rules & VAL_RULE_RECHECK) != 0;
    out->final_failures = (rules & VAL_RULE_FINAL) != 0;
    out->age_intervals = (rules & VAL_RULE_AGE) != 0;
    out->first_checks = (rules & VAL_RULE_FIRST) != 0;
    for (int k = 0; k < VAL_CLASSES; k++)
        out->lambda[k] = val_lambda_of_half_life(VAL_PRIOR_HALF_LIFE_MIN);
    out->scale_min = 0;
}

/* How far a bucket FILL full is from half to full (0..1): the share of the refill the cap would
 * otherwise take. */
static double surplus_of(double fill)
{
    if (!(fill > 0.5))
        return 0;
    return fill >= 1 ? 1 : (fill - 0.5) * 2;
}

double updater_recheck_budget(int64_t rate, double fill)
{
    if (rate <= 0)
        return 0;
    double surplus = surplus_of(fill);
    return (double)rate * (UPDATER_RECHECK_SHARE + (1 - UPDATER_RECHECK_SHARE) * surplus);
}

double updater_marginal_budget(double root_sum, double token_value_cents, double act_min,
                               double per_check, int64_t rate, double fill)
{
    if (rate <= 0)
        return 0;
    if (!(token_value_cents > 0) || !(act_min > 0))
        return updater_recheck_budget(rate, fill);
    if (!(per_check > 0))
        per_check = 1;
    double checks =
        (root_sum > 0 ? root_sum : 0) / sqrt(2 * token_value_cents * per_check * act_min);
    double tokens = checks * per_check;
    double lo = (double)rate * UPDATER_BUDGET_FLOOR;
    if (tokens < lo)
        tokens = lo;
    if (tokens > (double)rate)
        tokens = (double)rate;
    /* Tokens the cap would take: above half full the bucket's surplus goes to re-checks. */
    double surplus = (double)rate * surplus_of(fill);
    return tokens > surplus ? tokens : surplus;
}

double updater_value_scale(int64_t n_deals, double mean_root, double checks_per_min)
{
    if (n_deals <= 0 || !(mean_root > 0) || !(checks_per_min > 0))
        return 0;
    return (double)n_deals * mean_root / checks_per_min;
}

double updater_value_root(double lambda, int64_t profit_cents)
{
    double w = (lambda > 0 ? lambda : 0) * (double)(profit_cents > 1 ? profit_cents : 1);
    return sqrt(w);
}

int64_t updater_value_interval_ms(double lambda, int64_t profit_cents, double scale_min,
                                  int64_t minute_ms, int64_t min_ms, int64_t max_ms)
{
    double root = updater_value_root(lambda, profit_cents);
    if (!(scale_min > 0) || !(root > 0))
        return max_ms;
    double ms = scale_min / root * (double)minute_ms;
    if (ms <= (double)min_ms)
        return min_ms;
    return ms >= (double)max_ms ? max_ms : (int64_t)ms;
}

double updater_price_age_min(const struct updater_policy *p, int64_t change_min, int64_t now_ms)
{
    if (!p->keepa_offset_known || change_min <= 0 || p->minute_ms <= 0)
        return -1;
    double age = (double)now_ms / (double)p->minute_ms + p->keepa_offset_min - (double)change_min;
    return age >= 0 ? age : -1;
}

int64_t updater_age_interval_ms(const struct updater_policy *p, double lambda, double age_min,
                                int64_t interval_ms)
{
    if (p->age == NULL || !(age_min >= 0) || !(lambda > 0) || p->minute_ms <= 0)
        return interval_ms;
    double minute = (double)p->minute_ms;
    double t0 = (double)interval_ms / minute;
    double t =
        val_age_span(p->age, age_min, lambda * t0, lambda, (double)p->max_interval_ms / minute);
    double ms = t * minute;
    if (ms <= (double)p->min_interval_ms)
        return p->min_interval_ms;
    return ms >= (double)p->max_interval_ms ? p->max_interval_ms : (int64_t)ms;
}

int64_t updater_first_check_ms(const struct updater_policy *p, const struct st_record *r)
{
    if (!p->first_checks || !p->value_intervals || !(p->scale_min > 0) ||
        r->state != ST_STATE_DEAL || r->last_checked_ms <= 0)
        return -1;
    double lambda = p->lambda[val_class(r->in.sales_rank)];
    int64_t ms =
        updater_value_interval_ms(lambda, r->v.priced ? r->v.profit_cents : 0, p->scale_min,
                                  p->minute_ms, p->min_interval_ms, p->max_interval_ms);
    if (p->age_intervals)
        ms = updater_age_interval_ms(
            p, lambda, updater_price_age_min(p, r->in.price_change_min, r->last_checked_ms), ms);
    return r->last_checked_ms + ms;
}

void updater_clock_init(struct updater_clock *c, int64_t wall_ms, int64_t mono_ms)
{
    c->wall0_ms = wall_ms;
    c->mono0_ms = mono_ms;
}

int64_t updater_clock_now_ms(const struct updater_clock *c, int64_t mono_ms)
{
    return c->wall0_ms + (mono_ms - c->mono0_ms);
}

int64_t updater_next_interval(int64_t prev_ms, bool is_volatile, int64_t min_ms, int64_t max_ms)
{
    if (is_volatile || prev_ms <= 0)
        return min_ms;
    int64_t next = prev_ms > INT64_MAX / 2 ? INT64_MAX : prev_ms * 2;
    if (next < min_ms)
        next = min_ms;
    if (next > max_ms)
        next = max_ms;
    return next;
}

/* |A - B| >= BP basis points of B (any change from or to "none" counts). */
static bool moved(int64_t before, int64_t after, int64_t bp)
{
    if (before <= 0 || after <= 0)
        return (before > 0) != (after > 0);
    __int128 d = (__int128)(after > before ? after - before : before - after);
    return d * 10000 >= (__int128)before * bp;
}

bool updater_is_volatile(const struct st_record *before, const struct st_record *after)
{
    return before->v.deal != after->v.deal ||
           moved(before->v.sell_cents, after->v.sell_cents, UPDATER_VOLATILE_PRICE_BP) ||
           moved(before->in.sales_rank, after->in.sales_rank, UPDATER_VOLATILE_RANK_BP);
}

int64_t updater_retry_backoff_ms(const struct updater_policy *p, unsigned failures)
{
    int64_t b = p->retry_base_ms > 0 ? p->retry_base_ms : 1;
    for (unsigned i = 1; i < failures && b < p->retry_max_ms; i++)
        b *= 2;
    return b < p->retry_max_ms ? b : p->retry_max_ms;
}

enum updater_check updater_classify(enum kp_result_code code, bool returned,
                                    enum kp_asin_status status, bool any_returned, size_t batch_n)
{
    if (code != KP_OK || status == KP_ASIN_MALFORMED)
        return UPDATER_NOT_CHECKED;
    if (returned)
        return UPDATER_REFRESHED;
    if (status != KP_ASIN_MISSING)
        return UPDATER_NOT_CHECKED;
    if (!any_returned && batch_n > 1)
        return UPDATER_NOT_CHECKED; /* suspect: retried alone */
    return UPDATER_MISSING;
}

/* The fresh lowest listing of the stored offer's condition, -1 unknown. */
static int64_t listing_of(const struct jd_inputs *fresh, int condition)
{
    int side = jd_side_of_condition(condition);
    int64_t v = side == JD_NEW ? fresh->new_cents : side == JD_USED ? fresh->used_cents : -1;
    return v > 0 ? v : -1;
}

/*
 * True when no offer a full fetch could find would make R pass: the fresh lowest listing of
 * the offer's condition, with free shipping, is the best any live offer can be; judged with
 * it, R still fails (on something an offer could change or not).
 */
static bool definitely_failed(const struct st_record *r, const struct jd_inputs *fresh,
                              const struct jd_rules *rules)
{
    int64_t best = listing_of(fresh, r->in.buy_condition);
    if (best <= 0)
        return false; /* nothing known to judge the best case by: ask Keepa */
    struct jd_inputs in = r->in;
    in.buy_price_cents = best;
    in.buy_shipping_cents = 0;
    struct jd_verdict v;
    return !jd_judge(&in, rules, &v);
}

bool updater_failure_final(const struct st_record *r, const struct jd_inputs *fresh,
                           const struct jd_rules *rules)
{
    int64_t best = listing_of(fresh, r->in.buy_condition);
    if (best <= 0)
        return false;
    struct jd_inputs in = r->in;
    in.buy_price_cents = best;
    in.buy_shipping_cents = 0;
    struct jd_verdict v;
    if (jd_judge(&in, rules, &v))
        return false;
    uint32_t money = (1u << JD_C_ROI) | (1u << JD_C_PROFIT);
    if ((v.fails & ~money) != 0 || (v.fails & money) == 0)
        return false;
    if (v.max_cost_cents <= 0)
        return true;
    return (__int128)best * 10000 >= (__int128)v.max_cost_cents * (10000 + UPDATER_FINAL_PRICE_BP);
}

void updater_recheck(struct st_record *r, enum updater_check check, const struct jd_inputs *fresh,
                     const struct jd_rules *rules, uint64_t rules_hash,
                     const struct updater_policy *p, int64_t now_ms, struct updater_outcome *out)
{
    memset(out, 0, sizeof(*out));
    if (check == UPDATER_NOT_CHECKED || (check == UPDATER_REFRESHED && fresh == NULL))
        return;
    int64_t prev_interval = r->last_checked_ms > 0 && r->next_check_ms > r->last_checked_ms
                                ? r->next_check_ms - r->last_checked_ms
                                : 0;
    struct st_record before = *r;
    struct jd_verdict v;
    if (check == UPDATER_MISSING) {
        /* Asked for, not returned: nothing to buy now. Counts as a failed check. */
        v = r->v;
        v.deal = v.near = false;
        v.fails |= 1u << JD_C_BUY;
    } else {
        jd_inputs_refresh(&r->in, fresh);
        jd_judge(&r->in, rules, &v);
        /* The lowest listing of the offer's condition above the offer's own price: the offer
         * is no longer listed, there is nothing to buy at that price. */
        int64_t listing = listing_of(fresh, before.in.buy_condition);
        out->offer_gone = p->offer_gone_fails && v.deal && before.in.buy_source == JD_BUY_OFFER &&
                          listing > 0 && listing > before.in.buy_price_cents;
        if (out->offer_gone) {
            v.deal = v.near = false;
            v.fails |= 1u << JD_C_BUY;
        }
    }
    out->failed = !v.deal;
    out->changed = st_verdict_moved(&before.v, &v);
    /* The interval first: the state machine schedules with it. */
    struct st_record probe = *r;
    probe.v = v;
    out->is_volatile = out->failed || updater_is_volatile(&before, &probe);
    if (p->value_intervals && !out->failed && p->scale_min > 0) {
        double lambda = p->lambda[val_class(r->in.sales_rank)];
        out->interval_ms =
            updater_value_interval_ms(lambda, v.priced ? v.profit_cents : 0, p->scale_min,
                                      p->minute_ms, p->min_interval_ms, p->max_interval_ms);
        if (p->age_intervals && check == UPDATER_REFRESHED)
            out->interval_ms = updater_age_interval_ms(
                p, lambda, updater_price_age_min(p, r->in.price_change_min, now_ms),
                out->interval_ms);
    } else
        out->interval_ms = updater_next_interval(prev_interval, out->is_volatile,
                                                 p->min_interval_ms, p->max_interval_ms);
    /* A final failure is the last one (see the file comment). */
    uint32_t expire_after = p->expire_after_failures;
    out->final = p->final_failures && check == UPDATER_REFRESHED && out->failed &&
                 updater_failure_final(r, fresh, rules);
    if (out->final && r->check_failures + 1 < expire_after)
        expire_after = r->check_failures + 1;
    out->event = st_record_judged(r, &v, rules_hash, ST_EV_RECHECK, now_ms, expire_after,
                                  now_ms + out->interval_ms);
    out->expire = out->event == ST_EV_EXPIRE;
    if (check == UPDATER_REFRESHED && !out->expire) {
        /* The listing is an item price (its shipping unknown): one that sat apart from the
         * offer's price at the last read already had its full fetch, which chose this offer as
         * the cheapest landed. Only a listing that moved since asks again; otherwise every
         * re-check would buy the same answer. */
        int64_t listing = listing_of(fresh, before.in.buy_condition);
        bool offer_moved = before.in.buy_source == JD_BUY_OFFER && listing > 0 &&
                           moved(before.in.buy_price_cents, listing, UPDATER_RECOMMIT_PRICE_BP) &&
                           listing != listing_of(&before.in, before.in.buy_condition);
        /* Stale offer data no longer makes it a deal: the first such check asks for fresh
         * offers (a cheaper one may exist); later ones wait for that answer. A failure that
         * fresh offers cannot undo is not paid for a second time. */
        out->recommit = !(out->failed && definitely_failed(r, fresh, rules)) &&
                        (offer_moved || (out->failed && r->check_failures == 1)) &&
                        before.in.buy_source != JD_BUY_OWN_COST;
    }
}

enum st_state updater_rejudge(struct st_record *r, const struct jd_rules *rules,
                              uint64_t rules_hash, uint32_t expire_after, int64_t now_ms)
{
    enum st_state was = (enum st_state)r->state;
    if (r->in.data_ms <= 0)
        return ST_STATE_NONE;
    struct jd_verdict v;
    jd_judge(&r->in, rules, &v);
    int64_t next = r->next_check_ms > 0 ? r->next_check_ms : now_ms;
    st_record_judged(r, &v, rules_hash, ST_EV_REJUDGE, now_ms, expire_after, next);
    return was;
}
