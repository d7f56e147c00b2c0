/*
 * kd_pg.c: a PostgreSQL server for one test. See kd_pg.h.
 */
#include "kd_pg.h"

#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <grp.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kd_harness.h"
#include "kd_test.h"

/* A loopback port nobody listens on now. */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    socklen_t len = sizeof(a);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

/* Forks and runs ARGV as the cluster's owner, output to the cluster log; returns the pid. */
static pid_t spawn_as_owner(const struct kdpg *pg, const char *const *argv)
{
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fd = open(pg->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        if (getuid() == 0) {
            if (setgroups(0, NULL) != 0 || setgid(pg->gid) != 0 || setuid(pg->uid) != 0)
                _exit(126);
        }
        /* After the user change, which clears it: the server ends with the test. */
        prctl(PR_SET_PDEATHSIG, SIGINT);
        setenv("LC_ALL", "C", 1);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    return pid;
}

static int run_as_owner(const struct kdpg *pg, const char *const *argv)
{
    pid_t pid = spawn_as_owner(pg, argv);
    int status = 0;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

const char *kdpg_conninfo(const struct kdpg *pg, const char *name, char *buf, size_t len)
{
    snprintf(buf, len, "host=127.0.0.1 port=%d user=kdeals dbname=%s connect_timeout=5", pg->port,
             name);
    return buf;
}

static bool answers(const struct kdpg *pg)
{
    char ci[256];
    return PQping(kdpg_conninfo(pg, "postgres", ci, sizeof(ci))) == PQPING_OK;
}

static void server_start(struct kdpg *pg)
{
    char port[16], opts[64];
    snprintf(port, sizeof(port), "%d", pg->port);
    snprintf(opts, sizeof(opts), "listen_addresses=127.0.0.1");
    char bin[300];
    snprintf(bin, sizeof(bin), "%s/postgres", pg->bindir);
    const char *const argv[] = {bin,
                                "-D",
                                pg->data,
                                "-p",
                                port,
                                "-k",
                                pg->dir,
                                "-c",
                                opts,
                                "-c",
                                "fsync=off",
                                "-c",
                                "full_page_writes=off",
                                "-c",
                                "synchronous_commit=off",
                                NULL};
    pg->pid = spawn_as_owner(pg, argv);
    if (!KDH_WAIT_FOR(answers(pg) || waitpid(pg->pid, NULL, WNOHANG) == pg->pid, 30) ||
        !answers(pg))
        fail_msg("postgres did not start (see %s)", pg->log);
}

void kdpg_start(struct kdpg *pg)
{
    memset(pg, 0, sizeof(*pg));
    glob_t gl;
    if (glob("/usr/lib/postgresql/*/bin/initdb", 0, NULL, &gl) != 0 || gl.gl_pathc == 0)
        fail_msg("PostgreSQL is not installed (Debian's postgresql; tools/install-deps.sh "
                 "installs it)");
    snprintf(pg->bindir, sizeof(pg->bindir), "%s", gl.gl_pathv[gl.gl_pathc - 1]);
    globfree(&gl);
    *strrchr(pg->bindir, '/') = '\0';
    pg->uid = getuid();
    pg->gid = getgid();
    if (getuid() == 0) {
        struct passwd *pw = getpwnam("postgres");
        if (pw == NULL)
            pw = getpwnam("nobody");
        assert_non_null(pw);
        pg->uid = pw->pw_uid;
        pg->gid = pw->pw_gid;
        /* The server's user must reach its folder inside the test's private one. */
        chmod(kd_test_tmpdir(), 0711);
    }
    static unsigned n;
    snprintf(pg->dir, sizeof(pg->dir), "%s/pg%d-%u", kd_test_tmpdir(), (int)getpid(), n++);
    assert_int_equal(mkdir(pg->dir, 0700), 0);
    assert_int_equal(chown(pg->dir, pg->uid, pg->gid), 0);
    snprintf(pg->data, sizeof(pg->data), "%s/data", pg->dir);
    snprintf(pg->log, sizeof(pg->log), "%s/postgres.log", pg->dir);
    int fd = open(pg->log, O_WRONLY | O_CREAT, 0644);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(chown(pg->log, pg->uid, pg->gid), 0);
    char initdb[300];
    snprintf(initdb, sizeof(initdb), "%s/initdb", pg->bindir);
    const char *const argv[] = {initdb,  "-D", pg->data, "-U",          "kdeals",    "-A",
                                "trust", "-E", "UTF8",   "--no-locale", "--no-sync", NULL};
    if (run_as_owner(pg, argv) != 0)
        fail_msg("initdb failed (see %s)", pg->log);
    pg->port = free_port();
    server_start(pg);
}

void kdpg_stop(struct kdpg *pg)
{
    if (pg->pid <= 0)
        return;
    kill(pg->pid, SIGINT); /* fast shutdown */
    int status;
    waitpid(pg->pid, &status, 0);
    pg->pid = 0;
}

void kdpg_restart(struct kdpg *pg)
{
    assert_int_equal(pg->pid, 0);
    server_start(pg);
}

PGconn *kdpg_connect(const struct kdpg *pg, const char *name)
{
    char ci[256];
    PGconn *c = PQconnectdb(kdpg_conninfo(pg, name, ci, sizeof(ci)));
    if (PQstatus(c) != CONNECTION_OK)
        fail_msg("cannot connect to %s: %s", ci, PQerrorMessage(c));
    return c;
}

PGresult *kdpg_query(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
        fail_msg("%s: %s", sql, PQresultErrorMessage(r));
    return r;
}

long long kdpg_int(PGconn *c, const char *sql)
{
    PGresult *r = kdpg_query(c, sql);
    if (PQntuples(r) != 1 || PQnfields(r) != 1)
        fail_msg("%s: %d rows, %d columns", sql, PQntuples(r), PQnfields(r));
    long long v = PQgetisnull(r, 0, 0) ? -1 : strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return v;
}

void kdpg_createdb(struct kdpg *pg, const char *name)
{
    PGconn *c = kdpg_connect(pg, "postgres");
    char sql[200];
    snprintf(sql, sizeof(sql), "CREATE DATABASE %s", name);
    PQclear(kdpg_query(c, sql));
    PQfinish(c);
}
