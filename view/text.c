/*
 * text.c: UTF-8 cleaning, width and cutting. See text.h.
 */
#include "view/text.h"

#include <stdint.h>
#include <string.h>

/* Decodes one well-formed UTF-8 sequence at S (RFC 3629: no overlongs, no surrogates, at
 * most U+10FFFF). Returns its length and *CP, or 0 when S does not start one. */
static size_t decode(const unsigned char *s, uint32_t *cp)
{
    unsigned char c = s[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    size_t n;
    uint32_t v, min;
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2, v = c & 0x1Fu, min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3, v = c & 0x0Fu, min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4, v = c & 0x07u, min = 0x10000;
    } else {
        return 0;
    }
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        v = (v << 6) | (s[i] & 0x3Fu);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF))
        return 0;
    *cp = v;
    return n;
}

size_t vw_utf8_clean(const char *s, bool controls_to_space, char *out, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t o = 0;
    if (len == 0)
        return 0;
    while (*p != '\0') {
        uint32_t cp;
        size_t n = decode(p, &cp);
        const char *put;
        size_t put_len;
        if (n == 0) {
            put = "\xEF\xBF\xBD";
            put_len = 3;
            n = 1;
        } else if (controls_to_space && (cp < 0x20 || (cp >= 0x7F && cp <= 0x9F))) {
            put = " ";
            put_len = 1;
        } else {
            put = (const char *)p;
            put_len = n;
        }
        if (o + put_len >= len)
            break;
        memcpy(out + o, put, put_len);
        o += put_len;
        p += n;
    }
    out[o] = '\0';
    return o;
}

static int cp_width(uint32_t c)
{
    if (c < 0x20 || (c >= 0x7F && c <= 0x9F))
        return 0;
    if ((c >= 0x0300 && c <= 0x036F) || (c >= 0x1AB0 && c <= 0x1AFF) ||
        (c >= 0x1DC0 && c <= 0x1DFF) || (c >= 0x200B && c <= 0x200F) ||
        (c >= 0x20D0 && c <= 0x20FF) || (c >= 0xFE00 && c <= 0xFE0F) ||
        (c >= 0xFE20 && c <= 0xFE2F))
        return 0;
    if ((c >= 0x1100 && c <= 0x115F) || (c >= 0x2E80 && c <= 0x303E) ||
        (c >= 0x3041 && c <= 0x33FF) || (c >= 0x3400 && c <= 0x4DBF) ||
        (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0xA000 && c <= 0xA4CF) ||
        (c >= 0xAC00 && c <= 0xD7A3) || (c >= 0xF900 && c <= 0xFAFF) ||
        (c >= 0xFE30 && c <= 0xFE4F) || (c >= 0xFF00 && c <= 0xFF60) ||
        (c >= 0xFFE0 && c <= 0xFFE6) || (c >= 0x1F300 && c <= 0x1F64F) ||
        (c >= 0x1F900 && c <= 0x1F9FF) || (c >= 0x20000 && c <= 0x3FFFD))
        return 2;
    return 1;
}

int vw_text_width(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    int w = 0;
    while (*p != '\0') {
        uint32_t cp;
        size_t n = decode(p, &cp);
        if (n == 0) {
            w++; /* shown as one replacement character */
            n = 1;
        } else {
            w += cp_width(cp);
        }
        p += n;
    }
    return w;
}

int vw_text_fit(const char *s, int columns, char *out, size_t len)
{
    static const char ellipsis[] = "\xE2\x80\xA6";
    if (len == 0)
        return 0;
    out[0] = '\0';
    if (columns <= 0)
        return 0;
    if (vw_text_width(s) <= columns) {
        size_t n = strlen(s);
        if (n < len) {
            memcpy(out, s, n + 1);
            return vw_text_width(s);
        }
    }
    /* Cut: room for the ellipsis in columns and in bytes. */
    const unsigned char *p = (const unsigned char *)s;
    size_t o = 0;
    int w = 0;
    while (*p != '\0') {
        uint32_t cp;
        size_t n = decode(p, &cp);
        int cw = n == 0 ? 1 : cp_width(cp);
        if (n == 0)
            n = 1;
        if (w + cw > columns - 1 || o + n + sizeof(ellipsis) > len)
            break;
        memcpy(out + o, p, n);
        o += n;
        w += cw;
        p += n;
    }
    memcpy(out + o, ellipsis, sizeof(ellipsis));
    return w + 1;
}
