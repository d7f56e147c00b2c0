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

int sup_ctl_start(struct sup_options *opt, int wait, int timeout_s)
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

int sup_ctl_stop(const struct cfg *c, const char *instance, const char *run_dir, int fast)
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

int sup_ctl_reload(const struct cfg *c, const char *instance, const char *run_dir)
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
    struct shm_config_slot *slot = &seg.layout->config;
    uint64_t req = atomic_fetch_add(&slot->reload_request, 1) + 1;
    if (kill(pid, SIGHUP) != 0) {
        fprintf(stderr, "kdeals reload: cannot signal pid %d: %s\n", (int)pid, strerror(errno));
        shm_segment_detach(&seg);
        return 1;
    }
    for (int i = 0; i < 200; i++) {
        if (atomic_load_explicit(&slot->reload_done, memory_order_acquire) >= req) {
            int result = atomic_load(&slot->reload_result);
            char msg[SHM_MESSAGE_MAX];
            memcpy(msg, slot->reload_message, sizeof(msg));
            msg[sizeof(msg) - 1] = '\0';
            shm_segment_detach(&seg);
            if (result < 0) {
                fprintf(stderr, "kdeals reload: rejected, the running config stays: %s\n", msg);
                return 2;
            }
            printf("kdeals reload: %s\n", msg);
            return 0;
        }
        nap_ms(50);
    }
    shm_segment_detach(&seg);
    fprintf(stderr, "kdeals reload: no verdict from pid %d within 10 s\n", (int)pid);
    return 1;
}

int sup_ctl_status(const struct cfg *c, const char *instance, const char *run_dir, int json)
{
    struct shm_status st;
    int rc = shm_status_read(run_dir, instance, &st);
    int running = rc == 0 && st.locked;
    struct shm_segment seg;
    char err[512];
    int attached =
        running && shm_segment_attach(&seg, instance, SHM_READ_ONLY, err, sizeof(err)) == 0;
    int64_t now_ms = kd_wall_ms();

    /* The deal count comes from the store (read-only snapshot), when there is one. */
    int64_t deals = -1;
    char data[CFG_STR_MAX + 16];
    struct stat sb;
    snprintf(data, sizeof(data), "%s/data.mdb", c->store_path);
    if (stat(data, &sb) == 0) {
        struct st_options so = {.path = c->store_path,
                                .map_size_bytes = (uint64_t)c->store_map_size_mb << 20,
                                .max_map_size_bytes = (uint64_t)c->store_max_map_size_mb << 20};
        struct st_env *env;
        struct st_txn *txn;
        if (st_open(&so, &env, err, sizeof(err)) == 0) {
            uint64_t n;
            if (st_read_begin(env, &txn) == 0) {
                if (st_count(txn, ST_DB_DEALS, &n) == 0)
                    deals = (int64_t)n;
                st_read_end(txn);
            }
            st_close(env);
        }
    }
    struct tb_stats tbs;
    memset(&tbs, 0, sizeof(tbs));
    if (attached)
        tb_stats(&seg.layout->tokens, kd_mono_ns(), &tbs);

    if (json) {
        printf("{\"instance\":\"%s\",\"running\":%s,\"pid\":%" PRId64 ",\"state\":\"%s\","
               "\"start_ms\":%" PRId64 ",\"generation\":%" PRIu64 ",\"deals\":%" PRId64,
               instance, running ? "true" : "false", running ? st.pid : 0,
               rc == 0 ? st.state : "absent", rc == 0 ? st.start_ms : 0,
               rc == 0 ? st.generation : 0, deals);
        if (attached) {
            printf(",\"tokens\":{\"anchored\":%s,\"projected\":%" PRId64 ",\"refill_rate\":%" PRId64
                   ",\"cap\":%" PRId64
                   ",\"last_reading_tokens\":%.0f,\"last_reading_age_ms\":%" PRId64
                   ",\"in_flight\":%" PRId64 "}",
                   tbs.anchored ? "true" : "false", tbs.projected_tokens, tbs.refill_rate,
                   tbs.cap_tokens, tbs.last_reading.tokens_left,
                   (int64_t)(tbs.last_reading_age_ns >= 0 ? tbs.last_reading_age_ns / KD_NS_PER_MS
                                                          : -1),
                   tbs.inflight_tokens);
            printf(",\"processes\":[");
            for (int r = 0; r < SHM_ROLE_COUNT; r++) {
                const struct shm_proc_slot *p = &seg.layout->procs[r];
                uint32_t s = atomic_load(&p->state);
                int64_t started = atomic_load(&p->started_ms);
                printf("%s{\"role\":\"%s\",\"pid\":%" PRId64
                       ",\"state\":\"%s\",\"uptime_s\":%" PRId64
                       ",\"restarts\":%u,\"last_exit_status\":%d,\"last_error\":\"",
                       r ? "," : "", shm_role_name((enum shm_role)r), atomic_load(&p->pid),
                       shm_proc_state_name(s), started > 0 ? (now_ms - started) / 1000 : 0,
                       atomic_load(&p->restarts), atomic_load(&p->last_exit_status));
                for (const char *e = p->last_error; *e && e < p->last_error + SHM_MESSAGE_MAX;
                     e++) {
                    if (*e == '"' || *e == '\\')
                        printf("\\%c", *e);
                    else if ((unsigned char)*e >= 0x20)
                        putchar(*e);
                }
                printf("\"}");
            }
            printf("]");
        }
        printf("}\n");
    } else {
        if (!running) {
            printf("instance '%s': not running", instance);
            if (rc == 0)
                printf(" (last state %s, generation %" PRIu64 ")", st.state, st.generation);
            printf("\n");
        } else {
            printf("instance '%s': %s, supervisor pid %" PRId64 ", up %" PRId64
                   " s, generation %" PRIu64 "\n",
                   instance, st.state, st.pid, (now_ms - st.start_ms) / 1000, st.generation);
        }
        if (deals >= 0)
            printf("deals stored: %" PRId64 " (%s)\n", deals, c->store_path);
        if (attached) {
            printf("tokens: projected %" PRId64 " of cap %" PRId64 ", refill %" PRId64
                   "/min, in flight %" PRId64 "; ",
                   tbs.projected_tokens, tbs.cap_tokens, tbs.refill_rate, tbs.inflight_tokens);
            if (tbs.last_reading_age_ns >= 0)
                printf("last server reading %.0f, %" PRId64 " s ago\n",
                       tbs.last_reading.tokens_left,
                       (int64_t)(tbs.last_reading_age_ns / KD_NS_PER_SEC));
            else
                printf("no server reading yet\n");
            printf("%-11s %8s %-15s %9s %8s %5s  %s\n", "role", "pid", "state", "uptime",
                   "restarts", "exit", "last error");
            for (int r = 0; r < SHM_ROLE_COUNT; r++) {
                const struct shm_proc_slot *p = &seg.layout->procs[r];
                uint32_t s = atomic_load(&p->state);
                int64_t started = atomic_load(&p->started_ms);
                char err_text[SHM_MESSAGE_MAX];
                memcpy(err_text, p->last_error, sizeof(err_text));
                err_text[sizeof(err_text) - 1] = '\0';
                printf("%-11s %8" PRId64 " %-15s %8" PRId64 "s %8u %5d  %s\n",
                       shm_role_name((enum shm_role)r), atomic_load(&p->pid),
                       shm_proc_state_name(s), started > 0 ? (now_ms - started) / 1000 : 0,
                       atomic_load(&p->restarts), atomic_load(&p->last_exit_status), err_text);
            }
        }
    }
    if (attached)
        shm_segment_detach(&seg);
    return running ? 0 : 1;
}
