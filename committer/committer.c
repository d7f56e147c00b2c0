/*
 * committer.c: the committer stage (docs/architecture.md, "Processes").
 *
 * Survivors (peek passes, from the scanner) and recommit requests (stored deals the updater
 * wants fully re-fetched) arrive on two rings; both producers wrote them to the `pending` db
 * before pushing, so pending is the durable truth and a ring record only says "look". At
 * start the committer loads every pending record; afterwards it drains the rings (uv_poll on
 * their eventfds plus a safety timer), drops records whose pending entry is already gone
 * (handled before a restart), adds the rest to an in-memory queue deduplicated by ASIN, and
 * acknowledges them: nothing is lost by acknowledging early because pending still holds them.
 *
 * Batches of up to cfg.commit_batch (<= 5) go out through spend (priority COMMIT) as one
 * /product full fetch with live offers and a year of stats; a partial batch lingers at most
 * cfg.commit_linger_ms. The backlog is taken by expected value per token (committer/queue.h:
 * the peek's profit, how far peeks proved right, how likely a deal that old is still there),
 * and a survivor whose deal has most likely vanished is dropped unfetched; each judged
 * survivor teaches the committer how far its peek held (worker/value.h). Each product is
 * judged by the judgement (judge/judge.h) on one live offer, whole (judge/inputs.h). One
 * st_write transaction per batch stores every judged product as a record, deal or not
 * (st_record_put keeps the schedule, history and change log; store/record.h moves its state: a
 * stored deal that fails again follows the updater's expiry rule), records rejections in
 * `seen`, removes what was settled from `pending`, keeps the rest there with attempts + 1, and
 * counts the batch in `meta`. Nothing leaves pending unless its outcome is in the same
 * transaction, so a kill -9 at any point loses no survivor and, LMDB being transactional,
 * corrupts no record.
 *
 * Failures never drop work silently: a failed or cancelled request keeps every item (backoff
 * and retry); a product missing from the answer, without its offers, or garbled (fields of
 * the wrong JSON type: KP_ASIN_MALFORMED, never judged on the fields left absent) is retried
 * up to COMMITTER_GIVE_UP_ATTEMPTS times, then dropped with a warning naming it and why; a
 * request Keepa calls permanently wrong is retried, and dropped (logged with the reason) only
 * after COMMITTER_PERMANENT_LIMIT such answers; a failed store write keeps the batch's results
 * in memory, pauses fetching and retries the write on a timer.
 */
#include "committer/committer.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "committer/queue.h"
#include "base/clock.h"
#include "judge/inputs.h"
#include "judge/rules.h"
#include "base/log.h"
#include "worker/spend.h"
#include "worker/rings.h"
#include "worker/worker.h"
#include "keepa/request.h"
#include "store/record.h"
#include "store/store.h"

#define COMMITTER_GIVE_UP_ATTEMPTS 5
#define COMMITTER_PERMANENT_LIMIT  3
#define COMMITTER_SAFETY_MS        1000
#define COMMITTER_WRITE_RETRY_MS   1000
#define COMMITTER_RESCAN_MS        10000
#define COMMITTER_STATS_DAYS       365

#define META_BATCHES       "committer_batches"
#define META_DEALS         "committer_deals_committed"
#define META_GIVEN_UP      "committer_given_up"
#define META_LAST_BATCH_MS "committer_last_batch_ms"

/* What is learned survives a restart: the peeks' confidence is saved in meta
 * (ST_META_LEARNED_COMMITTER) in a batch's write once this many outcomes are unsaved or this
 * long passed since the last save, and at stop; read back at start. */
#define COMMITTER_SAVE_OBS 16
#define COMMITTER_SAVE_MS  (5 * 60 * 1000)

static const enum shm_ring_id watched[2] = {SHM_RING_SURVIVORS, SHM_RING_RECOMMIT};

enum action { ACT_RETRY = 0, ACT_DEAL, ACT_REJECT, ACT_GIVE_UP, ACT_DROP };

struct entry {
    struct st_key key;
    struct st_pending p;      /* as queued */
    bool got;                 /* the product arrived */
    bool offers_failed;       /* it did, but Keepa could not refresh its offers: retried */
    struct jd_inputs in;      /* what the full fetch read: one live offer, whole */
    struct jd_verdict v;      /* the judgement of it */
    char title[KP_TITLE_MAX]; /* as decoded; the record cuts it at a UTF-8 boundary */
    char category[sizeof(((struct kp_product *)0)->root_category_name)];
    enum action act;
    const char *why; /* retry / give-up reason for the log */
};

struct batch {
    size_t n;
    struct entry e[COMMITTER_MAX_BATCH];
    int64_t now_ms; /* check time (epoch ms) */
    int64_t cost_tokens;
    /* Outcome of the write, recomputed by every run of the write function. */
    unsigned committed, rejected, rechecked, expired, retried, given_up, dropped;
    struct val_conf conf_next; /* the peeks' confidence once this batch is learned */
    size_t n_obs;              /* ... from this many outcomes */
    bool saved;                /* ... saved in the write */
};

struct committer {
    struct wk *wk;
    struct spend sp;
    bool sp_ok; /* sp_init succeeded: jobs may be submitted */
    struct st_env *env;
    struct committer_queue q;
    struct wk_watch watch[2]; /* the rings of `watched` */
    bool ring_broken[2];
    uv_timer_t safety, batch_timer, write_timer, stop_timer;
    int64_t last_rescan_ms; /* last look at `pending` while idle */
    bool in_flight;         /* a job was submitted and its on_done has not run */
    bool write_pending;     /* the batch's results wait for a successful st_write */
    bool closing;
    uint32_t failed_batches; /* consecutive batches whose request failed (any answer) */
    int64_t resume_ms;       /* no new batch before this (mono ms) after failed batches */
    struct jd_rules rules;   /* the judgement's rules (judge/rules.h), renewed on reload */
    uint64_t rules_hash;
    struct val_conf conf;     /* how far the peeks proved right (worker/value.h), learned */
    double found_cents;       /* profit of the deals found from survivors (token_value) */
    size_t learned_unsaved;   /* outcomes learned since the last save of conf */
    int64_t learned_saved_ms; /* mono ms of that save */
    struct batch b;
};

static int64_t mono_ms(void)
{
    return kd_mono_ns() / KD_NS_PER_MS;
}

static void value_model(const struct committer *c, struct committer_value *m);

/* The backlog and what a token buys in acquisition (committer_token_value; the updater's
 * "budget" rule reads it). */
static void publish_backlog(struct committer *c)
{
    shm_gauge_set(c->wk->counters, SHM_C_commit_backlog, (int64_t)c->q.n);
    struct committer_value m;
    value_model(c, &m);
    double spent = (double)(shm_counter_get(&c->wk->seg.layout->counters[SHM_ROLE_SCANNER],
                                            SHM_C_tokens_spent) +
                            shm_counter_get(c->wk->counters, SHM_C_tokens_spent));
    double v = committer_token_value(&c->q, kd_wall_ms(), &m, c->found_cents, spent);
    shm_gauge_set(c->wk->counters, SHM_C_token_value_mc, llround(v * 1000));
}

/* ---------------------------------------------------------------- value per token */

static const struct shm_counter_block *updater_counters(const struct committer *c)
{
    return &c->wk->seg.layout->counters[SHM_ROLE_UPDATER];
}

/*
 * What the backlog is ordered by (committer/queue.h): the vanish rates the updater learned
 * from its re-checks (its gauges; the prior until it published them) and what this process
 * learned of the peeks.
 */
static void value_model(const struct committer *c, struct committer_value *m)
{
    static const enum shm_counter_id half_life[VAL_CLASSES] = {SHM_C_vanish_half_life_fast_min,
                                                               SHM_C_vanish_half_life_mid_min,
                                                               SHM_C_vanish_half_life_slow_min};
    const struct cfg *cfg = &c->wk->cfg;
    memset(m, 0, sizeof(*m));
    m->on = (val_rules(cfg) & VAL_RULE_ORDER) != 0;
    for (int k = 0; k < VAL_CLASSES; k++) {
        int64_t h = shm_counter_get(updater_counters(c), half_life[k]);
        m->lambda[k] = val_lambda_of_half_life(h > 0 ? h : VAL_PRIOR_HALF_LIFE_MIN);
    }
    m->hit = val_conf_hit(&c->conf);
    m->ratio = val_conf_ratio(&c->conf);
    m->minute_ms = cfg->tokens_minute_ms > 0 ? cfg->tokens_minute_ms : CFG_MS_MIN;
    m->offers = cfg->commit_offers;
}

static void publish_value(struct committer *c)
{
    shm_gauge_set(c->wk->counters, SHM_C_peek_hit_bp, llround(val_conf_hit(&c->conf) * 10000));
    shm_gauge_set(c->wk->counters, SHM_C_peek_profit_ratio_bp,
                  llround(val_conf_ratio(&c->conf) * 10000));
}

/*
 * When a newly stored deal is first re-checked: after the interval the updater's value rule
 * gives a typical deal (its gauge), else [update] min_interval; within [min, max] interval.
 * With the "first" rule the updater then moves it by the deal's own claim and the age of its
 * price, which this process does not know (updater/rules.h, updater_first_check_ms).
 */
static int64_t first_check_ms(const struct committer *c)
{
    const struct cfg *cfg = &c->wk->cfg;
    int64_t lo = cfg_keepa_ms(cfg, cfg->update_min_interval_ms);
    int64_t hi = cfg_keepa_ms(cfg, cfg->update_max_interval_ms);
    int64_t typical = shm_counter_get(updater_counters(c), SHM_C_recheck_interval_min);
    if (!(val_rules(cfg) & VAL_RULE_RECHECK) || typical <= 0)
        return lo;
    int64_t ms = cfg_keepa_ms(cfg, typical * CFG_MS_MIN);
    return ms < lo ? lo : ms > hi ? hi : ms;
}

/* Sets the batch's conf_next and n_obs: how far the peeks of its judged survivors held. */
static void conf_after_batch(struct committer *c)
{
    struct batch *b = &c->b;
    struct committer_value m;
    value_model(c, &m);
    b->conf_next = c->conf;
    b->n_obs = 0;
    for (size_t i = 0; i < b->n; i++) {
        const struct entry *e = &b->e[i];
        if ((e->act != ACT_DEAL && e->act != ACT_REJECT) || e->p.source == ST_SOURCE_RECOMMIT)
            continue;
        val_conf_observe(&b->conf_next, e->act == ACT_DEAL,
                         committer_survival(&e->p, b->now_ms, &m), e->p.peek_profit_cents,
                         e->v.priced ? e->v.profit_cents : 0);
        b->n_obs++;
    }
}

static size_t learned_fields(double *nums, struct st_learned_field *f)
{
    f[0] = (struct st_learned_field){"conf", nums, VAL_CONF_NUMS, 8 * VAL_WEIGHT_MAX};
    return 1;
}

/* Inside a write transaction: saves CONF when FORCE, or when the outcomes unsaved after this
 * batch reach COMMITTER_SAVE_OBS or COMMITTER_SAVE_MS passed. Returns 0 or the store's error. */
static int save_learned(struct committer *c, struct st_txn *txn, const struct val_conf *conf,
                        size_t n_obs, bool force)
{
    size_t unsaved = c->learned_unsaved + n_obs;
    if (unsaved == 0 || (!force && unsaved < COMMITTER_SAVE_OBS &&
                         mono_ms() - c->learned_saved_ms < COMMITTER_SAVE_MS))
        return 0;
    double nums[VAL_CONF_NUMS];
    val_conf_pack(conf, nums);
    struct st_learned_field f[1];
    int rc = st_meta_put_learned(txn, ST_META_LEARNED_COMMITTER, f, learned_fields(nums, f));
    if (rc == -EINVAL)
        return 0; /* a number it cannot keep (never seen): the store keeps the last save */
    c->b.saved = rc == 0;
    return rc;
}

/* At start: the confidence a previous run saved, else the prior and one log line. */
static void load_learned(struct committer *c)
{
    double nums[VAL_CONF_NUMS];
    struct st_learned_field f[1];
    size_t nf = learned_fields(nums, f);
    struct st_txn *txn;
    int rc = st_read_begin(c->env, &txn);
    if (rc == 0) {
        rc = st_meta_get_learned(txn, ST_META_LEARNED_COMMITTER, f, nf);
        st_read_end(txn);
    }
    c->learned_saved_ms = mono_ms();
    if (rc == -ENOENT) {
        kd_info("no learned peek confidence in the store: starting from the prior");
        return;
    }
    struct val_conf conf;
    if (rc != 0 || !val_conf_unpack(nums, &conf)) {
        kd_warn("the learned peek confidence in the store (meta %s) is ignored: %s; starting "
                "from the prior",
                ST_META_LEARNED_COMMITTER,
                rc != 0 ? st_strerror(rc) : "numbers no outcome could have taught");
        return;
    }
    c->conf = conf;
    kd_info("learned peek confidence read from the store: hit rate %.2f, profit ratio %.2f",
            val_conf_hit(&conf), val_conf_ratio(&conf));
}

/* Learns from the judged survivors of the batch just stored how far their peeks held. */
static void learn(struct committer *c)
{
    c->conf = c->b.conf_next;
    if (c->b.saved) {
        c->learned_unsaved = 0;
        c->learned_saved_ms = mono_ms();
    } else {
        c->learned_unsaved += c->b.n_obs;
    }
    for (size_t i = 0; i < c->b.n; i++) {
        const struct entry *e = &c->b.e[i];
        if ((e->act != ACT_DEAL && e->act != ACT_REJECT) || e->p.source == ST_SOURCE_RECOMMIT)
            continue;
        if (e->act == ACT_DEAL && e->v.priced && e->v.profit_cents > 0)
            c->found_cents += (double)e->v.profit_cents;
    }
    publish_value(c);
}

static int save_learned_fn(struct st_txn *txn, void *ud)
{
    struct committer *c = ud;
    return save_learned(c, txn, &c->conf, 0, true);
}

static void maybe_start_batch(struct committer *c);
static void finish_stop(struct committer *c);
static void on_write_timer(uv_timer_t *t);
static void try_write(struct committer *c);

/* ---------------------------------------------------------------- intake */

static int load_pending(struct committer *c)
{
    struct st_txn *txn;
    int rc = st_read_begin(c->env, &txn);
    if (rc != 0)
        return rc;
    struct st_cursor *cur;
    rc = st_cursor_open(txn, ST_DB_PENDING, &cur);
    if (rc != 0) {
        st_read_end(txn);
        return rc;
    }
    int64_t now = mono_ms();
    size_t loaded = 0, bad = 0;
    for (;;) {
        struct st_pending p;
        rc = st_cursor_next_pending(cur, &p);
        if (rc == -ENOENT)
            break;
        if (rc == -EBADMSG || rc == -ENOTSUP) { /* the cursor moved past it */
            bad++;
            continue;
        }
        if (rc != 0) {
            kd_error("pending: reading stopped after %zu records: %s", loaded, st_strerror(rc));
            break;
        }
        if (committer_queue_add(&c->q, &p, now) == 1)
            loaded++;
    }
    st_cursor_close(cur);
    st_read_end(txn);
    if (bad > 0)
        kd_warn("pending: %zu records do not decode and are left in place", bad);
    if (loaded > 0 || c->last_rescan_ms == 0)
        kd_info("loaded %zu pending survivors from the store", loaded);
    publish_backlog(c);
    return 0;
}

/* Drains the watched ring into the queue. Returns false once the ring is broken. */
static bool drain_ring(struct wk_watch *w)
{
    struct committer *c = w->ud;
    int idx = w == &c->watch[0] ? 0 : 1;
    struct ring *r = w->ring;
    if (c->ring_broken[idx])
        return false;
    struct st_txn *txn = NULL;
    size_t n = 0, added = 0;
    int64_t now = mono_ms();
    for (;;) {
        const void *rec;
        size_t len;
        int rc = ring_read(r, &rec, &len);
        if (rc == -EAGAIN)
            break;
        if (rc != 0) {
            kd_error("ring %s is corrupt (%s): no longer read; survivors are still taken "
                     "from the pending db at the next start",
                     shm_ring_name(watched[idx]), strerror(-rc));
            c->ring_broken[idx] = true;
            break;
        }
        n++;
        struct st_pending p;
        if (st_pending_decode(rec, len, &p) != 0) {
            kd_warn("ring record of %zu bytes does not decode; skipped (pending holds it)", len);
            continue;
        }
        struct st_key key;
        if (st_pending_key(&p, &key) != 0)
            continue;
        if (committer_queue_find(&c->q, &key) != NULL)
            continue;
        /* Its producer wrote pending before pushing: no pending record means it was
         * committed (or given up) already, e.g. before a restart of this process. */
        if (txn == NULL && st_read_begin(c->env, &txn) != 0)
            txn = NULL;
        struct st_pending stored;
        if (txn != NULL && st_pending_get(txn, &key, &stored) == -ENOENT)
            continue;
        if (committer_queue_add(&c->q, &p, now) == 1)
            added++;
    }
    if (txn != NULL)
        st_read_end(txn);
    if (n > 0) {
        ring_ack(r);
        shm_counter_add(c->wk->counters, SHM_C_ring_records_in, (int64_t)n);
        kd_debug("ring: %zu records, %zu new survivors queued", n, added);
    }
    return !c->ring_broken[idx];
}

static void drain_all(struct committer *c)
{
    for (int i = 0; i < 2; i++)
        wk_watch_serve(&c->watch[i]);
    publish_backlog(c);
}

static void on_ring_wake(struct wk_watch *w)
{
    struct committer *c = w->ud;
    drain_all(c);
    maybe_start_batch(c);
}

static void on_safety(uv_timer_t *t)
{
    struct committer *c = t->data;
    for (int i = 0; i < 2; i++)
        wk_watch_wait_done(&c->watch[i]);
    drain_all(c);
    /* A producer killed between its pending write and its ring push leaves a survivor only
     * in `pending`: with nothing queued, look there again now and then. */
    int64_t now = mono_ms();
    if (c->q.n == 0 && !c->closing && now - c->last_rescan_ms >= COMMITTER_RESCAN_MS) {
        c->last_rescan_ms = now;
        load_pending(c);
    }
    maybe_start_batch(c);
}

/* ---------------------------------------------------------------- the fetch */

static int build_call(struct kp_call *call, void *ud)
{
    struct committer *c = ud;
    const struct cfg *cfg = &c->wk->cfg;
    const char *asins[COMMITTER_MAX_BATCH];
    for (size_t i = 0; i < c->b.n; i++)
        asins[i] = c->b.e[i].p.asin;
    struct kp_product_params pp;
    memset(&pp, 0, sizeof(pp));
    pp.domain = c->b.e[0].p.domain;
    pp.asins = asins;
    pp.n_asins = c->b.n;
    pp.stats_days = COMMITTER_STATS_DAYS;
    pp.history = cfg->commit_history ? KP_YES : KP_NO;
    pp.days = cfg->commit_history && cfg->commit_days > 0 ? (int)cfg->commit_days : 0;
    pp.offers = (int)cfg->commit_offers;
    pp.only_live_offers = KP_YES;
    return kp_call_product(call, &pp);
}

static struct entry *entry_of(struct batch *b, const char *asin)
{
    for (size_t i = 0; i < b->n; i++)
        if (strcmp(b->e[i].p.asin, asin) == 0)
            return &b->e[i];
    return NULL;
}

/* A product may be delivered twice (a retried transfer): judging it again is harmless. */
static int on_product(const struct kp_product *p, void *ud)
{
    struct committer *c = ud;
    struct entry *e = entry_of(&c->b, p->asin);
    if (e == NULL)
        return 0; /* not asked for (KP_ASIN_UNREQUESTED) */
    e->got = true;
    e->offers_failed = p->offers_successful == 0;
    memcpy(e->title, p->title, sizeof(e->title));
    memcpy(e->category, p->root_category_name, sizeof(e->category));
    if (e->offers_failed)
        return 0; /* no offer to buy: asked again, never judged on the rest */
    jd_inputs_from_product(p, &c->rules, kd_wall_ms(), JD_READ_AUTO, &e->in);
    jd_judge(&e->in, &c->rules, &e->v);
    return 0;
}

static int mark_seen(struct st_txn *txn, const struct entry *e, uint8_t verdict)
{
    struct st_seen s;
    if (st_seen_get(txn, &e->key, &s) != 0) {
        memset(&s, 0, sizeof(s));
        s.peek_ms = e->p.peek_ms;
    }
    s.verdict = verdict;
    return st_seen_put(txn, &e->key, &s);
}

static int del_pending(struct st_txn *txn, const struct st_key *key)
{
    int rc = st_pending_del(txn, key);
    return rc == -ENOENT ? 0 : rc;
}

static int meta_add(struct st_txn *txn, const char *name, uint64_t n)
{
    uint64_t v = 0;
    int rc = st_meta_get_u64(txn, name, &v);
    if (rc != 0 && rc != -ENOENT)
        v = 0;
    return st_meta_put_u64(txn, name, v + n);
}

/* The batch's write transaction; may run more than once (map growth), so it only reads
 * the store and the batch and recomputes its tallies. */
static int write_batch(struct st_txn *txn, void *ud)
{
    struct committer *c = ud;
    struct batch *b = &c->b;
    const struct cfg *cfg = &c->wk->cfg;
    b->committed = b->rejected = b->rechecked = b->expired = b->retried = b->given_up = 0;
    b->dropped = 0;
    b->saved = false;
    int rc = 0;
    for (size_t i = 0; i < b->n && rc == 0; i++) {
        const struct entry *e = &b->e[i];
        switch (e->act) {
        case ACT_DEAL:
        case ACT_REJECT: {
            /* Every fully fetched product is kept, deal or not (docs/judgement.md). */
            struct st_record r;
            int g = st_record_get(txn, &e->key, &r);
            if (g == -ENOENT || g == -EBADMSG || g == -ENOTSUP) {
                st_record_init(&r);
                memcpy(r.asin, e->p.asin, sizeof(r.asin));
                r.domain = e->p.domain;
                r.first_seen_ms = b->now_ms;
                r.source = e->p.source;
            } else if (g != 0) {
                rc = g;
                break;
            }
            bool was_deal = r.state == ST_STATE_DEAL || r.state == ST_STATE_FAILING;
            st_record_set_title(&r, e->title, strlen(e->title));
            if (e->category[0] != '\0')
                st_record_set_category(&r, e->category, strlen(e->category));
            r.in = e->in;
            enum st_event ev = st_record_judged(&r, &e->v, c->rules_hash, ST_EV_COMMIT, b->now_ms,
                                                (uint32_t)cfg->update_expire_after_failures,
                                                b->now_ms + first_check_ms(c));
            rc = st_record_put(txn, &r, ev, b->now_ms);
            if (rc == 0 && r.state != ST_STATE_DEAL)
                rc = mark_seen(txn, e, ST_VERDICT_REJECTED);
            if (rc == 0)
                rc = del_pending(txn, &e->key);
            if (r.state == ST_STATE_DEAL)
                b->committed++;
            else if (ev == ST_EV_EXPIRE)
                b->expired++;
            else if (was_deal)
                b->rechecked++;
            else
                b->rejected++;
            break;
        }
        case ACT_GIVE_UP:
            rc = mark_seen(txn, e, ST_VERDICT_ERROR);
            if (rc == 0)
                rc = del_pending(txn, &e->key);
            b->given_up++;
            break;
        case ACT_DROP:
            /* Most likely gone: not fetched. Its `seen` verdict keeps an unchanged feed entry
             * from being peeked again; a changed one is peeked afresh. */
            rc = mark_seen(txn, e, ST_VERDICT_REJECTED);
            if (rc == 0)
                rc = del_pending(txn, &e->key);
            b->dropped++;
            break;
        case ACT_RETRY: {
            struct st_pending p = e->p;
            p.attempts++;
            rc = st_pending_put(txn, &p);
            b->retried++;
            break;
        }
        }
    }
    if (rc == 0)
        rc = meta_add(txn, META_BATCHES, 1);
    if (rc == 0 && b->committed > 0)
        rc = meta_add(txn, META_DEALS, b->committed);
    if (rc == 0 && b->given_up > 0)
        rc = meta_add(txn, META_GIVEN_UP, b->given_up);
    if (rc == 0)
        rc = st_meta_put_u64(txn, META_LAST_BATCH_MS, (uint64_t)b->now_ms);
    if (rc == 0) {
        conf_after_batch(c);
        rc = save_learned(c, txn, &b->conf_next, b->n_obs, false);
    }
    return rc;
}

/* Puts the batch's items back into the queue (not in flight) after a failure. */
static void release_batch(struct committer *c, bool failed, bool permanent)
{
    int64_t now = mono_ms();
    for (size_t i = 0; i < c->b.n; i++) {
        struct committer_item *it = committer_queue_find(&c->q, &c->b.e[i].key);
        if (it == NULL)
            continue;
        it->in_flight = false;
        if (failed) {
            it->failures++;
            it->ready_ms = now + committer_backoff_ms(it->failures, c->wk->cfg.tokens_minute_ms);
        }
        if (permanent)
            it->permanent++;
    }
    c->b.n = 0;
}

/* Applies a committed write to the queue, counters and log. */
static void after_write(struct committer *c)
{
    struct batch *b = &c->b;
    int64_t now = mono_ms();
    learn(c);
    for (size_t i = 0; i < b->n; i++) {
        const struct entry *e = &b->e[i];
        if (e->act == ACT_GIVE_UP)
            kd_warn("commit: giving up on %s after %u attempts (%s); it stays rejected in "
                    "`seen` as an error",
                    e->p.asin, e->p.attempts + 1, e->why ? e->why : "no usable answer");
        if (e->act == ACT_REJECT && e->p.source != ST_SOURCE_RECOMMIT)
            kd_info("commit: %s paid for and not a deal (%s): the peek estimated a profit of "
                    "%lld cents at %lld bp ROI, the full fetch %lld cents at %lld bp, %lld Keepa "
                    "minutes after the peek",
                    e->p.asin, jd_reason(&e->v), (long long)e->p.peek_profit_cents,
                    (long long)e->p.peek_roi_bp, (long long)(e->v.priced ? e->v.profit_cents : 0),
                    (long long)(e->v.priced ? e->v.roi_bp : 0),
                    (long long)((b->now_ms - e->p.peek_ms) / (c->wk->cfg.tokens_minute_ms > 0
                                                                  ? c->wk->cfg.tokens_minute_ms
                                                                  : CFG_MS_MIN)));
        if (e->act != ACT_RETRY) {
            committer_queue_remove(&c->q, &e->key);
            continue;
        }
        struct committer_item *it = committer_queue_find(&c->q, &e->key);
        if (it == NULL)
            continue;
        it->in_flight = false;
        it->p.attempts++;
        it->failures++;
        it->ready_ms = now + committer_backoff_ms(it->failures, c->wk->cfg.tokens_minute_ms);
    }
    struct shm_counter_block *cb = c->wk->counters;
    shm_counter_add(cb, SHM_C_store_writes, 1);
    shm_counter_add(cb, SHM_C_deals_committed, b->committed);
    shm_counter_add(cb, SHM_C_deals_expired, b->expired);
    shm_counter_add(cb, SHM_C_survivors_dropped, b->dropped);
    if (b->dropped > 0 && b->dropped == b->n) {
        kd_info("dropped %u survivors unfetched: their deals have most likely vanished since "
                "their peeks; backlog %zu",
                b->dropped, c->q.n);
        b->n = 0;
        publish_backlog(c);
        return;
    }
    char verdicts[COMMITTER_MAX_BATCH * 40] = "";
    size_t off = 0;
    for (size_t i = 0; i < b->n && off < sizeof(verdicts); i++) {
        const struct entry *e = &b->e[i];
        const char *what = e->act == ACT_DEAL     ? "deal"
                           : e->act == ACT_REJECT ? jd_reason(&e->v)
                           : e->act == ACT_RETRY  ? "retry"
                                                  : "given-up";
        int w = snprintf(verdicts + off, sizeof(verdicts) - off, "%s%s %s", i ? ", " : "",
                         e->p.asin, what);
        off += w > 0 ? (size_t)w : 0;
    }
    kd_info("commit batch of %zu: %lld tokens, %u deals, %u rejected, %u re-checked stored "
            "deals, %u expired, %u to retry, %u given up; backlog %zu [%s]",
            b->n, (long long)b->cost_tokens, b->committed, b->rejected, b->rechecked, b->expired,
            b->retried, b->given_up, c->q.n, verdicts);
    b->n = 0;
    publish_backlog(c);
}

/* Stores the batch's results; on failure keeps them and retries on a timer. */
static void try_write(struct committer *c)
{
    uint64_t map_before = st_map_size(c->env);
    int rc = st_write(c->env, write_batch, c);
    if (st_map_size(c->env) > map_before)
        shm_counter_add(c->wk->counters, SHM_C_store_map_grows, 1);
    if (rc != 0) {
        kd_error("commit: storing a batch of %zu failed: %s; the results stay in memory, "
                 "fetching pauses and the write is retried every %d ms%s",
                 c->b.n, st_strerror(rc), COMMITTER_WRITE_RETRY_MS,
                 rc == -ENOSPC ? " (free disk space)" : "");
        wk_set_error(c->wk, "store write failed: %s", st_strerror(rc));
        c->write_pending = true;
        if (!c->wk->stopping)
            uv_timer_start(&c->write_timer, on_write_timer, COMMITTER_WRITE_RETRY_MS, 0);
        return;
    }
    if (c->write_pending)
        kd_info("commit: the delayed store write succeeded");
    c->write_pending = false;
    after_write(c);
}

static void on_write_timer(uv_timer_t *t)
{
    struct committer *c = t->data;
    try_write(c);
    if (!c->write_pending)
        maybe_start_batch(c);
}

static const struct kp_asin_outcome *outcome_of(const struct kp_result *res, const char *asin)
{
    for (size_t i = 0; i < res->n_asins; i++)
        if (strcmp(res->asins[i].asin, asin) == 0)
            return &res->asins[i];
    return NULL;
}

/* Decides each entry's fate from a 200 answer. */
static void judge(struct committer *c, const struct kp_result *res)
{
    for (size_t i = 0; i < c->b.n; i++) {
        struct entry *e = &c->b.e[i];
        const struct kp_asin_outcome *o = outcome_of(res, e->p.asin);
        enum kp_asin_status st = o != NULL ? o->status : KP_ASIN_MISSING;
        e->why = NULL;
        if (st == KP_ASIN_OK && e->got && !e->offers_failed) {
            /* One instant for the whole answer: the offer was seen when the check was made. */
            e->in.data_ms = c->b.now_ms;
            if (e->in.buy_source == JD_BUY_OFFER)
                e->in.buy_seen_ms = c->b.now_ms;
            e->act = e->v.deal ? ACT_DEAL : ACT_REJECT;
            if (e->act == ACT_REJECT)
                kd_debug("%s%s rejected (%s) %lld ms after its peek: buy %lld (peek %lld), sell "
                         "%lld from %s (peek %lld), profit %lld, roi %lld bp",
                         e->p.asin, e->p.source == ST_SOURCE_RECOMMIT ? " (recommit)" : "",
                         jd_reason(&e->v), (long long)(c->b.now_ms - e->p.peek_ms),
                         (long long)e->v.buy_cents, (long long)e->p.peek_buy_cents,
                         (long long)e->v.sell_cents, jd_basis_name(e->v.basis),
                         (long long)e->p.sell_estimate_cents,
                         (long long)(e->v.priced ? e->v.profit_cents : 0),
                         (long long)(e->v.priced ? e->v.roi_bp : 0));
            continue;
        }
        /* Not answered usably: retried, and counted toward giving up. A MALFORMED product
         * was withheld by the client (e->got is false): its absent fields say nothing. */
        e->why = st == KP_ASIN_OFFERS_FAILED || (e->got && e->offers_failed)
                     ? "Keepa could not refresh its offers"
                 : st == KP_ASIN_MALFORMED ? "Keepa's answer had fields of the wrong JSON type"
                                           : "missing from Keepa's answer";
        e->act = e->p.attempts + 1 >= COMMITTER_GIVE_UP_ATTEMPTS ? ACT_GIVE_UP : ACT_RETRY;
    }
}

/* A 200 that judged nothing of the batch: every product garbled (KP_ASIN_MALFORMED),
 * missing, or without offers. As good as a failed request, and just as paid for. */
static bool judged_nothing(const struct committer *c, const struct kp_result *res)
{
    if (res->code != KP_OK || c->b.n == 0)
        return false;
    for (size_t i = 0; i < c->b.n; i++) {
        const struct entry *e = &c->b.e[i];
        const struct kp_asin_outcome *o = outcome_of(res, e->p.asin);
        if (o != NULL && o->status == KP_ASIN_OK && e->got && !e->offers_failed)
            return false;
    }
    return true;
}

static void on_done(const struct kp_result *res, void *ud)
{
    struct committer *c = ud;
    c->in_flight = false;
    /*
     * A failed request may still have been billed (a malformed or endless 200 is paid for in
     * full, and so is a 200 that judged nothing: every product garbled, missing or without
     * offers), so a Keepa that keeps failing must not be fed the whole backlog in quick
     * succession: the next batch waits a quarter of a Keepa minute, doubling per consecutive
     * failed batch up to two minutes. At most one full fetch per two minutes is then paid
     * for garbage, and a Keepa that recovers is back in use within two minutes.
     */
    bool useless = judged_nothing(c, res);
    if (res->code != KP_FAILED && res->code != KP_PERMANENT && !useless) {
        c->failed_batches = 0;
    } else {
        c->failed_batches++;
        int64_t minute = c->wk->cfg.tokens_minute_ms > 0 ? c->wk->cfg.tokens_minute_ms : 1;
        int64_t pause = (minute / 4 > 0 ? minute / 4 : 1)
                        << (c->failed_batches < 4 ? c->failed_batches - 1 : 3);
        c->resume_ms = mono_ms() + pause;
        if (useless)
            kd_warn("commit batch of %zu: nothing usable in Keepa's answer (%u such batches in a "
                    "row); the next batch waits %lld ms",
                    c->b.n, c->failed_batches, (long long)pause);
    }
    switch (res->code) {
    case KP_OK:
        c->b.cost_tokens = res->reading_valid ? (int64_t)res->reading.tokens_consumed : -1;
        c->b.now_ms = kd_wall_ms();
        judge(c, res);
        try_write(c);
        break;
    case KP_CANCELLED:
        kd_info("commit batch of %zu cancelled; its survivors stay pending", c->b.n);
        release_batch(c, false, false);
        break;
    case KP_KEY_UNUSABLE:
        kd_error("commit batch of %zu refused, the API key is unusable; %zu survivors stay pending",
                 c->b.n, c->q.n);
        release_batch(c, false, false);
        break;
    case KP_PERMANENT: {
        /* Keepa refused the request itself. Retry (the batch may be regrouped); drop only
         * items that got this answer repeatedly, logging why. */
        kd_error("commit batch of %zu refused by Keepa (HTTP %d): %s", c->b.n, res->http_status,
                 res->error);
        release_batch(c, true, true);
        bool drop = false;
        for (size_t i = 0; i < c->q.n; i++)
            drop |= c->q.items[i].permanent >= COMMITTER_PERMANENT_LIMIT;
        if (drop) {
            struct batch *b = &c->b;
            b->n = 0;
            for (size_t i = 0; i < c->q.n && b->n < COMMITTER_MAX_BATCH; i++) {
                struct committer_item *it = &c->q.items[i];
                if (it->permanent < COMMITTER_PERMANENT_LIMIT || it->in_flight)
                    continue;
                struct entry *e = &b->e[b->n++];
                memset(e, 0, sizeof(*e));
                e->key = it->key;
                e->p = it->p;
                e->act = ACT_GIVE_UP;
                e->why = "Keepa refused the request repeatedly";
                it->in_flight = true;
            }
            b->now_ms = kd_wall_ms();
            b->cost_tokens = 0;
            try_write(c);
        }
        break;
    }
    default:
        kd_warn("commit batch of %zu failed (%s, HTTP %d, %u tries): %s; retried later", c->b.n,
                kp_result_name(res->code), res->http_status, res->tries, res->error);
        release_batch(c, true, false);
        break;
    }
    publish_backlog(c);
    if (c->wk->stopping) {
        finish_stop(c);
        return;
    }
    if (!c->closing)
        maybe_start_batch(c);
}

static void on_batch_timer(uv_timer_t *t)
{
    maybe_start_batch(t->data);
}

/*
 * Drops the survivors whose deals have most likely vanished (committer_queue_hopeless), in
 * batches written like fetched ones but without a request. Returns true when a write failed
 * (it is retried on the write timer and nothing else may start).
 */
static bool drop_hopeless(struct committer *c, const struct committer_value *m)
{
    struct st_key keys[COMMITTER_MAX_BATCH];
    size_t n;
    while ((n = committer_queue_hopeless(&c->q, kd_wall_ms(), m, COMMITTER_MAX_BATCH, keys)) > 0) {
        struct batch *b = &c->b;
        memset(b, 0, sizeof(*b));
        for (size_t i = 0; i < n; i++) {
            struct committer_item *it = committer_queue_find(&c->q, &keys[i]);
            struct entry *e = &b->e[b->n++];
            e->key = keys[i];
            e->p = it->p;
            e->act = ACT_DROP;
            it->in_flight = true;
        }
        b->now_ms = kd_wall_ms();
        try_write(c);
        if (c->write_pending)
            return true;
    }
    return false;
}

static void maybe_start_batch(struct committer *c)
{
    if (!c->sp_ok || c->in_flight || c->write_pending || c->closing || c->wk->stopping ||
        c->sp.key_unusable)
        return;
    const struct cfg *cfg = &c->wk->cfg;
    int64_t now = mono_ms();
    if (now < c->resume_ms) {
        uv_timer_start(&c->batch_timer, on_batch_timer, (uint64_t)(c->resume_ms - now), 0);
        return;
    }
    struct committer_value m;
    value_model(c, &m);
    if ((val_rules(cfg) & VAL_RULE_DROP) && drop_hopeless(c, &m))
        return; /* the drop's write failed: it is retried before anything else */
    int64_t oldest = 0;
    size_t ready = committer_queue_ready(&c->q, now, &oldest);
    int64_t batch = cfg->commit_batch;
    if (batch > COMMITTER_MAX_BATCH)
        batch = COMMITTER_MAX_BATCH;
    int64_t wait =
        committer_batch_wait_ms(ready, oldest, now, batch, cfg->commit_linger_ms, c->wk->stopping);
    if (wait < 0) {
        int64_t next = committer_queue_next_ready(&c->q, now);
        if (next >= 0)
            uv_timer_start(&c->batch_timer, on_batch_timer, (uint64_t)(next - now), 0);
        return;
    }
    if (wait > 0) {
        uv_timer_start(&c->batch_timer, on_batch_timer, (uint64_t)wait, 0);
        return;
    }
    uv_timer_stop(&c->batch_timer);
    struct st_key keys[COMMITTER_MAX_BATCH];
    size_t n = committer_queue_take(&c->q, now, kd_wall_ms(), &m, (size_t)batch, keys);
    struct batch *b = &c->b;
    memset(b, 0, sizeof(*b));
    for (size_t i = 0; i < n; i++) {
        struct committer_item *it = committer_queue_find(&c->q, &keys[i]);
        b->e[i].key = keys[i];
        b->e[i].p = it->p;
    }
    b->n = n;
    /* The peeks' offer counts say what the full fetch costs (worker/value.h): a batch of many
     * offers reserves what it will be charged, not the average, so no request behind it finds
     * the bucket short (a 429). */
    int64_t least = 0;
    for (size_t i = 0; i < n; i++) {
        const struct jd_inputs *in = &b->e[i].p.in;
        least += val_fetch_tokens(in->offers_new >= 0 && in->offers_used >= 0
                                      ? (int64_t)in->offers_new + in->offers_used
                                      : -1,
                                  cfg->commit_offers);
    }
    struct sp_job_spec spec = {
        .kind = TB_KIND_COMMIT,
        .units = (int64_t)n,
        .least_tokens = least,
        .prio = SP_PRIO_COMMIT,
        .build = build_call,
        .cbs = {.on_product = on_product, .on_done = on_done, .ud = c},
    };
    int rc = sp_submit(&c->sp, &spec);
    if (rc != 0) {
        if (rc == -EKEYREJECTED)
            kd_error("commit: the API key is unusable; %zu survivors stay pending", c->q.n);
        else
            kd_error("commit: cannot submit a batch: %s", strerror(-rc));
        release_batch(c, rc != -EKEYREJECTED, false);
        return;
    }
    c->in_flight = true;
}

/* ---------------------------------------------------------------- lifecycle */

static void close_handle(uv_handle_t *h)
{
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

static void finish_stop(struct committer *c)
{
    if (c->closing)
        return;
    c->closing = true;
    if (c->write_pending)
        try_write(c); /* one last try; if it fails the items are still pending in LMDB */
    if (c->learned_unsaved > 0) { /* what the last batches taught, kept for the next start */
        int rc = st_write(c->env, save_learned_fn, c);
        if (rc != 0)
            kd_warn("stop: saving the learned peek confidence failed (%s); the next start uses "
                    "the last save",
                    st_strerror(rc));
    }
    for (int i = 0; i < 2; i++)
        wk_watch_close(&c->watch[i]);
    close_handle((uv_handle_t *)&c->safety);
    close_handle((uv_handle_t *)&c->batch_timer);
    close_handle((uv_handle_t *)&c->write_timer);
    close_handle((uv_handle_t *)&c->stop_timer);
    sp_close(&c->sp, wk_stop_cb, c->wk);
}

static void on_stop_deadline(uv_timer_t *t)
{
    struct committer *c = t->data;
    kd_warn("stop deadline: cancelling the commit batch in flight (its survivors stay pending)");
    finish_stop(c);
}

static void on_stop(struct wk *wk)
{
    struct committer *c = wk->data;
    uv_timer_stop(&c->batch_timer);
    uv_timer_stop(&c->safety);
    /* Our batch is the spender's only job: queued (waiting for tokens) it is cancelled at
     * once by sp_close, keeping its items; sent, it is awaited. */
    if (c->in_flight && c->sp.head == NULL && c->sp.in_flight > 0) {
        /* Finish the batch in flight, within most of the supervisor's deadline (stopped last,
         * after the updater, which waits at most a quarter of it). */
        int64_t ms = wk->cfg.daemon_stop_timeout_ms * 2 / 3;
        kd_info("stopping after the commit batch in flight (at most %lld ms)", (long long)ms);
        uv_timer_start(&c->stop_timer, on_stop_deadline, (uint64_t)(ms > 0 ? ms : 1), 0);
        return;
    }
    finish_stop(c);
}

static void on_reload(struct wk *wk)
{
    struct committer *c = wk->data;
    jd_rules_from_cfg(&wk->cfg, &c->rules);
    c->rules_hash = jd_rules_hash(&c->rules);
    kd_info("reload: commit batch %lld, linger %lld ms, offers %lld",
            (long long)wk->cfg.commit_batch, (long long)wk->cfg.commit_linger_ms,
            (long long)wk->cfg.commit_offers);
    maybe_start_batch(c);
}

static int on_start(struct wk *wk)
{
    struct committer *c = wk->data;
    c->wk = wk;
    jd_rules_from_cfg(&wk->cfg, &c->rules);
    c->rules_hash = jd_rules_hash(&c->rules);
    committer_queue_init(&c->q);
    val_conf_init(&c->conf);
    int rc = wk_store_open(wk, &c->env);
    if (rc != 0)
        return rc;
    load_learned(c);
    publish_value(c);

    char err[256];
    rc = sp_init(&c->sp, wk, err, sizeof(err));
    if (rc == 0) {
        c->sp_ok = true;
    } else {
        kd_error("%s; the committer idles (survivors stay pending)", err);
        wk_set_error(wk, "%s", err);
    }
    uv_timer_init(wk->loop, &c->safety);
    uv_timer_init(wk->loop, &c->batch_timer);
    uv_timer_init(wk->loop, &c->write_timer);
    uv_timer_init(wk->loop, &c->stop_timer);
    c->safety.data = c->batch_timer.data = c->write_timer.data = c->stop_timer.data = c;
    for (int i = 0; i < 2; i++)
        wk_watch_start(&c->watch[i], wk, watched[i], drain_ring, on_ring_wake, c);
    uv_timer_start(&c->safety, on_safety, COMMITTER_SAFETY_MS, COMMITTER_SAFETY_MS);

    if (load_pending(c) != 0)
        kd_error("cannot read the pending db; survivors arrive from the rings only");
    drain_all(c);
    kd_info("ready: %zu survivors queued", c->q.n);
    maybe_start_batch(c);
    return 0;
}

static void on_release(struct wk *wk)
{
    struct committer *c = wk->data;
    st_close(c->env);
    committer_queue_free(&c->q);
}

const struct wk_stage committer_stage = {
    .name = "committer",
    .role = SHM_ROLE_COMMITTER,
    .state_size = sizeof(struct committer),
    .start = on_start,
    .stop = on_stop,
    .reload = on_reload,
    .release = on_release,
};
