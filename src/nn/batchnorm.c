/* batchnorm.c — ag_batch_norm (batchnorm.h): forward and backward on raw pointers, in
 * PyTorch's CPU order of operations and precisions, so a float32 batch norm gives
 * PyTorch's numbers to float32 rounding.
 *
 * What PyTorch does, and so we do (x is (N, C, L), L = 1 for 2-D input; n = N * L):
 *   mean     = (sum of x) / n, float32 summed in float (over L, then row by row)
 *   var_sum  = sum of (x - mean)^2, summed the same way
 *   invstd   = (float) 1 / sqrt(var_sum / n + eps), var_sum / n in float, the rest double
 *   running  = momentum * batch + (1 - momentum) * running, the variance unbiased
 *              (var_sum / (n - 1)); evaluation uses invstd = 1 / sqrt(running_var + eps)
 *   y        = fma(x, alpha, beta), alpha = invstd * weight, beta = fma(-mean, alpha, bias)
 *              (the fused multiply-adds of PyTorch's AVX2 build)
 *   backward = dx = (dy - sum(dy) / n - (x - mean) * k) * invstd * weight, with
 *              k = sum(dy * (x - mean)) * invstd^2 / n; dweight = sum(dy * (x - mean)) *
 *              invstd; dbias = sum(dy) (evaluation: dx = dy * invstd * weight)
 * float64 inputs do all of it in double. For (N, C) input this gives PyTorch's running
 * statistics bit for bit; PyTorch sums rows of L > 1 with 8-wide vector reductions we do
 * not reproduce, so elsewhere the results agree to float32 rounding (a few ulp). */
#include "nn/batchnorm.h"

#include "nn/autograd_internal.h"
#include "base/alloc.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* x viewed as (n, c, l), contiguous. */
typedef struct {
    int64_t n, c, l;
} bn_shape;

static void reducer_release(const bn_reducer *r) {
    if (r && r->release) r->release(r->ctx);
}

/* Per-channel sum of x: float32 accumulates in float, as PyTorch's CPU kernel does
 * (over L within a row first, then row by row), float64 in double. */
static void channel_sum(const tensor *x, bn_shape s, double *out) {
    const float *f = x->dtype == DTYPE_FLOAT32 ? tensor_data(x) : NULL;
    const double *d = f ? NULL : tensor_data(x);
    for (int64_t c = 0; c < s.c; c++) out[c] = 0;
    for (int64_t i = 0; i < s.n; i++)
        for (int64_t c = 0; c < s.c; c++) {
            int64_t at = (i * s.c + c) * s.l;
            if (f) {
                float acc = 0;
                for (int64_t j = 0; j < s.l; j++) acc += f[at + j];
                out[c] = (float)out[c] + acc;
            } else {
                double acc = 0;
                for (int64_t j = 0; j < s.l; j++) acc += d[at + j];
                out[c] += acc;
            }
        }
}

/* Per-channel sum of (x - mean)^2 in x's dtype, accumulated as channel_sum does. */
static void channel_sq(const tensor *x, bn_shape s, const double *mean, double *out) {
    const float *f = x->dtype == DTYPE_FLOAT32 ? tensor_data(x) : NULL;
    const double *d = f ? NULL : tensor_data(x);
    for (int64_t c = 0; c < s.c; c++) out[c] = 0;
    for (int64_t i = 0; i < s.n; i++)
        for (int64_t c = 0; c < s.c; c++) {
            int64_t at = (i * s.c + c) * s.l;
            double acc = 0;
            if (f) {
                float m = (float)mean[c], facc = 0;
                for (int64_t j = 0; j < s.l; j++) {
                    float v = f[at + j] - m;
                    facc += v * v;
                }
                out[c] = (float)out[c] + facc;
                continue;
            } else {
                for (int64_t j = 0; j < s.l; j++) {
                    double v = d[at + j] - mean[c];
                    acc += v * v;
                }
            }
            out[c] += acc;
        }
}

/* Per-channel sums of dy and of dy * (x - mean), accumulated as channel_sum does. */
static void channel_grad_sums(const tensor *x, const tensor *dy, bn_shape s, const double *mean,
                              double *sum_dy, double *dotp) {
    bool f32 = x->dtype == DTYPE_FLOAT32;
    const float *xf = f32 ? tensor_data(x) : NULL, *gf = f32 ? tensor_data(dy) : NULL;
    const double *xd = f32 ? NULL : tensor_data(x), *gd = f32 ? NULL : tensor_data(dy);
    for (int64_t c = 0; c < s.c; c++) sum_dy[c] = dotp[c] = 0;
    for (int64_t i = 0; i < s.n; i++)
        for (int64_t c = 0; c < s.c; c++) {
            int64_t at = (i * s.c + c) * s.l;
            for (int64_t j = 0; j < s.l; j++) {
                if (f32) {
                    sum_dy[c] = (float)sum_dy[c] + gf[at + j];
                    dotp[c] = (float)dotp[c] + (xf[at + j] - (float)mean[c]) * gf[at + j];
                } else {
                    sum_dy[c] += gd[at + j];
                    dotp[c] += (xd[at + j] - mean[c]) * gd[at + j];
                }
            }
        }
}

/* y = x * alpha + beta per channel. */
static void apply_affine(const tensor *x, bn_shape s, const double *alpha, const double *beta,
                         tensor *y) {
    bool f32 = x->dtype == DTYPE_FLOAT32;
    for (int64_t i = 0; i < s.n; i++)
        for (int64_t c = 0; c < s.c; c++) {
            int64_t at = (i * s.c + c) * s.l;
            if (f32) {
                const float *xf = tensor_data(x);
                float *yf = tensor_data(y), a = (float)alpha[c], b = (float)beta[c];
                for (int64_t j = 0; j < s.l; j++) yf[at + j] = fmaf(xf[at + j], a, b);
            } else {
                const double *xd = tensor_data(x);
                double *yd = tensor_data(y);
                for (int64_t j = 0; j < s.l; j++) yd[at + j] = xd[at + j] * alpha[c] + beta[c];
            }
        }
}

/* The value of a (C) parameter at c as double, or `def` when absent. */
static double param_at(const tensor *p, int64_t c, double def) {
    return p ? tensor_get(p, c) : def;
}

/* Writes v into element i of a contiguous float32 or float64 buffer. */
static void store(dtype dt, void *data, int64_t i, double v) {
    if (dt == DTYPE_FLOAT32)
        ((float *)data)[i] = (float)v;
    else
        ((double *)data)[i] = v;
}

/* Rounds v to x's dtype (float32 arithmetic is emulated by rounding each step). */
static double round_to(dtype dt, double v) {
    return dt == DTYPE_FLOAT32 ? (double)(float)v : v;
}

/* ---- backward ---------------------------------------------------------------------- */

/* saved: [0] x (contiguous), [1] weight or NULL, [2] mean (C, float64), [3] invstd (C,
 * float64, already rounded to x's dtype); flag = batch statistics were used; scalar2 =
 * the count n over every process; ctx = a bn_ctx holding the reducer (NULL: none). */
typedef struct {
    bn_reducer r;
} bn_ctx;

static void bn_ctx_release(void *p) {
    bn_ctx *c = p;
    if (!c) return;
    reducer_release(&c->r);
    free(c);
}

static ddp_status batch_norm_backward(ag_node *node, const tensor *grad, tensor **gi) {
    const tensor *x = node->saved[0], *w = node->saved[1];
    const double *mean = tensor_data(node->saved[2]), *invstd = tensor_data(node->saved[3]);
    bn_shape s = {x->sizes[0], x->sizes[1], x->ndim == 3 ? x->sizes[2] : 1};
    dtype dt = x->dtype;
    tensor *dy;
    DDP_CHECK(tensor_contiguous(grad, &dy));
    double *sums = ddp_malloc(sizeof(double) * 4 * (size_t)s.c);
    if (!sums) {
        tensor_release(dy);
        return DDP_FAIL(DDP_ERR_NOMEM, "batch_norm backward: out of memory");
    }
    double *sum_dy = sums, *dotp = sums + s.c, *g_sum_dy = sums + 2 * s.c, *g_dotp = sums + 3 * s.c;
    channel_grad_sums(x, dy, s, mean, sum_dy, dotp);
    memcpy(g_sum_dy, sum_dy, sizeof(double) * 2 * (size_t)s.c);
    bn_ctx *ctx = node->ctx;
    ddp_status st = DDP_OK;
    if (node->flag && ctx && node->edges[0].needed) st = ctx->r.sum(ctx->r.ctx, g_sum_dy, 2 * s.c);
    double count = node->scalar2;
    if (st == DDP_OK && node->edges[0].needed) st = tensor_empty_like(x, &gi[0]);
    if (st == DDP_OK && node->edges[0].needed) {
        bool f32 = dt == DTYPE_FLOAT32;
        for (int64_t c = 0; c < s.c; c++) {
            double wc = param_at(w, c, 1.0), is = invstd[c];
            /* k and the mean gradient in x's dtype, as PyTorch's opmath */
            double k = round_to(dt, round_to(dt, round_to(dt, g_dotp[c] * is) * is) / count);
            double gm = round_to(dt, g_sum_dy[c] / count);
            for (int64_t i = 0; i < s.n; i++) {
                int64_t at = (i * s.c + c) * s.l;
                for (int64_t j = 0; j < s.l; j++) {
                    if (f32) {
                        const float *xf = tensor_data(x), *gf = tensor_data(dy);
                        float *of = tensor_data(gi[0]);
                        float m = (float)mean[c];
                        float v = node->flag
                                      ? ((gf[at + j] - (float)gm) - (xf[at + j] - m) * (float)k) *
                                            (float)is * (float)wc
                                      : gf[at + j] * (float)is * (float)wc;
                        of[at + j] = v;
                    } else {
                        const double *xd = tensor_data(x), *gd = tensor_data(dy);
                        double *od = tensor_data(gi[0]);
                        od[at + j] =
                            node->flag ? ((gd[at + j] - gm) - (xd[at + j] - mean[c]) * k) * is * wc
                                       : gd[at + j] * is * wc;
                    }
                }
            }
        }
    }
    int64_t c_size = s.c;
    if (st == DDP_OK && node->edges[1].needed)
        st = tensor_empty(&c_size, 1, dt, DEVICE_CPU_VALUE, &gi[1]);
    if (st == DDP_OK && node->edges[1].needed)
        for (int64_t c = 0; c < s.c; c++)
            store(dt, tensor_data(gi[1]), c, round_to(dt, dotp[c]) * invstd[c]);
    if (st == DDP_OK && node->edges[2].needed)
        st = tensor_empty(&c_size, 1, dt, DEVICE_CPU_VALUE, &gi[2]);
    if (st == DDP_OK && node->edges[2].needed)
        for (int64_t c = 0; c < s.c; c++) store(dt, tensor_data(gi[2]), c, sum_dy[c]);
    free(sums);
    tensor_release(dy);
    return st;
}

/* ---- forward ----------------------------------------------------------------------- */

static ddp_status check_args(const tensor *x, const tensor *weight, const tensor *bias,
                             const tensor *rm, const tensor *rv, bool training) {
    char a[64];
    if (x->ndim != 2 && x->ndim != 3)
        return DDP_FAIL(DDP_ERR_ARG, "batch_norm: expected 2D or 3D input (got %dD input %s)",
                        x->ndim, tensor_shape_str(x, a, sizeof a));
    if (!dtype_is_float(x->dtype))
        return DDP_FAIL(DDP_ERR_ARG, "batch_norm: needs a floating point input, got %s",
                        dtype_name(x->dtype));
    const struct {
        const tensor *t;
        const char *name;
    } params[] = {{rm, "running_mean"}, {rv, "running_var"}, {weight, "weight"}, {bias, "bias"}};
    for (int i = 0; i < 4; i++) {
        const tensor *p = params[i].t;
        if (!p) continue;
        if (p->ndim != 1 || p->sizes[0] != x->sizes[1])
            return DDP_FAIL(DDP_ERR_ARG,
                            "batch_norm: %s should contain %" PRId64 " elements not %" PRId64
                            " (the input %s has %" PRId64 " channels in dimension 1)",
                            params[i].name, x->sizes[1], tensor_numel(p),
                            tensor_shape_str(x, a, sizeof a), x->sizes[1]);
        if (p->dtype != x->dtype)
            return DDP_FAIL(DDP_ERR_ARG, "batch_norm: %s is %s but the input is %s", params[i].name,
                            dtype_name(p->dtype), dtype_name(x->dtype));
        if (!device_equal(p->storage->device, x->storage->device)) {
            char da[16], db[16];
            return DDP_FAIL(DDP_ERR_ARG, "batch_norm: %s is on %s but the input is on %s",
                            params[i].name, device_name(p->storage->device, da, sizeof da),
                            device_name(x->storage->device, db, sizeof db));
        }
    }
    int64_t per_channel = tensor_numel(x) / (x->sizes[1] ? x->sizes[1] : 1);
    if (training && per_channel <= 1)
        return DDP_FAIL(DDP_ERR_ARG,
                        "batch_norm: expected more than 1 value per channel when training, got "
                        "input size %s",
                        tensor_shape_str(x, a, sizeof a));
    return DDP_OK;
}

/* The op on a GPU's tensors: the CPU op on host copies, joined to the graph by device
 * moves (ag_to_device: the gradients of x, weight and bias go back to the GPU), the
 * running statistics copied back after. Correct and slow (a kernel of its own later). */
static ddp_status batch_norm_via_host(const tensor *x, const tensor *weight, const tensor *bias,
                                      tensor *running_mean, tensor *running_var, bool training,
                                      double momentum, double eps, const bn_reducer *reducer,
                                      tensor **out) {
    const device cpu = DEVICE_CPU_VALUE;
    tensor *hx = NULL, *hw = NULL, *hb = NULL, *hm = NULL, *hv = NULL, *hy = NULL;
    ddp_status st = ag_to_device(x, cpu, x->dtype, &hx);
    if (st == DDP_OK && weight) st = ag_to_device(weight, cpu, weight->dtype, &hw);
    if (st == DDP_OK && bias) st = ag_to_device(bias, cpu, bias->dtype, &hb);
    if (st == DDP_OK && running_mean)
        st = tensor_to_device(running_mean, cpu, running_mean->dtype, &hm);
    if (st == DDP_OK && running_var)
        st = tensor_to_device(running_var, cpu, running_var->dtype, &hv);
    if (st == DDP_OK)
        st = ag_batch_norm(hx, hw, hb, hm, hv, training, momentum, eps, reducer, &hy);
    else
        reducer_release(reducer);
    if (st == DDP_OK && hm) st = tensor_copy_(running_mean, hm);
    if (st == DDP_OK && hv) st = tensor_copy_(running_var, hv);
    if (st == DDP_OK) st = ag_to_device(hy, x->storage->device, hy->dtype, out);
    tensor *all[] = {hx, hw, hb, hm, hv, hy};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) tensor_release(all[i]);
    return st;
}

ddp_status ag_batch_norm(const tensor *x_in, const tensor *weight, const tensor *bias,
                         tensor *running_mean, tensor *running_var, bool training, double momentum,
                         double eps, const bn_reducer *reducer, tensor **out) {
    *out = NULL;
    ddp_status st = check_args(x_in, weight, bias, running_mean, running_var, training);
    if (st != DDP_OK) {
        reducer_release(reducer);
        return st;
    }
    if (!tensor_is_cpu(x_in))
        return batch_norm_via_host(x_in, weight, bias, running_mean, running_var, training,
                                   momentum, eps, reducer, out);
    bool batch_stats = training || !running_mean || !running_var;
    tensor *x = NULL, *y = NULL, *mean_t = NULL, *invstd_t = NULL;
    bn_shape s = {x_in->sizes[0], x_in->sizes[1], x_in->ndim == 3 ? x_in->sizes[2] : 1};
    int64_t c_size = s.c;
    double *buf = ddp_malloc(sizeof(double) * (2 * (size_t)s.c + 1));
    dtype dt = x_in->dtype;
    if (!buf) st = DDP_FAIL(DDP_ERR_NOMEM, "batch_norm: out of memory");
    if (st == DDP_OK) st = tensor_contiguous(x_in, &x);
    if (st == DDP_OK) st = tensor_empty_like(x, &y);
    if (st == DDP_OK) st = tensor_empty(&c_size, 1, DTYPE_FLOAT64, DEVICE_CPU_VALUE, &mean_t);
    if (st == DDP_OK) st = tensor_empty(&c_size, 1, DTYPE_FLOAT64, DEVICE_CPU_VALUE, &invstd_t);
    double count = (double)(s.n * s.l);
    if (st == DDP_OK) {
        double *mean = tensor_data(mean_t), *invstd = tensor_data(invstd_t);
        if (batch_stats) {
            channel_sum(x, s, buf);
            buf[s.c] = count;
            if (reducer) st = reducer->sum(reducer->ctx, buf, s.c + 1);
            count = buf[s.c];
            for (int64_t c = 0; st == DDP_OK && c < s.c; c++)
                mean[c] = round_to(dt, buf[c] / count);
            if (st == DDP_OK) channel_sq(x, s, mean, buf);
            if (st == DDP_OK && reducer) st = reducer->sum(reducer->ctx, buf, s.c);
            for (int64_t c = 0; st == DDP_OK && c < s.c; c++) {
                double var_sum = round_to(dt, buf[c]);
                invstd[c] = round_to(dt, 1.0 / sqrt(round_to(dt, var_sum / count) + eps));
                if (running_mean && running_var && training) {
                    double m = round_to(dt, momentum), rest = round_to(dt, 1.0 - m);
                    double rm = tensor_get(running_mean, c), rv = tensor_get(running_var, c);
                    double unbiased = round_to(dt, var_sum / (count - 1));
                    store(dt, tensor_data(running_mean), c,
                          round_to(dt, round_to(dt, m * mean[c]) + round_to(dt, rest * rm)));
                    store(dt, tensor_data(running_var), c, m * unbiased + round_to(dt, rest * rv));
                }
            }
        } else {
            for (int64_t c = 0; c < s.c; c++) {
                mean[c] = tensor_get(running_mean, c);
                invstd[c] =
                    round_to(dt, 1.0 / round_to(dt, sqrt(round_to(dt, tensor_get(running_var, c) +
                                                                          round_to(dt, eps)))));
            }
        }
        if (st == DDP_OK && running_mean && running_var && training) {
            tensor_bump_version(running_mean);
            tensor_bump_version(running_var);
        }
        for (int64_t c = 0; st == DDP_OK && c < s.c; c++) {
            double alpha = round_to(dt, invstd[c] * param_at(weight, c, 1.0));
            buf[c] = alpha;
            buf[s.c + c] = dt == DTYPE_FLOAT32 ? (double)fmaf(-(float)mean[c], (float)alpha,
                                                              (float)param_at(bias, c, 0.0))
                                               : param_at(bias, c, 0.0) - mean[c] * alpha;
        }
        if (st == DDP_OK) apply_affine(x, s, buf, buf + s.c, y);
    }
    free(buf);
    ag_node *node = NULL;
    if (st == DDP_OK) {
        const tensor *in[3] = {x_in, weight, bias};
        st = ag_record("NativeBatchNormBackward0", batch_norm_backward, in, 3, y, out, &node);
        y = NULL; /* ag_record owns it now */
    }
    if (node) {
        bn_ctx *ctx = NULL;
        if (reducer) {
            ctx = ddp_malloc(sizeof *ctx);
            if (!ctx) {
                st = DDP_FAIL(DDP_ERR_NOMEM, "batch_norm: out of memory");
            } else {
                ctx->r = *reducer;
                reducer = NULL; /* the node owns it */
            }
        }
        if (st == DDP_OK) {
            node->ctx = ctx;
            node->ctx_release = bn_ctx_release;
            node->flag = batch_stats;
            node->scalar2 = count;
            ag_save(node, 0, x);
            if (weight) ag_save(node, 1, weight);
            ag_save(node, 2, mean_t);
            ag_save(node, 3, invstd_t);
        } else {
            tensor_release(*out);
            *out = NULL;
        }
    }
    reducer_release(reducer);
    tensor_release(y);
    tensor_release(x);
    tensor_release(mean_t);
    tensor_release(invstd_t);
    return st;
}
