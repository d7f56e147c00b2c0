/*
 * gzseg.h: gzip bodies spliced from a pre-compressed middle.
 *
 * A /deal page the feed cache serves again has the same "deals" object every time; only the
 * envelope before it (timestamp, tokensLeft, ...) and the dealsCached flag after it change.
 * The middle is compressed once into a raw-deflate segment that ends byte-aligned and is not
 * final (a sync flush), so it can stand between any other blocks of a deflate stream: its
 * back-references reach only inside itself. A body is then a gzip header, the head as stored
 * blocks, the segment, the tail as a final stored block, and the CRC-32 combined from the
 * parts (crc32_combine). Whoever inflates it gets exactly head + middle + tail; only the
 * compressed bytes differ from a gzip of the whole body in one go.
 */
#ifndef SIM_GZSEG_H
#define SIM_GZSEG_H

#include <stddef.h>
#include <stdint.h>

struct sim_zseg {
    unsigned char *data; /* raw deflate, non-final blocks, ends byte-aligned */
    size_t len;
    size_t raw_len; /* bytes it inflates to */
    uint32_t crc;   /* CRC-32 of those bytes */
};

/*
 * Compresses IN (LEN bytes) at zlib LEVEL into OUT (malloc'd; free with sim_zseg_free).
 * Returns 0, or -ENOMEM (OUT is then empty).
 */
int sim_zseg_deflate(const void *in, size_t len, int level, struct sim_zseg *out);

/* Copies SRC into DST (malloc'd). Returns 0, or -ENOMEM (DST is then empty). */
int sim_zseg_copy(struct sim_zseg *dst, const struct sim_zseg *src);

/* Frees SEG's bytes; SEG is empty afterwards. NULL or empty is a no-op. */
void sim_zseg_free(struct sim_zseg *seg);

/*
 * A gzip member that inflates to HEAD + SEG's bytes + TAIL, malloc'd, its size in *OUT_LEN;
 * NULL when out of memory.
 */
char *sim_zseg_gzip(const char *head, size_t head_len, const struct sim_zseg *seg, const char *tail,
                    size_t tail_len, size_t *out_len);

#endif
