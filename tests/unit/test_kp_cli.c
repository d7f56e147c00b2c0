/*
 * test_kp_cli.c: `kdeals decode` / `kdeals fetch` (cli/keepa.c), driven through the
 * kdeals binary as an operator would: exit codes (0 ok, 1 bad input, 2 usage), the JSON
 * printed for real fixture bodies (plain, gzip, stdin), one error line and no stdout on
 * malformed input, and usage errors caught before any request.
 */
#include "kd_test.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <zlib.h>

#ifdef KP_HAVE_JANSSON
#include <jansson.h>
#endif

#define KP_BIN KD_BUILD_DIR "/kdeals"

struct out {
    int status;
    char *out;
    char *err;
};

/* Runs kdeals with ARGS (NULL-terminated), stdin from IN_PATH (or /dev/null). */
static struct out run(const char *in_path, const char *const *args)
{
    char o[4200], e[4200];
    snprintf(o, sizeof(o), "%s/stdout", kd_test_tmpdir());
    snprintf(e, sizeof(e), "%s/stderr", kd_test_tmpdir());
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fi = open(in_path ? in_path : "/dev/null", O_RDONLY);
        int fo = open(o, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int fe = open(e, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        dup2(fi, 0);
        dup2(fo, 1);
        dup2(fe, 2);
        unsetenv("KEEPA_API_KEY");
        execv(KP_BIN, (char *const *)args);
        _exit(127);
    }
    int st;
    waitpid(pid, &st, 0);
    struct out r;
    r.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    r.out = kd_read_file(o, NULL);
    r.err = kd_read_file(e, NULL);
    assert_non_null(r.out);
    assert_non_null(r.err);
    return r;
}

static void out_free(struct out *r)
{
    free(r->out);
    free(r->err);
}

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

static void test_decode_product_fixture(void **state)
{
    (void)state;
    const char *path = kd_fixture_path("product_B0F7XPYCSJ.json");
    const char *args[] = {"kdeals", "decode", "product", path, NULL};
    struct out r = run(NULL, args);
    assert_int_equal(r.status, 0);
    assert_string_equal(r.err, "");
#ifdef KP_HAVE_JANSSON
    json_error_t je;
    json_t *root = json_loads(r.out, 0, &je);
    assert_non_null(root);
    json_t *p = json_array_get(json_object_get(root, "products"), 0);
    assert_string_equal(json_string_value(json_object_get(p, "asin")), "B0F7XPYCSJ");
    json_t *st = json_object_get(p, "stats");
    assert_int_equal(json_integer_value(json_object_get(st, "salesRankDrops30")), 13);
    assert_int_equal(json_integer_value(json_object_get(st, "salesRankDrops365")), 99);
    assert_int_equal(json_integer_value(json_object_get(p, "pickAndPackFee")), 435);
    assert_true(json_real_value(json_object_get(p, "referralFeePercentage")) == 12.0);
    json_t *env = json_object_get(root, "envelope");
    assert_true(json_number_value(json_object_get(env, "tokensConsumed")) == 1.0);
    assert_true(json_number_value(json_object_get(env, "refillRate")) == 60.0);
    json_decref(root);
#else
    assert_non_null(strstr(r.out, "\"salesRankDrops30\": 13"));
#endif
    out_free(&r);
}

/* The dear lists' answers (docs/keepa-api.md §2.6), as the simulator serves them. */
static void test_decode_lightning_and_bestsellers(void **state)
{
    (void)state;
    const char *ld = KD_SOURCE_DIR "/tests/fuzz/corpus/kp_decode/sim_lightning_list.json";
    const char *args[] = {"kdeals", "decode", "lightning", ld, NULL};
    struct out r = run(NULL, args);
    assert_int_equal(r.status, 0);
    assert_string_equal(r.err, "");
    assert_non_null(strstr(r.out, "\"lightningDeals\": ["));
    assert_non_null(strstr(r.out, "\"dealState\": \"AVAILABLE\""));
    assert_non_null(strstr(r.out, "\"dealState\": \"UPCOMING\""));
    assert_non_null(strstr(r.out, "\"lightningDeals\": 3"));
    out_free(&r);
    const char *bs = KD_SOURCE_DIR "/tests/fuzz/corpus/kp_decode/sim_bestsellers_sub.json";
    const char *args2[] = {"kdeals", "decode", "bestsellers", bs, NULL};
    r = run(NULL, args2);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "\"asinList\": ["));
    assert_non_null(strstr(r.out, "\"bestSellersCategory\": 2831551"));
    out_free(&r);
}

static void test_decode_deals_gzip_and_stdin(void **state)
{
    (void)state;
    const char *path = kd_fixture_path("deal_page.json");
    size_t len;
    char *body = kd_read_file(path, &len);
    assert_non_null(body);
    char gz[4200];
    snprintf(gz, sizeof(gz), "%s/deal_page.json.gz", kd_test_tmpdir());
    gzFile g = gzopen(gz, "wb");
    assert_non_null(g);
    assert_int_equal(gzwrite(g, body, (unsigned)len), (int)len);
    gzclose(g);
    free(body);

    const char *args[] = {"kdeals", "decode", "deals", gz, NULL};
    struct out r = run(NULL, args);
    assert_int_equal(r.status, 0);
    const char *args2[] = {"kdeals", "decode", "deals", "-", NULL};
    struct out r2 = run(path, args2);
    assert_int_equal(r2.status, 0);
    assert_string_equal(r.out, r2.out); /* gzip and plain stdin give the same output */
#ifdef KP_HAVE_JANSSON
    json_error_t je;
    json_t *root = json_loads(r.out, 0, &je);
    assert_non_null(root);
    json_t *deals = json_object_get(root, "deals");
    assert_int_equal(json_array_size(deals), 150);
    json_t *env = json_object_get(root, "envelope");
    assert_true(json_number_value(json_object_get(env, "tokensLeft")) == 295.0);
    assert_int_equal(json_integer_value(json_object_get(env, "refillIn")), 27893);
    /* first and last deal as in the file, read independently */
    json_t *src = json_load_file(path, 0, &je);
    json_t *dr = json_object_get(json_object_get(src, "deals"), "dr");
    assert_string_equal(json_string_value(json_object_get(json_array_get(deals, 0), "asin")),
                        json_string_value(json_object_get(json_array_get(dr, 0), "asin")));
    assert_string_equal(json_string_value(json_object_get(json_array_get(deals, 149), "asin")),
                        json_string_value(json_object_get(json_array_get(dr, 149), "asin")));
    json_decref(src);
    json_decref(root);
#endif
    out_free(&r);
    out_free(&r2);
}

static void test_decode_malformed_one_line(void **state)
{
    (void)state;
    char bad[4200];
    snprintf(bad, sizeof(bad), "%s/bad.json", kd_test_tmpdir());
    static const char *const bodies[] = {
        "{\"products\":[{\"asin\":\"B0TRUNC",  /* truncated */
        "\x1f\x8b\x08\x00garbage-after-magic", /* bad gzip */
        "not json at all",
        "",
        "{\"x\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}",
    };
    for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
        FILE *f = fopen(bad, "wb");
        fputs(bodies[i], f);
        fclose(f);
        const char *args[] = {"kdeals", "decode", "product", bad, NULL};
        struct out r = run(NULL, args);
        if (r.status != 1)
            fail_msg("body %zu: exit %d, stderr %s", i, r.status, r.err);
        assert_string_equal(r.out, "");
        assert_int_equal(count_lines(r.err), 1);
        assert_non_null(strstr(r.err, "kdeals decode: "));
        out_free(&r);
    }
}

static void test_usage_errors(void **state)
{
    (void)state;
    const char *a1[] = {"kdeals", "decode", "frobnicate", "x", NULL};
    struct out r = run(NULL, a1);
    assert_int_equal(r.status, 2);
    out_free(&r);
    const char *a2[] = {"kdeals", "decode", "--help", NULL};
    r = run(NULL, a2);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "usage: kdeals decode"));
    out_free(&r);
    const char *a3[] = {"kdeals", "fetch", "product", "B000000001", "--offers", "10", NULL};
    r = run(NULL, a3);
    assert_int_equal(r.status, 2); /* offers outside 20..100 never reach the wire */
    assert_non_null(strstr(r.err, "--offers"));
    out_free(&r);
    const char *a4[] = {"kdeals", "fetch", "token", "--base-url", "http://127.0.0.1:1", NULL};
    r = run(NULL, a4);
    assert_int_equal(r.status, 2); /* no key anywhere */
    assert_non_null(strstr(r.err, "KEEPA_API_KEY"));
    out_free(&r);
    const char *a5[] = {"kdeals", "fetch", "deals", NULL};
    r = run(NULL, a5);
    assert_int_equal(r.status, 2);
    out_free(&r);
    const char *a6[] = {"kdeals", "fetch", "product", "B0&key=1", NULL};
    r = run(NULL, a6);
    assert_int_equal(r.status, 2);
    out_free(&r);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decode_product_fixture),
        cmocka_unit_test(test_decode_lightning_and_bestsellers),
        cmocka_unit_test(test_decode_deals_gzip_and_stdin),
        cmocka_unit_test(test_decode_malformed_one_line),
        cmocka_unit_test(test_usage_errors),
    };
    return KD_RUN_TESTS(tests, argc, argv);
}
