/*
 * test_kp_client.c: the Keepa client end to end against kdeals-sim (sim/README.md).
 *
 * Each test starts its own simulator (fresh port, its own fault set), drives the real client
 * on a libuv loop and asserts what the pipeline relies on: the classification of every fault
 * (5xx, resets, timeouts, 429 storms, truncated and malformed bodies, slow offers answers,
 * bad and expired keys), that token readings reach on_reading (and that a zeroed bad-key
 * envelope does not), per-ASIN outcomes for partial answers, the in-flight cap, pausing,
 * cancellation on close, and that the API key never appears in anything printed.
 * Skips when build/kdeals-sim is absent.
 */
#include "kd_test.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <curl/curl.h>
#include <uv.h>

#include "base/clock.h"
#include "base/log.h"
#include "keepa/client.h"

#define KEY     "KpTestDistinctKey7Q3Z9W1X5V8N2M4B6C0L"
#define KEY2    "KpSecondKeyZ9Y8X7W6V5U4T3S2R1"
#define EXPIRED "KpExpiredKey0000111122223333"
#define SIM     KD_BUILD_DIR "/kdeals-sim"

static pid_t sim_pid;
static char sim_base[64];

static void sim_stop(void)
{
    if (sim_pid > 0) {
        kill(sim_pid, SIGTERM);
        waitpid(sim_pid, NULL, 0);
        sim_pid = 0;
    }
}

/* Starts kdeals-sim with FAULTS (may be NULL) and waits for its port file. */
static void sim_start(const char *faults)
{
    if (access(SIM, X_OK) != 0)
        fail_msg("%s is not built", SIM);
    char port_file[4200], log_file[4200];
    snprintf(port_file, sizeof(port_file), "%s/sim.port", kd_test_tmpdir());
    snprintf(log_file, sizeof(log_file), "%s/sim.log", kd_test_tmpdir());
    unlink(port_file);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGTERM); /* never outlive a crashed or killed test */
        int fd = open(log_file, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        const char *argv[32];
        int n = 0;
        argv[n++] = SIM;
        argv[n++] = "--port-file";
        argv[n++] = port_file;
        argv[n++] = "--keys";
        argv[n++] = KEY "," KEY2;
        argv[n++] = "--expired-keys";
        argv[n++] = EXPIRED;
        argv[n++] = "--seed";
        argv[n++] = "7";
        argv[n++] = "--products";
        argv[n++] = "300";
        argv[n++] = "--refill-rate";
        argv[n++] = "2000";
        argv[n++] = "--start-tokens";
        argv[n++] = "100000";
        if (faults != NULL) {
            argv[n++] = "--faults";
            argv[n++] = faults;
        }
        argv[n] = NULL;
        execv(SIM, (char *const *)argv);
        _exit(127);
    }
    sim_pid = pid;
    atexit(sim_stop);
    int64_t deadline = kd_mono_ns() + 20 * KD_NS_PER_SEC;
    int port = 0;
    while (kd_mono_ns() < deadline) {
        FILE *f = fopen(port_file, "r");
        if (f != NULL) {
            if (fscanf(f, "%d", &port) != 1)
                port = 0;
            fclose(f);
            if (port > 0)
                break;
        }
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            sim_pid = 0;
            fail_msg("kdeals-sim exited early (see %s)", log_file);
        }
        usleep(10 * 1000); /* polling the port file with a deadline */
    }
    assert_true(port > 0);
    snprintf(sim_base, sizeof(sim_base), "http://127.0.0.1:%d", port);
}

/* ---- a tiny synchronous helper for /_sim control endpoints ---- */

static size_t sink_write(char *p, size_t s, size_t n, void *ud)
{
    (void)p;
    (void)ud;
    return s * n;
}

static void sim_control(const char *path_and_query)
{
    char url[512];
    snprintf(url, sizeof(url), "%s%s", sim_base, path_and_query);
    CURL *e = curl_easy_init();
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_POST, 1L);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, "");
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, sink_write);
    assert_int_equal(curl_easy_perform(e), CURLE_OK);
    long code = 0;
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code);
    curl_easy_cleanup(e);
    assert_int_equal(code, 200);
}

static size_t collect(char *p, size_t s, size_t n, void *ud)
{
    char *buf = ud;
    size_t have = strlen(buf), add = s * n;
    if (have + add < 8192) {
        memcpy(buf + have, p, add);
        buf[have + add] = '\0';
    }
    return s * n;
}

/* Reads one integer field of the simulator's ledger (GET /_sim/stats). */
static long long sim_ledger(const char *field)
{
    char url[512], body[8192] = "", pat[128];
    snprintf(url, sizeof(url), "%s/_sim/stats", sim_base);
    CURL *e = curl_easy_init();
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, body);
    assert_int_equal(curl_easy_perform(e), CURLE_OK);
    curl_easy_cleanup(e);
    snprintf(pat, sizeof(pat), "\"%s\":", field);
    const char *at = strstr(body, pat);
    if (at == NULL)
        fail_msg("no %s in the ledger: %s", field, body);
    return atoll(at + strlen(pat));
}

/* ---- client harness ---- */

#define MAX_READINGS 64

struct run {
    uv_loop_t loop;
    struct kp_client *cl;
    unsigned done;
    unsigned want_done;
    struct kp_result res;
    char error[256];
    struct kp_asin_outcome asins[200];
    struct kp_envelope env;
    size_t n_readings;
    struct kp_reading readings[MAX_READINGS];
    size_t n_products, n_deals;
    char first_asins[8][KP_ASIN_MAX];
    unsigned max_in_flight_seen;
    bool closed;
    /* backpressure */
    struct kp_request *req;
    bool pause_first;
    bool paused;
    size_t products_while_paused;
    uv_timer_t resume_timer;
};

static void on_reading(const struct kp_reading *r, void *ud)
{
    struct run *x = ud;
    if (x->n_readings < MAX_READINGS)
        x->readings[x->n_readings] = *r;
    x->n_readings++;
}

static void on_done(const struct kp_result *res, void *ud)
{
    struct run *x = ud;
    x->done++;
    x->res = *res;
    snprintf(x->error, sizeof(x->error), "%s", res->error);
    if (res->envelope != NULL)
        x->env = *res->envelope;
    x->res.envelope = &x->env;
    if (res->n_asins > 0)
        memcpy(x->asins, res->asins, res->n_asins * sizeof(x->asins[0]));
    x->res.asins = x->asins;
    unsigned f = kp_client_in_flight(x->cl);
    if (f > x->max_in_flight_seen)
        x->max_in_flight_seen = f;
}

static void resume_cb(uv_timer_t *t)
{
    struct run *x = t->data;
    x->paused = false;
    kp_request_resume(x->req);
}

static int on_product(const struct kp_product *p, void *ud)
{
    struct run *x = ud;
    if (x->n_products < 8)
        snprintf(x->first_asins[x->n_products], KP_ASIN_MAX, "%s", p->asin);
    x->n_products++;
    if (x->paused)
        x->products_while_paused++;
    if (x->pause_first && x->n_products == 1) {
        x->paused = true;
        kp_request_pause(x->req);
        uv_timer_start(&x->resume_timer, resume_cb, 100, 0);
    }
    return 0;
}

static int on_deal(const struct kp_deal *d, void *ud)
{
    struct run *x = ud;
    if (x->n_deals < 8)
        snprintf(x->first_asins[x->n_deals], KP_ASIN_MAX, "%s", d->asin);
    x->n_deals++;
    return 0;
}

static void closed_cb(void *ud)
{
    struct run *x = ud;
    x->closed = true;
}

static struct run *run_new(const char *key, int64_t timeout_ms, int64_t offers_timeout_ms,
                           unsigned max_in_flight)
{
    struct run *x = calloc(1, sizeof(*x));
    assert_non_null(x);
    assert_int_equal(uv_loop_init(&x->loop), 0);
    uv_timer_init(&x->loop, &x->resume_timer);
    x->resume_timer.data = x;
    struct kp_client_opts o = {.base_url = sim_base,
                               .api_key = key,
                               .max_in_flight = max_in_flight,
                               .connect_timeout_ms = 2000,
                               .timeout_ms = timeout_ms,
                               .offers_timeout_ms = offers_timeout_ms,
                               .max_tries = 3,
                               .backoff_base_ms = 20,
                               .backoff_max_ms = 100,
                               .on_reading = on_reading,
                               .reading_ud = x};
    char err[256];
    assert_int_equal(kp_client_new(&x->loop, &o, &x->cl, err, sizeof(err)), 0);
    return x;
}

static void run_submit(struct run *x, struct kp_call *c)
{
    struct kp_request_cbs cbs = {
        .on_product = on_product, .on_deal = on_deal, .on_done = on_done, .ud = x};
    assert_int_equal(kp_client_submit(x->cl, c, &cbs, &x->req), 0);
    x->want_done++;
}

static void run_wait(struct run *x)
{
    int64_t deadline = kd_mono_ns() + 40 * KD_NS_PER_SEC;
    while (x->done < x->want_done) {
        assert_true(kd_mono_ns() < deadline);
        uv_run(&x->loop, UV_RUN_ONCE);
    }
}

static void run_free(struct run *x)
{
    kp_client_close(x->cl, closed_cb, x);
    uv_close((uv_handle_t *)&x->resume_timer, NULL);
    uv_run(&x->loop, UV_RUN_DEFAULT);
    assert_true(x->closed);
    assert_int_equal(uv_loop_close(&x->loop), 0);
    free(x);
}

static void product_call(struct kp_call *c, const char *const *asins, size_t n, int offers)
{
    struct kp_product_params p = {
        .domain = 1, .asins = asins, .n_asins = n, .stats_days = 90, .offers = offers};
    assert_int_equal(kp_call_product(c, &p), 0);
}

/* Gets some real ASINs of the simulator's catalog from its /deal feed. */
static size_t sim_asins(char out[][KP_ASIN_MAX], size_t max)
{
    struct run *x = run_new(KEY, 5000, 5000, 4);
    struct kp_call c;
    assert_int_equal(kp_call_deal(&c, "{\"domainId\":1,\"priceTypes\":[0],\"page\":0}"), 0);
    run_submit(x, &c);
    run_wait(x);
    assert_int_equal(x->res.code, KP_OK);
    size_t n = x->n_deals < max ? x->n_deals : max;
    n = n < 8 ? n : 8;
    assert_true(n >= 3);
    for (size_t i = 0; i < n; i++)
        memcpy(out[i], x->first_asins[i], KP_ASIN_MAX);
    run_free(x);
    return n;
}

static void assert_reading_sane(const struct kp_reading *r, int http)
{
    assert_int_equal(r->http_status, http);
    assert_true(r->refill_rate > 0);
    assert_true(r->refill_in_ms > 0 && r->refill_in_ms <= 60000);
    assert_true(r->timestamp_ms > 1600000000000LL);
    assert_true(r->local_mono_ns_received >= r->local_mono_ns_sent);
    assert_true(r->local_mono_ns_sent > 0);
}

/* ---- tests ---- */

static void test_ok_partial_answers(void **state)
{
    (void)state;
    sim_start(NULL);
    char asins[8][KP_ASIN_MAX];
    sim_asins(asins, 8);
    struct run *x = run_new(KEY, 5000, 30000, 4);
    const char *ask[] = {asins[0], asins[1], "B0ZZZZZZZZ"}; /* unknown to the simulator */
    struct kp_call c;
    product_call(&c, ask, 3, 20);
    run_submit(x, &c);
    run_wait(x);
    assert_int_equal(x->res.code, KP_OK);
    assert_int_equal(x->res.http_status, 200);
    assert_int_equal(x->res.tries, 1);
    assert_false(x->res.maybe_charged);
    assert_int_equal(x->n_products, 2);
    assert_int_equal(x->res.n_asins, 3);
    assert_string_equal(x->res.asins[0].asin, asins[0]);
    assert_int_equal(x->res.asins[0].status, KP_ASIN_OK);
    assert_int_equal(x->res.asins[1].status, KP_ASIN_OK);
    assert_int_equal(x->res.asins[2].status, KP_ASIN_MISSING);
    assert_int_equal(x->n_readings, 1);
    assert_reading_sane(&x->readings[0], 200);
    assert_true(x->readings[0].tokens_consumed >= 12); /* 2 products with offers: >= 6 each */
    assert_int_equal(x->readings[0].ep, KP_EP_PRODUCT);
    run_free(x);
}

static void test_offers_fail_and_no_products(void **state)
{
    (void)state;
    sim_start(NULL);
    char asins[8][KP_ASIN_MAX];
    sim_asins(asins, 8);
    const char *ask[] = {asins[0], asins[1]};

    sim_control("/_sim/faults?spec=offers_fail=1");
    struct run *x = run_new(KEY, 5000, 30000, 4);
    struct kp_call c;
    product_call(&c, ask, 2, 20);
    run_submit(x, &c);
    run_wait(x);
    assert_int_equal(x->res.code, KP_OK);
    assert_int_equal(x->res.asins[0].status, KP_ASIN_OFFERS_FAILED);
    assert_int_equal(x->res.asins[1].status, KP_ASIN_OFFERS_FAILED);
    assert_int_equal(x->n_readings, 1);

    sim_control("/_sim/faults?spec=clear,no_products=1");
    product_call(&c, ask, 2, 0);
    run_submit(x, &c);
    run_wait(x);
    assert_int_equal(x->res.code, KP_OK);
    assert_false(x->env.have & KP_ENV_PRODUCTS);
    assert_int_equal(x->res.asins[0].status, KP_ASIN_MISSING);
    assert_int_equal(x->res.asins[1].status, KP_ASIN_MISSING);
    assert_int_equal(x->n_readings, 2);
    assert_true(x->readings[1].tokens_consumed == 0);
    run_free(x);
}

static void test_5xx_retried_then_failed(void **state)
{
    (void)state;
    sim_start("http500=1");
    struct run *x = run_new(KEY, 5000, 30000, 4);
    const char *ask[] = {"B000000001"};
    struct kp_call c;
    product_call(&c, ask, 1, 0);
    run_submit(x, &c);
    run_wait(x);
    assert_int_equal(x->res.code, KP_FAILED);
    assert_int_equal(x->res.http_status, 500);
    assert_int_equal(x->res.tries, 3);
    assert_false(x->res.maybe_charged); /* the envelope said tokensConsumed */
    assert_int_equal(x->n_readings, 3); /* every 500 carried a reading */
    assert_reading_sane(&x->readings[2], 500);
    assert_int_equal(x->res.asins[0].status, KP_ASIN_REJECTED);
    assert_non_null(strstr(x->error, "500"));
    run_free(x);
}

/*
 * The lightning list and a best-seller list are sent once: 500 or 50 tokens are never paid a
 * second time without a new grant from the bucket (a 5xx or a reset is the caller's to retry
 * through the token bucket). Their answers decode: the envelope counts the deals and ASINs.
 */
static void test_dear_lists_are_one_attempt(void **state)
{
    (void)state;
    sim_start(NULL);
    struct run *x = run_new(KEY, 5000, 30000, 4);
    struct kp_call c;
    assert_int_equal(kp_call_lightning(&c, 1, NULL, 0), 0);
    run_submit(x, &c);
    run_wait(x);
    assert_int_equal(x->res.code, KP_OK);
    assert_true(x->env.have & KP_ENV_LIGHTNING);
    assert_int_equal(x->res.reading.tokens_consumed, 500);
    assert_int_equal(kp_call_bestsellers(&c, 1, 283155, 90), 0);
    run_submit(x, &c);
    run_wait(x);
    assert_int_equal(x->res.code, KP_OK);
    assert_true(x->env.have & KP_ENV_BESTSELLERS);
    assert_true(x->env.n_asins > 0);
    assert_int_equal(x->env.bestsellers_category, 283155);
    assert_int_equal(x->res.reading.tokens_consumed, 50);

    static const char *const specs[] = {"/_sim/faults?spec=http500=1", "/_sim/faults?spec=reset=1"};
    for (size_t i = 0; i < 2; i++) {
        sim_control(specs[i]);
        assert_int_equal(kp_call_lightning(&c, 1, NULL, 0), 0);
        run_submit(x, &c);
        run_wait(x);
        assert_int_equal(x->res.code, KP_FAILED);
        assert_int_equal(x->res.tries, 1);
        assert_int_equal(kp_call_bestsellers(&c, 1, 283155, 0), 0);
        run_submit(x, &c);
        run_wait(x);
        assert_int_equal(x->res.code, KP_FAILED);
        assert_int_equal(x->res.tries, 1);
    }
    /* By ASIN (1 token each) the client's own retries apply as for any cheap call. */
    const char *ask[] = {"B000000001"};
    assert_int_equal(kp_call_lightning(&c, 1, ask, 1), 0);
    run_submit(x, &c);
    run_wait(x);
    assert_int_equal(x->res.code, KP_FAILED);
    assert_int_equal(x->res.tries, 3);
    run_free(x);
}

static void test_503_then_recovers(void **state)
{
    (void)state;
    sim_start("http503=1");
    struct run *x = run_new(KEY, 5000, 30000, 4);
    struct kp_call c;
    assert_int_equal(kp_call_deal(&c, "{\"domainId\":1,\"priceTypes\":[0],\"page\":0}"), 0);
    run_submit(x, &c);
    /* Let the first attempt fail, then clear the fault: a retry succeeds. */
    while (x->n_readings == 0)
        uv_run(&x->loop, UV_RUN_ONCE);
    sim_control("/_sim/faults?spec=clear");
    run_wait(x);
    assert_int_equal(x->res.code, KP_OK);
    assert_true(x->res.tries >= 2);
    assert_int_equal(x->readings[0].http_status, 503);
    assert_int_equal(x->readings[x->n_readings - 1].http_status, 200);
    run_free(x);
}

static void test_reset_maybe_charged(void **state)
{
    (void)state;
    sim_start("reset=1");
    struct run *x = run_new(KEY, 5000, 30000, 4);
    struct kp_call c;
    assert_int_equal(kp_call_deal(&c, "{\"domainId\":1,\"priceTypes\":[0],\"page\":0}"), 0);
    run_submit(x, &c);
    run_wait(x);
    assert_int_equal(x->res.code, KP_FAILED);
    assert_int_equal(x->res.tries, 3);
    assert_true(x->res.maybe_charged);
    assert_int_not_equal(x->res.curl_code, 0);
    run_free(x);
}

static void test_timeout_maybe_charged(void **state)
{
    (void)state;
    sim_start("latency_ms=1500");
    struct run *x = run_new(KEY, 200, 30000, 4);
    struct kp_call c;
    assert_int_equal(kp_call_deal(&c, "{\"domainId\":1,\"priceTypes\":[0],\"page\":0}"), 0);
    run_submit(x, &c);
    run_wait(x);
    assert_int_equal(x->res.code, KP_FAILED);
    assert_int_equal(x->res.curl_code, CURLE_OPERATION_TIMEDOUT);
    assert_int_equal(x->res.tries, 3);
    assert_true(x->res.maybe_charged);
    assert_int_equal(x->n_readings, 0); /* no answer, no reading */
    assert_non_null(strstr(x->error, "/deal"));
    run_free(x);
    /* maybe_charged is right: the simulator finishes (and bills) the abandoned work. */
    int64_t deadline = kd_mono_ns() + 15 * KD_NS_PER_SEC;
    while (sim_ledger("tokens_consumed") < 3 * 5) {
        assert_true(kd_mono_ns() < deadline);
        usleep(50 * 1000); /* polling the ledger with a deadline */
    }
}

static void test_slow_offers_use_long_timeout(void **state)
{
    (void)state;
    sim_start("offers_latency_ms=700-900");
    char asins[8][KP_ASIN_MAX];
    sim_asins(asins, 8);
    const char *ask[] = {asins[0]};
    /* 300 ms for ordinary requests, 10 s for offers: the slow offers answer succeeds. */
    struct run *x = run_new(KEY, 300, 10000, 4);
    struct kp_call c;
    product_call(&c, ask, 1, 20);
    run_submit(x, &c);
    run_wait(x);
    assert_int_equal(x->res.code, KP_OK);
    assert_int_equal(x->res.tries, 1);
    assert_int_equal(x->n_readings, 1);
    assert_true(x->readings[0].local_mono_ns_received - x->readings[0].local_mono_ns_sent >=
                600 * KD_NS_PER_MS);
    run_free(x);

    /* With an offers timeout shorter than the latency it times out, maybe charged. */
    x = run_new(KEY, 300, 300, 4);
    product_call(&c, ask, 1, 20);
    run_submit(x, &c);
    run_wait(x);
    assert_int_equal(x->res.code, KP_FAILED);
    assert_int_equal(x->res.curl_code, CURLE_OPERATION_TIMEDOUT);
    assert_true(x->res.maybe_charged);
    run_free(x);
}

static void test_429_storm_not_admitted(void **state)
{
    (void)state;
    sim_start("storm429=5");
    struct run *x = run_new(KEY, 5000, 30000, 4);
    const char *ask[] = {"B000000001", "B000000002"};
    for (int i = 0; i < 5; i++) {
        struct kp_call c;
        product_call(&c, ask, 2, 0);
        run_submit(x, &c);
        run_wait(x);
        assert_int_equal(x->res.code, KP_NOT_ADMITTED);
        assert_int_equal(x->res.http_status, 429);
        assert_int_equal(x->res.tries, 1); /* not retried blindly */
        assert_false(x->res.maybe_charged);
        assert_int_equal(x->res.asins[0].status, KP_ASIN_REJECTED);
        assert_int_equal(x->n_readings, (size_t)i + 1);
        assert_reading_sane(&x->readings[i], 429);
        assert_true(x->readings[i].tokens_consumed == 0);
    }
    run_free(x);
}

static void test_truncated_and_malformed(void **state)
{
    (void)state;
    static const char *const specs[] = {"truncate=1", "malformed=1"};
    for (size_t k = 0; k < 2; k++) {
        sim_start(specs[k]);
        struct run *x = run_new(KEY, 5000, 30000, 4);
        struct kp_call c;
        assert_int_equal(kp_call_deal(&c, "{\"domainId\":1,\"priceTypes\":[0],\"page\":0}"), 0);
        run_submit(x, &c);
        run_wait(x);
        assert_int_equal(x->res.code, KP_FAILED);
        assert_int_equal(x->res.http_status, 200);
        assert_int_equal(x->res.tries, 3);
        assert_true(x->res.maybe_charged);
        assert_non_null(strstr(x->error, "bad response body"));
        if (k == 0) /* the truncated body still began with its envelope */
            assert_int_equal(x->n_readings, 3);
        /* maybe_charged was right: the simulator billed the three lost answers. */
        assert_true(sim_ledger("tokens_consumed") >= 3 * 5);
        run_free(x);
        sim_stop();
    }
}

/*
 * Hostile 200 answers: an endless body is cut at the decoder's 64 MiB limit,
 * a deeply nested one at its depth limit, and a mistyped one (no product says which ASIN it
 * is) is a bad body too, not "every ASIN missing": each fails at once, without a retry, with
 * every requested ASIN REJECTED (so a consumer keeps them) and the envelope's reading kept.
 */
static void test_hostile_bodies_fail_without_retry(void **state)
{
    (void)state;
    /* offers_: the /deal call that finds ASINs stays honest; the offers fetch is hostile. */
    static const char *const specs[] = {"offers_endless=1", "offers_deep=1", "offers_mistyped=1"};
    static const char *const why[] = {"larger than the limit", "nested deeper",
                                      "products without a readable asin"};
    for (size_t k = 0; k < 3; k++) {
        sim_start(specs[k]);
        char asins[8][KP_ASIN_MAX];
        sim_asins(asins, 8);
        struct run *x = run_new(KEY, 30000, 30000, 4);
        const char *ask[] = {asins[0], asins[1]};
        struct kp_call c;
        product_call(&c, ask, 2, 20);
        run_submit(x, &c);
        run_wait(x);
        assert_int_equal(x->res.code, KP_FAILED);
        assert_int_equal(x->res.http_status, 200);
        assert_int_equal(x->res.tries, 1);
        assert_true(x->res.maybe_charged);
        if (strstr(x->error, why[k]) == NULL)
            fail_msg("%s: error '%s' does not say '%s'", specs[k], x->error, why[k]);
        assert_int_equal(x->res.n_asins, 2);
        assert_int_equal(x->res.asins[0].status, KP_ASIN_REJECTED);
        assert_int_equal(x->res.asins[1].status, KP_ASIN_REJECTED);
        assert_int_equal(x->n_readings, 1); /* the envelope came first and was read */
        run_free(x);
        sim_stop();
    }
}

/*
 * A product whose asin is readable but whose other fields have the wrong JSON type:
 * the answer is usable (KP_OK, no retry), but such a product is not handed to on_product and
 * its ASIN is MALFORMED, not OK or MISSING, so a consumer asks again rather than judging it
 * on absent fields. One warning names the ASINs and their error counts, never the key.
 */
static void test_mistyped_fields_malformed(void **state)
{
    (void)state;
    sim_start("offers_mistyped_fields=1");
    char asins[8][KP_ASIN_MAX];
    sim_asins(asins, 8);
    char log[4200];
    snprintf(log, sizeof(log), "%s/client.log", kd_test_tmpdir());
    assert_int_equal(kd_log_open(log), 0);
    struct run *x = run_new(KEY, 30000, 30000, 4);
    const char *ask[] = {asins[0], asins[1]};
    struct kp_call c;
    product_call(&c, ask, 2, 20);
    run_submit(x, &c);
    run_wait(x);
    kd_log_open(NULL);
    assert_int_equal(x->res.code, KP_OK);
    assert_int_equal(x->res.tries, 1);
    assert_int_equal(x->n_products, 0); /* withheld */
    assert_int_equal(x->res.n_asins, 2);
    assert_int_equal(x->res.asins[0].status, KP_ASIN_MALFORMED);
    assert_int_equal(x->res.asins[1].status, KP_ASIN_MALFORMED);
    assert_string_equal(kp_asin_status_name(KP_ASIN_MALFORMED), "malformed");
    run_free(x);

    size_t len;
    char *text = kd_read_file(log, &len);
    assert_non_null(text);
    const char *w = strstr(text, "wrong JSON type");
    if (w == NULL || strstr(text, asins[0]) == NULL || strstr(text, "type errors)") == NULL)
        fail_msg("no warning naming %s and its count:\n%s", asins[0], text);
    assert_null(strstr(w + 1, "wrong JSON type")); /* once per answer */
    assert_null(strstr(text, KEY));
    free(text);

    /* The same ASINs in an honest answer are OK again: nothing sticks to them. */
    sim_control("/_sim/faults?spec=clear");
    x = run_new(KEY, 30000, 30000, 4);
    product_call(&c, ask, 2, 20);
    run_submit(x, &c);
    run_wait(x);
    assert_int_equal(x->res.code, KP_OK);
    assert_int_equal(x->n_products, 2);
    assert_int_equal(x->res.asins[0].status, KP_ASIN_OK);
    assert_int_equal(x->res.asins[1].status, KP_ASIN_OK);
    run_free(x);
    sim_stop();
}

static void test_refill_rate_flapping_reaches_readings(void **state)
{
    (void)state;
    sim_start("refill_flap=5:60");
    struct run *x = run_new(KEY, 5000, 30000, 1);
    for (int i = 0; i < 4; i++) {
        struct kp_call c;
        assert_int_equal(kp_call_deal(&c, "{\"domainId\":1,\"priceTypes\":[0],\"page\":0}"), 0);
        run_submit(x, &c);
    }
    run_wait(x);
    assert_int_equal(x->n_readings, 4);
    bool saw5 = false, saw60 = false;
    for (size_t i = 0; i < 4; i++) {
        saw5 |= x->readings[i].refill_rate == 5;
        saw60 |= x->readings[i].refill_rate == 60;
    }
    assert_true(saw5 && saw60); /* every reading is passed on as the server sent it */
    run_free(x);
}

static void test_bad_and_expired_key(void **state)
{
    (void)state;
    sim_start(NULL);
    struct run *x = run_new("KpWrongKey9999888877776666", 5000, 30000, 4);
    struct kp_call c;
    kp_call_token(&c);
    run_submit(x, &c);
    run_wait(x);
    assert_int_equal(x->res.code, KP_PERMANENT);
    assert_int_equal(x->res.http_status, 400);
    assert_int_equal(x->res.tries, 1);
    assert_int_equal(x->n_readings, 0); /* zeroed bad-key envelope is not a bucket state */
    assert_false(x->res.reading_valid);
    assert_null(strstr(x->error, "KpWrongKey"));
    run_free(x);

    x = run_new(EXPIRED, 5000, 30000, 4);
    const char *ask[] = {"B000000001"};
    product_call(&c, ask, 1, 0);
    run_submit(x, &c);
    run_wait(x);
    assert_int_equal(x->res.code, KP_KEY_UNUSABLE);
    assert_int_equal(x->res.http_status, 402);
    assert_int_equal(x->res.tries, 1);
    assert_int_equal(x->res.asins[0].status, KP_ASIN_REJECTED);
    run_free(x);
}

static void test_in_flight_cap_and_queue(void **state)
{
    (void)state;
    sim_start("latency_ms=30");
    struct run *x = run_new(KEY, 5000, 30000, 2);
    for (int i = 0; i < 8; i++) {
        struct kp_call c;
        assert_int_equal(kp_call_deal(&c, "{\"domainId\":1,\"priceTypes\":[0],\"page\":0}"), 0);
        run_submit(x, &c);
        assert_true(kp_client_in_flight(x->cl) <= 2);
    }
    assert_int_equal(kp_client_in_flight(x->cl), 2);
    assert_int_equal(kp_client_queued(x->cl), 6);
    run_wait(x);
    assert_int_equal(x->done, 8);
    assert_true(x->max_in_flight_seen <= 2);
    assert_int_equal(x->n_readings, 8);
    assert_int_equal(kp_client_queued(x->cl), 0);
    run_free(x);
}

static void test_pause_resume(void **state)
{
    (void)state;
    sim_start(NULL);
    char asins[8][KP_ASIN_MAX];
    size_t n = sim_asins(asins, 8);
    const char *ask[8];
    for (size_t i = 0; i < n; i++)
        ask[i] = asins[i];
    struct run *x = run_new(KEY, 5000, 30000, 4);
    x->pause_first = true;
    struct kp_call c;
    /* history makes each product a few KB, so the body spans several chunks. */
    struct kp_product_params p = {
        .domain = 1, .asins = ask, .n_asins = n, .stats_days = 90, .days = 365};
    assert_int_equal(kp_call_product(&c, &p), 0);
    run_submit(x, &c);
    run_wait(x);
    assert_int_equal(x->res.code, KP_OK);
    assert_int_equal(x->n_products, n);
    /* At most the rest of the chunk being decoded when pause was asked arrives while paused. */
    assert_true(x->products_while_paused < n - 1 || n <= 2);
    run_free(x);
}

static void test_close_cancels(void **state)
{
    (void)state;
    sim_start("latency_ms=2000");
    struct run *x = run_new(KEY, 10000, 30000, 1);
    for (int i = 0; i < 3; i++) {
        struct kp_call c;
        kp_call_token(&c);
        run_submit(x, &c);
    }
    uv_run(&x->loop, UV_RUN_NOWAIT);
    kp_client_close(x->cl, closed_cb, x);
    assert_int_equal(x->done, 3);
    assert_int_equal(x->res.code, KP_CANCELLED);
    uv_close((uv_handle_t *)&x->resume_timer, NULL);
    uv_run(&x->loop, UV_RUN_DEFAULT);
    assert_true(x->closed);
    assert_int_equal(uv_loop_close(&x->loop), 0);
    free(x);
}

/*
 * The spending policy gates every attempt itself (worker/spend.h): with max_tries 1 the client
 * makes one attempt and says whether another may help (retryable), tells Keepa's answer to an
 * unknown key apart (key_rejected), sends each call with the key its key_index names, and a
 * request cancelled after it was sent says it may have been charged.
 */
static void test_one_attempt_keys_and_charged_cancel(void **state)
{
    (void)state;
    sim_start(NULL);
    char asins[8][KP_ASIN_MAX];
    sim_asins(asins, 3);
    const char *ask[] = {asins[0], asins[1]};

    struct run *x = calloc(1, sizeof(*x));
    assert_non_null(x);
    assert_int_equal(uv_loop_init(&x->loop), 0);
    uv_timer_init(&x->loop, &x->resume_timer);
    const char *keys[] = {KEY2, KEY, "KpWrongKey9999888877776666"};
    struct kp_client_opts o = {.base_url = sim_base,
                               .api_keys = keys,
                               .n_keys = 3,
                               .max_in_flight = 4,
                               .timeout_ms = 5000,
                               .max_tries = 1,
                               .on_reading = on_reading,
                               .reading_ud = x};
    char err[256];
    assert_int_equal(kp_client_new(&x->loop, &o, &x->cl, err, sizeof(err)), 0);
    for (unsigned k = 0; k < 4; k++) {
        struct kp_call c;
        product_call(&c, ask, 2, 0);
        c.key_index = k;
        run_submit(x, &c);
        run_wait(x);
        if (k < 2) {
            assert_int_equal(x->res.code, KP_OK);
        } else if (k == 2) { /* an unknown key: 400 with the zeroed envelope */
            assert_int_equal(x->res.code, KP_PERMANENT);
            assert_true(x->res.key_rejected);
            assert_false(x->res.reading_valid);
        } else { /* no such key: nothing sent */
            assert_int_equal(x->res.code, KP_FAILED);
            assert_false(x->res.retryable);
            assert_false(x->res.maybe_charged);
        }
        assert_int_equal(x->res.tries, 1);
    }
    assert_null(strstr(x->error, "KpWrongKey"));
    kp_client_close(x->cl, closed_cb, x);
    uv_close((uv_handle_t *)&x->resume_timer, NULL);
    uv_run(&x->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&x->loop), 0);
    free(x);
    sim_stop();

    /* A 5xx with max_tries 1: one attempt, retryable, its reading kept. */
    sim_start("http500=1");
    x = calloc(1, sizeof(*x));
    assert_non_null(x);
    assert_int_equal(uv_loop_init(&x->loop), 0);
    uv_timer_init(&x->loop, &x->resume_timer);
    o.api_keys = NULL;
    o.n_keys = 0;
    o.api_key = KEY;
    o.reading_ud = x;
    assert_int_equal(kp_client_new(&x->loop, &o, &x->cl, err, sizeof(err)), 0);
    struct kp_call c;
    product_call(&c, ask, 2, 0);
    run_submit(x, &c);
    run_wait(x);
    assert_int_equal(x->res.code, KP_FAILED);
    assert_int_equal(x->res.http_status, 500);
    assert_int_equal(x->res.tries, 1);
    assert_true(x->res.retryable);
    assert_true(x->res.reading_valid);
    kp_client_close(x->cl, closed_cb, x);
    uv_close((uv_handle_t *)&x->resume_timer, NULL);
    uv_run(&x->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&x->loop), 0);
    free(x);
    sim_stop();

    /* Cancelled once sent: maybe charged (the simulator charges at admission); a /token
     * cancelled the same way costs nothing. */
    sim_start("latency_ms=3000");
    x = run_new(KEY, 10000, 10000, 2);
    product_call(&c, ask, 2, 0);
    run_submit(x, &c);
    int64_t until = kd_mono_ns() + 500 * KD_NS_PER_MS; /* sent, and waiting for the answer */
    while (kd_mono_ns() < until)
        uv_run(&x->loop, UV_RUN_NOWAIT);
    kp_client_close(x->cl, closed_cb, x);
    assert_int_equal(x->done, 1);
    assert_int_equal(x->res.code, KP_CANCELLED);
    assert_true(x->res.maybe_charged);
    uv_close((uv_handle_t *)&x->resume_timer, NULL);
    uv_run(&x->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&x->loop), 0);
    free(x);
}

/* Runs kdeals with ENV_KEY (NULL: none) as KEEPA_API_KEY, stdout+stderr appended to OUT.
 * Returns the exit status. */
static int run_kdeals(const char *out, const char *env_key, const char *const *args)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fd = open(out, O_WRONLY | O_CREAT | O_APPEND, 0600);
        dup2(fd, 1);
        dup2(fd, 2);
        if (env_key != NULL)
            setenv("KEEPA_API_KEY", env_key, 1);
        else
            unsetenv("KEEPA_API_KEY");
        setenv("KDEALS_LOG_LEVEL", "debug", 1);
        execv(KD_BUILD_DIR "/kdeals", (char *const *)args);
        _exit(127);
    }
    int st;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static int run_cli(const char *out, const char *const *args)
{
    return run_kdeals(out, KEY, args);
}

static void write_text(const char *path, mode_t mode, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    assert_int_equal(chmod(path, mode), 0);
}

/*
 * `kdeals fetch` takes the key as the daemon does (base/key.h): the config's inline key, its
 * key_file (refused unless mode 0600), else KEEPA_API_KEY; errors name the config key.
 */
static void test_fetch_takes_the_config_key(void **state)
{
    (void)state;
    sim_start(NULL);
    char conf[4200], key_file[4200], out[4200], text[8400];
    snprintf(conf, sizeof(conf), "%s/kdeals.conf", kd_test_tmpdir());
    snprintf(key_file, sizeof(key_file), "%s/key", kd_test_tmpdir());
    snprintf(out, sizeof(out), "%s/fetch.out", kd_test_tmpdir());
    const char *args[] = {"kdeals", "fetch", "token", "-c", conf, NULL};

    snprintf(text, sizeof(text), "[keepa]\nbase_url = %s\nkey = %s\n", sim_base, KEY);
    write_text(conf, 0600, text);
    assert_int_equal(run_kdeals(out, NULL, args), 0);

    write_text(key_file, 0644, KEY "\n");
    snprintf(text, sizeof(text), "[keepa]\nbase_url = %s\nkey_file = %s\n", sim_base, key_file);
    write_text(conf, 0600, text);
    unlink(out);
    assert_int_equal(run_kdeals(out, KEY, args), 2); /* refused, even with the variable set */
    char *said = kd_read_file(out, NULL);
    assert_non_null(said);
    assert_non_null(strstr(said, "[keepa] key_file"));
    assert_non_null(strstr(said, "chmod 600"));
    assert_null(strstr(said, KEY));
    free(said);
    assert_int_equal(chmod(key_file, 0600), 0);
    assert_int_equal(run_kdeals(out, NULL, args), 0);

    snprintf(text, sizeof(text), "[keepa]\nbase_url = %s\n", sim_base);
    write_text(conf, 0600, text);
    assert_int_equal(run_kdeals(out, KEY, args), 0); /* KEEPA_API_KEY last */
    unlink(out);
    assert_int_equal(run_kdeals(out, NULL, args), 2);
    said = kd_read_file(out, NULL);
    assert_non_null(said);
    assert_non_null(strstr(said, "[keepa] key_file"));
    assert_null(strstr(said, "api_key"));
    free(said);
}

static void test_key_never_printed(void **state)
{
    (void)state;
    sim_start(NULL);
    char out[4200];
    snprintf(out, sizeof(out), "%s/cli.out", kd_test_tmpdir());
    const char *ok[] = {"kdeals", "fetch", "token", "--base-url", sim_base, NULL};
    assert_int_equal(run_cli(out, ok), 0);
    const char *prod[] = {"kdeals", "fetch",      "product", "B000000001", "--offers",
                          "20",     "--base-url", sim_base,  NULL};
    run_cli(out, prod);
    sim_control("/_sim/faults?spec=http500=1");
    const char *fail5[] = {"kdeals", "fetch",      "product", "B000000001", "--tries",
                           "2",      "--base-url", sim_base,  NULL};
    assert_int_equal(run_cli(out, fail5), 1);
    sim_control("/_sim/faults?spec=clear,latency_ms=800");
    const char *slow[] = {"kdeals",       "fetch",  "product", "B000000001",
                          "--timeout-ms", "100",    "--tries", "1",
                          "--base-url",   sim_base, NULL};
    assert_int_equal(run_cli(out, slow), 1);
    sim_control("/_sim/faults?spec=clear,reset=1");
    const char *reset[] = {"kdeals", "fetch",      "product", "B000000001", "--tries",
                           "2",      "--base-url", sim_base,  NULL};
    assert_int_equal(run_cli(out, reset), 1);
    /* Unreachable server: connection refused path. */
    const char *refused[] = {
        "kdeals", "fetch", "token", "--tries", "1", "--base-url", "http://127.0.0.1:1", NULL};
    assert_int_equal(run_cli(out, refused), 1);

    size_t len;
    char *text = kd_read_file(out, &len);
    assert_non_null(text);
    assert_non_null(strstr(text, "key=<redacted>")); /* debug lines were printed */
    assert_non_null(strstr(text, "HTTP 500"));
    if (strstr(text, KEY) != NULL)
        fail_msg("the API key leaked into the output:\n%s", text);
    /* Not even a long fragment of it. */
    char frag[17];
    memcpy(frag, KEY + 8, 16);
    frag[16] = '\0';
    assert_null(strstr(text, frag));
    free(text);
}

static void test_key_never_logged_in_process(void **state)
{
    (void)state;
    sim_start("http503=0.5,reset=0.2,truncate=0.2");
    char log[4200];
    snprintf(log, sizeof(log), "%s/client.log", kd_test_tmpdir());
    assert_int_equal(kd_log_open(log), 0);
    kd_log_set_level(KD_LOG_DEBUG);
    struct run *x = run_new(KEY, 5000, 30000, 4);
    for (int i = 0; i < 6; i++) {
        struct kp_call c;
        assert_int_equal(kp_call_deal(&c, "{\"domainId\":1,\"priceTypes\":[0],\"page\":0}"), 0);
        run_submit(x, &c);
    }
    run_wait(x);
    run_free(x);
    kd_log_open(NULL);
    size_t len;
    char *text = kd_read_file(log, &len);
    assert_non_null(text);
    assert_true(len > 0);
    assert_null(strstr(text, KEY));
    free(text);
}

int main(int argc, char **argv)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ok_partial_answers),
        cmocka_unit_test(test_offers_fail_and_no_products),
        cmocka_unit_test(test_5xx_retried_then_failed),
        cmocka_unit_test(test_503_then_recovers),
        cmocka_unit_test(test_reset_maybe_charged),
        cmocka_unit_test(test_dear_lists_are_one_attempt),
        cmocka_unit_test(test_timeout_maybe_charged),
        cmocka_unit_test(test_slow_offers_use_long_timeout),
        cmocka_unit_test(test_429_storm_not_admitted),
        cmocka_unit_test(test_truncated_and_malformed),
        cmocka_unit_test(test_hostile_bodies_fail_without_retry),
        cmocka_unit_test(test_mistyped_fields_malformed),
        cmocka_unit_test(test_refill_rate_flapping_reaches_readings),
        cmocka_unit_test(test_bad_and_expired_key),
        cmocka_unit_test(test_in_flight_cap_and_queue),
        cmocka_unit_test(test_pause_resume),
        cmocka_unit_test(test_close_cancels),
        cmocka_unit_test(test_one_attempt_keys_and_charged_cancel),
        cmocka_unit_test(test_key_never_printed),
        cmocka_unit_test(test_fetch_takes_the_config_key),
        cmocka_unit_test(test_key_never_logged_in_process),
    };
    return KD_RUN_TESTS(tests, argc, argv);
}
