/*
 * report.c: the segment as JSON and Prometheus documents. See report.h.
 */
#include "shm/report.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdatomic.h>
#include <string.h>

#include "base/clock.h"
#include "base/log.h"
#include "shm/counters.h"
#include "shm/keyseg.h"
#include "shm/ring.h"

const enum shm_counter_id shm_value_gauges[SHM_VALUE_GAUGES] = {SHM_C_vanish_half_life_min,
                                                                SHM_C_vanish_half_life_fast_min,
                                                                SHM_C_vanish_half_life_mid_min,
                                                                SHM_C_vanish_half_life_slow_min,
                                                                SHM_C_peek_hit_bp,
                                                                SHM_C_peek_profit_ratio_bp,
                                                                SHM_C_peek_classes_shut,
                                                                SHM_C_recheck_interval_min,
                                                                SHM_C_token_value_mc,
                                                                SHM_C_recheck_budget_bp,
                                                                SHM_C_survivors_dropped,
                                                                SHM_C_offers_gone};

static void key(yajl_gen g, const char *k)
{
    yajl_gen_string(g, (const unsigned char *)k, strlen(k));
}

static void str(yajl_gen g, const char *k, const char *v)
{
    key(g, k);
    yajl_gen_string(g, (const unsigned char *)v, strlen(v));
}

static void num(yajl_gen g, const char *k, long long v)
{
    key(g, k);
    yajl_gen_integer(g, v);
}

static void flag(yajl_gen g, const char *k, bool v)
{
    key(g, k);
    yajl_gen_bool(g, v);
}

/* A rate with one decimal (what `kdeals stat` shows), as a JSON number. */
static void rate(yajl_gen g, const char *k, double v)
{
    key(g, k);
    char buf[40];
    snprintf(buf, sizeof(buf), "%.1f", isfinite(v) ? v : 0.0);
    yajl_gen_number(g, buf, strlen(buf));
}

/* Whether role R runs in this instance: its slot was ever used (the web role's stays empty
 * without [web] listen). Roles that do not run are left out of the process lists and of the
 * per-role Prometheus series. */
static bool runs_here(const struct shm_layout *l, int r)
{
    return atomic_load(&l->procs[r].state) != SHM_PROC_EMPTY;
}

bool shm_report_web_url(const struct shm_layout *l, char *buf, size_t len)
{
    uint32_t port = atomic_load_explicit(&l->web.port, memory_order_acquire);
    if (port == 0)
        return false;
    char host[sizeof(l->web.host) + 1];
    memcpy(host, l->web.host, sizeof(l->web.host));
    host[sizeof(l->web.host)] = '\0';
    bool v6 = strchr(host, ':') != NULL;
    snprintf(buf, len, "http://%s%s%s:%u/", v6 ? "[" : "", host, v6 ? "]" : "", port);
    return true;
}

void shm_report_stat_json(yajl_gen g, const struct shm_layout *l, const int64_t *prev, double dt_s,
                          int64_t now_ms)
{
    const struct shm_header *h = &l->header;
    double up_s = (double)(now_ms - h->start_time_ms) / 1000.0;
    yajl_gen_map_open(g);
    char instance[SHM_INSTANCE_MAX + 1];
    snprintf(instance, sizeof(instance), "%.*s", (int)strnlen(h->instance, sizeof(h->instance)),
             h->instance);
    str(g, "instance", instance);
    num(g, "generation", (long long)h->generation);
    num(g, "supervisor_pid", h->supervisor_pid);
    num(g, "start_time_ms", h->start_time_ms);
    key(g, "processes");
    yajl_gen_array_open(g);
    for (int r = 0; r < SHM_ROLE_COUNT; r++) {
        const struct shm_proc_slot *p = &l->procs[r];
        if (!runs_here(l, r))
            continue;
        yajl_gen_map_open(g);
        str(g, "role", shm_role_name((enum shm_role)r));
        num(g, "pid", atomic_load(&p->pid));
        str(g, "state", shm_proc_state_name(atomic_load(&p->state)));
        num(g, "restarts", atomic_load(&p->restarts));
        num(g, "heartbeat_ms", atomic_load(&p->heartbeat_ms));
        num(g, "last_exit_status", atomic_load(&p->last_exit_status));
        yajl_gen_map_close(g);
    }
    yajl_gen_array_close(g);
    key(g, "rings");
    yajl_gen_map_open(g);
    for (int i = 0; i < SHM_RING_COUNT; i++) {
        const struct shm_ring *rg = &l->rings[i];
        key(g, shm_ring_name((enum shm_ring_id)i));
        yajl_gen_map_open(g);
        num(g, "capacity", (long long)rg->capacity);
        num(g, "depth", (long long)ring_depth(rg));
        num(g, "head", (long long)atomic_load(&rg->head));
        num(g, "tail", (long long)atomic_load(&rg->tail));
        num(g, "written", (long long)atomic_load(&rg->records_written));
        num(g, "read", (long long)atomic_load(&rg->records_read));
        yajl_gen_map_close(g);
    }
    yajl_gen_map_close(g);
    key(g, "value");
    yajl_gen_map_open(g);
    for (size_t i = 0; i < SHM_VALUE_GAUGES; i++)
        num(g, shm_counter_meta[shm_value_gauges[i]].name,
            shm_counter_value(l, shm_value_gauges[i]));
    yajl_gen_map_close(g);
    key(g, "counters");
    yajl_gen_map_open(g);
    for (int i = 0; i < SHM_COUNTER_COUNT; i++) {
        const struct shm_counter_meta *m = &shm_counter_meta[i];
        int64_t total = shm_counter_value(l, (enum shm_counter_id)i);
        key(g, m->name);
        yajl_gen_map_open(g);
        num(g, "total", total);
        if (m->kind == SHM_COUNTER)
            rate(g, "rate_per_s",
                 prev != NULL ? (dt_s > 0 ? (double)(total - prev[i]) / dt_s : 0)
                              : (up_s > 0 ? (double)total / up_s : 0));
        if (m->kind == SHM_HISTOGRAM) {
            uint64_t count = 0;
            for (int r = 0; r < SHM_ROLE_COUNT; r++)
                count += atomic_load(&l->counters[r].hist[i].count);
            num(g, "count", (long long)count);
            num(g, "p50", (long long)shm_hist_quantile(l, (enum shm_counter_id)i, 0.5));
            num(g, "p99", (long long)shm_hist_quantile(l, (enum shm_counter_id)i, 0.99));
        }
        key(g, "by_role");
        yajl_gen_map_open(g);
        for (int r = 0; r < SHM_ROLE_COUNT; r++)
            num(g, shm_role_name((enum shm_role)r), atomic_load(&l->counters[r].values[i]));
        yajl_gen_map_close(g);
        yajl_gen_map_close(g);
    }
    yajl_gen_map_close(g);
    yajl_gen_map_close(g);
}

/*
 * Prometheus text exposition (version 0.0.4): one family per counters.def entry, a `role`
 * label per process block, `_total` on counters, cumulative `le` buckets on histograms
 * (bucket i holds values up to 2^i - 1), plus per-ring and per-process families.
 */
int shm_report_prom(FILE *out, const struct shm_layout *l)
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
            if (!runs_here(l, r))
                continue;
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
    for (int r = 0; r < SHM_ROLE_COUNT; r++) {
        if (runs_here(l, r))
            fprintf(out, "kdeals_process_restarts_total{role=\"%s\"} %u\n",
                    shm_role_name((enum shm_role)r), atomic_load(&l->procs[r].restarts));
    }
    fprintf(out, "# HELP kdeals_process_up 1 while the role's process is alive and ready\n"
                 "# TYPE kdeals_process_up gauge\n");
    for (int r = 0; r < SHM_ROLE_COUNT; r++) {
        uint32_t st = atomic_load(&l->procs[r].state);
        if (!runs_here(l, r))
            continue;
        fprintf(out, "kdeals_process_up{role=\"%s\"} %d\n", shm_role_name((enum shm_role)r),
                atomic_load(&l->procs[r].pid) > 0 &&
                    (st == SHM_PROC_READY || st == SHM_PROC_WAITING_TOKENS));
    }
    fprintf(out,
            "# HELP kdeals_generation Segment generation (bumped on every daemon start)\n"
            "# TYPE kdeals_generation gauge\nkdeals_generation %" PRIu64 "\n",
            l->header.generation);
    return ferror(out) ? -EIO : 0;
}

/* ---- the instance's keys, each with its bucket in its key segment ---------------------- */

#define NAME_OF(id, name) name,
static const char *const key_state_names[SHM_KEY_STATE_COUNT] = {SHM_KEY_STATES(NAME_OF)};
#undef NAME_OF

static const char *key_state_name(uint32_t st)
{
    return st < SHM_KEY_STATE_COUNT ? key_state_names[st] : "?";
}

static unsigned n_keys(const struct shm_layout *l)
{
    uint32_t n = atomic_load(&l->n_keys);
    return n <= SHM_KEYS_MAX ? n : SHM_KEYS_MAX;
}

/* The fingerprint of key I of L, NUL-terminated whatever the segment holds. */
static void fingerprint(const struct shm_layout *l, unsigned i, char out[SHM_KEY_FP_MAX])
{
    memcpy(out, l->keys[i].fingerprint, SHM_KEY_FP_MAX);
    out[SHM_KEY_FP_MAX - 1] = '\0';
}

static void message(const struct shm_layout *l, unsigned i, char *out, size_t len)
{
    size_t n = sizeof(l->keys[i].message) < len ? sizeof(l->keys[i].message) : len;
    memcpy(out, l->keys[i].message, n);
    out[n - 1] = '\0';
}

void shm_report_tokens(const struct shm_layout *l, int64_t now_ns, struct tb_stats *out)
{
    memset(out, 0, sizeof(*out));
    bool any = false;
    for (unsigned i = 0; i < n_keys(l); i++) {
        if (atomic_load(&l->keys[i].state) != SHM_KEY_OK)
            continue;
        char fp[SHM_KEY_FP_MAX], err[256];
        fingerprint(l, i, fp);
        struct ks_segment ks;
        if (ks_attach_ro(&ks, fp, err, sizeof(err)) != 0)
            continue;
        struct tb_stats st;
        if (tb_stats(&ks.layout->tokens, now_ns, &st) == 0) {
            if (!any || (!out->anchored && st.anchored)) {
                *out = st;
                any = true;
            } else if (st.anchored) {
                out->projected_tokens += st.projected_tokens;
                out->refill_rate += st.refill_rate;
                out->cap_tokens += st.cap_tokens;
                out->inflight_tokens += st.inflight_tokens;
            }
        }
        ks_close(&ks);
    }
}

/* Share of member M among the live members of K, in percent of what they were charged. */
static double share_pct(const struct shm_key_layout *k, int m)
{
    int64_t total = 0;
    for (int j = 0; j < SHM_KEY_MEMBERS; j++)
        if (ks_member_held(&k->members[j], NULL))
            total += atomic_load(&k->members[j].used_tokens);
    int64_t mine = atomic_load(&k->members[m].used_tokens);
    return total > 0 ? 100.0 * (double)mine / (double)total : 0.0;
}

static void keys_json(yajl_gen g, const struct shm_layout *l, int64_t now_ns)
{
    key(g, "keys");
    yajl_gen_array_open(g);
    for (unsigned i = 0; i < n_keys(l); i++) {
        char fp[SHM_KEY_FP_MAX], msg[SHM_MESSAGE_MAX], err[256];
        fingerprint(l, i, fp);
        message(l, i, msg, sizeof(msg));
        uint32_t state = atomic_load(&l->keys[i].state);
        yajl_gen_map_open(g);
        str(g, "fingerprint", fp);
        str(g, "state", key_state_name(state));
        if (state != SHM_KEY_OK) {
            str(g, "message", msg);
            num(g, "set_aside_ms", atomic_load(&l->keys[i].set_aside_ms));
        }
        struct ks_segment ks;
        struct tb_stats st;
        if (ks_attach_ro(&ks, fp, err, sizeof(err)) == 0) {
            const struct shm_key_layout *k = ks.layout;
            if (tb_stats(&k->tokens, now_ns, &st) == 0) {
                str(g, "segment", ks.name);
                flag(g, "anchored", st.anchored);
                num(g, "projected", st.projected_tokens);
                num(g, "refill_rate", st.refill_rate);
                num(g, "cap", st.cap_tokens);
                num(g, "in_flight", st.inflight_tokens);
                num(g, "slots_in_use", st.slots_in_use);
                num(g, "last_reading_tokens", llround(st.last_reading.tokens_left));
                num(g, "last_reading_age_ms",
                    st.last_reading_age_ns >= 0 ? st.last_reading_age_ns / KD_NS_PER_MS : -1);
                num(g, "spent", atomic_load(&k->spent_tokens));
                num(g, "lost", atomic_load(&k->lost_tokens));
                num(g, "written_off", st.writeoff_tokens);
            }
            key(g, "instances");
            yajl_gen_array_open(g);
            for (int m = 0; m < SHM_KEY_MEMBERS; m++) {
                const struct shm_key_member *mb = &k->members[m];
                int64_t owner = 0;
                if (!ks_member_held(mb, &owner))
                    continue;
                char inst[SHM_INSTANCE_MAX];
                memcpy(inst, mb->instance, sizeof(inst));
                inst[sizeof(inst) - 1] = '\0';
                yajl_gen_map_open(g);
                str(g, "instance", inst);
                num(g, "supervisor_pid", owner);
                num(g, "weight", atomic_load(&mb->weight));
                rate(g, "share_pct", share_pct(k, m));
                num(g, "spent", atomic_load(&mb->spent_tokens));
                num(g, "lost", atomic_load(&mb->lost_tokens));
                flag(g, "has_work", atomic_load(&mb->active_until_ns) > now_ns);
                yajl_gen_map_close(g);
            }
            yajl_gen_array_close(g);
            ks_close(&ks);
        }
        yajl_gen_map_close(g);
    }
    yajl_gen_array_close(g);
}

void shm_report_keys_text(FILE *out, const struct shm_layout *l, int64_t now_ns)
{
    for (unsigned i = 0; i < n_keys(l); i++) {
        char fp[SHM_KEY_FP_MAX], msg[SHM_MESSAGE_MAX], err[256];
        fingerprint(l, i, fp);
        uint32_t state = atomic_load(&l->keys[i].state);
        fprintf(out, "key %.8s: %s", fp, key_state_name(state));
        if (state != SHM_KEY_OK) {
            message(l, i, msg, sizeof(msg));
            fprintf(out, ", set aside: %s\n", msg);
            continue;
        }
        struct ks_segment ks;
        struct tb_stats st;
        if (ks_attach_ro(&ks, fp, err, sizeof(err)) != 0) {
            fprintf(out, " (%s)\n", err);
            continue;
        }
        const struct shm_key_layout *k = ks.layout;
        if (tb_stats(&k->tokens, now_ns, &st) == 0)
            fprintf(out,
                    ", projected %" PRId64 " of cap %" PRId64 ", refill %" PRId64
                    "/min, in flight %" PRId64 ", spent %" PRId64 ", lost %" PRId64 "\n",
                    st.projected_tokens, st.cap_tokens, st.refill_rate, st.inflight_tokens,
                    (int64_t)atomic_load(&k->spent_tokens), (int64_t)atomic_load(&k->lost_tokens));
        for (int m = 0; m < SHM_KEY_MEMBERS; m++) {
            const struct shm_key_member *mb = &k->members[m];
            int64_t owner = 0;
            if (!ks_member_held(mb, &owner))
                continue;
            char inst[SHM_INSTANCE_MAX];
            memcpy(inst, mb->instance, sizeof(inst));
            inst[sizeof(inst) - 1] = '\0';
            fprintf(out, "  shared by '%s' (pid %lld): weight %lld, share %.1f %%%s\n", inst,
                    (long long)owner, (long long)atomic_load(&mb->weight), share_pct(k, m),
                    atomic_load(&mb->active_until_ns) > now_ns ? ", has work" : "");
        }
        ks_close(&ks);
    }
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

void shm_report_status_json(yajl_gen g, const struct shm_report_status *s)
{
    const struct shm_status *st = s->st;
    yajl_gen_map_open(g);
    str(g, "instance", s->instance);
    flag(g, "running", s->running);
    num(g, "pid", s->running ? s->pid : 0);
    str(g, "state", s->have_status ? st->state : "absent");
    num(g, "start_ms", s->have_status ? st->start_ms : 0);
    num(g, "generation", s->have_status ? (long long)st->generation : 0);
    num(g, "deals", s->deals);
    if (s->store_error != NULL && s->store_error[0] != '\0')
        str(g, "store_error", s->store_error);
    if (s->segment_error != NULL && s->segment_error[0] != '\0')
        str(g, "segment_error", s->segment_error);
    const struct shm_layout *l = s->l;
    if (l != NULL) {
        const struct tb_stats *tbs = s->tbs;
        char url[128];
        key(g, "web");
        if (shm_report_web_url(l, url, sizeof(url))) {
            yajl_gen_map_open(g);
            str(g, "url", url);
            yajl_gen_map_close(g);
        } else {
            yajl_gen_null(g);
        }
        key(g, "tokens");
        yajl_gen_map_open(g);
        flag(g, "anchored", tbs->anchored);
        num(g, "projected", tbs->projected_tokens);
        num(g, "refill_rate", tbs->refill_rate);
        num(g, "cap", tbs->cap_tokens);
        double left = tbs->last_reading.tokens_left;
        num(g, "last_reading_tokens", isfinite(left) && fabs(left) < 1e15 ? llround(left) : 0);
        num(g, "last_reading_age_ms",
            tbs->last_reading_age_ns >= 0 ? tbs->last_reading_age_ns / KD_NS_PER_MS : -1);
        num(g, "in_flight", tbs->inflight_tokens);
        yajl_gen_map_close(g);
        keys_json(g, l, kd_mono_ns());
        key(g, "processes");
        yajl_gen_array_open(g);
        for (int r = 0; r < SHM_ROLE_COUNT; r++) {
            const struct shm_proc_slot *p = &l->procs[r];
            if (!runs_here(l, r))
                continue;
            int64_t started = atomic_load(&p->started_ms);
            char err_text[4 * SHM_MESSAGE_MAX];
            last_error(p, err_text, sizeof(err_text));
            yajl_gen_map_open(g);
            str(g, "role", shm_role_name((enum shm_role)r));
            num(g, "pid", atomic_load(&p->pid));
            str(g, "state", shm_proc_state_name(atomic_load(&p->state)));
            num(g, "uptime_s", started > 0 ? (s->now_ms - started) / 1000 : 0);
            num(g, "restarts", atomic_load(&p->restarts));
            num(g, "last_exit_status", atomic_load(&p->last_exit_status));
            str(g, "last_error", err_text);
            yajl_gen_map_close(g);
        }
        yajl_gen_array_close(g);
    }
    yajl_gen_map_close(g);
}
