/* tensor_view.c — views: new tensor headers over the same storage with other sizes,
 * strides and offset (view, reshape, narrow, select, transpose, permute, unsqueeze,
 * squeeze, expand, flatten). No data is copied, except by reshape when the strides
 * cannot express the new shape. view follows PyTorch's stride rule, so it works on many
 * non-contiguous tensors and refuses (pointing at reshape) only when it must. */
#include "tensor/tensor.h"
#include "tensor/tensor_internal.h"

#include <inttypes.h>
#include <string.h>

/* Resolves a -1 in `sizes` against numel and checks the product; fills `resolved`. */
static ddp_status infer_sizes(const char *op, const tensor *t, const int64_t *sizes, int ndim,
                              int64_t *resolved) {
    char bt[128], bs[128];
    if (ndim < 0 || ndim > TENSOR_MAX_DIMS)
        return DDP_FAIL(DDP_ERR_ARG, "%s: %d dimensions requested; at most %d are supported", op,
                        ndim, TENSOR_MAX_DIMS);
    int64_t numel = tensor_numel(t), known = 1;
    int infer = -1;
    if (tensor_sizes_overflow(sizes, ndim)) /* also keeps `known` below from overflowing */
        return DDP_FAIL(DDP_ERR_ARG,
                        "%s: shape %s is invalid for a tensor of shape %s (%" PRId64
                        " elements): the sizes multiply past what int64 can count",
                        op, tensor_sizes_str(sizes, ndim, bs, sizeof bs),
                        tensor_shape_str(t, bt, sizeof bt), numel);
    for (int d = 0; d < ndim; d++) {
        if (sizes[d] == -1) {
            if (infer >= 0)
                return DDP_FAIL(DDP_ERR_ARG, "%s: only one size may be -1 (shape %s)", op,
                                tensor_sizes_str(sizes, ndim, bs, sizeof bs));
            infer = d;
        } else if (sizes[d] < 0) {
            return DDP_FAIL(DDP_ERR_ARG, "%s: invalid size %" PRId64 " in shape %s", op, sizes[d],
                            tensor_sizes_str(sizes, ndim, bs, sizeof bs));
        } else {
            known *= sizes[d];
        }
        resolved[d] = sizes[d];
    }
    if (infer >= 0) {
        if (known == 0 || numel % known != 0)
            return DDP_FAIL(DDP_ERR_ARG,
                            "%s: shape %s is invalid for a tensor of shape %s (%" PRId64
                            " elements)",
                            op, tensor_sizes_str(sizes, ndim, bs, sizeof bs),
                            tensor_shape_str(t, bt, sizeof bt), numel);
        resolved[infer] = numel / known;
        known *= resolved[infer];
    }
    if (known != numel)
        return DDP_FAIL(DDP_ERR_ARG,
                        "%s: shape %s is invalid for a tensor of shape %s (%" PRId64 " elements)",
                        op, tensor_sizes_str(sizes, ndim, bs, sizeof bs),
                        tensor_shape_str(t, bt, sizeof bt), numel);
    return DDP_OK;
}

/* PyTorch's stride computation for view: new strides exist when every chunk of merged
 * old dims is contiguous within itself. Returns false when they do not. */
static bool view_strides(const tensor *t, const int64_t *sizes, int ndim, int64_t *strides) {
    if (tensor_is_contiguous(t) || tensor_numel(t) == 0) {
        tensor_contiguous_strides(sizes, ndim, strides);
        return true;
    }
    int view_d = ndim - 1;
    int64_t chunk_base = t->strides[t->ndim - 1];
    int64_t tensor_numel_ = 1, view_numel = 1;
    for (int td = t->ndim - 1; td >= 0; td--) {
        tensor_numel_ *= t->sizes[td];
        if (td == 0 ||
            (t->sizes[td - 1] != 1 && t->strides[td - 1] != tensor_numel_ * chunk_base)) {
            while (view_d >= 0 && (view_numel < tensor_numel_ || sizes[view_d] == 1)) {
                strides[view_d] = view_numel * chunk_base;
                view_numel *= sizes[view_d];
                view_d--;
            }
            if (view_numel != tensor_numel_) return false;
            if (td > 0) {
                chunk_base = t->strides[td - 1];
                tensor_numel_ = 1;
                view_numel = 1;
            }
        }
    }
    return view_d == -1;
}

ddp_status tensor_view(const tensor *t, const int64_t *sizes, int ndim, tensor **out) {
    *out = NULL;
    int64_t resolved[TENSOR_MAX_DIMS], strides[TENSOR_MAX_DIMS];
    DDP_CHECK(infer_sizes("view", t, sizes, ndim, resolved));
    if (!view_strides(t, resolved, ndim, strides)) {
        char bt[128], bs[128];
        return DDP_FAIL(DDP_ERR_ARG,
                        "view: a tensor of shape %s with these strides cannot be viewed as %s "
                        "without copying (it is not contiguous); use reshape instead",
                        tensor_shape_str(t, bt, sizeof bt),
                        tensor_sizes_str(resolved, ndim, bs, sizeof bs));
    }
    return tensor_make_view(t, resolved, strides, ndim, t->offset, out);
}

ddp_status tensor_reshape(const tensor *t, const int64_t *sizes, int ndim, tensor **out) {
    *out = NULL;
    int64_t resolved[TENSOR_MAX_DIMS], strides[TENSOR_MAX_DIMS];
    DDP_CHECK(infer_sizes("reshape", t, sizes, ndim, resolved));
    if (view_strides(t, resolved, ndim, strides))
        return tensor_make_view(t, resolved, strides, ndim, t->offset, out);
    tensor *c;
    DDP_CHECK(tensor_clone(t, &c));
    ddp_status s = tensor_view(c, resolved, ndim, out);
    tensor_release(c);
    return s;
}

ddp_status tensor_narrow(const tensor *t, int64_t dim, int64_t start, int64_t length,
                         tensor **out) {
    *out = NULL;
    int d = 0;
    if (t->ndim == 0) return DDP_FAIL(DDP_ERR_ARG, "narrow: cannot narrow a 0-dimensional tensor");
    DDP_CHECK(tensor_wrap_dim("narrow", dim, t->ndim, &d));
    int64_t size = t->sizes[d];
    char bt[128];
    if (length < 0)
        return DDP_FAIL(DDP_ERR_ARG, "narrow: length must be non-negative, got %" PRId64, length);
    if (start < -size || start > size)
        return DDP_FAIL(DDP_ERR_ARG,
                        "narrow: start %" PRId64 " is out of range for dim %d of size %" PRId64
                        " (shape %s)",
                        start, d, size, tensor_shape_str(t, bt, sizeof bt));
    if (start < 0) start += size;
    if (length > size - start) /* not start + length > size: that could overflow */
        return DDP_FAIL(DDP_ERR_ARG,
                        "narrow: start %" PRId64 " + length %" PRId64 " exceeds size %" PRId64
                        " of dim %d (shape %s)",
                        start, length, size, d, tensor_shape_str(t, bt, sizeof bt));
    int64_t sizes[TENSOR_MAX_DIMS];
    memcpy(sizes, t->sizes, sizeof sizes);
    sizes[d] = length;
    return tensor_make_view(t, sizes, t->strides, t->ndim, t->offset + start * t->strides[d], out);
}

ddp_status tensor_select(const tensor *t, int64_t dim, int64_t index, tensor **out) {
    *out = NULL;
    int d = 0;
    if (t->ndim == 0) return DDP_FAIL(DDP_ERR_ARG, "select: cannot index a 0-dimensional tensor");
    DDP_CHECK(tensor_wrap_dim("select", dim, t->ndim, &d));
    int64_t size = t->sizes[d];
    if (index < -size || index >= size) {
        char bt[128];
        return DDP_FAIL(DDP_ERR_ARG,
                        "select: index %" PRId64 " is out of range for dim %d of size %" PRId64
                        " (shape %s)",
                        index, d, size, tensor_shape_str(t, bt, sizeof bt));
    }
    if (index < 0) index += size;
    int64_t sizes[TENSOR_MAX_DIMS], strides[TENSOR_MAX_DIMS];
    int n = 0;
    for (int i = 0; i < t->ndim; i++) {
        if (i == d) continue;
        sizes[n] = t->sizes[i];
        strides[n++] = t->strides[i];
    }
    return tensor_make_view(t, sizes, strides, n, t->offset + index * t->strides[d], out);
}

ddp_status tensor_transpose(const tensor *t, int64_t dim0, int64_t dim1, tensor **out) {
    *out = NULL;
    int d0 = 0, d1 = 0;
    DDP_CHECK(tensor_wrap_dim("transpose", dim0, t->ndim, &d0));
    DDP_CHECK(tensor_wrap_dim("transpose", dim1, t->ndim, &d1));
    int64_t sizes[TENSOR_MAX_DIMS], strides[TENSOR_MAX_DIMS];
    memcpy(sizes, t->sizes, sizeof sizes);
    memcpy(strides, t->strides, sizeof strides);
    if (t->ndim > 0) {
        sizes[d0] = t->sizes[d1], sizes[d1] = t->sizes[d0];
        strides[d0] = t->strides[d1], strides[d1] = t->strides[d0];
    }
    return tensor_make_view(t, sizes, strides, t->ndim, t->offset, out);
}

ddp_status tensor_permute(const tensor *t, const int64_t *dims, int ndim, tensor **out) {
    *out = NULL;
    if (ndim != t->ndim) {
        char bt[128];
        return DDP_FAIL(DDP_ERR_ARG,
                        "permute: %d dims given for a %d-dimensional tensor of shape %s", ndim,
                        t->ndim, tensor_shape_str(t, bt, sizeof bt));
    }
    bool seen[TENSOR_MAX_DIMS] = {false};
    int64_t sizes[TENSOR_MAX_DIMS], strides[TENSOR_MAX_DIMS];
    for (int i = 0; i < ndim; i++) {
        int d = 0;
        DDP_CHECK(tensor_wrap_dim("permute", dims[i], ndim, &d));
        if (seen[d])
            return DDP_FAIL(DDP_ERR_ARG, "permute: dim %d appears twice; each dim must appear once",
                            d);
        seen[d] = true;
        sizes[i] = t->sizes[d];
        strides[i] = t->strides[d];
    }
    return tensor_make_view(t, sizes, strides, ndim, t->offset, out);
}

ddp_status tensor_unsqueeze(const tensor *t, int64_t dim, tensor **out) {
    *out = NULL;
    int d = 0;
    if (t->ndim >= TENSOR_MAX_DIMS)
        return DDP_FAIL(DDP_ERR_ARG, "unsqueeze: a tensor can have at most %d dims",
                        TENSOR_MAX_DIMS);
    DDP_CHECK(tensor_wrap_dim("unsqueeze", dim, t->ndim + 1, &d));
    int64_t sizes[TENSOR_MAX_DIMS], strides[TENSOR_MAX_DIMS];
    int n = 0;
    for (int i = 0; i <= t->ndim; i++) {
        if (i == d) {
            sizes[n] = 1;
            strides[n++] = i < t->ndim ? t->sizes[i] * t->strides[i] : 1;
        }
        if (i < t->ndim) {
            sizes[n] = t->sizes[i];
            strides[n++] = t->strides[i];
        }
    }
    return tensor_make_view(t, sizes, strides, n, t->offset, out);
}

ddp_status tensor_squeeze(const tensor *t, const int64_t *dim, tensor **out) {
    *out = NULL;
    int only = -1;
    if (dim) DDP_CHECK(tensor_wrap_dim("squeeze", *dim, t->ndim, &only));
    int64_t sizes[TENSOR_MAX_DIMS], strides[TENSOR_MAX_DIMS];
    int n = 0;
    for (int i = 0; i < t->ndim; i++) {
        if (t->sizes[i] == 1 && (only < 0 || only == i)) continue;
        sizes[n] = t->sizes[i];
        strides[n++] = t->strides[i];
    }
    return tensor_make_view(t, sizes, strides, n, t->offset, out);
}

ddp_status tensor_expand(const tensor *t, const int64_t *sizes, int ndim, tensor **out) {
    *out = NULL;
    char bt[128], bs[128];
    if (ndim < t->ndim || ndim > TENSOR_MAX_DIMS)
        return DDP_FAIL(DDP_ERR_ARG, "expand: cannot expand a tensor of shape %s to %d dims (%s)",
                        tensor_shape_str(t, bt, sizeof bt), ndim,
                        tensor_sizes_str(sizes, ndim > 0 ? ndim : 0, bs, sizeof bs));
    int64_t nsizes[TENSOR_MAX_DIMS], nstrides[TENSOR_MAX_DIMS];
    for (int i = 0; i < ndim; i++) {
        int d = t->ndim - ndim + i;
        int64_t want = sizes[i];
        if (d < 0) {
            if (want < 0)
                return DDP_FAIL(DDP_ERR_ARG,
                                "expand: size -1 is not allowed for a new leading dim (%s)",
                                tensor_sizes_str(sizes, ndim, bs, sizeof bs));
            nsizes[i] = want;
            nstrides[i] = 0;
            continue;
        }
        if (want == -1) want = t->sizes[d];
        if (want == t->sizes[d]) {
            nsizes[i] = want;
            nstrides[i] = t->strides[d];
        } else if (t->sizes[d] == 1 && want >= 0) {
            nsizes[i] = want;
            nstrides[i] = 0;
        } else {
            return DDP_FAIL(DDP_ERR_ARG,
                            "expand: the size of a tensor of shape %s must match %s at dim %d "
                            "(%" PRId64 " vs %" PRId64 "); only size-1 dims can be expanded",
                            tensor_shape_str(t, bt, sizeof bt),
                            tensor_sizes_str(sizes, ndim, bs, sizeof bs), i, t->sizes[d], want);
        }
    }
    /* An expanded view holds no data, but every op walks numel elements: the count must
     * fit in int64 (PyTorch: "numel: integer multiplication overflow"). */
    if (tensor_sizes_overflow(nsizes, ndim))
        return DDP_FAIL(DDP_ERR_ARG,
                        "expand: the shape %s has more elements than a tensor can count",
                        tensor_sizes_str(sizes, ndim, bs, sizeof bs));
    return tensor_make_view(t, nsizes, nstrides, ndim, t->offset, out);
}

ddp_status tensor_flatten(const tensor *t, int64_t start_dim, int64_t end_dim, tensor **out) {
    *out = NULL;
    int s = 0, e = 0;
    DDP_CHECK(tensor_wrap_dim("flatten", start_dim, t->ndim, &s));
    DDP_CHECK(tensor_wrap_dim("flatten", end_dim, t->ndim, &e));
    if (s > e) return DDP_FAIL(DDP_ERR_ARG, "flatten: start_dim %d comes after end_dim %d", s, e);
    if (t->ndim == 0) {
        int64_t one = 1;
        return tensor_reshape(t, &one, 1, out);
    }
    int64_t sizes[TENSOR_MAX_DIMS];
    int n = 0;
    for (int i = 0; i < s; i++) sizes[n++] = t->sizes[i];
    int64_t merged = 1;
    for (int i = s; i <= e; i++) merged *= t->sizes[i];
    sizes[n++] = merged;
    for (int i = e + 1; i < t->ndim; i++) sizes[n++] = t->sizes[i];
    return tensor_reshape(t, sizes, n, out);
}
