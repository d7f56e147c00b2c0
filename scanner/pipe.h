/*
 * pipe.h: the scanner's page pipe (scanner/stage.c): whether the pass's next /deal pages are
 * requested while this one is fetched, decoded, peeked and committed.
 *
 * With one page in flight a page's cycle is the server's time and then this stage's, in turn;
 * at 600x on the 100/min plan that cycle, not the plan, limited the tokens spent. With the
 * next page requested as soon as this one is, the two overlap (and a server with two threads
 * answers both at once). A page taken while still in flight holds its slot until it arrives,
 * so a second slot asks for the page after it: with one slot the pipe ran one page at a time
 * again once it was ahead (the next page was asked for only when the page before had been
 * decoded). The pages are requested before this one is known not to end the pass (a short
 * page, or the fresh rule's horizon): when it does, the pages after it are dropped and their
 * tokens are spent for nothing. So the pipe only runs while tokens pile up (the busy rule's
 * bound, SCANNER_BUSY_MIN minutes of refill in the bucket), where no other request waits for
 * them and they would only reach the cap.
 */
#ifndef KD_SCANNER_PIPE_H
#define KD_SCANNER_PIPE_H

#include <stdbool.h>
#include <stdint.h>

#define SCANNER_PIPE_SLOTS 2 /* pages requested ahead at most, the one taken in flight included */

/*
 * Whether page NEXT_POSITION of the pass is requested now, ahead of the page in memory: with
 * the busy rule on (BUSY_RULE), on the /deal feed (DEAL_SOURCE), when the selection serves
 * that page (NEXT_POSITION <= LAST_PAGE), and while the bucket's BALANCE is above
 * SCANNER_BUSY_MIN minutes of RATE tokens a minute.
 */
bool scanner_pipe_next(bool busy_rule, bool deal_source, uint64_t next_position, uint64_t last_page,
                       int64_t balance, int64_t rate);

#endif
