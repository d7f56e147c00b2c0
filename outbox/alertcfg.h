/*
 * alertcfg.h: `[alert.NAME]` sections of the config: which deals an alert is about (a view) and
 * where it goes (a target), and their checker (docs/alerts.md lists the keys).
 *
 * The view is the seller's view (view/filter.h): `view = PRESET` takes a `[view.PRESET]`
 * section's filters, and the view's keys written in the section itself (`min_roi = 30`, ...)
 * add to or replace them; sort, limit and offset do not apply to an alert. The target is one of
 *
 *   url = https://...       an HTTP POST of a JSON body (format = json, slack, discord, teams:
 *                           kdeals' own document or a chat service's incoming-webhook shape)
 *   command = ...           run by /bin/sh -c with the deal as JSON (format json) on stdin
 *
 * The keys are checked when the config is loaded and reloaded (ob_alert_checker, handed to
 * cfg_named_check by `kdeals` and the supervisor), so ob_alert_parse of a loaded config fails
 * only for what the file system says (a secret file changed since).
 */
#ifndef KD_OUTBOX_ALERTCFG_H
#define KD_OUTBOX_ALERTCFG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/config.h"
#include "view/filter.h"

enum ob_format { OB_FMT_JSON, OB_FMT_SLACK, OB_FMT_DISCORD, OB_FMT_TEAMS };
enum ob_auth { OB_AUTH_NONE, OB_AUTH_HMAC, OB_AUTH_BEARER };

#define OB_SECRET_MAX 512

/* One alert, read from its section. */
struct ob_alert {
    char name[CFG_NAME_MAX];
    struct vw_filter filter;
    char url[CFG_STR_MAX + 1];     /* "" unless the target is a webhook */
    char command[CFG_STR_MAX + 1]; /* "" unless the target is a command */
    enum ob_format format;
    enum ob_auth auth;
    char secret_file[2 * CFG_STR_MAX + 2]; /* resolved against the config's folder; "" none */
    int64_t quiet_ms;     /* a deal back in the view within this of leaving does not fire */
    int64_t rate_per_min; /* deliveries a minute on average ... */
    int64_t burst;        /* ... at most this many at once */
    int64_t timeout_ms;   /* one attempt */
    int64_t retry_max_ms; /* the wait between attempts doubles from 2 s up to this */
    int64_t attempts;     /* then it is a dead letter */
    bool resend_unknown;  /* on_unknown = resend (true) or drop */
    int64_t keep_ms;      /* delivered and dropped deliveries are kept this long */
};

/* The checker of [alert.NAME] keys for cfg_named_check. */
extern const struct cfg_named_checker ob_alert_checker;

/*
 * Reads section [alert.NAME] of C into OUT: defaults, then the preset named by `view`, then the
 * section's own keys. Returns 0; -ENOENT when C has no such section; -EINVAL with ERR (ERRLEN
 * bytes) saying why.
 */
int ob_alert_parse(const struct cfg *c, const char *name, struct ob_alert *out, char *err,
                   size_t errlen);

/* The words of a format and an auth ("slack", "hmac"). */
const char *ob_format_name(enum ob_format f);

#endif
