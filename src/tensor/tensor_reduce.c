/* tensor_reduce.c — reductions (sum, mean, prod, max, min, argmax, argmin, 2-norm over all
 * elements or one dim), max/min with indices, sum_to (the inverse of broadcasting, for
 * autograd), and softmax / log_softmax: their dtype rules, checks and result shapes.
 * The kernels are the tensor device's (tensor_kernels.h: tensor_cpu_reduce.c on the
 * CPU, tensor_cuda.cu on a GPU). */
#include "tensor/tensor.h"
#include "tensor/tensor_internal.h"
#include "tensor/tensor_kernels.h"

#include <string.h>

const char *reduce_op_name(reduce_op op) {
    static const char *names[] = {"sum", "mean", "prod", "max", "min", "argmax", "argmin", "norm"};
    return (unsigned)op < sizeof names / sizeof names[0] ? names[op] : "?";
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

/* max, min, argmax, argmin: the reductions that pick an element instead of accumulating. */
static bool is_extreme(reduce_op op) {
    return op == REDUCE_MAX || op == REDUCE_MIN || op == REDUCE_ARGMAX || op == REDUCE_ARGMIN;
}

/* *out = r when the kernel succeeded; else r is released and the failure passed on. */
static ddp_status hand_back(ddp_status s, tensor *r, tensor **out) {
    if (s != DDP_OK) {
        tensor_release(r);
        return s;
    }
    *out = r;
    return DDP_OK;
}

/* max, min (value into r) or argmax, argmin (index into r) of t along d. */
static ddp_status extreme_into(reduce_op op, const tensor *t, int d, tensor *r) {
    bool is_min = op == REDUCE_MIN || op == REDUCE_ARGMIN;
    bool value = op == REDUCE_MAX || op == REDUCE_MIN;
    return tensor_kernels_of(t)->extreme(t, d, is_min, value ? r : NULL, value ? NULL : r);
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
    dtype dt = t->dtype;
    DDP_CHECK(reduce_dtype(op, t, &dt));
    bool extreme = is_extreme(op);
    if (extreme && tensor_numel(t) == 0) return refuse_empty(op, t);
    tensor *r;
    DDP_CHECK(tensor_empty(NULL, 0, dt, t->storage->device, &r));
    if (!extreme) {
        int64_t keep[TENSOR_MAX_DIMS];
        for (int d = 0; d < t->ndim; d++) keep[d] = 1;
        return hand_back(tensor_kernels_of(t)->accumulate(op, t, keep, r), r, out);
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
    s = extreme_into(op, &flat, 0, r);
    tensor_release(c);
    return hand_back(s, r, out);
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
    ddp_status s =
        extreme ? extreme_into(op, t, d, r) : tensor_kernels_of(t)->accumulate(op, t, keep, r);
    return hand_back(s, r, out);
}

ddp_status tensor_max_dim(const tensor *t, int64_t dim, bool keepdim, bool is_min, tensor **values,
                          tensor **indices) {
    *values = NULL, *indices = NULL;
    const char *name = is_min ? "min" : "max";
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
        s = tensor_copy_fresh(v, t);
        if (s == DDP_OK) s = tensor_fill_fresh(ix, 0);
    } else {
        s = tensor_kernels_of(t)->extreme(t, d, is_min, v, ix);
    }
    if (s != DDP_OK) {
        tensor_release(v);
        tensor_release(ix);
        return s;
    }
    *values = v, *indices = ix;
    return DDP_OK;
}

ddp_status tensor_sum_to(const tensor *t, const int64_t *sizes, int ndim, tensor **out) {
    *out = NULL;
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
    return hand_back(tensor_kernels_of(t)->accumulate(REDUCE_SUM, t, keep, r), r, out);
}

/* ---- softmax family -------------------------------------------------------------- */

static ddp_status softmax_common(const char *name, const tensor *t, int64_t dim, bool log_form,
                                 tensor **out) {
    *out = NULL;
    DDP_CHECK(need_float(name, t));
    int d = 0;
    DDP_CHECK(tensor_wrap_dim(name, dim, t->ndim, &d));
    tensor *r;
    DDP_CHECK(tensor_empty_like(t, &r));
    return hand_back(tensor_kernels_of(t)->softmax(t, d, log_form, r), r, out);
}

ddp_status tensor_softmax(const tensor *t, int64_t dim, tensor **out) {
    return softmax_common("softmax", t, dim, false, out);
}

ddp_status tensor_log_softmax(const tensor *t, int64_t dim, tensor **out) {
    return softmax_common("log_softmax", t, dim, true, out);
}
