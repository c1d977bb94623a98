/* test_tensor_cache_alloc.c — the caching allocator's bookkeeping (src/tensor/
 * cache_alloc.c) over a test backend of plain malloc with a byte limit: size classes,
 * reuse of freed blocks by class, the statistics (allocated as PyTorch counts it, peaks,
 * reserved), empty_cache, the retry after returning the cache when the backend refuses,
 * and storages made from the cache. This tests our logic; on a GPU the backend is
 * cudaMalloc/cudaFree (tests/gpu checks that one). */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "support/support_tensor_checks.h"
#include "tensor/cache_alloc.h"

#define MIB ((size_t)1 << 20)

typedef struct {
    size_t limit, in_use; /* bytes the backend may give at once, and gives now */
    int allocs, frees, refusals;
} test_backend;

/* Each block records its size in front, so that frees can be counted in bytes. */
static int backend_alloc(void *ctx, size_t bytes, void **ptr, const char **why) {
    test_backend *b = ctx;
    if (b->in_use + bytes > b->limit) {
        b->refusals++;
        *why = "test backend is full";
        return 1;
    }
    size_t *p = malloc(sizeof(size_t) + bytes);
    assert_non_null(p);
    *p = bytes;
    b->in_use += bytes;
    b->allocs++;
    *ptr = p + 1;
    return 0;
}

static void backend_free(void *ctx, void *ptr) {
    test_backend *b = ctx;
    size_t *p = (size_t *)ptr - 1;
    b->in_use -= *p;
    b->frees++;
    free(p);
}

static cache_alloc *new_cache(test_backend *b, size_t limit) {
    memset(b, 0, sizeof *b);
    b->limit = limit;
    cache_alloc *c = cache_alloc_new((cache_backend){b, backend_alloc, backend_free},
                                     DEVICE_CPU_VALUE, "test:0");
    assert_non_null(c);
    return c;
}

static void test_block_sizes(void **state) {
    (void)state;
    static const struct {
        size_t request, block;
    } cases[] = {
        {0, 0},
        {1, 512},
        {512, 512},
        {513, 1024},
        {4000, 4096},
        {MIB, MIB},
        {MIB + 1, MIB + MIB / 4}, /* above 1 MiB: four classes per power of two */
        {MIB + MIB / 4 + 1, MIB + MIB / 2},
        {2 * MIB - 1, 2 * MIB},
        {2 * MIB + 1, 2 * MIB + MIB / 2},
        {100 * MIB, 112 * MIB},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t got = cache_alloc_block_size(cases[i].request);
        if (got != cases[i].block)
            fail_msg("request %zu: block %zu, expected %zu", cases[i].request, got, cases[i].block);
    }
    /* never less than asked for, never a quarter more (above the 512-byte step) */
    for (size_t n = 1; n < 64 * MIB; n = n * 3 + 7) {
        size_t b = cache_alloc_block_size(n);
        assert_true(b >= n);
        assert_true(b - n < 512 || (b - n) * 4 <= b);
    }
}

static void test_reuse_by_class(void **state) {
    (void)state;
    test_backend b;
    cache_alloc *c = new_cache(&b, 64 * MIB);
    void *p1, *k1, *p2, *k2, *p3, *k3;
    OK(cache_alloc_get(c, 1000, &p1, &k1));
    cache_alloc_put(c, k1);
    OK(cache_alloc_get(c, 600, &p2, &k2)); /* same class (1024): the same block */
    assert_ptr_equal(p2, p1);
    assert_int_equal(b.allocs, 1);
    OK(cache_alloc_get(c, 2000, &p3, &k3)); /* another class: a new block */
    assert_ptr_not_equal(p3, p1);
    assert_int_equal(b.allocs, 2);
    memset(p3, 0x5a, 2000); /* the block really has the bytes asked for */
    cache_stats st = cache_alloc_stats(c);
    assert_int_equal(st.reuses, 1);
    assert_int_equal(st.backend_allocs, 2);
    cache_alloc_put(c, k2);
    cache_alloc_put(c, k3);
    cache_alloc_put(c, NULL); /* NULL-safe */
    cache_alloc_destroy(c);
    assert_int_equal(b.frees, 2); /* destroy returns the cache */
    assert_int_equal(b.in_use, 0);
}

static void test_stats_and_empty_cache(void **state) {
    (void)state;
    test_backend b;
    cache_alloc *c = new_cache(&b, 64 * MIB);
    void *p[3], *k[3];
    OK(cache_alloc_get(c, 100, &p[0], &k[0]));     /* counts 512, as PyTorch */
    OK(cache_alloc_get(c, 4096, &p[1], &k[1]));    /* 4096 */
    OK(cache_alloc_get(c, 3 * MIB, &p[2], &k[2])); /* 3 MiB, block 3 MiB */
    cache_stats st = cache_alloc_stats(c);
    assert_int_equal(st.allocated, 512 + 4096 + 3 * MIB);
    assert_int_equal(st.max_allocated, st.allocated);
    assert_int_equal(st.reserved, 512 + 4096 + 3 * MIB);
    cache_alloc_put(c, k[2]);
    st = cache_alloc_stats(c);
    assert_int_equal(st.allocated, 512 + 4096);
    assert_int_equal(st.max_allocated, 512 + 4096 + 3 * MIB); /* the peak stays */
    assert_int_equal(st.reserved, 512 + 4096 + 3 * MIB);      /* cached, still held */
    cache_alloc_reset_peak(c);
    assert_int_equal(cache_alloc_stats(c).max_allocated, 512 + 4096);
    cache_alloc_empty(c); /* returns the free 3 MiB block; live blocks stay */
    st = cache_alloc_stats(c);
    assert_int_equal(st.reserved, 512 + 4096);
    assert_int_equal(b.frees, 1);
    assert_int_equal(b.in_use, 512 + 4096);
    cache_alloc_put(c, k[0]);
    cache_alloc_put(c, k[1]);
    st = cache_alloc_stats(c);
    assert_int_equal(st.allocated, 0); /* back to the start once all are released */
    cache_alloc_empty(c);
    assert_int_equal(cache_alloc_stats(c).reserved, 0);
    assert_int_equal(b.in_use, 0);
    cache_alloc_destroy(c);
}

static void test_zero_bytes_and_too_large(void **state) {
    (void)state;
    test_backend b;
    cache_alloc *c = new_cache(&b, MIB);
    void *p = (void *)1, *k = (void *)1;
    OK(cache_alloc_get(c, 0, &p, &k));
    assert_null(p);
    assert_null(k);
    assert_int_equal(b.allocs, 0);
    cache_alloc_put(c, k);
    ERR_CONTAINS(cache_alloc_get(c, (size_t)1 << 41, &p, &k), DDP_ERR_NOMEM,
                 "test:0: out of memory: a tensor of 2199023255552 bytes is larger than");
    assert_int_equal(b.allocs, 0);
    cache_alloc_destroy(c);
}

/* When the backend refuses, the cache is returned to it and the request tried again; if
 * it still refuses, the message names the device, the size and what is held. */
static void test_out_of_memory_returns_cache_then_fails(void **state) {
    (void)state;
    test_backend b;
    cache_alloc *c = new_cache(&b, 4 * MIB);
    void *p1, *k1, *p2, *k2, *p3, *k3;
    OK(cache_alloc_get(c, 3 * MIB, &p1, &k1));
    cache_alloc_put(c, k1); /* cached: the backend still has 3 of its 4 MiB out */
    OK(cache_alloc_get(c, 2 * MIB, &p2, &k2)); /* refused once, then served */
    assert_int_equal(b.refusals, 1);
    assert_int_equal(b.frees, 1);
    assert_int_equal(cache_alloc_stats(c).reserved, 2 * MIB);
    ERR_CONTAINS(cache_alloc_get(c, 3 * MIB, &p3, &k3), DDP_ERR_NOMEM,
                 "test:0: out of memory: a tensor of 3145728 bytes (3.0 MiB) could not be "
                 "allocated (test backend is full; 2.0 MiB held by live tensors, 2.0 MiB "
                 "reserved)");
    cache_stats st = cache_alloc_stats(c);
    assert_int_equal(st.allocated, 2 * MIB); /* the failure changed nothing */
    assert_int_equal(st.backend_allocs, 2);
    cache_alloc_put(c, k2);
    cache_alloc_destroy(c);
    assert_int_equal(b.in_use, 0);
}

/* The cache as a storage allocator: tensors take blocks from it and give them back when
 * released, so memory_allocated returns to its start and the next step reuses blocks. */
static void test_tensors_from_the_cache(void **state) {
    (void)state;
    test_backend b;
    cache_alloc *c = new_cache(&b, 64 * MIB);
    ddp_allocator *a = cache_alloc_allocator(c);
    assert_string_equal(a->name, "test:0");
    int64_t sizes[2] = {64, 100};
    for (int step = 0; step < 100; step++) {
        tensor *x = NULL, *y = NULL, *z = NULL;
        OK(tensor_empty_from(a, sizes, 2, DTYPE_FLOAT32, &x));
        OK(tensor_empty_from(a, sizes, 2, DTYPE_FLOAT32, &y));
        OK(tensor_fill_(x, 1.5));
        OK(tensor_fill_(y, 2.0));
        OK(tensor_empty_from(a, sizes, 2, DTYPE_FLOAT32, &z));
        OK(tensor_copy_(z, x));
        assert_true(tensor_get(z, 6399) == 1.5);
        assert_int_equal(cache_alloc_stats(c).allocated, 3 * 25600);
        tensor_release(x);
        tensor_release(y);
        tensor_release(z);
        assert_int_equal(cache_alloc_stats(c).allocated, 0);
    }
    cache_stats st = cache_alloc_stats(c);
    assert_int_equal(st.backend_allocs, 3); /* the first step's three blocks, reused */
    assert_int_equal(st.reuses, 297);
    assert_int_equal(st.max_allocated, 3 * 25600);
    cache_alloc_destroy(c);
    assert_int_equal(b.in_use, 0);
}

/* Tensors may be freed on a helper thread: the counts stay exact under contention. */
static void *churn(void *arg) {
    cache_alloc *c = arg;
    for (int i = 0; i < 20000; i++) {
        void *p, *k;
        if (cache_alloc_get(c, (size_t)(i % 7 + 1) * 1000, &p, &k) != DDP_OK) return arg;
        cache_alloc_put(c, k);
    }
    return NULL;
}

static void test_threads(void **state) {
    (void)state;
    test_backend b;
    cache_alloc *c = new_cache(&b, 64 * MIB);
    pthread_t th[4];
    for (int i = 0; i < 4; i++) assert_int_equal(pthread_create(&th[i], NULL, churn, c), 0);
    for (int i = 0; i < 4; i++) {
        void *r;
        pthread_join(th[i], &r);
        assert_null(r);
    }
    cache_stats st = cache_alloc_stats(c);
    assert_int_equal(st.allocated, 0);
    assert_int_equal(st.backend_allocs + st.reuses, 80000);
    assert_true(st.backend_allocs <= 28); /* at most 7 classes x 4 threads live at once */
    cache_alloc_destroy(c);
    assert_int_equal(b.in_use, 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_block_sizes),
        cmocka_unit_test(test_reuse_by_class),
        cmocka_unit_test(test_stats_and_empty_cache),
        cmocka_unit_test(test_zero_bytes_and_too_large),
        cmocka_unit_test(test_out_of_memory_returns_cache_then_fails),
        cmocka_unit_test(test_tensors_from_the_cache),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
