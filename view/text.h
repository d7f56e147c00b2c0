/*
 * text.h: UTF-8 text as the view's outputs need it: made valid for JSON and CSV, measured and
 * cut in terminal columns for the table.
 *
 * Titles come from Keepa and are cut by the store at a byte limit (never inside a sequence),
 * but nothing guarantees a title is valid UTF-8 or free of control characters. JSON requires
 * valid UTF-8 (yajl refuses anything else), a spreadsheet shows garbage for it, and a terminal
 * can be driven by escape sequences in it. So every text cell goes through vw_utf8_clean
 * (invalid bytes become U+FFFD) and the table also turns control characters into spaces.
 *
 * Column widths follow the usual wcwidth rules for the ranges that occur in product titles
 * (East Asian wide and fullwidth forms, emoji: 2 columns; combining marks and zero-width
 * characters: 0) without depending on the process's locale.
 */
#ifndef KD_VIEW_TEXT_H
#define KD_VIEW_TEXT_H

#include <stdbool.h>
#include <stddef.h>

/*
 * Copies S into OUT (LEN bytes, always terminated when LEN > 0) with every invalid UTF-8
 * byte replaced by U+FFFD, and, when CONTROLS_TO_SPACE, every C0/C1 control character (and
 * DEL) by a space. Stops before a character that would not fit whole. Returns the bytes
 * written (without the NUL). LEN >= 3 x strlen(S) + 1 always holds all of S.
 */
size_t vw_utf8_clean(const char *s, bool controls_to_space, char *out, size_t len);

/* The terminal columns valid UTF-8 text S takes. */
int vw_text_width(const char *s);

/*
 * Copies valid UTF-8 text S into OUT (LEN bytes) cut to at most COLUMNS terminal columns;
 * a cut text ends with "…" (counted in COLUMNS). Returns the columns taken.
 */
int vw_text_fit(const char *s, int columns, char *out, size_t len);

#endif
