/*
 * kd_pg.h: a PostgreSQL server of the test's own, from Debian's postgresql package.
 *
 * kdpg_start makes a cluster with initdb in a folder of the test's private temporary folder and
 * runs `postgres` on a free loopback port as a child of the test (so the test runner's kill of
 * the test's process group ends it, whatever happens to the test). initdb refuses to run as
 * root, and the tests run as root in CI: as root the server runs as the `postgres` user the
 * package creates (else `nobody`), in a folder that user owns. The cluster trusts local
 * connections of the user `kdeals` and is tuned for tests (no fsync).
 *
 * A missing PostgreSQL fails the test: tools/install-deps.sh installs it (make test runs it).
 */
#ifndef KD_PG_H
#define KD_PG_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <sys/types.h>

struct kdpg {
    char bindir[256];
    char dir[512]; /* cluster folder (data, socket, log) */
    char data[600];
    char log[600];
    int port;
    pid_t pid; /* the postmaster, 0 while stopped */
    uid_t uid;
    gid_t gid;
};

/* initdb and start; waits until the server accepts connections. */
void kdpg_start(struct kdpg *pg);

/* Stops the server (fast shutdown: clients are disconnected) and waits for it. */
void kdpg_stop(struct kdpg *pg);

/* Starts the stopped server again on the same port and folder; waits until it answers. */
void kdpg_restart(struct kdpg *pg);

/* Creates database NAME (owner kdeals). */
void kdpg_createdb(struct kdpg *pg, const char *name);

/* The conninfo of database NAME ("host=127.0.0.1 port=... user=kdeals dbname=NAME"), in BUF. */
const char *kdpg_conninfo(const struct kdpg *pg, const char *name, char *buf, size_t len);

/* A connection to database NAME; fails the test when it cannot connect. */
PGconn *kdpg_connect(const struct kdpg *pg, const char *name);

/* Runs SQL on C and returns its result (PQclear it); fails the test on an error. */
PGresult *kdpg_query(PGconn *c, const char *sql);

/* The single value of a one-row one-column query as a long long (NULL: -1). */
long long kdpg_int(PGconn *c, const char *sql);

#endif
