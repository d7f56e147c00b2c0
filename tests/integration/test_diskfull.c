/*
 * test_diskfull.c: the daemon's store on a disk that fills up.
 *
 * The store folder is a private 2 MiB tmpfs (a mount namespace of the test process, which
 * the daemon inherits; skipped when mounting is not allowed), and the daemon starts with a
 * 1 MiB initial map that may grow to 64 MiB, so the data file itself meets ENOSPC, not the
 * map cap. Before it starts, a filler file takes all but 96 KiB of that disk, less than
 * the first discovery pass needs (the simulator's catalog is large enough that it peeks
 * hundreds of new ASINs, each a `seen` record). It asserts that the daemon:
 *
 *   * reports it: a log line naming "no space", and a last_error saying so in the process
 *     table and in `kdeals status --json` (see the KNOWN BUG note below: sometimes the
 *     store misreports a full disk as an LMDB fatal error);
 *   * pauses spending: once its writes meet the full disk and the requests in flight
 *     have been answered, the simulator's tokens_consumed stays (nearly) flat over a window;
 *   * keeps running (no worker dies, no restart) and resumes by itself when space returns
 *     (the filler is removed): the delayed writes succeed and deals are committed again;
 *   * loses nothing: the store invariants of kdh_check_store after the stop (every peeked
 *     survivor stored or pending, every record decodes, mdb_stat opens it).
 */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/clock.h"
#include "kd_harness.h"
#include "kd_test.h"
#include "shm/counters.h"

#define KEY       "DiskFullTestKey0123456789abcdef"
#define MINUTE_MS 100
#define FREE_LEFT (96 * 1024)
#define EIO_TEXT  "LMDB reported corruption or a fatal error"

static const char *const sim_args[] = {"--keys",        KEY,     "--seed",      "31",
                                       "--products",    "20000", "--minute-ms", "100",
                                       "--refill-rate", "20",    NULL};

/* Replaces the first FROM in the file at PATH by TO. */
static void edit_file(const char *path, const char *from, const char *to)
{
    char *text = kd_read_file(path, NULL);
    assert_non_null(text);
    char *at = strstr(text, from);
    assert_non_null(at);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "%.*s%s%s", (int)(at - text), text, to, at + strlen(from));
    fclose(f);
    free(text);
}

static void write_filler(const char *path, long long bytes)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    static char block[64 * 1024];
    memset(block, 0xa5, sizeof(block));
    while (bytes > 0) {
        size_t n = bytes < (long long)sizeof(block) ? (size_t)bytes : sizeof(block);
        ssize_t w = write(fd, block, n);
        assert_true(w > 0);
        bytes -= w;
    }
    close(fd);
}

static int any_last_error(const struct shm_segment *seg, const char *needle)
{
    for (int r = SHM_ROLE_SCANNER; r < SHM_PIPELINE_ROLES; r++) {
        char msg[SHM_MESSAGE_MAX];
        memcpy(msg, seg->layout->procs[r].last_error, sizeof(msg));
        msg[sizeof(msg) - 1] = '\0';
        if (strstr(msg, needle) != NULL)
            return 1;
    }
    return 0;
}

static int64_t consumed(const struct kdh_sim *sim)
{
    return kdh_sim_stat(sim, "tokens_consumed", NULL);
}

static void test_disk_full_pauses_and_resumes(void **state)
{
    (void)state;
    struct kdh_sim sim;
    kdh_sim_start(&sim, sim_args);
    struct kdh_daemon d;
    kdh_daemon_config(&d, &sim, KEY, MINUTE_MS, "[scan]\npass_pause = 1s\n");
    edit_file(d.conf, "map_size_mb = 64\n", "map_size_mb = 1\nmax_map_size_mb = 64\n");
    mkdir(d.store, 0700);
    if (unshare(CLONE_NEWNS) != 0) {
        kdh_sim_stop(&sim);
        kd_test_skip("cannot create a mount namespace (needs root/CAP_SYS_ADMIN)");
    }
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0 ||
        mount("tmpfs", d.store, "tmpfs", 0, "size=2m,mode=0700") != 0) {
        kdh_sim_stop(&sim);
        kd_test_skip("cannot mount a tmpfs here");
    }
    /* Leave FREE_LEFT: the new environment takes some of it, and the first discovery pass
     * (hundreds of peeked ASINs, each a `seen` record) needs more than the rest. Filling
     * later would depend on the feed still offering new ASINs by then. */
    char filler[700];
    snprintf(filler, sizeof(filler), "%s/filler", d.store);
    struct statvfs vfs;
    assert_int_equal(statvfs(d.store, &vfs), 0);
    write_filler(filler, (long long)vfs.f_bavail * (long long)vfs.f_frsize - FREE_LEFT);

    kdh_daemon_start(&d);
    struct shm_segment seg;
    kdh_daemon_attach(&d, &seg);

    /* 1. It fills the disk and says so, as a full disk: LMDB's "short write" (EIO) on a
     * nearly full filesystem is reported as no space, not as corruption. */
    if (!KDH_WAIT_FOR(kdh_log_contains(&d, "no space"), 90))
        fail_msg("no \"no space\" store-write failure logged after 90 s (see %s)", d.log);
    assert_false(kdh_log_contains(&d, EIO_TEXT));
    const char *said = "no space";
    assert_true(KDH_WAIT_FOR(any_last_error(&seg, said), 10));
    const char *status[] = {"status", "--json", NULL};
    char *out = NULL;
    assert_int_equal(kdh_cli(&d, status, 30, &out), 0);
    if (strstr(out, said) == NULL)
        fail_msg("`kdeals status --json` does not report the failed writes: %s", out);
    free(out);
    int64_t deals_full = shm_counter_total(seg.layout, SHM_C_deals_committed);

    /* 2. Spending pauses. Every stage meets the full disk within a few write attempts and
     * then stops fetching; answers already in flight still arrive (no latency here, so they
     * are answered within the settle time). Then the ledger must stay nearly flat. */
    kdh_nap_ms(3000);
    int64_t c0 = consumed(&sim);
    int64_t spent0[SHM_ROLE_COUNT];
    for (int r = 0; r < SHM_PIPELINE_ROLES; r++)
        spent0[r] = shm_counter_get(&seg.layout->counters[r], SHM_C_tokens_spent);
    kdh_nap_ms(4000);
    int64_t c1 = consumed(&sim);
    /* Running freely, spending follows the refill: 20 tokens a Keepa minute of 100 ms, 800
     * in 4 s. Paused, it must stay under a quarter of that (a stray batch whose write found
     * a reusable page may go out). */
    printf(
        "    disk full: %lld tokens consumed in a 4 s window (scanner %lld, committer %lld, "
        "updater %lld); %lld deals so far\n",
        (long long)(c1 - c0),
        (long long)(shm_counter_get(&seg.layout->counters[SHM_ROLE_SCANNER], SHM_C_tokens_spent) -
                    spent0[SHM_ROLE_SCANNER]),
        (long long)(shm_counter_get(&seg.layout->counters[SHM_ROLE_COMMITTER], SHM_C_tokens_spent) -
                    spent0[SHM_ROLE_COMMITTER]),
        (long long)(shm_counter_get(&seg.layout->counters[SHM_ROLE_UPDATER], SHM_C_tokens_spent) -
                    spent0[SHM_ROLE_UPDATER]),
        (long long)deals_full);
    assert_true(c1 - c0 <= 200);
    for (int r = SHM_ROLE_SCANNER; r < SHM_PIPELINE_ROLES; r++) {
        assert_true(atomic_load(&seg.layout->procs[r].pid) > 0);
        assert_int_equal(atomic_load(&seg.layout->procs[r].restarts), 0);
    }

    /* 3. Space returns: it resumes by itself. */
    assert_int_equal(unlink(filler), 0);
    if (!KDH_WAIT_FOR(shm_counter_total(seg.layout, SHM_C_deals_committed) > deals_full + 5, 120))
        fail_msg("no deals committed after space returned (see %s)", d.log);
    assert_true(KDH_WAIT_FOR(consumed(&sim) > c1 + 150, 60));
    assert_true(KDH_WAIT_FOR(kdh_log_contains(&d, "delayed store write succeeded"), 10));
    for (int r = SHM_ROLE_SCANNER; r < SHM_PIPELINE_ROLES; r++)
        assert_int_equal(atomic_load(&seg.layout->procs[r].restarts), 0);
    kdh_check_rings(&seg);
    int64_t deals_end = shm_counter_total(seg.layout, SHM_C_deals_committed);
    shm_segment_detach(&seg);

    /* 4. Nothing lost. */
    assert_int_equal(kdh_daemon_stop(&d), 0);
    unsigned survivors = 0;
    uint64_t stored = kdh_check_store(&d, &survivors);
    printf("    deals committed: %lld when the disk filled, %lld at the end; store: %llu deals, "
           "%u survivors, none lost\n",
           (long long)deals_full, (long long)deals_end, (unsigned long long)stored, survivors);
    assert_true(stored > 0);
    umount2(d.store, MNT_DETACH);
    kdh_sim_stop(&sim);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_disk_full_pauses_and_resumes),
    };
    kd_test_set_timeout(290);
    return KD_RUN_TESTS(tests, argc, argv);
}
