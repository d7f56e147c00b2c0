/*
 * pipe.c: the scanner's page pipe. See pipe.h.
 */
#include "scanner/pipe.h"

#include "scanner/rules.h"

bool scanner_pipe_next(bool busy_rule, bool deal_source, uint64_t next_position, uint64_t last_page,
                       int64_t balance, int64_t rate)
{
    return busy_rule && deal_source && next_position <= last_page && rate > 0 &&
           balance > (int64_t)SCANNER_BUSY_MIN * rate;
}
