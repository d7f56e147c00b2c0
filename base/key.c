/*
 * key.c: the Keepa API key loader. See key.h for the rules.
 */
#include "base/key.h"

#include <ctype.h>
#include <stdbool.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "base/log.h"

#define KEY_FILE_MAX 4096 /* bytes read from a key file; keys are short */

static bool key_char(unsigned char ch)
{
    return isalnum(ch) || ch == '-' || ch == '_' || ch == '.' || ch == '~';
}

/*
 * Adds the key SRC[0..LEN) (whitespace around it stripped) to OUT. ORIGIN names where it came
 * from in messages. Returns 0 or -EINVAL.
 */
static int add_key(struct kd_keys *out, const char *src, size_t len, const char *origin, char *err,
                   size_t errlen)
{
    while (len > 0 && isspace((unsigned char)src[0])) {
        src++;
        len--;
    }
    while (len > 0 && isspace((unsigned char)src[len - 1]))
        len--;
    if (len == 0) {
        kd_seterr(err, errlen, "config: the Keepa API key in %s is empty", origin);
        return -EINVAL;
    }
    if (len >= KD_KEY_MAX) {
        kd_seterr(err, errlen,
                  "config: the Keepa API key in %s is %zu characters long; a key has at most %d",
                  origin, len, KD_KEY_MAX - 1);
        return -EINVAL;
    }
    for (size_t i = 0; i < len; i++) {
        if (!key_char((unsigned char)src[i])) {
            kd_seterr(err, errlen,
                      "config: the Keepa API key in %s has a character that is not allowed at "
                      "position %zu (a key is letters, digits and . _ ~ -)",
                      origin, i + 1);
            return -EINVAL;
        }
    }
    for (size_t i = 0; i < out->n; i++) {
        if (strlen(out->key[i]) == len && memcmp(out->key[i], src, len) == 0) {
            kd_seterr(err, errlen,
                      "config: %s holds the same Keepa API key twice (keys %zu and %zu): one "
                      "key has one bucket; remove the repeat",
                      origin, i + 1, out->n + 1);
            return -EINVAL;
        }
    }
    memcpy(out->key[out->n], src, len);
    out->key[out->n][len] = '\0';
    out->n++;
    return 0;
}

/* Reads the key file PATH: one key per line, blank lines ignored. */
static int load_file(struct kd_keys *out, const char *path, char *err, size_t errlen)
{
    char origin[CFG_STR_MAX + 32];
    snprintf(origin, sizeof(origin), "[keepa] key_file %s", path);
    char *buf = NULL;
    int rc = 0;
    /* Non-blocking, so that a FIFO (or a device) put there cannot hang the caller before the
     * check below refuses it. A symbolic link is followed (a mounted secret is one): the checks
     * below are made on what was opened, the target, so a swapped link changes nothing. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        rc = -errno;
        kd_seterr(err, errlen, "config: %s: %s", origin, strerror(-rc));
        goto out;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        kd_seterr(err, errlen, "config: %s is not a regular file", origin);
        rc = -EINVAL;
        goto out_fd;
    }

    if ((st.st_mode & 077) != 0) {
        kd_seterr(err, errlen,
                  "config: %s has mode %04o, %s by others: refusing to use it; chmod 600 %s (and "
                  "get a new key if others could read it)",
                  origin, (unsigned)(st.st_mode & 07777),
                  (st.st_mode & 044) != 0 ? "readable" : "writable", path);
        rc = -EACCES;
        goto out_fd;
    }
    buf = malloc(KEY_FILE_MAX + 1);
    if (buf == NULL) {
        rc = -ENOMEM;
        kd_seterr(err, errlen, "config: %s: out of memory", origin);
        goto out_fd;
    }
    size_t len = 0;
    for (;;) {
        ssize_t r = read(fd, buf + len, KEY_FILE_MAX + 1 - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            rc = -errno;
            kd_seterr(err, errlen, "config: cannot read %s: %s", origin, strerror(-rc));
            goto out_buf;
        }
        if (r == 0)
            break;
        len += (size_t)r;
        if (len > KEY_FILE_MAX) {
            kd_seterr(err, errlen, "config: %s is larger than %d bytes: not a key file", origin,
                      KEY_FILE_MAX);
            rc = -EINVAL;
            goto out_buf;
        }
    }
    size_t keys = 0;
    for (size_t at = 0; at < len && rc == 0;) {
        size_t end = at;
        while (end < len && buf[end] != '\n')
            end++;
        bool blank = true;
        for (size_t i = at; i < end; i++)
            blank &= isspace((unsigned char)buf[i]) != 0;
        if (!blank) {
            keys++;
            if (keys <= KD_KEYS_MAX)
                rc = add_key(out, buf + at, end - at, origin, err, errlen);
        }
        at = end + 1;
    }
    if (rc == 0 && keys == 0) {
        kd_seterr(err, errlen, "config: %s holds no key (put the key on a line of its own)",
                  origin);
        rc = -EINVAL;
    } else if (rc == 0 && keys > KD_KEYS_MAX) {
        kd_seterr(err, errlen, "config: %s holds %zu keys; at most %d are used (one key a line)",
                  origin, keys, KD_KEYS_MAX);
        rc = -EINVAL;
    }
out_buf:
    explicit_bzero(buf, KEY_FILE_MAX + 1);
    free(buf);
out_fd:
    close(fd);
out:
    return rc;
}

int kd_keys_load(const struct cfg *c, struct kd_keys *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    int rc;
    if (c->keepa_key_file[0] != '\0') {
        out->origin = "[keepa] key_file";
        rc = load_file(out, c->keepa_key_file, err, errlen);
    } else if (c->keepa_key[0] != '\0') {
        out->origin = "[keepa] key";
        rc = add_key(out, c->keepa_key, strlen(c->keepa_key), "[keepa] key", err, errlen);
    } else if (getenv("KEEPA_API_KEY") != NULL && getenv("KEEPA_API_KEY")[0] != '\0') {
        const char *env = getenv("KEEPA_API_KEY");
        out->origin = "KEEPA_API_KEY";
        rc = add_key(out, env, strlen(env), "the environment variable KEEPA_API_KEY", err, errlen);
    } else {
        kd_seterr(err, errlen,
                  "config: no Keepa API key: set [keepa] key_file (a file of mode 0600 holding the "
                  "key) or [keepa] key, or export KEEPA_API_KEY");
        rc = -ENOKEY;
    }
    if (rc != 0)
        kd_keys_wipe(out);
    return rc;
}

void kd_keys_wipe(struct kd_keys *k)
{
    explicit_bzero(k->key, sizeof(k->key));
    k->n = 0;
}

int kd_key_fingerprint(const char *key, char out[KD_KEY_FP_LEN + 1])
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mac_len = 0;
    out[0] = '\0';
    if (HMAC(EVP_sha256(), KD_KEY_FP_LABEL, (int)strlen(KD_KEY_FP_LABEL),
             (const unsigned char *)key, strlen(key), mac, &mac_len) == NULL ||
        mac_len < KD_KEY_FP_LEN / 2)
        return -EIO;
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < KD_KEY_FP_LEN / 2; i++) {
        out[2 * i] = hex[mac[i] >> 4];
        out[2 * i + 1] = hex[mac[i] & 15];
    }
    out[KD_KEY_FP_LEN] = '\0';
    explicit_bzero(mac, sizeof(mac));
    return 0;
}
