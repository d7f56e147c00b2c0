/*
 * cli.h: operator tools for the Keepa client, wired into `kdeals` as the subcommands
 * `kdeals decode ...` and `kdeals fetch ...` (and runnable alone as `kdeals-kp`).
 *
 *   decode product|deals|sellers|query FILE   decode a raw body (plain or gzip, - = stdin) and
 *                                             print what the decoder extracted, as JSON
 *   fetch product ASIN... [--offers N] [--stats DAYS] [--domain D]
 *   fetch deals --selection FILE [--page N]
 *   fetch token                               live request; prints the decoded result, the
 *                                             token reading and the classified outcome
 *
 * Exit codes: 0 success, 1 malformed input or a failed request (one line on stderr), 2 usage.
 */
#ifndef KP_CLI_H
#define KP_CLI_H

/* ARGV[0] is "decode" or "fetch". Returns the process exit code. */
int kp_cli_main(int argc, char **argv);

#endif
