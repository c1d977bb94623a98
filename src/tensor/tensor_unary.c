/* tensor_unary.c — unary element-wise ops (neg, sqrt, exp, log, abs, relu, tanh, sigmoid,
 * sign) and clamp, out of place and in place. On the CPU, float32 rows with unit
 * strides run tight loops (one per op, the op fixed at compile time); other dtypes go
 * through double, or int64 for the ops that keep integers (neg, abs, relu, sign). The
 * unary ops share their checks with the GPU: unary_into sends a result on a GPU to
 * tensor_device_unary (kernel in tensor_cuda.cu). clamp is CPU only so far. */
#include "tensor/tensor.h"
#include "tensor/tensor_internal.h"

#include <math.h>
#include <stdio.h>

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("tree-vectorize", "vect-cost-model=dynamic") /* see tensor_elementwise.c */
#endif

#define INLINE static inline __attribute__((always_inline))

const char *unary_op_name(unary_op op) {
    static const char *names[] = {"neg",  "sqrt", "exp",     "log", "abs",
                                  "relu", "tanh", "sigmoid", "sign"};
    return (unsigned)op < sizeof names / sizeof names[0] ? names[op] : "?";
}

/* ---- unary ops ------------------------------------------------------------------- */

static bool unary_needs_float(unary_op op) {
    return op == UNARY_SQRT || op == UNARY_EXP || op == UNARY_LOG || op == UNARY_TANH ||
           op == UNARY_SIGMOID;
}

INLINE float f32_unary(unary_op op, float x) {
    switch (op) {
    case UNARY_NEG:
        return -x;
    case UNARY_SQRT:
        return sqrtf(x);
    case UNARY_EXP:
        return expf(x);
    case UNARY_LOG:
        return logf(x);
    case UNARY_ABS:
        return fabsf(x);
    case UNARY_RELU:
        return x < 0.0f ? 0.0f : x; /* NaN stays NaN, as in PyTorch */
    case UNARY_TANH:
        return tanhf(x);
    case UNARY_SIGMOID:
        return 1.0f / (1.0f + expf(-x));
    case UNARY_SIGN:
        return (float)((x > 0.0f) - (x < 0.0f));
    }
    return 0;
}

INLINE void f32_unary_loop(unary_op op, float *o, int64_t so, const float *a, int64_t sa,
                           int64_t n) {
    if (so == 1 && sa == 1)
        for (int64_t i = 0; i < n; i++) o[i] = f32_unary(op, a[i]);
    else
        for (int64_t i = 0; i < n; i++) o[i * so] = f32_unary(op, a[i * sa]);
}

/* The switch looks redundant but is the point: each case inlines f32_unary_loop with a
 * constant op, so the compiler drops the per-element switch and vectorises the loop. */
static void f32_unary_row(unary_op op, float *o, int64_t so, const float *a, int64_t sa,
                          int64_t n) {
    switch (op) {
    case UNARY_NEG:
        f32_unary_loop(UNARY_NEG, o, so, a, sa, n);
        break;
    case UNARY_SQRT:
        f32_unary_loop(UNARY_SQRT, o, so, a, sa, n);
        break;
    case UNARY_EXP:
        f32_unary_loop(UNARY_EXP, o, so, a, sa, n);
        break;
    case UNARY_LOG:
        f32_unary_loop(UNARY_LOG, o, so, a, sa, n);
        break;
    case UNARY_ABS:
        f32_unary_loop(UNARY_ABS, o, so, a, sa, n);
        break;
    case UNARY_RELU:
        f32_unary_loop(UNARY_RELU, o, so, a, sa, n);
        break;
    case UNARY_TANH:
        f32_unary_loop(UNARY_TANH, o, so, a, sa, n);
        break;
    case UNARY_SIGMOID:
        f32_unary_loop(UNARY_SIGMOID, o, so, a, sa, n);
        break;
    case UNARY_SIGN:
        f32_unary_loop(UNARY_SIGN, o, so, a, sa, n);
        break;
    }
}

static double f64_unary(unary_op op, double x) {
    switch (op) {
    case UNARY_NEG:
        return -x;
    case UNARY_SQRT:
        return sqrt(x);
    case UNARY_EXP:
        return exp(x);
    case UNARY_LOG:
        return log(x);
    case UNARY_ABS:
        return fabs(x);
    case UNARY_RELU:
        return x < 0.0 ? 0.0 : x;
    case UNARY_TANH:
        return tanh(x);
    case UNARY_SIGMOID:
        return 1.0 / (1.0 + exp(-x));
    case UNARY_SIGN:
        return (double)((x > 0.0) - (x < 0.0));
    }
    return 0;
}

static int64_t i64_unary(unary_op op, int64_t x) {
    switch (op) {
    case UNARY_NEG:
        return (int64_t)(0 - (uint64_t)x);
    case UNARY_ABS:
        return x < 0 ? (int64_t)(0 - (uint64_t)x) : x;
    case UNARY_RELU:
        return x < 0 ? 0 : x;
    case UNARY_SIGN:
        return (x > 0) - (x < 0);
    default:
        return 0; /* float ops never compute in int64 */
    }
}

/* out = op(a) on the CPU; out has a's shape (out may be a). */
static void unary_into_cpu(unary_op op, tensor *out, const tensor *a) {
    const int64_t *strides[2] = {out->strides, a->strides};
    int64_t offsets[2] = {out->offset, a->offset};
    tensor_iter it;
    tensor_iter_init(&it, out->ndim, out->sizes, 2, strides, offsets);
    bool f32 = out->dtype == DTYPE_FLOAT32 && a->dtype == DTYPE_FLOAT32;
    bool ints = !dtype_is_float(out->dtype) && !unary_needs_float(op);
    for (int64_t r = 0; r < it.rows; r++) {
        int64_t oo = it.offsets[0], so = it.inner_strides[0];
        int64_t ao = it.offsets[1], sa = it.inner_strides[1];
        if (f32) {
            f32_unary_row(op, (float *)out->storage->data + oo, so,
                          (const float *)a->storage->data + ao, sa, it.inner);
        } else if (ints) {
            for (int64_t i = 0; i < it.inner; i++)
                tensor_store_int64(
                    out->dtype, out->storage->data, oo + i * so,
                    i64_unary(op, tensor_load_int64(a->dtype, a->storage->data, ao + i * sa)));
        } else {
            for (int64_t i = 0; i < it.inner; i++) {
                double x = tensor_load(a->dtype, a->storage->data, ao + i * sa);
                if (out->dtype == DTYPE_FLOAT32) x = (float)x;
                tensor_store(out->dtype, out->storage->data, oo + i * so, f64_unary(op, x));
            }
        }
        tensor_iter_next_row(&it);
    }
}

static dtype unary_result_dtype(unary_op op, dtype a) {
    if (unary_needs_float(op) && !dtype_is_float(a)) return DTYPE_FLOAT32;
    return a; /* bool stays bool for abs, relu and sign, as in PyTorch; neg is refused */
}

/* out = op(a): the op layer's one choice of backend, by the result's device. A GPU
 * kernel computes in the result's float dtype, or in int64 for the integer ops. */
static ddp_status unary_into(unary_op op, tensor *out, const tensor *a) {
    if (tensor_is_cpu(out)) {
        unary_into_cpu(op, out, a);
        return DDP_OK;
    }
    dtype compute = dtype_is_float(out->dtype) ? out->dtype : DTYPE_INT64;
    return tensor_device_unary(op, compute, out, a);
}

/* PyTorch refuses -t for a bool tensor: the learner almost always meant "not". */
static ddp_status check_bool_neg(unary_op op, const tensor *a) {
    if (op == UNARY_NEG && a->dtype == DTYPE_BOOL)
        return DDP_FAIL(DDP_ERR_ARG, "neg: negating a bool tensor is not supported (as in "
                                     "PyTorch); to invert a mask use t:eq(false)");
    return DDP_OK;
}

ddp_status tensor_unary(unary_op op, const tensor *a, tensor **out) {
    *out = NULL;
    DDP_CHECK(check_bool_neg(op, a));
    tensor *r;
    DDP_CHECK(
        tensor_empty(a->sizes, a->ndim, unary_result_dtype(op, a->dtype), a->storage->device, &r));
    ddp_status s = unary_into(op, r, a);
    if (s != DDP_OK) {
        tensor_release(r);
        return s;
    }
    *out = r;
    return DDP_OK;
}

ddp_status tensor_unary_(unary_op op, tensor *a) {
    DDP_CHECK(check_bool_neg(op, a));
    char inplace_name[32];
    snprintf(inplace_name, sizeof inplace_name, "%s_", unary_op_name(op));
    DDP_CHECK(tensor_check_writable(inplace_name, a));
    DDP_CHECK(
        tensor_check_inplace_dtype(unary_op_name(op), unary_result_dtype(op, a->dtype), a->dtype));
    DDP_CHECK(unary_into(op, a, a));
    tensor_bump_version(a);
    return DDP_OK;
}

/* ---- clamp ------------------------------------------------------------- */

static void clamp_into(tensor *out, const tensor *a, bool has_lo, double lo, bool has_hi,
                       double hi) {
    const int64_t *strides[2] = {out->strides, a->strides};
    int64_t offsets[2] = {out->offset, a->offset};
    tensor_iter it;
    tensor_iter_init(&it, out->ndim, out->sizes, 2, strides, offsets);
    bool f32 = out->dtype == DTYPE_FLOAT32 && a->dtype == DTYPE_FLOAT32;
    float lo_f = has_lo ? (float)lo : -INFINITY, hi_f = has_hi ? (float)hi : INFINITY;
    /* An integer result with whole bounds (see clamp_result_dtype) is clamped in int64:
     * through double, values beyond 2^53 would lose their last digits. */
    bool ints = out->dtype == DTYPE_INT64;
    int64_t lo_i = ints && has_lo ? (int64_t)lo : 0, hi_i = ints && has_hi ? (int64_t)hi : 0;
    for (int64_t r = 0; r < it.rows; r++) {
        int64_t oo = it.offsets[0], so = it.inner_strides[0];
        int64_t ao = it.offsets[1], sa = it.inner_strides[1];
        if (f32) {
            float *o = (float *)out->storage->data + oo;
            const float *x = (const float *)a->storage->data + ao;
            for (int64_t i = 0; i < it.inner; i++) {
                float v = x[i * sa];
                v = v < lo_f ? lo_f : v;
                o[i * so] = v > hi_f ? hi_f : v;
            }
        } else if (ints) {
            for (int64_t i = 0; i < it.inner; i++) {
                int64_t v = tensor_load_int64(a->dtype, a->storage->data, ao + i * sa);
                if (has_lo && v < lo_i) v = lo_i;
                if (has_hi && v > hi_i) v = hi_i;
                tensor_store_int64(out->dtype, out->storage->data, oo + i * so, v);
            }
        } else {
            for (int64_t i = 0; i < it.inner; i++) {
                double v = tensor_load(a->dtype, a->storage->data, ao + i * sa);
                if (has_lo && v < lo) v = lo;
                if (has_hi && v > hi) v = hi;
                tensor_store(out->dtype, out->storage->data, oo + i * so, v);
            }
        }
        tensor_iter_next_row(&it);
    }
}

static dtype clamp_result_dtype(const tensor *a, bool has_lo, double lo, bool has_hi, double hi) {
    if (dtype_is_float(a->dtype)) return a->dtype;
    if ((has_lo && !tensor_is_integral(lo)) || (has_hi && !tensor_is_integral(hi)))
        return DTYPE_FLOAT32;
    return a->dtype == DTYPE_BOOL ? DTYPE_INT64 : a->dtype;
}

ddp_status tensor_clamp(const tensor *a, bool has_lo, double lo, bool has_hi, double hi,
                        tensor **out) {
    *out = NULL;
    DDP_CHECK(tensor_check_cpu("clamp", a));
    if (!has_lo && !has_hi) return DDP_FAIL(DDP_ERR_ARG, "clamp: give at least one of min and max");
    tensor *r;
    DDP_CHECK(tensor_empty(a->sizes, a->ndim, clamp_result_dtype(a, has_lo, lo, has_hi, hi),
                           a->storage->device, &r));
    clamp_into(r, a, has_lo, lo, has_hi, hi);
    *out = r;
    return DDP_OK;
}

ddp_status tensor_clamp_(tensor *a, bool has_lo, double lo, bool has_hi, double hi) {
    DDP_CHECK(tensor_check_cpu("clamp_", a));
    DDP_CHECK(tensor_check_writable("clamp_", a));
    if (!has_lo && !has_hi)
        return DDP_FAIL(DDP_ERR_ARG, "clamp_: give at least one of min and max");
    DDP_CHECK(tensor_check_inplace_dtype("clamp", clamp_result_dtype(a, has_lo, lo, has_hi, hi),
                                         a->dtype));
    clamp_into(a, a, has_lo, lo, has_hi, hi);
    tensor_bump_version(a);
    return DDP_OK;
}
