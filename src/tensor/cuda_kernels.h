/* cuda_kernels.h — the launchers tensor_cuda.cu exports to the C side of the CUDA
 * backend (cuda_device.c). Plain C types only: this header is read by gcc and nvcc.
 * Each launcher queues its kernel on the current device's default stream and returns
 * the CUDA error code of the launch (0 when queued). */
#ifndef DDP_TENSOR_CUDA_KERNELS_H
#define DDP_TENSOR_CUDA_KERNELS_H

#include <stdint.h>

#include "tensor/optim_math.h"

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

/* Two element-wise ops beside binary_op and unary_op, with parameters: clamp (a unary
 * kernel op: param[0] the lower bound when has_param[0], param[1] the upper one when
 * has_param[1]) and add_scaled (a binary kernel op: out = a + param[0] * b). */
#define DDP_CUDA_OP_CLAMP 64
#define DDP_CUDA_OP_ADD_SCALED 65

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
    double param[2];        /* the op's parameters, see DDP_CUDA_OP_* */
    long long param_int[2]; /* the same as integers (exact for int64 compute) */
    int has_param[2];
} ddp_cuda_ewise_args;

/* A reduction's work. t's dims are split in two: the kept dims (ksizes, kstrides), whose
 * row-major index is the output's index j, and the reduced dims (rsizes, rstrides),
 * walked for each output; t's element is in + (offset + kept part + reduced part) *
 * element size. `out` (and `index`) are contiguous in the kept dims' order. */
typedef struct {
    int device;
    int op;        /* reduce_op, for accumulate */
    int in_dtype;  /* t's dtype */
    int out_dtype; /* the values' dtype */
    const void *in;
    int64_t offset;
    void *out;   /* values (accumulate, extreme, softmax); may be NULL for extreme */
    void *index; /* extreme: int64 indices along the reduced dim, or NULL */
    int64_t nout, count;
    int kdim, rdim;
    int64_t ksizes[DDP_CUDA_MAX_DIMS], kstrides[DDP_CUDA_MAX_DIMS];
    int64_t rsizes[DDP_CUDA_MAX_DIMS], rstrides[DDP_CUDA_MAX_DIMS];
    int64_t out_kstrides[DDP_CUDA_MAX_DIMS]; /* softmax: out's strides in the kept dims */
    int64_t out_step;                        /* softmax: out's stride along the dim */
    int is_min;                              /* extreme */
    int log_form;                            /* softmax */
} ddp_cuda_reduce_args;

int ddp_cuda_binary_launch(const ddp_cuda_ewise_args *args);
int ddp_cuda_unary_launch(const ddp_cuda_ewise_args *args);

/* sum, mean, prod or norm over the reduced dims into out (out_dtype float32, float64, or
 * int64 for integer sums and products, which wrap): one block per output, partial sums
 * in double (int64) combined in shared memory. */
int ddp_cuda_accumulate_launch(const ddp_cuda_reduce_args *args);
/* The first maximum (minimum, is_min) along the one reduced dim: one thread per output
 * walking it in order, so ties and NaN resolve as on the CPU. */
int ddp_cuda_extreme_launch(const ddp_cuda_reduce_args *args);
/* softmax or log_softmax along the one reduced dim: one thread per row, with the CPU's
 * arithmetic (the same float32 exp, sums in double). */
int ddp_cuda_softmax_launch(const ddp_cuda_reduce_args *args);

/* Sets n elements of elem_size bytes (1, 4 or 8) at dst to the low elem_size bytes of
 * `pattern` (the element's bytes, as the host wrote them). */
int ddp_cuda_fill_launch(void *dst, int elem_size, int64_t n, uint64_t pattern);

/* One optimizer step over up to DDP_CUDA_OPTIM_MAX tensors at once (one launch), each of
 * dtype (float32 or float64): tensor k's elements are [start[k], start[k + 1]) of the
 * launch's index space. SGD when adam is 0 (m the momentum buffers, or NULL), else Adam
 * (m, v the moments). */
#define DDP_CUDA_OPTIM_MAX 32
typedef struct {
    int device;
    int dtype;
    int adam;
    int ntensors;
    int64_t start[DDP_CUDA_OPTIM_MAX + 1];
    void *p[DDP_CUDA_OPTIM_MAX], *m[DDP_CUDA_OPTIM_MAX], *v[DDP_CUDA_OPTIM_MAX];
    const void *g[DDP_CUDA_OPTIM_MAX];
    optim_sgd_scalars sgd;
    optim_adam_scalars adam_k;
} ddp_cuda_optim_args;

int ddp_cuda_optim_launch(const ddp_cuda_optim_args *args);

/* A random fill of n contiguous elements from the device generator's stream (seed,
 * starting word pos), with philox_math.h's arithmetic: kind PHILOX_UNIFORM_F32 / _F64
 * (uniform in [a, b)), PHILOX_NORMAL_F32 / _F64 (mean a, std b), or randint (int64 out,
 * is_int: lo + bits % range). */
typedef struct {
    int device;
    int kind;
    int is_int;
    void *out;
    int64_t n;
    uint64_t seed, pos;
    double a, b;
    int64_t lo;
    uint64_t range;
} ddp_cuda_random_args;

int ddp_cuda_random_launch(const ddp_cuda_random_args *args);

#ifdef __cplusplus
}
#endif

#endif
