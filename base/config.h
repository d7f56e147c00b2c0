/*
 * config.h: the kdeals configuration (an INI file read with inih).
 *
 * CFG_KEYS below is the one place a key is declared: its section, name, type, default,
 * bounds, choices, whether a running daemon can take a new value on reload (HUP) or needs a
 * restart, and its help text. The struct, the parser, the validator, cfg_print, the sample
 * file (cfg_write_sample, kdeals.conf.sample) and the msgpack encoding all derive from it,
 * so adding a key is one line here.
 *
 * Value types (the unit a field holds in struct cfg is in its name):
 *   INT       decimal integer                                  -> int64_t  <sec>_<key>
 *   BOOL      true/false, yes/no, on/off, 1/0                  -> bool     <sec>_<key>
 *   DURATION  number with a unit: 250ms, 30s, 15m, 6h, 2d      -> int64_t  <sec>_<key>_ms
 *   PCT       percent with up to 2 decimals: 20, 12.5, 110%    -> int64_t  <sec>_<key>_bp
 *             (basis points: 20 % = 2000 bp)
 *   MONEY     an amount in the marketplace's currency with up to -> int64_t  <sec>_<key>_cents
 *             2 decimals: 5, 5.00, $12.50 (hundredths of the unit: 5.00 = 500; for yen,
 *             whole yen are hundredths too, and judge/rules.c converts)
 *   LIST      comma-separated words from the key's choices, in  -> char[]   <sec>_<key>
 *             order, no repeats ("buy_box, lowest_fba, avg90")
 *   IDS       comma-separated positive integers (category ids)  -> char[]   <sec>_<key>
 *   ENUM      one of the key's choices ("deals|asins|query")   -> int      <sec>_<key>
 *             (the index in the choices string; see the cfg_* enums below)
 *   DOMAIN    a Keepa domain id (1 com, 2 co.uk, 3 de, 4 fr, 5 co.jp, 6 ca, 8 it, 9 es,
 *             10 in, 11 com.mx, 12 com.br) or its name ("com", "de")
 *                                                              -> int64_t  <sec>_<key>
 *   STR       text (surrounding double quotes are removed)     -> char[]   <sec>_<key>
 *   PATH      as STR; a relative path read from a file is made relative to the directory
 *             holding that file, so the daemon does not depend on its working directory
 *   SECRET    as STR, never printed (cfg_print shows <redacted>) and never encoded
 *
 * Errors name the file, the line, the key and the value and say what is allowed:
 *   config: /etc/kdeals.conf:12: [tokens] max_deficit = -5: must be >= 0
 * Unknown sections and keys, a key given twice, malformed lines and lines longer than
 * CFG_LINE_MAX are errors too. Loading is all-or-nothing: on error the output is untouched.
 */
#ifndef KD_CONFIG_H
#define KD_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/*
 * Longest string value (bytes, without the NUL): a path as deep as an operator is likely to
 * need; and the longest line, a key and such a value with room to spare. inih as Debian builds
 * it reads lines of up to 197 characters; longer lines are parsed by config.c itself.
 */
#define CFG_STR_MAX  1023
#define CFG_LINE_MAX (CFG_STR_MAX + 128)

#define CFG_RESTART 0 /* a new value needs `kdeals stop && kdeals start` */
#define CFG_RELOAD  1 /* a running daemon takes the new value on HUP */

#define CFG_MS_S   ((int64_t)1000)
#define CFG_MS_MIN (60 * CFG_MS_S)
#define CFG_MS_H   (60 * CFG_MS_MIN)
#define CFG_MS_D   (24 * CFG_MS_H)

/*
 * X(section, key, type, default, min, max, choices, reload, help)
 * min/max are in the field's unit (ms for DURATION, bp for PCT, bytes for STR length);
 * choices is the "a|b|c" list of an ENUM and NULL otherwise.
 */
#define CFG_KEYS(X)                                                                                \
    X(keepa, base_url, STR, "https://api.keepa.com", 1, CFG_STR_MAX, NULL, CFG_RESTART,            \
      "Keepa API base URL (point it at kdeals-sim, e.g. http://127.0.0.1:8421, for tests)")        \
    X(keepa, key, SECRET, "", 0, CFG_STR_MAX, NULL, CFG_RESTART,                                   \
      "Keepa API key. Prefer key_file; set at most one of the two")                                \
    X(keepa, key_file, PATH, "", 0, CFG_STR_MAX, NULL, CFG_RESTART,                                \
      "file holding the Keepa API key(s), one a line, up to 8 (mode 0600, else refused); "         \
      "requests go to whichever key's bucket grants first")                                        \
    X(keepa, domain, DOMAIN, "1", 1, 12, NULL, CFG_RESTART,                                        \
      "Keepa marketplace: 1 com, 2 co.uk, 3 de, 4 fr, 5 co.jp, 6 ca, 8 it, 9 es, 10 in, "          \
      "11 com.mx, 12 com.br (the number or the name)")                                             \
    X(keepa, connect_timeout, DURATION, "10s", 1 * CFG_MS_S, 5 * CFG_MS_MIN, NULL, CFG_RELOAD,     \
      "TCP+TLS connect timeout")                                                                   \
    X(keepa, request_timeout, DURATION, "120s", 5 * CFG_MS_S, 30 * CFG_MS_MIN, NULL, CFG_RELOAD,   \
      "whole-request timeout (offers requests legitimately take 2-20 s)")                          \
    X(daemon, instance, STR, "default", 1, 32, NULL, CFG_RESTART,                                  \
      "instance name ([A-Za-z0-9_-]): names the shm segment /dev/shm/kdeals-<instance>")           \
    X(daemon, run_dir, PATH, "/run/kdeals", 1, CFG_STR_MAX, NULL, CFG_RESTART,                     \
      "folder for the pid/lock and status files")                                                  \
    X(daemon, log_file, PATH, "", 0, CFG_STR_MAX, NULL, CFG_RELOAD,                                \
      "log file (reopened on USR1); empty = stderr")                                               \
    X(daemon, log_level, ENUM, "info", 0, 3, "error|warn|info|debug", CFG_RELOAD,                  \
      "lines above this level are dropped")                                                        \
    X(daemon, stop_timeout, DURATION, "30s", 1 * CFG_MS_S, 10 * CFG_MS_MIN, NULL, CFG_RELOAD,      \
      "graceful stop deadline before workers are killed")                                          \
    X(store, path, PATH, "/var/lib/kdeals", 1, CFG_STR_MAX, NULL, CFG_RESTART,                     \
      "LMDB environment folder (data.mdb, lock.mdb); created if missing")                          \
    X(store, map_size_mb, INT, "1024", 1, 1048576, NULL, CFG_RESTART,                              \
      "initial LMDB map size in MiB (address space, not disk; grown on demand)")                   \
    X(store, max_map_size_mb, INT, "65536", 1, 1048576, NULL, CFG_RESTART,                         \
      "the map is doubled when full up to this many MiB; beyond it writes fail")                   \
    X(tokens, bucket_minutes, INT, "60", 1, 64, NULL, CFG_RESTART,                                 \
      "the Keepa bucket holds this many minutes of refill (60 on Keepa)")                          \
    X(tokens, max_deficit, INT, "0", 0, 1000000, NULL, CFG_RELOAD,                                 \
      "deepest token balance (as a positive number) a batch may cause; 0 = one batch")             \
    X(tokens, minute, DURATION, "60s", 1, 17 * CFG_MS_MIN, NULL, CFG_RESTART,                      \
      "length of a Keepa minute: 60s against Keepa; shorter only against an accelerated "          \
      "kdeals-sim (--minute-ms)")                                                                  \
    X(tokens, weight, INT, "1", 1, 1000, NULL, CFG_RELOAD,                                         \
      "this instance's share of a key used by several instances on the host, against their "       \
      "weights (the share of one that has no work goes to the others)")                            \
    X(tokens, value_rules, LIST,                                                                   \
      "order, prescore, fees, recheck, gone, busy, fresh, probe, cadence, lowfees, final, age, "   \
      "delta, first, peekrate, lane, budget",                                                      \
      1, CFG_STR_MAX, CFG_VALUE_RULES, CFG_RELOAD,                                                 \
      "the rules of value per token in use (docs/architecture.md, \"The spending policy\"); "      \
      "leave one out to see what it buys (none: arrival order, doubling intervals, fixed pause)")  \
    X(scan, source, ENUM, "deals", 0, 5, "deals|asins|query|list|lightning|bestsellers",           \
      CFG_RESTART,                                                                                 \
      "discovery source: the /deal feed, an ASIN list, a product-finder query, your list of "      \
      "codes "                                                                                     \
      "and costs (list_file), Keepa's lightning deals, or best-seller lists")                      \
    X(scan, selection_file, PATH, "", 0, CFG_STR_MAX, NULL, CFG_RELOAD,                            \
      "JSON selection for /deal or /query (required for query; empty = built-in for deals)")       \
    X(scan, asins_file, PATH, "", 0, CFG_STR_MAX, NULL, CFG_RELOAD,                                \
      "file with one ASIN per line (required for source = asins)")                                 \
    X(scan, list_file, PATH, "", 0, CFG_STR_MAX, NULL, CFG_RELOAD,                                 \
      "CSV of code,cost[,source_url][,note] per line: an ASIN, UPC or EAN and your buy cost per "  \
      "unit (required for source = list; docs/operations.md)")                                     \
    X(scan, list_condition, ENUM, "new", 0, 4, "new|like_new|very_good|good|acceptable",           \
      CFG_RELOAD, "the condition you buy the list's items in (judged against that side)")          \
    X(scan, bestseller_categories, IDS, "", 0, CFG_STR_MAX, NULL, CFG_RELOAD,                      \
      "category ids (root, sub-category or leaf) whose best-seller lists are walked in this "      \
      "order, one /bestsellers request (50 tokens) each per pass (required for source = "          \
      "bestsellers)")                                                                              \
    X(scan, bestseller_range, INT, "0", 0, 180, NULL, CFG_RELOAD,                                  \
      "best-seller lists by the current sales rank (0) or its 30-, 90- or 180-day average")        \
    X(scan, lightning_soon, DURATION, "1h", 0, 1 * CFG_MS_D, NULL, CFG_RELOAD,                     \
      "source = lightning: an upcoming lightning deal is a candidate once it starts within this "  \
      "time (running deals always are)")                                                           \
    X(scan, max_rank, INT, "0", 0, 1000000000, NULL, CFG_RELOAD,                                   \
      "discovery: only products with a sales rank of at most this (0 = off): in the /deal and "    \
      "product-finder selections and again at the peek")                                           \
    X(scan, categories, IDS, "", 0, CFG_STR_MAX, NULL, CFG_RELOAD,                                 \
      "discovery: only these root categories (empty = all)")                                       \
    X(scan, exclude_categories, IDS, "", 0, CFG_STR_MAX, NULL, CFG_RELOAD,                         \
      "discovery: never these root categories")                                                    \
    X(scan, no_amazon, BOOL, "false", 0, 1, NULL, CFG_RELOAD,                                      \
      "discovery: skip products Amazon itself sells or holds the Buy Box of")                      \
    X(scan, min_price, MONEY, "0", 0, 100000000, NULL, CFG_RELOAD,                                 \
      "discovery: only products you can buy for at least this (0 = off)")                          \
    X(scan, max_price, MONEY, "0", 0, 100000000, NULL, CFG_RELOAD,                                 \
      "discovery: ... and at most this (0 = off)")                                                 \
    X(scan, peek_batch, INT, "50", 1, 50, NULL, CFG_RELOAD, "ASINs per peek request (1..50)")      \
    X(scan, peek_offers, INT, "0", 0, 100, NULL, CFG_RELOAD,                                       \
      "offers per peek: 0 (none, cheapest) or 20..100")                                            \
    X(scan, pass_pause, DURATION, "5m", 0, 1 * CFG_MS_D, NULL, CFG_RELOAD,                         \
      "pause between the end of a discovery pass and the start of the next; over the deal feed "   \
      "it ends early while tokens pile up unspent (value rules busy and fresh)")                   \
    X(scan, dedup_window, DURATION, "24h", 0, 30 * CFG_MS_D, NULL, CFG_RELOAD,                     \
      "an ASIN peeked within this window and unchanged in the feed is not peeked again")           \
    X(commit, batch, INT, "5", 1, 5, NULL, CFG_RELOAD, "ASINs per full fetch (1..5)")              \
    X(commit, linger_ms, INT, "1000", 0, 60000, NULL, CFG_RELOAD,                                  \
      "a partial batch waits at most this long for more survivors")                                \
    X(commit, offers, INT, "20", 20, 100, NULL, CFG_RELOAD, "offers per full fetch (20..100)")     \
    X(commit, history, BOOL, "true", 0, 1, NULL, CFG_RELOAD,                                       \
      "request the csv price history with the full fetch")                                         \
    X(commit, days, INT, "365", 0, 36500, NULL, CFG_RELOAD,                                        \
      "limit the history to this many days (0 = all)")                                             \
    X(update, batch, INT, "50", 1, 50, NULL, CFG_RELOAD, "ASINs per light update (1..50)")         \
    X(update, min_interval, DURATION, "10m", 1 * CFG_MS_MIN, 30 * CFG_MS_D, NULL, CFG_RELOAD,      \
      "a deal is re-checked no sooner than this after its last check")                             \
    X(update, max_interval, DURATION, "24h", 1 * CFG_MS_MIN, 90 * CFG_MS_D, NULL, CFG_RELOAD,      \
      "a deal is re-checked no later than this after its last check (>= min_interval)")            \
    X(update, expire_after_failures, INT, "3", 1, 100, NULL, CFG_RELOAD,                           \
      "a deal is removed after this many consecutive re-checks that found it no longer a deal "    \
      "(fetch errors never count)")                                                                \
    X(store, keep_rejected, DURATION, "30d", 1 * CFG_MS_H, 3650 * CFG_MS_D, NULL, CFG_RELOAD,      \
      "a judged product that is not a deal is kept (for a re-judge at zero tokens) this long "     \
      "after its last check, then pruned")                                                         \
    X(filter, buy_condition, ENUM, "used_then_new", 0, 3, "used_then_new|used|new|new_then_used",  \
      CFG_RELOAD, "which condition to buy: the cheapest Used offer, else New (or the variants)")   \
    X(filter, min_roi_pct, PCT, "25", -10000, 1000000, NULL, CFG_RELOAD,                           \
      "a deal needs at least this ROI (profit / landed buy cost)")                                 \
    X(filter, min_profit, MONEY, "5.00", -100000000, 100000000, NULL, CFG_RELOAD,                  \
      "... and at least this profit per unit after every fee and cost")                            \
    X(filter, min_sell, MONEY, "12.00", 0, 100000000, NULL, CFG_RELOAD,                            \
      "... and a sell price of at least this")                                                     \
    X(filter, min_rank_drops_365, INT, "1", 0, 100000, NULL, CFG_RELOAD,                           \
      "... and at least this many sales-rank drops in a year (0 = off)")                           \
    X(filter, max_rank, INT, "0", 0, 1000000000, NULL, CFG_RELOAD,                                 \
      "... and a sales rank of at most this (0 = off)")                                            \
    X(filter, unknown, ENUM, "fail", 0, 1, "fail|pass", CFG_RELOAD,                                \
      "what a criterion whose input Keepa did not give counts as, at every stage")                 \
    X(filter, near_roi_pts, PCT, "10", 0, 1000000, NULL, CFG_RELOAD,                               \
      "a product failing only ROI and/or profit by at most this many ROI points ...")              \
    X(filter, near_profit, MONEY, "2.00", 0, 100000000, NULL, CFG_RELOAD,                          \
      "... and this much profit is 'near' a deal (kdeals deals --verdict near)")                   \
    X(sell, basis_new, LIST, "buy_box, lowest_fba, avg90", 1, CFG_STR_MAX, CFG_SELL_BASES,         \
      CFG_RELOAD, "sell price of a New buy: the first of these with a value")                      \
    X(sell, basis_used, LIST, "buy_box, lowest_fba, avg90", 1, CFG_STR_MAX, CFG_SELL_BASES,        \
      CFG_RELOAD, "sell price of a Used buy: the first of these Used bases with a value")          \
    X(sell, cap_at_buy_box, BOOL, "true", 0, 1, NULL, CFG_RELOAD,                                  \
      "never sell above the current Buy Box of the buy's condition")                               \
    X(sell, amazon_cap, PCT, "90", 0, 10000, NULL, CFG_RELOAD,                                     \
      "never sell above this share of Amazon's own price when Amazon sells it (0 = off)")          \
    X(sell, max_sell, MONEY, "0", 0, 100000000, NULL, CFG_RELOAD,                                  \
      "never sell above this (0 = off)")                                                           \
    X(costs, fulfilment, ENUM, "fba", 0, 1, "fba|fbm", CFG_RELOAD,                                 \
      "fba: Amazon ships (FBA fee, inbound shipping); fbm: you ship (fbm_shipping)")               \
    X(costs, prep, MONEY, "1.00", 0, 1000000, NULL, CFG_RELOAD, "prep cost per unit")              \
    X(costs, inbound_shipping, MONEY, "0.75", 0, 1000000, NULL, CFG_RELOAD,                        \
      "shipping to the FBA warehouse per unit")                                                    \
    X(costs, tax_pct, PCT, "0", 0, 10000, NULL, CFG_RELOAD,                                        \
      "sales tax paid on the buy price and its shipping")                                          \
    X(costs, default_fba_fee, MONEY, "3.65", 0, 1000000, NULL, CFG_RELOAD,                         \
      "FBA fee when Keepa has none for the product (docs/judgement.md: source and date)")          \
    X(costs, default_referral_pct, PCT, "15", 0, 10000, NULL, CFG_RELOAD,                          \
      "referral fee when Keepa has no referralFeePercentage")                                      \
    X(costs, referral_min, MONEY, "0.30", 0, 1000000, NULL, CFG_RELOAD,                            \
      "least referral fee per unit outside media categories")                                      \
    X(costs, closing_fee, MONEY, "1.80", 0, 1000000, NULL, CFG_RELOAD,                             \
      "closing fee per unit in media categories (when Keepa has no variableClosingFee)")           \
    X(costs, media_categories, IDS, "283155, 5174, 2625373011, 468642, 229534", 0, CFG_STR_MAX,    \
      NULL, CFG_RELOAD, "root categories that pay the closing fee (amazon.com's media roots)")     \
    X(costs, fbm_shipping, MONEY, "4.50", 0, 1000000, NULL, CFG_RELOAD,                            \
      "your shipping cost per unit when fulfilment = fbm")                                         \
    X(web, listen, STR, "", 0, 64, NULL, CFG_RESTART,                                              \
      "the web dashboard and JSON API: PORT (on 127.0.0.1), IP:PORT or [IPv6]:PORT (port 0: any "  \
      "free one, shown by kdeals status); empty = off; beyond loopback it needs token_file")       \
    X(web, token_file, PATH, "", 0, CFG_STR_MAX, NULL, CFG_RESTART,                                \
      "file (mode 0600) holding the bearer token every API request must send; required when "      \
      "listen is not a loopback address")                                                          \
    X(web, max_connections, INT, "64", 4, 1024, NULL, CFG_RESTART,                                 \
      "open HTTP connections at most (half of them from one client address)")                      \
    X(mirror, postgres, STR, "", 0, CFG_STR_MAX, NULL, CFG_RELOAD,                                 \
      "PostgreSQL to mirror every record into (docs/mirror.md): a conninfo without a password, "   \
      "or a file holding one (mode 0600 if it has a password); empty = no mirror")                 \
    X(mirror, instance, STR, "", 0, 63, NULL, CFG_RESTART,                                         \
      "this instance's name in the database, unique among the instances mirroring into it; "       \
      "empty = <hostname>/<[daemon] instance>")                                                    \
    X(mirror, batch, INT, "500", 1, 10000, NULL, CFG_RELOAD,                                       \
      "changes written to the database per transaction")                                           \
    X(mirror, retry_max, DURATION, "1m", 1 * CFG_MS_S, 1 * CFG_MS_H, NULL, CFG_RELOAD,             \
      "while the database is unreachable, the wait between attempts doubles from 1 s up to this")  \
    X(mirror, keep_changes, DURATION, "30d", 1 * CFG_MS_H, 3650 * CFG_MS_D, NULL, CFG_RELOAD,      \
      "rows of the database's changes table older than this are deleted")

/*
 * Named sections: [KIND.NAME], several of one kind, each a set of keys that the module owning
 * KIND reads (a view preset [view.optimal], an alert rule [alert.NAME], ...). X(kind, help,
 * example): KIND is the prefix, HELP one line for the sample file, EXAMPLE the lines the sample
 * shows commented out. Adding a kind is one line here plus its checker (struct
 * cfg_named_checker) at the load sites: `kdeals` (cli/) and the supervisor's reload, which gets
 * the checkers from cli/ through its options, so base/ and the supervisor link nothing of the
 * owning module.
 *
 * The loader keeps a named section's keys as text with their lines: it checks the section
 * header (a known KIND, a NAME of 1..31 letters, digits, '_' or '-', each section once) and
 * that no key is given twice in one section; what the keys mean is the checker's
 * (cfg_named_check), whose messages carry the same file:line as the loader's.
 */
#define CFG_NAMED_KINDS(X)                                                                         \
    X(view,                                                                                        \
      "a named view for `kdeals deals --view NAME`: the filters and sorts of kdeals deals, "       \
      "written without the dashes (docs/view.md)",                                                 \
      "[view.optimal]\nmin_roi = 30\nmin_profit = 5.00\nmax_rank = 200000\nno_amazon = true\n"     \
      "sort = monthly\n")                                                                          \
    X(alert,                                                                                       \
      "an alert: each deal entering a view, once, to a webhook or a command, retried, "            \
      "rate-limited (docs/alerts.md)",                                                             \
      "[alert.team]\nview = optimal\nurl = https://hooks.slack.com/services/T000/B000/XXXX\n"      \
      "format = slack\nquiet = 24h\nrate = 20\n")

#define CFG_NAMED_MAX      32    /* named sections in one config */
#define CFG_NAMED_KEYS_MAX 512   /* keys of all named sections together */
#define CFG_NAMED_TEXT_MAX 16384 /* bytes of those keys and values (with their NULs) */
#define CFG_NAME_MAX       32    /* bytes of a NAME, with the NUL */

enum cfg_named_kind {
#define CFG_X_KIND(kind, help, example) CFG_NAMED_##kind,
    CFG_NAMED_KINDS(CFG_X_KIND)
#undef CFG_X_KIND
        CFG_NAMED_KIND_COUNT
};

/* One named section: its keys are named_keys[first_key .. first_key + n_keys). */
struct cfg_named {
    uint8_t kind; /* enum cfg_named_kind */
    char name[CFG_NAME_MAX];
    int32_t line; /* of its [KIND.NAME] header; 0 when not read from a file */
    uint16_t first_key, n_keys;
};

/* One key of a named section: offsets of its NUL-terminated key and value in named_text. */
struct cfg_named_key {
    uint16_t key_off, value_off;
    int32_t line;
};

/* The rules of value per token, in the order of worker/value.h's VAL_RULE_* bits from 0 (none). */
#define CFG_VALUE_RULES                                                                            \
    "none|order|drop|prescore|recheck|gone|busy|fees|fresh|budget|probe|cadence|lowfees|final|"    \
    "age|"                                                                                         \
    "delta|first|peekrate|lane"

/* The sell bases, in the order of enum jd_basis from 1 (judge/judge.h). */
#define CFG_SELL_BASES "buy_box|lowest_fba|avg90|avg180|avg365|avg90_365|current"

/* Index of each key in CFG_KEYS: CFG_K_scan_peek_batch. */
enum cfg_key_id {
#define CFG_X_ID(sec, key, type, def, min, max, choices, reload, help) CFG_K_##sec##_##key,
    CFG_KEYS(CFG_X_ID)
#undef CFG_X_ID
        CFG_KEY_COUNT
};

/* ENUM values, in the order of their choices strings (test_config checks the order). */
enum cfg_log_level { CFG_LOG_ERROR, CFG_LOG_WARN, CFG_LOG_INFO, CFG_LOG_DEBUG };
enum cfg_scan_source {
    CFG_SOURCE_DEALS,
    CFG_SOURCE_ASINS,
    CFG_SOURCE_QUERY,
    CFG_SOURCE_LIST,
    CFG_SOURCE_LIGHTNING,
    CFG_SOURCE_BESTSELLERS
};
enum cfg_buy_condition { CFG_BUY_USED_THEN_NEW, CFG_BUY_USED, CFG_BUY_NEW, CFG_BUY_NEW_THEN_USED };
enum cfg_unknown { CFG_UNKNOWN_FAIL, CFG_UNKNOWN_PASS };
enum cfg_fulfilment { CFG_FULFIL_FBA, CFG_FULFIL_FBM };

enum cfg_type {
    CFG_T_INT,
    CFG_T_BOOL,
    CFG_T_DURATION,
    CFG_T_PCT,
    CFG_T_ENUM,
    CFG_T_DOMAIN,
    CFG_T_STR,
    CFG_T_PATH,
    CFG_T_SECRET,
    CFG_T_MONEY,
    CFG_T_LIST,
    CFG_T_IDS
};

#define CFG_FIELD_INT(name)      int64_t name;
#define CFG_FIELD_BOOL(name)     bool name;
#define CFG_FIELD_DURATION(name) int64_t name##_ms;
#define CFG_FIELD_PCT(name)      int64_t name##_bp;
#define CFG_FIELD_ENUM(name)     int name;
#define CFG_FIELD_DOMAIN(name)   int64_t name;
#define CFG_FIELD_STR(name)      char name[CFG_STR_MAX + 1];
#define CFG_FIELD_PATH(name)     char name[CFG_STR_MAX + 1];
#define CFG_FIELD_SECRET(name)   char name[CFG_STR_MAX + 1];
#define CFG_FIELD_MONEY(name)    int64_t name##_cents;
#define CFG_FIELD_LIST(name)     char name[CFG_STR_MAX + 1];
#define CFG_FIELD_IDS(name)      char name[CFG_STR_MAX + 1];

/*
 * The effective configuration. Plain data: copy it with `=`, compare with cfg_diff. The
 * fields are generated from CFG_KEYS (e.g. scan_peek_batch, update_min_interval_ms,
 * filter_min_roi_pct_bp, keepa_key).
 */
struct cfg {
#define CFG_X_FIELD(sec, key, type, def, min, max, choices, reload, help)                          \
    CFG_FIELD_##type(sec##_##key)
    CFG_KEYS(CFG_X_FIELD)
#undef CFG_X_FIELD
    /* True when [keepa] key or key_file is set (kept in the encoding; the key is not). */
    bool keepa_key_set;
    /* The file this config was loaded from ("" for defaults or a buffer without a path). */
    char source_path[CFG_STR_MAX + 1];
    /* Deprecated keys met while loading, one line each ("" none; not encoded). */
    char warnings[1024];
    /* The named sections in file order (CFG_NAMED_KINDS; read them with cfg_named_*). */
    uint16_t n_named, n_named_keys;
    uint32_t named_text_used;
    struct cfg_named named[CFG_NAMED_MAX];
    struct cfg_named_key named_keys[CFG_NAMED_KEYS_MAX];
    char named_text[CFG_NAMED_TEXT_MAX];
};

/* Description of one key, from CFG_KEYS. */
struct cfg_key {
    const char *section;
    const char *name;
    enum cfg_type type;
    const char *default_text;
    int64_t min, max;
    const char *choices; /* "a|b|c" for ENUM, else NULL */
    bool reloadable;
    const char *help;
    size_t offset; /* of the field in struct cfg */
};

/* The key table (CFG_KEY_COUNT entries, in CFG_KEYS order). Never fails. */
const struct cfg_key *cfg_keys(void);

/* Finds a key by section and name; NULL if there is none. */
const struct cfg_key *cfg_key_find(const char *section, const char *name);

/*
 * Converts a duration of Keepa time (an interval of the config, in ms of a real Keepa minute)
 * to local milliseconds under C's [tokens] minute: the identity against Keepa (60 s), and
 * 600 times shorter against a kdeals-sim whose minute lasts 100 ms. Every stage schedules its
 * intervals through this, so an accelerated run keeps Keepa's proportions. Never below 1.
 */
int64_t cfg_keepa_ms(const struct cfg *c, int64_t keepa_ms);

/* True when NAME is a valid [daemon] instance name: 1 to 32 of [A-Za-z0-9_-]. */
bool cfg_instance_valid(const char *name);

/* Fills OUT with every key's default. The defaults are valid (test_config checks it). */
void cfg_defaults(struct cfg *out);

/*
 * Loads and validates the INI file at PATH over the defaults. Returns 0 and fills OUT, or
 * returns -EINVAL (bad content) or a negative errno from opening/reading the file, writes a
 * one-line message to ERR (size ERRLEN, always NUL-terminated when ERRLEN > 0) and leaves
 * OUT untouched. Relative PATH/file values are resolved against the file's directory. The
 * message never contains the API key.
 */
int cfg_load_file(const char *path, struct cfg *out, char *err, size_t errlen);

/*
 * As cfg_load_file for an in-memory buffer BUF of LEN bytes (need not be NUL-terminated;
 * a NUL byte inside is an error). NAME is used in messages (and as source_path); relative
 * paths are kept as written. Returns 0 or -EINVAL (or -ENOMEM).
 */
int cfg_load_buffer(const char *buf, size_t len, const char *name, struct cfg *out, char *err,
                    size_t errlen);

/*
 * Checks every value against its bounds and the rules between keys (key vs key_file,
 * min_interval <= max_interval, ...). Returns 0, or -EINVAL with a message in ERR.
 */
int cfg_validate(const struct cfg *c, char *err, size_t errlen);

/*
 * Writes the value of K in C as it would appear in the INI file (a secret is written as
 * "<redacted>" when set). Returns the length snprintf would have produced.
 */
int cfg_format_value(const struct cfg *c, const struct cfg_key *k, char *buf, size_t len);

/*
 * Prints the effective config as INI, one section after the other. A set API key appears
 * only as the comment "# key = <redacted>", so the output, used as a config file, loads the
 * same config minus the key.
 */
void cfg_print(const struct cfg *c, FILE *out);

/*
 * Splits the LIST or IDS value TEXT into at most MAX items: a LIST item's index in CHOICES
 * (0-based), an IDS item's number. Returns the number of items, or -EINVAL (with WHY).
 */
int cfg_list_parse(const char *text, const char *choices, int64_t *out, size_t max, char *why,
                   size_t whylen);

/* Writes the sample config file: every key commented with its help, default and bounds. */
void cfg_write_sample(FILE *out);

/*
 * Calls CHANGED(key, ud) for each key whose value differs between A and B, in table order,
 * and returns how many did. *RESTART_NEEDED (if not NULL) is set to true when one of them
 * is restart-only, else false. CHANGED may be NULL. The named sections of a kind count as one
 * reloadable key when any of them differs; its cfg_key names section "KIND.*", key "*".
 */
size_t cfg_diff(const struct cfg *a, const struct cfg *b,
                void (*changed)(const struct cfg_key *key, void *ud), void *ud,
                bool *restart_needed);

/* ---- named sections ---- */

/* The word of kind KIND ("view"), or NULL out of range. */
const char *cfg_named_kind_name(unsigned kind);

/* The kind called WORD (enum cfg_named_kind), or -1. */
int cfg_named_kind_find(const char *word);

/* The named section [KIND.NAME] of C, or NULL. */
const struct cfg_named *cfg_named_find(const struct cfg *c, unsigned kind, const char *name);

/* Key I (< S->n_keys) of named section S of C: its KEY, VALUE and LINE (any may be NULL). */
void cfg_named_key(const struct cfg *c, const struct cfg_named *s, size_t i, const char **key,
                   const char **value, int *line);

/*
 * What a named kind's keys mean, supplied by the module that reads them. CHECK_KEY returns 0
 * when KEY = VALUE is valid in section [KIND.NAME] of C (C gives the context, e.g. [keepa]
 * domain for money), -ENOENT for a key the kind does not have (WHY lists the known ones), or
 * -EINVAL with WHY saying what the key allows. WHY has WHYLEN bytes.
 */
struct cfg_named_checker {
    unsigned kind; /* enum cfg_named_kind */
    int (*check_key)(const struct cfg *c, const char *name, const char *key, const char *value,
                     char *why, size_t whylen);
};

/*
 * Checks every key of every named section of C with the checker of its kind among CHK[0..N)
 * (a kind without a checker is not checked). Returns 0, or -EINVAL with the first error in ERR
 * in the loader's form: "config: FILE:LINE: [view.optimal] min_roi = abc: a percent, e.g. 25"
 * or "config: FILE:LINE: [view.optimal] min_margin: unknown key (known: ...)".
 */
int cfg_named_check(const struct cfg *c, const struct cfg_named_checker *const *chk, size_t n,
                    char *err, size_t errlen);

/*
 * Serialises C as a msgpack map {"v": 1, "<section>.<key>": value, ..., "keepa.key_set":
 * bool, "source_path": str, "named": [[kind, name, line, [[key, value, line], ...]], ...]} into a
 * malloc'd buffer (*BUF, *LEN; the caller frees it). The API key is NOT written (the shm segment
 * must never hold it). Returns 0 or -ENOMEM.
 */
int cfg_encode(const struct cfg *c, char **buf, size_t *len);

/*
 * Parses bytes written by cfg_encode. Any input is safe: truncated, garbage, an unknown or
 * missing key, a wrong type or an out-of-bounds value returns -EBADMSG (or -ENOMEM) and
 * leaves OUT untouched. On success OUT->keepa_key is empty (base/key.h loads keys).
 */
int cfg_decode(const void *buf, size_t len, struct cfg *out);

#endif
