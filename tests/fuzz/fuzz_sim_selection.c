/*
 * fuzz_sim_selection.c: libFuzzer target for everything kdeals-sim parses from a client.
 *
 * The first byte picks the parser, the rest is its input: 0 deal selection (+ cache key),
 * 1 Product Finder selection, 2 fault SPEC, 3 /product query string ("k=v&k=v"). The parsers
 * are pure (sim/selection.c, sim/faults.c), so a crash or a sanitizer report here is a bug a
 * hostile client could reach over HTTP.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sim/faults.h"
#include "sim/selection.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct qs {
    char *k[32];
    char *v[32];
    int n;
};

static const char *qs_get(void *ctx, const char *name)
{
    struct qs *q = ctx;
    for (int i = 0; i < q->n; i++)
        if (strcmp(q->k[i], name) == 0)
            return q->v[i];
    return NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int mode = data[0] % 4;
    const char *in = (const char *)data + 1;
    size_t len = size - 1;
    char err[160];
    if (mode == 0) {
        struct sim_selection *s = malloc(sizeof(*s));
        if (sim_selection_parse(in, len, s, err, sizeof(err)) == 0) {
            char key[8192];
            sim_selection_key(s, key, sizeof(key));
        }
        free(s);
        return 0;
    }
    if (mode == 1) {
        struct sim_query q;
        sim_query_parse(in, len, &q, err, sizeof(err));
        return 0;
    }
    char *text = malloc(len + 1);
    memcpy(text, in, len);
    text[len] = '\0';
    if (mode == 2) {
        struct sim_fault_spec f;
        if (sim_faults_parse(text, &f, err, sizeof(err)) == 0) {
            char back[1024];
            sim_faults_format(&f, back, sizeof(back));
        }
    } else {
        struct qs q = {.n = 0};
        for (char *save = NULL, *kv = strtok_r(text, "&", &save); kv && q.n < 32;
             kv = strtok_r(NULL, "&", &save)) {
            char *eq = strchr(kv, '=');
            if (eq == NULL)
                continue;
            *eq = '\0';
            q.k[q.n] = kv;
            q.v[q.n++] = eq + 1;
        }
        struct sim_product_req *r = malloc(sizeof(*r));
        sim_product_req_parse(qs_get, &q, 0, r, err, sizeof(err));
        free(r);
    }
    free(text);
    return 0;
}
