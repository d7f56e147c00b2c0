/*
 * browse.h: the Keepa endpoints beyond products and deals, as pure answers built from the
 * catalog: /query (Product Finder), /seller, /category, /search, /bestsellers, /topseller and
 * /lightningdeal (sim/README.md, "What it serves").
 *
 * Each function reads the request through a parameter callback, writes the payload members that
 * follow the envelope (each followed by ',') and the request's token cost, or a status and a
 * reason; sim/server.c owns admission, the charge, faults and the envelope, so every endpoint
 * gets the same token, gzip and fault behaviour as /product. Shapes follow Keepa's Java client
 * structs (docs/keepa-api.md §2.4-§2.6 lists the fields); what is not modelled is said in
 * sim/README.md. No I/O, no clock (the caller gives the catalog's minute).
 */
#ifndef SIM_BROWSE_H
#define SIM_BROWSE_H

#include <stddef.h>
#include <stdint.h>

#include "sim/catalog.h"
#include "sim/jbuf.h"
#include "sim/selection.h"

/* Per category of the tree: products placed in it and the range of their sales-rank bases. */
struct sim_cat_stats {
    int n_roots;
    int64_t *count, *lowest_rank, *highest_rank; /* indexed by sim_cat_stats_index */
};

/* The slot of (ROOT_SLOT, SUB 0..SIM_SUBS, LEAF 0..SIM_LEAVES) in sim_cat_stats: sub 0 is the
 * root itself, leaf 0 the sub-category itself. */
size_t sim_cat_stats_index(int root_slot, int sub, int leaf);

/* Walks the catalog once (about 0.2 s for 20 000 products). Returns 0 or -ENOMEM. */
int sim_cat_stats_build(const struct sim_catalog *c, struct sim_cat_stats *st);
void sim_cat_stats_free(struct sim_cat_stats *st);

/* One request to one of the endpoints below. */
struct sim_api {
    const struct sim_catalog *cat;
    int64_t now_min;  /* the catalog's Keepa minute */
    sim_param_fn get; /* query parameters */
    void *get_ctx;
    const char *body; /* request body (a selection may come from it), may be NULL */
    size_t body_len;
    const struct sim_cat_stats *stats; /* /category, /search type=category; NULL: not needed */
    struct sim_buf *out;               /* payload members, each followed by ',' */
    int64_t cost;                      /* tokens the answer costs */
    unsigned status;                   /* 200, else 400 (err says why) */
    char err[200];
    char ignored[512]; /* /query: the filters it accepted without applying them */
};

/* Whether endpoint PATH ("/category", ...) needs sim_cat_stats. */
int sim_api_needs_stats(const char *path);

void sim_api_query(struct sim_api *a);
void sim_api_seller(struct sim_api *a);
void sim_api_category(struct sim_api *a);
void sim_api_search(struct sim_api *a);
void sim_api_bestsellers(struct sim_api *a);
void sim_api_topseller(struct sim_api *a);
void sim_api_lightning(struct sim_api *a);

#endif
