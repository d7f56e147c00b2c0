/*
 * main.c: `kdeals` subcommand dispatch.
 *
 * One binary plays every role: the operator's commands, the supervisor (`run`, `start`) and,
 * when the supervisor re-executes it with `worker ROLE`, each worker process. Every command
 * takes -c FILE (default ./kdeals.conf, then /etc/kdeals/kdeals.conf, else built-in
 * defaults) and --instance / --run-dir to override the file's [daemon] keys.
 * Exit codes: 0 ok, 1 runtime failure, 2 usage or config error.
 *
 * Every path is made absolute here, once, before anything uses it: the config file's own path
 * (so that a daemon that changed to / re-reads the same file on reload), and --run-dir and
 * --log-file given relative to the folder the command runs in (paths inside the config file
 * are relative to the config file's folder, base/config.h). The daemon never depends on its
 * working directory.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ini.h>

#include "committer/committer.h"
#include "base/config.h"
#include "base/kd_assert.h"
#include "base/key.h"
#include "base/log.h"
#include "cli/keepa.h"
#include "scanner/scanner.h"
#include "cli/alerts.h"
#include "cli/ctl.h"
#include "cli/deals.h"
#include "cli/judge.h"
#include "cli/mark.h"
#include "cli/stat.h"
#include "outbox/alertcfg.h"
#include "outbox/outbox.h"
#include "shm/segment.h"
#include "supervisor/supervisor.h"
#include "updater/updater.h"
#include "view/preset.h"
#include "web/web.h"
#include "worker/worker.h"

#define KD_VERSION "0.1.0"

static int usage(FILE *out)
{
    fprintf(out,
            "usage: kdeals COMMAND [-c FILE] [options]\n"
            "\n"
            "commands:\n"
            "  run            supervisor and workers in the foreground\n"
            "  start [--wait] start the daemon in the background\n"
            "  stop [--fast]  graceful stop (finish the batch in flight), or immediate\n"
            "  reload         re-read the config (HUP) and print the verdict\n"
            "  status [--json]                     processes, tokens, deals, last errors\n"
            "  stat [-1] [--json|--prom]           live counters from shared memory\n"
            "  deals [--format table|csv|json|jsonl] [filters] [--sort KEY] [--limit N]\n"
            "                                      the stored deals (kdeals deals --help)\n"
            "  deals --follow [--from SEQ]         every change as a JSON line, resumable\n"
            "  show ASIN [--json]                  one stored product explained, number by number\n"
            "  mark ASIN bought [--cost X] [--qty N]|ignored|clear   your mark on a product\n"
            "  alerts [list|retry|test] [NAME]     the alerts' deliveries, dead letters, a test\n"
            "  judge FILE|- | --fetch ASIN...      judge a raw Keepa /product answer\n"
            "  web [--listen ADDR]                 the dashboard and JSON API alone (development)\n"
            "  check-config   validate the config and print the effective values\n"
            "  decode product|deals|...|lightning|bestsellers FILE   decode a raw Keepa body\n"
            "  fetch product ASIN...|deals --selection FILE   one live Keepa request\n"
            "  version\n"
            "\n"
            "Every command takes -c FILE (default ./kdeals.conf, then /etc/kdeals/kdeals.conf),\n"
            "--instance NAME and --run-dir DIR; `kdeals COMMAND --help` tells more.\n"
            "Exit codes: 0 ok, 1 runtime failure, 2 usage or config error.\n");
    return out == stdout ? 0 : 2;
}

/*
 * The checkers of the config's named sections, one per kind of base/config.h CFG_NAMED_KINDS:
 * every command checks the file it loads with them, and the supervisor a reloaded one.
 */
static const struct cfg_named_checker *const named_checkers[] = {&vw_preset_checker,
                                                                 &ob_alert_checker};

/*
 * The default run_dir without a config file: $XDG_RUNTIME_DIR/kdeals (a folder of the user's
 * own), else the config's default (/run/kdeals). Never a folder under /tmp, which another user
 * could have created first.
 */
static const char *default_run_dir(const struct cfg *c, char *buf, size_t len)
{
    const char *xdg = getenv("XDG_RUNTIME_DIR");
    if (xdg != NULL && xdg[0] == '/')
        snprintf(buf, len, "%s/kdeals", xdg);
    else
        snprintf(buf, len, "%s", c->daemon_run_dir);
    return buf;
}

/* Creates the run folder if needed and checks it is safe (shm_run_dir_open). */
static int ensure_dir(const char *dir)
{
    char err[1200];
    int fd = shm_run_dir_open(dir, true, err, sizeof(err));
    if (fd < 0) {
        fprintf(stderr, "kdeals: %s\n", err);
        return -1;
    }
    close(fd);
    return 0;
}

/* PATH made absolute against the current folder into BUF; PATH itself when already absolute. */
static const char *absolute(const char *path, char *buf, size_t len)
{
    char cwd[PATH_MAX];
    if (path == NULL || path[0] == '/' || getcwd(cwd, sizeof(cwd)) == NULL)
        return path;
    int n = snprintf(buf, len, "%s/%s", cwd, path);
    return n > 0 && (size_t)n < len ? buf : path;
}

/* Options every command shares, taken out of argv before the command sees it. */
struct common_opts {
    const char *config; /* the file in use (absolute), or NULL for defaults */
    struct cfg cfg;
    const char *instance;
    const char *run_dir;  /* absolute */
    const char *log_file; /* absolute, or NULL */
    char config_buf[PATH_MAX];
    char run_dir_buf[PATH_MAX];
    char log_file_buf[PATH_MAX];
};

struct daemon_keys {
    struct cfg *cfg;
    const char *dir; /* folder of the config file, for relative paths */
};

/* inih handler that keeps only [daemon] instance/run_dir/log_file and [store] path. */
static int pick_daemon_keys(void *user, const char *section, const char *name, const char *value)
{
    struct daemon_keys *k = user;
    char *dst = NULL;
    if (strcmp(section, "daemon") == 0 && strcmp(name, "instance") == 0)
        dst = k->cfg->daemon_instance;
    else if (strcmp(section, "daemon") == 0 && strcmp(name, "run_dir") == 0)
        dst = k->cfg->daemon_run_dir;
    else if (strcmp(section, "daemon") == 0 && strcmp(name, "log_file") == 0)
        dst = k->cfg->daemon_log_file;
    else if (strcmp(section, "store") == 0 && strcmp(name, "path") == 0)
        dst = k->cfg->store_path;
    if (dst != NULL) {
        int n = value[0] != '/' && dst != k->cfg->daemon_instance && k->dir != NULL
                    ? snprintf(dst, CFG_STR_MAX + 1, "%s/%s", k->dir, value)
                    : snprintf(dst, CFG_STR_MAX + 1, "%s", value);
        if (n < 0 || n > CFG_STR_MAX)
            dst[0] = '\0';
    }
    return 1;
}

/*
 * Removes -c/--config, --instance, --run-dir and --log-file from ARGV (compacting it, ARGV[0]
 * kept), loads the config, and applies the overrides. Returns 0, or 2 after printing why.
 */
static int common_opts(const char *cmd, int *argc, char **argv, struct common_opts *o, int lenient)
{
    memset(o, 0, sizeof(*o));
    const char *given = NULL, *instance = NULL, *run_dir = NULL, *log_file = NULL;
    int out = 1;
    for (int i = 1; i < *argc; i++) {
        const char *a = argv[i];
        const char **slot = NULL;
        if (strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0)
            slot = &given;
        else if (strcmp(a, "--instance") == 0)
            slot = &instance;
        else if (strcmp(a, "--run-dir") == 0)
            slot = &run_dir;
        else if (strcmp(a, "--log-file") == 0)
            slot = &log_file;
        if (slot == NULL) {
            argv[out++] = argv[i];
            continue;
        }
        if (i + 1 >= *argc) {
            fprintf(stderr, "kdeals %s: %s needs a value\n", cmd, a);
            return 2;
        }
        *slot = argv[++i];
    }
    *argc = out;
    argv[out] = NULL;

    if (instance != NULL && !cfg_instance_valid(instance)) {
        fprintf(stderr,
                "kdeals %s: --instance '%s': an instance name is 1 to 32 letters, digits, '_' "
                "and '-'\n",
                cmd, instance);
        return 2;
    }
    if (given != NULL)
        o->config = given;
    else if (access("kdeals.conf", F_OK) == 0)
        o->config = "kdeals.conf";
    else if (access("/etc/kdeals/kdeals.conf", F_OK) == 0)
        o->config = "/etc/kdeals/kdeals.conf";
    /* Resolved once, now: a daemonised supervisor (in /) re-reads this very file on reload. */
    if (o->config != NULL && realpath(o->config, o->config_buf) != NULL)
        o->config = o->config_buf;
    cfg_defaults(&o->cfg);
    if (o->config != NULL) {
        char err[1024];
        int lrc = cfg_load_file(o->config, &o->cfg, err, sizeof(err));
        if (lrc == 0)
            lrc = cfg_named_check(&o->cfg, named_checkers, KD_ARRAY_LEN(named_checkers), err,
                                  sizeof(err));
        if (lrc != 0) {
            fprintf(stderr, "kdeals: %s\n", err);
            if (!lenient)
                return 2;
            /* Commands that talk to a running daemon must still find it when the file was
             * broken after the start: take its [daemon] keys alone. */
            char dir[PATH_MAX];
            snprintf(dir, sizeof(dir), "%s", o->config);
            char *slash = strrchr(dir, '/');
            if (slash != NULL)
                *slash = '\0';
            struct daemon_keys k = {&o->cfg, slash ? dir : NULL};
            cfg_defaults(&o->cfg);
            ini_parse(o->config, pick_daemon_keys, &k);
            fprintf(stderr, "kdeals %s: going on with instance '%s' from that file\n", cmd,
                    instance ? instance : o->cfg.daemon_instance);
        }
    }
    o->instance = instance ? instance : o->cfg.daemon_instance;
    if (!cfg_instance_valid(o->instance)) {
        fprintf(stderr, "kdeals %s: instance '%s' is not a valid instance name\n", cmd,
                o->instance);
        return 2;
    }
    if (run_dir != NULL)
        o->run_dir = absolute(run_dir, o->run_dir_buf, sizeof(o->run_dir_buf));
    else if (o->config != NULL)
        o->run_dir = absolute(o->cfg.daemon_run_dir, o->run_dir_buf, sizeof(o->run_dir_buf));
    else
        o->run_dir = default_run_dir(&o->cfg, o->run_dir_buf, sizeof(o->run_dir_buf));
    if (log_file != NULL)
        o->log_file = absolute(log_file, o->log_file_buf, sizeof(o->log_file_buf));
    else if (o->cfg.daemon_log_file[0] != '\0')
        o->log_file = absolute(o->cfg.daemon_log_file, o->log_file_buf, sizeof(o->log_file_buf));
    /* The store path too: readers (deals, status) look where the daemon writes. */
    if (o->cfg.store_path[0] != '/') {
        char buf[PATH_MAX];
        const char *abs = absolute(o->cfg.store_path, buf, sizeof(buf));
        if (abs == buf && strlen(buf) <= CFG_STR_MAX)
            memcpy(o->cfg.store_path, buf, strlen(buf) + 1);
    }
    return 0;
}

static int wants_help(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            return 1;
    }
    return 0;
}

static int reject_extra(const char *cmd, int argc, char **argv, int first)
{
    if (first < argc) {
        fprintf(stderr, "kdeals %s: unknown option '%s' (see kdeals %s --help)\n", cmd, argv[first],
                cmd);
        return 2;
    }
    return 0;
}

static void fill_sup_options(struct sup_options *opt, const struct common_opts *o)
{
    sup_options_defaults(opt);
    opt->config_path = o->config;
    opt->cfg = o->cfg;
    opt->instance = o->instance;
    opt->run_dir = o->run_dir;
    opt->log_file = o->log_file;
    opt->stop_timeout_ms = (unsigned)o->cfg.daemon_stop_timeout_ms;
    opt->named_checkers = named_checkers;
    opt->n_named_checkers = KD_ARRAY_LEN(named_checkers);
}

static int cmd_run(int argc, char **argv)
{
    if (wants_help(argc, argv)) {
        printf("usage: kdeals run [-c FILE] [--instance NAME] [--run-dir DIR] [--log-file FILE]\n"
               "  Runs the supervisor and its workers in the foreground (for systemd and\n"
               "  containers). Signals: TERM/INT graceful stop, QUIT immediate stop, HUP reload,\n"
               "  USR1 reopen the log file.\n");
        return 0;
    }
    struct common_opts o;
    int rc = common_opts("run", &argc, argv, &o, 0);
    if (rc != 0 || (rc = reject_extra("run", argc, argv, 1)) != 0)
        return rc;
    if (ensure_dir(o.run_dir) != 0)
        return 1;
    struct sup_options opt;
    fill_sup_options(&opt, &o);
    return sup_run(&opt);
}

static int cmd_start(int argc, char **argv)
{
    if (wants_help(argc, argv)) {
        printf("usage: kdeals start [-c FILE] [--wait] [--timeout S]\n"
               "  Starts the daemon in the background, logging to [daemon] log_file (default\n"
               "  <run_dir>/<instance>.log). --wait returns once every worker is ready, or\n"
               "  fails with the reason.\n");
        return 0;
    }
    struct common_opts o;
    int rc = common_opts("start", &argc, argv, &o, 0);
    if (rc != 0)
        return rc;
    int wait = 0, timeout = 30;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--wait") == 0 || strcmp(argv[i], "-w") == 0)
            wait = 1;
        else if (strcmp(argv[i], "--timeout") == 0 && i + 1 < argc)
            timeout = atoi(argv[++i]);
        else
            return reject_extra("start", argc, argv, i);
    }
    if (ensure_dir(o.run_dir) != 0)
        return 1;
    struct sup_options opt;
    fill_sup_options(&opt, &o);
    return cli_start(&opt, wait, timeout > 0 ? timeout : 30);
}

static int cmd_stop(int argc, char **argv)
{
    if (wants_help(argc, argv)) {
        printf("usage: kdeals stop [-c FILE] [--fast]\n"
               "  Graceful stop: workers finish the batch in flight, within [daemon]\n"
               "  stop_timeout, then are killed. --fast stops at once (SIGQUIT).\n");
        return 0;
    }
    struct common_opts o;
    int rc = common_opts("stop", &argc, argv, &o, 1);
    if (rc != 0)
        return rc;
    int fast = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--fast") == 0)
            fast = 1;
        else
            return reject_extra("stop", argc, argv, i);
    }
    return cli_stop(&o.cfg, o.instance, o.run_dir, fast);
}

static int cmd_reload(int argc, char **argv)
{
    if (wants_help(argc, argv)) {
        printf("usage: kdeals reload [-c FILE]\n"
               "  Asks the daemon to re-read its config file and prints the verdict: applied\n"
               "  (with the keys that changed), applied except keys that need a restart, or\n"
               "  rejected with the error (the running config stays; exit 2).\n");
        return 0;
    }
    struct common_opts o;
    int rc = common_opts("reload", &argc, argv, &o, 1);
    if (rc != 0 || (rc = reject_extra("reload", argc, argv, 1)) != 0)
        return rc;
    return cli_reload(&o.cfg, o.instance, o.run_dir);
}

static int cmd_status(int argc, char **argv)
{
    if (wants_help(argc, argv)) {
        printf("usage: kdeals status [-c FILE] [--json]\n"
               "  Supervisor and workers (pid, state, uptime, restarts, last exit, last\n"
               "  error), token balance and refill rate, stored deals. Exit 0 when running.\n");
        return 0;
    }
    struct common_opts o;
    int rc = common_opts("status", &argc, argv, &o, 1);
    if (rc != 0)
        return rc;
    int json = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0)
            json = 1;
        else
            return reject_extra("status", argc, argv, i);
    }
    return cli_status(&o.cfg, o.instance, o.run_dir, json);
}

static int cmd_stat(int argc, char **argv)
{
    struct common_opts o;
    int rc = common_opts("stat", &argc, argv, &o, 1);
    if (rc != 0)
        return rc;
    /* stat parses its own flags; hand it the instance and the run folder. */
    char *args[18];
    int n = 0;
    args[n++] = argv[0];
    args[n++] = "--instance";
    args[n++] = (char *)o.instance;
    args[n++] = "--run-dir";
    args[n++] = (char *)o.run_dir;
    for (int i = 1; i < argc && n < 17; i++)
        args[n++] = argv[i];
    args[n] = NULL;
    return cli_stat_main(n, args);
}

static int cmd_judge(int argc, char **argv)
{
    if (wants_help(argc, argv)) {
        char *help[] = {argv[0], "--help", NULL};
        return cli_judge_main(NULL, 2, help);
    }
    struct common_opts o;
    int rc = common_opts("judge", &argc, argv, &o, 1);
    if (rc != 0)
        return rc;
    return cli_judge_main(&o.cfg, argc, argv);
}

static int cmd_show(int argc, char **argv)
{
    if (wants_help(argc, argv)) {
        char *help[] = {argv[0], "--help", NULL};
        return cli_show_main(NULL, 2, help);
    }
    struct common_opts o;
    int rc = common_opts("show", &argc, argv, &o, 1);
    if (rc != 0)
        return rc;
    return cli_show_main(&o.cfg, argc, argv);
}

/*
 * `kdeals deals` reads one instance's store, or several marketplaces' instances as one view
 * when -c is given more than once: the first config is the command's (presets), every config
 * adds its store and its rules.
 */
static int cmd_deals(int argc, char **argv)
{
    if (wants_help(argc, argv)) {
        char *help[] = {argv[0], "--help", NULL};
        return cli_deals_main(NULL, 0, 2, help);
    }
    const char *more[CLI_DEALS_STORES_MAX];
    size_t n_more = 0;
    bool first_seen = false;
    int out = 1;
    for (int i = 1; i < argc; i++) {
        bool is_c = strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0;
        if (is_c && first_seen && i + 1 < argc) {
            if (n_more + 1 == CLI_DEALS_STORES_MAX) {
                fprintf(stderr, "kdeals deals: at most %d configs in one view\n",
                        CLI_DEALS_STORES_MAX);
                return 2;
            }
            more[n_more++] = argv[++i];
            continue;
        }
        first_seen |= is_c;
        argv[out++] = argv[i];
    }
    argc = out;
    argv[argc] = NULL;
    struct common_opts o;
    int rc = common_opts("deals", &argc, argv, &o, 1);
    if (rc != 0)
        return rc;
    static struct cfg extra[CLI_DEALS_STORES_MAX]; /* large: not on the stack */
    const struct cfg *cfgs[CLI_DEALS_STORES_MAX] = {&o.cfg};
    for (size_t k = 0; k < n_more; k++) {
        char err[1024];
        int lrc = cfg_load_file(more[k], &extra[k], err, sizeof(err));
        if (lrc == 0)
            lrc = cfg_named_check(&extra[k], named_checkers, KD_ARRAY_LEN(named_checkers), err,
                                  sizeof(err));
        if (lrc != 0) {
            fprintf(stderr, "kdeals deals: %s\n", err);
            return 2;
        }
        cfgs[k + 1] = &extra[k];
    }
    return cli_deals_main(cfgs, n_more + 1, argc, argv);
}

static int cmd_mark(int argc, char **argv)
{
    if (wants_help(argc, argv)) {
        char *help[] = {argv[0], "--help", NULL};
        return cli_mark_main(NULL, 2, help);
    }
    struct common_opts o;
    int rc = common_opts("mark", &argc, argv, &o, 1);
    if (rc != 0)
        return rc;
    return cli_mark_main(&o.cfg, argc, argv);
}

static int cmd_web(int argc, char **argv)
{
    if (wants_help(argc, argv)) {
        printf("usage: kdeals web [-c FILE] [--listen ADDR]\n"
               "  Serves the dashboard and the JSON API of the config's store (and of the\n"
               "  running daemon's counters, when it runs) in the foreground, until Ctrl-C;\n"
               "  for development: the daemon runs the same server itself when [web] listen\n"
               "  is set. ADDR is PORT, IP:PORT or [IPv6]:PORT (default [web] listen, else\n"
               "  127.0.0.1:8480); beyond loopback it needs [web] token_file.\n");
        return 0;
    }
    struct common_opts o;
    int rc = common_opts("web", &argc, argv, &o, 0);
    if (rc != 0)
        return rc;
    const char *listen = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--listen") == 0 && i + 1 < argc)
            listen = argv[++i];
        else
            return reject_extra("web", argc, argv, i);
    }
    return web_run(&o.cfg, o.instance, o.run_dir, listen);
}

static int cmd_alerts(int argc, char **argv)
{
    if (wants_help(argc, argv)) {
        char *help[] = {argv[0], "--help", NULL};
        return cli_alerts_main(NULL, 2, help);
    }
    struct common_opts o;
    int rc = common_opts("alerts", &argc, argv, &o, 0);
    if (rc != 0)
        return rc;
    return cli_alerts_main(&o.cfg, argc, argv);
}

static int cmd_check_config(int argc, char **argv)
{
    if (wants_help(argc, argv)) {
        printf("usage: kdeals check-config [-c FILE]\n"
               "  Validates the config (exit 2 with file:line and the reason when invalid) and\n"
               "  prints the effective values, the API key redacted.\n");
        return 0;
    }
    struct common_opts o;
    int rc = common_opts("check-config", &argc, argv, &o, 0);
    if (rc != 0 || (rc = reject_extra("check-config", argc, argv, 1)) != 0)
        return rc;
    /* The key is loaded the way `kdeals start` loads it, so a key file start would refuse
     * (mode, not a regular file, a link, unreadable) fails here too. */
    struct kd_keys keys;
    char err[1200];
    rc = kd_keys_load(&o.cfg, &keys, err, sizeof(err));
    kd_keys_wipe(&keys);
    if (rc != 0 && rc != -ENOKEY) {
        fprintf(stderr, "kdeals: %s\n", err);
        return 2;
    }
    printf("# %s\n", o.config ? o.config : "(no config file: built-in defaults)");
    if (rc == -ENOKEY)
        printf("# no Keepa API key: the daemon will run and spend nothing\n");
    cfg_print(&o.cfg, stdout);
    return 0;
}

/* `kdeals fetch`: one live Keepa request, with base_url and the key taken from the config. */
static int cmd_fetch(int argc, char **argv)
{
    struct common_opts o;
    if (wants_help(argc, argv)) {
        cfg_defaults(&o.cfg);
        return cli_fetch_main(&o.cfg, false, argc, argv);
    }
    int rc = common_opts("fetch", &argc, argv, &o, 0);
    if (rc != 0)
        return rc;
    return cli_fetch_main(&o.cfg, o.config != NULL, argc, argv);
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return usage(stderr);
    /* Operator commands log at KDEALS_LOG_LEVEL (error, warn, info, debug; default info). */
    enum kd_log_level level;
    const char *level_name = getenv("KDEALS_LOG_LEVEL");
    if (level_name != NULL && kd_log_parse_level(level_name, &level) == 0)
        kd_log_set_level(level);
    const char *cmd = argv[1];
    if (strcmp(cmd, WK_SPAWN_COMMAND) == 0) {
        /* The supervisor starting a worker (worker/spawn.h): every stage this binary has. */
        static const struct wk_stage *const stages[] = {&scanner_stage, &committer_stage,
                                                        &updater_stage, &web_stage, &outbox_stage};
        return wk_main(stages, KD_ARRAY_LEN(stages), argc - 1, argv + 1);
    }
    static const struct {
        const char *name;
        int (*fn)(int, char **);
    } cmds[] = {{"run", cmd_run},       {"start", cmd_start},
                {"stop", cmd_stop},     {"reload", cmd_reload},
                {"status", cmd_status}, {"stat", cmd_stat},
                {"deals", cmd_deals},   {"check-config", cmd_check_config},
                {"show", cmd_show},     {"judge", cmd_judge},
                {"mark", cmd_mark},     {"web", cmd_web},
                {"alerts", cmd_alerts}};
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
        if (strcmp(cmd, cmds[i].name) == 0)
            return cmds[i].fn(argc - 1, argv + 1);
    }
    if (strcmp(cmd, "decode") == 0)
        return cli_decode_main(argc - 1, argv + 1);
    if (strcmp(cmd, "fetch") == 0)
        return cmd_fetch(argc - 1, argv + 1);
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        printf("kdeals %s\n", KD_VERSION);
        return 0;
    }
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0)
        return usage(stdout);
    fprintf(stderr, "kdeals: unknown command '%s'\n", cmd);
    return usage(stderr);
}
