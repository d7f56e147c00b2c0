/*
 * time.h: epoch milliseconds as ISO 8601 UTC text and back, for the view's outputs and its
 * since filter.
 *
 * The outputs write every time twice, as epoch milliseconds (exact, for programs) and as
 * "2025-05-01T12:00:00.000Z" (for people and for tools that read ISO 8601). Both directions
 * are pure arithmetic on the proleptic Gregorian calendar: no time zone database, no locale,
 * no libc state, so a test can check them on any machine.
 */
#ifndef KD_VIEW_TIME_H
#define KD_VIEW_TIME_H

#include <stddef.h>
#include <stdint.h>

/* Writes MS (epoch milliseconds) as "YYYY-MM-DDTHH:MM:SS.mmmZ" into BUF (LEN >= 25 holds it,
 * always terminated when LEN > 0). Returns what snprintf returns. */
int vw_time_iso(int64_t ms, char *buf, size_t len);

/*
 * Parses an ISO 8601 date or date-time: "2025-05-01", "2025-05-01T12:00", "2025-05-01 12:00:05",
 * "2025-05-01T12:00:05.250Z", "2025-05-01T14:00+02:00" (T or a space; seconds and fractions
 * optional; Z, +HH:MM, +HHMM or +HH; no zone is UTC). Years 0001 to 9999. Returns 0 with *MS,
 * or -EINVAL for anything else (an impossible date such as 2025-02-30 included).
 */
int vw_time_parse_iso(const char *text, int64_t *ms);

#endif
