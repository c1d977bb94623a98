/* tensor.h — n-dimensional arrays: sizes, strides and an offset over refcounted storage.
 *
 * A tensor is a view: it holds a reference to a storage (the bytes) and says how to read
 * it (dtype, sizes, strides in elements, offset in elements). Views share storage, so
 * `narrow`, `transpose`, `view`... allocate no data. Tensors themselves are refcounted
 * too, because both a Lua box and the autograd graph may hold one.
 *
 * Conventions for every function below that returns ddp_status:
 * - `out` receives a NEW reference the caller owns (release it with tensor_release); on
 *   failure `*out` is left NULL, nothing leaks, and the message (learner's words, naming
 *   the op and the shapes) is in ddp_last_error().
 * - inputs are borrowed; functions ending in `_` modify their first argument in place
 *   and count one write in its storage's version counter (tensor_bump_version).
 * - dimensions may be negative (counted from the end, as in PyTorch) wherever a `dim` is
 *   taken; they are checked and normalised by tensor_wrap_dim.
 * - binary ops broadcast with PyTorch's rules and promote dtypes as PyTorch does
 *   (int64 op float -> float, float32 op float64 -> float64; a double scalar keeps a
 *   float tensor's dtype and turns an int64 tensor into float32 unless the scalar is
 *   integral and the op keeps integers; true division always gives a float).
 * This layer knows nothing about Lua, autograd or processes; the autograd fields are
 * only carried and released here (src/nn owns their meaning). */
#ifndef DDP_TENSOR_TENSOR_H
#define DDP_TENSOR_TENSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/generator.h"
#include "base/status.h"
#include "tensor/optim_math.h"

#define TENSOR_MAX_DIMS 8
/* Refuse single allocations larger than this (a hostile file must not ask for 1 PiB). */
#define TENSOR_MAX_BYTES ((size_t)1 << 40)

typedef enum { DTYPE_FLOAT32, DTYPE_FLOAT64, DTYPE_INT64, DTYPE_BOOL } dtype;

size_t dtype_size(dtype dt);
const char *dtype_name(dtype dt); /* "float32", "float64", "int64", "bool" */
bool dtype_is_float(dtype dt);
/* Parses "float32"/"float"/"float64"/"double"/"int64"/"long"/"bool"; false if unknown. */
bool dtype_parse(const char *name, dtype *dt);
/* The dtype of `a op b` under PyTorch's promotion rules. */
dtype dtype_promote(dtype a, dtype b);

typedef enum { DEVICE_CPU, DEVICE_CUDA } device_type;
typedef struct {
    device_type type;
    int index; /* GPU ordinal for DEVICE_CUDA (or DEVICE_INDEX_CURRENT); 0 for the CPU */
} device;

#define DEVICE_CPU_VALUE ((device){DEVICE_CPU, 0})
/* The index of plain "cuda": the current device, resolved when a tensor is made there
 * (device_resolve in tensor/device.h). A storage always holds a resolved index. */
#define DEVICE_INDEX_CURRENT (-1)
bool device_equal(device a, device b);
/* Writes "cpu", "cuda:N" (or "cuda" for the current device) into buf (at least 16
 * bytes) and returns buf. */
const char *device_name(device d, char *buf, size_t len);
/* Parses "cpu", "cuda" (index DEVICE_INDEX_CURRENT), "cuda:N"; DDP_ERR_ARG with a
 * message if malformed. Whether the GPU exists is device_resolve's question. */
ddp_status device_parse(const char *name, device *out);

struct ddp_allocator; /* tensor/allocator.h */

/* The bytes behind one or more tensors. The header is its own host allocation; the data
 * block comes from `allocator` (host memory for DEVICE_CPU, device memory for
 * DEVICE_CUDA, never read from the host) and goes back to it when the last reference
 * goes. */
typedef struct storage {
    int refcount;
    device device;
    size_t nbytes;
    void *data;
    struct ddp_allocator *allocator; /* made `data`, takes it back */
    void *alloc_ctx;                 /* the allocator's record of the block */
    /* Autograd's version counter, as PyTorch's `t._version`: it counts the in-place
     * writes to these bytes, so that a backward pass can tell that a tensor it saved was
     * changed after the forward pass used it (src/nn/autograd.c). Shared by every view. */
    uint64_t version;
} storage;

/* The header every autograd node starts with, so that a tensor can drop its reference
 * to the node that made it without knowing what a node is (src/nn/autograd.c). */
typedef struct grad_node_header {
    int refcount;
    void (*destroy)(struct grad_node_header *node);
} grad_node_header;

typedef struct tensor {
    int refcount;
    storage *storage;
    dtype dtype;
    int ndim;
    int64_t sizes[TENSOR_MAX_DIMS];
    int64_t strides[TENSOR_MAX_DIMS]; /* in elements, may be 0 (expand) */
    int64_t offset;                   /* in elements, into storage */
    /* autograd: meaning owned by src/nn; this layer only releases them */
    bool requires_grad;
    struct tensor *grad;       /* owned; NULL until a backward pass reaches this leaf */
    grad_node_header *grad_fn; /* owned; the node that produced this tensor, or NULL */
    int grad_fn_slot;          /* which output of grad_fn this tensor is */
    /* owned; a leaf's gradient-ready hooks (ag_add_grad_hook), or NULL */
    grad_node_header *grad_hooks;
} tensor;

/* ---- life cycle ------------------------------------------------------------------ */

/* t takes src's data: a new reference to its storage, its dtype and geometry (PyTorch's
 * `t.data = src`); t's own autograd fields stay. Other views of t's old storage keep it.
 * Cannot fail. */
void tensor_set_data(tensor *t, const tensor *src);

/* Uninitialised contiguous tensor. Fails (DDP_ERR_ARG) on a negative size or too many
 * dims or a GPU that does not exist, (DDP_ERR_NOMEM) when the bytes cannot be had,
 * (DDP_ERR_UNSUPPORTED) for CUDA in a build without it or without a visible GPU. ndim 0
 * is a scalar. A CUDA device of index DEVICE_INDEX_CURRENT means the current GPU. */
ddp_status tensor_empty(const int64_t *sizes, int ndim, dtype dt, device dev, tensor **out);
ddp_status tensor_zeros(const int64_t *sizes, int ndim, dtype dt, device dev, tensor **out);
ddp_status tensor_full(const int64_t *sizes, int ndim, dtype dt, device dev, double value,
                       tensor **out);
/* Copies `data` (numel elements of `dt`, row-major) into a new CPU tensor. */
ddp_status tensor_from_data(const void *data, const int64_t *sizes, int ndim, dtype dt,
                            tensor **out);
/* A 0-dim tensor holding `value`. */
ddp_status tensor_scalar(double value, dtype dt, tensor **out);
/* Like `like` (sizes, dtype, device), contiguous. */
ddp_status tensor_empty_like(const tensor *like, tensor **out);
ddp_status tensor_zeros_like(const tensor *like, tensor **out);

/* Adds a reference and returns t (NULL-safe). */
tensor *tensor_retain(tensor *t);
/* Drops a reference; frees the tensor (and its storage, grad and grad_fn references)
 * when it was the last. NULL-safe. Cannot fail. */
void tensor_release(tensor *t);

/* ---- the version counter (see struct storage) ------------------------------------- */

/* Counts one in-place write to t's storage. Every function of this layer whose name
 * ends in `_` calls it (once per call, after writing); code outside this layer that
 * writes a tensor's memory itself must call it after writing: the optimizer steps
 * (src/nn/optim.c) and the collectives that receive into a tensor (src/dist).
 * NULL-safe. Cannot fail. */
void tensor_bump_version(tensor *t);
/* The number of in-place writes to t's storage so far (0 for a new tensor). */
uint64_t tensor_version(const tensor *t);

/* ---- inspection ------------------------------------------------------------------ */

int64_t tensor_numel(const tensor *t);
bool tensor_is_contiguous(const tensor *t);
/* Address of element 0 of the view (storage data + offset) for a CPU tensor; NULL for a
 * tensor on another device, whose memory the host must not read (callers refuse such
 * tensors first: the op layer hands them to their device's kernels, code outside this
 * layer checks tensor_is_cpu). */
void *tensor_data(const tensor *t);
/* Address of element 0 of the view on its own device (a device pointer for CUDA). */
void *tensor_device_data(const tensor *t);
bool tensor_is_cpu(const tensor *t);
/* "(4x5)" style shape text into buf; returns buf. A scalar is "()". */
const char *tensor_shape_str(const tensor *t, char *buf, size_t len);
bool tensor_same_shape(const tensor *a, const tensor *b);
/* Normalises a possibly negative dim against ndim (ndim 0 accepts -1 and 0 as PyTorch
 * does); DDP_ERR_ARG naming `op` when out of range. */
ddp_status tensor_wrap_dim(const char *op, int64_t dim, int ndim, int *out);

/* Element `flat` in logical row-major order, converted to/from double (slow path for
 * printing, tolist, item and tests; int64 beyond 2^53 loses precision here). On a CUDA
 * tensor each call copies one element across (slower still: callers that read many copy
 * the tensor to the CPU first); a failing copy reads as NaN (0 for int64) and writes
 * nothing, with the message in ddp_last_error(). */
double tensor_get(const tensor *t, int64_t flat);
void tensor_set(tensor *t, int64_t flat, double value);
int64_t tensor_get_int64(const tensor *t, int64_t flat); /* exact for int64 tensors */
/* The value of a one-element tensor; DDP_ERR_ARG naming numel otherwise. */
ddp_status tensor_item(const tensor *t, double *value);

/* ---- views (share storage; no data copied) ---------------------------------------- */

/* `view` needs compatible strides (error says to use reshape); one size may be -1. */
ddp_status tensor_view(const tensor *t, const int64_t *sizes, int ndim, tensor **out);
/* A view when possible, otherwise a contiguous copy. */
ddp_status tensor_reshape(const tensor *t, const int64_t *sizes, int ndim, tensor **out);
ddp_status tensor_narrow(const tensor *t, int64_t dim, int64_t start, int64_t length, tensor **out);
ddp_status tensor_select(const tensor *t, int64_t dim, int64_t index, tensor **out);
ddp_status tensor_transpose(const tensor *t, int64_t dim0, int64_t dim1, tensor **out);
ddp_status tensor_permute(const tensor *t, const int64_t *dims, int ndim, tensor **out);
ddp_status tensor_unsqueeze(const tensor *t, int64_t dim, tensor **out);
/* dim == NULL squeezes every size-1 dim. */
ddp_status tensor_squeeze(const tensor *t, const int64_t *dim, tensor **out);
/* Sizes of -1 keep the existing size; new leading dims allowed; stride 0 broadcasts. */
ddp_status tensor_expand(const tensor *t, const int64_t *sizes, int ndim, tensor **out);
ddp_status tensor_flatten(const tensor *t, int64_t start_dim, int64_t end_dim, tensor **out);

/* ---- copies ---------------------------------------------------------------------- */

/* t itself (new reference) when already contiguous, else a contiguous copy. */
ddp_status tensor_contiguous(const tensor *t, tensor **out);
ddp_status tensor_clone(const tensor *t, tensor **out);
/* dst[...] = src, broadcasting src to dst's shape and converting dtype; dst and src may
 * be on different devices (host <-> GPU, GPU <-> GPU). */
ddp_status tensor_copy_(tensor *dst, const tensor *src);
/* A copy converted to `dt` (a new reference to t itself if it already has it). */
ddp_status tensor_to_dtype(const tensor *t, dtype dt, tensor **out);
/* A contiguous copy on `dev` (plain "cuda" is the current GPU) converted to `dt`; a new
 * reference to t itself when it already has both. Fails as tensor_empty does for a
 * device that cannot be had. No autograd: the copy is a new leaf. */
ddp_status tensor_to_device(const tensor *t, device dev, dtype dt, tensor **out);
ddp_status tensor_fill_(tensor *t, double value);

/* ---- optimizer steps ------------------------------------------------------------- */

/* One SGD or Adam/AdamW step over n parameters at once: p[i], g[i] and their state
 * tensors contiguous and of one shape, all of one float dtype and one device
 * (src/nn/optim.c checks that and computes the scalars, see optim_math.h). One pass over
 * the elements on the CPU; on a GPU one kernel launch for up to 32 parameters, with the
 * same arithmetic. bufs may be NULL (SGD without momentum). Count no versions. */
ddp_status tensor_sgd_update(tensor *const *p, tensor *const *g, tensor *const *bufs, int n,
                             const optim_sgd_scalars *k);
ddp_status tensor_adam_update(tensor *const *p, tensor *const *g, tensor *const *m,
                              tensor *const *v, int n, const optim_adam_scalars *k);

/* ---- creation -------------------------------------------------------------------- */

/* torch.arange(start, end, step). dt == NULL infers as PyTorch does: int64 when all
 * three are integral, else float32. */
ddp_status tensor_arange(double start, double end, double step, const dtype *dt, tensor **out);
ddp_status tensor_linspace(double start, double end, int64_t steps, dtype dt, tensor **out);
ddp_status tensor_eye(int64_t n, int64_t m, dtype dt, tensor **out);
/* Fill in place from a generator (g == NULL uses generator_default()). Float dtypes. */
ddp_status tensor_uniform_(tensor *t, double lo, double hi, ddp_generator *g);
ddp_status tensor_normal_(tensor *t, double mean, double std, ddp_generator *g);
/* int64 values in [lo, hi). */
ddp_status tensor_randint_(tensor *t, int64_t lo, int64_t hi, ddp_generator *g);
/* A random permutation of 0..n-1 (int64), PyTorch's randperm (base/generator.h). */
ddp_status tensor_randperm(int64_t n, ddp_generator *g, tensor **out);

/* ---- element-wise ---------------------------------------------------------------- */

typedef enum {
    BINARY_ADD,
    BINARY_SUB,
    BINARY_MUL,
    BINARY_DIV, /* true division: result is float */
    BINARY_POW,
    BINARY_MAXIMUM,
    BINARY_MINIMUM,
    BINARY_EQ, /* comparisons give DTYPE_BOOL */
    BINARY_NE,
    BINARY_LT,
    BINARY_LE,
    BINARY_GT,
    BINARY_GE,
} binary_op;
const char *binary_op_name(binary_op op); /* "add", "sub", ... */

/* out = a op b, broadcast. Shape errors name the op and both shapes:
 * "add: shapes (4x5) and (3) cannot be broadcast (dim 1: 5 vs 3)". */
ddp_status tensor_binary(binary_op op, const tensor *a, const tensor *b, tensor **out);
/* out = a op s, and out = s op a (for `2 - t`, `1 / t`). */
ddp_status tensor_binary_scalar(binary_op op, const tensor *a, double s, tensor **out);
ddp_status tensor_scalar_binary(binary_op op, double s, const tensor *a, tensor **out);
/* a = a op b in place: b must broadcast to a's shape; a keeps its dtype (an int64 `a`
 * refuses a float result, as PyTorch does). */
ddp_status tensor_binary_(binary_op op, tensor *a, const tensor *b);
ddp_status tensor_binary_scalar_(binary_op op, tensor *a, double s);
/* a += alpha * b (b broadcast to a); the workhorse of gradient accumulation and SGD. */
ddp_status tensor_add_scaled_(tensor *a, const tensor *b, double alpha);

typedef enum {
    UNARY_NEG,
    UNARY_SQRT,
    UNARY_EXP,
    UNARY_LOG,
    UNARY_ABS,
    UNARY_RELU,
    UNARY_TANH,
    UNARY_SIGMOID,
    UNARY_SIGN,
} unary_op;
const char *unary_op_name(unary_op op);

/* Float ops on int64 input give float32 (sqrt, exp, log, tanh, sigmoid); neg, abs,
 * relu and sign keep the dtype. */
ddp_status tensor_unary(unary_op op, const tensor *a, tensor **out);
ddp_status tensor_unary_(unary_op op, tensor *a);
/* clamp(a, lo, hi); has_lo / has_hi say which bounds apply. */
ddp_status tensor_clamp(const tensor *a, bool has_lo, double lo, bool has_hi, double hi,
                        tensor **out);
ddp_status tensor_clamp_(tensor *a, bool has_lo, double lo, bool has_hi, double hi);
/* where(cond, a, b), broadcast; cond is bool (or nonzero). */
ddp_status tensor_where(const tensor *cond, const tensor *a, const tensor *b, tensor **out);

/* ---- reductions ------------------------------------------------------------------ */

typedef enum {
    REDUCE_SUM,
    REDUCE_MEAN,
    REDUCE_PROD,
    REDUCE_MAX,
    REDUCE_MIN,
    REDUCE_ARGMAX,
    REDUCE_ARGMIN,
    REDUCE_NORM, /* 2-norm */
} reduce_op;
const char *reduce_op_name(reduce_op op);

/* Over all elements: a 0-dim tensor. sum of int64 stays int64; mean needs a float
 * (PyTorch's error otherwise); argmax gives int64; max of an empty tensor is an error.
 * Float sums accumulate in double for float32 input (documented deviation: PyTorch
 * uses pairwise float sums; both land within float32 rounding). */
ddp_status tensor_reduce_all(reduce_op op, const tensor *t, tensor **out);
/* Along one dim, optionally keeping it with size 1. */
ddp_status tensor_reduce_dim(reduce_op op, const tensor *t, int64_t dim, bool keepdim,
                             tensor **out);
/* max/min along a dim giving (values, indices), as torch.max(t, dim). */
ddp_status tensor_max_dim(const tensor *t, int64_t dim, bool keepdim, bool is_min, tensor **values,
                          tensor **indices);
/* Sums `t` down to `sizes` (the inverse of broadcasting; used by autograd). */
ddp_status tensor_sum_to(const tensor *t, const int64_t *sizes, int ndim, tensor **out);

/* ---- linear algebra -------------------------------------------------------------- */

/* 2-D only: (n x k) @ (k x m). Error text: "mm: (4x5) @ (10x5): inner sizes 5 and 10
 * differ". float32 -> cblas_sgemm, float64 -> cblas_dgemm, int64 by loops. */
ddp_status tensor_mm(const tensor *a, const tensor *b, tensor **out);
/* torch.matmul: 1-D dot, 2-D mm, batched with broadcast batch dims. */
ddp_status tensor_matmul(const tensor *a, const tensor *b, tensor **out);
/* c = alpha * op(a) @ op(b) + beta * c, op = transpose when ta/tb; all 2-D, same float
 * dtype; c must be contiguous. The accumulate-into form used by backward passes. */
ddp_status tensor_gemm_(bool ta, bool tb, double alpha, const tensor *a, const tensor *b,
                        double beta, tensor *c);
/* y = x @ w^T + b (b may be NULL): nn.Linear's forward in one GEMM. x is (..., in),
 * w is (out, in), b is (out). */
ddp_status tensor_linear(const tensor *x, const tensor *w, const tensor *b, tensor **out);

/* ---- joining and indexing -------------------------------------------------------- */

ddp_status tensor_cat(tensor *const *ts, int n, int64_t dim, tensor **out);
ddp_status tensor_stack(tensor *const *ts, int n, int64_t dim, tensor **out);
/* out[i, ...] = t[index[i], ...] along dim (index int64 1-D). */
ddp_status tensor_index_select(const tensor *t, int64_t dim, const tensor *index, tensor **out);

/* ---- softmax family -------------------------------------------------------------- */

ddp_status tensor_softmax(const tensor *t, int64_t dim, tensor **out);
ddp_status tensor_log_softmax(const tensor *t, int64_t dim, tensor **out);

/* ---- comparison ------------------------------------------------------------------ */

/* Same shape and every element equal (any dtypes compared by value). Cannot fail. */
bool tensor_equal(const tensor *a, const tensor *b);
/* |a - b| <= atol + rtol * |b| everywhere, broadcast; DDP_ERR_ARG if not broadcastable. */
ddp_status tensor_allclose(const tensor *a, const tensor *b, double rtol, double atol,
                           bool equal_nan, bool *result);

#endif
