/* support_dist_ranks.h — the pieces of the forked-rank harness that the dist unit tests
 * share: a check macro for code running inside a forked rank, a free TCP port, forking
 * ranks around a store this process hosts, waiting for every rank, and a cue pipe between
 * ranks. Each test keeps its own run_ranks, since what a rank sets up differs; all of them
 * fork before any thread starts in the parent (a lock held by another thread at the fork
 * would stay locked forever in the child, seen as a rare hang of the sanitizer build). */
#ifndef DDP_SUPPORT_DIST_RANKS_H
#define DDP_SUPPORT_DIST_RANKS_H

#include <stdbool.h>
#include <stdio.h>
#include <sys/types.h>

#include "base/status.h"

/* Inside a forked rank (a function with `int rank` in scope that returns the exit code):
 * print what failed and return 1. cmocka asserts belong to the parent. */
#define CHILD_CHECK(cond)                                                                          \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "rank %d: %s:%d: check failed: %s (last error: %s)\n", rank, __FILE__, \
                    __LINE__, #cond, ddp_last_error());                                            \
            return 1;                                                                              \
        }                                                                                          \
    } while (0)

/* A TCP port on 127.0.0.1 that was free a moment ago, or -1. Cannot fail otherwise. */
int ranks_free_port(void);

/* Inside a forked rank: init_process_group with the gloo backend, tcp://127.0.0.1:port,
 * this rank and world size, and a rendezvous timeout of timeout_s; pg_init's status. */
ddp_status ranks_pg_init(int port, int rank, int size, double timeout_s);

/* Waits for the n forked ranks in pids; returns how many did not exit with status 0. */
int ranks_wait_all(const pid_t *pids, int n);

/* Forks `size` ranks (at most 8) that wait; then, with no thread started before the
 * fork, hosts a store at 127.0.0.1 on a free port in this process and releases them. Each
 * rank runs body(rank, size, port) and leaves with _exit(its result); a rank released
 * without a store exits 3. Fails the running test unless the store started and every
 * rank exited 0; the store is stopped once all have ended. */
void ranks_run_hosted(int size, int (*body)(int rank, int size, int port));

/* A cue from one rank to others that does not depend on timing, for tests where a rank
 * must act only after another one did something: cue_open makes the pipe before the
 * fork (it fails the running test if it cannot), cue_give writes n bytes, cue_take waits
 * for one and says whether it came. The wait is bounded (a minute) only so that a rank
 * that failed before giving its cue cannot hang the test. cue_close closes both ends. */
void cue_open(void);
void cue_close(void);
void cue_give(int n);
bool cue_take(void);

#endif
