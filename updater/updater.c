/*
 * updater.c: the updater stage: light re-checks of stored deals, free refreshes
 * from the scanner, recommit requests to the committer, and expiry. Rules: updater/rules.h.
 *
 * One loop, one batch in flight. A tick (timer) publishes the updates_due gauge, drains the
 * REFRESH ring, pushes queued RECOMMIT records and, when no batch is in flight, takes up to
 * [update] batch due deals of one domain from the schedule (stalest first) and hands a
 * TB_KIND_UPDATE job to spend. When the answer is complete, one st_write applies it: every
 * deal is re-read inside the transaction (the committer or a scanner refresh may have
 * rewritten it meanwhile), refreshed or counted as a failed check, rescheduled or expired, and
 * recommit requests are written to `pending` in the same transaction; only then are they
 * pushed on the RECOMMIT ring (the ring is a notification, pending is the truth). Every
 * re-check of a shown deal teaches how fast deals vanish (worker/value.h: the learned rates,
 * published for `kdeals stat` and the other stages), and with them the value rule sets each
 * deal's next re-check (updater/rules.h); deals falling due soon ride along in a batch. With
 * the "first" rule the updater also follows the store's change log for the deals the committer
 * stores, and moves each one's first re-check to where a passing re-check at its full fetch
 * would have placed it (updater_first_check_ms; no tokens, no history entry).
 *
 * Invariants (docs/failure-modes.md F10 and F20, "stale deals deleted while ingestion was
 * stalled"): a failed, cancelled or suspect fetch writes nothing: the deals keep their failure
 * counts and stay due, and the next attempt waits for a backoff; a batch whose write failed
 * (disk full) is kept in memory and written again before anything new is spent; no deal is
 * ever expired by a timer, nor on a product answered with fields of the wrong JSON type
 * (KP_ASIN_MALFORMED: not checked, stays due). A multi-ASIN answer without any product is
 * suspect and is narrowed down one ASIN at a time before anything counts as "not returned"; a
 * request Keepa refuses (400) is narrowed down the same way and the one deal it is refused for
 * is set aside for a while (still due, uncounted), so it cannot block the deals behind it.
 *
 * Stop: TERM while a request is on the wire waits for its answer and its write; a job still
 * waiting for tokens is cancelled (its deals simply stay due).
 */
#include "updater/updater.h"

#include <errno.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/kd_assert.h"
#include "base/log.h"
#include "worker/spend.h"
#include "worker/rings.h"
#include "worker/worker.h"
#include "keepa/request.h"
#include "store/store.h"
#include "judge/inputs.h"
#include "judge/rules.h"
#include "updater/rules.h"

#define UPDATER_BATCH_MAX      50
#define UPDATER_DUE_COUNT_MAX  4096 /* updates_due is exact up to this many */
#define UPDATER_STALE_MAX      64
#define UPDATER_SAFETY_MS      1000 /* tick at least this often (new deals, ring safety) */
#define UPDATER_WRITE_RETRY_MS 5000 /* after a failed store write (disk full) */
#define UPDATER_REFRESH_CHUNK  64   /* ring records applied per write transaction */
#define UPDATER_PUSH_MAX       256  /* recommit records waiting for room in the ring */
#define UPDATER_SET_ASIDE_MAX  64   /* deals whose request Keepa refuses as malformed */
#define UPDATER_REJUDGE_CHUNK  256  /* records judged again (or pruned) per write transaction */
#define UPDATER_PRUNE_EVERY_MS (10 * 60 * 1000) /* a pruning walk this often (Keepa time) */
#define UPDATER_FIRST_MAX      64 /* new deals whose first re-check is placed per write */
#define UPDATER_SAVE_OBS       32 /* the learned rates are saved once this many are unsaved, */
#define UPDATER_SAVE_MS        (5 * 60 * 1000) /* or this long after the last save */

struct upd_item {
    struct st_key key;
    char asin[ST_ASIN_LEN + 1];
    bool returned;
    enum updater_check check;
    struct jd_inputs fresh; /* the light read (no offers) */
};

/* What one re-check of a shown deal said about how fast deals vanish. */
struct upd_obs {
    int cls;            /* val_class */
    bool vanished;      /* the check failed */
    double elapsed_min; /* Keepa minutes since the deal was last seen a deal */
    double from_age_min, to_age_min, vanish_age_min; /* its price's ages (-1 unknown) */
    double root; /* its claim on the re-check budget after the check (0: not shown) */
};

#define UPDATER_OBS_MAX 64 /* >= UPDATER_BATCH_MAX and UPDATER_REFRESH_CHUNK */

/* Tallies of one write (reset at the start of each run of the write function). */
struct upd_tally {
    size_t refreshed, volatile_, failed, missing, expired, recommits, gone, offers_gone;
    size_t n_obs;
    struct upd_obs obs[UPDATER_OBS_MAX];
    bool saved; /* the write saved the learned rates, these observations learned */
};

struct updater {
    struct wk *wk;
    struct st_env *env;
    struct spend sp;
    bool sp_ready;
    bool key_unusable;
    bool closing;
    bool stop_after_batch;
    uv_timer_t tick;
    struct wk_watch refresh_watch;
    struct st_sched_entry *due; /* UPDATER_DUE_COUNT_MAX entries */

    /* The batch: submitted (active), answered but not yet stored (unwritten). */
    bool batch_active;
    bool batch_unwritten;
    size_t n;
    unsigned domain;
    struct upd_item items[UPDATER_BATCH_MAX];
    enum kp_result_code code;
    double cost_tokens;
    int64_t batch_now_ms;
    unsigned fetch_failures;
    int64_t retry_at_ns;
    bool probe_single; /* the last answer was suspect: next batch asks for one ASIN */

    /*
     * A deal whose request alone Keepa refused (400): set aside (in memory) until the time
     * given, so one bad deal cannot block every deal behind it. It stays due and its failure
     * count is untouched: a refused request is no check.
     */
    size_t n_aside;
    struct {
        struct st_key key;
        int64_t until_ns;
    } aside[UPDATER_SET_ASIDE_MAX];

    size_t n_stale;
    struct st_sched_entry stale[UPDATER_STALE_MAX];

    /* Refreshes read from the ring, applied in one transaction. */
    size_t n_refresh;
    struct st_pending refresh[UPDATER_REFRESH_CHUNK];
    int64_t refresh_retry_at_ns;

    /* Recommit records stored in pending, waiting to be pushed on the ring; push_base marks
     * where the records of the write transaction being tried begin. */
    struct wk_backlog recommit_out;
    size_t push_base;
    bool push_overflow_logged;

    struct upd_tally tally;

    /* The judgement's rules (judge/rules.h), renewed on reload. */
    struct jd_rules rules;
    uint64_t rules_hash;

    /* Value per token (worker/value.h): how fast shown deals vanish, learned from the
     * re-checks, all and by class; the mean claim of a shown deal on the re-check budget; the
     * scheduled records at the last look. */
    struct val_rate vanish, vanish_cls[VAL_CLASSES];
    struct val_age vanish_age; /* the hazard by the age of the deal's price ("age" rule) */
    bool keepa_offset_known;   /* the Keepa minute now: clock_ms / minute + keepa_offset_min, */
    double keepa_offset_min;   /* the latest lastUpdate or lastPriceChange any answer showed */
    double mean_root;
    int64_t n_scheduled;
    /* What is learned survives a restart: the rates are saved in meta (ST_META_LEARNED_UPDATER)
     * in the write of a batch once UPDATER_SAVE_OBS observations are unsaved or UPDATER_SAVE_MS
     * passed since the last save, and at stop; read back at start. */
    size_t learned_unsaved;
    int64_t learned_saved_ns;

    /*
     * Re-judge: every record judged under other rules is judged again from its stored inputs,
     * a chunk per write transaction, walking the products db from rejudge_from. Pruning of old
     * rejected records rides along the same walk.
     */
    bool rejudge_active;
    bool rejudge_report; /* a reload's walk: its outcome is published for the CLI */
    struct st_key rejudge_from;
    bool rejudge_from_set;
    size_t rejudge_n;
    struct st_key rejudge_keys[UPDATER_REJUDGE_CHUNK];
    struct st_record *rejudge_before; /* UPDATER_REJUDGE_CHUNK records: the chunk as it was */
    struct {
        int64_t records, before, after, added, removed, pruned;
        int64_t removed_by[JD_C_COUNT];
    } rj;
    int64_t prune_next_ns; /* next walk for pruning alone */

    /*
     * The "first" rule: the change log is followed from changes_seq for the deals the
     * committer stores; each one's first re-check is placed as a passing re-check's would be
     * (updater_first_check_ms), in one write per chunk. A deal rewritten since (another
     * revision) is left to whoever rewrote it.
     */
    bool changes_known;
    uint64_t changes_seq;
    size_t n_first;
    struct {
        struct st_key key;
        uint64_t revision;
    } first[UPDATER_FIRST_MAX];
    struct updater_clock clock; /* every time the updater reads or stores (updater/rules.h) */
};

static void step(struct updater *u);

static int64_t now_ns(void)
{
    return kd_mono_ns();
}

/* Wall time as the updater keeps it: a step of the system clock does not move it. */
static int64_t clock_ms(const struct updater *u)
{
    return updater_clock_now_ms(&u->clock, kd_mono_ns() / KD_NS_PER_MS);
}

static void on_tick(uv_timer_t *t)
{
    step(t->data);
}

static void arm(struct updater *u, int64_t ms)
{
    if (u->closing || u->stop_after_batch)
        return; /* stopping: the timer holds the stop deadline */
    uv_timer_start(&u->tick, on_tick, (uint64_t)(ms < 0 ? 0 : ms), 0);
}

static struct shm_counter_block *counters(struct updater *u)
{
    return u->wk->counters;
}

/* Runs FN in one write transaction and keeps the store counters. */
static int store_write(struct updater *u, int (*fn)(struct st_txn *, void *))
{
    uint64_t map_before = st_map_size(u->env);
    int rc = st_write(u->env, fn, u);
    if (st_map_size(u->env) > map_before)
        shm_counter_add(counters(u), SHM_C_store_map_grows, 1);
    if (rc == 0)
        shm_counter_add(counters(u), SHM_C_store_writes, 1);
    return rc;
}

static void store_failed(struct updater *u, const char *what, int rc)
{
    if (rc == -ENOSPC)
        kd_error("store %s: disk full (%s); the work is kept in memory and written again in "
                 "%d ms; free space on the store's disk",
                 u->wk->cfg.store_path, st_strerror(rc), UPDATER_WRITE_RETRY_MS);
    else
        kd_error("store %s: writing %s failed: %s; retrying in %d ms", u->wk->cfg.store_path, what,
                 st_strerror(rc), UPDATER_WRITE_RETRY_MS);
    wk_set_error(u->wk, "store write failed (%s): %s", what, st_strerror(rc));
}

/* ---- value per token ---------------------------------------------------------------------- */

/* The policy now: the config's, the vanish rates learned so far and the budget's scale. */
static void policy(struct updater *u, struct updater_policy *pol)
{
    updater_policy_from_cfg(&u->wk->cfg, pol);
    for (int k = 0; k < VAL_CLASSES; k++)
        pol->lambda[k] = val_class_lambda(&u->vanish_cls[k], &u->vanish);
    pol->age = &u->vanish_age;
    pol->keepa_offset_known = u->keepa_offset_known;
    pol->keepa_offset_min = u->keepa_offset_min;
    struct tb_stats st;
    double checks = 0;
    if (u->sp_ready && tb_stats(u->sp.tb, now_ns(), &st) == 0 && st.anchored && st.cap_tokens > 0) {
        /* Tokens a re-check costs, as learned for a full batch. */
        int64_t batch = tb_cost_estimate(u->sp.tb, TB_KIND_UPDATE, UPDATER_BATCH_MAX);
        double per_check = batch > 0 ? (double)batch / UPDATER_BATCH_MAX : 1.0;
        if (per_check < 1.0)
            per_check = 1.0;
        double fill = (double)st.projected_tokens / (double)st.cap_tokens;
        double tokens;
        if (val_rules(&u->wk->cfg) & VAL_RULE_BUDGET) {
            /* What a token buys in acquisition, as the committer last published it. */
            int64_t mc = shm_counter_get(&u->wk->seg.layout->counters[SHM_ROLE_COMMITTER],
                                         SHM_C_token_value_mc);
            tokens =
                updater_marginal_budget((double)u->n_scheduled * u->mean_root, (double)mc / 1000.0,
                                        UPDATER_ACT_MIN, per_check, st.refill_rate, fill);
        } else {
            tokens = updater_recheck_budget(st.refill_rate, fill);
        }
        checks = tokens / per_check;
        if (st.refill_rate > 0)
            shm_gauge_set(counters(u), SHM_C_recheck_budget_bp,
                          llround(tokens / (double)st.refill_rate * 10000));
    }
    pol->scale_min = updater_value_scale(u->n_scheduled, u->mean_root, checks);
}

static void publish_value(struct updater *u)
{
    static const enum shm_counter_id half_life[VAL_CLASSES] = {SHM_C_vanish_half_life_fast_min,
                                                               SHM_C_vanish_half_life_mid_min,
                                                               SHM_C_vanish_half_life_slow_min};
    struct shm_counter_block *cb = counters(u);
    shm_gauge_set(cb, SHM_C_vanish_half_life_min, val_half_life_min(val_rate_lambda(&u->vanish)));
    for (int k = 0; k < VAL_CLASSES; k++)
        shm_gauge_set(cb, half_life[k],
                      val_half_life_min(val_class_lambda(&u->vanish_cls[k], &u->vanish)));
    struct updater_policy pol;
    policy(u, &pol);
    /* A typical deal: one whose claim on the budget is the mean claim (0: not known yet). */
    int64_t min = 0;
    if (pol.value_intervals && u->mean_root > 0 && pol.scale_min > 0) {
        double t = pol.scale_min / u->mean_root * (double)pol.minute_ms;
        int64_t ms = t <= (double)pol.min_interval_ms   ? pol.min_interval_ms
                     : t >= (double)pol.max_interval_ms ? pol.max_interval_ms
                                                        : (int64_t)t;
        min = ms / (pol.minute_ms > 0 ? pol.minute_ms : 1);
    }
    shm_gauge_set(cb, SHM_C_recheck_interval_min, min);
}

/* The rates learned: of all shown deals, by class, by the age of their price. */
struct upd_learned {
    struct val_rate all, cls[VAL_CLASSES];
    struct val_age age;
};

/* Teaches L the observations of tally T. */
static void observe(struct upd_learned *l, const struct upd_tally *t)
{
    for (size_t i = 0; i < t->n_obs; i++) {
        const struct upd_obs *o = &t->obs[i];
        val_rate_observe(&l->all, o->vanished, o->elapsed_min);
        val_rate_observe(&l->cls[o->cls], o->vanished, o->elapsed_min);
        if (o->from_age_min >= 0 && o->to_age_min >= o->from_age_min)
            val_age_observe(&l->age, o->from_age_min, o->to_age_min, o->vanished,
                            o->vanish_age_min);
    }
}

static void learned_get(const struct updater *u, struct upd_learned *l)
{
    l->all = u->vanish;
    memcpy(l->cls, u->vanish_cls, sizeof(l->cls));
    l->age = u->vanish_age;
}

static void learned_set(struct updater *u, const struct upd_learned *l)
{
    u->vanish = l->all;
    memcpy(u->vanish_cls, l->cls, sizeof(u->vanish_cls));
    u->vanish_age = l->age;
}

/* The learned record's numbers (store/codec.h): the rates packed, the age table as it is. */
struct upd_learned_nums {
    double rate[(1 + VAL_CLASSES) * VAL_RATE_NUMS];
    double age_vanished[VAL_AGE_BINS], age_exposure_min[VAL_AGE_BINS];
};

static size_t learned_fields(struct upd_learned_nums *n, struct st_learned_field *f)
{
    /* Coarse bounds (twice what observing reaches); val_*_unpack checks the rest. */
    f[0] = (struct st_learned_field){"rate", n->rate, KD_ARRAY_LEN(n->rate),
                                     2 * VAL_WEIGHT_MAX * VAL_ELAPSED_MAX_MIN};
    f[1] =
        (struct st_learned_field){"age_vanished", n->age_vanished, VAL_AGE_BINS, 2 / VAL_AGE_DECAY};
    f[2] = (struct st_learned_field){"age_exposure_min", n->age_exposure_min, VAL_AGE_BINS,
                                     2 * VAL_ELAPSED_MAX_MIN / VAL_AGE_DECAY};
    return 3;
}

/*
 * Inside a write transaction: saves the rates as they stand once this write's observations
 * are learned, when UPDATER_SAVE_OBS observations would be unsaved, UPDATER_SAVE_MS passed
 * since the last save, or FORCE (at stop). It rides on a write the batch makes anyway: no
 * fsync of its own. Returns 0 or the store's error.
 */
static int save_learned(struct updater *u, struct st_txn *txn, bool force)
{
    size_t unsaved = u->learned_unsaved + u->tally.n_obs;
    if (unsaved == 0 || (!force && unsaved < UPDATER_SAVE_OBS &&
                         now_ns() - u->learned_saved_ns < (int64_t)UPDATER_SAVE_MS * KD_NS_PER_MS))
        return 0;
    struct upd_learned l;
    learned_get(u, &l);
    observe(&l, &u->tally);
    struct upd_learned_nums n;
    val_rate_pack(&l.all, n.rate);
    for (int k = 0; k < VAL_CLASSES; k++)
        val_rate_pack(&l.cls[k], n.rate + (k + 1) * VAL_RATE_NUMS);
    memcpy(n.age_vanished, l.age.vanished, sizeof(n.age_vanished));
    memcpy(n.age_exposure_min, l.age.exposure_min, sizeof(n.age_exposure_min));
    struct st_learned_field f[3];
    int rc = st_meta_put_learned(txn, ST_META_LEARNED_UPDATER, f, learned_fields(&n, f));
    if (rc == -EINVAL)
        return 0; /* a number it cannot keep (never seen): the store keeps the last save */
    u->tally.saved = rc == 0;
    return rc;
}

/*
 * At start: the rates a previous run saved, unless the record is missing, of another
 * version, damaged or holds numbers no observing makes: then the prior, and one log line.
 */
static void load_learned(struct updater *u)
{
    struct upd_learned_nums n;
    struct st_learned_field f[3];
    size_t nf = learned_fields(&n, f);
    struct st_txn *txn;
    int rc = st_read_begin(u->env, &txn);
    if (rc == 0) {
        rc = st_meta_get_learned(txn, ST_META_LEARNED_UPDATER, f, nf);
        st_read_end(txn);
    }
    if (rc == -ENOENT) {
        kd_info("no learned vanish rates in the store: starting from the prior (a half-life of "
                "%d Keepa minutes)",
                VAL_PRIOR_HALF_LIFE_MIN);
        return;
    }
    struct upd_learned l;
    bool ok = rc == 0 && val_rate_unpack(n.rate, &l.all);
    for (int k = 0; ok && k < VAL_CLASSES; k++)
        ok = val_rate_unpack(n.rate + (k + 1) * VAL_RATE_NUMS, &l.cls[k]);
    if (ok) {
        memcpy(l.age.vanished, n.age_vanished, sizeof(l.age.vanished));
        memcpy(l.age.exposure_min, n.age_exposure_min, sizeof(l.age.exposure_min));
        ok = val_age_valid(&l.age);
    }
    if (!ok) {
        kd_warn("the learned vanish rates in the store (meta %s) are ignored: %s; starting from "
                "the prior (a half-life of %d Keepa minutes)",
                ST_META_LEARNED_UPDATER,
                rc != 0 ? st_strerror(rc) : "numbers no re-check could have taught",
                VAL_PRIOR_HALF_LIFE_MIN);
        return;
    }
    learned_set(u, &l);
    kd_info("learned vanish rates read from the store: a half-life of %lld Keepa minutes over "
            "%.0f observations",
            (long long)val_half_life_min(val_rate_lambda(&l.all)), l.all.weight);
}

/* Learns from the observations of a committed write. */
static void learn(struct updater *u)
{
    struct upd_learned l;
    learned_get(u, &l);
    observe(&l, &u->tally);
    learned_set(u, &l);
    for (size_t i = 0; i < u->tally.n_obs; i++) {
        const struct upd_obs *o = &u->tally.obs[i];
        if (o->root > 0)
            u->mean_root =
                u->mean_root > 0 ? u->mean_root + (o->root - u->mean_root) / 64 : o->root;
    }
    if (u->tally.saved) {
        u->learned_unsaved = 0;
        u->learned_saved_ns = now_ns();
    } else {
        u->learned_unsaved += u->tally.n_obs;
    }
    if (u->tally.n_obs > 0)
        publish_value(u);
}

/* ---- recommit requests ------------------------------------------------------------------ */

/*
 * Inside a write transaction: stores a recommit request for deal D unless one is pending
 * already, and queues it for the ring. Returns 0 or a negative errno.
 */
static int request_recommit(struct updater *u, struct st_txn *txn, const struct st_key *key,
                            const struct st_record *d, int64_t now_ms)
{
    struct st_pending p;
    int rc = st_pending_get(txn, key, &p);
    if (rc == 0 || rc == -ENOTSUP)
        return 0; /* already waiting for the committer (a newer binary's record is kept) */
    if (rc != -ENOENT && rc != -EBADMSG)
        return rc;
    st_pending_init(&p);
    memcpy(p.asin, d->asin, sizeof(p.asin));
    p.domain = d->domain;
    p.peek_ms = now_ms;
    p.peek_buy_cents = d->in.buy_price_cents;
    p.sell_estimate_cents = d->v.sell_cents;
    p.source = ST_SOURCE_RECOMMIT;
    p.in = d->in;
    p.peek_priced = d->v.priced;
    p.peek_profit_cents = d->v.priced ? d->v.profit_cents : 0;
    p.peek_roi_bp = d->v.priced ? d->v.roi_bp : 0;
    p.peek_max_cost_cents = d->v.max_cost_cents;
    rc = st_pending_put(txn, &p);
    if (rc != 0)
        return rc;
    u->tally.recommits++;
    wk_backlog_add(&u->recommit_out, &p); /* full: it waits in pending for the committer */
    return 0;
}

/* Pushes queued recommit records on the ring until it is full. */
static void push_recommits(struct updater *u)
{
    wk_backlog_flush(&u->recommit_out);
}

/* ---- applying one check to a stored deal ------------------------------------------------ */

/*
 * Inside a write transaction: re-reads the deal KEY and applies CHECK made at NOW_MS.
 * Returns 0 (also when the deal is gone or unreadable) or a negative errno to abort.
 */
static int apply_check(struct updater *u, struct st_txn *txn, const struct st_key *key,
                       enum updater_check check, const struct jd_inputs *fresh, int64_t now_ms,
                       int64_t not_before_ms)
{
    struct st_record d;
    int rc = st_record_get(txn, key, &d);
    if (rc == -ENOENT || rc == -EBADMSG || rc == -ENOTSUP ||
        (rc == 0 && d.state != ST_STATE_DEAL && d.state != ST_STATE_FAILING)) {
        u->tally.gone++; /* gone, or no longer a deal (re-judged meanwhile): not re-checked */
        return 0;
    }
    if (rc != 0)
        return rc;
    if (not_before_ms > 0 && d.last_checked_ms >= not_before_ms) {
        u->tally.gone++; /* newer data is stored already */
        return 0;
    }
    struct updater_policy pol;
    policy(u, &pol);
    bool shown = d.state == ST_STATE_DEAL;
    int cls = val_class(d.in.sales_rank);
    int64_t seen_deal_ms = d.last_checked_ms;
    int64_t change_before_min = d.in.price_change_min;
    struct updater_outcome o;
    updater_recheck(&d, check, fresh, &u->rules, u->rules_hash, &pol, now_ms, &o);
    if (check == UPDATER_MISSING)
        u->tally.missing++;
    else if (o.failed)
        u->tally.failed++;
    u->tally.offers_gone += o.offer_gone;
    if (shown && seen_deal_ms > 0 && u->tally.n_obs < UPDATER_OBS_MAX) {
        /* A shown deal was last seen a deal at its last check: did it last until now? */
        struct upd_obs *ob = &u->tally.obs[u->tally.n_obs++];
        ob->cls = cls;
        ob->vanished = o.failed;
        ob->elapsed_min = (double)(now_ms - seen_deal_ms) / (double)pol.minute_ms;
        /* The ages of the price at both checks: the same price (no change between), or the
         * deal vanished when its price changed (the change's age of the old price). */
        ob->from_age_min = updater_price_age_min(&pol, change_before_min, seen_deal_ms);
        ob->to_age_min = -1;
        ob->vanish_age_min = -1;
        int64_t change_min = check == UPDATER_REFRESHED ? fresh->price_change_min : 0;
        if (ob->from_age_min >= 0 && change_min > 0) {
            if (change_min == change_before_min)
                ob->to_age_min = ob->from_age_min + ob->elapsed_min;
            else if (o.failed && change_min > change_before_min) {
                ob->to_age_min = ob->from_age_min + ob->elapsed_min;
                ob->vanish_age_min = (double)(change_min - change_before_min);
            }
        }
        ob->root = o.failed ? 0
                            : updater_value_root(pol.lambda[val_class(d.in.sales_rank)],
                                                 d.v.priced ? d.v.profit_cents : 0);
    }
    rc = st_record_put(txn, &d, o.event, now_ms);
    if (rc != 0)
        return rc;
    if (o.expire) {
        /* The scanner's verdict of old no longer holds: re-checked and not a deal. */
        struct st_seen seen;
        if (st_seen_get(txn, key, &seen) == 0 && seen.verdict == ST_VERDICT_SURVIVOR) {
            seen.verdict = ST_VERDICT_REJECTED;
            rc = st_seen_put(txn, key, &seen);
            if (rc != 0)
                return rc;
        }
        u->tally.expired++;
        return 0;
    }
    if (check == UPDATER_REFRESHED)
        u->tally.refreshed++;
    if (check == UPDATER_REFRESHED && o.is_volatile)
        u->tally.volatile_++;
    if (o.recommit)
        return request_recommit(u, txn, key, &d, now_ms);
    return 0;
}

static void begin_write(struct updater *u)
{
    memset(&u->tally, 0, sizeof(u->tally));
    wk_backlog_truncate(&u->recommit_out, u->push_base); /* a retried run must not queue twice */
}

static void count_tally(struct updater *u)
{
    struct shm_counter_block *cb = counters(u);
    shm_counter_add(cb, SHM_C_deals_refreshed, (int64_t)u->tally.refreshed);
    shm_counter_add(cb, SHM_C_deals_expired, (int64_t)u->tally.expired);
    shm_counter_add(cb, SHM_C_offers_gone, (int64_t)u->tally.offers_gone);
    learn(u);
    if (u->recommit_out.n == u->recommit_out.cap && !u->push_overflow_logged) {
        kd_warn("recommit queue full: further requests wait in pending for the committer");
        u->push_overflow_logged = true;
    }
}

static int remove_stale(struct updater *u, struct st_txn *txn)
{
    for (size_t i = 0; i < u->n_stale; i++) {
        struct st_record d; /* rewritten since the snapshot to this very time: not stale now */
        if (st_record_get(txn, &u->stale[i].key, &d) == 0 && d.next_check_ms == u->stale[i].at_ms)
            continue;
        int rc = st_schedule_remove(txn, &u->stale[i].key, u->stale[i].at_ms);
        if (rc != 0 && rc != -ENOENT)
            return rc;
    }
    return 0;
}

/* ---- the light-fetch batch -------------------------------------------------------------- */

static int write_batch_fn(struct st_txn *txn, void *ud)
{
    struct updater *u = ud;
    begin_write(u);
    int rc = remove_stale(u, txn);
    for (size_t i = 0; rc == 0 && i < u->n; i++) {
        const struct upd_item *it = &u->items[i];
        if (it->check == UPDATER_NOT_CHECKED)
            continue;
        rc = apply_check(u, txn, &it->key, it->check, &it->fresh, u->batch_now_ms, 0);
    }
    return rc == 0 ? save_learned(u, txn, false) : rc;
}

static int write_stale_fn(struct st_txn *txn, void *ud)
{
    return remove_stale(ud, txn);
}

/* Writes the answered batch. Returns 0, or the store error (the batch stays unwritten). */
static int write_batch(struct updater *u)
{
    bool retry = u->batch_unwritten;
    u->push_base = u->recommit_out.n;
    int rc = store_write(u, write_batch_fn);
    if (rc != 0) {
        wk_backlog_truncate(&u->recommit_out, u->push_base);
        u->batch_unwritten = true;
        store_failed(u, "an update batch", rc);
        return rc;
    }
    u->batch_unwritten = false;
    u->n_stale = 0;
    if (retry)
        kd_info("the delayed write of an update batch succeeded");
    count_tally(u);
    size_t not_checked = 0;
    for (size_t i = 0; i < u->n; i++)
        not_checked += u->items[i].check == UPDATER_NOT_CHECKED;
    kd_info("update batch: %zu asins, %.0f tokens: %zu refreshed (%zu volatile), %zu failed the "
            "criteria, %zu not returned, %zu expired, %zu recommits, %zu not checked, %zu gone",
            u->n, u->cost_tokens, u->tally.refreshed, u->tally.volatile_, u->tally.failed,
            u->tally.missing, u->tally.expired, u->tally.recommits, not_checked, u->tally.gone);
    u->n = 0;
    push_recommits(u);
    return 0;
}

static int build_call(struct kp_call *call, void *ud)
{
    struct updater *u = ud;
    const char *asins[UPDATER_BATCH_MAX];
    for (size_t i = 0; i < u->n; i++)
        asins[i] = u->items[i].asin;
    struct kp_product_params p;
    memset(&p, 0, sizeof(p));
    p.domain = (int)u->domain;
    p.asins = asins;
    p.n_asins = u->n;
    p.stats_days = 365; /* current, avg90, avg180 and avg365 */
    p.history = KP_NO;
    return kp_call_product(call, &p);
}

/*
 * The Keepa minute now, for the age of a price: no answer says it, but every product's
 * lastUpdate and lastPriceChange lie before it and Keepa refreshes products every two hours,
 * so the latest of them over the answers, against the updater's clock in Keepa minutes, is
 * the clock's offset within minutes (the simulator's catalog clock runs apart from the wall).
 */
static void note_keepa_now(struct updater *u, const struct kp_product *p)
{
    int64_t latest = p->last_update_keepa_min > p->last_price_change_keepa_min
                         ? p->last_update_keepa_min
                         : p->last_price_change_keepa_min;
    int64_t minute_ms = updater_scale_ms(CFG_MS_MIN, u->wk->cfg.tokens_minute_ms);
    if (latest <= 0 || minute_ms <= 0)
        return;
    double offset = (double)latest - (double)clock_ms(u) / (double)minute_ms;
    if (!u->keepa_offset_known || offset > u->keepa_offset_min) {
        u->keepa_offset_min = offset;
        u->keepa_offset_known = true;
    }
}

static int on_product(const struct kp_product *p, void *ud)
{
    struct updater *u = ud;
    for (size_t i = 0; i < u->n; i++) {
        struct upd_item *it = &u->items[i];
        if (strcmp(it->asin, p->asin) == 0) {
            /* A retried transfer may deliver it again: the last copy wins. */
            it->returned = true;
            jd_inputs_from_product(p, &u->rules, clock_ms(u), JD_READ_LISTING, &it->fresh);
            note_keepa_now(u, p);
            break;
        }
    }
    return 0;
}

static void begin_close(struct updater *u);

static void set_aside(struct updater *u, const struct st_key *key, int64_t ms)
{
    size_t slot = 0;
    for (size_t i = 0; i < u->n_aside; i++) /* reuse a slot, else replace the oldest */
        if (u->aside[i].until_ns < u->aside[slot].until_ns)
            slot = i;
    if (u->n_aside < UPDATER_SET_ASIDE_MAX)
        slot = u->n_aside++;
    u->aside[slot].key = *key;
    u->aside[slot].until_ns = now_ns() + ms * KD_NS_PER_MS;
}

static bool is_aside(struct updater *u, const struct st_key *key)
{
    int64_t t = now_ns();
    for (size_t i = 0; i < u->n_aside; i++)
        if (u->aside[i].until_ns > t && memcmp(u->aside[i].key.b, key->b, ST_KEY_LEN) == 0)
            return true;
    return false;
}

static void on_batch_done(const struct kp_result *res, void *ud)
{
    struct updater *u = ud;
    u->batch_active = false;
    u->code = res->code;
    u->cost_tokens = res->reading_valid ? res->reading.tokens_consumed : 0;

    bool any_returned = false;
    for (size_t i = 0; i < u->n; i++)
        any_returned |= u->items[i].returned;
    size_t checked = 0, malformed = 0;
    for (size_t i = 0; i < u->n; i++) {
        struct upd_item *it = &u->items[i];
        enum kp_asin_status st = KP_ASIN_REJECTED;
        for (size_t k = 0; k < res->n_asins; k++) {
            if (strcmp(res->asins[k].asin, it->asin) == 0) {
                st = res->asins[k].status;
                break;
            }
        }
        it->check = updater_classify(res->code, it->returned, st, any_returned, u->n);
        checked += it->check != UPDATER_NOT_CHECKED;
        malformed += res->code == KP_OK && st == KP_ASIN_MALFORMED;
    }

    if (res->code == KP_OK) {
        u->fetch_failures = 0;
        u->retry_at_ns = 0;
        /* Products with mistyped fields stay due, uncounted. When every ASIN came so, the
         * answer is garbled rather than empty: asking one at a time would not tell more. */
        u->probe_single = checked == 0 && u->n > 1 && malformed < u->n;
        if (malformed > 0)
            kd_warn("update batch of %zu asins: %zu answered with fields of the wrong JSON type; "
                    "they stay due and are not counted as checked",
                    u->n, malformed);
        if (u->probe_single)
            kd_warn("update batch of %zu asins: the answer had no usable product at all; asking "
                    "for them one at a time before counting any as gone",
                    u->n);
    } else if (res->code == KP_PERMANENT) {
        /* Keepa refuses the request itself (400): no backoff helps. Ask for the deals one
         * at a time to find the one it is refused for, and set that one aside. */
        struct updater_policy pol;
        updater_policy_from_cfg(&u->wk->cfg, &pol);
        if (u->n > 1) {
            u->probe_single = true;
            kd_warn("update batch of %zu asins: refused (%s); asking for them one at a time", u->n,
                    res->error);
        } else if (u->n == 1) {
            set_aside(u, &u->items[0].key, pol.retry_max_ms);
            u->probe_single = false;
            kd_error("update of %s: refused (%s); the deal stays due and is set aside for %lld "
                     "ms so the others go on",
                     u->items[0].asin, res->error, (long long)pol.retry_max_ms);
        }
    } else {
        struct updater_policy pol;
        updater_policy_from_cfg(&u->wk->cfg, &pol);
        u->fetch_failures++;
        int64_t backoff = updater_retry_backoff_ms(&pol, u->fetch_failures);
        u->retry_at_ns = now_ns() + backoff * KD_NS_PER_MS;
        if (res->code == KP_KEY_UNUSABLE)
            u->key_unusable = true;
        if (res->code != KP_CANCELLED)
            kd_warn("update batch of %zu asins: %s (%s); the deals stay due and are retried in "
                    "%lld ms (failure %u in a row)",
                    u->n, kp_result_name(res->code), res->error, (long long)backoff,
                    u->fetch_failures);
    }

    if (checked > 0) {
        /* Strictly increasing per batch, so the records of one write share a check time
         * that no other write has (operators and tests group a batch by it). */
        int64_t now = clock_ms(u);
        u->batch_now_ms = now > u->batch_now_ms ? now : u->batch_now_ms + 1;
        if (write_batch(u) != 0 && u->stop_after_batch)
            kd_error("stopping with an unwritten update batch: its deals stay due and are "
                     "checked again after the restart");
    } else {
        u->n = 0;
    }
    if (res->code == KP_OK && checked == 0) {
        /* Nothing could be judged: do not ask again at once. */
        struct updater_policy pol;
        updater_policy_from_cfg(&u->wk->cfg, &pol);
        u->retry_at_ns = now_ns() + pol.retry_base_ms * KD_NS_PER_MS;
    }
    if (u->closing)
        return; /* cancelled by our own sp_close */
    if (u->stop_after_batch) {
        begin_close(u);
        return;
    }
    arm(u, u->batch_unwritten ? UPDATER_WRITE_RETRY_MS : 0);
}

/*
 * Reads the schedule in one snapshot: publishes updates_due, and when TAKE is set and a deal is
 * due fills the batch with up to MAX valid deals of one domain due by TAKE_UNTIL_MS (>= NOW_MS:
 * deals falling due soon ride along, so the re-checks the value rule spreads out still go in
 * batches rather than one request each; stale entries are collected for removal).
 * *NEXT_DUE_MS gets the time of the earliest entry (-1 when the schedule is empty).
 */
static int scan_schedule(struct updater *u, bool take, size_t max, int64_t now_ms,
                         int64_t take_until_ms, int64_t *next_due_ms)
{
    *next_due_ms = -1;
    struct st_txn *txn;
    int rc = st_read_begin(u->env, &txn);
    if (rc != 0)
        return rc;
    size_t n_due = 0;
    rc = st_schedule_due(txn, now_ms, u->due, UPDATER_DUE_COUNT_MAX, &n_due);
    uint64_t n_sched = 0;
    if (rc == 0 && st_count(txn, ST_DB_SCHEDULE, &n_sched) == 0)
        u->n_scheduled = (int64_t)n_sched;
    if (rc == 0) {
        shm_gauge_set(counters(u), SHM_C_updates_due, (int64_t)n_due);
        if (n_due > 0) {
            *next_due_ms = u->due[0].at_ms;
        } else {
            struct st_sched_entry first;
            size_t n_first = 0;
            if (st_schedule_due(txn, INT64_MAX, &first, 1, &n_first) == 0 && n_first == 1)
                *next_due_ms = first.at_ms;
        }
    }
    if (rc == 0 && take && n_due > 0 && take_until_ms > now_ms)
        rc = st_schedule_due(txn, take_until_ms, u->due, UPDATER_DUE_COUNT_MAX, &n_due);
    if (rc == 0 && take) {
        u->n = 0;
        u->n_stale = 0;
        for (size_t i = 0; i < n_due && u->n < max; i++) {
            const struct st_sched_entry *e = &u->due[i];
            struct st_record d;
            int g = st_record_get(txn, &e->key, &d);
            if (g == -ENOENT || g == -EBADMSG || g == -ENOTSUP ||
                (g == 0 && (d.next_check_ms != e->at_ms ||
                            (d.state != ST_STATE_DEAL && d.state != ST_STATE_FAILING)))) {
                if (u->n_stale < UPDATER_STALE_MAX)
                    u->stale[u->n_stale++] = *e;
                continue;
            }
            if (g != 0) {
                rc = g;
                break;
            }
            if (is_aside(u, &e->key))
                continue;
            unsigned domain = st_key_domain(&e->key);
            if (u->n == 0)
                u->domain = domain;
            else if (domain != u->domain)
                continue; /* next batch */
            struct upd_item *it = &u->items[u->n++];
            memset(it, 0, sizeof(*it));
            it->key = e->key;
            st_key_asin(&e->key, it->asin);
        }
    }
    st_read_end(txn);
    return rc;
}

/* Takes due deals and submits a batch. Returns 1 when a batch was submitted, 0 when none is
 * due, or a negative errno. */
static int start_batch(struct updater *u, int64_t *next_due_ms)
{
    int64_t now_ms = clock_ms(u);
    int64_t batch = u->wk->cfg.update_batch;
    if (batch < 1)
        batch = 1;
    if (batch > UPDATER_BATCH_MAX)
        batch = UPDATER_BATCH_MAX;
    if (u->probe_single)
        batch = 1;
    struct updater_policy pol;
    updater_policy_from_cfg(&u->wk->cfg, &pol);
    int rc = scan_schedule(u, true, (size_t)batch, now_ms, now_ms + pol.min_interval_ms / 4,
                           next_due_ms);
    if (rc != 0) {
        kd_error("store %s: cannot read the schedule: %s", u->wk->cfg.store_path, st_strerror(rc));
        u->n = 0;
        return rc;
    }
    if (u->n_stale > 0 && u->n == 0) {
        rc = store_write(u, write_stale_fn);
        if (rc == 0) {
            kd_info("removed %zu stale schedule entries", u->n_stale);
            u->n_stale = 0;
        }
    }
    if (u->n == 0)
        return 0;
    struct sp_job_spec spec = {
        .kind = TB_KIND_UPDATE,
        .units = (int64_t)u->n,
        .prio = SP_PRIO_UPDATE,
        .build = build_call,
        .cbs = {.on_product = on_product, .on_done = on_batch_done, .ud = u},
    };
    u->batch_active = true;
    rc = sp_submit(&u->sp, &spec);
    if (rc != 0) {
        u->batch_active = false;
        u->n = 0;
        if (rc == -EKEYREJECTED) {
            u->key_unusable = true;
            kd_error("the Keepa key is unusable: no updates are fetched");
        } else {
            kd_error("cannot queue an update batch: %s", strerror(-rc));
        }
        return rc;
    }
    char asins[UPDATER_BATCH_MAX * (ST_ASIN_LEN + 1) + 1];
    size_t len = 0;
    for (size_t i = 0; i < u->n && len + ST_ASIN_LEN + 2 <= sizeof(asins); i++)
        len += (size_t)snprintf(asins + len, sizeof(asins) - len, " %s", u->items[i].asin);
    kd_debug("update batch of %zu asks for:%s", u->n, asins);
    return 1;
}

/* ---- free refreshes from the scanner --------------------------------------------------- */

static int write_refresh_fn(struct st_txn *txn, void *ud)
{
    struct updater *u = ud;
    begin_write(u);
    int64_t now_ms = clock_ms(u);
    for (size_t i = 0; i < u->n_refresh; i++) {
        const struct st_pending *p = &u->refresh[i];
        struct st_key key;
        if (st_pending_key(p, &key) != 0 || p->in.data_ms <= 0)
            continue; /* an older scanner's record without the peek's inputs: nothing to apply */
        int64_t seen_ms = p->peek_ms > 0 && p->peek_ms <= now_ms ? p->peek_ms : now_ms;
        int rc = apply_check(u, txn, &key, UPDATER_REFRESHED, &p->in, seen_ms, seen_ms);
        if (rc != 0)
            return rc;
    }
    return save_learned(u, txn, false);
}

/* Applies what waits in the REFRESH ring, one transaction per chunk. Returns false when a
 * write failed (the records stay in the ring for the retry). */
static bool drain_refresh(struct wk_watch *w)
{
    struct updater *u = w->ud;
    struct ring *r = w->ring;
    if (u->refresh_retry_at_ns > now_ns())
        return false;
    for (;;) {
        u->n_refresh = 0;
        size_t read = 0;
        const void *rec;
        size_t len;
        int rc = 0;
        while (u->n_refresh < UPDATER_REFRESH_CHUNK && (rc = ring_read(r, &rec, &len)) == 0) {
            read++;
            if (st_pending_decode(rec, len, &u->refresh[u->n_refresh]) == 0)
                u->n_refresh++;
            else
                kd_warn("refresh ring: a record does not decode; skipped");
        }
        if (rc == -EBADMSG) {
            kd_error("refresh ring: corrupt record header; the ring is not read any more");
            u->refresh_retry_at_ns = INT64_MAX;
        }
        if (read == 0)
            break;
        if (u->n_refresh > 0) {
            u->push_base = u->recommit_out.n;
            int wrc = store_write(u, write_refresh_fn);
            if (wrc != 0) {
                wk_backlog_truncate(&u->recommit_out, u->push_base);
                ring_rewind(r);
                store_failed(u, "scanner refreshes", wrc);
                u->refresh_retry_at_ns = now_ns() + UPDATER_WRITE_RETRY_MS * KD_NS_PER_MS;
                return false;
            }
            count_tally(u);
            kd_info("refreshes from the scanner: %zu records: %zu refreshed (%zu volatile), %zu "
                    "failed the criteria, %zu expired, %zu recommits, %zu gone or older",
                    u->n_refresh, u->tally.refreshed, u->tally.volatile_, u->tally.failed,
                    u->tally.expired, u->tally.recommits, u->tally.gone);
        }
        ring_ack(r);
        shm_counter_add(counters(u), SHM_C_ring_records_in, (int64_t)read);
        if (rc != 0)
            break;
    }
    shm_gauge_set(counters(u), SHM_C_ring_depth_refresh, (int64_t)ring_depth(r->ctl));
    u->refresh_retry_at_ns = u->refresh_retry_at_ns == INT64_MAX ? INT64_MAX : 0;
    return true;
}

static void on_refresh_wake(struct wk_watch *w)
{
    struct updater *u = w->ud;
    if (!u->closing)
        wk_watch_serve(w);
    if (u->recommit_out.n > 0)
        push_recommits(u);
}

/* ---- re-judge and pruning ----------------------------------------------------------------- */

/*
 * Starts a walk over every record: those judged under other rules are judged again from their
 * stored inputs (no tokens), rejected ones older than [store] keep_rejected are pruned (unless
 * the seller marked them). REPORT: publish the outcome for `kdeals reload` (config generation
 * GEN); a walk for pruning alone does not, or a reload that changed no judgement could report
 * that walk's outcome as its own (test_rejudge saw "judged 0 records again" after such a reload).
 */
static void rejudge_begin(struct updater *u, uint64_t gen, bool report)
{
    u->rejudge_active = true;
    u->rejudge_report = report;
    u->rejudge_from_set = false;
    u->rejudge_n = 0;
    memset(&u->rj, 0, sizeof(u->rj));
    if (!report)
        return;
    struct shm_config_slot *cs = &u->wk->seg.layout->config;
    atomic_store_explicit(&cs->rejudge_state, 1, memory_order_relaxed);
    atomic_store_explicit(&cs->rejudge_generation, gen, memory_order_release);
}

static bool prunable(const struct st_record *r, int64_t now_ms, int64_t keep_ms)
{
    int64_t last = r->last_checked_ms > r->judged_ms ? r->last_checked_ms : r->judged_ms;
    return r->state == ST_STATE_REJECTED && r->mark == ST_MARK_NONE && last > 0 &&
           last + keep_ms < now_ms;
}

static bool needs_rejudge(const struct updater *u, const struct st_record *r)
{
    return r->rules_hash != u->rules_hash && r->in.data_ms > 0;
}

/* Reads the next chunk of keys to judge again or prune (one snapshot), counting the records
 * that need nothing. Sets *DONE at the end of the db. */
static int rejudge_collect(struct updater *u, int64_t now_ms, int64_t keep_ms, bool *done)
{
    *done = false;
    u->rejudge_n = 0;
    struct st_txn *txn;
    int rc = st_read_begin(u->env, &txn);
    if (rc != 0)
        return rc;
    struct st_cursor *cur;
    rc = st_cursor_open(txn, ST_DB_PRODUCTS, &cur);
    if (rc != 0) {
        st_read_end(txn);
        return rc;
    }
    struct st_record r;
    size_t scanned = 0;
    while (u->rejudge_n < UPDATER_REJUDGE_CHUNK && scanned < 8 * UPDATER_REJUDGE_CHUNK) {
        int g = u->rejudge_from_set ? st_cursor_seek_record(cur, &u->rejudge_from, true, &r)
                                    : st_cursor_next_record(cur, &r);
        u->rejudge_from_set = false;
        if (g == -ENOENT) {
            *done = true;
            break;
        }
        if (g == -EBADMSG || g == -ENOTSUP)
            continue;
        if (g != 0) {
            rc = g;
            break;
        }
        scanned++;
        struct st_key key;
        if (st_record_key(&r, &key) != 0)
            continue;
        u->rejudge_from = key;
        if (needs_rejudge(u, &r) || prunable(&r, now_ms, keep_ms)) {
            u->rejudge_keys[u->rejudge_n++] = key;
            continue;
        }
        u->rj.before += r.state == ST_STATE_DEAL;
        u->rj.after += r.state == ST_STATE_DEAL;
    }
    if (!*done && rc == 0)
        u->rejudge_from_set = true; /* resume after the last key seen */
    st_cursor_close(cur);
    st_read_end(txn);
    return rc;
}

static int rejudge_write_fn(struct st_txn *txn, void *ud)
{
    struct updater *u = ud;
    int64_t now_ms = clock_ms(u);
    int64_t keep_ms = cfg_keepa_ms(&u->wk->cfg, u->wk->cfg.store_keep_rejected_ms);
    for (size_t i = 0; i < u->rejudge_n; i++) {
        struct st_record r;
        int rc = st_record_get(txn, &u->rejudge_keys[i], &r);
        if (rc == -ENOENT || rc == -EBADMSG || rc == -ENOTSUP)
            continue;
        if (rc != 0)
            return rc;
        if (prunable(&r, now_ms, keep_ms)) {
            rc = st_record_del(txn, &u->rejudge_keys[i], now_ms);
            if (rc != 0)
                return rc;
            continue;
        }
        if (!needs_rejudge(u, &r))
            continue;
        updater_rejudge(&r, &u->rules, u->rules_hash,
                        (uint32_t)u->wk->cfg.update_expire_after_failures, now_ms);
        rc = st_record_put(txn, &r, ST_EV_REJUDGE, now_ms);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* Tallies of a committed chunk: what each key was before and is now (read back). */
static void rejudge_count(struct updater *u, const struct st_record *before, size_t n_before)
{
    struct st_txn *txn;
    if (st_read_begin(u->env, &txn) != 0)
        return;
    for (size_t i = 0; i < n_before; i++) {
        struct st_record now;
        bool was = before[i].state == ST_STATE_DEAL;
        int g = st_record_get(txn, &u->rejudge_keys[i], &now);
        if (g == -ENOENT) {
            u->rj.pruned++;
            u->rj.before += was;
            continue;
        }
        if (g != 0)
            continue;
        bool is = now.state == ST_STATE_DEAL;
        u->rj.records += now.rules_hash == u->rules_hash && before[i].rules_hash != u->rules_hash;
        u->rj.before += was;
        u->rj.after += is;
        u->rj.added += !was && is;
        if (was && !is) {
            u->rj.removed++;
            for (unsigned c = 0; c < JD_C_COUNT; c++)
                if (now.v.fails & (1u << c)) {
                    u->rj.removed_by[c]++;
                    break;
                }
        }
    }
    st_read_end(txn);
}

static void rejudge_finish(struct updater *u)
{
    u->rejudge_active = false;
    struct shm_config_slot *cs = &u->wk->seg.layout->config;
    char why[256] = "";
    size_t off = 0;
    for (unsigned c = 0; c < JD_C_COUNT && c < SHM_REJUDGE_REASONS; c++) {
        if (u->rejudge_report)
            atomic_store_explicit(&cs->rejudge_removed_by[c], u->rj.removed_by[c],
                                  memory_order_relaxed);
        if (u->rj.removed_by[c] > 0 && off < sizeof(why)) {
            int w = snprintf(why + off, sizeof(why) - off, "%s%s %lld", off ? ", " : "",
                             jd_crit_name(c), (long long)u->rj.removed_by[c]);
            off += w > 0 ? (size_t)w : 0;
        }
    }
    if (u->rejudge_report) {
        atomic_store_explicit(&cs->rejudge_records, u->rj.records, memory_order_relaxed);
        atomic_store_explicit(&cs->rejudge_deals_before, u->rj.before, memory_order_relaxed);
        atomic_store_explicit(&cs->rejudge_deals_after, u->rj.after, memory_order_relaxed);
        atomic_store_explicit(&cs->rejudge_added, u->rj.added, memory_order_relaxed);
        atomic_store_explicit(&cs->rejudge_removed, u->rj.removed, memory_order_relaxed);
        atomic_store_explicit(&cs->rejudge_state, 2, memory_order_release);
    }
    if (u->rj.records > 0 || u->rj.pruned > 0)
        kd_info("re-judge: %lld records judged again from their stored inputs (no tokens): "
                "%lld deals -> %lld: %lld added, %lld no longer pass%s%s%s; %lld rejected "
                "records pruned",
                (long long)u->rj.records, (long long)u->rj.before, (long long)u->rj.after,
                (long long)u->rj.added, (long long)u->rj.removed, off ? " (" : "", why,
                off ? ")" : "", (long long)u->rj.pruned);
    u->prune_next_ns = now_ns() + cfg_keepa_ms(&u->wk->cfg, UPDATER_PRUNE_EVERY_MS) * KD_NS_PER_MS;
}

/* One chunk of the walk. Returns true when more remains (call again soon). */
static bool rejudge_step(struct updater *u)
{
    int64_t keep_ms = cfg_keepa_ms(&u->wk->cfg, u->wk->cfg.store_keep_rejected_ms);
    bool done = false;
    int rc = rejudge_collect(u, clock_ms(u), keep_ms, &done);
    if (rc != 0) {
        kd_error("re-judge: cannot read the store: %s; trying again later", st_strerror(rc));
        return false;
    }
    if (u->rejudge_n > 0) {
        /* What the chunk's records were, to count what moved once the write committed. */
        struct st_record *before = u->rejudge_before;
        struct st_txn *txn;
        size_t n = 0;
        if (st_read_begin(u->env, &txn) == 0) {
            for (; n < u->rejudge_n; n++)
                if (st_record_get(txn, &u->rejudge_keys[n], &before[n]) != 0)
                    st_record_init(&before[n]);
            st_read_end(txn);
        }
        rc = store_write(u, rejudge_write_fn);
        if (rc != 0) {
            store_failed(u, "a re-judge chunk", rc);
            u->rejudge_from_set = false; /* start over later: nothing of the chunk was written */
            return false;
        }
        rejudge_count(u, before, n);
    }
    if (done)
        rejudge_finish(u);
    return !done;
}

/* ---- first re-checks of new deals ("first" rule) -------------------------------------------- */

static int place_first_fn(struct st_txn *txn, void *ud)
{
    struct updater *u = ud;
    struct updater_policy pol;
    policy(u, &pol);
    int64_t now_ms = clock_ms(u);
    size_t placed = 0;
    for (size_t i = 0; i < u->n_first; i++) {
        struct st_record r;
        int rc = st_record_get(txn, &u->first[i].key, &r);
        if (rc == -ENOENT || rc == -EBADMSG || rc == -ENOTSUP)
            continue;
        if (rc != 0)
            return rc;
        if (r.revision != u->first[i].revision || r.next_check_ms <= 0)
            continue; /* rewritten since: its writer scheduled it */
        int64_t at = updater_first_check_ms(&pol, &r);
        if (at < 0)
            continue;
        if (at < now_ms)
            at = now_ms;
        /* Deals due within a quarter of the minimum interval ride along in a batch anyway. */
        int64_t d = at - r.next_check_ms;
        if ((d < 0 ? -d : d) < pol.min_interval_ms / 4)
            continue;
        rc = st_record_reschedule(txn, &u->first[i].key, r.revision, at);
        if (rc == -ECANCELED)
            continue;
        if (rc != 0)
            return rc;
        placed++;
    }
    kd_debug("first re-checks: %zu of %zu new deals placed", placed, u->n_first);
    return 0;
}

/*
 * Reads the change log past changes_seq for deals the committer stored and places their first
 * re-checks. Nothing is placed before the updater has seen the log's end once (at its start, or
 * when the rule is switched on): the deals stored before keep the committer's time. A write that
 * fails leaves those deals at the committer's time (no tokens are at stake, only when a deal is
 * looked at).
 */
static void place_first_checks(struct updater *u)
{
    if (!(val_rules(&u->wk->cfg) & VAL_RULE_FIRST)) {
        u->changes_known = false;
        return;
    }
    for (;;) {
        struct st_txn *txn;
        if (st_read_begin(u->env, &txn) != 0)
            return;
        if (!u->changes_known) {
            uint64_t last = 0;
            int rc = st_changes_last(txn, &last);
            st_read_end(txn);
            if (rc == 0) {
                u->changes_seq = last;
                u->changes_known = true;
            }
            return;
        }
        struct st_change ch[UPDATER_FIRST_MAX];
        size_t n = 0;
        int rc = st_changes_read(txn, u->changes_seq, ch, UPDATER_FIRST_MAX, &n);
        st_read_end(txn);
        if (rc != 0)
            return;
        u->n_first = 0;
        for (size_t i = 0; i < n; i++) {
            u->changes_seq = ch[i].seq;
            if (ch[i].event != ST_EV_COMMIT || ch[i].state != ST_STATE_DEAL)
                continue;
            if (st_key_make(ch[i].domain, ch[i].asin, &u->first[u->n_first].key) != 0)
                continue;
            u->first[u->n_first++].revision = ch[i].revision;
        }
        if (u->n_first > 0) {
            rc = store_write(u, place_first_fn);
            if (rc != 0)
                kd_warn("store %s: placing the first re-checks of %zu new deals failed: %s; "
                        "they keep the committer's time",
                        u->wk->cfg.store_path, u->n_first, st_strerror(rc));
            u->n_first = 0;
        }
        if (n < UPDATER_FIRST_MAX)
            return;
    }
}

/* ---- the tick --------------------------------------------------------------------------- */

static void step(struct updater *u)
{
    if (u->closing)
        return;
    /* Drains the ring, then sleeps on its eventfd (the tick is the safety net). */
    wk_watch_serve(&u->refresh_watch);
    if (u->recommit_out.n > 0)
        push_recommits(u);
    if (u->batch_unwritten && write_batch(u) != 0) {
        arm(u, UPDATER_WRITE_RETRY_MS);
        return;
    }
    int64_t next_due_ms = -1;
    int64_t delay = UPDATER_SAFETY_MS;
    int64_t t = now_ns();
    if (!u->rejudge_active && u->prune_next_ns > 0 && t >= u->prune_next_ns)
        rejudge_begin(u, 0, false); /* pruning alone: reports nothing */
    if (u->rejudge_active && rejudge_step(u))
        delay = 0; /* more records to judge again: the next chunk right after this tick */
    place_first_checks(u);
    if (u->batch_active || u->wk->stopping || !u->sp_ready || u->key_unusable ||
        u->retry_at_ns > t) {
        if (scan_schedule(u, false, 0, clock_ms(u), 0, &next_due_ms) != 0)
            next_due_ms = -1;
        if (!u->batch_active && u->retry_at_ns > t) {
            int64_t wait = (u->retry_at_ns - t + KD_NS_PER_MS - 1) / KD_NS_PER_MS;
            if (wait < delay)
                delay = wait;
        }
        arm(u, delay);
        return;
    }
    int rc = start_batch(u, &next_due_ms);
    if (rc == 0 && next_due_ms >= 0) {
        /* Wake when the next deal falls due; deals due now but not taken (set aside) wait
         * for the safety tick. */
        int64_t wait = next_due_ms - clock_ms(u);
        if (wait > 0 && wait < delay)
            delay = wait;
    }
    arm(u, delay);
}

/* ---- start, reload, stop ------------------------------------------------------------------ */

static int save_learned_fn(struct st_txn *txn, void *ud)
{
    struct updater *u = ud;
    memset(&u->tally, 0, sizeof(u->tally));
    return save_learned(u, txn, true);
}

static void begin_close(struct updater *u)
{
    if (u->closing)
        return;
    u->closing = true;
    if (u->learned_unsaved > 0) { /* what the last writes taught, kept for the next start */
        int rc = store_write(u, save_learned_fn);
        if (rc != 0)
            kd_warn("stop: saving the learned vanish rates failed (%s); the next start uses "
                    "the last save",
                    st_strerror(rc));
    }
    uv_timer_stop(&u->tick);
    uv_close((uv_handle_t *)&u->tick, NULL);
    wk_watch_close(&u->refresh_watch);
    sp_close(&u->sp, wk_stop_cb, u->wk);
}

static void on_stop_deadline(uv_timer_t *t)
{
    struct updater *u = t->data;
    kd_warn("stop deadline: cancelling the update batch in flight (its deals stay due)");
    begin_close(u);
}

/*
 * A batch in flight is awaited (its answer is paid for), within a quarter of the supervisor's
 * deadline: the workers stop one after another (supervisor.c, stop_next) and the committer,
 * last, may need most of it for its own. Cancelled, the batch's deals stay due.
 */
static void on_stop(struct wk *wk)
{
    struct updater *u = wk->data;
    if (u->batch_active && u->sp.in_flight > 0) {
        int64_t ms = wk->cfg.daemon_stop_timeout_ms / 4;
        kd_info("stopping after the update batch in flight (%zu asins, at most %lld ms)", u->n,
                (long long)ms);
        u->stop_after_batch = true;
        uv_timer_start(&u->tick, on_stop_deadline, (uint64_t)(ms > 0 ? ms : 1), 0);
        return;
    }
    begin_close(u);
}

static void on_reload(struct wk *wk)
{
    struct updater *u = wk->data;
    uint64_t old_hash = u->rules_hash;
    jd_rules_from_cfg(&wk->cfg, &u->rules);
    u->rules_hash = jd_rules_hash(&u->rules);
    if (u->rules_hash != old_hash) {
        kd_info("reload: the judgement's rules changed; judging every stored record again "
                "(no tokens)");
        rejudge_begin(u, (uint64_t)wk->cfg_generation, true);
    } else {
        /* Nothing to judge again: report at once, so `kdeals reload` does not wait. */
        struct shm_config_slot *cs = &wk->seg.layout->config;
        atomic_store_explicit(&cs->rejudge_state, 0, memory_order_relaxed);
        atomic_store_explicit(&cs->rejudge_generation, (uint64_t)wk->cfg_generation,
                              memory_order_release);
    }
    struct updater_policy pol;
    updater_policy_from_cfg(&wk->cfg, &pol);
    kd_info("reload: update batch %lld, intervals %lld..%lld ms, expire after %u failed checks",
            (long long)wk->cfg.update_batch, (long long)pol.min_interval_ms,
            (long long)pol.max_interval_ms, pol.expire_after_failures);
    arm(u, 0);
}

static int on_start(struct wk *wk)
{
    struct updater *u = wk->data;
    u->wk = wk;
    updater_clock_init(&u->clock, kd_wall_ms(), kd_mono_ns() / KD_NS_PER_MS);
    jd_rules_from_cfg(&wk->cfg, &u->rules);
    u->rules_hash = jd_rules_hash(&u->rules);
    val_rate_init(&u->vanish);
    for (int k = 0; k < VAL_CLASSES; k++)
        val_rate_init(&u->vanish_cls[k]);
    val_age_init(&u->vanish_age);
    u->due = calloc(UPDATER_DUE_COUNT_MAX, sizeof(*u->due));
    u->rejudge_before = calloc(UPDATER_REJUDGE_CHUNK, sizeof(*u->rejudge_before));
    if (u->due == NULL || u->rejudge_before == NULL ||
        wk_backlog_init(&u->recommit_out, wk, SHM_RING_RECOMMIT, UPDATER_PUSH_MAX,
                        "it stays in pending") != 0) {
        kd_error("updater cannot start: out of memory");
        return -ENOMEM;
    }
    int rc = wk_store_open(wk, &u->env);
    if (rc != 0) {
        kd_error("updater cannot start: %s", st_strerror(rc));
        return rc;
    }
    load_learned(u);
    u->learned_saved_ns = now_ns();

    char err[512];
    rc = sp_init(&u->sp, wk, err, sizeof(err));
    if (rc == 0) {
        u->sp_ready = true;
    } else if (rc == -ENOKEY) {
        kd_warn("%s; only free refreshes from the scanner are applied", err);
    } else {
        kd_error("cannot start the Keepa client: %s; only free refreshes are applied", err);
        wk_set_error(wk, "Keepa client: %s", err);
    }
    uv_timer_init(wk->loop, &u->tick);
    u->tick.data = u;
    publish_value(u);
    wk_watch_start(&u->refresh_watch, wk, SHM_RING_REFRESH, drain_refresh, on_refresh_wake, u);
    /* Records judged under other rules (a config changed while stopped) and old rejected
     * ones: one walk at start, reported (a restarted updater finishes a reload's re-judge). */
    rejudge_begin(u, (uint64_t)wk->cfg_generation, true);
    arm(u, 0);
    struct updater_policy pol;
    updater_policy_from_cfg(&wk->cfg, &pol);
    kd_info("ready: update batch %lld, intervals %lld..%lld ms, expire after %u failed checks",
            (long long)wk->cfg.update_batch, (long long)pol.min_interval_ms,
            (long long)pol.max_interval_ms, pol.expire_after_failures);
    return 0;
}

static void on_release(struct wk *wk)
{
    struct updater *u = wk->data;
    st_close(u->env);
    free(u->due);
    free(u->rejudge_before);
    wk_backlog_free(&u->recommit_out);
}

const struct wk_stage updater_stage = {
    .name = "updater",
    .role = SHM_ROLE_UPDATER,
    .state_size = sizeof(struct updater),
    .start = on_start,
    .stop = on_stop,
    .reload = on_reload,
    .release = on_release,
};
