/* test_nn_version.c — autograd's version check, as PyTorch's: a backward pass refuses
 * to run over a tensor that its graph saved and that was changed in place since (the
 * message names the tensor as PyTorch does, with both versions); a node saves only what
 * its formula reads for the gradients needed, so changing anything else is no error;
 * the optimizer steps count their writes; a normal loop of forward, backward, step
 * passes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "nn/autograd.h"
#include "support/support_tensor_checks.h"
#include "nn/optim.h"

static ddp_generator gen;

/* A (rows x cols) float32 tensor of normal values (at version 0 once filled). */
static tensor *randn(int64_t rows, int64_t cols, bool requires_grad) {
    int64_t sizes[2] = {rows, cols};
    tensor *t;
    OK(tensor_empty(sizes, 2, DTYPE_FLOAT32, DEVICE_CPU_VALUE, &t));
    OK(tensor_normal_(t, 0.0, 1.0, &gen));
    t->storage->version = 0; /* as torch.randn leaves it (the binding does the same) */
    if (requires_grad) OK(ag_set_requires_grad(t, true));
    return t;
}

/* y = (w * x):sum(); x:mul_(2) under no_grad; y:backward() fails with PyTorch's words. */
static void test_changed_input_fails_backward(void **state) {
    (void)state;
    tensor *w = randn(10, 5, true), *x = randn(10, 5, false), *wx, *y;
    OK(ag_binary(BINARY_MUL, w, x, &wx));
    OK(ag_reduce_all(REDUCE_SUM, wx, &y));
    grad_mode_set(false);
    OK(tensor_binary_scalar_(BINARY_MUL, x, 2.0));
    grad_mode_set(true);
    assert_int_equal(ag_backward(y, NULL, false), DDP_ERR_STATE);
    const char *msg = ddp_last_error();
    assert_non_null(strstr(msg, "one of the variables needed for gradient computation has been "
                                "modified by an inplace operation: [torch.FloatTensor [10, 5]] is "
                                "at version 1; expected version 0 instead. Hint:"));
    assert_non_null(strstr(msg, "opt:step()"));
    assert_null(w->grad); /* nothing was accumulated */
    tensor_release(w);
    tensor_release(x);
    tensor_release(wx);
    tensor_release(y);
}

/* A saved output changed through a detached alias is named as PyTorch names it. */
static void test_changed_output_is_named(void **state) {
    (void)state;
    tensor *x = randn(2, 3, true), *e, *d, *y;
    OK(ag_unary(UNARY_EXP, x, &e)); /* saves its output */
    OK(ag_reduce_all(REDUCE_SUM, e, &y));
    OK(ag_detach(e, &d));
    OK(tensor_fill_(d, 0.0));
    assert_int_equal(ag_backward(y, NULL, false), DDP_ERR_STATE);
    assert_non_null(strstr(ddp_last_error(),
                           "[torch.FloatTensor [2, 3]], which is output 0 of ExpBackward0, is at "
                           "version 1; expected version 0 instead"));
    tensor *all[] = {x, e, d, y};
    for (size_t i = 0; i < 4; i++) tensor_release(all[i]);
}

/* Only what a gradient needs is saved: x + w reads neither; x * w with x not requiring
 * grad reads x only; a Linear on an input without grad reads the input only (as
 * PyTorch's addmm), so changing the weight (an optimizer step) is no error there. */
static void test_unneeded_tensors_may_change(void **state) {
    (void)state;
    tensor *w = randn(4, 3, true), *x = randn(2, 3, false), *b = randn(1, 4, true);
    tensor *sum, *ys, *prod, *yp, *lin, *yl;
    OK(ag_binary(BINARY_ADD, x, x, &sum));
    OK(ag_linear(x, w, NULL, &lin));
    OK(ag_reduce_all(REDUCE_SUM, lin, &yl));
    tensor *w2 = randn(2, 3, true);
    OK(ag_binary(BINARY_MUL, w2, x, &prod));
    OK(ag_reduce_all(REDUCE_SUM, prod, &yp));
    OK(ag_binary(BINARY_ADD, b, b, &ys));
    grad_mode_set(false);
    OK(tensor_fill_(w, 0.5));  /* the Linear's weight: not read by its backward */
    OK(tensor_fill_(w2, 0.5)); /* w2 in w2 * x: only x is read */
    OK(tensor_fill_(b, 0.5));  /* b + b reads nothing */
    grad_mode_set(true);
    OK(ag_backward(yl, NULL, false));
    OK(ag_backward(yp, NULL, false));
    tensor *ysum;
    OK(ag_reduce_all(REDUCE_SUM, ys, &ysum));
    OK(ag_backward(ysum, NULL, false));
    assert_non_null(w->grad);
    assert_non_null(w2->grad);
    assert_non_null(b->grad);
    tensor *all[] = {w, x, b, sum, ys, prod, yp, lin, yl, w2, ysum};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) tensor_release(all[i]);
}

/* Two Linear layers: the second one saves the first's weight-dependent activation and
 * its own weight; an SGD step between forward and backward is refused. */
static void test_step_between_forward_and_backward(void **state) {
    (void)state;
    tensor *x = randn(3, 5, false), *w1 = randn(10, 5, true), *w2 = randn(4, 10, true);
    tensor *h, *r, *o, *loss;
    OK(ag_linear(x, w1, NULL, &h));
    OK(ag_unary(UNARY_RELU, h, &r));
    OK(ag_linear(r, w2, NULL, &o));
    OK(ag_reduce_all(REDUCE_MEAN, o, &loss));
    tensor *g;
    OK(tensor_zeros_like(w2, &g));
    OK(sgd_step(w2, g, NULL, 0.1, 0.0, 0.0, 0.0, false, true));
    assert_int_equal(tensor_version(w2), 1);
    assert_int_equal(ag_backward(loss, NULL, false), DDP_ERR_STATE);
    assert_non_null(strstr(ddp_last_error(), "[torch.FloatTensor [4, 10]] is at version 1; "
                                             "expected version 0 instead"));
    tensor *all[] = {x, w1, w2, h, r, o, loss, g};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) tensor_release(all[i]);
}

/* forward, backward, step, three times over: no error, and the steps counted. */
static void test_training_loop_passes(void **state) {
    (void)state;
    tensor *x = randn(3, 5, false), *w = randn(2, 5, true), *m, *v;
    OK(tensor_zeros_like(w, &m));
    OK(tensor_zeros_like(w, &v));
    for (int step = 1; step <= 3; step++) {
        tensor *h, *r, *y;
        OK(ag_linear(x, w, NULL, &h));
        OK(ag_unary(UNARY_TANH, h, &r));
        OK(ag_reduce_all(REDUCE_SUM, r, &y));
        OK(ag_backward(y, NULL, false));
        OK(adam_step(w, w->grad, m, v, step, 1e-3, 0.9, 0.999, 1e-8, 0.0, false));
        tensor_release(h);
        tensor_release(r);
        tensor_release(y);
    }
    assert_int_equal(tensor_version(w), 3);
    assert_int_equal(tensor_version(m), 3);
    assert_int_equal(tensor_version(v), 3);
    tensor_release(x);
    tensor_release(w);
    tensor_release(m);
    tensor_release(v);
}

int main(void) {
    generator_seed(&gen, 7);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_changed_input_fails_backward),
        cmocka_unit_test(test_changed_output_is_named),
        cmocka_unit_test(test_unneeded_tensors_may_change),
        cmocka_unit_test(test_step_between_forward_and_backward),
        cmocka_unit_test(test_training_loop_passes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
