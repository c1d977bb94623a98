/* test_tensor_alloc.c — every path out of a failed allocation in the tensor layer: a
 * sequence of ops runs again and again with the k-th allocation failing (the seam in
 * base/alloc.h), for every k until the sequence needs no more; each op either succeeds
 * or fails with DDP_ERR_NOMEM and a message, and never crashes. Leaks are LeakSanitizer's
 * to find (this test runs in the sanitizer build too). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "base/alloc.h"
#include "tensor/tensor.h"

/* One step of the sequence: fails the test for any outcome but OK or a clear NOMEM. */
static bool step_ok(ddp_status s, int *nomem) {
    if (s == DDP_OK) return true;
    assert_int_equal(s, DDP_ERR_NOMEM);
    const char *msg = ddp_last_error();
    assert_non_null(msg);
    assert_true(strstr(msg, "out of memory") != NULL);
    (*nomem)++;
    return false;
}

/* The ops a training step uses, each on the results of the ones before; everything it
 * made is released whatever happened. Returns how many steps failed for memory. */
static int run_sequence(void) {
    int nomem = 0;
    tensor *a = NULL, *b = NULL, *c = NULL, *d = NULL, *e = NULL, *f = NULL, *g = NULL, *h = NULL,
           *i = NULL, *j = NULL, *k = NULL;
    int64_t s23[2] = {2, 3}, s32[2] = {3, 2}, s6[1] = {6};
    dtype f64 = DTYPE_FLOAT64;
    if (step_ok(tensor_zeros(s23, 2, DTYPE_FLOAT32, DEVICE_CPU_VALUE, &a), &nomem) &&
        step_ok(tensor_full(s32, 2, DTYPE_FLOAT32, DEVICE_CPU_VALUE, 1.5, &b), &nomem) &&
        step_ok(tensor_mm(a, b, &c), &nomem) &&
        step_ok(tensor_binary(BINARY_ADD, c, c, &d), &nomem) &&
        step_ok(tensor_unary(UNARY_EXP, d, &e), &nomem) &&
        step_ok(tensor_reduce_dim(REDUCE_SUM, e, 0, false, &f), &nomem) &&
        step_ok(tensor_reduce_all(REDUCE_MEAN, e, &g), &nomem) &&
        step_ok(tensor_transpose(a, 0, 1, &h), &nomem) &&
        step_ok(tensor_contiguous(h, &i), &nomem) && step_ok(tensor_view(i, s6, 1, &j), &nomem) &&
        step_ok(tensor_arange(0, 6, 1, &f64, &k), &nomem)) {
        tensor *both[2] = {j, k};
        tensor *cat = NULL, *conv = NULL, *sm = NULL;
        if (step_ok(tensor_to_dtype(j, DTYPE_FLOAT64, &conv), &nomem)) {
            both[0] = conv;
            if (step_ok(tensor_cat(both, 2, 0, &cat), &nomem) &&
                step_ok(tensor_softmax(cat, 0, &sm), &nomem))
                assert_int_equal(tensor_numel(sm), 12);
        }
        tensor_release(sm);
        tensor_release(cat);
        tensor_release(conv);
    }
    tensor *all[] = {a, b, c, d, e, f, g, h, i, j, k};
    for (size_t n = 0; n < sizeof all / sizeof all[0]; n++) tensor_release(all[n]);
    return nomem;
}

static void test_every_allocation_can_fail(void **state) {
    (void)state;
    ddp_alloc_fail_at(0);
    assert_int_equal(run_sequence(), 0); /* it works with memory to spare */
    long needed = ddp_alloc_count();
    assert_true(needed > 10);
    for (long kth = 1; kth <= needed; kth++) {
        ddp_alloc_fail_at(kth);
        int failed = run_sequence();
        /* the k-th allocation was reached, so some step said it ran out of memory */
        assert_int_equal(failed, 1);
    }
    ddp_alloc_fail_at(needed + 1); /* past the end: nothing fails */
    assert_int_equal(run_sequence(), 0);
    ddp_alloc_fail_at(0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_allocation_can_fail),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
