/*
 * stage.c: the web role as the worker runtime runs it, and `kdeals web`. See web.h.
 *
 * As a worker it has no rings, no spender and no key: start loads the bearer token (when
 * [web] token_file is set) and starts the server on the worker's loop with the role's counter
 * block and the segment's web block to publish its port in; stop closes the server (every
 * connection ends, event streams included) and then ends the worker; reload hands the new
 * config to the API; release frees what a stop that never ran (QUIT, the supervisor's death)
 * left.
 */
#include "web/web.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "base/log.h"
#include "base/web.h"
#include "web/server.h"

struct web_state {
    struct web_server *ws;
};

/* The bearer token of C into TOKEN (KD_WEB_TOKEN_MAX bytes; "" none). 0 or -errno after
 * saying why in ERR. */
static int load_token(const struct cfg *c, char *token, char *err, size_t errlen)
{
    token[0] = '\0';
    if (c->web_token_file[0] == '\0')
        return 0;
    return kd_web_token_load(c->web_token_file, token, KD_WEB_TOKEN_MAX, err, errlen);
}

static int on_start(struct wk *wk)
{
    struct web_state *st = wk->data;
    char token[KD_WEB_TOKEN_MAX], err[512], instance[SHM_INSTANCE_MAX];
    int rc = load_token(&wk->cfg, token, err, sizeof(err));
    if (rc == 0) {
        struct shm_layout *l = wk->seg.layout;
        snprintf(instance, sizeof(instance), "%s", l->header.instance);
        struct web_server_options o = {.cfg = &wk->cfg,
                                       .instance = instance,
                                       .token = token,
                                       .counters = wk->counters,
                                       .publish = &l->web};
        rc = web_server_start(&st->ws, wk->loop, &o, err, sizeof(err));
    }
    explicit_bzero(token, sizeof(token));
    if (rc != 0) {
        kd_error("%s", err);
        wk_set_error(wk, "%s", err);
    }
    return rc;
}

static void on_closed(void *ud)
{
    struct wk *wk = ud;
    struct web_state *st = wk->data;
    st->ws = NULL;
    wk_stop(wk);
}

static void on_stop(struct wk *wk)
{
    struct web_state *st = wk->data;
    if (st->ws != NULL)
        web_server_close(st->ws, on_closed, wk);
    else
        wk_stop(wk);
}

static void on_reload(struct wk *wk)
{
    struct web_state *st = wk->data;
    if (st->ws != NULL)
        web_server_reload(st->ws, &wk->cfg);
}

static void on_release(struct wk *wk)
{
    struct web_state *st = wk->data;
    if (st != NULL && st->ws != NULL) {
        web_server_abandon(st->ws);
        st->ws = NULL;
    }
}

const struct wk_stage web_stage = {
    .name = "web",
    .role = SHM_ROLE_WEB,
    .state_size = sizeof(struct web_state),
    .start = on_start,
    .stop = on_stop,
    .reload = on_reload,
    .release = on_release,
};

/* ---- kdeals web ------------------------------------------------------------------------ */

struct standalone {
    uv_loop_t *loop;
    struct web_server *ws;
    uv_signal_t sig_int, sig_term;
};

static void standalone_closed(void *ud)
{
    struct standalone *sa = ud;
    sa->ws = NULL;
    uv_close((uv_handle_t *)&sa->sig_int, NULL);
    uv_close((uv_handle_t *)&sa->sig_term, NULL);
}

static void standalone_signal(uv_signal_t *h, int signum)
{
    struct standalone *sa = h->data;
    kd_info("web: %s: stopping", signum == SIGINT ? "SIGINT" : "SIGTERM");
    uv_signal_stop(&sa->sig_int);
    uv_signal_stop(&sa->sig_term);
    if (sa->ws != NULL)
        web_server_close(sa->ws, standalone_closed, sa);
}

int web_run(const struct cfg *c, const char *instance, const char *run_dir, const char *listen)
{
    char token[KD_WEB_TOKEN_MAX], err[512];
    if (load_token(c, token, err, sizeof(err)) != 0) {
        fprintf(stderr, "kdeals web: %s\n", err);
        return 2;
    }
    if (listen == NULL)
        listen = c->web_listen[0] != '\0' ? c->web_listen : "127.0.0.1:8480";
    uv_loop_t loop;
    if (uv_loop_init(&loop) != 0) {
        explicit_bzero(token, sizeof(token));
        fprintf(stderr, "kdeals web: cannot start an event loop\n");
        return 1;
    }
    struct standalone sa = {.loop = &loop};
    struct web_server_options o = {
        .cfg = c, .listen = listen, .instance = instance, .run_dir = run_dir, .token = token};
    int rc = web_server_start(&sa.ws, &loop, &o, err, sizeof(err));
    explicit_bzero(token, sizeof(token));
    if (rc != 0) {
        fprintf(stderr, "kdeals %s\n", err);
        uv_loop_close(&loop);
        return rc == -EINVAL || rc == -EPERM ? 2 : 1;
    }
    uv_signal_init(&loop, &sa.sig_int);
    uv_signal_init(&loop, &sa.sig_term);
    sa.sig_int.data = sa.sig_term.data = &sa;
    uv_signal_start(&sa.sig_int, standalone_signal, SIGINT);
    uv_signal_start(&sa.sig_term, standalone_signal, SIGTERM);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    return 0;
}
