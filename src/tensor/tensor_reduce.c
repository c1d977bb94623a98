/* tensor_reduce.c — reductions on CPU tensors (sum, mean, prod, max, min, argmax, argmin,
 * 2-norm over all elements or one dim), max/min with indices, sum_to (the inverse of
 * broadcasting, for autograd), and softmax / log_softmax.
 *
 * Sums, products and norms accumulate in double (int64 sums in int64) into a buffer
 * shaped like the result with size-1 dims where t is reduced, walking t once with the
 * strided iterator: summing a (N x C) gradient down to (C) is then a vectorised row
 * loop. max/min/arg* and softmax walk along the reduced dim for each output element.
 * softmax subtracts the row maximum first so that exp never overflows. */
#include "tensor/tensor.h"
#include "base/alloc.h"
#include "tensor/tensor_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("tree-vectorize", "vect-cost-model=dynamic") /* see tensor_elementwise.c */
#endif

const char *reduce_op_name(reduce_op op) {
    static const char *names[] = {"sum", "mean", "prod", "max", "min", "argmax", "argmin", "norm"};
    return (unsigned)op < sizeof names / sizeof names[0] ? names[op] : "?";
}

/* Walks t (operand 1) together with a row-major buffer shaped `keep` (operand 0, offset
 * 0), whose strides are 0 where t is reduced: the walk both accumulators share. */
static void keep_iter_init(const tensor *t, const int64_t *keep, tensor_iter *it) {
    int64_t ks[TENSOR_MAX_DIMS], s = 1;
    for (int d = t->ndim - 1; d >= 0; d--) {
        ks[d] = keep[d] == 1 ? 0 : s;
        s *= keep[d];
    }
    const int64_t *strides[2] = {ks, t->strides};
    int64_t offsets[2] = {0, t->offset};
    tensor_iter_init(it, t->ndim, t->sizes, 2, strides, offsets);
}

/* acc (numel of keep) = sum / prod / sum of squares of t over the dims where keep is 1. */
static void accumulate_f64(reduce_op op, const tensor *t, const int64_t *keep, double *acc,
                           int64_t nacc) {
    double init = op == REDUCE_PROD ? 1.0 : 0.0;
    for (int64_t i = 0; i < nacc; i++) acc[i] = init;
    tensor_iter it;
    keep_iter_init(t, keep, &it);
    bool f32 = t->dtype == DTYPE_FLOAT32;
    for (int64_t r = 0; r < it.rows; r++) {
        double *a = acc + it.offsets[0];
        int64_t sa = it.inner_strides[0], st = it.inner_strides[1], n = it.inner;
        const float *x = f32 ? (const float *)t->storage->data + it.offsets[1] : NULL;
        if (f32 && op != REDUCE_PROD && sa == 0 && st == 1) {
            double s0 = 0, s1 = 0, s2 = 0,
                   s3 = 0; /* four chains: a long sum is not latency-bound */
            int64_t i = 0;
            if (op == REDUCE_NORM) {
                for (; i + 4 <= n; i += 4) {
                    s0 += (double)x[i] * x[i], s1 += (double)x[i + 1] * x[i + 1];
                    s2 += (double)x[i + 2] * x[i + 2], s3 += (double)x[i + 3] * x[i + 3];
                }
                for (; i < n; i++) s0 += (double)x[i] * x[i];
            } else {
                for (; i + 4 <= n; i += 4)
                    s0 += x[i], s1 += x[i + 1], s2 += x[i + 2], s3 += x[i + 3];
                for (; i < n; i++) s0 += x[i];
            }
            a[0] += (s0 + s1) + (s2 + s3);
        } else if (f32 && op != REDUCE_PROD && op != REDUCE_NORM && sa == 1 && st == 1) {
            for (int64_t i = 0; i < n; i++) a[i] += x[i];
        } else {
            for (int64_t i = 0; i < n; i++) {
                double v = tensor_load(t->dtype, t->storage->data, it.offsets[1] + i * st);
                if (op == REDUCE_PROD)
                    a[i * sa] *= v;
                else if (op == REDUCE_NORM)
                    a[i * sa] += v * v;
                else
                    a[i * sa] += v;
            }
        }
        tensor_iter_next_row(&it);
    }
}

/* The int64 twin of accumulate_f64 for sum and prod of integer tensors (exact). */
static void accumulate_i64(reduce_op op, const tensor *t, const int64_t *keep, int64_t *acc,
                           int64_t nacc) {
    for (int64_t i = 0; i < nacc; i++) acc[i] = op == REDUCE_PROD ? 1 : 0;
    tensor_iter it;
    keep_iter_init(t, keep, &it);
    for (int64_t r = 0; r < it.rows; r++) {
        for (int64_t i = 0; i < it.inner; i++) {
            uint64_t v = (uint64_t)tensor_load_int64(t->dtype, t->storage->data,
                                                     it.offsets[1] + i * it.inner_strides[1]);
            int64_t *a = acc + it.offsets[0] + i * it.inner_strides[0];
            *a = (int64_t)(op == REDUCE_PROD ? (uint64_t)*a * v : (uint64_t)*a + v);
        }
        tensor_iter_next_row(&it);
    }
}

/* DDP_ERR_ARG naming `op` unless t is float: mean, norm and softmax refuse integers, as
 * PyTorch does. */
static ddp_status need_float(const char *op, const tensor *t) {
    if (!dtype_is_float(t->dtype))
        return DDP_FAIL(DDP_ERR_ARG,
                        "%s: needs a floating point tensor, got %s (convert it first, e.g. "
                        "t:float())",
                        op, dtype_name(t->dtype));
    return DDP_OK;
}

/* Result dtype of a reduction, or an error naming the op for dtypes it refuses. */
static ddp_status reduce_dtype(reduce_op op, const tensor *t, dtype *out) {
    switch (op) {
    case REDUCE_SUM:
    case REDUCE_PROD:
        *out = dtype_is_float(t->dtype) ? t->dtype : DTYPE_INT64;
        return DDP_OK;
    case REDUCE_MEAN:
    case REDUCE_NORM:
        DDP_CHECK(need_float(reduce_op_name(op), t));
        *out = t->dtype;
        return DDP_OK;
    case REDUCE_MAX:
    case REDUCE_MIN:
        *out = t->dtype;
        return DDP_OK;
    case REDUCE_ARGMAX:
    case REDUCE_ARGMIN:
        *out = DTYPE_INT64;
        return DDP_OK;
    }
    return DDP_FAIL(DDP_ERR_ARG, "reduce: unknown reduction %d", (int)op);
}

/* sum / mean / prod / norm of t into r (shape = keep, or keep without size-1 dims). */
static ddp_status reduce_accumulating(reduce_op op, const tensor *t, const int64_t *keep,
                                      tensor *r) {
    int64_t nacc = tensor_numel(r), count = tensor_numel(t) / (nacc ? nacc : 1);
    if (nacc == 0) return DDP_OK;
    if (r->dtype == DTYPE_INT64) { /* r is fresh and contiguous: the buffer's own layout */
        accumulate_i64(op, t, keep, tensor_data(r), nacc);
        return DDP_OK;
    }
    double *acc = ddp_malloc(sizeof(double) * (size_t)nacc);
    if (!acc) return DDP_FAIL(DDP_ERR_NOMEM, "%s: out of memory", reduce_op_name(op));
    accumulate_f64(op, t, keep, acc, nacc);
    for (int64_t i = 0; i < nacc; i++) {
        double v = acc[i];
        if (op == REDUCE_MEAN) v = count ? v / (double)count : NAN;
        if (op == REDUCE_NORM) v = sqrt(v);
        tensor_store(r->dtype, tensor_data(r), i, v);
    }
    free(acc);
    return DDP_OK;
}

/* max, min, argmax, argmin: the reductions that pick an element instead of accumulating. */
static bool is_extreme(reduce_op op) {
    return op == REDUCE_MAX || op == REDUCE_MIN || op == REDUCE_ARGMAX || op == REDUCE_ARGMIN;
}

/* Is v a better extreme than best? NaN beats everything (PyTorch propagates it). */
static bool better(double v, double best, bool is_min) {
    if (best != best) return false;
    if (v != v) return true;
    return is_min ? v < best : v > best;
}

/* For every position of t with dim d collapsed, the extreme along d: its value into
 * values (may be NULL) and its index into indices (may be NULL); both contiguous with
 * keepdim shape. int64 compared exactly. */
static void extreme_along(const tensor *t, int d, bool is_min, tensor *values, tensor *indices) {
    int64_t sizes[TENSOR_MAX_DIMS], ostr[TENSOR_MAX_DIMS];
    memcpy(sizes, t->sizes, sizeof sizes);
    int64_t len = t->sizes[d], step = t->strides[d];
    sizes[d] = 1;
    tensor_contiguous_strides(sizes, t->ndim, ostr);
    const int64_t *strides[2] = {ostr, t->strides};
    int64_t offsets[2] = {0, t->offset};
    tensor_iter it;
    tensor_iter_init(&it, t->ndim, sizes, 2, strides, offsets);
    bool ints = !dtype_is_float(t->dtype);
    for (int64_t r = 0; r < it.rows; r++) {
        for (int64_t i = 0; i < it.inner; i++) {
            int64_t o = it.offsets[0] + i * it.inner_strides[0];
            int64_t base = it.offsets[1] + i * it.inner_strides[1];
            int64_t best_i = 0;
            if (ints) {
                int64_t best = tensor_load_int64(t->dtype, t->storage->data, base);
                for (int64_t k = 1; k < len; k++) {
                    int64_t v = tensor_load_int64(t->dtype, t->storage->data, base + k * step);
                    if (is_min ? v < best : v > best) best = v, best_i = k;
                }
                if (values) tensor_store_int64(values->dtype, values->storage->data, o, best);
            } else {
                double best = tensor_load(t->dtype, t->storage->data, base);
                for (int64_t k = 1; k < len; k++) {
                    double v = tensor_load(t->dtype, t->storage->data, base + k * step);
                    if (better(v, best, is_min)) best = v, best_i = k;
                }
                if (values) tensor_store(values->dtype, values->storage->data, o, best);
            }
            if (indices) ((int64_t *)indices->storage->data)[o] = best_i;
        }
        tensor_iter_next_row(&it);
    }
}

static ddp_status refuse_empty(reduce_op op, const tensor *t) {
    char buf[128];
    return DDP_FAIL(DDP_ERR_ARG, "%s: the tensor of shape %s is empty; %s of nothing is undefined",
                    reduce_op_name(op), tensor_shape_str(t, buf, sizeof buf), reduce_op_name(op));
}

/* max/min/arg* along a dim need at least one element along it; the other dims may be
 * empty (a (0x3) tensor has a max along dim 1: an empty result). */
static ddp_status refuse_empty_dim(reduce_op op, const tensor *t, int d) {
    char buf[128];
    return DDP_FAIL(
        DDP_ERR_ARG, "%s: dim %d of the tensor of shape %s has size 0; %s along it is undefined",
        reduce_op_name(op), d, tensor_shape_str(t, buf, sizeof buf), reduce_op_name(op));
}

ddp_status tensor_reduce_all(reduce_op op, const tensor *t, tensor **out) {
    *out = NULL;
    DDP_CHECK(tensor_check_cpu(reduce_op_name(op), t));
    dtype dt = t->dtype;
    DDP_CHECK(reduce_dtype(op, t, &dt));
    bool extreme = is_extreme(op);
    if (extreme && tensor_numel(t) == 0) return refuse_empty(op, t);
    tensor *r;
    DDP_CHECK(tensor_empty(NULL, 0, dt, t->storage->device, &r));
    if (!extreme) {
        int64_t keep[TENSOR_MAX_DIMS];
        for (int d = 0; d < t->ndim; d++) keep[d] = 1;
        ddp_status s = reduce_accumulating(op, t, keep, r);
        if (s != DDP_OK) {
            tensor_release(r);
            return s;
        }
        *out = r;
        return DDP_OK;
    }
    /* The flat (row-major) extreme: t (made contiguous) read as one long dim. */
    tensor *c;
    ddp_status s = tensor_contiguous(t, &c);
    if (s != DDP_OK) {
        tensor_release(r);
        return s;
    }
    tensor flat = *c;
    flat.ndim = 1;
    flat.sizes[0] = tensor_numel(c);
    flat.strides[0] = 1;
    bool is_min = op == REDUCE_MIN || op == REDUCE_ARGMIN;
    if (op == REDUCE_MAX || op == REDUCE_MIN)
        extreme_along(&flat, 0, is_min, r, NULL);
    else
        extreme_along(&flat, 0, is_min, NULL, r);
    tensor_release(c);
    *out = r;
    return DDP_OK;
}

/* Sizes with dim d set to 1 (keepdim) or removed. */
static int reduced_sizes(const tensor *t, int d, bool keepdim, int64_t *sizes) {
    int n = 0;
    for (int i = 0; i < t->ndim; i++) {
        if (i != d)
            sizes[n++] = t->sizes[i];
        else if (keepdim)
            sizes[n++] = 1;
    }
    return n;
}

ddp_status tensor_reduce_dim(reduce_op op, const tensor *t, int64_t dim, bool keepdim,
                             tensor **out) {
    *out = NULL;
    const char *name = reduce_op_name(op);
    DDP_CHECK(tensor_check_cpu(name, t));
    int d = 0;
    DDP_CHECK(tensor_wrap_dim(name, dim, t->ndim, &d));
    if (t->ndim == 0) return tensor_reduce_all(op, t, out); /* PyTorch: dim 0 of a scalar */
    dtype dt = t->dtype;
    DDP_CHECK(reduce_dtype(op, t, &dt));
    bool extreme = is_extreme(op);
    if (extreme && t->sizes[d] == 0) return refuse_empty_dim(op, t, d);
    int64_t sizes[TENSOR_MAX_DIMS], keep[TENSOR_MAX_DIMS];
    int n = reduced_sizes(t, d, keepdim, sizes);
    reduced_sizes(t, d, true, keep);
    tensor *r;
    DDP_CHECK(tensor_empty(sizes, n, dt, t->storage->device, &r));
    ddp_status s = DDP_OK;
    if (!extreme)
        s = reduce_accumulating(op, t, keep, r);
    else if (op == REDUCE_MAX || op == REDUCE_MIN)
        extreme_along(t, d, op == REDUCE_MIN, r, NULL);
    else
        extreme_along(t, d, op == REDUCE_ARGMIN, NULL, r);
    if (s != DDP_OK) {
        tensor_release(r);
        return s;
    }
    *out = r;
    return DDP_OK;
}

ddp_status tensor_max_dim(const tensor *t, int64_t dim, bool keepdim, bool is_min, tensor **values,
                          tensor **indices) {
    *values = NULL, *indices = NULL;
    const char *name = is_min ? "min" : "max";
    DDP_CHECK(tensor_check_cpu(name, t));
    int d = 0;
    DDP_CHECK(tensor_wrap_dim(name, dim, t->ndim, &d));
    if (t->ndim > 0 && t->sizes[d] == 0)
        return refuse_empty_dim(is_min ? REDUCE_MIN : REDUCE_MAX, t, d);
    int64_t sizes[TENSOR_MAX_DIMS];
    int n = t->ndim ? reduced_sizes(t, d, keepdim, sizes) : 0;
    tensor *v, *ix;
    DDP_CHECK(tensor_empty(sizes, n, t->dtype, t->storage->device, &v));
    ddp_status s = tensor_empty(sizes, n, DTYPE_INT64, t->storage->device, &ix);
    if (s != DDP_OK) {
        tensor_release(v);
        return s;
    }
    if (t->ndim == 0) {
        tensor_copy_fresh(v, t);
        ((int64_t *)ix->storage->data)[0] = 0;
    } else {
        extreme_along(t, d, is_min, v, ix);
    }
    *values = v, *indices = ix;
    return DDP_OK;
}

ddp_status tensor_sum_to(const tensor *t, const int64_t *sizes, int ndim, tensor **out) {
    *out = NULL;
    DDP_CHECK(tensor_check_cpu("sum_to", t));
    int64_t keep[TENSOR_MAX_DIMS];
    bool ok = ndim >= 0 && ndim <= t->ndim;
    for (int i = 0; ok && i < t->ndim; i++) {
        int j = ndim - t->ndim + i;
        keep[i] = j < 0 ? 1 : sizes[j];
        if (j >= 0 && sizes[j] != t->sizes[i] && sizes[j] != 1) ok = false;
    }
    if (!ok) {
        char st[128], ss[128];
        return DDP_FAIL(DDP_ERR_ARG, "sum_to: a tensor of shape %s cannot be summed down to %s",
                        tensor_shape_str(t, st, sizeof st),
                        tensor_sizes_str(sizes, ndim > 0 ? ndim : 0, ss, sizeof ss));
    }
    tensor *r;
    DDP_CHECK(tensor_empty(sizes, ndim, t->dtype == DTYPE_BOOL ? DTYPE_INT64 : t->dtype,
                           t->storage->device, &r));
    /* Always a new tensor, even when nothing is summed: callers may accumulate into it. */
    ddp_status s = reduce_accumulating(REDUCE_SUM, t, keep, r);
    if (s != DDP_OK) {
        tensor_release(r);
        return s;
    }
    *out = r;
    return DDP_OK;
}

/* ---- softmax family -------------------------------------------------------------- */

/* exp for float32 softmax rows, where arguments are x - max <= 0 (or NaN): Cephes'
 * expf polynomial on [-ln2/2, ln2/2] scaled by 2^n, within 2 ulp of expf, with no call
 * so that rows vectorise. Below -87 the result is 0 (expf would give a denormal). */
static inline float softmax_expf(float x) {
    float xc = x != x ? 0.0f : (x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x));
    float n = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f; /* round to nearest */
    float r = xc - n * 0.693359375f + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    union {
        uint32_t u;
        float f;
    } scale = {.u = (uint32_t)((int32_t)n + 127) << 23};
    float y = p * scale.f;
    return x != x ? x : (x < -87.0f ? 0.0f : y);
}

/* One float32 row of length len: o = softmax(x) or log_softmax(x). */
static void softmax_row_f32(const float *x, int64_t xs, float *o, int64_t os, int64_t len,
                            bool log_form) {
    float m = -INFINITY;
    for (int64_t k = 0; k < len; k++) {
        float v = x[k * xs];
        if (v > m || v != v) m = v;
    }
    if (m == -INFINITY) m = 0; /* all -inf: the result is NaN, as in PyTorch */
    double sum = 0;
    if (log_form) {
        for (int64_t k = 0; k < len; k++) sum += softmax_expf(x[k * xs] - m);
        float lse = (float)log(sum);
        for (int64_t k = 0; k < len; k++) o[k * os] = (x[k * xs] - m) - lse;
    } else {
        for (int64_t k = 0; k < len; k++) o[k * os] = softmax_expf(x[k * xs] - m);
        for (int64_t k = 0; k < len; k++) sum += o[k * os];
        float inv = (float)(1.0 / sum);
        for (int64_t k = 0; k < len; k++) o[k * os] *= inv;
    }
}

/* One float64 row of length len: o = softmax(x) or log_softmax(x), with libm's exp. */
static void softmax_row_f64(const double *x, int64_t xs, double *o, int64_t os, int64_t len,
                            bool log_form) {
    double m = -INFINITY, sum = 0;
    for (int64_t k = 0; k < len; k++) {
        double v = x[k * xs];
        if (v > m || v != v) m = v;
    }
    if (m == -INFINITY) m = 0; /* all -inf: the result is NaN, as in PyTorch */
    for (int64_t k = 0; k < len; k++) {
        double e = exp(x[k * xs] - m);
        sum += e;
        if (!log_form) o[k * os] = e;
    }
    if (log_form) {
        double lse = log(sum);
        for (int64_t k = 0; k < len; k++) o[k * os] = (x[k * xs] - m) - lse;
    } else {
        for (int64_t k = 0; k < len; k++) o[k * os] /= sum;
    }
}

/* out = softmax or log_softmax of t along d; out contiguous, same shape and dtype (float32
 * or float64, as softmax_common has checked). */
static void softmax_along(const tensor *t, int d, bool log_form, tensor *out) {
    int64_t sizes[TENSOR_MAX_DIMS];
    memcpy(sizes, t->sizes, sizeof sizes);
    int64_t len = t->ndim ? t->sizes[d] : 1;
    int64_t tstep = t->ndim ? t->strides[d] : 1, ostep = t->ndim ? out->strides[d] : 1;
    if (t->ndim) sizes[d] = 1;
    const int64_t *strides[2] = {out->strides, t->strides};
    int64_t offsets[2] = {0, t->offset};
    tensor_iter it;
    tensor_iter_init(&it, t->ndim, sizes, 2, strides, offsets);
    void *od = out->storage->data;
    const void *td = t->storage->data;
    if (len == 0) return;
    for (int64_t r = 0; r < it.rows; r++) {
        for (int64_t i = 0; i < it.inner; i++) {
            int64_t ob = it.offsets[0] + i * it.inner_strides[0];
            int64_t tb = it.offsets[1] + i * it.inner_strides[1];
            if (t->dtype == DTYPE_FLOAT32)
                softmax_row_f32((const float *)td + tb, tstep, (float *)od + ob, ostep, len,
                                log_form);
            else
                softmax_row_f64((const double *)td + tb, tstep, (double *)od + ob, ostep, len,
                                log_form);
        }
        tensor_iter_next_row(&it);
    }
}

static ddp_status softmax_common(const char *name, const tensor *t, int64_t dim, bool log_form,
                                 tensor **out) {
    *out = NULL;
    DDP_CHECK(tensor_check_cpu(name, t));
    DDP_CHECK(need_float(name, t));
    int d = 0;
    DDP_CHECK(tensor_wrap_dim(name, dim, t->ndim, &d));
    tensor *r;
    DDP_CHECK(tensor_empty_like(t, &r));
    softmax_along(t, d, log_form, r);
    *out = r;
    return DDP_OK;
}

ddp_status tensor_softmax(const tensor *t, int64_t dim, tensor **out) {
    return softmax_common("softmax", t, dim, false, out);
}

ddp_status tensor_log_softmax(const tensor *t, int64_t dim, tensor **out) {
    return softmax_common("log_softmax", t, dim, true, out);
}
