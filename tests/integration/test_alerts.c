/*
 * test_alerts.c: alerts from the real daemon against kdeals-sim to an HTTP receiver inside the
 * test (libmicrohttpd, a thread per connection, so a hanging answer holds only its own request).
 *
 *   once        the daemon commits and re-checks (deals enter and leave the view) while every
 *               process is killed -9 at random moments: the outbox, the pipeline's workers, the
 *               supervisor (then started again), the whole daemon at once. Short form 24 kills;
 *               KD_ALERT_KILLS=100 the long form. At the end, with the store quiet and every
 *               delivery settled, the receiver got exactly the entries the change log says
 *               (replayed with the quiet rule): none missing, none for a product outside the
 *               view, each delivery id of an entry at least once; a raw duplicate (the same id
 *               twice) only where a kill cut an attempt off between sending and recording its
 *               outcome. The counts are printed. A second alert whose view nothing passes gets
 *               nothing.
 *   retries     the receiver answers 500 to the first two attempts of every delivery and hangs
 *               past the timeout on the third: each is retried with the same id and a growing
 *               wait, then delivered; HMAC signatures verify; the API key is in no request.
 *   rate        burst 3, 30 a minute: no window of the receiver's log holds more deliveries
 *               than burst + rate x window.
 *   dead        a target that refuses (400): the deliveries become dead letters after one
 *               attempt, `kdeals alerts` counts them, `kdeals alerts retry` sends them again
 *               once the target accepts.
 *   command     a command target gets each deal as JSON on stdin with its delivery id in the
 *               environment; chat formats are valid JSON of their service's shape; `kdeals
 *               alerts test` delivers a test message.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <microhttpd.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <yajl/yajl_tree.h>

#include "base/clock.h"
#include "kd_harness.h"
#include "kd_test.h"
#include "outbox/alertdb.h"
#include "shm/counters.h"
#include "store/store.h"

#define KEY       "AlertsTestKey0123456789abcdef"
#define MINUTE_MS 100
#define QUIET_MS  1500

static const char *const sim_args[] = {"--keys",        KEY,   "--seed",      "13",
                                       "--products",    "400", "--minute-ms", "100",
                                       "--refill-rate", "200", NULL};

/* More products and tokens: deals enter and leave the view by the dozen. */
static const char *const busy_sim_args[] = {"--keys",        KEY,    "--seed",      "13",
                                            "--products",    "3000", "--minute-ms", "100",
                                            "--refill-rate", "600",  NULL};

#define BUSY "[scan]\npass_pause = 1s\n[update]\nmin_interval = 2m\nmax_interval = 4m\n"
/* Quiet: no pass, no re-check for a day. The value rules that end a pass pause while tokens
 * pile up (busy, fresh: docs/architecture.md, "Value per token") are off for it. */
#define QUIET                                                                                      \
    "[scan]\npass_pause = 1d\n[update]\nmin_interval = 1d\nmax_interval = 2d\n"                    \
    "[tokens]\nvalue_rules = none\n"

/* ---- the receiver ----------------------------------------------------------------------- */

struct request {
    char alert[32];
    char id[OB_DELIVERY_ID_MAX];
    int attempt;
    int64_t at_ms;
    int status; /* what the receiver answered; 0 when it hung */
    bool signature_ok;
    bool has_key; /* the API key appeared in it */
    char asin[16];
    char top[32]; /* the body's first key */
};

struct receiver {
    struct MHD_Daemon *mhd;
    int port;
    pthread_mutex_t lock;
    struct request *reqs;
    size_t n, cap;
    /* Behaviour: answer this status to attempts below fail_below, hang on attempt hang_on. */
    _Atomic int fail_below;
    _Atomic int fail_status;
    _Atomic int hang_on;
    _Atomic int hang_ms;
    _Atomic int delay_ms; /* every answer takes this long */
    _Atomic int refuse;   /* requests to /refuse get 400 while set */
    char secret[64];
};

struct upload {
    char *buf;
    size_t len;
};

static void record(struct receiver *rv, struct MHD_Connection *c, const struct upload *u,
                   int status)
{
    struct request q;
    memset(&q, 0, sizeof(q));
    const char *v;
    if ((v = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Kdeals-Alert")) != NULL)
        snprintf(q.alert, sizeof(q.alert), "%s", v);
    if ((v = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Kdeals-Delivery")) != NULL)
        snprintf(q.id, sizeof(q.id), "%s", v);
    if ((v = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Kdeals-Attempt")) != NULL)
        q.attempt = atoi(v);
    q.at_ms = kd_wall_ms();
    q.status = status;
    q.has_key = u->buf != NULL && strstr(u->buf, KEY) != NULL;
    const char *sig = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Kdeals-Signature");
    if (sig != NULL && rv->secret[0] != '\0' && strncmp(sig, "t=", 2) == 0) {
        const char *comma = strchr(sig, ',');
        if (comma != NULL && strncmp(comma, ",v1=", 4) == 0) {
            size_t tl = (size_t)(comma - sig - 2);
            char *msg = malloc(tl + 1 + u->len);
            memcpy(msg, sig + 2, tl);
            msg[tl] = '.';
            memcpy(msg + tl + 1, u->buf, u->len);
            unsigned char md[EVP_MAX_MD_SIZE];
            unsigned mdlen = 0;
            HMAC(EVP_sha256(), rv->secret, (int)strlen(rv->secret), (unsigned char *)msg,
                 tl + 1 + u->len, md, &mdlen);
            free(msg);
            char hex[2 * EVP_MAX_MD_SIZE + 1];
            for (unsigned i = 0; i < mdlen; i++)
                snprintf(hex + 2 * i, 3, "%02x", md[i]);
            q.signature_ok = strcmp(comma + 4, hex) == 0;
        }
    }
    char err[128];
    yajl_val doc = u->buf != NULL ? yajl_tree_parse(u->buf, err, sizeof(err)) : NULL;
    if (doc != NULL && YAJL_IS_OBJECT(doc) && YAJL_GET_OBJECT(doc)->len > 0) {
        snprintf(q.top, sizeof(q.top), "%s", YAJL_GET_OBJECT(doc)->keys[0]);
        const char *path[] = {"deal", "asin", NULL};
        yajl_val a = yajl_tree_get(doc, path, yajl_t_string);
        if (a != NULL)
            snprintf(q.asin, sizeof(q.asin), "%s", YAJL_GET_STRING(a));
    } else {
        snprintf(q.top, sizeof(q.top), "(not JSON)");
    }
    yajl_tree_free(doc);
    pthread_mutex_lock(&rv->lock);
    if (rv->n == rv->cap) {
        rv->cap = rv->cap ? 2 * rv->cap : 256;
        rv->reqs = realloc(rv->reqs, rv->cap * sizeof(*rv->reqs));
    }
    rv->reqs[rv->n++] = q;
    pthread_mutex_unlock(&rv->lock);
}

/*
 * Answers by path: /flaky fails the first attempts (fail_status below attempt fail_below) and
 * hangs on attempt hang_on; /refuse answers 400 while `refuse` is set; anything else 200.
 */
static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *data,
                                  size_t *size, void **con_cls)
{
    (void)method;
    (void)version;
    struct receiver *rv = cls;
    struct upload *u = *con_cls;
    if (u == NULL) {
        *con_cls = calloc(1, sizeof(*u));
        return MHD_YES;
    }
    if (*size > 0) {
        u->buf = realloc(u->buf, u->len + *size + 1);
        memcpy(u->buf + u->len, data, *size);
        u->len += *size;
        u->buf[u->len] = '\0';
        *size = 0;
        return MHD_YES;
    }
    const char *a = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Kdeals-Attempt");
    int attempt = a != NULL ? atoi(a) : 1;
    int status = MHD_HTTP_OK;
    if (atomic_load(&rv->delay_ms) > 0)
        kdh_nap_ms(atomic_load(&rv->delay_ms));
    bool flaky = strcmp(url, "/flaky") == 0;
    if (flaky && attempt == atomic_load(&rv->hang_on)) {
        record(rv, c, u, 0);
        kdh_nap_ms(atomic_load(&rv->hang_ms));
        status = MHD_HTTP_OK; /* too late: the sender gave up */
    } else {
        if (flaky && attempt < atomic_load(&rv->fail_below))
            status = atomic_load(&rv->fail_status);
        if (strcmp(url, "/refuse") == 0 && atomic_load(&rv->refuse))
            status = MHD_HTTP_BAD_REQUEST;
        record(rv, c, u, status);
    }
    struct MHD_Response *r = MHD_create_response_from_buffer(0, "", MHD_RESPMEM_PERSISTENT);
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    return ret;
}

static void on_done(void *cls, struct MHD_Connection *c, void **con_cls,
                    enum MHD_RequestTerminationCode code)
{
    (void)cls;
    (void)c;
    (void)code;
    struct upload *u = *con_cls;
    if (u != NULL) {
        free(u->buf);
        free(u);
    }
    *con_cls = NULL;
}

static void receiver_start(struct receiver *rv)
{
    memset(rv, 0, sizeof(*rv));
    pthread_mutex_init(&rv->lock, NULL);
    rv->mhd = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
                                   MHD_USE_ERROR_LOG,
                               0, NULL, NULL, on_request, rv, MHD_OPTION_NOTIFY_COMPLETED, on_done,
                               rv, MHD_OPTION_CONNECTION_TIMEOUT, 30u, MHD_OPTION_END);
    assert_non_null(rv->mhd);
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(rv->mhd, MHD_DAEMON_INFO_BIND_PORT);
    rv->port = info->port;
}

static void receiver_stop(struct receiver *rv)
{
    MHD_stop_daemon(rv->mhd);
    free(rv->reqs);
}

/* Requests of ALERT so far (copied), and how many. */
static size_t requests_of(struct receiver *rv, const char *alert, struct request **out)
{
    pthread_mutex_lock(&rv->lock);
    *out = malloc((rv->n + 1) * sizeof(**out));
    size_t n = 0;
    for (size_t i = 0; i < rv->n; i++)
        if (strcmp(rv->reqs[i].alert, alert) == 0)
            (*out)[n++] = rv->reqs[i];
    pthread_mutex_unlock(&rv->lock);
    return n;
}

/* ---- the daemon's side ------------------------------------------------------------------ */

static void config(struct kdh_daemon *d, const struct kdh_sim *sim, const char *mode,
                   const char *alerts)
{
    char extra[4096];
    snprintf(extra, sizeof(extra), "%s%s", mode, alerts);
    if (d->dir[0] == '\0')
        kdh_daemon_config(d, sim, KEY, MINUTE_MS, extra);
    else
        kdh_daemon_rewrite(d, sim, KEY, MINUTE_MS, extra);
}

static struct st_env *open_store(const struct kdh_daemon *d)
{
    struct st_options so = {.path = d->store, .map_size_bytes = 64u << 20};
    struct st_env *env;
    char err[512];
    if (st_open(&so, &env, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    return env;
}

/* An alert's position, its pending+sending deliveries, its dead ones, and the log's end. */
struct progress {
    uint64_t pos, last;
    bool have_pos;
    unsigned unsettled, dead, sent;
    char store_id[33];
};

static void progress_of(const struct kdh_daemon *d, const char *alert, struct progress *p)
{
    memset(p, 0, sizeof(*p));
    struct st_env *env = open_store(d);
    struct st_txn *txn;
    assert_int_equal(st_read_begin(env, &txn), 0);
    char name[64];
    p->have_pos = st_meta_get_u64(txn, ob_alert_meta(alert, "seq", name), &p->pos) == 0;
    if (st_meta_get_u64(txn, ST_META_CHANGES_SEQ, &p->last) != 0)
        p->last = 0;
    size_t n = 0;
    if (st_meta_get_bytes(txn, OB_META_STORE_ID, p->store_id, 32, &n) != 0 || n != 32)
        p->store_id[0] = '\0';
    struct st_cursor *cur;
    assert_int_equal(st_cursor_open(txn, ST_DB_ALERTS, &cur), 0);
    uint8_t from[OB_ALERT_KEY_LEN];
    memset(from, 0, sizeof(from));
    memcpy(from, alert, strlen(alert));
    const void *k, *v;
    size_t kl, vl;
    static struct ob_delivery dl;
    while (st_cursor_next_raw(cur, from, sizeof(from), &k, &kl, &v, &vl) == 0) {
        struct st_key key;
        uint32_t entry;
        if (!ob_alert_key_parse(alert, k, kl, &key, &entry))
            break;
        if (entry == 0 || ob_delivery_decode(v, vl, &dl) != 0)
            continue;
        p->unsettled += dl.status == OB_D_PENDING || dl.status == OB_D_SENDING;
        p->dead += dl.status == OB_D_DEAD;
        p->sent += dl.status == OB_D_SENT;
    }
    st_cursor_close(cur);
    st_read_end(txn);
    st_close(env);
}

/* Waits until ALERT has evaluated the whole (quiet) log and has nothing left to send. */
static void wait_settled(const struct kdh_daemon *d, const char *alert, int seconds)
{
    struct progress p;
    uint64_t last_seen = 0;
    int stable = 0;
    for (int i = 0; i < seconds * 10; i++) {
        progress_of(d, alert, &p);
        stable = p.last == last_seen ? stable + 1 : 0;
        last_seen = p.last;
        if (stable >= 15 && p.have_pos && p.pos == p.last && p.unsettled == 0)
            return;
        kdh_nap_ms(100);
    }
    fail_msg("alert %s did not settle: position %llu of %llu, %u unsettled (see %s)", alert,
             (unsigned long long)p.pos, (unsigned long long)p.last, p.unsettled, d->log);
}

/*
 * The entries the change log says ALERT (whose view is the deal state) must announce after its
 * start at FROM: each product's move into the deal state when it was never in, or left at least
 * QUIET_MS before. Returns their delivery ids (malloc'd array of N strings).
 */
static char (*expected_entries(const struct kdh_daemon *d, const char *alert, uint64_t from,
                               const char *store_id, size_t *n))[OB_DELIVERY_ID_MAX]
{
    struct st_env *env = open_store(d);
    struct st_txn *txn;
    assert_int_equal(st_read_begin(env, &txn), 0);
    uint64_t first = 0;
    assert_int_equal(st_changes_first(txn, &first), 0);
    assert_true(first <= 1); /* nothing trimmed in a run this short */
    struct member {
        struct st_key key;
        bool in;
        int64_t left_ms;
        bool ever;
    } *m = NULL;
    size_t nm = 0, cap = 0;
    char(*ids)[OB_DELIVERY_ID_MAX] = NULL;
    size_t nid = 0, capid = 0;
    static struct st_change batch[256];
    uint64_t after = 0;
    for (;;) {
        size_t got = 0;
        assert_int_equal(st_changes_read(txn, after, batch, 256, &got), 0);
        if (got == 0)
            break;
        for (size_t i = 0; i < got; i++) {
            const struct st_change *c = &batch[i];
            struct st_key key;
            assert_int_equal(st_key_make(c->domain, c->asin, &key), 0);
            size_t j = 0;
            while (j < nm && memcmp(&m[j].key, &key, sizeof(key)) != 0)
                j++;
            if (j == nm) {
                if (nm == cap)
                    m = realloc(m, (cap = cap ? 2 * cap : 256) * sizeof(*m));
                m[nm++] = (struct member){key, false, 0, false};
            }
            bool in = c->event != ST_EV_DELETE && c->state == ST_STATE_DEAL;
            if (in && !m[j].in) {
                bool entry = !m[j].ever || c->at_ms - m[j].left_ms >= QUIET_MS;
                m[j].ever = true;
                if (entry && c->seq > from) {
                    if (nid == capid)
                        ids = realloc(ids, (capid = capid ? 2 * capid : 256) * sizeof(*ids));
                    ob_delivery_id(store_id, alert, &key, c->seq, ids[nid++]);
                }
            } else if (!in && m[j].in) {
                m[j].left_ms = c->at_ms;
            }
            m[j].in = in;
        }
        after = batch[got - 1].seq;
    }
    st_read_end(txn);
    st_close(env);
    free(m);
    *n = nid;
    return ids;
}

static pid_t role_pid(const struct shm_segment *seg, int role)
{
    return (pid_t)atomic_load(&seg->layout->procs[role].pid);
}

static int alert_kills(void)
{
    const char *e = getenv("KD_ALERT_KILLS");
    int n = e != NULL ? atoi(e) : 0;
    return n >= 8 ? n : 24;
}

/* With KDH_KEEP=DIR, the daemon's folder (log, store) is copied there for a look afterwards. */
static void keep(const struct kdh_daemon *d)
{
    const char *to = getenv("KDH_KEEP");
    char cmd[1400];
    snprintf(cmd, sizeof(cmd), "cp -a '%s' '%s'", d->dir, to != NULL ? to : "");
    if (to != NULL && system(cmd) != 0)
        fprintf(stderr, "could not copy %s\n", d->dir);
}

static int id_cmp(const void *a, const void *b)
{
    return strcmp(a, b);
}

static void test_once_per_entry_under_kill_9(void **state)
{
    (void)state;
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    struct receiver rv;
    receiver_start(&rv);
    atomic_store(&rv.delay_ms, 150); /* so that kills land while a delivery is in flight */
    struct kdh_sim sim;
    kdh_sim_start(&sim, busy_sim_args);
    char alerts[1024];
    snprintf(alerts, sizeof(alerts),
             "[alert.all]\nurl = http://127.0.0.1:%d/hook\nquiet = %dms\nrate = 6000\n"
             "burst = 1000\ntimeout = 2s\nretry_max = 2s\nattempts = 1000\n"
             "[alert.none]\nurl = http://127.0.0.1:%d/none\nmin_roi = 100000\nrate = 6000\n"
             "burst = 1000\n",
             rv.port, QUIET_MS, rv.port);
    /* First with nothing to discover, so the alerts start (and baseline) on an empty store. */
    char asins[700];
    snprintf(asins, sizeof(asins), "%s/empty.txt", kd_test_tmpdir());
    FILE *f = fopen(asins, "w");
    fclose(f);
    char idle[900];
    snprintf(idle, sizeof(idle), "[scan]\nsource = asins\nasins_file = %s\n", asins);
    struct kdh_daemon d;
    memset(&d, 0, sizeof(d));
    config(&d, &sim, idle, alerts);
    kdh_daemon_start(&d);
    struct progress p;
    if (!KDH_WAIT_FOR((progress_of(&d, "all", &p), p.have_pos), 20))
        fail_msg("the alert did not start (see %s)", d.log);
    assert_int_equal(kdh_daemon_stop(&d), 0);
    uint64_t start_pos = p.pos;

    config(&d, &sim, BUSY, alerts);
    kdh_daemon_start(&d);
    struct shm_segment seg;
    kdh_daemon_attach(&d, &seg);
    uint64_t rng = 0x2545f4914f6cdd1dULL ^ (uint64_t)getpid();
    int kills = alert_kills(), done = 0, outbox_kills = 0, sup_kills = 0, crashes = 0;
    int per_role[SHM_ROLE_COUNT] = {0};
    while (done < kills) {
        rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
        kdh_nap_ms(100 + (long)(rng % 500));
        unsigned pick = (unsigned)(rng >> 33) % 8;
        int role = pick < 4   ? SHM_ROLE_OUTBOX
                   : pick < 6 ? SHM_ROLE_SCANNER + (int)((rng >> 40) % 3)
                              : SHM_ROLE_SUPERVISOR;
        /* The restart-intensity limit (5 restarts of a role in 60 s) stops a daemon; a new
         * supervisor resets it. */
        if (role != SHM_ROLE_SUPERVISOR && per_role[role] >= 3)
            role = SHM_ROLE_SUPERVISOR;
        if (role == SHM_ROLE_SUPERVISOR) {
            bool all = (rng >> 20) & 1;
            pid_t pids[SHM_ROLE_COUNT] = {0};
            for (int r = 1; r < SHM_ROLE_COUNT; r++)
                pids[r] = role_pid(&seg, r);
            kill(d.pid, SIGKILL);
            if (all)
                for (int r = 1; r < SHM_ROLE_COUNT; r++)
                    if (pids[r] > 0)
                        kill(pids[r], SIGKILL);
            waitpid(d.pid, NULL, 0);
            d.pid = 0;
            shm_segment_detach(&seg);
            for (int r = 1; r < SHM_ROLE_COUNT; r++)
                if (pids[r] > 0 &&
                    !KDH_WAIT_FOR(
                        waitpid(pids[r], NULL, WNOHANG) == pids[r] || kill(pids[r], 0) != 0, 20))
                    fail_msg("%s pid %d outlived its supervisor", shm_role_name(r), pids[r]);
            kdh_daemon_start(&d);
            kdh_daemon_attach(&d, &seg);
            memset(per_role, 0, sizeof(per_role));
            all ? crashes++ : sup_kills++;
            done += all ? 1 + 4 : 1;
            continue;
        }
        pid_t pid = role_pid(&seg, role);
        if (pid <= 0 && !KDH_WAIT_FOR((pid = role_pid(&seg, role)) > 0, 30))
            fail_msg("no %s to kill (see %s)", shm_role_name(role), d.log);
        kill(pid, SIGKILL);
        per_role[role]++;
        outbox_kills += role == SHM_ROLE_OUTBOX;
        done++;
        if (!KDH_WAIT_FOR(role_pid(&seg, role) != pid && role_pid(&seg, role) > 0, 40))
            fail_msg("%s was not restarted after kill -9 (see %s)", shm_role_name(role), d.log);
    }
    /* Quiet, settled. */
    config(&d, &sim, QUIET, alerts);
    static const char *const reload[] = {"reload", NULL};
    assert_int_equal(kdh_cli(&d, reload, 30, NULL), 0);
    wait_settled(&d, "all", 180);
    wait_settled(&d, "none", 60);
    progress_of(&d, "all", &p);
    assert_int_equal(p.dead, 0);
    shm_segment_detach(&seg);
    int stopped = kdh_daemon_stop(&d);
    keep(&d);
    assert_int_equal(stopped, 0);

    size_t n_expected;
    char(*expected)[OB_DELIVERY_ID_MAX] =
        expected_entries(&d, "all", start_pos, p.store_id, &n_expected);
    struct request *got;
    size_t n_got = requests_of(&rv, "all", &got);
    /* Delivered ids (answered 200), sorted; raw duplicates are repeats of one id. */
    char(*ids)[OB_DELIVERY_ID_MAX] = malloc((n_got + 1) * sizeof(*ids));
    size_t n_ids = 0;
    for (size_t i = 0; i < n_got; i++) {
        assert_false(got[i].has_key);
        if (got[i].status == 200)
            memcpy(ids[n_ids++], got[i].id, OB_DELIVERY_ID_MAX);
    }
    qsort(ids, n_ids, sizeof(*ids), id_cmp);
    qsort(expected, n_expected, sizeof(*expected), id_cmp);
    size_t distinct = 0, raw_dups = 0;
    for (size_t i = 0; i < n_ids; i++) {
        if (i > 0 && strcmp(ids[i], ids[i - 1]) == 0)
            raw_dups++;
        else
            distinct++;
    }
    size_t lost = 0, unexpected = 0;
    for (size_t i = 0; i < n_expected; i++)
        if (bsearch(expected[i], ids, n_ids, sizeof(*ids), id_cmp) == NULL) {
            lost++;
            fprintf(stderr, "    entry %s was not delivered\n", expected[i]);
        }
    for (size_t i = 0; i < n_ids; i++)
        if ((i == 0 || strcmp(ids[i], ids[i - 1]) != 0) &&
            bsearch(ids[i], expected, n_expected, sizeof(*expected), id_cmp) == NULL) {
            unexpected++;
            fprintf(stderr, "    %s was delivered but is no entry of the log\n", ids[i]);
        }
    struct request *none;
    size_t n_none = requests_of(&rv, "none", &none);
    printf("    %d kills -9 (%d of the outbox, %d of a pipeline worker, %d of the supervisor, %d "
           "of the whole daemon)\n",
           done, outbox_kills, done - outbox_kills - sup_kills - 5 * crashes, sup_kills, crashes);
    printf("    %zu entries in the log; receiver: %zu requests, %zu answered 200, %zu distinct "
           "delivery ids\n",
           n_expected, n_got, n_ids, distinct);
    printf("    lost %zu, delivered outside the view %zu; raw duplicates %zu (the same delivery id "
           "again), by delivery id 0; alert 'none': %zu requests\n",
           lost, unexpected, raw_dups, n_none);
    assert_true(n_expected >= 10);
    assert_int_equal(lost, 0);
    assert_int_equal(unexpected, 0);
    assert_int_equal(distinct, n_expected);
    assert_int_equal(n_none, 0);
    /* A raw duplicate needs an attempt cut off between sending and recording its outcome: at
     * most one per kill -9 of the outbox (a supervisor's death stops it gracefully, after the
     * attempt in flight). */
    assert_true(raw_dups <= (size_t)(outbox_kills + crashes));
    free(none);
    free(ids);
    free(got);
    free(expected);
    kdh_sim_stop(&sim);
    receiver_stop(&rv);
}

/* How many distinct delivery ids of ALERT were answered 200. */
static size_t delivered(struct receiver *rv, const char *alert)
{
    struct request *r;
    size_t n = requests_of(rv, alert, &r), k = 0;
    for (size_t i = 0; i < n; i++) {
        if (r[i].status != 200)
            continue;
        bool seen = false;
        for (size_t j = 0; j < i && !seen; j++)
            seen = r[j].status == 200 && strcmp(r[j].id, r[i].id) == 0;
        k += !seen;
    }
    free(r);
    return k;
}

static void write_secret(const char *path, const char *secret, mode_t mode)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "%s\n", secret);
    fclose(f);
    chmod(path, mode);
}

static void test_retries_backoff_rate_limit_and_dead_letters(void **state)
{
    (void)state;
    struct receiver rv;
    receiver_start(&rv);
    atomic_store(&rv.fail_below, 3);
    atomic_store(&rv.fail_status, 500);
    atomic_store(&rv.hang_on, 3);
    atomic_store(&rv.hang_ms, 2500);
    atomic_store(&rv.refuse, 1);
    snprintf(rv.secret, sizeof(rv.secret), "hmac-secret-of-the-test-0123");
    struct kdh_sim sim;
    kdh_sim_start(&sim, sim_args);
    char secret[600], alerts[2048];
    snprintf(secret, sizeof(secret), "%s/hook.secret", kd_test_tmpdir());
    write_secret(secret, rv.secret, 0600);
    snprintf(alerts, sizeof(alerts),
             "[alert.flaky]\nurl = http://127.0.0.1:%d/flaky\nsecret_file = %s\ntimeout = 1s\n"
             "retry_max = 4s\nrate = 6000\nburst = 1000\n"
             "[alert.slow]\nurl = http://127.0.0.1:%d/slow\nrate = 30\nburst = 3\n"
             "[alert.refuse]\nurl = http://127.0.0.1:%d/refuse\nrate = 6000\nburst = 1000\n",
             rv.port, secret, rv.port, rv.port);
    struct kdh_daemon d;
    memset(&d, 0, sizeof(d));
    config(&d, &sim, BUSY, alerts);
    kdh_daemon_start(&d);
    struct shm_segment seg;
    kdh_daemon_attach(&d, &seg);
    if (!KDH_WAIT_FOR(delivered(&rv, "flaky") >= 4 && delivered(&rv, "slow") >= 9 &&
                          shm_counter_total(seg.layout, SHM_C_alerts_dead) >= 2,
                      120))
        fail_msg("not enough deliveries: flaky %zu, slow %zu, dead %lld (see %s)",
                 delivered(&rv, "flaky"), delivered(&rv, "slow"),
                 (long long)shm_counter_total(seg.layout, SHM_C_alerts_dead), d.log);

    /* Retries: attempts 1 and 2 answered 500, 3 hung past the timeout, 4 delivered; the same
     * id each time, the waits growing; every request signed; the API key in none. */
    struct request *r;
    size_t n = requests_of(&rv, "flaky", &r), checked = 0;
    for (size_t i = 0; i < n; i++) {
        assert_true(r[i].signature_ok);
        assert_false(r[i].has_key);
        if (r[i].attempt != 4 || r[i].status != 200)
            continue;
        int64_t at[5] = {0};
        for (size_t j = 0; j < n; j++)
            if (strcmp(r[j].id, r[i].id) == 0 && r[j].attempt >= 1 && r[j].attempt <= 4)
                at[r[j].attempt] = r[j].at_ms;
        assert_true(at[1] > 0 && at[2] > 0 && at[3] > 0);
        if (checked++ == 0)
            printf("    a delivery to /flaky: 500 at +0 ms, 500 at +%lld, hung at +%lld, 200 at "
                   "+%lld\n",
                   (long long)(at[2] - at[1]), (long long)(at[3] - at[1]),
                   (long long)(at[4] - at[1]));
        assert_true(at[2] - at[1] >= 1500); /* 2 s, -20 % */
        assert_true(at[3] - at[2] >= 3000); /* 4 s, -20 % */
        assert_true(at[4] - at[3] >= 3000); /* retry_max, after the 1 s timeout */
    }
    assert_true(checked >= 4);
    free(r);

    /* The rate limit: burst 3, then 30 a minute. */
    n = requests_of(&rv, "slow", &r);
    size_t worst_over = 0;
    for (size_t i = 0; i < n; i++) {
        for (size_t j = i; j < n; j++) {
            double window_min = (double)(r[j].at_ms - r[i].at_ms) / 60000.0;
            double allowed = 3 + 30 * window_min + 1; /* +1: the clocks' granularity */
            size_t count = j - i + 1;
            if ((double)count > allowed && count - (size_t)allowed > worst_over)
                worst_over = count - (size_t)allowed;
        }
    }
    printf("    rate 30/min burst 3: %zu deliveries over %.1f s, none above the limit by %zu\n", n,
           n > 1 ? (double)(r[n - 1].at_ms - r[0].at_ms) / 1000.0 : 0.0, worst_over);
    assert_int_equal(worst_over, 0);
    free(r);

    /* Dead letters: refused once each, listed, sent again on request once accepted. */
    char *out = NULL;
    static const char *const list[] = {"alerts", "refuse", NULL};
    assert_int_equal(kdh_cli(&d, list, 30, &out), 0);
    assert_non_null(strstr(out, "dead"));
    free(out);
    n = requests_of(&rv, "refuse", &r);
    size_t refused = n;
    for (size_t i = 0; i < n; i++)
        assert_int_equal(r[i].attempt, 1); /* a 400 is not retried */
    free(r);
    atomic_store(&rv.refuse, 0);
    static const char *const retry[] = {"alerts", "retry", "refuse", NULL};
    assert_int_equal(kdh_cli(&d, retry, 30, &out), 0);
    assert_non_null(strstr(out, "to be sent again"));
    free(out);
    if (!KDH_WAIT_FOR(delivered(&rv, "refuse") >= refused, 60))
        fail_msg("the dead letters were not sent again (see %s)", d.log);
    printf("    %zu refused deliveries became dead letters, then were delivered after kdeals "
           "alerts retry\n",
           refused);
    shm_segment_detach(&seg);
    assert_int_equal(kdh_daemon_stop(&d), 0);
    kdh_sim_stop(&sim);
    receiver_stop(&rv);
}

static void test_command_target_formats_and_test_message(void **state)
{
    (void)state;
    struct receiver rv;
    receiver_start(&rv);
    struct kdh_sim sim;
    kdh_sim_start(&sim, sim_args);
    char outdir[600], alerts[2048];
    snprintf(outdir, sizeof(outdir), "%s/cmd-out", kd_test_tmpdir());
    mkdir(outdir, 0700);
    snprintf(alerts, sizeof(alerts),
             "[alert.cmd]\ncommand = cat > %s/\"$KDEALS_DELIVERY_ID\".json\n"
             "[alert.slack]\nurl = http://127.0.0.1:%d/slack\nformat = slack\n"
             "[alert.discord]\nurl = http://127.0.0.1:%d/discord\nformat = discord\n"
             "[alert.teams]\nurl = http://127.0.0.1:%d/teams\nformat = teams\n",
             outdir, rv.port, rv.port, rv.port);
    struct kdh_daemon d;
    memset(&d, 0, sizeof(d));
    config(&d, &sim, BUSY, alerts);
    kdh_daemon_start(&d);
    if (!KDH_WAIT_FOR(delivered(&rv, "slack") >= 2 && delivered(&rv, "discord") >= 2 &&
                          delivered(&rv, "teams") >= 2,
                      90))
        fail_msg("no chat deliveries (see %s)", d.log);
    struct {
        const char *alert, *top;
    } shapes[] = {{"slack", "text"}, {"discord", "content"}, {"teams", "@type"}};
    for (size_t k = 0; k < 3; k++) {
        struct request *r;
        size_t n = requests_of(&rv, shapes[k].alert, &r);
        for (size_t i = 0; i < n; i++)
            assert_string_equal(r[i].top, shapes[k].top);
        free(r);
    }
    /* The command got each deal as JSON on stdin, its delivery id in the environment. */
    struct progress p;
    if (!KDH_WAIT_FOR((progress_of(&d, "cmd", &p), p.sent >= 2), 60))
        fail_msg("the command target got nothing (see %s)", d.log);
    char cmd[1600];
    snprintf(cmd, sizeof(cmd), "ls %s | grep -c '^kd-.*-cmd-.*\\.json$'", outdir);
    FILE *ls = popen(cmd, "r");
    int files = 0;
    assert_int_equal(fscanf(ls, "%d", &files), 1);
    pclose(ls);
    assert_true(files >= 2);
    snprintf(cmd, sizeof(cmd),
             "for f in %s/*.json; do /usr/bin/python3 -c 'import json,sys; "
             "d=json.load(open(sys.argv[1])); assert d[\"type\"]==\"deal.entered_view\" and "
             "d[\"deal\"][\"asin\"] and d[\"delivery_id\"] in sys.argv[1]' \"$f\" || exit 1; done",
             outdir);
    assert_int_equal(system(cmd), 0);
    printf("    command target: %d deals as JSON files; slack, discord and teams bodies of their "
           "shape\n",
           files);

    /* kdeals alerts test: one message now, with a test- delivery id. */
    static const char *const test[] = {"alerts", "test", "slack", NULL};
    char *out = NULL;
    assert_int_equal(kdh_cli(&d, test, 30, &out), 0);
    assert_non_null(strstr(out, "delivered"));
    free(out);
    struct request *r;
    size_t n = requests_of(&rv, "slack", &r);
    bool found = false;
    for (size_t i = 0; i < n; i++)
        found |= strncmp(r[i].id, "test-", 5) == 0;
    assert_true(found);
    free(r);
    assert_int_equal(kdh_daemon_stop(&d), 0);

    /* A secret others may read is refused at load, as is an alert without a target. */
    char secret[600], extra[1200];
    snprintf(secret, sizeof(secret), "%s/open.secret", kd_test_tmpdir());
    write_secret(secret, "whatever-secret", 0644);
    snprintf(extra, sizeof(extra), "[alert.x]\nurl = http://127.0.0.1:1/\nsecret_file = %s\n",
             secret);
    config(&d, &sim, "", extra);
    static const char *const check[] = {"check-config", NULL};
    assert_int_equal(kdh_cli(&d, check, 30, &out), 2);
    assert_non_null(strstr(out, "chmod 600"));
    free(out);
    config(&d, &sim, "", "[alert.x]\nmin_roi = 30\n");
    assert_int_equal(kdh_cli(&d, check, 30, &out), 2);
    assert_non_null(strstr(out, "needs one target"));
    free(out);
    kdh_sim_stop(&sim);
    receiver_stop(&rv);
}

int main(int argc, char **argv)
{
    kd_test_set_timeout(600);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_once_per_entry_under_kill_9),
        cmocka_unit_test(test_retries_backoff_rate_limit_and_dead_letters),
        cmocka_unit_test(test_command_target_formats_and_test_message),
    };
    return KD_RUN_TESTS(tests, argc, argv);
}
