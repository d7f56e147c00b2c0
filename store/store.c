/*
 * store.c: the LMDB environment, transactions, named dbs and typed accessors. See store.h.
 *
 * Map growth. LMDB cannot grow the map inside a transaction: on MDB_MAP_FULL (from a put or
 * from the commit) the transaction is dead, so st_write aborts it, calls
 * mdb_env_set_mapsize with twice the current size (capped) and runs the batch function
 * again. That is only legal while this process has no transaction open, hence the count of
 * open read transactions. Another process that grew the map is noticed by LMDB at the next
 * mdb_txn_begin (MDB_MAP_RESIZED when the data outgrew our view); we then adopt the size
 * recorded in the file (mdb_env_set_mapsize(env, 0)) and begin again.
 *
 * Disk full. LMDB writes a transaction's pages first and the meta page last, so a commit
 * that fails with ENOSPC leaves the previous meta page, and hence the previous state, in
 * force; the transaction is aborted and the environment stays usable.
 *
 * Every LMDB code is mapped to a negative errno once, in st_mdb_err().
 *
 * Reads never go back in time. A read transaction takes the newest transaction id from the
 * lock file, then copies the meta page of that id's parity. A reader held up between the two
 * (a busy machine) can find that page already rewritten by the commit two after the id: it
 * then reads the newer state under the older id, and its next read transaction, at the id in
 * between, reads an older state than the one before (test_store's test_two_processes, one run
 * in about 160 beside three others). The data it reads is whole either way (the older id keeps
 * every page of the newer state from reuse); only the order is wrong, and a change-log reader
 * could sleep on a change it had already seen vanish. So txn_begin checks, after the copy,
 * that no meta page holds an id two past its own, and begins again if one does (a copy that
 * such a check follows without finding one cannot have raced).
 *
 * A damaged or moved file. LMDB maps data.mdb and reads its pages through the mapping, so a
 * page beyond the end of the file kills the process with SIGBUS. The file size is checked
 * against the last page the newest meta page names at open and before every transaction
 * (check_size). A healthy file may be shorter: pages a transaction allocated at the end and
 * freed again before its commit (LMDB's loose and dirty overflow pages) are never written. So a
 * short file is proved, not presumed: a forked child walks every tree of the store through its
 * own read-only environment (probe_pages); a SIGBUS in the child is a truncated file, an error
 * naming it (-EUCLEAN), and a clean walk is remembered for that file size and meta. After every
 * commit the writer extends a short file over its free tail with fallocate() (which never
 * shrinks a file nor touches written bytes), so readers rarely need the probe. A writer also checks
 * before every write that the folder and data.mdb at the configured path are still the ones it has
 * open (st_check): a store folder removed or replaced under a running daemon makes writes fail
 * with -ESTALE (the stages keep their work and pause spending, as on a full disk) instead of
 * committing into deleted files. A file that is not a kdeals store (an empty data.mdb, an LMDB
 * environment of another program) is refused rather than adopted (-EPROTO), and readers
 * (st_open_existing) open the environment read-only, so they can never write in it.
 */
#include "store/store.h"

#include "base/kd_assert.h"
#include "base/log.h"

#include <errno.h>
#include <limits.h>
#include <lmdb.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#define ST_DEFAULT_MAP     ((uint64_t)1 << 30)
#define ST_DEFAULT_MAX_MAP ((uint64_t)64 << 30)
#define ST_WRITE_MAX_TRIES 40 /* map doublings plus remaps; 64 KiB -> 64 TiB is 30 */
#define ST_SCHED_KEY_LEN   (8 + ST_KEY_LEN)
#define ST_META_NAME_MAX   255

static const char *const st_db_names[ST_DB_COUNT] = {
    "deals", "schedule", "seen", "pending", "meta", "products", "history", "changes", "alerts"};

struct st_env {
    MDB_env *mdb;
    MDB_dbi dbi[ST_DB_COUNT];
    bool have[ST_DB_COUNT]; /* the db exists (a read-only open may find one missing) */
    bool rdonly;
    pid_t pid;        /* the process that opened it; no other may use it */
    int readers_open; /* read transactions open in this process */
    uint64_t max_map;
    uint64_t psize;          /* LMDB's page size */
    dev_t dir_dev, file_dev; /* the folder and data.mdb as opened (st_check) */
    ino_t dir_ino, file_ino;
    /* The last short file proved whole by probe_pages: its size and its newest meta. */
    off_t proved_size;
    uint64_t proved_last_pgno, proved_txnid;
    char path[PATH_MAX];
};

struct st_txn {
    struct st_env *env;
    MDB_txn *mt;
    bool rdonly;
    bool map_full; /* a put hit MDB_MAP_FULL: st_write grows the map and re-runs */
};

struct st_cursor {
    struct st_txn *txn;
    MDB_cursor *mc;
    enum st_db db;
    bool started;
};

/* Maps an LMDB return code to 0 or a negative errno; notes MAP_FULL in TXN. */
static int st_mdb_err(struct st_txn *txn, int rc)
{
    switch (rc) {
    case MDB_SUCCESS:
        return 0;
    case MDB_NOTFOUND:
        return -ENOENT;
    case MDB_KEYEXIST:
        return -EEXIST;
    case MDB_MAP_FULL:
        if (txn != NULL)
            txn->map_full = true;
        return -EFBIG;
    case MDB_TXN_FULL:
        return -E2BIG;
    case MDB_READERS_FULL:
        return -EUSERS;
    case MDB_DBS_FULL:
        return -EMFILE;
    case MDB_MAP_RESIZED:
        return -EAGAIN;
    case MDB_VERSION_MISMATCH:
        return -ENOTSUP;
    case MDB_BAD_VALSIZE:
    case MDB_BAD_TXN:
    case MDB_BAD_DBI:
    case MDB_BAD_RSLOT:
    case MDB_INCOMPATIBLE:
    case MDB_INVALID:
        return -EINVAL;
    default:
        return rc > 0 ? -rc : -EIO; /* MDB_PANIC, MDB_CORRUPTED, MDB_PAGE_NOTFOUND, ... */
    }
}

/* True when the filesystem holding PATH has less free space than a large transaction needs. */
static bool disk_nearly_full(const char *path)
{
    struct statvfs vfs;
    if (statvfs(path, &vfs) != 0)
        return false;
    uint64_t free_bytes = (uint64_t)vfs.f_bavail * vfs.f_frsize;
    return free_bytes < ((uint64_t)4 << 20);
}

const char *st_strerror(int rc)
{
    switch (rc) {
    case -EFBIG:
        return "the store's map is full and reached [store] max_map_size_mb";
    case -EBUSY:
        return "the store's map must grow but this process holds a read transaction";
    case -ENOSPC:
        return "no space left on the store's disk";
    case -EBADMSG:
        return "a stored record does not decode";
    case -ENOTSUP:
        return "the store or record was written by a newer kdeals";
    case -EIO:
        return "LMDB reported corruption or a fatal error; reopen the store";
    case -E2BIG:
        return "the batch is too large for one LMDB transaction";
    case -EUCLEAN:
        return "the store's data.mdb is shorter than its last page (truncated): restore it from "
               "a backup or move it away";
    case -ESTALE:
        return "the store's folder or data.mdb was removed or replaced while kdeals runs: "
               "nothing more is written; put it back or restart kdeals";
    case -EPROTO:
        return "not a kdeals store";
    case -EPROTONOSUPPORT:
        return "the record was written by an older kdeals in a layout this one does not read";
    case -EUSERS:
        return "too many processes are reading the store (LMDB reader slots full)";
    default:
        return strerror(-rc);
    }
}

static void st_assert_owner(const struct st_env *env)
{
    KD_ASSERTF(env->pid == getpid(),
               "store env opened by pid %d used by pid %d: open it after fork()", (int)env->pid,
               (int)getpid());
}

uint64_t st_map_size(struct st_env *env)
{
    MDB_envinfo info;
    mdb_env_info(env->mdb, &info);
    return (uint64_t)info.me_mapsize;
}

int st_reader_check(struct st_env *env, int *dead)
{
    st_assert_owner(env);
    int n = 0;
    int rc = mdb_reader_check(env->mdb, &n);
    if (rc != 0)
        return st_mdb_err(NULL, rc);
    if (n > 0)
        kd_info("store: %s: cleared %d reader slot(s) of dead processes", env->path, n);
    if (dead != NULL)
        *dead = n;
    return 0;
}

/*
 * In a forked child: opens the store read-only and reads every page of every tree (the free
 * list, the main tree, each kdeals tree, overflow pages byte by page), so a page beyond the end
 * of data.mdb is a SIGBUS in the child, not here. Exits 0 when all is read, 2 when LMDB fails.
 */
static void probe_child(const char *path)
{
    struct rlimit none = {0, 0};
    setrlimit(RLIMIT_CORE, &none); /* the process may hold the API key */
    struct sigaction dfl = {.sa_handler = SIG_DFL};
    sigaction(SIGBUS, &dfl, NULL); /* a sanitizer's handler would exit instead of dying */
    MDB_env *mdb = NULL;
    MDB_txn *mt = NULL;
    if (mdb_env_create(&mdb) != 0 || mdb_env_set_maxdbs(mdb, ST_DB_COUNT + 3) != 0 ||
        mdb_env_set_mapsize(mdb, 0) != 0 || mdb_env_open(mdb, path, MDB_RDONLY, 0600) != 0 ||
        mdb_txn_begin(mdb, NULL, MDB_RDONLY, &mt) != 0)
        _exit(2);
    MDB_envinfo info;
    MDB_stat est;
    mdb_env_info(mdb, &info);
    mdb_env_stat(mdb, &est);
    volatile unsigned char sink = 0;
    for (int i = -2; i < ST_DB_COUNT; i++) {
        MDB_dbi dbi = 0; /* -2: the free list (dbi 0), -1: the main tree, then kdeals' trees */
        if (i == -1 && mdb_dbi_open(mt, NULL, 0, &dbi) != 0)
            _exit(2);
        if (i >= 0 && mdb_dbi_open(mt, st_db_names[i], 0, &dbi) != 0)
            continue; /* absent in an older or new store */
        MDB_cursor *mc = NULL;
        if (mdb_cursor_open(mt, dbi, &mc) != 0)
            _exit(2);
        MDB_val k, v;
        int rc = mdb_cursor_get(mc, &k, &v, MDB_FIRST);
        for (; rc == 0; rc = mdb_cursor_get(mc, &k, &v, MDB_NEXT)) {
            const unsigned char *d = v.mv_data;
            for (size_t off = 0; off < v.mv_size; off += est.ms_psize)
                sink ^= d[off];
            if (v.mv_size > 0)
                sink ^= d[v.mv_size - 1];
        }
        if (rc != MDB_NOTFOUND)
            _exit(2);
        mdb_cursor_close(mc);
    }
    (void)sink;
    mdb_txn_abort(mt); /* frees its reader slot */
    mdb_env_close(mdb);
    _exit(0);
}

/*
 * Whether the short data.mdb at ENV is whole (its missing tail only free pages): 0, -EUCLEAN
 * when reading a tree runs past the end of the file, -EIO when the probe could not run.
 */
static int probe_pages(struct st_env *env)
{
    pid_t pid = fork();
    if (pid < 0)
        return -EIO;
    if (pid == 0)
        probe_child(env->path);
    int status = 0;
    pid_t r;
    do
        r = waitpid(pid, &status, 0);
    while (r < 0 && errno == EINTR);
    if (r != pid)
        return -EIO;
    if (WIFSIGNALED(status) && WTERMSIG(status) == SIGBUS)
        return -EUCLEAN;
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -EIO;
}

/*
 * Whether data.mdb holds every page a reader can reach: LMDB reads pages through the mapping,
 * and a page beyond the end of the file is a SIGBUS. A file covering the last page the newest
 * meta names is whole; a shorter one is proved by probe_pages (once per size and meta).
 * 0, -EUCLEAN, -EIO.
 */
static int check_size(struct st_env *env)
{
    int fd = -1;
    struct stat st;
    if (mdb_env_get_fd(env->mdb, &fd) != 0 || fstat(fd, &st) != 0)
        return -EIO;
    /* The two meta pages first: mdb_env_info reads them through the mapping. */
    if ((uint64_t)st.st_size < 2 * env->psize)
        return -EUCLEAN;
    MDB_envinfo info;
    if (mdb_env_info(env->mdb, &info) != 0)
        return -EIO;
    /* The size after the meta: the file only grows, so a size read later is never smaller
     * than the one the meta was written against. */
    if (fstat(fd, &st) != 0)
        return -EIO;
    if ((uint64_t)st.st_size >= ((uint64_t)info.me_last_pgno + 1) * env->psize)
        return 0;
    if (st.st_size == env->proved_size && (uint64_t)info.me_last_pgno == env->proved_last_pgno &&
        (uint64_t)info.me_last_txnid == env->proved_txnid)
        return 0;
    int rc = probe_pages(env);
    if (rc == 0) {
        env->proved_size = st.st_size;
        env->proved_last_pgno = (uint64_t)info.me_last_pgno;
        env->proved_txnid = (uint64_t)info.me_last_txnid;
    }
    return rc;
}

/*
 * After a commit: extends a data.mdb shorter than the last page of the newest meta over its
 * free tail, so check_size needs no probe. fallocate() never shrinks the file nor changes a
 * byte another writer has written; where the filesystem cannot, the probe stays the proof.
 */
static void pad_free_tail(struct st_env *env)
{
    int fd = -1;
    struct stat st;
    MDB_envinfo info;
    if (mdb_env_get_fd(env->mdb, &fd) != 0 || mdb_env_info(env->mdb, &info) != 0 ||
        fstat(fd, &st) != 0)
        return;
    uint64_t need = ((uint64_t)info.me_last_pgno + 1) * env->psize;
    if ((uint64_t)st.st_size < need)
        (void)fallocate(fd, 0, st.st_size, (off_t)(need - (uint64_t)st.st_size));
}

int st_check(struct st_env *env)
{
    st_assert_owner(env);
    int fd = -1;
    struct stat dir, named, open_file;
    char data[PATH_MAX + 16];
    snprintf(data, sizeof(data), "%s/data.mdb", env->path);
    if (mdb_env_get_fd(env->mdb, &fd) != 0 || fstat(fd, &open_file) != 0)
        return -EIO;
    if (open_file.st_nlink == 0 || stat(env->path, &dir) != 0 || dir.st_dev != env->dir_dev ||
        dir.st_ino != env->dir_ino || stat(data, &named) != 0 || named.st_dev != open_file.st_dev ||
        named.st_ino != open_file.st_ino)
        return -ESTALE;
    return check_size(env);
}

/*
 * Whether read transaction MT may hold the state of a later commit than its id (see the top
 * comment, "Reads never go back in time"): a meta page holds an id two or more past its own.
 */
static bool read_may_be_ahead(MDB_env *mdb, MDB_txn *mt)
{
    MDB_envinfo info;
    return mdb_env_info(mdb, &info) == 0 && info.me_last_txnid >= mdb_txn_id(mt) + 2;
}

/* Tries of a read transaction whose meta copy may have raced a commit (see read_may_be_ahead);
 * the last is kept whatever it read, whole but perhaps newer than its id. */
#define READ_BEGIN_TRIES 16

/* Begins an LMDB transaction, adopting a map grown by another process. */
static int txn_begin(struct st_env *env, unsigned flags, MDB_txn **mt)
{
    int checked = check_size(env);
    if (checked != 0)
        return checked;
    for (int tries = 0, ahead = 0; tries < 4; tries++) {
        int rc = mdb_txn_begin(env->mdb, NULL, flags, mt);
        if (rc == 0 && (flags & MDB_RDONLY) != 0 && ++ahead < READ_BEGIN_TRIES &&
            read_may_be_ahead(env->mdb, *mt)) {
            mdb_txn_abort(*mt);
            tries--;
            continue;
        }
        if (rc != MDB_MAP_RESIZED)
            return st_mdb_err(NULL, rc);
        if (env->readers_open > 0)
            return -EBUSY;
        rc = mdb_env_set_mapsize(env->mdb, 0);
        if (rc != 0)
            return st_mdb_err(NULL, rc);
        kd_debug("store: %s: map resized by another process to %llu bytes", env->path,
                 (unsigned long long)st_map_size(env));
    }
    return -EAGAIN;
}

/* Doubles the map (up to the cap). Called with no transaction open in this process. */
static int grow_map(struct st_env *env)
{
    if (env->readers_open > 0)
        return -EBUSY;
    uint64_t cur = st_map_size(env);
    if (cur >= env->max_map)
        return -EFBIG;
    uint64_t next = cur * 2 < env->max_map ? cur * 2 : env->max_map;
    int rc = mdb_env_set_mapsize(env->mdb, (size_t)next);
    if (rc != 0)
        return st_mdb_err(NULL, rc);
    kd_info("store: %s: map full, grown from %llu to %llu KiB", env->path,
            (unsigned long long)(cur >> 10), (unsigned long long)(st_map_size(env) >> 10));
    return 0;
}

int st_write(struct st_env *env, int (*fn)(struct st_txn *txn, void *ud), void *ud)
{
    st_assert_owner(env);
    if (env->rdonly)
        return -EROFS;
    int checked = st_check(env);
    if (checked != 0)
        return checked;
    for (int tries = 0; tries < ST_WRITE_MAX_TRIES; tries++) {
        struct st_txn txn = {.env = env, .mt = NULL, .rdonly = false, .map_full = false};
        int rc = txn_begin(env, 0, &txn.mt);
        if (rc != 0)
            return rc;
        rc = fn(&txn, ud);
        if (txn.map_full) {
            mdb_txn_abort(txn.mt);
            if ((rc = grow_map(env)) != 0)
                return rc;
            continue;
        }
        if (rc != 0) {
            mdb_txn_abort(txn.mt);
            return rc;
        }
        int mrc = mdb_txn_commit(txn.mt); /* frees the txn whatever it returns */
        if (mrc == MDB_MAP_FULL) {
            if ((rc = grow_map(env)) != 0)
                return rc;
            continue;
        }
        if (mrc != 0) {
            rc = st_mdb_err(NULL, mrc);
            /* LMDB reports a write cut short by a full disk as EIO ("short write"); the
             * commit left the previous meta page in place, so it is the full disk, not
             * corruption, when the filesystem is (nearly) out of space. */
            if (rc == -EIO && disk_nearly_full(env->path))
                rc = -ENOSPC;
            kd_warn("store: %s: commit failed: %s", env->path, st_strerror(rc));
            return rc;
        }
        pad_free_tail(env);
        return 0;
    }
    return -EFBIG;
}

int st_read_begin(struct st_env *env, struct st_txn **out)
{
    st_assert_owner(env);
    struct st_txn *txn = calloc(1, sizeof(*txn));
    if (txn == NULL)
        return -ENOMEM;
    txn->env = env;
    txn->rdonly = true;
    int rc = txn_begin(env, MDB_RDONLY, &txn->mt);
    if (rc != 0) {
        free(txn);
        return rc;
    }
    env->readers_open++;
    *out = txn;
    return 0;
}

void st_read_end(struct st_txn *txn)
{
    if (txn == NULL)
        return;
    KD_ASSERT(txn->rdonly);
    mdb_txn_abort(txn->mt);
    txn->env->readers_open--;
    free(txn);
}

/* ---- opening --------------------------------------------------------------------------- */

struct open_ctx {
    struct st_env *env;
    uint64_t found_schema;
};

static int migrate_v1(struct st_txn *txn, struct st_env *env);

/*
 * Whether the environment of TXN is a kdeals store: a "meta" db holding a schema version.
 * An environment whose main db is empty is a fresh one (*FRESH). Returns 0, or -EPROTO.
 */
static int is_kdeals_store(struct st_txn *txn, bool *fresh)
{
    MDB_stat main_db;
    MDB_dbi main_dbi;
    int rc = mdb_dbi_open(txn->mt, NULL, 0, &main_dbi);
    if (rc == 0)
        rc = mdb_stat(txn->mt, main_dbi, &main_db);
    if (rc != 0)
        return st_mdb_err(txn, rc);
    *fresh = main_db.ms_entries == 0;
    if (*fresh)
        return 0;
    MDB_dbi meta;
    rc = mdb_dbi_open(txn->mt, st_db_names[ST_DB_META], 0, &meta);
    if (rc == MDB_NOTFOUND || rc == MDB_INCOMPATIBLE)
        return -EPROTO;
    if (rc != 0)
        return st_mdb_err(txn, rc);
    MDB_val key = {strlen(ST_META_SCHEMA_VERSION), (void *)ST_META_SCHEMA_VERSION}, val;
    rc = mdb_get(txn->mt, meta, &key, &val);
    return rc == MDB_NOTFOUND ? -EPROTO : st_mdb_err(txn, rc);
}

static int open_dbs(struct st_txn *txn, void *ud)
{
    struct open_ctx *ctx = ud;
    bool fresh = false;
    int rc = is_kdeals_store(txn, &fresh);
    if (rc != 0)
        return rc;
    for (int i = 0; i < ST_DB_COUNT; i++) {
        rc = mdb_dbi_open(txn->mt, st_db_names[i], MDB_CREATE, &ctx->env->dbi[i]);
        if (rc != 0)
            return st_mdb_err(txn, rc);
        ctx->env->have[i] = true;
    }
    rc = st_meta_get_u64(txn, ST_META_SCHEMA_VERSION, &ctx->found_schema);
    if (rc == -ENOENT && fresh) {
        ctx->found_schema = ST_SCHEMA_VERSION;
        return st_meta_put_u64(txn, ST_META_SCHEMA_VERSION, ST_SCHEMA_VERSION);
    }
    if (rc != 0)
        return rc;
    if (ctx->found_schema == 1) {
        rc = migrate_v1(txn, ctx->env);
        if (rc == 0)
            rc = st_meta_put_u64(txn, ST_META_SCHEMA_VERSION, ST_SCHEMA_VERSION);
        return rc;
    }
    return ctx->found_schema == ST_SCHEMA_VERSION ? 0 : -ENOTSUP;
}

/* Read-only: opens the dbs that exist, without creating any, and reads the schema version. */
static int open_dbs_rdonly(struct st_env *env, uint64_t *schema)
{
    MDB_txn *mt;
    int rc = txn_begin(env, MDB_RDONLY, &mt);
    if (rc != 0)
        return rc;
    struct st_txn txn = {.env = env, .mt = mt, .rdonly = true};
    bool fresh = false;
    rc = is_kdeals_store(&txn, &fresh);
    if (rc == 0 && fresh)
        rc = -EPROTO; /* a reader finds no store to read in an empty environment */
    for (int i = 0; i < ST_DB_COUNT && rc == 0; i++) {
        int m = mdb_dbi_open(mt, st_db_names[i], 0, &env->dbi[i]);
        if (m == 0)
            env->have[i] = true;
        else if (m != MDB_NOTFOUND)
            rc = st_mdb_err(NULL, m);
    }
    if (rc == 0)
        rc = st_meta_get_u64(&txn, ST_META_SCHEMA_VERSION, schema);
    if (rc == 0 && *schema > ST_SCHEMA_VERSION)
        rc = -ENOTSUP;
    if (rc == 0) {
        /* Committing a read-only transaction keeps its db handles for the environment. */
        rc = st_mdb_err(NULL, mdb_txn_commit(mt));
    } else {
        mdb_txn_abort(mt);
    }
    return rc;
}

static int store_open_locked(const struct st_options *opt, bool rdonly, struct st_env **out,
                             char *err, size_t errlen)
{
    if (opt == NULL || opt->path == NULL || opt->path[0] == '\0' || strlen(opt->path) >= PATH_MAX) {
        snprintf(err, errlen, "store: no path or path too long");
        return -EINVAL;
    }
    if (!rdonly && mkdir(opt->path, 0700) != 0 && errno != EEXIST) {
        int e = errno;
        snprintf(err, errlen, "store: %s: cannot create the folder: %s", opt->path, strerror(e));
        return -e;
    }
    /* An empty data.mdb is not a new store: LMDB would silently make it one. */
    char data[PATH_MAX + 16];
    snprintf(data, sizeof(data), "%s/data.mdb", opt->path);
    struct stat sb;
    if (stat(data, &sb) == 0 && sb.st_size == 0) {
        snprintf(err, errlen,
                 "store: %s is empty (0 bytes): not a kdeals store; if [store] path is right and "
                 "the store was lost, move the empty file away to start a new one",
                 data);
        return -EPROTO;
    }
    struct st_env *env = calloc(1, sizeof(*env));
    if (env == NULL) {
        snprintf(err, errlen, "store: %s: out of memory", opt->path);
        return -ENOMEM;
    }
    snprintf(env->path, sizeof(env->path), "%s", opt->path);
    env->pid = getpid();
    env->rdonly = rdonly;
    uint64_t map = opt->map_size_bytes ? opt->map_size_bytes : ST_DEFAULT_MAP;
    env->max_map = opt->max_map_size_bytes ? opt->max_map_size_bytes : ST_DEFAULT_MAX_MAP;
    if (env->max_map < map)
        env->max_map = map;

    int rc = mdb_env_create(&env->mdb);
    if (rc == 0)
        rc = mdb_env_set_maxdbs(env->mdb, ST_DB_COUNT + 3);
    if (rc == 0)
        rc = mdb_env_set_maxreaders(env->mdb, opt->max_readers ? opt->max_readers : 126);
    if (rc == 0)
        rc = mdb_env_set_mapsize(env->mdb, (size_t)map);
    if (rc == 0)
        rc = mdb_env_open(env->mdb, opt->path, MDB_NOTLS | (rdonly ? MDB_RDONLY : 0), 0600);
    if (rc != 0) {
        int e = st_mdb_err(NULL, rc);
        snprintf(err, errlen, "store: %s: cannot open the LMDB environment: %s%s", opt->path,
                 mdb_strerror(rc),
                 rc == MDB_INVALID || rc == MDB_VERSION_MISMATCH
                     ? " (not a kdeals store, or written by another LMDB version)"
                     : "");
        rc = e;
        goto out_env;
    }
    MDB_stat est;
    int fd = -1;
    struct stat dir, file;
    if (mdb_env_stat(env->mdb, &est) != 0 || mdb_env_get_fd(env->mdb, &fd) != 0 ||
        fstat(fd, &file) != 0 || stat(opt->path, &dir) != 0) {
        snprintf(err, errlen, "store: %s: cannot read what was opened", opt->path);
        rc = -EIO;
        goto out_env;
    }
    env->psize = est.ms_psize;
    env->dir_dev = dir.st_dev;
    env->dir_ino = dir.st_ino;
    env->file_dev = file.st_dev;
    env->file_ino = file.st_ino;
    if ((rc = check_size(env)) == -EUCLEAN) {
        snprintf(err, errlen,
                 "store: %s is truncated (%lld bytes, a tree runs past its end): restore it "
                 "from a backup or move it away to start a new store",
                 data, (long long)file.st_size);
        goto out_env;
    }
    if (rc != 0) {
        snprintf(err, errlen,
                 "store: %s is shorter than its last page and could not be read "
                 "whole to prove it: %s",
                 data, strerror(-rc));
        goto out_env;
    }
    /* The file may record a larger map than asked for (grown earlier): keep the larger. */
    MDB_envinfo info;
    mdb_env_info(env->mdb, &info);
    if ((uint64_t)info.me_mapsize > env->max_map)
        env->max_map = (uint64_t)info.me_mapsize;

    struct open_ctx ctx = {.env = env, .found_schema = 0};
    if (rdonly) {
        rc = open_dbs_rdonly(env, &ctx.found_schema);
    } else {
        int dead = 0;
        rc = st_reader_check(env, &dead);
        if (rc == 0)
            rc = st_write(env, open_dbs, &ctx);
    }
    if (rc != 0) {
        if (rc == -ENOTSUP && ctx.found_schema > ST_SCHEMA_VERSION)
            snprintf(err, errlen,
                     "store: %s: schema version %llu is newer than this kdeals supports (%d): "
                     "upgrade kdeals or point [store] path at another folder",
                     opt->path, (unsigned long long)ctx.found_schema, ST_SCHEMA_VERSION);
        else if (rc == -ENOTSUP)
            snprintf(err, errlen,
                     "store: %s: schema version %llu is older than %d and cannot be migrated",
                     opt->path, (unsigned long long)ctx.found_schema, ST_SCHEMA_VERSION);
        else if (rc == -EPROTO)
            snprintf(err, errlen,
                     "store: %s: not a kdeals store (an LMDB environment without kdeals' "
                     "schema version%s): point [store] path at a kdeals store or a new folder",
                     data, rdonly ? ", or one nothing was stored in yet" : "");
        else
            snprintf(err, errlen, "store: %s: %s", opt->path, st_strerror(rc));
        goto out_env;
    }
    *out = env;
    return 0;

out_env:
    if (env->mdb != NULL)
        mdb_env_close(env->mdb);
    free(env);
    return rc;
}

/*
 * Opens the store with the folder locked (flock on the folder itself) against the other
 * processes opening it: the first opener of a new store creates data.mdb empty and writes its
 * meta pages a moment later, and a sibling that looked in between would take the new store for
 * an empty file that is not a kdeals store.
 */
static int store_open(const struct st_options *opt, bool rdonly, struct st_env **out, char *err,
                      size_t errlen)
{
    int dfd = -1;
    if (opt != NULL && opt->path != NULL && opt->path[0] != '\0') {
        if (!rdonly)
            (void)mkdir(opt->path, 0700); /* store_open_locked reports a failure */
        dfd = open(opt->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        while (dfd >= 0 && flock(dfd, LOCK_EX) != 0 && errno == EINTR) {
        }
    }
    int rc = store_open_locked(opt, rdonly, out, err, errlen);
    if (dfd >= 0)
        close(dfd); /* and the lock with it */
    return rc;
}

int st_open(const struct st_options *opt, struct st_env **out, char *err, size_t errlen)
{
    return store_open(opt, false, out, err, errlen);
}

/* The store at OPT->path must exist: -ENOENT (ERR saying so) rather than a new one. */
static int open_existing(const struct st_options *opt, bool rdonly, struct st_env **out, char *err,
                         size_t errlen)
{
    char data[PATH_MAX + 16];
    struct stat sb;
    if (opt != NULL && opt->path != NULL) {
        snprintf(data, sizeof(data), "%s/data.mdb", opt->path);
        if (stat(data, &sb) != 0) {
            int e = errno;
            snprintf(err, errlen, "no store at %s (has the daemon run with this config?)",
                     opt->path);
            return -e;
        }
    }
    return store_open(opt, rdonly, out, err, errlen);
}

int st_open_existing(const struct st_options *opt, struct st_env **out, char *err, size_t errlen)
{
    return open_existing(opt, true, out, err, errlen);
}

int st_open_existing_rw(const struct st_options *opt, struct st_env **out, char *err, size_t errlen)
{
    return open_existing(opt, false, out, err, errlen);
}

void st_close(struct st_env *env)
{
    if (env == NULL)
        return;
    st_assert_owner(env);
    KD_ASSERTF(env->readers_open == 0, "%d read transactions still open", env->readers_open);
    mdb_env_close(env->mdb);
    free(env);
}

/* ---- raw access ------------------------------------------------------------------------ */

static int raw_put(struct st_txn *txn, enum st_db db, const void *k, size_t klen, const void *v,
                   size_t vlen)
{
    if (txn->rdonly)
        return -EROFS;
    MDB_val key = {klen, (void *)k}, val = {vlen, (void *)v};
    return st_mdb_err(txn, mdb_put(txn->mt, txn->env->dbi[db], &key, &val, 0));
}

static int raw_get(struct st_txn *txn, enum st_db db, const void *k, size_t klen, MDB_val *val)
{
    if (!txn->env->have[db])
        return -ENOENT;
    MDB_val key = {klen, (void *)k};
    return st_mdb_err(txn, mdb_get(txn->mt, txn->env->dbi[db], &key, val));
}

static int raw_del(struct st_txn *txn, enum st_db db, const void *k, size_t klen)
{
    if (txn->rdonly)
        return -EROFS;
    MDB_val key = {klen, (void *)k};
    return st_mdb_err(txn, mdb_del(txn->mt, txn->env->dbi[db], &key, NULL));
}

/* The dbs whose keys and values belong to another module: raw access is for them alone. */
static bool raw_db(enum st_db db)
{
    return db == ST_DB_ALERTS;
}

int st_raw_put(struct st_txn *txn, enum st_db db, const void *k, size_t klen, const void *v,
               size_t vlen)
{
    if (!raw_db(db) || klen == 0 || klen > 511)
        return -EINVAL;
    return raw_put(txn, db, k, klen, v, vlen);
}

int st_raw_get(struct st_txn *txn, enum st_db db, const void *k, size_t klen, const void **v,
               size_t *vlen)
{
    if (!raw_db(db) || klen == 0 || klen > 511)
        return -EINVAL;
    MDB_val val;
    int rc = raw_get(txn, db, k, klen, &val);
    if (rc == 0) {
        *v = val.mv_data;
        *vlen = val.mv_size;
    }
    return rc;
}

int st_raw_del(struct st_txn *txn, enum st_db db, const void *k, size_t klen)
{
    if (!raw_db(db) || klen == 0 || klen > 511)
        return -EINVAL;
    return raw_del(txn, db, k, klen);
}

int st_count(struct st_txn *txn, enum st_db db, uint64_t *n)
{
    if ((unsigned)db >= ST_DB_COUNT)
        return -EINVAL;
    if (!txn->env->have[db]) {
        *n = 0;
        return 0;
    }
    MDB_stat st;
    int rc = mdb_stat(txn->mt, txn->env->dbi[db], &st);
    if (rc != 0)
        return st_mdb_err(txn, rc);
    *n = st.ms_entries;
    return 0;
}

/* ---- schedule -------------------------------------------------------------------------- */

static void sched_key(const struct st_key *key, int64_t at_ms, uint8_t out[ST_SCHED_KEY_LEN])
{
    uint64_t t = (uint64_t)at_ms;
    for (int i = 7; i >= 0; i--) {
        out[i] = (uint8_t)(t & 0xff);
        t >>= 8;
    }
    memcpy(out + 8, key->b, ST_KEY_LEN);
}

int st_schedule_add(struct st_txn *txn, const struct st_key *key, int64_t at_ms)
{
    if (at_ms < 0)
        return -EINVAL;
    uint8_t k[ST_SCHED_KEY_LEN];
    sched_key(key, at_ms, k);
    return raw_put(txn, ST_DB_SCHEDULE, k, sizeof(k), "", 0);
}

int st_schedule_remove(struct st_txn *txn, const struct st_key *key, int64_t at_ms)
{
    if (at_ms < 0)
        return -EINVAL;
    uint8_t k[ST_SCHED_KEY_LEN];
    sched_key(key, at_ms, k);
    return raw_del(txn, ST_DB_SCHEDULE, k, sizeof(k));
}

int st_schedule_move(struct st_txn *txn, const struct st_key *key, int64_t old_ms, int64_t new_ms)
{
    if (old_ms < 0 || new_ms < 0)
        return -EINVAL;
    int rc = st_schedule_remove(txn, key, old_ms);
    if (rc != 0 && rc != -ENOENT)
        return rc;
    return st_schedule_add(txn, key, new_ms);
}

int st_schedule_due(struct st_txn *txn, int64_t now_ms, struct st_sched_entry *out, size_t max,
                    size_t *n)
{
    *n = 0;
    if (!txn->env->have[ST_DB_SCHEDULE])
        return 0;
    MDB_cursor *mc;
    int rc = mdb_cursor_open(txn->mt, txn->env->dbi[ST_DB_SCHEDULE], &mc);
    if (rc != 0)
        return st_mdb_err(txn, rc);
    MDB_val key, val;
    for (int op = MDB_FIRST; *n < max; op = MDB_NEXT) {
        rc = mdb_cursor_get(mc, &key, &val, (MDB_cursor_op)op);
        if (rc != 0)
            break;
        if (key.mv_size != ST_SCHED_KEY_LEN)
            continue; /* not ours; never written by kdeals */
        const uint8_t *b = key.mv_data;
        uint64_t t = 0;
        for (int i = 0; i < 8; i++)
            t = t << 8 | b[i];
        if ((int64_t)t > now_ms)
            break;
        out[*n].at_ms = (int64_t)t;
        memcpy(out[*n].key.b, b + 8, ST_KEY_LEN);
        (*n)++;
    }
    mdb_cursor_close(mc);
    return rc == 0 || rc == MDB_NOTFOUND ? 0 : st_mdb_err(txn, rc);
}

/* ---- deals ----------------------------------------------------------------------------- */

int st_deal_get(struct st_txn *txn, const struct st_key *key, struct st_deal *out)
{
    MDB_val val;
    int rc = raw_get(txn, ST_DB_DEALS, key->b, ST_KEY_LEN, &val);
    if (rc != 0)
        return rc;
    return st_deal_decode(val.mv_data, val.mv_size, out);
}

int st_deal_put(struct st_txn *txn, const struct st_deal *d)
{
    struct st_key key;
    uint8_t buf[ST_RECORD_MAX];
    size_t len = 0;
    if (txn->rdonly)
        return -EROFS;
    if (st_deal_key(d, &key) != 0 || d->next_check_ms < 0)
        return -EINVAL;
    int rc = st_deal_encode(d, buf, sizeof(buf), &len);
    if (rc != 0)
        return rc;

    /* Keep the schedule in step with next_check_ms. */
    struct st_deal old;
    int64_t old_ms = 0;
    rc = st_deal_get(txn, &key, &old);
    if (rc == 0)
        old_ms = old.next_check_ms;
    else if (rc == -EBADMSG || rc == -ENOTSUP)
        kd_warn("store: %s: replacing an undecodable deal record for %s", txn->env->path, d->asin);
    else if (rc != -ENOENT)
        return rc;
    if (old_ms != d->next_check_ms) {
        if (old_ms > 0 && (rc = st_schedule_remove(txn, &key, old_ms)) != 0 && rc != -ENOENT)
            return rc;
        if (d->next_check_ms > 0 && (rc = st_schedule_add(txn, &key, d->next_check_ms)) != 0)
            return rc;
    }
    return raw_put(txn, ST_DB_DEALS, key.b, ST_KEY_LEN, buf, len);
}

int st_deal_del(struct st_txn *txn, const struct st_key *key)
{
    struct st_deal old;
    int rc = st_deal_get(txn, key, &old);
    if (rc == 0 && old.next_check_ms > 0) {
        rc = st_schedule_remove(txn, key, old.next_check_ms);
        if (rc != 0 && rc != -ENOENT)
            return rc;
    } else if (rc != 0 && rc != -EBADMSG && rc != -ENOTSUP) {
        return rc;
    }
    return raw_del(txn, ST_DB_DEALS, key->b, ST_KEY_LEN);
}

/* ---- records, history, changes --------------------------------------------------------- */

#define ST_HIST_KEY_LEN (ST_KEY_LEN + 8)

static void be64_put(uint8_t *b, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)(v >> (56 - 8 * i));
}

static uint64_t be64_get(const uint8_t *b)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | b[i];
    return v;
}

int st_record_get(struct st_txn *txn, const struct st_key *key, struct st_record *out)
{
    MDB_val val;
    int rc = raw_get(txn, ST_DB_PRODUCTS, key->b, ST_KEY_LEN, &val);
    if (rc != 0)
        return rc;
    return st_record_decode(val.mv_data, val.mv_size, out);
}

/* Appends one change for KEY to the log (seq = changes_seq + 1), trimming the oldest beyond
 * ST_CHANGES_MAX now and then. */
static int log_change(struct st_txn *txn, const struct st_key *key, uint64_t revision,
                      enum st_event event, uint8_t prev_state, uint8_t state, int64_t now_ms)
{
    uint64_t seq = 0;
    int rc = st_meta_get_u64(txn, ST_META_CHANGES_SEQ, &seq);
    if (rc != 0 && rc != -ENOENT)
        return rc;
    seq++;
    struct st_change c;
    memset(&c, 0, sizeof(c));
    c.seq = seq;
    st_key_asin(key, c.asin);
    c.domain = (uint8_t)st_key_domain(key);
    c.revision = revision;
    c.event = (uint8_t)event;
    c.state = state;
    c.prev_state = prev_state;
    c.at_ms = now_ms;
    uint8_t buf[512], k[8];
    size_t len = 0;
    if ((rc = st_change_encode(&c, buf, sizeof(buf), &len)) != 0)
        return rc;
    be64_put(k, seq);
    if ((rc = raw_put(txn, ST_DB_CHANGES, k, sizeof(k), buf, len)) != 0)
        return rc;
    if ((rc = st_meta_put_u64(txn, ST_META_CHANGES_SEQ, seq)) != 0)
        return rc;
    if (seq % 1024 != 0 || seq <= ST_CHANGES_MAX)
        return 0;
    /* Trim: everything up to seq - ST_CHANGES_MAX goes. */
    MDB_cursor *mc;
    if ((rc = mdb_cursor_open(txn->mt, txn->env->dbi[ST_DB_CHANGES], &mc)) != 0)
        return st_mdb_err(txn, rc);
    MDB_val mk, mv;
    while ((rc = mdb_cursor_get(mc, &mk, &mv, MDB_FIRST)) == 0) {
        if (mk.mv_size != 8 || be64_get(mk.mv_data) > seq - ST_CHANGES_MAX)
            break;
        if ((rc = mdb_cursor_del(mc, 0)) != 0)
            break;
    }
    mdb_cursor_close(mc);
    return rc == 0 || rc == MDB_NOTFOUND ? 0 : st_mdb_err(txn, rc);
}

/* Puts MC on KEY's newest history entry: 0, MDB_NOTFOUND when KEY has none, or an LMDB error. */
static int history_newest(MDB_cursor *mc, const struct st_key *key, MDB_val *mk, MDB_val *mv)
{
    uint8_t k[ST_HIST_KEY_LEN];
    memcpy(k, key->b, ST_KEY_LEN);
    memset(k + ST_KEY_LEN, 0xff, 8);
    mk->mv_size = sizeof(k);
    mk->mv_data = k;
    /* Just past this key's newest entry, then one back. */
    int rc = mdb_cursor_get(mc, mk, mv, MDB_SET_RANGE);
    rc = rc == 0 ? mdb_cursor_get(mc, mk, mv, MDB_PREV) : mdb_cursor_get(mc, mk, mv, MDB_LAST);
    if (rc == 0 && (mk->mv_size != ST_HIST_KEY_LEN || memcmp(mk->mv_data, key->b, ST_KEY_LEN) != 0))
        rc = MDB_NOTFOUND;
    return rc;
}

/* Whether a re-check judged what the entry before it did: the same state, figures and
 * failed criteria. */
static bool history_same(const struct st_history *a, const struct st_history *b)
{
    return a->event == ST_EV_RECHECK && b->event == ST_EV_RECHECK && a->state == b->state &&
           a->buy_total_cents == b->buy_total_cents && a->landed_cents == b->landed_cents &&
           a->sell_cents == b->sell_cents && a->profit_cents == b->profit_cents &&
           a->roi_bp == b->roi_bp && a->max_cost_cents == b->max_cost_cents && a->fails == b->fails;
}

/*
 * A re-check that found what the key's newest entry, itself a re-check, says takes that entry's
 * place and counts it (checks, first_ms): unchanged re-checks do not push the commit and the
 * changes out of the last ST_HISTORY_MAX (docs/architecture.md, "history").
 */
static int fold_history(struct st_txn *txn, const struct st_key *key, struct st_history *h)
{
    if (h->event != ST_EV_RECHECK)
        return 0;
    MDB_cursor *mc;
    int rc = mdb_cursor_open(txn->mt, txn->env->dbi[ST_DB_HISTORY], &mc);
    if (rc != 0)
        return st_mdb_err(txn, rc);
    MDB_val mk, mv;
    rc = history_newest(mc, key, &mk, &mv);
    struct st_history prev;
    if (rc == 0 && st_history_decode(mv.mv_data, mv.mv_size, &prev) == 0 &&
        history_same(&prev, h)) {
        h->checks = (prev.checks > 1 ? prev.checks : 1) + 1;
        h->first_ms = prev.checks > 1 && prev.first_ms > 0 ? prev.first_ms : prev.at_ms;
        rc = mdb_cursor_del(mc, 0);
    } else {
        rc = rc == MDB_NOTFOUND ? 0 : rc;
    }
    mdb_cursor_close(mc);
    return rc == 0 ? 0 : st_mdb_err(txn, rc);
}

/* Adds R's history entry for EVENT and keeps the newest ST_HISTORY_MAX of its key. */
static int add_history(struct st_txn *txn, const struct st_key *key, const struct st_record *r,
                       enum st_event event, int64_t now_ms)
{
    struct st_history h;
    memset(&h, 0, sizeof(h));
    h.at_ms = now_ms;
    h.revision = r->revision;
    h.event = (uint8_t)event;
    h.state = r->state;
    h.buy_total_cents = r->v.buy_cents;
    h.landed_cents = r->v.landed_cents;
    h.sell_cents = r->v.sell_cents;
    h.profit_cents = r->v.profit_cents;
    h.roi_bp = r->v.roi_bp;
    h.max_cost_cents = r->v.max_cost_cents;
    h.fails = r->v.fails;
    uint8_t buf[512], k[ST_HIST_KEY_LEN];
    size_t len = 0;
    int rc = fold_history(txn, key, &h);
    if (rc == 0)
        rc = st_history_encode(&h, buf, sizeof(buf), &len);
    if (rc != 0)
        return rc;
    memcpy(k, key->b, ST_KEY_LEN);
    be64_put(k + ST_KEY_LEN, r->revision);
    if ((rc = raw_put(txn, ST_DB_HISTORY, k, sizeof(k), buf, len)) != 0)
        return rc;
    /* Count this key's entries; drop the oldest beyond the limit. */
    MDB_cursor *mc;
    if ((rc = mdb_cursor_open(txn->mt, txn->env->dbi[ST_DB_HISTORY], &mc)) != 0)
        return st_mdb_err(txn, rc);
    memset(k + ST_KEY_LEN, 0, 8);
    MDB_val mk = {sizeof(k), k}, mv;
    size_t count = 0;
    rc = mdb_cursor_get(mc, &mk, &mv, MDB_SET_RANGE);
    while (rc == 0 && mk.mv_size == ST_HIST_KEY_LEN &&
           memcmp(mk.mv_data, key->b, ST_KEY_LEN) == 0) {
        count++;
        rc = mdb_cursor_get(mc, &mk, &mv, MDB_NEXT);
    }
    if (rc == 0 || rc == MDB_NOTFOUND) {
        rc = 0;
        /* The oldest come first in key order; re-seek after each delete. */
        for (size_t drop = count > ST_HISTORY_MAX ? count - ST_HISTORY_MAX : 0; drop > 0; drop--) {
            mk.mv_size = sizeof(k);
            mk.mv_data = k;
            if ((rc = mdb_cursor_get(mc, &mk, &mv, MDB_SET_RANGE)) != 0 ||
                (rc = mdb_cursor_del(mc, 0)) != 0)
                break;
        }
    }
    mdb_cursor_close(mc);
    return rc == 0 || rc == MDB_NOTFOUND ? 0 : st_mdb_err(txn, rc);
}

static int del_history(struct st_txn *txn, const struct st_key *key)
{
    MDB_cursor *mc;
    int rc = mdb_cursor_open(txn->mt, txn->env->dbi[ST_DB_HISTORY], &mc);
    if (rc != 0)
        return st_mdb_err(txn, rc);
    uint8_t k[ST_HIST_KEY_LEN];
    memcpy(k, key->b, ST_KEY_LEN);
    memset(k + ST_KEY_LEN, 0, 8);
    MDB_val mk = {sizeof(k), k}, mv;
    while ((rc = mdb_cursor_get(mc, &mk, &mv, MDB_SET_RANGE)) == 0 &&
           mk.mv_size == ST_HIST_KEY_LEN && memcmp(mk.mv_data, key->b, ST_KEY_LEN) == 0) {
        if ((rc = mdb_cursor_del(mc, 0)) != 0)
            break;
        mk.mv_size = sizeof(k);
        mk.mv_data = k;
    }
    mdb_cursor_close(mc);
    return rc == 0 || rc == MDB_NOTFOUND ? 0 : st_mdb_err(txn, rc);
}

/* Stores R (encoded), keeping the schedule in step; OLD_STATE gets the previous state. */
static int record_store(struct st_txn *txn, const struct st_key *key, const struct st_record *r,
                        uint8_t *old_state)
{
    uint8_t buf[ST_RECORD_MAX];
    size_t len = 0;
    int rc = st_record_encode(r, buf, sizeof(buf), &len);
    if (rc != 0)
        return rc;
    struct st_record old;
    int64_t old_ms = 0;
    *old_state = ST_STATE_NONE;
    rc = st_record_get(txn, key, &old);
    if (rc == 0) {
        old_ms = old.next_check_ms;
        *old_state = old.state;
    } else if (rc == -EBADMSG || rc == -ENOTSUP) {
        kd_warn("store: %s: replacing an undecodable record for %s", txn->env->path, r->asin);
    } else if (rc != -ENOENT) {
        return rc;
    }
    if (old_ms != r->next_check_ms) {
        if (old_ms > 0 && (rc = st_schedule_remove(txn, key, old_ms)) != 0 && rc != -ENOENT)
            return rc;
        if (r->next_check_ms > 0 && (rc = st_schedule_add(txn, key, r->next_check_ms)) != 0)
            return rc;
    }
    return raw_put(txn, ST_DB_PRODUCTS, key->b, ST_KEY_LEN, buf, len);
}

int st_record_put(struct st_txn *txn, const struct st_record *r, enum st_event event,
                  int64_t now_ms)
{
    struct st_key key;
    if (txn->rdonly)
        return -EROFS;
    if (st_record_key(r, &key) != 0 || r->next_check_ms < 0)
        return -EINVAL;
    uint8_t old_state;
    int rc = record_store(txn, &key, r, &old_state);
    if (rc == 0 && event != ST_EV_MARK)
        rc = add_history(txn, &key, r, event, now_ms);
    if (rc == 0)
        rc = log_change(txn, &key, r->revision, event, old_state, r->state, now_ms);
    return rc;
}

int st_record_reschedule(struct st_txn *txn, const struct st_key *key, uint64_t revision,
                         int64_t new_ms)
{
    if (txn->rdonly)
        return -EROFS;
    if (new_ms <= 0)
        return -EINVAL;
    struct st_record r;
    int rc = st_record_get(txn, key, &r);
    if (rc != 0)
        return rc;
    if (r.revision != revision || r.next_check_ms <= 0)
        return -ECANCELED;
    if (r.next_check_ms == new_ms)
        return 0;
    r.next_check_ms = new_ms;
    uint8_t old_state;
    return record_store(txn, key, &r, &old_state);
}

int st_record_del(struct st_txn *txn, const struct st_key *key, int64_t now_ms)
{
    if (txn->rdonly)
        return -EROFS;
    struct st_record old;
    uint64_t revision = 0;
    uint8_t old_state = ST_STATE_NONE;
    int rc = st_record_get(txn, key, &old);
    if (rc == 0) {
        revision = old.revision + 1;
        old_state = old.state;
        if (old.next_check_ms > 0) {
            rc = st_schedule_remove(txn, key, old.next_check_ms);
            if (rc != 0 && rc != -ENOENT)
                return rc;
        }
    } else if (rc != -EBADMSG && rc != -ENOTSUP) {
        return rc;
    }
    if ((rc = raw_del(txn, ST_DB_PRODUCTS, key->b, ST_KEY_LEN)) != 0)
        return rc;
    if ((rc = del_history(txn, key)) != 0)
        return rc;
    return log_change(txn, key, revision, ST_EV_DELETE, old_state, ST_STATE_NONE, now_ms);
}

int st_history_list(struct st_txn *txn, const struct st_key *key, struct st_history *out,
                    size_t max, size_t *n)
{
    *n = 0;
    if (!txn->env->have[ST_DB_HISTORY])
        return 0;
    MDB_cursor *mc;
    int rc = mdb_cursor_open(txn->mt, txn->env->dbi[ST_DB_HISTORY], &mc);
    if (rc != 0)
        return st_mdb_err(txn, rc);
    MDB_val mk, mv;
    rc = history_newest(mc, key, &mk, &mv);
    while (rc == 0 && *n < max && mk.mv_size == ST_HIST_KEY_LEN &&
           memcmp(mk.mv_data, key->b, ST_KEY_LEN) == 0) {
        if (st_history_decode(mv.mv_data, mv.mv_size, &out[*n]) == 0)
            (*n)++;
        rc = mdb_cursor_get(mc, &mk, &mv, MDB_PREV);
    }
    mdb_cursor_close(mc);
    return rc == 0 || rc == MDB_NOTFOUND ? 0 : st_mdb_err(txn, rc);
}

int st_changes_read(struct st_txn *txn, uint64_t after, struct st_change *out, size_t max,
                    size_t *n)
{
    *n = 0;
    if (!txn->env->have[ST_DB_CHANGES])
        return 0;
    if (after == UINT64_MAX)
        return 0;
    MDB_cursor *mc;
    int rc = mdb_cursor_open(txn->mt, txn->env->dbi[ST_DB_CHANGES], &mc);
    if (rc != 0)
        return st_mdb_err(txn, rc);
    uint8_t k[8];
    be64_put(k, after + 1);
    MDB_val mk = {sizeof(k), k}, mv;
    rc = mdb_cursor_get(mc, &mk, &mv, MDB_SET_RANGE);
    while (rc == 0 && *n < max) {
        if (mk.mv_size == 8 && st_change_decode(mv.mv_data, mv.mv_size, &out[*n]) == 0)
            (*n)++;
        rc = mdb_cursor_get(mc, &mk, &mv, MDB_NEXT);
    }
    mdb_cursor_close(mc);
    return rc == 0 || rc == MDB_NOTFOUND ? 0 : st_mdb_err(txn, rc);
}

static int changes_edge(struct st_txn *txn, MDB_cursor_op op, uint64_t *seq)
{
    *seq = 0;
    if (!txn->env->have[ST_DB_CHANGES])
        return 0;
    MDB_cursor *mc;
    int rc = mdb_cursor_open(txn->mt, txn->env->dbi[ST_DB_CHANGES], &mc);
    if (rc != 0)
        return st_mdb_err(txn, rc);
    MDB_val mk, mv;
    rc = mdb_cursor_get(mc, &mk, &mv, op);
    if (rc == 0 && mk.mv_size == 8)
        *seq = be64_get(mk.mv_data);
    mdb_cursor_close(mc);
    return rc == 0 || rc == MDB_NOTFOUND ? 0 : st_mdb_err(txn, rc);
}

int st_changes_first(struct st_txn *txn, uint64_t *seq)
{
    return changes_edge(txn, MDB_FIRST, seq);
}

int st_changes_last(struct st_txn *txn, uint64_t *seq)
{
    return changes_edge(txn, MDB_LAST, seq);
}

/* Schema 1 -> 2: each deal record becomes a record in products (state deal, its figures as
 * they were, its sell inputs unknown until the first re-check reads them: rules_hash 0 keeps
 * it out of the re-judge until then); the schedule entries keep their keys; deals is emptied. */
static void record_from_v1(const struct st_deal *d, struct st_record *r)
{
    st_record_init(r);
    memcpy(r->asin, d->asin, sizeof(r->asin));
    r->domain = d->domain;
    memcpy(r->title, d->title, sizeof(r->title));
    struct jd_inputs *in = &r->in;
    in->buy_source = d->buy_price_cents > 0 ? JD_BUY_OFFER : JD_BUY_NONE;
    in->buy_condition = d->buy_condition;
    in->buy_price_cents = d->buy_price_cents > 0 ? d->buy_price_cents : -1;
    in->buy_shipping_cents = d->buy_shipping_cents;
    memcpy(in->buy_seller_id, d->buy_seller_id, sizeof(in->buy_seller_id));
    in->buy_is_fba = d->buy_is_fba;
    in->buy_seen_ms = d->last_checked_ms;
    in->sales_rank = d->sales_rank;
    in->drops30 = d->rank_drops_30;
    in->drops90 = d->rank_drops_90;
    in->drops180 = d->rank_drops_180;
    in->drops365 = d->rank_drops_365;
    in->offers_fba = d->offers_fba;
    in->offers_fbm = d->offers_fbm;
    in->new_buy_box_cents = d->buy_box_cents > 0 ? d->buy_box_cents : -1;
    in->referral_bp = d->referral_fee_bp > 0 ? d->referral_fee_bp : -1;
    in->fba_fee_cents = d->fba_fee_cents > 0 ? d->fba_fee_cents : -1;
    in->fees_known = true;
    struct jd_verdict *v = &r->v;
    v->deal = true;
    v->side = (uint8_t)(jd_side_of_condition(d->buy_condition) == JD_NEW ? JD_NEW : JD_USED);
    v->sell_cents = d->expected_sell_cents;
    v->referral_bp = d->referral_fee_bp;
    v->referral_cents = d->referral_fee_cents;
    v->fba_cents = d->fba_fee_cents;
    v->closing_cents = 0;
    v->fbm_shipping_cents = 0;
    v->payout_known = d->expected_sell_cents > 0;
    v->payout_cents = d->expected_sell_cents - d->referral_fee_cents - d->fba_fee_cents;
    v->buy_cents = d->buy_price_cents + (d->buy_shipping_cents > 0 ? d->buy_shipping_cents : 0);
    v->tax_cents = d->tax_cents;
    v->prep_cents = d->prep_cents;
    v->inbound_cents = d->inbound_cents;
    v->landed_cents = d->landed_buy_cents;
    v->priced = v->payout_known && d->landed_buy_cents > 0;
    v->profit_cents = d->profit_cents;
    v->roi_bp = d->roi_bp;
    v->margin_bp = d->margin_bp;
    r->state = ST_STATE_DEAL;
    r->rules_hash = 0;
    r->judged_ms = d->last_checked_ms;
    r->first_seen_ms = d->first_seen_ms;
    r->deal_since_ms = d->first_seen_ms;
    r->last_checked_ms = d->last_checked_ms;
    r->last_changed_ms = d->last_changed_ms;
    r->check_failures = d->check_failures;
    r->next_check_ms = d->next_check_ms;
    r->revision = d->revision + 1;
}

static int migrate_v1(struct st_txn *txn, struct st_env *env)
{
    MDB_cursor *mc;
    int rc = mdb_cursor_open(txn->mt, env->dbi[ST_DB_DEALS], &mc);
    if (rc != 0)
        return st_mdb_err(txn, rc);
    MDB_val mk, mv;
    size_t n = 0, bad = 0;
    while ((rc = mdb_cursor_get(mc, &mk, &mv, n + bad == 0 ? MDB_FIRST : MDB_NEXT)) == 0) {
        struct st_deal d;
        struct st_record r;
        struct st_key key;
        if (st_deal_decode(mv.mv_data, mv.mv_size, &d) != 0 || st_deal_key(&d, &key) != 0) {
            bad++;
            continue;
        }
        record_from_v1(&d, &r);
        uint8_t buf[ST_RECORD_MAX];
        size_t len = 0;
        if ((rc = st_record_encode(&r, buf, sizeof(buf), &len)) != 0 ||
            (rc = raw_put(txn, ST_DB_PRODUCTS, key.b, ST_KEY_LEN, buf, len)) != 0 ||
            (rc = add_history(txn, &key, &r, ST_EV_MIGRATE, r.last_checked_ms)) != 0 ||
            (rc = log_change(txn, &key, r.revision, ST_EV_MIGRATE, ST_STATE_NONE, r.state,
                             r.last_checked_ms)) != 0) {
            mdb_cursor_close(mc);
            return rc;
        }
        n++;
    }
    mdb_cursor_close(mc);
    if (rc != MDB_NOTFOUND)
        return st_mdb_err(txn, rc);
    if ((rc = mdb_drop(txn->mt, env->dbi[ST_DB_DEALS], 0)) != 0)
        return st_mdb_err(txn, rc);
    kd_info("store: %s: migrated %zu deal records to schema %d (%zu undecodable left out)",
            env->path, n, ST_SCHEMA_VERSION, bad);
    return 0;
}

/* ---- seen and pending ------------------------------------------------------------------ */

int st_seen_put(struct st_txn *txn, const struct st_key *key, const struct st_seen *s)
{
    uint8_t buf[ST_RECORD_MAX];
    size_t len = 0;
    int rc = st_seen_encode(s, buf, sizeof(buf), &len);
    return rc != 0 ? rc : raw_put(txn, ST_DB_SEEN, key->b, ST_KEY_LEN, buf, len);
}

int st_seen_get(struct st_txn *txn, const struct st_key *key, struct st_seen *out)
{
    MDB_val val;
    int rc = raw_get(txn, ST_DB_SEEN, key->b, ST_KEY_LEN, &val);
    return rc != 0 ? rc : st_seen_decode(val.mv_data, val.mv_size, out);
}

int st_pending_put(struct st_txn *txn, const struct st_pending *p)
{
    struct st_key key;
    uint8_t buf[ST_RECORD_MAX];
    size_t len = 0;
    if (st_pending_key(p, &key) != 0)
        return -EINVAL;
    int rc = st_pending_encode(p, buf, sizeof(buf), &len);
    return rc != 0 ? rc : raw_put(txn, ST_DB_PENDING, key.b, ST_KEY_LEN, buf, len);
}

int st_pending_get(struct st_txn *txn, const struct st_key *key, struct st_pending *out)
{
    MDB_val val;
    int rc = raw_get(txn, ST_DB_PENDING, key->b, ST_KEY_LEN, &val);
    return rc != 0 ? rc : st_pending_decode(val.mv_data, val.mv_size, out);
}

int st_pending_del(struct st_txn *txn, const struct st_key *key)
{
    return raw_del(txn, ST_DB_PENDING, key->b, ST_KEY_LEN);
}

/* ---- meta ------------------------------------------------------------------------------ */

static int meta_name_ok(const char *name)
{
    size_t n = name ? strnlen(name, ST_META_NAME_MAX + 1) : 0;
    return n >= 1 && n <= ST_META_NAME_MAX ? 0 : -EINVAL;
}

int st_meta_put_u64(struct st_txn *txn, const char *name, uint64_t v)
{
    uint8_t buf[16];
    size_t len = 0;
    if (meta_name_ok(name) != 0)
        return -EINVAL;
    st_u64_encode(v, buf, sizeof(buf), &len);
    return raw_put(txn, ST_DB_META, name, strlen(name), buf, len);
}

int st_meta_get_u64(struct st_txn *txn, const char *name, uint64_t *v)
{
    MDB_val val;
    if (meta_name_ok(name) != 0)
        return -EINVAL;
    int rc = raw_get(txn, ST_DB_META, name, strlen(name), &val);
    return rc != 0 ? rc : st_u64_decode(val.mv_data, val.mv_size, v);
}

int st_meta_put_bytes(struct st_txn *txn, const char *name, const void *p, size_t n)
{
    if (meta_name_ok(name) != 0 || n > 65536)
        return -EINVAL;
    size_t cap = n + 8, len = 0;
    uint8_t *buf = malloc(cap);
    if (buf == NULL)
        return -ENOMEM;
    int rc = st_bytes_encode(p, n, buf, cap, &len);
    if (rc == 0)
        rc = raw_put(txn, ST_DB_META, name, strlen(name), buf, len);
    free(buf);
    return rc;
}

int st_meta_get_bytes(struct st_txn *txn, const char *name, void *buf, size_t cap, size_t *n)
{
    MDB_val val;
    if (meta_name_ok(name) != 0)
        return -EINVAL;
    int rc = raw_get(txn, ST_DB_META, name, strlen(name), &val);
    if (rc != 0)
        return rc;
    const uint8_t *p = NULL;
    size_t len = 0;
    if ((rc = st_bytes_decode(val.mv_data, val.mv_size, &p, &len)) != 0)
        return rc;
    *n = len;
    if (len > cap)
        return -ENOBUFS;
    memcpy(buf, p, len);
    return 0;
}

int st_meta_put_learned(struct st_txn *txn, const char *name, const struct st_learned_field *f,
                        size_t nf)
{
    if (meta_name_ok(name) != 0)
        return -EINVAL;
    uint8_t *buf = malloc(ST_LEARNED_BYTES);
    if (buf == NULL)
        return -ENOMEM;
    size_t len = 0;
    int rc = st_learned_encode(f, nf, buf, ST_LEARNED_BYTES, &len);
    if (rc == 0)
        rc = raw_put(txn, ST_DB_META, name, strlen(name), buf, len);
    free(buf);
    return rc;
}

int st_meta_get_learned(struct st_txn *txn, const char *name, const struct st_learned_field *f,
                        size_t nf)
{
    MDB_val val;
    if (meta_name_ok(name) != 0)
        return -EINVAL;
    int rc = raw_get(txn, ST_DB_META, name, strlen(name), &val);
    if (rc != 0)
        return rc;
    return st_learned_decode(val.mv_data, val.mv_size, f, nf);
}

int st_learned_copy(struct st_txn *from, struct st_txn *to, size_t *n)
{
    static const char *const names[] = {ST_META_LEARNED_UPDATER, ST_META_LEARNED_COMMITTER,
                                        ST_META_LEARNED_SCANNER};
    size_t copied = 0;
    for (size_t i = 0; i < KD_ARRAY_LEN(names); i++) {
        MDB_val val;
        int rc = raw_get(from, ST_DB_META, names[i], strlen(names[i]), &val);
        if (rc == -ENOENT)
            continue;
        if (rc == 0)
            rc = raw_put(to, ST_DB_META, names[i], strlen(names[i]), val.mv_data, val.mv_size);
        if (rc != 0)
            return rc;
        copied++;
    }
    if (n != NULL)
        *n = copied;
    return 0;
}

int st_meta_del(struct st_txn *txn, const char *name)
{
    if (meta_name_ok(name) != 0)
        return -EINVAL;
    return raw_del(txn, ST_DB_META, name, strlen(name));
}

/* ---- cursors --------------------------------------------------------------------------- */

int st_cursor_open(struct st_txn *txn, enum st_db db, struct st_cursor **out)
{
    if ((unsigned)db >= ST_DB_COUNT)
        return -EINVAL;
    struct st_cursor *cur = calloc(1, sizeof(*cur));
    if (cur == NULL)
        return -ENOMEM;
    /* A db a read-only open did not find is empty: a cursor without an LMDB cursor. */
    int rc = txn->env->have[db] ? mdb_cursor_open(txn->mt, txn->env->dbi[db], &cur->mc) : 0;
    if (rc != 0) {
        free(cur);
        return st_mdb_err(txn, rc);
    }
    cur->txn = txn;
    cur->db = db;
    *out = cur;
    return 0;
}

static int cursor_step(struct st_cursor *cur, enum st_db want, MDB_val *key, MDB_val *val)
{
    if (cur->db != want)
        return -EINVAL;
    if (cur->mc == NULL)
        return -ENOENT;
    int rc = mdb_cursor_get(cur->mc, key, val, cur->started ? MDB_NEXT : MDB_FIRST);
    cur->started = true;
    return st_mdb_err(cur->txn, rc);
}

int st_cursor_next_deal(struct st_cursor *cur, struct st_deal *out)
{
    MDB_val key, val;
    int rc = cursor_step(cur, ST_DB_DEALS, &key, &val);
    return rc != 0 ? rc : st_deal_decode(val.mv_data, val.mv_size, out);
}

int st_cursor_next_record(struct st_cursor *cur, struct st_record *out)
{
    MDB_val key, val;
    int rc = cursor_step(cur, ST_DB_PRODUCTS, &key, &val);
    return rc != 0 ? rc : st_record_decode(val.mv_data, val.mv_size, out);
}

int st_cursor_seek_record(struct st_cursor *cur, const struct st_key *key, bool after,
                          struct st_record *out)
{
    if (cur->db != ST_DB_PRODUCTS)
        return -EINVAL;
    MDB_val k = {ST_KEY_LEN, (void *)key->b}, v;
    int rc = mdb_cursor_get(cur->mc, &k, &v, MDB_SET_RANGE);
    if (rc == 0 && after && k.mv_size == ST_KEY_LEN && memcmp(k.mv_data, key->b, ST_KEY_LEN) == 0)
        rc = mdb_cursor_get(cur->mc, &k, &v, MDB_NEXT);
    cur->started = true;
    rc = st_mdb_err(cur->txn, rc);
    return rc != 0 ? rc : st_record_decode(v.mv_data, v.mv_size, out);
}

int st_cursor_next_pending(struct st_cursor *cur, struct st_pending *out)
{
    MDB_val key, val;
    int rc = cursor_step(cur, ST_DB_PENDING, &key, &val);
    return rc != 0 ? rc : st_pending_decode(val.mv_data, val.mv_size, out);
}

int st_cursor_next_seen(struct st_cursor *cur, struct st_key *k, struct st_seen *out)
{
    MDB_val key, val;
    int rc = cursor_step(cur, ST_DB_SEEN, &key, &val);
    if (rc != 0)
        return rc;
    if (key.mv_size != ST_KEY_LEN)
        return -EBADMSG;
    memcpy(k->b, key.mv_data, ST_KEY_LEN);
    return st_seen_decode(val.mv_data, val.mv_size, out);
}

int st_cursor_next_raw(struct st_cursor *cur, const void *from, size_t from_len, const void **k,
                       size_t *klen, const void **v, size_t *vlen)
{
    if (!raw_db(cur->db))
        return -EINVAL;
    MDB_val key, val;
    int rc;
    if (!cur->started && from != NULL && from_len > 0) {
        key.mv_size = from_len;
        key.mv_data = (void *)from;
        rc = mdb_cursor_get(cur->mc, &key, &val, MDB_SET_RANGE);
    } else {
        rc = mdb_cursor_get(cur->mc, &key, &val, cur->started ? MDB_NEXT : MDB_FIRST);
    }
    cur->started = true;
    rc = st_mdb_err(cur->txn, rc);
    if (rc != 0)
        return rc;
    *k = key.mv_data;
    *klen = key.mv_size;
    *v = val.mv_data;
    *vlen = val.mv_size;
    return 0;
}

void st_cursor_close(struct st_cursor *cur)
{
    if (cur == NULL)
        return;
    if (cur->mc != NULL)
        mdb_cursor_close(cur->mc);
    free(cur);
}
