/*
 * bench_decode.c: throughput and memory of the streaming Keepa decoder (keepa/decode.h).
 *
 * Usage: bench_decode [FIXTURE_DIR]   (default: the KD_FIXTURES_DIR compiled in)
 *
 * Side by side, on the same bytes: the kdeals decoder (yajl callbacks, fields copied into
 * compact structs) and a jansson DOM parse (json_loadb + json_decref), which is what a
 * straightforward client would do. Bodies: the real /product body of B0D8W1YVBX (604 KB, one
 * product with a long history) when the fixtures are present, and a synthetic 50-product body
 * in the simulator's shape (36-entry stats arrays, csv histories, 20 offers each). Then a
 * forked child streams a generated 50 MB body through the decoder without ever holding it,
 * and reports its peak RSS (getrusage). And a /deal page in the simulator's shape (150 deals,
 * 350 KB of mostly integer arrays): ms per decode, and the gzip and inflate of it at zlib
 * levels 0 and 1. Prints `BENCH <name> <value> <unit>` lines; asserts nothing.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>
#include <zlib.h>

#include "base/clock.h"
#include "keepa/decode.h"

#ifndef KD_FIXTURES_DIR
#define KD_FIXTURES_DIR "tests/fixtures/keepa"
#endif

static char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = n > 0 ? malloc((size_t)n) : NULL;
    if (b != NULL && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return b;
}

static size_t products_seen;

static int count_product(const struct kp_product *p, void *ud)
{
    (void)ud;
    products_seen += p->n_offers > 0 || p->asin[0] != '\0';
    return 0;
}

/*
 * Decodes BODY in 16 KiB chunks (as curl delivers) with CBS until at least MIN_NS elapsed;
 * returns the nanoseconds taken, *ITERS the decodes. WHAT names the body in an error.
 */
static int64_t time_decodes(const char *body, size_t len, const struct kp_decode_cbs *cbs,
                            int64_t min_ns, const char *what, size_t *iters)
{
    struct kp_decoder *d = kp_decoder_new(NULL, cbs);
    size_t n = 0;
    int64_t t0 = kd_mono_ns(), el;
    do {
        kp_decoder_reset(d);
        for (size_t off = 0; off < len; off += 16384)
            kp_decoder_feed(d, body + off, len - off < 16384 ? len - off : 16384);
        if (kp_decoder_finish(d) != 0) {
            fprintf(stderr, "bench_decode: %s failed: %s\n", what, kp_decoder_error(d));
            exit(1);
        }
        n++;
        el = kd_mono_ns() - t0;
    } while (el < min_ns);
    kp_decoder_free(d);
    *iters = n;
    return el;
}

/* MB/s decoding the product answer BODY (see time_decodes). */
static double bench_kp(const char *body, size_t len, int64_t min_ns, size_t *iters_out)
{
    struct kp_decode_cbs cbs = {.on_product = count_product};
    int64_t el = time_decodes(body, len, &cbs, min_ns, "decode", iters_out);
    return (double)len * (double)*iters_out / ((double)el / 1e9) / 1e6;
}

static double bench_jansson(const char *body, size_t len, int64_t min_ns)
{
    size_t iters = 0;
    int64_t t0 = kd_mono_ns(), el;
    do {
        json_error_t je;
        json_t *root = json_loadb(body, len, 0, &je);
        if (root == NULL) {
            fprintf(stderr, "bench_decode: jansson failed: %s\n", je.text);
            exit(1);
        }
        json_decref(root);
        iters++;
        el = kd_mono_ns() - t0;
    } while (el < min_ns);
    return (double)len * (double)iters / ((double)el / 1e9) / 1e6;
}

struct buf {
    char *p;
    size_t len, cap;
};

static void put(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#include <stdarg.h>
static void put(struct buf *b, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n >= 0 && (size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        b->cap = b->cap * 2 + (size_t)n + 1024;
        b->p = realloc(b->p, b->cap);
        if (b->p == NULL)
            exit(1);
    }
}

/* One product in the simulator's shape: csv histories, 36-entry stats, 20 offers. */
static void synth_product(struct buf *b, unsigned i, unsigned history_points)
{
    put(b, "{\"csv\":[");
    for (int t = 0; t < 36; t++) {
        if (t > 3 && t != 11 && t != 18) {
            put(b, "%snull", t ? "," : "");
            continue;
        }
        put(b, "%s[", t ? "," : "");
        unsigned step = t == 18 ? 3 : 2;
        for (unsigned k = 0; k < history_points * step; k += step) {
            put(b, "%s%u,%u", k ? "," : "", 7000000 + k * 37, 1000 + (k * 7919 + i) % 5000);
            if (step == 3)
                put(b, ",0");
        }
        put(b, "]");
    }
    put(b,
        "],\"asin\":\"B%09u\",\"domainId\":1,\"productType\":0,\"title\":\"Synthetic product "
        "%u with a title of typical length for a book or a household item\","
        "\"rootCategory\":283155,\"categories\":[1000,%u],\"lastUpdate\":8000000,"
        "\"lastPriceChange\":7999000,\"brand\":null,\"stats\":{",
        i, i, 2000 + i);
    static const char *const arrays[] = {"current", "avg",    "avg30",          "avg90",
                                         "avg180",  "avg365", "atIntervalStart"};
    for (size_t a = 0; a < sizeof(arrays) / sizeof(arrays[0]); a++) {
        put(b, "%s\"%s\":[", a ? "," : "", arrays[a]);
        for (int t = 0; t < 36; t++)
            put(b, "%s%d", t ? "," : "", t < 4 ? 1500 + t * 10 + (int)i : -1);
        put(b, "]");
    }
    put(b,
        ",\"salesRankDrops30\":%u,\"salesRankDrops90\":35,\"salesRankDrops180\":84,"
        "\"salesRankDrops365\":99,\"buyBoxPrice\":1499,\"buyBoxShipping\":0,"
        "\"buyBoxIsFBA\":true,\"buyBoxIsAmazon\":false,\"offerCountFBA\":4,\"offerCountFBM\":16,"
        "\"totalOfferCount\":20,\"retrievedOfferCount\":20},\"offers\":[",
        i % 50);
    for (int o = 0; o < 20; o++)
        put(b,
            "%s{\"lastSeen\":8000000,\"sellerId\":\"A%012d\",\"offerCSV\":[7990000,%d,0,8000000,"
            "%d,399],\"condition\":%d,\"conditionComment\":null,\"isPrime\":%s,\"isMAP\":false,"
            "\"isShippable\":true,\"isAddonItem\":false,\"isPreorder\":false,"
            "\"isWarehouseDeal\":false,\"isScam\":false,\"isAmazon\":false,\"isPrimeExcl\":false,"
            "\"offerId\":%d,\"isFBA\":%s,\"shipsFromChina\":false,\"minOrderQty\":0}",
            o ? "," : "", o, 1800 + o, 1700 + o, 1 + o % 5, o % 2 ? "true" : "false", o,
            o % 4 ? "false" : "true");
    put(b, "],\"liveOffersOrder\":[");
    for (int o = 0; o < 20; o++)
        put(b, "%s%d", o ? "," : "", 19 - o);
    put(b, "],\"fbaFees\":{\"lastUpdate\":8000000,\"pickAndPackFee\":409},"
           "\"referralFeePercentage\":15.01,\"referralFeePercent\":15,\"offersSuccessful\":true}");
}

static const char envelope[] = "{\"timestamp\":1778386768884,\"tokensLeft\":94,\"refillIn\":53441,"
                               "\"refillRate\":60,\"tokenFlowReduction\":0.0,\"tokensConsumed\":"
                               "300,\"processingTimeInMs\":4000,\"products\":[";

static char *synth_body(unsigned n_products, unsigned history_points, size_t *len)
{
    struct buf b = {malloc(1 << 20), 0, 1 << 20};
    put(&b, "%s", envelope);
    for (unsigned i = 0; i < n_products; i++) {
        if (i)
            put(&b, ",");
        synth_product(&b, i, history_points);
    }
    put(&b, "]}");
    *len = b.len;
    return b.p;
}

/* Child: streams about 50 MB of products through the decoder; prints peak RSS in MB. */
static void peak_rss_child(int fd)
{
    struct kp_decode_cbs cbs = {.on_product = count_product};
    struct kp_decoder *d = kp_decoder_new(NULL, &cbs);
    kp_decoder_feed(d, envelope, strlen(envelope));
    size_t fed = 0;
    struct buf b = {malloc(1 << 16), 0, 1 << 16};
    for (unsigned i = 0; fed < 50u * 1000 * 1000; i++) {
        b.len = 0;
        if (i)
            put(&b, ",");
        synth_product(&b, i, 400);
        kp_decoder_feed(d, b.p, b.len);
        fed += b.len;
    }
    kp_decoder_feed(d, "]}", 2);
    int rc = kp_decoder_finish(d);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    char line[128];
    int n = snprintf(line, sizeof(line), "%d %zu %ld %zu\n", rc, fed, ru.ru_maxrss,
                     kp_decoder_peak_bytes(d));
    if (write(fd, line, (size_t)n) != n)
        _exit(1);
    _exit(0);
}

/* Runs the 50 MB child first, while this process is still small (its RSS is inherited). */
static void bench_peak_rss(void)
{
    int fds[2];
    if (pipe(fds) == 0) {
        fflush(stdout);
        pid_t pid = fork();
        if (pid == 0) {
            close(fds[0]);
            peak_rss_child(fds[1]);
        }
        close(fds[1]);
        char line[128] = "";
        ssize_t n = read(fds[0], line, sizeof(line) - 1);
        close(fds[0]);
        waitpid(pid, NULL, 0);
        int rc;
        size_t fed, peak;
        long maxrss_kb;
        if (n > 0 && sscanf(line, "%d %zu %ld %zu", &rc, &fed, &maxrss_kb, &peak) == 4) {
            printf("BENCH decode.peak_rss_50mb %.1f MB\n", (double)maxrss_kb / 1024.0);
            printf("# 50 MB run: %zu bytes streamed, rc %d, decoder heap high-water %zu KB\n", fed,
                   rc, peak / 1024);
        }
    }
}

/* An int array of N entries drawn from X (an xorshift state), in the feed's compact form. */
static void synth_ints(struct buf *b, uint64_t *x, int n, int64_t span)
{
    put(b, "[");
    for (int i = 0; i < n; i++) {
        *x ^= *x << 13, *x ^= *x >> 7, *x ^= *x << 17;
        int64_t v = (int64_t)(*x % (uint64_t)(2 * span + 1)) - span;
        put(b, "%s%lld", i ? "," : "", (long long)(i % 3 == 2 ? 0 : v));
    }
    put(b, "]");
}

/* A /deal page in the simulator's shape (sim/render.c sim_render_deal): 150 deals. */
static char *synth_deal_page(size_t *len)
{
    struct buf b = {malloc(1 << 20), 0, 1 << 20};
    uint64_t x = 88172645463325252ull;
    put(&b, "{\"timestamp\":1796615194430,\"tokensLeft\":99995,\"refillIn\":67,\"refillRate\":100,"
            "\"tokenFlowReduction\":0.0,\"tokensConsumed\":5,\"processingTimeInMs\":30,"
            "\"deals\":{\"dr\":[");
    for (int d = 0; d < 150; d++) {
        put(&b, "%s{\"flags\":null,", d ? "," : "");
        const char *arr2[] = {"delta", "deltaPercent"};
        for (int k = 0; k < 2; k++) {
            put(&b, "\"%s\":[", arr2[k]);
            for (int r = 0; r < 4; r++) {
                put(&b, "%s", r ? "," : "");
                synth_ints(&b, &x, 34, k ? 60 : 2000);
            }
            put(&b, "],");
        }
        put(&b, "\"deltaLast\":");
        synth_ints(&b, &x, 34, 1000);
        put(&b, ",\"avg\":[");
        for (int r = 0; r < 4; r++) {
            put(&b, "%s", r ? "," : "");
            synth_ints(&b, &x, 34, 6000000);
        }
        put(&b, "],\"current\":");
        synth_ints(&b, &x, 34, 6000000);
        put(&b,
            ",\"rootCat\":283155,\"creationDate\":8164100,\"image\":[52,49,83,48,48,48,48,"
            "48,48,49,76,46,106,112,103],\"title\":\"Synthetic product %d of the feed\","
            "\"categories\":[2831551,283155101],\"asin\":\"B0%08d\",\"lastUpdate\":8164120,"
            "\"lightningEnd\":0,\"salesRankDrops30\":4,\"salesRankDrops90\":11,"
            "\"salesRankDrops180\":20,\"salesRankDrops365\":41,\"backInStock\":[",
            d, d);
        for (int i = 0; i < 34; i++)
            put(&b, "%sfalse", i ? "," : "");
        put(&b, "],\"dateIntervalIndex\":0,\"lightningStart\":0,\"warehouseCondition\":0,"
                "\"warehouseConditionComment\":null,\"currentSince\":");
        synth_ints(&b, &x, 34, 8164000);
        put(&b, "}");
    }
    put(&b, "],\"drDateIndex\":[],\"categoryIds\":[283155],\"categoryNames\":[\"Books\"],"
            "\"categoryCount\":[150]},\"dealsCached\":false}");
    *len = b.len;
    return b.p;
}

static size_t deals_seen;

static int count_deal(const struct kp_deal *d, void *ud)
{
    (void)ud;
    deals_seen += d->asin[0] != '\0';
    return 0;
}

/* Milliseconds per decode of a /deal page BODY, fed in 16 KiB chunks. */
static double bench_deal_ms(const char *body, size_t len, int64_t min_ns)
{
    struct kp_decode_cbs cbs = {.on_deal = count_deal};
    size_t iters = 0;
    int64_t el = time_decodes(body, len, &cbs, min_ns, "deal page", &iters);
    return (double)el / 1e6 / (double)iters;
}

/* Milliseconds to gzip BODY at LEVEL (*ZLEN: its size) and to inflate it again. */
static void bench_gzip(const char *body, size_t len, int level, double *gzip_ms, double *gunzip_ms,
                       size_t *zlen)
{
    uLong cap = compressBound((uLong)len) + 64;
    unsigned char *z = malloc(cap), *out = malloc(len + 1);
    if (z == NULL || out == NULL)
        exit(1);
    const int reps = 40;
    int64_t t0 = kd_mono_ns();
    for (int i = 0; i < reps; i++) {
        z_stream zs;
        memset(&zs, 0, sizeof(zs));
        deflateInit2(&zs, level, Z_DEFLATED, 31, 8, Z_DEFAULT_STRATEGY);
        zs.next_in = (Bytef *)(uintptr_t)body;
        zs.avail_in = (uInt)len;
        zs.next_out = z;
        zs.avail_out = (uInt)cap;
        deflate(&zs, Z_FINISH);
        *zlen = zs.total_out;
        deflateEnd(&zs);
    }
    int64_t t1 = kd_mono_ns();
    for (int i = 0; i < reps; i++) {
        z_stream zs;
        memset(&zs, 0, sizeof(zs));
        inflateInit2(&zs, 31);
        zs.next_in = z;
        zs.avail_in = (uInt)*zlen;
        zs.next_out = out;
        zs.avail_out = (uInt)len + 1;
        inflate(&zs, Z_FINISH);
        inflateEnd(&zs);
    }
    int64_t t2 = kd_mono_ns();
    *gzip_ms = (double)(t1 - t0) / 1e6 / reps;
    *gunzip_ms = (double)(t2 - t1) / 1e6 / reps;
    free(z);
    free(out);
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : KD_FIXTURES_DIR;
    const int64_t min_ns = 700 * KD_NS_PER_MS;
    bench_peak_rss();

    char path[4096];
    snprintf(path, sizeof(path), "%s/product_B0D8W1YVBX.json", dir);
    size_t flen = 0, iters;
    char *fixture = read_all(path, &flen);
    double kp_fix = 0, js_fix = 0;
    if (fixture != NULL) {
        kp_fix = bench_kp(fixture, flen, min_ns, &iters);
        js_fix = bench_jansson(fixture, flen, min_ns);
        printf("BENCH decode.mb_per_s.fixture_B0D8W1YVBX %.1f MB/s\n", kp_fix);
        printf("BENCH decode.jansson_mb_per_s.fixture_B0D8W1YVBX %.1f MB/s\n", js_fix);
        printf("BENCH decode.ratio_vs_jansson.fixture_B0D8W1YVBX %.1f x\n", kp_fix / js_fix);
    } else {
        printf("# bench_decode: %s absent, fixture figures skipped\n", path);
    }

    size_t slen;
    char *synth = synth_body(50, 400, &slen);
    products_seen = 0;
    double kp_syn = bench_kp(synth, slen, min_ns, &iters);
    double us_per_product = 1e6 * (double)slen / (kp_syn * 1e6) / 50.0;
    double js_syn = bench_jansson(synth, slen, min_ns);
    printf("BENCH decode.mb_per_s.synthetic50 %.1f MB/s\n", kp_syn);
    printf("BENCH decode.jansson_mb_per_s.synthetic50 %.1f MB/s\n", js_syn);
    printf("BENCH decode.ratio_vs_jansson.synthetic50 %.1f x\n", kp_syn / js_syn);

    /* A /deal page as the 100/min day at 600x reads 185 a second of (bench/README.md). */
    size_t dlen;
    char *page = synth_deal_page(&dlen);
    deals_seen = 0;
    double deal_ms = bench_deal_ms(page, dlen, min_ns);
    printf("BENCH decode.deal_page_ms %.3f ms\n", deal_ms);
    for (int level = 0; level <= 1; level++) {
        double gz_ms, gunz_ms;
        size_t zlen;
        bench_gzip(page, dlen, level, &gz_ms, &gunz_ms, &zlen);
        printf("BENCH decode.deal_page_gzip%d_ms %.3f ms (%zu bytes)\n", level, gz_ms, zlen);
        printf("BENCH decode.deal_page_gunzip%d_ms %.3f ms\n", level, gunz_ms);
    }
    printf("# deal page: %zu bytes, 150 deals\n", dlen);
    free(page);

    /* Headline figures: the real body when present, else the synthetic one. */
    double mbs = fixture != NULL ? kp_fix : kp_syn;
    double ratio = fixture != NULL ? kp_fix / js_fix : kp_syn / js_syn;
    printf("BENCH decode.mb_per_s %.1f MB/s\n", mbs);
    printf("BENCH decode.ratio_vs_jansson %.1f x\n", ratio);
    printf("BENCH decode.us_per_product %.1f us\n", us_per_product);
    printf("# synthetic body: %zu bytes, 50 products (%.1f KB each)\n", slen,
           (double)slen / 50 / 1024);

    free(fixture);
    free(synth);
    return 0;
}
