/*
 * bench_ring.c: cross-process throughput of the shm ring against a pipe and a unix socket.
 *
 * One producer process and one consumer process move N records of a fixed size. Every
 * transport carries the same records and the consumer does the same work with each (copies
 * it out and folds it into a checksum that the producer's must match), so the figures
 * compare transports, not workloads. The pipe and the socket carry length-prefixed records,
 * one write(2) per record, read back through a 64 KiB buffer. Besides throughput, the CPU
 * time both processes used per record (user + system, from wait4) is reported: throughput on
 * a 2-vCPU VM swings with whether the hypervisor runs producer and consumer at the same time,
 * CPU per record much less. Figures are printed as `BENCH <name> <value> <unit>`; nothing is
 * asserted.
 */
#include <errno.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"
#include "shm/ring.h"
#include "shm/segment.h"

struct result {
    _Atomic uint64_t consumer_sum;
    _Atomic int64_t end_ns;
    double cpu_s; /* user + system time of producer and consumer (set by the parent) */
};

/* Waits for PID and adds its user + system CPU time to RES. */
static void reap(pid_t pid, struct result *res)
{
    int st;
    struct rusage ru;
    if (wait4(pid, &st, 0, &ru) != pid)
        return;
    res->cpu_s += (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
                  (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static uint64_t fold(uint64_t sum, const uint8_t *p, size_t len)
{
    uint8_t local[4096];
    memcpy(local, p, len);
    uint64_t w;
    memcpy(&w, local, sizeof(w));
    return sum * 31 + w + local[len - 1];
}

static void fill(uint8_t *buf, size_t len, uint64_t i)
{
    memset(buf, (int)(i & 0xff), len);
    memcpy(buf, &i, sizeof(i));
}

static uint64_t expected_sum(size_t len, uint64_t n)
{
    uint8_t buf[4096];
    uint64_t sum = 0;
    for (uint64_t i = 0; i < n; i++) {
        fill(buf, len, i);
        sum = fold(sum, buf, len);
    }
    return sum;
}

static int write_all(int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

/* Stream transports (pipe, unix socket): [u32 len][payload], one write per record. */
static double run_stream(int fds[2], size_t len, uint64_t n, struct result *res)
{
    pid_t cons = fork();
    if (cons == 0) {
        close(fds[1]);
        uint8_t buf[65536 + 4096];
        size_t have = 0;
        uint64_t sum = 0, got = 0;
        while (got < n) {
            ssize_t r = read(fds[0], buf + have, 65536);
            if (r <= 0)
                _exit(1);
            have += (size_t)r;
            size_t off = 0;
            while (have - off >= 4) {
                uint32_t l;
                memcpy(&l, buf + off, 4);
                if (have - off < 4 + l)
                    break;
                sum = fold(sum, buf + off + 4, l);
                got++;
                off += 4 + l;
            }
            memmove(buf, buf + off, have - off);
            have -= off;
        }
        res->consumer_sum = sum;
        res->end_ns = kd_mono_ns();
        _exit(0);
    }
    int64_t start = kd_mono_ns();
    pid_t prod = fork();
    if (prod == 0) {
        close(fds[0]);
        uint8_t rec[4 + 4096];
        uint32_t l = (uint32_t)len;
        memcpy(rec, &l, 4);
        for (uint64_t i = 0; i < n; i++) {
            fill(rec + 4, len, i);
            if (write_all(fds[1], rec, 4 + len) != 0)
                _exit(1);
        }
        _exit(0);
    }
    close(fds[0]);
    close(fds[1]);
    res->cpu_s = 0;
    reap(prod, res);
    reap(cons, res);
    return (double)(res->end_ns - start) / 1e9;
}

static double run_ring(size_t len, uint64_t n, struct result *res)
{
    char instance[64], run_dir[] = "/tmp/kdbench.XXXXXX", err[256];
    if (mkdtemp(run_dir) == NULL)
        return -1;
    snprintf(instance, sizeof(instance), "bench%d", (int)getpid());
    struct shm_segment seg;
    struct shm_segment_options opt = {.instance = instance, .run_dir = run_dir};
    opt.ring_capacity[SHM_RING_SURVIVORS] = 1u << 20;
    if (shm_segment_create(&seg, &opt, err, sizeof(err)) != 0) {
        fprintf(stderr, "bench_ring: %s\n", err);
        return -1;
    }
    shm_segment_publish(&seg);
    int efd = eventfd(0, EFD_NONBLOCK);
    struct shm_ring *ctl = &seg.layout->rings[SHM_RING_SURVIVORS];
    void *data = shm_segment_ring_data(&seg, SHM_RING_SURVIVORS);

    pid_t cons = fork();
    if (cons == 0) {
        struct ring c;
        ring_open(&c, ctl, data, efd);
        uint64_t sum = 0, got = 0;
        while (got < n) {
            const void *rec;
            size_t l;
            if (ring_read(&c, &rec, &l) == 0) {
                sum = fold(sum, rec, l);
                if ((++got & 63) == 0)
                    ring_ack(&c);
                continue;
            }
            ring_ack(&c);
            ring_wait(&c, 10);
        }
        ring_ack(&c);
        res->consumer_sum = sum;
        res->end_ns = kd_mono_ns();
        _exit(0);
    }
    int64_t start = kd_mono_ns();
    pid_t prod = fork();
    if (prod == 0) {
        struct ring p;
        ring_open(&p, ctl, data, efd);
        for (uint64_t i = 0; i < n; i++) {
            void *dst;
            /* A full ring: spin briefly, then give the CPU away, as a pipe writer would
             * sleep in write(2); a bare spin would bill the consumer's lateness as the
             * ring's CPU cost. */
            for (unsigned spins = 0; ring_claim(&p, len, &dst) == -EAGAIN; spins++)
                if (spins >= 512)
                    sched_yield();
            fill(dst, len, i);
            ring_publish(&p);
        }
        _exit(0);
    }
    res->cpu_s = 0;
    reap(prod, res);
    reap(cons, res);
    double secs = (double)(res->end_ns - start) / 1e9;
    shm_segment_destroy(&seg);
    close(efd);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", run_dir);
    if (system(cmd) != 0)
        fprintf(stderr, "bench_ring: could not remove %s\n", run_dir);
    return secs;
}

/* Prints the figures of one run; returns its CPU nanoseconds per record. */
static double report(const char *transport, size_t len, uint64_t n, double secs, double cpu_s)
{
    double cpu_ns = cpu_s * 1e9 / (double)n;
    printf("BENCH %s.records_per_s.%s %.0f records/s\n", transport, len == 64 ? "64B" : "1KiB",
           (double)n / secs);
    printf("BENCH %s.cpu_ns_per_record.%s %.1f ns\n", transport, len == 64 ? "64B" : "1KiB",
           cpu_ns);
    printf("BENCH %s.mb_per_s.%s %.1f MB/s\n", transport, len == 64 ? "64B" : "1KiB",
           (double)n * (double)len / secs / 1e6);
    return cpu_ns;
}

int main(int argc, char **argv)
{
    double scale = argc > 1 ? atof(argv[1]) : 1.0;
    if (scale <= 0)
        scale = 1.0;
    struct result *res =
        mmap(NULL, sizeof(*res), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    const size_t sizes[] = {64, 1024};
    for (size_t s = 0; s < 2; s++) {
        size_t len = sizes[s];
        uint64_t n_ring = (uint64_t)((len == 64 ? 20e6 : 5e6) * scale);
        uint64_t n_stream = (uint64_t)((len == 64 ? 2e6 : 1e6) * scale);
        const char *tag = len == 64 ? "64B" : "1KiB";

        double t_ring = run_ring(len, n_ring, res);
        int ok_ring = res->consumer_sum == expected_sum(len, n_ring);
        double c_ring = report("ring", len, n_ring, t_ring, res->cpu_s);

        int p[2];
        if (pipe(p) != 0)
            return 1;
        double t_pipe = run_stream(p, len, n_stream, res);
        int ok_pipe = res->consumer_sum == expected_sum(len, n_stream);
        double c_pipe = report("pipe", len, n_stream, t_pipe, res->cpu_s);

        int u[2];
        if (socketpair(AF_UNIX, SOCK_STREAM, 0, u) != 0)
            return 1;
        double t_unix = run_stream(u, len, n_stream, res);
        int ok_unix = res->consumer_sum == expected_sum(len, n_stream);
        double c_unix = report("unix", len, n_stream, t_unix, res->cpu_s);

        double r_ring = (double)n_ring / t_ring, r_pipe = (double)n_stream / t_pipe,
               r_unix = (double)n_stream / t_unix;
        printf("BENCH ring.ratio_vs_pipe.%s %.1f x\n", tag, r_ring / r_pipe);
        printf("BENCH ring.ratio_vs_unix.%s %.1f x\n", tag, r_ring / r_unix);
        /* CPU per record of both processes: what the transport costs the machine, and much
         * less dependent than throughput on whether the two processes run at the same time
         * (a consumer that sleeps costs nothing; spinning and wake-ups are counted). */
        printf("BENCH ring.cpu_ratio_vs_pipe.%s %.1f x\n", tag, c_pipe / c_ring);
        printf("BENCH ring.cpu_ratio_vs_unix.%s %.1f x\n", tag, c_unix / c_ring);
        if (!ok_ring || !ok_pipe || !ok_unix)
            fprintf(stderr, "bench_ring: checksum mismatch (ring %d pipe %d unix %d)\n", ok_ring,
                    ok_pipe, ok_unix);
    }
    return 0;
}
