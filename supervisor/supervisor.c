/*
 * supervisor.c: spawn, watch, restart and stop the workers. See supervisor.h.
 *
 * Start order is committer -> updater -> scanner (-> outbox -> web, each when configured), so
 * every consumer is running before its producer; stop order is the reverse, so producers stop
 * first and consumers can drain.
 * A worker that exits while the daemon is not stopping is restarted after a backoff that
 * doubles from 100 ms to 30 s and resets once the worker has stayed up for a minute; more
 * than restart_max restarts of one role inside restart_window_s stops the whole daemon with
 * an error, because a worker that cannot stay up is a fault an operator must see. A worker
 * that exits with WK_EXIT_CANNOT_RUN (its store cannot be opened) is not restarted at all:
 * the daemon stops at once with the worker's reason and exit status 2, rather than loop.
 *
 * Workers are started from the supervisor's own running image (/proc/self/exe, opened once at
 * start), so a binary upgraded or removed on disk never starts a worker of another version.
 * Once a second the supervisor also checks its own files: a status file truncated or removed
 * is written again (so `kdeals status` and `stop` keep finding the daemon), and a segment
 * whose name was removed is reported loudly (the workers keep using it: they were handed it).
 *
 * The outbox (the PostgreSQL mirror and the alerts) runs only when the config asks for it
 * ([mirror] postgres, [alert.NAME] sections), is started after the pipeline, never gets
 * the API key, and is never a reason to stop the daemon: a dead database or a broken alert
 * target must not cost the pipeline anything, so an outbox that keeps dying is restarted at
 * the longest backoff instead.
 */
#include "supervisor/supervisor.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#ifdef KD_HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

#include "base/clock.h"
#include "base/key.h"
#include "base/log.h"
#include "base/kd_assert.h"
#include "base/web.h"
#include "shm/counters.h"
#include "shm/segment.h"
#include "shm/tokens.h"
#include "supervisor/keys.h"
#include "supervisor/storelock.h"
#include "worker/spawn.h"

#define SUP_BACKOFF_MIN_MS 100
#define SUP_BACKOFF_MAX_MS 30000
#define SUP_STABLE_MS      60000
#define SUP_WORKERS        5
#define SUP_STATE_TICK_MS  100
#define SUP_FILES_TICKS    10 /* the status file and the segment's name: once a second */

_Static_assert(KD_KEYS_MAX *KD_KEY_MAX <= WK_KEY_MAX, "the keys fit the pipe the worker reads");

/* Started in this order, stopped in the reverse: the optional roles last to start, first to
 * stop. */
static const enum shm_role start_order[SUP_WORKERS] = {
    SHM_ROLE_COMMITTER, SHM_ROLE_UPDATER, SHM_ROLE_SCANNER, SHM_ROLE_OUTBOX, SHM_ROLE_WEB};

/* Whether ROLE runs under config C: the pipeline always; the outbox when it has work; the web
 * role when [web] listen is set. */
static bool role_wanted(const struct cfg *c, enum shm_role role)
{
    if (role == SHM_ROLE_WEB)
        return c->web_listen[0] != '\0';
    if (role != SHM_ROLE_OUTBOX)
        return true;
    for (size_t i = 0; i < c->n_named; i++)
        if (c->named[i].kind == CFG_NAMED_alert)
            return true;
    return c->mirror_postgres[0] != '\0';
}

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
    struct cfg cfg;           /* the running config */
    struct kd_keys keys;      /* the API key(s) handed to each worker; wiped at exit */
    struct sup_keys key_segs; /* each key's bucket segment (supervisor/keys.h) */
    int store_lock_fd;        /* supervisor/storelock.h: held for life, shared with workers */
    uv_loop_t *loop;
    struct shm_segment seg;
    int wake_fds[SHM_RING_COUNT];
    int exe_fd;         /* the running image, opened at start */
    char exe[PATH_MAX]; /* "/proc/self/fd/N" of exe_fd: what workers are executed from */
    const char *state;  /* what the status file says: starting, running, stopping */
    unsigned ticks;
    bool segment_name_lost;
    struct sup_child children[SHM_ROLE_COUNT];
    uv_signal_t sig_term, sig_int, sig_quit, sig_hup, sig_usr1;
    uv_timer_t stop_timer, state_timer;
    int stopping;
    int stop_immediate; /* QUIT: workers are killed on purpose */
    int exit_code;
    int running_announced;
};

void sup_options_defaults(struct sup_options *opt)
{
    memset(opt, 0, sizeof(*opt));
    cfg_defaults(&opt->cfg);
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
    s->stop_immediate |= immediate;
#ifdef KD_HAVE_SYSTEMD
    sd_notify(0, "STOPPING=1");
#endif
    atomic_store(&s->seg.layout->procs[SHM_ROLE_SUPERVISOR].state, SHM_PROC_STOPPING);
    s->state = "stopping";
    shm_status_write(&s->seg, s->state);
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
    if (!c->sup->stopping && role_wanted(&c->sup->cfg, c->role) && spawn_child(c) != 0) {
        c->sup->exit_code = 1; /* a worker that cannot be started is a failure, never exit 0 */
        begin_stop(c->sup, 0);
    }
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
    int released = sup_keys_writeoff(&s->key_segs, p->pid, kd_mono_ns());
    if (released > 0)
        kd_warn("%s pid %d held %d token reservation(s): written off until the next reading",
                shm_role_name(c->role), p->pid, released);
    uv_close((uv_handle_t *)p, close_cb_noop);

    if (s->stopping) {
        /* A worker that did not stop cleanly (an error exit, a crash, a sanitizer's leak
         * report, the SIGKILL after the stop deadline) makes the daemon's own exit status 1,
         * so systemd and scripts see it. QUIT kills the workers on purpose, and the stop's
         * own TERM may reach a worker just started, before its handler is installed. */
        bool clean =
            (term_signal == 0 && exit_status == 0) || term_signal == SIGTERM || s->stop_immediate;
        if (clean)
            kd_info("%s exited (%s %d)", shm_role_name(c->role), term_signal ? "signal" : "status",
                    term_signal ? term_signal : (int)exit_status);
        else
            kd_error("%s did not stop cleanly (%s %d): the daemon exits with status 1",
                     shm_role_name(c->role), term_signal ? "signal" : "status",
                     term_signal ? term_signal : (int)exit_status);
        if (!clean && s->exit_code != 2) /* "cannot run" stays the reason */
            s->exit_code = 1;
        stop_next(s);
        return;
    }
    if (!role_wanted(&s->cfg, c->role)) {
        kd_info("%s pid %d exited (%s %d); no longer configured: not restarted",
                shm_role_name(c->role), p->pid, term_signal ? "signal" : "status",
                term_signal ? term_signal : (int)exit_status);
        return;
    }
    if (term_signal == 0 && exit_status == WK_EXIT_CANNOT_RUN) {
        char why[SHM_MESSAGE_MAX];
        memcpy(why, slot->last_error, sizeof(why));
        why[sizeof(why) - 1] = '\0';
        kd_error("%s cannot run (%s): no restart would help; the daemon stops with status 2, "
                 "start it again once the cause is fixed",
                 shm_role_name(c->role), why[0] ? why : "see its log lines above");
        s->exit_code = 2;
        begin_stop(s, 0);
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
    if (n >= s->opt->restart_max && c->role == SHM_ROLE_OUTBOX) {
        kd_error("%s died %u times within %u s: restarting it every %u ms meanwhile (the "
                 "pipeline goes on; see the log lines above for the cause)",
                 shm_role_name(c->role), n + 1, s->opt->restart_window_s, SUP_BACKOFF_MAX_MS);
        c->backoff_ms = SUP_BACKOFF_MAX_MS;
    } else if (n >= s->opt->restart_max) {
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
    /* The spawn contract: worker/spawn.h. */
    char *args[] = {title,
                    WK_SPAWN_COMMAND,
                    (char *)shm_role_name(c->role),
                    WK_SPAWN_OPT_INSTANCE,
                    (char *)s->opt->instance,
                    s->opt->log_file ? WK_SPAWN_OPT_LOG_FILE : NULL,
                    (char *)s->opt->log_file,
                    NULL};
    /* The key travels through a pipe whose read end becomes the worker's WK_FD_KEY. */
    int key_pipe[2];
    if (pipe2(key_pipe, O_CLOEXEC) != 0) {
        kd_error("cannot start %s: pipe: %s", shm_role_name(c->role), strerror(errno));
        return -errno;
    }
    /* Every key, one a line; the pipe's buffer holds them all (WK_KEY_MAX < PIPE_BUF x 16).
     * The web role answers the network and the outbox talks to databases and alert targets:
     * neither ever holds an API key (their pipe is empty). */
    bool gets_keys = c->role != SHM_ROLE_WEB && c->role != SHM_ROLE_OUTBOX;
    for (size_t k = 0; gets_keys && k < s->keys.n; k++) {
        const char *key = s->keys.key[k];
        size_t key_len = strlen(key);
        if (write(key_pipe[1], key, key_len) != (ssize_t)key_len ||
            write(key_pipe[1], "\n", 1) != 1)
            kd_error("cannot hand the API keys to %s: %s", shm_role_name(c->role), strerror(errno));
    }
    close(key_pipe[1]);
    uv_stdio_container_t stdio[WK_FD_COUNT];
    for (int i = 0; i < 3; i++) {
        stdio[i].flags = UV_INHERIT_FD;
        stdio[i].data.fd = i;
    }
    for (int i = 0; i < SHM_RING_COUNT; i++) {
        stdio[WK_FD_WAKE(i)].flags = UV_INHERIT_FD;
        stdio[WK_FD_WAKE(i)].data.fd = s->wake_fds[i];
    }
    stdio[WK_FD_KEY].flags = UV_INHERIT_FD;
    stdio[WK_FD_KEY].data.fd = key_pipe[0];
    stdio[WK_FD_SEGMENT].flags = UV_INHERIT_FD;
    stdio[WK_FD_SEGMENT].data.fd = s->seg.fd;
    stdio[WK_FD_STORE_LOCK].flags = UV_INHERIT_FD;
    stdio[WK_FD_STORE_LOCK].data.fd = s->store_lock_fd;
    uv_process_options_t po;
    memset(&po, 0, sizeof(po));
    po.file = s->exe;
    po.args = args;
    po.exit_cb = on_child_exit;
    po.stdio = stdio;
    po.stdio_count = WK_FD_COUNT;
    /* A clean environment without the key: the worker reads the key from its pipe. */
    static char *const env[] = {WK_SPAWN_ENV, NULL};
    po.env = (char **)env;
    c->proc.data = c;
    int rc = uv_spawn(s->loop, &c->proc, &po);
    close(key_pipe[0]);
    if (rc != 0) {
        kd_error("cannot start %s (%s): %s", shm_role_name(c->role), s->exe, uv_strerror(rc));
        return rc;
    }
    c->running = 1;
    c->started_ns = kd_mono_ns();
    kd_info("started %s pid %d", shm_role_name(c->role), c->proc.pid);
    return 0;
}

struct changed_keys {
    char text[SHM_MESSAGE_MAX];
    char restart[SHM_MESSAGE_MAX];
};

static void append_key(char *buf, size_t len, const struct cfg_key *k)
{
    size_t used = strlen(buf);
    if (used + 1 < len)
        snprintf(buf + used, len - used, "%s[%s] %s", used ? ", " : "", k->section, k->name);
}

static void note_changed(const struct cfg_key *k, void *ud)
{
    struct changed_keys *ck = ud;
    append_key(ck->text, sizeof(ck->text), k);
    if (!k->reloadable)
        append_key(ck->restart, sizeof(ck->restart), k);
}

static int publish_config(struct sup *s, const struct cfg *c)
{
    char *buf = NULL;
    size_t len = 0;
    int rc = cfg_encode(c, &buf, &len);
    if (rc != 0)
        return rc;
    int64_t gen = shm_config_publish(s->seg.layout, buf, len);
    free(buf);
    return gen < 0 ? (int)gen : 0;
}

static void set_verdict(struct sup *s, int result, const char *msg)
{
    struct shm_config_slot *slot = &s->seg.layout->config;
    size_t n = strlen(msg);
    if (n >= sizeof(slot->reload_message))
        n = sizeof(slot->reload_message) - 1;
    memcpy(slot->reload_message, msg, n);
    slot->reload_message[n] = '\0';
    atomic_store(&slot->reload_result, result);
    atomic_store_explicit(&slot->reload_done, atomic_load(&slot->reload_request),
                          memory_order_release);
}

/*
 * HUP: re-read the file; keep the running config if it is invalid. Restart-only keys keep
 * their running values (the workers could not apply them) and are named in the verdict.
 */
static void reload(struct sup *s)
{
    if (s->opt->config_path == NULL) {
        kd_warn("SIGHUP: no config file was given (-c FILE): nothing to reload");
        set_verdict(s, -EINVAL, "no config file: started without -c");
        return;
    }
    struct cfg next;
    char err[512];
    int rc = cfg_load_file(s->opt->config_path, &next, err, sizeof(err));
    if (rc == 0)
        rc = cfg_named_check(&next, s->opt->named_checkers, s->opt->n_named_checkers, err,
                             sizeof(err));
    if (rc != 0) {
        kd_error("reload rejected, the running config stays: %s", err);
        set_verdict(s, rc, err);
        return;
    }
    struct changed_keys ck = {"", ""};
    bool restart_needed = false;
    size_t n = cfg_diff(&s->cfg, &next, note_changed, &ck, &restart_needed);
    if (restart_needed) {
        /* Keep running values of restart-only keys so workers never see a half-applied one. */
        const struct cfg_key *keys = cfg_keys();
        for (size_t i = 0; i < CFG_KEY_COUNT; i++) {
            if (!keys[i].reloadable) {
                size_t size = keys[i].type == CFG_T_INT || keys[i].type == CFG_T_DURATION ||
                                      keys[i].type == CFG_T_PCT || keys[i].type == CFG_T_DOMAIN
                                  ? sizeof(int64_t)
                              : keys[i].type == CFG_T_BOOL ? sizeof(bool)
                              : keys[i].type == CFG_T_ENUM ? sizeof(int)
                                                           : (size_t)CFG_STR_MAX + 1;
                memcpy((char *)&next + keys[i].offset, (const char *)&s->cfg + keys[i].offset,
                       size);
            }
        }
        next.keepa_key_set = s->cfg.keepa_key_set;
    }
    rc = publish_config(s, &next);
    if (rc != 0) {
        kd_error("reload failed: cannot publish the config (%s)", strerror(-rc));
        set_verdict(s, rc, "cannot publish the config");
        return;
    }
    s->cfg = next;
    sup_keys_set_weight(&s->key_segs, s->cfg.tokens_weight);
    char msg[SHM_MESSAGE_MAX];
    if (n == 0)
        snprintf(msg, sizeof(msg), "applied: no key changed");
    else if (restart_needed)
        snprintf(msg, sizeof(msg), "applied except keys that need a restart: %.100s", ck.restart);
    else
        snprintf(msg, sizeof(msg), "applied: %.200s", ck.text);
    kd_info("reload %s", msg);
    set_verdict(s, restart_needed ? 1 : 0, msg);
    for (int i = 0; i < SHM_ROLE_COUNT; i++) {
        if (s->children[i].running)
            uv_process_kill(&s->children[i].proc, SIGHUP);
    }
    for (int i = 0; i < SUP_WORKERS; i++) {
        struct sup_child *c = &s->children[start_order[i]];
        bool wanted = role_wanted(&s->cfg, c->role);
        if (wanted && !c->running && !uv_is_active((uv_handle_t *)&c->restart_timer))
            spawn_child(c);
        else if (!wanted && c->running)
            uv_process_kill(&c->proc, SIGTERM);
    }
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
        reload(s);
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

/*
 * The supervisor's files, once a second: a status file truncated or removed under the daemon
 * is written again (status, stop and the instance lock keep working); a segment whose name
 * was removed is said loudly, once (the workers keep the segment they were handed; stat,
 * reload and status's token view cannot reach it until a restart).
 */
static void check_files(struct sup *s)
{
    int rc = shm_status_repair(&s->seg, s->state);
    if (rc > 0)
        kd_warn("status file %s was truncated, rewritten or removed under the running daemon: "
                "written again",
                s->seg.status_path);
    else if (rc < 0)
        kd_error("status file %s was removed or damaged and cannot be written again: %s",
                 s->seg.status_path, strerror(-rc));
    rc = shm_segment_check(&s->seg);
    if (rc != 0 && !s->segment_name_lost) {
        s->segment_name_lost = true;
        kd_error("shared memory /dev/shm%s was %s under the running daemon: the workers keep "
                 "using theirs, but kdeals stat, reload and the token view of status cannot "
                 "reach it until the daemon is restarted (kdeals stop; kdeals start)",
                 s->seg.name, rc == -ENOENT ? "removed" : "replaced");
    } else if (rc == 0) {
        s->segment_name_lost = false;
    }
}

/* Publishes "running" once every worker has said it is ready, and keeps the heartbeat. */
static void on_state_timer(uv_timer_t *t)
{
    struct sup *s = t->data;
    struct shm_layout *l = s->seg.layout;
    atomic_store(&l->procs[SHM_ROLE_SUPERVISOR].heartbeat_ms, kd_wall_ms());
    if (++s->ticks % SUP_FILES_TICKS == 0)
        check_files(s);
    sup_keys_sweep(&s->key_segs, kd_mono_ns());
    if (s->running_announced || s->stopping)
        return;
    /* Waiting for tokens is ready too: the worker is up and serving its loop. */
    for (int i = 0; i < SUP_WORKERS; i++) {
        if (!role_wanted(&s->cfg, start_order[i]))
            continue;
        uint32_t st = atomic_load(&l->procs[start_order[i]].state);
        if (st != SHM_PROC_READY && st != SHM_PROC_WAITING_TOKENS)
            return;
    }
    s->running_announced = 1;
    s->state = "running";
    shm_status_write(&s->seg, s->state);
    kd_info("all workers ready");
#ifdef KD_HAVE_SYSTEMD
    sd_notify(0, "READY=1\nSTATUS=all workers ready");
#endif
}

static void start_signal(struct sup *s, uv_signal_t *h, int signum)
{
    uv_signal_init(s->loop, h);
    h->data = s;
    uv_signal_start(h, on_signal, signum);
}

/*
 * A failure before the daemon runs: logged, and also said on stderr when the log goes to a
 * file that is not stderr, so an operator running `kdeals run` sees why it exited.
 */
static void startup_error(const struct sup_options *opt, const char *msg)
{
    kd_error("%s", msg);
    if (opt->log_file == NULL)
        return;
    struct stat a, b;
    if (fstat(STDERR_FILENO, &a) == 0 && stat(opt->log_file, &b) == 0 && a.st_dev == b.st_dev &&
        a.st_ino == b.st_ino)
        return; /* `kdeals start`: stderr is the log file already */
    fprintf(stderr, "kdeals: %s\n", msg);
}

/* Sets up the loop's handles and starts the workers in start order. */
static void start_workers(struct sup *s)
{
    start_signal(s, &s->sig_term, SIGTERM);
    start_signal(s, &s->sig_int, SIGINT);
    start_signal(s, &s->sig_quit, SIGQUIT);
    start_signal(s, &s->sig_hup, SIGHUP);
    start_signal(s, &s->sig_usr1, SIGUSR1);
    uv_timer_init(s->loop, &s->stop_timer);
    s->stop_timer.data = s;
    uv_timer_init(s->loop, &s->state_timer);
    s->state_timer.data = s;
    uv_timer_start(&s->state_timer, on_state_timer, 50, SUP_STATE_TICK_MS);

    for (int i = 0; i < SUP_WORKERS; i++) {
        struct sup_child *c = &s->children[start_order[i]];
        c->sup = s;
        c->role = start_order[i];
        uv_timer_init(s->loop, &c->restart_timer);
        c->restart_timer.data = c;
    }
    for (int i = 0; i < SUP_WORKERS && !s->stopping; i++) {
        if (!role_wanted(&s->cfg, start_order[i]))
            continue;
        if (spawn_child(&s->children[start_order[i]]) != 0) {
            s->exit_code = 1;
            begin_stop(s, 0);
        }
    }
}

/*
 * One exit for every path: each resource is released in the reverse order of its acquisition
 * (libuv's uv_loop_init is the model), and every path wipes the API key.
 */
int sup_run(const struct sup_options *opt)
{
    int code = 1;
    int rc;
    char err[512];
    struct sup *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        kd_error("out of memory");
        return 1;
    }
    s->opt = opt;
    s->cfg = opt->cfg;
    s->exe_fd = -1;
    s->state = "starting";
    for (int i = 0; i < SHM_RING_COUNT; i++)
        s->wake_fds[i] = -1;
    /* A log or stderr pipe whose reader went away must give EPIPE, not kill the daemon and
     * leave its segment behind. */
    signal(SIGPIPE, SIG_IGN);
    kd_log_set_role("supervisor");
    if (opt->log_file != NULL && (rc = kd_log_open(opt->log_file)) != 0) {
        kd_error("cannot open log file %s: %s", opt->log_file,
                 rc == -EPERM ? "not a regular file of yours (a link, a device, another owner)"
                              : strerror(-rc));
        goto out_free;
    }
    /* The running image: what every worker is executed from, whatever happens to the path.
     * Above the descriptors a worker is given, which the child sets up before the exec. */
    int exe = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
    s->exe_fd = exe < 0 ? -1 : fcntl(exe, F_DUPFD_CLOEXEC, WK_FD_COUNT + 32);
    if (exe >= 0)
        close(exe);
    if (s->exe_fd < 0) {
        kd_error("cannot open my own executable (/proc/self/exe): %s", strerror(errno));
        goto out_free;
    }
    snprintf(s->exe, sizeof(s->exe), "/proc/self/fd/%d", s->exe_fd);

    /* No core file and no readable /proc/PID/environ for a process that holds the key. */
    prctl(PR_SET_DUMPABLE, 0);
    rc = kd_keys_load(&s->cfg, &s->keys, err, sizeof(err));
    if (rc == -ENOKEY) {
        kd_warn("no Keepa API key configured ([keepa] key_file, [keepa] key or KEEPA_API_KEY): "
                "workers will not call Keepa");
    } else if (rc != 0) {
        startup_error(opt, err);
        code = 2;
        goto out_key;
    } else {
        for (size_t k = 0; k < s->keys.n; k++)
            kd_log_add_secret(s->keys.key[k]);
    }

    /* The web role's bearer token is checked before anything starts: a bad token file stops
     * the start with its reason, rather than a web worker that keeps dying. */
    if (s->cfg.web_listen[0] != '\0' && s->cfg.web_token_file[0] != '\0') {
        char token[KD_WEB_TOKEN_MAX];
        rc = kd_web_token_load(s->cfg.web_token_file, token, sizeof(token), err, sizeof(err));
        explicit_bzero(token, sizeof(token));
        if (rc != 0) {
            startup_error(opt, err);
            code = 2;
            goto out_key;
        }
    }

    /* One store, one instance: before anything else, so that an earlier incarnation's
     * workers still finishing their batch are waited for (supervisor/storelock.h). */
    s->store_lock_fd = sup_store_lock(s->cfg.store_path, opt->instance,
                                      (int64_t)opt->stop_timeout_ms + 5000, err, sizeof(err));
    if (s->store_lock_fd < 0) {
        startup_error(opt, err);
        goto out_key;
    }

    struct shm_segment_options so = {.instance = opt->instance, .run_dir = opt->run_dir};
    for (int i = 0; i < SHM_RING_COUNT; i++)
        so.ring_capacity[i] = opt->ring_capacity;
    rc = shm_segment_create(&s->seg, &so, err, sizeof(err));
    if (rc != 0) {
        startup_error(opt, err);
        goto out_lock;
    }
    for (int i = 0; i < SHM_RING_COUNT; i++) {
        s->wake_fds[i] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (s->wake_fds[i] < 0) {
            kd_error("eventfd: %s", strerror(errno));
            goto out_fds;
        }
    }
    struct shm_layout *l = s->seg.layout;
    rc = sup_keys_open(&s->key_segs, &s->keys, opt->instance, &s->cfg, l, err, sizeof(err));
    if (rc != 0) {
        startup_error(opt, err);
        goto out_fds;
    }
    rc = publish_config(s, &s->cfg);
    if (rc != 0) {
        kd_error("cannot publish the config in the segment: %s", strerror(-rc));
        goto out_fds;
    }
    uv_loop_t loop;
    rc = uv_loop_init(&loop);
    if (rc != 0) {
        kd_error("cannot start an event loop: %s", uv_strerror(rc));
        goto out_fds;
    }
    s->loop = &loop;
    atomic_store(&l->procs[SHM_ROLE_SUPERVISOR].pid, (int64_t)getpid());
    atomic_store(&l->procs[SHM_ROLE_SUPERVISOR].started_ms, kd_wall_ms());
    atomic_store(&l->procs[SHM_ROLE_SUPERVISOR].state, SHM_PROC_READY);
    shm_segment_publish(&s->seg);
    kd_info("instance '%s' generation %llu, segment %s, status file %s", opt->instance,
            (unsigned long long)s->seg.generation, s->seg.name, s->seg.status_path);

    start_workers(s);
    uv_run(&loop, UV_RUN_DEFAULT);
    code = s->exit_code;
    uv_loop_close(&loop);
out_fds:
    sup_keys_close(&s->key_segs);
    for (int i = 0; i < SHM_RING_COUNT; i++) {
        if (s->wake_fds[i] >= 0)
            close(s->wake_fds[i]);
    }
    shm_segment_destroy(&s->seg);
    if (s->loop != NULL)
        kd_info("stopped");
out_lock:
    close(s->store_lock_fd); /* last: the store is free once the workers are gone too */
out_key:
    kd_keys_wipe(&s->keys);
out_free:
    if (s->exe_fd >= 0)
        close(s->exe_fd);
    free(s);
    return code;
}
