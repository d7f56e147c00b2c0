/*
 * web.c: the [web] listen address and the bearer token file. See web.h.
 */
#include "base/web.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/log.h"

#define TOKEN_FILE_MAX 4096 /* bytes read from a token file */

static void say(char *why, size_t whylen, const char *text)
{
    if (whylen > 0)
        snprintf(why, whylen, "%s", text);
}

static int parse_port(const char *p, unsigned *port)
{
    if (*p == '\0' || strlen(p) > 5)
        return -EINVAL;
    unsigned v = 0;
    for (; *p != '\0'; p++) {
        if (!isdigit((unsigned char)*p))
            return -EINVAL;
        v = v * 10 + (unsigned)(*p - '0');
    }
    if (v > 65535)
        return -EINVAL;
    *port = v;
    return 0;
}

int kd_web_listen_parse(const char *text, struct kd_web_listen *out, char *why, size_t whylen)
{
    static const char *allowed = "use PORT (on 127.0.0.1), IPv4:PORT, [IPv6]:PORT or "
                                 "localhost:PORT, an IP address and a port 0..65535";
    struct kd_web_listen l;
    memset(&l, 0, sizeof(l));
    char host[48];
    const char *port_text;
    if (text == NULL || text[0] == '\0' || strlen(text) >= sizeof(host) + 8) {
        say(why, whylen, allowed);
        return -EINVAL;
    }
    const char *colon = strrchr(text, ':');
    if (text[0] == '[') {
        const char *close = strchr(text, ']');
        if (close == NULL || close[1] != ':' || (size_t)(close - text - 1) >= sizeof(host)) {
            say(why, whylen, allowed);
            return -EINVAL;
        }
        memcpy(host, text + 1, (size_t)(close - text - 1));
        host[close - text - 1] = '\0';
        port_text = close + 2;
    } else if (colon == NULL) {
        snprintf(host, sizeof(host), "127.0.0.1");
        port_text = text;
    } else {
        if ((size_t)(colon - text) >= sizeof(host) || strchr(text, ':') != colon) {
            say(why, whylen, allowed); /* an IPv6 address needs its brackets */
            return -EINVAL;
        }
        memcpy(host, text, (size_t)(colon - text));
        host[colon - text] = '\0';
        port_text = colon + 1;
    }
    if (parse_port(port_text, &l.port) != 0) {
        say(why, whylen, allowed);
        return -EINVAL;
    }
    if (strcmp(host, "localhost") == 0)
        snprintf(host, sizeof(host), "127.0.0.1");
    struct sockaddr_in *v4 = (struct sockaddr_in *)&l.addr;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&l.addr;
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)l.port);
        l.addr_len = sizeof(*v4);
        l.loopback = (ntohl(v4->sin_addr.s_addr) >> 24) == 127;
    } else if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)l.port);
        l.addr_len = sizeof(*v6);
        l.loopback = IN6_IS_ADDR_LOOPBACK(&v6->sin6_addr) ||
                     (IN6_IS_ADDR_V4MAPPED(&v6->sin6_addr) && v6->sin6_addr.s6_addr[12] == 127);
    } else {
        say(why, whylen, allowed);
        return -EINVAL;
    }
    snprintf(l.host, sizeof(l.host), "%s", host);
    *out = l;
    return 0;
}

static bool token_char(unsigned char ch)
{
    return isalnum(ch) || strchr("._~+/=-", ch) != NULL;
}

int kd_web_token_load(const char *path, char *out, size_t cap, char *err, size_t errlen)
{
    char buf[TOKEN_FILE_MAX + 1];
    int rc = 0;
    if (cap > 0)
        out[0] = '\0';
    /* O_NONBLOCK: a FIFO put in the token file's place cannot make the open wait. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        rc = -errno;
        kd_seterr(err, errlen, "config: [web] token_file %s: %s", path, strerror(-rc));
        return rc;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        kd_seterr(err, errlen, "config: [web] token_file %s is not a regular file", path);
        rc = -EINVAL;
        goto out;
    }
    if ((st.st_mode & 077) != 0) {
        kd_seterr(err, errlen,
                  "config: [web] token_file %s has mode %03o: others may read the bearer token; "
                  "chmod 600 it (and choose a new token if others did read it)",
                  path, (unsigned)(st.st_mode & 0777));
        rc = -EACCES;
        goto out;
    }
    ssize_t n = read(fd, buf, TOKEN_FILE_MAX);
    if (n < 0) {
        rc = -errno;
        kd_seterr(err, errlen, "config: [web] token_file %s: %s", path, strerror(-rc));
        goto out;
    }
    size_t len = (size_t)n, start = 0;
    while (start < len && isspace((unsigned char)buf[start]))
        start++;
    while (len > start && isspace((unsigned char)buf[len - 1]))
        len--;
    size_t tlen = len - start;
    if (tlen < KD_WEB_TOKEN_MIN || tlen >= KD_WEB_TOKEN_MAX || tlen >= cap) {
        kd_seterr(err, errlen,
                  "config: [web] token_file %s holds a token of %zu characters; use %d to %d, "
                  "e.g. the output of `head -c 32 /dev/urandom | base64`",
                  path, tlen, KD_WEB_TOKEN_MIN, KD_WEB_TOKEN_MAX - 1);
        rc = -EINVAL;
        goto out;
    }
    for (size_t i = start; i < len; i++) {
        if (!token_char((unsigned char)buf[i])) {
            kd_seterr(err, errlen,
                      "config: [web] token_file %s: the token has a character that is not allowed "
                      "at position %zu (letters, digits and . _ ~ + / = -; one line)",
                      path, i - start + 1);
            rc = -EINVAL;
            goto out;
        }
    }
    memcpy(out, buf + start, tlen);
    out[tlen] = '\0';
out:
    explicit_bzero(buf, sizeof(buf));
    close(fd);
    return rc;
}

bool kd_web_token_equal(const char *a, size_t alen, const char *b, size_t blen)
{
    unsigned char diff = alen == blen ? 0 : 1;
    size_t n = alen < blen ? alen : blen;
    for (size_t i = 0; i < n; i++)
        diff |= (unsigned char)(a[i] ^ b[i]);
    return diff == 0;
}
