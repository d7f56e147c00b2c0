/*
 * alerts.c: `kdeals alerts`: list the alerts and their deliveries, send dead letters again, send
 * a test message (docs/alerts.md).
 *
 * It reads the store the outbox writes (outbox/alertdb.h) and never talks to the outbox: `list`
 * reads one snapshot; `retry` turns dead letters back into pending deliveries in one write
 * transaction and bumps the alert's kick counter, which the outbox notices at its next step;
 * `test` builds a delivery like the outbox would and sends it from this process, recording
 * nothing.
 */
#include "cli/alerts.h"

#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/clock.h"
#include "cli/deals.h"
#include "cli/json.h"
#include "judge/rules.h"
#include "outbox/alertcfg.h"
#include "outbox/alertdb.h"
#include "outbox/deliver.h"
#include "view/time.h"

static int usage(FILE *out)
{
    fprintf(out,
            "usage: kdeals alerts [list] [NAME] [--all] [--json]\n"
            "       kdeals alerts retry NAME [ASIN...]\n"
            "       kdeals alerts test NAME\n"
            "  list    every [alert.NAME] of the config with its target, position and deliveries\n"
            "          by status; with NAME, its deliveries not yet sent (--all: every one)\n"
            "  retry   sends NAME's dead letters again (those of the ASINs given, or all), from\n"
            "          attempt 1; the running outbox picks them up within a second\n"
            "  test    sends one test delivery to NAME's target now (the best deal in its view,\n"
            "          or a made-up one), with delivery id test-<time>, and prints the outcome\n");
    return out == stdout ? 0 : 2;
}

/* Counts of one alert's records, and its position. */
struct summary {
    uint64_t by_status[OB_D_COUNT];
    uint64_t in_view, members;
    uint64_t pos, last;
    bool have_pos;
};

static int walk(struct st_txn *txn, const char *alert,
                int (*fn)(const struct st_key *key, uint32_t entry, const void *v, size_t vl,
                          void *ud),
                void *ud)
{
    uint8_t from[OB_ALERT_KEY_LEN];
    memset(from, 0, sizeof(from));
    memcpy(from, alert, strlen(alert));
    struct st_cursor *cur;
    int rc = st_cursor_open(txn, ST_DB_ALERTS, &cur);
    if (rc != 0)
        return rc;
    const void *k, *v;
    size_t kl, vl;
    while ((rc = st_cursor_next_raw(cur, from, sizeof(from), &k, &kl, &v, &vl)) == 0) {
        struct st_key key;
        uint32_t entry;
        if (!ob_alert_key_parse(alert, k, kl, &key, &entry))
            break;
        if ((rc = fn(&key, entry, v, vl, ud)) != 0)
            break;
    }
    st_cursor_close(cur);
    return rc == -ENOENT ? 0 : rc;
}

static int count_fn(const struct st_key *key, uint32_t entry, const void *v, size_t vl, void *ud)
{
    (void)key;
    struct summary *s = ud;
    if (entry == 0) {
        struct ob_member m;
        if (ob_member_decode(v, vl, &m) == 0) {
            s->members++;
            s->in_view += m.in_view;
        }
        return 0;
    }
    static struct ob_delivery d;
    if (ob_delivery_decode(v, vl, &d) == 0)
        s->by_status[d.status]++;
    return 0;
}

static int summarise(struct st_txn *txn, const char *alert, struct summary *s)
{
    memset(s, 0, sizeof(*s));
    char name[64];
    int rc = st_meta_get_u64(txn, ob_alert_meta(alert, "seq", name), &s->pos);
    s->have_pos = rc == 0;
    if (st_meta_get_u64(txn, ST_META_CHANGES_SEQ, &s->last) != 0)
        s->last = 0;
    return walk(txn, alert, count_fn, s);
}

struct listing {
    const char *alert;
    const char *store_id;
    bool all, json;
    yajl_gen g;
    unsigned shown;
};

static int list_fn(const struct st_key *key, uint32_t entry, const void *v, size_t vl, void *ud)
{
    struct listing *ls = ud;
    if (entry == 0)
        return 0;
    static struct ob_delivery d;
    if (ob_delivery_decode(v, vl, &d) != 0 || (!ls->all && d.status == OB_D_SENT))
        return 0;
    char asin[ST_ASIN_LEN + 1], id[OB_DELIVERY_ID_MAX], entered[40], next[40];
    st_key_asin(key, asin);
    ob_delivery_id(ls->store_id, ls->alert, key, d.seq, id);
    vw_time_iso(d.entered_ms, entered, sizeof(entered));
    vw_time_iso(d.next_ms, next, sizeof(next));
    ls->shown++;
    if (ls->json) {
        yajl_gen g = ls->g;
        yajl_gen_map_open(g);
        cli_json_str(g, "delivery_id", id);
        cli_json_str(g, "asin", asin);
        cli_json_int(g, "domain", st_key_domain(key));
        cli_json_int(g, "entry", entry);
        cli_json_str(g, "status", ob_delivery_state_name(d.status));
        cli_json_int(g, "attempts", d.attempts);
        cli_json_str(g, "entered_at", entered);
        cli_json_str(g, "next_attempt_at", d.status == OB_D_PENDING ? next : NULL);
        cli_json_int(g, "last_status", d.last_status);
        cli_json_str(g, "last_error", d.last_error[0] ? d.last_error : NULL);
        yajl_gen_map_close(g);
        return 0;
    }
    printf("%-10s %-5u %-8s %8" PRIu32 "  %-24s %-24s %s%s%s\n", asin, entry,
           ob_delivery_state_name(d.status), d.attempts, entered,
           d.status == OB_D_PENDING ? next : "-", id, d.last_error[0] ? "  " : "", d.last_error);
    return 0;
}

static void target_text(const struct ob_alert *a, char *buf, size_t len)
{
    if (a->url[0] != '\0') {
        /* scheme://host only: the path of a chat webhook is its secret. */
        const char *p = strstr(a->url, "://");
        size_t n = p ? (size_t)(p + 3 - a->url) + strcspn(p + 3, "/?") : strlen(a->url);
        snprintf(buf, len, "%s %.*s/... (%s)", "webhook", (int)n, a->url,
                 ob_format_name(a->format));
    } else {
        snprintf(buf, len, "command %s", a->command);
    }
}

static int cmd_list(const struct cfg *c, struct st_env *env, const char *only, bool all, bool json)
{
    struct st_txn *txn;
    int rc = st_read_begin(env, &txn);
    if (rc != 0)
        return rc;
    char store_id[33] = "????????????";
    size_t n = 0;
    if (st_meta_get_bytes(txn, OB_META_STORE_ID, store_id, 32, &n) == 0 && n == 32)
        store_id[32] = '\0';
    yajl_gen g = json ? cli_json_new(false) : NULL;
    if (g != NULL)
        yajl_gen_array_open(g);
    unsigned found = 0;
    for (size_t i = 0; rc == 0 && i < c->n_named; i++) {
        const struct cfg_named *s = &c->named[i];
        if (s->kind != CFG_NAMED_alert || (only != NULL && strcmp(only, s->name) != 0))
            continue;
        found++;
        static struct ob_alert a;
        char err[512], target[CFG_STR_MAX + 64], view[512];
        if (ob_alert_parse(c, s->name, &a, err, sizeof(err)) != 0) {
            fprintf(stderr, "kdeals alerts: %s\n", err);
            continue;
        }
        target_text(&a, target, sizeof(target));
        vw_filter_format(&a.filter, view, sizeof(view));
        for (char *p = view; *p; p++)
            if (*p == '\n')
                *p = p[1] ? ' ' : '\0';
        struct summary sm;
        if ((rc = summarise(txn, s->name, &sm)) != 0)
            break;
        if (json) {
            yajl_gen_map_open(g);
            cli_json_str(g, "alert", s->name);
            cli_json_str(g, "target", target);
            cli_json_str(g, "view", view[0] ? view : "verdict=deal");
            cli_json_int(g, "position", (long long)sm.pos);
            cli_json_int(g, "lag", sm.have_pos ? (long long)(sm.last - sm.pos) : -1);
            cli_json_int(g, "in_view", (long long)sm.in_view);
            for (unsigned st = OB_D_PENDING; st < OB_D_COUNT; st++)
                cli_json_int(g, ob_delivery_state_name(st), (long long)sm.by_status[st]);
            if (only != NULL) {
                cli_json_key(g, "deliveries");
                yajl_gen_array_open(g);
                struct listing ls = {s->name, store_id, all, true, g, 0};
                rc = walk(txn, s->name, list_fn, &ls);
                yajl_gen_array_close(g);
            }
            yajl_gen_map_close(g);
            continue;
        }
        printf("alert %s: %s\n  view: %s\n", s->name, target, view[0] ? view : "verdict=deal");
        if (sm.have_pos)
            printf("  position: change %" PRIu64 " of %" PRIu64 "; %" PRIu64
                   " products in the view\n",
                   sm.pos, sm.last, sm.in_view);
        else
            printf("  not started yet (the outbox records its start)\n");
        printf("  deliveries: %" PRIu64 " pending, %" PRIu64 " sending, %" PRIu64 " sent, %" PRIu64
               " dead, %" PRIu64 " dropped\n",
               sm.by_status[OB_D_PENDING], sm.by_status[OB_D_SENDING], sm.by_status[OB_D_SENT],
               sm.by_status[OB_D_DEAD], sm.by_status[OB_D_DROPPED]);
        if (only != NULL) {
            printf("\n%-10s %-5s %-8s %8s  %-24s %-24s %s\n", "ASIN", "ENTRY", "STATUS", "ATTEMPTS",
                   "ENTERED", "NEXT", "DELIVERY ID / LAST ERROR");
            struct listing ls = {s->name, store_id, all, false, NULL, 0};
            rc = walk(txn, s->name, list_fn, &ls);
            if (ls.shown == 0)
                printf("(none%s)\n", all ? "" : " waiting; --all lists the sent ones too");
        }
    }
    st_read_end(txn);
    if (g != NULL) {
        yajl_gen_array_close(g);
        cli_json_print(g, stdout);
    }
    if (rc == 0 && found == 0) {
        if (only != NULL)
            fprintf(stderr, "kdeals alerts: the config has no [alert.%s]\n", only);
        else if (!json)
            printf("no [alert.NAME] section in the config (docs/alerts.md)\n");
        return only != NULL ? -ENOENT : 0;
    }
    return rc;
}

struct retry {
    const char *alert;
    char *const *asins;
    int n_asins;
    unsigned retried;
    struct st_key *keys;
    uint32_t *entries;
    size_t n, cap;
};

static int retry_collect(const struct st_key *key, uint32_t entry, const void *v, size_t vl,
                         void *ud)
{
    struct retry *r = ud;
    if (entry == 0)
        return 0;
    static struct ob_delivery d;
    if (ob_delivery_decode(v, vl, &d) != 0 || (d.status != OB_D_DEAD && d.status != OB_D_DROPPED))
        return 0;
    char asin[ST_ASIN_LEN + 1];
    st_key_asin(key, asin);
    bool wanted = r->n_asins == 0;
    for (int i = 0; i < r->n_asins && !wanted; i++)
        wanted = strcmp(r->asins[i], asin) == 0;
    if (!wanted)
        return 0;
    if (r->n == r->cap) {
        r->cap = r->cap ? 2 * r->cap : 64;
        struct st_key *k = realloc(r->keys, r->cap * sizeof(*k));
        uint32_t *e = realloc(r->entries, r->cap * sizeof(*e));
        if (k != NULL)
            r->keys = k;
        if (e != NULL)
            r->entries = e;
        if (k == NULL || e == NULL)
            return -ENOMEM;
    }
    r->keys[r->n] = *key;
    r->entries[r->n++] = entry;
    return 0;
}

static int retry_fn(struct st_txn *txn, void *ud)
{
    struct retry *r = ud;
    r->n = 0;
    r->retried = 0;
    int rc = walk(txn, r->alert, retry_collect, r);
    int64_t now = kd_wall_ms();
    static struct ob_delivery d;
    for (size_t i = 0; rc == 0 && i < r->n; i++) {
        if ((rc = ob_delivery_get(txn, r->alert, &r->keys[i], r->entries[i], &d)) != 0)
            break;
        d.status = OB_D_PENDING;
        d.attempts = 0;
        d.next_ms = now;
        snprintf(d.last_error, sizeof(d.last_error), "sent again by kdeals alerts retry");
        rc = ob_delivery_put(txn, r->alert, &r->keys[i], r->entries[i], &d);
        r->retried++;
    }
    char name[64];
    ob_alert_meta(r->alert, "kick", name);
    uint64_t kick = 0;
    if (rc == 0) {
        int g = st_meta_get_u64(txn, name, &kick);
        if (g != 0 && g != -ENOENT)
            rc = g;
    }
    if (rc == 0)
        rc = st_meta_put_u64(txn, name, kick + 1); /* the outbox reads its deliveries again */
    return rc;
}

/* A made-up deal for `kdeals alerts test` when no stored record is in the view. */
static void sample_record(const struct cfg *c, struct st_record *r)
{
    st_record_init(r);
    snprintf(r->asin, sizeof(r->asin), "B000000000");
    r->domain = (uint8_t)c->keepa_domain;
    st_record_set_title(r, "kdeals test alert (not a real product)", 38);
    r->state = ST_STATE_DEAL;
}

static int cmd_test(const struct cfg *c, struct st_env *env, const char *name)
{
    static struct ob_alert a;
    char err[512];
    int rc = ob_alert_parse(c, name, &a, err, sizeof(err));
    if (rc != 0) {
        fprintf(stderr, "kdeals alerts: %s\n", err);
        return 2;
    }
    static struct st_record best, r;
    bool have = false;
    int64_t now = kd_wall_ms();
    if (env != NULL) {
        struct st_txn *txn;
        struct st_cursor *cur;
        if (st_read_begin(env, &txn) == 0) {
            if (st_cursor_open(txn, ST_DB_PRODUCTS, &cur) == 0) {
                while (st_cursor_next_record(cur, &r) != -ENOENT) {
                    if (vw_match(&r, &a.filter, now) &&
                        (!have || (r.v.priced && r.v.roi_bp > best.v.roi_bp))) {
                        best = r;
                        have = true;
                    }
                }
                st_cursor_close(cur);
            }
            st_read_end(txn);
        }
    }
    if (!have)
        sample_record(c, &best);
    char id[OB_DELIVERY_ID_MAX];
    snprintf(id, sizeof(id), "test-%" PRId64, now);
    char instance[128];
    char host[64] = "localhost";
    gethostname(host, sizeof(host) - 1);
    snprintf(instance, sizeof(instance), "%.63s/%.32s", host, c->daemon_instance);
    struct ob_body_info info = {id, name, instance, 0, now};
    struct jd_rules rules;
    jd_rules_from_cfg(c, &rules);
    char *body = NULL;
    size_t len = 0;
    if (ob_body(&a, &best, &info, &rules, &body, &len) != 0) {
        fprintf(stderr, "kdeals alerts: out of memory\n");
        return 1;
    }
    char secret[OB_SECRET_MAX];
    size_t slen = 0;
    if (a.secret_file[0] != '\0' && ob_secret_read(&a, secret, &slen, err, sizeof(err)) != 0) {
        fprintf(stderr, "kdeals alerts: %s\n", err);
        free(body);
        return 1;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    struct ob_outcome o;
    ob_deliver(&a, slen > 0 ? secret : NULL, slen, id, 1, body, len, NULL, NULL, &o);
    explicit_bzero(secret, sizeof(secret));
    curl_global_cleanup();
    free(body);
    char target[CFG_STR_MAX + 64];
    target_text(&a, target, sizeof(target));
    if (o.result == OB_DELIVERED) {
        printf("alert %s: test delivery %s (%s %s) delivered to %s\n", name, id,
               have ? "deal" : "made-up product", best.asin, target);
        return 0;
    }
    printf("alert %s: test delivery %s to %s failed: %s\n", name, id, target, o.error);
    return 1;
}

int cli_alerts_main(const struct cfg *c, int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            return usage(stdout);
    const char *verb = argc > 1 && argv[1][0] != '-' ? argv[1] : "list";
    int first = argc > 1 && argv[1][0] != '-' ? 2 : 1;
    bool all = false, json = false;
    const char *name = NULL;
    char *asins[64];
    int n_asins = 0;
    if (strcmp(verb, "list") != 0 && strcmp(verb, "retry") != 0 && strcmp(verb, "test") != 0) {
        name = verb; /* `kdeals alerts NAME` lists NAME */
        verb = "list";
    }
    for (int i = first; i < argc; i++) {
        if (strcmp(argv[i], "--all") == 0 && strcmp(verb, "list") == 0)
            all = true;
        else if (strcmp(argv[i], "--json") == 0 && strcmp(verb, "list") == 0)
            json = true;
        else if (argv[i][0] == '-')
            return usage(stderr);
        else if (name == NULL)
            name = argv[i];
        else if (strcmp(verb, "retry") == 0 && n_asins < 64)
            asins[n_asins++] = argv[i];
        else
            return usage(stderr);
    }
    if (strcmp(verb, "list") != 0 && name == NULL)
        return usage(stderr);
    char err[512];
    struct st_options so = cli_store_options(c);
    struct st_env *env = NULL;
    int rc;
    if (strcmp(verb, "retry") == 0)
        rc = st_open(&so, &env, err, sizeof(err));
    else
        rc = st_open_existing(&so, &env, err, sizeof(err));
    if (rc != 0 && !(strcmp(verb, "test") == 0 && rc == -ENOENT)) {
        fprintf(stderr, "kdeals alerts: %s\n", err);
        return 1;
    }
    if (rc != 0)
        env = NULL;
    int code = 0;
    if (strcmp(verb, "test") == 0) {
        code = cmd_test(c, env, name);
    } else if (strcmp(verb, "retry") == 0) {
        static struct ob_alert a;
        if (ob_alert_parse(c, name, &a, err, sizeof(err)) != 0) {
            fprintf(stderr, "kdeals alerts: %s\n", err);
            code = 2;
        } else {
            struct retry r = {.alert = name, .asins = asins, .n_asins = n_asins};
            rc = st_write(env, retry_fn, &r);
            free(r.keys);
            free(r.entries);
            if (rc != 0) {
                fprintf(stderr, "kdeals alerts: cannot write %s: %s\n", c->store_path,
                        st_strerror(rc));
                code = 1;
            } else {
                printf("alert %s: %u dead letter(s) to be sent again\n", name, r.retried);
            }
        }
    } else {
        rc = cmd_list(c, env, name, all, json);
        code = rc == -ENOENT ? 2 : rc != 0 ? 1 : 0;
        if (rc != 0 && rc != -ENOENT)
            fprintf(stderr, "kdeals alerts: cannot read %s: %s\n", c->store_path, st_strerror(rc));
    }
    st_close(env);
    return code;
}
