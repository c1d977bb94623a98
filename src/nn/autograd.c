/* autograd.c — the autograd engine: grad mode, graph nodes (creation and iterative
 * destruction), requires_grad / detach / in-place checks, and ag_backward, which walks
 * the graph from a root in dependency order and accumulates into the leaves' .grad.
 *
 * The graph is a DAG of ag_node (autograd_internal.h). A tensor owns a reference to
 * the node that produced it; a node owns references to its inputs' nodes (edges), to
 * the leaves it feeds, and to the tensors its backward needs. Nothing points back up,
 * so there are no cycles and reference counting frees everything. Both destruction
 * and backward use explicit work lists, never recursion, so a chain of 100k ops does
 * not overflow the C stack. The recorded ops themselves live in ag_elementwise.c,
 * ag_shape.c, ag_linalg.c and losses.c. */
#include "nn/autograd_internal.h"

#include "base/alloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static _Thread_local bool grad_disabled;

bool grad_mode_enabled(void) {
    return !grad_disabled;
}

void grad_mode_set(bool enabled) {
    grad_disabled = !enabled;
}

/* ---- nodes: creation and destruction ---------------------------------------------- */

/* Destruction work list: releasing a node can release the next node up the chain
 * (through an edge or a saved tensor), which would recurse once per op. Instead, a node
 * whose last reference goes is pushed here and the outermost call frees the list. */
static _Thread_local ag_node *dying_nodes;
static _Thread_local bool draining;

/* Frees what one node owns; may push more nodes onto dying_nodes. */
static void node_free_contents(ag_node *n) {
    for (int i = 0; i < n->n_edges; i++) {
        ag_node_unref(n->edges[i].node);
        tensor_release(n->edges[i].leaf);
    }
    free(n->edges);
    for (int i = 0; i < AG_MAX_SAVED; i++) tensor_release(n->saved[i]);
    tensor_release(n->grad_acc);
    if (n->ctx_release) n->ctx_release(n->ctx);
    free(n);
}

/* The destroy hook of grad_node_header: called when the node's refcount reached zero
 * (by ag_node_unref or by tensor_release dropping a tensor's grad_fn). Cannot fail. */
static void node_destroy(grad_node_header *header) {
    ag_node *n = (ag_node *)header;
    n->next = dying_nodes;
    dying_nodes = n;
    if (draining) return;
    draining = true;
    while (dying_nodes) {
        ag_node *m = dying_nodes;
        dying_nodes = m->next;
        node_free_contents(m);
    }
    draining = false;
}

void ag_node_unref(ag_node *node) {
    if (node && --node->header.refcount == 0) node->header.destroy(&node->header);
}

bool ag_any_requires_grad(const tensor *const *inputs, int n) {
    if (grad_disabled) return false;
    for (int i = 0; i < n; i++)
        if (inputs[i] && inputs[i]->requires_grad) return true;
    return false;
}

ddp_status ag_record(const char *name, ag_backward_fn backward, const tensor *const *inputs, int n,
                     tensor *y, tensor **out, ag_node **node_out) {
    *out = y;
    *node_out = NULL;
    if (!ag_any_requires_grad(inputs, n) || !dtype_is_float(y->dtype)) return DDP_OK;
    for (int i = 0; i < n; i++)
        if (inputs[i] == y) return DDP_OK; /* the op returned its input (a no-op) */
    ag_node *node = ddp_calloc(1, sizeof *node);
    ag_edge *edges = ddp_calloc((size_t)(n > 0 ? n : 1), sizeof *edges);
    if (!node || !edges) {
        free(node);
        free(edges);
        tensor_release(y);
        *out = NULL;
        return DDP_FAIL(DDP_ERR_NOMEM, "%s: out of memory while recording the autograd graph",
                        name);
    }
    node->header.refcount = 1; /* owned by `out` */
    node->header.destroy = node_destroy;
    node->name = name;
    node->backward = backward;
    node->n_edges = n;
    node->edges = edges;
    for (int i = 0; i < n; i++) {
        const tensor *in = inputs[i];
        if (!in) continue;
        ag_edge *e = &edges[i];
        e->dtype = in->dtype;
        e->device = in->storage->device;
        e->ndim = in->ndim;
        memcpy(e->sizes, in->sizes, sizeof e->sizes);
        if (!in->requires_grad) continue;
        e->needed = true;
        if (in->grad_fn) {
            e->node = (ag_node *)in->grad_fn;
            e->node->header.refcount++;
        } else {
            e->leaf = tensor_retain((tensor *)in);
        }
    }
    y->requires_grad = true;
    y->grad_fn = &node->header;
    y->grad_fn_slot = 0;
    *node_out = node;
    return DDP_OK;
}

void ag_save(ag_node *node, int slot, const tensor *t) {
    tensor_release(node->saved[slot]);
    node->saved[slot] = tensor_retain((tensor *)t);
    node->saved_version[slot] = tensor_version(t);
    node->saved_from[slot] = t->grad_fn ? ((ag_node *)t->grad_fn)->name : NULL;
    node->has_saved = true;
}

ddp_status ag_save_output(ag_node *node, int slot, const tensor *out) {
    tensor *alias;
    DDP_CHECK(ag_detach(out, &alias));
    tensor_release(node->saved[slot]);
    node->saved[slot] = alias;
    node->saved_version[slot] = tensor_version(out);
    node->saved_from[slot] = node->name;
    node->has_saved = true;
    return DDP_OK;
}

ddp_status ag_zeros(const tensor *like, const int64_t *sizes, int ndim, dtype dt, tensor **out) {
    return tensor_zeros(sizes, ndim, dt, like->storage->device, out);
}

bool ag_grad_is_exclusive(const tensor *g) {
    return g->refcount == 1 && g->storage->refcount == 1 && !g->requires_grad && !g->grad_fn &&
           tensor_is_contiguous(g);
}

/* ---- leaves, detach, in-place checks ---------------------------------------------- */

ddp_status ag_set_requires_grad(tensor *t, bool requires_grad) {
    if (requires_grad && !dtype_is_float(t->dtype))
        return DDP_FAIL(DDP_ERR_ARG,
                        "requires_grad: only floating point tensors can require gradients "
                        "(this one is %s; convert it with :float() first)",
                        dtype_name(t->dtype));
    if (t->grad_fn) {
        if (requires_grad) return DDP_OK;
        return DDP_FAIL(DDP_ERR_ARG,
                        "requires_grad: you can only change requires_grad of leaf tensors; "
                        "this one was computed by %s. Use t:detach() to get a tensor that "
                        "does not require grad",
                        ((ag_node *)t->grad_fn)->name);
    }
    t->requires_grad = requires_grad;
    return DDP_OK;
}

ddp_status ag_detach(const tensor *t, tensor **out) {
    /* expand to its own sizes: a fresh view with the same sizes, strides and offset, and
     * no autograd state (the tensor layer never copies requires_grad or grad_fn) */
    return tensor_expand(t, t->sizes, t->ndim, out);
}

ddp_status ag_check_inplace(const tensor *t, const char *op) {
    if (t->grad_fn && !grad_disabled)
        return DDP_FAIL(DDP_ERR_ARG,
                        "%s: ddplab cannot record this in-place operation on a tensor with "
                        "autograd history (computed by %s), as PyTorch would; use the "
                        "out-of-place form (x = ...), or :detach() it first",
                        op, ((ag_node *)t->grad_fn)->name);
    if (t->requires_grad && !grad_disabled)
        return DDP_FAIL(DDP_ERR_ARG,
                        "%s: a leaf tensor that requires grad is being used in an in-place "
                        "operation; do the update inside torch.no_grad(function() ... end), "
                        "as optimizers do",
                        op);
    return DDP_OK;
}

/* The nodes of ops whose output shares its input's storage. An in-place change of such
 * a view would have to rewrite its base's history too (PyTorch's CopySlices), which
 * ddplab does not do: it refuses instead. */
static bool is_view_node(const char *name) {
    static const char *const views[] = {
        "ViewBackward0",    "SelectBackward0",    "SliceBackward0",      "TransposeBackward0",
        "PermuteBackward0", "UnsqueezeBackward0", "SqueezeBackward0",    "SqueezeBackward1",
        "SqueezeBackward3", "ExpandBackward0",    "UnsafeViewBackward0", NULL};
    for (int i = 0; views[i]; i++)
        if (strcmp(name, views[i]) == 0) return true;
    return false;
}

ddp_status ag_inplace_begin(const tensor *t, const tensor *other, const char *op, bool *record) {
    *record = false;
    if (grad_disabled) return DDP_OK; /* optimizer updates: no history to keep */
    if (!t->grad_fn && t->requires_grad)
        return DDP_FAIL(DDP_ERR_ARG,
                        "%s: a leaf tensor that requires grad is being used in an in-place "
                        "operation; do the update inside torch.no_grad(function() ... end), "
                        "as optimizers do",
                        op);
    if (!t->grad_fn && !(other && other->requires_grad)) return DDP_OK;
    if (t->grad_fn && is_view_node(((ag_node *)t->grad_fn)->name))
        return DDP_FAIL(DDP_ERR_ARG,
                        "%s: in-place operation on a view (made by %s) of a tensor that "
                        "autograd tracks: ddplab cannot rewrite the base tensor's history, as "
                        "PyTorch does; :clone() the view first, or change the base tensor "
                        "itself",
                        op, ((ag_node *)t->grad_fn)->name);
    *record = dtype_is_float(t->dtype);
    return DDP_OK;
}

ddp_status ag_inplace_adopt(tensor *t, const tensor *result, const char *op) {
    if (result->ndim != t->ndim ||
        memcmp(result->sizes, t->sizes, sizeof(int64_t) * (size_t)t->ndim))
        return DDP_FAIL(DDP_ERR_ARG,
                        "%s: the result has a different shape than the tensor changed in place "
                        "(an in-place operation cannot broadcast its tensor to a larger shape)",
                        op);
    DDP_CHECK(tensor_copy_(t, result)); /* one in-place write: t's version moves on */
    grad_node_header *old = t->grad_fn;
    t->grad_fn = result->grad_fn;
    t->grad_fn_slot = result->grad_fn_slot;
    if (t->grad_fn) {
        t->grad_fn->refcount++;
        t->requires_grad = true;
    }
    ag_node_unref((ag_node *)old);
    return DDP_OK;
}

const char *ag_grad_fn_name(const tensor *t) {
    return t->grad_fn ? ((ag_node *)t->grad_fn)->name : NULL;
}

/* ---- the backward pass ------------------------------------------------------------ */

/* A growable array of node pointers (the engine's lists). */
typedef struct {
    ag_node **items;
    size_t len, cap;
} node_list;

/* Appends n, growing the array; DDP_ERR_NOMEM when it cannot. */
static ddp_status node_list_push(node_list *l, ag_node *n) {
    if (l->len == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        ag_node **items = ddp_realloc(l->items, cap * sizeof *items);
        if (!items) return DDP_FAIL(DDP_ERR_NOMEM, "backward: out of memory walking the graph");
        l->items = items;
        l->cap = cap;
    }
    l->items[l->len++] = n;
    return DDP_OK;
}

/* Brings a gradient to the shape, dtype and device of the input it flows into: sums over
 * the dims that were broadcast, converts float32 <-> float64, moves it back across a
 * device move (t:to("cuda")). Takes ownership of g. */
static ddp_status conform_grad(tensor *g, const ag_edge *e, tensor **out) {
    *out = NULL;
    bool same_shape = g->ndim == e->ndim;
    for (int d = 0; same_shape && d < e->ndim; d++) same_shape = g->sizes[d] == e->sizes[d];
    if (!same_shape) {
        tensor *s;
        ddp_status st = tensor_sum_to(g, e->sizes, e->ndim, &s);
        tensor_release(g);
        DDP_CHECK(st);
        g = s;
    }
    if (g->dtype != e->dtype || !device_equal(g->storage->device, e->device)) {
        tensor *c;
        ddp_status st = tensor_to_device(g, e->device, e->dtype, &c);
        tensor_release(g);
        DDP_CHECK(st);
        g = c;
    }
    *out = g;
    return DDP_OK;
}

/* The GEMM half of ag_accumulate_leaf: leaf.grad += op(x) @ op(y) when it can go in
 * directly (see autograd_internal.h). */
static ddp_status accumulate_product(tensor *leaf, const ag_leaf_grad *u, bool *done) {
    if (leaf->ndim != 2 || u->x->dtype != leaf->dtype || u->y->dtype != leaf->dtype ||
        !dtype_is_float(leaf->dtype))
        return DDP_OK;
    tensor *grad = leaf->grad;
    if (grad && (grad->dtype != leaf->dtype || !tensor_same_shape(grad, leaf) ||
                 !tensor_is_contiguous(grad) || grad->storage == u->x->storage ||
                 grad->storage == u->y->storage))
        return DDP_OK;
    bool fresh = grad == NULL;
    if (fresh) DDP_CHECK(tensor_empty(leaf->sizes, 2, leaf->dtype, leaf->storage->device, &grad));
    ddp_status s = tensor_gemm_(u->tx, u->ty, 1.0, u->x, u->y, fresh ? 0.0 : 1.0, grad);
    if (s != DDP_OK) {
        if (fresh) tensor_release(grad);
        return s;
    }
    leaf->grad = grad;
    *done = true;
    return DDP_OK;
}

ddp_status ag_accumulate_leaf(tensor *leaf, const ag_leaf_grad *u, bool *done) {
    *done = false;
    if (!u->g) return accumulate_product(leaf, u, done);
    tensor *g = (tensor *)u->g;
    *done = true;
    if (!leaf->grad && ag_grad_is_exclusive(g) && g->dtype == leaf->dtype &&
        tensor_same_shape(g, leaf) && device_equal(g->storage->device, leaf->storage->device)) {
        leaf->grad = tensor_retain(g); /* adopt it, as PyTorch's AccumulateGrad does */
        return DDP_OK;
    }
    if (!leaf->grad) DDP_CHECK(ag_zeros(leaf, leaf->sizes, leaf->ndim, leaf->dtype, &leaf->grad));
    return tensor_add_scaled_(leaf->grad, g, 1.0);
}

/* leaf.grad += g through the one path. Borrows g (retains it when adopted). */
static ddp_status accumulate_leaf(tensor *leaf, tensor *g) {
    bool done;
    ag_leaf_grad u = {.g = g};
    return ag_accumulate_leaf(leaf, &u, &done);
}

/* ---- gradient-ready hooks ------------------------------------------------------------ */

typedef struct grad_hook {
    uint64_t id;
    ag_grad_hook_fn fn; /* NULL once removed while the list was running */
    void *ctx;
    void (*free_ctx)(void *);
    struct grad_hook *next;
} grad_hook;

/* What a leaf's tensor owns through its grad_hooks header. */
typedef struct {
    grad_node_header header; /* must stay first */
    grad_hook *hooks;
    int pending; /* engine scratch: uses of the leaf the running pass has still to do */
    int running; /* > 0 while the hooks run: removal then only marks a hook */
} leaf_hooks;

static uint64_t next_hook_id = 1;

static void hook_free(grad_hook *h) {
    if (h->free_ctx) h->free_ctx(h->ctx);
    free(h);
}

static void leaf_hooks_destroy(grad_node_header *header) {
    leaf_hooks *lh = (leaf_hooks *)header;
    while (lh->hooks) {
        grad_hook *h = lh->hooks;
        lh->hooks = h->next;
        hook_free(h);
    }
    free(lh);
}

ddp_status ag_add_grad_hook(tensor *leaf, ag_grad_hook_fn fn, void *ctx, void (*free_ctx)(void *),
                            uint64_t *id) {
    ddp_status s = DDP_OK;
    if (!leaf->requires_grad)
        s = DDP_FAIL(DDP_ERR_ARG, "register_post_accumulate_grad_hook: cannot register a hook on "
                                  "a tensor that doesn't require gradient");
    else if (leaf->grad_fn)
        s = DDP_FAIL(DDP_ERR_ARG,
                     "register_post_accumulate_grad_hook: post accumulate grad hooks cannot be "
                     "registered on non-leaf tensors (this one was computed by %s)",
                     ((ag_node *)leaf->grad_fn)->name);
    grad_hook *h = s == DDP_OK ? ddp_calloc(1, sizeof *h) : NULL;
    if (s == DDP_OK && !h)
        s = DDP_FAIL(DDP_ERR_NOMEM, "register_post_accumulate_grad_hook: out of memory");
    leaf_hooks *lh = (leaf_hooks *)leaf->grad_hooks;
    if (s == DDP_OK && !lh) {
        lh = ddp_calloc(1, sizeof *lh);
        if (!lh) {
            s = DDP_FAIL(DDP_ERR_NOMEM, "register_post_accumulate_grad_hook: out of memory");
        } else {
            lh->header.refcount = 1; /* owned by the leaf */
            lh->header.destroy = leaf_hooks_destroy;
            leaf->grad_hooks = &lh->header;
        }
    }
    if (s != DDP_OK) {
        free(h);
        if (free_ctx) free_ctx(ctx);
        return s;
    }
    h->id = next_hook_id++;
    h->fn = fn;
    h->ctx = ctx;
    h->free_ctx = free_ctx;
    grad_hook **tail = &lh->hooks;
    while (*tail) tail = &(*tail)->next;
    *tail = h;
    *id = h->id;
    return DDP_OK;
}

/* Unlinks and frees the hooks removed while the list was running. */
static void sweep_removed(leaf_hooks *lh) {
    for (grad_hook **p = &lh->hooks; *p;) {
        grad_hook *h = *p;
        if (h->fn) {
            p = &h->next;
            continue;
        }
        *p = h->next;
        hook_free(h);
    }
}

bool ag_remove_grad_hook(tensor *leaf, uint64_t id) {
    leaf_hooks *lh = (leaf_hooks *)leaf->grad_hooks;
    if (!lh) return false;
    for (grad_hook *h = lh->hooks; h; h = h->next) {
        if (h->id != id || !h->fn) continue;
        h->fn = NULL;
        if (!lh->running) sweep_removed(lh);
        return true;
    }
    return false;
}

/* Runs the leaf's hooks in order; the first failure stops them and is returned. A hook
 * may remove hooks (itself included) or add new ones (they run from the next pass). */
static ddp_status fire_hooks(tensor *leaf) {
    leaf_hooks *lh = (leaf_hooks *)leaf->grad_hooks;
    if (!lh) return DDP_OK;
    lh->header.refcount++; /* a hook dropping the last reference to leaf must not free lh */
    lh->running++;
    uint64_t last = next_hook_id; /* hooks added by a hook wait for the next pass */
    ddp_status s = DDP_OK;
    for (grad_hook *h = lh->hooks; h && s == DDP_OK; h = h->next)
        if (h->fn && h->id < last) s = h->fn(leaf, h->ctx);
    if (--lh->running == 0) sweep_removed(lh);
    if (--lh->header.refcount == 0) lh->header.destroy(&lh->header);
    return s;
}

/* One use of a leaf in the running pass is done: its hooks run when it was the last. */
static ddp_status leaf_use_done(tensor *leaf) {
    leaf_hooks *lh = (leaf_hooks *)leaf->grad_hooks;
    if (!lh || lh->pending <= 0 || --lh->pending > 0) return DDP_OK;
    return fire_hooks(leaf);
}

/* node.grad_acc += g (the sum of every gradient flowing into the node's output). Takes
 * ownership of g. */
static ddp_status accumulate_node(ag_node *n, tensor *g) {
    if (!n->grad_acc) {
        n->grad_acc = g;
        return DDP_OK;
    }
    if (ag_grad_is_exclusive(n->grad_acc) && tensor_same_shape(n->grad_acc, g) &&
        n->grad_acc->dtype == g->dtype) { /* ours alone: add in place */
        ddp_status s = tensor_add_scaled_(n->grad_acc, g, 1.0);
        tensor_release(g);
        return s;
    }
    tensor *sum;
    ddp_status s = tensor_binary(BINARY_ADD, n->grad_acc, g, &sum);
    tensor_release(g);
    DDP_CHECK(s);
    tensor_release(n->grad_acc);
    n->grad_acc = sum;
    return DDP_OK;
}

/* PyTorch's legacy type name of a tensor in its version error: torch.FloatTensor... */
static const char *legacy_type_name(dtype dt) {
    switch (dt) {
    case DTYPE_FLOAT32:
        return "torch.FloatTensor";
    case DTYPE_FLOAT64:
        return "torch.DoubleTensor";
    case DTYPE_INT64:
        return "torch.LongTensor";
    default:
        return "torch.BoolTensor";
    }
}

/* DDP_ERR_STATE when a tensor that n saved in the forward pass has been changed in place
 * since (its storage's version moved on), in PyTorch's words and with a hint for the
 * usual cause in a training loop. */
static ddp_status check_saved_versions(const ag_node *n) {
    for (int i = 0; i < AG_MAX_SAVED; i++) {
        const tensor *t = n->saved[i];
        if (!t || tensor_version(t) == n->saved_version[i]) continue;
        char shape[160] = "[", from[96] = "";
        size_t len = 1;
        for (int d = 0; d < t->ndim && len < sizeof shape; d++)
            len += (size_t)snprintf(shape + len, sizeof shape - len, "%s%lld", d ? ", " : "",
                                    (long long)t->sizes[d]);
        if (len < sizeof shape - 1) {
            shape[len++] = ']';
            shape[len] = '\0';
        }
        /* PyTorch names what produces the tensor now: after a recorded in-place op that
         * is the op's node (AddBackward0 for y:add_(1)), else the node it came from */
        const char *by = t->grad_fn ? ((const ag_node *)t->grad_fn)->name : n->saved_from[i];
        if (by) snprintf(from, sizeof from, ", which is output 0 of %s,", by);
        return DDP_FAIL(DDP_ERR_STATE,
                        "one of the variables needed for gradient computation has been "
                        "modified by an inplace operation: [%s %s]%s is at version %llu; "
                        "expected version %llu instead. Hint: %s needs this tensor as the "
                        "forward pass saw it, but something changed it in place since "
                        "(opt:step(), a method ending in _ such as mul_, or a collective). "
                        "Did opt:step() run between the forward pass and loss:backward()? "
                        "Call loss:backward() first, or compute the loss again after the "
                        "change.",
                        legacy_type_name(t->dtype), shape, from,
                        (unsigned long long)tensor_version(t),
                        (unsigned long long)n->saved_version[i], n->name);
    }
    return DDP_OK;
}

/* Runs one node's backward and hands each input gradient on: to a leaf's .grad, or
 * into the next node's accumulator (pushing it onto `ready` once all of its consumers
 * have run). */
static ddp_status run_node(ag_node *n, bool retain_graph, node_list *ready) {
    tensor *g = n->grad_acc;
    n->grad_acc = NULL;
    tensor *small[4] = {NULL, NULL, NULL, NULL};
    tensor **grads = small;
    if (n->n_edges > 4) {
        grads = ddp_calloc((size_t)n->n_edges, sizeof *grads);
        if (!grads) {
            tensor_release(g);
            return DDP_FAIL(DDP_ERR_NOMEM, "backward: out of memory in %s", n->name);
        }
    }
    ddp_status s = g ? check_saved_versions(n) : DDP_OK;
    if (g && s == DDP_OK) s = n->backward(n, g, grads);
    tensor_release(g);
    for (int i = 0; i < n->n_edges; i++) {
        ag_edge *e = &n->edges[i];
        tensor *gi = grads[i];
        grads[i] = NULL;
        if (s == DDP_OK && gi && e->needed) {
            s = conform_grad(gi, e, &gi);
            if (s == DDP_OK && e->leaf) s = accumulate_leaf(e->leaf, gi);
            if (s == DDP_OK && e->node) {
                s = accumulate_node(e->node, gi);
                gi = NULL;
            }
        }
        tensor_release(gi);
        if (e->leaf && s == DDP_OK) s = leaf_use_done(e->leaf);
        if (e->node && --e->node->deps == 0 && s == DDP_OK) s = node_list_push(ready, e->node);
    }
    if (grads != small) free(grads);
    if (!retain_graph && s == DDP_OK) {
        for (int i = 0; i < AG_MAX_SAVED; i++) {
            tensor_release(n->saved[i]);
            n->saved[i] = NULL;
        }
        n->freed = true;
    }
    return s;
}

/* Finds every node reachable from start (breadth first, no recursion) and counts, for
 * each, how many edges point at it. */
static ddp_status collect_graph(ag_node *start, node_list *all) {
    DDP_CHECK(node_list_push(all, start));
    start->visited = true;
    for (size_t i = 0; i < all->len; i++) {
        ag_node *n = all->items[i];
        if (n->freed && n->has_saved)
            return DDP_FAIL(DDP_ERR_STATE,
                            "backward: Trying to backward through the graph a second time (or "
                            "directly access saved tensors after they have already been "
                            "freed). Saved intermediate values of the graph are freed when "
                            "you call backward(). Specify retain_graph=true if you need to "
                            "backward through the graph a second time (%s)",
                            n->name);
        for (int k = 0; k < n->n_edges; k++) {
            tensor *leaf = n->edges[k].leaf;
            if (leaf && leaf->grad_hooks) ((leaf_hooks *)leaf->grad_hooks)->pending++;
            ag_node *m = n->edges[k].node;
            if (!m) continue;
            /* marked and counted only once on the list, which ag_backward unmarks and
             * resets, also when this fails */
            if (!m->visited) {
                DDP_CHECK(node_list_push(all, m));
                m->visited = true;
            }
            m->deps++;
        }
    }
    return DDP_OK;
}

ddp_status ag_reachable_leaves(tensor *const *roots, int n, void (*visit)(tensor *leaf, void *ctx),
                               void *ctx) {
    node_list all = {0};
    ddp_status s = DDP_OK;
    for (int i = 0; s == DDP_OK && i < n; i++) {
        tensor *t = roots[i];
        if (!t || !t->requires_grad) continue;
        if (!t->grad_fn) {
            visit(t, ctx);
            continue;
        }
        ag_node *start = (ag_node *)t->grad_fn;
        if (start->visited) continue;
        s = node_list_push(&all, start);
        start->visited = s == DDP_OK; /* only what is on the list gets unmarked */
    }
    for (size_t i = 0; s == DDP_OK && i < all.len; i++) { /* breadth first, no recursion */
        ag_node *m = all.items[i];
        for (int k = 0; s == DDP_OK && k < m->n_edges; k++) {
            ag_edge *e = &m->edges[k];
            if (e->leaf) visit(e->leaf, ctx);
            if (e->node && !e->node->visited) {
                s = node_list_push(&all, e->node);
                e->node->visited = s == DDP_OK;
            }
        }
    }
    for (size_t i = 0; i < all.len; i++) all.items[i]->visited = false;
    free(all.items);
    return s;
}

/* The gradient of the root: the given one (checked, converted to the root's dtype) or
 * ones for a one-element root. */
static ddp_status root_grad(const tensor *root, const tensor *grad, tensor **out) {
    char a[64], b[64];
    if (grad) {
        if (!tensor_same_shape(root, grad))
            return DDP_FAIL(DDP_ERR_ARG,
                            "backward: the gradient has shape %s but the tensor has shape %s; "
                            "they must match",
                            tensor_shape_str(grad, a, sizeof a),
                            tensor_shape_str(root, b, sizeof b));
        if (grad->dtype == root->dtype) {
            *out = tensor_retain((tensor *)grad);
            return DDP_OK;
        }
        return tensor_to_dtype(grad, root->dtype, out);
    }
    if (tensor_numel(root) != 1)
        return DDP_FAIL(DDP_ERR_ARG,
                        "backward: grad can be implicitly created only for scalar outputs "
                        "(this tensor has shape %s; reduce it first, e.g. with :sum() or "
                        ":mean(), or pass a gradient of the same shape)",
                        tensor_shape_str(root, a, sizeof a));
    return tensor_full(root->sizes, root->ndim, root->dtype, root->storage->device, 1.0, out);
}

ddp_status ag_backward(tensor *root, const tensor *grad, bool retain_graph) {
    if (!root->requires_grad)
        return DDP_FAIL(DDP_ERR_ARG,
                        "backward: element 0 of tensors does not require grad and does not "
                        "have a grad_fn (was it computed under torch.no_grad, from tensors "
                        "without requires_grad=true, or detached?)%s",
                        grad_disabled ? ". Gradients are off right now: torch.no_grad() "
                                        "called alone turns them off until "
                                        "torch.set_grad_enabled(true); to turn them off for a "
                                        "few lines, write torch.no_grad(function() ... end) or "
                                        "`local _ <close> = torch.no_grad()` in a block"
                                      : "");
    tensor *g;
    DDP_CHECK(root_grad(root, grad, &g));
    if (!root->grad_fn) { /* backward on a leaf: its grad is just g */
        ddp_status s = accumulate_leaf(root, g);
        tensor_release(g);
        return s == DDP_OK ? fire_hooks(root) : s;
    }
    ag_node *start = (ag_node *)root->grad_fn;
    node_list all = {0}, ready = {0};
    ddp_status s = collect_graph(start, &all);
    if (s == DDP_OK) {
        start->grad_acc = g;
        g = NULL;
        s = node_list_push(&ready, start);
    }
    while (s == DDP_OK && ready.len > 0) {
        ag_node *n = ready.items[--ready.len];
        s = run_node(n, retain_graph, &ready);
    }
    tensor_release(g);
    for (size_t i = 0; i < all.len; i++) { /* leave every node clean for the next pass */
        ag_node *n = all.items[i];
        n->visited = false;
        n->deps = 0;
        tensor_release(n->grad_acc);
        n->grad_acc = NULL;
        for (int k = 0; k < n->n_edges; k++) { /* a failed pass leaves uses uncounted */
            tensor *leaf = n->edges[k].leaf;
            if (leaf && leaf->grad_hooks) ((leaf_hooks *)leaf->grad_hooks)->pending = 0;
        }
    }
    free(all.items);
    free(ready.items);
    return s;
}
