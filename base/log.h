/*
 * log.h: one line per event, with a level, to stderr or a file.
 *
 * Line format: `2026-11-29T22:50:05.123Z INFO  scanner[1234]: message`. Lines are formatted in
 * full and written with one write(2), so lines of concurrent processes sharing a file never
 * interleave. Secrets (the Keepa API key) are registered once with kd_log_add_secret(); every
 * occurrence in a formatted line, and in strings passed through kd_redact(), is replaced by
 * "<redacted>" before it leaves the process, and before a long line is cut. Text from outside
 * (a server's error message, a file name) is made safe on the way out: control characters,
 * escape sequences and bytes that are not UTF-8 are written as \xNN (kd_sanitize), so every
 * line is one line and a terminal shows it as text. Logging state is process-global: the role
 * and the secrets are set up in main() before any other thread exists; the level and the
 * destination may change later (a reload, USR1) while other threads log.
 */
#ifndef KD_LOG_H
#define KD_LOG_H

#include <stdarg.h>
#include <stddef.h>

enum kd_log_level { KD_LOG_ERROR = 0, KD_LOG_WARN, KD_LOG_INFO, KD_LOG_DEBUG };

/* Sets the name shown before the pid (e.g. "scanner"). The string must outlive the process. */
void kd_log_set_role(const char *role);

/* Lines above this level are dropped. Default: KD_LOG_INFO. */
void kd_log_set_level(enum kd_log_level level);

/* Parses "error", "warn", "info" or "debug". Returns 0, or -EINVAL for anything else. */
int kd_log_parse_level(const char *name, enum kd_log_level *level);

/*
 * Opens the log file PATH for appending (created with mode 0600) the way every log file is
 * opened: not through a symbolic link, and refused (-EPERM) unless what was opened is a
 * regular file of the caller's effective uid. Returns the descriptor (close-on-exec) or a
 * negative errno.
 */
int kd_log_file_open(const char *path);

/*
 * Sends lines to PATH (opened by kd_log_file_open), or to stderr when PATH is NULL. Returns 0
 * or a negative errno; on failure the previous destination is kept. Call again to reopen
 * (USR1).
 */
int kd_log_open(const char *path);

/*
 * Registers a secret that must never appear in output. Secrets shorter than 4 bytes are
 * ignored (they would redact ordinary words). The string is copied. Returns 0 or -ENOMEM.
 */
int kd_log_add_secret(const char *secret);

/* Forgets every secret (tests). */
void kd_log_clear_secrets(void);

/*
 * Copies SRC into DST (size DSTSZ, always NUL-terminated, truncated if needed) with every
 * registered secret replaced by "<redacted>". Returns DST.
 */
char *kd_redact(const char *src, char *dst, size_t dstsz);

/*
 * Copies SRC into DST (size DSTSZ, always NUL-terminated, truncated between characters) with
 * every control character (C0, DEL and C1), escape sequence and byte that is not part of a
 * well-formed UTF-8 character written as the four characters \xNN. Returns DST.
 */
char *kd_sanitize(const char *src, char *dst, size_t dstsz);

/*
 * Formats a one-line error message into ERR (size ERRLEN, truncated if needed) for a caller
 * that asked for one; does nothing when ERR is NULL or ERRLEN 0. The caller passes no secret.
 */
void kd_seterr(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Formats FMT with AP into DST (size DSTSZ, truncated if needed) with every registered secret
 * replaced (before truncation) and the result sanitized (kd_sanitize), as kd_log does with its
 * lines. Returns DST. */
char *kd_vformat_redacted(char *dst, size_t dstsz, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

void kd_log(enum kd_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define kd_error(...) kd_log(KD_LOG_ERROR, __VA_ARGS__)
#define kd_warn(...)  kd_log(KD_LOG_WARN, __VA_ARGS__)
#define kd_info(...)  kd_log(KD_LOG_INFO, __VA_ARGS__)
#define kd_debug(...) kd_log(KD_LOG_DEBUG, __VA_ARGS__)

#endif
