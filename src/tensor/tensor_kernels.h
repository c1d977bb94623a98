/* tensor_kernels.h — the backend interface of the tensor ops: what an op hands its
 * checked operands and its freshly allocated result to.
 *
 * The op files (tensor_elementwise.c, tensor_unary.c, tensor_reduce.c, tensor_linalg.c)
 * check shapes, broadcasting, dtypes and devices, allocate the result, and then call the
 * kernel table of the result's device (tensor_kernels_of). Two tables fill it:
 * tensor_cpu.c and tensor_cpu_reduce.c on the CPU (row loops the compiler vectorises,
 * OpenBLAS for GEMM), and tensor_device.c for CUDA tensors (each operand described by
 * device pointer, dtype and strides for a kernel in tensor_cuda.cu, cuBLAS for GEMM).
 * A kernel may rely on everything its comment says was checked; it checks nothing
 * itself except what only it can see (a launch that fails, a host buffer it cannot get).
 * Nothing outside src/tensor/ may include this file. */
#ifndef DDP_TENSOR_KERNELS_H
#define DDP_TENSOR_KERNELS_H

#include "tensor/tensor.h"

typedef struct {
    /* out = a op b evaluated in `compute`, with a and b broadcast to out's shape (both
     * checked to broadcast). out may be a (in place). On a GPU, a or b may be a CPU
     * 0-dim tensor: a number, passed to the kernel by value. */
    ddp_status (*binary)(binary_op op, dtype compute, tensor *out, const tensor *a,
                         const tensor *b);
    /* out = op(a) in `compute` (the result's float dtype, or int64 for the integer ops);
     * a has out's shape; out may be a. */
    ddp_status (*unary)(unary_op op, dtype compute, tensor *out, const tensor *a);
    /* out = a clamped to [lo, hi] (a bound is absent unless has_lo / has_hi); out has a's
     * shape and the dtype clamp's rules gave (an int64 result has whole bounds). */
    ddp_status (*clamp)(tensor *out, const tensor *a, bool has_lo, double lo, bool has_hi,
                        double hi);
    /* a += alpha * b, b broadcast to a's shape; a is writable and can hold the result. */
    ddp_status (*add_scaled)(tensor *a, const tensor *b, double alpha);
    /* r = sum, mean, prod or norm of t over the dims where keep[d] is 1 (keep is t's
     * shape with 1 at each reduced dim). r is fresh and contiguous, of keep's numel, in
     * the reduction's result dtype (int64 for integer sums and products). */
    ddp_status (*accumulate)(reduce_op op, const tensor *t, const int64_t *keep, tensor *r);
    /* For each position of t with dim d collapsed, the first maximum (or minimum) along d:
     * its value into `values`, its index into `indices` (either may be NULL; both fresh,
     * contiguous, keepdim-shaped). t has at least one element along d. NaN wins, as in
     * PyTorch; int64 compares exactly. */
    ddp_status (*extreme)(const tensor *t, int d, bool is_min, tensor *values, tensor *indices);
    /* out = softmax or log_softmax of t along d (t float32 or float64; out fresh,
     * contiguous, t's shape and dtype). */
    ddp_status (*softmax)(const tensor *t, int d, bool log_form, tensor *out);
    /* c = alpha * op(a) @ op(b) + beta * c with op transposing when ta / tb; a, b and c are
     * 2-D of one dtype with matching sizes, c contiguous and writable. beta 0 ignores c's
     * old contents (NaN included), as BLAS does. */
    ddp_status (*gemm)(bool ta, bool tb, double alpha, const tensor *a, const tensor *b,
                       double beta, tensor *c);
    /* The optimizer steps of tensor.h over n parameters of one device and dtype (bufs
     * NULL for SGD without momentum). */
    ddp_status (*sgd)(tensor *const *p, tensor *const *g, tensor *const *bufs, int n,
                      const optim_sgd_scalars *k);
    ddp_status (*adam)(tensor *const *p, tensor *const *g, tensor *const *m, tensor *const *v,
                       int n, const optim_adam_scalars *k);
} tensor_kernels;

extern const tensor_kernels tensor_cpu_kernels;  /* tensor_cpu.c, tensor_cpu_reduce.c */
extern const tensor_kernels tensor_cuda_kernels; /* tensor_device.c */

/* The kernels of the device t lives on. Cannot fail. */
const tensor_kernels *tensor_kernels_of(const tensor *t);

/* True for eq, ne, lt, le, gt and ge: ops whose result is bool. */
bool binary_op_is_comparison(binary_op op);

/* The CPU's kernels one by one, for the table in tensor_cpu.c. */
ddp_status cpu_binary(binary_op op, dtype compute, tensor *out, const tensor *a, const tensor *b);
ddp_status cpu_unary(unary_op op, dtype compute, tensor *out, const tensor *a);
ddp_status cpu_clamp(tensor *out, const tensor *a, bool has_lo, double lo, bool has_hi, double hi);
ddp_status cpu_add_scaled(tensor *a, const tensor *b, double alpha);
ddp_status cpu_accumulate(reduce_op op, const tensor *t, const int64_t *keep, tensor *r);
ddp_status cpu_extreme(const tensor *t, int d, bool is_min, tensor *values, tensor *indices);
ddp_status cpu_softmax(const tensor *t, int d, bool log_form, tensor *out);
ddp_status cpu_gemm(bool ta, bool tb, double alpha, const tensor *a, const tensor *b, double beta,
                    tensor *c);
ddp_status cpu_sgd(tensor *const *p, tensor *const *g, tensor *const *bufs, int n,
                   const optim_sgd_scalars *k);
ddp_status cpu_adam(tensor *const *p, tensor *const *g, tensor *const *m, tensor *const *v, int n,
                    const optim_adam_scalars *k);

#endif
