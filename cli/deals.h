/*
 * deals.h: `kdeals deals`: the stored deals, read from LMDB while the daemon writes.
 */
#ifndef KD_CLI_DEALS_H
#define KD_CLI_DEALS_H

#include "base/config.h"
#include "store/store.h"

/* Runs `kdeals deals [options]` with the loaded config C. Returns the exit code. */
int cli_deals_main(const struct cfg *c, int argc, char **argv);

/* The options to open the store config C names (path, map sizes). */
struct st_options cli_store_options(const struct cfg *c);

#endif
