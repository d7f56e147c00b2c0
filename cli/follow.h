/*
 * follow.h: `kdeals deals --follow`: the change log as JSON lines, as it happens, resumable.
 */
#ifndef KD_CLI_FOLLOW_H
#define KD_CLI_FOLLOW_H

#include <stdbool.h>
#include <stdint.h>

#include "base/config.h"
#include "store/store.h"

/*
 * Prints every change of the store SO names after FROM (FROM_GIVEN false: after the log's
 * current end) as one JSON line, with reasons judged under config C's rules, and keeps doing so
 * until TERM or INT. Returns the exit code: 0 after a signal, 1 when the store cannot be read or
 * stdout cannot be written.
 */
int cli_follow_main(const struct cfg *c, const struct st_options *so, bool from_given,
                    uint64_t from);

#endif
