/*
 * table.h: records as a table for people, sized to the terminal.
 *
 * The columns answer "should I buy this, now" without opening Keepa: the buy's condition,
 * whether Amazon is on the listing, what it costs, what it makes, the highest cost that still
 * meets the rules, how fast it sells and against how many offers, how old the offer is.
 * Money is written in each record's own currency ("$14.99", "€3.20", "¥1500").
 *
 * Layout. Each column has a priority; columns are taken in priority order while they fit the
 * width the caller gives (the terminal's), and shown in their fixed order. At 80 columns the
 * seller's core set fits (S ASIN CND AMZ BUY PROFIT ROI% MAXCOST RANK D30 SOLD FBA/M AGE);
 * wider terminals add the title (which takes what is left), then the sell price and the
 * flags (H hazmat, T heat-sensitive, A adult, O oversize), the category, and the product
 * page's link. A view over several marketplaces (domain 0) adds the marketplace column. No
 * line is longer than the width unless the width is below the smallest layout (34 columns).
 *
 * Colour (ANSI) only when the caller asks: it decides from isatty() and NO_COLOR. With colour
 * (a terminal) the ASIN is also a hyperlink to the product page (OSC 8, which terminals that
 * do not know it show as plain text). Without colour the output is plain text, one line per
 * record, no trailing spaces.
 *
 * S is the record's standing: D deal, N near, F failing, R rejected; B bought and I ignored
 * when marked. AGE is the buy offer's age (when it was seen), "own" for the seller's own cost
 * (a list's cost, or what they bought it at); "-" is unknown throughout. A record marked bought
 * with a cost shows that cost as BUY and PROFIT, ROI% and MAXCOST at that cost (vw_at_cost).
 */
#ifndef KD_VIEW_TABLE_H
#define KD_VIEW_TABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "store/codec.h"
#include "view/export.h"

#define VW_TABLE_MIN_WIDTH 34

/*
 * Writes a header line and one line per record RECS[IDX[0..N)] (IDX NULL: RECS[0..N)) to
 * OUT, fitted to WIDTH columns, with ANSI colour when COLOUR. DOMAIN is the marketplace of
 * the view, 0 when it mixes several (a marketplace column is added). NOW_MS (epoch ms) dates
 * the offers' ages. O's rules (vw_out_rules; O may be NULL: estimates only) give the figures at
 * a bought cost. Returns 0 or -EIO when OUT failed.
 */
int vw_table_write(FILE *out, const struct st_record *recs, const size_t *idx, size_t n, int width,
                   bool colour, unsigned domain, int64_t now_ms, const struct vw_out *o);

#endif
