/*
 * test_sim_http.c: kdeals-sim over real HTTP, one test per docs/keepa-api.md §11 statement (the
 * test names carry the number), plus costs, the bucket over accelerated time, determinism,
 * fixture shape conformance, replay, every fault mode, the ledger and hostile input, and the
 * hostile bodies (endless, huge, drip, deep, mistyped) streamed without buffering.
 *
 * Each test starts its own build/kdeals-sim with --port 0 --port-file in kd_test_tmpdir(),
 * waits for the port file (poll with a deadline), talks to it with libcurl and stops it with
 * SIGTERM (asserting a clean exit 0). Bodies are fetched raw (gzip is decoded here with zlib)
 * so Content-Encoding and Content-Length can be checked byte for byte. Time-dependent tests
 * read refillIn and wait for that tick rather than guessing.
 */
#include <curl/curl.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <yajl/yajl_tree.h>
#include <zlib.h>

#include "kd_test.h"

#define SIM_BIN KD_BUILD_DIR "/kdeals-sim"

struct sim {
    pid_t pid;
    int port;
};

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void nap_ms(int64_t ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Starts the simulator with the NULL-terminated extra ARGS. */
static struct sim sim_start_v(const char *const *args)
{
    static int n;
    char port_file[512];
    snprintf(port_file, sizeof(port_file), "%s/port.%d.%d", kd_test_tmpdir(), (int)getpid(), n++);
    const char *argv[64];
    int a = 0;
    argv[a++] = SIM_BIN;
    argv[a++] = "--port";
    argv[a++] = "0";
    argv[a++] = "--port-file";
    argv[a++] = port_file;
    argv[a++] = "--quiet";
    for (int i = 0; args[i] && a < 62; i++)
        argv[a++] = args[i];
    argv[a] = NULL;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        execv(SIM_BIN, (char *const *)argv);
        _exit(127);
    }
    struct sim s = {pid, 0};
    int64_t deadline = mono_ms() + 20000;
    while (mono_ms() < deadline) {
        FILE *f = fopen(port_file, "r");
        if (f != NULL) {
            int ok = fscanf(f, "%d", &s.port) == 1;
            fclose(f);
            if (ok && s.port > 0)
                return s;
        }
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid)
            fail_msg("kdeals-sim exited early (status %d)", st);
        nap_ms(5);
    }
    kill(pid, SIGKILL);
    fail_msg("kdeals-sim wrote no port file within 20 s");
    return s;
}

#define sim_start(...) sim_start_v((const char *const[]){__VA_ARGS__, NULL})

static void sim_stop(struct sim *s)
{
    kill(s->pid, SIGTERM);
    int st = 0;
    waitpid(s->pid, &st, 0);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
}

struct resp {
    long status;
    char *raw;
    size_t raw_len;
    char *body; /* decoded */
    size_t body_len;
    int gz;
    long content_length;
    int retry_after;
    CURLcode curl_rc;
    yajl_val json;
    double elapsed_ms;
};

struct growbuf {
    char *p;
    size_t n;
};

static size_t on_data(char *d, size_t sz, size_t nm, void *u)
{
    struct growbuf *g = u;
    size_t n = sz * nm;
    char *np = realloc(g->p, g->n + n + 1);
    if (np == NULL)
        return 0;
    g->p = np;
    memcpy(g->p + g->n, d, n);
    g->n += n;
    g->p[g->n] = '\0';
    return n;
}

static size_t on_header(char *d, size_t sz, size_t nm, void *u)
{
    struct resp *r = u;
    size_t n = sz * nm;
    if (n > 17 && strncasecmp(d, "Content-Encoding:", 17) == 0 && strstr(d, "gzip"))
        r->gz = 1;
    if (n > 15 && strncasecmp(d, "Content-Length:", 15) == 0)
        r->content_length = strtol(d + 15, NULL, 10);
    if (n > 12 && strncasecmp(d, "Retry-After:", 12) == 0)
        r->retry_after = 1;
    return n;
}

static char *gunzip(const char *in, size_t len, size_t *out_len)
{
    z_stream zs;
    memset(&zs, 0, sizeof(zs));
    if (inflateInit2(&zs, 31) != Z_OK)
        return NULL;
    size_t cap = len * 8 + 1024;
    char *out = malloc(cap + 1);
    zs.next_in = (Bytef *)(uintptr_t)in;
    zs.avail_in = (uInt)len;
    int rc;
    do {
        if (zs.total_out == cap) {
            cap *= 2;
            out = realloc(out, cap + 1);
        }
        zs.next_out = (Bytef *)out + zs.total_out;
        zs.avail_out = (uInt)(cap - zs.total_out);
        rc = inflate(&zs, Z_NO_FLUSH);
    } while (rc == Z_OK);
    *out_len = zs.total_out;
    inflateEnd(&zs);
    if (rc != Z_STREAM_END) {
        free(out);
        return NULL;
    }
    out[*out_len] = '\0';
    return out;
}

/* One request. METHOD "GET"/"POST"; BODY for POST (may be NULL); GZ adds Accept-Encoding. */
static struct resp req(struct sim *s, const char *method, const char *path, const char *body,
                       int gz)
{
    struct resp r;
    memset(&r, 0, sizeof(r));
    r.content_length = -1;
    CURL *c = curl_easy_init();
    size_t url_len = strlen(path) + 64;
    char *url = malloc(url_len);
    snprintf(url, url_len, "http://127.0.0.1:%d%s", s->port, path);
    struct growbuf g = {NULL, 0};
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &g);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &r);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
    struct curl_slist *h = NULL;
    if (gz)
        h = curl_slist_append(h, "Accept-Encoding: gzip");
    if (strcmp(method, "POST") == 0) {
        curl_easy_setopt(c, CURLOPT_POST, 1L);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body ? body : "");
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)(body ? strlen(body) : 0));
        h = curl_slist_append(h, "Content-Type: application/json; charset=UTF-8");
    }
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    int64_t t0 = mono_ms();
    r.curl_rc = curl_easy_perform(c);
    r.elapsed_ms = (double)(mono_ms() - t0);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    free(url);
    r.raw = g.p ? g.p : calloc(1, 1);
    r.raw_len = g.n;
    if (r.gz) {
        r.body = gunzip(r.raw, r.raw_len, &r.body_len);
    } else {
        r.body = malloc(r.raw_len + 1);
        memcpy(r.body, r.raw, r.raw_len + 1);
        r.body_len = r.raw_len;
    }
    if (r.body != NULL) {
        char err[128];
        r.json = yajl_tree_parse(r.body, err, sizeof(err));
    }
    return r;
}

static void resp_free(struct resp *r)
{
    free(r->raw);
    free(r->body);
    yajl_tree_free(r->json);
    memset(r, 0, sizeof(*r));
}

static struct resp get(struct sim *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static struct resp get(struct sim *s, const char *fmt, ...)
{
    char path[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(path, sizeof(path), fmt, ap);
    va_end(ap);
    return req(s, "GET", path, NULL, 1);
}

static yajl_val jget(yajl_val v, const char *key)
{
    if (!YAJL_IS_OBJECT(v))
        return NULL;
    for (size_t i = 0; i < v->u.object.len; i++)
        if (strcmp(v->u.object.keys[i], key) == 0)
            return v->u.object.values[i];
    return NULL;
}

static long long jint(yajl_val v, const char *key)
{
    yajl_val x = jget(v, key);
    if (!YAJL_IS_INTEGER(x))
        fail_msg("%s is not an integer", key);
    return YAJL_GET_INTEGER(x);
}

static yajl_val jidx(yajl_val a, size_t i)
{
    if (!YAJL_IS_ARRAY(a) || i >= a->u.array.len)
        return NULL;
    return a->u.array.values[i];
}

static size_t jlen(yajl_val a)
{
    return YAJL_IS_ARRAY(a) ? a->u.array.len : YAJL_IS_OBJECT(a) ? a->u.object.len : 0;
}

static long long aint_plain(yajl_val arr, size_t i)
{
    yajl_val v = jidx(arr, i);
    if (!YAJL_IS_INTEGER(v))
        fail_msg("array entry %zu is not an integer", i);
    return YAJL_GET_INTEGER(v);
}

static char *urlenc(const char *s)
{
    CURL *c = curl_easy_init();
    char *e = curl_easy_escape(c, s, 0);
    char *out = strdup(e);
    curl_free(e);
    curl_easy_cleanup(c);
    return out;
}

static long long balance(struct sim *s)
{
    struct resp r = get(s, "/token?key=k");
    assert_int_equal(r.status, 200);
    long long b = jint(r.json, "tokensLeft");
    resp_free(&r);
    return b;
}

static void set_tokens(struct sim *s, long long n)
{
    char path[128];
    snprintf(path, sizeof(path), "/_sim/tokens?set=%lld", n);
    struct resp r = req(s, "POST", path, NULL, 0);
    assert_int_equal(r.status, 200);
    resp_free(&r);
}

static void set_faults(struct sim *s, const char *spec)
{
    char *e = urlenc(spec);
    char path[1024];
    snprintf(path, sizeof(path), "/_sim/faults?spec=%s", e);
    free(e);
    struct resp r = req(s, "POST", path, NULL, 0);
    assert_int_equal(r.status, 200);
    resp_free(&r);
}

/* The first N ASINs the oracle lists for SELECTION. */
static int oracle(struct sim *s, const char *selection, char asins[][11], int max)
{
    char *e = urlenc(selection);
    struct resp r = get(s, "/_sim/deals?selection=%s", e);
    free(e);
    assert_int_equal(r.status, 200);
    yajl_val list = jget(r.json, "asins");
    int n = (int)jlen(list);
    for (int i = 0; i < n && i < max; i++)
        snprintf(asins[i], 11, "%s", YAJL_GET_STRING(jidx(list, (size_t)i)));
    int count = (int)jint(r.json, "count");
    resp_free(&r);
    return count;
}

/* An ASIN of the catalog: index I of an unfiltered oracle listing. */
static void some_asins(struct sim *s, char out[][11], int n)
{
    int got = oracle(s, "{\"priceTypes\":[1],\"isRisers\":false}", out, n);
    assert_true(got >= n);
}

static const char *ENV_KEYS[7] = {"timestamp",         "tokensLeft",         "refillIn",
                                  "refillRate",        "tokenFlowReduction", "tokensConsumed",
                                  "processingTimeInMs"};

static void assert_envelope(yajl_val v)
{
    assert_true(YAJL_IS_OBJECT(v));
    assert_true(v->u.object.len >= 7);
    for (int i = 0; i < 7; i++) {
        assert_string_equal(v->u.object.keys[i], ENV_KEYS[i]);
        if (i == 4)
            assert_true(YAJL_IS_NUMBER(v->u.object.values[i]));
        else
            assert_true(YAJL_IS_INTEGER(v->u.object.values[i]));
    }
}

/* docs/keepa-api.md §11.1 */
static void test_11_01_trailing_slash(void **state)
{
    (void)state;
    struct sim s = sim_start("--clock-ms", "1790000000000");
    char a[1][11];
    some_asins(&s, a, 1);
    const char *paths[] = {"/token?key=k", "/token/?key=k"};
    for (int i = 0; i < 2; i++) {
        struct resp r = get(&s, "%s", paths[i]);
        assert_int_equal(r.status, 200);
        assert_envelope(r.json);
        resp_free(&r);
    }
    struct resp p1 = get(&s, "/product?key=k&domain=1&asin=%s&stats=30", a[0]);
    struct resp p2 = get(&s, "/product/?key=k&domain=1&asin=%s&stats=30", a[0]);
    assert_int_equal(p1.status, 200);
    assert_int_equal(p2.status, 200);
    const char *b1 = strstr(p1.body, "\"products\""), *b2 = strstr(p2.body, "\"products\"");
    assert_non_null(b1);
    assert_non_null(b2);
    assert_string_equal(b1, b2);
    resp_free(&p1);
    resp_free(&p2);
    sim_stop(&s);
}

/* docs/keepa-api.md §11.2 */
static void test_11_02_get_and_post(void **state)
{
    (void)state;
    struct sim s = sim_start("--products", "5000");
    struct resp t = req(&s, "POST", "/token?key=k", NULL, 1);
    assert_int_equal(t.status, 200);
    resp_free(&t);
    char a[1][11];
    some_asins(&s, a, 1);
    char path[256];
    snprintf(path, sizeof(path), "/product?key=k&domain=1&asin=%s", a[0]);
    struct resp p = req(&s, "POST", path, NULL, 1);
    assert_int_equal(p.status, 200);
    assert_int_equal(jlen(jget(p.json, "products")), 1);
    resp_free(&p);
    const char *sel = "{\"domainId\":1,\"priceTypes\":[2],\"sortType\":4,\"page\":0}";
    char *e = urlenc(sel);
    struct resp g = get(&s, "/deal?key=k&selection=%s", e);
    free(e);
    struct resp po = req(&s, "POST", "/deal?key=k", sel, 1);
    assert_int_equal(g.status, 200);
    assert_int_equal(po.status, 200);
    yajl_val dg = jget(jget(g.json, "deals"), "dr"), dp = jget(jget(po.json, "deals"), "dr");
    assert_true(jlen(dg) > 0);
    assert_int_equal(jlen(dg), jlen(dp));
    for (size_t i = 0; i < jlen(dg); i++)
        assert_string_equal(YAJL_GET_STRING(jget(jidx(dg, i), "asin")),
                            YAJL_GET_STRING(jget(jidx(dp, i), "asin")));
    resp_free(&g);
    resp_free(&po);
    sim_stop(&s);
}

/* docs/keepa-api.md §11.3 */
static void test_11_03_keys(void **state)
{
    (void)state;
    struct sim s = sim_start("--keys", "K1,K2", "--expired-keys", "KX");
    const char *bad[] = {"/token", "/token?key=", "/token?key=nope",
                         "/product?key=nope&domain=1&asin=B000000000"};
    for (size_t i = 0; i < 4; i++) {
        struct resp r = get(&s, "%s", bad[i]);
        assert_int_equal(r.status, 400);
        assert_envelope(r.json);
        assert_int_equal(jint(r.json, "tokensLeft"), 0);
        assert_int_equal(jint(r.json, "refillIn"), 0);
        assert_int_equal(jint(r.json, "refillRate"), 0);
        assert_string_equal(YAJL_GET_STRING(jget(jget(r.json, "error"), "type")),
                            "invalidParameter");
        resp_free(&r);
    }
    struct resp x = get(&s, "/token?key=KX");
    assert_int_equal(x.status, 402);
    assert_envelope(x.json);
    assert_non_null(jget(x.json, "error"));
    resp_free(&x);
    struct resp ok = get(&s, "/token?key=K2");
    assert_int_equal(ok.status, 200);
    assert_int_equal(jint(ok.json, "tokensLeft"), 300);
    resp_free(&ok);
    sim_stop(&s);
    /* Without --keys any non-empty key works. */
    struct sim s2 = sim_start("--products", "100");
    struct resp any = get(&s2, "/token?key=whatever");
    assert_int_equal(any.status, 200);
    resp_free(&any);
    sim_stop(&s2);
}

/* docs/keepa-api.md §11.4 */
static void test_11_04_unknown_params(void **state)
{
    (void)state;
    struct sim s = sim_start("--clock-ms", "1790000000000");
    char a[1][11];
    some_asins(&s, a, 1);
    struct resp p1 = get(&s, "/product?key=k&domain=1&asin=%s&stats=30", a[0]);
    struct resp p2 = get(&s,
                         "/product?key=k&domain=1&asin=%s&stats=30&only_live_offers=1&fbafees=1&"
                         "category=1&foo=bar",
                         a[0]);
    assert_int_equal(p2.status, 200);
    assert_string_equal(strstr(p1.body, "\"products\""), strstr(p2.body, "\"products\""));
    assert_int_equal(jint(p1.json, "tokensConsumed"), jint(p2.json, "tokensConsumed"));
    resp_free(&p1);
    resp_free(&p2);
    sim_stop(&s);
}

/* docs/keepa-api.md §11.5 */
static void test_11_05_envelope_everywhere(void **state)
{
    (void)state;
    struct sim s = sim_start("--products", "3000");
    char a[1][11];
    some_asins(&s, a, 1);
    char *sel = urlenc("{\"priceTypes\":[2]}");
    char *q = urlenc("{\"current_SALES_lte\":100000,\"perPage\":50}");
    char paths[6][512];
    snprintf(paths[0], 512, "/token?key=k");
    snprintf(paths[1], 512, "/product?key=k&domain=1&asin=%s&offers=20&stats=90", a[0]);
    snprintf(paths[2], 512, "/deal?key=k&selection=%s", sel);
    snprintf(paths[3], 512, "/seller?key=k&domain=1&seller=ATVPDKIKX0DER");
    snprintf(paths[4], 512, "/query?key=k&domain=1&selection=%s", q);
    snprintf(paths[5], 512, "/product?key=k&domain=1");
    for (int i = 0; i < 6; i++) {
        struct resp r = get(&s, "%s", paths[i]);
        assert_int_equal(r.status, i == 5 ? 400 : 200);
        assert_envelope(r.json);
        resp_free(&r);
    }
    struct resp d = get(&s, "%s", paths[2]);
    yajl_val o = d.json;
    assert_string_equal(o->u.object.keys[o->u.object.len - 1], "dealsCached");
    assert_string_equal(o->u.object.keys[o->u.object.len - 2], "deals");
    resp_free(&d);
    free(sel);
    free(q);
    sim_stop(&s);
}

/* docs/keepa-api.md §11.6 */
static void test_11_06_timestamp(void **state)
{
    (void)state;
    struct sim s = sim_start("--products", "100");
    struct timeval tv;
    gettimeofday(&tv, NULL);
    long long before = (long long)tv.tv_sec * 1000 + tv.tv_usec / 1000;
    struct resp r = get(&s, "/token?key=k");
    gettimeofday(&tv, NULL);
    long long after = (long long)tv.tv_sec * 1000 + tv.tv_usec / 1000;
    long long ts = jint(r.json, "timestamp");
    assert_true(ts >= before - 5 && ts <= after + 5);
    resp_free(&r);
    sim_stop(&s);
    struct sim t = sim_start("--products", "100", "--clock-ms", "1746053307585");
    struct resp r2 = get(&t, "/token?key=k");
    long long ts2 = jint(r2.json, "timestamp");
    assert_true(ts2 >= 1746053307585LL && ts2 < 1746053307585LL + 60000);
    resp_free(&r2);
    sim_stop(&t);
}

/* With an accelerated minute the catalog moves as fast as the bucket, yet no timestamp in an
 * answer is ahead of the answer's own (sim/README.md, "Clocks"). */
static void test_11_06_accelerated_timestamps_never_ahead(void **state)
{
    (void)state;
    struct sim s = sim_start("--products", "2000", "--minute-ms", "100", "--economy", "rich",
                             "--start-tokens", "100000");
    struct resp c0 = get(&s, "/_sim/clock");
    long long m0 = jint(c0.json, "keepa_minute");
    assert_true(jint(c0.json, "catalog_start_ms") < jint(c0.json, "start_wall_ms"));
    char a[3][11];
    some_asins(&s, a, 3);
    nap_ms(1000); /* 10 Keepa minutes of catalog time */
    struct resp r = get(&s, "/product?key=k&domain=1&asin=%s,%s,%s&stats=90&offers=20&buybox=1",
                        a[0], a[1], a[2]);
    assert_int_equal(r.status, 200);
    long long now = jint(r.json, "timestamp") / 60000 - 21564000;
    yajl_val products = jget(r.json, "products");
    assert_int_equal(jlen(products), 3);
    for (size_t i = 0; i < 3; i++) {
        yajl_val p = jidx(products, i);
        static const char *const keys[] = {"lastUpdate", "lastPriceChange", "trackingSince",
                                           "lastRatingUpdate", "lastSoldUpdate"};
        for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++)
            if (jint(p, keys[k]) > now)
                fail_msg("%s %lld is ahead of the answer's minute %lld", keys[k], jint(p, keys[k]),
                         now);
        yajl_val csv = jget(p, "csv");
        for (size_t t = 0; t < jlen(csv); t++) {
            yajl_val series = jidx(csv, t);
            size_t step = (t == 7 || (t >= 18 && t <= 29) || t == 32) ? 3 : 2;
            for (size_t k = 0; k < jlen(series); k += step)
                assert_true(aint_plain(series, k) <= now);
        }
        yajl_val offers = jget(p, "offers");
        for (size_t k = 0; k < jlen(offers); k++)
            assert_true(jint(jidx(offers, k), "lastSeen") <= now);
    }
    struct resp c1 = get(&s, "/_sim/clock");
    long long m1 = jint(c1.json, "keepa_minute");
    assert_true(m1 - m0 >= 9); /* the catalog ran 600 times as fast */
    assert_true(m1 <= jint(c1.json, "timestamp") / 60000 - 21564000);
    resp_free(&c0);
    resp_free(&c1);
    resp_free(&r);
    sim_stop(&s);
}

static void check_encoding(struct sim *s, const char *path, const char *method, long status)
{
    struct resp z = req(s, method, path, NULL, 1);
    assert_int_equal(z.status, status);
    assert_true(z.gz);
    assert_int_equal(z.content_length, (long)z.raw_len);
    assert_non_null(z.body);
    assert_non_null(z.json);
    assert_envelope(z.json);
    resp_free(&z);
    struct resp p = req(s, method, path, NULL, 0);
    assert_int_equal(p.status, status);
    assert_false(p.gz);
    assert_int_equal(p.content_length, (long)p.raw_len);
    assert_non_null(p.json);
    assert_envelope(p.json);
    resp_free(&p);
}

/* docs/keepa-api.md §11.7 */
static void test_11_07_gzip_every_body(void **state)
{
    (void)state;
    struct sim s = sim_start("--products", "1000", "--expired-keys", "KX");
    char a[1][11];
    some_asins(&s, a, 1);
    char ok[256], bad[256];
    snprintf(ok, sizeof(ok), "/product?key=k&domain=1&asin=%s&stats=90", a[0]);
    snprintf(bad, sizeof(bad), "/product?key=k&domain=1&asin=%s&offers=0", a[0]);
    check_encoding(&s, "/token?key=k", "GET", 200);
    check_encoding(&s, ok, "GET", 200);
    check_encoding(&s, bad, "GET", 400);
    check_encoding(&s, "/token?key=KX", "GET", 402);
    check_encoding(&s, "/nothing?key=k", "GET", 404);
    set_tokens(&s, 0);
    check_encoding(&s, ok, "GET", 429);
    set_tokens(&s, 100);
    set_faults(&s, "http500=1");
    check_encoding(&s, ok, "GET", 500);
    set_faults(&s, "http503=1");
    check_encoding(&s, ok, "GET", 503);
    sim_stop(&s);
}

/* Waits until the next tick after the one announced by refillIn; returns the new balance. */
static long long wait_tick(struct sim *s, long long *before)
{
    struct resp r = get(s, "/token?key=k");
    long long in = jint(r.json, "refillIn");
    *before = jint(r.json, "tokensLeft");
    resp_free(&r);
    nap_ms(in + 30);
    return balance(s);
}

/* docs/keepa-api.md §11.8 */
static void test_11_08_bucket_refill_and_cap(void **state)
{
    (void)state;
    struct sim s = sim_start("--products", "100", "--minute-ms", "400", "--refill-rate", "5",
                             "--bucket-minutes", "4", "--start-tokens", "3");
    struct resp r = get(&s, "/token?key=k");
    long long in = jint(r.json, "refillIn");
    assert_true(in > 0 && in <= 400);
    assert_int_equal(jint(r.json, "refillRate"), 5);
    resp_free(&r);
    long long before, after;
    after = wait_tick(&s, &before);
    assert_int_equal(after - before, 5);
    /* near the cap (4 * 5 = 20): the tick fills it and the excess expires */
    set_tokens(&s, 18);
    after = wait_tick(&s, &before);
    assert_int_equal(before, 18);
    assert_int_equal(after, 20);
    after = wait_tick(&s, &before);
    assert_int_equal(after, 20);
    struct resp st = get(&s, "/_sim/stats");
    assert_true(jint(st.json, "tokens_expired") >= 3 + 5);
    resp_free(&st);
    sim_stop(&s);
}

/* docs/keepa-api.md §11.9 and §11.10 */
static void test_11_09_10_admission_and_429(void **state)
{
    (void)state;
    struct sim s = sim_start("--products", "2000", "--start-tokens", "1");
    char a[3][11];
    some_asins(&s, a, 3);
    struct resp p = get(&s, "/product?key=k&domain=1&asin=%s,%s,%s&offers=20", a[0], a[1], a[2]);
    assert_int_equal(p.status, 200);
    long long cost = jint(p.json, "tokensConsumed");
    assert_true(cost >= 18);
    assert_int_equal(jint(p.json, "tokensLeft"), 1 - cost);
    resp_free(&p);
    assert_int_equal(balance(&s), 1 - cost);
    struct resp q = get(&s, "/product?key=k&domain=1&asin=%s", a[0]);
    assert_int_equal(q.status, 429);
    assert_envelope(q.json);
    assert_int_equal(q.json->u.object.len, 7);
    assert_int_equal(jint(q.json, "tokensConsumed"), 0);
    assert_int_equal(jint(q.json, "tokensLeft"), 1 - cost);
    assert_null(jget(q.json, "error"));
    assert_false(q.retry_after);
    resp_free(&q);
    assert_int_equal(balance(&s), 1 - cost);
    set_tokens(&s, 0); /* exactly 0 is refused too */
    struct resp z = get(&s, "/deal?key=k&selection=%%7B%%22priceTypes%%22%%3A2%%7D");
    assert_int_equal(z.status, 429);
    resp_free(&z);
    set_tokens(&s, 1);
    struct resp o = get(&s, "/deal?key=k&selection=%%7B%%22priceTypes%%22%%3A2%%7D");
    assert_int_equal(o.status, 200);
    assert_int_equal(jint(o.json, "tokensLeft"), -4);
    resp_free(&o);
    sim_stop(&s);
}

/* docs/keepa-api.md §11.11 */
static void test_11_11_token_free(void **state)
{
    (void)state;
    struct sim s = sim_start("--products", "100");
    set_tokens(&s, -50);
    for (int i = 0; i < 5; i++) {
        struct resp r = get(&s, "/token/?key=k");
        assert_int_equal(r.status, 200);
        assert_int_equal(jint(r.json, "tokensConsumed"), 0);
        assert_int_equal(jint(r.json, "tokensLeft"), -50);
        resp_free(&r);
    }
    sim_stop(&s);
}

/* Cost of one /product call, checking tokensConsumed == balance change. */
static long long product_cost(struct sim *s, const char *query)
{
    long long b0 = balance(s);
    struct resp r = get(s, "/product?key=k&domain=1&%s", query);
    assert_int_equal(r.status, 200);
    long long c = jint(r.json, "tokensConsumed");
    assert_int_equal(jint(r.json, "tokensLeft"), b0 - c);
    resp_free(&r);
    assert_int_equal(balance(s), b0 - c);
    return c;
}

static long long truth_int(struct sim *s, const char *asin, const char *key)
{
    struct resp r = get(s, "/_sim/product?asin=%s", asin);
    assert_int_equal(r.status, 200);
    long long v = jint(r.json, key);
    resp_free(&r);
    return v;
}

/* docs/keepa-api.md §11.12 and the cost table of §3.1 */
static void test_11_12_product_costs(void **state)
{
    (void)state;
    struct sim s =
        sim_start("--products", "3000", "--start-tokens", "100000", "--refill-rate", "2000");
    char a[4][11], q[512];
    some_asins(&s, a, 4);
    snprintf(q, sizeof(q), "asin=%s,%s", a[0], a[1]);
    assert_int_equal(product_cost(&s, q), 2);
    /* code= finds products by the EAN or UPC they list, each billed */
    struct resp e = get(&s, "/product?key=k&domain=1&asin=%s", a[0]);
    yajl_val p0 = jidx(jget(e.json, "products"), 0);
    char ean[16], upc[16];
    const char *ean0 = YAJL_GET_STRING(jidx(jget(p0, "eanList"), 0));
    const char *upc0 = YAJL_GET_STRING(jidx(jget(p0, "upcList"), 0));
    assert_non_null(ean0);
    assert_non_null(upc0);
    snprintf(ean, sizeof(ean), "%s", ean0);
    snprintf(upc, sizeof(upc), "%s", upc0);
    resp_free(&e);
    snprintf(q, sizeof(q), "code=%s,%s", ean, upc);
    assert_int_equal(product_cost(&s, q), 2);
    struct resp cr = get(&s, "/product?key=k&domain=1&code=%s", upc);
    assert_string_equal(YAJL_GET_STRING(jget(jidx(jget(cr.json, "products"), 0), "asin")), a[0]);
    resp_free(&cr);
    snprintf(q, sizeof(q), "asin=%s&stats=180&history=1&days=30", a[0]);
    assert_int_equal(product_cost(&s, q), 1);
    snprintf(q, sizeof(q), "asin=%s&buybox=1", a[0]);
    assert_int_equal(product_cost(&s, q), 3);
    snprintf(q, sizeof(q), "asin=%s&rating=1", a[0]);
    assert_int_equal(product_cost(&s, q), 2);
    snprintf(q, sizeof(q), "asin=%s&stock=0&history=1&rating=0&buybox=0&videos=0&aplus=0", a[0]);
    assert_int_equal(product_cost(&s, q), 1);
    /* unknown ASIN: charged 0, no products key */
    assert_int_equal(product_cost(&s, "asin=XXXXXXXXXX"), 0);
    struct resp u = get(&s, "/product?key=k&domain=1&asin=XXXXXXXXXX");
    assert_null(jget(u.json, "products"));
    resp_free(&u);
    /* offers: 6 per page of 10 found offers (at least one page), buybox ignored */
    for (int i = 0; i < 2; i++) {
        long long live = truth_int(&s, a[2 + i], "liveOffers");
        long long n = i == 0 ? 20 : 100;
        long long found = live < n ? live : n;
        long long pages = (found + 9) / 10;
        snprintf(q, sizeof(q), "asin=%s&offers=%lld&buybox=1&update=1", a[2 + i], n);
        assert_int_equal(product_cost(&s, q), 6 * (pages > 0 ? pages : 1));
        /* the same offers again within `update` hours: flat 5 */
        assert_int_equal(product_cost(&s, q), 5);
        /* update=0: always live, +1 when Keepa updated it less than an hour ago */
        long long fresh =
            truth_int(&s, a[2 + i], "lastUpdate") > truth_int(&s, a[2 + i], "keepa_minute") - 60;
        snprintf(q, sizeof(q), "asin=%s&offers=%lld&update=0&stock=1&rating=1", a[2 + i], n);
        assert_int_equal(product_cost(&s, q), 6 * (pages > 0 ? pages : 1) + 2 + 1 + fresh);
    }
    sim_stop(&s);
}

/* docs/keepa-api.md §11.13 */
static void test_11_13_limits_zeros_stats(void **state)
{
    (void)state;
    struct sim s = sim_start("--products", "3000");
    char a[1][11];
    some_asins(&s, a, 1);
    char list[101 * 11 + 1] = "";
    for (int i = 0; i < 100; i++) {
        strcat(list, i ? "," : "");
        strcat(list, a[0]);
    }
    struct resp r = get(&s, "/product?key=k&domain=1&asin=%s", list);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    strcat(list, ",");
    strcat(list, a[0]);
    r = get(&s, "/product?key=k&domain=1&asin=%s", list);
    assert_int_equal(r.status, 400);
    assert_int_equal(jint(r.json, "tokensConsumed"), 0);
    resp_free(&r);
    const char *forms[] = {"stats=90", "stats=1444000000000,1445000000000",
                           "stats=2015-10-20,2015-12-24", "stats=0"};
    for (int i = 0; i < 4; i++) {
        r = get(&s,
                "/product?key=k&domain=1&asin=%s&%s&history=0&days=0&rating=0&buybox=0&stock=0&"
                "update=0&only-live-offers=0",
                a[0], forms[i]);
        assert_int_equal(r.status, 200);
        yajl_val p = jidx(jget(r.json, "products"), 0);
        assert_true(YAJL_IS_NULL(jget(p, "csv")));
        assert_true(YAJL_IS_OBJECT(jget(p, "stats")));
        resp_free(&r);
    }
    r = get(&s, "/product?key=k&domain=1&asin=%s&stats=soon", a[0]);
    assert_int_equal(r.status, 400);
    resp_free(&r);
    r = get(&s, "/product?key=k&domain=1&asin=%s&history=x", a[0]);
    assert_int_equal(r.status, 400);
    resp_free(&r);
    r = get(&s, "/product?key=k&asin=%s", a[0]); /* no domain */
    assert_int_equal(r.status, 400);
    resp_free(&r);
    sim_stop(&s);
}

/* docs/keepa-api.md §11.14 */
static void test_11_14_offers_zero(void **state)
{
    (void)state;
    struct sim s = sim_start("--products", "300");
    char a[1][11];
    some_asins(&s, a, 1);
    struct resp r = get(&s, "/product?key=k&domain=1&asin=%s&offers=0", a[0]);
    assert_int_equal(r.status, 400);
    assert_string_equal(YAJL_GET_STRING(jget(jget(r.json, "error"), "type")), "invalidParameter");
    resp_free(&r);
    sim_stop(&s);
    struct sim t = sim_start("--products", "300", "--offers-zero-ok");
    r = get(&t, "/product?key=k&domain=1&asin=%s&offers=0", a[0]);
    assert_int_equal(r.status, 200);
    assert_null(jget(jidx(jget(r.json, "products"), 0), "offers"));
    assert_int_equal(jint(r.json, "tokensConsumed"), 1);
    resp_free(&r);
    sim_stop(&t);
}

/* docs/keepa-api.md §11.15 and §11.16 */
static void test_11_15_16_offers_and_shapes(void **state)
{
    (void)state;
    struct sim s = sim_start("--products", "3000");
    /* a product with used offers: any USED deal */
    char a[1][11];
    assert_true(oracle(&s, "{\"priceTypes\":[2]}", a, 1) > 0);
    struct resp w = get(&s, "/product?key=k&domain=1&asin=%s&offers=20&stats=90", a[0]);
    struct resp n = get(&s, "/product?key=k&domain=1&asin=%s&stats=90", a[0]);
    yajl_val pw = jidx(jget(w.json, "products"), 0), pn = jidx(jget(n.json, "products"), 0);
    yajl_val offers = jget(pw, "offers");
    assert_true(jlen(offers) > 0);
    for (size_t i = 0; i < jlen(offers); i++) {
        yajl_val csv = jget(jidx(offers, i), "offerCSV");
        assert_true(jlen(csv) > 0 && jlen(csv) % 3 == 0);
        long long cond = jint(jidx(offers, i), "condition");
        assert_true(cond >= 1 && cond <= 10);
    }
    assert_true(YAJL_IS_ARRAY(jget(pw, "liveOffersOrder")));
    assert_true(jlen(jget(pw, "liveOffersOrder")) > 0);
    assert_true(jint(jget(pw, "stats"), "offerCountFBA") >= 0);
    assert_true(jint(jget(pw, "stats"), "offerCountFBM") >= 0);
    assert_true(jget(pw, "offersSuccessful")->type == yajl_t_true);
    yajl_val cw = jget(pw, "csv"), cn = jget(pn, "csv");
    assert_int_equal(jlen(cw), 36);
    assert_int_equal(jlen(cn), 36);
    /* used sub-conditions and offer series only with offers; triples are multiples of 3. A
     * sub-condition with a live offer has its series (csv 17 + condition); one no offer of
     * the product ever had may be null, as Keepa's are. */
    bool live_sub[23] = {false};
    yajl_val live = jget(pw, "liveOffersOrder"); /* offers[] also holds offers no longer live */
    for (size_t i = 0; i < jlen(live); i++) {
        long long at = YAJL_GET_INTEGER(jidx(live, i));
        assert_true(at >= 0 && (size_t)at < jlen(offers));
        long long cond = jint(jidx(offers, (size_t)at), "condition");
        if (cond >= 2 && cond <= 5)
            live_sub[17 + cond] = true;
    }
    int sub_series = 0;
    for (int t = 19; t <= 22; t++) {
        yajl_val series = jidx(cw, (size_t)t);
        if (live_sub[t])
            assert_true(YAJL_IS_ARRAY(series));
        if (YAJL_IS_ARRAY(series)) {
            sub_series++;
            assert_int_equal(jlen(series) % 3, 0);
        } else {
            assert_true(YAJL_IS_NULL(series));
        }
        assert_true(YAJL_IS_NULL(jidx(cn, (size_t)t)));
    }
    assert_true(sub_series >= 1);
    assert_true(YAJL_IS_NULL(jidx(cn, 10)));
    assert_true(jlen(jidx(cn, 3)) % 2 == 0 && jlen(jidx(cn, 3)) >= 2);
    assert_null(jget(pn, "offers"));
    assert_true(YAJL_IS_NULL(jget(pn, "liveOffersOrder")));
    assert_int_equal(jint(jget(pn, "stats"), "offerCountFBA"), -2);
    assert_int_equal(jint(jget(pn, "stats"), "retrievedOfferCount"), -2);
    const char *per_index[] = {"current",
                               "avg",
                               "avg30",
                               "avg90",
                               "avg180",
                               "avg365",
                               "atIntervalStart",
                               "min",
                               "max",
                               "isLowest",
                               "outOfStockPercentage90"};
    for (size_t i = 0; i < sizeof(per_index) / sizeof(per_index[0]); i++)
        assert_int_equal(jlen(jget(jget(pn, "stats"), per_index[i])), 36);
    resp_free(&w);
    resp_free(&n);
    sim_stop(&s);
}

static struct resp deal_post(struct sim *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static struct resp deal_post(struct sim *s, const char *fmt, ...)
{
    char sel[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(sel, sizeof(sel), fmt, ap);
    va_end(ap);
    return req(s, "POST", "/deal/?key=k", sel, 1);
}

/* docs/keepa-api.md §11.18 */
static void test_11_18_deal_paging(void **state)
{
    (void)state;
    struct sim s = sim_start("--products", "20000", "--start-tokens", "100000");
    const char *sel = "{\"priceTypes\":[2],\"dateRange\":1,\"sortType\":4}";
    static char all[10000][11], again[10000][11];
    /* The oracle lists the feed of the moment; page 0 fixes the query's answer for its cache's
     * life (§11.21). The simulator's minute may turn between the two (a slow run): then the
     * oracle read before page 0 and the one after differ, and the pair is taken again. */
    int total = 0;
    struct resp first = {0};
    for (int attempt = 0; attempt < 5; attempt++) {
        resp_free(&first);
        total = oracle(&s, sel, all, 10000);
        first = deal_post(&s, "{\"priceTypes\":[2],\"dateRange\":1,\"sortType\":4,\"page\":0}");
        int total_after = oracle(&s, sel, again, 10000);
        if (total_after == total &&
            memcmp(all, again, (size_t)(total < 10000 ? total : 10000) * sizeof(all[0])) == 0)
            break;
    }
    assert_true(total > 300);
    int seen = 0;
    for (int page = 0; page < 67; page++) {
        struct resp r =
            page == 0
                ? first
                : deal_post(&s, "{\"priceTypes\":[2],\"dateRange\":1,\"sortType\":4,\"page\":%d}",
                            page);
        assert_int_equal(r.status, 200);
        assert_int_equal(jint(r.json, "tokensConsumed"), 5);
        yajl_val dr = jget(jget(r.json, "deals"), "dr");
        size_t n = jlen(dr);
        assert_true(n <= 150);
        for (size_t i = 0; i < n; i++)
            assert_string_equal(YAJL_GET_STRING(jget(jidx(dr, i), "asin")), all[seen + (int)i]);
        seen += (int)n;
        resp_free(&r);
        if (n < 150)
            break;
    }
    assert_int_equal(seen, total < 10000 ? total : 10000);
    struct resp e = deal_post(&s, "{\"priceTypes\":[2],\"page\":67}");
    assert_int_equal(e.status, 200);
    assert_int_equal(jlen(jget(jget(e.json, "deals"), "dr")), 0);
    assert_int_equal(jint(e.json, "tokensConsumed"), 5);
    resp_free(&e);
    sim_stop(&s);
}

/* docs/keepa-api.md §11.19 */
static void test_11_19_deal_arrays(void **state)
{
    (void)state;
    struct sim s = sim_start("--products", "3000");
    struct resp r = deal_post(&s, "{\"priceTypes\":[2]}");
    yajl_val dr = jget(jget(r.json, "deals"), "dr");
    assert_true(jlen(dr) > 0);
    yajl_val d = jidx(dr, 0);
    const char *one[] = {"current", "currentSince", "deltaLast", "backInStock"};
    for (int i = 0; i < 4; i++) {
        assert_int_equal(jlen(jget(d, one[i])), 34);
        assert_false(YAJL_IS_ARRAY(jidx(jget(d, one[i]), 0)));
    }
    const char *two[] = {"avg", "delta", "deltaPercent"};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(jlen(jget(d, two[i])), 4);
        for (size_t k = 0; k < 4; k++)
            assert_int_equal(jlen(jidx(jget(d, two[i]), k)), 34);
    }
    /* delta = avg - current, deltaPercent = delta * 100 / avg */
    long long cur = YAJL_GET_INTEGER(jidx(jget(d, "current"), 2));
    long long avg = YAJL_GET_INTEGER(jidx(jidx(jget(d, "avg"), 0), 2));
    long long delta = YAJL_GET_INTEGER(jidx(jidx(jget(d, "delta"), 0), 2));
    long long pct = YAJL_GET_INTEGER(jidx(jidx(jget(d, "deltaPercent"), 0), 2));
    assert_int_equal(delta, avg - cur);
    assert_int_equal(pct, delta * 100 / avg);
    assert_true(delta > 0);
    resp_free(&r);
    sim_stop(&s);
}

static long long deal_metric(yajl_val d, int sort, int dr, int pt)
{
    switch (sort < 0 ? -sort : sort) {
    case 1:
        return jint(d, "creationDate");
    case 2:
        return YAJL_GET_INTEGER(jidx(jidx(jget(d, "delta"), (size_t)dr), (size_t)pt));
    case 3:
        return YAJL_GET_INTEGER(jidx(jget(d, "current"), 3));
    default:
        return YAJL_GET_INTEGER(jidx(jidx(jget(d, "deltaPercent"), (size_t)dr), (size_t)pt));
    }
}

/* docs/keepa-api.md §11.20 */
static void test_11_20_sort_types(void **state)
{
    (void)state;
    /* the rich economy: a deal's figures now are the ones it is sorted by */
    struct sim s = sim_start("--products", "5000", "--start-tokens", "10000", "--economy", "rich");
    const int sorts[] = {1, 2, 3, 4, -2, -3, -4, -1};
    for (size_t k = 0; k < sizeof(sorts) / sizeof(sorts[0]); k++) {
        int st = sorts[k];
        struct resp r = deal_post(&s, "{\"priceTypes\":[2],\"dateRange\":2,\"sortType\":%d}", st);
        yajl_val dr = jget(jget(r.json, "deals"), "dr");
        assert_true(jlen(dr) > 10);
        for (size_t i = 1; i < jlen(dr); i++) {
            long long a = deal_metric(jidx(dr, i - 1), st, 2, 2),
                      b = deal_metric(jidx(dr, i), st, 2, 2);
            int desc = st == 1 || st == -1 || st == 2 || st == 4 || st == -3;
            if (desc)
                assert_true(a >= b);
            else
                assert_true(a <= b);
        }
        yajl_val o = r.json;
        assert_string_equal(o->u.object.keys[o->u.object.len - 1], "dealsCached");
        resp_free(&r);
    }
    sim_stop(&s);
}

/* docs/keepa-api.md §11.21 */
static void test_11_21_deal_cache(void **state)
{
    (void)state;
    struct sim s = sim_start("--products", "3000");
    for (int i = 0; i < 3; i++) {
        long long b0 = balance(&s);
        struct resp r = deal_post(&s, "{\"priceTypes\":[2],\"sortType\":2,\"page\":%d}", i == 2);
        assert_true(jget(r.json, "dealsCached")->type == (i == 0 ? yajl_t_false : yajl_t_true));
        assert_int_equal(jint(r.json, "tokensConsumed"), 5);
        assert_int_equal(balance(&s), b0 - 5);
        resp_free(&r);
    }
    struct resp o = deal_post(&s, "{\"priceTypes\":[2],\"sortType\":3}");
    assert_true(jget(o.json, "dealsCached")->type == yajl_t_false);
    resp_free(&o);
    sim_stop(&s);
}

/* docs/keepa-api.md §11.22 */
static void test_11_22_lenient_selection(void **state)
{
    (void)state;
    struct sim s = sim_start("--products", "3000", "--start-tokens", "1000");
    struct resp a = deal_post(&s, "{\"domainId\":\"1\",\"priceTypes\":2,\"dateRange\":4,"
                                  "\"sortType\":4,\"isRangeEnabled\":true,"
                                  "\"deltaPercentRange\":[10,2147483647]}");
    assert_int_equal(a.status, 200);
    struct resp b = deal_post(&s, "{\"domainId\":1,\"priceTypes\":[2],\"dateRange\":3,"
                                  "\"sortType\":4,\"isRangeEnabled\":true,"
                                  "\"deltaPercentRange\":[10,2147483647]}");
    yajl_val da = jget(jget(a.json, "deals"), "dr"), db = jget(jget(b.json, "deals"), "dr");
    assert_true(jlen(da) > 0);
    assert_int_equal(jlen(da), jlen(db));
    for (size_t i = 0; i < jlen(da); i++)
        assert_string_equal(YAJL_GET_STRING(jget(jidx(da, i), "asin")),
                            YAJL_GET_STRING(jget(jidx(db, i), "asin")));
    resp_free(&a);
    resp_free(&b);
    /* dateRange and sortType as strings are silently ignored (defaults apply) */
    struct resp c = deal_post(&s, "{\"priceTypes\":[2],\"dateRange\":\"3\",\"sortType\":\"4\"}");
    struct resp d = deal_post(&s, "{\"priceTypes\":[2]}");
    assert_int_equal(c.status, 200);
    /* the same cache key: the second answer comes from the cache of the first */
    assert_true(jget(c.json, "dealsCached")->type == yajl_t_false);
    assert_true(jget(d.json, "dealsCached")->type == yajl_t_true);
    *strstr(c.body, ",\"dealsCached\"") = '\0';
    *strstr(d.body, ",\"dealsCached\"") = '\0';
    assert_string_equal(strstr(c.body, "\"deals\""), strstr(d.body, "\"deals\""));
    resp_free(&c);
    resp_free(&d);
    /* malformed selections: 400 with the envelope and an error object */
    const char *bad[] = {"{", "[]", "{\"priceTypes\":[4]}", "{\"domainId\":1}", "nonsense"};
    for (int i = 0; i < 5; i++) {
        struct resp e = deal_post(&s, "%s", bad[i]);
        assert_int_equal(e.status, 400);
        assert_envelope(e.json);
        assert_non_null(jget(e.json, "error"));
        assert_int_equal(jint(e.json, "tokensConsumed"), 0);
        resp_free(&e);
    }
    sim_stop(&s);
}

/* Same field names and JSON types as the fixture for the keys both have. */
static int json_kind(yajl_val v)
{
    if (v == NULL)
        return 0;
    if (v->type == yajl_t_true || v->type == yajl_t_false)
        return 1;
    if (YAJL_IS_NUMBER(v))
        return 2;
    return (int)v->type + 10;
}

static void compare_shapes(yajl_val real, yajl_val sim, const char *where, int *common)
{
    for (size_t i = 0; i < jlen(real); i++) {
        const char *k = real->u.object.keys[i];
        yajl_val rv = real->u.object.values[i], sv = jget(sim, k);
        if (sv == NULL || YAJL_IS_NULL(rv) || YAJL_IS_NULL(sv))
            continue;
        (*common)++;
        if (json_kind(rv) != json_kind(sv))
            fail_msg("%s.%s: JSON type differs from the real response", where, k);
        if (YAJL_IS_ARRAY(rv) && jlen(rv) > 0 && jlen(sv) > 0) {
            /* element kinds agree where both are non-null */
            yajl_val re = NULL, se = NULL;
            for (size_t j = 0; j < jlen(rv) && re == NULL; j++)
                if (!YAJL_IS_NULL(jidx(rv, j)))
                    re = jidx(rv, j);
            for (size_t j = 0; j < jlen(sv) && se == NULL; j++)
                if (!YAJL_IS_NULL(jidx(sv, j)))
                    se = jidx(sv, j);
            if (re && se && json_kind(re) != json_kind(se))
                fail_msg("%s.%s[]: element type differs", where, k);
        }
    }
}

static yajl_val load_fixture(const char *name)
{
    const char *path = kd_fixture_path(name);
    size_t len;
    char *text = kd_read_file(path, &len);
    assert_non_null(text);
    char err[128];
    yajl_val v = yajl_tree_parse(text, err, sizeof(err));
    free(text);
    assert_non_null(v);
    return v;
}

static void test_fixture_product_shape(void **state)
{
    (void)state;
    yajl_val real = load_fixture("product_B0D8W1YVBX.json");
    struct sim s = sim_start("--products", "3000");
    char a[1][11];
    some_asins(&s, a, 1);
    struct resp r = get(&s, "/product?key=k&domain=1&asin=%s&stats=180&buybox=1&rating=1", a[0]);
    int common = 0;
    compare_shapes(real, r.json, "envelope", &common);
    yajl_val rp = jidx(jget(real, "products"), 0), sp = jidx(jget(r.json, "products"), 0);
    compare_shapes(rp, sp, "product", &common);
    compare_shapes(jget(rp, "stats"), jget(sp, "stats"), "stats", &common);
    assert_true(common > 80);
    assert_int_equal(jlen(jget(rp, "csv")), jlen(jget(sp, "csv")));
    /* csv[18] is a triple series in both, csv[3] a pair series */
    assert_int_equal(jlen(jidx(jget(sp, "csv"), 18)) % 3, 0);
    resp_free(&r);
    sim_stop(&s);
    yajl_tree_free(real);
}

static void test_fixture_deal_shape(void **state)
{
    (void)state;
    yajl_val real = load_fixture("deal_page.json");
    struct sim s = sim_start("--products", "3000");
    struct resp r = deal_post(&s, "{\"priceTypes\":[2]}");
    /* same top-level keys in the same order */
    assert_int_equal(jlen(real), jlen(r.json));
    for (size_t i = 0; i < jlen(real); i++)
        assert_string_equal(real->u.object.keys[i], r.json->u.object.keys[i]);
    yajl_val rd = jget(real, "deals"), sd = jget(r.json, "deals");
    assert_int_equal(jlen(rd), jlen(sd));
    for (size_t i = 0; i < jlen(rd); i++)
        assert_string_equal(rd->u.object.keys[i], sd->u.object.keys[i]);
    yajl_val r0 = jidx(jget(rd, "dr"), 0), s0 = jidx(jget(sd, "dr"), 0);
    assert_int_equal(jlen(r0), jlen(s0));
    for (size_t i = 0; i < jlen(r0); i++)
        assert_string_equal(r0->u.object.keys[i], s0->u.object.keys[i]); /* wire order */
    int common = 0;
    compare_shapes(r0, s0, "deal", &common);
    assert_true(common >= 20);
    resp_free(&r);
    sim_stop(&s);
    yajl_tree_free(real);
}

/* docs/keepa-api.md §11.23 */
static void test_11_23_replay(void **state)
{
    (void)state;
    const char *deal = kd_fixture_path("deal_page.json");
    char deal_path[4096];
    snprintf(deal_path, sizeof(deal_path), "%s", deal);
    const char *prod = kd_fixture_path("product_B0F7XPYCSJ.json");
    assert_non_null(prod);
    struct sim s = sim_start("--replay-deal", deal_path, "--replay-product", prod);
    yajl_val real = load_fixture("deal_page.json");
    struct resp r = deal_post(&s, "{\"priceTypes\":[2]}");
    assert_int_equal(r.status, 200);
    assert_envelope(r.json);
    assert_int_equal(jint(r.json, "tokensConsumed"), 5);
    assert_int_equal(jint(r.json, "tokensLeft"), 295);
    yajl_val rdr = jget(jget(real, "deals"), "dr"), sdr = jget(jget(r.json, "deals"), "dr");
    assert_int_equal(jlen(rdr), 150);
    assert_int_equal(jlen(sdr), 150);
    for (size_t i = 0; i < 150; i++)
        assert_string_equal(YAJL_GET_STRING(jget(jidx(rdr, i), "asin")),
                            YAJL_GET_STRING(jget(jidx(sdr, i), "asin")));
    assert_true(jget(r.json, "dealsCached") != NULL);
    resp_free(&r);
    struct resp p = get(&s, "/product?key=k&domain=1&asin=B0F7XPYCSJ");
    assert_int_equal(p.status, 200);
    assert_envelope(p.json);
    assert_string_equal(YAJL_GET_STRING(jget(jidx(jget(p.json, "products"), 0), "asin")),
                        "B0F7XPYCSJ");
    assert_int_equal(jint(p.json, "tokensConsumed"), 1);
    resp_free(&p);
    yajl_tree_free(real);
    sim_stop(&s);
}

/* docs/keepa-api.md §11.24: every fault mode */
static void test_11_24_faults(void **state)
{
    (void)state;
    struct sim s =
        sim_start("--products", "3000", "--start-tokens", "5000", "--faults", "storm429=2");
    char a[1][11];
    some_asins(&s, a, 1);
    char path[256];
    snprintf(path, sizeof(path), "/product?key=k&domain=1&asin=%s", a[0]);
    long long b0 = balance(&s);
    for (int i = 0; i < 3; i++) { /* forced 429 run whatever the balance, then normal */
        struct resp r = req(&s, "GET", path, NULL, 1);
        assert_int_equal(r.status, i < 2 ? 429 : 200);
        resp_free(&r);
    }
    assert_int_equal(balance(&s), b0 - 1);
    /* 500 / 503: envelope + error, charged 0 */
    const char *codes[] = {"http500=1", "http503=1"};
    for (int i = 0; i < 2; i++) {
        set_faults(&s, codes[i]);
        b0 = balance(&s);
        struct resp r = req(&s, "GET", path, NULL, 1);
        assert_int_equal(r.status, i ? 503 : 500);
        assert_envelope(r.json);
        assert_non_null(jget(r.json, "error"));
        resp_free(&r);
        assert_int_equal(balance(&s), b0);
        struct resp t = get(&s, "/token?key=k"); /* /token is never faulted */
        assert_int_equal(t.status, 200);
        resp_free(&t);
    }
    /* charge_errors: the same answers, charged in full and saying so (a retry is paid for) */
    set_faults(&s, "http500=1,charge_errors=1");
    b0 = balance(&s);
    struct resp ce = req(&s, "GET", path, NULL, 1);
    assert_int_equal(ce.status, 500);
    assert_envelope(ce.json);
    assert_non_null(jget(ce.json, "error"));
    assert_int_equal(jint(ce.json, "tokensConsumed"), 1);
    assert_int_equal(jint(ce.json, "tokensLeft"), b0 - 1);
    resp_free(&ce);
    assert_int_equal(balance(&s), b0 - 1);
    struct resp cg = get(&s, "/_sim/faults");
    assert_string_equal(YAJL_GET_STRING(jget(cg.json, "spec")), "http500=1,charge_errors=1");
    resp_free(&cg);
    /* truncate / malformed: not JSON, charged in full */
    const char *bodies[] = {"truncate=1", "malformed=1"};
    for (int i = 0; i < 2; i++) {
        set_faults(&s, bodies[i]);
        b0 = balance(&s);
        struct resp r = req(&s, "GET", path, NULL, 1);
        assert_int_equal(r.status, 200);
        assert_null(r.json);
        if (i == 0)
            assert_int_equal(r.content_length, (long)r.raw_len);
        resp_free(&r);
        assert_int_equal(balance(&s), b0 - 1);
    }
    /* reset: the connection dies mid-body, charged in full */
    set_faults(&s, "reset=1");
    b0 = balance(&s);
    struct resp rr = req(&s, "GET", path, NULL, 1);
    assert_int_not_equal(rr.curl_rc, CURLE_OK);
    resp_free(&rr);
    assert_int_equal(balance(&s), b0 - 1);
    /* no_products: 200 with the envelope only, charged 0 */
    set_faults(&s, "no_products=1");
    b0 = balance(&s);
    struct resp np = req(&s, "GET", path, NULL, 1);
    assert_int_equal(np.status, 200);
    assert_envelope(np.json);
    assert_null(jget(np.json, "products"));
    assert_int_equal(jint(np.json, "tokensConsumed"), 0);
    resp_free(&np);
    assert_int_equal(balance(&s), b0);
    /* offers_fail: offersSuccessful false, no offers, cost 1 */
    set_faults(&s, "offers_fail=1");
    struct resp of = get(&s, "/product?key=k&domain=1&asin=%s&offers=20", a[0]);
    yajl_val p = jidx(jget(of.json, "products"), 0);
    assert_true(jget(p, "offersSuccessful")->type == yajl_t_false);
    assert_null(jget(p, "offers"));
    assert_int_equal(jint(of.json, "tokensConsumed"), 1);
    resp_free(&of);
    /* refill_flap: the reported rate alternates */
    set_faults(&s, "refill_flap=12:5");
    long long r1, r2;
    struct resp f1 = get(&s, "%s", path), f2 = get(&s, "%s", path);
    r1 = jint(f1.json, "refillRate");
    r2 = jint(f2.json, "refillRate");
    assert_true((r1 == 12 && r2 == 5) || (r1 == 5 && r2 == 12));
    resp_free(&f1);
    resp_free(&f2);
    /* latency: fixed, and offers-only */
    set_faults(&s, "latency_ms=300");
    struct resp l = get(&s, "%s", path);
    assert_true(l.elapsed_ms >= 295);
    resp_free(&l);
    set_faults(&s, "offers_latency_ms=300-400");
    struct resp l2 = get(&s, "%s", path);
    assert_true(l2.elapsed_ms < 295);
    resp_free(&l2);
    struct resp l3 = get(&s, "/product?key=k&domain=1&asin=%s&offers=20", a[0]);
    assert_true(l3.elapsed_ms >= 295);
    assert_int_equal(l3.status, 200);
    resp_free(&l3);
    /* GET shows the spec; clear removes everything; the ledger counted each kind */
    struct resp g = get(&s, "/_sim/faults");
    assert_string_equal(YAJL_GET_STRING(jget(g.json, "spec")), "offers_latency_ms=300-400");
    resp_free(&g);
    set_faults(&s, "clear");
    struct resp st = get(&s, "/_sim/stats");
    yajl_val fi = jget(st.json, "faults_injected");
    const char *names[] = {"storm429",    "http500",    "http503",          "truncate",
                           "malformed",   "reset",      "no_products",      "offers_fail",
                           "refill_flap", "latency_ms", "offers_latency_ms"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        assert_true(jint(fi, names[i]) >= 1);
    resp_free(&st);
    struct resp ok = get(&s, "%s", path);
    assert_int_equal(ok.status, 200);
    assert_non_null(jget(ok.json, "products"));
    resp_free(&ok);
    sim_stop(&s);
}

/* --bucket-per-key: each listed key has its own bucket, and the ledger shows each. */
static void test_bucket_per_key(void **state)
{
    (void)state;
    struct sim s = sim_start("--products", "3000", "--keys", "K1,K2", "--bucket-per-key",
                             "--start-tokens", "100");
    char a[2][11];
    some_asins(&s, a, 2);
    struct resp x = get(&s, "/product?key=K1&domain=1&asin=%s,%s", a[0], a[1]);
    assert_int_equal(x.status, 200);
    resp_free(&x);
    x = get(&s, "/token?key=K1");
    long long k1 = jint(x.json, "tokensLeft");
    resp_free(&x);
    x = get(&s, "/token?key=K2");
    long long k2 = jint(x.json, "tokensLeft");
    resp_free(&x);
    assert_int_equal(k2 - k1, 2); /* K1 paid for its two products, K2 nothing */
    set_tokens(&s, 0);            /* every bucket */
    x = get(&s, "/product?key=K2&domain=1&asin=%s", a[0]);
    assert_int_equal(x.status, 429);
    resp_free(&x);
    struct resp st = get(&s, "/_sim/stats");
    yajl_val keys = jget(st.json, "keys");
    assert_non_null(keys);
    assert_int_equal(YAJL_GET_ARRAY(keys)->len, 2);
    assert_int_equal(jint(jidx(keys, 0), "tokens_consumed"), 2);
    assert_int_equal(jint(jidx(keys, 1), "tokens_consumed"), 0);
    assert_int_equal(jint(jidx(keys, 1), "http_429"), 1);
    assert_int_equal(jint(jidx(keys, 0), "http_429"), 0);
    assert_int_equal(jint(st.json, "tokens_consumed"), 2);
    resp_free(&st);
    sim_stop(&s);
}

static void test_ledger(void **state)
{
    (void)state;
    struct sim s = sim_start("--products", "3000", "--start-tokens", "100");
    char a[2][11];
    some_asins(&s, a, 2);
    struct resp x = get(&s, "/product?key=k&domain=1&asin=%s,%s", a[0], a[1]);
    resp_free(&x);
    x = get(&s, "/product?key=k&domain=1&asin=%s", a[0]);
    resp_free(&x);
    x = deal_post(&s, "{\"priceTypes\":[2]}");
    resp_free(&x);
    x = get(&s, "/seller?key=k&domain=1&seller=ATVPDKIKX0DER");
    resp_free(&x);
    set_tokens(&s, 0);
    x = get(&s, "/product?key=k&domain=1&asin=%s", a[0]);
    resp_free(&x);
    struct resp st = get(&s, "/_sim/stats");
    yajl_val v = st.json;
    assert_int_equal(jint(v, "tokens_consumed"), 2 + 1 + 5 + 1);
    assert_int_equal(jint(v, "tokens_left"), 0);
    assert_int_equal(jint(v, "http_429"), 1);
    assert_int_equal(jint(v, "asins_requested"), 3);
    assert_int_equal(jint(v, "asins_distinct"), 2);
    yajl_val ep = jget(v, "endpoints");
    assert_int_equal(jint(jget(ep, "product"), "requests"), 3);
    assert_int_equal(jint(jget(ep, "product"), "tokens"), 3);
    assert_int_equal(jint(jget(ep, "deal"), "tokens"), 5);
    assert_int_equal(jint(jget(ep, "seller"), "tokens"), 1);
    assert_true(jint(v, "requests") >= 5);
    resp_free(&st);
    struct resp rs = req(&s, "POST", "/_sim/reset", NULL, 0);
    assert_int_equal(jint(rs.json, "tokens_consumed"), 0);
    assert_int_equal(jint(rs.json, "requests"), 0);
    assert_int_equal(jint(rs.json, "asins_distinct"), 0);
    resp_free(&rs);
    /* refill-rate takes effect */
    struct resp rr = req(&s, "POST", "/_sim/refill-rate?rate=20", NULL, 0);
    assert_int_equal(jint(rr.json, "refill_rate"), 20);
    resp_free(&rr);
    struct resp t = get(&s, "/token?key=k");
    assert_int_equal(jint(t.json, "refillRate"), 20);
    resp_free(&t);
    sim_stop(&s);
}

static void test_oracle_matches_product_truth(void **state)
{
    (void)state;
    /* the rich economy: what the oracle lists qualifies now */
    struct sim s = sim_start("--products", "20000", "--start-tokens", "1000", "--economy", "rich");
    const char *sel = "{\"domainId\":\"1\",\"includeCategories\":[283155],\"priceTypes\":[2],"
                      "\"deltaPercentRange\":[20,2147483647],\"salesRankRange\":[1000,-1],"
                      "\"minRating\":10,\"isRangeEnabled\":true,\"isFilterEnabled\":true,"
                      "\"singleVariation\":true,\"sortType\":4,\"dateRange\":3}";
    char a[5][11];
    int n = oracle(&s, sel, a, 5);
    assert_true(n >= 20); /* the pipeline finds deals */
    for (int i = 0; i < 5; i++) {
        struct resp t = get(&s, "/_sim/product?asin=%s", a[i]);
        struct resp p = get(&s, "/product?key=k&domain=1&asin=%s&stats=90&history=0", a[i]);
        yajl_val stats = jget(jidx(jget(p.json, "products"), 0), "stats");
        long long used_truth = YAJL_GET_INTEGER(jidx(jget(t.json, "current"), 2));
        long long used_prod = YAJL_GET_INTEGER(jidx(jget(stats, "current"), 2));
        long long avg90 = YAJL_GET_INTEGER(jidx(jget(stats, "avg90"), 2));
        assert_int_equal(used_truth, used_prod);
        assert_true((avg90 - used_prod) * 100 / avg90 >= 20);
        assert_int_equal(jint(jidx(jget(p.json, "products"), 0), "rootCategory"), 283155);
        resp_free(&t);
        resp_free(&p);
    }
    sim_stop(&s);
}

static void test_determinism(void **state)
{
    (void)state;
    struct sim s1 = sim_start("--seed", "77", "--products", "5000", "--clock-ms", "1790000000000");
    struct sim s2 = sim_start("--seed", "77", "--products", "5000", "--clock-ms", "1790000000000");
    struct sim s3 = sim_start("--seed", "78", "--products", "5000", "--clock-ms", "1790000000000");
    char a[3][11];
    some_asins(&s1, a, 3);
    char q[256];
    snprintf(q, sizeof(q), "/product?key=k&domain=1&asin=%s,%s,%s&stats=90&offers=20", a[0], a[1],
             a[2]);
    struct resp r1 = get(&s1, "%s", q), r2 = get(&s2, "%s", q), r3 = get(&s3, "%s", q);
    assert_string_equal(strstr(r1.body, "\"products\""), strstr(r2.body, "\"products\""));
    assert_true(r3.json == NULL || jget(r3.json, "products") == NULL ||
                strcmp(strstr(r1.body, "\"products\""), strstr(r3.body, "\"products\"")) != 0);
    struct resp d1 = deal_post(&s1, "{\"priceTypes\":[2]}"),
                d2 = deal_post(&s2, "{\"priceTypes\":[2]}");
    assert_string_equal(strstr(d1.body, "\"deals\""), strstr(d2.body, "\"deals\""));
    resp_free(&r1);
    resp_free(&r2);
    resp_free(&r3);
    resp_free(&d1);
    resp_free(&d2);
    sim_stop(&s1);
    sim_stop(&s2);
    sim_stop(&s3);
}

static long long keepa_minute(struct sim *s)
{
    struct resp r = get(s, "/_sim/stats");
    long long m = jint(r.json, "keepa_minute");
    resp_free(&r);
    return m;
}

/* Prices move with (accelerated) time: deals appear and vanish. */
static void test_deals_move_over_time(void **state)
{
    (void)state;
    struct sim s = sim_start("--products", "3000", "--minute-ms", "20", "--volatility", "60");
    static char a[3000][11], b[3000][11];
    const char *sel = "{\"priceTypes\":[2],\"sortType\":-1}";
    long long m0 = keepa_minute(&s);
    int na = oracle(&s, sel, a, 3000);
    int64_t deadline = mono_ms() + 20000;
    while (keepa_minute(&s) < m0 + 15 && mono_ms() < deadline)
        nap_ms(20);
    assert_true(keepa_minute(&s) >= m0 + 15);
    int nb = oracle(&s, sel, b, 3000);
    assert_true(na > 100 && nb > 100);
    int gone = 0;
    for (int i = 0; i < na; i++) {
        int found = 0;
        for (int j = 0; j < nb && !found; j++)
            found = strcmp(a[i], b[j]) == 0;
        gone += !found;
    }
    int appeared = 0;
    for (int j = 0; j < nb; j++) {
        int found = 0;
        for (int i = 0; i < na && !found; i++)
            found = strcmp(a[i], b[j]) == 0;
        appeared += !found;
    }
    assert_true(gone > 0);     /* some deals vanished */
    assert_true(appeared > 0); /* and new ones appeared */
    sim_stop(&s);
}

static void test_seller_and_query(void **state)
{
    (void)state;
    struct sim s = sim_start("--products", "5000");
    char a[1][11];
    some_asins(&s, a, 1);
    struct resp p = get(&s, "/product?key=k&domain=1&asin=%s&offers=20", a[0]);
    yajl_val offers = jget(jidx(jget(p.json, "products"), 0), "offers");
    char ids[512] = "";
    int nid = 0;
    for (size_t i = 0; i < jlen(offers) && nid < 3; i++) {
        const char *sid = YAJL_GET_STRING(jget(jidx(offers, i), "sellerId"));
        if (strcmp(sid, "ATVPDKIKX0DER") != 0 && strstr(ids, sid) == NULL) {
            strcat(ids, nid ? "," : "");
            strcat(ids, sid);
            nid++;
        }
    }
    resp_free(&p);
    assert_true(nid > 0);
    /* a seller Keepa does not know (ids ending in ZZZZ are reserved as unknown) */
    struct resp sr = get(&s, "/seller?key=k&domain=1&seller=%s,AUNKNOWNZZZZ", ids);
    assert_int_equal(sr.status, 200);
    assert_int_equal(jint(sr.json, "tokensConsumed"), nid);
    yajl_val sellers = jget(sr.json, "sellers");
    assert_int_equal(jlen(sellers), nid);
    yajl_val one = sellers->u.object.values[0];
    assert_true(YAJL_IS_STRING(jget(one, "sellerName")));
    assert_true(jint(one, "currentRating") >= 0);
    resp_free(&sr);
    const char *qs = "{\"current_SALES_gte\":1000,\"current_SALES_lte\":200000,\"perPage\":100,"
                     "\"sort\":[[\"current_SALES\",\"asc\"]]}";
    struct resp qr = req(&s, "POST", "/query?key=k&domain=1", qs, 1);
    assert_int_equal(qr.status, 200);
    long long total = jint(qr.json, "totalResults");
    yajl_val list = jget(qr.json, "asinList");
    assert_true(total > 100);
    assert_int_equal(jlen(list), 100);
    assert_int_equal(jint(qr.json, "tokensConsumed"), 11);
    long long prev = 0;
    for (size_t i = 0; i < jlen(list); i += 33) {
        struct resp t = get(&s, "/_sim/product?asin=%s", YAJL_GET_STRING(jidx(list, i)));
        long long rank = YAJL_GET_INTEGER(jidx(jget(t.json, "current"), 3));
        assert_true(rank >= 1000 && rank <= 200000 && rank >= prev);
        prev = rank;
        resp_free(&t);
    }
    resp_free(&qr);
    sim_stop(&s);
}

/* ---------- what a deal judgement reads ---------- */

static int jbool(yajl_val v)
{
    return v != NULL && (v->type == yajl_t_true || v->type == yajl_t_false);
}

static int jtrue(yajl_val v)
{
    return v != NULL && v->type == yajl_t_true;
}

static const char *jstr(yajl_val v, const char *key)
{
    yajl_val x = jget(v, key);
    if (!YAJL_IS_STRING(x))
        fail_msg("%s is not a string", key);
    return x->u.string;
}

static long long aint(yajl_val arr, size_t i)
{
    yajl_val v = jidx(arr, i);
    if (!YAJL_IS_INTEGER(v))
        fail_msg("array entry %zu is not an integer", i);
    return YAJL_GET_INTEGER(v);
}

/* The price and shipping of an offer's newest offerCSV triple. */
static long long offer_price(yajl_val o)
{
    yajl_val csv = jget(o, "offerCSV");
    return aint(csv, jlen(csv) - 2);
}

static long long offer_landed(yajl_val o)
{
    yajl_val csv = jget(o, "offerCSV");
    return aint(csv, jlen(csv) - 2) + aint(csv, jlen(csv) - 1);
}

/* A Keepa minute boundary in the near future (ms): tests that compare answers at "the same
 * minute" start the simulator there, so its first minute lasts a full 60 s. */
static long long aligned_clock_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    long long ms = (long long)tv.tv_sec * 1000 + tv.tv_usec / 1000;
    return ms - ms % 60000;
}

static const char *const MEDIA_NAMES[][2] = {{"283155", "Books"},
                                             {"5174", "CDs & Vinyl"},
                                             {"2625373011", "Movies & TV"},
                                             {"468642", "Video Games"},
                                             {"229534", "Software"}};

static int is_media_root(long long root)
{
    for (size_t i = 0; i < 5; i++)
        if (root == atoll(MEDIA_NAMES[i][0]))
            return 1;
    return 0;
}

/* Up to MAX ASINs of root ROOT (0: any) from /query, appended to OUT at *N. */
static void query_asins(struct sim *s, long long root, char out[][11], int *n, int max)
{
    char q[256];
    if (root > 0)
        snprintf(q, sizeof(q), "{\"rootCategory\":[%lld],\"perPage\":50}", root);
    else
        snprintf(q, sizeof(q), "{\"perPage\":50}");
    struct resp r = req(s, "POST", "/query?key=k&domain=1", q, 1);
    assert_int_equal(r.status, 200);
    yajl_val list = jget(r.json, "asinList");
    for (size_t i = 0; i < jlen(list) && *n < max && i < 20; i++)
        snprintf(out[(*n)++], 11, "%s", YAJL_GET_STRING(jidx(list, i)));
    resp_free(&r);
}

struct judged_seen {
    int media_named[5], closing, hazmat, heat, fba_null, amazon, used_bb, bb_used, bb_none;
};

/* Every csv series: whole pairs or triples, in time order. */
static void check_csv_order(yajl_val csv)
{
    assert_int_equal(jlen(csv), 36);
    for (size_t t = 0; t < 36; t++) {
        yajl_val series = jidx(csv, t);
        if (!YAJL_IS_ARRAY(series))
            continue;
        size_t step = t == 7 || (t >= 18 && t <= 22) || t == 32 ? 3 : 2;
        assert_int_equal(jlen(series) % step, 0);
        for (size_t i = step; i < jlen(series); i += step)
            assert_true(aint(series, i - step) <= aint(series, i));
    }
}

/* A product fetched with stats and offers=100 (every live offer): fields and consistency. */
static void check_full_product(yajl_val p, struct judged_seen *seen)
{
    yajl_val st = jget(p, "stats"), cur = jget(st, "current");
    long long root = jint(p, "rootCategory");
    /* categories: the root first in categoryTree, with Keepa's name for the media roots */
    yajl_val tree = jget(p, "categoryTree");
    assert_true(jlen(tree) >= 2);
    assert_int_equal(jint(jidx(tree, 0), "catId"), root);
    assert_true(YAJL_IS_STRING(jget(jidx(tree, 0), "name")));
    for (size_t i = 0; i < 5; i++)
        if (root == atoll(MEDIA_NAMES[i][0])) {
            assert_string_equal(jstr(jidx(tree, 0), "name"), MEDIA_NAMES[i][1]);
            seen->media_named[i] = 1;
        }
    /* fees: pickAndPackFee when fbaFees is collected, both referral fields, media closing */
    yajl_val fees = jget(p, "fbaFees");
    if (YAJL_IS_NULL(fees)) {
        seen->fba_null++;
    } else {
        assert_true(jint(fees, "pickAndPackFee") > 0);
        assert_true(jint(fees, "lastUpdate") > 0);
    }
    long long ref = jint(p, "referralFeePercent");
    yajl_val refp = jget(p, "referralFeePercentage");
    assert_true(YAJL_IS_DOUBLE(refp));
    assert_int_equal((long long)floor(YAJL_GET_DOUBLE(refp)), ref);
    yajl_val closing = jget(p, "variableClosingFee");
    assert_int_equal(closing != NULL, is_media_root(root));
    if (closing != NULL) {
        assert_int_equal(jint(p, "variableClosingFee"), 180);
        seen->closing++;
    }
    /* flags and the package */
    assert_true(jbool(jget(p, "isHeatSensitive")) && jbool(jget(p, "isAdultProduct")));
    seen->heat += jtrue(jget(p, "isHeatSensitive"));
    yajl_val haz = jget(p, "hazardousMaterials");
    assert_non_null(haz);
    if (!YAJL_IS_NULL(haz)) {
        assert_true(YAJL_IS_ARRAY(haz) && jlen(haz) > 0);
        for (size_t i = 0; i < jlen(haz); i++) {
            assert_true(YAJL_IS_STRING(jget(jidx(haz, i), "aspect")));
            assert_true(YAJL_IS_STRING(jget(jidx(haz, i), "value")));
        }
        seen->hazmat++;
    }
    const char *dims[] = {"packageHeight", "packageLength", "packageWidth", "packageWeight"};
    for (int i = 0; i < 4; i++)
        assert_true(jint(p, dims[i]) > 0);
    long long sold = jint(p, "monthlySold");
    assert_true(sold == -1 || sold >= 50);
    /* the offers: every live one, in liveOffersOrder */
    yajl_val offers = jget(p, "offers"), order = jget(p, "liveOffersOrder");
    size_t n_live = jlen(order);
    assert_int_equal(jint(st, "totalOfferCount"), (long long)n_live);
    assert_int_equal(jint(st, "retrievedOfferCount"), (long long)n_live);
    long long n_new = 0, n_used = 0, fba = 0, fbm = 0, min_new = -1, min_new_landed = -1;
    long long min_used = -1, min_used_landed = -1, cond_landed[6] = {-1, -1, -1, -1, -1, -1};
    long long amazon = -1;
    for (size_t k = 0; k < n_live; k++) {
        yajl_val o = jidx(offers, (size_t)aint(order, k));
        assert_non_null(o);
        long long cond = jint(o, "condition"), price = offer_price(o), landed = offer_landed(o);
        assert_true(cond >= 1 && cond <= 5);
        assert_true(jlen(jget(o, "offerCSV")) % 3 == 0);
        assert_true(jbool(jget(o, "isFBA")) && jbool(jget(o, "isAmazon")) &&
                    jbool(jget(o, "isPrime")));
        assert_int_equal(jint(o, "lastSeen"), jint(p, "lastUpdate"));
        const char *sid = jstr(o, "sellerId");
        assert_int_equal(strcmp(sid, "ATVPDKIKX0DER") == 0, jtrue(jget(o, "isAmazon")));
        if (jtrue(jget(o, "isFBA")) || jtrue(jget(o, "isAmazon")))
            assert_true(jtrue(jget(o, "isPrime")));
        if (cond == 1) {
            n_new++;
            if (jtrue(jget(o, "isAmazon")))
                amazon = price;
            else if (jtrue(jget(o, "isFBA")))
                fba++;
            else
                fbm++;
            if (min_new < 0 || price < min_new)
                min_new = price;
            if (min_new_landed < 0 || landed < min_new_landed)
                min_new_landed = landed;
        } else {
            n_used++;
            if (min_used < 0 || price < min_used)
                min_used = price;
            if (min_used_landed < 0 || landed < min_used_landed)
                min_used_landed = landed;
            if (cond_landed[cond] < 0 || landed < cond_landed[cond])
                cond_landed[cond] = landed;
        }
    }
    /* the series and counts are the offers' */
    assert_int_equal(aint(cur, 11), n_new);
    assert_int_equal(aint(cur, 12), n_used);
    assert_int_equal(jint(st, "offerCountFBA"), fba);
    assert_int_equal(jint(st, "offerCountFBM"), fbm);
    assert_int_equal(aint(cur, 34), fba);
    assert_int_equal(aint(cur, 35), fbm);
    assert_int_equal(aint(cur, 0), amazon);
    assert_int_equal(jint(p, "availabilityAmazon"), amazon > 0 ? 0 : -1);
    seen->amazon += amazon > 0;
    assert_int_equal(aint(cur, 1), min_new);
    assert_int_equal(aint(cur, 2), min_used);
    for (int c = 2; c <= 5; c++)
        assert_int_equal(aint(cur, (size_t)(17 + c)), cond_landed[c]);
    yajl_val elig = jget(p, "buyBoxEligibleOfferCounts");
    assert_int_equal(jlen(elig), 8);
    assert_true(aint(elig, 0) <= fba && aint(elig, 1) <= fbm);
    /* the Buy Box: one of the offers, never below the lowest of its condition */
    long long bb = jint(st, "buyBoxPrice");
    if (bb > 0) {
        long long bb_landed = bb + jint(st, "buyBoxShipping");
        assert_int_equal(aint(cur, 18), bb_landed);
        assert_true(jbool(jget(st, "buyBoxIsFBA")) && jbool(jget(st, "buyBoxIsAmazon")));
        assert_true(YAJL_IS_STRING(jget(st, "buyBoxSellerId")));
        if (jtrue(jget(st, "buyBoxIsUsed"))) { /* no New offer qualified for it */
            assert_int_equal(aint(elig, 0) + aint(elig, 1), 0);
            assert_true(jint(st, "buyBoxCondition") >= 2);
            seen->bb_used++;
        } else {
            assert_int_equal(jint(st, "buyBoxCondition"), 1);
            assert_true(bb_landed >= min_new_landed);
            assert_int_equal(jtrue(jget(st, "buyBoxIsAmazon")),
                             strcmp(jstr(st, "buyBoxSellerId"), "ATVPDKIKX0DER") == 0);
        }
    } else {
        assert_int_equal(bb, -1); /* no offer qualifies (or none at all) */
        assert_int_equal(aint(cur, 18), -1);
        seen->bb_none++;
    }
    long long ubb = jint(st, "buyBoxUsedPrice");
    if (ubb > 0) {
        long long u_landed = ubb + jint(st, "buyBoxUsedShipping");
        assert_int_equal(aint(cur, 32), u_landed);
        assert_true(u_landed >= min_used_landed);
        assert_true(jint(st, "buyBoxUsedCondition") >= 2);
        assert_true(jbool(jget(st, "buyBoxUsedIsFBA")));
        seen->used_bb++;
    } else {
        assert_int_equal(ubb, -1);
        assert_int_equal(aint(cur, 32), -1);
    }
    /* the history ends where the stats are */
    yajl_val csv = jget(p, "csv");
    check_csv_order(csv);
    const int pairs[] = {0, 1, 2, 3, 11, 12};
    for (size_t i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++) {
        yajl_val series = jidx(csv, (size_t)pairs[i]);
        if (YAJL_IS_ARRAY(series))
            assert_int_equal(aint(series, jlen(series) - 1), aint(cur, (size_t)pairs[i]));
    }
    const int triples[] = {18, 19, 20, 21, 22, 32};
    for (size_t i = 0; i < sizeof(triples) / sizeof(triples[0]); i++) {
        yajl_val series = jidx(csv, (size_t)triples[i]);
        if (!YAJL_IS_ARRAY(series))
            continue;
        long long v = aint(series, jlen(series) - 2), ship = aint(series, jlen(series) - 1);
        assert_int_equal(v < 0 ? -1 : v + ship, aint(cur, (size_t)triples[i]));
    }
}

/* A stats-only peek: Keepa's -2 / null where the data needs offers or buybox=1. */
static void check_peek_product(yajl_val p, yajl_val full)
{
    yajl_val st = jget(p, "stats"), fst = jget(full, "stats");
    yajl_val cur = jget(st, "current"), fcur = jget(fst, "current");
    assert_int_equal(jint(st, "buyBoxPrice"), -2);
    assert_int_equal(jint(st, "buyBoxShipping"), -2);
    assert_int_equal(jint(st, "buyBoxUsedPrice"), -2);
    assert_true(YAJL_IS_NULL(jget(st, "buyBoxIsUsed")));
    assert_true(YAJL_IS_NULL(jget(st, "buyBoxCondition")));
    assert_int_equal(jint(st, "offerCountFBA"), -2);
    assert_int_equal(jint(st, "offerCountFBM"), -2);
    assert_int_equal(aint(cur, 18), -1);
    assert_int_equal(aint(cur, 32), -1);
    assert_int_equal(aint(cur, 10), -1);
    assert_true(YAJL_IS_NULL(jidx(jget(p, "csv"), 18)));
    assert_null(jget(p, "offers"));
    /* what a peek does see agrees with the full fetch */
    const int same[] = {0, 1, 2, 3, 11, 12, 34, 35};
    for (size_t i = 0; i < sizeof(same) / sizeof(same[0]); i++)
        assert_int_equal(aint(cur, (size_t)same[i]), aint(fcur, (size_t)same[i]));
    const char *keys[] = {"monthlySold", "availabilityAmazon", "rootCategory", "packageWeight",
                          "referralFeePercent"};
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        assert_int_equal(jint(p, keys[i]), jint(full, keys[i]));
    assert_int_equal(jint(st, "totalOfferCount"), jint(fst, "totalOfferCount"));
    assert_int_equal(jint(st, "salesRankDrops365"), jint(fst, "salesRankDrops365"));
}

/* With buybox=1 and no offers: the same Buy Boxes as the full fetch. */
static void check_buybox_product(yajl_val p, yajl_val full)
{
    yajl_val st = jget(p, "stats"), fst = jget(full, "stats");
    const char *keys[] = {"buyBoxPrice", "buyBoxShipping", "buyBoxUsedPrice", "buyBoxUsedShipping"};
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        assert_int_equal(jint(st, keys[i]), jint(fst, keys[i]));
    assert_int_equal(aint(jget(st, "current"), 18), aint(jget(fst, "current"), 18));
    assert_int_equal(aint(jget(st, "current"), 32), aint(jget(fst, "current"), 32));
    assert_int_equal(jtrue(jget(st, "buyBoxIsAmazon")), jtrue(jget(fst, "buyBoxIsAmazon")));
    assert_int_equal(jtrue(jget(st, "buyBoxIsUsed")), jtrue(jget(fst, "buyBoxIsUsed")));
    assert_int_equal(jint(st, "offerCountFBA"), -2);
}

/* Every field a deal judgement reads is there, shaped as Keepa sends it, and consistent. */
static void test_judgement_fields(void **state)
{
    (void)state;
    char clock[32];
    snprintf(clock, sizeof(clock), "%lld", aligned_clock_ms());
    struct sim s = sim_start("--products", "20000", "--seed", "5", "--start-tokens", "1000000",
                             "--clock-ms", clock);
    static char asins[400][11];
    int n = 0;
    const long long roots[] = {283155, 5174,     2625373011, 468642,  229534,  1055398,
                               172282, 15684181, 2335752011, 3760911, 3760901, 0};
    for (size_t i = 0; i < sizeof(roots) / sizeof(roots[0]); i++)
        query_asins(&s, roots[i], asins, &n, 400);
    assert_true(n >= 200);
    struct judged_seen seen;
    memset(&seen, 0, sizeof(seen));
    for (int i = 0; i < n; i += 20) {
        char list[20 * 11 + 1] = "";
        for (int j = i; j < n && j < i + 20; j++) {
            strcat(list, j > i ? "," : "");
            strcat(list, asins[j]);
        }
        struct resp full = get(&s, "/product?key=k&domain=1&stats=90&offers=100&asin=%s", list);
        struct resp peek = get(&s, "/product?key=k&domain=1&stats=90&asin=%s", list);
        struct resp bbox = get(&s, "/product?key=k&domain=1&stats=90&buybox=1&asin=%s", list);
        struct resp days =
            get(&s, "/product?key=k&domain=1&stats=90&offers=20&days=2&asin=%s", list);
        for (size_t k = 0; k < jlen(jget(days.json, "products")); k++)
            check_csv_order(jget(jidx(jget(days.json, "products"), k), "csv"));
        resp_free(&days);
        yajl_val fp = jget(full.json, "products"), pp = jget(peek.json, "products"),
                 bp = jget(bbox.json, "products");
        assert_int_equal(jlen(fp), jlen(pp));
        for (size_t k = 0; k < jlen(fp); k++) {
            check_full_product(jidx(fp, k), &seen);
            check_peek_product(jidx(pp, k), jidx(fp, k));
            check_buybox_product(jidx(bp, k), jidx(fp, k));
        }
        resp_free(&full);
        resp_free(&peek);
        resp_free(&bbox);
    }
    for (int i = 0; i < 5; i++)
        if (!seen.media_named[i])
            fail_msg("no %s product seen", MEDIA_NAMES[i][1]);
    /* the rarer states exist too */
    assert_true(seen.closing > 0 && seen.hazmat > 0 && seen.amazon > 0 && seen.used_bb > 0);
    assert_true(seen.fba_null > 0 && seen.bb_none > 0);
    sim_stop(&s);
}

/* The /deal page names its roots as the recorded page does. */
static void test_deal_root_names(void **state)
{
    (void)state;
    yajl_val real = load_fixture("deal_page.json");
    struct sim s = sim_start("--products", "20000", "--start-tokens", "10000");
    struct resp r = deal_post(&s, "{\"priceTypes\":[2],\"dateRange\":3}");
    yajl_val rd = jget(real, "deals"), sd = jget(r.json, "deals");
    yajl_val rid = jget(rd, "categoryIds"), rname = jget(rd, "categoryNames");
    yajl_val sid = jget(sd, "categoryIds"), sname = jget(sd, "categoryNames");
    int matched = 0;
    for (size_t i = 0; i < jlen(sid); i++)
        for (size_t j = 0; j < jlen(rid); j++)
            if (YAJL_GET_INTEGER(jidx(sid, i)) == YAJL_GET_INTEGER(jidx(rid, j))) {
                assert_string_equal(YAJL_GET_STRING(jidx(sname, i)),
                                    YAJL_GET_STRING(jidx(rname, j)));
                matched++;
            }
    assert_int_equal(matched, (int)jlen(sid)); /* every simulated root is a real one */
    assert_true(matched >= 15);
    resp_free(&r);
    sim_stop(&s);
    yajl_tree_free(real);
}

/* The oracle's list with where each deal qualified. */
struct listing {
    int n;
    char asin[150][11];
    long long at[150], pct[150];
};

static void oracle_listing(struct sim *s, const char *selection, struct listing *l)
{
    char *e = urlenc(selection);
    struct resp r = get(s, "/_sim/deals?selection=%s", e);
    free(e);
    assert_int_equal(r.status, 200);
    yajl_val a = jget(r.json, "asins"), at = jget(r.json, "qualifiedAt"),
             pct = jget(r.json, "qualifiedDeltaPercent");
    assert_int_equal(jlen(a), jlen(at));
    l->n = (int)(jlen(a) < 150 ? jlen(a) : 150);
    for (int i = 0; i < l->n; i++) {
        snprintf(l->asin[i], 11, "%s", YAJL_GET_STRING(jidx(a, (size_t)i)));
        l->at[i] = aint(at, (size_t)i);
        l->pct[i] = aint(pct, (size_t)i);
    }
    resp_free(&r);
}

/*
 * The feed under several selections: a listed product qualified at the moment the deal
 * records (the truth at that minute says so), the deal shows what /product says now, and the
 * order follows the recorded figures. In the calibrated economy many have moved on since.
 */
static void test_feed_agrees_with_product(void **state)
{
    (void)state;
    static const struct {
        const char *sel;
        int pt, dr, sort, min_pct;
    } cases[] = {
        {"{\"priceTypes\":[2],\"dateRange\":3,\"sortType\":4,\"isRangeEnabled\":true,"
         "\"deltaPercentRange\":[10,2147483647]}",
         2, 3, 4, 10},
        {"{\"priceTypes\":[1],\"dateRange\":1,\"sortType\":2}", 1, 1, 2, 0},
        {"{\"priceTypes\":[0],\"dateRange\":0,\"sortType\":1}", 0, 0, 1, 0},
        {"{\"priceTypes\":[2],\"dateRange\":2,\"sortType\":3,\"isRangeEnabled\":true,"
         "\"deltaPercentRange\":[20,2147483647]}",
         2, 2, 3, 20},
        {"{\"priceTypes\":[3],\"dateRange\":3,\"sortType\":4}", 3, 3, 4, 0},
    };
    char clock[32];
    snprintf(clock, sizeof(clock), "%lld", aligned_clock_ms());
    struct sim s = sim_start("--products", "8000", "--seed", "9", "--start-tokens", "1000000",
                             "--clock-ms", clock);
    int moved = 0, still = 0;
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        int pt = cases[c].pt, dr = cases[c].dr;
        static struct listing l;
        oracle_listing(&s, cases[c].sel, &l);
        assert_true(l.n >= 20);
        struct resp page = deal_post(&s, "%s", cases[c].sel);
        yajl_val dr_list = jget(jget(page.json, "deals"), "dr");
        assert_int_equal((int)jlen(dr_list), l.n);
        for (int i = 0; i < l.n; i++) {
            yajl_val d = jidx(dr_list, (size_t)i);
            assert_string_equal(YAJL_GET_STRING(jget(d, "asin")), l.asin[i]);
            assert_int_equal(jint(d, "creationDate"), l.at[i]);
            if (i > 0 && cases[c].sort == 4)
                assert_true(l.pct[i - 1] >= l.pct[i]);
            if (i > 0 && cases[c].sort == 1)
                assert_true(l.at[i - 1] >= l.at[i]);
            if (i > 0 && cases[c].sort == 3) {
                long long a = aint(jget(jidx(dr_list, (size_t)i - 1), "current"), 3),
                          b = aint(jget(d, "current"), 3);
                assert_true(a <= b || b <= 0);
            }
        }
        for (int i = 0; i < l.n && i < 15; i++) {
            yajl_val d = jidx(dr_list, (size_t)i);
            /* qualified then, by the truth at that minute */
            struct resp t = get(&s, "/_sim/product?asin=%s&at=%lld", l.asin[i], l.at[i]);
            assert_int_equal(t.status, 200);
            long long cur = aint(jget(t.json, "current"), (size_t)pt);
            long long avg = aint(jidx(jget(t.json, "avgByDateRange"), (size_t)dr), (size_t)pt);
            assert_true(cur > 0 && avg > cur);
            assert_int_equal((avg - cur) * 100 / avg, l.pct[i]);
            assert_true(l.pct[i] >= cases[c].min_pct);
            resp_free(&t);
            /* shown as it is now: the deal object agrees with /product */
            struct resp p =
                get(&s, "/product?key=k&domain=1&stats=90&history=0&asin=%s", l.asin[i]);
            yajl_val pr = jidx(jget(p.json, "products"), 0), st = jget(pr, "stats");
            const int types[] = {0, 1, 2, 3, 11, 12};
            for (size_t k = 0; k < sizeof(types) / sizeof(types[0]); k++) {
                size_t ty = (size_t)types[k];
                assert_int_equal(aint(jget(d, "current"), ty), aint(jget(st, "current"), ty));
                long long a90 = aint(jidx(jget(d, "avg"), 3), ty),
                          a30 = aint(jidx(jget(d, "avg"), 2), ty);
                assert_int_equal(a90 >= 0 ? a90 : -1, aint(jget(st, "avg90"), ty));
                assert_int_equal(a30 >= 0 ? a30 : -1, aint(jget(st, "avg30"), ty));
            }
            assert_int_equal(jint(d, "salesRankDrops30"), jint(st, "salesRankDrops30"));
            assert_int_equal(jint(d, "salesRankDrops365"), jint(st, "salesRankDrops365"));
            assert_int_equal(jint(d, "lastUpdate"), jint(pr, "lastUpdate"));
            assert_int_equal(jint(d, "rootCat"), jint(pr, "rootCategory"));
            if (c == 0) { /* does it still qualify now? */
                long long now_pct = aint(jidx(jget(d, "deltaPercent"), 3), 2);
                if (aint(jget(d, "current"), 2) > 0 && now_pct >= 10)
                    still++;
                else
                    moved++;
            }
            resp_free(&p);
        }
        resp_free(&page);
    }
    assert_true(moved > 0 && still > 0); /* spread over every depth, not all at one */
    sim_stop(&s);
}

/* The product finder filters on the values /product reports. */
static void test_query_agrees_with_product(void **state)
{
    (void)state;
    char clock[32];
    snprintf(clock, sizeof(clock), "%lld", aligned_clock_ms());
    struct sim s = sim_start("--products", "8000", "--clock-ms", clock, "--start-tokens", "10000");
    const char *q = "{\"current_USED_lte\":2000,\"avg90_USED_gte\":1500,\"rootCategory\":[283155],"
                    "\"perPage\":50,\"sort\":[[\"current_USED\",\"asc\"]]}";
    struct resp r = req(&s, "POST", "/query?key=k&domain=1", q, 1);
    assert_int_equal(r.status, 200);
    yajl_val list = jget(r.json, "asinList");
    assert_true(jlen(list) >= 10);
    long long prev = 0;
    for (size_t i = 0; i < 10; i++) {
        struct resp p = get(&s, "/product?key=k&domain=1&stats=90&history=0&asin=%s",
                            YAJL_GET_STRING(jidx(list, i)));
        yajl_val pr = jidx(jget(p.json, "products"), 0), st = jget(pr, "stats");
        long long used = aint(jget(st, "current"), 2);
        assert_true(used > 0 && used <= 2000 && used >= prev);
        assert_true(aint(jget(st, "avg90"), 2) >= 1500);
        assert_int_equal(jint(pr, "rootCategory"), 283155);
        prev = used;
        resp_free(&p);
    }
    resp_free(&r);
    sim_stop(&s);
}

/* Opens N concurrent connections, each asking /token; returns how many got a 200. */
/* ---------- the truth under the deal judgement (sim/README.md, "The truth") ---------- */

static long long jint_or(yajl_val v, const char *key, long long dflt)
{
    yajl_val x = jget(v, key);
    return YAJL_IS_INTEGER(x) ? YAJL_GET_INTEGER(x) : dflt;
}

/* The /_sim/ truth endpoints agree with one another, with a full fetch at the same minute and
 * with their parameters; they refuse what they cannot answer. */
static void test_truth_endpoints(void **state)
{
    (void)state;
    char clock[32];
    snprintf(clock, sizeof(clock), "%lld", aligned_clock_ms());
    struct sim s = sim_start("--products", "20000", "--economy", "rich", "--clock-ms", clock,
                             "--start-tokens", "100000");
    const char *sel = "{\"domainId\":1,\"priceTypes\":[2],\"dateRange\":3,\"sortType\":4,"
                      "\"isRangeEnabled\":true,\"deltaPercentRange\":[10,100]}";
    char *e = urlenc(sel);
    struct resp d = get(&s, "/_sim/deals?selection=%s&truth=1", e);
    assert_int_equal(d.status, 200);
    long long now = jint(d.json, "keepa_minute");
    yajl_val asins = jget(d.json, "asins"), truth = jget(d.json, "truth");
    assert_int_equal(jlen(truth), jlen(asins));
    assert_true(jlen(truth) > 100);
    assert_int_equal(strlen(jstr(d.json, "rules_hash")), 16);
    /* a few deals and a few non-deals, each against /_sim/truth and the full fetch */
    int deals = 0, others = 0;
    for (size_t i = 0; i < jlen(truth) && (deals < 4 || others < 4); i++) {
        yajl_val t = jidx(truth, i);
        int deal = jtrue(jget(t, "deal"));
        if ((deal && deals >= 4) || (!deal && others >= 4))
            continue;
        deals += deal;
        others += !deal;
        const char *asin = jstr(t, "asin");
        assert_string_equal(asin, YAJL_GET_STRING(jidx(asins, i)));
        assert_int_equal(jint(t, "at"), now);
        struct resp o = get(&s, "/_sim/truth?asin=%s&at=%lld", asin, now);
        assert_int_equal(o.status, 200);
        yajl_val one = jidx(jget(o.json, "products"), 0);
        assert_int_equal(jtrue(jget(one, "deal")), deal);
        assert_int_equal(jint_or(one, "profit_cents", -1), jint_or(t, "profit_cents", -1));
        assert_string_equal(jstr(one, "basis"), jstr(t, "basis"));
        /* the offer to buy is an offer of the full fetch, whole */
        yajl_val offer = jget(one, "offer");
        struct resp p =
            get(&s, "/product?key=k&domain=1&asin=%s&stats=180&offers=20&history=0", asin);
        yajl_val prod = jidx(jget(p.json, "products"), 0), offers = jget(prod, "offers");
        if (YAJL_IS_OBJECT(offer)) {
            int found = 0;
            for (size_t k = 0; k < jlen(offers); k++) {
                yajl_val x = jidx(offers, k);
                found |= strcmp(jstr(x, "sellerId"), jstr(offer, "seller")) == 0 &&
                         offer_price(x) == jint(offer, "price_cents") &&
                         offer_landed(x) - offer_price(x) == jint(offer, "shipping_cents") &&
                         jint(x, "condition") == jint(offer, "condition");
            }
            assert_true(found);
            assert_true(deal ? jint(one, "profit_cents") >= 500 : 1);
        } else {
            assert_false(deal);
        }
        /* /_sim/product carries the same judgement */
        struct resp tp = get(&s, "/_sim/product?asin=%s&at=%lld", asin, now);
        yajl_val j = jget(tp.json, "judgement");
        assert_int_equal(jtrue(jget(j, "deal")), deal);
        assert_int_equal(jint_or(j, "profit_cents", -1), jint_or(one, "profit_cents", -1));
        resp_free(&tp);
        resp_free(&p);
        resp_free(&o);
    }
    assert_int_equal(deals, 4);
    assert_int_equal(others, 4);
    /* at: one per ASIN or at_ms; unknown and reserved ASINs are named, not judged */
    const char *a0 = YAJL_GET_STRING(jidx(asins, 0)), *a1 = YAJL_GET_STRING(jidx(asins, 1));
    struct resp m = get(&s, "/_sim/truth?asin=%s,%s,B0ZZZZZZZZ,0545010225&at=%lld,%lld,%lld,%lld",
                        a0, a1, now - 600, now, now, now - 1);
    assert_int_equal(m.status, 200);
    assert_int_equal(jlen(jget(m.json, "products")), 3);
    assert_int_equal(jint(jidx(jget(m.json, "products"), 0), "at"), now - 600);
    assert_int_equal(jint(jidx(jget(m.json, "products"), 2), "at"), now - 1);
    assert_string_equal(YAJL_GET_STRING(jidx(jget(m.json, "unknown"), 0)), "B0ZZZZZZZZ");
    struct resp ms = get(&s, "/_sim/truth?asin=%s&at_ms=%lld", a0, atoll(clock));
    assert_int_equal(jint(jidx(jget(ms.json, "products"), 0), "at"), now);
    static const char *const bad[] = {
        "/_sim/truth",
        "/_sim/truth?asin=B0AAAAAAAA&at=99999999999",
        "/_sim/truth?asin=B0AAAAAAAA,B0AAAAAAAB&at=1,2,3",
        "/_sim/truth?asin=B0AAAAAAAA&min_roi_bp=lots",
        "/_sim/truth?asin=B0AAAAAAAA&offers=10",
        "/_sim/timeline?asin=B0AAAAAAAA",
        "/_sim/timeline?asin=B0AAAAAAAA&from=1&to=100000",
        "/_sim/true-deals?from=1",
        "/_sim/true-deals?from=0&step=0",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct resp b = get(&s, "%s", bad[i]);
        if (b.status != 400 || !YAJL_IS_STRING(jget(b.json, "error")))
            fail_msg("%s: HTTP %ld, %s", bad[i], b.status, b.body);
        resp_free(&b);
    }
    /* rules by name: looser rules, another hash, more deals */
    struct resp loose =
        get(&s, "/_sim/deals?selection=%s&truth=1&min_roi_bp=0&min_profit_cents=0", e);
    assert_string_not_equal(jstr(loose.json, "rules_hash"), jstr(d.json, "rules_hash"));
    int n_def = 0, n_loose = 0;
    for (size_t i = 0; i < jlen(truth); i++) {
        n_def += jtrue(jget(jidx(truth, i), "deal"));
        n_loose += jtrue(jget(jidx(jget(loose.json, "truth"), i), "deal"));
    }
    assert_true(n_loose > n_def);
    /* a timeline over the last day: a deal now is inside its last segment, which runs to now */
    const char *deal_asin = NULL;
    for (size_t i = 0; i < jlen(truth) && deal_asin == NULL; i++)
        if (jtrue(jget(jidx(truth, i), "deal")))
            deal_asin = jstr(jidx(truth, i), "asin");
    struct resp tl =
        get(&s, "/_sim/timeline?asin=%s&from=%lld&to=%lld", deal_asin, now - 1440, now + 1);
    assert_int_equal(tl.status, 200);
    yajl_val segs = jget(jidx(jget(tl.json, "products"), 0), "segments");
    assert_true(jlen(segs) >= 1);
    yajl_val last = jidx(segs, jlen(segs) - 1);
    assert_true(aint(last, 0) <= now);
    assert_int_equal(aint(last, 1), now + 1);
    assert_true(aint(last, 2) >= 500); /* its peak profit */
    /* every catalog deal of the last 12 hours: today's deals among them, highest first */
    struct resp td = get(&s, "/_sim/true-deals?from=%lld&selection=%s", now - 720, e);
    assert_int_equal(td.status, 200);
    yajl_val all = jget(td.json, "deals");
    assert_int_equal((long long)jlen(all), jint(td.json, "count"));
    assert_true(jlen(all) >= (size_t)n_def);
    int listed = 0, found_now = 0;
    for (size_t i = 0; i < jlen(all); i++) {
        yajl_val x = jidx(all, i);
        assert_true(i == 0 ||
                    jint(x, "peak_profit_cents") <= jint(jidx(all, i - 1), "peak_profit_cents"));
        assert_true(jint(x, "deal_minutes") > 0);
        assert_true(jint(x, "fetch_tokens") == 6 || jint(x, "fetch_tokens") == 12);
        assert_true(jint(x, "first_deal") <= jint(x, "peak_at"));
        long long la = jint(x, "listed_at");
        listed += la >= 0;
        assert_true(la < 0 || la >= jint(x, "first_deal"));
        found_now += strcmp(jstr(x, "asin"), deal_asin) == 0;
    }
    assert_true(listed > 0);
    assert_int_equal(found_now, 1);
    /* the clock */
    struct resp ck = get(&s, "/_sim/clock");
    assert_true(jint(ck.json, "keepa_minute") >= now);
    assert_int_equal(jint(ck.json, "minute_ms"), 60000);
    resp_free(&ck);
    resp_free(&td);
    resp_free(&tl);
    resp_free(&loose);
    resp_free(&ms);
    resp_free(&m);
    resp_free(&d);
    free(e);
    sim_stop(&s);
}

static int burst(struct sim *s, int nconn)
{
    CURLM *m = curl_multi_init();
    CURL **h = calloc((size_t)nconn, sizeof(*h));
    char u[128];
    snprintf(u, sizeof(u), "http://127.0.0.1:%d/token?key=k", s->port);
    FILE *devnull = fopen("/dev/null", "w");
    for (int i = 0; i < nconn; i++) {
        h[i] = curl_easy_init();
        curl_easy_setopt(h[i], CURLOPT_URL, u);
        curl_easy_setopt(h[i], CURLOPT_WRITEDATA, devnull);
        curl_easy_setopt(h[i], CURLOPT_TIMEOUT, 30L);
        curl_easy_setopt(h[i], CURLOPT_FORBID_REUSE, 1L);
        curl_multi_add_handle(m, h[i]);
    }
    int running = 1;
    while (running) {
        curl_multi_perform(m, &running);
        curl_multi_poll(m, NULL, 0, 100, NULL);
    }
    int ok = 0;
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(m, &left)) != NULL) {
        long code = 0;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &code);
        ok += msg->msg == CURLMSG_DONE && msg->data.result == CURLE_OK && code == 200;
    }
    for (int i = 0; i < nconn; i++) {
        curl_multi_remove_handle(m, h[i]);
        curl_easy_cleanup(h[i]);
    }
    free(h);
    curl_multi_cleanup(m);
    fclose(devnull);
    return ok;
}

static void test_connection_limit(void **state)
{
    (void)state;
    struct sim s = sim_start("--products", "100", "--max-connections", "32");
    int ok = burst(&s, 400);
    assert_true(ok >= 32); /* beyond the limit connections are refused, not queued forever */
    struct resp r = get(&s, "/token?key=k");
    assert_int_equal(r.status, 200);
    resp_free(&r);
    sim_stop(&s);
}

static void test_hostile_input(void **state)
{
    (void)state;
    struct sim s = sim_start("--products", "1000");
    size_t n = 2 * 1024 * 1024;
    char *big = malloc(n + 1);
    memset(big, 'a', n);
    big[n] = '\0';
    struct resp r = req(&s, "POST", "/deal?key=k", big, 1);
    assert_int_equal(r.status, 413);
    assert_envelope(r.json);
    resp_free(&r);
    memset(big, '[', 300000);
    big[300000] = '\0';
    r = req(&s, "POST", "/deal?key=k", big, 1);
    assert_int_equal(r.status, 400);
    resp_free(&r);
    memset(big, '{', 100);
    big[100] = '\0';
    r = req(&s, "POST", "/deal?key=k", big, 1);
    assert_int_equal(r.status, 400);
    resp_free(&r);
    /* a 100 KiB URL is refused by the HTTP layer, and the server lives on */
    char *url = malloc(100 * 1024);
    strcpy(url, "/token?key=");
    memset(url + 11, 'k', 100 * 1024 - 12);
    url[100 * 1024 - 1] = '\0';
    r = req(&s, "GET", url, NULL, 1);
    assert_true(r.status >= 400 || r.curl_rc != CURLE_OK);
    resp_free(&r);
    free(url);
    free(big);
    /* many concurrent connections */
    assert_int_equal(burst(&s, 300), 300);
    r = get(&s, "/token?key=k");
    assert_int_equal(r.status, 200);
    resp_free(&r);
    sim_stop(&s);
}

/* ---------- hostile bodies ---------- */

/* A streamed fetch that keeps only the first and last bytes of the body. */
#define PROBE_TAIL 65536
struct probe {
    char head[4096];
    size_t head_len;
    char tail[PROBE_TAIL + 1];
    size_t tail_len; /* the last min(total, PROBE_TAIL) bytes, in order, then a NUL */
    uint64_t total;
    uint64_t cap; /* abort once this many bytes came (0: never) */
    long status;
    long content_length;
    int gz;
    CURLcode curl_rc;
    /* The generated middle, from the first byte after MARK (found in the head): "0,0,0,..."
     * for PAD_LEN bytes (UINT64_MAX: to the end) with PAD_BAD blocks that differ out of
     * PAD_CHECKED bytes; or with BRACKETS, the run of '[' and the run of ']' after it. */
    const char *mark;
    int brackets;
    uint64_t pad_len;
    uint64_t mid_from; /* 0 until MARK is found */
    uint64_t pad_checked, pad_bad;
    uint64_t opens, closes;
    int bracket_state; /* 0 in the '[' run, 1 in the ']' run, 2 after */
};

#define PAD_PATTERN_LEN 65536

/* "0,0,0,...": '0' at even offsets, PAD_PATTERN_LEN + 1 bytes. */
static const char *pad_pattern(void)
{
    static char pat[PAD_PATTERN_LEN + 2];
    if (pat[0] == '\0')
        for (size_t i = 0; i <= PAD_PATTERN_LEN; i++)
            pat[i] = (i & 1) ? ',' : '0';
    return pat;
}

/* Checks the bytes D[0, N) at body offset P->total against the expected middle. */
static void probe_check_mid(struct probe *p, const char *d, size_t n)
{
    if (p->mark == NULL)
        return;
    if (p->mid_from == 0) {
        const char *m = strstr(p->head, p->mark);
        if (m == NULL)
            return;
        p->mid_from = (uint64_t)(m - p->head) + strlen(p->mark);
    }
    uint64_t from = p->total > p->mid_from ? p->total : p->mid_from;
    uint64_t end = p->total + n;
    if (p->brackets) {
        for (uint64_t i = from; i < end && p->bracket_state < 2; i++) {
            char c = d[i - p->total];
            if (p->bracket_state == 0 && c == '[') {
                p->opens++;
            } else if (c == ']') {
                p->bracket_state = 1;
                p->closes++;
            } else {
                p->bracket_state = 2;
            }
        }
        return;
    }
    uint64_t to = end;
    if (p->pad_len != UINT64_MAX && p->mid_from + p->pad_len < to)
        to = p->mid_from + p->pad_len;
    while (from < to) {
        size_t len = to - from < PAD_PATTERN_LEN ? (size_t)(to - from) : PAD_PATTERN_LEN;
        if (memcmp(d + (from - p->total), pad_pattern() + ((from - p->mid_from) & 1), len) != 0)
            p->pad_bad++;
        p->pad_checked += len;
        from += len;
    }
}

static size_t probe_data(char *d, size_t sz, size_t nm, void *u)
{
    struct probe *p = u;
    size_t n = sz * nm;
    size_t h = n < sizeof(p->head) - 1 - p->head_len ? n : sizeof(p->head) - 1 - p->head_len;
    memcpy(p->head + p->head_len, d, h);
    p->head_len += h;
    p->head[p->head_len] = '\0';
    probe_check_mid(p, d, n);
    if (n >= PROBE_TAIL) {
        memcpy(p->tail, d + n - PROBE_TAIL, PROBE_TAIL);
        p->tail_len = PROBE_TAIL;
    } else {
        size_t keep = p->tail_len + n <= PROBE_TAIL ? p->tail_len : PROBE_TAIL - n;
        memmove(p->tail, p->tail + p->tail_len - keep, keep);
        memcpy(p->tail + keep, d, n);
        p->tail_len = keep + n;
    }
    p->tail[p->tail_len] = '\0';
    p->total += n;
    return p->cap > 0 && p->total >= p->cap ? 0 : n;
}

static size_t probe_header(char *d, size_t sz, size_t nm, void *u)
{
    struct probe *p = u;
    size_t n = sz * nm;
    if (n > 17 && strncasecmp(d, "Content-Encoding:", 17) == 0 && strstr(d, "gzip"))
        p->gz = 1;
    if (n > 15 && strncasecmp(d, "Content-Length:", 15) == 0)
        p->content_length = strtol(d + 15, NULL, 10);
    return n;
}

/* GET PATH streamed into P (raw bytes, no gzip asked), stopping after CAP bytes (0: never). */
static void probe_get(struct sim *s, const char *path, uint64_t cap, struct probe *p)
{
    const char *mark = p->mark;
    int brackets = p->brackets;
    uint64_t pad_len = p->pad_len;
    memset(p, 0, sizeof(*p));
    p->mark = mark;
    p->brackets = brackets;
    p->pad_len = pad_len;
    p->cap = cap;
    p->content_length = -1;
    char url[512];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", s->port, path);
    CURL *c = curl_easy_init();
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, probe_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, p);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, probe_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, p);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 120L);
    p->curl_rc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &p->status);
    curl_easy_cleanup(c);
}

/* VmRSS of PID in KiB. */
static long rss_kib(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    long kib = -1;
    while (fgets(line, sizeof(line), f) != NULL)
        if (strncmp(line, "VmRSS:", 6) == 0)
            kib = strtol(line + 6, NULL, 10);
    fclose(f);
    assert_true(kib > 0);
    return kib;
}

/* The envelope prefix of a raw body: its 7 members in order, each with a number. */
static void assert_envelope_prefix(const char *body)
{
    const char *p = body;
    assert_true(*p == '{');
    for (int i = 0; i < 7; i++) {
        char key[64];
        snprintf(key, sizeof(key), "%c\"%s\":", i ? ',' : '{', ENV_KEYS[i]);
        assert_memory_equal(p, key, strlen(key));
        p += strlen(key);
        assert_true((*p >= '0' && *p <= '9') || *p == '-');
        while ((*p >= '0' && *p <= '9') || *p == '-' || *p == '.')
            p++;
    }
}

/*
 * endless, huge and deep: the body starts with a live envelope and is what the README says;
 * endless goes on past any client limit (here 80 MiB) and huge is a valid 160 MiB document
 * ending with the real products; the simulator's memory does not grow with either; each is
 * charged in full. Also the SPEC syntax of the new items.
 */
static void test_hostile_endless_huge_deep(void **state)
{
    (void)state;
    struct sim s = sim_start("--products", "3000", "--start-tokens", "5000");
    char a[1][11];
    some_asins(&s, a, 1);
    char path[256];
    snprintf(path, sizeof(path), "/product?key=k&domain=1&asin=%s", a[0]);
    struct resp bad = req(&s, "POST", "/_sim/faults?spec=drip=2", NULL, 0);
    assert_int_equal(bad.status, 400);
    resp_free(&bad);
    bad = req(&s, "POST", "/_sim/faults?spec=offers_bogus=1", NULL, 0);
    assert_int_equal(bad.status, 400);
    resp_free(&bad);
    long rss0 = rss_kib(s.pid);
    struct probe *p = calloc(1, sizeof(*p));
    assert_non_null(p);

    set_faults(&s, "endless=1");
    long long b0 = balance(&s);
    p->mark = ",\"padding\":[";
    p->pad_len = UINT64_MAX;
    probe_get(&s, path, 80u << 20, p);
    assert_int_equal(p->status, 200);
    assert_int_equal(p->curl_rc, CURLE_WRITE_ERROR); /* we stopped it: it had not ended */
    assert_true(p->total >= 80u << 20);
    assert_int_equal(p->content_length, -1); /* chunked: no length announced */
    assert_envelope_prefix(p->head);
    assert_non_null(strstr(p->head, ",\"padding\":[0,0,0,0,"));
    assert_true(p->pad_checked > (79u << 20)); /* every byte after the envelope is "0," */
    assert_int_equal(p->pad_bad, 0);
    assert_int_equal(balance(&s), b0 - 1);
    long rss_endless = rss_kib(s.pid);

    set_faults(&s, "huge=1");
    b0 = balance(&s);
    p->pad_len = (160u << 20) + 1; /* "0,0,...,0" and the '0' that closes it */
    probe_get(&s, path, 0, p);
    assert_int_equal(p->curl_rc, CURLE_OK);
    assert_int_equal(p->status, 200);
    assert_true(p->total > (160u << 20));
    assert_int_equal((long)p->total, p->content_length);
    assert_envelope_prefix(p->head);
    assert_non_null(strstr(p->head, ",\"padding\":[0,0,0,"));
    char *members = strstr(p->tail, "0],\"products\":[{");
    assert_non_null(members); /* the padding closes, then the real body */
    /* "0,0,...0" runs from the envelope to that closing "0]": 160 MiB and the last '0'. */
    assert_int_equal(p->total - p->mid_from - strlen(members) + 1, (160u << 20) + 1);
    assert_int_equal(p->pad_checked, (160u << 20) + 1);
    assert_int_equal(p->pad_bad, 0);
    assert_non_null(strstr(members, a[0]));
    assert_true(p->tail[strlen(p->tail) - 1] == '}');
    assert_int_equal(balance(&s), b0 - 1);
    long rss_huge = rss_kib(s.pid);

    set_faults(&s, "deep=1");
    b0 = balance(&s);
    p->mark = ",\"products\":";
    p->brackets = 1;
    probe_get(&s, path, 0, p);
    assert_int_equal(p->curl_rc, CURLE_OK);
    assert_int_equal(p->status, 200);
    assert_envelope_prefix(p->head);
    char *deep = strstr(p->head, ",\"products\":[[[[");
    assert_non_null(deep);
    size_t prefix = (size_t)(deep - p->head) + strlen(",\"products\":");
    assert_int_equal(p->total, prefix + 2 * 1000000 + 1); /* 10^6 '[', 10^6 ']', '}' */
    assert_int_equal((long)p->total, p->content_length);
    assert_memory_equal(p->tail + p->tail_len - 4, "]]]}", 4);
    assert_int_equal(p->opens, 1000000); /* 10^6 '[' then 10^6 ']', nothing between */
    assert_int_equal(p->closes, 1000000);
    assert_int_equal(balance(&s), b0 - 1);
    free(p);

    /* Nothing of those bodies stays or was ever held: 80 + 160 MiB went through a server
     * whose resident size moved by less than 16 MiB. */
    printf("    kdeals-sim VmRSS: %ld KiB before, %ld after endless, %ld after huge\n", rss0,
           rss_endless, rss_huge);
    assert_true(rss_endless - rss0 < 16 * 1024);
    assert_true(rss_huge - rss0 < 16 * 1024);
    struct resp st = get(&s, "/_sim/stats");
    yajl_val fi = jget(st.json, "faults_injected");
    assert_int_equal(jint(fi, "endless"), 1);
    assert_int_equal(jint(fi, "huge"), 1);
    assert_int_equal(jint(fi, "deep"), 1);
    resp_free(&st);
    sim_stop(&s);
}

/* JSON type class of V; a number that no 64-bit integer holds counts as "double". */
static int jclass(yajl_val v)
{
    if (v == NULL || YAJL_IS_NULL(v))
        return 0;
    if (YAJL_IS_INTEGER(v))
        return 1;
    if (YAJL_IS_NUMBER(v))
        return 2;
    if (YAJL_IS_STRING(v))
        return 3;
    if (YAJL_IS_ARRAY(v))
        return 4;
    if (YAJL_IS_OBJECT(v))
        return 5;
    return 6; /* true / false */
}

/*
 * mistyped: the envelope is intact and every member of the product has the wrong type (or, a
 * number, a value no integer holds); offers_mistyped hits /product with offers only; charged
 * in full.
 */
static void test_hostile_mistyped(void **state)
{
    (void)state;
    struct sim s = sim_start("--products", "3000", "--start-tokens", "5000");
    char a[1][11];
    some_asins(&s, a, 1);
    struct resp good = get(&s, "/product?key=k&domain=1&asin=%s&offers=20", a[0]);
    assert_int_equal(good.status, 200);
    yajl_val gp = jidx(jget(good.json, "products"), 0);
    assert_true(YAJL_IS_OBJECT(gp));

    set_faults(&s, "offers_mistyped=1");
    struct resp g = get(&s, "/_sim/faults");
    assert_string_equal(YAJL_GET_STRING(jget(g.json, "spec")), "offers_mistyped=1");
    resp_free(&g);
    /* without offers: untouched */
    struct resp plain = get(&s, "/product?key=k&domain=1&asin=%s", a[0]);
    assert_true(YAJL_IS_ARRAY(jget(jidx(jget(plain.json, "products"), 0), "csv")));
    resp_free(&plain);
    long long b0 = balance(&s);
    struct resp bad = get(&s, "/product?key=k&domain=1&asin=%s&offers=20", a[0]);
    assert_int_equal(bad.status, 200);
    assert_true(bad.gz); /* an ordinary body otherwise: gzip'd when accepted */
    assert_envelope(bad.json);
    assert_int_equal(jint(bad.json, "tokensConsumed"), b0 - balance(&s));
    assert_true(jint(bad.json, "tokensConsumed") >= 5); /* offers: 5 when refetched at once */
    yajl_val bp = jidx(jget(bad.json, "products"), 0);
    assert_true(YAJL_IS_OBJECT(bp));
    assert_int_equal(bp->u.object.len, gp->u.object.len);
    for (size_t i = 0; i < gp->u.object.len; i++) {
        const char *key = gp->u.object.keys[i];
        assert_string_equal(bp->u.object.keys[i], key);
        yajl_val was = gp->u.object.values[i], now = bp->u.object.values[i];
        int changed = jclass(was) != jclass(now) || (YAJL_IS_NUMBER(now) && !YAJL_IS_INTEGER(now));
        if (!changed)
            fail_msg("product member %s kept its JSON type", key);
    }
    resp_free(&bad);
    resp_free(&good);
    struct resp st = get(&s, "/_sim/stats");
    assert_int_equal(jint(jget(st.json, "faults_injected"), "mistyped"), 1);
    resp_free(&st);
    sim_stop(&s);
}

/*
 * drip: the real body, 16 bytes at a time with 250 ms pauses; with a pool of 2 threads and 8
 * connections dripping, other requests are answered at once (a drip holds no thread), and a
 * drip delivers the whole valid body in the end.
 */
static void test_hostile_drip(void **state)
{
    (void)state;
    struct sim s = sim_start("--products", "3000", "--threads", "2");
    set_faults(&s, "drip=1");
    /* An unknown ASIN (B0ZZZZZZZZ, reserved): the envelope-only answer (~190 bytes, 12 writes,
     * ~3 s). */
    enum { N = 8 };
    char url[256];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/product?key=k&domain=1&asin=B0ZZZZZZZZ",
             s.port);
    CURLM *m = curl_multi_init();
    CURL *e[N];
    struct growbuf got[N];
    for (int i = 0; i < N; i++) {
        got[i] = (struct growbuf){NULL, 0};
        e[i] = curl_easy_init();
        curl_easy_setopt(e[i], CURLOPT_URL, url);
        curl_easy_setopt(e[i], CURLOPT_WRITEFUNCTION, on_data);
        curl_easy_setopt(e[i], CURLOPT_WRITEDATA, &got[i]);
        curl_multi_add_handle(m, e[i]);
    }
    int running = N;
    size_t least = 0;
    for (int spins = 0; least == 0 && spins < 2000; spins++) { /* every drip has begun */
        curl_multi_perform(m, &running);
        curl_multi_poll(m, NULL, 0, 10, NULL);
        least = SIZE_MAX;
        for (int i = 0; i < N; i++)
            least = got[i].n < least ? got[i].n : least;
    }
    assert_true(least > 0);
    /* The server still answers everything else (these block this thread, not the drips). */
    set_faults(&s, "clear");
    struct resp t = get(&s, "/token?key=k");
    assert_int_equal(t.status, 200);
    resp_free(&t);
    struct resp st = get(&s, "/_sim/stats");
    assert_int_equal(jint(jget(st.json, "faults_injected"), "drip"), N);
    resp_free(&st);
    curl_multi_perform(m, &running);
    assert_int_equal(running, N); /* ...while all 8 were still dripping */
    /* They drip to the end: each a whole valid answer. */
    while (running > 0) {
        curl_multi_perform(m, &running);
        curl_multi_poll(m, NULL, 0, 100, NULL);
    }
    CURLMsg *msg;
    int left, done_ok = 0;
    while ((msg = curl_multi_info_read(m, &left)) != NULL)
        done_ok += msg->msg == CURLMSG_DONE && msg->data.result == CURLE_OK;
    assert_int_equal(done_ok, N);
    for (int i = 0; i < N; i++) {
        char err[128];
        yajl_val v = yajl_tree_parse(got[i].p, err, sizeof(err));
        assert_envelope(v);
        yajl_tree_free(v);
        free(got[i].p);
        curl_multi_remove_handle(m, e[i]);
        curl_easy_cleanup(e[i]);
    }
    curl_multi_cleanup(m);
    /* drip with gzip: the gzip'd body, dripped, decodes to the envelope */
    set_faults(&s, "drip=1");
    struct resp z = get(&s, "/product?key=k&domain=1&asin=B0ZZZZZZZZ");
    assert_int_equal(z.status, 200);
    assert_true(z.gz);
    assert_envelope(z.json);
    assert_true(z.elapsed_ms >= 250); /* at least one pause */
    resp_free(&z);
    sim_stop(&s);
}

int main(int argc, char **argv)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    kd_test_set_timeout(120);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_11_01_trailing_slash),
        cmocka_unit_test(test_11_02_get_and_post),
        cmocka_unit_test(test_11_03_keys),
        cmocka_unit_test(test_11_04_unknown_params),
        cmocka_unit_test(test_11_05_envelope_everywhere),
        cmocka_unit_test(test_11_06_timestamp),
        cmocka_unit_test(test_11_06_accelerated_timestamps_never_ahead),
        cmocka_unit_test(test_11_07_gzip_every_body),
        cmocka_unit_test(test_11_08_bucket_refill_and_cap),
        cmocka_unit_test(test_11_09_10_admission_and_429),
        cmocka_unit_test(test_11_11_token_free),
        cmocka_unit_test(test_11_12_product_costs),
        cmocka_unit_test(test_11_13_limits_zeros_stats),
        cmocka_unit_test(test_11_14_offers_zero),
        cmocka_unit_test(test_11_15_16_offers_and_shapes),
        cmocka_unit_test(test_11_18_deal_paging),
        cmocka_unit_test(test_11_19_deal_arrays),
        cmocka_unit_test(test_11_20_sort_types),
        cmocka_unit_test(test_11_21_deal_cache),
        cmocka_unit_test(test_11_22_lenient_selection),
        cmocka_unit_test(test_fixture_product_shape),
        cmocka_unit_test(test_fixture_deal_shape),
        cmocka_unit_test(test_11_23_replay),
        cmocka_unit_test(test_11_24_faults),
        cmocka_unit_test(test_ledger),
        cmocka_unit_test(test_bucket_per_key),
        cmocka_unit_test(test_oracle_matches_product_truth),
        cmocka_unit_test(test_truth_endpoints),
        cmocka_unit_test(test_determinism),
        cmocka_unit_test(test_deals_move_over_time),
        cmocka_unit_test(test_seller_and_query),
        cmocka_unit_test(test_judgement_fields),
        cmocka_unit_test(test_deal_root_names),
        cmocka_unit_test(test_feed_agrees_with_product),
        cmocka_unit_test(test_query_agrees_with_product),
        cmocka_unit_test(test_hostile_input),
        cmocka_unit_test(test_connection_limit),
        cmocka_unit_test(test_hostile_endless_huge_deep),
        cmocka_unit_test(test_hostile_mistyped),
        cmocka_unit_test(test_hostile_drip),
    };
    return KD_RUN_TESTS(tests, argc, argv);
}
