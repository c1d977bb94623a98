/* test_nn_alloc.c — every path out of a failed allocation in autograd, the losses and
 * the optimizer step: a small training step (Linear, BatchNorm with a reducer, ReLU,
 * Linear, MSE + cross-entropy stacked with more than 4 terms, a gradient hook, the search for
 * reachable leaves, two backward passes accumulating into .grad, Adam's state made on first use and
 * its step) runs again and again with the k-th allocation failing (the seam in base/alloc.h), for
 * every k until the step needs no more. Each run either completes, with the numbers of a
 * run with memory to spare, or exactly one call fails with DDP_ERR_NOMEM and "out of
 * memory"; it never crashes. Leaks are LeakSanitizer's to find (the san label runs this
 * in the sanitizer build too). A second walk fails each allocation of a backward pass
 * that keeps its graph, then runs the pass again with memory to spare: the graph must
 * come out of the failure as it went in, and give the gradients of an undisturbed pass. */
#include "nn/autograd.h"
#include "nn/batchnorm.h"
#include "nn/optim.h"
#include "support/support_tensor_checks.h"

#include "base/alloc.h"

#include <math.h>
#include <stdlib.h>

/* One call of the step: fails the test for any outcome but OK or a clear NOMEM. */
static bool step_ok(ddp_status s, int *nomem) {
    if (s == DDP_OK) return true;
    if (s != DDP_ERR_NOMEM) fail_msg("status %d: %s", (int)s, ddp_last_error());
    const char *msg = ddp_last_error();
    assert_non_null(msg);
    if (!strstr(msg, "out of memory")) fail_msg("NOMEM without \"out of memory\": %s", msg);
    (*nomem)++;
    return false;
}

enum { P_W1, P_B1, P_GAMMA, P_BETA, P_W2, P_B2, N_PARAMS };

/* The model and the batch, made with memory to spare before each run. */
typedef struct {
    tensor *p[N_PARAMS];
    tensor *m[N_PARAMS], *v[N_PARAMS]; /* Adam's state, made by the step on first use */
    tensor *running_mean, *running_var;
    tensor *x, *target, *labels;
} model;

static int hook_calls;

static ddp_status count_hook(tensor *leaf, void *ctx) {
    (void)leaf;
    (*(int *)ctx)++;
    hook_calls++;
    return DDP_OK;
}

/* The reducer of a 1-process SyncBatchNorm: the sum over one process is the buffer. Its
 * context is the test's own allocation, which the op takes over whatever happens. */
static ddp_status sum_alone(void *ctx, double *buf, int64_t n) {
    (void)ctx, (void)buf, (void)n;
    return DDP_OK;
}

static void count_leaf(tensor *leaf, void *ctx) {
    (void)leaf;
    (*(int *)ctx)++;
}

static void model_make(model *md) {
    memset(md, 0, sizeof *md);
    int64_t s53[2] = {5, 3}, s5[1] = {5}, s25[2] = {2, 5}, s2[1] = {2}, s43[2] = {4, 3},
            s42[2] = {4, 2}, s4[1] = {4};
    md->p[P_W1] = randn_tensor(DTYPE_FLOAT32, s53, 2, 1);
    md->p[P_B1] = randn_tensor(DTYPE_FLOAT32, s5, 1, 2);
    md->p[P_GAMMA] = randn_tensor(DTYPE_FLOAT32, s5, 1, 3);
    md->p[P_BETA] = randn_tensor(DTYPE_FLOAT32, s5, 1, 4);
    md->p[P_W2] = randn_tensor(DTYPE_FLOAT32, s25, 2, 5);
    md->p[P_B2] = randn_tensor(DTYPE_FLOAT32, s2, 1, 6);
    for (int i = 0; i < N_PARAMS; i++) OK(ag_set_requires_grad(md->p[i], true));
    OK(tensor_zeros(s5, 1, DTYPE_FLOAT32, DEVICE_CPU_VALUE, &md->running_mean));
    OK(tensor_full(s5, 1, DTYPE_FLOAT32, DEVICE_CPU_VALUE, 1.0, &md->running_var));
    md->x = randn_tensor(DTYPE_FLOAT32, s43, 2, 7);
    md->target = randn_tensor(DTYPE_FLOAT32, s42, 2, 8);
    const double labels[4] = {0, 1, 1, 0};
    md->labels = make_tensor(DTYPE_INT64, s4, 1, labels);
}

static void model_free(model *md) {
    for (int i = 0; i < N_PARAMS; i++) {
        tensor_release(md->p[i]);
        tensor_release(md->m[i]);
        tensor_release(md->v[i]);
    }
    tensor_release(md->running_mean);
    tensor_release(md->running_var);
    tensor_release(md->x);
    tensor_release(md->target);
    tensor_release(md->labels);
}

/* loss = sum of [l, l1, l2, l1, l2], l = l1 + l2, l1 = mse(y, target), l2 =
 * cross_entropy(y, labels), y = linear(relu(bn(linear(x)))). */
static bool forward(model *md, tensor **loss, int *nomem) {
    tensor *h = NULL, *n = NULL, *r = NULL, *y = NULL, *l1 = NULL, *l2 = NULL, *sum = NULL,
           *stacked = NULL;
    int *bn_ctx = malloc(sizeof *bn_ctx);
    assert_non_null(bn_ctx);
    bn_reducer red = {.sum = sum_alone, .ctx = bn_ctx, .release = free};
    bool ok = step_ok(ag_linear(md->x, md->p[P_W1], md->p[P_B1], &h), nomem);
    if (ok)
        ok = step_ok(ag_batch_norm(h, md->p[P_GAMMA], md->p[P_BETA], md->running_mean,
                                   md->running_var, true, 0.1, 1e-5, &red, &n),
                     nomem);
    else
        free(bn_ctx); /* the op never ran to take it over */
    ok = ok && step_ok(ag_unary(UNARY_RELU, n, &r), nomem) &&
         step_ok(ag_linear(r, md->p[P_W2], md->p[P_B2], &y), nomem) &&
         step_ok(ag_mse_loss(y, md->target, REDUCTION_MEAN, &l1), nomem) &&
         step_ok(ag_cross_entropy(y, md->labels, REDUCTION_MEAN, &l2), nomem) &&
         step_ok(ag_binary(BINARY_ADD, l1, l2, &sum), nomem);
    /* an op of more than 4 inputs: the engine keeps their gradients on the heap */
    tensor *terms[5] = {sum, l1, l2, l1, l2};
    ok = ok && step_ok(ag_stack(terms, 5, 0, &stacked), nomem) &&
         step_ok(ag_reduce_all(REDUCE_SUM, stacked, loss), nomem);
    tensor *all[] = {h, n, r, y, l1, l2, sum, stacked};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) tensor_release(all[i]);
    return ok;
}

/* One training step with two micro-batches; returns how many calls failed for memory. */
static int run_step(model *md) {
    int nomem = 0, reached = 0;
    int *hook_ctx = malloc(sizeof *hook_ctx);
    assert_non_null(hook_ctx);
    *hook_ctx = 0;
    uint64_t id;
    bool ok = step_ok(ag_add_grad_hook(md->p[P_W1], count_hook, hook_ctx, free, &id), &nomem);
    for (int micro = 0; ok && micro < 2; micro++) {
        tensor *loss = NULL;
        ok = forward(md, &loss, &nomem) &&
             step_ok(ag_reachable_leaves(&loss, 1, count_leaf, &reached), &nomem) &&
             step_ok(ag_backward(loss, NULL, false), &nomem);
        tensor_release(loss);
    }
    for (int i = 0; ok && i < N_PARAMS; i++) {
        tensor *p = md->p[i];
        assert_non_null(p->grad);
        if (!md->m[i]) ok = step_ok(tensor_zeros_like(p, &md->m[i]), &nomem);
        if (ok && !md->v[i]) ok = step_ok(tensor_zeros_like(p, &md->v[i]), &nomem);
        if (ok) OK(adam_step(p, p->grad, md->m[i], md->v[i], 1, 1e-2, 0.9, 0.999, 1e-8, 0, false));
    }
    if (ok) assert_int_equal(reached, 2 * N_PARAMS); /* each leaf once per micro-batch */
    return nomem;
}

/* Sum of every parameter after the step, to compare a completed run with the reference. */
static double params_sum(const model *md) {
    double s = 0;
    for (int i = 0; i < N_PARAMS; i++) {
        tensor *t;
        OK(tensor_reduce_all(REDUCE_SUM, md->p[i], &t));
        s += item_of(t);
        tensor_release(t);
    }
    return s;
}

/* Runs the step once with the k-th allocation failing (0: none); returns the failures
 * and, when it completed, the parameters' sum in *sum. */
static int walk_once(long k, double *sum, long *count) {
    model md;
    model_make(&md);
    hook_calls = 0;
    ddp_alloc_fail_at(k);
    int failed = run_step(&md);
    if (count) *count = ddp_alloc_count();
    ddp_alloc_fail_at(0);
    if (!failed) {
        assert_int_equal(hook_calls, 2); /* once per backward pass */
        *sum = params_sum(&md);
    }
    model_free(&md);
    return failed;
}

static void test_every_allocation_of_a_step_can_fail(void **state) {
    (void)state;
    double reference = 0, sum = 0;
    long needed = 0;
    assert_int_equal(walk_once(0, &reference, &needed), 0); /* memory to spare */
    assert_true(needed > 50);
    print_message("training step: %ld allocations through the seam\n", needed);
    for (long k = 1; k <= needed; k++) {
        /* the k-th allocation was reached, so exactly one call said it ran out of memory */
        if (walk_once(k, &sum, NULL) != 1) fail_msg("allocation %ld: no call failed", k);
    }
    assert_int_equal(walk_once(needed + 1, &sum, NULL), 0); /* past the end: nothing fails */
    assert_true(sum == reference);
}

/* ---- a failed pass leaves the graph as it found it --------------------------------- */

#define CHAIN 80 /* more nodes than the engine's first work list holds (64) */

/* loss = mse(linear(x) * 1.01^CHAIN, target) with w and b leaves: a graph of CHAIN + 2
 * nodes, made with memory to spare. */
static tensor *chain_graph(model *md) {
    tensor *y;
    OK(ag_linear(md->x, md->p[P_W1], md->p[P_B1], &y));
    for (int i = 0; i < CHAIN; i++) {
        tensor *z;
        OK(ag_binary_scalar(BINARY_MUL, y, 1.01, &z));
        tensor_release(y);
        y = z;
    }
    int64_t s45[2] = {4, 5};
    tensor *target = randn_tensor(DTYPE_FLOAT32, s45, 2, 9), *loss;
    OK(ag_mse_loss(y, target, REDUCTION_MEAN, &loss));
    tensor_release(target);
    tensor_release(y);
    return loss;
}

static void drop_grads(model *md) {
    for (int i = 0; i < N_PARAMS; i++) {
        tensor_release(md->p[i]->grad);
        md->p[i]->grad = NULL;
    }
}

/* True when the two tensors hold the same values. */
static bool same_values(const tensor *a, const tensor *b) {
    tensor *d, *m;
    OK(tensor_binary(BINARY_SUB, a, b, &d));
    OK(tensor_unary(UNARY_ABS, d, &m));
    tensor *mx;
    OK(tensor_reduce_all(REDUCE_MAX, m, &mx));
    double v = item_of(mx);
    tensor_release(d);
    tensor_release(m);
    tensor_release(mx);
    return v == 0.0;
}

static void test_a_failed_pass_can_be_run_again(void **state) {
    (void)state;
    model md;
    model_make(&md);
    tensor *loss = chain_graph(&md);
    int reached = 0;
    ddp_alloc_fail_at(0);
    OK(ag_reachable_leaves(&loss, 1, count_leaf, &reached));
    long search_needs = ddp_alloc_count();
    assert_int_equal(reached, 2);
    ddp_alloc_fail_at(0);
    OK(ag_backward(loss, NULL, true));
    long backward_needs = ddp_alloc_count();
    tensor *ref_w = tensor_retain(md.p[P_W1]->grad), *ref_b = tensor_retain(md.p[P_B1]->grad);
    drop_grads(&md);
    print_message("search for leaves: %ld allocations, backward pass: %ld\n", search_needs,
                  backward_needs);
    assert_true(search_needs >= 2 && backward_needs > CHAIN);

    for (long k = 1; k <= search_needs; k++) { /* find_unused_parameters' search */
        int nomem = 0;
        reached = 0;
        ddp_alloc_fail_at(k);
        bool ok = step_ok(ag_reachable_leaves(&loss, 1, count_leaf, &reached), &nomem);
        ddp_alloc_fail_at(0);
        assert_false(ok);
        reached = 0;
        OK(ag_reachable_leaves(&loss, 1, count_leaf, &reached));
        if (reached != 2)
            fail_msg("search failed at allocation %ld: then found %d leaves", k, reached);
    }
    for (long k = 1; k <= backward_needs; k++) {
        int nomem = 0;
        ddp_alloc_fail_at(k);
        bool ok = step_ok(ag_backward(loss, NULL, true), &nomem);
        ddp_alloc_fail_at(0);
        assert_false(ok);
        drop_grads(&md); /* a failed pass may have written some of them */
        OK(ag_backward(loss, NULL, true));
        if (!md.p[P_W1]->grad || !same_values(md.p[P_W1]->grad, ref_w) || !md.p[P_B1]->grad ||
            !same_values(md.p[P_B1]->grad, ref_b))
            fail_msg("backward failed at allocation %ld: the next pass got other gradients", k);
        drop_grads(&md);
    }
    tensor_release(ref_w);
    tensor_release(ref_b);
    tensor_release(loss);
    model_free(&md);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_allocation_of_a_step_can_fail),
        cmocka_unit_test(test_a_failed_pass_can_be_run_again),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
