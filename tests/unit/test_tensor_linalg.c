/* test_tensor_linalg.c — mm, matmul, gemm_ and linear against naive loops on random data
 * (contiguous, transposed and irregular views as inputs; float32, float64, int64), their
 * shape errors, and cat / stack / index_select. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "support/support_tensor_checks.h"
#include "tensor/tensor.h"

/* Element [i][j] of a 2-D tensor through its strides. */
static double at2(const tensor *t, int64_t i, int64_t j) {
    return tensor_get(t, i * t->sizes[1] + j);
}

/* max |c - a @ b| relative to the magnitude, by a naive triple loop in double. */
static double mm_error(const tensor *a, const tensor *b, const tensor *c) {
    double worst = 0;
    for (int64_t i = 0; i < a->sizes[0]; i++)
        for (int64_t j = 0; j < b->sizes[1]; j++) {
            double want = 0, mag = 0;
            for (int64_t k = 0; k < a->sizes[1]; k++) {
                want += at2(a, i, k) * at2(b, k, j);
                mag += fabs(at2(a, i, k) * at2(b, k, j));
            }
            double e = fabs(at2(c, i, j) - want) / (mag + 1e-30);
            if (e > worst) worst = e;
        }
    return worst;
}

static void test_mm_layouts(void **state) {
    (void)state;
    dtype dts[2] = {DTYPE_FLOAT32, DTYPE_FLOAT64};
    double tol[2] = {1e-5, 1e-12};
    for (int k = 0; k < 2; k++) {
        int64_t sa[2] = {7, 5}, sat[2] = {5, 7}, sb[2] = {5, 3}, sbt[2] = {3, 5};
        int64_t wide[2] = {7, 10};
        tensor *a = randn_tensor(dts[k], sa, 2, 1), *b = randn_tensor(dts[k], sb, 2, 2);
        tensor *at_base = randn_tensor(dts[k], sat, 2, 3),
               *bt_base = randn_tensor(dts[k], sbt, 2, 4);
        tensor *w = randn_tensor(dts[k], wide, 2, 5);
        tensor *at, *bt, *stepped, *c;
        OK(tensor_transpose(at_base, 0, 1, &at)); /* (7x5), strides (1, 7) */
        OK(tensor_transpose(bt_base, 0, 1, &bt)); /* (5x3), strides (1, 5) */
        OK(tensor_narrow(w, 1, 2, 5, &stepped));  /* (7x5), strides (10, 1): ld 10 */
        const tensor *lhs[3] = {a, at, stepped}, *rhs[2] = {b, bt};
        for (int i = 0; i < 3; i++)
            for (int j = 0; j < 2; j++) {
                OK(tensor_mm(lhs[i], rhs[j], &c));
                assert_int_equal(c->sizes[0], 7);
                assert_int_equal(c->sizes[1], 3);
                assert_int_equal(c->dtype, dts[k]);
                double e = mm_error(lhs[i], rhs[j], c);
                if (e > tol[k]) fail_msg("mm %d,%d dtype %d: relative error %g", i, j, k, e);
                tensor_release(c);
            }
        /* irregular strides (an expanded row) are copied, still correct */
        int64_t one_row[2] = {1, 5}, ex[2] = {7, 5};
        tensor *row = randn_tensor(dts[k], one_row, 2, 6), *rowx;
        OK(tensor_expand(row, ex, 2, &rowx));
        OK(tensor_mm(rowx, b, &c));
        assert_true(mm_error(rowx, b, c) <= tol[k]);
        tensor_release(c);
        tensor_release(rowx);
        tensor_release(row);
        tensor_release(stepped);
        tensor_release(at);
        tensor_release(bt);
        tensor_release(w);
        tensor_release(a);
        tensor_release(b);
        tensor_release(at_base);
        tensor_release(bt_base);
    }
}

static void test_mm_int64_and_errors(void **state) {
    (void)state;
    int64_t s[2] = {2, 2};
    int64_t av[4] = {1, 2, 3, 4}, bv[4] = {5, 6, 7, 8};
    tensor *a, *b, *c;
    OK(tensor_from_data(av, s, 2, DTYPE_INT64, &a));
    OK(tensor_from_data(bv, s, 2, DTYPE_INT64, &b));
    OK(tensor_mm(a, b, &c));
    assert_int_equal(c->dtype, DTYPE_INT64);
    assert_int_equal(tensor_get_int64(c, 0), 19);
    assert_int_equal(tensor_get_int64(c, 3), 50);
    tensor_release(c);

    int64_t s45[2] = {4, 5}, s105[2] = {10, 5}, s5[1] = {5};
    tensor *x = randn_tensor(DTYPE_FLOAT32, s45, 2, 1),
           *y = randn_tensor(DTYPE_FLOAT32, s105, 2, 2);
    tensor *v = randn_tensor(DTYPE_FLOAT32, s5, 1, 3), *x64;
    ERR_CONTAINS(tensor_mm(x, y, &c), DDP_ERR_ARG,
                 "mm: (4x5) @ (10x5): inner sizes 5 and 10 differ");
    assert_null(c);
    ERR_CONTAINS(tensor_mm(x, v, &c), DDP_ERR_ARG, "mm: expected 2-D tensors");
    OK(tensor_to_dtype(x, DTYPE_FLOAT64, &x64));
    tensor *xt;
    OK(tensor_transpose(x64, 0, 1, &xt));
    ERR_CONTAINS(tensor_mm(x, xt, &c), DDP_ERR_ARG, "float32 and float64");
    ERR_CONTAINS(tensor_matmul(x, y, &c), DDP_ERR_ARG, "matmul: (4x5) @ (10x5): inner sizes");
    tensor_release(xt);
    tensor_release(x64);
    tensor_release(v);
    tensor_release(x);
    tensor_release(y);
    tensor_release(a);
    tensor_release(b);
}

static void test_matmul_shapes(void **state) {
    (void)state;
    int64_t s4[1] = {4}, s34[2] = {3, 4}, s45[2] = {4, 5}, s234[3] = {2, 3, 4};
    int64_t s1245[4] = {1, 2, 4, 5};
    tensor *v = randn_tensor(DTYPE_FLOAT64, s4, 1, 1), *m = randn_tensor(DTYPE_FLOAT64, s34, 2, 2);
    tensor *n = randn_tensor(DTYPE_FLOAT64, s45, 2, 3),
           *b3 = randn_tensor(DTYPE_FLOAT64, s234, 3, 4);
    tensor *b4 = randn_tensor(DTYPE_FLOAT64, s1245, 4, 5), *r;
    OK(tensor_matmul(v, v, &r)); /* dot */
    assert_int_equal(r->ndim, 0);
    double dot = 0;
    for (int i = 0; i < 4; i++) dot += tensor_get(v, i) * tensor_get(v, i);
    assert_true(fabs(tensor_get(r, 0) - dot) < 1e-12);
    tensor_release(r);
    OK(tensor_matmul(m, v, &r)); /* (3x4) @ (4) -> (3) */
    assert_int_equal(r->ndim, 1);
    assert_int_equal(r->sizes[0], 3);
    double want = 0;
    for (int k = 0; k < 4; k++) want += tensor_get(m, 8 + k) * tensor_get(v, k);
    assert_true(fabs(tensor_get(r, 2) - want) < 1e-12);
    tensor_release(r);
    OK(tensor_matmul(v, n, &r)); /* (4) @ (4x5) -> (5) */
    assert_int_equal(r->ndim, 1);
    assert_int_equal(r->sizes[0], 5);
    tensor_release(r);
    OK(tensor_matmul(b3, n, &r)); /* (2x3x4) @ (4x5) -> (2x3x5) */
    assert_int_equal(r->ndim, 3);
    assert_int_equal(r->sizes[2], 5);
    want = 0;
    for (int k = 0; k < 4; k++) want += tensor_get(b3, 12 + 2 * 4 + k) * tensor_get(n, k * 5 + 4);
    assert_true(fabs(tensor_get(r, 15 + 2 * 5 + 4) - want) < 1e-12);
    tensor_release(r);
    OK(tensor_matmul(b3, b4, &r)); /* (2x3x4) @ (1x2x4x5) -> (1x2x3x5), batch broadcast */
    assert_int_equal(r->ndim, 4);
    assert_int_equal(r->sizes[0], 1);
    assert_int_equal(r->sizes[1], 2);
    want = 0;
    for (int k = 0; k < 4; k++)
        want += tensor_get(b3, 12 + 1 * 4 + k) * tensor_get(b4, 20 + k * 5 + 3);
    assert_true(fabs(tensor_get(r, 15 + 1 * 5 + 3) - want) < 1e-12);
    tensor_release(r);
    OK(tensor_matmul(b3, v, &r)); /* (2x3x4) @ (4) -> (2x3) */
    assert_int_equal(r->ndim, 2);
    assert_int_equal(r->sizes[1], 3);
    tensor_release(r);
    int64_t s3[1] = {3};
    tensor *v3 = randn_tensor(DTYPE_FLOAT64, s3, 1, 9);
    ERR_CONTAINS(tensor_matmul(v, v3, &r), DDP_ERR_ARG, "inner sizes 4 and 3 differ");
    tensor_release(v3);
    tensor_release(v);
    tensor_release(m);
    tensor_release(n);
    tensor_release(b3);
    tensor_release(b4);
}

static void test_gemm_accumulate(void **state) {
    (void)state;
    int64_t sa[2] = {6, 4}, sb[2] = {5, 6}, sc[2] = {4, 5};
    tensor *a = randn_tensor(DTYPE_FLOAT32, sa, 2, 1), *b = randn_tensor(DTYPE_FLOAT32, sb, 2, 2);
    tensor *c = randn_tensor(DTYPE_FLOAT32, sc, 2, 3), *c0;
    OK(tensor_clone(c, &c0));
    /* c = 0.5 * a^T @ b^T + 2 * c */
    OK(tensor_gemm_(true, true, 0.5, a, b, 2.0, c));
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 5; j++) {
            double want = 2 * at2(c0, i, j);
            for (int k = 0; k < 6; k++) want += 0.5 * at2(a, k, i) * at2(b, j, k);
            assert_true(fabs(at2(c, i, j) - want) < 1e-5);
        }
    /* ta with an already transposed view: op(a^T view) = a */
    tensor *atv;
    OK(tensor_transpose(a, 0, 1, &atv)); /* (4x6) view */
    int64_t s66[2] = {6, 6};
    tensor *c2;
    OK(tensor_zeros(s66, 2, DTYPE_FLOAT32, DEVICE_CPU_VALUE, &c2));
    OK(tensor_gemm_(true, false, 1.0, atv, atv, 0.0, c2)); /* a @ a^T */
    double want = 0;
    for (int k = 0; k < 4; k++) want += at2(a, 1, k) * at2(a, 2, k);
    assert_true(fabs(at2(c2, 1, 2) - want) < 1e-5);
    ERR_CONTAINS(tensor_gemm_(false, false, 1.0, a, b, 0.0, c2), DDP_ERR_ARG,
                 "gemm: (6x4) @ (5x6) does not fit into (6x6)");
    tensor *c2t;
    OK(tensor_transpose(c2, 0, 1, &c2t));
    tensor *sq = randn_tensor(DTYPE_FLOAT32, s66, 2, 4);
    ERR_CONTAINS(tensor_gemm_(false, false, 1.0, sq, sq, 0.0, c2t), DDP_ERR_ARG,
                 "must be contiguous");
    tensor_release(sq);
    tensor_release(c2t);
    tensor_release(c2);
    tensor_release(atv);
    tensor_release(c0);
    tensor_release(c);
    tensor_release(a);
    tensor_release(b);
}

static void test_linear(void **state) {
    (void)state;
    int64_t sx[2] = {8, 5}, sw[2] = {10, 5}, sb[1] = {10}, sx3[3] = {2, 4, 5}, s1[1] = {5};
    tensor *x = randn_tensor(DTYPE_FLOAT32, sx, 2, 1), *w = randn_tensor(DTYPE_FLOAT32, sw, 2, 2);
    tensor *b = randn_tensor(DTYPE_FLOAT32, sb, 1, 3), *y, *y0;
    OK(tensor_linear(x, w, b, &y));
    OK(tensor_linear(x, w, NULL, &y0));
    assert_int_equal(y->sizes[0], 8);
    assert_int_equal(y->sizes[1], 10);
    for (int i = 0; i < 8; i++)
        for (int j = 0; j < 10; j++) {
            double want = 0;
            for (int k = 0; k < 5; k++) want += at2(x, i, k) * at2(w, j, k);
            assert_true(fabs(at2(y0, i, j) - want) < 1e-5);
            assert_true(fabs(at2(y, i, j) - want - tensor_get(b, j)) < 1e-5);
        }
    tensor_release(y);
    tensor_release(y0);
    tensor *x3 = randn_tensor(DTYPE_FLOAT32, sx3, 3, 4), *v = randn_tensor(DTYPE_FLOAT32, s1, 1, 5);
    OK(tensor_linear(x3, w, b, &y));
    assert_int_equal(y->ndim, 3);
    assert_int_equal(y->sizes[2], 10);
    double want = tensor_get(b, 7);
    for (int k = 0; k < 5; k++) want += tensor_get(x3, (1 * 4 + 2) * 5 + k) * at2(w, 7, k);
    assert_true(fabs(tensor_get(y, (1 * 4 + 2) * 10 + 7) - want) < 1e-5);
    tensor_release(y);
    OK(tensor_linear(v, w, b, &y));
    assert_int_equal(y->ndim, 1);
    assert_int_equal(y->sizes[0], 10);
    tensor_release(y);
    ERR_CONTAINS(tensor_linear(x, b, NULL, &y), DDP_ERR_ARG, "linear: expected input");
    tensor *wt;
    OK(tensor_transpose(w, 0, 1, &wt));
    ERR_CONTAINS(tensor_linear(x, wt, NULL, &y), DDP_ERR_ARG,
                 "input (8x5) and weight (5x10): in_features 5 and 10 differ");
    ERR_CONTAINS(tensor_linear(x, w, v, &y), DDP_ERR_ARG, "bias (5) does not match weight (10x5)");
    tensor_release(wt);
    tensor_release(v);
    tensor_release(x3);
    tensor_release(x);
    tensor_release(w);
    tensor_release(b);
}

static void test_cat_stack_index_select(void **state) {
    (void)state;
    int64_t s23[2] = {2, 3}, s13[2] = {1, 3}, s22[2] = {2, 2};
    tensor *a, *b, *c, *r;
    OK(tensor_full(s23, 2, DTYPE_FLOAT32, DEVICE_CPU_VALUE, 1, &a));
    OK(tensor_full(s13, 2, DTYPE_INT64, DEVICE_CPU_VALUE, 2, &b));
    OK(tensor_full(s22, 2, DTYPE_FLOAT32, DEVICE_CPU_VALUE, 3, &c));
    tensor *ab[2] = {a, b};
    OK(tensor_cat(ab, 2, 0, &r));
    assert_int_equal(r->sizes[0], 3);
    assert_int_equal(r->dtype, DTYPE_FLOAT32);
    assert_true(tensor_get(r, 5) == 1 && tensor_get(r, 6) == 2);
    tensor_release(r);
    tensor *ac[2] = {a, c};
    OK(tensor_cat(ac, 2, -1, &r));
    assert_int_equal(r->sizes[1], 5);
    assert_true(tensor_get(r, 2) == 1 && tensor_get(r, 3) == 3 && tensor_get(r, 5) == 1);
    tensor_release(r);
    ERR_CONTAINS(tensor_cat(ab, 2, 1, &r), DDP_ERR_ARG,
                 "cat: tensor 1 has shape (1x3) but tensor 0 has shape (2x3)");
    ERR_CONTAINS(tensor_cat(ab, 0, 0, &r), DDP_ERR_ARG, "non-empty");

    tensor *aa[2] = {a, a};
    OK(tensor_stack(aa, 2, 1, &r));
    assert_int_equal(r->ndim, 3);
    assert_int_equal(r->sizes[0], 2);
    assert_int_equal(r->sizes[1], 2);
    assert_int_equal(r->sizes[2], 3);
    tensor_release(r);
    OK(tensor_stack(aa, 2, -1, &r));
    assert_int_equal(r->sizes[2], 2);
    tensor_release(r);
    ERR_CONTAINS(tensor_stack(ac, 2, 0, &r), DDP_ERR_ARG, "tensor 1 is (2x2)");

    int64_t s43[2] = {4, 3}, s3[1] = {3};
    tensor *m;
    OK(tensor_empty(s43, 2, DTYPE_FLOAT32, DEVICE_CPU_VALUE, &m));
    for (int i = 0; i < 12; i++) tensor_set(m, i, i);
    int64_t iv[3] = {3, 0, 3};
    tensor *idx;
    OK(tensor_from_data(iv, s3, 1, DTYPE_INT64, &idx));
    OK(tensor_index_select(m, 0, idx, &r));
    assert_int_equal(r->sizes[0], 3);
    assert_true(tensor_get(r, 0) == 9 && tensor_get(r, 3) == 0 && tensor_get(r, 8) == 11);
    tensor_release(r);
    ERR_CONTAINS(tensor_index_select(m, 1, idx, &r), DDP_ERR_ARG,
                 "index 3 is out of range for dim 1 of size 3");
    tensor_release(idx);
    iv[0] = 2, iv[2] = 1;
    OK(tensor_from_data(iv, s3, 1, DTYPE_INT64, &idx));
    OK(tensor_index_select(m, 1, idx, &r));
    assert_true(tensor_get(r, 0) == 2 && tensor_get(r, 1) == 0 && tensor_get(r, 4) == 3 + 0);
    tensor_release(r);
    tensor_release(idx);
    tensor_release(m);
    tensor_release(a);
    tensor_release(b);
    tensor_release(c);
}

/* The remaining argument errors of the products and joins, each naming its op. */
static void test_more_error_paths(void **state) {
    (void)state;
    int64_t s23[2] = {2, 3}, s32[2] = {3, 2}, s3[1] = {3}, s243[3] = {2, 4, 3}, s332[3] = {3, 3, 2};
    tensor *a = randn_tensor(DTYPE_FLOAT32, s23, 2, 1), *b = randn_tensor(DTYPE_FLOAT32, s32, 2, 2);
    tensor *d = randn_tensor(DTYPE_FLOAT64, s32, 2, 3), *v = randn_tensor(DTYPE_FLOAT32, s3, 1, 4);
    tensor *b3 = randn_tensor(DTYPE_FLOAT32, s243, 3, 5),
           *c3 = randn_tensor(DTYPE_FLOAT32, s332, 3, 6);
    tensor *bools, *sc, *c, *r = NULL;
    OK(tensor_zeros(s23, 2, DTYPE_BOOL, DEVICE_CPU_VALUE, &bools));
    OK(tensor_scalar(1, DTYPE_FLOAT32, &sc));
    OK(tensor_zeros(s23, 2, DTYPE_FLOAT32, DEVICE_CPU_VALUE, &c));
    ERR_CONTAINS(tensor_mm(bools, bools, &r), DDP_ERR_ARG, "mm: (2x3) @ (2x3): inner sizes");
    tensor *bt;
    OK(tensor_transpose(bools, 0, 1, &bt));
    ERR_CONTAINS(tensor_mm(bools, bt, &r), DDP_ERR_ARG, "mm: matrix products of bool tensors");
    ERR_CONTAINS(tensor_matmul(sc, v, &r), DDP_ERR_ARG,
                 "matmul: both arguments need at least 1 dim");
    ERR_CONTAINS(tensor_matmul(b3, c3, &r), DDP_ERR_ARG,
                 "matmul: the batch dims of (2x4x3) and (3x3x2) cannot be broadcast");
    ERR_CONTAINS(tensor_gemm_(false, false, 1, a, d, 0, c), DDP_ERR_ARG, "gemm: dtypes differ");
    ERR_CONTAINS(tensor_gemm_(false, false, 1, v, b, 0, c), DDP_ERR_ARG, "gemm: expected 2-D");
    tensor *dt;
    OK(tensor_transpose(d, 0, 1, &dt)); /* (2x3) float64 weight for a (2x3) float32 input */
    ERR_CONTAINS(tensor_linear(a, dt, NULL, &r), DDP_ERR_ARG,
                 "linear: both operands must have the same dtype");
    tensor *one[1] = {sc}, *two[2] = {a, v};
    ERR_CONTAINS(tensor_cat(one, 1, 0, &r), DDP_ERR_ARG, "cat: tensor 0 is 0-dimensional");
    ERR_CONTAINS(tensor_cat(two, 2, 0, &r), DDP_ERR_ARG, "cat: tensor 1 has shape (3)");
    ERR_CONTAINS(tensor_stack(two, 0, 0, &r), DDP_ERR_ARG, "stack: expected a non-empty list");
    ERR_CONTAINS(tensor_stack(two, 2, 3, &r), DDP_ERR_ARG, "stack: dimension 3");
    ERR_CONTAINS(tensor_index_select(a, 0, v, &r), DDP_ERR_ARG,
                 "index_select: the index must be a 1-D int64 tensor, got float32 (3)");
    assert_null(r);
    tensor_release(dt);
    tensor_release(bt);
    tensor_release(bools);
    tensor_release(sc);
    tensor_release(c);
    tensor_release(a);
    tensor_release(b);
    tensor_release(d);
    tensor_release(v);
    tensor_release(b3);
    tensor_release(c3);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mm_layouts),       cmocka_unit_test(test_mm_int64_and_errors),
        cmocka_unit_test(test_matmul_shapes),    cmocka_unit_test(test_gemm_accumulate),
        cmocka_unit_test(test_linear),           cmocka_unit_test(test_cat_stack_index_select),
        cmocka_unit_test(test_more_error_paths),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
