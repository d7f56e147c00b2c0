/*
 * view_doc.c: kdeals-view-doc, the generated parts of docs/view.md (view/doc.h).
 *
 *   kdeals-view-doc vocabulary|fields   prints one part
 *   kdeals-view-doc --update FILE       rewrites FILE's generated parts in place
 *
 * A developer tool: `kdeals deals --fields` will print the same list once the CLI is wired.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "view/doc.h"

static char *read_all(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    char *buf = NULL;
    size_t cap = 0, len = 0;
    while (true) {
        if (len + 4096 + 1 > cap) {
            cap = (cap + 4096) * 2;
            char *more = realloc(buf, cap);
            if (more == NULL) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = more;
        }
        size_t got = fread(buf + len, 1, cap - len - 1, f);
        len += got;
        if (got == 0)
            break;
    }
    bool failed = ferror(f);
    fclose(f);
    if (failed) {
        free(buf);
        return NULL;
    }
    buf[len] = '\0';
    return buf;
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "--update") != 0) {
        int rc = vw_doc_part(stdout, argv[1]);
        if (rc == -ENOENT)
            fprintf(stderr, "kdeals-view-doc: no part '%s' (vocabulary, fields)\n", argv[1]);
        return rc == 0 ? 0 : 1;
    }
    if (argc != 3 || strcmp(argv[1], "--update") != 0) {
        fprintf(stderr, "usage: kdeals-view-doc vocabulary|fields\n"
                        "       kdeals-view-doc --update docs/view.md\n");
        return 2;
    }
    char *text = read_all(argv[2]);
    if (text == NULL) {
        fprintf(stderr, "kdeals-view-doc: cannot read %s: %s\n", argv[2], strerror(errno));
        return 1;
    }
    char *fresh = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&fresh, &len);
    int rc = mem != NULL ? vw_doc_refresh(text, mem) : -ENOMEM;
    if (mem != NULL)
        fclose(mem);
    free(text);
    if (rc != 0) {
        fprintf(stderr, "kdeals-view-doc: %s: generated part markers are broken (%d)\n", argv[2],
                rc);
        free(fresh);
        return 1;
    }
    FILE *f = fopen(argv[2], "wb");
    if (f == NULL || fwrite(fresh, 1, len, f) != len || fclose(f) != 0) {
        fprintf(stderr, "kdeals-view-doc: cannot write %s: %s\n", argv[2], strerror(errno));
        free(fresh);
        return 1;
    }
    free(fresh);
    return 0;
}
