/*
 * clock.h: the two clocks kdeals uses.
 *
 * Monotonic nanoseconds (CLOCK_MONOTONIC) for every interval, deadline and token-bucket
 * computation: it never jumps with NTP or an operator's `date`. Wall-clock milliseconds
 * (CLOCK_REALTIME) only where a value leaves the process for humans or Keepa (timestamps in
 * records, status files). Keepa minutes convert to and from epoch milliseconds here too.
 */
#ifndef KD_CLOCK_H
#define KD_CLOCK_H

#include <stdint.h>

#define KD_NS_PER_MS  1000000LL
#define KD_NS_PER_SEC 1000000000LL
/* Keepa time = whole minutes since 2011-01-01 00:00 UTC (docs/keepa-api.md §6). */
#define KD_KEEPA_EPOCH_MINUTE 21564000LL

/* Monotonic time in nanoseconds. Never fails. */
int64_t kd_mono_ns(void);

/* Wall-clock time in epoch milliseconds. Never fails. */
int64_t kd_wall_ms(void);

/* Converts a Keepa minute to epoch milliseconds and back (the inverse rounds down). */
int64_t kd_keepa_min_to_ms(int64_t keepa_min);
int64_t kd_ms_to_keepa_min(int64_t epoch_ms);

#endif
