/*
 * alerts.h: `kdeals alerts`: the alerts' deliveries listed, dead letters sent again, a test sent.
 */
#ifndef KD_CLI_ALERTS_H
#define KD_CLI_ALERTS_H

#include "base/config.h"

/* Runs `kdeals alerts [list|retry|test] ...` with the loaded config C. Returns the exit code. */
int cli_alerts_main(const struct cfg *c, int argc, char **argv);

#endif
