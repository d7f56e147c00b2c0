/*
 * market.h: what kdeals knows about each Amazon marketplace a Keepa domain id names: its
 * currency and how money is written there, its Amazon host (product and offer-listing links),
 * the Keepa product page, and the names of the root categories (from Keepa's own category
 * names on a recorded /deal page of amazon.com; other marketplaces show the id unless the
 * product answer carried a categoryTree name).
 *
 * Money is integer units of the currency's smallest unit, as Keepa sends it: cents, pence,
 * euro cents, yen (no decimals in Japan). Pure tables and formatting, no I/O.
 */
#ifndef KD_JUDGE_MARKET_H
#define KD_JUDGE_MARKET_H

#include <stddef.h>
#include <stdint.h>

struct jd_market {
    unsigned domain;      /* Keepa domain id: 1 com, 2 co.uk, 3 de, ... */
    const char *tld;      /* "com", "co.uk", ... */
    const char *host;     /* "www.amazon.com" */
    const char *currency; /* ISO 4217: "USD" */
    const char *symbol;   /* "$", "£", "€", "¥", "C$", ... */
    int decimals;         /* 2, or 0 for yen */
};

/* The marketplace of Keepa domain DOMAIN, or NULL for an unknown id (0, 7, > 12). */
const struct jd_market *jd_market(unsigned domain);

/*
 * Writes AMOUNT (smallest units) in DOMAIN's currency: "$14.99", "-$1.60", "€3.20", "¥1500".
 * An unknown domain writes a plain decimal with two places. -1 is written as "-1" only by the
 * caller's choice: this function formats any value. Returns what snprintf returns.
 */
int jd_money(unsigned domain, int64_t amount, char *buf, size_t len);

/*
 * Parses an amount of money written by a person ("5", "5.00", "$5", "12.5", "-1.25") into
 * smallest units for DOMAIN (yen: whole units). Returns 0 or -EINVAL.
 */
int jd_money_parse(unsigned domain, const char *text, int64_t *out);

/* Links for an ASIN on DOMAIN. Return what snprintf returns; an unknown domain uses .com. */
int jd_link_amazon(unsigned domain, const char *asin, char *buf, size_t len);
int jd_link_offers(unsigned domain, const char *asin, char *buf, size_t len);
int jd_link_keepa(unsigned domain, const char *asin, char *buf, size_t len);

/* The name of root category ID on DOMAIN ("Books"), or NULL when kdeals does not know it. */
const char *jd_category_name(unsigned domain, int64_t id);

/* The root categories of DOMAIN whose sales pay the media closing fee (Books, Music, Video,
 * DVD, Video Games, Software), for the default rules. Sets *N. */
const int64_t *jd_media_categories(unsigned domain, size_t *n);

/* The name of an offer condition (1 "New", 2 "Used - Like New", ..., 0 "unknown"). */
const char *jd_condition_name(unsigned condition);

/* The short name of an offer condition for tables ("New", "LN", "VG", "G", "A"). */
const char *jd_condition_short(unsigned condition);

#endif
