/*
 * stat.h: `kdeals stat`: live counters, process table and rings, read from shared memory.
 */
#ifndef KD_SUP_STAT_H
#define KD_SUP_STAT_H

#include <stdio.h>

#include "shm/layout.h"

enum sup_stat_format { SUP_STAT_TEXT, SUP_STAT_JSON, SUP_STAT_PROM };

/* Prints one snapshot of L to OUT. */
void sup_stat_print(const struct shm_layout *l, enum sup_stat_format format, FILE *out);

/* `kdeals stat [--instance NAME] [-1] [--json|--prom]`. Returns the exit code. */
int sup_stat_main(int argc, char **argv);

#endif
