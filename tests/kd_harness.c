/*
 * kd_harness.c: simulator and daemon processes for integration tests. See kd_harness.h.
 */
#include "kd_harness.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "kd_test.h"

#define SIM_BIN    KD_BUILD_DIR "/kdeals-sim"
#define KDEALS_BIN KD_BUILD_DIR "/kdeals"

void kdh_nap_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

void kdh_sim_start(struct kdh_sim *sim, const char *const *args)
{
    if (access(SIM_BIN, X_OK) != 0 || access(KDEALS_BIN, X_OK) != 0)
        kd_test_skip("kdeals or kdeals-sim not built");
    memset(sim, 0, sizeof(*sim));
    char port_file[600], log_file[600];
    snprintf(port_file, sizeof(port_file), "%s/sim%d.port", kd_test_tmpdir(), (int)getpid());
    snprintf(log_file, sizeof(log_file), "%s/sim%d.log", kd_test_tmpdir(), (int)getpid());
    unlink(port_file);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fd = open(log_file, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        const char *argv[64];
        int n = 0;
        argv[n++] = SIM_BIN;
        argv[n++] = "--port-file";
        argv[n++] = port_file;
        argv[n++] = "--quiet";
        for (int i = 0; args != NULL && args[i] != NULL && n < 62; i++)
            argv[n++] = args[i];
        argv[n] = NULL;
        execv(SIM_BIN, (char *const *)argv);
        _exit(127);
    }
    sim->pid = pid;
    int ok = KDH_WAIT_FOR(({
                              FILE *f = fopen(port_file, "r");
                              int p = 0;
                              if (f != NULL) {
                                  if (fscanf(f, "%d", &p) != 1)
                                      p = 0;
                                  fclose(f);
                              }
                              sim->port = p;
                              p > 0 || waitpid(pid, NULL, WNOHANG) == pid;
                          }),
                          20);
    if (!ok || sim->port <= 0)
        fail_msg("kdeals-sim did not start (see %s)", log_file);
    snprintf(sim->base, sizeof(sim->base), "http://127.0.0.1:%d", sim->port);
}

void kdh_sim_stop(struct kdh_sim *sim)
{
    if (sim->pid > 0) {
        kill(sim->pid, SIGTERM);
        waitpid(sim->pid, NULL, 0);
        sim->pid = 0;
    }
}

struct body {
    char *p;
    size_t n;
};

static size_t body_write(char *p, size_t s, size_t n, void *ud)
{
    struct body *b = ud;
    char *q = realloc(b->p, b->n + s * n + 1);
    if (q == NULL)
        return 0;
    memcpy(q + b->n, p, s * n);
    b->n += s * n;
    q[b->n] = '\0';
    b->p = q;
    return s * n;
}

static yajl_val request(const struct kdh_sim *sim, const char *path, int post)
{
    char url[8192];
    snprintf(url, sizeof(url), "%s%s", sim->base, path);
    struct body b = {NULL, 0};
    CURL *e = curl_easy_init();
    assert_non_null(e);
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
    curl_easy_setopt(e, CURLOPT_TIMEOUT, 20L);
    if (post) {
        curl_easy_setopt(e, CURLOPT_POST, 1L);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, "");
    }
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, body_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, &b);
    CURLcode rc = curl_easy_perform(e);
    curl_easy_cleanup(e);
    if (rc != CURLE_OK || b.p == NULL)
        fail_msg("simulator request %s failed: %s", path, curl_easy_strerror(rc));
    char err[256];
    yajl_val v = yajl_tree_parse(b.p, err, sizeof(err));
    if (v == NULL)
        fail_msg("simulator answer to %s is not JSON: %s", path, err);
    free(b.p);
    return v;
}

yajl_val kdh_sim_get(const struct kdh_sim *sim, const char *path)
{
    return request(sim, path, 0);
}

yajl_val kdh_sim_post(const struct kdh_sim *sim, const char *path)
{
    return request(sim, path, 1);
}

static int64_t jint_va(yajl_val v, va_list ap)
{
    const char *path[8];
    int n = 0;
    const char *k;
    while ((k = va_arg(ap, const char *)) != NULL && n < 7)
        path[n++] = k;
    path[n] = NULL;
    yajl_val x = yajl_tree_get(v, path, yajl_t_number);
    if (x == NULL || !YAJL_IS_INTEGER(x))
        fail_msg("no integer at %s%s%s", path[0], n > 1 ? "." : "", n > 1 ? path[1] : "");
    return YAJL_GET_INTEGER(x);
}

int64_t kdh_jint(yajl_val v, ...)
{
    va_list ap;
    va_start(ap, v);
    int64_t r = jint_va(v, ap);
    va_end(ap);
    return r;
}

int64_t kdh_sim_stat(const struct kdh_sim *sim, ...)
{
    yajl_val v = kdh_sim_get(sim, "/_sim/stats");
    va_list ap;
    va_start(ap, sim);
    int64_t r = jint_va(v, ap);
    va_end(ap);
    yajl_tree_free(v);
    return r;
}

void kdh_daemon_config(struct kdh_daemon *d, const struct kdh_sim *sim, const char *key,
                       int minute_ms, const char *extra)
{
    memset(d, 0, sizeof(*d));
    static unsigned n;
    snprintf(d->dir, sizeof(d->dir), "%s/d%d-%u", kd_test_tmpdir(), (int)getpid(), n++);
    mkdir(d->dir, 0700);
    snprintf(d->conf, sizeof(d->conf), "%s/kdeals.conf", d->dir);
    snprintf(d->store, sizeof(d->store), "%s/store", d->dir);
    snprintf(d->run_dir, sizeof(d->run_dir), "%s/run", d->dir);
    snprintf(d->log, sizeof(d->log), "%s/kdeals.log", d->dir);
    snprintf(d->instance, sizeof(d->instance), "%s", kd_test_instance());
    mkdir(d->run_dir, 0700);
    char key_path[700];
    snprintf(key_path, sizeof(key_path), "%s/key", d->dir);
    FILE *f = fopen(key_path, "w");
    assert_non_null(f);
    fprintf(f, "%s\n", key);
    fclose(f);
    chmod(key_path, 0600);
    f = fopen(d->conf, "w");
    assert_non_null(f);
    fprintf(f,
            "[keepa]\nbase_url = %s\nkey_file = %s\n"
            "[daemon]\ninstance = %s\nrun_dir = %s\nlog_file = %s\nstop_timeout = 10s\n"
            "[store]\npath = %s\nmap_size_mb = 64\n"
            "[tokens]\nminute = %dms\n%s",
            sim->base, key_path, d->instance, d->run_dir, d->log, d->store, minute_ms,
            extra ? extra : "");
    fclose(f);
}

static int running_as(const struct kdh_daemon *d)
{
    struct shm_status st;
    return shm_status_read(d->run_dir, d->instance, &st) == 0 && st.pid == d->pid && st.locked &&
           strcmp(st.state, "running") == 0;
}

void kdh_daemon_start(struct kdh_daemon *d)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fd = open(d->log, O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (fd >= 0)
            dup2(fd, 2);
        execl(KDEALS_BIN, KDEALS_BIN, "run", "-c", d->conf, (char *)NULL);
        _exit(127);
    }
    d->pid = pid;
    if (!KDH_WAIT_FOR(running_as(d) || waitpid(pid, NULL, WNOHANG) == pid, 20) || !running_as(d))
        fail_msg("kdeals did not start (see %s)", d->log);
}

int kdh_daemon_stop(struct kdh_daemon *d)
{
    if (d->pid <= 0)
        return -1;
    kill(d->pid, SIGTERM);
    int status = 0;
    int reaped = KDH_WAIT_FOR(waitpid(d->pid, &status, WNOHANG) == d->pid, 30);
    if (!reaped) {
        kill(d->pid, SIGKILL);
        waitpid(d->pid, &status, 0);
    }
    d->pid = 0;
    if (!reaped)
        return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

void kdh_daemon_attach(const struct kdh_daemon *d, struct shm_segment *seg)
{
    char err[256];
    if (shm_segment_attach(seg, d->instance, SHM_READ_ONLY, err, sizeof(err)) != 0)
        fail_msg("attach: %s", err);
}

int kdh_log_contains(const struct kdh_daemon *d, const char *needle)
{
    char *text = kd_read_file(d->log, NULL);
    int found = text != NULL && strstr(text, needle) != NULL;
    free(text);
    return found;
}
