/*
 * catalog.h: the simulator's deterministic product catalog and its market.
 *
 * A product is a pure function of (seed, index, Keepa minute): nothing is stored, so a catalog
 * of millions of products costs no memory and two simulators with the same seed agree on every
 * value at the same Keepa minute. ASINs are "B0" + 8 base-36 characters obtained from the index
 * by an invertible affine map mod 36^8, so lookup is O(1).
 *
 * Two economies share the catalog's shape (sim/README.md, "Economy"):
 *
 *  - calibrated (the default) is tuned against a recorded real /deal page: Used prices sit on
 *    levels that change every few Keepa days around a 90-day average (some levels far below
 *    it, some above), short spikes follow a sell-out of the cheapest copies, and now and then
 *    a cheap copy is listed far below the average for a few hours. The deal feed lists a
 *    product when it qualified at some moment of its window (sim/deals.h) and shows its
 *    current values, so most listed products have moved on by the time they are read.
 *  - rich (the original catalog) makes about one price epoch in four a deal at 45-80 % of
 *    the average and lists only products that qualify now: many deals, quickly.
 *
 * Either way every price Keepa derives from offers (New, Amazon, the Buy Boxes, FBA / FBM
 * lowest, the Used conditions, the offer counts) is computed from one offer list, the market,
 * so the series, the stats, the offers and the counts of one product never disagree.
 */
#ifndef SIM_CATALOG_H
#define SIM_CATALOG_H

#include <stdint.h>

#define SIM_CSV_TYPES     36 /* csv and stats per-index arrays (2026 width) */
#define SIM_DEAL_TYPES    34 /* deal per-price-type arrays (REC-DEAL width) */
#define SIM_DEAL_RANGES   4  /* day, week, month, 90 days */
#define SIM_SELLERS       20000
#define SIM_AMAZON_SELLER "ATVPDKIKX0DER"
#define SIM_MAX_OFFERS    64 /* live and historical offers of one product */
#define SIM_WINDOW_MAX    40 /* candidate moments of one product in a feed window */
#define SIM_SLOT_CACHE    24 /* calibrated: price levels a product keeps (the averages + a window) */

enum sim_economy { SIM_ECONOMY_CALIBRATED = 0, SIM_ECONOMY_RICH = 1 };

struct sim_catalog {
    uint64_t seed;
    int64_t products;
    double volatility;
    enum sim_economy economy;
    int64_t epoch_len_min; /* Keepa minutes per price epoch; huge when volatility is 0 */
    int64_t slot_len_min;  /* calibrated: Keepa minutes per Used / New price level */
    uint64_t asin_mul, asin_inv, asin_off;
    uint64_t seller_mul, seller_inv, seller_off;
};

/* One offer as the catalog knows it. */
struct sim_offer {
    int64_t price, ship;
    int cond; /* 1 new, 2-5 used (like new, very good, good, acceptable) */
    int fba, amazon, prime, live, bb_eligible;
    int64_t seller_idx; /* -1 = Amazon */
    int64_t last_seen;
    int offer_id;
};

/*
 * The market of one product at one moment: every offer (live first, then historical) and
 * what Keepa derives from them. price[t] is the item price of csv type t (-1 none) for the
 * types that come from offers (0, 1, 2, 7, 10, 18, 19-22, 32) and the count for 11, 12, 34,
 * 35; ship[t] is the shipping of the triple types. The Buy Box is one of the offers.
 */
struct sim_market {
    int n, n_live;
    struct sim_offer offers[SIM_MAX_OFFERS];
    int64_t price[SIM_CSV_TYPES];
    int64_t ship[SIM_CSV_TYPES];
    int bb;         /* the Buy Box offer (New, else Used), -1 none or suppressed */
    int bb_is_used; /* the Buy Box went to a Used offer: no New offer qualified */
    int bb_used;    /* the Used Buy Box offer, -1 none */
    int n_new, n_used, n_new_fba, n_new_fbm;
    int eligible[4]; /* buyBoxEligibleOfferCounts: New FBA, New FBM, Used FBA, Used FBM */
};

/* Values of one product at one Keepa minute: everything /product, /deal and the oracle use. */
struct sim_product {
    int64_t idx;
    char asin[11];
    int64_t keepa_min;
    int64_t epoch, epoch_start;
    int cat_slot;
    int64_t root_cat;
    const char *root_name;
    int64_t cats[2]; /* sub-category, leaf (categoryTree below the root; categories: the leaf) */
    const char *cat_name;
    int is_media; /* Books, CDs & Vinyl, Movies & TV, Video Games, Software */
    int has_amazon, has_used, has_new, has_rank, stale;
    int is_variation, variation_primary;
    int64_t parent_idx; /* -1 none */
    /* base values the epoch factors multiply */
    int64_t base_new_cents, base_used_cents, base_rank;
    int64_t cur[SIM_CSV_TYPES];  /* -1 = no data */
    int64_t last[SIM_CSV_TYPES]; /* the value before the last change */
    int64_t since[SIM_CSV_TYPES];
    int64_t avg_dr[SIM_DEAL_RANGES][SIM_CSV_TYPES]; /* -2 = no data */
    int64_t avg30[SIM_CSV_TYPES], avg90[SIM_CSV_TYPES], avg180[SIM_CSV_TYPES],
        avg365[SIM_CSV_TYPES];
    int drops30, drops90, drops180, drops365; /* -1 unknown */
    int64_t last_update, creation, tracking_since, listed_since;
    int rating, reviews, monthly_sold; /* monthly_sold -1: Amazon shows no figure */
    int n_new_offers, n_used_offers, n_hist_offers;
    int availability_amazon; /* -1 no Amazon offer, 0 in stock */
    int fba_fee_cents;       /* fbaFees.pickAndPackFee; -1: fbaFees is null */
    int referral_pct;        /* referralFeePercent (int) */
    int referral_bp;         /* referralFeePercentage x 100: 1501 = 15.01 % */
    int closing_fee_cents;   /* variableClosingFee; -1: Keepa does not send it */
    int heat_sensitive, adult;
    int hazmat; /* 0 none, 1 lithium battery, 2 aerosol, 3 flammable liquid */
    int weight_g, height_mm, length_mm, width_mm;
    struct sim_market mkt; /* the market now */
    /* calibrated: the price levels of slots [slot_lo, slot_lo + n_slots) and their flags */
    int64_t slot_lo;
    int n_slots;
    double slot_used[SIM_SLOT_CACHE], slot_new[SIM_SLOT_CACHE];
    unsigned char slot_amazon[SIM_SLOT_CACHE], slot_bb_off[SIM_SLOT_CACHE];
    int64_t phase, slot_phase;       /* epoch phase (minutes) and slot phase (epochs) */
    double level_spread, level_mean; /* calibrated: the Used level's spread and its mean */
};

/*
 * Prepares C for SEED, PRODUCTS (1 .. 36^8), VOLATILITY (>= 0; 1 = an epoch of 6 Keepa
 * hours, 0 = prices never move) and ECONOMY. Returns 0 or -EINVAL.
 */
int sim_catalog_init(struct sim_catalog *c, uint64_t seed, int64_t products, double volatility,
                     enum sim_economy economy);

/* "calibrated" / "rich" to an economy; 0 or -EINVAL. And back to its name. */
int sim_economy_parse(const char *name, enum sim_economy *out);
const char *sim_economy_name(enum sim_economy e);

/* Writes the ASIN of product IDX (0 <= IDX < products) into OUT (10 chars + NUL). */
void sim_catalog_asin(const struct sim_catalog *c, int64_t idx, char out[11]);

/* Index of ASIN (exactly 10 chars, case-sensitive), or -1 when not in the catalog. */
int64_t sim_catalog_lookup(const struct sim_catalog *c, const char *asin);

/*
 * Synthetic products: any well-formed ASIN outside the catalog is a product too, so programs
 * with real ASINs in their tests find them. Its index is SIM_EXT_BASE or above, a hash of the
 * ASIN (not of the seed: the same ASIN and seed give the same product); an ISBN-10 is a book.
 * Such a product is everything a catalog product is (offers, history, fees), but it is never
 * listed by /deal, /query or the best-seller lists, and sim_catalog_product leaves its ASIN
 * empty: the caller copies the ASIN it resolved.
 */
#define SIM_EXT_BASE ((int64_t)1 << 42)

/* 1 when ASIN is well-formed: exactly 10 characters, digits and upper-case letters. */
int sim_asin_wellformed(const char *asin);

/*
 * The index of ASIN: the catalog's, or its synthetic product's; -1 when the ASIN is malformed
 * or one Keepa does not know: without a digit (real ASINs and ISBNs have one; clients test
 * with XXXXXXXXXX), or reserved as unknown by ending in ZZZZ (tests use B0ZZZZZZZZ).
 */
int64_t sim_catalog_resolve(const struct sim_catalog *c, const char *asin);

/* Fills P with product IDX (must be valid) as it is at Keepa minute KEEPA_MIN. */
void sim_catalog_product(const struct sim_catalog *c, int64_t idx, int64_t keepa_min,
                         struct sim_product *p);

/*
 * Fills the part of P the deal feed needs to look at it (sim_catalog_window,
 * sim_catalog_point): the static draws, the clock, freshness and, in the calibrated economy,
 * the price levels, but none of the values (cur, last, averages, the market) that the rich
 * economy's feed reads, so there it is sim_catalog_product. For scans.
 */
void sim_catalog_product_light(const struct sim_catalog *c, int64_t idx, int64_t keepa_min,
                               struct sim_product *p);

/*
 * sim_catalog_product_light in two steps, for a scan that skips most products before it reads
 * a price or keeps the levels itself: the static draws, the clock and freshness (in the rich
 * economy the whole light product, as there), then, calibrated only, the price levels. Without
 * the levels a product reads the same figures (a level not kept is drawn when it is read), only
 * slower.
 */
void sim_catalog_product_bare(const struct sim_catalog *c, int64_t idx, int64_t keepa_min,
                              struct sim_product *p);
void sim_catalog_product_levels(const struct sim_catalog *c, struct sim_product *p);

/* The draws of a product that never change (everything the bare product holds but its clock),
 * for a scan to keep (about 230 bytes) and give back to sim_catalog_product_bare_from. */
struct sim_product_static {
    char asin[11];
    int64_t root_cat, cats[2], parent_idx, base_new_cents, base_used_cents, base_rank;
    int64_t phase, slot_phase;
    const char *root_name, *cat_name;
    double level_spread, level_mean;
    int cat_slot, is_media, has_amazon, has_used, has_new, has_rank, is_variation,
        variation_primary;
    int drops30, drops90, drops180, drops365, rating, reviews, monthly_sold;
    int n_new_offers, n_used_offers, n_hist_offers, fba_fee_cents, referral_pct, referral_bp,
        closing_fee_cents, heat_sensitive, adult, hazmat, weight_g, height_mm, length_mm, width_mm;
};

/* Calibrated economy only: *ST receives the static draws of P (bare or more); then
 * sim_catalog_product_bare_from(C, ST, P->idx, T, Q) fills Q as sim_catalog_product_bare
 * would, byte for byte, without drawing them again. */
void sim_catalog_product_static(const struct sim_product *p, struct sim_product_static *st);
void sim_catalog_product_bare_from(const struct sim_catalog *c, const struct sim_product_static *st,
                                   int64_t idx, int64_t keepa_min, struct sim_product *p);

/*
 * Value of csv type TYPE of P at price epoch EPOCH (history points), without the short
 * Used dips of the calibrated economy (sim_catalog_dip tells where those are); -1 when the
 * type has no data. *SHIP receives the shipping of a triple type (may be NULL).
 */
int64_t sim_catalog_value_at(const struct sim_catalog *c, const struct sim_product *p, int type,
                             int64_t epoch, int64_t *ship);

/*
 * The market of P at price epoch EPOCH (the whole epoch, dips left out) into M. P's market
 * now is P->mkt.
 */
void sim_catalog_market_at(const struct sim_catalog *c, const struct sim_product *p, int64_t epoch,
                           struct sim_market *m);

/*
 * A short Used dip of the calibrated economy in epoch EPOCH of P: returns 1, the minutes
 * [*START, *END) the cheap copy is listed and, when M is not NULL, the market meanwhile (the
 * epoch's market plus that copy); else 0. Only dips that lower the Used price count.
 */
int sim_catalog_dip(const struct sim_catalog *c, const struct sim_product *p, int64_t epoch,
                    int64_t *start, int64_t *end, struct sim_market *m);

/* What the deal feed compares for one price type and date range at one minute. */
struct sim_point {
    int64_t minute;
    int64_t cur, avg, last, rank;
    int amazon; /* Amazon sold at that minute */
};

/*
 * The moments at which the feed looks at P for date range DR: the start of every price epoch
 * in the feed window and the start of every dip in it, oldest first, all <= P's minute.
 * Writes at most MAX minutes and returns the count. The rich economy has one moment: now.
 */
int sim_catalog_window(const struct sim_catalog *c, const struct sim_product *p, int dr,
                       int64_t *minutes, int max);

/*
 * The feed's view of P at minute T (one of the window's moments): the same values
 * sim_catalog_product gives for that minute, for price type PT and date range DR. P may be
 * light (sim_catalog_product_light).
 */
void sim_catalog_point(const struct sim_catalog *c, const struct sim_product *p, int pt, int dr,
                       int64_t t, struct sim_point *out);

/*
 * The minutes in (FROM, TO] at which anything a deal judgement reads of P can change other than
 * the averages' slow drift: the start of every price epoch (the market, the sales rank), the
 * start and end of every cheap Used copy (calibrated) and, in the rich economy, every Keepa day
 * (its averages drift per day). Oldest first, at most MAX; returns the count, or -E2BIG when
 * there are more than MAX. P may be light.
 */
int sim_catalog_breaks(const struct sim_catalog *c, const struct sim_product *p, int64_t from,
                       int64_t to, int64_t *minutes, int max);

/* Seller ID of seller pool index IDX (13 chars + NUL), and its inverse (-1 if unknown). */
void sim_catalog_seller_id(const struct sim_catalog *c, int64_t idx, char out[14]);
int64_t sim_catalog_seller_lookup(const struct sim_catalog *c, const char *id);

/* A deterministic 64-bit hash of (seed, a, b, c): the catalog's only source of randomness. */
uint64_t sim_hash(uint64_t seed, uint64_t a, uint64_t b, uint64_t c);

/* The economy's root categories: count, ids and names (/deal category counts, /query). */
int sim_catalog_root_count(const struct sim_catalog *c);
int64_t sim_catalog_root_id(const struct sim_catalog *c, int slot);
const char *sim_catalog_root_name(const struct sim_catalog *c, int slot);

/* Title of product IDX into OUT (size N). */
void sim_catalog_title(const struct sim_catalog *c, int64_t idx, char *out, int n);

/* The text fields of a product ("" when Keepa would send null): /product, /search, /query. */
struct sim_texts {
    char title[160], author[64], brand[48], manufacturer[48], binding[32], product_group[32];
    char type[16];
};
void sim_catalog_texts(const struct sim_catalog *c, const struct sim_product *p,
                       struct sim_texts *t);

/*
 * The category tree: every root of the economy has SIM_SUBS sub-categories (id root x 10 + k,
 * k = 1..SIM_SUBS) and each of those SIM_LEAVES leaves (id sub x 100 + l, l = 1..SIM_LEAVES); a
 * product sits in one leaf (its categories), below one sub and its root (categoryTree). Ids are
 * unique across levels (test_sim_units checks it); names are the economy's root names, the
 * sub-category names of sim/README.md and numbered variants of them.
 */
#define SIM_SUBS   7
#define SIM_LEAVES 40

struct sim_category {
    int64_t id, parent; /* parent 0: a root */
    int level;          /* 0 root, 1 sub-category, 2 leaf */
    int root_slot, sub, leaf;
    int media;
    char name[96];
    char display_group[64]; /* roots only: websiteDisplayGroup, else "" */
};

/* Fills OUT with category ID of the catalog's tree; 0, or -ENOENT when ID is not in it. */
int sim_catalog_category(const struct sim_catalog *c, int64_t id, struct sim_category *out);

/* The id of child K (0-based) of category ID (a root's sub-categories, a sub's leaves); -1. */
int64_t sim_catalog_category_child(const struct sim_catalog *c, int64_t id, int k);

/* Product IDX's place in the tree without computing the product: root slot, sub k, leaf l. */
void sim_catalog_placement(const struct sim_catalog *c, int64_t idx, int *root_slot, int *sub,
                           int *leaf);

/*
 * Lightning deals (sim/README.md, "Lightning deals"): a deterministic schedule. On any Keepa day
 * a product with a New market has a lightning deal with a small probability, starting at a drawn
 * minute of that day and lasting 4, 6 or 12 hours, at 15-50 % off the New price, with stock
 * claimed at a drawn pace (sold out before its end when the pace is high). The deal is
 * information only: it does not enter the product's offers.
 */
enum sim_lightning_state {
    SIM_LD_AVAILABLE = 0,
    SIM_LD_UPCOMING,
    SIM_LD_WAITLIST,
    SIM_LD_SOLDOUT,
    SIM_LD_WAITLISTFULL,
    SIM_LD_EXPIRED,
    SIM_LD_SUPPRESSED
};

struct sim_lightning {
    int64_t start, end; /* Keepa minutes */
    int percent_off, percent_claimed;
    int state; /* enum sim_lightning_state at the asked minute */
    uint64_t deal_id;
};

/*
 * The lightning deal of product IDX that matters at Keepa minute T: one running (available or
 * sold out), else one starting within the next Keepa day. Returns 1 and fills OUT, or 0. Cheap
 * for the many products without one (a hash per day).
 */
int sim_catalog_lightning(const struct sim_catalog *c, int64_t idx, int64_t t,
                          struct sim_lightning *out);

/* "AVAILABLE", "UPCOMING", ... for a state. */
const char *sim_lightning_state_name(int state);

#endif
