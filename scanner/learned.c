/*
 * learned.c: the scanner's learned low fees and peek outcomes as numbers, and back. See
 * learned.h.
 */
#include "scanner/learned.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

static void pack_class(const struct scanner_fees_low *l, double *out)
{
    memset(out, 0, SCANNER_FEES_CLASS_NUMS * sizeof(*out));
    size_t kept = l->n < SCANNER_FEES_LOW_N ? l->n : SCANNER_FEES_LOW_N;
    size_t oldest = l->n < SCANNER_FEES_LOW_N ? 0 : l->n % SCANNER_FEES_LOW_N;
    out[0] = (double)(l->root_category + 1);
    out[1] = (double)kept;
    double *ref = out + 2, *fba = ref + SCANNER_FEES_LOW_N, *clo = fba + SCANNER_FEES_LOW_N;
    for (size_t i = 0; i < kept; i++) {
        size_t at = (oldest + i) % SCANNER_FEES_LOW_N;
        ref[i] = l->referral_bp[at];
        fba[i] = l->fba_cents[at];
        clo[i] = l->closing_cents[at];
    }
}

void scanner_fees_pack(const struct scanner_fees *f, double *out)
{
    pack_class(&f->all, out);
    for (size_t i = 0; i < SCANNER_FEES_LOW_CATS; i++)
        pack_class(&f->cat[i], out + (1 + i) * SCANNER_FEES_CLASS_NUMS);
}

static bool whole(double x, double max)
{
    return isfinite(x) && x >= 0 && x <= max && x == floor(x);
}

/* Whether IN is a class pack_class makes; sets its root category and observations kept. */
static bool class_ok(const double *in, int64_t *root, size_t *kept)
{
    if (!whole(in[0], SCANNER_FEES_NUM_MAX) || !whole(in[1], SCANNER_FEES_LOW_N))
        return false;
    for (size_t i = 2; i < SCANNER_FEES_CLASS_NUMS; i++)
        if (!whole(in[i], INT32_MAX))
            return false;
    *root = (int64_t)in[0] - 1;
    *kept = (size_t)in[1];
    return true;
}

/* Learns the KEPT observations of class IN into F as ROOT's, oldest first. */
static void replay(struct scanner_fees *f, const double *in, int64_t root, size_t kept)
{
    const double *ref = in + 2, *fba = ref + SCANNER_FEES_LOW_N, *clo = fba + SCANNER_FEES_LOW_N;
    for (size_t i = 0; i < kept; i++) {
        struct jd_verdict v;
        memset(&v, 0, sizeof(v));
        v.payout_known = true;
        v.referral_bp = (int64_t)ref[i];
        v.fba_cents = (int64_t)fba[i];
        v.closing_cents = (int64_t)clo[i];
        scanner_fees_learn(f, root, &v);
    }
}

bool scanner_fees_unpack(const double *in, struct scanner_fees *f, struct scanner_fees *scratch)
{
    int64_t root[1 + SCANNER_FEES_LOW_CATS];
    size_t kept[1 + SCANNER_FEES_LOW_CATS];
    for (size_t c = 0; c <= SCANNER_FEES_LOW_CATS; c++)
        if (!class_ok(in + c * SCANNER_FEES_CLASS_NUMS, &root[c], &kept[c]))
            return false;
    if (root[0] != 0)
        return false;
    for (size_t c = 1; c <= SCANNER_FEES_LOW_CATS; c++) {
        if (root[c] == 0 || (root[c] < 0 && kept[c] > 0))
            return false;
        for (size_t d = 1; d < c; d++)
            if (root[c] > 0 && root[d] == root[c])
                return false;
    }
    /* The categories first, each whole before the next (each takes the first free slot),
     * then every product's class alone, as the categories' replay also taught it. */
    scanner_fees_init(scratch);
    for (size_t c = 1; c <= SCANNER_FEES_LOW_CATS; c++)
        if (root[c] > 0)
            replay(scratch, in + c * SCANNER_FEES_CLASS_NUMS, root[c], kept[c]);
    memset(&scratch->all, 0, sizeof(scratch->all));
    replay(scratch, in, 0, kept[0]);
    f->all = scratch->all;
    memcpy(f->cat, scratch->cat, sizeof(f->cat));
    return true;
}

void scanner_peek_pack(const struct scanner_fees *f, double *out)
{
    for (size_t i = 0; i < SCANNER_PEEK_CLASSES; i++) {
        out[3 * i] = f->peek[i].passed;
        out[3 * i + 1] = f->peek[i].n;
        out[3 * i + 2] = f->peek[i].skipped;
    }
}

bool scanner_peek_unpack(const double *in, struct scanner_peek_rate *rates)
{
    struct scanner_peek_rate r[SCANNER_PEEK_CLASSES];
    for (size_t i = 0; i < SCANNER_PEEK_CLASSES; i++) {
        for (size_t k = 0; k < 3; k++)
            if (!whole(in[3 * i + k], UINT32_MAX))
                return false;
        r[i].passed = (uint32_t)in[3 * i];
        r[i].n = (uint32_t)in[3 * i + 1];
        r[i].skipped = (uint32_t)in[3 * i + 2];
        if (r[i].n < 32 && (r[i].passed >> r[i].n) != 0)
            return false; /* an outcome bit of a peek never made */
    }
    memcpy(rates, r, sizeof(r));
    return true;
}
