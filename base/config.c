/*
 * config.c: INI parsing (inih), validation, printing, diff and the msgpack form of struct cfg.
 * See config.h for the key table and the value syntax.
 *
 * Parsing. inih's file entry points do not tell the handler the line number (Debian builds
 * it with INI_HANDLER_LINENO 0), so the file is fed through ini_parse_stream with our own
 * line reader: it counts lines (the handler always runs for the line just read), rejects
 * NUL bytes and over-long lines instead of letting inih split them, strips leading blanks so
 * inih never treats an indented line as a continuation of the previous value, and checks
 * section headers itself so an empty unknown section is reported at its own line. Only the
 * first error is kept: it is the one an operator should fix first.
 *
 * Encoding. The supervisor publishes the validated config in shm and the workers decode it,
 * so cfg_decode is strict (every key, no unknown key, every bound re-checked) and safe on
 * any bytes: before msgpack-c unpacks anything, a pre-scan checks that the bytes hold exactly
 * one msgpack object whose every container count fits in the remaining bytes, so a forged
 * "map of 4 billion entries" header cannot make msgpack-c allocate gigabytes.
 */
#include "base/config.h"
#include "base/mpcheck.h"

#include "base/kd_assert.h"
#include "base/log.h"
#include "base/web.h"

#include <errno.h>
#include <ini.h>
#include <inttypes.h>
#include <limits.h>
#include <msgpack.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define CFG_ENCODING_VERSION 1
#define CFG_ERR_VALUE_MAX    64 /* bytes of an offending value quoted in a message */

/* ---- the key table --------------------------------------------------------------------- */

#define CFG_OFF_INT(name)      offsetof(struct cfg, name)
#define CFG_OFF_BOOL(name)     offsetof(struct cfg, name)
#define CFG_OFF_DURATION(name) offsetof(struct cfg, name##_ms)
#define CFG_OFF_PCT(name)      offsetof(struct cfg, name##_bp)
#define CFG_OFF_ENUM(name)     offsetof(struct cfg, name)
#define CFG_OFF_DOMAIN(name)   offsetof(struct cfg, name)
#define CFG_OFF_STR(name)      offsetof(struct cfg, name)
#define CFG_OFF_PATH(name)     offsetof(struct cfg, name)
#define CFG_OFF_SECRET(name)   offsetof(struct cfg, name)
#define CFG_OFF_MONEY(name)    offsetof(struct cfg, name##_cents)
#define CFG_OFF_LIST(name)     offsetof(struct cfg, name)
#define CFG_OFF_IDS(name)      offsetof(struct cfg, name)

static const struct cfg_key cfg_key_table[CFG_KEY_COUNT] = {
#define CFG_X_ROW(sec, key, ty, def, mn, mx, ch, reload, hlp)                                      \
    {.section = #sec,                                                                              \
     .name = #key,                                                                                 \
     .type = CFG_T_##ty,                                                                           \
     .default_text = def,                                                                          \
     .min = mn,                                                                                    \
     .max = mx,                                                                                    \
     .choices = ch,                                                                                \
     .reloadable = reload,                                                                         \
     .help = hlp,                                                                                  \
     .offset = CFG_OFF_##ty(sec##_##key)},
    CFG_KEYS(CFG_X_ROW)
#undef CFG_X_ROW
};

/* Keepa domain ids and names (docs/keepa-api.md); 7 is unused. */
static const char *const cfg_domain_names[] = {NULL, "com", "co.uk", "de", "fr",     "co.jp", "ca",
                                               NULL, "it",  "es",    "in", "com.mx", "com.br"};

const struct cfg_key *cfg_keys(void)
{
    return cfg_key_table;
}

const struct cfg_key *cfg_key_find(const char *section, const char *name)
{
    for (size_t i = 0; i < CFG_KEY_COUNT; i++) {
        if (strcmp(cfg_key_table[i].section, section) == 0 &&
            strcmp(cfg_key_table[i].name, name) == 0)
            return &cfg_key_table[i];
    }
    return NULL;
}

/* ---- named sections ------------------------------------------------------------------- */

static const char *const cfg_named_kind_words[] = {
#define CFG_X_KIND_WORD(kind, help, example) #kind,
    CFG_NAMED_KINDS(CFG_X_KIND_WORD)
#undef CFG_X_KIND_WORD
};
static const char *const cfg_named_kind_help[] = {
#define CFG_X_KIND_HELP(kind, help, example) help,
    CFG_NAMED_KINDS(CFG_X_KIND_HELP)
#undef CFG_X_KIND_HELP
};
static const char *const cfg_named_kind_example[] = {
#define CFG_X_KIND_EXAMPLE(kind, help, example) example,
    CFG_NAMED_KINDS(CFG_X_KIND_EXAMPLE)
#undef CFG_X_KIND_EXAMPLE
};

const char *cfg_named_kind_name(unsigned kind)
{
    return kind < CFG_NAMED_KIND_COUNT ? cfg_named_kind_words[kind] : NULL;
}

int cfg_named_kind_find(const char *word)
{
    for (unsigned k = 0; k < CFG_NAMED_KIND_COUNT; k++)
        if (strcmp(cfg_named_kind_words[k], word) == 0)
            return (int)k;
    return -1;
}

const struct cfg_named *cfg_named_find(const struct cfg *c, unsigned kind, const char *name)
{
    for (size_t i = 0; i < c->n_named && i < CFG_NAMED_MAX; i++)
        if (c->named[i].kind == kind && strcmp(c->named[i].name, name) == 0)
            return &c->named[i];
    return NULL;
}

void cfg_named_key(const struct cfg *c, const struct cfg_named *s, size_t i, const char **key,
                   const char **value, int *line)
{
    KD_ASSERT(i < s->n_keys && (size_t)s->first_key + i < CFG_NAMED_KEYS_MAX);
    const struct cfg_named_key *k = &c->named_keys[s->first_key + i];
    if (key != NULL)
        *key = c->named_text + k->key_off;
    if (value != NULL)
        *value = c->named_text + k->value_off;
    if (line != NULL)
        *line = k->line;
}

int cfg_named_check(const struct cfg *c, const struct cfg_named_checker *const *chk, size_t n,
                    char *err, size_t errlen)
{
    const char *file = c->source_path[0] ? c->source_path : "(config)";
    for (size_t i = 0; i < c->n_named; i++) {
        const struct cfg_named *s = &c->named[i];
        const struct cfg_named_checker *ck = NULL;
        for (size_t j = 0; j < n; j++)
            if (chk[j] != NULL && chk[j]->kind == s->kind)
                ck = chk[j];
        if (ck == NULL || ck->check_key == NULL)
            continue;
        for (size_t k = 0; k < s->n_keys; k++) {
            const char *key, *value;
            int line;
            cfg_named_key(c, s, k, &key, &value, &line);
            char why[600] = "", where[32] = "";
            int rc = ck->check_key(c, s->name, key, value, why, sizeof(why));
            if (rc == 0)
                continue;
            if (line > 0)
                snprintf(where, sizeof(where), ":%d", line);
            if (rc == -ENOENT)
                kd_seterr(err, errlen, "config: %s%s: [%s.%s] %s: unknown key%s%s", file, where,
                          cfg_named_kind_name(s->kind), s->name, key, why[0] ? " " : "", why);
            else
                kd_seterr(err, errlen, "config: %s%s: [%s.%s] %s = %.*s: %s", file, where,
                          cfg_named_kind_name(s->kind), s->name, key, CFG_ERR_VALUE_MAX, value,
                          why[0] ? why : "not allowed");
            return -EINVAL;
        }
    }
    return 0;
}

static bool section_known(const char *section)
{
    for (size_t i = 0; i < CFG_KEY_COUNT; i++) {
        if (strcmp(cfg_key_table[i].section, section) == 0)
            return true;
    }
    return false;
}

static int64_t *field_i64(struct cfg *c, const struct cfg_key *k)
{
    return (int64_t *)(void *)((char *)c + k->offset);
}

static const int64_t *field_i64c(const struct cfg *c, const struct cfg_key *k)
{
    return (const int64_t *)(const void *)((const char *)c + k->offset);
}

static char *field_str(struct cfg *c, const struct cfg_key *k)
{
    return (char *)c + k->offset;
}

static const char *field_strc(const struct cfg *c, const struct cfg_key *k)
{
    return (const char *)c + k->offset;
}

static bool is_string_type(enum cfg_type t)
{
    return t == CFG_T_STR || t == CFG_T_PATH || t == CFG_T_SECRET || t == CFG_T_LIST ||
           t == CFG_T_IDS;
}

/* Index of WORD in the "a|b|c" list CHOICES, or -1. */
static int choice_index(const char *choices, const char *word)
{
    size_t wlen = strlen(word);
    int idx = 0;
    for (const char *p = choices;; idx++) {
        const char *bar = strchr(p, '|');
        size_t n = bar ? (size_t)(bar - p) : strlen(p);
        if (n == wlen && memcmp(p, word, n) == 0)
            return idx;
        if (bar == NULL)
            return -1;
        p = bar + 1;
    }
}

/* Copies choice number IDX of CHOICES into BUF; "" if out of range. */
static void choice_name(const char *choices, int idx, char *buf, size_t len)
{
    const char *p = choices;
    for (int i = 0; p != NULL && i < idx; i++) {
        p = strchr(p, '|');
        if (p != NULL)
            p++;
    }
    if (p == NULL || idx < 0) {
        snprintf(buf, len, "%s", "");
        return;
    }
    const char *bar = strchr(p, '|');
    int n = bar ? (int)(bar - p) : (int)strlen(p);
    snprintf(buf, len, "%.*s", n, p);
}

/* ---- value syntax ---------------------------------------------------------------------- */

static int parse_i64(const char *s, int64_t *out)
{
    if (*s == '\0')
        return -EINVAL;
    errno = 0;
    char *end = NULL;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0')
        return -EINVAL;
    *out = (int64_t)v;
    return 0;
}

static int parse_duration(const char *s, int64_t *out_ms)
{
    static const struct {
        const char *unit;
        int64_t ms;
    } units[] = {{"ms", 1}, {"s", CFG_MS_S}, {"m", CFG_MS_MIN}, {"h", CFG_MS_H}, {"d", CFG_MS_D}};
    if (strcmp(s, "0") == 0) {
        *out_ms = 0;
        return 0;
    }
    const char *p = s;
    while (*p >= '0' && *p <= '9')
        p++;
    if (p == s || p - s > 12)
        return -EINVAL;
    char digits[16];
    memcpy(digits, s, (size_t)(p - s));
    digits[p - s] = '\0';
    int64_t n = 0;
    if (parse_i64(digits, &n) != 0)
        return -EINVAL;
    for (size_t i = 0; i < KD_ARRAY_LEN(units); i++) {
        if (strcmp(p, units[i].unit) == 0) {
            if (n > INT64_MAX / units[i].ms)
                return -ERANGE;
            *out_ms = n * units[i].ms;
            return 0;
        }
    }
    return -EINVAL;
}

/* "20", "-3.25", "12.5%" -> basis points. */
static int parse_pct(const char *s, int64_t *out_bp)
{
    const char *p = s;
    bool neg = false;
    if (*p == '-' || *p == '+') {
        neg = *p == '-';
        p++;
    }
    if (!(*p >= '0' && *p <= '9'))
        return -EINVAL;
    int64_t whole = 0;
    while (*p >= '0' && *p <= '9') {
        if (whole > 100000000)
            return -ERANGE;
        whole = whole * 10 + (*p++ - '0');
    }
    int64_t frac = 0;
    if (*p == '.') {
        p++;
        int nd = 0;
        while (*p >= '0' && *p <= '9') {
            if (++nd > 2)
                return -EINVAL;
            frac = frac * 10 + (*p++ - '0');
        }
        if (nd == 0)
            return -EINVAL;
        if (nd == 1)
            frac *= 10;
    }
    if (*p == '%')
        p++;
    if (*p != '\0')
        return -EINVAL;
    int64_t bp = whole * 100 + frac;
    *out_bp = neg ? -bp : bp;
    return 0;
}

/* Money: an optional sign, an optional currency symbol ($, €, £, ¥), a number with up to 2
 * decimals; hundredths of the unit. */
static int parse_money(const char *s, int64_t *out)
{
    char buf[64];
    size_t n = strlen(s);
    if (n >= sizeof(buf) || strchr(s, '%') != NULL)
        return -EINVAL;
    const char *p = s;
    size_t o = 0;
    if (*p == '-' || *p == '+')
        buf[o++] = *p++;
    static const char *const symbols[] = {"$", "\xe2\x82\xac", "\xc2\xa3", "\xc2\xa5"};
    for (size_t i = 0; i < sizeof(symbols) / sizeof(symbols[0]); i++) {
        size_t sl = strlen(symbols[i]);
        if (strncmp(p, symbols[i], sl) == 0) {
            p += sl;
            break;
        }
    }
    snprintf(buf + o, sizeof(buf) - o, "%s", p);
    return parse_pct(buf, out);
}

static int parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = {"true", "yes", "on", "1"};
    static const char *const no[] = {"false", "no", "off", "0"};
    for (size_t i = 0; i < KD_ARRAY_LEN(yes); i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return -EINVAL;
}

static void format_duration(int64_t ms, char *buf, size_t len)
{
    if (ms == 0)
        snprintf(buf, len, "0");
    else if (ms % CFG_MS_D == 0)
        snprintf(buf, len, "%" PRId64 "d", ms / CFG_MS_D);
    else if (ms % CFG_MS_H == 0)
        snprintf(buf, len, "%" PRId64 "h", ms / CFG_MS_H);
    else if (ms % CFG_MS_MIN == 0)
        snprintf(buf, len, "%" PRId64 "m", ms / CFG_MS_MIN);
    else if (ms % CFG_MS_S == 0)
        snprintf(buf, len, "%" PRId64 "s", ms / CFG_MS_S);
    else
        snprintf(buf, len, "%" PRId64 "ms", ms);
}

static void format_pct(int64_t bp, char *buf, size_t len)
{
    const char *sign = bp < 0 ? "-" : "";
    uint64_t a = bp < 0 ? (uint64_t)0 - (uint64_t)bp : (uint64_t)bp;
    if (a % 100 == 0)
        snprintf(buf, len, "%s%" PRIu64, sign, a / 100);
    else if (a % 10 == 0)
        snprintf(buf, len, "%s%" PRIu64 ".%" PRIu64, sign, a / 100, (a % 100) / 10);
    else
        snprintf(buf, len, "%s%" PRIu64 ".%02" PRIu64, sign, a / 100, a % 100);
}

/* Money in hundredths, always with two decimals: 500 -> "5.00", -125 -> "-1.25". */
static void format_money(int64_t v, char *buf, size_t len)
{
    uint64_t a = v < 0 ? (uint64_t)(-(v + 1)) + 1u : (uint64_t)v;
    snprintf(buf, len, "%s%" PRIu64 ".%02" PRIu64, v < 0 ? "-" : "", a / 100, a % 100);
}

/* A bound in the key's own syntax (for messages). */
static void format_bound(const struct cfg_key *k, int64_t v, char *buf, size_t len)
{
    if (k->type == CFG_T_DURATION)
        format_duration(v, buf, len);
    else if (k->type == CFG_T_PCT)
        format_pct(v, buf, len);
    else if (k->type == CFG_T_MONEY)
        format_money(v, buf, len);
    else
        snprintf(buf, len, "%" PRId64, v);
}

int cfg_list_parse(const char *text, const char *choices, int64_t *out, size_t max, char *why,
                   size_t whylen)
{
    size_t n = 0;
    const char *p = text;
    for (;;) {
        while (*p == ' ' || *p == '\t')
            p++;
        const char *start = p;
        while (*p != '\0' && *p != ',')
            p++;
        const char *end = p;
        while (end > start && (end[-1] == ' ' || end[-1] == '\t'))
            end--;
        size_t len = (size_t)(end - start);
        if (len == 0) {
            if (*p == '\0' && n == 0 && choices == NULL)
                return 0; /* an empty id list */
            snprintf(why, whylen, "an empty item in the list");
            return -EINVAL;
        }
        if (n >= max) {
            snprintf(why, whylen, "more than %zu items", max);
            return -EINVAL;
        }
        char word[64];
        if (len >= sizeof(word)) {
            snprintf(why, whylen, "an item longer than %zu bytes", sizeof(word) - 1);
            return -EINVAL;
        }
        memcpy(word, start, len);
        word[len] = '\0';
        int64_t v;
        if (choices != NULL) {
            int idx = choice_index(choices, word);
            if (idx < 0) {
                snprintf(why, whylen, "'%s' is not one of %s", word, choices);
                return -EINVAL;
            }
            v = idx;
        } else if (parse_i64(word, &v) != 0 || v <= 0) {
            snprintf(why, whylen, "'%s' is not a positive integer", word);
            return -EINVAL;
        }
        for (size_t i = 0; i < n; i++) {
            if (out[i] == v) {
                snprintf(why, whylen, "'%s' is listed twice", word);
                return -EINVAL;
            }
        }
        out[n++] = v;
        if (*p == '\0')
            return (int)n;
        p++; /* the comma */
    }
}

int cfg_format_value(const struct cfg *c, const struct cfg_key *k, char *buf, size_t len)
{
    char tmp[64];
    switch (k->type) {
    case CFG_T_INT:
    case CFG_T_DOMAIN:
        return snprintf(buf, len, "%" PRId64, *field_i64c(c, k));
    case CFG_T_BOOL:
        return snprintf(buf, len, "%s",
                        *(const bool *)((const char *)c + k->offset) ? "true" : "false");
    case CFG_T_DURATION:
        format_duration(*field_i64c(c, k), tmp, sizeof(tmp));
        return snprintf(buf, len, "%s", tmp);
    case CFG_T_PCT:
        format_pct(*field_i64c(c, k), tmp, sizeof(tmp));
        return snprintf(buf, len, "%s", tmp);
    case CFG_T_ENUM:
        choice_name(k->choices, *(const int *)(const void *)((const char *)c + k->offset), tmp,
                    sizeof(tmp));
        return snprintf(buf, len, "%s", tmp);
    case CFG_T_SECRET:
        return snprintf(buf, len, "%s", field_strc(c, k)[0] ? "<redacted>" : "");
    case CFG_T_STR:
    case CFG_T_PATH:
    case CFG_T_LIST:
    case CFG_T_IDS:
        return snprintf(buf, len, "%s", field_strc(c, k));
    case CFG_T_MONEY:
        format_money(*field_i64c(c, k), tmp, sizeof(tmp));
        return snprintf(buf, len, "%s", tmp);
    }
    return snprintf(buf, len, "?");
}

/*
 * Parses TEXT as the value of K into C. Returns 0, or -EINVAL with the reason in WHY
 * (bounds are checked separately by check_value).
 */
static int parse_value(const struct cfg_key *k, const char *text, struct cfg *c, char *why,
                       size_t whylen)
{
    int64_t v = 0;
    switch (k->type) {
    case CFG_T_INT:
        if (parse_i64(text, &v) != 0) {
            snprintf(why, whylen, "not an integer");
            return -EINVAL;
        }
        *field_i64(c, k) = v;
        return 0;
    case CFG_T_BOOL: {
        bool b = false;
        if (parse_bool(text, &b) != 0) {
            snprintf(why, whylen, "must be true or false (yes/no, on/off, 1/0)");
            return -EINVAL;
        }
        *(bool *)((char *)c + k->offset) = b;
        return 0;
    }
    case CFG_T_DURATION:
        if (parse_duration(text, &v) != 0) {
            snprintf(why, whylen, "must be a duration with a unit, e.g. 500ms, 30s, 15m, 6h, 2d");
            return -EINVAL;
        }
        *field_i64(c, k) = v;
        return 0;
    case CFG_T_PCT:
        if (parse_pct(text, &v) != 0) {
            snprintf(why, whylen, "must be a percentage with at most 2 decimals, e.g. 20 or 12.5");
            return -EINVAL;
        }
        *field_i64(c, k) = v;
        return 0;
    case CFG_T_ENUM: {
        int idx = choice_index(k->choices, text);
        if (idx < 0) {
            snprintf(why, whylen, "must be one of %s", k->choices);
            return -EINVAL;
        }
        *(int *)(void *)((char *)c + k->offset) = idx;
        return 0;
    }
    case CFG_T_DOMAIN:
        if (parse_i64(text, &v) != 0) {
            v = -1;
            for (size_t i = 0; i < KD_ARRAY_LEN(cfg_domain_names); i++) {
                if (cfg_domain_names[i] && strcmp(cfg_domain_names[i], text) == 0)
                    v = (int64_t)i;
            }
            if (v < 0) {
                snprintf(why, whylen,
                         "not a Keepa domain (1 com, 2 co.uk, 3 de, 4 fr, 5 co.jp, 6 ca, 8 it, "
                         "9 es, 10 in, 11 com.mx, 12 com.br)");
                return -EINVAL;
            }
        }
        *field_i64(c, k) = v;
        return 0;
    case CFG_T_MONEY:
        if (parse_money(text, &v) != 0) {
            snprintf(why, whylen, "must be an amount with at most 2 decimals, e.g. 5 or 12.50");
            return -EINVAL;
        }
        *field_i64(c, k) = v;
        return 0;
    case CFG_T_STR:
    case CFG_T_PATH:
    case CFG_T_SECRET:
    case CFG_T_LIST:
    case CFG_T_IDS: {
        size_t n = strlen(text);
        if (n >= 2 && text[0] == '"' && text[n - 1] == '"') {
            text++;
            n -= 2;
        }
        if (n > CFG_STR_MAX) {
            snprintf(why, whylen, "longer than %d bytes", CFG_STR_MAX);
            return -EINVAL;
        }
        memcpy(field_str(c, k), text, n);
        field_str(c, k)[n] = '\0';
        return 0;
    }
    }
    snprintf(why, whylen, "unknown type");
    return -EINVAL;
}

bool cfg_instance_valid(const char *name)
{
    size_t n = name != NULL ? strlen(name) : 0;
    if (n == 0 || n > 32)
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = name[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '_' || ch == '-'))
            return false;
    }
    return true;
}

/*
 * [keepa] base_url is a scheme and an authority, nothing else: the client appends "/product?..."
 * to it, so a path, a query, a fragment or credentials would make every request fail (or send
 * the key elsewhere) while the daemon looks healthy.
 */
static int check_base_url(const char *s, char *why, size_t whylen)
{
    const char *host = strncmp(s, "http://", 7) == 0    ? s + 7
                       : strncmp(s, "https://", 8) == 0 ? s + 8
                                                        : NULL;
    if (host == NULL) {
        snprintf(why, whylen, "must start with http:// or https://");
        return -EINVAL;
    }
    size_t n = strcspn(host, "/?#@");
    if (n == 0) {
        snprintf(why, whylen, "names no host");
        return -EINVAL;
    }
    if (host[n] == '@') {
        snprintf(why, whylen, "must not hold credentials (user@host)");
        return -EINVAL;
    }
    if (host[n] != '\0' && strcmp(host + n, "/") != 0) {
        snprintf(why, whylen,
                 "must be only scheme://host[:port], without a path, query or fragment "
                 "(requests go to <base_url>/product, /deal, ...)");
        return -EINVAL;
    }
    return 0;
}

/* Checks the bounds and the per-key rules of K's value in C. */
static int check_value(const struct cfg_key *k, const struct cfg *c, char *why, size_t whylen)
{
    char lo[32], hi[32];
    format_bound(k, k->min, lo, sizeof(lo));
    format_bound(k, k->max, hi, sizeof(hi));
    if (is_string_type(k->type)) {
        const char *s = field_strc(c, k);
        size_t n = strnlen(s, CFG_STR_MAX + 1);
        if (n > CFG_STR_MAX || (int64_t)n < k->min || (int64_t)n > k->max) {
            if (k->min > 0 && n == 0)
                snprintf(why, whylen, "must not be empty");
            else
                snprintf(why, whylen, "length must be %s..%s bytes", lo, hi);
            return -EINVAL;
        }
        for (size_t i = 0; i < n; i++) {
            if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) {
                snprintf(why, whylen, "contains a control character");
                return -EINVAL;
            }
        }
        if (k == &cfg_key_table[CFG_K_daemon_instance] && n > 0 && !cfg_instance_valid(s)) {
            snprintf(why, whylen, "may hold only letters, digits, '_' and '-'");
            return -EINVAL;
        }
        if (k->type == CFG_T_LIST || k->type == CFG_T_IDS) {
            int64_t items[32];
            if (cfg_list_parse(s, k->type == CFG_T_LIST ? k->choices : NULL, items, 32, why,
                               whylen) < 0)
                return -EINVAL;
        }
        if (k == &cfg_key_table[CFG_K_keepa_base_url] && check_base_url(s, why, whylen) != 0)
            return -EINVAL;
        struct kd_web_listen wl;
        if (k == &cfg_key_table[CFG_K_web_listen] && n > 0 &&
            kd_web_listen_parse(s, &wl, why, whylen) != 0)
            return -EINVAL;
        return 0;
    }
    int64_t v;
    if (k->type == CFG_T_BOOL) {
        v = *(const bool *)((const char *)c + k->offset);
    } else if (k->type == CFG_T_ENUM) {
        v = *(const int *)(const void *)((const char *)c + k->offset);
        if (v < k->min || v > k->max) {
            snprintf(why, whylen, "must be one of %s", k->choices);
            return -EINVAL;
        }
        return 0;
    } else {
        v = *field_i64c(c, k);
    }
    if (v < k->min) {
        snprintf(why, whylen, "must be >= %s", lo);
        return -EINVAL;
    }
    if (v > k->max) {
        snprintf(why, whylen, "must be <= %s", hi);
        return -EINVAL;
    }
    if (k->type == CFG_T_DOMAIN && cfg_domain_names[v] == NULL) {
        snprintf(why, whylen, "%" PRId64 " is not a Keepa domain", v);
        return -EINVAL;
    }
    if (k == &cfg_key_table[CFG_K_scan_bestseller_range] && v != 0 && v != 30 && v != 90 &&
        v != 180) {
        snprintf(why, whylen, "must be 0 (the current sales rank), 30, 90 or 180 (days)");
        return -EINVAL;
    }
    if (k == &cfg_key_table[CFG_K_scan_peek_offers] && v != 0 && v < 20) {
        snprintf(why, whylen, "must be 0 (no offers) or 20..100");
        return -EINVAL;
    }
    return 0;
}

/* ---- error messages -------------------------------------------------------------------- */

/* "config: NAME:LINE: [sec] key = value: why" (LINE 0 = not from a file line). */
static void key_err(char *err, size_t errlen, const char *name, int line, const struct cfg_key *k,
                    const char *value, const char *why)
{
    char where[32] = "";
    if (line > 0)
        snprintf(where, sizeof(where), ":%d", line);
    if (k->type == CFG_T_SECRET && value[0] != '\0')
        value = "<redacted>";
    kd_seterr(err, errlen, "config: %s%s: [%s] %s = %.*s: %s", name, where, k->section, k->name,
              CFG_ERR_VALUE_MAX, value, why);
}

/*
 * Whether a [mirror] postgres value is a conninfo (key = value pairs or a postgres:// URI)
 * rather than the path of a file holding one, and whether it carries a password, which belongs
 * in a file of mode 0600 and never in the config (cfg_print shows the value).
 */
static bool conninfo_inline(const char *v)
{
    return strncmp(v, "postgresql://", 13) == 0 || strncmp(v, "postgres://", 11) == 0 ||
           strchr(v, '=') != NULL;
}

static bool conninfo_has_password(const char *v)
{
    const char *scheme = strstr(v, "://");
    if (scheme != NULL &&
        (strncmp(v, "postgresql://", 13) == 0 || strncmp(v, "postgres://", 11) == 0)) {
        const char *auth = scheme + 3;
        size_t n = strcspn(auth, "/?");
        const char *at = memchr(auth, '@', n);
        if (at != NULL && memchr(auth, ':', (size_t)(at - auth)) != NULL)
            return true;
        const char *q = strchr(auth, '?');
        return q != NULL && (strstr(q, "?password=") != NULL || strstr(q, "&password=") != NULL);
    }
    for (const char *p = v; (p = strstr(p, "password")) != NULL; p += 8) {
        if (p != v && p[-1] != ' ' && p[-1] != '\t')
            continue;
        const char *e = p + 8;
        while (*e == ' ' || *e == '\t')
            e++;
        if (*e == '=')
            return true;
    }
    return false;
}

/*
 * The rules between keys. LINES (may be NULL) holds the line of each key in the file (0 when
 * defaulted); an error is reported at the key set last.
 */
static int check_rules(const struct cfg *c, const int *lines, const char *name, char *err,
                       size_t errlen)
{
    char why[160], val[CFG_STR_MAX + 16];
#define LINE_OF(id) (lines ? lines[id] : 0)
#define RULE_ERR(id, ...)                                                                          \
    do {                                                                                           \
        snprintf(why, sizeof(why), __VA_ARGS__);                                                   \
        cfg_format_value(c, &cfg_key_table[id], val, sizeof(val));                                 \
        key_err(err, errlen, name, LINE_OF(id), &cfg_key_table[id], val, why);                     \
        return -EINVAL;                                                                            \
    } while (0)
    /* Of two keys, the one to blame: the one that appears later in the file. */
#define LATER(a, b) (LINE_OF(a) >= LINE_OF(b) ? (a) : (b))

    if (c->keepa_key[0] != '\0' && c->keepa_key_file[0] != '\0')
        RULE_ERR(LATER(CFG_K_keepa_key, CFG_K_keepa_key_file),
                 "set only one of [keepa] key and [keepa] key_file");
    if (c->store_max_map_size_mb < c->store_map_size_mb)
        RULE_ERR(LATER(CFG_K_store_max_map_size_mb, CFG_K_store_map_size_mb),
                 "[store] max_map_size_mb (%" PRId64 ") must be >= map_size_mb (%" PRId64 ")",
                 c->store_max_map_size_mb, c->store_map_size_mb);
    if (c->update_min_interval_ms > c->update_max_interval_ms) {
        char a[32], b[32];
        format_duration(c->update_min_interval_ms, a, sizeof(a));
        format_duration(c->update_max_interval_ms, b, sizeof(b));
        RULE_ERR(LATER(CFG_K_update_min_interval, CFG_K_update_max_interval),
                 "[update] min_interval (%s) must be <= max_interval (%s)", a, b);
    }
    if (c->scan_source == CFG_SOURCE_ASINS && c->scan_asins_file[0] == '\0')
        RULE_ERR(CFG_K_scan_source, "source = asins needs [scan] asins_file");
    if (c->scan_source == CFG_SOURCE_QUERY && c->scan_selection_file[0] == '\0')
        RULE_ERR(CFG_K_scan_source, "source = query needs [scan] selection_file");
    if (c->scan_source == CFG_SOURCE_LIST && c->scan_list_file[0] == '\0')
        RULE_ERR(CFG_K_scan_source, "source = list needs [scan] list_file");
    if (c->scan_source == CFG_SOURCE_BESTSELLERS && c->scan_bestseller_categories[0] == '\0')
        RULE_ERR(CFG_K_scan_source, "source = bestsellers needs [scan] bestseller_categories (the "
                                    "category ids whose best-seller lists are walked)");
    if (c->scan_max_price_cents > 0 && c->scan_min_price_cents > c->scan_max_price_cents) {
        char a[32], b[32];
        format_money(c->scan_min_price_cents, a, sizeof(a));
        format_money(c->scan_max_price_cents, b, sizeof(b));
        RULE_ERR(LATER(CFG_K_scan_min_price, CFG_K_scan_max_price),
                 "[scan] min_price (%s) must be <= max_price (%s)", a, b);
    }
    struct kd_web_listen wl;
    if (c->web_listen[0] != '\0' && c->web_token_file[0] == '\0' &&
        kd_web_listen_parse(c->web_listen, &wl, why, sizeof(why)) == 0 && !wl.loopback)
        RULE_ERR(CFG_K_web_listen,
                 "listens beyond loopback: set [web] token_file, a file of mode 0600 holding the "
                 "bearer token every request must send (or listen on 127.0.0.1)");
    if (conninfo_inline(c->mirror_postgres) && conninfo_has_password(c->mirror_postgres)) {
        /* The value is not repeated: it holds a password. */
        key_err(err, errlen, name, LINE_OF(CFG_K_mirror_postgres),
                &cfg_key_table[CFG_K_mirror_postgres], "<redacted>",
                "a password does not belong in the config: put the conninfo in a file of mode "
                "0600 and name the file here");
        return -EINVAL;
    }
#undef LATER
#undef RULE_ERR
#undef LINE_OF
    return 0;
}

static int validate_all(const struct cfg *c, const int *lines, const char *name, char *err,
                        size_t errlen)
{
    char why[160], val[CFG_STR_MAX + 16];
    for (size_t i = 0; i < CFG_KEY_COUNT; i++) {
        const struct cfg_key *k = &cfg_key_table[i];
        if (check_value(k, c, why, sizeof(why)) != 0) {
            cfg_format_value(c, k, val, sizeof(val));
            key_err(err, errlen, name, lines ? lines[i] : 0, k, val, why);
            return -EINVAL;
        }
    }
    return check_rules(c, lines, name, err, errlen);
}

int cfg_validate(const struct cfg *c, char *err, size_t errlen)
{
    return validate_all(c, NULL, c->source_path[0] ? c->source_path : "(config)", err, errlen);
}

void cfg_defaults(struct cfg *out)
{
    char why[160];
    memset(out, 0, sizeof(*out));
    for (size_t i = 0; i < CFG_KEY_COUNT; i++) {
        int rc =
            parse_value(&cfg_key_table[i], cfg_key_table[i].default_text, out, why, sizeof(why));
        KD_ASSERT(rc == 0);
    }
}

/* ---- parsing --------------------------------------------------------------------------- */

struct cfg_parse {
    const char *buf; /* input */
    size_t len, pos;
    const char *name; /* for messages */
    int lineno;       /* line most recently handed to inih */
    char section[64]; /* the section of the lines read last, as inih sees it */
    struct cfg cfg;
    int key_line[CFG_KEY_COUNT];
    int cur_named; /* the named section whose header was read last; -1 none */
    char *err;
    size_t errlen;
    bool failed; /* an error message is in err */
};

static void parse_fail(struct cfg_parse *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void parse_fail(struct cfg_parse *p, const char *fmt, ...)
{
    if (p->failed)
        return;
    p->failed = true;
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    kd_seterr(p->err, p->errlen, "config: %s:%d: %s", p->name, p->lineno, msg);
}

/* ---- named sections while parsing ---- */

/* Whether NAME is 1..CFG_NAME_MAX-1 letters, digits, '_' or '-'. */
static bool named_name_ok(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n >= CFG_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = name[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '_' || ch == '-'))
            return false;
    }
    return true;
}

/* The kinds as "[view.NAME], [alert.NAME]" for messages. */
static void named_kinds_text(char *buf, size_t len)
{
    size_t used = 0;
    buf[0] = '\0';
    for (unsigned k = 0; k < CFG_NAMED_KIND_COUNT && used < len; k++) {
        int w =
            snprintf(buf + used, len - used, "%s[%s.NAME]", k ? ", " : "", cfg_named_kind_name(k));
        used += w > 0 ? (size_t)w : 0;
    }
}

/* A [KIND.NAME] header at the current line: registers the section (see config.h). */
static void named_header(struct cfg_parse *p, const char *sec)
{
    const char *dot = strchr(sec, '.');
    char kind[32];
    size_t kn = (size_t)(dot - sec);
    int k = -1;
    if (kn < sizeof(kind)) {
        memcpy(kind, sec, kn);
        kind[kn] = '\0';
        k = cfg_named_kind_find(kind);
    }
    if (k < 0) {
        char kinds[128];
        named_kinds_text(kinds, sizeof(kinds));
        parse_fail(p, "[%s]: unknown section (named sections: %s)", sec, kinds);
        return;
    }
    const char *name = dot + 1;
    if (!named_name_ok(name)) {
        parse_fail(p, "[%s]: NAME must be 1..%d letters, digits, '_' or '-'", sec,
                   CFG_NAME_MAX - 1);
        return;
    }
    struct cfg *c = &p->cfg;
    const struct cfg_named *dup = cfg_named_find(c, (unsigned)k, name);
    if (dup != NULL) {
        parse_fail(p, "[%s]: given twice (first at line %d)", sec, dup->line);
        return;
    }
    if (c->n_named >= CFG_NAMED_MAX) {
        parse_fail(p, "[%s]: more than %d named sections", sec, CFG_NAMED_MAX);
        return;
    }
    struct cfg_named *s = &c->named[c->n_named];
    memset(s, 0, sizeof(*s));
    s->kind = (uint8_t)k;
    snprintf(s->name, sizeof(s->name), "%s", name);
    s->line = p->lineno;
    s->first_key = c->n_named_keys;
    p->cur_named = c->n_named++;
}

/* Appends TEXT (with its NUL) to C's named text; returns its offset or -1 when full. */
static int named_text_add(struct cfg *c, const char *text, size_t n)
{
    if (c->named_text_used + n + 1 > CFG_NAMED_TEXT_MAX)
        return -1;
    uint32_t off = c->named_text_used;
    memcpy(c->named_text + off, text, n);
    c->named_text[off + n] = '\0';
    c->named_text_used += (uint32_t)n + 1;
    return (int)off;
}

/* Adds KEY = VALUE read at LINE to the last named section of C. Returns 0 or -EINVAL with WHY. */
static int named_key_add(struct cfg *c, const char *key, const char *value, int line, char *why,
                         size_t whylen)
{
    struct cfg_named *s = &c->named[c->n_named - 1];
    if (key[0] == '\0') {
        snprintf(why, whylen, "a line with no key name before '='");
        return -EINVAL;
    }
    size_t vn = strlen(value);
    if (vn > CFG_STR_MAX) {
        snprintf(why, whylen, "longer than %d bytes", CFG_STR_MAX);
        return -EINVAL;
    }
    for (size_t i = 0; i < vn; i++) {
        if ((unsigned char)value[i] < 0x20 || value[i] == 0x7f) {
            snprintf(why, whylen, "contains a control character");
            return -EINVAL;
        }
    }
    for (size_t i = 0; i < s->n_keys; i++) {
        const char *k;
        int kl;
        cfg_named_key(c, s, i, &k, NULL, &kl);
        if (strcmp(k, key) == 0) {
            snprintf(why, whylen, "given twice (first at line %d)", kl);
            return -EINVAL;
        }
    }
    if (c->n_named_keys >= CFG_NAMED_KEYS_MAX) {
        snprintf(why, whylen, "more than %d keys in named sections", CFG_NAMED_KEYS_MAX);
        return -EINVAL;
    }
    int ko = named_text_add(c, key, strlen(key));
    int vo = ko < 0 ? -1 : named_text_add(c, value, vn);
    if (vo < 0) {
        snprintf(why, whylen, "named sections hold more than %d bytes", CFG_NAMED_TEXT_MAX);
        return -EINVAL;
    }
    struct cfg_named_key *nk = &c->named_keys[c->n_named_keys++];
    nk->key_off = (uint16_t)ko;
    nk->value_off = (uint16_t)vo;
    nk->line = line;
    s->n_keys++;
    return 0;
}

static void long_line(struct cfg_parse *p, const char *line, size_t n);

/* inih's fgets-like reader over the buffer. See the file comment. */
static char *cfg_reader(char *str, int num, void *stream)
{
    struct cfg_parse *p = stream;
    if (p->pos >= p->len || num < 4)
        return NULL;
    const char *line = p->buf + p->pos;
    size_t avail = p->len - p->pos;
    const char *nl = memchr(line, '\n', avail);
    size_t n = nl ? (size_t)(nl - line) : avail;
    p->pos += nl ? n + 1 : n;
    p->lineno++;
    if (n > 0 && line[n - 1] == '\r')
        n--;
    if (memchr(line, '\0', n) != NULL) {
        parse_fail(p, "NUL byte in line");
        n = 0;
    }
    while (n > 0 && (*line == ' ' || *line == '\t')) {
        line++;
        n--;
    }
    if (n > CFG_LINE_MAX) {
        parse_fail(p, "line longer than %d characters", CFG_LINE_MAX);
        n = 0;
    }
    if (n > 0 && line[0] == '[') {
        const char *close = memchr(line, ']', n);
        if (close == NULL)
            parse_fail(p, "syntax error: section header without ']'");
        if (close != NULL) {
            char sec[CFG_LINE_MAX + 1];
            size_t sn = (size_t)(close - line - 1);
            memcpy(sec, line + 1, sn);
            sec[sn] = '\0';
            p->cur_named = -1;
            if (strchr(sec, '.') != NULL)
                named_header(p, sec);
            else if (!section_known(sec))
                parse_fail(p, "[%s]: unknown section", sec);
            /* As inih will name it to the handler (a long line is handled here). */
            if (sn < sizeof(p->section))
                memcpy(p->section, sec, sn + 1);
        }
    }
    if (n > 0 && line[0] != '[' && line[0] != ';' && line[0] != '#' && !memchr(line, '=', n) &&
        !memchr(line, ':', n))
        parse_fail(p, "syntax error: expected [section], key = value or a comment");
    if (n > (size_t)num - 3) {
        /* Too long for inih's buffer: handled here, inih gets an empty line. */
        if (line[0] != '[' && line[0] != ';' && line[0] != '#' && !p->failed)
            long_line(p, line, n);
        n = 0;
    }
    memcpy(str, line, n);
    str[n] = '\n';
    str[n + 1] = '\0';
    return str;
}

/*
 * Keys of earlier versions: read into their successor (value converted), or read and ignored,
 * with a line in cfg.warnings either way, so an old config keeps working and says what to
 * change.
 */
struct cfg_alias {
    const char *section, *name;
    const char *to_section, *to_name; /* NULL: no longer used */
    int convert;                      /* see alias_value() */
    const char *note;
};
enum { ALIAS_SAME, ALIAS_CENTS, ALIAS_SELL_ESTIMATE };
static const struct cfg_alias cfg_aliases[] = {
    {"filter", "buy_price", "filter", "buy_condition", ALIAS_SAME, ""},
    {"filter", "min_profit_cents", "filter", "min_profit", ALIAS_CENTS, ""},
    {"filter", "min_sell_cents", "filter", "min_sell", ALIAS_CENTS, ""},
    {"filter", "sell_estimate", "sell", "basis_used", ALIAS_SELL_ESTIMATE,
     " (the listing averages are an optimistic sell basis; docs/judgement.md)"},
    {"filter", "max_buy_pct", NULL, NULL, ALIAS_SAME,
     ": the peek now judges with the whole model (docs/judgement.md)"},
    {"filter", "min_gross_roi_pct", NULL, NULL, ALIAS_SAME,
     ": the peek now judges with the whole model (docs/judgement.md)"},
    {"costs", "prep_cents", "costs", "prep", ALIAS_CENTS, ""},
    {"costs", "inbound_shipping_cents", "costs", "inbound_shipping", ALIAS_CENTS, ""},
    {"costs", "default_fba_fee_cents", "costs", "default_fba_fee", ALIAS_CENTS, ""},
};

/* The successor's text for an old value: cents become money, an old sell estimate a basis. */
static int alias_value(const struct cfg_alias *a, const char *value, char *out, size_t len)
{
    int64_t v;
    switch (a->convert) {
    case ALIAS_CENTS:
        if (parse_i64(value, &v) != 0)
            return -EINVAL;
        format_money(v, out, len);
        return 0;
    case ALIAS_SELL_ESTIMATE:
        if (strcmp(value, "used_avg90_365") == 0)
            snprintf(out, len, "avg90_365");
        else if (strcmp(value, "used_avg90") == 0 || strcmp(value, "used_min90_365") == 0)
            snprintf(out, len, "avg90");
        else if (strcmp(value, "used_avg365") == 0)
            snprintf(out, len, "avg365");
        else
            return -EINVAL;
        return 0;
    default:
        snprintf(out, len, "%s", value);
        return 0;
    }
}

static void add_warning(struct cfg_parse *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void add_warning(struct cfg_parse *p, const char *fmt, ...)
{
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    size_t used = strlen(p->cfg.warnings);
    snprintf(p->cfg.warnings + used, sizeof(p->cfg.warnings) - used, "%s%s", used > 0 ? "\n" : "",
             line);
}

static int cfg_handler(void *user, const char *section, const char *name, const char *value);

static char *rstrip_blanks(char *s)
{
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        s[--n] = '\0';
    return s;
}

/*
 * A `name = value` line too long for inih's line buffer (N bytes at LINE, leading blanks
 * already skipped), parsed here the way inih parses one: the name ends at the first '=' or
 * ':', an inline comment starts at a ';' after a blank, and both sides are trimmed. The handler
 * sees it exactly as it sees the lines inih reads.
 */
static void long_line(struct cfg_parse *p, const char *line, size_t n)
{
    char *buf = malloc(n + 1);
    if (buf == NULL) {
        parse_fail(p, "out of memory");
        return;
    }
    memcpy(buf, line, n);
    buf[n] = '\0';
    rstrip_blanks(buf);
    char *eq = buf + strcspn(buf, "=:");
    char *semi = strstr(buf, " ;");
    char *tsemi = strstr(buf, "\t;");
    if (tsemi != NULL && (semi == NULL || tsemi < semi))
        semi = tsemi;
    if (*eq == '\0' || (semi != NULL && semi < eq)) {
        parse_fail(p, "syntax error: expected [section], key = value or a comment");
        free(buf);
        return;
    }
    *eq = '\0';
    char *value = eq + 1;
    if (semi != NULL)
        *semi = '\0';
    while (*value == ' ' || *value == '\t')
        value++;
    cfg_handler(p, p->section, rstrip_blanks(buf), rstrip_blanks(value));
    free(buf);
}

static int cfg_handler(void *user, const char *section, const char *name, const char *value)
{
    struct cfg_parse *p = user;
    if (section[0] == '\0') {
        parse_fail(p, "%s: key outside a [section]", name);
        return 0;
    }
    char converted[64];
    for (size_t i = 0; i < KD_ARRAY_LEN(cfg_aliases); i++) {
        const struct cfg_alias *a = &cfg_aliases[i];
        if (strcmp(a->section, section) != 0 || strcmp(a->name, name) != 0)
            continue;
        if (a->to_name == NULL) {
            add_warning(p, "config: %s:%d: [%s] %s is no longer used%s; remove it", p->name,
                        p->lineno, section, name, a->note);
            return 1;
        }
        if (alias_value(a, value, converted, sizeof(converted)) != 0) {
            parse_fail(p, "[%s] %s = %.*s: not a value this old key took; use [%s] %s", section,
                       name, CFG_ERR_VALUE_MAX, value, a->to_section, a->to_name);
            return 0;
        }
        add_warning(p, "config: %s:%d: [%s] %s is deprecated: read as [%s] %s = %s%s", p->name,
                    p->lineno, section, name, a->to_section, a->to_name, converted, a->note);
        section = a->to_section;
        name = a->to_name;
        value = converted;
        break;
    }
    if (strchr(section, '.') != NULL) {
        if (p->cur_named < 0)
            return 0; /* its header was reported by the reader */
        char why[160], unquoted[CFG_LINE_MAX + 1];
        size_t vn = strlen(value);
        if (vn >= 2 && vn - 2 < sizeof(unquoted) && value[0] == '"' && value[vn - 1] == '"') {
            memcpy(unquoted, value + 1, vn - 2);
            unquoted[vn - 2] = '\0';
            value = unquoted;
        }
        if (named_key_add(&p->cfg, name, value, p->lineno, why, sizeof(why)) != 0) {
            parse_fail(p, "[%s] %s = %.*s: %s", section, name, CFG_ERR_VALUE_MAX, value, why);
            return 0;
        }
        return 1;
    }
    if (!section_known(section))
        return 0; /* reported by the reader at the section line */
    const struct cfg_key *k = cfg_key_find(section, name);
    if (k == NULL) {
        parse_fail(p, "[%s] %s: unknown key", section, name);
        return 0;
    }
    size_t id = (size_t)(k - cfg_key_table);
    if (p->key_line[id] != 0) {
        parse_fail(p, "[%s] %s: given twice (first at line %d)", section, name, p->key_line[id]);
        return 0;
    }
    p->key_line[id] = p->lineno;
    char why[160];
    if (parse_value(k, value, &p->cfg, why, sizeof(why)) != 0 ||
        check_value(k, &p->cfg, why, sizeof(why)) != 0) {
        if (!p->failed) {
            key_err(p->err, p->errlen, p->name, p->lineno, k, value, why);
            p->failed = true;
        }
        return 0;
    }
    return 1;
}

/* Parses into P->cfg (already holding the defaults). Returns 0 or a negative errno. */
static int parse_buffer(struct cfg_parse *p)
{
    if (memchr(p->buf, '\0', p->len) != NULL) {
        /* Find the line for the message. */
        const char *z = memchr(p->buf, '\0', p->len);
        int line = 1;
        for (const char *q = p->buf; q < z; q++)
            line += *q == '\n';
        kd_seterr(p->err, p->errlen, "config: %s:%d: NUL byte in line", p->name, line);
        return -EINVAL;
    }
    int rc = ini_parse_stream(cfg_reader, p, cfg_handler, p);
    if (p->failed)
        return -EINVAL;
    if (rc == -2) {
        kd_seterr(p->err, p->errlen, "config: %s: out of memory", p->name);
        return -ENOMEM;
    }
    if (rc != 0) {
        kd_seterr(p->err, p->errlen,
                  "config: %s:%d: syntax error: expected [section], key = value or a comment",
                  p->name, rc);
        return -EINVAL;
    }
    p->cfg.keepa_key_set = p->cfg.keepa_key[0] != '\0' || p->cfg.keepa_key_file[0] != '\0';
    return 0;
}

int cfg_load_buffer(const char *buf, size_t len, const char *name, struct cfg *out, char *err,
                    size_t errlen)
{
    struct cfg_parse *p = calloc(1, sizeof(*p));
    if (p == NULL) {
        kd_seterr(err, errlen, "config: %s: out of memory", name);
        return -ENOMEM;
    }
    p->buf = buf;
    p->len = len;
    p->name = name;
    p->err = err;
    p->errlen = errlen;
    p->cur_named = -1;
    cfg_defaults(&p->cfg);
    snprintf(p->cfg.source_path, sizeof(p->cfg.source_path), "%s", name);
    int rc = parse_buffer(p);
    if (rc == 0)
        rc = validate_all(&p->cfg, p->key_line, name, err, errlen);
    if (rc == 0)
        *out = p->cfg;
    free(p);
    return rc;
}

int cfg_load_file(const char *path, struct cfg *out, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        int e = errno;
        kd_seterr(err, errlen, "config: %s: %s", path, strerror(e));
        return -e;
    }
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    int rc = 0;
    while (buf != NULL) {
        len += fread(buf + len, 1, cap - len, f);
        if (len < cap)
            break;
        if (cap >= (1u << 24)) {
            kd_seterr(err, errlen, "config: %s: larger than %u bytes", path, 1u << 24);
            rc = -EFBIG;
            break;
        }
        cap *= 2;
        char *nb = realloc(buf, cap);
        if (nb == NULL)
            free(buf);
        buf = nb;
    }
    if (rc == 0 && ferror(f)) {
        int e = errno ? errno : EIO;
        kd_seterr(err, errlen, "config: %s: %s", path, strerror(e));
        rc = -e;
    }
    fclose(f);
    if (buf == NULL && rc == 0) {
        kd_seterr(err, errlen, "config: %s: out of memory", path);
        rc = -ENOMEM;
    }
    if (rc != 0) {
        free(buf);
        return rc;
    }

    struct cfg_parse *p = calloc(1, sizeof(*p));
    if (p == NULL) {
        free(buf);
        kd_seterr(err, errlen, "config: %s: out of memory", path);
        return -ENOMEM;
    }
    p->buf = buf;
    p->len = len;
    p->name = path;
    p->err = err;
    p->errlen = errlen;
    p->cur_named = -1;
    cfg_defaults(&p->cfg);
    rc = parse_buffer(p);

    /* The absolute path of the file, and of relative paths given in it. */
    char *abs = rc == 0 ? realpath(path, NULL) : NULL;
    if (rc == 0 && abs == NULL) {
        rc = -errno;
        kd_seterr(err, errlen, "config: %s: %s", path, strerror(errno));
    }
    if (rc == 0 && strlen(abs) > CFG_STR_MAX) {
        rc = -ENAMETOOLONG;
        kd_seterr(err, errlen, "config: %s: path longer than %d bytes", path, CFG_STR_MAX);
    }
    if (rc == 0) {
        snprintf(p->cfg.source_path, sizeof(p->cfg.source_path), "%s", abs);
        size_t dirlen = (size_t)(strrchr(abs, '/') - abs);
        for (size_t i = 0; i < CFG_KEY_COUNT && rc == 0; i++) {
            const struct cfg_key *k = &cfg_key_table[i];
            char *v = field_str(&p->cfg, k);
            if (k->type != CFG_T_PATH || v[0] == '\0' || v[0] == '/')
                continue;
            char joined[2 * CFG_STR_MAX + 2];
            snprintf(joined, sizeof(joined), "%.*s/%s", (int)dirlen, abs, v);
            if (strlen(joined) > CFG_STR_MAX) {
                key_err(err, errlen, path, p->key_line[i], k, v,
                        "longer than the path limit once made absolute");
                rc = -EINVAL;
            } else {
                memcpy(v, joined, strlen(joined) + 1);
            }
        }
    }
    free(abs);
    if (rc == 0)
        rc = validate_all(&p->cfg, p->key_line, path, err, errlen);
    /* A key others can read is leaked already: refused as a key file of that mode is. */
    struct stat st;
    if (rc == 0 && p->cfg.keepa_key[0] != '\0' && stat(path, &st) == 0 && (st.st_mode & 077)) {
        kd_seterr(err, errlen,
                  "config: %s:%d: [keepa] key: the file holds the Keepa API key and has mode %04o, "
                  "open to others: chmod 600 %s (and get a new key if others could read it), or "
                  "move the key to [keepa] key_file",
                  path, p->key_line[CFG_K_keepa_key], (unsigned)(st.st_mode & 07777), path);
        rc = -EACCES;
    }
    if (rc == 0)
        *out = p->cfg;
    free(p);
    free(buf);
    return rc;
}

/* ---- printing -------------------------------------------------------------------------- */

/* Writes V so that inih reads it back unchanged. */
static void print_str(FILE *out, const char *v)
{
    size_t n = strlen(v);
    bool quote = n > 0 && (v[0] == ' ' || v[0] == '"' || v[n - 1] == ' ' || strchr(v, ';'));
    fprintf(out, quote ? "\"%s\"" : "%s", v);
}

void cfg_print(const struct cfg *c, FILE *out)
{
    const char *section = "";
    char val[CFG_STR_MAX + 16];
    for (size_t i = 0; i < CFG_KEY_COUNT; i++) {
        const struct cfg_key *k = &cfg_key_table[i];
        if (strcmp(section, k->section) != 0) {
            fprintf(out, "%s[%s]\n", i ? "\n" : "", k->section);
            section = k->section;
        }
        cfg_format_value(c, k, val, sizeof(val));
        /* A set secret is shown as a comment, so this output used as a config file cannot
         * make "<redacted>" the key. */
        if (k->type == CFG_T_SECRET && val[0] != '\0')
            fputs("# ", out);
        fprintf(out, "%s =%s", k->name, val[0] ? " " : "");
        if (is_string_type(k->type) && k->type != CFG_T_SECRET)
            print_str(out, val);
        else
            fputs(val, out);
        fputc('\n', out);
    }
    for (size_t i = 0; i < c->n_named; i++) {
        const struct cfg_named *s = &c->named[i];
        fprintf(out, "\n[%s.%s]\n", cfg_named_kind_name(s->kind), s->name);
        for (size_t j = 0; j < s->n_keys; j++) {
            const char *key, *value;
            cfg_named_key(c, s, j, &key, &value, NULL);
            fprintf(out, "%s = ", key);
            print_str(out, value);
            fputc('\n', out);
        }
    }
}

void cfg_write_sample(FILE *out)
{
    fputs("# kdeals configuration (INI). Generated from CFG_KEYS in base/config.h by\n"
          "# cfg_write_sample(); every key is shown commented out with its default.\n"
          "# Durations take a unit (500ms, 30s, 15m, 6h, 2d); percentages allow 2 decimals.\n"
          "# Relative paths are relative to the folder holding this file.\n"
          "# \"reload\" keys take effect on `kdeals reload`; \"restart\" keys need a restart.\n",
          out);
    const char *section = "";
    char lo[32], hi[32];
    for (size_t i = 0; i < CFG_KEY_COUNT; i++) {
        const struct cfg_key *k = &cfg_key_table[i];
        if (strcmp(section, k->section) != 0) {
            fprintf(out, "\n[%s]\n", k->section);
            section = k->section;
        }
        fprintf(out, "\n# %s.\n# ", k->help);
        format_bound(k, k->min, lo, sizeof(lo));
        format_bound(k, k->max, hi, sizeof(hi));
        switch (k->type) {
        case CFG_T_ENUM:
            fprintf(out, "one of %s", k->choices);
            break;
        case CFG_T_BOOL:
            fprintf(out, "true or false");
            break;
        case CFG_T_STR:
        case CFG_T_PATH:
        case CFG_T_SECRET:
            fprintf(out, "%s, %s..%s bytes", k->type == CFG_T_PATH ? "path" : "text", lo, hi);
            break;
        case CFG_T_LIST:
            fprintf(out, "comma-separated, in order, from %s", k->choices);
            break;
        case CFG_T_IDS:
            fprintf(out, "comma-separated category ids (empty = none)");
            break;
        case CFG_T_MONEY:
            fprintf(out, "money %s..%s", lo, hi);
            break;
        case CFG_T_DURATION:
            fprintf(out, "duration %s..%s", lo, hi);
            break;
        case CFG_T_PCT:
            fprintf(out, "percent %s..%s", lo, hi);
            break;
        case CFG_T_INT:
        case CFG_T_DOMAIN:
            fprintf(out, "%s..%s", lo, hi);
            break;
        }
        fprintf(out, "; %s\n# %s =%s%s\n", k->reloadable ? "reload" : "restart", k->name,
                k->default_text[0] ? " " : "", k->default_text);
    }
    fputs("\n# Named sections, as many as you like, each [KIND.NAME] with NAME made of letters,\n"
          "# digits, '_' and '-'. Reload.\n",
          out);
    for (unsigned k = 0; k < CFG_NAMED_KIND_COUNT; k++) {
        fprintf(out, "\n# [%s.NAME]: %s. For example:\n", cfg_named_kind_words[k],
                cfg_named_kind_help[k]);
        for (const char *l = cfg_named_kind_example[k]; *l != '\0';) {
            const char *nl = strchr(l, '\n');
            int n = nl != NULL ? (int)(nl - l) : (int)strlen(l);
            fprintf(out, "# %.*s\n", n, l);
            l += n + (nl != NULL);
        }
    }
}

/* ---- diff ------------------------------------------------------------------------------ */

static bool key_equal(const struct cfg *a, const struct cfg *b, const struct cfg_key *k)
{
    switch (k->type) {
    case CFG_T_BOOL:
        return *(const bool *)((const char *)a + k->offset) ==
               *(const bool *)((const char *)b + k->offset);
    case CFG_T_ENUM:
        return *(const int *)(const void *)((const char *)a + k->offset) ==
               *(const int *)(const void *)((const char *)b + k->offset);
    case CFG_T_STR:
    case CFG_T_PATH:
    case CFG_T_SECRET:
    case CFG_T_LIST:
    case CFG_T_IDS:
        return strcmp(field_strc(a, k), field_strc(b, k)) == 0;
    default:
        return *field_i64c(a, k) == *field_i64c(b, k);
    }
}

/* Whether the named sections of KIND are the same in A and B (names, keys, values, order). */
static bool named_equal(const struct cfg *a, const struct cfg *b, unsigned kind)
{
    size_t ia = 0, ib = 0;
    for (;;) {
        while (ia < a->n_named && a->named[ia].kind != kind)
            ia++;
        while (ib < b->n_named && b->named[ib].kind != kind)
            ib++;
        if (ia == a->n_named || ib == b->n_named)
            return ia == a->n_named && ib == b->n_named;
        const struct cfg_named *sa = &a->named[ia++], *sb = &b->named[ib++];
        if (strcmp(sa->name, sb->name) != 0 || sa->n_keys != sb->n_keys)
            return false;
        for (size_t j = 0; j < sa->n_keys; j++) {
            const char *ka, *va, *kb, *vb;
            cfg_named_key(a, sa, j, &ka, &va, NULL);
            cfg_named_key(b, sb, j, &kb, &vb, NULL);
            if (strcmp(ka, kb) != 0 || strcmp(va, vb) != 0)
                return false;
        }
    }
}

/* The key cfg_diff reports for a change in the named sections of a kind. */
static const struct cfg_key cfg_named_diff_keys[CFG_NAMED_KIND_COUNT] = {
#define CFG_X_KIND_KEY(kind, kind_help, example)                                                   \
    {.section = #kind ".*",                                                                        \
     .name = "*",                                                                                  \
     .type = CFG_T_STR,                                                                            \
     .default_text = "",                                                                           \
     .reloadable = true,                                                                           \
     .help = kind_help},
    CFG_NAMED_KINDS(CFG_X_KIND_KEY)
#undef CFG_X_KIND_KEY
};

size_t cfg_diff(const struct cfg *a, const struct cfg *b,
                void (*changed)(const struct cfg_key *key, void *ud), void *ud,
                bool *restart_needed)
{
    size_t n = 0;
    bool restart = false;
    for (size_t i = 0; i < CFG_KEY_COUNT; i++) {
        const struct cfg_key *k = &cfg_key_table[i];
        if (key_equal(a, b, k))
            continue;
        n++;
        restart |= !k->reloadable;
        if (changed != NULL)
            changed(k, ud);
    }
    for (unsigned k = 0; k < CFG_NAMED_KIND_COUNT; k++) {
        if (named_equal(a, b, k))
            continue;
        n++;
        if (changed != NULL)
            changed(&cfg_named_diff_keys[k], ud);
    }
    if (restart_needed != NULL)
        *restart_needed = restart;
    return n;
}

/* ---- msgpack --------------------------------------------------------------------------- */

static int pack_str(msgpack_packer *pk, const char *s)
{
    size_t n = strlen(s);
    if (msgpack_pack_str(pk, n) != 0)
        return -1;
    return msgpack_pack_str_body(pk, s, n);
}

int cfg_encode(const struct cfg *c, char **buf, size_t *len)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    size_t entries = 4; /* v, keepa.key_set, source_path, named */
    for (size_t i = 0; i < CFG_KEY_COUNT; i++)
        entries += cfg_key_table[i].type != CFG_T_SECRET;
    int bad = msgpack_pack_map(&pk, entries);
    bad |= pack_str(&pk, "v");
    bad |= msgpack_pack_int64(&pk, CFG_ENCODING_VERSION);
    char name[64], val[64];
    for (size_t i = 0; i < CFG_KEY_COUNT; i++) {
        const struct cfg_key *k = &cfg_key_table[i];
        if (k->type == CFG_T_SECRET)
            continue; /* the key never leaves the process that read it */
        snprintf(name, sizeof(name), "%s.%s", k->section, k->name);
        bad |= pack_str(&pk, name);
        switch (k->type) {
        case CFG_T_BOOL:
            bad |= *(const bool *)((const char *)c + k->offset) ? msgpack_pack_true(&pk)
                                                                : msgpack_pack_false(&pk);
            break;
        case CFG_T_ENUM:
            cfg_format_value(c, k, val, sizeof(val));
            bad |= pack_str(&pk, val);
            break;
        case CFG_T_STR:
        case CFG_T_PATH:
        case CFG_T_LIST:
        case CFG_T_IDS:
            bad |= pack_str(&pk, field_strc(c, k));
            break;
        default:
            bad |= msgpack_pack_int64(&pk, *field_i64c(c, k));
            break;
        }
    }
    bad |= pack_str(&pk, "keepa.key_set");
    bad |= c->keepa_key_set ? msgpack_pack_true(&pk) : msgpack_pack_false(&pk);
    bad |= pack_str(&pk, "source_path");
    bad |= pack_str(&pk, c->source_path);
    bad |= pack_str(&pk, "named");
    bad |= msgpack_pack_array(&pk, c->n_named);
    for (size_t i = 0; i < c->n_named; i++) {
        const struct cfg_named *s = &c->named[i];
        bad |= msgpack_pack_array(&pk, 4);
        bad |= pack_str(&pk, cfg_named_kind_name(s->kind));
        bad |= pack_str(&pk, s->name);
        bad |= msgpack_pack_int64(&pk, s->line);
        bad |= msgpack_pack_array(&pk, s->n_keys);
        for (size_t j = 0; j < s->n_keys; j++) {
            const char *key, *value;
            int line;
            cfg_named_key(c, s, j, &key, &value, &line);
            bad |= msgpack_pack_array(&pk, 3);
            bad |= pack_str(&pk, key);
            bad |= pack_str(&pk, value);
            bad |= msgpack_pack_int64(&pk, line);
        }
    }
    if (bad != 0 || sb.data == NULL) {
        msgpack_sbuffer_destroy(&sb);
        return -ENOMEM;
    }
    *buf = sb.data;
    *len = sb.size;
    return 0;
}

static bool obj_str_eq(const msgpack_object *o, const char *s)
{
    size_t n = strlen(s);
    return o->type == MSGPACK_OBJECT_STR && o->via.str.size == n &&
           memcmp(o->via.str.ptr, s, n) == 0;
}

static int obj_i64(const msgpack_object *o, int64_t *v)
{
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER && o->via.u64 <= INT64_MAX) {
        *v = (int64_t)o->via.u64;
        return 0;
    }
    if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
        *v = o->via.i64;
        return 0;
    }
    return -EBADMSG;
}

static int obj_str(const msgpack_object *o, char *dst, size_t dstsz)
{
    if (o->type != MSGPACK_OBJECT_STR || o->via.str.size >= dstsz ||
        memchr(o->via.str.ptr, '\0', o->via.str.size) != NULL)
        return -EBADMSG;
    memcpy(dst, o->via.str.ptr, o->via.str.size);
    dst[o->via.str.size] = '\0';
    return 0;
}

/* Sets key K of C from O. Returns 0 or -EBADMSG. */
static int decode_key(const struct cfg_key *k, const msgpack_object *o, struct cfg *c)
{
    int64_t v = 0;
    char word[64];
    switch (k->type) {
    case CFG_T_BOOL:
        if (o->type != MSGPACK_OBJECT_BOOLEAN)
            return -EBADMSG;
        *(bool *)((char *)c + k->offset) = o->via.boolean;
        return 0;
    case CFG_T_ENUM: {
        if (obj_str(o, word, sizeof(word)) != 0)
            return -EBADMSG;
        int idx = choice_index(k->choices, word);
        if (idx < 0)
            return -EBADMSG;
        *(int *)(void *)((char *)c + k->offset) = idx;
        return 0;
    }
    case CFG_T_STR:
    case CFG_T_PATH:
    case CFG_T_LIST:
    case CFG_T_IDS:
        return obj_str(o, field_str(c, k), CFG_STR_MAX + 1);
    case CFG_T_SECRET:
        return -EBADMSG; /* must never be encoded */
    default:
        if (obj_i64(o, &v) != 0)
            return -EBADMSG;
        *field_i64(c, k) = v;
        return 0;
    }
}

/* The "named" array of cfg_encode into C (C's named sections empty). Returns 0 or -EBADMSG. */
static int decode_named(const msgpack_object *o, struct cfg *c)
{
    if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size > CFG_NAMED_MAX)
        return -EBADMSG;
    for (uint32_t i = 0; i < o->via.array.size; i++) {
        const msgpack_object *e = &o->via.array.ptr[i];
        if (e->type != MSGPACK_OBJECT_ARRAY || e->via.array.size != 4)
            return -EBADMSG;
        const msgpack_object *f = e->via.array.ptr;
        char kind[32], name[CFG_NAME_MAX];
        int64_t line;
        if (obj_str(&f[0], kind, sizeof(kind)) != 0 || obj_str(&f[1], name, sizeof(name)) != 0 ||
            obj_i64(&f[2], &line) != 0 || line < 0 || line > INT32_MAX ||
            f[3].type != MSGPACK_OBJECT_ARRAY)
            return -EBADMSG;
        int k = cfg_named_kind_find(kind);
        if (k < 0 || !named_name_ok(name) || cfg_named_find(c, (unsigned)k, name) != NULL)
            return -EBADMSG;
        struct cfg_named *s = &c->named[c->n_named++];
        memset(s, 0, sizeof(*s));
        s->kind = (uint8_t)k;
        memcpy(s->name, name, sizeof(name));
        s->line = (int32_t)line;
        s->first_key = c->n_named_keys;
        for (uint32_t j = 0; j < f[3].via.array.size; j++) {
            const msgpack_object *kv = &f[3].via.array.ptr[j];
            char key[CFG_STR_MAX + 1], value[CFG_STR_MAX + 1], why[160];
            int64_t kl;
            if (kv->type != MSGPACK_OBJECT_ARRAY || kv->via.array.size != 3 ||
                obj_str(&kv->via.array.ptr[0], key, sizeof(key)) != 0 || key[0] == '\0' ||
                obj_str(&kv->via.array.ptr[1], value, sizeof(value)) != 0 ||
                obj_i64(&kv->via.array.ptr[2], &kl) != 0 || kl < 0 || kl > INT32_MAX ||
                named_key_add(c, key, value, (int)kl, why, sizeof(why)) != 0)
                return -EBADMSG;
        }
    }
    return 0;
}

int cfg_decode(const void *buf, size_t len, struct cfg *out)
{
    if (buf == NULL || kd_msgpack_precheck(buf, len) != 0)
        return -EBADMSG;
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    int rc = -EBADMSG;
    struct cfg *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        msgpack_unpacked_destroy(&u);
        return -ENOMEM;
    }
    msgpack_unpack_return ur = msgpack_unpack_next(&u, buf, len, &off);
    if (ur == MSGPACK_UNPACK_NOMEM_ERROR)
        rc = -ENOMEM;
    if (ur != MSGPACK_UNPACK_SUCCESS || off != len || u.data.type != MSGPACK_OBJECT_MAP)
        goto out;

    bool seen[CFG_KEY_COUNT] = {false};
    bool seen_v = false, seen_set = false, seen_src = false, seen_named = false;
    const msgpack_object_map *m = &u.data.via.map;
    for (uint32_t i = 0; i < m->size; i++) {
        const msgpack_object *key = &m->ptr[i].key, *val = &m->ptr[i].val;
        if (key->type != MSGPACK_OBJECT_STR)
            goto out;
        int64_t v = 0;
        if (obj_str_eq(key, "v")) {
            if (seen_v || obj_i64(val, &v) != 0 || v != CFG_ENCODING_VERSION)
                goto out;
            seen_v = true;
            continue;
        }
        if (obj_str_eq(key, "keepa.key_set")) {
            if (seen_set || val->type != MSGPACK_OBJECT_BOOLEAN)
                goto out;
            c->keepa_key_set = val->via.boolean;
            seen_set = true;
            continue;
        }
        if (obj_str_eq(key, "source_path")) {
            if (seen_src || obj_str(val, c->source_path, sizeof(c->source_path)) != 0)
                goto out;
            seen_src = true;
            continue;
        }
        if (obj_str_eq(key, "named")) {
            if (seen_named || decode_named(val, c) != 0)
                goto out;
            seen_named = true;
            continue;
        }
        char name[96];
        if (obj_str(key, name, sizeof(name)) != 0)
            goto out;
        char *dot = strchr(name, '.');
        if (dot == NULL)
            goto out;
        *dot = '\0';
        const struct cfg_key *k = cfg_key_find(name, dot + 1);
        if (k == NULL || k->type == CFG_T_SECRET)
            goto out;
        size_t id = (size_t)(k - cfg_key_table);
        if (seen[id] || decode_key(k, val, c) != 0)
            goto out;
        seen[id] = true;
    }
    if (!seen_v || !seen_set || !seen_src || !seen_named)
        goto out;
    for (size_t i = 0; i < CFG_KEY_COUNT; i++) {
        if (!seen[i] && cfg_key_table[i].type != CFG_T_SECRET)
            goto out;
    }
    if (validate_all(c, NULL, "(shm)", NULL, 0) != 0)
        goto out;
    *out = *c;
    rc = 0;
out:
    free(c);
    msgpack_unpacked_destroy(&u);
    return rc;
}

int64_t cfg_keepa_ms(const struct cfg *c, int64_t keepa_ms)
{
    int64_t minute_ms = c->tokens_minute_ms > 0 ? c->tokens_minute_ms : CFG_MS_MIN;
    __int128 v = (__int128)keepa_ms * minute_ms / CFG_MS_MIN;
    if (v < 1)
        return 1;
    if (v > INT64_MAX / 4)
        return INT64_MAX / 4;
    return (int64_t)v;
}
