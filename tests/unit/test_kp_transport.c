/*
 * test_kp_transport.c: the client's transport against a tiny scripted HTTP server
 * (libmicrohttpd in this process), for answers kdeals-sim does not give: products for ASINs
 * never asked, 400/402/404/405 with a real (non-zero) envelope, gzip bodies, keep-alive
 * connection reuse, a body over the decoder's limit, and the exact URL the client sends.
 */
#include "kd_test.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <microhttpd.h>
#include <uv.h>
#include <zlib.h>

#include "base/clock.h"
#include "keepa/client.h"

#define KEY "TransportTestKey0123456789"

static atomic_int connections;
static atomic_int gzip_asked;
static char last_url[2048];
static atomic_int requests;

static const char env_ok[] = "\"timestamp\":1778386622667,\"tokensLeft\":50,\"refillIn\":1000,"
                             "\"refillRate\":5,\"tokenFlowReduction\":0.0,\"tokensConsumed\":1,"
                             "\"processingTimeInMs\":2";

static void notify_conn(void *cls, struct MHD_Connection *c, void **socket_context,
                        enum MHD_ConnectionNotificationCode code)
{
    (void)cls;
    (void)c;
    (void)socket_context;
    if (code == MHD_CONNECTION_NOTIFY_STARTED)
        atomic_fetch_add(&connections, 1);
}

static char *gzip_body(const char *body, size_t len, size_t *outlen)
{
    z_stream z;
    memset(&z, 0, sizeof(z));
    deflateInit2(&z, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY);
    size_t cap = deflateBound(&z, (uLong)len);
    char *out = malloc(cap);
    z.next_in = (Bytef *)body;
    z.avail_in = (uInt)len;
    z.next_out = (Bytef *)out;
    z.avail_out = (uInt)cap;
    deflate(&z, Z_FINISH);
    *outlen = cap - z.avail_out;
    deflateEnd(&z);
    return out;
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *c, const char *url,
                               const char *method, const char *version, const char *upload,
                               size_t *upload_size, void **con_cls)
{
    (void)cls;
    (void)method;
    (void)version;
    (void)upload;
    (void)upload_size;
    /* Answer on the second call: a response queued on the first one makes MHD close the
     * connection afterwards ("early response"), which would defeat keep-alive. */
    static int marker;
    if (*con_cls == NULL) {
        *con_cls = &marker;
        return MHD_YES;
    }
    atomic_fetch_add(&requests, 1);
    const char *asin = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "asin");
    const char *ae = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Accept-Encoding");
    bool gz = ae != NULL && strstr(ae, "gzip") != NULL;
    if (gz)
        atomic_fetch_add(&gzip_asked, 1);
    snprintf(last_url, sizeof(last_url), "%s?asin=%s", url, asin ? asin : "");
    char body[4096];
    unsigned status = 200;
    if (asin != NULL && strcmp(asin, "B0UNASKED1") == 0) {
        snprintf(body, sizeof(body),
                 "{%s,\"products\":[{\"asin\":\"B0UNASKED1\"},{\"asin\":\"B0SURPRISE\"}]}", env_ok);
    } else if (asin != NULL && strncmp(asin, "B0STATUS", 8) == 0) {
        status = (unsigned)atoi(asin + 8);
        snprintf(body, sizeof(body),
                 "{%s,\"error\":{\"type\":\"invalidParameter\",\"message\":\"scripted %u\"}}",
                 env_ok, status);
    } else if (asin != NULL && strcmp(asin, "B0BIGBODY1") == 0) {
        /* a valid body far over the client's 4 KiB decode limit */
        static char big[64 * 1024];
        size_t n = (size_t)snprintf(big, sizeof(big), "{%s,\"products\":[{\"csv\":[[", env_ok);
        while (n < sizeof(big) - 64)
            n += (size_t)snprintf(big + n, sizeof(big) - n, "1,");
        n += (size_t)snprintf(big + n, sizeof(big) - n, "1]]}]}");
        struct MHD_Response *r = MHD_create_response_from_buffer(n, big, MHD_RESPMEM_MUST_COPY);
        MHD_queue_response(c, 200, r);
        MHD_destroy_response(r);
        return MHD_YES;
    } else {
        snprintf(body, sizeof(body), "{%s,\"products\":[{\"asin\":\"%s\",\"title\":\"gz\"}]}",
                 env_ok, asin ? asin : "");
    }
    size_t len = strlen(body);
    struct MHD_Response *r;
    if (gz) {
        size_t zl;
        char *z = gzip_body(body, len, &zl);
        r = MHD_create_response_from_buffer(zl, z, MHD_RESPMEM_MUST_FREE);
        MHD_add_response_header(r, "Content-Encoding", "gzip");
    } else {
        r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_COPY);
    }
    MHD_add_response_header(r, "Content-Type", "application/json");
    MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return MHD_YES;
}

static struct MHD_Daemon *server;
static char base[64];

static void server_start(void)
{
    server = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD, 0, NULL, NULL, handler, NULL,
                              MHD_OPTION_NOTIFY_CONNECTION, notify_conn, NULL,
                              MHD_OPTION_LISTENING_ADDRESS_REUSE, 1, MHD_OPTION_END);
    assert_non_null(server);
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(server, MHD_DAEMON_INFO_BIND_PORT);
    assert_non_null(info);
    snprintf(base, sizeof(base), "http://127.0.0.1:%u", (unsigned)info->port);
}

struct run {
    uv_loop_t loop;
    struct kp_client *cl;
    bool done;
    struct kp_result res;
    struct kp_asin_outcome asins[16];
    size_t n_readings;
    struct kp_reading reading;
    size_t n_products;
    char title[KP_TITLE_MAX];
};

static void on_reading(const struct kp_reading *r, void *ud)
{
    struct run *x = ud;
    x->reading = *r;
    x->n_readings++;
}

static int on_product(const struct kp_product *p, void *ud)
{
    struct run *x = ud;
    x->n_products++;
    snprintf(x->title, sizeof(x->title), "%s", p->title);
    return 0;
}

static void on_done(const struct kp_result *res, void *ud)
{
    struct run *x = ud;
    x->done = true;
    x->res = *res;
    if (res->n_asins > 0)
        memcpy(x->asins, res->asins, res->n_asins * sizeof(x->asins[0]));
    x->res.asins = x->asins;
    x->res.envelope = NULL;
}

static struct run *run_new(size_t max_body)
{
    struct run *x = calloc(1, sizeof(*x));
    uv_loop_init(&x->loop);
    struct kp_client_opts o = {.base_url = base,
                               .api_key = KEY,
                               .max_in_flight = 1,
                               .timeout_ms = 5000,
                               .max_tries = 3,
                               .backoff_base_ms = 10,
                               .decode = {.max_body_bytes = max_body},
                               .on_reading = on_reading,
                               .reading_ud = x};
    char err[128];
    assert_int_equal(kp_client_new(&x->loop, &o, &x->cl, err, sizeof(err)), 0);
    return x;
}

static void fetch(struct run *x, const char *asin)
{
    const char *asins[] = {asin};
    struct kp_product_params p = {.domain = 1, .asins = asins, .n_asins = 1};
    struct kp_call c;
    assert_int_equal(kp_call_product(&c, &p), 0);
    struct kp_request_cbs cbs = {.on_product = on_product, .on_done = on_done, .ud = x};
    x->done = false;
    assert_int_equal(kp_client_submit(x->cl, &c, &cbs, NULL), 0);
    int64_t deadline = kd_mono_ns() + 20 * KD_NS_PER_SEC;
    while (!x->done) {
        assert_true(kd_mono_ns() < deadline);
        uv_run(&x->loop, UV_RUN_ONCE);
    }
}

static void run_free(struct run *x)
{
    kp_client_close(x->cl, NULL, NULL);
    uv_run(&x->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&x->loop), 0);
    free(x);
}

static void test_unrequested_gzip_keepalive(void **state)
{
    (void)state;
    server_start();
    struct run *x = run_new(0);
    fetch(x, "B0UNASKED1");
    assert_int_equal(x->res.code, KP_OK);
    assert_int_equal(x->n_products, 2);
    assert_int_equal(x->res.n_asins, 2);
    assert_string_equal(x->asins[0].asin, "B0UNASKED1");
    assert_int_equal(x->asins[0].status, KP_ASIN_OK);
    assert_string_equal(x->asins[1].asin, "B0SURPRISE");
    assert_int_equal(x->asins[1].status, KP_ASIN_UNREQUESTED);
    /* The client asked for gzip and decoded it (CURLOPT_ACCEPT_ENCODING ""). */
    assert_true(atomic_load(&gzip_asked) >= 1);
    for (int i = 0; i < 4; i++) {
        fetch(x, "B0000000GZ");
        assert_int_equal(x->res.code, KP_OK);
        assert_string_equal(x->title, "gz");
    }
    /* Five sequential requests, one connection: keep-alive. */
    assert_int_equal(atomic_load(&connections), 1);
    assert_true(x->reading.tokens_left == 50);
    assert_string_equal(last_url, "/product?asin=B0000000GZ");
    run_free(x);
    MHD_stop_daemon(server);
}

static void test_4xx_with_envelope(void **state)
{
    (void)state;
    server_start();
    struct run *x = run_new(0);
    static const struct {
        const char *asin;
        int http;
        enum kp_result_code code;
    } cases[] = {
        {"B0STATUS400", 400, KP_PERMANENT}, {"B0STATUS404", 404, KP_PERMANENT},
        {"B0STATUS405", 405, KP_PERMANENT}, {"B0STATUS402", 402, KP_KEY_UNUSABLE},
        {"B0STATUS503", 503, KP_FAILED},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t before = x->n_readings;
        int reqs = atomic_load(&requests);
        fetch(x, cases[i].asin);
        assert_int_equal(x->res.code, cases[i].code);
        assert_int_equal(x->res.http_status, cases[i].http);
        /* A non-zero envelope on an error is a real bucket state: it is reported. */
        assert_true(x->n_readings > before);
        assert_int_equal(x->reading.http_status, cases[i].http);
        assert_true(x->reading.tokens_left == 50);
        assert_int_equal(x->asins[0].status, KP_ASIN_REJECTED);
        int tries = cases[i].code == KP_FAILED ? 3 : 1;
        assert_int_equal(x->res.tries, (unsigned)tries);
        assert_int_equal(atomic_load(&requests) - reqs, tries);
        if (cases[i].http != 503)
            assert_non_null(strstr(x->res.error, "scripted"));
    }
    run_free(x);
    MHD_stop_daemon(server);
}

static void test_body_over_limit_not_retried(void **state)
{
    (void)state;
    server_start();
    struct run *x = run_new(4096);
    int reqs = atomic_load(&requests);
    fetch(x, "B0BIGBODY1");
    assert_int_equal(x->res.code, KP_FAILED);
    assert_int_equal(x->res.tries, 1); /* a deterministic refusal is not retried */
    assert_int_equal(atomic_load(&requests) - reqs, 1);
    assert_true(x->res.maybe_charged);
    assert_non_null(strstr(x->res.error, "limit"));
    assert_int_equal(x->n_readings, 1); /* the envelope came before the limit */
    run_free(x);
    MHD_stop_daemon(server);
}

int main(int argc, char **argv)
{
    kp_global_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unrequested_gzip_keepalive),
        cmocka_unit_test(test_4xx_with_envelope),
        cmocka_unit_test(test_body_over_limit_not_retried),
    };
    return KD_RUN_TESTS(tests, argc, argv);
}
