/* test_tensor_elementwise.c — binary ops with broadcasting and dtype promotion, scalar and
 * in-place forms, add_scaled_, unary ops, clamp, where, equal and allclose; fast paths
 * (contiguous, scalar, row broadcast) checked against the generic strided path. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "support/support_tensor_checks.h"
#include "tensor/tensor.h"

static void test_same_shape_and_broadcast(void **state) {
    (void)state;
    int64_t s23[2] = {2, 3}, s3[1] = {3}, s21[2] = {2, 1};
    double a_v[6] = {1, 2, 3, 4, 5, 6}, b_v[3] = {10, 20, 30}, c_v[2] = {100, 200};
    tensor *a = make_tensor(DTYPE_FLOAT32, s23, 2, a_v),
           *b = make_tensor(DTYPE_FLOAT32, s3, 1, b_v);
    tensor *c = make_tensor(DTYPE_FLOAT32, s21, 2, c_v), *r;
    OK(tensor_binary(BINARY_ADD, a, b, &r)); /* row broadcast (N x C) + (C) */
    double want_rows[6] = {11, 22, 33, 14, 25, 36};
    for (int i = 0; i < 6; i++) assert_true(tensor_get(r, i) == want_rows[i]);
    tensor_release(r);
    OK(tensor_binary(BINARY_SUB, a, c, &r)); /* column broadcast (N x C) - (N x 1) */
    double want_cols[6] = {-99, -98, -97, -196, -195, -194};
    for (int i = 0; i < 6; i++) assert_true(tensor_get(r, i) == want_cols[i]);
    tensor_release(r);
    OK(tensor_binary(BINARY_MUL, c, b, &r)); /* (2x1) * (3) -> (2x3) outer */
    assert_int_equal(r->ndim, 2);
    assert_int_equal(r->sizes[0], 2);
    assert_int_equal(r->sizes[1], 3);
    assert_true(tensor_get(r, 5) == 6000.0);
    tensor_release(r);
    OK(tensor_binary(BINARY_DIV, b, a, &r));
    assert_true(fabs(tensor_get(r, 4) - 20.0 / 5.0) < 1e-6);
    tensor_release(r);

    int64_t s45[2] = {4, 5};
    double z[20] = {0};
    tensor *x = make_tensor(DTYPE_FLOAT32, s45, 2, z), *y = make_tensor(DTYPE_FLOAT32, s3, 1, b_v);
    ERR_CONTAINS(tensor_binary(BINARY_ADD, x, y, &r), DDP_ERR_ARG,
                 "add: shapes (4x5) and (3) cannot be broadcast (dim 1: 5 vs 3)");
    assert_null(r);
    tensor_release(x);
    tensor_release(y);
    tensor_release(a);
    tensor_release(b);
    tensor_release(c);
}

static void test_strided_matches_contiguous(void **state) {
    (void)state;
    int64_t s[2] = {7, 9}, st[2] = {9, 7};
    tensor *a = randn_tensor(DTYPE_FLOAT32, s, 2, 1), *bt = randn_tensor(DTYPE_FLOAT32, st, 2, 2),
           *b, *bc, *r1, *r2;
    OK(tensor_transpose(bt, 0, 1, &b)); /* (7x9) with strides (1, 7) */
    OK(tensor_contiguous(b, &bc));
    binary_op ops[] = {BINARY_ADD, BINARY_SUB,     BINARY_MUL,
                       BINARY_DIV, BINARY_MAXIMUM, BINARY_MINIMUM};
    for (size_t k = 0; k < sizeof ops / sizeof ops[0]; k++) {
        OK(tensor_binary(ops[k], a, b, &r1));
        OK(tensor_binary(ops[k], a, bc, &r2));
        assert_true(tensor_equal(r1, r2));
        tensor_release(r1);
        tensor_release(r2);
    }
    tensor_release(a);
    tensor_release(b);
    tensor_release(bc);
    tensor_release(bt);
}

/* Mixed dtypes over more than one chunk: a float32 gradient times a bool mask (relu's
 * backward), an int64 row broadcast into float32, and float32 comparisons. */
static void test_masks_and_mixed_rows(void **state) {
    (void)state;
    int64_t s[2] = {3, 700}, srow[1] = {700};
    tensor *g = randn_tensor(DTYPE_FLOAT32, s, 2, 5), *h = randn_tensor(DTYPE_FLOAT32, s, 2, 6),
           *mask, *r, *ints, *r2;
    OK(tensor_binary_scalar(BINARY_GT, h, 0.0, &mask));
    assert_int_equal(mask->dtype, DTYPE_BOOL);
    OK(tensor_binary(BINARY_MUL, g, mask, &r));
    assert_int_equal(r->dtype, DTYPE_FLOAT32);
    for (int64_t i = 0; i < 2100; i++) {
        bool on = tensor_get(h, i) > 0;
        assert_true(tensor_get(mask, i) == (on ? 1.0 : 0.0));
        assert_true(tensor_get(r, i) == (on ? tensor_get(g, i) : 0.0));
    }
    tensor_release(r);
    OK(tensor_empty(srow, 1, DTYPE_INT64, DEVICE_CPU_VALUE, &ints));
    for (int64_t i = 0; i < 700; i++) tensor_set(ints, i, (double)(i % 13 - 6));
    OK(tensor_binary(BINARY_ADD, ints, g, &r)); /* (700) int64 + (3x700) float32 */
    OK(tensor_binary(BINARY_LE, g, h, &r2));
    for (int64_t i = 0; i < 2100; i++) {
        assert_true(tensor_get(r, i) == (float)(tensor_get(g, i) + (double)(i % 700 % 13 - 6)));
        assert_true(tensor_get(r2, i) == (tensor_get(g, i) <= tensor_get(h, i) ? 1.0 : 0.0));
    }
    tensor_release(r2);
    tensor_release(r);
    tensor_release(ints);
    tensor_release(mask);
    tensor_release(g);
    tensor_release(h);
}

static void test_promotion(void **state) {
    (void)state;
    int64_t s2[1] = {2};
    double iv[2] = {7, 2}, fv[2] = {0.5, 1.5};
    tensor *i = make_tensor(DTYPE_INT64, s2, 1, iv), *f = make_tensor(DTYPE_FLOAT32, s2, 1, fv);
    tensor *d = make_tensor(DTYPE_FLOAT64, s2, 1, fv), *r;
    OK(tensor_binary(BINARY_ADD, i, f, &r));
    assert_int_equal(r->dtype, DTYPE_FLOAT32);
    assert_true(tensor_get(r, 0) == 7.5);
    tensor_release(r);
    OK(tensor_binary(BINARY_ADD, f, d, &r));
    assert_int_equal(r->dtype, DTYPE_FLOAT64);
    tensor_release(r);
    OK(tensor_binary(BINARY_DIV, i, i, &r)); /* true division of ints gives float32 */
    assert_int_equal(r->dtype, DTYPE_FLOAT32);
    assert_true(tensor_get(r, 0) == 1.0);
    tensor_release(r);
    OK(tensor_binary(BINARY_MUL, i, i, &r));
    assert_int_equal(r->dtype, DTYPE_INT64);
    assert_int_equal(tensor_get_int64(r, 0), 49);
    tensor_release(r);
    OK(tensor_binary(BINARY_POW, i, i, &r));
    assert_int_equal(tensor_get_int64(r, 0), 823543);
    tensor_release(r);
    OK(tensor_binary(BINARY_LT, f, i, &r)); /* comparisons give bool */
    assert_int_equal(r->dtype, DTYPE_BOOL);
    assert_true(tensor_get(r, 0) == 1.0);
    assert_true(tensor_get(r, 1) == 1.0);
    tensor_release(r);
    OK(tensor_binary(BINARY_EQ, i, i, &r));
    assert_int_equal(r->dtype, DTYPE_BOOL);
    assert_true(tensor_get(r, 1) == 1.0);
    tensor_release(r);

    /* scalars: a float scalar keeps float32; an int64 tensor becomes float32 unless the
     * scalar is integral and the op keeps integers */
    OK(tensor_binary_scalar(BINARY_MUL, f, 2.0, &r));
    assert_int_equal(r->dtype, DTYPE_FLOAT32);
    assert_true(tensor_get(r, 1) == 3.0);
    tensor_release(r);
    OK(tensor_binary_scalar(BINARY_ADD, d, 1.0, &r));
    assert_int_equal(r->dtype, DTYPE_FLOAT64);
    tensor_release(r);
    OK(tensor_binary_scalar(BINARY_ADD, i, 3.0, &r));
    assert_int_equal(r->dtype, DTYPE_INT64);
    assert_int_equal(tensor_get_int64(r, 0), 10);
    tensor_release(r);
    OK(tensor_binary_scalar(BINARY_MUL, i, 0.5, &r));
    assert_int_equal(r->dtype, DTYPE_FLOAT32);
    assert_true(tensor_get(r, 0) == 3.5);
    tensor_release(r);
    OK(tensor_binary_scalar(BINARY_DIV, i, 2.0, &r));
    assert_int_equal(r->dtype, DTYPE_FLOAT32);
    assert_true(tensor_get(r, 0) == 3.5);
    tensor_release(r);
    OK(tensor_scalar_binary(BINARY_SUB, 1.0, f, &r)); /* 1 - t */
    assert_true(tensor_get(r, 0) == 0.5);
    assert_true(tensor_get(r, 1) == -0.5);
    tensor_release(r);
    OK(tensor_scalar_binary(BINARY_DIV, 3.0, f, &r)); /* 3 / t */
    assert_true(tensor_get(r, 0) == 6.0);
    tensor_release(r);
    OK(tensor_binary_scalar(BINARY_GE, f, 1.0, &r));
    assert_int_equal(r->dtype, DTYPE_BOOL);
    assert_true(tensor_get(r, 0) == 0.0 && tensor_get(r, 1) == 1.0);
    tensor_release(r);
    /* 0-dim tensors decide the dtype only from a higher category */
    tensor *d0, *f0, *i0;
    OK(tensor_scalar(2, DTYPE_FLOAT64, &d0));
    OK(tensor_scalar(2, DTYPE_FLOAT32, &f0));
    OK(tensor_scalar(2, DTYPE_INT64, &i0));
    OK(tensor_binary(BINARY_MUL, f, d0, &r));
    assert_int_equal(r->dtype, DTYPE_FLOAT32);
    tensor_release(r);
    OK(tensor_binary(BINARY_MUL, d0, f, &r));
    assert_int_equal(r->dtype, DTYPE_FLOAT32);
    tensor_release(r);
    OK(tensor_binary(BINARY_ADD, i, d0, &r));
    assert_int_equal(r->dtype, DTYPE_FLOAT64);
    assert_true(tensor_get(r, 0) == 9.0);
    tensor_release(r);
    OK(tensor_binary(BINARY_ADD, d, i0, &r));
    assert_int_equal(r->dtype, DTYPE_FLOAT64);
    tensor_release(r);
    OK(tensor_binary(BINARY_ADD, f0, d0, &r)); /* both 0-dim: ordinary promotion */
    assert_int_equal(r->dtype, DTYPE_FLOAT64);
    tensor_release(r);
    OK(tensor_binary_(BINARY_MUL, f, d0)); /* in place: computed in float32 */
    assert_true(tensor_get(f, 0) == 1.0);
    tensor_release(d0);
    tensor_release(f0);
    tensor_release(i0);
    tensor_release(i);
    tensor_release(f);
    tensor_release(d);
}

static void test_in_place(void **state) {
    (void)state;
    int64_t s23[2] = {2, 3}, s3[1] = {3}, s4[1] = {4};
    double av[6] = {1, 2, 3, 4, 5, 6}, bv[3] = {1, 1, 2};
    tensor *a = make_tensor(DTYPE_FLOAT32, s23, 2, av), *b = make_tensor(DTYPE_FLOAT32, s3, 1, bv);
    OK(tensor_binary_(BINARY_MUL, a, b));
    assert_true(tensor_get(a, 5) == 12.0);
    OK(tensor_binary_scalar_(BINARY_SUB, a, 1.0));
    assert_true(tensor_get(a, 0) == 0.0);
    tensor *big;
    OK(tensor_zeros(s23, 2, DTYPE_FLOAT32, DEVICE_CPU_VALUE, &big));
    ERR_CONTAINS(tensor_binary_(BINARY_ADD, b, big), DDP_ERR_ARG, "(2x3) cannot be broadcast");
    tensor *ints;
    OK(tensor_zeros(s4, 1, DTYPE_INT64, DEVICE_CPU_VALUE, &ints));
    ERR_CONTAINS(tensor_binary_scalar_(BINARY_DIV, ints, 2.0), DDP_ERR_ARG, "int64");
    ERR_CONTAINS(tensor_binary_scalar_(BINARY_ADD, ints, 0.5), DDP_ERR_ARG, "float32");
    OK(tensor_binary_scalar_(BINARY_ADD, ints, 2.0));
    assert_int_equal(tensor_get_int64(ints, 3), 2);

    /* in place through a transposed view */
    tensor *t;
    OK(tensor_transpose(a, 0, 1, &t));
    OK(tensor_binary_scalar_(BINARY_ADD, t, 10.0));
    assert_true(tensor_get(a, 5) == 21.0);

    /* add_scaled_: a += alpha * b, broadcast */
    OK(tensor_add_scaled_(a, b, -2.0));
    assert_true(tensor_get(a, 5) == 17.0);
    assert_true(tensor_get(a, 0) == 8.0);
    ERR_CONTAINS(tensor_add_scaled_(t, big, 1.0), DDP_ERR_ARG,
                 "(2x3) cannot be broadcast to shape (3x2)");
    tensor_release(t);
    tensor_release(ints);
    tensor_release(big);
    tensor_release(a);
    tensor_release(b);
}

static void test_add_scaled_errors_and_dtypes(void **state) {
    (void)state;
    int64_t s3[1] = {3}, s4[1] = {4};
    double v[4] = {1, 2, 3, 4};
    tensor *a = make_tensor(DTYPE_FLOAT64, s3, 1, v), *b = make_tensor(DTYPE_FLOAT32, s3, 1, v);
    tensor *c = make_tensor(DTYPE_FLOAT32, s4, 1, v), *i = make_tensor(DTYPE_INT64, s3, 1, v);
    OK(tensor_add_scaled_(a, b, 0.5));
    assert_true(tensor_get(a, 2) == 4.5);
    ERR_CONTAINS(tensor_add_scaled_(a, c, 1.0), DDP_ERR_ARG,
                 "(4) cannot be broadcast to shape (3)");
    ERR_CONTAINS(tensor_add_scaled_(i, b, 1.0), DDP_ERR_ARG, "int64");
    OK(tensor_add_scaled_(i, i, 2.0));
    assert_int_equal(tensor_get_int64(i, 2), 9);
    tensor_release(a);
    tensor_release(b);
    tensor_release(c);
    tensor_release(i);
}

static void test_unary(void **state) {
    (void)state;
    int64_t s5[1] = {5};
    double v[5] = {-2, -0.5, 0, 0.5, 4};
    tensor *a = make_tensor(DTYPE_FLOAT32, s5, 1, v), *r;
    struct {
        unary_op op;
        double (*ref)(double);
    } cases[] = {{UNARY_EXP, exp}, {UNARY_TANH, tanh}, {UNARY_ABS, fabs}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        OK(tensor_unary(cases[k].op, a, &r));
        for (int i = 0; i < 5; i++)
            assert_true(fabs(tensor_get(r, i) - cases[k].ref(v[i])) < 1e-5 * (1 + fabs(v[i])));
        tensor_release(r);
    }
    OK(tensor_unary(UNARY_RELU, a, &r));
    assert_true(tensor_get(r, 0) == 0.0 && tensor_get(r, 4) == 4.0);
    tensor_release(r);
    OK(tensor_unary(UNARY_SIGMOID, a, &r));
    assert_true(fabs(tensor_get(r, 2) - 0.5) < 1e-7);
    assert_true(fabs(tensor_get(r, 4) - 1 / (1 + exp(-4.0))) < 1e-6);
    tensor_release(r);
    OK(tensor_unary(UNARY_SIGN, a, &r));
    assert_true(tensor_get(r, 0) == -1.0 && tensor_get(r, 2) == 0.0 && tensor_get(r, 3) == 1.0);
    tensor_release(r);
    OK(tensor_unary(UNARY_SQRT, a, &r));
    assert_true(isnan(tensor_get(r, 0)));
    assert_true(tensor_get(r, 4) == 2.0);
    tensor_release(r);
    OK(tensor_unary(UNARY_LOG, a, &r));
    assert_true(isinf(tensor_get(r, 2)) && tensor_get(r, 2) < 0);
    tensor_release(r);

    tensor *i = make_tensor(DTYPE_INT64, s5, 1, v); /* -2, 0, 0, 0, 4 */
    OK(tensor_unary(UNARY_NEG, i, &r));
    assert_int_equal(r->dtype, DTYPE_INT64);
    assert_int_equal(tensor_get_int64(r, 0), 2);
    tensor_release(r);
    OK(tensor_unary(UNARY_EXP, i, &r));
    assert_int_equal(r->dtype, DTYPE_FLOAT32);
    assert_true(fabs(tensor_get(r, 4) - exp(4.0)) < 1e-4);
    tensor_release(r);
    ERR_CONTAINS(tensor_unary_(UNARY_SQRT, i), DDP_ERR_ARG, "sqrt_");
    OK(tensor_unary_(UNARY_ABS, i));
    assert_int_equal(tensor_get_int64(i, 0), 2);
    OK(tensor_unary_(UNARY_NEG, a));
    assert_true(tensor_get(a, 4) == -4.0);
    tensor_release(i);
    tensor_release(a);
}

static void test_clamp_where(void **state) {
    (void)state;
    int64_t s4[1] = {4};
    double v[4] = {-3, -1, 1, NAN};
    tensor *a = make_tensor(DTYPE_FLOAT32, s4, 1, v), *r;
    OK(tensor_clamp(a, true, -2, true, 0.5, &r));
    assert_true(tensor_get(r, 0) == -2.0 && tensor_get(r, 1) == -1.0 && tensor_get(r, 2) == 0.5);
    assert_true(isnan(tensor_get(r, 3))); /* NaN passes through, as in PyTorch */
    tensor_release(r);
    OK(tensor_clamp(a, false, 0, true, 0, &r));
    assert_true(tensor_get(r, 2) == 0.0 && tensor_get(r, 0) == -3.0);
    tensor_release(r);
    ERR_CONTAINS(tensor_clamp(a, false, 0, false, 0, &r), DDP_ERR_ARG, "at least one");
    OK(tensor_clamp_(a, true, 0, false, 0));
    tensor *ci;
    OK(tensor_zeros(s4, 1, DTYPE_INT64, DEVICE_CPU_VALUE, &ci));
    ERR_CONTAINS(tensor_clamp_(ci, true, 0.5, false, 0), DDP_ERR_ARG,
                 "clamp_: the result is float32");
    OK(tensor_clamp(ci, true, 0.5, false, 0, &r));
    assert_int_equal(r->dtype, DTYPE_FLOAT32);
    assert_true(tensor_get(r, 0) == 0.5);
    tensor_release(r);
    tensor_release(ci);
    assert_true(tensor_get(a, 0) == 0.0 && tensor_get(a, 2) == 1.0);

    int64_t s23[2] = {2, 3}, s3[1] = {3}, s21[2] = {2, 1};
    double cv[3] = {1, 0, 1}, xv[6] = {1, 2, 3, 4, 5, 6}, yv[2] = {-1, -2};
    tensor *cond = make_tensor(DTYPE_BOOL, s3, 1, cv), *x = make_tensor(DTYPE_FLOAT32, s23, 2, xv);
    tensor *y = make_tensor(DTYPE_INT64, s21, 2, yv);
    OK(tensor_where(cond, x, y, &r));
    assert_int_equal(r->dtype, DTYPE_FLOAT32);
    double want[6] = {1, -1, 3, 4, -2, 6};
    for (int i = 0; i < 6; i++) assert_true(tensor_get(r, i) == want[i]);
    tensor_release(r);
    int64_t s4b[1] = {4};
    tensor *c4;
    OK(tensor_zeros(s4b, 1, DTYPE_BOOL, DEVICE_CPU_VALUE, &c4));
    ERR_CONTAINS(tensor_where(c4, x, y, &r), DDP_ERR_ARG, "where: shapes");
    tensor_release(c4);
    tensor_release(cond);
    tensor_release(x);
    tensor_release(y);
    tensor_release(a);
}

static void test_equal_allclose(void **state) {
    (void)state;
    int64_t s3[1] = {3}, s23[2] = {2, 3}, s2[1] = {2};
    double v[3] = {1, 2, 3}, w[3] = {1, 2, 3.0001}, n[3] = {NAN, 1, 2};
    tensor *a = make_tensor(DTYPE_FLOAT32, s3, 1, v), *ai = make_tensor(DTYPE_INT64, s3, 1, v);
    tensor *b = make_tensor(DTYPE_FLOAT32, s3, 1, w), *c = make_tensor(DTYPE_FLOAT32, s3, 1, n);
    tensor *m, *two;
    OK(tensor_zeros(s23, 2, DTYPE_FLOAT32, DEVICE_CPU_VALUE, &m));
    OK(tensor_zeros(s2, 1, DTYPE_FLOAT32, DEVICE_CPU_VALUE, &two));
    assert_true(tensor_equal(a, ai)); /* compared by value across dtypes */
    assert_false(tensor_equal(a, b));
    assert_false(tensor_equal(c, c)); /* NaN is not equal to itself */
    assert_false(tensor_equal(a, m));
    bool close;
    OK(tensor_allclose(a, b, 1e-5, 1e-8, false, &close));
    assert_false(close);
    OK(tensor_allclose(a, b, 1e-4, 1e-8, false, &close));
    assert_true(close);
    OK(tensor_allclose(c, c, 1e-5, 1e-8, false, &close));
    assert_false(close);
    OK(tensor_allclose(c, c, 1e-5, 1e-8, true, &close));
    assert_true(close);
    tensor *r;
    OK(tensor_binary_scalar(BINARY_MUL, m, 0.0, &r));
    OK(tensor_allclose(m, a, 0, 0, false, &close)); /* broadcast (2x3) vs (3) */
    assert_false(close);
    tensor_release(r);
    ERR_CONTAINS(tensor_allclose(two, a, 0, 0, false, &close), DDP_ERR_ARG, "allclose: shapes (2)");
    tensor_release(two);
    tensor_release(m);
    tensor_release(a);
    tensor_release(ai);
    tensor_release(b);
    tensor_release(c);
}

/* In-place ops refuse an expanded view: its elements share memory. */
static void test_in_place_on_expanded_refused(void **state) {
    (void)state;
    int64_t s1[2] = {1, 3}, s43[2] = {4, 3};
    tensor *row, *ex, *other;
    OK(tensor_zeros(s1, 2, DTYPE_FLOAT32, DEVICE_CPU_VALUE, &row));
    OK(tensor_expand(row, s43, 2, &ex));
    OK(tensor_zeros(s43, 2, DTYPE_FLOAT32, DEVICE_CPU_VALUE, &other));
    ERR_CONTAINS(tensor_binary_(BINARY_ADD, ex, other), DDP_ERR_ARG,
                 "add_: the tensor of shape (4x3) written in place is an expanded view");
    ERR_CONTAINS(tensor_binary_scalar_(BINARY_MUL, ex, 2), DDP_ERR_ARG, "mul_: the tensor");
    ERR_CONTAINS(tensor_add_scaled_(ex, other, 1), DDP_ERR_ARG, "add_: the tensor");
    ERR_CONTAINS(tensor_unary_(UNARY_RELU, ex), DDP_ERR_ARG, "relu_: the tensor");
    ERR_CONTAINS(tensor_clamp_(ex, true, 0, false, 0), DDP_ERR_ARG, "clamp_: the tensor");
    ERR_CONTAINS(tensor_fill_(ex, 1), DDP_ERR_ARG, "fill_: the tensor");
    ERR_CONTAINS(tensor_copy_(ex, other), DDP_ERR_ARG, "copy_: the tensor");
    OK(tensor_binary_(BINARY_ADD, other, ex)); /* reading an expanded view is fine */
    tensor_release(other);
    tensor_release(ex);
    tensor_release(row);
}

/* Review findings: PyTorch refuses an integer tensor to a negative integer power given as
 * a number (a tensor of exponents is allowed), bool - bool and -bool; sign keeps bool. */
static void test_int_pow_and_bool_refusals(void **state) {
    (void)state;
    int64_t s2[1] = {2}, s3[1] = {3};
    const double iv[2] = {2, 3}, bv[2] = {1, 0}, ev[3] = {-1, -1, -1}, bases[3] = {1, -1, 2};
    tensor *i = make_tensor(DTYPE_INT64, s2, 1, iv), *b = make_tensor(DTYPE_BOOL, s2, 1, bv),
           *r = NULL;
    ERR_CONTAINS(tensor_binary_scalar(BINARY_POW, i, -1, &r), DDP_ERR_ARG,
                 "integers to negative integer powers are not allowed");
    assert_null(r);
    ERR_CONTAINS(tensor_binary_scalar_(BINARY_POW, i, -2), DDP_ERR_ARG, "negative integer powers");
    assert_true(tensor_get(i, 0) == 2 && tensor_get(i, 1) == 3); /* left as it was */
    ERR_CONTAINS(tensor_binary_scalar(BINARY_POW, b, -1, &r), DDP_ERR_ARG, "bool tensor");
    OK(tensor_binary_scalar(BINARY_POW, i, 2, &r)); /* non-negative exponents are fine */
    assert_int_equal(r->dtype, DTYPE_INT64);
    assert_true(tensor_get(r, 0) == 4 && tensor_get(r, 1) == 9);
    tensor_release(r);
    OK(tensor_binary_scalar(BINARY_POW, i, -0.5, &r)); /* a fractional one gives floats */
    assert_true(dtype_is_float(r->dtype));
    tensor_release(r);
    tensor *base = make_tensor(DTYPE_INT64, s3, 1, bases), *e = make_tensor(DTYPE_INT64, s3, 1, ev);
    OK(tensor_binary(BINARY_POW, base, e, &r)); /* PyTorch: [1, -1, 0] */
    assert_true(tensor_get(r, 0) == 1 && tensor_get(r, 1) == -1 && tensor_get(r, 2) == 0);
    tensor_release(r);

    ERR_CONTAINS(tensor_binary(BINARY_SUB, b, b, &r), DDP_ERR_ARG,
                 "sub: subtracting two bool tensors is not supported");
    assert_null(r);
    ERR_CONTAINS(tensor_binary_(BINARY_SUB, b, b), DDP_ERR_ARG, "two bool tensors");
    ERR_CONTAINS(tensor_unary(UNARY_NEG, b, &r), DDP_ERR_ARG, "neg: negating a bool tensor");
    ERR_CONTAINS(tensor_unary_(UNARY_NEG, b), DDP_ERR_ARG, "negating a bool tensor");
    OK(tensor_binary(BINARY_ADD, b, b, &r)); /* bool + bool stays bool (logical or) */
    assert_int_equal(r->dtype, DTYPE_BOOL);
    tensor_release(r);
    OK(tensor_unary(UNARY_SIGN, b, &r));
    assert_int_equal(r->dtype, DTYPE_BOOL);
    assert_true(tensor_get(r, 0) == 1 && tensor_get(r, 1) == 0);
    tensor_release(r);
    tensor_release(base);
    tensor_release(e);
    tensor_release(i);
    tensor_release(b);
}

/* Review finding: float -> int64 conversions of NaN, infinities and values beyond 2^63
 * were undefined behaviour; they now give INT64_MIN, as PyTorch on x86 does. */
static void test_float_to_int64_out_of_range(void **state) {
    (void)state;
    int64_t s4[1] = {4};
    const double v[4] = {NAN, INFINITY, 1e300, -2.5};
    tensor *f = make_tensor(DTYPE_FLOAT64, s4, 1, v), *i = NULL;
    OK(tensor_to_dtype(f, DTYPE_INT64, &i));
    assert_true(tensor_get_int64(i, 0) == INT64_MIN);
    assert_true(tensor_get_int64(i, 1) == INT64_MIN);
    assert_true(tensor_get_int64(i, 2) == INT64_MIN);
    assert_true(tensor_get_int64(i, 3) == -2);
    tensor_release(i);
    tensor_release(f);
}

/* Review finding: clamp of int64 went through double and changed values beyond 2^53. */
static void test_clamp_int64_exact(void **state) {
    (void)state;
    int64_t s2[1] = {2};
    tensor *t = NULL, *r = NULL;
    OK(tensor_empty(s2, 1, DTYPE_INT64, DEVICE_CPU_VALUE, &t));
    int64_t *p = tensor_data(t);
    p[0] = ((int64_t)1 << 62) + 1;
    p[1] = -(((int64_t)1 << 62) + 1);
    OK(tensor_clamp(t, true, -5, false, 0, &r));
    assert_int_equal(r->dtype, DTYPE_INT64);
    assert_true(tensor_get_int64(r, 0) == ((int64_t)1 << 62) + 1);
    assert_true(tensor_get_int64(r, 1) == -5);
    tensor_release(r);
    OK(tensor_clamp_(t, false, 0, true, 7));
    assert_true(p[0] == 7 && p[1] == -(((int64_t)1 << 62) + 1));
    tensor_release(t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_same_shape_and_broadcast),
        cmocka_unit_test(test_strided_matches_contiguous),
        cmocka_unit_test(test_masks_and_mixed_rows),
        cmocka_unit_test(test_promotion),
        cmocka_unit_test(test_in_place),
        cmocka_unit_test(test_add_scaled_errors_and_dtypes),
        cmocka_unit_test(test_unary),
        cmocka_unit_test(test_clamp_where),
        cmocka_unit_test(test_equal_allclose),
        cmocka_unit_test(test_in_place_on_expanded_refused),
        cmocka_unit_test(test_int_pow_and_bool_refusals),
        cmocka_unit_test(test_float_to_int64_out_of_range),
        cmocka_unit_test(test_clamp_int64_exact),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
