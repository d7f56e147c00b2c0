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

void cli_json_string(yajl_gen g, const char *v)
{
    if (v == NULL)
        yajl_gen_null(g);
    else
        yajl_gen_string(g, (const unsigned char *)v, strlen(v));
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
    yajl_gen_string(g, (const unsigned char *)k, strlen(k));
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
