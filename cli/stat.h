/*
 * stat.h: `kdeals stat`: live counters, process table and rings, read from shared memory.
 */
#ifndef KD_CLI_STAT_H
#define KD_CLI_STAT_H

/* `kdeals stat [--instance NAME] [-1] [--json|--prom]`. Returns the exit code. */
int cli_stat_main(int argc, char **argv);

#endif
