/*
 * scanner.c: the scanner worker process (`kdeals worker scanner`, started by the supervisor).
 *
 * The worker runtime (worker/worker.h) attaches to the segment and opens the rings; the stage
 * (stage.h) opens the store and the spender, then discovers, pre-filters, dedups and peeks
 * on this process's libuv loop until TERM.
 */
#include "scanner/scanner.h"

#include <stdlib.h>

#include "base/log.h"
#include "worker/worker.h"
#include "scanner/stage.h"

int scanner_main(int argc, char **argv)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct wk wk;
    if (wk_start(&wk, SHM_ROLE_SCANNER, &loop, argc, argv) != 0)
        return 1;
    struct scanner *sc = calloc(1, sizeof(*sc));
    if (sc == NULL || scanner_stage_start(sc, &wk) != 0) {
        free(sc);
        wk_stop(&wk);
        wk_run(&wk);
        return 1;
    }
    wk_set_state(&wk, SHM_PROC_READY);
    kd_info("ready");
    wk_run(&wk);
    free(sc);
    return 0;
}
