/*
 * stat.c: `kdeals stat` reads the segment through a read-only mapping, so it can never
 * disturb the daemon. In the default mode it refreshes in place once a second (like
 * varnishstat) and reattaches when the daemon restarts; -1 prints one snapshot.
 */
#include "cli/stat.h"

#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"
#include "cli/json.h"
#include "shm/counters.h"
#include "shm/ring.h"
#include "shm/segment.h"

/*
 * PREV holds the totals of the previous refresh DT_S seconds ago (live mode: the rate is the
 * change since then); with PREV NULL the rate is the average since the daemon started.
 */
static void print_text(const struct shm_layout *l, FILE *out, const int64_t *prev, double dt_s)
{
    const struct shm_header *h = &l->header;
    int64_t now = kd_wall_ms();
    fprintf(out,
            "instance %.*s  generation %" PRIu64 "  supervisor pid %" PRId64 "  up %" PRId64
            " s\n\n",
            (int)strnlen(h->instance, sizeof(h->instance)), h->instance, h->generation,
            h->supervisor_pid, (now - h->start_time_ms) / 1000);
    fprintf(out, "%-11s %8s %-15s %8s %9s %6s\n", "role", "pid", "state", "restarts", "heartbeat",
            "exit");
    for (int r = 0; r < SHM_ROLE_COUNT; r++) {
        const struct shm_proc_slot *p = &l->procs[r];
        int64_t hb = atomic_load(&p->heartbeat_ms);
        char hbtext[32] = "-";
        if (hb > 0)
            snprintf(hbtext, sizeof(hbtext), "%" PRId64 " ms", now - hb);
        fprintf(out, "%-11s %8" PRId64 " %-15s %8u %9s %6d\n", shm_role_name((enum shm_role)r),
                atomic_load(&p->pid), shm_proc_state_name(atomic_load(&p->state)),
                atomic_load(&p->restarts), hbtext, atomic_load(&p->last_exit_status));
    }
    fprintf(out, "\n%-10s %12s %12s %14s %14s\n", "ring", "capacity", "depth", "written", "read");
    for (int i = 0; i < SHM_RING_COUNT; i++) {
        const struct shm_ring *rg = &l->rings[i];
        fprintf(out, "%-10s %12" PRIu64 " %12" PRIu64 " %14" PRIu64 " %14" PRIu64 "\n",
                shm_ring_name((enum shm_ring_id)i), rg->capacity, ring_depth(rg),
                atomic_load(&rg->records_written), atomic_load(&rg->records_read));
    }
    double up_s = (double)(now - h->start_time_ms) / 1000.0;
    fprintf(out, "\n%-24s %14s %10s  %s\n", "counter", "value", "per sec", "description");
    for (int i = 0; i < SHM_COUNTER_COUNT; i++) {
        const struct shm_counter_meta *m = &shm_counter_meta[i];
        if (m->kind == SHM_HISTOGRAM) {
            uint64_t count = 0;
            for (int r = 0; r < SHM_ROLE_COUNT; r++)
                count += atomic_load(&l->counters[r].hist[i].count);
            fprintf(out, "%-24s %14" PRIu64 " %10s  %s (count; p50 %" PRIu64 ", p99 %" PRIu64 ")\n",
                    m->name, count, "", m->help, shm_hist_quantile(l, (enum shm_counter_id)i, 0.5),
                    shm_hist_quantile(l, (enum shm_counter_id)i, 0.99));
        } else {
            int64_t v = shm_counter_value(l, (enum shm_counter_id)i);
            char rate[32] = "";
            if (m->kind == SHM_COUNTER) {
                double r = prev != NULL ? (dt_s > 0 ? (double)(v - prev[i]) / dt_s : 0)
                                        : (up_s > 0 ? (double)v / up_s : 0);
                snprintf(rate, sizeof(rate), "%.1f", r);
            }
            fprintf(out, "%-24s %14" PRId64 " %10s  %s\n", m->name, v, rate, m->help);
        }
    }
}

static void print_json(const struct shm_layout *l, FILE *out)
{
    const struct shm_header *h = &l->header;
    yajl_gen g = cli_json_new(false);
    char instance[SHM_INSTANCE_MAX + 1];
    snprintf(instance, sizeof(instance), "%.*s", (int)strnlen(h->instance, sizeof(h->instance)),
             h->instance);
    yajl_gen_map_open(g);
    cli_json_str(g, "instance", instance);
    cli_json_int(g, "generation", (long long)h->generation);
    cli_json_int(g, "supervisor_pid", h->supervisor_pid);
    cli_json_int(g, "start_time_ms", h->start_time_ms);
    cli_json_key(g, "processes");
    yajl_gen_array_open(g);
    for (int r = 0; r < SHM_ROLE_COUNT; r++) {
        const struct shm_proc_slot *p = &l->procs[r];
        yajl_gen_map_open(g);
        cli_json_str(g, "role", shm_role_name((enum shm_role)r));
        cli_json_int(g, "pid", atomic_load(&p->pid));
        cli_json_str(g, "state", shm_proc_state_name(atomic_load(&p->state)));
        cli_json_int(g, "restarts", atomic_load(&p->restarts));
        cli_json_int(g, "heartbeat_ms", atomic_load(&p->heartbeat_ms));
        cli_json_int(g, "last_exit_status", atomic_load(&p->last_exit_status));
        yajl_gen_map_close(g);
    }
    yajl_gen_array_close(g);
    cli_json_key(g, "rings");
    yajl_gen_map_open(g);
    for (int i = 0; i < SHM_RING_COUNT; i++) {
        const struct shm_ring *rg = &l->rings[i];
        cli_json_key(g, shm_ring_name((enum shm_ring_id)i));
        yajl_gen_map_open(g);
        cli_json_int(g, "capacity", (long long)rg->capacity);
        cli_json_int(g, "depth", (long long)ring_depth(rg));
        cli_json_int(g, "head", (long long)atomic_load(&rg->head));
        cli_json_int(g, "tail", (long long)atomic_load(&rg->tail));
        cli_json_int(g, "written", (long long)atomic_load(&rg->records_written));
        cli_json_int(g, "read", (long long)atomic_load(&rg->records_read));
        yajl_gen_map_close(g);
    }
    yajl_gen_map_close(g);
    cli_json_key(g, "counters");
    yajl_gen_map_open(g);
    for (int i = 0; i < SHM_COUNTER_COUNT; i++) {
        const struct shm_counter_meta *m = &shm_counter_meta[i];
        cli_json_key(g, m->name);
        yajl_gen_map_open(g);
        cli_json_int(g, "total", shm_counter_value(l, (enum shm_counter_id)i));
        cli_json_key(g, "by_role");
        yajl_gen_map_open(g);
        for (int r = 0; r < SHM_ROLE_COUNT; r++)
            cli_json_int(g, shm_role_name((enum shm_role)r),
                         atomic_load(&l->counters[r].values[i]));
        yajl_gen_map_close(g);
        yajl_gen_map_close(g);
    }
    yajl_gen_map_close(g);
    yajl_gen_map_close(g);
    cli_json_print(g, out);
}

/*
 * Prometheus text exposition (version 0.0.4): one family per counters.def entry, a `role`
 * label per process block, `_total` on counters, cumulative `le` buckets on histograms
 * (bucket i holds values up to 2^i - 1), plus per-ring and per-process families.
 */
static void print_prom(const struct shm_layout *l, FILE *out)
{
    for (int i = 0; i < SHM_COUNTER_COUNT; i++) {
        const struct shm_counter_meta *m = &shm_counter_meta[i];
        const char *suffix = m->kind == SHM_COUNTER ? "_total" : "";
        const char *type = m->kind == SHM_COUNTER ? "counter"
                           : m->kind == SHM_GAUGE ? "gauge"
                                                  : "histogram";
        fprintf(out, "# HELP kdeals_%s%s %s\n# TYPE kdeals_%s%s %s\n", m->name, suffix, m->help,
                m->name, suffix, type);
        for (int r = 0; r < SHM_ROLE_COUNT; r++) {
            const char *role = shm_role_name((enum shm_role)r);
            if (m->kind != SHM_HISTOGRAM) {
                fprintf(out, "kdeals_%s%s{role=\"%s\"} %" PRId64 "\n", m->name, suffix, role,
                        atomic_load(&l->counters[r].values[i]));
                continue;
            }
            const struct shm_histogram *h = &l->counters[r].hist[i];
            unsigned top = 0;
            for (unsigned b = 0; b < SHM_HIST_BUCKETS; b++) {
                if (atomic_load(&h->buckets[b]) != 0)
                    top = b;
            }
            uint64_t cum = 0;
            for (unsigned b = 0; b <= top && b < 63; b++) {
                cum += atomic_load(&h->buckets[b]);
                fprintf(out, "kdeals_%s_bucket{role=\"%s\",le=\"%" PRIu64 "\"} %" PRIu64 "\n",
                        m->name, role, b == 0 ? 0 : (UINT64_C(1) << b) - 1, cum);
            }
            fprintf(out, "kdeals_%s_bucket{role=\"%s\",le=\"+Inf\"} %" PRIu64 "\n", m->name, role,
                    atomic_load(&h->count));
            fprintf(out, "kdeals_%s_sum{role=\"%s\"} %" PRIu64 "\n", m->name, role,
                    atomic_load(&h->sum));
            fprintf(out, "kdeals_%s_count{role=\"%s\"} %" PRIu64 "\n", m->name, role,
                    atomic_load(&h->count));
        }
    }
    fprintf(out, "# HELP kdeals_ring_depth_bytes Bytes published and not yet acknowledged\n"
                 "# TYPE kdeals_ring_depth_bytes gauge\n");
    for (int i = 0; i < SHM_RING_COUNT; i++)
        fprintf(out, "kdeals_ring_depth_bytes{ring=\"%s\"} %" PRIu64 "\n",
                shm_ring_name((enum shm_ring_id)i), ring_depth(&l->rings[i]));
    fprintf(out, "# HELP kdeals_process_restarts_total Restarts of each worker by the supervisor\n"
                 "# TYPE kdeals_process_restarts_total counter\n");
    for (int r = 0; r < SHM_ROLE_COUNT; r++)
        fprintf(out, "kdeals_process_restarts_total{role=\"%s\"} %u\n",
                shm_role_name((enum shm_role)r), atomic_load(&l->procs[r].restarts));
    fprintf(out, "# HELP kdeals_process_up 1 while the role's process is alive and ready\n"
                 "# TYPE kdeals_process_up gauge\n");
    for (int r = 0; r < SHM_ROLE_COUNT; r++) {
        uint32_t st = atomic_load(&l->procs[r].state);
        fprintf(out, "kdeals_process_up{role=\"%s\"} %d\n", shm_role_name((enum shm_role)r),
                atomic_load(&l->procs[r].pid) > 0 &&
                    (st == SHM_PROC_READY || st == SHM_PROC_WAITING_TOKENS));
    }
    fprintf(out,
            "# HELP kdeals_generation Segment generation (bumped on every daemon start)\n"
            "# TYPE kdeals_generation gauge\nkdeals_generation %" PRIu64 "\n",
            l->header.generation);
}

void cli_stat_print(const struct shm_layout *l, enum cli_stat_format format, FILE *out)
{
    if (format == CLI_STAT_JSON)
        print_json(l, out);
    else if (format == CLI_STAT_PROM)
        print_prom(l, out);
    else
        print_text(l, out, NULL, 0);
}

static int usage(FILE *out)
{
    fprintf(out, "usage: kdeals stat [-c FILE] [--instance NAME] [-1] [--json|--prom]\n"
                 "  Live counters (with per-second rates), processes and rings of a running\n"
                 "  instance, read from shared memory through a read-only mapping. Refreshes\n"
                 "  every second until interrupted and reattaches when the daemon restarts;\n"
                 "  -1 prints one snapshot; --json one JSON object; --prom Prometheus text.\n");
    return out == stdout ? 0 : 2;
}

int cli_stat_main(int argc, char **argv)
{
    const char *instance = "default";
    const char *run_dir = NULL;
    int once = 0;
    enum cli_stat_format format = CLI_STAT_TEXT;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--instance") == 0 && i + 1 < argc)
            instance = argv[++i];
        else if (strcmp(argv[i], "--run-dir") == 0 && i + 1 < argc)
            run_dir = argv[++i];
        else if (strcmp(argv[i], "-1") == 0)
            once = 1;
        else if (strcmp(argv[i], "--json") == 0)
            format = CLI_STAT_JSON, once = 1;
        else if (strcmp(argv[i], "--prom") == 0)
            format = CLI_STAT_PROM, once = 1;
        else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            return usage(stdout);
        else {
            fprintf(stderr, "kdeals stat: unknown option '%s'\n", argv[i]);
            return usage(stderr);
        }
    }
    struct shm_segment seg;
    char err[512];
    int rc = shm_segment_attach(&seg, instance, SHM_READ_ONLY, err, sizeof(err));
    if (rc != 0) {
        /* The same story as `kdeals status`: a daemon whose segment is gone still runs. */
        struct shm_status st;
        if (rc == -ENOENT && run_dir != NULL && shm_status_read(run_dir, instance, &st) == 0 &&
            st.locked)
            fprintf(stderr,
                    "kdeals stat: instance '%s' runs (supervisor pid %lld) but its shared memory "
                    "/dev/shm/kdeals-%s was removed: its counters cannot be read until it is "
                    "restarted\n",
                    instance, (long long)st.pid, instance);
        else
            fprintf(stderr, "kdeals stat: %s\n", err);
        return 1;
    }
    int64_t prev[SHM_COUNTER_COUNT];
    int64_t prev_ns = 0;
    uint64_t prev_gen = 0;
    for (;;) {
        if (once) {
            cli_stat_print(seg.layout, format, stdout);
            break;
        }
        int64_t now_ns = kd_mono_ns();
        int have_prev = prev_ns != 0 && prev_gen == seg.generation;
        fputs("\033[H\033[2J", stdout);
        print_text(seg.layout, stdout, have_prev ? prev : NULL, (double)(now_ns - prev_ns) / 1e9);
        fflush(stdout);
        for (int i = 0; i < SHM_COUNTER_COUNT; i++)
            prev[i] = shm_counter_value(seg.layout, (enum shm_counter_id)i);
        prev_ns = now_ns;
        prev_gen = seg.generation;
        sleep(1);
        if (shm_segment_check(&seg) != 0) {
            shm_segment_detach(&seg);
            while (shm_segment_attach(&seg, instance, SHM_READ_ONLY, err, sizeof(err)) != 0) {
                printf("waiting for instance '%s': %s\n", instance, err);
                fflush(stdout);
                sleep(1);
            }
        }
    }
    shm_segment_detach(&seg);
    return 0;
}
