/*
 * key.h: the one way kdeals loads its Keepa API key, for every command and the daemon.
 *
 * Where the key comes from, first match wins:
 *
 *   1. [keepa] key_file: a regular file of mode 0600 (or stricter) holding the key (or several,
 *      below) on a line of its own; a file that group or others may read or write is refused, as
 *      ssh refuses a private key (a key others could read is leaked already); so is anything
 *      that is not a regular file (a FIFO is refused without waiting for a writer). A symbolic
 *      link is followed (a mounted secret is one) and its target held to the same rules;
 *   2. [keepa] key, inline in the config (config.c refuses a config file holding a key that
 *      others may read, by the same rule);
 *   3. the environment variable KEEPA_API_KEY.
 *
 * (The config refuses key and key_file together, so 1 and 2 never compete.) A key is 1 to
 * KD_KEY_MAX - 1 characters of [A-Za-z0-9._~-] (it goes into a URL); whitespace around it and
 * blank lines of the file are ignored. Errors name the config key or variable and the file, say
 * what to do, and never contain the key.
 *
 * key_file may hold several keys, one a line (up to KD_KEYS_MAX; more, or the same key twice, is
 * refused rather than read in part): each has its own token bucket and the daemon spreads its
 * requests over them (docs/architecture.md, "Tokens"). [keepa] key and KEEPA_API_KEY hold one.
 * The caller owns the keys and wipes them with kd_keys_wipe() on every path once they are handed
 * on.
 *
 * A key is never shown; where one must be told apart from another (the name of its token-bucket
 * segment, `kdeals status`) its fingerprint is: kd_key_fingerprint(), HMAC-SHA256 keyed with the
 * fixed label KD_KEY_FP_LABEL over the key, the first 8 bytes in hex (16 characters). The label
 * keeps the fingerprint apart from any other SHA-256 of the key; 64 bits tell a host's keys apart
 * and say nothing about the key (a key is 64 random characters).
 */
#ifndef KD_KEY_H
#define KD_KEY_H

#include <stddef.h>

#include "base/config.h"

#define KD_KEY_MAX  128 /* a key's longest text, plus the NUL */
#define KD_KEYS_MAX 8   /* keys one load returns; a key_file holding more is refused */

#define KD_KEY_FP_LEN   16 /* hex characters of a key's fingerprint */
#define KD_KEY_FP_LABEL "kdeals key bucket v1"

struct kd_keys {
    size_t n;                          /* keys loaded: 1..KD_KEYS_MAX after a successful load */
    char key[KD_KEYS_MAX][KD_KEY_MAX]; /* NUL-terminated */
    const char *origin;                /* "[keepa] key_file", "[keepa] key" or "KEEPA_API_KEY" */
};

/*
 * Loads the key(s) for config C into OUT (always initialised: on failure OUT->n is 0 and OUT
 * holds no key text). Returns 0; -ENOKEY when no key is configured anywhere; -EACCES when the
 * key file's mode lets group or others in; -EINVAL for a key that is empty, too long or has a
 * character that is not allowed, a key file that is not a regular file, holds more keys than
 * KD_KEYS_MAX or the same key twice; or the negative errno of opening or reading the key file. ERR
 * (size ERRLEN) then holds one line saying what to fix.
 */
int kd_keys_load(const struct cfg *c, struct kd_keys *out, char *err, size_t errlen);

/* Overwrites every key of K (explicit_bzero) and empties it. */
void kd_keys_wipe(struct kd_keys *k);

/*
 * Writes KEY's fingerprint (KD_KEY_FP_LEN lowercase hex characters and a NUL) to OUT. Returns 0,
 * or -EIO if the hash could not be computed (OUT is then "").
 */
int kd_key_fingerprint(const char *key, char out[KD_KEY_FP_LEN + 1]);

#endif
