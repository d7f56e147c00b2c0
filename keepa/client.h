/*
 * client.h: the Keepa HTTP client (docs/architecture.md, "Talking to Keepa"): one curl multi handle
 * per process, driven by that process's libuv loop, decoding every response body as it streams in.
 *
 * A caller builds a struct kp_call (keepa/request.h) and submits it with callbacks: products,
 * deals, sellers or query ASINs arrive one at a time while the body streams; every response
 * that carries a token reading (errors and 429 included) reaches on_reading, so the shared
 * bucket can re-anchor; and exactly one on_done reports the outcome, classified:
 *
 *   KP_OK            200 and a complete body.
 *   KP_NOT_ADMITTED  429: the reading went to on_reading; reschedule, do not resend blindly.
 *   KP_PERMANENT     400/404/405 (other 4xx): this request is wrong; resending will not help.
 *   KP_KEY_UNUSABLE  402: the key has no access; stop spending.
 *   KP_FAILED        5xx, connection resets, timeouts, truncated or malformed bodies, after
 *                    max_tries attempts (the call's own kp_call.max_tries when it sets one)
 *                    with exponential backoff and jitter (uv timers, never sleeping);
 *                    maybe_charged says a lost answer may have cost tokens.
 *                    Bodies over the decoder's size or depth limit, and /product answers with
 *                    a product whose asin is missing or not a string (which would otherwise
 *                    make every requested ASIN look MISSING), fail without a retry.
 *   KP_CANCELLED     the client closed first (maybe_charged when the request had been sent:
 *                    Keepa charges what it admitted, whoever stops listening).
 *
 * retryable says a KP_FAILED outcome was transient (5xx, a reset, a timeout, a truncated body):
 * with max_tries 1 the caller decides whether to retry, and can gate each attempt (the spending
 * policy gives every attempt its own token grant). key_rejected says a 400 came with Keepa's
 * zeroed envelope, its answer to a key that does not exist.
 *
 * /product requests also get a per-ASIN outcome (OK, MISSING, OFFERS_FAILED, REJECTED,
 * UNREQUESTED, MALFORMED), so a partial answer is never silently dropped. A product whose
 * known fields have the wrong JSON type (kp_product.type_errors > 0, e.g. "stats": [] or a
 * price given as a string) is not passed to on_product: its absent fields would read as
 * "Keepa does not know", and a consumer would judge it on them. Its ASIN is MALFORMED instead
 * (one warning per answer names such ASINs and their counts), and the request still succeeds
 * for the well-typed products beside it. A product delivered in an
 * attempt that later failed (reset mid-body) counts as delivered, and may be delivered again
 * by the retry: consumers must be idempotent per ASIN.
 *
 * The key is added to the URL only inside the transport, registered with kd_log_add_secret,
 * and never logged: log lines use the "key=<redacted>" form and curl's error text is redacted.
 * Not thread-safe: one client per loop, used from the loop's thread only.
 */
#ifndef KP_CLIENT_H
#define KP_CLIENT_H

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#include "keepa/decode.h"
#include "keepa/request.h"

/* One server token reading (docs/keepa-api.md §5). */
struct kp_reading {
    double tokens_left;
    int64_t refill_in_ms;
    double refill_rate;
    int64_t timestamp_ms; /* server wall clock, epoch ms */
    double tokens_consumed;
    int64_t processing_ms;
    double token_flow_reduction;
    int http_status;
    enum kp_endpoint ep;
    int64_t local_mono_ns_sent;     /* request about to go out (kd_mono_ns) */
    int64_t local_mono_ns_received; /* first byte of the answer */
};

enum kp_result_code {
    KP_OK = 0,
    KP_NOT_ADMITTED,
    KP_PERMANENT,
    KP_KEY_UNUSABLE,
    KP_FAILED,
    KP_CANCELLED,
};

enum kp_asin_status {
    KP_ASIN_OK = 0,
    KP_ASIN_MISSING,       /* asked, 200 answer without it */
    KP_ASIN_OFFERS_FAILED, /* delivered with offersSuccessful:false although offers were asked */
    KP_ASIN_REJECTED,      /* the request was not executed (429, 4xx, failure) */
    KP_ASIN_UNREQUESTED,   /* delivered although never asked */
    KP_ASIN_MALFORMED,     /* delivered with fields of the wrong JSON type (type_errors > 0)
                            * and withheld from on_product: not answered, ask again */
};

struct kp_asin_outcome {
    char asin[KP_ASIN_MAX];
    enum kp_asin_status status;
};

struct kp_result {
    enum kp_result_code code;
    enum kp_endpoint ep;
    int http_status; /* of the last attempt; 0 when no HTTP answer arrived */
    int curl_code;   /* CURLcode of the last attempt */
    unsigned tries;
    bool maybe_charged; /* an attempt may have been charged without a usable answer */
    bool retryable;     /* KP_FAILED: transient, another attempt may succeed */
    bool key_rejected;  /* KP_PERMANENT: a 400 with the zeroed envelope of an invalid key */
    bool reading_valid; /* reading holds the last attempt's reading */
    struct kp_reading reading;
    const struct kp_envelope *envelope; /* last attempt's envelope (error text included) */
    char error[256];                    /* one line, key redacted; "" on success */
    size_t n_asins;                     /* /product: requested ASINs, then unrequested ones */
    const struct kp_asin_outcome *asins;
};

struct kp_request;

/*
 * Callbacks of one request. The object callbacks are those of keepa/decode.h (returning
 * nonzero aborts the transfer: KP_CANCELLED). on_done runs exactly once, unless submit
 * failed; the result and everything it points to are valid only during the call.
 */
struct kp_request_cbs {
    int (*on_product)(const struct kp_product *p, void *ud);
    int (*on_deal)(const struct kp_deal *d, void *ud);
    int (*on_seller)(const struct kp_seller *s, void *ud);
    int (*on_asin)(const char *asin, void *ud);
    int (*on_lightning)(const struct kp_lightning_deal *ld, void *ud);
    void (*on_done)(const struct kp_result *res, void *ud);
    void *ud;
};

struct kp_client_opts {
    const char *base_url;        /* e.g. https://api.keepa.com or http://127.0.0.1:PORT */
    const char *api_key;         /* copied; registered with kd_log_add_secret */
    const char *const *api_keys; /* or several (N_KEYS, up to KP_KEYS_MAX): a call's key_index
                                    picks one; copied and registered like api_key */
    unsigned n_keys;
    unsigned max_in_flight;     /* default 4; beyond it requests queue */
    int64_t connect_timeout_ms; /* default 10 000 */
    int64_t timeout_ms;         /* total, default 30 000 */
    int64_t offers_timeout_ms;  /* total for /product with offers, default 120 000 */
    unsigned max_tries;         /* default 3 (1 = no retry) */
    int64_t backoff_base_ms;    /* default 500; attempt n waits ~base*2^(n-1), jittered */
    int64_t backoff_max_ms;     /* default 30 000 */
    struct kp_decode_opts decode;
    void (*on_reading)(const struct kp_reading *r, void *ud);
    void *reading_ud;
};

struct kp_client;

#define KP_KEYS_MAX 8 /* keys one client holds (base/key.h KD_KEYS_MAX) */

/*
 * Creates a client on LOOP with API_KEY, or the N_KEYS of API_KEYS. A call whose key_index is
 * not one of them fails with KP_FAILED before anything is sent. Returns 0, or -EINVAL (no base
 * URL or key), -ENOMEM, -EIO (curl init); ERR then says why. curl_global_init must have run
 * (kp_global_init does it).
 */
int kp_client_new(uv_loop_t *loop, const struct kp_client_opts *opts, struct kp_client **out,
                  char *err, size_t errsz);

/* Initialises libcurl once per process, before any thread exists. Returns 0 or -EIO. */
int kp_global_init(void);

/*
 * Submits CALL. Its contents move into the request (CALL's body pointer is taken: the
 * caller must not free it afterwards). OUT (may be NULL) receives a handle valid until
 * on_done returns. Returns 0, or -ESHUTDOWN (closing), -ENOMEM; on failure no callback runs
 * and CALL still owns its body. When a slot is free the transfer starts at once; if it
 * cannot be started (out of memory) on_done runs with KP_FAILED before submit returns.
 */
int kp_client_submit(struct kp_client *cl, struct kp_call *call, const struct kp_request_cbs *cbs,
                     struct kp_request **out);

/*
 * Backpressure: after kp_request_pause (typically from on_product) the transfer stops
 * delivering data after the current chunk (CURL_WRITEFUNC_PAUSE); kp_request_resume
 * continues it (curl_easy_pause). Call resume from outside the request's own callbacks.
 * A paused transfer still runs against its total timeout.
 */
void kp_request_pause(struct kp_request *r);
void kp_request_resume(struct kp_request *r);

/* Requests started and not finished / waiting for a slot. */
unsigned kp_client_in_flight(const struct kp_client *cl);
unsigned kp_client_queued(const struct kp_client *cl);

/*
 * Cancels every request (each gets on_done with KP_CANCELLED), closes the libuv handles and
 * frees the client once they are closed; ON_CLOSED (may be NULL) runs then, from the loop.
 * Must not be called from inside one of the client's callbacks.
 */
void kp_client_close(struct kp_client *cl, void (*on_closed)(void *ud), void *ud);

/* Short names for logs and the CLI. */
const char *kp_result_name(enum kp_result_code c);
const char *kp_asin_status_name(enum kp_asin_status s);

#endif
