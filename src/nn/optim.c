/* optim.c — SGD and Adam/AdamW parameter updates with the formulas of PyTorch's
 * single-tensor implementations (see optim.h): the checks and the scalars PyTorch
 * computes in Python (bias corrections, step size, in double) are here; the pass over
 * the elements is the tensor layer's (tensor_sgd_update / tensor_adam_update: a loop on
 * the CPU, a kernel on a GPU, one element formula for both in optim_math.h). */
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

/* All tensors of one step: contiguous float tensors of the parameter's shape, dtype and
 * device. */
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
    if (!device_equal(t->storage->device, param->storage->device)) {
        char da[16], db[16];
        return DDP_FAIL(DDP_ERR_ARG,
                        "%s: %s is on %s but the parameter is on %s; they must be on one "
                        "device (build the optimizer after model:to(device))",
                        op, what, device_name(t->storage->device, da, sizeof da),
                        device_name(param->storage->device, db, sizeof db));
    }
    return DDP_OK;
}

/* A parameter must be a contiguous float tensor. */
static ddp_status check_param(const char *op, const tensor *param) {
    if (!dtype_is_float(param->dtype))
        return DDP_FAIL(DDP_ERR_ARG, "%s: parameters must be float tensors, got %s", op,
                        dtype_name(param->dtype));
    return check_same(op, "the parameter", param, param);
}

/* The parameters of one call to the tensor layer: a run of ps on one device, of one
 * dtype and one step (Adam) or first_step (SGD), at most RUN of them. */
#define RUN 64

static bool same_run(const optim_param *a, const optim_param *b, bool adam) {
    return device_equal(a->param->storage->device, b->param->storage->device) &&
           a->param->dtype == b->param->dtype &&
           (adam ? a->step == b->step : a->first_step == b->first_step);
}

/* The length of the run starting at ps[0] (n > 0). */
static int run_length(const optim_param *ps, int n, bool adam) {
    int len = 1;
    while (len < n && len < RUN && same_run(&ps[0], &ps[len], adam)) len++;
    return len;
}

ddp_status sgd_steps(optim_param *ps, int n, double lr, double momentum, double dampening,
                     double weight_decay, bool nesterov) {
    for (int i = 0; i < n; i++) { /* every parameter first: no step is half taken */
        DDP_CHECK(check_param("sgd_step", ps[i].param));
        DDP_CHECK(check_same("sgd_step", "the gradient", ps[i].param, ps[i].grad));
        if (momentum != 0.0)
            DDP_CHECK(
                check_same("sgd_step", "the momentum buffer", ps[i].param, ps[i].momentum_buf));
    }
    tensor *p[RUN], *g[RUN], *b[RUN];
    for (int at = 0; at < n;) {
        int len = run_length(ps + at, n - at, false);
        for (int k = 0; k < len; k++) {
            p[k] = ps[at + k].param;
            g[k] = (tensor *)ps[at + k].grad;
            b[k] = momentum != 0.0 ? ps[at + k].momentum_buf : NULL;
        }
        optim_sgd_scalars k = {lr, momentum, dampening, weight_decay, nesterov, ps[at].first_step};
        DDP_CHECK(tensor_sgd_update(p, g, momentum != 0.0 ? b : NULL, len, &k));
        for (int j = 0; j < len; j++) count_writes(p[j], momentum != 0.0 ? b[j] : NULL, NULL);
        at += len;
    }
    return DDP_OK;
}

ddp_status adam_steps(optim_param *ps, int n, double lr, double beta1, double beta2, double eps,
                      double weight_decay, bool decoupled) {
    const char *op = decoupled ? "adamw_step" : "adam_step";
    for (int i = 0; i < n; i++) { /* every parameter first: no step is half taken */
        DDP_CHECK(check_param(op, ps[i].param));
        DDP_CHECK(check_same(op, "the gradient", ps[i].param, ps[i].grad));
        DDP_CHECK(check_same(op, "exp_avg", ps[i].param, ps[i].exp_avg));
        DDP_CHECK(check_same(op, "exp_avg_sq", ps[i].param, ps[i].exp_avg_sq));
        if (ps[i].step < 1)
            return DDP_FAIL(DDP_ERR_ARG, "%s: step counts from 1, got %lld", op,
                            (long long)ps[i].step);
    }
    tensor *p[RUN], *g[RUN], *m[RUN], *v[RUN];
    for (int at = 0; at < n;) {
        int len = run_length(ps + at, n - at, true);
        for (int k = 0; k < len; k++) {
            p[k] = ps[at + k].param;
            g[k] = (tensor *)ps[at + k].grad;
            m[k] = ps[at + k].exp_avg;
            v[k] = ps[at + k].exp_avg_sq;
        }
        /* Python-side scalars, in double as PyTorch computes them */
        double step = (double)ps[at].step;
        optim_adam_scalars k = {
            .beta1 = beta1,
            .beta2 = beta2,
            .eps = eps,
            .step_size = lr / (1.0 - pow(beta1, step)),
            .bc2_sqrt = sqrt(1.0 - pow(beta2, step)),
            .decay = decoupled ? 1.0 - lr * weight_decay : 1.0,
            .l2 = decoupled ? 0.0 : weight_decay,
            .decoupled_decay = decoupled && weight_decay != 0.0,
        };
        DDP_CHECK(tensor_adam_update(p, g, m, v, len, &k));
        for (int j = 0; j < len; j++) count_writes(p[j], m[j], v[j]);
        at += len;
    }
    return DDP_OK;
}

ddp_status sgd_step(tensor *param, const tensor *grad, tensor *momentum_buf, double lr,
                    double momentum, double dampening, double weight_decay, bool nesterov,
                    bool first_step) {
    optim_param p = {
        .param = param, .grad = grad, .momentum_buf = momentum_buf, .first_step = first_step};
    return sgd_steps(&p, 1, lr, momentum, dampening, weight_decay, nesterov);
}

ddp_status adam_step(tensor *param, const tensor *grad, tensor *exp_avg, tensor *exp_avg_sq,
                     int64_t step, double lr, double beta1, double beta2, double eps,
                     double weight_decay, bool decoupled) {
    optim_param p = {
        .param = param, .grad = grad, .exp_avg = exp_avg, .exp_avg_sq = exp_avg_sq, .step = step};
    return adam_steps(&p, 1, lr, beta1, beta2, eps, weight_decay, decoupled);
}
