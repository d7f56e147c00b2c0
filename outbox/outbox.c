/*
 * outbox.c: the outbox stage: its lanes (threads), their waits, start, reload and stop. See
 * outbox.h for why it is a process of its own and why each consumer is a thread.
 *
 * A lane runs `wait = step(); sleep(wait)` until the worker stops. The sleep is a timed wait on
 * the context's condition variable, which a stop or a reload broadcasts, so a lane in a long
 * backoff reacts at once. The lanes never call into libuv: a stop sets the flag, cancels what
 * each lane waits on, and polls (a timer on the loop) until every lane has left its loop; then
 * the stage closes its timer and calls wk_stop(). The threads are joined in release, after the
 * loop, whatever ended it.
 */
#include "outbox/outbox.h"

#include <curl/curl.h>
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/log.h"
#include "outbox/alerts.h"
#include "outbox/mirror.h"
#include "shm/counters.h"
#include "store/store.h"

#define OB_LANES_MAX (1 + OB_ALERT_LANES_MAX) /* the mirror, then the alerts */

struct ob_lane {
    const char *name;
    struct outbox *ob;
    void *state;
    int64_t (*step)(void *state); /* < 0: the lane ends */
    void (*cancel)(void *state);
    void (*free)(void *state);
    uv_thread_t thread;
    bool started;
    bool finished; /* left lane_main; guarded by ctx.lock */
};

struct outbox {
    struct wk *wk;
    struct ob_ctx ctx;
    bool ctx_ready; /* lock and condition initialised */
    uv_timer_t stop_poll;
    bool timer_ready;
    struct ob_lane lanes[OB_LANES_MAX]; /* slot 0 the mirror, slot 1 + i alert lane i */
    size_t lanes_running;               /* lanes inside lane_main; guarded by ctx.lock */
};

uint64_t ob_config(struct ob_ctx *ctx, struct cfg *out)
{
    uv_mutex_lock(&ctx->lock);
    *out = ctx->cfg;
    uint64_t v = ctx->cfg_version;
    uv_mutex_unlock(&ctx->lock);
    return v;
}

int ob_read_begin(struct ob_ctx *ctx, struct st_txn **txn)
{
    uv_mutex_lock(&ctx->store_lock);
    int rc = st_read_begin(ctx->env, txn);
    if (rc != 0)
        uv_mutex_unlock(&ctx->store_lock);
    return rc;
}

void ob_read_end(struct ob_ctx *ctx, struct st_txn *txn)
{
    st_read_end(txn);
    uv_mutex_unlock(&ctx->store_lock);
}

int ob_write(struct ob_ctx *ctx, int (*fn)(struct st_txn *txn, void *ud), void *ud)
{
    uv_mutex_lock(&ctx->store_lock);
    int rc = st_write(ctx->env, fn, ud);
    uv_mutex_unlock(&ctx->store_lock);
    return rc;
}

bool ob_stopping(struct ob_ctx *ctx)
{
    uv_mutex_lock(&ctx->lock);
    bool s = ctx->stopping;
    uv_mutex_unlock(&ctx->lock);
    return s;
}

static void lane_main(void *arg)
{
    struct ob_lane *lane = arg;
    struct ob_ctx *ctx = &lane->ob->ctx;
    for (;;) {
        if (ob_stopping(ctx))
            break;
        int64_t wait_ms = lane->step(lane->state);
        if (wait_ms < 0)
            break;
        uv_mutex_lock(&ctx->lock);
        uint64_t version = ctx->cfg_version;
        /* Sleep until the wait is over, the worker stops, or a reload arrives. */
        int64_t until = kd_mono_ns() + wait_ms * KD_NS_PER_MS;
        while (!ctx->stopping && ctx->cfg_version == version) {
            int64_t left = until - kd_mono_ns();
            if (left <= 0 || uv_cond_timedwait(&ctx->wake, &ctx->lock, (uint64_t)left) != 0)
                break;
        }
        uv_mutex_unlock(&ctx->lock);
    }
    uv_mutex_lock(&ctx->lock);
    lane->ob->lanes_running--;
    lane->finished = true;
    uv_mutex_unlock(&ctx->lock);
}

static void stop_poll_closed(uv_handle_t *h)
{
    struct outbox *ob = h->data;
    wk_stop(ob->wk);
}

/* On the loop, while stopping: once every lane has left its loop, the worker ends. */
static void on_stop_poll(uv_timer_t *t)
{
    struct outbox *ob = t->data;
    uv_mutex_lock(&ob->ctx.lock);
    size_t running = ob->lanes_running;
    uv_mutex_unlock(&ob->ctx.lock);
    if (running == 0 && !uv_is_closing((uv_handle_t *)t)) {
        uv_timer_stop(t);
        uv_close((uv_handle_t *)t, stop_poll_closed);
    }
}

/* Starts a lane in SLOT (free: never started, or joined). */
static int start_lane(struct outbox *ob, size_t slot, const char *name, void *state,
                      int64_t (*step)(void *), void (*cancel)(void *), void (*free_fn)(void *))
{
    struct ob_lane *l = &ob->lanes[slot];
    memset(l, 0, sizeof(*l));
    l->name = name;
    l->ob = ob;
    l->state = state;
    l->step = step;
    l->cancel = cancel;
    l->free = free_fn;
    uv_mutex_lock(&ob->ctx.lock);
    ob->lanes_running++;
    uv_mutex_unlock(&ob->ctx.lock);
    int rc = uv_thread_create(&l->thread, lane_main, l);
    if (rc != 0) {
        kd_error("cannot start the %s lane: %s", name, uv_strerror(rc));
        uv_mutex_lock(&ob->ctx.lock);
        ob->lanes_running--;
        uv_mutex_unlock(&ob->ctx.lock);
        l->state = NULL;
        return rc;
    }
    l->started = true;
    return 0;
}

/* Joins the lane in SLOT if it ended (or always, when WAIT) and frees its state. */
static void reap_lane(struct outbox *ob, size_t slot, bool wait)
{
    struct ob_lane *l = &ob->lanes[slot];
    if (!l->started)
        return;
    uv_mutex_lock(&ob->ctx.lock);
    bool finished = l->finished;
    uv_mutex_unlock(&ob->ctx.lock);
    if (!finished && !wait)
        return;
    uv_thread_join(&l->thread);
    if (l->free != NULL)
        l->free(l->state);
    memset(l, 0, sizeof(*l));
}

static int64_t mirror_step(void *state)
{
    return ob_mirror_step(state);
}

static void mirror_cancel(void *state)
{
    ob_mirror_cancel(state);
}

static void mirror_free(void *state)
{
    ob_mirror_free(state);
}

static int64_t alert_step(void *state)
{
    return ob_alert_step(state);
}

static void alert_free(void *state)
{
    ob_alert_lane_free(state);
}

/*
 * One lane per [alert.NAME] of CFG: lanes whose section went away have ended by themselves and
 * are joined; a section without a lane gets one. Runs on the loop (start and reload).
 */
static void sync_alert_lanes(struct outbox *ob, const struct cfg *cfg)
{
    for (size_t slot = 1; slot < OB_LANES_MAX; slot++)
        reap_lane(ob, slot, false);
    for (size_t i = 0; i < cfg->n_named; i++) {
        const struct cfg_named *s = &cfg->named[i];
        if (s->kind != CFG_NAMED_alert)
            continue;
        size_t free_slot = 0;
        bool running = false;
        for (size_t slot = 1; slot < OB_LANES_MAX; slot++) {
            struct ob_lane *l = &ob->lanes[slot];
            if (!l->started) {
                if (free_slot == 0)
                    free_slot = slot;
                continue;
            }
            running |= strcmp(ob_alert_lane_name(l->state), s->name) == 0;
        }
        if (running)
            continue;
        if (free_slot == 0) {
            kd_error("alert %s: no lane left for it (at most %d alerts)", s->name,
                     OB_ALERT_LANES_MAX);
            continue;
        }
        struct ob_alert_lane *al;
        if (ob_alert_lane_new(&ob->ctx, s->name, (unsigned)(free_slot - 1), &al) != 0) {
            kd_error("alert %s: out of memory", s->name);
            continue;
        }
        if (start_lane(ob, free_slot, "alert", al, alert_step, NULL, alert_free) != 0)
            ob_alert_lane_free(al);
        else
            kd_info("alert %s: started", s->name);
    }
}

static int on_start(struct wk *wk)
{
    struct outbox *ob = wk->data;
    ob->wk = wk;
    struct ob_ctx *ctx = &ob->ctx;
    if (gethostname(ctx->hostname, sizeof(ctx->hostname) - 1) != 0)
        snprintf(ctx->hostname, sizeof(ctx->hostname), "localhost");
    ctx->counters = wk->counters;
    ctx->cfg = wk->cfg;
    if (uv_mutex_init(&ctx->lock) != 0)
        return -ENOMEM;
    if (uv_cond_init(&ctx->wake) != 0) {
        uv_mutex_destroy(&ctx->lock);
        return -ENOMEM;
    }
    if (uv_mutex_init(&ctx->store_lock) != 0) {
        uv_cond_destroy(&ctx->wake);
        uv_mutex_destroy(&ctx->lock);
        return -ENOMEM;
    }
    ob->ctx_ready = true;
    int rc = wk_store_open(wk, &ctx->env);
    if (rc != 0)
        return rc;
    if ((rc = uv_timer_init(wk->loop, &ob->stop_poll)) != 0)
        return rc;
    ob->stop_poll.data = ob;
    ob->timer_ready = true;
    /* Before any thread: curl's global state, and no SIGPIPE from a webhook or a command that
     * closed its end. */
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return -ENOMEM;
    signal(SIGPIPE, SIG_IGN);
    struct ob_mirror *mirror;
    if ((rc = ob_mirror_new(ctx, &mirror)) != 0)
        return rc;
    if ((rc = start_lane(ob, 0, "mirror", mirror, mirror_step, mirror_cancel, mirror_free)) != 0) {
        ob_mirror_free(mirror);
        return rc;
    }
    sync_alert_lanes(ob, &wk->cfg);
    kd_info("outbox started: mirror %s", wk->cfg.mirror_postgres[0] ? "on" : "off");
    return 0;
}

static void on_stop(struct wk *wk)
{
    struct outbox *ob = wk->data;
    uv_mutex_lock(&ob->ctx.lock);
    ob->ctx.stopping = true;
    uv_cond_broadcast(&ob->ctx.wake);
    uv_mutex_unlock(&ob->ctx.lock);
    for (size_t i = 0; i < OB_LANES_MAX; i++)
        if (ob->lanes[i].started && ob->lanes[i].cancel != NULL)
            ob->lanes[i].cancel(ob->lanes[i].state);
    if (ob->timer_ready)
        uv_timer_start(&ob->stop_poll, on_stop_poll, 0, 20);
    else
        wk_stop(wk);
}

static void on_reload(struct wk *wk)
{
    struct outbox *ob = wk->data;
    uv_mutex_lock(&ob->ctx.lock);
    ob->ctx.cfg = wk->cfg;
    ob->ctx.cfg_version++;
    uv_cond_broadcast(&ob->ctx.wake);
    uv_mutex_unlock(&ob->ctx.lock);
    if (!wk->stopping)
        sync_alert_lanes(ob, &wk->cfg);
}

static void on_release(struct wk *wk)
{
    struct outbox *ob = wk->data;
    if (ob->ctx_ready) {
        uv_mutex_lock(&ob->ctx.lock);
        ob->ctx.stopping = true;
        uv_cond_broadcast(&ob->ctx.wake);
        uv_mutex_unlock(&ob->ctx.lock);
    }
    for (size_t i = 0; i < OB_LANES_MAX; i++) {
        if (ob->lanes[i].started && ob->lanes[i].cancel != NULL)
            ob->lanes[i].cancel(ob->lanes[i].state);
        reap_lane(ob, i, true);
    }
    if (ob->ctx.env != NULL)
        st_close(ob->ctx.env);
    if (ob->ctx_ready) {
        uv_mutex_destroy(&ob->ctx.store_lock);
        uv_cond_destroy(&ob->ctx.wake);
        uv_mutex_destroy(&ob->ctx.lock);
    }
    if (ob->timer_ready)
        curl_global_cleanup();
}

const struct wk_stage outbox_stage = {
    .name = "outbox",
    .role = SHM_ROLE_OUTBOX,
    .state_size = sizeof(struct outbox),
    .start = on_start,
    .stop = on_stop,
    .reload = on_reload,
    .release = on_release,
};
