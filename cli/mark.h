/*
 * mark.h: `kdeals mark ASIN bought [--cost X] [--qty N] | ignored | clear`, the seller's mark on
 * a stored record.
 */
#ifndef KD_CLI_MARK_H
#define KD_CLI_MARK_H

#include "base/config.h"

/* Runs `kdeals mark` with ARGV[1..ARGC) under config C (its store and marketplace). Returns the
 * exit code: 0 marked, 1 not in the store or the store failed, 2 usage. */
int cli_mark_main(const struct cfg *c, int argc, char **argv);

#endif
