/*
 * explain.h: a judgement in words for people: every number with the Keepa field it came from,
 * each criterion with its margin, the offer to buy, the max cost, the links. Used by `kdeals
 * show` (a stored record) and `kdeals judge` (a raw Keepa answer, offline or fetched).
 */
#ifndef KD_CLI_EXPLAIN_H
#define KD_CLI_EXPLAIN_H

#include <stdint.h>
#include <stdio.h>

#include "judge/judge.h"

/* What the explanation names the product by. */
struct cli_product {
    const char *asin;
    unsigned domain;
    const char *title;    /* may be NULL */
    const char *category; /* root category name, may be NULL or "" */
    int64_t now_ms;       /* for the ages of the offer and the data */
};

/* Writes the explanation of V (the judgement of IN under R) to OUT. */
void cli_explain(FILE *out, const struct cli_product *p, const struct jd_inputs *in,
                 const struct jd_verdict *v, const struct jd_rules *r);

#endif
