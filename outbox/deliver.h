/*
 * deliver.h: one attempt to deliver one alert: its body in the target's format, and the POST or
 * the command that carries it (docs/alerts.md).
 *
 * Body. The same bytes on every attempt of a delivery (nothing in it changes between attempts:
 * the attempt number travels in a header), so a receiver that deduplicates by delivery id sees
 * the same document again:
 *
 *   json     {"kdeals": 1, "type": "deal.entered_view", "delivery_id", "alert", "instance",
 *            "entry", "entered_at_ms", "entered_at", "deal": {every field, docs/view.md}}
 *   slack    {"text": "..."}                      Slack incoming webhook (mrkdwn, a link)
 *   discord  {"content": "...", "embeds": [...]}  Discord webhook
 *   teams    {"@type": "MessageCard", ...}        Microsoft Teams incoming webhook
 *
 * HTTP. A POST with Content-Type application/json, X-Kdeals-Delivery and Idempotency-Key (the
 * delivery id), X-Kdeals-Alert, X-Kdeals-Attempt; with a secret, either X-Kdeals-Signature:
 * t=UNIX,v1=HEX (HMAC-SHA256 of "UNIX.BODY" keyed with the secret) or Authorization: Bearer
 * SECRET. Redirects are not followed. The API key is never anywhere in it: the outbox does not
 * hold it.
 *
 * Command. `/bin/sh -c COMMAND` in its own process group, the body on stdin, stdout and stderr
 * discarded, with KDEALS_ALERT, KDEALS_DELIVERY_ID and KDEALS_ATTEMPT in a clean environment;
 * exit status 0 means delivered. Killed (the group) at the timeout.
 */
#ifndef KD_OUTBOX_DELIVER_H
#define KD_OUTBOX_DELIVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "judge/judge.h"
#include "outbox/alertcfg.h"
#include "store/codec.h"

/* What an attempt came to. */
enum ob_result {
    OB_DELIVERED, /* 2xx, or exit status 0 */
    OB_FAILED,    /* certainly not delivered (no connection, a 5xx, 429, a failing command) */
    OB_UNKNOWN,   /* maybe delivered: sent, but no answer (a timeout, a reset, a killed command) */
    OB_REFUSED    /* the target refused it for good (a 4xx other than 408, 425 and 429) */
};

struct ob_outcome {
    enum ob_result result;
    int status;             /* HTTP status or exit status; 0 when there was none */
    int64_t retry_after_ms; /* a Retry-After the target sent; 0 none */
    char error[160];        /* for a failure: what, in one line */
};

/* What the body says besides the deal. */
struct ob_body_info {
    const char *delivery_id;
    const char *alert;
    const char *instance;
    uint32_t entry;
    int64_t entered_ms;
};

/*
 * Writes the body of a delivery of record R for alert A (its format) into a malloc'd *BODY of
 * *LEN bytes (NUL-terminated; free it). RULES re-judges R for the reasons. Returns 0, -ENOMEM.
 */
int ob_body(const struct ob_alert *a, const struct st_record *r, const struct ob_body_info *info,
            const struct jd_rules *rules, char **body, size_t *len);

/*
 * Reads the secret of A (its secret_file: first line, trimmed) into BUF (OB_SECRET_MAX). The
 * file must still be a regular file of mode 0600 or stricter. Returns 0 with *LEN, or a negative
 * errno with ERR saying why.
 */
int ob_secret_read(const struct ob_alert *a, char *buf, size_t *len, char *err, size_t errlen);

/*
 * One attempt: POSTs BODY to A's url, or runs A's command with it. ATTEMPT numbers it (1..).
 * CANCELLED(UD) is asked now and then; when it says true the attempt ends as OB_UNKNOWN (a
 * stop). SECRET (LEN bytes; NULL none) signs or authorises a POST. Fills OUT; never fails
 * otherwise.
 */
void ob_deliver(const struct ob_alert *a, const char *secret, size_t secret_len,
                const char *delivery_id, uint32_t attempt, const char *body, size_t len,
                bool (*cancelled)(void *ud), void *ud, struct ob_outcome *out);

#endif
