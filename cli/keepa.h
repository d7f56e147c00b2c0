/*
 * keepa.h: `kdeals decode` and `kdeals fetch`, the operator's tools for the Keepa client.
 *
 *   decode product|deals|sellers|query FILE   decode a raw body (plain or gzip, - = stdin) and
 *                                             print what the decoder extracted, as JSON
 *   fetch product ASIN... [--offers N] [--stats DAYS] [--domain D]
 *   fetch deals --selection FILE [--page N]
 *   fetch token                               one live request; prints the decoded result, the
 *                                             token reading and the classified outcome
 *
 * fetch takes the key as the daemon does (base/key.h), --key-file standing in for the config's
 * key_file and key. Exit codes: 0 success, 1 malformed input or a failed request (one line on
 * stderr), 2 usage or configuration (the key included).
 */
#ifndef KD_CLI_KEEPA_H
#define KD_CLI_KEEPA_H

#include <stdbool.h>

#include "base/config.h"
#include "keepa/client.h"
#include "keepa/decode.h"

/* `kdeals decode ...`: ARGV[0] is "decode". Returns the process exit code. */
int cli_decode_main(int argc, char **argv);

/*
 * `kdeals fetch ...` with config C: ARGV[0] is "fetch". FROM_FILE says C was read from a
 * config file, whose base_url then counts. Returns the process exit code.
 */
int cli_fetch_main(const struct cfg *c, bool from_file, int argc, char **argv);

/*
 * Decodes the raw Keepa body at PATH ("-": standard input; plain or gzip) into CBS. Returns 0,
 * or a negative errno with ERR saying what failed.
 */
int cli_decode_body(const char *path, const struct kp_decode_cbs *cbs, char *err, size_t errlen);

/*
 * One live /product request for the N ASINs (domain, base URL and key from C; OFFERS 0 or
 * 20..100; STATS_DAYS > 0), handing each product to CBS->on_product. *READING (when
 * *HAVE_READING) is the answer's token reading. Returns 0 or a negative errno with ERR.
 */
int cli_fetch_products(const struct cfg *c, const char *const *asins, size_t n, int offers,
                       int stats_days, const struct kp_decode_cbs *cbs, struct kp_reading *reading,
                       bool *have_reading, char *err, size_t errlen);

#endif
