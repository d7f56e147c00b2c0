/*
 * test_scanner_pipe.c: the scanner's page pipe (scanner/pipe.h): the pass's next /deal page is
 * requested ahead only with the busy rule on, on the /deal feed, for a page the selection
 * serves, and while the bucket holds more than SCANNER_BUSY_MIN minutes of refill.
 */
#include <stdint.h>

#include "kd_test.h"
#include "scanner/pipe.h"
#include "scanner/rules.h"

static void test_pipe_only_while_tokens_pile_up(void **state)
{
    (void)state;
    const int64_t rate = 100, busy = (int64_t)SCANNER_BUSY_MIN * rate;
    assert_true(scanner_pipe_next(true, true, 5, 66, busy + 1, rate));
    assert_true(scanner_pipe_next(true, true, 66, 66, 3 * busy, rate)); /* the last page */
    assert_false(scanner_pipe_next(true, true, 5, 66, busy, rate));     /* not above the bound */
    assert_false(scanner_pipe_next(true, true, 5, 66, 0, rate));
    assert_false(scanner_pipe_next(true, true, 5, 66, -50, rate)); /* in deficit */
    /* a 5/min plan spending what it gets: its bucket is far below 10 minutes of refill */
    assert_false(scanner_pipe_next(true, true, 1, 66, 20, 5));
    assert_true(scanner_pipe_next(true, true, 1, 66, 51, 5));
}

static void test_pipe_needs_the_busy_rule_the_feed_and_a_page(void **state)
{
    (void)state;
    const int64_t rate = 100, full = 30000;
    assert_false(scanner_pipe_next(false, true, 5, 66, full, rate)); /* busy rule off */
    assert_false(scanner_pipe_next(true, false, 5, 66, full, rate)); /* a list or a query */
    assert_false(scanner_pipe_next(true, true, 67, 66, full, rate)); /* past the last page */
    assert_false(scanner_pipe_next(true, true, 1, 0, full, rate));   /* a one-page selection */
    assert_false(scanner_pipe_next(true, true, 5, 66, full, 0));     /* no bucket reading */
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pipe_only_while_tokens_pile_up),
        cmocka_unit_test(test_pipe_needs_the_busy_rule_the_feed_and_a_page),
    };
    return KD_RUN_TESTS(tests, argc, argv);
}
