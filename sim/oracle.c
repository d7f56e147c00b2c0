/*
 * oracle.c: the /_sim/ truth endpoints (see oracle.h and sim/README.md, "The truth").
 */
#include "sim/oracle.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "judge/judge.h"
#include "sim/truth.h"

#define DEFAULT_STEP 60 /* minutes between judgements while the sell price is an average */

static unsigned fail(struct sim_buf *out, const char *msg)
{
    sim_buf_free(out);
    sim_buf_puts(out, "{\"error\":");
    sim_buf_str(out, msg);
    sim_buf_putc(out, '}');
    return 400;
}

/* The common parameters: rules, offers, and the rules' hash. 0 or a 400 already written. */
static unsigned common(const struct sim_oracle_req *q, struct jd_rules *r, int *offers,
                       struct sim_buf *out)
{
    char err[200];
    jd_rules_default(r);
    if (sim_truth_rules(q->get, q->get_ctx, r, err, sizeof(err)) != 0)
        return fail(out, err);
    *offers = SIM_TRUTH_OFFERS;
    const char *s = q->get(q->get_ctx, "offers");
    int64_t v;
    if (s != NULL && *s) {
        if (sim_parse_i64(s, &v) != 0 || v < 20 || v > 100)
            return fail(out, "offers must be 20..100");
        *offers = (int)v;
    }
    return 0;
}

static void head(const struct sim_oracle_req *q, const struct jd_rules *r, int offers,
                 struct sim_buf *out)
{
    sim_buf_printf(out, "{\"keepa_minute\":%lld,\"rules_hash\":\"%016llx\",\"offers\":%d,",
                   (long long)q->now_min, (unsigned long long)jd_rules_hash(r), offers);
}

/* Splits the comma list S into at most MAX items of up to ITEM-1 bytes; -1 when too many. */
static int split(const char *s, char (*items)[24], int max)
{
    int n = 0;
    while (s != NULL && *s) {
        const char *e = strchr(s, ',');
        size_t len = e ? (size_t)(e - s) : strlen(s);
        if (len > 0) {
            if (n >= max)
                return -1;
            if (len > 23)
                len = 23;
            memcpy(items[n], s, len);
            items[n][len] = '\0';
            n++;
        }
        if (e == NULL)
            break;
        s = e + 1;
    }
    return n;
}

/* A minute parameter NAME (or NAME_ms as wall-clock epoch ms); DFLT when absent. */
static int minute_param(const struct sim_oracle_req *q, const char *name, int64_t dflt,
                        int64_t *out)
{
    char ms_name[32];
    snprintf(ms_name, sizeof(ms_name), "%s_ms", name);
    const char *s = q->get(q->get_ctx, name), *ms = q->get(q->get_ctx, ms_name);
    int64_t v;
    *out = dflt;
    if (s != NULL && *s) {
        if (sim_parse_i64(s, &v) != 0)
            return -EINVAL;
        *out = v;
    } else if (ms != NULL && *ms) {
        if (sim_parse_i64(ms, &v) != 0)
            return -EINVAL;
        *out = q->min_of_wall_ms(q->clock, v);
    }
    return 0;
}

/* from, to (default now) and step of a window; 0 or a 400 already written. */
static unsigned window(const struct sim_oracle_req *q, int64_t *from, int64_t *to, int64_t *step,
                       struct sim_buf *out)
{
    if (minute_param(q, "from", INT64_MIN, from) != 0 || *from == INT64_MIN)
        return fail(out, "from (a Keepa minute) or from_ms (epoch ms) is required");
    if (minute_param(q, "to", q->now_min + 1, to) != 0)
        return fail(out, "to must be a Keepa minute (or to_ms epoch ms)");
    if (*to > q->now_min + 1)
        *to = q->now_min + 1;
    if (*to <= *from)
        return fail(out, "the window [from, to) is empty or in the future");
    if (*to - *from > SIM_ORACLE_MAX_WINDOW)
        return fail(out, "the window is longer than 31 days");
    const char *s = q->get(q->get_ctx, "step");
    *step = DEFAULT_STEP;
    if (s != NULL && *s && (sim_parse_i64(s, step) != 0 || *step < 1 || *step > 1440))
        return fail(out, "step must be 1..1440 minutes");
    return 0;
}

unsigned sim_oracle_truth(const struct sim_oracle_req *q, struct sim_buf *out)
{
    struct jd_rules r;
    int offers;
    if (common(q, &r, &offers, out) != 0)
        return 400;
    char(*ids)[24] = malloc(SIM_ORACLE_MAX_ASINS * sizeof(*ids));
    char(*ats)[24] = malloc(SIM_ORACLE_MAX_ASINS * sizeof(*ats));
    struct sim_product *p = malloc(sizeof(*p));
    struct sim_truth *t = malloc(sizeof(*t));
    unsigned status = 200;
    if (ids == NULL || ats == NULL || p == NULL || t == NULL) {
        status = fail(out, "out of memory");
        goto done;
    }
    int n = split(q->get(q->get_ctx, "asin"), ids, SIM_ORACLE_MAX_ASINS);
    if (n <= 0) {
        status = fail(out, n < 0 ? "at most 1000 ASINs" : "asin=A,B,... is required");
        goto done;
    }
    const char *at_s = q->get(q->get_ctx, "at"), *at_ms = q->get(q->get_ctx, "at_ms");
    int by_ms = (at_s == NULL || *at_s == '\0') && at_ms != NULL && *at_ms;
    int n_at = split(by_ms ? at_ms : at_s, ats, SIM_ORACLE_MAX_ASINS);
    if (n_at < 0 || (n_at > 1 && n_at != n)) {
        status = fail(out, "at: one minute for every ASIN, or one per ASIN");
        goto done;
    }
    head(q, &r, offers, out);
    sim_buf_puts(out, "\"products\":[");
    int unknown = 0;
    for (int i = 0; i < n; i++) {
        int64_t at = q->now_min, v;
        if (n_at > 0) {
            if (sim_parse_i64(ats[n_at == 1 ? 0 : i], &v) != 0) {
                status = fail(out, "at: not an integer");
                goto done;
            }
            at = by_ms ? q->min_of_wall_ms(q->clock, v) : v;
        }
        if (at > q->now_min) {
            status = fail(out, "at must not be after the catalog's minute now");
            goto done;
        }
        int64_t idx = sim_catalog_resolve(q->cat, ids[i]);
        if (idx < 0) {
            unknown++;
            continue;
        }
        sim_catalog_product(q->cat, idx, at, p);
        snprintf(p->asin, sizeof(p->asin), "%.10s", ids[i]);
        sim_truth_judge(q->cat, p, offers, &r, t);
        sim_truth_render(out, ids[i], t);
        sim_buf_putc(out, ',');
    }
    sim_buf_uncomma(out);
    sim_buf_puts(out, "],\"unknown\":[");
    if (unknown > 0)
        for (int i = 0; i < n; i++)
            if (sim_catalog_resolve(q->cat, ids[i]) < 0) {
                sim_buf_str(out, ids[i]);
                sim_buf_putc(out, ',');
            }
    sim_buf_uncomma(out);
    sim_buf_puts(out, "]}");
done:
    free(ids);
    free(ats);
    free(p);
    free(t);
    return status;
}

static void render_seg(struct sim_buf *out, const struct sim_truth_seg *g)
{
    sim_buf_printf(out, "[%lld,%lld,%lld,%lld],", (long long)g->start, (long long)g->end,
                   (long long)g->peak_profit_cents, (long long)g->peak_at);
}

unsigned sim_oracle_timeline(const struct sim_oracle_req *q, struct sim_buf *out)
{
    struct jd_rules r;
    int offers;
    int64_t from, to, step;
    if (common(q, &r, &offers, out) != 0 || window(q, &from, &to, &step, out) != 0)
        return 400;
    enum { MAX_IDS = 100, MAX_SEGS = 1024 };
    char(*ids)[24] = malloc(MAX_IDS * sizeof(*ids));
    struct sim_truth_seg *segs = malloc(MAX_SEGS * sizeof(*segs));
    struct sim_product *p = malloc(sizeof(*p));
    unsigned status = 200;
    if (ids == NULL || segs == NULL || p == NULL) {
        status = fail(out, "out of memory");
        goto done;
    }
    int n = split(q->get(q->get_ctx, "asin"), ids, MAX_IDS);
    if (n <= 0) {
        status = fail(out, n < 0 ? "at most 100 ASINs" : "asin=A,B,... is required");
        goto done;
    }
    head(q, &r, offers, out);
    sim_buf_printf(out, "\"from\":%lld,\"to\":%lld,\"step\":%lld,\"products\":[", (long long)from,
                   (long long)to, (long long)step);
    for (int i = 0; i < n; i++) {
        int64_t idx = sim_catalog_resolve(q->cat, ids[i]);
        if (idx < 0)
            continue;
        struct sim_truth_span span;
        int rc = sim_truth_timeline(q->cat, idx, ids[i], from, to, step, offers, &r, NULL, p, segs,
                                    MAX_SEGS, &span);
        if (rc != 0) {
            status = fail(out, rc == -E2BIG ? "too many moments to judge: use a larger step or "
                                              "a shorter window"
                                            : "out of memory");
            goto done;
        }
        sim_buf_puts(out, "{\"asin\":");
        sim_buf_str(out, ids[i]);
        sim_buf_printf(out, ",\"deal_minutes\":%lld,\"first_deal\":%lld,\"segments\":[",
                       (long long)span.deal_min, (long long)span.first_deal);
        for (int k = 0; k < span.n_segs; k++)
            render_seg(out, &segs[k]);
        sim_buf_uncomma(out);
        sim_buf_puts(out, "]},");
    }
    sim_buf_uncomma(out);
    sim_buf_puts(out, "]}");
done:
    free(ids);
    free(segs);
    free(p);
    return status;
}

struct found {
    int64_t idx;
    struct sim_truth_span span;
};

static int cmp_found(const void *a, const void *b)
{
    const struct found *x = a, *y = b;
    if (x->span.peak.peak_profit_cents != y->span.peak.peak_profit_cents)
        return x->span.peak.peak_profit_cents > y->span.peak.peak_profit_cents ? -1 : 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

unsigned sim_oracle_true_deals(const struct sim_oracle_req *q, struct sim_buf *out)
{
    struct jd_rules r;
    int offers;
    int64_t from, to, step;
    if (common(q, &r, &offers, out) != 0 || window(q, &from, &to, &step, out) != 0)
        return 400;
    struct sim_selection *sel = NULL;
    const char *text = q->get(q->get_ctx, "selection");
    size_t len = text != NULL ? strlen(text) : 0;
    if ((text == NULL || *text == '\0') && q->body_len > 0) {
        text = q->body;
        len = q->body_len;
    }
    struct sim_product *p = malloc(sizeof(*p));
    size_t cap = 1024, n = 0;
    struct found *f = malloc(cap * sizeof(*f));
    unsigned status = 200;
    if (p == NULL || f == NULL) {
        status = fail(out, "out of memory");
        goto done;
    }
    if (text != NULL && len > 0) {
        char err[160];
        sel = malloc(sizeof(*sel));
        if (sel == NULL || sim_selection_parse(text, len, sel, err, sizeof(err)) != 0) {
            status = fail(out, sel == NULL ? "out of memory" : err);
            goto done;
        }
    }
    for (int64_t idx = 0; idx < q->cat->products; idx++) {
        struct sim_truth_span span;
        int rc = sim_truth_timeline(q->cat, idx, NULL, from, to, step, offers, &r, sel, p, NULL, 0,
                                    &span);
        if (rc != 0) {
            status = fail(out, rc == -E2BIG ? "too many moments to judge: use a larger step or "
                                              "a shorter window"
                                            : "out of memory");
            goto done;
        }
        if (span.n_segs_total == 0)
            continue;
        if (n == cap) {
            struct found *nf = realloc(f, cap * 2 * sizeof(*f));
            if (nf == NULL) {
                status = fail(out, "out of memory");
                goto done;
            }
            f = nf;
            cap *= 2;
        }
        f[n].idx = idx;
        f[n++].span = span;
    }
    qsort(f, n, sizeof(*f), cmp_found);
    head(q, &r, offers, out);
    sim_buf_printf(out,
                   "\"from\":%lld,\"to\":%lld,\"step\":%lld,\"products_scanned\":%lld,"
                   "\"count\":%zu,\"deals\":[",
                   (long long)from, (long long)to, (long long)step, (long long)q->cat->products, n);
    for (size_t i = 0; i < n; i++) {
        const struct sim_truth_span *s = &f[i].span;
        char asin[11];
        sim_catalog_asin(q->cat, f[i].idx, asin);
        sim_buf_puts(out, "{\"asin\":");
        sim_buf_str(out, asin);
        sim_buf_printf(out,
                       ",\"first_deal\":%lld,\"deal_minutes\":%lld,\"segments\":%d,"
                       "\"peak_profit_cents\":%lld,\"peak_roi_bp\":%lld,\"peak_at\":%lld,"
                       "\"fetch_tokens\":%d,\"listed_at\":%lld},",
                       (long long)s->first_deal, (long long)s->deal_min, s->n_segs_total,
                       (long long)s->peak.peak_profit_cents, (long long)s->peak.peak_roi_bp,
                       (long long)s->peak.peak_at, s->peak.peak_fetch_tokens,
                       (long long)s->listed_at);
    }
    sim_buf_uncomma(out);
    sim_buf_puts(out, "]}");
done:
    free(sel);
    free(p);
    free(f);
    return status;
}
