/* test_tensor_allocator.c — the storage seam: every storage hands its data block back to
 * the allocator that made it (with the pointer, context and size it got), views share a
 * block, a failing allocator leaves nothing behind, and CPU tensors use the host
 * allocator's aligned blocks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "support/support_tensor_checks.h"
#include "tensor/allocator.h"

/* An allocator over malloc that counts what it gives and gets back, and checks that
 * each block comes back with the context and size it went out with. */
typedef struct {
    ddp_allocator base; /* first: the callbacks get &base */
    int allocs, frees;
    size_t live_bytes;
    void *last_freed;
    int fail; /* refuse every request */
} counting_allocator;

static ddp_status counting_alloc(ddp_allocator *self, size_t nbytes, void **data, void **ctx) {
    counting_allocator *c = (counting_allocator *)self;
    if (c->fail) return DDP_FAIL(DDP_ERR_NOMEM, "test: refusing %zu bytes", nbytes);
    size_t *block = malloc(sizeof(size_t) + nbytes);
    assert_non_null(block);
    *block = nbytes;
    *data = block + 1;
    *ctx = block;
    c->allocs++;
    c->live_bytes += nbytes;
    return DDP_OK;
}

static void counting_free(ddp_allocator *self, void *data, void *ctx, size_t nbytes) {
    counting_allocator *c = (counting_allocator *)self;
    size_t *block = ctx;
    assert_ptr_equal(data, block + 1);
    assert_int_equal(*block, nbytes);
    c->frees++;
    c->live_bytes -= nbytes;
    c->last_freed = data;
    free(block);
}

static counting_allocator counting(void) {
    counting_allocator c = {
        {"test", {DEVICE_CPU, 0}, counting_alloc, counting_free}, 0, 0, 0, NULL, 0};
    return c;
}

static void test_storage_returns_block_to_its_allocator(void **state) {
    (void)state;
    counting_allocator c = counting();
    int64_t sizes[2] = {3, 4};
    tensor *t = NULL, *v = NULL;
    OK(tensor_empty_from(&c.base, sizes, 2, DTYPE_FLOAT64, &t));
    assert_int_equal(c.allocs, 1);
    assert_int_equal(c.live_bytes, 12 * sizeof(double));
    assert_ptr_equal(t->storage->allocator, &c.base);
    void *data = t->storage->data;
    OK(tensor_fill_(t, 2.5));
    OK(tensor_narrow(t, 1, 1, 2, &v)); /* a view: no second block */
    assert_int_equal(c.allocs, 1);
    tensor_release(t);
    assert_int_equal(c.frees, 0); /* the view still holds the storage */
    assert_true(tensor_get(v, 3) == 2.5);
    tensor_release(v);
    assert_int_equal(c.frees, 1);
    assert_ptr_equal(c.last_freed, data);
    assert_int_equal(c.live_bytes, 0);
}

static void test_empty_tensor_and_copies(void **state) {
    (void)state;
    counting_allocator c = counting();
    int64_t zero[1] = {0}, four[1] = {4};
    tensor *t = NULL, *u = NULL;
    OK(tensor_empty_from(&c.base, zero, 1, DTYPE_FLOAT32, &t));
    assert_int_equal(c.allocs, 1); /* even 0 bytes go through the allocator */
    tensor_release(t);
    assert_int_equal(c.frees, 1);
    OK(tensor_empty_from(&c.base, four, 1, DTYPE_BOOL, &t));
    for (int i = 0; i < 4; i++) assert_true(tensor_get(t, i) == 0.0); /* bool is cleared */
    OK(tensor_clone(t, &u)); /* a new tensor of the same device: the host allocator */
    assert_ptr_equal(u->storage->allocator, allocator_cpu());
    assert_int_equal(c.allocs, 2);
    tensor_release(u);
    tensor_release(t);
    assert_int_equal(c.frees, 2);
}

static void test_failing_allocator_leaves_nothing(void **state) {
    (void)state;
    counting_allocator c = counting();
    c.fail = 1;
    int64_t sizes[1] = {8};
    tensor *t = (tensor *)1;
    ERR_CONTAINS(tensor_empty_from(&c.base, sizes, 1, DTYPE_FLOAT32, &t), DDP_ERR_NOMEM,
                 "test: refusing 32 bytes");
    assert_null(t);
    /* the shape is checked before the allocator is asked */
    int64_t bad[1] = {-1};
    c.fail = 0;
    ERR_CONTAINS(tensor_empty_from(&c.base, bad, 1, DTYPE_FLOAT32, &t), DDP_ERR_ARG,
                 "negative dimension -1");
    assert_int_equal(c.allocs, 0);
}

static void test_cpu_allocator(void **state) {
    (void)state;
    ddp_allocator *cpu = allocator_cpu();
    assert_string_equal(cpu->name, "cpu");
    assert_int_equal(cpu->device.type, DEVICE_CPU);
    int64_t sizes[1] = {1000};
    tensor *t = NULL;
    OK(tensor_zeros(sizes, 1, DTYPE_FLOAT32, DEVICE_CPU_VALUE, &t));
    assert_ptr_equal(t->storage->allocator, cpu);
    assert_int_equal((uintptr_t)t->storage->data % 64, 0);
    assert_non_null(tensor_data(t));
    assert_true(tensor_is_cpu(t));
    tensor_release(t);
    /* a large block comes back for the next tensor of its size (not under ASan, where
     * the cache is off so that every use after free is seen) */
    int64_t big[1] = {1 << 20};
    OK(tensor_empty(big, 1, DTYPE_FLOAT32, DEVICE_CPU_VALUE, &t));
    void *first = t->storage->data;
    tensor_release(t);
    OK(tensor_empty(big, 1, DTYPE_FLOAT32, DEVICE_CPU_VALUE, &t));
#if !defined(__SANITIZE_ADDRESS__)
    assert_ptr_equal(t->storage->data, first);
#else
    (void)first;
#endif
    tensor_release(t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_storage_returns_block_to_its_allocator),
        cmocka_unit_test(test_empty_tensor_and_copies),
        cmocka_unit_test(test_failing_allocator_leaves_nothing),
        cmocka_unit_test(test_cpu_allocator),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
