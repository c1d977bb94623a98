/* cuda_kernels.h — the launchers tensor_cuda.cu exports to the C side of the CUDA
 * backend (cuda_device.c). Plain C types only: this header is read by gcc and nvcc.
 * Each launcher queues its kernel on the current device's default stream and returns
 * the CUDA error code of the launch (0 when queued). */
#ifndef DDP_TENSOR_CUDA_KERNELS_H
#define DDP_TENSOR_CUDA_KERNELS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Sets n elements of elem_size bytes (1, 4 or 8) at dst to the low elem_size bytes of
 * `pattern` (the element's bytes, as the host wrote them). */
int ddp_cuda_fill_launch(void *dst, int elem_size, int64_t n, uint64_t pattern);

#ifdef __cplusplus
}
#endif

#endif
