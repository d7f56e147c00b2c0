/*
 * rules.c: the judgement's rules from the config. See rules.h.
 */
#include "judge/rules.h"

#include <string.h>

#include "judge/market.h"

/* Hundredths of the unit (the config's money) in the marketplace's smallest unit. */
static int64_t money(const struct cfg *c, int64_t hundredths)
{
    const struct jd_market *m = jd_market((unsigned)c->keepa_domain);
    return m != NULL && m->decimals == 0 ? hundredths / 100 : hundredths;
}

static void bases(const char *text, uint8_t *out, uint8_t *n)
{
    int64_t items[JD_BASIS_MAX];
    char why[128];
    int k = cfg_list_parse(text, CFG_SELL_BASES, items, JD_BASIS_MAX, why, sizeof(why));
    if (k <= 0)
        return; /* the defaults stay */
    for (int i = 0; i < k; i++)
        out[i] = (uint8_t)(items[i] + 1); /* CFG_SELL_BASES is enum jd_basis from 1 */
    *n = (uint8_t)k;
}

void jd_rules_from_cfg(const struct cfg *c, struct jd_rules *out)
{
    jd_rules_default(out);
    out->buy_condition = c->filter_buy_condition;
    bases(c->sell_basis_new, out->basis[JD_NEW], &out->n_basis[JD_NEW]);
    bases(c->sell_basis_used, out->basis[JD_USED], &out->n_basis[JD_USED]);
    out->cap_at_buy_box = c->sell_cap_at_buy_box;
    out->amazon_cap_bp = c->sell_amazon_cap_bp;
    out->max_sell_cents = money(c, c->sell_max_sell_cents);
    out->min_roi_bp = c->filter_min_roi_pct_bp;
    out->min_profit_cents = money(c, c->filter_min_profit_cents);
    out->min_sell_cents = money(c, c->filter_min_sell_cents);
    out->min_drops365 = c->filter_min_rank_drops_365;
    out->max_rank = c->filter_max_rank;
    out->unknown = c->filter_unknown == CFG_UNKNOWN_PASS ? JD_UNKNOWN_PASSES : JD_UNKNOWN_FAILS;
    out->near_roi_bp = c->filter_near_roi_pts_bp;
    out->near_profit_cents = money(c, c->filter_near_profit_cents);
    out->fulfilment = c->costs_fulfilment == CFG_FULFIL_FBM ? JD_FBM : JD_FBA;
    out->prep_cents = money(c, c->costs_prep_cents);
    out->inbound_cents = money(c, c->costs_inbound_shipping_cents);
    out->tax_bp = c->costs_tax_pct_bp;
    out->default_referral_bp = c->costs_default_referral_pct_bp;
    out->referral_min_cents = money(c, c->costs_referral_min_cents);
    out->default_fba_fee_cents = money(c, c->costs_default_fba_fee_cents);
    out->closing_fee_cents = money(c, c->costs_closing_fee_cents);
    out->fbm_shipping_cents = money(c, c->costs_fbm_shipping_cents);
    int64_t ids[32];
    char why[128];
    int k = cfg_list_parse(c->costs_media_categories, NULL, ids, 32, why, sizeof(why));
    if (k >= 0) {
        memcpy(out->media_categories, ids, (size_t)k * sizeof(ids[0]));
        out->n_media_categories = (uint8_t)k;
    }
}

bool jd_rules_differ(const struct cfg *a, const struct cfg *b)
{
    struct jd_rules ra, rb;
    jd_rules_from_cfg(a, &ra);
    jd_rules_from_cfg(b, &rb);
    return jd_rules_hash(&ra) != jd_rules_hash(&rb);
}
