/*
 * explain.c: a judgement in words. See explain.h; the model is docs/judgement.md.
 *
 * Layout: the product line and links; BUY (the offer, whole, with its source and age), SELL
 * (the basis that gave the price, its Keepa field, and every ceiling with its value), FEES,
 * the landed cost, PROFIT / ROI / margin, MAX COST; then the verdict with each criterion and
 * its margin; then every input beside the Keepa field it was read from.
 */
#include "cli/explain.h"

#include <inttypes.h>
#include <string.h>

#include "judge/market.h"

static const char *money(unsigned domain, int64_t v, char *buf, size_t len)
{
    if (v < 0) {
        snprintf(buf, len, "-");
        return buf;
    }
    jd_money(domain, v, buf, len);
    return buf;
}

/* Signed money (profit, payout): any value is a value. */
static const char *smoney(unsigned domain, int64_t v, char *buf, size_t len)
{
    jd_money(domain, v, buf, len);
    return buf;
}

static const char *pct(int64_t bp, char *buf, size_t len)
{
    snprintf(buf, len, "%.2f %%", (double)bp / 100.0);
    return buf;
}

static const char *age(int64_t now_ms, int64_t at_ms, char *buf, size_t len)
{
    if (at_ms <= 0 || now_ms <= 0) {
        snprintf(buf, len, "age unknown");
        return buf;
    }
    int64_t s = (now_ms - at_ms) / 1000;
    if (s < 0)
        s = 0;
    if (s < 120)
        snprintf(buf, len, "%" PRId64 " s ago", s);
    else if (s < 7200)
        snprintf(buf, len, "%" PRId64 " min ago", s / 60);
    else if (s < 172800)
        snprintf(buf, len, "%" PRId64 " h ago", s / 3600);
    else
        snprintf(buf, len, "%" PRId64 " days ago", s / 86400);
    return buf;
}

/* The Keepa field a basis of SIDE is read from. */
static const char *basis_field(unsigned basis, unsigned side)
{
    bool used = side == JD_USED;
    switch (basis) {
    case JD_BASIS_BUY_BOX:
        return used ? "stats.current[32] BUY_BOX_USED_SHIPPING (else stats.buyBoxUsedPrice + "
                      "buyBoxUsedShipping)"
                    : "stats.current[18] BUY_BOX_SHIPPING (else stats.buyBoxPrice + "
                      "buyBoxShipping)";
    case JD_BASIS_LOWEST_FBA:
        return used ? "offers[]: the lowest live Used FBA offer"
                    : "stats.current[10] NEW_FBA (else the lowest live New FBA offer)";
    case JD_BASIS_AVG90:
        return used ? "stats.avg90[2] USED" : "stats.avg90[1] NEW";
    case JD_BASIS_AVG180:
        return used ? "stats.avg180[2] USED" : "stats.avg180[1] NEW";
    case JD_BASIS_AVG365:
        return used ? "stats.avg365[2] USED" : "stats.avg365[1] NEW";
    case JD_BASIS_AVG90_365:
        return used ? "mean of stats.avg90[2] and stats.avg365[2]"
                    : "mean of stats.avg90[1] and stats.avg365[1]";
    case JD_BASIS_CURRENT:
        return used ? "stats.current[2] USED" : "stats.current[1] NEW";
    default:
        return "-";
    }
}

static void input_line(FILE *out, const char *field, const char *value)
{
    fprintf(out, "    %-44s %s\n", field, value);
}

static void input_money(FILE *out, unsigned d, const char *field, int64_t v)
{
    char b[48];
    input_line(out, field, money(d, v, b, sizeof(b)));
}

static void input_int(FILE *out, const char *field, int64_t v, const char *unknown)
{
    char b[48];
    if (v < 0 && unknown != NULL)
        snprintf(b, sizeof(b), "%s", unknown);
    else
        snprintf(b, sizeof(b), "%" PRId64, v);
    input_line(out, field, b);
}

static const char *tri(int32_t v)
{
    return v == 1 ? "yes" : v == 0 ? "no" : "unknown";
}

void cli_explain(FILE *out, const struct cli_product *p, const struct jd_inputs *in,
                 const struct jd_verdict *v, const struct jd_rules *r)
{
    unsigned d = p->domain;
    char a[64], b[64], c[64], e[64], f[64], g[64], link[256];
    const char *cat = p->category != NULL && p->category[0]
                          ? p->category
                          : jd_category_name(d, in->root_category);
    const struct jd_market *m = jd_market(d);
    fprintf(out, "%s  %s\n", p->asin, p->title != NULL ? p->title : "");
    fprintf(out, "  amazon.%s, %s (root %" PRId64 ")%s%s%s%s\n", m ? m->tld : "?",
            cat ? cat : "category unknown", in->root_category, v->oversize ? ", oversize" : "",
            in->hazmat == 1 ? ", hazmat" : "", in->heat_sensitive == 1 ? ", heat-sensitive" : "",
            in->adult == 1 ? ", adult" : "");
    jd_link_amazon(d, p->asin, link, sizeof(link));
    fprintf(out, "  %s\n", link);
    jd_link_offers(d, p->asin, link, sizeof(link));
    fprintf(out, "  %s\n", link);
    jd_link_keepa(d, p->asin, link, sizeof(link));
    fprintf(out, "  %s\n\n", link);

    /* BUY */
    switch (in->buy_source) {
    case JD_BUY_OFFER:
        fprintf(out, "  BUY      %s + %s shipping, %s, seller %s%s%s, seen %s\n",
                money(d, in->buy_price_cents, a, sizeof(a)),
                money(d, in->buy_shipping_cents < 0 ? 0 : in->buy_shipping_cents, b, sizeof(b)),
                jd_condition_name(in->buy_condition), in->buy_seller_id,
                in->buy_is_fba ? " (FBA)" : " (FBM)", in->buy_is_amazon ? " (Amazon)" : "",
                age(p->now_ms, in->buy_seen_ms, c, sizeof(c)));
        fprintf(out, "           <- offers[]: one live offer, the cheapest landed of the wanted "
                     "condition (offerCSV's newest price and shipping)\n");
        break;
    case JD_BUY_LISTING:
        fprintf(out, "  BUY      %s, the lowest %s listing, shipping unknown (counted as 0)\n",
                money(d, in->buy_price_cents, a, sizeof(a)),
                in->buy_condition == 1 ? "New" : "Used");
        fprintf(out, "           <- %s (no offers were fetched: a full fetch names the offer)\n",
                in->buy_condition == 1 ? "stats.current[1] NEW" : "stats.current[2] USED");
        break;
    case JD_BUY_OWN_COST:
        fprintf(out, "  BUY      %s, your own cost (%s)\n",
                money(d, in->buy_price_cents, a, sizeof(a)), jd_condition_name(in->buy_condition));
        break;
    default:
        fprintf(out, "  BUY      nothing to buy in the wanted condition\n");
        break;
    }

    /* SELL */
    if (v->sell_cents > 0) {
        fprintf(out, "  SELL     %s (%s side), basis %s = %s\n",
                money(d, v->sell_cents, a, sizeof(a)), jd_side_name(v->side),
                jd_basis_name(v->basis), money(d, v->basis_cents, b, sizeof(b)));
        fprintf(out, "           <- %s\n", basis_field(v->basis, v->side));
        int64_t bb = v->side == JD_USED ? in->used_buy_box_cents : in->new_buy_box_cents;
        int64_t seen =
            v->side == JD_USED ? in->used_buy_box_seen_cents : in->new_buy_box_seen_cents;
        char bbtext[160];
        if (!r->cap_at_buy_box)
            snprintf(bbtext, sizeof(bbtext), "off");
        else if (bb <= 0 && seen > 0)
            snprintf(bbtext, sizeof(bbtext), "- (this read has none; %s as last seen, %s%s)",
                     money(d, seen, f, sizeof(f)),
                     age(p->now_ms, in->buy_box_seen_ms, g, sizeof(g)),
                     (v->caps & JD_CAP_BUY_BOX_SEEN) ? ", applied" : "");
        else
            snprintf(bbtext, sizeof(bbtext), "%s%s", money(d, bb, f, sizeof(f)),
                     (v->caps & JD_CAP_BUY_BOX) ? " (applied)" : "");
        fprintf(out, "           ceilings: Buy Box %s; %s of Amazon's %s%s; max %s%s\n", bbtext,
                r->amazon_cap_bp > 0 ? pct(r->amazon_cap_bp, b, sizeof(b)) : "off",
                money(d, in->amazon_cents, c, sizeof(c)),
                (v->caps & JD_CAP_AMAZON) ? " (applied)" : "",
                r->max_sell_cents > 0 ? money(d, r->max_sell_cents, e, sizeof(e)) : "off",
                (v->caps & JD_CAP_MAX_SELL) ? " (applied)" : "");
    } else {
        fprintf(out, "  SELL     no basis has a value on the %s side\n", jd_side_name(v->side));
    }

    /* FEES, COSTS, RESULT */
    if (v->payout_known) {
        fprintf(
            out, "  FEES     referral %s (%s%s%s), closing %s, %s %s%s\n",
            money(d, v->referral_cents, a, sizeof(a)), pct(v->referral_bp, b, sizeof(b)),
            v->referral_default ? " default" : " <- referralFeePercentage",
            v->referral_min_applied ? ", the minimum per unit" : "",
            money(d, v->closing_cents, c, sizeof(c)),
            r->fulfilment == JD_FBM ? "your shipping" : "FBA",
            money(d, r->fulfilment == JD_FBM ? v->fbm_shipping_cents : v->fba_cents, e, sizeof(e)),
            r->fulfilment == JD_FBM ? ""
            : v->fba_default        ? " (default: Keepa has no fbaFees)"
                                    : " <- fbaFees.pickAndPackFee");
        if (v->bound)
            fprintf(out, "           (fees unknown from the deal feed: counted as 0, an upper "
                         "bound)\n");
        fprintf(out, "  PAYOUT   %s\n", smoney(d, v->payout_cents, a, sizeof(a)));
    }
    if (v->landed_cents > 0)
        fprintf(out, "  LANDED   %s = buy %s + tax %s + prep %s + inbound %s\n",
                money(d, v->landed_cents, a, sizeof(a)), money(d, v->buy_cents, b, sizeof(b)),
                money(d, v->tax_cents, c, sizeof(c)), money(d, v->prep_cents, e, sizeof(e)),
                money(d, v->inbound_cents, link, sizeof(link)));
    if (v->priced)
        fprintf(out, "  PROFIT   %s   ROI %s   margin %s\n",
                smoney(d, v->profit_cents, a, sizeof(a)), pct(v->roi_bp, b, sizeof(b)),
                pct(v->margin_bp, c, sizeof(c)));
    fprintf(out, "  MAX COST %s (ROI alone %s, profit alone %s): the most to pay for it\n\n",
            v->max_cost_cents > 0 ? money(d, v->max_cost_cents, a, sizeof(a)) : "none",
            v->max_cost_roi_cents > 0 ? money(d, v->max_cost_roi_cents, b, sizeof(b)) : "none",
            v->max_cost_profit_cents > 0 ? money(d, v->max_cost_profit_cents, c, sizeof(c))
                                         : "none");

    /* VERDICT */
    fprintf(out, "  VERDICT  %s%s\n",
            v->deal   ? "a deal"
            : v->near ? "near a deal"
                      : "not a deal",
            v->bound ? " (upper bound)" : "");
    char line[256];
    for (unsigned k = 0; k < JD_C_COUNT; k++) {
        const struct jd_criterion *cr = &v->crit[k];
        const char *mark = cr->state == JD_OFF       ? " "
                           : (v->fails & (1u << k))  ? "x"
                           : cr->state == JD_UNKNOWN ? "?"
                                                     : "+";
        jd_format_criterion(v, k, d, line, sizeof(line));
        fprintf(out, "    [%s] %s\n", mark, line);
    }

    /* INPUTS */
    fprintf(out, "\n  INPUTS (Keepa field -> value), read %s\n",
            age(p->now_ms, in->data_ms, a, sizeof(a)));
    input_money(out, d, "stats.current[0] AMAZON", in->amazon_cents);
    input_int(out, "availabilityAmazon", in->amazon_availability, NULL);
    input_line(out, "stats.buyBoxIsAmazon", tri(in->buy_box_is_amazon));
    input_money(out, d, "Buy Box New (stats.current[18])", in->new_buy_box_cents);
    input_money(out, d, "Buy Box Used (stats.current[32])", in->used_buy_box_cents);
    input_money(out, d, "stats.current[10] NEW_FBA", in->new_lowest_fba_cents);
    input_money(out, d, "lowest live Used FBA offer", in->used_lowest_fba_cents);
    input_money(out, d, "stats.current[1] NEW", in->new_cents);
    input_money(out, d, "stats.current[2] USED", in->used_cents);
    input_money(out, d, "stats.avg90[1] / avg180 / avg365 NEW", in->new_avg90_cents);
    snprintf(line, sizeof(line), "%s / %s", money(d, in->new_avg180_cents, a, sizeof(a)),
             money(d, in->new_avg365_cents, b, sizeof(b)));
    input_line(out, "", line);
    input_money(out, d, "stats.avg90[2] / avg180 / avg365 USED", in->used_avg90_cents);
    snprintf(line, sizeof(line), "%s / %s", money(d, in->used_avg180_cents, a, sizeof(a)),
             money(d, in->used_avg365_cents, b, sizeof(b)));
    input_line(out, "", line);
    input_int(out, "stats.current[3] SALES (rank)", in->sales_rank, "unknown");
    snprintf(line, sizeof(line), "%d / %d / %d / %d", in->drops30, in->drops90, in->drops180,
             in->drops365);
    input_line(out, "stats.salesRankDrops30 / 90 / 180 / 365", line);
    input_int(out, "monthlySold", in->monthly_sold, "unknown");
    snprintf(line, sizeof(line), "%d / %d, FBA %d / FBM %d", in->offers_new, in->offers_used,
             in->offers_fba, in->offers_fbm);
    input_line(out, "COUNT_NEW / COUNT_USED, offerCountFBA/FBM", line);
    if (in->referral_bp >= 0)
        input_line(out, "referralFeePercentage", pct(in->referral_bp, a, sizeof(a)));
    else
        input_line(out, "referralFeePercentage", "unknown");
    input_money(out, d, "fbaFees.pickAndPackFee", in->fba_fee_cents);
    input_money(out, d, "variableClosingFee", in->closing_fee_cents);
    snprintf(line, sizeof(line), "hazmat %s, heat %s, adult %s", tri(in->hazmat),
             tri(in->heat_sensitive), tri(in->adult));
    input_line(out, "hazardousMaterials, isHeatSensitive, ...", line);
    snprintf(line, sizeof(line), "%d g, %d x %d x %d mm", in->package_weight_g,
             in->package_length_mm, in->package_width_mm, in->package_height_mm);
    input_line(out, "packageWeight, packageLength/Width/Height", line);
}
