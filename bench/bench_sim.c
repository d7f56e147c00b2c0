/*
 * bench_sim.c: kdeals-sim throughput for the heaviest request a pipeline sends.
 *
 * Starts the simulator given as argv[1] on loopback (a huge bucket and refill rate so it
 * never answers 429), takes 50 catalog ASINs from the oracle, then keeps CONNS keep-alive
 * connections busy with `/product?asin=<50>&offers=20&stats=90` through libcurl multi, for at
 * most DURATION_MS or MAX_REQUESTS requests, once asking for gzip and once for identity.
 * Prints requests/s and the MB/s of response bodies as they crossed the wire. Asserts nothing.
 */
#include <curl/curl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"

#define CONNS        8
#define DURATION_MS  4000
#define MAX_REQUESTS 20000

struct sink {
    char *p;
    size_t n, cap;
    size_t total;
};

static size_t on_data(char *d, size_t sz, size_t nm, void *u)
{
    struct sink *s = u;
    size_t n = sz * nm;
    s->total += n;
    if (s->cap != 0 && s->n + n < s->cap) {
        memcpy(s->p + s->n, d, n);
        s->n += n;
        s->p[s->n] = '\0';
    }
    return n;
}

static int start_sim(const char *bin, const char *port_file, pid_t *pid)
{
    unlink(port_file);
    *pid = fork();
    if (*pid < 0)
        return -1;
    if (*pid == 0) {
        execl(bin, bin, "--port", "0", "--port-file", port_file, "--quiet", "--products", "100000",
              "--start-tokens", "1000000000000", "--refill-rate", "1000000000", "--threads", "2",
              (char *)NULL);
        _exit(127);
    }
    int64_t deadline = kd_mono_ns() + 20 * KD_NS_PER_SEC;
    while (kd_mono_ns() < deadline) {
        FILE *f = fopen(port_file, "r");
        int port = 0;
        if (f != NULL) {
            int ok = fscanf(f, "%d", &port) == 1;
            fclose(f);
            if (ok && port > 0)
                return port;
        }
        struct timespec nap = {0, 5000000};
        nanosleep(&nap, NULL);
    }
    return -1;
}

static void run(int port, const char *asins, int gzip)
{
    char url[2048];
    snprintf(url, sizeof(url),
             "http://127.0.0.1:%d/product?key=bench&domain=1&asin=%s&offers=20&stats=90", port,
             asins);
    CURLM *m = curl_multi_init();
    CURL *h[CONNS];
    struct sink sink = {NULL, 0, 0, 0};
    struct curl_slist *hdr = NULL;
    if (gzip)
        hdr = curl_slist_append(hdr, "Accept-Encoding: gzip");
    for (int i = 0; i < CONNS; i++) {
        h[i] = curl_easy_init();
        curl_easy_setopt(h[i], CURLOPT_URL, url);
        curl_easy_setopt(h[i], CURLOPT_WRITEFUNCTION, on_data);
        curl_easy_setopt(h[i], CURLOPT_WRITEDATA, &sink);
        curl_easy_setopt(h[i], CURLOPT_HTTPHEADER, hdr);
        curl_easy_setopt(h[i], CURLOPT_TIMEOUT, 60L);
        curl_multi_add_handle(m, h[i]);
    }
    long done = 0, failed = 0, started = CONNS;
    int64_t t0 = kd_mono_ns(), end = t0 + (int64_t)DURATION_MS * KD_NS_PER_MS;
    int running = CONNS;
    while (running > 0) {
        curl_multi_perform(m, &running);
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(m, &left)) != NULL) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            long code = 0;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &code);
            if (msg->data.result == CURLE_OK && code == 200)
                done++;
            else
                failed++;
            CURL *e = msg->easy_handle;
            curl_multi_remove_handle(m, e);
            if (kd_mono_ns() < end && started < MAX_REQUESTS) {
                started++;
                curl_multi_add_handle(m, e); /* same handle: the connection is reused */
                running++;
            }
        }
        if (running > 0)
            curl_multi_poll(m, NULL, 0, 100, NULL);
    }
    double secs = (double)(kd_mono_ns() - t0) / 1e9;
    const char *tag = gzip ? "" : "_identity";
    printf("BENCH sim.product50%s_req_per_s %.1f req/s\n", tag, (double)done / secs);
    printf("BENCH sim.product50%s_mb_per_s %.2f MB/s\n", tag, (double)sink.total / secs / 1e6);
    printf("# %s: %ld requests ok, %ld failed, %.0f bytes per response, %d connections\n",
           gzip ? "gzip" : "identity", done, failed, done ? (double)sink.total / (double)done : 0.0,
           CONNS);
    for (int i = 0; i < CONNS; i++)
        curl_easy_cleanup(h[i]);
    curl_multi_cleanup(m);
    curl_slist_free_all(hdr);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: bench_sim PATH/kdeals-sim\n");
        return 2;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    char port_file[256];
    snprintf(port_file, sizeof(port_file), "/tmp/bench_sim.%ld.port", (long)getpid());
    pid_t pid;
    int port = start_sim(argv[1], port_file, &pid);
    if (port < 0) {
        fprintf(stderr, "bench_sim: %s did not start\n", argv[1]);
        if (pid > 0)
            kill(pid, SIGKILL);
        return 1;
    }
    /* 50 ASINs from the oracle (the first USED deals right now). */
    char url[512];
    snprintf(url, sizeof(url),
             "http://127.0.0.1:%d/_sim/deals?selection=%%7B%%22priceTypes%%22%%3A%%5B1%%5D%%7D",
             port);
    static char buf[8 << 20];
    struct sink s = {buf, 0, sizeof(buf), 0};
    CURL *c = curl_easy_init();
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &s);
    curl_easy_perform(c);
    curl_easy_cleanup(c);
    char asins[50 * 11 + 1] = "";
    const char *p = strstr(buf, "\"asins\":[");
    int n = 0;
    while (p != NULL && n < 50 && (p = strstr(p + 1, "\"B0")) != NULL) {
        size_t at = strlen(asins);
        if (n)
            asins[at++] = ',';
        memcpy(asins + at, p + 1, 10);
        asins[at + 10] = '\0';
        n++;
        p += 11;
    }
    if (n < 50) {
        fprintf(stderr, "bench_sim: only %d ASINs from the oracle\n", n);
        kill(pid, SIGTERM);
        waitpid(pid, NULL, 0);
        return 1;
    }
    run(port, asins, 1);
    run(port, asins, 0);
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
    unlink(port_file);
    curl_global_cleanup();
    return 0;
}
