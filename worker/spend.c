/*
 * spend.c: token-gated Keepa requests. See spend.h for what it guarantees and why.
 *
 * One queue per worker, served in order: a job waits at the head until the bucket grants it,
 * so a large commit is never overtaken forever by small jobs of the same worker. Up to
 * max_in_flight granted jobs run at once. Time: all waits are uv timers on the worker's
 * loop; the loop never blocks, so signals and ring wake-ups are served while waiting.
 */
#include "worker/spend.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/log.h"
#include "shm/counters.h"

#define SP_MAX_IN_FLIGHT   2
#define SP_SLOT_RETRY_MS   50
#define SP_READING_WAIT_MS 5000

struct sp_job {
    struct sp_job *next;
    struct spend *sp;
    struct sp_job_spec spec;
    struct tb_grant grant;
    bool is_status_call;
    int64_t queued_ns;
};

static void pump(struct spend *sp);

static struct shm_counter_block *counters(struct spend *sp)
{
    return sp->wk->counters;
}

static void set_waiting(struct spend *sp, bool waiting)
{
    int64_t now = kd_mono_ns();
    if (waiting && sp->wait_since_ns == 0) {
        sp->wait_since_ns = now;
        if (!sp->wk->stopping)
            wk_set_state(sp->wk, SHM_PROC_WAITING_TOKENS);
    } else if (!waiting && sp->wait_since_ns != 0) {
        shm_counter_add(counters(sp), SHM_C_token_wait_ns, now - sp->wait_since_ns);
        sp->wait_since_ns = 0;
        if (!sp->wk->stopping)
            wk_set_state(sp->wk, SHM_PROC_READY);
    }
}

static void on_wait_timer(uv_timer_t *t)
{
    pump(t->data);
}

static void wait_until(struct spend *sp, int64_t when_ns)
{
    int64_t now = kd_mono_ns();
    uint64_t ms = when_ns > now ? (uint64_t)((when_ns - now + KD_NS_PER_MS - 1) / KD_NS_PER_MS) : 1;
    set_waiting(sp, true);
    uv_timer_start(&sp->wait_timer, on_wait_timer, ms, 0);
}

static int64_t min64(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

/*
 * Tokens a job of priority PRIO must leave in the bucket for higher-priority work that other
 * workers have queued: the commit backlog for updates and discovery, plus the next update
 * batch for discovery. Never more than the bucket can hold beside the job itself, so the
 * target stays reachable.
 */
static int64_t priority_floor(struct spend *sp, enum sp_priority prio, int64_t cost,
                              const struct tb_stats *st)
{
    if (prio == SP_PRIO_COMMIT)
        return 0;
    const struct shm_layout *l = sp->wk->seg.layout;
    int64_t floor = 0;
    int64_t backlog = shm_counter_total(l, SHM_C_commit_backlog);
    if (backlog > 0) {
        int64_t c = tb_cost_estimate(sp->tb, TB_KIND_COMMIT, min64(backlog, TB_UNITS_MAX));
        floor += c > 0 ? c : 0;
    }
    if (prio == SP_PRIO_DISCOVER) {
        int64_t due = shm_counter_total(l, SHM_C_updates_due);
        if (due > 0) {
            int64_t c = tb_cost_estimate(sp->tb, TB_KIND_UPDATE, min64(due, 50));
            floor += c > 0 ? c : 0;
        }
    }
    int64_t room = st->cap_tokens - cost;
    if (floor > room)
        floor = room > 0 ? room : 0;
    return floor;
}

/* When the projection will have reached TARGET tokens, assuming nobody else spends. */
static int64_t time_of_balance(struct spend *sp, const struct tb_stats *st, int64_t target)
{
    int64_t missing = target - st->projected_tokens;
    int64_t rate = st->refill_rate > 0 ? st->refill_rate : 1;
    int64_t ticks = (missing + rate - 1) / rate;
    if (ticks < 1)
        ticks = 1;
    return st->next_refill_ns + (ticks - 1) * sp->tb->minute_ns;
}

static void reading_from(const struct kp_reading *in, struct tb_reading *out)
{
    out->tokens_left = in->tokens_left;
    out->refill_in_ms = in->refill_in_ms;
    out->refill_rate = (int64_t)in->refill_rate;
    out->timestamp_ms = in->timestamp_ms;
    out->tokens_consumed = (int64_t)in->tokens_consumed;
}

static void publish_gauges(struct spend *sp, int64_t now)
{
    struct tb_stats st;
    if (tb_stats(sp->tb, now, &st) == 0) {
        shm_gauge_set(counters(sp), SHM_C_tokens_projected, st.projected_tokens);
        shm_gauge_set(counters(sp), SHM_C_refill_rate, st.refill_rate);
    }
}

static void job_free(struct sp_job *job)
{
    free(job);
}

static void finish_job(struct sp_job *job, const struct kp_result *res)
{
    if (job->spec.cbs.on_done != NULL)
        job->spec.cbs.on_done(res, job->spec.cbs.ud);
    job_free(job);
}

/* A result for a job that never reached Keepa (cancelled, or its builder failed). */
static void finish_unsent(struct sp_job *job, enum kp_result_code code, const char *why)
{
    struct kp_result res;
    memset(&res, 0, sizeof(res));
    res.code = code;
    snprintf(res.error, sizeof(res.error), "%s", why);
    finish_job(job, &res);
}

static void push_front(struct spend *sp, struct sp_job *job)
{
    job->next = sp->head;
    sp->head = job;
    if (sp->tail == NULL)
        sp->tail = job;
}

static void on_job_done(const struct kp_result *res, void *ud)
{
    struct sp_job *job = ud;
    struct spend *sp = job->sp;
    int64_t now = kd_mono_ns();
    sp->in_flight--;
    if (job->is_status_call)
        sp->status_call_in_flight = false;

    struct shm_counter_block *cb = counters(sp);
    shm_counter_add(cb, SHM_C_http_requests, res->tries);
    if (res->code == KP_NOT_ADMITTED)
        shm_counter_add(cb, SHM_C_http_429, 1);
    else if (res->code != KP_OK && res->code != KP_CANCELLED)
        shm_counter_add(cb, SHM_C_http_errors, 1);
    if (res->tries > 1)
        shm_counter_add(cb, SHM_C_http_errors, res->tries - 1);

    /* The answer is the truth: re-anchor with this job's own reservation excluded. */
    int64_t actual = 0;
    if (res->reading_valid) {
        struct tb_reading r;
        reading_from(&res->reading, &r);
        int rc = tb_apply_reading(sp->tb, &r, now, job->is_status_call ? NULL : &job->grant);
        if (rc == 0)
            shm_counter_add(cb, SHM_C_token_reanchors, 1);
        actual = r.tokens_consumed > 0 ? r.tokens_consumed : 0;
        shm_counter_add(cb, SHM_C_tokens_spent, actual);
        if (res->reading.local_mono_ns_received > res->reading.local_mono_ns_sent)
            shm_hist_record(
                cb, SHM_C_http_latency_ms,
                (uint64_t)((res->reading.local_mono_ns_received - res->reading.local_mono_ns_sent) /
                           KD_NS_PER_MS));
        if (res->code == KP_OK && res->http_status == 200 && !job->is_status_call)
            tb_cost_learn(sp->tb, job->spec.kind, job->spec.units, actual);
    }
    if (!res->reading_valid && res->maybe_charged)
        actual = job->grant.cost_tokens; /* a lost answer may have cost everything
                                            (docs/failure-modes.md F14) */
    if (!job->is_status_call && job->grant.slot != TB_SLOT_NONE)
        tb_settle(sp->tb, &job->grant, now, actual);
    publish_gauges(sp, now);

    /* A 402 on any call, the free /token call included, means the key is unusable: without
     * this a 402 on the first reading left the bucket unanchored and /token was asked again
     * every retry interval, forever (docs/failure-modes.md F5). */
    if (res->code == KP_KEY_UNUSABLE && !sp->key_unusable) {
        sp->key_unusable = true;
        shm_gauge_set(cb, SHM_C_key_unusable, 1);
        wk_set_error(sp->wk, "Keepa answered 402: the API key has no access; not spending");
        kd_error("Keepa answered 402 (payment required): the API key has no access. "
                 "Nothing more is spent until the key is fixed and kdeals restarted.");
    }
    if (job->is_status_call) {
        job_free(job);
    } else if (res->code == KP_NOT_ADMITTED && !sp->closing) {
        /* Not charged; the bucket now knows the balance. Wait for a new grant. */
        kd_info("Keepa answered 429 (balance %.0f): %s job waits for its grant again",
                res->reading_valid ? res->reading.tokens_left : 0.0, kp_endpoint_name(res->ep));
        push_front(sp, job);
    } else {
        finish_job(job, res);
    }
    pump(sp);
}

/* Makes the free /token call the bucket asked for. */
static void status_call(struct spend *sp)
{
    struct sp_job *job = calloc(1, sizeof(*job));
    if (job == NULL)
        return;
    job->sp = sp;
    job->is_status_call = true;
    job->grant.slot = TB_SLOT_NONE;
    struct kp_call call;
    if (kp_call_token(&call) != 0) {
        free(job);
        return;
    }
    struct kp_request_cbs cbs = {.on_done = on_job_done, .ud = job};
    if (kp_client_submit(sp->client, &call, &cbs, NULL) != 0) {
        kp_call_free(&call);
        free(job);
        return;
    }
    sp->status_call_in_flight = true;
    sp->in_flight++;
    shm_counter_add(counters(sp), SHM_C_token_status_calls, 1);
}

/* The client has one ud per request; these hand each object to the stage with its own ud. */
static int tramp_product(const struct kp_product *p, void *ud)
{
    struct sp_job *job = ud;
    return job->spec.cbs.on_product ? job->spec.cbs.on_product(p, job->spec.cbs.ud) : 0;
}

static int tramp_deal(const struct kp_deal *d, void *ud)
{
    struct sp_job *job = ud;
    return job->spec.cbs.on_deal ? job->spec.cbs.on_deal(d, job->spec.cbs.ud) : 0;
}

static int tramp_seller(const struct kp_seller *s, void *ud)
{
    struct sp_job *job = ud;
    return job->spec.cbs.on_seller ? job->spec.cbs.on_seller(s, job->spec.cbs.ud) : 0;
}

static int tramp_asin(const char *asin, void *ud)
{
    struct sp_job *job = ud;
    return job->spec.cbs.on_asin ? job->spec.cbs.on_asin(asin, job->spec.cbs.ud) : 0;
}

static int tramp_lightning(const struct kp_lightning_deal *ld, void *ud)
{
    struct sp_job *job = ud;
    return job->spec.cbs.on_lightning ? job->spec.cbs.on_lightning(ld, job->spec.cbs.ud) : 0;
}

static void pump(struct spend *sp)
{
    if (sp->closing || sp->client == NULL)
        return;
    if (sp->key_unusable) {
        /* Nothing is sent any more: the queued jobs end now, keeping their items. */
        uv_timer_stop(&sp->wait_timer);
        set_waiting(sp, false);
        while (sp->head != NULL) {
            struct sp_job *job = sp->head;
            sp->head = job->next;
            if (sp->head == NULL)
                sp->tail = NULL;
            finish_unsent(job, KP_KEY_UNUSABLE, "the API key is unusable (Keepa answered 402)");
        }
        return;
    }
    while (sp->head != NULL && sp->in_flight < sp->max_in_flight) {
        struct sp_job *job = sp->head;
        int64_t now = kd_mono_ns();
        int64_t cost = tb_cost_estimate(sp->tb, job->spec.kind, job->spec.units);
        if (cost < 0)
            cost = 0;
        struct tb_stats st;
        tb_stats(sp->tb, now, &st);

        if (st.anchored && job->spec.prio != SP_PRIO_COMMIT) {
            int64_t floor = priority_floor(sp, job->spec.prio, cost, &st);
            if (floor > 0 && st.projected_tokens - cost < floor) {
                wait_until(sp, time_of_balance(sp, &st, floor + cost));
                return;
            }
        }
        int64_t wake = 0;
        int rc = job->spec.within_deficit
                     ? tb_reserve_within(sp->tb, now, cost, (int64_t)getpid(), &job->grant, &wake)
                     : tb_reserve(sp->tb, now, cost, (int64_t)getpid(), &job->grant, &wake);
        if (rc == -EDQUOT) {
            /* No refill makes it affordable within the bound: it ends now, unsent. */
            sp->head = job->next;
            if (sp->head == NULL)
                sp->tail = NULL;
            job->next = NULL;
            char why[256];
            snprintf(why, sizeof(why),
                     "not sent: it costs %lld tokens, more than a bucket of %lld (%lld a minute) "
                     "can pay within the deficit bound of %lld ([tokens] max_deficit)",
                     (long long)cost, (long long)st.cap_tokens, (long long)st.refill_rate,
                     (long long)st.max_deficit_tokens);
            finish_unsent(job, KP_PERMANENT, why);
            continue;
        }
        if (rc == -EAGAIN) {
            if (!sp->status_call_in_flight && tb_needs_reading(sp->tb, now) &&
                tb_claim_status_call(sp->tb, now) == 0)
                status_call(sp);
            if (wake <= now)
                wake = now + SP_SLOT_RETRY_MS * KD_NS_PER_MS;
            wait_until(sp, wake);
            return;
        }
        if (rc == -ENOSPC) {
            wait_until(sp, now + SP_SLOT_RETRY_MS * KD_NS_PER_MS);
            return;
        }
        sp->head = job->next;
        if (sp->head == NULL)
            sp->tail = NULL;
        job->next = NULL;
        if (rc != 0) {
            kd_error("token reservation of %lld tokens refused: %s", (long long)cost,
                     strerror(-rc));
            finish_unsent(job, KP_PERMANENT, "token reservation refused");
            continue;
        }
        set_waiting(sp, false);
        shm_counter_add(counters(sp), SHM_C_tokens_reserved, cost);
        shm_gauge_set(counters(sp), SHM_C_tokens_projected, st.projected_tokens - cost);

        struct kp_call call;
        memset(&call, 0, sizeof(call));
        rc = job->spec.build(&call, job->spec.cbs.ud);
        if (rc == 0) {
            struct kp_request_cbs cbs = {.on_product = tramp_product,
                                         .on_deal = tramp_deal,
                                         .on_seller = tramp_seller,
                                         .on_asin = tramp_asin,
                                         .on_lightning = tramp_lightning,
                                         .on_done = on_job_done,
                                         .ud = job};
            rc = kp_client_submit(sp->client, &call, &cbs, NULL);
            if (rc != 0)
                kp_call_free(&call);
        }
        if (rc != 0) {
            tb_settle(sp->tb, &job->grant, now, 0);
            finish_unsent(job, KP_PERMANENT, "request could not be built or submitted");
            continue;
        }
        if (job->spec.units > 0 && job->spec.kind != TB_KIND_DEAL_PAGE)
            shm_hist_record(counters(sp), SHM_C_batch_asins, (uint64_t)job->spec.units);
        sp->in_flight++;
    }
    if (sp->head == NULL)
        set_waiting(sp, false);
}

int sp_init(struct spend *sp, struct wk *wk, char *err, size_t errlen)
{
    memset(sp, 0, sizeof(*sp));
    sp->wk = wk;
    sp->tb = &wk->seg.layout->tokens;
    sp->max_in_flight = SP_MAX_IN_FLIGHT;
    uv_timer_init(wk->loop, &sp->wait_timer);
    sp->wait_timer.data = sp;
    if (wk->key[0] == '\0') {
        snprintf(err, errlen, "no Keepa API key configured: nothing will be fetched");
        return -ENOKEY;
    }
    if (shm_counter_get(wk->counters, SHM_C_key_unusable) != 0)
        sp->key_unusable = true; /* a predecessor of this worker already got a 402 */
    int rc = kp_global_init();
    if (rc != 0) {
        snprintf(err, errlen, "cannot initialise libcurl");
        return rc;
    }
    struct kp_client_opts o;
    memset(&o, 0, sizeof(o));
    o.base_url = wk->cfg.keepa_base_url;
    o.api_key = wk->key;
    o.max_in_flight = SP_MAX_IN_FLIGHT + 1; /* room for the /token call */
    o.connect_timeout_ms = wk->cfg.keepa_connect_timeout_ms;
    o.timeout_ms = wk->cfg.keepa_request_timeout_ms;
    o.offers_timeout_ms = wk->cfg.keepa_request_timeout_ms;
    return kp_client_new(wk->loop, &o, &sp->client, err, errlen);
}

int sp_submit(struct spend *sp, const struct sp_job_spec *spec)
{
    if (sp->closing || sp->client == NULL)
        return -ESHUTDOWN;
    if (sp->key_unusable)
        return -EKEYREJECTED;
    if (spec->build == NULL || spec->units < 1 || spec->kind <= TB_KIND_TOKEN ||
        spec->kind >= TB_KIND_COUNT)
        return -EINVAL;
    struct sp_job *job = calloc(1, sizeof(*job));
    if (job == NULL)
        return -ENOMEM;
    job->sp = sp;
    job->spec = *spec;
    job->grant.slot = TB_SLOT_NONE;
    job->queued_ns = kd_mono_ns();
    if (sp->tail != NULL)
        sp->tail->next = job;
    else
        sp->head = job;
    sp->tail = job;
    if (!uv_is_active((uv_handle_t *)&sp->wait_timer))
        pump(sp);
    return 0;
}

unsigned sp_pending(const struct spend *sp)
{
    unsigned n = sp->in_flight;
    for (const struct sp_job *j = sp->head; j != NULL; j = j->next)
        n++;
    return n;
}

static void on_client_closed(void *ud)
{
    struct spend *sp = ud;
    sp->client = NULL;
    if (sp->on_closed != NULL) {
        void (*cb)(void *) = sp->on_closed;
        sp->on_closed = NULL;
        cb(sp->closed_ud);
    }
}

void sp_close(struct spend *sp, void (*on_closed)(void *ud), void *ud)
{
    sp->closing = true;
    sp->on_closed = on_closed;
    sp->closed_ud = ud;
    uv_timer_stop(&sp->wait_timer);
    if (!uv_is_closing((uv_handle_t *)&sp->wait_timer))
        uv_close((uv_handle_t *)&sp->wait_timer, NULL);
    set_waiting(sp, false);
    while (sp->head != NULL) {
        struct sp_job *job = sp->head;
        sp->head = job->next;
        finish_unsent(job, KP_CANCELLED, "cancelled: the worker is stopping");
    }
    sp->tail = NULL;
    if (sp->client != NULL)
        kp_client_close(sp->client, on_client_closed, sp);
    else
        on_client_closed(sp);
}
