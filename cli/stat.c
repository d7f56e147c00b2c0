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
#include "shm/report.h"
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
        if (atomic_load(&p->state) == SHM_PROC_EMPTY)
            continue; /* a role that does not run here (the web role without [web] listen) */
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

void cli_stat_print(const struct shm_layout *l, enum cli_stat_format format, FILE *out)
{
    if (format == CLI_STAT_JSON) {
        yajl_gen g = cli_json_new(false);
        shm_report_stat_json(g, l, NULL, 0, kd_wall_ms());
        cli_json_print(g, out);
    } else if (format == CLI_STAT_PROM) {
        shm_report_prom(out, l);
    } else
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
