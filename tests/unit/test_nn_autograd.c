/* test_nn_autograd.c — every differentiable op's backward against central finite
 * differences in float64 on random inputs (broadcasting, keepdim reductions, views as
 * inputs, every matmul shape, linear, softmax family, losses), and the engine's rules:
 * accumulation, retain_graph, a freed graph, no_grad, detach, in-place checks, a deep
 * chain, error messages and grad_fn names. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "nn/autograd.h"
#include "support/support_tensor_checks.h"

/* ---- the finite-difference harness ------------------------------------------------ */

/* Builds the op's output from the leaves (and any static extra tensors). */
typedef ddp_status (*op_fn)(tensor *const *x, tensor **out);

enum { NORMAL, POSITIVE };
typedef struct {
    int ndim;
    int64_t sizes[4];
    int kind;
} spec;

static ddp_generator gen;

static tensor *random_tensor(const spec *s) {
    tensor *t;
    OK(tensor_empty(s->sizes, s->ndim, DTYPE_FLOAT64, DEVICE_CPU_VALUE, &t));
    if (s->kind == POSITIVE)
        OK(tensor_uniform_(t, 0.5, 2.0, &gen));
    else
        OK(tensor_normal_(t, 0.0, 1.0, &gen));
    return t;
}

/* L = sum(f(x) * w): a scalar whose gradient into f(x) is w, not all ones. */
static ddp_status eval_loss(op_fn f, tensor *const *x, tensor **w, tensor **loss) {
    tensor *y, *yw;
    DDP_CHECK(f(x, &y));
    if (!*w) {
        OK(tensor_empty(y->sizes, y->ndim, DTYPE_FLOAT64, DEVICE_CPU_VALUE, w));
        OK(tensor_normal_(*w, 0.0, 1.0, &gen));
    }
    ddp_status s = ag_binary(BINARY_MUL, y, *w, &yw);
    tensor_release(y);
    DDP_CHECK(s);
    s = ag_reduce_all(REDUCE_SUM, yw, loss);
    tensor_release(yw);
    return s;
}

static double loss_value(op_fn f, tensor *const *x, tensor **w) {
    tensor *l;
    grad_mode_set(false);
    OK(eval_loss(f, x, w, &l));
    grad_mode_set(true);
    double v;
    OK(tensor_item(l, &v));
    tensor_release(l);
    return v;
}

/* Checks d(loss)/dx for every element of every leaf against central differences. */
static void gradcheck(const char *name, op_fn f, int n, const spec *specs) {
    tensor *x[4] = {NULL, NULL, NULL, NULL};
    for (int i = 0; i < n; i++) {
        x[i] = random_tensor(&specs[i]);
        OK(ag_set_requires_grad(x[i], true));
    }
    tensor *w = NULL, *loss;
    ddp_status s = eval_loss(f, x, &w, &loss);
    if (s != DDP_OK) fail_msg("%s: forward failed: %s", name, ddp_last_error());
    s = ag_backward(loss, NULL, false);
    if (s != DDP_OK) fail_msg("%s: backward failed: %s", name, ddp_last_error());
    tensor_release(loss);
    const double h = 1e-6;
    for (int i = 0; i < n; i++) {
        if (!x[i]->grad) fail_msg("%s: input %d got no gradient", name, i);
        assert_true(tensor_same_shape(x[i]->grad, x[i]));
        for (int64_t j = 0; j < tensor_numel(x[i]); j++) {
            double v = tensor_get(x[i], j);
            tensor_set(x[i], j, v + h);
            double lp = loss_value(f, x, &w);
            tensor_set(x[i], j, v - h);
            double lm = loss_value(f, x, &w);
            tensor_set(x[i], j, v);
            double numeric = (lp - lm) / (2 * h);
            double analytic = tensor_get(x[i]->grad, j);
            double err = fabs(analytic - numeric) / (1e-3 + fabs(numeric));
            if (err > 1e-5)
                fail_msg("%s: input %d element %lld: analytic %.10g, numeric %.10g", name, i,
                         (long long)j, analytic, numeric);
        }
    }
    for (int i = 0; i < n; i++) tensor_release(x[i]);
    tensor_release(w);
}

#define S1(a)                                                                                      \
    { 1, {a}, NORMAL }
#define S2(a, b)                                                                                   \
    { 2, {a, b}, NORMAL }
#define S3(a, b, c)                                                                                \
    { 3, {a, b, c}, NORMAL }
#define P2(a, b)                                                                                   \
    { 2, {a, b}, POSITIVE }

/* ---- element-wise ----------------------------------------------------------------- */

static binary_op cur_binop;
static unary_op cur_unop;
static double cur_scalar;
static int64_t cur_dim;
static bool cur_keep;
static reduce_op cur_red;

static ddp_status f_binary(tensor *const *x, tensor **out) {
    return ag_binary(cur_binop, x[0], x[1], out);
}
static ddp_status f_binary_scalar(tensor *const *x, tensor **out) {
    return ag_binary_scalar(cur_binop, x[0], cur_scalar, out);
}
static ddp_status f_scalar_binary(tensor *const *x, tensor **out) {
    return ag_scalar_binary(cur_binop, cur_scalar, x[0], out);
}
static ddp_status f_unary(tensor *const *x, tensor **out) {
    return ag_unary(cur_unop, x[0], out);
}

static void test_binary_broadcast(void **state) {
    (void)state;
    const binary_op ops[] = {BINARY_ADD, BINARY_SUB,     BINARY_MUL,
                             BINARY_DIV, BINARY_MAXIMUM, BINARY_MINIMUM};
    const spec shapes[][2] = {{S2(3, 4), S2(3, 4)},
                              {S2(3, 4), S1(4)},
                              {S2(3, 1), S2(1, 4)},
                              {S3(2, 3, 4), S2(3, 1)},
                              {{0, {0}, NORMAL}, S2(3, 4)}};
    for (size_t o = 0; o < sizeof ops / sizeof ops[0]; o++)
        for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
            spec sp[2] = {shapes[k][0], shapes[k][1]};
            if (ops[o] == BINARY_DIV) sp[1].kind = POSITIVE;
            char name[64];
            snprintf(name, sizeof name, "%s case %zu", binary_op_name(ops[o]), k);
            cur_binop = ops[o];
            gradcheck(name, f_binary, 2, sp);
        }
    cur_binop = BINARY_POW; /* tensor ^ tensor: positive base, both gradients */
    spec sp[2] = {P2(3, 4), S1(4)};
    gradcheck("pow tensor", f_binary, 2, sp);
}

static void test_binary_scalar_both_orders(void **state) {
    (void)state;
    const binary_op ops[] = {BINARY_ADD, BINARY_SUB, BINARY_MUL, BINARY_DIV, BINARY_POW};
    for (size_t o = 0; o < sizeof ops / sizeof ops[0]; o++) {
        cur_binop = ops[o];
        cur_scalar = 1.7;
        spec sp[1] = {P2(3, 4)};
        gradcheck(binary_op_name(ops[o]), f_binary_scalar, 1, sp);
        gradcheck(binary_op_name(ops[o]), f_scalar_binary, 1, sp);
    }
    cur_binop = BINARY_POW; /* x^2 on negative values too; x^0 has zero gradient */
    cur_scalar = 2.0;
    spec sp[1] = {S2(2, 3)};
    gradcheck("x^2", f_binary_scalar, 1, sp);
    cur_scalar = 0.0;
    gradcheck("x^0", f_binary_scalar, 1, sp);
    cur_binop = BINARY_MAXIMUM;
    cur_scalar = 0.1;
    gradcheck("maximum scalar", f_binary_scalar, 1, sp);
}

static void test_unary(void **state) {
    (void)state;
    const unary_op ops[] = {UNARY_NEG, UNARY_SQRT, UNARY_EXP,  UNARY_LOG,
                            UNARY_ABS, UNARY_RELU, UNARY_TANH, UNARY_SIGMOID};
    for (size_t o = 0; o < sizeof ops / sizeof ops[0]; o++) {
        cur_unop = ops[o];
        spec sp[1] = {S2(3, 5)};
        if (ops[o] == UNARY_SQRT || ops[o] == UNARY_LOG) sp[0].kind = POSITIVE;
        gradcheck(unary_op_name(ops[o]), f_unary, 1, sp);
    }
}

static ddp_status f_clamp(tensor *const *x, tensor **out) {
    return ag_clamp(x[0], true, -0.5, cur_keep, 0.5, out);
}

static void test_clamp(void **state) {
    (void)state;
    spec sp[1] = {S2(4, 5)};
    cur_keep = true;
    gradcheck("clamp both", f_clamp, 1, sp);
    cur_keep = false;
    gradcheck("clamp min", f_clamp, 1, sp);
}

static void test_mixed_dtypes_and_integer_inputs(void **state) {
    (void)state;
    /* float32 * float64 -> float64; each grad comes back in its input's dtype */
    float af[2] = {1.5f, -2.0f};
    double bd[2] = {3.0, 0.25};
    int64_t bi[2] = {2, 5}, n = 2;
    tensor *a, *b, *i, *y, *y2, *l;
    OK(tensor_from_data(af, &n, 1, DTYPE_FLOAT32, &a));
    OK(tensor_from_data(bd, &n, 1, DTYPE_FLOAT64, &b));
    OK(tensor_from_data(bi, &n, 1, DTYPE_INT64, &i));
    OK(ag_set_requires_grad(a, true));
    OK(ag_set_requires_grad(b, true));
    OK(ag_binary(BINARY_MUL, a, b, &y));
    assert_int_equal(y->dtype, DTYPE_FLOAT64);
    OK(ag_binary(BINARY_MUL, y, i, &y2)); /* an int64 operand: no gradient flows there */
    OK(ag_reduce_all(REDUCE_SUM, y2, &l));
    OK(ag_backward(l, NULL, false));
    assert_int_equal(a->grad->dtype, DTYPE_FLOAT32);
    assert_int_equal(b->grad->dtype, DTYPE_FLOAT64);
    for (int k = 0; k < 2; k++) {
        assert_true(tensor_get(a->grad, k) == bd[k] * (double)bi[k]);
        assert_true(tensor_get(b->grad, k) == (double)af[k] * (double)bi[k]);
    }
    assert_null(i->grad);
    tensor_release(l);
    tensor_release(y2);
    tensor_release(y);
    tensor_release(i);
    tensor_release(b);
    tensor_release(a);
}

/* ---- reductions ------------------------------------------------------------------- */

static ddp_status f_reduce_all(tensor *const *x, tensor **out) {
    return ag_reduce_all(cur_red, x[0], out);
}
static ddp_status f_reduce_dim(tensor *const *x, tensor **out) {
    return ag_reduce_dim(cur_red, x[0], cur_dim, cur_keep, out);
}

static void test_reductions(void **state) {
    (void)state;
    const reduce_op ops[] = {REDUCE_SUM, REDUCE_MEAN, REDUCE_NORM, REDUCE_MAX, REDUCE_MIN};
    spec sp[1] = {S3(2, 3, 4)};
    for (size_t o = 0; o < sizeof ops / sizeof ops[0]; o++) {
        cur_red = ops[o];
        gradcheck(reduce_op_name(ops[o]), f_reduce_all, 1, sp);
        for (int64_t d = -1; d < 3; d++)
            for (int k = 0; k < 2; k++) {
                cur_dim = d;
                cur_keep = k;
                char name[64];
                snprintf(name, sizeof name, "%s dim %lld keepdim %d", reduce_op_name(ops[o]),
                         (long long)d, k);
                gradcheck(name, f_reduce_dim, 1, sp);
            }
    }
}

static void test_max_ties_share_gradient(void **state) {
    (void)state;
    double v[4] = {1, 3, 3, 2};
    int64_t n = 4;
    tensor *x, *m;
    OK(tensor_from_data(v, &n, 1, DTYPE_FLOAT64, &x));
    OK(ag_set_requires_grad(x, true));
    OK(ag_reduce_all(REDUCE_MAX, x, &m));
    assert_string_equal(ag_grad_fn_name(m), "MaxBackward1");
    OK(ag_backward(m, NULL, false));
    assert_true(tensor_get(x->grad, 0) == 0.0 && tensor_get(x->grad, 1) == 0.5 &&
                tensor_get(x->grad, 2) == 0.5 && tensor_get(x->grad, 3) == 0.0);
    tensor_release(m);
    tensor_release(x);
}

/* ---- linear algebra --------------------------------------------------------------- */

static ddp_status f_matmul(tensor *const *x, tensor **out) {
    return ag_matmul(x[0], x[1], out);
}
static ddp_status f_mm(tensor *const *x, tensor **out) {
    return ag_mm(x[0], x[1], out);
}
/* mm of a transposed view and a narrowed view: views as inputs */
static ddp_status f_mm_views(tensor *const *x, tensor **out) {
    tensor *at, *bn;
    DDP_CHECK(ag_transpose(x[0], 0, 1, &at));
    ddp_status s = ag_narrow(x[1], 1, 1, 3, &bn);
    if (s == DDP_OK) s = ag_mm(at, bn, out);
    tensor_release(at);
    tensor_release(bn);
    return s;
}
static ddp_status f_linear(tensor *const *x, tensor **out) {
    return ag_linear(x[0], x[1], x[2], out);
}

static void test_matmul_shapes(void **state) {
    (void)state;
    const spec cases[][2] = {
        {S1(4), S1(4)},
        {S2(3, 4), S1(4)},
        {S1(4), S2(4, 2)},
        {S2(3, 4), S2(4, 2)},
        {S3(2, 3, 4), S3(2, 4, 5)},
        {S3(2, 3, 4), S2(4, 5)},
        {S2(3, 4), S3(2, 4, 5)},
        {S3(2, 3, 4), S1(4)},
        {S1(4), S3(2, 4, 3)},
        {{4, {2, 1, 3, 4}, NORMAL}, S3(5, 4, 2)},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        char name[32];
        snprintf(name, sizeof name, "matmul case %zu", k);
        spec sp[2] = {cases[k][0], cases[k][1]};
        gradcheck(name, f_matmul, 2, sp);
    }
    spec mm[2] = {S2(3, 4), S2(4, 5)};
    gradcheck("mm", f_mm, 2, mm);
    spec views[2] = {S2(4, 3), S2(4, 5)};
    gradcheck("mm of views", f_mm_views, 2, views);
}

static void test_linear(void **state) {
    (void)state;
    spec with_bias[3] = {S2(5, 3), S2(4, 3), S1(4)};
    gradcheck("linear", f_linear, 3, with_bias);
    spec batched[3] = {S3(2, 5, 3), S2(4, 3), S1(4)};
    gradcheck("linear 3-D", f_linear, 3, batched);
    spec vec[3] = {S1(3), S2(4, 3), S1(4)};
    gradcheck("linear 1-D", f_linear, 3, vec);
    spec no_bias[2] = {S2(5, 3), S2(4, 3)};
    gradcheck("linear no bias", f_linear, 2, no_bias);
}

/* ---- shape ops -------------------------------------------------------------------- */

static int cur_case;
static ddp_status f_shape(tensor *const *x, tensor **out) {
    const tensor *t = x[0]; /* (2, 3, 4) */
    switch (cur_case) {
    case 0: {
        int64_t s[2] = {6, 4};
        return ag_view(t, s, 2, out);
    }
    case 1: { /* reshape of a transposed view: a copy */
        tensor *tt;
        int64_t s[2] = {4, 6};
        DDP_CHECK(ag_transpose(t, 0, 2, &tt));
        ddp_status st = ag_reshape(tt, s, 2, out);
        tensor_release(tt);
        return st;
    }
    case 2:
        return ag_transpose(t, 1, -1, out);
    case 3: {
        int64_t d[3] = {2, 0, 1};
        return ag_permute(t, d, 3, out);
    }
    case 4:
        return ag_unsqueeze(t, -2, out);
    case 5: {
        tensor *u;
        DDP_CHECK(ag_unsqueeze(t, 1, &u));
        ddp_status st = ag_squeeze(u, NULL, out);
        tensor_release(u);
        return st;
    }
    case 6: {
        tensor *u;
        int64_t d = 3;
        DDP_CHECK(ag_unsqueeze(t, 3, &u));
        ddp_status st = ag_squeeze(u, &d, out);
        tensor_release(u);
        return st;
    }
    case 7: {
        tensor *n;
        int64_t s[4] = {5, 2, 3, 4};
        DDP_CHECK(ag_narrow(t, 1, 1, 1, &n));
        ddp_status st = ag_expand(n, s, 4, out);
        tensor_release(n);
        return st;
    }
    case 8:
        return ag_flatten(t, 1, 2, out);
    case 9:
        return ag_narrow(t, 2, 1, 2, out);
    case 10:
        return ag_select(t, 1, -1, out);
    case 11: {
        tensor *tt;
        DDP_CHECK(ag_transpose(t, 0, 1, &tt));
        ddp_status st = ag_contiguous(tt, out);
        tensor_release(tt);
        return st;
    }
    case 12:
        return ag_clone(t, out);
    default:
        return DDP_FAIL(DDP_ERR_ARG, "no case");
    }
}

static void test_shape_ops(void **state) {
    (void)state;
    spec sp[1] = {S3(2, 3, 4)};
    for (cur_case = 0; cur_case <= 12; cur_case++) {
        char name[32];
        snprintf(name, sizeof name, "shape case %d", cur_case);
        gradcheck(name, f_shape, 1, sp);
    }
}

static ddp_status f_cat(tensor *const *x, tensor **out) {
    return ag_cat(x, 3, cur_dim, out);
}
static ddp_status f_stack(tensor *const *x, tensor **out) {
    return ag_stack(x, 3, cur_dim, out);
}

static void test_cat_stack(void **state) {
    (void)state;
    spec cat0[3] = {S2(2, 3), S2(1, 3), S2(3, 3)};
    cur_dim = 0;
    gradcheck("cat 0", f_cat, 3, cat0);
    spec cat1[3] = {S2(2, 1), S2(2, 4), S2(2, 2)};
    cur_dim = -1;
    gradcheck("cat -1", f_cat, 3, cat1);
    spec st[3] = {S2(2, 3), S2(2, 3), S2(2, 3)};
    for (cur_dim = -3; cur_dim < 3; cur_dim++) gradcheck("stack", f_stack, 3, st);
}

static void test_to_dtype_gradient(void **state) {
    (void)state;
    tensor *x, *y, *l;
    int64_t s[1] = {3};
    float v[3] = {1, 2, 3};
    OK(tensor_from_data(v, s, 1, DTYPE_FLOAT32, &x));
    OK(ag_set_requires_grad(x, true));
    OK(ag_to_dtype(x, DTYPE_FLOAT64, &y));
    assert_string_equal(ag_grad_fn_name(y), "ToCopyBackward0");
    tensor *y2;
    OK(ag_binary_scalar(BINARY_MUL, y, 3.0, &y2));
    OK(ag_reduce_all(REDUCE_SUM, y2, &l));
    OK(ag_backward(l, NULL, false));
    assert_int_equal(x->grad->dtype, DTYPE_FLOAT32);
    for (int i = 0; i < 3; i++) assert_true(tensor_get(x->grad, i) == 3.0);
    tensor_release(l);
    tensor_release(y2);
    tensor_release(y);
    tensor_release(x);
}

/* ---- softmax family and losses ---------------------------------------------------- */

static ddp_status f_softmax(tensor *const *x, tensor **out) {
    return cur_keep ? ag_log_softmax(x[0], cur_dim, out) : ag_softmax(x[0], cur_dim, out);
}

static void test_softmax_family(void **state) {
    (void)state;
    spec sp[1] = {S3(2, 3, 4)};
    for (int log = 0; log < 2; log++)
        for (cur_dim = -3; cur_dim < 3; cur_dim++) {
            cur_keep = log;
            gradcheck(log ? "log_softmax" : "softmax", f_softmax, 1, sp);
        }
}

static loss_reduction cur_reduction;
static tensor *cur_target;

static ddp_status f_mse(tensor *const *x, tensor **out) {
    return ag_mse_loss(x[0], x[1], cur_reduction, out);
}
static ddp_status f_ce_index(tensor *const *x, tensor **out) {
    return ag_cross_entropy(x[0], cur_target, cur_reduction, out);
}
/* probability targets: softmax of a leaf, so the target's gradient is checked too */
static ddp_status f_ce_prob(tensor *const *x, tensor **out) {
    tensor *p;
    DDP_CHECK(ag_softmax(x[1], -1, &p));
    ddp_status s = ag_cross_entropy(x[0], p, cur_reduction, out);
    tensor_release(p);
    return s;
}

static void test_losses_gradcheck(void **state) {
    (void)state;
    int64_t classes[4] = {2, 0, 3, 1}, n4 = 4;
    tensor *idx, *idx0;
    OK(tensor_from_data(classes, &n4, 1, DTYPE_INT64, &idx));
    OK(tensor_scalar(2, DTYPE_INT64, &idx0));
    for (int r = 0; r < 3; r++) {
        cur_reduction = (loss_reduction)r;
        spec mse[2] = {S2(3, 4), S2(3, 4)};
        gradcheck("mse", f_mse, 2, mse);
        spec ce[1] = {S2(4, 5)};
        cur_target = idx;
        gradcheck("cross_entropy index", f_ce_index, 1, ce);
        spec one[1] = {S1(5)};
        cur_target = idx0;
        gradcheck("cross_entropy one sample", f_ce_index, 1, one);
        spec prob[2] = {S2(4, 5), S2(4, 5)};
        gradcheck("cross_entropy prob", f_ce_prob, 2, prob);
        spec prob1[2] = {S1(5), S1(5)};
        gradcheck("cross_entropy prob one sample", f_ce_prob, 2, prob1);
    }
    tensor_release(idx);
    tensor_release(idx0);
}

/* ---- engine rules ----------------------------------------------------------------- */

static tensor *leaf3(double a, double b, double c) {
    double v[3] = {a, b, c};
    int64_t n = 3;
    tensor *t;
    OK(tensor_from_data(v, &n, 1, DTYPE_FLOAT64, &t));
    OK(ag_set_requires_grad(t, true));
    return t;
}

/* loss = sum(x * x) */
static tensor *square_sum(tensor *x) {
    tensor *y, *l;
    OK(ag_binary(BINARY_MUL, x, x, &y));
    OK(ag_reduce_all(REDUCE_SUM, y, &l));
    tensor_release(y);
    return l;
}

static void test_accumulates_over_two_backwards(void **state) {
    (void)state;
    tensor *x = leaf3(1, 2, 3);
    for (int k = 0; k < 2; k++) {
        tensor *l = square_sum(x);
        OK(ag_backward(l, NULL, false));
        tensor_release(l);
    }
    for (int i = 0; i < 3; i++) assert_true(tensor_get(x->grad, i) == 4.0 * (i + 1));
    assert_int_equal(x->grad->dtype, DTYPE_FLOAT64);
    tensor_release(x);
}

/* The weight gradients of mm and linear go straight into .grad with an accumulating
 * GEMM: a second pass must add, not overwrite. */
static void test_weight_grads_accumulate(void **state) {
    (void)state;
    spec sx = S2(5, 3), sw = S2(4, 3), sb = S1(4);
    tensor *x = random_tensor(&sx), *w = random_tensor(&sw), *b = random_tensor(&sb);
    OK(ag_set_requires_grad(w, true));
    OK(ag_set_requires_grad(b, true));
    tensor *first = NULL;
    for (int k = 0; k < 3; k++) {
        tensor *y, *wt, *y2, *l1, *l2, *l;
        OK(ag_linear(x, w, b, &y));
        OK(ag_transpose(w, 0, 1, &wt));
        OK(ag_mm(x, wt, &y2)); /* the same product through mm of a view */
        OK(ag_reduce_all(REDUCE_SUM, y, &l1));
        OK(ag_reduce_all(REDUCE_SUM, y2, &l2));
        OK(ag_binary(BINARY_ADD, l1, l2, &l));
        OK(ag_backward(l, NULL, false));
        if (k == 0) OK(tensor_clone(w->grad, &first));
        tensor_release(l);
        tensor_release(l1);
        tensor_release(l2);
        tensor_release(y2);
        tensor_release(wt);
        tensor_release(y);
    }
    for (int64_t j = 0; j < tensor_numel(w); j++) {
        double want = 2.0 * (tensor_get(x, 0 * 3 + j % 3) + tensor_get(x, 1 * 3 + j % 3) +
                             tensor_get(x, 2 * 3 + j % 3) + tensor_get(x, 3 * 3 + j % 3) +
                             tensor_get(x, 4 * 3 + j % 3));
        assert_true(fabs(tensor_get(first, j) - want) < 1e-12);
        assert_true(fabs(tensor_get(w->grad, j) - 3 * want) < 1e-12);
    }
    for (int j = 0; j < 4; j++) assert_true(tensor_get(b->grad, j) == 15.0);
    tensor_release(first);
    tensor_release(x);
    tensor_release(w);
    tensor_release(b);
}

/* A backward may reuse a gradient buffer only when nothing else holds it: a gradient
 * the caller passed in must come out untouched, and a leaf must not adopt it. */
static void test_caller_gradient_is_not_overwritten(void **state) {
    (void)state;
    float xv[4] = {-1, 2, -3, 4}, gv[4] = {10, 20, 30, 40};
    int64_t n = 4;
    tensor *x, *g, *y;
    OK(tensor_from_data(xv, &n, 1, DTYPE_FLOAT32, &x));
    OK(tensor_from_data(gv, &n, 1, DTYPE_FLOAT32, &g));
    OK(ag_set_requires_grad(x, true));
    OK(ag_unary(UNARY_RELU, x, &y));
    OK(ag_backward(y, g, true));
    for (int i = 0; i < 4; i++) {
        assert_true(tensor_get(g, i) == gv[i]);
        assert_true(tensor_get(x->grad, i) == (xv[i] > 0 ? gv[i] : 0.0));
    }
    OK(ag_backward(x, g, false)); /* on the leaf itself: .grad += g, g kept */
    assert_ptr_not_equal(x->grad, g);
    assert_true(tensor_get(x->grad, 1) == 40.0 && tensor_get(g, 1) == 20.0);
    tensor_release(y);
    tensor_release(g);
    tensor_release(x);
}

static void test_retain_graph_and_freed_graph(void **state) {
    (void)state;
    tensor *x = leaf3(1, 2, 3);
    tensor *l = square_sum(x);
    OK(ag_backward(l, NULL, true));
    OK(ag_backward(l, NULL, false));
    for (int i = 0; i < 3; i++) assert_true(tensor_get(x->grad, i) == 4.0 * (i + 1));
    assert_int_equal(ag_backward(l, NULL, false), DDP_ERR_STATE);
    assert_non_null(strstr(ddp_last_error(), "backward through the graph a second time"));
    assert_non_null(strstr(ddp_last_error(), "retain_graph=true"));
    /* the grads were not touched by the failed pass */
    for (int i = 0; i < 3; i++) assert_true(tensor_get(x->grad, i) == 4.0 * (i + 1));
    tensor_release(l);
    tensor_release(x);
}

static void test_diamond_sums_incoming_grads(void **state) {
    (void)state;
    /* y = 2x; z = y*y + y; dz/dx = (2y + 1) * 2 = 8x + 2 */
    tensor *x = leaf3(1, -2, 0.5), *y, *yy, *z, *l;
    OK(ag_binary_scalar(BINARY_MUL, x, 2.0, &y));
    OK(ag_binary(BINARY_MUL, y, y, &yy));
    OK(ag_binary(BINARY_ADD, yy, y, &z));
    OK(ag_reduce_all(REDUCE_SUM, z, &l));
    OK(ag_backward(l, NULL, false));
    assert_null(y->grad); /* non-leaf tensors get no .grad */
    for (int i = 0; i < 3; i++) assert_true(tensor_get(x->grad, i) == 8.0 * tensor_get(x, i) + 2.0);
    tensor_release(l);
    tensor_release(z);
    tensor_release(yy);
    tensor_release(y);
    tensor_release(x);
}

static void test_explicit_grad_and_root_errors(void **state) {
    (void)state;
    tensor *x = leaf3(1, 2, 3), *y, *g;
    OK(ag_binary_scalar(BINARY_MUL, x, 3.0, &y));
    assert_int_equal(ag_backward(y, NULL, false), DDP_ERR_ARG);
    assert_non_null(strstr(ddp_last_error(), "grad can be implicitly created only for scalar"));
    int64_t n = 3;
    OK(tensor_full(&n, 1, DTYPE_FLOAT32, DEVICE_CPU_VALUE, 2.0, &g)); /* converted to f64 */
    OK(ag_backward(y, g, false));
    for (int i = 0; i < 3; i++) assert_true(tensor_get(x->grad, i) == 6.0);
    tensor *plain, *ones;
    OK(tensor_zeros(&n, 1, DTYPE_FLOAT64, DEVICE_CPU_VALUE, &plain));
    OK(tensor_full(&n, 1, DTYPE_FLOAT64, DEVICE_CPU_VALUE, 1.0, &ones));
    assert_int_equal(ag_backward(plain, ones, false), DDP_ERR_ARG);
    assert_non_null(strstr(ddp_last_error(), "does not require grad and does not have a grad_fn"));
    /* backward on a leaf accumulates into its own grad */
    OK(ag_backward(x, ones, false));
    for (int i = 0; i < 3; i++) assert_true(tensor_get(x->grad, i) == 7.0);
    tensor_release(ones);
    tensor_release(plain);
    tensor_release(g);
    tensor_release(y);
    tensor_release(x);
}

static void test_no_grad_records_nothing(void **state) {
    (void)state;
    tensor *x = leaf3(1, 2, 3), *y, *l;
    grad_mode_set(false);
    assert_false(grad_mode_enabled());
    OK(ag_binary(BINARY_MUL, x, x, &y));
    OK(ag_reduce_all(REDUCE_SUM, y, &l));
    grad_mode_set(true);
    assert_false(y->requires_grad);
    assert_null(y->grad_fn);
    assert_null(ag_grad_fn_name(l));
    assert_int_equal(ag_backward(l, NULL, false), DDP_ERR_ARG);
    tensor_release(l);
    tensor_release(y);
    /* inputs that do not require grad record nothing either */
    tensor *c;
    int64_t n = 3;
    OK(tensor_zeros(&n, 1, DTYPE_FLOAT64, DEVICE_CPU_VALUE, &c));
    OK(ag_unary(UNARY_EXP, c, &y));
    assert_false(y->requires_grad);
    tensor_release(y);
    tensor_release(c);
    tensor_release(x);
}

static void test_detach(void **state) {
    (void)state;
    tensor *x = leaf3(1, 2, 3), *y, *d;
    OK(ag_binary_scalar(BINARY_MUL, x, 2.0, &y));
    OK(ag_detach(y, &d));
    assert_false(d->requires_grad);
    assert_null(d->grad_fn);
    assert_ptr_equal(d->storage, y->storage);
    tensor_set(d, 0, 42.0);
    assert_true(tensor_get(y, 0) == 42.0); /* shares storage */
    OK(ag_check_inplace(d, "add_"));
    tensor_release(y); /* d outlives y and the node */
    assert_true(tensor_get(d, 1) == 4.0);
    tensor_release(d);
    tensor_release(x);
}

static void test_inplace_and_requires_grad_checks(void **state) {
    (void)state;
    tensor *x = leaf3(1, 2, 3), *y;
    assert_int_equal(ag_check_inplace(x, "add_"), DDP_ERR_ARG);
    assert_non_null(strstr(ddp_last_error(), "add_"));
    assert_non_null(strstr(ddp_last_error(), "leaf"));
    grad_mode_set(false);
    OK(ag_check_inplace(x, "add_")); /* what optimizers do under no_grad */
    grad_mode_set(true);
    OK(ag_unary(UNARY_TANH, x, &y));
    assert_int_equal(ag_check_inplace(y, "mul_"), DDP_ERR_ARG);
    assert_non_null(strstr(ddp_last_error(), "TanhBackward0"));
    assert_int_equal(ag_set_requires_grad(y, false), DDP_ERR_ARG);
    OK(ag_set_requires_grad(y, true));
    tensor *i;
    int64_t n = 2;
    OK(tensor_zeros(&n, 1, DTYPE_INT64, DEVICE_CPU_VALUE, &i));
    assert_int_equal(ag_set_requires_grad(i, true), DDP_ERR_ARG);
    assert_non_null(strstr(ddp_last_error(), "only floating point tensors"));
    OK(ag_set_requires_grad(i, false));
    OK(ag_check_inplace(i, "add_"));
    tensor_release(i);
    tensor_release(y);
    tensor_release(x);
}

static void test_deep_chain(void **state) {
    (void)state;
    /* 20k recorded ops: neither backward nor freeing the graph may recurse per op */
    tensor *x = leaf3(1, 2, 3);
    tensor *y = tensor_retain(x);
    const int n = 20000;
    for (int k = 0; k < n; k++) {
        tensor *z;
        OK(ag_binary_scalar(k % 2 ? BINARY_MUL : BINARY_ADD, y, k % 2 ? 1.0001 : 0.5, &z));
        tensor_release(y);
        y = z;
    }
    tensor *l;
    OK(ag_reduce_all(REDUCE_SUM, y, &l));
    tensor_release(y);
    OK(ag_backward(l, NULL, false));
    double want = pow(1.0001, n / 2);
    assert_true(fabs(tensor_get(x->grad, 2) - want) < 1e-9 * want);
    tensor_release(l);
    tensor_release(x);
}

static void test_grad_fn_names(void **state) {
    (void)state;
    tensor *x = leaf3(1, 2, 3), *t;
    OK(ag_binary(BINARY_ADD, x, x, &t));
    assert_string_equal(ag_grad_fn_name(t), "AddBackward0");
    tensor_release(t);
    OK(ag_scalar_binary(BINARY_SUB, 1.0, x, &t));
    assert_string_equal(ag_grad_fn_name(t), "RsubBackward1");
    tensor_release(t);
    OK(ag_binary_scalar(BINARY_POW, x, 2.0, &t));
    assert_string_equal(ag_grad_fn_name(t), "PowBackward0");
    tensor_release(t);
    OK(ag_unary(UNARY_RELU, x, &t));
    assert_string_equal(ag_grad_fn_name(t), "ReluBackward0");
    tensor_release(t);
    OK(ag_reduce_dim(REDUCE_MEAN, x, 0, false, &t));
    assert_string_equal(ag_grad_fn_name(t), "MeanBackward1");
    tensor_release(t);
    OK(ag_narrow(x, 0, 0, 2, &t));
    assert_string_equal(ag_grad_fn_name(t), "SliceBackward0");
    tensor_release(t);
    OK(ag_matmul(x, x, &t));
    assert_string_equal(ag_grad_fn_name(t), "DotBackward0");
    tensor_release(t);
    int64_t idx = 1;
    tensor *target;
    OK(tensor_scalar((double)idx, DTYPE_INT64, &target));
    OK(ag_cross_entropy(x, target, REDUCTION_MEAN, &t));
    assert_string_equal(ag_grad_fn_name(t), "NllLossBackward0");
    tensor_release(t);
    tensor_release(target);
    assert_null(ag_grad_fn_name(x));
    tensor_release(x);
}

int main(void) {
    generator_seed(&gen, 1234);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_binary_broadcast),
        cmocka_unit_test(test_binary_scalar_both_orders),
        cmocka_unit_test(test_unary),
        cmocka_unit_test(test_clamp),
        cmocka_unit_test(test_mixed_dtypes_and_integer_inputs),
        cmocka_unit_test(test_reductions),
        cmocka_unit_test(test_max_ties_share_gradient),
        cmocka_unit_test(test_matmul_shapes),
        cmocka_unit_test(test_linear),
        cmocka_unit_test(test_shape_ops),
        cmocka_unit_test(test_cat_stack),
        cmocka_unit_test(test_to_dtype_gradient),
        cmocka_unit_test(test_softmax_family),
        cmocka_unit_test(test_losses_gradcheck),
        cmocka_unit_test(test_accumulates_over_two_backwards),
        cmocka_unit_test(test_weight_grads_accumulate),
        cmocka_unit_test(test_caller_gradient_is_not_overwritten),
        cmocka_unit_test(test_retain_graph_and_freed_graph),
        cmocka_unit_test(test_diamond_sums_incoming_grads),
        cmocka_unit_test(test_explicit_grad_and_root_errors),
        cmocka_unit_test(test_no_grad_records_nothing),
        cmocka_unit_test(test_detach),
        cmocka_unit_test(test_inplace_and_requires_grad_checks),
        cmocka_unit_test(test_deep_chain),
        cmocka_unit_test(test_grad_fn_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
