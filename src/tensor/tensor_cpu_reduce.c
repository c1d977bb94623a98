/* tensor_cpu_reduce.c — the CPU kernels that combine many elements into one
 * (tensor_kernels.h): sum, mean, prod and norm, max/min with their indices, softmax and
 * log_softmax, and GEMM through OpenBLAS. The ops' checks and result shapes are in
 * tensor_reduce.c and tensor_linalg.c.
 *
 * Sums, products and norms accumulate in double (int64 sums in int64) into a buffer
 * shaped like the result with size-1 dims where t is reduced, walking t once with the
 * strided iterator: summing a (N x C) gradient down to (C) is then a vectorised row
 * loop. max/min/arg* and softmax walk along the reduced dim for each output element.
 * softmax subtracts the row maximum first so that exp never overflows.
 *
 * A 2-D GEMM operand is handed to BLAS without copying whenever its layout allows (see
 * tensor_blas_layout); only irregular strides (expanded, stepped) are copied to
 * contiguous first. int64 products are plain loops. The number of BLAS threads is left
 * to the runtime. */
#include "base/alloc.h"
#include "tensor/tensor_internal.h"
#include "tensor/tensor_kernels.h"
#include "tensor/softmax_math.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("tree-vectorize", "vect-cost-model=dynamic") /* see tensor_cpu.c */
#endif

/* ---- sum, mean, prod, norm ------------------------------------------------------- */

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

/* sum / mean / prod / norm of t into r (shape = keep, or keep without size-1 dims). */
ddp_status cpu_accumulate(reduce_op op, const tensor *t, const int64_t *keep, tensor *r) {
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

/* ---- max, min and their indices ------------------------------------------------- */

/* Is v a better extreme than best? NaN beats everything (PyTorch propagates it). */
static bool better(double v, double best, bool is_min) {
    if (best != best) return false;
    if (v != v) return true;
    return is_min ? v < best : v > best;
}

/* For every position of t with dim d collapsed, the extreme along d: its value into
 * values (may be NULL) and its index into indices (may be NULL); both contiguous with
 * keepdim shape. int64 compared exactly. */
ddp_status cpu_extreme(const tensor *t, int d, bool is_min, tensor *values, tensor *indices) {
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
    return DDP_OK;
}

/* ---- softmax family -------------------------------------------------------------- */

ddp_status cpu_softmax(const tensor *t, int d, bool log_form, tensor *out) {
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
    if (len == 0) return DDP_OK;
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
    return DDP_OK;
}

/* ---- GEMM ------------------------------------------------------------------------ */

/* How BLAS reads a 2-D tensor: data, whether it is stored transposed, its ld. `owned`
 * holds a contiguous copy when the layout was irregular (release it after the call). */
typedef struct {
    const void *data;
    bool trans;
    int ld;
    tensor *owned;
} blas_operand;

static ddp_status blas_operand_of(const tensor *t, blas_operand *op) {
    int64_t ld;
    op->owned = NULL;
    op->data = tensor_data(t);
    if (!tensor_blas_layout(t, &op->trans, &ld)) {
        DDP_CHECK(tensor_clone(t, &op->owned));
        op->data = tensor_data(op->owned);
        tensor_blas_layout(op->owned, &op->trans, &ld);
    }
    op->ld = (int)ld;
    return DDP_OK;
}

/* c = alpha * op(a) @ op(b) + beta * c for int64, by loops. The arithmetic is unsigned,
 * so that it wraps as PyTorch's int64 matmul does instead of overflowing (undefined). */
static void gemm_int64(bool ta, bool tb, int64_t alpha, const tensor *a, const tensor *b,
                       int64_t beta, tensor *c, int64_t m, int64_t n, int64_t k) {
    const int64_t *ad = a->storage->data, *bd = b->storage->data;
    int64_t *cd = tensor_data(c);
    int64_t ai = ta ? a->strides[1] : a->strides[0], ak = ta ? a->strides[0] : a->strides[1];
    int64_t bk = tb ? b->strides[1] : b->strides[0], bj = tb ? b->strides[0] : b->strides[1];
    for (int64_t i = 0; i < m; i++) {
        for (int64_t j = 0; j < n; j++) {
            uint64_t acc = 0;
            for (int64_t p = 0; p < k; p++)
                acc += (uint64_t)ad[a->offset + i * ai + p * ak] *
                       (uint64_t)bd[b->offset + p * bk + j * bj];
            uint64_t r = (uint64_t)alpha * acc;
            if (beta) r += (uint64_t)beta * (uint64_t)cd[i * n + j];
            cd[i * n + j] = (int64_t)r;
        }
    }
}

/* c *= beta over its `count` elements (c contiguous float32 or float64), counting no
 * version: what is left of c = beta * c + a @ b when the product is empty. */
static void scale_contiguous(tensor *c, double beta, int64_t count) {
    if (c->dtype == DTYPE_FLOAT32) {
        float *p = tensor_data(c), f = (float)beta;
        for (int64_t i = 0; i < count; i++) p[i] *= f;
    } else {
        double *p = tensor_data(c);
        for (int64_t i = 0; i < count; i++) p[i] *= beta;
    }
}

ddp_status cpu_gemm(bool ta, bool tb, double alpha, const tensor *a, const tensor *b, double beta,
                    tensor *c) {
    int64_t m = ta ? a->sizes[1] : a->sizes[0], k = ta ? a->sizes[0] : a->sizes[1];
    int64_t n = tb ? b->sizes[0] : b->sizes[1];
    if (a->dtype == DTYPE_INT64) {
        gemm_int64(ta, tb, (int64_t)alpha, a, b, (int64_t)beta, c, m, n, k);
        return DDP_OK;
    }
    if (k == 0) { /* BLAS may reject ld of an empty operand; the product is zero */
        if (beta == 0) return tensor_fill_fresh(c, 0);
        scale_contiguous(c, beta, m * n);
        return DDP_OK;
    }
    blas_operand oa, ob;
    DDP_CHECK(blas_operand_of(a, &oa));
    ddp_status s = blas_operand_of(b, &ob);
    if (s != DDP_OK) {
        tensor_release(oa.owned);
        return s;
    }
    /* op(a) reads the stored matrix transposed when exactly one of (ta, stored
     * transposed) holds. */
    enum CBLAS_TRANSPOSE tra = (ta != oa.trans) ? CblasTrans : CblasNoTrans;
    enum CBLAS_TRANSPOSE trb = (tb != ob.trans) ? CblasTrans : CblasNoTrans;
    if (a->dtype == DTYPE_FLOAT32)
        cblas_sgemm(CblasRowMajor, tra, trb, (int)m, (int)n, (int)k, (float)alpha, oa.data, oa.ld,
                    ob.data, ob.ld, (float)beta, tensor_data(c), (int)n);
    else
        cblas_dgemm(CblasRowMajor, tra, trb, (int)m, (int)n, (int)k, alpha, oa.data, oa.ld, ob.data,
                    ob.ld, beta, tensor_data(c), (int)n);
    tensor_release(oa.owned);
    tensor_release(ob.owned);
    return DDP_OK;
}
