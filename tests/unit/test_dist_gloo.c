/* test_dist_gloo.c — the Gloo shim (comm.h) on 2 to 4 forked processes on 127.0.0.1:
 * every collective, every dtype and reduce op, against values computed by hand (two ranks'
 * all_reduce bit for bit on random data), plus
 * point-to-point, a dead peer and the per-operation timeout. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dist/comm.h"
#include "dist/store.h"
#include "support/support_dist_ranks.h"

typedef int (*rank_fn)(int rank, int size, comm *c);

static int generation; /* each world's store keys are apart from the last one's */
static rank_fn world_fn;
static bool staged; /* wrap each communicator in comm_staged.c's (Gloo with CUDA tensors) */

/* One rank of run_ranks: sets up its communicator and runs world_fn; its exit status. */
static int comm_rank(int rank, int size, int port) {
    store_client *sc;
    if (store_connect("127.0.0.1", port, 5.0, &sc) != DDP_OK) return 2;
    char prefix[64];
    snprintf(prefix, sizeof prefix, "test/%d/", generation);
    comm_init_options o = {.store = sc,
                           .prefix = prefix,
                           .iface_host = "127.0.0.1",
                           .rank = rank,
                           .size = size,
                           .timeout_s = 5.0};
    comm *c;
    if (comm_gloo_init(&o, &c) != DDP_OK || (staged && comm_staged_new(c, size, &c) != DDP_OK)) {
        fprintf(stderr, "rank %d: init: %s\n", rank, ddp_last_error());
        return 2;
    }
    int rc = world_fn(rank, size, c);
    comm_destroy(c);
    store_close(sc);
    return rc;
}

/* Forks `size` ranks that each set up a communicator and run fn; every rank must exit 0. */
static void run_ranks(int size, rank_fn fn) {
    generation++;
    world_fn = fn;
    ranks_run_hosted(size, comm_rank);
}

/* ---- all_reduce ----------------------------------------------------------------- */

static int all_reduce_ranks(int rank, int size, comm *c) {
    enum { N = 5 };
    /* rank r holds (r + 1) * (i + 1) for element i */
    for (int op = COMM_SUM; op <= COMM_MAX; op++) {
        float f[N];
        double d[N];
        int64_t l[N];
        for (int i = 0; i < N; i++) {
            f[i] = (float)((rank + 1) * (i + 1));
            d[i] = (double)((rank + 1) * (i + 1)) + 0.5;
            l[i] = (int64_t)((rank + 1) * (i + 1)) - 3;
        }
        CHILD_CHECK(comm_all_reduce(c, f, DTYPE_FLOAT32, N, op) == DDP_OK);
        CHILD_CHECK(comm_all_reduce(c, d, DTYPE_FLOAT64, N, op) == DDP_OK);
        if (op != COMM_AVG) CHILD_CHECK(comm_all_reduce(c, l, DTYPE_INT64, N, op) == DDP_OK);
        for (int i = 0; i < N; i++) {
            double ef = 0, ed = 0, prod_f = 1, prod_d = 1;
            int64_t el = 0, prod_l = 1;
            for (int r = 0; r < size; r++) {
                ef += (r + 1) * (i + 1);
                ed += (r + 1) * (i + 1) + 0.5;
                el += (int64_t)((r + 1) * (i + 1)) - 3;
                prod_f *= (r + 1) * (i + 1);
                prod_d *= (r + 1) * (i + 1) + 0.5;
                prod_l *= (int64_t)((r + 1) * (i + 1)) - 3;
            }
            double wf = ef, wd = ed;
            int64_t wl = el;
            switch (op) {
            case COMM_AVG:
                wf = ef / size;
                wd = ed / size;
                break;
            case COMM_PRODUCT:
                wf = prod_f;
                wd = prod_d;
                wl = prod_l;
                break;
            case COMM_MIN:
                wf = (i + 1);
                wd = (i + 1) + 0.5;
                wl = (int64_t)(i + 1) - 3;
                break;
            case COMM_MAX:
                wf = size * (i + 1);
                wd = size * (i + 1) + 0.5;
                wl = (int64_t)(size * (i + 1)) - 3;
                break;
            default:
                break;
            }
            CHILD_CHECK(fabs(f[i] - wf) <= 1e-5 * fabs(wf));
            CHILD_CHECK(fabs(d[i] - wd) <= 1e-12 * fabs(wd));
            if (op != COMM_AVG) CHILD_CHECK(l[i] == wl);
        }
    }
    return 0;
}

static void test_all_reduce_2(void **state) {
    (void)state;
    run_ranks(2, all_reduce_ranks);
}

static void test_all_reduce_4(void **state) {
    (void)state;
    run_ranks(4, all_reduce_ranks);
}

/* Two ranks all-reduce in one exchange (comm_gloo.cc's pairwise_all_reduce): on random
 * data of several sizes (one element to 1.2 MB), every op and dtype gives, on both ranks,
 * exactly rank 0's value op rank 1's, bit for bit, as Gloo's ring does for two ranks. */
static uint64_t xorshift(uint64_t *x) {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

/* Element i of rank r's buffer: mixed signs and magnitudes, so that rounding shows. */
static double random_value(uint64_t *x) {
    return ((double)(xorshift(x) >> 11) / 9007199254740992.0 - 0.5) * 1000.0;
}

/* a op b, in the type of a and b */
#define COMBINE(op, a, b)                                                                          \
    ((op) == COMM_PRODUCT ? (a) * (b)                                                              \
     : (op) == COMM_MIN   ? ((a) < (b) ? (a) : (b))                                                \
     : (op) == COMM_MAX   ? ((a) < (b) ? (b) : (a))                                                \
                          : (a) + (b))

static int pairwise_ranks(int rank, int size, comm *c) {
    (void)size;
    static const size_t counts[] = {1, 7, 4097, 300001};
    for (size_t k = 0; k < sizeof counts / sizeof counts[0]; k++) {
        size_t n = counts[k];
        float *f = malloc(n * sizeof *f), *wf = malloc(n * sizeof *wf);
        double *d = malloc(n * sizeof *d), *wd = malloc(n * sizeof *wd);
        int64_t *l = malloc(n * sizeof *l), *wl = malloc(n * sizeof *wl);
        CHILD_CHECK(f && wf && d && wd && l && wl);
        for (int op = COMM_SUM; op <= COMM_MAX; op++) {
            uint64_t seed[2] = {0x9e3779b97f4a7c15ull + n + (uint64_t)op, 0};
            seed[1] = seed[0] ^ 0xdeadbeefcafef00dull;
            uint64_t x0 = seed[0], x1 = seed[1];
            for (size_t i = 0; i < n; i++) {
                double a = random_value(&x0), b = random_value(&x1);
                float af = (float)a, bf = (float)b;
                int64_t al = (int64_t)a, bl = (int64_t)b;
                f[i] = rank == 0 ? af : bf;
                d[i] = rank == 0 ? a : b;
                l[i] = rank == 0 ? al : bl;
                /* the want, in each dtype's own arithmetic */
                wf[i] = COMBINE(op, af, bf);
                wd[i] = COMBINE(op, a, b);
                wl[i] = COMBINE(op, al, bl);
                if (op == COMM_AVG) wf[i] /= 2.0f, wd[i] /= 2.0;
            }
            CHILD_CHECK(comm_all_reduce(c, f, DTYPE_FLOAT32, n, op) == DDP_OK);
            CHILD_CHECK(comm_all_reduce(c, d, DTYPE_FLOAT64, n, op) == DDP_OK);
            CHILD_CHECK(memcmp(f, wf, n * sizeof *f) == 0);
            CHILD_CHECK(memcmp(d, wd, n * sizeof *d) == 0);
            if (op != COMM_AVG) {
                CHILD_CHECK(comm_all_reduce(c, l, DTYPE_INT64, n, op) == DDP_OK);
                CHILD_CHECK(memcmp(l, wl, n * sizeof *l) == 0);
            }
        }
        free(f), free(wf), free(d), free(wd), free(l), free(wl);
    }
    return 0;
}

static void test_all_reduce_pairwise(void **state) {
    (void)state;
    run_ranks(2, pairwise_ranks);
}

/* Two ranks whose all_reduce calls differ (only possible with the collective check off)
 * are told so on both, naming both calls, instead of reducing bytes they do not
 * understand or ending in Gloo's network thread: a rest beyond the first 256 KiB that is
 * longer than this rank expects, a different dtype of the same byte count, another op. */
static int pairwise_mismatch_ranks(int rank, int size, comm *c) {
    (void)size;
    enum { BIG = 100000 }; /* 400 KB of float32: more than is posted ahead */
    float *f = calloc(BIG + 1, sizeof *f);
    CHILD_CHECK(f != NULL);
    CHILD_CHECK(comm_all_reduce(c, f, DTYPE_FLOAT32, rank == 0 ? BIG : BIG + 1, COMM_SUM) ==
                DDP_ERR_MISMATCH);
    CHILD_CHECK(strstr(ddp_last_error(), "called it differently") != NULL);
    CHILD_CHECK(strstr(ddp_last_error(), rank == 0 ? "rank 1 with float32[100001]"
                                                   : "rank 0 with float32[100000]") != NULL);
    free(f);
    return 0;
}

static int pairwise_dtype_op_ranks(int rank, int size, comm *c) {
    (void)size;
    double d[2] = {1, 2};
    float f[4] = {1, 2, 3, 4};
    ddp_status s = rank == 0 ? comm_all_reduce(c, d, DTYPE_FLOAT64, 2, COMM_SUM)
                             : comm_all_reduce(c, f, DTYPE_FLOAT32, 4, COMM_SUM);
    CHILD_CHECK(s == DDP_ERR_MISMATCH);
    CHILD_CHECK(strstr(ddp_last_error(), rank == 0 ? "rank 1 with float32[4], op=SUM"
                                                   : "rank 0 with float64[2], op=SUM") != NULL);
    return 0;
}

static int pairwise_op_ranks(int rank, int size, comm *c) {
    (void)size;
    float f[3] = {1, 2, 3};
    CHILD_CHECK(comm_all_reduce(c, f, DTYPE_FLOAT32, 3, rank == 0 ? COMM_SUM : COMM_MAX) ==
                DDP_ERR_MISMATCH);
    CHILD_CHECK(strstr(ddp_last_error(), rank == 0 ? "op=MAX" : "op=SUM") != NULL);
    return 0;
}

static void test_all_reduce_pairwise_mismatch(void **state) {
    (void)state;
    run_ranks(2, pairwise_mismatch_ranks);
    run_ranks(2, pairwise_dtype_op_ranks);
    run_ranks(2, pairwise_op_ranks);
}

/* ---- the rooted and gathering collectives --------------------------------------- */

static int rooted_ranks(int rank, int size, comm *c) {
    int root = size - 1;
    /* broadcast: every rank gets the root's values */
    int64_t b[3] = {rank, rank * 10, rank * 100};
    CHILD_CHECK(comm_broadcast(c, b, DTYPE_INT64, 3, root) == DDP_OK);
    CHILD_CHECK(b[0] == root && b[1] == root * 10 && b[2] == root * 100);
    /* reduce SUM to root 0 */
    double r[2] = {rank, 1};
    CHILD_CHECK(comm_reduce(c, r, DTYPE_FLOAT64, 2, COMM_SUM, 0) == DDP_OK);
    if (rank == 0) CHILD_CHECK(r[0] == size * (size - 1) / 2.0 && r[1] == size);
    /* all_gather: slot i holds rank i's pair */
    float in[2] = {(float)rank, (float)(-rank)};
    float out[16];
    CHILD_CHECK(comm_all_gather(c, in, out, DTYPE_FLOAT32, 2) == DDP_OK);
    for (int i = 0; i < size; i++) CHILD_CHECK(out[2 * i] == i && out[2 * i + 1] == -i);
    /* gather to root */
    float g[16] = {0};
    CHILD_CHECK(comm_gather(c, in, rank == root ? g : NULL, DTYPE_FLOAT32, 2, root) == DDP_OK);
    if (rank == root)
        for (int i = 0; i < size; i++) CHILD_CHECK(g[2 * i] == i && g[2 * i + 1] == -i);
    /* scatter from root 0: rank i gets {i*7, i*7+1} */
    int64_t all[16], mine[2] = {-1, -1};
    for (int i = 0; i < 2 * size; i++) all[i] = (i / 2) * 7 + i % 2;
    CHILD_CHECK(comm_scatter(c, rank == 0 ? all : NULL, mine, DTYPE_INT64, 2, 0) == DDP_OK);
    CHILD_CHECK(mine[0] == rank * 7 && mine[1] == rank * 7 + 1);
    CHILD_CHECK(comm_barrier(c) == DDP_OK);
    return 0;
}

static void test_rooted_2(void **state) {
    (void)state;
    run_ranks(2, rooted_ranks);
}

static void test_rooted_4(void **state) {
    (void)state;
    run_ranks(4, rooted_ranks);
}

/* ---- all_gather into separate buffers ------------------------------------------ */

/* comm_all_gather_list writes rank i's input into outs[i], for a size that splits into odd
 * halves, for a large one (several rounds in flight) and with the input inside the list
 * (in place); the result equals Gloo's own allgather into one buffer. */
static int gather_list_ranks(int rank, int size, comm *c) {
    const size_t counts[] = {1, 3, 262147};
    for (size_t t = 0; t < sizeof counts / sizeof counts[0]; t++) {
        size_t count = counts[t];
        float *in = malloc(count * sizeof *in), *flat = malloc(count * size * sizeof *flat);
        float *outs[8];
        CHILD_CHECK(in && flat);
        for (size_t i = 0; i < count; i++) in[i] = (float)(rank * 1000003 + (int)i) * 0.5f;
        for (int r = 0; r < size; r++) {
            outs[r] = malloc(count * sizeof *outs[r]);
            CHILD_CHECK(outs[r] != NULL);
            for (size_t i = 0; i < count; i++) outs[r][i] = -1;
        }
        CHILD_CHECK(comm_all_gather_list(c, in, (void *const *)outs, DTYPE_FLOAT32, count) ==
                    DDP_OK);
        CHILD_CHECK(comm_all_gather(c, in, flat, DTYPE_FLOAT32, count) == DDP_OK);
        for (int r = 0; r < size; r++)
            CHILD_CHECK(memcmp(outs[r], flat + (size_t)r * count, count * sizeof *in) == 0);
        /* in place: this rank's input is its own slot of the list */
        for (int r = 0; r < size; r++)
            if (r != rank)
                for (size_t i = 0; i < count; i++) outs[r][i] = -1;
        memcpy(outs[rank], in, count * sizeof *in);
        CHILD_CHECK(comm_all_gather_list(c, outs[rank], (void *const *)outs, DTYPE_FLOAT32,
                                         count) == DDP_OK);
        for (int r = 0; r < size; r++)
            CHILD_CHECK(memcmp(outs[r], flat + (size_t)r * count, count * sizeof *in) == 0);
        for (int r = 0; r < size; r++) free(outs[r]);
        free(in);
        free(flat);
    }
    return 0;
}

static void test_gather_list_2(void **state) {
    (void)state;
    run_ranks(2, gather_list_ranks);
}

static void test_gather_list_3(void **state) {
    (void)state;
    run_ranks(3, gather_list_ranks);
}

static void test_gather_list_4(void **state) {
    (void)state;
    run_ranks(4, gather_list_ranks);
}

/* ---- point to point: a ring ------------------------------------------------------ */

static int ring_ranks(int rank, int size, comm *c) {
    float out[4] = {(float)rank, 1, 2, 3}, in[4] = {0};
    comm_p2p *s, *r;
    CHILD_CHECK(comm_send_post(c, out, sizeof out, (rank + 1) % size, 7, &s) == DDP_OK);
    CHILD_CHECK(comm_recv_post(c, in, sizeof in, (rank + size - 1) % size, 7, &r) == DDP_OK);
    CHILD_CHECK(comm_p2p_wait(r, 5000) == DDP_OK);
    CHILD_CHECK(comm_p2p_wait(s, 5000) == DDP_OK);
    comm_p2p_free(s);
    comm_p2p_free(r);
    CHILD_CHECK(in[0] == (rank + size - 1) % size && in[3] == 3);
    return 0;
}

static void test_ring_4(void **state) {
    (void)state;
    run_ranks(4, ring_ranks);
}

/* ---- the staging wrapper --------------------------------------------------------- */

/* comm_staged.c moves CUDA buffers through host memory; host buffers must pass through
 * it untouched, with every call's arguments (roots, counts, the list, posted messages)
 * handed on as they came: the same checks as above, through the wrapper. (Its device
 * path needs a GPU: tests/gpu/test_gpu_gloo.lua.) */
static int staged_ranks(int rank, int size, comm *c) {
    CHILD_CHECK(strcmp(comm_backend_name(c), "gloo") == 0);
    CHILD_CHECK(!comm_can_abort(c));
    CHILD_CHECK(all_reduce_ranks(rank, size, c) == 0);
    CHILD_CHECK(rooted_ranks(rank, size, c) == 0);
    CHILD_CHECK(gather_list_ranks(rank, size, c) == 0);
    CHILD_CHECK(ring_ranks(rank, size, c) == 0);
    return 0;
}

static void test_staged_passes_host_buffers(void **state) {
    (void)state;
    staged = true;
    run_ranks(3, staged_ranks);
    staged = false;
}

/* ---- failures -------------------------------------------------------------------- */

/* A receive whose sender is late ends with a timeout error within the bound (Gloo then
 * closes the pair: the communicator must be replaced, which process_group.c does). Rank 1
 * stays connected, and silent, until rank 0's cue says that the receive has ended. */
static int recv_timeout_ranks(int rank, int size, comm *c) {
    (void)size;
    if (rank == 1) {
        CHILD_CHECK(cue_take());
        return 0;
    }
    float v = 0;
    comm_p2p *r;
    CHILD_CHECK(comm_recv_post(c, &v, sizeof v, 1, 3, &r) == DDP_OK);
    ddp_status s = comm_p2p_wait(r, 300);
    cue_give(1);
    CHILD_CHECK(s == DDP_ERR_TIMEOUT);
    CHILD_CHECK(strstr(ddp_last_error(), "recv") != NULL);
    comm_p2p_free(r);
    return 0;
}

static void test_recv_timeout(void **state) {
    (void)state;
    cue_open();
    run_ranks(2, recv_timeout_ranks);
    cue_close();
}

/* A peer that dies wakes a blocked collective with an error. */
static int dead_peer_ranks(int rank, int size, comm *c) {
    (void)size;
    if (rank == 1) _exit(0); /* leaves without a word */
    float f[4] = {1, 2, 3, 4};
    ddp_status s = comm_all_reduce(c, f, DTYPE_FLOAT32, 4, COMM_SUM);
    CHILD_CHECK(s == DDP_ERR_COMM || s == DDP_ERR_TIMEOUT);
    CHILD_CHECK(strstr(ddp_last_error(), "all_reduce") != NULL);
    return 0;
}

static void test_dead_peer(void **state) {
    (void)state;
    run_ranks(2, dead_peer_ranks);
}

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_all_reduce_2),
        cmocka_unit_test(test_all_reduce_4),
        cmocka_unit_test(test_all_reduce_pairwise),
        cmocka_unit_test(test_all_reduce_pairwise_mismatch),
        cmocka_unit_test(test_rooted_2),
        cmocka_unit_test(test_rooted_4),
        cmocka_unit_test(test_gather_list_2),
        cmocka_unit_test(test_gather_list_3),
        cmocka_unit_test(test_gather_list_4),
        cmocka_unit_test(test_ring_4),
        cmocka_unit_test(test_staged_passes_host_buffers),
        cmocka_unit_test(test_recv_timeout),
        cmocka_unit_test(test_dead_peer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
