/*
 * test_config.c: the INI config (base/config.c): defaults, every key, bounds and their
 * messages, malformed input, rules between keys, reload diff, printing, the sample file and
 * the msgpack form published through shm (which must never hold the API key).
 */
#include "kd_test.h"

#include "base/config.h"
#include "base/web.h"

#include <errno.h>
#include <inttypes.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Writes TEXT to <tmpdir>/NAME and returns the path (static buffer per call site). */
static const char *write_file(const char *name, const char *text)
{
    static char paths[8][512];
    static unsigned next;
    char *path = paths[next++ % 8];
    snprintf(path, 512, "%s/%s", kd_test_tmpdir(), name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    chmod(path, 0600); /* as an operator's file holding a key should be */
    return path;
}

/* Loads TEXT as a file; returns the result code and leaves the message in ERR. */
static int load_text(const char *text, struct cfg *out, char *err, size_t errlen,
                     const char **path_out)
{
    const char *path = write_file("kdeals.conf", text);
    if (path_out != NULL)
        *path_out = path;
    return cfg_load_file(path, out, err, errlen);
}

static void expect_error(const char *text, int line, const char *fragment)
{
    struct cfg c;
    char err[512] = "", want[600];
    const char *path = NULL;
    int rc = load_text(text, &c, err, sizeof(err), &path);
    if (rc != -EINVAL)
        fail_msg("expected -EINVAL for:\n%s\ngot %d (%s)", text, rc, err);
    if (line > 0)
        snprintf(want, sizeof(want), "config: %s:%d: ", path, line);
    else
        snprintf(want, sizeof(want), "config: %s: ", path);
    if (strncmp(err, want, strlen(want)) != 0)
        fail_msg("message '%s' does not start with '%s'", err, want);
    if (strstr(err, fragment) == NULL)
        fail_msg("message '%s' does not contain '%s'", err, fragment);
}

static void test_defaults_valid(void **state)
{
    (void)state;
    struct cfg c;
    char err[256] = "";
    cfg_defaults(&c);
    assert_int_equal(cfg_validate(&c, err, sizeof(err)), 0);
    /* The defaults the issue asks for. */
    assert_int_equal(c.scan_peek_batch, 50);
    assert_int_equal(c.scan_peek_offers, 0);
    assert_int_equal(c.commit_batch, 5);
    assert_int_equal(c.commit_offers, 20);
    assert_int_equal(c.update_batch, 50);
    assert_int_equal(c.filter_buy_condition, CFG_BUY_USED_THEN_NEW);
    assert_string_equal(c.sell_basis_used, "buy_box, lowest_fba, avg90");
    assert_int_equal(c.filter_min_rank_drops_365, 1);
    assert_int_equal(c.filter_min_sell_cents, 1200);
    assert_int_equal(c.filter_min_profit_cents, 500);
    assert_int_equal(c.sell_amazon_cap_bp, 9000);
    assert_int_equal(c.costs_default_fba_fee_cents, 365);
    assert_int_equal(c.costs_closing_fee_cents, 180);
    assert_int_equal(c.filter_unknown, CFG_UNKNOWN_FAIL);
    assert_int_equal(c.tokens_max_deficit, 0);
    assert_int_equal(c.tokens_bucket_minutes, 60);
    assert_int_equal(c.update_min_interval_ms, 600 * 1000);
    assert_string_equal(
        c.tokens_value_rules,
        "order, prescore, fees, recheck, gone, busy, fresh, probe, cadence, lowfees, final, age, "
        "delta, first, peekrate, lane, budget");
    assert_int_equal(c.daemon_log_level, CFG_LOG_INFO);
    assert_string_equal(c.keepa_base_url, "https://api.keepa.com");
    assert_false(c.keepa_key_set);
    /* An empty file gives the defaults. */
    struct cfg f;
    assert_int_equal(load_text("", &f, err, sizeof(err), NULL), 0);
    assert_int_equal(cfg_diff(&c, &f, NULL, NULL, NULL), 0);
}

static void test_enum_order(void **state)
{
    (void)state;
    const struct cfg_key *k = cfg_keys();
    assert_string_equal(k[CFG_K_daemon_log_level].choices, "error|warn|info|debug");
    assert_string_equal(k[CFG_K_scan_source].choices,
                        "deals|asins|query|list|lightning|bestsellers");
    assert_string_equal(k[CFG_K_scan_list_condition].choices,
                        "new|like_new|very_good|good|acceptable");
    assert_string_equal(k[CFG_K_filter_buy_condition].choices,
                        "used_then_new|used|new|new_then_used");
    /* LIST choices are enum jd_basis from 1 (judge/rules.c relies on it). */
    assert_string_equal(k[CFG_K_sell_basis_new].choices,
                        "buy_box|lowest_fba|avg90|avg180|avg365|avg90_365|current");
    struct cfg c;
    char err[256];
    assert_int_equal(load_text("[scan]\nsource = query\nselection_file = /q.json\n"
                               "[daemon]\nlog_level = debug\n"
                               "[filter]\nbuy_condition = new_then_used\nunknown = pass\n",
                               &c, err, sizeof(err), NULL),
                     0);
    assert_int_equal(c.scan_source, CFG_SOURCE_QUERY);
    assert_int_equal(c.daemon_log_level, CFG_LOG_DEBUG);
    assert_int_equal(c.filter_buy_condition, CFG_BUY_NEW_THEN_USED);
    assert_int_equal(c.filter_unknown, CFG_UNKNOWN_PASS);
    assert_int_equal(load_text("[scan]\nsource = bestsellers\nbestseller_categories = 283155, "
                               "2831551\nbestseller_range = 90\nlightning_soon = 30m\n",
                               &c, err, sizeof(err), NULL),
                     0);
    assert_int_equal(c.scan_source, CFG_SOURCE_BESTSELLERS);
    assert_string_equal(c.scan_bestseller_categories, "283155, 2831551");
    assert_int_equal(c.scan_bestseller_range, 90);
    assert_int_equal(c.scan_lightning_soon_ms, 30 * CFG_MS_MIN);
    assert_int_equal(load_text("[scan]\nsource = lightning\n", &c, err, sizeof(err), NULL), 0);
    assert_int_equal(c.scan_source, CFG_SOURCE_LIGHTNING);
    /* Every key has a unique (section, name) and a help text. */
    for (size_t i = 0; i < CFG_KEY_COUNT; i++) {
        assert_ptr_equal(cfg_key_find(k[i].section, k[i].name), &k[i]);
        assert_true(strlen(k[i].help) > 5);
    }
}

/* Every key set to a non-default value; in total every key but one of key/key_file. */
static const char every_key[] = "; a comment\n"
                                "# another\n"
                                "[keepa]\n"
                                "base_url = http://127.0.0.1:8421\n"
                                "key_file = key.txt\n"
                                "domain = de\n"
                                "connect_timeout = 5s\n"
                                "request_timeout = 3m\n"
                                "\n"
                                "[daemon]\n"
                                "  instance = prod-2   ; indented, inline comment\n"
                                "run_dir = /tmp/run\n"
                                "log_file = log/kdeals.log\n"
                                "log_level = warn\n"
                                "stop_timeout = 1500ms\n"
                                "[store]\n"
                                "path = \"/var/db/kd\"\n"
                                "map_size_mb = 64\n"
                                "max_map_size_mb = 128\n"
                                "keep_rejected = 7d\n"
                                "[tokens]\n"
                                "bucket_minutes = 30\n"
                                "max_deficit = 200\n"
                                "minute = 100ms\n"
                                "weight = 3\n"
                                "value_rules = none\n"
                                "[scan]\n"
                                "source = asins\n"
                                "selection_file = /sel.json\n"
                                "asins_file = /asins.txt\n"
                                "list_file = /list.csv\n"
                                "list_condition = good\n"
                                "bestseller_categories = 283155, 2831551\n"
                                "bestseller_range = 30\n"
                                "lightning_soon = 2h\n"
                                "max_rank = 250000\n"
                                "categories = 283155, 5174\n"
                                "exclude_categories = 2625373011\n"
                                "no_amazon = yes\n"
                                "min_price = 2\n"
                                "max_price = 40.50\n"
                                "peek_batch = 1\n"
                                "peek_offers = 20\n"
                                "pass_pause = 0\n"
                                "dedup_window = 2d\n"
                                "[commit]\n"
                                "batch = 3\n"
                                "linger_ms = 250\n"
                                "offers = 100\n"
                                "history = no\n"
                                "days = 90\n"
                                "[update]\n"
                                "batch = 10\n"
                                "min_interval = 30m\n"
                                "max_interval = 12h\n"
                                "expire_after_failures = 2\n"
                                "[filter]\n"
                                "buy_condition = used\n"
                                "min_roi_pct = 30.25\n"
                                "min_profit = -1.00\n"
                                "min_sell = $15\n"
                                "min_rank_drops_365 = 0\n"
                                "max_rank = 500000\n"
                                "unknown = pass\n"
                                "near_roi_pts = 5\n"
                                "near_profit = 1.5\n"
                                "[sell]\n"
                                "basis_new = buy_box\n"
                                "basis_used = avg180, current\n"
                                "cap_at_buy_box = false\n"
                                "amazon_cap = 85\n"
                                "max_sell = 99.99\n"
                                "[costs]\n"
                                "fulfilment = fbm\n"
                                "prep = 0\n"
                                "inbound_shipping = 1.20\n"
                                "tax_pct = 7.5\n"
                                "default_fba_fee = 4\n"
                                "default_referral_pct = 8\n"
                                "referral_min = 0.25\n"
                                "closing_fee = 1.35\n"
                                "media_categories = 283155\n"
                                "fbm_shipping = 3.99\n"
                                "[web]\n"
                                "listen = 0.0.0.0:8480\n"
                                "token_file = web.token\n"
                                "max_connections = 16\n"
                                "[mirror]\n"
                                "postgres = host=db.example dbname=deals user=kdeals\n"
                                "instance = shop-eu\n"
                                "batch = 100\n"
                                "retry_max = 5m\n"
                                "keep_changes = 7d\n";

static void test_every_key_parsed(void **state)
{
    (void)state;
    struct cfg def, c;
    char err[512] = "";
    const char *path = NULL;
    cfg_defaults(&def);
    int rc = load_text(every_key, &c, err, sizeof(err), &path);
    if (rc != 0)
        fail_msg("%s", err);
    assert_int_equal(cfg_diff(&def, &c, NULL, NULL, NULL), CFG_KEY_COUNT - 1);
    assert_string_equal(c.keepa_base_url, "http://127.0.0.1:8421");
    assert_int_equal(c.keepa_domain, 3);
    assert_int_equal(c.keepa_connect_timeout_ms, 5000);
    assert_int_equal(c.keepa_request_timeout_ms, 180000);
    assert_string_equal(c.daemon_instance, "prod-2");
    assert_int_equal(c.daemon_stop_timeout_ms, 1500);
    assert_int_equal(c.tokens_minute_ms, 100);
    assert_int_equal(c.tokens_weight, 3);
    assert_string_equal(c.tokens_value_rules, "none");
    assert_string_equal(c.store_path, "/var/db/kd");
    assert_int_equal(c.scan_max_rank, 250000);
    assert_string_equal(c.scan_categories, "283155, 5174");
    assert_true(c.scan_no_amazon);
    assert_int_equal(c.scan_min_price_cents, 200);
    assert_int_equal(c.scan_max_price_cents, 4050);
    assert_int_equal(c.scan_list_condition, 3);
    assert_string_equal(c.scan_bestseller_categories, "283155, 2831551");
    assert_int_equal(c.scan_bestseller_range, 30);
    assert_int_equal(c.scan_lightning_soon_ms, 2 * CFG_MS_H);
    assert_int_equal(c.scan_source, CFG_SOURCE_ASINS);
    assert_int_equal(c.scan_dedup_window_ms, 2 * 86400 * 1000LL);
    assert_false(c.commit_history);
    assert_int_equal(c.update_max_interval_ms, 12 * 3600 * 1000LL);
    assert_int_equal(c.filter_min_sell_cents, 1500);
    assert_int_equal(c.filter_near_profit_cents, 150);
    assert_string_equal(c.sell_basis_used, "avg180, current");
    assert_int_equal(c.sell_max_sell_cents, 9999);
    assert_int_equal(c.costs_fulfilment, CFG_FULFIL_FBM);
    assert_int_equal(c.costs_inbound_shipping_cents, 120);
    assert_string_equal(c.costs_media_categories, "283155");
    assert_int_equal(c.filter_min_profit_cents, -100);
    assert_int_equal(c.filter_min_roi_pct_bp, 3025);
    assert_int_equal(c.costs_tax_pct_bp, 750);
    assert_int_equal(c.costs_default_referral_pct_bp, 800);
    assert_true(c.keepa_key_set);
    assert_string_equal(c.web_listen, "0.0.0.0:8480");
    assert_int_equal(c.web_max_connections, 16);
    assert_string_equal(c.mirror_postgres, "host=db.example dbname=deals user=kdeals");
    assert_string_equal(c.mirror_instance, "shop-eu");
    assert_int_equal(c.mirror_retry_max_ms, 300000);

    /* Relative paths are relative to the file's folder; source_path is absolute. */
    char *dir = realpath(kd_test_tmpdir(), NULL);
    char want[1024];
    snprintf(want, sizeof(want), "%s/key.txt", dir);
    assert_string_equal(c.keepa_key_file, want);
    snprintf(want, sizeof(want), "%s/log/kdeals.log", dir);
    assert_string_equal(c.daemon_log_file, want);
    snprintf(want, sizeof(want), "%s/kdeals.conf", dir);
    assert_string_equal(c.source_path, want);
    free(dir);

    /* The inline key instead of key_file is the remaining key. */
    assert_int_equal(load_text("[keepa]\nkey = abcdef0123456789\n", &c, err, sizeof(err), NULL), 0);
    assert_string_equal(c.keepa_key, "abcdef0123456789");
    assert_true(c.keepa_key_set);
}

/* Formats V in the syntax of K (bounds in messages and test inputs). */
static void fmt_raw(const struct cfg_key *k, int64_t v, char *buf, size_t len)
{
    if (k->type == CFG_T_DURATION)
        snprintf(buf, len, "%" PRId64 "ms", v);
    else if (k->type == CFG_T_PCT || k->type == CFG_T_MONEY)
        snprintf(buf, len, "%s%" PRId64 ".%02" PRId64, v < 0 ? "-" : "", (v < 0 ? -v : v) / 100,
                 (v < 0 ? -v : v) % 100);
    else
        snprintf(buf, len, "%" PRId64, v);
}

static bool in_rule(size_t id)
{
    return id == CFG_K_store_map_size_mb || id == CFG_K_store_max_map_size_mb ||
           id == CFG_K_update_min_interval || id == CFG_K_update_max_interval;
}

/* Keys of earlier versions keep working: read into their successor, with a warning that says
 * what to write instead; keys that are gone are ignored with a warning. */
static void test_deprecated_keys(void **state)
{
    (void)state;
    struct cfg c;
    char err[512] = "";
    int rc = load_text("[filter]\nbuy_price = new\nmin_profit_cents = 750\nmin_sell_cents = 900\n"
                       "sell_estimate = used_avg90_365\nmax_buy_pct = 110\n"
                       "[costs]\nprep_cents = 50\ndefault_fba_fee_cents = 300\n",
                       &c, err, sizeof(err), NULL);
    if (rc != 0)
        fail_msg("%s", err);
    assert_int_equal(c.filter_buy_condition, CFG_BUY_NEW);
    assert_int_equal(c.filter_min_profit_cents, 750);
    assert_int_equal(c.filter_min_sell_cents, 900);
    assert_string_equal(c.sell_basis_used, "avg90_365");
    assert_int_equal(c.costs_prep_cents, 50);
    assert_int_equal(c.costs_default_fba_fee_cents, 300);
    assert_non_null(strstr(c.warnings, "[filter] min_profit_cents is deprecated: read as [filter] "
                                       "min_profit = 7.50"));
    assert_non_null(strstr(c.warnings, "[filter] max_buy_pct is no longer used"));
    /* An old key and its successor both set: given twice. */
    rc =
        load_text("[filter]\nmin_profit_cents = 750\nmin_profit = 2\n", &c, err, sizeof(err), NULL);
    assert_int_equal(rc, -EINVAL);
    assert_non_null(strstr(err, "given twice"));
    /* A value the old key never took. */
    rc = load_text("[filter]\nmin_profit_cents = 7.5\n", &c, err, sizeof(err), NULL);
    assert_int_equal(rc, -EINVAL);
    assert_non_null(strstr(err, "use [filter] min_profit"));
}

/* MONEY, LIST and IDS values: what they accept and the errors for what they do not. */
static void test_money_and_lists(void **state)
{
    (void)state;
    struct cfg c;
    char err[512] = "";
    static const struct {
        const char *text;
        int rc;
        const char *want;
    } cases[] = {
        {"[filter]\nmin_profit = 5\n", 0, NULL},
        {"[filter]\nmin_profit = 5.5\n", 0, NULL},
        {"[filter]\nmin_profit = \xe2\x82\xac"
         "3.20\n",
         0, NULL},
        {"[filter]\nmin_profit = 5.555\n", -EINVAL, "at most 2 decimals"},
        {"[filter]\nmin_profit = 5%\n", -EINVAL, "at most 2 decimals"},
        {"[filter]\nmin_sell = -1\n", -EINVAL, "must be >= 0.00"},
        {"[sell]\nbasis_used = buy_box, avg90, buy_box\n", -EINVAL, "listed twice"},
        {"[sell]\nbasis_used = avg91\n", -EINVAL, "'avg91' is not one of"},
        {"[sell]\nbasis_used = avg90,,avg365\n", -EINVAL, "empty item"},
        {"[sell]\nbasis_used =\n", -EINVAL, "must not be empty"},
        {"[costs]\nmedia_categories = 283155, x\n", -EINVAL, "'x' is not a positive integer"},
        {"[costs]\nmedia_categories =\n", 0, NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        err[0] = '\0';
        int rc = load_text(cases[i].text, &c, err, sizeof(err), NULL);
        if (rc != cases[i].rc)
            fail_msg("case %zu (%s): rc %d, want %d: %s", i, cases[i].text, rc, cases[i].rc, err);
        if (cases[i].want != NULL && strstr(err, cases[i].want) == NULL)
            fail_msg("case %zu: '%s' does not say '%s'", i, err, cases[i].want);
    }
    assert_int_equal(load_text("[filter]\nmin_profit = 12.5\n", &c, err, sizeof(err), NULL), 0);
    assert_int_equal(c.filter_min_profit_cents, 1250);
    char buf[64];
    cfg_format_value(&c, &cfg_keys()[CFG_K_filter_min_profit], buf, sizeof(buf));
    assert_string_equal(buf, "12.50");
    int64_t items[8];
    assert_int_equal(cfg_list_parse(" avg90 ,current", CFG_SELL_BASES, items, 8, err, sizeof(err)),
                     2);
    assert_int_equal(items[0], 2);
    assert_int_equal(items[1], 6);
}

static void test_bounds_enforced(void **state)
{
    (void)state;
    const struct cfg_key *keys = cfg_keys();
    size_t checked = 0;
    for (size_t i = 0; i < CFG_KEY_COUNT; i++) {
        const struct cfg_key *k = &keys[i];
        if (k->type != CFG_T_INT && k->type != CFG_T_DURATION && k->type != CFG_T_PCT &&
            k->type != CFG_T_DOMAIN && k->type != CFG_T_MONEY)
            continue;
        char text[256], v[64];
        struct cfg c;
        char err[512];
        /* One below the minimum and one above the maximum are errors at line 3. */
        fmt_raw(k, k->min - 1, v, sizeof(v));
        snprintf(text, sizeof(text), "# bounds\n[%s]\n%s = %s\n", k->section, k->name, v);
        expect_error(text, 3, k->min - 1 < 0 && k->type == CFG_T_DURATION ? "duration" : "must be");
        fmt_raw(k, k->max + 1, v, sizeof(v));
        snprintf(text, sizeof(text), "# bounds\n[%s]\n%s = %s\n", k->section, k->name, v);
        expect_error(text, 3, "must be");
        /* The bounds themselves are accepted. */
        if (!in_rule(i)) {
            fmt_raw(k, k->min, v, sizeof(v));
            snprintf(text, sizeof(text), "[%s]\n%s = %s\n", k->section, k->name, v);
            if (load_text(text, &c, err, sizeof(err), NULL) != 0)
                fail_msg("min of %s.%s refused: %s", k->section, k->name, err);
            fmt_raw(k, k->max, v, sizeof(v));
            snprintf(text, sizeof(text), "[%s]\n%s = %s\n", k->section, k->name, v);
            if (load_text(text, &c, err, sizeof(err), NULL) != 0)
                fail_msg("max of %s.%s refused: %s", k->section, k->name, err);
        }
        checked++;
    }
    assert_true(checked >= 30);

    /* The exact form of the message: file:line: [section] key = value: what is allowed. */
    struct cfg c;
    char err[512];
    const char *path;
    char want[600];
    assert_int_equal(load_text("[tokens]\nbucket_minutes = 60\n\nmax_deficit = -5\n", &c, err,
                               sizeof(err), &path),
                     -EINVAL);
    snprintf(want, sizeof(want), "config: %s:4: [tokens] max_deficit = -5: must be >= 0", path);
    assert_string_equal(err, want);
    expect_error("[scan]\npeek_batch = 51\n", 2, "[scan] peek_batch = 51: must be <= 50");
    expect_error("[commit]\nbatch = 6\n", 2, "[commit] batch = 6: must be <= 5");
    expect_error("[commit]\noffers = 19\n", 2, "[commit] offers = 19: must be >= 20");
    expect_error("[update]\nbatch = 0\n", 2, "[update] batch = 0: must be >= 1");
    expect_error("[scan]\npeek_offers = 10\n", 2, "must be 0 (no offers) or 20..100");
    expect_error("[keepa]\ndomain = 7\n", 2, "not a Keepa domain");
    expect_error("[keepa]\ndomain = xx\n", 2, "not a Keepa domain");
    expect_error("[scan]\npeek_batch = 5x\n", 2, "not an integer");
    expect_error("[scan]\npeek_batch = 99999999999999999999\n", 2, "not an integer");
    expect_error("[update]\nmin_interval = 10\n", 2, "duration with a unit");
    expect_error("[filter]\nmin_roi_pct = 1.234\n", 2, "at most 2 decimals");
    expect_error("[commit]\nhistory = maybe\n", 2, "true or false");
    expect_error("[scan]\nsource = feed\n", 2, "must be one of deals|asins|query");
    expect_error("[daemon]\ninstance = a/b\n", 2, "letters, digits");
    expect_error("[daemon]\ninstance =\n", 2, "must not be empty");
    expect_error("[keepa]\nbase_url = ftp://x\n", 2, "http:// or https://");
    /* A base URL is scheme://host[:port]: the client appends /product?... to it. */
    expect_error("[keepa]\nbase_url = http://127.0.0.1:8421/api\n", 2, "without a path, query");
    expect_error("[keepa]\nbase_url = https://api.keepa.com?x=1\n", 2, "without a path, query");
    expect_error("[keepa]\nbase_url = https://api.keepa.com/#f\n", 2, "without a path, query");
    expect_error("[keepa]\nbase_url = https://me@api.keepa.com\n", 2, "credentials");
    expect_error("[keepa]\nbase_url = http://\n", 2, "names no host");
    assert_int_equal(
        load_text("[keepa]\nbase_url = https://api.keepa.com/\n", &c, err, sizeof(err), NULL), 0);
    assert_int_equal(
        load_text("[keepa]\nbase_url = http://[::1]:8421\n", &c, err, sizeof(err), NULL), 0);
    assert_int_equal(load_text("[scan]\npeek_offers = 0\n", &c, err, sizeof(err), NULL), 0);
    assert_int_equal(load_text("[scan]\npeek_offers = 20\n", &c, err, sizeof(err), NULL), 0);
}

static void test_malformed(void **state)
{
    (void)state;
    expect_error("[scan]\npeek_bacth = 5\n", 2, "[scan] peek_bacth: unknown key");
    expect_error("[scan]\npeek_batch = 5\n\n[scn]\n", 4, "[scn]: unknown section");
    expect_error("[scn]\npeek_batch = 5\n", 1, "[scn]: unknown section");
    expect_error("peek_batch = 5\n", 1, "outside a [section]");
    expect_error("[scan]\npeek_batch = 5\npeek_batch = 6\n", 3, "given twice (first at line 2)");
    expect_error("[scan]\njust some words\n", 2, "syntax error");
    expect_error("[scan\npeek_batch = 5\n", 1, "syntax error");
    char longline[CFG_LINE_MAX + 40];
    memset(longline, 'a', sizeof(longline));
    memcpy(longline, "[daemon]\nrun_dir = /", 20);
    memcpy(longline + sizeof(longline) - 2, "\n", 2);
    expect_error(longline, 2, "line longer than");
    /* A NUL byte in a buffer. */
    struct cfg c;
    char err[256];
    assert_int_equal(cfg_load_buffer("[scan]\npeek_batch = 5\0\n", 23, "buf", &c, err, sizeof(err)),
                     -EINVAL);
    assert_non_null(strstr(err, "buf:2: NUL byte"));
    /* Windows line ends are fine. */
    assert_int_equal(
        cfg_load_buffer("[scan]\r\npeek_batch = 7\r\n", 24, "crlf", &c, err, sizeof(err)), 0);
    assert_int_equal(c.scan_peek_batch, 7);
    /* A missing file: -ENOENT with the path. */
    assert_int_equal(cfg_load_file("/nonexistent/kdeals.conf", &c, err, sizeof(err)), -ENOENT);
    assert_non_null(strstr(err, "/nonexistent/kdeals.conf"));
    /* On error the output is untouched. */
    struct cfg before;
    memset(&before, 0x5a, sizeof(before));
    c = before;
    assert_int_equal(cfg_load_buffer("[scan]\npeek_batch = 0\n", 22, "x", &c, err, sizeof(err)),
                     -EINVAL);
    assert_memory_equal(&c, &before, sizeof(c));
}

static void test_rules(void **state)
{
    (void)state;
    expect_error("[keepa]\nkey = abcdefgh\nkey_file = /k\n", 3, "set only one of");
    expect_error("[keepa]\nkey_file = /k\n\nkey = abcdefgh\n", 4, "set only one of");
    /* The secret is not echoed even in this message. */
    struct cfg c;
    char err[512];
    assert_int_equal(
        load_text("[keepa]\nkey_file = /k\nkey = sekrit-value-1\n", &c, err, sizeof(err), NULL),
        -EINVAL);
    assert_null(strstr(err, "sekrit-value-1"));
    expect_error("[update]\nmin_interval = 2d\n", 2,
                 "min_interval (2d) must be <= max_interval (1d)");
    expect_error("[update]\nmax_interval = 1h\nmin_interval = 2h\n", 3, "must be <=");
    expect_error("[store]\nmap_size_mb = 100000\n", 2, "must be >= map_size_mb");
    expect_error("[scan]\nsource = asins\n", 2, "needs [scan] asins_file");
    expect_error("[scan]\nsource = query\n", 2, "needs [scan] selection_file");
    expect_error("[scan]\nsource = list\n", 2, "needs [scan] list_file");
    expect_error("[scan]\nsource = bestsellers\n", 2,
                 "[scan] source = bestsellers: source = bestsellers needs [scan] "
                 "bestseller_categories");
    expect_error("[scan]\nbestseller_range = 60\n", 2,
                 "[scan] bestseller_range = 60: must be 0 (the current sales rank), 30, 90 or 180");
    expect_error("[scan]\nbestseller_categories = 283155, books\n", 2,
                 "'books' is not a positive integer");
    expect_error("[scan]\nlightning_soon = 2d\n", 2, "[scan] lightning_soon = 2d: must be <=");
    expect_error("[scan]\nmax_price = 10\nmin_price = 12.50\n", 3,
                 "[scan] min_price (12.50) must be <= max_price (10.00)");
    expect_error("[scan]\ncategories = 283155, books\n", 2, "'books' is not a positive integer");
    /* A database password belongs in a file of mode 0600, and is not echoed. */
    expect_error("[mirror]\npostgres = host=db password = hunter22\n", 2,
                 "a password does not belong in the config");
    expect_error("[mirror]\npostgres = postgresql://kd:hunter22@db/deals\n", 2,
                 "a password does not belong in the config");
    expect_error("[mirror]\npostgres = postgres://db/deals?sslmode=require&password=x\n", 2,
                 "a password does not belong in the config");
    assert_int_equal(
        load_text("[mirror]\npostgres = host=db password=hunter22\n", &c, err, sizeof(err), NULL),
        -EINVAL);
    assert_null(strstr(err, "hunter22"));
    /* A user name, a password file of libpq's, or a file of kdeals' are fine. */
    assert_int_equal(
        load_text("[mirror]\npostgres = postgresql://kd@db/deals\n", &c, err, sizeof(err), NULL),
        0);
    assert_int_equal(load_text("[mirror]\npostgres = host=db passfile=/etc/kdeals/pgpass\n", &c,
                               err, sizeof(err), NULL),
                     0);
    assert_int_equal(load_text("[mirror]\npostgres = /etc/kdeals/postgres.conninfo\n", &c, err,
                               sizeof(err), NULL),
                     0);
}

struct diff_seen {
    char names[8][64];
    size_t n;
};

static void on_changed(const struct cfg_key *k, void *ud)
{
    struct diff_seen *d = ud;
    if (d->n < 8)
        snprintf(d->names[d->n++], 64, "%s.%s", k->section, k->name);
}

/* [web] listen: what it accepts, and beyond loopback only with a token file. */
static void test_web_listen(void **state)
{
    (void)state;
    struct kd_web_listen l;
    char why[200];
    assert_int_equal(kd_web_listen_parse("8480", &l, why, sizeof(why)), 0);
    assert_string_equal(l.host, "127.0.0.1");
    assert_int_equal(l.port, 8480);
    assert_true(l.loopback);
    assert_int_equal(kd_web_listen_parse("localhost:0", &l, why, sizeof(why)), 0);
    assert_true(l.loopback);
    assert_int_equal(l.port, 0);
    assert_int_equal(kd_web_listen_parse("127.9.9.9:1", &l, why, sizeof(why)), 0);
    assert_true(l.loopback);
    assert_int_equal(kd_web_listen_parse("[::1]:8480", &l, why, sizeof(why)), 0);
    assert_true(l.loopback);
    assert_string_equal(l.host, "::1");
    assert_int_equal(kd_web_listen_parse("0.0.0.0:8480", &l, why, sizeof(why)), 0);
    assert_false(l.loopback);
    assert_int_equal(kd_web_listen_parse("[::]:8480", &l, why, sizeof(why)), 0);
    assert_false(l.loopback);
    assert_int_equal(kd_web_listen_parse("192.168.1.2:80", &l, why, sizeof(why)), 0);
    assert_false(l.loopback);
    const char *bad[] = {"",           "host.example:80", "::1:80",    "127.0.0.1:65536",
                         "127.0.0.1:", "1.2.3.4:x",       "[::1]8480", "127.0.0.1:-1"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (kd_web_listen_parse(bad[i], &l, why, sizeof(why)) != -EINVAL)
            fail_msg("'%s' was accepted", bad[i]);
        assert_non_null(strstr(why, "IP address"));
    }
    expect_error("[web]\nlisten = web.example:80\n", 2, "[web] listen = web.example:80: use PORT");
    expect_error("[web]\nlisten = 0.0.0.0:8480\n", 2, "set [web] token_file");
    struct cfg c;
    char err[512];
    assert_int_equal(load_text("[web]\nlisten = 8480\n", &c, err, sizeof(err), NULL), 0);
    assert_int_equal(
        load_text("[web]\nlisten = [::]:1\ntoken_file = t\n", &c, err, sizeof(err), NULL), 0);
}

/* The bearer token file: 0600, one token of a sane length and alphabet, never echoed. */
static void test_web_token(void **state)
{
    (void)state;
    char token[KD_WEB_TOKEN_MAX], err[512];
    const char *path = write_file("web.token", "  s3cret-Token+/=_~.0123456789\n\n");
    assert_int_equal(chmod(path, 0600), 0);
    assert_int_equal(kd_web_token_load(path, token, sizeof(token), err, sizeof(err)), 0);
    assert_string_equal(token, "s3cret-Token+/=_~.0123456789");
    assert_true(kd_web_token_equal(token, strlen(token), "s3cret-Token+/=_~.0123456789", 28));
    assert_false(kd_web_token_equal(token, strlen(token), "s3cret-Token+/=_~.0123456788", 28));
    assert_false(kd_web_token_equal(token, strlen(token), "s3cret", 6));
    assert_int_equal(chmod(path, 0640), 0);
    assert_int_equal(kd_web_token_load(path, token, sizeof(token), err, sizeof(err)), -EACCES);
    assert_non_null(strstr(err, "chmod 600"));
    assert_null(strstr(err, "s3cret"));
    assert_string_equal(token, "");
    path = write_file("short.token", "short\n");
    assert_int_equal(chmod(path, 0600), 0);
    assert_int_equal(kd_web_token_load(path, token, sizeof(token), err, sizeof(err)), -EINVAL);
    assert_null(strstr(err, "short\n"));
    path = write_file("space.token", "two words in a token file\n");
    assert_int_equal(chmod(path, 0600), 0);
    assert_int_equal(kd_web_token_load(path, token, sizeof(token), err, sizeof(err)), -EINVAL);
    assert_int_equal(kd_web_token_load("/nonexistent/t", token, sizeof(token), err, sizeof(err)),
                     -ENOENT);
    assert_int_equal(kd_web_token_load("/dev/null", token, sizeof(token), err, sizeof(err)),
                     -EINVAL);
}

static void test_diff(void **state)
{
    (void)state;
    struct cfg a, b;
    cfg_defaults(&a);
    b = a;
    bool restart = true;
    assert_int_equal(cfg_diff(&a, &b, NULL, NULL, &restart), 0);
    assert_false(restart);
    /* Reloadable only. */
    b.scan_peek_batch = 20;
    b.filter_min_roi_pct_bp = 3000;
    struct diff_seen d = {0};
    assert_int_equal(cfg_diff(&a, &b, on_changed, &d, &restart), 2);
    assert_false(restart);
    assert_int_equal(d.n, 2);
    assert_string_equal(d.names[0], "scan.peek_batch");
    assert_string_equal(d.names[1], "filter.min_roi_pct");
    /* Plus a restart-only key. */
    snprintf(b.store_path, sizeof(b.store_path), "/elsewhere");
    memset(&d, 0, sizeof(d));
    assert_int_equal(cfg_diff(&a, &b, on_changed, &d, &restart), 3);
    assert_true(restart);
    assert_string_equal(d.names[0], "store.path");
    /* The table says which keys are which. */
    const struct cfg_key *k = cfg_keys();
    assert_false(k[CFG_K_daemon_instance].reloadable);
    assert_false(k[CFG_K_store_map_size_mb].reloadable);
    assert_true(k[CFG_K_daemon_log_level].reloadable);
    assert_true(k[CFG_K_filter_min_sell].reloadable);
}

/* True when NEEDLE occurs in the LEN bytes at HAY. */
static bool contains(const char *hay, size_t len, const char *needle)
{
    return memmem(hay, len, needle, strlen(needle)) != NULL;
}

static void test_msgpack_round_trip(void **state)
{
    (void)state;
    struct cfg c, d;
    char err[512];
    const char *path;
    assert_int_equal(load_text("[keepa]\nkey = K3YK3YK3Y-0123456789\n[scan]\npeek_offers = 40\n"
                               "[update]\nmin_interval = 90s\n[filter]\nmin_roi_pct = -3.5\n",
                               &c, err, sizeof(err), &path),
                     0);
    char *buf = NULL;
    size_t len = 0;
    assert_int_equal(cfg_encode(&c, &buf, &len), 0);
    assert_false(contains(buf, len, "K3YK3YK3Y"));
    assert_false(contains(buf, len, "keepa.key\xa0")); /* no empty key string either */
    memset(&d, 0, sizeof(d));
    assert_int_equal(cfg_decode(buf, len, &d), 0);
    assert_string_equal(d.keepa_key, "");
    assert_true(d.keepa_key_set);
    struct diff_seen ds = {0};
    assert_int_equal(cfg_diff(&c, &d, on_changed, &ds, NULL), 1);
    assert_string_equal(ds.names[0], "keepa.key");
    assert_string_equal(d.source_path, c.source_path);
    assert_int_equal(d.filter_min_roi_pct_bp, -350);

    /* A second decoder (msgpack-c's object model, no kdeals code) sees string keys. */
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    assert_int_equal(msgpack_unpack_next(&u, buf, len, &off), MSGPACK_UNPACK_SUCCESS);
    assert_int_equal(u.data.type, MSGPACK_OBJECT_MAP);
    bool saw_batch = false;
    for (uint32_t i = 0; i < u.data.via.map.size; i++) {
        msgpack_object *key = &u.data.via.map.ptr[i].key, *val = &u.data.via.map.ptr[i].val;
        assert_int_equal(key->type, MSGPACK_OBJECT_STR);
        char name[64];
        snprintf(name, sizeof(name), "%.*s", (int)key->via.str.size, key->via.str.ptr);
        assert_string_not_equal(name, "keepa.key");
        if (strcmp(name, "scan.peek_offers") == 0) {
            assert_int_equal(val->type, MSGPACK_OBJECT_POSITIVE_INTEGER);
            assert_int_equal(val->via.u64, 40);
            saw_batch = true;
        }
    }
    assert_true(saw_batch);
    msgpack_unpacked_destroy(&u);

    free(buf);
}

static void test_decode_garbage(void **state)
{
    (void)state;
    struct cfg c, d;
    cfg_defaults(&c);
    char *buf = NULL;
    size_t len = 0;
    assert_int_equal(cfg_encode(&c, &buf, &len), 0);
    memset(&d, 0x33, sizeof(d));
    struct cfg before = d;
    /* Every truncation fails cleanly and leaves the output alone. */
    for (size_t n = 0; n < len; n++)
        assert_int_equal(cfg_decode(buf, n, &d), -EBADMSG);
    assert_memory_equal(&d, &before, sizeof(d));
    /* Trailing bytes. */
    char *longer = malloc(len + 1);
    memcpy(longer, buf, len);
    longer[len] = 0;
    assert_int_equal(cfg_decode(longer, len + 1, &d), -EBADMSG);
    free(longer);
    /* Every single-byte flip either fails or decodes to a valid config. */
    for (size_t i = 0; i < len; i++) {
        for (unsigned bit = 0; bit < 8; bit++) {
            buf[i] ^= (char)(1u << bit);
            if (cfg_decode(buf, len, &d) == 0) {
                char err[256];
                assert_int_equal(cfg_validate(&d, err, sizeof(err)), 0);
            }
            buf[i] ^= (char)(1u << bit);
        }
    }
    free(buf);
    /* Forged huge containers. */
    const unsigned char bomb1[] = {0xdf, 0xff, 0xff, 0xff, 0xf0, 0xa1, 'v', 0x01};
    const unsigned char bomb2[] = {0xdd, 0x0f, 0xff, 0xff, 0xf0};
    const unsigned char bomb3[] = {0xdb, 0xff, 0xff, 0xff, 0xff, 'a'};
    assert_int_equal(cfg_decode(bomb1, sizeof(bomb1), &d), -EBADMSG);
    assert_int_equal(cfg_decode(bomb2, sizeof(bomb2), &d), -EBADMSG);
    assert_int_equal(cfg_decode(bomb3, sizeof(bomb3), &d), -EBADMSG);
    assert_int_equal(cfg_decode(NULL, 0, &d), -EBADMSG);
    /* A map with a secret "keepa.key" is refused. */
    const unsigned char secret[] = {0x81, 0xa9, 'k', 'e', 'e',  'p', 'a',
                                    '.',  'k',  'e', 'y', 0xa1, 'x'};
    assert_int_equal(cfg_decode(secret, sizeof(secret), &d), -EBADMSG);
}

static void test_print_round_trip(void **state)
{
    (void)state;
    struct cfg c, d;
    char err[512];
    assert_int_equal(load_text(every_key, &c, err, sizeof(err), NULL), 0);
    snprintf(c.store_path, sizeof(c.store_path), "/a path; with a semicolon ");
    const char *out = write_file("printed.conf", "");
    FILE *f = fopen(out, "w");
    cfg_print(&c, f);
    fclose(f);
    int rc = cfg_load_file(out, &d, err, sizeof(err));
    if (rc != 0)
        fail_msg("%s", err);
    assert_int_equal(cfg_diff(&c, &d, NULL, NULL, NULL), 0);
    /* The inline key is printed redacted. */
    assert_int_equal(load_text("[keepa]\nkey = ZZ-TOP-SECRET-42\n", &c, err, sizeof(err), NULL), 0);
    char *text = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&text, &len);
    cfg_print(&c, m);
    fclose(m);
    assert_null(strstr(text, "ZZ-TOP-SECRET-42"));
    assert_non_null(strstr(text, "\n# key = <redacted>\n"));
    assert_non_null(strstr(text, "[tokens]\nbucket_minutes = 60\nmax_deficit = 0\n"));
    free(text);
}

/* Paths as deep as an operator's folders go: a 400-byte path, absolute or relative to the
 * file, on a line inih alone could not read; the values round-trip through cfg_print. */
static void test_long_paths(void **state)
{
    (void)state;
    char deep[401];
    memset(deep, 'd', sizeof(deep));
    for (size_t i = 50; i < 400; i += 50)
        deep[i] = '/';
    deep[0] = '/';
    deep[400] = '\0';
    char text[2048];
    snprintf(text, sizeof(text),
             "[store]\npath = %s ; a comment\n[daemon]\nrun_dir = \"%s\"\nlog_file = rel%s\n"
             "[scan]\npeek_batch = 7\n",
             deep, deep, deep);
    struct cfg c, d;
    char err[512];
    const char *path = NULL;
    int rc = load_text(text, &c, err, sizeof(err), &path);
    if (rc != 0)
        fail_msg("%s", err);
    assert_string_equal(c.store_path, deep);
    assert_string_equal(c.daemon_run_dir, deep);
    char want[1024];
    snprintf(want, sizeof(want), "%s/rel%s", kd_test_tmpdir(), deep);
    char *abs = realpath(kd_test_tmpdir(), NULL);
    snprintf(want, sizeof(want), "%s/rel%s", abs, deep);
    free(abs);
    assert_string_equal(c.daemon_log_file, want);
    assert_int_equal(c.scan_peek_batch, 7);
    /* Errors on a long line name its line and key. */
    snprintf(text, sizeof(text), "[store]\n\npath = %s\nmap_size_mb = 0\n", deep);
    expect_error(text, 4, "[store] map_size_mb");
    snprintf(text, sizeof(text), "[store]\n\npathh = %s\n", deep);
    expect_error(text, 3, "[store] pathh: unknown key");
    snprintf(text, sizeof(text), "[store]\npath = %s\npath = /x\n", deep);
    expect_error(text, 3, "given twice (first at line 2)");
    /* Printed and read back. */
    const char *out = write_file("printed-long.conf", "");
    FILE *f = fopen(out, "w");
    cfg_print(&c, f);
    fclose(f);
    rc = cfg_load_file(out, &d, err, sizeof(err));
    if (rc != 0)
        fail_msg("%s", err);
    assert_int_equal(cfg_diff(&c, &d, NULL, NULL, NULL), 0);
}

/* A key in a config file others may read is refused, as a key file of that mode is. */
static void test_inline_key_in_open_config_refused(void **state)
{
    (void)state;
    struct cfg c;
    char err[512];
    const char *path = write_file("keyed.conf", "[keepa]\nkey = ZZ-TOP-SECRET-42\n");
    assert_int_equal(cfg_load_file(path, &c, err, sizeof(err)), 0);
    assert_int_equal(chmod(path, 0644), 0);
    assert_int_equal(cfg_load_file(path, &c, err, sizeof(err)), -EACCES);
    assert_non_null(strstr(err, "chmod 600"));
    assert_non_null(strstr(err, ":2: [keepa] key"));
    assert_null(strstr(err, "ZZ-TOP-SECRET-42"));
    /* Without a key the same mode is fine. */
    path = write_file("open.conf", "[scan]\npeek_batch = 5\n");
    assert_int_equal(chmod(path, 0644), 0);
    assert_int_equal(cfg_load_file(path, &c, err, sizeof(err)), 0);
}

/* kdeals.conf.sample is generated from the table; KD_UPDATE_SAMPLE=1 rewrites it. */
static void test_sample_file(void **state)
{
    (void)state;
    char *text = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&text, &len);
    cfg_write_sample(m);
    fclose(m);
    const char *sample = KD_SOURCE_DIR "/kdeals.conf.sample";
    if (getenv("KD_UPDATE_SAMPLE") != NULL) {
        FILE *f = fopen(sample, "w");
        assert_non_null(f);
        fwrite(text, 1, len, f);
        fclose(f);
    }
    size_t flen = 0;
    char *file = kd_read_file(sample, &flen);
    assert_non_null(file);
    if (flen != len || memcmp(file, text, len) != 0)
        fail_msg("kdeals.conf.sample is out of date: run KD_UPDATE_SAMPLE=1 test_config "
                 "test_sample_file");
    /* It parses, to the defaults. */
    struct cfg def, c;
    char err[512];
    cfg_defaults(&def);
    assert_int_equal(cfg_load_file(sample, &c, err, sizeof(err)), 0);
    assert_int_equal(cfg_diff(&def, &c, NULL, NULL, NULL), 0);
    /* And each commented default, uncommented, parses too. */
    for (size_t i = 0; i < CFG_KEY_COUNT; i++) {
        const struct cfg_key *k = &cfg_keys()[i];
        char line[512];
        snprintf(line, sizeof(line), "# %s =%s%s\n", k->name, k->default_text[0] ? " " : "",
                 k->default_text);
        assert_non_null(strstr(text, line));
    }
    /* The examples of named sections, uncommented, load. */
    char *ex = strstr(text, "\n# Named sections");
    assert_non_null(ex);
    char uncommented[4096] = "";
    for (char *l = strstr(ex, "\n# ["); l != NULL && l[1] == '#';) {
        char *nl = strchr(l + 1, '\n');
        size_t n = nl != NULL ? (size_t)(nl - l - 3) : strlen(l + 3);
        bool header = l[3] == '[' && nl != NULL && memchr(l + 3, ':', n) == NULL;
        bool assignment = nl != NULL && memchr(l + 3, '=', n) != NULL;
        if (header || assignment)
            snprintf(uncommented + strlen(uncommented), sizeof(uncommented) - strlen(uncommented),
                     "%.*s\n", (int)n, l + 3);
        l = nl;
    }
    assert_non_null(strstr(uncommented, "[view.optimal]\nmin_roi = 30\n"));
    const char *expath = write_file("examples.conf", uncommented);
    if (cfg_load_file(expath, &c, err, sizeof(err)) != 0)
        fail_msg("the sample's named examples do not load: %s\n%s", err, uncommented);
    free(file);
    free(text);
}

/* ---- named sections ---- */

static const char named_text[] = "[filter]\nmin_roi_pct = 30\n"
                                 "[view.optimal]\n"
                                 "min_roi = 30\n"
                                 "category = \"Books|Toys & Games\"\n"
                                 "\n"
                                 "[view.empty]\n"
                                 "[update]\nbatch = 20\n"
                                 "[view.last-one_2]\n"
                                 "sort = rank\n";

/* A checker of [view.*] for the tests: keys a..z only, values "ok" or "good". */
static int test_check_key(const struct cfg *c, const char *name, const char *key, const char *value,
                          char *why, size_t whylen)
{
    (void)c;
    (void)name;
    if (strcmp(key, "min_roi") != 0 && strcmp(key, "category") != 0 && strcmp(key, "sort") != 0) {
        snprintf(why, whylen, "(known: min_roi, category, sort)");
        return -ENOENT;
    }
    if (strcmp(value, "bad") == 0) {
        snprintf(why, whylen, "anything but bad");
        return -EINVAL;
    }
    return 0;
}

static const struct cfg_named_checker test_checker = {.kind = CFG_NAMED_view,
                                                      .check_key = test_check_key};
static const struct cfg_named_checker *const test_checkers[] = {&test_checker};

static void test_named_sections(void **state)
{
    (void)state;
    struct cfg c;
    char err[512];
    const char *path;
    assert_int_equal(load_text(named_text, &c, err, sizeof(err), &path), 0);
    /* Ordinary keys around them are read as ever. */
    assert_int_equal(c.filter_min_roi_pct_bp, 3000);
    assert_int_equal(c.update_batch, 20);
    assert_int_equal(c.n_named, 3);
    const struct cfg_named *o = cfg_named_find(&c, CFG_NAMED_view, "optimal");
    assert_non_null(o);
    assert_int_equal(o->line, 3);
    assert_int_equal(o->n_keys, 2);
    const char *key, *value;
    int line;
    cfg_named_key(&c, o, 1, &key, &value, &line);
    assert_string_equal(key, "category");
    assert_string_equal(value, "Books|Toys & Games"); /* quotes removed, '|' and '&' kept */
    assert_int_equal(line, 5);
    const struct cfg_named *e = cfg_named_find(&c, CFG_NAMED_view, "empty");
    assert_non_null(e);
    assert_int_equal(e->n_keys, 0);
    assert_non_null(cfg_named_find(&c, CFG_NAMED_view, "last-one_2"));
    assert_null(cfg_named_find(&c, CFG_NAMED_view, "Optimal"));
    assert_int_equal(cfg_named_kind_find("view"), CFG_NAMED_view);
    assert_int_equal(cfg_named_kind_find("veiw"), -1);
    assert_int_equal(cfg_named_check(&c, test_checkers, 1, err, sizeof(err)), 0);

    /* The loader's errors name the file, the line and the section. */
    expect_error("[view]\nmin_roi = 3\n", 1, "[view]: unknown section");
    expect_error("[vew.x]\nmin_roi = 3\n", 1,
                 "[vew.x]: unknown section (named sections: [view.NAME], [alert.NAME])");
    expect_error("[view.]\n", 1, "[view.]: NAME must be 1..31 letters");
    expect_error("[view.a b]\n", 1, "[view.a b]: NAME must be");
    expect_error("[view.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa]\n", 1, "NAME must be 1..31");
    expect_error("[view.x]\nsort = roi\n[view.x]\n", 3, "[view.x]: given twice (first at line 1)");
    expect_error("[view.x]\nsort = roi\n\nsort = rank\n", 4,
                 "[view.x] sort = rank: given twice (first at line 2)");
    expect_error("[view.x]\nsort = \x01\n", 2, "control character");
    char many[8192] = "";
    for (int i = 0; i <= CFG_NAMED_MAX; i++)
        snprintf(many + strlen(many), sizeof(many) - strlen(many), "[view.v%d]\n", i);
    expect_error(many, CFG_NAMED_MAX + 1, "more than 32 named sections");

    /* The checker's errors, in the same form, at the key's line. */
    char want[700];
    assert_int_equal(
        load_text("[view.x]\nsort = ok\n\nmin_roi = bad\n", &c, err, sizeof(err), &path), 0);
    assert_int_equal(cfg_named_check(&c, test_checkers, 1, err, sizeof(err)), -EINVAL);
    snprintf(want, sizeof(want), "config: %s:4: [view.x] min_roi = bad: anything but bad", path);
    assert_string_equal(err, want);
    assert_int_equal(load_text("[view.x]\nmin_margin = 1\n", &c, err, sizeof(err), &path), 0);
    assert_int_equal(cfg_named_check(&c, test_checkers, 1, err, sizeof(err)), -EINVAL);
    snprintf(want, sizeof(want),
             "config: %s:2: [view.x] min_margin: unknown key (known: min_roi, category, sort)",
             path);
    assert_string_equal(err, want);
    /* No checker for the kind: not checked. */
    assert_int_equal(cfg_named_check(&c, NULL, 0, err, sizeof(err)), 0);
}

static void note_named(const struct cfg_key *k, void *ud)
{
    snprintf(ud, 64, "[%s] %s", k->section, k->name);
}

static void test_named_round_trips(void **state)
{
    (void)state;
    struct cfg c, d;
    char err[512];
    assert_int_equal(load_text(named_text, &c, err, sizeof(err), NULL), 0);
    /* msgpack: every section, key, value and line comes back. */
    char *buf = NULL;
    size_t len = 0;
    assert_int_equal(cfg_encode(&c, &buf, &len), 0);
    memset(&d, 0, sizeof(d));
    assert_int_equal(cfg_decode(buf, len, &d), 0);
    free(buf);
    assert_int_equal(cfg_diff(&c, &d, NULL, NULL, NULL), 0);
    assert_int_equal(d.n_named, 3);
    const struct cfg_named *o = cfg_named_find(&d, CFG_NAMED_view, "optimal");
    assert_non_null(o);
    assert_int_equal(o->line, 3);
    const char *key, *value;
    int line;
    cfg_named_key(&d, o, 1, &key, &value, &line);
    assert_string_equal(value, "Books|Toys & Games");
    assert_int_equal(line, 5);
    /* Printed (check-config) and read back: the same sections. */
    const char *out = write_file("printed-named.conf", "");
    FILE *f = fopen(out, "w");
    cfg_print(&c, f);
    fclose(f);
    assert_int_equal(cfg_load_file(out, &d, err, sizeof(err)), 0);
    assert_int_equal(cfg_diff(&c, &d, NULL, NULL, NULL), 0);
    assert_int_equal(d.n_named, 3);
    /* A change in any named section of a kind is one reloadable change, named "view.*". */
    assert_int_equal(load_text("[view.optimal]\nmin_roi = 31\n", &d, err, sizeof(err), NULL), 0);
    struct cfg def;
    cfg_defaults(&def);
    bool restart = true;
    char named[64] = "";
    assert_int_equal(cfg_diff(&def, &d, note_named, named, &restart), 1);
    assert_false(restart);
    assert_string_equal(named, "[view.*] *");
    assert_int_equal(cfg_diff(&d, &d, NULL, NULL, NULL), 0);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_valid),
        cmocka_unit_test(test_enum_order),
        cmocka_unit_test(test_every_key_parsed),
        cmocka_unit_test(test_deprecated_keys),
        cmocka_unit_test(test_money_and_lists),
        cmocka_unit_test(test_bounds_enforced),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_rules),
        cmocka_unit_test(test_web_listen),
        cmocka_unit_test(test_web_token),
        cmocka_unit_test(test_diff),
        cmocka_unit_test(test_msgpack_round_trip),
        cmocka_unit_test(test_decode_garbage),
        cmocka_unit_test(test_print_round_trip),
        cmocka_unit_test(test_sample_file),
        cmocka_unit_test(test_named_sections),
        cmocka_unit_test(test_named_round_trips),
        cmocka_unit_test(test_long_paths),
        cmocka_unit_test(test_inline_key_in_open_config_refused),
    };
    return KD_RUN_TESTS(tests, argc, argv);
}
