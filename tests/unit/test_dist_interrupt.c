/* test_dist_interrupt.c — Ctrl-C inside a backend call, on forked ranks on 127.0.0.1.
 *
 * With the collective check off, rank 0 calls all_reduce alone under a one-hour
 * collective timeout: Gloo would hold it for the hour (ctest's timeout would fail the
 * test). A timer thread raises the Ctrl-C flag (what the rank's SIGINT handler does); the
 * call must come back with an "interrupted" error, its tensor must stay alive for the
 * abandoned call even after the caller dropped it (ASan sees a use after free otherwise),
 * and the next all_reduce of every rank must work and give the right sum. Also: the same
 * for an all_gather into a list, destroy_process_group while an abandoned call still runs,
 * and a blocking send or recv whose peer never answers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "base/interrupt.h"
#include "dist/process_group.h"
#include "support/support_dist_ranks.h"

typedef int (*rank_fn)(int rank, int size);

static int port;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void *press_ctrl_c(void *arg) {
    (void)arg;
    struct timespec ts = {0, 300 * 1000000L};
    nanosleep(&ts, NULL);
    ddp_interrupt_raise();
    return NULL;
}

/* Waits (at most 40 s) for the calls Ctrl-C abandoned to end; true when none is left. */
static bool abandoned_calls_end(void) {
    double until = now_s() + 40;
    while (pg_abandoned_calls() > 0 && now_s() < until) {
        struct timespec ts = {0, 20 * 1000000L};
        nanosleep(&ts, NULL);
    }
    return pg_abandoned_calls() == 0;
}

/* Forks `size` ranks, each initialised, running fn; all must exit 0. Rank 0 hosts the
 * store (as under an outside launcher), so that this process has no threads when it
 * forks: a lock another thread held at the fork (the allocator's) would stay locked
 * forever in the child. */
static void run_ranks(int size, rank_fn fn) {
    port = ranks_free_port();
    assert_true(port > 0);
    cue_open();
    pid_t pids[4];
    for (int r = 0; r < size; r++) {
        pids[r] = fork();
        assert_true(pids[r] >= 0);
        if (pids[r] == 0) {
            setenv("DDPLAB_COLLECTIVE_CHECK", "0", 1);
            setenv("DDPLAB_COLLECTIVE_TIMEOUT", "3600", 1);
            if (ranks_pg_init(port, r, size, 20) != DDP_OK) {
                fprintf(stderr, "rank %d: init: %s\n", r, ddp_last_error());
                _exit(2);
            }
            int rc = fn(r, size);
            if (pg_is_initialized()) pg_destroy();
            /* exit, not _exit: LeakSanitizer checks each rank for what it kept */
            exit(rc);
        }
    }
    int failures = ranks_wait_all(pids, size);
    cue_close();
    assert_int_equal(failures, 0);
}

/* A float32 tensor of n elements, all `value`, and its buffer. */
static tensor *filled(int64_t n, float value, pg_buffer *b) {
    tensor *t = NULL;
    if (tensor_full(&n, 1, DTYPE_FLOAT32, (device){.type = DEVICE_CPU}, value, &t) != DDP_OK)
        return NULL;
    if (pg_buffer_from_tensor("test", t, b) != DDP_OK) {
        tensor_release(t);
        return NULL;
    }
    return t;
}

/* The next chunk (number `chunk`): every rank all-reduces n elements of rank + 1; true
 * when that works and every element holds the sum. */
static bool all_reduce_works(int rank, int size, uint64_t chunk, int64_t n) {
    pg_chunk_begin(chunk);
    pg_buffer b;
    tensor *t = filled(n, (float)(rank + 1), &b);
    if (!t) return false;
    ddp_status s = pg_all_reduce(NULL, &b, COMM_SUM);
    const float *v = b.data;
    float want = (float)(size * (size + 1) / 2);
    bool right = s == DDP_OK && v[0] == want && v[n - 1] == want;
    tensor_release(t);
    pg_chunk_end();
    return right;
}

/* Rank 0 calls `alone` by itself and presses Ctrl-C; then every rank all-reduces. */
static int interrupt_case(int rank, int size, bool gather) {
    pg_chunk_begin(1);
    if (rank == 0) {
        pg_buffer b, outs[4];
        tensor *t = filled(1000, 1, &b);
        tensor *out[4] = {NULL};
        CHILD_CHECK(t);
        for (int i = 0; gather && i < size; i++) CHILD_CHECK(out[i] = filled(1000, 0, &outs[i]));
        pthread_t timer;
        CHILD_CHECK(pthread_create(&timer, NULL, press_ctrl_c, NULL) == 0);
        ddp_status s =
            gather ? pg_all_gather(NULL, outs, size, &b) : pg_all_reduce(NULL, &b, COMM_SUM);
        pthread_join(timer, NULL);
        CHILD_CHECK(s == DDP_ERR_INTERRUPTED);
        CHILD_CHECK(strstr(ddp_last_error(), "interrupted") != NULL);
        /* the call goes on in the background, holding its connections and tensors */
        CHILD_CHECK(pg_abandoned_calls() == 1);
        /* the caller lets go of its tensors: the abandoned call keeps them alive */
        tensor_release(t);
        for (int i = 0; i < size; i++) tensor_release(out[i]);
        ddp_interrupt_clear();
    }
    pg_chunk_end();
    if (rank == 0)
        cue_give(size - 1);
    else
        CHILD_CHECK(cue_take());
    /* the next chunk: every rank all-reduces, on rebuilt connections */
    CHILD_CHECK(all_reduce_works(rank, size, 2, 1000));
    if (rank == 0) {
        /* the old connections are gone on the peers, so the abandoned call ends soon */
        CHILD_CHECK(abandoned_calls_end());
    }
    return 0;
}

static int all_reduce_ranks(int rank, int size) {
    return interrupt_case(rank, size, false);
}

static int all_gather_ranks(int rank, int size) {
    return interrupt_case(rank, size, true);
}

static void test_interrupt_all_reduce_alone(void **state) {
    (void)state;
    run_ranks(2, all_reduce_ranks);
}

static void test_interrupt_all_gather_alone(void **state) {
    (void)state;
    run_ranks(3, all_gather_ranks);
}

/* destroy_process_group right after an interrupted call: it must neither wait for the call
 * nor free what the call uses; init again and all-reduce works. */
static int destroy_ranks(int rank, int size) {
    pg_chunk_begin(1);
    if (rank == 0) {
        pg_buffer b;
        tensor *t = filled(10, 1, &b);
        CHILD_CHECK(t);
        pthread_t timer;
        CHILD_CHECK(pthread_create(&timer, NULL, press_ctrl_c, NULL) == 0);
        ddp_status s = pg_all_reduce(NULL, &b, COMM_SUM);
        pthread_join(timer, NULL);
        tensor_release(t);
        CHILD_CHECK(s == DDP_ERR_INTERRUPTED);
        ddp_interrupt_clear();
        cue_give(size - 1);
    } else {
        CHILD_CHECK(cue_take()); /* keep the old world until rank 0 was interrupted */
    }
    pg_chunk_end();
    CHILD_CHECK(pg_destroy() == DDP_OK);
    CHILD_CHECK(ranks_pg_init(port, rank, size, 20) == DDP_OK);
    CHILD_CHECK(all_reduce_works(rank, size, 2, 10));
    CHILD_CHECK(pg_destroy() == DDP_OK);
    if (rank == 0) {
        /* the peers destroyed the old world: the abandoned call ends and is freed */
        CHILD_CHECK(abandoned_calls_end());
    }
    return 0;
}

static void test_destroy_after_interrupt(void **state) {
    (void)state;
    run_ranks(2, destroy_ranks);
}

/* Rank 0 sends to (or receives from) rank 1, which never answers, and presses Ctrl-C:
 * Gloo's wait on the message is woken at once (the collective timeout is an hour), the
 * error names the message, and the next chunk's all_reduce works on rebuilt connections. */
static int p2p_case(int rank, int size, bool send) {
    pg_chunk_begin(1);
    if (rank == 0) {
        pg_buffer b;
        tensor *t = filled(1 << 16, 1, &b);
        CHILD_CHECK(t);
        pthread_t timer;
        CHILD_CHECK(pthread_create(&timer, NULL, press_ctrl_c, NULL) == 0);
        double t0 = now_s();
        ddp_status s = send ? pg_send(NULL, &b, 1) : pg_recv(NULL, &b, 1);
        double waited = now_s() - t0;
        pthread_join(timer, NULL);
        tensor_release(t);
        CHILD_CHECK(s == DDP_ERR_INTERRUPTED);
        CHILD_CHECK(strstr(ddp_last_error(), send ? "send #1 from rank 0 to rank 1"
                                                  : "recv #1 from rank 1 to rank 0") != NULL);
        CHILD_CHECK(strstr(ddp_last_error(), "interrupted (Ctrl-C)") != NULL);
        CHILD_CHECK(waited < 30);
        CHILD_CHECK(pg_abandoned_calls() == 0);
        ddp_interrupt_clear();
        cue_give(size - 1);
    } else {
        CHILD_CHECK(cue_take()); /* silent until rank 0 gave up */
    }
    pg_chunk_end();
    CHILD_CHECK(all_reduce_works(rank, size, 2, 8));
    return 0;
}

static int recv_ranks(int rank, int size) {
    return p2p_case(rank, size, false);
}

static int send_ranks(int rank, int size) {
    return p2p_case(rank, size, true);
}

static void test_interrupt_recv(void **state) {
    (void)state;
    run_ranks(2, recv_ranks);
}

static void test_interrupt_send(void **state) {
    (void)state;
    run_ranks(2, send_ranks);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_interrupt_all_reduce_alone),
        cmocka_unit_test(test_interrupt_all_gather_alone),
        cmocka_unit_test(test_destroy_after_interrupt),
        cmocka_unit_test(test_interrupt_recv),
        cmocka_unit_test(test_interrupt_send),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
