/* autograd.h — reverse-mode automatic differentiation over the tensor ops.
 *
 * Each ag_* function computes exactly what its tensor_* twin computes (same arguments,
 * same errors, same ownership: `out` is a new reference) and, when grad mode is on and
 * any input requires grad, records a node holding what the backward pass needs; the
 * output then has requires_grad = true and grad_fn set. ag_backward walks the graph
 * from a root in reverse topological order and ACCUMULATES (+=) into the .grad of every
 * leaf that requires grad, as PyTorch does. The graph is freed after backward unless
 * retain_graph is set (using a freed graph again is an error that says so).
 *
 * Every backward formula is checked against finite differences in float64
 * (tests/unit/test_nn_autograd.c). This layer knows nothing about Lua. */
#ifndef DDP_NN_AUTOGRAD_H
#define DDP_NN_AUTOGRAD_H

#include "tensor/tensor.h"

/* torch.no_grad / torch.enable_grad: a per-thread flag, on by default. */
bool grad_mode_enabled(void);
void grad_mode_set(bool enabled);

/* Sets requires_grad on a leaf; DDP_ERR_ARG for non-float dtypes ("only floating point
 * tensors can require gradients") or for a non-leaf being set to false. */
ddp_status ag_set_requires_grad(tensor *t, bool requires_grad);
/* A new tensor sharing t's storage, cut from the graph (requires_grad false). */
ddp_status ag_detach(const tensor *t, tensor **out);
/* Refuses in-place ops that would corrupt a graph: on a leaf that requires grad while
 * grad mode is on, or on a tensor produced by a recorded op. `op` names the op. */
ddp_status ag_check_inplace(const tensor *t, const char *op);
/* Whether an in-place op `op` on t (with the tensor operand `other`, or NULL) must be
 * recorded, as PyTorch records in-place ops: under grad mode when t has history or other
 * requires grad (*record true), else it is a plain write (*record false). Refuses a leaf
 * that requires grad (under grad mode) and a view of a tracked tensor. When recording,
 * the caller computes the op's result out of place from ag_clone(t) (so that nothing the
 * op saves is the tensor about to change) and hands it to ag_inplace_adopt. */
ddp_status ag_inplace_begin(const tensor *t, const tensor *other, const char *op, bool *record);
/* Makes `result` (t's shape) t's new value and history: its values are copied into t,
 * which counts as an in-place write (t's version moves on, so a node that saved t finds
 * out at backward, naming the op and the versions), and t takes result's grad_fn. */
ddp_status ag_inplace_adopt(tensor *t, const tensor *result, const char *op);

/* ---- differentiable ops (see tensor.h for semantics) ----------------------------- */
ddp_status ag_binary(binary_op op, const tensor *a, const tensor *b, tensor **out);
ddp_status ag_binary_scalar(binary_op op, const tensor *a, double s, tensor **out);
ddp_status ag_scalar_binary(binary_op op, double s, const tensor *a, tensor **out);
ddp_status ag_unary(unary_op op, const tensor *a, tensor **out);
ddp_status ag_clamp(const tensor *a, bool has_lo, double lo, bool has_hi, double hi, tensor **out);
/* sum, mean, norm (and max/min over all elements) are differentiable. */
ddp_status ag_reduce_all(reduce_op op, const tensor *t, tensor **out);
ddp_status ag_reduce_dim(reduce_op op, const tensor *t, int64_t dim, bool keepdim, tensor **out);
ddp_status ag_mm(const tensor *a, const tensor *b, tensor **out);
ddp_status ag_matmul(const tensor *a, const tensor *b, tensor **out);
ddp_status ag_linear(const tensor *x, const tensor *w, const tensor *b, tensor **out);
ddp_status ag_view(const tensor *t, const int64_t *sizes, int ndim, tensor **out);
ddp_status ag_reshape(const tensor *t, const int64_t *sizes, int ndim, tensor **out);
ddp_status ag_transpose(const tensor *t, int64_t dim0, int64_t dim1, tensor **out);
ddp_status ag_permute(const tensor *t, const int64_t *dims, int ndim, tensor **out);
ddp_status ag_unsqueeze(const tensor *t, int64_t dim, tensor **out);
ddp_status ag_squeeze(const tensor *t, const int64_t *dim, tensor **out);
ddp_status ag_expand(const tensor *t, const int64_t *sizes, int ndim, tensor **out);
ddp_status ag_flatten(const tensor *t, int64_t start_dim, int64_t end_dim, tensor **out);
ddp_status ag_narrow(const tensor *t, int64_t dim, int64_t start, int64_t length, tensor **out);
ddp_status ag_select(const tensor *t, int64_t dim, int64_t index, tensor **out);
ddp_status ag_contiguous(const tensor *t, tensor **out);
ddp_status ag_clone(const tensor *t, tensor **out);
ddp_status ag_to_dtype(const tensor *t, dtype dt, tensor **out);
/* t copied to device dev as dtype dt (tensor_to_device), recorded: the gradient goes
 * back to t's device, as PyTorch's ToCopyBackward0. */
ddp_status ag_to_device(const tensor *t, device dev, dtype dt, tensor **out);
ddp_status ag_cat(tensor *const *ts, int n, int64_t dim, tensor **out);
ddp_status ag_stack(tensor *const *ts, int n, int64_t dim, tensor **out);
ddp_status ag_softmax(const tensor *t, int64_t dim, tensor **out);
ddp_status ag_log_softmax(const tensor *t, int64_t dim, tensor **out);

/* ---- losses (PyTorch's definitions) ----------------------------------------------- */
typedef enum { REDUCTION_MEAN, REDUCTION_SUM, REDUCTION_NONE } loss_reduction;
/* Parses "mean"/"sum"/"none". */
bool loss_reduction_parse(const char *name, loss_reduction *out);
/* mean((input - target)^2); shapes must match exactly (PyTorch warns and broadcasts;
 * we refuse, naming both shapes, because a silent broadcast is a classic bug). */
ddp_status ag_mse_loss(const tensor *input, const tensor *target, loss_reduction r, tensor **out);
/* input (N x C) logits (or (C) for one sample); target int64 class indices (N) or float
 * class probabilities (N x C). Mean over N. Out-of-range class indices are an error
 * naming the index and C. */
ddp_status ag_cross_entropy(const tensor *input, const tensor *target, loss_reduction r,
                            tensor **out);

/* ---- the backward pass ------------------------------------------------------------ */
/* grad == NULL requires root to be a one-element tensor ("grad can be implicitly
 * created only for scalar outputs"); root must require grad. */
ddp_status ag_backward(tensor *root, const tensor *grad, bool retain_graph);

/* ---- gradient-ready hooks (PyTorch's register_post_accumulate_grad_hook) ------------ */
/* Called once per backward pass for a leaf whose .grad has just become final for that
 * pass: every use of the leaf in the graph being walked has added its share (or, for a
 * backward called on the leaf itself, once its gradient was added). A leaf the pass does
 * not reach gets no call. The hook may read leaf->grad and change it in place (DDP copies
 * it into a bucket); it must not start another backward pass. A failure it returns stops
 * the backward pass with that error. */
typedef ddp_status (*ag_grad_hook_fn)(tensor *leaf, void *ctx);

/* Adds fn(leaf, ctx) to the leaf's hooks (they run in the order added). leaf must be a
 * tensor that requires grad and has no grad_fn (DDP_ERR_ARG otherwise, in PyTorch's
 * words). free_ctx (may be NULL) is called on ctx when the hook is removed or the leaf is
 * freed, also when adding fails. *id receives the hook's handle for ag_remove_grad_hook. */
ddp_status ag_add_grad_hook(tensor *leaf, ag_grad_hook_fn fn, void *ctx, void (*free_ctx)(void *),
                            uint64_t *id);
/* Removes hook `id` from leaf; false when it is not there (removed before). Safe to call
 * from inside a hook, also for the hook that is running. Cannot fail. */
bool ag_remove_grad_hook(tensor *leaf, uint64_t id);

/* Calls visit(leaf, ctx) for every leaf that requires grad and that a backward pass
 * from roots[0..n) would reach (a root that is such a leaf itself included): DDP's search
 * for unused parameters (find_unused_parameters); a leaf reached by several edges may be
 * visited more than once. NULL roots are skipped. DDP_ERR_NOMEM
 * only. */
ddp_status ag_reachable_leaves(tensor *const *roots, int n, void (*visit)(tensor *leaf, void *ctx),
                               void *ctx);

/* A short name of the op that produced t ("AddBackward0", "MmBackward0", ... as
 * PyTorch prints grad_fn), or NULL for a leaf. */
const char *ag_grad_fn_name(const tensor *t);

#endif
