/* test_nn_optim.c — sgd_step and adam_step against the update formulas of optim.h
 * computed by hand here, three steps each with a different gradient per step: SGD plain,
 * SGD with momentum + nesterov + weight decay, SGD with dampening, Adam with L2 weight
 * decay, AdamW with decoupled decay; in float64 (tight) and float32 (to float rounding);
 * adam_steps / sgd_steps over many parameters against one call each; and the argument
 * errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <string.h>

#include "nn/optim.h"
#include "support/support_tensor_checks.h"

#define N 7
#define STEPS 3

static double grad_at(int step, int i) {
    return sin(1.0 + i * 0.7 + step * 1.3) * (i % 2 ? 3.0 : 0.2);
}
static double param0(int i) {
    return cos(0.5 + i) * 2.0;
}

typedef struct {
    tensor *p, *g, *a, *b; /* param, grad, state buffers */
} set;

static set make_set(dtype dt) {
    set s;
    int64_t n = N;
    OK(tensor_zeros(&n, 1, dt, DEVICE_CPU_VALUE, &s.p));
    OK(tensor_zeros(&n, 1, dt, DEVICE_CPU_VALUE, &s.g));
    OK(tensor_zeros(&n, 1, dt, DEVICE_CPU_VALUE, &s.a));
    OK(tensor_zeros(&n, 1, dt, DEVICE_CPU_VALUE, &s.b));
    for (int i = 0; i < N; i++) tensor_set(s.p, i, param0(i));
    return s;
}

static void free_set(set *s) {
    tensor_release(s->p);
    tensor_release(s->g);
    tensor_release(s->a);
    tensor_release(s->b);
}

static void load_grad(set *s, int step) {
    for (int i = 0; i < N; i++) tensor_set(s->g, i, grad_at(step, i));
}

static void expect_params(const set *s, const double *want, double rtol) {
    for (int i = 0; i < N; i++) {
        double got = tensor_get(s->p, i);
        if (fabs(got - want[i]) > rtol * (1e-3 + fabs(want[i])))
            fail_msg("param %d: got %.12g, want %.12g", i, got, want[i]);
    }
}

typedef struct {
    double lr, momentum, dampening, wd;
    bool nesterov;
} sgd_cfg;

/* torch.optim.SGD by hand, in double */
static void sgd_reference(const sgd_cfg *c, double *p) {
    double buf[N];
    for (int i = 0; i < N; i++) p[i] = param0(i);
    for (int k = 1; k <= STEPS; k++)
        for (int i = 0; i < N; i++) {
            double d = grad_at(k, i) + c->wd * p[i];
            if (c->momentum != 0) {
                buf[i] = k == 1 ? d : c->momentum * buf[i] + (1 - c->dampening) * d;
                d = c->nesterov ? d + c->momentum * buf[i] : buf[i];
            }
            p[i] -= c->lr * d;
        }
}

static void run_sgd(const sgd_cfg *c) {
    double want[N];
    sgd_reference(c, want);
    for (int d = 0; d < 2; d++) {
        set s = make_set(d ? DTYPE_FLOAT32 : DTYPE_FLOAT64);
        for (int k = 1; k <= STEPS; k++) {
            load_grad(&s, k);
            OK(sgd_step(s.p, s.g, c->momentum != 0 ? s.a : NULL, c->lr, c->momentum, c->dampening,
                        c->wd, c->nesterov, k == 1));
        }
        expect_params(&s, want, d ? 1e-6 : 1e-13);
        free_set(&s);
    }
}

static void test_sgd_plain(void **state) {
    (void)state;
    sgd_cfg c = {.lr = 0.1};
    run_sgd(&c);
}

static void test_sgd_momentum_nesterov_weight_decay(void **state) {
    (void)state;
    sgd_cfg c = {.lr = 0.05, .momentum = 0.9, .wd = 0.01, .nesterov = true};
    run_sgd(&c);
}

static void test_sgd_momentum_dampening(void **state) {
    (void)state;
    sgd_cfg c = {.lr = 0.05, .momentum = 0.8, .dampening = 0.3};
    run_sgd(&c);
}

/* torch.optim.Adam / AdamW by hand, in double */
static void adam_reference(double lr, double b1, double b2, double eps, double wd, bool decoupled,
                           double *p) {
    double m[N] = {0}, v[N] = {0};
    for (int i = 0; i < N; i++) p[i] = param0(i);
    for (int k = 1; k <= STEPS; k++)
        for (int i = 0; i < N; i++) {
            double g = grad_at(k, i);
            if (decoupled)
                p[i] *= 1 - lr * wd;
            else
                g += wd * p[i];
            m[i] = b1 * m[i] + (1 - b1) * g;
            v[i] = b2 * v[i] + (1 - b2) * g * g;
            double bc1 = 1 - pow(b1, k), bc2 = 1 - pow(b2, k);
            p[i] -= lr / bc1 * m[i] / (sqrt(v[i]) / sqrt(bc2) + eps);
        }
}

static void run_adam(bool decoupled) {
    const double lr = 1e-2, b1 = 0.9, b2 = 0.999, eps = 1e-8, wd = 0.01;
    double want[N];
    adam_reference(lr, b1, b2, eps, wd, decoupled, want);
    for (int d = 0; d < 2; d++) {
        set s = make_set(d ? DTYPE_FLOAT32 : DTYPE_FLOAT64);
        for (int k = 1; k <= STEPS; k++) {
            load_grad(&s, k);
            OK(adam_step(s.p, s.g, s.a, s.b, k, lr, b1, b2, eps, wd, decoupled));
        }
        expect_params(&s, want, d ? 1e-6 : 1e-13);
        /* the state is PyTorch's: exp_avg of the last step is b1 m + (1 - b1) g */
        assert_true(tensor_get(s.a, 0) != 0.0 && tensor_get(s.b, 0) > 0.0);
        free_set(&s);
    }
}

static void test_adam_weight_decay(void **state) {
    (void)state;
    run_adam(false);
}

static void test_adamw_weight_decay(void **state) {
    (void)state;
    run_adam(true);
}

static void test_adam_and_adamw_differ(void **state) {
    (void)state;
    double a[N], w[N];
    adam_reference(1e-2, 0.9, 0.999, 1e-8, 0.1, false, a);
    adam_reference(1e-2, 0.9, 0.999, 1e-8, 0.1, true, w);
    bool differ = false;
    for (int i = 0; i < N; i++) differ |= fabs(a[i] - w[i]) > 1e-6;
    assert_true(differ); /* the two decays are really different updates */
}

/* adam_steps and sgd_steps over many parameters (float32 and float64 mixed, different
 * step counts, so several runs) give, bit for bit, what one call per parameter gives;
 * and a bad parameter anywhere in the list stops the step before any is updated. */
static void test_many_equal_one_by_one(void **state) {
    (void)state;
    enum { K = 5 };
    set many[K], one[K];
    optim_param ps[K];
    for (int k = 0; k < K; k++) {
        dtype dt = k % 2 ? DTYPE_FLOAT64 : DTYPE_FLOAT32;
        many[k] = make_set(dt);
        one[k] = make_set(dt);
        load_grad(&many[k], k);
        load_grad(&one[k], k);
        int64_t step = 1 + (k >= 3); /* two step counts */
        ps[k] = (optim_param){.param = many[k].p,
                              .grad = many[k].g,
                              .exp_avg = many[k].a,
                              .exp_avg_sq = many[k].b,
                              .step = step,
                              .momentum_buf = many[k].a,
                              .first_step = k < 2};
        OK(adam_step(one[k].p, one[k].g, one[k].a, one[k].b, step, 0.01, 0.9, 0.99, 1e-8, 0.1,
                     k == 4));
    }
    /* AdamW's decoupled flag is per call: run parameter 4 on its own, as above */
    OK(adam_steps(ps, 4, 0.01, 0.9, 0.99, 1e-8, 0.1, false));
    OK(adam_steps(ps + 4, 1, 0.01, 0.9, 0.99, 1e-8, 0.1, true));
    for (int k = 0; k < K; k++) {
        assert_true(tensor_equal(many[k].p, one[k].p));
        assert_true(tensor_equal(many[k].a, one[k].a));
        assert_true(tensor_equal(many[k].b, one[k].b));
        assert_int_equal(many[k].p->storage->version, one[k].p->storage->version);
    }
    for (int k = 0; k < K; k++) {
        OK(sgd_step(one[k].p, one[k].g, one[k].a, 0.05, 0.9, 0.1, 0.01, true, k < 2));
    }
    OK(sgd_steps(ps, K, 0.05, 0.9, 0.1, 0.01, true));
    for (int k = 0; k < K; k++) {
        assert_true(tensor_equal(many[k].p, one[k].p));
        assert_true(tensor_equal(many[k].a, one[k].a));
    }
    /* a wrong gradient near the end: nothing before it moves */
    tensor *before;
    OK(tensor_clone(many[0].p, &before));
    ps[K - 2].grad = many[0].g; /* float32 for a float64 parameter */
    ERR_CONTAINS(adam_steps(ps, K, 0.01, 0.9, 0.99, 1e-8, 0.0, false), DDP_ERR_ARG,
                 "the gradient is float32");
    assert_true(tensor_equal(many[0].p, before));
    tensor_release(before);
    for (int k = 0; k < K; k++) {
        free_set(&many[k]);
        free_set(&one[k]);
    }
}

static void test_argument_errors(void **state) {
    (void)state;
    set s = make_set(DTYPE_FLOAT32);
    tensor *other, *wide, *t;
    int64_t n3 = 3, n2[2] = {N, 2};
    OK(tensor_zeros(&n3, 1, DTYPE_FLOAT32, DEVICE_CPU_VALUE, &other));
    assert_int_equal(sgd_step(s.p, other, NULL, 0.1, 0, 0, 0, false, true), DDP_ERR_ARG);
    assert_non_null(strstr(ddp_last_error(), "(3)"));
    assert_non_null(strstr(ddp_last_error(), "(7)"));
    assert_int_equal(sgd_step(s.p, s.g, NULL, 0.1, 0.9, 0, 0, false, true), DDP_ERR_ARG);
    assert_non_null(strstr(ddp_last_error(), "momentum"));
    OK(tensor_zeros(n2, 2, DTYPE_FLOAT32, DEVICE_CPU_VALUE, &wide));
    OK(tensor_select(wide, 1, 0, &t)); /* (7) with stride 2: not contiguous */
    assert_int_equal(adam_step(s.p, t, s.a, s.b, 1, 1e-3, 0.9, 0.999, 1e-8, 0, false), DDP_ERR_ARG);
    assert_non_null(strstr(ddp_last_error(), "contiguous"));
    assert_int_equal(adam_step(s.p, s.g, s.a, s.b, 0, 1e-3, 0.9, 0.999, 1e-8, 0, false),
                     DDP_ERR_ARG);
    tensor *d;
    int64_t n = N;
    OK(tensor_zeros(&n, 1, DTYPE_FLOAT64, DEVICE_CPU_VALUE, &d));
    assert_int_equal(adam_step(s.p, s.g, d, s.b, 1, 1e-3, 0.9, 0.999, 1e-8, 0, true), DDP_ERR_ARG);
    assert_non_null(strstr(ddp_last_error(), "float64"));
    tensor_release(d);
    tensor_release(t);
    tensor_release(wide);
    tensor_release(other);
    free_set(&s);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sgd_plain),
        cmocka_unit_test(test_sgd_momentum_nesterov_weight_decay),
        cmocka_unit_test(test_sgd_momentum_dampening),
        cmocka_unit_test(test_adam_weight_decay),
        cmocka_unit_test(test_adamw_weight_decay),
        cmocka_unit_test(test_adam_and_adamw_differ),
        cmocka_unit_test(test_many_equal_one_by_one),
        cmocka_unit_test(test_argument_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
