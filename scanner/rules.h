/*
 * rules.h: the scanner's pure decisions, kept apart from the event loop so they can be
 * tested without processes, sockets or LMDB.
 *
 *   - the free pre-filter on the deal feed's own data (no request needed to drop a deal);
 *   - the dedup rule (an ASIN peeked recently and unchanged in the feed is not paid twice);
 *   - the discovery cursor: what it holds, its byte form in the meta db, and how it moves.
 *     It only ever moves forward after a page (or a chunk of the ASIN list) was fully
 *     recorded; a failed fetch leaves it where it is (docs/failure-modes.md F10). Paging
 *     never relies on the seller's order being a time order (F11): a pass walks pages 0, 1,
 *     2, ... until a short page or the last page Keepa serves, then a new pass starts at 0;
 *     only the fresh walk, which asks for Keepa's deal-age order itself and checks it on every
 *     page, ends a pass earlier;
 *   - the page of candidates in memory and the state of each (queued, in a peek request,
 *     done), so a failed peek puts its ASINs back instead of dropping them; which of them
 *     are peeked first (the free pre-score); when the next pass starts (the pause, the
 *     cadence of fresh passes) and whether it is a probe of the deepest drops;
 *   - one line of an ASIN list file, and one line of the seller's list ([scan] source = list);
 *   - the discovery filters ([scan] max_rank, categories, exclude_categories, no_amazon,
 *     min_price, max_price), applied to the feed's data for free and again at the peek;
 *   - which code of a code lookup a product answers;
 *   - the dear list sources (lightning deals, best-seller lists): what a list entry keeps,
 *     which lightning deals are candidates, and the cursor over lists and entries.
 */
#ifndef KD_SCANNER_RULES_H
#define KD_SCANNER_RULES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/config.h"
#include "judge/judge.h"
#include "keepa/decode.h"
#include "keepa/request.h"
#include "store/codec.h"

#define SCANNER_PAGE_DEALS     150   /* deals per full /deal page */
#define SCANNER_LAST_DEAL_PAGE 66    /* Keepa serves pages 0..66 (10 000 deals) */
#define SCANNER_QUERY_MAX      10000 /* /query: page * perPage stays below this */
#define SCANNER_PAGE_MAX       1000  /* candidates one page may hold (/query perPage cap) */
#define SCANNER_CURSOR_BYTES   24
#define SCANNER_CURSOR_VERSION 1

/*
 * The free pre-filter: judges a deal from the feed alone (judge/inputs.h jd_inputs_from_deal)
 * with the seller's rules R. The feed gives no fees, so the judgement is an upper bound
 * (docs/judgement.md, "Stages"): what it rejects, no peek of the same numbers could accept.
 * An unknown input (salesRankDrops365 = -1) counts as the rules' unknown rule says, exactly as
 * at the peek and the full fetch. Returns true to keep the deal; else *WHY (may be NULL) gets
 * the reason's short name (jd_reason).
 */
bool scanner_prefilter_deal(const struct kp_deal *d, const struct jd_rules *r, const char **why);

/* A 64-bit hash (FNV-1a) of the deal's current prices (not its rank or offer counts), stored
 * in `seen` for dedup. */
uint64_t scanner_feed_hash(const struct kp_deal *d);

/*
 * True when an ASIN whose `seen` record is SEEN (NULL: never peeked) need not be peeked
 * again at NOW_MS: the record is younger than WINDOW_MS and the feed's lastUpdate and price
 * hash equal those recorded then. Sources without feed data pass -1 and 0.
 */
bool scanner_dedup_skip(const struct st_seen *seen, int64_t now_ms, int64_t window_ms,
                        int64_t feed_last_update_min, uint64_t feed_hash);

/*
 * Whether a product the seller marked MARK (enum st_mark, `kdeals mark` or the web API) is left
 * out of discovery: one marked bought or ignored is not peeked, so it costs no peek and no full
 * fetch again, as it costs no re-check (docs/operations.md); `clear` (ST_MARK_NONE) brings it
 * back. An unknown mark (a newer build's) counts as a mark.
 */
bool scanner_mark_skip(unsigned mark);

/*
 * Where a peek's result goes, given its product's stored record: RECORD_RC is st_record_get's
 * answer (0 found, -ENOENT none, -EBADMSG or -ENOTSUP a record this build cannot read, counted
 * as none), STATE the record's enum st_state when found, SURVIVOR whether the peek passed. A
 * stored deal, shown or failing, goes to the updater as a free refresh whatever the verdict (a
 * second full fetch by the committer would repeat the updater's work); a survivor with no
 * record, or with one that is not a deal (rejected at its full fetch, or expired), goes to the
 * committer through `pending`: the deal may be back. Any other answer is a store error that
 * fails the batch's write (retried), never a result dropped.
 */
enum scanner_peek_route {
    SCANNER_ROUTE_NONE = 0, /* a rejection: its `seen` verdict is all that is kept */
    SCANNER_ROUTE_COMMIT,   /* into `pending` and on the ring to the committer */
    SCANNER_ROUTE_REFRESH,  /* on the ring to the updater */
    SCANNER_ROUTE_ERROR     /* the record could not be read */
};

enum scanner_peek_route scanner_peek_route(int record_rc, unsigned state, bool survivor);

/*
 * Whether a product is known to fail at the listings seen now: its stored record R was judged
 * on a full read (offers, Buy Box, fees) and is not a deal (REJECTED: rejected at its full
 * fetch, or expired), and judged again on R's own inputs under RULES with the best buy now on
 * each side, NEW_CENTS (the lowest New listing, as condition New) and USED_CENTS (the lowest
 * Used listing, as R's Used condition or else Like New), shipping free, it fails on both. A
 * peek reads no offers and no Buy Box, so it overestimated this product before and would
 * again; a full fetch would say no again (a day benchmark: 47 of 49 such full fetches were
 * rejected). The scanner asks it with the feed's listings before a peek and with the peek's
 * before a full fetch. False when R says nothing: another state, never judged, no listing
 * (<= 0) on either side, or read more than MAX_AGE_MS before NOW_MS (or at no known time): the
 * Buy Box and averages it sold on move, and a product skipped on an old read would never be
 * read again (SCANNER_KNOWN_MAX_AGE_MIN).
 */
bool scanner_known_fail(const struct st_record *r, int64_t new_cents, int64_t used_cents,
                        const struct jd_rules *rules, int64_t now_ms, int64_t max_age_ms);

/* How old, in Keepa minutes, a stored full read may be and still rule a product out. */
#define SCANNER_KNOWN_MAX_AGE_MIN (12 * 60)

/* The discovery cursor, kept in the meta db under "scanner.cursor". */
struct scanner_cursor {
    uint8_t source;          /* enum cfg_scan_source it belongs to */
    uint32_t pass;           /* passes completed */
    uint64_t position;       /* next page (deals, query) or next line index (asins) */
    uint64_t selection_hash; /* of the selection / list path the position refers to */
};

/* Writes C in its fixed little-endian byte form (version, source, pass, position, hash). */
void scanner_cursor_encode(const struct scanner_cursor *c, uint8_t out[SCANNER_CURSOR_BYTES]);

/* Reads the byte form. Returns 0, or -EBADMSG (wrong size or version; OUT untouched). */
int scanner_cursor_decode(const void *buf, size_t len, struct scanner_cursor *out);

/*
 * The cursor to start from, given the one STORED (NULL: none) and the current SOURCE and
 * SELECTION_HASH: the stored one if it belongs to them, else a fresh cursor at position 0
 * (the pass count is kept).
 */
struct scanner_cursor scanner_cursor_resume(const struct scanner_cursor *stored, uint8_t source,
                                            uint64_t selection_hash);

/*
 * Moves C past a page that was fetched and fully recorded and held N_ITEMS items, where a
 * full page holds FULL items and LAST_PAGE is the last page the source serves. Returns true
 * when that ended the pass (a short page or the last page): position 0 and pass + 1. A page
 * that failed is never passed here: the cursor stays on it.
 */
bool scanner_cursor_after_page(struct scanner_cursor *c, size_t n_items, size_t full,
                               uint64_t last_page);

/*
 * Moves C past a chunk of the ASIN list that ended before line NEXT_LINE (index of the
 * first line not read); EOF says the file ended there. Returns true when the pass ended.
 */
bool scanner_cursor_after_chunk(struct scanner_cursor *c, uint64_t next_line, bool eof);

enum scanner_cand_state {
    SCANNER_CAND_QUEUED = 0, /* waiting for a peek request */
    SCANNER_CAND_IN_FLIGHT,  /* in a peek request (or its results await a store write) */
    SCANNER_CAND_DONE        /* recorded, filtered or dropped for this pass */
};

struct scanner_cand {
    char asin[ST_ASIN_LEN + 1]; /* "" for a code to look up */
    char code[KP_CODE_LEN];     /* a UPC or EAN of the seller's list; "" for an ASIN */
    uint8_t state;
    int16_t item;                 /* the seller's list line it came from (the chunk's); -1 none */
    int64_t feed_last_update_min; /* -1 when the source has none */
    uint64_t feed_hash;
    int64_t window_start_min, window_end_min; /* a lightning deal's [start, end), Keepa
                                                 minutes; -1 for other sources */
    int64_t prescore_profit_cents; /* scanner_prescore_deal; 0 when the source has no feed */
    int64_t prescore_at_min;       /* ... and its moment; 0 unknown */
    uint8_t peek_class;            /* scanner_peek_class; SCANNER_PEEK_NONE without a feed */
    int32_t feed_drop_pct;         /* the feed's deltaPercent the selection filters on; -1 none */
    int64_t feed_new_cents;        /* the feed's lowest New and Used listings; -1 none */
    int64_t feed_used_cents;
};

/* The candidates of one page (or chunk), in feed order, each ASIN at most once. */
struct scanner_page {
    size_t n;
    struct scanner_cand c[SCANNER_PAGE_MAX];
};

/* Empties P. */
void scanner_page_reset(struct scanner_page *p);

/*
 * Appends ASIN (queued). Returns 0, 1 when it is already on the page (nothing changes: a
 * retried transfer may deliver it again), -EINVAL for an ASIN that is not 10 characters of
 * [0-9A-Z], -ENOSPC when the page is full.
 */
int scanner_page_add(struct scanner_page *p, const char *asin, int64_t feed_last_update_min,
                     uint64_t feed_hash);

/*
 * Appends CODE (queued), a code to look up, from list line ITEM of the chunk. Returns 0, 1
 * when it is already on the page, -EINVAL when CODE is not 8..14 digits, -ENOSPC when full.
 */
int scanner_page_add_code(struct scanner_page *p, const char *code, int16_t item);

/*
 * Takes up to MAX queued candidates of one kind in page order (ASINs, or codes: a request
 * asks by one or the other, the kind of the first queued candidate), marks them in flight
 * and writes their indices to IDX. Returns how many were taken.
 */
size_t scanner_page_take(struct scanner_page *p, size_t max, uint16_t *idx);

/*
 * What peeks taught about products' fees (referral percentage, FBA fee, closing fee), kept in
 * memory so that the pre-score of a product's next feed entry judges with its own fees
 * instead of none. A fixed table of SCANNER_FEES_SLOTS entries indexed by the ASIN's hash;
 * a newer product takes an older one's slot (its fees are then unknown again).
 */
#define SCANNER_FEES_SLOTS 16384 /* a power of two */

struct scanner_fees_entry {
    char asin[ST_ASIN_LEN + 1];
    int32_t referral_bp;
    int64_t fba_fee_cents;
    int64_t closing_fee_cents;
};

/*
 * The fees peeks found, for products never peeked (the `lowfees` rule): the effective fees of
 * the last SCANNER_FEES_LOW_N peeks (the referral percentage, FBA and closing fee the
 * judgement used), overall and per root category, and their SCANNER_FEES_LOW_PCT-th
 * percentiles, each taken alone: low fees that most products' fees are above, so a product
 * that fails even at them would almost surely fail its peek.
 */
#define SCANNER_FEES_LOW_N    128 /* observations kept per class */
#define SCANNER_FEES_LOW_MIN  24  /* before a class's low fees stand (a category leans on all) */
#define SCANNER_FEES_LOW_PCT  10
#define SCANNER_FEES_LOW_CATS 32 /* root categories kept; a newer one takes the least used */

struct scanner_fees_low {
    int64_t root_category; /* 0: every product */
    uint32_t n;            /* observations ever */
    int32_t referral_bp[SCANNER_FEES_LOW_N];
    int32_t fba_cents[SCANNER_FEES_LOW_N];
    int32_t closing_cents[SCANNER_FEES_LOW_N];
    int32_t low_referral_bp, low_fba_cents, low_closing_cents; /* when n >= SCANNER_FEES_LOW_MIN */
};

/*
 * What the peeks of each class of candidate found (the `peekrate` rule): a class is what the
 * pre-score knew (the product's own fees, the learned low fees, or none), whether it passed
 * only at the feed's Buy Box (a peek reads none, so it sells at an average, docs/keepa-api.md)
 * and the band of its pre-score profit. The last SCANNER_PEEK_WINDOW outcomes of each, one bit
 * each. A class whose peeks pass less than 1 in 4 (SCANNER_PEEK_MIN_PASS_PCT) once it has
 * SCANNER_PEEK_MIN outcomes is not peeked: the oracle pays one peek and one full fetch of
 * about 10 tokens a deal, and 3 failed peeks a deal found are the whole 1.3x the issue allows
 * above it. One candidate in SCANNER_PEEK_EXPLORE of such a class is peeked still, so that the
 * class's rate follows the day.
 */
#define SCANNER_PEEK_BANDS        4 /* pre-score profit < 10, < 20, < 40 USD, more */
#define SCANNER_PEEK_CLASSES      (3 * 2 * SCANNER_PEEK_BANDS)
#define SCANNER_PEEK_NONE         0xff /* a candidate without a feed row: no class */
#define SCANNER_PEEK_WINDOW       32
#define SCANNER_PEEK_MIN          16
#define SCANNER_PEEK_MIN_PASS_PCT 25
#define SCANNER_PEEK_EXPLORE      8

struct scanner_peek_rate {
    uint32_t passed; /* bit i: the i-th latest outcome passed */
    uint32_t n;      /* outcomes ever */
    uint32_t skipped;
};

struct scanner_fees {
    struct scanner_fees_entry e[SCANNER_FEES_SLOTS];
    struct scanner_fees_low all;
    struct scanner_fees_low cat[SCANNER_FEES_LOW_CATS];
    struct scanner_peek_rate peek[SCANNER_PEEK_CLASSES];
};

/*
 * Empties F's learned low fees (the per-product table is left as it is: zeroed by the
 * caller). It writes every page of them now, so the process's memory does not grow while
 * peeks fill them (tests/integration/test_soak.c holds memory per request flat).
 */
void scanner_fees_init(struct scanner_fees *f);

/*
 * Learns the fees verdict V (a peek's judgement of a product of ROOT_CATEGORY, 0 unknown)
 * used, when it computed them from known fees (not the feed's bound).
 */
void scanner_fees_learn(struct scanner_fees *f, int64_t root_category, const struct jd_verdict *v);

/*
 * Sets IN's fee inputs (and fees_known) to the learned low fees of ROOT_CATEGORY (its own
 * once it has SCANNER_FEES_LOW_MIN observations, else those of every product). False when
 * too few peeks were learned.
 */
bool scanner_fees_low(const struct scanner_fees *f, int64_t root_category, struct jd_inputs *in);

/* Remembers the fees IN (a peek's read of ASIN) carries, when it carries them (fees_known). */
void scanner_fees_put(struct scanner_fees *f, const char *asin, const struct jd_inputs *in);

/* Sets IN's fee inputs (and fees_known) to those remembered for ASIN. False when none are. */
bool scanner_fees_get(const struct scanner_fees *f, const char *asin, struct jd_inputs *in);

/*
 * The free pre-score of feed deal D under rules R (docs/architecture.md, "The spending
 * policy"): *PROFIT_CENTS gets the judgement's upper bound on the feed's own numbers (fees
 * unknown count 0: scanner_prefilter_deal's judgement; 0 when it has no price), *AT_MIN the
 * moment its deal was recorded (creationDate, else lastUpdate; 0 unknown), Keepa minutes.
 * With FEES (may be NULL) remembering the product's fees, the judgement uses them, both on the
 * feed's numbers and without the feed's Buy Boxes (as a peek, which has none, reads it), and
 * takes the better; when neither is a deal the peek would not be one either on these numbers
 * and *PROFIT_CENTS is -1 (a sure fail). With LOW (the `lowfees` rule), a product FEES does
 * not remember is judged so with the learned low fees (scanner_fees_low) instead of none: -1
 * when even those fail it. Nothing is recorded: a later feed entry is judged again.
 */
void scanner_prescore_deal(const struct kp_deal *d, const struct jd_rules *r,
                           const struct scanner_fees *fees, bool low, int64_t *profit_cents,
                           int64_t *at_min);

/* As scanner_prescore_deal; *CLS (may be NULL) gets the candidate's class for `peekrate`
 * (scanner_peek_class). */
void scanner_prescore_deal_class(const struct kp_deal *d, const struct jd_rules *r,
                                 const struct scanner_fees *fees, bool low, int64_t *profit_cents,
                                 int64_t *at_min, uint8_t *cls);

/*
 * The `peekrate` class of a pre-score: FEES_SOURCE 0 none known, 1 the learned low fees, 2 the
 * product's own; BUY_BOX_ONLY when it passed only at the feed's Buy Box; PROFIT_CENTS its
 * profit.
 */
uint8_t scanner_peek_class(int fees_source, bool buy_box_only, int64_t profit_cents);

/* Learns that a peek of a candidate of class CLS passed (or not). SCANNER_PEEK_NONE: nothing. */
void scanner_peek_learn(struct scanner_fees *f, uint8_t cls, bool passed);

/*
 * True when a candidate of class CLS is not worth its peek (its class passes too seldom, see
 * struct scanner_peek_rate); counts it among the class's skipped, of which every
 * SCANNER_PEEK_EXPLORE-th is peeked still (false).
 */
bool scanner_peek_skip(struct scanner_fees *f, uint8_t cls);

/* How many classes scanner_peek_skip rules out now (`kdeals stat`: peek_classes_shut). */
unsigned scanner_peek_classes_shut(const struct scanner_fees *f);

/*
 * A pre-score's worth: PROFIT_CENTS halved for every HALF_LIFE_MIN (> 0) its moment AT_MIN is
 * older than NEWEST_MIN, the newest moment on the page (a fresh drop is likelier to be there
 * still). An unknown moment (0) counts as the newest.
 */
double scanner_prescore(int64_t profit_cents, int64_t at_min, int64_t newest_min,
                        int64_t half_life_min);

/*
 * As scanner_page_take, but the queued candidates with the highest scanner_prescore first
 * (page order among equals, so a source without feed data keeps its order). HALF_LIFE_MIN is
 * the learned half-life of a deal (worker/value.h), <= 0 for its prior.
 */
size_t scanner_page_take_best(struct scanner_page *p, size_t max, uint16_t *idx,
                              int64_t half_life_min);

/*
 * As scanner_page_take_best; with RATES (the `peekrate` rule; NULL: none) a candidate
 * scanner_peek_skip rules out is marked done unpeeked as it comes up (nothing is recorded: a
 * later feed entry is judged again), and *DROPPED (may be NULL) counts them.
 */
size_t scanner_page_take_rated(struct scanner_page *p, size_t max, uint16_t *idx,
                               int64_t half_life_min, struct scanner_fees *rates, size_t *dropped);

/* Ends the flight of the N candidates at IDX: DONE true marks them done, else re-queues. */
void scanner_page_release(struct scanner_page *p, const uint16_t *idx, size_t n, bool done);

/* Candidates in STATE. */
size_t scanner_page_count(const struct scanner_page *p, enum scanner_cand_state state);

/* True when every candidate is done (an empty page is complete). */
bool scanner_page_complete(const struct scanner_page *p);

/*
 * Parses one line of an ASIN list: surrounding blanks are ignored, '#' starts a comment,
 * lowercase letters are upper-cased. Returns 1 with the ASIN in OUT, 0 for a blank or
 * comment line, -EINVAL for anything else.
 */
int scanner_parse_asin_line(const char *line, char out[ST_ASIN_LEN + 1]);

/*
 * The seller's list ([scan] source = list, docs/operations.md): one CSV line per product,
 *
 *     code,cost[,source_url][,note]
 *
 * code an ASIN (10 letters and digits; lowercase is upper-cased), a UPC (12 digits) or an EAN
 * (13 digits, ISBN-13 too); cost the seller's buy cost per unit in the marketplace's currency
 * ("12.50", "$12.50", never cents) or empty (then the product is judged on Amazon's offers, as
 * from an ASIN list); source_url and note are kept with the record. Fields are CSV: a field in
 * double quotes may hold commas, "" is a quote. Blank lines, lines starting with '#' and a
 * header line (first field "code" or "asin") are skipped.
 */
struct scanner_list_line {
    char asin[ST_ASIN_LEN + 1]; /* "" when a code */
    char code[KP_CODE_LEN];     /* "" when an ASIN */
    int64_t cost_cents;         /* smallest units of the marketplace; -1 none */
    char url[ST_URL_MAX];
    char note[ST_NOTE_MAX];
};

/*
 * Parses LINE (a line of the list, with or without its newline) into OUT, money in DOMAIN's
 * currency. Returns 1 for a product, 0 for a line to skip, -EINVAL with a reason for the
 * operator in WHY (WHYLEN bytes): "'B0X' is not an ASIN (10 letters and digits), a UPC (12
 * digits) or an EAN (13 digits)", "cost '1,2': money in USD, e.g. 12.50 (not cents)".
 */
int scanner_parse_list_line(const char *line, unsigned domain, struct scanner_list_line *out,
                            char *why, size_t whylen);

/*
 * Whether product P answers CODE, a code it was looked up by (Keepa's /product?code=): CODE
 * is in its eanList or upcList, a 12-digit UPC also as the EAN-13 with a leading 0 and the
 * reverse.
 */
bool scanner_code_matches(const struct kp_product *p, const char *code);

#define SCANNER_CATS_MAX 32

/*
 * The discovery filters of the config ([scan] max_rank, categories, exclude_categories,
 * no_amazon, min_price, max_price): they shape the built-in /deal selection and the
 * product-finder query (scanner/selection.h) and are applied again to the feed's own data
 * (free) and at the peek, so what the selection could not express (or Keepa ignored) is
 * still enforced before a token is spent on a full fetch.
 */
struct scanner_discovery {
    int64_t max_rank; /* 0: off */
    int64_t include[SCANNER_CATS_MAX];
    uint8_t n_include; /* 0: any root category */
    int64_t exclude[SCANNER_CATS_MAX];
    uint8_t n_exclude;
    bool no_amazon;
    int64_t min_price_cents, max_price_cents; /* the marketplace's smallest unit; 0: off */
    int price_type; /* Keepa's price type of the buy's side: 1 NEW, 2 USED */
};

/* D from config C ([scan] keys, money in [keepa] domain's currency; price_type from [filter]
 * buy_condition: new or new_then_used buy New). */
void scanner_discovery_from_cfg(const struct cfg *c, struct scanner_discovery *d);

/* Whether any discovery filter is set. */
bool scanner_discovery_any(const struct scanner_discovery *d);

/*
 * Whether inputs IN (of the feed, a peek, or a list item at its own cost) pass D. A filter on
 * a value IN does not know fails it (a rank nobody knows is not "at most 200 000"; an unknown
 * root category is in no included category) except no_amazon, which fails only when Amazon is
 * known to be on the listing (jd_amazon_on_listing). The price is the buy's: price + shipping
 * of the offer, the listing or the own cost. Returns true to keep; else *WHY (may be NULL) gets
 * "max_rank", "category", "amazon" or "price".
 */
bool scanner_discovery_pass(const struct scanner_discovery *d, const struct jd_inputs *in,
                            const char **why);

/* 64-bit FNV-1a of LEN bytes at P, continuing from H (start with SCANNER_FNV_INIT). */
#define SCANNER_FNV_INIT 1469598103934665603ULL
uint64_t scanner_fnv1a(uint64_t h, const void *p, size_t len);

/* Minutes of refill the bucket may hold before discovery stops pausing (scanner_pass_pause_ms). */
#define SCANNER_BUSY_MIN      10
#define SCANNER_HALF_LIFE_MIN 120 /* a deal's half-life before the updater learned one */

/*
 * The pause before the next discovery pass: PAUSE_MS ([scan] pass_pause), or none when BUSY (the
 * "busy" rule), the pass just done PEEKED at least one ASIN and the bucket's BALANCE is above
 * SCANNER_BUSY_MIN minutes of RATE: a pause then only lets tokens nothing else wants pile up
 * towards the cap, where they are lost, or sit unspent. A pass that peeked nothing found nothing to
 * spend on: the next one would not either, and without the pause the scanner would spin.
 */
int64_t scanner_pass_pause_ms(int64_t pause_ms, bool busy, int64_t balance, int64_t rate,
                              uint64_t peeked);

/*
 * The fresh walk (the "fresh" rule, docs/architecture.md "Value per token"): the /deal feed is
 * read newest deal first (sortType 1, deal age: docs/keepa-api.md §8; the seller's filters are
 * kept, only the order is kdeals'), and a pass ends after the first page that reaches entries
 * older than the horizon: the newest deal moment (creationDate) the previous pass saw, less
 * SCANNER_FRESH_MARGIN_MIN for the feed's 120 s cache and for entries recorded a little late.
 * What lies beyond was on the feed at the previous pass and was read then (or by a pass before
 * it), so a pass pays only for the pages that hold new entries. A horizon of 0 walks every
 * page (a full walk): the first pass, and a pass made with tokens to spare
 * (scanner_fresh_full_tokens), which also finds an older entry whose offers changed under the
 * same deal moment.
 */
#define SCANNER_FRESH_SORT       1  /* Keepa's sortType: deal age, newest first */
#define SCANNER_FRESH_MARGIN_MIN 10 /* Keepa minutes */
#define SCANNER_FRESH_FULL_MIN   30 /* minutes of refill that pay for a full walk, at most */

/*
 * The tokens the bucket must hold beyond which a fresh pass is a full walk, at RATE tokens a
 * minute (<= 0: no reading, 0): what the last full walk of the seller's selection cost,
 * WALK_TOKENS (<= 0: none yet), but no more than SCANNER_FRESH_FULL_MIN minutes of refill.
 * Holding more than a walk costs would keep tokens in the bucket for nothing: on a 20/min plan
 * 30 minutes are 600 tokens against a walk of about 340 in the simulator, and the day would end
 * with up to 2 % of its tokens unspent (bench/README.md, "where the last tokens go").
 */
int64_t scanner_fresh_full_tokens(int64_t rate, int64_t walk_tokens);

/*
 * Whether a page of a fresh pass whose oldest entry's deal moment is PAGE_OLDEST_MIN (Keepa
 * minutes; <= 0: no entry told one) ends the pass under HORIZON_MIN (0: a full walk, which
 * only a short or the last page ends).
 */
bool scanner_fresh_ends_pass(int64_t horizon_min, int64_t page_oldest_min);

/*
 * The horizon of a fresh pass about to start, after a pass whose newest deal moment was
 * PASS_NEWEST_MIN (<= 0: none seen), with the bucket's BALANCE now and FULL_TOKENS
 * (scanner_fresh_full_tokens; <= 0: no reading): 0 (a full walk) when nothing was seen or the
 * bucket holds more than FULL_TOKENS, else PASS_NEWEST_MIN - SCANNER_FRESH_MARGIN_MIN.
 */
int64_t scanner_fresh_horizon(int64_t pass_newest_min, int64_t balance, int64_t full_tokens);

/*
 * The pause after a fresh pass: PAUSE_MS (scanner_pass_pause_ms's answer), but no longer than
 * the bucket takes, from BALANCE at RATE tokens a minute of MINUTE_MS real ms, to hold more than
 * FULL_TOKENS (scanner_fresh_full_tokens): then a full walk has tokens to spend on, and a pause
 * would only let them reach the cap. RATE, MINUTE_MS or FULL_TOKENS <= 0 (no reading): PAUSE_MS.
 */
int64_t scanner_fresh_pause_ms(int64_t pause_ms, int64_t balance, int64_t rate, int64_t minute_ms,
                               int64_t full_tokens);

/*
 * Whether a page's entry with deal moment MOMENT_MIN may follow one with PREV_MIN in Keepa's
 * deal-age order (newest first), SCANNER_FRESH_MARGIN_MIN of slack; an unknown moment (<= 0)
 * proves nothing. kdeals stops a pass early only on a feed that keeps this order: a page out of
 * it makes the rest of the pass a full walk (docs/failure-modes.md F11).
 */
bool scanner_fresh_in_order(int64_t prev_min, int64_t moment_min);

/*
 * The probe (the "probe" rule, docs/architecture.md "Value per token"): between the fresh passes
 * over the seller's selection, a pass reads the same feed newest first with the percentage drop
 * floor (deltaPercentRange) raised to what the peeks' survivors showed, down to its own horizon.
 * A deal is a deep drop: the newest deep drops fit on a page or two where the seller's range
 * holds every shallow move besides, so a probe pays for far fewer pages and the passes that find
 * new deals come more often on the same tokens. A fresh pass over the seller's selection (every
 * SCANNER_PROBE_SELLER_MIN Keepa minutes, and the full walks) still reads what lies below the
 * floor. The floor is the SCANNER_PROBE_QUANTILE_PCT percentile of the feed's deltaPercent
 * (the selection's date range and price type) of the last SCANNER_PROBE_SAMPLES survivors of
 * passes over the seller's selection, once SCANNER_PROBE_MIN_SAMPLES are known (a probe's
 * survivors are all above its floor: counting them would raise the floor pass after pass).
 */
#define SCANNER_PROBE_SAMPLES      64
#define SCANNER_PROBE_MIN_SAMPLES  16
#define SCANNER_PROBE_QUANTILE_PCT 10
#define SCANNER_PROBE_SELLER_MIN   120 /* Keepa minutes between passes over the seller's range */

/* The feed's percentage drops of the last survivors, a ring. */
struct scanner_drops {
    int32_t pct[SCANNER_PROBE_SAMPLES];
    uint32_t n;    /* kept, at most SCANNER_PROBE_SAMPLES */
    uint32_t next; /* where the next one goes */
};

/* Remembers a survivor's feed drop PCT (0..100; anything else is not kept). */
void scanner_drops_put(struct scanner_drops *d, int32_t pct);

/*
 * The probe's floor from D: the SCANNER_PROBE_QUANTILE_PCT percentile of the drops kept, or 0
 * (no probe) with fewer than SCANNER_PROBE_MIN_SAMPLES or when it is not above SELLER_MIN_PCT,
 * the seller's own floor (a probe would read the seller's selection).
 */
int32_t scanner_probe_floor(const struct scanner_drops *d, int32_t seller_min_pct);

/*
 * Whether the fresh pass about to start at NOW_MIN is a probe: there is a FLOOR (> 0), and the
 * last pass over the seller's selection began at SELLER_PASS_MIN (<= 0: none yet, so no probe),
 * less than SCANNER_PROBE_SELLER_MIN Keepa minutes before. A full walk is never a probe.
 */
bool scanner_probe_pass(int32_t floor_pct, int64_t now_min, int64_t seller_pass_min,
                        bool full_walk);

/*
 * The cadence of fresh passes (the "cadence" rule, docs/architecture.md "Value per token"): a
 * pass of PAGE_TOKENS finds what appeared since the last one, and a deal that waits for it
 * vanishes at hazard ln 2 / HALF_LIFE_MIN meanwhile. Passes every T minutes cost PAGE_TOKENS / T
 * a minute and lose about hazard x T / 2 of what the feed brings; with a token worth what the
 * plan's RATE tokens a minute bring on average, the sum is least at
 *
 *     T = sqrt(2 x PAGE_TOKENS x HALF_LIFE_MIN / (RATE x ln 2))
 *
 * (5 tokens, 5 a minute, a half-life of 37 minutes: 10 minutes; 25 tokens: 23 minutes). The
 * answer, in Keepa minutes, is the least time from one fresh pass's start to the next's: passes
 * made sooner only pay for pages that hold little new. RATE or PAGE_TOKENS <= 0: 0 (no
 * bound); HALF_LIFE_MIN <= 0: SCANNER_HALF_LIFE_MIN.
 */
int64_t scanner_pass_interval_min(int64_t page_tokens, int64_t rate, int64_t half_life_min);

/*
 * The delta page (the "delta" rule, docs/architecture.md "Value per token"): a fresh pass reads
 * only entries whose deal moment (creationDate) is newer than the last pass's, but a product
 * listed days ago for a drop that has since passed keeps that moment while its offers change
 * under it (a cheap Used copy listed again, a Buy Box that rose), and only a full walk of every
 * page would read it again. Before a fresh pass that is not a full walk, the first
 * SCANNER_DELTA_PAGES pages of the same selection sorted by absolute drop (Keepa's sortType 2,
 * biggest first) are read: the dear products with deep drops, where the profit is, whatever
 * their moment (two pages captured 1-4 points more of the bound than one on seeds 1 and 3 of
 * the day benchmark, as much or more on seed 2: bench/README.md, "Top deals and the delta
 * page"). Their entries unchanged since their last peek cost nothing more (`seen`), the
 * pre-score judges the rest at their current prices. The pages come when the last ones began
 * at least the cadence interval of one page before (scanner_pass_interval_min), as a pass of
 * one page would; a full walk reads every page and counts as one.
 */
#define SCANNER_DELTA_SORT  2 /* Keepa's sortType: absolute delta, biggest first */
#define SCANNER_DELTA_PAGES 2 /* pages read from page 0 (a short page ends them) */

/*
 * Whether the fresh pass about to start at NOW_MIN (Keepa minutes) begins with the delta pages:
 * not on a FULL_WALK, and the last ones (or a full walk) began at LAST_MIN (<= 0: none yet) at
 * least INTERVAL_MIN before.
 */
bool scanner_delta_page(int64_t now_min, int64_t last_min, int64_t interval_min, bool full_walk);

/*
 * The first delta page between passes (the "lane" rule, docs/architecture.md "Value per
 * token"): the passes of a 5-a-minute plan come every 30-80 Keepa minutes, as the commits of
 * what each pass found take the tokens first, and a top deal that only the delta pages find
 * waited for the next pass's start (on seed 3 of the day benchmark, 20 of the 43 top-tenth
 * deals stored were first read on a delta page, a median of 28 minutes after the feed listed
 * them, each at the first delta read after it). With the lane, the first delta page is also read
 * at any page boundary and in the pause between passes, once its own cadence interval of one
 * page has passed since it was last read and a page of the pass itself came between; the
 * second comes with the passes as before.
 *
 * What to read before the next page, at NOW_MIN: PAIR_LAST_MIN is when the delta pages of a
 * pass's start (or a full walk) last began, FIRST_LAST_MIN when the first delta page was last
 * read (or a full walk began); <= 0 none. At a PASS_START that is not a FULL_WALK, the pair is
 * due as scanner_delta_page says, less the first page when LANE and it was read within
 * INTERVAL_MIN; with LANE, the first page alone when only it is due. Elsewhere (a page boundary
 * inside a pass, the pause after one), the first page alone when LANE, it is due, and
 * PASS_PAGE_SINCE: a page of the pass itself was read since the first delta page last arrived.
 * So the lane never starves a pass: where a page's peeks take longer than the interval (the rich
 * economy, whose delta page holds a hundred candidates), a first delta page read after every
 * page of the pass's own would be all the scanner reads. *FIRST gets the first delta page to
 * read (0 or 1). Returns how many (0: none).
 */
uint32_t scanner_delta_next(int64_t now_min, int64_t pair_last_min, int64_t first_last_min,
                            int64_t interval_min, bool full_walk, bool pass_start, bool lane,
                            bool pass_page_since, uint32_t *first);

/* Ends C's pass where it stands (a fresh pass that reached its horizon): position 0, pass + 1. */
void scanner_cursor_end_pass(struct scanner_cursor *c);

/* Keepa minutes of refill the committer backlog may need (see scanner_backlog_limit). */
#define SCANNER_BACKLOG_HORIZON_MIN 30

/*
 * The committer backlog discovery may build: the survivors that BALANCE tokens (negative
 * counts as 0) plus RATE tokens a minute for SCANNER_BACKLOG_HORIZON_MIN minutes can fully
 * fetch in batches of BATCH costing BATCH_COST each, at least one batch and at most
 * 4 x BATCH x 10. A survivor that waits longer for its full fetch is more likely to have
 * stopped being a deal, and the full fetch, the dearest request there is, is then paid for a
 * rejection. RATE <= 0 (no reading yet): one batch. BATCH_COST <= 0 (unknown): the most.
 */
int64_t scanner_backlog_limit(int64_t balance, int64_t rate, int64_t batch_cost, int64_t batch);

/*
 * ASINs the next peeks may hold: enough for their expected survivors to fill the backlog
 * (BACKLOG of LIMIT) beside those expected from IN_FLIGHT ASINs being peeked, at the survivor
 * rate PASSED / PEEKED seen so far (Laplace-smoothed, so 1/2 before any peek). 0 while peeks
 * in flight already fill it; at least 1 when none is in flight, so discovery never stops
 * while the committer idles.
 */
int64_t scanner_peek_room(int64_t limit, int64_t backlog, int64_t in_flight, int64_t peeked,
                          int64_t passed);

/*
 * The dear list sources ([scan] source = lightning, bestsellers; docs/keepa-api.md §2.6). One
 * request answers a whole list: every lightning deal running or upcoming (500 tokens), or the
 * best sellers of one category (50 tokens; 0 when Keepa has none). A pass fetches each list
 * once (the lightning list; then each of [scan] bestseller_categories in order), keeps it in
 * memory as entries, and walks it in chunks of SCANNER_LIST_CHUNK entries, each chunk a page
 * of candidates with the same dedup, peek and cursor rules as a /deal page. The cursor holds
 * the list's index and the offset of the next chunk (SCANNER_LIST_POS): it moves past a
 * chunk only once every candidate of it is final, so a failed request or peek is retried and
 * nothing is skipped (docs/failure-modes.md F10). The list is kept in the store as it
 * arrives (scanner_list_encode), so a restarted scanner resumes at the stored offset of the
 * list it paid for instead of buying it again.
 */
#define SCANNER_LIST_CHUNK             150 /* list entries put on the page at a time */
#define SCANNER_LIST_MAX               100000 /* entries kept of one answer; beyond it the rest is not walked */
#define SCANNER_LIST_POS(list, offset) ((uint64_t)(list) << 32 | (uint64_t)(uint32_t)(offset))
#define SCANNER_LIST_OF(pos)           ((uint32_t)((pos) >> 32))
#define SCANNER_OFFSET_OF(pos)         ((uint32_t)(pos))

/* One entry of a list answer: a best seller's ASIN, or a lightning deal and its terms. */
struct scanner_list_entry {
    char asin[ST_ASIN_LEN + 1];
    int8_t state; /* enum kp_ld_state; KP_LD_UNKNOWN for a best seller */
    bool amazon;  /* Amazon runs the deal (its seller id, or a sellerName "Amazon.*") */
    int32_t deal_price_cents, current_price_cents; /* -1 unknown (upcoming, best sellers) */
    int64_t start_min, end_min;                    /* the deal's window; -1 unknown */
    uint64_t hash; /* kept in `seen`: a new deal, or the deal going live, is peeked again */
};

/*
 * Fills OUT from lightning deal LD. The hash covers the deal's id, window, whether it runs
 * and its price, so the same deal is not peeked twice within [scan] dedup_window, and a new
 * deal of the same product (or the deal going live) is. Returns 0, or -EINVAL when LD's ASIN
 * is not 10 characters of [0-9A-Z].
 */
int scanner_lightning_entry(const struct kp_lightning_deal *ld, struct scanner_list_entry *out);

/* Fills OUT for best seller ASIN (no feed data: hash 0). Returns 0 or -EINVAL. */
int scanner_bestseller_entry(const char *asin, struct scanner_list_entry *out);

/*
 * A list as kept in the store (meta SCANNER_META_LIST): which walk, pass and list of it it is,
 * its clock, and its entries. The byte form is fixed (little-endian, versioned), so a list
 * written by another build is read back the same or refused, never misread.
 */
struct scanner_saved_list {
    uint8_t source;        /* enum cfg_scan_source */
    bool truncated;        /* the answer had more than SCANNER_LIST_MAX entries */
    uint32_t pass, index;  /* the cursor's pass and the list's index in the walk */
    uint64_t walk_hash;    /* the source's hash (the cursor's selection_hash) */
    int64_t ref_min;       /* the list's clock: the Keepa minute at SAVED_WALL_MS */
    int64_t saved_wall_ms; /* when it arrived, wall clock */
    size_t n;              /* entries */
};

#define SCANNER_SAVED_HEAD_BYTES  48
#define SCANNER_SAVED_ENTRY_BYTES 44

/* Bytes scanner_list_encode writes for N entries. */
size_t scanner_list_bytes(size_t n);

/* Writes HEAD (its n entries from E) into OUT, which holds scanner_list_bytes(head->n). */
void scanner_list_encode(const struct scanner_saved_list *head, const struct scanner_list_entry *e,
                         uint8_t *out);

/*
 * Reads the head of a saved list (LEN bytes at BUF) into *HEAD. Returns 0, or -EBADMSG when
 * the bytes are not a saved list of this version (or their size does not match their count).
 */
int scanner_list_decode_head(const void *buf, size_t len, struct scanner_saved_list *head);

/* Reads entry I of a saved list whose head decoded (BUF as given to the head's decode). */
void scanner_list_decode_entry(const void *buf, size_t i, struct scanner_list_entry *out);

/*
 * Whether lightning deal E is a candidate at Keepa minute NOW_MIN (the list's own clock: see
 * scanner_list_clock): it runs now (AVAILABLE, WAITLIST, WAITLISTFULL, or a state Keepa adds
 * later while inside its window) or starts within SOON_MIN minutes; SOLDOUT, EXPIRED and
 * SUPPRESSED deals and ended windows are not. Then the discovery filters D that the deal's own
 * data can decide, for free: no_amazon when Amazon runs the deal, and for a New buyer the price
 * range on the deal's prices (a product fails only when every known price of the deal is out
 * of range; an upcoming deal has none, and the peek decides). Rank and category are not in
 * the answer: the peek applies them. Returns true to keep; else *WHY (may be NULL) gets
 * "ended", "sold_out", "not_soon", "amazon" or "price".
 */
bool scanner_lightning_candidate(const struct scanner_list_entry *e, int64_t now_min,
                                 int64_t soon_min, const struct scanner_discovery *d,
                                 const char **why);

/*
 * The Keepa minute now by a list answer's clock: REF_MIN at monotonic REF_NS, advanced by the
 * time since in Keepa minutes of MINUTE_NS ([tokens] minute). The reference is the newest
 * lastUpdate of the list's deals, never later than the answer's own timestamp (a simulator
 * with an accelerated minute keeps its catalog clock behind the wall clock, and a deal's
 * window is on the catalog's clock).
 */
int64_t scanner_list_clock(int64_t ref_min, int64_t ref_ns, int64_t now_ns, int64_t minute_ns);

/*
 * Moves C past a chunk of list LIST_LEN entries that ended before entry NEXT, where a pass
 * walks N_LISTS lists (the lightning list: 1). At the end of a list the cursor goes to the
 * next list's first entry; after the last list the pass ends (position 0, pass + 1: returns
 * true). An empty list (a category Keepa has no best sellers for) is passed at once.
 */
bool scanner_cursor_after_list_chunk(struct scanner_cursor *c, size_t next, size_t list_len,
                                     size_t n_lists);

/*
 * The best-seller lists of config C: the category ids of [scan] bestseller_categories into
 * IDS (at most SCANNER_CATS_MAX; *N gets how many), the range, and the hash the cursor keeps
 * (of the ids in order and the range: a reload that changes either starts a new walk).
 * Returns 0, or -EINVAL for a list config validation would refuse.
 */
int scanner_bestsellers_from_cfg(const struct cfg *c, int64_t ids[SCANNER_CATS_MAX], size_t *n,
                                 int *range, uint64_t *hash);

#endif
