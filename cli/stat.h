/*
 * stat.h: `kdeals stat`: live counters, process table and rings, read from shared memory.
 */
#ifndef KD_CLI_STAT_H
#define KD_CLI_STAT_H

#include <stdio.h>

#include "shm/layout.h"

enum cli_stat_format { CLI_STAT_TEXT, CLI_STAT_JSON, CLI_STAT_PROM };

/*
 * Prints one snapshot of the segment L (already checked by shm_layout_check) to OUT in
 * FORMAT. Every value is read as it is, so a corrupt or concurrently written segment prints
 * odd numbers, never reads outside it. Counters are totals over the roles, gauges their level
 * (shm_gauge_level): a gauge every worker publishes is not counted once per worker.
 */
void cli_stat_print(const struct shm_layout *l, enum cli_stat_format format, FILE *out);

/* `kdeals stat [--instance NAME] [-1] [--json|--prom]`. Returns the exit code. */
int cli_stat_main(int argc, char **argv);

#endif
