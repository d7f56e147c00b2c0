/*
 * doc.c: Markdown generated from the vocabulary (filter.h) and the field table (export.h).
 * See doc.h.
 */
#include "view/doc.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "view/export.h"
#include "view/filter.h"

#define BEGIN_MARK "<!-- BEGIN GENERATED "
#define END_MARK   "<!-- END GENERATED "

/* TEXT with '|' escaped for a Markdown table cell. */
static void cell(FILE *out, const char *text)
{
    for (; *text; text++) {
        if (*text == '|')
            fputc('\\', out);
        fputc(*text, out);
    }
}

static void vocabulary(FILE *out)
{
    fputs("| command line | config / URL | value | meaning |\n", out);
    fputs("|---|---|---|---|\n", out);
    for (size_t i = 0; vw_filter_key(i) != NULL; i++) {
        const struct vw_key_info *k = vw_filter_key(i);
        fprintf(out, "| `%s%s` | `%s` | ", k->cli, k->takes_value ? " VALUE" : "", k->name);
        cell(out, k->value_words);
        fputs(" | ", out);
        cell(out, k->meaning);
        fputs(" |\n", out);
    }
}

static const char *unit_of(const char *name)
{
    static const struct {
        const char *suffix, *unit;
    } units[] = {
        {"_cents", "smallest unit of `currency` (cents; yen in Japan)"},
        {"_bp", "basis points (2500 = 25 %)"},
        {"_ms", "epoch ms; the twin without `_ms` is ISO 8601 UTC"},
        {"_min", "Keepa minutes"},
        {"_g", "grams"},
        {"_mm", "millimetres"},
    };
    size_t n = strlen(name);
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        size_t s = strlen(units[i].suffix);
        if (n > s && strcmp(name + n - s, units[i].suffix) == 0)
            return units[i].unit;
    }
    return "";
}

static void field_list(FILE *out)
{
    fputs("| field | type | unit | source |\n", out);
    fputs("|---|---|---|---|\n", out);
    for (size_t i = 0; i < vw_field_count(); i++) {
        const struct vw_field_info *f = vw_field(i);
        if (f->type == VW_T_TIME) {
            size_t n = strlen(f->name) - 3;
            fprintf(out, "| `%s`, `%.*s` | %s | ", f->name, (int)n, f->name,
                    vw_ftype_name(f->type));
        } else {
            fprintf(out, "| `%s` | %s | ", f->name, vw_ftype_name(f->type));
        }
        cell(out, unit_of(f->name));
        fputs(" | ", out);
        cell(out, f->source);
        fputs(" |\n", out);
    }
}

int vw_doc_part(FILE *out, const char *name)
{
    if (strcmp(name, "vocabulary") == 0)
        vocabulary(out);
    else if (strcmp(name, "fields") == 0)
        field_list(out);
    else
        return -ENOENT;
    return ferror(out) ? -EIO : 0;
}

int vw_doc_refresh(const char *text, FILE *out)
{
    const char *p = text;
    while (true) {
        const char *begin = strstr(p, BEGIN_MARK);
        if (begin == NULL) {
            fputs(p, out);
            break;
        }
        const char *eol = strchr(begin, '\n');
        if (eol == NULL)
            return -EINVAL;
        /* The part's name: the word after the marker, up to ':' or a blank. */
        const char *nm = begin + strlen(BEGIN_MARK);
        size_t nlen = strcspn(nm, ": -\n");
        char name[32];
        if (nlen == 0 || nlen >= sizeof(name))
            return -EINVAL;
        memcpy(name, nm, nlen);
        name[nlen] = '\0';
        char end_line[64];
        snprintf(end_line, sizeof(end_line), "%s%s -->", END_MARK, name);
        const char *end = strstr(eol, end_line);
        if (end == NULL)
            return -EINVAL;
        fwrite(p, 1, (size_t)(eol + 1 - p), out);
        int rc = vw_doc_part(out, name);
        if (rc == -ENOENT)
            return -EINVAL;
        if (rc != 0)
            return rc;
        p = end;
    }
    return ferror(out) ? -EIO : 0;
}
