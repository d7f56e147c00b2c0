/*
 * client.c: curl multi on libuv, response classification and retries. See client.h.
 *
 * The transport has the shape of curl's multi-uv example: CURLMOPT_SOCKETFUNCTION keeps one
 * uv_poll_t per socket curl wants watched, CURLMOPT_TIMERFUNCTION drives one uv_timer_t, poll
 * errors reach curl as CURL_CSELECT_ERR, and after every curl_multi_socket_action the
 * finished transfers are drained with curl_multi_info_read. Each attempt uses a fresh easy
 * handle; connections (keep-alive) live in the multi handle's cache, so they are reused.
 *
 * A request is in one of three places: the queue (waiting for one of max_in_flight slots),
 * the multi handle (an attempt in flight), or its own retry timer (backoff after a transient
 * failure; it holds no slot). Every response body goes through a kp_decoder as it streams, so
 * the envelope (token reading) is known even for 429, 4xx and 5xx answers.
 *
 * Memory: a request owns its call (about 4 KB), a decoder (about 40 KB, bounded) and the
 * per-ASIN flags; nothing grows with the body size.
 */
#include "keepa/client.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>

#include "base/clock.h"
#include "base/kd_assert.h"
#include "base/log.h"

#define KP_MAX_UNREQUESTED 100

enum req_state { RS_QUEUED, RS_ACTIVE, RS_BACKOFF, RS_DONE };

struct kp_request {
    struct kp_client *cl;
    struct kp_request *next;                /* queue link */
    struct kp_request *all_prev, *all_next; /* every live request of the client */
    enum req_state state;
    struct kp_call call;
    struct kp_request_cbs cbs;
    struct kp_decoder *dec;
    CURL *easy;
    struct curl_slist *headers;
    uv_timer_t backoff;
    bool timer_open;

    unsigned tries;
    bool maybe_charged;
    bool pause_requested;
    bool curl_paused;
    int decode_rc;
    unsigned unattributed;   /* products of this attempt's answer without a readable asin */
    unsigned n_malformed;    /* products of this attempt's answer with type_errors > 0 */
    char malformed_log[256]; /* " ASIN (N type errors)" of the first 4, for one warning */
    int64_t attempt_start_ns;
    char curl_err[CURL_ERROR_SIZE];

    /* Per-ASIN tracking (product requests). */
    bool seen[KP_MAX_BATCH];
    bool offers_failed[KP_MAX_BATCH];
    bool malformed[KP_MAX_BATCH]; /* some attempt delivered it mistyped (and withheld it) */
    size_t n_unrequested;
    char unrequested[KP_MAX_UNREQUESTED][KP_ASIN_MAX];

    bool reading_valid;
    struct kp_reading reading;
    struct kp_envelope env;
    struct kp_asin_outcome outcomes[KP_MAX_BATCH + KP_MAX_UNREQUESTED];
};

struct kp_client {
    uv_loop_t *loop;
    CURLM *multi;
    uv_timer_t timeout;
    struct kp_client_opts opts;
    char *base_url;
    char key[KP_KEYS_MAX][KP_KEY_MAX];
    unsigned n_keys;
    struct kp_request *q_head, *q_tail;
    struct kp_request *all; /* live requests (any state but done) */
    struct sock_ctx *socks; /* watched sockets */
    unsigned queued;
    unsigned active;
    unsigned open_handles; /* uv handles not yet closed (polls, timers) */
    bool closing;
    void (*on_closed)(void *ud);
    void *closed_ud;
    uint64_t rng;
};

struct sock_ctx {
    uv_poll_t poll;
    curl_socket_t fd;
    struct kp_client *cl;
    struct sock_ctx *prev, *next;
};

static void pump(struct kp_client *cl);
static void drain(struct kp_client *cl);
static void maybe_free_client(struct kp_client *cl);

/* ---- names ---- */

const char *kp_result_name(enum kp_result_code c)
{
    switch (c) {
    case KP_OK:
        return "ok";
    case KP_NOT_ADMITTED:
        return "not-admitted";
    case KP_PERMANENT:
        return "permanent";
    case KP_KEY_UNUSABLE:
        return "key-unusable";
    case KP_FAILED:
        return "failed";
    case KP_CANCELLED:
        return "cancelled";
    }
    return "?";
}

const char *kp_asin_status_name(enum kp_asin_status s)
{
    switch (s) {
    case KP_ASIN_OK:
        return "ok";
    case KP_ASIN_MISSING:
        return "missing";
    case KP_ASIN_OFFERS_FAILED:
        return "offers-failed";
    case KP_ASIN_REJECTED:
        return "rejected";
    case KP_ASIN_UNREQUESTED:
        return "unrequested";
    case KP_ASIN_MALFORMED:
        return "malformed";
    }
    return "?";
}

int kp_global_init(void)
{
    return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : -EIO;
}

/* ---- libuv handles ---- */

static void sock_closed(uv_handle_t *h);

static void handle_closed(uv_handle_t *h)
{
    struct kp_client *cl = h->data;
    cl->open_handles--;
    maybe_free_client(cl);
}

static void sock_unwatch(struct kp_client *cl, struct sock_ctx *s)
{
    if (s->prev != NULL)
        s->prev->next = s->next;
    else
        cl->socks = s->next;
    if (s->next != NULL)
        s->next->prev = s->prev;
    s->prev = s->next = NULL;
    uv_poll_stop(&s->poll);
    uv_close((uv_handle_t *)&s->poll, sock_closed);
}

static void sock_closed(uv_handle_t *h)
{
    struct sock_ctx *s = (struct sock_ctx *)h;
    struct kp_client *cl = s->cl;
    free(s);
    cl->open_handles--;
    maybe_free_client(cl);
}

static void poll_cb(uv_poll_t *h, int status, int events)
{
    struct sock_ctx *s = (struct sock_ctx *)h;
    struct kp_client *cl = s->cl;
    int flags = 0;
    if (status < 0) {
        flags = CURL_CSELECT_ERR;
    } else {
        if (events & UV_READABLE)
            flags |= CURL_CSELECT_IN;
        if (events & UV_WRITABLE)
            flags |= CURL_CSELECT_OUT;
    }
    int running;
    curl_multi_socket_action(cl->multi, s->fd, flags, &running);
    drain(cl);
}

static int sock_cb(CURL *easy, curl_socket_t fd, int action, void *userp, void *socketp)
{
    (void)easy;
    struct kp_client *cl = userp;
    struct sock_ctx *s = socketp;
    if (action == CURL_POLL_REMOVE) {
        if (s != NULL) {
            curl_multi_assign(cl->multi, fd, NULL);
            sock_unwatch(cl, s);
        }
        return 0;
    }
    if (s == NULL) {
        s = calloc(1, sizeof(*s));
        if (s == NULL)
            return -1;
        s->fd = fd;
        s->cl = cl;
        if (uv_poll_init_socket(cl->loop, &s->poll, fd) != 0) {
            free(s);
            return -1;
        }
        s->poll.data = cl;
        cl->open_handles++;
        s->next = cl->socks;
        if (cl->socks != NULL)
            cl->socks->prev = s;
        cl->socks = s;
        curl_multi_assign(cl->multi, fd, s);
    }
    int events = 0;
    if (action == CURL_POLL_IN || action == CURL_POLL_INOUT)
        events |= UV_READABLE;
    if (action == CURL_POLL_OUT || action == CURL_POLL_INOUT)
        events |= UV_WRITABLE;
    uv_poll_start(&s->poll, events, poll_cb);
    return 0;
}

static void timeout_cb(uv_timer_t *t)
{
    struct kp_client *cl = t->data;
    int running;
    curl_multi_socket_action(cl->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    drain(cl);
}

static int timer_fn(CURLM *multi, long timeout_ms, void *userp)
{
    (void)multi;
    struct kp_client *cl = userp;
    if (timeout_ms < 0) {
        uv_timer_stop(&cl->timeout);
    } else {
        /* 0 means "now": run it from the loop, never recursively from inside curl. */
        uv_timer_start(&cl->timeout, timeout_cb, (uint64_t)(timeout_ms == 0 ? 1 : timeout_ms), 0);
    }
    return 0;
}

/* ---- client ---- */

int kp_client_new(uv_loop_t *loop, const struct kp_client_opts *opts, struct kp_client **out,
                  char *err, size_t errsz)
{
    *out = NULL;
    if (opts == NULL || opts->base_url == NULL || opts->base_url[0] == '\0') {
        snprintf(err, errsz, "keepa: no base URL");
        return -EINVAL;
    }
    const char *const *keys = opts->api_keys != NULL ? opts->api_keys : &opts->api_key;
    unsigned n_keys = opts->api_keys != NULL ? opts->n_keys : 1;
    bool keys_ok = n_keys >= 1 && n_keys <= KP_KEYS_MAX;
    for (unsigned i = 0; keys_ok && i < n_keys; i++)
        keys_ok = keys[i] != NULL && keys[i][0] != '\0' && strlen(keys[i]) < KP_KEY_MAX;
    if (!keys_ok) {
        snprintf(err, errsz, "keepa: no usable API key");
        return -EINVAL;
    }
    struct kp_client *cl = calloc(1, sizeof(*cl));
    if (cl == NULL) {
        snprintf(err, errsz, "keepa: out of memory");
        return -ENOMEM;
    }
    cl->loop = loop;
    cl->opts = *opts;
    cl->opts.api_key = NULL; /* only the private copies below are kept */
    cl->opts.api_keys = NULL;
    if (cl->opts.max_in_flight == 0)
        cl->opts.max_in_flight = 4;
    if (cl->opts.connect_timeout_ms <= 0)
        cl->opts.connect_timeout_ms = 10000;
    if (cl->opts.timeout_ms <= 0)
        cl->opts.timeout_ms = 30000;
    if (cl->opts.offers_timeout_ms <= 0)
        cl->opts.offers_timeout_ms = 120000;
    if (cl->opts.max_tries == 0)
        cl->opts.max_tries = 3;
    if (cl->opts.backoff_base_ms <= 0)
        cl->opts.backoff_base_ms = 500;
    if (cl->opts.backoff_max_ms <= 0)
        cl->opts.backoff_max_ms = 30000;
    for (unsigned i = 0; i < n_keys; i++) {
        snprintf(cl->key[i], sizeof(cl->key[i]), "%s", keys[i]);
        kd_log_add_secret(cl->key[i]);
    }
    cl->n_keys = n_keys;
    cl->base_url = strdup(opts->base_url);
    cl->opts.base_url = cl->base_url;
    cl->rng = (uint64_t)kd_mono_ns() ^ ((uint64_t)getpid() << 32) ^ 0x9E3779B97F4A7C15ull;
    cl->multi = curl_multi_init();
    if (cl->base_url == NULL || cl->multi == NULL) {
        if (cl->multi != NULL)
            curl_multi_cleanup(cl->multi);
        free(cl->base_url);
        explicit_bzero(cl->key, sizeof(cl->key));
        free(cl);
        snprintf(err, errsz, "keepa: cannot initialise libcurl");
        return -EIO;
    }
    uv_timer_init(loop, &cl->timeout);
    cl->timeout.data = cl;
    cl->open_handles = 1;
    curl_multi_setopt(cl->multi, CURLMOPT_SOCKETFUNCTION, sock_cb);
    curl_multi_setopt(cl->multi, CURLMOPT_SOCKETDATA, cl);
    curl_multi_setopt(cl->multi, CURLMOPT_TIMERFUNCTION, timer_fn);
    curl_multi_setopt(cl->multi, CURLMOPT_TIMERDATA, cl);
    curl_multi_setopt(cl->multi, CURLMOPT_MAXCONNECTS, (long)cl->opts.max_in_flight * 2);
    *out = cl;
    return 0;
}

unsigned kp_client_in_flight(const struct kp_client *cl)
{
    return cl->active;
}

unsigned kp_client_queued(const struct kp_client *cl)
{
    return cl->queued;
}

static uint64_t rng_next(struct kp_client *cl)
{
    uint64_t x = cl->rng;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    cl->rng = x;
    return x;
}

static void enqueue(struct kp_client *cl, struct kp_request *r, bool front)
{
    r->state = RS_QUEUED;
    r->next = NULL;
    if (front) {
        r->next = cl->q_head;
        cl->q_head = r;
        if (cl->q_tail == NULL)
            cl->q_tail = r;
    } else {
        if (cl->q_tail != NULL)
            cl->q_tail->next = r;
        else
            cl->q_head = r;
        cl->q_tail = r;
    }
    cl->queued++;
}

static struct kp_request *dequeue(struct kp_client *cl)
{
    struct kp_request *r = cl->q_head;
    if (r == NULL)
        return NULL;
    cl->q_head = r->next;
    if (cl->q_head == NULL)
        cl->q_tail = NULL;
    r->next = NULL;
    cl->queued--;
    return r;
}

/* ---- decoding hooks ---- */

static int req_on_product(const struct kp_product *p, void *ud)
{
    struct kp_request *r = ud;
    if (p->asin[0] == '\0') {
        /* A product the answer does not say the identity of (its asin missing or not a
         * string): the answer is malformed, and none of its products can be trusted to be
         * absent. Counting the requested ASINs "missing" would let a consumer give up on them
         * after a few such answers; the attempt fails instead (attempt_done). */
        r->unattributed++;
        return 0;
    }
    if (p->type_errors > 0) {
        /* Readable identity, garbled fields: withheld, its ASIN MALFORMED (client.h). */
        if (r->n_malformed++ < 4) {
            size_t len = strlen(r->malformed_log);
            snprintf(r->malformed_log + len, sizeof(r->malformed_log) - len, " %s (%u type errors)",
                     p->asin, p->type_errors);
        }
        for (size_t i = 0; i < r->call.n_asins; i++)
            if (strcmp(r->call.asins[i], p->asin) == 0)
                r->malformed[i] = true;
        return 0;
    }
    bool found = false;
    for (size_t i = 0; i < r->call.n_asins; i++) {
        if (strcmp(r->call.asins[i], p->asin) == 0) {
            r->seen[i] = true;
            r->offers_failed[i] = r->call.with_offers && p->offers_successful == 0;
            found = true;
            break;
        }
    }
    if (!found && r->call.ep == KP_EP_PRODUCT) {
        bool dup = false;
        for (size_t i = 0; i < r->n_unrequested && !dup; i++)
            dup = strcmp(r->unrequested[i], p->asin) == 0;
        if (!dup && r->n_unrequested < KP_MAX_UNREQUESTED)
            snprintf(r->unrequested[r->n_unrequested++], KP_ASIN_MAX, "%s", p->asin);
    }
    return r->cbs.on_product != NULL ? r->cbs.on_product(p, r->cbs.ud) : 0;
}

static int req_on_deal(const struct kp_deal *d, void *ud)
{
    struct kp_request *r = ud;
    return r->cbs.on_deal != NULL ? r->cbs.on_deal(d, r->cbs.ud) : 0;
}

static int req_on_seller(const struct kp_seller *s, void *ud)
{
    struct kp_request *r = ud;
    return r->cbs.on_seller != NULL ? r->cbs.on_seller(s, r->cbs.ud) : 0;
}

static int req_on_asin(const char *asin, void *ud)
{
    struct kp_request *r = ud;
    return r->cbs.on_asin != NULL ? r->cbs.on_asin(asin, r->cbs.ud) : 0;
}

static int req_on_lightning(const struct kp_lightning_deal *ld, void *ud)
{
    struct kp_request *r = ud;
    return r->cbs.on_lightning != NULL ? r->cbs.on_lightning(ld, r->cbs.ud) : 0;
}

static size_t write_cb(char *ptr, size_t size, size_t nmemb, void *ud)
{
    struct kp_request *r = ud;
    size_t n = size * nmemb;
    if (r->pause_requested) {
        r->curl_paused = true;
        return CURL_WRITEFUNC_PAUSE;
    }
    if (r->decode_rc != 0)
        return 0;
    r->decode_rc = kp_decoder_feed(r->dec, ptr, n);
    return r->decode_rc == 0 ? n : 0; /* 0 aborts the transfer (CURLE_WRITE_ERROR) */
}

void kp_request_pause(struct kp_request *r)
{
    r->pause_requested = true;
}

void kp_request_resume(struct kp_request *r)
{
    r->pause_requested = false;
    if (r->curl_paused && r->easy != NULL) {
        r->curl_paused = false;
        curl_easy_pause(r->easy, CURLPAUSE_CONT);
    }
}

/* ---- attempts ---- */

static void finish(struct kp_request *r, enum kp_result_code code, int http, int curl_code,
                   const char *error);

static int start_attempt(struct kp_request *r)
{
    struct kp_client *cl = r->cl;
    r->tries++;
    r->decode_rc = 0;
    r->unattributed = 0;
    r->n_malformed = 0;
    r->malformed_log[0] = '\0';
    r->pause_requested = false;
    r->curl_paused = false;
    r->curl_err[0] = '\0';
    r->reading_valid = false;
    if (kp_decoder_reset(r->dec) != 0)
        return -ENOMEM;
    CURL *e = curl_easy_init();
    if (e == NULL)
        return -ENOMEM;
    if (r->call.key_index >= cl->n_keys) {
        curl_easy_cleanup(e);
        return -ENOKEY;
    }
    char url[KP_QUERY_MAX + 1024];
    if (kp_call_url(&r->call, cl->base_url, cl->key[r->call.key_index], url, sizeof(url)) != 0) {
        curl_easy_cleanup(e);
        return -ENAMETOOLONG;
    }
    curl_easy_setopt(e, CURLOPT_URL, url);
    explicit_bzero(url, sizeof(url)); /* curl keeps its own copy */
    curl_easy_setopt(e, CURLOPT_PRIVATE, r);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_cb);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->curl_err);
    curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_USERAGENT, "kdeals/0.1 (libcurl)");
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)cl->opts.connect_timeout_ms);
    curl_easy_setopt(
        e, CURLOPT_TIMEOUT_MS,
        (long)(r->call.with_offers ? cl->opts.offers_timeout_ms : cl->opts.timeout_ms));
    if (r->call.body != NULL) {
        if (r->headers == NULL) {
            r->headers = curl_slist_append(NULL, "Content-Type: application/json; charset=UTF-8");
            if (r->headers != NULL) {
                struct curl_slist *h = curl_slist_append(r->headers, "Expect:");
                if (h != NULL)
                    r->headers = h;
            }
        }
        curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->headers);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, r->call.body);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)r->call.body_len);
    }
    r->easy = e;
    r->state = RS_ACTIVE;
    r->attempt_start_ns = kd_mono_ns();
    cl->active++;
    {
        char shown[KP_QUERY_MAX + 1024];
        kp_call_url(&r->call, cl->base_url, NULL, shown, sizeof(shown));
        kd_debug("keepa: %s %s (try %u)", r->call.body ? "POST" : "GET", shown, r->tries);
    }
    if (curl_multi_add_handle(cl->multi, e) != CURLM_OK) {
        cl->active--;
        r->easy = NULL;
        r->state = RS_QUEUED;
        curl_easy_cleanup(e);
        return -EIO;
    }
    return 0;
}

static void pump(struct kp_client *cl)
{
    while (!cl->closing && cl->active < cl->opts.max_in_flight && cl->q_head != NULL) {
        struct kp_request *r = dequeue(cl);
        int rc = start_attempt(r);
        if (rc != 0) {
            char msg[160];
            snprintf(msg, sizeof(msg), "keepa: /%s: cannot start the request: %s",
                     kp_endpoint_name(r->call.ep),
                     rc == -ENAMETOOLONG ? "base URL too long"
                     : rc == -ENOKEY     ? "no API key of that index"
                                         : strerror(-rc));
            finish(r, KP_FAILED, 0, 0, msg);
        }
    }
}

static void backoff_cb(uv_timer_t *t)
{
    struct kp_request *r = t->data;
    enqueue(r->cl, r, true);
    pump(r->cl);
}

static int64_t backoff_ms(struct kp_client *cl, unsigned tries)
{
    int64_t cap = cl->opts.backoff_base_ms;
    for (unsigned i = 1; i < tries && cap < cl->opts.backoff_max_ms; i++)
        cap *= 2;
    if (cap > cl->opts.backoff_max_ms)
        cap = cl->opts.backoff_max_ms;
    /* "Equal jitter": half fixed, half random, so retries never bunch up at zero. */
    int64_t half = cap / 2;
    return half + (int64_t)(rng_next(cl) % (uint64_t)(cap - half + 1));
}

static void req_free_cb(uv_handle_t *h)
{
    struct kp_request *r = h->data;
    struct kp_client *cl = r->cl;
    free(r);
    cl->open_handles--;
    maybe_free_client(cl);
}

static void build_outcomes(struct kp_request *r, enum kp_result_code code,
                           struct kp_asin_outcome *out, size_t *n)
{
    size_t k = 0;
    for (size_t i = 0; i < r->call.n_asins; i++) {
        snprintf(out[k].asin, KP_ASIN_MAX, "%s", r->call.asins[i]);
        if (r->seen[i])
            out[k].status = r->offers_failed[i] ? KP_ASIN_OFFERS_FAILED : KP_ASIN_OK;
        else if (r->malformed[i])
            out[k].status = KP_ASIN_MALFORMED;
        else
            out[k].status = code == KP_OK ? KP_ASIN_MISSING : KP_ASIN_REJECTED;
        k++;
    }
    for (size_t i = 0; i < r->n_unrequested; i++) {
        snprintf(out[k].asin, KP_ASIN_MAX, "%s", r->unrequested[i]);
        out[k].status = KP_ASIN_UNREQUESTED;
        k++;
    }
    *n = k;
}

static void finish_flags(struct kp_request *r, enum kp_result_code code, int http, int curl_code,
                         const char *error, bool retryable, bool key_rejected)
{
    struct kp_client *cl = r->cl;
    r->state = RS_DONE;
    if (r->all_prev != NULL)
        r->all_prev->all_next = r->all_next;
    else
        cl->all = r->all_next;
    if (r->all_next != NULL)
        r->all_next->all_prev = r->all_prev;
    r->all_prev = r->all_next = NULL;
    struct kp_result res = {0};
    res.code = code;
    res.ep = r->call.ep;
    res.http_status = http;
    res.curl_code = curl_code;
    res.tries = r->tries;
    res.maybe_charged = r->maybe_charged;
    res.retryable = retryable && code == KP_FAILED;
    res.key_rejected = key_rejected && code == KP_PERMANENT;
    res.reading_valid = r->reading_valid;
    res.reading = r->reading;
    r->env = *kp_decoder_envelope(r->dec);
    /* Server text goes to logs and screens: never let it carry the key. */
    char clean[sizeof(r->env.error_message)];
    kd_redact(r->env.error_type, clean, sizeof(r->env.error_type));
    memcpy(r->env.error_type, clean, sizeof(r->env.error_type));
    kd_redact(r->env.error_message, clean, sizeof(clean));
    memcpy(r->env.error_message, clean, sizeof(clean));
    kd_redact(r->env.error_details, clean, sizeof(r->env.error_details));
    memcpy(r->env.error_details, clean, sizeof(r->env.error_details));
    res.envelope = &r->env;
    if (error != NULL)
        kd_redact(error, res.error, sizeof(res.error));
    if (r->call.ep == KP_EP_PRODUCT) {
        build_outcomes(r, code, r->outcomes, &res.n_asins);
        res.asins = r->outcomes;
    }
    if (r->cbs.on_done != NULL)
        r->cbs.on_done(&res, r->cbs.ud);
    kp_decoder_free(r->dec);
    r->dec = NULL;
    kp_call_free(&r->call);
    curl_slist_free_all(r->headers);
    r->headers = NULL;
    uv_timer_stop(&r->backoff);
    uv_close((uv_handle_t *)&r->backoff, req_free_cb);
}

static void finish(struct kp_request *r, enum kp_result_code code, int http, int curl_code,
                   const char *error)
{
    finish_flags(r, code, http, curl_code, error, false, false);
}

/* Keepa's answer to a key it does not know: a 4xx whose token fields are all zero (a real
 * key always has a refill rate and a next tick; docs/keepa-api.md §1). */
static bool zeroed_envelope(const struct kp_envelope *e, int http)
{
    return http >= 400 && http < 500 && http != 429 &&
           (e->have & KP_ENV_TOKEN_CORE) == KP_ENV_TOKEN_CORE && e->tokens_left == 0 &&
           e->refill_in_ms == 0 && e->refill_rate == 0;
}

/* A zeroed 4xx envelope (bad key) is not a bucket state (docs/keepa-api.md §1). */
static bool reading_usable(const struct kp_envelope *e, int http)
{
    if ((e->have & KP_ENV_TOKEN_CORE) != KP_ENV_TOKEN_CORE)
        return false;
    return !zeroed_envelope(e, http);
}

/* Keeps the envelope of the attempt's answer (HTTP status HTTP) as its reading, if usable,
 * and hands it to on_reading. PRE_US and FIRST_US are curl's pretransfer and first-byte
 * times of the attempt. */
static void take_reading(struct kp_request *r, long http, curl_off_t pre_us, curl_off_t first_us,
                         int64_t now)
{
    struct kp_client *cl = r->cl;
    const struct kp_envelope *env = kp_decoder_envelope(r->dec);
    if (http <= 0 || !reading_usable(env, (int)http))
        return;
    struct kp_reading *rd = &r->reading;
    rd->tokens_left = env->tokens_left;
    rd->refill_in_ms = env->refill_in_ms;
    rd->refill_rate = env->refill_rate;
    rd->timestamp_ms = env->timestamp_ms;
    rd->tokens_consumed = (env->have & KP_ENV_TOKENS_CONSUMED) ? env->tokens_consumed : 0;
    rd->processing_ms = (env->have & KP_ENV_PROCESSING) ? env->processing_ms : -1;
    rd->token_flow_reduction = env->token_flow_reduction;
    rd->http_status = (int)http;
    rd->ep = r->call.ep;
    rd->local_mono_ns_sent = r->attempt_start_ns + (int64_t)pre_us * 1000;
    rd->local_mono_ns_received =
        first_us > 0 ? r->attempt_start_ns + (int64_t)first_us * 1000 : now;
    r->reading_valid = true;
    if (cl->opts.on_reading != NULL)
        cl->opts.on_reading(rd, cl->opts.reading_ud);
}

/* The reading of an attempt cancelled in flight, when its envelope had already arrived. */
static void cancel_reading(struct kp_request *r)
{
    long http = 0;
    curl_off_t pre_us = 0, first_us = 0;
    curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &http);
    curl_easy_getinfo(r->easy, CURLINFO_PRETRANSFER_TIME_T, &pre_us);
    curl_easy_getinfo(r->easy, CURLINFO_STARTTRANSFER_TIME_T, &first_us);
    take_reading(r, http, pre_us, first_us, kd_mono_ns());
}

static bool transient_curl(CURLcode c)
{
    switch (c) {
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_BAD_CONTENT_ENCODING:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_WRITE_ERROR: /* only when the decoder refused the body: handled earlier */
        return true;
    default:
        return false;
    }
}

static void attempt_done(struct kp_request *r, CURLcode cc)
{
    struct kp_client *cl = r->cl;
    /* A call may ask for fewer attempts (kp_call.max_tries): a dear request is retried only
     * through the token bucket, with a new grant. */
    unsigned max_tries = r->call.max_tries > 0 ? r->call.max_tries : cl->opts.max_tries;
    CURL *e = r->easy;
    long http = 0;
    curl_off_t pre_us = 0, first_us = 0;
    long req_size = 0;
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &http);
    curl_easy_getinfo(e, CURLINFO_PRETRANSFER_TIME_T, &pre_us);
    curl_easy_getinfo(e, CURLINFO_STARTTRANSFER_TIME_T, &first_us);
    curl_easy_getinfo(e, CURLINFO_REQUEST_SIZE, &req_size);
    curl_multi_remove_handle(cl->multi, e);
    curl_easy_cleanup(e);
    r->easy = NULL;
    cl->active--;
    int64_t now = kd_mono_ns();

    if (cc == CURLE_OK && r->decode_rc == 0)
        r->decode_rc = kp_decoder_finish(r->dec);

    const struct kp_envelope *env = kp_decoder_envelope(r->dec);
    take_reading(r, http, pre_us, first_us, now);

    const char *ep = kp_endpoint_name(r->call.ep);
    if (r->n_malformed > 0)
        kd_warn("keepa: /%s: %u products with fields of the wrong JSON type withheld, reported "
                "malformed:%s%s (try %u of %u)",
                ep, r->n_malformed, r->malformed_log, r->n_malformed > 4 ? " ..." : "", r->tries,
                max_tries);
    char msg[512];
    bool costs = r->call.ep != KP_EP_TOKEN;
    bool retry = false;
    enum kp_result_code final = KP_FAILED;

    if (r->decode_rc == -ECANCELED) {
        finish(r, KP_CANCELLED, (int)http, cc, "keepa: stopped by the consumer");
        return;
    }
    if (cc != CURLE_OK && r->decode_rc == 0) {
        /* Transport failure: reset, timeout, refused connection... */
        char clean[CURL_ERROR_SIZE];
        kd_redact(r->curl_err[0] ? r->curl_err : curl_easy_strerror(cc), clean, sizeof(clean));
        snprintf(msg, sizeof(msg), "keepa: /%s: %s (curl %d, try %u of %u)", ep, clean, (int)cc,
                 r->tries, max_tries);
        if (costs && req_size > 0 && cc != CURLE_COULDNT_CONNECT &&
            cc != CURLE_COULDNT_RESOLVE_HOST)
            r->maybe_charged = true; /* the server may have done (and billed) the work */
        retry = transient_curl(cc);
    } else if (http == 200) {
        unsigned shape = kp_decoder_envelope(r->dec)->shape_errors;
        if (r->decode_rc == 0 && r->unattributed == 0 && shape == 0) {
            finish(r, KP_OK, 200, cc, NULL);
            return;
        }
        if (r->decode_rc == 0 && shape > 0)
            snprintf(msg, sizeof(msg),
                     "keepa: /%s: bad response body: \"products\" is not an array of objects "
                     "(%u misplaced values, try %u of %u)",
                     ep, shape, r->tries, max_tries);
        else if (r->decode_rc == 0)
            snprintf(msg, sizeof(msg),
                     "keepa: /%s: bad response body: %u products without a readable asin "
                     "(try %u of %u)",
                     ep, r->unattributed, r->tries, max_tries);
        else
            snprintf(msg, sizeof(msg), "keepa: /%s: bad response body: %s (try %u of %u)", ep,
                     kp_decoder_error(r->dec), r->tries, max_tries);
        if (costs)
            r->maybe_charged = true;
        retry = r->decode_rc == -EBADMSG; /* a truncated answer may come whole next time */
    } else if (http == 429) {
        snprintf(msg, sizeof(msg), "keepa: /%s: 429 not enough tokens (tokensLeft %.1f)", ep,
                 env->tokens_left);
        final = KP_NOT_ADMITTED;
    } else if (http == 402) {
        snprintf(msg, sizeof(msg), "keepa: /%s: 402 the API key has no access: %s", ep,
                 env->error_message[0] ? env->error_message : "payment required");
        final = KP_KEY_UNUSABLE;
    } else if (http >= 500 || http == 0) {
        snprintf(msg, sizeof(msg), "keepa: /%s: HTTP %ld %s (try %u of %u)", ep, http,
                 env->error_message, r->tries, max_tries);
        if (costs && !(env->have & KP_ENV_TOKENS_CONSUMED))
            r->maybe_charged = true;
        retry = true;
    } else {
        snprintf(msg, sizeof(msg), "keepa: /%s: HTTP %ld %s: %s", ep, http,
                 env->error_type[0] ? env->error_type : "rejected",
                 env->error_message[0] ? env->error_message : "(no message)");
        final = KP_PERMANENT;
    }

    if (retry && r->tries < max_tries && !cl->closing) {
        int64_t wait = backoff_ms(cl, r->tries);
        kd_warn("%s; retrying in %lld ms", msg, (long long)wait);
        r->state = RS_BACKOFF;
        uv_timer_start(&r->backoff, backoff_cb, (uint64_t)wait, 0);
        return;
    }
    if (final == KP_PERMANENT || final == KP_KEY_UNUSABLE || retry || final == KP_FAILED) {
        char shown[KP_QUERY_MAX + 1024];
        kp_call_url(&r->call, cl->base_url, NULL, shown, sizeof(shown));
        kd_warn("%s [%s]", msg, shown);
    }
    finish_flags(r, final, (int)http, cc, msg, retry, zeroed_envelope(env, (int)http));
}

static void drain(struct kp_client *cl)
{
    CURLMsg *m;
    int pending;
    while ((m = curl_multi_info_read(cl->multi, &pending)) != NULL) {
        if (m->msg != CURLMSG_DONE)
            continue;
        char *priv = NULL;
        CURL *e = m->easy_handle;
        CURLcode cc = m->data.result;
        curl_easy_getinfo(e, CURLINFO_PRIVATE, &priv);
        struct kp_request *r = (struct kp_request *)priv;
        KD_ASSERT(r != NULL && r->easy == e);
        attempt_done(r, cc);
    }
    pump(cl);
}

int kp_client_submit(struct kp_client *cl, struct kp_call *call, const struct kp_request_cbs *cbs,
                     struct kp_request **out)
{
    if (out != NULL)
        *out = NULL;
    if (cl->closing)
        return -ESHUTDOWN;
    struct kp_request *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return -ENOMEM;
    r->cl = cl;
    if (cbs != NULL)
        r->cbs = *cbs;
    struct kp_decode_cbs dc = {.on_product = req_on_product,
                               .on_deal = req_on_deal,
                               .on_seller = req_on_seller,
                               .on_asin = req_on_asin,
                               .on_lightning = req_on_lightning,
                               .ud = r};
    r->dec = kp_decoder_new(&cl->opts.decode, &dc);
    if (r->dec == NULL) {
        free(r);
        return -ENOMEM;
    }
    r->call = *call;
    call->body = NULL; /* moved */
    call->body_len = 0;
    uv_timer_init(cl->loop, &r->backoff);
    r->backoff.data = r;
    cl->open_handles++;
    r->all_next = cl->all;
    if (cl->all != NULL)
        cl->all->all_prev = r;
    cl->all = r;
    if (out != NULL)
        *out = r;
    enqueue(cl, r, false);
    pump(cl);
    return 0;
}

static void maybe_free_client(struct kp_client *cl)
{
    if (!cl->closing || cl->open_handles > 0)
        return;
    void (*cb)(void *) = cl->on_closed;
    void *ud = cl->closed_ud;
    explicit_bzero(cl->key, sizeof(cl->key));
    free(cl->base_url);
    free(cl);
    if (cb != NULL)
        cb(ud);
}

void kp_client_close(struct kp_client *cl, void (*on_closed)(void *ud), void *ud)
{
    if (cl->closing)
        return;
    cl->closing = true;
    cl->on_closed = on_closed;
    cl->closed_ud = ud;
    while (cl->all != NULL) {
        struct kp_request *r = cl->all;
        if (r->state == RS_QUEUED) {
            /* Unlink from the queue. */
            struct kp_request **pp = &cl->q_head;
            struct kp_request *prev = NULL;
            while (*pp != NULL && *pp != r) {
                prev = *pp;
                pp = &(*pp)->next;
            }
            if (*pp == r) {
                *pp = r->next;
                if (cl->q_tail == r)
                    cl->q_tail = prev;
                cl->queued--;
            }
        } else if (r->state == RS_ACTIVE && r->easy != NULL) {
            /* Sent, it may have been admitted and charged: say so, with the reading if the
             * envelope had arrived (docs/architecture.md, "Tokens": a cancelled request is
             * not refunded as if it had never been sent). */
            long sent = 0;
            curl_easy_getinfo(r->easy, CURLINFO_REQUEST_SIZE, &sent);
            if (r->call.ep != KP_EP_TOKEN && sent > 0)
                r->maybe_charged = true;
            cancel_reading(r);
            curl_multi_remove_handle(cl->multi, r->easy);
            curl_easy_cleanup(r->easy);
            r->easy = NULL;
            cl->active--;
        }
        finish(r, KP_CANCELLED, 0, 0, "keepa: client closed");
    }
    curl_multi_cleanup(cl->multi);
    cl->multi = NULL;
    while (cl->socks != NULL)
        sock_unwatch(cl, cl->socks);
    uv_timer_stop(&cl->timeout);
    uv_close((uv_handle_t *)&cl->timeout, handle_closed);
}
