/* tensor_iter.c — the walking machinery every CPU op shares (tensor_internal.h): a
 * strided iterator over several operands of one logical shape, row by row with dims
 * coalesced where all operands are contiguous across them; PyTorch's broadcasting of
 * shapes and strides; and strided rows converted to and from double or int64 buffers for
 * the generic (any dtype) paths. */
#include "tensor/tensor.h"
#include "tensor/tensor_internal.h"

#include <inttypes.h>

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("tree-vectorize", "vect-cost-model=dynamic") /* see tensor_elementwise.c */
#endif

/* ---- rows of any dtype ----------------------------------------------------------- */

void tensor_load_row(dtype dt, const void *base, int64_t off, int64_t stride, double *dst,
                     int64_t n) {
    switch (dt) {
    case DTYPE_FLOAT32: {
        const float *p = (const float *)base + off;
        for (int64_t i = 0; i < n; i++) dst[i] = p[i * stride];
        break;
    }
    case DTYPE_FLOAT64: {
        const double *p = (const double *)base + off;
        for (int64_t i = 0; i < n; i++) dst[i] = p[i * stride];
        break;
    }
    case DTYPE_INT64: {
        const int64_t *p = (const int64_t *)base + off;
        for (int64_t i = 0; i < n; i++) dst[i] = (double)p[i * stride];
        break;
    }
    case DTYPE_BOOL: {
        const bool *p = (const bool *)base + off;
        for (int64_t i = 0; i < n; i++) dst[i] = p[i * stride] ? 1.0 : 0.0;
        break;
    }
    }
}

void tensor_store_row(dtype dt, void *base, int64_t off, int64_t stride, const double *src,
                      int64_t n) {
    switch (dt) {
    case DTYPE_FLOAT32: {
        float *p = (float *)base + off;
        for (int64_t i = 0; i < n; i++) p[i * stride] = (float)src[i];
        break;
    }
    case DTYPE_FLOAT64: {
        double *p = (double *)base + off;
        for (int64_t i = 0; i < n; i++) p[i * stride] = src[i];
        break;
    }
    case DTYPE_INT64: /* rare (results are int64 only when computed in int64): the
                         checked conversion of tensor_store is worth more than speed */
        for (int64_t i = 0; i < n; i++) tensor_store(dt, base, off + i * stride, src[i]);
        break;
    case DTYPE_BOOL: {
        bool *p = (bool *)base + off;
        for (int64_t i = 0; i < n; i++) p[i * stride] = src[i] != 0;
        break;
    }
    }
}

void tensor_load_row_int64(dtype dt, const void *base, int64_t off, int64_t stride, int64_t *dst,
                           int64_t n) {
    if (dt == DTYPE_INT64) {
        const int64_t *p = (const int64_t *)base + off;
        for (int64_t i = 0; i < n; i++) dst[i] = p[i * stride];
    } else if (dt == DTYPE_BOOL) {
        const bool *p = (const bool *)base + off;
        for (int64_t i = 0; i < n; i++) dst[i] = p[i * stride];
    } else {
        for (int64_t i = 0; i < n; i++) dst[i] = tensor_load_int64(dt, base, off + i * stride);
    }
}

void tensor_store_row_int64(dtype dt, void *base, int64_t off, int64_t stride, const int64_t *src,
                            int64_t n) {
    if (dt == DTYPE_INT64) {
        int64_t *p = (int64_t *)base + off;
        for (int64_t i = 0; i < n; i++) p[i * stride] = src[i];
    } else if (dt == DTYPE_BOOL) {
        bool *p = (bool *)base + off;
        for (int64_t i = 0; i < n; i++) p[i * stride] = src[i] != 0;
    } else {
        for (int64_t i = 0; i < n; i++) tensor_store_int64(dt, base, off + i * stride, src[i]);
    }
}

/* ---- the strided iterator -------------------------------------------------------- */

void tensor_iter_init(tensor_iter *it, int ndim, const int64_t *sizes, int nops,
                      const int64_t *const *strides, const int64_t *offsets) {
    /* Collect non-trivial dims, merging each into the previous when every operand is
     * contiguous across the pair. */
    int n = 0;
    int64_t sz[TENSOR_MAX_DIMS], st[ITER_MAX_OPS][TENSOR_MAX_DIMS];
    for (int d = 0; d < ndim; d++) {
        if (sizes[d] == 1) continue;
        bool merge = n > 0;
        for (int k = 0; k < nops && merge; k++)
            if (st[k][n - 1] != strides[k][d] * sizes[d]) merge = false;
        if (merge) {
            sz[n - 1] *= sizes[d];
            for (int k = 0; k < nops; k++) st[k][n - 1] = strides[k][d];
        } else {
            sz[n] = sizes[d];
            for (int k = 0; k < nops; k++) st[k][n] = strides[k][d];
            n++;
        }
    }
    it->nops = nops;
    it->rows = 1;
    for (int k = 0; k < nops; k++) it->offsets[k] = offsets[k];
    for (int d = 0; d < ndim; d++)
        if (sizes[d] == 0) it->rows = 0;
    if (n == 0) {
        it->ndim = 0;
        it->inner = 1;
        for (int k = 0; k < nops; k++) it->inner_strides[k] = 1;
        return;
    }
    it->inner = sz[n - 1];
    for (int k = 0; k < nops; k++) it->inner_strides[k] = st[k][n - 1];
    it->ndim = n - 1;
    for (int d = 0; d < n - 1; d++) {
        it->sizes[d] = sz[d];
        it->idx[d] = 0;
        it->rows *= sz[d];
        for (int k = 0; k < nops; k++) it->strides[k][d] = st[k][d];
    }
}

void tensor_iter_next_row(tensor_iter *it) {
    for (int d = it->ndim - 1; d >= 0; d--) {
        for (int k = 0; k < it->nops; k++) it->offsets[k] += it->strides[k][d];
        if (++it->idx[d] < it->sizes[d]) return;
        for (int k = 0; k < it->nops; k++) it->offsets[k] -= it->strides[k][d] * it->sizes[d];
        it->idx[d] = 0;
    }
}

/* ---- broadcasting ---------------------------------------------------------------- */

ddp_status tensor_broadcast_shape(const char *op, const tensor *a, const tensor *b, int64_t *sizes,
                                  int *ndim) {
    int n = a->ndim > b->ndim ? a->ndim : b->ndim;
    for (int i = 0; i < n; i++) {
        int da = a->ndim - n + i, db = b->ndim - n + i;
        int64_t sa = da >= 0 ? a->sizes[da] : 1, sb = db >= 0 ? b->sizes[db] : 1;
        if (sa != sb && sa != 1 && sb != 1) {
            char ba[128], bb[128];
            return DDP_FAIL(
                DDP_ERR_ARG,
                "%s: shapes %s and %s cannot be broadcast (dim %d: %" PRId64 " vs %" PRId64 ")", op,
                tensor_shape_str(a, ba, sizeof ba), tensor_shape_str(b, bb, sizeof bb), i, sa, sb);
        }
        sizes[i] = sa == 1 ? sb : sa;
    }
    *ndim = n;
    return DDP_OK;
}

ddp_status tensor_broadcast_strides(const char *op, const tensor *t, const int64_t *sizes, int ndim,
                                    int64_t *strides) {
    if (t->ndim > ndim) goto fail;
    for (int i = 0; i < ndim; i++) {
        int d = t->ndim - ndim + i;
        if (d < 0) {
            strides[i] = 0;
        } else if (t->sizes[d] == sizes[i]) {
            strides[i] = t->sizes[d] == 1 ? 0 : t->strides[d];
        } else if (t->sizes[d] == 1) {
            strides[i] = 0;
        } else {
            goto fail;
        }
    }
    return DDP_OK;
fail:;
    char bt[128], bs[128];
    return DDP_FAIL(DDP_ERR_ARG, "%s: a tensor of shape %s cannot be broadcast to shape %s", op,
                    tensor_shape_str(t, bt, sizeof bt),
                    tensor_sizes_str(sizes, ndim, bs, sizeof bs));
}
