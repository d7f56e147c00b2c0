/*
 * stage.h: the scanner stage (docs/architecture.md, "Processes"): discovery -> free pre-filter ->
 * dedup -> peek in batches -> peek filter -> durable survivors -> rings.
 *
 * All of it runs on the worker's libuv loop, driven by one function (step) that is called
 * after every event (a page or peek answer, a timer, a reload) and does whatever is possible
 * now: fetch the next page, submit peek batches, write the cursor, push ring records. Waits
 * (pass pause, retry backoff, throttling, a store retry) are one uv timer; nothing blocks.
 *
 * Invariants:
 *   - at most one page of candidates is held (SCANNER_PAGE_MAX), plus the ring records not
 *     yet pushed (bounded; discovery pauses while they exist), and, while tokens pile up,
 *     the pass's next /deal page as it arrives (the pipe, scanner/pipe.h): it becomes the
 *     page in memory only when the cursor reaches it, so pages are still deduplicated,
 *     peeked and recorded one at a time and in order;
 *   - the cursor in the meta db moves only after every candidate of its page reached a final
 *     state (peeked and recorded, filtered, or dropped for this pass); a failed page fetch
 *     or peek is retried with backoff, never skipped (docs/failure-modes.md F10);
 *   - a survivor is in `pending` (with its `seen` record, in one write transaction) before it
 *     is pushed to the SURVIVORS ring;
 *   - 429s never reach the stage (spend.h waits for a new grant): a pass ends only on a
 *     short page or the last page (docs/failure-modes.md F9, F11);
 *   - the dear list sources (lightning deals, best-seller lists: scanner/rules.h) hold one
 *     list answer (at most SCANNER_LIST_MAX entries) and walk it in chunks, each a page with
 *     the rules above; their list requests never overdraw the deficit bound (within_deficit)
 *     and are sent once per grant (a failure is retried through the bucket).
 */
#ifndef KD_SCANNER_STAGE_H
#define KD_SCANNER_STAGE_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "worker/spend.h"
#include "worker/rings.h"
#include "worker/worker.h"
#include "scanner/learned.h"
#include "scanner/pipe.h"
#include "scanner/rules.h"
#include "scanner/selection.h"
#include "store/store.h"

#define SCANNER_MAX_BATCHES 2   /* peek requests submitted at once */
#define SCANNER_UNPUSHED    320 /* ring records kept for a retry, per ring */
#define SCANNER_META_CURSOR "scanner.cursor"
#define SCANNER_META_LIST   "scanner.list" /* the list being walked (scanner_list_encode) */
#define SCANNER_CODE_BATCH  20 /* codes per lookup: at most KP_MAX_BATCH products come back */
#define SCANNER_CODE_LIMIT  5  /* products one code may resolve to (code-limit) */
#define SCANNER_META_CODE   "list.code." /* + domain "." code: be64 resolved ms, then ASINs */

struct scanner;

/* One product a peek answered, kept until the batch is written. */
struct scanner_peeked {
    char asin[ST_ASIN_LEN + 1];
    uint16_t cand;       /* the candidate it answers: position in the batch */
    bool deal;           /* the peek's judgement passes (and the discovery filters) */
    bool own_cost;       /* judged at the seller's own cost: stored as a record at once */
    const char *reason;  /* jd_reason or the discovery filter when it does not (static) */
    struct jd_inputs in; /* what the peek read (a listing read: stats, no offers) */
    struct jd_verdict v; /* what the peek concluded */
    char title[KP_TITLE_MAX];
    char category[ST_CATEGORY_NAME_MAX];
};

struct scanner_batch {
    struct scanner *sc;
    bool busy;          /* submitted, or waiting for its store write */
    bool write_pending; /* answered; its results wait for a store write retry */
    bool by_code;       /* the candidates are codes of the seller's list (code= lookup) */
    size_t n;
    uint16_t idx[KP_MAX_BATCH];
    bool got[KP_MAX_BATCH]; /* the candidate at that position was answered */
    size_t n_res;
    struct scanner_peeked res[KP_MAX_BATCH];
    double tokens;
    int64_t peek_ms;
    size_t n_malformed; /* of the not delivered: answered with mistyped fields (for the log) */
};

/* A line of the seller's list in the chunk being peeked ([scan] source = list). */
struct scanner_list_item {
    uint64_t line; /* in the file, from 1 */
    struct scanner_list_line l;
};

/* What a feed page's entries tell as they arrive (the page in memory, or the next one). */
struct scanner_feed {
    size_t prefiltered;
    int64_t oldest_min; /* the oldest and newest deal moment (creationDate) on the page, */
    int64_t newest_min; /* Keepa minutes; 0 when no entry told one */
    int64_t prev_min;   /* the moment of the page's last entry that told one */
    bool disordered;    /* an entry newer than the one before it: not deal-age order */
};

/* One page of the pipe (struct scanner's next[]). */
struct scanner_pipe_slot {
    struct scanner *sc;
    bool active;              /* requested: queued, in flight, or arrived and not taken */
    bool arrived;             /* its answer is complete and good */
    bool taken;               /* start_page() took it in flight: its answer loads the page */
    struct scanner_cursor at; /* the cursor it was fetched for */
    uint64_t hash;            /* source_hash then */
    bool fresh;               /* page_fresh then */
    bool probe;               /* pass_probe then (a fresh pass's) */
    int32_t floor_pct;        /* pass_floor_pct then */
    char *json;
    size_t items, full;
    uint64_t last;
    struct scanner_feed feed;
    struct scanner_page page;
};

struct scanner {
    struct wk *wk;
    struct spend sp;
    bool spend_ok;     /* sp_init succeeded: requests can be made */
    bool key_unusable; /* Keepa said 402: nothing more is requested */
    bool stopping;
    bool throttled; /* discovery paused for the committer's backlog or a full ring */
    int64_t stop_started_ns;
    struct st_env *env;
    uv_timer_t timer;

    int source;            /* enum cfg_scan_source, fixed for the process */
    struct jd_rules rules; /* the judgement's rules (judge/rules.h), renewed on reload */
    uint64_t rules_hash;
    struct scanner_discovery disc; /* the discovery filters, renewed on reload */
    struct scanner_fees *fees;     /* what peeks taught about fees (the pre-score's); may be NULL */
    unsigned value_rules;          /* VAL_RULE_* of [tokens] value_rules, renewed on reload */
    struct scanner_selection sel;
    bool sel_ok;
    uint64_t list_hash; /* asins: hash of the list path */
    bool list_warned;   /* bad lines of the list were reported in a full pass */

    struct scanner_cursor cur; /* as stored (or to be stored) in meta */
    bool cursor_loaded;

    /* The learned low fees and peek outcomes as the store keeps them (scanner/learned.h), and
     * their last save. */
    double *fees_nums;
    double peek_nums[SCANNER_PEEK_NUMS];
    uint32_t fees_saved_n; /* fees->all.n then */
    int64_t fees_saved_ns; /* monotonic */

    /* The page in memory. */
    struct scanner_page page;
    bool page_loaded;   /* candidates are being peeked */
    bool fetching;      /* a page request is queued or in flight */
    size_t page_items;  /* items the source returned for this page (for the short-page rule) */
    size_t page_full;   /* items of a full page of the selection the page was fetched with */
    uint64_t page_last; /* the last page that selection's endpoint serves */
    bool page_eof;      /* asins: the chunk reached the end of the file */
    uint64_t page_next_line;
    struct scanner_feed feed;   /* what the page's entries told as they arrived */
    bool page_fresh;            /* fetched newest first, by the fresh rule (scanner/rules.h) */
    int64_t pass_newest_min;    /* ... the newest of the pass so far */
    int64_t last_newest_min;    /* ... of the last pass over the seller's selection (0: none) */
    bool pass_disordered;       /* a page of the pass was out of order: no early end */
    bool fresh_warned;          /* a page out of order was reported (later ones at debug) */
    int64_t fresh_horizon_min;  /* entries older end a fresh pass; 0: walk every page */
    struct scanner_drops drops; /* the survivors' feed drops: the probe's floor */
    bool pass_probe;            /* this fresh pass is a probe (scanner/rules.h) */
    int32_t pass_floor_pct;     /* ... at this deltaPercent floor */
    int64_t probe_newest_min;   /* the newest deal moment of the last probe (0: none yet) */
    int64_t seller_pass_ns;     /* when the last pass over the seller's selection began; 0 none */
    int64_t pass_start_ns;      /* when this fresh pass began (the cadence rule) */
    uint64_t horizon_pages;     /* pages of the last fresh pass that ended at its horizon */
    uint64_t walk_pages;        /* pages of the last full walk of the seller's selection */
    bool page_delta;            /* the page is a delta page (scanner/rules.h), not the pass's */
    bool pass_delta_done;       /* this pass decided whether it begins with delta pages */
    uint32_t delta_pos;         /* the next delta page */
    uint32_t delta_left;        /* delta pages left to read before the pass's own */
    int64_t delta_last_min;     /* when the last delta pages or full walk began; 0 none */
    int64_t delta_first_min;    /* when the first delta page was last read (or a full walk
                                   began); 0 none */
    bool pass_page_since;       /* a page of the pass itself was read since then (the lane) */
    char *fetch_json;           /* selection of the page being fetched */
    unsigned fetch_failures;
    int64_t fetch_retry_ns;
    /*
     * The pipe: the pass's next /deal pages, fetched while this page's candidates are peeked
     * and committed, so the simulator's (or Keepa's) answer and this stage's work overlap.
     * Only while tokens pile up (scanner_pipe_next); taken by start_page() when the cursor
     * reaches one, dropped (its tokens spent for nothing) when the cursor or the selection
     * went elsewhere meanwhile. SCANNER_PIPE_SLOTS pages at most: a page taken while still in
     * flight keeps its slot until it arrives, and the other slot asks for the page after it,
     * so the server renders one page while this stage decodes the one before.
     */
    struct scanner_pipe_slot next[SCANNER_PIPE_SLOTS];

    /* Peeks. */
    struct scanner_batch batches[SCANNER_MAX_BATCHES];
    unsigned peek_failures;
    int64_t peek_retry_ns;

    /* Store retries (disk full...) and the end of the pass. */
    bool cursor_write_pending;
    int64_t store_retry_ns;
    int64_t pass_resume_ns;

    /* Ring records that did not fit. */
    struct wk_backlog survivors_out, refresh_out;
    int64_t push_retry_ns;

    /* ASIN list reading: where line hint_line starts in the file. */
    uint64_t hint_line;
    long hint_offset;

    /* The seller's list: the lines of the chunk in memory (candidates point at them). */
    size_t n_items;
    struct scanner_list_item items[SCANNER_PAGE_DEALS];

    /* The dear list sources: the answer being walked (scanner/rules.h). */
    struct scanner_list_entry *list; /* malloc'd, list_cap entries */
    size_t list_n, list_cap;
    bool list_loaded;        /* list answers list_index of the walk walk_hash */
    bool list_truncated;     /* the answer had more than SCANNER_LIST_MAX entries */
    bool list_refused;       /* the list's request was refused (cost, 4xx): reported once */
    uint32_t list_index;     /* the category's position (0: the lightning list) */
    uint32_t fetch_index;    /* the list being fetched */
    uint64_t walk_hash;      /* source_hash when the list was fetched */
    size_t walk_lists;       /* lists in that walk */
    size_t list_next;        /* the entry after the chunk on the page */
    int64_t list_newest_min; /* newest lastUpdate of the deals being decoded */
    int64_t list_ref_min;    /* the list's clock: Keepa minute at list_ref_ns */
    int64_t list_ref_ns;
    int64_t bs_ids[SCANNER_CATS_MAX]; /* [scan] bestseller_categories, renewed on reload */
    size_t bs_n;
    int bs_range;
    uint64_t bs_hash;

    /* Per-pass figures for the pass log line. */
    uint64_t pass_pages, pass_discovered, pass_peeked, pass_survivors;
    uint64_t pass_piped; /* pages of the pass taken from the pipe */
    uint64_t pass_bad_lines,
        pass_unresolved;                   /* the seller's list: lines ignored, codes unresolved */
    uint64_t pass_lists, pass_list_tokens; /* list sources: answers and what they cost */
    uint64_t pass_ended;                   /* lightning deals that ended before their peek */
};

#endif
