/*
 * ctl.c: start, stop, reload and status. See ctl.h.
 *
 * start daemonises the way pg_ctl does: the parent forks a child that starts a new session,
 * points its stdio at the log file and becomes the supervisor; with --wait the parent watches
 * the status file until the supervisor says every worker is ready, or the child dies (then it
 * prints the end of the log, where the supervisor said why).
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
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"
#include "cli/deals.h"
#include "judge/judge.h"
#include "cli/json.h"
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
        int log = open(opt->log_file, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        if (devnull >= 0) {
            dup2(devnull, 0);
            dup2(devnull, 1);
        }
        if (log >= 0)
            dup2(log, 2);
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

static int running_pid(const char *cmd, const char *instance, const char *run_dir, pid_t *pid)
{
    struct shm_status st;
    int rc = shm_status_read(run_dir, instance, &st);
    if (rc != 0 || !st.locked || st.pid <= 0) {
        fprintf(stderr, "kdeals %s: instance '%s' is not running (status file %s/%s.status%s)\n",
                cmd, instance, run_dir, instance, rc == -ENOENT ? " absent" : "");
        return -1;
    }
    *pid = (pid_t)st.pid;
    return 0;
}

int cli_stop(const struct cfg *c, const char *instance, const char *run_dir, int fast)
{
    pid_t pid;
    if (running_pid("stop", instance, run_dir, &pid) != 0)
        return 1;
    if (kill(pid, fast ? SIGQUIT : SIGTERM) != 0) {
        fprintf(stderr, "kdeals stop: cannot signal pid %d: %s\n", (int)pid, strerror(errno));
        return 1;
    }
    /* The supervisor enforces the stop deadline itself; allow it that and a margin. */
    int64_t limit_ms = (fast ? 5000 : c->daemon_stop_timeout_ms) + 10000;
    for (int64_t waited = 0; waited < limit_ms; waited += 50) {
        struct shm_status st;
        if (shm_status_read(run_dir, instance, &st) != 0 || !st.locked) {
            printf("kdeals: instance '%s' stopped\n", instance);
            return 0;
        }
        nap_ms(50);
    }
    fprintf(stderr, "kdeals stop: pid %d is still running after %" PRId64 " ms\n", (int)pid,
            limit_ms);
    return 1;
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
    pid_t pid;
    if (running_pid("reload", instance, run_dir, &pid) != 0)
        return 1;
    struct shm_segment seg;
    char err[512];
    if (shm_segment_attach(&seg, instance, SHM_READ_WRITE, err, sizeof(err)) != 0) {
        fprintf(stderr, "kdeals reload: %s\n", err);
        return 1;
    }
    int code = 1;
    struct shm_config_slot *slot = &seg.layout->config;
    uint64_t req = atomic_fetch_add(&slot->reload_request, 1) + 1;
    if (kill(pid, SIGHUP) != 0) {
        fprintf(stderr, "kdeals reload: cannot signal pid %d: %s\n", (int)pid, strerror(errno));
        goto out_detach;
    }
    for (int i = 0; i < 200; i++) {
        if (atomic_load_explicit(&slot->reload_done, memory_order_acquire) >= req) {
            int result = atomic_load(&slot->reload_result);
            char msg[SHM_MESSAGE_MAX];
            memcpy(msg, slot->reload_message, sizeof(msg));
            msg[sizeof(msg) - 1] = '\0';
            if (result < 0) {
                fprintf(stderr, "kdeals reload: rejected, the running config stays: %s\n", msg);
                code = 2;
            } else {
                printf("kdeals reload: %s\n", msg);
                code = 0;
                print_rejudge(slot);
            }
            goto out_detach;
        }
        nap_ms(50);
    }
    fprintf(stderr, "kdeals reload: no verdict from pid %d within 10 s\n", (int)pid);
out_detach:
    shm_segment_detach(&seg);
    return code;
}

/* Deals stored, from a read-only snapshot; -1 when there is no store to read. */
static int64_t count_deals(const struct cfg *c)
{
    struct st_options so = cli_store_options(c);
    struct st_env *env;
    struct st_txn *txn;
    char err[512];
    int64_t deals = -1;
    if (st_open_existing(&so, &env, err, sizeof(err)) != 0)
        return -1;
    if (st_read_begin(env, &txn) == 0) {
        struct st_cursor *cur;
        if (st_cursor_open(txn, ST_DB_PRODUCTS, &cur) == 0) {
            struct st_record r;
            int rc;
            deals = 0;
            while ((rc = st_cursor_next_record(cur, &r)) != -ENOENT) {
                if (rc == 0 && r.state == ST_STATE_DEAL)
                    deals++;
                else if (rc != 0 && rc != -EBADMSG && rc != -ENOTSUP)
                    break;
            }
            st_cursor_close(cur);
        }
        st_read_end(txn);
    }
    st_close(env);
    return deals;
}

/* A process's last error, as a string even if its slot was torn mid-write. */
static void last_error(const struct shm_proc_slot *p, char out[SHM_MESSAGE_MAX])
{
    memcpy(out, p->last_error, SHM_MESSAGE_MAX);
    out[SHM_MESSAGE_MAX - 1] = '\0';
}

static void status_json(const char *instance, const struct shm_status *st, int have_status,
                        int running, int64_t deals, const struct shm_layout *l,
                        const struct tb_stats *tbs, int64_t now_ms)
{
    yajl_gen g = cli_json_new(false);
    yajl_gen_map_open(g);
    cli_json_str(g, "instance", instance);
    cli_json_bool(g, "running", running);
    cli_json_int(g, "pid", running ? st->pid : 0);
    cli_json_str(g, "state", have_status ? st->state : "absent");
    cli_json_int(g, "start_ms", have_status ? st->start_ms : 0);
    cli_json_int(g, "generation", have_status ? (long long)st->generation : 0);
    cli_json_int(g, "deals", deals);
    if (l != NULL) {
        cli_json_key(g, "tokens");
        yajl_gen_map_open(g);
        cli_json_bool(g, "anchored", tbs->anchored);
        cli_json_int(g, "projected", tbs->projected_tokens);
        cli_json_int(g, "refill_rate", tbs->refill_rate);
        cli_json_int(g, "cap", tbs->cap_tokens);
        cli_json_int(g, "last_reading_tokens", llround(tbs->last_reading.tokens_left));
        cli_json_int(g, "last_reading_age_ms",
                     tbs->last_reading_age_ns >= 0 ? tbs->last_reading_age_ns / KD_NS_PER_MS : -1);
        cli_json_int(g, "in_flight", tbs->inflight_tokens);
        yajl_gen_map_close(g);
        cli_json_key(g, "processes");
        yajl_gen_array_open(g);
        for (int r = 0; r < SHM_ROLE_COUNT; r++) {
            const struct shm_proc_slot *p = &l->procs[r];
            int64_t started = atomic_load(&p->started_ms);
            char err_text[SHM_MESSAGE_MAX];
            last_error(p, err_text);
            yajl_gen_map_open(g);
            cli_json_str(g, "role", shm_role_name((enum shm_role)r));
            cli_json_int(g, "pid", atomic_load(&p->pid));
            cli_json_str(g, "state", shm_proc_state_name(atomic_load(&p->state)));
            cli_json_int(g, "uptime_s", started > 0 ? (now_ms - started) / 1000 : 0);
            cli_json_int(g, "restarts", atomic_load(&p->restarts));
            cli_json_int(g, "last_exit_status", atomic_load(&p->last_exit_status));
            cli_json_str(g, "last_error", err_text);
            yajl_gen_map_close(g);
        }
        yajl_gen_array_close(g);
    }
    yajl_gen_map_close(g);
    cli_json_print(g, stdout);
}

static void status_text(const char *instance, const struct shm_status *st, int have_status,
                        int running, int64_t deals, const char *store_path,
                        const struct shm_layout *l, const struct tb_stats *tbs, int64_t now_ms)
{
    if (!running) {
        printf("instance '%s': not running", instance);
        if (have_status)
            printf(" (last state %s, generation %" PRIu64 ")", st->state, st->generation);
        printf("\n");
    } else {
        printf("instance '%s': %s, supervisor pid %" PRId64 ", up %" PRId64
               " s, generation %" PRIu64 "\n",
               instance, st->state, st->pid, (now_ms - st->start_ms) / 1000, st->generation);
    }
    if (deals >= 0)
        printf("deals stored: %" PRId64 " (%s)\n", deals, store_path);
    if (l == NULL)
        return;
    printf("tokens: projected %" PRId64 " of cap %" PRId64 ", refill %" PRId64
           "/min, in flight %" PRId64 "; ",
           tbs->projected_tokens, tbs->cap_tokens, tbs->refill_rate, tbs->inflight_tokens);
    if (tbs->last_reading_age_ns >= 0)
        printf("last server reading %.0f, %" PRId64 " s ago\n", tbs->last_reading.tokens_left,
               (int64_t)(tbs->last_reading_age_ns / KD_NS_PER_SEC));
    else
        printf("no server reading yet\n");
    printf("%-11s %8s %-15s %9s %8s %5s  %s\n", "role", "pid", "state", "uptime", "restarts",
           "exit", "last error");
    for (int r = 0; r < SHM_ROLE_COUNT; r++) {
        const struct shm_proc_slot *p = &l->procs[r];
        int64_t started = atomic_load(&p->started_ms);
        char err_text[SHM_MESSAGE_MAX];
        last_error(p, err_text);
        printf("%-11s %8" PRId64 " %-15s %8" PRId64 "s %8u %5d  %s\n",
               shm_role_name((enum shm_role)r), atomic_load(&p->pid),
               shm_proc_state_name(atomic_load(&p->state)),
               started > 0 ? (now_ms - started) / 1000 : 0, atomic_load(&p->restarts),
               atomic_load(&p->last_exit_status), err_text);
    }
}

int cli_status(const struct cfg *c, const char *instance, const char *run_dir, int json)
{
    struct shm_status st;
    int have_status = shm_status_read(run_dir, instance, &st) == 0;
    int running = have_status && st.locked;
    struct shm_segment seg;
    char err[512];
    int attached =
        running && shm_segment_attach(&seg, instance, SHM_READ_ONLY, err, sizeof(err)) == 0;
    int64_t now_ms = kd_wall_ms();
    int64_t deals = count_deals(c);
    struct tb_stats tbs;
    memset(&tbs, 0, sizeof(tbs));
    if (attached)
        tb_stats(&seg.layout->tokens, kd_mono_ns(), &tbs);
    const struct shm_layout *l = attached ? seg.layout : NULL;
    if (json)
        status_json(instance, &st, have_status, running, deals, l, &tbs, now_ms);
    else
        status_text(instance, &st, have_status, running, deals, c->store_path, l, &tbs, now_ms);
    if (attached)
        shm_segment_detach(&seg);
    return running ? 0 : 1;
}
