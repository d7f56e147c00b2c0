/*
 * stat.c: `kdeals stat` reads the segment through a read-only mapping, so it can never
 * disturb the daemon. In the default mode it refreshes in place once a second (like
 * varnishstat) and reattaches when the daemon restarts; -1 prints one snapshot.
 */
#include "supervisor/stat.h"

#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"
#include "shm/counters.h"
#include "shm/ring.h"
#include "shm/segment.h"

static const char *const state_names[SHM_PROC_STATE_COUNT] = {
    "empty", "starting", "ready", "waiting-tokens", "stopping", "exited"};

static const char *const ring_names[SHM_RING_COUNT] = {"survivors", "recommit", "refresh"};

static const char *state_name(uint32_t s)
{
    return s < SHM_PROC_STATE_COUNT ? state_names[s] : "?";
}

static void print_text(const struct shm_layout *l, FILE *out)
{
    const struct shm_header *h = &l->header;
    int64_t now = kd_wall_ms();
    fprintf(out,
            "instance %s  generation %" PRIu64 "  supervisor pid %" PRId64 "  up %" PRId64 " s\n\n",
            h->instance, h->generation, h->supervisor_pid, (now - h->start_time_ms) / 1000);
    fprintf(out, "%-11s %8s %-15s %8s %9s %6s\n", "role", "pid", "state", "restarts", "heartbeat",
            "exit");
    for (int r = 0; r < SHM_ROLE_COUNT; r++) {
        const struct shm_proc_slot *p = &l->procs[r];
        int64_t hb = atomic_load(&p->heartbeat_ms);
        char hbtext[32] = "-";
        if (hb > 0)
            snprintf(hbtext, sizeof(hbtext), "%" PRId64 " ms", now - hb);
        fprintf(out, "%-11s %8" PRId64 " %-15s %8u %9s %6d\n", shm_role_name((enum shm_role)r),
                atomic_load(&p->pid), state_name(atomic_load(&p->state)), atomic_load(&p->restarts),
                hbtext, atomic_load(&p->last_exit_status));
    }
    fprintf(out, "\n%-10s %12s %12s %14s %14s\n", "ring", "capacity", "depth", "written", "read");
    for (int i = 0; i < SHM_RING_COUNT; i++) {
        const struct shm_ring *rg = &l->rings[i];
        fprintf(out, "%-10s %12" PRIu64 " %12" PRIu64 " %14" PRIu64 " %14" PRIu64 "\n",
                ring_names[i], rg->capacity, ring_depth(rg), atomic_load(&rg->records_written),
                atomic_load(&rg->records_read));
    }
    fprintf(out, "\n%-24s %14s  %s\n", "counter", "value", "description");
    for (int i = 0; i < SHM_COUNTER_COUNT; i++) {
        const struct shm_counter_meta *m = &shm_counter_meta[i];
        if (m->kind == SHM_HISTOGRAM) {
            uint64_t count = 0;
            for (int r = 0; r < SHM_ROLE_COUNT; r++)
                count += atomic_load(&l->counters[r].hist[i].count);
            fprintf(out, "%-24s %14" PRIu64 "  %s (count; p50 %" PRIu64 ", p99 %" PRIu64 ")\n",
                    m->name, count, m->help, shm_hist_quantile(l, (enum shm_counter_id)i, 0.5),
                    shm_hist_quantile(l, (enum shm_counter_id)i, 0.99));
        } else {
            fprintf(out, "%-24s %14" PRId64 "  %s\n", m->name,
                    shm_counter_total(l, (enum shm_counter_id)i), m->help);
        }
    }
}

static void print_json(const struct shm_layout *l, FILE *out)
{
    const struct shm_header *h = &l->header;
    fprintf(out,
            "{\"instance\":\"%s\",\"generation\":%" PRIu64 ",\"supervisor_pid\":%" PRId64
            ",\"start_time_ms\":%" PRId64 ",\"processes\":[",
            h->instance, h->generation, h->supervisor_pid, h->start_time_ms);
    for (int r = 0; r < SHM_ROLE_COUNT; r++) {
        const struct shm_proc_slot *p = &l->procs[r];
        fprintf(out,
                "%s{\"role\":\"%s\",\"pid\":%" PRId64 ",\"state\":\"%s\",\"restarts\":%u,"
                "\"heartbeat_ms\":%" PRId64 ",\"last_exit_status\":%d}",
                r ? "," : "", shm_role_name((enum shm_role)r), atomic_load(&p->pid),
                state_name(atomic_load(&p->state)), atomic_load(&p->restarts),
                atomic_load(&p->heartbeat_ms), atomic_load(&p->last_exit_status));
    }
    fprintf(out, "],\"rings\":{");
    for (int i = 0; i < SHM_RING_COUNT; i++) {
        const struct shm_ring *rg = &l->rings[i];
        fprintf(out,
                "%s\"%s\":{\"capacity\":%" PRIu64 ",\"depth\":%" PRIu64 ",\"head\":%" PRIu64
                ",\"tail\":%" PRIu64 ",\"written\":%" PRIu64 ",\"read\":%" PRIu64 "}",
                i ? "," : "", ring_names[i], rg->capacity, ring_depth(rg), atomic_load(&rg->head),
                atomic_load(&rg->tail), atomic_load(&rg->records_written),
                atomic_load(&rg->records_read));
    }
    fprintf(out, "},\"counters\":{");
    for (int i = 0; i < SHM_COUNTER_COUNT; i++) {
        const struct shm_counter_meta *m = &shm_counter_meta[i];
        fprintf(out, "%s\"%s\":{\"total\":%" PRId64 ",\"by_role\":{", i ? "," : "", m->name,
                shm_counter_total(l, (enum shm_counter_id)i));
        for (int r = 0; r < SHM_ROLE_COUNT; r++)
            fprintf(out, "%s\"%s\":%" PRId64, r ? "," : "", shm_role_name((enum shm_role)r),
                    atomic_load(&l->counters[r].values[i]));
        fprintf(out, "}}");
    }
    fprintf(out, "}}\n");
}

void sup_stat_print(const struct shm_layout *l, enum sup_stat_format format, FILE *out)
{
    if (format == SUP_STAT_JSON)
        print_json(l, out);
    else
        print_text(l, out);
}

static int usage(FILE *out)
{
    fprintf(out, "usage: kdeals stat [--instance NAME] [-1] [--json]\n"
                 "  Live counters, processes and rings of a running instance, read from shared\n"
                 "  memory (read-only). Refreshes every second until interrupted; -1 prints one\n"
                 "  snapshot; --json prints one JSON object.\n");
    return out == stdout ? 0 : 2;
}

int sup_stat_main(int argc, char **argv)
{
    const char *instance = "default";
    int once = 0;
    enum sup_stat_format format = SUP_STAT_TEXT;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--instance") == 0 && i + 1 < argc)
            instance = argv[++i];
        else if (strcmp(argv[i], "-1") == 0)
            once = 1;
        else if (strcmp(argv[i], "--json") == 0)
            format = SUP_STAT_JSON, once = 1;
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
        fprintf(stderr, "kdeals stat: %s\n", err);
        return 1;
    }
    for (;;) {
        if (!once)
            fputs("\033[H\033[2J", stdout);
        sup_stat_print(seg.layout, format, stdout);
        fflush(stdout);
        if (once)
            break;
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
