/* optim.c — SGD and Adam/AdamW parameter updates, one loop over the elements each, with
 * the formulas of PyTorch's single-tensor implementations (see optim.h). Scalars that
 * PyTorch computes in Python (bias corrections, step size) are computed here in double
 * and then used in the parameter's own precision, as PyTorch does. */
#include "nn/optim.h"

#include <math.h>

/* Counts the step's in-place writes in the version counters (tensor.h), as PyTorch's
 * p.add_() does: a graph that saved the parameter before the step then refuses to run
 * backward with the new values. */
static void count_writes(tensor *param, tensor *buf1, tensor *buf2) {
    tensor_bump_version(param);
    tensor_bump_version(buf1);
    tensor_bump_version(buf2);
}

/* All tensors of one step: contiguous CPU float tensors of the same shape and dtype. */
static ddp_status check_same(const char *op, const char *what, const tensor *param,
                             const tensor *t) {
    char a[64], b[64];
    if (!t) return DDP_FAIL(DDP_ERR_ARG, "%s: %s is missing", op, what);
    if (!tensor_same_shape(param, t) || t->dtype != param->dtype)
        return DDP_FAIL(DDP_ERR_ARG, "%s: %s is %s %s but the parameter is %s %s; they must match",
                        op, what, dtype_name(t->dtype), tensor_shape_str(t, a, sizeof a),
                        dtype_name(param->dtype), tensor_shape_str(param, b, sizeof b));
    if (!tensor_is_contiguous(t))
        return DDP_FAIL(DDP_ERR_ARG, "%s: %s must be contiguous", op, what);
    if (!device_equal(t->storage->device, param->storage->device) ||
        t->storage->device.type != DEVICE_CPU)
        return DDP_FAIL(DDP_ERR_UNSUPPORTED, "%s: %s must be a CPU tensor like the parameter", op,
                        what);
    return DDP_OK;
}

/* A parameter must be a contiguous CPU float tensor. */
static ddp_status check_param(const char *op, const tensor *param) {
    if (!dtype_is_float(param->dtype))
        return DDP_FAIL(DDP_ERR_ARG, "%s: parameters must be float tensors, got %s", op,
                        dtype_name(param->dtype));
    return check_same(op, "the parameter", param, param);
}

ddp_status sgd_step(tensor *param, const tensor *grad, tensor *momentum_buf, double lr,
                    double momentum, double dampening, double weight_decay, bool nesterov,
                    bool first_step) {
    DDP_CHECK(check_param("sgd_step", param));
    DDP_CHECK(check_same("sgd_step", "the gradient", param, grad));
    if (momentum != 0.0)
        DDP_CHECK(check_same("sgd_step", "the momentum buffer", param, momentum_buf));
    int64_t n = tensor_numel(param);
    if (param->dtype == DTYPE_FLOAT32) {
        float *p = tensor_data(param), *buf = momentum != 0.0 ? tensor_data(momentum_buf) : 0;
        const float *g = tensor_data(grad);
        float flr = (float)lr, fm = (float)momentum, fd = (float)(1.0 - dampening),
              fwd = (float)weight_decay;
        for (int64_t i = 0; i < n; i++) {
            float d = g[i];
            if (weight_decay != 0.0) d += fwd * p[i];
            if (momentum != 0.0) {
                buf[i] = first_step ? d : fm * buf[i] + fd * d;
                d = nesterov ? d + fm * buf[i] : buf[i];
            }
            p[i] -= flr * d;
        }
        count_writes(param, momentum != 0.0 ? momentum_buf : NULL, NULL);
        return DDP_OK;
    }
    double *p = tensor_data(param), *buf = momentum != 0.0 ? tensor_data(momentum_buf) : 0;
    const double *g = tensor_data(grad);
    for (int64_t i = 0; i < n; i++) {
        double d = g[i];
        if (weight_decay != 0.0) d += weight_decay * p[i];
        if (momentum != 0.0) {
            buf[i] = first_step ? d : momentum * buf[i] + (1.0 - dampening) * d;
            d = nesterov ? d + momentum * buf[i] : buf[i];
        }
        p[i] -= lr * d;
    }
    count_writes(param, momentum != 0.0 ? momentum_buf : NULL, NULL);
    return DDP_OK;
}

ddp_status adam_step(tensor *param, const tensor *grad, tensor *exp_avg, tensor *exp_avg_sq,
                     int64_t step, double lr, double beta1, double beta2, double eps,
                     double weight_decay, bool decoupled) {
    const char *op = decoupled ? "adamw_step" : "adam_step";
    DDP_CHECK(check_param(op, param));
    DDP_CHECK(check_same(op, "the gradient", param, grad));
    DDP_CHECK(check_same(op, "exp_avg", param, exp_avg));
    DDP_CHECK(check_same(op, "exp_avg_sq", param, exp_avg_sq));
    if (step < 1)
        return DDP_FAIL(DDP_ERR_ARG, "%s: step counts from 1, got %lld", op, (long long)step);
    /* Python-side scalars, in double as PyTorch computes them */
    double bc1 = 1.0 - pow(beta1, (double)step);
    double bc2 = 1.0 - pow(beta2, (double)step);
    double step_size = lr / bc1;
    double bc2_sqrt = sqrt(bc2);
    double decay = decoupled ? 1.0 - lr * weight_decay : 1.0;
    double l2 = decoupled ? 0.0 : weight_decay;
    int64_t n = tensor_numel(param);
    if (param->dtype == DTYPE_FLOAT32) {
        float *p = tensor_data(param), *m = tensor_data(exp_avg), *v = tensor_data(exp_avg_sq);
        const float *g = tensor_data(grad);
        float b1 = (float)beta1, b2 = (float)beta2, fdecay = (float)decay, fl2 = (float)l2;
        float ob1 = (float)(1.0 - beta1), ob2 = (float)(1.0 - beta2);
        float fss = (float)step_size, fbc2 = (float)bc2_sqrt, feps = (float)eps;
        for (int64_t i = 0; i < n; i++) {
            float pi = p[i];
            if (decoupled && weight_decay != 0.0) pi *= fdecay;
            float gi = g[i];
            if (l2 != 0.0) gi += fl2 * pi;
            /* PyTorch 1.13: exp_avg.mul_(b1).add_(g, alpha=1 - b1) and
             * exp_avg_sq.mul_(b2).addcmul_(g, g, value=1 - b2) */
            m[i] = b1 * m[i] + ob1 * gi;
            v[i] = b2 * v[i] + ob2 * gi * gi;
            float denom = sqrtf(v[i]) / fbc2 + feps;
            p[i] = pi - fss * (m[i] / denom);
        }
        count_writes(param, exp_avg, exp_avg_sq);
        return DDP_OK;
    }
    double *p = tensor_data(param), *m = tensor_data(exp_avg), *v = tensor_data(exp_avg_sq);
    const double *g = tensor_data(grad);
    for (int64_t i = 0; i < n; i++) {
        double pi = p[i];
        if (decoupled && weight_decay != 0.0) pi *= decay;
        double gi = g[i] + l2 * pi;
        m[i] = beta1 * m[i] + (1.0 - beta1) * gi;
        v[i] = beta2 * v[i] + (1.0 - beta2) * gi * gi;
        double denom = sqrt(v[i]) / bc2_sqrt + eps;
        p[i] = pi - step_size * (m[i] / denom);
    }
    count_writes(param, exp_avg, exp_avg_sq);
    return DDP_OK;
}
