/*
 * time.c: ISO 8601 UTC text from and to epoch milliseconds. See time.h.
 *
 * Days from a civil date and back follow Howard Hinnant's algorithms ("chrono-Compatible
 * Low-Level Date Algorithms"): exact for every date, no tables, no loops.
 */
#include "view/time.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

/* Days since 1970-01-01 of Y-M-D. */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = floor_div(y, 400);
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    z += 719468;
    int64_t era = floor_div(z, 146097);
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

int vw_time_iso(int64_t ms, char *buf, size_t len)
{
    int64_t days = floor_div(ms, 86400000);
    int64_t in_day = ms - days * 86400000;
    int64_t y;
    unsigned m, d;
    civil_from_days(days, &y, &m, &d);
    return snprintf(buf, len, "%04lld-%02u-%02uT%02u:%02u:%02u.%03uZ", (long long)y, m, d,
                    (unsigned)(in_day / 3600000), (unsigned)(in_day / 60000 % 60),
                    (unsigned)(in_day / 1000 % 60), (unsigned)(in_day % 1000));
}

/* N digits at *S into *OUT, advancing *S; false unless exactly N digits are there. */
static bool digits(const char **s, int n, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < n; i++) {
        char c = (*s)[i];
        if (c < '0' || c > '9')
            return false;
        v = v * 10 + (unsigned)(c - '0');
    }
    *s += n;
    *out = v;
    return true;
}

static bool leap(int64_t y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

int vw_time_parse_iso(const char *text, int64_t *ms)
{
    static const unsigned month_days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    const char *s = text;
    unsigned y, mo, d, h = 0, mi = 0, sec = 0, milli = 0;
    if (!digits(&s, 4, &y) || *s++ != '-' || !digits(&s, 2, &mo) || *s++ != '-' ||
        !digits(&s, 2, &d))
        return -EINVAL;
    if (y < 1 || mo < 1 || mo > 12 || d < 1 ||
        d > month_days[mo - 1] + (mo == 2 && leap(y) ? 1u : 0u))
        return -EINVAL;
    int64_t offset_min = 0;
    if (*s == 'T' || *s == 't' || *s == ' ') {
        s++;
        if (!digits(&s, 2, &h) || *s++ != ':' || !digits(&s, 2, &mi))
            return -EINVAL;
        if (*s == ':') {
            s++;
            if (!digits(&s, 2, &sec))
                return -EINVAL;
            if (*s == '.' || *s == ',') {
                s++;
                int n = 0;
                for (; *s >= '0' && *s <= '9'; s++, n++)
                    if (n < 3)
                        milli = milli * 10 + (unsigned)(*s - '0');
                if (n == 0 || n > 9)
                    return -EINVAL;
                for (; n < 3; n++)
                    milli *= 10;
            }
        }
        if (h > 23 || mi > 59 || sec > 59)
            return -EINVAL;
        if (*s == 'Z' || *s == 'z') {
            s++;
        } else if (*s == '+' || *s == '-') {
            int sign = *s == '-' ? -1 : 1;
            s++;
            unsigned oh, om = 0;
            if (!digits(&s, 2, &oh))
                return -EINVAL;
            if (*s == ':')
                s++;
            if (*s != '\0' && !digits(&s, 2, &om))
                return -EINVAL;
            if (oh > 18 || om > 59)
                return -EINVAL;
            offset_min = sign * (int64_t)(oh * 60 + om);
        }
    }
    if (*s != '\0')
        return -EINVAL;
    int64_t days = days_from_civil(y, mo, d);
    int64_t t = ((days * 24 + h) * 60 + mi - offset_min) * 60 + sec;
    *ms = t * 1000 + milli;
    return 0;
}
