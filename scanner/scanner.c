/*
 * scanner.c: the scanner worker process.
 *
 * Foundation stage: the worker runtime (common/worker.h) attaches to the segment, opens the
 * rings and marks the process ready; the stage itself arrives with the pipeline issue.
 */
#include "scanner/scanner.h"

#include "common/log.h"
#include "common/worker.h"

int scanner_main(int argc, char **argv)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct wk wk;
    if (wk_start(&wk, SHM_ROLE_SCANNER, &loop, argc, argv) != 0)
        return 1;
    wk_set_state(&wk, SHM_PROC_READY);
    kd_info("ready");
    wk_run(&wk);
    kd_info("stopped");
    return 0;
}
