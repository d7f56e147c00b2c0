/*
 * selection.c: bounded, pure parsing of selections and /product parameters (see selection.h).
 *
 * yajl's tree builder is iterative but yajl_tree_free recurses, so nesting depth is checked
 * with a linear pre-scan before yajl runs; size is checked first of all. Nothing here
 * allocates beyond the yajl tree, which is freed on every path.
 */
#include "sim/selection.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <yajl/yajl_tree.h>

static void set_err(char *err, size_t errsz, const char *msg)
{
    if (err != NULL && errsz > 0)
        snprintf(err, errsz, "%s", msg);
}

int sim_parse_i64(const char *s, int64_t *out)
{
    if (s == NULL || *s == '\0')
        return -EINVAL;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || *end != '\0' || end == s)
        return -EINVAL;
    *out = v;
    return 0;
}

/* Max nesting depth of JSON text, ignoring brackets inside strings. */
static int json_depth_ok(const char *s, size_t len, int max_depth)
{
    int depth = 0, in_str = 0;
    for (size_t i = 0; i < len; i++) {
        char ch = s[i];
        if (in_str) {
            if (ch == '\\')
                i++;
            else if (ch == '"')
                in_str = 0;
        } else if (ch == '"') {
            in_str = 1;
        } else if (ch == '[' || ch == '{') {
            if (++depth > max_depth)
                return 0;
        } else if (ch == ']' || ch == '}') {
            depth--;
        }
    }
    return 1;
}

static yajl_val parse_bounded(const char *json, size_t len, char *err, size_t errsz, int *rc)
{
    return sim_json_parse(json, len, 1, err, errsz, rc);
}

yajl_val sim_json_parse(const char *json, size_t len, int object_only, char *err, size_t errsz,
                        int *rc)
{
    if (json == NULL || len == 0) {
        *rc = -EINVAL;
        set_err(err, errsz, "empty selection");
        return NULL;
    }
    if (len > SIM_SEL_MAX_BYTES) {
        *rc = -E2BIG;
        set_err(err, errsz, "selection too large");
        return NULL;
    }
    if (!json_depth_ok(json, len, SIM_SEL_MAX_DEPTH)) {
        *rc = -E2BIG;
        set_err(err, errsz, "selection nested too deeply");
        return NULL;
    }
    char *copy = malloc(len + 1);
    if (copy == NULL) {
        *rc = -ENOMEM;
        set_err(err, errsz, "out of memory");
        return NULL;
    }
    memcpy(copy, json, len);
    copy[len] = '\0';
    if (strlen(copy) != len) { /* embedded NUL */
        free(copy);
        *rc = -EINVAL;
        set_err(err, errsz, "selection contains NUL");
        return NULL;
    }
    char ebuf[128];
    yajl_val v = yajl_tree_parse(copy, ebuf, sizeof(ebuf));
    free(copy);
    if (v == NULL) {
        *rc = -EINVAL;
        set_err(err, errsz, "selection is not valid JSON");
        return NULL;
    }
    if (!YAJL_IS_OBJECT(v) && (object_only || !YAJL_IS_ARRAY(v))) {
        yajl_tree_free(v);
        *rc = -EINVAL;
        set_err(err, errsz,
                object_only ? "selection is not a JSON object" : "not a JSON object or array");
        return NULL;
    }
    *rc = 0;
    return v;
}

/* Integer value of a JSON number (integers, or doubles with an integral value). */
static int num_i64(yajl_val v, int64_t *out)
{
    if (YAJL_IS_INTEGER(v)) {
        *out = YAJL_GET_INTEGER(v);
        return 0;
    }
    if (YAJL_IS_DOUBLE(v)) {
        double d = YAJL_GET_DOUBLE(v);
        if (d >= -9.2e18 && d <= 9.2e18) {
            *out = (int64_t)d;
            return 0;
        }
    }
    return -EINVAL;
}

/* Integer from a number or a numeric string (domainId "1"). */
static int lenient_i64(yajl_val v, int64_t *out)
{
    if (num_i64(v, out) == 0)
        return 0;
    if (YAJL_IS_STRING(v))
        return sim_parse_i64(YAJL_GET_STRING(v), out);
    return -EINVAL;
}

static int as_bool(yajl_val v)
{
    if (YAJL_IS_TRUE(v))
        return 1;
    int64_t n;
    if (num_i64(v, &n) == 0)
        return n != 0;
    if (YAJL_IS_STRING(v)) {
        const char *t = v->u.string;
        return strcmp(t, "true") == 0 || strcmp(t, "1") == 0;
    }
    return 0;
}

static int clamp_int(int64_t v)
{
    return v > INT_MAX ? INT_MAX : v < INT_MIN ? INT_MIN : (int)v;
}

static void parse_range(yajl_val v, struct sim_range *r)
{
    if (!YAJL_IS_ARRAY(v) || v->u.array.len != 2)
        return; /* wrong types are ignored, as Keepa ignores them */
    int64_t lo, hi;
    if (num_i64(v->u.array.values[0], &lo) != 0 || num_i64(v->u.array.values[1], &hi) != 0)
        return;
    r->set = 1;
    r->lo = lo;
    r->hi = hi;
}

static int parse_cats(yajl_val v, int64_t *out, int *n)
{
    *n = 0;
    if (YAJL_IS_ARRAY(v)) {
        if (v->u.array.len > SIM_SEL_MAX_CATS)
            return -EINVAL;
        for (size_t i = 0; i < v->u.array.len; i++) {
            int64_t id;
            if (lenient_i64(v->u.array.values[i], &id) == 0)
                out[(*n)++] = id;
        }
    } else {
        int64_t id;
        if (lenient_i64(v, &id) == 0)
            out[(*n)++] = id;
    }
    return 0;
}

static int is_deal_type(int64_t t)
{
    static const int ok[] = {0, 1, 2, 3, 5, 6, 7, 8, 9, 10, 18, 19, 20, 21, 22, 32, 33};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
        if (ok[i] == t)
            return 1;
    return 0;
}

int sim_selection_parse(const char *json, size_t len, struct sim_selection *sel, char *err,
                        size_t errsz)
{
    memset(sel, 0, sizeof(*sel));
    sel->price_type = -1;
    sel->sort_type = 1;
    sel->min_rating = -1;
    int rc;
    yajl_val root = parse_bounded(json, len, err, errsz, &rc);
    if (root == NULL)
        return rc;
    rc = 0;
    for (size_t i = 0; i < root->u.object.len && rc == 0; i++) {
        const char *k = root->u.object.keys[i];
        yajl_val v = root->u.object.values[i];
        int64_t n;
        if (strcmp(k, "page") == 0) {
            if (lenient_i64(v, &n) != 0 || n < 0) {
                rc = -EINVAL;
                set_err(err, errsz, "page must be a non-negative integer");
            } else {
                sel->page = n > 100000 ? 100000 : (int)n;
            }
        } else if (strcmp(k, "domainId") == 0) {
            if (lenient_i64(v, &n) == 0)
                sel->domain_id = clamp_int(n);
        } else if (strcmp(k, "priceTypes") == 0) {
            yajl_val t = v;
            if (YAJL_IS_ARRAY(v)) {
                if (v->u.array.len != 1) {
                    rc = -EINVAL;
                    set_err(err, errsz, "priceTypes must hold exactly one entry");
                    break;
                }
                t = v->u.array.values[0];
            }
            if (lenient_i64(t, &n) != 0 || !is_deal_type(n)) {
                rc = -EINVAL;
                set_err(err, errsz, "priceTypes: not a deal price type");
            } else {
                sel->price_type = (int)n;
            }
        } else if (strcmp(k, "dateRange") == 0) {
            if (num_i64(v, &n) == 0) /* strings are silently ignored (docs/failure-modes.md F12) */
                sel->date_range = n < 0 ? 0 : n > 3 ? 3 : (int)n;
        } else if (strcmp(k, "sortType") == 0) {
            if (num_i64(v, &n) == 0 && n != 0 && n >= -4 && n <= 4)
                sel->sort_type = (int)n;
        } else if (strcmp(k, "isRangeEnabled") == 0) {
            sel->is_range_enabled = as_bool(v);
        } else if (strcmp(k, "isFilterEnabled") == 0) {
            sel->is_filter_enabled = as_bool(v);
        } else if (strcmp(k, "singleVariation") == 0) {
            sel->single_variation = as_bool(v);
        } else if (strcmp(k, "isRisers") == 0) {
            sel->is_risers = as_bool(v);
        } else if (strcmp(k, "hasReviews") == 0) {
            sel->has_reviews = as_bool(v);
        } else if (strcmp(k, "mustHaveAmazonOffer") == 0) {
            sel->must_have_amazon = as_bool(v);
        } else if (strcmp(k, "mustNotHaveAmazonOffer") == 0) {
            sel->must_not_have_amazon = as_bool(v);
        } else if (strcmp(k, "minRating") == 0) {
            if (num_i64(v, &n) == 0)
                sel->min_rating = n < -1 ? -1 : n > 50 ? 50 : (int)n;
        } else if (strcmp(k, "currentRange") == 0) {
            parse_range(v, &sel->current);
        } else if (strcmp(k, "deltaRange") == 0) {
            parse_range(v, &sel->delta);
        } else if (strcmp(k, "deltaPercentRange") == 0) {
            parse_range(v, &sel->delta_percent);
        } else if (strcmp(k, "deltaLastRange") == 0) {
            parse_range(v, &sel->delta_last);
        } else if (strcmp(k, "salesRankRange") == 0) {
            parse_range(v, &sel->sales_rank);
        } else if (strcmp(k, "includeCategories") == 0) {
            if (parse_cats(v, sel->include_cats, &sel->n_include) != 0) {
                rc = -EINVAL;
                set_err(err, errsz, "includeCategories: more than 500 ids");
            }
        } else if (strcmp(k, "excludeCategories") == 0) {
            if (parse_cats(v, sel->exclude_cats, &sel->n_exclude) != 0) {
                rc = -EINVAL;
                set_err(err, errsz, "excludeCategories: more than 500 ids");
            }
        }
        /* Everything else (warehouseConditions, titleSearch, isLowest, ...) is accepted
         * and not modelled. */
    }
    if (rc == 0 && sel->price_type < 0) {
        rc = -EINVAL;
        set_err(err, errsz, "priceTypes is required");
    }
    yajl_tree_free(root);
    return rc;
}

static void put_range(char **p, char *end, const char *name, const struct sim_range *r)
{
    if (r->set && *p < end)
        *p += snprintf(*p, (size_t)(end - *p), "%s%lld:%lld;", name, (long long)r->lo,
                       (long long)r->hi);
}

int sim_selection_key(const struct sim_selection *s, char *out, size_t outsz)
{
    char *p = out, *end = out + outsz;
    p += snprintf(p, outsz, "d%d t%d r%d s%d R%d F%d v%d i%d h%d a%d n%d m%d;", s->domain_id,
                  s->price_type, s->date_range, s->sort_type, s->is_range_enabled,
                  s->is_filter_enabled, s->single_variation, s->is_risers, s->has_reviews,
                  s->must_have_amazon, s->must_not_have_amazon, s->min_rating);
    put_range(&p, end, "c", &s->current);
    put_range(&p, end, "D", &s->delta);
    put_range(&p, end, "P", &s->delta_percent);
    put_range(&p, end, "L", &s->delta_last);
    put_range(&p, end, "S", &s->sales_rank);
    for (int i = 0; i < s->n_include && p < end; i++)
        p += snprintf(p, (size_t)(end - p), "+%lld", (long long)s->include_cats[i]);
    for (int i = 0; i < s->n_exclude && p < end; i++)
        p += snprintf(p, (size_t)(end - p), "-%lld", (long long)s->exclude_cats[i]);
    return 0;
}

/* ---- /query ---- */

/* Keepa's csv type names as the Product Finder spells them (docs/keepa-api.md §7.1). */
static const char *const QTYPE_NAMES[] = {"AMAZON",
                                          "NEW",
                                          "USED",
                                          "SALES",
                                          "LISTPRICE",
                                          "COLLECTIBLE",
                                          "REFURBISHED",
                                          "NEW_FBM_SHIPPING",
                                          "LIGHTNING_DEAL",
                                          "WAREHOUSE",
                                          "NEW_FBA",
                                          "COUNT_NEW",
                                          "COUNT_USED",
                                          "COUNT_REFURBISHED",
                                          "COUNT_COLLECTIBLE",
                                          "EXTRA_INFO_UPDATES",
                                          "RATING",
                                          "COUNT_REVIEWS",
                                          "BUY_BOX_SHIPPING",
                                          "USED_NEW_SHIPPING",
                                          "USED_VERY_GOOD_SHIPPING",
                                          "USED_GOOD_SHIPPING",
                                          "USED_ACCEPTABLE_SHIPPING",
                                          "COLLECTIBLE_NEW_SHIPPING",
                                          "COLLECTIBLE_VERY_GOOD_SHIPPING",
                                          "COLLECTIBLE_GOOD_SHIPPING",
                                          "COLLECTIBLE_ACCEPTABLE_SHIPPING",
                                          "REFURBISHED_SHIPPING",
                                          "EBAY_NEW_SHIPPING",
                                          "EBAY_USED_SHIPPING",
                                          "TRADE_IN",
                                          "RENT",
                                          "BUY_BOX_USED_SHIPPING",
                                          "PRIME_EXCL"};

const char *sim_query_type_name(int type)
{
    if (type < 0 || type >= (int)(sizeof(QTYPE_NAMES) / sizeof(QTYPE_NAMES[0])))
        return NULL;
    return QTYPE_NAMES[type];
}

static const struct {
    const char *prefix;
    enum sim_qfield field;
} QPREFIX[] = {{"current_", SIM_QF_CURRENT},
               {"avg1_", SIM_QF_AVG1},
               {"avg7_", SIM_QF_AVG7},
               {"avg30_", SIM_QF_AVG30},
               {"avg90_", SIM_QF_AVG90},
               {"avg180_", SIM_QF_AVG180},
               {"avg365_", SIM_QF_AVG365},
               {"delta1_", SIM_QF_DELTA1},
               {"delta7_", SIM_QF_DELTA7},
               {"delta30_", SIM_QF_DELTA30},
               {"delta90_", SIM_QF_DELTA90},
               {"deltaPercent1_", SIM_QF_DELTA_PCT1},
               {"deltaPercent7_", SIM_QF_DELTA_PCT7},
               {"deltaPercent30_", SIM_QF_DELTA_PCT30},
               {"deltaPercent90_", SIM_QF_DELTA_PCT90},
               {"deltaLast_", SIM_QF_DELTA_LAST}};

static const char *const QWIDE[SIM_QF_COUNT - SIM_QF_PER_TYPE] = {
    "salesRankDrops30", "salesRankDrops90", "salesRankDrops180", "salesRankDrops365",
    "monthlySold",      "offerCountFBA",    "offerCountFBM",     "totalOfferCount",
    "packageWeight",    "packageLength",    "packageWidth",      "packageHeight",
    "fbaFees",          "trackingSince",    "listedSince",       "lastUpdate",
    "lastPriceChange",  "publicationDate"};

static const char *const QTEXT[SIM_QT_COUNT] = {"author",  "brand",        "manufacturer",
                                                "binding", "productGroup", "type"};
static const char *const QBOOL[SIM_QB_COUNT] = {
    "hasReviews",      "isAdultProduct", "isHazMat", "isHeatSensitive",
    "singleVariation", "hasParentASIN",  "isSNS"};
static const char *const QSELLER[SIM_QS_COUNT] = {"sellerIds", "sellerIdsLowestFBA",
                                                  "sellerIdsLowestFBM"};

/* Parses a field name (NAME of length N, no _gte/_lte) into field and type; 0 or -EINVAL. */
static int q_field(const char *name, size_t n, enum sim_qfield *f, int *type)
{
    for (size_t i = 0; i < sizeof(QWIDE) / sizeof(QWIDE[0]); i++)
        if (strlen(QWIDE[i]) == n && strncmp(name, QWIDE[i], n) == 0) {
            *f = (enum sim_qfield)(SIM_QF_PER_TYPE + (int)i);
            *type = -1;
            return 0;
        }
    for (size_t i = 0; i < sizeof(QPREFIX) / sizeof(QPREFIX[0]); i++) {
        size_t pl = strlen(QPREFIX[i].prefix);
        if (n <= pl || strncmp(name, QPREFIX[i].prefix, pl) != 0)
            continue;
        for (size_t j = 0; j < sizeof(QTYPE_NAMES) / sizeof(QTYPE_NAMES[0]); j++)
            if (strlen(QTYPE_NAMES[j]) == n - pl &&
                strncmp(name + pl, QTYPE_NAMES[j], n - pl) == 0) {
                *f = QPREFIX[i].field;
                *type = (int)j;
                return 0;
            }
    }
    return -EINVAL;
}

/* Adds the string V, or every string of the array V, to W (at most SIM_Q_MAX_WORDS). */
static void q_words(yajl_val v, struct sim_qwords *w)
{
    size_t n = YAJL_IS_ARRAY(v) ? v->u.array.len : 1;
    for (size_t i = 0; i < n && w->n < SIM_Q_MAX_WORDS; i++) {
        yajl_val x = YAJL_IS_ARRAY(v) ? v->u.array.values[i] : v;
        if (YAJL_IS_STRING(x))
            snprintf(w->w[w->n++], SIM_Q_WORD, "%s", x->u.string);
    }
}

/* Splits the keywords of title string V into W. */
static void q_keywords(yajl_val v, struct sim_qwords *w)
{
    if (!YAJL_IS_STRING(v))
        return;
    const char *t = v->u.string;
    while (*t && w->n < SIM_Q_MAX_WORDS) {
        while (*t == ' ')
            t++;
        size_t k = strcspn(t, " ");
        if (k > 0) {
            snprintf(w->w[w->n++], SIM_Q_WORD, "%.*s", (int)(k < SIM_Q_WORD ? k : SIM_Q_WORD - 1),
                     t);
        }
        t += k;
    }
}

static void q_ints(yajl_val v, int64_t *out, int *n, int max)
{
    size_t cnt = YAJL_IS_ARRAY(v) ? v->u.array.len : 1;
    for (size_t i = 0; i < cnt && *n < max; i++) {
        int64_t x;
        if (lenient_i64(YAJL_IS_ARRAY(v) ? v->u.array.values[i] : v, &x) == 0)
            out[(*n)++] = x;
    }
}

static void q_ignore(struct sim_query *q, const char *key)
{
    size_t len = strlen(q->ignored);
    if (len + strlen(key) + 2 < sizeof(q->ignored))
        snprintf(q->ignored + len, sizeof(q->ignored) - len, "%s%s", len ? "," : "", key);
}

int sim_query_parse(const char *json, size_t len, struct sim_query *q, char *err, size_t errsz)
{
    memset(q, 0, sizeof(*q));
    q->per_page = 50;
    for (int i = 0; i < SIM_QB_COUNT; i++)
        q->bools[i] = -1;
    int rc;
    yajl_val root = parse_bounded(json, len, err, errsz, &rc);
    if (root == NULL)
        return rc;
    rc = 0;
    for (size_t i = 0; i < root->u.object.len && rc == 0; i++) {
        const char *k = root->u.object.keys[i];
        yajl_val v = root->u.object.values[i];
        size_t kl = strlen(k);
        int64_t n;
        int done = 1;
        if (strcmp(k, "page") == 0) {
            if (lenient_i64(v, &n) != 0 || n < 0) {
                rc = -EINVAL;
                set_err(err, errsz, "page must be a non-negative integer");
            } else {
                q->page = n > 10000 ? 10000 : (int)n;
            }
        } else if (strcmp(k, "perPage") == 0) {
            if (lenient_i64(v, &n) == 0)
                q->per_page = n < 50 ? 50 : n > 10000 ? 10000 : (int)n;
        } else if (strcmp(k, "rootCategory") == 0) {
            if (parse_cats(v, q->roots, &q->n_roots) != 0)
                q->n_roots = 0;
        } else if (strcmp(k, "categories_include") == 0) {
            if (parse_cats(v, q->include, &q->n_include) != 0)
                q->n_include = 0;
        } else if (strcmp(k, "categories_exclude") == 0) {
            if (parse_cats(v, q->exclude, &q->n_exclude) != 0)
                q->n_exclude = 0;
        } else if (strcmp(k, "title") == 0) {
            q_keywords(v, &q->title);
        } else if (strcmp(k, "productType") == 0) {
            q_ints(v, q->product_types, &q->n_product_types, 16);
        } else if (strcmp(k, "availabilityAmazon") == 0) {
            q_ints(v, q->availability, &q->n_availability, 16);
        } else if (strcmp(k, "sort") == 0) {
            /* [["current_SALES","asc"]] */
            yajl_val s = v;
            if (YAJL_IS_ARRAY(s) && s->u.array.len > 0 && YAJL_IS_ARRAY(s->u.array.values[0]))
                s = s->u.array.values[0];
            if (YAJL_IS_ARRAY(s) && s->u.array.len == 2 && YAJL_IS_STRING(s->u.array.values[0]) &&
                YAJL_IS_STRING(s->u.array.values[1])) {
                const char *fname = s->u.array.values[0]->u.string;
                if (q_field(fname, strlen(fname), &q->sort_field, &q->sort_type) == 0) {
                    q->sort_set = 1;
                    q->sort_desc = strcmp(s->u.array.values[1]->u.string, "desc") == 0;
                } else {
                    q_ignore(q, "sort");
                }
            }
        } else if (kl > 4 && (strcmp(k + kl - 4, "_gte") == 0 || strcmp(k + kl - 4, "_lte") == 0)) {
            struct sim_qfilter f;
            if (q_field(k, kl - 4, &f.field, &f.type) == 0 && lenient_i64(v, &n) == 0 &&
                q->n_filters < SIM_Q_MAX_FILTERS) {
                f.is_lte = k[kl - 3] == 'l';
                f.value = n;
                q->filters[q->n_filters++] = f;
            } else {
                done = 0;
            }
        } else {
            done = 0;
            for (int t = 0; t < SIM_QT_COUNT && !done; t++)
                if (strcmp(k, QTEXT[t]) == 0) {
                    q_words(v, &q->text[t]);
                    done = 1;
                }
            for (int b = 0; b < SIM_QB_COUNT && !done; b++)
                if (strcmp(k, QBOOL[b]) == 0) {
                    if (!YAJL_IS_NULL(v))
                        q->bools[b] = as_bool(v);
                    done = 1;
                }
            for (int t = 0; t < SIM_QS_COUNT && !done; t++)
                if (strcmp(k, QSELLER[t]) == 0) {
                    q_words(v, &q->sellers[t]);
                    done = 1;
                }
        }
        if (!done && !YAJL_IS_NULL(v))
            q_ignore(q, k);
    }
    yajl_tree_free(root);
    return rc;
}

/* ---- /product ---- */

static int flag_param(sim_param_fn get, void *ctx, const char *name, int dflt, int *out, char *err,
                      size_t errsz)
{
    const char *s = get(ctx, name);
    int64_t v;
    if (s == NULL || *s == '\0') {
        *out = dflt;
        return 0;
    }
    if (sim_parse_i64(s, &v) != 0) {
        char msg[96];
        snprintf(msg, sizeof(msg), "%s must be an integer", name);
        set_err(err, errsz, msg);
        return -EINVAL;
    }
    *out = v != 0;
    return 0;
}

/* YYYY-MM-DD to epoch ms (UTC); -EINVAL when not a date. */
static int iso_date_ms(const char *s, size_t n, int64_t *ms)
{
    int y, m, d;
    char tail;
    char tmp[32];
    if (n == 0 || n >= sizeof(tmp))
        return -EINVAL;
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    if (sscanf(tmp, "%4d-%2d-%2d%c", &y, &m, &d, &tail) != 3 || m < 1 || m > 12 || d < 1 ||
        d > 31 || y < 1970 || y > 9999)
        return -EINVAL;
    struct tm tm = {0};
    tm.tm_year = y - 1900;
    tm.tm_mon = m - 1;
    tm.tm_mday = d;
    *ms = (int64_t)timegm(&tm) * 1000;
    return 0;
}

static int parse_stats(const char *s, struct sim_product_req *r)
{
    const char *comma = strchr(s, ',');
    int64_t a, b;
    if (comma == NULL) {
        if (sim_parse_i64(s, &a) != 0 || a < 0)
            return -EINVAL;
        r->stats_mode = SIM_STATS_DAYS;
        r->stats_days = a;
        return 0;
    }
    char left[32], right[32];
    size_t ln = (size_t)(comma - s), rn = strlen(comma + 1);
    if (ln == 0 || rn == 0 || ln >= sizeof(left) || rn >= sizeof(right))
        return -EINVAL;
    memcpy(left, s, ln);
    left[ln] = '\0';
    memcpy(right, comma + 1, rn + 1);
    if (sim_parse_i64(left, &a) == 0 && sim_parse_i64(right, &b) == 0) {
        /* two epoch-ms values */
    } else if (iso_date_ms(left, ln, &a) != 0 || iso_date_ms(right, rn, &b) != 0) {
        return -EINVAL;
    }
    if (b < a)
        return -EINVAL;
    r->stats_mode = SIM_STATS_RANGE;
    r->stats_from_ms = a;
    r->stats_to_ms = b;
    return 0;
}

int sim_product_req_parse(sim_param_fn get, void *ctx, int offers_zero_ok,
                          struct sim_product_req *r, char *err, size_t errsz)
{
    memset(r, 0, sizeof(*r));
    const char *asin = get(ctx, "asin"), *code = get(ctx, "code");
    if (asin != NULL && *asin == '\0')
        asin = NULL;
    if (code != NULL && *code == '\0')
        code = NULL;
    if ((asin == NULL) == (code == NULL)) {
        set_err(err, errsz, asin ? "asin and code are exclusive" : "asin or code is required");
        return -EINVAL;
    }
    const char *list = asin ? asin : code;
    r->by_code = code != NULL;
    const char *p = list;
    while (*p) {
        const char *e = strchr(p, ',');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        while (n > 0 && (*p == ' '))
            p++, n--;
        while (n > 0 && p[n - 1] == ' ')
            n--;
        if (n > 0) {
            if (r->n_ids >= SIM_PRODUCT_MAX_IDS) {
                set_err(err, errsz, "at most 100 asin/code values per request");
                return -EINVAL;
            }
            size_t c = n < sizeof(r->ids[0]) - 1 ? n : sizeof(r->ids[0]) - 1;
            for (size_t i = 0; i < c; i++) {
                char ch = p[i];
                r->ids[r->n_ids][i] = (char)(ch >= 'a' && ch <= 'z' ? ch - 32 : ch);
            }
            r->ids[r->n_ids][c] = n == c ? '\0' : '\0';
            if (n != c)
                r->ids[r->n_ids][0] = '?'; /* too long: can never match */
            r->n_ids++;
        }
        if (e == NULL)
            break;
        p = e + 1;
    }
    if (r->n_ids == 0) {
        set_err(err, errsz, "asin or code is required");
        return -EINVAL;
    }
    const char *s = get(ctx, "stats");
    if (s != NULL && *s != '\0' && parse_stats(s, r) != 0) {
        set_err(err, errsz, "stats must be days, ms,ms or date,date");
        return -EINVAL;
    }
    if (flag_param(get, ctx, "history", 1, &r->history, err, errsz) != 0 ||
        flag_param(get, ctx, "only-live-offers", 0, &r->only_live_offers, err, errsz) != 0 ||
        flag_param(get, ctx, "rating", 0, &r->rating, err, errsz) != 0 ||
        flag_param(get, ctx, "buybox", 0, &r->buybox, err, errsz) != 0 ||
        flag_param(get, ctx, "stock", 0, &r->stock, err, errsz) != 0 ||
        flag_param(get, ctx, "historical-variations", 0, &r->historical_variations, err, errsz) !=
            0)
        return -EINVAL;
    int64_t v;
    s = get(ctx, "days");
    if (s != NULL && *s != '\0') {
        if (sim_parse_i64(s, &v) != 0 || v < 0) {
            set_err(err, errsz, "days must be a non-negative integer");
            return -EINVAL;
        }
        r->days = v;
    }
    r->update = 1;
    s = get(ctx, "update");
    if (s != NULL && *s != '\0') {
        if (sim_parse_i64(s, &v) != 0 || v < -1) {
            set_err(err, errsz, "update must be an integer >= -1");
            return -EINVAL;
        }
        r->update = v > 100000 ? 100000 : (int)v;
    }
    s = get(ctx, "offers");
    if (s != NULL && *s != '\0') {
        if (sim_parse_i64(s, &v) != 0 || v < 0) {
            set_err(err, errsz, "offers must be an integer between 20 and 100");
            return -EINVAL;
        }
        if (v == 0 && !offers_zero_ok) {
            set_err(err, errsz, "offers must be between 20 and 100");
            return -EINVAL;
        }
        r->offers = v == 0 ? 0 : v < 20 ? 20 : v > 100 ? 100 : (int)v;
    }
    return 0;
}
