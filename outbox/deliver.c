/*
 * deliver.c: alert bodies, webhooks and commands. See deliver.h.
 *
 * Everything here blocks the calling thread (an alert lane of the outbox) for at most the
 * alert's timeout: curl's easy interface with a total timeout and a progress callback that
 * checks for a stop, and a command waited for with waitpid and short sleeps.
 */
#include "outbox/deliver.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <yajl/yajl_gen.h>

#include "base/clock.h"
#include "judge/market.h"
#include "outbox/alertdb.h"
#include "view/export.h"
#include "view/text.h"
#include "view/time.h"

/* ---- bodies ----------------------------------------------------------------------------- */

static void str(yajl_gen g, const char *s)
{
    yajl_gen_string(g, (const unsigned char *)s, strlen(s));
}

static void kv(yajl_gen g, const char *k, const char *v)
{
    str(g, k);
    str(g, v);
}

/* "12.5%" from basis points. */
static void pct(int64_t bp, char *buf, size_t len)
{
    int64_t a = bp < 0 ? -bp : bp;
    snprintf(buf, len, "%s%" PRId64 ".%" PRId64 "%%", bp < 0 ? "-" : "", a / 100, a % 100 / 10);
}

/* The one-line summary a chat shows: title, buy, sell, profit, ROI. */
static void summary(const struct st_record *r, char *title, size_t tlen, char *figures, size_t flen,
                    char *url, size_t ulen)
{
    vw_utf8_clean(r->title[0] ? r->title : r->asin, true, title, tlen);
    jd_link_amazon(r->domain, r->asin, url, ulen);
    char buy[32] = "?", sell[32] = "?", profit[32] = "?", roi[32] = "?";
    if (r->v.buy_cents > 0)
        jd_money(r->domain, r->v.buy_cents, buy, sizeof(buy));
    if (r->v.sell_cents > 0)
        jd_money(r->domain, r->v.sell_cents, sell, sizeof(sell));
    if (r->v.priced) {
        jd_money(r->domain, r->v.profit_cents, profit, sizeof(profit));
        pct(r->v.roi_bp, roi, sizeof(roi));
    }
    const char *cond = r->in.buy_condition > 0 ? jd_condition_name(r->in.buy_condition) : "";
    snprintf(figures, flen, "buy %s%s%s%s, sell %s, profit %s (ROI %s)", buy, cond[0] ? " (" : "",
             cond, cond[0] ? ")" : "", sell, profit, roi);
}

int ob_body(const struct ob_alert *a, const struct st_record *r, const struct ob_body_info *info,
            const struct jd_rules *rules, char **body, size_t *len)
{
    yajl_gen g = yajl_gen_alloc(NULL);
    if (g == NULL)
        return -ENOMEM;
    char title[3 * ST_TITLE_MAX + 1], figures[256], url[128], text[1200];
    summary(r, title, sizeof(title), figures, sizeof(figures), url, sizeof(url));
    yajl_gen_map_open(g);
    switch (a->format) {
    case OB_FMT_SLACK:
        snprintf(text, sizeof(text), "New deal (%s): <%s|%s> (%s): %s", info->alert, url, title,
                 r->asin, figures);
        kv(g, "text", text);
        break;
    case OB_FMT_DISCORD:
        snprintf(text, sizeof(text), "New deal (%s): %s", info->alert, title);
        kv(g, "content", text);
        str(g, "embeds");
        yajl_gen_array_open(g);
        yajl_gen_map_open(g);
        kv(g, "title", r->asin);
        kv(g, "url", url);
        kv(g, "description", figures);
        yajl_gen_map_close(g);
        yajl_gen_array_close(g);
        break;
    case OB_FMT_TEAMS:
        kv(g, "@type", "MessageCard");
        kv(g, "@context", "https://schema.org/extensions");
        snprintf(text, sizeof(text), "New deal (%s): %s", info->alert, title);
        kv(g, "summary", text);
        kv(g, "title", text);
        snprintf(text, sizeof(text), "%s: %s", r->asin, figures);
        kv(g, "text", text);
        str(g, "potentialAction");
        yajl_gen_array_open(g);
        yajl_gen_map_open(g);
        kv(g, "@type", "OpenUri");
        kv(g, "name", "Amazon");
        str(g, "targets");
        yajl_gen_array_open(g);
        yajl_gen_map_open(g);
        kv(g, "os", "default");
        kv(g, "uri", url);
        yajl_gen_map_close(g);
        yajl_gen_array_close(g);
        yajl_gen_map_close(g);
        yajl_gen_array_close(g);
        break;
    default: {
        char iso[40];
        vw_time_iso(info->entered_ms, iso, sizeof(iso));
        str(g, "kdeals");
        yajl_gen_integer(g, 1);
        kv(g, "type", "deal.entered_view");
        kv(g, "delivery_id", info->delivery_id);
        kv(g, "alert", info->alert);
        kv(g, "instance", info->instance);
        str(g, "entry");
        yajl_gen_integer(g, info->entry);
        str(g, "entered_at_ms");
        yajl_gen_integer(g, info->entered_ms);
        kv(g, "entered_at", iso);
        str(g, "deal");
        struct vw_out o = {.rules = rules};
        vw_json_record(g, r, &o);
        break;
    }
    }
    yajl_gen_map_close(g);
    const unsigned char *buf;
    size_t n;
    int rc = yajl_gen_get_buf(g, &buf, &n) == yajl_gen_status_ok ? 0 : -ENOMEM;
    if (rc == 0 && (*body = malloc(n + 1)) == NULL)
        rc = -ENOMEM;
    if (rc == 0) {
        memcpy(*body, buf, n);
        (*body)[n] = '\0';
        *len = n;
    }
    yajl_gen_free(g);
    return rc;
}

/* ---- secrets ---------------------------------------------------------------------------- */

int ob_secret_read(const struct ob_alert *a, char *buf, size_t *len, char *err, size_t errlen)
{
    int fd = open(a->secret_file, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        snprintf(err, errlen, "secret_file %s: %s", a->secret_file, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -EACCES;
    }
    if (!S_ISREG(st.st_mode) || (st.st_mode & 077) != 0) {
        snprintf(err, errlen, "secret_file %s: must be a regular file of mode 0600 (chmod 600 %s)",
                 a->secret_file, a->secret_file);
        close(fd);
        return -EPERM;
    }
    ssize_t n = read(fd, buf, OB_SECRET_MAX - 1);
    close(fd);
    if (n < 0) {
        snprintf(err, errlen, "secret_file %s: %s", a->secret_file, strerror(errno));
        return -EIO;
    }
    buf[n] = '\0';
    char *nl = strpbrk(buf, "\r\n");
    if (nl != NULL)
        *nl = '\0';
    size_t l = strlen(buf);
    while (l > 0 && (buf[l - 1] == ' ' || buf[l - 1] == '\t'))
        buf[--l] = '\0';
    if (l == 0) {
        snprintf(err, errlen, "secret_file %s holds no secret", a->secret_file);
        return -EINVAL;
    }
    *len = l;
    return 0;
}

/* ---- webhooks --------------------------------------------------------------------------- */

struct http_call {
    bool (*cancelled)(void *);
    void *ud;
    int64_t retry_after_ms;
};

static size_t discard(char *p, size_t s, size_t n, void *ud)
{
    (void)p;
    (void)ud;
    return s * n;
}

static size_t on_header(char *p, size_t s, size_t n, void *ud)
{
    struct http_call *c = ud;
    size_t len = s * n;
    if (len > 12 && strncasecmp(p, "Retry-After:", 12) == 0) {
        long v = strtol(p + 12, NULL, 10);
        if (v > 0 && v < 86400)
            c->retry_after_ms = (int64_t)v * 1000;
    }
    return len;
}

static int on_progress(void *ud, curl_off_t a, curl_off_t b, curl_off_t c2, curl_off_t d)
{
    (void)a;
    (void)b;
    (void)c2;
    (void)d;
    struct http_call *c = ud;
    return c->cancelled != NULL && c->cancelled(c->ud) ? 1 : 0;
}

static void post(const struct ob_alert *a, const char *secret, size_t secret_len,
                 const char *delivery_id, uint32_t attempt, const char *body, size_t len,
                 struct http_call *call, struct ob_outcome *out)
{
    CURL *e = curl_easy_init();
    if (e == NULL) {
        out->result = OB_FAILED;
        snprintf(out->error, sizeof(out->error), "out of memory");
        return;
    }
    struct curl_slist *h = NULL;
    char line[OB_SECRET_MAX + 128];
    h = curl_slist_append(h, "Content-Type: application/json");
    h = curl_slist_append(h, "Expect:");
    snprintf(line, sizeof(line), "X-Kdeals-Delivery: %s", delivery_id);
    h = curl_slist_append(h, line);
    snprintf(line, sizeof(line), "Idempotency-Key: %s", delivery_id);
    h = curl_slist_append(h, line);
    snprintf(line, sizeof(line), "X-Kdeals-Alert: %s", a->name);
    h = curl_slist_append(h, line);
    snprintf(line, sizeof(line), "X-Kdeals-Attempt: %" PRIu32, attempt);
    h = curl_slist_append(h, line);
    if (secret != NULL && a->auth == OB_AUTH_BEARER) {
        snprintf(line, sizeof(line), "Authorization: Bearer %.*s", (int)secret_len, secret);
        h = curl_slist_append(h, line);
    } else if (secret != NULL) {
        char t[24];
        snprintf(t, sizeof(t), "%" PRId64, kd_wall_ms() / 1000);
        size_t tl = strlen(t);
        unsigned char *msg = malloc(tl + 1 + len);
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned mdlen = 0;
        if (msg != NULL) {
            memcpy(msg, t, tl);
            msg[tl] = '.';
            memcpy(msg + tl + 1, body, len);
            HMAC(EVP_sha256(), secret, (int)secret_len, msg, tl + 1 + len, md, &mdlen);
            free(msg);
        }
        int w = snprintf(line, sizeof(line), "X-Kdeals-Signature: t=%s,v1=", t);
        for (unsigned i = 0; i < mdlen && w > 0 && (size_t)w + 3 < sizeof(line); i++)
            w += snprintf(line + w, sizeof(line) - (size_t)w, "%02x", md[i]);
        h = curl_slist_append(h, line);
    }
    explicit_bzero(line, sizeof(line));
    curl_easy_setopt(e, CURLOPT_URL, a->url);
    curl_easy_setopt(e, CURLOPT_POST, 1L);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "kdeals-alerts/1");
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)a->timeout_ms);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
                     (long)(a->timeout_ms < 5000 ? a->timeout_ms : 5000));
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, call);
    curl_easy_setopt(e, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(e, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(e, CURLOPT_XFERINFODATA, call);
    CURLcode rc = curl_easy_perform(e);
    long code = 0;
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code);
    out->status = (int)code;
    out->retry_after_ms = call->retry_after_ms;
    if (rc != CURLE_OK) {
        /* Nothing reached the target when it could not be reached at all; after that, the
         * request may have arrived whatever curl says. */
        bool before = rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_HOST ||
                      rc == CURLE_COULDNT_RESOLVE_PROXY || rc == CURLE_SSL_CONNECT_ERROR ||
                      rc == CURLE_UNSUPPORTED_PROTOCOL || rc == CURLE_URL_MALFORMAT;
        out->result = before ? OB_FAILED : OB_UNKNOWN;
        snprintf(out->error, sizeof(out->error), "%s", curl_easy_strerror(rc));
    } else if (code >= 200 && code < 300) {
        out->result = OB_DELIVERED;
    } else if (code == 408 || code == 425 || code == 429 || code >= 500) {
        out->result = OB_FAILED;
        snprintf(out->error, sizeof(out->error), "HTTP %ld", code);
    } else {
        out->result = OB_REFUSED;
        snprintf(out->error, sizeof(out->error), "HTTP %ld: refused", code);
    }
    curl_slist_free_all(h);
    curl_easy_cleanup(e);
}

/* ---- commands --------------------------------------------------------------------------- */

extern char **environ;

static void run_command(const struct ob_alert *a, const char *delivery_id, uint32_t attempt,
                        const char *body, size_t len, bool (*cancelled)(void *), void *ud,
                        struct ob_outcome *out)
{
    int in[2];
    if (pipe2(in, O_CLOEXEC) != 0) {
        out->result = OB_FAILED;
        snprintf(out->error, sizeof(out->error), "pipe: %s", strerror(errno));
        return;
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, in[0], 0);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    posix_spawnattr_t at;
    posix_spawnattr_init(&at);
    posix_spawnattr_setpgroup(&at, 0);
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_setsigmask(&at, &none);
    posix_spawnattr_setsigdefault(&at, &all);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
                                      POSIX_SPAWN_SETSIGDEF);
    const char *path = getenv("PATH");
    char e_path[1024], e_alert[64], e_id[OB_DELIVERY_ID_MAX + 24], e_attempt[48];
    snprintf(e_path, sizeof(e_path), "PATH=%s", path ? path : "/usr/bin:/bin");
    snprintf(e_alert, sizeof(e_alert), "KDEALS_ALERT=%s", a->name);
    snprintf(e_id, sizeof(e_id), "KDEALS_DELIVERY_ID=%s", delivery_id);
    snprintf(e_attempt, sizeof(e_attempt), "KDEALS_ATTEMPT=%" PRIu32, attempt);
    char *const env[] = {e_path, e_alert, e_id, e_attempt, NULL};
    char *const argv[] = {"sh", "-c", (char *)a->command, NULL};
    pid_t pid;
    int rc = posix_spawn(&pid, "/bin/sh", &fa, &at, argv, env);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    close(in[0]);
    if (rc != 0) {
        close(in[1]);
        out->result = OB_FAILED;
        snprintf(out->error, sizeof(out->error), "cannot run /bin/sh: %s", strerror(rc));
        return;
    }
    /* The body, then end of file; a command that does not read it is not waited for. */
    fcntl(in[1], F_SETFL, O_NONBLOCK);
    int64_t deadline = kd_mono_ns() / KD_NS_PER_MS + a->timeout_ms;
    size_t off = 0;
    while (off < len && kd_mono_ns() / KD_NS_PER_MS < deadline) {
        ssize_t w = write(in[1], body + off, len - off);
        if (w > 0) {
            off += (size_t)w;
            continue;
        }
        if (w < 0 && errno != EAGAIN && errno != EINTR)
            break; /* EPIPE: it closed its stdin */
        struct pollfd p = {in[1], POLLOUT, 0};
        poll(&p, 1, 50);
    }
    close(in[1]);
    int status = 0;
    bool done = false, killed = false;
    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid) {
            done = true;
            break;
        }
        if (kd_mono_ns() / KD_NS_PER_MS >= deadline || (cancelled != NULL && cancelled(ud))) {
            kill(-pid, SIGKILL);
            waitpid(pid, &status, 0);
            killed = true;
            break;
        }
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
    }
    if (killed || !done) {
        out->result = OB_UNKNOWN;
        snprintf(out->error, sizeof(out->error),
                 "the command did not finish within %" PRId64 " ms: killed", a->timeout_ms);
    } else if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        out->result = OB_DELIVERED;
    } else {
        out->result = OB_FAILED;
        out->status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        snprintf(out->error, sizeof(out->error), "the command exited with status %d", out->status);
    }
}

void ob_deliver(const struct ob_alert *a, const char *secret, size_t secret_len,
                const char *delivery_id, uint32_t attempt, const char *body, size_t len,
                bool (*cancelled)(void *ud), void *ud, struct ob_outcome *out)
{
    memset(out, 0, sizeof(*out));
    if (a->url[0] != '\0') {
        struct http_call call = {cancelled, ud, 0};
        post(a, secret, secret_len, delivery_id, attempt, body, len, &call, out);
    } else {
        run_command(a, delivery_id, attempt, body, len, cancelled, ud, out);
    }
}
