/* tensor_elementwise.c — element-wise ops: binary ops with PyTorch's broadcasting and
 * dtype promotion (tensor-tensor, tensor-scalar, in place), where, add_scaled (gradient
 * accumulation and SGD), equal and allclose. The unary ops and clamp are in
 * tensor_unary.c.
 *
 * This file is the op layer: it checks devices, dtypes and broadcasting, picks the
 * result's dtype and device and allocates it once, then hands everything to the kernels
 * of the result's device (tensor_kernels.h: tensor_cpu.c, or tensor_device.c for a CUDA
 * tensor, where a CPU 0-dim operand travels by value). Scalars become 0-dim tensors on
 * the stack, so tensor-op-scalar allocates only its result. where, equal and allclose
 * have no CUDA kernel: a GPU's operands come to the host for them (on_host). */
#include "tensor/tensor.h"
#include "tensor/tensor_internal.h"
#include "tensor/tensor_kernels.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

const char *binary_op_name(binary_op op) {
    static const char *names[] = {"add", "sub", "mul", "div", "pow", "maximum", "minimum",
                                  "eq",  "ne",  "lt",  "le",  "gt",  "ge"};
    return (unsigned)op < sizeof names / sizeof names[0] ? names[op] : "?";
}

bool binary_op_is_comparison(binary_op op) {
    return op >= BINARY_EQ;
}

/* ---- dtype rules ----------------------------------------------------------------- */

/* bool < integer < float: PyTorch promotes across categories differently from within. */
static int dtype_category(dtype dt) {
    return dt == DTYPE_BOOL ? 0 : dtype_is_float(dt) ? 2 : 1;
}

/* The promoted dtype of two tensor operands, with PyTorch's rule for 0-dim tensors: a
 * 0-dim operand only decides the dtype when it is of a higher category than the
 * dimensioned one (float32 (3) + float64 () stays float32; int64 (3) + float64 () is
 * float64). Lua numbers arrive as 0-dim tensors already of the right dtype. */
static dtype promote_operands(const tensor *a, const tensor *b) {
    bool za = a->ndim == 0, zb = b->ndim == 0;
    if (za == zb) return dtype_promote(a->dtype, b->dtype);
    const tensor *dimmed = za ? b : a, *zero = za ? a : b;
    if (dtype_category(zero->dtype) > dtype_category(dimmed->dtype)) return zero->dtype;
    return dimmed->dtype;
}

/* The dtype in which `a op b` is evaluated, from the promoted dtype p: a float for true
 * division, int64 for bool inputs. */
static dtype binary_compute_dtype(binary_op op, dtype p) {
    if (op == BINARY_DIV && !dtype_is_float(p)) return DTYPE_FLOAT32;
    if (p == DTYPE_BOOL) return DTYPE_INT64;
    return p;
}

static dtype binary_result_dtype(binary_op op, dtype p) {
    if (binary_op_is_comparison(op)) return DTYPE_BOOL;
    if (op == BINARY_DIV && !dtype_is_float(p)) return DTYPE_FLOAT32;
    if (p == DTYPE_BOOL && op != BINARY_MAXIMUM && op != BINARY_MINIMUM && op != BINARY_MUL &&
        op != BINARY_ADD)
        return DTYPE_INT64;
    return p;
}

/* The dtype a Lua number takes next to a tensor of dtype `t` (PyTorch's "wrapped
 * number" rule: it never widens a float tensor). */
static dtype scalar_dtype(dtype t, double s) {
    if (dtype_is_float(t)) return t;
    return tensor_is_integral(s) ? DTYPE_INT64 : DTYPE_FLOAT32;
}

/* A 0-dim tensor on the stack, so that tensor-op-scalar needs no allocation. */
typedef struct {
    tensor t;
    storage s;
    union {
        float f;
        double d;
        int64_t i;
        bool b;
    } v;
} stack_scalar;

static const tensor *stack_scalar_init(stack_scalar *ss, double value, dtype dt) {
    memset(ss, 0, sizeof *ss);
    ss->s.refcount = 1;
    ss->s.device = DEVICE_CPU_VALUE;
    ss->s.nbytes = sizeof ss->v;
    ss->s.data = &ss->v;
    ss->t.refcount = 1;
    ss->t.storage = &ss->s;
    ss->t.dtype = dt;
    tensor_store(dt, &ss->v, 0, value);
    return &ss->t;
}

/* A CPU 0-dim tensor: a number, which PyTorch lets meet a tensor on any device. */
static bool is_host_scalar(const tensor *t) {
    return t->ndim == 0 && tensor_is_cpu(t);
}

/* Same device, or one of them a CPU 0-dim tensor (it goes to the kernel by value). */
static ddp_status check_devices(const char *op, const tensor *a, const tensor *b) {
    if (!device_equal(a->storage->device, b->storage->device) && !is_host_scalar(a) &&
        !is_host_scalar(b))
        return tensor_check_same_device(op, a, b);
    return DDP_OK;
}

/* where, equal and allclose have no CUDA kernel yet: on a GPU their operands come to
 * the host (one copy each), the CPU computes, and where's result goes back. Correct and
 * slow; none of them is on a training step's path. */
static ddp_status on_host(const tensor *t, tensor **out) {
    return tensor_to_device(t, DEVICE_CPU_VALUE, t->dtype, out);
}

/* Where a binary op's result lives: with its operand that is not a number. */
static device result_device(const tensor *a, const tensor *b) {
    return is_host_scalar(a) && !is_host_scalar(b) ? b->storage->device : a->storage->device;
}

/* ---- binary ops ------------------------------------------------------------------ */

/* out = a op b, with a and b broadcast to out's shape. out may alias a (in place). The
 * one place the binary ops pick a backend: the result's device decides. */
static ddp_status binary_into(binary_op op, dtype compute, tensor *out, const tensor *a,
                              const tensor *b) {
    if (tensor_is_cpu(out) && (!tensor_is_cpu(a) || !tensor_is_cpu(b)))
        return tensor_check_same_device(binary_op_name(op), tensor_is_cpu(a) ? b : a, out);
    return tensor_kernels_of(out)->binary(op, compute, out, a, b);
}

/* PyTorch refuses `a - b` for two bool tensors: it is almost always a mask meant to be
 * inverted or compared, and the int64 result would hide that. */
static ddp_status check_bool_sub(binary_op op, const tensor *a, const tensor *b) {
    if (op == BINARY_SUB && a->dtype == DTYPE_BOOL && b->dtype == DTYPE_BOOL)
        return DDP_FAIL(DDP_ERR_ARG,
                        "sub: subtracting two bool tensors is not supported (as in PyTorch); "
                        "for \"exactly one of them is true\" use a:ne(b)");
    return DDP_OK;
}

/* PyTorch refuses an integer tensor to a negative integer power given as a number: the
 * answer would be 0 for every base but 1 and -1, which is never what was meant. (A
 * tensor of exponents is allowed and gives those integers, as in PyTorch.) */
static ddp_status check_int_pow(binary_op op, const tensor *a, double s) {
    if (op == BINARY_POW && !dtype_is_float(a->dtype) && tensor_is_integral(s) && s < 0)
        return DDP_FAIL(DDP_ERR_ARG,
                        "pow: integers to negative integer powers are not allowed (%s tensor, "
                        "exponent %.0f); use a float tensor, e.g. t:float():pow(%.0f)",
                        dtype_name(a->dtype), s, s);
    return DDP_OK;
}

ddp_status tensor_binary(binary_op op, const tensor *a, const tensor *b, tensor **out) {
    *out = NULL;
    const char *name = binary_op_name(op);
    DDP_CHECK(check_devices(name, a, b));
    DDP_CHECK(check_bool_sub(op, a, b));
    int64_t sizes[TENSOR_MAX_DIMS];
    int ndim;
    DDP_CHECK(tensor_broadcast_shape(name, a, b, sizes, &ndim));
    tensor *r;
    dtype p = promote_operands(a, b);
    DDP_CHECK(tensor_empty(sizes, ndim, binary_result_dtype(op, p), result_device(a, b), &r));
    ddp_status s = binary_into(op, binary_compute_dtype(op, p), r, a, b);
    if (s != DDP_OK) {
        tensor_release(r);
        return s;
    }
    *out = r;
    return DDP_OK;
}

ddp_status tensor_binary_scalar(binary_op op, const tensor *a, double s, tensor **out) {
    *out = NULL;
    DDP_CHECK(check_int_pow(op, a, s));
    stack_scalar ss;
    return tensor_binary(op, a, stack_scalar_init(&ss, s, scalar_dtype(a->dtype, s)), out);
}

ddp_status tensor_scalar_binary(binary_op op, double s, const tensor *a, tensor **out) {
    *out = NULL;
    stack_scalar ss;
    return tensor_binary(op, stack_scalar_init(&ss, s, scalar_dtype(a->dtype, s)), a, out);
}

ddp_status tensor_binary_(binary_op op, tensor *a, const tensor *b) {
    const char *name = binary_op_name(op);
    DDP_CHECK(check_devices(name, a, b));
    DDP_CHECK(check_bool_sub(op, a, b));
    char inplace_name[32];
    snprintf(inplace_name, sizeof inplace_name, "%s_", name);
    DDP_CHECK(tensor_check_writable(inplace_name, a));
    dtype p = promote_operands(a, b);
    DDP_CHECK(tensor_check_inplace_dtype(name, binary_result_dtype(op, p), a->dtype));
    int64_t bstr[TENSOR_MAX_DIMS];
    if (tensor_broadcast_strides(name, b, a->sizes, a->ndim, bstr) != DDP_OK) {
        char ba[128], bb[128];
        return DDP_FAIL(DDP_ERR_ARG,
                        "%s_: a tensor of shape %s cannot be broadcast to the shape %s of the "
                        "tensor changed in place",
                        name, tensor_shape_str(b, bb, sizeof bb),
                        tensor_shape_str(a, ba, sizeof ba));
    }
    DDP_CHECK(binary_into(op, binary_compute_dtype(op, p), a, a, b));
    tensor_bump_version(a);
    return DDP_OK;
}

ddp_status tensor_binary_scalar_(binary_op op, tensor *a, double s) {
    DDP_CHECK(check_int_pow(op, a, s));
    stack_scalar ss;
    return tensor_binary_(op, a, stack_scalar_init(&ss, s, scalar_dtype(a->dtype, s)));
}

ddp_status tensor_add_scaled_(tensor *a, const tensor *b, double alpha) {
    DDP_CHECK(tensor_check_same_device("add_", a, b));
    DDP_CHECK(tensor_check_writable("add_", a));
    if (!dtype_is_float(a->dtype) && (!tensor_is_integral(alpha) || dtype_is_float(b->dtype)))
        return tensor_check_inplace_dtype("add", DTYPE_FLOAT32, a->dtype);
    int64_t bstr[TENSOR_MAX_DIMS];
    DDP_CHECK(tensor_broadcast_strides("add_", b, a->sizes, a->ndim, bstr));
    DDP_CHECK(tensor_kernels_of(a)->add_scaled(a, b, alpha));
    tensor_bump_version(a);
    return DDP_OK;
}

/* ---- optimizer steps ------------------------------------------------------------- */

ddp_status tensor_sgd_update(tensor *const *p, tensor *const *g, tensor *const *bufs, int n,
                             const optim_sgd_scalars *k) {
    return n > 0 ? tensor_kernels_of(p[0])->sgd(p, g, bufs, n, k) : DDP_OK;
}

ddp_status tensor_adam_update(tensor *const *p, tensor *const *g, tensor *const *m,
                              tensor *const *v, int n, const optim_adam_scalars *k) {
    return n > 0 ? tensor_kernels_of(p[0])->adam(p, g, m, v, n, k) : DDP_OK;
}

/* ---- where ---------------------------------------------------------------------- */

ddp_status tensor_where(const tensor *cond, const tensor *a, const tensor *b, tensor **out) {
    *out = NULL;
    DDP_CHECK(tensor_check_same_device("where", cond, a));
    DDP_CHECK(tensor_check_same_device("where", a, b));
    if (!tensor_is_cpu(a)) {
        tensor *hc = NULL, *ha = NULL, *hb = NULL, *r = NULL;
        ddp_status s = on_host(cond, &hc);
        if (s == DDP_OK) s = on_host(a, &ha);
        if (s == DDP_OK) s = on_host(b, &hb);
        if (s == DDP_OK) s = tensor_where(hc, ha, hb, &r);
        if (s == DDP_OK) s = tensor_to_device(r, a->storage->device, r->dtype, out);
        tensor_release(hc);
        tensor_release(ha);
        tensor_release(hb);
        tensor_release(r);
        return s;
    }
    int64_t ab[TENSOR_MAX_DIMS], sizes[TENSOR_MAX_DIMS];
    int abn, n;
    DDP_CHECK(tensor_broadcast_shape("where", a, b, ab, &abn));
    tensor shape_ab = *a; /* only its shape is read, to broadcast with cond */
    shape_ab.ndim = abn;
    memcpy(shape_ab.sizes, ab, sizeof ab);
    DDP_CHECK(tensor_broadcast_shape("where", cond, &shape_ab, sizes, &n));
    dtype dt = dtype_promote(a->dtype, b->dtype);
    tensor *r;
    DDP_CHECK(tensor_empty(sizes, n, dt, a->storage->device, &r));
    int64_t cs[TENSOR_MAX_DIMS], as[TENSOR_MAX_DIMS], bs[TENSOR_MAX_DIMS];
    /* all three broadcast to `sizes` by construction */
    tensor_broadcast_strides("where", cond, sizes, n, cs);
    tensor_broadcast_strides("where", a, sizes, n, as);
    tensor_broadcast_strides("where", b, sizes, n, bs);
    const int64_t *strides[4] = {r->strides, cs, as, bs};
    int64_t offsets[4] = {r->offset, cond->offset, a->offset, b->offset};
    tensor_iter it;
    tensor_iter_init(&it, n, sizes, 4, strides, offsets);
    for (int64_t row = 0; row < it.rows; row++) {
        for (int64_t i = 0; i < it.inner; i++) {
            int64_t oo = it.offsets[0] + i * it.inner_strides[0];
            bool c = tensor_load(cond->dtype, cond->storage->data,
                                 it.offsets[1] + i * it.inner_strides[1]) != 0;
            const tensor *src = c ? a : b;
            int64_t so = c ? it.offsets[2] + i * it.inner_strides[2]
                           : it.offsets[3] + i * it.inner_strides[3];
            if (dt == DTYPE_INT64)
                tensor_store_int64(dt, r->storage->data, oo,
                                   tensor_load_int64(src->dtype, src->storage->data, so));
            else
                tensor_store(dt, r->storage->data, oo,
                             tensor_load(src->dtype, src->storage->data, so));
        }
        tensor_iter_next_row(&it);
    }
    *out = r;
    return DDP_OK;
}

/* ---- comparison ------------------------------------------------------------------ */

bool tensor_equal(const tensor *a, const tensor *b) {
    if (!tensor_same_shape(a, b)) return false;
    if (!device_equal(a->storage->device, b->storage->device)) return false;
    if (!tensor_is_cpu(a)) { /* GPU tensors compare on the host (a failed copy: unequal) */
        tensor *ha = NULL, *hb = NULL;
        bool same = on_host(a, &ha) == DDP_OK && on_host(b, &hb) == DDP_OK && tensor_equal(ha, hb);
        tensor_release(ha);
        tensor_release(hb);
        return same;
    }
    const int64_t *strides[2] = {a->strides, b->strides};
    int64_t offsets[2] = {a->offset, b->offset};
    tensor_iter it;
    tensor_iter_init(&it, a->ndim, a->sizes, 2, strides, offsets);
    bool ints = !dtype_is_float(a->dtype) && !dtype_is_float(b->dtype);
    for (int64_t r = 0; r < it.rows; r++) {
        for (int64_t i = 0; i < it.inner; i++) {
            int64_t ao = it.offsets[0] + i * it.inner_strides[0];
            int64_t bo = it.offsets[1] + i * it.inner_strides[1];
            if (ints ? tensor_load_int64(a->dtype, a->storage->data, ao) !=
                           tensor_load_int64(b->dtype, b->storage->data, bo)
                     : tensor_load(a->dtype, a->storage->data, ao) !=
                           tensor_load(b->dtype, b->storage->data, bo))
                return false;
        }
        tensor_iter_next_row(&it);
    }
    return true;
}

ddp_status tensor_allclose(const tensor *a, const tensor *b, double rtol, double atol,
                           bool equal_nan, bool *result) {
    DDP_CHECK(tensor_check_same_device("allclose", a, b));
    if (!tensor_is_cpu(a)) {
        tensor *ha = NULL, *hb = NULL;
        ddp_status s = on_host(a, &ha);
        if (s == DDP_OK) s = on_host(b, &hb);
        if (s == DDP_OK) s = tensor_allclose(ha, hb, rtol, atol, equal_nan, result);
        tensor_release(ha);
        tensor_release(hb);
        return s;
    }
    int64_t sizes[TENSOR_MAX_DIMS], as[TENSOR_MAX_DIMS], bs[TENSOR_MAX_DIMS];
    int n;
    DDP_CHECK(tensor_broadcast_shape("allclose", a, b, sizes, &n));
    tensor_broadcast_strides("allclose", a, sizes, n, as);
    tensor_broadcast_strides("allclose", b, sizes, n, bs);
    const int64_t *strides[2] = {as, bs};
    int64_t offsets[2] = {a->offset, b->offset};
    tensor_iter it;
    tensor_iter_init(&it, n, sizes, 2, strides, offsets);
    *result = true;
    for (int64_t r = 0; r < it.rows; r++) {
        for (int64_t i = 0; i < it.inner; i++) {
            double x =
                tensor_load(a->dtype, a->storage->data, it.offsets[0] + i * it.inner_strides[0]);
            double y =
                tensor_load(b->dtype, b->storage->data, it.offsets[1] + i * it.inner_strides[1]);
            bool close;
            if (x != x || y != y)
                close = equal_nan && x != x && y != y;
            else
                close =
                    x == y || (isfinite(x) && isfinite(y) && fabs(x - y) <= atol + rtol * fabs(y));
            if (!close) {
                *result = false;
                return DDP_OK;
            }
        }
        tensor_iter_next_row(&it);
    }
    return DDP_OK;
}
