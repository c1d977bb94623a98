/* tensor_cuda.cu — the CUDA kernels of the tensor layer (the GPU twin of the CPU loops).
 * Each kernel has a C launcher declared in cuda_kernels.h; the op layer (tensor_device.c,
 * cuda_device.c) checks shapes, dtypes and devices before calling one, so a launcher
 * only computes. Kept to this one file so that nvcc runs once per build. */
#include <cuda_runtime.h>
#include <stdint.h>
#include <string.h>

#include <type_traits>

#include "tensor/cuda_kernels.h"
#include "tensor/tensor.h" /* the dtype and op enums (plain C) */

/* Grid-stride fill: element i of dst is `value`. T is uint8/uint32/uint64, the element's
 * bytes, so one kernel fills every dtype bit-exactly as the host converted it. */
template <typename T> __global__ void fill_kernel(T *dst, int64_t n, T value) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x)
        dst[i] = value;
}

/* Enough blocks to cover n with 256 threads each, capped (grid-stride loops do the
 * rest): a cap keeps the launch itself cheap for huge tensors. */
static unsigned blocks_for(int64_t n) {
    int64_t b = (n + 255) / 256;
    return (unsigned)(b < 65535 ? b : 65535);
}

extern "C" int ddp_cuda_fill_launch(void *dst, int elem_size, int64_t n, uint64_t pattern) {
    if (n <= 0) return 0;
    switch (elem_size) {
    case 1:
        fill_kernel<<<blocks_for(n), 256>>>((uint8_t *)dst, n, (uint8_t)pattern);
        break;
    case 4: {
        uint32_t v;
        memcpy(&v, &pattern, sizeof v); /* the element's bytes as the host laid them out */
        fill_kernel<<<blocks_for(n), 256>>>((uint32_t *)dst, n, v);
        break;
    }
    default:
        fill_kernel<<<blocks_for(n), 256>>>((uint64_t *)dst, n, pattern);
        break;
    }
    return (int)cudaGetLastError();
}

/* ---- element-wise binary ops ------------------------------------------------------- */

/* The operand's element at `off` as C (bool reads as 0/1). */
template <typename C> __device__ C load_as(const ddp_cuda_operand &o, int64_t off) {
    if (o.is_scalar) {
        if constexpr (std::is_same<C, int64_t>::value)
            return (C)o.scalar_int;
        else
            return (C)o.scalar;
    }
    switch (o.dtype) {
    case DTYPE_FLOAT32:
        return (C)((const float *)o.data)[off];
    case DTYPE_FLOAT64:
        return (C)((const double *)o.data)[off];
    case DTYPE_INT64:
        return (C)((const int64_t *)o.data)[off];
    default:
        return (C)(((const uint8_t *)o.data)[off] != 0);
    }
}

/* double -> int64 as the CPU path converts: out of range and NaN give INT64_MIN. */
__device__ int64_t to_int64(double v) {
    if (v >= -9223372036854775808.0 && v < 9223372036854775808.0) return (int64_t)v;
    return INT64_MIN;
}

template <typename C> __device__ void store_as(const ddp_cuda_operand &o, int64_t off, C v) {
    switch (o.dtype) {
    case DTYPE_FLOAT32:
        ((float *)o.data)[off] = (float)v;
        break;
    case DTYPE_FLOAT64:
        ((double *)o.data)[off] = (double)v;
        break;
    case DTYPE_INT64:
        if constexpr (std::is_same<C, int64_t>::value)
            ((int64_t *)o.data)[off] = v;
        else
            ((int64_t *)o.data)[off] = to_int64((double)v);
        break;
    default:
        ((uint8_t *)o.data)[off] = v != (C)0;
        break;
    }
}

/* Integer power by squaring, as the CPU's ipow: wraps, and negative exponents give 0
 * except for bases 1 and -1. */
__device__ int64_t ipow_dev(int64_t base, int64_t e) {
    if (e < 0) return base == 1 ? 1 : base == -1 ? (e % 2 ? -1 : 1) : 0;
    uint64_t result = 1, b = (uint64_t)base;
    while (e) {
        if (e & 1) result *= b;
        b *= b;
        e >>= 1;
    }
    return (int64_t)result;
}

/* x op y in C, with the CPU kernels' rules: NaN propagates through maximum/minimum,
 * integers wrap, comparisons give 0 or 1. */
template <typename C> __device__ C apply_binary(int op, C x, C y) {
    constexpr bool is_int = std::is_same<C, int64_t>::value;
    switch (op) {
    case BINARY_ADD:
        if constexpr (is_int)
            return (int64_t)((uint64_t)x + (uint64_t)y);
        else
            return x + y;
    case BINARY_SUB:
        if constexpr (is_int)
            return (int64_t)((uint64_t)x - (uint64_t)y);
        else
            return x - y;
    case BINARY_MUL:
        if constexpr (is_int)
            return (int64_t)((uint64_t)x * (uint64_t)y);
        else
            return x * y;
    case BINARY_DIV:
        if constexpr (is_int)
            return y ? x / y : 0; /* not reached: division is float */
        else
            return x / y;
    case BINARY_POW:
        if constexpr (is_int)
            return ipow_dev(x, y);
        else if constexpr (std::is_same<C, float>::value)
            return powf(x, y);
        else
            return pow(x, y);
    case BINARY_MAXIMUM:
        return (x != x || x > y) ? x : y;
    case BINARY_MINIMUM:
        return (x != x || x < y) ? x : y;
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
    default:
        return x >= y;
    }
}

/* One thread per result element (grid-stride): the element's coordinates give each
 * operand's offset through its (broadcast) strides. */
template <typename C> __global__ void binary_kernel(ddp_cuda_ewise_args args) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < args.numel;
         i += (int64_t)gridDim.x * blockDim.x) {
        int64_t rem = i, oo = args.out.offset, ao = args.a.offset, bo = args.b.offset;
        for (int d = args.ndim - 1; d >= 0; d--) {
            int64_t c = rem % args.sizes[d];
            rem /= args.sizes[d];
            oo += c * args.out.strides[d];
            ao += c * args.a.strides[d];
            bo += c * args.b.strides[d];
        }
        C r = apply_binary<C>(args.op, load_as<C>(args.a, ao), load_as<C>(args.b, bo));
        store_as<C>(args.out, oo, r);
    }
}

extern "C" int ddp_cuda_binary_launch(const ddp_cuda_ewise_args *args) {
    if (args->numel <= 0) return 0;
    unsigned blocks = blocks_for(args->numel);
    switch (args->compute) {
    case DTYPE_FLOAT32:
        binary_kernel<float><<<blocks, 256>>>(*args);
        break;
    case DTYPE_FLOAT64:
        binary_kernel<double><<<blocks, 256>>>(*args);
        break;
    default:
        binary_kernel<int64_t><<<blocks, 256>>>(*args);
        break;
    }
    return (int)cudaGetLastError();
}

/* ---- element-wise unary ops --------------------------------------------------------- */

/* op(x) in C, as the CPU kernels: relu keeps NaN, sign of 0 is 0, integers wrap. */
template <typename C> __device__ C apply_unary(int op, C x) {
    constexpr bool is_int = std::is_same<C, int64_t>::value;
    constexpr bool is_f32 = std::is_same<C, float>::value;
    switch (op) {
    case UNARY_NEG:
        if constexpr (is_int)
            return (int64_t)(0 - (uint64_t)x);
        else
            return -x;
    case UNARY_ABS:
        if constexpr (is_int)
            return x < 0 ? (int64_t)(0 - (uint64_t)x) : x;
        else if constexpr (is_f32)
            return fabsf(x);
        else
            return fabs(x);
    case UNARY_RELU:
        return x < (C)0 ? (C)0 : x;
    case UNARY_SIGN:
        return (C)((x > (C)0) - (x < (C)0));
    default:
        break;
    }
    if constexpr (is_int) {
        return 0; /* the float ops never compute in int64 */
    } else if constexpr (is_f32) {
        switch (op) {
        case UNARY_SQRT:
            return sqrtf(x);
        case UNARY_EXP:
            return expf(x);
        case UNARY_LOG:
            return logf(x);
        case UNARY_TANH:
            return tanhf(x);
        default:
            return 1.0f / (1.0f + expf(-x));
        }
    } else {
        switch (op) {
        case UNARY_SQRT:
            return sqrt(x);
        case UNARY_EXP:
            return exp(x);
        case UNARY_LOG:
            return log(x);
        case UNARY_TANH:
            return tanh(x);
        default:
            return 1.0 / (1.0 + exp(-x));
        }
    }
}

template <typename C> __global__ void unary_kernel(ddp_cuda_ewise_args args) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < args.numel;
         i += (int64_t)gridDim.x * blockDim.x) {
        int64_t rem = i, oo = args.out.offset, ao = args.a.offset;
        for (int d = args.ndim - 1; d >= 0; d--) {
            int64_t c = rem % args.sizes[d];
            rem /= args.sizes[d];
            oo += c * args.out.strides[d];
            ao += c * args.a.strides[d];
        }
        store_as<C>(args.out, oo, apply_unary<C>(args.op, load_as<C>(args.a, ao)));
    }
}

extern "C" int ddp_cuda_unary_launch(const ddp_cuda_ewise_args *args) {
    if (args->numel <= 0) return 0;
    unsigned blocks = blocks_for(args->numel);
    switch (args->compute) {
    case DTYPE_FLOAT32:
        unary_kernel<float><<<blocks, 256>>>(*args);
        break;
    case DTYPE_FLOAT64:
        unary_kernel<double><<<blocks, 256>>>(*args);
        break;
    default:
        unary_kernel<int64_t><<<blocks, 256>>>(*args);
        break;
    }
    return (int)cudaGetLastError();
}
