/* test_tensor_version.c — the version counter of storage (tensor.h), which autograd
 * reads to refuse a backward pass over a tensor changed in place: a new tensor is at
 * version 0 whatever filled it; every in-place function counts exactly one write per
 * call (also where it works through a temporary or a nested call); views share the
 * count; ops that make a new result leave their inputs' counts alone. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tensor/tensor.h"
#include "support/support_tensor_checks.h"

static const int64_t SIZES[2] = {3, 4};

static tensor *ones(void) {
    tensor *t;
    OK(tensor_full(SIZES, 2, DTYPE_FLOAT32, DEVICE_CPU_VALUE, 1.0, &t));
    return t;
}

/* Fresh results start at 0, however the op filled them. */
static void test_new_tensors_are_at_version_0(void **state) {
    (void)state;
    tensor *a = ones(), *b, *c, *d, *e, *f, *g;
    assert_int_equal(tensor_version(a), 0);
    OK(tensor_zeros(SIZES, 2, DTYPE_FLOAT64, DEVICE_CPU_VALUE, &b));
    assert_int_equal(tensor_version(b), 0);
    OK(tensor_clone(a, &c));
    assert_int_equal(tensor_version(c), 0);
    OK(tensor_to_dtype(a, DTYPE_FLOAT64, &d));
    assert_int_equal(tensor_version(d), 0);
    tensor *at;
    OK(tensor_transpose(a, 0, 1, &at));
    OK(tensor_mm(a, at, &e)); /* a GEMM wrote it */
    assert_int_equal(tensor_version(e), 0);
    int64_t bias_size = 3;
    tensor *bias;
    OK(tensor_full(&bias_size, 1, DTYPE_FLOAT32, DEVICE_CPU_VALUE, 0.5, &bias));
    OK(tensor_linear(a, a, bias, &f)); /* bias copied in, then a GEMM */
    assert_int_equal(tensor_version(f), 0);
    tensor *pair[2] = {a, a};
    OK(tensor_cat(pair, 2, 0, &g));
    assert_int_equal(tensor_version(g), 0);
    /* and reading the inputs counted nothing on them */
    assert_int_equal(tensor_version(a), 0);
    tensor *all[] = {a, b, c, d, e, f, g, at, bias};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) tensor_release(all[i]);
}

/* Each in-place function counts one write per call. */
static void test_each_inplace_call_counts_one(void **state) {
    (void)state;
    tensor *a = ones(), *b = ones();
    uint64_t v = 0;
    OK(tensor_fill_(a, 2.0));
    assert_int_equal(tensor_version(a), ++v);
    OK(tensor_copy_(a, b));
    assert_int_equal(tensor_version(a), ++v);
    OK(tensor_binary_(BINARY_MUL, a, b));
    assert_int_equal(tensor_version(a), ++v);
    OK(tensor_binary_scalar_(BINARY_ADD, a, 1.0)); /* goes through tensor_binary_ */
    assert_int_equal(tensor_version(a), ++v);
    OK(tensor_add_scaled_(a, b, 0.5));
    assert_int_equal(tensor_version(a), ++v);
    OK(tensor_unary_(UNARY_NEG, a));
    assert_int_equal(tensor_version(a), ++v);
    OK(tensor_clamp_(a, true, -1.0, false, 0.0));
    assert_int_equal(tensor_version(a), ++v);
    OK(tensor_uniform_(a, 0.0, 1.0, NULL));
    assert_int_equal(tensor_version(a), ++v);
    OK(tensor_normal_(a, 0.0, 1.0, NULL));
    assert_int_equal(tensor_version(a), ++v);
    tensor *bt, *c;
    OK(tensor_transpose(b, 0, 1, &bt));
    OK(tensor_full((int64_t[]){3, 3}, 2, DTYPE_FLOAT32, DEVICE_CPU_VALUE, 0.0, &c));
    OK(tensor_gemm_(false, false, 1.0, a, bt, 1.0, c));
    assert_int_equal(tensor_version(c), 1);
    assert_int_equal(tensor_version(b), 0); /* only read */
    tensor_bump_version(b);
    assert_int_equal(tensor_version(b), 1);
    tensor_bump_version(NULL); /* NULL-safe */
    tensor_release(a);
    tensor_release(b);
    tensor_release(bt);
    tensor_release(c);
}

/* A fill that goes through a temporary (a transposed or int64 target) still counts one,
 * and a failed call counts nothing. */
static void test_temporaries_and_failures(void **state) {
    (void)state;
    tensor *a = ones(), *at, *i;
    OK(tensor_transpose(a, 0, 1, &at)); /* not contiguous: uniform_ fills a temporary */
    OK(tensor_uniform_(at, 0.0, 1.0, NULL));
    assert_int_equal(tensor_version(a), 1);
    OK(tensor_empty(SIZES, 2, DTYPE_INT64, DEVICE_CPU_VALUE, &i));
    OK(tensor_randint_(i, 0, 5, NULL));
    assert_int_equal(tensor_version(i), 1);
    int64_t wrong = 5;
    tensor *w;
    OK(tensor_full(&wrong, 1, DTYPE_FLOAT32, DEVICE_CPU_VALUE, 1.0, &w));
    assert_int_not_equal(tensor_binary_(BINARY_ADD, a, w), DDP_OK);          /* (5) into (3x4) */
    assert_int_not_equal(tensor_binary_scalar_(BINARY_ADD, i, 0.5), DDP_OK); /* float into int */
    assert_int_equal(tensor_version(a), 1);
    assert_int_equal(tensor_version(i), 1);
    tensor_release(a);
    tensor_release(at);
    tensor_release(i);
    tensor_release(w);
}

/* Views share the storage's count, in both directions. */
static void test_views_share_the_count(void **state) {
    (void)state;
    tensor *a = ones(), *row, *flat;
    OK(tensor_select(a, 0, 1, &row));
    int64_t n = 12;
    OK(tensor_view(a, &n, 1, &flat));
    OK(tensor_fill_(row, 3.0));
    assert_int_equal(tensor_version(a), 1);
    assert_int_equal(tensor_version(flat), 1);
    OK(tensor_binary_scalar_(BINARY_MUL, a, 2.0));
    assert_int_equal(tensor_version(row), 2);
    tensor_release(a);
    tensor_release(row);
    tensor_release(flat);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_tensors_are_at_version_0),
        cmocka_unit_test(test_each_inplace_call_counts_one),
        cmocka_unit_test(test_temporaries_and_failures),
        cmocka_unit_test(test_views_share_the_count),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
