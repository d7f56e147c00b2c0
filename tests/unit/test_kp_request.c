/*
 * test_kp_request.c: Keepa request builders (keepa/request.h).
 *
 * What a user relies on: a request is exactly the documented query (no offers=0, never an
 * out-of-range offers value, at most 100 ASINs, nothing that could inject parameters), and the
 * key appears only in the URL handed to curl. (The key loader is base/key.h: test_key.c.)
 */
#include "kd_test.h"

#include "keepa/request.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *const one[] = {"B0F7XPYCSJ"};

static void test_product_query_exact(void **state)
{
    (void)state;
    static const char *const asins[] = {"B0F7XPYCSJ", "B0D8W1YVBX"};
    struct kp_product_params p = {.domain = 1, .asins = asins, .n_asins = 2};
    struct kp_call c;
    assert_int_equal(kp_call_product(&c, &p), 0);
    assert_string_equal(c.query, "domain=1&asin=B0F7XPYCSJ,B0D8W1YVBX");
    assert_false(c.with_offers);
    assert_int_equal(c.n_asins, 2);
    assert_string_equal(c.asins[1], "B0D8W1YVBX");
    assert_null(c.body);

    p.stats_days = 180;
    p.history = KP_NO;
    p.days = 90;
    p.offers = 20;
    p.only_live_offers = KP_YES;
    p.rating = KP_YES;
    p.buybox = KP_NO;
    p.stock = KP_YES;
    p.has_update = true;
    p.update_hours = 0;
    assert_int_equal(kp_call_product(&c, &p), 0);
    assert_string_equal(c.query, "domain=1&asin=B0F7XPYCSJ,B0D8W1YVBX&stats=180&history=0&days=90"
                                 "&offers=20&only-live-offers=1&rating=1&buybox=0&stock=1"
                                 "&update=0");
    assert_true(c.with_offers);

    struct kp_product_params r = {.domain = 3,
                                  .asins = one,
                                  .n_asins = 1,
                                  .stats_start_ms = 1700000000000LL,
                                  .stats_end_ms = 1700086400000LL};
    assert_int_equal(kp_call_product(&c, &r), 0);
    assert_string_equal(c.query, "domain=3&asin=B0F7XPYCSJ&stats=1700000000000,1700086400000");
}

/* Keepa's code lookup: code=, with code-limit; ASINs and codes never together. */
static void test_product_by_code(void **state)
{
    (void)state;
    static const char *const codes[] = {"0747474801770", "747474801770"};
    static const char *const asins[] = {"B0F7XPYCSJ"};
    struct kp_product_params p = {
        .domain = 1, .codes = codes, .n_codes = 2, .code_limit = 5, .stats_days = 365};
    struct kp_call c;
    assert_int_equal(kp_call_product(&c, &p), 0);
    assert_string_equal(c.query, "domain=1&code=0747474801770,747474801770&code-limit=5&stats=365");
    assert_int_equal(c.n_asins, 0);
    struct kp_product_params both = p;
    both.asins = asins;
    both.n_asins = 1;
    assert_int_equal(kp_call_product(&c, &both), -EINVAL);
    static const char *const bad[] = {"12345", "0747474801770&x=1", "ABCDEFGHIJKL",
                                      "123456789012345"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct kp_product_params q = {.domain = 1, .codes = &bad[i], .n_codes = 1};
        assert_int_equal(kp_call_product(&c, &q), -EINVAL);
    }
    struct kp_product_params limit_asins = {
        .domain = 1, .asins = asins, .n_asins = 1, .code_limit = 3};
    assert_int_equal(kp_call_product(&c, &limit_asins), -EINVAL);
}

static void test_product_rejects(void **state)
{
    (void)state;
    struct kp_call c;
    struct kp_product_params p = {.domain = 1, .asins = one, .n_asins = 1};
    /* offers: only 20..100; 0 means "omit" and is never sent. */
    static const int bad_offers[] = {1, 10, 19, 101, -1, 1000};
    for (size_t i = 0; i < sizeof(bad_offers) / sizeof(bad_offers[0]); i++) {
        p.offers = bad_offers[i];
        assert_int_equal(kp_call_product(&c, &p), -EINVAL);
    }
    p.offers = 100;
    assert_int_equal(kp_call_product(&c, &p), 0);
    p.offers = 0;
    assert_int_equal(kp_call_product(&c, &p), 0);
    assert_null(strstr(c.query, "offers"));

    /* 101 ASINs. */
    const char *many[101];
    char ids[101][16];
    for (int i = 0; i < 101; i++) {
        snprintf(ids[i], sizeof(ids[i]), "B%09d", i);
        many[i] = ids[i];
    }
    p.asins = many;
    p.n_asins = 101;
    assert_int_equal(kp_call_product(&c, &p), -EINVAL);
    p.n_asins = 100;
    assert_int_equal(kp_call_product(&c, &p), 0);
    assert_int_equal(c.n_asins, 100);

    /* Parameter injection and junk. */
    static const char *const evil[] = {"B0&key=x", "B0 1", "", "B0,B1", "ÄÖ"};
    for (size_t i = 0; i < sizeof(evil) / sizeof(evil[0]); i++) {
        p.asins = &evil[i];
        p.n_asins = 1;
        assert_int_equal(kp_call_product(&c, &p), -EINVAL);
    }
    p.asins = one;
    p.domain = 0;
    assert_int_equal(kp_call_product(&c, &p), -EINVAL);
    p.domain = 13;
    assert_int_equal(kp_call_product(&c, &p), -EINVAL);
    p.domain = 1;
    p.stats_days = -5;
    assert_int_equal(kp_call_product(&c, &p), -EINVAL);
    p.stats_days = 0;
    p.stats_start_ms = 10;
    assert_int_equal(kp_call_product(&c, &p), -EINVAL); /* start without end */
    p.stats_start_ms = 0;
    p.history = (enum kp_flag)7;
    assert_int_equal(kp_call_product(&c, &p), -EINVAL);
    p.history = KP_DEFAULT;
    p.has_update = true;
    p.update_hours = -2;
    assert_int_equal(kp_call_product(&c, &p), -EINVAL);
    p.update_hours = -1;
    assert_int_equal(kp_call_product(&c, &p), 0);
    assert_non_null(strstr(c.query, "&update=-1"));
}

static void test_other_endpoints_and_url(void **state)
{
    (void)state;
    struct kp_call c;
    char url[4096];
    assert_int_equal(kp_call_token(&c), 0);
    assert_int_equal(kp_call_url(&c, "http://127.0.0.1:8080/", "SECRETKEY123", url, sizeof(url)),
                     0);
    assert_string_equal(url, "http://127.0.0.1:8080/token?key=SECRETKEY123");
    assert_int_equal(kp_call_url(&c, "http://h", NULL, url, sizeof(url)), 0);
    assert_string_equal(url, "http://h/token?key=<redacted>");

    const char *sel = "{\"page\":0,\"domainId\":1,\"priceTypes\":[2]}";
    assert_int_equal(kp_call_deal(&c, sel), 0);
    assert_string_equal(c.body, sel);
    assert_int_equal(c.body_len, strlen(sel));
    assert_int_equal(kp_call_url(&c, "https://api.keepa.com", "K123", url, sizeof(url)), 0);
    assert_string_equal(url, "https://api.keepa.com/deal?key=K123");
    kp_call_free(&c);
    assert_null(c.body);
    assert_int_equal(kp_call_deal(&c, ""), -EINVAL);
    assert_int_equal(kp_call_deal(&c, NULL), -EINVAL);

    static const char *const sellers[] = {"A2L77EE7U53NWQ", "AFZNN5H6MIT2Z"};
    assert_int_equal(kp_call_seller(&c, 1, sellers, 2), 0);
    assert_string_equal(c.query, "domain=1&seller=A2L77EE7U53NWQ,AFZNN5H6MIT2Z");
    static const char *const bad[] = {"A2&x"};
    assert_int_equal(kp_call_seller(&c, 1, bad, 1), -EINVAL);

    assert_int_equal(kp_call_query(&c, 1, "{\"perPage\":50}", true), 0);
    assert_string_equal(c.query, "domain=1&stats=1");
    assert_int_equal(kp_call_url(&c, "http://h", "K123", url, sizeof(url)), 0);
    assert_string_equal(url, "http://h/query?key=K123&domain=1&stats=1");
    kp_call_free(&c);

    char tiny[10];
    assert_int_equal(kp_call_url(&c, "http://h", "K123", tiny, sizeof(tiny)), -ENAMETOOLONG);
    assert_string_equal(tiny, "");
    assert_string_equal(kp_endpoint_name(KP_EP_PRODUCT), "product");
}

/* /lightningdeal and /bestsellers (docs/keepa-api.md §2.6): the whole list is one attempt. */
static void test_lightning_and_bestsellers(void **state)
{
    (void)state;
    struct kp_call c;
    char url[4096];
    assert_int_equal(kp_call_lightning(&c, 1, NULL, 0), 0);
    assert_int_equal(c.ep, KP_EP_LIGHTNING);
    assert_string_equal(c.query, "domain=1");
    assert_int_equal(c.max_tries, 1); /* 500 tokens are not paid twice without a new grant */
    assert_null(c.body);
    assert_int_equal(kp_call_url(&c, "http://h", "K123", url, sizeof(url)), 0);
    assert_string_equal(url, "http://h/lightningdeal?key=K123&domain=1");
    static const char *const asins[] = {"B0F7XPYCSJ", "B0D8W1YVBX"};
    assert_int_equal(kp_call_lightning(&c, 3, asins, 2), 0);
    assert_string_equal(c.query, "domain=3&asin=B0F7XPYCSJ,B0D8W1YVBX");
    assert_int_equal(c.max_tries, 0); /* 1 token per ASIN: the client's own retries */
    static const char *const bad[] = {"B0F7&x=1"};
    assert_int_equal(kp_call_lightning(&c, 1, bad, 1), -EINVAL);
    assert_int_equal(kp_call_lightning(&c, 7 + 6, NULL, 0), -EINVAL);
    assert_int_equal(kp_call_lightning(&c, 1, NULL, 1), -EINVAL);
    assert_int_equal(kp_call_lightning(&c, 1, asins, KP_MAX_BATCH + 1), -EINVAL);
    assert_string_equal(kp_endpoint_name(KP_EP_LIGHTNING), "lightningdeal");

    assert_int_equal(kp_call_bestsellers(&c, 1, 283155, 0), 0);
    assert_int_equal(c.ep, KP_EP_BESTSELLERS);
    assert_string_equal(c.query, "domain=1&category=283155&range=0");
    assert_int_equal(c.max_tries, 1);
    assert_int_equal(kp_call_url(&c, "http://h/", "K123", url, sizeof(url)), 0);
    assert_string_equal(url, "http://h/bestsellers?key=K123&domain=1&category=283155&range=0");
    static const int ranges[] = {0, 30, 90, 180};
    for (size_t i = 0; i < sizeof(ranges) / sizeof(ranges[0]); i++)
        assert_int_equal(kp_call_bestsellers(&c, 2, 2625373011, ranges[i]), 0);
    assert_string_equal(c.query, "domain=2&category=2625373011&range=180");
    static const int bad_ranges[] = {-1, 1, 7, 60, 365};
    for (size_t i = 0; i < sizeof(bad_ranges) / sizeof(bad_ranges[0]); i++)
        assert_int_equal(kp_call_bestsellers(&c, 1, 283155, bad_ranges[i]), -EINVAL);
    assert_int_equal(kp_call_bestsellers(&c, 1, 0, 0), -EINVAL);
    assert_int_equal(kp_call_bestsellers(&c, 1, -5, 0), -EINVAL);
    assert_int_equal(kp_call_bestsellers(&c, 0, 283155, 0), -EINVAL);
    assert_string_equal(kp_endpoint_name(KP_EP_BESTSELLERS), "bestsellers");
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_product_query_exact),
        cmocka_unit_test(test_product_rejects),
        cmocka_unit_test(test_product_by_code),
        cmocka_unit_test(test_other_endpoints_and_url),
        cmocka_unit_test(test_lightning_and_bestsellers),
    };
    return KD_RUN_TESTS(tests, argc, argv);
}
