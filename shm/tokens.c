/*
 * tokens.c: the shared Keepa token bucket: one lock-free estimate for every process.
 *
 * The model (docs/keepa-api.md §4). Keepa's bucket is discrete: once per Keepa minute, at a fixed
 * phase, it gains refillRate tokens up to cap = refillRate x 60. A request is admitted iff the
 * balance is > 0 and is charged in full, even below zero. A continuous GCRA (one "theoretical
 * arrival time") would credit fractions of a tick between ticks and so over-estimate, which is
 * exactly the error that turns into 429s; the estimate here therefore projects with ticks:
 *
 *     balance(now) = b                                   if now < T            (no tick yet)
 *                  = b                                   if b >= cap           (full stays full)
 *                  = min(cap, b + rate x k)              k = ticks in [T, now] = 1 + (now-T)/minute
 *
 * where T is the local monotonic time of the next tick after the last update.
 *
 * Encoding. The whole bucket is ONE 64-bit word, updated by compare-and-swap:
 *
 *     bits 63..41  b       balance at the last update, 23-bit two's complement (|b| < 2^22)
 *     bits 40..26  rate    trusted refill rate, tokens per minute; 0 = never anchored
 *     bits 25..0   T       next tick, monotonic milliseconds modulo 2^26 (18.6 h)
 *
 * The rate lives in the word, and the tick phase is the word's T, so there is no second
 * "parameters" record to keep consistent with it: a reader needs nothing but the word and the
 * constants written once by tb_init (minute length, bucket minutes, deficit bound). A reserve
 * is load, project, decide, CAS; it never waits for anybody. T is kept modulo 2^26 ms and read
 * as a signed distance from now, which is exact while |T - now| < 9.3 h; touched_ms (the
 * latest time the word was written, bumped before every CAS, beside it on the same cache
 * line) tells when that no longer holds. Then the tick phase is lost, but the time elapsed is
 * not: at least floor(elapsed / minute) ticks have happened, so the projection claims exactly
 * that many refills (capped) and puts the next tick a whole minute away, the latest it can be.
 * It never assumes a full bucket: a key driven 10 000 tokens deep on a 5/min plan is still in
 * debt after 9.3 hours, and a projection that claimed otherwise would be granted into 429s.
 * A caller whose `now` is older than the last writer's sees T ahead of it and only
 * under-projects. After a long idle the last reading is old, so tb_needs_reading() asks for a
 * free /token call that restores the tick phase (as soon as the projection is above zero).
 *
 * Reservations. A grant first claims an owner-tagged slot (owner id, generation, state in one
 * word), writes the amount into it, and only then charges the bucket word. A server reading
 * loads the bucket word BEFORE it sums the slots and stores with a CAS against that load:
 * so a grant is either seen in a slot by the reading, or it changes the word and makes the
 * reading's CAS fail and retry. The reading re-anchors to the server (balance = tokensLeft
 * minus every reservation still in flight, next tick = now + refillIn), so two grants can
 * never spend the same tokens, and a reading that raced with a request can only
 * under-estimate (an in-flight request the server already charged is subtracted twice until
 * the next reading). Slot states: FREE -> HELD (granted) -> SYNCED (its own reading applied:
 * no correction needed) or SETTLING (settle is correcting the balance by reserved - actual) ->
 * FREE; or HELD -> LOST when the request may have been charged without an answer (lost in
 * flight, cancelled, its owner dead): it stays charged, and readings keep subtracting it,
 * because a reading the server generated before charging it (an answer on another connection
 * still on its way) does not show its cost; until the answer to a request granted after the
 * loss is applied (that one does), or two Keepa minutes (at least 5 s) passed; then the slot
 * is free again. Every transition is a CAS on the exact (owner, generation,
 * state), so a slot is never freed twice nor granted twice, and tb_writeoff_owner() can
 * release a dead owner's slots without racing a settle. Generation numbers make a stale grant
 * harmless (-ESTALE).
 *
 * Readings are applied under a try-lock (the reading block's lock word): a process that finds
 * it taken gets -EBUSY and simply keeps its reservation in flight; nobody ever waits for it,
 * and a holder that died (or stalled for over a second) is overtaken. The lock serialises
 * only the bookkeeping of readings (order by server timestamp, rate trust); reserves and
 * settles never look at it. Order: a reading the server made before one already applied is
 * refused however late it arrives (answers overtake each other by more than a Keepa minute
 * when one is slow or the minute accelerated), since the requests charged between the two
 * may have been settled meanwhile and are no longer subtracted: applied, it would give their
 * tokens back. A reading is known to be the later one when its own request was granted after
 * the last reading was applied, whatever the server's timestamps say (a clock that went back).
 * A reading refused -EBUSY orders the later ones as if applied (busy_timestamp_ms): its request
 * is settled as charged meanwhile, and a holder killed with the lock keeps every reading out
 * for up to a second.
 *
 * Grant rule: Keepa admits (projected balance > 0) AND balance - cost >= -max_deficit,
 * EXCEPT that a cost above cap + max_deficit (which no bucket can ever satisfy) is granted as
 * soon as the bucket is full (tb_reserve_within refuses it instead, -EDQUOT, unless the
 * balance is already above the cap and covers it within the bound). One refinement: requests in
 * flight on different connections can reach Keepa in any order, and a large one arriving first
 * could leave a smaller one facing a balance <= 0 (a 429 although the estimate was exact). So a
 * grant also needs balance - cost + smallest_unanswered_cost > 0 (the smallest reservation still
 * unanswered, the new one included, and a lost one still held: it may yet arrive): then every
 * request in flight is admitted whatever the order. With nothing in flight this is Keepa's own
 * rule. Both thresholds are capped at the bucket's cap,
 * so every -EAGAIN carries a finite time, never later than the time the bucket takes to fill:
 * waiting for more than the bucket can hold (docs/failure-modes.md F3, F4) is impossible by
 * construction.
 *
 * Learning. The refill rate (and cap) come from readings: a lower rate is adopted at once,
 * a higher one only as far as the bucket is seen to refill between two readings (by the
 * server's clock, net of the charges known), so a transient refillRate of 12 on a 5/min plan
 * (docs/failure-modes.md F7) cannot release a backlog however often it is repeated. Only when
 * requests in flight hide the refill for a long time is a higher rate believed on reports alone:
 * after TB_RATE_TRUST_READINGS consecutive readings spanning TB_RATE_TRUST_MINUTES. Before the
 * first reading the trusted rate is the configured initial_rate (the plan the operator
 * expects); the balance of the first reading is always taken as it is. Costs are
 * learned per request kind in milli-tokens per unit: an underestimate is corrected by the
 * first answer (docs/failure-modes.md F1), an overestimate decays by 1/8 of the gap per answer.
 *
 * Before the first reading the balance is unknown: nothing is granted (reserve answers
 * -EAGAIN with a short retry time) and tb_needs_reading() is true, so the first thing a worker
 * does is one free /token call. Assuming 0 instead would make the wait depend on an unknown
 * tick phase; assuming a full bucket would risk 429s on a key that another client drained.
 */
#include "shm/tokens.h"

#include <errno.h>
#include <math.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#define TB_MAGIC 0x546b4231u /* "1BkT" */

#define NS_PER_MS 1000000LL

#define T_BITS     26
#define T_MOD      (1LL << T_BITS)
#define T_MASK     ((uint64_t)T_MOD - 1)
#define T_HORIZON  (T_MOD / 2)
#define RATE_SHIFT 26
#define RATE_MASK  0x7fffULL
#define BAL_SHIFT  41
#define BAL_BITS   23
#define BAL_MASK   ((1ULL << BAL_BITS) - 1)

#define SLOT_FREE     0u
#define SLOT_HELD     1u
#define SLOT_SETTLING 2u
#define SLOT_SYNCED   3u
#define SLOT_LOST     4u
#define SLOT_STATES   7u /* three bits */
#define SLOT_GEN_MASK 0x1fffffffu

/* How long a lost request's reservation keeps being subtracted from readings: a reading that
 * is generated before the server charged it (an answer on another connection, still on its
 * way) must not give its tokens back. */
#define LOST_HOLD_MIN_NS (5000LL * NS_PER_MS)
/* A request granted this long after a loss is answered after the lost one was charged, if it
 * ever was: a killed process's last request can still be on its way (the kernel sends what
 * was written before the process died), so an answer to a request granted just after the loss
 * may predate its charge. */
#define LOST_SEEN_AFTER_NS (3000LL * NS_PER_MS)

#define LOCK_STALE_NS (1000LL * NS_PER_MS)
#define CLAIM_NONE    INT64_MIN

/* ---- the bucket word -------------------------------------------------------------------- */

struct tb_view {
    int64_t balance; /* projected to now */
    int64_t rate;    /* 0 = unanchored */
    int64_t cap;
    int64_t next_ms; /* absolute monotonic ms of the first tick strictly after now */
    int64_t minute_ms;
};

static uint64_t word_pack(int64_t balance, int64_t rate, int64_t next_ms)
{
    uint64_t b = (uint64_t)balance & BAL_MASK;
    return (b << BAL_SHIFT) | (((uint64_t)rate & RATE_MASK) << RATE_SHIFT) |
           ((uint64_t)next_ms & T_MASK);
}

static int64_t word_balance(uint64_t w)
{
    int64_t v = (int64_t)(w >> BAL_SHIFT);
    if (v & (1LL << (BAL_BITS - 1)))
        v -= 1LL << BAL_BITS;
    return v;
}

static int64_t word_rate(uint64_t w)
{
    return (int64_t)((w >> RATE_SHIFT) & RATE_MASK);
}

static int64_t clamp_balance(int64_t b)
{
    if (b > TB_BALANCE_MAX)
        return TB_BALANCE_MAX;
    if (b < -TB_BALANCE_MAX)
        return -TB_BALANCE_MAX;
    return b;
}

/*
 * Projects word W to NOW_MS. Pure. T is read as a signed distance from now (|T - now| < 2^25
 * ms whenever the word was written within the last 9.3 h, which touched_ms tells exactly):
 * T ahead of now means no tick yet, whatever the distance (a caller whose clock reading is
 * stale only under-projects); T behind means 1 + elapsed/minute ticks. For a word not written
 * for longer than the horizon the tick phase is unknown: it gains the refills of the whole
 * minutes elapsed since it was written (a lower bound of the ticks), capped, and the next tick
 * is assumed a whole minute away (the latest it can be).
 */
static struct tb_view project_word(const struct shm_tokens *tb, uint64_t w, int64_t now_ms)
{
    struct tb_view v;
    v.minute_ms = tb->minute_ns / NS_PER_MS;
    v.balance = word_balance(w);
    v.rate = word_rate(w);
    v.cap = v.rate * tb->bucket_minutes;
    int64_t touched = atomic_load(&((struct shm_tokens *)tb)->touched_ms); /* after W */
    if (now_ms - touched >= T_HORIZON - v.minute_ms) {
        int64_t minutes = (now_ms - touched) / v.minute_ms;
        if (v.balance < v.cap) {
            int64_t room = v.cap - v.balance; /* refills beyond it are cut off by the cap */
            int64_t b =
                v.rate > 0 && minutes < room / v.rate + 1 ? v.balance + minutes * v.rate : v.cap;
            v.balance = b < v.cap ? b : v.cap;
        }
        v.next_ms = now_ms + v.minute_ms;
        return v;
    }
    int64_t ahead = (int64_t)((w - (uint64_t)now_ms) & T_MASK);
    if (ahead >= T_HORIZON)
        ahead -= T_MOD; /* sign-extend: T is behind now */
    if (ahead > 0) {
        v.next_ms = now_ms + ahead;
        return v;
    }
    int64_t ticks = -ahead / v.minute_ms + 1; /* T itself and every minute after it */
    v.next_ms = now_ms + ahead + ticks * v.minute_ms;
    if (v.balance < v.cap) {
        int64_t b = v.balance + ticks * v.rate;
        v.balance = b < v.cap ? b : v.cap;
    }
    return v;
}

/* Records that the word is about to be written at NOW_MS (before the CAS: see above). */
static void touch(struct shm_tokens *tb, int64_t now_ms)
{
    int64_t cur = atomic_load(&tb->touched_ms);
    while (cur < now_ms && !atomic_compare_exchange_weak(&tb->touched_ms, &cur, now_ms))
        ;
}

/* Monotonic ms of the tick at which a bucket at V holds at least NEED (NEED <= cap). */
static int64_t time_to_reach_ms(const struct tb_view *v, int64_t need)
{
    int64_t k = (need - v->balance + v->rate - 1) / v->rate;
    return v->next_ms + (k - 1) * v->minute_ms;
}

static bool now_valid(int64_t now_ns)
{
    return now_ns >= 0 && now_ns <= TB_NOW_MAX;
}

static bool tb_ready(const struct shm_tokens *tb)
{
    return tb != NULL && atomic_load_explicit(&((struct shm_tokens *)tb)->initialised,
                                              memory_order_acquire) == TB_MAGIC;
}

/* ---- slots ------------------------------------------------------------------------------ */

static uint64_t slot_word(int64_t owner, uint32_t gen, uint32_t state)
{
    return ((uint64_t)owner << 32) | ((uint64_t)(gen & SLOT_GEN_MASK) << 3) | state;
}

static uint32_t slot_state(uint64_t w)
{
    return (uint32_t)(w & SLOT_STATES);
}

static uint32_t slot_gen(uint64_t w)
{
    return (uint32_t)(w >> 3) & SLOT_GEN_MASK;
}

static int64_t slot_owner(uint64_t w)
{
    return (int64_t)(w >> 32);
}

static int64_t lost_hold_ns(const struct shm_tokens *tb)
{
    return 2 * tb->minute_ns > LOST_HOLD_MIN_NS ? 2 * tb->minute_ns : LOST_HOLD_MIN_NS;
}

/* True when slot S, in word W, is a lost request's reservation still held at NOW_NS. */
static bool lost_held(const struct shm_tokens *tb, const struct shm_token_slot *s, uint64_t w,
                      int64_t now_ns)
{
    return slot_state(w) == SLOT_LOST &&
           now_ns - atomic_load(&((struct shm_token_slot *)s)->granted_ns) < lost_hold_ns(tb);
}

/* True when slot S in word W can be claimed at NOW_NS: free, or lost and no longer held. */
static bool slot_claimable(const struct shm_tokens *tb, const struct shm_token_slot *s, uint64_t w,
                           int64_t now_ns)
{
    return slot_state(w) == SLOT_FREE ||
           (slot_state(w) == SLOT_LOST && !lost_held(tb, s, w, now_ns));
}

/* Claims a free slot for OWNER; returns its index or -ENOSPC. */
static int slot_claim(struct shm_tokens *tb, int64_t owner, int64_t cost, int64_t now_ns,
                      uint32_t *gen_out)
{
    unsigned start = (unsigned)owner % SHM_TOKEN_SLOTS;
    for (unsigned n = 0; n < SHM_TOKEN_SLOTS; n++) {
        unsigned i = (start + n) % SHM_TOKEN_SLOTS;
        struct shm_token_slot *s = &tb->slots[i];
        uint64_t w = atomic_load(&s->word);
        while (slot_claimable(tb, s, w, now_ns)) {
            uint32_t gen = (slot_gen(w) + 1) & SLOT_GEN_MASK;
            if (atomic_compare_exchange_weak(&s->word, &w, slot_word(owner, gen, SLOT_HELD))) {
                atomic_store(&s->granted_ns, now_ns);
                atomic_store(&s->amount_tokens, cost); /* before the bucket is charged */
                *gen_out = gen;
                return (int)i;
            }
        }
    }
    return -ENOSPC;
}

/* Frees slot I, currently in word W (which must be the caller's to free). */
static bool slot_free(struct shm_tokens *tb, unsigned i, uint64_t w)
{
    struct shm_token_slot *s = &tb->slots[i];
    atomic_store(&s->amount_tokens, 0);
    return atomic_compare_exchange_strong(&s->word, &w, slot_word(0, slot_gen(w), SLOT_FREE));
}

/*
 * Sum of reservations in flight (HELD or SETTLING), except the slot whose word is EXCLUDE, and
 * into *LOST (may be NULL) the lost requests' reservations still held at NOW_NS, except those
 * lost before SEEN_AFTER_NS (a reading of a request granted after them shows their cost).
 * *COUNT: slots in use, lost ones aside; *LOST_COUNT: the lost ones still held.
 */
static int64_t inflight_tokens(const struct shm_tokens *tb, uint64_t exclude, int64_t now_ns,
                               int64_t seen_after_ns, int64_t *count, int64_t *lost,
                               int64_t *lost_count)
{
    int64_t sum = 0, n = 0, lost_sum = 0, lost_n = 0;
    for (unsigned i = 0; i < SHM_TOKEN_SLOTS; i++) {
        struct shm_token_slot *s = (struct shm_token_slot *)&tb->slots[i];
        uint64_t w = atomic_load(&s->word);
        uint32_t st = slot_state(w);
        if (st == SLOT_FREE)
            continue;
        if (st == SLOT_LOST) {
            if (lost_held(tb, s, w, now_ns) && atomic_load(&s->granted_ns) >= seen_after_ns) {
                lost_sum += atomic_load(&s->amount_tokens);
                lost_n++;
            }
            continue;
        }
        n++;
        if ((st == SLOT_HELD || st == SLOT_SETTLING) && w != exclude)
            sum += atomic_load(&s->amount_tokens);
    }
    if (count)
        *count = n;
    if (lost)
        *lost = lost_sum;
    if (lost_count)
        *lost_count = lost_n;
    return sum;
}

/* Frees the lost requests' reservations lost before BEFORE_NS. */
static void release_lost(struct shm_tokens *tb, int64_t before_ns)
{
    for (unsigned i = 0; i < SHM_TOKEN_SLOTS; i++) {
        struct shm_token_slot *s = &tb->slots[i];
        uint64_t w = atomic_load(&s->word);
        if (slot_state(w) == SLOT_LOST && atomic_load(&s->granted_ns) < before_ns)
            atomic_compare_exchange_strong(&s->word, &w, slot_word(0, slot_gen(w), SLOT_FREE));
    }
}

/* Turns slot I, in word W, into a lost request's reservation held from NOW_NS. */
static bool slot_lose(struct shm_tokens *tb, unsigned i, uint64_t w, int64_t now_ns)
{
    struct shm_token_slot *s = &tb->slots[i];
    atomic_store(&s->granted_ns, now_ns); /* before the state: whoever sees LOST sees it */
    return atomic_compare_exchange_strong(&s->word, &w, slot_word(0, slot_gen(w), SLOT_LOST));
}

/*
 * Smallest reservation still unanswered (HELD), counting COST itself; slot MINE excluded. A lost
 * request still held at NOW_NS counts too: it may yet reach the server (a killed process's last
 * bytes are still sent), and must be admitted whatever comes before it.
 */
static int64_t smallest_inflight(const struct shm_tokens *tb, int64_t cost, int mine,
                                 int64_t now_ns)
{
    int64_t smallest = cost;
    for (unsigned i = 0; i < SHM_TOKEN_SLOTS; i++) {
        if ((int)i == mine)
            continue;
        struct shm_token_slot *s = (struct shm_token_slot *)&tb->slots[i];
        uint64_t w = atomic_load(&s->word);
        if (slot_state(w) != SLOT_HELD && !lost_held(tb, s, w, now_ns))
            continue;
        int64_t a = atomic_load(&s->amount_tokens);
        if (a > 0 && a < smallest)
            smallest = a;
    }
    return smallest;
}

/* Adds DELTA tokens to the balance at NOW_MS (a give-back never lifts it above the cap). */
static void bucket_adjust(struct shm_tokens *tb, int64_t now_ms, int64_t delta)
{
    if (delta == 0)
        return;
    uint64_t w = atomic_load(&tb->state);
    for (;;) {
        if (word_rate(w) == 0)
            return; /* unanchored: the first reading sets the balance */
        struct tb_view v = project_word(tb, w, now_ms);
        int64_t b = v.balance + delta;
        if (delta > 0) {
            int64_t ceiling = v.balance > v.cap ? v.balance : v.cap;
            if (b > ceiling)
                b = ceiling;
        }
        uint64_t nw = word_pack(clamp_balance(b), v.rate, v.next_ms);
        touch(tb, now_ms);
        if (atomic_compare_exchange_weak(&tb->state, &w, nw))
            return;
    }
}

/* ---- init ------------------------------------------------------------------------------- */

int tb_init(struct shm_tokens *tb, const struct tb_params *p, int64_t now_ns)
{
    struct tb_params d = {0};
    if (p)
        d = *p;
    if (tb == NULL || !now_valid(now_ns))
        return -EINVAL;
    if (d.bucket_minutes == 0)
        d.bucket_minutes = TB_DEFAULT_BUCKET_MINUTES;
    if (d.max_deficit_tokens == 0)
        d.max_deficit_tokens = TB_DEFAULT_MAX_DEFICIT;
    if (d.minute_ns == 0)
        d.minute_ns = TB_DEFAULT_MINUTE_NS;
    if (d.initial_rate == 0)
        d.initial_rate = TB_DEFAULT_INITIAL_RATE;
    if (d.stale_minutes == 0)
        d.stale_minutes = TB_DEFAULT_STALE_MINUTES;
    if (d.bucket_minutes < 1 || d.bucket_minutes > TB_BUCKET_MINUTES_MAX ||
        d.max_deficit_tokens < 0 || d.max_deficit_tokens > TB_COST_MAX ||
        d.minute_ns < TB_MINUTE_NS_MIN || d.minute_ns > TB_MINUTE_NS_MAX ||
        d.minute_ns % NS_PER_MS != 0 || d.initial_rate < 1 || d.initial_rate > TB_RATE_MAX ||
        d.stale_minutes < 1 || d.stale_minutes > 24 * 60)
        return -EINVAL;

    memset(tb, 0, sizeof(*tb));
    tb->minute_ns = d.minute_ns;
    tb->bucket_minutes = d.bucket_minutes;
    tb->max_deficit_tokens = d.max_deficit_tokens;
    tb->initial_rate = d.initial_rate;
    tb->stale_ns = d.stale_minutes * d.minute_ns;
    tb->init_ns = now_ns;
    atomic_store(&tb->touched_ms, now_ns / NS_PER_MS);
    atomic_store(&tb->state, word_pack(0, 0, now_ns / NS_PER_MS));
    atomic_store(&tb->last_reading_ns, INT64_MIN);
    atomic_store(&tb->busy_timestamp_ms, INT64_MIN);
    atomic_store(&tb->busy_reading_ns, INT64_MIN);
    atomic_store(&tb->status_claim_ns, CLAIM_NONE);
    static const int64_t seed_milli[TB_KIND_COUNT] = {
        [TB_KIND_TOKEN] = 0,      [TB_KIND_DEAL_PAGE] = 5000, [TB_KIND_PEEK] = 2000,
        [TB_KIND_COMMIT] = 13000, [TB_KIND_UPDATE] = 2000,    [TB_KIND_QUERY] = 10,
        [TB_KIND_SELLER] = 1000,  [TB_KIND_LIGHTNING] = 0,    [TB_KIND_BESTSELLERS] = 0,
    };
    for (int k = 0; k < TB_KIND_COUNT; k++)
        atomic_store(&tb->costs[k].milli_per_unit, seed_milli[k]);
    atomic_store_explicit(&tb->initialised, TB_MAGIC, memory_order_release);
    return 0;
}

/* ---- reserve / settle ------------------------------------------------------------------- */

/* tb_reserve and tb_reserve_within: WITHIN never grants below -max_deficit (-EDQUOT instead). */
static int reserve(struct shm_tokens *tb, int64_t now_ns, int64_t cost_tokens, int64_t owner,
                   bool within, struct tb_grant *grant, int64_t *wait_until_ns)
{
    if (!tb_ready(tb) || grant == NULL || !now_valid(now_ns) || cost_tokens < 0 ||
        cost_tokens > TB_COST_MAX || owner < 1 || owner > TB_OWNER_MAX)
        return -EINVAL;
    if (wait_until_ns)
        *wait_until_ns = now_ns;
    if (cost_tokens == 0) { /* free requests are admitted whatever the balance */
        *grant = (struct tb_grant){TB_SLOT_NONE, 0, owner, 0, now_ns};
        return 0;
    }
    int64_t now_ms = now_ns / NS_PER_MS;
    int slot = -1;
    uint32_t gen = 0;
    uint64_t w = atomic_load(&tb->state);
    for (;;) {
        if (word_rate(w) == 0) { /* never anchored: a reading first */
            if (slot >= 0)
                slot_free(tb, (unsigned)slot, slot_word(owner, gen, SLOT_HELD));
            if (wait_until_ns)
                *wait_until_ns = now_ns + tb->minute_ns / 60;
            return -EAGAIN;
        }
        struct tb_view v = project_word(tb, w, now_ms);
        /* Keepa's own rule: > 0 now, and the deficit bound after the charge. */
        int64_t need =
            cost_tokens - tb->max_deficit_tokens > 1 ? cost_tokens - tb->max_deficit_tokens : 1;
        /* Order-proof: each request in flight is admitted in whatever order they arrive. */
        int64_t smallest = smallest_inflight(tb, cost_tokens, slot, now_ns);
        int64_t strict = cost_tokens - smallest + 1 > need ? cost_tokens - smallest + 1 : need;
        bool over_cap = within && need > v.cap;
        if (over_cap && v.balance < need) {
            /* Only a balance above the cap could pay it within the bound (a first reading, or
             * a trusted rate below the real one): now or never, no unreachable wait. */
            if (slot >= 0)
                slot_free(tb, (unsigned)slot, slot_word(owner, gen, SLOT_HELD));
            return -EDQUOT;
        }
        if (over_cap)
            strict = need; /* the order-proof margin would be beyond the cap */
        else if (strict > v.cap)
            strict = v.cap;
        if (need > v.cap && !over_cap)
            need = v.cap; /* more than the bucket can hold: granted when full */
        if (v.balance < strict) {
            if (slot >= 0)
                slot_free(tb, (unsigned)slot, slot_word(owner, gen, SLOT_HELD));
            if (wait_until_ns)
                *wait_until_ns = time_to_reach_ms(&v, v.balance < need ? need : strict) * NS_PER_MS;
            return -EAGAIN;
        }
        if (slot < 0) {
            slot = slot_claim(tb, owner, cost_tokens, now_ns, &gen);
            if (slot < 0)
                return -ENOSPC;
            w = atomic_load(&tb->state);
            continue; /* decide again on a word loaded after the slot became visible */
        }
        uint64_t nw = word_pack(v.balance - cost_tokens, v.rate, v.next_ms);
        touch(tb, now_ms);
        if (atomic_compare_exchange_weak(&tb->state, &w, nw)) {
            *grant = (struct tb_grant){(uint32_t)slot, gen, owner, cost_tokens, now_ns};
            atomic_fetch_add(&tb->grants, 1);
            atomic_fetch_add(&tb->granted_tokens, (uint64_t)cost_tokens);
            return 0;
        }
    }
}

int tb_reserve(struct shm_tokens *tb, int64_t now_ns, int64_t cost_tokens, int64_t owner,
               struct tb_grant *grant, int64_t *wait_until_ns)
{
    return reserve(tb, now_ns, cost_tokens, owner, false, grant, wait_until_ns);
}

int tb_reserve_within(struct shm_tokens *tb, int64_t now_ns, int64_t cost_tokens, int64_t owner,
                      struct tb_grant *grant, int64_t *wait_until_ns)
{
    return reserve(tb, now_ns, cost_tokens, owner, true, grant, wait_until_ns);
}

static bool grant_valid(const struct tb_grant *g)
{
    return g != NULL && (g->slot == TB_SLOT_NONE || g->slot < SHM_TOKEN_SLOTS) && g->owner >= 1 &&
           g->owner <= TB_OWNER_MAX && g->cost_tokens >= 0 && g->cost_tokens <= TB_COST_MAX &&
           g->generation <= SLOT_GEN_MASK;
}

int tb_settle(struct shm_tokens *tb, const struct tb_grant *grant, int64_t now_ns,
              int64_t actual_tokens)
{
    if (!tb_ready(tb) || !grant_valid(grant) || !now_valid(now_ns))
        return -EINVAL;
    if (grant->slot == TB_SLOT_NONE)
        return 0;
    /* An absurd charge is not believed, but the reservation still ends: a slot kept for it
     * would be lost for good, and enough of them starve every worker (-ENOSPC). It is settled
     * as charged at its reservation; the next reading tells the truth. */
    bool absurd = actual_tokens < 0 || actual_tokens > TB_BALANCE_MAX;
    struct shm_token_slot *s = &tb->slots[grant->slot];
    uint64_t held = slot_word(grant->owner, grant->generation, SLOT_HELD);
    uint64_t synced = slot_word(grant->owner, grant->generation, SLOT_SYNCED);
    uint64_t settling = slot_word(grant->owner, grant->generation, SLOT_SETTLING);
    uint64_t w = atomic_load(&s->word);
    for (;;) {
        if (w == synced) { /* its own reading already accounted for it */
            if (!slot_free(tb, grant->slot, synced))
                return -ESTALE;
            return absurd ? -ERANGE : 0;
        }
        if (w != held)
            return -ESTALE; /* settled or written off already */
        if (atomic_compare_exchange_strong(&s->word, &w, settling))
            break;
    }
    /* The slot's amount is authoritative (the caller's copy of the grant is not trusted). */
    if (!absurd)
        bucket_adjust(tb, now_ns / NS_PER_MS, atomic_load(&s->amount_tokens) - actual_tokens);
    if (!slot_free(tb, grant->slot, settling))
        return -ESTALE;
    return absurd ? -ERANGE : 0;
}

int tb_settle_lost(struct shm_tokens *tb, const struct tb_grant *grant, int64_t now_ns)
{
    if (!tb_ready(tb) || !grant_valid(grant) || !now_valid(now_ns))
        return -EINVAL;
    if (grant->slot == TB_SLOT_NONE)
        return 0;
    uint64_t held = slot_word(grant->owner, grant->generation, SLOT_HELD);
    uint64_t synced = slot_word(grant->owner, grant->generation, SLOT_SYNCED);
    uint64_t w = atomic_load(&tb->slots[grant->slot].word);
    if (w == synced) /* a reading of its own answer was applied after all */
        return slot_free(tb, grant->slot, synced) ? 0 : -ESTALE;
    if (w != held)
        return -ESTALE;
    return slot_lose(tb, grant->slot, held, now_ns) ? 0 : -ESTALE;
}

/* ---- readings --------------------------------------------------------------------------- */

/* Takes the reading lock for ID (never waits). Returns true when held. */
static bool reading_lock(struct shm_tokens *tb, uint64_t id, int64_t now_ns)
{
    uint64_t cur = 0;
    if (atomic_compare_exchange_strong(&tb->reading_lock, &cur, id)) {
        atomic_store(&tb->reading_lock_ns, now_ns);
        return true;
    }
    /* Held: overtake only a holder that has been at it for over a second (dead or stalled). */
    int64_t since = atomic_load(&tb->reading_lock_ns);
    if (now_ns - since > LOCK_STALE_NS &&
        atomic_compare_exchange_strong(&tb->reading_lock, &cur, id)) {
        atomic_store(&tb->reading_lock_ns, now_ns);
        return true;
    }
    return false;
}

/* Raises *P to V if it is lower. */
static void store_max(_Atomic int64_t *p, int64_t v)
{
    int64_t cur = atomic_load(p);
    while (cur < v && !atomic_compare_exchange_weak(p, &cur, v))
        ;
}

static void reading_unlock(struct shm_tokens *tb, uint64_t id)
{
    uint64_t cur = id;
    atomic_compare_exchange_strong(&tb->reading_lock, &cur, 0);
}

static bool reading_valid(const struct tb_reading *r, int64_t minute_ms)
{
    return r != NULL && isfinite(r->tokens_left) && fabs(r->tokens_left) <= (double)(1LL << 30) &&
           r->refill_rate > 0 && r->refill_rate <= TB_RATE_MAX && r->refill_in_ms >= 0 &&
           r->refill_in_ms <= minute_ms && r->timestamp_ms > 0 && r->tokens_consumed >= 0;
}

/*
 * Refill actually observed between the previous applied reading and R (caller holds the
 * reading lock): (tokensLeft now - tokensLeft then + what R's own request was charged) per
 * tick that can have happened in between, by the server's own clock (timestamp, refillIn).
 * Every other charge in the interval only lowers it and a full bucket only clips it, so it is
 * a lower bound of the true rate (unless tokens were refunded, which makes it implausibly
 * high: the caller ignores it above the reported rate). Returns -1 when nothing can be said.
 */
static int64_t observed_rate(struct shm_tokens *tb, const struct tb_reading *r, uint64_t own_word,
                             unsigned own_slot, int64_t minute_ms)
{
    int64_t prev_ns = atomic_load(&tb->last_reading_ns);
    int64_t prev_ts = atomic_load(&tb->last_timestamp_ms);
    if (prev_ns == INT64_MIN || r->timestamp_ms <= prev_ts)
        return -1;
    int64_t first_tick = prev_ts + atomic_load(&tb->last_refill_in_ms);
    int64_t lo = first_tick - 1, hi = r->timestamp_ms + 1; /* count boundary ticks too */
    if (hi < lo)
        return -1;
    int64_t ticks = (hi - lo) / minute_ms + 1;
    int64_t charged = 0;
    if (own_word != 0 && atomic_load(&tb->slots[own_slot].word) == own_word &&
        atomic_load(&tb->slots[own_slot].granted_ns) >= prev_ns)
        charged = r->tokens_consumed; /* granted after the previous reading: charged since */
    /* In milli-tokens, so a fractional balance (docs/failure-modes.md F17) does not round the
     * evidence up. */
    int64_t gained = (int64_t)floor(r->tokens_left * 1000.0) -
                     atomic_load(&tb->last_tokens_left_milli) + charged * 1000;
    return gained > 0 ? gained / (ticks * 1000) : 0;
}

/*
 * Trusted rate after a reading that reports REPORTED at NOW_NS, given the trusted rate CUR and
 * the refill OBSERVED since the previous reading (caller holds the reading lock). Lower: at
 * once. Higher: up to what was observed (a reported rate the bucket does not show, like a
 * transient 12 on a 5/min plan, docs/failure-modes.md F7, is never trusted, however many readings
 * repeat it); or, when requests in flight hide the refill, once TB_RATE_TRUST_READINGS consecutive
 * readings spanning TB_RATE_TRUST_MINUTES have all reported it.
 */
static int64_t learn_rate(struct shm_tokens *tb, int64_t cur, int64_t reported, int64_t observed,
                          int64_t now_ns)
{
    if (reported <= cur || (observed > cur && observed <= reported)) {
        atomic_store(&tb->rate_candidate, 0);
        atomic_store(&tb->rate_candidate_seen, 0);
        return reported <= cur ? reported : observed;
    }
    if (atomic_load(&tb->rate_candidate) != reported) {
        atomic_store(&tb->rate_candidate, reported);
        atomic_store(&tb->rate_candidate_seen, 1);
        atomic_store(&tb->rate_candidate_since_ns, now_ns);
        return cur;
    }
    int64_t seen = atomic_load(&tb->rate_candidate_seen) + 1;
    atomic_store(&tb->rate_candidate_seen, seen);
    if (seen >= TB_RATE_TRUST_READINGS && now_ns - atomic_load(&tb->rate_candidate_since_ns) >=
                                              TB_RATE_TRUST_MINUTES * tb->minute_ns) {
        atomic_store(&tb->rate_candidate, 0);
        atomic_store(&tb->rate_candidate_seen, 0);
        return reported;
    }
    return cur;
}

int tb_apply_reading(struct shm_tokens *tb, const struct tb_reading *r, int64_t now_ns,
                     const struct tb_grant *own)
{
    if (!tb_ready(tb) || !now_valid(now_ns) || (own != NULL && !grant_valid(own)))
        return -EINVAL;
    int64_t minute_ms = tb->minute_ns / NS_PER_MS;
    if (!reading_valid(r, minute_ms)) {
        atomic_fetch_add(&tb->readings_ignored, 1);
        return -EINVAL;
    }
    uint64_t id = (uint64_t)getpid();
    if (!reading_lock(tb, id, now_ns)) {
        /* Not applied, yet its request is settled as charged: a reading made before this one
         * must not be applied later and give that charge back. The time first: whoever sees
         * the timestamp sees it. */
        store_max(&tb->busy_reading_ns, now_ns);
        store_max(&tb->busy_timestamp_ms, r->timestamp_ms);
        return -EBUSY;
    }

    /* A reading made before the last one applied misses the charges that one showed, and
     * the requests charged in between may have been settled since (no longer subtracted as in
     * flight): applied, it would give their tokens back. However late it arrives: an answer
     * can take more than a Keepa minute (a commit, up to the client's timeout; any slow answer
     * when the minute is accelerated). Its server timestamp tells, unless its own request was
     * granted after the last reading was applied: then it was made after that one whatever the
     * server's clock says (the clock went back, a restart), and is applied as the newer. */
    int64_t last_ns = atomic_load(&tb->last_reading_ns);
    int64_t last_ts = atomic_load(&tb->last_timestamp_ms);
    int64_t busy_ts = atomic_load(&tb->busy_timestamp_ms); /* and one refused -EBUSY */
    if (busy_ts != INT64_MIN) {
        int64_t busy_ns = atomic_load(&tb->busy_reading_ns);
        last_ts = last_ns == INT64_MIN || busy_ts > last_ts ? busy_ts : last_ts;
        last_ns = busy_ns > last_ns ? busy_ns : last_ns;
    }
    bool made_after = last_ns == INT64_MIN || (own != NULL && own->granted_ns > last_ns);
    if (!made_after && r->timestamp_ms < last_ts) {
        atomic_fetch_add(&tb->readings_ignored, 1);
        reading_unlock(tb, id);
        return -ESTALE;
    }

    /* The same server millisecond as the last one applied: the two cannot be ordered, and
     * this one may predate a charge that one saw (an answer the server made just before
     * charging another request, processed after that request was settled). It may lower the
     * balance, never raise it. */
    bool tie = !made_after && r->timestamp_ms == last_ts;
    uint64_t own_word = 0;
    if (own != NULL && own->slot != TB_SLOT_NONE)
        own_word = slot_word(own->owner, own->generation, SLOT_HELD);
    /* The answer to a request granted after a loss was charged after it too (the lost one was
     * sent before it was given up): this reading shows the lost one's cost. */
    int64_t seen_after = INT64_MIN;
    if (own_word != 0 && atomic_load(&tb->slots[own->slot].word) == own_word)
        seen_after = atomic_load(&tb->slots[own->slot].granted_ns) - LOST_SEEN_AFTER_NS;
    int64_t now_ms = now_ns / NS_PER_MS;
    /* refillIn counts whole ms up from the moment the server made the reading, which is at
     * most NOW_NS: the tick is no earlier than the next whole ms after now + refillIn. From the
     * ms now falls in it could be up to 1 ms early, and a grant timed to the tick (a timer set
     * for it) would reach a server that has not ticked yet: a 429 on a fast connection. */
    int64_t next_ms =
        (now_ns + NS_PER_MS - 1) / NS_PER_MS + (r->refill_in_ms > 0 ? r->refill_in_ms : minute_ms);
    int64_t left = (int64_t)floor(r->tokens_left);
    uint64_t w = atomic_load(&tb->state);
    int64_t cur_rate = word_rate(w) ? word_rate(w) : tb->initial_rate;
    int64_t observed = observed_rate(tb, r, own_word, own_word ? own->slot : 0, minute_ms);
    int64_t rate = learn_rate(tb, cur_rate, r->refill_rate, observed, now_ns);
    for (;;) {
        /* The word is loaded before the slots are summed: see the top comment. */
        int64_t lost = 0;
        int64_t inflight = inflight_tokens(tb, own_word, now_ns, seen_after, NULL, &lost, NULL);
        int64_t balance = left - inflight - lost;
        if (tie && word_rate(w) != 0) {
            int64_t projected = project_word(tb, w, now_ms).balance;
            if (projected < balance)
                balance = projected;
        }
        uint64_t nw = word_pack(clamp_balance(balance), rate, next_ms);
        touch(tb, now_ms);
        if (atomic_compare_exchange_weak(&tb->state, &w, nw))
            break;
    }
    if (seen_after != INT64_MIN)
        release_lost(tb, seen_after);
    if (own_word != 0) {
        uint64_t expect = own_word;
        atomic_compare_exchange_strong(&tb->slots[own->slot].word, &expect,
                                       slot_word(own->owner, own->generation, SLOT_SYNCED));
    }
    atomic_store(&tb->last_reading_ns, now_ns);
    atomic_store(&tb->last_timestamp_ms, r->timestamp_ms);
    atomic_store(&tb->last_tokens_left_milli, (int64_t)floor(r->tokens_left * 1000.0));
    atomic_store(&tb->last_refill_in_ms, r->refill_in_ms);
    atomic_store(&tb->last_refill_rate, r->refill_rate);
    atomic_store(&tb->last_tokens_consumed, r->tokens_consumed);
    atomic_fetch_add(&tb->readings_applied, 1);
    /* This one is the newer (or made after it): it shows the refused one's charge. Unless a
     * newer one was refused meanwhile. */
    if (busy_ts != INT64_MIN)
        atomic_compare_exchange_strong(&tb->busy_timestamp_ms, &busy_ts, INT64_MIN);
    reading_unlock(tb, id);
    return 0;
}

int tb_writeoff_owner(struct shm_tokens *tb, int64_t owner, int64_t now_ns)
{
    if (!tb_ready(tb) || owner < 1 || owner > TB_OWNER_MAX || !now_valid(now_ns))
        return -EINVAL;
    int released = 0;
    for (unsigned i = 0; i < SHM_TOKEN_SLOTS; i++) {
        uint64_t w = atomic_load(&tb->slots[i].word);
        while (slot_state(w) != SLOT_FREE && slot_state(w) != SLOT_LOST && slot_owner(w) == owner) {
            int64_t amount = atomic_load(&tb->slots[i].amount_tokens);
            /* Answered and applied: nothing is missing. Otherwise the server may have charged
             * it: held as a lost request, charged at its estimate. */
            bool done =
                slot_state(w) == SLOT_SYNCED ? slot_free(tb, i, w) : slot_lose(tb, i, w, now_ns);
            if (done) {
                released++;
                atomic_fetch_add(&tb->writeoffs, 1);
                if (slot_state(w) != SLOT_SYNCED)
                    atomic_fetch_add(&tb->writeoff_tokens, amount);
                break;
            }
            w = atomic_load(&tb->slots[i].word);
        }
    }
    reading_unlock(tb, (uint64_t)owner);
    return released;
}

int tb_writeoff_dead(struct shm_tokens *tb, int64_t now_ns, bool (*alive)(int64_t owner, void *ud),
                     void *ud)
{
    if (!tb_ready(tb) || alive == NULL || !now_valid(now_ns))
        return -EINVAL;
    int released = 0;
    for (unsigned i = 0; i < SHM_TOKEN_SLOTS; i++) {
        uint64_t w = atomic_load(&tb->slots[i].word);
        int64_t owner = slot_owner(w);
        if (slot_state(w) == SLOT_FREE || owner < 1 || alive(owner, ud))
            continue;
        int n = tb_writeoff_owner(tb, owner, now_ns);
        released += n > 0 ? n : 0;
    }
    uint64_t holder = atomic_load(&tb->reading_lock);
    if (holder != 0 && holder <= (uint64_t)TB_OWNER_MAX && !alive((int64_t)holder, ud))
        reading_unlock(tb, holder);
    return released;
}

/* ---- queries ---------------------------------------------------------------------------- */

static bool claim_recent(const struct shm_tokens *tb, int64_t now_ns)
{
    int64_t c = atomic_load(&((struct shm_tokens *)tb)->status_claim_ns);
    return c != CLAIM_NONE && now_ns >= c && now_ns - c < tb->minute_ns / 6;
}

bool tb_needs_reading(const struct shm_tokens *tb, int64_t now_ns)
{
    if (!tb_ready(tb) || !now_valid(now_ns))
        return false;
    struct shm_tokens *m = (struct shm_tokens *)tb;
    uint64_t w = atomic_load(&m->state);
    if (word_rate(w) == 0)
        return !claim_recent(tb, now_ns);
    struct tb_view v = project_word(tb, w, now_ns / NS_PER_MS);
    if (v.balance <= 0)
        return false; /* deep below zero a reading cannot help: wait for the refill */
    int64_t last = atomic_load(&m->last_reading_ns); /* INT64_MIN: anchoring in progress */
    return (last == INT64_MIN || now_ns - last >= tb->stale_ns) && !claim_recent(tb, now_ns);
}

int tb_claim_status_call(struct shm_tokens *tb, int64_t now_ns)
{
    if (!tb_ready(tb) || !now_valid(now_ns))
        return -EINVAL;
    int64_t c = atomic_load(&tb->status_claim_ns);
    for (;;) {
        if (c != CLAIM_NONE && now_ns >= c && now_ns - c < tb->minute_ns / 6)
            return -EALREADY;
        if (atomic_compare_exchange_weak(&tb->status_claim_ns, &c, now_ns))
            return 0;
    }
}

int64_t tb_project(const struct shm_tokens *tb, int64_t now_ns)
{
    if (!tb_ready(tb) || !now_valid(now_ns))
        return 0;
    uint64_t w = atomic_load(&((struct shm_tokens *)tb)->state);
    if (word_rate(w) == 0)
        return 0;
    return project_word(tb, w, now_ns / NS_PER_MS).balance;
}

int64_t tb_time_to_fill_ns(const struct shm_tokens *tb, int64_t now_ns)
{
    if (!tb_ready(tb) || !now_valid(now_ns))
        return -1;
    uint64_t w = atomic_load(&((struct shm_tokens *)tb)->state);
    if (word_rate(w) == 0)
        return -1;
    struct tb_view v = project_word(tb, w, now_ns / NS_PER_MS);
    if (v.balance >= v.cap)
        return 0;
    int64_t t = time_to_reach_ms(&v, v.cap) * NS_PER_MS - now_ns;
    return t > 0 ? t : 0;
}

int tb_stats(const struct shm_tokens *tb, int64_t now_ns, struct tb_stats *out)
{
    if (!tb_ready(tb) || !now_valid(now_ns) || out == NULL)
        return -EINVAL;
    struct shm_tokens *m = (struct shm_tokens *)tb;
    memset(out, 0, sizeof(*out));
    uint64_t w = atomic_load(&m->state);
    out->anchored = word_rate(w) != 0;
    out->max_deficit_tokens = tb->max_deficit_tokens;
    out->time_to_fill_ns = -1;
    if (out->anchored) {
        struct tb_view v = project_word(tb, w, now_ns / NS_PER_MS);
        out->projected_tokens = v.balance;
        out->refill_rate = v.rate;
        out->cap_tokens = v.cap;
        out->next_refill_ns = v.next_ms * NS_PER_MS;
        out->time_to_fill_ns = tb_time_to_fill_ns(tb, now_ns);
    } else {
        out->refill_rate = tb->initial_rate;
        out->cap_tokens = tb->initial_rate * tb->bucket_minutes;
    }
    out->inflight_tokens = inflight_tokens(tb, 0, now_ns, INT64_MIN, &out->slots_in_use,
                                           &out->lost_tokens, &out->lost_slots);
    int64_t last = atomic_load(&m->last_reading_ns);
    out->last_reading_age_ns = last == INT64_MIN ? -1 : now_ns - last;
    out->last_reading.tokens_left = (double)atomic_load(&m->last_tokens_left_milli) / 1000.0;
    out->last_reading.refill_in_ms = atomic_load(&m->last_refill_in_ms);
    out->last_reading.refill_rate = atomic_load(&m->last_refill_rate);
    out->last_reading.timestamp_ms = atomic_load(&m->last_timestamp_ms);
    out->last_reading.tokens_consumed = atomic_load(&m->last_tokens_consumed);
    out->readings_applied = atomic_load(&m->readings_applied);
    out->readings_ignored = atomic_load(&m->readings_ignored);
    out->grants = atomic_load(&m->grants);
    out->granted_tokens = atomic_load(&m->granted_tokens);
    out->writeoffs = atomic_load(&m->writeoffs);
    out->writeoff_tokens = atomic_load(&m->writeoff_tokens);
    return 0;
}

/* ---- learned costs ---------------------------------------------------------------------- */

/*
 * Fixed part of each kind's cost (not learned; docs/keepa-api.md §2.6, §3.1): /query charges 10
 * per request, the lightning list 500, a best-seller list 50. Only what an answer charges above
 * it is learned, so a best-seller list that found nothing (charged 0) never teaches a lower
 * estimate for the next category: a reservation of 50 settled at 0 costs nothing, one that is
 * too low overdraws.
 */
static const int64_t kind_base_tokens[TB_KIND_COUNT] = {
    [TB_KIND_QUERY] = 10, [TB_KIND_LIGHTNING] = 500, [TB_KIND_BESTSELLERS] = 50};
_Static_assert(TB_KIND_COUNT <= SHM_TOKEN_KINDS, "a cost slot in shared memory for every kind");

int64_t tb_cost_estimate(const struct shm_tokens *tb, enum tb_kind kind, int64_t units)
{
    if (!tb_ready(tb) || (int)kind < 0 || kind >= TB_KIND_COUNT || units < 1 ||
        units > TB_UNITS_MAX)
        return -EINVAL;
    if (kind == TB_KIND_TOKEN)
        return 0;
    int64_t milli = atomic_load(&((struct shm_tokens *)tb)->costs[kind].milli_per_unit);
    int64_t est = kind_base_tokens[kind] + (milli * units + 999) / 1000;
    return est < TB_COST_MAX ? est : TB_COST_MAX;
}

int tb_cost_learn(struct shm_tokens *tb, enum tb_kind kind, int64_t units, int64_t tokens_consumed)
{
    if (!tb_ready(tb) || (int)kind < 0 || kind >= TB_KIND_COUNT || units < 1 ||
        units > TB_UNITS_MAX || tokens_consumed < 0 || tokens_consumed > TB_COST_MAX)
        return -EINVAL;
    if (kind == TB_KIND_TOKEN)
        return 0;
    int64_t over = tokens_consumed - kind_base_tokens[kind];
    int64_t sample = over > 0 ? (over * 1000 + units - 1) / units : 0;
    struct shm_token_cost *c = &tb->costs[kind];
    int64_t cur = atomic_load(&c->milli_per_unit);
    for (;;) {
        int64_t next = cur;
        if (sample > cur) {
            next = sample; /* too low: correct at once */
        } else if (sample < cur) {
            int64_t step = (cur - sample) / 8;
            next = cur - (step > 0 ? step : 1); /* too high: decay slowly */
        }
        if (atomic_compare_exchange_weak(&c->milli_per_unit, &cur, next))
            break;
    }
    atomic_fetch_add(&c->samples, 1);
    return 0;
}
