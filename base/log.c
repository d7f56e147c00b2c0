/*
 * log.c: line logger with secret redaction. See log.h.
 *
 * The redaction runs on the fully formatted line, so a secret cannot slip through a %s of a
 * URL, an error string from libcurl or a server body quoted in an error.
 */
#include "base/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define KD_LOG_MAX_SECRETS 4
#define KD_LOG_LINE_MAX    4096

static const char *log_role = "kdeals";
static enum kd_log_level log_level = KD_LOG_INFO;
static int log_fd = STDERR_FILENO;
static char *log_secrets[KD_LOG_MAX_SECRETS];

static const char *const level_names[] = {"ERROR", "WARN", "INFO", "DEBUG"};

void kd_log_set_role(const char *role)
{
    log_role = role;
}

void kd_log_set_level(enum kd_log_level level)
{
    log_level = level;
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

int kd_log_open(const char *path)
{
    if (path == NULL) {
        if (log_fd != STDERR_FILENO)
            close(log_fd);
        log_fd = STDERR_FILENO;
        return 0;
    }
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    if (log_fd != STDERR_FILENO)
        close(log_fd);
    log_fd = fd;
    return 0;
}

int kd_log_add_secret(const char *secret)
{
    if (secret == NULL || strlen(secret) < 4)
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

char *kd_redact(const char *src, char *dst, size_t dstsz)
{
    static const char mask[] = "<redacted>";
    size_t out = 0;
    if (dstsz == 0)
        return dst;
    while (*src != '\0' && out + 1 < dstsz) {
        size_t matched = 0;
        for (size_t i = 0; i < KD_LOG_MAX_SECRETS && matched == 0; i++) {
            const char *s = log_secrets[i];
            if (s != NULL && strncmp(src, s, strlen(s)) == 0)
                matched = strlen(s);
        }
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

char *kd_vformat_redacted(char *dst, size_t dstsz, const char *fmt, va_list ap)
{
    char msg[KD_LOG_LINE_MAX];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    return kd_redact(msg, dst, dstsz);
}

void kd_log(enum kd_log_level level, const char *fmt, ...)
{
    if (level > log_level)
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
        ssize_t w = write(log_fd, line + off, (size_t)(n - off));
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        off += w;
    }
    errno = saved_errno;
}
