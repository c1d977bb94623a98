/* losses.c — mse_loss and cross_entropy with PyTorch's definitions, each recorded as
 * one fused node (MseLossBackward0, NllLossBackward0) whose backward is the closed form:
 * 2 (input - target) / N for MSE, softmax - onehot (or softmax * sum(p) - p for
 * probability targets) for cross-entropy, scaled by the reduction. Cross-entropy goes
 * through log_softmax for stability. Argument errors name shapes, dtypes and the bad
 * class index, because these are the mistakes learners make first. */
#include "nn/autograd_internal.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

/* PyTorch's default ignore_index: a target of -100 contributes nothing. */
#define CE_IGNORE_INDEX (-100)

bool loss_reduction_parse(const char *name, loss_reduction *out) {
    if (!name) return false;
    if (strcmp(name, "mean") == 0)
        *out = REDUCTION_MEAN;
    else if (strcmp(name, "sum") == 0)
        *out = REDUCTION_SUM;
    else if (strcmp(name, "none") == 0)
        *out = REDUCTION_NONE;
    else
        return false;
    return true;
}

/* Reduces per-element losses as asked; takes ownership of `each`. denom is the divisor
 * for the mean. */
static ddp_status reduce_loss(tensor *each, loss_reduction r, double denom, tensor **out) {
    if (r == REDUCTION_NONE) {
        *out = each;
        return DDP_OK;
    }
    tensor *sum;
    ddp_status s = tensor_reduce_all(REDUCE_SUM, each, &sum);
    tensor_release(each);
    DDP_CHECK(s);
    if (r == REDUCTION_SUM) {
        *out = sum;
        return DDP_OK;
    }
    s = tensor_binary_scalar(BINARY_DIV, sum, denom, out);
    tensor_release(sum);
    return s;
}

/* ---- mse_loss --------------------------------------------------------------------- */

/* saved[0] = input - target; scalar = 2 / N for mean, 2 otherwise */
static ddp_status mse_backward(ag_node *n, const tensor *g, tensor **gi) {
    tensor *t;
    DDP_CHECK(tensor_binary(BINARY_MUL, n->saved[0], g, &t));
    tensor *ga;
    ddp_status s = tensor_binary_scalar(BINARY_MUL, t, n->scalar, &ga);
    tensor_release(t);
    DDP_CHECK(s);
    if (n->edges[1].needed) {
        s = tensor_unary(UNARY_NEG, ga, &gi[1]);
        if (s != DDP_OK) {
            tensor_release(ga);
            return s;
        }
    }
    if (n->edges[0].needed)
        gi[0] = ga;
    else
        tensor_release(ga);
    return DDP_OK;
}

ddp_status ag_mse_loss(const tensor *input, const tensor *target, loss_reduction r, tensor **out) {
    *out = NULL;
    char a[64], b[64], args[96];
    if (target->dtype == DTYPE_INT64 || target->dtype == DTYPE_BOOL)
        return DDP_FAIL(DDP_ERR_ARG,
                        "mse_loss: the target is %s %s, but MSELoss compares floating point "
                        "values: pass target:float() (class labels? nn.CrossEntropyLoss takes "
                        "them as int64)",
                        dtype_name(target->dtype), tensor_shape_str(target, b, sizeof b));
    if (!tensor_same_shape(input, target)) {
        tensor_shape_str(input, a, sizeof a);
        tensor_shape_str(target, b, sizeof b);
        if (tensor_numel(input) != tensor_numel(target))
            return DDP_FAIL(DDP_ERR_ARG,
                            "mse_loss: input %s and target %s have different shapes; they must "
                            "match exactly, and with %lld and %lld elements no reshape can make "
                            "them (does the model's last layer give as many outputs as each "
                            "target has?)",
                            a, b, (long long)tensor_numel(input), (long long)tensor_numel(target));
        /* the sizes as view's arguments: "4, 5" */
        size_t len = 0;
        args[0] = '\0';
        for (int d = 0; d < input->ndim && len < sizeof args; d++)
            len += (size_t)snprintf(args + len, sizeof args - len, "%s%lld", d ? ", " : "",
                                    (long long)input->sizes[d]);
        return DDP_FAIL(DDP_ERR_ARG,
                        "mse_loss: input %s and target %s have different shapes; they must "
                        "match exactly (PyTorch would broadcast them with a warning, which is "
                        "almost always a bug: reshape one of them, e.g. target:view(%s))",
                        a, b, args);
    }
    if (!dtype_is_float(input->dtype))
        return DDP_FAIL(DDP_ERR_ARG,
                        "mse_loss: input and target must be floating point tensors (got %s "
                        "and %s); convert with :float()",
                        dtype_name(input->dtype), dtype_name(target->dtype));
    tensor *diff, *sq, *y;
    DDP_CHECK(tensor_binary(BINARY_SUB, input, target, &diff));
    ddp_status s = tensor_binary(BINARY_MUL, diff, diff, &sq);
    if (s == DDP_OK) s = reduce_loss(sq, r, (double)tensor_numel(input), &y);
    if (s != DDP_OK) {
        tensor_release(diff);
        return s;
    }
    const tensor *in[2] = {input, target};
    ag_node *n;
    s = ag_record("MseLossBackward0", mse_backward, in, 2, y, out, &n);
    if (s == DDP_OK && n) {
        ag_save(n, 0, diff);
        n->scalar = r == REDUCTION_MEAN ? 2.0 / (double)tensor_numel(input) : 2.0;
    }
    tensor_release(diff);
    return s;
}

/* ---- cross_entropy ---------------------------------------------------------------- */

/* Element i of a contiguous float32/float64 block, as double. */
static double ld(const void *base, dtype dt, int64_t i) {
    return dt == DTYPE_FLOAT32 ? (double)((const float *)base)[i] : ((const double *)base)[i];
}

/* Stores v as element i of a contiguous float32/float64 block. */
static void st(void *base, dtype dt, int64_t i, double v) {
    if (dt == DTYPE_FLOAT32)
        ((float *)base)[i] = (float)v;
    else
        ((double *)base)[i] = v;
}

/* t on the host: t itself (a new reference) on the CPU, else a copy. The per-sample
 * loops of cross_entropy read memory directly, so a GPU's tensors come across for them
 * (correct and slow; a kernel of its own later). */
static ddp_status to_host(const tensor *t, tensor **out) {
    return tensor_to_device(t, DEVICE_CPU_VALUE, t->dtype, out);
}

/* t viewed as (sizes, ndim) on device dev (a copy when dev is not t's). */
static ddp_status view_on(tensor *t, const int64_t *sizes, int ndim, device dev, tensor **out) {
    tensor *v;
    DDP_CHECK(tensor_view(t, sizes, ndim, &v));
    ddp_status s = tensor_to_device(v, dev, v->dtype, out);
    tensor_release(v);
    return s;
}

/* Checks the target against the input (N x C) or (C); *prob says which kind it is. */
static ddp_status ce_check(const tensor *input, const tensor *target, bool *prob) {
    char a[64], b[64];
    if (!device_equal(input->storage->device, target->storage->device)) {
        char da[16], db[16];
        return DDP_FAIL(DDP_ERR_ARG, "cross_entropy: the input is on %s but the target on %s",
                        device_name(input->storage->device, da, sizeof da),
                        device_name(target->storage->device, db, sizeof db));
    }
    if (!dtype_is_float(input->dtype))
        return DDP_FAIL(DDP_ERR_ARG,
                        "cross_entropy: input must hold float logits, got %s; convert with "
                        ":float()",
                        dtype_name(input->dtype));
    if (input->ndim != 1 && input->ndim != 2)
        return DDP_FAIL(DDP_ERR_ARG,
                        "cross_entropy: input must be (N x C) logits, or (C) for one sample; "
                        "got shape %s",
                        tensor_shape_str(input, a, sizeof a));
    if (target->dtype == DTYPE_INT64) {
        *prob = false;
        bool ok = input->ndim == 2 ? target->ndim == 1 && target->sizes[0] == input->sizes[0]
                                   : target->ndim == 0;
        if (!ok)
            return DDP_FAIL(DDP_ERR_ARG,
                            "cross_entropy: class-index target must have shape %s, one class "
                            "per sample of the input %s; got %s",
                            input->ndim == 2 ? "(N)" : "() (a 0-dim tensor)",
                            tensor_shape_str(input, a, sizeof a),
                            tensor_shape_str(target, b, sizeof b));
        return DDP_OK;
    }
    if (dtype_is_float(target->dtype)) {
        *prob = true;
        if (!tensor_same_shape(input, target))
            return DDP_FAIL(DDP_ERR_ARG,
                            "cross_entropy: a float target holds class probabilities and must "
                            "have the input's shape %s, got %s; for class indices pass an "
                            "int64 tensor (target:long())",
                            tensor_shape_str(input, a, sizeof a),
                            tensor_shape_str(target, b, sizeof b));
        return DDP_OK;
    }
    return DDP_FAIL(DDP_ERR_ARG,
                    "cross_entropy: target must be int64 class indices (N) or float class "
                    "probabilities (N x C); got a %s tensor",
                    dtype_name(target->dtype));
}

/* Per-sample losses from the log-probabilities lsm (N x C contiguous); for class
 * indices, *count receives the number of samples not ignored. */
static ddp_status ce_forward(const tensor *lsm, const tensor *target, bool prob, int64_t nb,
                             int64_t c, tensor *each, double *count) {
    const void *lp = tensor_data(lsm);
    void *ep = tensor_data(each);
    int64_t kept = 0;
    if (!prob) {
        for (int64_t i = 0; i < nb; i++) {
            int64_t t = tensor_get_int64(target, i);
            double v = 0.0;
            if (t != CE_IGNORE_INDEX) {
                if (t < 0 || t >= c)
                    return DDP_FAIL(DDP_ERR_ARG,
                                    "cross_entropy: target %" PRId64 " (sample %" PRId64
                                    ") is out of range for %" PRId64
                                    " classes; class indices run from 0 to %" PRId64,
                                    t, i, c, c - 1);
                v = -ld(lp, lsm->dtype, i * c + t);
                kept++;
            }
            st(ep, each->dtype, i, v);
        }
        *count = (double)kept;
        return DDP_OK;
    }
    tensor *pc;
    DDP_CHECK(tensor_contiguous(target, &pc));
    const void *pp = tensor_data(pc);
    for (int64_t i = 0; i < nb; i++) {
        double v = 0.0;
        for (int64_t k = 0; k < c; k++)
            v -= ld(pp, pc->dtype, i * c + k) * ld(lp, lsm->dtype, i * c + k);
        st(ep, each->dtype, i, v);
    }
    tensor_release(pc);
    *count = (double)nb;
    return DDP_OK;
}

/* saved[0] = log_softmax(input) (N x C contiguous), saved[1] = target; op = reduction,
 * scalar = divisor of the mean, flag = probability target, length = C. */
/* ce_backward on host tensors; the gradients go to `dev`. */
static ddp_status ce_backward_host(ag_node *n, const tensor *lsm, const tensor *target,
                                   const tensor *g, device dev, tensor **gi) {
    int64_t c = n->length, nb = c == 0 ? 0 : tensor_numel(lsm) / c;
    loss_reduction r = (loss_reduction)n->op;
    double g0 = 0.0;
    if (r != REDUCTION_NONE) DDP_CHECK(tensor_item(g, &g0));
    if (r == REDUCTION_MEAN) g0 /= n->scalar;
    tensor *gx = NULL, *gt = NULL, *pc = NULL;
    ddp_status s = tensor_empty_like(lsm, &gx);
    if (s == DDP_OK && n->flag) s = tensor_contiguous(target, &pc);
    if (s == DDP_OK && n->flag && n->edges[1].needed) s = tensor_empty_like(lsm, &gt);
    if (s != DDP_OK) {
        tensor_release(gx);
        tensor_release(pc);
        return s;
    }
    const void *lp = tensor_data(lsm);
    const void *pp = pc ? tensor_data(pc) : NULL;
    void *xp = tensor_data(gx), *tp = gt ? tensor_data(gt) : NULL;
    dtype dt = lsm->dtype;
    for (int64_t i = 0; i < nb; i++) {
        double scale = r == REDUCTION_NONE ? tensor_get(g, i) : g0;
        if (!n->flag) {
            int64_t t = tensor_get_int64(target, i);
            if (t == CE_IGNORE_INDEX) scale = 0.0;
            for (int64_t k = 0; k < c; k++) {
                double p = exp(ld(lp, dt, i * c + k)) - (k == t ? 1.0 : 0.0);
                st(xp, dt, i * c + k, p * scale);
            }
            continue;
        }
        double psum = 0.0;
        for (int64_t k = 0; k < c; k++) psum += ld(pp, pc->dtype, i * c + k);
        for (int64_t k = 0; k < c; k++) {
            double lv = ld(lp, dt, i * c + k), pv = ld(pp, pc->dtype, i * c + k);
            st(xp, dt, i * c + k, (exp(lv) * psum - pv) * scale);
            if (tp) st(tp, dt, i * c + k, -lv * scale);
        }
    }
    tensor_release(pc);
    /* back to the input's shape ((C) for one sample), on the input's device */
    const ag_edge *e = &n->edges[0];
    if (e->needed) s = view_on(gx, e->sizes, e->ndim, dev, &gi[0]);
    tensor_release(gx);
    if (s == DDP_OK && gt) s = view_on(gt, n->edges[1].sizes, n->edges[1].ndim, dev, &gi[1]);
    tensor_release(gt);
    return s;
}

static ddp_status ce_backward(ag_node *n, const tensor *g_in, tensor **gi) {
    /* the loops run on the host: a GPU's tensors come across, the gradients go back */
    tensor *lsm = NULL, *target = NULL, *g = NULL;
    ddp_status hs = to_host(n->saved[0], &lsm);
    if (hs == DDP_OK) hs = to_host(n->saved[1], &target);
    if (hs == DDP_OK) hs = to_host(g_in, &g);
    if (hs == DDP_OK) hs = ce_backward_host(n, lsm, target, g, n->saved[0]->storage->device, gi);
    tensor_release(lsm);
    tensor_release(target);
    tensor_release(g);
    return hs;
}

/* The grad_fn name PyTorch shows for cross_entropy's last node. */
static const char *ce_name(bool prob, loss_reduction r) {
    if (!prob) return "NllLossBackward0";
    /* PyTorch's probability-target path ends in -(...).sum() / N or a negation */
    return r == REDUCTION_MEAN ? "DivBackward1" : "NegBackward0";
}

ddp_status ag_cross_entropy(const tensor *input, const tensor *target, loss_reduction r,
                            tensor **out) {
    *out = NULL;
    bool prob = false;
    DDP_CHECK(ce_check(input, target, &prob));
    int64_t c = input->sizes[input->ndim - 1];
    int64_t nb = input->ndim == 2 ? input->sizes[0] : 1;
    int64_t rows[2] = {nb, c};
    tensor *lsm0 = NULL, *lsm = NULL, *each = NULL, *y = NULL;
    double count = 0.0;
    ddp_status s = tensor_log_softmax(input, -1, &lsm0);
    tensor *lsm1 = NULL; /* the loops below read it as a contiguous (N x C) block */
    if (s == DDP_OK) s = tensor_reshape(lsm0, rows, 2, &lsm1);
    if (s == DDP_OK) s = tensor_contiguous(lsm1, &lsm);
    tensor_release(lsm0);
    tensor_release(lsm1);
    tensor *lsm_h = NULL, *target_h = NULL, *each_h = NULL;
    if (s == DDP_OK) s = to_host(lsm, &lsm_h);
    if (s == DDP_OK) s = to_host(target, &target_h);
    if (s == DDP_OK) s = tensor_empty(rows, input->ndim - 1, lsm->dtype, DEVICE_CPU_VALUE, &each_h);
    if (s == DDP_OK) s = ce_forward(lsm_h, target_h, prob, nb, c, each_h, &count);
    if (s == DDP_OK) s = tensor_to_device(each_h, lsm->storage->device, each_h->dtype, &each);
    tensor_release(lsm_h);
    tensor_release(target_h);
    tensor_release(each_h);
    if (s == DDP_OK) {
        s = reduce_loss(each, r, count, &y);
        each = NULL;
    }
    tensor_release(each);
    if (s != DDP_OK) {
        tensor_release(lsm);
        return s;
    }
    const tensor *in[2] = {input, target};
    ag_node *n;
    s = ag_record(ce_name(prob, r), ce_backward, in, 2, y, out, &n);
    if (s == DDP_OK && n) {
        ag_save(n, 0, lsm);
        ag_save(n, 1, target);
        n->op = (int)r;
        n->scalar = count;
        n->flag = prob;
        n->length = c;
    }
    tensor_release(lsm);
    return s;
}
