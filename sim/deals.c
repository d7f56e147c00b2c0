/*
 * deals.c: deal matching and ordering (see deals.h). A scan computes the light part of each
 * product once (sim_catalog_product_light: what the feed reads), looks at it at every moment
 * of its feed window, keeps (sort key, index, hit) for the listed ones and sorts them; ties
 * break on the index, so an order is a pure function of the catalog, the selection and the
 * Keepa minute. With a memo (sim_deal_scan_memo) a product's window is folded from its price
 * epoch's start on: the fold of the moments before, the same all epoch long, is kept from the
 * first scan of the epoch, so a scan reads two moments a product instead of up to 33. The memo
 * also keeps the product's static draws and its price levels for the epoch, so that a scan
 * does not draw them again (sim_catalog_product_bare_from, levels_get).
 */
#include "sim/deals.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void sim_deal_metrics(const struct sim_product *p, int dr, int pt, struct sim_deal_metrics *m)
{
    m->cur = p->cur[pt];
    m->avg = p->avg_dr[dr][pt];
    if (m->cur > 0 && m->avg > 0) {
        m->delta = m->avg - m->cur;
        m->delta_pct = m->delta * 100 / m->avg;
    } else {
        m->delta = 0;
        m->delta_pct = 0;
    }
    m->delta_last = m->cur > 0 && p->last[pt] > 0 ? p->last[pt] - m->cur : 0;
    m->rank = p->cur[3];
}

static int in_range(const struct sim_range *r, int64_t v)
{
    if (!r->set)
        return 1;
    if (v < r->lo)
        return 0;
    return r->hi < 0 || v <= r->hi;
}

static int has_cat(const int64_t *list, int n, const struct sim_product *p)
{
    for (int i = 0; i < n; i++)
        if (list[i] == p->root_cat || list[i] == p->cats[0] || list[i] == p->cats[1])
            return 1;
    return 0;
}

/* Whether the feed's view PT of the product qualifies under S; fills the hit figures. */
static int point_qualifies(const struct sim_selection *s, const struct sim_point *pt,
                           struct sim_deal_hit *h)
{
    if (pt->cur <= 0 || pt->avg <= 0)
        return 0;
    int64_t delta = pt->avg - pt->cur, pct = delta * 100 / pt->avg;
    int64_t delta_last = pt->last > 0 ? pt->last - pt->cur : 0;
    if (s->is_risers ? delta >= 0 : delta <= 0)
        return 0;
    if (s->is_range_enabled) {
        if (!in_range(&s->current, pt->cur) || !in_range(&s->delta, delta) ||
            !in_range(&s->delta_percent, pct) || !in_range(&s->delta_last, delta_last))
            return 0;
        if (s->sales_rank.set && (pt->rank <= 0 || !in_range(&s->sales_rank, pt->rank)))
            return 0;
    }
    if (s->is_filter_enabled) {
        if (s->must_have_amazon && !pt->amazon)
            return 0;
        if (s->must_not_have_amazon && pt->amazon)
            return 0;
    }
    h->minute = pt->minute;
    h->cur = pt->cur;
    h->avg = pt->avg;
    h->delta = delta;
    h->delta_pct = pct;
    return 1;
}

/* One moment of the window: folds its point into (*FOUND, *BEST), the latest on a tie. */
static void fold_point(const struct sim_catalog *c, const struct sim_selection *s,
                       const struct sim_product *p, int64_t minute, int *found,
                       struct sim_deal_hit *best)
{
    struct sim_point pt;
    struct sim_deal_hit h;
    sim_catalog_point(c, p, s->price_type, s->date_range, minute, &pt);
    if (!point_qualifies(s, &pt, &h))
        return;
    if (!*found ||
        (s->is_risers ? h.delta_pct <= best->delta_pct : h.delta_pct >= best->delta_pct)) {
        *best = h;
        *found = 1;
    }
}

/*
 * The window's fold, with ME (may be NULL) holding the fold of the moments up to the epoch's
 * start: those are the same at every minute of the epoch (sim_catalog_window: the starts and
 * dips of the earlier epochs, and this epoch's start), so only the later ones (this epoch's
 * dip once it started, and now) are read again. Only where the window has epochs (calibrated,
 * prices that move).
 */
static int window_fold(const struct sim_catalog *c, const struct sim_selection *s,
                       const struct sim_product *p, struct sim_deal_memo_entry *me,
                       struct sim_deal_hit *best)
{
    int found = 0;
    int64_t es = p->epoch_start, t = p->keepa_min;
    if (me != NULL && (c->economy != SIM_ECONOMY_CALIBRATED || c->volatility <= 0))
        me = NULL;
    if (me != NULL && me->epoch == p->epoch) {
        found = me->found;
        if (found)
            *best = me->best;
        int64_t last = es, ds, de;
        if (sim_catalog_dip(c, p, p->epoch, &ds, &de, NULL) && ds <= t && ds > es) {
            fold_point(c, s, p, ds, &found, best);
            last = ds;
        }
        if (last != t)
            fold_point(c, s, p, t, &found, best);
        return found;
    }
    int64_t minutes[SIM_WINDOW_MAX];
    int n = sim_catalog_window(c, p, s->date_range, minutes, SIM_WINDOW_MAX);
    int i = 0;
    if (me != NULL) {
        for (; i < n && minutes[i] <= es; i++)
            fold_point(c, s, p, minutes[i], &found, best);
        me->epoch = n < SIM_WINDOW_MAX ? p->epoch : INT64_MIN; /* a full window: not kept */
        me->found = found;
        if (found)
            me->best = *best;
    }
    for (; i < n; i++)
        fold_point(c, s, p, minutes[i], &found, best);
    return found;
}

/* Whether P passes S's checks that read no price (a bare product is enough). */
static int deal_eligible(const struct sim_selection *s, const struct sim_product *p)
{
    if (p->stale || p->last_update < p->keepa_min - SIM_DEAL_FRESH_MIN)
        return 0;
    if (s->price_type < 0 || s->price_type >= SIM_CSV_TYPES)
        return 0;
    if (s->is_filter_enabled) {
        if (s->min_rating >= 0 && p->rating < s->min_rating)
            return 0;
        if (s->single_variation && p->is_variation && !p->variation_primary)
            return 0;
        if (s->has_reviews && p->reviews <= 0)
            return 0;
    }
    return 1;
}

/* sim_catalog_product_bare, with the static draws kept in ME (may be NULL). */
static void product_bare(const struct sim_catalog *c, int64_t idx, int64_t keepa_min,
                         struct sim_product *p, struct sim_deal_memo_entry *me)
{
    if (me == NULL || c->economy != SIM_ECONOMY_CALIBRATED || c->volatility <= 0) {
        sim_catalog_product_bare(c, idx, keepa_min, p);
    } else if (me->has_static) {
        sim_catalog_product_bare_from(c, &me->st, idx, keepa_min, p);
    } else {
        sim_catalog_product_bare(c, idx, keepa_min, p);
        sim_catalog_product_static(p, &me->st);
        me->has_static = 1;
    }
}

/*
 * Gives the bare product P its price levels: from ME (may be NULL) when it kept them in this
 * epoch, else drawn (and kept in ME). The levels of a product are the same all epoch long
 * (sim_catalog_product_levels reads the slots from the feed window's oldest moment to now,
 * both a whole number of epochs from the epoch's start).
 */
static void levels_get(const struct sim_catalog *c, struct sim_product *p,
                       struct sim_deal_memo_entry *me)
{
    if (me == NULL || c->economy != SIM_ECONOMY_CALIBRATED || c->volatility <= 0) {
        sim_catalog_product_levels(c, p);
        return;
    }
    if (me->levels_epoch != p->epoch) {
        sim_catalog_product_levels(c, p);
        me->levels_epoch = p->epoch;
        me->slot_lo = p->slot_lo;
        me->n_slots = p->n_slots;
        memcpy(me->slot_used, p->slot_used, sizeof(me->slot_used));
        memcpy(me->slot_new, p->slot_new, sizeof(me->slot_new));
        memcpy(me->slot_amazon, p->slot_amazon, sizeof(me->slot_amazon));
        memcpy(me->slot_bb_off, p->slot_bb_off, sizeof(me->slot_bb_off));
        return;
    }
    p->slot_lo = me->slot_lo;
    p->n_slots = me->n_slots;
    memcpy(p->slot_used, me->slot_used, sizeof(p->slot_used));
    memcpy(p->slot_new, me->slot_new, sizeof(p->slot_new));
    memcpy(p->slot_amazon, me->slot_amazon, sizeof(p->slot_amazon));
    memcpy(p->slot_bb_off, me->slot_bb_off, sizeof(p->slot_bb_off));
}

static int deal_match(const struct sim_catalog *c, const struct sim_selection *s,
                      const struct sim_product *p, int check_cats, struct sim_deal_hit *hit,
                      struct sim_deal_memo_entry *me)
{
    if (!deal_eligible(s, p))
        return 0;
    if (check_cats) {
        if (s->n_include > 0 && !has_cat(s->include_cats, s->n_include, p))
            return 0;
        if (s->n_exclude > 0 && has_cat(s->exclude_cats, s->n_exclude, p))
            return 0;
    }
    struct sim_deal_hit best;
    int found = window_fold(c, s, p, me, &best);
    if (found && hit != NULL) {
        *hit = best;
        if (c->economy == SIM_ECONOMY_RICH)
            hit->minute = p->creation; /* the original catalog's deal age */
    }
    return found;
}

int sim_deal_match(const struct sim_catalog *c, const struct sim_selection *s,
                   const struct sim_product *p, int check_cats, struct sim_deal_hit *hit)
{
    return deal_match(c, s, p, check_cats, hit, NULL);
}

struct keyed {
    int64_t key;
    int64_t idx;
    struct sim_deal_hit hit;
};

static int cmp_keyed(const void *a, const void *b)
{
    const struct keyed *x = a, *y = b;
    if (x->key != y->key)
        return x->key < y->key ? -1 : 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* Sort key: ascending order of the key gives the selection's order. */
static int64_t sort_key(const struct sim_catalog *c, const struct sim_selection *s,
                        const struct sim_product *p, const struct sim_deal_hit *h)
{
    int64_t rank = -1;
    if (s->sort_type == 3 || s->sort_type == -3) { /* the current rank, as the deal shows */
        struct sim_point now;
        sim_catalog_point(c, p, 3, 0, p->keepa_min, &now);
        rank = now.cur;
    }
    switch (s->sort_type) {
    case 1:
    case -1: /* deal age, newest first; cannot be inverted */
        return -h->minute;
    case 2:
        return -h->delta;
    case -2:
        return h->delta;
    case 3: /* best (lowest) sales rank first; no rank last */
        return rank > 0 ? rank : INT64_MAX;
    case -3:
        return rank > 0 ? -rank : INT64_MAX;
    case 4:
        return -h->delta_pct;
    case -4:
        return h->delta_pct;
    default:
        return -h->minute;
    }
}

int sim_deal_memo_init(struct sim_deal_memo *m, int64_t products)
{
    m->e = NULL;
    m->n = 0;
    if (products <= 0 || products > SIM_DEAL_MEMO_MAX)
        return -EINVAL;
    m->e = malloc((size_t)products * sizeof(*m->e));
    if (m->e == NULL)
        return -ENOMEM;
    m->n = products;
    sim_deal_memo_reset(m);
    return 0;
}

void sim_deal_memo_reset(struct sim_deal_memo *m)
{
    for (int64_t i = 0; i < m->n; i++) {
        m->e[i].epoch = INT64_MIN;
        m->e[i].levels_epoch = INT64_MIN;
        m->e[i].has_static = 0;
    }
}

void sim_deal_memo_free(struct sim_deal_memo *m)
{
    free(m->e);
    m->e = NULL;
    m->n = 0;
}

int sim_deal_scan(const struct sim_catalog *c, const struct sim_selection *s, int64_t keepa_min,
                  size_t limit, struct sim_deal_result *r)
{
    return sim_deal_scan_memo(c, s, keepa_min, limit, NULL, r);
}

int sim_deal_scan_memo(const struct sim_catalog *c, const struct sim_selection *s,
                       int64_t keepa_min, size_t limit, struct sim_deal_memo *memo,
                       struct sim_deal_result *r)
{
    if (memo != NULL && memo->n != c->products)
        memo = NULL;
    memset(r, 0, sizeof(*r));
    r->keepa_min = keepa_min;
    size_t cap = 1024, n = 0;
    struct keyed *k = malloc(cap * sizeof(*k));
    struct sim_product *p = malloc(sizeof(*p));
    if (k == NULL || p == NULL) {
        free(k);
        free(p);
        return -ENOMEM;
    }
    for (int64_t i = 0; i < c->products; i++) {
        struct sim_deal_memo_entry *me = memo != NULL ? &memo->e[i] : NULL;
        product_bare(c, i, keepa_min, p, me);
        if (!deal_eligible(s, p))
            continue; /* its levels are never read */
        levels_get(c, p, me);
        struct sim_deal_hit h;
        if (!deal_match(c, s, p, 0, &h, me))
            continue;
        if (p->cat_slot < 32)
            r->root_counts[p->cat_slot]++;
        if ((s->n_include > 0 && !has_cat(s->include_cats, s->n_include, p)) ||
            (s->n_exclude > 0 && has_cat(s->exclude_cats, s->n_exclude, p)))
            continue;
        if (n == cap) {
            struct keyed *nk = realloc(k, cap * 2 * sizeof(*k));
            if (nk == NULL) {
                free(k);
                free(p);
                return -ENOMEM;
            }
            k = nk;
            cap *= 2;
        }
        k[n].key = sort_key(c, s, p, &h);
        k[n].idx = i;
        k[n].hit = h;
        n++;
    }
    free(p);
    qsort(k, n, sizeof(*k), cmp_keyed);
    if (limit > 0 && n > limit)
        n = limit;
    r->idx = malloc((n ? n : 1) * sizeof(int64_t));
    r->hit = malloc((n ? n : 1) * sizeof(struct sim_deal_hit));
    if (r->idx == NULL || r->hit == NULL) {
        free(r->idx);
        free(r->hit);
        r->idx = NULL;
        r->hit = NULL;
        free(k);
        return -ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        r->idx[i] = k[i].idx;
        r->hit[i] = k[i].hit;
    }
    r->n = n;
    free(k);
    return 0;
}

void sim_deal_result_free(struct sim_deal_result *r)
{
    free(r->idx);
    free(r->hit);
    r->idx = NULL;
    r->hit = NULL;
    r->n = 0;
}
