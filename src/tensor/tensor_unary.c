/* tensor_unary.c — unary element-wise ops (neg, sqrt, exp, log, abs, relu, tanh, sigmoid,
 * sign) and clamp, out of place and in place: their checks and dtype rules, and the
 * result's allocation. The kernels are the result device's (tensor_kernels.h:
 * tensor_cpu.c on the CPU, tensor_cuda.cu on a GPU). */
#include "tensor/tensor.h"
#include "tensor/tensor_internal.h"
#include "tensor/tensor_kernels.h"

#include <stdio.h>

const char *unary_op_name(unary_op op) {
    static const char *names[] = {"neg",  "sqrt", "exp",     "log", "abs",
                                  "relu", "tanh", "sigmoid", "sign"};
    return (unsigned)op < sizeof names / sizeof names[0] ? names[op] : "?";
}

/* ---- unary ops ------------------------------------------------------------------- */

static bool unary_needs_float(unary_op op) {
    return op == UNARY_SQRT || op == UNARY_EXP || op == UNARY_LOG || op == UNARY_TANH ||
           op == UNARY_SIGMOID;
}

static dtype unary_result_dtype(unary_op op, dtype a) {
    if (unary_needs_float(op) && !dtype_is_float(a)) return DTYPE_FLOAT32;
    return a; /* bool stays bool for abs, relu and sign, as in PyTorch; neg is refused */
}

/* out = op(a): the op layer's one choice of backend, by the result's device. A GPU
 * kernel computes in the result's float dtype, or in int64 for the integer ops. */
static ddp_status unary_into(unary_op op, tensor *out, const tensor *a) {
    dtype compute = dtype_is_float(out->dtype) ? out->dtype : DTYPE_INT64;
    return tensor_kernels_of(out)->unary(op, compute, out, a);
}

/* PyTorch refuses -t for a bool tensor: the learner almost always meant "not". */
static ddp_status check_bool_neg(unary_op op, const tensor *a) {
    if (op == UNARY_NEG && a->dtype == DTYPE_BOOL)
        return DDP_FAIL(DDP_ERR_ARG, "neg: negating a bool tensor is not supported (as in "
                                     "PyTorch); to invert a mask use t:eq(false)");
    return DDP_OK;
}

ddp_status tensor_unary(unary_op op, const tensor *a, tensor **out) {
    *out = NULL;
    DDP_CHECK(check_bool_neg(op, a));
    tensor *r;
    DDP_CHECK(
        tensor_empty(a->sizes, a->ndim, unary_result_dtype(op, a->dtype), a->storage->device, &r));
    ddp_status s = unary_into(op, r, a);
    if (s != DDP_OK) {
        tensor_release(r);
        return s;
    }
    *out = r;
    return DDP_OK;
}

ddp_status tensor_unary_(unary_op op, tensor *a) {
    DDP_CHECK(check_bool_neg(op, a));
    char inplace_name[32];
    snprintf(inplace_name, sizeof inplace_name, "%s_", unary_op_name(op));
    DDP_CHECK(tensor_check_writable(inplace_name, a));
    DDP_CHECK(
        tensor_check_inplace_dtype(unary_op_name(op), unary_result_dtype(op, a->dtype), a->dtype));
    DDP_CHECK(unary_into(op, a, a));
    tensor_bump_version(a);
    return DDP_OK;
}

/* ---- clamp ------------------------------------------------------------- */

static dtype clamp_result_dtype(const tensor *a, bool has_lo, double lo, bool has_hi, double hi) {
    if (dtype_is_float(a->dtype)) return a->dtype;
    if ((has_lo && !tensor_is_integral(lo)) || (has_hi && !tensor_is_integral(hi)))
        return DTYPE_FLOAT32;
    return a->dtype == DTYPE_BOOL ? DTYPE_INT64 : a->dtype;
}

ddp_status tensor_clamp(const tensor *a, bool has_lo, double lo, bool has_hi, double hi,
                        tensor **out) {
    *out = NULL;
    if (!has_lo && !has_hi) return DDP_FAIL(DDP_ERR_ARG, "clamp: give at least one of min and max");
    tensor *r;
    DDP_CHECK(tensor_empty(a->sizes, a->ndim, clamp_result_dtype(a, has_lo, lo, has_hi, hi),
                           a->storage->device, &r));
    ddp_status s = tensor_kernels_of(r)->clamp(r, a, has_lo, lo, has_hi, hi);
    if (s != DDP_OK) {
        tensor_release(r);
        return s;
    }
    *out = r;
    return DDP_OK;
}

ddp_status tensor_clamp_(tensor *a, bool has_lo, double lo, bool has_hi, double hi) {
    DDP_CHECK(tensor_check_writable("clamp_", a));
    if (!has_lo && !has_hi)
        return DDP_FAIL(DDP_ERR_ARG, "clamp_: give at least one of min and max");
    DDP_CHECK(tensor_check_inplace_dtype("clamp", clamp_result_dtype(a, has_lo, lo, has_hi, hi),
                                         a->dtype));
    DDP_CHECK(tensor_kernels_of(a)->clamp(a, a, has_lo, lo, has_hi, hi));
    tensor_bump_version(a);
    return DDP_OK;
}
