/*
 * deals.h: `kdeals deals`: the stored deals, read from LMDB while the daemon writes.
 */
#ifndef KD_CLI_DEALS_H
#define KD_CLI_DEALS_H

#include "base/config.h"
#include "store/store.h"

#define CLI_DEALS_STORES_MAX 16 /* stores one view reads */

/*
 * Runs `kdeals deals` with ARGV[1..ARGC) over the stores of CFGS[0..N_CFGS) (one per config:
 * several marketplaces' instances read as one view) and each `--store PATH` of ARGV. CFGS[0]
 * gives the presets and, to the stores of --store, its rules. Returns the exit code.
 */
int cli_deals_main(const struct cfg *const *cfgs, size_t n_cfgs, int argc, char **argv);

/* The options to open the store config C names (path, map sizes). */
struct st_options cli_store_options(const struct cfg *c);

#endif
