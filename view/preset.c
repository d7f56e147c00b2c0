/*
 * preset.c: [view.NAME] presets read into view filters, and their config checker. See preset.h.
 */
#include "view/preset.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* Whether KEY is a key's canonical (config) spelling; presets do not take "--min-roi". */
static bool canonical(const char *key)
{
    for (size_t i = 0;; i++) {
        const struct vw_key_info *k = vw_filter_key(i);
        if (k == NULL)
            return false;
        if (strcmp(k->name, key) == 0)
            return true;
    }
}

static int check_key(const struct cfg *c, const char *name, const char *key, const char *value,
                     char *why, size_t whylen)
{
    (void)name;
    struct vw_filter f;
    vw_filter_init(&f, (unsigned)c->keepa_domain);
    if (!canonical(key)) {
        vw_filter_parse_value(&f, "", NULL, why, whylen); /* "(known: ...)" */
        return -ENOENT;
    }
    return vw_filter_parse_value(&f, key, value, why, whylen);
}

const struct cfg_named_checker vw_preset_checker = {.kind = CFG_NAMED_view, .check_key = check_key};

int vw_preset_apply(const struct cfg *c, const char *name, struct vw_filter *f, char *err,
                    size_t errlen)
{
    const struct cfg_named *s = cfg_named_find(c, CFG_NAMED_view, name);
    if (s == NULL) {
        int n = snprintf(err, errlen, "--view %s: the config has no [view.%s]", name, name);
        const char *sep = " (presets:";
        for (size_t i = 0; i < c->n_named && n >= 0 && (size_t)n < errlen; i++) {
            if (c->named[i].kind != CFG_NAMED_view)
                continue;
            n += snprintf(err + n, errlen - (size_t)n, "%s %s", sep, c->named[i].name);
            sep = ",";
        }
        if (n >= 0 && (size_t)n < errlen)
            snprintf(err + n, errlen - (size_t)n, "%s",
                     sep[0] == ',' ? ")" : "; it has no [view.NAME] section)");
        return -ENOENT;
    }
    struct vw_filter t = *f;
    for (size_t i = 0; i < s->n_keys; i++) {
        const char *key, *value;
        int line;
        cfg_named_key(c, s, i, &key, &value, &line);
        char why[512];
        int rc = canonical(key) ? vw_filter_parse_value(&t, key, value, why, sizeof(why)) : -ENOENT;
        if (rc != 0) {
            snprintf(err, errlen, "config: %s:%d: [view.%s] %s = %s: %s", c->source_path, line,
                     name, key, value, rc == -ENOENT ? "unknown key" : why);
            return -EINVAL;
        }
    }
    *f = t;
    return 0;
}
