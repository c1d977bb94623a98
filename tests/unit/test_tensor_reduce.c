/* test_tensor_reduce.c — reductions over all elements and over one dim (keepdim or not),
 * their dtypes and errors, max/min with indices, sum_to, and softmax / log_softmax
 * (rows sum to 1, log form equals log of softmax, no overflow on large inputs). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "support/support_tensor_checks.h"
#include "tensor/tensor.h"

/* (2x3): [[1, 5, 3], [4, 2, 6]] */
static const double M[6] = {1, 5, 3, 4, 2, 6};

static void test_reduce_all(void **state) {
    (void)state;
    int64_t s[2] = {2, 3};
    tensor *t = make_tensor(DTYPE_FLOAT32, s, 2, M), *r;
    struct {
        reduce_op op;
        double want;
    } cases[] = {{REDUCE_SUM, 21},   {REDUCE_MEAN, 3.5},       {REDUCE_PROD, 720},
                 {REDUCE_MAX, 6},    {REDUCE_MIN, 1},          {REDUCE_ARGMAX, 5},
                 {REDUCE_ARGMIN, 0}, {REDUCE_NORM, sqrt(91.0)}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        OK(tensor_reduce_all(cases[k].op, t, &r));
        assert_int_equal(r->ndim, 0);
        if (fabs(item_of(r) - cases[k].want) > 1e-5)
            fail_msg("%s: got %g, want %g", reduce_op_name(cases[k].op), item_of(r), cases[k].want);
        bool arg = cases[k].op == REDUCE_ARGMAX || cases[k].op == REDUCE_ARGMIN;
        assert_int_equal(r->dtype, arg ? DTYPE_INT64 : DTYPE_FLOAT32);
        tensor_release(r);
    }
    /* through a transposed view: argmax counts in the view's logical order */
    tensor *tt;
    OK(tensor_transpose(t, 0, 1, &tt)); /* [[1,4],[5,2],[3,6]] */
    OK(tensor_reduce_all(REDUCE_ARGMIN, tt, &r));
    assert_int_equal(tensor_get_int64(r, 0), 0);
    tensor_release(r);
    OK(tensor_reduce_all(REDUCE_ARGMAX, tt, &r));
    assert_int_equal(tensor_get_int64(r, 0), 5);
    tensor_release(r);
    OK(tensor_reduce_all(REDUCE_SUM, tt, &r));
    assert_true(item_of(r) == 21.0);
    tensor_release(r);
    tensor_release(tt);

    tensor *i = make_tensor(DTYPE_INT64, s, 2, M);
    OK(tensor_reduce_all(REDUCE_SUM, i, &r));
    assert_int_equal(r->dtype, DTYPE_INT64); /* int sums stay int */
    assert_int_equal(tensor_get_int64(r, 0), 21);
    tensor_release(r);
    ERR_CONTAINS(tensor_reduce_all(REDUCE_MEAN, i, &r), DDP_ERR_ARG,
                 "mean: needs a floating point");
    assert_null(r);
    ERR_CONTAINS(tensor_reduce_all(REDUCE_NORM, i, &r), DDP_ERR_ARG, "norm");
    int64_t e[1] = {0};
    tensor *empty;
    OK(tensor_empty(e, 1, DTYPE_FLOAT32, DEVICE_CPU_VALUE, &empty));
    ERR_CONTAINS(tensor_reduce_all(REDUCE_MAX, empty, &r), DDP_ERR_ARG, "(0) is empty");
    OK(tensor_reduce_all(REDUCE_SUM, empty, &r));
    assert_true(item_of(r) == 0.0);
    tensor_release(r);
    OK(tensor_reduce_all(REDUCE_MEAN, empty, &r));
    assert_true(isnan(item_of(r)));
    tensor_release(r);

    /* a long float32 sum accumulates in double: 1e6 * 0.1 stays close */
    int64_t big[1] = {1000000};
    tensor *ones;
    OK(tensor_full(big, 1, DTYPE_FLOAT32, DEVICE_CPU_VALUE, 0.1, &ones));
    OK(tensor_reduce_all(REDUCE_SUM, ones, &r));
    assert_true(fabs(item_of(r) - 100000.0) < 0.05);
    tensor_release(r);
    tensor *vals, *idx;
    ERR_CONTAINS(tensor_max_dim(empty, 0, false, false, &vals, &idx), DDP_ERR_ARG,
                 "max: dim 0 of the tensor of shape (0) has size 0");
    ERR_CONTAINS(tensor_reduce_dim(REDUCE_ARGMIN, empty, 0, false, &r), DDP_ERR_ARG,
                 "argmin: dim 0 of the tensor");
    tensor_release(ones);
    tensor_release(empty);
    tensor_release(i);
    tensor_release(t);
}

static void test_reduce_dim(void **state) {
    (void)state;
    int64_t s[2] = {2, 3};
    tensor *t = make_tensor(DTYPE_FLOAT32, s, 2, M), *r;
    OK(tensor_reduce_dim(REDUCE_SUM, t, 0, false, &r));
    assert_int_equal(r->ndim, 1);
    assert_int_equal(r->sizes[0], 3);
    assert_true(tensor_get(r, 0) == 5 && tensor_get(r, 1) == 7 && tensor_get(r, 2) == 9);
    tensor_release(r);
    OK(tensor_reduce_dim(REDUCE_MEAN, t, -1, true, &r));
    assert_int_equal(r->ndim, 2);
    assert_int_equal(r->sizes[0], 2);
    assert_int_equal(r->sizes[1], 1);
    assert_true(tensor_get(r, 0) == 3 && tensor_get(r, 1) == 4);
    tensor_release(r);
    OK(tensor_reduce_dim(REDUCE_MAX, t, 1, false, &r));
    assert_true(tensor_get(r, 0) == 5 && tensor_get(r, 1) == 6);
    tensor_release(r);
    OK(tensor_reduce_dim(REDUCE_ARGMAX, t, 0, true, &r));
    assert_int_equal(r->dtype, DTYPE_INT64);
    assert_int_equal(r->sizes[0], 1);
    assert_int_equal(tensor_get_int64(r, 0), 1);
    assert_int_equal(tensor_get_int64(r, 1), 0);
    assert_int_equal(tensor_get_int64(r, 2), 1);
    tensor_release(r);
    OK(tensor_reduce_dim(REDUCE_NORM, t, 0, false, &r));
    assert_true(fabs(tensor_get(r, 1) - sqrt(29.0)) < 1e-5);
    tensor_release(r);
    OK(tensor_reduce_dim(REDUCE_PROD, t, 1, false, &r));
    assert_true(tensor_get(r, 0) == 15 && tensor_get(r, 1) == 48);
    tensor_release(r);
    ERR_CONTAINS(tensor_reduce_dim(REDUCE_SUM, t, 2, false, &r), DDP_ERR_ARG,
                 "sum: dimension 2 is out of range");

    /* 3-D, middle dim, on a permuted view, against a loop */
    int64_t s3[3] = {3, 4, 5};
    double v[60];
    for (int k = 0; k < 60; k++) v[k] = (k * 37 % 11) - 5;
    tensor *c = make_tensor(DTYPE_FLOAT64, s3, 3, v), *p;
    int64_t perm[3] = {2, 0, 1};
    OK(tensor_permute(c, perm, 3, &p));                 /* (5x3x4) */
    OK(tensor_reduce_dim(REDUCE_SUM, p, 1, false, &r)); /* (5x4): sum over c's dim 0 */
    for (int a = 0; a < 5; a++)
        for (int b = 0; b < 4; b++) {
            double want = 0;
            for (int k = 0; k < 3; k++) want += v[k * 20 + b * 5 + a];
            assert_true(tensor_get(r, a * 4 + b) == want);
        }
    tensor_release(r);
    tensor *vals, *idx;
    OK(tensor_max_dim(p, 2, false, true, &vals, &idx)); /* min over c's dim 1 */
    for (int a = 0; a < 5; a++)
        for (int k = 0; k < 3; k++) {
            double best = INFINITY;
            int64_t bi = 0;
            for (int b = 0; b < 4; b++)
                if (v[k * 20 + b * 5 + a] < best) best = v[k * 20 + b * 5 + a], bi = b;
            assert_true(tensor_get(vals, a * 3 + k) == best);
            assert_int_equal(tensor_get_int64(idx, a * 3 + k), bi);
        }
    tensor_release(vals);
    tensor_release(idx);
    OK(tensor_max_dim(t, 1, true, false, &vals, &idx));
    assert_int_equal(vals->ndim, 2);
    assert_int_equal(idx->sizes[1], 1);
    assert_int_equal(tensor_get_int64(idx, 1), 2);
    tensor_release(vals);
    tensor_release(idx);
    tensor_release(p);
    tensor_release(c);
    tensor_release(t);
}

static void test_nan_propagates(void **state) {
    (void)state;
    int64_t s[1] = {3};
    double v[3] = {1, NAN, 3};
    tensor *t = make_tensor(DTYPE_FLOAT32, s, 1, v), *r;
    OK(tensor_reduce_all(REDUCE_MAX, t, &r));
    assert_true(isnan(item_of(r)));
    tensor_release(r);
    OK(tensor_reduce_all(REDUCE_ARGMAX, t, &r));
    assert_int_equal(tensor_get_int64(r, 0), 1);
    tensor_release(r);
    tensor_release(t);
}

static void test_sum_to(void **state) {
    (void)state;
    int64_t s[3] = {2, 2, 3};
    double v[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    tensor *t = make_tensor(DTYPE_FLOAT32, s, 3, v), *r;
    int64_t to_row[1] = {3};
    OK(tensor_sum_to(t, to_row, 1, &r));
    assert_int_equal(r->ndim, 1);
    assert_true(tensor_get(r, 0) == 1 + 4 + 7 + 10);
    tensor_release(r);
    int64_t to_col[2] = {2, 1};
    OK(tensor_sum_to(t, to_col, 2, &r));
    assert_int_equal(r->sizes[0], 2);
    assert_int_equal(r->sizes[1], 1);
    assert_true(tensor_get(r, 0) == 1 + 2 + 3 + 7 + 8 + 9);
    tensor_release(r);
    OK(tensor_sum_to(t, NULL, 0, &r));
    assert_true(item_of(r) == 78);
    tensor_release(r);
    OK(tensor_sum_to(t, s, 3, &r));
    assert_true(tensor_equal(r, t));
    assert_ptr_not_equal(r, t);
    tensor_release(r);
    int64_t bad[1] = {2};
    ERR_CONTAINS(tensor_sum_to(t, bad, 1, &r), DDP_ERR_ARG, "(2x2x3) cannot be summed down to (2)");
    tensor_release(t);
}

static void test_softmax(void **state) {
    (void)state;
    int64_t s[2] = {3, 4};
    double v[12] = {1, 2, 3, 4, -1, 0, 1, 1000, 0.5, 0.5, 0.5, 0.5};
    tensor *t = make_tensor(DTYPE_FLOAT32, s, 2, v), *sm, *lsm, *lg;
    OK(tensor_softmax(t, 1, &sm));
    for (int r = 0; r < 3; r++) {
        double sum = 0;
        for (int c = 0; c < 4; c++) {
            double p = tensor_get(sm, r * 4 + c);
            assert_false(isnan(p)); /* 1000 does not overflow */
            sum += p;
        }
        assert_true(fabs(sum - 1) < 1e-6);
    }
    assert_true(fabs(tensor_get(sm, 7) - 1.0) < 1e-6);
    assert_true(fabs(tensor_get(sm, 8) - 0.25) < 1e-7);
    OK(tensor_log_softmax(t, -1, &lsm));
    OK(tensor_unary(UNARY_LOG, sm, &lg));
    for (int k = 0; k < 12; k++) {
        if (tensor_get(sm, k) < 1e-30) continue; /* log of an underflowed 0 */
        assert_true(fabs(tensor_get(lsm, k) - tensor_get(lg, k)) < 1e-5);
    }
    assert_true(fabs(tensor_get(lsm, 4) - (-1001.0)) < 1e-3); /* exact where softmax underflows */
    tensor_release(lg);
    tensor_release(lsm);
    tensor_release(sm);

    /* along dim 0, float64 */
    tensor *d;
    OK(tensor_to_dtype(t, DTYPE_FLOAT64, &d));
    OK(tensor_softmax(d, 0, &sm));
    assert_int_equal(sm->dtype, DTYPE_FLOAT64);
    double col = tensor_get(sm, 0) + tensor_get(sm, 4) + tensor_get(sm, 8);
    assert_true(fabs(col - 1) < 1e-12);
    double want = exp(1.0) / (exp(1.0) + exp(-1.0) + exp(0.5));
    assert_true(fabs(tensor_get(sm, 0) - want) < 1e-12);
    tensor_release(sm);
    tensor_release(d);

    tensor *ints;
    OK(tensor_zeros(s, 2, DTYPE_INT64, DEVICE_CPU_VALUE, &ints));
    ERR_CONTAINS(tensor_softmax(ints, 1, &sm), DDP_ERR_ARG, "softmax: needs a floating point");
    ERR_CONTAINS(tensor_log_softmax(t, 2, &sm), DDP_ERR_ARG, "log_softmax: dimension 2");
    tensor_release(ints);
    tensor_release(t);
}

/* float32 softmax against a double reference on random rows, long and short, with a
 * strided (transposed) input: relative error within float32 rounding. */
static void test_softmax_accuracy(void **state) {
    (void)state;
    int64_t s[2] = {37, 300};
    tensor *t, *tt, *sm, *lsm;
    ddp_generator g;
    generator_seed(&g, 21);
    OK(tensor_empty(s, 2, DTYPE_FLOAT32, DEVICE_CPU_VALUE, &t));
    OK(tensor_normal_(t, 0, 20, &g));   /* spread wide: exp of -80 .. 0 is exercised */
    OK(tensor_transpose(t, 0, 1, &tt)); /* (300x37): softmax along dim 0 walks t's rows */
    OK(tensor_softmax(tt, 0, &sm));
    OK(tensor_log_softmax(tt, 0, &lsm));
    double worst = 0, worst_log = 0;
    for (int r = 0; r < 37; r++) {
        double mx = -INFINITY, sum = 0;
        for (int c = 0; c < 300; c++) mx = fmax(mx, tensor_get(t, r * 300 + c));
        for (int c = 0; c < 300; c++) sum += exp(tensor_get(t, r * 300 + c) - mx);
        for (int c = 0; c < 300; c++) {
            double z = tensor_get(t, r * 300 + c) - mx, p = exp(z) / sum, lp = z - log(sum);
            double got = tensor_get(sm, c * 37 + r), got_log = tensor_get(lsm, c * 37 + r);
            /* z itself carries float32 rounding of about |z| * 6e-8, which exp turns into
             * a relative error; measure against that allowance */
            if (p > 1e-30) worst = fmax(worst, fabs(got - p) / p / (1 + fabs(z)));
            worst_log = fmax(worst_log, fabs(got_log - lp) / fmax(1.0, fabs(lp)));
        }
    }
    if (worst > 1e-6 || worst_log > 1e-6)
        fail_msg("softmax relative error %g, log_softmax %g", worst, worst_log);
    tensor_release(sm);
    tensor_release(lsm);
    tensor_release(tt);
    tensor_release(t);
}

/* Review finding: max/min/argmax along a dim of an empty tensor are fine (an empty
 * result) as long as the reduced dim itself is not empty, as in PyTorch. */
static void test_extremes_of_empty_tensors(void **state) {
    (void)state;
    int64_t s03[2] = {0, 3};
    tensor *t = NULL, *v = NULL, *ix = NULL, *r = NULL;
    OK(tensor_zeros(s03, 2, DTYPE_FLOAT32, DEVICE_CPU_VALUE, &t));
    OK(tensor_max_dim(t, 1, false, false, &v, &ix));
    assert_int_equal(v->ndim, 1);
    assert_int_equal(v->sizes[0], 0);
    assert_int_equal(ix->sizes[0], 0);
    assert_int_equal(ix->dtype, DTYPE_INT64);
    tensor_release(v);
    tensor_release(ix);
    OK(tensor_reduce_dim(REDUCE_ARGMIN, t, -1, true, &r));
    assert_int_equal(r->ndim, 2);
    assert_int_equal(r->sizes[0], 0);
    assert_int_equal(r->sizes[1], 1);
    tensor_release(r);
    r = (tensor *)1;
    ERR_CONTAINS(tensor_max_dim(t, 0, false, true, &v, &ix), DDP_ERR_ARG,
                 "min: dim 0 of the tensor of shape (0x3) has size 0");
    assert_null(v);
    assert_null(ix);
    ERR_CONTAINS(tensor_reduce_dim(REDUCE_MAX, t, 0, false, &r), DDP_ERR_ARG, "dim 0");
    assert_null(r);
    ERR_CONTAINS(tensor_reduce_all(REDUCE_ARGMAX, t, &r), DDP_ERR_ARG, "empty");
    tensor_release(t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reduce_all),
        cmocka_unit_test(test_reduce_dim),
        cmocka_unit_test(test_nan_propagates),
        cmocka_unit_test(test_sum_to),
        cmocka_unit_test(test_softmax),
        cmocka_unit_test(test_softmax_accuracy),
        cmocka_unit_test(test_extremes_of_empty_tensors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
