/*
 * supervisor.c: spawn, watch, restart and stop the workers. See supervisor.h.
 *
 * Start order is committer -> updater -> scanner, so every consumer is running before its
 * producer; stop order is the reverse, so producers stop first and consumers can drain.
 * A worker that exits while the daemon is not stopping is restarted after a backoff that
 * doubles from 100 ms to 30 s and resets once the worker has stayed up for a minute; more
 * than restart_max restarts of one role inside restart_window_s stops the whole daemon with
 * an error, because a worker that cannot stay up is a fault an operator must see.
 */
#include "supervisor/supervisor.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/kd_assert.h"
#include "shm/counters.h"
#include "shm/segment.h"

#define SUP_BACKOFF_MIN_MS 100
#define SUP_BACKOFF_MAX_MS 30000
#define SUP_STABLE_MS      60000
#define SUP_WORKERS        3

static const enum shm_role start_order[SUP_WORKERS] = {SHM_ROLE_COMMITTER, SHM_ROLE_UPDATER,
                                                       SHM_ROLE_SCANNER};

struct sup;

struct sup_child {
    struct sup *sup;
    enum shm_role role;
    uv_process_t proc;
    uv_timer_t restart_timer;
    int running;
    unsigned backoff_ms;
    int64_t started_ns;
    int64_t recent_restart_ns[16];
    unsigned recent_count;
};

struct sup {
    const struct sup_options *opt;
    uv_loop_t *loop;
    struct shm_segment seg;
    int wake_fds[SHM_RING_COUNT];
    char exe[PATH_MAX];
    struct sup_child children[SHM_ROLE_COUNT];
    uv_signal_t sig_term, sig_int, sig_quit, sig_hup, sig_usr1;
    uv_timer_t stop_timer, state_timer;
    int stopping;
    int exit_code;
    int running_announced;
};

void sup_options_defaults(struct sup_options *opt)
{
    memset(opt, 0, sizeof(*opt));
    opt->instance = "default";
    opt->run_dir = NULL;
    opt->restart_max = 5;
    opt->restart_window_s = 60;
    opt->stop_timeout_ms = 10000;
}

static int spawn_child(struct sup_child *c);

static void close_cb_noop(uv_handle_t *h)
{
    (void)h;
}

static int children_running(const struct sup *s)
{
    int n = 0;
    for (int i = 0; i < SHM_ROLE_COUNT; i++)
        n += s->children[i].running;
    return n;
}

static void finish(struct sup *s)
{
    uv_timer_stop(&s->stop_timer);
    uv_timer_stop(&s->state_timer);
    uv_close((uv_handle_t *)&s->stop_timer, close_cb_noop);
    uv_close((uv_handle_t *)&s->state_timer, close_cb_noop);
    uv_close((uv_handle_t *)&s->sig_term, close_cb_noop);
    uv_close((uv_handle_t *)&s->sig_int, close_cb_noop);
    uv_close((uv_handle_t *)&s->sig_quit, close_cb_noop);
    uv_close((uv_handle_t *)&s->sig_hup, close_cb_noop);
    uv_close((uv_handle_t *)&s->sig_usr1, close_cb_noop);
    for (int i = 0; i < SUP_WORKERS; i++) {
        struct sup_child *c = &s->children[start_order[i]];
        uv_timer_stop(&c->restart_timer);
        uv_close((uv_handle_t *)&c->restart_timer, close_cb_noop);
    }
}

/* Sends SIGTERM to the next running worker in stop order; the rest follow as each exits. */
static void stop_next(struct sup *s)
{
    for (int i = SUP_WORKERS - 1; i >= 0; i--) {
        struct sup_child *c = &s->children[start_order[i]];
        if (c->running) {
            uv_process_kill(&c->proc, SIGTERM);
            return;
        }
    }
    finish(s);
}

static void on_stop_deadline(uv_timer_t *t)
{
    struct sup *s = t->data;
    for (int i = 0; i < SHM_ROLE_COUNT; i++) {
        struct sup_child *c = &s->children[i];
        if (c->running) {
            kd_warn("%s pid %d did not stop within %u ms: SIGKILL", shm_role_name(c->role),
                    c->proc.pid, s->opt->stop_timeout_ms);
            uv_process_kill(&c->proc, SIGKILL);
        }
    }
}

static void begin_stop(struct sup *s, int immediate)
{
    if (s->stopping && !immediate)
        return;
    s->stopping = 1;
    atomic_store(&s->seg.layout->procs[SHM_ROLE_SUPERVISOR].state, SHM_PROC_STOPPING);
    shm_status_write(&s->seg, "stopping");
    for (int i = 0; i < SHM_ROLE_COUNT; i++)
        uv_timer_stop(&s->children[i].restart_timer);
    if (immediate) {
        for (int i = 0; i < SHM_ROLE_COUNT; i++) {
            if (s->children[i].running)
                uv_process_kill(&s->children[i].proc, SIGKILL);
        }
    } else {
        uv_timer_start(&s->stop_timer, on_stop_deadline, s->opt->stop_timeout_ms, 0);
    }
    if (children_running(s) == 0)
        finish(s);
    else if (!immediate)
        stop_next(s);
}

static void on_restart_timer(uv_timer_t *t)
{
    struct sup_child *c = t->data;
    if (!c->sup->stopping && spawn_child(c) != 0)
        begin_stop(c->sup, 0);
}

static void on_child_exit(uv_process_t *p, int64_t exit_status, int term_signal)
{
    struct sup_child *c = p->data;
    struct sup *s = c->sup;
    struct shm_proc_slot *slot = &s->seg.layout->procs[c->role];
    c->running = 0;
    int wait_status = term_signal ? term_signal : (int)((exit_status & 0xff) << 8);
    atomic_store(&slot->last_exit_status, wait_status);
    atomic_store(&slot->state, SHM_PROC_EXITED);
    atomic_store(&slot->pid, 0);
    uv_close((uv_handle_t *)p, close_cb_noop);

    if (s->stopping) {
        kd_info("%s exited (%s %d)", shm_role_name(c->role), term_signal ? "signal" : "status",
                term_signal ? term_signal : (int)exit_status);
        stop_next(s);
        return;
    }
    kd_warn("%s pid %d died (%s %d)", shm_role_name(c->role), p->pid,
            term_signal ? "signal" : "status", term_signal ? term_signal : (int)exit_status);

    int64_t now = kd_mono_ns();
    if (now - c->started_ns > (int64_t)SUP_STABLE_MS * KD_NS_PER_MS)
        c->backoff_ms = 0;
    c->backoff_ms = c->backoff_ms == 0 ? SUP_BACKOFF_MIN_MS : c->backoff_ms * 2;
    if (c->backoff_ms > SUP_BACKOFF_MAX_MS)
        c->backoff_ms = SUP_BACKOFF_MAX_MS;

    /* Restart intensity: count restarts inside the window. */
    unsigned n = 0;
    int64_t window = (int64_t)s->opt->restart_window_s * KD_NS_PER_SEC;
    for (unsigned i = 0; i < c->recent_count; i++) {
        if (now - c->recent_restart_ns[i] <= window)
            c->recent_restart_ns[n++] = c->recent_restart_ns[i];
    }
    c->recent_count = n;
    if (n >= s->opt->restart_max) {
        kd_error("%s died %u times within %u s: stopping the daemon (see the worker's log "
                 "lines above for the cause)",
                 shm_role_name(c->role), n + 1, s->opt->restart_window_s);
        s->exit_code = 1;
        begin_stop(s, 0);
        return;
    }
    if (c->recent_count < KD_ARRAY_LEN(c->recent_restart_ns))
        c->recent_restart_ns[c->recent_count++] = now;
    atomic_fetch_add(&slot->restarts, 1);
    shm_counter_add(&s->seg.layout->counters[SHM_ROLE_SUPERVISOR], SHM_C_restarts, 1);
    kd_info("restarting %s in %u ms", shm_role_name(c->role), c->backoff_ms);
    uv_timer_start(&c->restart_timer, on_restart_timer, c->backoff_ms, 0);
}

static int spawn_child(struct sup_child *c)
{
    struct sup *s = c->sup;
    char title[64];
    snprintf(title, sizeof(title), "kdeals: %s", shm_role_name(c->role));
    char *args[] = {title,
                    "worker",
                    (char *)shm_role_name(c->role),
                    "--instance",
                    (char *)s->opt->instance,
                    s->opt->log_file ? "--log-file" : NULL,
                    (char *)s->opt->log_file,
                    NULL};
    uv_stdio_container_t stdio[3 + SHM_RING_COUNT];
    for (int i = 0; i < 3; i++) {
        stdio[i].flags = UV_INHERIT_FD;
        stdio[i].data.fd = i;
    }
    for (int i = 0; i < SHM_RING_COUNT; i++) {
        stdio[3 + i].flags = UV_INHERIT_FD;
        stdio[3 + i].data.fd = s->wake_fds[i];
    }
    uv_process_options_t po;
    memset(&po, 0, sizeof(po));
    po.file = s->exe;
    po.args = args;
    po.exit_cb = on_child_exit;
    po.stdio = stdio;
    po.stdio_count = 3 + SHM_RING_COUNT;
    /* Workers get a clean environment without the key; they read it from the key file. */
    static char *const env[] = {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                                NULL};
    po.env = (char **)env;
    c->proc.data = c;
    int rc = uv_spawn(s->loop, &c->proc, &po);
    if (rc != 0) {
        kd_error("cannot start %s (%s): %s", shm_role_name(c->role), s->exe, uv_strerror(rc));
        return rc;
    }
    c->running = 1;
    c->started_ns = kd_mono_ns();
    kd_info("started %s pid %d", shm_role_name(c->role), c->proc.pid);
    return 0;
}

static void on_signal(uv_signal_t *h, int signum)
{
    struct sup *s = h->data;
    switch (signum) {
    case SIGTERM:
    case SIGINT:
        kd_info("%s: graceful stop", signum == SIGTERM ? "SIGTERM" : "SIGINT");
        begin_stop(s, 0);
        break;
    case SIGQUIT:
        kd_info("SIGQUIT: immediate stop");
        begin_stop(s, 1);
        break;
    case SIGHUP:
        kd_info("SIGHUP: reload");
        for (int i = 0; i < SHM_ROLE_COUNT; i++) {
            if (s->children[i].running)
                uv_process_kill(&s->children[i].proc, SIGHUP);
        }
        break;
    case SIGUSR1: {
        int rc = kd_log_open(s->opt->log_file);
        if (rc != 0)
            kd_error("cannot reopen log file %s: %s", s->opt->log_file, strerror(-rc));
        else
            kd_info("log reopened");
        for (int i = 0; i < SHM_ROLE_COUNT; i++) {
            if (s->children[i].running)
                uv_process_kill(&s->children[i].proc, SIGUSR1);
        }
        break;
    }
    default:
        break;
    }
}

/* Publishes "running" once every worker has said it is ready, and keeps the heartbeat. */
static void on_state_timer(uv_timer_t *t)
{
    struct sup *s = t->data;
    struct shm_layout *l = s->seg.layout;
    atomic_store(&l->procs[SHM_ROLE_SUPERVISOR].heartbeat_ms, kd_wall_ms());
    if (s->running_announced || s->stopping)
        return;
    for (int i = 0; i < SUP_WORKERS; i++) {
        if (atomic_load(&l->procs[start_order[i]].state) != SHM_PROC_READY)
            return;
    }
    s->running_announced = 1;
    shm_status_write(&s->seg, "running");
    kd_info("all workers ready");
}

static void start_signal(struct sup *s, uv_signal_t *h, int signum)
{
    uv_signal_init(s->loop, h);
    h->data = s;
    uv_signal_start(h, on_signal, signum);
}

int sup_run(const struct sup_options *opt)
{
    struct sup *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return 1;
    s->opt = opt;
    kd_log_set_role("supervisor");
    if (opt->log_file != NULL) {
        int rc = kd_log_open(opt->log_file);
        if (rc != 0) {
            kd_error("cannot open log file %s: %s", opt->log_file, strerror(-rc));
            free(s);
            return 1;
        }
    }
    ssize_t n = readlink("/proc/self/exe", s->exe, sizeof(s->exe) - 1);
    if (n <= 0) {
        kd_error("cannot find my own executable: %s", strerror(errno));
        free(s);
        return 1;
    }
    s->exe[n] = '\0';

    struct shm_segment_options so = {.instance = opt->instance, .run_dir = opt->run_dir};
    for (int i = 0; i < SHM_RING_COUNT; i++)
        so.ring_capacity[i] = opt->ring_capacity;
    char err[512];
    int rc = shm_segment_create(&s->seg, &so, err, sizeof(err));
    if (rc != 0) {
        kd_error("%s", err);
        free(s);
        return 1;
    }
    for (int i = 0; i < SHM_RING_COUNT; i++) {
        s->wake_fds[i] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (s->wake_fds[i] < 0) {
            kd_error("eventfd: %s", strerror(errno));
            shm_segment_destroy(&s->seg);
            free(s);
            return 1;
        }
    }
    struct shm_layout *l = s->seg.layout;
    atomic_store(&l->procs[SHM_ROLE_SUPERVISOR].pid, (int64_t)getpid());
    atomic_store(&l->procs[SHM_ROLE_SUPERVISOR].started_ms, kd_wall_ms());
    atomic_store(&l->procs[SHM_ROLE_SUPERVISOR].state, SHM_PROC_READY);
    shm_segment_publish(&s->seg);
    kd_info("instance '%s' generation %llu, segment %s, status file %s", opt->instance,
            (unsigned long long)s->seg.generation, s->seg.name, s->seg.status_path);

    uv_loop_t loop;
    uv_loop_init(&loop);
    s->loop = &loop;
    start_signal(s, &s->sig_term, SIGTERM);
    start_signal(s, &s->sig_int, SIGINT);
    start_signal(s, &s->sig_quit, SIGQUIT);
    start_signal(s, &s->sig_hup, SIGHUP);
    start_signal(s, &s->sig_usr1, SIGUSR1);
    uv_timer_init(&loop, &s->stop_timer);
    s->stop_timer.data = s;
    uv_timer_init(&loop, &s->state_timer);
    s->state_timer.data = s;
    uv_timer_start(&s->state_timer, on_state_timer, 50, 100);

    for (int i = 0; i < SUP_WORKERS; i++) {
        struct sup_child *c = &s->children[start_order[i]];
        c->sup = s;
        c->role = start_order[i];
        uv_timer_init(&loop, &c->restart_timer);
        c->restart_timer.data = c;
    }
    for (int i = 0; i < SUP_WORKERS && !s->stopping; i++) {
        if (spawn_child(&s->children[start_order[i]]) != 0) {
            s->exit_code = 1;
            begin_stop(s, 0);
        }
    }

    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    for (int i = 0; i < SHM_RING_COUNT; i++)
        close(s->wake_fds[i]);
    shm_segment_destroy(&s->seg);
    kd_info("stopped");
    int code = s->exit_code;
    free(s);
    return code;
}
