/*
 * rules.c: the scanner's pure decisions. See rules.h.
 */
#include "scanner/rules.h"

#include "judge/inputs.h"
#include "judge/market.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

bool scanner_prefilter_deal(const struct kp_deal *d, const struct jd_rules *r, const char **why)
{
    struct jd_inputs in;
    struct jd_verdict v;
    jd_inputs_from_deal(d, r, 0, &in);
    bool keep = jd_judge(&in, r, &v);
    if (!keep && why != NULL)
        *why = jd_reason(&v);
    return keep;
}

static size_t fees_slot(const char *asin)
{
    return (size_t)(scanner_fnv1a(SCANNER_FNV_INIT, asin, ST_ASIN_LEN) & (SCANNER_FEES_SLOTS - 1));
}

void scanner_fees_put(struct scanner_fees *f, const char *asin, const struct jd_inputs *in)
{
    if (!in->fees_known || strlen(asin) != ST_ASIN_LEN)
        return;
    struct scanner_fees_entry *e = &f->e[fees_slot(asin)];
    memcpy(e->asin, asin, ST_ASIN_LEN + 1);
    e->referral_bp = in->referral_bp;
    e->fba_fee_cents = in->fba_fee_cents;
    e->closing_fee_cents = in->closing_fee_cents;
}

bool scanner_fees_get(const struct scanner_fees *f, const char *asin, struct jd_inputs *in)
{
    if (strlen(asin) != ST_ASIN_LEN)
        return false;
    const struct scanner_fees_entry *e = &f->e[fees_slot(asin)];
    if (memcmp(e->asin, asin, ST_ASIN_LEN + 1) != 0)
        return false;
    in->referral_bp = e->referral_bp;
    in->fba_fee_cents = e->fba_fee_cents;
    in->closing_fee_cents = e->closing_fee_cents;
    in->fees_known = true;
    return true;
}

static int cmp_i32(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* The SCANNER_FEES_LOW_PCT-th percentile of the first N of V (lower nearest rank). */
static int32_t low_of(const int32_t *v, size_t n)
{
    int32_t s[SCANNER_FEES_LOW_N];
    memcpy(s, v, n * sizeof(*s));
    qsort(s, n, sizeof(*s), cmp_i32);
    return s[(n - 1) * SCANNER_FEES_LOW_PCT / 100];
}

static int32_t clamp_i32(int64_t x)
{
    return x < 0 ? 0 : x > INT32_MAX ? INT32_MAX : (int32_t)x;
}

static void low_add(struct scanner_fees_low *l, const struct jd_verdict *v)
{
    size_t i = l->n % SCANNER_FEES_LOW_N;
    l->referral_bp[i] = clamp_i32(v->referral_bp);
    l->fba_cents[i] = clamp_i32(v->fba_cents);
    l->closing_cents[i] = clamp_i32(v->closing_cents);
    l->n++;
    if (l->n < SCANNER_FEES_LOW_MIN)
        return;
    size_t n = l->n < SCANNER_FEES_LOW_N ? l->n : SCANNER_FEES_LOW_N;
    l->low_referral_bp = low_of(l->referral_bp, n);
    l->low_fba_cents = low_of(l->fba_cents, n);
    l->low_closing_cents = low_of(l->closing_cents, n);
}

void scanner_fees_init(struct scanner_fees *f)
{
    memset(&f->all, 0, sizeof(f->all));
    memset(f->cat, 0, sizeof(f->cat));
    memset(f->peek, 0, sizeof(f->peek));
    for (size_t i = 0; i < SCANNER_FEES_LOW_CATS; i++)
        f->cat[i].root_category = -1; /* free */
}

void scanner_fees_learn(struct scanner_fees *f, int64_t root_category, const struct jd_verdict *v)
{
    if (!v->payout_known || v->bound)
        return;
    low_add(&f->all, v);
    if (root_category <= 0)
        return;
    struct scanner_fees_low *slot = &f->cat[0];
    for (size_t i = 0; i < SCANNER_FEES_LOW_CATS; i++) {
        if (f->cat[i].root_category == root_category) {
            slot = &f->cat[i];
            break;
        }
        if (f->cat[i].n < slot->n)
            slot = &f->cat[i];
    }
    if (slot->root_category != root_category) {
        memset(slot, 0, sizeof(*slot));
        slot->root_category = root_category;
    }
    low_add(slot, v);
}

bool scanner_fees_low(const struct scanner_fees *f, int64_t root_category, struct jd_inputs *in)
{
    const struct scanner_fees_low *l = &f->all;
    for (size_t i = 0; root_category > 0 && i < SCANNER_FEES_LOW_CATS; i++)
        if (f->cat[i].root_category == root_category && f->cat[i].n >= SCANNER_FEES_LOW_MIN)
            l = &f->cat[i];
    if (l->n < SCANNER_FEES_LOW_MIN)
        return false;
    in->referral_bp = l->low_referral_bp;
    /* The judgement takes an FBA fee <= 0 as unknown and charges its default: 1 cent is
     * the lowest fee it charges as given. */
    in->fba_fee_cents = l->low_fba_cents > 0 ? l->low_fba_cents : 1;
    in->closing_fee_cents = l->low_closing_cents;
    in->fees_known = true;
    return true;
}

void scanner_prescore_deal(const struct kp_deal *d, const struct jd_rules *r,
                           const struct scanner_fees *fees, bool low, int64_t *profit_cents,
                           int64_t *at_min)
{
    scanner_prescore_deal_class(d, r, fees, low, profit_cents, at_min, NULL);
}

void scanner_prescore_deal_class(const struct kp_deal *d, const struct jd_rules *r,
                                 const struct scanner_fees *fees, bool low, int64_t *profit_cents,
                                 int64_t *at_min, uint8_t *cls)
{
    struct jd_inputs in;
    struct jd_verdict v;
    jd_inputs_from_deal(d, r, 0, &in);
    *at_min = d->creation_date_keepa_min > 0 ? d->creation_date_keepa_min
              : d->last_update_keepa_min > 0 ? d->last_update_keepa_min
                                             : 0;
    int source = 0;
    if (fees != NULL && scanner_fees_get(fees, d->asin, &in))
        source = 2;
    else if (fees != NULL && low && scanner_fees_low(fees, in.root_category, &in))
        source = 1;             /* never peeked (or forgotten): the low fees */
    struct jd_inputs bare = in; /* as a peek reads it: no Buy Box */
    bare.new_buy_box_cents = bare.used_buy_box_cents = -1;
    struct jd_verdict vb;
    bool deal = jd_judge(&in, r, &v), deal_bare = jd_judge(&bare, r, &vb);
    if (source > 0) {
        if (!deal && !deal_bare) {
            *profit_cents = -1;
            if (cls != NULL)
                *cls = SCANNER_PEEK_NONE;
            return;
        }
        if (!deal || (deal_bare && vb.profit_cents > v.profit_cents))
            v = vb;
    }
    *profit_cents = v.priced && v.profit_cents > 0 ? v.profit_cents : 0;
    if (cls != NULL)
        *cls = scanner_peek_class(source, deal && !deal_bare, *profit_cents);
}

uint8_t scanner_peek_class(int fees_source, bool buy_box_only, int64_t profit_cents)
{
    int band = profit_cents < 1000 ? 0 : profit_cents < 2000 ? 1 : profit_cents < 4000 ? 2 : 3;
    int source = fees_source < 0 ? 0 : fees_source > 2 ? 2 : fees_source;
    return (uint8_t)((source * 2 + (buy_box_only ? 1 : 0)) * SCANNER_PEEK_BANDS + band);
}

void scanner_peek_learn(struct scanner_fees *f, uint8_t cls, bool passed)
{
    if (cls >= SCANNER_PEEK_CLASSES)
        return;
    struct scanner_peek_rate *k = &f->peek[cls];
    k->passed = (k->passed << 1) | (passed ? 1u : 0u);
    k->n++;
}

/* Whether K's peeks pass too seldom to be worth one (struct scanner_peek_rate). */
static bool peek_rate_low(const struct scanner_peek_rate *k)
{
    if (k->n < SCANNER_PEEK_MIN)
        return false;
    uint32_t n = k->n < SCANNER_PEEK_WINDOW ? k->n : SCANNER_PEEK_WINDOW;
    uint32_t mask = n >= 32 ? UINT32_MAX : (1u << n) - 1;
    uint32_t passed = (uint32_t)__builtin_popcount(k->passed & mask);
    return passed * 100 < n * SCANNER_PEEK_MIN_PASS_PCT;
}

bool scanner_peek_skip(struct scanner_fees *f, uint8_t cls)
{
    if (cls >= SCANNER_PEEK_CLASSES || !peek_rate_low(&f->peek[cls]))
        return false;
    return ++f->peek[cls].skipped % SCANNER_PEEK_EXPLORE != 0;
}

unsigned scanner_peek_classes_shut(const struct scanner_fees *f)
{
    unsigned n = 0;
    for (size_t i = 0; i < SCANNER_PEEK_CLASSES; i++)
        n += peek_rate_low(&f->peek[i]);
    return n;
}

double scanner_prescore(int64_t profit_cents, int64_t at_min, int64_t newest_min,
                        int64_t half_life_min)
{
    if (profit_cents <= 0)
        return 0;
    double age = at_min > 0 && newest_min > at_min ? (double)(newest_min - at_min) : 0;
    double h = (double)(half_life_min > 0 ? half_life_min : SCANNER_HALF_LIFE_MIN);
    return (double)profit_cents * exp2(-age / h);
}

int64_t scanner_pass_pause_ms(int64_t pause_ms, bool busy, int64_t balance, int64_t rate,
                              uint64_t peeked)
{
    if (pause_ms < 0)
        pause_ms = 0;
    if (busy && peeked > 0 && rate > 0 && balance > rate * SCANNER_BUSY_MIN)
        return 0;
    return pause_ms;
}

uint64_t scanner_fnv1a(uint64_t h, const void *p, size_t len)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < len; i++) {
        h ^= b[i];
        h *= 1099511628211ULL;
    }
    return h;
}

/* Price series of the feed (docs/keepa-api.md §7.1): counts, ranks and ratings are left out, since
 * they move without making a new peek worthwhile. */
static const uint8_t price_types[] = {0, 1, 2, 5, 6, 7, 9, 10, 18, 19, 20, 21, 22, 32};

uint64_t scanner_feed_hash(const struct kp_deal *d)
{
    uint64_t h = SCANNER_FNV_INIT;
    for (size_t k = 0; k < sizeof(price_types); k++) {
        unsigned i = price_types[k];
        uint32_t v = i < d->n_price && i < KP_NPRICE ? (uint32_t)d->current[i] : UINT32_MAX;
        uint8_t le[4];
        for (int b = 0; b < 4; b++)
            le[b] = (uint8_t)(v >> (8 * b));
        h = scanner_fnv1a(h, le, sizeof(le));
    }
    return h;
}

bool scanner_dedup_skip(const struct st_seen *seen, int64_t now_ms, int64_t window_ms,
                        int64_t feed_last_update_min, uint64_t feed_hash)
{
    if (seen == NULL || seen->verdict == ST_VERDICT_NONE || seen->verdict == ST_VERDICT_ERROR)
        return false;
    if (window_ms <= 0)
        return false;
    /* A record from the future (clock stepped back) counts as young: at most one window. */
    int64_t age = now_ms - seen->peek_ms;
    if (age >= window_ms)
        return false;
    return seen->feed_last_update_min == feed_last_update_min && seen->feed_price_hash == feed_hash;
}

bool scanner_mark_skip(unsigned mark)
{
    return mark != ST_MARK_NONE;
}

enum scanner_peek_route scanner_peek_route(int record_rc, unsigned state, bool survivor)
{
    if (record_rc == 0 && (state == ST_STATE_DEAL || state == ST_STATE_FAILING))
        return SCANNER_ROUTE_REFRESH;
    if (record_rc != 0 && record_rc != -ENOENT && record_rc != -EBADMSG && record_rc != -ENOTSUP)
        return SCANNER_ROUTE_ERROR;
    return survivor ? SCANNER_ROUTE_COMMIT : SCANNER_ROUTE_NONE;
}

bool scanner_known_fail(const struct st_record *r, int64_t new_cents, int64_t used_cents,
                        const struct jd_rules *rules, int64_t now_ms, int64_t max_age_ms)
{
    if (r->state != ST_STATE_REJECTED || r->rules_hash == 0 || (new_cents <= 0 && used_cents <= 0))
        return false;
    if (r->in.data_ms <= 0 || now_ms - r->in.data_ms > max_age_ms)
        return false;
    int used = jd_side_of_condition(r->in.buy_condition) == JD_USED ? r->in.buy_condition : 2;
    const int64_t price[2] = {new_cents, used_cents};
    const int condition[2] = {1, used};
    for (int k = 0; k < 2; k++) {
        if (price[k] <= 0)
            continue;
        struct jd_inputs in = r->in;
        in.buy_condition = (uint8_t)condition[k];
        in.buy_price_cents = price[k];
        in.buy_shipping_cents = 0;
        struct jd_verdict v;
        if (jd_judge(&in, rules, &v))
            return false;
    }
    return true;
}

static void put_le(uint8_t *out, uint64_t v, int bytes)
{
    for (int i = 0; i < bytes; i++)
        out[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le(const uint8_t *in, int bytes)
{
    uint64_t v = 0;
    for (int i = 0; i < bytes; i++)
        v |= (uint64_t)in[i] << (8 * i);
    return v;
}

/* Layout: [0] version, [1] source, [2..3] zero, [4..7] pass, [8..15] position, [16..23] hash. */
void scanner_cursor_encode(const struct scanner_cursor *c, uint8_t out[SCANNER_CURSOR_BYTES])
{
    memset(out, 0, SCANNER_CURSOR_BYTES);
    out[0] = SCANNER_CURSOR_VERSION;
    out[1] = c->source;
    put_le(out + 4, c->pass, 4);
    put_le(out + 8, c->position, 8);
    put_le(out + 16, c->selection_hash, 8);
}

int scanner_cursor_decode(const void *buf, size_t len, struct scanner_cursor *out)
{
    const uint8_t *b = buf;
    if (buf == NULL || len != SCANNER_CURSOR_BYTES || b[0] != SCANNER_CURSOR_VERSION)
        return -EBADMSG;
    out->source = b[1];
    out->pass = (uint32_t)get_le(b + 4, 4);
    out->position = get_le(b + 8, 8);
    out->selection_hash = get_le(b + 16, 8);
    return 0;
}

struct scanner_cursor scanner_cursor_resume(const struct scanner_cursor *stored, uint8_t source,
                                            uint64_t selection_hash)
{
    struct scanner_cursor c = {.source = source, .selection_hash = selection_hash};
    if (stored == NULL)
        return c;
    c.pass = stored->pass;
    if (stored->source == source && stored->selection_hash == selection_hash)
        c.position = stored->position;
    return c;
}

bool scanner_cursor_after_page(struct scanner_cursor *c, size_t n_items, size_t full,
                               uint64_t last_page)
{
    if (n_items < full || c->position >= last_page) {
        c->position = 0;
        c->pass++;
        return true;
    }
    c->position++;
    return false;
}

void scanner_cursor_end_pass(struct scanner_cursor *c)
{
    c->position = 0;
    c->pass++;
}

bool scanner_fresh_ends_pass(int64_t horizon_min, int64_t page_oldest_min)
{
    return horizon_min > 0 && page_oldest_min > 0 && page_oldest_min < horizon_min;
}

bool scanner_fresh_in_order(int64_t prev_min, int64_t moment_min)
{
    return prev_min <= 0 || moment_min <= 0 || moment_min <= prev_min + SCANNER_FRESH_MARGIN_MIN;
}

int64_t scanner_fresh_full_tokens(int64_t rate, int64_t walk_tokens)
{
    if (rate <= 0)
        return 0;
    int64_t most = rate * SCANNER_FRESH_FULL_MIN;
    return walk_tokens > 0 && walk_tokens < most ? walk_tokens : most;
}

int64_t scanner_fresh_pause_ms(int64_t pause_ms, int64_t balance, int64_t rate, int64_t minute_ms,
                               int64_t full_tokens)
{
    if (pause_ms <= 0 || rate <= 0 || minute_ms <= 0 || full_tokens <= 0)
        return pause_ms > 0 ? pause_ms : 0;
    int64_t short_tokens = full_tokens + 1 - balance;
    if (short_tokens <= 0)
        return 0;
    /* Whole minutes of refill, as the bucket gains them. */
    int64_t wait_ms = (short_tokens + rate - 1) / rate * minute_ms;
    return wait_ms < pause_ms ? wait_ms : pause_ms;
}

int64_t scanner_fresh_horizon(int64_t pass_newest_min, int64_t balance, int64_t full_tokens)
{
    if (pass_newest_min <= SCANNER_FRESH_MARGIN_MIN)
        return 0;
    if (full_tokens > 0 && balance > full_tokens)
        return 0;
    return pass_newest_min - SCANNER_FRESH_MARGIN_MIN;
}

int64_t scanner_pass_interval_min(int64_t page_tokens, int64_t rate, int64_t half_life_min)
{
    if (page_tokens <= 0 || rate <= 0)
        return 0;
    double h = (double)(half_life_min > 0 ? half_life_min : SCANNER_HALF_LIFE_MIN);
    return (int64_t)llround(sqrt(2.0 * (double)page_tokens * h / ((double)rate * M_LN2)));
}

bool scanner_delta_page(int64_t now_min, int64_t last_min, int64_t interval_min, bool full_walk)
{
    return !full_walk && (last_min <= 0 || now_min - last_min >= interval_min);
}

uint32_t scanner_delta_next(int64_t now_min, int64_t pair_last_min, int64_t first_last_min,
                            int64_t interval_min, bool full_walk, bool pass_start, bool lane,
                            bool pass_page_since, uint32_t *first)
{
    *first = 0;
    bool first_due = lane && (pass_start || pass_page_since) &&
                     scanner_delta_page(now_min, first_last_min, interval_min, full_walk);
    if (pass_start && scanner_delta_page(now_min, pair_last_min, interval_min, full_walk)) {
        *first = lane && !first_due ? 1 : 0;
        return SCANNER_DELTA_PAGES - *first;
    }
    return first_due ? 1 : 0;
}

void scanner_drops_put(struct scanner_drops *d, int32_t pct)
{
    if (pct < 0 || pct > 100)
        return;
    d->pct[d->next] = pct;
    d->next = (d->next + 1) % SCANNER_PROBE_SAMPLES;
    if (d->n < SCANNER_PROBE_SAMPLES)
        d->n++;
}

int32_t scanner_probe_floor(const struct scanner_drops *d, int32_t seller_min_pct)
{
    if (d->n < SCANNER_PROBE_MIN_SAMPLES)
        return 0;
    /* Counting sort: the drops are whole percents. */
    uint32_t count[101] = {0};
    for (uint32_t i = 0; i < d->n; i++)
        count[d->pct[i]]++;
    uint32_t below = d->n * SCANNER_PROBE_QUANTILE_PCT / 100, seen = 0;
    int32_t floor = 0;
    for (int32_t p = 0; p <= 100; p++) {
        seen += count[p];
        if (seen > below) {
            floor = p;
            break;
        }
    }
    return floor > seller_min_pct ? floor : 0;
}

bool scanner_probe_pass(int32_t floor_pct, int64_t now_min, int64_t seller_pass_min, bool full_walk)
{
    return floor_pct > 0 && !full_walk && seller_pass_min > 0 &&
           now_min - seller_pass_min < SCANNER_PROBE_SELLER_MIN;
}

bool scanner_cursor_after_chunk(struct scanner_cursor *c, uint64_t next_line, bool eof)
{
    if (eof) {
        c->position = 0;
        c->pass++;
        return true;
    }
    c->position = next_line;
    return false;
}

void scanner_page_reset(struct scanner_page *p)
{
    p->n = 0;
}

static bool valid_asin(const char *a)
{
    size_t i = 0;
    for (; a[i] != '\0'; i++)
        if (i >= ST_ASIN_LEN || !((a[i] >= '0' && a[i] <= '9') || (a[i] >= 'A' && a[i] <= 'Z')))
            return false;
    return i == ST_ASIN_LEN;
}

int scanner_page_add(struct scanner_page *p, const char *asin, int64_t feed_last_update_min,
                     uint64_t feed_hash)
{
    if (!valid_asin(asin))
        return -EINVAL;
    for (size_t i = 0; i < p->n; i++)
        if (memcmp(p->c[i].asin, asin, ST_ASIN_LEN) == 0)
            return 1;
    if (p->n >= SCANNER_PAGE_MAX)
        return -ENOSPC;
    struct scanner_cand *c = &p->c[p->n++];
    memset(c, 0, sizeof(*c));
    memcpy(c->asin, asin, ST_ASIN_LEN + 1);
    c->state = SCANNER_CAND_QUEUED;
    c->item = -1;
    c->feed_last_update_min = feed_last_update_min;
    c->feed_hash = feed_hash;
    c->window_start_min = c->window_end_min = -1;
    c->feed_drop_pct = -1;
    c->feed_new_cents = c->feed_used_cents = -1;
    c->peek_class = SCANNER_PEEK_NONE;
    return 0;
}

int scanner_page_add_code(struct scanner_page *p, const char *code, int16_t item)
{
    size_t n = strlen(code);
    if (n < 8 || n >= KP_CODE_LEN - 1)
        return -EINVAL;
    for (size_t i = 0; i < n; i++)
        if (code[i] < '0' || code[i] > '9')
            return -EINVAL;
    for (size_t i = 0; i < p->n; i++)
        if (strcmp(p->c[i].code, code) == 0)
            return 1;
    if (p->n >= SCANNER_PAGE_MAX)
        return -ENOSPC;
    struct scanner_cand *c = &p->c[p->n++];
    memset(c, 0, sizeof(*c));
    memcpy(c->code, code, n + 1);
    c->state = SCANNER_CAND_QUEUED;
    c->item = item;
    c->feed_last_update_min = -1;
    c->window_start_min = c->window_end_min = -1;
    c->feed_drop_pct = -1;
    c->feed_new_cents = c->feed_used_cents = -1;
    c->peek_class = SCANNER_PEEK_NONE;
    return 0;
}

size_t scanner_page_take(struct scanner_page *p, size_t max, uint16_t *idx)
{
    size_t n = 0;
    int kind = -1; /* 0 ASINs, 1 codes */
    for (size_t i = 0; i < p->n && n < max; i++) {
        if (p->c[i].state != SCANNER_CAND_QUEUED)
            continue;
        int k = p->c[i].code[0] != '\0';
        if (kind < 0)
            kind = k;
        if (k != kind)
            continue;
        p->c[i].state = SCANNER_CAND_IN_FLIGHT;
        idx[n++] = (uint16_t)i;
    }
    return n;
}

size_t scanner_page_take_best(struct scanner_page *p, size_t max, uint16_t *idx,
                              int64_t half_life_min)
{
    return scanner_page_take_rated(p, max, idx, half_life_min, NULL, NULL);
}

size_t scanner_page_take_rated(struct scanner_page *p, size_t max, uint16_t *idx,
                               int64_t half_life_min, struct scanner_fees *rates, size_t *dropped)
{
    int64_t newest = 0;
    for (size_t i = 0; i < p->n; i++)
        if (p->c[i].state == SCANNER_CAND_QUEUED && p->c[i].prescore_at_min > newest)
            newest = p->c[i].prescore_at_min;
    int kind = -1; /* one kind per request, the first queued one's: 0 ASINs, 1 codes */
    for (size_t i = 0; i < p->n && kind < 0; i++)
        if (p->c[i].state == SCANNER_CAND_QUEUED)
            kind = p->c[i].code[0] != '\0';
    size_t n = 0;
    while (n < max) {
        ptrdiff_t best = -1;
        double best_score = 0;
        for (size_t i = 0; i < p->n; i++) {
            const struct scanner_cand *c = &p->c[i];
            if (c->state != SCANNER_CAND_QUEUED || (c->code[0] != '\0') != kind)
                continue;
            double score = scanner_prescore(c->prescore_profit_cents, c->prescore_at_min, newest,
                                            half_life_min);
            if (best < 0 || score > best_score) {
                best = (ptrdiff_t)i;
                best_score = score;
            }
        }
        if (best < 0)
            break;
        if (rates != NULL && scanner_peek_skip(rates, p->c[best].peek_class)) {
            p->c[best].state = SCANNER_CAND_DONE;
            if (dropped != NULL)
                (*dropped)++;
            continue;
        }
        p->c[best].state = SCANNER_CAND_IN_FLIGHT;
        idx[n++] = (uint16_t)best;
    }
    return n;
}

void scanner_page_release(struct scanner_page *p, const uint16_t *idx, size_t n, bool done)
{
    for (size_t i = 0; i < n; i++)
        if (idx[i] < p->n)
            p->c[idx[i]].state = done ? SCANNER_CAND_DONE : SCANNER_CAND_QUEUED;
}

size_t scanner_page_count(const struct scanner_page *p, enum scanner_cand_state state)
{
    size_t n = 0;
    for (size_t i = 0; i < p->n; i++)
        n += p->c[i].state == state;
    return n;
}

bool scanner_page_complete(const struct scanner_page *p)
{
    return scanner_page_count(p, SCANNER_CAND_DONE) == p->n;
}

int scanner_parse_asin_line(const char *line, char out[ST_ASIN_LEN + 1])
{
    const char *s = line;
    while (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n')
        s++;
    if (*s == '\0' || *s == '#')
        return 0;
    char buf[ST_ASIN_LEN + 1];
    size_t n = 0;
    while (*s != '\0' && *s != '#' && !isspace((unsigned char)*s)) {
        if (n >= ST_ASIN_LEN)
            return -EINVAL;
        buf[n++] = (char)toupper((unsigned char)*s);
        s++;
    }
    buf[n] = '\0';
    while (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n')
        s++;
    if (*s != '\0' && *s != '#')
        return -EINVAL;
    if (!valid_asin(buf))
        return -EINVAL;
    memcpy(out, buf, ST_ASIN_LEN + 1);
    return 1;
}

int64_t scanner_backlog_limit(int64_t balance, int64_t rate, int64_t batch_cost, int64_t batch)
{
    if (batch < 1)
        batch = 1;
    int64_t most = 4 * batch * 10;
    if (rate <= 0)
        return batch;
    if (batch_cost <= 0)
        return most;
    int64_t tokens = (balance > 0 ? balance : 0) + rate * SCANNER_BACKLOG_HORIZON_MIN;
    int64_t limit = tokens / batch_cost * batch;
    return limit < batch ? batch : limit > most ? most : limit;
}

int64_t scanner_peek_room(int64_t limit, int64_t backlog, int64_t in_flight, int64_t peeked,
                          int64_t passed)
{
    /* In units of 1 / (peeked + 2) survivors, so the rate (passed + 1) / (peeked + 2) is exact. */
    __int128 num = (passed > 0 ? passed : 0) + 1, den = (peeked > 0 ? peeked : 0) + 2;
    __int128 room = (__int128)(limit - backlog) * den - (__int128)in_flight * num;
    __int128 asins = room > 0 ? (room + num - 1) / num : 0;
    if (asins > INT64_MAX)
        asins = INT64_MAX;
    return asins > 0 ? (int64_t)asins : in_flight > 0 ? 0 : 1;
}

/* ---- the seller's list ---- */

/* Splits the next CSV field of *P into BUF (LEN bytes). Returns false when it does not fit or
 * a quote is not closed; *P moves past the field and its comma (NULL after the last field). */
static bool next_field(const char **p, char *buf, size_t len)
{
    const char *s = *p;
    size_t n = 0;
    while (*s == ' ' || *s == '\t')
        s++;
    bool ok = true;
    if (*s == '"') {
        s++;
        for (;;) {
            if (*s == '\0')
                return false;
            if (*s == '"' && s[1] == '"') {
                s++;
            } else if (*s == '"') {
                s++;
                break;
            }
            if (n + 1 < len)
                buf[n++] = *s;
            else
                ok = false;
            s++;
        }
        while (*s == ' ' || *s == '\t')
            s++;
        if (*s != ',' && *s != '\0')
            return false;
    } else {
        while (*s != ',' && *s != '\0') {
            if (n + 1 < len)
                buf[n++] = *s;
            else
                ok = false;
            s++;
        }
        while (n > 0 && (buf[n - 1] == ' ' || buf[n - 1] == '\t'))
            n--;
    }
    buf[n] = '\0';
    *p = *s == ',' ? s + 1 : NULL;
    return ok;
}

static bool all_digits(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return n > 0;
}

int scanner_parse_list_line(const char *line, unsigned domain, struct scanner_list_line *out,
                            char *why, size_t whylen)
{
    char text[1024];
    size_t n = strcspn(line, "\r\n");
    if (n >= sizeof(text)) {
        snprintf(why, whylen, "longer than %zu characters", sizeof(text) - 1);
        return -EINVAL;
    }
    memcpy(text, line, n);
    text[n] = '\0';
    const char *p = text;
    while (*p == ' ' || *p == '\t')
        p++;
    if (*p == '\0' || *p == '#')
        return 0;
    struct scanner_list_line l;
    memset(&l, 0, sizeof(l));
    l.cost_cents = -1;
    char code[64], cost[64];
    if (!next_field(&p, code, sizeof(code))) {
        snprintf(why, whylen, "the code is not a CSV field (a quote not closed?)");
        return -EINVAL;
    }
    if (strcasecmp(code, "code") == 0 || strcasecmp(code, "asin") == 0)
        return 0; /* a header */
    cost[0] = '\0';
    if (p != NULL && !next_field(&p, cost, sizeof(cost))) {
        snprintf(why, whylen, "the cost is not a CSV field");
        return -EINVAL;
    }
    if (p != NULL && !next_field(&p, l.url, sizeof(l.url))) {
        snprintf(why, whylen, "source_url is longer than %d bytes or not a CSV field",
                 ST_URL_MAX - 1);
        return -EINVAL;
    }
    if (p != NULL && !next_field(&p, l.note, sizeof(l.note))) {
        snprintf(why, whylen, "the note is longer than %d bytes or not a CSV field",
                 ST_NOTE_MAX - 1);
        return -EINVAL;
    }
    if (p != NULL) {
        snprintf(why, whylen,
                 "more than 4 fields (code,cost,source_url,note): quote a note "
                 "with commas");
        return -EINVAL;
    }
    size_t cn = strlen(code);
    if ((cn == 12 || cn == 13) && all_digits(code, cn)) {
        memcpy(l.code, code, cn + 1);
    } else {
        char asin[ST_ASIN_LEN + 1];
        if (cn != ST_ASIN_LEN || scanner_parse_asin_line(code, asin) != 1) {
            snprintf(why, whylen,
                     "'%.20s' is not an ASIN (10 letters and digits), a UPC (12 digits) or an "
                     "EAN (13 digits)",
                     code);
            return -EINVAL;
        }
        memcpy(l.asin, asin, sizeof(asin));
    }
    if (cost[0] != '\0') {
        const struct jd_market *m = jd_market(domain);
        if (jd_money_parse(domain, cost, &l.cost_cents) != 0 || l.cost_cents < 0) {
            snprintf(why, whylen, "cost '%.20s': money in %s, e.g. %s (not cents)", cost,
                     m != NULL ? m->currency : "the marketplace's currency",
                     m != NULL && m->decimals == 0 ? "1500" : "12.50");
            return -EINVAL;
        }
    }
    *out = l;
    return 1;
}

bool scanner_code_matches(const struct kp_product *p, const char *code)
{
    size_t n = strlen(code);
    for (unsigned i = 0; i < p->n_codes && i < KP_CODES_MAX; i++) {
        const char *c = p->codes[i];
        size_t m = strlen(c);
        if (strcmp(c, code) == 0)
            return true;
        /* A UPC-A is the EAN-13 without its leading 0. */
        if (n == 12 && m == 13 && c[0] == '0' && strcmp(c + 1, code) == 0)
            return true;
        if (n == 13 && m == 12 && code[0] == '0' && strcmp(code + 1, c) == 0)
            return true;
    }
    return false;
}

/* ---- discovery filters ---- */

/* Hundredths of the unit (the config's money) in the marketplace's smallest unit. */
static int64_t cfg_money(const struct cfg *c, int64_t hundredths)
{
    const struct jd_market *m = jd_market((unsigned)c->keepa_domain);
    return m != NULL && m->decimals == 0 ? hundredths / 100 : hundredths;
}

void scanner_discovery_from_cfg(const struct cfg *c, struct scanner_discovery *d)
{
    memset(d, 0, sizeof(*d));
    d->max_rank = c->scan_max_rank;
    char why[128];
    int n =
        cfg_list_parse(c->scan_categories, NULL, d->include, SCANNER_CATS_MAX, why, sizeof(why));
    d->n_include = n > 0 ? (uint8_t)n : 0;
    n = cfg_list_parse(c->scan_exclude_categories, NULL, d->exclude, SCANNER_CATS_MAX, why,
                       sizeof(why));
    d->n_exclude = n > 0 ? (uint8_t)n : 0;
    d->no_amazon = c->scan_no_amazon;
    d->min_price_cents = cfg_money(c, c->scan_min_price_cents);
    d->max_price_cents = cfg_money(c, c->scan_max_price_cents);
    d->price_type =
        c->filter_buy_condition == CFG_BUY_NEW || c->filter_buy_condition == CFG_BUY_NEW_THEN_USED
            ? 1
            : 2;
}

bool scanner_discovery_any(const struct scanner_discovery *d)
{
    return d->max_rank > 0 || d->n_include > 0 || d->n_exclude > 0 || d->no_amazon ||
           d->min_price_cents > 0 || d->max_price_cents > 0;
}

static bool listed(const int64_t *ids, unsigned n, int64_t id)
{
    for (unsigned i = 0; i < n; i++)
        if (ids[i] == id)
            return true;
    return false;
}

bool scanner_discovery_pass(const struct scanner_discovery *d, const struct jd_inputs *in,
                            const char **why)
{
    const char *w = NULL;
    if (d->max_rank > 0 && !(in->sales_rank > 0 && in->sales_rank <= d->max_rank))
        w = "max_rank";
    else if (d->n_include > 0 &&
             !(in->root_category > 0 && listed(d->include, d->n_include, in->root_category)))
        w = "category";
    else if (d->n_exclude > 0 && in->root_category > 0 &&
             listed(d->exclude, d->n_exclude, in->root_category))
        w = "category";
    else if (d->no_amazon && jd_amazon_on_listing(in))
        w = "amazon";
    else if (d->min_price_cents > 0 || d->max_price_cents > 0) {
        int64_t price =
            in->buy_source != JD_BUY_NONE && in->buy_price_cents > 0
                ? in->buy_price_cents + (in->buy_shipping_cents > 0 ? in->buy_shipping_cents : 0)
                : -1;
        if (price < 0 || (d->min_price_cents > 0 && price < d->min_price_cents) ||
            (d->max_price_cents > 0 && price > d->max_price_cents))
            w = "price";
    }
    if (why != NULL)
        *why = w;
    return w == NULL;
}

/* ---------- the dear list sources ---------- */

int scanner_lightning_entry(const struct kp_lightning_deal *ld, struct scanner_list_entry *out)
{
    if (!valid_asin(ld->asin))
        return -EINVAL;
    memset(out, 0, sizeof(*out));
    memcpy(out->asin, ld->asin, ST_ASIN_LEN + 1);
    out->state = ld->state;
    /* Amazon's seller id is per marketplace (amazon.com's below); its name says it anywhere. */
    out->amazon =
        strcmp(ld->seller_id, "ATVPDKIKX0DER") == 0 || strncmp(ld->seller_name, "Amazon.", 7) == 0;
    out->deal_price_cents = ld->deal_price_cents;
    out->current_price_cents = ld->current_price_cents;
    out->start_min = ld->start_keepa_min;
    out->end_min = ld->end_keepa_min;
    uint64_t h = scanner_fnv1a(SCANNER_FNV_INIT, ld->deal_id, strlen(ld->deal_id));
    int64_t terms[3] = {ld->start_keepa_min, ld->end_keepa_min, ld->deal_price_cents};
    for (size_t i = 0; i < 3; i++) {
        uint8_t le[8];
        put_le(le, (uint64_t)terms[i], 8);
        h = scanner_fnv1a(h, le, sizeof(le));
    }
    out->hash = h;
    return 0;
}

int scanner_bestseller_entry(const char *asin, struct scanner_list_entry *out)
{
    if (!valid_asin(asin))
        return -EINVAL;
    memset(out, 0, sizeof(*out));
    memcpy(out->asin, asin, ST_ASIN_LEN + 1);
    out->state = KP_LD_UNKNOWN;
    out->deal_price_cents = out->current_price_cents = -1;
    out->start_min = out->end_min = -1;
    return 0;
}

bool scanner_lightning_candidate(const struct scanner_list_entry *e, int64_t now_min,
                                 int64_t soon_min, const struct scanner_discovery *d,
                                 const char **why)
{
    const char *w = NULL;
    bool started = e->start_min >= 0 ? e->start_min <= now_min : e->state != KP_LD_UPCOMING;
    if (e->state == KP_LD_SOLDOUT)
        w = "sold_out";
    else if (e->state == KP_LD_EXPIRED || e->state == KP_LD_SUPPRESSED ||
             (e->end_min >= 0 && e->end_min <= now_min))
        w = "ended";
    else if (e->state == KP_LD_UPCOMING || !started) {
        if (e->start_min < 0 || e->start_min - now_min > soon_min)
            w = "not_soon";
    }
    if (w == NULL && d != NULL && d->no_amazon && e->amazon)
        w = "amazon";
    if (w == NULL && d != NULL && d->price_type == 1 &&
        (d->min_price_cents > 0 || d->max_price_cents > 0)) {
        int64_t lo = -1, hi = -1;
        int32_t prices[2] = {e->deal_price_cents, e->current_price_cents};
        for (size_t i = 0; i < 2; i++) {
            if (prices[i] <= 0)
                continue;
            lo = lo < 0 || prices[i] < lo ? prices[i] : lo;
            hi = prices[i] > hi ? prices[i] : hi;
        }
        if (lo > 0 && ((d->max_price_cents > 0 && lo > d->max_price_cents) ||
                       (d->min_price_cents > 0 && hi < d->min_price_cents)))
            w = "price";
    }
    if (w != NULL && why != NULL)
        *why = w;
    return w == NULL;
}

int64_t scanner_list_clock(int64_t ref_min, int64_t ref_ns, int64_t now_ns, int64_t minute_ns)
{
    if (minute_ns <= 0 || now_ns <= ref_ns)
        return ref_min;
    return ref_min + (now_ns - ref_ns) / minute_ns;
}

bool scanner_cursor_after_list_chunk(struct scanner_cursor *c, size_t next, size_t list_len,
                                     size_t n_lists)
{
    uint32_t list = SCANNER_LIST_OF(c->position);
    if (next < list_len && next <= UINT32_MAX) {
        c->position = SCANNER_LIST_POS(list, next);
        return false;
    }
    if ((size_t)list + 1 < n_lists) {
        c->position = SCANNER_LIST_POS(list + 1, 0);
        return false;
    }
    c->position = 0;
    c->pass++;
    return true;
}

int scanner_bestsellers_from_cfg(const struct cfg *c, int64_t ids[SCANNER_CATS_MAX], size_t *n,
                                 int *range, uint64_t *hash)
{
    char why[160];
    int k = cfg_list_parse(c->scan_bestseller_categories, NULL, ids, SCANNER_CATS_MAX, why,
                           sizeof(why));
    if (k < 0 || !KP_BESTSELLERS_RANGE_OK(c->scan_bestseller_range))
        return -EINVAL;
    *n = (size_t)k;
    *range = (int)c->scan_bestseller_range;
    uint8_t le[8];
    put_le(le, (uint64_t)c->scan_bestseller_range, 8);
    uint64_t h = scanner_fnv1a(SCANNER_FNV_INIT, le, sizeof(le));
    for (size_t i = 0; i < *n; i++) {
        put_le(le, (uint64_t)ids[i], 8);
        h = scanner_fnv1a(h, le, sizeof(le));
    }
    *hash = h;
    return 0;
}

/* ---- the list kept in the store ---- */

#define SAVED_LIST_VERSION 1

size_t scanner_list_bytes(size_t n)
{
    return SCANNER_SAVED_HEAD_BYTES + n * SCANNER_SAVED_ENTRY_BYTES;
}

/*
 * Head: [0] version, [1] source, [2] truncated, [3] zero, [4..7] pass, [8..11] index,
 * [12..15] n, [16..23] walk hash, [24..31] ref_min, [32..39] saved_wall_ms, [40..47] zero.
 * Entry: [0..9] ASIN, [10] state, [11] amazon, [12..15] deal price, [16..19] current price,
 * [20..27] start, [28..35] end, [36..43] hash.
 */
void scanner_list_encode(const struct scanner_saved_list *head, const struct scanner_list_entry *e,
                         uint8_t *out)
{
    memset(out, 0, SCANNER_SAVED_HEAD_BYTES);
    out[0] = SAVED_LIST_VERSION;
    out[1] = head->source;
    out[2] = head->truncated;
    put_le(out + 4, head->pass, 4);
    put_le(out + 8, head->index, 4);
    put_le(out + 12, head->n, 4);
    put_le(out + 16, head->walk_hash, 8);
    put_le(out + 24, (uint64_t)head->ref_min, 8);
    put_le(out + 32, (uint64_t)head->saved_wall_ms, 8);
    for (size_t i = 0; i < head->n; i++) {
        uint8_t *o = out + SCANNER_SAVED_HEAD_BYTES + i * SCANNER_SAVED_ENTRY_BYTES;
        memcpy(o, e[i].asin, ST_ASIN_LEN);
        o[10] = (uint8_t)e[i].state;
        o[11] = e[i].amazon;
        put_le(o + 12, (uint32_t)e[i].deal_price_cents, 4);
        put_le(o + 16, (uint32_t)e[i].current_price_cents, 4);
        put_le(o + 20, (uint64_t)e[i].start_min, 8);
        put_le(o + 28, (uint64_t)e[i].end_min, 8);
        put_le(o + 36, e[i].hash, 8);
    }
}

int scanner_list_decode_head(const void *buf, size_t len, struct scanner_saved_list *head)
{
    const uint8_t *b = buf;
    if (buf == NULL || len < SCANNER_SAVED_HEAD_BYTES || b[0] != SAVED_LIST_VERSION)
        return -EBADMSG;
    size_t n = (size_t)get_le(b + 12, 4);
    if (n > SCANNER_LIST_MAX || len != scanner_list_bytes(n))
        return -EBADMSG;
    head->source = b[1];
    head->truncated = b[2] != 0;
    head->pass = (uint32_t)get_le(b + 4, 4);
    head->index = (uint32_t)get_le(b + 8, 4);
    head->n = n;
    head->walk_hash = get_le(b + 16, 8);
    head->ref_min = (int64_t)get_le(b + 24, 8);
    head->saved_wall_ms = (int64_t)get_le(b + 32, 8);
    return 0;
}

void scanner_list_decode_entry(const void *buf, size_t i, struct scanner_list_entry *out)
{
    const uint8_t *o =
        (const uint8_t *)buf + SCANNER_SAVED_HEAD_BYTES + i * SCANNER_SAVED_ENTRY_BYTES;
    memset(out, 0, sizeof(*out));
    memcpy(out->asin, o, ST_ASIN_LEN);
    out->asin[ST_ASIN_LEN] = '\0';
    out->state = (int8_t)o[10];
    out->amazon = o[11] != 0;
    out->deal_price_cents = (int32_t)(uint32_t)get_le(o + 12, 4);
    out->current_price_cents = (int32_t)(uint32_t)get_le(o + 16, 4);
    out->start_min = (int64_t)get_le(o + 20, 8);
    out->end_min = (int64_t)get_le(o + 28, 8);
    out->hash = get_le(o + 36, 8);
}
