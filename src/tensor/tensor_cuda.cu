/* tensor_cuda.cu — the CUDA kernels of the tensor layer, the GPU twin of tensor_cpu.c and
 * tensor_cpu_reduce.c: fill, element-wise binary and unary ops (clamp and add_scaled
 * among them), reductions, max/min along a dim, softmax, the optimizer steps, random
 * fills from the device generator. Each kernel has a C launcher
 * declared in cuda_kernels.h; the op layer checks shapes, dtypes and devices and
 * tensor_device.c describes the operands before one is called, so a launcher only
 * computes. The arithmetic is the CPU's, step for step where the order is the same (the
 * build turns off fused multiply-add so that it stays so). Kept to this one file so that
 * nvcc runs once per build. */
#include <cuda_runtime.h>
#include <stdint.h>
#include <string.h>

#include <type_traits>

#include "base/philox.h"
#include "base/philox_math.h"
#include "tensor/cuda_kernels.h"
#include "tensor/scalar_math.h"
#include "tensor/softmax_math.h"
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
            ((int64_t *)o.data)[off] = double_to_int64((double)v);
        break;
    default:
        ((uint8_t *)o.data)[off] = v != (C)0;
        break;
    }
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
            return int64_pow(x, y);
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
        C x = load_as<C>(args.a, ao), y = load_as<C>(args.b, bo), r;
        if (args.op == DDP_CUDA_OP_ADD_SCALED) {
            if constexpr (std::is_same<C, int64_t>::value) /* wraps, as the CPU's */
                r = (int64_t)((uint64_t)x + (uint64_t)args.param_int[0] * (uint64_t)y);
            else
                r = x + (C)args.param[0] * y;
        } else {
            r = apply_binary<C>(args.op, x, y);
        }
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

/* x clamped to the bounds that are set, as the CPU's clamp: NaN stays NaN (a comparison
 * with NaN is false), int64 bounds compare exactly. */
template <typename C> __device__ C clamp_value(const ddp_cuda_ewise_args &args, C x) {
    for (int k = 0; k < 2; k++) {
        if (!args.has_param[k]) continue;
        C bound;
        if constexpr (std::is_same<C, int64_t>::value)
            bound = (C)args.param_int[k];
        else
            bound = (C)args.param[k];
        if (k == 0 ? x < bound : x > bound) x = bound;
    }
    return x;
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
        C x = load_as<C>(args.a, ao);
        if (args.op == DDP_CUDA_OP_CLAMP)
            store_as<C>(args.out, oo, clamp_value<C>(args, x));
        else
            store_as<C>(args.out, oo, apply_unary<C>(args.op, x));
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

/* ---- reductions ---------------------------------------------------------------------- */

/* The offset (in elements) of output j's first element in t: j's row-major coordinates
 * in the kept dims, through t's strides (or any other strides given). */
__device__ int64_t kept_offset(const ddp_cuda_reduce_args &a, int64_t j, const int64_t *strides) {
    int64_t off = 0;
    for (int d = a.kdim - 1; d >= 0; d--) {
        off += (j % a.ksizes[d]) * strides[d];
        j /= a.ksizes[d];
    }
    return off;
}

/* The offset of the r-th reduced element (row-major over the reduced dims). */
__device__ int64_t reduced_offset(const ddp_cuda_reduce_args &a, int64_t r) {
    int64_t off = 0;
    for (int d = a.rdim - 1; d >= 0; d--) {
        off += (r % a.rsizes[d]) * a.rstrides[d];
        r /= a.rsizes[d];
    }
    return off;
}

__device__ double load_f64(int dt, const void *base, int64_t off) {
    switch (dt) {
    case DTYPE_FLOAT32:
        return ((const float *)base)[off];
    case DTYPE_FLOAT64:
        return ((const double *)base)[off];
    case DTYPE_INT64:
        return (double)((const int64_t *)base)[off];
    default:
        return ((const uint8_t *)base)[off] != 0;
    }
}

__device__ int64_t load_i64(int dt, const void *base, int64_t off) {
    if (dt == DTYPE_INT64) return ((const int64_t *)base)[off];
    if (dt == DTYPE_BOOL) return ((const uint8_t *)base)[off] != 0;
    return (int64_t)load_f64(dt, base, off); /* not reached: floats reduce in double */
}

__device__ void store_f64(int dt, void *base, int64_t off, double v) {
    if (dt == DTYPE_FLOAT32)
        ((float *)base)[off] = (float)v;
    else if (dt == DTYPE_FLOAT64)
        ((double *)base)[off] = v;
    else if (dt == DTYPE_INT64)
        ((int64_t *)base)[off] = double_to_int64(v);
    else
        ((uint8_t *)base)[off] = v != 0;
}

#define REDUCE_THREADS 256

/* One block per output (grid-stride over outputs); each thread folds a strided share of
 * the reduced elements, then the block folds the partials in shared memory. A is double
 * for float results (sum, mean, norm and prod in double, as the CPU), uint64 for integer
 * sums and products (wrapping). */
template <typename A> __global__ void accumulate_kernel(ddp_cuda_reduce_args a) {
    __shared__ A part[REDUCE_THREADS];
    const bool prod = a.op == REDUCE_PROD, norm = a.op == REDUCE_NORM;
    for (int64_t j = blockIdx.x; j < a.nout; j += gridDim.x) {
        int64_t base = a.offset + kept_offset(a, j, a.kstrides);
        A acc = prod ? (A)1 : (A)0;
        for (int64_t r = threadIdx.x; r < a.count; r += blockDim.x) {
            int64_t off = base + reduced_offset(a, r);
            if constexpr (std::is_same<A, double>::value) {
                double v = load_f64(a.in_dtype, a.in, off);
                acc = prod ? acc * v : norm ? acc + v * v : acc + v;
            } else {
                uint64_t v = (uint64_t)load_i64(a.in_dtype, a.in, off);
                acc = prod ? acc * v : acc + v;
            }
        }
        part[threadIdx.x] = acc;
        __syncthreads();
        for (unsigned half = blockDim.x / 2; half > 0; half /= 2) {
            if (threadIdx.x < half)
                part[threadIdx.x] = prod ? part[threadIdx.x] * part[threadIdx.x + half]
                                         : part[threadIdx.x] + part[threadIdx.x + half];
            __syncthreads();
        }
        if (threadIdx.x == 0) {
            if constexpr (std::is_same<A, double>::value) {
                double v = part[0];
                if (a.op == REDUCE_MEAN) v = a.count ? v / (double)a.count : NAN;
                if (norm) v = sqrt(v);
                store_f64(a.out_dtype, a.out, j, v);
            } else {
                ((int64_t *)a.out)[j] = (int64_t)part[0];
            }
        }
        __syncthreads(); /* part is reused by the next output */
    }
}

static unsigned reduce_blocks(int64_t nout) {
    return (unsigned)(nout < 65535 ? (nout > 0 ? nout : 1) : 65535);
}

extern "C" int ddp_cuda_accumulate_launch(const ddp_cuda_reduce_args *args) {
    if (args->nout <= 0) return 0;
    if (args->out_dtype == DTYPE_INT64)
        accumulate_kernel<uint64_t><<<reduce_blocks(args->nout), REDUCE_THREADS>>>(*args);
    else
        accumulate_kernel<double><<<reduce_blocks(args->nout), REDUCE_THREADS>>>(*args);
    return (int)cudaGetLastError();
}

/* Is v a better extreme than best? NaN beats everything, as on the CPU. */
__device__ bool better(double v, double best, bool is_min) {
    if (best != best) return false;
    if (v != v) return true;
    return is_min ? v < best : v > best;
}

__global__ void extreme_kernel(ddp_cuda_reduce_args a) {
    const bool ints = a.in_dtype == DTYPE_INT64 || a.in_dtype == DTYPE_BOOL;
    const int64_t step = a.rstrides[0];
    for (int64_t j = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; j < a.nout;
         j += (int64_t)gridDim.x * blockDim.x) {
        int64_t base = a.offset + kept_offset(a, j, a.kstrides), best_i = 0;
        if (ints) {
            int64_t best = load_i64(a.in_dtype, a.in, base);
            for (int64_t k = 1; k < a.count; k++) {
                int64_t v = load_i64(a.in_dtype, a.in, base + k * step);
                if (a.is_min ? v < best : v > best) best = v, best_i = k;
            }
            if (a.out && a.out_dtype == DTYPE_INT64)
                ((int64_t *)a.out)[j] = best;
            else if (a.out)
                ((uint8_t *)a.out)[j] = best != 0;
        } else {
            double best = load_f64(a.in_dtype, a.in, base);
            for (int64_t k = 1; k < a.count; k++) {
                double v = load_f64(a.in_dtype, a.in, base + k * step);
                if (better(v, best, a.is_min)) best = v, best_i = k;
            }
            if (a.out) store_f64(a.out_dtype, a.out, j, best);
        }
        if (a.index) ((int64_t *)a.index)[j] = best_i;
    }
}

extern "C" int ddp_cuda_extreme_launch(const ddp_cuda_reduce_args *args) {
    if (args->nout <= 0) return 0;
    extreme_kernel<<<blocks_for(args->nout), 256>>>(*args);
    return (int)cudaGetLastError();
}

template <typename T> __global__ void softmax_kernel(ddp_cuda_reduce_args a) {
    for (int64_t j = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; j < a.nout;
         j += (int64_t)gridDim.x * blockDim.x) {
        const T *x = (const T *)a.in + a.offset + kept_offset(a, j, a.kstrides);
        T *o = (T *)a.out + kept_offset(a, j, a.out_kstrides);
        if constexpr (std::is_same<T, float>::value) /* softmax_math.h: the CPU's rows */
            softmax_row_f32(x, a.rstrides[0], o, a.out_step, a.count, a.log_form != 0);
        else
            softmax_row_f64(x, a.rstrides[0], o, a.out_step, a.count, a.log_form != 0);
    }
}

extern "C" int ddp_cuda_softmax_launch(const ddp_cuda_reduce_args *args) {
    if (args->nout <= 0 || args->count <= 0) return 0;
    if (args->in_dtype == DTYPE_FLOAT32)
        softmax_kernel<float><<<blocks_for(args->nout), 256>>>(*args);
    else
        softmax_kernel<double><<<blocks_for(args->nout), 256>>>(*args);
    return (int)cudaGetLastError();
}

/* ---- optimizer steps ------------------------------------------------------------------ */

/* One thread per element of all the launch's tensors (grid-stride), each finding its
 * tensor by binary search over the starts and running optim_math.h's element formula,
 * the CPU loop's own code. */
template <typename T> __global__ void optim_kernel(ddp_cuda_optim_args a) {
    int64_t total = a.start[a.ntensors];
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total;
         i += (int64_t)gridDim.x * blockDim.x) {
        int lo = 0, hi = a.ntensors - 1; /* the k with start[k] <= i < start[k + 1] */
        while (lo < hi) {
            int mid = (lo + hi + 1) / 2;
            if (a.start[mid] <= i)
                lo = mid;
            else
                hi = mid - 1;
        }
        int64_t e = i - a.start[lo];
        T *p = (T *)a.p[lo] + e, *m = a.m[lo] ? (T *)a.m[lo] + e : NULL;
        const T *g = (const T *)a.g[lo] + e;
        if constexpr (std::is_same<T, float>::value) {
            if (a.adam)
                adam_element_f32(p, g, m, (T *)a.v[lo] + e, &a.adam_k);
            else
                sgd_element_f32(p, g, m, &a.sgd);
        } else {
            if (a.adam)
                adam_element_f64(p, g, m, (T *)a.v[lo] + e, &a.adam_k);
            else
                sgd_element_f64(p, g, m, &a.sgd);
        }
    }
}

extern "C" int ddp_cuda_optim_launch(const ddp_cuda_optim_args *args) {
    int64_t total = args->ntensors > 0 ? args->start[args->ntensors] : 0;
    if (total <= 0) return 0;
    if (args->dtype == DTYPE_FLOAT32)
        optim_kernel<float><<<blocks_for(total), 256>>>(*args);
    else
        optim_kernel<double><<<blocks_for(total), 256>>>(*args);
    return (int)cudaGetLastError();
}

/* ---- random fills from the device generator ------------------------------------------ */

/* One thread per element (a pair for the normal fills), each computing its value from
 * (seed, pos, index) alone, as philox.c does in order on the CPU. */
__global__ void random_kernel(ddp_cuda_random_args a) {
    int64_t items = (a.kind == PHILOX_NORMAL_F32 || a.kind == PHILOX_NORMAL_F64) && !a.is_int
                        ? (a.n + 1) / 2
                        : a.n;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < items;
         i += (int64_t)gridDim.x * blockDim.x) {
        if (a.is_int) {
            ((int64_t *)a.out)[i] = philox_randint_at(a.seed, a.pos, i, a.lo, a.range);
        } else if (a.kind == PHILOX_UNIFORM_F32) {
            ((float *)a.out)[i] = philox_uniform_f32_at(a.seed, a.pos, i, a.a, a.b);
        } else if (a.kind == PHILOX_UNIFORM_F64) {
            ((double *)a.out)[i] = philox_uniform_f64_at(a.seed, a.pos, i, a.a, a.b);
        } else {
            double z0, z1;
            if (a.kind == PHILOX_NORMAL_F32)
                philox_normal_f32_pair(a.seed, a.pos, i, &z0, &z1);
            else
                philox_normal_f64_pair(a.seed, a.pos, i, &z0, &z1);
            if (a.kind == PHILOX_NORMAL_F32) {
                ((float *)a.out)[2 * i] = (float)(a.a + a.b * z0);
                if (2 * i + 1 < a.n) ((float *)a.out)[2 * i + 1] = (float)(a.a + a.b * z1);
            } else {
                ((double *)a.out)[2 * i] = a.a + a.b * z0;
                if (2 * i + 1 < a.n) ((double *)a.out)[2 * i + 1] = a.a + a.b * z1;
            }
        }
    }
}

extern "C" int ddp_cuda_random_launch(const ddp_cuda_random_args *args) {
    if (args->n <= 0) return 0;
    random_kernel<<<blocks_for(args->n), 256>>>(*args);
    return (int)cudaGetLastError();
}
