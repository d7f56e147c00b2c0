/*
 * rings.c: ring watches and push backlogs for the stages. See rings.h.
 */
#include "worker/rings.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"

#define WK_SERVE_ROUNDS 16 /* drain/prepare rounds per serve; the safety timer does the rest */

/* ---- consumer ------------------------------------------------------------------------- */

static void on_poll(uv_poll_t *h, int status, int events)
{
    (void)status;
    (void)events;
    struct wk_watch *w = h->data;
    ring_wait_done(w->ring);
    w->on_wake(w);
}

void wk_watch_start(struct wk_watch *w, struct wk *wk, enum shm_ring_id id, wk_drain_fn drain,
                    wk_wake_fn on_wake, void *ud)
{
    memset(w, 0, sizeof(*w));
    w->ring = &wk->rings[id];
    w->id = id;
    w->drain = drain;
    w->on_wake = on_wake;
    w->ud = ud;
    int fd = w->ring->wake_fd;
    if (fd < 0 || uv_poll_init(wk->loop, &w->poll, fd) != 0) {
        kd_warn("the %s ring has no usable wake-up fd; the safety timer serves it",
                shm_ring_name(id));
        return;
    }
    w->poll.data = w;
    uv_poll_start(&w->poll, UV_READABLE, on_poll);
    w->polling = true;
}

void wk_watch_serve(struct wk_watch *w)
{
    for (int round = 0; round < WK_SERVE_ROUNDS; round++) {
        if (!w->drain(w))
            return;
        /* Sleep only once the ring is empty and the producer knows to wake us. */
        if (!w->polling || ring_prepare_wait(w->ring) == 0)
            return;
    }
}

void wk_watch_wait_done(struct wk_watch *w)
{
    ring_wait_done(w->ring);
}

void wk_watch_close(struct wk_watch *w)
{
    if (!w->polling)
        return;
    w->polling = false;
    uv_poll_stop(&w->poll);
    if (!uv_is_closing((uv_handle_t *)&w->poll))
        uv_close((uv_handle_t *)&w->poll, NULL);
}

/* ---- producer ------------------------------------------------------------------------- */

static const enum shm_counter_id depth_gauge[SHM_RING_COUNT] = {
#define DEPTH_GAUGE_OF(id, name, producer, consumer, gauge) SHM_C_##gauge,
    SHM_RINGS(DEPTH_GAUGE_OF)
#undef DEPTH_GAUGE_OF
};

int wk_backlog_init(struct wk_backlog *b, struct wk *wk, enum shm_ring_id id, size_t cap,
                    const char *on_drop)
{
    memset(b, 0, sizeof(*b));
    b->rec = calloc(cap, sizeof(*b->rec));
    if (b->rec == NULL)
        return -ENOMEM;
    b->wk = wk;
    b->id = id;
    b->cap = cap;
    b->on_drop = on_drop;
    return 0;
}

void wk_backlog_free(struct wk_backlog *b)
{
    free(b->rec);
    b->rec = NULL;
    b->n = b->cap = 0;
}

static void set_depth(struct wk_backlog *b)
{
    struct ring *r = &b->wk->rings[b->id];
    shm_gauge_set(b->wk->counters, depth_gauge[b->id], (int64_t)ring_depth(r->ctl));
}

/* Writes one record to the ring. Returns 0, -EAGAIN (full: keep it) or another error (it
 * can never be pushed: logged). */
static int put(struct wk_backlog *b, const struct st_pending *rec)
{
    uint8_t buf[ST_RECORD_MAX];
    size_t len = 0;
    int rc = st_pending_encode(rec, buf, sizeof(buf), &len);
    if (rc != 0) {
        kd_error("cannot encode the %s ring record of %s: %s; %s", shm_ring_name(b->id), rec->asin,
                 strerror(-rc), b->on_drop);
        return rc;
    }
    rc = ring_write(&b->wk->rings[b->id], buf, len);
    if (rc == 0)
        shm_counter_add(b->wk->counters, SHM_C_ring_records_out, 1);
    else if (rc == -EAGAIN)
        shm_counter_add(b->wk->counters, SHM_C_ring_full, 1);
    else
        kd_error("cannot push %s to the %s ring: %s; %s", rec->asin, shm_ring_name(b->id),
                 strerror(-rc), b->on_drop);
    return rc;
}

int wk_backlog_add(struct wk_backlog *b, const struct st_pending *rec)
{
    if (b->n >= b->cap)
        return -ENOBUFS;
    b->rec[b->n++] = *rec;
    return 0;
}

int wk_backlog_push(struct wk_backlog *b, const struct st_pending *rec)
{
    int rc = 0;
    if (b->n == 0) {
        rc = put(b, rec);
        if (rc != -EAGAIN) {
            set_depth(b);
            return rc;
        }
    }
    rc = wk_backlog_add(b, rec);
    if (rc != 0)
        kd_warn("%s ring full and %zu records waiting: %s not notified (%s)", shm_ring_name(b->id),
                b->n, rec->asin, b->on_drop);
    set_depth(b);
    return rc;
}

void wk_backlog_truncate(struct wk_backlog *b, size_t n)
{
    if (n < b->n)
        b->n = n;
}

size_t wk_backlog_flush(struct wk_backlog *b)
{
    size_t done = 0;
    while (done < b->n) {
        if (put(b, &b->rec[done]) == -EAGAIN)
            break;
        done++; /* pushed, or impossible to push: either way not retried */
    }
    memmove(b->rec, b->rec + done, (b->n - done) * sizeof(b->rec[0]));
    b->n -= done;
    set_depth(b);
    return b->n;
}
