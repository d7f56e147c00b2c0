/*
 * mpcheck.c: a bounds check of msgpack bytes before msgpack-c unpacks them. See mpcheck.h.
 *
 * msgpack-c allocates a container's elements from the count in its header, so a 5-byte
 * input claiming 2^32 map entries would ask for gigabytes. Walking the headers first, with
 * the rule that every element takes at least one byte, bounds what unpacking can allocate
 * by the input's length. The config slot and the store's records both go through it.
 */
#include "base/mpcheck.h"

#include <errno.h>
#include <stdint.h>

int kd_msgpack_precheck(const void *buf, size_t len)
{
    const unsigned char *p = buf;
    size_t pos = 0;
    uint64_t pending = 1;
    while (pending > 0) {
        if (pos >= len)
            return -EBADMSG;
        unsigned b = p[pos++];
        uint64_t skip = 0, children = 0;
        size_t hdr = 0; /* bytes of a length field */
        if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3) {
            /* fixint, nil, bool */
        } else if (b <= 0x8f) {
            children = 2 * (uint64_t)(b & 0x0f);
        } else if (b <= 0x9f) {
            children = b & 0x0f;
        } else if (b <= 0xbf) {
            skip = b & 0x1f;
        } else if (b == 0xc4 || b == 0xd9) { /* bin8, str8 */
            hdr = 1;
        } else if (b == 0xc5 || b == 0xda || b == 0xdc || b == 0xde) {
            hdr = 2;
        } else if (b == 0xc6 || b == 0xdb || b == 0xdd || b == 0xdf) {
            hdr = 4;
        } else if (b >= 0xc7 && b <= 0xc9) { /* ext8/16/32: length, then a type byte */
            hdr = b == 0xc7 ? 1 : b == 0xc8 ? 2 : 4;
            skip = 1;
        } else if (b == 0xca || b == 0xce || b == 0xd2) {
            skip = 4;
        } else if (b == 0xcb || b == 0xcf || b == 0xd3) {
            skip = 8;
        } else if (b == 0xcc || b == 0xd0) {
            skip = 1;
        } else if (b == 0xcd || b == 0xd1) {
            skip = 2;
        } else if (b >= 0xd4 && b <= 0xd8) { /* fixext 1/2/4/8/16, plus the type byte */
            skip = 1 + ((uint64_t)1 << (b - 0xd4));
        } else {
            return -EBADMSG; /* 0xc1 */
        }
        if (hdr > 0) {
            if (len - pos < hdr)
                return -EBADMSG;
            uint64_t n = 0;
            for (size_t i = 0; i < hdr; i++)
                n = n << 8 | p[pos + i];
            pos += hdr;
            if (b == 0xdc || b == 0xdd)
                children = n;
            else if (b == 0xde || b == 0xdf)
                children = 2 * n;
            else
                skip += n;
        }
        if (skip > len - pos)
            return -EBADMSG;
        pos += (size_t)skip;
        pending = pending - 1 + children;
        if (pending > len - pos)
            return -EBADMSG;
    }
    return pos == len ? 0 : -EBADMSG;
}
