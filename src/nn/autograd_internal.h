/* autograd_internal.h — what the recorded ops (ag_elementwise.c, ag_shape.c,
 * ag_linalg.c, losses.c) share with the engine (autograd.c): the graph node, its edges,
 * and the helpers that build a node around an op's output.
 *
 * A node is created by ag_record() after the forward tensor op succeeded; the output
 * tensor then owns the node's first reference. Each edge points at what an input's
 * gradient flows into: the input's own grad_fn (a retained node) or, for a leaf that
 * requires grad, the leaf tensor itself (retained). The node also remembers each
 * input's shape and dtype, so the engine sums a broadcast gradient back down to the
 * input's shape and converts its dtype: backward functions may return gradients in the
 * output's (broadcast) shape. Saved tensors are references the backward needs; an
 * op's own output is only ever saved as a detached alias (no grad_fn) so that no node
 * holds a tensor that holds the node (no cycle). Not part of the public API. */
#ifndef DDP_NN_AUTOGRAD_INTERNAL_H
#define DDP_NN_AUTOGRAD_INTERNAL_H

#include "nn/autograd.h"

#define AG_MAX_SAVED 4

typedef struct ag_node ag_node;

/* Computes the gradient of each input from `grad` (the gradient of the node's output,
 * same shape as the output). grads_in[i] starts NULL; the function stores a new
 * reference for each edge that is needed (edges[i].needed) and may leave others NULL.
 * Gradients may be in the broadcast output shape (the engine sums them down). On
 * failure the engine releases whatever was stored. */
typedef ddp_status (*ag_backward_fn)(ag_node *node, const tensor *grad, tensor **grads_in);

typedef struct {
    ag_node *node; /* retained grad_fn of the input, or NULL */
    tensor *leaf;  /* retained leaf tensor that requires grad, or NULL */
    bool needed;   /* node or leaf is set: a gradient must flow here */
    dtype dtype;   /* the input's dtype, shape and device, for summing / converting /
                    * moving its grad */
    device device;
    int ndim;
    int64_t sizes[TENSOR_MAX_DIMS];
} ag_edge;

struct ag_node {
    grad_node_header header; /* must stay first: tensors hold a node by its header */
    const char *name;        /* "MulBackward0" */
    ag_backward_fn backward;
    int n_edges;
    ag_edge *edges;
    tensor *saved[AG_MAX_SAVED]; /* owned references, released after backward */
    /* the version of each saved tensor's storage when it was saved, and the node that
     * produced it (NULL for a leaf or a plain tensor): backward refuses to run on a
     * tensor changed in place since then, naming it as PyTorch does */
    uint64_t saved_version[AG_MAX_SAVED];
    const char *saved_from[AG_MAX_SAVED];
    bool has_saved; /* some tensor was saved (so a freed graph is an error) */
    bool freed;     /* saved tensors were released by a backward pass */
    /* op parameters, meaning per op */
    int op;
    double scalar;
    double scalar2;
    int64_t dim;
    int64_t start;
    int64_t length;
    bool flag;
    bool flag2;
    int nints;
    int64_t ints[TENSOR_MAX_DIMS];
    /* an op's own context, released with the node (SyncBatchNorm's cross-process sum) */
    void *ctx;
    void (*ctx_release)(void *ctx);
    /* engine scratch, only meaningful during one ag_backward */
    int deps;
    bool visited;
    tensor *grad_acc;
    ag_node *next; /* work lists (destruction, ready queue) */
};

/* True when grad mode is on and one of the n inputs (NULLs skipped) requires grad. */
bool ag_any_requires_grad(const tensor *const *inputs, int n);

/* Records a node for the op that produced `y` (a new reference the call takes over) from
 * inputs[0..n) (NULL inputs are allowed and get an edge that is not needed) and attaches
 * it to y (which then requires grad and owns the node). *out receives y on success; on
 * failure y is released, *out is NULL and the caller must return the status. *node
 * receives the node (borrowed) for saving tensors and parameters; it is NULL when
 * nothing was recorded (grad mode off, no input requires grad, y is not a float tensor,
 * or y is one of the inputs). */
ddp_status ag_record(const char *name, ag_backward_fn backward, const tensor *const *inputs, int n,
                     tensor *y, tensor **out, ag_node **node);

/* Saves a new reference to t in slot i (t may be an input; never the op's output), with
 * the version of its storage: if t is changed in place before the backward pass runs,
 * that pass fails, as PyTorch's does. Save only what the backward formula reads for the
 * inputs that need a gradient (as PyTorch does), so that changing a tensor that no
 * gradient depends on is no error. */
void ag_save(ag_node *node, int slot, const tensor *t);
/* Saves a detached alias of the op's output in slot i (versioned as ag_save). Can fail
 * (allocation). */
ddp_status ag_save_output(ag_node *node, int slot, const tensor *out);

/* What a backward formula adds to a leaf's .grad: the gradient g (already of the
 * leaf's shape and dtype), or, when g is NULL, the product op(x) @ op(y) of two 2-D
 * tensors (op = transpose when tx / ty), which goes straight into .grad with one
 * accumulating GEMM instead of a temporary and an add. */
typedef struct {
    const tensor *g;
    bool tx, ty;
    const tensor *x, *y;
} ag_leaf_grad;

/* The one path that writes a leaf's .grad in a backward pass (the engine's += for every
 * edge into a leaf, and the fused GEMM of mm and linear): leaf.grad += u. On first use
 * .grad adopts g when nothing else holds it, as PyTorch's AccumulateGrad does. *done is
 * false, with nothing written, when a product cannot go in directly (dtypes differ, or
 * .grad is not a contiguous tensor of the leaf's shape, or aliases x or y): the caller
 * then computes it and hands it back to the engine as an ordinary gradient. A gradient
 * g is always written. The gradient-ready hooks run later, once the engine has seen the
 * leaf's last use (autograd.c, run_node). */
ddp_status ag_accumulate_leaf(tensor *leaf, const ag_leaf_grad *u, bool *done);

/* Releases one reference to a node (NULL-safe). */
void ag_node_unref(ag_node *node);

/* True when the incoming gradient g is held only by the engine and shares its storage
 * with no other tensor (contiguous, no autograd state): a backward may then overwrite
 * it and pass it on, and a leaf may adopt it as its .grad, saving an allocation. */
bool ag_grad_is_exclusive(const tensor *g);

/* A new tensor of the given shape and dtype filled with zeros, on like's device. */
ddp_status ag_zeros(const tensor *like, const int64_t *sizes, int ndim, dtype dt, tensor **out);

/* out[i] = f(x_0[i], ..., x_{k-1}[i], params) over the given shape: each input is
 * broadcast to that shape, read as double, and the result stored as dt (a float dtype).
 * The slow-but-general path for backward formulas no single tensor op expresses (at
 * most 4 inputs). New reference in *out. */
typedef double (*ag_pointwise_fn)(const double *x, const double *params);
ddp_status ag_pointwise(const tensor *const *xs, int k, const int64_t *sizes, int ndim, dtype dt,
                        ag_pointwise_fn f, const double *params, tensor **out);

#endif
