/*
 * gzseg.c: gzip bodies spliced from a pre-compressed middle. See gzseg.h.
 *
 * The head and the tail are a few hundred bytes, so they go in stored blocks (no zlib state
 * to set up per body); a stored block starts at a byte boundary, which the segment's sync
 * flush guarantees. The segment is produced by zlib's raw deflate with Z_SYNC_FLUSH and
 * never Z_FINISH, so none of its blocks is final.
 */
#include "sim/gzseg.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#define STORED_MAX 65535u

int sim_zseg_deflate(const void *in, size_t len, int level, struct sim_zseg *out)
{
    memset(out, 0, sizeof(*out));
    z_stream zs;
    memset(&zs, 0, sizeof(zs));
    if (deflateInit2(&zs, level, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return -ENOMEM;
    uLong bound = deflateBound(&zs, (uLong)len) + 16;
    unsigned char *buf = malloc(bound);
    if (buf == NULL) {
        deflateEnd(&zs);
        return -ENOMEM;
    }
    zs.next_in = (Bytef *)(uintptr_t)in;
    zs.avail_in = (uInt)len;
    zs.next_out = buf;
    zs.avail_out = (uInt)bound;
    int rc = deflate(&zs, Z_SYNC_FLUSH);
    size_t n = zs.total_out;
    uInt left = zs.avail_in;
    deflateEnd(&zs);
    if (rc != Z_OK || left != 0) {
        free(buf);
        return -ENOMEM;
    }
    out->data = buf;
    out->len = n;
    out->raw_len = len;
    out->crc = (uint32_t)crc32(0L, in, (uInt)len);
    return 0;
}

int sim_zseg_copy(struct sim_zseg *dst, const struct sim_zseg *src)
{
    *dst = *src;
    dst->data = malloc(src->len ? src->len : 1);
    if (dst->data == NULL) {
        memset(dst, 0, sizeof(*dst));
        return -ENOMEM;
    }
    memcpy(dst->data, src->data, src->len);
    return 0;
}

void sim_zseg_free(struct sim_zseg *seg)
{
    if (seg == NULL)
        return;
    free(seg->data);
    memset(seg, 0, sizeof(*seg));
}

/* Bytes of LEN bytes as stored blocks (5 bytes of header per 65 535). */
static size_t stored_size(size_t len)
{
    return len + 5 * (len / STORED_MAX + 1);
}

/* Writes P (LEN) as stored blocks at O; the last is final iff FINAL. Returns the end. */
static unsigned char *put_stored(unsigned char *o, const char *p, size_t len, int final)
{
    do {
        size_t n = len < STORED_MAX ? len : STORED_MAX;
        int last = final && n == len;
        *o++ = (unsigned char)(last ? 1 : 0); /* BFINAL, BTYPE 00, then padding to a byte */
        *o++ = (unsigned char)(n & 0xff);
        *o++ = (unsigned char)(n >> 8);
        *o++ = (unsigned char)(~n & 0xff);
        *o++ = (unsigned char)((~n >> 8) & 0xff);
        memcpy(o, p, n);
        o += n;
        p += n;
        len -= n;
    } while (len > 0);
    return o;
}

static unsigned char *put_le32(unsigned char *o, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        *o++ = (unsigned char)(v >> (8 * i));
    return o;
}

char *sim_zseg_gzip(const char *head, size_t head_len, const struct sim_zseg *seg, const char *tail,
                    size_t tail_len, size_t *out_len)
{
    static const unsigned char gz_header[10] = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3};
    size_t cap = sizeof(gz_header) + stored_size(head_len) + seg->len + stored_size(tail_len) + 8;
    unsigned char *buf = malloc(cap), *o = buf;
    if (buf == NULL)
        return NULL;
    memcpy(o, gz_header, sizeof(gz_header));
    o += sizeof(gz_header);
    if (head_len > 0)
        o = put_stored(o, head, head_len, 0);
    memcpy(o, seg->data, seg->len);
    o += seg->len;
    o = put_stored(o, tail, tail_len, 1);
    uLong crc = crc32(0L, (const Bytef *)head, (uInt)head_len);
    crc = crc32_combine(crc, seg->crc, (z_off_t)seg->raw_len);
    crc = crc32_combine(crc, crc32(0L, (const Bytef *)tail, (uInt)tail_len), (z_off_t)tail_len);
    o = put_le32(o, (uint32_t)crc);
    o = put_le32(o, (uint32_t)(head_len + seg->raw_len + tail_len));
    *out_len = (size_t)(o - buf);
    return (char *)buf;
}
