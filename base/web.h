/*
 * web.h: what the config, the supervisor and the web role all check of [web]: the listen
 * address and the bearer token file.
 *
 * The dashboard is safe by default (docs/operations.md, "The web dashboard"): `[web] listen`
 * names an IP address, never a host name (no DNS lookup decides where the API is exposed);
 * a bare port means 127.0.0.1. Any address outside loopback (127.0.0.0/8, ::1) needs a bearer
 * token, read from `[web] token_file`, a regular file of mode 0600 or stricter, as the Keepa
 * key file is: a token others could read is leaked already. The config refuses a non-loopback
 * listen without token_file; the supervisor loads the token file once before it starts
 * anything, so a bad one stops the start with a clear error instead of a worker that keeps
 * dying; the web role loads it again for itself.
 */
#ifndef KD_BASE_WEB_H
#define KD_BASE_WEB_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#define KD_WEB_TOKEN_MIN 16  /* shortest token accepted: a guessable token is no protection */
#define KD_WEB_TOKEN_MAX 256 /* longest token text, plus the NUL */

/* A parsed listen address. */
struct kd_web_listen {
    struct sockaddr_storage addr; /* family, address and port */
    socklen_t addr_len;
    bool loopback; /* 127.0.0.0/8 or ::1 (also as ::ffff:127.x.y.z) */
    unsigned port; /* 0: any free port (the web role publishes the one it got) */
    char host[48]; /* the address as text, "127.0.0.1" or "::1" (no brackets) */
};

/*
 * Parses TEXT: "PORT" (on 127.0.0.1), "IPv4:PORT", "[IPv6]:PORT" or "localhost:PORT"; PORT is
 * 0..65535. Returns 0 and *OUT, or -EINVAL with WHY (WHYLEN bytes) saying what is allowed.
 */
int kd_web_listen_parse(const char *text, struct kd_web_listen *out, char *why, size_t whylen);

/*
 * Loads the bearer token from PATH into OUT (CAP bytes, at least KD_WEB_TOKEN_MAX): the file
 * must be a regular file (a FIFO or a device is refused without blocking) of mode 0600 or
 * stricter, holding one token of KD_WEB_TOKEN_MIN..KD_WEB_TOKEN_MAX-1 characters of
 * [A-Za-z0-9._~+/=-] (whitespace around it ignored). Returns 0; -EACCES when group or others
 * may read or write it; -EINVAL for anything else wrong with it; another negative errno when
 * it cannot be opened or read. ERR (ERRLEN bytes) then holds one line naming the file and
 * what to do, never the token. On failure OUT holds no token text.
 */
int kd_web_token_load(const char *path, char *out, size_t cap, char *err, size_t errlen);

/* Compares two tokens in time that depends only on their lengths (no early exit on a byte). */
bool kd_web_token_equal(const char *a, size_t alen, const char *b, size_t blen);

#endif
