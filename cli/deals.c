/*
 * deals.c: `kdeals deals` lists the stored deals as a table, CSV or JSON.
 *
 * It reads one LMDB snapshot (a read transaction never blocks the writers and sees a
 * consistent store), filters and sorts in memory, and prints. The table fits an 80-column
 * terminal; CSV follows RFC 4180 (every field that holds a comma, a quote or a line break is
 * quoted, quotes doubled) so spreadsheets open it; JSON is an array of objects whose field
 * names are stable and carry their unit (_cents, _pct, _ms), written with yajl's generator so
 * any title is escaped correctly.
 */
#include "cli/deals.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "cli/json.h"
#include "store/store.h"

enum deals_format { FMT_TABLE, FMT_CSV, FMT_JSON };
enum deals_sort { SORT_ROI, SORT_PROFIT, SORT_RANK, SORT_CHECKED };

struct deals_opts {
    enum deals_format format;
    enum deals_sort sort;
    long limit; /* 0: all */
    int64_t min_roi_bp;
    int64_t min_profit_cents;
    int have_min_roi, have_min_profit;
};

static int usage(FILE *out)
{
    fprintf(
        out,
        "usage: kdeals deals [-c FILE] [--format table|csv|json] [--sort roi|profit|rank|checked]\n"
        "                    [--limit N] [--min-roi PCT] [--min-profit CENTS]\n"
        "  Lists the stored deals (read-only; safe while the daemon runs).\n"
        "  --sort: roi and profit highest first, rank lowest first, checked newest first.\n");
    return out == stdout ? 0 : 2;
}

static int cmp_deal(const void *a, const void *b, void *arg)
{
    const struct st_deal *x = a, *y = b;
    enum deals_sort s = *(const enum deals_sort *)arg;
    int64_t kx, ky;
    switch (s) {
    case SORT_PROFIT:
        kx = y->profit_cents, ky = x->profit_cents;
        break;
    case SORT_RANK:
        kx = x->sales_rank > 0 ? x->sales_rank : INT64_MAX;
        ky = y->sales_rank > 0 ? y->sales_rank : INT64_MAX;
        break;
    case SORT_CHECKED:
        kx = y->last_checked_ms, ky = x->last_checked_ms;
        break;
    default:
        kx = y->roi_bp, ky = x->roi_bp;
        break;
    }
    if (kx != ky)
        return kx < ky ? -1 : 1;
    return strcmp(x->asin, y->asin);
}

static void csv_field(FILE *out, const char *s)
{
    if (strpbrk(s, ",\"\r\n") == NULL) {
        fputs(s, out);
        return;
    }
    fputc('"', out);
    for (; *s; s++) {
        if (*s == '"')
            fputc('"', out);
        fputc(*s, out);
    }
    fputc('"', out);
}

static const char *const csv_header = "asin,domain,title,buy_price_cents,buy_shipping_cents,"
                                      "buy_condition,buy_seller_id,buy_is_fba,landed_buy_cents,"
                                      "expected_sell_cents,referral_fee_cents,fba_fee_cents,"
                                      "profit_cents,margin_pct,roi_pct,sales_rank,rank_drops_30,"
                                      "rank_drops_90,rank_drops_365,buy_box_cents,first_seen_ms,"
                                      "last_checked_ms";

static void print_csv(const struct st_deal *d, size_t n, FILE *out)
{
    fprintf(out, "%s\r\n", csv_header);
    for (size_t i = 0; i < n; i++) {
        const struct st_deal *x = &d[i];
        fprintf(out, "%s,%u,", x->asin, (unsigned)x->domain);
        csv_field(out, x->title);
        fprintf(out, ",%" PRId64 ",%" PRId64 ",%u,", x->buy_price_cents, x->buy_shipping_cents,
                (unsigned)x->buy_condition);
        csv_field(out, x->buy_seller_id);
        fprintf(out,
                ",%s,%" PRId64 ",%" PRId64 ",%" PRId64 ",%" PRId64 ",%" PRId64 ",%.2f,%.2f,%" PRId64
                ",%d,%d,%d,%" PRId64 ",%" PRId64 ",%" PRId64 "\r\n",
                x->buy_is_fba ? "true" : "false", x->landed_buy_cents, x->expected_sell_cents,
                x->referral_fee_cents, x->fba_fee_cents, x->profit_cents, x->margin_bp / 100.0,
                x->roi_bp / 100.0, x->sales_rank, x->rank_drops_30, x->rank_drops_90,
                x->rank_drops_365, x->buy_box_cents, x->first_seen_ms, x->last_checked_ms);
    }
}

static void print_json(const struct st_deal *d, size_t n, FILE *out)
{
    yajl_gen g = cli_json_new(false);
    yajl_gen_array_open(g);
    for (size_t i = 0; i < n; i++) {
        const struct st_deal *x = &d[i];
        yajl_gen_map_open(g);
        cli_json_str(g, "asin", x->asin);
        cli_json_int(g, "domain", x->domain);
        cli_json_key(g, "title");
        if (yajl_gen_string(g, (const unsigned char *)x->title, strlen(x->title)) !=
            yajl_gen_status_ok)
            cli_json_string(g, "");
        cli_json_int(g, "buy_price_cents", x->buy_price_cents);
        cli_json_int(g, "buy_shipping_cents", x->buy_shipping_cents);
        cli_json_int(g, "buy_condition", x->buy_condition);
        cli_json_str(g, "buy_seller_id", x->buy_seller_id);
        cli_json_bool(g, "buy_is_fba", x->buy_is_fba);
        cli_json_int(g, "landed_buy_cents", x->landed_buy_cents);
        cli_json_int(g, "expected_sell_cents", x->expected_sell_cents);
        cli_json_int(g, "referral_fee_cents", x->referral_fee_cents);
        cli_json_int(g, "fba_fee_cents", x->fba_fee_cents);
        cli_json_int(g, "profit_cents", x->profit_cents);
        cli_json_dbl(g, "margin_pct", x->margin_bp / 100.0);
        cli_json_dbl(g, "roi_pct", x->roi_bp / 100.0);
        cli_json_int(g, "sales_rank", x->sales_rank);
        cli_json_int(g, "rank_drops_30", x->rank_drops_30);
        cli_json_int(g, "rank_drops_90", x->rank_drops_90);
        cli_json_int(g, "rank_drops_365", x->rank_drops_365);
        cli_json_int(g, "buy_box_cents", x->buy_box_cents);
        cli_json_int(g, "first_seen_ms", x->first_seen_ms);
        cli_json_int(g, "last_checked_ms", x->last_checked_ms);
        yajl_gen_map_close(g);
    }
    yajl_gen_array_close(g);
    cli_json_print(g, out);
}

static void money(char *buf, size_t len, int64_t cents)
{
    if (cents < 0)
        snprintf(buf, len, "-%" PRId64 ".%02" PRId64, -cents / 100, -cents % 100);
    else
        snprintf(buf, len, "%" PRId64 ".%02" PRId64, cents / 100, cents % 100);
}

static void print_table(const struct st_deal *d, size_t n, FILE *out)
{
    int64_t now = kd_wall_ms();
    fprintf(out, "%-10s %-24s %8s %8s %8s %6s %8s %7s\n", "ASIN", "TITLE", "BUY", "SELL", "PROFIT",
            "ROI%", "RANK", "CHECKED");
    for (size_t i = 0; i < n; i++) {
        const struct st_deal *x = &d[i];
        char title[25], buy[32], sell[32], profit[32], age[32];
        /* Cut at 24 bytes without splitting a UTF-8 sequence. */
        size_t tl = strlen(x->title);
        if (tl > 24) {
            tl = 24;
            while (tl > 0 && ((unsigned char)x->title[tl] & 0xC0) == 0x80)
                tl--;
        }
        memcpy(title, x->title, tl);
        title[tl] = '\0';
        for (size_t k = 0; k < tl; k++) {
            if ((unsigned char)title[k] < 0x20)
                title[k] = ' ';
        }
        money(buy, sizeof(buy), x->landed_buy_cents);
        money(sell, sizeof(sell), x->expected_sell_cents);
        money(profit, sizeof(profit), x->profit_cents);
        int64_t mins = x->last_checked_ms > 0 ? (now - x->last_checked_ms) / 60000 : -1;
        if (mins < 0)
            snprintf(age, sizeof(age), "-");
        else if (mins < 120)
            snprintf(age, sizeof(age), "%" PRId64 "m", mins);
        else
            snprintf(age, sizeof(age), "%" PRId64 "h", mins / 60);
        fprintf(out, "%-10s %-24s %8s %8s %8s %6.1f %8" PRId64 " %7s\n", x->asin, title, buy, sell,
                profit, x->roi_bp / 100.0, x->sales_rank, age);
    }
    fprintf(out, "%zu deal%s\n", n, n == 1 ? "" : "s");
}

static int parse_pct_bp(const char *s, int64_t *bp)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end != '\0' || v < -1e6 || v > 1e6)
        return -EINVAL;
    *bp = (int64_t)(v * 100.0 + (v >= 0 ? 0.5 : -0.5));
    return 0;
}

static int parse_opts(int argc, char **argv, struct deals_opts *o)
{
    memset(o, 0, sizeof(*o));
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--format") == 0 && v) {
            if (strcmp(v, "table") == 0)
                o->format = FMT_TABLE;
            else if (strcmp(v, "csv") == 0)
                o->format = FMT_CSV;
            else if (strcmp(v, "json") == 0)
                o->format = FMT_JSON;
            else
                return fprintf(stderr, "kdeals deals: --format %s: use table, csv or json\n", v),
                       -EINVAL;
            i++;
        } else if (strcmp(a, "--sort") == 0 && v) {
            if (strcmp(v, "roi") == 0)
                o->sort = SORT_ROI;
            else if (strcmp(v, "profit") == 0)
                o->sort = SORT_PROFIT;
            else if (strcmp(v, "rank") == 0)
                o->sort = SORT_RANK;
            else if (strcmp(v, "checked") == 0)
                o->sort = SORT_CHECKED;
            else
                return fprintf(stderr,
                               "kdeals deals: --sort %s: use roi, profit, rank or checked\n", v),
                       -EINVAL;
            i++;
        } else if (strcmp(a, "--limit") == 0 && v) {
            char *end;
            o->limit = strtol(v, &end, 10);
            if (*end != '\0' || o->limit < 0)
                return fprintf(stderr, "kdeals deals: --limit %s: a number >= 0\n", v), -EINVAL;
            i++;
        } else if (strcmp(a, "--min-roi") == 0 && v) {
            if (parse_pct_bp(v, &o->min_roi_bp) != 0)
                return fprintf(stderr, "kdeals deals: --min-roi %s: a percentage\n", v), -EINVAL;
            o->have_min_roi = 1;
            i++;
        } else if (strcmp(a, "--min-profit") == 0 && v) {
            char *end;
            o->min_profit_cents = strtoll(v, &end, 10);
            if (*end != '\0')
                return fprintf(stderr, "kdeals deals: --min-profit %s: cents\n", v), -EINVAL;
            o->have_min_profit = 1;
            i++;
        } else {
            fprintf(stderr, "kdeals deals: unknown or incomplete option '%s'\n", a);
            return -EINVAL;
        }
    }
    return 0;
}

struct st_options cli_store_options(const struct cfg *c)
{
    struct st_options so = {.path = c->store_path,
                            .map_size_bytes = (uint64_t)c->store_map_size_mb << 20,
                            .max_map_size_bytes = (uint64_t)c->store_max_map_size_mb << 20};
    return so;
}

/*
 * Reads every deal that passes O's filters from one snapshot of ENV into a malloc'd *OUT (*N
 * of them; *BAD counts records this binary cannot decode). Returns 0 or a negative errno.
 */
static int read_deals(struct st_env *env, const struct deals_opts *o, struct st_deal **out,
                      size_t *n, unsigned *bad)
{
    size_t cap = 256;
    *n = 0;
    *bad = 0;
    struct st_deal *deals = malloc(cap * sizeof(*deals));
    if (deals == NULL)
        return -ENOMEM;
    struct st_txn *txn;
    int rc = st_read_begin(env, &txn);
    if (rc != 0)
        goto out_free;
    struct st_cursor *cur;
    rc = st_cursor_open(txn, ST_DB_DEALS, &cur);
    if (rc != 0)
        goto out_txn;
    for (;;) {
        if (*n == cap) {
            struct st_deal *more = realloc(deals, 2 * cap * sizeof(*deals));
            if (more == NULL) {
                rc = -ENOMEM;
                break;
            }
            deals = more;
            cap *= 2;
        }
        int r = st_cursor_next_deal(cur, &deals[*n]);
        if (r == -ENOENT)
            break;
        if (r == -EBADMSG || r == -ENOTSUP) {
            (*bad)++; /* a record this binary cannot read: reported, not fatal */
            continue;
        }
        if (r != 0) {
            rc = r;
            break;
        }
        const struct st_deal *d = &deals[*n];
        if (o->have_min_roi && d->roi_bp < o->min_roi_bp)
            continue;
        if (o->have_min_profit && d->profit_cents < o->min_profit_cents)
            continue;
        (*n)++;
    }
    st_cursor_close(cur);
out_txn:
    st_read_end(txn);
out_free:
    if (rc != 0) {
        free(deals);
        deals = NULL;
    }
    *out = deals;
    return rc;
}

int cli_deals_main(const struct cfg *c, int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            return usage(stdout);
    }
    struct deals_opts o;
    if (parse_opts(argc, argv, &o) != 0)
        return usage(stderr);

    struct st_options so = cli_store_options(c);
    struct st_env *env;
    char err[512];
    if (st_open_existing(&so, &env, err, sizeof(err)) != 0) {
        fprintf(stderr, "kdeals deals: %s\n", err);
        return 1;
    }
    struct st_deal *deals;
    size_t n;
    unsigned bad;
    int rc = read_deals(env, &o, &deals, &n, &bad);
    st_close(env);
    if (rc != 0) {
        fprintf(stderr, "kdeals deals: cannot read %s: %s\n", c->store_path, st_strerror(rc));
        return 1;
    }
    qsort_r(deals, n, sizeof(*deals), cmp_deal, &o.sort);
    if (o.limit > 0 && (size_t)o.limit < n)
        n = (size_t)o.limit;
    if (o.format == FMT_CSV)
        print_csv(deals, n, stdout);
    else if (o.format == FMT_JSON)
        print_json(deals, n, stdout);
    else
        print_table(deals, n, stdout);
    if (bad > 0)
        fprintf(stderr, "kdeals deals: %u record(s) could not be decoded and were skipped\n", bad);
    free(deals);
    return 0;
}
