/*
 * ctl.c: start, stop, reload and status. See ctl.h.
 *
 * start daemonises the way pg_ctl does: the parent forks a child that starts a new session,
 * points its stdio at the log file and becomes the supervisor; with --wait the parent watches
 * the status file until the supervisor says every worker is ready, or the child dies (then it
 * prints the end of the log, where the supervisor said why).
 *
 * stop and reload signal a process only once it is proven to be this instance's supervisor
 * (find_supervisor): the status file, read from the checked run folder and locked by a live
 * process, names its pid and start time (the segment's header does too, when the status file
 * was truncated); the process is pinned with a pidfd and its start time in /proc/PID/stat must
 * match, so a pid that was reused, a zombie or a number someone wrote in a file is never
 * signalled. The signal goes through the pidfd (pidfd_send_signal).
 */
#include "cli/ctl.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/pidfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/log.h"
#include "cli/deals.h"
#include "judge/judge.h"
#include "cli/json.h"
#include "shm/report.h"
#include "shm/segment.h"
#include "shm/tokens.h"
#include "store/store.h"

static void nap_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void tail_file(const char *path, FILE *out, int lines)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return;
    char *ring[32] = {0};
    char buf[1024];
    int n = 0;
    while (fgets(buf, sizeof(buf), f) != NULL) {
        free(ring[n % 32]);
        ring[n % 32] = strdup(buf);
        n++;
    }
    fclose(f);
    int first = n > lines ? n - lines : 0;
    for (int i = first; i < n; i++)
        fputs(ring[i % 32] ? ring[i % 32] : "", out);
    for (int i = 0; i < 32; i++)
        free(ring[i]);
}

int cli_start(struct sup_options *opt, int wait, int timeout_s)
{
    struct shm_status st;
    if (shm_status_read(opt->run_dir, opt->instance, &st) == 0 && st.locked) {
        fprintf(stderr, "kdeals start: instance '%s' is already running (pid %" PRId64 ")\n",
                opt->instance, st.pid);
        return 1;
    }
    char log_default[PATH_MAX];
    if (opt->log_file == NULL) {
        snprintf(log_default, sizeof(log_default), "%s/%s.log", opt->run_dir, opt->instance);
        opt->log_file = log_default;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "kdeals start: fork: %s\n", strerror(errno));
        return 1;
    }
    if (pid == 0) {
        setsid();
        int devnull = open("/dev/null", O_RDWR);
        int log = kd_log_file_open(opt->log_file);
        if (log < 0) {
            fprintf(stderr, "kdeals start: cannot open log file %s: %s\n", opt->log_file,
                    log == -EPERM ? "not a regular file of yours (a link, a device, another owner)"
                                  : strerror(-log));
            _exit(1);
        }
        if (devnull >= 0) {
            dup2(devnull, 0);
            dup2(devnull, 1);
        }
        dup2(log, 2);
        /* Nothing else of the shell that ran `kdeals start` stays open in the daemon. */
        close_range(3, ~0u, 0);
        /* Every path is absolute already (cli/main.c), so the daemon holds no folder. */
        if (chdir("/") != 0)
            _exit(1);
        _exit(sup_run(opt));
    }
    if (!wait) {
        printf("kdeals: starting instance '%s' (pid %d), log %s\n", opt->instance, (int)pid,
               opt->log_file);
        return 0;
    }
    for (int i = 0; i < timeout_s * 20; i++) {
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            fprintf(stderr,
                    "kdeals start: the daemon exited during start-up (%s %d); the end "
                    "of %s says why:\n",
                    WIFEXITED(status) ? "status" : "signal",
                    WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status), opt->log_file);
            tail_file(opt->log_file, stderr, 8);
            /* A config error stays a config error (2); anything else is a failure (1). */
            return WIFEXITED(status) && WEXITSTATUS(status) == 2 ? 2 : 1;
        }
        if (shm_status_read(opt->run_dir, opt->instance, &st) == 0 && st.pid == pid && st.locked &&
            strcmp(st.state, "running") == 0) {
            printf("kdeals: instance '%s' running (pid %d), log %s\n", opt->instance, (int)pid,
                   opt->log_file);
            return 0;
        }
        nap_ms(50);
    }
    fprintf(stderr, "kdeals start: the workers were not all ready within %d s; see %s\n", timeout_s,
            opt->log_file);
    return 1;
}

/* The supervisor of a running instance, proven (see the file comment). */
struct supervisor {
    pid_t pid;
    int pidfd;
};

/*
 * Says why the status file of INSTANCE could not be read (RC from shm_status_read), so that
 * a folder the caller may not read is not reported as "not running".
 */
static void status_unreadable(const char *cmd, const char *instance, const char *run_dir, int rc)
{
    char why[600] = "";
    if (rc == -EPERM) {
        int fd = shm_run_dir_open(run_dir, false, why, sizeof(why));
        if (fd >= 0) {
            close(fd);
            snprintf(why, sizeof(why),
                     "%s/%s.status is not a regular file of yours (a link, another owner): "
                     "remove it",
                     run_dir, instance);
        }
    } else {
        snprintf(why, sizeof(why), "cannot read %s/%s.status: %s", run_dir, instance,
                 strerror(-rc));
    }
    fprintf(stderr, "kdeals %s: instance '%s': %s%s\n", cmd, instance, why,
            rc == -EACCES ? " (run kdeals as the user the daemon runs as)" : "");
}

/*
 * Finds the live supervisor of INSTANCE and proves it is one: returns 0 with SV (its pidfd
 * open), or 1 after saying why on stderr (not running, or not provably its supervisor).
 */
static int find_supervisor(const char *cmd, const char *instance, const char *run_dir,
                           struct supervisor *sv)
{
    struct shm_status st;
    int rc = shm_status_read(run_dir, instance, &st);
    if (rc != 0 && rc != -ENOENT) {
        status_unreadable(cmd, instance, run_dir, rc);
        return 1;
    }
    if (rc == -ENOENT || !st.locked) {
        fprintf(stderr, "kdeals %s: instance '%s' is not running (status file %s/%s.status%s)\n",
                cmd, instance, run_dir, instance, rc == -ENOENT ? " absent" : "");
        return 1;
    }
    /* The segment's header says the same, or says it alone when the status file was
     * truncated under the daemon. */
    struct shm_segment seg;
    char err[512];
    int64_t pid = st.pid;
    uint64_t ticks = st.start_ticks;
    if (shm_segment_attach(&seg, instance, SHM_READ_ONLY, err, sizeof(err)) == 0) {
        const struct shm_header *h = &seg.layout->header;
        if (pid <= 0 || (pid == h->supervisor_pid && ticks == 0)) {
            pid = h->supervisor_pid;
            ticks = h->supervisor_start_ticks;
        } else if (pid != h->supervisor_pid || ticks != h->supervisor_start_ticks) {
            fprintf(stderr,
                    "kdeals %s: instance '%s': the status file names pid %lld but the shared "
                    "memory names pid %lld: not signalling either\n",
                    cmd, instance, (long long)pid, (long long)h->supervisor_pid);
            shm_segment_detach(&seg);
            return 1;
        }
        shm_segment_detach(&seg);
    }
    /* Both lost at once (the supervisor writes its status file again within a second). */
    for (int tries = 0; (pid <= 0 || ticks == 0) && tries < 50; tries++) {
        nap_ms(50);
        if (shm_status_read(run_dir, instance, &st) == 0 && st.locked && st.pid > 0) {
            pid = st.pid;
            ticks = st.start_ticks;
        }
    }
    if (pid <= 0 || ticks == 0) {
        fprintf(stderr,
                "kdeals %s: instance '%s' is locked by a live process, but neither its status "
                "file nor its shared memory names it: not signalling anything\n",
                cmd, instance);
        return 1;
    }
    sv->pidfd = pidfd_open((pid_t)pid, 0);
    if (sv->pidfd < 0 || !shm_proc_alive(pid, ticks)) {
        int e = errno;
        fprintf(stderr, "kdeals %s: instance '%s': pid %lld is not its supervisor%s%s\n", cmd,
                instance, (long long)pid, sv->pidfd < 0 ? ": " : " (another process has it)",
                sv->pidfd < 0 ? strerror(e) : "");
        if (sv->pidfd >= 0)
            close(sv->pidfd);
        return 1;
    }
    sv->pid = (pid_t)pid;
    return 0;
}

static int signal_supervisor(const char *cmd, const struct supervisor *sv, int sig)
{
    if (pidfd_send_signal(sv->pidfd, sig, NULL, 0) != 0) {
        fprintf(stderr, "kdeals %s: cannot signal supervisor pid %d: %s\n", cmd, (int)sv->pid,
                strerror(errno));
        return -1;
    }
    return 0;
}

int cli_stop(const struct cfg *c, const char *instance, const char *run_dir, int fast)
{
    struct supervisor sv;
    if (find_supervisor("stop", instance, run_dir, &sv) != 0)
        return 1;
    int code = 1;
    if (signal_supervisor("stop", &sv, fast ? SIGQUIT : SIGTERM) != 0)
        goto out;
    /* The supervisor enforces the stop deadline itself; allow it that and a margin. The pidfd
     * turns readable when the process exits, reaped or not. */
    int64_t limit_ms = (fast ? 5000 : c->daemon_stop_timeout_ms) + 10000;
    for (int64_t waited = 0; waited < limit_ms; waited += 50) {
        struct pollfd p = {.fd = sv.pidfd, .events = POLLIN};
        struct shm_status st;
        if (poll(&p, 1, 50) == 1 || shm_status_read(run_dir, instance, &st) != 0 || !st.locked) {
            printf("kdeals: instance '%s' stopped\n", instance);
            code = 0;
            goto out;
        }
    }
    fprintf(stderr, "kdeals stop: pid %d is still running after %" PRId64 " ms\n", (int)sv.pid,
            limit_ms);
out:
    close(sv.pidfd);
    return code;
}

/*
 * After an applied reload: waits (at most 60 s) for the updater to take the new config and,
 * when the judgement's rules changed, to judge every stored record again (no tokens), then
 * prints what moved: "412 deals -> 97: 0 added, 315 no longer pass: roi 301, profit 14".
 */
static void print_rejudge(const struct shm_config_slot *slot)
{
    uint64_t gen = atomic_load_explicit(&slot->generation, memory_order_acquire);
    for (int i = 0; i < 1200; i++) {
        uint64_t g = atomic_load_explicit(&slot->rejudge_generation, memory_order_acquire);
        uint32_t state = atomic_load_explicit(&slot->rejudge_state, memory_order_acquire);
        if (g >= gen && state != 1) {
            if (g != gen || state != 2)
                return; /* the judgement did not change: nothing was judged again */
            char why[256] = "";
            size_t off = 0;
            for (unsigned k = 0; k < JD_C_COUNT && k < SHM_REJUDGE_REASONS; k++) {
                int64_t n =
                    atomic_load_explicit(&slot->rejudge_removed_by[k], memory_order_relaxed);
                if (n > 0 && off < sizeof(why)) {
                    int w = snprintf(why + off, sizeof(why) - off, "%s%s %lld", off ? ", " : "",
                                     jd_crit_name(k), (long long)n);
                    off += w > 0 ? (size_t)w : 0;
                }
            }
            printf("kdeals reload: judged %lld records again (no tokens): %lld deals -> %lld: "
                   "%lld added, %lld no longer pass%s%s\n",
                   (long long)atomic_load(&slot->rejudge_records),
                   (long long)atomic_load(&slot->rejudge_deals_before),
                   (long long)atomic_load(&slot->rejudge_deals_after),
                   (long long)atomic_load(&slot->rejudge_added),
                   (long long)atomic_load(&slot->rejudge_removed), off ? ": " : "", why);
            return;
        }
        nap_ms(50);
    }
    printf("kdeals reload: the re-judge of the stored records is still running; the log says "
           "when it ends\n");
}

int cli_reload(const struct cfg *c, const char *instance, const char *run_dir)
{
    (void)c;
    struct supervisor sv;
    if (find_supervisor("reload", instance, run_dir, &sv) != 0)
        return 1;
    struct shm_segment seg;
    char err[512];
    if (shm_segment_attach(&seg, instance, SHM_READ_WRITE, err, sizeof(err)) != 0) {
        fprintf(stderr, "kdeals reload: instance '%s' runs (supervisor pid %d) but %s%s\n",
                instance, (int)sv.pid, err,
                strstr(err, "not running") != NULL
                    ? ": its shared memory was removed, so it cannot be reloaded; restart it"
                    : "");
        close(sv.pidfd);
        return 1;
    }
    int code = 1;
    struct shm_config_slot *slot = &seg.layout->config;
    uint64_t req = atomic_fetch_add(&slot->reload_request, 1) + 1;
    if (signal_supervisor("reload", &sv, SIGHUP) != 0)
        goto out_detach;
    for (int i = 0; i < 200; i++) {
        if (atomic_load_explicit(&slot->reload_done, memory_order_acquire) >= req) {
            int result = atomic_load(&slot->reload_result);
            char msg[SHM_MESSAGE_MAX], clean[4 * SHM_MESSAGE_MAX];
            memcpy(msg, slot->reload_message, sizeof(msg));
            msg[sizeof(msg) - 1] = '\0';
            kd_sanitize(msg, clean, sizeof(clean));
            if (result < 0) {
                fprintf(stderr, "kdeals reload: rejected, the running config stays: %s\n", clean);
                code = 2;
            } else {
                printf("kdeals reload: %s\n", clean);
                code = 0;
                print_rejudge(slot);
            }
            goto out_detach;
        }
        nap_ms(50);
    }
    fprintf(stderr, "kdeals reload: no verdict from pid %d within 10 s\n", (int)sv.pid);
out_detach:
    shm_segment_detach(&seg);
    close(sv.pidfd);
    return code;
}

/*
 * Deals stored, from a read-only snapshot; -1 when there is no store to read, with the reason
 * in WHY ("" when there is simply none yet).
 */
static int64_t count_deals(const struct cfg *c, char *why, size_t whylen)
{
    struct st_options so = cli_store_options(c);
    struct st_env *env;
    struct st_txn *txn;
    int64_t deals = -1;
    why[0] = '\0';
    int rc = st_open_existing(&so, &env, why, whylen);
    if (rc != 0) {
        if (rc == -ENOENT)
            why[0] = '\0';
        return -1;
    }
    rc = st_read_begin(env, &txn);
    if (rc == 0) {
        struct st_cursor *cur;
        if ((rc = st_cursor_open(txn, ST_DB_PRODUCTS, &cur)) == 0) {
            struct st_record r;
            int next;
            deals = 0;
            while ((next = st_cursor_next_record(cur, &r)) != -ENOENT) {
                if (next == 0 && r.state == ST_STATE_DEAL) {
                    deals++;
                } else if (next != 0 && next != -EBADMSG && next != -ENOTSUP) {
                    rc = next;
                    deals = -1;
                    break;
                }
            }
            st_cursor_close(cur);
        }
        st_read_end(txn);
    }
    if (rc != 0)
        kd_seterr(why, whylen, "store %s: %s", c->store_path, st_strerror(rc));
    st_close(env);
    return deals;
}

/* A process's last error, as a string even if its slot was torn mid-write, made safe for a
 * terminal whatever a server put in it. */
static void last_error(const struct shm_proc_slot *p, char *out, size_t outlen)
{
    char raw[SHM_MESSAGE_MAX];
    memcpy(raw, p->last_error, SHM_MESSAGE_MAX);
    raw[SHM_MESSAGE_MAX - 1] = '\0';
    kd_sanitize(raw, out, outlen);
}

/* What `kdeals status` found. */
struct status_view {
    const char *instance;
    struct shm_status st;
    int have_status;
    int running;
    int64_t pid; /* the supervisor's, from the status file or (truncated) the segment */
    int64_t deals;
    char store_error[2048];
    char segment_error[1024]; /* running, but the segment cannot be read */
    const struct shm_layout *l;
    struct tb_stats tbs;
    int64_t now_ms;
};

static void status_text(const struct status_view *v, const char *store_path)
{
    const struct shm_status *st = &v->st;
    char state[4 * sizeof(st->state)];
    kd_sanitize(st->state, state, sizeof(state));
    if (!v->running) {
        printf("instance '%s': not running", v->instance);
        if (v->have_status)
            printf(" (last state %s, generation %" PRIu64 ")", state, st->generation);
        printf("\n");
    } else {
        printf("instance '%s': %s, supervisor pid %" PRId64 ", up %" PRId64
               " s, generation %" PRIu64 "\n",
               v->instance, state[0] ? state : "running", v->pid,
               st->start_ms > 0 ? (v->now_ms - st->start_ms) / 1000 : 0, st->generation);
    }
    if (v->segment_error[0] != '\0')
        printf("shared memory: %s\n", v->segment_error);
    if (v->deals >= 0)
        printf("deals stored: %" PRId64 " (%s)\n", v->deals, store_path);
    else if (v->store_error[0] != '\0')
        printf("deals stored: unknown (%s)\n", v->store_error);
    if (v->l == NULL)
        return;
    const struct tb_stats *tbs = &v->tbs;
    char url[128];
    if (shm_report_web_url(v->l, url, sizeof(url)))
        printf("web: %s\n", url);
    printf("tokens: projected %" PRId64 " of cap %" PRId64 ", refill %" PRId64
           "/min, in flight %" PRId64 "; ",
           tbs->projected_tokens, tbs->cap_tokens, tbs->refill_rate, tbs->inflight_tokens);
    if (tbs->last_reading_age_ns >= 0)
        printf("last server reading %.0f, %" PRId64 " s ago\n", tbs->last_reading.tokens_left,
               (int64_t)(tbs->last_reading_age_ns / KD_NS_PER_SEC));
    else
        printf("no server reading yet\n");
    shm_report_keys_text(stdout, v->l, kd_mono_ns());
    printf("%-11s %8s %-15s %9s %8s %5s  %s\n", "role", "pid", "state", "uptime", "restarts",
           "exit", "last error");
    for (int r = 0; r < SHM_ROLE_COUNT; r++) {
        const struct shm_proc_slot *p = &v->l->procs[r];
        if (atomic_load(&p->state) == SHM_PROC_EMPTY)
            continue; /* a role that does not run here (the web role without [web] listen) */
        int64_t started = atomic_load(&p->started_ms);
        char err_text[4 * SHM_MESSAGE_MAX];
        last_error(p, err_text, sizeof(err_text));
        printf("%-11s %8" PRId64 " %-15s %8" PRId64 "s %8u %5d  %s\n",
               shm_role_name((enum shm_role)r), atomic_load(&p->pid),
               shm_proc_state_name(atomic_load(&p->state)),
               started > 0 ? (v->now_ms - started) / 1000 : 0, atomic_load(&p->restarts),
               atomic_load(&p->last_exit_status), err_text);
    }
}

int cli_status(const struct cfg *c, const char *instance, const char *run_dir, int json)
{
    struct status_view v;
    memset(&v, 0, sizeof(v));
    v.instance = instance;
    int rc = shm_status_read(run_dir, instance, &v.st);
    if (rc != 0 && rc != -ENOENT) {
        status_unreadable("status", instance, run_dir, rc);
        return 1;
    }
    if (rc != 0)
        memset(&v.st, 0, sizeof(v.st));
    v.have_status = rc == 0;
    v.running = v.have_status && v.st.locked;
    v.pid = v.st.pid;
    struct shm_segment seg;
    char err[512];
    int attached = 0;
    if (v.running) {
        attached = shm_segment_attach(&seg, instance, SHM_READ_ONLY, err, sizeof(err)) == 0;
        if (!attached)
            snprintf(v.segment_error, sizeof(v.segment_error),
                     "%s; the daemon runs, but its processes and tokens cannot be shown until "
                     "it is restarted",
                     err);
        else if (v.pid <= 0)
            v.pid = seg.layout->header.supervisor_pid; /* the status file was truncated */
    }
    v.now_ms = kd_wall_ms();
    v.deals = count_deals(c, v.store_error, sizeof(v.store_error));
    if (attached) {
        shm_report_tokens(seg.layout, kd_mono_ns(), &v.tbs); /* every usable key together */
        v.l = seg.layout;
    }
    if (json) {
        struct shm_report_status rs = {.instance = instance,
                                       .st = &v.st,
                                       .have_status = v.have_status,
                                       .running = v.running,
                                       .pid = v.pid,
                                       .deals = v.deals,
                                       .store_error = v.store_error,
                                       .segment_error = v.segment_error,
                                       .l = v.l,
                                       .tbs = &v.tbs,
                                       .now_ms = v.now_ms};
        yajl_gen g = cli_json_new(false);
        shm_report_status_json(g, &rs);
        cli_json_print(g, stdout);
    } else
        status_text(&v, c->store_path);
    if (attached)
        shm_segment_detach(&seg);
    return v.running ? 0 : 1;
}
