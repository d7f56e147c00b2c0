/*
 * alerts.c: an alert lane: entries from the change log, deliveries with intent, outcome,
 * backoff and a rate limit. See alerts.h for the rules and alertdb.h for what is stored.
 *
 * The lane keeps the deliveries still to be sent (PENDING) in memory, read from the store when
 * it starts and whenever `kdeals alerts retry` bumps the alert's kick counter; the store stays
 * the truth (each attempt reads its delivery again in the intent transaction).
 */
#include "outbox/alerts.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "base/clock.h"
#include "base/log.h"
#include "judge/rules.h"
#include "outbox/alertcfg.h"
#include "outbox/alertdb.h"
#include "outbox/deliver.h"
#include "shm/counters.h"
#include "store/store.h"

#define ALERT_POLL_MS     250  /* caught up: look at the log again after this */
#define ALERT_IDLE_MS     5000 /* a section that does not parse: look again after this */
#define ALERT_BATCH       256  /* changes evaluated per transaction */
#define ALERT_RETRY_MIN   2000 /* first wait after a failed attempt */
#define ALERT_PRUNE_EVERY (3600 * 1000)

struct due {
    struct st_key key;
    uint32_t entry;
    int64_t next_ms;
};

struct ob_alert_lane {
    struct ob_ctx *ctx;
    unsigned index;
    char name[CFG_NAME_MAX];
    struct cfg *cfg;
    uint64_t cfg_version;
    bool have_cfg;
    struct ob_alert a;
    bool parsed;
    struct jd_rules rules;
    char store_id[33];
    char instance[128];
    struct due *due;
    size_t n_due, cap_due;
    bool due_loaded;
    uint64_t kick_seen;
    int64_t n_dead;
    int64_t lag; /* changes of the log not yet evaluated */
    int64_t prune_at_ms;
    char logged_error[200];
    struct st_change changes[ALERT_BATCH];
    struct st_record rec;
};

/* ---- small helpers ---------------------------------------------------------------------- */

static int64_t now_ms(void)
{
    return kd_wall_ms();
}

static void log_once(struct ob_alert_lane *l, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void log_once(struct ob_alert_lane *l, const char *fmt, ...)
{
    char msg[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (strcmp(msg, l->logged_error) != 0) {
        kd_warn("alert %s: %s", l->name, msg);
        snprintf(l->logged_error, sizeof(l->logged_error), "%s", msg);
    }
}

static int due_add(struct ob_alert_lane *l, const struct st_key *key, uint32_t entry,
                   int64_t next_ms)
{
    for (size_t i = 0; i < l->n_due; i++) {
        if (l->due[i].entry == entry && memcmp(&l->due[i].key, key, sizeof(*key)) == 0) {
            l->due[i].next_ms = next_ms;
            return 0;
        }
    }
    if (l->n_due == l->cap_due) {
        size_t cap = l->cap_due ? 2 * l->cap_due : 64;
        struct due *d = realloc(l->due, cap * sizeof(*d));
        if (d == NULL)
            return -ENOMEM;
        l->due = d;
        l->cap_due = cap;
    }
    l->due[l->n_due++] = (struct due){*key, entry, next_ms};
    return 0;
}

static void due_remove(struct ob_alert_lane *l, size_t i)
{
    l->due[i] = l->due[--l->n_due];
}

/* The gauges: this lane's pending and dead deliveries, summed over the lanes by the context. */
static void publish_gauges(struct ob_alert_lane *l)
{
    struct ob_ctx *c = l->ctx;
    uv_mutex_lock(&c->lock);
    c->alert_pending[l->index] = (int64_t)l->n_due;
    c->alert_dead[l->index] = l->n_dead;
    c->alert_lag[l->index] = l->lag;
    int64_t p = 0, d = 0, g = 0;
    for (size_t i = 0; i < OB_ALERT_LANES_MAX; i++) {
        p += c->alert_pending[i];
        d += c->alert_dead[i];
        g = c->alert_lag[i] > g ? c->alert_lag[i] : g;
    }
    uv_mutex_unlock(&c->lock);
    shm_gauge_set(c->counters, SHM_C_alerts_pending, p);
    shm_gauge_set(c->counters, SHM_C_alerts_dead, d);
    shm_gauge_set(c->counters, SHM_C_alerts_lag, g);
}

static int meta_u64(struct st_txn *txn, const char *name, uint64_t *v, bool *have)
{
    int rc = st_meta_get_u64(txn, name, v);
    *have = rc == 0;
    if (rc == -ENOENT) {
        *v = 0;
        rc = 0;
    }
    return rc;
}

/* Whether record R is in the alert's view with state STATE, at AT_MS. */
static bool in_view(struct ob_alert_lane *l, const struct st_record *r, uint8_t state,
                    int64_t at_ms)
{
    static __thread struct st_record x;
    x = *r;
    x.state = state;
    return vw_match(&x, &l->a.filter, at_ms);
}

/* ---- entries ---------------------------------------------------------------------------- */

/* What one evaluation transaction made due (applied to the queue after it committed). */
struct eval {
    struct ob_alert_lane *l;
    struct due made[ALERT_BATCH * 2];
    size_t n_made;
    uint64_t pos, last;
    bool resynced, baselined;
    size_t entries, exits;
};

/*
 * KEY is IN (or not) the view as of change SEQ at AT_MS (REC: its record, NULL when gone):
 * moves its membership, and makes a delivery for an entry.
 */
static int transition(struct st_txn *txn, struct eval *ev, const struct st_key *key, bool in,
                      int64_t at_ms, uint64_t seq, const struct st_record *rec, bool baseline)
{
    struct ob_alert_lane *l = ev->l;
    struct ob_member m;
    int rc = ob_member_get(txn, l->name, key, &m);
    if (rc == -ENOENT || rc == -EBADMSG) {
        if (!in)
            return 0; /* never in the view, still not: nothing to remember */
        memset(&m, 0, sizeof(m));
    } else if (rc != 0) {
        return rc;
    }
    if (in == m.in_view)
        return 0;
    m.in_view = in;
    m.seq = seq;
    if (!in) {
        m.left_ms = at_ms;
        ev->exits++;
        return ob_member_put(txn, l->name, key, &m);
    }
    bool entry = !baseline && (m.left_ms == 0 || at_ms - m.left_ms >= l->a.quiet_ms);
    if (entry) {
        m.entries++;
        m.entered_ms = at_ms;
        static __thread struct ob_delivery d;
        memset(&d, 0, sizeof(d));
        d.status = OB_D_PENDING;
        d.next_ms = now_ms();
        d.entered_ms = at_ms;
        d.seq = seq;
        if (rec != NULL && st_record_encode(rec, d.record, sizeof(d.record), &d.record_len) != 0)
            d.record_len = 0;
        if ((rc = ob_delivery_put(txn, l->name, key, m.entries, &d)) != 0)
            return rc;
        if (ev->n_made < sizeof(ev->made) / sizeof(ev->made[0]))
            ev->made[ev->n_made++] = (struct due){*key, m.entries, d.next_ms};
        else
            l->due_loaded = false; /* more than the buffer: read them back from the store */
        ev->entries++;
    }
    return ob_member_put(txn, l->name, key, &m);
}

/* Every record compared with its membership as of now (the first run, or a lost position). */
static int compare_all(struct st_txn *txn, struct eval *ev, bool baseline)
{
    struct ob_alert_lane *l = ev->l;
    int64_t now = now_ms();
    struct st_cursor *cur;
    int rc = st_cursor_open(txn, ST_DB_PRODUCTS, &cur);
    if (rc != 0)
        return rc;
    static __thread struct st_record r;
    for (;;) {
        int x = st_cursor_next_record(cur, &r);
        if (x == -ENOENT)
            break;
        if (x == -EBADMSG || x == -ENOTSUP)
            continue;
        if (x != 0) {
            rc = x;
            break;
        }
        struct st_key key;
        if (st_record_key(&r, &key) != 0)
            continue;
        bool in = vw_match(&r, &l->a.filter, now);
        if ((rc = transition(txn, ev, &key, in, now, ev->last, &r, baseline)) != 0)
            break;
    }
    st_cursor_close(cur);
    if (rc != 0 || baseline)
        return rc;
    /* Members of products that are gone. */
    uint8_t from[OB_ALERT_KEY_LEN];
    memset(from, 0, sizeof(from));
    memcpy(from, l->name, strlen(l->name));
    if ((rc = st_cursor_open(txn, ST_DB_ALERTS, &cur)) != 0)
        return rc;
    struct st_key gone[64];
    size_t n_gone = 0;
    const void *k, *v;
    size_t kl, vl;
    while (n_gone < 64 && st_cursor_next_raw(cur, from, sizeof(from), &k, &kl, &v, &vl) == 0) {
        struct st_key key;
        uint32_t entry;
        struct ob_member m;
        if (!ob_alert_key_parse(l->name, k, kl, &key, &entry))
            break;
        if (entry == 0 && ob_member_decode(v, vl, &m) == 0 && m.in_view &&
            st_record_get(txn, &key, &r) == -ENOENT)
            gone[n_gone++] = key;
    }
    st_cursor_close(cur);
    for (size_t i = 0; i < n_gone && rc == 0; i++)
        rc = transition(txn, ev, &gone[i], false, now, ev->last, NULL, false);
    return rc;
}

static int evaluate_fn(struct st_txn *txn, void *ud)
{
    struct eval *ev = ud;
    struct ob_alert_lane *l = ev->l;
    ev->n_made = ev->entries = ev->exits = 0;
    ev->resynced = ev->baselined = false;
    char name[64];
    uint64_t pos, first = 0, last;
    bool have, have_last;
    int rc = meta_u64(txn, ob_alert_meta(l->name, "seq", name), &pos, &have);
    if (rc == 0)
        rc = meta_u64(txn, ST_META_CHANGES_SEQ, &last, &have_last);
    if (rc == 0)
        rc = st_changes_first(txn, &first);
    if (rc != 0)
        return rc;
    ev->last = last;
    if (!have) {
        ev->baselined = true;
        rc = compare_all(txn, ev, true);
        pos = last;
    } else if (pos > last || first > pos + 1 || (first == 0 && last > pos)) {
        ev->resynced = true;
        rc = compare_all(txn, ev, false);
        pos = last;
    } else {
        size_t n = 0;
        rc = st_changes_read(txn, pos, l->changes, ALERT_BATCH, &n);
        for (size_t i = 0; rc == 0 && i < n; i++) {
            const struct st_change *c = &l->changes[i];
            struct st_key key;
            if (st_key_make(c->domain, c->asin, &key) != 0) {
                pos = c->seq;
                continue;
            }
            int g = c->event == ST_EV_DELETE ? -ENOENT : st_record_get(txn, &key, &l->rec);
            bool present = g == 0;
            if (g != 0 && g != -ENOENT && g != -EBADMSG && g != -ENOTSUP) {
                rc = g;
                break;
            }
            bool in = present && in_view(l, &l->rec, c->state, c->at_ms);
            rc = transition(txn, ev, &key, in, c->at_ms, c->seq, present ? &l->rec : NULL, false);
            pos = c->seq;
        }
    }
    ev->pos = pos;
    if (rc == 0)
        rc = st_meta_put_u64(txn, name, pos);
    return rc;
}

/* Follows the log one batch. *MORE when a full batch was read. */
static int evaluate(struct ob_alert_lane *l, bool *more)
{
    static __thread struct eval ev;
    memset(&ev, 0, sizeof(ev));
    ev.l = l;
    uint64_t before = 0;
    {
        struct st_txn *txn;
        char name[64];
        bool have;
        if (ob_read_begin(l->ctx, &txn) == 0) {
            meta_u64(txn, ob_alert_meta(l->name, "seq", name), &before, &have);
            ob_read_end(l->ctx, txn);
        }
    }
    int rc = ob_write(l->ctx, evaluate_fn, &ev);
    if (rc != 0) {
        log_once(l, "cannot follow the change log: %s", st_strerror(rc));
        return rc;
    }
    for (size_t i = 0; i < ev.n_made; i++)
        due_add(l, &ev.made[i].key, ev.made[i].entry, ev.made[i].next_ms);
    if (ev.baselined)
        kd_info("alert %s: starts at change %" PRIu64 "; deals already in its view are not "
                "announced",
                l->name, ev.pos);
    if (ev.resynced)
        kd_warn("alert %s: its position %" PRIu64 " is no longer in the change log: compared every "
                "record with its view instead (%zu entries, %zu exits)",
                l->name, before, ev.entries, ev.exits);
    *more = !ev.baselined && !ev.resynced && ev.pos - before == ALERT_BATCH;
    l->lag = ev.last > ev.pos ? (int64_t)(ev.last - ev.pos) : 0;
    return 0;
}

/* ---- the pending deliveries ------------------------------------------------------------- */

struct load {
    struct ob_alert_lane *l;
    int64_t now;
    struct due *found;
    size_t n_found, cap;
    int64_t dead;
    size_t recovered, dropped, pruned;
};

/* Reads the alert's deliveries: PENDING ones are due; SENDING ones were cut off by a crash. */
static int load_fn(struct st_txn *txn, void *ud)
{
    struct load *ld = ud;
    struct ob_alert_lane *l = ld->l;
    ld->n_found = 0;
    ld->dead = 0;
    ld->recovered = ld->dropped = ld->pruned = 0;
    uint8_t from[OB_ALERT_KEY_LEN];
    memset(from, 0, sizeof(from));
    memcpy(from, l->name, strlen(l->name));
    struct st_cursor *cur;
    int rc = st_cursor_open(txn, ST_DB_ALERTS, &cur);
    if (rc != 0)
        return rc;
    /* First pass: collect what to change (a cursor's db may not be written while walked). */
    struct fix {
        struct st_key key;
        uint32_t entry;
        uint8_t status;
    } *fixes = NULL;
    size_t n_fix = 0, cap_fix = 0;
    const void *k, *v;
    size_t kl, vl;
    static __thread struct ob_delivery d;
    while ((rc = st_cursor_next_raw(cur, from, sizeof(from), &k, &kl, &v, &vl)) == 0) {
        struct st_key key;
        uint32_t entry;
        if (!ob_alert_key_parse(l->name, k, kl, &key, &entry))
            break;
        if (entry == 0 || ob_delivery_decode(v, vl, &d) != 0)
            continue;
        uint8_t to = d.status;
        if (d.status == OB_D_SENDING)
            to = l->a.resend_unknown ? OB_D_PENDING : OB_D_DROPPED;
        else if ((d.status == OB_D_SENT || d.status == OB_D_DROPPED) &&
                 ld->now - (d.sent_ms ? d.sent_ms : d.entered_ms) > l->a.keep_ms)
            to = OB_D_NONE; /* delivered long ago: pruned */
        if (to == OB_D_PENDING) {
            if (ld->n_found == ld->cap) {
                size_t cap = ld->cap ? 2 * ld->cap : 64;
                struct due *nf = realloc(ld->found, cap * sizeof(*nf));
                if (nf == NULL) {
                    rc = -ENOMEM;
                    break;
                }
                ld->found = nf;
                ld->cap = cap;
            }
            ld->found[ld->n_found++] =
                (struct due){key, entry, d.status == OB_D_SENDING ? ld->now : d.next_ms};
        }
        ld->dead += to == OB_D_DEAD;
        if (to != d.status) {
            if (n_fix == cap_fix) {
                cap_fix = cap_fix ? 2 * cap_fix : 16;
                struct fix *nf = realloc(fixes, cap_fix * sizeof(*nf));
                if (nf == NULL) {
                    rc = -ENOMEM;
                    break;
                }
                fixes = nf;
            }
            fixes[n_fix++] = (struct fix){key, entry, to};
        }
    }
    st_cursor_close(cur);
    if (rc == -ENOENT)
        rc = 0;
    for (size_t i = 0; rc == 0 && i < n_fix; i++) {
        if (fixes[i].status == OB_D_NONE) {
            uint8_t dk[OB_ALERT_KEY_LEN];
            ob_alert_key(l->name, &fixes[i].key, fixes[i].entry, dk);
            rc = st_raw_del(txn, ST_DB_ALERTS, dk, sizeof(dk));
            ld->pruned++;
            continue;
        }
        if ((rc = ob_delivery_get(txn, l->name, &fixes[i].key, fixes[i].entry, &d)) != 0)
            break;
        d.status = fixes[i].status;
        if (d.status == OB_D_PENDING) {
            d.next_ms = ld->now;
            snprintf(d.last_error, sizeof(d.last_error),
                     "the outcome of attempt %" PRIu32 " was lost (the outbox stopped): sent again",
                     d.attempts);
            ld->recovered++;
        } else {
            snprintf(d.last_error, sizeof(d.last_error),
                     "the outcome of attempt %" PRIu32 " was lost: dropped (on_unknown = drop)",
                     d.attempts);
            ld->dropped++;
        }
        rc = ob_delivery_put(txn, l->name, &fixes[i].key, fixes[i].entry, &d);
    }
    free(fixes);
    return rc;
}

static int load_due(struct ob_alert_lane *l)
{
    struct load ld = {.l = l, .now = now_ms()};
    int rc = ob_write(l->ctx, load_fn, &ld);
    if (rc != 0) {
        free(ld.found);
        log_once(l, "cannot read its deliveries: %s", st_strerror(rc));
        return rc;
    }
    l->n_due = 0;
    for (size_t i = 0; i < ld.n_found; i++)
        due_add(l, &ld.found[i].key, ld.found[i].entry, ld.found[i].next_ms);
    free(ld.found);
    l->n_dead = ld.dead;
    l->due_loaded = true;
    if (ld.recovered > 0)
        kd_warn("alert %s: %zu deliveries were cut off by a stop or a crash, their outcome "
                "unknown: sending them again with the same delivery id (on_unknown = resend)",
                l->name, ld.recovered);
    if (ld.dropped > 0)
        kd_warn("alert %s: %zu deliveries were cut off by a stop or a crash: dropped "
                "(on_unknown = drop)",
                l->name, ld.dropped);
    return 0;
}

/* ---- one attempt ------------------------------------------------------------------------ */

struct bucket {
    int64_t tokens_milli;
    int64_t at_ms;
};

struct intent {
    struct ob_alert_lane *l;
    struct st_key key;
    uint32_t entry;
    int64_t now;
    bool gone;       /* not PENDING any more (a retry command, a prune) */
    int64_t wait_ms; /* > 0: no token yet, this long */
    struct ob_delivery d;
};

static void bucket_refill(const struct ob_alert *a, struct bucket *b, int64_t now)
{
    if (b->at_ms > now)
        b->at_ms = now; /* the clock went back */
    int64_t add = (now - b->at_ms) * a->rate_per_min * 1000 / 60000;
    if (add > 0) {
        b->tokens_milli += add;
        b->at_ms = now;
    }
    if (b->tokens_milli > a->burst * 1000)
        b->tokens_milli = a->burst * 1000;
}

static int intent_fn(struct st_txn *txn, void *ud)
{
    struct intent *it = ud;
    struct ob_alert_lane *l = it->l;
    it->gone = false;
    it->wait_ms = 0;
    int rc = ob_delivery_get(txn, l->name, &it->key, it->entry, &it->d);
    if (rc == -ENOENT || (rc == 0 && it->d.status != OB_D_PENDING)) {
        it->gone = true;
        return 0;
    }
    if (rc != 0)
        return rc;
    char name[64];
    struct bucket b = {0, 0};
    size_t n = 0;
    int64_t raw[2];
    if (st_meta_get_bytes(txn, ob_alert_meta(l->name, "bucket", name), raw, sizeof(raw), &n) == 0 &&
        n == sizeof(raw)) {
        b.tokens_milli = raw[0];
        b.at_ms = raw[1];
    } else {
        b.tokens_milli = l->a.burst * 1000;
        b.at_ms = it->now;
    }
    bucket_refill(&l->a, &b, it->now);
    if (b.tokens_milli < 1000) {
        it->wait_ms = (1000 - b.tokens_milli) * 60000 / (l->a.rate_per_min * 1000) + 1;
        return 0;
    }
    b.tokens_milli -= 1000;
    raw[0] = b.tokens_milli;
    raw[1] = b.at_ms;
    if ((rc = st_meta_put_bytes(txn, name, raw, sizeof(raw))) != 0)
        return rc;
    it->d.status = OB_D_SENDING;
    it->d.attempts++;
    return ob_delivery_put(txn, l->name, &it->key, it->entry, &it->d);
}

struct outcome_w {
    struct ob_alert_lane *l;
    struct st_key key;
    uint32_t entry;
    const struct ob_outcome *o;
    int64_t now;
    struct ob_delivery d;
};

/* The wait before attempt N + 1 after N failed: 2 s doubling, at most retry_max, +-20 %. */
static int64_t backoff_ms(const struct ob_alert *a, uint32_t attempts, int64_t retry_after)
{
    int64_t w = ALERT_RETRY_MIN;
    for (uint32_t i = 1; i < attempts && w < a->retry_max_ms; i++)
        w *= 2;
    if (w > a->retry_max_ms)
        w = a->retry_max_ms;
    uint32_t r = 0;
    if (getrandom(&r, sizeof(r), GRND_NONBLOCK) != (ssize_t)sizeof(r))
        r = (uint32_t)kd_mono_ns();
    w = w * 8 / 10 + (int64_t)(r % (uint32_t)(w * 4 / 10 + 1));
    return retry_after > w ? retry_after : w;
}

static int outcome_fn(struct st_txn *txn, void *ud)
{
    struct outcome_w *w = ud;
    struct ob_alert_lane *l = w->l;
    int rc = ob_delivery_get(txn, l->name, &w->key, w->entry, &w->d);
    if (rc != 0)
        return rc;
    struct ob_delivery *d = &w->d;
    d->last_status = w->o->status;
    snprintf(d->last_error, sizeof(d->last_error), "%s", w->o->error);
    switch (w->o->result) {
    case OB_DELIVERED:
        d->status = OB_D_SENT;
        d->sent_ms = w->now;
        d->last_error[0] = '\0';
        break;
    case OB_REFUSED:
        d->status = OB_D_DEAD;
        break;
    case OB_UNKNOWN:
        if (!l->a.resend_unknown) {
            d->status = OB_D_DROPPED;
            d->sent_ms = w->now;
            break;
        }
        /* sent again, with the same delivery id */
        __attribute__((fallthrough));
    case OB_FAILED:
        if ((int64_t)d->attempts >= l->a.attempts) {
            d->status = OB_D_DEAD;
        } else {
            d->status = OB_D_PENDING;
            d->next_ms = w->now + backoff_ms(&l->a, d->attempts, w->o->retry_after_ms);
        }
        break;
    }
    return ob_delivery_put(txn, l->name, &w->key, w->entry, d);
}

/* Sends the most overdue delivery if one is due and the limiter allows. Returns how long until
 * the next one may go (0: another is due now). */
static int64_t deliver_one(struct ob_alert_lane *l)
{
    int64_t now = now_ms();
    size_t best = l->n_due;
    for (size_t i = 0; i < l->n_due; i++)
        if (best == l->n_due || l->due[i].next_ms < l->due[best].next_ms)
            best = i;
    if (best == l->n_due)
        return ALERT_POLL_MS;
    if (l->due[best].next_ms > now)
        return l->due[best].next_ms - now;
    static __thread struct intent it;
    memset(&it, 0, sizeof(it));
    it.l = l;
    it.key = l->due[best].key;
    it.entry = l->due[best].entry;
    it.now = now;
    int rc = ob_write(l->ctx, intent_fn, &it);
    if (rc != 0) {
        log_once(l, "cannot record the intent to send: %s", st_strerror(rc));
        return 1000;
    }
    if (it.gone) {
        due_remove(l, best);
        return 0;
    }
    if (it.wait_ms > 0)
        return it.wait_ms; /* the rate limit */

    /* The intent is recorded: now the attempt. */
    char id[OB_DELIVERY_ID_MAX];
    ob_delivery_id(l->store_id, l->name, &it.key, it.d.seq, id);
    static __thread struct st_record r;
    st_record_init(&r);
    if (it.d.record_len > 0)
        st_record_decode(it.d.record, it.d.record_len, &r);
    else {
        r.domain = (uint8_t)st_key_domain(&it.key);
        st_key_asin(&it.key, r.asin);
    }
    struct ob_body_info info = {id, l->name, l->instance, it.entry, it.d.entered_ms};
    char *body = NULL;
    size_t len = 0;
    struct ob_outcome o;
    memset(&o, 0, sizeof(o));
    char secret[OB_SECRET_MAX];
    size_t secret_len = 0;
    bool have_secret = false;
    if (l->a.secret_file[0] != '\0') {
        if (ob_secret_read(&l->a, secret, &secret_len, o.error, sizeof(o.error)) == 0)
            have_secret = true;
        else
            o.result = OB_FAILED; /* not sent without its secret */
    }
    if (o.error[0] == '\0' && ob_body(&l->a, &r, &info, &l->rules, &body, &len) != 0) {
        o.result = OB_FAILED;
        snprintf(o.error, sizeof(o.error), "out of memory");
    }
    if (o.error[0] == '\0')
        /* Not cancelled by a stop: an attempt cut off is one whose outcome is lost (a duplicate
         * at the receiver), and it lasts at most the alert's timeout. */
        ob_deliver(&l->a, have_secret ? secret : NULL, secret_len, id, it.d.attempts, body, len,
                   NULL, NULL, &o);
    explicit_bzero(secret, sizeof(secret));
    free(body);
    struct outcome_w w = {.l = l, .key = it.key, .entry = it.entry, .o = &o, .now = now_ms()};
    rc = ob_write(l->ctx, outcome_fn, &w);
    if (rc != 0) {
        /* It stays SENDING in the store: the next start treats it as an unknown outcome. */
        log_once(l, "cannot record the outcome of %s: %s", id, st_strerror(rc));
        due_remove(l, best);
        l->due_loaded = false;
        return 1000;
    }
    if (o.result == OB_DELIVERED) {
        shm_counter_add(l->ctx->counters, SHM_C_alerts_sent, 1);
        l->logged_error[0] = '\0';
    } else {
        shm_counter_add(l->ctx->counters, SHM_C_alerts_failed, 1);
        log_once(l, "%s: %s (attempt %" PRIu32 ")", id, o.error, w.d.attempts);
    }
    if (w.d.status == OB_D_PENDING) {
        l->due[best].next_ms = w.d.next_ms;
    } else {
        due_remove(l, best);
        if (w.d.status == OB_D_DEAD) {
            l->n_dead++;
            kd_warn("alert %s: %s is a dead letter after %" PRIu32 " attempts: %s (kdeals alerts "
                    "retry %s)",
                    l->name, id, w.d.attempts, o.error, l->name);
        }
    }
    return 0;
}

/* ---- the lane --------------------------------------------------------------------------- */

/* Reads the alert's section again after a reload. Returns 0, -ENOENT (gone) or -EINVAL. */
static int configure(struct ob_alert_lane *l)
{
    uint64_t v = ob_config(l->ctx, l->cfg);
    if (l->have_cfg && v == l->cfg_version)
        return l->parsed ? 0 : -EINVAL;
    l->have_cfg = true;
    l->cfg_version = v;
    char err[512];
    int rc = ob_alert_parse(l->cfg, l->name, &l->a, err, sizeof(err));
    l->parsed = rc == 0;
    if (rc == -ENOENT)
        return rc;
    if (rc != 0) {
        log_once(l, "%s", err);
        return rc;
    }
    jd_rules_from_cfg(l->cfg, &l->rules);
    snprintf(l->instance, sizeof(l->instance), "%.63s/%.32s", l->ctx->hostname,
             l->cfg->daemon_instance);
    if (l->cfg->mirror_instance[0] != '\0')
        snprintf(l->instance, sizeof(l->instance), "%.63s", l->cfg->mirror_instance);
    return 0;
}

static int store_id_fn(struct st_txn *txn, void *ud)
{
    return ob_store_id(txn, ud);
}

/* Whether `kdeals alerts retry` asked for the deliveries to be read again. */
static bool kicked(struct ob_alert_lane *l)
{
    struct st_txn *txn;
    if (ob_read_begin(l->ctx, &txn) != 0)
        return false;
    char name[64];
    uint64_t kick = 0;
    bool have;
    meta_u64(txn, ob_alert_meta(l->name, "kick", name), &kick, &have);
    ob_read_end(l->ctx, txn);
    bool k = kick != l->kick_seen;
    l->kick_seen = kick;
    return k;
}

int64_t ob_alert_step(struct ob_alert_lane *l)
{
    int rc = configure(l);
    if (rc == -ENOENT) {
        kd_info("alert %s: no longer in the config: stopped", l->name);
        return -1;
    }
    if (rc != 0)
        return ALERT_IDLE_MS;
    if (l->store_id[0] == '\0' && ob_write(l->ctx, store_id_fn, l->store_id) != 0) {
        l->store_id[0] = '\0';
        return 1000;
    }
    if (kicked(l))
        l->due_loaded = false;
    if (!l->due_loaded && load_due(l) != 0)
        return 1000;
    int64_t now = now_ms();
    if (now >= l->prune_at_ms) {
        l->prune_at_ms = now + ALERT_PRUNE_EVERY;
        l->due_loaded = false; /* the next load prunes what was delivered long ago */
    }
    bool more = false;
    if (evaluate(l, &more) != 0)
        return 1000;
    int64_t wait = deliver_one(l);
    publish_gauges(l);
    if (more)
        return 0;
    return wait < ALERT_POLL_MS ? wait : ALERT_POLL_MS;
}

const char *ob_alert_lane_name(const struct ob_alert_lane *l)
{
    return l->name;
}

int ob_alert_lane_new(struct ob_ctx *ctx, const char *name, unsigned index,
                      struct ob_alert_lane **out)
{
    struct ob_alert_lane *l = calloc(1, sizeof(*l));
    if (l == NULL)
        return -ENOMEM;
    l->cfg = malloc(sizeof(*l->cfg));
    if (l->cfg == NULL) {
        free(l);
        return -ENOMEM;
    }
    l->ctx = ctx;
    l->index = index;
    snprintf(l->name, sizeof(l->name), "%s", name);
    l->prune_at_ms = now_ms() + ALERT_PRUNE_EVERY;
    *out = l;
    return 0;
}

void ob_alert_lane_free(struct ob_alert_lane *l)
{
    if (l == NULL)
        return;
    struct ob_ctx *c = l->ctx;
    uv_mutex_lock(&c->lock);
    c->alert_pending[l->index] = c->alert_dead[l->index] = c->alert_lag[l->index] = 0;
    uv_mutex_unlock(&c->lock);
    free(l->due);
    free(l->cfg);
    free(l);
}
