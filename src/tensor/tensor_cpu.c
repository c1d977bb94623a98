/* tensor_cpu.c — the CPU kernels of the element-wise ops (tensor_kernels.h): binary ops
 * with broadcasting, the unary ops, clamp and add_scaled, and the optimizer steps (their
 * element formula shared with CUDA in optim_math.h). The ops' checks, dtype rules
 * and allocation are in tensor_elementwise.c and tensor_unary.c; the reductions' kernels
 * and GEMM are in tensor_cpu_reduce.c.
 *
 * Every kernel walks its operands with the strided iterator of tensor_internal.h, one
 * row (the innermost coalesced dim) at a time. Rows where everything is float32 with unit
 * or zero strides run tight loops the compiler vectorises: this covers same-shape
 * contiguous tensors, tensor op scalar, and the row broadcast (N x C) op (C); a float32
 * result with a bool or int64 operand (a gradient times a relu mask) converts that
 * operand by chunks and runs the same loops, and float32 comparisons write bool rows
 * directly. Every other row goes through small chunks of double (or int64, when the op
 * computes in integers), which is exact for the float32 results of + - * /. */
#include "tensor/tensor_internal.h"
#include "tensor/tensor_kernels.h"
#include "tensor/scalar_math.h"

#include <math.h>
#include <string.h>

/* Debian's GCC does not vectorise at -O2; these loops are the hot path of small-model
 * training, so ask for it here rather than changing the flags of the whole project
 * (tensor_cpu_reduce.c does the same). */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("tree-vectorize", "vect-cost-model=dynamic")
#endif

#define INLINE static inline __attribute__((always_inline))
#define CHUNK 256

/* ---- binary ops: row kernels ----------------------------------------------------------------- */

INLINE float f32_apply(binary_op op, float x, float y) {
    switch (op) {
    case BINARY_ADD:
        return x + y;
    case BINARY_SUB:
        return x - y;
    case BINARY_MUL:
        return x * y;
    case BINARY_DIV:
        return x / y;
    case BINARY_POW:
        return powf(x, y);
    case BINARY_MAXIMUM:
        return (x != x || x > y) ? x : y; /* NaN propagates */
    case BINARY_MINIMUM:
        return (x != x || x < y) ? x : y;
    default:
        return 0;
    }
}

/* o[i] = a[i*sa] op b[i*sb] with op a constant after inlining. */
INLINE void f32_loop(binary_op op, float *o, const float *a, int64_t sa, const float *b, int64_t sb,
                     int64_t n) {
    if (sa == 1 && sb == 1) {
        for (int64_t i = 0; i < n; i++) o[i] = f32_apply(op, a[i], b[i]);
    } else if (sa == 1 && sb == 0) {
        float y = b[0];
        for (int64_t i = 0; i < n; i++) o[i] = f32_apply(op, a[i], y);
    } else if (sa == 0 && sb == 1) {
        float x = a[0];
        for (int64_t i = 0; i < n; i++) o[i] = f32_apply(op, x, b[i]);
    } else {
        for (int64_t i = 0; i < n; i++) o[i] = f32_apply(op, a[i * sa], b[i * sb]);
    }
}

static void f32_row(binary_op op, float *o, const float *a, int64_t sa, const float *b, int64_t sb,
                    int64_t n) {
    switch (op) {
    case BINARY_ADD:
        f32_loop(BINARY_ADD, o, a, sa, b, sb, n);
        break;
    case BINARY_SUB:
        f32_loop(BINARY_SUB, o, a, sa, b, sb, n);
        break;
    case BINARY_MUL:
        f32_loop(BINARY_MUL, o, a, sa, b, sb, n);
        break;
    case BINARY_DIV:
        f32_loop(BINARY_DIV, o, a, sa, b, sb, n);
        break;
    case BINARY_POW:
        f32_loop(BINARY_POW, o, a, sa, b, sb, n);
        break;
    case BINARY_MAXIMUM:
        f32_loop(BINARY_MAXIMUM, o, a, sa, b, sb, n);
        break;
    case BINARY_MINIMUM:
        f32_loop(BINARY_MINIMUM, o, a, sa, b, sb, n);
        break;
    default:
        break;
    }
}

static void f64_apply(binary_op op, double *r, const double *x, const double *y, int64_t n) {
    switch (op) {
    case BINARY_ADD:
        for (int64_t i = 0; i < n; i++) r[i] = x[i] + y[i];
        break;
    case BINARY_SUB:
        for (int64_t i = 0; i < n; i++) r[i] = x[i] - y[i];
        break;
    case BINARY_MUL:
        for (int64_t i = 0; i < n; i++) r[i] = x[i] * y[i];
        break;
    case BINARY_DIV:
        for (int64_t i = 0; i < n; i++) r[i] = x[i] / y[i];
        break;
    case BINARY_POW:
        for (int64_t i = 0; i < n; i++) r[i] = pow(x[i], y[i]);
        break;
    case BINARY_MAXIMUM:
        for (int64_t i = 0; i < n; i++) r[i] = (x[i] != x[i] || x[i] > y[i]) ? x[i] : y[i];
        break;
    case BINARY_MINIMUM:
        for (int64_t i = 0; i < n; i++) r[i] = (x[i] != x[i] || x[i] < y[i]) ? x[i] : y[i];
        break;
    case BINARY_EQ:
        for (int64_t i = 0; i < n; i++) r[i] = x[i] == y[i];
        break;
    case BINARY_NE:
        for (int64_t i = 0; i < n; i++) r[i] = x[i] != y[i];
        break;
    case BINARY_LT:
        for (int64_t i = 0; i < n; i++) r[i] = x[i] < y[i];
        break;
    case BINARY_LE:
        for (int64_t i = 0; i < n; i++) r[i] = x[i] <= y[i];
        break;
    case BINARY_GT:
        for (int64_t i = 0; i < n; i++) r[i] = x[i] > y[i];
        break;
    case BINARY_GE:
        for (int64_t i = 0; i < n; i++) r[i] = x[i] >= y[i];
        break;
    }
}

static void i64_apply(binary_op op, int64_t *r, const int64_t *x, const int64_t *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        int64_t a = x[i], b = y[i];
        switch (op) {
        case BINARY_ADD:
            r[i] = (int64_t)((uint64_t)a + (uint64_t)b);
            break;
        case BINARY_SUB:
            r[i] = (int64_t)((uint64_t)a - (uint64_t)b);
            break;
        case BINARY_MUL:
            r[i] = (int64_t)((uint64_t)a * (uint64_t)b);
            break;
        case BINARY_DIV:
            r[i] = b ? a / b : 0;
            break; /* not reached: division is float */
        case BINARY_POW:
            r[i] = int64_pow(a, b);
            break;
        case BINARY_MAXIMUM:
            r[i] = a > b ? a : b;
            break;
        case BINARY_MINIMUM:
            r[i] = a < b ? a : b;
            break;
        case BINARY_EQ:
            r[i] = a == b;
            break;
        case BINARY_NE:
            r[i] = a != b;
            break;
        case BINARY_LT:
            r[i] = a < b;
            break;
        case BINARY_LE:
            r[i] = a <= b;
            break;
        case BINARY_GT:
            r[i] = a > b;
            break;
        case BINARY_GE:
            r[i] = a >= b;
            break;
        }
    }
}

/* One row of out = a op b through chunks of double or int64, any dtypes and strides. */
static void generic_row(binary_op op, dtype compute, tensor *out, int64_t oo, int64_t so,
                        const tensor *a, int64_t ao, int64_t sa, const tensor *b, int64_t bo,
                        int64_t sb, int64_t n) {
    void *od = out->storage->data;
    const void *ad = a->storage->data, *bd = b->storage->data;
    for (int64_t start = 0; start < n; start += CHUNK) {
        int64_t m = n - start < CHUNK ? n - start : CHUNK;
        int64_t ai = ao + start * sa, bi = bo + start * sb, oi = oo + start * so;
        if (compute == DTYPE_INT64) {
            int64_t x[CHUNK], y[CHUNK], r[CHUNK];
            tensor_load_row_int64(a->dtype, ad, ai, sa, x, m);
            tensor_load_row_int64(b->dtype, bd, bi, sb, y, m);
            i64_apply(op, r, x, y, m);
            tensor_store_row_int64(out->dtype, od, oi, so, r, m);
        } else {
            double x[CHUNK], y[CHUNK], r[CHUNK];
            tensor_load_row(a->dtype, ad, ai, sa, x, m);
            tensor_load_row(b->dtype, bd, bi, sb, y, m);
            if (compute == DTYPE_FLOAT32) /* operands first become float32, as in PyTorch */
                for (int64_t i = 0; i < m; i++) x[i] = (float)x[i], y[i] = (float)y[i];
            f64_apply(op, r, x, y, m);
            tensor_store_row(out->dtype, od, oi, so, r, m);
        }
    }
}

INLINE bool f32_compare(binary_op op, float x, float y) {
    switch (op) {
    case BINARY_EQ:
        return x == y;
    case BINARY_NE:
        return x != y;
    case BINARY_LT:
        return x < y;
    case BINARY_LE:
        return x <= y;
    case BINARY_GT:
        return x > y;
    case BINARY_GE:
        return x >= y;
    default:
        return false;
    }
}

INLINE void f32_compare_loop(binary_op op, bool *o, const float *a, int64_t sa, const float *b,
                             int64_t sb, int64_t n) {
    if (sa == 1 && sb == 1) {
        for (int64_t i = 0; i < n; i++) o[i] = f32_compare(op, a[i], b[i]);
    } else if (sa == 1 && sb == 0) {
        float y = b[0];
        for (int64_t i = 0; i < n; i++) o[i] = f32_compare(op, a[i], y);
    } else {
        for (int64_t i = 0; i < n; i++) o[i] = f32_compare(op, a[i * sa], b[i * sb]);
    }
}

/* Comparisons of float32 rows into a contiguous bool row (masks for relu and friends). */
static void f32_compare_row(binary_op op, bool *o, const float *a, int64_t sa, const float *b,
                            int64_t sb, int64_t n) {
    switch (op) {
    case BINARY_EQ:
        f32_compare_loop(BINARY_EQ, o, a, sa, b, sb, n);
        break;
    case BINARY_NE:
        f32_compare_loop(BINARY_NE, o, a, sa, b, sb, n);
        break;
    case BINARY_LT:
        f32_compare_loop(BINARY_LT, o, a, sa, b, sb, n);
        break;
    case BINARY_LE:
        f32_compare_loop(BINARY_LE, o, a, sa, b, sb, n);
        break;
    case BINARY_GT:
        f32_compare_loop(BINARY_GT, o, a, sa, b, sb, n);
        break;
    case BINARY_GE:
        f32_compare_loop(BINARY_GE, o, a, sa, b, sb, n);
        break;
    default:
        break;
    }
}

/* Points *p at a float32 view of n elements of t from `off` (stride *stride): t's own
 * data when it is float32, else `buf` filled by conversion (stride 1, or one element
 * with stride 0 for a broadcast scalar). */
static void as_f32(const tensor *t, int64_t off, int64_t *stride, int64_t n, float *buf,
                   const float **p) {
    if (t->dtype == DTYPE_FLOAT32) {
        *p = (const float *)t->storage->data + off;
        return;
    }
    int64_t st = *stride, count = st == 0 ? 1 : n; /* a local stride lets the loops vectorise */
    const void *base = t->storage->data;
    switch (t->dtype) {
    case DTYPE_BOOL: {
        const bool *x = (const bool *)base + off;
        for (int64_t i = 0; i < count; i++) buf[i] = x[i * st] ? 1.0f : 0.0f;
        break;
    }
    case DTYPE_INT64: {
        const int64_t *x = (const int64_t *)base + off;
        for (int64_t i = 0; i < count; i++) buf[i] = (float)x[i * st];
        break;
    }
    default:
        for (int64_t i = 0; i < count; i++)
            buf[i] = (float)tensor_load(t->dtype, base, off + i * st);
        break;
    }
    if (*stride != 0) *stride = 1;
    *p = buf;
}

/* One row of a float32 result whose operands are not all float32 (a float tensor times a
 * bool mask, an int64 tensor plus a float32 one): convert by chunks, then the fast loop. */
static void mixed_f32_row(binary_op op, float *o, const tensor *a, int64_t ao, int64_t sa,
                          const tensor *b, int64_t bo, int64_t sb, int64_t n) {
    float xa[CHUNK], xb[CHUNK];
    for (int64_t start = 0; start < n; start += CHUNK) {
        int64_t m = n - start < CHUNK ? n - start : CHUNK, ssa = sa, ssb = sb;
        const float *pa, *pb;
        as_f32(a, ao + start * sa, &ssa, m, xa, &pa);
        as_f32(b, bo + start * sb, &ssb, m, xb, &pb);
        f32_row(op, o + start, pa, ssa, pb, ssb, m);
    }
}

ddp_status cpu_binary(binary_op op, dtype compute, tensor *out, const tensor *a, const tensor *b) {
    const char *name = binary_op_name(op);
    int64_t astr[TENSOR_MAX_DIMS], bstr[TENSOR_MAX_DIMS];
    DDP_CHECK(tensor_broadcast_strides(name, a, out->sizes, out->ndim, astr));
    DDP_CHECK(tensor_broadcast_strides(name, b, out->sizes, out->ndim, bstr));
    const int64_t *strides[3] = {out->strides, astr, bstr};
    int64_t offsets[3] = {out->offset, a->offset, b->offset};
    tensor_iter it;
    tensor_iter_init(&it, out->ndim, out->sizes, 3, strides, offsets);
    bool unit_out = it.inner_strides[0] == 1;
    bool f32_in = a->dtype == DTYPE_FLOAT32 && b->dtype == DTYPE_FLOAT32;
    bool f32_out = compute == DTYPE_FLOAT32 && out->dtype == DTYPE_FLOAT32 && unit_out &&
                   !binary_op_is_comparison(op);
    bool f32_cmp = binary_op_is_comparison(op) && f32_in && out->dtype == DTYPE_BOOL && unit_out;
    for (int64_t r = 0; r < it.rows; r++) {
        float *o = f32_out ? (float *)out->storage->data + it.offsets[0] : NULL;
        const float *pa = f32_in ? (const float *)a->storage->data + it.offsets[1] : NULL;
        const float *pb = f32_in ? (const float *)b->storage->data + it.offsets[2] : NULL;
        int64_t sa = it.inner_strides[1], sb = it.inner_strides[2];
        if (f32_out && f32_in) {
            f32_row(op, o, pa, sa, pb, sb, it.inner);
        } else if (f32_out) {
            mixed_f32_row(op, o, a, it.offsets[1], sa, b, it.offsets[2], sb, it.inner);
        } else if (f32_cmp) {
            f32_compare_row(op, (bool *)out->storage->data + it.offsets[0], pa, sa, pb, sb,
                            it.inner);
        } else {
            generic_row(op, compute, out, it.offsets[0], it.inner_strides[0], a, it.offsets[1], sa,
                        b, it.offsets[2], sb, it.inner);
        }
        tensor_iter_next_row(&it);
    }
    return DDP_OK;
}

/* ---- unary ops ----------------------------------------------------------------- */

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

ddp_status cpu_unary(unary_op op, dtype compute, tensor *out, const tensor *a) {
    (void)compute; /* float32 rows run in float32, other floats through double */
    const int64_t *strides[2] = {out->strides, a->strides};
    int64_t offsets[2] = {out->offset, a->offset};
    tensor_iter it;
    tensor_iter_init(&it, out->ndim, out->sizes, 2, strides, offsets);
    bool f32 = out->dtype == DTYPE_FLOAT32 && a->dtype == DTYPE_FLOAT32;
    bool ints = !dtype_is_float(out->dtype); /* only the integer ops keep integers */
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
    return DDP_OK;
}

/* ---- clamp and add_scaled ------------------------------------------------------- */

ddp_status cpu_clamp(tensor *out, const tensor *a, bool has_lo, double lo, bool has_hi, double hi) {
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
    return DDP_OK;
}

ddp_status cpu_add_scaled(tensor *a, const tensor *b, double alpha) {
    int64_t bstr[TENSOR_MAX_DIMS];
    tensor_broadcast_strides("add_", b, a->sizes, a->ndim, bstr); /* checked by the op */
    const int64_t *strides[2] = {a->strides, bstr};
    int64_t offsets[2] = {a->offset, b->offset};
    tensor_iter it;
    tensor_iter_init(&it, a->ndim, a->sizes, 2, strides, offsets);
    bool fast = a->dtype == DTYPE_FLOAT32 && b->dtype == DTYPE_FLOAT32;
    float alpha_f = (float)alpha;
    for (int64_t r = 0; r < it.rows; r++) {
        int64_t sa = it.inner_strides[0], sb = it.inner_strides[1], n = it.inner;
        if (fast && sa == 1 && sb == 1) {
            float *x = (float *)a->storage->data + it.offsets[0];
            const float *y = (const float *)b->storage->data + it.offsets[1];
            for (int64_t i = 0; i < n; i++) x[i] += alpha_f * y[i];
        } else if (fast) {
            float *x = (float *)a->storage->data + it.offsets[0];
            const float *y = (const float *)b->storage->data + it.offsets[1];
            for (int64_t i = 0; i < n; i++) x[i * sa] += alpha_f * y[i * sb];
        } else if (!dtype_is_float(a->dtype)) {
            /* alpha is integral and below 2^63 (checked above); unsigned arithmetic wraps
             * as PyTorch's int64 does, with no undefined overflow */
            uint64_t k = (uint64_t)(int64_t)alpha;
            for (int64_t i = 0; i < n; i++) {
                int64_t ao = it.offsets[0] + i * sa;
                uint64_t x = (uint64_t)tensor_load_int64(a->dtype, a->storage->data, ao);
                uint64_t y =
                    (uint64_t)tensor_load_int64(b->dtype, b->storage->data, it.offsets[1] + i * sb);
                tensor_store_int64(a->dtype, a->storage->data, ao, (int64_t)(x + k * y));
            }
        } else {
            for (int64_t i = 0; i < n; i++) {
                int64_t ao = it.offsets[0] + i * sa;
                double v = tensor_load(a->dtype, a->storage->data, ao) +
                           alpha * tensor_load(b->dtype, b->storage->data, it.offsets[1] + i * sb);
                tensor_store(a->dtype, a->storage->data, ao, v);
            }
        }
        tensor_iter_next_row(&it);
    }
    return DDP_OK;
}

/* ---- optimizer steps -------------------------------------------------------------- */

ddp_status cpu_sgd(tensor *const *p, tensor *const *g, tensor *const *bufs, int n,
                   const optim_sgd_scalars *k) {
    for (int t = 0; t < n; t++) {
        int64_t count = tensor_numel(p[t]);
        tensor *buf = bufs ? bufs[t] : NULL;
        if (p[t]->dtype == DTYPE_FLOAT32) {
            float *pp = tensor_data(p[t]), *bp = buf ? tensor_data(buf) : NULL;
            const float *gp = tensor_data(g[t]);
            for (int64_t i = 0; i < count; i++)
                sgd_element_f32(pp + i, gp + i, bp ? bp + i : NULL, k);
        } else {
            double *pp = tensor_data(p[t]), *bp = buf ? tensor_data(buf) : NULL;
            const double *gp = tensor_data(g[t]);
            for (int64_t i = 0; i < count; i++)
                sgd_element_f64(pp + i, gp + i, bp ? bp + i : NULL, k);
        }
    }
    return DDP_OK;
}

ddp_status cpu_adam(tensor *const *p, tensor *const *g, tensor *const *m, tensor *const *v, int n,
                    const optim_adam_scalars *k) {
    for (int t = 0; t < n; t++) {
        int64_t count = tensor_numel(p[t]);
        if (p[t]->dtype == DTYPE_FLOAT32) {
            float *pp = tensor_data(p[t]), *mp = tensor_data(m[t]), *vp = tensor_data(v[t]);
            const float *gp = tensor_data(g[t]);
            for (int64_t i = 0; i < count; i++) adam_element_f32(pp + i, gp + i, mp + i, vp + i, k);
        } else {
            double *pp = tensor_data(p[t]), *mp = tensor_data(m[t]), *vp = tensor_data(v[t]);
            const double *gp = tensor_data(g[t]);
            for (int64_t i = 0; i < count; i++) adam_element_f64(pp + i, gp + i, mp + i, vp + i, k);
        }
    }
    return DDP_OK;
}

/* ---- the kernel table of CPU tensors ------------------------------------------------ */

const tensor_kernels tensor_cpu_kernels = {
    .binary = cpu_binary,
    .unary = cpu_unary,
    .clamp = cpu_clamp,
    .add_scaled = cpu_add_scaled,
    .accumulate = cpu_accumulate,
    .extreme = cpu_extreme,
    .softmax = cpu_softmax,
    .gemm = cpu_gemm,
    .sgd = cpu_sgd,
    .adam = cpu_adam,
};
