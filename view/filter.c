/*
 * filter.c: the view's vocabulary, its parser, matching and selection. See filter.h.
 *
 * The parser reads every key through one table (VW_FILTER_KEYS) and writes into a copy of
 * the filter, so a value that fails leaves the caller's filter as it was. Numbers are read
 * strictly (digits only, no sign unless the key allows one, no trailing text): a preset with
 * "max_rank = 50k" is refused with a message rather than read as 50.
 */
#include "view/filter.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "judge/judge.h"
#include "judge/market.h"
#include "view/time.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#define VW_KEY_ROW(id, name, cli, takes_value, value_words, meaning)                               \
    {VW_K_##id, name, cli, takes_value, value_words, meaning},
static const struct vw_key_info keys[] = {VW_FILTER_KEYS(VW_KEY_ROW)};
#undef VW_KEY_ROW
_Static_assert(ARRAY_LEN(keys) == VW_K_COUNT, "one row per key");

const struct vw_key_info *vw_filter_key(size_t i)
{
    return i < VW_K_COUNT ? &keys[i] : NULL;
}

void vw_filter_init(struct vw_filter *f, unsigned domain)
{
    memset(f, 0, sizeof(*f));
    f->domain = domain;
    f->verdicts = VW_VERDICT_DEAL;
    f->sort = VW_SORT_ROI;
}

/* ---- names ---- */

/* The key NAME spells (leading dashes dropped, '-' read as '_'), or -1. */
static int key_of(const char *name)
{
    if (name == NULL)
        return -1;
    while (*name == '-')
        name++;
    char canon[32];
    size_t n = strlen(name);
    if (n == 0 || n >= sizeof(canon))
        return -1;
    for (size_t i = 0; i <= n; i++)
        canon[i] = name[i] == '-' ? '_' : name[i];
    for (int k = 0; k < VW_K_COUNT; k++)
        if (strcmp(keys[k].name, canon) == 0)
            return k;
    return -1;
}

int vw_filter_arity(const char *name)
{
    int k = key_of(name);
    if (k < 0)
        return -ENOENT;
    return keys[k].takes_value ? 1 : 0;
}

static const char *const sort_names[] = {"roi", "profit", "monthly", "rank", "fresh"};

const char *vw_sort_name(enum vw_sort s)
{
    return (unsigned)s < ARRAY_LEN(sort_names) ? sort_names[s] : "?";
}

static const struct {
    const char *name;
    uint32_t bits;
} condition_words[] = {
    {"new", VW_CONDITION_NEW}, {"used", VW_CONDITION_USED}, {"like_new", 1u << 2},
    {"very_good", 1u << 3},    {"good", 1u << 4},           {"acceptable", 1u << 5},
};

/* ---- value readers ---- */

/* VALUE without leading and trailing blanks, into BUF (LEN bytes); false if it does not fit. */
static bool trimmed(const char *value, char *buf, size_t len)
{
    while (*value == ' ' || *value == '\t')
        value++;
    size_t n = strlen(value);
    while (n > 0 && (value[n - 1] == ' ' || value[n - 1] == '\t'))
        n--;
    if (n >= len)
        return false;
    memcpy(buf, value, n);
    buf[n] = '\0';
    return true;
}

/* A count: digits only, within [MIN, MAX]. */
static bool read_count(const char *s, int64_t min, int64_t max, int64_t *out)
{
    if (*s == '\0')
        return false;
    int64_t v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return false;
        if (v > (INT64_MAX - 9) / 10)
            return false;
        v = v * 10 + (*s - '0');
    }
    if (v < min || v > max)
        return false;
    *out = v;
    return true;
}

/* A percentage with up to two decimals and an optional '%' into basis points. */
static bool read_percent(const char *s, int64_t *bp)
{
    bool neg = *s == '-';
    if (*s == '-' || *s == '+')
        s++;
    if (!(*s >= '0' && *s <= '9') && !(*s == '.' && s[1] >= '0' && s[1] <= '9'))
        return false;
    int64_t whole = 0, frac = 0;
    int nfrac = 0;
    for (; *s >= '0' && *s <= '9'; s++) {
        whole = whole * 10 + (*s - '0');
        if (whole > 1000000)
            return false;
    }
    if (*s == '.') {
        s++;
        for (; *s >= '0' && *s <= '9'; s++) {
            if (++nfrac > 2)
                return false;
            frac = frac * 10 + (*s - '0');
        }
    }
    if (*s == '%')
        s++;
    if (*s != '\0')
        return false;
    for (; nfrac < 2; nfrac++)
        frac *= 10;
    *bp = (neg ? -1 : 1) * (whole * 100 + frac);
    return true;
}

static int read_switch(const char *s)
{
    static const char *const on[] = {"1", "true", "yes", "on"};
    static const char *const off[] = {"0", "false", "no", "off"};
    for (size_t i = 0; i < ARRAY_LEN(on); i++) {
        if (strcasecmp(s, on[i]) == 0)
            return 1;
        if (strcasecmp(s, off[i]) == 0)
            return 0;
    }
    return -1;
}

/* A duration: digits and one unit of s, m, h, d, w, into milliseconds. */
static bool read_duration(const char *s, int64_t *ms)
{
    int64_t n = 0;
    const char *p = s;
    for (; *p >= '0' && *p <= '9'; p++) {
        n = n * 10 + (*p - '0');
        if (n > 100000000)
            return false;
    }
    if (p == s || p[0] == '\0' || p[1] != '\0')
        return false;
    int64_t unit;
    switch (*p) {
    case 's':
        unit = 1000;
        break;
    case 'm':
        unit = 60 * 1000;
        break;
    case 'h':
        unit = 3600 * 1000;
        break;
    case 'd':
        unit = 86400 * 1000;
        break;
    case 'w':
        unit = 7 * 86400 * 1000LL;
        break;
    default:
        return false;
    }
    if (n == 0 || n > (INT64_C(100) * 366 * 86400 * 1000) / unit)
        return false;
    *ms = n * unit;
    return true;
}

/* Splits S at '|' and calls ITEM on each trimmed item; false on an empty item or when ITEM
 * refuses one. */
static bool each_item(const char *s, bool (*item)(const char *word, void *ud), void *ud)
{
    char word[ST_CATEGORY_NAME_MAX + 8];
    while (true) {
        const char *bar = strchr(s, '|');
        size_t n = bar != NULL ? (size_t)(bar - s) : strlen(s);
        char raw[sizeof(word)];
        if (n >= sizeof(raw))
            return false;
        memcpy(raw, s, n);
        raw[n] = '\0';
        if (!trimmed(raw, word, sizeof(word)) || word[0] == '\0' || !item(word, ud))
            return false;
        if (bar == NULL)
            return true;
        s = bar + 1;
    }
}

static bool add_category(const char *word, void *ud)
{
    struct vw_filter *f = ud;
    if (f->n_categories >= VW_CATEGORIES_MAX)
        return false;
    struct vw_category *c = &f->categories[f->n_categories];
    memset(c, 0, sizeof(*c));
    int64_t id;
    if (word[0] >= '0' && word[0] <= '9') {
        if (!read_count(word, 1, INT64_MAX / 2, &id))
            return false;
        c->id = id;
    } else {
        if (strlen(word) >= sizeof(c->name))
            return false;
        strcpy(c->name, word);
    }
    f->n_categories++;
    return true;
}

static bool add_condition(const char *word, void *ud)
{
    uint32_t *bits = ud;
    char canon[16];
    size_t n = strlen(word);
    if (n >= sizeof(canon))
        return false;
    for (size_t i = 0; i <= n; i++)
        canon[i] = word[i] == '-' ? '_' : word[i];
    for (size_t i = 0; i < ARRAY_LEN(condition_words); i++)
        if (strcasecmp(canon, condition_words[i].name) == 0) {
            *bits |= condition_words[i].bits;
            return true;
        }
    return false;
}

static bool add_verdict(const char *word, void *ud)
{
    uint8_t *bits = ud;
    if (strcasecmp(word, "deal") == 0)
        *bits |= VW_VERDICT_DEAL;
    else if (strcasecmp(word, "near") == 0)
        *bits |= VW_VERDICT_NEAR;
    else if (strcasecmp(word, "all") == 0)
        *bits |= VW_VERDICT_ALL;
    else
        return false;
    return true;
}

static bool read_since(const char *s, struct vw_filter *f)
{
    int64_t v;
    if (read_duration(s, &v)) {
        f->since_ago_ms = v;
        f->since_ms = 0;
        return true;
    }
    if (read_count(s, 100000000000LL, INT64_C(253402300799999), &v)) {
        f->since_ms = v; /* epoch ms from 1973 to 9999 */
        f->since_ago_ms = 0;
        return true;
    }
    if (vw_time_parse_iso(s, &v) == 0) {
        f->since_ms = v;
        f->since_ago_ms = 0;
        return true;
    }
    return false;
}

/* ---- the parser ---- */

static int fail(char *err, size_t errlen, const char *name, const char *value, const char *why)
{
    if (errlen > 0) {
        if (value != NULL)
            snprintf(err, errlen, "%s '%s': %s", name, value, why);
        else
            snprintf(err, errlen, "%s: %s", name, why);
    }
    return -EINVAL;
}

static int unknown_key(char *err, size_t errlen, const char *name)
{
    if (errlen == 0)
        return -ENOENT;
    bool cli = name != NULL && name[0] == '-';
    int n = snprintf(err, errlen, "unknown filter '%s' (known:", name != NULL ? name : "(null)");
    for (int k = 0; k < VW_K_COUNT && n >= 0 && (size_t)n < errlen; k++)
        n += snprintf(err + n, errlen - (size_t)n, "%s %s", k ? "," : "",
                      cli ? keys[k].cli : keys[k].name);
    if (n >= 0 && (size_t)n < errlen)
        snprintf(err + n, errlen - (size_t)n, ")");
    return -ENOENT;
}

int vw_filter_parse_arg(struct vw_filter *f, const char *name, const char *value, char *err,
                        size_t errlen)
{
    int k = key_of(name);
    if (k < 0)
        return unknown_key(err, errlen, name);
    if (errlen > 0)
        err[0] = '\0';
    const struct vw_key_info *key = &keys[k];
    char buf[512];
    bool on = true;
    if (!key->takes_value) {
        if (value != NULL) {
            if (!trimmed(value, buf, sizeof(buf)) || read_switch(buf) < 0)
                return fail(err, errlen, name, value,
                            "a switch: true or false (yes/no, on/off, 1/0)");
            on = read_switch(buf) == 1;
        }
    } else {
        if (value == NULL)
            return fail(err, errlen, name, NULL, "needs a value");
        if (!trimmed(value, buf, sizeof(buf)) || buf[0] == '\0')
            return fail(err, errlen, name, value, key->value_words);
    }

    struct vw_filter t = *f;
    int64_t v = 0;
    bool ok = true;
    switch ((enum vw_key)k) {
    case VW_K_MIN_ROI:
        ok = read_percent(buf, &t.min_roi_bp);
        break;
    case VW_K_MIN_PROFIT:
        ok = jd_money_parse(t.domain, buf, &t.min_profit_cents) == 0;
        break;
    case VW_K_MAX_RANK:
        ok = read_count(buf, 1, INT64_MAX / 2, &t.max_rank);
        break;
    case VW_K_MIN_DROPS30:
        ok = read_count(buf, 0, INT32_MAX, &v);
        t.min_drops30 = (int32_t)v;
        break;
    case VW_K_MIN_SOLD:
        ok = read_count(buf, 0, INT32_MAX, &v);
        t.min_sold = (int32_t)v;
        break;
    case VW_K_MAX_OFFERS:
        ok = read_count(buf, 0, INT32_MAX, &v);
        t.max_offers = (int32_t)v;
        break;
    case VW_K_CATEGORY:
        t.n_categories = 0;
        ok = each_item(buf, add_category, &t);
        break;
    case VW_K_CONDITION:
        t.conditions = 0;
        ok = each_item(buf, add_condition, &t.conditions);
        break;
    case VW_K_NO_AMAZON:
        t.no_amazon = on;
        break;
    case VW_K_NO_HAZMAT:
        t.no_hazmat = on;
        break;
    case VW_K_MARKED:
        t.marked = on;
        break;
    case VW_K_VERDICT:
        t.verdicts = 0;
        ok = each_item(buf, add_verdict, &t.verdicts);
        break;
    case VW_K_SINCE:
        ok = read_since(buf, &t);
        break;
    case VW_K_SORT:
        ok = false;
        for (size_t i = 0; i < ARRAY_LEN(sort_names); i++)
            if (strcasecmp(buf, sort_names[i]) == 0) {
                t.sort = (enum vw_sort)i;
                ok = true;
            }
        break;
    case VW_K_LIMIT:
        ok = read_count(buf, 0, VW_LIMIT_MAX, &v);
        t.limit = (size_t)v;
        break;
    case VW_K_OFFSET:
        ok = read_count(buf, 0, INT32_MAX, &v);
        t.offset = (size_t)v;
        break;
    case VW_K_COUNT:
        ok = false;
        break;
    }
    if (!ok) {
        if (k == VW_K_CATEGORY)
            return fail(err, errlen, name, value,
                        "root category ids or names (at most 16, each under 64 bytes), several "
                        "separated by |");
        if (k == VW_K_MIN_PROFIT) {
            const struct jd_market *m = jd_market(t.domain);
            return fail(err, errlen, name, value,
                        m != NULL && m->decimals == 0
                            ? "money in whole units of the marketplace's currency, e.g. 500"
                            : "money in the marketplace's currency, e.g. 5 or 5.00 (not cents)");
        }
        return fail(err, errlen, name, value, key->value_words);
    }
    if (on)
        t.given |= 1u << k;
    else
        t.given &= ~(1u << k);
    *f = t;
    return 0;
}

/* ---- formatting a filter back into its words ---- */

struct text {
    char *buf;
    size_t len;
    size_t used; /* what the whole text needs, even past LEN */
};

static void put(struct text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(struct text *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *at = t->used < t->len ? t->buf + t->used : NULL;
    size_t room = t->used < t->len ? t->len - t->used : 0;
    int n = vsnprintf(at, room, fmt, ap);
    va_end(ap);
    if (n > 0)
        t->used += (size_t)n;
}

/* Basis points as the percentage the parser reads: 2500 -> "25", 1250 -> "12.5". */
static void put_percent(struct text *t, int64_t bp)
{
    uint64_t a = bp < 0 ? 0u - (uint64_t)bp : (uint64_t)bp;
    const char *sign = bp < 0 ? "-" : "";
    if (a % 100 == 0)
        put(t, "%s%" PRIu64, sign, a / 100);
    else if (a % 10 == 0)
        put(t, "%s%" PRIu64 ".%" PRIu64, sign, a / 100, a % 100 / 10);
    else
        put(t, "%s%" PRIu64 ".%02" PRIu64, sign, a / 100, a % 100);
}

static void put_duration(struct text *t, int64_t ms)
{
    static const struct {
        int64_t ms;
        char unit;
    } units[] = {{7 * 86400000LL, 'w'}, {86400000, 'd'}, {3600000, 'h'}, {60000, 'm'}, {1000, 's'}};
    for (size_t i = 0; i < ARRAY_LEN(units); i++)
        if (ms % units[i].ms == 0) {
            put(t, "%" PRId64 "%c", ms / units[i].ms, units[i].unit);
            return;
        }
    put(t, "%" PRId64 "s", ms / 1000); /* the parser only makes whole seconds */
}

int vw_filter_format(const struct vw_filter *f, char *buf, size_t len)
{
    struct text t = {buf, len, 0};
    if (len > 0)
        buf[0] = '\0';
    for (int k = 0; k < VW_K_COUNT; k++) {
        if (!(f->given & (1u << k)))
            continue;
        put(&t, "%s=", keys[k].name);
        switch ((enum vw_key)k) {
        case VW_K_MIN_ROI:
            put_percent(&t, f->min_roi_bp);
            break;
        case VW_K_MIN_PROFIT: {
            const struct jd_market *m = jd_market(f->domain);
            int64_t c = f->min_profit_cents;
            uint64_t a = c < 0 ? 0u - (uint64_t)c : (uint64_t)c;
            if (m != NULL && m->decimals == 0)
                put(&t, "%s%" PRIu64, c < 0 ? "-" : "", a);
            else
                put(&t, "%s%" PRIu64 ".%02" PRIu64, c < 0 ? "-" : "", a / 100, a % 100);
            break;
        }
        case VW_K_MAX_RANK:
            put(&t, "%" PRId64, f->max_rank);
            break;
        case VW_K_MIN_DROPS30:
            put(&t, "%" PRId32, f->min_drops30);
            break;
        case VW_K_MIN_SOLD:
            put(&t, "%" PRId32, f->min_sold);
            break;
        case VW_K_MAX_OFFERS:
            put(&t, "%" PRId32, f->max_offers);
            break;
        case VW_K_CATEGORY:
            for (unsigned i = 0; i < f->n_categories; i++) {
                if (f->categories[i].id > 0)
                    put(&t, "%s%" PRId64, i ? "|" : "", f->categories[i].id);
                else
                    put(&t, "%s%s", i ? "|" : "", f->categories[i].name);
            }
            break;
        case VW_K_CONDITION: {
            uint32_t left = f->conditions;
            const char *sep = "";
            for (size_t i = 0; i < ARRAY_LEN(condition_words); i++)
                if ((left & condition_words[i].bits) == condition_words[i].bits) {
                    put(&t, "%s%s", sep, condition_words[i].name);
                    left &= ~condition_words[i].bits;
                    sep = "|";
                }
            break;
        }
        case VW_K_VERDICT:
            if (f->verdicts == VW_VERDICT_ALL)
                put(&t, "all");
            else
                put(&t, "%s%s%s", f->verdicts & VW_VERDICT_DEAL ? "deal" : "",
                    (f->verdicts & VW_VERDICT_DEAL) && (f->verdicts & VW_VERDICT_NEAR) ? "|" : "",
                    f->verdicts & VW_VERDICT_NEAR ? "near" : "");
            break;
        case VW_K_SINCE:
            if (f->since_ago_ms > 0) {
                put_duration(&t, f->since_ago_ms);
            } else {
                char iso[40];
                vw_time_iso(f->since_ms, iso, sizeof(iso));
                put(&t, "%s", iso);
            }
            break;
        case VW_K_NO_AMAZON:
        case VW_K_NO_HAZMAT:
        case VW_K_MARKED:
            put(&t, "true");
            break;
        case VW_K_SORT:
            put(&t, "%s", vw_sort_name(f->sort));
            break;
        case VW_K_LIMIT:
            put(&t, "%zu", f->limit);
            break;
        case VW_K_OFFSET:
            put(&t, "%zu", f->offset);
            break;
        case VW_K_COUNT:
            break;
        }
        put(&t, "\n");
    }
    return t.used > INT32_MAX ? INT32_MAX : (int)t.used;
}

/* ---- derived figures ---- */

bool vw_amazon_on_listing(const struct st_record *r)
{
    int32_t a = r->in.amazon_availability;
    return r->in.amazon_cents > 0 || a == 0 || a == 1 || a == 3 || a == 4 ||
           r->in.buy_box_is_amazon == 1 || r->in.buy_is_amazon;
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
    if (given(f, VW_K_MIN_PROFIT) && !(r->v.priced && r->v.profit_cents >= f->min_profit_cents))
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
