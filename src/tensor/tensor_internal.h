/* tensor_internal.h — helpers shared by the CPU tensor files (not part of the public API).
 *
 * A strided iterator that walks one or more operands of the same logical shape row by
 * row (the innermost dim is left to the caller's tight loop), element loads/stores
 * through double for the slow generic paths, broadcasting of shapes, and the small
 * checks every op repeats (CPU device, same device). Nothing outside src/tensor/ may
 * include this file. */
#ifndef DDP_TENSOR_INTERNAL_H
#define DDP_TENSOR_INTERNAL_H

#include "tensor/tensor.h"

#define ITER_MAX_OPS 4

/* Walks `nops` operands over a common shape. After tensor_iter_init, the caller
 * processes `inner` elements per row (operand k starting at offsets[k], stepping by
 * inner_strides[k]) and calls tensor_iter_next_row `rows` times in all. Dims are
 * coalesced where every operand is contiguous across them, so a contiguous walk is a
 * single row. */
typedef struct {
    int ndim; /* outer dims (excluding the inner one) */
    int nops;
    int64_t sizes[TENSOR_MAX_DIMS];
    int64_t strides[ITER_MAX_OPS][TENSOR_MAX_DIMS];
    int64_t idx[TENSOR_MAX_DIMS];
    int64_t offsets[ITER_MAX_OPS];
    int64_t inner;
    int64_t inner_strides[ITER_MAX_OPS];
    int64_t rows;
} tensor_iter;

/* strides[k] points at ndim strides of operand k; offsets[k] is its starting offset.
 * Cannot fail. */
void tensor_iter_init(tensor_iter *it, int ndim, const int64_t *sizes, int nops,
                      const int64_t *const *strides, const int64_t *offsets);
/* Moves offsets[] to the start of the next row. Cannot fail. */
void tensor_iter_next_row(tensor_iter *it);

/* Element `off` (in elements from `base`) of dtype dt, converted to/from double. */
double tensor_load(dtype dt, const void *base, int64_t off);
void tensor_store(dtype dt, void *base, int64_t off, double v);
int64_t tensor_load_int64(dtype dt, const void *base, int64_t off);
void tensor_store_int64(dtype dt, void *base, int64_t off, int64_t v);

/* A strided row of n elements converted to/from a buffer of double or int64 (the switch
 * on dtype is outside the loop; these are the generic paths' inner loops). */
void tensor_load_row(dtype dt, const void *base, int64_t off, int64_t stride, double *dst,
                     int64_t n);
void tensor_store_row(dtype dt, void *base, int64_t off, int64_t stride, const double *src,
                      int64_t n);
void tensor_load_row_int64(dtype dt, const void *base, int64_t off, int64_t stride, int64_t *dst,
                           int64_t n);
void tensor_store_row_int64(dtype dt, void *base, int64_t off, int64_t stride, const int64_t *src,
                            int64_t n);

/* tensor_copy_, tensor_fill_ and tensor_gemm_ without counting a version: for filling
 * a tensor that an op has just made for its result and nobody else has seen yet, so
 * that a new tensor starts at version 0, as in PyTorch (see tensor_bump_version). */
ddp_status tensor_copy_fresh(tensor *dst, const tensor *src);
ddp_status tensor_fill_fresh(tensor *t, double value);
ddp_status tensor_gemm_fresh(bool ta, bool tb, double alpha, const tensor *a, const tensor *b,
                             double beta, tensor *c);

/* tensor_device.c: copy_, fill_ and element access where a tensor is off the CPU (see
 * there). copy checks broadcasting; the callers checked writability. get and set take a
 * storage offset in elements; get fills whichever of v and iv is not NULL. */
ddp_status tensor_device_copy(tensor *dst, const tensor *src);
ddp_status tensor_device_fill(tensor *t, double value);
ddp_status tensor_device_get(const tensor *t, int64_t off, double *v, int64_t *iv);
ddp_status tensor_device_set(tensor *t, int64_t off, double v);
/* Fills the CUDA tensor t from the device generator (philox.h): kind is a PHILOX_* kind
 * with a, b (uniform bounds, or normal mean and std), or, when hi > lo, integers in
 * [lo, hi) (kind PHILOX_RANDINT). Counts one write to t's version. */
ddp_status tensor_device_random(tensor *t, int kind, double a, double b, int64_t lo, int64_t hi,
                                const char *op);
/* out = a op b computed in `compute` on out's GPU; a and b are on that GPU or are CPU
 * 0-dim tensors (passed by value); the op layer checked everything else. */
ddp_status tensor_device_binary(binary_op op, dtype compute, tensor *out, const tensor *a,
                                const tensor *b);
/* out = op(a) computed in `compute` on their GPU (a has out's shape). */
ddp_status tensor_device_unary(unary_op op, dtype compute, tensor *out, const tensor *a);

/* True when v is a whole number that int64 holds: how a Lua number next to a tensor (an
 * operand, a bound, an arange step) tells an integer from a float. */
bool tensor_is_integral(double v);

/* DDP_ERR_ARG naming `op` and both devices unless a and b are on the same device. */
ddp_status tensor_check_same_device(const char *op, const tensor *a, const tensor *b);
/* How a BLAS library (OpenBLAS, cuBLAS) reads the 2-D tensor t in place: row-major with
 * strides (ld, 1), or stored transposed with strides (1, ld) (*trans). False when its
 * strides are irregular (expanded, stepped): the caller copies it to contiguous first.
 * Cannot fail. */
bool tensor_blas_layout(const tensor *t, bool *trans, int64_t *ld);
/* DDP_ERR_ARG when an op that computes `result` would store it in place into a tensor of
 * dtype `target` that cannot hold it (a float result into int64), as PyTorch refuses. */
ddp_status tensor_check_inplace_dtype(const char *op, dtype result, dtype target);
/* DDP_ERR_ARG naming `op` when t is an expanded view (a dim of size > 1 with stride 0):
 * writing it in place would write one memory location several times. */
ddp_status tensor_check_writable(const char *op, const tensor *t);
/* The broadcast shape of a and b; DDP_ERR_ARG naming `op` and both shapes. */
ddp_status tensor_broadcast_shape(const char *op, const tensor *a, const tensor *b, int64_t *sizes,
                                  int *ndim);
/* Strides that read t as if expanded to (sizes, ndim); t must broadcast to it
 * (DDP_ERR_ARG naming `op` otherwise). */
ddp_status tensor_broadcast_strides(const char *op, const tensor *t, const int64_t *sizes, int ndim,
                                    int64_t *strides);
/* A new tensor header over t's storage with the given geometry (a view). Fails only
 * with DDP_ERR_NOMEM. */
ddp_status tensor_make_view(const tensor *t, const int64_t *sizes, const int64_t *strides, int ndim,
                            int64_t offset, tensor **out);
/* True when the product of the sizes, with size-0 dims counted as 1, does not fit in
 * int64: such a shape has no row-major strides (nor, without its zero, a numel). Every
 * constructor of a shape from learner input refuses it, so the products that ops compute
 * later never overflow. */
bool tensor_sizes_overflow(const int64_t *sizes, int ndim);
/* Row-major strides for sizes (size-0 and size-1 dims count as 1). Cannot fail. */
void tensor_contiguous_strides(const int64_t *sizes, int ndim, int64_t *strides);
/* "(4x5)" for raw sizes, as tensor_shape_str. */
const char *tensor_sizes_str(const int64_t *sizes, int ndim, char *buf, size_t len);

#endif
