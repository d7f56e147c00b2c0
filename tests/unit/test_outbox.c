/*
 * test_outbox.c: the outbox's pure parts: the alerts' records in the store (alertdb.h: keys,
 * msgpack encoding, the raw store access they use), [alert.NAME] sections (alertcfg.h), and the
 * bodies of deliveries (deliver.h). The lanes themselves run in the daemon: test_alerts,
 * test_mirror.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <yajl/yajl_tree.h>

#include "judge/rules.h"
#include "kd_test.h"
#include "outbox/alertcfg.h"
#include "outbox/alertdb.h"
#include "outbox/deliver.h"
#include "store/store.h"

static void test_keys_and_codecs(void **state)
{
    (void)state;
    struct st_key key, k2;
    assert_int_equal(st_key_make(3, "B0D8W1YVBX", &key), 0);
    uint8_t k[OB_ALERT_KEY_LEN];
    assert_int_equal(ob_alert_key("team", &key, 7, k), 0);
    uint32_t entry = 0;
    assert_true(ob_alert_key_parse("team", k, sizeof(k), &k2, &entry));
    assert_memory_equal(&k2, &key, sizeof(key));
    assert_int_equal(entry, 7);
    assert_false(ob_alert_key_parse("tea", k, sizeof(k), &k2, &entry)); /* a prefix is not it */
    assert_false(ob_alert_key_parse("team", k, sizeof(k) - 1, &k2, &entry));
    char long_name[40];
    memset(long_name, 'a', sizeof(long_name) - 1);
    long_name[39] = '\0';
    assert_int_equal(ob_alert_key(long_name, &key, 1, k), -EINVAL);

    struct ob_member m = {true, 3, 1700000000000, 1699999990000, 42}, m2;
    uint8_t buf[ST_RECORD_MAX + 512];
    size_t n;
    assert_int_equal(ob_member_encode(&m, buf, sizeof(buf), &n), 0);
    assert_int_equal(ob_member_decode(buf, n, &m2), 0);
    assert_memory_equal(&m, &m2, sizeof(m));

    static struct ob_delivery d, d2;
    memset(&d, 0, sizeof(d));
    d.status = OB_D_DEAD;
    d.attempts = 12;
    d.next_ms = -5;
    d.entered_ms = 1700000000000;
    d.seq = 1042;
    d.last_status = 503;
    snprintf(d.last_error, sizeof(d.last_error), "HTTP 503");
    d.record_len = 100;
    memset(d.record, 0xa5, d.record_len);
    assert_int_equal(ob_delivery_encode(&d, buf, sizeof(buf), &n), 0);
    assert_int_equal(ob_delivery_decode(buf, n, &d2), 0);
    assert_memory_equal(&d, &d2, sizeof(d));
    assert_int_equal(ob_delivery_encode(&d, buf, 50, &n), -ENOBUFS);

    /* Any bytes are safe; a newer version is refused, not misread. */
    for (size_t cut = 0; cut < n; cut++)
        assert_int_equal(ob_delivery_decode(buf, cut, &d2), -EBADMSG);
    const uint8_t newer[] = {0x81, 0xa1, 'v', 0x09};
    assert_int_equal(ob_member_decode(newer, sizeof(newer), &m2), -ENOTSUP);
    assert_int_equal(ob_member_decode("\xc1", 1, &m2), -EBADMSG);
    assert_string_equal(ob_delivery_state_name(OB_D_SENDING), "sending");
    char id[OB_DELIVERY_ID_MAX];
    ob_delivery_id("3fa2c1d0e9b8aaaabbbbccccddddeeee", "team", &key, 1042, id);
    assert_string_equal(id, "kd-3fa2c1d0e9b8-team-3-B0D8W1YVBX-1042");
}

struct put {
    struct st_key a, b;
    char id[33];
};

/* Two alerts' records of product A (none of B), and the store's id. */
static int put_fn(struct st_txn *t, void *ud)
{
    struct put *p = ud;
    struct ob_member m = {true, 2, 1, 0, 9};
    static struct ob_delivery d;
    memset(&d, 0, sizeof(d));
    d.status = OB_D_PENDING;
    int rc = ob_member_put(t, "team", &p->a, &m);
    if (rc == 0)
        rc = ob_member_put(t, "other", &p->a, &m);
    if (rc == 0)
        rc = ob_delivery_put(t, "team", &p->a, 2, &d);
    if (rc == 0)
        rc = ob_delivery_put(t, "team", &p->a, 1, &d);
    if (rc == 0)
        rc = ob_store_id(t, p->id);
    return rc;
}

static void test_records_in_the_store(void **state)
{
    (void)state;
    char path[600];
    snprintf(path, sizeof(path), "%s/store", kd_test_tmpdir());
    struct st_options so = {.path = path, .map_size_bytes = 1u << 20};
    struct st_env *env;
    char err[256];
    assert_int_equal(st_open(&so, &env, err, sizeof(err)), 0);
    struct st_txn *txn;
    assert_int_equal(st_read_begin(env, &txn), 0);
    const void *v;
    size_t vl;
    /* Raw access is for the dbs other modules own. */
    assert_int_equal(st_raw_get(txn, ST_DB_PRODUCTS, "k", 1, &v, &vl), -EINVAL);
    st_read_end(txn);

    struct put p;
    st_key_make(1, "B000000001", &p.a);
    st_key_make(1, "B000000002", &p.b);
    assert_int_equal(st_write(env, put_fn, &p), 0);
    assert_int_equal(strlen(p.id), 32);

    assert_int_equal(st_read_begin(env, &txn), 0);
    struct ob_member m;
    assert_int_equal(ob_member_get(txn, "team", &p.a, &m), 0);
    assert_true(m.in_view);
    assert_int_equal(ob_member_get(txn, "team", &p.b, &m), -ENOENT);
    assert_int_equal(ob_member_get(txn, "other", &p.a, &m), 0);
    static struct ob_delivery d;
    assert_int_equal(ob_delivery_get(txn, "team", &p.a, 2, &d), 0);
    assert_int_equal(d.status, OB_D_PENDING);
    /* A walk from one alert's first key sees its records in order, then the next alert's. */
    struct st_cursor *cur;
    assert_int_equal(st_cursor_open(txn, ST_DB_ALERTS, &cur), 0);
    uint8_t from[OB_ALERT_KEY_LEN];
    memset(from, 0, sizeof(from));
    memcpy(from, "team", 4);
    const void *k;
    size_t kl;
    unsigned mine = 0;
    uint32_t last = 0;
    struct st_key key;
    uint32_t entry;
    while (st_cursor_next_raw(cur, from, sizeof(from), &k, &kl, &v, &vl) == 0 &&
           ob_alert_key_parse("team", k, kl, &key, &entry)) {
        assert_true(mine == 0 || entry > last);
        last = entry;
        mine++;
    }
    assert_int_equal(mine, 3); /* the membership and deliveries 1 and 2 */
    st_cursor_close(cur);
    char id[33];
    size_t n = 0;
    assert_int_equal(st_meta_get_bytes(txn, OB_META_STORE_ID, id, 32, &n), 0);
    assert_memory_equal(id, p.id, 32);
    st_read_end(txn);
    st_close(env);
}

static void load(const char *text, struct cfg *c)
{
    char path[600], err[512];
    snprintf(path, sizeof(path), "%s/kdeals.conf", kd_test_tmpdir());
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
    if (cfg_load_file(path, c, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    const struct cfg_named_checker *chk[] = {&ob_alert_checker};
    if (cfg_named_check(c, chk, 1, err, sizeof(err)) != 0)
        fail_msg("%s", err);
}

static int check(const char *text, char *err, size_t errlen)
{
    struct cfg c;
    char path[600];
    snprintf(path, sizeof(path), "%s/bad.conf", kd_test_tmpdir());
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
    int rc = cfg_load_file(path, &c, err, errlen);
    const struct cfg_named_checker *chk[] = {&ob_alert_checker};
    return rc != 0 ? rc : cfg_named_check(&c, chk, 1, err, errlen);
}

static void test_alert_sections(void **state)
{
    (void)state;
    static struct cfg c;
    char secret[600];
    snprintf(secret, sizeof(secret), "%s/s.secret", kd_test_tmpdir());
    FILE *f = fopen(secret, "w");
    fputs("abc\n", f);
    fclose(f);
    chmod(secret, 0600);
    char text[2048];
    snprintf(text, sizeof(text),
             "[view.good]\nmin_roi = 30\nmax_rank = 1000\n"
             "[alert.team]\nview = good\nmin_roi = 50\nurl = https://hooks.example/x\n"
             "format = slack\nsecret_file = %s\nquiet = 6h\nrate = 10\nburst = 2\n"
             "on_unknown = drop\n"
             "[alert.cmd]\ncommand = cat > /dev/null\n",
             secret);
    load(text, &c);
    static struct ob_alert a;
    char err[512];
    assert_int_equal(ob_alert_parse(&c, "team", &a, err, sizeof(err)), 0);
    assert_int_equal(a.filter.min_roi_bp, 5000); /* the section's own key wins */
    assert_int_equal(a.filter.max_rank, 1000);   /* the preset's */
    assert_int_equal(a.format, OB_FMT_SLACK);
    assert_int_equal(a.auth, OB_AUTH_HMAC);
    assert_int_equal(a.quiet_ms, 6 * 3600 * 1000LL);
    assert_int_equal(a.rate_per_min, 10);
    assert_int_equal(a.burst, 2);
    assert_false(a.resend_unknown);
    assert_string_equal(a.secret_file, secret);
    assert_int_equal(ob_alert_parse(&c, "cmd", &a, err, sizeof(err)), 0);
    assert_string_equal(a.command, "cat > /dev/null");
    assert_int_equal(a.rate_per_min, 20); /* defaults */
    assert_true(a.resend_unknown);
    assert_int_equal(ob_alert_parse(&c, "nope", &a, err, sizeof(err)), -ENOENT);

    /* Errors name the file, the line, the key. */
    assert_int_equal(check("[alert.x]\nurl = ftp://x\n", err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, ":2: [alert.x] url"));
    assert_int_equal(check("[alert.x]\nurl = http://x\nview = missing\n", err, sizeof(err)),
                     -EINVAL);
    assert_non_null(strstr(err, "no [view.missing]"));
    assert_int_equal(check("[alert.x]\nurl = http://x\nlimit = 5\n", err, sizeof(err)), -EINVAL);
    assert_int_equal(check("[alert.x]\nurl = http://x\nauth = bearer\n", err, sizeof(err)),
                     -EINVAL);
    assert_non_null(strstr(err, "auth needs secret_file"));
    assert_int_equal(check("[alert.x]\ncommand = true\nformat = xml\n", err, sizeof(err)), -EINVAL);
    assert_int_equal(check("[alert.x]\ncommand = true\nquiet = soon\n", err, sizeof(err)), -EINVAL);
    chmod(secret, 0640);
    snprintf(text, sizeof(text), "[alert.x]\nurl = http://x\nsecret_file = %s\n", secret);
    assert_int_equal(check(text, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "chmod 600"));
}

static void test_bodies(void **state)
{
    (void)state;
    static struct cfg c;
    load("[alert.j]\ncommand = true\n[alert.s]\nurl = http://x\nformat = slack\n"
         "[alert.d]\nurl = http://x\nformat = discord\n[alert.t]\nurl = http://x\nformat = teams\n",
         &c);
    static struct st_record r;
    st_record_init(&r);
    snprintf(r.asin, sizeof(r.asin), "B0D8W1YVBX");
    r.domain = 1;
    st_record_set_title(&r, "A \"quoted\" title \xff with a bad byte", 36);
    r.state = ST_STATE_DEAL;
    r.v.priced = true;
    r.v.buy_cents = 1000;
    r.v.sell_cents = 2499;
    r.v.profit_cents = 710;
    r.v.roi_bp = 3125;
    struct jd_rules rules;
    jd_rules_from_cfg(&c, &rules);
    struct ob_body_info info = {"kd-x-j-1-B0D8W1YVBX-9", "j", "host/default", 1, 1764000000000};
    const struct {
        const char *alert, *top, *has;
    } cases[] = {{"j", "kdeals", "deal.entered_view"},
                 {"s", "text", "profit $7.10 (ROI 31.2%)"},
                 {"d", "content", "embeds"},
                 {"t", "@type", "MessageCard"}};
    for (size_t i = 0; i < 4; i++) {
        static struct ob_alert a;
        char err[256];
        assert_int_equal(ob_alert_parse(&c, cases[i].alert, &a, err, sizeof(err)), 0);
        char *b1, *b2;
        size_t l1, l2;
        assert_int_equal(ob_body(&a, &r, &info, &rules, &b1, &l1), 0);
        assert_int_equal(ob_body(&a, &r, &info, &rules, &b2, &l2), 0);
        assert_int_equal(l1, l2); /* the same bytes on every attempt */
        assert_memory_equal(b1, b2, l1);
        char perr[256];
        yajl_val v = yajl_tree_parse(b1, perr, sizeof(perr));
        if (v == NULL)
            fail_msg("%s body is not JSON (%s): %s", cases[i].alert, perr, b1);
        assert_string_equal(YAJL_GET_OBJECT(v)->keys[0], cases[i].top);
        if (strstr(b1, cases[i].has) == NULL)
            fail_msg("%s body lacks %s: %s", cases[i].alert, cases[i].has, b1);
        yajl_tree_free(v);
        free(b1);
        free(b2);
    }
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keys_and_codecs),
        cmocka_unit_test(test_records_in_the_store),
        cmocka_unit_test(test_alert_sections),
        cmocka_unit_test(test_bodies),
    };
    return KD_RUN_TESTS(tests, argc, argv);
}
