/*
 * test_web.c: the web role in the real daemon, against the simulator (docs/operations.md,
 * "The web dashboard").
 *
 *   endpoints: every endpoint answers as documented while the pipeline fills the store; a
 *     mark leaves the default view; the role is restarted after a kill and reloaded on HUP
 *     like the others; then, on the stopped daemon's store, `kdeals web` serves pages of deals
 *     equal to `kdeals deals --format json` with the same filters.
 *   hostile: huge targets, bad filters, big bodies, hundreds of connections, clients that
 *     send nothing, too many event streams: each gets a clean error or is dropped, a normal
 *     request is answered meanwhile, and the other roles keep working (their counters move,
 *     nothing restarts).
 *   security: a listen beyond loopback needs the token file (and a 0600 one); without the
 *     token the API answers 401; writes from another origin or without the custom header are
 *     refused; no answer carries an Access-Control-Allow-Origin header, the API key or the
 *     token.
 */
#include "kd_harness.h"
#include "kd_test.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <yajl/yajl_tree.h>

#include "base/clock.h"
#include "shm/counters.h"
#include "web/server.h"

#define KEY   "web-test-key-0123456789abcdef"
#define TOKEN "web-test-bearer-token-Zq9+/="

/* 10 tokens a Keepa minute of 100 ms: 100 a second, the 20 deals the endpoints need within
 * seconds; at 300 the scanner and the simulator kept a core busy reading pages for the whole
 * test, which only serves the web role's reads. */
static const char *const sim_args[] = {"--keys",        KEY,    "--seed",      "17",
                                       "--products",    "4000", "--minute-ms", "100",
                                       "--refill-rate", "10",   NULL};

/* ---- HTTP ------------------------------------------------------------------------------ */

struct resp {
    long status;
    char *body;
    size_t len;
    char *head;
    size_t head_len;
};

static size_t grow(char **buf, size_t *len, const char *p, size_t n)
{
    char *more = realloc(*buf, *len + n + 1);
    assert_non_null(more);
    memcpy(more + *len, p, n);
    *len += n;
    more[*len] = '\0';
    *buf = more;
    return n;
}

static size_t on_body(char *p, size_t s, size_t n, void *ud)
{
    struct resp *r = ud;
    return grow(&r->body, &r->len, p, s * n);
}

static size_t on_head(char *p, size_t s, size_t n, void *ud)
{
    struct resp *r = ud;
    return grow(&r->head, &r->head_len, p, s * n);
}

static void resp_free(struct resp *r)
{
    free(r->body);
    free(r->head);
    memset(r, 0, sizeof(*r));
}

/* METHOD URL with the extra header lines HEADERS (NULL-terminated, may be NULL) and BODY. A
 * transfer that fails (the server closed) gives status 0. */
static struct resp http(const char *method, const char *url, const char *const *headers,
                        const char *body)
{
    struct resp r = {0};
    grow(&r.body, &r.len, "", 0);
    grow(&r.head, &r.head_len, "", 0);
    CURL *c = curl_easy_init();
    assert_non_null(c);
    struct curl_slist *hl = NULL;
    for (size_t i = 0; headers != NULL && headers[i] != NULL; i++)
        hl = curl_slist_append(hl, headers[i]);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &r);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_head);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &r);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 20L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    if (body != NULL) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    }
    if (strcmp(method, "HEAD") == 0)
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
    curl_slist_free_all(hl);
    curl_easy_cleanup(c);
    return r;
}

/* What the event stream at URL sends in SECONDS, with the request header HEADER (or none). */
static struct resp read_events(const char *url, const char *header, long seconds)
{
    CURL *c = curl_easy_init();
    struct resp ev = {0};
    grow(&ev.body, &ev.len, "", 0);
    struct curl_slist *h = header != NULL ? curl_slist_append(NULL, header) : NULL;
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &ev);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, seconds);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_perform(c); /* ends at the timeout */
    curl_easy_cleanup(c);
    curl_slist_free_all(h);
    return ev;
}

static yajl_val parse(const struct resp *r)
{
    char err[256];
    yajl_val v = yajl_tree_parse(r->body, err, sizeof(err));
    if (v == NULL)
        fail_msg("not JSON (%s): %.300s", err, r->body);
    return v;
}

static yajl_val at(yajl_val v, const char *a, const char *b)
{
    const char *path[] = {a, b, NULL};
    return yajl_tree_get(v, path, yajl_t_any);
}

/* A JSON error of STATUS (naming PARAMETER when not NULL), and no CORS header. */
static void expect_error(const struct resp *r, long status, const char *parameter)
{
    if (r->status != status)
        fail_msg("HTTP %ld, expected %ld: %.300s", r->status, status, r->body);
    yajl_val v = parse(r);
    assert_int_equal(YAJL_GET_INTEGER(at(v, "error", "status")), status);
    if (parameter != NULL)
        assert_string_equal(YAJL_GET_STRING(at(v, "error", "parameter")), parameter);
    yajl_tree_free(v);
    assert_null(strcasestr(r->head, "Access-Control-Allow-Origin"));
}

/* ---- the daemon ------------------------------------------------------------------------ */

static unsigned web_port(const struct shm_segment *seg)
{
    return atomic_load(&seg->layout->web.port);
}

static void base_url(const struct shm_segment *seg, char *buf, size_t len)
{
    if (!KDH_WAIT_FOR(web_port(seg) != 0, 20))
        fail_msg("the web role published no port");
    snprintf(buf, len, "http://127.0.0.1:%u", web_port(seg));
}

static int64_t total(const struct shm_segment *seg, enum shm_counter_id id)
{
    return shm_counter_total(seg->layout, id);
}

static int64_t deals_now(const char *base)
{
    char url[256];
    snprintf(url, sizeof(url), "%s/api/v1/deals?limit=1", base);
    struct resp r = http("GET", url, NULL, NULL);
    int64_t n = -1;
    if (r.status == 200) {
        yajl_val v = parse(&r);
        n = YAJL_GET_INTEGER(at(v, "matched", NULL));
        yajl_tree_free(v);
    }
    resp_free(&r);
    return n;
}

/* The first ASIN of the default view. */
static void first_asin(const char *base, char asin[16])
{
    char url[256];
    snprintf(url, sizeof(url), "%s/api/v1/deals?limit=1", base);
    struct resp r = http("GET", url, NULL, NULL);
    assert_int_equal(r.status, 200);
    yajl_val v = parse(&r);
    yajl_val deals = at(v, "deals", NULL);
    assert_true(deals->u.array.len == 1);
    snprintf(asin, 16, "%s", YAJL_GET_STRING(at(deals->u.array.values[0], "asin", NULL)));
    yajl_tree_free(v);
    resp_free(&r);
}

/* Two JSON values are equal: same types, numbers as written, objects with the same keys in
 * the same order. */
static bool json_equal(yajl_val a, yajl_val b)
{
    if (a == NULL || b == NULL || a->type != b->type)
        return a == b;
    switch (a->type) {
    case yajl_t_string:
        return strcmp(a->u.string, b->u.string) == 0;
    case yajl_t_number:
        return strcmp(a->u.number.r, b->u.number.r) == 0;
    case yajl_t_object:
        if (a->u.object.len != b->u.object.len)
            return false;
        for (size_t i = 0; i < a->u.object.len; i++) {
            if (strcmp(a->u.object.keys[i], b->u.object.keys[i]) != 0 ||
                !json_equal(a->u.object.values[i], b->u.object.values[i]))
                return false;
        }
        return true;
    case yajl_t_array:
        if (a->u.array.len != b->u.array.len)
            return false;
        for (size_t i = 0; i < a->u.array.len; i++) {
            if (!json_equal(a->u.array.values[i], b->u.array.values[i]))
                return false;
        }
        return true;
    default:
        return true;
    }
}

/* `kdeals web --listen 127.0.0.1:0` on D's config; its port from its log line. */
static pid_t standalone(const struct kdh_daemon *d, char *base, size_t len)
{
    char log[700];
    snprintf(log, sizeof(log), "%s/web-alone.log", d->dir);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd >= 0)
            dup2(fd, 2);
        execl(KD_BUILD_DIR "/kdeals", "kdeals", "web", "-c", d->conf, "--listen", "127.0.0.1:0",
              (char *)NULL);
        _exit(127);
    }
    unsigned port = 0;
    for (int i = 0; i < 1000 && port == 0; i++) {
        char *text = kd_read_file(log, NULL);
        const char *p = text != NULL ? strstr(text, "dashboard is at http://127.0.0.1:") : NULL;
        if (p != NULL)
            port = (unsigned)atoi(p + strlen("dashboard is at http://127.0.0.1:"));
        free(text);
        if (port == 0)
            kdh_nap_ms(10);
    }
    if (port == 0)
        fail_msg("kdeals web did not say where it listens (see %s)", log);
    snprintf(base, len, "http://127.0.0.1:%u", port);
    return pid;
}

/* ---- endpoints ------------------------------------------------------------------------- */

static void test_web_endpoints(void **state)
{
    (void)state;
    kd_test_set_timeout(240);
    struct kdh_sim sim;
    struct kdh_daemon d;
    struct shm_segment seg;
    kdh_sim_start(&sim, sim_args);
    /* Re-checks no sooner than an hour of Keepa time: at 100 ms a minute and tokens to spare,
     * the default floor of 10 minutes logs more than WEB_BACKLOG_RESYNC changes while the
     * test reads the event stream, and a reconnect then gets a resync, not a replay. */
    kdh_daemon_config(&d, &sim, KEY, 100,
                      "[web]\nlisten = 127.0.0.1:0\n"
                      "[view.fast]\nsort = monthly\nmax_rank = 300000\n"
                      "[update]\nmin_interval = 1h\n");
    kdh_daemon_start(&d);
    kdh_daemon_attach(&d, &seg);
    char base[96], url[512];
    base_url(&seg, base, sizeof(base));
    if (!KDH_WAIT_FOR(deals_now(base) >= 20, 90))
        fail_msg("fewer than 20 deals in 90 s (see %s)", d.log);

    /* The page and its files, with the page's security headers. */
    snprintf(url, sizeof(url), "%s/", base);
    struct resp r = http("GET", url, NULL, NULL);
    assert_int_equal(r.status, 200);
    assert_non_null(strcasestr(r.head, "Content-Type: text/html"));
    assert_non_null(strcasestr(r.head, "Content-Security-Policy: default-src 'none'"));
    assert_non_null(strcasestr(r.head, "X-Frame-Options: DENY"));
    assert_non_null(strstr(r.body, "/app.js"));
    resp_free(&r);
    const char *files[] = {"/app.js", "/app.css", "/favicon.svg"};
    for (size_t i = 0; i < 3; i++) {
        snprintf(url, sizeof(url), "%s%s", base, files[i]);
        r = http("GET", url, NULL, NULL);
        assert_int_equal(r.status, 200);
        assert_true(r.len > 100);
        resp_free(&r);
    }
    snprintf(url, sizeof(url), "%s/nothing.html", base);
    r = http("GET", url, NULL, NULL);
    expect_error(&r, 404, NULL);
    resp_free(&r);

    /* Status: the web role is a process like the others, and says where it is. */
    snprintf(url, sizeof(url), "%s/api/v1/status", base);
    r = http("GET", url, NULL, NULL);
    assert_int_equal(r.status, 200);
    yajl_val v = parse(&r);
    assert_true(YAJL_IS_TRUE(at(v, "running", NULL)));
    char want_url[128];
    snprintf(want_url, sizeof(want_url), "%s/", base);
    assert_string_equal(YAJL_GET_STRING(at(v, "web", "url")), want_url);
    yajl_val procs = at(v, "processes", NULL);
    bool web_ready = false;
    for (size_t i = 0; i < procs->u.array.len; i++) {
        yajl_val p = procs->u.array.values[i];
        const char *role = YAJL_GET_STRING(at(p, "role", NULL));
        const char *st = YAJL_GET_STRING(at(p, "state", NULL));
        if (role != NULL && strcmp(role, "web") == 0)
            web_ready = st != NULL && strcmp(st, "ready") == 0;
    }
    assert_true(web_ready);
    assert_true(YAJL_GET_INTEGER(at(v, "deals", NULL)) >= 20);
    yajl_tree_free(v);
    resp_free(&r);

    /* The counters, as kdeals stat gives them, and Prometheus text. */
    snprintf(url, sizeof(url), "%s/api/v1/stat", base);
    r = http("GET", url, NULL, NULL);
    assert_int_equal(r.status, 200);
    v = parse(&r);
    const char *reqs[] = {"counters", "web_requests", "by_role", "web", NULL};
    assert_true(YAJL_GET_INTEGER(yajl_tree_get(v, reqs, yajl_t_number)) > 3);
    const char *rate[] = {"counters", "asins_peeked", "rate_per_s", NULL};
    assert_non_null(yajl_tree_get(v, rate, yajl_t_number));
    yajl_tree_free(v);
    resp_free(&r);
    snprintf(url, sizeof(url), "%s/metrics", base);
    r = http("GET", url, NULL, NULL);
    assert_int_equal(r.status, 200);
    assert_non_null(strcasestr(r.head, "Content-Type: text/plain; version=0.0.4"));
    assert_non_null(strstr(r.body, "kdeals_web_requests_total{role=\"web\"}"));
    assert_non_null(strstr(r.body, "kdeals_process_up{role=\"web\"} 1"));
    resp_free(&r);
    const char *simple[] = {"/api/v1", "/api/v1/samples", "/api/v1/filters", "/api/v1/views"};
    for (size_t i = 0; i < 4; i++) {
        snprintf(url, sizeof(url), "%s%s", base, simple[i]);
        r = http("GET", url, NULL, NULL);
        assert_int_equal(r.status, 200);
        yajl_tree_free(parse(&r));
        resp_free(&r);
    }

    /* One deal: verdict, reasons, fees, offer, links, history. */
    char asin[16];
    first_asin(base, asin);
    snprintf(url, sizeof(url), "%s/api/v1/deals/%s", base, asin);
    r = http("GET", url, NULL, NULL);
    assert_int_equal(r.status, 200);
    v = parse(&r);
    assert_string_equal(YAJL_GET_STRING(at(v, "deal", "state")), "deal");
    assert_true(at(v, "deal", "reasons")->u.array.len >= 5);
    assert_non_null(at(v, "deal", "fee_referral_cents"));
    assert_non_null(YAJL_GET_STRING(at(v, "deal", "amazon_url")));
    yajl_val hist = at(v, "history", NULL);
    assert_true(YAJL_IS_ARRAY(hist) && hist->u.array.len >= 1);
    for (size_t i = 0; i < hist->u.array.len; i++) {
        /* Each entry says how many judgements it stands for, and since when. */
        yajl_val e = hist->u.array.values[i];
        assert_true(YAJL_GET_INTEGER(at(e, "checks", NULL)) >= 1);
        assert_true(YAJL_GET_INTEGER(at(e, "first_at_ms", NULL)) <=
                    YAJL_GET_INTEGER(at(e, "at_ms", NULL)));
        assert_non_null(YAJL_GET_STRING(at(e, "first_at", NULL)));
    }
    yajl_tree_free(v);
    resp_free(&r);

    /* The event stream: hello, then changes as the pipeline commits. */
    snprintf(url, sizeof(url), "%s/api/v1/events", base);
    struct resp ev = read_events(url, NULL, 12);
    assert_non_null(strstr(ev.body, "event: hello\ndata: {\"seq\":"));
    assert_non_null(strstr(ev.body, "event: sample\ndata: {\"at_ms\":"));
    if (strstr(ev.body, "event: deal\n") == NULL && strstr(ev.body, "event: change\n") == NULL)
        fail_msg("no change event in 12 s: %.500s", ev.body);
    unsigned long long hello_seq = 0;
    assert_int_equal(
        sscanf(strstr(ev.body, "event: hello"), "event: hello\ndata: {\"seq\":%llu", &hello_seq),
        1);
    resp_free(&ev);

    /* A page that reconnects sends the last id it read: what came after it is sent again, so
     * a dropped connection misses nothing; an id the log cannot serve gets a resync. */
    assert_true(hello_seq >= 3);
    char want[2][48];
    snprintf(want[0], sizeof(want[0]), "id: %llu\nevent: ", hello_seq - 1);
    snprintf(want[1], sizeof(want[1]), "id: %llu\nevent: ", hello_seq);
    char last_id[64];
    snprintf(last_id, sizeof(last_id), "Last-Event-ID: %llu", hello_seq - 2);
    ev = read_events(url, last_id, 2);
    if (strstr(ev.body, want[0]) == NULL || strstr(ev.body, want[1]) == NULL)
        fail_msg("changes %llu and %llu not replayed after %s: %.800s", hello_seq - 1, hello_seq,
                 last_id, ev.body);
    char not_want[48];
    snprintf(not_want, sizeof(not_want), "id: %llu\nevent: ", hello_seq - 2);
    assert_null(strstr(ev.body, not_want));
    resp_free(&ev);
    ev = read_events(url, "Last-Event-ID: 99999999", 2);
    assert_non_null(strstr(ev.body, "event: resync\n"));
    resp_free(&ev);

    /* A mark: the record leaves the default view, and comes back when cleared. */
    snprintf(url, sizeof(url), "%s/api/v1/deals/%s/mark", base, asin);
    const char *hdr[] = {"Content-Type: application/json", "X-Kdeals-Request: 1", NULL};
    int64_t marks = total(&seg, SHM_C_web_marks);
    r = http("POST", url, hdr, "{\"mark\":\"ignored\"}");
    assert_int_equal(r.status, 200);
    resp_free(&r);
    assert_int_equal(total(&seg, SHM_C_web_marks), marks + 1);
    snprintf(url, sizeof(url), "%s/api/v1/deals?limit=500", base);
    r = http("GET", url, NULL, NULL);
    assert_int_equal(r.status, 200);
    assert_null(strstr(r.body, asin));
    resp_free(&r);
    snprintf(url, sizeof(url), "%s/api/v1/deals/%s", base, asin);
    r = http("GET", url, NULL, NULL);
    assert_non_null(strstr(r.body, "\"mark\":\"ignored\""));
    resp_free(&r);

    /* Killed, it is restarted like any worker, and serves again (port 0: perhaps another). */
    pid_t web_pid = (pid_t)atomic_load(&seg.layout->procs[SHM_ROLE_WEB].pid);
    assert_true(web_pid > 0);
    kill(web_pid, SIGKILL);
    if (!KDH_WAIT_FOR(atomic_load(&seg.layout->procs[SHM_ROLE_WEB].restarts) == 1 &&
                          atomic_load(&seg.layout->procs[SHM_ROLE_WEB].pid) != web_pid &&
                          atomic_load(&seg.layout->procs[SHM_ROLE_WEB].state) == SHM_PROC_READY,
                      20))
        fail_msg("the web role was not restarted (see %s)", d.log);
    base_url(&seg, base, sizeof(base));
    assert_true(deals_now(base) >= 19);

    /* A reload reaches it: the reasons are judged by the new rules. */
    kdh_daemon_rewrite(&d, &sim, KEY, 100,
                       "[web]\nlisten = 127.0.0.1:0\n[filter]\nmin_roi_pct = 33.5\n"
                       "[view.fast]\nsort = monthly\nmax_rank = 300000\n");
    const char *reload[] = {"reload", NULL};
    char *out = NULL;
    assert_int_equal(kdh_cli(&d, reload, 60, &out), 0);
    free(out);
    first_asin(base, asin);
    snprintf(url, sizeof(url), "%s/api/v1/deals/%s", base, asin);
    bool rejudged = KDH_WAIT_FOR(({
                                     struct resp x = http("GET", url, NULL, NULL);
                                     bool ok = strstr(x.body, "\"criterion\":\"roi\"") != NULL &&
                                               strstr(x.body, "\"threshold\":3350") != NULL;
                                     resp_free(&x);
                                     ok;
                                 }),
                                 20);
    assert_true(rejudged);
    shm_segment_detach(&seg);
    assert_int_equal(kdh_daemon_stop(&d), 0);
    assert_true(kdh_log_contains(&d, "web exited (status 0)"));

    /* The stopped daemon's store: `kdeals web` pages equal `kdeals deals --format json`. */
    pid_t alone = standalone(&d, base, sizeof(base));
    static const char *const views[][8] = {
        {NULL},
        {"sort", "profit", NULL},
        {"sort", "rank", "max_rank", "500000", NULL},
        {"min_roi", "40", "sort", "monthly", NULL},
        {"verdict", "all", "sort", "fresh", NULL},
        {"marked", "true", "condition", "used", NULL},
        {"no_amazon", "true", "min_profit", "10", NULL},
        {"view", "fast", NULL},
        {"view", "fast", "sort", "roi", NULL},
    };
    for (size_t i = 0; i < sizeof(views) / sizeof(views[0]); i++) {
        char query[256] = "", arg_text[256] = "";
        const char *args[24] = {"deals", "--format", "json", "--limit", "500"};
        size_t na = 5;
        for (size_t k = 0; views[i][k] != NULL; k += 2) {
            char flag[64];
            snprintf(flag, sizeof(flag), "--%s", views[i][k]);
            for (char *p = flag; *p; p++)
                *p = *p == '_' ? '-' : *p;
            size_t ql = strlen(query);
            snprintf(query + ql, sizeof(query) - ql, "&%s=%s", views[i][k], views[i][k + 1]);
            args[na++] = strdup(flag);
            if (strcmp(views[i][k + 1], "true") != 0)
                args[na++] = views[i][k + 1];
            size_t al = strlen(arg_text);
            snprintf(arg_text + al, sizeof(arg_text) - al, " %s %s", flag, views[i][k + 1]);
        }
        args[na] = NULL;
        assert_int_equal(kdh_cli(&d, args, 60, &out), 0);
        snprintf(url, sizeof(url), "%s/api/v1/deals?limit=500%s", base, query);
        r = http("GET", url, NULL, NULL);
        assert_int_equal(r.status, 200);
        yajl_val api = parse(&r);
        char err[256];
        yajl_val cli = yajl_tree_parse(out, err, sizeof(err));
        if (cli == NULL)
            fail_msg("kdeals deals%s: not JSON: %.200s", arg_text, out);
        yajl_val page = at(api, "deals", NULL);
        printf("    %s: %zu deals from the API and from kdeals deals%s\n",
               query[0] ? query + 1 : "default", page->u.array.len, arg_text);
        if (!json_equal(page, cli))
            fail_msg("the API's page differs from kdeals deals%s (%zu vs %zu deals)", arg_text,
                     page->u.array.len, YAJL_IS_ARRAY(cli) ? cli->u.array.len : 0);
        assert_int_equal(YAJL_GET_INTEGER(at(api, "matched", NULL)), (int64_t)page->u.array.len);
        yajl_tree_free(api);
        yajl_tree_free(cli);
        resp_free(&r);
        free(out);
        for (size_t k = 5; k < na; k++)
            if (strncmp(args[k], "--", 2) == 0)
                free((char *)args[k]);
    }
    /* Not running: no counters, said plainly. */
    snprintf(url, sizeof(url), "%s/api/v1/stat", base);
    r = http("GET", url, NULL, NULL);
    expect_error(&r, 503, NULL);
    resp_free(&r);
    kill(alone, SIGTERM);
    int status;
    assert_int_equal(waitpid(alone, &status, 0), alone);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    kdh_sim_stop(&sim);
}

/* ---- hostile clients ------------------------------------------------------------------- */

/* A TCP connection to PORT from FROM (a loopback address), or -1 when refused. */
static int connect_from(const char *from, unsigned port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_in src = {.sin_family = AF_INET}, dst = {.sin_family = AF_INET};
    inet_pton(AF_INET, from, &src.sin_addr);
    inet_pton(AF_INET, "127.0.0.1", &dst.sin_addr);
    dst.sin_port = htons((uint16_t)port);
    if (bind(fd, (struct sockaddr *)&src, sizeof(src)) != 0 ||
        connect(fd, (struct sockaddr *)&dst, sizeof(dst)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Whether the server closed FD within SECONDS (a read returns 0 or an error). */
static bool closed_within(int fd, int seconds)
{
    struct timeval tv = {.tv_sec = seconds};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    char buf[4096];
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof(buf), 0);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
            return true;
        if (n < 0)
            return false;
    }
}

static void test_web_hostile(void **state)
{
    (void)state;
    kd_test_set_timeout(240);
    struct kdh_sim sim;
    struct kdh_daemon d;
    struct shm_segment seg;
    kdh_sim_start(&sim, sim_args);
    kdh_daemon_config(&d, &sim, KEY, 100, "[web]\nlisten = 127.0.0.1:0\nmax_connections = 64\n");
    kdh_daemon_start(&d);
    kdh_daemon_attach(&d, &seg);
    char base[96], url[512];
    base_url(&seg, base, sizeof(base));
    unsigned port = web_port(&seg);
    if (!KDH_WAIT_FOR(deals_now(base) >= 5, 90))
        fail_msg("fewer than 5 deals in 90 s (see %s)", d.log);
    pid_t pids[SHM_ROLE_COUNT];
    for (int r = 0; r < SHM_ROLE_COUNT; r++)
        pids[r] = (pid_t)atomic_load(&seg.layout->procs[r].pid);
    int64_t peeked0 = total(&seg, SHM_C_asins_peeked);
    int64_t requests0 = total(&seg, SHM_C_http_requests);

    /* Huge targets: our own 414 up to the library's pool, the library's beyond it. */
    size_t huge = 9000;
    char *target = malloc(200000);
    int k = snprintf(target, 200000, "%s/api/v1/deals?min_roi=", base);
    memset(target + k, '1', huge);
    target[k + huge] = '\0';
    struct resp r = http("GET", target, NULL, NULL);
    expect_error(&r, 414, NULL);
    resp_free(&r);
    memset(target + k, '1', 150000);
    target[k + 150000] = '\0';
    r = http("GET", target, NULL, NULL);
    printf("    a 150 kB request target: HTTP %ld from the library\n", r.status);
    assert_true(r.status == 0 || r.status == 414 || r.status == 431 || r.status == 400);
    resp_free(&r);
    free(target);

    /* Bad filters: each a 400 naming its parameter. */
    const char *bad[][2] = {{"min_roi=abc", "min_roi"},
                            {"max_rank=-3", "max_rank"},
                            {"sort=random", "sort"},
                            {"limit=100000", "limit"},
                            {"offset=x", "offset"},
                            {"category=", "category"},
                            {"verdict=maybe", "verdict"},
                            {"no_amazon=perhaps", "no_amazon"},
                            {"since=3%20weeks", "since"},
                            {"drop_tables=1", "drop_tables"},
                            {"min_profit=1e9999", "min_profit"}};
    for (int round = 0; round < 10; round++) {
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
            snprintf(url, sizeof(url), "%s/api/v1/deals?%s", base, bad[i][0]);
            r = http("GET", url, NULL, NULL);
            expect_error(&r, 400, bad[i][1]);
            resp_free(&r);
        }
    }
    snprintf(url, sizeof(url),
             "%s/api/v1/deals?a=1&b=2&c=3&d=4&e=5&f=6&g=7&h=8&i=9&j=10&k=11&"
             "l=12&m=13&n=14&o=15&p=16&q=17&r=18&s=19&t=20&u=21&v=22&w=23&x=24&y=25&z=26&"
             "aa=27&bb=28&cc=29&dd=30&ee=31&ff=32&gg=33",
             base);
    r = http("GET", url, NULL, NULL);
    expect_error(&r, 400, NULL);
    resp_free(&r);

    /* A body too big, a wrong type, a DNS-rebinding Host. */
    char *big = malloc(20000);
    memset(big, 'x', 19999);
    big[19999] = '\0';
    char asin[16];
    first_asin(base, asin);
    snprintf(url, sizeof(url), "%s/api/v1/deals/%s/mark", base, asin);
    const char *json[] = {"Content-Type: application/json", "X-Kdeals-Request: 1", NULL};
    r = http("POST", url, json, big);
    expect_error(&r, 413, NULL);
    resp_free(&r);
    free(big);
    const char *text[] = {"Content-Type: text/plain", "X-Kdeals-Request: 1", NULL};
    r = http("POST", url, text, "{\"mark\":\"ignored\"}");
    expect_error(&r, 415, NULL);
    resp_free(&r);
    snprintf(url, sizeof(url), "%s/api/v1/deals", base);
    const char *rebind[] = {"Host: deals.attacker.example", NULL};
    r = http("GET", url, rebind, NULL);
    expect_error(&r, 403, NULL);
    resp_free(&r);

    /* Hundreds of connections from one address that send nothing: the library takes what its
     * per-address cap allows and closes the rest; a client from another address is served. */
    int fds[300], open_fds = 0;
    for (int i = 0; i < 300; i++) {
        fds[i] = connect_from("127.0.0.2", port);
        open_fds += fds[i] >= 0;
    }
    kdh_nap_ms(300);
    int64_t t0 = kd_mono_ns();
    snprintf(url, sizeof(url), "%s/api/v1/deals?limit=5", base);
    r = http("GET", url, NULL, NULL);
    int64_t took_ms = (kd_mono_ns() - t0) / 1000000;
    printf("    300 idle connections from 127.0.0.2 (%d connected): a request from 127.0.0.1 "
           "answered %ld in %lld ms\n",
           open_fds, r.status, (long long)took_ms);
    assert_int_equal(r.status, 200);
    assert_true(took_ms < 2000);
    resp_free(&r);
    /* An event stream that never reads (a small receive buffer, as a stalled phone), while
     * marks make an event each: the server queues what the kernel does not take, ends the
     * stream once its queue (WEB_STREAM_QUEUE) is full, and answers every mark meanwhile. The
     * marks are paced below WEB_BACKLOG_RESYNC changes a poll, so each is an event of its own. */
    int slow = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(slow >= 0);
    int small = 2048;
    assert_int_equal(setsockopt(slow, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)), 0);
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &to.sin_addr);
    assert_int_equal(connect(slow, (struct sockaddr *)&to, sizeof(to)), 0);
    const char ev_req[] = "GET /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    assert_int_equal(send(slow, ev_req, sizeof(ev_req) - 1, 0), (ssize_t)sizeof(ev_req) - 1);
    char head[64] = {0};
    struct timeval tv = {.tv_sec = 10};
    setsockopt(slow, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    assert_true(recv(slow, head, sizeof(head) - 1, 0) > 0); /* its answer has begun: a stream */
    assert_non_null(strstr(head, "HTTP/1.1 200"));
    snprintf(url, sizeof(url), "%s/api/v1/deals/%s/mark", base, asin);
    int sent = 0;
    bool ended = false;
    while (!(ended = kdh_log_contains(&d, "an event stream does not read")) && sent < 20000) {
        for (int i = 0; i < 100; i++, sent++) {
            r = http("POST", url, json,
                     sent % 2 ? "{\"mark\":\"none\"}" : "{\"mark\":\"ignored\"}");
            assert_int_equal(r.status, 200);
            resp_free(&r);
        }
        kdh_nap_ms(200); /* pacing, not waiting: at most 500 changes a second */
    }
    /* What it may hold is its queue and a small kernel buffer (WEB_STREAM_SNDBUF): about 1 500
     * events of ~200 bytes, and the marks run up to ~500 past the drop before the log says so.
     * With the kernel's own send buffer (megabytes) it took ~20 000. */
    if (!ended || sent > 5000)
        fail_msg("a stream that never reads was still open after %d events (see %s)", sent, d.log);
    assert_true(closed_within(slow, 30));
    close(slow);
    printf("    an event stream that never reads: ended after %d events; every mark answered\n",
           sent);
    /* Too many event streams: the one beyond the cap is refused with 503. */
    int streams[WEB_STREAMS_MAX];
    for (int i = 0; i < WEB_STREAMS_MAX; i++) {
        streams[i] = connect_from("127.0.0.3", port);
        assert_true(streams[i] >= 0);
        const char req[] = "GET /api/v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
        assert_int_equal(send(streams[i], req, sizeof(req) - 1, 0), (ssize_t)sizeof(req) - 1);
    }
    kdh_nap_ms(500);
    snprintf(url, sizeof(url), "%s/api/v1/events", base);
    r = http("GET", url, NULL, NULL);
    expect_error(&r, 503, NULL);
    assert_non_null(strcasestr(r.head, "Retry-After:"));
    resp_free(&r);
    for (int i = 0; i < WEB_STREAMS_MAX; i++)
        close(streams[i]);
    /* The idle ones are closed by the server after its idle timeout. */
    int64_t idle0 = kd_mono_ns();
    int closed = 0, checked = 0;
    for (int i = 0; i < 300 && checked < 5; i++) {
        if (fds[i] < 0)
            continue;
        checked++;
        closed += closed_within(fds[i], 30);
    }
    assert_int_equal(closed, checked);
    printf("    %d of the idle connections checked: closed by the server within %lld ms\n", checked,
           (long long)((kd_mono_ns() - idle0) / 1000000));
    for (int i = 0; i < 300; i++)
        if (fds[i] >= 0)
            close(fds[i]);

    /* Meanwhile the other roles worked, and nothing restarted. */
    assert_true(total(&seg, SHM_C_asins_peeked) > peeked0 ||
                total(&seg, SHM_C_http_requests) > requests0);
    for (int role = 0; role < SHM_ROLE_COUNT; role++) {
        assert_int_equal(atomic_load(&seg.layout->procs[role].restarts), 0);
        assert_int_equal((pid_t)atomic_load(&seg.layout->procs[role].pid), pids[role]);
    }
    assert_true(total(&seg, SHM_C_web_client_errors) >= 110);
    assert_true(deals_now(base) >= 5);
    shm_segment_detach(&seg);
    assert_int_equal(kdh_daemon_stop(&d), 0);
    kdh_sim_stop(&sim);
}

/* ---- security -------------------------------------------------------------------------- */

static void write_token(const char *path, const char *token, mode_t mode)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "%s\n", token);
    fclose(f);
    assert_int_equal(chmod(path, mode), 0);
}

/* Neither the API key nor the token is in R. */
static void no_secret(const struct resp *r, const char *what)
{
    if (strstr(r->body, KEY) != NULL || strstr(r->head, KEY) != NULL)
        fail_msg("the API key is in the answer to %s", what);
    if (strstr(r->body, TOKEN) != NULL || strstr(r->head, TOKEN) != NULL)
        fail_msg("the bearer token is in the answer to %s", what);
    assert_null(strcasestr(r->head, "Access-Control-Allow-Origin"));
}

static void test_web_security(void **state)
{
    (void)state;
    kd_test_set_timeout(180);
    struct kdh_sim sim;
    struct kdh_daemon d;
    struct shm_segment seg;
    kdh_sim_start(&sim, sim_args);

    /* Beyond loopback without a token file: refused by the config, with the reason. */
    kdh_daemon_config(&d, &sim, KEY, 100, "[web]\nlisten = 0.0.0.0:0\n");
    const char *run[] = {"run", NULL};
    char *out = NULL;
    assert_int_equal(kdh_cli(&d, run, 30, &out), 2);
    assert_non_null(strstr(out, "set [web] token_file"));
    free(out);
    /* A token file others may read: refused at start, with what to do. */
    char token_path[700], extra[900];
    snprintf(token_path, sizeof(token_path), "%s/web.token", d.dir);
    write_token(token_path, TOKEN, 0644);
    snprintf(extra, sizeof(extra), "[web]\nlisten = 0.0.0.0:0\ntoken_file = %s\n", token_path);
    kdh_daemon_rewrite(&d, &sim, KEY, 100, extra);
    assert_int_equal(kdh_cli(&d, run, 30, &out), 2);
    assert_non_null(strstr(out, "chmod 600"));
    assert_null(strstr(out, TOKEN));
    free(out);

    chmod(token_path, 0600);
    kdh_daemon_start(&d);
    kdh_daemon_attach(&d, &seg);
    char base[96], url[256];
    base_url(&seg, base, sizeof(base));
    char host[64];
    memcpy(host, seg.layout->web.host, sizeof(seg.layout->web.host));
    assert_string_equal(host, "0.0.0.0");
    const char *auth[] = {"Authorization: Bearer " TOKEN, NULL};
    if (!KDH_WAIT_FOR(({
                          snprintf(url, sizeof(url), "%s/api/v1/deals?limit=1", base);
                          struct resp x = http("GET", url, auth, NULL);
                          bool ok = x.status == 200 && strstr(x.body, "\"asin\"") != NULL;
                          resp_free(&x);
                          ok;
                      }),
                      90))
        fail_msg("no deal in 90 s (see %s)", d.log);

    /* Without the token, or with a wrong one: 401 with a challenge, on every API path. */
    const char *paths[] = {"/api/v1/deals",  "/api/v1/status",  "/api/v1/stat", "/metrics",
                           "/api/v1/events", "/api/v1/filters", "/api/v1",      "/api/v1/samples"};
    const char *wrong[] = {"Authorization: Bearer " TOKEN "x", NULL};
    const char *basic[] = {"Authorization: Basic d2ViOnRlc3Q=", NULL};
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        snprintf(url, sizeof(url), "%s%s", base, paths[i]);
        const char *const *tries[] = {NULL, wrong, basic};
        for (size_t t = 0; t < 3; t++) {
            struct resp r = http("GET", url, tries[t], NULL);
            expect_error(&r, 401, NULL);
            assert_non_null(strcasestr(r.head, "WWW-Authenticate: Bearer"));
            no_secret(&r, url);
            resp_free(&r);
        }
    }
    /* The page itself carries no data: it loads, and asks for the token. */
    snprintf(url, sizeof(url), "%s/", base);
    struct resp r = http("GET", url, NULL, NULL);
    assert_int_equal(r.status, 200);
    no_secret(&r, url);
    resp_free(&r);

    /* Writes: the token is not enough from another origin, or without the custom header. */
    char asin[16];
    snprintf(url, sizeof(url), "%s/api/v1/deals?limit=1", base);
    r = http("GET", url, auth, NULL);
    yajl_val v = parse(&r);
    snprintf(asin, sizeof(asin), "%s",
             YAJL_GET_STRING(at(at(v, "deals", NULL)->u.array.values[0], "asin", NULL)));
    yajl_tree_free(v);
    resp_free(&r);
    snprintf(url, sizeof(url), "%s/api/v1/deals/%s/mark", base, asin);
    const char *body = "{\"mark\":\"ignored\"}";
    const char *evil[] = {"Authorization: Bearer " TOKEN, "Content-Type: application/json",
                          "X-Kdeals-Request: 1", "Origin: http://evil.example", NULL};
    r = http("POST", url, evil, body);
    expect_error(&r, 403, NULL);
    resp_free(&r);
    const char *cross[] = {"Authorization: Bearer " TOKEN, "Content-Type: application/json",
                           "X-Kdeals-Request: 1", "Sec-Fetch-Site: cross-site", NULL};
    r = http("POST", url, cross, body);
    expect_error(&r, 403, NULL);
    resp_free(&r);
    const char *form[] = {"Authorization: Bearer " TOKEN,
                          "Content-Type: application/x-www-form-urlencoded", NULL};
    r = http("POST", url, form, "mark=ignored");
    expect_error(&r, 415, NULL);
    resp_free(&r);
    const char *no_header[] = {"Authorization: Bearer " TOKEN, "Content-Type: application/json",
                               NULL};
    r = http("POST", url, no_header, body);
    expect_error(&r, 403, NULL);
    resp_free(&r);
    const char *preflight[] = {"Origin: http://evil.example", "Access-Control-Request-Method: POST",
                               NULL};
    r = http("OPTIONS", url, preflight, NULL);
    assert_true(r.status == 401 || r.status == 405);
    no_secret(&r, "a CORS preflight");
    resp_free(&r);
    char same_origin[160];
    snprintf(same_origin, sizeof(same_origin), "Origin: %s", base);
    const char *ok[] = {"Authorization: Bearer " TOKEN, "Content-Type: application/json",
                        "X-Kdeals-Request: 1",          same_origin,
                        "Sec-Fetch-Site: same-origin",  NULL};
    r = http("POST", url, ok, body);
    assert_int_equal(r.status, 200);
    no_secret(&r, url);
    resp_free(&r);

    /* With the token, no answer of any endpoint carries the key or the token. */
    const char *all[] = {"/",
                         "/app.js",
                         "/app.css",
                         "/api/v1",
                         "/api/v1/deals?limit=500&verdict=all&marked=true",
                         "/api/v1/status",
                         "/api/v1/stat",
                         "/api/v1/samples",
                         "/api/v1/filters",
                         "/api/v1/views",
                         "/metrics",
                         "/api/v1/deals/B000000000",
                         "/api/v1/nothing"};
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
        snprintf(url, sizeof(url), "%s%s", base, all[i]);
        r = http("GET", url, auth, NULL);
        assert_true(r.status == 200 || r.status == 404);
        no_secret(&r, url);
        resp_free(&r);
    }
    snprintf(url, sizeof(url), "%s/api/v1/deals/%s", base, asin);
    r = http("GET", url, auth, NULL);
    assert_int_equal(r.status, 200);
    no_secret(&r, url);
    resp_free(&r);
    /* The web process never held the key: not in its command line or environment either. */
    pid_t web_pid = (pid_t)atomic_load(&seg.layout->procs[SHM_ROLE_WEB].pid);
    const char *proc_files[] = {"cmdline", "environ"};
    for (size_t i = 0; i < 2; i++) {
        char path[64];
        size_t len = 0;
        snprintf(path, sizeof(path), "/proc/%d/%s", (int)web_pid, proc_files[i]);
        char *text = kd_read_file(path, &len);
        for (size_t j = 0; text != NULL && j < len; j++)
            if (text[j] == '\0')
                text[j] = ' ';
        assert_true(text == NULL || strstr(text, KEY) == NULL);
        free(text);
    }
    assert_false(kdh_log_contains(&d, TOKEN));
    shm_segment_detach(&seg);
    assert_int_equal(kdh_daemon_stop(&d), 0);
    kdh_sim_stop(&sim);
}

int main(int argc, char **argv)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_web_endpoints),
        cmocka_unit_test(test_web_hostile),
        cmocka_unit_test(test_web_security),
    };
    return KD_RUN_TESTS(tests, argc, argv);
}
