/* tensor_cuda.cu — the CUDA kernels of the tensor layer (the GPU twin of the CPU loops).
 * Each kernel has a C launcher declared in cuda_kernels.h; the op layer (tensor_device.c,
 * cuda_device.c) checks shapes, dtypes and devices before calling one, so a launcher
 * only computes. Kept to this one file so that nvcc runs once per build. */
#include <cuda_runtime.h>
#include <string.h>

#include "tensor/cuda_kernels.h"

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
