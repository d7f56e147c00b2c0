/*
 * test_log.c: the logger (base/log.h): one line per event, secrets redacted, outside text made
 * safe for a terminal, a reopen under logging threads.
 *
 * What a user relies on: a line written to the log is exactly one line, whatever a server put
 * in its error message (newlines, escape sequences, bytes that are not UTF-8); the API key
 * never appears, not even its start where a long line was cut; UTF-8 text (titles) stays
 * readable.
 */
#include "kd_test.h"

#include "base/log.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SECRET "TOPSECRETKEY9876543210abcdefghijklmnopqrstuvwxyz"

/* Logs PREFIX and ARG as one line through kd_log into a file; returns the file's text. */
static char *log_one(const char *prefix, const char *arg)
{
    char path[600];
    snprintf(path, sizeof(path), "%s/log", kd_test_tmpdir());
    unlink(path);
    assert_int_equal(kd_log_open(path), 0);
    kd_error("%s%s", prefix, arg);
    assert_int_equal(kd_log_open(NULL), 0);
    char *text = kd_read_file(path, NULL);
    assert_non_null(text);
    return text;
}

static int count_lines(const char *text)
{
    int n = 0;
    for (const char *p = text; *p; p++)
        n += *p == '\n';
    return n;
}

static void test_server_text_cannot_forge_lines_or_escape(void **state)
{
    (void)state;
    const char *evil = "bad request\n2030-01-01T00:00:00.000Z INFO  supervisor[1]: all good\r"
                       "\x1b]0;owned\x07\x1b[2J\x9b"
                       "31m \xc2\x9b"
                       "1m \xff\xfe end";
    char *text = log_one("keepa: HTTP 400: ", evil);
    assert_int_equal(count_lines(text), 1);
    assert_null(strchr(text, '\r'));
    assert_null(strchr(text, '\x1b'));
    assert_null(strchr(text, '\x07'));
    assert_null(strstr(text, "\x9b"));
    assert_null(strstr(text, "\xff"));
    /* The text itself stays readable, the controls shown as escapes. */
    assert_non_null(strstr(text, "bad request\\x0a2030-01-01"));
    assert_non_null(strstr(text, "\\x1b[2J"));
    assert_non_null(strstr(text, "\\xc2\\x9b1m"));
    assert_non_null(strstr(text, "end\n"));
    free(text);

    char out[64];
    kd_sanitize("Caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x93\xa6 ok", out, sizeof(out));
    assert_string_equal(out, "Caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x93\xa6 ok");
    /* Overlong and surrogate forms are not UTF-8. */
    kd_sanitize("\xc0\xaf \xed\xa0\x80", out, sizeof(out));
    assert_string_equal(out, "\\xc0\\xaf \\xed\\xa0\\x80");
    /* Truncation never splits an escape or a character. */
    kd_sanitize("ab\x1b", out, 5);
    assert_string_equal(out, "ab");
    kd_sanitize("ab\xc3\xa9", out, 4);
    assert_string_equal(out, "ab");
}

static void test_key_cut_by_line_length_is_redacted(void **state)
{
    (void)state;
    kd_log_clear_secrets();
    assert_int_equal(kd_log_add_secret(SECRET), 0);
    /* A line long enough that its cut falls inside the key, wherever it falls. */
    for (size_t pad = 4060; pad < 4110; pad += 7) {
        char *arg = malloc(pad + sizeof(SECRET) + 32);
        memset(arg, 'x', pad);
        snprintf(arg + pad, sizeof(SECRET) + 32, "%s tail", SECRET);
        char *text = log_one("", arg);
        assert_null(strstr(text, "TOPSECRETKEY"));
        assert_null(strstr(text, "9876543210"));
        free(text);

        /* The same through a message buffer (a last error is 256 bytes). */
        char small[256];
        memset(arg, 'y', 230);
        snprintf(arg + 230, sizeof(SECRET) + 32, "%s tail", SECRET);
        kd_redact(arg, small, sizeof(small));
        assert_null(strstr(small, "TOPSECRETKEY"));
        free(arg);
    }
    /* A source that was cut inside the key elsewhere: its start is masked. */
    char out[128];
    kd_redact("error: key=TOPSECRETKEY98", out, sizeof(out));
    assert_string_equal(out, "error: key=<redacted>");
    /* Ordinary text that ends like the start of no secret is left alone. */
    kd_redact("error: TOP", out, sizeof(out));
    assert_string_equal(out, "error: TOP");
    kd_log_clear_secrets();
}

struct writer {
    _Atomic int stop;
    int written;
};

static void *write_lines(void *ud)
{
    struct writer *w = ud;
    while (!atomic_load(&w->stop) || w->written < 5000)
        kd_info("line %d of the writer thread", w->written++);
    return NULL;
}

/*
 * logrotate moves the log away and USR1 reopens it while other threads log (the outbox's):
 * every line lands whole in the old file or the new one, none is lost.
 */
static void test_reopen_while_threads_log_loses_nothing(void **state)
{
    (void)state;
    char path[600], moved[640];
    snprintf(path, sizeof(path), "%s/rotated.log", kd_test_tmpdir());
    assert_int_equal(kd_log_open(path), 0);
    struct writer w = {0};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, write_lines, &w), 0);
    /* Another file opened right after each reopen (a thread's socket, say) takes the lowest
     * free descriptor number: a log line must never land in it. */
    char other[640];
    snprintf(other, sizeof(other), "%s/other", kd_test_tmpdir());
    int ofd = -1, reopens = 0;
    for (; reopens < 500; reopens++) {
        snprintf(moved, sizeof(moved), "%s.%d", path, reopens);
        assert_int_equal(rename(path, moved), 0);
        assert_int_equal(kd_log_open(path), 0);
        if (ofd >= 0)
            close(ofd);
        ofd = open(other, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        assert_true(ofd >= 0);
    }
    atomic_store(&w.stop, 1);
    pthread_join(t, NULL);
    close(ofd);
    assert_int_equal(kd_log_open(NULL), 0);
    size_t stray = 0;
    free(kd_read_file(other, &stray));
    int lines = 0, bad = 0;
    for (int i = 0; i <= reopens; i++) {
        if (i < reopens)
            snprintf(moved, sizeof(moved), "%s.%d", path, i);
        char *text = kd_read_file(i < reopens ? moved : path, NULL);
        assert_non_null(text);
        for (char *line = strtok(text, "\n"); line != NULL; line = strtok(NULL, "\n")) {
            lines++;
            bad += strstr(line, " of the writer thread") == NULL;
        }
        free(text);
    }
    printf("    %d reopens while a thread logged %d lines: %d found, %d not whole, %zu bytes in "
           "another file\n",
           reopens, w.written, lines, bad, stray);
    assert_int_equal(bad, 0);
    assert_int_equal(stray, 0);
    assert_int_equal(lines, w.written);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_server_text_cannot_forge_lines_or_escape),
        cmocka_unit_test(test_key_cut_by_line_length_is_redacted),
        cmocka_unit_test(test_reopen_while_threads_log_loses_nothing),
    };
    return KD_RUN_TESTS(tests, argc, argv);
}
