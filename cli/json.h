/*
 * json.h: the one way the operator commands write JSON.
 *
 * Every JSON document the CLI prints (status --json, stat --json, deals --format json, decode,
 * fetch) is built with yajl's generator (yajl_gen), so strings are always escaped correctly (a
 * byte that is not UTF-8 becomes U+FFFD, so the document is valid JSON whatever a string held)
 * and numbers always well-formed, and printed only once complete: a command that fails half-way
 * prints no half document. These helpers add the key/value shorthand the commands share.
 */
#ifndef KD_CLI_JSON_H
#define KD_CLI_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <yajl/yajl_gen.h>

/* A new generator; PRETTY indents (decode, fetch), else one line. NULL when out of memory. */
yajl_gen cli_json_new(bool pretty);

/* Writes the document and a newline to OUT, then frees G. Returns 0, or -EIO on a write error. */
int cli_json_print(yajl_gen g, FILE *out);

/* Values. A double is written so that it reads back equal (NaN and infinities as null); a
 * "tri" is a -1/0/1 flag (-1: unknown, null). */
void cli_json_string(yajl_gen g, const char *v); /* NULL: null */
void cli_json_double(yajl_gen g, double v);

/* Members of an object: the key, then the value. */
void cli_json_key(yajl_gen g, const char *k);
void cli_json_str(yajl_gen g, const char *k, const char *v);
void cli_json_int(yajl_gen g, const char *k, long long v);
void cli_json_dbl(yajl_gen g, const char *k, double v);
void cli_json_bool(yajl_gen g, const char *k, bool v);
void cli_json_tri(yajl_gen g, const char *k, int v);
void cli_json_i32s(yajl_gen g, const char *k, const int32_t *v, size_t n);
void cli_json_i64s(yajl_gen g, const char *k, const int64_t *v, size_t n);

#endif
