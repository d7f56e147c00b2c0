/*
 * selection.c: parse, check and render page selections for /deal and /query. See
 * selection.h. Uses yajl's tree parser (the selection is small: at most KP_SELECTION_MAX)
 * and yajl_gen to write it back, numbers in their original text.
 */
#include "scanner/selection.h"

#include <errno.h>
#include <stdint.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yajl/yajl_gen.h>
#include <yajl/yajl_tree.h>

#include "keepa/request.h"
#include "scanner/rules.h"

#define QUERY_DEFAULT_PER_PAGE 150
#define QUERY_MIN_PER_PAGE     50

static yajl_val member(yajl_val obj, const char *key)
{
    for (size_t i = 0; i < obj->u.object.len; i++)
        if (strcmp(obj->u.object.keys[i], key) == 0)
            return obj->u.object.values[i];
    return NULL;
}

static int gen_value(yajl_gen g, yajl_val v)
{
    switch (v->type) {
    case yajl_t_string:
        return yajl_gen_string(g, (const unsigned char *)v->u.string, strlen(v->u.string));
    case yajl_t_number:
        return yajl_gen_number(g, v->u.number.r, strlen(v->u.number.r));
    case yajl_t_object:
        if (yajl_gen_map_open(g) != yajl_gen_status_ok)
            return -1;
        for (size_t i = 0; i < v->u.object.len; i++) {
            const char *k = v->u.object.keys[i];
            if (yajl_gen_string(g, (const unsigned char *)k, strlen(k)) != yajl_gen_status_ok ||
                gen_value(g, v->u.object.values[i]) != yajl_gen_status_ok)
                return -1;
        }
        return yajl_gen_map_close(g);
    case yajl_t_array:
        if (yajl_gen_array_open(g) != yajl_gen_status_ok)
            return -1;
        for (size_t i = 0; i < v->u.array.len; i++)
            if (gen_value(g, v->u.array.values[i]) != yajl_gen_status_ok)
                return -1;
        return yajl_gen_array_close(g);
    case yajl_t_true:
        return yajl_gen_bool(g, 1);
    case yajl_t_false:
        return yajl_gen_bool(g, 0);
    default:
        return yajl_gen_null(g);
    }
}

static int gen_key_int(yajl_gen g, const char *key, long long v)
{
    if (yajl_gen_string(g, (const unsigned char *)key, strlen(key)) != yajl_gen_status_ok)
        return -1;
    return yajl_gen_integer(g, v) == yajl_gen_status_ok ? 0 : -1;
}

static int gen_key(yajl_gen g, const char *key)
{
    return yajl_gen_string(g, (const unsigned char *)key, strlen(key)) == yajl_gen_status_ok ? 0
                                                                                             : -1;
}

static int gen_key_bool(yajl_gen g, const char *key, bool v)
{
    if (gen_key(g, key) != 0)
        return -1;
    return yajl_gen_bool(g, v) == yajl_gen_status_ok ? 0 : -1;
}

static int gen_key_ints(yajl_gen g, const char *key, const int64_t *v, size_t n)
{
    if (gen_key(g, key) != 0 || yajl_gen_array_open(g) != yajl_gen_status_ok)
        return -1;
    for (size_t i = 0; i < n; i++)
        if (yajl_gen_integer(g, (long long)v[i]) != yajl_gen_status_ok)
            return -1;
    return yajl_gen_array_close(g) == yajl_gen_status_ok ? 0 : -1;
}

/* Writes the discovery filters of S the selection file does not set (see selection.h); *RANGE_ON
 * tells whether that wrote isRangeEnabled. */
static int render_discovery(yajl_gen g, const struct scanner_selection *s, bool *range_on)
{
    const struct scanner_discovery *d = &s->disc;
    yajl_val root = s->tree;
    int rc = 0;
    bool price = d->min_price_cents > 0 || d->max_price_cents > 0;
    if (s->source == CFG_SOURCE_DEALS) {
        bool range = false;
        if (d->max_rank > 0 && member(root, "salesRankRange") == NULL) {
            int64_t r[2] = {0, d->max_rank};
            rc |= gen_key_ints(g, "salesRankRange", r, 2);
            range = true;
        }
        if (price && member(root, "currentRange") == NULL) {
            int64_t r[2] = {d->min_price_cents,
                            d->max_price_cents > 0 ? d->max_price_cents : INT32_MAX};
            rc |= gen_key_ints(g, "currentRange", r, 2);
            range = true;
        }
        if (range && member(root, "isRangeEnabled") == NULL) {
            rc |= gen_key_bool(g, "isRangeEnabled", true);
            *range_on = true;
        }
        if (d->n_include > 0 && member(root, "includeCategories") == NULL)
            rc |= gen_key_ints(g, "includeCategories", d->include, d->n_include);
        if (d->n_exclude > 0 && member(root, "excludeCategories") == NULL)
            rc |= gen_key_ints(g, "excludeCategories", d->exclude, d->n_exclude);
        if (d->no_amazon && member(root, "mustNotHaveAmazonOffer") == NULL) {
            rc |= gen_key_bool(g, "mustNotHaveAmazonOffer", true);
            if (member(root, "isFilterEnabled") == NULL)
                rc |= gen_key_bool(g, "isFilterEnabled", true);
        }
        return rc;
    }
    if (d->max_rank > 0 && member(root, "current_SALES_lte") == NULL) {
        if (member(root, "current_SALES_gte") == NULL)
            rc |= gen_key_int(g, "current_SALES_gte", 1);
        rc |= gen_key_int(g, "current_SALES_lte", d->max_rank);
    }
    if (d->n_include > 0 && member(root, "rootCategory") == NULL)
        rc |= gen_key_ints(g, "rootCategory", d->include, d->n_include);
    if (d->n_exclude > 0 && member(root, "categories_exclude") == NULL)
        rc |= gen_key_ints(g, "categories_exclude", d->exclude, d->n_exclude);
    if (d->no_amazon && member(root, "availabilityAmazon") == NULL)
        rc |= gen_key_int(g, "availabilityAmazon", -1);
    const char *type = d->price_type == 1 ? "NEW" : "USED";
    char gte[32], lte[32];
    snprintf(gte, sizeof(gte), "current_%s_gte", type);
    snprintf(lte, sizeof(lte), "current_%s_lte", type);
    if (d->min_price_cents > 0 && member(root, gte) == NULL)
        rc |= gen_key_int(g, gte, d->min_price_cents);
    if (d->max_price_cents > 0 && member(root, lte) == NULL)
        rc |= gen_key_int(g, lte, d->max_price_cents);
    return rc;
}

/* Renders the object with PAGE (< 0: without a page) and SORT_TYPE (> 0) in place of the
 * object's own sortType (0: the object's), and with a deltaPercentRange floor of FLOOR_PCT (> 0,
 * on a selection that allows a probe: scanner_selection_render_probe). */
static int render(const struct scanner_selection *s, long long page, int sort_type,
                  int32_t floor_pct, char **out, size_t *len)
{
    bool sorted = sort_type > 0 && s->source == CFG_SOURCE_DEALS;
    bool probe = floor_pct > 0 && s->probe_ok;
    int64_t domain = s->domain;
    yajl_val root = s->tree;
    yajl_gen g = yajl_gen_alloc(NULL);
    if (g == NULL)
        return -ENOMEM;
    int rc = 0;
    if (yajl_gen_map_open(g) != yajl_gen_status_ok)
        rc = -ENOMEM;
    for (size_t i = 0; rc == 0 && i < root->u.object.len; i++) {
        const char *k = root->u.object.keys[i];
        if (strcmp(k, "page") == 0 || strcmp(k, "perPage") == 0)
            continue;
        if (sorted && strcmp(k, "sortType") == 0)
            continue; /* written below */
        if (probe && strcmp(k, "deltaPercentRange") == 0)
            continue; /* written below */
        if (yajl_gen_string(g, (const unsigned char *)k, strlen(k)) != yajl_gen_status_ok ||
            gen_value(g, root->u.object.values[i]) != yajl_gen_status_ok)
            rc = -ENOMEM;
    }
    bool range_on = false;
    if (rc == 0 && render_discovery(g, s, &range_on) != 0)
        rc = -ENOMEM;
    if (rc == 0 && probe) {
        int64_t r[2] = {floor_pct > s->delta_pct_min ? floor_pct : s->delta_pct_min,
                        s->delta_pct_max};
        rc = gen_key_ints(g, "deltaPercentRange", r, 2);
        if (rc == 0 && !range_on && member(root, "isRangeEnabled") == NULL)
            rc = gen_key_bool(g, "isRangeEnabled", true);
    }
    if (rc == 0 && s->source == CFG_SOURCE_DEALS && domain > 0 && member(root, "domainId") == NULL)
        rc = gen_key_int(g, "domainId", domain);
    if (rc == 0 && s->source == CFG_SOURCE_QUERY)
        rc = gen_key_int(g, "perPage", s->per_page);
    if (rc == 0 && sorted)
        rc = gen_key_int(g, "sortType", sort_type);
    if (rc == 0 && page >= 0)
        rc = gen_key_int(g, "page", page);
    if (rc == 0 && yajl_gen_map_close(g) != yajl_gen_status_ok)
        rc = -ENOMEM;
    if (rc == 0) {
        const unsigned char *buf;
        size_t n;
        yajl_gen_get_buf(g, &buf, &n);
        char *copy = malloc(n + 1);
        if (copy == NULL) {
            rc = -ENOMEM;
        } else {
            memcpy(copy, buf, n);
            copy[n] = '\0';
            *out = copy;
            *len = n;
        }
    } else {
        rc = -ENOMEM;
    }
    yajl_gen_free(g);
    return rc;
}

static bool is_int(yajl_val v)
{
    return YAJL_IS_INTEGER(v);
}

/* Whole number V, else DEF. */
static int64_t int_or(yajl_val v, int64_t def)
{
    return v != NULL && YAJL_IS_INTEGER(v) ? v->u.number.i : def;
}

/*
 * What the probe needs of a /deal selection ROOT: the row of the deal's deltaPercent it filters
 * on (dateRange, priceTypes), the seller's own deltaPercentRange, and whether a floor can be
 * added without switching on a range the seller left off: isRangeEnabled is true, or absent with
 * no range of the file's own.
 */
static void probe_facts(yajl_val root, struct scanner_selection *s)
{
    yajl_val pt = member(root, "priceTypes");
    if (YAJL_IS_ARRAY(pt) && pt->u.array.len == 1)
        pt = pt->u.array.values[0];
    s->price_type = (int)int_or(pt, -1);
    s->date_range = (int)int_or(member(root, "dateRange"), 0);
    yajl_val on = member(root, "isRangeEnabled");
    static const char *const ranges[] = {"currentRange", "deltaRange", "deltaPercentRange",
                                         "deltaLastRange", "salesRankRange"};
    bool own_range = false;
    for (size_t i = 0; i < sizeof(ranges) / sizeof(ranges[0]); i++)
        own_range = own_range || member(root, ranges[i]) != NULL;
    bool enabled = on != NULL && YAJL_IS_TRUE(on);
    s->probe_ok = s->price_type >= 0 && s->price_type < KP_NPRICE && s->date_range >= 0 &&
                  s->date_range < KP_DEAL_RANGES && (enabled || (on == NULL && !own_range));
    s->delta_pct_min = 0;
    s->delta_pct_max = 100;
    yajl_val r = member(root, "deltaPercentRange");
    if (enabled && YAJL_IS_ARRAY(r) && r->u.array.len == 2) {
        s->delta_pct_min = (int32_t)int_or(r->u.array.values[0], 0);
        s->delta_pct_max = (int32_t)int_or(r->u.array.values[1], 100);
    }
    if (s->delta_pct_max <= s->delta_pct_min)
        s->probe_ok = false;
}

static int check_deals(yajl_val root, int64_t domain, char *err, size_t errlen, const char *origin)
{
    yajl_val pt = member(root, "priceTypes");
    bool pt_ok =
        is_int(pt) || (YAJL_IS_ARRAY(pt) && pt->u.array.len == 1 && is_int(pt->u.array.values[0]));
    if (!pt_ok) {
        snprintf(err, errlen,
                 "selection %s: \"priceTypes\" must be one integer price type (e.g. [2] for Used)",
                 origin);
        return -EINVAL;
    }
    static const char *const ints[] = {"dateRange", "sortType"};
    for (size_t i = 0; i < 2; i++) {
        yajl_val v = member(root, ints[i]);
        if (v != NULL && !is_int(v)) {
            snprintf(err, errlen,
                     "selection %s: \"%s\" must be an integer (Keepa silently ignores strings)",
                     origin, ints[i]);
            return -EINVAL;
        }
    }
    yajl_val dom = member(root, "domainId");
    if (dom != NULL) {
        long long d = -1;
        if (is_int(dom))
            d = dom->u.number.i;
        else if (YAJL_IS_STRING(dom))
            d = strtoll(dom->u.string, NULL, 10);
        if (d != domain) {
            snprintf(err, errlen, "selection %s: \"domainId\" differs from [keepa] domain = %lld",
                     origin, (long long)domain);
            return -EINVAL;
        }
    }
    return 0;
}

int scanner_selection_parse(struct scanner_selection *out, int source, int64_t domain,
                            const struct scanner_discovery *disc, const char *json,
                            const char *origin, char *err, size_t errlen)
{
    if (source != CFG_SOURCE_DEALS && source != CFG_SOURCE_QUERY) {
        snprintf(err, errlen, "selection: source %d takes no selection", source);
        return -EINVAL;
    }
    char perr[160] = "";
    yajl_val root = yajl_tree_parse(json, perr, sizeof(perr));
    if (root == NULL) {
        char *nl = strchr(perr, '\n');
        if (nl != NULL)
            *nl = '\0';
        snprintf(err, errlen, "selection %s: not valid JSON: %s", origin, perr);
        return -EINVAL;
    }
    if (!YAJL_IS_OBJECT(root)) {
        snprintf(err, errlen, "selection %s: must be a JSON object", origin);
        yajl_tree_free(root);
        return -EINVAL;
    }
    struct scanner_selection s;
    memset(&s, 0, sizeof(s));
    s.tree = root;
    s.source = source;
    s.domain = domain;
    if (disc != NULL)
        s.disc = *disc;
    snprintf(s.origin, sizeof(s.origin), "%s", origin);
    int rc = 0;
    if (source == CFG_SOURCE_DEALS) {
        rc = check_deals(root, domain, err, errlen, origin);
        probe_facts(root, &s);
        s.per_page = SCANNER_PAGE_DEALS;
        s.last_page = SCANNER_LAST_DEAL_PAGE;
    } else {
        yajl_val pp = member(root, "perPage");
        s.per_page = QUERY_DEFAULT_PER_PAGE;
        if (pp != NULL) {
            if (!is_int(pp) || pp->u.number.i < QUERY_MIN_PER_PAGE ||
                pp->u.number.i > SCANNER_PAGE_MAX) {
                snprintf(err, errlen, "selection %s: \"perPage\" must be an integer in %d..%d",
                         origin, QUERY_MIN_PER_PAGE, SCANNER_PAGE_MAX);
                rc = -EINVAL;
            } else {
                s.per_page = pp->u.number.i;
            }
        }
        s.last_page = SCANNER_QUERY_MAX / s.per_page - 1;
    }
    if (rc == 0) {
        char *text = NULL;
        size_t len = 0;
        rc = render(&s, -1, 0, 0, &text, &len);
        if (rc == 0) {
            s.hash = scanner_fnv1a(SCANNER_FNV_INIT, text, len);
            free(text);
        } else {
            snprintf(err, errlen, "selection %s: out of memory", origin);
        }
    }
    if (rc != 0) {
        yajl_tree_free(root);
        return rc;
    }
    *out = s;
    return 0;
}

/* The built-in /deal selection: price drops of 10..100 % against the 90-day average of the
 * price type %d (the buy's side), biggest first. */
static const char builtin_deals[] =
    "{\"priceTypes\":[%d],\"dateRange\":3,\"sortType\":4,\"isRangeEnabled\":true,"
    "\"deltaPercentRange\":[10,100]}";

int scanner_selection_load(struct scanner_selection *out, int source, int64_t domain,
                           const struct scanner_discovery *disc, const char *path, char *err,
                           size_t errlen)
{
    if (path == NULL || path[0] == '\0') {
        if (source != CFG_SOURCE_DEALS) {
            snprintf(err, errlen,
                     "[scan] source = query needs [scan] selection_file (a Product Finder JSON)");
            return -EINVAL;
        }
        char json[sizeof(builtin_deals) + 8];
        snprintf(json, sizeof(json), builtin_deals, disc != NULL && disc->price_type == 1 ? 1 : 2);
        return scanner_selection_parse(out, source, domain, disc, json, "built-in", err, errlen);
    }
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        int e = errno;
        snprintf(err, errlen, "selection file %s: %s", path, strerror(e));
        return -e;
    }
    char *buf = malloc(KP_SELECTION_MAX + 1);
    if (buf == NULL) {
        fclose(f);
        return -ENOMEM;
    }
    size_t n = fread(buf, 1, KP_SELECTION_MAX + 1, f);
    int rerr = ferror(f);
    fclose(f);
    int rc;
    if (rerr) {
        snprintf(err, errlen, "selection file %s: read error", path);
        rc = -EIO;
    } else if (n > KP_SELECTION_MAX) {
        snprintf(err, errlen, "selection file %s: larger than %u bytes", path,
                 (unsigned)KP_SELECTION_MAX);
        rc = -EFBIG;
    } else {
        buf[n] = '\0';
        rc = scanner_selection_parse(out, source, domain, disc, buf, path, err, errlen);
    }
    free(buf);
    return rc;
}

int scanner_selection_render(const struct scanner_selection *s, uint64_t page, char **out,
                             size_t *len)
{
    return render(s, (long long)page, 0, 0, out, len);
}

int scanner_selection_render_sorted(const struct scanner_selection *s, uint64_t page, int sort_type,
                                    char **out, size_t *len)
{
    return render(s, (long long)page, sort_type, 0, out, len);
}

int scanner_selection_render_probe(const struct scanner_selection *s, uint64_t page, int sort_type,
                                   int32_t floor_pct, char **out, size_t *len)
{
    return render(s, (long long)page, sort_type, floor_pct, out, len);
}

void scanner_selection_free(struct scanner_selection *s)
{
    if (s->tree != NULL)
        yajl_tree_free(s->tree);
    s->tree = NULL;
}
