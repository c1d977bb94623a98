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

#define DDP_CUDA_MAX_DIMS 8 /* TENSOR_MAX_DIMS */

/* One operand of an element-wise kernel: a strided view of device memory (strides
 * already broadcast to the result's shape, in elements), or a number passed by value
 * (is_scalar: a Lua number or a CPU 0-dim tensor next to a CUDA tensor; both fields are
 * set so that int64 stays exact). dtype is the tensor layer's dtype enum. */
typedef struct {
    void *data;
    int dtype;
    int is_scalar;
    double scalar;
    long long scalar_int;
    int64_t offset;
    int64_t strides[DDP_CUDA_MAX_DIMS];
} ddp_cuda_operand;

/* An element-wise kernel's work: out = a op b (binary_op) or out = op(a) (unary_op, b
 * unused) over out's shape, evaluated in dtype `compute` (float32, float64 or int64)
 * with the op layer's rules (tensor_elementwise.c, tensor_unary.c). */
typedef struct {
    int device; /* the GPU that holds out (and every operand that is not a number) */
    int op;
    int compute;
    int ndim;
    int64_t numel;
    int64_t sizes[DDP_CUDA_MAX_DIMS];
    ddp_cuda_operand out, a, b;
} ddp_cuda_ewise_args;

int ddp_cuda_binary_launch(const ddp_cuda_ewise_args *args);
int ddp_cuda_unary_launch(const ddp_cuda_ewise_args *args);

/* Sets n elements of elem_size bytes (1, 4 or 8) at dst to the low elem_size bytes of
 * `pattern` (the element's bytes, as the host wrote them). */
int ddp_cuda_fill_launch(void *dst, int elem_size, int64_t n, uint64_t pattern);

#ifdef __cplusplus
}
#endif

#endif
