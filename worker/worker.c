/*
 * worker.c: the runtime shared by the scanner, committer and updater. See worker.h.
 *
 * Dying with the supervisor matters: a worker that outlives it would keep spending tokens
 * with nobody watching. PR_SET_PDEATHSIG covers the normal case; the heartbeat timer also
 * checks getppid() and the segment (retired or replaced means a new supervisor took over)
 * and exits, because the death signal is lost if the parent died before prctl ran.
 */
#include "worker/worker.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/log.h"

#define WK_HEARTBEAT_MS 500

static void heartbeat(uv_timer_t *t)
{
    struct wk *wk = t->data;
    atomic_store_explicit(&wk->slot->heartbeat_ms, kd_wall_ms(), memory_order_relaxed);
    if ((int64_t)getppid() != wk->supervisor_pid) {
        kd_error("supervisor pid %lld is gone; exiting", (long long)wk->supervisor_pid);
        wk->stopping = true;
        uv_stop(wk->loop);
        return;
    }
    if (shm_segment_check(&wk->seg) != 0) {
        kd_error("segment %s was replaced or removed; exiting", wk->seg.name);
        wk->stopping = true;
        uv_stop(wk->loop);
    }
}

/* Loads the config the supervisor published. Returns 0, or a negative errno. */
static int load_config(struct wk *wk)
{
    static uint8_t buf[SHM_CONFIG_MAX];
    size_t len = 0;
    int64_t gen = shm_config_read(wk->seg.layout, buf, sizeof(buf), &len);
    if (gen <= 0)
        return gen == 0 ? -ENOENT : (int)gen;
    if (gen == wk->cfg_generation)
        return 0;
    struct cfg next;
    int rc = cfg_decode(buf, len, &next);
    if (rc != 0)
        return rc;
    wk->cfg = next;
    wk->cfg_generation = gen;
    enum kd_log_level level = (enum kd_log_level)wk->cfg.daemon_log_level;
    kd_log_set_level(level);
    return 0;
}

/* Reads the key from the pipe at fd 6 (closed afterwards). An empty pipe means no key. */
static void read_key(struct wk *wk)
{
    size_t n = 0;
    for (;;) {
        ssize_t r = read(WK_KEY_FD, wk->key + n, sizeof(wk->key) - 1 - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        n += (size_t)r;
        if (n == sizeof(wk->key) - 1)
            break;
    }
    close(WK_KEY_FD);
    wk->key[n] = '\0';
    while (n > 0 && (wk->key[n - 1] == '\n' || wk->key[n - 1] == '\r' || wk->key[n - 1] == ' '))
        wk->key[--n] = '\0';
    if (n > 0)
        kd_log_add_secret(wk->key);
}

static void default_stop(struct wk *wk)
{
    wk_stop(wk);
}

static void on_signal(uv_signal_t *s, int signum)
{
    struct wk *wk = s->data;
    switch (signum) {
    case SIGHUP: {
        int rc = load_config(wk);
        if (rc != 0)
            kd_error("reload: cannot load the published config: %s", strerror(-rc));
        else if (wk->on_reload != NULL)
            wk->on_reload(wk);
        break;
    }
    case SIGUSR1:
        if (kd_log_open(wk->log_file) != 0)
            kd_error("cannot reopen log file %s", wk->log_file);
        break;
    case SIGQUIT:
        kd_info("SIGQUIT: exiting now");
        wk->stopping = true;
        uv_stop(wk->loop);
        break;
    default:
        if (!wk->stopping) {
            kd_info("%s: stopping", signum == SIGTERM ? "SIGTERM" : "SIGINT");
            wk->stopping = true;
            wk_set_state(wk, SHM_PROC_STOPPING);
            wk->on_stop(wk);
        }
        break;
    }
}

static void start_signal(struct wk *wk, uv_signal_t *s, int signum)
{
    uv_signal_init(wk->loop, s);
    s->data = wk;
    uv_signal_start(s, on_signal, signum);
}

int wk_start(struct wk *wk, enum shm_role role, uv_loop_t *loop, int argc, char **argv)
{
    memset(wk, 0, sizeof(*wk));
    wk->role = role;
    wk->loop = loop;
    wk->on_stop = default_stop;
    kd_log_set_role(shm_role_name(role));
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    prctl(PR_SET_DUMPABLE, 0); /* it will hold the API key */
    read_key(wk);
    char comm[16];
    snprintf(comm, sizeof(comm), "kdeals-%s", shm_role_name(role));
    prctl(PR_SET_NAME, comm);

    const char *instance = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--instance") == 0 && i + 1 < argc)
            instance = argv[++i];
        else if (strcmp(argv[i], "--log-file") == 0 && i + 1 < argc)
            wk->log_file = argv[++i];
    }
    if (wk->log_file != NULL && kd_log_open(wk->log_file) != 0)
        kd_error("cannot open log file %s; logging to stderr", wk->log_file);
    if (instance == NULL) {
        kd_error("usage: kdeals worker %s --instance NAME (started by the supervisor)",
                 shm_role_name(role));
        return -EINVAL;
    }
    char err[256];
    int rc = shm_segment_attach(&wk->seg, instance, SHM_READ_WRITE, err, sizeof(err));
    if (rc != 0) {
        kd_error("%s", err);
        return rc;
    }
    struct shm_layout *l = wk->seg.layout;
    wk->supervisor_pid = l->header.supervisor_pid;
    if ((int64_t)getppid() != wk->supervisor_pid) {
        kd_error("parent %d is not the supervisor %lld of this segment; exiting", (int)getppid(),
                 (long long)wk->supervisor_pid);
        shm_segment_detach(&wk->seg);
        return -ESRCH;
    }
    rc = load_config(wk);
    if (rc != 0) {
        kd_error("cannot load the config from %s: %s", wk->seg.name, strerror(-rc));
        shm_segment_detach(&wk->seg);
        return rc;
    }
    wk->slot = &l->procs[role];
    wk->counters = &l->counters[role];
    for (int i = 0; i < SHM_RING_COUNT; i++) {
        rc = ring_open(&wk->rings[i], &l->rings[i], shm_segment_ring_data(&wk->seg, i),
                       WK_FIRST_WAKE_FD + i);
        if (rc != 0) {
            kd_error("ring %d of %s is corrupt", i, wk->seg.name);
            shm_segment_detach(&wk->seg);
            return rc;
        }
    }
    atomic_store(&wk->slot->pid, (int64_t)getpid());
    atomic_store(&wk->slot->started_ms, kd_wall_ms());
    atomic_store(&wk->slot->heartbeat_ms, kd_wall_ms());
    wk_set_state(wk, SHM_PROC_STARTING);

    start_signal(wk, &wk->sig_term, SIGTERM);
    start_signal(wk, &wk->sig_int, SIGINT);
    start_signal(wk, &wk->sig_quit, SIGQUIT);
    start_signal(wk, &wk->sig_hup, SIGHUP);
    start_signal(wk, &wk->sig_usr1, SIGUSR1);
    uv_timer_init(loop, &wk->heartbeat);
    wk->heartbeat.data = wk;
    uv_timer_start(&wk->heartbeat, heartbeat, WK_HEARTBEAT_MS, WK_HEARTBEAT_MS);
    return 0;
}

void wk_set_state(struct wk *wk, enum shm_proc_state state)
{
    atomic_store_explicit(&wk->slot->state, (uint32_t)state, memory_order_release);
}

void wk_set_error(struct wk *wk, const char *fmt, ...)
{
    char msg[SHM_MESSAGE_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    char clean[SHM_MESSAGE_MAX];
    kd_redact(msg, clean, sizeof(clean));
    memcpy(wk->slot->last_error, clean, sizeof(clean));
}

void wk_stop(struct wk *wk)
{
    wk->stopping = true;
    uv_timer_stop(&wk->heartbeat);
    uv_signal_stop(&wk->sig_hup);
    uv_close((uv_handle_t *)&wk->heartbeat, NULL);
    uv_close((uv_handle_t *)&wk->sig_term, NULL);
    uv_close((uv_handle_t *)&wk->sig_int, NULL);
    uv_close((uv_handle_t *)&wk->sig_quit, NULL);
    uv_close((uv_handle_t *)&wk->sig_hup, NULL);
    uv_close((uv_handle_t *)&wk->sig_usr1, NULL);
}

static void close_any(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

int wk_run(struct wk *wk)
{
    uv_run(wk->loop, UV_RUN_DEFAULT);
    /* Stopped early (QUIT, supervisor gone): close what is still open, then the loop. */
    uv_walk(wk->loop, close_any, NULL);
    uv_run(wk->loop, UV_RUN_DEFAULT);
    uv_loop_close(wk->loop);
    wk_set_state(wk, SHM_PROC_EXITED);
    atomic_store(&wk->slot->pid, 0);
    shm_segment_detach(&wk->seg);
    memset(wk->key, 0, sizeof(wk->key));
    return 0;
}
