/*
 * stage.c: the scanner stage. See stage.h for its invariants.
 *
 * Flow of one page: start_page() renders the page's selection and submits it through the
 * spender (or reads a chunk of the ASIN list); the deals stream into the page, each judged by
 * the free pre-filter as it arrives; page_done() keeps the page only if the answer was
 * complete, then drops the ASINs the `seen` db says were peeked recently and are unchanged
 * (dedup). The free pre-score (scanner/rules.h) ranks each candidate the pre-filter kept, and
 * (the fees rule) drops it when the fees its last peek read make it a sure fail. submit_peeks()
 * takes up to [scan] peek_batch queued candidates per request (the prescore rule: best
 * pre-score first; else in page order), read at submit time
 * so a HUP applies to the next batch, and fewer when their expected survivors would overfill
 * the committer backlog (peek_room, backlog_limit). peek_done() writes the batch's
 * `seen` records, the survivors' `pending` records in one transaction, then pushes the ring
 * records. A candidate the answer lacks, or had with fields of the wrong JSON type (the client
 * withholds those: KP_ASIN_MALFORMED), is not judged and not marked peeked in `seen`: a later
 * pass asks for it again, where absent fields would have rejected it on no evidence. Once every
 * candidate is done, finish_page() stores the advanced cursor, and the next page (or, after a
 * short page, the pass pause, none while tokens pile up) follows. With the fresh rule the /deal
 * selection is rendered newest deal first (sortType 1), on_deal() notes each page's oldest and
 * newest deal moment and whether the page keeps that order, and finish_page() ends the pass at
 * the page that reaches the last pass's horizon (scanner/rules.h, scanner_fresh_ends_pass).
 * With the probe rule, start_page() makes a fresh pass between those over the seller's selection
 * a probe (the deepest drops only: scanner_probe_pass, scanner_probe_floor, learned from the
 * survivors write_batch() sees); with the cadence rule, pass_pause_ms() holds the next fresh pass
 * back until its pages are worth their tokens (scanner_pass_interval_min); with the delta rule,
 * start_page() begins a fresh pass with pages sorted by absolute drop (scanner_delta_page),
 * which finish_page() leaves out of the cursor; with the lane rule, the first of them also comes
 * at a page boundary or in the pause between passes when due (scanner_delta_next: step() wakes
 * for it in the pause, start_page() reads it alone there).
 *
 * The dear list sources (lightning deals, best-seller lists) fetch a whole list with one
 * request (fetch_list, within the deficit bound and sent once per grant), keep it as entries
 * (on_list_lightning, on_list_asin), and put it on the page one chunk at a time
 * (load_list_chunk), the lightning deals that are not candidates (scanner_lightning_candidate)
 * done at once for free. From there a chunk is a page like any other; the cursor holds the
 * list and the chunk's offset.
 */
#include "scanner/stage.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "base/clock.h"
#include "base/kd_assert.h"
#include "base/log.h"
#include "judge/inputs.h"
#include "judge/market.h"
#include "judge/rules.h"
#include "store/record.h"
#include "scanner/learned.h"
#include "scanner/pipe.h"
#include "scanner/scanner.h"
#include "shm/counters.h"
#include "worker/value.h"

#define BACKOFF_BASE_MS    500
#define BACKOFF_MAX_MS     30000
#define THROTTLE_POLL_MS   250
#define PUSH_RETRY_MS      100
#define STORE_RETRY_MS     1000
#define NO_SOURCE_RETRY_MS 30000
#define STOP_POLL_MS       50
#define STOP_WAIT_MS       10000
#define PAGES_PER_STEP     4
#define ASIN_CHUNK         SCANNER_PAGE_DEALS

static void step(struct scanner *sc);
static void save_list(struct scanner *sc);
static void kick(struct scanner *sc);

static const struct cfg *cfg(const struct scanner *sc)
{
    return &sc->wk->cfg;
}

/* The tokens beyond which a fresh pass is a full walk (scanner_fresh_full_tokens). */
static int64_t full_tokens(const struct scanner *sc, int64_t rate)
{
    int64_t walk = sc->walk_pages > 0
                       ? tb_cost_estimate(sc->sp.tb, TB_KIND_DEAL_PAGE, (int64_t)sc->walk_pages)
                       : 0;
    return scanner_fresh_full_tokens(rate, walk);
}

/* Whether the first delta page is also read between passes (the lane rule). */
static bool lane_on(const struct scanner *sc)
{
    return (sc->value_rules & VAL_RULE_LANE) != 0;
}

/* The cadence interval of one delta page, Keepa minutes (scanner_pass_interval_min). */
static int64_t delta_interval_min(const struct scanner *sc, int64_t rate)
{
    return scanner_pass_interval_min(
        tb_cost_estimate(sc->sp.tb, TB_KIND_DEAL_PAGE, 1), rate,
        shm_counter_total(sc->wk->seg.layout, SHM_C_vanish_half_life_min));
}

/* SCANNER_KNOWN_MAX_AGE_MIN Keepa minutes, in this clock's milliseconds. */
static int64_t known_max_age_ms(const struct scanner *sc)
{
    return cfg_keepa_ms(cfg(sc), (int64_t)SCANNER_KNOWN_MAX_AGE_MIN * 60000);
}

static struct shm_counter_block *counters(const struct scanner *sc)
{
    return sc->wk->counters;
}

static int64_t backoff_ns(unsigned failures)
{
    int64_t ms = BACKOFF_BASE_MS;
    for (unsigned i = 1; i < failures && ms < BACKOFF_MAX_MS; i++)
        ms *= 2;
    if (ms > BACKOFF_MAX_MS)
        ms = BACKOFF_MAX_MS;
    return ms * KD_NS_PER_MS;
}

static uint8_t st_source(int source)
{
    switch (source) {
    case CFG_SOURCE_ASINS:
        return ST_SOURCE_ASINS;
    case CFG_SOURCE_QUERY:
        return ST_SOURCE_QUERY;
    case CFG_SOURCE_LIST:
        return ST_SOURCE_LIST;
    case CFG_SOURCE_LIGHTNING:
        return ST_SOURCE_LIGHTNING;
    case CFG_SOURCE_BESTSELLERS:
        return ST_SOURCE_BESTSELLERS;
    default:
        return ST_SOURCE_DEALS;
    }
}

static const char *source_name(int source)
{
    return source == CFG_SOURCE_ASINS         ? "asins"
           : source == CFG_SOURCE_QUERY       ? "query"
           : source == CFG_SOURCE_LIST        ? "list"
           : source == CFG_SOURCE_LIGHTNING   ? "lightning"
           : source == CFG_SOURCE_BESTSELLERS ? "bestsellers"
                                              : "deals";
}

/* The sources that fetch a whole list with one dear request (scanner/rules.h). */
static bool list_source(int source)
{
    return source == CFG_SOURCE_LIGHTNING || source == CFG_SOURCE_BESTSELLERS;
}

/* The lists a pass of the list source walks: the lightning list, or one per category. */
static size_t n_lists(const struct scanner *sc)
{
    return sc->source == CFG_SOURCE_LIGHTNING ? 1 : sc->bs_n;
}

/* The sources read from a file line by line (an ASIN list, the seller's list). */
static bool file_source(int source)
{
    return source == CFG_SOURCE_ASINS || source == CFG_SOURCE_LIST;
}

static const char *list_path(const struct scanner *sc)
{
    return sc->source == CFG_SOURCE_LIST ? cfg(sc)->scan_list_file : cfg(sc)->scan_asins_file;
}

/* Whether the /deal feed is read newest first (the fresh rule). */
static bool fresh_walk(const struct scanner *sc)
{
    return (sc->value_rules & VAL_RULE_FRESH) != 0 && sc->source == CFG_SOURCE_DEALS;
}

/* Hash the cursor must carry for the source as configured now. */
static uint64_t source_hash(const struct scanner *sc)
{
    if (file_source(sc->source))
        return sc->list_hash;
    if (sc->source == CFG_SOURCE_LIGHTNING)
        return scanner_fnv1a(SCANNER_FNV_INIT, "lightning", 9);
    if (sc->source == CFG_SOURCE_BESTSELLERS)
        return sc->bs_hash;
    if (!sc->sel_ok)
        return 0;
    /* A page of the fresh order is another page than the selection's own of that number. */
    return fresh_walk(sc) ? scanner_fnv1a(sc->sel.hash, "fresh", 5) : sc->sel.hash;
}

/* The list item candidate C came from, or NULL. */
static const struct scanner_list_item *item_of(const struct scanner *sc,
                                               const struct scanner_cand *c)
{
    return c->item >= 0 && (size_t)c->item < sc->n_items ? &sc->items[c->item] : NULL;
}

/* The offers[].condition of the seller's list items ([scan] list_condition: new .. acceptable). */
static int list_condition(const struct scanner *sc)
{
    return cfg(sc)->scan_list_condition + 1;
}

static bool busy_batches(const struct scanner *sc)
{
    for (int i = 0; i < SCANNER_MAX_BATCHES; i++)
        if (sc->batches[i].busy)
            return true;
    return false;
}

/* ---------- rings ---------- */

/*
 * Pushes REC to the ring of backlog B (survivors or refresh), behind any records still
 * waiting for room. A survivor is already in `pending`, so even a dropped notification loses
 * nothing; a refresh is a free extra.
 */
static void push(struct scanner *sc, struct wk_backlog *b, const struct st_pending *rec)
{
    size_t before = b->n;
    wk_backlog_push(b, rec);
    if (b->n > before)
        sc->push_retry_ns = kd_mono_ns() + PUSH_RETRY_MS * KD_NS_PER_MS;
}

static size_t unpushed(const struct scanner *sc)
{
    return sc->survivors_out.n + sc->refresh_out.n;
}

/* Retries the records that did not fit, at most every PUSH_RETRY_MS; keeps the ring gauges. */
static void flush_unpushed(struct scanner *sc, int64_t now, int64_t *wake)
{
    struct wk_backlog *backlogs[] = {&sc->survivors_out, &sc->refresh_out};
    for (size_t i = 0; i < KD_ARRAY_LEN(backlogs); i++) {
        struct wk_backlog *b = backlogs[i];
        if (b->n > 0 && now < sc->push_retry_ns) {
            if (sc->push_retry_ns < *wake)
                *wake = sc->push_retry_ns;
            continue;
        }
        if (wk_backlog_flush(b) > 0) {
            sc->push_retry_ns = now + PUSH_RETRY_MS * KD_NS_PER_MS;
            if (sc->push_retry_ns < *wake)
                *wake = sc->push_retry_ns;
        }
    }
}

/* ---------- peek results -> store ---------- */

struct write_ctx {
    struct scanner *sc;
    struct scanner_batch *b;
    size_t n_survivors, n_refresh, n_rejected, n_own_deals, n_own_other;
    size_t n_known; /* survivors their stored full read fails (scanner_known_fail) */
    uint16_t survivors[KP_MAX_BATCH]; /* positions in b->res */
    uint16_t refresh[KP_MAX_BATCH];
    bool fees_saved; /* the learned low fees rode along */
};

/* The learned low fees are saved (meta ST_META_LEARNED_SCANNER) in a peek batch's write once
 * this many peeks taught them since the last save, or this long after it with any; and at
 * stop. */
#define SCANNER_FEES_SAVE_N  32
#define SCANNER_FEES_SAVE_MS (5 * 60 * 1000)

/* The learned record's fields (store/codec.h): the low fees, the peek outcomes. */
static size_t learned_fields(struct scanner *sc, struct st_learned_field *f)
{
    f[0] = (struct st_learned_field){"low_fees", sc->fees_nums, SCANNER_FEES_NUMS,
                                     SCANNER_FEES_NUM_MAX};
    f[1] = (struct st_learned_field){"peek_rates", sc->peek_nums, SCANNER_PEEK_NUMS, UINT32_MAX};
    return 2;
}

static int save_fees(struct scanner *sc, struct st_txn *txn, bool force, bool *saved)
{
    uint32_t unsaved =
        sc->fees != NULL && sc->fees_nums != NULL ? sc->fees->all.n - sc->fees_saved_n : 0;
    if (unsaved == 0 ||
        (!force && unsaved < SCANNER_FEES_SAVE_N &&
         kd_mono_ns() - sc->fees_saved_ns < (int64_t)SCANNER_FEES_SAVE_MS * KD_NS_PER_MS))
        return 0;
    scanner_fees_pack(sc->fees, sc->fees_nums);
    scanner_peek_pack(sc->fees, sc->peek_nums);
    struct st_learned_field f[2];
    int rc = st_meta_put_learned(txn, ST_META_LEARNED_SCANNER, f, learned_fields(sc, f));
    if (rc == -EINVAL)
        return 0; /* never seen: the store keeps the last save */
    *saved = rc == 0;
    return rc;
}

static void fees_saved(struct scanner *sc)
{
    sc->fees_saved_n = sc->fees->all.n;
    sc->fees_saved_ns = kd_mono_ns();
}

/* At start: the low fees a previous run learned, else none (and one log line). */
static void load_fees(struct scanner *sc)
{
    struct scanner_fees *scratch = malloc(sizeof(*scratch));
    struct st_txn *txn;
    if (sc->fees == NULL || sc->fees_nums == NULL || scratch == NULL) {
        free(scratch);
        return;
    }
    struct st_learned_field f[2];
    size_t nf = learned_fields(sc, f);
    int rc = st_read_begin(sc->env, &txn);
    if (rc == 0) {
        rc = st_meta_get_learned(txn, ST_META_LEARNED_SCANNER, f, nf);
        st_read_end(txn);
    }
    /* The peek outcomes are checked before the low fees are restored: all or nothing. */
    struct scanner_peek_rate peek[SCANNER_PEEK_CLASSES];
    if (rc == -ENOENT)
        kd_info("no learned low fees in the store: they stand after %d peeks",
                SCANNER_FEES_LOW_MIN);
    else if (rc != 0 || !scanner_peek_unpack(sc->peek_nums, peek) ||
             !scanner_fees_unpack(sc->fees_nums, sc->fees, scratch))
        kd_warn("the learned low fees in the store (meta %s) are ignored: %s; they stand again "
                "after %d peeks",
                ST_META_LEARNED_SCANNER,
                rc != 0 ? st_strerror(rc) : "numbers no peek could have taught",
                SCANNER_FEES_LOW_MIN);
    else {
        memcpy(sc->fees->peek, peek, sizeof(peek));
        kd_info("learned low fees read from the store: %u peeks of every product; %u kinds of "
                "candidate not peeked",
                sc->fees->all.n, scanner_peek_classes_shut(sc->fees));
    }
    free(scratch);
    fees_saved(sc);
}

static int save_fees_fn(struct st_txn *txn, void *ud)
{
    bool saved = false;
    return save_fees(ud, txn, true, &saved);
}

static void fill_record(const struct scanner *sc, const struct scanner_batch *b, size_t k,
                        struct st_pending *p)
{
    const struct scanner_peeked *r = &b->res[k];
    st_pending_init(p);
    memcpy(p->asin, r->asin, sizeof(p->asin));
    p->domain = (uint8_t)cfg(sc)->keepa_domain;
    p->peek_ms = b->peek_ms;
    p->peek_buy_cents = r->v.buy_cents;
    p->sell_estimate_cents = r->v.sell_cents;
    p->source = st_source(sc->source);
    p->in = r->in;
    p->peek_priced = r->v.priced;
    p->peek_profit_cents = r->v.priced ? r->v.profit_cents : 0;
    p->peek_roi_bp = r->v.priced ? r->v.roi_bp : 0;
    p->peek_max_cost_cents = r->v.max_cost_cents;
}

/*
 * A product of the seller's list at their own cost: the peek read everything its judgement
 * needs (stats, fees, flags; the buy side is the cost), so it is stored as a record now, deal
 * or not, with no full fetch (docs/operations.md, "Your own buy costs"). A stored record keeps
 * its mark and history; a changed cost in the list is judged again at the next pass.
 */
static int put_own_record(struct write_ctx *w, struct st_txn *txn, const struct st_key *key,
                          const struct scanner_peeked *r, const struct scanner_list_item *item)
{
    struct scanner *sc = w->sc;
    const struct cfg *c = cfg(sc);
    struct st_record rec;
    int rc = st_record_get(txn, key, &rec);
    if (rc == -ENOENT || rc == -EBADMSG || rc == -ENOTSUP) {
        st_record_init(&rec);
        memcpy(rec.asin, r->asin, sizeof(rec.asin));
        rec.domain = (uint8_t)c->keepa_domain;
        rec.first_seen_ms = w->b->peek_ms;
    } else if (rc != 0) {
        return rc;
    }
    rec.source = ST_SOURCE_LIST;
    st_record_set_title(&rec, r->title, strlen(r->title));
    if (r->category[0] != '\0')
        st_record_set_category(&rec, r->category, strlen(r->category));
    if (item != NULL) {
        st_record_set_source_url(&rec, item->l.url, strlen(item->l.url));
        st_record_set_note(&rec, item->l.note, strlen(item->l.note));
    }
    rec.in = r->in;
    st_record_judged(&rec, &r->v, sc->rules_hash, ST_EV_COMMIT, w->b->peek_ms,
                     (uint32_t)c->update_expire_after_failures,
                     w->b->peek_ms + cfg_keepa_ms(c, c->update_min_interval_ms));
    rc = st_record_put(txn, &rec, ST_EV_COMMIT, w->b->peek_ms);
    if (rc == 0 && rec.state == ST_STATE_DEAL)
        w->n_own_deals++;
    else if (rc == 0)
        w->n_own_other++;
    return rc;
}

/* Remembers which ASINs the code of candidate C resolved to (none too), for later passes. */
static int put_code_map(struct write_ctx *w, struct st_txn *txn, const struct scanner_cand *c,
                        uint16_t pos)
{
    struct scanner_batch *b = w->b;
    uint8_t buf[8 + SCANNER_CODE_LIMIT * ST_ASIN_LEN];
    uint64_t at = (uint64_t)b->peek_ms;
    for (int i = 0; i < 8; i++)
        buf[i] = (uint8_t)(at >> (56 - 8 * i));
    size_t n = 8;
    for (size_t k = 0; k < b->n_res && n + ST_ASIN_LEN <= sizeof(buf); k++)
        if (b->res[k].cand == pos) {
            memcpy(buf + n, b->res[k].asin, ST_ASIN_LEN);
            n += ST_ASIN_LEN;
        }
    char name[64];
    snprintf(name, sizeof(name), SCANNER_META_CODE "%d.%s", (int)cfg(w->sc)->keepa_domain, c->code);
    return st_meta_put_bytes(txn, name, buf, n);
}

/* The batch's records in one transaction; may run more than once (map growth). */
static int write_batch_fn(struct st_txn *txn, void *ud)
{
    struct write_ctx *w = ud;
    struct scanner *sc = w->sc;
    struct scanner_batch *b = w->b;
    w->n_survivors = w->n_refresh = w->n_rejected = w->n_own_deals = w->n_own_other = 0;
    w->n_known = 0;
    for (size_t k = 0; k < b->n_res; k++) {
        const struct scanner_peeked *r = &b->res[k];
        const struct scanner_cand *c = &sc->page.c[b->idx[r->cand]];
        struct st_key key;
        if (st_key_make((unsigned)cfg(sc)->keepa_domain, r->asin, &key) != 0)
            continue;
        bool pass = r->deal;
        struct st_seen seen = {.peek_ms = b->peek_ms,
                               .verdict = pass ? ST_VERDICT_SURVIVOR : ST_VERDICT_REJECTED,
                               .feed_last_update_min = c->feed_last_update_min,
                               .feed_price_hash = c->feed_hash};
        int rc = st_seen_put(txn, &key, &seen);
        if (rc != 0)
            return rc;
        if (r->own_cost) {
            rc = put_own_record(w, txn, &key, r, item_of(sc, c));
            if (rc != 0)
                return rc;
            continue;
        }
        if (!pass)
            w->n_rejected++;
        struct st_record rec;
        rc = st_record_get(txn, &key, &rec);
        enum scanner_peek_route route = scanner_peek_route(rc, rc == 0 ? rec.state : 0, pass);
        if (route == SCANNER_ROUTE_ERROR)
            return rc;
        if (route == SCANNER_ROUTE_REFRESH) {
            w->refresh[w->n_refresh++] = (uint16_t)k;
            continue;
        }
        if (route == SCANNER_ROUTE_NONE)
            continue;
        if (rc == 0 && scanner_known_fail(&rec, r->in.new_cents, r->in.used_cents, &sc->rules,
                                          kd_wall_ms(), known_max_age_ms(sc))) {
            seen.verdict = ST_VERDICT_REJECTED; /* as the full fetch would find */
            rc = st_seen_put(txn, &key, &seen);
            if (rc != 0)
                return rc;
            w->n_known++;
            continue;
        }
        struct st_pending p;
        fill_record(sc, b, k, &p);
        struct st_pending old;
        if (st_pending_get(txn, &key, &old) == 0)
            p.attempts = old.attempts;
        rc = st_pending_put(txn, &p);
        if (rc != 0)
            return rc;
        w->survivors[w->n_survivors++] = (uint16_t)k;
    }
    for (size_t i = 0; b->by_code && i < b->n; i++) {
        int rc = put_code_map(w, txn, &sc->page.c[b->idx[i]], (uint16_t)i);
        if (rc != 0)
            return rc;
    }
    w->fees_saved = false;
    return save_fees(sc, txn, false, &w->fees_saved);
}

/* " (3 roi, 1 drops365)": the batch's rejections by the judgement's first failing criterion,
 * for the log. */
static void rejection_reasons(const struct scanner_batch *b, char *out, size_t cap)
{
    const char *names[KP_MAX_BATCH];
    size_t count[KP_MAX_BATCH], kinds = 0;
    for (size_t i = 0; i < b->n_res; i++) {
        if (b->res[i].deal || b->res[i].own_cost || b->res[i].reason == NULL)
            continue; /* own-cost products are stored either way: counted apart */
        size_t k = 0;
        while (k < kinds && strcmp(names[k], b->res[i].reason) != 0)
            k++;
        if (k == kinds) {
            names[kinds] = b->res[i].reason;
            count[kinds++] = 0;
        }
        count[k]++;
    }
    size_t len = 0;
    out[0] = '\0';
    for (size_t k = 0; k < kinds && len + 1 < cap; k++) {
        int n =
            snprintf(out + len, cap - len, "%s%zu %s", len == 0 ? " (" : ", ", count[k], names[k]);
        if (n < 0 || (size_t)n >= cap - len)
            return;
        len += (size_t)n;
    }
    if (len > 0 && len + 1 < cap)
        memcpy(out + len, ")", 2);
}

/* Writes batch B's results. Returns 0 (the batch is finished) or the store's error. */

static int write_batch(struct scanner *sc, struct scanner_batch *b)
{
    struct write_ctx w = {.sc = sc, .b = b};
    int rc = st_write(sc->env, write_batch_fn, &w);
    if (rc != 0) {
        if (!b->write_pending)
            kd_error("store write of a peek batch failed: %s; its %zu results stay in memory and "
                     "the write is retried (peeks are paused meanwhile)",
                     st_strerror(rc), b->n);
        wk_set_error(sc->wk, "store write failed: %s", st_strerror(rc));
        b->write_pending = true;
        sc->store_retry_ns = kd_mono_ns() + STORE_RETRY_MS * KD_NS_PER_MS;
        return rc;
    }
    if (b->write_pending)
        kd_info("the delayed store write succeeded: %zu peek results stored from memory", b->n);
    if (w.fees_saved)
        fees_saved(sc);
    size_t delivered = 0;
    for (size_t i = 0; i < b->n; i++)
        delivered += b->got[i];
    struct shm_counter_block *cb = counters(sc);
    shm_counter_add(cb, SHM_C_store_writes, 1);
    shm_counter_add(cb, SHM_C_asins_peeked, (int64_t)b->n_res);
    shm_counter_add(cb, SHM_C_survivors, (int64_t)w.n_survivors);
    sc->pass_peeked += b->n_res;
    sc->pass_survivors += w.n_survivors;
    for (size_t k = 0; k < w.n_survivors; k++) {
        struct st_pending p;
        fill_record(sc, b, w.survivors[k], &p);
        push(sc, &sc->survivors_out, &p);
        const struct scanner_cand *c = &sc->page.c[b->idx[b->res[w.survivors[k]].cand]];
        /* A probe's survivors are all above its floor, a delta page's are the dear ones. */
        if (c->feed_drop_pct >= 0 && !sc->pass_probe && !sc->page_delta)
            scanner_drops_put(&sc->drops, c->feed_drop_pct);
    }
    for (size_t k = 0; k < w.n_refresh; k++) {
        struct st_pending p;
        fill_record(sc, b, w.refresh[k], &p);
        push(sc, &sc->refresh_out, &p);
    }
    for (size_t i = 0; sc->fees != NULL && !b->by_code && i < b->n_res; i++)
        scanner_peek_learn(sc->fees, sc->page.c[b->idx[b->res[i].cand]].peek_class, b->res[i].deal);
    if (sc->fees != NULL)
        shm_gauge_set(cb, SHM_C_peek_classes_shut, (int64_t)scanner_peek_classes_shut(sc->fees));
    for (size_t i = 0; i < b->n_res; i++) /* each ASIN's verdict, for tools/missed-top.py */
        kd_debug("peeked %s: %s, profit %lld", b->res[i].asin,
                 b->res[i].deal     ? "survivor"
                 : b->res[i].reason ? b->res[i].reason
                                    : "other",
                 (long long)b->res[i].v.profit_cents);
    char why[256];
    rejection_reasons(b, why, sizeof(why));
    char own[96] = "";
    if (w.n_own_deals + w.n_own_other > 0)
        snprintf(own, sizeof(own), ", %zu at your cost stored (%zu deals)",
                 w.n_own_deals + w.n_own_other, w.n_own_deals);
    if (b->by_code) {
        /* A code that resolves to nothing is the seller's line to fix; the rest goes on. */
        for (size_t i = 0; i < b->n; i++) {
            if (b->got[i])
                continue;
            const struct scanner_cand *c = &sc->page.c[b->idx[i]];
            const struct scanner_list_item *it = item_of(sc, c);
            const struct jd_market *m = jd_market((unsigned)cfg(sc)->keepa_domain);
            kd_log(sc->list_warned ? KD_LOG_DEBUG : KD_LOG_WARN,
                   "%s:%llu: code %s resolves to no product on %s; line skipped (check the "
                   "UPC/EAN, or give the ASIN)",
                   list_path(sc), (unsigned long long)(it != NULL ? it->line : 0), c->code,
                   m != NULL ? m->host : "this marketplace");
            sc->pass_unresolved++;
        }
        kd_info("code lookup: %zu codes, %zu resolved to %zu products, %zu survivors, %zu "
                "rejected%s%s, %zu stored deals to refresh, %.0f tokens",
                b->n, delivered, b->n_res, w.n_survivors, w.n_rejected, why, own, w.n_refresh,
                b->tokens);
    } else {
        kd_info("peek: %zu asins, %zu delivered, %zu survivors, %zu rejected%s%s, %zu stored "
                "deals to refresh, %zu survivors failed by their stored full read, %zu missing "
                "(retried next pass; %zu of them with mistyped fields), %.0f tokens",
                b->n, delivered, w.n_survivors, w.n_rejected, why, own, w.n_refresh, w.n_known,
                b->n - delivered, b->n_malformed, b->tokens);
    }
    /* Missing ones are not marked peeked: a later pass asks again. */
    scanner_page_release(&sc->page, b->idx, b->n, true);
    b->write_pending = false;
    b->busy = false;
    return 0;
}

/* ---------- peek requests ---------- */

/* Paid-for results wait for the store: nothing more is asked of Keepa meanwhile. */
static bool store_blocked(const struct scanner *sc)
{
    if (sc->cursor_write_pending)
        return true;
    for (int i = 0; i < SCANNER_MAX_BATCHES; i++)
        if (sc->batches[i].write_pending)
            return true;
    return false;
}

static int build_peek(struct kp_call *call, void *ud)
{
    struct scanner_batch *b = ud;
    struct scanner *sc = b->sc;
    /* A batch queued before another's write failed is not sent meanwhile (peek_done puts its
     * ASINs back); with the pipe a queued page can delay its grant past that failure. */
    if (store_blocked(sc))
        return -EAGAIN;
    const char *ids[KP_MAX_BATCH];
    for (size_t i = 0; i < b->n; i++) {
        const struct scanner_cand *c = &sc->page.c[b->idx[i]];
        ids[i] = b->by_code ? c->code : c->asin;
        b->got[i] = false;
    }
    b->n_res = 0;
    struct kp_product_params p;
    memset(&p, 0, sizeof(p));
    p.domain = (int)cfg(sc)->keepa_domain;
    if (b->by_code) {
        p.codes = ids;
        p.n_codes = b->n;
        p.code_limit = SCANNER_CODE_LIMIT;
    } else {
        p.asins = ids;
        p.n_asins = b->n;
    }
    p.stats_days = 365; /* avg90 and avg365 for the sell estimate */
    p.history = KP_NO;
    int64_t offers = cfg(sc)->scan_peek_offers;
    if (offers > 0)
        p.offers = offers < 20 ? 20 : offers > 100 ? 100 : (int)offers;
    return kp_call_product(call, &p);
}

/* The batch position of the candidate product P answers, or -1 (see scanner_code_matches). */
static int answered_cand(const struct scanner *sc, const struct scanner_batch *b,
                         const struct kp_product *p)
{
    for (size_t i = 0; i < b->n; i++) {
        const struct scanner_cand *c = &sc->page.c[b->idx[i]];
        if (b->by_code ? scanner_code_matches(p, c->code) : strcmp(c->asin, p->asin) == 0)
            return (int)i;
    }
    /* A lookup of one code: whatever came back is what it resolves to (an ISBN-13 may not
     * be listed among the product's codes). */
    return b->by_code && b->n == 1 ? 0 : -1;
}

static int peek_product(const struct kp_product *p, void *ud)
{
    struct scanner_batch *b = ud;
    struct scanner *sc = b->sc;
    int cand = answered_cand(sc, b, p);
    char asin[ST_ASIN_LEN + 1];
    if (cand < 0 || scanner_parse_asin_line(p->asin, asin) != 1) {
        if (b->by_code)
            kd_debug("code lookup: %s matches none of the codes asked for; not used", p->asin);
        return 0;
    }
    size_t k = 0;
    while (k < b->n_res && strcmp(b->res[k].asin, asin) != 0)
        k++; /* a product delivered twice (a retried transfer) is judged again in place */
    if (k == KP_MAX_BATCH)
        return 0;
    if (k == b->n_res)
        b->n_res++;
    struct scanner_peeked *r = &b->res[k];
    memset(r, 0, sizeof(*r));
    memcpy(r->asin, asin, sizeof(r->asin));
    r->cand = (uint16_t)cand;
    b->got[cand] = true;
    snprintf(r->title, sizeof(r->title), "%s", p->title);
    snprintf(r->category, sizeof(r->category), "%s", p->root_category_name);
    int64_t now = kd_wall_ms();
    jd_inputs_from_product(p, &sc->rules, now, JD_READ_AUTO, &r->in);
    if (sc->fees != NULL)
        scanner_fees_put(sc->fees, asin, &r->in);
    const struct scanner_list_item *it = item_of(sc, &sc->page.c[b->idx[cand]]);
    if (it != NULL && it->l.cost_cents >= 0) {
        /* The seller's own cost: no offer to look for (judge/inputs.h). */
        jd_inputs_set_own_cost(&r->in, it->l.cost_cents, list_condition(sc), now);
        r->own_cost = true;
    }
    r->deal = jd_judge(&r->in, &sc->rules, &r->v);
    r->reason = r->deal ? NULL : jd_reason(&r->v);
    if (sc->fees != NULL)
        scanner_fees_learn(sc->fees, r->in.root_category, &r->v);
    const char *why = NULL;
    if (!scanner_discovery_pass(&sc->disc, &r->in, &why)) {
        r->deal = false;
        r->reason = why;
    }
    return 0;
}

static void peek_done(const struct kp_result *res, void *ud)
{
    struct scanner_batch *b = ud;
    struct scanner *sc = b->sc;
    if (res->code == KP_OK) {
        sc->peek_failures = 0;
        b->tokens = res->reading_valid ? res->reading.tokens_consumed : 0;
        b->n_malformed = 0;
        for (size_t i = 0; i < res->n_asins; i++)
            b->n_malformed += res->asins[i].status == KP_ASIN_MALFORMED;
        b->peek_ms = kd_wall_ms();
        write_batch(sc, b); /* paid for: written even while stopping */
    } else {
        /* Not executed (or not usable): the ASINs go back to the queue, nothing is lost. */
        scanner_page_release(&sc->page, b->idx, b->n, false);
        b->busy = false;
        if (res->code == KP_KEY_UNUSABLE) {
            sc->key_unusable = true;
        } else if (res->code != KP_CANCELLED && !(res->http_status == 0 && store_blocked(sc))) {
            sc->peek_failures++;
            int64_t wait = backoff_ns(sc->peek_failures);
            sc->peek_retry_ns = kd_mono_ns() + wait;
            kd_warn("peek of %zu asins failed (%s: %s); they stay queued, retry in %lld ms", b->n,
                    kp_result_name(res->code), res->error, (long long)(wait / KD_NS_PER_MS));
        }
    }
    kick(sc);
}

/* The backlog limit of scanner_backlog_limit for the bucket as it is now. */
static int64_t backlog_limit(struct scanner *sc)
{
    int64_t batch = cfg(sc)->commit_batch;
    struct tb_stats st;
    if (sp_stats(&sc->sp, kd_mono_ns(), &st) != 0 || !st.anchored)
        return scanner_backlog_limit(0, 0, 0, batch);
    return scanner_backlog_limit(st.projected_tokens, st.refill_rate,
                                 tb_cost_estimate(sc->sp.tb, TB_KIND_COMMIT, batch), batch);
}

/*
 * Discovery pauses while the committer has more survivors waiting than it can fetch soon
 * (backlog_limit), or while ring records wait for room: peeking more would only pile up
 * paid-for work that goes stale. Transitions are logged.
 */
static bool is_throttled(struct scanner *sc)
{
    const struct shm_layout *l = sc->wk->seg.layout;
    int64_t backlog = shm_counter_total(l, SHM_C_commit_backlog);
    int64_t limit = backlog_limit(sc);
    size_t waiting = unpushed(sc);
    bool throttled = backlog > limit || waiting > 0;
    if (throttled && !sc->throttled)
        kd_info("discovery paused: committer backlog %lld (limit %lld), %zu ring records "
                "waiting for room",
                (long long)backlog, (long long)limit, waiting);
    else if (!throttled && sc->throttled)
        kd_info("discovery resumed: committer backlog %lld", (long long)backlog);
    sc->throttled = throttled;
    return throttled;
}

/* scanner_peek_room for this scanner's backlog, peeks in flight and survivor rate. */
static int64_t peek_room(struct scanner *sc)
{
    int64_t in_flight = 0;
    for (int i = 0; i < SCANNER_MAX_BATCHES; i++)
        if (sc->batches[i].busy)
            in_flight += (int64_t)sc->batches[i].n;
    return scanner_peek_room(backlog_limit(sc),
                             shm_counter_total(sc->wk->seg.layout, SHM_C_commit_backlog), in_flight,
                             shm_counter_get(counters(sc), SHM_C_asins_peeked),
                             shm_counter_get(counters(sc), SHM_C_survivors));
}

static void submit_peeks(struct scanner *sc, int64_t now, int64_t *wake)
{
    if (now < sc->peek_retry_ns) {
        if (sc->peek_retry_ns < *wake)
            *wake = sc->peek_retry_ns;
        return;
    }
    for (int i = 0; i < SCANNER_MAX_BATCHES; i++) {
        struct scanner_batch *b = &sc->batches[i];
        if (b->busy)
            continue;
        int64_t max = cfg(sc)->scan_peek_batch;
        if (max < 1)
            max = 1;
        if (max > 50)
            max = 50;
        int64_t room = peek_room(sc);
        if (room <= 0)
            return;
        if (room < max)
            max = room;
        /* A code may resolve to several products: fewer codes per lookup. */
        bool codes = false;
        for (size_t k = 0; k < sc->page.n; k++)
            if (sc->page.c[k].state == SCANNER_CAND_QUEUED) {
                codes = sc->page.c[k].code[0] != '\0';
                break;
            }
        if (codes && max > SCANNER_CODE_BATCH)
            max = SCANNER_CODE_BATCH;
        size_t rated_out = 0; /* `peekrate`: of a class whose peeks seldom pass */
        size_t n = (sc->value_rules & VAL_RULE_PRESCORE)
                       ? scanner_page_take_rated(
                             &sc->page, (size_t)max, b->idx,
                             shm_counter_total(sc->wk->seg.layout, SHM_C_vanish_half_life_min),
                             (sc->value_rules & VAL_RULE_PEEKRATE) ? sc->fees : NULL, &rated_out)
                       : scanner_page_take(&sc->page, (size_t)max, b->idx);
        if (rated_out > 0)
            shm_counter_add(counters(sc), SHM_C_asins_prefiltered, (int64_t)rated_out);
        if (n == 0)
            return;
        b->sc = sc;
        b->n = n;
        b->by_code = codes;
        b->n_res = 0;
        b->busy = true;
        b->write_pending = false;
        struct sp_job_spec spec = {
            .kind = TB_KIND_PEEK,
            .units = (int64_t)n,
            .prio = SP_PRIO_DISCOVER,
            .build = build_peek,
            .cbs = {.on_product = peek_product, .on_done = peek_done, .ud = b}};
        int rc = sp_submit(&sc->sp, &spec);
        if (rc != 0) {
            scanner_page_release(&sc->page, b->idx, n, false);
            b->busy = false;
            if (rc == -EKEYREJECTED) {
                sc->key_unusable = true;
            } else if (rc != -ESHUTDOWN) {
                kd_error("cannot queue a peek: %s", strerror(-rc));
                sc->peek_retry_ns = now + backoff_ns(++sc->peek_failures);
            }
            return;
        }
    }
}

/* ---------- pages ---------- */

/*
 * Drops the page's queued ASINs that were peeked recently and are unchanged in the feed, those
 * the seller marked (scanner_mark_skip; counted in *MARKED) and those whose stored full read
 * fails them at the feed's listings (scanner_known_fail; counted in *KNOWN).
 */
static size_t dedup_page(struct scanner *sc, size_t *marked, size_t *known)
{
    *marked = *known = 0;
    struct st_txn *txn = NULL;
    if (st_read_begin(sc->env, &txn) != 0)
        return 0;
    int64_t now_ms = kd_wall_ms();
    size_t n = 0;
    for (size_t i = 0; i < sc->page.n; i++) {
        struct scanner_cand *c = &sc->page.c[i];
        if (c->state != SCANNER_CAND_QUEUED || c->code[0] != '\0')
            continue; /* a code's ASINs are not known yet */
        struct st_key key;
        struct st_seen seen;
        if (st_key_make((unsigned)cfg(sc)->keepa_domain, c->asin, &key) != 0) {
            c->state = SCANNER_CAND_DONE;
            continue;
        }
        struct st_record rec;
        bool stored = st_record_get(txn, &key, &rec) == 0;
        if (stored && scanner_mark_skip(rec.mark)) {
            c->state = SCANNER_CAND_DONE;
            (*marked)++;
            kd_debug("%s is marked %s: not peeked", c->asin, st_mark_name(rec.mark));
            continue;
        }
        if (stored && scanner_known_fail(&rec, c->feed_new_cents, c->feed_used_cents, &sc->rules,
                                         now_ms, known_max_age_ms(sc))) {
            c->state = SCANNER_CAND_DONE;
            (*known)++;
            kd_debug("%s fails at the feed's listings on its stored full read: not peeked",
                     c->asin);
            continue;
        }
        if (st_seen_get(txn, &key, &seen) != 0)
            continue;
        if (scanner_dedup_skip(&seen, now_ms, cfg_keepa_ms(cfg(sc), cfg(sc)->scan_dedup_window_ms),
                               c->feed_last_update_min, c->feed_hash)) {
            c->state = SCANNER_CAND_DONE;
            n++;
        } else {
            kd_debug("%s peeked %lld ms ago; peeked again: lastUpdate %lld -> %lld, prices %s",
                     c->asin, (long long)(now_ms - seen.peek_ms),
                     (long long)seen.feed_last_update_min, (long long)c->feed_last_update_min,
                     seen.feed_price_hash == c->feed_hash ? "same" : "changed");
        }
    }
    st_read_end(txn);
    return n;
}

/* The page's candidates are known: count, dedup, and start peeking. */
static void page_loaded(struct scanner *sc, const char *what, uint64_t at)
{
    size_t marked = 0, known = 0;
    size_t dedup = dedup_page(sc, &marked, &known);
    struct shm_counter_block *cb = counters(sc);
    shm_counter_add(cb, SHM_C_asins_discovered, (int64_t)sc->page.n);
    shm_counter_add(cb, SHM_C_asins_prefiltered,
                    (int64_t)(sc->feed.prefiltered + dedup + marked + known));
    sc->pass_pages++;
    sc->pass_discovered += sc->page.n;
    sc->page_loaded = true;
    /* What the lane needs (scanner_delta_next): when the first delta page last arrived, and
     * whether a page of the pass itself came since. */
    int64_t minute_ns = cfg(sc)->tokens_minute_ms * KD_NS_PER_MS;
    if (sc->page_delta && sc->delta_pos == 0 && minute_ns > 0) {
        sc->delta_first_min = kd_mono_ns() / minute_ns;
        sc->pass_page_since = false;
    } else if (!sc->page_delta) {
        sc->pass_page_since = true;
    }
    kd_debug("%s %llu is of a %s", what, (unsigned long long)at,
             sc->page_delta               ? "delta page"
             : !sc->page_fresh            ? "pass in the selection's order"
             : sc->pass_probe             ? "probe"
             : sc->fresh_horizon_min == 0 ? "fresh pass over every page"
                                          : "fresh pass to its horizon");
    kd_info("%s %llu (pass %u): %zu items, %zu asins, %zu pre-filtered, %zu peeked recently "
            "and unchanged, %zu marked, %zu failed by their stored full read, %zu to peek",
            what, (unsigned long long)at, sc->cur.pass, sc->page_items, sc->page.n,
            sc->feed.prefiltered, dedup, marked, known,
            scanner_page_count(&sc->page, SCANNER_CAND_QUEUED));
}

/* A /deal entry arrives on PAGE (the page in memory, or the pipe's next one) with FEED. */
static void feed_deal(struct scanner *sc, struct scanner_page *page, struct scanner_feed *feed,
                      const struct kp_deal *d)
{
    int64_t moment = d->creation_date_keepa_min;
    if (moment > 0) {
        if (!scanner_fresh_in_order(feed->prev_min, moment))
            feed->disordered = true;
        feed->prev_min = moment;
        if (feed->oldest_min <= 0 || moment < feed->oldest_min)
            feed->oldest_min = moment;
        if (moment > feed->newest_min)
            feed->newest_min = moment;
    }
    int rc = scanner_page_add(page, d->asin, d->last_update_keepa_min, scanner_feed_hash(d));
    if (rc != 0)
        return; /* a repeat from a retried transfer, or not an ASIN */
    struct scanner_cand *c = &page->c[page->n - 1];
    if (sc->sel_ok && sc->sel.probe_ok && (size_t)sc->sel.price_type < d->n_price)
        c->feed_drop_pct = d->delta_percent[sc->sel.date_range][sc->sel.price_type];
    /* Keepa's price types NEW (1) and USED (2), as judge/inputs.c reads them. */
    c->feed_new_cents = d->n_price > 1 && d->current[1] > 0 ? d->current[1] : -1;
    c->feed_used_cents = d->n_price > 2 && d->current[2] > 0 ? d->current[2] : -1;
    const char *why = NULL;
    bool keep = scanner_prefilter_deal(d, &sc->rules, &why);
    if (keep && scanner_discovery_any(&sc->disc)) {
        /* The discovery filters on the feed's own data, for free (scanner/rules.h). */
        struct jd_inputs in;
        jd_inputs_from_deal(d, &sc->rules, kd_wall_ms(), &in);
        keep = scanner_discovery_pass(&sc->disc, &in, NULL);
    }
    if (!keep) {
        c->state = SCANNER_CAND_DONE;
        feed->prefiltered++;
        kd_debug("feed %s: moment %lld, pre-filtered (%s)", d->asin, (long long)moment,
                 why != NULL ? why : "discovery");
    } else {
        bool fees = (sc->value_rules & VAL_RULE_FEES) != 0;
        bool low = (sc->value_rules & VAL_RULE_LOWFEES) != 0;
        scanner_prescore_deal_class(d, &sc->rules, fees || low ? sc->fees : NULL, low,
                                    &c->prescore_profit_cents, &c->prescore_at_min, &c->peek_class);
        if (c->prescore_profit_cents < 0) { /* a sure fail at the fees its last peek read, or
                                             * at the low fees peeks found (`lowfees`) */
            c->state = SCANNER_CAND_DONE;
            feed->prefiltered++;
        }
        kd_debug("feed %s: moment %lld, pre-score %lld%s", d->asin, (long long)moment,
                 (long long)c->prescore_profit_cents,
                 c->prescore_profit_cents < 0 ? ", a sure fail" : "");
    }
}

static int on_deal(const struct kp_deal *d, void *ud)
{
    struct scanner *sc = ud;
    feed_deal(sc, &sc->page, &sc->feed, d);
    return 0;
}

static int on_query_asin(const char *asin, void *ud)
{
    struct scanner *sc = ud;
    scanner_page_add(&sc->page, asin, -1, 0);
    return 0;
}

static int build_page(struct kp_call *call, void *ud)
{
    struct scanner *sc = ud;
    /* A grant may come after a retried transfer delivered part of an earlier attempt. */
    scanner_page_reset(&sc->page);
    sc->feed.prefiltered = 0;
    sc->feed.oldest_min = sc->feed.newest_min = sc->feed.prev_min = 0;
    sc->feed.disordered = false;
    if (sc->source == CFG_SOURCE_QUERY)
        return kp_call_query(call, (int)cfg(sc)->keepa_domain, sc->fetch_json, false);
    return kp_call_deal(call, sc->fetch_json);
}

static void page_done(const struct kp_result *res, void *ud)
{
    struct scanner *sc = ud;
    sc->fetching = false;
    free(sc->fetch_json);
    sc->fetch_json = NULL;
    /* A delta page is outside the cursor: it is named by its place in the delta order, not
     * by the pass's page it came before. */
    const char *what = sc->source == CFG_SOURCE_QUERY ? "query page"
                       : sc->page_delta               ? "delta page"
                                                      : "deal page";
    uint64_t at = sc->page_delta ? sc->delta_pos : sc->cur.position;
    if (res->code == KP_OK && !sc->stopping) {
        sc->fetch_failures = 0;
        size_t items = sc->page.n;
        if (res->envelope != NULL) {
            uint32_t env_n =
                sc->source == CFG_SOURCE_QUERY ? res->envelope->n_asins : res->envelope->n_deals;
            if (env_n > items)
                items = env_n;
        }
        sc->page_items = items;
        page_loaded(sc, what, at);
    } else {
        scanner_page_reset(&sc->page);
        if (res->code == KP_KEY_UNUSABLE) {
            sc->key_unusable = true;
        } else if (res->code != KP_CANCELLED && res->code != KP_OK) {
            sc->fetch_failures++;
            int64_t wait = backoff_ns(sc->fetch_failures);
            sc->fetch_retry_ns = kd_mono_ns() + wait;
            kd_warn("%s %llu failed (%s: %s); %s, retry in %lld ms", what, (unsigned long long)at,
                    kp_result_name(res->code), res->error,
                    sc->page_delta ? "it is read again" : "the cursor stays on it",
                    (long long)(wait / KD_NS_PER_MS));
            if (res->code == KP_PERMANENT)
                wk_set_error(sc->wk, "Keepa refused the %s selection (%s): fix %s and reload",
                             source_name(sc->source), res->error, sc->sel.origin);
        }
    }
    kick(sc);
}

/* The hash `seen` keeps for a list line: a changed cost, url or note is peeked again at once. */
static uint64_t item_hash(const struct scanner_list_line *l)
{
    uint64_t h = scanner_fnv1a(SCANNER_FNV_INIT, &l->cost_cents, sizeof(l->cost_cents));
    h = scanner_fnv1a(h, l->url, strlen(l->url));
    return scanner_fnv1a(h, l->note, strlen(l->note));
}

/*
 * Puts list line L (line LINE of the file) on the page: an ASIN as is; a code as the ASINs it
 * resolved to within the dedup window (kept in meta by put_code_map), else as a code to look
 * up. TXN (may be NULL) reads meta.
 */
static void add_list_item(struct scanner *sc, struct st_txn *txn, const struct scanner_list_line *l,
                          uint64_t line)
{
    if (sc->n_items >= KD_ARRAY_LEN(sc->items))
        return;
    int16_t item = (int16_t)sc->n_items;
    sc->items[sc->n_items++] = (struct scanner_list_item){.line = line, .l = *l};
    uint64_t hash = item_hash(l);
    if (l->asin[0] != '\0') {
        if (scanner_page_add(&sc->page, l->asin, -1, hash) == 0)
            sc->page.c[sc->page.n - 1].item = item;
        return;
    }
    char name[64];
    uint8_t buf[8 + SCANNER_CODE_LIMIT * ST_ASIN_LEN];
    size_t n = 0;
    snprintf(name, sizeof(name), SCANNER_META_CODE "%d.%s", (int)cfg(sc)->keepa_domain, l->code);
    if (txn != NULL && st_meta_get_bytes(txn, name, buf, sizeof(buf), &n) == 0 && n >= 8 &&
        (n - 8) % ST_ASIN_LEN == 0) {
        int64_t at = 0;
        for (int i = 0; i < 8; i++)
            at = (int64_t)((uint64_t)at << 8 | buf[i]);
        if (kd_wall_ms() - at < cfg_keepa_ms(cfg(sc), cfg(sc)->scan_dedup_window_ms)) {
            for (size_t k = 8; k < n; k += ST_ASIN_LEN) {
                char asin[ST_ASIN_LEN + 1];
                memcpy(asin, buf + k, ST_ASIN_LEN);
                asin[ST_ASIN_LEN] = '\0';
                if (scanner_page_add(&sc->page, asin, -1, hash) == 0)
                    sc->page.c[sc->page.n - 1].item = item;
            }
            return; /* resolved recently (to nothing: reported then) */
        }
    }
    if (scanner_page_add_code(&sc->page, l->code, item) == 0)
        sc->page.c[sc->page.n - 1].feed_hash = hash; /* kept in `seen` of what it resolves to */
}

/* Reads the next chunk of the ASIN list (or the seller's list) into the page. Returns 0 or a
 * negative errno. */
static int read_chunk(struct scanner *sc)
{
    const char *path = list_path(sc);
    bool list = sc->source == CFG_SOURCE_LIST;
    FILE *f = path[0] != '\0' ? fopen(path, "r") : NULL;
    if (f == NULL) {
        int e = path[0] != '\0' ? errno : ENOENT;
        kd_error("[scan] %s %s: %s; retrying in %d s", list ? "list_file" : "asins_file",
                 path[0] ? path : "(not set)", strerror(e), NO_SOURCE_RETRY_MS / 1000);
        wk_set_error(sc->wk, "%s %s: %s", list ? "list_file" : "asins_file", path, strerror(e));
        return -e;
    }
    struct st_txn *txn = NULL;
    if (list && st_read_begin(sc->env, &txn) != 0)
        txn = NULL;
    uint64_t line = 0;
    if (sc->hint_line > 0 && sc->hint_line == sc->cur.position &&
        fseek(f, sc->hint_offset, SEEK_SET) == 0)
        line = sc->hint_line;
    char *buf = NULL;
    size_t cap = 0;
    bool eof = false;
    while (line < sc->cur.position) {
        if (getline(&buf, &cap, f) < 0) {
            eof = true;
            break;
        }
        line++;
    }
    scanner_page_reset(&sc->page);
    sc->feed.prefiltered = 0;
    sc->n_items = 0;
    size_t items = 0;
    while (!eof && items < ASIN_CHUNK) {
        if (getline(&buf, &cap, f) < 0) {
            eof = true;
            break;
        }
        line++;
        if (list) {
            struct scanner_list_line l;
            char why[256];
            int rc =
                scanner_parse_list_line(buf, (unsigned)cfg(sc)->keepa_domain, &l, why, sizeof(why));
            if (rc < 0) {
                kd_log(sc->list_warned ? KD_LOG_DEBUG : KD_LOG_WARN, "%s:%llu: %s; line ignored",
                       path, (unsigned long long)line, why);
                sc->pass_bad_lines++;
            } else if (rc == 1) {
                items++;
                add_list_item(sc, txn, &l, line);
            }
            continue;
        }
        char asin[ST_ASIN_LEN + 1];
        int rc = scanner_parse_asin_line(buf, asin);
        if (rc < 0) {
            kd_log(sc->list_warned ? KD_LOG_DEBUG : KD_LOG_WARN,
                   "%s:%llu: not an ASIN; line ignored", path, (unsigned long long)line);
            continue;
        }
        if (rc == 1) {
            items++;
            scanner_page_add(&sc->page, asin, -1, 0);
        }
    }
    if (!eof) {
        /* The chunk ended exactly at the end of the file: say so now, not one chunk later. */
        int ch = fgetc(f);
        if (ch == EOF)
            eof = true;
        else
            ungetc(ch, f);
    }
    sc->hint_line = line;
    sc->hint_offset = ftell(f);
    free(buf);
    fclose(f);
    if (txn != NULL)
        st_read_end(txn);
    sc->page_items = items;
    sc->page_eof = eof;
    sc->page_next_line = line;
    return 0;
}

/* ---------- the dear list sources ---------- */

/* "the lightning list", "best sellers of category 283155 (range 90)". */
static void list_what(const struct scanner *sc, uint32_t index, char *out, size_t len)
{
    if (sc->source == CFG_SOURCE_LIGHTNING)
        snprintf(out, len, "the lightning list");
    else if (index < sc->bs_n)
        snprintf(out, len, "best sellers of category %lld (range %d)", (long long)sc->bs_ids[index],
                 sc->bs_range);
    else
        snprintf(out, len, "best-seller list %u", index);
}

/* The Keepa minute now by the loaded list's clock (scanner_list_clock). */
static int64_t list_now_min(const struct scanner *sc)
{
    return scanner_list_clock(sc->list_ref_min, sc->list_ref_ns, kd_mono_ns(),
                              cfg(sc)->tokens_minute_ms * KD_NS_PER_MS);
}

/*
 * Appends E to the list being decoded. Beyond SCANNER_LIST_MAX entries (or when memory runs
 * out) the rest of the answer is not kept: the walk covers what was kept and says so.
 */
static void list_append(struct scanner *sc, const struct scanner_list_entry *e)
{
    if (sc->list_n >= SCANNER_LIST_MAX) {
        sc->list_truncated = true;
        return;
    }
    if (sc->list_n == sc->list_cap) {
        size_t cap = sc->list_cap > 0 ? sc->list_cap * 2 : 1024;
        if (cap > SCANNER_LIST_MAX)
            cap = SCANNER_LIST_MAX;
        struct scanner_list_entry *p = realloc(sc->list, cap * sizeof(*p));
        if (p == NULL) {
            sc->list_truncated = true;
            return;
        }
        sc->list = p;
        sc->list_cap = cap;
    }
    sc->list[sc->list_n++] = *e;
}

static int on_list_lightning(const struct kp_lightning_deal *ld, void *ud)
{
    struct scanner *sc = ud;
    struct scanner_list_entry e;
    if (scanner_lightning_entry(ld, &e) != 0)
        return 0; /* no ASIN to peek */
    if (ld->last_update_keepa_min > sc->list_newest_min)
        sc->list_newest_min = ld->last_update_keepa_min;
    list_append(sc, &e);
    return 0;
}

static int on_list_asin(const char *asin, void *ud)
{
    struct scanner *sc = ud;
    struct scanner_list_entry e;
    if (scanner_bestseller_entry(asin, &e) == 0)
        list_append(sc, &e);
    return 0;
}

/* Builds the list request when its tokens are granted, for the config as it is then. */
static int build_list(struct kp_call *call, void *ud)
{
    struct scanner *sc = ud;
    sc->list_n = 0; /* a grant may follow an attempt that delivered part of a list */
    sc->list_truncated = false;
    sc->list_newest_min = -1;
    sc->walk_hash = source_hash(sc);
    sc->walk_lists = n_lists(sc);
    int domain = (int)cfg(sc)->keepa_domain;
    if (sc->source == CFG_SOURCE_LIGHTNING)
        return kp_call_lightning(call, domain, NULL, 0);
    if (sc->fetch_index >= sc->bs_n)
        return -EINVAL; /* a reload shortened the walk: the next start_page starts it over */
    return kp_call_bestsellers(call, domain, sc->bs_ids[sc->fetch_index], sc->bs_range);
}

/* The list is in memory: its chunks follow (start_list_page). */
static void list_arrived(struct scanner *sc, double tokens)
{
    sc->fetch_failures = 0;
    sc->list_refused = false;
    sc->list_loaded = true;
    sc->list_index = sc->fetch_index;
    sc->list_ref_ns = kd_mono_ns();
    sc->pass_lists++;
    sc->pass_list_tokens += tokens > 0 ? (uint64_t)tokens : 0;
}

static void list_done(const struct kp_result *res, void *ud)
{
    struct scanner *sc = ud;
    sc->fetching = false;
    char what[96];
    list_what(sc, sc->fetch_index, what, sizeof(what));
    double tokens = res->reading_valid ? res->reading.tokens_consumed : 0;
    const struct kp_envelope *env = res->envelope;
    if (res->code == KP_OK && !sc->stopping) {
        /* A deal's window is on Keepa's clock: the list's newest lastUpdate, never after the
         * answer's own timestamp (scanner_list_clock). */
        int64_t server_min = kd_ms_to_keepa_min(
            env != NULL && (env->have & KP_ENV_TIMESTAMP) ? env->timestamp_ms : kd_wall_ms());
        sc->list_ref_min = sc->list_newest_min >= 0 && sc->list_newest_min < server_min
                               ? sc->list_newest_min
                               : server_min;
        list_arrived(sc, tokens);
        save_list(sc);
        if (sc->source == CFG_SOURCE_BESTSELLERS &&
            (env == NULL || !(env->have & KP_ENV_BESTSELLERS)))
            kd_warn("%s: Keepa has no best-seller list for it (%.0f tokens); the walk goes on "
                    "with the next category (check [scan] bestseller_categories)",
                    what, tokens);
        else
            kd_info("%s: %zu entries%s, %.0f tokens", what, sc->list_n,
                    sc->list_truncated ? " (the rest not kept: the memory bound)" : "", tokens);
    } else if (res->code == KP_KEY_UNUSABLE) {
        sc->list_n = 0;
        sc->key_unusable = true;
    } else if (res->code == KP_PERMANENT) {
        /* Not sent (it costs more than the bucket can pay within the deficit bound), or
         * refused by Keepa: resending at once would not help. Said once, then retried slowly:
         * a bigger plan or a reload may make it possible. */
        sc->list_n = 0;
        kd_log(sc->list_refused ? KD_LOG_DEBUG : KD_LOG_ERROR, "%s: %s", what, res->error);
        wk_set_error(sc->wk, "%s: %s", what, res->error);
        sc->list_refused = true;
        if (res->http_status >= 400 && sc->source == CFG_SOURCE_BESTSELLERS) {
            /* Keepa refused this category's request: an empty list, so the walk goes on. */
            kd_error("%s: skipped (fix [scan] bestseller_categories and reload)", what);
            list_arrived(sc, 0);
        } else {
            sc->fetch_retry_ns = kd_mono_ns() + NO_SOURCE_RETRY_MS * KD_NS_PER_MS;
        }
    } else if (res->code != KP_CANCELLED && res->code != KP_OK) {
        sc->list_n = 0;
        sc->fetch_failures++;
        int64_t wait = backoff_ns(sc->fetch_failures);
        sc->fetch_retry_ns = kd_mono_ns() + wait;
        kd_warn("%s failed (%s: %s); the cursor stays on it, retry in %lld ms", what,
                kp_result_name(res->code), res->error, (long long)(wait / KD_NS_PER_MS));
    } else {
        sc->list_n = 0;
    }
    kick(sc);
}

/* ---------- the list kept in the store ---------- */

static int save_list_fn(struct st_txn *txn, void *ud)
{
    const struct iovec *blob = ud;
    return st_meta_put_bytes(txn, SCANNER_META_LIST, blob->iov_base, blob->iov_len);
}

/*
 * Keeps the list that just arrived in the store, so a restart walks on through it instead of
 * paying for it again. A failure costs only that: the list is in memory.
 */
static void save_list(struct scanner *sc)
{
    struct scanner_saved_list head = {.source = (uint8_t)sc->source,
                                      .truncated = sc->list_truncated,
                                      .pass = sc->cur.pass,
                                      .index = sc->list_index,
                                      .walk_hash = sc->walk_hash,
                                      .ref_min = list_now_min(sc),
                                      .saved_wall_ms = kd_wall_ms(),
                                      .n = sc->list_n};
    struct iovec blob = {.iov_len = scanner_list_bytes(sc->list_n)};
    blob.iov_base = malloc(blob.iov_len);
    if (blob.iov_base == NULL) {
        kd_warn("cannot keep the list in the store: out of memory (a restart buys it again)");
        return;
    }
    scanner_list_encode(&head, sc->list, blob.iov_base);
    int rc = st_write(sc->env, save_list_fn, &blob);
    if (rc != 0)
        kd_warn("cannot keep the list in the store: %s (a restart buys it again)", st_strerror(rc));
    free(blob.iov_base);
}

/*
 * At start: the list the stored cursor is in, when the store kept it (same source, same walk,
 * same pass and list). Its clock goes on from when it arrived. Returns true when loaded.
 */
static bool restore_list(struct scanner *sc, struct st_txn *txn)
{
    size_t len = 0;
    if (st_meta_get_bytes(txn, SCANNER_META_LIST, NULL, 0, &len) != -ENOBUFS)
        return false;
    uint8_t *buf = malloc(len);
    struct scanner_saved_list head;
    bool ok = buf != NULL && st_meta_get_bytes(txn, SCANNER_META_LIST, buf, len, &len) == 0 &&
              scanner_list_decode_head(buf, len, &head) == 0 && head.source == sc->source &&
              head.walk_hash == source_hash(sc) && head.pass == sc->cur.pass &&
              head.index == SCANNER_LIST_OF(sc->cur.position) && head.index < n_lists(sc);
    if (ok && head.n > sc->list_cap) {
        struct scanner_list_entry *p = realloc(sc->list, (head.n ? head.n : 1) * sizeof(*p));
        ok = p != NULL;
        if (ok) {
            sc->list = p;
            sc->list_cap = head.n ? head.n : 1;
        }
    }
    if (ok) {
        for (size_t i = 0; i < head.n; i++)
            scanner_list_decode_entry(buf, i, &sc->list[i]);
        int64_t elapsed_ms = kd_wall_ms() - head.saved_wall_ms;
        sc->list_n = head.n;
        sc->list_truncated = head.truncated;
        sc->list_loaded = true;
        sc->list_index = head.index;
        sc->fetch_index = head.index;
        sc->walk_hash = head.walk_hash;
        sc->walk_lists = n_lists(sc);
        sc->list_ref_min = head.ref_min;
        sc->list_ref_ns = kd_mono_ns() - (elapsed_ms > 0 ? elapsed_ms : 0) * KD_NS_PER_MS;
        char what[96];
        list_what(sc, head.index, what, sizeof(what));
        kd_info("%s: %zu entries kept from before the restart (%lld s ago): not bought again", what,
                head.n, (long long)(elapsed_ms > 0 ? elapsed_ms / 1000 : 0));
    }
    free(buf);
    return ok;
}

/* Queues the request for list INDEX of the walk. */
static void fetch_list(struct scanner *sc, uint32_t index, int64_t now)
{
    struct sp_job_spec spec = {
        .kind = sc->source == CFG_SOURCE_LIGHTNING ? TB_KIND_LIGHTNING : TB_KIND_BESTSELLERS,
        .units = 1,
        .prio = SP_PRIO_DISCOVER,
        .within_deficit = true, /* never the overdraft of docs/failure-modes.md F2/F18 */
        .build = build_list,
        .cbs = {.on_lightning = on_list_lightning,
                .on_asin = on_list_asin,
                .on_done = list_done,
                .ud = sc}};
    sc->fetch_index = index;
    sc->list_loaded = false;
    sc->fetching = true;
    int rc = sp_submit(&sc->sp, &spec);
    if (rc != 0) {
        sc->fetching = false;
        if (rc == -EKEYREJECTED) {
            sc->key_unusable = true;
        } else if (rc != -ESHUTDOWN) {
            kd_error("cannot queue a list request: %s", strerror(-rc));
            sc->fetch_retry_ns = now + backoff_ns(++sc->fetch_failures);
        }
    }
}

/*
 * Puts the chunk of the list from entry OFFSET on the page. Every entry is discovered; the
 * lightning deals that are not candidates (scanner_lightning_candidate) are done at once, for
 * free, like deals the feed's own data rules out.
 */
static void load_list_chunk(struct scanner *sc, size_t offset)
{
    static const char *const reasons[] = {"not_soon", "ended", "sold_out", "amazon", "price"};
    size_t dropped[KD_ARRAY_LEN(reasons)] = {0};
    bool lightning = sc->source == CFG_SOURCE_LIGHTNING;
    int64_t now_min = lightning ? list_now_min(sc) : 0;
    int64_t soon_min = cfg(sc)->scan_lightning_soon_ms / CFG_MS_MIN;
    scanner_page_reset(&sc->page);
    sc->feed.prefiltered = 0;
    sc->n_items = 0;
    size_t i = offset;
    for (; i < sc->list_n && i - offset < SCANNER_LIST_CHUNK; i++) {
        const struct scanner_list_entry *e = &sc->list[i];
        if (scanner_page_add(&sc->page, e->asin, lightning ? e->start_min : -1, e->hash) != 0)
            continue; /* twice in the list (two deals of one product): one peek */
        if (!lightning)
            continue;
        struct scanner_cand *c = &sc->page.c[sc->page.n - 1];
        c->window_start_min = e->start_min;
        c->window_end_min = e->end_min;
        const char *why = NULL;
        if (!scanner_lightning_candidate(e, now_min, soon_min, &sc->disc, &why)) {
            c->state = SCANNER_CAND_DONE;
            sc->feed.prefiltered++;
            for (size_t k = 0; k < KD_ARRAY_LEN(reasons); k++)
                dropped[k] += why != NULL && strcmp(why, reasons[k]) == 0;
        }
    }
    sc->list_next = i;
    sc->page_items = i - offset;
    if (lightning && sc->feed.prefiltered > 0)
        kd_info("lightning deals %zu..%zu of %zu: %zu ruled out for free (%zu start later than "
                "[scan] lightning_soon, %zu ended, %zu sold out, %zu Amazon's, %zu price)",
                offset, i, sc->list_n, sc->feed.prefiltered, dropped[0], dropped[1], dropped[2],
                dropped[3], dropped[4]);
    char what[128];
    list_what(sc, sc->list_index, what, sizeof(what));
    size_t len = strlen(what);
    snprintf(what + len, sizeof(what) - len, ", entry");
    page_loaded(sc, what, offset);
}

/* The next chunk of the walk, or the request for the list it is in. */
static void start_list_page(struct scanner *sc, int64_t now)
{
    size_t lists = n_lists(sc);
    if (lists == 0) {
        sc->fetch_retry_ns = now + NO_SOURCE_RETRY_MS * KD_NS_PER_MS;
        return;
    }
    uint32_t index = SCANNER_LIST_OF(sc->cur.position);
    size_t offset = SCANNER_OFFSET_OF(sc->cur.position);
    if (index >= lists) { /* a cursor stored by a longer walk: this one starts over */
        sc->cur.position = 0;
        index = 0;
        offset = 0;
    }
    if (!sc->list_loaded || sc->list_index != index || sc->walk_hash != source_hash(sc)) {
        fetch_list(sc, index, now);
        return;
    }
    load_list_chunk(sc, offset < sc->list_n ? offset : sc->list_n);
}

/*
 * A lightning deal that ended while its candidate waited for a peek (a page held back by the
 * committer's backlog) is not peeked: it is done, counted as pre-filtered.
 */
static void drop_ended_deals(struct scanner *sc)
{
    if (sc->source != CFG_SOURCE_LIGHTNING || !sc->list_loaded)
        return;
    int64_t now_min = list_now_min(sc);
    size_t n = 0;
    for (size_t i = 0; i < sc->page.n; i++) {
        struct scanner_cand *c = &sc->page.c[i];
        if (c->state == SCANNER_CAND_QUEUED && c->window_end_min >= 0 &&
            c->window_end_min <= now_min) {
            c->state = SCANNER_CAND_DONE;
            n++;
        }
    }
    if (n == 0)
        return;
    shm_counter_add(counters(sc), SHM_C_asins_prefiltered, (int64_t)n);
    sc->pass_ended += n;
    kd_info("%zu lightning deals ended before their peek: not peeked", n);
}

/* Reads [scan] bestseller_categories and bestseller_range (validated with the config). */
static void load_bestsellers(struct scanner *sc, bool reload)
{
    int64_t ids[SCANNER_CATS_MAX];
    size_t n = 0;
    int range = 0;
    uint64_t hash = 0;
    if (scanner_bestsellers_from_cfg(cfg(sc), ids, &n, &range, &hash) != 0) {
        kd_error("[scan] bestseller_categories or bestseller_range unusable; keeping the "
                 "previous lists");
        return;
    }
    if (reload && hash != sc->bs_hash)
        kd_info("reload: the best-seller lists changed (%zu categories, range %d): the next "
                "list starts a new walk",
                n, range);
    memcpy(sc->bs_ids, ids, n * sizeof(ids[0]));
    sc->bs_n = n;
    sc->bs_range = range;
    sc->bs_hash = hash;
}

/* The bucket's projected BALANCE and refill RATE a minute; both 0 before any reading. */
static void bucket_reading(struct scanner *sc, int64_t *balance, int64_t *rate)
{
    struct tb_stats st;
    bool known = sc->spend_ok && tb_stats(sc->sp.tb, kd_mono_ns(), &st) == 0 && st.anchored;
    *balance = known ? st.projected_tokens : 0;
    *rate = known ? st.refill_rate : 0;
}

/* ---------- the pipe (scanner/pipe.h) ---------- */

/* The pipe's page in SL is the page in memory now: as page_done() loads an answer. */
static void next_load(struct scanner *sc, struct scanner_pipe_slot *sl)
{
    sc->page = sl->page;
    sc->feed = sl->feed;
    sc->page_items = sl->items;
    sc->page_full = sl->full;
    sc->page_last = sl->last;
    sc->page_fresh = sl->fresh;
    sc->fetch_failures = 0;
    sl->active = sl->arrived = sl->taken = false;
    sc->pass_piped++;
    page_loaded(sc, "deal page", sc->cur.position);
}

static int build_next(struct kp_call *call, void *ud)
{
    struct scanner_pipe_slot *sl = ud;
    if (store_blocked(sl->sc))
        return -EAGAIN; /* never sent: the reservation goes back whole (worker/spend.h) */
    scanner_page_reset(&sl->page); /* a grant may follow a retried transfer's part */
    memset(&sl->feed, 0, sizeof(sl->feed));
    return kp_call_deal(call, sl->json);
}

static int on_deal_next(const struct kp_deal *d, void *ud)
{
    struct scanner_pipe_slot *sl = ud;
    feed_deal(sl->sc, &sl->page, &sl->feed, d);
    return 0;
}

/*
 * A pipe's answer. Taken by start_page() meanwhile: it is the page in memory now (a failed
 * one is fetched again the usual way). Else it waits for start_page(), or is forgotten when it
 * failed: the usual fetch then asks for that page.
 */
static void next_done(const struct kp_result *res, void *ud)
{
    struct scanner_pipe_slot *sl = ud;
    struct scanner *sc = sl->sc;
    free(sl->json);
    sl->json = NULL;
    bool ok = res->code == KP_OK && !sc->stopping;
    if (res->code == KP_KEY_UNUSABLE)
        sc->key_unusable = true;
    if (ok) {
        size_t items = sl->page.n;
        if (res->envelope != NULL && res->envelope->n_deals > items)
            items = res->envelope->n_deals;
        sl->items = items;
    }
    if (sl->taken) {
        sc->fetching = false;
        if (ok)
            next_load(sc, sl);
        else
            sl->active = sl->taken = false;
    } else if (ok) {
        sl->arrived = true;
    } else {
        sl->active = false;
    }
    kick(sc);
}

/* Whether SL was fetched for the cursor's pass as start_page() reads it now (any position):
 * same source, selection, pass and order, with the same probe floor. */
static bool slot_of_pass(const struct scanner *sc, const struct scanner_pipe_slot *sl,
                         uint64_t hash)
{
    return sl->at.source == sc->cur.source && sl->at.pass == sc->cur.pass && sl->hash == hash &&
           sl->at.selection_hash == sc->cur.selection_hash && sl->fresh == fresh_walk(sc) &&
           sl->probe == (sl->fresh && sc->pass_probe) &&
           (!sl->probe || sl->floor_pct == sc->pass_floor_pct) && sc->sel_ok;
}

/* Drops the answers that arrived for pages the cursor will not take (another pass or
 * selection, or a page it passed); one still in flight is dropped when it has arrived. */
static void pipe_drop_stale(struct scanner *sc, uint64_t hash)
{
    for (int i = 0; i < SCANNER_PIPE_SLOTS; i++) {
        struct scanner_pipe_slot *sl = &sc->next[i];
        if (sl->active && sl->arrived && !sl->taken &&
            (!slot_of_pass(sc, sl, hash) || sl->at.position < sc->cur.position))
            sl->active = sl->arrived = false;
    }
}

/*
 * Asks for page POSITION of the pass in the free slot SL when scanner_pipe_next says so; true
 * when it was queued. The selection is rendered as start_page() will render it then: same pass,
 * so the same order, probe floor and selection (a reload changes source_hash, and start_page()
 * then drops the answer).
 */
static bool pipe_request(struct scanner *sc, struct scanner_pipe_slot *sl, uint64_t position,
                         uint64_t hash)
{
    int64_t balance, rate;
    bucket_reading(sc, &balance, &rate);
    if (!scanner_pipe_next((sc->value_rules & VAL_RULE_BUSY) != 0, true, position,
                           (uint64_t)sc->sel.last_page, balance, rate))
        return false;
    size_t len = 0;
    int rc = sc->page_fresh && sc->pass_probe
                 ? scanner_selection_render_probe(&sc->sel, position, SCANNER_FRESH_SORT,
                                                  sc->pass_floor_pct, &sl->json, &len)
                 : scanner_selection_render_sorted(&sc->sel, position,
                                                   sc->page_fresh ? SCANNER_FRESH_SORT : 0,
                                                   &sl->json, &len);
    if (rc != 0)
        return false;
    sl->active = true;
    sl->arrived = sl->taken = false;
    sl->at = sc->cur;
    sl->at.position = position;
    sl->hash = hash;
    sl->fresh = sc->page_fresh;
    sl->probe = sc->page_fresh && sc->pass_probe;
    sl->floor_pct = sc->pass_floor_pct;
    sl->full = (size_t)sc->sel.per_page;
    sl->last = (uint64_t)sc->sel.last_page;
    scanner_page_reset(&sl->page);
    memset(&sl->feed, 0, sizeof(sl->feed));
    struct sp_job_spec spec = {.kind = TB_KIND_DEAL_PAGE,
                               .units = 1,
                               .prio = SP_PRIO_DISCOVER,
                               .build = build_next,
                               .cbs = {.on_deal = on_deal_next, .on_done = next_done, .ud = sl}};
    rc = sp_submit(&sc->sp, &spec);
    if (rc != 0) {
        sl->active = false;
        free(sl->json);
        sl->json = NULL;
        if (rc == -EKEYREJECTED)
            sc->key_unusable = true;
        return false;
    }
    kd_debug("pipe: deal page %llu of pass %u asked for ahead of page %llu%s",
             (unsigned long long)position, sc->cur.pass, (unsigned long long)sc->cur.position,
             sc->fetching ? " (in flight)" : "");
    return true;
}

/* Fills the pipe's free slots with the pass's pages after the furthest one asked for ahead of
 * the page in memory (or in flight), as far as scanner_pipe_next allows. */
static void pipe_next(struct scanner *sc)
{
    /* A delta page is outside the cursor: the pass's own pages, probe or not, are decided after
     * it, so nothing is fetched ahead of it. Nor ahead of a cursor that start_page() has yet to
     * move onto a changed selection (a reload): it starts that selection's walk over. */
    uint64_t hash = source_hash(sc);
    if (sc->stopping || !sc->sel_ok || sc->source != CFG_SOURCE_DEALS || sc->page_delta ||
        (!sc->fetching && !sc->page_loaded) || sc->cur.selection_hash != hash ||
        sc->cur.source != sc->source)
        return;
    pipe_drop_stale(sc, hash);
    /* Every free slot: a page taken in flight right after the last one loaded leaves both free.
     * A request its build refuses at once (a blocked store) frees its slot before sp_submit
     * returns: one try a slot, so that never loops. */
    for (int tries = 0; tries < SCANNER_PIPE_SLOTS; tries++) {
        struct scanner_pipe_slot *sl = NULL;
        uint64_t position = sc->cur.position + 1;
        for (int i = 0; i < SCANNER_PIPE_SLOTS; i++) {
            struct scanner_pipe_slot *s = &sc->next[i];
            if (!s->active)
                sl = sl != NULL ? sl : s;
            else if (!s->taken && slot_of_pass(sc, s, hash) && s->at.position >= position)
                position = s->at.position + 1;
        }
        if (sl == NULL || !pipe_request(sc, sl, position, hash))
            return;
    }
}

/*
 * The pipe's page when it is the one the cursor is on (same source, selection, pass and
 * position, read in the same order, with the same probe floor): loaded now, or taken in flight
 * (true: nothing to fetch). An answer for a page the cursor left (the pass ended before it, a
 * reload) is thrown away; one still in flight is thrown away when it has arrived. A page
 * further ahead stays.
 */
static bool next_take(struct scanner *sc, uint64_t hash)
{
    pipe_drop_stale(sc, hash);
    for (int i = 0; i < SCANNER_PIPE_SLOTS; i++) {
        struct scanner_pipe_slot *sl = &sc->next[i];
        if (!sl->active || sl->taken || sl->at.position != sc->cur.position ||
            !slot_of_pass(sc, sl, hash))
            continue;
        kd_debug("deal page %llu (pass %u) came through the pipe%s",
                 (unsigned long long)sc->cur.position, sc->cur.pass,
                 sl->arrived ? "" : " (still in flight)");
        if (sl->arrived) {
            next_load(sc, sl);
            return true;
        }
        sl->taken = true;
        sc->fetching = true;
        return true;
    }
    return false;
}

static void start_page(struct scanner *sc, int64_t now, bool lane_only)
{
    uint64_t hash = source_hash(sc);
    if (sc->cur.selection_hash != hash || sc->cur.source != sc->source) {
        if (sc->cur.position != 0)
            kd_info("the %s source changed: discovery restarts at the beginning",
                    source_name(sc->source));
        sc->cur = scanner_cursor_resume(&sc->cur, (uint8_t)sc->source, hash);
        sc->hint_line = 0;
        /* another order: a full walk first */
        sc->fresh_horizon_min = sc->pass_newest_min = sc->last_newest_min = 0;
        sc->probe_newest_min = sc->seller_pass_ns = 0;
        sc->pass_probe = false;
        sc->horizon_pages = 0;
        memset(&sc->drops, 0, sizeof(sc->drops)); /* another selection's drops */
        sc->pass_disordered = false;
        sc->pass_delta_done = false;
        sc->delta_last_min = sc->delta_first_min = 0;
        sc->delta_left = 0;
    }
    if (list_source(sc->source)) {
        start_list_page(sc, now);
        return;
    }
    if (file_source(sc->source)) {
        if (read_chunk(sc) != 0) {
            sc->fetch_retry_ns = now + NO_SOURCE_RETRY_MS * KD_NS_PER_MS;
            return;
        }
        page_loaded(sc, sc->source == CFG_SOURCE_LIST ? "list chunk at line" : "asin chunk at line",
                    sc->cur.position);
        return;
    }
    if (!sc->sel_ok) {
        sc->fetch_retry_ns = now + NO_SOURCE_RETRY_MS * KD_NS_PER_MS;
        return;
    }
    int64_t minute_ns = cfg(sc)->tokens_minute_ms * KD_NS_PER_MS;
    bool pass_start = sc->cur.position == 0 && !sc->pass_delta_done && !lane_only;
    if (fresh_walk(sc) && sc->delta_left == 0 && (pass_start || lane_on(sc)) &&
        (sc->value_rules & VAL_RULE_DELTA) && minute_ns > 0) {
        /* Whether delta pages come first (scanner/rules.h): at a pass's start once a pass, and
         * with the lane the first one alone wherever it is due. */
        int64_t balance, rate;
        bucket_reading(sc, &balance, &rate);
        bool full = pass_start &&
                    scanner_fresh_horizon(sc->last_newest_min, balance, full_tokens(sc, rate)) == 0;
        int64_t now_min = now / minute_ns;
        int64_t interval = delta_interval_min(sc, rate);
        uint32_t first = 0;
        uint32_t pages =
            scanner_delta_next(now_min, sc->delta_last_min, sc->delta_first_min, interval, full,
                               pass_start, lane_on(sc), sc->pass_page_since, &first);
        if (full || (pass_start && scanner_delta_page(now_min, sc->delta_last_min, interval, full)))
            sc->delta_last_min = now_min;
        if (full)
            sc->delta_first_min = now_min; /* a page read counts when it arrives (page_loaded) */
        sc->delta_pos = first;
        sc->delta_left = pages;
        if (pages > 0)
            kd_debug("delta pages %u to %u next (%s)", first, first + pages - 1,
                     pass_start  ? "a pass's start"
                     : lane_only ? "the lane, between passes"
                                 : "the lane, inside a pass");
        if (pass_start)
            sc->pass_delta_done = true;
    }
    if (lane_only && sc->delta_left == 0)
        return; /* the pause goes on */
    if (sc->delta_left == 0 && next_take(sc, hash)) {
        pipe_next(sc); /* taken in flight: the page after it in the other slot */
        return;
    }
    size_t len = 0;
    sc->page_fresh = fresh_walk(sc);
    sc->page_delta = sc->page_fresh && sc->delta_left > 0;
    if (!sc->page_delta && sc->page_fresh && sc->cur.position == 0) {
        /* How far this pass reads is decided as it starts, on the bucket as it is now; and
         * whether it is a probe (scanner/rules.h). */
        int64_t balance, rate;
        bucket_reading(sc, &balance, &rate);
        sc->fresh_horizon_min =
            scanner_fresh_horizon(sc->last_newest_min, balance, full_tokens(sc, rate));
        sc->pass_floor_pct = (sc->value_rules & VAL_RULE_PROBE) && sc->sel.probe_ok
                                 ? scanner_probe_floor(&sc->drops, sc->sel.delta_pct_min)
                                 : 0;
        sc->pass_probe =
            minute_ns > 0 &&
            scanner_probe_pass(sc->pass_floor_pct, now / minute_ns,
                               sc->seller_pass_ns > 0 ? sc->seller_pass_ns / minute_ns : 0,
                               sc->fresh_horizon_min == 0);
        sc->pass_start_ns = now;
        if (sc->pass_probe) {
            /* What is older than the newest moment of the last pass over the seller's selection
             * or of the last probe was read then: the probe's entries are the seller's too. */
            int64_t newest = sc->probe_newest_min > sc->last_newest_min ? sc->probe_newest_min
                                                                        : sc->last_newest_min;
            sc->fresh_horizon_min = scanner_fresh_horizon(newest, 0, 0);
        } else {
            sc->seller_pass_ns = now;
        }
    }
    int rc = sc->page_delta
                 ? scanner_selection_render_sorted(&sc->sel, sc->delta_pos, SCANNER_DELTA_SORT,
                                                   &sc->fetch_json, &len)
             : sc->page_fresh && sc->pass_probe
                 ? scanner_selection_render_probe(&sc->sel, sc->cur.position, SCANNER_FRESH_SORT,
                                                  sc->pass_floor_pct, &sc->fetch_json, &len)
                 : scanner_selection_render_sorted(&sc->sel, sc->cur.position,
                                                   sc->page_fresh ? SCANNER_FRESH_SORT : 0,
                                                   &sc->fetch_json, &len);
    if (rc != 0) {
        sc->fetch_retry_ns = now + backoff_ns(++sc->fetch_failures);
        return;
    }
    scanner_page_reset(&sc->page);
    sc->feed.prefiltered = 0;
    sc->page_full = (size_t)sc->sel.per_page; /* as fetched, whatever a reload does meanwhile */
    sc->page_last = (uint64_t)sc->sel.last_page;
    struct sp_job_spec spec = {
        .kind = sc->source == CFG_SOURCE_QUERY ? TB_KIND_QUERY : TB_KIND_DEAL_PAGE,
        .units = sc->source == CFG_SOURCE_QUERY ? sc->sel.per_page : 1,
        .prio = SP_PRIO_DISCOVER,
        .build = build_page,
        .cbs = {.on_deal = on_deal, .on_asin = on_query_asin, .on_done = page_done, .ud = sc}};
    sc->fetching = true;
    rc = sp_submit(&sc->sp, &spec);
    if (rc != 0) {
        sc->fetching = false;
        free(sc->fetch_json);
        sc->fetch_json = NULL;
        if (rc == -EKEYREJECTED) {
            sc->key_unusable = true;
        } else if (rc != -ESHUTDOWN) {
            kd_error("cannot queue a page request: %s", strerror(-rc));
            sc->fetch_retry_ns = now + backoff_ns(++sc->fetch_failures);
        }
        return;
    }
    pipe_next(sc);
}

static int write_cursor_fn(struct st_txn *txn, void *ud)
{
    uint8_t buf[SCANNER_CURSOR_BYTES];
    scanner_cursor_encode(ud, buf);
    return st_meta_put_bytes(txn, SCANNER_META_CURSOR, buf, sizeof(buf));
}

/*
 * The pause after a pass: [scan] pass_pause (wall time), none while tokens pile up (the busy
 * rule) after a pass that peeked something. Only the /deal feed, which changes under the walk,
 * goes without: a dear list source pays for its lists again every pass, and a list of ASINs or
 * a query has nothing new the moment after.
 */
static int64_t pass_pause_ms(struct scanner *sc)
{
    int64_t balance, rate;
    bucket_reading(sc, &balance, &rate);
    int64_t pause = scanner_pass_pause_ms(cfg(sc)->scan_pass_pause_ms,
                                          (sc->value_rules & VAL_RULE_BUSY) != 0 &&
                                              sc->source == CFG_SOURCE_DEALS,
                                          balance, rate, sc->pass_peeked);
    if (sc->page_fresh && (sc->value_rules & VAL_RULE_CADENCE) && sc->horizon_pages > 0) {
        /* No sooner than the pages pay for (scanner/rules.h), from this pass's start. */
        int64_t interval_min = scanner_pass_interval_min(
            tb_cost_estimate(sc->sp.tb, TB_KIND_DEAL_PAGE, (int64_t)sc->horizon_pages), rate,
            shm_counter_total(sc->wk->seg.layout, SHM_C_vanish_half_life_min));
        int64_t wait_ms = interval_min * cfg(sc)->tokens_minute_ms -
                          (kd_mono_ns() - sc->pass_start_ns) / KD_NS_PER_MS;
        if (wait_ms > pause)
            pause = wait_ms;
    }
    if (sc->page_fresh)
        pause = scanner_fresh_pause_ms(pause, balance, rate, cfg(sc)->tokens_minute_ms,
                                       full_tokens(sc, rate));
    return pause;
}

/* Every candidate of the page is final: store the advanced cursor. */
static void finish_page(struct scanner *sc, int64_t now)
{
    if (sc->page_delta) { /* the pass's own pages come next: the cursor stays */
        sc->page_delta = false;
        sc->delta_pos++;
        sc->delta_left = sc->page_items < sc->page_full ? 0 : sc->delta_left - 1;
        sc->page_loaded = false;
        scanner_page_reset(&sc->page);
        return;
    }
    struct scanner_cursor next = sc->cur;
    bool pass_end, horizon = false;
    if (file_source(sc->source))
        pass_end = scanner_cursor_after_chunk(&next, sc->page_next_line, sc->page_eof);
    else if (list_source(sc->source))
        pass_end =
            scanner_cursor_after_list_chunk(&next, sc->list_next, sc->list_n, sc->walk_lists);
    else
        pass_end = scanner_cursor_after_page(&next, sc->page_items, sc->page_full, sc->page_last);
    if (sc->page_fresh) {
        if (sc->feed.newest_min > sc->pass_newest_min)
            sc->pass_newest_min = sc->feed.newest_min;
        if (sc->feed.disordered && !sc->pass_disordered)
            kd_log(sc->fresh_warned ? KD_LOG_DEBUG : KD_LOG_WARN,
                   "deal page %llu is not in deal-age order (sortType %d): this pass walks "
                   "every page",
                   (unsigned long long)sc->cur.position, SCANNER_FRESH_SORT);
        sc->fresh_warned = sc->fresh_warned || sc->feed.disordered;
        sc->pass_disordered = sc->pass_disordered || sc->feed.disordered;
        if (!pass_end && !sc->pass_disordered &&
            scanner_fresh_ends_pass(sc->fresh_horizon_min, sc->feed.oldest_min)) {
            scanner_cursor_end_pass(&next);
            pass_end = true;
            horizon = true;
        }
    }
    int rc = st_write(sc->env, write_cursor_fn, &next);
    if (rc != 0) {
        if (!sc->cursor_write_pending)
            kd_error("cannot store the discovery cursor: %s; retrying (the page is kept)",
                     st_strerror(rc));
        wk_set_error(sc->wk, "store write failed: %s", st_strerror(rc));
        sc->cursor_write_pending = true;
        sc->store_retry_ns = now + STORE_RETRY_MS * KD_NS_PER_MS;
        return;
    }
    shm_counter_add(counters(sc), SHM_C_store_writes, 1);
    if (sc->cursor_write_pending)
        kd_info("the delayed store write succeeded: the cursor is stored");
    sc->cursor_write_pending = false;
    sc->cur = next;
    sc->page_loaded = false;
    scanner_page_reset(&sc->page);
    if (list_source(sc->source) && (pass_end || SCANNER_LIST_OF(next.position) != sc->list_index))
        sc->list_loaded = false; /* the walk left this list: the next one is fetched */
    if (pass_end) {
        if (sc->page_fresh && horizon)
            sc->horizon_pages = sc->pass_pages;
        if (sc->page_fresh && !horizon && !sc->pass_probe && sc->fresh_horizon_min == 0)
            sc->walk_pages = sc->pass_pages;
        sc->pass_resume_ns = now + pass_pause_ms(sc) * KD_NS_PER_MS;
        char lines[160] = "";
        if (sc->page_fresh) {
            char probe[48] = "";
            if (sc->pass_probe)
                snprintf(probe, sizeof(probe), ", a probe of drops from %d %%",
                         (int)sc->pass_floor_pct);
            if (horizon)
                snprintf(lines, sizeof(lines),
                         ", newest first to the horizon (minute %lld)%s, newest deal minute %lld",
                         (long long)sc->fresh_horizon_min, probe, (long long)sc->pass_newest_min);
            else
                snprintf(lines, sizeof(lines),
                         ", newest first over every page%s, newest deal minute %lld", probe,
                         (long long)sc->pass_newest_min);
            if (sc->pass_probe)
                sc->probe_newest_min = sc->pass_newest_min;
            else
                sc->last_newest_min = sc->pass_newest_min;
            sc->pass_probe = false;
            sc->pass_delta_done = false;
            sc->pass_newest_min = 0;
            sc->pass_disordered = false;
        }
        if (sc->source == CFG_SOURCE_LIST)
            snprintf(lines, sizeof(lines), ", %llu list lines ignored, %llu codes unresolved",
                     (unsigned long long)sc->pass_bad_lines,
                     (unsigned long long)sc->pass_unresolved);
        else if (list_source(sc->source))
            snprintf(lines, sizeof(lines),
                     ", %llu lists for %llu tokens, %llu lightning deals ended before their peek",
                     (unsigned long long)sc->pass_lists, (unsigned long long)sc->pass_list_tokens,
                     (unsigned long long)sc->pass_ended);
        if (sc->pass_piped > 0) {
            size_t used = strlen(lines);
            snprintf(lines + used, sizeof(lines) - used, ", %llu pages through the pipe",
                     (unsigned long long)sc->pass_piped);
        }
        kd_info("pass %u done: %llu pages, %llu asins discovered, %llu peeked, %llu survivors%s; "
                "next pass in %lld ms",
                next.pass - 1, (unsigned long long)sc->pass_pages,
                (unsigned long long)sc->pass_discovered, (unsigned long long)sc->pass_peeked,
                (unsigned long long)sc->pass_survivors, lines,
                (long long)((sc->pass_resume_ns - now) / KD_NS_PER_MS));
        sc->list_warned = true; /* bad list lines are reported once, not every pass */
        sc->pass_pages = sc->pass_discovered = sc->pass_peeked = sc->pass_survivors = 0;
        sc->pass_piped = 0;
        sc->pass_bad_lines = sc->pass_unresolved = 0;
        sc->pass_lists = sc->pass_list_tokens = sc->pass_ended = 0;
    }
}

/* ---------- the driver ---------- */

static void on_timer(uv_timer_t *t)
{
    step(t->data);
}

/*
 * Runs step() from the loop, soon: request callbacks call this instead of step() because the
 * spender may call them from inside sp_submit (a request that could not be built), that is
 * from inside step() itself.
 */
static void kick(struct scanner *sc)
{
    if (!sc->stopping)
        uv_timer_start(&sc->timer, on_timer, 0, 0);
}

static void arm(struct scanner *sc, int64_t now, int64_t wake)
{
    if (wake == INT64_MAX) {
        uv_timer_stop(&sc->timer);
        return;
    }
    int64_t ms = wake > now ? (wake - now + KD_NS_PER_MS - 1) / KD_NS_PER_MS : 0;
    uv_timer_start(&sc->timer, on_timer, (uint64_t)ms, 0);
}

/*
 * When the lane's first delta page is due away from a pass's start (scanner_delta_next), in
 * monotonic ns: INT64_MAX when the lane does not read it (off, not the fresh walk, or before
 * the first pass).
 */
static int64_t lane_due_ns(struct scanner *sc)
{
    int64_t minute_ns = cfg(sc)->tokens_minute_ms * KD_NS_PER_MS;
    if (!lane_on(sc) || !fresh_walk(sc) || !(sc->value_rules & VAL_RULE_DELTA) || minute_ns <= 0 ||
        !sc->sel_ok || sc->delta_first_min <= 0 || sc->delta_left > 0 || !sc->pass_page_since)
        return INT64_MAX;
    int64_t balance, rate;
    bucket_reading(sc, &balance, &rate);
    return (sc->delta_first_min + delta_interval_min(sc, rate)) * minute_ns;
}

static void step(struct scanner *sc)
{
    if (sc->stopping)
        return;
    int64_t now = kd_mono_ns();
    int64_t wake = INT64_MAX;
    flush_unpushed(sc, now, &wake);

    /* Results that are paid for but not yet stored come first. */
    bool store_blocked = false;
    for (int i = 0; i < SCANNER_MAX_BATCHES; i++) {
        struct scanner_batch *b = &sc->batches[i];
        if (!b->write_pending)
            continue;
        if (now >= sc->store_retry_ns)
            write_batch(sc, b);
        if (b->write_pending)
            store_blocked = true;
    }
    if (store_blocked || (sc->cursor_write_pending && now < sc->store_retry_ns)) {
        wake = sc->store_retry_ns < wake ? sc->store_retry_ns : wake;
        arm(sc, now, wake);
        return;
    }
    if (!sc->spend_ok || sc->key_unusable) {
        arm(sc, now, wake);
        return;
    }
    bool throttled = is_throttled(sc);
    if (throttled && THROTTLE_POLL_MS * KD_NS_PER_MS + now < wake)
        wake = now + THROTTLE_POLL_MS * KD_NS_PER_MS;

    for (int round = 0; round < PAGES_PER_STEP; round++) {
        if (sc->page_loaded) {
            if (!throttled)
                pipe_next(sc);
            if (!throttled) {
                drop_ended_deals(sc);
                submit_peeks(sc, now, &wake);
            }
            if (!scanner_page_complete(&sc->page) || busy_batches(sc))
                break;
            finish_page(sc, now);
            if (sc->page_loaded) { /* the cursor write failed */
                wake = sc->store_retry_ns < wake ? sc->store_retry_ns : wake;
                break;
            }
        }
        if (sc->fetching || throttled)
            break;
        bool lane_only = false;
        if (now < sc->pass_resume_ns) {
            /* The pause between passes; the lane's first delta page may come meanwhile. */
            int64_t lane = lane_due_ns(sc);
            if (now < lane) {
                wake = sc->pass_resume_ns < wake ? sc->pass_resume_ns : wake;
                wake = lane < wake ? lane : wake;
                break;
            }
            lane_only = true;
        }
        if (now < sc->fetch_retry_ns) {
            wake = sc->fetch_retry_ns < wake ? sc->fetch_retry_ns : wake;
            break;
        }
        start_page(sc, now, lane_only);
        if (!sc->page_loaded) {
            if (!sc->fetching && sc->fetch_retry_ns > now && sc->fetch_retry_ns < wake)
                wake = sc->fetch_retry_ns;
            break;
        }
        if (round == PAGES_PER_STEP - 1)
            wake = now; /* more pages may follow at once: yield to the loop first */
    }
    if (sc->page_loaded && !throttled && now < sc->peek_retry_ns && sc->peek_retry_ns < wake)
        wake = sc->peek_retry_ns;
    arm(sc, now, wake);
}

/* ---------- reload and stop ---------- */

static void on_reload(struct wk *wk)
{
    struct scanner *sc = wk->data;
    if (sc->stopping)
        return;
    jd_rules_from_cfg(cfg(sc), &sc->rules);
    sc->rules_hash = jd_rules_hash(&sc->rules);
    scanner_discovery_from_cfg(cfg(sc), &sc->disc);
    sc->value_rules = val_rules(cfg(sc));
    if (file_source(sc->source)) {
        const char *path = list_path(sc);
        sc->list_hash = scanner_fnv1a(SCANNER_FNV_INIT, path, strlen(path));
        sc->list_warned = false;
    } else if (list_source(sc->source)) {
        if (sc->source == CFG_SOURCE_BESTSELLERS)
            load_bestsellers(sc, true);
        sc->list_refused = false; /* a changed config is reported afresh */
    } else {
        struct scanner_selection next;
        char err[256];
        int rc = scanner_selection_load(&next, sc->source, cfg(sc)->keepa_domain, &sc->disc,
                                        cfg(sc)->scan_selection_file, err, sizeof(err));
        if (rc != 0) {
            kd_error("reload: %s; keeping the previous selection", err);
            wk_set_error(wk, "%s", err);
        } else {
            if (sc->sel_ok && next.hash != sc->sel.hash)
                kd_info("reload: the selection changed; the next page starts a new walk");
            scanner_selection_free(&sc->sel);
            sc->sel = next;
            sc->sel_ok = true;
        }
    }
    kd_info("reload: peek_batch %lld, peek_offers %lld, pass_pause %lld ms, dedup_window %lld ms",
            (long long)cfg(sc)->scan_peek_batch, (long long)cfg(sc)->scan_peek_offers,
            (long long)cfg(sc)->scan_pass_pause_ms, (long long)cfg(sc)->scan_dedup_window_ms);
    step(sc);
}

static void close_now(struct scanner *sc)
{
    uv_timer_stop(&sc->timer);
    for (int i = 0; i < SCANNER_MAX_BATCHES; i++) {
        struct scanner_batch *b = &sc->batches[i];
        if (b->write_pending && write_batch(sc, b) != 0)
            kd_error("stopping with %zu peek results that could not be stored", b->n);
    }
    if (sc->fees != NULL && sc->fees->all.n != sc->fees_saved_n) {
        int rc = st_write(sc->env, save_fees_fn, sc);
        if (rc != 0)
            kd_warn("stop: saving the learned low fees failed (%s); the next start uses the "
                    "last save",
                    st_strerror(rc));
    }
    sp_close(&sc->sp, wk_stop_cb, sc->wk);
}

/* Waits for the requests already sent to answer (their results are paid for), then closes. */
static void stop_poll(uv_timer_t *t)
{
    struct scanner *sc = t->data;
    bool deadline = kd_mono_ns() - sc->stop_started_ns > STOP_WAIT_MS * KD_NS_PER_MS;
    if (sc->sp.in_flight == 0 || deadline) {
        close_now(sc);
        return;
    }
    uv_timer_start(&sc->timer, stop_poll, STOP_POLL_MS, 0);
}

static void on_stop(struct wk *wk)
{
    struct scanner *sc = wk->data;
    if (sc->stopping)
        return;
    sc->stopping = true;
    sc->stop_started_ns = kd_mono_ns();
    uv_timer_stop(&sc->timer);
    stop_poll(&sc->timer);
}

/* ---------- start ---------- */

static int load_cursor(struct scanner *sc)
{
    struct st_txn *txn = NULL;
    int rc = st_read_begin(sc->env, &txn);
    if (rc != 0)
        return rc;
    uint8_t buf[SCANNER_CURSOR_BYTES];
    size_t n = 0;
    struct scanner_cursor stored;
    bool have = false;
    rc = st_meta_get_bytes(txn, SCANNER_META_CURSOR, buf, sizeof(buf), &n);
    if (rc == 0 && scanner_cursor_decode(buf, n, &stored) == 0)
        have = true;
    else if (rc != -ENOENT)
        kd_warn("stored discovery cursor unreadable (%s); starting from the beginning",
                rc != 0 ? st_strerror(rc) : "bad format");
    sc->cur = scanner_cursor_resume(have ? &stored : NULL, (uint8_t)sc->source, source_hash(sc));
    if (list_source(sc->source))
        restore_list(sc, txn);
    st_read_end(txn);
    if (list_source(sc->source))
        kd_info("discovery from %s, pass %u, list %u entry %u", source_name(sc->source),
                sc->cur.pass, SCANNER_LIST_OF(sc->cur.position),
                SCANNER_OFFSET_OF(sc->cur.position));
    else
        kd_info("discovery from %s, pass %u, %s %llu", source_name(sc->source), sc->cur.pass,
                file_source(sc->source) ? "line" : "page", (unsigned long long)sc->cur.position);
    return 0;
}

static int on_start(struct wk *wk)
{
    struct scanner *sc = wk->data;
    sc->wk = wk;
    jd_rules_from_cfg(&wk->cfg, &sc->rules);
    sc->rules_hash = jd_rules_hash(&sc->rules);
    scanner_discovery_from_cfg(&wk->cfg, &sc->disc);
    sc->value_rules = val_rules(&wk->cfg);
    sc->source = wk->cfg.scan_source;
    for (int i = 0; i < SCANNER_MAX_BATCHES; i++)
        sc->batches[i].sc = sc;
    int rc = wk_store_open(wk, &sc->env);
    if (rc != 0)
        return rc;
    /* The pipe's pages are the size of the page in memory: their memory is taken now, as the
     * page's, not when tokens first pile up (a step a soak would read as growth). */
    for (int i = 0; i < SCANNER_PIPE_SLOTS; i++) {
        sc->next[i].sc = sc;
        memset(&sc->next[i].page, 0, sizeof(sc->next[i].page));
    }
    sc->fees = malloc(sizeof(*sc->fees)); /* NULL: the pre-score goes without */
    if (sc->fees != NULL) /* every page of the per-product table written now, not as peeks
                             fill it (calloc's pages are not; nor malloc + memset's, which
                             the compiler may turn into calloc) */
        explicit_bzero(sc->fees, sizeof(*sc->fees));
    sc->fees_nums = malloc(SCANNER_FEES_NUMS * sizeof(*sc->fees_nums)); /* NULL: not kept */
    if (sc->fees_nums != NULL) /* every page written now: the memory does not grow later */
        memset(sc->fees_nums, 0, SCANNER_FEES_NUMS * sizeof(*sc->fees_nums));
    if (sc->fees != NULL) {
        scanner_fees_init(sc->fees);
        load_fees(sc);
    }
    if (wk_backlog_init(&sc->survivors_out, wk, SHM_RING_SURVIVORS, SCANNER_UNPUSHED,
                        "it stays in pending") != 0 ||
        wk_backlog_init(&sc->refresh_out, wk, SHM_RING_REFRESH, SCANNER_UNPUSHED,
                        "refresh skipped") != 0) {
        kd_error("out of memory");
        return -ENOMEM;
    }

    char err[512];
    if (file_source(sc->source)) {
        const char *path = list_path(sc);
        sc->list_hash = scanner_fnv1a(SCANNER_FNV_INIT, path, strlen(path));
    } else if (list_source(sc->source)) {
        if (sc->source == CFG_SOURCE_BESTSELLERS)
            load_bestsellers(sc, false);
    } else {
        rc = scanner_selection_load(&sc->sel, sc->source, wk->cfg.keepa_domain, &sc->disc,
                                    wk->cfg.scan_selection_file, err, sizeof(err));
        if (rc == 0) {
            sc->sel_ok = true;
        } else {
            /* Not fatal: the operator fixes the file and sends HUP. */
            kd_error("%s; discovery waits for a valid selection (fix it and reload)", err);
            wk_set_error(wk, "%s", err);
        }
    }
    rc = load_cursor(sc);
    if (rc != 0) {
        kd_error("cannot read the discovery cursor: %s", st_strerror(rc));
        return rc;
    }

    rc = sp_init(&sc->sp, wk, err, sizeof(err));
    if (rc == 0) {
        sc->spend_ok = true;
    } else {
        kd_error("%s; the scanner idles", err);
        wk_set_error(wk, "%s", err);
    }
    uv_timer_init(wk->loop, &sc->timer);
    sc->timer.data = sc;
    kd_info("scanner: %s source, peek batch %lld, offers %lld, dedup window %lld ms",
            source_name(sc->source), (long long)wk->cfg.scan_peek_batch,
            (long long)wk->cfg.scan_peek_offers, (long long)wk->cfg.scan_dedup_window_ms);
    step(sc);
    kd_info("ready");
    return 0;
}

static void on_release(struct wk *wk)
{
    struct scanner *sc = wk->data;
    st_close(sc->env);
    scanner_selection_free(&sc->sel);
    free(sc->fetch_json);
    for (int i = 0; i < SCANNER_PIPE_SLOTS; i++)
        free(sc->next[i].json);
    free(sc->list);
    wk_backlog_free(&sc->survivors_out);
    wk_backlog_free(&sc->refresh_out);
    free(sc->fees);
    free(sc->fees_nums);
}

const struct wk_stage scanner_stage = {
    .name = "scanner",
    .role = SHM_ROLE_SCANNER,
    .state_size = sizeof(struct scanner),
    .start = on_start,
    .stop = on_stop,
    .reload = on_reload,
    .release = on_release,
};
