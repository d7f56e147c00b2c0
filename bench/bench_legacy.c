/*
 * bench_legacy.c: the token policy of the system kdeals replaced, as a small
 * single-process Keepa client. bench_pipeline runs it against its own fresh kdeals-sim (same
 * seed, same duration) beside the daemon and scores both from the simulators' ledgers.
 *
 *   bench_legacy CONFIG SELECTION_FILE DURATION_MS [page0]
 *
 * CONFIG is the same kdeals config file the daemon gets ([keepa] base_url/key_file/domain,
 * [tokens] minute, [filter], [costs], [commit] history/days), so both sides judge products by
 * the same rules (judge/dealmath.h) and fetch with the same parameters; only the policy
 * differs. What the legacy "Smart Ingestor" did, as it first worked (docs/failure-modes.md):
 *
 *   - Discovery: /deal with the selection file (sortType 4), page by page from page 0 until a
 *     short page, then again from page 0 (no watermark, no dedup: a new pass pays for every
 *     ASIN again). Walking all pages rather than re-reading page 0 is the choice most
 *     favourable to legacy: within a simulated day it rarely repays an ASIN, so its figure is
 *     a lower bound on what the replaced system spent per deal. With the optional argument
 *     `page0`, every pass is page 0 alone, as the deployed system ran (docs/failure-modes.md F11:
 *     "each run read only page 0"), repaying the same top-150 ASINs pass after pass.
 *   - Peek: every ASIN of the page in fixed batches of 5, with offers=20 (the legacy could not
 *     send offers=0: Keepa answered 400), stats=365, history=0: at least 6 tokens per ASIN.
 *     The peek filter is the judgement on the peek's read (judge/judge.h), as in the scanner.
 *   - Commit: survivors in fixed batches of 5 (a last partial batch at the end of the page)
 *     with the committer's parameters (offers=20, only-live-offers, stats=365, history/days
 *     from [commit]); a product is a deal when the judgement passes. No LMDB: deals are counted as
 *     distinct ASINs, with the wall time (epoch ms) each was first found.
 *   - Tokens: before every request it waits (a uv timer, never polling /token) until the last
 *     server reading, projected with refillIn and refillRate, covers the request's full
 *     estimated cost (5 per /deal page, 6 per ASIN with offers=20: the documented minimum),
 *     as the legacy token manager did. A 429 or a failure is retried after waiting again.
 *
 * Output (stdout), for bench_pipeline to parse: `LEGACY <name> <value>` lines, then one
 * `LEGACY_DEAL <asin> <first_found_epoch_ms>` line per distinct deal. Exit 0, or 2 for bad
 * arguments or setup. Single-threaded; all waiting is on the libuv loop.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <uv.h>

#include "base/clock.h"
#include "base/config.h"
#include "base/key.h"
#include "judge/inputs.h"
#include "judge/rules.h"
#include "base/log.h"
#include "keepa/client.h"
#include "keepa/decode.h"
#include "keepa/request.h"

#define LEGACY_BATCH         5   /* ASINs per peek and per commit, fixed */
#define LEGACY_OFFERS        20  /* offers per peek and per commit */
#define LEGACY_COST_PER_ASIN 6   /* estimated tokens per ASIN with offers=20 */
#define LEGACY_DEAL_COST     5   /* tokens per /deal page */
#define LEGACY_PAGE_MAX      150 /* deals per /deal page */
#define LEGACY_STATS_DAYS    365
#define LEGACY_DEALS_MAX     65536 /* distinct deals remembered (power of two) */

enum legacy_req { REQ_NONE, REQ_PAGE, REQ_PEEK, REQ_COMMIT };

struct legacy_deal {
    char asin[KP_ASIN_MAX];
    int64_t first_ms;
};

struct legacy {
    uv_loop_t *loop;
    struct kp_client *cl;
    struct cfg cfg;
    struct jd_rules rules; /* the judgement's rules, as the daemon's */
    struct kd_keys keys;
    json_t *selection;
    int64_t minute_ms;
    bool page0_only; /* every pass is page 0 alone */
    uv_timer_t wait_timer;
    uv_timer_t end_timer;
    bool stopping;
    bool waited; /* the wait for the next request's cost is over */
    enum legacy_req in_flight;

    /* last server reading */
    bool have_reading;
    double tokens_left;
    int64_t refill_in_ms;
    double refill_rate;
    int64_t reading_mono_ns;

    /* discovery position and the current page's ASINs */
    uint64_t page;      /* the page last asked for */
    uint64_t next_page; /* the page to ask for next */
    char page_asins[LEGACY_PAGE_MAX][KP_ASIN_MAX];
    size_t n_page, page_pos;
    size_t n_fetched; /* ASINs delivered by the page request in flight */

    /* survivors waiting for a commit */
    char surv[LEGACY_PAGE_MAX * 2][KP_ASIN_MAX];
    size_t n_surv;
    size_t batch_n; /* ASINs in the request in flight */

    /* distinct deals (open addressing) */
    struct legacy_deal *deals;
    uint64_t n_deals;

    /* figures */
    uint64_t pages, passes, peek_requests, peek_asins, survivors, commit_requests, commit_asins,
        commit_passes, http_429, failures, waits;
    double tokens_reported;
    int64_t wait_ms_total;
};

static void legacy_next(struct legacy *lg);

static uint64_t hash_asin(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

static void deal_found(struct legacy *lg, const char *asin)
{
    uint64_t i = hash_asin(asin) & (LEGACY_DEALS_MAX - 1);
    for (uint64_t probes = 0; probes < LEGACY_DEALS_MAX; probes++) {
        struct legacy_deal *d = &lg->deals[i];
        if (d->asin[0] == '\0') {
            snprintf(d->asin, sizeof(d->asin), "%s", asin);
            d->first_ms = kd_wall_ms();
            lg->n_deals++;
            return;
        }
        if (strcmp(d->asin, asin) == 0)
            return;
        i = (i + 1) & (LEGACY_DEALS_MAX - 1);
    }
}

static void on_reading(const struct kp_reading *r, void *ud)
{
    struct legacy *lg = ud;
    if (r->http_status != 200 && r->http_status != 429)
        return;
    lg->have_reading = true;
    lg->tokens_left = r->tokens_left;
    lg->refill_in_ms = r->refill_in_ms;
    lg->refill_rate = r->refill_rate;
    lg->reading_mono_ns = r->local_mono_ns_received;
    lg->tokens_reported += r->tokens_consumed;
}

/* Milliseconds until the last reading, projected, covers COST (0 = now). */
static int64_t wait_for_cost_ms(const struct legacy *lg, double cost)
{
    if (!lg->have_reading || lg->tokens_left >= cost)
        return 0;
    double rate = lg->refill_rate > 0 ? lg->refill_rate : 1;
    int64_t ticks = (int64_t)((cost - lg->tokens_left + rate - 1e-9) / rate);
    if (ticks < 1)
        ticks = 1;
    int64_t elapsed_ms = (kd_mono_ns() - lg->reading_mono_ns) / KD_NS_PER_MS;
    int64_t first = lg->refill_in_ms - elapsed_ms;
    if (first < 0)
        first = 0;
    int64_t ms = first + (ticks - 1) * lg->minute_ms;
    return ms > 0 ? ms + 2 : 0; /* a little past the tick */
}

static int on_deal(const struct kp_deal *d, void *ud)
{
    struct legacy *lg = ud;
    if (lg->n_fetched < LEGACY_PAGE_MAX)
        snprintf(lg->page_asins[lg->n_fetched++], KP_ASIN_MAX, "%s", d->asin);
    return 0;
}

static int on_peek_product(const struct kp_product *p, void *ud)
{
    struct legacy *lg = ud;
    struct jd_inputs in;
    struct jd_verdict v;
    jd_inputs_from_product(p, &lg->rules, 0, JD_READ_LISTING, &in);
    if (jd_judge(&in, &lg->rules, &v) && lg->n_surv < sizeof(lg->surv) / sizeof(lg->surv[0])) {
        snprintf(lg->surv[lg->n_surv++], KP_ASIN_MAX, "%s", p->asin);
        lg->survivors++;
    }
    return 0;
}

static int on_commit_product(const struct kp_product *p, void *ud)
{
    struct legacy *lg = ud;
    struct jd_inputs in;
    struct jd_verdict v;
    jd_inputs_from_product(p, &lg->rules, 0, JD_READ_AUTO, &in);
    if (p->offers_successful != 0 && jd_judge(&in, &lg->rules, &v))
        deal_found(lg, p->asin);
    return 0;
}

static void on_wait_done(uv_timer_t *t)
{
    legacy_next(t->data);
}

static void on_done(const struct kp_result *res, void *ud)
{
    struct legacy *lg = ud;
    enum legacy_req req = lg->in_flight;
    lg->in_flight = REQ_NONE;
    lg->waited = false;
    if (res->code == KP_CANCELLED || lg->stopping)
        return;
    if (res->code != KP_OK) {
        if (res->code == KP_NOT_ADMITTED)
            lg->http_429++;
        else
            lg->failures++;
        /* Retry the same step: a 429 reading makes legacy_next wait; a failure waits a
         * Keepa minute. */
        if (res->code != KP_NOT_ADMITTED) {
            uv_timer_start(&lg->wait_timer, on_wait_done, (uint64_t)lg->minute_ms, 0);
            return;
        }
        legacy_next(lg);
        return;
    }
    switch (req) {
    case REQ_PAGE:
        lg->pages++;
        lg->n_page = lg->n_fetched;
        lg->page_pos = 0;
        if (lg->n_fetched < LEGACY_PAGE_MAX || lg->page0_only) { /* the pass ends */
            lg->passes++;
            lg->next_page = 0;
        } else {
            lg->next_page = lg->page + 1;
        }
        break;
    case REQ_PEEK:
        lg->peek_requests++;
        lg->peek_asins += lg->batch_n;
        lg->page_pos += lg->batch_n;
        break;
    case REQ_COMMIT:
        lg->commit_requests++;
        lg->commit_asins += lg->batch_n;
        memmove(lg->surv, lg->surv + lg->batch_n, (lg->n_surv - lg->batch_n) * KP_ASIN_MAX);
        lg->n_surv -= lg->batch_n;
        break;
    case REQ_NONE:
        break;
    }
    legacy_next(lg);
}

/* The next step (without side effects): a commit when 5 survivors wait (or fewer once the
 * page is peeked), else a peek of the page's next 5 ASINs, else the next /deal page. *N gets
 * the batch size; returns the kind. */
static enum legacy_req plan_next(const struct legacy *lg, size_t *n)
{
    bool page_done = lg->page_pos >= lg->n_page;
    if (lg->n_surv >= LEGACY_BATCH || (lg->n_surv > 0 && page_done)) {
        *n = lg->n_surv < LEGACY_BATCH ? lg->n_surv : LEGACY_BATCH;
        return REQ_COMMIT;
    }
    if (!page_done) {
        size_t left = lg->n_page - lg->page_pos;
        *n = left < LEGACY_BATCH ? left : LEGACY_BATCH;
        return REQ_PEEK;
    }
    *n = 1;
    return REQ_PAGE;
}

static double plan_cost(enum legacy_req kind, size_t n)
{
    return kind == REQ_PAGE ? LEGACY_DEAL_COST : (double)n * LEGACY_COST_PER_ASIN;
}

/* Builds the request planned by plan_next into CALL. Returns 0 or a negative errno. */
static int build_next(struct legacy *lg, enum legacy_req kind, size_t n, struct kp_call *call)
{
    const char *batch[LEGACY_BATCH];
    struct kp_product_params pp;
    memset(&pp, 0, sizeof(pp));
    pp.domain = (int)lg->cfg.keepa_domain;
    pp.asins = batch;
    pp.n_asins = n;
    pp.stats_days = LEGACY_STATS_DAYS;
    pp.offers = LEGACY_OFFERS;
    lg->batch_n = n;
    if (kind == REQ_COMMIT) {
        for (size_t i = 0; i < n; i++)
            batch[i] = lg->surv[i];
        pp.history = lg->cfg.commit_history ? KP_YES : KP_NO;
        pp.days = lg->cfg.commit_history && lg->cfg.commit_days > 0 ? (int)lg->cfg.commit_days : 0;
        pp.only_live_offers = KP_YES;
        return kp_call_product(call, &pp);
    }
    if (kind == REQ_PEEK) {
        for (size_t i = 0; i < n; i++)
            batch[i] = lg->page_asins[lg->page_pos + i];
        pp.history = KP_NO;
        return kp_call_product(call, &pp);
    }
    /* The page is done: the next one (page 0 again after a short page). */
    lg->page = lg->next_page;
    lg->n_page = lg->page_pos = 0;
    lg->n_fetched = 0;
    json_object_set_new(lg->selection, "page", json_integer((json_int_t)lg->page));
    char *sel = json_dumps(lg->selection, JSON_COMPACT);
    if (sel == NULL)
        return -ENOMEM;
    int rc = kp_call_deal(call, sel);
    free(sel);
    return rc;
}

static void legacy_next(struct legacy *lg)
{
    if (lg->stopping || lg->in_flight != REQ_NONE)
        return;
    size_t n = 0;
    enum legacy_req kind = plan_next(lg, &n);
    double cost = plan_cost(kind, n);
    int64_t wait = lg->waited ? 0 : wait_for_cost_ms(lg, cost);
    lg->waited = false;
    if (wait > 0) {
        lg->waits++;
        lg->wait_ms_total += wait;
        lg->waited = true; /* after this wait the projection covers the cost */
        uv_timer_start(&lg->wait_timer, on_wait_done, (uint64_t)wait, 0);
        return;
    }
    struct kp_call call;
    int rc = build_next(lg, kind, n, &call);
    if (rc != 0) {
        fprintf(stderr, "bench_legacy: cannot build a request: %s\n", strerror(-rc));
        uv_timer_start(&lg->wait_timer, on_wait_done, (uint64_t)lg->minute_ms, 0);
        return;
    }
    struct kp_request_cbs cbs = {
        .on_deal = kind == REQ_PAGE ? on_deal : NULL,
        .on_product = kind == REQ_PEEK     ? on_peek_product
                      : kind == REQ_COMMIT ? on_commit_product
                                           : NULL,
        .on_done = on_done,
        .ud = lg,
    };
    lg->in_flight = kind;
    rc = kp_client_submit(lg->cl, &call, &cbs, NULL);
    if (rc != 0) {
        kp_call_free(&call);
        lg->in_flight = REQ_NONE;
        fprintf(stderr, "bench_legacy: submit failed: %s\n", strerror(-rc));
        uv_timer_start(&lg->wait_timer, on_wait_done, (uint64_t)lg->minute_ms, 0);
    }
}

static void on_end(uv_timer_t *t)
{
    struct legacy *lg = t->data;
    lg->stopping = true;
    uv_timer_stop(&lg->wait_timer);
    uv_close((uv_handle_t *)&lg->wait_timer, NULL);
    uv_close((uv_handle_t *)&lg->end_timer, NULL);
    kp_client_close(lg->cl, NULL, NULL);
}

static void print_figures(const struct legacy *lg)
{
    printf("LEGACY deals %" PRIu64 "\n", lg->n_deals);
    printf("LEGACY pages %" PRIu64 "\n", lg->pages);
    printf("LEGACY passes %" PRIu64 "\n", lg->passes);
    printf("LEGACY peek_requests %" PRIu64 "\n", lg->peek_requests);
    printf("LEGACY peek_asins %" PRIu64 "\n", lg->peek_asins);
    printf("LEGACY survivors %" PRIu64 "\n", lg->survivors);
    printf("LEGACY commit_requests %" PRIu64 "\n", lg->commit_requests);
    printf("LEGACY commit_asins %" PRIu64 "\n", lg->commit_asins);
    printf("LEGACY http_429 %" PRIu64 "\n", lg->http_429);
    printf("LEGACY failures %" PRIu64 "\n", lg->failures);
    printf("LEGACY waits %" PRIu64 "\n", lg->waits);
    printf("LEGACY wait_ms %" PRId64 "\n", lg->wait_ms_total);
    printf("LEGACY tokens_reported %.0f\n", lg->tokens_reported);
    for (uint64_t i = 0; i < LEGACY_DEALS_MAX; i++)
        if (lg->deals[i].asin[0] != '\0')
            printf("LEGACY_DEAL %s %" PRId64 "\n", lg->deals[i].asin, lg->deals[i].first_ms);
    fflush(stdout);
}

int main(int argc, char **argv)
{
    if (argc != 4 && !(argc == 5 && strcmp(argv[4], "page0") == 0)) {
        fprintf(stderr, "usage: bench_legacy CONFIG SELECTION_FILE DURATION_MS [page0]\n");
        return 2;
    }
    static struct legacy lg; /* large: keep it off the stack */
    char err[512];
    if (cfg_load_file(argv[1], &lg.cfg, err, sizeof(err)) != 0) {
        fprintf(stderr, "bench_legacy: %s\n", err);
        return 2;
    }
    if (kd_keys_load(&lg.cfg, &lg.keys, err, sizeof(err)) != 0) {
        fprintf(stderr, "bench_legacy: %s\n", err);
        return 2;
    }
    json_error_t jerr;
    lg.selection = json_load_file(argv[2], 0, &jerr);
    if (lg.selection == NULL || !json_is_object(lg.selection)) {
        fprintf(stderr, "bench_legacy: selection %s: %s\n", argv[2], jerr.text);
        return 2;
    }
    char *end = NULL;
    long long duration_ms = strtoll(argv[3], &end, 10);
    if (end == argv[3] || *end != '\0' || duration_ms <= 0) {
        fprintf(stderr, "bench_legacy: DURATION_MS must be a positive integer\n");
        return 2;
    }
    kd_log_set_level(KD_LOG_WARN);
    lg.minute_ms = lg.cfg.tokens_minute_ms;
    jd_rules_from_cfg(&lg.cfg, &lg.rules);
    lg.page0_only = argc == 5;
    lg.deals = calloc(LEGACY_DEALS_MAX, sizeof(*lg.deals));
    if (lg.deals == NULL || kp_global_init() != 0) {
        fprintf(stderr, "bench_legacy: out of memory or curl init failed\n");
        return 2;
    }
    lg.loop = uv_default_loop();
    struct kp_client_opts opts;
    memset(&opts, 0, sizeof(opts));
    opts.base_url = lg.cfg.keepa_base_url;
    opts.api_key = lg.keys.key[0];
    opts.max_in_flight = 1;
    opts.max_tries = 1; /* retries are the policy's, above */
    opts.connect_timeout_ms = lg.cfg.keepa_connect_timeout_ms;
    opts.timeout_ms = lg.cfg.keepa_request_timeout_ms;
    opts.offers_timeout_ms = lg.cfg.keepa_request_timeout_ms;
    opts.on_reading = on_reading;
    opts.reading_ud = &lg;
    if (kp_client_new(lg.loop, &opts, &lg.cl, err, sizeof(err)) != 0) {
        fprintf(stderr, "bench_legacy: %s\n", err);
        return 2;
    }
    kd_keys_wipe(&lg.keys); /* the client keeps its own copy */
    uv_timer_init(lg.loop, &lg.wait_timer);
    uv_timer_init(lg.loop, &lg.end_timer);
    lg.wait_timer.data = &lg;
    lg.end_timer.data = &lg;
    uv_timer_start(&lg.end_timer, on_end, (uint64_t)duration_ms, 0);
    legacy_next(&lg);
    uv_run(lg.loop, UV_RUN_DEFAULT);
    print_figures(&lg);
    uv_loop_close(lg.loop);
    json_decref(lg.selection);
    free(lg.deals);
    return 0;
}
