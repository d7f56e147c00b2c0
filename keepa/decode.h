/*
 * decode.h: streaming decoder for Keepa response bodies (docs/keepa-api.md §2.6, §5, §7, §8).
 *
 * A body is fed chunk by chunk (as curl delivers it) to a yajl 2.1 callback parser. The
 * decoder keeps no DOM: it walks a small fixed stack of frames, copies the fields a deal
 * pipeline needs into one compact struct (a product, a deal, a seller, a lightning deal) and
 * hands that struct to a callback as soon as its object closes, then reuses the same memory
 * for the next one. ASIN lists (/query's asinList, /bestsellers' bestSellersList.asinList) go
 * to a callback one ASIN at a time.
 * Unknown keys are skipped at any depth without allocation; the only heap the decoder uses is
 * yajl's own lexer buffers, which are tracked (kp_decoder_peak_bytes) and bounded by feeding
 * yajl in small slices and refusing any single token longer than max_token_bytes.
 *
 * Invariants: memory is O(1) in the body size; every malformed, truncated, over-deep or
 * over-large body ends in a negative errno and a one-line message (kp_decoder_error), never a
 * crash; callbacks never see a struct from a half-finished object. Prices are integer cents,
 * times Keepa minutes, missing or null per-index values are -1, missing scalars keep the
 * documented default (-1, or -2 where Keepa itself uses -2). A known product field of the wrong
 * JSON type keeps its default too, and is counted in kp_product.type_errors so that a consumer
 * can tell "Keepa does not know" from "the answer is garbled".
 */
#ifndef KP_DECODE_H
#define KP_DECODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KP_ASIN_MAX      16  /* ASINs are 10 characters; bounded copy, NUL-terminated */
#define KP_TITLE_MAX     256 /* bounded copy, cut at a UTF-8 boundary */
#define KP_SELLER_ID_MAX 24
#define KP_MAX_CATS      16  /* categories kept per product / deal */
#define KP_NPRICE        36  /* per-index entries kept (csv / stats / deal arrays) */
#define KP_MAX_OFFERS    100 /* live offers kept per product */
#define KP_RAW_OFFERS    320 /* offers buffered before liveOffersOrder is applied */
#define KP_DEAL_RANGES   4   /* deal avg/delta rows: day, week, month, 90 days */
#define KP_CODES_MAX     8   /* product codes kept per product (eanList, then upcList) */
#define KP_CODE_LEN      16  /* one code (UPC 12, EAN 13, GTIN 14 digits) with its NUL */

/* Default limits (kp_decode_opts fields set to 0 take these). */
#define KP_DECODE_MAX_BODY  (64u * 1024u * 1024u)
#define KP_DECODE_MAX_DEPTH 32
#define KP_DECODE_MAX_TOKEN (1u * 1024u * 1024u)

/* Envelope field bits in kp_envelope.have. */
enum {
    KP_ENV_TIMESTAMP = 1u << 0,
    KP_ENV_TOKENS_LEFT = 1u << 1,
    KP_ENV_REFILL_IN = 1u << 2,
    KP_ENV_REFILL_RATE = 1u << 3,
    KP_ENV_FLOW_REDUCTION = 1u << 4,
    KP_ENV_TOKENS_CONSUMED = 1u << 5,
    KP_ENV_PROCESSING = 1u << 6,
    KP_ENV_ERROR = 1u << 7,
    KP_ENV_PRODUCTS = 1u << 8, /* a "products" key was present (even null) */
    KP_ENV_DEALS = 1u << 9,
    KP_ENV_SELLERS = 1u << 10,
    KP_ENV_ASIN_LIST = 1u << 11,
    KP_ENV_LIGHTNING = 1u << 12,   /* a "lightningDeals" array was present */
    KP_ENV_BESTSELLERS = 1u << 13, /* a "bestSellersList" object was present */
};
#define KP_ENV_TOKEN_CORE                                                                          \
    (KP_ENV_TIMESTAMP | KP_ENV_TOKENS_LEFT | KP_ENV_REFILL_IN | KP_ENV_REFILL_RATE)

/* The response envelope. Token fields are doubles: Keepa may send 54.5. */
struct kp_envelope {
    unsigned have; /* KP_ENV_* bits of the fields seen */
    int64_t timestamp_ms;
    double tokens_left;
    int64_t refill_in_ms;
    double refill_rate;
    double token_flow_reduction;
    double tokens_consumed;
    int64_t processing_ms;
    char error_type[64];
    char error_message[256];
    char error_details[256];
    int8_t deals_cached;   /* -1 absent, 0, 1 */
    int64_t total_results; /* /query; -1 absent */
    uint32_t n_products;   /* emitted so far */
    uint32_t shape_errors; /* "products" that is not null or an array of objects: the object
                              or scalar in its place, or each non-object element */
    uint32_t n_deals;
    uint32_t n_sellers;
    uint32_t n_asins;             /* asinList entries: /query's, or bestSellersList's */
    uint32_t n_lightning;         /* lightningDeals entries emitted */
    int64_t bestsellers_category; /* bestSellersList.categoryId; -1 absent */
    int64_t bestsellers_last_update_keepa_min; /* bestSellersList.lastUpdate; -1 absent */
};

/* One offer (docs/keepa-api.md §7.4): price and shipping from the newest complete offerCSV triple.
 */
struct kp_offer {
    int64_t last_seen_keepa_min; /* -1 absent */
    int64_t csv_time_keepa_min;  /* time of the triple used; -1 if offerCSV had none */
    int32_t price_cents;         /* -1 absent */
    int32_t shipping_cents;      /* -1 absent */
    int32_t offer_id;            /* -1 absent */
    int16_t index;               /* position in the product's offers[] array */
    int8_t condition;            /* 0 unknown, 1 new, 2-5 used, 6 refurbished, 7-10 collectible */
    int8_t is_fba, is_prime, is_amazon; /* -1 absent, 0, 1 */
    char seller_id[KP_SELLER_ID_MAX];
};

/* stats object (docs/keepa-api.md §7.3). Per-index arrays: -1 = none, missing or null. */
struct kp_stats {
    bool present;
    int32_t current[KP_NPRICE];
    int32_t avg[KP_NPRICE];
    int32_t avg30[KP_NPRICE];
    int32_t avg90[KP_NPRICE];
    int32_t avg180[KP_NPRICE];
    int32_t avg365[KP_NPRICE];
    int32_t sales_rank_drops30, sales_rank_drops90, sales_rank_drops180, sales_rank_drops365;
    int32_t buy_box_price_cents;              /* -2 none (Keepa's value), -1 absent */
    int32_t buy_box_shipping_cents;           /* idem */
    int8_t buy_box_is_fba, buy_box_is_amazon; /* -1 null/absent, 0, 1 */
    int32_t offer_count_fba, offer_count_fbm; /* -2 unless offers were requested */
    int32_t total_offer_count, retrieved_offer_count;
    char buy_box_seller_id[KP_SELLER_ID_MAX]; /* "" when null or absent */
    int8_t buy_box_is_used;                   /* buyBoxIsUsed: -1 null/absent, 0, 1 */
    int32_t buy_box_used_price_cents;         /* buyBoxUsedPrice: -2 none, -1 absent */
    int32_t buy_box_used_shipping_cents;      /* buyBoxUsedShipping: idem */
};

struct kp_product {
    char asin[KP_ASIN_MAX];
    char title[KP_TITLE_MAX];
    bool title_truncated;
    int32_t domain_id;    /* -1 absent */
    int32_t product_type; /* -1 absent; 0 standard ... 5 variation parent */
    int64_t root_category;
    uint32_t n_categories; /* entries kept in categories[] */
    uint32_t n_categories_total;
    int64_t categories[KP_MAX_CATS];
    int64_t last_update_keepa_min;
    int64_t last_price_change_keepa_min;
    struct kp_stats stats;
    int32_t pick_and_pack_fee_cents;    /* fbaFees.pickAndPackFee; -1 absent */
    double referral_fee_percent;        /* referralFeePercentage, else referralFeePercent; -1 */
    int8_t offers_successful;           /* -1 absent, 0, 1 */
    int32_t monthly_sold;               /* monthlySold; -1 absent */
    int32_t availability_amazon;        /* -1 none, 0 now, 1 preorder, ...; -2 absent */
    int32_t package_weight_g;           /* -1 absent */
    int32_t package_height_mm;          /* packageHeight; -1 absent */
    int32_t package_length_mm;          /* packageLength; -1 absent */
    int32_t package_width_mm;           /* packageWidth; -1 absent */
    int32_t variable_closing_fee_cents; /* variableClosingFee; -1 absent */
    int8_t is_heat_sensitive;           /* isHeatSensitive: -1 absent, 0, 1 */
    int8_t is_adult;                    /* isAdultProduct: -1 absent, 0, 1 */
    int8_t hazmat;                      /* hazardousMaterials: -1 absent, 0 null or [], 1 listed */
    char root_category_name[64];        /* categoryTree[0].name; "" absent */
    char parent_asin[KP_ASIN_MAX];      /* "" when null or absent */
    uint8_t n_codes;                    /* entries in codes[] */
    char codes[KP_CODES_MAX][KP_CODE_LEN]; /* eanList then upcList (Keepa's code lookup) */
    bool live_order_present;               /* liveOffersOrder was a non-null array */
    uint32_t n_offers_seen;                /* entries of offers[] in the body */
    uint32_t n_offers;                     /* live offers kept below */
    bool offers_truncated;                 /* a live offer was beyond the buffers */
    /*
     * Values of the wrong JSON type in the fields above (stats, offers, fbaFees included): a
     * number given as a string, bool or container, a string or bool given as a number, an
     * array where an object belongs (stats: []) or the reverse (offers: {}), a non-number in
     * a per-index array, offerCSV, categories or liveOffersOrder, a non-object in offers.
     * Such a field is left at its default, so a product with type_errors > 0 does not say what
     * Keepa knows about it: judge it as not answered. null is never an error (Keepa sends it
     * for "absent"); a number of the right type but out of range or fractional is not one
     * either (it keeps the default, as before). Unknown keys are never checked.
     */
    uint32_t type_errors;
    struct kp_offer offers[KP_MAX_OFFERS];
};

struct kp_deal {
    char asin[KP_ASIN_MAX];
    char title[KP_TITLE_MAX];
    bool title_truncated;
    int64_t root_cat;
    uint32_t n_categories;
    uint32_t n_categories_total;
    int64_t categories[KP_MAX_CATS];
    int64_t last_update_keepa_min;
    int64_t creation_date_keepa_min;
    uint32_t n_price; /* length of current[] in the body (34 in 2025, 36 in 2026), capped */
    int32_t current[KP_NPRICE];
    int32_t current_since[KP_NPRICE];
    int32_t delta_last[KP_NPRICE];
    int32_t avg[KP_DEAL_RANGES][KP_NPRICE];
    int32_t delta[KP_DEAL_RANGES][KP_NPRICE];
    int32_t delta_percent[KP_DEAL_RANGES][KP_NPRICE];
    int32_t sales_rank_drops30, sales_rank_drops90, sales_rank_drops180, sales_rank_drops365;
    int32_t warehouse_condition; /* -1 absent */
};

struct kp_seller {
    char seller_id[KP_SELLER_ID_MAX];
    char name[128];
    int32_t domain_id;
    int32_t current_rating;       /* percent 0-100, -1 */
    int32_t current_rating_count; /* -1 */
    int32_t ratings_last30_days;  /* -1 */
    int8_t is_scammer, has_fba;   /* -1, 0, 1 */
    int64_t last_update_keepa_min;
};

/* A lightning deal's dealState (docs/keepa-api.md §2.6); UNKNOWN for a state Keepa adds later. */
enum kp_ld_state {
    KP_LD_UNKNOWN = 0,
    KP_LD_AVAILABLE,
    KP_LD_UPCOMING,
    KP_LD_WAITLIST,
    KP_LD_SOLDOUT,
    KP_LD_WAITLISTFULL,
    KP_LD_EXPIRED,
    KP_LD_SUPPRESSED
};

/* The state's name as Keepa spells it ("AVAILABLE"), "UNKNOWN" for anything else. */
const char *kp_ld_state_name(int state);

/*
 * One lightning deal (the LightningDeal object of /lightningdeal, docs/keepa-api.md §2.6).
 * Times are Keepa minutes, prices cents; dealPrice and currentPrice are -1 while the deal is
 * upcoming, as Keepa sends them.
 */
struct kp_lightning_deal {
    char asin[KP_ASIN_MAX];
    char title[KP_TITLE_MAX];
    bool title_truncated;
    char seller_id[KP_SELLER_ID_MAX];
    char seller_name[64]; /* sellerName: "Amazon.com" when Amazon runs the deal */
    char deal_id[40];
    int32_t domain_id;             /* -1 absent */
    int64_t last_update_keepa_min; /* -1 absent */
    int64_t start_keepa_min;       /* startTime; -1 absent */
    int64_t end_keepa_min;         /* endTime; -1 absent */
    int32_t deal_price_cents;      /* dealPrice; -1 upcoming or absent */
    int32_t current_price_cents;   /* currentPrice; -1 upcoming or absent */
    int32_t percent_claimed;       /* -1 absent */
    int32_t percent_off;           /* -1 absent */
    int32_t rating;                /* 0-50; -1 absent */
    int32_t total_reviews;         /* -1 absent */
    int8_t state;                  /* enum kp_ld_state */
    int8_t is_prime_eligible;      /* -1 absent, 0, 1 */
    int8_t is_fba;                 /* isFulfilledByAmazon: -1 absent, 0, 1 */
};

/*
 * Per-object callbacks. Each receives a struct that is valid only during the call. Returning
 * nonzero stops decoding: kp_decoder_feed then returns -ECANCELED. Any may be NULL.
 */
struct kp_decode_cbs {
    int (*on_product)(const struct kp_product *p, void *ud);
    int (*on_deal)(const struct kp_deal *d, void *ud);
    int (*on_seller)(const struct kp_seller *s, void *ud);
    int (*on_asin)(const char *asin, void *ud); /* /query asinList, bestSellersList.asinList */
    int (*on_lightning)(const struct kp_lightning_deal *ld, void *ud); /* lightningDeals */
    void *ud;
};

struct kp_decode_opts {
    size_t max_body_bytes;  /* 0: KP_DECODE_MAX_BODY */
    unsigned max_depth;     /* 0: KP_DECODE_MAX_DEPTH */
    size_t max_token_bytes; /* 0: KP_DECODE_MAX_TOKEN (longest single string / number) */
};

struct kp_decoder;

/*
 * Creates a decoder. OPTS may be NULL (defaults); CBS may be NULL (envelope only). Both are
 * copied. Returns NULL only on allocation failure.
 */
struct kp_decoder *kp_decoder_new(const struct kp_decode_opts *opts,
                                  const struct kp_decode_cbs *cbs);

/* Frees the decoder. NULL is a no-op. */
void kp_decoder_free(struct kp_decoder *d);

/*
 * Makes the decoder ready for a new body (the envelope is cleared, the error forgotten, the
 * peak-memory figure kept). Returns 0, or -ENOMEM.
 */
int kp_decoder_reset(struct kp_decoder *d);

/*
 * Feeds LEN bytes of the body. Callbacks run from inside this call. Returns 0, or a negative
 * errno once the body is known to be bad: -EBADMSG malformed JSON or invalid UTF-8 or a
 * top-level value that is not an object, -EFBIG body over max_body_bytes, -ELOOP nesting over
 * max_depth, -E2BIG a single token over max_token_bytes, -ECANCELED a callback asked to stop.
 * After an error every later call returns the same error.
 */
int kp_decoder_feed(struct kp_decoder *d, const void *buf, size_t len);

/* Declares the end of the body. Returns 0 if it was one complete JSON object, else as feed. */
int kp_decoder_finish(struct kp_decoder *d);

/* The envelope read so far (complete after a successful finish). */
const struct kp_envelope *kp_decoder_envelope(const struct kp_decoder *d);

/* One-line description of the error ("" if none). Static storage inside the decoder. */
const char *kp_decoder_error(const struct kp_decoder *d);

/* Bytes fed since the last reset. */
size_t kp_decoder_bytes(const struct kp_decoder *d);

/* High-water heap use of the decoder (its own struct plus yajl's buffers), in bytes. */
size_t kp_decoder_peak_bytes(const struct kp_decoder *d);

/*
 * Convenience: decodes a whole in-memory body with a fresh decoder. ENV (may be NULL)
 * receives the envelope; ERR (may be NULL) the error line. Returns as kp_decoder_finish.
 */
int kp_decode_buffer(const void *buf, size_t len, const struct kp_decode_opts *opts,
                     const struct kp_decode_cbs *cbs, struct kp_envelope *env, char *err,
                     size_t errsz);

#endif
