/*
 * main.c: `kdeals` subcommand dispatch.
 */
#include <stdio.h>
#include <string.h>

#include "committer/committer.h"
#include "common/log.h"
#include "scanner/scanner.h"
#include "updater/updater.h"

int main(int argc, char **argv)
{
    if (argc >= 3 && strcmp(argv[1], "worker") == 0) {
        if (strcmp(argv[2], "scanner") == 0)
            return scanner_main(argc - 2, argv + 2);
        if (strcmp(argv[2], "committer") == 0)
            return committer_main(argc - 2, argv + 2);
        if (strcmp(argv[2], "updater") == 0)
            return updater_main(argc - 2, argv + 2);
    }
    fprintf(stderr, "usage: kdeals COMMAND\n");
    return 2;
}
