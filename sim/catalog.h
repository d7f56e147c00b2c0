/*
 * catalog.h: the simulator's deterministic product catalog.
 *
 * A product is a pure function of (seed, index, Keepa minute): nothing is stored, so a catalog
 * of millions of products costs no memory and two simulators with the same seed agree on every
 * value at the same Keepa minute. Prices and ranks move in epochs (their length shrinks as
 * volatility grows); in a fraction of epochs a product's used price drops well below its
 * averages, which is what makes it a deal. ASINs are "B0" + 8 base-36 characters obtained
 * from the index by an invertible affine map mod 36^8, so lookup is O(1).
 */
#ifndef SIM_CATALOG_H
#define SIM_CATALOG_H

#include <stdint.h>

#define SIM_CSV_TYPES     36 /* csv and stats per-index arrays (2026 width) */
#define SIM_DEAL_TYPES    34 /* deal per-price-type arrays (REC-DEAL width) */
#define SIM_DEAL_RANGES   4  /* day, week, month, 90 days */
#define SIM_SELLERS       20000
#define SIM_AMAZON_SELLER "ATVPDKIKX0DER"

struct sim_catalog {
    uint64_t seed;
    int64_t products;
    double volatility;
    int64_t epoch_len_min; /* Keepa minutes per price epoch; huge when volatility is 0 */
    uint64_t asin_mul, asin_inv, asin_off;
    uint64_t seller_mul, seller_inv, seller_off;
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
    int64_t cats[2];
    const char *cat_name;
    int has_amazon, has_used, stale;
    int is_variation, variation_primary;
    int64_t parent_idx; /* -1 none */
    /* base values the epoch factors multiply */
    int64_t base_new_cents, base_used_cents, base_rank;
    int64_t cur[SIM_CSV_TYPES];  /* -1 = no data */
    int64_t last[SIM_CSV_TYPES]; /* value in the previous epoch */
    int64_t since[SIM_CSV_TYPES];
    int64_t avg_dr[SIM_DEAL_RANGES][SIM_CSV_TYPES]; /* -2 = no data */
    int64_t avg30[SIM_CSV_TYPES], avg90[SIM_CSV_TYPES], avg180[SIM_CSV_TYPES],
        avg365[SIM_CSV_TYPES];
    int drops30, drops90, drops180, drops365;
    int64_t last_update, creation, tracking_since, listed_since;
    int rating, reviews, monthly_sold;
    int n_new_offers, n_used_offers, n_hist_offers;
    int fba_fee_cents, referral_pct;
    int weight_g, height_mm, length_mm, width_mm;
};

/*
 * Prepares C for SEED, PRODUCTS (1 .. 36^8) and VOLATILITY (>= 0; 1 = an epoch of 6 Keepa
 * hours, 0 = prices never move). Returns 0 or -EINVAL.
 */
int sim_catalog_init(struct sim_catalog *c, uint64_t seed, int64_t products, double volatility);

/* Writes the ASIN of product IDX (0 <= IDX < products) into OUT (10 chars + NUL). */
void sim_catalog_asin(const struct sim_catalog *c, int64_t idx, char out[11]);

/* Index of ASIN (exactly 10 chars, case-sensitive), or -1 when not in the catalog. */
int64_t sim_catalog_lookup(const struct sim_catalog *c, const char *asin);

/* Fills P with product IDX (must be valid) as it is at Keepa minute KEEPA_MIN. */
void sim_catalog_product(const struct sim_catalog *c, int64_t idx, int64_t keepa_min,
                         struct sim_product *p);

/*
 * Value of csv type TYPE of P at price epoch EPOCH (history points); -1 when the type has no
 * data. Deterministic like everything else.
 */
int64_t sim_catalog_value_at(const struct sim_catalog *c, const struct sim_product *p, int type,
                             int64_t epoch);

/* Seller ID of seller pool index IDX (13 chars + NUL), and its inverse (-1 if unknown). */
void sim_catalog_seller_id(const struct sim_catalog *c, int64_t idx, char out[14]);
int64_t sim_catalog_seller_lookup(const struct sim_catalog *c, const char *id);

/* A deterministic 64-bit hash of (seed, a, b, c): the catalog's only source of randomness. */
uint64_t sim_hash(uint64_t seed, uint64_t a, uint64_t b, uint64_t c);

/* Number of root categories and their ids/names (for /deal category counts and /query). */
int sim_catalog_root_count(void);
int64_t sim_catalog_root_id(int slot);
const char *sim_catalog_root_name(int slot);

/* Title of product IDX into OUT (size N). */
void sim_catalog_title(const struct sim_catalog *c, int64_t idx, char *out, int n);

#endif
