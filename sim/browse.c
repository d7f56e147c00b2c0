/*
 * browse.c: /query, /seller, /category, /search, /bestsellers, /topseller, /lightningdeal (see
 * browse.h). Every answer is read off the catalog at the caller's minute, so a product found here
 * is the product /product returns at the same minute.
 */
#include "sim/browse.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sim/render.h"

#define SEARCH_MAX     100 /* /search type=product: results over all pages */
#define SEARCH_PAGE    10
#define SEARCH_DEFAULT 40 /* results without a page parameter */
#define CAT_SEARCH_MAX 50
#define BEST_SUB_MAX   100
#define BEST_ROOT_MAX  10000
#define TOPSELLER_MAX  1000

static void fail(struct sim_api *a, const char *msg)
{
    a->status = 400;
    snprintf(a->err, sizeof(a->err), "%s", msg);
}

static const char *param(struct sim_api *a, const char *name)
{
    const char *v = a->get(a->get_ctx, name);
    return v != NULL && *v ? v : NULL;
}

/* A 0/1 flag parameter; DFLT when absent. */
static int flag(struct sim_api *a, const char *name, int dflt)
{
    const char *v = param(a, name);
    int64_t n;
    return v == NULL || sim_parse_i64(v, &n) != 0 ? dflt : n != 0;
}

static int is_triple(int t)
{
    return t == 7 || (t >= 18 && t <= 29) || t == 32;
}

static void seller_id(const struct sim_catalog *c, int64_t idx, char sid[14])
{
    if (idx < 0)
        snprintf(sid, 14, "%s", SIM_AMAZON_SELLER);
    else
        sim_catalog_seller_id(c, idx, sid);
}

/* ---------- category statistics ---------- */

size_t sim_cat_stats_index(int root_slot, int sub, int leaf)
{
    return ((size_t)root_slot * (SIM_SUBS + 1) + (size_t)sub) * (SIM_LEAVES + 1) + (size_t)leaf;
}

int sim_cat_stats_build(const struct sim_catalog *c, struct sim_cat_stats *st)
{
    memset(st, 0, sizeof(*st));
    st->n_roots = sim_catalog_root_count(c);
    size_t n = sim_cat_stats_index(st->n_roots, 0, 0);
    st->count = calloc(n, sizeof(int64_t));
    st->lowest_rank = calloc(n, sizeof(int64_t));
    st->highest_rank = calloc(n, sizeof(int64_t));
    struct sim_product *p = malloc(sizeof(*p));
    if (st->count == NULL || st->lowest_rank == NULL || st->highest_rank == NULL || p == NULL) {
        free(p);
        sim_cat_stats_free(st);
        return -ENOMEM;
    }
    for (int64_t idx = 0; idx < c->products; idx++) {
        sim_catalog_product_light(c, idx, 0, p);
        int slot, sub, leaf;
        sim_catalog_placement(c, idx, &slot, &sub, &leaf);
        size_t at[3] = {sim_cat_stats_index(slot, 0, 0), sim_cat_stats_index(slot, sub, 0),
                        sim_cat_stats_index(slot, sub, leaf)};
        for (int k = 0; k < 3; k++) {
            st->count[at[k]]++;
            if (!p->has_rank)
                continue;
            if (st->lowest_rank[at[k]] == 0 || p->base_rank < st->lowest_rank[at[k]])
                st->lowest_rank[at[k]] = p->base_rank;
            if (p->base_rank > st->highest_rank[at[k]])
                st->highest_rank[at[k]] = p->base_rank;
        }
    }
    free(p);
    return 0;
}

void sim_cat_stats_free(struct sim_cat_stats *st)
{
    free(st->count);
    free(st->lowest_rank);
    free(st->highest_rank);
    memset(st, 0, sizeof(*st));
}

int sim_api_needs_stats(const char *path)
{
    return strcmp(path, "/category") == 0 || strcmp(path, "/search") == 0;
}

/* ---------- /query ---------- */

static int64_t current_of(const struct sim_product *p, int t)
{
    if (t < 0 || t >= SIM_CSV_TYPES || p->cur[t] < 0)
        return -1;
    return is_triple(t) ? p->cur[t] + p->mkt.ship[t] : p->cur[t];
}

static int64_t avg_of(const struct sim_product *p, enum sim_qfield f, int t)
{
    if (t < 0 || t >= SIM_CSV_TYPES)
        return -1;
    switch (f) {
    case SIM_QF_AVG1:
    case SIM_QF_DELTA1:
    case SIM_QF_DELTA_PCT1:
        return p->avg_dr[0][t];
    case SIM_QF_AVG7:
    case SIM_QF_DELTA7:
    case SIM_QF_DELTA_PCT7:
        return p->avg_dr[1][t];
    case SIM_QF_AVG30:
    case SIM_QF_DELTA30:
    case SIM_QF_DELTA_PCT30:
        return p->avg30[t];
    case SIM_QF_AVG90:
    case SIM_QF_DELTA90:
    case SIM_QF_DELTA_PCT90:
        return p->avg90[t];
    case SIM_QF_AVG180:
        return p->avg180[t];
    case SIM_QF_AVG365:
        return p->avg365[t];
    default:
        return -1;
    }
}

/* The value of filter field F (csv type T) for P into *V; 0 when P has no such value. */
static int qvalue(const struct sim_product *p, enum sim_qfield f, int t, int64_t *v)
{
    int64_t cur = current_of(p, t), avg = avg_of(p, f, t);
    switch (f) {
    case SIM_QF_CURRENT:
        *v = cur;
        return cur >= 0;
    case SIM_QF_AVG1:
    case SIM_QF_AVG7:
    case SIM_QF_AVG30:
    case SIM_QF_AVG90:
    case SIM_QF_AVG180:
    case SIM_QF_AVG365:
        *v = avg;
        return avg >= 0;
    case SIM_QF_DELTA1:
    case SIM_QF_DELTA7:
    case SIM_QF_DELTA30:
    case SIM_QF_DELTA90:
        *v = avg - cur;
        return avg > 0 && cur > 0;
    case SIM_QF_DELTA_PCT1:
    case SIM_QF_DELTA_PCT7:
    case SIM_QF_DELTA_PCT30:
    case SIM_QF_DELTA_PCT90:
        if (avg <= 0 || cur <= 0)
            return 0;
        *v = (avg - cur) * 100 / avg;
        return 1;
    case SIM_QF_DELTA_LAST:
        if (t < 0 || t >= SIM_CSV_TYPES || p->last[t] <= 0 || p->cur[t] <= 0)
            return 0;
        *v = p->last[t] - p->cur[t];
        return 1;
    case SIM_QF_DROPS30:
        *v = p->drops30;
        return *v >= 0;
    case SIM_QF_DROPS90:
        *v = p->drops90;
        return *v >= 0;
    case SIM_QF_DROPS180:
        *v = p->drops180;
        return *v >= 0;
    case SIM_QF_DROPS365:
        *v = p->drops365;
        return *v >= 0;
    case SIM_QF_MONTHLY_SOLD:
        *v = p->monthly_sold;
        return *v >= 0;
    case SIM_QF_OFFERS_FBA:
        *v = p->mkt.n_new_fba;
        return 1;
    case SIM_QF_OFFERS_FBM:
        *v = p->mkt.n_new_fbm;
        return 1;
    case SIM_QF_TOTAL_OFFERS:
        *v = p->mkt.n_live;
        return 1;
    case SIM_QF_PKG_WEIGHT:
        *v = p->weight_g;
        return *v > 0;
    case SIM_QF_PKG_LENGTH:
        *v = p->length_mm;
        return *v > 0;
    case SIM_QF_PKG_WIDTH:
        *v = p->width_mm;
        return *v > 0;
    case SIM_QF_PKG_HEIGHT:
        *v = p->height_mm;
        return *v > 0;
    case SIM_QF_FBA_FEES:
        *v = p->fba_fee_cents;
        return *v >= 0;
    case SIM_QF_TRACKING_SINCE:
        *v = p->tracking_since;
        return 1;
    case SIM_QF_LISTED_SINCE:
        *v = p->listed_since;
        return 1;
    case SIM_QF_LAST_UPDATE:
        *v = p->last_update;
        return 1;
    case SIM_QF_LAST_PRICE_CHANGE:
        *v = p->epoch_start;
        return 1;
    case SIM_QF_PUBLICATION_DATE:
        *v = p->root_cat == 283155 ? 20200101 + (int)(p->idx % 28) : 0;
        return *v > 0;
    default:
        return 0;
    }
}

static int in_list(const int64_t *list, int n, int64_t v)
{
    for (int i = 0; i < n; i++)
        if (list[i] == v)
            return 1;
    return 0;
}

static int in_category(const struct sim_product *p, const int64_t *list, int n)
{
    return in_list(list, n, p->root_cat) || in_list(list, n, p->cats[0]) ||
           in_list(list, n, p->cats[1]);
}

static int word_match(const struct sim_qwords *w, const char *s)
{
    if (w->n == 0)
        return 1;
    for (int i = 0; i < w->n; i++)
        if (s[0] && strcasecmp(w->w[i], s) == 0)
            return 1;
    return 0;
}

/* Whether an offer of P matching WHICH belongs to one of the sellers W. */
static int seller_match(const struct sim_catalog *c, const struct sim_product *p,
                        enum sim_qseller which, const struct sim_qwords *w)
{
    if (w->n == 0)
        return 1;
    const struct sim_market *m = &p->mkt;
    int lowest = -1;
    if (which != SIM_QS_ANY) {
        int fba = which == SIM_QS_LOWEST_FBA;
        for (int i = 0; i < m->n; i++) {
            const struct sim_offer *o = &m->offers[i];
            if (!o->live || o->cond != 1 || o->amazon || o->fba != fba)
                continue;
            if (lowest < 0 || o->price + o->ship < m->offers[lowest].price + m->offers[lowest].ship)
                lowest = i;
        }
        if (lowest < 0)
            return 0;
    }
    for (int i = 0; i < m->n; i++) {
        if (!m->offers[i].live || (lowest >= 0 && i != lowest))
            continue;
        char sid[14];
        seller_id(c, m->offers[i].seller_idx, sid);
        for (int k = 0; k < w->n; k++)
            if (strcmp(w->w[k], sid) == 0)
                return 1;
    }
    return 0;
}

static int query_match(const struct sim_catalog *c, const struct sim_query *q,
                       const struct sim_product *p)
{
    if (q->n_roots > 0 && !in_list(q->roots, q->n_roots, p->root_cat))
        return 0;
    if (q->n_include > 0 && !in_category(p, q->include, q->n_include))
        return 0;
    if (q->n_exclude > 0 && in_category(p, q->exclude, q->n_exclude))
        return 0;
    for (int k = 0; k < q->n_filters; k++) {
        int64_t v;
        const struct sim_qfilter *f = &q->filters[k];
        if (!qvalue(p, f->field, f->type, &v) || (f->is_lte ? v > f->value : v < f->value))
            return 0;
    }
    if (q->n_product_types > 0 && !in_list(q->product_types, q->n_product_types, 0))
        return 0; /* every simulated product is a standard one (productType 0) */
    if (q->n_availability > 0 &&
        !in_list(q->availability, q->n_availability, p->availability_amazon))
        return 0;
    int have[SIM_QB_COUNT] = {p->reviews > 0,
                              p->adult != 0,
                              p->hazmat > 0,
                              p->heat_sensitive != 0,
                              p->variation_primary,
                              p->parent_idx >= 0,
                              0};
    for (int b = 0; b < SIM_QB_COUNT; b++) {
        if (q->bools[b] < 0)
            continue;
        if (b == SIM_QB_SINGLE_VAR) { /* true: one variation per parent */
            if (q->bools[b] && !have[b])
                return 0;
        } else if (have[b] != q->bools[b]) {
            return 0;
        }
    }
    int need_text = q->title.n > 0;
    for (int t = 0; t < SIM_QT_COUNT; t++)
        need_text |= q->text[t].n > 0;
    if (need_text) {
        struct sim_texts tx;
        sim_catalog_texts(c, p, &tx);
        for (int k = 0; k < q->title.n; k++)
            if (strcasestr(tx.title, q->title.w[k]) == NULL)
                return 0;
        const char *fields[SIM_QT_COUNT] = {tx.author,  tx.brand,         tx.manufacturer,
                                            tx.binding, tx.product_group, tx.type};
        for (int t = 0; t < SIM_QT_COUNT; t++)
            if (!word_match(&q->text[t], fields[t]))
                return 0;
    }
    for (int w = 0; w < SIM_QS_COUNT; w++)
        if (!seller_match(c, p, (enum sim_qseller)w, &q->sellers[w]))
            return 0;
    return 1;
}

struct hit {
    int64_t key, idx;
};

static int cmp_hit(const void *a, const void *b)
{
    const struct hit *x = a, *y = b;
    if (x->key != y->key)
        return x->key < y->key ? -1 : 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* Appends HIT to *HITS (growing it); 0 or -ENOMEM. */
static int push_hit(struct hit **hits, size_t *n, size_t *cap, struct hit h)
{
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 1024;
        struct hit *nh = realloc(*hits, nc * sizeof(**hits));
        if (nh == NULL)
            return -ENOMEM;
        *hits = nh;
        *cap = nc;
    }
    (*hits)[(*n)++] = h;
    return 0;
}

void sim_api_query(struct sim_api *a)
{
    const char *text = param(a, "selection");
    size_t len = text ? strlen(text) : 0;
    if (text == NULL && a->body_len > 0) {
        text = a->body;
        len = a->body_len;
    }
    struct sim_query *q = malloc(sizeof(*q));
    struct sim_product *p = malloc(sizeof(*p));
    struct hit *hits = NULL;
    size_t n = 0, cap = 0;
    if (q == NULL || p == NULL) {
        fail(a, "out of memory");
        goto done;
    }
    if (sim_query_parse(text, len, q, a->err, sizeof(a->err)) != 0) {
        a->status = 400;
        goto done;
    }
    if (q->page > 0 && (int64_t)q->page * q->per_page > 10000) {
        fail(a, "page * perPage must be <= 10000");
        goto done;
    }
    snprintf(a->ignored, sizeof(a->ignored), "%s", q->ignored);
    for (int64_t i = 0; i < a->cat->products; i++) {
        sim_catalog_product(a->cat, i, a->now_min, p);
        if (!query_match(a->cat, q, p))
            continue;
        int64_t key = 0, v;
        if (q->sort_set) /* products without a value come last either way */
            key = !qvalue(p, q->sort_field, q->sort_type, &v) ? INT64_MAX : q->sort_desc ? -v : v;
        if (push_hit(&hits, &n, &cap, (struct hit){key, i}) != 0) {
            fail(a, "out of memory");
            goto done;
        }
    }
    if (n > 0)
        qsort(hits, n, sizeof(*hits), cmp_hit);
    size_t off = (size_t)q->page * (size_t)q->per_page;
    size_t cnt = off < n ? n - off : 0;
    if (cnt > (size_t)q->per_page)
        cnt = (size_t)q->per_page;
    sim_buf_puts(a->out, "\"asinList\":[");
    for (size_t i = 0; i < cnt; i++) {
        char asin[11];
        sim_catalog_asin(a->cat, hits[off + i].idx, asin);
        sim_buf_str(a->out, asin);
        sim_buf_putc(a->out, ',');
    }
    sim_buf_uncomma(a->out);
    sim_buf_printf(a->out, "],\"totalResults\":%zu,", n);
    a->cost = 10 + (int64_t)((cnt + 99) / 100);
    if (flag(a, "stats", 0)) {
        a->cost += 30 + (int64_t)(n / 1000000);
        sim_buf_printf(a->out, "\"searchInsights\":{\"totalResults\":%zu},", n);
    }
done:
    free(q);
    free(p);
    free(hits);
}

/* ---------- /seller ---------- */

/* A well-formed seller id: 'A' and 9 to 19 more digits or upper-case letters. */
static int seller_wellformed(const char *id)
{
    size_t n = strlen(id);
    if (n < 10 || n > 20 || id[0] != 'A')
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'A' && id[i] <= 'Z')))
            return 0;
    return 1;
}

static uint64_t id_hash(const char *id)
{
    uint64_t h = 1469598103934665603ULL;
    for (const char *s = id; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

/* The catalog products with a live offer of seller IDX (-1 Amazon) at the minute: ASINs into
 * OUT, their lastSeen into SEEN (both realloc'd); the count, or -ENOMEM. */
static int64_t storefront(struct sim_api *a, int64_t idx, char (**out)[11], int64_t **seen)
{
    struct sim_product *p = malloc(sizeof(*p));
    size_t n = 0, cap = 0;
    *out = NULL;
    *seen = NULL;
    if (p == NULL)
        return -ENOMEM;
    for (int64_t i = 0; i < a->cat->products; i++) {
        sim_catalog_product(a->cat, i, a->now_min, p);
        int has = 0;
        for (int k = 0; k < p->mkt.n && !has; k++)
            has = p->mkt.offers[k].live && p->mkt.offers[k].seller_idx == idx;
        if (!has)
            continue;
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 256;
            char(*na)[11] = realloc(*out, nc * sizeof(**out));
            int64_t *ns = na ? realloc(*seen, nc * sizeof(**seen)) : NULL;
            if (na != NULL)
                *out = na;
            if (ns == NULL) {
                free(p);
                return -ENOMEM;
            }
            *seen = ns;
            cap = nc;
        }
        memcpy((*out)[n], p->asin, 11);
        (*seen)[n++] = p->last_update;
    }
    free(p);
    return (int64_t)n;
}

/*
 * One Seller object for the asked ID: catalog seller IDX (>= 0), Amazon (-1) or a synthetic
 * seller (-2, drawn from the id). With STOREFRONT, the ASINs it lists now.
 */
static int render_seller(struct sim_api *a, const char *id, int64_t idx, int with_storefront)
{
    struct sim_buf *b = a->out;
    uint64_t h = idx >= 0    ? sim_hash(a->cat->seed, (uint64_t)idx, 77, 0)
                 : idx == -1 ? sim_hash(a->cat->seed, 0xA3A2011, 77, 0)
                             : sim_hash(a->cat->seed, id_hash(id), 78, 0);
    int64_t t = a->now_min;
    int rating = 70 + (int)(h % 31), count = 10 + (int)((h >> 8) % 50000);
    int64_t since = t - 1440 * (300 + (int64_t)((h >> 24) % 3000));
    char name[64];
    if (idx == -1)
        snprintf(name, sizeof(name), "Amazon.com");
    else
        snprintf(name, sizeof(name), "Sim Seller %llu",
                 (unsigned long long)(idx >= 0 ? (uint64_t)idx : h % 1000000 + 100000));
    sim_buf_key(b, id);
    sim_buf_printf(b, "{\"domainId\":1,\"trackedSince\":%lld,\"lastUpdate\":%lld,\"sellerId\":",
                   (long long)since, (long long)(t - (int64_t)((h >> 40) % 600)));
    sim_buf_str(b, id);
    sim_buf_puts(b, ",\"sellerName\":");
    sim_buf_str(b, name);
    sim_buf_printf(b,
                   ",\"csv\":[[%lld,%d,%lld,%d],[%lld,%d,%lld,%d]],\"isScammer\":false,"
                   "\"hasFBA\":%s,\"currentRating\":%d,\"currentRatingCount\":%d,"
                   "\"ratingsLast30Days\":%d",
                   (long long)since, rating - 2, (long long)(t - 1440), rating, (long long)since,
                   count / 2, (long long)(t - 1440), count,
                   idx == -1 || (h >> 50) & 1 ? "true" : "false", rating, count,
                   (int)((h >> 16) % 200));
    int charged_storefront = 0;
    if (with_storefront && idx >= -1) { /* synthetic sellers have no storefront data */
        char(*asins)[11];
        int64_t *seen;
        int64_t n = storefront(a, idx, &asins, &seen);
        if (n < 0) {
            free(asins);
            free(seen);
            return -ENOMEM;
        }
        sim_buf_printf(b, ",\"totalStorefrontAsins\":[%lld,%lld],\"asinList\":[", (long long)t,
                       (long long)n);
        for (int64_t i = 0; i < n; i++) {
            sim_buf_str(b, asins[i]);
            sim_buf_putc(b, ',');
        }
        sim_buf_uncomma(b);
        sim_buf_puts(b, "],\"asinListLastSeen\":[");
        for (int64_t i = 0; i < n; i++)
            sim_buf_printf(b, "%lld,", (long long)seen[i]);
        sim_buf_uncomma(b);
        sim_buf_printf(b, "],\"totalStorefrontAsinsCSV\":[%lld,%lld]", (long long)t, (long long)n);
        free(asins);
        free(seen);
        charged_storefront = 1;
    } else {
        sim_buf_puts(b, ",\"totalStorefrontAsins\":null");
    }
    sim_buf_puts(b, "},");
    return charged_storefront;
}

void sim_api_seller(struct sim_api *a)
{
    const char *list = param(a, "seller");
    if (list == NULL) {
        fail(a, "seller is required");
        return;
    }
    char ids[100][24];
    int n = 0, count = 0;
    for (const char *p = list; *p;) {
        const char *e = strchr(p, ',');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (l > 0) {
            if (++count > 100) {
                fail(a, "at most 100 sellers per request");
                return;
            }
            char id[24];
            snprintf(id, sizeof(id), "%.*s", (int)(l < 23 ? l : 23), p);
            int dup = 0;
            for (int i = 0; i < n; i++)
                dup |= strcmp(ids[i], id) == 0;
            if (l < 24 && seller_wellformed(id) && !dup)
                memcpy(ids[n++], id, sizeof(id));
        }
        if (e == NULL)
            break;
        p = e + 1;
    }
    int sf = flag(a, "storefront", 0);
    if (sf && count > 1) {
        fail(a, "storefront=1 takes a single seller");
        return;
    }
    sim_buf_puts(a->out, "\"sellers\":{");
    for (int i = 0; i < n; i++) {
        /* Amazon, a seller of the catalog's pool, or any other well-formed id: synthetic */
        int64_t idx =
            strcmp(ids[i], SIM_AMAZON_SELLER) == 0 ? -1 : sim_catalog_seller_lookup(a->cat, ids[i]);
        if (idx == -1 && strcmp(ids[i], SIM_AMAZON_SELLER) != 0)
            idx = -2;
        if (idx == -2 && strcmp(ids[i] + strlen(ids[i]) - 4, "ZZZZ") == 0)
            continue; /* reserved as a seller Keepa does not know */
        int rc = render_seller(a, ids[i], idx, sf);
        if (rc < 0) {
            fail(a, "out of memory");
            return;
        }
        a->cost += 1 + (rc > 0 ? 9 : 0);
    }
    sim_buf_uncomma(a->out);
    sim_buf_puts(a->out, "},");
}

/* ---------- /category and /search type=category ---------- */

static void render_category(struct sim_api *a, const struct sim_category *cat)
{
    struct sim_buf *b = a->out;
    int64_t count = 0, lo = 0, hi = 0;
    if (a->stats != NULL && a->stats->count != NULL) {
        size_t k = sim_cat_stats_index(cat->root_slot, cat->sub, cat->leaf);
        count = a->stats->count[k];
        lo = a->stats->lowest_rank[k];
        hi = a->stats->highest_rank[k];
    }
    sim_buf_printf(b, "\"%lld\":{\"domainId\":1,\"catId\":%lld,\"name\":", (long long)cat->id,
                   (long long)cat->id);
    sim_buf_str(b, cat->name);
    sim_buf_puts(b, ",\"contextFreeName\":");
    sim_buf_str(b, cat->name);
    sim_buf_puts(b, ",\"websiteDisplayGroup\":");
    if (cat->display_group[0])
        sim_buf_str(b, cat->display_group);
    else
        sim_buf_puts(b, "null");
    sim_buf_puts(b, ",\"children\":[");
    int64_t child;
    for (int k = 0; (child = sim_catalog_category_child(a->cat, cat->id, k)) > 0; k++)
        sim_buf_printf(b, "%s%lld", k ? "," : "", (long long)child);
    sim_buf_printf(b,
                   "],\"parent\":%lld,\"highestRank\":%lld,\"lowestRank\":%lld,"
                   "\"productCount\":%lld,\"isBrowseNode\":true,\"avgBuyBox\":null,"
                   "\"avgBuyBox90\":null,\"avgBuyBox365\":null,\"avgBuyBoxDeviation\":null,"
                   "\"avgReviewCount\":null,\"avgRating\":null,\"isFBAPercent\":null,"
                   "\"soldByAmazonPercent\":null,\"hasCouponPercent\":null,"
                   "\"avgOfferCountNew\":null,\"avgOfferCountUsed\":null,\"sellerCount\":null,"
                   "\"brandCount\":null},",
                   (long long)cat->parent, (long long)hi, (long long)lo, (long long)count);
}

/* Renders categories IDS (N of them, deduplicated) and, with PARENTS, their ancestors. */
static void render_categories(struct sim_api *a, const int64_t *ids, int n, int parents)
{
    sim_buf_puts(a->out, "\"categories\":{");
    for (int i = 0; i < n; i++) {
        struct sim_category cat;
        if (sim_catalog_category(a->cat, ids[i], &cat) == 0)
            render_category(a, &cat);
    }
    sim_buf_uncomma(a->out);
    sim_buf_puts(a->out, "},");
    if (!parents)
        return;
    sim_buf_puts(a->out, "\"categoryParents\":{");
    int64_t done[2 * CAT_SEARCH_MAX + 20];
    int nd = 0;
    for (int i = 0; i < n; i++) {
        struct sim_category cat;
        if (sim_catalog_category(a->cat, ids[i], &cat) != 0)
            continue;
        for (int64_t up = cat.parent; up > 0;) {
            struct sim_category pc;
            if (sim_catalog_category(a->cat, up, &pc) != 0)
                break;
            if (!in_list(done, nd, up) && nd < (int)(sizeof(done) / sizeof(done[0]))) {
                done[nd++] = up;
                render_category(a, &pc);
            }
            up = pc.parent;
        }
    }
    sim_buf_uncomma(a->out);
    sim_buf_puts(a->out, "},");
}

void sim_api_category(struct sim_api *a)
{
    const char *list = param(a, "category");
    if (list == NULL) {
        fail(a, "category is required (up to 10 ids, or 0 for the roots)");
        return;
    }
    int64_t ids[64];
    int n = 0, count = 0;
    for (const char *p = list; *p;) {
        char *end;
        long long id = strtoll(p, &end, 10);
        if (end == p || (*end != ',' && *end != '\0')) {
            fail(a, "category must be a comma list of category ids");
            return;
        }
        if (++count > 10) {
            fail(a, "at most 10 categories per request");
            return;
        }
        if (id == 0) { /* every root */
            for (int r = 0; r < sim_catalog_root_count(a->cat) && n < 64; r++)
                if (!in_list(ids, n, sim_catalog_root_id(a->cat, r)))
                    ids[n++] = sim_catalog_root_id(a->cat, r);
        } else if (n < 64 && !in_list(ids, n, id)) {
            ids[n++] = id;
        }
        p = *end ? end + 1 : end;
    }
    render_categories(a, ids, n, flag(a, "parents", 0));
    a->cost = 1;
}

/* Whether every keyword of TERM (space-separated) is in NAME, case-insensitively. */
static int keywords_in(const char *term, const char *name)
{
    char w[SIM_Q_WORD];
    int any = 0;
    for (const char *t = term; *t;) {
        while (*t == ' ')
            t++;
        size_t k = strcspn(t, " ");
        if (k == 0)
            break;
        snprintf(w, sizeof(w), "%.*s", (int)(k < sizeof(w) ? k : sizeof(w) - 1), t);
        if (strcasestr(name, w) == NULL)
            return 0;
        any = 1;
        t += k;
    }
    return any;
}

static void search_categories(struct sim_api *a, const char *term)
{
    for (const char *t = term; *t;) { /* Keepa: keywords of at least 3 characters */
        while (*t == ' ')
            t++;
        size_t k = strcspn(t, " ");
        if (k > 0 && k < 3) {
            fail(a, "every keyword of term must have at least 3 characters");
            return;
        }
        t += k;
    }
    int64_t found[CAT_SEARCH_MAX];
    int n = 0;
    for (int r = 0; r < sim_catalog_root_count(a->cat) && n < CAT_SEARCH_MAX; r++) {
        int64_t root = sim_catalog_root_id(a->cat, r);
        for (int s = 0; s <= SIM_SUBS && n < CAT_SEARCH_MAX; s++) {
            int64_t sub = s == 0 ? root : root * 10 + s;
            for (int l = 0; l <= (s == 0 ? 0 : SIM_LEAVES) && n < CAT_SEARCH_MAX; l++) {
                struct sim_category cat;
                int64_t id = l == 0 ? sub : sub * 100 + l;
                if (sim_catalog_category(a->cat, id, &cat) == 0 && keywords_in(term, cat.name))
                    found[n++] = id;
            }
        }
    }
    render_categories(a, found, n, flag(a, "parents", 0));
    a->cost = 1;
}

/* ---------- /search type=product ---------- */

static void search_products(struct sim_api *a, const char *term)
{
    const char *page_s = param(a, "page");
    int64_t page = -1;
    if (page_s != NULL && (sim_parse_i64(page_s, &page) != 0 || page < 0 || page > 9)) {
        fail(a, "page must be 0..9");
        return;
    }
    struct sim_product_req *req = calloc(1, sizeof(*req));
    struct sim_product *p = malloc(sizeof(*p));
    struct hit *hits = NULL;
    size_t n = 0, cap = 0;
    if (req == NULL || p == NULL) {
        fail(a, "out of memory");
        goto done;
    }
    for (int64_t i = 0; i < a->cat->products; i++) {
        char title[160];
        sim_catalog_title(a->cat, i, title, sizeof(title));
        if (!keywords_in(term, title))
            continue;
        sim_catalog_product(a->cat, i, a->now_min, p);
        int64_t rank = p->cur[3] > 0 ? p->cur[3] : INT64_MAX; /* best sellers first */
        if (push_hit(&hits, &n, &cap, (struct hit){rank, i}) != 0) {
            fail(a, "out of memory");
            goto done;
        }
    }
    if (n > 0)
        qsort(hits, n, sizeof(*hits), cmp_hit);
    if (n > SEARCH_MAX)
        n = SEARCH_MAX;
    size_t from = page < 0 ? 0 : (size_t)page * SEARCH_PAGE;
    size_t to = page < 0 ? SEARCH_DEFAULT : from + SEARCH_PAGE;
    if (to > n)
        to = n;
    if (from > to)
        from = to;
    size_t shown = to - from;
    a->cost = 10 * (int64_t)((shown + SEARCH_PAGE - 1) / SEARCH_PAGE);
    if (flag(a, "asins-only", 0)) {
        sim_buf_puts(a->out, "\"asinList\":[");
        for (size_t i = from; i < to; i++) {
            char asin[11];
            sim_catalog_asin(a->cat, hits[i].idx, asin);
            sim_buf_str(a->out, asin);
            sim_buf_putc(a->out, ',');
        }
        sim_buf_uncomma(a->out);
        sim_buf_puts(a->out, "],");
        goto done;
    }
    /* the product objects, as /product with the same stats and history parameters */
    req->history = flag(a, "history", 1);
    req->update = 1;
    const char *st = param(a, "stats");
    int64_t days;
    if (st != NULL && sim_parse_i64(st, &days) == 0 && days > 0) {
        req->stats_mode = SIM_STATS_DAYS;
        req->stats_days = days;
    }
    struct sim_product_opts o = {req, 0};
    sim_buf_puts(a->out, "\"products\":[");
    for (size_t i = from; i < to; i++) {
        sim_catalog_product(a->cat, hits[i].idx, a->now_min, p);
        sim_render_product(a->out, a->cat, p, &o);
        sim_buf_putc(a->out, ',');
    }
    sim_buf_uncomma(a->out);
    sim_buf_puts(a->out, "],");
done:
    free(req);
    free(p);
    free(hits);
}

void sim_api_search(struct sim_api *a)
{
    const char *type = param(a, "type"), *term = param(a, "term");
    if (type == NULL || term == NULL) {
        fail(a, "type (product or category) and term are required");
        return;
    }
    if (strcmp(type, "category") == 0)
        search_categories(a, term);
    else if (strcmp(type, "product") == 0)
        search_products(a, term);
    else
        fail(a, "type must be product or category");
}

/* ---------- /bestsellers ---------- */

void sim_api_bestsellers(struct sim_api *a)
{
    const char *cat_s = param(a, "category"), *range_s = param(a, "range");
    int64_t range = 0, id = 0;
    if (cat_s == NULL) {
        fail(a, "category is required");
        return;
    }
    if (range_s != NULL && (sim_parse_i64(range_s, &range) != 0 ||
                            (range != 0 && range != 30 && range != 90 && range != 180))) {
        fail(a, "range must be 0, 30, 90 or 180");
        return;
    }
    struct sim_category cat;
    int by_group = sim_parse_i64(cat_s, &id) != 0; /* a productGroup ("Book") instead of an id */
    if (!by_group && sim_catalog_category(a->cat, id, &cat) != 0)
        return; /* unknown category: nothing found, nothing charged */
    size_t max = by_group || cat.level == 0 ? BEST_ROOT_MAX : BEST_SUB_MAX;
    struct sim_product *p = malloc(sizeof(*p));
    struct hit *hits = NULL;
    size_t n = 0, cap = 0;
    if (p == NULL) {
        fail(a, "out of memory");
        return;
    }
    for (int64_t i = 0; i < a->cat->products; i++) {
        int slot, sub, leaf;
        sim_catalog_placement(a->cat, i, &slot, &sub, &leaf);
        if (!by_group && (slot != cat.root_slot || (cat.level >= 1 && sub != cat.sub) ||
                          (cat.level == 2 && leaf != cat.leaf)))
            continue;
        sim_catalog_product(a->cat, i, a->now_min, p);
        if (by_group) {
            struct sim_texts tx;
            sim_catalog_texts(a->cat, p, &tx);
            if (strcasecmp(tx.product_group, cat_s) != 0)
                continue;
        }
        int64_t rank = range == 0    ? p->cur[3]
                       : range == 30 ? p->avg30[3]
                       : range == 90 ? p->avg90[3]
                                     : p->avg180[3];
        if (rank <= 0)
            continue;
        if (push_hit(&hits, &n, &cap, (struct hit){rank, i}) != 0) {
            free(p);
            free(hits);
            fail(a, "out of memory");
            return;
        }
    }
    free(p);
    if (n > 0) {
        qsort(hits, n, sizeof(*hits), cmp_hit);
        if (n > max)
            n = max;
        sim_buf_printf(a->out,
                       "\"bestSellersList\":{\"domainId\":1,\"lastUpdate\":%lld,"
                       "\"categoryId\":%lld,\"asinList\":[",
                       (long long)(a->now_min - a->now_min % 60), (long long)(by_group ? 0 : id));
        for (size_t i = 0; i < n; i++) {
            char asin[11];
            sim_catalog_asin(a->cat, hits[i].idx, asin);
            sim_buf_str(a->out, asin);
            sim_buf_putc(a->out, ',');
        }
        sim_buf_uncomma(a->out);
        sim_buf_puts(a->out, "]},");
        a->cost = 50;
    }
    free(hits);
}

/* ---------- /topseller ---------- */

void sim_api_topseller(struct sim_api *a)
{
    struct hit *hits = malloc(SIM_SELLERS * sizeof(*hits));
    if (hits == NULL) {
        fail(a, "out of memory");
        return;
    }
    for (int64_t i = 0; i < SIM_SELLERS; i++) { /* the rating count render_seller shows */
        uint64_t h = sim_hash(a->cat->seed, (uint64_t)i, 77, 0);
        hits[i] = (struct hit){-(10 + (int64_t)((h >> 8) % 50000)), i};
    }
    qsort(hits, SIM_SELLERS, sizeof(*hits), cmp_hit);
    sim_buf_puts(a->out, "\"sellerIdList\":[");
    for (int i = 0; i < TOPSELLER_MAX; i++) {
        char sid[14];
        seller_id(a->cat, hits[i].idx, sid);
        sim_buf_str(a->out, sid);
        sim_buf_putc(a->out, ',');
    }
    sim_buf_uncomma(a->out);
    sim_buf_puts(a->out, "],");
    free(hits);
    a->cost = 50;
}

/* ---------- /lightningdeal ---------- */

static void render_lightning(struct sim_api *a, const struct sim_product *p,
                             const struct sim_lightning *ld)
{
    struct sim_buf *b = a->out;
    const struct sim_market *m = &p->mkt;
    int seller = -1; /* the offer running the deal: Amazon's, else the lowest New one */
    for (int i = 0; i < m->n; i++) {
        const struct sim_offer *o = &m->offers[i];
        if (!o->live || o->cond != 1)
            continue;
        if (o->amazon) {
            seller = i;
            break;
        }
        if (seller < 0 || o->price < m->offers[seller].price)
            seller = i;
    }
    char sid[14] = "", title[160];
    if (seller >= 0)
        seller_id(a->cat, m->offers[seller].seller_idx, sid);
    sim_catalog_title(a->cat, p->idx, title, sizeof(title));
    int running = ld->state != SIM_LD_UPCOMING;
    int64_t price = p->cur[1] > 0 ? p->cur[1] : -1;
    int64_t deal_price = price > 0 ? price * (100 - ld->percent_off) / 100 : -1;
    int fba = seller >= 0 && (m->offers[seller].fba || m->offers[seller].amazon);
    sim_buf_printf(b, "{\"domainId\":1,\"lastUpdate\":%lld,\"asin\":",
                   (long long)(a->now_min - a->now_min % 10));
    sim_buf_str(b, p->asin);
    sim_buf_puts(b, ",\"title\":");
    sim_buf_str(b, title);
    sim_buf_puts(b, ",\"sellerName\":");
    sim_buf_str(b, seller >= 0 && m->offers[seller].amazon ? "Amazon.com" : "Sim Seller");
    sim_buf_puts(b, ",\"sellerId\":");
    sim_buf_str(b, sid);
    sim_buf_printf(b,
                   ",\"dealId\":\"%016llx\",\"dealPrice\":%lld,\"currentPrice\":%lld,"
                   "\"image\":\"41Sim%06lldL.jpg\",\"isPrimeEligible\":%s,"
                   "\"isFulfilledByAmazon\":%s,\"isMAP\":false,\"rating\":%d,\"totalReviews\":%d,"
                   "\"dealState\":\"%s\",\"startTime\":%lld,\"endTime\":%lld,"
                   "\"percentClaimed\":%d,\"percentOff\":%d,\"variation\":null},",
                   (unsigned long long)ld->deal_id, (long long)(running ? deal_price : -1),
                   (long long)(running ? price : -1), (long long)(p->idx % 1000000),
                   fba ? "true" : "false", fba ? "true" : "false", p->rating, p->reviews,
                   sim_lightning_state_name(ld->state), (long long)ld->start, (long long)ld->end,
                   ld->percent_claimed, ld->percent_off);
}

void sim_api_lightning(struct sim_api *a)
{
    const char *asins = param(a, "asin");
    struct sim_product *p = malloc(sizeof(*p));
    if (p == NULL) {
        fail(a, "out of memory");
        return;
    }
    sim_buf_puts(a->out, "\"lightningDeals\":[");
    if (asins == NULL) { /* the whole list: running and upcoming deals */
        for (int64_t i = 0; i < a->cat->products; i++) {
            struct sim_lightning ld;
            if (!sim_catalog_lightning(a->cat, i, a->now_min, &ld))
                continue;
            sim_catalog_product(a->cat, i, a->now_min, p);
            render_lightning(a, p, &ld);
        }
        a->cost = 500;
    } else {
        for (const char *s = asins; *s;) {
            const char *e = strchr(s, ',');
            size_t l = e ? (size_t)(e - s) : strlen(s);
            char asin[11];
            struct sim_lightning ld;
            int64_t idx = -1;
            if (l == 10) {
                memcpy(asin, s, 10);
                asin[10] = '\0';
                idx = sim_catalog_resolve(a->cat, asin);
            }
            if (idx >= 0 && sim_catalog_lightning(a->cat, idx, a->now_min, &ld)) {
                sim_catalog_product(a->cat, idx, a->now_min, p);
                snprintf(p->asin, sizeof(p->asin), "%s", asin);
                render_lightning(a, p, &ld);
                a->cost += 1;
            }
            if (e == NULL)
                break;
            s = e + 1;
        }
    }
    sim_buf_uncomma(a->out);
    sim_buf_puts(a->out, "],");
    free(p);
}
