/* test_nn_grad_hooks.c — the gradient-ready hooks (ag_add_grad_hook), as PyTorch's
 * post-accumulate-grad hooks: a hook runs once per backward pass for a leaf, after the
 * leaf's last use in the graph has added its share (whichever path wrote it: the fused
 * GEMM of linear/mm or the engine's +=), in the order the pass finishes leaves (the last
 * layer first); not for a leaf the pass does not reach; removal (also from inside a
 * hook) stops it; a failing hook stops the pass; the context is freed with the leaf. */
#include "nn/autograd.h"
#include "support/support_tensor_checks.h"

#include <math.h>
#include <stdlib.h>

#define assert_double_equal(a, b, eps)                                                             \
    assert_true(fabs((double)(a) - (double)(b)) <= (eps) + 1e-6 * fabs((double)(b)))

#define MAX_CALLS 16

/* What the hooks saw: which leaf (by tag) and the sum of its .grad at that moment. */
typedef struct {
    int n;
    int tag[MAX_CALLS];
    double grad_sum[MAX_CALLS];
    int freed;
} record;

typedef struct {
    record *r;
    int tag;
    bool fail;         /* return an error */
    tensor *remove_on; /* remove hook `remove_id` of this leaf when called */
    uint64_t remove_id;
} hook_ctx;

static double sum_of(const tensor *t) {
    tensor *s;
    OK(tensor_reduce_all(REDUCE_SUM, t, &s));
    double v = item_of(s);
    tensor_release(s);
    return v;
}

static ddp_status note(tensor *leaf, void *p) {
    hook_ctx *c = p;
    record *r = c->r;
    if (r->n < MAX_CALLS) {
        r->tag[r->n] = c->tag;
        r->grad_sum[r->n] = leaf->grad ? sum_of(leaf->grad) : 0.0;
        r->n++;
    }
    if (c->remove_on) ag_remove_grad_hook(c->remove_on, c->remove_id);
    if (c->fail) return DDP_FAIL(DDP_ERR_STATE, "hook %d says no", c->tag);
    return DDP_OK;
}

static void ctx_free(void *p) {
    hook_ctx *c = p;
    c->r->freed++;
    free(c);
}

static uint64_t add_hook(tensor *leaf, record *r, int tag) {
    hook_ctx *c = calloc(1, sizeof *c);
    c->r = r;
    c->tag = tag;
    uint64_t id;
    OK(ag_add_grad_hook(leaf, note, c, ctx_free, &id));
    return id;
}

static tensor *randn(int64_t rows, int64_t cols, uint64_t seed, bool requires_grad) {
    int64_t sizes[2] = {rows, cols};
    tensor *t = randn_tensor(DTYPE_FLOAT32, sizes, cols ? 2 : 1, seed);
    if (requires_grad) OK(ag_set_requires_grad(t, true));
    return t;
}

/* loss = sum(linear(x, w) + x @ w^T): w is used twice (the fused GEMM path and mm's); its
 * hook runs once, seeing the final gradient. */
static void test_runs_once_after_last_use(void **state) {
    (void)state;
    record r = {0};
    tensor *x = randn(4, 3, 1, false), *w = randn(5, 3, 2, true), *b = randn(5, 0, 3, true);
    add_hook(w, &r, 1);
    add_hook(b, &r, 2);
    tensor *y1, *wt, *y2, *s, *loss;
    OK(ag_linear(x, w, b, &y1));
    OK(ag_transpose(w, 0, 1, &wt));
    OK(ag_mm(x, wt, &y2));
    OK(ag_binary(BINARY_ADD, y1, y2, &s));
    OK(ag_reduce_all(REDUCE_SUM, s, &loss));
    OK(ag_backward(loss, NULL, true));
    assert_int_equal(r.n, 2);
    int wi = r.tag[0] == 1 ? 0 : 1;
    assert_int_equal(r.tag[wi], 1);
    assert_double_equal(r.grad_sum[wi], sum_of(w->grad), 1e-9);
    assert_double_equal(r.grad_sum[1 - wi], 4.0 * 5, 1e-9); /* b's grad: ones summed over 4 rows */
    /* a second pass (retain_graph) runs them again, on the accumulated gradient */
    OK(ag_backward(loss, NULL, false));
    assert_int_equal(r.n, 4);
    assert_double_equal(r.grad_sum[2 + wi], sum_of(w->grad), 1e-9);
    assert_double_equal(r.grad_sum[3 - wi], 2 * 4.0 * 5, 1e-6);
    tensor *all[] = {x, y1, wt, y2, s, loss};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) tensor_release(all[i]);
    assert_int_equal(r.freed, 0);
    tensor_release(w);
    tensor_release(b);
    assert_int_equal(r.freed, 2); /* the contexts go with their leaves */
}

/* Two layers: the second layer's weight is final first (reverse order, as DDP expects);
 * a leaf the pass does not reach gets no call. */
static void test_order_and_unreached(void **state) {
    (void)state;
    record r = {0};
    tensor *x = randn(4, 3, 4, false), *w1 = randn(6, 3, 5, true), *w2 = randn(2, 6, 6, true);
    tensor *unused = randn(2, 2, 7, true);
    add_hook(w1, &r, 1);
    add_hook(w2, &r, 2);
    add_hook(unused, &r, 3);
    tensor *h, *a, *y, *loss;
    OK(ag_linear(x, w1, NULL, &h));
    OK(ag_unary(UNARY_RELU, h, &a));
    OK(ag_linear(a, w2, NULL, &y));
    OK(ag_reduce_all(REDUCE_SUM, y, &loss));
    OK(ag_backward(loss, NULL, false));
    assert_int_equal(r.n, 2);
    assert_int_equal(r.tag[0], 2);
    assert_int_equal(r.tag[1], 1);
    assert_null(unused->grad);
    tensor *all[] = {x, w1, w2, unused, h, a, y, loss};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) tensor_release(all[i]);
    assert_int_equal(r.freed, 3);
}

/* Removed hooks stop; a hook may remove itself; a failing hook fails the pass. */
static void test_remove_and_fail(void **state) {
    (void)state;
    record r = {0};
    tensor *w = randn(3, 0, 8, true);
    uint64_t a = add_hook(w, &r, 1);
    hook_ctx *self = calloc(1, sizeof *self);
    self->r = &r;
    self->tag = 2;
    self->remove_on = w;
    uint64_t b;
    OK(ag_add_grad_hook(w, note, self, ctx_free, &b));
    self->remove_id = b; /* removes itself while it runs */
    tensor *y, *loss;
    OK(ag_binary_scalar(BINARY_MUL, w, 3.0, &y));
    OK(ag_reduce_all(REDUCE_SUM, y, &loss));
    OK(ag_backward(loss, NULL, true));
    assert_int_equal(r.n, 2);
    assert_int_equal(r.freed, 1); /* the self-removed one, swept after the run */
    assert_true(ag_remove_grad_hook(w, a));
    assert_false(ag_remove_grad_hook(w, a));
    assert_false(ag_remove_grad_hook(w, b));
    assert_int_equal(r.freed, 2);
    OK(ag_backward(loss, NULL, true));
    assert_int_equal(r.n, 2); /* nothing left to call */
    hook_ctx *bad = calloc(1, sizeof *bad);
    bad->r = &r;
    bad->tag = 3;
    bad->fail = true;
    uint64_t c;
    OK(ag_add_grad_hook(w, note, bad, ctx_free, &c));
    ERR_CONTAINS(ag_backward(loss, NULL, false), DDP_ERR_STATE, "hook 3 says no");
    tensor_release(y);
    tensor_release(loss);
    tensor_release(w);
    assert_int_equal(r.freed, 3);
}

/* backward on a leaf itself runs its hooks; hooks only go on leaves that need grad. */
static void test_leaf_root_and_refusals(void **state) {
    (void)state;
    record r = {0};
    tensor *w = randn(1, 0, 9, true), *plain = randn(2, 0, 10, false), *y;
    add_hook(w, &r, 1);
    OK(ag_backward(w, NULL, false));
    assert_int_equal(r.n, 1);
    assert_double_equal(r.grad_sum[0], 1.0, 0);
    uint64_t id;
    hook_ctx *c = calloc(1, sizeof *c);
    c->r = &r;
    ERR_CONTAINS(ag_add_grad_hook(plain, note, c, ctx_free, &id), DDP_ERR_ARG,
                 "doesn't require gradient");
    assert_int_equal(r.freed, 1); /* a refused context is freed too */
    OK(ag_binary_scalar(BINARY_MUL, w, 2.0, &y));
    c = calloc(1, sizeof *c);
    c->r = &r;
    ERR_CONTAINS(ag_add_grad_hook(y, note, c, ctx_free, &id), DDP_ERR_ARG, "non-leaf");
    tensor_release(y);
    tensor_release(plain);
    tensor_release(w);
    assert_int_equal(r.freed, 3);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_runs_once_after_last_use),
        cmocka_unit_test(test_order_and_unreached),
        cmocka_unit_test(test_remove_and_fail),
        cmocka_unit_test(test_leaf_root_and_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
