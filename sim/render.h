/*
 * render.h: JSON bodies in Keepa's shapes (envelope, product, offers, deal).
 *
 * Field names, JSON types and array shapes follow the recorded real responses
 * (tests/fixtures/keepa): 36-entry csv with null for types without data, pairs and
 * shipping triples, stats per-index arrays of 36 padded with -1, deal arrays of 34 with
 * avg/delta/deltaPercent as [4][34]. Offer-dependent series appear only with offers; the Buy
 * Box fields with offers or buybox=1, and -2 / null otherwise, as Keepa sends them.
 */
#ifndef SIM_RENDER_H
#define SIM_RENDER_H

#include <stdint.h>

#include "sim/catalog.h"
#include "sim/jbuf.h"
#include "sim/selection.h"

struct sim_envelope {
    int64_t timestamp_ms;
    int64_t tokens_left;
    int64_t refill_in_ms;
    int64_t refill_rate;
    int64_t tokens_consumed;
    int64_t processing_ms;
};

/* Writes `{` and the 7 envelope fields in Keepa's order, followed by a ',' . */
void sim_render_envelope(struct sim_buf *b, const struct sim_envelope *e);

/* Offer pages (<= 10 offers each) a request for N offers finds for P. */
int sim_offer_pages(const struct sim_catalog *c, const struct sim_product *p, int n);

/* Per-request rendering options for a product. */
struct sim_product_opts {
    const struct sim_product_req *req;
    int offers_failed; /* offers requested but offersSuccessful:false */
};

/* Appends product P as a JSON object. */
void sim_render_product(struct sim_buf *b, const struct sim_catalog *c, const struct sim_product *p,
                        const struct sim_product_opts *o);

/* Appends P as a deal object (REC-DEAL key order) whose creationDate is CREATION. */
void sim_render_deal(struct sim_buf *b, const struct sim_catalog *c, const struct sim_product *p,
                     int64_t creation);

/*
 * EAN-13 code of product IDX (13 digits + NUL), and its inverse for an EAN-13 or a 12-digit
 * UPC (-1 when unknown).
 */
void sim_product_ean(int64_t idx, char out[14]);
int64_t sim_product_from_code(const struct sim_catalog *c, const char *code);

#endif
