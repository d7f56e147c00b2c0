/*
 * server.c: kdeals-sim's HTTP layer and endpoint logic (see server.h, sim/README.md).
 *
 * Request flow for a cost-bearing endpoint (/product, /deal, /seller, /query):
 *   key check (400 zeroed / 402) -> fault draw (storm429) -> admission pre-check (429) ->
 *   http500/503 (charged 0) -> parameters (400, charged 0) -> payload and cost ->
 *   admission + full charge in one bucket step -> no_products / reset / truncate / malformed
 *   shaping -> gzip when accepted -> optional latency (connection suspended, resumed by the
 *   timer thread). A hostile body (endless, huge, drip, deep, mistyped) takes the place of the
 *   shaping step: endless, huge and deep are produced by a content reader from the position
 *   alone, so they hold no memory beyond the envelope and the real body, and are never gzip'd;
 *   drip sends the real body a few bytes per reader call and suspends the connection between
 *   calls (the timer thread resumes it), so a dripping client holds no MHD thread.
 * Invariants: tokensConsumed in a body equals the balance change that request caused; the
 * 7 envelope fields come first in every JSON body; bodies are gzip'd whenever the request
 * accepts gzip, error bodies included; POST bodies beyond SIM_MAX_BODY are refused with 413
 * and never buffered.
 */
#include "sim/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include <yajl/yajl_tree.h>
#include <zlib.h>

#include "base/clock.h"
#include "base/log.h"
#include "sim/browse.h"
#include "sim/bucket.h"
#include "sim/catalog.h"
#include "sim/deals.h"
#include "sim/faults.h"
#include "sim/jbuf.h"
#include "sim/oracle.h"
#include "sim/render.h"
#include "sim/selection.h"
#include "sim/tracking.h"
#include "sim/truth.h"

#define SIM_MAX_BODY (1024 * 1024)
#define DEAL_CACHE_N 8
#define DEAL_MEMO_N  4     /* selections whose scans keep a memo (sim/deals.h) */
#define DEAL_KEY_MAX 24576 /* 2 x 500 category ids of up to 20 digits fit */
#define MAX_DELAYED  4096

enum endpoint {
    EP_TOKEN,
    EP_PRODUCT,
    EP_DEAL,
    EP_SELLER,
    EP_QUERY,
    EP_SEARCH,
    EP_CATEGORY,
    EP_BESTSELLERS,
    EP_TOPSELLER,
    EP_LIGHTNING,
    EP_TRACKING,
    EP_OTHER,
    EP_COUNT
};
/* The path of each endpoint (its ledger name without the slash). */
static const char *EP_NAMES[EP_COUNT] = {"token",     "product",       "deal",     "seller",
                                         "query",     "search",        "category", "bestsellers",
                                         "topseller", "lightningdeal", "tracking", "other"};

struct deal_cache_entry {
    int used;
    char key[DEAL_KEY_MAX];
    int64_t created_ns;
    uint64_t lru;
    struct sim_deal_result res;
};

/* A selection's scan memo, lent to one scan at a time (under cache_mu). */
struct deal_memo_slot {
    int used, busy;
    char key[DEAL_KEY_MAX];
    uint64_t lru;
    struct sim_deal_memo memo;
};

struct delayed {
    struct MHD_Connection *conn;
    int64_t due_ns;
};

struct sim_server {
    struct sim_config cfg;
    struct sim_catalog cat;
    struct sim_bucket bucket;      /* every key's, or the first key's with bucket_per_key */
    struct sim_bucket *key_bucket; /* bucket_per_key: key i > 0 has key_bucket[i - 1] */
    int64_t key_429[SIM_MAX_KEYS]; /* bucket_per_key: 429s per key (under ledger_mu) */
    struct sim_faults faults;
    int64_t start_mono_ns;
    int64_t start_wall_ms;
    int64_t catalog_start_ms; /* the catalog clock at the start (catalog_ms_at) */
    int64_t base_keepa_min;   /* the catalog's Keepa minute at the start */
    struct MHD_Daemon *mhd;

    pthread_mutex_t ledger_mu;
    int64_t requests, http_429, asins_requested;
    int64_t ep_requests[EP_COUNT], ep_tokens[EP_COUNT];
    uint8_t *asin_seen; /* bitmap, one bit per product */
    int64_t asins_distinct;
    int32_t *offers_fetched_min; /* per product: simulated minute of the last offers fetch + 1 */

    pthread_mutex_t cache_mu;
    struct deal_cache_entry cache[DEAL_CACHE_N];
    uint64_t cache_clock;
    struct deal_memo_slot memo[DEAL_MEMO_N];

    pthread_mutex_t delay_mu;
    pthread_cond_t delay_cv;
    pthread_t delay_thread;
    int delay_stop;
    size_t n_delayed;
    struct delayed delayed[MAX_DELAYED];

    char *replay_deal_tail, *replay_product_tail; /* payload after the envelope, with '}' */
    int64_t replay_product_cost;

    struct sim_tracking *tracking;
    pthread_mutex_t stats_mu; /* builds cat_stats once, on the first request that needs it */
    struct sim_cat_stats cat_stats;
    int cat_stats_ready;
};

/* Per-request state kept by MHD between callbacks. */
struct req {
    struct sim_buf body;
    int too_big;
    int suspended;
    struct MHD_Response *pending;
    unsigned pending_status;
    int64_t start_ns;
};

/* ---------- clocks ---------- */

static int64_t now_wall_ms(struct sim_server *s, int64_t mono_ns)
{
    if (s->cfg.clock_ms > 0)
        return s->cfg.clock_ms + (mono_ns - s->start_mono_ns) / KD_NS_PER_MS;
    return kd_wall_ms();
}

/*
 * The catalog clock (epoch ms) ELAPSED_MS real ms after the start, at wall time WALL_MS: it runs
 * 60 000 / minute_ms times as fast as the wall clock from catalog_start_ms, so the catalog moves
 * as fast as the bucket ticks, and never passes the wall clock (the answers' timestamp). Without
 * acceleration catalog_start_ms is the start wall time and the catalog clock is the wall clock
 * (two servers with the same seed agree at the same moment). With acceleration the catalog
 * starts behind (sim_server_start), catches the wall clock up after catch_up_hours and then
 * follows it: product timestamps are never ahead of the answer's own.
 */
static int64_t catalog_ms_at(const struct sim_server *s, int64_t elapsed_ms, int64_t wall_ms)
{
    __int128 sim_ms = (__int128)elapsed_ms * 60000 / s->cfg.minute_ms;
    int64_t t = s->catalog_start_ms + (int64_t)sim_ms;
    return t < wall_ms ? t : wall_ms;
}

static int64_t keepa_min_of(struct sim_server *s, const struct sim_bucket_view *v)
{
    (void)v;
    int64_t mono = kd_mono_ns();
    return kd_ms_to_keepa_min(
        catalog_ms_at(s, (mono - s->start_mono_ns) / KD_NS_PER_MS, now_wall_ms(s, mono)));
}

/* The catalog's Keepa minute at wall-clock time MS (the oracle's at_ms= parameters). */
static int64_t keepa_min_of_wall(const void *clock, int64_t ms)
{
    const struct sim_server *s = clock;
    return kd_ms_to_keepa_min(catalog_ms_at(s, ms - s->start_wall_ms, ms));
}

/* ---------- responses ---------- */

static int accepts_gzip(struct MHD_Connection *conn)
{
    const char *ae = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Accept-Encoding");
    if (ae == NULL)
        return 0;
    for (const char *p = ae; *p; p++)
        if (strncasecmp(p, "gzip", 4) == 0)
            return 1;
    return 0;
}

/* gzip of IN (LEN) into a malloc'd buffer; NULL on failure. */
static char *gzip_bytes(const char *in, size_t len, int level, size_t *out_len)
{
    z_stream zs;
    memset(&zs, 0, sizeof(zs));
    if (deflateInit2(&zs, level, Z_DEFLATED, 31, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return NULL;
    uLong bound = deflateBound(&zs, (uLong)len) + 32;
    char *out = malloc(bound);
    if (out == NULL) {
        deflateEnd(&zs);
        return NULL;
    }
    zs.next_in = (Bytef *)(uintptr_t)in;
    zs.avail_in = (uInt)len;
    zs.next_out = (Bytef *)out;
    zs.avail_out = (uInt)bound;
    int rc = deflate(&zs, Z_FINISH);
    *out_len = zs.total_out;
    deflateEnd(&zs);
    if (rc != Z_STREAM_END) {
        free(out);
        return NULL;
    }
    return out;
}

struct reset_body {
    char *data;
    size_t cut;
};

static ssize_t reset_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct reset_body *rb = cls;
    if (pos >= rb->cut)
        return MHD_CONTENT_READER_END_WITH_ERROR;
    size_t n = rb->cut - (size_t)pos;
    if (n > max)
        n = max;
    memcpy(buf, rb->data + pos, n);
    return (ssize_t)n;
}

static void reset_free(void *cls)
{
    struct reset_body *rb = cls;
    free(rb->data);
    free(rb);
}

enum shape { SHAPE_NONE, SHAPE_RESET, SHAPE_TRUNCATE, SHAPE_MALFORMED };

static void schedule_resume(struct sim_server *s, struct MHD_Connection *conn, int64_t due_ns);
static enum MHD_Result queue_response(struct sim_server *s, struct MHD_Connection *conn,
                                      struct req *rq, unsigned status, struct MHD_Response *resp,
                                      int gz, int64_t latency_ms);
static void emit_tree(struct sim_buf *b, yajl_val v, int depth);

/*
 * Sends BODY (ownership taken) with STATUS, shaped by SHAPE, gzip'd when accepted, after
 * LATENCY_MS. Returns MHD's verdict.
 */
static enum MHD_Result send_body(struct sim_server *s, struct MHD_Connection *conn, struct req *rq,
                                 unsigned status, struct sim_buf *body, enum shape shape,
                                 int64_t latency_ms)
{
    if (!sim_buf_ok(body)) {
        sim_buf_free(body);
        sim_buf_puts(body,
                     "{\"error\":{\"type\":\"internalError\",\"message\":\"out of memory\"}}");
        status = MHD_HTTP_INTERNAL_SERVER_ERROR;
        shape = SHAPE_NONE;
    }
    char *data = body->data;
    size_t len = body->len;
    sim_buf_init(body);
    if (data == NULL) {
        data = strdup("{}");
        len = data ? 2 : 0;
    }
    if (shape == SHAPE_TRUNCATE && len > 1) {
        len = len / 2;
    } else if (shape == SHAPE_MALFORMED) {
        static const char *garbage[2] = {
            "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>",
            "{\"timestamp\":,\"tokensLeft\":[}{"};
        free(data);
        data = strdup(garbage[(len ^ (size_t)rq->start_ns) & 1]);
        len = data ? strlen(data) : 0;
    }
    int gz = accepts_gzip(conn);
    if (gz && data != NULL) {
        size_t zlen;
        char *z = gzip_bytes(data, len, s->cfg.gzip_level, &zlen);
        if (z != NULL) {
            free(data);
            data = z;
            len = zlen;
        } else {
            gz = 0;
        }
    }
    struct MHD_Response *resp;
    if (shape == SHAPE_RESET && len > 1) {
        struct reset_body *rb = malloc(sizeof(*rb));
        if (rb == NULL) {
            free(data);
            return MHD_NO;
        }
        rb->data = data;
        rb->cut = len / 2;
        resp = MHD_create_response_from_callback(len, 4096, reset_reader, rb, reset_free);
        if (resp == NULL)
            reset_free(rb);
    } else {
        resp = MHD_create_response_from_buffer(len, data, MHD_RESPMEM_MUST_FREE);
        if (resp == NULL)
            free(data);
    }
    if (resp == NULL)
        return MHD_NO;
    return queue_response(s, conn, rq, status, resp, gz, latency_ms);
}

/*
 * Adds the common headers to RESP (ownership taken) and queues it with STATUS, now or after
 * LATENCY_MS (the connection is suspended meanwhile). Returns MHD's verdict.
 */
static enum MHD_Result queue_response(struct sim_server *s, struct MHD_Connection *conn,
                                      struct req *rq, unsigned status, struct MHD_Response *resp,
                                      int gz, int64_t latency_ms)
{
    MHD_add_response_header(resp, "Content-Type", "application/json;charset=UTF-8");
    if (gz)
        MHD_add_response_header(resp, "Content-Encoding", "gzip");
    MHD_add_response_header(resp, "Server", "kdeals-sim");
    if (latency_ms > 0) {
        rq->pending = resp;
        rq->pending_status = status;
        rq->suspended = 1;
        MHD_suspend_connection(conn);
        schedule_resume(s, conn, kd_mono_ns() + latency_ms * KD_NS_PER_MS);
        return MHD_YES;
    }
    enum MHD_Result r = MHD_queue_response(conn, status, resp);
    MHD_destroy_response(resp);
    return r;
}

/* ---------- latency: suspend/resume ---------- */

static void schedule_resume(struct sim_server *s, struct MHD_Connection *conn, int64_t due_ns)
{
    pthread_mutex_lock(&s->delay_mu);
    if (!s->delay_stop && s->n_delayed < MAX_DELAYED) {
        s->delayed[s->n_delayed++] = (struct delayed){conn, due_ns};
        pthread_cond_signal(&s->delay_cv);
        pthread_mutex_unlock(&s->delay_mu);
        return;
    }
    pthread_mutex_unlock(&s->delay_mu);
    /* Table full, or stopping (the timer thread has left or is leaving): no extra latency
     * rather than a connection nobody resumes. */
    MHD_resume_connection(conn);
}

static void *delay_main(void *arg)
{
    struct sim_server *s = arg;
    pthread_mutex_lock(&s->delay_mu);
    while (!s->delay_stop) {
        int64_t now = kd_mono_ns(), next = INT64_MAX;
        for (size_t i = 0; i < s->n_delayed;) {
            if (s->delayed[i].due_ns <= now) {
                MHD_resume_connection(s->delayed[i].conn);
                s->delayed[i] = s->delayed[--s->n_delayed];
            } else {
                if (s->delayed[i].due_ns < next)
                    next = s->delayed[i].due_ns;
                i++;
            }
        }
        if (next == INT64_MAX) {
            pthread_cond_wait(&s->delay_cv, &s->delay_mu);
        } else {
            int64_t wait_ns = next - now;
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            int64_t t = (int64_t)ts.tv_sec * KD_NS_PER_SEC + ts.tv_nsec + wait_ns;
            ts.tv_sec = (time_t)(t / KD_NS_PER_SEC);
            ts.tv_nsec = (long)(t % KD_NS_PER_SEC);
            pthread_cond_timedwait(&s->delay_cv, &s->delay_mu, &ts);
        }
    }
    for (size_t i = 0; i < s->n_delayed; i++)
        MHD_resume_connection(s->delayed[i].conn);
    s->n_delayed = 0;
    pthread_mutex_unlock(&s->delay_mu);
    return NULL;
}

/* ---------- hostile bodies ---------- */

/*
 * A generated body: HEAD, then MID_LEN bytes made from the position alone (UINT64_MAX: for
 * ever), then TAIL. For drip, HEAD is the whole body and MID_LEN and TAIL are 0.
 */
struct gen_body {
    struct sim_server *s;
    struct MHD_Connection *conn;
    enum sim_hostile kind;
    char *head, *tail;
    size_t head_len, tail_len;
    uint64_t mid_len;
    int pause_next; /* drip: the next reader call suspends instead of sending */
};

static void gen_free(void *cls)
{
    struct gen_body *g = cls;
    free(g->head);
    free(g->tail);
    free(g);
}

/*
 * Suspends CONN for MS from inside its content reader; the timer thread resumes it. Returns
 * 0, or -1 when the server is stopping or the table is full (the caller then ends the body:
 * a connection suspended after the timer thread left would never be resumed).
 */
static int suspend_in_reader(struct sim_server *s, struct MHD_Connection *conn, int64_t ms)
{
    pthread_mutex_lock(&s->delay_mu);
    if (s->delay_stop || s->n_delayed >= MAX_DELAYED) {
        pthread_mutex_unlock(&s->delay_mu);
        return -1;
    }
    MHD_suspend_connection(conn);
    s->delayed[s->n_delayed++] = (struct delayed){conn, kd_mono_ns() + ms * KD_NS_PER_MS};
    pthread_cond_signal(&s->delay_cv);
    pthread_mutex_unlock(&s->delay_mu);
    return 0;
}

/* Bytes [I, I + N) of the generated middle of G, filled by blocks (memset, doubling memcpy):
 * the middle runs to 64 MiB and more per answer, and a loop of one byte at a time made these
 * answers most of the simulator's CPU in the hostile test. */
static void gen_mid(const struct gen_body *g, uint64_t i, char *buf, size_t n)
{
    if (g->kind == SIM_H_DEEP) {
        /* SIM_DEEP_LEVELS '[' then as many ']'. */
        uint64_t open_left = i < (uint64_t)SIM_DEEP_LEVELS ? (uint64_t)SIM_DEEP_LEVELS - i : 0;
        size_t opens = open_left < n ? (size_t)open_left : n;
        memset(buf, '[', opens);
        memset(buf + opens, ']', n - opens);
        return;
    }
    /* "0,0,0,...": '0' at even offsets, ',' at odd ones. */
    size_t k = 0;
    if ((i & 1) && n > 0)
        buf[k++] = ',';
    char *p = buf + k;
    size_t m = n - k;
    if (m == 0)
        return;
    p[0] = '0';
    if (m > 1)
        p[1] = ',';
    size_t have = m < 2 ? m : 2; /* always even below m: the pattern repeats every 2 bytes */
    while (have < m) {
        size_t c = have < m - have ? have : m - have;
        memcpy(p + have, p, c);
        have += c;
    }
}

static ssize_t gen_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct gen_body *g = cls;
    if (g->kind == SIM_H_DRIP) {
        if (pos >= g->head_len)
            return MHD_CONTENT_READER_END_OF_STREAM;
        if (g->pause_next) {
            g->pause_next = 0;
            if (suspend_in_reader(g->s, g->conn, SIM_DRIP_PAUSE_MS) != 0)
                return MHD_CONTENT_READER_END_WITH_ERROR;
            return 0; /* MHD asks again once the connection is resumed */
        }
        size_t n = g->head_len - (size_t)pos;
        if (n > SIM_DRIP_BYTES)
            n = SIM_DRIP_BYTES;
        if (n > max)
            n = max;
        memcpy(buf, g->head + pos, n);
        g->pause_next = 1;
        return (ssize_t)n;
    }
    size_t out = 0;
    while (out < max) {
        uint64_t p = pos + out;
        if (p < g->head_len) {
            size_t n = g->head_len - (size_t)p;
            n = n < max - out ? n : max - out;
            memcpy(buf + out, g->head + p, n);
            out += n;
            continue;
        }
        p -= g->head_len;
        if (g->mid_len == UINT64_MAX || p < g->mid_len) {
            uint64_t left = g->mid_len == UINT64_MAX ? UINT64_MAX : g->mid_len - p;
            size_t n = left < max - out ? (size_t)left : max - out;
            gen_mid(g, p, buf + out, n);
            out += n;
            continue;
        }
        p -= g->mid_len;
        if (p >= g->tail_len)
            break;
        size_t n = g->tail_len - (size_t)p;
        n = n < max - out ? n : max - out;
        memcpy(buf + out, g->tail + p, n);
        out += n;
    }
    return out > 0 ? (ssize_t)out : MHD_CONTENT_READER_END_OF_STREAM;
}

/* Mistyped JSON: V with its type changed, the variant chosen by a rotating counter *K. */
static void emit_mistyped(struct sim_buf *b, yajl_val v, unsigned *k)
{
    unsigned variant = (*k)++ % 3;
    if (v == NULL || YAJL_IS_NULL(v)) {
        sim_buf_puts(b, variant == 0 ? "{}" : variant == 1 ? "\"null\"" : "0");
    } else if (YAJL_IS_NUMBER(v)) {
        if (variant == 0) /* a string for a number */
            sim_buf_str(b, v->u.number.r);
        else if (variant == 1) /* far beyond any integer type */
            sim_buf_puts(b, "-123456789012345678901234567890123456789012345678901234567890");
        else /* an object for a number */
            sim_buf_printf(b, "{\"value\":%s}", v->u.number.r);
    } else if (YAJL_IS_STRING(v)) {
        if (variant == 0)
            sim_buf_puts(b, "1e400");
        else if (variant == 1) {
            sim_buf_putc(b, '[');
            sim_buf_str(b, v->u.string);
            sim_buf_putc(b, ']');
        } else
            sim_buf_puts(b, "true");
    } else if (YAJL_IS_ARRAY(v)) {
        if (variant == 0) { /* an object for an array */
            sim_buf_putc(b, '{');
            for (size_t i = 0; i < v->u.array.len; i++) {
                sim_buf_printf(b, "%s\"%zu\":", i ? "," : "", i);
                emit_tree(b, v->u.array.values[i], 1);
            }
            sim_buf_putc(b, '}');
        } else if (variant == 1) {
            sim_buf_str(b, "[array]");
        } else {
            sim_buf_puts(b, "18446744073709551616");
        }
    } else if (YAJL_IS_OBJECT(v)) {
        if (variant == 0) { /* an array for an object */
            sim_buf_putc(b, '[');
            for (size_t i = 0; i < v->u.object.len; i++) {
                if (i)
                    sim_buf_putc(b, ',');
                emit_tree(b, v->u.object.values[i], 1);
            }
            sim_buf_putc(b, ']');
        } else if (variant == 1) {
            sim_buf_str(b, "{object}");
        } else {
            sim_buf_puts(b, "-1e308");
        }
    } else { /* true / false */
        sim_buf_puts(b, variant == 0 ? "\"true\"" : variant == 1 ? "1" : "[]");
    }
}

/*
 * The mistyped form of BODY (a whole JSON object): the envelope as it was; every member of
 * each product of `products` of the wrong type (the array and the product objects kept, so a
 * client gets as far as the fields), except `asin` when KEEP_ASIN (mistyped_fields: the client
 * knows which product is garbled); any other top-level member of the wrong type. Returns 0,
 * or -EINVAL when BODY does not parse (it is then left alone).
 */
static int mistype_body(struct sim_buf *body, int keep_asin)
{
    char err[128];
    yajl_val root = yajl_tree_parse(body->data, err, sizeof(err));
    if (!YAJL_IS_OBJECT(root)) {
        yajl_tree_free(root);
        return -EINVAL;
    }
    static const char *env[] = {"timestamp",         "tokensLeft",         "refillIn",
                                "refillRate",        "tokenFlowReduction", "tokensConsumed",
                                "processingTimeInMs"};
    struct sim_buf out;
    sim_buf_init(&out);
    unsigned k = 0;
    sim_buf_putc(&out, '{');
    for (size_t i = 0; i < root->u.object.len; i++) {
        const char *key = root->u.object.keys[i];
        yajl_val v = root->u.object.values[i];
        if (i)
            sim_buf_putc(&out, ',');
        sim_buf_str(&out, key);
        sim_buf_putc(&out, ':');
        int is_env = 0;
        for (size_t e = 0; e < sizeof(env) / sizeof(env[0]); e++)
            is_env |= strcmp(key, env[e]) == 0;
        if (is_env) {
            emit_tree(&out, v, 0);
        } else if (strcmp(key, "products") == 0 && YAJL_IS_ARRAY(v)) {
            sim_buf_putc(&out, '[');
            for (size_t p = 0; p < v->u.array.len; p++) {
                yajl_val pr = v->u.array.values[p];
                if (p)
                    sim_buf_putc(&out, ',');
                if (!YAJL_IS_OBJECT(pr)) {
                    emit_mistyped(&out, pr, &k);
                    continue;
                }
                sim_buf_putc(&out, '{');
                for (size_t m = 0; m < pr->u.object.len; m++) {
                    if (m)
                        sim_buf_putc(&out, ',');
                    sim_buf_str(&out, pr->u.object.keys[m]);
                    sim_buf_putc(&out, ':');
                    if (keep_asin && strcmp(pr->u.object.keys[m], "asin") == 0)
                        emit_tree(&out, pr->u.object.values[m], 0);
                    else
                        emit_mistyped(&out, pr->u.object.values[m], &k);
                }
                sim_buf_putc(&out, '}');
            }
            sim_buf_putc(&out, ']');
        } else {
            emit_mistyped(&out, v, &k);
        }
    }
    sim_buf_putc(&out, '}');
    yajl_tree_free(root);
    if (!sim_buf_ok(&out)) {
        sim_buf_free(&out);
        return -ENOMEM;
    }
    sim_buf_free(body);
    *body = out;
    return 0;
}

/*
 * Sends a 200 whose body is the hostile kind H of BODY (a whole JSON object, ownership taken;
 * its first ENV_LEN bytes are the envelope: its members, then ',' when a payload follows or
 * '}' when none does), after LATENCY_MS.
 */
static enum MHD_Result send_hostile(struct sim_server *s, struct MHD_Connection *conn,
                                    struct req *rq, struct sim_buf *body, size_t env_len,
                                    enum sim_hostile h, int64_t latency_ms)
{
    if (h == SIM_H_MISTYPED || h == SIM_H_MISTYPED_FIELDS) {
        mistype_body(body, h == SIM_H_MISTYPED_FIELDS);
        return send_body(s, conn, rq, 200, body, SHAPE_NONE, latency_ms);
    }
    struct gen_body *g = calloc(1, sizeof(*g));
    if (g == NULL || !sim_buf_ok(body) || env_len < 2 || body->len < env_len) {
        free(g);
        sim_buf_free(body);
        return MHD_NO;
    }
    g->s = s;
    g->conn = conn;
    g->kind = h;
    int gz = 0;
    uint64_t total;
    size_t block = 32 * 1024;
    struct sim_buf head, tail;
    sim_buf_init(&head);
    sim_buf_init(&tail);
    switch (h) {
    case SIM_H_DRIP: /* the real body, gzip'd when accepted, a few bytes at a time */
        gz = accepts_gzip(conn);
        if (gz) {
            size_t zlen;
            char *z = gzip_bytes(body->data, body->len, s->cfg.gzip_level, &zlen);
            if (z != NULL) {
                sim_buf_put(&head, z, zlen);
                free(z);
            } else {
                gz = 0;
            }
        }
        if (!gz)
            sim_buf_put(&head, body->data, body->len);
        block = 1024;
        break;
    case SIM_H_ENDLESS: /* envelope, "padding":[0,0,0,... for ever */
        sim_buf_put(&head, body->data, env_len - 1);
        sim_buf_puts(&head, ",\"padding\":[");
        g->mid_len = UINT64_MAX;
        break;
    case SIM_H_HUGE: /* envelope, "padding":[0,...,0] of SIM_HUGE_BODY_BYTES, the real body */
        sim_buf_put(&head, body->data, env_len - 1);
        sim_buf_puts(&head, ",\"padding\":[");
        g->mid_len = SIM_HUGE_BODY_BYTES;
        if (body->len > env_len) { /* the payload members and the closing brace */
            sim_buf_puts(&tail, "0],");
            sim_buf_put(&tail, body->data + env_len, body->len - env_len);
        } else {
            sim_buf_puts(&tail, "0]}");
        }
        break;
    default: /* SIM_H_DEEP: envelope, "products":[[[[...]]]] */
        sim_buf_put(&head, body->data, env_len - 1);
        sim_buf_puts(&head, ",\"products\":");
        g->mid_len = 2 * (uint64_t)SIM_DEEP_LEVELS;
        sim_buf_putc(&tail, '}');
        break;
    }
    sim_buf_free(body);
    if (!sim_buf_ok(&head) || !sim_buf_ok(&tail)) {
        sim_buf_free(&head);
        sim_buf_free(&tail);
        free(g);
        return MHD_NO;
    }
    g->head = head.data;
    g->head_len = head.len;
    g->tail = tail.data;
    g->tail_len = tail.len;
    total = g->mid_len == UINT64_MAX ? MHD_SIZE_UNKNOWN : g->head_len + g->mid_len + g->tail_len;
    struct MHD_Response *resp =
        MHD_create_response_from_callback(total, block, gen_reader, g, gen_free);
    if (resp == NULL) {
        gen_free(g);
        return MHD_NO;
    }
    return queue_response(s, conn, rq, 200, resp, gz, latency_ms);
}

/* ---------- envelope helpers ---------- */

struct call {
    struct sim_server *s;
    struct MHD_Connection *conn;
    struct req *rq;
    enum endpoint ep;
    int64_t start_ns;
    int key; /* index of the request's key in --keys, -1 when none or not listed */
};

/* The bucket that pays for C: its key's own with --bucket-per-key, else the one bucket. */
static struct sim_bucket *bucket_of(struct call *c)
{
    struct sim_server *s = c->s;
    if (s->key_bucket != NULL && c->key > 0)
        return &s->key_bucket[c->key - 1];
    return &s->bucket;
}

static const char *param(struct call *c, const char *name)
{
    return MHD_lookup_connection_value(c->conn, MHD_GET_ARGUMENT_KIND, name);
}

static const char *param_cb(void *ctx, const char *name)
{
    return param(ctx, name);
}

static void envelope(struct call *c, struct sim_buf *b, const struct sim_bucket_view *v,
                     int64_t consumed, int zeroed)
{
    struct sim_envelope e;
    int64_t now = kd_mono_ns();
    e.timestamp_ms = now_wall_ms(c->s, now);
    e.tokens_left = zeroed ? 0 : v->balance;
    e.refill_in_ms = zeroed ? 0 : v->refill_in_ms;
    e.refill_rate = zeroed ? 0 : sim_faults_refill_rate(&c->s->faults, v->rate);
    e.tokens_consumed = consumed;
    e.processing_ms = (now - c->start_ns) / KD_NS_PER_MS;
    sim_render_envelope(b, &e);
}

static void ledger_request(struct sim_server *s, enum endpoint ep, int64_t tokens, int was_429)
{
    pthread_mutex_lock(&s->ledger_mu);
    s->requests++;
    s->ep_requests[ep]++;
    s->ep_tokens[ep] += tokens;
    s->http_429 += was_429;
    pthread_mutex_unlock(&s->ledger_mu);
}

static const char *error_type(unsigned status)
{
    switch (status) {
    case 402:
        return "paymentRequired";
    case 404:
        return "notFound";
    case 413:
        return "requestTooLarge";
    case 500:
        return "internalError";
    case 503:
        return "serviceUnavailable";
    default:
        return "invalidParameter";
    }
}

static enum MHD_Result send_error_charged(struct call *c, unsigned status, int zeroed,
                                          const char *msg, const struct sim_bucket_view *v,
                                          int64_t consumed, int64_t latency_ms);

/* An error answer: envelope (zeroed token fields when ZEROED) + error object, charged 0. */
static enum MHD_Result send_error(struct call *c, unsigned status, int zeroed, const char *msg,
                                  int64_t latency_ms)
{
    struct sim_bucket_view v;
    sim_bucket_peek(bucket_of(c), kd_mono_ns(), &v);
    return send_error_charged(c, status, zeroed, msg, &v, 0, latency_ms);
}

/* An error answer after the bucket view V, charged CONSUMED (charge_errors), else as above. */
static enum MHD_Result send_error_charged(struct call *c, unsigned status, int zeroed,
                                          const char *msg, const struct sim_bucket_view *v,
                                          int64_t consumed, int64_t latency_ms)
{
    struct sim_buf b;
    sim_buf_init(&b);
    envelope(c, &b, v, consumed, zeroed);
    sim_buf_puts(&b, "\"error\":{\"type\":");
    sim_buf_str(&b, error_type(status));
    sim_buf_puts(&b, ",\"message\":");
    sim_buf_str(&b, status == 400 ? "You used an invalid parameter for this API call. Please "
                                    "check the documentation: "
                                    "https://keepa.com/#!discuss/c/api/apirequests/11"
                                  : msg);
    sim_buf_puts(&b, ",\"details\":");
    sim_buf_str(&b, msg);
    sim_buf_puts(&b, "}}");
    if (c->ep != EP_OTHER || status != 404)
        ledger_request(c->s, c->ep, consumed, 0);
    return send_body(c->s, c->conn, c->rq, status, &b, SHAPE_NONE, latency_ms);
}

static enum MHD_Result send_429(struct call *c, const struct sim_bucket_view *v, int64_t latency_ms)
{
    struct sim_buf b;
    sim_buf_init(&b);
    envelope(c, &b, v, 0, 0);
    sim_buf_uncomma(&b);
    sim_buf_putc(&b, '}');
    ledger_request(c->s, c->ep, 0, 1);
    if (c->s->key_bucket != NULL && c->key >= 0) {
        pthread_mutex_lock(&c->s->ledger_mu);
        c->s->key_429[c->key]++;
        pthread_mutex_unlock(&c->s->ledger_mu);
    }
    return send_body(c->s, c->conn, c->rq, 429, &b, SHAPE_NONE, latency_ms);
}

/* Checks the key; 0 when accepted, else the status to answer (400 or 402). */
static unsigned check_key(struct call *c)
{
    const char *key = param(c, "key");
    c->key = -1;
    if (key == NULL || *key == '\0')
        return 400;
    for (int i = 0; i < c->s->cfg.n_expired; i++)
        if (strcmp(key, c->s->cfg.expired[i]) == 0)
            return 402;
    if (c->s->cfg.n_keys == 0)
        return 0;
    for (int i = 0; i < c->s->cfg.n_keys; i++)
        if (strcmp(key, c->s->cfg.keys[i]) == 0) {
            c->key = i;
            return 0;
        }
    return 400;
}

static int domain_ok(const char *d)
{
    int64_t v;
    if (d == NULL || sim_parse_i64(d, &v) != 0)
        return 0;
    return v >= 1 && v <= 12 && v != 7;
}

/*
 * The common tail of a cost-bearing call: admission + charge of COST, then the envelope and
 * PAYLOAD (a fragment of members without braces, or NULL), faults applied.
 */
static enum MHD_Result finish(struct call *c, struct sim_buf *payload, int64_t cost,
                              const struct sim_fault_draw *fd)
{
    struct sim_server *s = c->s;
    struct sim_bucket_view v;
    int64_t charge = fd->no_products ? 0 : cost;
    if (!sim_bucket_charge(bucket_of(c), kd_mono_ns(), charge, 0, &v)) {
        sim_buf_free(payload);
        return send_429(c, &v, fd->latency_ms);
    }
    if (fd->charge_error) { /* the work was done and billed, and the answer is an error */
        sim_buf_free(payload);
        return send_error_charged(c, fd->http500 ? 500 : 503, 0,
                                  fd->http500 ? "internal server error (injected, charged)"
                                              : "service unavailable (injected, charged)",
                                  &v, charge, fd->latency_ms);
    }
    struct sim_buf b;
    sim_buf_init(&b);
    envelope(c, &b, &v, charge, 0);
    size_t env_len = b.len;
    if (!fd->no_products && payload != NULL && payload->len > 0)
        sim_buf_put(&b, payload->data, payload->len);
    sim_buf_uncomma(&b);
    sim_buf_putc(&b, '}');
    sim_buf_free(payload);
    ledger_request(s, c->ep, charge, 0);
    if (fd->hostile != SIM_H_NONE)
        return send_hostile(s, c->conn, c->rq, &b, env_len, fd->hostile, fd->latency_ms);
    enum shape shape = fd->reset       ? SHAPE_RESET
                       : fd->truncate  ? SHAPE_TRUNCATE
                       : fd->malformed ? SHAPE_MALFORMED
                                       : SHAPE_NONE;
    return send_body(s, c->conn, c->rq, 200, &b, shape, fd->latency_ms);
}

/* Selection JSON from the query string, else from the request body. */
static const char *selection_text(struct call *c, size_t *len)
{
    const char *sel = param(c, "selection");
    if (sel != NULL && *sel != '\0') {
        *len = strlen(sel);
        return sel;
    }
    if (c->rq->body.len > 0) {
        *len = c->rq->body.len;
        return c->rq->body.data;
    }
    *len = 0;
    return NULL;
}

/* ---------- /product ---------- */

static void mark_asin(struct sim_server *s, int64_t idx)
{
    uint8_t bit = (uint8_t)(1u << (idx & 7));
    uint8_t old = __atomic_fetch_or(&s->asin_seen[idx >> 3], bit, __ATOMIC_RELAXED);
    if (!(old & bit))
        __atomic_fetch_add(&s->asins_distinct, 1, __ATOMIC_RELAXED);
}

static enum MHD_Result ep_product(struct call *c, struct sim_fault_draw *fd)
{
    struct sim_server *s = c->s;
    struct sim_product_req *r = malloc(sizeof(*r));
    if (r == NULL)
        return send_error(c, 500, 0, "out of memory", 0);
    char err[160];
    if (sim_product_req_parse(param_cb, c, s->cfg.offers_zero_ok, r, err, sizeof(err)) != 0) {
        free(r);
        return send_error(c, 400, 0, err, fd->latency_ms);
    }
    struct sim_bucket_view v;
    sim_bucket_peek(&s->bucket, kd_mono_ns(), &v);
    int64_t kmin = keepa_min_of(s, &v);
    struct sim_buf pl;
    sim_buf_init(&pl);
    int64_t cost = 0;
    int found = 0;
    if (s->replay_product_tail != NULL) {
        sim_buf_puts(&pl, s->replay_product_tail);
        free(r);
        return finish(c, &pl, s->replay_product_cost, fd);
    }
    sim_buf_puts(&pl, "\"products\":[");
    struct sim_product *p = malloc(sizeof(*p));
    if (p == NULL) {
        free(r);
        return send_error(c, 500, 0, "out of memory", 0);
    }
    for (int i = 0; i < r->n_ids; i++) {
        /* any well-formed ASIN: the catalog's, or a synthetic product (sim_catalog_resolve) */
        int64_t idx = r->by_code ? sim_product_from_code(&s->cat, r->ids[i])
                                 : sim_catalog_resolve(&s->cat, r->ids[i]);
        if (idx < 0)
            continue;
        sim_catalog_product(&s->cat, idx, kmin, p);
        if (idx >= s->cat.products) /* resolve took a well-formed ASIN: 10 characters */
            snprintf(p->asin, sizeof(p->asin), "%.10s", r->ids[i]);
        struct sim_product_opts o = {r, 0};
        int64_t pc = 1;
        if (r->offers > 0) {
            int32_t scratch = 0; /* synthetic products keep no offers-freshness minute */
            int32_t *slot = idx < s->cat.products ? &s->offers_fetched_min[idx] : &scratch;
            int32_t last = __atomic_load_n(slot, __ATOMIC_RELAXED);
            int32_t rel = (int32_t)(kmin - s->base_keepa_min + 1);
            if (sim_faults_offers_fail(&s->faults)) {
                o.offers_failed = 1;
                pc = 1;
            } else if (r->update > 0 && last > 0 && rel - last < r->update * 60) {
                pc = 5; /* offers fresher than `update` hours: flat 5, nothing refreshed */
            } else {
                pc = 6 * (int64_t)(sim_offer_pages(&s->cat, p, r->offers) > 0
                                       ? sim_offer_pages(&s->cat, p, r->offers)
                                       : 1);
                __atomic_store_n(slot, rel, __ATOMIC_RELAXED);
            }
            if (r->stock && !o.offers_failed)
                pc += 2;
        } else if (r->buybox) {
            pc += 2;
        }
        if (r->rating)
            pc += 1;
        if (r->update == 0 && p->last_update > kmin - 60)
            pc += 1;
        if (r->historical_variations && p->parent_idx >= 0)
            pc += 1;
        cost += pc;
        sim_render_product(&pl, &s->cat, p, &o);
        sim_buf_putc(&pl, ',');
        found++;
        if (idx < s->cat.products)
            mark_asin(s, idx);
    }
    free(p);
    sim_buf_uncomma(&pl);
    sim_buf_puts(&pl, "],");
    pthread_mutex_lock(&s->ledger_mu);
    s->asins_requested += r->n_ids;
    pthread_mutex_unlock(&s->ledger_mu);
    free(r);
    if (found == 0) { /* 200 without `products` (docs/keepa-api.md §2.2) */
        sim_buf_free(&pl);
    }
    return finish(c, &pl, cost, fd);
}

/* ---------- /deal ---------- */

/*
 * The memo of the selection KEY for one scan (under cache_mu; given back with memo_give),
 * the least recently used idle one taken over (and reset) for a new selection; NULL when every
 * one is busy or the catalog is too large for one: the scan goes without.
 */
static struct deal_memo_slot *memo_take(struct sim_server *s, const char *key)
{
    struct deal_memo_slot *victim = NULL;
    for (int i = 0; i < DEAL_MEMO_N; i++) {
        struct deal_memo_slot *m = &s->memo[i];
        if (m->used && strcmp(m->key, key) == 0) {
            if (m->busy)
                return NULL;
            victim = m;
            break;
        }
        if (!m->busy && (victim == NULL || !m->used || (victim->used && m->lru < victim->lru)))
            victim = m;
    }
    if (victim == NULL)
        return NULL;
    if (victim->memo.e == NULL && sim_deal_memo_init(&victim->memo, s->cat.products) != 0)
        return NULL;
    if (!victim->used || strcmp(victim->key, key) != 0) {
        sim_deal_memo_reset(&victim->memo);
        snprintf(victim->key, sizeof(victim->key), "%s", key);
        victim->used = 1;
    }
    victim->busy = 1;
    victim->lru = ++s->cache_clock;
    return victim;
}

/* Gives back the memo memo_take lent (MS may be NULL). */
static void memo_give(struct sim_server *s, struct deal_memo_slot *ms)
{
    if (ms == NULL)
        return;
    pthread_mutex_lock(&s->cache_mu);
    ms->busy = 0;
    pthread_mutex_unlock(&s->cache_mu);
}

/* Finds or computes the scan for SEL; copies the page slice. Returns 0 or -ENOMEM. */
static int deal_lookup(struct sim_server *s, const struct sim_selection *sel, int64_t kmin,
                       int64_t *page_idx, struct sim_deal_hit *page_hit, size_t *page_n,
                       size_t *total, int64_t root_counts[32], int *cached, int64_t *scan_min)
{
    char key[DEAL_KEY_MAX];
    sim_selection_key(sel, key, sizeof(key));
    int64_t now = kd_mono_ns();
    int64_t ttl = 2 * s->bucket.minute_ns;
    size_t off = (size_t)sel->page * SIM_DEAL_PAGE;
    pthread_mutex_lock(&s->cache_mu);
    for (int i = 0; i < DEAL_CACHE_N; i++) {
        struct deal_cache_entry *e = &s->cache[i];
        if (e->used && now - e->created_ns < ttl && strcmp(e->key, key) == 0) {
            e->lru = ++s->cache_clock;
            *total = e->res.n;
            *page_n = off < e->res.n ? e->res.n - off : 0;
            if (*page_n > SIM_DEAL_PAGE)
                *page_n = SIM_DEAL_PAGE;
            memcpy(page_idx, e->res.idx + (off < e->res.n ? off : 0), *page_n * sizeof(int64_t));
            memcpy(page_hit, e->res.hit + (off < e->res.n ? off : 0),
                   *page_n * sizeof(struct sim_deal_hit));
            memcpy(root_counts, e->res.root_counts, sizeof(e->res.root_counts));
            *scan_min = e->res.keepa_min;
            *cached = 1;
            pthread_mutex_unlock(&s->cache_mu);
            return 0;
        }
    }
    struct deal_memo_slot *ms = memo_take(s, key);
    pthread_mutex_unlock(&s->cache_mu);
    struct sim_deal_result res;
    int rc = sim_deal_scan_memo(&s->cat, sel, kmin, SIM_DEAL_MAX_TOTAL,
                                ms != NULL ? &ms->memo : NULL, &res);
    memo_give(s, ms);
    if (rc != 0)
        return -ENOMEM;
    *total = res.n;
    *page_n = off < res.n ? res.n - off : 0;
    if (*page_n > SIM_DEAL_PAGE)
        *page_n = SIM_DEAL_PAGE;
    memcpy(page_idx, res.idx + (off < res.n ? off : 0), *page_n * sizeof(int64_t));
    memcpy(page_hit, res.hit + (off < res.n ? off : 0), *page_n * sizeof(struct sim_deal_hit));
    memcpy(root_counts, res.root_counts, sizeof(res.root_counts));
    *scan_min = kmin;
    *cached = 0;
    pthread_mutex_lock(&s->cache_mu);
    int victim = 0;
    for (int i = 1; i < DEAL_CACHE_N; i++)
        if (!s->cache[i].used || (s->cache[victim].used && s->cache[i].lru < s->cache[victim].lru))
            victim = i;
    struct deal_cache_entry *e = &s->cache[victim];
    if (e->used)
        sim_deal_result_free(&e->res);
    e->used = 1;
    snprintf(e->key, sizeof(e->key), "%s", key);
    e->created_ns = now;
    e->lru = ++s->cache_clock;
    e->res = res;
    pthread_mutex_unlock(&s->cache_mu);
    return 0;
}

static enum MHD_Result ep_deal(struct call *c, struct sim_fault_draw *fd)
{
    struct sim_server *s = c->s;
    size_t len;
    const char *text = selection_text(c, &len);
    struct sim_selection *sel = malloc(sizeof(*sel));
    if (sel == NULL)
        return send_error(c, 500, 0, "out of memory", 0);
    char err[160];
    if (sim_selection_parse(text, len, sel, err, sizeof(err)) != 0) {
        free(sel);
        return send_error(c, 400, 0, err, fd->latency_ms);
    }
    struct sim_buf pl;
    sim_buf_init(&pl);
    if (s->replay_deal_tail != NULL) {
        free(sel);
        sim_buf_puts(&pl, s->replay_deal_tail);
        return finish(c, &pl, 5, fd);
    }
    struct sim_bucket_view v;
    sim_bucket_peek(&s->bucket, kd_mono_ns(), &v);
    int64_t kmin = keepa_min_of(s, &v);
    int64_t page_idx[SIM_DEAL_PAGE], roots[32], scan_min;
    struct sim_deal_hit page_hit[SIM_DEAL_PAGE];
    size_t page_n = 0, total = 0;
    int cached = 0;
    if (sel->page > 66) {
        memset(roots, 0, sizeof(roots));
    } else if (deal_lookup(s, sel, kmin, page_idx, page_hit, &page_n, &total, roots, &cached,
                           &scan_min) != 0) {
        free(sel);
        return send_error(c, 500, 0, "out of memory", 0);
    }
    free(sel);
    sim_buf_puts(&pl, "\"deals\":{\"dr\":[");
    struct sim_product *p = malloc(sizeof(*p));
    if (p == NULL) {
        sim_buf_free(&pl);
        return send_error(c, 500, 0, "out of memory", 0);
    }
    for (size_t i = 0; i < page_n; i++) {
        sim_catalog_product(&s->cat, page_idx[i], scan_min, p);
        sim_render_deal(&pl, &s->cat, p, page_hit[i].minute);
        sim_buf_putc(&pl, ',');
    }
    free(p);
    sim_buf_uncomma(&pl);
    sim_buf_puts(&pl, "],\"drDateIndex\":[],\"categoryIds\":[");
    int nr = sim_catalog_root_count(&s->cat);
    for (int i = 0; i < nr; i++)
        if (roots[i] > 0)
            sim_buf_printf(&pl, "%lld,", (long long)sim_catalog_root_id(&s->cat, i));
    sim_buf_uncomma(&pl);
    sim_buf_puts(&pl, "],\"categoryNames\":[");
    for (int i = 0; i < nr; i++)
        if (roots[i] > 0) {
            sim_buf_str(&pl, sim_catalog_root_name(&s->cat, i));
            sim_buf_putc(&pl, ',');
        }
    sim_buf_uncomma(&pl);
    sim_buf_puts(&pl, "],\"categoryCount\":[");
    for (int i = 0; i < nr; i++)
        if (roots[i] > 0)
            sim_buf_printf(&pl, "%lld,", (long long)roots[i]);
    sim_buf_uncomma(&pl);
    sim_buf_printf(&pl, "]},\"dealsCached\":%s,", cached ? "true" : "false");
    (void)total;
    return finish(c, &pl, 5, fd);
}

/* ---------- /query, /seller, /category, /search, /bestsellers, ... (sim/browse.h) ---------- */

/* The category statistics, built on first use (a walk over the catalog). NULL when out of memory.
 */
static const struct sim_cat_stats *cat_stats(struct sim_server *s)
{
    pthread_mutex_lock(&s->stats_mu);
    if (!s->cat_stats_ready && sim_cat_stats_build(&s->cat, &s->cat_stats) == 0)
        s->cat_stats_ready = 1;
    pthread_mutex_unlock(&s->stats_mu);
    return s->cat_stats_ready ? &s->cat_stats : NULL;
}

static enum MHD_Result ep_browse(struct call *c, struct sim_fault_draw *fd, const char *path,
                                 void (*fn)(struct sim_api *))
{
    struct sim_server *s = c->s;
    struct sim_bucket_view v;
    sim_bucket_peek(&s->bucket, kd_mono_ns(), &v);
    struct sim_buf pl;
    sim_buf_init(&pl);
    struct sim_api *a = calloc(1, sizeof(*a));
    if (a == NULL)
        return send_error(c, 500, 0, "out of memory", 0);
    a->cat = &s->cat;
    a->now_min = keepa_min_of(s, &v);
    a->get = param_cb;
    a->get_ctx = c;
    a->body = c->rq->body.data;
    a->body_len = c->rq->body.len;
    a->stats = sim_api_needs_stats(path) ? cat_stats(s) : NULL;
    a->out = &pl;
    a->status = 200;
    fn(a);
    if (a->status != 200) {
        enum MHD_Result r = send_error(c, a->status, 0, a->err, fd->latency_ms);
        sim_buf_free(&pl);
        free(a);
        return r;
    }
    if (a->ignored[0]) { /* the Product Finder names the filters it did not apply */
        sim_buf_puts(&pl, "\"simIgnoredFilters\":[");
        for (char *k = a->ignored; k != NULL && *k;) {
            char *e = strchr(k, ',');
            if (e != NULL)
                *e = '\0';
            sim_buf_str(&pl, k);
            sim_buf_putc(&pl, ',');
            k = e != NULL ? e + 1 : NULL;
        }
        sim_buf_uncomma(&pl);
        sim_buf_puts(&pl, "],");
    }
    int64_t cost = a->cost;
    free(a);
    return finish(c, &pl, cost, fd);
}

/* /tracking: the key's trackings (sim/tracking.h). */
static enum MHD_Result ep_tracking(struct call *c, struct sim_fault_draw *fd)
{
    struct sim_server *s = c->s;
    struct sim_bucket_view v;
    sim_bucket_peek(&s->bucket, kd_mono_ns(), &v);
    struct sim_buf pl;
    sim_buf_init(&pl);
    int64_t cost = 0;
    char err[200] = "";
    unsigned st =
        sim_tracking_request(s->tracking, &s->cat, param(c, "key"), keepa_min_of(s, &v), param_cb,
                             c, c->rq->body.data, c->rq->body.len, &pl, &cost, err, sizeof(err));
    if (st != 200) {
        sim_buf_free(&pl);
        return send_error(c, st, 0, err, fd->latency_ms);
    }
    return finish(c, &pl, cost, fd);
}

/* ---------- /token and dispatch ---------- */

static enum MHD_Result ep_token(struct call *c)
{
    struct sim_bucket_view v;
    sim_bucket_peek(bucket_of(c), kd_mono_ns(), &v);
    struct sim_buf b;
    sim_buf_init(&b);
    envelope(c, &b, &v, 0, 0);
    sim_buf_uncomma(&b);
    sim_buf_putc(&b, '}');
    ledger_request(c->s, EP_TOKEN, 0, 0);
    return send_body(c->s, c->conn, c->rq, 200, &b, SHAPE_NONE, 0);
}

static enum MHD_Result api(struct call *c)
{
    struct sim_server *s = c->s;
    unsigned ks = check_key(c);
    if (ks != 0)
        return send_error(c, ks, 1, ks == 402 ? "access key expired" : "invalid access key", 0);
    if (c->ep == EP_TOKEN)
        return ep_token(c);
    if (c->rq->too_big)
        return send_error(c, 413, 0, "request body larger than 1 MiB", 0);
    if (c->ep != EP_DEAL && c->ep != EP_TRACKING && !domain_ok(param(c, "domain")))
        return send_error(c, 400, 0, "domain is missing or invalid", 0);
    const char *offers = param(c, "offers");
    int with_offers = c->ep == EP_PRODUCT && offers != NULL && *offers && strcmp(offers, "0");
    struct sim_fault_draw fd;
    sim_faults_draw(&s->faults, c->ep == EP_PRODUCT, with_offers, &fd);
    struct sim_bucket_view v;
    sim_bucket_peek(bucket_of(c), kd_mono_ns(), &v);
    if (fd.storm429 || v.balance <= 0)
        return send_429(c, &v, fd.latency_ms);
    if (fd.http500 && !fd.charge_error)
        return send_error(c, 500, 0, "internal server error (injected)", fd.latency_ms);
    if (fd.http503 && !fd.charge_error)
        return send_error(c, 503, 0, "service unavailable (injected)", fd.latency_ms);
    switch (c->ep) {
    case EP_PRODUCT:
        return ep_product(c, &fd);
    case EP_DEAL:
        return ep_deal(c, &fd);
    case EP_SELLER:
        return ep_browse(c, &fd, "/seller", sim_api_seller);
    case EP_QUERY:
        return ep_browse(c, &fd, "/query", sim_api_query);
    case EP_SEARCH:
        return ep_browse(c, &fd, "/search", sim_api_search);
    case EP_CATEGORY:
        return ep_browse(c, &fd, "/category", sim_api_category);
    case EP_BESTSELLERS:
        return ep_browse(c, &fd, "/bestsellers", sim_api_bestsellers);
    case EP_TOPSELLER:
        return ep_browse(c, &fd, "/topseller", sim_api_topseller);
    case EP_LIGHTNING:
        return ep_browse(c, &fd, "/lightningdeal", sim_api_lightning);
    case EP_TRACKING:
        return ep_tracking(c, &fd);
    default:
        return send_error(c, 404, 1, "unknown endpoint", 0);
    }
}

/* ---------- /_sim control ---------- */

static enum MHD_Result send_json(struct call *c, unsigned status, struct sim_buf *b)
{
    return send_body(c->s, c->conn, c->rq, status, b, SHAPE_NONE, 0);
}

static enum MHD_Result ctl_error(struct call *c, unsigned status, const char *msg)
{
    struct sim_buf b;
    sim_buf_init(&b);
    sim_buf_puts(&b, "{\"error\":");
    sim_buf_str(&b, msg);
    sim_buf_putc(&b, '}');
    return send_json(c, status, &b);
}

static enum MHD_Result ctl_stats(struct call *c)
{
    struct sim_server *s = c->s;
    int64_t earned, consumed, expired, balance, rate, inj[SIM_F_COUNT];
    int64_t now = kd_mono_ns();
    sim_bucket_totals(&s->bucket, now, &earned, &consumed, &expired, &balance, &rate);
    /* With a bucket per key the totals are over every key; "keys" has each, in --keys order. */
    struct sim_buf per_key;
    sim_buf_init(&per_key);
    for (int i = 0; s->key_bucket != NULL && i < s->cfg.n_keys; i++) {
        int64_t e = earned, c2 = consumed, x = expired, b2 = balance, r = rate;
        if (i > 0) {
            sim_bucket_totals(&s->key_bucket[i - 1], now, &e, &c2, &x, &b2, &r);
            earned += e, consumed += c2, expired += x, balance += b2;
        }
        pthread_mutex_lock(&s->ledger_mu);
        int64_t k429 = s->key_429[i];
        pthread_mutex_unlock(&s->ledger_mu);
        sim_buf_printf(&per_key,
                       "%s{\"tokens_earned\":%lld,\"tokens_consumed\":%lld,\"tokens_expired\":%lld,"
                       "\"tokens_left\":%lld,\"http_429\":%lld}",
                       i > 0 ? "," : "", (long long)e, (long long)c2, (long long)x, (long long)b2,
                       (long long)k429);
    }
    sim_faults_counts(&s->faults, inj);
    struct sim_buf b;
    sim_buf_init(&b);
    pthread_mutex_lock(&s->ledger_mu);
    sim_buf_printf(&b,
                   "{\"tokens_earned\":%lld,\"tokens_consumed\":%lld,\"tokens_expired\":%lld,"
                   "\"tokens_left\":%lld,\"refill_rate\":%lld,\"http_429\":%lld,"
                   "\"requests\":%lld,\"endpoints\":{",
                   (long long)earned, (long long)consumed, (long long)expired, (long long)balance,
                   (long long)rate, (long long)s->http_429, (long long)s->requests);
    for (int i = 0; i < EP_COUNT; i++)
        sim_buf_printf(&b, "\"%s\":{\"requests\":%lld,\"tokens\":%lld}%s", EP_NAMES[i],
                       (long long)s->ep_requests[i], (long long)s->ep_tokens[i],
                       i + 1 < EP_COUNT ? "," : "");
    sim_buf_printf(&b, "},\"asins_requested\":%lld,\"asins_distinct\":%lld,\"faults_injected\":{",
                   (long long)s->asins_requested,
                   (long long)__atomic_load_n(&s->asins_distinct, __ATOMIC_RELAXED));
    pthread_mutex_unlock(&s->ledger_mu);
    for (int i = 0; i < SIM_F_COUNT; i++)
        sim_buf_printf(&b, "\"%s\":%lld%s", sim_fault_name((enum sim_fault_kind)i),
                       (long long)inj[i], i + 1 < SIM_F_COUNT ? "," : "");
    struct sim_bucket_view v;
    sim_bucket_peek(&s->bucket, kd_mono_ns(), &v);
    sim_buf_printf(&b, "},\"keepa_minute\":%lld,\"products\":%lld,\"seed\":%llu",
                   (long long)keepa_min_of(s, &v), (long long)s->cat.products,
                   (unsigned long long)s->cat.seed);
    if (s->key_bucket != NULL) {
        sim_buf_puts(&b, ",\"keys\":[");
        if (per_key.len > 0)
            sim_buf_put(&b, per_key.data, per_key.len);
        sim_buf_putc(&b, ']');
    }
    sim_buf_free(&per_key);
    sim_buf_putc(&b, '}');
    return send_json(c, 200, &b);
}

static enum MHD_Result ctl_faults(struct call *c, const char *method)
{
    struct sim_server *s = c->s;
    if (strcmp(method, "POST") == 0) {
        const char *spec = param(c, "spec");
        if (spec == NULL && c->rq->body.len > 0)
            spec = c->rq->body.data;
        struct sim_fault_spec fs;
        char err[160] = "";
        if (sim_faults_parse(spec ? spec : "", &fs, err, sizeof(err)) != 0)
            return ctl_error(c, 400, err);
        sim_faults_replace(&s->faults, &fs);
    }
    struct sim_fault_spec cur;
    sim_faults_get(&s->faults, &cur);
    char text[1024];
    sim_faults_format(&cur, text, sizeof(text));
    struct sim_buf b;
    sim_buf_init(&b);
    sim_buf_puts(&b, "{\"spec\":");
    sim_buf_str(&b, text);
    sim_buf_putc(&b, '}');
    return send_json(c, 200, &b);
}

static enum MHD_Result ctl_number(struct call *c, const char *name, int64_t *out)
{
    const char *v = param(c, name);
    if (v == NULL || sim_parse_i64(v, out) != 0)
        return MHD_NO;
    return MHD_YES;
}

static enum MHD_Result ctl_oracle(struct call *c)
{
    struct sim_server *s = c->s;
    size_t len;
    const char *text = selection_text(c, &len);
    struct sim_selection *sel = malloc(sizeof(*sel));
    char err[160];
    if (sel == NULL)
        return ctl_error(c, 500, "out of memory");
    if (sim_selection_parse(text, len, sel, err, sizeof(err)) != 0) {
        free(sel);
        return ctl_error(c, 400, err);
    }
    struct sim_bucket_view v;
    sim_bucket_peek(&s->bucket, kd_mono_ns(), &v);
    int64_t kmin = keepa_min_of(s, &v);
    char key[DEAL_KEY_MAX];
    sim_selection_key(sel, key, sizeof(key));
    pthread_mutex_lock(&s->cache_mu);
    struct deal_memo_slot *ms = memo_take(s, key);
    pthread_mutex_unlock(&s->cache_mu);
    struct sim_deal_result res;
    int rc = sim_deal_scan_memo(&s->cat, sel, kmin, 0, ms != NULL ? &ms->memo : NULL, &res);
    memo_give(s, ms);
    free(sel);
    if (rc != 0)
        return ctl_error(c, 500, "out of memory");
    struct sim_buf b;
    sim_buf_init(&b);
    sim_buf_printf(&b, "{\"keepa_minute\":%lld,\"count\":%zu,\"asins\":[", (long long)kmin, res.n);
    for (size_t i = 0; i < res.n; i++) {
        char asin[11];
        sim_catalog_asin(&s->cat, res.idx[i], asin);
        sim_buf_str(&b, asin);
        sim_buf_putc(&b, ',');
    }
    sim_buf_uncomma(&b);
    /* where each deal qualified: the minute it records and its deltaPercent then */
    sim_buf_puts(&b, "],\"qualifiedAt\":[");
    for (size_t i = 0; i < res.n; i++)
        sim_buf_printf(&b, "%lld,", (long long)res.hit[i].minute);
    sim_buf_uncomma(&b);
    sim_buf_puts(&b, "],\"qualifiedDeltaPercent\":[");
    for (size_t i = 0; i < res.n; i++)
        sim_buf_printf(&b, "%lld,", (long long)res.hit[i].delta_pct);
    sim_buf_uncomma(&b);
    sim_buf_putc(&b, ']');
    /* with truth=1, each listed product's truth now under the judgement (about 5 us each) */
    const char *want = param(c, "truth");
    if (want != NULL && strcmp(want, "1") == 0) {
        struct jd_rules r;
        char rerr[200];
        jd_rules_default(&r);
        if (sim_truth_rules(param_cb, c, &r, rerr, sizeof(rerr)) != 0) {
            sim_deal_result_free(&res);
            sim_buf_free(&b);
            return ctl_error(c, 400, rerr);
        }
        struct sim_product *p = malloc(sizeof(*p));
        struct sim_truth *t = malloc(sizeof(*t));
        sim_buf_printf(&b, ",\"rules_hash\":\"%016llx\",\"truth\":[",
                       (unsigned long long)jd_rules_hash(&r));
        for (size_t i = 0; p != NULL && t != NULL && i < res.n; i++) {
            sim_catalog_product(&s->cat, res.idx[i], kmin, p);
            sim_truth_judge(&s->cat, p, SIM_TRUTH_OFFERS, &r, t);
            sim_truth_render(&b, p->asin, t);
            sim_buf_putc(&b, ',');
        }
        sim_buf_uncomma(&b);
        sim_buf_putc(&b, ']');
        if (p == NULL || t == NULL)
            b.oom = 1;
        free(p);
        free(t);
    }
    sim_buf_putc(&b, '}');
    sim_deal_result_free(&res);
    return send_json(c, 200, &b);
}

static void truth_array(struct sim_buf *b, const char *key, const int64_t *v, int n)
{
    sim_buf_key(b, key);
    sim_buf_putc(b, '[');
    for (int i = 0; i < n; i++) {
        sim_buf_int(b, v[i]);
        if (i + 1 < n)
            sim_buf_putc(b, ',');
    }
    sim_buf_puts(b, "],");
}

static enum MHD_Result ctl_product(struct call *c)
{
    struct sim_server *s = c->s;
    const char *asin = param(c, "asin");
    int64_t idx = asin ? sim_catalog_resolve(&s->cat, asin) : -1;
    if (idx < 0)
        return ctl_error(c, 404, "unknown asin");
    struct jd_rules rules;
    char rerr[200];
    jd_rules_default(&rules);
    if (sim_truth_rules(param_cb, c, &rules, rerr, sizeof(rerr)) != 0)
        return ctl_error(c, 400, rerr);
    struct sim_bucket_view v;
    sim_bucket_peek(&s->bucket, kd_mono_ns(), &v);
    int64_t now = keepa_min_of(s, &v), at = now;
    const char *at_s = param(c, "at"); /* the truth at an earlier Keepa minute */
    if (at_s != NULL && (sim_parse_i64(at_s, &at) != 0 || at > now))
        return ctl_error(c, 400, "at must be a Keepa minute <= now");
    struct sim_product *pp = malloc(sizeof(*pp));
    if (pp == NULL)
        return ctl_error(c, 500, "out of memory");
    const struct sim_product *p = pp;
    sim_catalog_product(&s->cat, idx, at, pp);
    snprintf(pp->asin, sizeof(pp->asin), "%s", asin);
    struct sim_buf b;
    sim_buf_init(&b);
    sim_buf_printf(&b,
                   "{\"asin\":\"%s\",\"index\":%lld,\"keepa_minute\":%lld,\"lastUpdate\":%lld,"
                   "\"fresh\":%s,\"rootCategory\":%lld,\"categories\":[%lld,%lld],"
                   "\"rating\":%d,\"reviews\":%d,\"hasAmazon\":%s,\"isVariation\":%s,"
                   "\"variationPrimary\":%s,\"salesRankDrops30\":%d,\"salesRankDrops90\":%d,"
                   "\"salesRankDrops180\":%d,\"salesRankDrops365\":%d,\"liveOffers\":%d,"
                   "\"fbaFee\":%d,\"referralFeePercent\":%d,",
                   p->asin, (long long)idx, (long long)p->keepa_min, (long long)p->last_update,
                   !p->stale && p->last_update >= p->keepa_min - SIM_DEAL_FRESH_MIN ? "true"
                                                                                    : "false",
                   (long long)p->root_cat, (long long)p->cats[0], (long long)p->cats[1], p->rating,
                   p->reviews, p->cur[0] > 0 ? "true" : "false", p->is_variation ? "true" : "false",
                   p->variation_primary ? "true" : "false", p->drops30, p->drops90, p->drops180,
                   p->drops365, p->mkt.n_live, p->fba_fee_cents, p->referral_pct);
    truth_array(&b, "current", p->cur, SIM_CSV_TYPES);
    truth_array(&b, "last", p->last, SIM_CSV_TYPES);
    sim_buf_puts(&b, "\"avgByDateRange\":[");
    for (int r = 0; r < SIM_DEAL_RANGES; r++) {
        sim_buf_putc(&b, '[');
        for (int i = 0; i < SIM_CSV_TYPES; i++) {
            sim_buf_int(&b, p->avg_dr[r][i]);
            if (i + 1 < SIM_CSV_TYPES)
                sim_buf_putc(&b, ',');
        }
        sim_buf_puts(&b, r + 1 < SIM_DEAL_RANGES ? "]," : "]],");
    }
    truth_array(&b, "avg30", p->avg30, SIM_CSV_TYPES);
    truth_array(&b, "avg90", p->avg90, SIM_CSV_TYPES);
    truth_array(&b, "avg180", p->avg180, SIM_CSV_TYPES);
    truth_array(&b, "avg365", p->avg365, SIM_CSV_TYPES);
    struct sim_truth *t = malloc(sizeof(*t));
    if (t != NULL) { /* the judgement of a full fetch at that minute */
        sim_truth_judge(&s->cat, p, SIM_TRUTH_OFFERS, &rules, t);
        sim_buf_key(&b, "judgement");
        sim_truth_render(&b, p->asin, t);
        free(t);
    } else {
        b.oom = 1;
    }
    sim_buf_putc(&b, '}');
    free(pp);
    return send_json(c, 200, &b);
}

/* /_sim/truth, /_sim/timeline, /_sim/true-deals: the oracle (sim/oracle.h). */
static enum MHD_Result ctl_truth(struct call *c,
                                 unsigned (*fn)(const struct sim_oracle_req *, struct sim_buf *))
{
    struct sim_server *s = c->s;
    struct sim_bucket_view v;
    sim_bucket_peek(&s->bucket, kd_mono_ns(), &v);
    struct sim_oracle_req q = {&s->cat, keepa_min_of(s, &v), keepa_min_of_wall, s, param_cb,
                               c,       c->rq->body.data,    c->rq->body.len};
    struct sim_buf b;
    sim_buf_init(&b);
    unsigned status = fn(&q, &b);
    return send_json(c, status, &b);
}

/* POST /_sim/notify?asin=A[&key=K][&csvType=T][&cause=C]: raises tracking notifications. */
static enum MHD_Result ctl_notify(struct call *c)
{
    struct sim_server *s = c->s;
    const char *asin = param(c, "asin");
    int64_t type = -1, cause = 1;
    const char *ts = param(c, "csvType"), *cs = param(c, "cause");
    if (asin == NULL || !sim_asin_wellformed(asin) ||
        (ts != NULL && (sim_parse_i64(ts, &type) != 0 || type < 0 || type >= SIM_CSV_TYPES)) ||
        (cs != NULL && (sim_parse_i64(cs, &cause) != 0 || cause < 0 || cause > 6)))
        return ctl_error(c, 400, "asin=A is required; csvType 0..35, cause 0..6");
    struct sim_bucket_view v;
    sim_bucket_peek(&s->bucket, kd_mono_ns(), &v);
    int n = sim_tracking_notify(s->tracking, &s->cat, param(c, "key"), asin, (int)type, (int)cause,
                                keepa_min_of(s, &v));
    struct sim_buf b;
    sim_buf_init(&b);
    sim_buf_printf(&b, "{\"notifications\":%d}", n);
    return send_json(c, 200, &b);
}

/* GET /_sim/clock: how the catalog's Keepa minute relates to the wall clock. */
static enum MHD_Result ctl_clock(struct call *c)
{
    struct sim_server *s = c->s;
    struct sim_bucket_view v;
    int64_t mono = kd_mono_ns();
    sim_bucket_peek(&s->bucket, mono, &v);
    struct sim_buf b;
    sim_buf_init(&b);
    sim_buf_printf(&b,
                   "{\"keepa_minute\":%lld,\"timestamp\":%lld,\"minute_ms\":%lld,"
                   "\"start_wall_ms\":%lld,\"catalog_start_ms\":%lld,\"catch_up_hours\":%lld}",
                   (long long)keepa_min_of(s, &v), (long long)now_wall_ms(s, mono),
                   (long long)s->cfg.minute_ms, (long long)s->start_wall_ms,
                   (long long)s->catalog_start_ms,
                   (long long)(s->cfg.catch_up_hours > 0 ? s->cfg.catch_up_hours : 6));
    return send_json(c, 200, &b);
}

static enum MHD_Result control(struct call *c, const char *path, const char *method)
{
    struct sim_server *s = c->s;
    if (strcmp(path, "/_sim/truth") == 0)
        return ctl_truth(c, sim_oracle_truth);
    if (strcmp(path, "/_sim/timeline") == 0)
        return ctl_truth(c, sim_oracle_timeline);
    if (strcmp(path, "/_sim/true-deals") == 0)
        return ctl_truth(c, sim_oracle_true_deals);
    if (strcmp(path, "/_sim/clock") == 0)
        return ctl_clock(c);
    if (strcmp(path, "/_sim/notify") == 0)
        return ctl_notify(c);
    if (strcmp(path, "/_sim/stats") == 0)
        return ctl_stats(c);
    if (strcmp(path, "/_sim/faults") == 0)
        return ctl_faults(c, method);
    if (strcmp(path, "/_sim/deals") == 0)
        return ctl_oracle(c);
    if (strcmp(path, "/_sim/product") == 0)
        return ctl_product(c);
    if (strcmp(path, "/_sim/refill-rate") == 0 || strcmp(path, "/_sim/tokens") == 0) {
        int64_t n;
        int rate = path[6] == 'r';
        if (ctl_number(c, rate ? "rate" : "set", &n) != MHD_YES || (rate && n < 0))
            return ctl_error(c, 400, rate ? "rate=N (N >= 0) is required" : "set=N is required");
        for (int i = 0; i < (s->key_bucket != NULL ? s->cfg.n_keys : 1); i++) {
            struct sim_bucket *bk = i == 0 ? &s->bucket : &s->key_bucket[i - 1];
            if (rate)
                sim_bucket_set_rate(bk, kd_mono_ns(), n);
            else
                sim_bucket_set_balance(bk, kd_mono_ns(), n);
        }
        return ctl_stats(c);
    }
    if (strcmp(path, "/_sim/reset") == 0) {
        sim_bucket_reset_totals(&s->bucket);
        for (int i = 1; s->key_bucket != NULL && i < s->cfg.n_keys; i++)
            sim_bucket_reset_totals(&s->key_bucket[i - 1]);
        sim_faults_reset_counts(&s->faults);
        pthread_mutex_lock(&s->ledger_mu);
        s->requests = s->http_429 = s->asins_requested = 0;
        memset(s->key_429, 0, sizeof(s->key_429));
        memset(s->ep_requests, 0, sizeof(s->ep_requests));
        memset(s->ep_tokens, 0, sizeof(s->ep_tokens));
        memset(s->asin_seen, 0, (size_t)((s->cat.products + 7) / 8));
        __atomic_store_n(&s->asins_distinct, 0, __ATOMIC_RELAXED);
        pthread_mutex_unlock(&s->ledger_mu);
        return ctl_stats(c);
    }
    return ctl_error(c, 404, "unknown control endpoint");
}

/* ---------- MHD callbacks ---------- */

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    (void)version;
    struct sim_server *s = cls;
    struct req *rq = *con_cls;
    if (rq == NULL) {
        rq = calloc(1, sizeof(*rq));
        if (rq == NULL)
            return MHD_NO;
        sim_buf_init(&rq->body);
        rq->start_ns = kd_mono_ns();
        *con_cls = rq;
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        if (!rq->too_big && rq->body.len + *upload_data_size <= SIM_MAX_BODY) {
            sim_buf_put(&rq->body, upload_data, *upload_data_size);
        } else {
            rq->too_big = 1;
            sim_buf_free(&rq->body);
        }
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (rq->suspended) { /* resumed after injected latency */
        rq->suspended = 0;
        struct MHD_Response *resp = rq->pending;
        rq->pending = NULL;
        enum MHD_Result r = MHD_queue_response(conn, rq->pending_status, resp);
        MHD_destroy_response(resp);
        return r;
    }
    if (!sim_buf_ok(&rq->body))
        rq->too_big = 1;
    /* Normalise the path: a trailing slash never changes the result. */
    char path[256];
    size_t n = strlen(url);
    if (n >= sizeof(path))
        n = sizeof(path) - 1;
    memcpy(path, url, n);
    path[n] = '\0';
    while (n > 1 && path[n - 1] == '/')
        path[--n] = '\0';
    struct call c = {s, conn, rq, EP_OTHER, rq->start_ns, -1};
    if (strncmp(path, "/_sim/", 6) == 0) {
        if (rq->too_big)
            return ctl_error(&c, 413, "request body larger than 1 MiB");
        return control(&c, path, method);
    }
    for (int e = 0; e < EP_OTHER; e++)
        if (path[0] == '/' && strcmp(path + 1, EP_NAMES[e]) == 0)
            c.ep = (enum endpoint)e;
    if (c.ep == EP_OTHER) { /* a valid key sees its real token fields, as on Keepa */
        unsigned ks = check_key(&c);
        if (ks != 0)
            return send_error(&c, ks, 1, ks == 402 ? "access key expired" : "invalid access key",
                              0);
        return send_error(&c, 404, 0, "unknown endpoint", 0);
    }
    return api(&c);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)conn;
    (void)toe;
    struct req *rq = *con_cls;
    if (rq == NULL)
        return;
    if (rq->pending != NULL)
        MHD_destroy_response(rq->pending);
    sim_buf_free(&rq->body);
    free(rq);
    *con_cls = NULL;
}

/* ---------- replay ---------- */

static void emit_tree(struct sim_buf *b, yajl_val v, int depth)
{
    if (v == NULL || depth > 64) {
        sim_buf_puts(b, "null");
        return;
    }
    switch (v->type) {
    case yajl_t_string:
        sim_buf_str(b, v->u.string);
        break;
    case yajl_t_number:
        sim_buf_puts(b, v->u.number.r);
        break;
    case yajl_t_true:
        sim_buf_puts(b, "true");
        break;
    case yajl_t_false:
        sim_buf_puts(b, "false");
        break;
    case yajl_t_object:
        sim_buf_putc(b, '{');
        for (size_t i = 0; i < v->u.object.len; i++) {
            if (i)
                sim_buf_putc(b, ',');
            sim_buf_str(b, v->u.object.keys[i]);
            sim_buf_putc(b, ':');
            emit_tree(b, v->u.object.values[i], depth + 1);
        }
        sim_buf_putc(b, '}');
        break;
    case yajl_t_array:
        sim_buf_putc(b, '[');
        for (size_t i = 0; i < v->u.array.len; i++) {
            if (i)
                sim_buf_putc(b, ',');
            emit_tree(b, v->u.array.values[i], depth + 1);
        }
        sim_buf_putc(b, ']');
        break;
    default:
        sim_buf_puts(b, "null");
    }
}

/* Loads a recorded body; returns the members after the envelope (ending with ','), or NULL. */
static char *load_replay(const char *path, int64_t *consumed)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        kd_error("kdeals-sim: cannot open replay file %s: %s", path, strerror(errno));
        return NULL;
    }
    struct sim_buf raw;
    sim_buf_init(&raw);
    char chunk[65536];
    size_t got;
    while ((got = fread(chunk, 1, sizeof(chunk), f)) > 0)
        sim_buf_put(&raw, chunk, got);
    fclose(f);
    char ebuf[256];
    yajl_val root = raw.data ? yajl_tree_parse(raw.data, ebuf, sizeof(ebuf)) : NULL;
    sim_buf_free(&raw);
    if (!YAJL_IS_OBJECT(root)) {
        kd_error("kdeals-sim: replay file %s is not a JSON object", path);
        yajl_tree_free(root);
        return NULL;
    }
    static const char *env[] = {"timestamp",         "tokensLeft",         "refillIn",
                                "refillRate",        "tokenFlowReduction", "tokensConsumed",
                                "processingTimeInMs"};
    struct sim_buf out;
    sim_buf_init(&out);
    for (size_t i = 0; i < root->u.object.len; i++) {
        const char *k = root->u.object.keys[i];
        int skip = 0;
        for (size_t e = 0; e < sizeof(env) / sizeof(env[0]); e++)
            skip |= strcmp(k, env[e]) == 0;
        if (strcmp(k, "tokensConsumed") == 0 && YAJL_IS_INTEGER(root->u.object.values[i]))
            *consumed = YAJL_GET_INTEGER(root->u.object.values[i]);
        if (skip)
            continue;
        sim_buf_str(&out, k);
        sim_buf_putc(&out, ':');
        emit_tree(&out, root->u.object.values[i], 0);
        sim_buf_putc(&out, ',');
    }
    yajl_tree_free(root);
    if (!sim_buf_ok(&out)) {
        sim_buf_free(&out);
        return NULL;
    }
    return out.data ? out.data : strdup("");
}

/* ---------- start / stop ---------- */

/* libmicrohttpd's diagnostics (oversized headers, refused connections) go through kd_log. */
__attribute__((format(printf, 2, 0))) static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char line[512];
    vsnprintf(line, sizeof(line), fmt, ap);
    size_t n = strlen(line);
    while (n > 0 && line[n - 1] == '\n')
        line[--n] = '\0';
    kd_info("libmicrohttpd: %s", line);
}

static int write_port_file(const char *path, unsigned port)
{
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "w");
    if (f == NULL)
        return -errno;
    fprintf(f, "%u\n", port);
    if (fclose(f) != 0 || rename(tmp, path) != 0) {
        int e = -errno;
        unlink(tmp);
        return e;
    }
    return 0;
}

int sim_server_start(const struct sim_config *cfg, struct sim_server **out)
{
    struct sim_server *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return -ENOMEM;
    s->cfg = *cfg;
    int rc = sim_catalog_init(&s->cat, cfg->seed, cfg->products, cfg->volatility,
                              (enum sim_economy)cfg->economy);
    if (rc != 0) {
        kd_error("kdeals-sim: --products %lld / --volatility %g: out of range",
                 (long long)cfg->products, cfg->volatility);
        free(s);
        return rc;
    }
    struct sim_fault_spec fs;
    char err[160] = "";
    if (sim_faults_parse(cfg->faults, &fs, err, sizeof(err)) != 0) {
        kd_error("kdeals-sim: --faults: %s", err);
        free(s);
        return -EINVAL;
    }
    s->start_mono_ns = kd_mono_ns();
    s->start_wall_ms = cfg->clock_ms > 0 ? cfg->clock_ms : kd_wall_ms();
    s->catalog_start_ms = s->start_wall_ms;
    if (cfg->minute_ms < 60000) { /* accelerated: start (accel - 1) x catch_up_hours behind */
        int64_t hours = cfg->catch_up_hours > 0 ? cfg->catch_up_hours : 6;
        __int128 lag = (__int128)(60000 - cfg->minute_ms) * hours * 3600000 / cfg->minute_ms;
        int64_t room = s->start_wall_ms - kd_keepa_min_to_ms(525600); /* not before 2012 */
        s->catalog_start_ms -= lag < room ? (int64_t)lag : (room > 0 ? room : 0);
    }
    s->base_keepa_min = kd_ms_to_keepa_min(s->catalog_start_ms);
    rc = sim_bucket_init(&s->bucket, cfg->minute_ms, cfg->bucket_minutes, cfg->refill_rate,
                         cfg->start_tokens, s->start_mono_ns);
    if (rc != 0) {
        kd_error("kdeals-sim: --minute-ms, --bucket-minutes and --refill-rate must be >= 1, "
                 ">= 1 and >= 0");
        free(s);
        return rc;
    }
    if (cfg->bucket_per_key && cfg->n_keys > 1) {
        s->key_bucket = calloc((size_t)cfg->n_keys - 1, sizeof(*s->key_bucket));
        if (s->key_bucket == NULL) {
            sim_bucket_destroy(&s->bucket);
            free(s);
            return -ENOMEM;
        }
        for (int i = 1; i < cfg->n_keys; i++)
            sim_bucket_init(&s->key_bucket[i - 1], cfg->minute_ms, cfg->bucket_minutes,
                            cfg->refill_rate, cfg->start_tokens, s->start_mono_ns);
    } else if (cfg->bucket_per_key && cfg->n_keys == 1) {
        s->key_bucket = &s->bucket; /* one key: its bucket is the one bucket */
    }
    sim_faults_init(&s->faults, cfg->seed, &fs);
    pthread_mutex_init(&s->ledger_mu, NULL);
    pthread_mutex_init(&s->cache_mu, NULL);
    pthread_mutex_init(&s->stats_mu, NULL);
    pthread_mutex_init(&s->delay_mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->delay_cv, &ca);
    pthread_condattr_destroy(&ca);
    s->asin_seen = calloc((size_t)((cfg->products + 7) / 8), 1);
    s->offers_fetched_min = calloc((size_t)cfg->products, sizeof(int32_t));
    s->tracking = sim_tracking_new();
    if (s->asin_seen == NULL || s->offers_fetched_min == NULL || s->tracking == NULL) {
        kd_error("kdeals-sim: out of memory for %lld products", (long long)cfg->products);
        sim_server_stop(s);
        return -ENOMEM;
    }
    int64_t dummy = 0;
    if (cfg->replay_deal != NULL &&
        (s->replay_deal_tail = load_replay(cfg->replay_deal, &dummy)) == NULL) {
        sim_server_stop(s);
        return -EINVAL;
    }
    s->replay_product_cost = 1;
    if (cfg->replay_product != NULL &&
        (s->replay_product_tail = load_replay(cfg->replay_product, &s->replay_product_cost)) ==
            NULL) {
        sim_server_stop(s);
        return -EINVAL;
    }
    if (pthread_create(&s->delay_thread, NULL, delay_main, s) != 0) {
        kd_error("kdeals-sim: cannot start the latency thread");
        sim_server_stop(s);
        return -EAGAIN;
    }
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)cfg->port);
    if (inet_pton(AF_INET, cfg->listen_addr, &sa.sin_addr) != 1) {
        kd_error("kdeals-sim: --listen %s: not an IPv4 address", cfg->listen_addr);
        sim_server_stop(s);
        return -EINVAL;
    }
    if (!cfg->listen_explicit && (ntohl(sa.sin_addr.s_addr) >> 24) != 127) {
        kd_error("kdeals-sim: refusing to listen on non-loopback %s without --listen",
                 cfg->listen_addr);
        sim_server_stop(s);
        return -EINVAL;
    }
    unsigned threads = cfg->threads > 0 ? (unsigned)cfg->threads : 2;
    s->mhd = MHD_start_daemon(
        MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG, 0, NULL, NULL,
        on_request, s, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa, MHD_OPTION_THREAD_POOL_SIZE,
        threads, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)(cfg->max_connections > 0 ? cfg->max_connections : 1000),
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)120, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
        (size_t)(64 * 1024), MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
        MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned)1024, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, s,
        MHD_OPTION_END);
    if (s->mhd == NULL) {
        kd_error("kdeals-sim: cannot listen on %s:%d (port in use or no permission)",
                 cfg->listen_addr, cfg->port);
        sim_server_stop(s);
        return -EADDRINUSE;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->mhd, MHD_DAEMON_INFO_BIND_PORT);
    unsigned port = di ? di->port : (unsigned)cfg->port;
    if (cfg->port_file != NULL && (rc = write_port_file(cfg->port_file, port)) != 0) {
        kd_error("kdeals-sim: cannot write --port-file %s: %s", cfg->port_file, strerror(-rc));
        sim_server_stop(s);
        return rc;
    }
    fprintf(stderr, "kdeals-sim: listening on http://%s:%u\n", cfg->listen_addr, port);
    fflush(stderr);
    *out = s;
    return 0;
}

void sim_server_stop(struct sim_server *s)
{
    if (s == NULL)
        return;
    /* The timer thread resumes every delayed connection as it leaves, and none is delayed
     * after (schedule_resume, suspend_in_reader check delay_stop under delay_mu), so the
     * library stops with none suspended. No MHD_quiesce_daemon: with a pool of epoll threads
     * it can abort the process ("Failed to remove listen FD from epoll set") when a thread
     * has taken the listen socket out of its set at the connection limit. */
    if (s->delay_thread) {
        pthread_mutex_lock(&s->delay_mu);
        s->delay_stop = 1;
        pthread_cond_signal(&s->delay_cv);
        pthread_mutex_unlock(&s->delay_mu);
        pthread_join(s->delay_thread, NULL);
    }
    if (s->mhd != NULL)
        MHD_stop_daemon(s->mhd);
    for (int i = 0; i < DEAL_CACHE_N; i++)
        if (s->cache[i].used)
            sim_deal_result_free(&s->cache[i].res);
    for (int i = 0; i < DEAL_MEMO_N; i++)
        sim_deal_memo_free(&s->memo[i].memo);
    free(s->asin_seen);
    free(s->offers_fetched_min);
    sim_tracking_free(s->tracking);
    if (s->cat_stats_ready)
        sim_cat_stats_free(&s->cat_stats);
    pthread_mutex_destroy(&s->stats_mu);
    free(s->replay_deal_tail);
    free(s->replay_product_tail);
    for (int i = 1; s->key_bucket != NULL && s->key_bucket != &s->bucket && i < s->cfg.n_keys; i++)
        sim_bucket_destroy(&s->key_bucket[i - 1]);
    if (s->key_bucket != &s->bucket)
        free(s->key_bucket);
    sim_bucket_destroy(&s->bucket);
    sim_faults_destroy(&s->faults);
    pthread_mutex_destroy(&s->ledger_mu);
    pthread_mutex_destroy(&s->cache_mu);
    pthread_mutex_destroy(&s->delay_mu);
    pthread_cond_destroy(&s->delay_cv);
    free(s);
}
