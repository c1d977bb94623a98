/* tensor.c — the tensor object itself: dtypes and devices, life cycle (refcounted
 * tensors over refcounted, 64-byte aligned storage), inspection, element access,
 * copies and fill. Views live in tensor_view.c, the strided iterator and broadcasting in
 * tensor_iter.c, the allocators in allocator_cpu.c and cache_alloc.c, copies that cross
 * devices in tensor_device.c. */
#include "tensor/tensor.h"
#include "base/alloc.h"
#include "tensor/allocator.h"
#include "tensor/device.h"
#include "tensor/tensor_internal.h"
#include "tensor/scalar_math.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("tree-vectorize", "vect-cost-model=dynamic") /* see tensor_elementwise.c */
#endif

/* ---- dtypes and devices ---------------------------------------------------------- */

size_t dtype_size(dtype dt) {
    switch (dt) {
    case DTYPE_FLOAT32:
        return 4;
    case DTYPE_FLOAT64:
        return 8;
    case DTYPE_INT64:
        return 8;
    case DTYPE_BOOL:
        return 1;
    }
    return 0;
}

const char *dtype_name(dtype dt) {
    switch (dt) {
    case DTYPE_FLOAT32:
        return "float32";
    case DTYPE_FLOAT64:
        return "float64";
    case DTYPE_INT64:
        return "int64";
    case DTYPE_BOOL:
        return "bool";
    }
    return "?";
}

bool dtype_is_float(dtype dt) {
    return dt == DTYPE_FLOAT32 || dt == DTYPE_FLOAT64;
}

bool dtype_parse(const char *name, dtype *dt) {
    static const struct {
        const char *name;
        dtype dt;
    } names[] = {{"float32", DTYPE_FLOAT32}, {"float", DTYPE_FLOAT32}, {"float64", DTYPE_FLOAT64},
                 {"double", DTYPE_FLOAT64},  {"int64", DTYPE_INT64},   {"long", DTYPE_INT64},
                 {"bool", DTYPE_BOOL}};
    if (!name) return false;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (strcmp(name, names[i].name) == 0) {
            *dt = names[i].dt;
            return true;
        }
    }
    return false;
}

/* Order of "bigness" under PyTorch's promotion: bool < int64 < float32 < float64. */
static int dtype_rank(dtype dt) {
    switch (dt) {
    case DTYPE_BOOL:
        return 0;
    case DTYPE_INT64:
        return 1;
    case DTYPE_FLOAT32:
        return 2;
    case DTYPE_FLOAT64:
        return 3;
    }
    return 0;
}

dtype dtype_promote(dtype a, dtype b) {
    return dtype_rank(a) >= dtype_rank(b) ? a : b;
}

bool device_equal(device a, device b) {
    return a.type == b.type && (a.type == DEVICE_CPU || a.index == b.index);
}

const char *device_name(device d, char *buf, size_t len) {
    if (d.type == DEVICE_CPU)
        snprintf(buf, len, "cpu");
    else if (d.index == DEVICE_INDEX_CURRENT)
        snprintf(buf, len, "cuda");
    else
        snprintf(buf, len, "cuda:%d", d.index);
    return buf;
}

ddp_status device_parse(const char *name, device *out) {
    if (name && strcmp(name, "cpu") == 0) {
        *out = DEVICE_CPU_VALUE;
        return DDP_OK;
    }
    if (name && strncmp(name, "cuda", 4) == 0) {
        if (name[4] == '\0') {
            *out = (device){DEVICE_CUDA, DEVICE_INDEX_CURRENT};
            return DDP_OK;
        }
        if (name[4] == ':' && name[5] >= '0' && name[5] <= '9') {
            char *end = NULL;
            long idx = strtol(name + 5, &end, 10);
            if (*end == '\0' && idx < 1024) {
                *out = (device){DEVICE_CUDA, (int)idx};
                return DDP_OK;
            }
        }
    }
    return DDP_FAIL(DDP_ERR_ARG,
                    "device: unknown device '%s' (expected \"cpu\", \"cuda\" or \"cuda:N\")",
                    name ? name : "(null)");
}

bool tensor_is_integral(double v) {
    return v == floor(v) && fabs(v) < 9.2e18;
}

ddp_status tensor_check_same_device(const char *op, const tensor *a, const tensor *b) {
    if (device_equal(a->storage->device, b->storage->device)) return DDP_OK;
    char da[16], db[16];
    return DDP_FAIL(DDP_ERR_ARG, "%s: tensors are on different devices (%s and %s)", op,
                    device_name(a->storage->device, da, sizeof da),
                    device_name(b->storage->device, db, sizeof db));
}

/* ---- life cycle ------------------------------------------------------------------ */

/* Drops a reference to s (NULL-safe); the last one hands the data block back to the
 * allocator that made it, then frees the header. */
static void storage_release(storage *s) {
    if (!s || --s->refcount > 0) return;
    s->allocator->free(s->allocator, s->data, s->alloc_ctx, s->nbytes);
    free(s);
}

/* A new storage of nbytes from allocator `a` (on a's device). */
static ddp_status storage_new(ddp_allocator *a, size_t nbytes, storage **out) {
    *out = NULL;
    storage *s = ddp_calloc(1, sizeof *s);
    if (!s) return DDP_FAIL(DDP_ERR_NOMEM, "out of memory creating a tensor");
    ddp_status st = a->alloc(a, nbytes, &s->data, &s->alloc_ctx);
    if (st != DDP_OK) {
        free(s);
        return st;
    }
    s->refcount = 1;
    s->device = a->device;
    s->nbytes = nbytes;
    s->allocator = a;
    *out = s;
    return DDP_OK;
}

/* A zeroed tensor header holding a new reference to s (or NULL). */
static tensor *tensor_header(storage *s, dtype dt) {
    tensor *t = ddp_calloc(1, sizeof *t);
    if (!t) return NULL;
    t->refcount = 1;
    t->storage = s;
    if (s) s->refcount++;
    t->dtype = dt;
    return t;
}

void tensor_set_data(tensor *t, const tensor *src) {
    if (t == src) return;
    src->storage->refcount++;
    storage_release(t->storage);
    t->storage = src->storage;
    t->dtype = src->dtype;
    t->ndim = src->ndim;
    memcpy(t->sizes, src->sizes, sizeof t->sizes);
    memcpy(t->strides, src->strides, sizeof t->strides);
    t->offset = src->offset;
}

bool tensor_sizes_overflow(const int64_t *sizes, int ndim) {
    int64_t product = 1;
    for (int d = 0; d < ndim; d++) {
        int64_t size = sizes[d] > 1 ? sizes[d] : 1;
        if (size > INT64_MAX / product) return true;
        product *= size;
    }
    return false;
}

void tensor_contiguous_strides(const int64_t *sizes, int ndim, int64_t *strides) {
    int64_t s = 1;
    for (int d = ndim - 1; d >= 0; d--) {
        strides[d] = s;
        s *= sizes[d] > 1 ? sizes[d] : 1;
    }
}

const char *tensor_sizes_str(const int64_t *sizes, int ndim, char *buf, size_t len) {
    size_t used = 0;
    if (len == 0) return buf;
    used += (size_t)snprintf(buf, len, "(");
    for (int d = 0; d < ndim && used < len; d++)
        used += (size_t)snprintf(buf + used, len - used, d ? "x%" PRId64 : "%" PRId64, sizes[d]);
    if (used < len) snprintf(buf + used, len - used, ")");
    return buf;
}

/* Refuses a shape no tensor may have (DDP_ERR_ARG, or DDP_ERR_NOMEM when too large);
 * *nbytes receives the bytes of its data. */
static ddp_status check_new_shape(const int64_t *sizes, int ndim, dtype dt, size_t *nbytes) {
    if (ndim < 0 || ndim > TENSOR_MAX_DIMS)
        return DDP_FAIL(DDP_ERR_ARG,
                        "cannot create a tensor with %d dimensions; at most %d are supported", ndim,
                        TENSOR_MAX_DIMS);
    size_t numel = 1;
    bool too_big = false;
    /* The messages below name no op: tensor_empty serves zeros, ones, rand, full, ... and
     * the learner called one of those, not "empty". */
    for (int d = 0; d < ndim; d++) {
        if (sizes[d] < 0) {
            char buf[128];
            return DDP_FAIL(DDP_ERR_ARG,
                            "cannot create a tensor with negative dimension %" PRId64
                            " in size %s (sizes must be >= 0)",
                            sizes[d], tensor_sizes_str(sizes, ndim, buf, sizeof buf));
        }
        if (sizes[d] != 0 && numel > TENSOR_MAX_BYTES / (size_t)sizes[d]) too_big = true;
        numel *= (size_t)sizes[d];
    }
    for (int d = 0; d < ndim; d++)
        if (sizes[d] == 0) too_big = false; /* an empty tensor is never too big... */
    if (tensor_sizes_overflow(sizes, ndim)) too_big = true; /* ...unless it has no strides */
    if (too_big || numel > TENSOR_MAX_BYTES / dtype_size(dt)) {
        char buf[128];
        return DDP_FAIL(DDP_ERR_NOMEM,
                        "a tensor of size %s and dtype %s is too large: it would need more "
                        "than the %zu GiB a single tensor may have",
                        tensor_sizes_str(sizes, ndim, buf, sizeof buf), dtype_name(dt),
                        TENSOR_MAX_BYTES >> 30);
    }
    *nbytes = numel * dtype_size(dt);
    return DDP_OK;
}

/* A contiguous tensor over nbytes (the shape's, checked) from allocator a. */
static ddp_status new_on(ddp_allocator *a, const int64_t *sizes, int ndim, dtype dt, size_t nbytes,
                         tensor **out) {
    storage *s;
    DDP_CHECK(storage_new(a, nbytes, &s));
    tensor *t = tensor_header(s, dt);
    storage_release(s); /* the header holds it now (or nobody does) */
    if (!t) return DDP_FAIL(DDP_ERR_NOMEM, "out of memory creating a tensor");
    t->ndim = ndim;
    for (int d = 0; d < ndim; d++) t->sizes[d] = sizes[d];
    tensor_contiguous_strides(sizes, ndim, t->strides);
    /* A C bool must hold 0 or 1 (reading another byte is undefined behaviour), so the
     * one dtype whose garbage cannot be read is cleared; float and int garbage is fine,
     * as in PyTorch's torch.empty. */
    if (dt == DTYPE_BOOL) {
        if (s->device.type == DEVICE_CPU) {
            memset(s->data, 0, s->nbytes);
        } else {
            ddp_status st = cuda_memset_zero(s->device.index, s->data, s->nbytes, "empty");
            if (st != DDP_OK) {
                tensor_release(t);
                return st;
            }
        }
    }
    *out = t;
    return DDP_OK;
}

ddp_status tensor_empty(const int64_t *sizes, int ndim, dtype dt, device dev, tensor **out) {
    *out = NULL;
    size_t nbytes;
    DDP_CHECK(check_new_shape(sizes, ndim, dt, &nbytes));
    ddp_allocator *a = allocator_cpu();
    if (dev.type == DEVICE_CUDA) {
        DDP_CHECK(device_resolve(&dev));
        DDP_CHECK(cuda_allocator(dev.index, &a));
    }
    return new_on(a, sizes, ndim, dt, nbytes, out);
}

ddp_status tensor_empty_from(ddp_allocator *a, const int64_t *sizes, int ndim, dtype dt,
                             tensor **out) {
    *out = NULL;
    size_t nbytes;
    DDP_CHECK(check_new_shape(sizes, ndim, dt, &nbytes));
    return new_on(a, sizes, ndim, dt, nbytes, out);
}

ddp_status tensor_zeros(const int64_t *sizes, int ndim, dtype dt, device dev, tensor **out) {
    DDP_CHECK(tensor_empty(sizes, ndim, dt, dev, out));
    storage *s = (*out)->storage;
    if (s->device.type == DEVICE_CPU) {
        memset(s->data, 0, s->nbytes);
        return DDP_OK;
    }
    ddp_status st = cuda_memset_zero(s->device.index, s->data, s->nbytes, "zeros");
    if (st != DDP_OK) {
        tensor_release(*out);
        *out = NULL;
    }
    return st;
}

ddp_status tensor_full(const int64_t *sizes, int ndim, dtype dt, device dev, double value,
                       tensor **out) {
    DDP_CHECK(tensor_empty(sizes, ndim, dt, dev, out));
    ddp_status s = tensor_fill_fresh(*out, value);
    if (s != DDP_OK) {
        tensor_release(*out);
        *out = NULL;
    }
    return s;
}

ddp_status tensor_from_data(const void *data, const int64_t *sizes, int ndim, dtype dt,
                            tensor **out) {
    DDP_CHECK(tensor_empty(sizes, ndim, dt, DEVICE_CPU_VALUE, out));
    if ((*out)->storage->nbytes) memcpy((*out)->storage->data, data, (*out)->storage->nbytes);
    return DDP_OK;
}

ddp_status tensor_scalar(double value, dtype dt, tensor **out) {
    return tensor_full(NULL, 0, dt, DEVICE_CPU_VALUE, value, out);
}

ddp_status tensor_empty_like(const tensor *like, tensor **out) {
    return tensor_empty(like->sizes, like->ndim, like->dtype, like->storage->device, out);
}

ddp_status tensor_zeros_like(const tensor *like, tensor **out) {
    return tensor_zeros(like->sizes, like->ndim, like->dtype, like->storage->device, out);
}

tensor *tensor_retain(tensor *t) {
    if (t) t->refcount++;
    return t;
}

void tensor_release(tensor *t) {
    if (!t || --t->refcount > 0) return;
    storage_release(t->storage);
    tensor_release(t->grad);
    if (t->grad_fn && --t->grad_fn->refcount == 0) t->grad_fn->destroy(t->grad_fn);
    if (t->grad_hooks && --t->grad_hooks->refcount == 0) t->grad_hooks->destroy(t->grad_hooks);
    free(t);
}

/* ---- the version counter ------------------------------------------------------------ */

void tensor_bump_version(tensor *t) {
    if (t && t->storage) t->storage->version++;
}

uint64_t tensor_version(const tensor *t) {
    return t->storage->version;
}

/* ---- inspection ------------------------------------------------------------------ */

int64_t tensor_numel(const tensor *t) {
    int64_t n = 1;
    for (int d = 0; d < t->ndim; d++) n *= t->sizes[d];
    return n;
}

bool tensor_is_contiguous(const tensor *t) {
    int64_t expected = 1;
    for (int d = t->ndim - 1; d >= 0; d--) {
        if (t->sizes[d] == 0) return true;
        if (t->sizes[d] != 1 && t->strides[d] != expected) return false;
        expected *= t->sizes[d];
    }
    return true;
}

void *tensor_data(const tensor *t) {
    if (t->storage->device.type != DEVICE_CPU) return NULL;
    return (char *)t->storage->data + t->offset * (int64_t)dtype_size(t->dtype);
}

void *tensor_device_data(const tensor *t) {
    return (char *)t->storage->data + t->offset * (int64_t)dtype_size(t->dtype);
}

bool tensor_is_cpu(const tensor *t) {
    return t->storage->device.type == DEVICE_CPU;
}

const char *tensor_shape_str(const tensor *t, char *buf, size_t len) {
    return tensor_sizes_str(t->sizes, t->ndim, buf, len);
}

bool tensor_same_shape(const tensor *a, const tensor *b) {
    if (a->ndim != b->ndim) return false;
    for (int d = 0; d < a->ndim; d++)
        if (a->sizes[d] != b->sizes[d]) return false;
    return true;
}

ddp_status tensor_wrap_dim(const char *op, int64_t dim, int ndim, int *out) {
    int64_t n = ndim > 0 ? ndim : 1;
    if (dim < -n || dim >= n)
        return DDP_FAIL(DDP_ERR_ARG,
                        "%s: dimension %" PRId64 " is out of range for a %d-dimensional tensor "
                        "(expected in [%" PRId64 ", %" PRId64 "])",
                        op, dim, ndim, -n, n - 1);
    *out = (int)(dim < 0 ? dim + n : dim);
    return DDP_OK;
}

/* Storage offset (in elements) of logical row-major element `flat`. */
static int64_t flat_to_offset(const tensor *t, int64_t flat) {
    int64_t off = t->offset;
    for (int d = t->ndim - 1; d >= 0; d--) {
        int64_t size = t->sizes[d];
        off += (flat % size) * t->strides[d];
        flat /= size;
    }
    return off;
}

double tensor_load(dtype dt, const void *base, int64_t off) {
    switch (dt) {
    case DTYPE_FLOAT32:
        return ((const float *)base)[off];
    case DTYPE_FLOAT64:
        return ((const double *)base)[off];
    case DTYPE_INT64:
        return (double)((const int64_t *)base)[off];
    case DTYPE_BOOL:
        return ((const bool *)base)[off] ? 1.0 : 0.0;
    }
    return 0;
}

void tensor_store(dtype dt, void *base, int64_t off, double v) {
    switch (dt) {
    case DTYPE_FLOAT32:
        ((float *)base)[off] = (float)v;
        break;
    case DTYPE_FLOAT64:
        ((double *)base)[off] = v;
        break;
    case DTYPE_INT64:
        ((int64_t *)base)[off] = double_to_int64(v);
        break;
    case DTYPE_BOOL:
        ((bool *)base)[off] = v != 0;
        break;
    }
}

int64_t tensor_load_int64(dtype dt, const void *base, int64_t off) {
    switch (dt) {
    case DTYPE_INT64:
        return ((const int64_t *)base)[off];
    case DTYPE_BOOL:
        return ((const bool *)base)[off];
    default:
        return double_to_int64(tensor_load(dt, base, off));
    }
}

void tensor_store_int64(dtype dt, void *base, int64_t off, int64_t v) {
    switch (dt) {
    case DTYPE_INT64:
        ((int64_t *)base)[off] = v;
        break;
    case DTYPE_BOOL:
        ((bool *)base)[off] = v != 0;
        break;
    default:
        tensor_store(dt, base, off, (double)v);
        break;
    }
}

double tensor_get(const tensor *t, int64_t flat) {
    if (t->storage->device.type != DEVICE_CPU) {
        double v = NAN;
        tensor_device_get(t, flat_to_offset(t, flat), &v, NULL);
        return v;
    }
    return tensor_load(t->dtype, t->storage->data, flat_to_offset(t, flat));
}

void tensor_set(tensor *t, int64_t flat, double value) {
    if (t->storage->device.type != DEVICE_CPU) {
        tensor_device_set(t, flat_to_offset(t, flat), value);
        return;
    }
    tensor_store(t->dtype, t->storage->data, flat_to_offset(t, flat), value);
}

int64_t tensor_get_int64(const tensor *t, int64_t flat) {
    if (t->storage->device.type != DEVICE_CPU) {
        int64_t v = 0;
        tensor_device_get(t, flat_to_offset(t, flat), NULL, &v);
        return v;
    }
    return tensor_load_int64(t->dtype, t->storage->data, flat_to_offset(t, flat));
}

ddp_status tensor_item(const tensor *t, double *value) {
    int64_t n = tensor_numel(t);
    if (n != 1) {
        char buf[128];
        return DDP_FAIL(DDP_ERR_ARG,
                        "item: a tensor with %" PRId64 " elements (shape %s) cannot be "
                        "converted to a number; only one-element tensors can",
                        n, tensor_shape_str(t, buf, sizeof buf));
    }
    if (t->storage->device.type != DEVICE_CPU)
        return tensor_device_get(t, flat_to_offset(t, 0), value, NULL);
    *value = tensor_get(t, 0);
    return DDP_OK;
}

/* ---- views: the one constructor the view functions of tensor_view.c share ---- */

ddp_status tensor_make_view(const tensor *t, const int64_t *sizes, const int64_t *strides, int ndim,
                            int64_t offset, tensor **out) {
    *out = NULL;
    tensor *v = tensor_header(t->storage, t->dtype);
    if (!v) return DDP_FAIL(DDP_ERR_NOMEM, "view: out of memory");
    v->ndim = ndim;
    for (int d = 0; d < ndim; d++) {
        v->sizes[d] = sizes[d];
        v->strides[d] = strides[d];
    }
    v->offset = offset;
    *out = v;
    return DDP_OK;
}

/* ---- copies ---------------------------------------------------------------------- */

ddp_status tensor_contiguous(const tensor *t, tensor **out) {
    if (tensor_is_contiguous(t)) {
        *out = tensor_retain((tensor *)t);
        return DDP_OK;
    }
    return tensor_clone(t, out);
}

/* A new contiguous tensor of t's shape and device holding t's values converted to dt
 * (the copy behind clone and to_dtype). */
static ddp_status copy_as(const tensor *t, dtype dt, tensor **out) {
    tensor *r;
    DDP_CHECK(tensor_empty(t->sizes, t->ndim, dt, t->storage->device, &r));
    ddp_status s = tensor_copy_fresh(r, t);
    if (s != DDP_OK) {
        tensor_release(r);
        return s;
    }
    *out = r;
    return DDP_OK;
}

ddp_status tensor_clone(const tensor *t, tensor **out) {
    *out = NULL;
    return copy_as(t, t->dtype, out);
}

/* Copies one row of `n` elements between dtypes (strides in elements). */
static void copy_row(dtype dd, void *dbase, int64_t doff, int64_t dstride, dtype sd,
                     const void *sbase, int64_t soff, int64_t sstride, int64_t n) {
    if (dd == sd && dd == DTYPE_FLOAT32) {
        float *d = (float *)dbase + doff;
        const float *s = (const float *)sbase + soff;
        if (dstride == 1 && sstride == 1)
            memmove(d, s, (size_t)n * sizeof *d);
        else
            for (int64_t i = 0; i < n; i++) d[i * dstride] = s[i * sstride];
        return;
    }
    if (dd == sd) {
        size_t es = dtype_size(dd);
        char *d = (char *)dbase + doff * (int64_t)es;
        const char *s = (const char *)sbase + soff * (int64_t)es;
        if (dstride == 1 && sstride == 1) {
            memmove(d, s, (size_t)n * es);
        } else {
            for (int64_t i = 0; i < n; i++)
                memcpy(d + i * dstride * (int64_t)es, s + i * sstride * (int64_t)es, es);
        }
        return;
    }
    if (dd == DTYPE_INT64 || (dd == DTYPE_BOOL && sd == DTYPE_INT64)) {
        for (int64_t i = 0; i < n; i++)
            tensor_store_int64(dd, dbase, doff + i * dstride,
                               tensor_load_int64(sd, sbase, soff + i * sstride));
        return;
    }
    for (int64_t i = 0; i < n; i++)
        tensor_store(dd, dbase, doff + i * dstride, tensor_load(sd, sbase, soff + i * sstride));
}

ddp_status tensor_copy_fresh(tensor *dst, const tensor *src) {
    DDP_CHECK(tensor_check_writable("copy_", dst));
    if (dst->storage->device.type != DEVICE_CPU || src->storage->device.type != DEVICE_CPU)
        return tensor_device_copy(dst, src);
    int64_t sstrides[TENSOR_MAX_DIMS];
    DDP_CHECK(tensor_broadcast_strides("copy_", src, dst->sizes, dst->ndim, sstrides));
    const int64_t *strides[2] = {dst->strides, sstrides};
    int64_t offsets[2] = {dst->offset, src->offset};
    tensor_iter it;
    tensor_iter_init(&it, dst->ndim, dst->sizes, 2, strides, offsets);
    for (int64_t r = 0; r < it.rows; r++) {
        copy_row(dst->dtype, dst->storage->data, it.offsets[0], it.inner_strides[0], src->dtype,
                 src->storage->data, it.offsets[1], it.inner_strides[1], it.inner);
        tensor_iter_next_row(&it);
    }
    return DDP_OK;
}

ddp_status tensor_to_dtype(const tensor *t, dtype dt, tensor **out) {
    *out = NULL;
    if (t->dtype == dt) {
        *out = tensor_retain((tensor *)t);
        return DDP_OK;
    }
    return copy_as(t, dt, out);
}

ddp_status tensor_to_device(const tensor *t, device dev, dtype dt, tensor **out) {
    *out = NULL;
    DDP_CHECK(device_resolve(&dev));
    if (t->dtype == dt && device_equal(dev, t->storage->device)) {
        *out = tensor_retain((tensor *)t);
        return DDP_OK;
    }
    tensor *r;
    DDP_CHECK(tensor_empty(t->sizes, t->ndim, dt, dev, &r));
    ddp_status s = tensor_copy_fresh(r, t);
    if (s != DDP_OK) {
        tensor_release(r);
        return s;
    }
    *out = r;
    return DDP_OK;
}

ddp_status tensor_copy_(tensor *dst, const tensor *src) {
    DDP_CHECK(tensor_copy_fresh(dst, src));
    tensor_bump_version(dst);
    return DDP_OK;
}

ddp_status tensor_fill_fresh(tensor *t, double value) {
    DDP_CHECK(tensor_check_writable("fill_", t));
    if (t->storage->device.type != DEVICE_CPU) return tensor_device_fill(t, value);
    const int64_t *strides[1] = {t->strides};
    int64_t offsets[1] = {t->offset};
    tensor_iter it;
    tensor_iter_init(&it, t->ndim, t->sizes, 1, strides, offsets);
    for (int64_t r = 0; r < it.rows; r++) {
        int64_t off = it.offsets[0], st = it.inner_strides[0];
        switch (t->dtype) {
        case DTYPE_FLOAT32: {
            float *p = (float *)t->storage->data + off, v = (float)value;
            for (int64_t i = 0; i < it.inner; i++) p[i * st] = v;
            break;
        }
        case DTYPE_FLOAT64: {
            double *p = (double *)t->storage->data + off;
            for (int64_t i = 0; i < it.inner; i++) p[i * st] = value;
            break;
        }
        default:
            for (int64_t i = 0; i < it.inner; i++)
                tensor_store(t->dtype, t->storage->data, off + i * st, value);
            break;
        }
        tensor_iter_next_row(&it);
    }
    return DDP_OK;
}

ddp_status tensor_fill_(tensor *t, double value) {
    DDP_CHECK(tensor_fill_fresh(t, value));
    tensor_bump_version(t);
    return DDP_OK;
}

/* Refuses to store a float result into an integer tensor, as PyTorch does. */
ddp_status tensor_check_inplace_dtype(const char *op, dtype result, dtype target) {
    if (dtype_is_float(result) && !dtype_is_float(target))
        return DDP_FAIL(
            DDP_ERR_ARG,
            "%s_: the result is %s and cannot be stored in place into a tensor of dtype %s "
            "(use the out-of-place form, or convert the tensor first)",
            op, dtype_name(result), dtype_name(target));
    return DDP_OK;
}

ddp_status tensor_check_writable(const char *op, const tensor *t) {
    for (int d = 0; d < t->ndim; d++) {
        if (t->strides[d] == 0 && t->sizes[d] > 1) {
            char buf[128];
            return DDP_FAIL(DDP_ERR_ARG,
                            "%s: the tensor of shape %s written in place is an expanded view: "
                            "several of its elements share one memory location (clone() it "
                            "first)",
                            op, tensor_shape_str(t, buf, sizeof buf));
        }
    }
    return DDP_OK;
}
