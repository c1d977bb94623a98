/* scalar_math.h — the integer arithmetic that the CPU kernels (tensor.c, tensor_cpu.c) and
 * the CUDA ones (tensor_cuda.cu) must do alike, one definition for both. Read by gcc and
 * nvcc. */
#ifndef DDP_TENSOR_SCALAR_MATH_H
#define DDP_TENSOR_SCALAR_MATH_H

#include <stdint.h>

#include "base/host_device.h"

/* double -> int64 without undefined behaviour: out of range and NaN give INT64_MIN, the
 * value x86's conversion (and so PyTorch on x86) produces for them. */
DDP_HOST_DEVICE static inline int64_t double_to_int64(double v) {
    if (v >= -9223372036854775808.0 && v < 9223372036854775808.0) return (int64_t)v;
    return INT64_MIN;
}

/* Integer power by squaring; wraps like PyTorch's int64 (unsigned arithmetic, no UB), and
 * negative exponents give 0 except for bases 1 and -1. */
DDP_HOST_DEVICE static inline int64_t int64_pow(int64_t base, int64_t e) {
    if (e < 0) return base == 1 ? 1 : base == -1 ? (e % 2 ? -1 : 1) : 0;
    uint64_t result = 1, b = (uint64_t)base;
    while (e) {
        if (e & 1) result *= b;
        b *= b;
        e >>= 1;
    }
    return (int64_t)result;
}

#endif
