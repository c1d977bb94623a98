/* device.h — the GPU runtime as the tensor layer and the bindings see it: which GPUs
 * exist, the current one, its memory (one caching allocator per GPU), and copies and
 * fills of device memory.
 *
 * Two backends implement it: cuda_device.c (with tensor_cuda.cu's kernels) in a build
 * with the CUDA toolkit, device_none.c otherwise. Every function that needs a GPU fails
 * with a message that says why there is none: "this build has no CUDA support" in a
 * CPU-only build, "cuda: no GPU is visible (torch.cuda.is_available() is false)" in a
 * CUDA build on a machine without a GPU (or without its driver). Nothing here starts
 * CUDA before a GPU is first used, so a CPU-only session pays nothing for it.
 *
 * The current device is per process, as the learner sees it (torch.cuda.set_device);
 * each thread that calls in is switched to it first. Until set_device is called it is
 * the default the runtime gave (LOCAL_RANK, modulo the number of GPUs, so that 4 ranks
 * on one GPU share it). All work runs on the legacy default stream of the device, so
 * copies and kernels are ordered with each other and with the allocator's reuse of
 * blocks. */
#ifndef DDP_TENSOR_DEVICE_H
#define DDP_TENSOR_DEVICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/status.h"
#include "tensor/allocator.h"
#include "tensor/cache_alloc.h"
#include "tensor/cuda_kernels.h"
#include "tensor/tensor.h"

/* Whether this build has the CUDA backend. */
bool cuda_built(void);
/* The number of visible GPUs: 0 without CUDA, without a GPU or without a driver. The
 * first call asks the driver (tens of milliseconds); later calls return the answer kept.
 * Cannot fail. */
int cuda_device_count(void);
/* DDP_OK when a GPU can be used; else DDP_ERR_UNSUPPORTED with the message above. */
ddp_status cuda_require(void);

/* The device "cuda" means until cuda_set_device: `index` modulo the number of GPUs.
 * Touches no GPU. Cannot fail. */
void cuda_set_default_device(int index);
/* DDP_ERR_ARG naming the index and the visible range when it does not exist. */
ddp_status cuda_set_device(int index);
ddp_status cuda_current_device(int *index);
/* Waits for all work queued on the current device; an earlier kernel's failure surfaces
 * here as DDP_ERR_STATE naming the CUDA error. */
ddp_status cuda_synchronize(void);

/* A CUDA device with index DEVICE_INDEX_CURRENT becomes the current device; a CUDA
 * device is checked to exist. The CPU passes unchanged. */
ddp_status device_resolve(device *d);

/* Whether this process has put anything on a GPU yet (an allocator exists). Touches no
 * GPU and starts nothing. */
bool cuda_was_used(void);
/* The caching allocator of GPU `index` (created on first use). */
ddp_status cuda_allocator(int index, ddp_allocator **out);
ddp_status cuda_memory_stats(int index, cache_stats *out);
ddp_status cuda_reset_peak_memory_stats(int index);
/* Returns every GPU's cached blocks to the driver (live tensors keep theirs). */
ddp_status cuda_empty_cache(void);

/* Whether p points into device memory (cudaPointerGetAttributes); false, without asking
 * CUDA, in a process that has not put anything on a GPU. Cannot fail. */
bool cuda_is_device_memory(const void *p);
/* Copies n bytes; either pointer may be host memory or device memory from a CUDA
 * allocator (unified addressing tells which). Returns when the copy is done. `op` names
 * the learner's operation in messages. */
ddp_status cuda_memcpy(void *dst, const void *src, size_t n, const char *op);
/* Sets n bytes of the memory of GPU `index` to zero. The kernels below also run on the
 * GPU that holds the memory, which need not be the current one. */
ddp_status cuda_memset_zero(int index, void *dst, size_t n, const char *op);
/* Sets n contiguous elements of dtype dt at device address dst to value (a kernel). */
ddp_status cuda_fill(int index, void *dst, dtype dt, int64_t n, double value, const char *op);

/* Runs an element-wise binary kernel on GPU args->device (the op layer has checked
 * shapes, dtypes and devices and filled args). Asynchronous: a failure inside the kernel
 * surfaces at the next synchronising call. */
ddp_status cuda_binary(const ddp_cuda_ewise_args *args, const char *op);
/* The same for an element-wise unary kernel. */
ddp_status cuda_unary(const ddp_cuda_ewise_args *args, const char *op);

/* The reduction kernels of cuda_kernels.h, run on GPU args->device, asynchronous. */
typedef enum { CUDA_ACCUMULATE, CUDA_EXTREME, CUDA_SOFTMAX } cuda_reduction;
ddp_status cuda_reduce(cuda_reduction kind, const ddp_cuda_reduce_args *args, const char *op);

/* A random fill's kernel (cuda_kernels.h) on GPU args->device, asynchronous. */
ddp_status cuda_random(const ddp_cuda_random_args *args, const char *op);
/* An optimizer step's kernel (cuda_kernels.h) on GPU args->device, asynchronous. */
ddp_status cuda_optim(const ddp_cuda_optim_args *args, const char *op);

/* One operand of a GEMM as cuBLAS reads it: device memory holding a row-major matrix
 * with leading dimension ld, or its transpose (trans, see tensor_blas_layout). */
typedef struct {
    const void *data;
    bool trans;
    int64_t ld;
} cuda_matrix;

/* c = alpha * op(a) @ op(b) + beta * c through cuBLAS on GPU `index`: c is m x n,
 * row-major and contiguous, op transposes when ta / tb; dt is float32 (TF32 tensor
 * cores only when cuda_set_allow_tf32 said so) or float64. Sizes fit in int (the op
 * layer checked). Asynchronous; a cuBLAS failure is DDP_ERR_STATE naming `op`. */
ddp_status cuda_gemm(int index, dtype dt, bool ta, bool tb, int64_t m, int64_t n, int64_t k,
                     double alpha, cuda_matrix a, cuda_matrix b, double beta, void *c,
                     const char *op);
/* torch.backends.cuda.matmul.allow_tf32: off until set, as in PyTorch. Cannot fail. */
void cuda_set_allow_tf32(bool allow);
bool cuda_allow_tf32(void);

#endif
