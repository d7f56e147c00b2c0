/*
 * main.c: `kdeals` subcommand dispatch.
 *
 * One binary plays every role: the operator's commands, the supervisor (`run`) and, when the
 * supervisor re-executes it with `worker ROLE`, each worker process.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "committer/committer.h"
#include "common/config.h"
#include "common/log.h"
#include "scanner/scanner.h"
#include "supervisor/stat.h"
#include "supervisor/supervisor.h"
#include "updater/updater.h"

#define KD_VERSION "0.1.0"

static int usage(FILE *out)
{
    fprintf(out, "usage: kdeals COMMAND [options]\n"
                 "\n"
                 "commands:\n"
                 "  run     [-c FILE] [--instance NAME] [--run-dir DIR] [--log-file FILE]\n"
                 "          supervisor and workers in the foreground (TERM/INT stop, HUP reload)\n"
                 "  stat    [--instance NAME] [-1] [--json]   live counters from shared memory\n"
                 "  version                                   print the version\n"
                 "\n"
                 "Exit codes: 0 ok, 1 runtime failure, 2 usage or config error.\n");
    return out == stdout ? 0 : 2;
}

/* The default run_dir: $XDG_RUNTIME_DIR/kdeals, else /tmp/kdeals-<uid>, created 0700. */
static const char *default_run_dir(char *buf, size_t len)
{
    const char *xdg = getenv("XDG_RUNTIME_DIR");
    if (xdg != NULL && xdg[0] == '/')
        snprintf(buf, len, "%s/kdeals", xdg);
    else
        snprintf(buf, len, "/tmp/kdeals-%u", (unsigned)getuid());
    return buf;
}

static int ensure_dir(const char *dir)
{
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        fprintf(stderr, "kdeals: cannot create run_dir %s: %s\n", dir, strerror(errno));
        return -1;
    }
    return 0;
}

/*
 * Finds the config file: -c FILE, else ./kdeals.conf, else /etc/kdeals/kdeals.conf. Returns
 * the path, or NULL when none was given and neither default exists (then defaults apply).
 */
static const char *find_config(const char *given)
{
    if (given != NULL)
        return given;
    if (access("kdeals.conf", F_OK) == 0)
        return "kdeals.conf";
    if (access("/etc/kdeals/kdeals.conf", F_OK) == 0)
        return "/etc/kdeals/kdeals.conf";
    return NULL;
}

static int cmd_run(int argc, char **argv)
{
    struct sup_options opt;
    sup_options_defaults(&opt);
    const char *config = NULL;
    const char *instance = NULL, *run_dir = NULL, *log_file = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            printf("usage: kdeals run [-c FILE] [--instance NAME] [--run-dir DIR] "
                   "[--log-file FILE]\n"
                   "  Runs the supervisor and its workers in the foreground.\n"
                   "  -c FILE defaults to ./kdeals.conf, then /etc/kdeals/kdeals.conf; the\n"
                   "  other options override the file's [daemon] keys.\n"
                   "  Signals: TERM/INT graceful stop, QUIT immediate stop, HUP reload,\n"
                   "  USR1 reopen the log file.\n");
            return 0;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "kdeals run: unknown or incomplete option '%s'\n", a);
            return 2;
        }
        if (strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0)
            config = argv[++i];
        else if (strcmp(a, "--instance") == 0)
            instance = argv[++i];
        else if (strcmp(a, "--run-dir") == 0)
            run_dir = argv[++i];
        else if (strcmp(a, "--log-file") == 0)
            log_file = argv[++i];
        else {
            fprintf(stderr, "kdeals run: unknown option '%s'\n", a);
            return 2;
        }
    }
    opt.config_path = find_config(config);
    if (opt.config_path != NULL) {
        char err[512];
        if (cfg_load_file(opt.config_path, &opt.cfg, err, sizeof(err)) != 0) {
            fprintf(stderr, "kdeals: %s\n", err);
            return 2;
        }
    }
    char default_dir[512];
    opt.instance = instance ? instance : opt.cfg.daemon_instance;
    if (run_dir != NULL)
        opt.run_dir = run_dir;
    else if (opt.config_path != NULL)
        opt.run_dir = opt.cfg.daemon_run_dir;
    else
        opt.run_dir = default_run_dir(default_dir, sizeof(default_dir));
    if (log_file != NULL)
        opt.log_file = log_file;
    else if (opt.cfg.daemon_log_file[0] != '\0')
        opt.log_file = opt.cfg.daemon_log_file;
    opt.stop_timeout_ms = (unsigned)opt.cfg.daemon_stop_timeout_ms;
    if (ensure_dir(opt.run_dir) != 0)
        return 1;
    return sup_run(&opt);
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return usage(stderr);
    const char *cmd = argv[1];
    if (strcmp(cmd, "worker") == 0 && argc >= 3) {
        if (strcmp(argv[2], "scanner") == 0)
            return scanner_main(argc - 2, argv + 2);
        if (strcmp(argv[2], "committer") == 0)
            return committer_main(argc - 2, argv + 2);
        if (strcmp(argv[2], "updater") == 0)
            return updater_main(argc - 2, argv + 2);
        fprintf(stderr, "kdeals worker: unknown role '%s'\n", argv[2]);
        return 2;
    }
    if (strcmp(cmd, "run") == 0)
        return cmd_run(argc - 1, argv + 1);
    if (strcmp(cmd, "stat") == 0)
        return sup_stat_main(argc - 1, argv + 1);
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        printf("kdeals %s\n", KD_VERSION);
        return 0;
    }
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0)
        return usage(stdout);
    fprintf(stderr, "kdeals: unknown command '%s'\n", cmd);
    return usage(stderr);
}
