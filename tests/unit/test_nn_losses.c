/* test_nn_losses.c — mse_loss and cross_entropy: values against the definitions worked
 * out by hand in the test, every reduction, both target kinds, ignore_index, the fused
 * backward's closed form, and the errors a learner meets (shapes, class range, dtypes).
 * Finite-difference checks of the same losses are in test_nn_autograd.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <string.h>

#include "nn/autograd.h"
#include "support/support_tensor_checks.h"

#define NEAR(a, b) assert_true(fabs((a) - (b)) < 1e-12 * (1.0 + fabs(b)))
#define NEAR32(a, b) assert_true(fabs((a) - (b)) < 1e-6 * (1.0 + fabs(b)))

/* make_tensor, made a leaf that requires grad when `grad` says so. */
static tensor *make(const double *v, const int64_t *sizes, int ndim, dtype dt, bool grad) {
    tensor *t = make_tensor(dt, sizes, ndim, v);
    if (grad) OK(ag_set_requires_grad(t, true));
    return t;
}

static void test_reduction_parse(void **state) {
    (void)state;
    loss_reduction r;
    assert_true(loss_reduction_parse("mean", &r) && r == REDUCTION_MEAN);
    assert_true(loss_reduction_parse("sum", &r) && r == REDUCTION_SUM);
    assert_true(loss_reduction_parse("none", &r) && r == REDUCTION_NONE);
    assert_false(loss_reduction_parse("avg", &r));
    assert_false(loss_reduction_parse(NULL, &r));
}

static void test_mse_values_and_backward(void **state) {
    (void)state;
    const double x[4] = {1, 2, 3, 4}, y[4] = {0, 2, 5, 4.5};
    int64_t s[2] = {2, 2};
    tensor *in = make(x, s, 2, DTYPE_FLOAT64, true), *tg = make(y, s, 2, DTYPE_FLOAT64, true);
    tensor *l;
    OK(ag_mse_loss(in, tg, REDUCTION_SUM, &l));
    NEAR(item_of(l), 1 + 0 + 4 + 0.25);
    tensor_release(l);
    OK(ag_mse_loss(in, tg, REDUCTION_NONE, &l));
    assert_true(tensor_same_shape(l, in));
    NEAR(tensor_get(l, 2), 4.0);
    tensor_release(l);
    OK(ag_mse_loss(in, tg, REDUCTION_MEAN, &l));
    NEAR(item_of(l), 5.25 / 4);
    assert_string_equal(ag_grad_fn_name(l), "MseLossBackward0");
    OK(ag_backward(l, NULL, false));
    for (int i = 0; i < 4; i++) {
        NEAR(tensor_get(in->grad, i), 2 * (x[i] - y[i]) / 4);
        NEAR(tensor_get(tg->grad, i), -2 * (x[i] - y[i]) / 4);
    }
    tensor_release(l);
    tensor_release(in);
    tensor_release(tg);
}

static void test_mse_refuses_shape_mismatch(void **state) {
    (void)state;
    const double v[4] = {1, 2, 3, 4};
    int64_t a[2] = {4, 1}, b[1] = {4};
    tensor *in = make(v, a, 2, DTYPE_FLOAT32, false), *tg = make(v, b, 1, DTYPE_FLOAT32, false);
    tensor *l = NULL;
    assert_int_equal(ag_mse_loss(in, tg, REDUCTION_MEAN, &l), DDP_ERR_ARG);
    assert_null(l);
    assert_non_null(strstr(ddp_last_error(), "mse_loss"));
    assert_non_null(strstr(ddp_last_error(), "(4x1)"));
    assert_non_null(strstr(ddp_last_error(), "(4)"));
    tensor_release(in);
    tensor_release(tg);
}

/* -log softmax(row)[k] computed from the definition */
static double ce_ref(const double *row, int c, int k) {
    double sum = 0;
    for (int j = 0; j < c; j++) sum += exp(row[j]);
    return log(sum) - row[k];
}

static void test_cross_entropy_class_indices(void **state) {
    (void)state;
    const double x[6] = {1, 2, 3, 0.5, -1, 2};
    const int64_t t[2] = {2, 0};
    int64_t s[2] = {2, 3}, n = 2;
    tensor *in = make(x, s, 2, DTYPE_FLOAT64, true), *tg;
    OK(tensor_from_data(t, &n, 1, DTYPE_INT64, &tg));
    double l0 = ce_ref(x, 3, 2), l1 = ce_ref(x + 3, 3, 0);
    tensor *l;
    OK(ag_cross_entropy(in, tg, REDUCTION_NONE, &l));
    assert_int_equal(l->ndim, 1);
    NEAR(tensor_get(l, 0), l0);
    NEAR(tensor_get(l, 1), l1);
    tensor_release(l);
    OK(ag_cross_entropy(in, tg, REDUCTION_SUM, &l));
    NEAR(item_of(l), l0 + l1);
    tensor_release(l);
    OK(ag_cross_entropy(in, tg, REDUCTION_MEAN, &l));
    NEAR(item_of(l), (l0 + l1) / 2);
    OK(ag_backward(l, NULL, false));
    /* softmax - onehot, over N */
    for (int i = 0; i < 2; i++) {
        double sum = 0;
        for (int j = 0; j < 3; j++) sum += exp(x[3 * i + j]);
        for (int j = 0; j < 3; j++) {
            double want = (exp(x[3 * i + j]) / sum - (j == t[i] ? 1.0 : 0.0)) / 2;
            NEAR(tensor_get(in->grad, 3 * i + j), want);
        }
    }
    tensor_release(l);
    tensor_release(tg);
    tensor_release(in);
}

static void test_cross_entropy_probabilities_match_onehot(void **state) {
    (void)state;
    const double x[6] = {0.3, -2, 1, 2, 0, -0.5};
    const double onehot[6] = {0, 1, 0, 1, 0, 0};
    const int64_t t[2] = {1, 0};
    int64_t s[2] = {2, 3}, n = 2;
    for (int r = 0; r < 3; r++) {
        tensor *a = make(x, s, 2, DTYPE_FLOAT32, true), *b = make(x, s, 2, DTYPE_FLOAT32, true);
        tensor *p = make(onehot, s, 2, DTYPE_FLOAT32, false), *idx, *la, *lb, *ga, *gb;
        OK(tensor_from_data(t, &n, 1, DTYPE_INT64, &idx));
        OK(ag_cross_entropy(a, idx, (loss_reduction)r, &la));
        OK(ag_cross_entropy(b, p, (loss_reduction)r, &lb));
        assert_int_equal(la->dtype, DTYPE_FLOAT32);
        assert_true(tensor_same_shape(la, lb));
        for (int64_t i = 0; i < tensor_numel(la); i++) NEAR32(tensor_get(la, i), tensor_get(lb, i));
        OK(ag_reduce_all(REDUCE_SUM, la, &ga));
        OK(ag_reduce_all(REDUCE_SUM, lb, &gb));
        OK(ag_backward(ga, NULL, false));
        OK(ag_backward(gb, NULL, false));
        for (int i = 0; i < 6; i++) NEAR32(tensor_get(a->grad, i), tensor_get(b->grad, i));
        tensor_release(ga);
        tensor_release(gb);
        tensor_release(la);
        tensor_release(lb);
        tensor_release(idx);
        tensor_release(p);
        tensor_release(a);
        tensor_release(b);
    }
}

static void test_cross_entropy_one_sample(void **state) {
    (void)state;
    const double x[4] = {0.1, 0.2, 0.3, 0.4};
    int64_t c = 4;
    tensor *in = make(x, &c, 1, DTYPE_FLOAT64, false), *tg, *l;
    OK(tensor_scalar(3, DTYPE_INT64, &tg));
    OK(ag_cross_entropy(in, tg, REDUCTION_NONE, &l));
    assert_int_equal(l->ndim, 0);
    NEAR(item_of(l), ce_ref(x, 4, 3));
    tensor_release(l);
    tensor_release(tg);
    tensor_release(in);
}

static void test_cross_entropy_ignore_index(void **state) {
    (void)state;
    const double x[6] = {1, 2, 3, 0.5, -1, 2};
    const int64_t t[2] = {-100, 1};
    int64_t s[2] = {2, 3}, n = 2;
    tensor *in = make(x, s, 2, DTYPE_FLOAT64, true), *tg, *l;
    OK(tensor_from_data(t, &n, 1, DTYPE_INT64, &tg));
    OK(ag_cross_entropy(in, tg, REDUCTION_MEAN, &l)); /* mean over the one kept sample */
    NEAR(item_of(l), ce_ref(x + 3, 3, 1));
    OK(ag_backward(l, NULL, false));
    for (int j = 0; j < 3; j++) assert_true(tensor_get(in->grad, j) == 0.0);
    tensor_release(l);
    tensor_release(tg);
    tensor_release(in);
}

static void test_cross_entropy_errors(void **state) {
    (void)state;
    const double x[6] = {1, 2, 3, 0.5, -1, 2};
    int64_t s[2] = {2, 3}, n = 2, s21[2] = {2, 1};
    tensor *in = make(x, s, 2, DTYPE_FLOAT32, true), *tg, *l = NULL;
    const int64_t bad[2] = {0, 3};
    OK(tensor_from_data(bad, &n, 1, DTYPE_INT64, &tg));
    assert_int_equal(ag_cross_entropy(in, tg, REDUCTION_MEAN, &l), DDP_ERR_ARG);
    assert_null(l);
    assert_non_null(strstr(ddp_last_error(), "target 3"));
    assert_non_null(strstr(ddp_last_error(), "3 classes"));
    tensor_release(tg);
    /* float class indices: the classic mistake */
    const double f[2] = {0, 1};
    tg = make(f, &n, 1, DTYPE_FLOAT32, false);
    assert_int_equal(ag_cross_entropy(in, tg, REDUCTION_MEAN, &l), DDP_ERR_ARG);
    assert_non_null(strstr(ddp_last_error(), "int64"));
    assert_non_null(strstr(ddp_last_error(), "(2x3)"));
    tensor_release(tg);
    /* indices of the wrong shape */
    const int64_t two[2] = {0, 1};
    OK(tensor_from_data(two, s21, 2, DTYPE_INT64, &tg));
    assert_int_equal(ag_cross_entropy(in, tg, REDUCTION_MEAN, &l), DDP_ERR_ARG);
    assert_non_null(strstr(ddp_last_error(), "(2x1)"));
    tensor_release(tg);
    /* integer logits */
    tensor *xi;
    OK(tensor_zeros(s, 2, DTYPE_INT64, DEVICE_CPU_VALUE, &xi));
    OK(tensor_from_data(two, &n, 1, DTYPE_INT64, &tg));
    assert_int_equal(ag_cross_entropy(xi, tg, REDUCTION_MEAN, &l), DDP_ERR_ARG);
    assert_non_null(strstr(ddp_last_error(), "float"));
    tensor_release(tg);
    tensor_release(xi);
    tensor_release(in);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reduction_parse),
        cmocka_unit_test(test_mse_values_and_backward),
        cmocka_unit_test(test_mse_refuses_shape_mismatch),
        cmocka_unit_test(test_cross_entropy_class_indices),
        cmocka_unit_test(test_cross_entropy_probabilities_match_onehot),
        cmocka_unit_test(test_cross_entropy_one_sample),
        cmocka_unit_test(test_cross_entropy_ignore_index),
        cmocka_unit_test(test_cross_entropy_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
