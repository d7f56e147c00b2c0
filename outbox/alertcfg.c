/*
 * alertcfg.c: [alert.NAME] sections read and checked. See alertcfg.h.
 */
#include "outbox/alertcfg.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "view/preset.h"

#define MS_S   ((int64_t)1000)
#define MS_MIN (60 * MS_S)
#define MS_H   (60 * MS_MIN)
#define MS_D   (24 * MS_H)

static const char *const format_names[] = {"json", "slack", "discord", "teams"};

const char *ob_format_name(enum ob_format f)
{
    return (unsigned)f < 4 ? format_names[f] : "?";
}

/* "250ms", "30s", "15m", "6h", "2d" (a whole number and a unit). */
static int parse_duration(const char *s, int64_t min, int64_t max, int64_t *out)
{
    char *end;
    errno = 0;
    long long n = strtoll(s, &end, 10);
    if (end == s || errno != 0 || n < 0)
        return -EINVAL;
    int64_t unit = strcmp(end, "ms") == 0  ? 1
                   : strcmp(end, "s") == 0 ? MS_S
                   : strcmp(end, "m") == 0 ? MS_MIN
                   : strcmp(end, "h") == 0 ? MS_H
                   : strcmp(end, "d") == 0 ? MS_D
                                           : 0;
    if (unit == 0 || n > INT64_MAX / unit || n * unit < min || n * unit > max)
        return -EINVAL;
    *out = n * unit;
    return 0;
}

static int parse_int(const char *s, int64_t min, int64_t max, int64_t *out)
{
    char *end;
    errno = 0;
    long long n = strtoll(s, &end, 10);
    if (end == s || *end != '\0' || errno != 0 || n < min || n > max)
        return -EINVAL;
    *out = n;
    return 0;
}

/* The secret file's path: absolute, or relative to the config file's folder. */
static void resolve(const struct cfg *c, const char *v, char *out, size_t len)
{
    const char *slash = strrchr(c->source_path, '/');
    if (v[0] != '/' && slash != NULL)
        snprintf(out, len, "%.*s/%s", (int)(slash - c->source_path), c->source_path, v);
    else
        snprintf(out, len, "%s", v);
}

/* A secret file must be a regular file only its owner may read or write. */
static int check_secret_file(const char *path, char *why, size_t whylen)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        snprintf(why, whylen, "%s: %s", path, strerror(errno));
        return -EINVAL;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(why, whylen, "%s is not a regular file", path);
        return -EINVAL;
    }
    if ((st.st_mode & 077) != 0) {
        snprintf(why, whylen, "%s may be read by others (mode %03o): chmod 600 %s", path,
                 (unsigned)(st.st_mode & 0777), path);
        return -EPERM;
    }
    return 0;
}

/* One alert key into A. Returns 0, -ENOENT (not an alert key), or -EINVAL with WHY. */
static int alert_key(const struct cfg *c, struct ob_alert *a, const char *key, const char *value,
                     char *why, size_t whylen)
{
    if (strcmp(key, "view") == 0) {
        if (cfg_named_find(c, CFG_NAMED_view, value) == NULL) {
            snprintf(why, whylen, "the config has no [view.%s] section", value);
            return -EINVAL;
        }
        return 0; /* applied first, by ob_alert_parse */
    }
    if (strcmp(key, "url") == 0) {
        if (strncmp(value, "http://", 7) != 0 && strncmp(value, "https://", 8) != 0) {
            snprintf(why, whylen, "an http:// or https:// URL");
            return -EINVAL;
        }
        snprintf(a->url, sizeof(a->url), "%s", value);
        return 0;
    }
    if (strcmp(key, "command") == 0) {
        if (value[0] == '\0') {
            snprintf(why, whylen, "a command line, run by /bin/sh -c");
            return -EINVAL;
        }
        snprintf(a->command, sizeof(a->command), "%s", value);
        return 0;
    }
    if (strcmp(key, "format") == 0) {
        for (int i = 0; i < 4; i++) {
            if (strcmp(value, format_names[i]) == 0) {
                a->format = (enum ob_format)i;
                return 0;
            }
        }
        snprintf(why, whylen, "json, slack, discord or teams");
        return -EINVAL;
    }
    if (strcmp(key, "secret_file") == 0) {
        resolve(c, value, a->secret_file, sizeof(a->secret_file));
        return check_secret_file(a->secret_file, why, whylen) == 0 ? 0 : -EINVAL;
    }
    if (strcmp(key, "auth") == 0) {
        if (strcmp(value, "hmac") == 0)
            a->auth = OB_AUTH_HMAC;
        else if (strcmp(value, "bearer") == 0)
            a->auth = OB_AUTH_BEARER;
        else {
            snprintf(why, whylen,
                     "hmac (an X-Kdeals-Signature header) or bearer (an "
                     "Authorization header)");
            return -EINVAL;
        }
        return 0;
    }
    if (strcmp(key, "on_unknown") == 0) {
        if (strcmp(value, "resend") == 0)
            a->resend_unknown = true;
        else if (strcmp(value, "drop") == 0)
            a->resend_unknown = false;
        else {
            snprintf(why, whylen,
                     "resend (at least once: the receiver deduplicates by the "
                     "delivery id) or drop (at most once)");
            return -EINVAL;
        }
        return 0;
    }
    struct {
        const char *name;
        bool duration;
        int64_t min, max, *dst;
        const char *words;
    } nums[] = {
        {"quiet", true, 0, 365 * MS_D, &a->quiet_ms, "a duration 0s..365d, e.g. 6h"},
        {"rate", false, 1, 6000, &a->rate_per_min, "deliveries a minute, 1..6000"},
        {"burst", false, 1, 1000, &a->burst, "deliveries at once, 1..1000"},
        {"timeout", true, 1 * MS_S, 5 * MS_MIN, &a->timeout_ms, "a duration 1s..5m"},
        {"retry_max", true, 2 * MS_S, 7 * MS_D, &a->retry_max_ms, "a duration 2s..7d"},
        {"attempts", false, 1, 1000, &a->attempts, "attempts before a dead letter, 1..1000"},
        {"keep", true, 1 * MS_H, 3650 * MS_D, &a->keep_ms, "a duration 1h..3650d"},
    };
    for (size_t i = 0; i < sizeof(nums) / sizeof(nums[0]); i++) {
        if (strcmp(key, nums[i].name) != 0)
            continue;
        int rc = nums[i].duration ? parse_duration(value, nums[i].min, nums[i].max, nums[i].dst)
                                  : parse_int(value, nums[i].min, nums[i].max, nums[i].dst);
        if (rc != 0) {
            snprintf(why, whylen, "%s", nums[i].words);
            return -EINVAL;
        }
        return 0;
    }
    return -ENOENT;
}

static void defaults(struct ob_alert *a, const struct cfg *c, const char *name)
{
    memset(a, 0, sizeof(*a));
    snprintf(a->name, sizeof(a->name), "%s", name);
    vw_filter_init(&a->filter, (unsigned)c->keepa_domain);
    a->format = OB_FMT_JSON;
    a->quiet_ms = 24 * MS_H;
    a->rate_per_min = 20;
    a->burst = 5;
    a->timeout_ms = 10 * MS_S;
    a->retry_max_ms = 1 * MS_H;
    a->attempts = 12;
    a->resend_unknown = true;
    a->keep_ms = 7 * MS_D;
}

/* Keys of the view that make no sense for an alert. */
static bool view_key_refused(const char *key)
{
    return strcmp(key, "sort") == 0 || strcmp(key, "limit") == 0 || strcmp(key, "offset") == 0;
}

/* One key of the section into A (view keys into A->filter). */
static int one_key(const struct cfg *c, struct ob_alert *a, const char *key, const char *value,
                   char *why, size_t whylen)
{
    int rc = alert_key(c, a, key, value, why, whylen);
    if (rc != -ENOENT)
        return rc;
    if (view_key_refused(key)) {
        snprintf(why, whylen,
                 "an alert fires for each deal entering its view: %s does not "
                 "apply",
                 key);
        return -EINVAL;
    }
    if (vw_filter_arity(key) < 0 || strchr(key, '-') != NULL) {
        snprintf(why, whylen,
                 "(known: view, url, command, format, secret_file, auth, quiet, rate, burst, "
                 "timeout, retry_max, attempts, on_unknown, keep, and the view's keys: "
                 "docs/view.md)");
        return -ENOENT;
    }
    return vw_filter_parse_value(&a->filter, key, value, why, whylen);
}

/* What must hold for the section as a whole, checked with its first key. */
static int section_rules(const struct cfg *c, const char *name, char *why, size_t whylen)
{
    const struct cfg_named *s = cfg_named_find(c, CFG_NAMED_alert, name);
    bool url = false, command = false, secret = false, auth = false, format = false;
    for (size_t i = 0; s != NULL && i < s->n_keys; i++) {
        const char *k;
        cfg_named_key(c, s, i, &k, NULL, NULL);
        url |= strcmp(k, "url") == 0;
        command |= strcmp(k, "command") == 0;
        secret |= strcmp(k, "secret_file") == 0;
        auth |= strcmp(k, "auth") == 0;
        format |= strcmp(k, "format") == 0;
    }
    if (url == command) {
        snprintf(why, whylen, "an alert needs one target: url = ... or command = ...");
        return -EINVAL;
    }
    if (auth && !secret) {
        snprintf(why, whylen, "auth needs secret_file");
        return -EINVAL;
    }
    if (command && (secret || auth)) {
        snprintf(why, whylen, "a command target takes no secret_file or auth");
        return -EINVAL;
    }
    (void)format;
    return 0;
}

static int check_key(const struct cfg *c, const char *name, const char *key, const char *value,
                     char *why, size_t whylen)
{
    static __thread struct ob_alert a;
    defaults(&a, c, name);
    int rc = one_key(c, &a, key, value, why, whylen);
    if (rc != 0)
        return rc;
    const struct cfg_named *s = cfg_named_find(c, CFG_NAMED_alert, name);
    const char *first = NULL;
    if (s != NULL && s->n_keys > 0)
        cfg_named_key(c, s, 0, &first, NULL, NULL);
    if (first != NULL && strcmp(first, key) == 0)
        return section_rules(c, name, why, whylen);
    return 0;
}

const struct cfg_named_checker ob_alert_checker = {.kind = CFG_NAMED_alert, .check_key = check_key};

int ob_alert_parse(const struct cfg *c, const char *name, struct ob_alert *out, char *err,
                   size_t errlen)
{
    const struct cfg_named *s = cfg_named_find(c, CFG_NAMED_alert, name);
    if (s == NULL) {
        snprintf(err, errlen, "the config has no [alert.%s]", name);
        return -ENOENT;
    }
    static __thread struct ob_alert a;
    defaults(&a, c, name);
    char why[512];
    for (size_t i = 0; i < s->n_keys; i++) {
        const char *k, *v;
        cfg_named_key(c, s, i, &k, &v, NULL);
        if (strcmp(k, "view") == 0 && vw_preset_apply(c, v, &a.filter, err, errlen) != 0)
            return -EINVAL;
    }
    for (size_t i = 0; i < s->n_keys; i++) {
        const char *k, *v;
        int line;
        cfg_named_key(c, s, i, &k, &v, &line);
        if (one_key(c, &a, k, v, why, sizeof(why)) != 0) {
            snprintf(err, errlen, "config: %s:%d: [alert.%s] %s = %s: %s", c->source_path, line,
                     name, k, v, why);
            return -EINVAL;
        }
    }
    if (section_rules(c, name, why, sizeof(why)) != 0) {
        snprintf(err, errlen, "config: %s:%d: [alert.%s]: %s", c->source_path, s->line, name, why);
        return -EINVAL;
    }
    if (a.secret_file[0] != '\0' && a.auth == OB_AUTH_NONE)
        a.auth = OB_AUTH_HMAC;
    *out = a;
    return 0;
}
