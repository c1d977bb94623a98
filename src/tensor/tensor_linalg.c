/* tensor_linalg.c — matrix products and joining: mm, matmul, gemm_ and linear (their
 * checks and shapes; each product is one GEMM, or one per batch, run by the device's
 * kernel: OpenBLAS on the CPU, cuBLAS on a GPU, plain loops for int64), and cat, stack
 * and index_select, which copy slices with tensor_copy_ on either device. */
#include "tensor/tensor.h"
#include "tensor/tensor_internal.h"
#include "tensor/tensor_kernels.h"

#include <inttypes.h>
#include <limits.h>
#include <string.h>

/* A stack header for a slice of t (no reference taken: valid while t is). */
static void slice_header(const tensor *t, int dim, int64_t index, tensor *hdr) {
    *hdr = *t;
    hdr->refcount = 1;
    hdr->grad = NULL;
    hdr->grad_fn = NULL;
    hdr->grad_hooks = NULL;
    hdr->requires_grad = false;
    hdr->offset = t->offset + index * t->strides[dim];
    for (int d = dim; d < t->ndim - 1; d++) {
        hdr->sizes[d] = t->sizes[d + 1];
        hdr->strides[d] = t->strides[d + 1];
    }
    hdr->ndim = t->ndim - 1;
}

bool tensor_blas_layout(const tensor *t, bool *trans, int64_t *ld) {
    int64_t r = t->sizes[0], c = t->sizes[1], s0 = t->strides[0], s1 = t->strides[1];
    if ((s1 == 1 || c == 1) && (r == 1 || s0 >= (c > 1 ? c : 1))) {
        *trans = false;
        *ld = r == 1 ? (c > 1 ? c : 1) : s0;
        return true;
    }
    if ((s0 == 1 || r == 1) && (c == 1 || s1 >= (r > 1 ? r : 1))) {
        *trans = true;
        *ld = c == 1 ? (r > 1 ? r : 1) : s1;
        return true;
    }
    return false;
}

ddp_status tensor_gemm_fresh(bool ta, bool tb, double alpha, const tensor *a, const tensor *b,
                             double beta, tensor *c) {
    char sa[128], sb[128], sc[128];
    DDP_CHECK(tensor_check_same_device("gemm", a, c));
    DDP_CHECK(tensor_check_same_device("gemm", b, c));
    if (a->ndim != 2 || b->ndim != 2 || c->ndim != 2)
        return DDP_FAIL(DDP_ERR_ARG, "gemm: expected 2-D tensors, got %s, %s and %s",
                        tensor_shape_str(a, sa, sizeof sa), tensor_shape_str(b, sb, sizeof sb),
                        tensor_shape_str(c, sc, sizeof sc));
    if (a->dtype != b->dtype || a->dtype != c->dtype)
        return DDP_FAIL(DDP_ERR_ARG, "gemm: dtypes differ (%s, %s and %s)", dtype_name(a->dtype),
                        dtype_name(b->dtype), dtype_name(c->dtype));
    if (a->dtype == DTYPE_BOOL)
        return DDP_FAIL(DDP_ERR_ARG, "gemm: matrix products of bool tensors are not supported");
    int64_t m = ta ? a->sizes[1] : a->sizes[0], k = ta ? a->sizes[0] : a->sizes[1];
    int64_t kb = tb ? b->sizes[1] : b->sizes[0], n = tb ? b->sizes[0] : b->sizes[1];
    if (k != kb || c->sizes[0] != m || c->sizes[1] != n)
        return DDP_FAIL(DDP_ERR_ARG, "gemm: %s%s @ %s%s does not fit into %s",
                        tensor_shape_str(a, sa, sizeof sa), ta ? "^T" : "",
                        tensor_shape_str(b, sb, sizeof sb), tb ? "^T" : "",
                        tensor_shape_str(c, sc, sizeof sc));
    if (!tensor_is_contiguous(c))
        return DDP_FAIL(DDP_ERR_ARG, "gemm: the output %s must be contiguous",
                        tensor_shape_str(c, sc, sizeof sc));
    if (m > INT_MAX || n > INT_MAX || k > INT_MAX)
        return DDP_FAIL(DDP_ERR_ARG, "gemm: sizes beyond %d are not supported", INT_MAX);
    if (m == 0 || n == 0) return DDP_OK;
    return tensor_kernels_of(c)->gemm(ta, tb, alpha, a, b, beta, c);
}

ddp_status tensor_gemm_(bool ta, bool tb, double alpha, const tensor *a, const tensor *b,
                        double beta, tensor *c) {
    DDP_CHECK(tensor_gemm_fresh(ta, tb, alpha, a, b, beta, c));
    tensor_bump_version(c);
    return DDP_OK;
}

static ddp_status check_same_dtype(const char *op, const tensor *a, const tensor *b) {
    if (a->dtype != b->dtype)
        return DDP_FAIL(DDP_ERR_ARG,
                        "%s: both operands must have the same dtype, got %s and %s "
                        "(convert one with :to())",
                        op, dtype_name(a->dtype), dtype_name(b->dtype));
    if (a->dtype == DTYPE_BOOL)
        return DDP_FAIL(DDP_ERR_ARG, "%s: matrix products of bool tensors are not supported", op);
    return DDP_OK;
}

static ddp_status inner_mismatch(const char *op, const tensor *a, const tensor *b, int64_t ka,
                                 int64_t kb) {
    char sa[128], sb[128];
    return DDP_FAIL(DDP_ERR_ARG, "%s: %s @ %s: inner sizes %" PRId64 " and %" PRId64 " differ", op,
                    tensor_shape_str(a, sa, sizeof sa), tensor_shape_str(b, sb, sizeof sb), ka, kb);
}

ddp_status tensor_mm(const tensor *a, const tensor *b, tensor **out) {
    *out = NULL;
    char sa[128], sb[128];
    if (a->ndim != 2 || b->ndim != 2)
        return DDP_FAIL(DDP_ERR_ARG,
                        "mm: expected 2-D tensors, got %s @ %s (use matmul for other "
                        "shapes)",
                        tensor_shape_str(a, sa, sizeof sa), tensor_shape_str(b, sb, sizeof sb));
    if (a->sizes[1] != b->sizes[0]) return inner_mismatch("mm", a, b, a->sizes[1], b->sizes[0]);
    DDP_CHECK(check_same_dtype("mm", a, b));
    DDP_CHECK(tensor_check_same_device("mm", a, b));
    int64_t sizes[2] = {a->sizes[0], b->sizes[1]};
    tensor *r;
    DDP_CHECK(tensor_empty(sizes, 2, a->dtype, a->storage->device, &r));
    ddp_status s = tensor_gemm_fresh(false, false, 1.0, a, b, 0.0, r);
    if (s != DDP_OK) {
        tensor_release(r);
        return s;
    }
    *out = r;
    return DDP_OK;
}

/* x (..., k) as a matrix of all its rows (rows x k); the rows are counted, not inferred
 * with -1, which cannot be inferred when k is 0. */
static ddp_status as_rows(const tensor *x, tensor **out) {
    if (x->ndim == 2) {
        *out = tensor_retain((tensor *)x);
        return DDP_OK;
    }
    int64_t rows[2] = {1, x->sizes[x->ndim - 1]};
    for (int d = 0; d < x->ndim - 1; d++) rows[0] *= x->sizes[d];
    return tensor_reshape(x, rows, 2, out);
}

/* The rows r2 (rows x last) viewed back in the leading shape of `like` (..., last);
 * releases r2. */
static ddp_status rows_back(tensor *r2, const tensor *like, int64_t last, tensor **out) {
    int64_t sizes[TENSOR_MAX_DIMS];
    memcpy(sizes, like->sizes, sizeof sizes);
    sizes[like->ndim - 1] = last;
    ddp_status s = tensor_view(r2, sizes, like->ndim, out);
    tensor_release(r2);
    return s;
}

/* matmul of two tensors of at least 2 dims whose inner sizes agree (tensor_matmul has
 * checked them): batch dims broadcast. */
static ddp_status matmul_batched(const tensor *a, const tensor *b, tensor **out) {
    int64_t n = a->sizes[a->ndim - 2], k = a->sizes[a->ndim - 1], m = b->sizes[b->ndim - 1];
    /* (..., n, k) @ (k, m): one GEMM over all rows of a. */
    if (b->ndim == 2) {
        tensor *a2, *r2;
        DDP_CHECK(as_rows(a, &a2));
        ddp_status s = tensor_mm(a2, b, &r2);
        tensor_release(a2);
        if (s != DDP_OK) return s;
        return rows_back(r2, a, m, out);
    }
    /* Broadcast the batch dims of both. */
    tensor ba = *a, bb = *b;
    ba.ndim = a->ndim - 2, bb.ndim = b->ndim - 2;
    int64_t batch[TENSOR_MAX_DIMS], astr[TENSOR_MAX_DIMS], bstr[TENSOR_MAX_DIMS];
    int nb;
    {
        char sa[128], sb[128];
        if (tensor_broadcast_shape("matmul", &ba, &bb, batch, &nb) != DDP_OK)
            return DDP_FAIL(DDP_ERR_ARG, "matmul: the batch dims of %s and %s cannot be broadcast",
                            tensor_shape_str(a, sa, sizeof sa), tensor_shape_str(b, sb, sizeof sb));
    }
    tensor_broadcast_strides("matmul", &ba, batch, nb, astr);
    tensor_broadcast_strides("matmul", &bb, batch, nb, bstr);
    int64_t sizes[TENSOR_MAX_DIMS];
    memcpy(sizes, batch, sizeof(int64_t) * (size_t)nb);
    sizes[nb] = n, sizes[nb + 1] = m;
    tensor *r;
    DDP_CHECK(tensor_empty(sizes, nb + 2, a->dtype, a->storage->device, &r));
    int64_t count = 1;
    for (int d = 0; d < nb; d++) count *= batch[d];
    tensor ha = *a, hb = *b, hc = *r;
    ha.ndim = hb.ndim = hc.ndim = 2;
    ha.sizes[0] = n, ha.sizes[1] = k;
    ha.strides[0] = a->strides[a->ndim - 2], ha.strides[1] = a->strides[a->ndim - 1];
    hb.sizes[0] = k, hb.sizes[1] = m;
    hb.strides[0] = b->strides[b->ndim - 2], hb.strides[1] = b->strides[b->ndim - 1];
    hc.sizes[0] = n, hc.sizes[1] = m;
    hc.strides[0] = m, hc.strides[1] = 1;
    for (int64_t i = 0; i < count; i++) {
        int64_t rest = i, aoff = a->offset, boff = b->offset;
        for (int d = nb - 1; d >= 0; d--) {
            int64_t idx = rest % batch[d];
            rest /= batch[d];
            aoff += idx * astr[d];
            boff += idx * bstr[d];
        }
        ha.offset = aoff, hb.offset = boff, hc.offset = i * n * m;
        ddp_status s = tensor_gemm_fresh(false, false, 1.0, &ha, &hb, 0.0, &hc);
        if (s != DDP_OK) {
            tensor_release(r);
            return s;
        }
    }
    *out = r;
    return DDP_OK;
}

ddp_status tensor_matmul(const tensor *a, const tensor *b, tensor **out) {
    *out = NULL;
    char sa[128], sb[128];
    if (a->ndim == 0 || b->ndim == 0)
        return DDP_FAIL(DDP_ERR_ARG, "matmul: both arguments need at least 1 dim, got %s @ %s",
                        tensor_shape_str(a, sa, sizeof sa), tensor_shape_str(b, sb, sizeof sb));
    DDP_CHECK(check_same_dtype("matmul", a, b));
    DDP_CHECK(tensor_check_same_device("matmul", a, b));
    if (a->ndim == 2 && b->ndim == 2) {
        if (a->sizes[1] != b->sizes[0])
            return inner_mismatch("matmul", a, b, a->sizes[1], b->sizes[0]);
        return tensor_mm(a, b, out);
    }
    /* A 1-D operand becomes a matrix (a row for a, a column for b) and that dim is
     * removed from the result, as torch.matmul does. */
    tensor ha = *a, hb = *b;
    if (a->ndim == 1) {
        ha.ndim = 2;
        ha.sizes[0] = 1, ha.sizes[1] = a->sizes[0];
        ha.strides[0] = a->sizes[0], ha.strides[1] = a->strides[0];
    }
    if (b->ndim == 1) {
        hb.ndim = 2;
        hb.sizes[0] = b->sizes[0], hb.sizes[1] = 1;
        hb.strides[0] = b->strides[0], hb.strides[1] = 1;
    }
    if (ha.sizes[ha.ndim - 1] != hb.sizes[hb.ndim - 2])
        return inner_mismatch("matmul", a, b, ha.sizes[ha.ndim - 1], hb.sizes[hb.ndim - 2]);
    tensor *r;
    DDP_CHECK(matmul_batched(&ha, &hb, &r));
    if (a->ndim > 1 && b->ndim > 1) {
        *out = r;
        return DDP_OK;
    }
    int64_t sizes[TENSOR_MAX_DIMS];
    int n = 0;
    for (int d = 0; d < r->ndim; d++) {
        if (a->ndim == 1 && d == r->ndim - 2) continue;
        if (b->ndim == 1 && d == r->ndim - 1) continue;
        sizes[n++] = r->sizes[d];
    }
    ddp_status s = tensor_view(r, sizes, n, out);
    tensor_release(r);
    return s;
}

ddp_status tensor_linear(const tensor *x, const tensor *w, const tensor *b, tensor **out) {
    *out = NULL;
    char sx[128], sw[128], sb[128];
    if (x->ndim < 1 || w->ndim != 2)
        return DDP_FAIL(DDP_ERR_ARG,
                        "linear: expected input (..., in) and weight (out x in), got "
                        "%s and %s",
                        tensor_shape_str(x, sx, sizeof sx), tensor_shape_str(w, sw, sizeof sw));
    int64_t in = x->sizes[x->ndim - 1], nout = w->sizes[0];
    if (w->sizes[1] != in)
        return DDP_FAIL(DDP_ERR_ARG,
                        "linear: input %s and weight %s: in_features %" PRId64 " and %" PRId64
                        " differ",
                        tensor_shape_str(x, sx, sizeof sx), tensor_shape_str(w, sw, sizeof sw), in,
                        w->sizes[1]);
    DDP_CHECK(check_same_dtype("linear", x, w));
    if (b && (b->ndim != 1 || b->sizes[0] != nout))
        return DDP_FAIL(
            DDP_ERR_ARG, "linear: bias %s does not match weight %s (expected (%" PRId64 "))",
            tensor_shape_str(b, sb, sizeof sb), tensor_shape_str(w, sw, sizeof sw), nout);
    if (b) DDP_CHECK(check_same_dtype("linear", x, b));
    DDP_CHECK(tensor_check_same_device("linear", x, w));
    if (b) DDP_CHECK(tensor_check_same_device("linear", x, b));
    tensor *x2;
    DDP_CHECK(as_rows(x, &x2));
    int64_t sizes[2] = {x2->sizes[0], nout};
    tensor *r = NULL;
    ddp_status s = tensor_empty(sizes, 2, x->dtype, x->storage->device, &r);
    if (s == DDP_OK && b) s = tensor_copy_fresh(r, b); /* bias rows, then one GEMM adds x @ w^T */
    if (s == DDP_OK) s = tensor_gemm_fresh(false, true, 1.0, x2, w, b ? 1.0 : 0.0, r);
    tensor_release(x2);
    if (s != DDP_OK || x->ndim == 2) {
        if (s != DDP_OK)
            tensor_release(r);
        else
            *out = r;
        return s;
    }
    return rows_back(r, x, nout, out);
}

/* ---- joining and indexing -------------------------------------------------------- */

ddp_status tensor_cat(tensor *const *ts, int n, int64_t dim, tensor **out) {
    *out = NULL;
    if (n <= 0) return DDP_FAIL(DDP_ERR_ARG, "cat: expected a non-empty list of tensors");
    const tensor *first = ts[0];
    char s0[128], si[128];
    for (int i = 0; i < n; i++) {
        if (ts[i]->ndim == 0)
            return DDP_FAIL(DDP_ERR_ARG,
                            "cat: tensor %d is 0-dimensional and cannot be concatenated", i);
        DDP_CHECK(tensor_check_same_device("cat", ts[0], ts[i]));
    }
    int d = 0;
    DDP_CHECK(tensor_wrap_dim("cat", dim, first->ndim, &d));
    dtype dt = first->dtype;
    int64_t total = 0;
    for (int i = 0; i < n; i++) {
        const tensor *t = ts[i];
        bool ok = t->ndim == first->ndim;
        for (int j = 0; ok && j < t->ndim; j++)
            if (j != d && t->sizes[j] != first->sizes[j]) ok = false;
        if (!ok)
            return DDP_FAIL(DDP_ERR_ARG,
                            "cat: tensor %d has shape %s but tensor 0 has shape %s; sizes must "
                            "match except in dim %d",
                            i, tensor_shape_str(t, si, sizeof si),
                            tensor_shape_str(first, s0, sizeof s0), d);
        dt = dtype_promote(dt, t->dtype);
        if (t->sizes[d] > INT64_MAX - total) /* expanded views can be that long */
            return DDP_FAIL(DDP_ERR_ARG, "cat: the joined size along dim %d is too large", d);
        total += t->sizes[d];
    }
    int64_t sizes[TENSOR_MAX_DIMS];
    memcpy(sizes, first->sizes, sizeof sizes);
    sizes[d] = total;
    tensor *r;
    DDP_CHECK(tensor_empty(sizes, first->ndim, dt, first->storage->device, &r));
    int64_t at = 0;
    for (int i = 0; i < n; i++) {
        tensor part = *r; /* a stack view of r's slice [at, at + size) along d */
        part.sizes[d] = ts[i]->sizes[d];
        part.offset = at * r->strides[d];
        ddp_status s = tensor_copy_fresh(&part, ts[i]);
        if (s != DDP_OK) {
            tensor_release(r);
            return s;
        }
        at += ts[i]->sizes[d];
    }
    *out = r;
    return DDP_OK;
}

ddp_status tensor_stack(tensor *const *ts, int n, int64_t dim, tensor **out) {
    *out = NULL;
    if (n <= 0) return DDP_FAIL(DDP_ERR_ARG, "stack: expected a non-empty list of tensors");
    const tensor *first = ts[0];
    char s0[128], si[128];
    if (first->ndim >= TENSOR_MAX_DIMS)
        return DDP_FAIL(DDP_ERR_ARG, "stack: a tensor can have at most %d dims", TENSOR_MAX_DIMS);
    int d = 0;
    DDP_CHECK(tensor_wrap_dim("stack", dim, first->ndim + 1, &d));
    dtype dt = first->dtype;
    for (int i = 0; i < n; i++) {
        if (!tensor_same_shape(ts[i], first))
            return DDP_FAIL(DDP_ERR_ARG,
                            "stack: all tensors must have the same shape, but tensor %d is %s "
                            "and tensor 0 is %s",
                            i, tensor_shape_str(ts[i], si, sizeof si),
                            tensor_shape_str(first, s0, sizeof s0));
        DDP_CHECK(tensor_check_same_device("stack", ts[0], ts[i]));
        dt = dtype_promote(dt, ts[i]->dtype);
    }
    int64_t sizes[TENSOR_MAX_DIMS];
    int nd = 0;
    for (int j = 0; j <= first->ndim; j++) {
        if (j == d) sizes[nd++] = n;
        if (j < first->ndim) sizes[nd++] = first->sizes[j];
    }
    tensor *r;
    DDP_CHECK(tensor_empty(sizes, nd, dt, first->storage->device, &r));
    for (int i = 0; i < n; i++) {
        tensor part;
        slice_header(r, d, i, &part);
        ddp_status s = tensor_copy_fresh(&part, ts[i]);
        if (s != DDP_OK) {
            tensor_release(r);
            return s;
        }
    }
    *out = r;
    return DDP_OK;
}

ddp_status tensor_index_select(const tensor *t, int64_t dim, const tensor *index, tensor **out) {
    *out = NULL;
    char st[128], si[128];
    if (index->dtype != DTYPE_INT64 || index->ndim > 1)
        return DDP_FAIL(DDP_ERR_ARG,
                        "index_select: the index must be a 1-D int64 tensor, got %s %s",
                        dtype_name(index->dtype), tensor_shape_str(index, si, sizeof si));
    DDP_CHECK(tensor_check_same_device("index_select", t, index));
    int d = 0;
    DDP_CHECK(tensor_wrap_dim("index_select", dim, t->ndim, &d));
    int64_t count = tensor_numel(index);
    int64_t size = t->ndim ? t->sizes[d] : 1;
    for (int64_t i = 0; i < count; i++) {
        int64_t k = tensor_get_int64(index, i);
        if (k < 0 || k >= size)
            return DDP_FAIL(DDP_ERR_ARG,
                            "index_select: index %" PRId64
                            " is out of range for dim %d of size %" PRId64 " (shape %s)",
                            k, d, size, tensor_shape_str(t, st, sizeof st));
    }
    if (t->ndim == 0) return tensor_clone(t, out); /* PyTorch: a 0-dim source stays 0-dim */
    int64_t sizes[TENSOR_MAX_DIMS];
    memcpy(sizes, t->sizes, sizeof sizes);
    sizes[d] = count;
    tensor *r;
    DDP_CHECK(tensor_empty(sizes, t->ndim, t->dtype, t->storage->device, &r));
    for (int64_t i = 0; i < count; i++) {
        tensor src, dst;
        slice_header(t, d, tensor_get_int64(index, i), &src);
        slice_header(r, d, i, &dst);
        ddp_status s = tensor_copy_fresh(&dst, &src);
        if (s != DDP_OK) {
            tensor_release(r);
            return s;
        }
    }
    *out = r;
    return DDP_OK;
}
