/*
 * mark.c: `kdeals mark`: the seller says what they did with a product.
 *
 *   kdeals mark ASIN bought [--cost X] [--qty N]   bought it (at X per unit, N units)
 *   kdeals mark ASIN ignored                       not interested
 *   kdeals mark ASIN clear                         no mark
 *
 * A mark is written into the product's record in the store by a short write transaction of
 * this command (LMDB serialises it with the daemon's writers, which never wait long for it),
 * through st_record_put with ST_EV_MARK, so the change log carries it to the alerts, the
 * mirror and `kdeals deals --follow`; the history is left alone (a mark changes no verdict).
 * Every writer of the daemon reads a record, changes its judgement and puts it back in one
 * transaction, so a mark survives re-checks, re-judges, full fetches and restarts.
 *
 * Marked records leave the default view (`kdeals deals --marked` shows them). A bought cost
 * is the seller's own cost per unit: the view shows the figures at that cost beside the
 * estimate (docs/view.md). Money is read in the marketplace's currency, never cents.
 */
#include "cli/mark.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "cli/deals.h"
#include "judge/market.h"
#include "store/record.h"
#include "store/store.h"

static int usage(FILE *out)
{
    fprintf(out, "usage: kdeals mark [-c FILE] ASIN bought [--cost X] [--qty N]\n"
                 "       kdeals mark [-c FILE] ASIN ignored|clear\n"
                 "  Marks a stored product: bought (at your cost X per unit, in the marketplace's\n"
                 "  currency, e.g. 12.50; N units, default 1), ignored, or clear. Marked products\n"
                 "  leave the default view of kdeals deals (--marked shows them) and keep their\n"
                 "  history; the daemon keeps the mark when it checks them again. Safe while the\n"
                 "  daemon runs.\n");
    return out == stdout ? 0 : 2;
}

struct mark_req {
    struct st_key key;
    uint8_t mark;
    int64_t cost_cents; /* -1 none */
    int32_t qty;
    int64_t now_ms;
    struct st_record before, after; /* filled by the transaction */
};

static int mark_fn(struct st_txn *txn, void *ud)
{
    struct mark_req *m = ud;
    int rc = st_record_get(txn, &m->key, &m->before);
    if (rc != 0)
        return rc;
    struct st_record r = m->before;
    st_record_mark(&r, m->mark, m->cost_cents, m->qty, m->now_ms);
    rc = st_record_put(txn, &r, ST_EV_MARK, m->now_ms);
    if (rc == 0)
        m->after = r;
    return rc;
}

static bool read_qty(const char *s, int32_t *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s || *end != '\0' || v < 1 || v > 1000000)
        return false;
    *out = (int32_t)v;
    return true;
}

int cli_mark_main(const struct cfg *c, int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            return usage(stdout);
    if (argc < 3)
        return usage(stderr);
    unsigned domain = (unsigned)c->keepa_domain;
    struct mark_req m = {.cost_cents = -1, .qty = 1, .now_ms = kd_wall_ms()};
    const char *asin = argv[1], *what = argv[2];
    if (st_key_make(domain, asin, &m.key) != 0) {
        fprintf(stderr, "kdeals mark: '%s' is not an ASIN (10 capital letters and digits)\n", asin);
        return 2;
    }
    if (strcmp(what, "bought") == 0)
        m.mark = ST_MARK_BOUGHT;
    else if (strcmp(what, "ignored") == 0)
        m.mark = ST_MARK_IGNORED;
    else if (strcmp(what, "clear") == 0)
        m.mark = ST_MARK_NONE;
    else {
        fprintf(stderr, "kdeals mark: '%s': say bought, ignored or clear\n", what);
        return 2;
    }
    for (int i = 3; i < argc; i++) {
        bool has = i + 1 < argc;
        if (m.mark == ST_MARK_BOUGHT && strcmp(argv[i], "--cost") == 0 && has) {
            if (jd_money_parse(domain, argv[++i], &m.cost_cents) != 0 || m.cost_cents < 0) {
                const struct jd_market *mk = jd_market(domain);
                fprintf(stderr,
                        "kdeals mark: --cost '%s': your cost per unit in %s, e.g. %s (not "
                        "cents)\n",
                        argv[i], mk != NULL ? mk->currency : "the marketplace's currency",
                        mk != NULL && mk->decimals == 0 ? "1500" : "12.50");
                return 2;
            }
        } else if (m.mark == ST_MARK_BOUGHT && strcmp(argv[i], "--qty") == 0 && has) {
            if (!read_qty(argv[++i], &m.qty)) {
                fprintf(stderr, "kdeals mark: --qty '%s': a number of units, 1 or more\n", argv[i]);
                return 2;
            }
        } else {
            fprintf(stderr, "kdeals mark: unexpected '%s'%s\n", argv[i],
                    m.mark == ST_MARK_BOUGHT ? " (bought takes --cost X and --qty N)"
                                             : " (only bought takes options)");
            return 2;
        }
    }

    struct st_options so = cli_store_options(c);
    struct st_env *env;
    char err[512];
    if (st_open_existing_rw(&so, &env, err, sizeof(err)) != 0) {
        fprintf(stderr, "kdeals mark: %s\n", err);
        return 1;
    }
    int rc = st_write(env, mark_fn, &m);
    st_close(env);
    if (rc == -ENOENT) {
        fprintf(stderr,
                "kdeals mark: %s is not in the store %s (only fully fetched products are kept; "
                "kdeals deals --verdict all lists them)\n",
                asin, c->store_path);
        return 1;
    }
    if (rc != 0) {
        fprintf(stderr, "kdeals mark: cannot write %s: %s\n", c->store_path, st_strerror(rc));
        return 1;
    }
    char cost[48] = "";
    if (m.mark == ST_MARK_BOUGHT && m.cost_cents >= 0) {
        char money[32];
        jd_money(domain, m.cost_cents, money, sizeof(money));
        snprintf(cost, sizeof(cost), " at %s", money);
    }
    char qty[32] = "";
    if (m.mark == ST_MARK_BOUGHT)
        snprintf(qty, sizeof(qty), ", %d unit%s", (int)m.qty, m.qty == 1 ? "" : "s");
    printf("%s: %s%s%s (was %s)%s\n", m.after.asin, st_mark_name(m.mark), cost, qty,
           st_mark_name(m.before.mark),
           m.mark != ST_MARK_NONE ? "; kdeals deals --marked shows it" : "");
    return 0;
}
