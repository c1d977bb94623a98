/* tensor_create.c — tensors made from ranges and random numbers: arange, linspace, eye,
 * and the in-place random fills (uniform_, normal_, randint_) and randperm, all driven by
 * PyTorch's CPU generator of src/base/generator.h (g == NULL is the default generator),
 * so that the same seed gives PyTorch's tensors. A CUDA tensor is filled on its GPU from
 * the device generator instead (philox.h, tensor_device_random), as PyTorch's CUDA
 * numbers differ from its CPU ones too. A non-contiguous target is filled as
 * PyTorch fills it: values drawn in memory order (see fill_begin), and normal_ one value
 * at a time. */
#include "tensor/tensor.h"
#include "tensor/tensor_internal.h"
#include "base/philox.h"

#include <inttypes.h>
#include <math.h>

ddp_status tensor_arange(double start, double end, double step, const dtype *dt, tensor **out) {
    *out = NULL;
    if (step == 0 || isnan(step) || isnan(start) || isnan(end))
        return DDP_FAIL(DDP_ERR_ARG, "arange: step must be a non-zero number");
    if (!isfinite(start) || !isfinite(end))
        return DDP_FAIL(DDP_ERR_ARG, "arange: start and end must be finite");
    if ((step > 0 && end < start) || (step < 0 && end > start))
        return DDP_FAIL(DDP_ERR_ARG,
                        "arange: going from %g to %g with step %g never gets there (the step's "
                        "sign is wrong)",
                        start, end, step);
    double count = ceil((end - start) / step);
    if (count > 9.0e15) return DDP_FAIL(DDP_ERR_NOMEM, "arange: %g elements is too many", count);
    dtype type =
        dt ? *dt
           : (tensor_is_integral(start) && tensor_is_integral(end) && tensor_is_integral(step)
                  ? DTYPE_INT64
                  : DTYPE_FLOAT32);
    int64_t n = (int64_t)count;
    tensor *r;
    DDP_CHECK(tensor_empty(&n, 1, type, DEVICE_CPU_VALUE, &r));
    void *data = tensor_data(r);
    if (type == DTYPE_INT64 && tensor_is_integral(start) && tensor_is_integral(step)) {
        for (int64_t i = 0; i < n; i++) ((int64_t *)data)[i] = (int64_t)start + i * (int64_t)step;
    } else {
        for (int64_t i = 0; i < n; i++) tensor_store(type, data, i, start + (double)i * step);
    }
    *out = r;
    return DDP_OK;
}

ddp_status tensor_linspace(double start, double end, int64_t steps, dtype dt, tensor **out) {
    *out = NULL;
    if (steps < 0)
        return DDP_FAIL(DDP_ERR_ARG, "linspace: number of steps must be non-negative, got %" PRId64,
                        steps);
    tensor *r;
    DDP_CHECK(tensor_empty(&steps, 1, dt, DEVICE_CPU_VALUE, &r));
    void *data = tensor_data(r);
    if (steps == 1) tensor_store(dt, data, 0, start);
    if (steps > 1) {
        /* PyTorch's symmetric form: the first half counts up from start, the second half
         * down from end, so both ends are exact. */
        double step = (end - start) / (double)(steps - 1);
        int64_t half = steps / 2;
        for (int64_t i = 0; i < steps; i++) {
            double v = i < half ? start + step * (double)i : end - step * (double)(steps - 1 - i);
            tensor_store(dt, data, i, dt == DTYPE_INT64 ? floor(v) : v);
        }
    }
    *out = r;
    return DDP_OK;
}

ddp_status tensor_eye(int64_t n, int64_t m, dtype dt, tensor **out) {
    *out = NULL;
    if (n < 0 || m < 0)
        return DDP_FAIL(DDP_ERR_ARG, "eye: sizes must be non-negative, got %" PRId64 " x %" PRId64,
                        n, m);
    int64_t sizes[2] = {n, m};
    tensor *r;
    DDP_CHECK(tensor_zeros(sizes, 2, dt, DEVICE_CPU_VALUE, &r));
    for (int64_t i = 0; i < n && i < m; i++) tensor_store(dt, tensor_data(r), i * m + i, 1.0);
    *out = r;
    return DDP_OK;
}

/* A random fill draws its values in the order PyTorch's TensorIterator visits t: memory
 * order, i.e. the dimensions sorted by stride, largest first (a transposed tensor is
 * filled as its storage lies, not in its logical order). `*order` is t viewed in that
 * order of dimensions; the fill writes `*buf`, contiguous with that view's sizes: t's own
 * data when t is a contiguous CPU tensor with the wanted dtype, else a CPU temporary
 * that fill_finish copies into the view (so a CUDA tensor gets the numbers the CPU
 * generator gives, until the device's own generator lands). */
static ddp_status fill_begin(tensor *t, dtype want, tensor **order, tensor **buf) {
    *order = *buf = NULL;
    if (tensor_is_cpu(t) && tensor_is_contiguous(t) && t->dtype == want) {
        *order = tensor_retain(t);
        *buf = tensor_retain(t);
        return DDP_OK;
    }
    /* dimensions of size > 1 sorted by stride, largest first (insertion sort, stable);
     * those of size 1 take no part in the order and go last */
    int64_t perm[TENSOR_MAX_DIMS];
    int n = 0;
    for (int d = 0; d < t->ndim; d++) {
        if (t->sizes[d] == 1) continue;
        int at = n++;
        for (; at > 0 && t->strides[perm[at - 1]] < t->strides[d]; at--) perm[at] = perm[at - 1];
        perm[at] = d;
    }
    for (int d = 0; d < t->ndim; d++)
        if (t->sizes[d] == 1) perm[n++] = d;
    DDP_CHECK(tensor_permute(t, perm, t->ndim, order));
    ddp_status s = tensor_empty((*order)->sizes, t->ndim, want, DEVICE_CPU_VALUE, buf);
    if (s != DDP_OK) {
        tensor_release(*order);
        *order = NULL;
    }
    return s;
}

/* Ends a random fill: copies the temporary into t (through the view), and counts the one
 * write to t's version either way (tensor_copy_ counts it when it runs). */
static ddp_status fill_finish(tensor *t, tensor *order, tensor *buf) {
    ddp_status s = DDP_OK;
    if (buf == t)
        tensor_bump_version(t);
    else
        s = tensor_copy_(order, buf);
    tensor_release(buf);
    tensor_release(order);
    return s;
}

static ddp_status need_float(const char *op, const tensor *t) {
    if (!dtype_is_float(t->dtype))
        return DDP_FAIL(DDP_ERR_ARG, "%s: needs a floating point tensor, got %s", op,
                        dtype_name(t->dtype));
    return DDP_OK;
}

/* A CUDA tensor draws from the device generator (philox.h), as PyTorch's CUDA tensors
 * draw from theirs, not from a CPU generator. */
static ddp_status check_generator(const char *op, const tensor *t, const ddp_generator *g) {
    if (g && !tensor_is_cpu(t))
        return DDP_FAIL(DDP_ERR_ARG,
                        "%s: a CPU generator cannot fill a CUDA tensor (CUDA tensors draw "
                        "from the device generator, which torch.manual_seed seeds)",
                        op);
    return DDP_OK;
}

ddp_status tensor_uniform_(tensor *t, double lo, double hi, ddp_generator *g) {
    DDP_CHECK(need_float("uniform_", t));
    if (!(lo <= hi))
        return DDP_FAIL(DDP_ERR_ARG, "uniform_: expects from <= to, got from=%g and to=%g", lo, hi);
    DDP_CHECK(check_generator("uniform_", t, g));
    if (!tensor_is_cpu(t))
        return tensor_device_random(
            t, t->dtype == DTYPE_FLOAT32 ? PHILOX_UNIFORM_F32 : PHILOX_UNIFORM_F64, lo, hi, 0, 0,
            "uniform_");
    if (!g) g = generator_default();
    tensor *order, *buf;
    DDP_CHECK(fill_begin(t, t->dtype, &order, &buf));
    int64_t n = tensor_numel(buf);
    if (buf->dtype == DTYPE_FLOAT32)
        generator_uniform_f32(g, tensor_data(buf), n, lo, hi);
    else
        generator_uniform_f64(g, tensor_data(buf), n, lo, hi);
    return fill_finish(t, order, buf);
}

ddp_status tensor_normal_(tensor *t, double mean, double std, ddp_generator *g) {
    DDP_CHECK(need_float("normal_", t));
    if (!(std >= 0)) return DDP_FAIL(DDP_ERR_ARG, "normal_: std must be non-negative, got %g", std);
    DDP_CHECK(check_generator("normal_", t, g));
    if (!tensor_is_cpu(t))
        return tensor_device_random(
            t, t->dtype == DTYPE_FLOAT32 ? PHILOX_NORMAL_F32 : PHILOX_NORMAL_F64, mean, std, 0, 0,
            "normal_");
    if (!g) g = generator_default();
    tensor *order, *buf;
    DDP_CHECK(fill_begin(t, t->dtype, &order, &buf));
    int64_t n = tensor_numel(buf);
    /* PyTorch fills a contiguous tensor 16 at a time, any other one value by value */
    bool contiguous = tensor_is_contiguous(t);
    if (buf->dtype == DTYPE_FLOAT32)
        generator_normal_f32(g, tensor_data(buf), n, mean, std, contiguous);
    else
        generator_normal_f64(g, tensor_data(buf), n, mean, std, contiguous);
    return fill_finish(t, order, buf);
}

ddp_status tensor_randint_(tensor *t, int64_t lo, int64_t hi, ddp_generator *g) {
    if (hi <= lo)
        return DDP_FAIL(DDP_ERR_ARG,
                        "randint_: the range [%" PRId64 ", %" PRId64 ") is empty (need low < high)",
                        lo, hi);
    if (t->dtype == DTYPE_BOOL && (lo < 0 || hi > 2))
        return DDP_FAIL(DDP_ERR_ARG, "randint_: a bool tensor can only hold values in [0, 2)");
    DDP_CHECK(check_generator("randint_", t, g));
    if (!tensor_is_cpu(t)) return tensor_device_random(t, PHILOX_RANDINT, 0, 0, lo, hi, "randint_");
    if (!g) g = generator_default();
    tensor *order, *buf;
    DDP_CHECK(fill_begin(t, DTYPE_INT64, &order, &buf));
    generator_randint(g, tensor_data(buf), tensor_numel(buf), lo, hi);
    return fill_finish(t, order, buf);
}

ddp_status tensor_randperm(int64_t n, ddp_generator *g, tensor **out) {
    *out = NULL;
    if (n < 0) return DDP_FAIL(DDP_ERR_ARG, "randperm: n must be non-negative, got %" PRId64, n);
    if (!g) g = generator_default();
    tensor *r;
    DDP_CHECK(tensor_empty(&n, 1, DTYPE_INT64, DEVICE_CPU_VALUE, &r));
    generator_randperm(g, tensor_data(r), n);
    *out = r;
    return DDP_OK;
}
