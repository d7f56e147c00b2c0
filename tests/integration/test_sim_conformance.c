/*
 * test_sim_conformance.c: every endpoint and parameter kdeals-sim claims (sim/README.md,
 * "What it serves"), against what Keepa answers.
 *
 * Shapes are checked against the recorded real bodies where one exists (tests/fixtures/keepa:
 * the product fixture for products, synthetic ones included) and otherwise against the field
 * lists of docs/keepa-api.md §2.6, which this test reads from the document itself, so the
 * document and the simulator cannot drift apart silently. The endpoint table of sim/README.md is
 * read too: every endpoint it calls modelled must be exercised here, and every one it calls not
 * modelled must answer 404 with the key's real token fields. Costs are checked against the
 * documented charge and against the balance the next /token shows.
 *
 * Each test starts its own kdeals-sim (--port 0 --port-file) and talks to it with libcurl
 * (gzip decoded by curl).
 */
#include <curl/curl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <yajl/yajl_tree.h>

#include "kd_test.h"

#define SIM_BIN   KD_BUILD_DIR "/kdeals-sim"
#define DOC_API   KD_SOURCE_DIR "/docs/keepa-api.md"
#define DOC_SIM   KD_SOURCE_DIR "/sim/README.md"
#define AMAZON    "ATVPDKIKX0DER"
#define REAL_ASIN "B0D8W1YVBX" /* the recorded product: a synthetic product in the simulator */

/* The endpoints this file exercises: sim/README.md's modelled ones must all be here. */
static const char *const TESTED[] = {"/token",     "/product",       "/deal",     "/seller",
                                     "/query",     "/search",        "/category", "/bestsellers",
                                     "/topseller", "/lightningdeal", "/tracking"};

/* ---------- the simulator and HTTP ---------- */

struct sim {
    pid_t pid;
    int port;
};

static void nap_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static struct sim sim_start_v(const char *const *args)
{
    static int n;
    char port_file[512];
    snprintf(port_file, sizeof(port_file), "%s/conf.%d.%d", kd_test_tmpdir(), (int)getpid(), n++);
    const char *argv[48] = {SIM_BIN, "--port", "0", "--port-file", port_file, "--quiet"};
    int a = 6;
    for (int i = 0; args[i] && a < 46; i++)
        argv[a++] = args[i];
    argv[a] = NULL;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        execv(SIM_BIN, (char *const *)argv);
        _exit(127);
    }
    struct sim s = {pid, 0};
    for (int i = 0; i < 4000 && s.port <= 0; i++) {
        FILE *f = fopen(port_file, "r");
        if (f != NULL) {
            if (fscanf(f, "%d", &s.port) != 1)
                s.port = 0;
            fclose(f);
        }
        if (s.port <= 0)
            nap_ms(5);
    }
    if (s.port <= 0) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        fail_msg("kdeals-sim did not start");
    }
    return s;
}

#define sim_start(...) sim_start_v((const char *const[]){__VA_ARGS__, NULL})

static void sim_stop(struct sim *s)
{
    kill(s->pid, SIGTERM);
    int st = 0;
    waitpid(s->pid, &st, 0);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

struct resp {
    long status;
    char *body;
    size_t len;
    yajl_val json;
};

static size_t on_data(char *d, size_t sz, size_t nm, void *u)
{
    struct resp *r = u;
    size_t n = sz * nm;
    char *np = realloc(r->body, r->len + n + 1);
    if (np == NULL)
        return 0;
    r->body = np;
    memcpy(r->body + r->len, d, n);
    r->len += n;
    r->body[r->len] = '\0';
    return n;
}

/* GET (POST_BODY NULL) or POST; the body is parsed as JSON when it is JSON. */
static struct resp call(const struct sim *s, const char *post_body, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static struct resp call(const struct sim *s, const char *post_body, const char *fmt, ...)
{
    char path[8192], url[8300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(path, sizeof(path), fmt, ap);
    va_end(ap);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", s->port, path);
    struct resp r = {0, NULL, 0, NULL};
    CURL *c = curl_easy_init();
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_ACCEPT_ENCODING, "");
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &r);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 120L);
    struct curl_slist *h = NULL;
    if (post_body != NULL) {
        curl_easy_setopt(c, CURLOPT_POST, 1L);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, post_body);
        h = curl_slist_append(h, "Content-Type: application/json");
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    }
    CURLcode rc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    if (rc != CURLE_OK)
        fail_msg("%s: %s", path, curl_easy_strerror(rc));
    if (r.body != NULL) {
        char err[128];
        r.json = yajl_tree_parse(r.body, err, sizeof(err));
    }
    return r;
}

static void resp_free(struct resp *r)
{
    free(r->body);
    yajl_tree_free(r->json);
    memset(r, 0, sizeof(*r));
}

/* ---------- JSON ---------- */

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

static const char *jstr(yajl_val v, const char *key)
{
    yajl_val x = jget(v, key);
    if (!YAJL_IS_STRING(x))
        fail_msg("%s is not a string", key);
    return x->u.string;
}

static size_t jlen(yajl_val v)
{
    return YAJL_IS_ARRAY(v) ? v->u.array.len : YAJL_IS_OBJECT(v) ? v->u.object.len : 0;
}

static yajl_val jidx(yajl_val a, size_t i)
{
    return YAJL_IS_ARRAY(a) && i < a->u.array.len ? a->u.array.values[i] : NULL;
}

/* String entry I of array A; fails the test when it is not one. */
static const char *astr(yajl_val a, size_t i)
{
    yajl_val v = jidx(a, i);
    if (!YAJL_IS_STRING(v))
        fail_msg("array entry %zu is not a string", i);
    return v->u.string;
}

static int jtrue(yajl_val v)
{
    return v != NULL && v->type == yajl_t_true;
}

static const char *ENVELOPE[7] = {"timestamp",         "tokensLeft",         "refillIn",
                                  "refillRate",        "tokenFlowReduction", "tokensConsumed",
                                  "processingTimeInMs"};

/* A 200 with the envelope first; returns its tokensConsumed. */
static long long ok_answer(const struct resp *r, const char *what)
{
    if (r->status != 200 || !YAJL_IS_OBJECT(r->json))
        fail_msg("%s: HTTP %ld %.300s", what, r->status, r->body ? r->body : "");
    for (int i = 0; i < 7; i++)
        if (jlen(r->json) < 7 || strcmp(r->json->u.object.keys[i], ENVELOPE[i]) != 0)
            fail_msg("%s: envelope field %d is not %s", what, i, ENVELOPE[i]);
    return jint(r->json, "tokensConsumed");
}

static void expect_400(const struct sim *s, const char *path)
{
    struct resp r = call(s, NULL, "%s", path);
    if (r.status != 400 || !YAJL_IS_OBJECT(jget(r.json, "error")) ||
        jint(r.json, "tokensConsumed") != 0)
        fail_msg("%s: expected 400 invalidParameter at no cost, got HTTP %ld", path, r.status);
    resp_free(&r);
}

static long long balance(const struct sim *s)
{
    struct resp r = call(s, NULL, "/token?key=k");
    long long b = jint(r.json, "tokensLeft");
    resp_free(&r);
    return b;
}

/* ---------- the documents ---------- */

/* The backticked words of the row "| NAME | ..." of a table in FILE, into WORDS (max N). */
static int doc_row(const char *file, const char *name, char words[][64], int max)
{
    size_t len;
    char *text = kd_read_file(file, &len);
    if (text == NULL)
        fail_msg("cannot read %s", file);
    char head[128];
    snprintf(head, sizeof(head), "\n| %s |", name);
    const char *row = strstr(text, head);
    if (row == NULL)
        fail_msg("%s has no table row \"%s\"", file, name);
    row += strlen(head);
    const char *end = strchr(row, '\n');
    int n = 0;
    for (const char *p = row; p < end && n < max;) {
        const char *a = memchr(p, '`', (size_t)(end - p));
        if (a == NULL)
            break;
        const char *b = memchr(a + 1, '`', (size_t)(end - a - 1));
        if (b == NULL)
            break;
        snprintf(words[n++], 64, "%.*s", (int)(b - a - 1), a + 1);
        p = b + 1;
    }
    free(text);
    return n;
}

/* Every field docs/keepa-api.md lists for OBJECT is in V. */
static void has_doc_fields(yajl_val v, const char *object)
{
    char f[48][64];
    int n = doc_row(DOC_API, object, f, 48);
    assert_true(n > 0);
    for (int i = 0; i < n; i++)
        if (jget(v, f[i]) == NULL)
            fail_msg("%s lacks %s (docs/keepa-api.md §2.6)", object, f[i]);
}

/* JSON kind for shape comparison: bool, number, string, array, object (null: -1). */
static int kind(yajl_val v)
{
    if (v == NULL || YAJL_IS_NULL(v))
        return -1;
    if (v->type == yajl_t_true || v->type == yajl_t_false)
        return 1;
    if (YAJL_IS_NUMBER(v))
        return 2;
    return (int)v->type + 10;
}

/* Every key of the recorded object REAL is in SIM, with the same JSON kind where both are
 * non-null; returns how many were compared. */
static int same_shape(yajl_val real, yajl_val sim, const char *where)
{
    int n = 0;
    for (size_t i = 0; i < jlen(real); i++) {
        const char *k = real->u.object.keys[i];
        yajl_val rv = real->u.object.values[i], sv = jget(sim, k);
        if (sv == NULL)
            fail_msg("%s: the simulator sends no %s, the recorded body does", where, k);
        if (kind(rv) >= 0 && kind(sv) >= 0 && kind(rv) != kind(sv))
            fail_msg("%s.%s: JSON kind %d, the recorded body's %d", where, k, kind(sv), kind(rv));
        n++;
    }
    return n;
}

static yajl_val load_fixture(const char *name)
{
    size_t len;
    char *text = kd_read_file(kd_fixture_path(name), &len);
    assert_non_null(text);
    char err[128];
    yajl_val v = yajl_tree_parse(text, err, sizeof(err));
    free(text);
    assert_non_null(v);
    return v;
}

/* The first N catalog ASINs the feed oracle lists (catalog products with a Used market). */
static void some_asins(const struct sim *s, char out[][11], int n)
{
    struct resp r = call(s, NULL, "/_sim/deals?selection=%%7B%%22priceTypes%%22%%3A%%5B2%%5D%%7D");
    yajl_val list = jget(r.json, "asins");
    if ((int)jlen(list) < n)
        fail_msg("the oracle lists %zu products, %d needed", jlen(list), n);
    for (int i = 0; i < n; i++) {
        const char *asin = YAJL_GET_STRING(jidx(list, (size_t)i));
        if (asin == NULL)
            fail_msg("the oracle's entry %d is not a string", i);
        snprintf(out[i], 11, "%s", asin != NULL ? asin : ""); /* fail_msg is not noreturn */
    }
    resp_free(&r);
}

/* ---------- the README's claims ---------- */

/* sim/README.md's endpoint table: every modelled endpoint is tested here, every other one
 * answers 404 with the key's token fields. */
static void test_readme_endpoint_table(void **state)
{
    (void)state;
    size_t len;
    char *text = kd_read_file(DOC_SIM, &len);
    assert_non_null(text);
    struct sim s = sim_start("--products", "2000");
    int modelled = 0, not_modelled = 0;
    for (const char *row = strstr(text, "\n| `/"); row != NULL; row = strstr(row + 1, "\n| `/")) {
        char name[64], flag[16];
        if (sscanf(row, "\n| `%63[^`]` | %15[a-z] |", name, flag) != 2)
            continue;
        if (strcmp(flag, "yes") == 0) {
            int found = 0;
            for (size_t i = 0; i < sizeof(TESTED) / sizeof(TESTED[0]); i++)
                found |= strcmp(TESTED[i], name) == 0;
            if (!found)
                fail_msg("sim/README.md claims %s; this test does not exercise it", name);
            modelled++;
        } else if (strcmp(flag, "no") == 0) {
            struct resp r = call(&s, NULL, "%s?key=k&domain=1", name);
            assert_int_equal(r.status, 404);
            assert_true(jint(r.json, "tokensLeft") > 0); /* the key's real token fields */
            assert_true(jint(r.json, "refillRate") > 0);
            assert_int_equal(jint(r.json, "tokensConsumed"), 0);
            resp_free(&r);
            not_modelled++;
        }
    }
    free(text);
    assert_int_equal(modelled, (int)(sizeof(TESTED) / sizeof(TESTED[0])));
    assert_true(not_modelled >= 1);
    /* an unknown path too; a bad key still gets 400 with zeroed fields */
    struct resp u = call(&s, NULL, "/nosuchendpoint?key=k");
    assert_int_equal(u.status, 404);
    assert_int_equal(jint(u.json, "tokensLeft"), balance(&s));
    resp_free(&u);
    sim_stop(&s);
    struct sim k = sim_start("--products", "200", "--keys", "good");
    struct resp bad = call(&k, NULL, "/nosuchendpoint?key=bad");
    assert_int_equal(bad.status, 400);
    assert_int_equal(jint(bad.json, "tokensLeft"), 0);
    assert_int_equal(jint(bad.json, "refillRate"), 0);
    resp_free(&bad);
    struct resp good = call(&k, NULL, "/graphimage?key=good&domain=1");
    assert_int_equal(good.status, 404);
    assert_true(jint(good.json, "refillRate") > 0);
    resp_free(&good);
    sim_stop(&k);
}

/* ---------- /product ---------- */

/* Every /product parameter the simulator claims: 200, the documented charge, and the product's
 * shape against the recorded real body, for a catalog product and a synthetic one. */
static void test_product_parameters_and_shape(void **state)
{
    (void)state;
    yajl_val real = load_fixture("product_" REAL_ASIN ".json");
    yajl_val real_p = jidx(jget(real, "products"), 0);
    yajl_val plain = load_fixture("product_B0F7XPYCSJ.json");
    yajl_val plain_p = jidx(jget(plain, "products"), 0);
    struct sim s = sim_start("--products", "3000", "--start-tokens", "100000");
    char a[2][11];
    some_asins(&s, a, 2);
    static const struct {
        const char *params;
        int cost; /* per product; -1: offers pricing (>= 6) */
    } P[] = {
        {"stats=180", 1},
        {"stats=1746000000000,1746600000000", 1},
        {"stats=2025-01-01,2025-03-01", 1},
        {"history=0", 1},
        {"history=1&days=30", 1},
        {"days=0", 1},
        {"rating=1", 2},
        {"buybox=1&stats=30", 3},
        {"update=-1", 1},
        {"offers=20&stats=90", -1},
        {"offers=100&only-live-offers=1", -1},
        {"offers=20&stock=1", -1},
        {"historical-variations=1", 1}, /* +1 only for a product with a parent */
        {"code-limit=5&rental=1&videos=0&aplus=0", 1},
    };
    for (size_t i = 0; i < sizeof(P) / sizeof(P[0]); i++) {
        for (int k = 0; k < 2; k++) {
            const char *asin = k == 0 ? a[0] : REAL_ASIN;
            long long b0 = balance(&s);
            struct resp r = call(&s, NULL, "/product?key=k&domain=1&asin=%s&%s", asin, P[i].params);
            long long cost = ok_answer(&r, P[i].params);
            assert_int_equal(balance(&s), b0 - cost);
            if (P[i].cost > 0 && strncmp(P[i].params, "historical", 10) != 0)
                assert_int_equal(cost, P[i].cost);
            if (P[i].cost < 0) /* 6 a page; a repeat within `update` hours costs a flat 5 */
                assert_true(cost >= 5);
            yajl_val p = jidx(jget(r.json, "products"), 0);
            assert_string_equal(jstr(p, "asin"), asin);
            int with_bb = strstr(P[i].params, "offers") || strstr(P[i].params, "buybox");
            /* stats against the recording of the same kind: Buy Box data (B0D8W1YVBX) or
             * none (B0F7XPYCSJ) */
            if (strstr(P[i].params, "stats") != NULL)
                same_shape(jget(with_bb ? real_p : plain_p, "stats"), jget(p, "stats"), "stats");
            int history = strstr(P[i].params, "history=0") == NULL;
            /* buyBoxUsedHistory with offers or buybox (and history), else null */
            yajl_val h = jget(p, "buyBoxUsedHistory");
            assert_int_equal(YAJL_IS_ARRAY(h), with_bb && history);
            assert_int_equal(YAJL_IS_ARRAY(jget(p, "buyBoxSellerIdHistory")), with_bb && history);
            assert_int_equal(YAJL_IS_ARRAY(jget(p, "offers")),
                             strstr(P[i].params, "offers") != NULL);
            assert_int_equal(YAJL_IS_ARRAY(jget(p, "csv")), history);
            resp_free(&r);
        }
    }
    /* the synthetic products have the recorded products' shapes, top level and stats */
    struct resp r =
        call(&s, NULL, "/product?key=k&domain=1&asin=%s&stats=180&buybox=1&rating=1", REAL_ASIN);
    yajl_val p = jidx(jget(r.json, "products"), 0);
    assert_true(same_shape(real_p, p, "product") > 60);
    resp_free(&r);
    struct resp r2 = call(&s, NULL, "/product?key=k&domain=1&asin=B0F7XPYCSJ&stats=180&rating=1");
    yajl_val p2 = jidx(jget(r2.json, "products"), 0);
    assert_true(same_shape(plain_p, p2, "product") > 60);
    same_shape(jget(plain_p, "stats"), jget(p2, "stats"), "stats");
    resp_free(&r2);
    /* codes: the catalog's EAN and its UPC */
    struct resp e = call(&s, NULL, "/product?key=k&domain=1&asin=%s", a[1]);
    const char *ean = YAJL_GET_STRING(jidx(jget(jidx(jget(e.json, "products"), 0), "eanList"), 0));
    struct resp c1 = call(&s, NULL, "/product?key=k&domain=1&code=%s", ean);
    struct resp c2 = call(&s, NULL, "/product?key=k&domain=1&code=%s", ean + 1);
    assert_string_equal(jstr(jidx(jget(c1.json, "products"), 0), "asin"), a[1]);
    assert_string_equal(jstr(jidx(jget(c2.json, "products"), 0), "asin"), a[1]);
    resp_free(&e);
    resp_free(&c1);
    resp_free(&c2);
    expect_400(&s, "/product?key=k&domain=1&asin=B0D8W1YVBX&offers=0");
    expect_400(&s, "/product?key=k&domain=99&asin=B0D8W1YVBX");
    yajl_tree_free(real);
    yajl_tree_free(plain);
    sim_stop(&s);
}

/* Any well-formed ASIN is a deterministic product; malformed and unknown ones are left out at
 * no cost, as Keepa does. */
static void test_any_wellformed_asin(void **state)
{
    (void)state;
    struct sim s1 = sim_start("--seed", "11", "--products", "2000", "--clock-ms", "1790000000000");
    struct sim s2 = sim_start("--seed", "11", "--products", "2000", "--clock-ms", "1790000000000");
    struct sim s3 = sim_start("--seed", "12", "--products", "2000", "--clock-ms", "1790000000000");
    const char *q = "/product?key=k&domain=1&asin=B0D8W1YVBX,0545010225,B07XJ8C8F5&stats=90&"
                    "offers=20&history=0";
    struct resp r1 = call(&s1, NULL, "%s", q), r2 = call(&s2, NULL, "%s", q),
                r3 = call(&s3, NULL, "%s", q);
    ok_answer(&r1, q);
    yajl_val p1 = jget(r1.json, "products");
    assert_int_equal(jlen(p1), 3);
    assert_string_equal(strstr(r1.body, "\"products\""), strstr(r2.body, "\"products\""));
    assert_string_not_equal(strstr(r1.body, "\"products\""), strstr(r3.body, "\"products\""));
    assert_int_equal(jint(jidx(p1, 1), "rootCategory"), 283155); /* an ISBN is a book */
    for (size_t i = 0; i < 3; i++)
        assert_true(YAJL_IS_NULL(jget(jidx(p1, i), "eanList")));
    resp_free(&r1);
    resp_free(&r2);
    resp_free(&r3);
    /* malformed or unknown: 200 without that product, charged 0 */
    static const char *const bad[] = {"XXXXXXXXXX", "B0D8W1YVB", "B0ZZZZZZZZ", "B0D8W1-VBX"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct resp r = call(&s1, NULL, "/product?key=k&domain=1&asin=%s", bad[i]);
        assert_int_equal(ok_answer(&r, bad[i]), 0);
        assert_null(jget(r.json, "products"));
        resp_free(&r);
    }
    /* lower case is read as upper case, as Keepa's clients send either */
    struct resp lower = call(&s1, NULL, "/product?key=k&domain=1&asin=b0d8w1yvbx");
    assert_string_equal(jstr(jidx(jget(lower.json, "products"), 0), "asin"), REAL_ASIN);
    resp_free(&lower);
    struct resp mix = call(&s1, NULL, "/product?key=k&domain=1&asin=XXXXXXXXXX,B0D8W1YVBX");
    assert_int_equal(ok_answer(&mix, "mixed"), 1);
    assert_int_equal(jlen(jget(mix.json, "products")), 1);
    resp_free(&mix);
    sim_stop(&s1);
    sim_stop(&s2);
    sim_stop(&s3);
}

/* buyBoxUsedHistory: quadruples of strings, the last one the current Used Buy Box. */
static void test_buy_box_histories(void **state)
{
    (void)state;
    struct sim s = sim_start("--products", "3000", "--start-tokens", "100000");
    char a[20][11];
    some_asins(&s, a, 20);
    int checked = 0;
    for (int i = 0; i < 20; i++) {
        struct resp r = call(&s, NULL, "/product?key=k&domain=1&asin=%s&offers=20&stats=30", a[i]);
        yajl_val p = jidx(jget(r.json, "products"), 0), st = jget(p, "stats");
        yajl_val h = jget(p, "buyBoxUsedHistory"), sh = jget(p, "buyBoxSellerIdHistory");
        assert_true(jlen(h) >= 4 && jlen(h) % 4 == 0);
        assert_true(jlen(sh) >= 2 && jlen(sh) % 2 == 0);
        for (size_t k = 0; k < jlen(h); k++)
            assert_true(YAJL_IS_STRING(jidx(h, k)));
        size_t last = jlen(h) - 4;
        yajl_val used_seller = jget(st, "buyBoxUsedSellerId");
        const char *hs = astr(h, last + 1);
        if (YAJL_IS_STRING(used_seller)) {
            assert_string_equal(hs, used_seller->u.string);
            char cond[8];
            snprintf(cond, sizeof(cond), "%lld", jint(st, "buyBoxUsedCondition"));
            assert_string_equal(astr(h, last + 2), cond);
            assert_string_equal(astr(h, last + 3), jtrue(jget(st, "buyBoxUsedIsFBA")) ? "1" : "0");
            checked++;
        } else {
            assert_string_equal(hs, "");
        }
        yajl_val bb = jget(st, "buyBoxSellerId");
        if (YAJL_IS_STRING(bb))
            assert_string_equal(YAJL_GET_STRING(jidx(sh, jlen(sh) - 1)), bb->u.string);
        resp_free(&r);
    }
    assert_true(checked > 5);
    sim_stop(&s);
}

/* ---------- /deal ---------- */

static void test_deal_shape(void **state)
{
    (void)state;
    yajl_val real = load_fixture("deal_page.json");
    yajl_val real_deal = jidx(jget(jget(real, "deals"), "dr"), 0);
    struct sim s = sim_start("--products", "3000", "--economy", "rich");
    struct resp r = call(&s, "{\"domainId\":1,\"priceTypes\":[2],\"dateRange\":3}", "/deal?key=k");
    assert_int_equal(ok_answer(&r, "/deal"), 5);
    yajl_val deals = jget(r.json, "deals");
    same_shape(real_deal, jidx(jget(deals, "dr"), 0), "deal");
    same_shape(jget(real, "deals"), deals, "deals");
    assert_non_null(jget(r.json, "dealsCached"));
    resp_free(&r);
    yajl_tree_free(real);
    sim_stop(&s);
}

/* ---------- /seller, /topseller ---------- */

static void test_seller_ids_as_asked(void **state)
{
    (void)state;
    struct sim s = sim_start("--products", "1000", "--start-tokens", "100000");
    char a[1][11];
    some_asins(&s, a, 1);
    struct resp p = call(&s, NULL, "/product?key=k&domain=1&asin=%s&offers=20", a[0]);
    yajl_val offers = jget(jidx(jget(p.json, "products"), 0), "offers");
    char pool[14] = "";
    for (size_t i = 0; i < jlen(offers) && !pool[0]; i++)
        if (strcmp(jstr(jidx(offers, i), "sellerId"), AMAZON) != 0)
            snprintf(pool, sizeof(pool), "%s", jstr(jidx(offers, i), "sellerId"));
    resp_free(&p);
    assert_true(pool[0] != '\0');
    /* Amazon, a pool seller, a real-looking id, a reserved unknown, a malformed one, a repeat */
    struct resp r = call(&s, NULL,
                         "/seller?key=k&domain=1&seller=%s,%s,A2L77EE7U53NWQ,"
                         "AUNKNOWNZZZZ,xyz,%s",
                         AMAZON, pool, AMAZON);
    assert_int_equal(ok_answer(&r, "/seller"), 3);
    yajl_val sellers = jget(r.json, "sellers");
    assert_int_equal(jlen(sellers), 3);
    const char *want[3] = {AMAZON, pool, "A2L77EE7U53NWQ"};
    for (int i = 0; i < 3; i++) {
        yajl_val one = jget(sellers, want[i]);
        if (one == NULL)
            fail_msg("no seller keyed %s", want[i]);
        assert_string_equal(jstr(one, "sellerId"), want[i]);
        has_doc_fields(one, "Seller");
        assert_int_equal(jlen(jget(one, "csv")), 2);
    }
    assert_string_equal(jstr(jget(sellers, AMAZON), "sellerName"), "Amazon.com");
    resp_free(&r);
    /* the storefront: the product the seller offers on is in it; 10 tokens; one seller only */
    struct resp f = call(&s, NULL, "/seller?key=k&domain=1&seller=%s&storefront=1", pool);
    assert_int_equal(ok_answer(&f, "storefront"), 10);
    yajl_val one = jget(jget(f.json, "sellers"), pool);
    has_doc_fields(one, "Seller with storefront=1");
    yajl_val list = jget(one, "asinList");
    int found = 0;
    for (size_t i = 0; i < jlen(list); i++)
        found |= strcmp(astr(list, i), a[0]) == 0;
    assert_true(found);
    assert_int_equal(jlen(jget(one, "asinListLastSeen")), jlen(list));
    resp_free(&f);
    struct resp syn = call(&s, NULL, "/seller?key=k&domain=1&seller=A2L77EE7U53NWQ&storefront=1");
    assert_int_equal(ok_answer(&syn, "synthetic storefront"), 1); /* no data: no extra 9 */
    resp_free(&syn);
    expect_400(&s, "/seller?key=k&domain=1&seller=A2L77EE7U53NWQ,ATVPDKIKX0DER&storefront=1");
    expect_400(&s, "/seller?key=k&domain=1");
    /* /topseller: the most rated first, each a seller /seller knows */
    struct resp t = call(&s, NULL, "/topseller?key=k&domain=1");
    assert_int_equal(ok_answer(&t, "/topseller"), 50);
    yajl_val ids = jget(t.json, "sellerIdList");
    assert_true(jlen(ids) >= 100);
    struct resp two =
        call(&s, NULL, "/seller?key=k&domain=1&seller=%s,%s", astr(ids, 0), astr(ids, 99));
    yajl_val sl = jget(two.json, "sellers");
    assert_true(jint(jget(sl, astr(ids, 0)), "currentRatingCount") >=
                jint(jget(sl, astr(ids, 99)), "currentRatingCount"));
    resp_free(&two);
    resp_free(&t);
    sim_stop(&s);
}

/* ---------- /query ---------- */

struct qcase {
    const char *selection;
    const char *check; /* what every returned product must satisfy (see qcheck) */
};

/* Whether product P (stats=365, offers=20) satisfies CHECK. */
static int qcheck(yajl_val p, const char *check, const char *pool_seller)
{
    yajl_val st = jget(p, "stats"), cur = jget(st, "current");
    if (strcmp(check, "books") == 0)
        return jint(p, "rootCategory") == 283155;
    if (strcmp(check, "not-books") == 0)
        return jint(p, "rootCategory") != 283155;
    if (strcmp(check, "used<=2000") == 0)
        return YAJL_GET_INTEGER(jidx(cur, 2)) > 0 && YAJL_GET_INTEGER(jidx(cur, 2)) <= 2000;
    if (strcmp(check, "drops30>=3") == 0)
        return jint(st, "salesRankDrops30") >= 3;
    if (strcmp(check, "title-novel") == 0)
        return strcasestr(jstr(p, "title"), "novel") != NULL;
    if (strcmp(check, "author-ada") == 0)
        return YAJL_IS_STRING(jget(p, "author")) && strncmp(jstr(p, "author"), "Ada ", 4) == 0;
    if (strcmp(check, "hardcover") == 0)
        return YAJL_IS_STRING(jget(p, "binding")) && strcmp(jstr(p, "binding"), "Hardcover") == 0;
    if (strcmp(check, "brand") == 0)
        return strcmp(jstr(p, "brand"), "SimBrand 7") == 0;
    if (strcmp(check, "sub") == 0) {
        yajl_val tree = jget(p, "categoryTree");
        return jint(jidx(tree, 1), "catId") == 2831553;
    }
    if (strcmp(check, "hazmat") == 0)
        return !YAJL_IS_NULL(jget(p, "hazardousMaterials"));
    if (strcmp(check, "heavy") == 0)
        return jint(p, "packageWeight") >= 2000;
    if (strcmp(check, "seller") == 0) {
        yajl_val offers = jget(p, "offers"), order = jget(p, "liveOffersOrder");
        for (size_t i = 0; i < jlen(order); i++) {
            yajl_val o = jidx(offers, (size_t)YAJL_GET_INTEGER(jidx(order, i)));
            if (strcmp(jstr(o, "sellerId"), pool_seller) == 0)
                return 1;
        }
        return 0;
    }
    if (strcmp(check, "dp90") == 0) {
        long long c = YAJL_GET_INTEGER(jidx(cur, 2)),
                  a = YAJL_GET_INTEGER(jidx(jget(st, "avg90"), 2));
        return c > 0 && a > 0 && (a - c) * 100 / a >= 30;
    }
    fail_msg("unknown check %s", check);
    return 0;
}

static void test_query_filters(void **state)
{
    (void)state;
    char clock[32];
    long long now_ms = (long long)time(NULL) * 1000;
    snprintf(clock, sizeof(clock), "%lld", now_ms - now_ms % 60000);
    struct sim s =
        sim_start("--products", "3000", "--start-tokens", "1000000", "--clock-ms", clock);
    /* a seller of the pool, from some product's offers */
    char a[1][11], pool[14] = "";
    some_asins(&s, a, 1);
    struct resp p0 = call(&s, NULL, "/product?key=k&domain=1&asin=%s&offers=20", a[0]);
    yajl_val offers = jget(jidx(jget(p0.json, "products"), 0), "offers");
    for (size_t i = 0; i < jlen(offers) && !pool[0]; i++)
        if (strcmp(jstr(jidx(offers, i), "sellerId"), AMAZON) != 0)
            snprintf(pool, sizeof(pool), "%s", jstr(jidx(offers, i), "sellerId"));
    resp_free(&p0);
    char seller_sel[128];
    snprintf(seller_sel, sizeof(seller_sel), "{\"sellerIds\":[\"%s\"]}", pool);
    const struct qcase Q[] = {
        {"{\"rootCategory\":[283155]}", "books"},
        {"{\"categories_exclude\":[283155]}", "not-books"},
        {"{\"categories_include\":[2831553]}", "sub"},
        {"{\"current_USED_gte\":1,\"current_USED_lte\":2000}", "used<=2000"},
        {"{\"salesRankDrops30_gte\":3}", "drops30>=3"},
        {"{\"title\":\"novel\"}", "title-novel"},
        {"{\"author\":[\"Ada Archer\",\"Ada Blake\",\"Ada Carter\",\"Ada Dalton\",\"Ada Ellis\","
         "\"Ada Foster\",\"Ada Grant\",\"Ada Hayes\"]}",
         "author-ada"},
        {"{\"binding\":\"Hardcover\"}", "hardcover"},
        {"{\"brand\":[\"simbrand 7\"]}", "brand"},
        {"{\"isHazMat\":true}", "hazmat"},
        {"{\"packageWeight_gte\":2000}", "heavy"},
        {"{\"deltaPercent90_USED_gte\":30}", "dp90"},
        {seller_sel, "seller"},
    };
    for (size_t i = 0; i < sizeof(Q) / sizeof(Q[0]); i++) {
        struct resp r = call(&s, Q[i].selection, "/query?key=k&domain=1");
        long long cost = ok_answer(&r, Q[i].selection);
        yajl_val list = jget(r.json, "asinList");
        long long total = jint(r.json, "totalResults");
        if (total == 0 || total >= 3000)
            fail_msg("%s: %lld of 3000 products: the filter did not narrow", Q[i].selection, total);
        assert_null(jget(r.json, "simIgnoredFilters"));
        assert_int_equal(cost, 10 + ((long long)jlen(list) + 99) / 100);
        for (size_t k = 0; k < jlen(list) && k < 8; k++) {
            struct resp pr = call(&s, NULL, "/product?key=k&domain=1&asin=%s&stats=90&offers=100",
                                  astr(list, k));
            yajl_val p = jidx(jget(pr.json, "products"), 0);
            if (!qcheck(p, Q[i].check, pool))
                fail_msg("%s returned %s, which fails %s", Q[i].selection, jstr(p, "asin"),
                         Q[i].check);
            resp_free(&pr);
        }
        resp_free(&r);
    }
    /* sort, paging, stats=1, and the filters it does not apply named */
    struct resp srt = call(&s,
                           "{\"rootCategory\":[283155],\"sort\":[[\"current_SALES\",\"desc\"]],"
                           "\"perPage\":50,\"page\":1,\"isLowest_USED\":true}",
                           "/query?key=k&domain=1&stats=1");
    assert_int_equal(ok_answer(&srt, "sort"), 10 + 1 + 30);
    assert_non_null(jget(srt.json, "searchInsights"));
    yajl_val ign = jget(srt.json, "simIgnoredFilters");
    assert_int_equal(jlen(ign), 1);
    assert_string_equal(astr(ign, 0), "isLowest_USED");
    yajl_val list = jget(srt.json, "asinList");
    assert_int_equal(jlen(list), 50);
    long long prev = -1;
    for (size_t k = 0; k < 5; k++) {
        struct resp pr = call(&s, NULL, "/product?key=k&domain=1&asin=%s&stats=1", astr(list, k));
        long long rank = YAJL_GET_INTEGER(
            jidx(jget(jget(jidx(jget(pr.json, "products"), 0), "stats"), "current"), 3));
        assert_true(prev < 0 || rank <= prev);
        prev = rank;
        resp_free(&pr);
    }
    resp_free(&srt);
    expect_400(&s, "/query?key=k&domain=1&selection=%7B%22page%22%3A-1%7D");
    expect_400(&s, "/query?key=k&domain=1&selection=notjson");
    sim_stop(&s);
}

/* ---------- /category, /search ---------- */

static void test_category_and_search(void **state)
{
    (void)state;
    struct sim s = sim_start("--products", "3000", "--start-tokens", "100000");
    /* every root, media roots with Keepa's names */
    struct resp roots = call(&s, NULL, "/category?key=k&domain=1&category=0");
    assert_int_equal(ok_answer(&roots, "roots"), 1);
    yajl_val cats = jget(roots.json, "categories");
    assert_int_equal(jlen(cats), 20);
    static const char *const MEDIA[][2] = {{"283155", "Books"},
                                           {"5174", "CDs & Vinyl"},
                                           {"2625373011", "Movies & TV"},
                                           {"468642", "Video Games"},
                                           {"229534", "Software"}};
    long long products = 0;
    for (int i = 0; i < 5; i++) {
        yajl_val c = jget(cats, MEDIA[i][0]);
        assert_non_null(c);
        assert_string_equal(jstr(c, "name"), MEDIA[i][1]);
    }
    for (size_t i = 0; i < jlen(cats); i++) {
        yajl_val c = cats->u.object.values[i];
        has_doc_fields(c, "Category");
        assert_int_equal(jint(c, "parent"), 0);
        assert_int_equal(jlen(jget(c, "children")), 7);
        products += jint(c, "productCount");
    }
    assert_int_equal(products, 3000);
    resp_free(&roots);
    /* a product's categoryTree is the tree /category serves, names included */
    char a[1][11];
    some_asins(&s, a, 1);
    struct resp p = call(&s, NULL, "/product?key=k&domain=1&asin=%s", a[0]);
    yajl_val prod = jidx(jget(p.json, "products"), 0), tree = jget(prod, "categoryTree");
    assert_int_equal(jlen(tree), 3);
    long long leaf = jint(jidx(tree, 2), "catId");
    assert_int_equal(YAJL_GET_INTEGER(jidx(jget(prod, "categories"), 0)), leaf);
    struct resp lc = call(&s, NULL, "/category?key=k&domain=1&category=%lld&parents=1", leaf);
    char id[32];
    snprintf(id, sizeof(id), "%lld", leaf);
    yajl_val lcat = jget(jget(lc.json, "categories"), id);
    assert_string_equal(jstr(lcat, "name"), jstr(jidx(tree, 2), "name"));
    assert_int_equal(jint(lcat, "parent"), jint(jidx(tree, 1), "catId"));
    yajl_val parents = jget(lc.json, "categoryParents");
    assert_int_equal(jlen(parents), 2);
    snprintf(id, sizeof(id), "%lld", jint(jidx(tree, 1), "catId"));
    assert_string_equal(jstr(jget(parents, id), "name"), jstr(jidx(tree, 1), "name"));
    resp_free(&lc);
    resp_free(&p);
    expect_400(&s, "/category?key=k&domain=1&category=1,2,3,4,5,6,7,8,9,10,11");
    expect_400(&s, "/category?key=k&domain=1");
    struct resp unk = call(&s, NULL, "/category?key=k&domain=1&category=42");
    assert_int_equal(jlen(jget(unk.json, "categories")), 0);
    resp_free(&unk);
    /* /search type=category: every keyword in the name */
    struct resp sc = call(&s, NULL, "/search?key=k&domain=1&type=category&term=fiction%%20shelf");
    assert_int_equal(ok_answer(&sc, "category search"), 1);
    yajl_val found = jget(sc.json, "categories");
    assert_true(jlen(found) > 0);
    for (size_t i = 0; i < jlen(found); i++) {
        const char *name = jstr(found->u.object.values[i], "name");
        assert_true(strcasestr(name, "fiction") && strcasestr(name, "shelf"));
    }
    resp_free(&sc);
    expect_400(&s, "/search?key=k&domain=1&type=category&term=ab");
    /* /search type=product: pages of 10, the first 40 without a page, 10 tokens a page */
    struct resp all = call(&s, NULL, "/search?key=k&domain=1&type=product&term=novel&asins-only=1");
    long long cost = ok_answer(&all, "product search");
    size_t n = jlen(jget(all.json, "asinList"));
    assert_int_equal(n, 40);
    assert_int_equal(cost, 40);
    struct resp pg =
        call(&s, NULL, "/search?key=k&domain=1&type=product&term=novel&page=1&stats=30");
    assert_int_equal(ok_answer(&pg, "page 1"), 10);
    yajl_val ps = jget(pg.json, "products");
    assert_int_equal(jlen(ps), 10);
    for (size_t i = 0; i < 10; i++) {
        yajl_val x = jidx(ps, i);
        assert_non_null(strcasestr(jstr(x, "title"), "novel"));
        assert_string_equal(jstr(x, "asin"), astr(jget(all.json, "asinList"), 10 + i));
        assert_true(YAJL_IS_OBJECT(jget(x, "stats")));
    }
    resp_free(&pg);
    resp_free(&all);
    struct resp none = call(&s, NULL, "/search?key=k&domain=1&type=product&term=zzzqqq");
    assert_int_equal(ok_answer(&none, "no match"), 0);
    resp_free(&none);
    expect_400(&s, "/search?key=k&domain=1&type=product&term=novel&page=10");
    expect_400(&s, "/search?key=k&domain=1&type=shoes&term=novel");
    sim_stop(&s);
}

/* ---------- /bestsellers ---------- */

static void test_bestsellers(void **state)
{
    (void)state;
    char clock[32];
    long long now_ms = (long long)time(NULL) * 1000;
    snprintf(clock, sizeof(clock), "%lld", now_ms - now_ms % 60000); /* one minute for all */
    struct sim s = sim_start("--products", "3000", "--start-tokens", "100000", "--clock-ms", clock);
    static const char *const CATS[] = {"283155", "2831552", "283155201", "Book"};
    for (size_t c = 0; c < 4; c++) {
        struct resp r = call(&s, NULL, "/bestsellers?key=k&domain=1&category=%s", CATS[c]);
        assert_int_equal(ok_answer(&r, CATS[c]), 50);
        yajl_val bl = jget(r.json, "bestSellersList");
        has_doc_fields(bl, "BestSellers");
        yajl_val list = jget(bl, "asinList");
        assert_true(jlen(list) > 0);
        assert_true(c == 0 || c == 3 || jlen(list) <= 100);
        long long prev = 0;
        for (size_t i = 0; i < jlen(list) && i < 6; i++) {
            struct resp p =
                call(&s, NULL, "/product?key=k&domain=1&asin=%s&stats=1", astr(list, i));
            yajl_val prod = jidx(jget(p.json, "products"), 0);
            long long rank = YAJL_GET_INTEGER(jidx(jget(jget(prod, "stats"), "current"), 3));
            assert_true(rank >= prev); /* best (lowest rank) first */
            prev = rank;
            if (c == 1)
                assert_int_equal(jint(jidx(jget(prod, "categoryTree"), 1), "catId"), 2831552);
            resp_free(&p);
        }
        resp_free(&r);
    }
    static const int RANGES[] = {30, 90, 180};
    for (int k = 0; k < 3; k++) {
        struct resp r =
            call(&s, NULL, "/bestsellers?key=k&domain=1&category=283155&range=%d", RANGES[k]);
        assert_int_equal(ok_answer(&r, "range"), 50);
        resp_free(&r);
    }
    struct resp unk = call(&s, NULL, "/bestsellers?key=k&domain=1&category=42");
    assert_int_equal(ok_answer(&unk, "unknown category"), 0);
    assert_null(jget(unk.json, "bestSellersList"));
    resp_free(&unk);
    expect_400(&s, "/bestsellers?key=k&domain=1&category=283155&range=200");
    expect_400(&s, "/bestsellers?key=k&domain=1");
    sim_stop(&s);
}

/* ---------- /lightningdeal ---------- */

static void test_lightning_deals_move_with_the_clock(void **state)
{
    (void)state;
    /* a Keepa minute lasts 20 ms: a day of deals in under 30 s */
    struct sim s = sim_start("--products", "20000", "--minute-ms", "20", "--economy", "rich",
                             "--start-tokens", "1000000", "--refill-rate", "30000");
    /* the list is made at a minute between BEFORE and AFTER (the clock runs fast) */
    struct resp c0 = call(&s, NULL, "/_sim/clock");
    long long before = jint(c0.json, "keepa_minute");
    resp_free(&c0);
    struct resp l = call(&s, NULL, "/lightningdeal?key=k&domain=1");
    assert_int_equal(ok_answer(&l, "list"), 500);
    yajl_val deals = jget(l.json, "lightningDeals");
    assert_true(jlen(deals) > 20);
    struct resp c1 = call(&s, NULL, "/_sim/clock");
    long long after = jint(c1.json, "keepa_minute");
    resp_free(&c1);
    char next[11] = "";
    long long next_start = 0;
    int running = 0, upcoming = 0;
    for (size_t i = 0; i < jlen(deals); i++) {
        yajl_val d = jidx(deals, i);
        has_doc_fields(d, "LightningDeal");
        const char *state_s = jstr(d, "dealState");
        long long start = jint(d, "startTime"), end = jint(d, "endTime");
        assert_true(end > before && start < end);
        if (strcmp(state_s, "UPCOMING") == 0) {
            upcoming++;
            assert_true(start > before && start <= after + 1440);
            assert_int_equal(jint(d, "dealPrice"), -1);
            if (!next[0] || start < next_start) {
                snprintf(next, sizeof(next), "%s", jstr(d, "asin"));
                next_start = start;
            }
        } else {
            running++;
            assert_true(strcmp(state_s, "AVAILABLE") == 0 || strcmp(state_s, "SOLDOUT") == 0);
            assert_true(jint(d, "dealPrice") > 0 && jint(d, "dealPrice") < jint(d, "currentPrice"));
        }
    }
    assert_true(running > 0 && upcoming > 0);
    resp_free(&l);
    /* the product shows it; then, as the catalog clock passes its start, it runs */
    struct resp p = call(&s, NULL, "/product?key=k&domain=1&asin=%s&stats=1&history=0", next);
    yajl_val info = jget(jget(jidx(jget(p.json, "products"), 0), "stats"), "lightningDealInfo");
    assert_int_equal(jlen(info), 2);
    assert_int_equal(YAJL_GET_INTEGER(jidx(info, 0)), next_start);
    resp_free(&p);
    int ran = 0;
    for (int spin = 0; spin < 400 && !ran; spin++) {
        struct resp one = call(&s, NULL, "/lightningdeal?key=k&domain=1&asin=%s", next);
        long long cost = ok_answer(&one, "by asin");
        yajl_val d = jidx(jget(one.json, "lightningDeals"), 0);
        assert_int_equal(cost, d != NULL ? 1 : 0);
        if (d != NULL && strcmp(jstr(d, "dealState"), "UPCOMING") != 0) {
            assert_true(jint(d, "dealPrice") > 0);
            ran = 1;
        }
        resp_free(&one);
        if (!ran)
            nap_ms(50);
    }
    assert_true(ran);
    sim_stop(&s);
}

/* ---------- /tracking ---------- */

static void test_tracking(void **state)
{
    (void)state;
    struct sim s = sim_start("--products", "2000", "--start-tokens", "100000");
    char a[2][11];
    some_asins(&s, a, 2);
    char body[1024];
    snprintf(body, sizeof(body),
             "[{\"asin\":\"%s\",\"ttl\":0,\"mainDomainId\":1,\"updateInterval\":2,"
             "\"metaData\":\"mine\",\"thresholdValues\":[{\"thresholdValue\":1999,\"domain\":1,"
             "\"csvType\":2,\"isDrop\":true}],\"notificationType\":[false,false,false,false,false,"
             "true,false]},{\"asin\":\"%s\"}]",
             a[0], a[1]);
    struct resp add = call(&s, body, "/tracking?key=k1&type=add");
    assert_int_equal(ok_answer(&add, "add"), 2);
    yajl_val tr = jget(add.json, "trackings");
    assert_int_equal(jlen(tr), 2);
    has_doc_fields(jidx(tr, 0), "Tracking");
    has_doc_fields(jidx(jget(jidx(tr, 0), "thresholdValues"), 0), "TrackingThresholdValue");
    long long created = jint(jidx(tr, 0), "createDate");
    resp_free(&add);
    /* get, list, list asins-only; another key sees nothing */
    struct resp g = call(&s, NULL, "/tracking?key=k1&type=get&asin=%s", a[0]);
    assert_int_equal(ok_answer(&g, "get"), 0);
    assert_string_equal(jstr(jidx(jget(g.json, "trackings"), 0), "metaData"), "mine");
    resp_free(&g);
    struct resp ls = call(&s, NULL, "/tracking?key=k1&type=list&asins-only=1");
    assert_int_equal(jlen(jget(ls.json, "asinList")), 2);
    resp_free(&ls);
    struct resp other = call(&s, NULL, "/tracking?key=k2&type=list");
    assert_int_equal(jlen(jget(other.json, "trackings")), 0);
    resp_free(&other);
    /* adding again updates and keeps createDate (GET with tracking=) */
    char q[512];
    snprintf(q, sizeof(q),
             "/tracking?key=k1&type=add&tracking=%%7B%%22asin%%22%%3A%%22%s%%22%%2C"
             "%%22metaData%%22%%3A%%22again%%22%%7D",
             a[0]);
    struct resp again = call(&s, NULL, "%s", q);
    assert_int_equal(ok_answer(&again, "re-add"), 1);
    assert_int_equal(jint(jidx(jget(again.json, "trackings"), 0), "createDate"), created);
    resp_free(&again);
    /* a notification through the control endpoint, read once, then again with revise=1 */
    struct resp none = call(&s, NULL, "/tracking?key=k1&type=notification&since=0");
    assert_int_equal(jlen(jget(none.json, "notifications")), 0);
    resp_free(&none);
    struct resp n = call(&s, "", "/_sim/notify?asin=%s&cause=1", a[0]);
    assert_int_equal(n.status, 200);
    assert_int_equal(jint(n.json, "notifications"), 1);
    resp_free(&n);
    struct resp got = call(&s, NULL, "/tracking?key=k1&type=notification&since=0");
    yajl_val notes = jget(got.json, "notifications");
    assert_int_equal(jlen(notes), 1);
    has_doc_fields(jidx(notes, 0), "Notification");
    assert_string_equal(jstr(jidx(notes, 0), "asin"), a[0]);
    assert_int_equal(jint(jidx(notes, 0), "csvType"), 1); /* the update dropped its thresholds */
    assert_int_equal(jlen(jget(jidx(notes, 0), "currentPrices")), 36);
    resp_free(&got);
    struct resp read = call(&s, NULL, "/tracking?key=k1&type=notification&since=0");
    assert_int_equal(jlen(jget(read.json, "notifications")), 0);
    resp_free(&read);
    struct resp rev = call(&s, NULL, "/tracking?key=k1&type=notification&since=0&revise=1");
    assert_int_equal(jlen(jget(rev.json, "notifications")), 1);
    resp_free(&rev);
    struct resp g2 = call(&s, NULL, "/tracking?key=k1&type=get&asin=%s", a[0]);
    assert_int_equal(jlen(jget(jidx(jget(g2.json, "trackings"), 0), "notificationCSV")), 5);
    resp_free(&g2);
    /* webhook, remove, removeAll */
    struct resp wh = call(&s, NULL, "/tracking?key=k1&type=webhook&url=http%%3A%%2F%%2Fexample");
    assert_int_equal(ok_answer(&wh, "webhook"), 0);
    resp_free(&wh);
    struct resp rm = call(&s, NULL, "/tracking?key=k1&type=remove&asin=%s", a[0]);
    assert_int_equal(ok_answer(&rm, "remove"), 0);
    resp_free(&rm);
    struct resp l1 = call(&s, NULL, "/tracking?key=k1&type=list");
    assert_int_equal(jlen(jget(l1.json, "trackings")), 1);
    resp_free(&l1);
    struct resp ra = call(&s, NULL, "/tracking?key=k1&type=removeAll");
    assert_int_equal(ok_answer(&ra, "removeAll"), 0);
    resp_free(&ra);
    struct resp l0 = call(&s, NULL, "/tracking?key=k1&type=list");
    assert_int_equal(jlen(jget(l0.json, "trackings")), 0);
    resp_free(&l0);
    expect_400(&s, "/tracking?key=k1&type=teleport");
    expect_400(&s, "/tracking?key=k1");
    expect_400(&s, "/tracking?key=k1&type=add&tracking=%7B%22asin%22%3A%22bad%22%7D");
    sim_stop(&s);
}

/* Every endpoint's tokensConsumed is the balance change it caused, under load of them all. */
static void test_costs_are_balance_changes(void **state)
{
    (void)state;
    struct sim s = sim_start("--products", "2000", "--start-tokens", "100000");
    static const char *const CALLS[] = {
        "/product?key=k&domain=1&asin=B0D8W1YVBX&offers=20",
        "/seller?key=k&domain=1&seller=ATVPDKIKX0DER",
        "/query?key=k&domain=1&selection=%7B%22rootCategory%22%3A%5B283155%5D%7D",
        "/search?key=k&domain=1&type=product&term=novel",
        "/search?key=k&domain=1&type=category&term=books",
        "/category?key=k&domain=1&category=0",
        "/bestsellers?key=k&domain=1&category=283155",
        "/topseller?key=k&domain=1",
        "/lightningdeal?key=k&domain=1",
        "/tracking?key=k&type=list",
        "/deal?key=k&selection=%7B%22priceTypes%22%3A%5B2%5D%7D",
    };
    long long spent = 0, b0 = balance(&s);
    for (size_t i = 0; i < sizeof(CALLS) / sizeof(CALLS[0]); i++) {
        long long before = balance(&s);
        struct resp r = call(&s, NULL, "%s", CALLS[i]);
        long long cost = ok_answer(&r, CALLS[i]);
        assert_int_equal(jint(r.json, "tokensLeft"), before - cost);
        spent += cost;
        resp_free(&r);
    }
    assert_int_equal(balance(&s), b0 - spent);
    /* the ledger counts each endpoint by name */
    struct resp st = call(&s, NULL, "/_sim/stats");
    yajl_val ep = jget(st.json, "endpoints");
    static const char *const NAMES[] = {"search",    "category",      "bestsellers",
                                        "topseller", "lightningdeal", "tracking"};
    for (size_t i = 0; i < sizeof(NAMES) / sizeof(NAMES[0]); i++)
        assert_true(jint(jget(ep, NAMES[i]), "requests") >= 1);
    assert_int_equal(jint(jget(ep, "lightningdeal"), "tokens"), 500);
    resp_free(&st);
    sim_stop(&s);
}

int main(int argc, char **argv)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    kd_test_set_timeout(180);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_readme_endpoint_table),
        cmocka_unit_test(test_product_parameters_and_shape),
        cmocka_unit_test(test_any_wellformed_asin),
        cmocka_unit_test(test_buy_box_histories),
        cmocka_unit_test(test_deal_shape),
        cmocka_unit_test(test_seller_ids_as_asked),
        cmocka_unit_test(test_query_filters),
        cmocka_unit_test(test_category_and_search),
        cmocka_unit_test(test_bestsellers),
        cmocka_unit_test(test_lightning_deals_move_with_the_clock),
        cmocka_unit_test(test_tracking),
        cmocka_unit_test(test_costs_are_balance_changes),
    };
    return KD_RUN_TESTS(tests, argc, argv);
}
