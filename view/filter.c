/*
 * filter.c: matching and selection of records, and the figures the filters, sorts and outputs
 * derive from a record. See filter.h; the vocabulary and its parser are vocab.c.
 */
#include "view/filter.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "judge/inputs.h"
#include "judge/judge.h"
#include "judge/market.h"

/* ---- derived figures ---- */

bool vw_amazon_on_listing(const struct st_record *r)
{
    return jd_amazon_on_listing(&r->in);
}

int32_t vw_competing_offers(const struct st_record *r)
{
    int side = jd_side_of_condition(r->in.buy_condition);
    if (side < 0)
        side = r->v.side;
    int32_t n = side == JD_USED ? r->in.offers_used : r->in.offers_new;
    if (n >= 0)
        return n;
    if (r->in.offers_fba >= 0 && r->in.offers_fbm >= 0 &&
        (int64_t)r->in.offers_fba + r->in.offers_fbm <= INT32_MAX)
        return r->in.offers_fba + r->in.offers_fbm;
    return -1;
}

int32_t vw_monthly_sales(const struct st_record *r, const char **basis)
{
    const char *b = "none";
    int32_t n = -1;
    if (r->in.monthly_sold >= 0) {
        b = "monthly_sold";
        n = r->in.monthly_sold;
    } else if (r->in.drops30 >= 0) {
        b = "drops30";
        n = r->in.drops30;
    }
    if (basis != NULL)
        *basis = b;
    return n;
}

bool vw_monthly_profit(const struct st_record *r, int64_t *cents)
{
    int32_t sales = vw_monthly_sales(r, NULL);
    int32_t offers = vw_competing_offers(r);
    if (!r->v.priced || sales < 0 || offers < 0)
        return false;
    __int128 p = (__int128)r->v.profit_cents * sales;
    __int128 d = (__int128)offers + 1;
    __int128 q = p >= 0 ? (p + d / 2) / d : -((-p + d / 2) / d);
    if (q > INT64_MAX / 2 || q < -(INT64_MAX / 2))
        return false; /* a corrupt record, not a product */
    *cents = (int64_t)q;
    return true;
}

bool vw_at_cost(const struct st_record *r, const struct jd_rules *rules, struct jd_verdict *out)
{
    if (rules == NULL || r->mark != ST_MARK_BOUGHT || r->bought_cost_cents < 0)
        return false;
    struct jd_inputs in = r->in;
    int cond = in.buy_condition >= 1 && in.buy_condition <= 5 ? in.buy_condition
               : r->v.side == JD_USED                         ? 4
                                                              : 1;
    jd_inputs_set_own_cost(&in, r->bought_cost_cents, cond, r->mark_ms);
    jd_judge(&in, rules, out);
    return true;
}

int64_t vw_money_in(const struct vw_filter *f, int64_t amount, unsigned domain)
{
    if (f->domain != 0)
        return amount;
    const struct jd_market *m = jd_market(domain);
    if (m == NULL || m->decimals != 0)
        return amount;
    /* Hundredths of a unit into whole units, rounded up: a threshold is never lowered. */
    return amount >= 0 ? (amount + 99) / 100 : -(-amount / 100);
}

/* ---- matching ---- */

static unsigned verdict_class(const struct st_record *r)
{
    if (r->state == ST_STATE_DEAL)
        return VW_VERDICT_DEAL;
    return r->v.near ? VW_VERDICT_NEAR : VW_VERDICT_OTHER;
}

static bool category_matches(const struct st_record *r, const struct vw_category *c)
{
    if (c->id > 0)
        return r->in.root_category == c->id;
    if (r->category_name[0] != '\0' && strcasecmp(r->category_name, c->name) == 0)
        return true;
    const char *known = jd_category_name(r->domain, r->in.root_category);
    return known != NULL && strcasecmp(known, c->name) == 0;
}

static bool given(const struct vw_filter *f, enum vw_key k)
{
    return (f->given & (1u << k)) != 0;
}

bool vw_match(const struct st_record *r, const struct vw_filter *f, int64_t now_ms)
{
    if (!(verdict_class(r) & f->verdicts))
        return false;
    if (!f->marked && r->mark != ST_MARK_NONE)
        return false;
    if (given(f, VW_K_MIN_ROI) && !(r->v.priced && r->v.roi_bp >= f->min_roi_bp))
        return false;
    if (given(f, VW_K_MIN_PROFIT) &&
        !(r->v.priced && r->v.profit_cents >= vw_money_in(f, f->min_profit_cents, r->domain)))
        return false;
    if (given(f, VW_K_MAX_RANK) && !(r->in.sales_rank > 0 && r->in.sales_rank <= f->max_rank))
        return false;
    if (given(f, VW_K_MIN_DROPS30) && !(r->in.drops30 >= 0 && r->in.drops30 >= f->min_drops30))
        return false;
    if (given(f, VW_K_MIN_SOLD) && !(r->in.monthly_sold >= 0 && r->in.monthly_sold >= f->min_sold))
        return false;
    if (given(f, VW_K_MAX_OFFERS)) {
        int32_t n = vw_competing_offers(r);
        if (n < 0 || n > f->max_offers)
            return false;
    }
    if (given(f, VW_K_CATEGORY) && f->n_categories > 0) {
        bool any = false;
        for (unsigned i = 0; i < f->n_categories && !any; i++)
            any = category_matches(r, &f->categories[i]);
        if (!any)
            return false;
    }
    if (given(f, VW_K_CONDITION) && f->conditions != 0 &&
        !(r->in.buy_condition < 32 && (f->conditions & (1u << r->in.buy_condition))))
        return false;
    if (f->no_amazon && vw_amazon_on_listing(r))
        return false;
    if (f->no_hazmat && r->in.hazmat == 1)
        return false;
    if (given(f, VW_K_SINCE)) {
        int64_t from = f->since_ago_ms > 0 ? now_ms - f->since_ago_ms : f->since_ms;
        int64_t t = r->state == ST_STATE_DEAL && r->deal_since_ms > 0 ? r->deal_since_ms
                                                                      : r->last_checked_ms;
        if (t < from)
            return false;
    }
    return true;
}

/* ---- selection ---- */

/* The sort key of R: *KNOWN false sorts it after every known one. Higher-first sorts return
 * the value with DESC set. */
static int64_t sort_key(const struct st_record *r, enum vw_sort s, bool *known, bool *desc)
{
    int64_t m = 0;
    *desc = true;
    switch (s) {
    case VW_SORT_PROFIT:
        *known = r->v.priced;
        return r->v.profit_cents;
    case VW_SORT_MONTHLY:
        *known = vw_monthly_profit(r, &m);
        return m;
    case VW_SORT_RANK:
        *desc = false;
        *known = r->in.sales_rank > 0;
        return r->in.sales_rank;
    case VW_SORT_FRESH:
        *known = r->last_checked_ms > 0;
        return r->last_checked_ms;
    case VW_SORT_ROI:
    default:
        *known = r->v.priced;
        return r->v.roi_bp;
    }
}

struct order {
    const struct st_record *recs;
    enum vw_sort sort;
};

static int compare(const void *a, const void *b, void *arg)
{
    const struct order *o = arg;
    size_t ia = *(const size_t *)a, ib = *(const size_t *)b;
    const struct st_record *x = &o->recs[ia], *y = &o->recs[ib];
    bool kx, ky, desc;
    int64_t vx = sort_key(x, o->sort, &kx, &desc);
    int64_t vy = sort_key(y, o->sort, &ky, &desc);
    if (kx != ky)
        return kx ? -1 : 1;
    if (kx && vx != vy)
        return (vx < vy) == desc ? 1 : -1;
    int c = strcmp(x->asin, y->asin);
    if (c != 0)
        return c < 0 ? -1 : 1;
    if (x->domain != y->domain)
        return x->domain < y->domain ? -1 : 1;
    return ia < ib ? -1 : ia > ib ? 1 : 0;
}

int vw_select(const struct st_record *recs, size_t n, const struct vw_filter *f, int64_t now_ms,
              size_t *out, size_t *n_out, size_t *n_matched)
{
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (vw_match(&recs[i], f, now_ms))
            out[m++] = i;
    struct order o = {recs, f->sort};
    qsort_r(out, m, sizeof(*out), compare, &o);
    if (n_matched != NULL)
        *n_matched = m;
    size_t from = f->offset < m ? f->offset : m;
    size_t count = m - from;
    if (f->limit > 0 && f->limit < count)
        count = f->limit;
    if (from > 0)
        memmove(out, out + from, count * sizeof(*out));
    *n_out = count;
    return 0;
}
