/*
 * jbuf.h: a growable byte buffer with the few JSON writers the simulator needs.
 *
 * Every body kdeals-sim sends is built here, compactly and in Keepa's key order. A buffer
 * that fails to grow latches `oom` and ignores later writes, so writers never check each
 * call: the caller checks sim_buf_ok() once when the body is complete.
 */
#ifndef SIM_JBUF_H
#define SIM_JBUF_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

struct sim_buf {
    char *data; /* NUL-terminated while !oom */
    size_t len;
    size_t cap;
    int oom;
};

/* Initialises an empty buffer (no allocation yet). */
void sim_buf_init(struct sim_buf *b);

/* Frees the storage; the buffer is empty and usable again. */
void sim_buf_free(struct sim_buf *b);

/* Returns 1 when no write has failed, 0 after an allocation failure. */
int sim_buf_ok(const struct sim_buf *b);

/* Appends N raw bytes / a C string / one byte. */
void sim_buf_put(struct sim_buf *b, const void *p, size_t n);
void sim_buf_puts(struct sim_buf *b, const char *s);
void sim_buf_putc(struct sim_buf *b, char c);

/* Appends printf-formatted text. */
void sim_buf_printf(struct sim_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Appends a decimal integer. */
void sim_buf_int(struct sim_buf *b, int64_t v);

/* Appends the N integers of V in decimal, separated by commas (nothing when N is 0): the same
 * bytes as sim_buf_int() and sim_buf_putc(',') in turn, with one check for room. */
void sim_buf_ints(struct sim_buf *b, const int64_t *v, size_t n);

/* Appends S as a JSON string literal (quotes and escapes included); NULL writes null. */
void sim_buf_str(struct sim_buf *b, const char *s);

/* Appends `"KEY":` (KEY must not need escaping). */
void sim_buf_key(struct sim_buf *b, const char *key);

/* Removes a trailing ',' if the buffer ends with one (closing generated lists). */
void sim_buf_uncomma(struct sim_buf *b);

#endif
