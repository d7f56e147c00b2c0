/*
 * request.h: Keepa request builders (docs/keepa-api.md §1, §2).
 *
 * A builder validates its parameters and fills a struct kp_call: the endpoint path, the query
 * string WITHOUT the key, an optional POST body (the /deal and /query selection JSON), and the
 * ASINs asked for (so partial answers can be reported per ASIN). The key is added only when
 * the transport builds the URL it hands to curl (kp_call_url); everything that may be logged
 * or printed uses the keyless form. Invalid parameters are refused here with -EINVAL, before
 * any token is spent: offers outside 20..100 (offers=0 is never sent), more than 100 ASINs,
 * ASINs or seller ids with characters outside [A-Za-z0-9], codes that are not 8..14 digits, ASINs
 * and codes in one request, unknown domains. A /product by codes (Keepa's `code` lookup) lists
 * no ASINs in the call: its products are the answer's, each naming its codes (eanList,
 * upcList).
 */
#ifndef KP_REQUEST_H
#define KP_REQUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keepa/decode.h"

#define KP_MAX_BATCH     100  /* ASINs per /product, ids per /seller */
#define KP_QUERY_MAX     2048 /* query string without the key */
#define KP_KEY_MAX       128  /* the longest key the client takes, plus the NUL (base/key.h) */
#define KP_SELECTION_MAX (256u * 1024u)

enum kp_endpoint {
    KP_EP_TOKEN = 0,
    KP_EP_PRODUCT,
    KP_EP_DEAL,
    KP_EP_SELLER,
    KP_EP_QUERY,
    KP_EP_LIGHTNING,  /* /lightningdeal */
    KP_EP_BESTSELLERS /* /bestsellers */
};

/* Optional 0/1 parameter: KP_DEFAULT leaves it out (Keepa's default applies). */
enum kp_flag { KP_DEFAULT = 0, KP_NO, KP_YES };

#define KP_CODE_MAX 16 /* a UPC, EAN or ISBN-13 code (8..14 digits) with its NUL */

struct kp_product_params {
    int domain;               /* 1..12 */
    const char *const *asins; /* 1..KP_MAX_BATCH ASINs; or, with no ASINs: */
    size_t n_asins;
    const char *const *codes; /* 1..KP_MAX_BATCH product codes (code=: UPC, EAN, ISBN-13) */
    size_t n_codes;
    int code_limit;         /* > 0: code-limit=N, products per code (codes only) */
    int stats_days;         /* > 0: stats=N; 0: no stats (unless a range is set) */
    int64_t stats_start_ms; /* both > 0: stats=start,end (epoch ms) instead of days */
    int64_t stats_end_ms;
    enum kp_flag history;
    int days;   /* > 0: days=N; 0: omitted */
    int offers; /* 0: omitted; else 20..100 */
    enum kp_flag only_live_offers;
    enum kp_flag rating;
    enum kp_flag buybox;
    enum kp_flag stock;
    bool has_update; /* send update=update_hours (-1, 0 or more) */
    int update_hours;
};

struct kp_call {
    enum kp_endpoint ep;
    const char *path;         /* "/product" ... (static) */
    char query[KP_QUERY_MAX]; /* "domain=1&asin=..." without the key; may be "" */
    char *body;               /* POST body (malloc'd) or NULL for GET */
    size_t body_len;
    bool with_offers; /* /product with offers: the long timeout applies */
    /* Attempts the client makes (0: its own max_tries). 1 for a request too dear to repeat
     * without a new grant: the caller retries through the token bucket instead. */
    unsigned max_tries;
    unsigned key_index; /* which of the client's keys the request is sent with (0: the first) */
    size_t n_asins;
    char asins[KP_MAX_BATCH][KP_ASIN_MAX];
};

/* Each builder fills C (overwritten) and returns 0 or -EINVAL (-ENOMEM for a body copy). */
int kp_call_token(struct kp_call *c);
int kp_call_product(struct kp_call *c, const struct kp_product_params *p);
/* SELECTION is the /deal selection JSON (it carries domainId and page); sent as a POST body. */
int kp_call_deal(struct kp_call *c, const char *selection);
/* /seller?domain=D&seller=ID,...: 1..KP_MAX_BATCH seller ids. */
int kp_call_seller(struct kp_call *c, int domain, const char *const *ids, size_t n);
/* /query (Product Finder): the selection JSON as a POST body; STATS adds stats=1. */
int kp_call_query(struct kp_call *c, int domain, const char *selection, bool stats);

/*
 * /lightningdeal?domain=D (docs/keepa-api.md §2.6): with N = 0 the whole list of lightning
 * deals running or upcoming (500 tokens), else the deals of the N (1..KP_MAX_BATCH) ASINs
 * (1 token per ASIN with a deal). The whole list is sent once (max_tries 1): its 500 tokens
 * are not paid twice without a new grant.
 */
int kp_call_lightning(struct kp_call *c, int domain, const char *const *asins, size_t n);

/* The best-seller list ranges Keepa serves: the current rank, or its 30/90/180-day average. */
#define KP_BESTSELLERS_RANGE_OK(r) ((r) == 0 || (r) == 30 || (r) == 90 || (r) == 180)

/*
 * /bestsellers?domain=D&category=ID&range=R (docs/keepa-api.md §2.6): the ASINs of category ID
 * (a node id > 0) by sales rank, R one of 0, 30, 90, 180 (KP_BESTSELLERS_RANGE_OK). 50 tokens,
 * 0 when nothing is found; sent once (max_tries 1) like the lightning list.
 */
int kp_call_bestsellers(struct kp_call *c, int domain, int64_t category, int range);

/* Frees what a builder allocated (the body). The struct itself is the caller's. */
void kp_call_free(struct kp_call *c);

/*
 * Writes BASE + path + "?key=KEY&" + query into OUT. KEY NULL writes "key=<redacted>" (the
 * form for logs). Returns 0, or -ENAMETOOLONG when OUT is too small (OUT is then "").
 */
int kp_call_url(const struct kp_call *c, const char *base, const char *key, char *out,
                size_t outsz);

/* Name of an endpoint ("token", "product", ...). */
const char *kp_endpoint_name(enum kp_endpoint ep);

#endif
