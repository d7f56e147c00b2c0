/*
 * server.c: libmicrohttpd on a libuv loop, the page, the API's HTTP side and the event
 * streams. See server.h.
 *
 * One request, in the library's access handler: the URI log callback (which sees the raw
 * request target before anything is parsed) allocates the request and records the target's
 * length; the body, if any, is collected up to WEB_BODY_MAX (more only marks it too big, it is
 * never buffered); on the last call the request is checked (size, Host, token, origin) and
 * routed. Every answer goes through answer(), which counts it and adds the security headers.
 *
 * An event stream is a response whose content comes from a reader callback over the stream's
 * queue: with the queue empty the reader suspends the connection, and a broadcast resumes it.
 * The stream's state is freed by the response's free callback, when the library is done with
 * the connection, however it ended.
 */
#include "web/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/log.h"
#include "base/web.h"
#include "shm/counters.h"
#include "web/api.h"
#include "web/assets.h"

#define PAGE_CSP                                                                                   \
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "                \
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

struct stream {
    struct web_server *ws;
    struct MHD_Connection *conn;
    char *buf;
    size_t len, off, cap;
    bool suspended;
    bool closing; /* end the stream once the queue is sent (dropped, or the server stops) */
    struct stream *prev, *next;
};

struct web_server {
    uv_loop_t *loop;
    struct MHD_Daemon *mhd;
    uv_poll_t poll;
    uv_timer_t mhd_timer, changes_timer, keepalive_timer, sample_timer;
    int handles_open;
    void (*done)(void *);
    void *done_ud;

    struct web_api *api;
    struct kd_web_listen listen;
    unsigned port;
    char token[KD_WEB_TOKEN_MAX];
    size_t token_len;
    struct shm_counter_block *counters;
    struct shm_counter_block own_counters; /* when the caller has no block */
    struct shm_web *publish;

    struct stream *streams;
    unsigned n_streams;
    uint64_t changes_pos; /* the change log position the streams have been sent up to */
    bool closing;
};

/* One request, from the URI log callback to the completion callback. */
struct request {
    size_t uri_len;
    int64_t start_ns;
    char body[WEB_BODY_MAX];
    size_t body_len;
    bool too_big;
    bool headers_seen; /* the first call (headers only) has been answered with MHD_YES */
};

/* ---- the library on the loop ----------------------------------------------------------- */

static void run_mhd(struct web_server *ws);

static void on_mhd_timer(uv_timer_t *t)
{
    run_mhd(t->data);
}

static void on_poll(uv_poll_t *p, int status, int events)
{
    (void)status;
    (void)events;
    run_mhd(p->data);
}

/* Lets the library do what is due, then arms the timer for its next timeout. */
static void run_mhd(struct web_server *ws)
{
    if (ws->mhd == NULL)
        return;
    MHD_run(ws->mhd);
    MHD_UNSIGNED_LONG_LONG ms;
    if (MHD_get_timeout(ws->mhd, &ms) == MHD_YES)
        uv_timer_start(&ws->mhd_timer, on_mhd_timer, ms > 60000 ? 60000 : ms, 0);
    else
        uv_timer_start(&ws->mhd_timer, on_mhd_timer, 1000, 0);
}

/* ---- answers --------------------------------------------------------------------------- */

static void count(struct web_server *ws, unsigned status, const struct request *rq)
{
    shm_counter_add(ws->counters, SHM_C_web_requests, 1);
    if (status >= 400 && status < 500)
        shm_counter_add(ws->counters, SHM_C_web_client_errors, 1);
    else if (status >= 500)
        shm_counter_add(ws->counters, SHM_C_web_server_errors, 1);
    if (rq != NULL)
        shm_hist_record(ws->counters, SHM_C_web_request_ms,
                        (uint64_t)((kd_mono_ns() - rq->start_ns) / KD_NS_PER_MS));
}

/* Queues RESP (consumed) with STATUS and the headers every answer carries. */
static enum MHD_Result queue(struct web_server *ws, struct MHD_Connection *conn,
                             const struct request *rq, unsigned status, struct MHD_Response *resp,
                             const char *content_type, bool page)
{
    if (resp == NULL)
        return MHD_NO;
    MHD_add_response_header(resp, "Content-Type", content_type);
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(resp, "Referrer-Policy", "no-referrer");
    MHD_add_response_header(resp, "X-Frame-Options", "DENY");
    MHD_add_response_header(resp, "Cache-Control", page ? "no-cache" : "no-store");
    if (page)
        MHD_add_response_header(resp, "Content-Security-Policy", PAGE_CSP);
    count(ws, status, rq);
    enum MHD_Result r = MHD_queue_response(conn, status, resp);
    MHD_destroy_response(resp);
    return r;
}

/* Sends REPLY (its body is handed to the library, which frees it). */
static enum MHD_Result answer(struct web_server *ws, struct MHD_Connection *conn,
                              const struct request *rq, struct web_reply *reply)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(reply->len, reply->body, MHD_RESPMEM_MUST_FREE);
    if (resp == NULL) {
        free(reply->body);
        return MHD_NO;
    }
    if (reply->allow != NULL)
        MHD_add_response_header(resp, "Allow", reply->allow);
    if (reply->retry_after_s > 0) {
        char s[16];
        snprintf(s, sizeof(s), "%u", reply->retry_after_s);
        MHD_add_response_header(resp, "Retry-After", s);
    }
    if (reply->status == 401)
        MHD_add_response_header(resp, "WWW-Authenticate", "Bearer realm=\"kdeals\"");
    return queue(ws, conn, rq, reply->status, resp, reply->content_type, false);
}

static enum MHD_Result fail(struct web_server *ws, struct MHD_Connection *conn,
                            const struct request *rq, unsigned status, const char *allow,
                            const char *msg)
{
    struct web_reply r;
    web_api_error(&r, status, NULL, "%s", msg);
    r.allow = allow;
    return answer(ws, conn, rq, &r);
}

/* ---- checks ---------------------------------------------------------------------------- */

/* On a loopback listen, the Host must name loopback: a page of another site that got its
 * name resolved to 127.0.0.1 (DNS rebinding) sends its own name and is refused. */
static bool host_ok(const struct web_server *ws, struct MHD_Connection *conn)
{
    if (!ws->listen.loopback)
        return true;
    const char *host = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Host");
    if (host == NULL)
        return false;
    char name[300];
    snprintf(name, sizeof(name), "%s", host);
    char *end = name[0] == '[' ? strchr(name, ']') : strrchr(name, ':');
    if (name[0] == '[') {
        if (end == NULL)
            return false;
        end[1] = '\0';
    } else if (end != NULL) {
        *end = '\0';
    }
    if (strcasecmp(name, "localhost") == 0 || strcmp(name, "[::1]") == 0)
        return true;
    struct in_addr a;
    return inet_pton(AF_INET, name, &a) == 1 && (ntohl(a.s_addr) >> 24) == 127;
}

static bool token_ok(const struct web_server *ws, struct MHD_Connection *conn)
{
    if (ws->token_len == 0)
        return true;
    const char *auth = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization");
    if (auth == NULL || strncasecmp(auth, "Bearer ", 7) != 0)
        return false;
    const char *t = auth + 7;
    while (*t == ' ')
        t++;
    return kd_web_token_equal(t, strlen(t), ws->token, ws->token_len);
}

/* A write comes from this server's own page: an Origin, when the browser sends one, names
 * this host, and Sec-Fetch-Site does not say cross-site. */
static bool same_origin(struct MHD_Connection *conn)
{
    const char *origin = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Origin");
    const char *host = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Host");
    const char *site = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Sec-Fetch-Site");
    if (site != NULL && strcmp(site, "same-origin") != 0 && strcmp(site, "none") != 0)
        return false;
    if (origin == NULL)
        return true;
    char want[320];
    snprintf(want, sizeof(want), "http://%s", host != NULL ? host : "");
    return host != NULL && strcasecmp(origin, want) == 0;
}

/* ---- event streams --------------------------------------------------------------------- */

static void stream_resume(struct stream *s)
{
    if (s->suspended) {
        s->suspended = false;
        MHD_resume_connection(s->conn);
    }
}

/* Queues TEXT for S; a stream whose reader fell too far behind is ended instead. */
static void stream_put(struct stream *s, const char *text, size_t len)
{
    if (s->closing)
        return;
    if (s->len - s->off + len > WEB_STREAM_QUEUE) {
        kd_info("web: an event stream does not read; ending it");
        s->closing = true;
        stream_resume(s);
        return;
    }
    if (s->off > 0) {
        memmove(s->buf, s->buf + s->off, s->len - s->off);
        s->len -= s->off;
        s->off = 0;
    }
    if (s->len + len > s->cap) {
        size_t cap = s->cap ? s->cap : 4096;
        while (cap < s->len + len)
            cap *= 2;
        char *more = realloc(s->buf, cap);
        if (more == NULL) {
            s->closing = true;
            stream_resume(s);
            return;
        }
        s->buf = more;
        s->cap = cap;
    }
    memcpy(s->buf + s->len, text, len);
    s->len += len;
    stream_resume(s);
}

/* Queues an event for S: "id: ID\nevent: NAME\ndata: JSON\n\n" (id 0: none). */
static void stream_event(struct stream *s, const char *name, uint64_t id, const char *json,
                         size_t len)
{
    char head[96];
    int h = id > 0 ? snprintf(head, sizeof(head),
                              "id: %llu\nevent: %s\ndata: ", (unsigned long long)id, name)
                   : snprintf(head, sizeof(head), "event: %s\ndata: ", name);
    while (len > 0 && json[len - 1] == '\n')
        len--;
    stream_put(s, head, (size_t)h);
    stream_put(s, json, len);
    stream_put(s, "\n\n", 2);
}

/* Sends an event to every stream. */
static void broadcast(struct web_server *ws, const char *name, uint64_t id, const char *json,
                      size_t len)
{
    if (json == NULL)
        return;
    for (struct stream *s = ws->streams; s != NULL; s = s->next)
        stream_event(s, name, id, json, len);
}

/* The event a change is: "deal" when the record became a deal, else "change". */
static void change_event(struct stream *s, const struct st_change *ch)
{
    char *json;
    size_t len;
    web_api_change_json(ch, &json, &len);
    bool new_deal = ch->state == ST_STATE_DEAL && ch->prev_state != ST_STATE_DEAL;
    stream_event(s, new_deal ? "deal" : "change", ch->seq, json, len);
    free(json);
}

/* Sends S a "resync" at the streams' position: reload the view, then follow from there. */
static void stream_resync(struct stream *s)
{
    char json[64];
    int len =
        snprintf(json, sizeof(json), "{\"seq\":%llu}", (unsigned long long)s->ws->changes_pos);
    stream_event(s, "resync", s->ws->changes_pos, json, (size_t)len);
}

/*
 * A browser that reconnects sends the id of the last event it read (Last-Event-ID): S is sent
 * the changes after it up to the streams' position, so a dropped connection misses nothing.
 * An id ahead of the log (another store), too far behind or already pruned from the log gets
 * a "resync" instead.
 */
static void stream_replay(struct stream *s, const char *last_event_id)
{
    struct web_server *ws = s->ws;
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(last_event_id, &end, 10);
    if (errno != 0 || end == last_event_id || *end != '\0' || last_event_id[0] == '-')
        return; /* not one of ours: follow from now, as a new page does */
    uint64_t after = (uint64_t)v;
    if (after == ws->changes_pos)
        return;
    if (after > ws->changes_pos || ws->changes_pos - after > WEB_BACKLOG_RESYNC) {
        stream_resync(s);
        return;
    }
    struct st_change ch[128];
    while (after < ws->changes_pos) {
        size_t n = 0;
        uint64_t last = 0;
        if (web_api_changes(ws->api, after, ch, 128, &n, &last) != 0 || n == 0) {
            stream_resync(s);
            return;
        }
        if (ch[0].seq != after + 1) {
            stream_resync(s); /* pruned from the log: they cannot be sent */
            return;
        }
        for (size_t i = 0; i < n && ch[i].seq <= ws->changes_pos; i++) {
            change_event(s, &ch[i]);
            after = ch[i].seq;
        }
        if (ch[n - 1].seq >= ws->changes_pos)
            break;
    }
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos;
    struct stream *s = cls;
    if (s->off < s->len) {
        size_t n = s->len - s->off < max ? s->len - s->off : max;
        memcpy(buf, s->buf + s->off, n);
        s->off += n;
        if (s->off == s->len)
            s->off = s->len = 0;
        return (ssize_t)n;
    }
    if (s->closing)
        return MHD_CONTENT_READER_END_OF_STREAM;
    s->suspended = true;
    MHD_suspend_connection(s->conn);
    return 0;
}

static void stream_free(void *cls)
{
    struct stream *s = cls;
    struct web_server *ws = s->ws;
    if (s->prev != NULL)
        s->prev->next = s->next;
    else
        ws->streams = s->next;
    if (s->next != NULL)
        s->next->prev = s->prev;
    ws->n_streams--;
    shm_gauge_set(ws->counters, SHM_C_web_event_streams, ws->n_streams);
    free(s->buf);
    free(s);
}

static enum MHD_Result stream_open(struct web_server *ws, struct MHD_Connection *conn,
                                   const struct request *rq)
{
    if (ws->n_streams >= WEB_STREAMS_MAX) {
        struct web_reply r;
        web_api_error(&r, 503, NULL, "%d event streams are open already; try again later",
                      WEB_STREAMS_MAX);
        r.retry_after_s = 10;
        return answer(ws, conn, rq, &r);
    }
    struct stream *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return MHD_NO;
    s->ws = ws;
    s->conn = conn;
    /* Bytes the kernel holds for a client that does not read count against nothing else: keep
     * them few, so such a client fills its queue and is dropped (events are small and rare). */
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (ci != NULL) {
        int sndbuf = WEB_STREAM_SNDBUF;
        if (setsockopt(ci->connect_fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf)) != 0)
            kd_warn("web: an event stream's send buffer: %s", strerror(errno));
    }
    if (ws->streams == NULL) {
        /* The first stream: events start from the log's end now. */
        struct st_change none;
        size_t n;
        uint64_t last = 0;
        if (web_api_changes(ws->api, UINT64_MAX, &none, 0, &n, &last) == 0)
            ws->changes_pos = last;
    }
    char hello[96];
    int h = snprintf(hello, sizeof(hello), "retry: 3000\nevent: hello\ndata: {\"seq\":%llu}\n\n",
                     (unsigned long long)ws->changes_pos);
    struct MHD_Response *resp =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_read, s, stream_free);
    if (resp == NULL) {
        free(s);
        return MHD_NO;
    }
    s->next = ws->streams;
    if (ws->streams != NULL)
        ws->streams->prev = s;
    ws->streams = s;
    ws->n_streams++;
    shm_gauge_set(ws->counters, SHM_C_web_event_streams, ws->n_streams);
    stream_put(s, hello, (size_t)h);
    const char *last_id = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Last-Event-ID");
    if (last_id != NULL)
        stream_replay(s, last_id);
    MHD_add_response_header(resp, "X-Accel-Buffering", "no");
    return queue(ws, conn, rq, 200, resp, "text/event-stream; charset=utf-8", false);
}

/* Sends the changes logged since the streams' position. */
static void on_changes_timer(uv_timer_t *t)
{
    struct web_server *ws = t->data;
    if (ws->streams == NULL)
        return;
    struct st_change ch[128];
    for (int round = 0; round < 8; round++) {
        size_t n = 0;
        uint64_t last = 0;
        if (web_api_changes(ws->api, ws->changes_pos, ch, 128, &n, &last) != 0)
            return;
        if (last > ws->changes_pos + WEB_BACKLOG_RESYNC || last < ws->changes_pos) {
            /* Too many to send one by one (a re-judge), or a new store: reload everything. */
            char json[64];
            int len = snprintf(json, sizeof(json), "{\"seq\":%llu}", (unsigned long long)last);
            ws->changes_pos = last;
            broadcast(ws, "resync", last, json, (size_t)len);
            break;
        }
        for (size_t i = 0; i < n; i++) {
            for (struct stream *s = ws->streams; s != NULL; s = s->next)
                change_event(s, &ch[i]);
            ws->changes_pos = ch[i].seq;
        }
        if (n < 128)
            break;
    }
    run_mhd(ws);
}

static void on_keepalive_timer(uv_timer_t *t)
{
    struct web_server *ws = t->data;
    for (struct stream *s = ws->streams; s != NULL; s = s->next)
        stream_put(s, ": keepalive\n\n", 13);
    run_mhd(ws);
}

static void on_sample_timer(uv_timer_t *t)
{
    struct web_server *ws = t->data;
    char *json;
    size_t len;
    web_api_sample(ws->api, kd_wall_ms(), &json, &len);
    broadcast(ws, "sample", 0, json, len);
    free(json);
    run_mhd(ws);
}

/* ---- requests -------------------------------------------------------------------------- */

static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
    (void)cls;
    (void)conn;
    struct request *rq = calloc(1, sizeof(*rq));
    if (rq != NULL) {
        rq->uri_len = strlen(uri);
        rq->start_ns = kd_mono_ns();
    }
    return rq;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)conn;
    (void)toe;
    free(*con_cls);
    *con_cls = NULL;
}

struct params {
    struct web_param p[WEB_PARAMS_MAX];
    size_t n;
    bool too_many;
};

static enum MHD_Result collect_param(void *cls, enum MHD_ValueKind kind, const char *key,
                                     const char *value)
{
    (void)kind;
    struct params *ps = cls;
    if (ps->n == WEB_PARAMS_MAX) {
        ps->too_many = true;
        return MHD_NO;
    }
    ps->p[ps->n].name = key;
    ps->p[ps->n].value = value != NULL ? value : "";
    ps->n++;
    return MHD_YES;
}

static enum MHD_Result serve_asset(struct web_server *ws, struct MHD_Connection *conn,
                                   const struct request *rq, const char *path, const char *method)
{
    const struct web_asset *a = web_asset_find(path);
    if (a == NULL)
        return fail(ws, conn, rq, 404, NULL, "no such page");
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
        return fail(ws, conn, rq, 405, "GET, HEAD", "the page is read with GET");
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(a->len, (void *)(uintptr_t)a->data, MHD_RESPMEM_PERSISTENT);
    return queue(ws, conn, rq, 200, resp, a->type, true);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    (void)version;
    struct web_server *ws = cls;
    struct request *rq = *con_cls;
    if (rq == NULL)
        return MHD_NO; /* out of memory in on_uri */
    if (!rq->headers_seen) {
        rq->headers_seen = true; /* the body, if any, comes in the next calls */
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        if (!rq->too_big && rq->body_len + *upload_data_size <= WEB_BODY_MAX) {
            memcpy(rq->body + rq->body_len, upload_data, *upload_data_size);
            rq->body_len += *upload_data_size;
        } else {
            rq->too_big = true;
        }
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (ws->closing)
        return fail(ws, conn, rq, 503, NULL, "the web role is stopping");
    if (rq->uri_len > WEB_URI_MAX) {
        char msg[96];
        snprintf(msg, sizeof(msg), "the request target is %zu bytes long; at most %d", rq->uri_len,
                 WEB_URI_MAX);
        return fail(ws, conn, rq, 414, NULL, msg);
    }
    if (!host_ok(ws, conn))
        return fail(ws, conn, rq, 403, NULL,
                    "the Host header does not name this loopback address (DNS rebinding guard): "
                    "use http://127.0.0.1:PORT/ or http://localhost:PORT/");
    /* A trailing slash never changes the answer. */
    char path[512];
    size_t n = strlen(url);
    if (n >= sizeof(path))
        return fail(ws, conn, rq, 404, NULL, "no such path");
    memcpy(path, url, n + 1);
    while (n > 1 && path[n - 1] == '/')
        path[--n] = '\0';
    if (!web_api_path(path))
        return serve_asset(ws, conn, rq, path, method);
    if (!token_ok(ws, conn))
        return fail(ws, conn, rq, 401, NULL,
                    "this API needs the bearer token of [web] token_file: send "
                    "Authorization: Bearer TOKEN");
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0 && !same_origin(conn))
        return fail(ws, conn, rq, 403, NULL, "a write must come from this dashboard's own origin");
    if (rq->too_big) {
        char msg[96];
        snprintf(msg, sizeof(msg), "the request body is larger than %d bytes", WEB_BODY_MAX);
        return fail(ws, conn, rq, 413, NULL, msg);
    }
    if (strcmp(path, "/api/v1/events") == 0) {
        if (strcmp(method, "GET") != 0)
            return fail(ws, conn, rq, 405, "GET", "the event stream is read with GET");
        return stream_open(ws, conn, rq);
    }
    struct params ps = {.n = 0};
    MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, collect_param, &ps);
    if (ps.too_many) {
        char msg[96];
        snprintf(msg, sizeof(msg), "more than %d query parameters", WEB_PARAMS_MAX);
        return fail(ws, conn, rq, 400, NULL, msg);
    }
    struct web_request wr = {
        .method = method,
        .path = path,
        .params = ps.p,
        .n_params = ps.n,
        .content_type = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Type"),
        .write_header =
            MHD_lookup_connection_value(conn, MHD_HEADER_KIND, WEB_WRITE_HEADER) != NULL,
        .body = rq->body,
        .body_len = rq->body_len,
        .now_ms = kd_wall_ms(),
    };
    struct web_reply reply;
    web_api_handle(ws->api, &wr, &reply);
    if (reply.status == 200 && strcmp(method, "POST") == 0)
        shm_counter_add(ws->counters, SHM_C_web_marks, 1);
    return answer(ws, conn, rq, &reply);
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char msg[512];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    size_t n = strlen(msg);
    while (n > 0 && msg[n - 1] == '\n')
        msg[--n] = '\0';
    kd_debug("web: libmicrohttpd: %s", msg);
}

/* ---- life ------------------------------------------------------------------------------ */

static int listen_socket(const struct kd_web_listen *l, char *err, size_t errlen)
{
    const char *v6 = l->addr.ss_family == AF_INET6 ? "[" : "";
    const char *v6e = l->addr.ss_family == AF_INET6 ? "]" : "";
    int fd = socket(l->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        int e = errno;
        kd_seterr(err, errlen, "web: cannot open a socket: %s", strerror(e));
        return -e;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, (const struct sockaddr *)&l->addr, l->addr_len) != 0 || listen(fd, 64) != 0) {
        int e = errno;
        kd_seterr(err, errlen, "web: cannot listen on %s%s%s:%u ([web] listen): %s", v6, l->host,
                  v6e, l->port, strerror(e));
        close(fd);
        return -e;
    }
    return fd;
}

int web_server_start(struct web_server **out, uv_loop_t *loop, const struct web_server_options *o,
                     char *err, size_t errlen)
{
    const char *text = o->listen != NULL ? o->listen : o->cfg->web_listen;
    char why[200];
    struct web_server *ws = calloc(1, sizeof(*ws));
    if (ws == NULL) {
        kd_seterr(err, errlen, "web: out of memory");
        return -ENOMEM;
    }
    if (kd_web_listen_parse(text, &ws->listen, why, sizeof(why)) != 0) {
        kd_seterr(err, errlen, "web: listen '%s': %s", text, why);
        free(ws);
        return -EINVAL;
    }
    if (o->token != NULL) {
        snprintf(ws->token, sizeof(ws->token), "%s", o->token);
        ws->token_len = strlen(ws->token);
    }
    if (!ws->listen.loopback && ws->token_len == 0) {
        kd_seterr(err, errlen,
                  "web: refusing to listen on %s beyond loopback without a bearer token: set "
                  "[web] token_file (a file of mode 0600 holding the token)",
                  text);
        free(ws);
        return -EPERM;
    }
    if (ws->token_len > 0)
        kd_log_add_secret(ws->token);
    ws->loop = loop;
    ws->counters = o->counters != NULL ? o->counters : &ws->own_counters;
    ws->publish = o->publish;
    struct web_api_options ao = {.cfg = o->cfg, .instance = o->instance, .run_dir = o->run_dir};
    int rc = web_api_open(&ws->api, &ao);
    if (rc != 0) {
        kd_seterr(err, errlen, "web: out of memory");
        free(ws);
        return rc;
    }
    int fd = listen_socket(&ws->listen, err, errlen);
    if (fd < 0) {
        web_api_close(ws->api);
        free(ws);
        return fd;
    }
    struct sockaddr_storage sa;
    socklen_t sl = sizeof(sa);
    getsockname(fd, (struct sockaddr *)&sa, &sl);
    ws->port = ntohs(sa.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&sa)->sin6_port
                                              : ((struct sockaddr_in *)&sa)->sin_port);
    unsigned max = (unsigned)o->cfg->web_max_connections;
    unsigned flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    if (ws->listen.addr.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    ws->mhd =
        MHD_start_daemon(flags, 0, NULL, NULL, on_request, ws, MHD_OPTION_LISTEN_SOCKET, fd,
                         MHD_OPTION_CONNECTION_LIMIT, max, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
                         max / 2, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)WEB_IDLE_TIMEOUT_S,
                         MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)WEB_POOL_BYTES,
                         MHD_OPTION_URI_LOG_CALLBACK, on_uri, ws, MHD_OPTION_NOTIFY_COMPLETED,
                         on_completed, ws, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, ws, MHD_OPTION_END);
    const union MHD_DaemonInfo *di =
        ws->mhd != NULL ? MHD_get_daemon_info(ws->mhd, MHD_DAEMON_INFO_EPOLL_FD) : NULL;
    if (di == NULL) {
        kd_seterr(err, errlen, "web: cannot start the HTTP server on %s", text);
        if (ws->mhd != NULL)
            MHD_stop_daemon(ws->mhd);
        else
            close(fd);
        web_api_close(ws->api);
        free(ws);
        return -EIO;
    }
    uv_poll_init(loop, &ws->poll, di->epoll_fd);
    ws->poll.data = ws;
    uv_poll_start(&ws->poll, UV_READABLE, on_poll);
    uv_timer_t *timers[] = {&ws->mhd_timer, &ws->changes_timer, &ws->keepalive_timer,
                            &ws->sample_timer};
    for (size_t i = 0; i < sizeof(timers) / sizeof(timers[0]); i++) {
        uv_timer_init(loop, timers[i]);
        timers[i]->data = ws;
    }
    ws->handles_open = 5;
    uv_timer_start(&ws->changes_timer, on_changes_timer, WEB_POLL_CHANGES_MS, WEB_POLL_CHANGES_MS);
    uv_timer_start(&ws->keepalive_timer, on_keepalive_timer, WEB_KEEPALIVE_MS, WEB_KEEPALIVE_MS);
    uv_timer_start(&ws->sample_timer, on_sample_timer, 1000, WEB_SAMPLE_EVERY_MS);
    run_mhd(ws);
    if (ws->publish != NULL) {
        snprintf(ws->publish->host, sizeof(ws->publish->host), "%s", ws->listen.host);
        atomic_store_explicit(&ws->publish->port, ws->port, memory_order_release);
    }
    bool v6 = ws->listen.addr.ss_family == AF_INET6;
    kd_info("web: the dashboard is at http://%s%s%s:%u/%s", v6 ? "[" : "", ws->listen.host,
            v6 ? "]" : "", ws->port, ws->token_len > 0 ? " (the API needs the bearer token)" : "");
    *out = ws;
    return 0;
}

unsigned web_server_port(const struct web_server *ws)
{
    return ws->port;
}

void web_server_reload(struct web_server *ws, const struct cfg *cfg)
{
    web_api_reload(ws->api, cfg);
}

static void on_closed(uv_handle_t *h)
{
    struct web_server *ws = h->data;
    if (--ws->handles_open > 0)
        return;
    void (*done)(void *) = ws->done;
    void *ud = ws->done_ud;
    web_api_close(ws->api);
    explicit_bzero(ws->token, sizeof(ws->token));
    free(ws);
    if (done != NULL)
        done(ud);
}

void web_server_close(struct web_server *ws, void (*done)(void *), void *ud)
{
    ws->closing = true;
    ws->done = done;
    ws->done_ud = ud;
    if (ws->publish != NULL)
        atomic_store_explicit(&ws->publish->port, 0, memory_order_release);
    for (struct stream *s = ws->streams; s != NULL; s = s->next) {
        s->closing = true;
        stream_resume(s);
    }
    /* The poll leaves the loop before the library closes the descriptor it watches. */
    uv_close((uv_handle_t *)&ws->poll, on_closed);
    /* Stopping the library closes every connection; each stream's free callback runs. */
    MHD_stop_daemon(ws->mhd);
    ws->mhd = NULL;
    uv_close((uv_handle_t *)&ws->mhd_timer, on_closed);
    uv_close((uv_handle_t *)&ws->changes_timer, on_closed);
    uv_close((uv_handle_t *)&ws->keepalive_timer, on_closed);
    uv_close((uv_handle_t *)&ws->sample_timer, on_closed);
}

void web_server_abandon(struct web_server *ws)
{
    if (ws->publish != NULL)
        atomic_store_explicit(&ws->publish->port, 0, memory_order_release);
    /* Streams must not be resumed by anything now: the library frees them as it stops. */
    MHD_stop_daemon(ws->mhd);
    web_api_close(ws->api);
    explicit_bzero(ws->token, sizeof(ws->token));
    free(ws);
}
