/*
 * deals.h: `kdeals deals`: the stored deals, read from LMDB while the daemon writes.
 */
#ifndef KD_SUP_DEALS_H
#define KD_SUP_DEALS_H

#include "base/config.h"

/* Runs `kdeals deals [options]` with the loaded config C. Returns the exit code. */
int sup_deals_main(const struct cfg *c, int argc, char **argv);

#endif
