/*
 * json.c: JSON output of the operator commands, on yajl_gen. See json.h.
 */
#include "cli/json.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

yajl_gen cli_json_new(bool pretty)
{
    yajl_gen g = yajl_gen_alloc(NULL);
    if (g != NULL)
        yajl_gen_config(g, yajl_gen_beautify, pretty ? 1 : 0);
    return g;
}

int cli_json_print(yajl_gen g, FILE *out)
{
    const unsigned char *buf;
    size_t len;
    yajl_gen_get_buf(g, &buf, &len);
    int rc = fwrite(buf, 1, len, out) == len ? 0 : -EIO;
    if (len == 0 || buf[len - 1] != '\n')
        fputc('\n', out);
    if (fflush(out) != 0)
        rc = -EIO;
    yajl_gen_free(g);
    return rc;
}

/* Length of the well-formed UTF-8 character at S (N bytes left), 0 if there is none. */
static size_t utf8_char(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    if (c < 0x80)
        return 1;
    size_t len;
    unsigned cp;
    if (c >= 0xc2 && c <= 0xdf)
        len = 2, cp = c & 0x1f;
    else if (c >= 0xe0 && c <= 0xef)
        len = 3, cp = c & 0x0f;
    else if (c >= 0xf0 && c <= 0xf4)
        len = 4, cp = c & 0x07;
    else
        return 0;
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3fu);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

/*
 * yajl_gen writes a string's bytes as they are, so text that is not UTF-8 (a message torn in
 * shared memory, a server's bytes) would make the document invalid JSON: each byte that is
 * not part of a well-formed character becomes U+FFFD. Control characters are escaped by yajl.
 */
static void gen_utf8(yajl_gen g, const char *v)
{
    const unsigned char *s = (const unsigned char *)v;
    size_t n = strlen(v), bad = 0;
    for (size_t i = 0; i < n;) {
        size_t k = utf8_char(s + i, n - i);
        bad += k == 0;
        i += k == 0 ? 1 : k;
    }
    if (bad == 0) {
        yajl_gen_string(g, s, n);
        return;
    }
    unsigned char *clean = malloc(n + 2 * bad + 1);
    if (clean == NULL) {
        yajl_gen_null(g);
        return;
    }
    size_t out = 0;
    for (size_t i = 0; i < n;) {
        size_t k = utf8_char(s + i, n - i);
        if (k == 0) {
            memcpy(clean + out, "\xef\xbf\xbd", 3);
            out += 3;
            i++;
        } else {
            memcpy(clean + out, s + i, k);
            out += k;
            i += k;
        }
    }
    yajl_gen_string(g, clean, out);
    free(clean);
}

void cli_json_string(yajl_gen g, const char *v)
{
    if (v == NULL)
        yajl_gen_null(g);
    else
        gen_utf8(g, v);
}

void cli_json_double(yajl_gen g, double v)
{
    if (!isfinite(v)) {
        yajl_gen_null(g);
        return;
    }
    char buf[40];
    snprintf(buf, sizeof(buf), "%.15g", v);
    if (strtod(buf, NULL) != v)
        snprintf(buf, sizeof(buf), "%.17g", v);
    if (strpbrk(buf, ".eEn") == NULL)
        strcat(buf, ".0");
    yajl_gen_number(g, buf, strlen(buf));
}

void cli_json_key(yajl_gen g, const char *k)
{
    gen_utf8(g, k);
}

void cli_json_str(yajl_gen g, const char *k, const char *v)
{
    cli_json_key(g, k);
    cli_json_string(g, v);
}

void cli_json_int(yajl_gen g, const char *k, long long v)
{
    cli_json_key(g, k);
    yajl_gen_integer(g, v);
}

void cli_json_dbl(yajl_gen g, const char *k, double v)
{
    cli_json_key(g, k);
    cli_json_double(g, v);
}

void cli_json_bool(yajl_gen g, const char *k, bool v)
{
    cli_json_key(g, k);
    yajl_gen_bool(g, v);
}

void cli_json_tri(yajl_gen g, const char *k, int v)
{
    cli_json_key(g, k);
    if (v < 0)
        yajl_gen_null(g);
    else
        yajl_gen_bool(g, v);
}

/* An array member of integers of TYPE. */
#define CLI_JSON_INTS(name, type)                                                                  \
    void name(yajl_gen g, const char *k, const type *v, size_t n)                                  \
    {                                                                                              \
        cli_json_key(g, k);                                                                        \
        yajl_gen_array_open(g);                                                                    \
        for (size_t i = 0; i < n; i++)                                                             \
            yajl_gen_integer(g, v[i]);                                                             \
        yajl_gen_array_close(g);                                                                   \
    }

CLI_JSON_INTS(cli_json_i32s, int32_t)
CLI_JSON_INTS(cli_json_i64s, int64_t)
