/* roundtrip.c — the interaction benchmark of bench/interaction.sh: how long the driver
 * takes to run an empty chunk on every rank and hear back from all of them, the floor
 * under every line a learner types in the REPL.
 *
 * It uses the real driver (src/runtime/driver.h): driver_start launches N real rank
 * processes (this same program, re-executed as a rank worker exactly as ddplab is), then
 * driver_run sends the empty chunk to all of them CALLS times; then once more after
 * `dist.init_process_group{backend="gloo"}` has run, because from then on each chunk's
 * end also tells the store that the rank finished it (for the collective check). The
 * reference, measured in the same run, is the least any driver could do: one byte
 * written to each of N forked children over a Unix socket pair and one byte read back
 * from each. For every rank count it prints
 *   RESULT <ranks> <median s> <p90 s> <reference median s> <reference p90 s> <start s>
 *          <median s after init> <p90 s after init>
 * where start is how long driver_start took (ranks launched, connected, Lua loaded).
 *
 * usage: bench_roundtrip [--ranks 1,2,4,8] [--calls 200] [--no-collective-check]
 * A benchmark, not a test: it exits non-zero only when the driver or a rank fails. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "runtime/driver.h"
#include "runtime/rank.h"

#define MAX_RANKS 256
#define WARMUP 20

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int compare_doubles(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Sorts v[n] in place and returns its q-quantile (nearest rank, q in [0, 1]). */
static double quantile(double *v, int n, double q) {
    qsort(v, (size_t)n, sizeof *v, compare_doubles);
    int i = (int)(q * (n - 1) + 0.5);
    return v[i];
}

/* The reference: n children that echo one byte. Fills times[calls] with the seconds of
 * each round (write to all, read from all). Returns 0, or -1 with a message on stderr. */
static int reference_rounds(int n, int calls, double *times) {
    int fds[MAX_RANKS];
    pid_t pids[MAX_RANKS];
    int started = 0, rc = 0;
    for (; started < n; started++) {
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
            perror("bench_roundtrip: socketpair");
            rc = -1;
            break;
        }
        pid_t pid = fork();
        if (pid < 0) {
            perror("bench_roundtrip: fork");
            close(sv[0]);
            close(sv[1]);
            rc = -1;
            break;
        }
        if (pid == 0) { /* echo until the parent closes its end */
            close(sv[0]);
            char c;
            while (read(sv[1], &c, 1) == 1)
                if (write(sv[1], &c, 1) != 1) break;
            _exit(0);
        }
        close(sv[1]);
        fds[started] = sv[0];
        pids[started] = pid;
    }
    for (int k = 0; rc == 0 && k < calls + WARMUP; k++) {
        double t0 = now_seconds();
        char c = 'x';
        for (int i = 0; rc == 0 && i < n; i++)
            if (write(fds[i], &c, 1) != 1) rc = -1;
        for (int i = 0; rc == 0 && i < n; i++)
            if (read(fds[i], &c, 1) != 1) rc = -1;
        if (k >= WARMUP) times[k - WARMUP] = now_seconds() - t0;
    }
    if (rc != 0) fprintf(stderr, "bench_roundtrip: reference echo failed: %s\n", strerror(errno));
    for (int i = 0; i < started; i++) close(fds[i]);
    for (int i = 0; i < started; i++) waitpid(pids[i], NULL, 0);
    return rc;
}

/* Runs `chunk` on all ranks of d `calls` times after WARMUP untimed runs (calls = 1 and
 * times = NULL: once, untimed); fills times[calls]. Returns 0, or -1 with a message on
 * stderr when the driver fails or a rank does not finish the chunk. */
static int driver_rounds(driver *d, const char *chunk, int calls, double *times) {
    int n = driver_world_size(d);
    rank_result *results = calloc((size_t)n, sizeof *results);
    bool *targets = malloc((size_t)n * sizeof *targets);
    if (!results || !targets) {
        fprintf(stderr, "bench_roundtrip: out of memory\n");
        free(results);
        free(targets);
        return -1;
    }
    for (int i = 0; i < n; i++) targets[i] = true;
    int rc = 0;
    int warmup = times ? WARMUP : 0;
    for (int k = 0; rc == 0 && k < calls + warmup; k++) {
        double t0 = now_seconds();
        ddp_status s =
            driver_run(d, chunk, strlen(chunk), "=(bench)", targets, NULL, NULL, results);
        double t = now_seconds() - t0;
        if (s != DDP_OK) {
            fprintf(stderr, "bench_roundtrip: %s\n", ddp_last_error());
            rc = -1;
            break;
        }
        for (int i = 0; i < n; i++)
            if (results[i].outcome != RANK_DONE) {
                fprintf(stderr, "bench_roundtrip: rank %d did not finish '%s': %s\n", i, chunk,
                        results[i].error ? results[i].error : "(no message)");
                rc = -1;
            }
        rank_results_free(results, n);
        if (times && k >= warmup) times[k - warmup] = t;
    }
    free(results);
    free(targets);
    return rc;
}

/* Starts n ranks, times the empty chunk on them (times[calls]), initialises the process
 * group, times it again (after_init[calls]) and stops them; *start_s is how long
 * driver_start took. Returns 0 or -1 with a message on stderr. */
static int driver_measure(int n, int calls, bool check, double *times, double *after_init,
                          double *start_s) {
    launch_options lo = {
        .nproc = n,
        .backend = "gloo",
        .nnodes = 1,
        .node_rank = 0,
        .master_addr = NULL,
        .master_port = 0,
        .collective_timeout = 5.0,
        .collective_check = check,
        .label_script_output = false,
    };
    driver *d = NULL;
    double t0 = now_seconds();
    if (driver_start(&lo, &d) != DDP_OK) {
        fprintf(stderr, "bench_roundtrip: starting %d ranks: %s\n", n, ddp_last_error());
        return -1;
    }
    *start_s = now_seconds() - t0;
    int rc = driver_rounds(d, "", calls, times);
    if (rc == 0) rc = driver_rounds(d, "dist.init_process_group{backend=\"gloo\"}", 1, NULL);
    if (rc == 0) rc = driver_rounds(d, "", calls, after_init);
    driver_stop(d);
    return rc;
}

/* Measures one rank count and prints its RESULT line. Returns 0 or -1. */
static int measure(int n, int calls, bool check) {
    double *ref = malloc((size_t)calls * sizeof *ref);
    double *drv = malloc((size_t)calls * sizeof *drv);
    double *init = malloc((size_t)calls * sizeof *init);
    double start_s = 0;
    int rc = -1;
    if (!ref || !drv || !init)
        fprintf(stderr, "bench_roundtrip: out of memory\n");
    else if (reference_rounds(n, calls, ref) == 0 &&
             driver_measure(n, calls, check, drv, init, &start_s) == 0)
        rc = 0;
    if (rc == 0) {
        double med = quantile(drv, calls, 0.5), p90 = quantile(drv, calls, 0.9);
        double rmed = quantile(ref, calls, 0.5), rp90 = quantile(ref, calls, 0.9);
        double imed = quantile(init, calls, 0.5), ip90 = quantile(init, calls, 0.9);
        printf("RESULT %d %.9f %.9f %.9f %.9f %.6f %.9f %.9f\n", n, med, p90, rmed, rp90, start_s,
               imed, ip90);
        fflush(stdout);
    }
    free(ref);
    free(drv);
    free(init);
    return rc;
}

static int usage(void) {
    fprintf(stderr, "usage: bench_roundtrip [--ranks 1,2,4,8] [--calls N] "
                    "[--no-collective-check]\n");
    return 2;
}

int main(int argc, char **argv) {
    /* the driver re-executes this program as its ranks, as ddplab's main() does */
    if (getenv("DDPLAB_RANK_WORKER")) return rank_worker_main();
    const char *ranks = "1,2,4,8,16,32";
    int calls = 200;
    bool check = true;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--ranks") == 0 && i + 1 < argc)
            ranks = argv[++i];
        else if (strcmp(argv[i], "--calls") == 0 && i + 1 < argc)
            calls = atoi(argv[++i]);
        else if (strcmp(argv[i], "--no-collective-check") == 0)
            check = false;
        else
            return usage();
    }
    if (calls < 1) return usage();
    signal(SIGPIPE, SIG_IGN); /* a dead echo child is reported, not fatal */
    for (const char *p = ranks; *p;) {
        char *end;
        long n = strtol(p, &end, 10);
        if (end == p || n < 1 || n > MAX_RANKS) return usage();
        if (measure((int)n, calls, check) != 0) return 1;
        p = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') return usage();
    }
    return 0;
}
