/*
 * log.c: line logger with secret redaction. See log.h.
 *
 * The redaction runs on the fully formatted line, before it is cut to its maximum length, so a
 * secret cannot slip through a %s of a URL, an error string from libcurl or a server body
 * quoted in an error, nor leave a prefix where a line was cut. Then the line is made safe for
 * a terminal and for a line-oriented log: control characters (newlines and escape sequences
 * included) and bytes that are not UTF-8 are written as \xNN, so a server cannot forge log
 * lines or drive the terminal of whoever reads them.
 */
#include "base/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define KD_LOG_MAX_SECRETS 4
#define KD_LOG_LINE_MAX    4096
#define KD_SECRET_MIN      4 /* shorter secrets would redact ordinary words */

static const char *log_role = "kdeals";
/* Read by every thread that logs, changed by the main thread on a reload or USR1 (the outbox
 * logs from threads of its own): atomics, so a change is seen whole. */
static _Atomic int log_level = KD_LOG_INFO;
static _Atomic int log_fd = STDERR_FILENO;
static char *log_secrets[KD_LOG_MAX_SECRETS];

static const char *const level_names[] = {"ERROR", "WARN", "INFO", "DEBUG"};

void kd_log_set_role(const char *role)
{
    log_role = role;
}

void kd_log_set_level(enum kd_log_level level)
{
    atomic_store_explicit(&log_level, (int)level, memory_order_relaxed);
}

int kd_log_parse_level(const char *name, enum kd_log_level *level)
{
    static const char *const names[] = {"error", "warn", "info", "debug"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (strcmp(name, names[i]) == 0) {
            *level = (enum kd_log_level)i;
            return 0;
        }
    }
    return -EINVAL;
}

int kd_log_file_open(const char *path)
{
    /* Not through a link (another user's folder could hold one to a file of ours), and a
     * FIFO cannot block the open: checked once open instead. */
    int fd = open(
        path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY, 0600);
    if (fd < 0)
        return errno == ELOOP ? -EPERM : -errno;
    struct stat st;
    int rc = 0;
    if (fstat(fd, &st) != 0)
        rc = -errno;
    else if (!S_ISREG(st.st_mode) || st.st_uid != geteuid())
        rc = -EPERM;
    else if (fcntl(fd, F_SETFL, O_WRONLY | O_APPEND) != 0)
        rc = -errno;
    if (rc != 0) {
        close(fd);
        return rc;
    }
    return fd;
}

/*
 * A thread may be writing a line while the main thread reopens: log_fd keeps one descriptor
 * number for the process's life, and a reopen puts the new file under that number with dup3(),
 * which swaps it atomically. A line goes whole to the old file or whole to the new, never to a
 * closed descriptor nor to another file that reused a closed one's number.
 */
int kd_log_open(const char *path)
{
    int fd = path != NULL ? kd_log_file_open(path) : fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 0);
    if (fd < 0)
        return path != NULL ? fd : -errno;
    int cur = atomic_load(&log_fd);
    if (cur == STDERR_FILENO) {
        if (path == NULL) {
            close(fd); /* stderr already */
            return 0;
        }
        atomic_store(&log_fd, fd); /* the number kept from now on */
        return 0;
    }
    int rc = dup3(fd, cur, O_CLOEXEC) < 0 ? -errno : 0;
    close(fd);
    return rc;
}

int kd_log_add_secret(const char *secret)
{
    if (secret == NULL || strlen(secret) < KD_SECRET_MIN)
        return 0;
    for (size_t i = 0; i < KD_LOG_MAX_SECRETS; i++) {
        if (log_secrets[i] != NULL && strcmp(log_secrets[i], secret) == 0)
            return 0;
    }
    for (size_t i = 0; i < KD_LOG_MAX_SECRETS; i++) {
        if (log_secrets[i] == NULL) {
            log_secrets[i] = strdup(secret);
            return log_secrets[i] ? 0 : -ENOMEM;
        }
    }
    /* Full: replace the oldest rather than forget the newest secret. */
    free(log_secrets[0]);
    memmove(&log_secrets[0], &log_secrets[1], sizeof(log_secrets[0]) * (KD_LOG_MAX_SECRETS - 1));
    log_secrets[KD_LOG_MAX_SECRETS - 1] = strdup(secret);
    return log_secrets[KD_LOG_MAX_SECRETS - 1] ? 0 : -ENOMEM;
}

void kd_log_clear_secrets(void)
{
    for (size_t i = 0; i < KD_LOG_MAX_SECRETS; i++) {
        free(log_secrets[i]);
        log_secrets[i] = NULL;
    }
}

/*
 * Length of the secret that starts at SRC, 0 if none. At the end of SRC, a tail of at least
 * KD_SECRET_MIN bytes that begins a secret counts too: SRC may have been cut inside it.
 */
static size_t secret_at(const char *src)
{
    size_t rest = strlen(src);
    for (size_t i = 0; i < KD_LOG_MAX_SECRETS; i++) {
        const char *s = log_secrets[i];
        if (s == NULL)
            continue;
        size_t n = strlen(s);
        if (strncmp(src, s, n) == 0)
            return n;
        if (rest >= KD_SECRET_MIN && rest < n && strncmp(src, s, rest) == 0)
            return rest;
    }
    return 0;
}

char *kd_redact(const char *src, char *dst, size_t dstsz)
{
    static const char mask[] = "<redacted>";
    size_t out = 0;
    if (dstsz == 0)
        return dst;
    while (*src != '\0' && out + 1 < dstsz) {
        size_t matched = secret_at(src);
        if (matched > 0) {
            for (size_t k = 0; mask[k] != '\0' && out + 1 < dstsz; k++)
                dst[out++] = mask[k];
            src += matched;
        } else {
            dst[out++] = *src++;
        }
    }
    dst[out] = '\0';
    return dst;
}

void kd_seterr(char *err, size_t errlen, const char *fmt, ...)
{
    if (err == NULL || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* Length of the well-formed UTF-8 sequence of a printable character at S, 0 if there is none. */
static size_t utf8_printable(const unsigned char *s)
{
    unsigned c = s[0];
    if (c >= 0x20 && c < 0x7f)
        return 1;
    size_t n;
    unsigned cp;
    if (c >= 0xc2 && c <= 0xdf)
        n = 2, cp = c & 0x1f;
    else if (c >= 0xe0 && c <= 0xef)
        n = 3, cp = c & 0x0f;
    else if (c >= 0xf0 && c <= 0xf4)
        n = 4, cp = c & 0x07;
    else
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3fu);
    }
    /* Overlong forms, surrogates, beyond U+10FFFF, and the C1 controls (U+0080..U+009F, which
     * some terminals obey as escape sequences). */
    if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff) || cp < 0xa0)
        return 0;
    return n;
}

char *kd_sanitize(const char *src, char *dst, size_t dstsz)
{
    static const char hex[] = "0123456789abcdef";
    size_t out = 0;
    if (dstsz == 0)
        return dst;
    const unsigned char *s = (const unsigned char *)src;
    while (*s != '\0') {
        size_t n = utf8_printable(s);
        if (n > 0) {
            if (out + n >= dstsz)
                break;
            memcpy(dst + out, s, n);
            out += n;
            s += n;
            continue;
        }
        if (out + 4 >= dstsz)
            break;
        dst[out++] = '\\';
        dst[out++] = 'x';
        dst[out++] = hex[*s >> 4];
        dst[out++] = hex[*s & 15];
        s++;
    }
    dst[out] = '\0';
    return dst;
}

char *kd_vformat_redacted(char *dst, size_t dstsz, const char *fmt, va_list ap)
{
    /* Formatted whole, so that a secret is redacted before anything is cut. */
    char stack[KD_LOG_LINE_MAX];
    char *msg = stack;
    va_list again;
    va_copy(again, ap);
    int n = vsnprintf(stack, sizeof(stack), fmt, ap);
    if (n >= (int)sizeof(stack)) {
        char *big = malloc((size_t)n + 1);
        if (big != NULL) {
            vsnprintf(big, (size_t)n + 1, fmt, again);
            msg = big;
        }
    }
    va_end(again);
    /* A mask is at most 2.5 times the secret it replaces (10 bytes for 4 or more). */
    size_t need = 3 * strlen(msg) + 1;
    char small[3 * KD_LOG_LINE_MAX];
    char *redacted = need <= sizeof(small) ? small : malloc(need);
    if (redacted == NULL) {
        /* Out of memory for a huge line: keep its redacted start. */
        redacted = small;
        need = sizeof(small);
    }
    kd_redact(msg, redacted, need);
    kd_sanitize(redacted, dst, dstsz);
    if (redacted != small)
        free(redacted);
    if (msg != stack)
        free(msg);
    return dst;
}

void kd_log(enum kd_log_level level, const char *fmt, ...)
{
    if ((int)level > atomic_load_explicit(&log_level, memory_order_relaxed))
        return;

    int saved_errno = errno;
    char clean[KD_LOG_LINE_MAX];
    va_list ap;
    va_start(ap, fmt);
    kd_vformat_redacted(clean, sizeof(clean), fmt, ap);
    va_end(ap);

    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);

    char line[KD_LOG_LINE_MAX + 128];
    int n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %-5s %s[%ld]: %s\n",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     ts.tv_nsec / 1000000L, level_names[level], log_role, (long)getpid(), clean);
    if (n < 0)
        n = 0;
    if ((size_t)n >= sizeof(line)) {
        n = (int)sizeof(line) - 1;
        line[n - 1] = '\n';
    }
    ssize_t off = 0;
    while (off < n) {
        ssize_t w = write(atomic_load_explicit(&log_fd, memory_order_relaxed), line + off,
                          (size_t)(n - off));
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        off += w;
    }
    errno = saved_errno;
}
