/*
 * export.h: records as JSON and CSV for programs, from one list of fields.
 *
 * Every field of a record (its head, every judgement input, the stored verdict, the state,
 * the lifecycle times and the mark) and the figures derived from them (links, category name,
 * condition name, amazon_on_listing, competing offers, expected monthly profit, the reasons
 * in words) are described once, in export.c's VW_FIELDS table: a name that carries its unit,
 * a type, the expression that reads it and where the value comes from. The JSON writer, the
 * CSV writer and the field list of docs/view.md all walk that table, so the two formats have
 * the same fields in the same order and the documentation cannot drift from them.
 *
 * Conventions (one for every field):
 *   - Numbers are integers in the unit their name ends with: _cents (the smallest unit of the
 *     marketplace's currency, as Keepa sends it: cents, pence, yen; `currency` names it), _bp
 *     (basis points: 2500 is 25 %), _ms (epoch milliseconds), _min (Keepa minutes), _g, _mm.
 *     Names without a unit are counts, ranks, ids or codes. No floating point anywhere, so a
 *     figure reads back exactly in any language.
 *   - A time is written twice: NAME_ms (epoch ms) and NAME (ISO 8601 UTC with milliseconds).
 *   - Unknown or not applicable is JSON null and an empty CSV cell, never -1: a program cannot
 *     mistake "no price" for a price. (The store keeps Keepa's -1; the outputs translate.)
 *   - Enumerations are written as words ("used", "buy_box", "deal"), sets as lists of words
 *     (JSON arrays; CSV cells joined with ';').
 *   - reasons: each criterion of the judgement re-judged from the stored inputs under the
 *     caller's rules, with state, value, threshold, margin (in `unit`) and the sentence a
 *     person reads; CSV joins the sentences with "; ".
 *
 * CSV is RFC 4180 (CRLF, a header row, cells with a comma, quote, CR or LF quoted, quotes
 * doubled). A text cell a spreadsheet would run as a formula (starting with = + - @, a tab or
 * a CR) is written as text: a leading ' is added and the cell is quoted, as OWASP advises for
 * CSV injection. Only text cells are touched: numbers, negative ones included, stay numbers.
 *
 * All text is made valid UTF-8 first (view/text.h). Writers return 0, -EIO when the stream
 * failed, -ENOMEM when yajl could not allocate.
 */
#ifndef KD_VIEW_EXPORT_H
#define KD_VIEW_EXPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <yajl/yajl_gen.h>

#include "judge/judge.h"
#include "store/codec.h"

#define VW_DOMAINS 16 /* Keepa domain ids are below this */

/* What the writers need besides the records. */
struct vw_out {
    const struct jd_rules *rules; /* re-judges each record for `reasons`; NULL: reasons null */
    bool json_lines;              /* vw_json_write: one object per line, no enclosing array */
    /* A view over several marketplaces (several instances' stores): the rules of each
     * marketplace's instance by Keepa domain id; a NULL entry falls back to RULES. */
    const struct jd_rules *rules_by_domain[VW_DOMAINS];
};

/* The rules O gives for a record of DOMAIN (see struct vw_out); NULL when none. */
const struct jd_rules *vw_out_rules(const struct vw_out *o, unsigned domain);

/* The type of a field as the outputs write it. */
enum vw_ftype {
    VW_T_STRING,  /* JSON string or null */
    VW_T_INTEGER, /* JSON integer or null */
    VW_T_BOOLEAN, /* JSON true/false or null */
    VW_T_TIME,    /* two fields: NAME_ms (integer) and NAME (ISO 8601 string), or nulls */
    VW_T_LIST,    /* JSON array of strings; CSV words joined with ';' */
    VW_T_REASONS  /* JSON array of objects; CSV sentences joined with "; " */
};

/* One field of the table, for docs and tests. */
struct vw_field_info {
    const char *name; /* as written; a TIME field's name ends with _ms */
    enum vw_ftype type;
    const char *source; /* where the value comes from (Keepa field, store, or formula) */
};

/* The fields in output order: I < vw_field_count(), else NULL. */
size_t vw_field_count(void);
const struct vw_field_info *vw_field(size_t i);

/* The word for a type: "string", "integer", "boolean", "time", "list", "reasons". */
const char *vw_ftype_name(enum vw_ftype t);

/*
 * Writes record R as one JSON object into generator G (for the web API and `kdeals show`,
 * which embed it in their own documents). G should validate UTF-8 or not: the text is
 * cleaned first. Returns 0, or -EINVAL when G refused a token (G in a wrong state).
 */
int vw_json_record(yajl_gen g, const struct st_record *r, const struct vw_out *o);

/*
 * Writes the history entries H[0..N) (st_history_list: newest first) as one JSON array into G,
 * each entry an object in the conventions above: at_ms and at, revision, event and state as
 * words, buy_total_cents, landed_cents, sell_cents, profit_cents, roi_bp, max_cost_cents (null
 * when unknown) and fails (the criteria that failed then, as words). Returns 0 or -EINVAL.
 */
int vw_json_history(yajl_gen g, const struct st_history *h, size_t n);

/*
 * Writes records RECS[IDX[0..N)] (IDX NULL: RECS[0..N) in order) to OUT as a JSON array of
 * objects followed by a newline, or as JSON lines when O->json_lines. Returns 0, -EIO, -ENOMEM.
 */
int vw_json_write(FILE *out, const struct st_record *recs, const size_t *idx, size_t n,
                  const struct vw_out *o);

/* Writes the same records to OUT as CSV: a header row of the field names, then one row per
 * record. Returns 0 or -EIO. */
int vw_csv_write(FILE *out, const struct st_record *recs, const size_t *idx, size_t n,
                 const struct vw_out *o);

/*
 * Writes TEXT as one CSV cell to OUT: cleaned to valid UTF-8, neutralised when a spreadsheet
 * would run it as a formula, quoted when needed. Exposed for the callers' own CSV files (a
 * history export) and for tests.
 */
void vw_csv_text(FILE *out, const char *text);

#endif
