/*
 * request.c: request builders and key loading. See request.h.
 *
 * Query strings are built with a bounded appender that fails the whole build on overflow,
 * so a request is either exactly what was asked for or not built at all. Only characters
 * that need no URL encoding are accepted in ASINs and ids; selections travel as POST bodies,
 * so they need no encoding either.
 */
#include "keepa/request.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct appender {
    char *buf;
    size_t cap, len;
    bool overflow;
};

static void app(struct appender *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void app(struct appender *a, const char *fmt, ...)
{
    if (a->overflow)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(a->buf + a->len, a->cap - a->len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= a->cap - a->len) {
        a->overflow = true;
        a->buf[a->len] = '\0';
        return;
    }
    a->len += (size_t)n;
}

static bool id_ok(const char *s, size_t maxlen)
{
    size_t n = 0;
    if (s == NULL)
        return false;
    for (; s[n] != '\0'; n++) {
        if (!isalnum((unsigned char)s[n]) || n >= maxlen)
            return false;
    }
    return n > 0;
}

static bool domain_ok(int domain)
{
    return domain >= 1 && domain <= 12;
}

static void call_init(struct kp_call *c, enum kp_endpoint ep, const char *path)
{
    memset(c, 0, offsetof(struct kp_call, asins));
    c->ep = ep;
    c->path = path;
}

const char *kp_endpoint_name(enum kp_endpoint ep)
{
    switch (ep) {
    case KP_EP_TOKEN:
        return "token";
    case KP_EP_PRODUCT:
        return "product";
    case KP_EP_DEAL:
        return "deal";
    case KP_EP_SELLER:
        return "seller";
    case KP_EP_QUERY:
        return "query";
    case KP_EP_LIGHTNING:
        return "lightningdeal";
    case KP_EP_BESTSELLERS:
        return "bestsellers";
    }
    return "?";
}

int kp_call_token(struct kp_call *c)
{
    call_init(c, KP_EP_TOKEN, "/token");
    return 0;
}

static void app_flag(struct appender *a, const char *name, enum kp_flag f)
{
    if (f == KP_YES)
        app(a, "&%s=1", name);
    else if (f == KP_NO)
        app(a, "&%s=0", name);
}

static bool flag_ok(enum kp_flag f)
{
    return f == KP_DEFAULT || f == KP_NO || f == KP_YES;
}

/* A product code: 8..14 digits (EAN-8, UPC-A, EAN-13 / ISBN-13, GTIN-14). */
static bool code_ok(const char *s)
{
    if (s == NULL)
        return false;
    size_t n = strlen(s);
    if (n < 8 || n > KP_CODE_MAX - 2)
        return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return true;
}

int kp_call_product(struct kp_call *c, const struct kp_product_params *p)
{
    call_init(c, KP_EP_PRODUCT, "/product");
    if (p == NULL || !domain_ok(p->domain))
        return -EINVAL;
    bool by_code = p->n_codes > 0;
    if (by_code ? (p->codes == NULL || p->n_codes > KP_MAX_BATCH || p->n_asins > 0)
                : (p->asins == NULL || p->n_asins == 0 || p->n_asins > KP_MAX_BATCH))
        return -EINVAL;
    if (p->code_limit < 0 || (p->code_limit > 0 && !by_code))
        return -EINVAL;
    if (p->offers != 0 && (p->offers < 20 || p->offers > 100))
        return -EINVAL;
    if (p->stats_days < 0 || p->days < 0 || (p->has_update && p->update_hours < -1))
        return -EINVAL;
    bool range = p->stats_start_ms > 0 || p->stats_end_ms > 0;
    if (range && (p->stats_start_ms <= 0 || p->stats_end_ms < p->stats_start_ms))
        return -EINVAL;
    if (!flag_ok(p->history) || !flag_ok(p->only_live_offers) || !flag_ok(p->rating) ||
        !flag_ok(p->buybox) || !flag_ok(p->stock))
        return -EINVAL;

    struct appender a = {c->query, sizeof(c->query), 0, false};
    app(&a, "domain=%d&%s=", p->domain, by_code ? "code" : "asin");
    for (size_t i = 0; i < p->n_codes; i++) {
        if (!code_ok(p->codes[i]))
            return -EINVAL;
        app(&a, "%s%s", i ? "," : "", p->codes[i]);
    }
    for (size_t i = 0; i < p->n_asins; i++) {
        if (!id_ok(p->asins[i], KP_ASIN_MAX - 1))
            return -EINVAL;
        app(&a, "%s%s", i ? "," : "", p->asins[i]);
        snprintf(c->asins[i], KP_ASIN_MAX, "%s", p->asins[i]);
    }
    c->n_asins = p->n_asins;
    if (p->code_limit > 0)
        app(&a, "&code-limit=%d", p->code_limit);
    if (range)
        app(&a, "&stats=%" PRId64 ",%" PRId64, p->stats_start_ms, p->stats_end_ms);
    else if (p->stats_days > 0)
        app(&a, "&stats=%d", p->stats_days);
    app_flag(&a, "history", p->history);
    if (p->days > 0)
        app(&a, "&days=%d", p->days);
    if (p->offers != 0) {
        app(&a, "&offers=%d", p->offers);
        c->with_offers = true;
    }
    app_flag(&a, "only-live-offers", p->only_live_offers);
    app_flag(&a, "rating", p->rating);
    app_flag(&a, "buybox", p->buybox);
    app_flag(&a, "stock", p->stock);
    if (p->has_update)
        app(&a, "&update=%d", p->update_hours);
    return a.overflow ? -EINVAL : 0;
}

static int set_body(struct kp_call *c, const char *selection)
{
    if (selection == NULL)
        return -EINVAL;
    size_t n = strlen(selection);
    if (n == 0 || n > KP_SELECTION_MAX)
        return -EINVAL;
    c->body = malloc(n + 1);
    if (c->body == NULL)
        return -ENOMEM;
    memcpy(c->body, selection, n + 1);
    c->body_len = n;
    return 0;
}

int kp_call_deal(struct kp_call *c, const char *selection)
{
    call_init(c, KP_EP_DEAL, "/deal");
    return set_body(c, selection);
}

int kp_call_seller(struct kp_call *c, int domain, const char *const *ids, size_t n)
{
    call_init(c, KP_EP_SELLER, "/seller");
    if (!domain_ok(domain) || ids == NULL || n == 0 || n > KP_MAX_BATCH)
        return -EINVAL;
    struct appender a = {c->query, sizeof(c->query), 0, false};
    app(&a, "domain=%d&seller=", domain);
    for (size_t i = 0; i < n; i++) {
        if (!id_ok(ids[i], KP_SELLER_ID_MAX - 1))
            return -EINVAL;
        app(&a, "%s%s", i ? "," : "", ids[i]);
    }
    return a.overflow ? -EINVAL : 0;
}

int kp_call_query(struct kp_call *c, int domain, const char *selection, bool stats)
{
    call_init(c, KP_EP_QUERY, "/query");
    if (!domain_ok(domain))
        return -EINVAL;
    snprintf(c->query, sizeof(c->query), "domain=%d%s", domain, stats ? "&stats=1" : "");
    return set_body(c, selection);
}

int kp_call_lightning(struct kp_call *c, int domain, const char *const *asins, size_t n)
{
    call_init(c, KP_EP_LIGHTNING, "/lightningdeal");
    if (!domain_ok(domain) || n > KP_MAX_BATCH || (n > 0 && asins == NULL))
        return -EINVAL;
    struct appender a = {c->query, sizeof(c->query), 0, false};
    app(&a, "domain=%d", domain);
    for (size_t i = 0; i < n; i++) {
        if (!id_ok(asins[i], KP_ASIN_MAX - 1))
            return -EINVAL;
        app(&a, "%s%s", i ? "," : "&asin=", asins[i]);
    }
    if (n == 0)
        c->max_tries = 1;
    return a.overflow ? -EINVAL : 0;
}

int kp_call_bestsellers(struct kp_call *c, int domain, int64_t category, int range)
{
    call_init(c, KP_EP_BESTSELLERS, "/bestsellers");
    if (!domain_ok(domain) || category <= 0 || !KP_BESTSELLERS_RANGE_OK(range))
        return -EINVAL;
    snprintf(c->query, sizeof(c->query), "domain=%d&category=%" PRId64 "&range=%d", domain,
             category, range);
    c->max_tries = 1;
    return 0;
}

void kp_call_free(struct kp_call *c)
{
    if (c == NULL)
        return;
    free(c->body);
    c->body = NULL;
    c->body_len = 0;
}

int kp_call_url(const struct kp_call *c, const char *base, const char *key, char *out, size_t outsz)
{
    if (outsz == 0)
        return -ENAMETOOLONG;
    size_t bl = strlen(base);
    while (bl > 0 && base[bl - 1] == '/')
        bl--;
    int n = snprintf(out, outsz, "%.*s%s?key=%s%s%s", (int)bl, base, c->path,
                     key != NULL ? key : "<redacted>", c->query[0] ? "&" : "", c->query);
    if (n < 0 || (size_t)n >= outsz) {
        out[0] = '\0';
        return -ENAMETOOLONG;
    }
    return 0;
}
