/* ag_linalg.c — the recorded matrix products (mm, matmul in all of torch.matmul's
 * shapes, linear with and without bias) and the softmax family. Backward passes of mm
 * and linear run as GEMMs with the transposes folded into the BLAS call
 * (tensor_gemm_); batched matmul goes through tensor_matmul, and the engine sums the
 * gradient of a broadcast batch dim down to the input's shape. */
#include "nn/autograd_internal.h"

/* out = op(x) @ op(y) for 2-D x, y, op = transpose when tx / ty. One GEMM when both
 * share a float dtype; otherwise through tensor_mm (which promotes). */
static ddp_status mm_op(bool tx, bool ty, const tensor *x, const tensor *y, tensor **out) {
    *out = NULL;
    if (x->dtype != y->dtype || !dtype_is_float(x->dtype)) {
        tensor *xt = NULL, *yt = NULL;
        ddp_status s = tx ? tensor_transpose(x, 0, 1, &xt) : DDP_OK;
        if (s == DDP_OK && ty) s = tensor_transpose(y, 0, 1, &yt);
        if (s == DDP_OK) s = tensor_mm(xt ? xt : x, yt ? yt : y, out);
        tensor_release(xt);
        tensor_release(yt);
        return s;
    }
    int64_t sizes[2] = {tx ? x->sizes[1] : x->sizes[0], ty ? y->sizes[0] : y->sizes[1]};
    tensor *c;
    DDP_CHECK(tensor_empty(sizes, 2, x->dtype, x->storage->device, &c));
    ddp_status s = tensor_gemm_(tx, ty, 1.0, x, y, 0.0, c); /* beta 0: c is not read */
    if (s != DDP_OK) {
        tensor_release(c);
        return s;
    }
    *out = c;
    return DDP_OK;
}

/* For an input that is a leaf (a weight), op(x) @ op(y) goes straight into its .grad
 * through the engine's one leaf-writing path (ag_accumulate_leaf: one accumulating GEMM,
 * the engine's leaf.grad += g fused). *done says whether it could. */
static ddp_status mm_into_leaf(const ag_edge *e, bool tx, bool ty, const tensor *x, const tensor *y,
                               bool *done) {
    *done = false;
    if (!e->leaf) return DDP_OK;
    ag_leaf_grad u = {.g = NULL, .tx = tx, .ty = ty, .x = x, .y = y};
    return ag_accumulate_leaf(e->leaf, &u, done);
}

/* a (n x k) @ b (k x m): ga = g @ b^T, gb = a^T @ g */
static ddp_status mm_backward(ag_node *n, const tensor *g, tensor **gi) {
    const tensor *a = n->saved[0], *b = n->saved[1];
    bool done = false;
    if (n->edges[0].needed) DDP_CHECK(mm_into_leaf(&n->edges[0], false, true, g, b, &done));
    if (n->edges[0].needed && !done) DDP_CHECK(mm_op(false, true, g, b, &gi[0]));
    if (n->edges[1].needed) DDP_CHECK(mm_into_leaf(&n->edges[1], true, false, a, g, &done));
    if (n->edges[1].needed && !done) DDP_CHECK(mm_op(true, false, a, g, &gi[1]));
    return DDP_OK;
}

/* What mm_backward reads (see ag_save): b for a's gradient, a for b's. */
static void save_mm_operands(ag_node *n, const tensor *a, const tensor *b) {
    if (n->edges[1].needed) ag_save(n, 0, a);
    if (n->edges[0].needed) ag_save(n, 1, b);
}

ddp_status ag_mm(const tensor *a, const tensor *b, tensor **out) {
    tensor *y;
    *out = NULL;
    DDP_CHECK(tensor_mm(a, b, &y));
    const tensor *in[2] = {a, b};
    ag_node *n;
    ddp_status s = ag_record("MmBackward0", mm_backward, in, 2, y, out, &n);
    if (s != DDP_OK || !n) return s;
    save_mm_operands(n, a, b);
    return DDP_OK;
}

/* torch.matmul in general: a 1-D a is a row (1 x k), a 1-D b a column (k x 1), and
 * g gets the matching unit dims back. ga = g @ b^T and gb = a^T @ g (batched,
 * broadcast; the engine sums broadcast batch dims down), with the unit dims squeezed
 * away again for 1-D inputs. */
static ddp_status matmul_backward(ag_node *n, const tensor *g, tensor **gi) {
    const tensor *a = n->saved[0], *b = n->saved[1];
    bool a1 = a->ndim == 1, b1 = b->ndim == 1;
    tensor *A = NULL, *B = NULL, *G = NULL, *G1 = NULL, *T = NULL, *R = NULL;
    int64_t m2 = -2, m1 = -1;
    ddp_status s = a1 ? tensor_unsqueeze(a, 0, &A) : DDP_OK;
    if (s == DDP_OK && b1) s = tensor_unsqueeze(b, 1, &B);
    /* g lost a's row dim (at -2, or at 0 for dot's 0-dim g) and b's column dim (-1) */
    if (s == DDP_OK && a1) s = tensor_unsqueeze(g, b1 ? 0 : -2, &G1);
    if (s == DDP_OK && b1) s = tensor_unsqueeze(G1 ? G1 : g, -1, &G);
    const tensor *Ap = A ? A : a, *Bp = B ? B : b, *Gp = G ? G : G1 ? G1 : g;
    if (s == DDP_OK && n->edges[0].needed) { /* (.., n, m) @ (.., m, k) */
        s = tensor_transpose(Bp, -1, -2, &T);
        if (s == DDP_OK) s = tensor_matmul(Gp, T, &R);
        if (s == DDP_OK) s = a1 ? tensor_squeeze(R, &m2, &gi[0]) : DDP_OK;
        if (s == DDP_OK && !a1) gi[0] = tensor_retain(R);
        tensor_release(T);
        tensor_release(R);
        T = R = NULL;
    }
    if (s == DDP_OK && n->edges[1].needed) { /* (.., k, n) @ (.., n, m) */
        s = tensor_transpose(Ap, -1, -2, &T);
        if (s == DDP_OK) s = tensor_matmul(T, Gp, &R);
        if (s == DDP_OK) s = b1 ? tensor_squeeze(R, &m1, &gi[1]) : DDP_OK;
        if (s == DDP_OK && !b1) gi[1] = tensor_retain(R);
        tensor_release(T);
        tensor_release(R);
    }
    tensor_release(A);
    tensor_release(B);
    tensor_release(G);
    tensor_release(G1);
    return s;
}

/* PyTorch's grad_fn name for torch.matmul of an-D by bn-D operands. */
static const char *matmul_name(int an, int bn) {
    if (an == 1 && bn == 1) return "DotBackward0";
    if (an == 2 && bn == 1) return "MvBackward0";
    if (an == 2 && bn == 2) return "MmBackward0";
    if (an == 1 && bn == 2) return "SqueezeBackward3"; /* PyTorch: (1 x k) @ B, squeezed */
    return "UnsafeViewBackward0";                      /* batched */
}

ddp_status ag_matmul(const tensor *a, const tensor *b, tensor **out) {
    tensor *y;
    *out = NULL;
    DDP_CHECK(tensor_matmul(a, b, &y));
    const tensor *in[2] = {a, b};
    bool plain = a->ndim == 2 && b->ndim == 2;
    ag_node *n;
    ddp_status s = ag_record(matmul_name(a->ndim, b->ndim), plain ? mm_backward : matmul_backward,
                             in, 2, y, out, &n);
    if (s != DDP_OK || !n) return s;
    if (plain) { /* matmul_backward reads both operands' shapes */
        save_mm_operands(n, a, b);
    } else {
        ag_save(n, 0, a);
        ag_save(n, 1, b);
    }
    return DDP_OK;
}

/* y = x @ w^T + b, x (.., in) seen as (M x in): gx = g @ w, gw = g^T @ x, gb = sum of
 * g over the M rows. saved: x when w needs its gradient, w when x does (shapes come from
 * the edges). */
static ddp_status linear_backward(ag_node *n, const tensor *g, tensor **gi) {
    const tensor *x = n->saved[0], *w = n->saved[1];
    const ag_edge *ex = &n->edges[0];
    int64_t out_f = n->edges[1].sizes[0], in_f = n->edges[1].sizes[1];
    int64_t m = out_f == 0 ? 0 : tensor_numel(g) / out_f;
    int64_t g2s[2] = {m, out_f}, x2s[2] = {m, in_f};
    tensor *g2 = NULL, *x2 = NULL, *gx2 = NULL;
    ddp_status s = tensor_reshape(g, g2s, 2, &g2);
    if (s == DDP_OK && n->edges[0].needed) {
        s = mm_op(false, false, g2, w, &gx2);
        if (s == DDP_OK) s = tensor_view(gx2, ex->sizes, ex->ndim, &gi[0]);
    }
    if (s == DDP_OK && n->edges[1].needed) {
        bool done = false;
        s = tensor_reshape(x, x2s, 2, &x2);
        if (s == DDP_OK) s = mm_into_leaf(&n->edges[1], true, false, g2, x2, &done);
        if (s == DDP_OK && !done) s = mm_op(true, false, g2, x2, &gi[1]);
    }
    if (s == DDP_OK && n->n_edges > 2 && n->edges[2].needed)
        s = tensor_reduce_dim(REDUCE_SUM, g2, 0, false, &gi[2]);
    tensor_release(g2);
    tensor_release(x2);
    tensor_release(gx2);
    return s;
}

ddp_status ag_linear(const tensor *x, const tensor *w, const tensor *b, tensor **out) {
    tensor *y;
    *out = NULL;
    DDP_CHECK(tensor_linear(x, w, b, &y));
    const tensor *in[3] = {x, w, b};
    const char *name = x->ndim == 2   ? (b ? "AddmmBackward0" : "MmBackward0")
                       : x->ndim == 1 ? (b ? "AddBackward0" : "MvBackward0")
                                      : (b ? "ViewBackward0" : "UnsafeViewBackward0");
    ag_node *n;
    ddp_status s = ag_record(name, linear_backward, in, b ? 3 : 2, y, out, &n);
    if (s != DDP_OK || !n) return s;
    if (n->edges[1].needed) ag_save(n, 0, x);
    if (n->edges[0].needed) ag_save(n, 1, w);
    return DDP_OK;
}

/* softmax: gx = y * (g - sum(g * y, dim)); log_softmax: gx = g - exp(y) * sum(g, dim).
 * saved[0] is the detached output y. */
static ddp_status softmax_backward(ag_node *n, const tensor *g, tensor **gi) {
    const tensor *y = n->saved[0];
    tensor *t = NULL, *sum = NULL, *u = NULL;
    ddp_status s;
    if (n->flag) { /* log_softmax */
        s = tensor_reduce_dim(REDUCE_SUM, g, n->dim, true, &sum);
        if (s == DDP_OK) s = tensor_unary(UNARY_EXP, y, &t);
        if (s == DDP_OK) s = tensor_binary(BINARY_MUL, t, sum, &u);
        if (s == DDP_OK) s = tensor_binary(BINARY_SUB, g, u, &gi[0]);
    } else {
        s = tensor_binary(BINARY_MUL, g, y, &t);
        if (s == DDP_OK) s = tensor_reduce_dim(REDUCE_SUM, t, n->dim, true, &sum);
        if (s == DDP_OK) s = tensor_binary(BINARY_SUB, g, sum, &u);
        if (s == DDP_OK) s = tensor_binary(BINARY_MUL, y, u, &gi[0]);
    }
    tensor_release(t);
    tensor_release(sum);
    tensor_release(u);
    return s;
}

/* Records softmax or log_softmax around y, saving y itself (detached). */
static ddp_status record_softmax(const char *name, bool log, const tensor *t, int64_t dim,
                                 tensor *y, tensor **out) {
    ag_node *n;
    ddp_status s = ag_record(name, softmax_backward, &t, 1, y, out, &n);
    if (s == DDP_OK && n) {
        n->dim = dim;
        n->flag = log;
        s = ag_save_output(n, 0, y);
        if (s != DDP_OK) tensor_release(y);
    }
    if (s != DDP_OK) *out = NULL;
    return s;
}

ddp_status ag_softmax(const tensor *t, int64_t dim, tensor **out) {
    tensor *y;
    *out = NULL;
    DDP_CHECK(tensor_softmax(t, dim, &y));
    return record_softmax("SoftmaxBackward0", false, t, dim, y, out);
}

ddp_status ag_log_softmax(const tensor *t, int64_t dim, tensor **out) {
    tensor *y;
    *out = NULL;
    DDP_CHECK(tensor_log_softmax(t, dim, &y));
    return record_softmax("LogSoftmaxBackward0", true, t, dim, y, out);
}
