/*
 * api.c: the endpoints of the JSON API. See api.h for what it reads and how.
 *
 *   GET  /api/v1                       the endpoints
 *   GET  /api/v1/deals?FILTERS         a page of the deal view (every filter and sort of
 *                                      `kdeals deals`, limit <= WEB_LIMIT_MAX, offset)
 *   GET  /api/v1/deals/ASIN            one record with its reasons and history
 *   POST /api/v1/deals/ASIN/mark       {"mark": "bought"|"ignored"|"none", "cost", "qty"}
 *   GET  /api/v1/status                `kdeals status --json`
 *   GET  /api/v1/stat                  `kdeals stat --json`, rates over the last samples
 *   GET  /api/v1/samples               the engine samples of the last hours (the chart)
 *   GET  /api/v1/filters               the view's vocabulary, the sorts, the currency
 *   GET  /api/v1/views                 the config's named views (presets)
 *   GET  /metrics                      `kdeals stat --prom`
 *
 * (GET /api/v1/events, the event stream, is web/server.c's: it needs the connection.)
 */
#include "web/api.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <yajl/yajl_gen.h>
#include <yajl/yajl_tree.h>

#include "base/clock.h"
#include "base/log.h"
#include "judge/market.h"
#include "judge/rules.h"
#include "shm/counters.h"
#include "shm/report.h"
#include "shm/segment.h"
#include "shm/tokens.h"
#include "store/record.h"
#include "store/store.h"
#include "view/export.h"
#include "view/filter.h"
#include "view/preset.h"
#include "view/time.h"

#define JSON_TYPE "application/json; charset=utf-8"
#define PROM_TYPE "text/plain; version=0.0.4; charset=utf-8"

#define RETRY_OPEN_MS     1000 /* a store or segment that is not there is looked for again */
#define SNAPSHOT_IDLE_MS  5000 /* without a change log, the snapshot is read again this often */
#define BUDGET_CHECK_EACH 256  /* records read between looks at the clock */

struct snapshot {
    struct st_record *recs;
    size_t n, cap;
    uint64_t seq;    /* the change log's last seq when it was read */
    int64_t read_ms; /* monotonic */
    bool valid;
    unsigned bad; /* records this binary could not decode */
};

struct web_api {
    struct cfg cfg;
    struct jd_rules rules;
    char instance[SHM_INSTANCE_MAX];
    char run_dir[CFG_STR_MAX + 1];

    struct st_env *env;
    int64_t env_tried_ms; /* monotonic, of the last failed open */
    char env_err[CFG_STR_MAX + 128];

    struct shm_segment seg;
    bool attached;
    int64_t seg_tried_ms;

    struct snapshot snap;

    struct web_sample *samples; /* ring of WEB_SAMPLES_MAX */
    size_t samples_head, samples_n;
    /* Counter totals at the last two samples, for the rates of /api/v1/stat. */
    int64_t totals[2][SHM_COUNTER_COUNT];
    int64_t totals_ms[2];
    uint64_t totals_gen[2];
    unsigned totals_n;
};

/* ---- replies --------------------------------------------------------------------------- */

static yajl_gen gen_new(void)
{
    return yajl_gen_alloc(NULL);
}

/* Moves G's document into OUT as a STATUS reply and frees G. */
static void reply_gen(struct web_reply *out, unsigned status, yajl_gen g)
{
    const unsigned char *buf;
    size_t len = 0;
    memset(out, 0, sizeof(*out));
    out->status = status;
    out->content_type = JSON_TYPE;
    if (g != NULL && yajl_gen_get_buf(g, &buf, &len) == yajl_gen_status_ok && len > 0) {
        out->body = malloc(len + 1);
        if (out->body != NULL) {
            memcpy(out->body, buf, len);
            out->body[len] = '\n';
            out->len = len + 1;
        }
    }
    if (g != NULL)
        yajl_gen_free(g);
    if (out->body == NULL) {
        static const char oom[] = "{\"error\":{\"status\":500,\"message\":\"out of memory\"}}\n";
        out->status = 500;
        out->body = strdup(oom);
        out->len = out->body != NULL ? strlen(oom) : 0;
    }
}

static void gkey(yajl_gen g, const char *k)
{
    yajl_gen_string(g, (const unsigned char *)k, strlen(k));
}

static void gstr(yajl_gen g, const char *k, const char *v)
{
    gkey(g, k);
    if (v == NULL)
        yajl_gen_null(g);
    else
        yajl_gen_string(g, (const unsigned char *)v, strlen(v));
}

static void gint(yajl_gen g, const char *k, long long v)
{
    gkey(g, k);
    yajl_gen_integer(g, v);
}

void web_api_error(struct web_reply *out, unsigned status, const char *parameter, const char *fmt,
                   ...)
{
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    kd_vformat_redacted(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    yajl_gen g = gen_new();
    if (g != NULL) {
        yajl_gen_map_open(g);
        gkey(g, "error");
        yajl_gen_map_open(g);
        gint(g, "status", status);
        gstr(g, "message", msg);
        if (parameter != NULL)
            gstr(g, "parameter", parameter);
        yajl_gen_map_close(g);
        yajl_gen_map_close(g);
    }
    reply_gen(out, status, g);
}

/* ---- the store and the segment, opened when first needed -------------------------------- */

/* The store, or NULL with ERR saying why (an absent store is looked for again later). */
static struct st_env *store(struct web_api *api)
{
    if (api->env != NULL)
        return api->env;
    int64_t now = kd_mono_ns() / KD_NS_PER_MS;
    if (api->env_tried_ms != 0 && now - api->env_tried_ms < RETRY_OPEN_MS)
        return NULL;
    api->env_tried_ms = now;
    char data[CFG_STR_MAX + 16];
    struct stat sb;
    snprintf(data, sizeof(data), "%s/data.mdb", api->cfg.store_path);
    if (stat(data, &sb) != 0) {
        snprintf(api->env_err, sizeof(api->env_err),
                 "no store at %s yet (the daemon creates it when it starts)", api->cfg.store_path);
        return NULL;
    }
    /* Read-write, for marks; everything else is read in read transactions. */
    struct st_options so = {.path = api->cfg.store_path,
                            .map_size_bytes = (uint64_t)api->cfg.store_map_size_mb << 20,
                            .max_map_size_bytes = (uint64_t)api->cfg.store_max_map_size_mb << 20};
    if (st_open(&so, &api->env, api->env_err, sizeof(api->env_err)) != 0) {
        api->env = NULL;
        kd_warn("web: %s", api->env_err);
        return NULL;
    }
    api->env_tried_ms = 0;
    return api->env;
}

/* The segment through a read-only mapping, attached again after a daemon restart; NULL when
 * the daemon does not run. */
static const struct shm_layout *segment(struct web_api *api)
{
    if (api->attached && shm_segment_check(&api->seg) != 0) {
        shm_segment_detach(&api->seg);
        api->attached = false;
    }
    if (!api->attached) {
        int64_t now = kd_mono_ns() / KD_NS_PER_MS;
        if (api->seg_tried_ms != 0 && now - api->seg_tried_ms < RETRY_OPEN_MS)
            return NULL;
        api->seg_tried_ms = now;
        char err[256];
        if (shm_segment_attach(&api->seg, api->instance, SHM_READ_ONLY, err, sizeof(err)) != 0)
            return NULL;
        api->attached = true;
        api->seg_tried_ms = 0;
    }
    return api->seg.layout;
}

/* ---- the snapshot of records ------------------------------------------------------------ */

/*
 * Makes api->snap current: read again when the change log moved since it was read (or, with
 * an empty log, when it is older than SNAPSHOT_IDLE_MS). Returns 0, -ETIMEDOUT when reading
 * took longer than WEB_READ_BUDGET_MS (the old snapshot is dropped), -ENOENT when there is no
 * store, or another negative errno.
 */
static int snapshot(struct web_api *api)
{
    struct st_env *env = store(api);
    if (env == NULL)
        return -ENOENT;
    int64_t start = kd_mono_ns();
    struct st_txn *txn;
    int rc = st_read_begin(env, &txn);
    if (rc != 0)
        return rc;
    uint64_t seq = 0;
    st_changes_last(txn, &seq);
    struct snapshot *s = &api->snap;
    if (s->valid && seq == s->seq &&
        (seq != 0 || start / KD_NS_PER_MS - s->read_ms < SNAPSHOT_IDLE_MS)) {
        st_read_end(txn);
        return 0;
    }
    s->valid = false;
    s->n = 0;
    s->bad = 0;
    struct st_cursor *cur = NULL;
    rc = st_cursor_open(txn, ST_DB_PRODUCTS, &cur);
    for (size_t i = 0; rc == 0; i++) {
        if (s->n == s->cap) {
            size_t cap = s->cap ? s->cap * 2 : 256;
            struct st_record *more = realloc(s->recs, cap * sizeof(*more));
            if (more == NULL) {
                rc = -ENOMEM;
                break;
            }
            s->recs = more;
            s->cap = cap;
        }
        int r = st_cursor_next_record(cur, &s->recs[s->n]);
        if (r == -ENOENT)
            break;
        if (r == -EBADMSG || r == -ENOTSUP)
            s->bad++;
        else if (r != 0)
            rc = r;
        else
            s->n++;
        if (i % BUDGET_CHECK_EACH == BUDGET_CHECK_EACH - 1 &&
            kd_mono_ns() - start > (int64_t)WEB_READ_BUDGET_MS * KD_NS_PER_MS)
            rc = -ETIMEDOUT;
    }
    st_cursor_close(cur);
    st_read_end(txn);
    if (rc != 0) {
        s->n = 0;
        return rc;
    }
    s->seq = seq;
    s->read_ms = start / KD_NS_PER_MS;
    s->valid = true;
    return 0;
}

/* Fills OUT with the 503 (or 500) that a failed snapshot or store read deserves. */
static void store_error(struct web_api *api, struct web_reply *out, int rc)
{
    if (rc == -ENOENT && api->env == NULL) {
        web_api_error(out, 503, NULL, "store unavailable: %s", api->env_err);
        out->retry_after_s = 5;
    } else if (rc == -ETIMEDOUT) {
        web_api_error(out, 503, NULL,
                      "reading the store took longer than its budget of %d ms; try again",
                      WEB_READ_BUDGET_MS);
        out->retry_after_s = 5;
    } else if (rc == -ENOMEM) {
        web_api_error(out, 503, NULL, "out of memory reading the store");
        out->retry_after_s = 5;
    } else {
        web_api_error(out, 503, NULL, "store unavailable: %s", st_strerror(rc));
        out->retry_after_s = 5;
    }
}

/* ---- /api/v1/deals ---------------------------------------------------------------------- */

/* The config's named view NAME ([view.NAME], view/preset.h) into F; -ENOENT with ERR naming
 * the views there are. */
static int preset(struct web_api *api, const char *name, struct vw_filter *f, char *err,
                  size_t errlen)
{
    return vw_preset_apply(&api->cfg, name, f, err, errlen);
}

/* The filter of a deals request; false with OUT filled (400) when a parameter is wrong. */
static bool parse_filter(struct web_api *api, const struct web_request *rq, struct vw_filter *f,
                         struct web_reply *out)
{
    char err[512];
    vw_filter_init(f, (unsigned)api->cfg.keepa_domain);
    /* A named view first, so that the other parameters override its keys. */
    for (size_t i = 0; i < rq->n_params; i++) {
        if (strcmp(rq->params[i].name, "view") == 0 &&
            preset(api, rq->params[i].value, f, err, sizeof(err)) != 0) {
            web_api_error(out, 400, "view", "%s", err);
            return false;
        }
    }
    for (size_t i = 0; i < rq->n_params; i++) {
        const struct web_param *p = &rq->params[i];
        if (strcmp(p->name, "view") == 0)
            continue;
        int arity = vw_filter_arity(p->name);
        /* A switch given without a value (?no_amazon) turns it on, as on the command line. */
        const char *value = arity == 0 && p->value[0] == '\0' ? NULL : p->value;
        if (vw_filter_parse_arg(f, p->name, value, err, sizeof(err)) != 0) {
            web_api_error(out, 400, p->name, "%s", err);
            return false;
        }
    }
    if (!(f->given & (1u << VW_K_LIMIT))) {
        f->limit = WEB_LIMIT_DEFAULT;
    } else if (f->limit == 0 || f->limit > WEB_LIMIT_MAX) {
        web_api_error(out, 400, "limit",
                      "limit '%zu': 1 to %d deals per page (page through more with offset)",
                      f->limit, WEB_LIMIT_MAX);
        return false;
    }
    return true;
}

/* The filter's keys as an object {"name": "value"} (vw_filter_format's lines). */
static void gen_filter(yajl_gen g, const struct vw_filter *f)
{
    char text[2048];
    vw_filter_format(f, text, sizeof(text));
    yajl_gen_map_open(g);
    for (char *line = strtok(text, "\n"); line != NULL; line = strtok(NULL, "\n")) {
        char *eq = strchr(line, '=');
        if (eq == NULL)
            continue;
        *eq = '\0';
        gstr(g, line, eq + 1);
    }
    yajl_gen_map_close(g);
}

static void deals_list(struct web_api *api, const struct web_request *rq, struct web_reply *out)
{
    struct vw_filter f;
    if (!parse_filter(api, rq, &f, out))
        return;
    int rc = snapshot(api);
    if (rc != 0) {
        store_error(api, out, rc);
        return;
    }
    struct snapshot *s = &api->snap;
    size_t *idx = malloc((s->n > 0 ? s->n : 1) * sizeof(*idx));
    yajl_gen g = gen_new();
    if (idx == NULL || g == NULL) {
        free(idx);
        if (g != NULL)
            yajl_gen_free(g);
        web_api_error(out, 503, NULL, "out of memory");
        return;
    }
    size_t shown = 0, matched = 0;
    vw_select(s->recs, s->n, &f, rq->now_ms, idx, &shown, &matched);
    struct vw_out o = {.rules = &api->rules};
    yajl_gen_map_open(g);
    gint(g, "matched", (long long)matched);
    gint(g, "offset", (long long)f.offset);
    gint(g, "limit", (long long)f.limit);
    gint(g, "count", (long long)shown);
    gint(g, "seq", (long long)s->seq);
    gint(g, "generated_ms", rq->now_ms);
    gint(g, "undecodable", s->bad);
    gkey(g, "filter");
    gen_filter(g, &f);
    gkey(g, "deals");
    yajl_gen_array_open(g);
    for (size_t i = 0; i < shown; i++)
        vw_json_record(g, &s->recs[idx[i]], &o);
    yajl_gen_array_close(g);
    yajl_gen_map_close(g);
    free(idx);
    reply_gen(out, 200, g);
}

/* ---- /api/v1/deals/ASIN and its mark ---------------------------------------------------- */

/* The key of ASIN on the marketplace of the request (?domain=, else the config's). */
static bool deal_key(struct web_api *api, const struct web_request *rq, const char *asin,
                     struct st_key *key, struct web_reply *out)
{
    unsigned domain = (unsigned)api->cfg.keepa_domain;
    for (size_t i = 0; i < rq->n_params; i++) {
        if (strcmp(rq->params[i].name, "domain") != 0)
            continue;
        char *end;
        long d = strtol(rq->params[i].value, &end, 10);
        if (*end != '\0' || jd_market((unsigned)d) == NULL || d <= 0) {
            web_api_error(out, 400, "domain",
                          "domain '%.20s': a Keepa domain id (1 com, 3 de, ...)",
                          rq->params[i].value);
            return false;
        }
        domain = (unsigned)d;
    }
    if (st_key_make(domain, asin, key) != 0) {
        web_api_error(out, 400, NULL, "'%.40s' is not an ASIN (10 capital letters and digits)",
                      asin);
        return false;
    }
    return true;
}

static void deal_one(struct web_api *api, const struct web_request *rq, const char *asin,
                     struct web_reply *out)
{
    struct st_key key;
    if (!deal_key(api, rq, asin, &key, out))
        return;
    struct st_env *env = store(api);
    if (env == NULL) {
        store_error(api, out, -ENOENT);
        return;
    }
    struct st_record *r = malloc(sizeof(*r));
    struct st_history *hist = malloc(ST_HISTORY_MAX * sizeof(*hist));
    size_t nh = 0;
    struct st_txn *txn = NULL;
    int rc = r == NULL || hist == NULL ? -ENOMEM : st_read_begin(env, &txn);
    if (rc == 0) {
        rc = st_record_get(txn, &key, r);
        if (rc == 0)
            st_history_list(txn, &key, hist, ST_HISTORY_MAX, &nh);
        st_read_end(txn);
    }
    if (rc == -ENOENT) {
        web_api_error(out, 404, NULL,
                      "%s is not in the store (only fully fetched products are kept)", asin);
    } else if (rc != 0) {
        store_error(api, out, rc);
    } else {
        yajl_gen g = gen_new();
        struct vw_out o = {.rules = &api->rules};
        yajl_gen_map_open(g);
        gkey(g, "deal");
        vw_json_record(g, r, &o);
        gkey(g, "history");
        vw_json_history(g, hist, nh);
        yajl_gen_map_close(g);
        reply_gen(out, 200, g);
    }
    free(r);
    free(hist);
}

struct mark_job {
    struct st_key key;
    uint8_t mark;
    int64_t cost_cents; /* -1 none */
    int32_t qty;
    int64_t now_ms;
    struct st_record rec; /* the record as stored */
};

/* The write transaction of a mark (st_write may run it more than once). */
static int mark_txn(struct st_txn *txn, void *ud)
{
    struct mark_job *j = ud;
    int rc = st_record_get(txn, &j->key, &j->rec);
    if (rc != 0)
        return rc;
    st_record_mark(&j->rec, j->mark, j->cost_cents, j->qty, j->now_ms);
    return st_record_put(txn, &j->rec, ST_EV_MARK, j->now_ms);
}

/* The text of a JSON string or number member, NULL when absent or of another type. */
static const char *member_text(yajl_val obj, const char *name, bool *wrong_type)
{
    const char *path[] = {name, NULL};
    yajl_val v = yajl_tree_get(obj, path, yajl_t_any);
    if (v == NULL || YAJL_IS_NULL(v))
        return NULL;
    if (YAJL_IS_STRING(v))
        return YAJL_GET_STRING(v);
    if (YAJL_IS_NUMBER(v))
        return YAJL_GET_NUMBER(v);
    *wrong_type = true;
    return NULL;
}

static void deal_mark(struct web_api *api, const struct web_request *rq, const char *asin,
                      struct web_reply *out)
{
    /* Cross-site writes (docs/operations.md): a JSON body and the custom header, which a form
     * or a simple cross-origin request cannot send without a preflight nobody answers. */
    if (rq->content_type == NULL || strncasecmp(rq->content_type, "application/json", 16) != 0 ||
        (rq->content_type[16] != '\0' && rq->content_type[16] != ';')) {
        web_api_error(out, 415, NULL, "a mark is a JSON body: send Content-Type: application/json");
        return;
    }
    if (!rq->write_header) {
        web_api_error(out, 403, NULL,
                      "a write must carry the header %s: 1 (a guard against cross-site requests)",
                      WEB_WRITE_HEADER);
        return;
    }
    struct mark_job j = {.cost_cents = -1, .qty = 0, .now_ms = rq->now_ms};
    if (!deal_key(api, rq, asin, &j.key, out))
        return;
    char body[WEB_BODY_MAX + 1], err[128] = "";
    size_t n = rq->body_len < WEB_BODY_MAX ? rq->body_len : WEB_BODY_MAX;
    if (rq->body != NULL)
        memcpy(body, rq->body, n);
    body[n] = '\0';
    yajl_val doc = yajl_tree_parse(body, err, sizeof(err));
    if (doc == NULL || !YAJL_IS_OBJECT(doc)) {
        web_api_error(out, 400, NULL, "the body is not a JSON object: %s",
                      doc == NULL ? strtok(err, "\n") : "another JSON value");
        yajl_tree_free(doc);
        return;
    }
    bool wrong = false;
    const char *mark = member_text(doc, "mark", &wrong);
    const char *cost = member_text(doc, "cost", &wrong);
    const char *qty = member_text(doc, "qty", &wrong);
    const char *bad = NULL;
    if (mark == NULL || wrong)
        bad = "mark";
    else if (strcmp(mark, "bought") == 0)
        j.mark = ST_MARK_BOUGHT;
    else if (strcmp(mark, "ignored") == 0)
        j.mark = ST_MARK_IGNORED;
    else if (strcmp(mark, "none") == 0)
        j.mark = ST_MARK_NONE;
    else
        bad = "mark";
    unsigned domain = st_key_domain(&j.key);
    if (bad == NULL && cost != NULL &&
        (j.mark != ST_MARK_BOUGHT || jd_money_parse(domain, cost, &j.cost_cents) != 0 ||
         j.cost_cents < 0))
        bad = "cost";
    if (bad == NULL && qty != NULL) {
        char *end;
        long q = strtol(qty, &end, 10);
        if (j.mark != ST_MARK_BOUGHT || *end != '\0' || q < 1 || q > 1000000)
            bad = "qty";
        else
            j.qty = (int32_t)q;
    }
    if (bad == NULL && j.mark == ST_MARK_BOUGHT && j.qty == 0)
        j.qty = 1;
    yajl_tree_free(doc);
    if (bad != NULL) {
        web_api_error(out, 400, bad,
                      "%s: the body is {\"mark\": \"bought\"|\"ignored\"|\"none\"}, with a "
                      "bought mark's optional \"cost\" (your cost per unit in the marketplace's "
                      "currency, e.g. \"4.50\") and \"qty\" (1 to 1000000)",
                      bad);
        return;
    }
    struct st_env *env = store(api);
    if (env == NULL) {
        store_error(api, out, -ENOENT);
        return;
    }
    int rc = st_write(env, mark_txn, &j);
    if (rc == -ENOENT) {
        web_api_error(out, 404, NULL, "%s is not in the store", asin);
        return;
    }
    if (rc != 0) {
        store_error(api, out, rc);
        return;
    }
    kd_info("web: %s marked %s", j.rec.asin, st_mark_name(j.mark));
    yajl_gen g = gen_new();
    struct vw_out o = {.rules = &api->rules};
    yajl_gen_map_open(g);
    gkey(g, "deal");
    vw_json_record(g, &j.rec, &o);
    yajl_gen_map_close(g);
    reply_gen(out, 200, g);
}

/* ---- status, counters, samples ---------------------------------------------------------- */

/* Deals stored now (from the snapshot), -1 when the store cannot be read. */
static int64_t deals_stored(struct web_api *api)
{
    if (snapshot(api) != 0)
        return -1;
    int64_t n = 0;
    for (size_t i = 0; i < api->snap.n; i++)
        n += api->snap.recs[i].state == ST_STATE_DEAL;
    return n;
}

static void status_doc(struct web_api *api, const struct web_request *rq, struct web_reply *out)
{
    const struct shm_layout *l = segment(api);
    struct shm_status st;
    memset(&st, 0, sizeof(st));
    bool have = shm_status_read(api->run_dir, api->instance, &st) == 0;
    if (!have && l != NULL) {
        /* No status file where the config says: the segment tells the same. */
        st.pid = l->header.supervisor_pid;
        st.start_ms = l->header.start_time_ms;
        st.generation = l->header.generation;
        snprintf(st.state, sizeof(st.state), "running");
        st.locked = kill((pid_t)st.pid, 0) == 0;
        have = true;
    }
    struct tb_stats tbs;
    memset(&tbs, 0, sizeof(tbs));
    if (l != NULL)
        shm_report_tokens(l, kd_mono_ns(), &tbs);
    struct shm_report_status rs = {.instance = api->instance,
                                   .st = &st,
                                   .have_status = have,
                                   .running = have && st.locked,
                                   .deals = deals_stored(api),
                                   .l = l,
                                   .tbs = &tbs,
                                   .now_ms = rq->now_ms};
    yajl_gen g = gen_new();
    shm_report_status_json(g, &rs);
    reply_gen(out, 200, g);
}

static void counters(struct web_api *api, const struct web_request *rq, struct web_reply *out)
{
    const struct shm_layout *l = segment(api);
    if (l == NULL) {
        web_api_error(out, 503, NULL, "instance '%s' is not running: no counters to read",
                      api->instance);
        out->retry_after_s = 5;
        return;
    }
    /* Rates over the window since the older of the last two samples of this generation
     * (10 to 20 s), else since the newer, else since the daemon started. */
    const int64_t *prev = NULL;
    double dt_s = 0;
    for (unsigned k = 0; k < api->totals_n && prev == NULL; k++) {
        if (api->totals_gen[k] == l->header.generation && rq->now_ms - api->totals_ms[k] >= 1000) {
            prev = api->totals[k];
            dt_s = (double)(rq->now_ms - api->totals_ms[k]) / 1000.0;
        }
    }
    yajl_gen g = gen_new();
    shm_report_stat_json(g, l, prev, dt_s, rq->now_ms);
    reply_gen(out, 200, g);
}

static void metrics(struct web_api *api, struct web_reply *out)
{
    const struct shm_layout *l = segment(api);
    if (l == NULL) {
        web_api_error(out, 503, NULL, "instance '%s' is not running: no counters to read",
                      api->instance);
        out->retry_after_s = 5;
        return;
    }
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (f == NULL) {
        web_api_error(out, 503, NULL, "out of memory");
        return;
    }
    int rc = shm_report_prom(f, l);
    if (fclose(f) != 0 || rc != 0 || buf == NULL) {
        free(buf);
        web_api_error(out, 503, NULL, "out of memory");
        return;
    }
    memset(out, 0, sizeof(*out));
    out->status = 200;
    out->body = buf;
    out->len = len;
    out->content_type = PROM_TYPE;
}

static void gen_sample(yajl_gen g, const struct web_sample *s)
{
    static const char *roles[3] = {"scanner", "committer", "updater"};
    yajl_gen_map_open(g);
    gint(g, "at_ms", s->at_ms);
    gint(g, "tokens", s->tokens);
    gint(g, "refill_rate", s->refill_rate);
    gkey(g, "spent");
    yajl_gen_map_open(g);
    for (int i = 0; i < 3; i++)
        gint(g, roles[i], s->spent[i]);
    yajl_gen_map_close(g);
    gint(g, "http_429", s->http_429);
    gint(g, "committed", s->committed);
    gkey(g, "deals");
    if (s->deals >= 0)
        yajl_gen_integer(g, s->deals);
    else
        yajl_gen_null(g);
    yajl_gen_map_close(g);
}

void web_api_sample(struct web_api *api, int64_t now_ms, char **json, size_t *len)
{
    *json = NULL;
    *len = 0;
    const struct shm_layout *l = segment(api);
    struct web_sample s = {.at_ms = now_ms, .deals = deals_stored(api)};
    if (l != NULL) {
        struct tb_stats tbs;
        shm_report_tokens(l, kd_mono_ns(), &tbs);
        s.tokens = tbs.projected_tokens;
        s.refill_rate = tbs.refill_rate;
        static const enum shm_role roles[3] = {SHM_ROLE_SCANNER, SHM_ROLE_COMMITTER,
                                               SHM_ROLE_UPDATER};
        for (int i = 0; i < 3; i++)
            s.spent[i] = shm_counter_get(&l->counters[roles[i]], SHM_C_tokens_spent);
        s.http_429 = shm_counter_total(l, SHM_C_http_429);
        s.committed = shm_counter_total(l, SHM_C_deals_committed);
        /* Totals for the rates of /api/v1/stat: keep the last two. */
        if (api->totals_n == 2) {
            memcpy(api->totals[0], api->totals[1], sizeof(api->totals[0]));
            api->totals_ms[0] = api->totals_ms[1];
            api->totals_gen[0] = api->totals_gen[1];
        }
        unsigned k = api->totals_n < 2 ? api->totals_n++ : 1;
        for (int i = 0; i < SHM_COUNTER_COUNT; i++)
            api->totals[k][i] = shm_counter_total(l, (enum shm_counter_id)i);
        api->totals_ms[k] = now_ms;
        api->totals_gen[k] = l->header.generation;
    }
    size_t at = (api->samples_head + api->samples_n) % WEB_SAMPLES_MAX;
    api->samples[at] = s;
    if (api->samples_n < WEB_SAMPLES_MAX)
        api->samples_n++;
    else
        api->samples_head = (api->samples_head + 1) % WEB_SAMPLES_MAX;
    yajl_gen g = gen_new();
    if (g == NULL)
        return;
    gen_sample(g, &s);
    struct web_reply r;
    reply_gen(&r, 200, g);
    if (r.status == 200) {
        *json = r.body;
        *len = r.len;
    } else {
        free(r.body);
    }
}

static void samples(struct web_api *api, struct web_reply *out)
{
    yajl_gen g = gen_new();
    yajl_gen_map_open(g);
    gint(g, "every_ms", WEB_SAMPLE_EVERY_MS);
    gkey(g, "samples");
    yajl_gen_array_open(g);
    for (size_t i = 0; i < api->samples_n; i++)
        gen_sample(g, &api->samples[(api->samples_head + i) % WEB_SAMPLES_MAX]);
    yajl_gen_array_close(g);
    yajl_gen_map_close(g);
    reply_gen(out, 200, g);
}

/* ---- the vocabulary and the named views ------------------------------------------------- */

static void filters(struct web_api *api, struct web_reply *out)
{
    unsigned d = (unsigned)api->cfg.keepa_domain;
    const struct jd_market *m = jd_market(d);
    yajl_gen g = gen_new();
    yajl_gen_map_open(g);
    gint(g, "domain", d);
    gstr(g, "marketplace", m != NULL ? m->host : NULL);
    gstr(g, "currency", m != NULL ? m->currency : NULL);
    gstr(g, "symbol", m != NULL ? m->symbol : NULL);
    gint(g, "decimals", m != NULL ? m->decimals : 2);
    gint(g, "limit_default", WEB_LIMIT_DEFAULT);
    gint(g, "limit_max", WEB_LIMIT_MAX);
    gkey(g, "filters");
    yajl_gen_array_open(g);
    for (size_t i = 0;; i++) {
        const struct vw_key_info *k = vw_filter_key(i);
        if (k == NULL)
            break;
        yajl_gen_map_open(g);
        gstr(g, "name", k->name);
        gstr(g, "cli", k->cli);
        gkey(g, "switch");
        yajl_gen_bool(g, !k->takes_value);
        gstr(g, "values", k->value_words);
        gstr(g, "meaning", k->meaning);
        yajl_gen_map_close(g);
    }
    yajl_gen_array_close(g);
    gkey(g, "sorts");
    yajl_gen_array_open(g);
    for (int s = VW_SORT_ROI; s <= VW_SORT_FRESH; s++) {
        const char *name = vw_sort_name((enum vw_sort)s);
        yajl_gen_string(g, (const unsigned char *)name, strlen(name));
    }
    yajl_gen_array_close(g);
    yajl_gen_map_close(g);
    reply_gen(out, 200, g);
}

/* The config's [view.NAME] sections in file order: {"views": [{"name", "keys": {...}}]}; a
 * page of one is /api/v1/deals?view=NAME. */
static void views(struct web_api *api, struct web_reply *out)
{
    const struct cfg *c = &api->cfg;
    yajl_gen g = gen_new();
    yajl_gen_map_open(g);
    gkey(g, "views");
    yajl_gen_array_open(g);
    for (size_t i = 0; i < c->n_named; i++) {
        const struct cfg_named *s = &c->named[i];
        if (s->kind != CFG_NAMED_view)
            continue;
        yajl_gen_map_open(g);
        gstr(g, "name", s->name);
        gkey(g, "keys");
        yajl_gen_map_open(g);
        for (size_t k = 0; k < s->n_keys; k++) {
            const char *key, *value;
            cfg_named_key(c, s, k, &key, &value, NULL);
            gstr(g, key, value);
        }
        yajl_gen_map_close(g);
        yajl_gen_map_close(g);
    }
    yajl_gen_array_close(g);
    yajl_gen_map_close(g);
    reply_gen(out, 200, g);
}

static void index_doc(struct web_reply *out)
{
    static const char *const endpoints[][3] = {
        {"GET", "/api/v1/deals", "a page of the deal view: every filter and sort of kdeals deals"},
        {"GET", "/api/v1/deals/ASIN", "one product: its verdict, reasons, fees, offer, history"},
        {"POST", "/api/v1/deals/ASIN/mark", "mark it bought, ignored or none (JSON body)"},
        {"GET", "/api/v1/status", "processes, tokens, deals (as kdeals status --json)"},
        {"GET", "/api/v1/stat", "every counter with its rate (as kdeals stat --json)"},
        {"GET", "/api/v1/samples", "the engine samples of the last hours"},
        {"GET", "/api/v1/filters", "the filters, the sorts and the currency"},
        {"GET", "/api/v1/views", "the config's named views ([view.NAME]): ?view=NAME"},
        {"GET", "/api/v1/events", "server-sent events: deal, change, sample, resync"},
        {"GET", "/metrics", "Prometheus text (as kdeals stat --prom)"},
    };
    yajl_gen g = gen_new();
    yajl_gen_map_open(g);
    gstr(g, "version", "v1");
    gkey(g, "endpoints");
    yajl_gen_array_open(g);
    for (size_t i = 0; i < sizeof(endpoints) / sizeof(endpoints[0]); i++) {
        yajl_gen_map_open(g);
        gstr(g, "method", endpoints[i][0]);
        gstr(g, "path", endpoints[i][1]);
        gstr(g, "what", endpoints[i][2]);
        yajl_gen_map_close(g);
    }
    yajl_gen_array_close(g);
    yajl_gen_map_close(g);
    reply_gen(out, 200, g);
}

/* ---- the change log --------------------------------------------------------------------- */

int web_api_changes(struct web_api *api, uint64_t after, struct st_change *out, size_t max,
                    size_t *n, uint64_t *last)
{
    *n = 0;
    *last = 0;
    struct st_env *env = store(api);
    if (env == NULL)
        return -ENOENT;
    struct st_txn *txn;
    int rc = st_read_begin(env, &txn);
    if (rc != 0)
        return rc;
    rc = st_changes_last(txn, last);
    if (rc == 0 && max > 0 && *last > after)
        rc = st_changes_read(txn, after, out, max, n);
    st_read_end(txn);
    return rc;
}

void web_api_change_json(const struct st_change *c, char **json, size_t *len)
{
    char iso[40];
    vw_time_iso(c->at_ms, iso, sizeof(iso));
    yajl_gen g = gen_new();
    yajl_gen_map_open(g);
    gint(g, "seq", (long long)c->seq);
    gstr(g, "asin", c->asin);
    gint(g, "domain", c->domain);
    gint(g, "revision", (long long)c->revision);
    gstr(g, "event", st_event_name(c->event));
    gstr(g, "state", c->state == ST_STATE_NONE ? "deleted" : st_state_name(c->state));
    gstr(g, "prev_state", c->prev_state == ST_STATE_NONE ? "none" : st_state_name(c->prev_state));
    gint(g, "at_ms", c->at_ms);
    gstr(g, "at", iso);
    yajl_gen_map_close(g);
    struct web_reply r;
    reply_gen(&r, 200, g);
    *json = r.body;
    *len = r.len;
}

/* ---- routing ---------------------------------------------------------------------------- */

bool web_api_path(const char *path)
{
    return strncmp(path, "/api/", 5) == 0 || strcmp(path, "/api") == 0 ||
           strcmp(path, "/metrics") == 0;
}

static bool method_is(const struct web_request *rq, const char *m, struct web_reply *out,
                      const char *allow)
{
    if (strcmp(rq->method, m) == 0 || (strcmp(m, "GET") == 0 && strcmp(rq->method, "HEAD") == 0))
        return true;
    web_api_error(out, 405, NULL, "%s %s: use %s", rq->method, rq->path, allow);
    out->allow = allow;
    return false;
}

void web_api_handle(struct web_api *api, const struct web_request *rq, struct web_reply *out)
{
    const char *p = rq->path;
    static const char v1[] = "/api/v1";
    if (strcmp(p, "/metrics") == 0) {
        if (method_is(rq, "GET", out, "GET, HEAD"))
            metrics(api, out);
        return;
    }
    if (strncmp(p, v1, sizeof(v1) - 1) != 0 || (p[7] != '\0' && p[7] != '/')) {
        web_api_error(out, 404, NULL, "no such endpoint: %.200s (the API is /api/v1)", p);
        return;
    }
    p += sizeof(v1) - 1;
    if (*p == '/')
        p++;
    static const struct {
        const char *name;
        int id;
    } simple[] = {{"", 0},        {"status", 1}, {"stat", 2}, {"samples", 3},
                  {"filters", 4}, {"views", 5},  {"deals", 6}};
    for (size_t i = 0; i < sizeof(simple) / sizeof(simple[0]); i++) {
        if (strcmp(p, simple[i].name) != 0)
            continue;
        if (!method_is(rq, "GET", out, "GET, HEAD"))
            return;
        switch (simple[i].id) {
        case 0:
            index_doc(out);
            return;
        case 1:
            status_doc(api, rq, out);
            return;
        case 2:
            counters(api, rq, out);
            return;
        case 3:
            samples(api, out);
            return;
        case 4:
            filters(api, out);
            return;
        case 5:
            views(api, out);
            return;
        default:
            deals_list(api, rq, out);
            return;
        }
    }
    if (strncmp(p, "deals/", 6) == 0) {
        char asin[ST_ASIN_LEN + 8];
        const char *a = p + 6, *slash = strchr(a, '/');
        size_t alen = slash != NULL ? (size_t)(slash - a) : strlen(a);
        if (alen >= sizeof(asin))
            alen = sizeof(asin) - 1;
        memcpy(asin, a, alen);
        asin[alen] = '\0';
        if (slash == NULL) {
            if (method_is(rq, "GET", out, "GET, HEAD"))
                deal_one(api, rq, asin, out);
            return;
        }
        if (strcmp(slash, "/mark") == 0) {
            if (method_is(rq, "POST", out, "POST"))
                deal_mark(api, rq, asin, out);
            return;
        }
    }
    web_api_error(out, 404, NULL, "no such endpoint: %.200s (GET /api/v1 lists them)", rq->path);
}

/* ---- life ------------------------------------------------------------------------------- */

int web_api_open(struct web_api **out, const struct web_api_options *o)
{
    struct web_api *api = calloc(1, sizeof(*api));
    if (api == NULL)
        return -ENOMEM;
    api->samples = calloc(WEB_SAMPLES_MAX, sizeof(*api->samples));
    if (api->samples == NULL) {
        free(api);
        return -ENOMEM;
    }
    api->cfg = *o->cfg;
    jd_rules_from_cfg(&api->cfg, &api->rules);
    snprintf(api->instance, sizeof(api->instance), "%s", o->instance);
    snprintf(api->run_dir, sizeof(api->run_dir), "%s",
             o->run_dir != NULL ? o->run_dir : o->cfg->daemon_run_dir);
    *out = api;
    return 0;
}

void web_api_reload(struct web_api *api, const struct cfg *cfg)
{
    api->cfg = *cfg;
    jd_rules_from_cfg(&api->cfg, &api->rules);
}

void web_api_close(struct web_api *api)
{
    if (api == NULL)
        return;
    if (api->attached)
        shm_segment_detach(&api->seg);
    st_close(api->env);
    free(api->snap.recs);
    free(api->samples);
    free(api);
}
