/*
 * util.c: see util.h.
 */
#include "bench/util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"

void bu_sleep_ms(int64_t ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

int64_t bu_mono_ms(void)
{
    return kd_mono_ns() / KD_NS_PER_MS;
}

long bu_env_long(const char *prog, const char *name, long def, long min, long max)
{
    const char *v = getenv(name);
    if (v == NULL || *v == '\0')
        return def;
    char *end = NULL;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno != 0 || end == v || *end != '\0' || x < min || x > max) {
        fprintf(stderr, "%s: %s=%s ignored (want %ld..%ld)\n", prog, name, v, min, max);
        return def;
    }
    return x;
}

int bu_write_file(const char *path, mode_t mode, const char *fmt, ...)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0)
        return -errno;
    FILE *f = fdopen(fd, "w");
    if (f == NULL) {
        close(fd);
        return -ENOMEM;
    }
    va_list ap;
    va_start(ap, fmt);
    vfprintf(f, fmt, ap);
    va_end(ap);
    return fclose(f) == 0 ? 0 : -EIO;
}

struct body {
    char *p;
    size_t n, cap;
};

static size_t body_write(char *data, size_t size, size_t nmemb, void *ud)
{
    struct body *b = ud;
    size_t len = size * nmemb;
    if (b->n + len + 1 > b->cap) {
        size_t cap = (b->n + len + 1) * 2;
        char *p = realloc(b->p, cap);
        if (p == NULL)
            return 0;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, data, len);
    b->n += len;
    b->p[b->n] = '\0';
    return len;
}

json_t *bu_sim_get(CURL *c, int port, const char *path)
{
    char url[4096];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", port, path);
    struct body b = {0};
    curl_easy_reset(c);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, body_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 10000L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    CURLcode rc = curl_easy_perform(c);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    json_t *j = NULL;
    if (rc == CURLE_OK && status == 200 && b.p != NULL)
        j = json_loads(b.p, 0, NULL);
    free(b.p);
    return j;
}

int64_t bu_jint(const json_t *o, const char *k)
{
    return (int64_t)json_integer_value(json_object_get(o, k));
}

struct bu_ledger bu_ledger_read(CURL *c, int port)
{
    struct bu_ledger l;
    memset(&l, 0, sizeof(l));
    json_t *j = bu_sim_get(c, port, "/_sim/stats");
    if (j == NULL)
        return l;
    l.ok = true;
    l.earned = bu_jint(j, "tokens_earned");
    l.consumed = bu_jint(j, "tokens_consumed");
    l.expired = bu_jint(j, "tokens_expired");
    l.left = bu_jint(j, "tokens_left");
    l.http_429 = bu_jint(j, "http_429");
    l.requests = bu_jint(j, "requests");
    l.asins_requested = bu_jint(j, "asins_requested");
    l.asins_distinct = bu_jint(j, "asins_distinct");
    json_t *ep = json_object_get(j, "endpoints");
    l.product_requests = bu_jint(json_object_get(ep, "product"), "requests");
    l.product_tokens = bu_jint(json_object_get(ep, "product"), "tokens");
    l.deal_requests = bu_jint(json_object_get(ep, "deal"), "requests");
    l.deal_tokens = bu_jint(json_object_get(ep, "deal"), "tokens");
    l.token_requests = bu_jint(json_object_get(ep, "token"), "requests");
    json_decref(j);
    return l;
}
