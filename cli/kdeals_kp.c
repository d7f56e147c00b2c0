/*
 * kdeals_kp.c: `kdeals-kp`, a stand-alone driver for the Keepa client's operator tools
 * (kp_cli_main) until they are wired into `kdeals` as `kdeals decode` / `kdeals fetch`.
 * Usage: kdeals-kp decode|fetch ... (see cli/keepa.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "cli/keepa.h"

int main(int argc, char **argv)
{
    kd_log_set_role("kdeals-kp");
    const char *level = getenv("KDEALS_LOG_LEVEL");
    enum kd_log_level l;
    if (level != NULL && kd_log_parse_level(level, &l) == 0)
        kd_log_set_level(l);
    if (argc < 2 || strcmp(argv[1], "--help") == 0) {
        fprintf(argc < 2 ? stderr : stdout,
                "usage: kdeals-kp decode|fetch ... (kdeals-kp decode --help)\n");
        return argc < 2 ? 2 : 0;
    }
    return kp_cli_main(argc - 1, argv + 1);
}
