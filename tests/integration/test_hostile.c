/*
 * test_hostile.c: the whole daemon against a hostile Keepa.
 *
 * kdeals-sim answers the committer's full fetches (/product with offers: the scanner peeks
 * without offers, the updater's light updates carry none) with one hostile body after another:
 * a drip slower than any timeout, an endless body, a 160 MiB body, a body nested 10^6 deep,
 * a body whose every product field has the wrong JSON type, and one where only each
 * product's asin is left readable (the sim's offers_NAME=1 faults). For each kind in turn the
 * test asserts what a user relies on:
 *
 *   * the other workers go on: while the committer gets nothing but hostile answers, the
 *     scanner's peeks and the updater's light updates keep advancing (waited for on their
 *     counters, with a deadline; the updater may idle only once no re-check is left due,
 *     as happens when every deal stored before the phases has ended), and the committer
 *     commits nothing from those answers;
 *   * the stuck request ends and is retried: the next full fetch reaches the server within
 *     request_timeout (5 s) + SLACK_S of the first one, and the log names what cut it (the
 *     timeout for drip, the decoder's 64 MiB limit for endless and huge, its depth limit for
 *     deep, the missing product identity for mistyped, the per-product type check for
 *     mistyped_fields);
 *   * nothing is lost: every survivor pending when the kind began is still pending when it
 *     ends, and the store invariant holds (every peeked survivor is a deal or pending). A
 *     mistyped_fields answer is a usable answer whose products are all garbled (the client
 *     reports them MALFORMED): the committer judges none of them (no deal, no rejection from
 *     such an answer) and retries each survivor like one missing from the answer, so one that
 *     leaves pending may only have been given up, with the reason in the log;
 *   * garbage is not bought in bulk: after each failed full fetch in a row the committer
 *     pauses longer (a quarter Keepa minute, doubling, up to two) before the next one;
 *
 * and for the whole run: no worker died or was restarted; each worker's peak resident size
 * (VmHWM) stays under RSS_BOUND_KB even though it was sent 64+ MiB bodies; not one 429; the
 * API key is nowhere in the log; after `clear` every survivor left pending by the hostile
 * phases is settled (committed or judged), and deals are committed again.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"
#include "kd_harness.h"
#include "kd_test.h"
#include "shm/counters.h"
#include "store/store.h"

#define KEY        "HostileTestKey0123456789abcdef"
#define MINUTE_MS  100
#define TIMEOUT_S  5  /* [keepa] request_timeout, the smallest allowed */
#define SLACK_S    10 /* the client's backoff (<= 1 s after one try) and a slow machine */
#define MAX_KEYS   4096
#define FIRST_WAIT 60 /* seconds: a deadline for progress the daemon makes anyway */

/* Peak resident size of a worker. Under ASan the allocator's quarantine of freed blocks
 * (256 MiB at most), its shadow (1/8 of it) and ASan's own tables come on top: a worker that
 * only churns through small blocks for long enough (the scanner, peeking through every phase)
 * reaches 340 MiB or so without holding anything. */
#if defined(__SANITIZE_ADDRESS__)
#define KD_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define KD_ASAN 1
#endif
#endif
#ifdef KD_ASAN
#define RSS_BOUND_KB (384L * 1024)
#else
#define RSS_BOUND_KB (64L * 1024)
#endif

static const char *const sim_args[] = {"--keys",        KEY,    "--seed",      "31",
                                       "--products",    "3000", "--minute-ms", "100",
                                       "--refill-rate", "50",   NULL};

/* [update] intervals in Keepa time: each deal is re-checked every 0.5 to 1 s here. The
 * judgement keeps the better-selling survivors only (max_rank), so the backlog the stuck
 * phases pile up stays a size the garbled phases can cycle through in their time. */
static const char *const extra_conf = "[keepa]\nrequest_timeout = 5s\n"
                                      "[scan]\npass_pause = 1s\ndedup_window = 0\n"
                                      "[update]\nmin_interval = 5m\nmax_interval = 10m\n"
                                      "[filter]\nmax_rank = 30000\n";

/* Each kind, and what bounds it in the client (the committer logs it): the whole-request
 * timeout, the decoder's 64 MiB body limit, its depth limit, the identity check. */
static const struct {
    const char *kind, *bounded_by;
} kinds[] = {
    {"drip", "Operation timed out after 50"}, /* curl: "... after 5001 milliseconds" */
    {"endless", "body larger than the limit of 67108864 bytes"},
    {"huge", "body larger than the limit of 67108864 bytes"},
    {"deep", "JSON nested deeper than"},
    {"mistyped", "products without a readable asin"},
    {"mistyped_fields", "fields of the wrong JSON type withheld"},
};

static int64_t role_counter(const struct shm_segment *seg, enum shm_role r, enum shm_counter_id id)
{
    return shm_counter_get(&seg->layout->counters[r], id);
}

static int64_t injected(const struct kdh_sim *sim, const char *kind)
{
    return kdh_sim_stat(sim, "faults_injected", kind, NULL);
}

static long vm_kb(pid_t pid, const char *field)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    char *text = kd_read_file(path, NULL);
    const char *p = text ? strstr(text, field) : NULL;
    long kb = p != NULL ? strtol(p + strlen(field), NULL, 10) : -1;
    free(text);
    return kb;
}

/* The keys of the pending db now (at most MAX_KEYS into KEYS); returns how many there are. */
static unsigned pending_keys(const struct kdh_daemon *d, struct st_key *keys)
{
    unsigned n = kdh_pending_keys(d, keys, MAX_KEYS);
    return n < MAX_KEYS ? n : MAX_KEYS;
}

/* How many of the N keys of OLD are among the M keys of NOW. */
static unsigned still_there(const struct st_key *old, unsigned n, const struct st_key *now,
                            unsigned m)
{
    unsigned k = 0;
    for (unsigned i = 0; i < n; i++)
        for (unsigned j = 0; j < m; j++)
            if (memcmp(&old[i], &now[j], sizeof(old[i])) == 0) {
                k++;
                break;
            }
    return k;
}

/* How many times NEEDLE occurs in the daemon's log. */
static unsigned log_count(const struct kdh_daemon *d, const char *needle)
{
    char *text = kd_read_file(d->log, NULL);
    unsigned n = 0;
    for (const char *p = text; p != NULL && (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    free(text);
    return n;
}

/* Bytes in the daemon's log now: the start of what a phase logs. */
static size_t log_size(const struct kdh_daemon *d)
{
    size_t len = 0;
    free(kd_read_file(d->log, &len));
    return len;
}

/*
 * The mistyped_fields phase, read from what the daemon logged since byte FROM: no commit
 * batch answered then committed, rejected, re-checked or expired anything (every product was
 * garbled), and each of the N survivors of BEFORE no longer among the M of AFTER was given up
 * with the garbled answers as the reason. Returns how many were given up.
 */
static unsigned check_garbled_phase(const struct kdh_daemon *d, size_t from,
                                    const struct st_key *before, unsigned n,
                                    const struct st_key *after, unsigned m)
{
    size_t len = 0;
    char *text = kd_read_file(d->log, &len);
    assert_non_null(text);
    assert_true(len >= from);
    const char *phase = text + from;
    unsigned answered = 0;
    for (const char *p = phase; (p = strstr(p, "]: commit batch of ")) != NULL; p++) {
        const char *after_n = p + strlen("]: commit batch of ");
        after_n += strspn(after_n, "0123456789");
        if (after_n[0] != ':' || strncmp(after_n, ": nothing usable", 16) == 0)
            continue; /* a failed batch, or the pause after a useless answer */
        const char *eol = strchr(after_n, '\n');
        const char *z =
            strstr(after_n, " 0 deals, 0 rejected, 0 re-checked stored deals, 0 expired,");
        if (z == NULL || (eol != NULL && z > eol))
            fail_msg("a commit batch judged a garbled answer: %.*s (see %s)",
                     (int)(eol != NULL ? eol - p : 200), p, d->log);
        answered++;
    }
    assert_true(answered > 0);
    unsigned given_up = 0;
    for (unsigned i = 0; i < n; i++) {
        bool kept = false;
        for (unsigned j = 0; j < m && !kept; j++)
            kept = memcmp(&before[i], &after[j], sizeof(before[i])) == 0;
        if (kept)
            continue;
        char asin[ST_ASIN_LEN + 1], needle[64];
        st_key_asin(&before[i], asin);
        snprintf(needle, sizeof(needle), "giving up on %s after", asin);
        const char *g = strstr(phase, needle);
        const char *eol = g != NULL ? strchr(g, '\n') : NULL;
        const char *why = g != NULL ? strstr(g, "fields of the wrong JSON type") : NULL;
        if (why == NULL || (eol != NULL && why > eol))
            fail_msg("%s left pending during the garbled answers, but not given up for them "
                     "(see %s)",
                     asin, d->log);
        given_up++;
    }
    free(text);
    return given_up;
}

/* Milliseconds of the log line's UTC timestamp ("2026-11-30T01:59:30.428Z ..."), or -1. */
static int64_t line_ms(const char *line)
{
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    int ms = 0;
    if (sscanf(line, "%4d-%2d-%2dT%2d:%2d:%2d.%3dZ", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
               &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &ms) != 7)
        return -1;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return (int64_t)timegm(&tm) * 1000 + ms;
}

/*
 * A Keepa that keeps failing is not fed the whole backlog at once: after the k-th failed
 * commit batch in a row (the request failed, or its answer judged nothing: all garbled,
 * missing or without offers) the committer waits a quarter Keepa minute << min(k - 1, 3)
 * before the next one. Checked on the committer's own log lines: the time between consecutive
 * failure lines is never shorter than that pause (a lower bound, which a slow machine only
 * makes easier to meet; 1 ms for the timestamps' rounding). Returns the gaps checked.
 */
static unsigned check_failed_batch_spacing(const struct kdh_daemon *d)
{
    char *text = kd_read_file(d->log, NULL);
    assert_non_null(text);
    unsigned streak = 0, checked = 0;
    int64_t last_ms = -1;
    for (char *line = text; line != NULL && *line != '\0';) {
        char *end = strchr(line, '\n');
        if (end != NULL)
            *end = '\0';
        const char *batch = strstr(line, "committer[");
        batch = batch != NULL ? strstr(batch, "]: commit batch of ") : NULL;
        if (batch != NULL) {
            const char *after = batch + strlen("]: commit batch of ");
            after += strspn(after, "0123456789");
            int64_t t = line_ms(line);
            bool failed =
                strncmp(after, " failed", 7) == 0 || strncmp(after, ": nothing usable", 16) == 0;
            /* The summary of an answered batch that judged nothing follows its "nothing
             * usable" line; only a batch that judged something ends the row. */
            bool judged = after[0] == ':' && !failed &&
                          strstr(after, " 0 deals, 0 rejected, 0 re-checked stored deals, "
                                        "0 expired,") == NULL;
            if (failed && t >= 0) {
                if (streak > 0 && last_ms >= 0) {
                    int64_t pause = (int64_t)(MINUTE_MS / 4) << (streak < 4 ? streak - 1 : 3);
                    if (t - last_ms < pause - 1)
                        fail_msg("failed commit batch %u of a row came %lld ms after the "
                                 "previous one; the pause is %lld ms (see %s)",
                                 streak + 1, (long long)(t - last_ms), (long long)pause, d->log);
                    checked++;
                }
                streak++;
                last_ms = t;
            } else if (judged) {
                streak = 0;
            }
        }
        line = end != NULL ? end + 1 : NULL;
    }
    free(text);
    return checked;
}

static void set_faults(const struct kdh_sim *sim, const char *spec)
{
    char path[128];
    snprintf(path, sizeof(path), "/_sim/faults?spec=%s", spec);
    yajl_tree_free(kdh_sim_post(sim, path));
}

/*
 * One hostile kind aimed at the committer (see the file comment). BEFORE and AFTER are
 * scratch arrays for pending keys.
 */
static void hostile_phase(const struct kdh_sim *sim, const struct kdh_daemon *d,
                          const struct shm_segment *seg, const char *kind, const char *bounded_by,
                          struct st_key *before, struct st_key *after)
{
    int64_t inj0 = injected(sim, kind);
    unsigned cut0 = log_count(d, bounded_by);
    char spec[64];
    snprintf(spec, sizeof(spec), "offers_%s=1", kind);
    set_faults(sim, spec);
    /* The committer's next full fetch gets the hostile body. */
    if (!KDH_WAIT_FOR(injected(sim, kind) > inj0, FIRST_WAIT))
        fail_msg("%s: the committer made no full fetch in %d s (see %s)", kind, FIRST_WAIT, d->log);
    int64_t t_first = kd_mono_ns();
    size_t log_from = log_size(d);
    bool garbled = strcmp(kind, "mistyped_fields") == 0; /* answered, products MALFORMED */
    int64_t inj1 = injected(sim, kind);
    /* The committer has one fetch in flight at a time: the honest one before was settled. */
    int64_t committed0 = shm_counter_total(seg->layout, SHM_C_deals_committed);
    unsigned n_before = pending_keys(d, before);
    assert_true(n_before > 0); /* it was fetching survivors */
    int64_t peeked1 = role_counter(seg, SHM_ROLE_SCANNER, SHM_C_asins_peeked);
    int64_t updates1 = role_counter(seg, SHM_ROLE_UPDATER, SHM_C_http_requests);

    /* The stuck request ends within the timeout and is retried. */
    if (!KDH_WAIT_FOR(injected(sim, kind) > inj1, TIMEOUT_S + SLACK_S))
        fail_msg("%s: no new full fetch within %d s of a hostile answer (see %s)", kind,
                 TIMEOUT_S + SLACK_S, d->log);
    double retry_s = (double)(kd_mono_ns() - t_first) / 1e9;

    /* Meanwhile (the fault still on) the scanner peeks and the updater updates. */
    if (!KDH_WAIT_FOR(role_counter(seg, SHM_ROLE_SCANNER, SHM_C_asins_peeked) > peeked1,
                      FIRST_WAIT))
        fail_msg("%s: the scanner stopped peeking (see %s)", kind, d->log);
    /* The updater goes on while it has work. The committer stores nothing through these
     * phases while stored deals end and expire, so late phases may find nothing scheduled:
     * the updater may idle then, but only once every re-check due when the wait began has
     * been made (nothing due SLACK_S ago, at least SLACK_S in). A stuck updater leaves those
     * due and fails. */
    int64_t wait0_ms = kd_wall_ms();
    bool idle = false;
    if (!KDH_WAIT_FOR(role_counter(seg, SHM_ROLE_UPDATER, SHM_C_http_requests) > updates1 ||
                          (idle = kd_wall_ms() >= wait0_ms + SLACK_S * 1000 &&
                                  kdh_schedule_due(d, kd_wall_ms() - SLACK_S * 1000) == 0),
                      FIRST_WAIT))
        fail_msg("%s: the updater stopped updating with re-checks due (see %s)", kind, d->log);
    if (idle)
        printf("    %-8s nothing was due for the updater (the deals stored before had ended)\n",
               kind);
    /* An answer that parses (mistyped) is judged per product: go on until every survivor
     * pending at the start was answered more often than the committer's give-up limit for
     * products missing from an answer (5), had it been judged so. mistyped_fields answers
     * are judged per product too (as MALFORMED): as many, so give-ups happen. */
    int64_t want =
        strcmp(kind, "mistyped") == 0 || garbled ? inj1 + 8 * (int64_t)((n_before + 4) / 5) : 0;
    if (!KDH_WAIT_FOR(injected(sim, kind) >= want, FIRST_WAIT))
        fail_msg("%s: fewer than %lld hostile answers in %d s (see %s)", kind,
                 (long long)(want - inj0), FIRST_WAIT, d->log);
    int64_t peeked2 = role_counter(seg, SHM_ROLE_SCANNER, SHM_C_asins_peeked);
    int64_t updates2 = role_counter(seg, SHM_ROLE_UPDATER, SHM_C_http_requests);

    if (!KDH_WAIT_FOR(log_count(d, bounded_by) > cut0, SLACK_S))
        fail_msg("%s: the log does not say '%s' (see %s)", kind, bounded_by, d->log);
    /* Nothing was committed from a hostile answer, and nothing pending was dropped. */
    assert_int_equal(shm_counter_total(seg->layout, SHM_C_deals_committed), committed0);
    unsigned n_after = pending_keys(d, after);
    unsigned kept = still_there(before, n_before, after, n_after);
    kdh_check_store(d, NULL);
    printf("    %-8s next full fetch %.1f s after the first hostile one; meanwhile %lld peeks, "
           "%lld updater requests; %u/%u survivors still pending; %lld hostile answers\n",
           kind, retry_s, (long long)(peeked2 - peeked1), (long long)(updates2 - updates1), kept,
           n_before, (long long)(injected(sim, kind) - inj0));
    if (garbled) {
        unsigned given_up = check_garbled_phase(d, log_from, before, n_before, after, n_after);
        printf("    %-8s no survivor judged on a garbled answer; %u given up for them\n", kind,
               given_up);
        return;
    }
    if (kept != n_before)
        fail_msg("%s: %u of %u pending survivors left pending without a usable answer (see %s)",
                 kind, n_before - kept, n_before, d->log);
}

static void test_hostile_server(void **state)
{
    (void)state;
    struct kdh_sim sim;
    kdh_sim_start(&sim, sim_args);
    struct kdh_daemon d;
    kdh_daemon_config(&d, &sim, KEY, MINUTE_MS, extra_conf);
    kdh_daemon_start(&d);
    struct shm_segment seg;
    kdh_daemon_attach(&d, &seg);
    pid_t pids[SHM_ROLE_COUNT] = {0};
    for (int r = SHM_ROLE_SCANNER; r < SHM_PIPELINE_ROLES; r++) {
        if (!KDH_WAIT_FOR((pids[r] = (pid_t)atomic_load(&seg.layout->procs[r].pid)) > 0, 20))
            fail_msg("%s did not start (see %s)", shm_role_name((enum shm_role)r), d.log);
    }
    /* An honest server first: deals are stored, so the updater has work. */
    if (!KDH_WAIT_FOR(shm_counter_total(seg.layout, SHM_C_deals_committed) >= 3 &&
                          role_counter(&seg, SHM_ROLE_UPDATER, SHM_C_http_requests) >= 1,
                      FIRST_WAIT))
        fail_msg("no deals and updates after %d s (see %s)", FIRST_WAIT, d.log);

    struct st_key *before = calloc(MAX_KEYS, sizeof(*before));
    struct st_key *after = calloc(MAX_KEYS, sizeof(*after));
    for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++)
        hostile_phase(&sim, &d, &seg, kinds[k].kind, kinds[k].bounded_by, before, after);

    /* A sane server again: what the hostile phases left pending is settled. */
    unsigned n_left = pending_keys(&d, before);
    int64_t committed = shm_counter_total(seg.layout, SHM_C_deals_committed);
    set_faults(&sim, "clear");
    unsigned n_now = 0;
    if (!KDH_WAIT_FOR(
            (n_now = pending_keys(&d, after), still_there(before, n_left, after, n_now) == 0),
            FIRST_WAIT))
        fail_msg("%u of %u survivors still pending %d s after the server became sane (see %s)",
                 still_there(before, n_left, after, n_now), n_left, FIRST_WAIT, d.log);
    if (!KDH_WAIT_FOR(shm_counter_total(seg.layout, SHM_C_deals_committed) > committed, FIRST_WAIT))
        fail_msg("no deal committed after the server became sane (see %s)", d.log);
    printf("    after clear: the %u survivors left pending were settled, %lld deals committed\n",
           n_left, (long long)(shm_counter_total(seg.layout, SHM_C_deals_committed) - committed));
    free(before);
    free(after);

    /* The same processes all along, each within its memory bound. */
    for (int r = SHM_ROLE_SCANNER; r < SHM_PIPELINE_ROLES; r++) {
        assert_int_equal(atomic_load(&seg.layout->procs[r].pid), pids[r]);
        long hwm = vm_kb(pids[r], "VmHWM:");
        printf("    %-9s VmHWM %ld KiB (bound %ld KiB)\n", shm_role_name((enum shm_role)r), hwm,
               RSS_BOUND_KB);
        assert_true(hwm > 0);
        if (hwm >= RSS_BOUND_KB)
            fail_msg("%s peaked at %ld KiB, over the bound of %ld KiB",
                     shm_role_name((enum shm_role)r), hwm, RSS_BOUND_KB);
    }
    assert_int_equal(shm_counter_total(seg.layout, SHM_C_restarts), 0);
    assert_int_equal(kdh_sim_stat(&sim, "http_429", NULL), 0);
    assert_int_equal(shm_counter_total(seg.layout, SHM_C_http_429), 0);
    shm_segment_detach(&seg);
    assert_int_equal(kdh_daemon_stop(&d), 0);
    kdh_check_store(&d, NULL);
    assert_false(kdh_log_contains(&d, KEY));
    unsigned gaps = check_failed_batch_spacing(&d);
    printf("    %u gaps between failed commit batches in a row, none shorter than its pause\n",
           gaps);
    assert_true(gaps >= 20); /* the mistyped phase alone fails dozens in a row */
    /* The mistyped_fields answers are 200s that judged nothing: paused for like failures. */
    assert_true(log_count(&d, "nothing usable in Keepa's answer") >= 10);
    const char *keep = getenv("KDH_KEEP"); /* a folder for the daemon's log, to read it */
    if (keep != NULL) {
        char cmd[1400];
        snprintf(cmd, sizeof(cmd), "mkdir -p '%s' && cp '%s' '%s/'", keep, d.log, keep);
        if (system(cmd) != 0)
            fprintf(stderr, "could not copy %s to %s\n", d.log, keep);
    }
    kdh_sim_stop(&sim);
}

int main(int argc, char **argv)
{
    kd_test_set_timeout(480);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hostile_server),
    };
    return KD_RUN_TESTS(tests, argc, argv);
}
