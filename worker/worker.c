/*
 * worker.c: the runtime shared by the scanner, committer and updater. See worker.h.
 *
 * Dying with the supervisor matters: a worker that outlives it would keep spending tokens
 * with nobody watching. PR_SET_PDEATHSIG covers the normal case; the heartbeat timer also
 * checks getppid() and the segment (retired or replaced means a new supervisor took over)
 * and exits, because the death signal is lost if the parent died before prctl ran. A segment
 * whose name was removed is not a reason to exit: the worker uses the segment it was handed
 * (worker/spawn.h), and the supervisor, still its parent, says so in the log.
 */
#include "worker/worker.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/log.h"
#include "store/store.h"

#define WK_HEARTBEAT_MS 500

/* The store the stage opened: still the one at the configured path, reader slots clean. */
static void check_store(struct wk *wk)
{
    if (wk->store == NULL)
        return;
    if (wk->beats % (WK_STORE_CHECK_MS / WK_HEARTBEAT_MS) == 0) {
        int rc = st_check(wk->store);
        if (rc != 0 && !wk->store_lost) {
            kd_error("STORE LOST: %s: %s; spending pauses until it is back", wk->cfg.store_path,
                     st_strerror(rc));
            wk_set_error(wk, "store %s: %s", wk->cfg.store_path, st_strerror(rc));
        } else if (rc == 0 && wk->store_lost) {
            kd_info("store %s is back", wk->cfg.store_path);
        }
        wk->store_lost = rc != 0;
    }
    /* The supervisor counts every worker death it restarts. */
    int64_t deaths =
        shm_counter_get(&wk->seg.layout->counters[SHM_ROLE_SUPERVISOR], SHM_C_restarts);
    if (deaths != wk->sibling_deaths || wk->beats % (WK_READER_CHECK_MS / WK_HEARTBEAT_MS) == 0) {
        wk->sibling_deaths = deaths;
        st_reader_check(wk->store, NULL);
    }
}

static void heartbeat(uv_timer_t *t)
{
    struct wk *wk = t->data;
    wk->beats++;
    atomic_store_explicit(&wk->slot->heartbeat_ms, kd_wall_ms(), memory_order_relaxed);
    if ((int64_t)getppid() != wk->supervisor_pid) {
        kd_error("supervisor pid %lld is gone; exiting", (long long)wk->supervisor_pid);
        wk->stopping = true;
        uv_stop(wk->loop);
        return;
    }
    /* Replaced (a new supervisor took over): exit. Only the name removed: keep going. */
    if (shm_segment_check(&wk->seg) == -ESTALE) {
        kd_error("segment %s was replaced; exiting", wk->seg.name);
        wk->stopping = true;
        uv_stop(wk->loop);
        return;
    }
    check_store(wk);
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

/* Reads the keys from the pipe at WK_FD_KEY (closed afterwards), one a line. An empty pipe
 * means no key. */
static void read_keys(struct wk *wk)
{
    char buf[WK_KEY_MAX + 1];
    size_t n = 0;
    for (;;) {
        ssize_t r = read(WK_FD_KEY, buf + n, sizeof(buf) - 1 - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        n += (size_t)r;
        if (n == sizeof(buf) - 1)
            break;
    }
    close(WK_FD_KEY);
    buf[n] = '\0';
    memset(&wk->keys, 0, sizeof(wk->keys));
    char *save = NULL;
    for (char *line = strtok_r(buf, "\r\n ", &save); line != NULL && wk->keys.n < KD_KEYS_MAX;
         line = strtok_r(NULL, "\r\n ", &save)) {
        if (strlen(line) >= KD_KEY_MAX)
            continue; /* the supervisor checked every key: a cut-off one cannot happen */
        snprintf(wk->keys.key[wk->keys.n], KD_KEY_MAX, "%s", line);
        kd_log_add_secret(wk->keys.key[wk->keys.n]);
        wk->keys.n++;
    }
    explicit_bzero(buf, sizeof(buf));
}

static void on_signal(uv_signal_t *s, int signum)
{
    struct wk *wk = s->data;
    switch (signum) {
    case SIGHUP: {
        int rc = load_config(wk);
        if (rc != 0)
            kd_error("reload: cannot load the published config: %s", strerror(-rc));
        else if (wk->stage->reload != NULL)
            wk->stage->reload(wk);
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
            if (wk->stage->stop != NULL)
                wk->stage->stop(wk);
            else
                wk_stop(wk);
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

/*
 * Everything before the stage: ARGV is `worker ROLE --instance NAME [--log-file F]`. Returns
 * 0 with the segment attached and the handles running on LOOP, or a negative errno after
 * logging why, with nothing held (the key wiped, the segment detached).
 */
static int wk_start(struct wk *wk, const struct wk_stage *stage, uv_loop_t *loop, int argc,
                    char **argv)
{
    memset(wk, 0, sizeof(*wk));
    wk->stage = stage;
    wk->role = stage->role;
    wk->loop = loop;
    kd_log_set_role(stage->name);
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    prctl(PR_SET_DUMPABLE, 0); /* it will hold the API key */
    read_keys(wk);
    char comm[16];
    snprintf(comm, sizeof(comm), "kdeals-%s", stage->name);
    prctl(PR_SET_NAME, comm);

    const char *instance = NULL;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], WK_SPAWN_OPT_INSTANCE) == 0 && i + 1 < argc)
            instance = argv[++i];
        else if (strcmp(argv[i], WK_SPAWN_OPT_LOG_FILE) == 0 && i + 1 < argc)
            wk->log_file = argv[++i];
    }
    if (wk->log_file != NULL && kd_log_open(wk->log_file) != 0)
        kd_error("cannot open log file %s; logging to stderr", wk->log_file);
    int rc;
    if (instance == NULL) {
        kd_error("usage: kdeals worker %s --instance NAME (started by the supervisor)",
                 stage->name);
        rc = -EINVAL;
        goto out_key;
    }
    char err[256];
    rc = shm_segment_attach_fd(&wk->seg, WK_FD_SEGMENT, instance, SHM_READ_WRITE, err, sizeof(err));
    if (rc != 0) {
        kd_error("%s", err);
        goto out_key;
    }
    struct shm_layout *l = wk->seg.layout;
    wk->supervisor_pid = l->header.supervisor_pid;
    if ((int64_t)getppid() != wk->supervisor_pid) {
        kd_error("parent %d is not the supervisor %lld of this segment; exiting", (int)getppid(),
                 (long long)wk->supervisor_pid);
        rc = -ESRCH;
        goto out_detach;
    }
    rc = load_config(wk);
    if (rc != 0) {
        kd_error("cannot load the config from %s: %s", wk->seg.name, strerror(-rc));
        goto out_detach;
    }
    wk->slot = &l->procs[wk->role];
    wk->counters = &l->counters[wk->role];
    for (int i = 0; i < SHM_RING_COUNT; i++) {
        rc = ring_open(&wk->rings[i], &l->rings[i], shm_segment_ring_data(&wk->seg, i),
                       WK_FD_WAKE(i));
        if (rc != 0) {
            kd_error("the %s ring of %s is corrupt", shm_ring_name((enum shm_ring_id)i),
                     wk->seg.name);
            goto out_detach;
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

out_detach:
    shm_segment_detach(&wk->seg);
out_key:
    kd_keys_wipe(&wk->keys);
    return rc;
}

void wk_set_state(struct wk *wk, enum shm_proc_state state)
{
    atomic_store_explicit(&wk->slot->state, (uint32_t)state, memory_order_release);
}

void wk_set_error(struct wk *wk, const char *fmt, ...)
{
    char clean[SHM_MESSAGE_MAX];
    va_list ap;
    va_start(ap, fmt);
    kd_vformat_redacted(clean, sizeof(clean), fmt, ap);
    va_end(ap);
    memcpy(wk->slot->last_error, clean, sizeof(clean));
}

static void close_handle(uv_handle_t *h)
{
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

void wk_stop(struct wk *wk)
{
    wk->stopping = true;
    uv_timer_stop(&wk->heartbeat);
    uv_signal_stop(&wk->sig_hup);
    close_handle((uv_handle_t *)&wk->heartbeat);
    close_handle((uv_handle_t *)&wk->sig_term);
    close_handle((uv_handle_t *)&wk->sig_int);
    close_handle((uv_handle_t *)&wk->sig_quit);
    close_handle((uv_handle_t *)&wk->sig_hup);
    close_handle((uv_handle_t *)&wk->sig_usr1);
}

void wk_stop_cb(void *wk)
{
    wk_stop(wk);
}

int wk_store_open(struct wk *wk, struct st_env **env)
{
    const struct cfg *cfg = &wk->cfg;
    struct st_options o = {
        .path = cfg->store_path,
        .map_size_bytes = (uint64_t)cfg->store_map_size_mb << 20,
        .max_map_size_bytes = (uint64_t)cfg->store_max_map_size_mb << 20,
    };
    char err[512];
    int rc = st_open(&o, env, err, sizeof(err));
    if (rc != 0) {
        /* Out of memory or descriptors may pass; anything else is the store itself. */
        wk->cannot_run = rc != -ENOMEM && rc != -EAGAIN && rc != -EINTR && rc != -EMFILE &&
                         rc != -ENFILE && rc != -EBUSY;
        kd_error("%s", err);
        wk_set_error(wk, "%s", err);
        return rc;
    }
    int dead = 0;
    if (st_reader_check(*env, &dead) == 0 && dead > 0)
        kd_info("store: cleared %d reader slots of dead processes", dead);
    wk->store = *env;
    return 0;
}

static void close_any(uv_handle_t *h, void *arg)
{
    (void)arg;
    close_handle(h);
}

/* Runs the loop until the worker stops, then closes what is still open (QUIT, supervisor
 * gone) and marks the slot exited. The segment stays mapped until the stage's release ran: a
 * stage with threads of its own (the outbox) stops them there, and they count into the
 * segment until they have. */
static void wk_run(struct wk *wk)
{
    uv_run(wk->loop, UV_RUN_DEFAULT);
    uv_walk(wk->loop, close_any, NULL);
    uv_run(wk->loop, UV_RUN_DEFAULT);
    wk_set_state(wk, SHM_PROC_EXITED);
    atomic_store(&wk->slot->pid, 0);
}

/* READY, unless the stage already said more (it may be waiting for tokens already). */
static void set_ready(struct wk *wk)
{
    uint32_t starting = SHM_PROC_STARTING;
    atomic_compare_exchange_strong_explicit(&wk->slot->state, &starting, SHM_PROC_READY,
                                            memory_order_release, memory_order_relaxed);
}

int wk_main(const struct wk_stage *const *stages, size_t n_stages, int argc, char **argv)
{
    const struct wk_stage *stage = NULL;
    for (size_t i = 0; argc >= 2 && i < n_stages; i++) {
        if (strcmp(argv[1], stages[i]->name) == 0)
            stage = stages[i];
    }
    /* Whatever started the supervisor may have left descriptors open: none of them is the
     * worker's (worker/spawn.h). A closed log pipe gives EPIPE, not death. */
    close_range(WK_FD_COUNT, ~0u, 0);
    signal(SIGPIPE, SIG_IGN);
    if (stage == NULL) {
        fprintf(stderr, "kdeals worker: unknown role '%s'\n", argc >= 2 ? argv[1] : "");
        return 2;
    }
    uv_loop_t loop;
    int rc = uv_loop_init(&loop);
    if (rc != 0) {
        kd_error("cannot start an event loop: %s", uv_strerror(rc));
        return 1;
    }
    struct wk wk;
    int code = 1;
    rc = wk_start(&wk, stage, &loop, argc, argv);
    if (rc != 0)
        goto out_loop;
    wk.data = calloc(1, stage->state_size > 0 ? stage->state_size : 1);
    if (wk.data == NULL) {
        kd_error("out of memory");
        wk_stop(&wk);
    } else if (stage->start(&wk) != 0) {
        if (wk.cannot_run)
            code = WK_EXIT_CANNOT_RUN;
        wk_stop(&wk);
    } else {
        set_ready(&wk);
        code = 0;
    }
    wk_run(&wk);
    wk.store = NULL;
    if (wk.data != NULL && stage->release != NULL)
        stage->release(&wk);
    free(wk.data);
    shm_segment_detach(&wk.seg);
    kd_keys_wipe(&wk.keys);
    kd_info("stopped");
out_loop:
    uv_loop_close(&loop);
    return code;
}
