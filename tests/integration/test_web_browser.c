/*
 * test_web_browser.c: the dashboard in a real browser, served by a running daemon.
 *
 * Starts the simulator and the daemon with [web] listen, waits for deals, and runs
 * tests/browser/dashboard.mjs (Debian's chromium driven by playwright-core: what it checks is
 * in its first lines) against the published address. The new deal the page must announce live
 * is made here, not waited for: discovery starts limited to products of at least $30, and
 * when the script says its page is live (a line in its output) the limit is lifted by a
 * reload, so the next discovery walk commits deals the page has not seen. Its screenshots land in
 * the build folder (web-dashboard.png, web-dashboard-phone.png) on every run. tools/install-deps.sh
 * installs chromium, Node.js and the script's npm packages (`npm ci` in tests/browser); when the
 * packages are missing this test runs `npm ci` itself, so ctest alone works on a fresh clone
 * whose Debian packages are in.
 */
#include "kd_harness.h"
#include "kd_test.h"

#include "shm/counters.h"

#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define KEY "browser-test-key-4f1c2a"
#define DIR KD_SOURCE_DIR "/tests/browser"
/* Discovery walks again as soon as a walk ends, so a reload's selection applies at once. */
#define CONFIG "[web]\nlisten = 127.0.0.1:0\n[view.fast]\nsort = monthly\n[scan]\npass_pause = 0\n"
/* What dashboard.mjs prints when its page is live and it waits for a new deal. */
#define LIVE_LINE "waiting for a new deal"

static const char *const sim_args[] = {"--keys",        KEY,    "--seed",      "23",
                                       "--products",    "6000", "--minute-ms", "100",
                                       "--refill-rate", "200",  NULL};

/* Starts ARGV in CWD with its output to LOG; returns its pid. */
static pid_t spawn(const char *cwd, const char *const *argv, const char *log)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        if (chdir(cwd) != 0)
            _exit(126);
        execvp(argv[0], (char *const *)argv);
        _exit(127);
    }
    return pid;
}

/* Waits at most TIMEOUT_S for PID (then kills it and returns -1); returns its exit status. */
static int wait_exit(pid_t pid, int timeout_s)
{
    int status = 0;
    if (!KDH_WAIT_FOR(waitpid(pid, &status, WNOHANG) == pid, timeout_s)) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        return -1;
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* Runs ARGV in CWD with its output to LOG, for at most TIMEOUT_S; returns its exit status. */
static int run(const char *cwd, const char *const *argv, const char *log, int timeout_s)
{
    return wait_exit(spawn(cwd, argv, log), timeout_s);
}

/* True when the file at PATH contains NEEDLE. */
static int file_contains(const char *path, const char *needle)
{
    char *text = kd_read_file(path, NULL);
    int found = text != NULL && strstr(text, needle) != NULL;
    free(text);
    return found;
}

static void print_file(const char *path)
{
    char *text = kd_read_file(path, NULL);
    if (text != NULL)
        fputs(text, stdout);
    free(text);
}

static void test_dashboard_in_chromium(void **state)
{
    (void)state;
    kd_test_set_timeout(420);
    if (access("/usr/bin/chromium", X_OK) != 0)
        fail_msg("/usr/bin/chromium is missing: run tools/install-deps.sh (Debian's chromium)");
    char log[600];
    snprintf(log, sizeof(log), "%s/npm.log", kd_test_tmpdir());
    if (access(DIR "/node_modules/playwright-core/package.json", R_OK) != 0) {
        const char *npm[] = {"npm", "ci", "--no-audit", "--no-fund", NULL};
        if (run(DIR, npm, log, 300) != 0) {
            print_file(log);
            fail_msg("npm ci in %s failed (Node.js and npm: tools/install-deps.sh)", DIR);
        }
    }
    struct kdh_sim sim;
    struct kdh_daemon d;
    struct shm_segment seg;
    kdh_sim_start(&sim, sim_args);
    kdh_daemon_config(&d, &sim, KEY, 100, CONFIG "[scan]\nmin_price = 30\n");
    kdh_daemon_start(&d);
    kdh_daemon_attach(&d, &seg);
    if (!KDH_WAIT_FOR(atomic_load(&seg.layout->web.port) != 0, 20))
        fail_msg("the web role published no port (see %s)", d.log);
    if (!KDH_WAIT_FOR(shm_counter_total(seg.layout, SHM_C_deals_committed) >= 12, 120))
        fail_msg("fewer than 12 deals in 120 s (see %s)", d.log);
    char url[96];
    snprintf(url, sizeof(url), "http://127.0.0.1:%u/", atomic_load(&seg.layout->web.port));
    printf("    the dashboard at %s; screenshots in %s\n", url, KD_BUILD_DIR);
    snprintf(log, sizeof(log), "%s/browser.log", kd_test_tmpdir());
    const char *node[] = {"node", "dashboard.mjs", url, KD_BUILD_DIR, KEY, NULL};
    pid_t browser = spawn(DIR, node, log);
    int status = 0, exited = 0, reload_rc = 0;
    if (!KDH_WAIT_FOR((exited = waitpid(browser, &status, WNOHANG) == browser) ||
                          file_contains(log, LIVE_LINE),
                      330)) {
        kill(browser, SIGKILL);
        waitpid(browser, &status, 0);
        exited = 1;
        status = -1;
    }
    if (!exited) {
        /* The page is live: lift the price limit, so the next walk finds new deals. */
        kdh_daemon_rewrite(&d, &sim, KEY, 100, CONFIG);
        const char *reload[] = {"reload", NULL};
        char *out = NULL;
        reload_rc = kdh_cli(&d, reload, 60, &out);
        if (reload_rc != 0)
            printf("    kdeals reload exited %d: %s\n", reload_rc, out);
        free(out);
    }
    int rc = exited ? (status == -1        ? -1
                       : WIFEXITED(status) ? WEXITSTATUS(status)
                                           : 128 + WTERMSIG(status))
                    : wait_exit(browser, 330);
    print_file(log);
    int64_t restarts = 0;
    for (int r = 0; r < SHM_ROLE_COUNT; r++)
        restarts += atomic_load(&seg.layout->procs[r].restarts);
    shm_segment_detach(&seg);
    assert_int_equal(kdh_daemon_stop(&d), 0);
    kdh_sim_stop(&sim);
    if (rc != 0)
        fail_msg(
            "the dashboard failed in chromium (exit %d; see the lines above, %s/web-dashboard.png "
            "and %s)",
            rc, KD_BUILD_DIR, d.log);
    assert_int_equal(reload_rc, 0);
    assert_int_equal(restarts, 0);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dashboard_in_chromium),
    };
    return KD_RUN_TESTS(tests, argc, argv);
}
