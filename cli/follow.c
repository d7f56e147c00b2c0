/*
 * follow.c: `kdeals deals --follow`, the change feed: every change of the store's change log as
 * a JSON line, as it happens, for any program that wants the deals as they move.
 *
 * The change log (store/store.h, db `changes`) is written in the same LMDB transaction as the
 * record it describes, so reading it in seq order misses nothing and sees nothing twice. This
 * command reads it from a position, in batches, each batch in one read snapshot together with
 * the records it names, and prints one line per change (view/change.h): the change and the
 * record as it is in that snapshot. It never writes to the store: the position is the
 * consumer's, printed as "seq" on every line; `--from SEQ` resumes after the line with that seq,
 * so a consumer that keeps the seq of the last line it handled resumes without a gap or a
 * duplicate, across restarts of the daemon and of itself.
 *
 * Resynchronisation. The log keeps the last ST_CHANGES_MAX changes. When the position's next
 * change is no longer there (trimmed), or the position is past the log's end (a new store), the
 * feed says so, on stderr and as a line {"event": "resync", ...}, and then prints every record
 * of one snapshot as a "sync" line, then a "synced" line whose seq is the snapshot's last
 * change; following continues from there. The resync lines carry the old position as their seq
 * until "synced", so a consumer that stops half-way through a resync redoes it on resume:
 * nothing is skipped (sync lines repeat, and they are idempotent state).
 *
 * Waiting is polling: one short read transaction every FOLLOW_POLL_MS when the log is quiet
 * (a reader never blocks the daemon's writers). TERM and INT end it with exit status 0 after
 * the batch in flight is printed.
 */
#include "cli/follow.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/clock.h"
#include "cli/deals.h"
#include "judge/rules.h"
#include "view/change.h"

#define FOLLOW_BATCH   256
#define FOLLOW_POLL_MS 200

static volatile sig_atomic_t follow_stop;

static void on_stop_signal(int sig)
{
    (void)sig;
    follow_stop = 1;
}

/* Writes what G holds as one line to stdout and empties G. Returns 0 or -EIO. */
static int put_line(yajl_gen g)
{
    const unsigned char *buf;
    size_t len;
    if (yajl_gen_get_buf(g, &buf, &len) != yajl_gen_status_ok)
        return -EINVAL;
    int rc = fwrite(buf, 1, len, stdout) == len && fputc('\n', stdout) != EOF ? 0 : -EIO;
    yajl_gen_clear(g);
    yajl_gen_reset(g, NULL);
    return rc;
}

/* The "resync" line: why the feed starts over from the records. */
static int put_resync(yajl_gen g, uint64_t pos, uint64_t first, uint64_t last, const char *why)
{
    yajl_gen_map_open(g);
    yajl_gen_string(g, (const unsigned char *)"seq", 3);
    yajl_gen_integer(g, (long long)(pos & INT64_MAX));
    yajl_gen_string(g, (const unsigned char *)"event", 5);
    yajl_gen_string(g, (const unsigned char *)"resync", 6);
    yajl_gen_string(g, (const unsigned char *)"reason", 6);
    yajl_gen_string(g, (const unsigned char *)why, strlen(why));
    yajl_gen_string(g, (const unsigned char *)"first", 5);
    yajl_gen_integer(g, (long long)(first & INT64_MAX));
    yajl_gen_string(g, (const unsigned char *)"last", 4);
    yajl_gen_integer(g, (long long)(last & INT64_MAX));
    yajl_gen_map_close(g);
    return put_line(g);
}

/* The "synced" line: the resync is complete as of change LAST. */
static int put_synced(yajl_gen g, uint64_t last, uint64_t records)
{
    yajl_gen_map_open(g);
    yajl_gen_string(g, (const unsigned char *)"seq", 3);
    yajl_gen_integer(g, (long long)(last & INT64_MAX));
    yajl_gen_string(g, (const unsigned char *)"event", 5);
    yajl_gen_string(g, (const unsigned char *)"synced", 6);
    yajl_gen_string(g, (const unsigned char *)"records", 7);
    yajl_gen_integer(g, (long long)(records & INT64_MAX));
    yajl_gen_map_close(g);
    return put_line(g);
}

/* The log's last seq as of TXN (0 for an empty store). */
static int log_end(struct st_txn *txn, uint64_t *last)
{
    int rc = st_meta_get_u64(txn, ST_META_CHANGES_SEQ, last);
    if (rc == -ENOENT) {
        *last = 0;
        rc = 0;
    }
    return rc;
}

/* Every record of TXN as a "sync" line at seq POS, then "synced" at LAST. */
static int resync(struct st_txn *txn, yajl_gen g, const struct vw_out *o, uint64_t pos,
                  uint64_t last)
{
    struct st_cursor *cur;
    int rc = st_cursor_open(txn, ST_DB_PRODUCTS, &cur);
    if (rc != 0)
        return rc;
    uint64_t n = 0;
    int64_t now = kd_wall_ms();
    struct st_record r;
    for (;;) {
        int x = st_cursor_next_record(cur, &r);
        if (x == -ENOENT)
            break;
        if (x == -EBADMSG || x == -ENOTSUP)
            continue;
        if (x != 0) {
            rc = x;
            break;
        }
        struct st_change c;
        memset(&c, 0, sizeof(c));
        c.seq = pos;
        memcpy(c.asin, r.asin, sizeof(c.asin));
        c.domain = r.domain;
        c.revision = r.revision;
        c.state = r.state;
        c.prev_state = r.state;
        c.at_ms = now;
        if ((rc = vw_json_change(g, &c, "sync", &r, o)) != 0 || (rc = put_line(g)) != 0)
            break;
        n++;
    }
    st_cursor_close(cur);
    return rc != 0 ? rc : put_synced(g, last, n);
}

/*
 * One round: prints what follows *POS in one snapshot (a batch of changes, or a resync) and
 * moves *POS. *MORE tells whether a full batch was read (read again at once).
 */
static int follow_round(struct st_env *env, yajl_gen g, const struct vw_out *o, uint64_t *pos,
                        bool *more, struct st_change *batch)
{
    *more = false;
    struct st_txn *txn;
    int rc = st_read_begin(env, &txn);
    if (rc != 0)
        return rc;
    uint64_t first = 0, last = 0;
    if ((rc = st_changes_first(txn, &first)) != 0 || (rc = log_end(txn, &last)) != 0)
        goto out;
    const char *why = NULL;
    char whybuf[160];
    if (*pos > last) {
        snprintf(whybuf, sizeof(whybuf),
                 "position %llu is past the end of the log (%llu): a different store",
                 (unsigned long long)*pos, (unsigned long long)last);
        why = whybuf;
    } else if (first > *pos + 1 || (first == 0 && last > *pos)) {
        snprintf(whybuf, sizeof(whybuf),
                 "the log no longer holds the changes after %llu (the oldest kept is %llu)",
                 (unsigned long long)*pos, (unsigned long long)first);
        why = whybuf;
    }
    if (why != NULL) {
        fprintf(stderr, "kdeals deals --follow: %s: resynchronising from the records\n", why);
        if ((rc = put_resync(g, *pos, first, last, why)) == 0 &&
            (rc = resync(txn, g, o, *pos, last)) == 0)
            *pos = last;
        goto out;
    }
    size_t n = 0;
    if ((rc = st_changes_read(txn, *pos, batch, FOLLOW_BATCH, &n)) != 0)
        goto out;
    for (size_t i = 0; i < n; i++) {
        struct st_key key;
        struct st_record r;
        bool have = st_key_make(batch[i].domain, batch[i].asin, &key) == 0 &&
                    st_record_get(txn, &key, &r) == 0;
        if ((rc = vw_json_change(g, &batch[i], NULL, have ? &r : NULL, o)) != 0 ||
            (rc = put_line(g)) != 0)
            goto out;
        *pos = batch[i].seq;
    }
    *more = n == FOLLOW_BATCH;
out:
    st_read_end(txn);
    if (rc == 0 && fflush(stdout) != 0)
        rc = -EIO;
    return rc;
}

int cli_follow_main(const struct cfg *c, const struct st_options *so, bool from_given,
                    uint64_t from)
{
    char err[512];
    struct st_env *env;
    if (st_open_existing(so, &env, err, sizeof(err)) != 0) {
        fprintf(stderr, "kdeals deals --follow: %s\n", err);
        return 1;
    }
    struct jd_rules rules;
    jd_rules_from_cfg(c, &rules);
    struct vw_out o = {.rules = &rules};
    yajl_gen g = yajl_gen_alloc(NULL);
    struct st_change *batch = malloc(FOLLOW_BATCH * sizeof(*batch));
    int rc = g != NULL && batch != NULL ? 0 : -ENOMEM;
    uint64_t pos = from;
    if (rc == 0 && !from_given) {
        /* No position: from now on, as tail -f. */
        struct st_txn *txn;
        if ((rc = st_read_begin(env, &txn)) == 0) {
            rc = log_end(txn, &pos);
            st_read_end(txn);
        }
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_stop_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    while (rc == 0 && !follow_stop) {
        bool more = false;
        rc = follow_round(env, g, &o, &pos, &more, batch);
        if (rc == 0 && !more) {
            struct timespec ts = {0, FOLLOW_POLL_MS * 1000000L};
            nanosleep(&ts, NULL);
        }
    }
    free(batch);
    if (g != NULL)
        yajl_gen_free(g);
    st_close(env);
    if (rc == -EIO) {
        fprintf(stderr, "kdeals deals --follow: cannot write the output: %s\n", strerror(errno));
        return 1;
    }
    if (rc != 0) {
        fprintf(stderr, "kdeals deals --follow: cannot read %s: %s\n", so->path, st_strerror(rc));
        return 1;
    }
    return 0;
}
