/* test_dist_alloc.c — every path out of a failed allocation in the parts of dist that run
 * without a peer: the store client (a server in this process, whose thread the seam does
 * not count), the store server (its threads share a countdown of their own) and DDP's reducer on a
 * group of one rank (a forked rank, as in test_dist_reducer.c). Each sequence runs once to count
 * its allocations (the seam in base/alloc.h), then again with each of them failing: each run either
 * completes, or exactly one call fails with DDP_ERR_NOMEM and "out of memory", and never crashes. A
 * store client that ran out of memory stays usable: the next request gets its own
 * answer. Leaks are LeakSanitizer's to find: at exit here, and in the forked rank (which
 * leaves with _exit) by an explicit leak check. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
#endif

#include "base/alloc.h"
#include "dist/process_group.h"
#include "dist/reducer.h"
#include "dist/store.h"
#include "support/support_dist_ranks.h"

/* One call: true when it succeeded; a NOMEM with the right words is counted; anything else
 * is reported through *bad (the caller's assert, or a rank's exit code). */
static bool step_ok(ddp_status s, int *nomem, int *bad) {
    if (s == DDP_OK) return true;
    if (s == DDP_ERR_NOMEM && strstr(ddp_last_error(), "out of memory")) {
        (*nomem)++;
        return false;
    }
    fprintf(stderr, "status %d: %s\n", (int)s, ddp_last_error());
    (*bad)++;
    return false;
}

/* ---- the store client ------------------------------------------------------------------ */

static store_server *server;

/* After a NOMEM the connection must still answer each request with its own answer. */
static int probe(store_client *c) {
    char *v = NULL;
    size_t len = 0;
    ddp_status s = store_get(c, "probe", 1.0, &v, &len);
    int bad = s != DDP_OK || len != 5 || memcmp(v, "alive", 5) != 0;
    if (bad) fprintf(stderr, "probe after NOMEM: status %d: %s\n", (int)s, ddp_last_error());
    free(v);
    return bad;
}

/* What a rendezvous and the fingerprint exchange do with the store; returns the NOMEMs. */
static int run_store(int *bad) {
    int nomem = 0;
    store_client *c = NULL;
    char *v = NULL, *vals[3] = {NULL, NULL, NULL};
    size_t len = 0, lens[3];
    int64_t n = 0;
    bool present = false, deleted = false;
    const char *keys[3] = {"a", "probe", "none"};
    bool ok = step_ok(store_connect("127.0.0.1", store_server_port(server), 2.0, &c), &nomem, bad);
    ok = ok && step_ok(store_set(c, "a", "hello", 5), &nomem, bad) &&
         step_ok(store_get(c, "a", 1.0, &v, &len), &nomem, bad) &&
         step_ok(store_add(c, "n", 1, &n), &nomem, bad) &&
         step_ok(store_check(c, "a", &present), &nomem, bad) &&
         step_ok(store_multi_wait(c, keys, 3, 0, vals, lens), &nomem, bad);
    for (int i = 0; i < 3; i++) free(vals[i]);
    ok = ok &&
         step_ok(store_exchange(c, "b", "xyz", 3, "a", keys + 1, 2, 0, vals, lens), &nomem, bad);
    for (int i = 0; i < 2; i++) free(vals[i]);
    ok = ok && step_ok(store_delete_key(c, "b", &deleted), &nomem, bad);
    if (ok && (len != 5 || memcmp(v, "hello", 5) != 0 || !present || !deleted)) (*bad)++;
    if (!ok && c && nomem) { /* with memory again, the connection is in step */
        ddp_alloc_fail_at(0);
        *bad += probe(c);
    }
    free(v);
    store_close(c);
    return nomem;
}

/* Starts the store server of the walks and holds a "probe" key in it (what probe reads
 * back after a failure). */
static void start_server(void) {
    assert_int_equal(store_server_start("127.0.0.1", 0, &server), DDP_OK);
    store_client *c;
    assert_int_equal(store_connect("127.0.0.1", store_server_port(server), 2.0, &c), DDP_OK);
    assert_int_equal(store_set(c, "probe", "alive", 5), DDP_OK);
    store_close(c);
}

static void test_store_client(void **state) {
    (void)state;
    start_server();
    int bad = 0;
    ddp_alloc_fail_at(0);
    assert_int_equal(run_store(&bad), 0);
    long needed = ddp_alloc_count();
    assert_int_equal(bad, 0);
    print_message("store client: %ld allocations through the seam\n", needed);
    assert_true(needed >= 5);
    for (long k = 1; k <= needed; k++) {
        ddp_alloc_fail_at(k);
        int failed = run_store(&bad);
        ddp_alloc_fail_at(0);
        if (bad || failed != 1)
            fail_msg("allocation %ld of %ld: %d calls failed for memory, %d otherwise", k, needed,
                     failed, bad);
    }
    ddp_alloc_fail_at(needed + 1); /* past the end: nothing fails */
    assert_int_equal(run_store(&bad), 0);
    ddp_alloc_fail_at(0);
    assert_int_equal(bad, 0);
    store_server_stop(server);
}

/* ---- the store server ------------------------------------------------------------------- */

/* The same requests with the server's k-th allocation failing (its threads share one
 * countdown): each call either works or fails with a clear error (the server refused it,
 * or dropped the connection and the client said so), and the server goes on serving. */
static int run_store_against_server(int *bad) {
    store_client *c = NULL;
    char *v = NULL, *vals[3] = {NULL, NULL, NULL};
    size_t len = 0, lens[3];
    int64_t n = 0;
    bool present = false, deleted = false;
    const char *keys[3] = {"a", "probe", "none"};
    ddp_status st[8];
    int calls = 0, failed = 0;
    st[calls++] = store_connect("127.0.0.1", store_server_port(server), 2.0, &c);
    if (st[0] == DDP_OK) {
        st[calls++] = store_set(c, "a", "hello", 5);
        st[calls++] = store_get(c, "a", 0.2, &v, &len);
        st[calls++] = store_add(c, "n", 1, &n);
        st[calls++] = store_check(c, "a", &present);
        st[calls++] = store_multi_wait(c, keys, 3, 0, vals, lens);
        for (int i = 0; i < 3; i++) free(vals[i]);
        st[calls++] = store_exchange(c, "b", "xyz", 3, "a", keys + 1, 2, 0, vals, lens);
        for (int i = 0; i < 2; i++) free(vals[i]);
        st[calls++] = store_delete_key(c, "b", &deleted);
    }
    for (int i = 0; i < calls; i++) {
        if (st[i] == DDP_OK) continue;
        failed++;
        if (st[i] != DDP_ERR_COMM && st[i] != DDP_ERR_STATE && st[i] != DDP_ERR_TIMEOUT &&
            st[i] != DDP_ERR_NOMEM) {
            fprintf(stderr, "call %d: status %d\n", i, (int)st[i]);
            (*bad)++;
        }
    }
    free(v);
    store_close(c);
    return failed;
}

static void test_store_server(void **state) {
    (void)state;
    start_server();
    int bad = 0;
    ddp_alloc_fail_shared_at(0);
    assert_int_equal(run_store_against_server(&bad), 0);
    long needed = ddp_alloc_shared_count();
    assert_int_equal(bad, 0);
    print_message("store server: %ld allocations through the seam\n", needed);
    assert_true(needed >= 8);
    long with_failures = 0;
    for (long k = 1; k <= needed; k++) {
        ddp_alloc_fail_shared_at(k);
        with_failures += run_store_against_server(&bad) > 0;
        ddp_alloc_fail_shared_at(0);
        if (bad)
            fail_msg("server allocation %ld of %ld: a call failed without a clear error", k,
                     needed);
        /* the server goes on: a new connection gets its answers */
        store_client *c;
        assert_int_equal(store_connect("127.0.0.1", store_server_port(server), 2.0, &c), DDP_OK);
        assert_int_equal(probe(c), 0);
        store_close(c);
    }
    print_message("store server: %ld of %ld failed allocations cost the client a call\n",
                  with_failures, needed);
    assert_true(with_failures > 0);
    store_server_stop(server);
}

/* ---- the reducer ------------------------------------------------------------------------ */

#define NP 5

/* p0..p3 float32 (64, 16, 64, 16 elements), p4 float64 (8): with caps of 300 bytes, three
 * buckets (p3 p2 | p1 p0 | p4). */
static const int64_t numels[NP] = {64, 16, 64, 16, 8};
static const char *const names[NP] = {"0.weight", "0.bias", "1.weight", "1.bias", "scale"};

typedef struct {
    tensor *p[NP];
} params;

static int params_make(int rank, params *ps) {
    for (int i = 0; i < NP; i++) {
        dtype dt = i == 4 ? DTYPE_FLOAT64 : DTYPE_FLOAT32;
        CHILD_CHECK(tensor_zeros(&numels[i], 1, dt, DEVICE_CPU_VALUE, &ps->p[i]) == DDP_OK);
        ps->p[i]->requires_grad = true;
        CHILD_CHECK(tensor_full(&numels[i], 1, dt, DEVICE_CPU_VALUE, (double)(i + 1),
                                &ps->p[i]->grad) == DDP_OK);
    }
    return 0;
}

static void params_free(params *ps) {
    for (int i = 0; i < NP; i++) tensor_release(ps->p[i]);
}

/* One DDP pass: every parameter ready, in index order (not the buckets' reverse order, so
 * that the rebuild has something to do). */
static bool one_pass(reducer *r, const bool *used, int *nomem, int *bad) {
    bool ok = step_ok(reducer_prepare(r, used), nomem, bad);
    for (int i = 0; ok && i < NP; i++) ok = step_ok(reducer_mark_ready(r, i), nomem, bad);
    return ok && step_ok(reducer_finalize(r), nomem, bad);
}

/* DDP's life: the reducer, a pass, the rebuild in ready order (or, finding unused
 * parameters, a join's shadow pass), a second pass, then a pass left unfinished, which
 * the next forward's check names. Returns the NOMEMs. */
static int run_reducer(const reducer_options *o, params *pp, int *bad) {
    int nomem = 0;
    params ps = *pp;
    bool used[NP] = {true, true, true, true, true};
    reducer *r = NULL;
    bool did = false;
    bool ok = step_ok(reducer_new(NULL, ps.p, names, NP, o, &r), &nomem, bad) &&
              one_pass(r, used, &nomem, bad);
    if (ok && o->find_unused_parameters)
        ok = step_ok(reducer_shadow_backward(r), &nomem, bad);
    else if (ok)
        ok = step_ok(reducer_rebuild(r, &did), &nomem, bad);
    ok = ok && one_pass(r, used, &nomem, bad) && step_ok(reducer_prepare(r, used), &nomem, bad) &&
         step_ok(reducer_mark_ready(r, 0), &nomem, bad);
    if (ok) {
        ddp_status s = reducer_check_finished(r);
        if (s != DDP_ERR_STATE || !strstr(ddp_last_error(), "1.bias, 1.weight, scale")) (*bad)++;
        if (!o->find_unused_parameters && !did) (*bad)++;
        /* the averaged gradients of one rank are the gradients */
        for (int i = 1; i < NP; i++)
            if (tensor_get(ps.p[i]->grad, 0) != (double)(i + 1)) (*bad)++;
    }
    if (!ok && r && nomem) {
        /* with memory again, the reducer goes on: the next forward's check (which may
         * name the pass cut short) starts afresh, and a whole pass reduces correctly */
        ddp_alloc_fail_at(0);
        (void)reducer_check_finished(r);
        int again = 0;
        if (!one_pass(r, used, &again, bad) || again) (*bad)++;
        for (int i = 0; i < NP; i++)
            if (tensor_get(ps.p[i]->grad, 0) != (double)(i + 1)) (*bad)++;
        if (*bad) fprintf(stderr, "the reducer did not recover from that NOMEM\n");
    }
    reducer_free(r);
    return nomem;
}

/* run_reducer on fresh parameters (made with memory to spare) with the k-th allocation
 * failing (0: none); -1 when the parameters cannot be made. *count: the allocations. */
static int reducer_once(int rank, const reducer_options *o, long k, int *bad, long *count) {
    params ps;
    if (params_make(rank, &ps)) return -1;
    ddp_alloc_fail_at(k);
    int failed = run_reducer(o, &ps, bad);
    if (count) *count = ddp_alloc_count();
    ddp_alloc_fail_at(0);
    params_free(&ps);
    return failed;
}

/* Walks run_reducer over its allocations; a rank's exit code. */
static int walk_reducer(int rank, const char *what, const reducer_options *o) {
    int bad = 0;
    long needed = 0;
    CHILD_CHECK(reducer_once(rank, o, 0, &bad, &needed) == 0 && bad == 0);
    fprintf(stderr, "reducer (%s): %ld allocations through the seam\n", what, needed);
    CHILD_CHECK(needed > 20);
    for (long k = 1; k <= needed; k++) {
        int failed = reducer_once(rank, o, k, &bad, NULL);
        if (bad || failed != 1) {
            fprintf(stderr, "reducer (%s): allocation %ld of %ld: %d NOMEM, %d other\n", what, k,
                    needed, failed, bad);
            return 1;
        }
    }
    /* past the end: nothing fails */
    CHILD_CHECK(reducer_once(rank, o, needed + 1, &bad, NULL) == 0 && bad == 0);
    return 0;
}

static int reducer_rank(int rank, int size, int port) {
    /* a crash must end this rank, not land in cmocka's handler (inherited from the fork),
     * which would go on running the parent's tests here */
    const int crashes[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT};
    for (size_t i = 0; i < sizeof crashes / sizeof crashes[0]; i++) signal(crashes[i], SIG_DFL);
    CHILD_CHECK(ranks_pg_init(port, rank, size, 10) == DDP_OK);
    pg_chunk_begin(1);
    reducer_options plain = {.first_cap = 300, .cap = 300};
    reducer_options view = {.first_cap = 300, .cap = 300, .gradient_as_bucket_view = true};
    reducer_options unused = {.first_cap = 300, .cap = 300, .find_unused_parameters = true};
    int failed = walk_reducer(rank, "copies", &plain) || walk_reducer(rank, "views", &view) ||
                 walk_reducer(rank, "find_unused", &unused);
    pg_chunk_end();
    CHILD_CHECK(pg_destroy() == DDP_OK);
#if defined(__SANITIZE_ADDRESS__)
    /* the rank leaves with _exit, past LeakSanitizer's check at exit */
    if (__lsan_do_recoverable_leak_check()) return 1;
#endif
    return failed;
}

static void test_reducer(void **state) {
    (void)state;
    ranks_run_hosted(1, reducer_rank);
}

/* ---- the collectives and their fingerprint exchange, on two ranks ------------------------- */

/* One rank (the walker) runs out of memory at its k-th allocation while the other has
 * memory: the walker's call fails with NOMEM, the other's either works or fails with a
 * clear error of the walker's making (its mark in the exchange, "ran out of memory"; the
 * watchdog's "did not arrive" when it failed before it could publish; a refused
 * rendezvous when it failed inside new_group's), and then both are in step. The waits
 * allocate only while a rank is missing, so the counts depend on timing; each run fails
 * whichever allocation is the k-th in it. */
static pg_buffer floats(float *data, int64_t n) {
    pg_buffer b = {.data = data, .dt = DTYPE_FLOAT32, .ndim = 1};
    b.sizes[0] = n;
    return b;
}

/* The other rank's failure: a status that names the walker's doing. */
static bool peer_failure(ddp_status s) {
    return s == DDP_ERR_TIMEOUT || s == DDP_ERR_COMM || s == DDP_ERR_STATE;
}

/* all_reduce, broadcast, barrier, all_gather, new_group and an all_reduce on it; stops at
 * the first failure: its status, or DDP_OK. */
static ddp_status run_collectives(int rank, int *wrong) {
    float x[4] = {1, 2, 3, (float)rank}, y[4], both[8];
    for (int i = 0; i < 4; i++) y[i] = (float)(rank * 10 + i);
    pg_buffer xb = floats(x, 4), yb = floats(y, 4);
    pg_buffer gathered[2] = {floats(both, 4), floats(both + 4, 4)};
    process_group *sub = NULL;
    ddp_status s = pg_all_reduce(NULL, &xb, COMM_SUM);
    if (s == DDP_OK) s = pg_broadcast(NULL, &yb, 1);
    if (s == DDP_OK) s = pg_barrier(NULL);
    if (s == DDP_OK) s = pg_all_gather(NULL, gathered, 2, &xb);
    if (s == DDP_OK) s = pg_new_group(NULL, 0, &sub);
    if (s == DDP_OK) s = pg_all_reduce(sub, &yb, COMM_MAX);
    if (s == DDP_OK && (x[0] != 2 || x[3] != 1 || y[0] != 10 || both[4] != 2 || both[7] != 1))
        (*wrong)++;
    pg_release(sub);
    return s;
}

/* With memory again, the ranks are in step: an all_reduce gives the sum. */
static int in_step(int rank) {
    float v = (float)(rank + 1);
    pg_buffer b = floats(&v, 1);
    ddp_status s = pg_all_reduce(NULL, &b, COMM_SUM);
    if (s != DDP_OK || v != 3) {
        fprintf(stderr, "rank %d: the all_reduce after a NOMEM: status %d, %g (%s)\n", rank, (int)s,
                (double)v, s == DDP_OK ? "" : ddp_last_error());
        return 1;
    }
    return 0;
}

/* The end of a chunk, as the driver makes it: both ranks end it, meet (through a store
 * client of their own), and begin the next, so that a call one of them left waiting for
 * the other is over before the next call starts. */
static store_client *meeting;
static int next_chunk(int rank) {
    static long chunk = 1;
    pg_chunk_end();
    char key[32];
    snprintf(key, sizeof key, "walk/met/%ld", chunk++);
    int64_t n = 0;
    CHILD_CHECK(store_add(meeting, key, 1, &n) == DDP_OK);
    for (int i = 0; i < 30000 && n < 2; i++) {
        struct timespec ms = {0, 1000000L};
        nanosleep(&ms, NULL);
        CHILD_CHECK(store_add(meeting, key, 0, &n) == DDP_OK);
    }
    CHILD_CHECK(n == 2);
    pg_chunk_begin((uint64_t)chunk);
    return 0;
}

static int walk_collectives(int rank, int walker) {
    int wrong = 0;
    ddp_alloc_fail_at(0);
    CHILD_CHECK(run_collectives(rank, &wrong) == DDP_OK && wrong == 0);
    double most = rank == walker ? (double)ddp_alloc_count() : 0;
    pg_buffer mb = {.data = &most, .dt = DTYPE_FLOAT64, .ndim = 1, .sizes = {1}};
    CHILD_CHECK(pg_all_reduce(NULL, &mb, COMM_MAX) == DDP_OK);
    long needed = (long)most + 2; /* a slower run may allocate more */
    if (rank == walker)
        fprintf(stderr, "collectives on 2 ranks, rank %d short of memory: about %ld allocations\n",
                walker, needed - 2);
    CHILD_CHECK(needed >= 12);
    long own = 0, theirs = 0, marked = 0;
    for (long k = 1; k <= needed; k++) {
        ddp_alloc_fail_at(rank == walker ? k : 0);
        ddp_status s = run_collectives(rank, &wrong);
        ddp_alloc_fail_at(0);
        bool fine =
            rank == walker
                ? (s == DDP_OK || (s == DDP_ERR_NOMEM && strstr(ddp_last_error(), "out of memory")))
                : (s == DDP_OK || peer_failure(s));
        if (!fine || wrong) {
            fprintf(stderr, "rank %d (walker %d): allocation %ld: status %d: %s\n", rank, walker, k,
                    (int)s, ddp_last_error());
            return 1;
        }
        own += rank == walker && s != DDP_OK;
        theirs += rank != walker && s != DDP_OK;
        marked += rank != walker && s != DDP_OK && strstr(ddp_last_error(), "ran out of memory");
        CHILD_CHECK(next_chunk(rank) == 0);
        CHILD_CHECK(in_step(rank) == 0);
    }
    if (rank == walker) CHILD_CHECK(own > 0);
    if (rank != walker)
        fprintf(stderr,
                "rank %d: %ld of its calls failed for rank %d's memory (%ld told by its mark, "
                "the others by the watchdog or the rendezvous)\n",
                rank, theirs, walker, marked);
    else
        fprintf(stderr, "rank %d: %ld calls failed for its own memory\n", rank, own);
    return 0;
}

static int collectives_rank(int rank, int size, int port) {
    const int crashes[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT};
    for (size_t i = 0; i < sizeof crashes / sizeof crashes[0]; i++) signal(crashes[i], SIG_DFL);
    setenv("DDPLAB_COLLECTIVE_TIMEOUT", "0.3", 1); /* a walker that never published costs this */
    CHILD_CHECK(ranks_pg_init(port, rank, size, 3) == DDP_OK);
    CHILD_CHECK(store_connect("127.0.0.1", port, 2.0, &meeting) == DDP_OK);
    pg_chunk_begin(1);
    int failed = walk_collectives(rank, 0) || walk_collectives(rank, 1);
    pg_chunk_end();
    store_close(meeting);
    CHILD_CHECK(pg_destroy() == DDP_OK);
#if defined(__SANITIZE_ADDRESS__)
    if (__lsan_do_recoverable_leak_check()) return 1;
#endif
    return failed;
}

/* Long form only (DDP_LONG=1, about 75 s): in 5 of 12 runs a rank stalled for more
 * than 30 s after the end of a call its peer failed for memory (docs/reliability.md, "The
 * allocation seam"); until that is found the walk would make the suite flaky. */
static void test_collectives(void **state) {
    (void)state;
    const char *long_form = getenv("DDP_LONG");
    if (!long_form || strcmp(long_form, "1") != 0) {
        print_message("collectives on 2 ranks: the long form only (DDP_LONG=1)\n");
        skip();
    }
    ranks_run_hosted(2, collectives_rank);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reducer), /* forks: before any thread starts here */
        cmocka_unit_test(test_collectives),
        cmocka_unit_test(test_store_client),
        cmocka_unit_test(test_store_server),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
