/*
 * market.c: marketplaces, money, links and category names. See market.h.
 */
#include "judge/market.h"

#include <ctype.h>
#include <stdbool.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

static const struct jd_market markets[] = {
    {1, "com", "www.amazon.com", "USD", "$", 2},
    {2, "co.uk", "www.amazon.co.uk", "GBP", "\xc2\xa3", 2},
    {3, "de", "www.amazon.de", "EUR", "\xe2\x82\xac", 2},
    {4, "fr", "www.amazon.fr", "EUR", "\xe2\x82\xac", 2},
    {5, "co.jp", "www.amazon.co.jp", "JPY", "\xc2\xa5", 0},
    {6, "ca", "www.amazon.ca", "CAD", "C$", 2},
    {8, "it", "www.amazon.it", "EUR", "\xe2\x82\xac", 2},
    {9, "es", "www.amazon.es", "EUR", "\xe2\x82\xac", 2},
    {10, "in", "www.amazon.in", "INR", "\xe2\x82\xb9", 2},
    {11, "com.mx", "www.amazon.com.mx", "MXN", "MX$", 2},
    {12, "com.br", "www.amazon.com.br", "BRL", "R$", 2},
};

const struct jd_market *jd_market(unsigned domain)
{
    for (size_t i = 0; i < sizeof(markets) / sizeof(markets[0]); i++)
        if (markets[i].domain == domain)
            return &markets[i];
    return NULL;
}

int jd_money(unsigned domain, int64_t amount, char *buf, size_t len)
{
    const struct jd_market *m = jd_market(domain);
    const char *sign = amount < 0 ? "-" : "";
    /* |INT64_MIN| does not fit: clamp, money never gets near it. */
    uint64_t a = amount < 0 ? (uint64_t)(-(amount + 1)) + 1u : (uint64_t)amount;
    if (m != NULL && m->decimals == 0)
        return snprintf(buf, len, "%s%s%llu", sign, m->symbol, (unsigned long long)a);
    return snprintf(buf, len, "%s%s%llu.%02llu", sign, m != NULL ? m->symbol : "",
                    (unsigned long long)(a / 100), (unsigned long long)(a % 100));
}

int jd_money_parse(unsigned domain, const char *text, int64_t *out)
{
    const struct jd_market *m = jd_market(domain);
    int decimals = m != NULL ? m->decimals : 2;
    const char *s = text;
    while (isspace((unsigned char)*s))
        s++;
    bool neg = false;
    if (*s == '-' || *s == '+') {
        neg = *s == '-';
        s++;
    }
    /* An optional currency symbol: this market's, or a plain '$'. */
    if (m != NULL && strncmp(s, m->symbol, strlen(m->symbol)) == 0)
        s += strlen(m->symbol);
    else if (*s == '$')
        s++;
    if (!isdigit((unsigned char)*s) && !(*s == '.' && isdigit((unsigned char)s[1])))
        return -EINVAL;
    int64_t whole = 0, frac = 0;
    int nfrac = 0;
    for (; isdigit((unsigned char)*s); s++) {
        if (whole > (INT64_MAX / 1000 - 9) / 10)
            return -EINVAL;
        whole = whole * 10 + (*s - '0');
    }
    if (*s == '.') {
        s++;
        for (; isdigit((unsigned char)*s); s++) {
            if (nfrac >= decimals)
                return -EINVAL;
            frac = frac * 10 + (*s - '0');
            nfrac++;
        }
    }
    while (isspace((unsigned char)*s))
        s++;
    if (*s != '\0')
        return -EINVAL;
    for (; nfrac < decimals; nfrac++)
        frac *= 10;
    int64_t scale = decimals == 0 ? 1 : 100;
    int64_t v = whole * scale + frac;
    *out = neg ? -v : v;
    return 0;
}

static const char *host_of(unsigned domain)
{
    const struct jd_market *m = jd_market(domain);
    return m != NULL ? m->host : "www.amazon.com";
}

int jd_link_amazon(unsigned domain, const char *asin, char *buf, size_t len)
{
    return snprintf(buf, len, "https://%s/dp/%s", host_of(domain), asin);
}

int jd_link_offers(unsigned domain, const char *asin, char *buf, size_t len)
{
    return snprintf(buf, len, "https://%s/gp/offer-listing/%s", host_of(domain), asin);
}

int jd_link_keepa(unsigned domain, const char *asin, char *buf, size_t len)
{
    return snprintf(buf, len, "https://keepa.com/#!product/%u-%s", jd_market(domain) ? domain : 1,
                    asin);
}

/* Root categories of amazon.com with Keepa's names, as on a recorded /deal page
 * (tests/fixtures/keepa/deal_page.json: deals.categoryIds / categoryNames). */
static const struct {
    int64_t id;
    const char *name;
} com_roots[] = {
    {165796011, "Baby Products"},
    {165793011, "Toys & Games"},
    {2972638011, "Patio, Lawn & Garden"},
    {283155, "Books"},
    {2617941011, "Arts, Crafts & Sewing"},
    {229534, "Software"},
    {3375251, "Sports & Outdoors"},
    {16333372011, "Amazon Devices & Accessories"},
    {2238192011, "Gift Cards"},
    {468642, "Video Games"},
    {7141123011, "Clothing, Shoes & Jewelry"},
    {1064954, "Office Products"},
    {16310101, "Grocery & Gourmet Food"},
    {228013, "Tools & Home Improvement"},
    {2625373011, "Movies & TV"},
    {11091801, "Musical Instruments"},
    {2619533011, "Pet Supplies"},
    {2619525011, "Appliances"},
    {4991425011, "Collectibles & Fine Art"},
    {2335752011, "Cell Phones & Accessories"},
    {16310091, "Industrial & Scientific"},
    {5174, "CDs & Vinyl"},
    {1055398, "Home & Kitchen"},
    {3760911, "Beauty & Personal Care"},
    {265523, "Stores"},
    {172282, "Electronics"},
    {15684181, "Automotive"},
    {599858, "Magazine Subscriptions"},
    {3760901, "Health & Household"},
};

const char *jd_category_name(unsigned domain, int64_t id)
{
    if (domain != 1)
        return NULL;
    for (size_t i = 0; i < sizeof(com_roots) / sizeof(com_roots[0]); i++)
        if (com_roots[i].id == id)
            return com_roots[i].name;
    return NULL;
}

/* amazon.com's media roots: Books, CDs & Vinyl, Movies & TV, Video Games, Software. */
static const int64_t com_media[] = {283155, 5174, 2625373011, 468642, 229534};

const int64_t *jd_media_categories(unsigned domain, size_t *n)
{
    if (domain == 1) {
        *n = sizeof(com_media) / sizeof(com_media[0]);
        return com_media;
    }
    *n = 0;
    return com_media;
}

static const char *const cond_names[] = {"unknown",
                                         "New",
                                         "Used - Like New",
                                         "Used - Very Good",
                                         "Used - Good",
                                         "Used - Acceptable",
                                         "Refurbished",
                                         "Collectible - Like New",
                                         "Collectible - Very Good",
                                         "Collectible - Good",
                                         "Collectible - Acceptable"};
static const char *const cond_short[] = {"?",   "New", "LN",  "VG", "G", "A",
                                         "Ref", "CLN", "CVG", "CG", "CA"};

const char *jd_condition_name(unsigned c)
{
    return c < sizeof(cond_names) / sizeof(cond_names[0]) ? cond_names[c] : "unknown";
}

const char *jd_condition_short(unsigned c)
{
    return c < sizeof(cond_short) / sizeof(cond_short[0]) ? cond_short[c] : "?";
}
