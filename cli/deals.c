/*
 * deals.c: `kdeals deals` lists the stored deals as a table, CSV or JSON, of one instance's
 * store or of several (one per marketplace) read as one view.
 *
 * It reads one LMDB snapshot of the records (a read transaction never blocks the writers and
 * sees a consistent store), keeps those the view selects (view/filter.h: the same filters,
 * sorts and words as the config's presets and the web API), and prints them through the view's
 * writers (view/table.h for people, view/export.h for programs: every field of the record,
 * the links, the verdict and its reasons, times as ISO 8601 beside epoch ms, spreadsheet
 * formulas neutralised in CSV). The reasons are the judgement of each record's stored inputs
 * under the config's rules (judge/rules.h), so they say why it is a deal by today's rules.
 */
#include "cli/deals.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "base/clock.h"
#include "cli/follow.h"
#include "judge/rules.h"
#include "view/export.h"
#include "view/filter.h"
#include "view/preset.h"
#include "view/table.h"

enum deals_format { FMT_TABLE, FMT_CSV, FMT_JSON, FMT_JSONL };

static int usage(FILE *out)
{
    fprintf(out,
            "usage: kdeals deals [-c FILE] [--format table|csv|json|jsonl] [--view NAME]\n"
            "                    [filters] [--sort KEY] [--limit N] [--offset N]\n"
            "       kdeals deals --follow [--format json] [--from SEQ]\n"
            "  Lists the stored deals (read-only; safe while the daemon runs).\n"
            "  --follow prints every change of the store as a JSON line as it happens, each\n"
            "  with its seq; --from SEQ resumes after that seq (docs/view.md, the change feed).\n"
            "  Money is in the marketplace's currency (--min-profit 5 means 5.00), percentages\n"
            "  in percent. docs/view.md lists every filter and field.\n"
            "  --view NAME takes the filters and sort of the config's [view.NAME] section; flags\n"
            "  after it replace single keys of it.\n"
            "  Several marketplaces as one view: -c us.conf -c de.conf (each instance's store\n"
            "  and rules), or --store PATH (repeatable; read under the first config's rules).\n"
            "\n"
            "filters and sorts:\n");
    for (size_t i = 0;; i++) {
        const struct vw_key_info *k = vw_filter_key(i);
        if (k == NULL)
            break;
        char flag[64];
        snprintf(flag, sizeof(flag), "%s%s%s", k->cli, k->takes_value ? " " : "",
                 k->takes_value ? k->value_words : "");
        fprintf(out, "  %-28s %s\n", flag, k->meaning);
    }
    return out == stdout ? 0 : 2;
}

struct st_options cli_store_options(const struct cfg *c)
{
    struct st_options so = {.path = c->store_path,
                            .map_size_bytes = (uint64_t)c->store_map_size_mb << 20,
                            .max_map_size_bytes = (uint64_t)c->store_max_map_size_mb << 20};
    return so;
}

/* Reads every record of one snapshot of ENV into a malloc'd *OUT (*N of them; *BAD counts
 * records this binary cannot decode). Returns 0 or a negative errno. */
static int read_records(struct st_env *env, struct st_record **out, size_t *n, unsigned *bad)
{
    size_t cap = 256;
    *n = 0;
    *bad = 0;
    *out = NULL;
    struct st_record *recs = malloc(cap * sizeof(*recs));
    if (recs == NULL)
        return -ENOMEM;
    struct st_txn *txn = NULL;
    struct st_cursor *cur = NULL;
    int rc = st_read_begin(env, &txn);
    if (rc != 0)
        goto out;
    rc = st_cursor_open(txn, ST_DB_PRODUCTS, &cur);
    if (rc != 0)
        goto out;
    for (;;) {
        if (*n == cap) {
            struct st_record *more = realloc(recs, 2 * cap * sizeof(*recs));
            if (more == NULL) {
                rc = -ENOMEM;
                break;
            }
            recs = more;
            cap *= 2;
        }
        int r = st_cursor_next_record(cur, &recs[*n]);
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
        (*n)++;
    }
out:
    st_cursor_close(cur);
    if (txn != NULL)
        st_read_end(txn);
    if (rc != 0) {
        free(recs);
        return rc;
    }
    *out = recs;
    return 0;
}

/* The terminal's width for the table: the tty's, else $COLUMNS, else 80. */
static int terminal_width(void)
{
    struct winsize ws;
    if (isatty(STDOUT_FILENO) && ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
        return ws.ws_col;
    const char *cols = getenv("COLUMNS");
    long w = cols != NULL ? strtol(cols, NULL, 10) : 0;
    return w >= 40 && w <= 1000 ? (int)w : 80;
}

/* One store of the view: where it is, whose rules judge its records, the file that says so. */
struct source {
    struct st_options so;
    const struct cfg *cfg;
    const char *what; /* "store PATH" or "config FILE" for messages */
    char what_buf[CFG_STR_MAX + 16];
};

/* Appends the records of source SRC to *RECS (*N of *CAP). Returns 0, or 1 after printing. */
static int read_source(struct source *src, struct st_record **recs, size_t *n, unsigned *bad)
{
    char err[512];
    struct st_env *env;
    if (st_open_existing(&src->so, &env, err, sizeof(err)) != 0) {
        fprintf(stderr, "kdeals deals: %s\n", err);
        return 1;
    }
    struct st_record *part;
    size_t np;
    unsigned nbad;
    int rc = read_records(env, &part, &np, &nbad);
    st_close(env);
    if (rc != 0) {
        fprintf(stderr, "kdeals deals: cannot read %s: %s\n", src->so.path, st_strerror(rc));
        return 1;
    }
    struct st_record *all = realloc(*recs, (*n + np + 1) * sizeof(*all));
    if (all == NULL) {
        free(part);
        fprintf(stderr, "kdeals deals: out of memory\n");
        return 1;
    }
    memcpy(all + *n, part, np * sizeof(*part));
    free(part);
    *recs = all;
    *n += np;
    *bad += nbad;
    return 0;
}

int cli_deals_main(const struct cfg *const *cfgs, size_t n_cfgs, int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            return usage(stdout);
    }
    const struct cfg *c = cfgs[0];
    /* The stores: one per config (-c repeated), then each --store PATH (the first config's
     * rules judge its records). */
    struct source srcs[CLI_DEALS_STORES_MAX];
    size_t n_srcs = 0;
    for (size_t k = 0; k < n_cfgs && n_srcs < CLI_DEALS_STORES_MAX; k++) {
        struct source *src = &srcs[n_srcs++];
        src->so = cli_store_options(cfgs[k]);
        src->cfg = cfgs[k];
        snprintf(src->what_buf, sizeof(src->what_buf), "%s",
                 cfgs[k]->source_path[0] ? cfgs[k]->source_path : "(defaults)");
    }
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--store") != 0)
            continue;
        if (i + 1 >= argc) {
            fprintf(stderr, "kdeals deals: --store needs the PATH of a store folder\n");
            return 2;
        }
        if (n_srcs == CLI_DEALS_STORES_MAX) {
            fprintf(stderr, "kdeals deals: at most %d stores in one view\n", CLI_DEALS_STORES_MAX);
            return 2;
        }
        struct source *src = &srcs[n_srcs++];
        src->so = cli_store_options(c);
        src->so.path = argv[i + 1];
        src->cfg = c;
        i++;
    }
    /* --store alone replaces the config's own store. */
    bool explicit_stores = n_srcs > n_cfgs;
    size_t first = n_cfgs == 1 && explicit_stores ? 1 : 0;
    bool several = n_srcs - first > 1;

    struct vw_filter f;
    vw_filter_init(&f, several ? 0 : (unsigned)c->keepa_domain);
    enum deals_format format = FMT_TABLE;
    bool follow = false, from_given = false, format_given = false, filtered = false;
    uint64_t from = 0;
    char err[1024];
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--store") == 0) {
            i++;
            continue;
        }
        if (strcmp(a, "--follow") == 0) {
            follow = true;
            continue;
        }
        if (strcmp(a, "--from") == 0) {
            const char *v = i + 1 < argc ? argv[++i] : "";
            char *end;
            errno = 0;
            unsigned long long n = strtoull(v, &end, 10);
            if (v[0] < '0' || v[0] > '9' || *end != '\0' || errno != 0) {
                fprintf(stderr, "kdeals deals: --from '%s': a change seq, 0 or more\n", v);
                return 2;
            }
            from = n;
            from_given = true;
            continue;
        }
        if (strcmp(a, "--view") == 0) {
            filtered = true;
            /* The preset's keys, as if given here: later flags replace them one by one. */
            if (i + 1 >= argc) {
                fprintf(stderr, "kdeals deals: --view needs the NAME of a [view.NAME] section\n");
                return 2;
            }
            if (vw_preset_apply(c, argv[++i], &f, err, sizeof(err)) != 0) {
                fprintf(stderr, "kdeals deals: %s\n", err);
                return 2;
            }
            continue;
        }
        if (strcmp(a, "--format") == 0) {
            format_given = true;
            const char *v = i + 1 < argc ? argv[++i] : "";
            if (strcmp(v, "table") == 0)
                format = FMT_TABLE;
            else if (strcmp(v, "csv") == 0)
                format = FMT_CSV;
            else if (strcmp(v, "json") == 0)
                format = FMT_JSON;
            else if (strcmp(v, "jsonl") == 0)
                format = FMT_JSONL;
            else {
                fprintf(stderr, "kdeals deals: --format '%s': use table, csv, json or jsonl\n", v);
                return 2;
            }
            continue;
        }
        filtered = true;
        int arity = vw_filter_arity(a);
        if (arity < 0) {
            fprintf(stderr, "kdeals deals: unknown option '%s' (kdeals deals --help lists them)\n",
                    a);
            return 2;
        }
        const char *v = NULL;
        if (arity > 0) {
            if (i + 1 >= argc) {
                fprintf(stderr, "kdeals deals: %s needs a value\n", a);
                return 2;
            }
            v = argv[++i];
        }
        if (vw_filter_parse_arg(&f, a, v, err, sizeof(err)) != 0) {
            fprintf(stderr, "kdeals deals: %s\n", err);
            return 2;
        }
    }

    if (from_given && !follow) {
        fprintf(stderr, "kdeals deals: --from goes with --follow\n");
        return 2;
    }
    if (follow) {
        if (filtered || (format_given && format != FMT_JSON && format != FMT_JSONL)) {
            fprintf(stderr, "kdeals deals: --follow prints every change as JSON lines: it takes "
                            "--format json and --from only\n");
            return 2;
        }
        if (several) {
            fprintf(stderr, "kdeals deals: --follow follows one store: give one -c or one "
                            "--store\n");
            return 2;
        }
        return cli_follow_main(srcs[first].cfg, &srcs[first].so, from_given, from);
    }
    /* Each store's records, and each marketplace's rules (the reasons, the figures at a
     * bought cost): several instances of one marketplace share the first one's rules. */
    struct jd_rules rules[CLI_DEALS_STORES_MAX];
    struct vw_out o = {.json_lines = format == FMT_JSONL};
    struct st_record *recs = NULL;
    size_t n = 0;
    unsigned bad = 0;
    for (size_t k = first; k < n_srcs; k++) {
        size_t before = n;
        if (read_source(&srcs[k], &recs, &n, &bad) != 0) {
            free(recs);
            return 1;
        }
        jd_rules_from_cfg(srcs[k].cfg, &rules[k]);
        if (o.rules == NULL)
            o.rules = &rules[k];
        for (size_t i = before; i < n; i++)
            if (recs[i].domain < VW_DOMAINS && o.rules_by_domain[recs[i].domain] == NULL)
                o.rules_by_domain[recs[i].domain] = &rules[k];
    }
    size_t *idx = malloc((n > 0 ? n : 1) * sizeof(*idx));
    if (idx == NULL) {
        free(recs);
        fprintf(stderr, "kdeals deals: out of memory\n");
        return 1;
    }
    int64_t now_ms = kd_wall_ms();
    size_t shown = 0, matched = 0;
    vw_select(recs, n, &f, now_ms, idx, &shown, &matched);
    int wrc = 0;
    switch (format) {
    case FMT_CSV:
        wrc = vw_csv_write(stdout, recs, idx, shown, &o);
        break;
    case FMT_JSON:
    case FMT_JSONL:
        wrc = vw_json_write(stdout, recs, idx, shown, &o);
        break;
    default: {
        const char *no_color = getenv("NO_COLOR");
        bool colour = isatty(STDOUT_FILENO) && (no_color == NULL || no_color[0] == '\0');
        wrc = vw_table_write(stdout, recs, idx, shown, terminal_width(), colour,
                             several ? 0 : (unsigned)c->keepa_domain, now_ms, &o);
        if (shown < matched)
            printf("%zu of %zu shown (--limit, --offset)\n", shown, matched);
        else
            printf("%zu %s\n", shown,
                   f.verdicts == VW_VERDICT_DEAL ? (shown == 1 ? "deal" : "deals")
                                                 : (shown == 1 ? "product" : "products"));
        break;
    }
    }
    if (bad > 0)
        fprintf(stderr, "kdeals deals: %u record(s) could not be decoded and were skipped\n", bad);
    free(idx);
    free(recs);
    if (wrc != 0 || fflush(stdout) != 0) {
        fprintf(stderr, "kdeals deals: cannot write the output: %s\n",
                strerror(wrc < 0 ? -wrc : errno));
        return 1;
    }
    return 0;
}
