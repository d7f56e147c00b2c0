/*
 * keepa.c: `kdeals decode` and `kdeals fetch`. See keepa.h.
 *
 * decode streams the input through zlib (when it starts with the gzip magic) and the same
 * kp_decoder the daemon uses, so what it prints is exactly what the pipeline would see. The
 * JSON output is built with yajl_gen and printed only once the body decoded completely, so
 * a malformed input prints one error line and nothing on stdout. fetch runs one request on a
 * private libuv loop through the real client (retries and classification included).
 * The key comes from the one key loader (base/key.h) and is never printed (kd_log redacts it).
 */
#include "cli/keepa.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>
#include <yajl/yajl_gen.h>
#include <yajl/yajl_tree.h>
#include <zlib.h>

#include "base/key.h"
#include "base/log.h"
#include "cli/json.h"
#include "keepa/client.h"
#include "keepa/decode.h"
#include "keepa/request.h"

enum out_kind {
    OUT_PRODUCTS,
    OUT_DEALS,
    OUT_SELLERS,
    OUT_QUERY,
    OUT_LIGHTNING,
    OUT_BESTSELLERS,
    OUT_NONE
};

struct out {
    yajl_gen g;
    enum out_kind kind;
};

static void gen_envelope(yajl_gen g, const struct kp_envelope *e)
{
    cli_json_key(g, "envelope");
    yajl_gen_map_open(g);
    if (e->have & KP_ENV_TIMESTAMP)
        cli_json_int(g, "timestamp", e->timestamp_ms);
    if (e->have & KP_ENV_TOKENS_LEFT)
        cli_json_dbl(g, "tokensLeft", e->tokens_left);
    if (e->have & KP_ENV_REFILL_IN)
        cli_json_int(g, "refillIn", e->refill_in_ms);
    if (e->have & KP_ENV_REFILL_RATE)
        cli_json_dbl(g, "refillRate", e->refill_rate);
    if (e->have & KP_ENV_FLOW_REDUCTION)
        cli_json_dbl(g, "tokenFlowReduction", e->token_flow_reduction);
    if (e->have & KP_ENV_TOKENS_CONSUMED)
        cli_json_dbl(g, "tokensConsumed", e->tokens_consumed);
    if (e->have & KP_ENV_PROCESSING)
        cli_json_int(g, "processingTimeInMs", e->processing_ms);
    if (e->have & KP_ENV_ERROR) {
        cli_json_key(g, "error");
        yajl_gen_map_open(g);
        cli_json_str(g, "type", e->error_type);
        cli_json_str(g, "message", e->error_message);
        cli_json_str(g, "details", e->error_details);
        yajl_gen_map_close(g);
    }
    if (e->deals_cached >= 0)
        cli_json_tri(g, "dealsCached", e->deals_cached);
    if (e->total_results >= 0)
        cli_json_int(g, "totalResults", e->total_results);
    cli_json_bool(g, "productsKeyPresent", (e->have & KP_ENV_PRODUCTS) != 0);
    cli_json_int(g, "products", e->n_products);
    cli_json_int(g, "deals", e->n_deals);
    cli_json_int(g, "sellers", e->n_sellers);
    cli_json_int(g, "asins", e->n_asins);
    cli_json_int(g, "lightningDeals", e->n_lightning);
    if (e->bestsellers_category >= 0)
        cli_json_int(g, "bestSellersCategory", e->bestsellers_category);
    if (e->bestsellers_last_update_keepa_min >= 0)
        cli_json_int(g, "bestSellersLastUpdate", e->bestsellers_last_update_keepa_min);
    yajl_gen_map_close(g);
}

static void gen_product(yajl_gen g, const struct kp_product *p)
{
    yajl_gen_map_open(g);
    cli_json_str(g, "asin", p->asin);
    cli_json_str(g, "title", p->title);
    cli_json_bool(g, "titleTruncated", p->title_truncated);
    cli_json_int(g, "domainId", p->domain_id);
    cli_json_int(g, "productType", p->product_type);
    cli_json_int(g, "rootCategory", p->root_category);
    cli_json_i64s(g, "categories", p->categories, p->n_categories);
    cli_json_int(g, "categoriesTotal", p->n_categories_total);
    cli_json_int(g, "lastUpdate", p->last_update_keepa_min);
    cli_json_int(g, "lastPriceChange", p->last_price_change_keepa_min);
    cli_json_key(g, "stats");
    if (!p->stats.present) {
        yajl_gen_null(g);
    } else {
        const struct kp_stats *s = &p->stats;
        yajl_gen_map_open(g);
        cli_json_i32s(g, "current", s->current, KP_NPRICE);
        cli_json_i32s(g, "avg", s->avg, KP_NPRICE);
        cli_json_i32s(g, "avg30", s->avg30, KP_NPRICE);
        cli_json_i32s(g, "avg90", s->avg90, KP_NPRICE);
        cli_json_i32s(g, "avg180", s->avg180, KP_NPRICE);
        cli_json_i32s(g, "avg365", s->avg365, KP_NPRICE);
        cli_json_int(g, "salesRankDrops30", s->sales_rank_drops30);
        cli_json_int(g, "salesRankDrops90", s->sales_rank_drops90);
        cli_json_int(g, "salesRankDrops180", s->sales_rank_drops180);
        cli_json_int(g, "salesRankDrops365", s->sales_rank_drops365);
        cli_json_int(g, "buyBoxPrice", s->buy_box_price_cents);
        cli_json_int(g, "buyBoxShipping", s->buy_box_shipping_cents);
        cli_json_tri(g, "buyBoxIsFBA", s->buy_box_is_fba);
        cli_json_tri(g, "buyBoxIsAmazon", s->buy_box_is_amazon);
        cli_json_int(g, "offerCountFBA", s->offer_count_fba);
        cli_json_int(g, "offerCountFBM", s->offer_count_fbm);
        cli_json_int(g, "totalOfferCount", s->total_offer_count);
        cli_json_int(g, "retrievedOfferCount", s->retrieved_offer_count);
        cli_json_str(g, "buyBoxSellerId", s->buy_box_seller_id);
        yajl_gen_map_close(g);
    }
    cli_json_int(g, "pickAndPackFee", p->pick_and_pack_fee_cents);
    cli_json_dbl(g, "referralFeePercentage", p->referral_fee_percent);
    cli_json_tri(g, "offersSuccessful", p->offers_successful);
    cli_json_int(g, "monthlySold", p->monthly_sold);
    cli_json_int(g, "availabilityAmazon", p->availability_amazon);
    cli_json_int(g, "packageWeight", p->package_weight_g);
    cli_json_str(g, "parentAsin", p->parent_asin);
    cli_json_bool(g, "liveOffersOrderPresent", p->live_order_present);
    cli_json_int(g, "offersSeen", p->n_offers_seen);
    cli_json_bool(g, "offersTruncated", p->offers_truncated);
    cli_json_int(g, "typeErrors", p->type_errors); /* > 0: garbled, the client would withhold it */
    cli_json_key(g, "offers");
    yajl_gen_array_open(g);
    for (uint32_t i = 0; i < p->n_offers; i++) {
        const struct kp_offer *o = &p->offers[i];
        yajl_gen_map_open(g);
        cli_json_int(g, "index", o->index);
        cli_json_str(g, "sellerId", o->seller_id);
        cli_json_int(g, "price", o->price_cents);
        cli_json_int(g, "shipping", o->shipping_cents);
        cli_json_int(g, "csvTime", o->csv_time_keepa_min);
        cli_json_int(g, "lastSeen", o->last_seen_keepa_min);
        cli_json_int(g, "condition", o->condition);
        cli_json_tri(g, "isFBA", o->is_fba);
        cli_json_tri(g, "isPrime", o->is_prime);
        cli_json_tri(g, "isAmazon", o->is_amazon);
        cli_json_int(g, "offerId", o->offer_id);
        yajl_gen_map_close(g);
    }
    yajl_gen_array_close(g);
    yajl_gen_map_close(g);
}

static void gen_deal(yajl_gen g, const struct kp_deal *d)
{
    static const char *const rows[] = {"avg", "delta", "deltaPercent"};
    yajl_gen_map_open(g);
    cli_json_str(g, "asin", d->asin);
    cli_json_str(g, "title", d->title);
    cli_json_int(g, "rootCat", d->root_cat);
    cli_json_i64s(g, "categories", d->categories, d->n_categories);
    cli_json_int(g, "lastUpdate", d->last_update_keepa_min);
    cli_json_int(g, "creationDate", d->creation_date_keepa_min);
    size_t n = d->n_price;
    cli_json_i32s(g, "current", d->current, n);
    cli_json_i32s(g, "currentSince", d->current_since, n);
    cli_json_i32s(g, "deltaLast", d->delta_last, n);
    for (size_t k = 0; k < 3; k++) {
        const int32_t(*a)[KP_NPRICE] = k == 0 ? d->avg : k == 1 ? d->delta : d->delta_percent;
        cli_json_key(g, rows[k]);
        yajl_gen_array_open(g);
        for (size_t r = 0; r < KP_DEAL_RANGES; r++) {
            yajl_gen_array_open(g);
            for (size_t i = 0; i < n; i++)
                yajl_gen_integer(g, a[r][i]);
            yajl_gen_array_close(g);
        }
        yajl_gen_array_close(g);
    }
    cli_json_int(g, "salesRankDrops30", d->sales_rank_drops30);
    cli_json_int(g, "salesRankDrops90", d->sales_rank_drops90);
    cli_json_int(g, "salesRankDrops180", d->sales_rank_drops180);
    cli_json_int(g, "salesRankDrops365", d->sales_rank_drops365);
    cli_json_int(g, "warehouseCondition", d->warehouse_condition);
    yajl_gen_map_close(g);
}

static void gen_seller(yajl_gen g, const struct kp_seller *s)
{
    yajl_gen_map_open(g);
    cli_json_str(g, "sellerId", s->seller_id);
    cli_json_str(g, "sellerName", s->name);
    cli_json_int(g, "domainId", s->domain_id);
    cli_json_int(g, "currentRating", s->current_rating);
    cli_json_int(g, "currentRatingCount", s->current_rating_count);
    cli_json_int(g, "ratingsLast30Days", s->ratings_last30_days);
    cli_json_tri(g, "isScammer", s->is_scammer);
    cli_json_tri(g, "hasFBA", s->has_fba);
    cli_json_int(g, "lastUpdate", s->last_update_keepa_min);
    yajl_gen_map_close(g);
}

static void gen_lightning(yajl_gen g, const struct kp_lightning_deal *x)
{
    yajl_gen_map_open(g);
    cli_json_str(g, "asin", x->asin);
    cli_json_str(g, "title", x->title);
    cli_json_str(g, "sellerId", x->seller_id);
    cli_json_str(g, "sellerName", x->seller_name);
    cli_json_str(g, "dealId", x->deal_id);
    cli_json_int(g, "domainId", x->domain_id);
    cli_json_int(g, "lastUpdate", x->last_update_keepa_min);
    cli_json_str(g, "dealState", kp_ld_state_name(x->state));
    cli_json_int(g, "startTime", x->start_keepa_min);
    cli_json_int(g, "endTime", x->end_keepa_min);
    cli_json_int(g, "dealPrice", x->deal_price_cents);
    cli_json_int(g, "currentPrice", x->current_price_cents);
    cli_json_int(g, "percentClaimed", x->percent_claimed);
    cli_json_int(g, "percentOff", x->percent_off);
    cli_json_int(g, "rating", x->rating);
    cli_json_int(g, "totalReviews", x->total_reviews);
    cli_json_tri(g, "isPrimeEligible", x->is_prime_eligible);
    cli_json_tri(g, "isFulfilledByAmazon", x->is_fba);
    yajl_gen_map_close(g);
}

static int out_product(const struct kp_product *p, void *ud)
{
    struct out *o = ud;
    if (o->kind == OUT_PRODUCTS)
        gen_product(o->g, p);
    return 0;
}

static int out_deal(const struct kp_deal *d, void *ud)
{
    struct out *o = ud;
    if (o->kind == OUT_DEALS)
        gen_deal(o->g, d);
    return 0;
}

static int out_seller(const struct kp_seller *s, void *ud)
{
    struct out *o = ud;
    if (o->kind == OUT_SELLERS)
        gen_seller(o->g, s);
    return 0;
}

static int out_lightning(const struct kp_lightning_deal *x, void *ud)
{
    struct out *o = ud;
    if (o->kind == OUT_LIGHTNING)
        gen_lightning(o->g, x);
    return 0;
}

static int out_asin(const char *asin, void *ud)
{
    struct out *o = ud;
    if (o->kind == OUT_QUERY || o->kind == OUT_BESTSELLERS)
        yajl_gen_string(o->g, (const unsigned char *)asin, strlen(asin));
    return 0;
}

static void out_open(struct out *o, enum out_kind kind)
{
    static const char *const names[] = {"products", "deals",          "sellers",
                                        "asinList", "lightningDeals", "asinList"};
    o->kind = kind;
    o->g = cli_json_new(true);
    yajl_gen_map_open(o->g);
    if (kind != OUT_NONE) {
        cli_json_key(o->g, names[kind]);
        yajl_gen_array_open(o->g);
    }
}

static void out_items_close(struct out *o)
{
    if (o->kind != OUT_NONE)
        yajl_gen_array_close(o->g);
}

static void out_print_free(struct out *o, bool print)
{
    if (print) {
        yajl_gen_map_close(o->g);
        cli_json_print(o->g, stdout);
    } else {
        yajl_gen_free(o->g);
    }
}

static int parse_kind(const char *s, enum out_kind *k)
{
    if (strcmp(s, "product") == 0 || strcmp(s, "products") == 0)
        *k = OUT_PRODUCTS;
    else if (strcmp(s, "deals") == 0 || strcmp(s, "deal") == 0)
        *k = OUT_DEALS;
    else if (strcmp(s, "sellers") == 0 || strcmp(s, "seller") == 0)
        *k = OUT_SELLERS;
    else if (strcmp(s, "query") == 0)
        *k = OUT_QUERY;
    else if (strcmp(s, "lightning") == 0 || strcmp(s, "lightningdeal") == 0)
        *k = OUT_LIGHTNING;
    else if (strcmp(s, "bestsellers") == 0)
        *k = OUT_BESTSELLERS;
    else
        return -EINVAL;
    return 0;
}

/* ---- decode ---- */

static void decode_usage(FILE *f)
{
    fprintf(f, "usage: kdeals decode product|deals|sellers|query|lightning|bestsellers FILE\n"
               "  Decodes a raw Keepa response body (plain or gzip; FILE - reads stdin) and\n"
               "  prints, as JSON, exactly what the client's decoder extracted.\n"
               "  Exit: 0 decoded, 1 malformed input, 2 usage.\n");
}

static int decode_stream(FILE *in, const char *name, struct kp_decoder *d)
{
    unsigned char buf[64 * 1024];
    unsigned char zout[64 * 1024];
    z_stream z;
    bool gz = false, first = true;
    int rc = 0;
    memset(&z, 0, sizeof(z));
    for (;;) {
        size_t n = fread(buf, 1, sizeof(buf), in);
        if (n == 0) {
            if (ferror(in)) {
                fprintf(stderr, "kdeals decode: cannot read %s: %s\n", name, strerror(errno));
                rc = -EIO;
            }
            break;
        }
        if (first) {
            first = false;
            if (n >= 2 && buf[0] == 0x1f && buf[1] == 0x8b) {
                if (inflateInit2(&z, 16 + MAX_WBITS) != Z_OK) {
                    fprintf(stderr, "kdeals decode: zlib init failed\n");
                    return -ENOMEM;
                }
                gz = true;
            }
        }
        if (!gz) {
            rc = kp_decoder_feed(d, buf, n);
            if (rc != 0)
                break;
            continue;
        }
        z.next_in = buf;
        z.avail_in = (uInt)n;
        while (z.avail_in > 0 && rc == 0) {
            z.next_out = zout;
            z.avail_out = sizeof(zout);
            int zr = inflate(&z, Z_NO_FLUSH);
            if (zr != Z_OK && zr != Z_STREAM_END && zr != Z_BUF_ERROR) {
                fprintf(stderr, "kdeals decode: %s: bad gzip data: %s\n", name,
                        z.msg ? z.msg : "inflate failed");
                rc = -EBADMSG;
                break;
            }
            size_t got = sizeof(zout) - z.avail_out;
            if (got > 0)
                rc = kp_decoder_feed(d, zout, got);
            if (zr == Z_STREAM_END) {
                /* Concatenated members are allowed by gzip; restart for the next one. */
                if (z.avail_in > 0)
                    inflateReset(&z);
                else
                    break;
            }
            if (zr == Z_BUF_ERROR && got == 0)
                break;
        }
        if (rc != 0)
            break;
    }
    if (gz)
        inflateEnd(&z);
    return rc;
}

int cli_decode_main(int argc, char **argv)
{
    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        decode_usage(stdout);
        return 0;
    }
    enum out_kind kind;
    if (argc != 3 || parse_kind(argv[1], &kind) != 0) {
        decode_usage(stderr);
        return 2;
    }
    const char *path = argv[2];
    FILE *in = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (in == NULL) {
        fprintf(stderr, "kdeals decode: cannot open %s: %s\n", path, strerror(errno));
        return 1;
    }
    int code = 1;
    struct out o;
    out_open(&o, kind);
    struct kp_decode_cbs cbs = {.on_product = out_product,
                                .on_deal = out_deal,
                                .on_seller = out_seller,
                                .on_asin = out_asin,
                                .on_lightning = out_lightning,
                                .ud = &o};
    struct kp_decoder *d = kp_decoder_new(NULL, &cbs);
    if (d == NULL) {
        fprintf(stderr, "kdeals decode: out of memory\n");
        goto out_json;
    }
    int rc = decode_stream(in, path, d);
    if (rc == 0)
        rc = kp_decoder_finish(d);
    if (rc != 0) {
        /* I/O and gzip errors were printed where they happened. */
        if (kp_decoder_error(d)[0] != '\0')
            fprintf(stderr, "kdeals decode: %s: %s\n", path, kp_decoder_error(d));
        goto out_decoder;
    }
    out_items_close(&o);
    gen_envelope(o.g, kp_decoder_envelope(d));
    code = 0;
out_decoder:
    kp_decoder_free(d);
out_json:
    out_print_free(&o, code == 0); /* a failed decode prints nothing on stdout */
    if (in != stdin)
        fclose(in);
    return code;
}

/* ---- fetch ---- */

struct fetch_state {
    struct out o;
    bool done;
    bool have_reading;
    struct kp_reading reading;
    enum kp_result_code code;
    int http;
    unsigned tries;
    bool maybe_charged;
    char error[256];
    struct kp_envelope env;
    size_t n_asins;
    struct kp_asin_outcome asins[2 * KP_MAX_BATCH];
};

static void fetch_reading(const struct kp_reading *r, void *ud)
{
    struct fetch_state *st = ud;
    st->reading = *r;
    st->have_reading = true;
}

static void fetch_done(const struct kp_result *res, void *ud)
{
    struct fetch_state *st = ud;
    st->done = true;
    st->code = res->code;
    st->http = res->http_status;
    st->tries = res->tries;
    st->maybe_charged = res->maybe_charged;
    snprintf(st->error, sizeof(st->error), "%s", res->error);
    if (res->envelope != NULL)
        st->env = *res->envelope;
    st->n_asins = res->n_asins < 2 * KP_MAX_BATCH ? res->n_asins : 2 * KP_MAX_BATCH;
    if (st->n_asins > 0)
        memcpy(st->asins, res->asins, st->n_asins * sizeof(st->asins[0]));
}

static void fetch_usage(FILE *f)
{
    fprintf(f, "usage: kdeals fetch product ASIN... [--offers N] [--stats DAYS] [--domain D]\n"
               "           [--history 0|1] [--days N] [--only-live-offers 0|1] [--rating 0|1]\n"
               "           [--buybox 0|1] [--stock 0|1] [--update HOURS]\n"
               "       kdeals fetch deals --selection FILE [--page N]\n"
               "       kdeals fetch token\n"
               "options: --base-url URL (else KEEPA_BASE_URL, else https://api.keepa.com)\n"
               "         --key-file FILE (mode 0600; else the config's [keepa] key_file or key,\n"
               "                          else KEEPA_API_KEY)\n"
               "         --timeout-ms MS  --tries N  -c FILE (config: base_url and the key)\n"
               "Prints the decoded answer, the token reading and the outcome as JSON.\n"
               "Exit: 0 success, 1 request failed, 2 usage.\n");
}

static bool parse_int(const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

static enum kp_flag flag_of(long v)
{
    return v < 0 ? KP_DEFAULT : v == 0 ? KP_NO : KP_YES;
}

/* Re-emits a yajl_tree value, replacing a top-level "page" when PAGE >= 0. */
static void emit_tree(yajl_gen g, yajl_val v, long page, bool top)
{
    if (YAJL_IS_OBJECT(v)) {
        yajl_gen_map_open(g);
        bool page_done = false;
        for (size_t i = 0; i < v->u.object.len; i++) {
            const char *k = v->u.object.keys[i];
            cli_json_key(g, k);
            if (top && page >= 0 && strcmp(k, "page") == 0) {
                yajl_gen_integer(g, page);
                page_done = true;
            } else {
                emit_tree(g, v->u.object.values[i], page, false);
            }
        }
        if (top && page >= 0 && !page_done)
            cli_json_int(g, "page", page);
        yajl_gen_map_close(g);
    } else if (YAJL_IS_ARRAY(v)) {
        yajl_gen_array_open(g);
        for (size_t i = 0; i < v->u.array.len; i++)
            emit_tree(g, v->u.array.values[i], page, false);
        yajl_gen_array_close(g);
    } else if (YAJL_IS_STRING(v)) {
        yajl_gen_string(g, (const unsigned char *)v->u.string, strlen(v->u.string));
    } else if (YAJL_IS_NUMBER(v)) {
        yajl_gen_number(g, v->u.number.r, strlen(v->u.number.r));
    } else if (YAJL_IS_TRUE(v)) {
        yajl_gen_bool(g, 1);
    } else if (YAJL_IS_FALSE(v)) {
        yajl_gen_bool(g, 0);
    } else {
        yajl_gen_null(g);
    }
}

/* Reads the selection file and applies --page. Returns a malloc'd string or NULL. */
static char *load_selection(const char *path, long page)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "kdeals fetch: cannot open selection %s: %s\n", path, strerror(errno));
        return NULL;
    }
    char *text = malloc(KP_SELECTION_MAX + 1);
    size_t n = text != NULL ? fread(text, 1, KP_SELECTION_MAX + 1, f) : 0;
    fclose(f);
    if (text == NULL || n > KP_SELECTION_MAX || n == 0) {
        fprintf(stderr, "kdeals fetch: selection %s is empty or larger than %u bytes\n", path,
                KP_SELECTION_MAX);
        free(text);
        return NULL;
    }
    text[n] = '\0';
    char errbuf[256];
    yajl_val tree = yajl_tree_parse(text, errbuf, sizeof(errbuf));
    free(text);
    if (tree == NULL || !YAJL_IS_OBJECT(tree)) {
        for (char *p = errbuf; *p; p++)
            if (*p == '\n')
                *p = ' ';
        fprintf(stderr, "kdeals fetch: selection %s is not a JSON object: %s\n", path,
                tree == NULL ? errbuf : "top level is not an object");
        yajl_tree_free(tree);
        return NULL;
    }
    yajl_gen g = cli_json_new(false);
    emit_tree(g, tree, page, true);
    yajl_tree_free(tree);
    const unsigned char *buf;
    size_t len;
    yajl_gen_get_buf(g, &buf, &len);
    char *out = malloc(len + 1);
    if (out != NULL) {
        memcpy(out, buf, len);
        out[len] = '\0';
    }
    yajl_gen_free(g);
    return out;
}

static void gen_reading(yajl_gen g, const struct kp_reading *r)
{
    cli_json_key(g, "reading");
    yajl_gen_map_open(g);
    cli_json_dbl(g, "tokensLeft", r->tokens_left);
    cli_json_int(g, "refillInMs", r->refill_in_ms);
    cli_json_dbl(g, "refillRate", r->refill_rate);
    cli_json_int(g, "timestampMs", r->timestamp_ms);
    cli_json_dbl(g, "tokensConsumed", r->tokens_consumed);
    cli_json_int(g, "processingMs", r->processing_ms);
    cli_json_dbl(g, "tokenFlowReduction", r->token_flow_reduction);
    cli_json_int(g, "httpStatus", r->http_status);
    cli_json_int(g, "roundTripMs", (r->local_mono_ns_received - r->local_mono_ns_sent) / 1000000);
    yajl_gen_map_close(g);
}

/*
 * One Keepa request from a command, on an event loop of its own: loads the key of KEYCFG (the
 * only key loader, base/key.h), starts a client, sends CALL and runs the loop until *DONE (the
 * request's on_done sets it) and the client has closed. CALL is consumed whatever happens.
 * Returns 0 once the request was sent (its outcome is in what the callbacks recorded), or a
 * negative errno with ERR saying what could not be set up (key_failed: the key).
 */
struct one_call {
    const struct cfg *keycfg;
    const char *base_url;
    long timeout_ms;
    unsigned max_tries; /* 0: the client's default */
    void (*on_reading)(const struct kp_reading *r, void *ud);
    void *ud; /* for on_reading */
    const bool *done;
    bool key_failed; /* set: the key could not be loaded (a configuration error) */
};

static int run_one_call(struct one_call *o, struct kp_call *call, const struct kp_request_cbs *cbs,
                        char *err, size_t errlen)
{
    bool call_taken = false; /* a submitted request owns the call's body */
    struct kd_keys keys;
    int rc = kd_keys_load(o->keycfg, &keys, err, errlen);
    o->key_failed = rc != 0;
    if (rc != 0)
        goto out_call;
    kd_log_add_secret(keys.key[0]);
    rc = -EIO;
    if (kp_global_init() != 0) {
        snprintf(err, errlen, "cannot initialise libcurl");
        goto out_keys;
    }
    uv_loop_t loop;
    int uvrc = uv_loop_init(&loop);
    if (uvrc != 0) {
        snprintf(err, errlen, "cannot start an event loop: %s", uv_strerror(uvrc));
        goto out_keys;
    }
    struct kp_client_opts co = {.base_url = o->base_url,
                                .api_key = keys.key[0],
                                .timeout_ms = o->timeout_ms,
                                .offers_timeout_ms = o->timeout_ms,
                                .max_tries = o->max_tries,
                                .on_reading = o->on_reading,
                                .reading_ud = o->ud};
    struct kp_client *cl = NULL;
    rc = kp_client_new(&loop, &co, &cl, err, errlen);
    kd_keys_wipe(&keys); /* the client keeps its own copy */
    if (rc == 0) {
        rc = kp_client_submit(cl, call, cbs, NULL);
        if (rc == 0) {
            call_taken = true;
            while (!*o->done && uv_run(&loop, UV_RUN_ONCE) != 0) {
            }
        } else {
            snprintf(err, errlen, "cannot submit the request: %s", strerror(-rc));
        }
        kp_client_close(cl, NULL, NULL);
        uv_run(&loop, UV_RUN_DEFAULT);
    }
    uv_loop_close(&loop);
out_keys:
    kd_keys_wipe(&keys);
out_call:
    if (!call_taken)
        kp_call_free(call);
    return rc;
}

int cli_fetch_main(const struct cfg *c, bool from_file, int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fetch_usage(stdout);
            return 0;
        }
    }
    if (argc < 2) {
        fetch_usage(stderr);
        return 2;
    }
    const char *what = argv[1];
    /* --base-url, else the config file's base_url, else KEEPA_BASE_URL, else Keepa's. */
    const char *base = from_file ? c->keepa_base_url : getenv("KEEPA_BASE_URL");
    const char *key_file = NULL, *selection = NULL;
    long offers = 0, stats = 0, page = -1, domain = 1, timeout_ms = 0, tries = 0;
    long history = -1, days = 0, update = -2, live_only = -1, rating = -1, buybox = -1, stock = -1;
    const char *asins[KP_MAX_BATCH];
    size_t n_asins = 0;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        bool ok = true;
        if (strcmp(a, "--base-url") == 0 && v) {
            base = v;
        } else if (strcmp(a, "--key-file") == 0 && v) {
            key_file = v;
        } else if (strcmp(a, "--selection") == 0 && v) {
            selection = v;
        } else if (strcmp(a, "--offers") == 0 && v) {
            ok = parse_int(v, 20, 100, &offers);
        } else if (strcmp(a, "--stats") == 0 && v) {
            ok = parse_int(v, 1, 100000, &stats);
        } else if (strcmp(a, "--page") == 0 && v) {
            ok = parse_int(v, 0, 66, &page);
        } else if (strcmp(a, "--domain") == 0 && v) {
            ok = parse_int(v, 1, 12, &domain);
        } else if (strcmp(a, "--timeout-ms") == 0 && v) {
            ok = parse_int(v, 1, 3600000, &timeout_ms);
        } else if (strcmp(a, "--tries") == 0 && v) {
            ok = parse_int(v, 1, 10, &tries);
        } else if (strcmp(a, "--history") == 0 && v) {
            ok = parse_int(v, 0, 1, &history);
        } else if (strcmp(a, "--days") == 0 && v) {
            ok = parse_int(v, 1, 100000, &days);
        } else if (strcmp(a, "--update") == 0 && v) {
            ok = parse_int(v, -1, 100000, &update);
        } else if (strcmp(a, "--only-live-offers") == 0 && v) {
            ok = parse_int(v, 0, 1, &live_only);
        } else if (strcmp(a, "--rating") == 0 && v) {
            ok = parse_int(v, 0, 1, &rating);
        } else if (strcmp(a, "--buybox") == 0 && v) {
            ok = parse_int(v, 0, 1, &buybox);
        } else if (strcmp(a, "--stock") == 0 && v) {
            ok = parse_int(v, 0, 1, &stock);
        } else if (a[0] != '-' && strcmp(what, "product") == 0 && n_asins < KP_MAX_BATCH) {
            asins[n_asins++] = a;
            continue;
        } else {
            fprintf(stderr, "kdeals fetch: unexpected argument '%s'\n", a);
            return 2;
        }
        if (!ok) {
            fprintf(stderr, "kdeals fetch: bad value for %s: '%s'\n", a, v);
            return 2;
        }
        i++;
    }
    if (base == NULL || base[0] == '\0')
        base = "https://api.keepa.com";

    struct kp_call call;
    int rc;
    enum out_kind kind = OUT_NONE;
    if (strcmp(what, "product") == 0) {
        if (n_asins == 0) {
            fprintf(stderr, "kdeals fetch product: give at least one ASIN\n");
            return 2;
        }
        struct kp_product_params p = {.domain = (int)domain,
                                      .asins = asins,
                                      .n_asins = n_asins,
                                      .stats_days = (int)stats,
                                      .history = flag_of(history),
                                      .days = (int)days,
                                      .offers = (int)offers,
                                      .only_live_offers = flag_of(live_only),
                                      .rating = flag_of(rating),
                                      .buybox = flag_of(buybox),
                                      .stock = flag_of(stock),
                                      .has_update = update >= -1,
                                      .update_hours = (int)update};
        rc = kp_call_product(&call, &p);
        kind = OUT_PRODUCTS;
    } else if (strcmp(what, "deals") == 0) {
        if (selection == NULL) {
            fprintf(stderr, "kdeals fetch deals: --selection FILE is required\n");
            return 2;
        }
        char *sel = load_selection(selection, page);
        if (sel == NULL)
            return 1;
        rc = kp_call_deal(&call, sel);
        free(sel);
        kind = OUT_DEALS;
    } else if (strcmp(what, "token") == 0) {
        rc = kp_call_token(&call);
    } else {
        fetch_usage(stderr);
        return 2;
    }
    if (rc != 0) {
        fprintf(stderr, "kdeals fetch: invalid request parameters (ASINs must be letters and "
                        "digits, at most 100)\n");
        return 2;
    }

    /* The key: --key-file stands in for the config's key_file and key (base/key.h). */
    struct cfg *kc = malloc(sizeof(*kc));
    if (kc == NULL) {
        fprintf(stderr, "kdeals fetch: out of memory\n");
        kp_call_free(&call);
        return 1;
    }
    *kc = *c;
    if (key_file != NULL) {
        snprintf(kc->keepa_key_file, sizeof(kc->keepa_key_file), "%s", key_file);
        kc->keepa_key[0] = '\0';
    }
    static struct fetch_state st;
    memset(&st, 0, sizeof(st));
    out_open(&st.o, kind);
    /* One ud for all: st.o is the first member, so &st is also a valid struct out pointer. */
    struct kp_request_cbs cbs = {.on_product = out_product,
                                 .on_deal = out_deal,
                                 .on_seller = out_seller,
                                 .on_asin = out_asin,
                                 .on_done = fetch_done,
                                 .ud = &st};
    struct one_call one = {.keycfg = kc,
                           .base_url = base,
                           .timeout_ms = timeout_ms,
                           .max_tries = (unsigned)tries,
                           .on_reading = fetch_reading,
                           .ud = &st,
                           .done = &st.done};
    char err[512];
    rc = run_one_call(&one, &call, &cbs, err, sizeof(err));
    explicit_bzero(kc, sizeof(*kc));
    free(kc);
    if (rc != 0 && !st.done) {
        out_print_free(&st.o, false);
        fprintf(stderr, "kdeals fetch: %s\n", err);
        return one.key_failed ? 2 : 1;
    }
    out_items_close(&st.o);
    gen_envelope(st.o.g, &st.env);
    if (st.have_reading)
        gen_reading(st.o.g, &st.reading);
    cli_json_key(st.o.g, "result");
    yajl_gen_map_open(st.o.g);
    cli_json_str(st.o.g, "code", kp_result_name(st.code));
    cli_json_int(st.o.g, "httpStatus", st.http);
    cli_json_int(st.o.g, "tries", st.tries);
    cli_json_bool(st.o.g, "maybeCharged", st.maybe_charged);
    cli_json_str(st.o.g, "error", st.error);
    cli_json_key(st.o.g, "asins");
    yajl_gen_array_open(st.o.g);
    for (size_t i = 0; i < st.n_asins; i++) {
        yajl_gen_map_open(st.o.g);
        cli_json_str(st.o.g, "asin", st.asins[i].asin);
        cli_json_str(st.o.g, "status", kp_asin_status_name(st.asins[i].status));
        yajl_gen_map_close(st.o.g);
    }
    yajl_gen_array_close(st.o.g);
    yajl_gen_map_close(st.o.g);
    out_print_free(&st.o, true);
    if (!st.done || st.code != KP_OK) {
        kd_error("kdeals fetch: %s", st.error[0] ? st.error : "request did not complete");
        return 1;
    }
    return 0;
}

/* ---- helpers for other commands (kdeals judge) ---- */

int cli_decode_body(const char *path, const struct kp_decode_cbs *cbs, char *err, size_t errlen)
{
    FILE *in = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (in == NULL) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -errno;
    }
    struct kp_decoder *d = kp_decoder_new(NULL, cbs);
    int rc = d == NULL ? -ENOMEM : decode_stream(in, path, d);
    if (rc == 0)
        rc = kp_decoder_finish(d);
    if (rc != 0)
        snprintf(err, errlen, "%s: %s", path, d != NULL ? kp_decoder_error(d) : "out of memory");
    kp_decoder_free(d);
    if (in != stdin)
        fclose(in);
    return rc;
}

struct product_fetch {
    const struct kp_decode_cbs *cbs; /* the caller's: products are handed on */
    bool done;
    enum kp_result_code code;
    char error[256];
    bool have_reading;
    struct kp_reading reading;
};

static void pf_reading(const struct kp_reading *r, void *ud)
{
    struct product_fetch *st = ud;
    st->reading = *r;
    st->have_reading = true;
}

static int pf_product(const struct kp_product *p, void *ud)
{
    struct product_fetch *st = ud;
    return st->cbs->on_product != NULL ? st->cbs->on_product(p, st->cbs->ud) : 0;
}

static void pf_done(const struct kp_result *res, void *ud)
{
    struct product_fetch *st = ud;
    st->done = true;
    st->code = res->code;
    snprintf(st->error, sizeof(st->error), "%s", res->error);
}

int cli_fetch_products(const struct cfg *c, const char *const *asins, size_t n, int offers,
                       int stats_days, const struct kp_decode_cbs *cbs, struct kp_reading *reading,
                       bool *have_reading, char *err, size_t errlen)
{
    *have_reading = false;
    struct kp_product_params p = {.domain = (int)c->keepa_domain,
                                  .asins = (const char **)asins,
                                  .n_asins = n,
                                  .stats_days = stats_days,
                                  .history = KP_NO,
                                  .offers = offers,
                                  .only_live_offers = offers > 0 ? KP_YES : KP_DEFAULT};
    struct kp_call call;
    if (kp_call_product(&call, &p) != 0) {
        snprintf(err, errlen, "invalid ASIN (10 letters and digits, at most 100)");
        return -EINVAL;
    }
    struct product_fetch st;
    memset(&st, 0, sizeof(st));
    st.cbs = cbs;
    struct kp_request_cbs rcbs = {.on_product = pf_product, .on_done = pf_done, .ud = &st};
    struct one_call one = {.keycfg = c,
                           .base_url = c->keepa_base_url,
                           .timeout_ms = c->keepa_request_timeout_ms,
                           .on_reading = pf_reading,
                           .ud = &st,
                           .done = &st.done};
    int rc = run_one_call(&one, &call, &rcbs, err, errlen);
    if (rc == 0 && (!st.done || st.code != KP_OK)) {
        snprintf(err, errlen, "%s: %s", kp_result_name(st.code),
                 st.error[0] ? st.error : "the request did not complete");
        rc = -EIO;
    }
    *have_reading = st.have_reading;
    if (st.have_reading)
        *reading = st.reading;
    return rc;
}
