/* reducer.c — DDP's gradient buckets (reducer.h): assignment by size, copying gradients
 * in as they become ready, launching each bucket's all_reduce in bucket order, writing
 * the averaged gradients back, and the rebuild in gradient-ready order after the first
 * iteration. Modelled on PyTorch's Reducer (reducer.cpp) and
 * compute_bucket_assignment_by_size; the numbers (1/world_size applied as gradients are
 * copied in, then SUM) are PyTorch's, so the averaged gradients match its. */
#include "dist/reducer.h"

#include "base/alloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
    int n;            /* parameters in the bucket */
    int *params;      /* their indices, in bucket order */
    int64_t *offsets; /* each one's first element in the buffer */
    tensor *buffer;   /* flat, of the parameters' dtype; owned */
    tensor **views;   /* each parameter's shape over buffer; owned */
    int pending;      /* parameters not ready yet this pass */
    bool ready;
    pg_work *work; /* the default hook's all_reduce in flight */
    double t_ready, t_start, t_end;
} bucket;

struct reducer {
    process_group *g; /* retained */
    int n;
    tensor **params; /* retained */
    char **names;
    int *bucket_of, *slot_of; /* where each parameter lives */
    bucket *buckets;
    int nbuckets;
    reducer_options o;
    int world;
    bool external; /* a comm hook of the caller's: no division, no launch here */
    /* one pass */
    bool armed;
    bool *marked;
    bool *unused;       /* not reached by this forward's output (find_unused) */
    bool marked_unused; /* the unused ones were marked at the first hook */
    int next_bucket;    /* the next bucket to launch */
    int next_external;  /* the next launched bucket the caller has not taken */
    float *used_map;    /* 1 for a parameter whose hook ran (find_unused) */
    /* the rebuild */
    int *order;
    int norder;
    bool order_complete;
    bool rebuilt;
    double t_final_start, t_final_end;
};

double reducer_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* ---- buckets -------------------------------------------------------------------------- */

static void bucket_clear(bucket *b) {
    pg_work_free(b->work);
    for (int i = 0; b->views && i < b->n; i++) tensor_release(b->views[i]);
    free(b->views);
    tensor_release(b->buffer);
    free(b->params);
    free(b->offsets);
    memset(b, 0, sizeof *b);
}

static void buckets_free(reducer *r) {
    for (int i = 0; i < r->nbuckets; i++) bucket_clear(&r->buckets[i]);
    free(r->buckets);
    r->buckets = NULL;
    r->nbuckets = 0;
}

static size_t param_bytes(const tensor *p) {
    return (size_t)tensor_numel(p) * dtype_size(p->dtype);
}

/* Fills b with the parameters idx[0..k) (all of one dtype): buffer, offsets, views. */
static ddp_status bucket_fill(reducer *r, bucket *b, const int *idx, int k) {
    b->n = k;
    b->params = ddp_malloc(sizeof *b->params * (size_t)k);
    b->offsets = ddp_malloc(sizeof *b->offsets * (size_t)k);
    b->views = ddp_calloc((size_t)k, sizeof *b->views);
    if (!b->params || !b->offsets || !b->views)
        return DDP_FAIL(DDP_ERR_NOMEM, "DistributedDataParallel: out of memory for a bucket");
    int64_t total = 0;
    for (int i = 0; i < k; i++) {
        b->params[i] = idx[i];
        b->offsets[i] = total;
        total += tensor_numel(r->params[idx[i]]);
    }
    const tensor *p0 = r->params[idx[0]];
    DDP_CHECK(tensor_zeros(&total, 1, p0->dtype, p0->storage->device, &b->buffer));
    for (int i = 0; i < k; i++) {
        const tensor *p = r->params[idx[i]];
        tensor *flat;
        DDP_CHECK(tensor_narrow(b->buffer, 0, b->offsets[i], tensor_numel(p), &flat));
        ddp_status s = tensor_view(flat, p->sizes, p->ndim, &b->views[i]);
        tensor_release(flat);
        DDP_CHECK(s);
    }
    return DDP_OK;
}

/* Cuts the parameters, walked in `order`, into buckets: a bucket closes once it holds
 * its cap (first_cap for the first of a dtype, cap after), one open bucket per dtype;
 * buckets come out in the order they closed, the open ones last (PyTorch's rules). They
 * replace the reducer's only once all are made: on failure it keeps the ones it had. */
static ddp_status assign(reducer *r, const int *order, int n) {
    bucket *bs = ddp_calloc((size_t)(n > 0 ? n : 1), sizeof *bs);
    int *open[2] = {ddp_malloc(sizeof(int) * (size_t)(n + 1)),
                    ddp_malloc(sizeof(int) * (size_t)(n + 1))};
    int nopen[2] = {0, 0};
    size_t bytes[2] = {0, 0};
    int closed[2] = {0, 0}; /* buckets closed per dtype: the first one has first_cap */
    ddp_status s = DDP_OK;
    if (!bs || !open[0] || !open[1])
        s = DDP_FAIL(DDP_ERR_NOMEM, "DistributedDataParallel: out of memory");
    int nb = 0;
    for (int i = 0; s == DDP_OK && i < n; i++) {
        const tensor *p = r->params[order[i]];
        int key = p->dtype == DTYPE_FLOAT64;
        open[key][nopen[key]++] = order[i];
        bytes[key] += param_bytes(p);
        size_t limit = closed[key] == 0 ? r->o.first_cap : r->o.cap;
        if (bytes[key] >= limit) {
            s = bucket_fill(r, &bs[nb++], open[key], nopen[key]);
            nopen[key] = 0;
            bytes[key] = 0;
            closed[key]++;
        }
    }
    for (int key = 0; key < 2 && s == DDP_OK; key++)
        if (nopen[key] > 0) s = bucket_fill(r, &bs[nb++], open[key], nopen[key]);
    free(open[0]);
    free(open[1]);
    if (s != DDP_OK) { /* the buckets the reducer had stay, whole (a rebuild that failed) */
        for (int b = 0; bs && b < nb; b++) bucket_clear(&bs[b]);
        free(bs);
        return s;
    }
    buckets_free(r);
    r->buckets = bs;
    r->nbuckets = nb;
    for (int b = 0; b < nb; b++) {
        for (int k = 0; k < bs[b].n; k++) {
            r->bucket_of[bs[b].params[k]] = b;
            r->slot_of[bs[b].params[k]] = k;
        }
    }
    return DDP_OK;
}

/* ---- life cycle ------------------------------------------------------------------------ */

void reducer_free(reducer *r) {
    if (!r) return;
    buckets_free(r);
    for (int i = 0; i < r->n; i++) { /* a reducer_new that ran out may lack either array */
        if (r->params) tensor_release(r->params[i]);
        if (r->names) free(r->names[i]);
    }
    free(r->params);
    free(r->names);
    free(r->bucket_of);
    free(r->slot_of);
    free(r->marked);
    free(r->unused);
    free(r->used_map);
    free(r->order);
    pg_release(r->g);
    free(r);
}

ddp_status reducer_new(process_group *g, tensor *const *params, const char *const *names, int n,
                       const reducer_options *o, reducer **out) {
    *out = NULL;
    char shape[96];
    for (int i = 0; i < n; i++) {
        const tensor *p = params[i];
        const char *why = !dtype_is_float(p->dtype)  ? "is not a float tensor"
                          : !p->requires_grad        ? "does not require grad"
                          : !tensor_is_contiguous(p) ? "is not contiguous"
                          : !device_equal(p->storage->device, params[0]->storage->device)
                              ? "is on another device than the first parameter (a module "
                                "spread over devices is not supported)"
                              : NULL;
        if (why)
            return DDP_FAIL(DDP_ERR_ARG, "DistributedDataParallel: parameter %s %s %s",
                            names && names[i] ? names[i] : "?",
                            tensor_shape_str(p, shape, sizeof shape), why);
    }
    if (!g) DDP_CHECK(pg_default(&g));
    reducer *r = ddp_calloc(1, sizeof *r);
    if (!r) return DDP_FAIL(DDP_ERR_NOMEM, "DistributedDataParallel: out of memory");
    size_t m = (size_t)(n > 0 ? n : 1);
    r->g = pg_retain(g);
    r->n = n;
    r->o = *o;
    r->world = pg_size(g);
    r->params = ddp_calloc(m, sizeof *r->params);
    r->names = ddp_calloc(m, sizeof *r->names);
    r->bucket_of = ddp_calloc(m, sizeof *r->bucket_of);
    r->slot_of = ddp_calloc(m, sizeof *r->slot_of);
    r->marked = ddp_calloc(m, sizeof *r->marked);
    r->unused = ddp_calloc(m, sizeof *r->unused);
    r->used_map = ddp_calloc(m, sizeof *r->used_map);
    r->order = ddp_calloc(m, sizeof *r->order);
    int *rev = ddp_calloc(m, sizeof *rev);
    bool ok = r->params && r->names && r->bucket_of && r->slot_of && r->marked && r->unused &&
              r->used_map && r->order && rev;
    for (int i = 0; ok && i < n; i++) {
        r->params[i] = tensor_retain(params[i]);
        r->names[i] = ddp_strdup(names && names[i] ? names[i] : "?");
        ok = r->names[i] != NULL;
        rev[i] = n - 1 - i;
    }
    ddp_status s =
        ok ? assign(r, rev, n) : DDP_FAIL(DDP_ERR_NOMEM, "DistributedDataParallel: out of memory");
    free(rev);
    if (s != DDP_OK) {
        reducer_free(r);
        return s;
    }
    *out = r;
    return DDP_OK;
}

void reducer_set_external_hook(reducer *r, bool external) {
    r->external = external;
}

/* ---- one pass -------------------------------------------------------------------------- */

/* Waits for (and forgets) every all_reduce of the pass; the first failure is returned. */
static ddp_status wait_all(reducer *r) {
    ddp_status s = DDP_OK;
    for (int b = 0; b < r->nbuckets; b++) {
        bucket *k = &r->buckets[b];
        if (!k->work) continue;
        ddp_status w = pg_work_wait(k->work);
        pg_work_times(k->work, &k->t_start, &k->t_end);
        pg_work_free(k->work);
        k->work = NULL;
        if (s == DDP_OK) s = w;
    }
    return s;
}

bool reducer_armed(const reducer *r) {
    return r->armed;
}

/* Whether parameter i comes after j in the message's order: by name, as PyTorch's sorted
 * set, then by index (two parameters may share a name, "?"). */
static bool listed_after(const reducer *r, int i, int j) {
    int c = strcmp(r->names[i], r->names[j]);
    return c > 0 || (c == 0 && i > j);
}

/* Appends the names (sorted) and indices of the parameters not marked this pass. Allocates
 * nothing (a selection, quadratic in the parameters, on an error path): the message is
 * whole even when memory is short. */
static void describe_unmarked(const reducer *r, char *out, size_t len) {
    int rank = pg_rank(r->g);
    size_t at =
        (size_t)snprintf(out, len, "Parameters which did not receive grad for rank %d: ", rank);
    for (int prev = -1;;) { /* the next unmarked one after prev */
        int best = -1;
        for (int i = 0; i < r->n; i++)
            if (!r->marked[i] && (prev < 0 || listed_after(r, i, prev)) &&
                (best < 0 || listed_after(r, best, i)))
                best = i;
        if (best < 0) break;
        if (at < len)
            at +=
                (size_t)snprintf(out + at, len - at, "%s%s", prev < 0 ? "" : ", ", r->names[best]);
        prev = best;
    }
    if (at < len)
        at += (size_t)snprintf(out + at, len - at,
                               "\nParameter indices which did not receive grad for rank %d:", rank);
    for (int i = 0; i < r->n && at < len; i++)
        if (!r->marked[i]) at += (size_t)snprintf(out + at, len - at, " %d", i);
}

ddp_status reducer_check_finished(reducer *r) {
    if (!r->armed) return DDP_OK;
    int marked = 0;
    for (int i = 0; i < r->n; i++) marked += r->marked[i];
    if (marked == 0 || marked == r->n) {
        /* no backward ran since the forward (evaluation, or a new forward), or one ran to
         * its last hook and its reduction failed (Ctrl-C, a broken link), which that
         * backward reported: start afresh */
        wait_all(r);
        r->armed = false;
        return DDP_OK;
    }
    char names[4096];
    describe_unmarked(r, names, sizeof names);
    /* the pass cannot finish: its launched all_reduces end (every rank launched them),
     * and the reducer starts afresh, so that a corrected loop can go on */
    wait_all(r);
    r->armed = false;
    r->norder = 0;
    if (r->o.find_unused_parameters)
        return DDP_FAIL(DDP_ERR_STATE,
                        "Expected to have finished reduction in the prior iteration before "
                        "starting a new one. This error indicates that your module has parameters "
                        "that were not used in producing loss. Since `find_unused_parameters=True` "
                        "is enabled, this likely  means that not all `forward` outputs participate "
                        "in computing loss. You can fix this by making sure all `forward` function "
                        "outputs participate in calculating loss.\n%s",
                        names);
    return DDP_FAIL(DDP_ERR_STATE,
                    "Expected to have finished reduction in the prior iteration before starting a "
                    "new one. This error indicates that your module has parameters that were not "
                    "used in producing loss. You can enable unused parameter detection by passing "
                    "the keyword argument `find_unused_parameters=True` to "
                    "`torch.nn.parallel.DistributedDataParallel`, and by \nmaking sure all "
                    "`forward` function outputs participate in calculating loss. \nIf you already "
                    "have done the above, then the distributed data parallel module wasn't able to "
                    "locate the output tensors in the return value of your module's `forward` "
                    "function. Please include the loss function and the structure of the return "
                    "value of `forward` of your module when reporting this issue (e.g. list, dict, "
                    "iterable).\n%s",
                    names);
}

ddp_status reducer_prepare(reducer *r, const bool *used) {
    DDP_CHECK(reducer_check_finished(r));
    for (int i = 0; i < r->n; i++) {
        r->marked[i] = false;
        r->unused[i] = r->o.find_unused_parameters && used && !used[i];
        r->used_map[i] = 0;
    }
    for (int b = 0; b < r->nbuckets; b++) {
        bucket *k = &r->buckets[b];
        k->pending = k->n;
        k->ready = false;
        k->t_ready = k->t_start = k->t_end = 0;
    }
    r->marked_unused = false;
    r->next_bucket = r->next_external = 0;
    r->norder = 0;
    r->armed = true;
    return DDP_OK;
}

/* Launches bucket b: with the default hook, an async all_reduce SUM of its buffer. */
static ddp_status launch(reducer *r, int b) {
    bucket *k = &r->buckets[b];
    k->t_ready = reducer_now();
    if (r->external) return DDP_OK; /* the caller takes it with reducer_next_launch */
    pg_buffer buf;
    DDP_CHECK(pg_buffer_from_tensor("DistributedDataParallel", k->buffer, &buf));
    return pg_all_reduce_async(r->g, &buf, COMM_SUM, &k->work);
}

/* Copies parameter i's gradient into its place in the bucket (scaled by 1/world with the
 * default hook); a missing gradient counts as zeros. */
static ddp_status copy_in(reducer *r, int i) {
    tensor *p = r->params[i];
    bucket *k = &r->buckets[r->bucket_of[i]];
    tensor *view = k->views[r->slot_of[i]];
    double scale = r->external ? 1.0 : 1.0 / r->world;
    tensor *g = p->grad;
    if (!g) return tensor_fill_(view, 0.0);
    if (g == view) return scale == 1.0 ? DDP_OK : tensor_binary_scalar_(BINARY_MUL, view, scale);
    if (g->dtype == view->dtype && tensor_is_contiguous(g) && tensor_same_shape(g, view) &&
        tensor_is_cpu(g)) { /* the CPU's one pass; a GPU's goes through the ops below */
        int64_t n = tensor_numel(g);
        if (g->dtype == DTYPE_FLOAT32) {
            const float *src = tensor_data(g);
            float *dst = tensor_data(view);
            float f = (float)scale;
            for (int64_t e = 0; e < n; e++) dst[e] = src[e] * f;
        } else {
            const double *src = tensor_data(g);
            double *dst = tensor_data(view);
            for (int64_t e = 0; e < n; e++) dst[e] = src[e] * scale;
        }
    } else {
        DDP_CHECK(tensor_copy_(view, g));
        if (scale != 1.0) DDP_CHECK(tensor_binary_scalar_(BINARY_MUL, view, scale));
    }
    if (r->o.gradient_as_bucket_view) { /* .grad becomes the view from now on */
        tensor_release(p->grad);
        p->grad = tensor_retain(view);
    }
    return DDP_OK;
}

/* Marks i ready: its gradient goes in, and the buckets ready in order are launched. */
static ddp_status mark(reducer *r, int i, bool from_hook) {
    r->marked[i] = true;
    if (from_hook) r->used_map[i] = 1;
    if (r->norder < r->n) r->order[r->norder++] = i;
    DDP_CHECK(copy_in(r, i));
    bucket *k = &r->buckets[r->bucket_of[i]];
    if (--k->pending == 0) k->ready = true;
    while (r->next_bucket < r->nbuckets && r->buckets[r->next_bucket].ready)
        DDP_CHECK(launch(r, r->next_bucket++));
    return DDP_OK;
}

ddp_status reducer_mark_ready(reducer *r, int i) {
    if (!r->armed || i < 0 || i >= r->n) return DDP_OK;
    if (r->marked[i])
        return DDP_FAIL(
            DDP_ERR_STATE,
            "Expected to mark a variable ready only once. This error is caused by one "
            "of the following reasons: 1) Use of a module parameter outside the "
            "`forward` function. Please make sure model parameters are not shared "
            "across multiple concurrent forward-backward passes. or try to use "
            "_set_static_graph() as a workaround if this module graph does not change "
            "during training loop.2) Reused parameters in multiple reentrant backward "
            "passes. For example, if you use multiple `checkpoint` functions to wrap "
            "the same part of your model, it would result in the same set of parameters "
            "been used by different reentrant backward passes multiple times, and hence "
            "marking a variable ready multiple times. DDP does not support such use "
            "cases in default. You can try to use _set_static_graph() as a workaround if "
            "your module graph does not change over iterations.\nParameter at index %d "
            "with name %s has been marked as ready twice. This means that multiple "
            "autograd engine  hooks have fired for this particular parameter during "
            "this iteration.",
            i, r->names[i]);
    if (!r->marked_unused) { /* PyTorch marks the unused ones at the first hook */
        r->marked_unused = true;
        for (int u = 0; u < r->n; u++)
            if (r->unused[u] && !r->marked[u]) DDP_CHECK(mark(r, u, false));
    }
    if (r->marked[i]) return DDP_OK; /* it was counted as unused, yet reached: counted */
    return mark(r, i, true);
}

int reducer_next_launch(reducer *r) {
    if (!r->external || r->next_external >= r->next_bucket) return -1;
    return r->next_external++;
}

bool reducer_all_launched(const reducer *r) {
    return r->armed && r->next_bucket == r->nbuckets;
}

/* With find_unused_parameters: the used map summed over ranks (a parameter no rank used
 * keeps its .grad as it was, as PyTorch). */
static ddp_status reduce_used_map(reducer *r, float *map) {
    if (!r->o.find_unused_parameters) return DDP_OK;
    int64_t n = r->n;
    pg_buffer buf = {.data = map, .dt = DTYPE_FLOAT32, .ndim = 1, .sizes = {n}, .owner = NULL};
    return pg_all_reduce(r->g, &buf, COMM_SUM);
}

/* Writes the reduced bucket back into parameter i's .grad. */
static ddp_status copy_out(reducer *r, int i) {
    tensor *p = r->params[i];
    tensor *view = r->buckets[r->bucket_of[i]].views[r->slot_of[i]];
    if (r->o.gradient_as_bucket_view) {
        if (p->grad != view) {
            tensor_release(p->grad);
            p->grad = tensor_retain(view);
        }
        return DDP_OK;
    }
    tensor *g = p->grad;
    if (g && g->dtype == view->dtype && tensor_same_shape(g, view) && tensor_is_contiguous(g)) {
        if (!tensor_is_cpu(g)) return tensor_copy_(g, view); /* counts the write itself */
        memcpy(tensor_data(g), tensor_data(view), param_bytes(view));
        tensor_bump_version(g);
        return DDP_OK;
    }
    tensor *c;
    DDP_CHECK(tensor_clone(view, &c));
    tensor_release(p->grad);
    p->grad = c;
    return DDP_OK;
}

ddp_status reducer_finalize(reducer *r) {
    if (!r->armed) return DDP_OK;
    r->t_final_start = reducer_now();
    ddp_status s = wait_all(r);
    if (s == DDP_OK) s = reduce_used_map(r, r->used_map);
    for (int i = 0; s == DDP_OK && i < r->n; i++) {
        if (r->o.find_unused_parameters && r->used_map[i] == 0) continue;
        s = copy_out(r, i);
    }
    r->armed = false;
    if (s == DDP_OK && r->norder == r->n) r->order_complete = true;
    r->t_final_end = reducer_now();
    return s;
}

/* ---- rebuild, join ----------------------------------------------------------------------- */

ddp_status reducer_rebuild(reducer *r, bool *did) {
    *did = false;
    bool may = !r->o.find_unused_parameters;
    if (r->rebuilt || !may || !r->order_complete) return DDP_OK;
    int64_t n = r->n;
    int64_t *order = ddp_malloc(sizeof *order * (size_t)(n > 0 ? n : 1));
    if (!order) return DDP_FAIL(DDP_ERR_NOMEM, "DistributedDataParallel: out of memory");
    for (int i = 0; i < n; i++) order[i] = r->order[i];
    pg_buffer buf = {.data = order, .dt = DTYPE_INT64, .ndim = 1, .sizes = {n}, .owner = NULL};
    ddp_status s = pg_broadcast(r->g, &buf, pg_global_rank(r->g, 0)); /* rank 0's layout */
    int *idx = ddp_malloc(sizeof *idx * (size_t)(n > 0 ? n : 1));
    bool *seen = ddp_calloc((size_t)(n > 0 ? n : 1), sizeof *seen);
    if (s == DDP_OK && (!idx || !seen))
        s = DDP_FAIL(DDP_ERR_NOMEM, "DistributedDataParallel: out of memory");
    for (int i = 0; s == DDP_OK && i < n; i++) {
        if (order[i] < 0 || order[i] >= n || seen[order[i]])
            s = DDP_FAIL(DDP_ERR_STATE, "DistributedDataParallel: rank 0's gradient order is not "
                                        "a permutation of the parameters");
        else
            seen[order[i]] = true, idx[i] = (int)order[i];
    }
    /* the gradients living in bucket views move with them */
    tensor **keep = NULL;
    if (s == DDP_OK && r->o.gradient_as_bucket_view) {
        keep = ddp_calloc((size_t)(n > 0 ? n : 1), sizeof *keep);
        if (!keep) s = DDP_FAIL(DDP_ERR_NOMEM, "DistributedDataParallel: out of memory");
        for (int i = 0; keep && i < n; i++)
            if (r->params[i]->grad) keep[i] = tensor_retain(r->params[i]->grad);
    }
    if (s == DDP_OK) s = assign(r, idx, (int)n);
    for (int i = 0; keep && i < n; i++) {
        if (!keep[i]) continue;
        tensor *view = r->buckets[r->bucket_of[i]].views[r->slot_of[i]];
        if (s == DDP_OK) s = tensor_copy_(view, keep[i]);
        tensor_release(r->params[i]->grad);
        r->params[i]->grad = tensor_retain(view);
        tensor_release(keep[i]);
    }
    free(keep);
    free(order);
    free(idx);
    free(seen);
    if (s == DDP_OK) r->rebuilt = *did = true;
    return s;
}

void reducer_zero_buckets(reducer *r) {
    for (int b = 0; b < r->nbuckets; b++) tensor_fill_(r->buckets[b].buffer, 0.0);
}

ddp_status reducer_shadow_backward(reducer *r) {
    reducer_zero_buckets(r);
    ddp_status s = DDP_OK;
    for (int b = 0; b < r->nbuckets; b++) {
        r->buckets[b].t_ready = reducer_now();
        r->buckets[b].t_start = r->buckets[b].t_end = 0;
    }
    if (!r->external) {
        for (int b = 0; s == DDP_OK && b < r->nbuckets; b++) {
            pg_buffer buf;
            s = pg_buffer_from_tensor("DistributedDataParallel", r->buckets[b].buffer, &buf);
            if (s == DDP_OK) s = pg_all_reduce_async(r->g, &buf, COMM_SUM, &r->buckets[b].work);
        }
        ddp_status w = wait_all(r);
        if (s == DDP_OK) s = w;
    }
    if (s == DDP_OK && r->o.find_unused_parameters) {
        float *zeros = ddp_calloc((size_t)(r->n > 0 ? r->n : 1), sizeof *zeros);
        if (!zeros) return DDP_FAIL(DDP_ERR_NOMEM, "DistributedDataParallel: out of memory");
        s = reduce_used_map(r, zeros);
        free(zeros);
    }
    return s;
}

/* ---- the summary ------------------------------------------------------------------------- */

int reducer_bucket_count(const reducer *r) {
    return r->nbuckets;
}

tensor *reducer_bucket_buffer(const reducer *r, int b) {
    return b >= 0 && b < r->nbuckets ? r->buckets[b].buffer : NULL;
}

const int *reducer_bucket_params(const reducer *r, int b, int *n) {
    *n = b >= 0 && b < r->nbuckets ? r->buckets[b].n : 0;
    return *n ? r->buckets[b].params : NULL;
}

void reducer_bucket_times(const reducer *r, int b, double *ready, double *start, double *end) {
    const bucket *k = &r->buckets[b];
    *ready = k->t_ready;
    *start = k->t_start;
    *end = k->t_end;
}

void reducer_finalize_times(const reducer *r, double *start, double *end) {
    *start = r->t_final_start;
    *end = r->t_final_end;
}

bool reducer_rebuilt(const reducer *r) {
    return r->rebuilt;
}
