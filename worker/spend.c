/*
 * spend.c: token-gated Keepa requests. See spend.h for what it guarantees and why.
 *
 * One queue per worker, served in order: a job waits at the head until a bucket grants it,
 * so a large commit is never overtaken forever by small jobs of the same worker. Up to
 * max_in_flight granted jobs run at once (a job waiting to be tried again holds its place).
 * Time: all waits are uv timers on the worker's loop; the loop never blocks, so signals and
 * ring wake-ups are served while waiting.
 *
 * Accounting, per attempt: the grant's estimate is charged to the key's bucket and to this
 * instance's share account (shm/keyseg.h) when it is granted; the answer's reading re-anchors
 * the bucket and its tokensConsumed replaces the estimate (tokens_spent); without a reading, an
 * attempt that may have been charged stays charged at its estimate (tokens_lost) and the next
 * reading of the key tells the truth; an attempt that was never sent is refunded.
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
#define SP_BACKOFF_BASE_MS 500
#define SP_BACKOFF_MAX_MS  30000
#define SP_SWEEP_NS        (1000LL * KD_NS_PER_MS)
#define SP_ACTIVE_MINUTES  2 /* a member with work says so this many Keepa minutes ahead */

struct sp_job {
    struct sp_job *next;
    struct spend *sp;
    struct sp_job_spec spec;
    struct tb_grant grant;
    int key; /* the key of the grant (or of the /token call) */
    bool is_status_call;
    unsigned tries;    /* attempts sent */
    unsigned failures; /* transient failures among them */
    int64_t due_ns;    /* in backoff: when to try again */
    int64_t queued_ns;
    struct kp_asin_outcome *delivered; /* ASINs an earlier failed attempt delivered */
    size_t n_delivered;
};

static void pump(struct spend *sp);

static struct shm_counter_block *counters(struct spend *sp)
{
    return sp->wk->counters;
}

static struct shm_tokens *bucket(struct spend *sp, int k)
{
    return &sp->keys[k].ks.layout->tokens;
}

static struct shm_key_ref *key_ref(struct spend *sp, int k)
{
    int ref = sp->keys[k].ref;
    return ref >= 0 ? &sp->wk->seg.layout->keys[ref] : NULL;
}

static bool key_usable(struct spend *sp, int k)
{
    if (sp->keys[k].set_aside || sp->keys[k].ks.layout == NULL)
        return false;
    struct shm_key_ref *ref = key_ref(sp, k);
    if (ref != NULL && atomic_load_explicit(&ref->state, memory_order_acquire) != SHM_KEY_OK) {
        sp->keys[k].set_aside = true; /* another worker of the instance set it aside */
        return false;
    }
    return true;
}

static unsigned usable_keys(struct spend *sp)
{
    unsigned n = 0;
    for (unsigned k = 0; k < sp->n_keys; k++)
        n += key_usable(sp, (int)k);
    return n;
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
 * Tokens a job of priority PRIO must leave in bucket TB for higher-priority work that other
 * workers of the instance have queued: the commit backlog for updates and discovery, plus the
 * next update batch for discovery. Never more than the bucket can hold beside the job itself,
 * so the target stays reachable.
 */
static int64_t priority_floor(struct spend *sp, struct shm_tokens *tb, enum sp_priority prio,
                              int64_t cost, const struct tb_stats *st)
{
    if (prio == SP_PRIO_COMMIT)
        return 0;
    const struct shm_layout *l = sp->wk->seg.layout;
    int64_t floor = 0;
    int64_t backlog = shm_counter_total(l, SHM_C_commit_backlog);
    if (backlog > 0) {
        int64_t c = tb_cost_estimate(tb, TB_KIND_COMMIT, min64(backlog, TB_UNITS_MAX));
        floor += c > 0 ? c : 0;
    }
    if (prio == SP_PRIO_DISCOVER) {
        int64_t due = shm_counter_total(l, SHM_C_updates_due);
        if (due > 0) {
            int64_t c = tb_cost_estimate(tb, TB_KIND_UPDATE, min64(due, 50));
            floor += c > 0 ? c : 0;
        }
    }
    int64_t room = st->cap_tokens - cost;
    if (floor > room)
        floor = room > 0 ? room : 0;
    return floor;
}

/* When the projection of TB will have reached TARGET tokens, assuming nobody else spends. */
static int64_t time_of_balance(struct shm_tokens *tb, const struct tb_stats *st, int64_t target)
{
    int64_t missing = target - st->projected_tokens;
    int64_t rate = st->refill_rate > 0 ? st->refill_rate : 1;
    int64_t ticks = (missing + rate - 1) / rate;
    if (ticks < 1)
        ticks = 1;
    return st->next_refill_ns + (ticks - 1) * tb->minute_ns;
}

static void reading_from(const struct kp_reading *in, struct tb_reading *out)
{
    out->tokens_left = in->tokens_left;
    out->refill_in_ms = in->refill_in_ms;
    out->refill_rate = (int64_t)in->refill_rate;
    out->timestamp_ms = in->timestamp_ms;
    out->tokens_consumed = (int64_t)in->tokens_consumed;
}

int sp_stats(const struct spend *sp, int64_t now_ns, struct tb_stats *out)
{
    struct spend *s = (struct spend *)sp;
    memset(out, 0, sizeof(*out));
    bool any = false;
    for (unsigned k = 0; k < s->n_keys; k++) {
        struct tb_stats st;
        if (!key_usable(s, (int)k) || tb_stats(bucket(s, (int)k), now_ns, &st) != 0)
            continue;
        if (!any || (!out->anchored && st.anchored)) {
            *out = st; /* the first, or the first anchored: the sums start with it */
            any = true;
            continue;
        }
        if (!st.anchored)
            continue;
        out->projected_tokens += st.projected_tokens;
        out->refill_rate += st.refill_rate;
        out->cap_tokens += st.cap_tokens;
        out->inflight_tokens += st.inflight_tokens;
        out->slots_in_use += st.slots_in_use;
    }
    return any ? 0 : -ENOKEY;
}

static void publish_gauges(struct spend *sp, int64_t now)
{
    struct tb_stats st;
    if (sp_stats(sp, now, &st) == 0) {
        shm_gauge_set(counters(sp), SHM_C_tokens_projected, st.projected_tokens);
        shm_gauge_set(counters(sp), SHM_C_refill_rate, st.refill_rate);
    }
}

static void job_free(struct sp_job *job)
{
    free(job->delivered);
    free(job);
}

/* The rank of an ASIN outcome: a delivered product beats "not delivered". */
static int outcome_rank(enum kp_asin_status s)
{
    return s == KP_ASIN_OK ? 3 : s == KP_ASIN_OFFERS_FAILED ? 2 : s == KP_ASIN_MALFORMED ? 1 : 0;
}

/* Remembers what the failed attempt RES delivered, for the job's final result. */
static void remember_delivered(struct sp_job *job, const struct kp_result *res)
{
    if (res->asins == NULL || res->n_asins == 0)
        return;
    if (job->delivered == NULL) {
        job->delivered = calloc(res->n_asins, sizeof(*job->delivered));
        if (job->delivered == NULL)
            return; /* only the report suffers: the products reached the stage already */
        memcpy(job->delivered, res->asins, res->n_asins * sizeof(*job->delivered));
        job->n_delivered = res->n_asins;
        return;
    }
    for (size_t i = 0; i < res->n_asins; i++)
        for (size_t j = 0; j < job->n_delivered; j++)
            if (strcmp(job->delivered[j].asin, res->asins[i].asin) == 0 &&
                outcome_rank(res->asins[i].status) > outcome_rank(job->delivered[j].status))
                job->delivered[j].status = res->asins[i].status;
}

/*
 * Hands RES to the stage as the job's outcome: the attempts counted over the whole job, and a
 * product an earlier attempt delivered reported as delivered (the client's own retries did
 * the same), then frees the job.
 */
static void finish_job(struct sp_job *job, const struct kp_result *res)
{
    struct kp_result out = *res;
    struct kp_asin_outcome *merged = NULL;
    if (job->tries > 0)
        out.tries = job->tries;
    if (job->n_delivered > 0 && res->asins != NULL && res->n_asins > 0) {
        merged = malloc(res->n_asins * sizeof(*merged));
        if (merged != NULL) {
            memcpy(merged, res->asins, res->n_asins * sizeof(*merged));
            for (size_t i = 0; i < res->n_asins; i++)
                for (size_t j = 0; j < job->n_delivered; j++)
                    if (strcmp(job->delivered[j].asin, merged[i].asin) == 0 &&
                        outcome_rank(job->delivered[j].status) > outcome_rank(merged[i].status))
                        merged[i].status = job->delivered[j].status;
            out.asins = merged;
        }
    }
    if (job->spec.cbs.on_done != NULL)
        job->spec.cbs.on_done(&out, job->spec.cbs.ud);
    free(merged);
    job_free(job);
}

/* A result for a job that is not (or no longer) at Keepa: cancelled, or its builder failed. */
static void finish_unsent(struct sp_job *job, enum kp_result_code code, const char *why)
{
    struct kp_result res;
    memset(&res, 0, sizeof(res));
    res.code = code;
    snprintf(res.error, sizeof(res.error), "%s", why);
    if (job->n_delivered > 0) {
        res.asins = job->delivered;
        res.n_asins = job->n_delivered;
        job->n_delivered = 0; /* reported as they are: nothing to merge with */
    }
    finish_job(job, &res);
}

static void push_front(struct spend *sp, struct sp_job *job)
{
    job->next = sp->head;
    sp->head = job;
    if (sp->tail == NULL)
        sp->tail = job;
}

static struct sp_job *pop_front(struct spend *sp)
{
    struct sp_job *job = sp->head;
    if (job != NULL) {
        sp->head = job->next;
        if (sp->head == NULL)
            sp->tail = NULL;
        job->next = NULL;
    }
    return job;
}

/* ---- retries ---------------------------------------------------------------------------- */

static uint64_t rng_next(struct spend *sp)
{
    uint64_t x = sp->rng;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    sp->rng = x;
    return x;
}

/* "Equal jitter" backoff before attempt FAILURES + 1: half fixed, half random. */
static int64_t backoff_ms(struct spend *sp, unsigned failures)
{
    int64_t cap = SP_BACKOFF_BASE_MS;
    for (unsigned i = 1; i < failures && cap < SP_BACKOFF_MAX_MS; i++)
        cap *= 2;
    if (cap > SP_BACKOFF_MAX_MS)
        cap = SP_BACKOFF_MAX_MS;
    int64_t half = cap / 2;
    return half + (int64_t)(rng_next(sp) % (uint64_t)(cap - half + 1));
}

static void arm_retry_timer(struct spend *sp);

static void on_retry_timer(uv_timer_t *t)
{
    struct spend *sp = t->data;
    int64_t now = kd_mono_ns();
    /* The due jobs go back to the head of the queue, in due order, ahead of newer work. */
    struct sp_job *due = NULL, **tail = &due;
    while (sp->backoff != NULL && sp->backoff->due_ns <= now) {
        struct sp_job *job = sp->backoff;
        sp->backoff = job->next;
        job->next = NULL;
        *tail = job;
        tail = &job->next;
        sp->in_flight--;
    }
    if (due != NULL) {
        *tail = sp->head;
        sp->head = due;
        if (sp->tail == NULL) {
            struct sp_job *last = due;
            while (last->next != NULL)
                last = last->next;
            sp->tail = last;
        }
    }
    arm_retry_timer(sp);
    pump(sp);
}

static void arm_retry_timer(struct spend *sp)
{
    if (sp->backoff == NULL || sp->closing)
        return;
    int64_t now = kd_mono_ns();
    int64_t wait = sp->backoff->due_ns - now;
    uint64_t ms = wait > 0 ? (uint64_t)((wait + KD_NS_PER_MS - 1) / KD_NS_PER_MS) : 0;
    uv_timer_start(&sp->retry_timer, on_retry_timer, ms, 0);
}

/* Puts JOB aside until its backoff ends; it keeps its place among the requests in flight. */
static void retry_later(struct spend *sp, struct sp_job *job, const struct kp_result *res)
{
    remember_delivered(job, res);
    int64_t wait = backoff_ms(sp, job->failures);
    job->due_ns = kd_mono_ns() + wait * KD_NS_PER_MS;
    kd_warn("%s; try %u of %u in %lld ms, with a grant of its own", res->error, job->failures + 1,
            SP_MAX_TRIES, (long long)wait);
    struct sp_job **at = &sp->backoff;
    while (*at != NULL && (*at)->due_ns <= job->due_ns)
        at = &(*at)->next;
    job->next = *at;
    *at = job;
    sp->in_flight++;
    arm_retry_timer(sp);
}

/* ---- keys set aside --------------------------------------------------------------------- */

/* Keepa refused key K (402: no access; 400 with the zeroed envelope: no such key). */
static void set_aside(struct spend *sp, int k, bool expired)
{
    if (sp->keys[k].set_aside)
        return;
    sp->keys[k].set_aside = true;
    const char *why = expired ? "Keepa answered 402: the key has no access (an expired plan?)"
                              : "Keepa answered 400 with an empty envelope: not a valid key";
    struct shm_key_ref *ref = key_ref(sp, k);
    if (ref != NULL) {
        snprintf(ref->message, sizeof(ref->message), "%s", why);
        atomic_store(&ref->set_aside_ms, kd_wall_ms());
        atomic_store_explicit(&ref->state, expired ? SHM_KEY_EXPIRED : SHM_KEY_REJECTED,
                              memory_order_release);
    }
    unsigned left = usable_keys(sp);
    kd_error("API key %.8s (fingerprint): %s; it is set aside until kdeals restarts, %u other "
             "key(s) go on",
             sp->keys[k].ks.fingerprint, why, left);
    wk_set_error(sp->wk, "key %.8s set aside: %s", sp->keys[k].ks.fingerprint, why);
    if (left == 0 && !sp->key_unusable) {
        sp->key_unusable = true;
        shm_gauge_set(counters(sp), SHM_C_key_unusable, 1);
        kd_error("every API key is unusable: nothing more is spent until the keys are fixed and "
                 "kdeals restarted");
    }
}

/* ---- answers ---------------------------------------------------------------------------- */

static void on_job_done(const struct kp_result *res, void *ud)
{
    struct sp_job *job = ud;
    struct spend *sp = job->sp;
    struct sp_key *key = &sp->keys[job->key];
    struct shm_tokens *tb = bucket(sp, job->key);
    int64_t now = kd_mono_ns();
    if (job->is_status_call)
        key->status_call_in_flight = false;
    else
        sp->in_flight--;

    struct shm_counter_block *cb = counters(sp);
    shm_counter_add(cb, SHM_C_http_requests, res->tries);
    if (res->code == KP_NOT_ADMITTED)
        shm_counter_add(cb, SHM_C_http_429, 1);
    else if (res->code != KP_OK && res->code != KP_CANCELLED)
        shm_counter_add(cb, SHM_C_http_errors, 1);
    if (res->tries > 1)
        shm_counter_add(cb, SHM_C_http_errors, res->tries - 1);

    /* The answer is the truth: re-anchor with this job's own reservation excluded. */
    int64_t spent = 0, lost = 0;
    if (res->reading_valid) {
        struct tb_reading r;
        reading_from(&res->reading, &r);
        int rc = tb_apply_reading(tb, &r, now, &job->grant);
        if (rc == 0)
            shm_counter_add(cb, SHM_C_token_reanchors, 1);
        spent = r.tokens_consumed > 0 ? r.tokens_consumed : 0;
        shm_counter_add(cb, SHM_C_tokens_spent, spent);
        if (res->reading.local_mono_ns_received > res->reading.local_mono_ns_sent)
            shm_hist_record(
                cb, SHM_C_http_latency_ms,
                (uint64_t)((res->reading.local_mono_ns_received - res->reading.local_mono_ns_sent) /
                           KD_NS_PER_MS));
        if (res->code == KP_OK && res->http_status == 200 && !job->is_status_call)
            tb_cost_learn(tb, job->spec.kind, job->spec.units, spent);
    } else if (res->maybe_charged && !job->is_status_call) {
        /* Lost without an answer: charged at its estimate until a reading says otherwise
         * (docs/failure-modes.md F14). */
        lost = job->grant.cost_tokens;
        shm_counter_add(cb, SHM_C_tokens_lost, lost);
    }
    if (!job->is_status_call) {
        int64_t actual = res->reading_valid ? spent : lost;
        int64_t used = actual - job->grant.cost_tokens;
        if (job->grant.slot != TB_SLOT_NONE && lost > 0) {
            tb_settle_lost(tb, &job->grant, now); /* charged, and held against old readings */
        } else if (job->grant.slot != TB_SLOT_NONE) {
            int rc = tb_settle(tb, &job->grant, now, actual);
            if (rc == -ERANGE) {
                kd_warn("Keepa said one request cost %lld tokens: not believed; it stays "
                        "charged at the %lld reserved until the next reading",
                        (long long)actual, (long long)job->grant.cost_tokens);
                used = 0;
            }
        }
        ks_account(&key->ks, key->member, sp->owner, used, spent, lost);
    }
    publish_gauges(sp, now);

    bool refused_key = res->code == KP_KEY_UNUSABLE || res->key_rejected;
    if (refused_key)
        set_aside(sp, job->key, res->code == KP_KEY_UNUSABLE);
    if (job->is_status_call) {
        job_free(job);
    } else if (res->code == KP_NOT_ADMITTED && !sp->closing) {
        /* Not charged; the bucket now knows the balance. Wait for a new grant. */
        kd_info("Keepa answered 429 (balance %.0f): %s job waits for its grant again",
                res->reading_valid ? res->reading.tokens_left : 0.0, kp_endpoint_name(res->ep));
        push_front(sp, job);
    } else if (refused_key && !sp->key_unusable && !sp->closing) {
        push_front(sp, job); /* another key takes it */
    } else if (res->code == KP_FAILED && res->retryable && job->failures + 1 < SP_MAX_TRIES &&
               !sp->closing) {
        job->failures++;
        retry_later(sp, job, res);
    } else {
        if (refused_key && res->code != KP_KEY_UNUSABLE) {
            struct kp_result out = *res;
            out.code = KP_KEY_UNUSABLE; /* the stage keeps its items and stops spending */
            finish_job(job, &out);
        } else {
            finish_job(job, res);
        }
    }
    pump(sp);
}

/* Makes the free /token call that key K's bucket asked for. */
static void status_call(struct spend *sp, int k)
{
    struct sp_job *job = calloc(1, sizeof(*job));
    if (job == NULL)
        return;
    job->sp = sp;
    job->key = k;
    job->is_status_call = true;
    /* A free grant: it says when the call was sent, which orders its reading (tokens.h). */
    if (tb_reserve(bucket(sp, k), kd_mono_ns(), 0, (int64_t)getpid(), &job->grant, NULL) != 0) {
        free(job);
        return;
    }
    struct kp_call call;
    if (kp_call_token(&call) != 0) {
        free(job);
        return;
    }
    call.key_index = (unsigned)k;
    struct kp_request_cbs cbs = {.on_done = on_job_done, .ud = job};
    if (kp_client_submit(sp->client, &call, &cbs, NULL) != 0) {
        kp_call_free(&call);
        free(job);
        return;
    }
    sp->keys[k].status_call_in_flight = true; /* not in in_flight: no stage waits for it */
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

/* ---- grants ----------------------------------------------------------------------------- */

/*
 * Asks the usable keys, fullest bucket first, for a grant for JOB at NOW. Returns the key
 * granted (JOB->grant filled, the estimate accounted); -EAGAIN with *WAKE the earliest time
 * any key could grant it; -EINVAL when every key refused the reservation itself; -EDQUOT when
 * JOB may not overdraw (spec.within_deficit) and no key's refill will ever make it affordable
 * within the deficit bound. On -EINVAL and -EDQUOT, WHY (WHYLEN bytes) says why.
 */
static int grant(struct spend *sp, struct sp_job *job, int64_t now, int64_t *wake, char *why,
                 size_t whylen)
{
    int order[KD_KEYS_MAX];
    int64_t projected[KD_KEYS_MAX];
    int n = 0;
    for (unsigned k = 0; k < sp->n_keys; k++) {
        if (!key_usable(sp, (int)k))
            continue;
        int64_t p = tb_project(bucket(sp, (int)k), now);
        int at = n++;
        while (at > 0 && projected[at - 1] < p) {
            order[at] = order[at - 1];
            projected[at] = projected[at - 1];
            at--;
        }
        order[at] = (int)k;
        projected[at] = p;
    }
    *wake = INT64_MAX;
    bool refused = n > 0;
    int over_bound = 0; /* keys that can never pay it within their deficit bound */
    /* Priority is kept over every key together: the higher-priority backlog may be fetched
     * from any of them. */
    struct tb_stats all;
    bool have_all = sp_stats(sp, now, &all) == 0 && all.anchored;
    for (int i = 0; i < n; i++) {
        int k = order[i];
        struct sp_key *key = &sp->keys[k];
        struct shm_tokens *tb = bucket(sp, k);
        int64_t minute = tb->minute_ns;
        int64_t cost = tb_cost_estimate(tb, job->spec.kind, job->spec.units);
        if (cost < job->spec.least_tokens)
            cost = job->spec.least_tokens;
        if (cost < 0)
            cost = 0;
        ks_mark_active(&key->ks, key->member, sp->owner, now, now + SP_ACTIVE_MINUTES * minute);
        struct tb_stats st;
        tb_stats(tb, now, &st);
        int64_t w = INT64_MAX;
        if (have_all && job->spec.prio != SP_PRIO_COMMIT) {
            int64_t floor = priority_floor(sp, tb, job->spec.prio, cost, &all);
            if (floor > 0 && all.projected_tokens - cost < floor) {
                w = time_of_balance(tb, &all, floor + cost);
                refused = false;
            }
        }
        if (w == INT64_MAX && !ks_share_ok(&key->ks, key->member, sp->owner, now, &w))
            refused = false;
        if (w == INT64_MAX) {
            int rc = job->spec.within_deficit
                         ? tb_reserve_within(tb, now, cost, (int64_t)getpid(), &job->grant, &w)
                         : tb_reserve(tb, now, cost, (int64_t)getpid(), &job->grant, &w);
            if (rc == -EDQUOT) {
                over_bound++;
                snprintf(why, whylen,
                         "not sent: it costs %lld tokens, more than a bucket of %lld (%lld a "
                         "minute) can pay within the deficit bound of %lld ([tokens] "
                         "max_deficit)",
                         (long long)cost, (long long)st.cap_tokens, (long long)st.refill_rate,
                         (long long)st.max_deficit_tokens);
                continue;
            }
            if (rc == 0) {
                ks_account(&key->ks, key->member, sp->owner, cost, 0, 0);
                shm_counter_add(counters(sp), SHM_C_tokens_reserved, cost);
                shm_gauge_set(counters(sp), SHM_C_tokens_projected, st.projected_tokens - cost);
                return k;
            }
            if (rc == -EAGAIN) {
                refused = false;
                if (!key->status_call_in_flight && tb_needs_reading(tb, now) &&
                    tb_claim_status_call(tb, now) == 0)
                    status_call(sp, k);
                if (w <= now)
                    w = now + SP_SLOT_RETRY_MS * KD_NS_PER_MS;
            } else if (rc == -ENOSPC) {
                refused = false;
                ks_sweep(&key->ks, now, SP_SWEEP_NS); /* a dead process's slots, if any */
                w = now + SP_SLOT_RETRY_MS * KD_NS_PER_MS;
            } else {
                kd_error("token reservation of %lld tokens refused by key %.8s's bucket: %s",
                         (long long)cost, key->ks.fingerprint, strerror(-rc));
                continue;
            }
        }
        /* Waiting for this key: the instance has work for it until then, and a little after. */
        ks_mark_active(&key->ks, key->member, sp->owner, now, w + minute);
        *wake = min64(*wake, w);
    }
    if (over_bound > 0 && over_bound == n)
        return -EDQUOT; /* no refill of any key makes it affordable: nothing to wait for */
    if (!refused && *wake == INT64_MAX)
        *wake = now + SP_SLOT_RETRY_MS * KD_NS_PER_MS;
    return refused ? -EINVAL : -EAGAIN;
}

/* Builds and sends JOB with its grant on key K. */
static void send_job(struct spend *sp, struct sp_job *job, int k, int64_t now)
{
    struct sp_key *key = &sp->keys[k];
    job->key = k;
    struct kp_call call;
    memset(&call, 0, sizeof(call));
    int rc = job->spec.build(&call, job->spec.cbs.ud);
    if (rc == 0) {
        call.key_index = (unsigned)k;
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
        /* Never sent: the reservation goes back whole. */
        tb_settle(bucket(sp, k), &job->grant, now, 0);
        ks_account(&key->ks, key->member, sp->owner, -job->grant.cost_tokens, 0, 0);
        finish_unsent(job, KP_PERMANENT, "request could not be built or submitted");
        return;
    }
    job->tries++;
    if (job->spec.units > 0 && job->spec.kind != TB_KIND_DEAL_PAGE)
        shm_hist_record(counters(sp), SHM_C_batch_asins, (uint64_t)job->spec.units);
    sp->in_flight++;
}

static void pump(struct spend *sp)
{
    if (sp->closing || sp->client == NULL)
        return;
    if (usable_keys(sp) == 0) {
        /* Nothing is sent any more: the queued jobs end now, keeping their items. */
        if (!sp->key_unusable) {
            sp->key_unusable = true;
            shm_gauge_set(counters(sp), SHM_C_key_unusable, 1);
        }
        uv_timer_stop(&sp->wait_timer);
        set_waiting(sp, false);
        struct sp_job *job;
        while ((job = pop_front(sp)) != NULL)
            finish_unsent(job, KP_KEY_UNUSABLE, "every API key is unusable (set aside)");
        return;
    }
    while (sp->head != NULL && sp->in_flight < sp->max_in_flight) {
        struct sp_job *job = sp->head;
        int64_t now = kd_mono_ns();
        int64_t wake = 0;
        char why[256] = "token reservation refused";
        int k = grant(sp, job, now, &wake, why, sizeof(why));
        if (k == -EAGAIN) {
            wait_until(sp, wake);
            return;
        }
        pop_front(sp);
        if (k < 0) {
            finish_unsent(job, KP_PERMANENT, why);
            continue;
        }
        set_waiting(sp, false);
        send_job(sp, job, k, now);
    }
    if (sp->head == NULL)
        set_waiting(sp, false);
}

/* ---- life ------------------------------------------------------------------------------- */

static void close_keys(struct spend *sp)
{
    for (unsigned k = 0; k < sp->n_keys; k++) {
        struct sp_key *key = &sp->keys[k];
        if (key->joined)
            ks_leave(&key->ks, key->member, sp->owner);
        ks_close(&key->ks);
    }
    sp->n_keys = 0;
    sp->tb = NULL;
}

/* Opens the bucket segment of every key of WK and finds (or joins) this instance's member. */
static int open_keys(struct spend *sp, struct wk *wk, char *err, size_t errlen)
{
    const struct shm_layout *l = wk->seg.layout;
    const char *instance = l->header.instance;
    struct tb_params tp = {.bucket_minutes = wk->cfg.tokens_bucket_minutes,
                           .max_deficit_tokens = wk->cfg.tokens_max_deficit,
                           .minute_ns = wk->cfg.tokens_minute_ms * KD_NS_PER_MS};
    int64_t now = kd_mono_ns();
    uint32_t n_refs = atomic_load(&l->n_keys);
    for (size_t i = 0; i < wk->keys.n && i < KD_KEYS_MAX; i++) {
        struct sp_key *key = &sp->keys[i];
        char fp[KD_KEY_FP_LEN + 1];
        int rc = kd_key_fingerprint(wk->keys.key[i], fp);
        if (rc != 0) {
            kd_seterr(err, errlen, "cannot compute the fingerprint of API key %zu", i + 1);
            return rc;
        }
        rc = ks_open(&key->ks, fp, &tp, err, errlen);
        if (rc != 0)
            return rc;
        sp->n_keys = (unsigned)i + 1;
        key->ref = -1;
        for (uint32_t r = 0; r < n_refs && r < SHM_KEYS_MAX; r++)
            if (strncmp(l->keys[r].fingerprint, fp, sizeof(l->keys[r].fingerprint)) == 0)
                key->ref = (int)r;
        key->member = ks_find(&key->ks, instance, sp->owner);
        if (key->member < 0) {
            key->member = ks_join(&key->ks, instance, sp->owner, wk->cfg.tokens_weight, now);
            key->joined = key->member >= 0;
            if (key->member < 0)
                kd_warn("key %.8s: no member slot for instance '%s' (%s): it spends without a "
                        "share",
                        fp, instance, strerror(-key->member));
        }
        key_usable(sp, (int)i); /* picks up a set-aside state of the instance */
    }
    sp->tb = &sp->keys[0].ks.layout->tokens;
    return 0;
}

int sp_init(struct spend *sp, struct wk *wk, char *err, size_t errlen)
{
    memset(sp, 0, sizeof(*sp));
    sp->wk = wk;
    sp->max_in_flight = SP_MAX_IN_FLIGHT;
    sp->owner = wk->supervisor_pid > 0 ? wk->supervisor_pid : (int64_t)getpid();
    sp->rng = (uint64_t)kd_mono_ns() ^ ((uint64_t)getpid() << 32) ^ 0x9E3779B97F4A7C15ull;
    uv_timer_init(wk->loop, &sp->wait_timer);
    sp->wait_timer.data = sp;
    uv_timer_init(wk->loop, &sp->retry_timer);
    sp->retry_timer.data = sp;
    sp->timers_open = true;
    if (wk->keys.n == 0) {
        snprintf(err, errlen, "no Keepa API key configured: nothing will be fetched");
        return -ENOKEY;
    }
    int rc = open_keys(sp, wk, err, errlen);
    if (rc != 0) {
        close_keys(sp);
        return rc;
    }
    if (usable_keys(sp) == 0) {
        sp->key_unusable = true; /* a predecessor of this worker set every key aside */
        shm_gauge_set(counters(sp), SHM_C_key_unusable, 1);
    }
    rc = kp_global_init();
    if (rc != 0) {
        snprintf(err, errlen, "cannot initialise libcurl");
        close_keys(sp);
        return rc;
    }
    const char *keys[KD_KEYS_MAX];
    for (unsigned k = 0; k < sp->n_keys; k++)
        keys[k] = wk->keys.key[k];
    struct kp_client_opts o;
    memset(&o, 0, sizeof(o));
    o.base_url = wk->cfg.keepa_base_url;
    o.api_keys = keys;
    o.n_keys = sp->n_keys;
    o.max_in_flight = SP_MAX_IN_FLIGHT + sp->n_keys; /* room for the /token calls */
    o.max_tries = 1; /* every attempt is gated here, with a grant of its own */
    o.connect_timeout_ms = wk->cfg.keepa_connect_timeout_ms;
    o.timeout_ms = wk->cfg.keepa_request_timeout_ms;
    o.offers_timeout_ms = wk->cfg.keepa_request_timeout_ms;
    rc = kp_client_new(wk->loop, &o, &sp->client, err, errlen);
    if (rc != 0)
        close_keys(sp);
    return rc;
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
    close_keys(sp);
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
    if (sp->timers_open) {
        uv_timer_stop(&sp->wait_timer);
        uv_timer_stop(&sp->retry_timer);
        if (!uv_is_closing((uv_handle_t *)&sp->wait_timer))
            uv_close((uv_handle_t *)&sp->wait_timer, NULL);
        if (!uv_is_closing((uv_handle_t *)&sp->retry_timer))
            uv_close((uv_handle_t *)&sp->retry_timer, NULL);
    }
    set_waiting(sp, false);
    struct sp_job *job;
    while ((job = pop_front(sp)) != NULL)
        finish_unsent(job, KP_CANCELLED, "cancelled: the worker is stopping");
    while ((job = sp->backoff) != NULL) {
        sp->backoff = job->next;
        sp->in_flight--;
        finish_unsent(job, KP_CANCELLED, "cancelled: the worker is stopping");
    }
    if (sp->client != NULL)
        kp_client_close(sp->client, on_client_closed, sp);
    else
        on_client_closed(sp);
}
