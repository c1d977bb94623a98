/* ag_shape.c — the recorded shape ops: views (view, reshape, flatten, transpose,
 * permute, unsqueeze, squeeze, expand, narrow, select), copies (contiguous, clone,
 * to_dtype) and joins (cat, stack). Their backward passes only move gradients around:
 * reshape back, transpose back, scatter into zeros, or split along the joined dim. An
 * expand's gradient is returned as is; the engine sums it down to the input's shape. */
#include "nn/autograd_internal.h"

/* view, reshape, flatten, squeeze: the gradient reshaped to the input's sizes. */
static ddp_status reshape_backward(ag_node *n, const tensor *g, tensor **gi) {
    return tensor_reshape(g, n->edges[0].sizes, n->edges[0].ndim, &gi[0]);
}

/* identity: clone, contiguous, to_dtype and to_device (the engine converts the dtype and
 * moves the device), expand (the engine sums over the broadcast dims) */
static ddp_status identity_backward(ag_node *n, const tensor *g, tensor **gi) {
    (void)n;
    gi[0] = tensor_retain((tensor *)g);
    return DDP_OK;
}

/* Records a reshape-like op whose backward reshapes the gradient back. */
static ddp_status view_like(const char *name, const tensor *t, tensor *y, tensor **out) {
    ag_node *n;
    return ag_record(name, reshape_backward, &t, 1, y, out, &n);
}

ddp_status ag_view(const tensor *t, const int64_t *sizes, int ndim, tensor **out) {
    tensor *y;
    *out = NULL;
    DDP_CHECK(tensor_view(t, sizes, ndim, &y));
    return view_like("ViewBackward0", t, y, out);
}

ddp_status ag_reshape(const tensor *t, const int64_t *sizes, int ndim, tensor **out) {
    tensor *y;
    *out = NULL;
    DDP_CHECK(tensor_reshape(t, sizes, ndim, &y));
    /* PyTorch: a view when strides allow, else a copy seen as a view of it */
    return view_like(y->storage == t->storage ? "ViewBackward0" : "UnsafeViewBackward0", t, y, out);
}

ddp_status ag_flatten(const tensor *t, int64_t start_dim, int64_t end_dim, tensor **out) {
    tensor *y;
    *out = NULL;
    DDP_CHECK(tensor_flatten(t, start_dim, end_dim, &y));
    return view_like(y->storage == t->storage ? "ViewBackward0" : "UnsafeViewBackward0", t, y, out);
}

ddp_status ag_squeeze(const tensor *t, const int64_t *dim, tensor **out) {
    tensor *y;
    *out = NULL;
    DDP_CHECK(tensor_squeeze(t, dim, &y));
    return view_like(dim ? "SqueezeBackward1" : "SqueezeBackward0", t, y, out);
}

/* Transposing the gradient the same way undoes a transpose. */
static ddp_status transpose_backward(ag_node *n, const tensor *g, tensor **gi) {
    return tensor_transpose(g, n->ints[0], n->ints[1], &gi[0]);
}

ddp_status ag_transpose(const tensor *t, int64_t dim0, int64_t dim1, tensor **out) {
    tensor *y;
    *out = NULL;
    DDP_CHECK(tensor_transpose(t, dim0, dim1, &y));
    ag_node *n;
    DDP_CHECK(ag_record("TransposeBackward0", transpose_backward, &t, 1, y, out, &n));
    if (n) {
        n->ints[0] = dim0;
        n->ints[1] = dim1;
    }
    return DDP_OK;
}

/* The gradient permuted by the inverse permutation (kept in ints). */
static ddp_status permute_backward(ag_node *n, const tensor *g, tensor **gi) {
    return tensor_permute(g, n->ints, n->nints, &gi[0]);
}

ddp_status ag_permute(const tensor *t, const int64_t *dims, int ndim, tensor **out) {
    tensor *y;
    *out = NULL;
    DDP_CHECK(tensor_permute(t, dims, ndim, &y));
    ag_node *n;
    DDP_CHECK(ag_record("PermuteBackward0", permute_backward, &t, 1, y, out, &n));
    if (n) { /* the inverse permutation; dims were validated by tensor_permute */
        n->nints = ndim;
        for (int i = 0; i < ndim; i++) {
            int64_t d = dims[i] < 0 ? dims[i] + ndim : dims[i];
            n->ints[d] = i;
        }
    }
    return DDP_OK;
}

/* Squeezes away the dim that unsqueeze added. */
static ddp_status unsqueeze_backward(ag_node *n, const tensor *g, tensor **gi) {
    return tensor_squeeze(g, &n->dim, &gi[0]);
}

ddp_status ag_unsqueeze(const tensor *t, int64_t dim, tensor **out) {
    tensor *y;
    *out = NULL;
    DDP_CHECK(tensor_unsqueeze(t, dim, &y));
    ag_node *n;
    DDP_CHECK(ag_record("UnsqueezeBackward0", unsqueeze_backward, &t, 1, y, out, &n));
    if (n) n->dim = dim < 0 ? dim + t->ndim + 1 : dim;
    return DDP_OK;
}

ddp_status ag_expand(const tensor *t, const int64_t *sizes, int ndim, tensor **out) {
    tensor *y;
    *out = NULL;
    DDP_CHECK(tensor_expand(t, sizes, ndim, &y));
    ag_node *n;
    return ag_record("ExpandBackward0", identity_backward, &t, 1, y, out, &n);
}

/* narrow (flag false) and select (flag true): the gradient lands in a zero tensor of
 * the input's shape, at the place the view was cut from. */
static ddp_status slice_backward(ag_node *n, const tensor *g, tensor **gi) {
    const ag_edge *e = &n->edges[0];
    tensor *z, *part;
    DDP_CHECK(ag_zeros(g, e->sizes, e->ndim, g->dtype, &z));
    ddp_status s = n->flag ? tensor_select(z, n->dim, n->start, &part)
                           : tensor_narrow(z, n->dim, n->start, n->length, &part);
    if (s == DDP_OK) s = tensor_copy_(part, g);
    tensor_release(part);
    if (s != DDP_OK) {
        tensor_release(z);
        return s;
    }
    gi[0] = z;
    return DDP_OK;
}

ddp_status ag_narrow(const tensor *t, int64_t dim, int64_t start, int64_t length, tensor **out) {
    tensor *y;
    *out = NULL;
    DDP_CHECK(tensor_narrow(t, dim, start, length, &y));
    ag_node *n;
    DDP_CHECK(ag_record("SliceBackward0", slice_backward, &t, 1, y, out, &n));
    if (n) {
        int d = 0;
        (void)tensor_wrap_dim("narrow", dim, t->ndim, &d); /* checked by tensor_narrow */
        n->dim = d;
        n->start = start < 0 ? start + t->sizes[d] : start;
        n->length = length;
    }
    return DDP_OK;
}

ddp_status ag_select(const tensor *t, int64_t dim, int64_t index, tensor **out) {
    tensor *y;
    *out = NULL;
    DDP_CHECK(tensor_select(t, dim, index, &y));
    ag_node *n;
    DDP_CHECK(ag_record("SelectBackward0", slice_backward, &t, 1, y, out, &n));
    if (n) {
        int d = 0;
        (void)tensor_wrap_dim("select", dim, t->ndim, &d); /* checked by tensor_select */
        n->dim = d;
        n->start = index < 0 ? index + t->sizes[d] : index;
        n->flag = true;
    }
    return DDP_OK;
}

ddp_status ag_contiguous(const tensor *t, tensor **out) {
    tensor *y;
    *out = NULL;
    DDP_CHECK(tensor_contiguous(t, &y));
    ag_node *n; /* nothing is recorded when t was already contiguous (y == t) */
    return ag_record("CloneBackward0", identity_backward, &t, 1, y, out, &n);
}

ddp_status ag_clone(const tensor *t, tensor **out) {
    tensor *y;
    *out = NULL;
    DDP_CHECK(tensor_clone(t, &y));
    ag_node *n;
    return ag_record("CloneBackward0", identity_backward, &t, 1, y, out, &n);
}

ddp_status ag_to_dtype(const tensor *t, dtype dt, tensor **out) {
    tensor *y;
    *out = NULL;
    DDP_CHECK(tensor_to_dtype(t, dt, &y));
    ag_node *n; /* nothing is recorded for a non-float result or when y == t */
    return ag_record("ToCopyBackward0", identity_backward, &t, 1, y, out, &n);
}

ddp_status ag_to_device(const tensor *t, device dev, dtype dt, tensor **out) {
    tensor *y;
    *out = NULL;
    DDP_CHECK(tensor_to_device(t, dev, dt, &y));
    ag_node *n; /* the engine moves the gradient back to t's device and dtype */
    return ag_record("ToCopyBackward0", identity_backward, &t, 1, y, out, &n);
}

/* cat (flag false): each input's gradient is its slab of g along dim; stack (flag
 * true): each input's gradient is g selected at its index along the new dim. */
static ddp_status join_backward(ag_node *n, const tensor *g, tensor **gi) {
    int64_t offset = 0;
    for (int i = 0; i < n->n_edges; i++) {
        const ag_edge *e = &n->edges[i];
        int64_t len = n->flag ? 1 : e->sizes[n->dim];
        if (e->needed) {
            if (n->flag)
                DDP_CHECK(tensor_select(g, n->dim, i, &gi[i]));
            else
                DDP_CHECK(tensor_narrow(g, n->dim, offset, len, &gi[i]));
        }
        offset += len;
    }
    return DDP_OK;
}

/* Records cat (name CatBackward0) or stack (StackBackward0) around y. */
static ddp_status record_join(const char *name, bool stack, tensor *const *ts, int n, int64_t dim,
                              int ndim, tensor *y, tensor **out) {
    ag_node *node;
    DDP_CHECK(ag_record(name, join_backward, (const tensor *const *)ts, n, y, out, &node));
    if (node) {
        int d = 0;
        (void)tensor_wrap_dim(name, dim, ndim, &d); /* checked by the forward op */
        node->dim = d;
        node->flag = stack;
    }
    return DDP_OK;
}

ddp_status ag_cat(tensor *const *ts, int n, int64_t dim, tensor **out) {
    tensor *y;
    *out = NULL;
    DDP_CHECK(tensor_cat(ts, n, dim, &y));
    return record_join("CatBackward0", false, ts, n, dim, y->ndim, y, out);
}

ddp_status ag_stack(tensor *const *ts, int n, int64_t dim, tensor **out) {
    tensor *y;
    *out = NULL;
    DDP_CHECK(tensor_stack(ts, n, dim, &y));
    return record_join("StackBackward0", true, ts, n, dim, y->ndim, y, out);
}
