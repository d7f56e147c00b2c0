/*
 * scanner.h: the scanner stage, as the worker runtime runs it (`kdeals worker scanner`).
 *
 * Discovery (the deal feed, a product-finder query or an ASIN list), the free pre-filter,
 * dedup, peeks in batches and the peek filter; survivors go durably to `pending` and to the
 * committer, peeked stored deals to the updater as free refreshes. stage.h has the details.
 */
#ifndef KD_SCANNER_H
#define KD_SCANNER_H

#include "worker/worker.h"

extern const struct wk_stage scanner_stage;

#endif
