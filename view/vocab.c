/*
 * vocab.c: the view's vocabulary and its parser (filter.h). See filter.h.
 *
 * The parser reads every key through one table (VW_FILTER_KEYS) and writes into a copy of
 * the filter, so a value that fails leaves the caller's filter as it was. Numbers are read
 * strictly (digits only, no sign unless the key allows one, no trailing text): a preset with
 * "max_rank = 50k" is refused with a message rather than read as 50.
 *
 * This file and time.c are the library kd_view_vocab, which links no store: the config's
 * checker of [view.NAME] presets (view/preset.h) runs in every program that loads a config.
 * Matching and selection are filter.c.
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

/* The reason a value is refused, into WHY (the caller names the key and the value). */
static int fail(char *why, size_t whylen, const char *text)
{
    if (whylen > 0)
        snprintf(why, whylen, "%s", text);
    return -EINVAL;
}

/* "(known: min_roi, ...)" in the spelling of NAME (the command line's when it has dashes). */
static int unknown_key(char *why, size_t whylen, const char *name)
{
    if (whylen == 0)
        return -ENOENT;
    bool cli = name != NULL && name[0] == '-';
    int n = snprintf(why, whylen, "(known:");
    for (int k = 0; k < VW_K_COUNT && n >= 0 && (size_t)n < whylen; k++)
        n += snprintf(why + n, whylen - (size_t)n, "%s %s", k ? "," : "",
                      cli ? keys[k].cli : keys[k].name);
    if (n >= 0 && (size_t)n < whylen)
        snprintf(why + n, whylen - (size_t)n, ")");
    return -ENOENT;
}

int vw_filter_parse_arg(struct vw_filter *f, const char *name, const char *value, char *err,
                        size_t errlen)
{
    char why[512];
    int rc = vw_filter_parse_value(f, name, value, why, sizeof(why));
    if (rc == 0 || errlen == 0)
        return rc;
    if (rc == -ENOENT)
        snprintf(err, errlen, "unknown filter '%s' %s", name != NULL ? name : "(null)", why);
    else if (value != NULL)
        snprintf(err, errlen, "%s '%s': %s", name, value, why);
    else
        snprintf(err, errlen, "%s: %s", name, why);
    return rc;
}

int vw_filter_parse_value(struct vw_filter *f, const char *name, const char *value, char *err,
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
                return fail(err, errlen, "a switch: true or false (yes/no, on/off, 1/0)");
            on = read_switch(buf) == 1;
        }
    } else {
        if (value == NULL)
            return fail(err, errlen, "needs a value");
        if (!trimmed(value, buf, sizeof(buf)) || buf[0] == '\0')
            return fail(err, errlen, key->value_words);
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
            return fail(err, errlen,
                        "root category ids or names (at most 16, each under 64 bytes), several "
                        "separated by |");
        if (k == VW_K_MIN_PROFIT) {
            const struct jd_market *m = jd_market(t.domain);
            return fail(err, errlen,
                        m != NULL && m->decimals == 0
                            ? "money in whole units of the marketplace's currency, e.g. 500"
                            : "money in the marketplace's currency, e.g. 5 or 5.00 (not cents)");
        }
        return fail(err, errlen, key->value_words);
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
