/* tensor_elementwise.c — element-wise ops: binary ops with PyTorch's
 * broadcasting and dtype promotion (tensor-tensor, tensor-scalar, in place), where,
 * add_scaled_ (gradient accumulation and SGD), equal and allclose. The unary ops and
 * clamp are in tensor_unary.c.
 *
 * Every op walks its operands with the strided iterator of tensor_internal.h, one row
 * (the innermost coalesced dim) at a time. Rows where everything is float32 with unit or
 * zero strides run tight loops the compiler vectorises: this covers same-shape
 * contiguous tensors, tensor op scalar, and the row broadcast (N x C) op (C); a float32
 * result with a bool or int64 operand (a gradient times a relu mask) converts that
 * operand by chunks and runs the same loops, and float32 comparisons write bool rows
 * directly. Every other row goes through small chunks of double (or int64, when the op
 * computes in integers), which is exact for the float32 results of + - * /. Scalars
 * become 0-dim tensors on the stack, so tensor-op-scalar allocates only its result.
 *
 * The binary ops are the first with a CUDA kernel: their checks (devices, dtypes,
 * broadcasting) and the result's allocation are shared, and binary_into hands a result
 * on a GPU to tensor_device_binary (tensor_device.c, kernel in tensor_cuda.cu), where a
 * CPU 0-dim operand travels by value. The other ops here still refuse CUDA tensors. */
#include "tensor/tensor.h"
#include "tensor/tensor_internal.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* Debian's GCC does not vectorise at -O2; these loops are the hot path of small-model
 * training, so ask for it here rather than changing the flags of the whole project. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("tree-vectorize", "vect-cost-model=dynamic")
#endif

#define INLINE static inline __attribute__((always_inline))
#define CHUNK 256

const char *binary_op_name(binary_op op) {
    static const char *names[] = {"add", "sub", "mul", "div", "pow", "maximum", "minimum",
                                  "eq",  "ne",  "lt",  "le",  "gt",  "ge"};
    return (unsigned)op < sizeof names / sizeof names[0] ? names[op] : "?";
}

static bool is_comparison(binary_op op) {
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
    if (is_comparison(op)) return DTYPE_BOOL;
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

static ddp_status fail_devices(const char *op, const tensor *a, const tensor *b) {
    char da[16], db[16];
    return DDP_FAIL(DDP_ERR_ARG, "%s: tensors are on different devices (%s and %s)", op,
                    device_name(a->storage->device, da, sizeof da),
                    device_name(b->storage->device, db, sizeof db));
}

/* Same device, or one of them a CPU 0-dim tensor (it goes to the kernel by value). */
static ddp_status check_devices(const char *op, const tensor *a, const tensor *b) {
    if (!device_equal(a->storage->device, b->storage->device) && !is_host_scalar(a) &&
        !is_host_scalar(b))
        return fail_devices(op, a, b);
    return DDP_OK;
}

/* The ops below that have no CUDA kernel yet: both operands on the CPU. */
static ddp_status check_cpu_pair(const char *op, const tensor *a, const tensor *b) {
    if (!device_equal(a->storage->device, b->storage->device)) return fail_devices(op, a, b);
    return tensor_check_cpu(op, a);
}

/* Where a binary op's result lives: with its operand that is not a number. */
static device result_device(const tensor *a, const tensor *b) {
    return is_host_scalar(a) && !is_host_scalar(b) ? b->storage->device : a->storage->device;
}

/* ---- row kernels ----------------------------------------------------------------- */

INLINE float f32_apply(binary_op op, float x, float y) {
    switch (op) {
    case BINARY_ADD:
        return x + y;
    case BINARY_SUB:
        return x - y;
    case BINARY_MUL:
        return x * y;
    case BINARY_DIV:
        return x / y;
    case BINARY_POW:
        return powf(x, y);
    case BINARY_MAXIMUM:
        return (x != x || x > y) ? x : y; /* NaN propagates */
    case BINARY_MINIMUM:
        return (x != x || x < y) ? x : y;
    default:
        return 0;
    }
}

/* o[i] = a[i*sa] op b[i*sb] with op a constant after inlining. */
INLINE void f32_loop(binary_op op, float *o, const float *a, int64_t sa, const float *b, int64_t sb,
                     int64_t n) {
    if (sa == 1 && sb == 1) {
        for (int64_t i = 0; i < n; i++) o[i] = f32_apply(op, a[i], b[i]);
    } else if (sa == 1 && sb == 0) {
        float y = b[0];
        for (int64_t i = 0; i < n; i++) o[i] = f32_apply(op, a[i], y);
    } else if (sa == 0 && sb == 1) {
        float x = a[0];
        for (int64_t i = 0; i < n; i++) o[i] = f32_apply(op, x, b[i]);
    } else {
        for (int64_t i = 0; i < n; i++) o[i] = f32_apply(op, a[i * sa], b[i * sb]);
    }
}

static void f32_row(binary_op op, float *o, const float *a, int64_t sa, const float *b, int64_t sb,
                    int64_t n) {
    switch (op) {
    case BINARY_ADD:
        f32_loop(BINARY_ADD, o, a, sa, b, sb, n);
        break;
    case BINARY_SUB:
        f32_loop(BINARY_SUB, o, a, sa, b, sb, n);
        break;
    case BINARY_MUL:
        f32_loop(BINARY_MUL, o, a, sa, b, sb, n);
        break;
    case BINARY_DIV:
        f32_loop(BINARY_DIV, o, a, sa, b, sb, n);
        break;
    case BINARY_POW:
        f32_loop(BINARY_POW, o, a, sa, b, sb, n);
        break;
    case BINARY_MAXIMUM:
        f32_loop(BINARY_MAXIMUM, o, a, sa, b, sb, n);
        break;
    case BINARY_MINIMUM:
        f32_loop(BINARY_MINIMUM, o, a, sa, b, sb, n);
        break;
    default:
        break;
    }
}

static void f64_apply(binary_op op, double *r, const double *x, const double *y, int64_t n) {
    switch (op) {
    case BINARY_ADD:
        for (int64_t i = 0; i < n; i++) r[i] = x[i] + y[i];
        break;
    case BINARY_SUB:
        for (int64_t i = 0; i < n; i++) r[i] = x[i] - y[i];
        break;
    case BINARY_MUL:
        for (int64_t i = 0; i < n; i++) r[i] = x[i] * y[i];
        break;
    case BINARY_DIV:
        for (int64_t i = 0; i < n; i++) r[i] = x[i] / y[i];
        break;
    case BINARY_POW:
        for (int64_t i = 0; i < n; i++) r[i] = pow(x[i], y[i]);
        break;
    case BINARY_MAXIMUM:
        for (int64_t i = 0; i < n; i++) r[i] = (x[i] != x[i] || x[i] > y[i]) ? x[i] : y[i];
        break;
    case BINARY_MINIMUM:
        for (int64_t i = 0; i < n; i++) r[i] = (x[i] != x[i] || x[i] < y[i]) ? x[i] : y[i];
        break;
    case BINARY_EQ:
        for (int64_t i = 0; i < n; i++) r[i] = x[i] == y[i];
        break;
    case BINARY_NE:
        for (int64_t i = 0; i < n; i++) r[i] = x[i] != y[i];
        break;
    case BINARY_LT:
        for (int64_t i = 0; i < n; i++) r[i] = x[i] < y[i];
        break;
    case BINARY_LE:
        for (int64_t i = 0; i < n; i++) r[i] = x[i] <= y[i];
        break;
    case BINARY_GT:
        for (int64_t i = 0; i < n; i++) r[i] = x[i] > y[i];
        break;
    case BINARY_GE:
        for (int64_t i = 0; i < n; i++) r[i] = x[i] >= y[i];
        break;
    }
}

/* Integer power by squaring; negative exponents give 0 except for bases 1 and -1. */
static int64_t ipow(int64_t base, int64_t e) {
    if (e < 0) return base == 1 ? 1 : base == -1 ? (e % 2 ? -1 : 1) : 0;
    uint64_t result = 1, b = (uint64_t)base; /* unsigned: wraps like PyTorch, no UB */
    while (e) {
        if (e & 1) result *= b;
        b *= b;
        e >>= 1;
    }
    return (int64_t)result;
}

static void i64_apply(binary_op op, int64_t *r, const int64_t *x, const int64_t *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        int64_t a = x[i], b = y[i];
        switch (op) {
        case BINARY_ADD:
            r[i] = (int64_t)((uint64_t)a + (uint64_t)b);
            break;
        case BINARY_SUB:
            r[i] = (int64_t)((uint64_t)a - (uint64_t)b);
            break;
        case BINARY_MUL:
            r[i] = (int64_t)((uint64_t)a * (uint64_t)b);
            break;
        case BINARY_DIV:
            r[i] = b ? a / b : 0;
            break; /* not reached: division is float */
        case BINARY_POW:
            r[i] = ipow(a, b);
            break;
        case BINARY_MAXIMUM:
            r[i] = a > b ? a : b;
            break;
        case BINARY_MINIMUM:
            r[i] = a < b ? a : b;
            break;
        case BINARY_EQ:
            r[i] = a == b;
            break;
        case BINARY_NE:
            r[i] = a != b;
            break;
        case BINARY_LT:
            r[i] = a < b;
            break;
        case BINARY_LE:
            r[i] = a <= b;
            break;
        case BINARY_GT:
            r[i] = a > b;
            break;
        case BINARY_GE:
            r[i] = a >= b;
            break;
        }
    }
}

/* One row of out = a op b through chunks of double or int64, any dtypes and strides. */
static void generic_row(binary_op op, dtype compute, tensor *out, int64_t oo, int64_t so,
                        const tensor *a, int64_t ao, int64_t sa, const tensor *b, int64_t bo,
                        int64_t sb, int64_t n) {
    void *od = out->storage->data;
    const void *ad = a->storage->data, *bd = b->storage->data;
    for (int64_t start = 0; start < n; start += CHUNK) {
        int64_t m = n - start < CHUNK ? n - start : CHUNK;
        int64_t ai = ao + start * sa, bi = bo + start * sb, oi = oo + start * so;
        if (compute == DTYPE_INT64) {
            int64_t x[CHUNK], y[CHUNK], r[CHUNK];
            tensor_load_row_int64(a->dtype, ad, ai, sa, x, m);
            tensor_load_row_int64(b->dtype, bd, bi, sb, y, m);
            i64_apply(op, r, x, y, m);
            tensor_store_row_int64(out->dtype, od, oi, so, r, m);
        } else {
            double x[CHUNK], y[CHUNK], r[CHUNK];
            tensor_load_row(a->dtype, ad, ai, sa, x, m);
            tensor_load_row(b->dtype, bd, bi, sb, y, m);
            if (compute == DTYPE_FLOAT32) /* operands first become float32, as in PyTorch */
                for (int64_t i = 0; i < m; i++) x[i] = (float)x[i], y[i] = (float)y[i];
            f64_apply(op, r, x, y, m);
            tensor_store_row(out->dtype, od, oi, so, r, m);
        }
    }
}

INLINE bool f32_compare(binary_op op, float x, float y) {
    switch (op) {
    case BINARY_EQ:
        return x == y;
    case BINARY_NE:
        return x != y;
    case BINARY_LT:
        return x < y;
    case BINARY_LE:
        return x <= y;
    case BINARY_GT:
        return x > y;
    case BINARY_GE:
        return x >= y;
    default:
        return false;
    }
}

INLINE void f32_compare_loop(binary_op op, bool *o, const float *a, int64_t sa, const float *b,
                             int64_t sb, int64_t n) {
    if (sa == 1 && sb == 1) {
        for (int64_t i = 0; i < n; i++) o[i] = f32_compare(op, a[i], b[i]);
    } else if (sa == 1 && sb == 0) {
        float y = b[0];
        for (int64_t i = 0; i < n; i++) o[i] = f32_compare(op, a[i], y);
    } else {
        for (int64_t i = 0; i < n; i++) o[i] = f32_compare(op, a[i * sa], b[i * sb]);
    }
}

/* Comparisons of float32 rows into a contiguous bool row (masks for relu and friends). */
static void f32_compare_row(binary_op op, bool *o, const float *a, int64_t sa, const float *b,
                            int64_t sb, int64_t n) {
    switch (op) {
    case BINARY_EQ:
        f32_compare_loop(BINARY_EQ, o, a, sa, b, sb, n);
        break;
    case BINARY_NE:
        f32_compare_loop(BINARY_NE, o, a, sa, b, sb, n);
        break;
    case BINARY_LT:
        f32_compare_loop(BINARY_LT, o, a, sa, b, sb, n);
        break;
    case BINARY_LE:
        f32_compare_loop(BINARY_LE, o, a, sa, b, sb, n);
        break;
    case BINARY_GT:
        f32_compare_loop(BINARY_GT, o, a, sa, b, sb, n);
        break;
    case BINARY_GE:
        f32_compare_loop(BINARY_GE, o, a, sa, b, sb, n);
        break;
    default:
        break;
    }
}

/* Points *p at a float32 view of n elements of t from `off` (stride *stride): t's own
 * data when it is float32, else `buf` filled by conversion (stride 1, or one element
 * with stride 0 for a broadcast scalar). */
static void as_f32(const tensor *t, int64_t off, int64_t *stride, int64_t n, float *buf,
                   const float **p) {
    if (t->dtype == DTYPE_FLOAT32) {
        *p = (const float *)t->storage->data + off;
        return;
    }
    int64_t st = *stride, count = st == 0 ? 1 : n; /* a local stride lets the loops vectorise */
    const void *base = t->storage->data;
    switch (t->dtype) {
    case DTYPE_BOOL: {
        const bool *x = (const bool *)base + off;
        for (int64_t i = 0; i < count; i++) buf[i] = x[i * st] ? 1.0f : 0.0f;
        break;
    }
    case DTYPE_INT64: {
        const int64_t *x = (const int64_t *)base + off;
        for (int64_t i = 0; i < count; i++) buf[i] = (float)x[i * st];
        break;
    }
    default:
        for (int64_t i = 0; i < count; i++)
            buf[i] = (float)tensor_load(t->dtype, base, off + i * st);
        break;
    }
    if (*stride != 0) *stride = 1;
    *p = buf;
}

/* One row of a float32 result whose operands are not all float32 (a float tensor times a
 * bool mask, an int64 tensor plus a float32 one): convert by chunks, then the fast loop. */
static void mixed_f32_row(binary_op op, float *o, const tensor *a, int64_t ao, int64_t sa,
                          const tensor *b, int64_t bo, int64_t sb, int64_t n) {
    float xa[CHUNK], xb[CHUNK];
    for (int64_t start = 0; start < n; start += CHUNK) {
        int64_t m = n - start < CHUNK ? n - start : CHUNK, ssa = sa, ssb = sb;
        const float *pa, *pb;
        as_f32(a, ao + start * sa, &ssa, m, xa, &pa);
        as_f32(b, bo + start * sb, &ssb, m, xb, &pb);
        f32_row(op, o + start, pa, ssa, pb, ssb, m);
    }
}

/* out = a op b, with a and b broadcast to out's shape. out may alias a (in place). */
static ddp_status binary_into(binary_op op, dtype compute, tensor *out, const tensor *a,
                              const tensor *b) {
    const char *name = binary_op_name(op);
    /* the one place the op layer picks a backend: the result's device decides */
    if (!tensor_is_cpu(out)) return tensor_device_binary(op, compute, out, a, b);
    if (!tensor_is_cpu(a) || !tensor_is_cpu(b))
        return fail_devices(name, tensor_is_cpu(a) ? b : a, out);
    int64_t astr[TENSOR_MAX_DIMS], bstr[TENSOR_MAX_DIMS];
    DDP_CHECK(tensor_broadcast_strides(name, a, out->sizes, out->ndim, astr));
    DDP_CHECK(tensor_broadcast_strides(name, b, out->sizes, out->ndim, bstr));
    const int64_t *strides[3] = {out->strides, astr, bstr};
    int64_t offsets[3] = {out->offset, a->offset, b->offset};
    tensor_iter it;
    tensor_iter_init(&it, out->ndim, out->sizes, 3, strides, offsets);
    bool unit_out = it.inner_strides[0] == 1;
    bool f32_in = a->dtype == DTYPE_FLOAT32 && b->dtype == DTYPE_FLOAT32;
    bool f32_out =
        compute == DTYPE_FLOAT32 && out->dtype == DTYPE_FLOAT32 && unit_out && !is_comparison(op);
    bool f32_cmp = is_comparison(op) && f32_in && out->dtype == DTYPE_BOOL && unit_out;
    for (int64_t r = 0; r < it.rows; r++) {
        float *o = f32_out ? (float *)out->storage->data + it.offsets[0] : NULL;
        const float *pa = f32_in ? (const float *)a->storage->data + it.offsets[1] : NULL;
        const float *pb = f32_in ? (const float *)b->storage->data + it.offsets[2] : NULL;
        int64_t sa = it.inner_strides[1], sb = it.inner_strides[2];
        if (f32_out && f32_in) {
            f32_row(op, o, pa, sa, pb, sb, it.inner);
        } else if (f32_out) {
            mixed_f32_row(op, o, a, it.offsets[1], sa, b, it.offsets[2], sb, it.inner);
        } else if (f32_cmp) {
            f32_compare_row(op, (bool *)out->storage->data + it.offsets[0], pa, sa, pb, sb,
                            it.inner);
        } else {
            generic_row(op, compute, out, it.offsets[0], it.inner_strides[0], a, it.offsets[1], sa,
                        b, it.offsets[2], sb, it.inner);
        }
        tensor_iter_next_row(&it);
    }
    return DDP_OK;
}

/* ---- binary ops ------------------------------------------------------------------ */

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
    DDP_CHECK(check_cpu_pair("add_", a, b));
    DDP_CHECK(tensor_check_writable("add_", a));
    if (!dtype_is_float(a->dtype) && (!tensor_is_integral(alpha) || dtype_is_float(b->dtype)))
        return tensor_check_inplace_dtype("add", DTYPE_FLOAT32, a->dtype);
    int64_t bstr[TENSOR_MAX_DIMS];
    DDP_CHECK(tensor_broadcast_strides("add_", b, a->sizes, a->ndim, bstr));
    const int64_t *strides[2] = {a->strides, bstr};
    int64_t offsets[2] = {a->offset, b->offset};
    tensor_iter it;
    tensor_iter_init(&it, a->ndim, a->sizes, 2, strides, offsets);
    bool fast = a->dtype == DTYPE_FLOAT32 && b->dtype == DTYPE_FLOAT32;
    float alpha_f = (float)alpha;
    for (int64_t r = 0; r < it.rows; r++) {
        int64_t sa = it.inner_strides[0], sb = it.inner_strides[1], n = it.inner;
        if (fast && sa == 1 && sb == 1) {
            float *x = (float *)a->storage->data + it.offsets[0];
            const float *y = (const float *)b->storage->data + it.offsets[1];
            for (int64_t i = 0; i < n; i++) x[i] += alpha_f * y[i];
        } else if (fast) {
            float *x = (float *)a->storage->data + it.offsets[0];
            const float *y = (const float *)b->storage->data + it.offsets[1];
            for (int64_t i = 0; i < n; i++) x[i * sa] += alpha_f * y[i * sb];
        } else if (!dtype_is_float(a->dtype)) {
            /* alpha is integral and below 2^63 (checked above); unsigned arithmetic wraps
             * as PyTorch's int64 does, with no undefined overflow */
            uint64_t k = (uint64_t)(int64_t)alpha;
            for (int64_t i = 0; i < n; i++) {
                int64_t ao = it.offsets[0] + i * sa;
                uint64_t x = (uint64_t)tensor_load_int64(a->dtype, a->storage->data, ao);
                uint64_t y =
                    (uint64_t)tensor_load_int64(b->dtype, b->storage->data, it.offsets[1] + i * sb);
                tensor_store_int64(a->dtype, a->storage->data, ao, (int64_t)(x + k * y));
            }
        } else {
            for (int64_t i = 0; i < n; i++) {
                int64_t ao = it.offsets[0] + i * sa;
                double v = tensor_load(a->dtype, a->storage->data, ao) +
                           alpha * tensor_load(b->dtype, b->storage->data, it.offsets[1] + i * sb);
                tensor_store(a->dtype, a->storage->data, ao, v);
            }
        }
        tensor_iter_next_row(&it);
    }
    tensor_bump_version(a);
    return DDP_OK;
}

/* ---- where ---------------------------------------------------------------------- */

ddp_status tensor_where(const tensor *cond, const tensor *a, const tensor *b, tensor **out) {
    *out = NULL;
    DDP_CHECK(check_cpu_pair("where", cond, a));
    DDP_CHECK(check_cpu_pair("where", a, b));
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
    if (a->storage->device.type != DEVICE_CPU || b->storage->device.type != DEVICE_CPU)
        return false;
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
    DDP_CHECK(check_cpu_pair("allclose", a, b));
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
