/*
 * test_web_api.c: the web API without HTTP (web/api.h): a store filled by the test, requests
 * handed to web_api_handle. Every endpoint's answer and every error status: the deal pages
 * are the objects `kdeals deals --format json` writes for the same filter (vw_json_write),
 * a bad filter is a 400 naming the parameter, the page size is capped, a mark needs a JSON
 * body and the custom header, bumps the revision, logs a change and leaves the default view,
 * a missing store is a 503, and the history and the event payloads read as documented.
 */
#include "kd_test.h"

#include "base/clock.h"
#include "judge/judge.h"
#include "judge/rules.h"
#include "store/store.h"
#include "view/export.h"
#include "view/filter.h"
#include "web/api.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <yajl/yajl_tree.h>

#define NOW_MS 1764000000000LL
#define N_RECS 40

static const char *store_name = "store"; /* a test that needs no store yet names another */

static const char *store_path(void)
{
    static char path[200];
    snprintf(path, sizeof(path), "%s/%s", kd_test_tmpdir(), store_name);
    return path;
}

/* Record number N: ASIN B000000NNN, ROI and rank spread by N; every fifth one a loser. */
static void make_record(struct st_record *r, unsigned n)
{
    st_record_init(r);
    snprintf(r->asin, sizeof(r->asin), "B%09u", n);
    r->domain = 1;
    char title[64];
    snprintf(title, sizeof(title), "Book <b>%u</b> \"quoted\"", n);
    st_record_set_title(r, title, strlen(title));
    st_record_set_category(r, "Books", 5);
    r->source = ST_SOURCE_DEALS;
    r->in.root_category = 283155;
    r->in.used_avg90_cents = n % 5 == 4 ? 1500 : 4000 + 100 * n;
    r->in.used_buy_box_cents = -1;
    r->in.drops365 = 40;
    r->in.drops30 = (int32_t)n;
    r->in.sales_rank = 1000 * (n + 1);
    r->in.fees_known = true;
    r->in.referral_bp = 1500;
    r->in.fba_fee_cents = 350;
    r->in.buy_source = JD_BUY_OFFER;
    r->in.buy_condition = 3;
    r->in.buy_price_cents = 1000 + 7 * n;
    r->in.buy_shipping_cents = 399;
    snprintf(r->in.buy_seller_id, sizeof(r->in.buy_seller_id), "A2SELLER%u", n);
    r->in.buy_seen_ms = NOW_MS;
    r->in.data_ms = NOW_MS;
    struct jd_rules rules;
    jd_rules_default(&rules);
    jd_judge(&r->in, &rules, &r->v);
    r->state = r->v.deal ? ST_STATE_DEAL : ST_STATE_REJECTED;
    r->rules_hash = jd_rules_hash(&rules);
    r->judged_ms = NOW_MS;
    r->first_seen_ms = NOW_MS;
    r->deal_since_ms = r->v.deal ? NOW_MS : 0;
    r->last_checked_ms = NOW_MS + n;
    r->next_check_ms = r->v.deal ? NOW_MS + 3600000 : 0;
    r->revision = 1;
}

static int fill(struct st_txn *txn, void *ud)
{
    (void)ud;
    for (unsigned n = 0; n < N_RECS; n++) {
        struct st_record r;
        make_record(&r, n);
        int rc = st_record_put(txn, &r, ST_EV_COMMIT, NOW_MS);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static void fill_store(void)
{
    struct st_options so = {.path = store_path()};
    struct st_env *env;
    char err[512];
    if (st_open(&so, &env, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    assert_int_equal(st_write(env, fill, NULL), 0);
    st_close(env);
}

static struct web_api *open_api(struct cfg *c)
{
    cfg_defaults(c);
    snprintf(c->store_path, sizeof(c->store_path), "%s", store_path());
    snprintf(c->daemon_run_dir, sizeof(c->daemon_run_dir), "%s", kd_test_tmpdir());
    struct web_api *api;
    char instance[32];
    snprintf(instance, sizeof(instance), "%s", kd_test_instance());
    struct web_api_options o = {.cfg = c, .instance = instance};
    assert_int_equal(web_api_open(&api, &o), 0);
    return api;
}

/* METHOD PATH?QUERY with BODY (may be NULL), answered; the reply's body parsed into *DOC. */
static unsigned call(struct web_api *api, const char *method, const char *target, const char *body,
                     bool write_header, yajl_val *doc, struct web_reply *keep)
{
    char buf[1024];
    snprintf(buf, sizeof(buf), "%s", target);
    struct web_param params[WEB_PARAMS_MAX];
    size_t n = 0;
    char *q = strchr(buf, '?');
    if (q != NULL) {
        *q++ = '\0';
        for (char *kv = strtok(q, "&"); kv != NULL && n < WEB_PARAMS_MAX; kv = strtok(NULL, "&")) {
            char *eq = strchr(kv, '=');
            if (eq != NULL)
                *eq = '\0';
            params[n].name = kv;
            params[n].value = eq != NULL ? eq + 1 : "";
            n++;
        }
    }
    struct web_request rq = {.method = method,
                             .path = buf,
                             .params = params,
                             .n_params = n,
                             .content_type = body != NULL ? "application/json" : NULL,
                             .write_header = write_header,
                             .body = body,
                             .body_len = body != NULL ? strlen(body) : 0,
                             .now_ms = NOW_MS + 1000};
    struct web_reply r;
    web_api_handle(api, &rq, &r);
    assert_non_null(r.body);
    assert_true(r.len > 0);
    if (doc != NULL) {
        char *text = strndup(r.body, r.len);
        char err[256];
        *doc = yajl_tree_parse(text, err, sizeof(err));
        if (*doc == NULL)
            fail_msg("%s %s: not JSON (%s): %s", method, target, err, text);
        free(text);
    }
    unsigned status = r.status;
    if (keep != NULL)
        *keep = r;
    else
        free(r.body);
    return status;
}

static yajl_val get(yajl_val v, const char *a, const char *b)
{
    const char *path[] = {a, b, NULL};
    return yajl_tree_get(v, path, yajl_t_any);
}

/* An error reply names STATUS, and PARAMETER when not NULL. */
static void expect_error(yajl_val doc, unsigned status, const char *parameter)
{
    yajl_val st = get(doc, "error", "status");
    assert_non_null(st);
    assert_int_equal(YAJL_GET_INTEGER(st), status);
    assert_non_null(YAJL_GET_STRING(get(doc, "error", "message")));
    if (parameter != NULL)
        assert_string_equal(YAJL_GET_STRING(get(doc, "error", "parameter")), parameter);
}

/* The deals array of a page, as the text vw_json_write would write it for FILTER. */
static char *cli_text(const char *const *args, size_t n_args, size_t limit)
{
    struct st_options so = {.path = store_path()};
    struct st_env *env;
    char err[512];
    assert_int_equal(st_open(&so, &env, err, sizeof(err)), 0);
    struct st_record *recs = calloc(N_RECS + 8, sizeof(*recs));
    size_t n = 0;
    struct st_txn *txn;
    struct st_cursor *cur;
    assert_int_equal(st_read_begin(env, &txn), 0);
    assert_int_equal(st_cursor_open(txn, ST_DB_PRODUCTS, &cur), 0);
    while (st_cursor_next_record(cur, &recs[n]) == 0)
        n++;
    st_cursor_close(cur);
    st_read_end(txn);
    st_close(env);
    struct vw_filter f;
    vw_filter_init(&f, 1);
    for (size_t i = 0; i + 1 < n_args; i += 2)
        assert_int_equal(vw_filter_parse_arg(&f, args[i], args[i + 1], err, sizeof(err)), 0);
    f.limit = limit;
    size_t idx[N_RECS + 8], shown, matched;
    vw_select(recs, n, &f, NOW_MS + 1000, idx, &shown, &matched);
    struct jd_rules rules;
    struct cfg c;
    cfg_defaults(&c);
    jd_rules_from_cfg(&c, &rules);
    struct vw_out o = {.rules = &rules};
    char *text = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&text, &len);
    assert_int_equal(vw_json_write(mem, recs, idx, shown, &o), 0);
    fclose(mem);
    free(recs);
    return text;
}

/* The "deals" array of a raw page reply, as text. */
static char *deals_text(const struct web_reply *r)
{
    const char *start = strstr(r->body, "\"deals\":");
    assert_non_null(start);
    start += strlen("\"deals\":");
    size_t len = r->len - (size_t)(start - r->body);
    while (len > 0 && (start[len - 1] == '\n' || start[len - 1] == '}'))
        len--;
    return strndup(start, len);
}

static void test_deals_as_the_cli(void **state)
{
    (void)state;
    fill_store();
    struct cfg c;
    struct web_api *api = open_api(&c);
    struct {
        const char *query;
        const char *args[6];
        size_t n_args, limit;
    } cases[] = {
        {"/api/v1/deals", {NULL}, 0, WEB_LIMIT_DEFAULT},
        {"/api/v1/deals?sort=rank&limit=7", {"sort", "rank"}, 2, 7},
        {"/api/v1/deals?min_roi=60&max_rank=20000",
         {"min_roi", "60", "max_rank", "20000"},
         4,
         WEB_LIMIT_DEFAULT},
        {"/api/v1/deals?verdict=all&sort=profit&limit=500",
         {"verdict", "all", "sort", "profit"},
         4,
         500},
        {"/api/v1/deals?min-drops30=10&sort=fresh",
         {"--min-drops30", "10", "sort", "fresh"},
         4,
         WEB_LIMIT_DEFAULT},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct web_reply r;
        assert_int_equal(call(api, "GET", cases[i].query, NULL, false, NULL, &r), 200);
        char *got = deals_text(&r);
        char *want = cli_text(cases[i].args, cases[i].n_args, cases[i].limit);
        size_t wl = strlen(want);
        while (wl > 0 && want[wl - 1] == '\n')
            want[--wl] = '\0';
        if (strcmp(got, want) != 0)
            fail_msg("%s: the API's deals differ from the CLI's:\n%.300s\n%.300s", cases[i].query,
                     got, want);
        free(got);
        free(want);
        free(r.body);
    }
    /* Paging: offset and limit walk every match exactly once. */
    yajl_val doc;
    assert_int_equal(
        call(api, "GET", "/api/v1/deals?verdict=all&limit=500", NULL, false, &doc, NULL), 200);
    assert_int_equal(YAJL_GET_INTEGER(get(doc, "matched", NULL)), N_RECS);
    assert_int_equal(YAJL_GET_INTEGER(get(doc, "count", NULL)), N_RECS);
    assert_string_equal(YAJL_GET_STRING(get(doc, "filter", "verdict")), "all");
    yajl_tree_free(doc);
    int seen = 0;
    for (int off = 0; off < N_RECS; off += 15) {
        char q[128];
        snprintf(q, sizeof(q), "/api/v1/deals?verdict=all&limit=15&offset=%d", off);
        assert_int_equal(call(api, "GET", q, NULL, false, &doc, NULL), 200);
        seen += (int)YAJL_GET_INTEGER(get(doc, "count", NULL));
        yajl_tree_free(doc);
    }
    assert_int_equal(seen, N_RECS);
    web_api_close(api);
}

static void test_errors(void **state)
{
    (void)state;
    fill_store();
    struct cfg c;
    struct web_api *api = open_api(&c);
    struct {
        const char *method, *target;
        unsigned status;
        const char *parameter;
    } cases[] = {
        {"GET", "/api/v1/deals?min_roi=abc", 400, "min_roi"},
        {"GET", "/api/v1/deals?max_rank=0", 400, "max_rank"},
        {"GET", "/api/v1/deals?min_profit=1.234", 400, "min_profit"},
        {"GET", "/api/v1/deals?min_margin=5", 400, "min_margin"},
        {"GET", "/api/v1/deals?sort=cheapest", 400, "sort"},
        {"GET", "/api/v1/deals?limit=0", 400, "limit"},
        {"GET", "/api/v1/deals?limit=501", 400, "limit"},
        {"GET", "/api/v1/deals?view=nosuch", 400, "view"},
        {"GET", "/api/v1/deals?since=yesterday", 400, "since"},
        {"GET", "/api/v1/deals/not-an-asin", 400, NULL},
        {"GET", "/api/v1/deals/B000000001?domain=7", 400, "domain"},
        {"GET", "/api/v1/deals/B999999999", 404, NULL},
        {"GET", "/api/v1/nothing", 404, NULL},
        {"GET", "/api/v2/deals", 404, NULL},
        {"POST", "/api/v1/deals", 405, NULL},
        {"DELETE", "/api/v1/deals/B000000001", 405, NULL},
        {"GET", "/api/v1/deals/B000000001/mark", 405, NULL},
        {"PUT", "/metrics", 405, NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        yajl_val doc;
        struct web_reply r;
        unsigned st = call(api, cases[i].method, cases[i].target, NULL, false, &doc, &r);
        if (st != cases[i].status)
            fail_msg("%s %s: %u, expected %u: %.*s", cases[i].method, cases[i].target, st,
                     cases[i].status, (int)r.len, r.body);
        expect_error(doc, cases[i].status, cases[i].parameter);
        if (st == 405)
            assert_non_null(r.allow);
        yajl_tree_free(doc);
        free(r.body);
    }
    /* A switch without a value turns it on, as on the command line. */
    yajl_val doc;
    assert_int_equal(call(api, "GET", "/api/v1/deals?no_hazmat", NULL, false, &doc, NULL), 200);
    assert_string_equal(YAJL_GET_STRING(get(doc, "filter", "no_hazmat")), "true");
    yajl_tree_free(doc);
    web_api_close(api);
}

static void test_one_deal_and_marks(void **state)
{
    (void)state;
    fill_store();
    struct cfg c;
    struct web_api *api = open_api(&c);
    yajl_val doc;
    assert_int_equal(call(api, "GET", "/api/v1/deals/B000000003", NULL, false, &doc, NULL), 200);
    assert_string_equal(YAJL_GET_STRING(get(doc, "deal", "asin")), "B000000003");
    assert_string_equal(YAJL_GET_STRING(get(doc, "deal", "title")), "Book <b>3</b> \"quoted\"");
    assert_true(YAJL_IS_ARRAY(get(doc, "deal", "reasons")));
    assert_non_null(get(doc, "deal", "fee_referral_cents"));
    assert_string_equal(YAJL_GET_STRING(get(doc, "deal", "keepa_url")),
                        "https://keepa.com/#!product/1-B000000003");
    yajl_val hist = get(doc, "history", NULL);
    assert_true(YAJL_IS_ARRAY(hist));
    assert_int_equal(hist->u.array.len, 1);
    assert_string_equal(YAJL_GET_STRING(get(hist->u.array.values[0], "event", NULL)), "commit");
    yajl_tree_free(doc);

    /* Writes are guarded: a JSON body, the custom header. */
    const char *ignored = "{\"mark\":\"ignored\"}";
    struct web_request rq = {.method = "POST",
                             .path = "/api/v1/deals/B000000003/mark",
                             .content_type = "text/plain",
                             .write_header = true,
                             .body = ignored,
                             .body_len = strlen(ignored),
                             .now_ms = NOW_MS};
    struct web_reply r;
    web_api_handle(api, &rq, &r);
    assert_int_equal(r.status, 415);
    free(r.body);
    assert_int_equal(call(api, "POST", "/api/v1/deals/B000000003/mark", ignored, false, &doc, NULL),
                     403);
    yajl_tree_free(doc);
    const char *bad[] = {"{}",
                         "[1]",
                         "{\"mark\":\"sold\"}",
                         "{\"mark\":3}",
                         "{\"mark\":\"ignored\",\"cost\":\"4\"}",
                         "{\"mark\":\"bought\",\"cost\":\"four\"}",
                         "{\"mark\":\"bought\",\"qty\":0}",
                         "not json"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        unsigned st = call(api, "POST", "/api/v1/deals/B000000003/mark", bad[i], true, &doc, NULL);
        if (st != 400)
            fail_msg("mark body %s: %u, expected 400", bad[i], st);
        yajl_tree_free(doc);
    }
    assert_int_equal(call(api, "POST", "/api/v1/deals/B999999999/mark", ignored, true, &doc, NULL),
                     404);
    yajl_tree_free(doc);

    /* Ignored: the revision moves, a change is logged, the default view drops it. */
    uint64_t last_before = 0;
    size_t n;
    struct st_change ch[4];
    assert_int_equal(web_api_changes(api, 0, ch, 0, &n, &last_before), 0);
    assert_int_equal(call(api, "GET", "/api/v1/deals?limit=500", NULL, false, &doc, NULL), 200);
    int64_t matched = YAJL_GET_INTEGER(get(doc, "matched", NULL));
    yajl_tree_free(doc);
    assert_int_equal(call(api, "POST", "/api/v1/deals/B000000003/mark", ignored, true, &doc, NULL),
                     200);
    assert_string_equal(YAJL_GET_STRING(get(doc, "deal", "mark")), "ignored");
    assert_int_equal(YAJL_GET_INTEGER(get(doc, "deal", "revision")), 2);
    yajl_tree_free(doc);
    uint64_t last = 0;
    assert_int_equal(web_api_changes(api, last_before, ch, 4, &n, &last), 0);
    assert_int_equal(n, 1);
    assert_int_equal(last, last_before + 1);
    assert_string_equal(ch[0].asin, "B000000003");
    assert_int_equal(ch[0].event, ST_EV_MARK);
    char *json;
    size_t len;
    web_api_change_json(&ch[0], &json, &len);
    assert_non_null(strstr(json, "\"event\":\"mark\""));
    assert_non_null(strstr(json, "\"state\":\"deal\""));
    free(json);
    assert_int_equal(call(api, "GET", "/api/v1/deals?limit=500", NULL, false, &doc, NULL), 200);
    assert_int_equal(YAJL_GET_INTEGER(get(doc, "matched", NULL)), matched - 1);
    yajl_tree_free(doc);
    assert_int_equal(
        call(api, "GET", "/api/v1/deals?limit=500&marked=true", NULL, false, &doc, NULL), 200);
    assert_int_equal(YAJL_GET_INTEGER(get(doc, "matched", NULL)), matched);
    yajl_tree_free(doc);

    /* Bought with the seller's cost and units; cleared again. */
    assert_int_equal(call(api, "POST", "/api/v1/deals/B000000003/mark",
                          "{\"mark\":\"bought\",\"cost\":\"12.50\",\"qty\":3}", true, &doc, NULL),
                     200);
    assert_string_equal(YAJL_GET_STRING(get(doc, "deal", "mark")), "bought");
    assert_int_equal(YAJL_GET_INTEGER(get(doc, "deal", "bought_cost_cents")), 1250);
    assert_int_equal(YAJL_GET_INTEGER(get(doc, "deal", "bought_qty")), 3);
    yajl_tree_free(doc);
    assert_int_equal(
        call(api, "POST", "/api/v1/deals/B000000003/mark", "{\"mark\":\"none\"}", true, &doc, NULL),
        200);
    assert_string_equal(YAJL_GET_STRING(get(doc, "deal", "mark")), "none");
    assert_true(YAJL_IS_NULL(get(doc, "deal", "bought_cost_cents")));
    assert_int_equal(YAJL_GET_INTEGER(get(doc, "deal", "revision")), 4);
    yajl_tree_free(doc);
    assert_int_equal(call(api, "GET", "/api/v1/deals?limit=500", NULL, false, &doc, NULL), 200);
    assert_int_equal(YAJL_GET_INTEGER(get(doc, "matched", NULL)), matched);
    yajl_tree_free(doc);
    web_api_close(api);
}

/* A named view of the config ([view.NAME]): listed, applied first, overridden by the query. */
static void test_named_views(void **state)
{
    (void)state;
    fill_store();
    char conf[300], text[600];
    snprintf(conf, sizeof(conf), "%s/kdeals.conf", kd_test_tmpdir());
    snprintf(text, sizeof(text),
             "[store]\npath = %s\n[view.best]\nmin_roi = 60\nsort = rank\n"
             "[view.cheap]\nmax_rank = 9000\n",
             store_path());
    FILE *f = fopen(conf, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    struct cfg c;
    char err[512];
    if (cfg_load_file(conf, &c, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    struct web_api *api;
    struct web_api_options o = {.cfg = &c, .instance = kd_test_instance()};
    assert_int_equal(web_api_open(&api, &o), 0);
    yajl_val doc;
    assert_int_equal(call(api, "GET", "/api/v1/views", NULL, false, &doc, NULL), 200);
    yajl_val v = get(doc, "views", NULL);
    assert_int_equal(v->u.array.len, 2);
    assert_string_equal(YAJL_GET_STRING(get(v->u.array.values[0], "name", NULL)), "best");
    assert_string_equal(YAJL_GET_STRING(get(v->u.array.values[0], "keys", "min_roi")), "60");
    yajl_tree_free(doc);
    struct web_reply a, b;
    assert_int_equal(call(api, "GET", "/api/v1/deals?view=best", NULL, false, NULL, &a), 200);
    assert_int_equal(call(api, "GET", "/api/v1/deals?min_roi=60&sort=rank", NULL, false, NULL, &b),
                     200);
    char *ta = deals_text(&a), *tb = deals_text(&b);
    assert_string_equal(ta, tb);
    free(ta);
    free(tb);
    free(a.body);
    free(b.body);
    /* The query's keys replace the view's, in any order. */
    assert_int_equal(
        call(api, "GET", "/api/v1/deals?sort=profit&view=best", NULL, false, &doc, NULL), 200);
    assert_string_equal(YAJL_GET_STRING(get(doc, "filter", "sort")), "profit");
    assert_string_equal(YAJL_GET_STRING(get(doc, "filter", "min_roi")), "60");
    yajl_tree_free(doc);
    assert_int_equal(call(api, "GET", "/api/v1/deals?view=worst", NULL, false, &doc, NULL), 400);
    expect_error(doc, 400, "view");
    const char *msg = YAJL_GET_STRING(get(doc, "error", "message"));
    assert_non_null(msg);
    assert_non_null(strstr(msg, "best"));
    yajl_tree_free(doc);
    web_api_close(api);
}

static void test_other_endpoints(void **state)
{
    (void)state;
    store_name = "store-later";
    struct cfg c;
    struct web_api *api = open_api(&c);
    yajl_val doc;
    /* No store yet: the deals are unavailable, and say why. */
    struct web_reply r;
    assert_int_equal(call(api, "GET", "/api/v1/deals", NULL, false, &doc, &r), 503);
    assert_true(r.retry_after_s > 0);
    const char *msg = YAJL_GET_STRING(get(doc, "error", "message"));
    assert_non_null(msg);
    assert_non_null(strstr(msg, "no store"));
    free(r.body);
    yajl_tree_free(doc);
    /* No daemon: status says so; the counters are unavailable. */
    assert_int_equal(call(api, "GET", "/api/v1/status", NULL, false, &doc, NULL), 200);
    assert_true(YAJL_IS_FALSE(get(doc, "running", NULL)));
    yajl_tree_free(doc);
    assert_int_equal(call(api, "GET", "/api/v1/stat", NULL, false, &doc, NULL), 503);
    yajl_tree_free(doc);
    assert_int_equal(call(api, "GET", "/metrics", NULL, false, &doc, NULL), 503);
    yajl_tree_free(doc);
    /* The vocabulary is the view's. */
    assert_int_equal(call(api, "GET", "/api/v1/filters", NULL, false, &doc, NULL), 200);
    yajl_val fl = get(doc, "filters", NULL);
    assert_int_equal(fl->u.array.len, VW_K_COUNT);
    assert_string_equal(YAJL_GET_STRING(get(fl->u.array.values[0], "name", NULL)), "min_roi");
    assert_string_equal(YAJL_GET_STRING(get(doc, "currency", NULL)), "USD");
    assert_int_equal(YAJL_GET_INTEGER(get(doc, "limit_max", NULL)), WEB_LIMIT_MAX);
    yajl_tree_free(doc);
    assert_int_equal(call(api, "GET", "/api/v1/views", NULL, false, &doc, NULL), 200);
    assert_true(YAJL_IS_ARRAY(get(doc, "views", NULL)));
    yajl_tree_free(doc);
    assert_int_equal(call(api, "GET", "/api/v1", NULL, false, &doc, NULL), 200);
    assert_true(get(doc, "endpoints", NULL)->u.array.len >= 10);
    yajl_tree_free(doc);
    /* Samples accumulate; one is a JSON object as the event stream sends it. */
    char *json;
    size_t len;
    web_api_sample(api, NOW_MS, &json, &len);
    assert_non_null(json);
    assert_non_null(strstr(json, "\"at_ms\":1764000000000"));
    free(json);
    web_api_sample(api, NOW_MS + 10000, &json, &len);
    free(json);
    assert_int_equal(call(api, "GET", "/api/v1/samples", NULL, false, &doc, NULL), 200);
    assert_int_equal(get(doc, "samples", NULL)->u.array.len, 2);
    yajl_tree_free(doc);
    /* The store appears: the deals follow (it is looked for again after a second). */
    fill_store();
    bool ok = false;
    for (int i = 0; i < 30 && !ok; i++) {
        ok = call(api, "GET", "/api/v1/deals", NULL, false, NULL, NULL) == 200;
        if (!ok)
            usleep(100000);
    }
    assert_true(ok);
    web_api_close(api);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_deals_as_the_cli),   cmocka_unit_test(test_errors),
        cmocka_unit_test(test_one_deal_and_marks), cmocka_unit_test(test_named_views),
        cmocka_unit_test(test_other_endpoints),
    };
    return KD_RUN_TESTS(tests, argc, argv);
}
