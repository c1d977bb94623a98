/* tensor_device.c — copy_, fill_ and element access for tensors off the CPU.
 *
 * The host never reads device memory: every byte crosses through cuda_memcpy. A copy
 * between contiguous tensors of one dtype and shape is one transfer (host to device,
 * device to host, or device to device); anything else (broadcasting, a dtype change, a
 * strided view) is staged through the host: the bytes the view spans come across, the
 * CPU copy does the strided, converting work, and the result goes back as one transfer.
 * That is correct for every view and slow for big strided ones; the CUDA kernels for
 * strided copies replace the staging later, behind the same functions.
 *
 * tensor_device_binary and tensor_device_unary are the CUDA side of the element-wise
 * ops: the op layer
 * (tensor_elementwise.c) checks and allocates, then hands the result and the operands
 * here; the kernel is in tensor_cuda.cu, and a CPU 0-dim operand (a Lua number or a
 * scalar tensor) travels by value. */
#include <string.h>

#include "base/philox.h"
#include "tensor/device.h"
#include "tensor/tensor_internal.h"
#include "tensor/tensor_kernels.h"

/* The elements [*lo, *hi] of t's storage that its view touches (numel > 0). */
static void view_span(const tensor *t, int64_t *lo, int64_t *hi) {
    *lo = *hi = t->offset;
    for (int d = 0; d < t->ndim; d++) {
        int64_t reach = (t->sizes[d] - 1) * t->strides[d];
        if (reach < 0)
            *lo += reach;
        else
            *hi += reach;
    }
}

/* A CPU tensor holding a copy of the bytes t's view spans, viewed with t's geometry. */
static ddp_status host_view(const tensor *t, const char *op, tensor **out) {
    *out = NULL;
    int64_t lo, hi;
    view_span(t, &lo, &hi);
    int64_t n = hi - lo + 1;
    size_t es = dtype_size(t->dtype);
    tensor *span;
    DDP_CHECK(tensor_empty(&n, 1, t->dtype, DEVICE_CPU_VALUE, &span));
    ddp_status s = cuda_memcpy(tensor_data(span), (char *)t->storage->data + lo * (int64_t)es,
                               (size_t)n * es, op);
    if (s == DDP_OK) s = tensor_make_view(span, t->sizes, t->strides, t->ndim, t->offset - lo, out);
    tensor_release(span);
    return s;
}

/* Writes a host tensor made by host_view for `t` back over t's span. */
static ddp_status write_span(tensor *t, const tensor *host, const char *op) {
    int64_t lo, hi;
    view_span(t, &lo, &hi);
    size_t es = dtype_size(t->dtype);
    return cuda_memcpy((char *)t->storage->data + lo * (int64_t)es, host->storage->data,
                       (size_t)(hi - lo + 1) * es, op);
}

ddp_status tensor_device_copy(tensor *dst, const tensor *src) {
    int64_t sstrides[TENSOR_MAX_DIMS];
    DDP_CHECK(tensor_broadcast_strides("copy_", src, dst->sizes, dst->ndim, sstrides));
    int64_t n = tensor_numel(dst);
    if (n == 0) return DDP_OK;
    if (dst->dtype == src->dtype && tensor_same_shape(dst, src) && tensor_is_contiguous(dst) &&
        tensor_is_contiguous(src))
        return cuda_memcpy(tensor_device_data(dst), tensor_device_data(src),
                           (size_t)n * dtype_size(dst->dtype), "copy_");
    tensor *hs = NULL, *hd = NULL;
    ddp_status s;
    if (tensor_is_cpu(src)) {
        hs = tensor_retain((tensor *)src);
        s = DDP_OK;
    } else {
        s = host_view(src, "copy_", &hs);
    }
    if (s == DDP_OK && tensor_is_cpu(dst)) {
        s = tensor_copy_fresh(dst, hs);
    } else if (s == DDP_OK) {
        if (tensor_is_contiguous(dst))
            s = tensor_empty(dst->sizes, dst->ndim, dst->dtype, DEVICE_CPU_VALUE, &hd);
        else
            s = host_view(dst, "copy_", &hd);
        if (s == DDP_OK) s = tensor_copy_fresh(hd, hs);
        if (s == DDP_OK && tensor_is_contiguous(dst))
            s = cuda_memcpy(tensor_device_data(dst), tensor_data(hd),
                            (size_t)n * dtype_size(dst->dtype), "copy_");
        else if (s == DDP_OK)
            s = write_span(dst, hd, "copy_");
    }
    tensor_release(hs);
    tensor_release(hd);
    return s;
}

ddp_status tensor_device_fill(tensor *t, double value) {
    int64_t n = tensor_numel(t);
    if (n == 0) return DDP_OK;
    if (tensor_is_contiguous(t))
        return cuda_fill(t->storage->device.index, tensor_device_data(t), t->dtype, n, value,
                         "fill_");
    tensor *h;
    DDP_CHECK(host_view(t, "fill_", &h));
    ddp_status s = tensor_fill_fresh(h, value);
    if (s == DDP_OK) s = write_span(t, h, "fill_");
    tensor_release(h);
    return s;
}

ddp_status tensor_device_get(const tensor *t, int64_t off, double *v, int64_t *iv) {
    unsigned char buf[8] = {0};
    size_t es = dtype_size(t->dtype);
    DDP_CHECK(cuda_memcpy(buf, (char *)t->storage->data + off * (int64_t)es, es, "item"));
    if (t->dtype == DTYPE_BOOL) buf[0] = buf[0] != 0; /* device bytes are not trusted as bool */
    if (v) *v = tensor_load(t->dtype, buf, 0);
    if (iv) *iv = tensor_load_int64(t->dtype, buf, 0);
    return DDP_OK;
}

ddp_status tensor_device_set(tensor *t, int64_t off, double v) {
    unsigned char buf[8];
    size_t es = dtype_size(t->dtype);
    tensor_store(t->dtype, buf, 0, v);
    return cuda_memcpy((char *)t->storage->data + off * (int64_t)es, buf, es, "__newindex");
}

ddp_status tensor_device_random(tensor *t, int kind, double a, double b, int64_t lo, int64_t hi,
                                const char *op) {
    bool is_int = hi > lo; /* randint */
    dtype want = is_int ? DTYPE_INT64 : t->dtype;
    int64_t n = tensor_numel(t);
    if (n == 0) return DDP_OK;
    /* the kernel writes n contiguous elements in order; any other target gets a copy */
    bool direct = tensor_is_contiguous(t) && t->dtype == want;
    tensor *buf = NULL;
    if (direct)
        buf = tensor_retain(t);
    else
        DDP_CHECK(tensor_empty(t->sizes, t->ndim, want, t->storage->device, &buf));
    ddp_cuda_random_args args = {.device = t->storage->device.index,
                                 .kind = kind,
                                 .is_int = is_int,
                                 .out = tensor_device_data(buf),
                                 .n = n,
                                 .a = a,
                                 .b = b,
                                 .lo = lo,
                                 .range = (uint64_t)(hi - lo)};
    philox_generator *g = philox_default();
    args.seed = g->seed;
    args.pos = philox_take(g, kind, n);
    ddp_status s = cuda_random(&args, op);
    if (s == DDP_OK && !direct) s = tensor_copy_fresh(t, buf);
    tensor_release(buf);
    if (s == DDP_OK) tensor_bump_version(t);
    return s;
}

/* Describes t (broadcast to out's shape) as a kernel operand; a CPU 0-dim tensor becomes
 * a number passed by value. */
static ddp_status describe(const char *op, const tensor *t, const tensor *out,
                           ddp_cuda_operand *o) {
    memset(o, 0, sizeof *o);
    o->dtype = (int)t->dtype;
    if (tensor_is_cpu(t)) { /* the op layer lets only 0-dim CPU tensors get here */
        o->is_scalar = 1;
        o->scalar = tensor_get(t, 0);
        o->scalar_int = (long long)tensor_get_int64(t, 0);
        return DDP_OK;
    }
    o->data = t->storage->data;
    o->offset = t->offset;
    return tensor_broadcast_strides(op, t, out->sizes, out->ndim, o->strides);
}

/* An element-wise kernel's work over out's shape, operands described (b may be NULL). */
static ddp_status ewise_args(const char *name, int op, dtype compute, tensor *out, const tensor *a,
                             const tensor *b, ddp_cuda_ewise_args *args) {
    memset(args, 0, sizeof *args);
    args->device = out->storage->device.index;
    args->op = op;
    args->compute = (int)compute;
    args->ndim = out->ndim;
    args->numel = tensor_numel(out);
    for (int d = 0; d < out->ndim; d++) args->sizes[d] = out->sizes[d];
    DDP_CHECK(describe(name, out, out, &args->out));
    DDP_CHECK(describe(name, a, out, &args->a));
    if (b) DDP_CHECK(describe(name, b, out, &args->b));
    return DDP_OK;
}

ddp_status tensor_device_binary(binary_op op, dtype compute, tensor *out, const tensor *a,
                                const tensor *b) {
    const char *name = binary_op_name(op);
    ddp_cuda_ewise_args args;
    DDP_CHECK(ewise_args(name, (int)op, compute, out, a, b, &args));
    if (args.numel == 0) return DDP_OK;
    return cuda_binary(&args, name);
}

ddp_status tensor_device_unary(unary_op op, dtype compute, tensor *out, const tensor *a) {
    const char *name = unary_op_name(op);
    ddp_cuda_ewise_args args;
    DDP_CHECK(ewise_args(name, (int)op, compute, out, a, NULL, &args));
    if (args.numel == 0) return DDP_OK;
    return cuda_unary(&args, name);
}

/* ---- the kernel table of CUDA tensors ---------------------------------------------- */

static void set_param(ddp_cuda_ewise_args *args, int k, double v) {
    args->has_param[k] = 1;
    args->param[k] = v;
    args->param_int[k] = tensor_is_integral(v) ? (long long)v : 0;
}

/* clamp computes in the result's float dtype, or in int64 (whole bounds, see clamp's
 * dtype rule), as the CPU kernel does. */
static ddp_status cuda_clamp_kernel(tensor *out, const tensor *a, bool has_lo, double lo,
                                    bool has_hi, double hi) {
    ddp_cuda_ewise_args args;
    dtype compute = dtype_is_float(out->dtype) ? out->dtype : DTYPE_INT64;
    DDP_CHECK(ewise_args("clamp", DDP_CUDA_OP_CLAMP, compute, out, a, NULL, &args));
    if (has_lo) set_param(&args, 0, lo);
    if (has_hi) set_param(&args, 1, hi);
    if (args.numel == 0) return DDP_OK;
    return cuda_unary(&args, "clamp");
}

/* a += alpha * b: float32 when both are (alpha rounded to float32, as the CPU's), int64
 * for integers (alpha whole, checked), double otherwise. */
static ddp_status cuda_add_scaled_kernel(tensor *a, const tensor *b, double alpha) {
    dtype compute = a->dtype == DTYPE_FLOAT32 && b->dtype == DTYPE_FLOAT32 ? DTYPE_FLOAT32
                    : dtype_is_float(a->dtype)                             ? DTYPE_FLOAT64
                                                                           : DTYPE_INT64;
    ddp_cuda_ewise_args args;
    DDP_CHECK(ewise_args("add_", DDP_CUDA_OP_ADD_SCALED, compute, a, a, b, &args));
    set_param(&args, 0, compute == DTYPE_FLOAT32 ? (double)(float)alpha : alpha);
    if (args.numel == 0) return DDP_OK;
    return cuda_binary(&args, "add_");
}

/* A reduction's work: t's dims split into kept (reduced[d] false) and reduced ones. */
static void reduce_args(const tensor *t, const bool *reduced, tensor *out,
                        ddp_cuda_reduce_args *a) {
    memset(a, 0, sizeof *a);
    a->device = t->storage->device.index;
    a->in_dtype = (int)t->dtype;
    a->in = t->storage->data;
    a->offset = t->offset;
    a->nout = 1;
    a->count = 1;
    if (out) {
        a->out = out->storage->data;
        a->out_dtype = (int)out->dtype;
    }
    for (int d = 0; d < t->ndim; d++) {
        if (reduced[d]) {
            a->rsizes[a->rdim] = t->sizes[d];
            a->rstrides[a->rdim++] = t->strides[d];
            a->count *= t->sizes[d];
        } else {
            a->ksizes[a->kdim] = t->sizes[d];
            a->kstrides[a->kdim++] = t->strides[d];
            a->nout *= t->sizes[d];
        }
    }
}

static ddp_status cuda_accumulate_kernel(reduce_op op, const tensor *t, const int64_t *keep,
                                         tensor *r) {
    bool reduced[TENSOR_MAX_DIMS];
    for (int d = 0; d < t->ndim; d++) reduced[d] = keep[d] == 1 && t->sizes[d] != 1;
    ddp_cuda_reduce_args a;
    reduce_args(t, reduced, r, &a);
    a.op = (int)op;
    if (a.nout == 0) return DDP_OK;
    return cuda_reduce(CUDA_ACCUMULATE, &a, reduce_op_name(op));
}

static ddp_status cuda_extreme_kernel(const tensor *t, int d, bool is_min, tensor *values,
                                      tensor *indices) {
    bool reduced[TENSOR_MAX_DIMS] = {false};
    reduced[d] = true;
    ddp_cuda_reduce_args a;
    reduce_args(t, reduced, values, &a);
    a.index = indices ? indices->storage->data : NULL;
    a.is_min = is_min;
    if (a.nout == 0) return DDP_OK;
    return cuda_reduce(CUDA_EXTREME, &a, is_min ? "min" : "max");
}

static ddp_status cuda_softmax_kernel(const tensor *t, int d, bool log_form, tensor *out) {
    const char *name = log_form ? "log_softmax" : "softmax";
    bool reduced[TENSOR_MAX_DIMS] = {false};
    if (t->ndim) reduced[d] = true;
    ddp_cuda_reduce_args a;
    reduce_args(t, reduced, out, &a);
    a.log_form = log_form;
    a.out_step = t->ndim ? out->strides[d] : 1;
    if (!t->ndim) a.rstrides[0] = 1;
    for (int i = 0, k = 0; i < t->ndim; i++)
        if (i != d) a.out_kstrides[k++] = out->strides[i];
    if (a.nout == 0 || a.count == 0) return DDP_OK;
    return cuda_reduce(CUDA_SOFTMAX, &a, name);
}

/* c *= beta without counting a version (c is a GEMM's fresh output). */
static ddp_status scale_fresh(tensor *c, double beta) {
    ddp_cuda_ewise_args args;
    DDP_CHECK(ewise_args("mm", BINARY_MUL, c->dtype, c, c, NULL, &args));
    args.b.dtype = (int)c->dtype;
    args.b.is_scalar = 1;
    args.b.scalar = beta;
    return cuda_binary(&args, "mm");
}

/* t as cuBLAS reads it; *copy holds a contiguous copy when t's layout is irregular. */
static ddp_status blas_matrix(const tensor *t, cuda_matrix *m, tensor **copy) {
    *copy = NULL;
    if (!tensor_blas_layout(t, &m->trans, &m->ld)) {
        DDP_CHECK(tensor_clone(t, copy));
        t = *copy;
        tensor_blas_layout(t, &m->trans, &m->ld);
    }
    m->data = tensor_device_data(t);
    return DDP_OK;
}

static ddp_status cuda_gemm_kernel(bool ta, bool tb, double alpha, const tensor *a, const tensor *b,
                                   double beta, tensor *c) {
    if (!dtype_is_float(c->dtype)) /* cuBLAS has no integer GEMM; PyTorch refuses it too */
        return DDP_FAIL(DDP_ERR_UNSUPPORTED,
                        "mm: matrix products of %s tensors do not run on CUDA (as in "
                        "PyTorch); convert them with :float()",
                        dtype_name(c->dtype));
    int64_t m = c->sizes[0], n = c->sizes[1], k = ta ? a->sizes[0] : a->sizes[1];
    if (k == 0) /* an empty product: c = beta * c (cuBLAS may refuse the empty operands) */
        return beta == 0 ? tensor_fill_fresh(c, 0) : scale_fresh(c, beta);
    cuda_matrix ma, mb;
    tensor *ca, *cb = NULL;
    DDP_CHECK(blas_matrix(a, &ma, &ca));
    ddp_status s = blas_matrix(b, &mb, &cb);
    if (s == DDP_OK)
        s = cuda_gemm(c->storage->device.index, c->dtype, ta, tb, m, n, k, alpha, ma, mb, beta,
                      tensor_device_data(c), "mm");
    tensor_release(ca);
    tensor_release(cb);
    return s;
}

/* Launches a step over tensors [first, first + count) of the lists (count at most
 * DDP_CUDA_OPTIM_MAX); m and v may be NULL. */
static ddp_status optim_launch(ddp_cuda_optim_args *a, tensor *const *p, tensor *const *g,
                               tensor *const *m, tensor *const *v, int first, int count,
                               const char *op) {
    a->device = p[first]->storage->device.index;
    a->dtype = (int)p[first]->dtype;
    a->ntensors = count;
    a->start[0] = 0;
    for (int k = 0; k < count; k++) {
        int t = first + k;
        a->p[k] = tensor_device_data(p[t]);
        a->g[k] = tensor_device_data(g[t]);
        a->m[k] = m && m[t] ? tensor_device_data(m[t]) : NULL;
        a->v[k] = v && v[t] ? tensor_device_data(v[t]) : NULL;
        a->start[k + 1] = a->start[k] + tensor_numel(p[t]);
    }
    return cuda_optim(a, op);
}

static ddp_status cuda_sgd_kernel(tensor *const *p, tensor *const *g, tensor *const *bufs, int n,
                                  const optim_sgd_scalars *k) {
    ddp_cuda_optim_args a;
    memset(&a, 0, sizeof a);
    a.sgd = *k;
    for (int first = 0; first < n; first += DDP_CUDA_OPTIM_MAX) {
        int count = n - first < DDP_CUDA_OPTIM_MAX ? n - first : DDP_CUDA_OPTIM_MAX;
        DDP_CHECK(optim_launch(&a, p, g, bufs, NULL, first, count, "sgd_step"));
    }
    return DDP_OK;
}

static ddp_status cuda_adam_kernel(tensor *const *p, tensor *const *g, tensor *const *m,
                                   tensor *const *v, int n, const optim_adam_scalars *k) {
    ddp_cuda_optim_args a;
    memset(&a, 0, sizeof a);
    a.adam = 1;
    a.adam_k = *k;
    for (int first = 0; first < n; first += DDP_CUDA_OPTIM_MAX) {
        int count = n - first < DDP_CUDA_OPTIM_MAX ? n - first : DDP_CUDA_OPTIM_MAX;
        DDP_CHECK(optim_launch(&a, p, g, m, v, first, count, "adam_step"));
    }
    return DDP_OK;
}

const tensor_kernels tensor_cuda_kernels = {
    .binary = tensor_device_binary,
    .unary = tensor_device_unary,
    .clamp = cuda_clamp_kernel,
    .add_scaled = cuda_add_scaled_kernel,
    .accumulate = cuda_accumulate_kernel,
    .extreme = cuda_extreme_kernel,
    .softmax = cuda_softmax_kernel,
    .gemm = cuda_gemm_kernel,
    .sgd = cuda_sgd_kernel,
    .adam = cuda_adam_kernel,
};

const tensor_kernels *tensor_kernels_of(const tensor *t) {
    return tensor_is_cpu(t) ? &tensor_cpu_kernels : &tensor_cuda_kernels;
}
