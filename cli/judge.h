/*
 * judge.h: `kdeals judge` (a raw Keepa answer judged, offline or fetched) and `kdeals show` (a
 * stored product explained). See judge.c.
 */
#ifndef KD_CLI_JUDGE_H
#define KD_CLI_JUDGE_H

#include "base/config.h"

/* `kdeals judge [--json] FILE|-` / `kdeals judge --fetch ASIN...` under config C. Exit code. */
int cli_judge_main(const struct cfg *c, int argc, char **argv);

/* `kdeals show [--json] ASIN` under config C. Exit code. */
int cli_show_main(const struct cfg *c, int argc, char **argv);

#endif
