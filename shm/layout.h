/*
 * layout.h: every struct that lives in shared memory, and nothing else.
 *
 * Two kinds of segment. The instance segment: one per instance, /dev/shm/kdeals-<instance>,
 * mode 0600, created by the supervisor and mapped read-write by the workers and read-only by
 * `kdeals stat`/`status` (struct shm_layout). The key segment: one per Keepa API key on the host,
 * /dev/shm/kdeals-key-<fingerprint>, mode 0600, shared by every instance that uses the key
 * (struct shm_key_layout, shm/keyseg.h): the key's token bucket lives there. All fields have
 * fixed widths; fields written by different processes sit on their own cache lines; sizes and
 * offsets are pinned by _Static_assert so a layout change is one visible diff. Any change to
 * a struct here (or to counters.def) must bump SHM_LAYOUT_VERSION in the same diff: a reader
 * of another version refuses to attach rather than misread.
 *
 * Segment map (offsets from the start of the mapping):
 *
 *     struct shm_layout    fixed part: header, config slot, the instance's keys (by
 *                          fingerprint), process table, counters, the web role's address
 *     ring data areas      SHM_RING_COUNT power-of-two byte arrays, each 4 KiB aligned
 *
 * The header's layout_version is written last, with release order: a reader that sees 0 is
 * looking at a segment still being initialised and must wait or retry.
 */
#ifndef KD_SHM_LAYOUT_H
#define KD_SHM_LAYOUT_H

#include <stdalign.h>
#include <stddef.h>
#include <stdint.h>

#define SHM_MAGIC          0x4d48534c41454b44ULL /* "DKEALSHM" little-endian */
#define SHM_KEY_MAGIC      0x59454b534c41454bULL /* "KEALSKEY" little-endian */
#define SHM_LAYOUT_VERSION 12u
#define SHM_CACHELINE      64
#define SHM_INSTANCE_MAX   48
#define SHM_CONFIG_MAX     65536
#define SHM_MESSAGE_MAX    256
#define SHM_HIST_BUCKETS   64
#define SHM_KEYS_MAX       8  /* keys an instance uses (base/key.h KD_KEYS_MAX) */
#define SHM_KEY_FP_MAX     24 /* a key's fingerprint (16 hex characters) and its NUL, padded */
#define SHM_KEY_MEMBERS    16 /* instances that can share one key at a time */

/*
 * The enums of the segment and the names operators see for them (status, stat, logs) are
 * declared together: X(ID, "name", ...), in value order. shm/segment.h turns the names into
 * shm_role_name(), shm_proc_state_name() and shm_ring_name().
 */

/* Process roles; each owns one process-table slot and one counter block. The web role and the
 * outbox run only when configured; their slots stay empty otherwise. */
#define SHM_ROLES(X)                                                                               \
    X(SUPERVISOR, "supervisor")                                                                    \
    X(SCANNER, "scanner")                                                                          \
    X(COMMITTER, "committer")                                                                      \
    X(UPDATER, "updater")                                                                          \
    X(WEB, "web")                                                                                  \
    X(OUTBOX, "outbox")

enum shm_role {
#define SHM_ROLE_ENUM(id, name) SHM_ROLE_##id,
    SHM_ROLES(SHM_ROLE_ENUM)
#undef SHM_ROLE_ENUM
        SHM_ROLE_COUNT
};

/* The roles that always run: the supervisor and the pipeline's stages. The roles after them
 * run only when the config asks for them (the web role: [web] listen; the outbox: [mirror] or
 * alerts). */
#define SHM_PIPELINE_ROLES (SHM_ROLE_UPDATER + 1)

/*
 * The rings between the workers (docs/architecture.md, "Rings"). Each has one producer and
 * one consumer: X(ID, "name", producer role, consumer role, depth gauge in counters.def).
 */
#define SHM_RINGS(X)                                                                               \
    /* peeked survivors to commit */                                                               \
    X(SURVIVORS, "survivors", SCANNER, COMMITTER, ring_depth_survivors)                            \
    /* stored deals that need full data */                                                         \
    X(RECOMMIT, "recommit", UPDATER, COMMITTER, ring_depth_recommit)                               \
    /* peeked ASINs that are stored deals */                                                       \
    X(REFRESH, "refresh", SCANNER, UPDATER, ring_depth_refresh)

enum shm_ring_id {
#define SHM_RING_ENUM(id, ...) SHM_RING_##id,
    SHM_RINGS(SHM_RING_ENUM)
#undef SHM_RING_ENUM
        SHM_RING_COUNT
};

/* ---- header ---------------------------------------------------------------------------- */

struct shm_header {
    uint64_t magic;
    _Atomic uint32_t layout_version; /* written last (release); 0 = being initialised */
    uint32_t fixed_size;             /* sizeof(struct shm_layout) */
    uint64_t segment_size;           /* whole mapping, rings included */
    uint64_t generation;             /* bumped on every supervisor start */
    int64_t supervisor_pid;
    int64_t start_time_ms;    /* wall clock, epoch ms */
    _Atomic uint32_t retired; /* set by a successor before it unlinks this segment */
    uint32_t ring_count;
    uint64_t ring_data_offset[SHM_RING_COUNT];
    uint64_t ring_capacity[SHM_RING_COUNT];
    char instance[SHM_INSTANCE_MAX];
    /* The supervisor's start time in /proc/PID/stat (clock ticks since boot): with the pid, the
     * identity of the supervisor process. Last, so the fields above keep their offsets in the
     * header of an older layout that a new supervisor retires. */
    uint64_t supervisor_start_ticks;
};

/* ---- config slot ----------------------------------------------------------------------- */

/*
 * The validated config, serialised (msgpack), double-buffered. The supervisor (the only
 * writer) fills buf[(generation + 1) & 1], then stores generation + 1 with release order.
 * A reader loads generation (acquire), copies buf[generation & 1], and retries if generation
 * changed meanwhile. The buffers are words accessed with relaxed atomics (a seqlock's copy may
 * overlap a write it then discards; plain bytes would make that a data race). The API key is
 * never stored here.
 *
 * Reload verdicts: `kdeals reload` bumps reload_request; the supervisor validates, publishes
 * or rejects, writes reload_result and reload_message, then sets reload_done to the request
 * number it answered.
 *
 * Re-judge report: when a published config changes the judgement's rules, the updater judges
 * every stored record again from its stored inputs (no tokens) and reports here: it writes the
 * figures, then rejudge_state 2 (done) with release order, for the config generation in
 * rejudge_generation; `kdeals reload` waits for it and prints what moved.
 */
#define SHM_REJUDGE_REASONS 8 /* >= JD_C_COUNT (judge/judge.h) */
struct shm_config_slot {
    alignas(SHM_CACHELINE) _Atomic uint64_t generation;
    _Atomic uint32_t len[2];
    _Atomic uint64_t reload_request;
    _Atomic uint64_t reload_done;
    _Atomic int32_t reload_result; /* 0 applied, 1 applied except restart-only keys, <0 rejected */
    uint32_t reserved;
    char reload_message[SHM_MESSAGE_MAX];
    alignas(SHM_CACHELINE) _Atomic uint64_t rejudge_generation; /* config generation; 0 none */
    _Atomic uint32_t rejudge_state;                             /* 0 none, 1 running, 2 done */
    uint32_t rejudge_reserved;
    _Atomic int64_t rejudge_records;      /* records judged again */
    _Atomic int64_t rejudge_deals_before; /* deals before it */
    _Atomic int64_t rejudge_deals_after;
    _Atomic int64_t rejudge_added;                           /* not a deal before, a deal now */
    _Atomic int64_t rejudge_removed;                         /* a deal before, not now */
    _Atomic int64_t rejudge_removed_by[SHM_REJUDGE_REASONS]; /* by first failing criterion */
    alignas(SHM_CACHELINE) _Atomic uint64_t buf[2][SHM_CONFIG_MAX / 8];
};

_Static_assert(SHM_CONFIG_MAX % 8 == 0, "config buffers are whole words");

/* ---- token bucket (shm/tokens.h; docs/architecture.md, "Tokens") ----------------------- */
/* BEGIN tokens: this block is owned by shm/tokens.c. */

/*
 * The shared token bucket (shm/tokens.h has the design). `state` is the only word on the hot
 * path: balance, trusted refill rate and the next refill tick, packed and updated by CAS.
 * The constants block is written once by tb_init before `initialised` is set (release) and
 * never changes afterwards. The reading block is written only by the holder of reading_lock
 * (a try-lock that never makes anyone wait). Reservation slots are owner-tagged; their word
 * packs owner id, generation and state so a slot can never be granted or freed twice.
 */
#define SHM_TOKEN_SLOTS 64
#define SHM_TOKEN_KINDS 12 /* room for enum tb_kind (shm/tokens.c asserts it) */

struct shm_token_slot {
    _Atomic uint64_t word;         /* owner id << 32 | generation << 2 | state */
    _Atomic int64_t amount_tokens; /* reserved, still to be accounted by a reading */
    _Atomic int64_t granted_ns;    /* monotonic time of the grant */
    _Atomic int64_t reserved;
};

struct shm_token_cost {
    _Atomic int64_t milli_per_unit; /* learned cost of one ASIN (or page, seller), milli-tokens */
    _Atomic uint64_t samples;       /* responses learned from */
};

struct shm_tokens {
    alignas(SHM_CACHELINE) _Atomic uint64_t state; /* the bucket word updated by CAS */
    _Atomic int64_t touched_ms; /* latest monotonic ms at which `state` was written */
    alignas(SHM_CACHELINE) _Atomic uint32_t initialised; /* TB magic once constants are set */
    uint32_t reserved0;
    int64_t minute_ns;          /* length of a Keepa minute (constant) */
    int64_t bucket_minutes;     /* cap = rate x bucket_minutes (constant) */
    int64_t max_deficit_tokens; /* constant */
    int64_t initial_rate;       /* guess used before the first reading (constant) */
    int64_t stale_ns;           /* a reading older than this warrants a /token call */
    int64_t init_ns;
    alignas(SHM_CACHELINE) _Atomic uint64_t reading_lock; /* 0, or owner id of the applier */
    _Atomic int64_t reading_lock_ns;
    _Atomic int64_t last_reading_ns;   /* local monotonic time the last reading was applied */
    _Atomic int64_t last_timestamp_ms; /* server timestamp of that reading */
    _Atomic int64_t last_tokens_left_milli;
    _Atomic int64_t last_refill_in_ms;
    _Atomic int64_t last_refill_rate; /* as reported (not necessarily trusted) */
    _Atomic int64_t last_tokens_consumed;
    _Atomic int64_t rate_candidate;          /* a higher rate seen, not yet trusted */
    _Atomic int64_t rate_candidate_seen;     /* consecutive readings that reported it */
    _Atomic int64_t rate_candidate_since_ns; /* when the first of them was applied */
    _Atomic int64_t status_claim_ns;         /* last time a process claimed the /token call */
    _Atomic uint64_t readings_applied;
    _Atomic uint64_t readings_ignored;
    /* The newest server timestamp of a reading refused because another was being applied
     * (INT64_MIN none since the last reading applied), and the latest local time of such a
     * refusal: its request is settled all the same, so older readings must stay refused. */
    _Atomic int64_t busy_timestamp_ms;
    _Atomic int64_t busy_reading_ns;
    alignas(SHM_CACHELINE) _Atomic uint64_t grants;
    _Atomic uint64_t granted_tokens;
    _Atomic uint64_t writeoffs;
    _Atomic int64_t writeoff_tokens; /* reserved by dead owners, counted as charged */
    alignas(SHM_CACHELINE) struct shm_token_cost costs[SHM_TOKEN_KINDS];
    alignas(SHM_CACHELINE) struct shm_token_slot slots[SHM_TOKEN_SLOTS];
};

_Static_assert(sizeof(struct shm_token_slot) == 32, "token slot is 32 bytes");
_Static_assert(offsetof(struct shm_tokens, state) == 0, "bucket word first");
_Static_assert(offsetof(struct shm_tokens, initialised) == SHM_CACHELINE,
               "bucket word alone on its cache line");
_Static_assert(offsetof(struct shm_tokens, reading_lock) % SHM_CACHELINE == 0,
               "reading block on its own cache line");
_Static_assert(offsetof(struct shm_tokens, grants) % SHM_CACHELINE == 0, "stats aligned");
_Static_assert(offsetof(struct shm_tokens, costs) % SHM_CACHELINE == 0, "costs aligned");
_Static_assert(offsetof(struct shm_tokens, slots) % SHM_CACHELINE == 0, "slots aligned");
_Static_assert(sizeof(struct shm_tokens) == 40 * SHM_CACHELINE, "token bucket is 40 lines");

/* END tokens */

/* ---- process table --------------------------------------------------------------------- */

/* The state a process publishes in its slot: X(ID, "name"). */
#define SHM_PROC_STATES(X)                                                                         \
    X(EMPTY, "empty")                                                                              \
    X(STARTING, "starting")                                                                        \
    X(READY, "ready")                                                                              \
    X(WAITING_TOKENS, "waiting-tokens")                                                            \
    X(STOPPING, "stopping")                                                                        \
    X(EXITED, "exited")

enum shm_proc_state {
#define SHM_PROC_STATE_ENUM(id, name) SHM_PROC_##id,
    SHM_PROC_STATES(SHM_PROC_STATE_ENUM)
#undef SHM_PROC_STATE_ENUM
        SHM_PROC_STATE_COUNT
};

struct shm_proc_slot {
    alignas(SHM_CACHELINE) _Atomic int64_t pid;
    _Atomic uint32_t state; /* enum shm_proc_state */
    _Atomic uint32_t restarts;
    _Atomic int64_t started_ms;       /* wall clock */
    _Atomic int64_t heartbeat_ms;     /* wall clock, written by the process itself */
    _Atomic int32_t last_exit_status; /* wait status of the previous incarnation, -1 none */
    uint32_t reserved;
    char last_error[SHM_MESSAGE_MAX];
};

/* ---- counters (shm/counters.def) ------------------------------------------------------- */

enum shm_counter_kind { SHM_COUNTER, SHM_GAUGE, SHM_HISTOGRAM };

/* Every entry of counters.def gets an id; histograms get a second, dense id. */
enum shm_counter_id {
#define KD_COUNTER(name, kind, help) SHM_C_##name,
#include "shm/counters.def"
#undef KD_COUNTER
    SHM_COUNTER_COUNT
};

enum shm_hist_id {
#define KD_COUNTER(name, kind, help) SHM_H_##name = SHM_C_##name,
#include "shm/counters.def"
#undef KD_COUNTER
};

struct shm_histogram {
    _Atomic uint64_t buckets[SHM_HIST_BUCKETS]; /* bucket i counts values in [2^(i-1), 2^i) */
    _Atomic uint64_t count;
    _Atomic uint64_t sum;
};

/*
 * One block per role. Only that role's process writes it (single writer: relaxed stores
 * suffice); readers load with relaxed order and tolerate a value one update old. A
 * histogram slot exists for every entry so ids stay dense; only HISTOGRAM entries use it.
 */
struct shm_counter_block {
    alignas(SHM_CACHELINE) _Atomic int64_t values[SHM_COUNTER_COUNT];
    alignas(SHM_CACHELINE) struct shm_histogram hist[SHM_COUNTER_COUNT];
};

/* ---- rings (shm/ring.h) ---------------------------------------------------------------- */

/*
 * Control block of one single-producer single-consumer byte ring. Positions are 64-bit byte
 * counts that never wrap; the data offset is position & (capacity - 1). The producer owns
 * `tail` (published with release after the record is written), the consumer owns `head`
 * (everything before it has been acknowledged) and `consumer_sleeping`.
 */
struct shm_ring {
    alignas(SHM_CACHELINE) _Atomic uint64_t tail;
    _Atomic int64_t producer_pid;
    _Atomic uint64_t records_written;
    _Atomic uint64_t wakeups_sent;
    alignas(SHM_CACHELINE) _Atomic uint64_t head;
    _Atomic uint32_t consumer_sleeping;
    uint32_t reserved;
    _Atomic int64_t consumer_pid;
    _Atomic uint64_t records_read;
    alignas(SHM_CACHELINE) uint64_t capacity; /* bytes, power of two; written once at creation */
    uint64_t max_record;                      /* largest payload accepted */
    uint64_t data_offset;                     /* of the data area from the segment start */
};

/* ---- the web role ---------------------------------------------------------------------- */

/*
 * Where the web role (web/web.h) listens, for `kdeals status` and tests: it writes host, then
 * port with release order once it is listening (port 0 again when it stops). Only it writes.
 */
struct shm_web {
    alignas(SHM_CACHELINE) _Atomic uint32_t port; /* 0: not listening */
    uint32_t reserved;
    char host[48]; /* "127.0.0.1", "::1", "0.0.0.0" */
};

/* ---- the keys of the instance (shm/keyseg.h) --------------------------------------------- */

/* What an instance knows of one of its keys: X(ID, "name"). A key set aside is not used again
 * until the instance restarts. */
#define SHM_KEY_STATES(X)                                                                          \
    X(OK, "ok")                                                                                    \
    X(REJECTED, "rejected") /* Keepa answered 400 with a zeroed envelope: not a valid key */       \
    X(EXPIRED, "expired")   /* Keepa answered 402: the key has no access */

enum shm_key_state {
#define SHM_KEY_STATE_ENUM(id, name) SHM_KEY_##id,
    SHM_KEY_STATES(SHM_KEY_STATE_ENUM)
#undef SHM_KEY_STATE_ENUM
        SHM_KEY_STATE_COUNT
};

/*
 * One key of the instance, by fingerprint (never the key): the supervisor writes the
 * fingerprints before it publishes the segment; a worker that finds the key unusable sets
 * state (release) after message and set_aside_ms, and every worker of the instance stops using
 * it. The key's bucket is in its own segment, found by the fingerprint.
 */
struct shm_key_ref {
    alignas(SHM_CACHELINE) char fingerprint[SHM_KEY_FP_MAX];
    _Atomic uint32_t state; /* enum shm_key_state */
    uint32_t reserved;
    _Atomic int64_t set_aside_ms; /* wall clock */
    char message[SHM_MESSAGE_MAX / 2];
};

/* ---- the fixed part of the segment ----------------------------------------------------- */

struct shm_layout {
    alignas(SHM_CACHELINE) struct shm_header header;
    struct shm_config_slot config;
    struct shm_key_ref keys[SHM_KEYS_MAX];
    _Atomic uint32_t n_keys; /* written before the segment is published */
    struct shm_proc_slot procs[SHM_ROLE_COUNT];
    struct shm_ring rings[SHM_RING_COUNT];
    struct shm_counter_block counters[SHM_ROLE_COUNT];
    struct shm_web web;
};

_Static_assert(sizeof(_Atomic uint64_t) == 8, "64-bit atomics must be plain 8-byte words");
_Static_assert(offsetof(struct shm_header, magic) == 0, "magic first");
_Static_assert(offsetof(struct shm_header, layout_version) == 8, "layout version at offset 8");
_Static_assert(sizeof(struct shm_header) <= 256, "header fits in 256 bytes");
_Static_assert(offsetof(struct shm_layout, config) % SHM_CACHELINE == 0, "config aligned");
_Static_assert(offsetof(struct shm_layout, keys) % SHM_CACHELINE == 0, "keys aligned");
_Static_assert(sizeof(struct shm_key_ref) == 3 * SHM_CACHELINE, "a key ref is three lines");
_Static_assert(offsetof(struct shm_layout, procs) % SHM_CACHELINE == 0, "procs aligned");
_Static_assert(offsetof(struct shm_layout, rings) % SHM_CACHELINE == 0, "rings aligned");
_Static_assert(offsetof(struct shm_layout, counters) % SHM_CACHELINE == 0, "counters aligned");
_Static_assert(offsetof(struct shm_layout, web) % SHM_CACHELINE == 0, "web block aligned");
_Static_assert(sizeof(struct shm_proc_slot) % SHM_CACHELINE == 0, "one proc slot per line set");
_Static_assert(offsetof(struct shm_ring, head) - offsetof(struct shm_ring, tail) >= SHM_CACHELINE,
               "ring head and tail on separate cache lines");
_Static_assert(offsetof(struct shm_ring, capacity) - offsetof(struct shm_ring, head) >=
                   SHM_CACHELINE,
               "ring consumer fields and constants on separate cache lines");
_Static_assert(sizeof(struct shm_ring) == 3 * SHM_CACHELINE, "ring control is three lines");
_Static_assert(sizeof(struct shm_counter_block) % SHM_CACHELINE == 0, "counter blocks aligned");
_Static_assert(sizeof(struct shm_layout) < (1u << 20), "fixed part stays under 1 MiB");

/* ---- the key segment (shm/keyseg.h; docs/architecture.md, "Tokens") ----------------------- */

/*
 * One per API key on the host, shared by every instance that uses the key. The header is
 * written by the creator before layout_version (release); the bucket's constants by tb_init
 * before that. Each instance holds one member slot while it runs: its supervisor claims it
 * (word = owner pid << 32 | generation << 2 | state, by CAS) and fills it; the instance's
 * workers account their grants and charges in it. A slot whose owner is dead is freed by
 * whoever notices (ks_sweep). Totals are per key for the life of the segment.
 */
struct shm_key_header {
    uint64_t magic;
    _Atomic uint32_t layout_version; /* written last (release); 0 = being initialised */
    uint32_t fixed_size;             /* sizeof(struct shm_key_layout) */
    int64_t created_ms;              /* wall clock */
    int64_t creator_pid;
    char fingerprint[SHM_KEY_FP_MAX];
};

struct shm_key_member {
    alignas(SHM_CACHELINE) _Atomic uint64_t word; /* owner pid << 32 | generation << 2 | state */
    _Atomic int64_t weight;                       /* [tokens] weight of the instance, >= 1 */
    _Atomic int64_t used_tokens;     /* share account: charged (estimate until answered) */
    _Atomic int64_t active_until_ns; /* CLOCK_MONOTONIC: has work until then */
    _Atomic int64_t joined_ms;       /* wall clock */
    _Atomic uint64_t grants;
    _Atomic int64_t spent_tokens; /* charged, as the answers said */
    _Atomic int64_t lost_tokens;  /* estimates of requests that may have been charged unanswered */
    _Atomic uint64_t instance_hash; /* of the name: what lookups compare (the text is for people) */
    int64_t reserved;
    char instance[SHM_INSTANCE_MAX];
};

struct shm_key_layout {
    alignas(SHM_CACHELINE) struct shm_key_header header;
    struct shm_tokens tokens;
    struct shm_key_member members[SHM_KEY_MEMBERS];
    alignas(SHM_CACHELINE) _Atomic int64_t spent_tokens; /* every member's, since creation */
    _Atomic int64_t lost_tokens;
    _Atomic uint64_t members_swept; /* member slots of dead instances freed */
    _Atomic int64_t sweep_ns;       /* when the last sweep ran (one at a time suffices) */
};

_Static_assert(offsetof(struct shm_key_header, magic) == 0, "key magic first");
_Static_assert(offsetof(struct shm_key_header, layout_version) == 8, "key layout version at 8");
_Static_assert(sizeof(struct shm_key_header) <= SHM_CACHELINE, "key header is one line");
_Static_assert(offsetof(struct shm_key_layout, tokens) == SHM_CACHELINE, "bucket after header");
_Static_assert(sizeof(struct shm_key_member) == 2 * SHM_CACHELINE, "a member is two lines");
_Static_assert(offsetof(struct shm_key_layout, members) % SHM_CACHELINE == 0, "members aligned");
_Static_assert(offsetof(struct shm_key_layout, spent_tokens) % SHM_CACHELINE == 0,
               "key totals aligned");
_Static_assert(sizeof(struct shm_key_layout) < (1u << 16), "a key segment stays small");

#endif
