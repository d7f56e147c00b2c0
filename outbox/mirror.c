/*
 * mirror.c: the PostgreSQL mirror. See mirror.h for what it guarantees and schema.c for the
 * tables.
 *
 * A batch is sent as two JSON documents, the products and the changes, one parameter each,
 * and PostgreSQL unpacks them with jsonb_to_recordset: a handful of round trips per batch
 * whatever its size, no SQL built from data, and the rows are exactly the JSON of
 * `kdeals deals --format json` (view/export.h) and `--follow` (view/change.h). Each product
 * element is {"domain", "asin", "revision", "seq", "deleted", "record"}, where seq is the
 * snapshot's last change seq (the row is true as of it) and deleted says the record is gone.
 *
 * libpq is used synchronously on the lane's thread; the connection has keepalives and a TCP
 * user timeout so a database that vanished without a word (a cable, a host) is noticed, and a
 * statement timeout so no query hangs forever; ob_mirror_cancel interrupts a query for a stop.
 */
#include "outbox/mirror.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yajl/yajl_gen.h>

#include "base/clock.h"
#include "base/log.h"
#include "judge/market.h"
#include "judge/rules.h"
#include "outbox/alertdb.h"
#include "outbox/schema.h"
#include "shm/counters.h"
#include "store/store.h"
#include "view/change.h"
#include "view/export.h"

#define MIRROR_POLL_MS     200  /* caught up: look at the log again after this */
#define MIRROR_IDLE_MS     2000 /* no [mirror] postgres: look at the config again after this */
#define MIRROR_BACKOFF_MS  1000 /* first wait after a failure; doubles up to retry_max */
#define MIRROR_GC_EVERY_MS (10 * 60 * 1000)
#define MIRROR_ERR_MAX     384

struct ob_mirror {
    struct ob_ctx *ctx;
    struct cfg *cfg; /* this step's config */
    struct jd_rules rules;
    PGconn *conn;
    uv_mutex_t cancel_lock;
    PGcancel *cancel;                     /* guarded by cancel_lock */
    bool ready;                           /* migrated and claimed on this connection */
    char conninfo_value[CFG_STR_MAX + 1]; /* the [mirror] postgres the connection used */
    char instance[64];                    /* the name in the database */
    char store_id[40];                    /* this store's id (hex) */
    char app_name[64];                    /* application_name of the connection */
    unsigned failures;                    /* steps failed in a row */
    char error[MIRROR_ERR_MAX];           /* the failure being reported */
    char logged_error[MIRROR_ERR_MAX];    /* the last one logged */
    int64_t gc_at_ms;                     /* next pruning of old changes */
    struct st_change *changes;            /* batch buffer */
    size_t changes_cap;
    struct st_key *keys;
    yajl_gen g;
};

/* ---- small helpers ---------------------------------------------------------------------- */

static void set_error(struct ob_mirror *m, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void set_error(struct ob_mirror *m, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m->error, sizeof(m->error), fmt, ap);
    va_end(ap);
    /* libpq's messages end with a newline, and may span lines: one line in the log. */
    for (char *p = m->error; *p; p++)
        if (*p == '\n' || *p == '\r' || *p == '\t')
            *p = p[1] ? ' ' : '\0';
}

static void disconnect(struct ob_mirror *m)
{
    uv_mutex_lock(&m->cancel_lock);
    if (m->cancel != NULL)
        PQfreeCancel(m->cancel);
    m->cancel = NULL;
    uv_mutex_unlock(&m->cancel_lock);
    if (m->conn != NULL)
        PQfinish(m->conn);
    m->conn = NULL;
    m->ready = false;
}

/*
 * Runs SQL with N text parameters (NULL values are SQL NULL). Returns 0 with *RES (when RES is
 * not NULL; PQclear it) for a command or a query that succeeded, else -EIO with m->error set.
 */
static int pg_run(struct ob_mirror *m, const char *what, const char *sql, int n,
                  const char *const *params, PGresult **res)
{
    PGresult *r =
        n > 0 ? PQexecParams(m->conn, sql, n, NULL, params, NULL, NULL, 0) : PQexec(m->conn, sql);
    ExecStatusType st = r != NULL ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        set_error(m, "%s: %s", what, r != NULL ? PQresultErrorMessage(r) : PQerrorMessage(m->conn));
        PQclear(r);
        return -EIO;
    }
    if (res != NULL)
        *res = r;
    else
        PQclear(r);
    return 0;
}

static void pg_rollback(struct ob_mirror *m)
{
    if (m->conn != NULL && PQstatus(m->conn) == CONNECTION_OK &&
        PQtransactionStatus(m->conn) != PQTRANS_IDLE)
        PQclear(PQexec(m->conn, "ROLLBACK"));
}

/* ---- the store side --------------------------------------------------------------------- */

static int meta_u64(struct st_txn *txn, const char *name, uint64_t *v, bool *have)
{
    int rc = st_meta_get_u64(txn, name, v);
    *have = rc == 0;
    if (rc == -ENOENT) {
        *v = 0;
        rc = 0;
    }
    return rc;
}

struct put_seq {
    uint64_t seq;
    bool exact; /* a resync sets it; a batch only moves it forward */
};

static int put_seq_fn(struct st_txn *txn, void *ud)
{
    const struct put_seq *p = ud;
    uint64_t old = 0;
    int rc = st_meta_get_u64(txn, OB_META_MIRROR_SEQ, &old);
    if (rc == 0 && !p->exact && old >= p->seq)
        return 0;
    if (rc != 0 && rc != -ENOENT)
        return rc;
    return st_meta_put_u64(txn, OB_META_MIRROR_SEQ, p->seq);
}

/* Records SEQ as the mirror's position (after the database committed it). */
static int put_position(struct ob_mirror *m, uint64_t seq, bool exact)
{
    struct put_seq p = {seq, exact};
    int rc = ob_write(m->ctx, put_seq_fn, &p);
    if (rc != 0)
        set_error(m, "cannot record the mirror's position %" PRIu64 " in the store: %s", seq,
                  st_strerror(rc));
    return rc;
}

static int store_id_fn(struct st_txn *txn, void *ud)
{
    return ob_store_id(txn, ud);
}

/* This store's id: read, or made and recorded the first time. */
static int store_identity(struct ob_mirror *m)
{
    char id[40];
    int rc = ob_write(m->ctx, store_id_fn, id);
    if (rc != 0) {
        set_error(m, "cannot read or record the store's id: %s", st_strerror(rc));
        return rc;
    }
    memcpy(m->store_id, id, 33);
    snprintf(m->app_name, sizeof(m->app_name), "kdeals-mirror %.16s", m->store_id);
    return 0;
}

/* The lag gauge: changes of the log after the mirror's position. */
static void update_lag(struct ob_mirror *m)
{
    struct st_txn *txn;
    if (ob_read_begin(m->ctx, &txn) != 0)
        return;
    uint64_t pos = 0, last = 0;
    bool have;
    if (meta_u64(txn, OB_META_MIRROR_SEQ, &pos, &have) == 0 &&
        meta_u64(txn, ST_META_CHANGES_SEQ, &last, &have) == 0)
        shm_gauge_set(m->ctx->counters, SHM_C_mirror_lag, last > pos ? (int64_t)(last - pos) : 0);
    ob_read_end(m->ctx, txn);
}

/* ---- connecting ------------------------------------------------------------------------- */

static bool conninfo_inline(const char *v)
{
    return strncmp(v, "postgresql://", 13) == 0 || strncmp(v, "postgres://", 11) == 0 ||
           strchr(v, '=') != NULL;
}

/*
 * The conninfo [mirror] postgres names: the value itself, or the first line of the file it
 * names (relative to the config file's folder) that is neither empty nor a # comment. A file
 * that holds a password must be mode 0600 or stricter. Never writes the conninfo into an error.
 */
static int resolve_conninfo(struct ob_mirror *m, char *out, size_t outlen)
{
    const char *v = m->cfg->mirror_postgres;
    if (conninfo_inline(v)) {
        snprintf(out, outlen, "%s", v);
        return 0;
    }
    char path[2 * CFG_STR_MAX + 2];
    const char *src = m->cfg->source_path;
    const char *slash = strrchr(src, '/');
    if (v[0] != '/' && slash != NULL)
        snprintf(path, sizeof(path), "%.*s/%s", (int)(slash - src), src, v);
    else
        snprintf(path, sizeof(path), "%s", v);
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        set_error(m, "[mirror] postgres = %s: %s", path,
                  fd < 0 ? strerror(errno) : "not a regular file");
        if (fd >= 0)
            close(fd);
        return -EINVAL;
    }
    char buf[4096];
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n < 0) {
        set_error(m, "[mirror] postgres = %s: %s", path, strerror(errno));
        return -EIO;
    }
    buf[n] = '\0';
    char *line = NULL;
    for (char *save = NULL, *l = strtok_r(buf, "\n", &save); l != NULL;
         l = strtok_r(NULL, "\n", &save)) {
        while (*l == ' ' || *l == '\t')
            l++;
        size_t len = strlen(l);
        while (len > 0 && (l[len - 1] == '\r' || l[len - 1] == ' ' || l[len - 1] == '\t'))
            l[--len] = '\0';
        if (len > 0 && l[0] != '#') {
            line = l;
            break;
        }
    }
    if (line == NULL || strlen(line) >= outlen) {
        set_error(m, "[mirror] postgres = %s: %s", path,
                  line == NULL ? "holds no conninfo line" : "the conninfo is too long");
        return -EINVAL;
    }
    char *perr = NULL;
    PQconninfoOption *opts = PQconninfoParse(line, &perr);
    if (opts == NULL) {
        PQfreemem(perr); /* may quote the password: not repeated */
        set_error(m, "[mirror] postgres = %s: not a PostgreSQL conninfo", path);
        return -EINVAL;
    }
    bool password = false;
    for (PQconninfoOption *o = opts; o->keyword != NULL; o++)
        if (strcmp(o->keyword, "password") == 0 && o->val != NULL && o->val[0] != '\0')
            password = true;
    PQconninfoFree(opts);
    if (password && (st.st_mode & 077) != 0) {
        set_error(m,
                  "[mirror] postgres = %s holds a password and others may read it (mode %03o): "
                  "chmod 600 %s",
                  path, (unsigned)(st.st_mode & 0777), path);
        explicit_bzero(buf, sizeof(buf));
        return -EPERM;
    }
    snprintf(out, outlen, "%s", line);
    explicit_bzero(buf, sizeof(buf));
    return 0;
}

static int connect_db(struct ob_mirror *m)
{
    char conninfo[1024];
    int rc = resolve_conninfo(m, conninfo, sizeof(conninfo));
    if (rc != 0)
        return rc;
    /* Ours first, so the conninfo's own connect_timeout and keepalives win; the application
     * name after it, so the dead-predecessor check below can recognise this store. */
    const char *const kw[] = {"connect_timeout",
                              "keepalives",
                              "keepalives_idle",
                              "keepalives_interval",
                              "keepalives_count",
                              "tcp_user_timeout",
                              "dbname",
                              "application_name",
                              NULL};
    const char *const val[] = {"10", "1", "30", "10", "3", "60000", conninfo, m->app_name, NULL};
    m->conn = PQconnectdbParams(kw, val, 1);
    explicit_bzero(conninfo, sizeof(conninfo));
    if (m->conn == NULL || PQstatus(m->conn) != CONNECTION_OK) {
        set_error(m, "cannot connect: %s",
                  m->conn != NULL ? PQerrorMessage(m->conn) : "out of memory");
        disconnect(m);
        return -EIO;
    }
    snprintf(m->conninfo_value, sizeof(m->conninfo_value), "%s", m->cfg->mirror_postgres);
    uv_mutex_lock(&m->cancel_lock);
    m->cancel = PQgetCancel(m->conn);
    uv_mutex_unlock(&m->cancel_lock);
    rc = pg_run(m, "session settings",
                "SET statement_timeout = '120s'; SET client_min_messages = warning; "
                "SET TIME ZONE 'UTC'",
                0, NULL, NULL);
    if (rc != 0)
        disconnect(m);
    return rc;
}

/* ---- schema and claim ------------------------------------------------------------------- */

static int migrate(struct ob_mirror *m)
{
    PGresult *r = NULL;
    int rc = pg_run(m, "begin", "BEGIN", 0, NULL, NULL);
    if (rc == 0)
        rc = pg_run(m, "schema lock", "SELECT pg_advisory_xact_lock(" OB_SCHEMA_LOCK ")", 0, NULL,
                    NULL);
    if (rc == 0)
        rc = pg_run(m, "create schema kdeals", ob_schema_bootstrap, 0, NULL, NULL);
    if (rc == 0)
        rc = pg_run(m, "read kdeals.schema_version",
                    "SELECT coalesce(max(version), 0) FROM kdeals.schema_version", 0, NULL, &r);
    int version = rc == 0 ? atoi(PQgetvalue(r, 0, 0)) : 0;
    PQclear(r);
    if (rc == 0 && version > OB_SCHEMA_VERSION) {
        set_error(m,
                  "the database's kdeals schema is version %d, newer than this kdeals knows (%d): "
                  "upgrade kdeals before it mirrors into this database",
                  version, OB_SCHEMA_VERSION);
        rc = -ENOTSUP;
    }
    for (int v = version + 1; rc == 0 && v <= OB_SCHEMA_VERSION; v++) {
        char what[48], vtext[16];
        snprintf(what, sizeof(what), "schema migration %d", v);
        snprintf(vtext, sizeof(vtext), "%d", v);
        char by[200];
        snprintf(by, sizeof(by), "%s (%s)", m->instance, m->ctx->hostname);
        const char *const params[] = {vtext, by};
        rc = pg_run(m, what, ob_schema_migration(v), 0, NULL, NULL);
        if (rc == 0)
            rc = pg_run(m, what,
                        "INSERT INTO kdeals.schema_version (version, applied_by) VALUES ($1, $2)",
                        2, params, NULL);
        if (rc == 0)
            kd_info("mirror: database schema kdeals migrated to version %d", v);
    }
    if (rc == 0)
        rc = pg_run(m, "commit", "COMMIT", 0, NULL, NULL);
    if (rc != 0)
        pg_rollback(m);
    return rc;
}

/* Whether the store has a mirror position (it mirrored before). */
static int have_position(struct ob_mirror *m, bool *have)
{
    struct st_txn *txn;
    int rc = ob_read_begin(m->ctx, &txn);
    if (rc != 0)
        return rc;
    uint64_t pos;
    rc = meta_u64(txn, OB_META_MIRROR_SEQ, &pos, have);
    ob_read_end(m->ctx, txn);
    return rc;
}

/* Takes the instance's advisory lock, ending a dead predecessor's connection that holds it. */
static int lock_instance(struct ob_mirror *m)
{
    const char *const p1[] = {m->instance};
    for (int attempt = 0; attempt < 2; attempt++) {
        PGresult *r = NULL;
        int rc =
            pg_run(m, "instance lock",
                   "SELECT pg_try_advisory_lock(" OB_INSTANCE_LOCK ", hashtext($1))", 1, p1, &r);
        if (rc != 0)
            return rc;
        bool got = PQgetvalue(r, 0, 0)[0] == 't';
        PQclear(r);
        if (got)
            return 0;
        rc = pg_run(m, "instance lock holder",
                    "SELECT a.pid, coalesce(a.application_name, ''), "
                    "coalesce(host(a.client_addr), 'local') FROM pg_locks l "
                    "JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' "
                    "AND l.granted AND l.classid = " OB_INSTANCE_LOCK " "
                    "AND l.objid = (hashtext($1)::bigint & 4294967295)::oid AND l.objsubid = 2",
                    1, p1, &r);
        if (rc != 0)
            return rc;
        if (PQntuples(r) == 0) {
            PQclear(r); /* released meanwhile */
            continue;
        }
        char pid[16], app[64], host[64];
        snprintf(pid, sizeof(pid), "%s", PQgetvalue(r, 0, 0));
        snprintf(app, sizeof(app), "%s", PQgetvalue(r, 0, 1));
        snprintf(host, sizeof(host), "%s", PQgetvalue(r, 0, 2));
        PQclear(r);
        if (strcmp(app, m->app_name) != 0 || attempt > 0) {
            set_error(m,
                      "instance '%s' is being mirrored by another connection (pid %s, '%s' from "
                      "%s): give each kdeals its own [mirror] instance",
                      m->instance, pid, app, host);
            return -EBUSY;
        }
        /* This store's own earlier connection, left by a process that died. */
        kd_warn("mirror: ending connection %s left by an earlier outbox of this store", pid);
        const char *const p2[] = {pid};
        if ((rc = pg_run(m, "end the earlier connection", "SELECT pg_terminate_backend($1::int)", 1,
                         p2, NULL)) != 0)
            return rc;
        usleep(200 * 1000);
    }
    set_error(m, "cannot take the lock of instance '%s'", m->instance);
    return -EBUSY;
}

static int claim(struct ob_mirror *m)
{
    int rc = lock_instance(m);
    if (rc != 0)
        return rc;
    const struct cfg *c = m->cfg;
    const struct jd_market *mk = jd_market((unsigned)c->keepa_domain);
    char domain[16];
    snprintf(domain, sizeof(domain), "%" PRId64, c->keepa_domain);
    const char *const row[] = {
        m->instance,   m->store_id, m->ctx->hostname,   c->daemon_instance,
        c->store_path, domain,      mk ? mk->tld : "?", mk ? mk->currency : "?"};
    rc = pg_run(m, "register the instance",
                "INSERT INTO kdeals.instances (instance, store_id, host, daemon_instance, "
                "store_path, domain, marketplace, currency) VALUES ($1, $2, $3, $4, $5, $6, $7, "
                "$8) ON CONFLICT (instance) DO NOTHING",
                8, row, NULL);
    PGresult *r = NULL;
    if (rc == 0)
        rc = pg_run(m, "read the instance",
                    "SELECT store_id, host, store_path FROM kdeals.instances WHERE instance = $1",
                    1, row, &r);
    if (rc != 0)
        return rc;
    bool mine = PQntuples(r) == 1 && strcmp(PQgetvalue(r, 0, 0), m->store_id) == 0;
    char other[300];
    snprintf(other, sizeof(other), "%s:%s", PQntuples(r) == 1 ? PQgetvalue(r, 0, 1) : "?",
             PQntuples(r) == 1 ? PQgetvalue(r, 0, 2) : "?");
    PQclear(r);
    if (!mine) {
        bool have = false;
        if ((rc = have_position(m, &have)) != 0) {
            set_error(m, "cannot read the mirror's position: %s", st_strerror(rc));
            return rc;
        }
        if (have) {
            set_error(m,
                      "the database's instance '%s' is mirrored from another store (%s): give "
                      "this kdeals its own [mirror] instance",
                      m->instance, other);
            return -EEXIST;
        }
        /* A store that never mirrored takes the name over: the old store's rows go. */
        kd_warn("mirror: instance '%s' was mirrored from another store (%s): this new store "
                "replaces its rows",
                m->instance, other);
        const char *const p[] = {m->instance, m->store_id};
        rc = pg_run(m, "begin", "BEGIN", 0, NULL, NULL);
        if (rc == 0)
            rc = pg_run(m, "take the instance over",
                        "DELETE FROM kdeals.products WHERE instance = $1", 1, p, NULL);
        if (rc == 0)
            rc = pg_run(m, "take the instance over",
                        "DELETE FROM kdeals.changes WHERE instance = $1", 1, p, NULL);
        if (rc == 0)
            rc = pg_run(m, "take the instance over",
                        "UPDATE kdeals.instances SET store_id = $2, mirrored_seq = 0, "
                        "synced_at = NULL WHERE instance = $1",
                        2, p, NULL);
        if (rc == 0)
            rc = pg_run(m, "commit", "COMMIT", 0, NULL, NULL);
        if (rc != 0) {
            pg_rollback(m);
            return rc;
        }
    }
    rc = pg_run(m, "update the instance",
                "UPDATE kdeals.instances SET host = $3, daemon_instance = $4, store_path = $5, "
                "domain = $6, marketplace = $7, currency = $8, updated_at = now() "
                "WHERE instance = $1 AND store_id = $2",
                8, row, NULL);
    if (rc == 0) {
        m->ready = true;
        kd_info("mirror: connected; mirroring this store as instance '%s'", m->instance);
    }
    return rc;
}

/* ---- batches ---------------------------------------------------------------------------- */

static const char sql_upsert[] =
    "INSERT INTO kdeals.products AS p (instance, domain, asin, revision, seq, record, "
    "mirrored_at) SELECT $1, b.domain, b.asin, b.revision, b.seq, b.record, now() "
    "FROM jsonb_to_recordset($2::jsonb) AS b(domain integer, asin text, revision bigint, "
    "seq bigint, deleted boolean, record jsonb) WHERE NOT b.deleted "
    "ON CONFLICT (instance, domain, asin) DO UPDATE SET revision = excluded.revision, "
    "seq = excluded.seq, record = excluded.record, mirrored_at = excluded.mirrored_at "
    "WHERE p.seq <= excluded.seq";

static const char sql_delete[] =
    "DELETE FROM kdeals.products AS p USING jsonb_to_recordset($2::jsonb) AS b(domain integer, "
    "asin text, seq bigint, deleted boolean) WHERE b.deleted AND p.instance = $1 "
    "AND p.domain = b.domain AND p.asin = b.asin AND p.seq <= b.seq";

static const char sql_changes[] =
    "INSERT INTO kdeals.changes (instance, seq, domain, asin, revision, event, state, "
    "prev_state, at) SELECT $1, c.seq, c.domain, c.asin, c.revision, c.event, c.state, "
    "c.prev_state, to_timestamp(c.at_ms / 1000.0) FROM jsonb_to_recordset($2::jsonb) AS "
    "c(seq bigint, domain integer, asin text, revision bigint, event text, state text, "
    "prev_state text, at_ms bigint) ON CONFLICT (instance, seq) DO NOTHING";

static bool gen_key(yajl_gen g, const char *k)
{
    return yajl_gen_string(g, (const unsigned char *)k, strlen(k)) == yajl_gen_status_ok;
}

/* Appends one product element to G: the record of KEY in TXN, true as of SEQ. */
static int gen_product(struct ob_mirror *m, struct st_txn *txn, const struct st_key *key,
                       uint64_t seq, const struct st_record *have)
{
    yajl_gen g = m->g;
    static __thread struct st_record r;
    const struct st_record *rec = have;
    if (rec == NULL) {
        int rc = st_record_get(txn, key, &r);
        if (rc == 0)
            rec = &r;
        else if (rc != -ENOENT && rc != -EBADMSG && rc != -ENOTSUP)
            return rc;
    }
    char asin[ST_ASIN_LEN + 1];
    st_key_asin(key, asin);
    struct vw_out o = {.rules = &m->rules};
    bool ok = yajl_gen_map_open(g) == yajl_gen_status_ok;
    ok =
        ok && gen_key(g, "domain") && yajl_gen_integer(g, st_key_domain(key)) == yajl_gen_status_ok;
    ok = ok && gen_key(g, "asin") && gen_key(g, asin);
    ok =
        ok && gen_key(g, "revision") &&
        yajl_gen_integer(g, rec ? (long long)(rec->revision & INT64_MAX) : 0) == yajl_gen_status_ok;
    ok = ok && gen_key(g, "seq") &&
         yajl_gen_integer(g, (long long)(seq & INT64_MAX)) == yajl_gen_status_ok;
    ok = ok && gen_key(g, "deleted") && yajl_gen_bool(g, rec == NULL) == yajl_gen_status_ok;
    ok = ok && gen_key(g, "record");
    if (ok && rec != NULL)
        ok = vw_json_record(g, rec, &o) == 0;
    else if (ok)
        ok = yajl_gen_null(g) == yajl_gen_status_ok;
    ok = ok && yajl_gen_map_close(g) == yajl_gen_status_ok;
    return ok ? 0 : -ENOMEM;
}

/* The JSON G holds, as a NUL-terminated string (valid until G is cleared). */
static const char *gen_text(yajl_gen g)
{
    const unsigned char *buf;
    size_t len;
    yajl_gen_get_buf(g, &buf, &len);
    return (const char *)buf;
}

static void gen_restart(yajl_gen g)
{
    yajl_gen_clear(g);
    yajl_gen_reset(g, NULL);
}

static int key_cmp(const void *a, const void *b)
{
    return memcmp(a, b, sizeof(struct st_key));
}

static int update_instance(struct ob_mirror *m, uint64_t seq, bool resync)
{
    char seq_text[24];
    snprintf(seq_text, sizeof(seq_text), "%" PRIu64, seq);
    const char *const p[] = {m->instance, seq_text, m->store_id};
    PGresult *r = NULL;
    int rc = pg_run(m, "record the position",
                    resync ? "UPDATE kdeals.instances SET mirrored_seq = $2::bigint, "
                             "synced_at = now(), updated_at = now() "
                             "WHERE instance = $1 AND store_id = $3"
                           : "UPDATE kdeals.instances SET mirrored_seq = "
                             "greatest(mirrored_seq, $2::bigint), updated_at = now() "
                             "WHERE instance = $1 AND store_id = $3",
                    3, p, &r);
    if (rc == 0 && strcmp(PQcmdTuples(r), "1") != 0) {
        set_error(m, "instance '%s' was taken over by another store meanwhile", m->instance);
        m->ready = false;
        rc = -EEXIST;
    }
    PQclear(r);
    return rc;
}

/*
 * Mirrors the changes after POS in TXN (up to [mirror] batch), true as of LAST. Ends TXN before
 * talking to the database. Returns 0 with *N (changes mirrored) or a negative errno.
 */
static int mirror_batch(struct ob_mirror *m, struct st_txn *txn, uint64_t pos, uint64_t last,
                        size_t *n_out)
{
    size_t max = (size_t)m->cfg->mirror_batch, n = 0;
    *n_out = 0;
    int rc = st_changes_read(txn, pos, m->changes, max, &n);
    if (rc != 0 || n == 0) {
        ob_read_end(m->ctx, txn);
        if (rc != 0)
            set_error(m, "cannot read the change log: %s", st_strerror(rc));
        return rc;
    }
    size_t nk = 0;
    for (size_t i = 0; i < n; i++)
        if (st_key_make(m->changes[i].domain, m->changes[i].asin, &m->keys[nk]) == 0)
            nk++;
    qsort(m->keys, nk, sizeof(*m->keys), key_cmp);
    size_t u = 0;
    for (size_t i = 0; i < nk; i++)
        if (u == 0 || memcmp(&m->keys[u - 1], &m->keys[i], sizeof(*m->keys)) != 0)
            m->keys[u++] = m->keys[i];
    gen_restart(m->g);
    yajl_gen_array_open(m->g);
    for (size_t i = 0; i < u && rc == 0; i++)
        rc = gen_product(m, txn, &m->keys[i], last, NULL);
    yajl_gen_array_close(m->g);
    ob_read_end(m->ctx, txn);
    if (rc != 0) {
        set_error(m, "cannot build the batch: %s", st_strerror(rc));
        return rc;
    }
    char *products = strdup(gen_text(m->g));
    gen_restart(m->g);
    yajl_gen_array_open(m->g);
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = vw_json_change(m->g, &m->changes[i], NULL, NULL, NULL);
    yajl_gen_array_close(m->g);
    if (products == NULL || rc != 0) {
        free(products);
        set_error(m, "out of memory building a batch");
        return -ENOMEM;
    }
    const char *const p_products[] = {m->instance, products};
    const char *const p_changes[] = {m->instance, gen_text(m->g)};
    rc = pg_run(m, "begin", "BEGIN", 0, NULL, NULL);
    if (rc == 0)
        rc = pg_run(m, "upsert products", sql_upsert, 2, p_products, NULL);
    if (rc == 0)
        rc = pg_run(m, "delete products", sql_delete, 2, p_products, NULL);
    if (rc == 0)
        rc = pg_run(m, "insert changes", sql_changes, 2, p_changes, NULL);
    if (rc == 0)
        rc = update_instance(m, m->changes[n - 1].seq, false);
    if (rc == 0)
        rc = pg_run(m, "commit", "COMMIT", 0, NULL, NULL);
    free(products);
    gen_restart(m->g);
    if (rc != 0) {
        pg_rollback(m);
        return rc;
    }
    /* The database has it: only now does the position move. */
    if ((rc = put_position(m, m->changes[n - 1].seq, false)) != 0)
        return rc;
    *n_out = n;
    return 0;
}

/*
 * Replaces the instance's products with every record of TXN (true as of LAST) in one database
 * transaction, then takes LAST as the position. Ends TXN.
 */
static int resync(struct ob_mirror *m, struct st_txn *txn, uint64_t last, const char *why)
{
    kd_warn("mirror: %s: resynchronising the database from the store's records", why);
    const char *const p1[] = {m->instance};
    int rc = pg_run(m, "begin", "BEGIN", 0, NULL, NULL);
    if (rc == 0)
        rc = pg_run(m, "resync: clear the instance's products",
                    "DELETE FROM kdeals.products WHERE instance = $1", 1, p1, NULL);
    struct st_cursor *cur = NULL;
    if (rc == 0 && (rc = st_cursor_open(txn, ST_DB_PRODUCTS, &cur)) != 0)
        set_error(m, "resync: cannot read the records: %s", st_strerror(rc));
    static __thread struct st_record r;
    uint64_t records = 0;
    bool end = false;
    size_t max = (size_t)m->cfg->mirror_batch;
    while (rc == 0 && !end && !ob_stopping(m->ctx)) {
        gen_restart(m->g);
        yajl_gen_array_open(m->g);
        size_t k = 0;
        while (rc == 0 && k < max) {
            int x = st_cursor_next_record(cur, &r);
            if (x == -ENOENT) {
                end = true;
                break;
            }
            if (x == -EBADMSG || x == -ENOTSUP)
                continue;
            if (x != 0) {
                rc = x;
                set_error(m, "resync: cannot read the records: %s", st_strerror(rc));
                break;
            }
            struct st_key key;
            if (st_record_key(&r, &key) != 0)
                continue;
            if ((rc = gen_product(m, txn, &key, last, &r)) != 0)
                set_error(m, "resync: out of memory");
            k++;
        }
        yajl_gen_array_close(m->g);
        if (rc == 0 && k > 0) {
            const char *const p[] = {m->instance, gen_text(m->g)};
            rc = pg_run(m, "resync: insert products", sql_upsert, 2, p, NULL);
            records += k;
        }
    }
    st_cursor_close(cur);
    ob_read_end(m->ctx, txn);
    gen_restart(m->g);
    if (rc == 0 && !end)
        rc = -ECANCELED; /* stopping */
    if (rc == 0)
        rc = update_instance(m, last, true);
    if (rc == 0)
        rc = pg_run(m, "commit", "COMMIT", 0, NULL, NULL);
    if (rc != 0) {
        pg_rollback(m);
        return rc;
    }
    if ((rc = put_position(m, last, true)) != 0)
        return rc;
    shm_counter_add(m->ctx->counters, SHM_C_mirror_resyncs, 1);
    kd_info("mirror: resynchronised %" PRIu64 " records as of change %" PRIu64, records, last);
    return 0;
}

/* One round against the store: a batch, a resync, or nothing. *MORE: read again at once. */
static int sync_once(struct ob_mirror *m, bool *more)
{
    *more = false;
    struct st_txn *txn;
    int rc = ob_read_begin(m->ctx, &txn);
    if (rc != 0) {
        set_error(m, "cannot read the store: %s", st_strerror(rc));
        return rc;
    }
    uint64_t pos = 0, first = 0, last = 0;
    bool have = false, have_last;
    if ((rc = meta_u64(txn, OB_META_MIRROR_SEQ, &pos, &have)) != 0 ||
        (rc = meta_u64(txn, ST_META_CHANGES_SEQ, &last, &have_last)) != 0 ||
        (rc = st_changes_first(txn, &first)) != 0) {
        ob_read_end(m->ctx, txn);
        set_error(m, "cannot read the change log: %s", st_strerror(rc));
        return rc;
    }
    char why[160] = "";
    if (!have && first > 1)
        snprintf(why, sizeof(why),
                 "this store mirrors for the first time and its log starts at change %" PRIu64,
                 first);
    else if (have && pos > last)
        snprintf(why, sizeof(why),
                 "the mirror's position %" PRIu64 " is past the end of the log (%" PRIu64 ")", pos,
                 last);
    else if (have && (first > pos + 1 || (first == 0 && last > pos)))
        snprintf(why, sizeof(why),
                 "the log no longer holds the changes after %" PRIu64
                 " (the oldest kept is %" PRIu64 ")",
                 pos, first);
    if (why[0] != '\0') {
        rc = resync(m, txn, last, why);
        if (rc == 0)
            shm_gauge_set(m->ctx->counters, SHM_C_mirror_lag, 0);
        return rc;
    }
    if (pos >= last) {
        ob_read_end(m->ctx, txn);
        shm_gauge_set(m->ctx->counters, SHM_C_mirror_lag, 0);
        return 0;
    }
    size_t n = 0;
    rc = mirror_batch(m, txn, pos, last, &n);
    if (rc != 0)
        return rc;
    shm_counter_add(m->ctx->counters, SHM_C_mirror_changes, (int64_t)n);
    uint64_t now_pos = n > 0 ? m->changes[n - 1].seq : pos;
    shm_gauge_set(m->ctx->counters, SHM_C_mirror_lag,
                  last > now_pos ? (int64_t)(last - now_pos) : 0);
    *more = n == (size_t)m->cfg->mirror_batch;
    return 0;
}

/* Deletes the instance's changes older than [mirror] keep_changes, now and then. */
static void prune_changes(struct ob_mirror *m)
{
    int64_t now = kd_mono_ns() / KD_NS_PER_MS;
    if (now < m->gc_at_ms)
        return;
    m->gc_at_ms = now + MIRROR_GC_EVERY_MS;
    char keep[32];
    snprintf(keep, sizeof(keep), "%" PRId64, m->cfg->mirror_keep_changes_ms);
    const char *const p[] = {m->instance, keep};
    if (pg_run(m, "prune old changes",
               "DELETE FROM kdeals.changes WHERE instance = $1 AND at < now() - "
               "make_interval(secs => $2::bigint / 1000.0)",
               2, p, NULL) != 0)
        kd_warn("mirror: %s", m->error);
}

/* ---- the lane --------------------------------------------------------------------------- */

static int64_t failed(struct ob_mirror *m, int rc)
{
    m->failures++;
    shm_counter_add(m->ctx->counters, SHM_C_mirror_failed, 1);
    if (m->conn != NULL && PQstatus(m->conn) != CONNECTION_OK)
        disconnect(m);
    if (rc == -EEXIST || rc == -EBUSY || rc == -ENOTSUP)
        disconnect(m); /* claim again from the start next time */
    int64_t wait = MIRROR_BACKOFF_MS;
    for (unsigned i = 1; i < m->failures && wait < m->cfg->mirror_retry_max_ms; i++)
        wait *= 2;
    if (wait > m->cfg->mirror_retry_max_ms)
        wait = m->cfg->mirror_retry_max_ms;
    if (strcmp(m->error, m->logged_error) != 0 || m->failures % 50 == 1) {
        kd_warn("mirror: %s (attempt %u failed; next in %" PRId64 " ms)", m->error, m->failures,
                wait);
        memcpy(m->logged_error, m->error, sizeof(m->error));
    }
    update_lag(m);
    return wait;
}

int64_t ob_mirror_step(struct ob_mirror *m)
{
    ob_config(m->ctx, m->cfg);
    const struct cfg *c = m->cfg;
    if (c->mirror_postgres[0] == '\0') {
        disconnect(m);
        shm_gauge_set(m->ctx->counters, SHM_C_mirror_lag, 0);
        return MIRROR_IDLE_MS;
    }
    jd_rules_from_cfg(c, &m->rules);
    if (m->conn != NULL && strcmp(m->conninfo_value, c->mirror_postgres) != 0)
        disconnect(m); /* a reload named another database */
    if ((size_t)c->mirror_batch > m->changes_cap) {
        struct st_change *nc = realloc(m->changes, (size_t)c->mirror_batch * sizeof(*nc));
        struct st_key *nk = nc ? realloc(m->keys, (size_t)c->mirror_batch * sizeof(*nk)) : NULL;
        if (nc != NULL)
            m->changes = nc;
        if (nk == NULL) {
            set_error(m, "out of memory");
            return failed(m, -ENOMEM);
        }
        m->keys = nk;
        m->changes_cap = (size_t)c->mirror_batch;
    }
    if (c->mirror_instance[0] != '\0')
        snprintf(m->instance, sizeof(m->instance), "%.63s", c->mirror_instance);
    else
        snprintf(m->instance, sizeof(m->instance), "%.30s/%.32s", m->ctx->hostname,
                 c->daemon_instance);
    int rc = 0;
    if (m->store_id[0] == '\0')
        rc = store_identity(m);
    if (rc == 0 && m->conn == NULL)
        rc = connect_db(m);
    if (rc == 0 && !m->ready && (rc = migrate(m)) == 0)
        rc = claim(m);
    bool more = false;
    if (rc == 0)
        rc = sync_once(m, &more);
    if (rc != 0)
        return failed(m, rc);
    if (m->failures > 0)
        kd_info("mirror: the database answers again after %u failed attempts", m->failures);
    m->failures = 0;
    m->logged_error[0] = '\0';
    if (!more)
        prune_changes(m);
    return more ? 0 : MIRROR_POLL_MS;
}

void ob_mirror_cancel(struct ob_mirror *m)
{
    uv_mutex_lock(&m->cancel_lock);
    if (m->cancel != NULL) {
        char err[128];
        PQcancel(m->cancel, err, sizeof(err));
    }
    uv_mutex_unlock(&m->cancel_lock);
}

int ob_mirror_new(struct ob_ctx *ctx, struct ob_mirror **out)
{
    struct ob_mirror *m = calloc(1, sizeof(*m));
    if (m == NULL)
        return -ENOMEM;
    m->ctx = ctx;
    m->cfg = malloc(sizeof(*m->cfg));
    m->g = yajl_gen_alloc(NULL);
    if (m->cfg == NULL || m->g == NULL || uv_mutex_init(&m->cancel_lock) != 0) {
        yajl_gen_free(m->g);
        free(m->cfg);
        free(m);
        return -ENOMEM;
    }
    *out = m;
    return 0;
}

void ob_mirror_free(struct ob_mirror *m)
{
    if (m == NULL)
        return;
    disconnect(m);
    uv_mutex_destroy(&m->cancel_lock);
    yajl_gen_free(m->g);
    free(m->changes);
    free(m->keys);
    free(m->cfg);
    free(m);
}
