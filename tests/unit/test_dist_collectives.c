/* test_dist_collectives.c — process groups end to end on forked processes on 127.0.0.1:
 * init (tcp:// with rank/world_size, the store hosted by the parent as the driver does),
 * every collective through process_group.h against values computed by hand, subgroups,
 * destroy and init again, and the mismatch checks: one rank skips, different op, shape,
 * dtype, root, order, a rank that never comes (watchdog), and p2p mismatches. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "build_config.h"
#include "dist/process_group.h"
#include "tensor/device.h"
#include "support/support_dist_ranks.h"

/* The error must be `code` and contain `text`. */
#define CHILD_EXPECT(call, code, text)                                                             \
    do {                                                                                           \
        ddp_status st_ = (call);                                                                   \
        if (st_ != (code) || !strstr(ddp_last_error(), (text))) {                                  \
            fprintf(stderr, "rank %d: %s:%d: expected %s containing \"%s\", got %s: %s\n", rank,   \
                    __FILE__, __LINE__, #code, (text), ddp_status_name(st_), ddp_last_error());    \
            return 1;                                                                              \
        }                                                                                          \
    } while (0)

typedef int (*rank_fn)(int rank, int size);

static int port;

static pg_buffer buf1(void *data, dtype dt, int64_t n) {
    pg_buffer b = {.data = data, .dt = dt, .ndim = 1};
    b.sizes[0] = n;
    return b;
}

static int init_child(int rank, int size) {
    CHILD_CHECK(ranks_pg_init(port, rank, size, 10) == DDP_OK);
    return 0;
}

static rank_fn world_fn; /* what the ranks of run_world run, and whether they init first */
static bool world_init;

/* One rank of run_world; its exit status. */
static int world_rank(int rank, int size, int store_port) {
    port = store_port;
    if (!getenv("DDPLAB_COLLECTIVE_CHECK")) setenv("DDPLAB_COLLECTIVE_TIMEOUT", "2", 1);
    if (world_init && init_child(rank, size) != 0) return 2;
    int rc = world_fn(rank, size);
    if (pg_is_initialized()) pg_destroy();
    return rc;
}

/* Forks `size` ranks running fn, after init_process_group when `init`, around a store this
 * process hosts as the driver does (ranks_run_hosted); all must exit 0. */
static void run_world(int size, rank_fn fn, bool init) {
    world_fn = fn;
    world_init = init;
    ranks_run_hosted(size, world_rank);
}

static void run_ranks(int size, rank_fn fn) {
    run_world(size, fn, true);
}

/* ---- every collective ---------------------------------------------------------------- */

static int collectives_ranks(int rank, int size) {
    pg_chunk_begin(1);
    /* broadcast from the last rank */
    int64_t b[3] = {rank, rank, rank};
    pg_buffer bb = buf1(b, DTYPE_INT64, 3);
    CHILD_CHECK(pg_broadcast(NULL, &bb, size - 1) == DDP_OK);
    CHILD_CHECK(b[0] == size - 1 && b[2] == size - 1);
    /* all_reduce AVG of rank + 1 */
    float f[2] = {(float)(rank + 1), (float)(2 * (rank + 1))};
    pg_buffer fb = buf1(f, DTYPE_FLOAT32, 2);
    CHILD_CHECK(pg_all_reduce(NULL, &fb, COMM_AVG) == DDP_OK);
    CHILD_CHECK(f[0] == (size + 1) / 2.0f && f[1] == (float)(size + 1));
    /* reduce MAX to rank 0 */
    double d[1] = {rank * 1.5};
    pg_buffer db = buf1(d, DTYPE_FLOAT64, 1);
    CHILD_CHECK(pg_reduce(NULL, &db, 0, COMM_MAX) == DDP_OK);
    if (rank == 0) CHILD_CHECK(d[0] == (size - 1) * 1.5);
    /* all_gather into a list and into one tensor */
    float mine[2] = {(float)rank, 10.0f + (float)rank}, outs[8][2];
    pg_buffer in = buf1(mine, DTYPE_FLOAT32, 2), list[8];
    for (int i = 0; i < size; i++) list[i] = buf1(outs[i], DTYPE_FLOAT32, 2);
    CHILD_CHECK(pg_all_gather(NULL, list, size, &in) == DDP_OK);
    for (int i = 0; i < size; i++) CHILD_CHECK(outs[i][0] == i && outs[i][1] == 10 + i);
    /* the same into tensors that do not lie back to back (gathered through scratch) */
    float spaced[8][3];
    for (int i = 0; i < size; i++) {
        list[i] = buf1(spaced[i], DTYPE_FLOAT32, 2);
        spaced[i][2] = -1;
    }
    CHILD_CHECK(pg_all_gather(NULL, list, size, &in) == DDP_OK);
    for (int i = 0; i < size; i++)
        CHILD_CHECK(spaced[i][0] == i && spaced[i][1] == 10 + i && spaced[i][2] == -1);
    float flat[16];
    pg_buffer fl = {.data = flat, .dt = DTYPE_FLOAT32, .ndim = 2, .sizes = {size, 2}};
    CHILD_CHECK(pg_all_gather_into(NULL, &fl, &in) == DDP_OK);
    for (int i = 0; i < size; i++) CHILD_CHECK(flat[2 * i] == i);
    /* reduce_scatter SUM: input i on rank r is r * 100 + i; rank r gets sum_q (q*100 + r) */
    int64_t parts[8], got = -1;
    pg_buffer pl[8], gb = buf1(&got, DTYPE_INT64, 1);
    for (int i = 0; i < size; i++) {
        parts[i] = rank * 100 + i;
        pl[i] = buf1(&parts[i], DTYPE_INT64, 1);
    }
    CHILD_CHECK(pg_reduce_scatter(NULL, &gb, pl, size, COMM_SUM) == DDP_OK);
    CHILD_CHECK(got == 100 * size * (size - 1) / 2 + (int64_t)rank * size);
    /* gather to rank 1 (or 0 on one rank) and scatter from rank 0 */
    int dst = size > 1 ? 1 : 0;
    float g[8][2];
    pg_buffer gl[8];
    for (int i = 0; i < size; i++) gl[i] = buf1(g[i], DTYPE_FLOAT32, 2);
    CHILD_CHECK(pg_gather(NULL, &in, rank == dst ? gl : NULL, rank == dst ? size : 0, dst) ==
                DDP_OK);
    if (rank == dst)
        for (int i = 0; i < size; i++) CHILD_CHECK(g[i][0] == i && g[i][1] == 10 + i);
    double sc[8], mine_sc = -1;
    pg_buffer sl[8], sb = buf1(&mine_sc, DTYPE_FLOAT64, 1);
    for (int i = 0; i < size; i++) {
        sc[i] = i * 3.25;
        sl[i] = buf1(&sc[i], DTYPE_FLOAT64, 1);
    }
    CHILD_CHECK(pg_scatter(NULL, &sb, rank == 0 ? sl : NULL, rank == 0 ? size : 0, 0) == DDP_OK);
    CHILD_CHECK(mine_sc == rank * 3.25);
    CHILD_CHECK(pg_barrier(NULL) == DDP_OK);
    /* a ring with isend/irecv */
    if (size > 1) {
        float out[3] = {(float)rank, 1, 2}, inb[3] = {0};
        pg_buffer ob = buf1(out, DTYPE_FLOAT32, 3), ib = buf1(inb, DTYPE_FLOAT32, 3);
        pg_work *ws, *wr;
        CHILD_CHECK(pg_isend(NULL, &ob, (rank + 1) % size, &ws) == DDP_OK);
        CHILD_CHECK(pg_irecv(NULL, &ib, (rank + size - 1) % size, &wr) == DDP_OK);
        CHILD_CHECK(pg_work_wait(ws) == DDP_OK);
        CHILD_CHECK(pg_work_wait(wr) == DDP_OK);
        CHILD_CHECK(pg_work_is_completed(wr));
        pg_work_free(ws);
        pg_work_free(wr);
        CHILD_CHECK(inb[0] == (rank + size - 1) % size);
        /* blocking send/recv: even ranks send first */
        int64_t v = rank * 7;
        pg_buffer vb = buf1(&v, DTYPE_INT64, 1);
        if (rank == 0) CHILD_CHECK(pg_send(NULL, &vb, 1) == DDP_OK);
        if (rank == 1) {
            CHILD_CHECK(pg_recv(NULL, &vb, 0) == DDP_OK);
            CHILD_CHECK(v == 0);
        }
    }
    pg_chunk_end();
    return 0;
}

static void test_collectives_1(void **state) {
    (void)state;
    run_ranks(1, collectives_ranks);
}

static void test_collectives_2(void **state) {
    (void)state;
    run_ranks(2, collectives_ranks);
}

static void test_collectives_4(void **state) {
    (void)state;
    run_ranks(4, collectives_ranks);
}

/* reduce_scatter with an odd block length, SUM and MAX in float64 and AVG in float32, on
 * power-of-two and other group sizes; the inputs stay as they were. */
static int reduce_scatter_ranks(int rank, int size) {
    enum { COUNT = 37 };
    pg_chunk_begin(5);
    static double in[4][COUNT], keep[4][COUNT];
    double out[COUNT];
    pg_buffer list[4], ob = buf1(out, DTYPE_FLOAT64, COUNT);
    for (int i = 0; i < size; i++) {
        for (int k = 0; k < COUNT; k++) in[i][k] = keep[i][k] = rank * 1000 + i * 10 + k % 7;
        list[i] = buf1(in[i], DTYPE_FLOAT64, COUNT);
    }
    CHILD_CHECK(pg_reduce_scatter(NULL, &ob, list, size, COMM_SUM) == DDP_OK);
    double ranks_sum = 1000.0 * size * (size - 1) / 2;
    for (int k = 0; k < COUNT; k++)
        CHILD_CHECK(out[k] == ranks_sum + rank * 10 * size + size * (k % 7));
    CHILD_CHECK(memcmp(in, keep, sizeof in) == 0);
    CHILD_CHECK(pg_reduce_scatter(NULL, &ob, list, size, COMM_MAX) == DDP_OK);
    for (int k = 0; k < COUNT; k++) CHILD_CHECK(out[k] == (size - 1) * 1000 + rank * 10 + k % 7);
    float fin[4][COUNT], fout[COUNT];
    pg_buffer fl[4], fb = buf1(fout, DTYPE_FLOAT32, COUNT);
    for (int i = 0; i < size; i++) {
        for (int k = 0; k < COUNT; k++) fin[i][k] = (float)(rank + i + k);
        fl[i] = buf1(fin[i], DTYPE_FLOAT32, COUNT);
    }
    CHILD_CHECK(pg_reduce_scatter(NULL, &fb, fl, size, COMM_AVG) == DDP_OK);
    for (int k = 0; k < COUNT; k++) CHILD_CHECK(fout[k] == (float)((size - 1) / 2.0 + rank + k));
    pg_chunk_end();
    return 0;
}

static void test_reduce_scatter(void **state) {
    (void)state;
    run_ranks(2, reduce_scatter_ranks);
    run_ranks(3, reduce_scatter_ranks);
    run_ranks(4, reduce_scatter_ranks);
}

/* ---- groups, destroy and init again -------------------------------------------------- */

static int groups_ranks(int rank, int size) {
    int members[2] = {0, 1};
    process_group *sub;
    CHILD_CHECK(pg_new_group(members, 2, &sub) == DDP_OK);
    float f[1] = {(float)(rank + 1)};
    pg_buffer fb = buf1(f, DTYPE_FLOAT32, 1);
    if (rank < 2) {
        CHILD_CHECK(pg_is_member(sub) && pg_rank(sub) == rank && pg_size(sub) == 2);
        CHILD_CHECK(pg_all_reduce(sub, &fb, COMM_SUM) == DDP_OK);
        CHILD_CHECK(f[0] == 3);
    } else {
        CHILD_CHECK(!pg_is_member(sub) && pg_rank(sub) == -1);
        CHILD_EXPECT(pg_all_reduce(sub, &fb, COMM_SUM), DDP_ERR_ARG, "not a member");
    }
    /* the default group still works beside it */
    f[0] = 1;
    CHILD_CHECK(pg_all_reduce(NULL, &fb, COMM_SUM) == DDP_OK);
    CHILD_CHECK(f[0] == size);
    CHILD_CHECK(pg_destroy() == DDP_OK);
    CHILD_CHECK(!pg_is_initialized());
    CHILD_EXPECT(pg_all_reduce(NULL, &fb, COMM_SUM), DDP_ERR_STATE,
                 "Default process group has not been initialized");
    CHILD_EXPECT(pg_all_reduce(sub, &fb, COMM_SUM), DDP_ERR_STATE, "destroyed");
    pg_release(sub);
    /* init again and all-reduce */
    if (init_child(rank, size) != 0) return 1;
    f[0] = 2;
    CHILD_CHECK(pg_all_reduce(NULL, &fb, COMM_PRODUCT) == DDP_OK);
    CHILD_CHECK(f[0] == (float)(1 << size));
    return 0;
}

static void test_groups_and_reinit_4(void **state) {
    (void)state;
    run_ranks(4, groups_ranks);
}

/* ---- mismatches ---------------------------------------------------------------------- */

/* A chunk in which ranks 0,1 all-reduce and ranks 2,3 do what `other` says. */
static int mismatch_case(int rank, const char *other, const char *expect) {
    pg_chunk_begin(10);
    float f[3] = {1, 2, 3};
    double d[3] = {1, 2, 3};
    pg_buffer fb = buf1(f, DTYPE_FLOAT32, 3), db = buf1(d, DTYPE_FLOAT64, 3);
    pg_buffer f2 = {.data = f, .dt = DTYPE_FLOAT32, .ndim = 2, .sizes = {1, 3}};
    ddp_status s = DDP_OK;
    if (rank < 2) {
        s = pg_all_reduce(NULL, &fb, COMM_SUM);
    } else if (strcmp(other, "skip") == 0) {
        s = DDP_ERR_MISMATCH; /* calls nothing */
    } else if (strcmp(other, "broadcast") == 0) {
        s = pg_broadcast(NULL, &fb, 0);
    } else if (strcmp(other, "max") == 0) {
        s = pg_all_reduce(NULL, &fb, COMM_MAX);
    } else if (strcmp(other, "shape") == 0) {
        s = pg_all_reduce(NULL, &f2, COMM_SUM);
    } else if (strcmp(other, "dtype") == 0) {
        s = pg_all_reduce(NULL, &db, COMM_SUM);
    }
    if (strcmp(other, "skip") == 0 && rank >= 2) {
        pg_chunk_end();
    } else {
        CHILD_CHECK(s == DDP_ERR_MISMATCH);
        CHILD_CHECK(strstr(ddp_last_error(), expect) != NULL);
        pg_chunk_end();
    }
    /* the group is still usable: the next chunk agrees */
    pg_chunk_begin(11);
    f[0] = 1;
    CHILD_CHECK(pg_all_reduce(NULL, &fb, COMM_SUM) == DDP_OK);
    CHILD_CHECK(f[0] == 4);
    pg_chunk_end();
    return 0;
}

static int skip_ranks(int rank, int size) {
    (void)size;
    return mismatch_case(rank, "skip",
                         "collective #1 of this chunk: ranks 0,1 called all_reduce(float32[3], "
                         "op=SUM); ranks 2,3 called nothing and finished the chunk");
}

static int other_op_ranks(int rank, int size) {
    (void)size;
    return mismatch_case(rank, "broadcast",
                         "ranks 0,1 called all_reduce(float32[3], op=SUM); ranks 2,3 called "
                         "broadcast(float32[3], src=0)");
}

static int reduce_op_ranks(int rank, int size) {
    (void)size;
    return mismatch_case(rank, "max", "ranks 2,3 called all_reduce(float32[3], op=MAX)");
}

static int shape_ranks(int rank, int size) {
    (void)size;
    return mismatch_case(rank, "shape", "ranks 2,3 called all_reduce(float32[1,3], op=SUM)");
}

static int dtype_ranks(int rank, int size) {
    (void)size;
    return mismatch_case(rank, "dtype", "ranks 2,3 called all_reduce(float64[3], op=SUM)");
}

static void test_mismatch_skip(void **state) {
    (void)state;
    run_ranks(4, skip_ranks);
}

static void test_mismatch_op(void **state) {
    (void)state;
    run_ranks(4, other_op_ranks);
}

static void test_mismatch_reduce_op(void **state) {
    (void)state;
    run_ranks(4, reduce_op_ranks);
}

static void test_mismatch_shape(void **state) {
    (void)state;
    run_ranks(4, shape_ranks);
}

static void test_mismatch_dtype(void **state) {
    (void)state;
    run_ranks(4, dtype_ranks);
}

/* Different roots, then different order of two collectives. */
static int root_and_order_ranks(int rank, int size) {
    (void)size;
    pg_chunk_begin(20);
    float f[2] = {1, 2};
    pg_buffer fb = buf1(f, DTYPE_FLOAT32, 2);
    CHILD_EXPECT(pg_broadcast(NULL, &fb, rank == 0 ? 0 : 1), DDP_ERR_MISMATCH,
                 "collective #1 of this chunk: rank 0 called broadcast(float32[2], src=0); "
                 "rank 1 called broadcast(float32[2], src=1)");
    pg_chunk_end();
    pg_chunk_begin(21);
    ddp_status s = rank == 0 ? pg_all_reduce(NULL, &fb, COMM_SUM) : pg_barrier(NULL);
    CHILD_CHECK(s == DDP_ERR_MISMATCH);
    CHILD_CHECK(strstr(ddp_last_error(), "rank 1 called barrier()") != NULL);
    pg_chunk_end();
    return 0;
}

static void test_mismatch_root_and_order(void **state) {
    (void)state;
    run_ranks(2, root_and_order_ranks);
}

/* Rank 1 is busy (neither calls nor finishes); with 3 ranks, rank 2 finishes the chunk
 * without calling: rank 0's watchdog tells both stories. */
static int absent_ranks(int rank, int size) {
    pg_chunk_begin(30);
    if (rank == 1) { /* busy until rank 0's watchdog has spoken */
        CHILD_CHECK(cue_take());
        pg_chunk_end();
        return 0;
    }
    if (rank == 2) {
        pg_chunk_end();
        return 0;
    }
    float f[4] = {0};
    pg_buffer fb = buf1(f, DTYPE_FLOAT32, 4);
    ddp_status st = pg_all_reduce(NULL, &fb, COMM_SUM);
    cue_give(1);
    CHILD_EXPECT(st, DDP_ERR_TIMEOUT,
                 "collective #1 of this chunk: rank 1 did not arrive within 2 s; rank 0 is "
                 "waiting in all_reduce(float32[4], op=SUM)");
    if (size == 3)
        CHILD_CHECK(strstr(ddp_last_error(), "; rank 2 called nothing and finished the chunk"));
    pg_chunk_end();
    return 0;
}

static void test_watchdog(void **state) {
    (void)state;
    cue_open();
    run_ranks(2, absent_ranks);
    cue_close();
    cue_open();
    run_ranks(3, absent_ranks);
    cue_close();
}

/* Send float32[3] against recv into float32[4]; then a send that nobody receives. */
static int p2p_mismatch_ranks(int rank, int size) {
    (void)size;
    pg_chunk_begin(40);
    float f[4] = {0};
    pg_buffer b3 = buf1(f, DTYPE_FLOAT32, 3), b4 = buf1(f, DTYPE_FLOAT32, 4);
    if (rank == 0)
        CHILD_EXPECT(pg_send(NULL, &b3, 1), DDP_ERR_MISMATCH,
                     "rank 0 sends float32[3] but rank 1 receives into float32[4]");
    else
        CHILD_EXPECT(pg_recv(NULL, &b4, 0), DDP_ERR_MISMATCH,
                     "rank 1 receives into float32[4] but rank 0 sends float32[3]");
    pg_chunk_end();
    pg_chunk_begin(41);
    if (rank == 0)
        CHILD_EXPECT(pg_send(NULL, &b3, 1), DDP_ERR_MISMATCH,
                     "rank 1 called no matching recv and finished the chunk");
    pg_chunk_end();
    return 0;
}

static void test_p2p_mismatch(void **state) {
    (void)state;
    run_ranks(2, p2p_mismatch_ranks);
}

/* With the check off, rank 1 comes late, once rank 0's Gloo call has timed out; rank 1's
 * then fails on the closed connection (or times out too); both rebuild the communicator and
 * the next call works. */
static int rebuild_ranks(int rank, int size) {
    float f[2] = {1, 1};
    pg_buffer fb = buf1(f, DTYPE_FLOAT32, 2);
    if (rank == 1) CHILD_CHECK(cue_take());
    ddp_status s = pg_all_reduce(NULL, &fb, COMM_SUM);
    if (rank == 0) cue_give(1);
    CHILD_CHECK(s == DDP_ERR_TIMEOUT || s == DDP_ERR_COMM);
    f[0] = f[1] = 1;
    CHILD_CHECK(pg_all_reduce(NULL, &fb, COMM_SUM) == DDP_OK);
    CHILD_CHECK(f[0] == size && f[1] == size);
    return 0;
}

static void test_rebuild_after_backend_failure(void **state) {
    (void)state;
    setenv("DDPLAB_COLLECTIVE_CHECK", "0", 1);
    setenv("DDPLAB_COLLECTIVE_TIMEOUT", "1", 1);
    cue_open();
    run_ranks(2, rebuild_ranks);
    cue_close();
    unsetenv("DDPLAB_COLLECTIVE_CHECK");
}

/* ---- the same words on every rank --------------------------------------------------- */

/* Chunk 50: ranks 0,1 all-reduce, rank 2 calls nothing (so ranks 0,1 have called one more
 * collective than rank 2). Chunk 51: everyone all-reduces, then rank 2 passes a different
 * shape: every rank must get exactly the same message, numbered within the chunk. */
static int numbering_ranks(int rank, int size) {
    (void)size;
    float f[3] = {1, 1, 1};
    pg_buffer fb = buf1(f, DTYPE_FLOAT32, 3), f2 = buf1(f, DTYPE_FLOAT32, 2);
    pg_chunk_begin(50);
    if (rank < 2) CHILD_CHECK(pg_all_reduce(NULL, &fb, COMM_SUM) == DDP_ERR_MISMATCH);
    pg_chunk_end();
    pg_chunk_begin(51);
    CHILD_CHECK(pg_all_reduce(NULL, &fb, COMM_SUM) == DDP_OK);
    CHILD_EXPECT(pg_all_reduce(NULL, rank == 2 ? &f2 : &fb, COMM_SUM), DDP_ERR_MISMATCH, "");
    const char *want = "collective #2 of this chunk: ranks 0,1 called all_reduce(float32[3], "
                       "op=SUM); rank 2 called all_reduce(float32[2], op=SUM)";
    CHILD_CHECK(strcmp(ddp_last_error(), want) == 0);
    pg_chunk_end();
    /* in a subgroup the message names the group */
    int members[2] = {0, 2};
    process_group *sub;
    pg_chunk_begin(52);
    CHILD_CHECK(pg_new_group(members, 2, &sub) == DDP_OK);
    if (rank != 1) {
        CHILD_EXPECT(rank == 0 ? pg_all_reduce(sub, &fb, COMM_SUM) : pg_barrier(sub),
                     DDP_ERR_MISMATCH,
                     "collective #1 of this chunk in group (ranks 0,2): rank 0 called "
                     "all_reduce(float32[3], op=SUM); rank 2 called barrier()");
    }
    pg_chunk_end();
    pg_release(sub);
    return 0;
}

static void test_same_message_on_every_rank(void **state) {
    (void)state;
    run_ranks(3, numbering_ranks);
}

/* ---- chunks sent to some ranks only (:on) ------------------------------------------- */

/* Chunk 60 runs on ranks 1,2 of 4 only. Collectives of groups with ranks 0 or 3 fail at
 * once (DDP_ERR_STATE, not the watchdog's DDP_ERR_TIMEOUT); a group of ranks 1,2 and a
 * send between them work. Chunk 61 runs everywhere again. */
static int participants_ranks(int rank, int size) {
    int members[2] = {1, 2};
    process_group *sub;
    pg_chunk_begin(59);
    CHILD_CHECK(pg_new_group(members, 2, &sub) == DDP_OK);
    pg_chunk_end();
    float f[2] = {1, 1};
    pg_buffer fb = buf1(f, DTYPE_FLOAT32, 2);
    if (rank == 1 || rank == 2) {
        pg_chunk_begin(60);
        bool running[4] = {false, true, true, false};
        pg_chunk_set_participants(running, 4);
        CHILD_EXPECT(pg_all_reduce(NULL, &fb, COMM_SUM), DDP_ERR_STATE,
                     "all_reduce: ranks 0,3 are not running this chunk (it was sent to ranks "
                     "1,2 with :on); a collective needs every rank of its group: use :on all");
        CHILD_EXPECT(pg_barrier(NULL), DDP_ERR_STATE, "barrier: ranks 0,3 are not running");
        CHILD_EXPECT(pg_send(NULL, &fb, rank == 1 ? 0 : 3), DDP_ERR_STATE,
                     rank == 1 ? "send: rank 0 is not running this chunk"
                               : "send: rank 3 is not running this chunk");
        process_group *other;
        CHILD_EXPECT(pg_new_group(NULL, 0, &other), DDP_ERR_STATE,
                     "new_group: ranks 0,3 are not running this chunk");
        CHILD_CHECK(pg_all_reduce(sub, &fb, COMM_SUM) == DDP_OK);
        CHILD_CHECK(f[0] == 2);
        if (rank == 1) CHILD_CHECK(pg_send(NULL, &fb, 2) == DDP_OK);
        if (rank == 2) CHILD_CHECK(pg_recv(NULL, &fb, 1) == DDP_OK);
        pg_chunk_end();
    }
    pg_chunk_begin(61); /* no participants given: every rank */
    f[0] = 1;
    CHILD_CHECK(pg_all_reduce(NULL, &fb, COMM_SUM) == DDP_OK);
    CHILD_CHECK(f[0] == size);
    pg_chunk_end();
    pg_release(sub);
    return 0;
}

static void test_participants(void **state) {
    (void)state;
    run_ranks(4, participants_ranks);
}

/* ---- a rank whose init fails --------------------------------------------------------- */

/* Rank 2 asks for a backend that does not exist: ranks 0,1 must fail with its reason at
 * once (DDP_ERR_COMM, not DDP_ERR_TIMEOUT after the 30 s rendezvous), and then everyone's
 * next init agrees. */
static int init_failure_ranks(int rank, int size) {
    char method[64];
    snprintf(method, sizeof method, "tcp://127.0.0.1:%d", port);
    pg_init_options o = {.backend = rank == 2 ? "mpi" : "gloo",
                         .init_method = method,
                         .rank = rank,
                         .world_size = size,
                         .timeout_s = 30};
    /* ranks 0,1 come late, once rank 2 failed and is on its way to its next init: the
     * generations must still pair up */
    if (rank == 2) {
        ddp_status st = pg_init(&o);
        cue_give(2);
        CHILD_EXPECT(st, DDP_ERR_ARG, "init_process_group: unknown backend 'mpi'");
    } else {
        CHILD_CHECK(cue_take());
        CHILD_EXPECT(pg_init(&o), DDP_ERR_COMM,
                     "init_process_group: rank 2 failed to initialise: unknown backend 'mpi'");
    }
    CHILD_CHECK(!pg_is_initialized());
    o.backend = "gloo";
    CHILD_CHECK(pg_init(&o) == DDP_OK);
    float f[1] = {1};
    pg_buffer fb = buf1(f, DTYPE_FLOAT32, 1);
    CHILD_CHECK(pg_all_reduce(NULL, &fb, COMM_SUM) == DDP_OK);
    CHILD_CHECK(f[0] == size);
    return 0;
}

static void test_init_failure_reaches_the_others(void **state) {
    (void)state;
    cue_open();
    run_world(3, init_failure_ranks, false);
    cue_close();
}

/* ---- argument errors without any process group --------------------------------------- */

static void test_before_init(void **state) {
    (void)state;
    float f[1];
    pg_buffer b = buf1(f, DTYPE_FLOAT32, 1);
    assert_int_equal(pg_all_reduce(NULL, &b, COMM_SUM), DDP_ERR_STATE);
    assert_string_equal(ddp_last_error(), "Default process group has not been initialized, "
                                          "please make sure to call init_process_group.");
    int64_t l[1];
    pg_buffer lb = buf1(l, DTYPE_INT64, 1);
    assert_int_equal(pg_all_reduce(NULL, &lb, COMM_AVG), DDP_ERR_ARG);
    assert_non_null(strstr(ddp_last_error(), "AVG"));
    pg_init_options o = {.backend = "nccl", .rank = 0, .world_size = 1};
    if (!DDP_HAVE_NCCL || cuda_device_count() == 0) {
        assert_int_equal(pg_init(&o), DDP_ERR_UNSUPPORTED);
        assert_string_equal(
            ddp_last_error(),
            !DDP_HAVE_CUDA   ? "init_process_group: this build has no CUDA support, so no "
                               "NCCL; use backend=\"gloo\" (CPU tensors)"
            : !DDP_HAVE_NCCL ? "init_process_group: this build has CUDA but no NCCL; use "
                               "backend=\"gloo\""
                             : "nccl: no GPU visible to rank 0; use backend=\"gloo\" (CPU "
                               "tensors)");
    }
    unsetenv("RANK");
    pg_init_options e = {.rank = -1, .world_size = -1};
    assert_int_equal(pg_init(&e), DDP_ERR_ARG);
    assert_non_null(strstr(ddp_last_error(), "RANK"));
}

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_before_init),
        cmocka_unit_test(test_collectives_1),
        cmocka_unit_test(test_collectives_2),
        cmocka_unit_test(test_collectives_4),
        cmocka_unit_test(test_reduce_scatter),
        cmocka_unit_test(test_groups_and_reinit_4),
        cmocka_unit_test(test_mismatch_skip),
        cmocka_unit_test(test_mismatch_op),
        cmocka_unit_test(test_mismatch_reduce_op),
        cmocka_unit_test(test_mismatch_shape),
        cmocka_unit_test(test_mismatch_dtype),
        cmocka_unit_test(test_mismatch_root_and_order),
        cmocka_unit_test(test_watchdog),
        cmocka_unit_test(test_p2p_mismatch),
        cmocka_unit_test(test_same_message_on_every_rank),
        cmocka_unit_test(test_participants),
        cmocka_unit_test(test_init_failure_reaches_the_others),
        cmocka_unit_test(test_rebuild_after_backend_failure),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
