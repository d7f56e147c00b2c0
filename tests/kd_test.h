/*
 * kd_test.h: runs cmocka tests, each in its own process.
 *
 * A crash, an abort or a hang in one test fails that test, not the file: the runner forks a
 * child per test case (as libuv's test runner does), waits for it with a per-test deadline
 * and reports signals and timeouts by name. `test_x NAME...` runs only the named cases;
 * `test_x --list` prints them. The last line is "N passed, M failed" (plus skipped), which
 * CI reads. A test that cannot run here (no mount namespace without root) calls
 * kd_test_skip(), which marks it skipped; a file whose every test skipped exits 77, which ctest
 * reports as skipped. The recorded Keepa bodies are in the repository (tests/fixtures/keepa), so
 * a missing fixture fails the test.
 */
#ifndef KD_TEST_H
#define KD_TEST_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

/* Runs TESTS (an array of cmocka_unit_test) one per process. Use as the body of main(). */
#define KD_RUN_TESTS(tests, argc, argv)                                                            \
    kd_run_tests(#tests, tests, sizeof(tests) / sizeof((tests)[0]), argc, argv)

int kd_run_tests(const char *group, const struct CMUnitTest *tests, size_t count, int argc,
                 char **argv);

/* Marks the running test as skipped with a reason, and ends it. */
void kd_test_skip(const char *why) __attribute__((noreturn));

/*
 * Per-test deadline in seconds (default 60; KD_TEST_TIMEOUT from the environment overrides
 * it). Called from main() before KD_RUN_TESTS it sets the deadline of every test of the file;
 * called inside a test it sets that test's own deadline, counted from the test's start.
 */
void kd_test_set_timeout(unsigned seconds);

/*
 * Path of a recorded Keepa body in tests/fixtures/keepa (KD_FIXTURES_DIR in the environment
 * overrides the folder). A missing file fails the running test. The returned string is static.
 */
const char *kd_fixture_path(const char *name);

/* Reads a whole file into a malloc'd buffer (NUL-terminated); NULL on failure. */
char *kd_read_file(const char *path, size_t *len);

/* A fresh private temporary folder (mkdtemp) for this test process; static string. */
const char *kd_test_tmpdir(void);

/* A unique instance name for shm segments of this test process ("t<pid>-<n>"). */
const char *kd_test_instance(void);

/*
 * Records the shm NAME ("/kdeals-key-...") so that the runner unlinks it after the running
 * test, whatever becomes of the test (segments named after a key's fingerprint cannot be found
 * by the test's pid as kd_test_instance() ones are).
 */
void kd_test_track_shm(const char *name);

#endif
