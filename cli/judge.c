/*
 * judge.c: `kdeals judge` and `kdeals show`: a judgement explained, number by number.
 *
 *   kdeals judge FILE|-          every product of a raw Keepa /product body (plain or gzip),
 *                                judged offline under the config's rules: no key, no tokens
 *   kdeals judge --fetch ASIN... one live /product request (offers=20, a year of stats), judged,
 *                                with its token reading
 *   kdeals show ASIN             a stored record: its inputs judged again under the config's
 *                                rules, its state, its history
 *
 * All three print cli_explain()'s explanation (cli/explain.h) or, with --json, the record's
 * JSON object of view/export.h (with the verdict's reasons). The rules are the config's, as
 * the daemon judges (judge/rules.h).
 */
#include "cli/judge.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/clock.h"
#include "cli/deals.h"
#include "cli/explain.h"
#include "cli/json.h"
#include "cli/keepa.h"
#include "judge/inputs.h"
#include "judge/market.h"
#include "judge/rules.h"
#include "store/store.h"
#include "view/export.h"
#include "view/filter.h"
#include "view/time.h"

struct judge_run {
    const struct cfg *cfg;
    struct jd_rules rules;
    bool json;
    yajl_gen g;
    size_t n;
    int64_t at_ms;
};

/* A product judged as a record would be, for the JSON output. */
static void product_record(const struct kp_product *p, const struct judge_run *jr,
                           struct st_record *r)
{
    st_record_init(r);
    snprintf(r->asin, sizeof(r->asin), "%.10s", p->asin);
    r->domain = (uint8_t)(p->domain_id > 0 ? p->domain_id : jr->cfg->keepa_domain);
    st_record_set_title(r, p->title, strlen(p->title));
    st_record_set_category(r, p->root_category_name, strlen(p->root_category_name));
    jd_inputs_from_product(p, &jr->rules, jr->at_ms, JD_READ_AUTO, &r->in);
    jd_judge(&r->in, &jr->rules, &r->v);
    r->state = r->v.deal ? ST_STATE_DEAL : ST_STATE_REJECTED;
    r->rules_hash = jd_rules_hash(&jr->rules);
    r->judged_ms = jr->at_ms;
}

static int on_product(const struct kp_product *p, void *ud)
{
    struct judge_run *jr = ud;
    struct st_record *r = malloc(sizeof(*r));
    if (r == NULL)
        return -1;
    product_record(p, jr, r);
    if (jr->json) {
        struct vw_out o = {.rules = &jr->rules};
        vw_json_record(jr->g, r, &o);
    } else {
        if (jr->n > 0)
            printf("\n");
        struct jd_verdict v;
        jd_judge(&r->in, &jr->rules, &v);
        struct cli_product cp = {.asin = r->asin,
                                 .domain = r->domain,
                                 .title = r->title,
                                 .category = r->category_name,
                                 .now_ms = kd_wall_ms()};
        cli_explain(stdout, &cp, &r->in, &v, &jr->rules);
        if (p->offers_successful == 0 && (p->live_order_present || p->n_offers_seen > 0))
            printf("  (Keepa could not refresh the offers of this product: the daemon would ask "
                   "again before judging it)\n");
        if (p->type_errors > 0)
            printf("  (%u fields of the wrong JSON type: the daemon would not judge this "
                   "answer)\n",
                   p->type_errors);
    }
    free(r);
    jr->n++;
    return 0;
}

/* A /deal entry: judged on the feed's numbers alone, as the free pre-filter does (no fees yet:
 * an upper bound). */
static int on_deal(const struct kp_deal *dl, void *ud)
{
    struct judge_run *jr = ud;
    struct st_record *r = malloc(sizeof(*r));
    if (r == NULL)
        return -1;
    st_record_init(r);
    snprintf(r->asin, sizeof(r->asin), "%.10s", dl->asin);
    r->domain = (uint8_t)jr->cfg->keepa_domain;
    st_record_set_title(r, dl->title, strlen(dl->title));
    jd_inputs_from_deal(dl, &jr->rules, jr->at_ms, &r->in);
    jd_judge(&r->in, &jr->rules, &r->v);
    r->state = r->v.deal ? ST_STATE_DEAL : ST_STATE_REJECTED;
    r->rules_hash = jd_rules_hash(&jr->rules);
    r->judged_ms = jr->at_ms;
    if (jr->json) {
        struct vw_out o = {.rules = &jr->rules};
        vw_json_record(jr->g, r, &o);
    } else {
        if (jr->n > 0)
            printf("\n");
        struct jd_verdict v;
        jd_judge(&r->in, &jr->rules, &v);
        struct cli_product cp = {.asin = r->asin,
                                 .domain = r->domain,
                                 .title = r->title,
                                 .category = NULL,
                                 .now_ms = kd_wall_ms()};
        cli_explain(stdout, &cp, &r->in, &v, &jr->rules);
        printf("  (a /deal entry: judged as the free pre-filter does, before any token is paid)\n");
    }
    free(r);
    jr->n++;
    return 0;
}

static int judge_usage(FILE *out)
{
    fprintf(out,
            "usage: kdeals judge [-c FILE] [--json] FILE|-\n"
            "       kdeals judge [-c FILE] [--json] --fetch ASIN...\n"
            "  Judges every product of a raw Keepa /product body (plain or gzip; - reads stdin)\n"
            "  under the config's rules, offline: no key, no tokens; every entry of a /deal body\n"
            "  as the free pre-filter judges it (no fees yet: an upper bound). --fetch asks Keepa "
            "for the\n"
            "  products first (offers=20, a year of stats; tokens are spent: the reading is\n"
            "  printed). Every number is shown with the Keepa field it came from.\n");
    return out == stdout ? 0 : 2;
}

int cli_judge_main(const struct cfg *c, int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            return judge_usage(stdout);
    struct judge_run jr = {.cfg = c, .at_ms = kd_wall_ms()};
    jd_rules_from_cfg(c, &jr.rules);
    const char *path = NULL;
    const char *asins[KP_MAX_BATCH];
    size_t n_asins = 0;
    bool fetch = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            return judge_usage(stdout);
        if (strcmp(argv[i], "--json") == 0)
            jr.json = true;
        else if (strcmp(argv[i], "--fetch") == 0)
            fetch = true;
        else if (fetch && argv[i][0] != '-' && n_asins < KP_MAX_BATCH)
            asins[n_asins++] = argv[i];
        else if (!fetch && path == NULL && (argv[i][0] != '-' || strcmp(argv[i], "-") == 0))
            path = argv[i];
        else {
            fprintf(stderr, "kdeals judge: unexpected argument '%s'\n", argv[i]);
            return judge_usage(stderr);
        }
    }
    if ((fetch && n_asins == 0) || (!fetch && path == NULL))
        return judge_usage(stderr);
    if (jr.json) {
        jr.g = cli_json_new(true);
        yajl_gen_array_open(jr.g);
    }
    struct kp_decode_cbs cbs = {.on_product = on_product, .on_deal = on_deal, .ud = &jr};
    char err[512];
    int rc;
    struct kp_reading reading;
    bool have_reading = false;
    if (fetch)
        rc = cli_fetch_products(c, asins, n_asins, 20, 365, &cbs, &reading, &have_reading, err,
                                sizeof(err));
    else
        rc = cli_decode_body(path, &cbs, err, sizeof(err));
    if (jr.json) {
        yajl_gen_array_close(jr.g);
        cli_json_print(jr.g, stdout);
    }
    if (have_reading)
        fprintf(jr.json ? stderr : stdout, "\ntokens: %.0f consumed, %.0f left, refill %.0f/min\n",
                reading.tokens_consumed, reading.tokens_left, reading.refill_rate);
    if (rc != 0) {
        fprintf(stderr, "kdeals judge: %s\n", err);
        return 1;
    }
    if (jr.n == 0) {
        fprintf(stderr, "kdeals judge: the answer holds no product\n");
        return 1;
    }
    return 0;
}

static int show_usage(FILE *out)
{
    fprintf(out, "usage: kdeals show [-c FILE] [--json] ASIN\n"
                 "  Explains a stored product: every number with the Keepa field it came from,\n"
                 "  each criterion with its margin under the config's rules, the offer to buy,\n"
                 "  the max cost, the links, its state and its history. Read-only.\n");
    return out == stdout ? 0 : 2;
}

int cli_show_main(const struct cfg *c, int argc, char **argv)
{
    const char *asin = NULL;
    bool json = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            return show_usage(stdout);
        if (strcmp(argv[i], "--json") == 0)
            json = true;
        else if (asin == NULL && argv[i][0] != '-')
            asin = argv[i];
        else
            return show_usage(stderr);
    }
    if (asin == NULL)
        return show_usage(stderr);
    struct st_key key;
    if (st_key_make((unsigned)c->keepa_domain, asin, &key) != 0) {
        fprintf(stderr, "kdeals show: '%s' is not an ASIN (10 capital letters and digits)\n", asin);
        return 2;
    }
    struct st_options so = cli_store_options(c);
    struct st_env *env;
    char err[512];
    if (st_open_existing(&so, &env, err, sizeof(err)) != 0) {
        fprintf(stderr, "kdeals show: %s\n", err);
        return 1;
    }
    struct st_record *r = malloc(sizeof(*r));
    struct st_history hist[ST_HISTORY_MAX];
    size_t nh = 0;
    struct st_txn *txn;
    int rc = r == NULL ? -ENOMEM : st_read_begin(env, &txn);
    if (rc == 0) {
        rc = st_record_get(txn, &key, r);
        if (rc == 0)
            st_history_list(txn, &key, hist, ST_HISTORY_MAX, &nh);
        st_read_end(txn);
    }
    st_close(env);
    if (rc == -ENOENT) {
        fprintf(stderr,
                "kdeals show: %s is not in the store %s (only fully fetched products are "
                "kept)\n",
                asin, c->store_path);
        free(r);
        return 1;
    }
    if (rc != 0) {
        fprintf(stderr, "kdeals show: cannot read %s: %s\n", c->store_path, st_strerror(rc));
        free(r);
        return 1;
    }
    struct jd_rules rules;
    jd_rules_from_cfg(c, &rules);
    unsigned d = r->domain;
    if (json) {
        yajl_gen g = cli_json_new(true);
        struct vw_out o = {.rules = &rules};
        vw_json_record(g, r, &o);
        cli_json_print(g, stdout);
        free(r);
        return 0;
    }
    struct jd_verdict v;
    jd_judge(&r->in, &rules, &v);
    int64_t now = kd_wall_ms();
    struct cli_product cp = {.asin = r->asin,
                             .domain = d,
                             .title = r->title,
                             .category = r->category_name,
                             .now_ms = now};
    cli_explain(stdout, &cp, &r->in, &v, &rules);
    char a[64], b[64], c3[64];
    if (r->source == ST_SOURCE_LIST || r->source_url[0] != '\0' || r->note[0] != '\0')
        printf("\n  LIST     from your list ([scan] list_file)%s%s%s%s\n",
               r->source_url[0] ? ", buy at " : "", r->source_url, r->note[0] ? "; note: " : "",
               r->note);
    char checked[40] = "never";
    if (r->last_checked_ms > 0)
        vw_time_iso(r->last_checked_ms, checked, sizeof(checked));
    printf("\n  STATE    %s%s, checked %s, %u failed re-checks in a row, next check %s\n",
           st_state_name(r->state),
           r->rules_hash != jd_rules_hash(&rules) ? " (judged under other rules: the daemon "
                                                    "judges it again at its next reload)"
                                                  : "",
           checked, r->check_failures,
           r->next_check_ms > 0 ? "scheduled" : "none (not re-checked)");
    if (r->mark != ST_MARK_NONE) {
        printf("  MARK     %s%s%s", st_mark_name(r->mark),
               r->bought_cost_cents >= 0 ? ", your cost " : "",
               r->bought_cost_cents >= 0 ? (jd_money(d, r->bought_cost_cents, a, sizeof(a)), a)
                                         : "");
        if (r->mark == ST_MARK_BOUGHT && r->bought_qty > 0)
            printf(" x %d", (int)r->bought_qty);
        printf("\n");
        struct jd_verdict at;
        if (vw_at_cost(r, &rules, &at) && at.priced) {
            int64_t roi = at.roi_bp < 0 ? -at.roi_bp : at.roi_bp;
            printf("  AT COST  landed %s, profit %s, ROI %s%lld.%lld %% (the estimate above is "
                   "for the offer judged)\n",
                   (jd_money(d, at.landed_cents, a, sizeof(a)), a),
                   (jd_money(d, at.profit_cents, b, sizeof(b)), b), at.roi_bp < 0 ? "-" : "",
                   (long long)(roi / 100), (long long)(roi % 100 / 10));
        }
    }
    if (nh > 0) {
        printf("\n  HISTORY (newest first)\n");
        for (size_t i = 0; i < nh; i++) {
            const struct st_history *h = &hist[i];
            time_t t = (time_t)(h->at_ms / 1000);
            struct tm tm;
            gmtime_r(&t, &tm);
            char when[32];
            strftime(when, sizeof(when), "%Y-%m-%d %H:%M", &tm);
            printf("    %s UTC  %-8s %-9s buy %-9s sell %-9s profit %s", when,
                   st_event_name(h->event), st_state_name(h->state),
                   h->buy_total_cents > 0 ? (jd_money(d, h->buy_total_cents, a, sizeof(a)), a)
                                          : "-",
                   h->sell_cents > 0 ? (jd_money(d, h->sell_cents, b, sizeof(b)), b) : "-",
                   h->sell_cents > 0 && h->buy_total_cents > 0
                       ? (jd_money(d, h->profit_cents, c3, sizeof(c3)), c3)
                       : "-");
            if (h->checks > 1) {
                /* A run of re-checks that found nothing changed, kept as one entry. */
                t = (time_t)(h->first_ms / 1000);
                gmtime_r(&t, &tm);
                strftime(when, sizeof(when), "%Y-%m-%d %H:%M", &tm);
                printf("  (%u checks alike since %s)", (unsigned)h->checks, when);
            }
            printf("\n");
        }
    }
    free(r);
    return 0;
}
