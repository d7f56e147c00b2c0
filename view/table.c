/*
 * table.c: the table for people. See table.h.
 *
 * Every cell is formatted into a small buffer by its column's function, then measured in
 * terminal columns (a currency symbol is several bytes but one column) and padded. A number
 * too wide for its column is shortened (cents dropped, then k/M), never cut.
 */
#include "view/table.h"

#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include "judge/judge.h"
#include "judge/market.h"
#include "view/filter.h"
#include "view/text.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#define SGR_RESET  "\033[0m"
#define SGR_BOLD   "\033[1m"
#define SGR_DIM    "\033[2m"
#define SGR_RED    "\033[31m"
#define SGR_GREEN  "\033[32m"
#define SGR_YELLOW "\033[33m"

enum tone { TONE_PLAIN = 0, TONE_GOOD, TONE_NEAR, TONE_BAD, TONE_WARN };

struct cell_ctx {
    const struct st_record *r;
    const struct jd_verdict *v; /* the figures shown: at the bought cost, else the stored ones */
    bool at_cost;               /* v is at the seller's bought cost (vw_at_cost) */
    int64_t now_ms;
    int width; /* the column's width */
};

typedef enum tone (*cell_fn)(const struct cell_ctx *c, char *buf, size_t len);

struct column {
    const char *header;
    int width; /* the title's minimum when FLEX */
    int priority;
    bool right;
    bool flex;       /* takes the width left over */
    bool mixed_only; /* only when the view mixes marketplaces */
    cell_fn cell;
};

/* ---- number shortening ---- */

/* N (>= 0) in at most WIDTH characters: as is when it fits, else in the largest unit it
 * reaches (k, M, G) with one decimal below ten: 1234567 -> 1.2M, 98765432 -> 98M. */
static void compact(int64_t n, int width, char *buf, size_t len)
{
    snprintf(buf, len, "%" PRId64, n);
    if ((int)strlen(buf) <= width)
        return;
    static const struct {
        int64_t unit;
        char suffix;
    } units[] = {{1000, 'k'}, {1000000, 'M'}, {1000000000, 'G'}};
    size_t i = 0;
    while (i + 1 < ARRAY_LEN(units) && n >= units[i + 1].unit)
        i++;
    for (; i < ARRAY_LEN(units); i++) {
        int64_t u = units[i].unit;
        if (n < 10 * u)
            snprintf(buf, len, "%" PRId64 ".%" PRId64 "%c", n / u, n % u * 10 / u, units[i].suffix);
        else
            snprintf(buf, len, "%" PRId64 "%c", n / u, units[i].suffix);
        if ((int)strlen(buf) <= width)
            return;
    }
}

/* CENTS in DOMAIN's currency in at most WIDTH columns: $14.99, $1499, $15k. */
static void money_fit(unsigned domain, int64_t cents, int width, char *buf, size_t len)
{
    jd_money(domain, cents, buf, len);
    if (vw_text_width(buf) <= width)
        return;
    const struct jd_market *m = jd_market(domain);
    int64_t scale = m != NULL && m->decimals == 0 ? 1 : 100;
    int64_t whole = (cents < 0 ? cents - scale / 2 : cents + scale / 2) / scale;
    const char *sym = m != NULL ? m->symbol : "";
    const char *sign = whole < 0 ? "-" : "";
    int64_t a = whole < 0 ? -whole : whole;
    snprintf(buf, len, "%s%s%" PRId64, sign, sym, a);
    if (vw_text_width(buf) <= width)
        return;
    char n[24];
    int room = width - vw_text_width(sym) - (whole < 0);
    compact(a, room > 1 ? room : 1, n, sizeof(n));
    snprintf(buf, len, "%s%s%s", sign, sym, n);
}

/* ---- cells ---- */

static enum tone row_tone(const struct st_record *r)
{
    if (r->mark != ST_MARK_NONE)
        return TONE_PLAIN;
    if (r->state == ST_STATE_DEAL)
        return TONE_GOOD;
    return r->v.near ? TONE_NEAR : TONE_PLAIN;
}

static enum tone cell_mkt(const struct cell_ctx *c, char *buf, size_t len)
{
    const struct jd_market *m = jd_market(c->r->domain);
    snprintf(buf, len, "%s", m != NULL ? m->tld : "?");
    return TONE_PLAIN;
}

static enum tone cell_standing(const struct cell_ctx *c, char *buf, size_t len)
{
    const struct st_record *r = c->r;
    const char *s = r->mark == ST_MARK_BOUGHT      ? "B"
                    : r->mark == ST_MARK_IGNORED   ? "I"
                    : r->state == ST_STATE_DEAL    ? "D"
                    : r->v.near                    ? "N"
                    : r->state == ST_STATE_FAILING ? "F"
                                                   : "R";
    snprintf(buf, len, "%s", s);
    return row_tone(r);
}

static enum tone cell_asin(const struct cell_ctx *c, char *buf, size_t len)
{
    snprintf(buf, len, "%s", c->r->asin);
    return TONE_PLAIN;
}

static enum tone cell_condition(const struct cell_ctx *c, char *buf, size_t len)
{
    unsigned cond = c->r->in.buy_condition;
    snprintf(buf, len, "%s", cond > 0 ? jd_condition_short(cond) : "-");
    return TONE_PLAIN;
}

static enum tone cell_amazon(const struct cell_ctx *c, char *buf, size_t len)
{
    bool amz = vw_amazon_on_listing(c->r);
    snprintf(buf, len, "%s", amz ? "AMZ" : "");
    return amz ? TONE_WARN : TONE_PLAIN;
}

static enum tone money_cell(const struct cell_ctx *c, bool known, int64_t cents, char *buf,
                            size_t len)
{
    if (!known) {
        snprintf(buf, len, "-");
        return TONE_PLAIN;
    }
    money_fit(c->r->domain, cents, c->width, buf, len);
    return TONE_PLAIN;
}

static enum tone cell_buy(const struct cell_ctx *c, char *buf, size_t len)
{
    return money_cell(c, c->v->buy_cents > 0, c->v->buy_cents, buf, len);
}

static enum tone cell_sell(const struct cell_ctx *c, char *buf, size_t len)
{
    return money_cell(c, c->v->sell_cents > 0, c->v->sell_cents, buf, len);
}

static enum tone cell_profit(const struct cell_ctx *c, char *buf, size_t len)
{
    money_cell(c, c->v->priced, c->v->profit_cents, buf, len);
    if (!c->v->priced)
        return TONE_PLAIN;
    return c->v->profit_cents < 0 ? TONE_BAD : row_tone(c->r);
}

static enum tone cell_roi(const struct cell_ctx *c, char *buf, size_t len)
{
    const struct st_record *r = c->r;
    if (!c->v->priced) {
        snprintf(buf, len, "-");
        return TONE_PLAIN;
    }
    int64_t bp = c->v->roi_bp;
    int64_t a = bp < 0 ? -bp : bp;
    int64_t tenths = (a + 5) / 10; /* percent x 10, rounded */
    snprintf(buf, len, "%s%" PRId64 ".%" PRId64, bp < 0 ? "-" : "", tenths / 10, tenths % 10);
    if ((int)strlen(buf) > c->width) {
        char n[24];
        compact((a + 50) / 100, c->width - (bp < 0), n, sizeof(n));
        snprintf(buf, len, "%s%s", bp < 0 ? "-" : "", n);
    }
    return bp < 0 ? TONE_BAD : row_tone(r);
}

static enum tone cell_max_cost(const struct cell_ctx *c, char *buf, size_t len)
{
    return money_cell(c, c->v->max_cost_cents > 0, c->v->max_cost_cents, buf, len);
}

static enum tone count_cell(const struct cell_ctx *c, int64_t n, char *buf, size_t len)
{
    if (n < 0)
        snprintf(buf, len, "-");
    else
        compact(n, c->width, buf, len);
    return TONE_PLAIN;
}

static enum tone cell_rank(const struct cell_ctx *c, char *buf, size_t len)
{
    return count_cell(c, c->r->in.sales_rank > 0 ? c->r->in.sales_rank : -1, buf, len);
}

static enum tone cell_drops30(const struct cell_ctx *c, char *buf, size_t len)
{
    return count_cell(c, c->r->in.drops30, buf, len);
}

static enum tone cell_sold(const struct cell_ctx *c, char *buf, size_t len)
{
    return count_cell(c, c->r->in.monthly_sold, buf, len);
}

static enum tone cell_offers(const struct cell_ctx *c, char *buf, size_t len)
{
    const struct jd_inputs *in = &c->r->in;
    if (in->offers_fba >= 0 && in->offers_fbm >= 0) {
        snprintf(buf, len, "%" PRId32 "/%" PRId32, in->offers_fba, in->offers_fbm);
        if ((int)strlen(buf) <= c->width)
            return TONE_PLAIN;
    }
    return count_cell(c, vw_competing_offers(c->r), buf, len);
}

static enum tone cell_age(const struct cell_ctx *c, char *buf, size_t len)
{
    if (c->at_cost || c->r->in.buy_source == JD_BUY_OWN_COST) {
        snprintf(buf, len, "own"); /* the seller's own cost: no offer to age */
        return TONE_PLAIN;
    }
    int64_t seen = c->r->in.buy_seen_ms;
    if (seen <= 0 || c->now_ms < seen) {
        snprintf(buf, len, seen > 0 ? "0m" : "-");
        return TONE_PLAIN;
    }
    int64_t min = (c->now_ms - seen) / 60000;
    if (min < 60)
        snprintf(buf, len, "%" PRId64 "m", min);
    else if (min < 48 * 60)
        snprintf(buf, len, "%" PRId64 "h", min / 60);
    else if (min < 100 * 1440)
        snprintf(buf, len, "%" PRId64 "d", min / 1440);
    else
        snprintf(buf, len, "%" PRId64 "w", min / (7 * 1440));
    if ((int)strlen(buf) > c->width)
        snprintf(buf, len, "old");
    return TONE_PLAIN;
}

static enum tone cell_category(const struct cell_ctx *c, char *buf, size_t len)
{
    const struct st_record *r = c->r;
    const char *name = r->category_name[0] != '\0' ? r->category_name
                       : r->in.root_category > 0 ? jd_category_name(r->domain, r->in.root_category)
                                                 : NULL;
    if (name != NULL)
        snprintf(buf, len, "%s", name);
    else if (r->in.root_category > 0)
        snprintf(buf, len, "%" PRId64, r->in.root_category);
    else
        snprintf(buf, len, "-");
    return TONE_PLAIN;
}

static enum tone cell_flags(const struct cell_ctx *c, char *buf, size_t len)
{
    const struct st_record *r = c->r;
    snprintf(buf, len, "%s%s%s%s", r->in.hazmat == 1 ? "H" : "",
             r->in.heat_sensitive == 1 ? "T" : "", r->in.adult == 1 ? "A" : "",
             r->v.oversize ? "O" : "");
    return buf[0] != '\0' ? TONE_WARN : TONE_PLAIN;
}

static enum tone cell_link(const struct cell_ctx *c, char *buf, size_t len)
{
    jd_link_amazon(c->r->domain, c->r->asin, buf, len);
    return TONE_PLAIN;
}

static enum tone cell_title(const struct cell_ctx *c, char *buf, size_t len)
{
    snprintf(buf, len, "%s", c->r->title);
    return TONE_PLAIN;
}

/* The columns in display order. */
static const struct column columns[] = {
    {"MKT", 5, 2, false, false, true, cell_mkt},
    {"S", 1, 2, false, false, false, cell_standing},
    {"ASIN", 10, 0, false, false, false, cell_asin},
    {"CND", 3, 1, false, false, false, cell_condition},
    {"AMZ", 3, 1, false, false, false, cell_amazon},
    {"BUY", 8, 0, true, false, false, cell_buy},
    {"SELL", 8, 5, true, false, false, cell_sell},
    {"PROFIT", 8, 0, true, false, false, cell_profit},
    {"ROI%", 5, 0, true, false, false, cell_roi},
    {"MAXCOST", 8, 1, true, false, false, cell_max_cost},
    {"RANK", 6, 1, true, false, false, cell_rank},
    {"D30", 3, 3, true, false, false, cell_drops30},
    {"SOLD", 4, 3, true, false, false, cell_sold},
    {"FBA/M", 5, 2, true, false, false, cell_offers},
    {"AGE", 3, 3, true, false, false, cell_age},
    {"FLAG", 4, 5, false, false, false, cell_flags},
    {"CATEGORY", 16, 6, false, false, false, cell_category},
    {"LINK", 40, 7, false, false, false, cell_link},
    {"TITLE", 20, 4, false, true, false, cell_title},
};
#define N_COLUMNS ARRAY_LEN(columns)

/* Chooses the columns for WIDTH: sets SHOW[i] and WIDTHS[i]. */
static void layout(int width, bool mixed, bool show[N_COLUMNS], int widths[N_COLUMNS])
{
    int used = 0;
    int max_priority = 0;
    for (size_t i = 0; i < N_COLUMNS; i++) {
        show[i] = false;
        widths[i] = columns[i].width;
        if (columns[i].priority > max_priority)
            max_priority = columns[i].priority;
    }
    for (int p = 0; p <= max_priority; p++)
        for (size_t i = 0; i < N_COLUMNS; i++) {
            if (columns[i].priority != p || (columns[i].mixed_only && !mixed))
                continue;
            int need = columns[i].width + (used > 0 ? 1 : 0);
            if (p == 0 || used + need <= width) {
                show[i] = true;
                used += need;
            }
        }
    for (size_t i = 0; i < N_COLUMNS; i++)
        if (show[i] && columns[i].flex)
            widths[i] += width - used > 0 ? width - used : 0;
}

static const char *tone_sgr(enum tone t)
{
    switch (t) {
    case TONE_GOOD:
        return SGR_GREEN;
    case TONE_NEAR:
        return SGR_YELLOW;
    case TONE_BAD:
    case TONE_WARN:
        return SGR_RED;
    default:
        return NULL;
    }
}

/*
 * A line being written. Blanks (separators, padding, blanks a cell ends with) are held back
 * and written only when something visible follows, so no line ends with a blank.
 */
struct line {
    FILE *out;
    int held; /* blanks not written yet */
};

static void hold_blanks(struct line *l, int n)
{
    l->held += n > 0 ? n : 0;
}

static void put_visible(struct line *l, const char *text, const char *sgr)
{
    size_t n = strlen(text);
    int trailing = 0;
    while (n > 0 && text[n - 1] == ' ') {
        n--;
        trailing++;
    }
    if (n > 0) {
        for (; l->held > 0; l->held--)
            fputc(' ', l->out);
        if (sgr != NULL)
            fputs(sgr, l->out);
        fwrite(text, 1, n, l->out);
        if (sgr != NULL)
            fputs(SGR_RESET, l->out);
    }
    l->held += trailing;
}

/* Writes TEXT padded to W columns; a terminal hyperlink (OSC 8) to LINK when not NULL. */
static void put_cell(struct line *l, const char *text, int w, bool right, const char *sgr,
                     const char *link)
{
    char fitted[1024];
    int pad = w - vw_text_fit(text, w, fitted, sizeof(fitted));
    if (right)
        hold_blanks(l, pad);
    if (link != NULL && fitted[0] != '\0') {
        for (; l->held > 0; l->held--)
            fputc(' ', l->out);
        fprintf(l->out, "\033]8;;%s\033\\", link);
        put_visible(l, fitted, sgr);
        fputs("\033]8;;\033\\", l->out);
    } else {
        put_visible(l, fitted, sgr);
    }
    if (!right)
        hold_blanks(l, pad);
}

int vw_table_write(FILE *out, const struct st_record *recs, const size_t *idx, size_t n, int width,
                   bool colour, unsigned domain, int64_t now_ms, const struct vw_out *o)
{
    bool show[N_COLUMNS];
    int widths[N_COLUMNS];
    layout(width, domain == 0, show, widths);

    struct line l = {out, 0};
    bool first = true;
    for (size_t i = 0; i < N_COLUMNS; i++) {
        if (!show[i])
            continue;
        hold_blanks(&l, first ? 0 : 1);
        first = false;
        put_cell(&l, columns[i].header, widths[i], columns[i].right, colour ? SGR_BOLD : NULL,
                 NULL);
    }
    fputc('\n', out);

    for (size_t k = 0; k < n; k++) {
        const struct st_record *r = &recs[idx != NULL ? idx[k] : k];
        bool dim = colour && (r->mark != ST_MARK_NONE || (r->state != ST_STATE_DEAL && !r->v.near));
        struct jd_verdict own;
        bool at_cost = vw_at_cost(r, vw_out_rules(o, r->domain), &own);
        char url[96];
        jd_link_amazon(r->domain, r->asin, url, sizeof(url));
        l.held = 0;
        first = true;
        for (size_t i = 0; i < N_COLUMNS; i++) {
            if (!show[i])
                continue;
            hold_blanks(&l, first ? 0 : 1);
            first = false;
            char raw[ST_TITLE_MAX + 64], clean[3 * sizeof(raw)];
            struct cell_ctx c = {r, at_cost ? &own : &r->v, at_cost, now_ms, widths[i]};
            enum tone t = columns[i].cell(&c, raw, sizeof(raw));
            vw_utf8_clean(raw, true, clean, sizeof(clean));
            const char *sgr = colour ? (dim ? SGR_DIM : tone_sgr(t)) : NULL;
            /* On a terminal the ASIN is a link to the product page (OSC 8). */
            put_cell(&l, clean, widths[i], columns[i].right, sgr,
                     colour && columns[i].cell == cell_asin ? url : NULL);
        }
        fputc('\n', out);
    }
    return ferror(out) ? -EIO : 0;
}
