/*
 * test_key.c: the one API key loader (base/key.h).
 *
 * What a user relies on: the key comes from [keepa] key_file, else [keepa] key, else
 * KEEPA_API_KEY; a key file that group or others may read or write is refused with what to do;
 * whitespace and blank lines around the key do not matter; a file holds up to KD_KEYS_MAX keys,
 * one a line, and more (or a repeat) is refused rather than read in part; a key's fingerprint
 * is the documented keyed hash; every message names the real config key
 * and never contains the key itself.
 */
#include "kd_test.h"

#include "base/key.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SECRET "TOPSECRETKEY9876543210"
#define FP_ABC "450197cc42f73ebb"

static const char *write_key_file(const char *content, mode_t mode)
{
    static char path[4096];
    snprintf(path, sizeof(path), "%s/key", kd_test_tmpdir());
    unlink(path);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, content, strlen(content)), (ssize_t)strlen(content));
    close(fd);
    assert_int_equal(chmod(path, mode), 0);
    return path;
}

/* A config with KEY_FILE and KEY as given (NULL: unset). */
static struct cfg config(const char *key_file, const char *key)
{
    struct cfg c;
    cfg_defaults(&c);
    key_file = key_file ? key_file : "";
    key = key ? key : "";
    assert_true(strlen(key_file) < sizeof(c.keepa_key_file) && strlen(key) < sizeof(c.keepa_key));
    memcpy(c.keepa_key_file, key_file, strlen(key_file) + 1);
    memcpy(c.keepa_key, key, strlen(key) + 1);
    return c;
}

static void test_sources_in_order(void **state)
{
    (void)state;
    struct kd_keys k;
    char err[512];
    const char *file = write_key_file("\n  FILEKEY0123456789 \r\n\n", 0600);
    setenv("KEEPA_API_KEY", "ENVKEY0123456789", 1);

    struct cfg c = config(file, NULL);
    assert_int_equal(kd_keys_load(&c, &k, err, sizeof(err)), 0);
    assert_int_equal(k.n, 1);
    assert_string_equal(k.key[0], "FILEKEY0123456789");
    assert_string_equal(k.origin, "[keepa] key_file");

    c = config(NULL, " CFGKEY0123456789 ");
    assert_int_equal(kd_keys_load(&c, &k, err, sizeof(err)), 0);
    assert_string_equal(k.key[0], "CFGKEY0123456789");
    assert_string_equal(k.origin, "[keepa] key");

    c = config(NULL, NULL);
    assert_int_equal(kd_keys_load(&c, &k, err, sizeof(err)), 0);
    assert_string_equal(k.key[0], "ENVKEY0123456789");
    assert_string_equal(k.origin, "KEEPA_API_KEY");

    unsetenv("KEEPA_API_KEY");
    assert_int_equal(kd_keys_load(&c, &k, err, sizeof(err)), -ENOKEY);
    assert_int_equal(k.n, 0);
    assert_non_null(strstr(err, "[keepa] key_file"));
    assert_non_null(strstr(err, "[keepa] key"));
    assert_non_null(strstr(err, "KEEPA_API_KEY"));
    assert_null(strstr(err, "api_key"));

    kd_keys_wipe(&k);
    assert_int_equal(k.n, 0);
}

static void test_key_file_mode_refused(void **state)
{
    (void)state;
    struct kd_keys k;
    char err[512];
    static const mode_t modes[] = {0644, 0640, 0604, 0620, 0602};
    for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
        const char *file = write_key_file(SECRET "\n", modes[i]);
        struct cfg c = config(file, NULL);
        assert_int_equal(kd_keys_load(&c, &k, err, sizeof(err)), -EACCES);
        assert_int_equal(k.n, 0);
        assert_non_null(strstr(err, "[keepa] key_file"));
        assert_non_null(strstr(err, file));
        assert_non_null(strstr(err, "chmod 600"));
        assert_null(strstr(err, SECRET));
        if (modes[i] & 044)
            assert_non_null(strstr(err, "readable by others"));
    }
    const char *file = write_key_file(SECRET "\n", 0400);
    struct cfg c = config(file, NULL);
    assert_int_equal(kd_keys_load(&c, &k, err, sizeof(err)), 0);
    assert_string_equal(k.key[0], SECRET);
}

static void test_bad_keys_refused(void **state)
{
    (void)state;
    struct kd_keys k;
    char err[512];
    struct cfg c;

    /* Characters that could change the URL the key goes into; the key is not echoed. */
    c = config(write_key_file("TOPSECRET&KEY987\n", 0600), NULL);
    assert_int_equal(kd_keys_load(&c, &k, err, sizeof(err)), -EINVAL);
    assert_null(strstr(err, "TOPSECRET"));
    assert_non_null(strstr(err, "position 10"));
    c = config(NULL, "TOPSECRET KEY987");
    assert_int_equal(kd_keys_load(&c, &k, err, sizeof(err)), -EINVAL);
    assert_null(strstr(err, "TOPSECRET"));

    /* Too long. */
    char longkey[200]; /* the config takes it; a key is at most KD_KEY_MAX - 1 */
    memset(longkey, 'a', sizeof(longkey) - 1);
    longkey[sizeof(longkey) - 1] = '\0';
    c = config(NULL, longkey);
    assert_int_equal(kd_keys_load(&c, &k, err, sizeof(err)), -EINVAL);
    assert_null(strstr(err, "aaaa"));

    /* An empty file, a file of blank lines, a missing file, a folder. */
    c = config(write_key_file("", 0600), NULL);
    assert_int_equal(kd_keys_load(&c, &k, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "holds no key"));
    c = config(write_key_file(" \n\t \n", 0400), NULL);
    assert_int_equal(kd_keys_load(&c, &k, err, sizeof(err)), -EINVAL);
    char missing[4200];
    snprintf(missing, sizeof(missing), "%s/nope", kd_test_tmpdir());
    c = config(missing, NULL);
    assert_int_equal(kd_keys_load(&c, &k, err, sizeof(err)), -ENOENT);
    assert_non_null(strstr(err, missing));
    c = config(kd_test_tmpdir(), NULL);
    assert_int_equal(kd_keys_load(&c, &k, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "not a regular file"));
}

/* One key per line, up to KD_KEYS_MAX: more, or a repeat, is refused, not read in part. */
static void test_several_keys_one_a_line(void **state)
{
    (void)state;
    struct kd_keys k;
    char err[512];
    struct cfg c =
        config(write_key_file("FIRSTKEY0123456789\n\n  SECONDKEY0123456789 \r\n", 0600), NULL);
    assert_int_equal(kd_keys_load(&c, &k, err, sizeof(err)), 0);
    assert_int_equal(k.n, 2);
    assert_string_equal(k.key[0], "FIRSTKEY0123456789");
    assert_string_equal(k.key[1], "SECONDKEY0123456789");

    char many[2048] = "";
    for (int i = 0; i <= KD_KEYS_MAX; i++)
        snprintf(many + strlen(many), sizeof(many) - strlen(many), "MANYKEY%02d0123456789\n", i);
    c = config(write_key_file(many, 0600), NULL);
    assert_int_equal(kd_keys_load(&c, &k, err, sizeof(err)), -EINVAL);
    assert_int_equal(k.n, 0);
    char holds[64];
    snprintf(holds, sizeof(holds), "holds %d keys", KD_KEYS_MAX + 1);
    assert_non_null(strstr(err, holds));
    assert_null(strstr(err, "MANYKEY"));

    c = config(write_key_file("FIRSTKEY0123456789\nOTHERKEY0123456789\nFIRSTKEY0123456789\n", 0600),
               NULL);
    assert_int_equal(kd_keys_load(&c, &k, err, sizeof(err)), -EINVAL);
    assert_int_equal(k.n, 0);
    assert_non_null(strstr(err, "same Keepa API key twice (keys 1 and 3)"));
    assert_null(strstr(err, "FIRSTKEY"));
}

/* A FIFO put where the key file should be is refused at once, not waited on for a writer (the
 * daemon would hang before taking its lock). A symbolic link is followed, as a mounted secret
 * is one, and its target is held to the same rules: a readable target is refused. */
static void test_fifo_refused_symlink_followed(void **state)
{
    (void)state;
    kd_test_set_timeout(10);
    struct kd_keys k;
    char err[512];
    char fifo[600], link[600];
    snprintf(fifo, sizeof(fifo), "%s/fifo", kd_test_tmpdir());
    assert_int_equal(mkfifo(fifo, 0600), 0);
    struct cfg c = config(fifo, NULL);
    alarm(5); /* a blocking open would hang here; the alarm fails the test instead */
    assert_int_equal(kd_keys_load(&c, &k, err, sizeof(err)), -EINVAL);
    alarm(0);
    assert_non_null(strstr(err, "not a regular file"));

    const char *file = write_key_file("FILEKEY0123456789\n", 0600);
    snprintf(link, sizeof(link), "%s/key-link", kd_test_tmpdir());
    assert_int_equal(symlink(file, link), 0);
    c = config(link, NULL);
    assert_int_equal(kd_keys_load(&c, &k, err, sizeof(err)), 0);
    assert_int_equal(k.n, 1);
    assert_string_equal(k.key[0], "FILEKEY0123456789");

    const char *open_file = write_key_file("OPENKEY0123456789\n", 0644);
    char open_link[600];
    snprintf(open_link, sizeof(open_link), "%s/open-link", kd_test_tmpdir());
    assert_int_equal(symlink(open_file, open_link), 0);
    c = config(open_link, NULL);
    assert_int_equal(kd_keys_load(&c, &k, err, sizeof(err)), -EACCES);
    assert_int_equal(k.n, 0);
    assert_non_null(strstr(err, "chmod 600"));
    assert_null(strstr(err, "OPENKEY"));
}

/* The fingerprint names a key without showing it: fixed, hex, distinct per key. */
static void test_fingerprint(void **state)
{
    (void)state;
    char a[KD_KEY_FP_LEN + 1], b[KD_KEY_FP_LEN + 1], a2[KD_KEY_FP_LEN + 1];
    assert_int_equal(kd_key_fingerprint(SECRET, a), 0);
    assert_int_equal(kd_key_fingerprint(SECRET "x", b), 0);
    assert_int_equal(kd_key_fingerprint(SECRET, a2), 0);
    assert_int_equal(strlen(a), KD_KEY_FP_LEN);
    assert_string_equal(a, a2);
    assert_string_not_equal(a, b);
    for (int i = 0; i < KD_KEY_FP_LEN; i++)
        assert_non_null(strchr("0123456789abcdef", a[i]));
    /* HMAC-SHA256 keyed with the documented label (RFC 2104), its first 8 bytes: a value
     * computed independently (python3 -c "import hmac; print(hmac.new(b'kdeals key bucket v1',
     * b'abc', 'sha256').hexdigest()[:16])"). */
    assert_int_equal(kd_key_fingerprint("abc", a), 0);
    assert_string_equal(a, FP_ABC);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sources_in_order),
        cmocka_unit_test(test_key_file_mode_refused),
        cmocka_unit_test(test_bad_keys_refused),
        cmocka_unit_test(test_fifo_refused_symlink_followed),
        cmocka_unit_test(test_several_keys_one_a_line),
        cmocka_unit_test(test_fingerprint),
    };
    return KD_RUN_TESTS(tests, argc, argv);
}
