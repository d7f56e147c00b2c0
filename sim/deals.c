/*
 * deals.c: deal matching and ordering (see deals.h). A scan computes each product once, keeps
 * (sort key, index) pairs of the matches and sorts them; ties break on the index, so an order
 * is a pure function of the catalog, the selection and the Keepa minute.
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

int sim_deal_match(const struct sim_selection *s, const struct sim_product *p, int check_cats)
{
    if (p->stale || p->last_update < p->keepa_min - SIM_DEAL_FRESH_MIN)
        return 0;
    struct sim_deal_metrics m;
    sim_deal_metrics(p, s->date_range, s->price_type, &m);
    if (m.cur <= 0 || m.avg <= 0)
        return 0;
    if (s->is_risers ? m.delta >= 0 : m.delta <= 0)
        return 0;
    if (s->is_range_enabled) {
        if (!in_range(&s->current, m.cur) || !in_range(&s->delta, m.delta) ||
            !in_range(&s->delta_percent, m.delta_pct) || !in_range(&s->delta_last, m.delta_last))
            return 0;
        if (s->sales_rank.set && (m.rank <= 0 || !in_range(&s->sales_rank, m.rank)))
            return 0;
    }
    if (s->is_filter_enabled) {
        if (s->min_rating >= 0 && p->rating < s->min_rating)
            return 0;
        if (s->single_variation && p->is_variation && !p->variation_primary)
            return 0;
        if (s->has_reviews && p->reviews <= 0)
            return 0;
        if (s->must_have_amazon && !p->has_amazon)
            return 0;
        if (s->must_not_have_amazon && p->has_amazon)
            return 0;
    }
    if (check_cats) {
        if (s->n_include > 0 && !has_cat(s->include_cats, s->n_include, p))
            return 0;
        if (s->n_exclude > 0 && has_cat(s->exclude_cats, s->n_exclude, p))
            return 0;
    }
    return 1;
}

struct keyed {
    int64_t key;
    int64_t idx;
};

static int cmp_keyed(const void *a, const void *b)
{
    const struct keyed *x = a, *y = b;
    if (x->key != y->key)
        return x->key < y->key ? -1 : 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* Sort key: ascending order of the key gives the selection's order. */
static int64_t sort_key(const struct sim_selection *s, const struct sim_product *p)
{
    struct sim_deal_metrics m;
    sim_deal_metrics(p, s->date_range, s->price_type, &m);
    int st = s->sort_type;
    switch (st) {
    case 1:
    case -1: /* deal age, newest first; cannot be inverted */
        return -p->creation;
    case 2:
        return -m.delta;
    case -2:
        return m.delta;
    case 3: /* best (lowest) sales rank first; no rank last */
        return m.rank > 0 ? m.rank : INT64_MAX;
    case -3:
        return m.rank > 0 ? -m.rank : INT64_MAX;
    case 4:
        return -m.delta_pct;
    case -4:
        return m.delta_pct;
    default:
        return -p->creation;
    }
}

int sim_deal_scan(const struct sim_catalog *c, const struct sim_selection *s, int64_t keepa_min,
                  size_t limit, struct sim_deal_result *r)
{
    memset(r, 0, sizeof(*r));
    r->keepa_min = keepa_min;
    size_t cap = 1024, n = 0;
    struct keyed *k = malloc(cap * sizeof(*k));
    if (k == NULL)
        return -ENOMEM;
    struct sim_product p;
    for (int64_t i = 0; i < c->products; i++) {
        sim_catalog_product(c, i, keepa_min, &p);
        if (!sim_deal_match(s, &p, 0))
            continue;
        if (p.cat_slot < 32)
            r->root_counts[p.cat_slot]++;
        if ((s->n_include > 0 && !has_cat(s->include_cats, s->n_include, &p)) ||
            (s->n_exclude > 0 && has_cat(s->exclude_cats, s->n_exclude, &p)))
            continue;
        if (n == cap) {
            struct keyed *nk = realloc(k, cap * 2 * sizeof(*k));
            if (nk == NULL) {
                free(k);
                return -ENOMEM;
            }
            k = nk;
            cap *= 2;
        }
        k[n].key = sort_key(s, &p);
        k[n].idx = i;
        n++;
    }
    qsort(k, n, sizeof(*k), cmp_keyed);
    if (limit > 0 && n > limit)
        n = limit;
    r->idx = malloc((n ? n : 1) * sizeof(int64_t));
    if (r->idx == NULL) {
        free(k);
        return -ENOMEM;
    }
    for (size_t i = 0; i < n; i++)
        r->idx[i] = k[i].idx;
    r->n = n;
    free(k);
    return 0;
}

void sim_deal_result_free(struct sim_deal_result *r)
{
    free(r->idx);
    r->idx = NULL;
    r->n = 0;
}
