/*
 * judge.h: the deal judgement, "buy this, at this price, for this profit", as pure functions.
 *
 * Every token kdeals spends ends here. The free pre-filter of the deal feed, the peek, the
 * full fetch, the updater's re-check, the re-judge after a reload and the operator's `kdeals
 * show` / `kdeals judge` all call jd_judge() on a struct jd_inputs, so one place answers "why
 * is this a deal". No I/O, no clock, no allocation: the caller supplies the time and the
 * inputs; tests/unit/test_judge.c checks the arithmetic by hand against the recorded Keepa
 * bodies and holds the model to its properties. docs/judgement.md is the seller's reading.
 *
 * Inputs. struct jd_inputs is what the judgement reads about one product, compact enough to
 * be stored with every record (a reload re-judges the store with zero tokens). Each field
 * names the Keepa field it comes from (judge/inputs.h fills them from a decoded answer). Money
 * is integer cents of the marketplace's currency (yen in Japan), -1 unknown or none.
 *
 * Sell model. The buy's condition decides the side: a New buy is sold against New bases, a
 * Used buy (conditions 2-5) against Used bases. The rules list the bases in order; the first
 * one with a value wins (Buy Box of that condition, lowest FBA offer of that condition, the
 * 90-, 180-, 365-day averages of the lowest listing; the mean of the 90- and 365-day averages
 * and the current lowest listing only as explicit opt-ins). Then the ceilings, each on by
 * default and recorded when it lowered the price: never above the current Buy Box of that
 * condition, never above a share (90 %) of Amazon's own current price when Amazon sells it,
 * never above a configured maximum.
 *
 * Fees. Referral: the product's percentage (else the default) of the sell price, at least the
 * category's per-unit minimum (none on media). Closing fee: Keepa's variableClosingFee, else the
 * media closing fee when the root category is a media one. FBA: the product's pick-and-pack fee,
 * else the default. FBM instead pays the seller's own shipping per unit and no FBA fee or
 * inbound shipping. Payout = sell - referral - closing - FBA (or FBM shipping). Landed buy =
 * (price + shipping) + tax on it + prep + inbound. Profit = payout - landed; ROI = profit /
 * landed; margin = profit / sell. Rounding is to the nearest cent at each fee.
 *
 * Criteria. Each is stored with its value, threshold and margin (positive: passes by that
 * much) and a state: pass, fail or unknown. Unknown (an input Keepa did not give, e.g.
 * salesRankDrops365 = -1) has its own rule, pass or fail, applied the same way at every stage,
 * so a token is never paid to reject a product on data that was already missing before the
 * payment. A product is a deal when no criterion fails (unknowns counted per the rule).
 *
 * Max cost. For every judged product, the highest buy cost (item price + its shipping, before
 * tax, prep and inbound) that still meets min_roi and min_profit: a product that is not a deal
 * today says at what price it would be one. Buying at max cost passes both money criteria;
 * one cent more fails one of them (tests hold it to that).
 *
 * Bounds. At the feed (no fees known yet) the judgement is an upper bound: fees count as 0,
 * so the free pre-filter never rejects what a paid look could accept on the same sell data.
 * At the peek (stats, no offers) the buy is the current lowest listing without shipping, never
 * more than what the full fetch pays for an offer at that price; on the same inputs the peek
 * is never more pessimistic than the full judgement.
 */
#ifndef KD_JUDGE_H
#define KD_JUDGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define JD_ASIN_LEN      10
#define JD_SELLER_ID_MAX 32 /* bytes including the NUL */
#define JD_BASIS_MAX     8  /* bases in one ordered list */

/* The side of the market a buy is sold on. */
enum jd_side { JD_NEW = 0, JD_USED = 1, JD_SIDES = 2 };

/* Where the sell price comes from. 0 is "none". The names are the config's words. */
enum jd_basis {
    JD_BASIS_NONE = 0,
    JD_BASIS_BUY_BOX,    /* the current Buy Box of the side (landed: price + shipping) */
    JD_BASIS_LOWEST_FBA, /* the lowest FBA offer of the side */
    JD_BASIS_AVG90,      /* 90-day average of the lowest listing of the side */
    JD_BASIS_AVG180,
    JD_BASIS_AVG365,
    JD_BASIS_AVG90_365, /* mean of the 90- and 365-day averages (opt-in) */
    JD_BASIS_CURRENT,   /* the current lowest listing of the side (opt-in) */
    JD_BASIS_COUNT
};

/* Ceilings that lowered the sell price (jd_verdict.caps). */
enum {
    JD_CAP_BUY_BOX = 1u << 0,      /* above the side's current Buy Box */
    JD_CAP_AMAZON = 1u << 1,       /* above amazon_cap of Amazon's current price */
    JD_CAP_MAX_SELL = 1u << 2,     /* above max_sell */
    JD_CAP_BUY_BOX_SEEN = 1u << 3, /* above the side's Buy Box as last seen (this read has none) */
    JD_CAP_COUNT = 4
};

/* Where the buy side comes from. */
enum jd_buy_source {
    JD_BUY_NONE = 0, /* nothing to buy: no offer, no listing price */
    JD_BUY_OFFER,    /* one live offer of a full fetch (seller, condition, price, shipping) */
    JD_BUY_OWN_COST, /* the seller's own cost (a sourcing list) */
    JD_BUY_LISTING   /* the current lowest listing from stats (peek, re-check): no shipping */
};

/* How a fulfilment is paid for. */
enum jd_fulfilment { JD_FBA = 0, JD_FBM = 1 };

/* What an unknown input counts as. */
enum jd_unknown { JD_UNKNOWN_FAILS = 0, JD_UNKNOWN_PASSES = 1 };

/* The criteria, in the order they are reported. */
enum jd_crit {
    JD_C_BUY = 0,  /* something to buy at a known price */
    JD_C_SELL,     /* a sell price from one of the bases */
    JD_C_ROI,      /* profit / landed >= min_roi (bp) */
    JD_C_PROFIT,   /* profit >= min_profit (cents) */
    JD_C_MIN_SELL, /* sell >= min_sell (cents) */
    JD_C_DROPS365, /* salesRankDrops365 >= min_drops365 */
    JD_C_MAX_RANK, /* sales rank <= max_rank (off when max_rank is 0) */
    JD_C_COUNT
};

enum jd_state { JD_PASS = 0, JD_FAIL = 1, JD_UNKNOWN = 2, JD_OFF = 3 };

/*
 * The inputs, as an X-macro list X(kind, name, size) in the shape of store/codec.h's field
 * lists (I64, I32, U8, BOOL, STR), so the store encodes them with every record without a
 * second list. Every field names its Keepa source; -1 is unknown / none unless said.
 */
#define JD_INPUT_FIELDS(X)                                                                         \
    X(I64, root_category, 0)       /* rootCategory (deal: rootCat); 0 unknown */                   \
    X(I64, amazon_cents, 0)        /* stats.current[0] AMAZON: Amazon's own price now */           \
    X(I32, amazon_availability, 0) /* availabilityAmazon: -1 none, 0 now, 1 preorder, 2 unknown,   \
                                      3 backorder, 4 delayed; -2 not sent */                       \
    X(I32, buy_box_is_amazon, 0)   /* stats.buyBoxIsAmazon: -1 unknown, 0, 1 */                    \
    X(I64, new_buy_box_cents, 0)   /* stats.current[18] BUY_BOX_SHIPPING, else stats.buyBoxPrice + \
                                      buyBoxShipping when the Buy Box is not Used */               \
    X(I64, used_buy_box_cents, 0)  /* stats.current[32] BUY_BOX_USED_SHIPPING, else                \
                                      stats.buyBoxUsedPrice + buyBoxUsedShipping */                \
    X(I64, new_buy_box_seen_cents, 0)  /* new_buy_box_cents of the last read that had one, when    \
                                          this read has none (a light re-check): a ceiling only */ \
    X(I64, used_buy_box_seen_cents, 0) /* the same for used_buy_box_cents */                       \
    X(I64, buy_box_seen_ms, 0)         /* when those were read */                                  \
    X(I64, new_lowest_fba_cents, 0)    /* stats.current[10] NEW_FBA, else the lowest live New FBA  \
                                          offer (price + shipping) */                              \
    X(I64, used_lowest_fba_cents, 0)   /* the lowest live Used FBA offer (offers[]) */             \
    X(I64, new_cents, 0)               /* stats.current[1] NEW: lowest New listing */              \
    X(I64, used_cents, 0)              /* stats.current[2] USED: lowest Used listing */            \
    X(I64, new_avg90_cents, 0)         /* stats.avg90[1] */                                        \
    X(I64, new_avg180_cents, 0)        /* stats.avg180[1] */                                       \
    X(I64, new_avg365_cents, 0)        /* stats.avg365[1] */                                       \
    X(I64, used_avg90_cents, 0)        /* stats.avg90[2] */                                        \
    X(I64, used_avg180_cents, 0)       /* stats.avg180[2] */                                       \
    X(I64, used_avg365_cents, 0)       /* stats.avg365[2] */                                       \
    X(I64, sales_rank, 0)              /* stats.current[3] SALES */                                \
    X(I32, drops30, 0)                 /* stats.salesRankDrops30 */                                \
    X(I32, drops90, 0)                 /* stats.salesRankDrops90 */                                \
    X(I32, drops180, 0)                /* stats.salesRankDrops180 */                               \
    X(I32, drops365, 0)                /* stats.salesRankDrops365 */                               \
    X(I32, monthly_sold, 0)            /* monthlySold */                                           \
    X(I32, offers_new, 0)              /* stats.current[11] COUNT_NEW */                           \
    X(I32, offers_used, 0)             /* stats.current[12] COUNT_USED */                          \
    X(I32, offers_fba, 0)              /* stats.offerCountFBA (offers only) */                     \
    X(I32, offers_fbm, 0)              /* stats.offerCountFBM (offers only) */                     \
    X(I32, referral_bp, 0)             /* referralFeePercentage x 100 (else referralFeePercent) */ \
    X(I64, fba_fee_cents, 0)           /* fbaFees.pickAndPackFee */                                \
    X(I64, closing_fee_cents, 0)       /* variableClosingFee */                                    \
    X(I32, hazmat, 0)                  /* hazardousMaterials: 1 listed, 0 null, -1 not sent */     \
    X(I32, heat_sensitive, 0)          /* isHeatSensitive */                                       \
    X(I32, adult, 0)                   /* isAdultProduct */                                        \
    X(I32, package_weight_g, 0)        /* packageWeight (g); 0 or -1 unknown */                    \
    X(I32, package_length_mm, 0)       /* packageLength (mm) */                                    \
    X(I32, package_width_mm, 0)        /* packageWidth (mm) */                                     \
    X(I32, package_height_mm, 0)       /* packageHeight (mm) */                                    \
    X(BOOL, fees_known, 0)             /* referral and FBA inputs come from a /product answer */   \
    X(U8, buy_source, 0)               /* enum jd_buy_source */                                    \
    X(U8, buy_condition, 0)            /* offers[].condition: 1 new, 2-5 used; 0 unknown */        \
    X(I64, buy_price_cents, 0)         /* offerCSV's newest price, the listing, or own cost */     \
    X(I64, buy_shipping_cents, 0)      /* offerCSV's newest shipping; 0 free, -1 unknown */        \
    X(STR, buy_seller_id, JD_SELLER_ID_MAX) /* offers[].sellerId */                                \
    X(BOOL, buy_is_fba, 0)                  /* offers[].isFBA */                                   \
    X(BOOL, buy_is_amazon, 0)               /* offers[].isAmazon */                                \
    X(I64, buy_seen_ms, 0) /* when the buy offer was seen (the answer's time), 0 never */          \
    X(I64, data_ms, 0)     /* when the other inputs were read (the answer's time) */               \
    X(I64, keepa_last_update_min, 0) /* lastUpdate (Keepa minutes) */                              \
    X(I64, price_change_min, 0)      /* lastPriceChange (Keepa minutes) */

#define JD_MEMBER_I64(name, size)   int64_t name;
#define JD_MEMBER_I32(name, size)   int32_t name;
#define JD_MEMBER_U8(name, size)    uint8_t name;
#define JD_MEMBER_BOOL(name, size)  bool name;
#define JD_MEMBER_STR(name, size)   char name[size];
#define JD_MEMBER(kind, name, size) JD_MEMBER_##kind(name, size)

struct jd_inputs {
    JD_INPUT_FIELDS(JD_MEMBER)
};

/* The rules a judgement applies: the seller's config (judge/rules.h builds it from a cfg). */
struct jd_rules {
    /* Which condition to buy: 0 used then new, 1 used, 2 new, 3 new then used (the config's
     * [filter] buy_condition, in its choices order). */
    int buy_condition;
    /* Sell model. */
    uint8_t basis[JD_SIDES][JD_BASIS_MAX]; /* enum jd_basis, first available wins */
    uint8_t n_basis[JD_SIDES];
    bool cap_at_buy_box;
    int64_t amazon_cap_bp;  /* 9000 = 90 % of Amazon's price; 0 = off */
    int64_t max_sell_cents; /* 0 = off */
    /* Criteria. */
    int64_t min_roi_bp;
    int64_t min_profit_cents;
    int64_t min_sell_cents;
    int64_t min_drops365;
    int64_t max_rank; /* 0 = off */
    enum jd_unknown unknown;
    /* "Near": fails only ROI and/or profit, by at most this much. */
    int64_t near_roi_bp;
    int64_t near_profit_cents;
    /* Costs and fees. */
    enum jd_fulfilment fulfilment;
    int64_t prep_cents;
    int64_t inbound_cents;
    int64_t tax_bp; /* on price + shipping */
    int64_t default_referral_bp;
    int64_t referral_min_cents; /* per unit, outside media */
    int64_t default_fba_fee_cents;
    int64_t closing_fee_cents; /* media closing fee */
    int64_t fbm_shipping_cents;
    int64_t media_categories[32]; /* root category ids that pay the closing fee */
    uint8_t n_media_categories;
};

/* One criterion's outcome. Values in the criterion's unit: bp (ROI), cents (profit, sell),
 * a count (drops), a rank. margin > 0: passes by that much; < 0: fails by that much. */
struct jd_criterion {
    uint8_t state; /* enum jd_state */
    int64_t value, threshold, margin;
};

/* What a judgement concluded. Every money figure in cents. Signed figures (payout, profit,
 * ROI, margin) are meaningful only when payout_known / priced say so; the others are -1 where
 * they do not apply. */
struct jd_verdict {
    bool deal;           /* no criterion fails */
    bool near;           /* not a deal, but fails only ROI/profit, within the near margins */
    bool bound;          /* fees were unknown (the feed): the figures are an upper bound */
    bool payout_known;   /* a sell price: payout_cents is computed (it may be any value) */
    bool priced;         /* buy and sell known: profit, ROI and margin are computed */
    uint8_t side;        /* enum jd_side sold on */
    uint8_t basis;       /* enum jd_basis that gave the sell price (0 none) */
    uint8_t caps;        /* JD_CAP_* that lowered it */
    uint32_t fails;      /* bit per enum jd_crit that failed (unknown counted per the rule) */
    uint32_t unknowns;   /* bit per criterion whose input was unknown */
    int64_t basis_cents; /* the basis before the ceilings */
    int64_t sell_cents;
    int64_t referral_bp; /* the percentage used */
    bool referral_default, referral_min_applied;
    int64_t referral_cents;
    int64_t closing_cents;
    int64_t fba_cents; /* FBA fee (0 for FBM) */
    bool fba_default;
    int64_t fbm_shipping_cents; /* FBM only */
    int64_t payout_cents;       /* sell - referral - closing - fba/fbm shipping */
    int64_t buy_cents;          /* item price + shipping (shipping 0 when unknown) */
    int64_t tax_cents;
    int64_t prep_cents;
    int64_t inbound_cents;
    int64_t landed_cents;
    int64_t profit_cents;
    int64_t roi_bp;                /* profit / landed (0 when landed is not positive) */
    int64_t margin_bp;             /* profit / sell */
    int64_t max_cost_cents;        /* highest buy cost meeting both; -1 none */
    int64_t max_cost_roi_cents;    /* ... meeting min_roi alone */
    int64_t max_cost_profit_cents; /* ... meeting min_profit alone */
    bool oversize;                 /* beyond Amazon's standard size (20 lb, 18 x 14 x 8 in) */
    struct jd_criterion crit[JD_C_COUNT];
};

/* The rules kdeals ships with (the config's defaults; test_judge checks they agree). */
void jd_rules_default(struct jd_rules *r);

/* Inputs with every field unknown (-1, sources none), ready to be filled. */
void jd_inputs_init(struct jd_inputs *in);

/*
 * Judges IN under R into OUT. Pure and total: any inputs give a verdict (a missing buy or sell
 * side fails JD_C_BUY / JD_C_SELL). Returns OUT->deal.
 */
bool jd_judge(const struct jd_inputs *in, const struct jd_rules *r, struct jd_verdict *out);

/*
 * The landed cost of buying at BUY_CENTS (price + shipping) under R: + tax + prep + inbound
 * (FBM: no inbound). Exposed for max-cost checks and the view's own-cost recomputation.
 */
int64_t jd_landed(int64_t buy_cents, const struct jd_rules *r);

/*
 * Whether Amazon itself is on the listing of IN: its own price is known (stats.current[0]), or
 * availabilityAmazon is 0 (now), 1 (preorder), 3 (back order) or 4 (delayed), or
 * buyBoxIsAmazon, or the offer to buy is Amazon's own. The view's `no_amazon` and the
 * discovery filter `[scan] no_amazon` read it.
 */
bool jd_amazon_on_listing(const struct jd_inputs *in);

/* The side a buy of CONDITION (offers[].condition) sells on; -1 for refurbished/collectible/0. */
int jd_side_of_condition(int condition);

/* A 64-bit digest of R: records judged under other rules are re-judged. Stable across runs. */
uint64_t jd_rules_hash(const struct jd_rules *r);

/* Names: the config's words for a basis ("buy_box", ...), a criterion ("roi", "profit", ...),
 * a state ("pass", ...), a buy source ("offer", ...). "?" for out-of-range values. */
const char *jd_basis_name(unsigned basis);
const char *jd_crit_name(unsigned crit);
const char *jd_state_name(unsigned state);
const char *jd_buy_source_name(unsigned src);
const char *jd_side_name(unsigned side);

/* The name of ceiling bit BIT (0 for JD_CAP_BUY_BOX, ...): "buy_box", "amazon", "max_sell",
 * "buy_box_seen"; "?" beyond. */
const char *jd_cap_name(unsigned bit);

/* Parses a basis name; returns the enum jd_basis or -1. */
int jd_basis_parse(const char *name, size_t len);

/*
 * The first failing criterion's short name for a log line ("roi", "profit", "no-buy", ...),
 * "deal" when none fails.
 */
const char *jd_reason(const struct jd_verdict *v);

/*
 * Writes criterion C of V in words into BUF (size LEN, always terminated when LEN > 0), money
 * in DOMAIN's currency: "ROI 27.1 % vs 25 %: pass by 2.1 pts", "profit $3.40 vs $5.00: fail by
 * $1.60", "rank drops 365: unknown (fails)". Returns what snprintf returns.
 */
int jd_format_criterion(const struct jd_verdict *v, unsigned c, unsigned domain, char *buf,
                        size_t len);

#endif
