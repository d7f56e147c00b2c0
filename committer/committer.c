/*
 * committer.c: the committer worker process.
 *
 * Placeholder entry point of the foundation: the worker attaches to the instance's shared
 * memory segment, marks itself ready in the process table and waits until the supervisor
 * stops it. The pipeline issue fills in the real stage.
 */
#include "committer/committer.h"

#include "common/log.h"

int committer_main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    kd_log_set_role("committer");
    return 0;
}
