/*
 * jbuf.c: growable buffer and JSON writers (see jbuf.h). Growth doubles, so appending is
 * amortised O(1); an allocation failure latches `oom` instead of aborting, because a huge
 * hostile request must fail one answer, not the server.
 */
#include "sim/jbuf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void sim_buf_init(struct sim_buf *b)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->oom = 0;
}

void sim_buf_free(struct sim_buf *b)
{
    free(b->data);
    sim_buf_init(b);
}

int sim_buf_ok(const struct sim_buf *b)
{
    return !b->oom;
}

/* Grows the storage for EXTRA more bytes and the NUL; the rare path of reserve(). */
static __attribute__((noinline)) int grow(struct sim_buf *b, size_t extra)
{
    if (b->oom)
        return -1;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra + 1)
        cap *= 2;
    char *p = realloc(b->data, cap);
    if (p == NULL) {
        b->oom = 1;
        return -1;
    }
    b->data = p;
    b->cap = cap;
    return 0;
}

/* Room for EXTRA more bytes and the NUL; -1 once a growth has failed. */
static inline int reserve(struct sim_buf *b, size_t extra)
{
    if (b->len + extra + 1 <= b->cap && !b->oom)
        return 0;
    return grow(b, extra);
}

void sim_buf_put(struct sim_buf *b, const void *p, size_t n)
{
    if (reserve(b, n) != 0)
        return;
    memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void sim_buf_puts(struct sim_buf *b, const char *s)
{
    sim_buf_put(b, s, strlen(s));
}

void sim_buf_putc(struct sim_buf *b, char c)
{
    if (reserve(b, 1) != 0)
        return;
    b->data[b->len++] = c;
    b->data[b->len] = '\0';
}

void sim_buf_printf(struct sim_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char small[256];
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(small, sizeof(small), fmt, ap);
    va_end(ap);
    if (n < 0) {
        va_end(ap2);
        return;
    }
    if ((size_t)n < sizeof(small)) {
        sim_buf_put(b, small, (size_t)n);
    } else if (reserve(b, (size_t)n) == 0) {
        vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap2);
        b->len += (size_t)n;
    }
    va_end(ap2);
}

/* "00" to "99": two digits a division. */
static const char digit_pairs[201] =
    "00010203040506070809101112131415161718192021222324252627282930"
    "31323334353637383940414243444546474849505152535455565758596061"
    "62636465666768697071727374757677787980818283848586878889909192"
    "93949596979899";

/* Writes V in decimal at P (room for 20 bytes); returns the end. No NUL. */
static char *put_int(char *p, int64_t v)
{
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    if (v < 0)
        *p++ = '-';
    int digits = 1;
    for (uint64_t x = u; x >= 10; x /= 10)
        digits++;
    char *e = p + digits;
    while (u >= 100) {
        unsigned r = (unsigned)(u % 100);
        u /= 100;
        e -= 2;
        e[0] = digit_pairs[2 * r];
        e[1] = digit_pairs[2 * r + 1];
    }
    if (u >= 10) {
        p[0] = digit_pairs[2 * u];
        p[1] = digit_pairs[2 * u + 1];
    } else {
        p[0] = (char)('0' + u);
    }
    return p + digits;
}

void sim_buf_int(struct sim_buf *b, int64_t v)
{
    if (reserve(b, 21) != 0)
        return;
    char *e = put_int(b->data + b->len, v);
    *e = '\0';
    b->len = (size_t)(e - b->data);
}

void sim_buf_ints(struct sim_buf *b, const int64_t *v, size_t n)
{
    if (n == 0 || reserve(b, 21 * n) != 0)
        return;
    char *e = b->data + b->len;
    for (size_t i = 0; i < n; i++) {
        if (i > 0)
            *e++ = ',';
        e = put_int(e, v[i]);
    }
    *e = '\0';
    b->len = (size_t)(e - b->data);
}

void sim_buf_str(struct sim_buf *b, const char *s)
{
    if (s == NULL) {
        sim_buf_puts(b, "null");
        return;
    }
    sim_buf_putc(b, '"');
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') {
            sim_buf_putc(b, '\\');
            sim_buf_putc(b, (char)*p);
        } else if (*p < 0x20) {
            sim_buf_printf(b, "\\u%04x", *p);
        } else {
            sim_buf_putc(b, (char)*p);
        }
    }
    sim_buf_putc(b, '"');
}

void sim_buf_key(struct sim_buf *b, const char *key)
{
    sim_buf_putc(b, '"');
    sim_buf_puts(b, key);
    sim_buf_puts(b, "\":");
}

void sim_buf_uncomma(struct sim_buf *b)
{
    if (!b->oom && b->len > 0 && b->data[b->len - 1] == ',')
        b->data[--b->len] = '\0';
}
