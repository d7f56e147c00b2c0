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

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/log.h"
#include "outbox/mirror.h"
#include "shm/counters.h"
#include "store/store.h"

#define OB_LANES_MAX 1

struct ob_lane {
    const char *name;
    struct outbox *ob;
    void *state;
    int64_t (*step)(void *state);
    void (*cancel)(void *state);
    uv_thread_t thread;
    bool started;
};

struct outbox {
    struct wk *wk;
    struct ob_ctx ctx;
    bool ctx_ready; /* lock and condition initialised */
    uv_timer_t stop_poll;
    bool timer_ready;
    struct ob_lane lanes[OB_LANES_MAX];
    size_t n_lanes;
    size_t lanes_running; /* lanes inside lane_main; guarded by ctx.lock */
    struct ob_mirror *mirror;
};

uint64_t ob_config(struct ob_ctx *ctx, struct cfg *out)
{
    uv_mutex_lock(&ctx->lock);
    *out = ctx->cfg;
    uint64_t v = ctx->cfg_version;
    uv_mutex_unlock(&ctx->lock);
    return v;
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

static int add_lane(struct outbox *ob, const char *name, void *state, int64_t (*step)(void *),
                    void (*cancel)(void *))
{
    if (ob->n_lanes == OB_LANES_MAX)
        return -ENOSPC;
    struct ob_lane *l = &ob->lanes[ob->n_lanes++];
    l->name = name;
    l->ob = ob;
    l->state = state;
    l->step = step;
    l->cancel = cancel;
    uv_mutex_lock(&ob->ctx.lock);
    ob->lanes_running++;
    uv_mutex_unlock(&ob->ctx.lock);
    int rc = uv_thread_create(&l->thread, lane_main, l);
    if (rc != 0) {
        kd_error("cannot start the %s lane: %s", name, uv_strerror(rc));
        uv_mutex_lock(&ob->ctx.lock);
        ob->lanes_running--;
        uv_mutex_unlock(&ob->ctx.lock);
        ob->n_lanes--;
        return rc;
    }
    l->started = true;
    return 0;
}

static int64_t mirror_step(void *state)
{
    return ob_mirror_step(state);
}

static void mirror_cancel(void *state)
{
    ob_mirror_cancel(state);
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
    ob->ctx_ready = true;
    int rc = wk_store_open(wk, &ctx->env);
    if (rc != 0)
        return rc;
    if ((rc = uv_timer_init(wk->loop, &ob->stop_poll)) != 0)
        return rc;
    ob->stop_poll.data = ob;
    ob->timer_ready = true;
    if ((rc = ob_mirror_new(ctx, &ob->mirror)) != 0)
        return rc;
    if ((rc = add_lane(ob, "mirror", ob->mirror, mirror_step, mirror_cancel)) != 0)
        return rc;
    kd_info("outbox started: %s", wk->cfg.mirror_postgres[0] ? "mirror on" : "nothing configured");
    return 0;
}

static void on_stop(struct wk *wk)
{
    struct outbox *ob = wk->data;
    uv_mutex_lock(&ob->ctx.lock);
    ob->ctx.stopping = true;
    uv_cond_broadcast(&ob->ctx.wake);
    uv_mutex_unlock(&ob->ctx.lock);
    for (size_t i = 0; i < ob->n_lanes; i++)
        if (ob->lanes[i].cancel != NULL)
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
    for (size_t i = 0; i < ob->n_lanes; i++) {
        if (ob->lanes[i].cancel != NULL)
            ob->lanes[i].cancel(ob->lanes[i].state);
        if (ob->lanes[i].started)
            uv_thread_join(&ob->lanes[i].thread);
    }
    ob_mirror_free(ob->mirror);
    if (ob->ctx.env != NULL)
        st_close(ob->ctx.env);
    if (ob->ctx_ready) {
        uv_cond_destroy(&ob->ctx.wake);
        uv_mutex_destroy(&ob->ctx.lock);
    }
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
