/*
 * main.c: kdeals-sim command line (its options and behaviour are documented in
 * sim/README.md). Parses options, starts the server, blocks SIGTERM/SIGINT in every thread and
 * waits for one of them with sigwait, then stops cleanly and exits 0.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "sim/bucket.h"
#include "sim/catalog.h"
#include "sim/server.h"

static void usage(FILE *f)
{
    fputs("usage: kdeals-sim [--listen ADDR] [--port N] [--port-file PATH] [--seed S]\n"
          "                  [--products N] [--minute-ms MS] [--bucket-minutes M]\n"
          "                  [--refill-rate N] [--start-tokens N] [--keys K1,K2,...]\n"
          "                  [--expired-keys K1,...] [--bucket-per-key] [--faults SPEC]\n"
          "                  [--volatility V] [--offers-zero-ok] [--threads N] [--quiet] [--help]\n"
          "                  [--clock-ms EPOCH_MS] [--max-connections N]\n"
          "                  [--replay-deal FILE] [--replay-product FILE]\n"
          "                  [--economy calibrated|rich] [--catch-up-hours H] [--gzip-level L]\n"
          "A Keepa-compatible API simulator on loopback; see sim/README.md.\n",
          f);
}

static int parse_i64(const char *name, const char *v, int64_t lo, int64_t *out)
{
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno != 0 || *end != '\0' || end == v || x < lo) {
        fprintf(stderr, "kdeals-sim: %s %s: expected an integer >= %lld\n", name, v, (long long)lo);
        return -EINVAL;
    }
    *out = x;
    return 0;
}

/* Splits a comma list in place into LIST (at most SIM_MAX_KEYS). */
static int split_keys(char *s, const char **list, int *n)
{
    for (char *save = NULL, *k = strtok_r(s, ",", &save); k; k = strtok_r(NULL, ",", &save)) {
        if (*n >= SIM_MAX_KEYS) {
            fprintf(stderr, "kdeals-sim: at most %d keys\n", SIM_MAX_KEYS);
            return -EINVAL;
        }
        list[(*n)++] = k;
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct sim_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.listen_addr = "127.0.0.1";
    cfg.seed = 1;
    cfg.products = 20000;
    cfg.minute_ms = 60000;
    cfg.bucket_minutes = 60;
    cfg.refill_rate = 5;
    cfg.start_tokens = SIM_START_FULL;
    cfg.volatility = 1.0;
    cfg.threads = 2;
    cfg.max_connections = 1000;
    cfg.gzip_level = 1;
    cfg.catch_up_hours = 6;
    enum {
        O_LISTEN = 256,
        O_PORT,
        O_PORTFILE,
        O_SEED,
        O_PRODUCTS,
        O_MINUTE,
        O_BUCKET,
        O_RATE,
        O_START,
        O_KEYS,
        O_EXPIRED,
        O_PERKEY,
        O_FAULTS,
        O_VOL,
        O_ZERO,
        O_THREADS,
        O_QUIET,
        O_HELP,
        O_CLOCK,
        O_MAXCONN,
        O_RDEAL,
        O_RPROD,
        O_ECONOMY,
        O_CATCHUP,
        O_GZIP
    };
    static const struct option opts[] = {{"listen", required_argument, 0, O_LISTEN},
                                         {"port", required_argument, 0, O_PORT},
                                         {"port-file", required_argument, 0, O_PORTFILE},
                                         {"seed", required_argument, 0, O_SEED},
                                         {"products", required_argument, 0, O_PRODUCTS},
                                         {"minute-ms", required_argument, 0, O_MINUTE},
                                         {"bucket-minutes", required_argument, 0, O_BUCKET},
                                         {"refill-rate", required_argument, 0, O_RATE},
                                         {"start-tokens", required_argument, 0, O_START},
                                         {"keys", required_argument, 0, O_KEYS},
                                         {"expired-keys", required_argument, 0, O_EXPIRED},
                                         {"bucket-per-key", no_argument, 0, O_PERKEY},
                                         {"faults", required_argument, 0, O_FAULTS},
                                         {"volatility", required_argument, 0, O_VOL},
                                         {"offers-zero-ok", no_argument, 0, O_ZERO},
                                         {"threads", required_argument, 0, O_THREADS},
                                         {"quiet", no_argument, 0, O_QUIET},
                                         {"help", no_argument, 0, O_HELP},
                                         {"clock-ms", required_argument, 0, O_CLOCK},
                                         {"max-connections", required_argument, 0, O_MAXCONN},
                                         {"replay-deal", required_argument, 0, O_RDEAL},
                                         {"replay-product", required_argument, 0, O_RPROD},
                                         {"economy", required_argument, 0, O_ECONOMY},
                                         {"catch-up-hours", required_argument, 0, O_CATCHUP},
                                         {"gzip-level", required_argument, 0, O_GZIP},
                                         {0, 0, 0, 0}};
    int o;
    int64_t v;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        int rc = 0;
        switch (o) {
        case O_LISTEN:
            cfg.listen_addr = optarg;
            cfg.listen_explicit = 1;
            break;
        case O_PORT:
            rc = parse_i64("--port", optarg, 0, &v);
            if (rc == 0 && v > 65535)
                rc = -EINVAL;
            cfg.port = (int)v;
            break;
        case O_PORTFILE:
            cfg.port_file = optarg;
            break;
        case O_SEED:
            rc = parse_i64("--seed", optarg, 0, &v);
            cfg.seed = (uint64_t)v;
            break;
        case O_PRODUCTS:
            rc = parse_i64("--products", optarg, 1, &cfg.products);
            break;
        case O_MINUTE:
            rc = parse_i64("--minute-ms", optarg, 1, &cfg.minute_ms);
            break;
        case O_BUCKET:
            rc = parse_i64("--bucket-minutes", optarg, 1, &cfg.bucket_minutes);
            break;
        case O_RATE:
            rc = parse_i64("--refill-rate", optarg, 0, &cfg.refill_rate);
            break;
        case O_START:
            rc = parse_i64("--start-tokens", optarg, INT64_MIN / 4, &cfg.start_tokens);
            break;
        case O_KEYS:
            rc = split_keys(optarg, cfg.keys, &cfg.n_keys);
            break;
        case O_EXPIRED:
            rc = split_keys(optarg, cfg.expired, &cfg.n_expired);
            break;
        case O_PERKEY:
            cfg.bucket_per_key = 1;
            break;
        case O_FAULTS:
            cfg.faults = optarg;
            break;
        case O_VOL: {
            char *end;
            cfg.volatility = strtod(optarg, &end);
            if (*end != '\0' || !(cfg.volatility >= 0)) {
                fprintf(stderr, "kdeals-sim: --volatility %s: expected a number >= 0\n", optarg);
                rc = -EINVAL;
            }
            break;
        }
        case O_ZERO:
            cfg.offers_zero_ok = 1;
            break;
        case O_THREADS:
            rc = parse_i64("--threads", optarg, 1, &v);
            cfg.threads = v > 64 ? 64 : (int)v;
            break;
        case O_QUIET:
            cfg.quiet = 1;
            break;
        case O_HELP:
            usage(stdout);
            return 0;
        case O_CLOCK:
            rc = parse_i64("--clock-ms", optarg, 1, &cfg.clock_ms);
            break;
        case O_MAXCONN:
            rc = parse_i64("--max-connections", optarg, 1, &cfg.max_connections);
            break;
        case O_RDEAL:
            cfg.replay_deal = optarg;
            break;
        case O_RPROD:
            cfg.replay_product = optarg;
            break;
        case O_ECONOMY: {
            enum sim_economy e = SIM_ECONOMY_CALIBRATED;
            rc = sim_economy_parse(optarg, &e);
            if (rc != 0)
                fprintf(stderr, "kdeals-sim: --economy %s: expected calibrated or rich\n", optarg);
            cfg.economy = (int)e;
            break;
        }
        case O_CATCHUP:
            rc = parse_i64("--catch-up-hours", optarg, 1, &cfg.catch_up_hours);
            break;
        case O_GZIP:
            rc = parse_i64("--gzip-level", optarg, 0, &v);
            if (rc == 0 && v > 9) {
                fprintf(stderr, "kdeals-sim: --gzip-level %s: expected 0 to 9\n", optarg);
                rc = -1;
            }
            cfg.gzip_level = (int)v;
            break;
        default:
            usage(stderr);
            return 2;
        }
        if (rc != 0)
            return 2;
    }
    if (optind < argc) {
        fprintf(stderr, "kdeals-sim: unexpected argument %s\n", argv[optind]);
        usage(stderr);
        return 2;
    }
    kd_log_set_role("kdeals-sim");
    if (cfg.quiet)
        kd_log_set_level(KD_LOG_WARN);
    for (int i = 0; i < cfg.n_keys; i++)
        kd_log_add_secret(cfg.keys[i]);

    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    struct sim_server *srv;
    if (sim_server_start(&cfg, &srv) != 0)
        return 1;
    int sig = 0;
    sigwait(&set, &sig);
    sim_server_stop(srv);
    return 0;
}
