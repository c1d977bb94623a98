/* ag_elementwise.c — the recorded element-wise ops and reductions: binary arithmetic
 * (tensor-tensor with broadcasting, and both scalar orders), unary math, clamp, and
 * sum / mean / norm / max / min over all elements or one dim, with their backward
 * formulas (PyTorch's, from derivatives.yaml). Gradients flowing into a broadcast input
 * are returned in the output's shape; the engine sums them down (autograd.c). Also
 * holds ag_pointwise, the general element loop used by formulas no tensor op covers; it
 * runs on the host, so for CUDA tensors it copies its inputs over and its result back
 * (correct and slow: those formulas get kernels of their own later). */
#include "nn/autograd_internal.h"

#include <math.h>
#include <stdlib.h>

/* ---- ag_pointwise ----------------------------------------------------------------- */

/* Contiguous float CPU tensor with x broadcast to sizes; int64/bool are read as float64.
 * A CUDA tensor comes across to the host (see ag_pointwise). */
static ddp_status materialize(const tensor *x, const int64_t *sizes, int ndim, tensor **out) {
    *out = NULL;
    tensor *e, *c;
    DDP_CHECK(tensor_expand(x, sizes, ndim, &e));
    dtype dt = dtype_is_float(x->dtype) ? x->dtype : DTYPE_FLOAT64;
    ddp_status s = tensor_to_device(e, DEVICE_CPU_VALUE, dt, &c);
    tensor_release(e);
    DDP_CHECK(s);
    s = tensor_contiguous(c, out);
    tensor_release(c);
    return s;
}

/* Element i of a contiguous float32/float64 block, as double. */
static double load(const tensor *t, const void *base, int64_t i) {
    return t->dtype == DTYPE_FLOAT32 ? (double)((const float *)base)[i] : ((const double *)base)[i];
}

ddp_status ag_pointwise(const tensor *const *xs, int k, const int64_t *sizes, int ndim, dtype dt,
                        ag_pointwise_fn f, const double *params, tensor **out) {
    *out = NULL;
    tensor *m[4] = {NULL, NULL, NULL, NULL};
    tensor *o = NULL;
    ddp_status s = DDP_OK;
    for (int j = 0; j < k && s == DDP_OK; j++) s = materialize(xs[j], sizes, ndim, &m[j]);
    if (s == DDP_OK) s = tensor_empty(sizes, ndim, dt, DEVICE_CPU_VALUE, &o);
    if (s == DDP_OK) {
        const void *base[4];
        for (int j = 0; j < k; j++) base[j] = tensor_data(m[j]);
        void *ob = tensor_data(o);
        int64_t n = tensor_numel(o);
        double v[4];
        for (int64_t i = 0; i < n; i++) {
            for (int j = 0; j < k; j++) v[j] = load(m[j], base[j], i);
            double r = f(v, params);
            if (dt == DTYPE_FLOAT32)
                ((float *)ob)[i] = (float)r;
            else
                ((double *)ob)[i] = r;
        }
        /* on the inputs' device (the same copy is a no-op for CPU inputs) */
        s = tensor_to_device(o, xs[0]->storage->device, dt, out);
    }
    for (int j = 0; j < k; j++) tensor_release(m[j]);
    tensor_release(o);
    return s;
}

/* ---- small helpers for backward formulas ------------------------------------------ */

/* out = (a op1 b) op2 c, releasing the intermediate. */
static ddp_status bin2(binary_op op1, const tensor *a, const tensor *b, binary_op op2,
                       const tensor *c, tensor **out) {
    tensor *t;
    DDP_CHECK(tensor_binary(op1, a, b, &t));
    ddp_status s = tensor_binary(op2, t, c, out);
    tensor_release(t);
    return s;
}

/* ---- pointwise formulas (x[0] is always the incoming gradient) -------------------- */

/* relu: g where the output is positive; x = {g, y} */
static double pw_relu(const double *x, const double *p) {
    (void)p;
    return x[1] > 0 ? x[0] : 0.0;
}
/* tanh: g (1 - y^2); x = {g, y} */
static double pw_tanh(const double *x, const double *p) {
    (void)p;
    return x[0] * (1.0 - x[1] * x[1]);
}
/* sigmoid: g y (1 - y); x = {g, y} */
static double pw_sigmoid(const double *x, const double *p) {
    (void)p;
    return x[0] * x[1] * (1.0 - x[1]);
}
/* p = {has_lo, lo, has_hi, hi} */
static double pw_clamp(const double *x, const double *p) {
    bool in = (p[0] == 0 || x[1] >= p[1]) && (p[2] == 0 || x[1] <= p[3]);
    return in ? x[0] : 0.0;
}
/* d/da a^s = s a^(s-1); p = {s} */
static double pw_pow_base(const double *x, const double *p) {
    return p[0] == 0.0 ? 0.0 : x[0] * p[0] * pow(x[1], p[0] - 1.0);
}
/* d/db a^b = a^b log a, taken as 0 where a == 0 and b >= 0; x = {g, out, a, b} */
static double pw_pow_exp(const double *x, const double *p) {
    (void)p;
    if (x[2] == 0.0 && x[3] >= 0.0) return 0.0;
    return x[0] * x[1] * log(x[2]);
}
/* d/da a^b = b a^(b-1); x = {g, a, b} */
static double pw_pow_base_t(const double *x, const double *p) {
    (void)p;
    return x[2] == 0.0 ? 0.0 : x[0] * x[2] * pow(x[1], x[2] - 1.0);
}
/* max/min: the whole gradient where this side wins, half on a tie; x = {g, self, other},
 * p = {+1 for maximum, -1 for minimum} */
static double pw_pick(const double *x, const double *p) {
    double d = (x[1] - x[2]) * p[0];
    return d > 0 ? x[0] : d == 0 ? 0.5 * x[0] : 0.0;
}
/* s / a: -g s / a^2; p = {s} */
static double pw_rdiv(const double *x, const double *p) {
    return -x[0] * p[0] / (x[1] * x[1]);
}
/* norm: g a / norm, 0 where norm == 0; x = {g, a, norm} */
static double pw_norm(const double *x, const double *p) {
    (void)p;
    return x[2] == 0.0 ? 0.0 : x[0] * x[1] / x[2];
}
/* max/min over all: g / count where a == result; x = {g, a, result}, p = {count} */
static double pw_even(const double *x, const double *p) {
    return x[1] == x[2] ? x[0] / p[0] : 0.0;
}
/* max/min along a dim: g where the position is the chosen index; x = {g, idx, iota} */
static double pw_index(const double *x, const double *p) {
    (void)p;
    return x[1] == x[2] ? x[0] : 0.0;
}

/* ---- binary ----------------------------------------------------------------------- */

static const char *binary_name(binary_op op) {
    switch (op) {
    case BINARY_ADD:
        return "AddBackward0";
    case BINARY_SUB:
        return "SubBackward0";
    case BINARY_MUL:
        return "MulBackward0";
    case BINARY_DIV:
        return "DivBackward0";
    case BINARY_POW:
        return "PowBackward1";
    case BINARY_MAXIMUM:
        return "MaximumBackward0";
    case BINARY_MINIMUM:
        return "MinimumBackward0";
    default:
        return NULL; /* comparisons: not differentiable */
    }
}

/* saved: a, b, out (pow only) */
static ddp_status binary_backward(ag_node *n, const tensor *g, tensor **gi) {
    const tensor *a = n->saved[0], *b = n->saved[1];
    bool na = n->edges[0].needed, nb = n->edges[1].needed;
    ddp_status s = DDP_OK;
    switch ((binary_op)n->op) {
    case BINARY_ADD:
    case BINARY_SUB:
        if (na) gi[0] = tensor_retain((tensor *)g);
        if (nb && n->op == BINARY_ADD) gi[1] = tensor_retain((tensor *)g);
        if (nb && n->op == BINARY_SUB) s = tensor_unary(UNARY_NEG, g, &gi[1]);
        return s;
    case BINARY_MUL:
        if (na) s = tensor_binary(BINARY_MUL, g, b, &gi[0]);
        if (nb && s == DDP_OK) s = tensor_binary(BINARY_MUL, g, a, &gi[1]);
        return s;
    case BINARY_DIV:
        if (na) s = tensor_binary(BINARY_DIV, g, b, &gi[0]);
        if (nb && s == DDP_OK) { /* -g a / b^2 */
            tensor *t, *bb;
            DDP_CHECK(bin2(BINARY_MUL, g, a, BINARY_DIV, b, &t));
            s = tensor_binary(BINARY_DIV, t, b, &bb);
            tensor_release(t);
            DDP_CHECK(s);
            s = tensor_unary(UNARY_NEG, bb, &gi[1]);
            tensor_release(bb);
        }
        return s;
    case BINARY_POW: {
        const tensor *y = n->saved[2];
        if (na) {
            const tensor *xs[3] = {g, a, b};
            s = ag_pointwise(xs, 3, g->sizes, g->ndim, g->dtype, pw_pow_base_t, NULL, &gi[0]);
        }
        if (nb && s == DDP_OK) {
            const tensor *xs[4] = {g, y, a, b};
            s = ag_pointwise(xs, 4, g->sizes, g->ndim, g->dtype, pw_pow_exp, NULL, &gi[1]);
        }
        return s;
    }
    case BINARY_MAXIMUM:
    case BINARY_MINIMUM: {
        double sign = n->op == BINARY_MAXIMUM ? 1.0 : -1.0;
        if (na) {
            const tensor *xs[3] = {g, a, b};
            s = ag_pointwise(xs, 3, g->sizes, g->ndim, g->dtype, pw_pick, &sign, &gi[0]);
        }
        if (nb && s == DDP_OK) {
            const tensor *xs[3] = {g, b, a};
            s = ag_pointwise(xs, 3, g->sizes, g->ndim, g->dtype, pw_pick, &sign, &gi[1]);
        }
        return s;
    }
    default:
        return DDP_FAIL(DDP_ERR_STATE, "backward: %s has no gradient", n->name);
    }
}

ddp_status ag_binary(binary_op op, const tensor *a, const tensor *b, tensor **out) {
    tensor *y;
    *out = NULL;
    DDP_CHECK(tensor_binary(op, a, b, &y));
    *out = y;
    const char *name = binary_name(op);
    if (!name) return DDP_OK;
    const tensor *in[2] = {a, b};
    ag_node *n;
    ddp_status s = ag_record(name, binary_backward, in, 2, y, out, &n);
    if (s != DDP_OK || !n) return s;
    n->op = (int)op;
    /* only what binary_backward reads for the gradients needed (see ag_save): add and
     * sub read nothing, mul the other operand, div b (and a for b's gradient) */
    bool na = n->edges[0].needed, nb = n->edges[1].needed;
    if (op == BINARY_MUL) {
        if (nb) ag_save(n, 0, a);
        if (na) ag_save(n, 1, b);
    } else if (op == BINARY_DIV) {
        if (nb) ag_save(n, 0, a);
        ag_save(n, 1, b);
    } else if (op != BINARY_ADD && op != BINARY_SUB) {
        ag_save(n, 0, a);
        ag_save(n, 1, b);
    }
    if (op == BINARY_POW) s = ag_save_output(n, 2, y);
    if (s != DDP_OK) {
        tensor_release(y);
        *out = NULL;
    }
    return s;
}

/* saved: a, out (for s ^ a); scalar = s, flag = scalar first (s op a) */
static ddp_status scalar_backward(ag_node *n, const tensor *g, tensor **gi) {
    const tensor *a = n->saved[0];
    double sc = n->scalar;
    bool rev = n->flag;
    switch ((binary_op)n->op) {
    case BINARY_ADD:
        gi[0] = tensor_retain((tensor *)g);
        return DDP_OK;
    case BINARY_SUB:
        if (!rev) {
            gi[0] = tensor_retain((tensor *)g);
            return DDP_OK;
        }
        return tensor_unary(UNARY_NEG, g, &gi[0]);
    case BINARY_MUL:
        return tensor_binary_scalar(BINARY_MUL, g, sc, &gi[0]);
    case BINARY_DIV: {
        if (!rev) return tensor_binary_scalar(BINARY_DIV, g, sc, &gi[0]);
        const tensor *xs[2] = {g, a};
        return ag_pointwise(xs, 2, g->sizes, g->ndim, g->dtype, pw_rdiv, &sc, &gi[0]);
    }
    case BINARY_POW: {
        if (!rev) {
            const tensor *xs[2] = {g, a};
            return ag_pointwise(xs, 2, g->sizes, g->ndim, g->dtype, pw_pow_base, &sc, &gi[0]);
        }
        tensor *base;
        DDP_CHECK(tensor_full(NULL, 0, DTYPE_FLOAT64, a->storage->device, sc, &base));
        const tensor *xs[4] = {g, n->saved[1], base, a};
        ddp_status s = ag_pointwise(xs, 4, g->sizes, g->ndim, g->dtype, pw_pow_exp, NULL, &gi[0]);
        tensor_release(base);
        return s;
    }
    case BINARY_MAXIMUM:
    case BINARY_MINIMUM: {
        double sign = n->op == BINARY_MAXIMUM ? 1.0 : -1.0;
        tensor *other;
        DDP_CHECK(tensor_full(NULL, 0, DTYPE_FLOAT64, a->storage->device, sc, &other));
        const tensor *xs[3] = {g, a, other};
        ddp_status s = ag_pointwise(xs, 3, g->sizes, g->ndim, g->dtype, pw_pick, &sign, &gi[0]);
        tensor_release(other);
        return s;
    }
    default:
        return DDP_FAIL(DDP_ERR_STATE, "backward: %s has no gradient", n->name);
    }
}

/* PyTorch's grad_fn name for a op s (rev false) or s op a (rev true). */
static const char *scalar_name(binary_op op, bool rev) {
    if (rev && op == BINARY_SUB) return "RsubBackward1";
    if (rev && op == BINARY_DIV) return "MulBackward0"; /* PyTorch: s / a = a.reciprocal() * s */
    if (!rev && op == BINARY_POW) return "PowBackward0";
    return binary_name(op);
}

/* Records the node of a tensor-scalar op around its output y (see ag_record). */
static ddp_status record_scalar(binary_op op, const tensor *a, double sc, bool rev, tensor *y,
                                tensor **out) {
    *out = y;
    const char *name = scalar_name(op, rev);
    if (!name) return DDP_OK;
    ag_node *n;
    ddp_status s = ag_record(name, scalar_backward, &a, 1, y, out, &n);
    if (s != DDP_OK || !n) return s;
    n->op = (int)op;
    n->scalar = sc;
    n->flag = rev;
    /* a is read by s / a, pow, maximum and minimum only (see ag_save) */
    if ((op == BINARY_DIV && rev) || op == BINARY_POW || op == BINARY_MAXIMUM ||
        op == BINARY_MINIMUM)
        ag_save(n, 0, a);
    if (rev && op == BINARY_POW) s = ag_save_output(n, 1, y);
    if (s != DDP_OK) {
        tensor_release(y);
        *out = NULL;
    }
    return s;
}

ddp_status ag_binary_scalar(binary_op op, const tensor *a, double s, tensor **out) {
    tensor *y;
    *out = NULL;
    DDP_CHECK(tensor_binary_scalar(op, a, s, &y));
    return record_scalar(op, a, s, false, y, out);
}

ddp_status ag_scalar_binary(binary_op op, double s, const tensor *a, tensor **out) {
    tensor *y;
    *out = NULL;
    DDP_CHECK(tensor_scalar_binary(op, s, a, &y));
    return record_scalar(op, a, s, true, y, out);
}

/* ---- unary and clamp -------------------------------------------------------------- */

/* ReLU's gradient mask, with a direct loop for the common contiguous float32 case,
 * written over g itself when the engine holds the only reference to it. */
static ddp_status relu_backward(const tensor *g, const tensor *y, tensor **out) {
    if (g->dtype == DTYPE_FLOAT32 && y->dtype == DTYPE_FLOAT32 && tensor_same_shape(g, y) &&
        tensor_is_contiguous(g) && tensor_is_contiguous(y) &&
        g->storage->device.type == DEVICE_CPU) {
        if (ag_grad_is_exclusive(g))
            *out = tensor_retain((tensor *)g);
        else
            DDP_CHECK(tensor_empty_like(g, out));
        const float *gp = tensor_data(g), *yp = tensor_data(y);
        float *op = tensor_data(*out);
        int64_t n = tensor_numel(g);
        for (int64_t i = 0; i < n; i++) op[i] = yp[i] > 0.0f ? gp[i] : 0.0f;
        return DDP_OK;
    }
    const tensor *xs[2] = {g, y};
    return ag_pointwise(xs, 2, g->sizes, g->ndim, g->dtype, pw_relu, NULL, out);
}

/* saved[0]: the input (log, abs) or a detached output (sqrt, exp, relu, tanh, sigmoid) */
static ddp_status unary_backward(ag_node *n, const tensor *g, tensor **gi) {
    const tensor *x = n->saved[0];
    switch ((unary_op)n->op) {
    case UNARY_NEG:
        return tensor_unary(UNARY_NEG, g, &gi[0]);
    case UNARY_SQRT: { /* g / (2 sqrt(a)) */
        tensor *t;
        DDP_CHECK(tensor_binary(BINARY_DIV, g, x, &t));
        ddp_status s = tensor_binary_scalar(BINARY_MUL, t, 0.5, &gi[0]);
        tensor_release(t);
        return s;
    }
    case UNARY_EXP:
        return tensor_binary(BINARY_MUL, g, x, &gi[0]);
    case UNARY_LOG:
        return tensor_binary(BINARY_DIV, g, x, &gi[0]);
    case UNARY_ABS: {
        tensor *sg;
        DDP_CHECK(tensor_unary(UNARY_SIGN, x, &sg));
        ddp_status s = tensor_binary(BINARY_MUL, g, sg, &gi[0]);
        tensor_release(sg);
        return s;
    }
    case UNARY_RELU:
        return relu_backward(g, x, &gi[0]);
    case UNARY_TANH: {
        const tensor *xs[2] = {g, x};
        return ag_pointwise(xs, 2, g->sizes, g->ndim, g->dtype, pw_tanh, NULL, &gi[0]);
    }
    case UNARY_SIGMOID: {
        const tensor *xs[2] = {g, x};
        return ag_pointwise(xs, 2, g->sizes, g->ndim, g->dtype, pw_sigmoid, NULL, &gi[0]);
    }
    case UNARY_SIGN:
        return tensor_zeros_like(g, &gi[0]);
    default:
        return DDP_FAIL(DDP_ERR_STATE, "backward: %s has no gradient", n->name);
    }
}

/* PyTorch's grad_fn name of a unary op. */
static const char *unary_name(unary_op op) {
    switch (op) {
    case UNARY_NEG:
        return "NegBackward0";
    case UNARY_SQRT:
        return "SqrtBackward0";
    case UNARY_EXP:
        return "ExpBackward0";
    case UNARY_LOG:
        return "LogBackward0";
    case UNARY_ABS:
        return "AbsBackward0";
    case UNARY_RELU:
        return "ReluBackward0";
    case UNARY_TANH:
        return "TanhBackward0";
    case UNARY_SIGMOID:
        return "SigmoidBackward0";
    case UNARY_SIGN:
        return "SignBackward0";
    default:
        return "UnaryBackward0";
    }
}

ddp_status ag_unary(unary_op op, const tensor *a, tensor **out) {
    tensor *y;
    *out = NULL;
    DDP_CHECK(tensor_unary(op, a, &y));
    ag_node *n;
    ddp_status s = ag_record(unary_name(op), unary_backward, &a, 1, y, out, &n);
    if (s != DDP_OK || !n) return s;
    n->op = (int)op;
    if (op == UNARY_LOG || op == UNARY_ABS)
        ag_save(n, 0, a);
    else if (op != UNARY_NEG && op != UNARY_SIGN)
        s = ag_save_output(n, 0, y);
    if (s != DDP_OK) {
        tensor_release(y);
        *out = NULL;
    }
    return s;
}

/* The gradient passes where the input was inside [lo, hi] (bounds included). */
static ddp_status clamp_backward(ag_node *n, const tensor *g, tensor **gi) {
    double p[4] = {n->flag, n->scalar, n->flag2, n->scalar2};
    const tensor *xs[2] = {g, n->saved[0]};
    return ag_pointwise(xs, 2, g->sizes, g->ndim, g->dtype, pw_clamp, p, &gi[0]);
}

ddp_status ag_clamp(const tensor *a, bool has_lo, double lo, bool has_hi, double hi, tensor **out) {
    tensor *y;
    *out = NULL;
    DDP_CHECK(tensor_clamp(a, has_lo, lo, has_hi, hi, &y));
    ag_node *n;
    ddp_status s = ag_record("ClampBackward1", clamp_backward, &a, 1, y, out, &n);
    if (s != DDP_OK || !n) return s;
    n->flag = has_lo;
    n->scalar = lo;
    n->flag2 = has_hi;
    n->scalar2 = hi;
    ag_save(n, 0, a);
    return DDP_OK;
}

/* ---- reductions ------------------------------------------------------------------- */

/* g reshaped so that it broadcasts against the input: a reduced dim put back as size 1
 * when it was not kept (dim < 0: a reduction over everything, g is 0-dim). */
static ddp_status unreduce(const ag_node *n, const tensor *g, tensor **out) {
    if (n->dim < 0 || n->flag) return tensor_expand(g, g->sizes, g->ndim, out);
    return tensor_unsqueeze(g, n->dim, out);
}

/* saved: input (norm, max, min), detached output (norm, max/min all), indices (max dim) */
static ddp_status reduce_backward(ag_node *n, const tensor *g, tensor **gi) {
    const ag_edge *e = &n->edges[0];
    tensor *gu;
    DDP_CHECK(unreduce(n, g, &gu));
    ddp_status s = DDP_OK;
    switch ((reduce_op)n->op) {
    case REDUCE_SUM:
        s = tensor_expand(gu, e->sizes, e->ndim, &gi[0]);
        break;
    case REDUCE_MEAN: {
        tensor *t;
        s = tensor_binary_scalar(BINARY_DIV, gu, n->scalar, &t);
        if (s == DDP_OK) s = tensor_expand(t, e->sizes, e->ndim, &gi[0]);
        tensor_release(t);
        break;
    }
    case REDUCE_NORM: {
        tensor *yu = NULL;
        s = unreduce(n, n->saved[1], &yu);
        const tensor *xs[3] = {gu, n->saved[0], yu};
        if (s == DDP_OK)
            s = ag_pointwise(xs, 3, e->sizes, e->ndim, g->dtype, pw_norm, NULL, &gi[0]);
        tensor_release(yu);
        break;
    }
    case REDUCE_MAX:
    case REDUCE_MIN:
        if (n->dim < 0) {
            const tensor *xs[3] = {gu, n->saved[0], n->saved[1]};
            s = ag_pointwise(xs, 3, e->sizes, e->ndim, g->dtype, pw_even, &n->scalar, &gi[0]);
        } else {
            tensor *iu = NULL, *iota = NULL, *iv = NULL;
            dtype f64 = DTYPE_FLOAT64;
            int64_t shape[TENSOR_MAX_DIMS];
            for (int d = 0; d < e->ndim; d++) shape[d] = d == n->dim ? e->sizes[d] : 1;
            s = unreduce(n, n->saved[0], &iu);
            if (s == DDP_OK) s = tensor_arange(0, (double)e->sizes[n->dim], 1, &f64, &iota);
            if (s == DDP_OK) s = tensor_view(iota, shape, e->ndim, &iv);
            const tensor *xs[3] = {gu, iu, iv};
            if (s == DDP_OK)
                s = ag_pointwise(xs, 3, e->sizes, e->ndim, g->dtype, pw_index, NULL, &gi[0]);
            tensor_release(iu);
            tensor_release(iota);
            tensor_release(iv);
        }
        break;
    default:
        s = DDP_FAIL(DDP_ERR_STATE, "backward: %s has no gradient", n->name);
    }
    tensor_release(gu);
    return s;
}

/* The grad_fn name of a reduction, or NULL when it is not differentiable. */
static const char *reduce_name(reduce_op op, bool all) {
    switch (op) {
    case REDUCE_SUM:
        return all ? "SumBackward0" : "SumBackward1";
    case REDUCE_MEAN:
        return all ? "MeanBackward0" : "MeanBackward1";
    case REDUCE_NORM:
        return "NormBackward1";
    case REDUCE_MAX:
        return all ? "MaxBackward1" : "MaxBackward0";
    case REDUCE_MIN:
        return all ? "MinBackward1" : "MinBackward0";
    default:
        return NULL;
    }
}

/* Counts the elements of t equal to v (for max/min ties). */
static ddp_status count_equal(const tensor *t, double v, double *count) {
    tensor *m;
    DDP_CHECK(materialize(t, t->sizes, t->ndim, &m));
    const void *base = tensor_data(m);
    int64_t n = tensor_numel(m), c = 0;
    for (int64_t i = 0; i < n; i++) c += load(m, base, i) == v;
    tensor_release(m);
    *count = (double)c;
    return DDP_OK;
}

/* Refuses to differentiate an op that has no backward here (rather than a silent 0). */
static ddp_status no_backward(reduce_op op, const tensor *t) {
    const tensor *in[1] = {t};
    if (op == REDUCE_ARGMAX || op == REDUCE_ARGMIN || !ag_any_requires_grad(in, 1)) return DDP_OK;
    return DDP_FAIL(DDP_ERR_UNSUPPORTED,
                    "%s: backward is not implemented for this reduction; compute it under "
                    "torch.no_grad or on a detached tensor",
                    reduce_op_name(op));
}

ddp_status ag_reduce_all(reduce_op op, const tensor *t, tensor **out) {
    *out = NULL;
    const char *name = reduce_name(op, true);
    if (!name) DDP_CHECK(no_backward(op, t));
    tensor *y;
    DDP_CHECK(tensor_reduce_all(op, t, &y));
    *out = y;
    if (!name) return DDP_OK;
    ag_node *n;
    ddp_status s = ag_record(name, reduce_backward, &t, 1, y, out, &n);
    if (s != DDP_OK || !n) return s;
    n->op = (int)op;
    n->dim = -1;
    n->scalar = (double)tensor_numel(t);
    if (op == REDUCE_NORM || op == REDUCE_MAX || op == REDUCE_MIN) {
        ag_save(n, 0, t);
        s = ag_save_output(n, 1, y);
        if (s == DDP_OK && op != REDUCE_NORM) {
            double v;
            s = tensor_item(y, &v);
            if (s == DDP_OK) s = count_equal(t, v, &n->scalar);
        }
    }
    if (s != DDP_OK) {
        tensor_release(y);
        *out = NULL;
    }
    return s;
}

ddp_status ag_reduce_dim(reduce_op op, const tensor *t, int64_t dim, bool keepdim, tensor **out) {
    *out = NULL;
    const char *name = reduce_name(op, false);
    if (!name) DDP_CHECK(no_backward(op, t));
    tensor *y, *idx = NULL;
    if (op == REDUCE_MAX || op == REDUCE_MIN)
        DDP_CHECK(tensor_max_dim(t, dim, keepdim, op == REDUCE_MIN, &y, &idx));
    else
        DDP_CHECK(tensor_reduce_dim(op, t, dim, keepdim, &y));
    *out = y;
    if (!name) return DDP_OK;
    int d = 0;
    ag_node *n;
    ddp_status s = tensor_wrap_dim(reduce_op_name(op), dim, t->ndim, &d);
    if (s == DDP_OK)
        s = ag_record(name, reduce_backward, &t, 1, y, out, &n);
    else
        tensor_release(y);
    if (s != DDP_OK) *out = NULL;
    if (s != DDP_OK || !n) {
        tensor_release(idx);
        return s;
    }
    n->op = (int)op;
    n->dim = t->ndim == 0 ? -1 : d; /* a 0-dim input reduces like "all" */
    n->flag = keepdim;
    n->scalar = t->ndim == 0 ? 1.0 : (double)t->sizes[d];
    if (op == REDUCE_NORM) {
        ag_save(n, 0, t);
        s = ag_save_output(n, 1, y);
    } else if (idx) {
        if (t->ndim == 0) { /* one element: it is the max */
            ag_save(n, 0, t);
            s = ag_save_output(n, 1, y);
            n->scalar = 1.0;
        } else {
            ag_save(n, 0, idx);
        }
    }
    tensor_release(idx);
    if (s != DDP_OK) {
        tensor_release(y);
        *out = NULL;
    }
    return s;
}
