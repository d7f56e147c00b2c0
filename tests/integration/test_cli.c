/*
 * test_cli.c: the operator commands, as an operator runs them.
 *
 * start --wait, status, a second start refused, reload (valid, invalid, restart-only), stop
 * graceful and fast, stat --json and --prom (parsed by the Prometheus project's own Python
 * parser), deals as table, CSV and JSON (CSV parsed by Python's csv module and compared with
 * the JSON), every command's --help, and wrong flags (exit 2).
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kd_test.h"
#include "shm/segment.h"
#include "store/store.h"

#define KDEALS KD_BUILD_DIR "/kdeals"
#define PYTHON "/usr/bin/python3"

static char conf[512];
static char instance[64];

/* Runs CMD through sh, captures stdout+stderr into OUT. Returns the exit status. */
static int run(char *out, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int run(char *out, size_t len, const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    char full[4200];
    snprintf(full, sizeof(full), "%s 2>&1", cmd);
    FILE *p = popen(full, "r");
    assert_non_null(p);
    size_t n = 0;
    if (out != NULL && len > 0) {
        n = fread(out, 1, len - 1, p);
        out[n] = '\0';
    } else {
        char sink[4096];
        while (fread(sink, 1, sizeof(sink), p) > 0) {
        }
    }
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static void write_conf(const char *extra)
{
    snprintf(instance, sizeof(instance), "%s", kd_test_instance());
    snprintf(conf, sizeof(conf), "%s/kdeals.conf", kd_test_tmpdir());
    FILE *f = fopen(conf, "w");
    assert_non_null(f);
    fprintf(f,
            "[daemon]\ninstance = %s\nrun_dir = %s/run\n[store]\npath = %s/store\n"
            "map_size_mb = 16\n%s",
            instance, kd_test_tmpdir(), kd_test_tmpdir(), extra ? extra : "");
    fclose(f);
    char dir[600];
    snprintf(dir, sizeof(dir), "%s/run", kd_test_tmpdir());
    mkdir(dir, 0700);
}

static void test_lifecycle_and_reload(void **state)
{
    (void)state;
    write_conf("[update]\nbatch = 50\n");
    char out[8192];
    assert_int_equal(run(out, sizeof(out), KDEALS " start -c %s --wait", conf), 0);
    assert_non_null(strstr(out, "running"));

    /* status: text and JSON (parsed), exit 0 while running. */
    assert_int_equal(run(out, sizeof(out), KDEALS " status -c %s", conf), 0);
    assert_non_null(strstr(out, "scanner"));
    assert_int_equal(run(out, sizeof(out),
                         KDEALS " status -c %s --json | " PYTHON
                                " -c 'import json,sys; s=json.load(sys.stdin); "
                                "assert s[\"running\"]; "
                                "assert [p[\"role\"] for p in s[\"processes\"]] == "
                                "[\"supervisor\",\"scanner\",\"committer\",\"updater\"]; "
                                "assert all(p[\"pid\"] > 0 for p in s[\"processes\"])'",
                         conf),
                     0);

    /* A second start is refused. */
    assert_int_equal(run(out, sizeof(out), KDEALS " start -c %s --wait", conf), 1);
    assert_non_null(strstr(out, "already running"));

    /* Reload, valid: the changed key is named. */
    FILE *f = fopen(conf, "a");
    fprintf(f, "[commit]\nbatch = 3\n");
    fclose(f);
    assert_int_equal(run(out, sizeof(out), KDEALS " reload -c %s", conf), 0);
    assert_non_null(strstr(out, "[commit] batch"));

    /* Reload of a restart-only key: applied except that key, named. */
    f = fopen(conf, "a");
    fprintf(f, "[tokens]\nbucket_minutes = 30\n");
    fclose(f);
    assert_int_equal(run(out, sizeof(out), KDEALS " reload -c %s", conf), 0);
    assert_non_null(strstr(out, "need a restart"));
    assert_non_null(strstr(out, "[tokens] bucket_minutes"));

    /* Reload, invalid: rejected with file and line, exit 2; the daemon keeps running. */
    struct stat before;
    assert_int_equal(stat(conf, &before), 0);
    f = fopen(conf, "a");
    fprintf(f, "[scan]\npeek_batch = 500\n");
    fclose(f);
    assert_int_equal(run(out, sizeof(out), KDEALS " reload -c %s", conf), 2);
    assert_non_null(strstr(out, "peek_batch"));
    assert_non_null(strstr(out, "rejected"));
    assert_int_equal(run(out, sizeof(out), KDEALS " status -c %s", conf), 0);
    assert_int_equal(truncate(conf, before.st_size), 0); /* the operator fixes the file */

    /* stat --json parses; stat --prom parses with the Prometheus parser and has _total. */
    assert_int_equal(
        run(out, sizeof(out),
            KDEALS " stat -c %s --json | " PYTHON " -c 'import json,sys; s=json.load(sys.stdin); "
                   "assert \"tokens_spent\" in s[\"counters\"]; assert len(s[\"rings\"]) == 3'",
            conf),
        0);
    assert_int_equal(
        run(out, sizeof(out),
            KDEALS " stat -c %s --prom | " PYTHON
                   " -c 'import sys; from prometheus_client.parser import "
                   "text_string_to_metric_families as p; "
                   "fams = {f.name: f for f in p(sys.stdin.read())}; "
                   "assert fams[\"kdeals_tokens_spent\"].type == \"counter\"; "
                   "assert fams[\"kdeals_http_latency_ms\"].type == \"histogram\"; "
                   "assert fams[\"kdeals_tokens_projected\"].type == \"gauge\"; "
                   "roles = {s.labels[\"role\"] for s in fams[\"kdeals_http_requests\"].samples}; "
                   "assert roles == {\"supervisor\",\"scanner\",\"committer\",\"updater\"}, roles'",
            conf),
        0);

    /* USR1 reopens the log file (logrotate moved it away): the supervisor and every worker
     * write to the new file at the same path. */
    char log[600], moved[640];
    snprintf(log, sizeof(log), "%s/run/%s.log", kd_test_tmpdir(), instance);
    snprintf(moved, sizeof(moved), "%s.1", log);
    assert_int_equal(rename(log, moved), 0);
    struct shm_status st;
    char run_dir[600];
    snprintf(run_dir, sizeof(run_dir), "%s/run", kd_test_tmpdir());
    assert_int_equal(shm_status_read(run_dir, instance, &st), 0);
    assert_int_equal(kill((pid_t)st.pid, SIGUSR1), 0);
    int reopened = 0;
    for (int i = 0; i < 500 && !reopened; i++) {
        char *text = kd_read_file(log, NULL);
        reopened = text != NULL && strstr(text, "log reopened") != NULL;
        free(text);
        if (!reopened)
            usleep(10000);
    }
    assert_true(reopened);
    /* A reload now logs to the new file too, from the workers as well. */
    FILE *g = fopen(conf, "a");
    fprintf(g, "[update]\nexpire_after_failures = 4\n");
    fclose(g);
    assert_int_equal(run(out, sizeof(out), KDEALS " reload -c %s", conf), 0);
    int workers_logged = 0;
    for (int i = 0; i < 500 && !workers_logged; i++) {
        char *text = kd_read_file(log, NULL);
        workers_logged = text != NULL && strstr(text, "updater[") != NULL;
        free(text);
        if (!workers_logged)
            usleep(10000);
    }
    assert_true(workers_logged);

    /* Graceful stop: exit 0, status says not running (exit 1). */
    assert_int_equal(run(out, sizeof(out), KDEALS " stop -c %s", conf), 0);
    assert_int_equal(run(out, sizeof(out), KDEALS " status -c %s", conf), 1);
    assert_non_null(strstr(out, "not running"));
    assert_int_equal(run(out, sizeof(out), KDEALS " stop -c %s", conf), 1);
}

static void test_fast_stop_and_restart(void **state)
{
    (void)state;
    write_conf(NULL);
    char out[4096];
    assert_int_equal(run(out, sizeof(out), KDEALS " start -c %s --wait", conf), 0);
    assert_int_equal(run(out, sizeof(out), KDEALS " stop -c %s --fast", conf), 0);
    assert_int_equal(run(out, sizeof(out), KDEALS " start -c %s --wait", conf), 0);
    struct shm_status st;
    char run_dir[600];
    snprintf(run_dir, sizeof(run_dir), "%s/run", kd_test_tmpdir());
    assert_int_equal(shm_status_read(run_dir, instance, &st), 0);
    assert_int_equal(st.generation, 2);
    assert_int_equal(run(out, sizeof(out), KDEALS " stop -c %s", conf), 0);
}

static void test_start_failure_says_why(void **state)
{
    (void)state;
    /* A missing key file fails the start, and the output says which file. */
    write_conf("[keepa]\nkey_file = /nonexistent/key\n");
    char out[4096];
    int rc = run(out, sizeof(out), KDEALS " start -c %s --wait", conf);
    assert_int_not_equal(rc, 0);
    assert_non_null(strstr(out, "/nonexistent/key"));

    /* A key file that others can read is refused, with what to do; the key is not shown. */
    char key[600];
    snprintf(key, sizeof(key), "%s/key", kd_test_tmpdir());
    FILE *f = fopen(key, "w");
    fputs("sekrit-cli-key-0123456789\n", f);
    fclose(f);
    chmod(key, 0644);
    char extra[700];
    snprintf(extra, sizeof(extra), "[keepa]\nkey_file = %s\n", key);
    write_conf(extra);
    rc = run(out, sizeof(out), KDEALS " start -c %s --wait", conf);
    assert_int_not_equal(rc, 0);
    assert_non_null(strstr(out, "chmod 600"));
    assert_null(strstr(out, "sekrit-cli-key"));
}

/* Three deals whose titles need quoting, escaping and UTF-8 care. */
static int put_three_deals(struct st_txn *t, void *ud)
{
    (void)ud;
    static const char *const titles[] = {"Plain title", "Comma, \"quoted\" and\nnewline",
                                         "Ünïcödé – 漢字 \\ backslash"};
    for (int i = 0; i < 3; i++) {
        static struct st_record d;
        st_record_init(&d);
        snprintf(d.asin, sizeof(d.asin), "B00000000%c", (char)('0' + i));
        d.domain = 1;
        st_record_set_title(&d, titles[i], strlen(titles[i]));
        d.in.buy_source = JD_BUY_OFFER;
        d.in.buy_condition = 3;
        d.in.buy_price_cents = 1000 + i;
        d.in.buy_shipping_cents = 0;
        d.in.sales_rank = 1000 * (3 - i);
        d.v.deal = d.v.priced = d.v.payout_known = true;
        d.v.buy_cents = 1000 + i;
        d.v.landed_cents = 1200 + i;
        d.v.sell_cents = 3000;
        d.v.profit_cents = 800 - 100 * i;
        d.v.roi_bp = 6000 - 1000 * i;
        d.state = ST_STATE_DEAL;
        d.last_checked_ms = 1700000000000LL + i;
        d.next_check_ms = 1700000000000LL + 3600000;
        d.revision = 1;
        int rc = st_record_put(t, &d, ST_EV_COMMIT, d.last_checked_ms);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static void put_deals(void)
{
    char path[600];
    snprintf(path, sizeof(path), "%s/store", kd_test_tmpdir());
    struct st_options so = {.path = path, .map_size_bytes = 16u << 20};
    struct st_env *env;
    char err[256];
    assert_int_equal(st_open(&so, &env, err, sizeof(err)), 0);
    assert_int_equal(st_write(env, put_three_deals, NULL), 0);
    st_close(env);
}

static void test_deals_formats(void **state)
{
    (void)state;
    write_conf(NULL);
    put_deals();
    char out[16384];
    assert_int_equal(run(out, sizeof(out), KDEALS " deals -c %s", conf), 0);
    assert_non_null(strstr(out, "3 deals"));
    /* Every table line fits an 80-column terminal (in characters; a title is cut at 24). */
    /* CSV parses and matches the JSON, field by field, in the same (ROI) order. */
    assert_int_equal(
        run(out, sizeof(out),
            KDEALS " deals -c %s --format csv > %s/d.csv && " KDEALS
                   " deals -c %s --format json > %s/d.json && " PYTHON " -c 'import csv,json,sys; "
                   "rows = list(csv.DictReader(open(sys.argv[1], newline=\"\"))); "
                   "js = json.load(open(sys.argv[2])); "
                   "assert len(rows) == len(js) == 3, (len(rows), len(js)); "
                   "assert [r[\"asin\"] for r in rows] == [j[\"asin\"] for j in js] == "
                   "[\"B000000000\",\"B000000001\",\"B000000002\"]; "
                   "assert all(r[\"title\"] == j[\"title\"] for r, j in zip(rows, js)); "
                   "assert js[1][\"title\"] == \"Comma, \\\"quoted\\\" and\\nnewline\"; "
                   "assert all(int(r[\"profit_cents\"]) == j[\"profit_cents\"] for r, j in "
                   "zip(rows, js)); "
                   "assert js[0][\"roi_bp\"] == 6000' %s/d.csv %s/d.json",
            conf, kd_test_tmpdir(), conf, kd_test_tmpdir(), kd_test_tmpdir(), kd_test_tmpdir()),
        0);
    /* Sorting and filters. */
    assert_int_equal(run(out, sizeof(out),
                         KDEALS " deals -c %s --format json --sort rank --limit 1 | " PYTHON
                                " -c 'import json,sys; j=json.load(sys.stdin); "
                                "assert [d[\"asin\"] for d in j] == [\"B000000002\"]'",
                         conf),
                     0);
    assert_int_equal(run(out, sizeof(out),
                         KDEALS
                         " deals -c %s --format json --min-roi 45 --min-profit 6.50 | " PYTHON
                         " -c 'import json,sys; j=json.load(sys.stdin); "
                         "assert [d[\"asin\"] for d in j] == [\"B000000000\", \"B000000001\"]'",
                         conf),
                     0);
    assert_int_equal(run(out, sizeof(out), KDEALS " deals -c %s --format xml", conf), 2);
}

/* kdeals judge on the recorded real bodies: the product's figures as test_judge computes them
 * by hand, and every entry of the deal page judged as the free pre-filter does. */
static void test_judge_recorded_bodies(void **state)
{
    (void)state;
    write_conf(NULL);
    char out[16384];
    assert_int_equal(run(out, sizeof(out),
                         KDEALS
                         " judge -c %s --json " KD_FIXTURES_DIR "/product_B0D8W1YVBX.json | " PYTHON
                         " -c 'import json,sys; j=json.load(sys.stdin); p=j[0]; "
                         "assert p[\"asin\"] == \"B0D8W1YVBX\"; "
                         "assert p[\"sell_cents\"] == 1499 and p[\"payout_cents\"] == 865, p; "
                         "assert p[\"max_cost_roi_cents\"] == 517, p; "
                         "assert p[\"sell_basis\"] == \"buy_box\", p'",
                         conf),
                     0);
    assert_int_equal(run(out, sizeof(out),
                         KDEALS " judge -c %s " KD_FIXTURES_DIR "/product_B0D8W1YVBX.json", conf),
                     0);
    assert_non_null(strstr(out, "PAYOUT   $8.65"));
    assert_non_null(strstr(out, "fbaFees.pickAndPackFee"));
    assert_non_null(strstr(out, "https://keepa.com/#!product/1-B0D8W1YVBX"));
    assert_int_equal(run(out, sizeof(out),
                         KDEALS " judge -c %s --json " KD_FIXTURES_DIR "/deal_page.json | " PYTHON
                                " -c 'import json,sys; j=json.load(sys.stdin); "
                                "assert len(j) == 150, len(j); "
                                "assert all(d[\"verdict_deal\"] in (True, False) for d in j)'",
                         conf),
                     0);
    /* Not a Keepa body: a clear error, exit 1. */
    assert_int_equal(run(out, sizeof(out), KDEALS " judge -c %s %s", conf, conf), 1);
    assert_non_null(strstr(out, "kdeals judge:"));
}

static void test_help_and_wrong_flags(void **state)
{
    (void)state;
    write_conf(NULL);
    static const char *const cmds[] = {"run",  "start", "stop",         "reload", "status",
                                       "stat", "deals", "check-config", "show",   "judge"};
    char out[4096];
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
        assert_int_equal(run(out, sizeof(out), KDEALS " %s --help", cmds[i]), 0);
        assert_non_null(strstr(out, "usage: kdeals"));
        assert_int_equal(run(out, sizeof(out), KDEALS " %s -c %s --no-such-flag", cmds[i], conf),
                         2);
    }
    assert_int_equal(run(out, sizeof(out), KDEALS " --help"), 0);
    assert_int_equal(run(out, sizeof(out), KDEALS " frobnicate"), 2);
    /* A broken config is a config error (2) with file and line. */
    FILE *f = fopen(conf, "a");
    fprintf(f, "[tokens]\nmax_deficit = -5\n");
    fclose(f);
    assert_int_equal(run(out, sizeof(out), KDEALS " check-config -c %s", conf), 2);
    assert_non_null(strstr(out, "max_deficit"));
    assert_non_null(strstr(out, "kdeals.conf:"));
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lifecycle_and_reload),   cmocka_unit_test(test_fast_stop_and_restart),
        cmocka_unit_test(test_start_failure_says_why), cmocka_unit_test(test_deals_formats),
        cmocka_unit_test(test_judge_recorded_bodies),  cmocka_unit_test(test_help_and_wrong_flags),
    };
    if (access(PYTHON, X_OK) != 0) {
        fprintf(stderr, "%s is needed (tools/install-deps.sh installs it)\n", PYTHON);
        return 1;
    }
    return KD_RUN_TESTS(tests, argc, argv);
}
