/*
 * clock.c: monotonic and wall clocks, Keepa time conversion. See clock.h.
 */
#include "base/clock.h"

#include <time.h>

int64_t kd_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * KD_NS_PER_SEC + ts.tv_nsec;
}

int64_t kd_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / KD_NS_PER_MS;
}

int64_t kd_keepa_min_to_ms(int64_t keepa_min)
{
    return (keepa_min + KD_KEEPA_EPOCH_MINUTE) * 60000;
}

int64_t kd_ms_to_keepa_min(int64_t epoch_ms)
{
    int64_t min = epoch_ms / 60000;
    if (epoch_ms < 0 && epoch_ms % 60000 != 0)
        min--;
    return min - KD_KEEPA_EPOCH_MINUTE;
}
