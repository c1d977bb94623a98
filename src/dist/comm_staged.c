/* comm_staged.c — Gloo with CUDA tensors: a communicator that wraps another (Gloo's) and
 * moves every buffer that lives in device memory through host memory, so that several
 * ranks can share one GPU (NCCL refuses two ranks on one GPU). Each call copies its
 * device inputs to a host block, runs the wrapped backend on host memory, and copies the
 * results back; buffers already in host memory pass straight through, so CPU tensors
 * cost one pointer query a buffer. Correct for every call and slow for big tensors (two
 * copies over PCIe a call), as PyTorch's Gloo backend is with CUDA tensors.
 *
 * The copies run on the calling thread (the process group's helper), synchronously on
 * the legacy default stream, so they are ordered after the kernels that produced the
 * data and before the ones that read the result. A posted receive keeps its host block
 * until its wait, where the data goes to the device. */
#include "dist/comm.h"

#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "tensor/device.h"

typedef struct {
    comm base;
    comm *inner;
    int size; /* the group's */
} staged_comm;

typedef struct {
    comm_p2p base;
    comm_p2p *inner;
    void *host;   /* the host block the wrapped backend sends from or receives into */
    void *device; /* a receive's device buffer (NULL for a send, or a host buffer) */
    size_t nbytes;
} staged_p2p;

static const comm_ops staged_ops;

static comm *inner_of(comm *c) {
    return ((staged_comm *)c)->inner;
}

/* A host stand-in for buf (n bytes): buf itself when it is host memory, else a new block,
 * filled from buf when `fill`. *block is what to free (NULL when buf itself). */
static ddp_status stage(const void *buf, size_t n, bool fill, const char *op, void **host,
                        void **block) {
    *block = NULL;
    *host = (void *)buf;
    if (!buf || !cuda_is_device_memory(buf)) return DDP_OK;
    *block = ddp_malloc(n ? n : 1);
    if (!*block)
        return DDP_FAIL(DDP_ERR_NOMEM, "%s: out of host memory staging a CUDA tensor for Gloo", op);
    *host = *block;
    if (fill) {
        ddp_status s = cuda_memcpy(*block, buf, n, op);
        if (s != DDP_OK) {
            free(*block);
            *block = NULL;
            return s;
        }
    }
    return DDP_OK;
}

/* Copies a staged result back to the device (when it was staged) and frees the block. */
static ddp_status unstage(void *buf, void *block, size_t n, ddp_status s, const char *op) {
    if (block && s == DDP_OK) s = cuda_memcpy(buf, block, n, op);
    free(block);
    return s;
}

static void staged_destroy(comm *c) {
    comm_destroy(inner_of(c));
    free(c);
}

static ddp_status staged_all_reduce(comm *c, void *buf, dtype dt, size_t count, comm_reduce_op op) {
    size_t n = count * dtype_size(dt);
    void *host, *block;
    DDP_CHECK(stage(buf, n, true, "all_reduce", &host, &block));
    ddp_status s = comm_all_reduce(inner_of(c), host, dt, count, op);
    return unstage(buf, block, n, s, "all_reduce");
}

static ddp_status staged_reduce(comm *c, void *buf, dtype dt, size_t count, comm_reduce_op op,
                                int root) {
    size_t n = count * dtype_size(dt);
    void *host, *block;
    DDP_CHECK(stage(buf, n, true, "reduce", &host, &block));
    ddp_status s = comm_reduce(inner_of(c), host, dt, count, op, root);
    return unstage(buf, block, n, s, "reduce");
}

static ddp_status staged_broadcast(comm *c, void *buf, dtype dt, size_t count, int root) {
    size_t n = count * dtype_size(dt);
    void *host, *block;
    DDP_CHECK(stage(buf, n, true, "broadcast", &host, &block));
    ddp_status s = comm_broadcast(inner_of(c), host, dt, count, root);
    return unstage(buf, block, n, s, "broadcast");
}

/* A call with an input of in_n bytes and an output of out_n bytes (either may be NULL). */
typedef ddp_status (*in_out_fn)(comm *c, const void *in, void *out, dtype dt, size_t count,
                                int root);

static ddp_status staged_in_out(comm *c, in_out_fn fn, const char *op, const void *in, size_t in_n,
                                void *out, size_t out_n, dtype dt, size_t count, int root) {
    void *hin, *bin, *hout, *bout;
    DDP_CHECK(stage(in, in_n, true, op, &hin, &bin));
    ddp_status s = stage(out, out_n, false, op, &hout, &bout);
    if (s == DDP_OK) s = fn(inner_of(c), hin, hout, dt, count, root);
    free(bin);
    return out ? unstage(out, bout, out_n, s, op) : s;
}

static ddp_status all_gather_fn(comm *c, const void *in, void *out, dtype dt, size_t count,
                                int root) {
    (void)root;
    return comm_all_gather(c, in, out, dt, count);
}

static ddp_status staged_all_gather(comm *c, const void *in, void *out, dtype dt, size_t count) {
    size_t n = count * dtype_size(dt);
    int size = ((staged_comm *)c)->size;
    return staged_in_out(c, all_gather_fn, "all_gather", in, n, out, n * (size_t)size, dt, count,
                         0);
}

static ddp_status staged_gather(comm *c, const void *in, void *out, dtype dt, size_t count,
                                int root) {
    size_t n = count * dtype_size(dt);
    int size = ((staged_comm *)c)->size;
    return staged_in_out(c, comm_gather, "gather", in, n, out, n * (size_t)size, dt, count, root);
}

static ddp_status staged_scatter(comm *c, const void *in, void *out, dtype dt, size_t count,
                                 int root) {
    size_t n = count * dtype_size(dt);
    int size = ((staged_comm *)c)->size;
    return staged_in_out(c, comm_scatter, "scatter", in, n * (size_t)size, out, n, dt, count, root);
}

static ddp_status staged_all_gather_list(comm *c, const void *in, void *const *outs, dtype dt,
                                         size_t count) {
    size_t n = count * dtype_size(dt);
    int size = ((staged_comm *)c)->size;
    void **hosts = ddp_calloc((size_t)size, sizeof *hosts);
    void **blocks = ddp_calloc((size_t)size, sizeof *blocks);
    void *hin = NULL, *bin = NULL;
    ddp_status s =
        hosts && blocks ? DDP_OK : DDP_FAIL(DDP_ERR_NOMEM, "all_gather: out of host memory");
    if (s == DDP_OK) s = stage(in, n, true, "all_gather", &hin, &bin);
    for (int i = 0; s == DDP_OK && i < size; i++)
        s = stage(outs[i], n, false, "all_gather", &hosts[i], &blocks[i]);
    if (s == DDP_OK) s = comm_all_gather_list(inner_of(c), hin, (void *const *)hosts, dt, count);
    for (int i = 0; blocks && i < size; i++) s = unstage(outs[i], blocks[i], n, s, "all_gather");
    free(bin);
    free(hosts);
    free(blocks);
    return s;
}

static ddp_status staged_barrier(comm *c) {
    return comm_barrier(inner_of(c));
}

static ddp_status wrap_p2p(comm_p2p *inner, void *host, void *dev_buf, size_t nbytes,
                           comm_p2p **out) {
    staged_p2p *p = ddp_malloc(sizeof *p);
    if (!p) {
        comm_p2p_free(inner);
        free(host);
        return DDP_FAIL(DDP_ERR_NOMEM, "send/recv: out of host memory");
    }
    p->base.ops = &staged_ops;
    p->inner = inner;
    p->host = host;
    p->device = dev_buf;
    p->nbytes = nbytes;
    *out = &p->base;
    return DDP_OK;
}

static ddp_status staged_send_post(comm *c, const void *buf, size_t nbytes, int peer, uint64_t tag,
                                   comm_p2p **out) {
    *out = NULL;
    void *host, *block;
    DDP_CHECK(stage(buf, nbytes, true, "send", &host, &block));
    comm_p2p *inner;
    ddp_status s = comm_send_post(inner_of(c), host, nbytes, peer, tag, &inner);
    if (s != DDP_OK) {
        free(block);
        return s;
    }
    return wrap_p2p(inner, block, NULL, nbytes, out);
}

static ddp_status staged_recv_post(comm *c, void *buf, size_t nbytes, int peer, uint64_t tag,
                                   comm_p2p **out) {
    *out = NULL;
    void *host, *block;
    DDP_CHECK(stage(buf, nbytes, false, "recv", &host, &block));
    comm_p2p *inner;
    ddp_status s = comm_recv_post(inner_of(c), host, nbytes, peer, tag, &inner);
    if (s != DDP_OK) {
        free(block);
        return s;
    }
    return wrap_p2p(inner, block, block ? buf : NULL, nbytes, out);
}

static ddp_status staged_p2p_wait(comm_p2p *p, int timeout_ms) {
    staged_p2p *sp = (staged_p2p *)p;
    ddp_status s = comm_p2p_wait(sp->inner, timeout_ms);
    if (s == DDP_OK && sp->device) {
        s = cuda_memcpy(sp->device, sp->host, sp->nbytes, "recv");
        sp->device = NULL; /* delivered once */
    }
    return s;
}

static void staged_p2p_abort(comm_p2p *p) {
    comm_p2p_abort(((staged_p2p *)p)->inner);
}

static void staged_p2p_free(comm_p2p *p) {
    staged_p2p *sp = (staged_p2p *)p;
    comm_p2p_free(sp->inner); /* first: the backend lets go of the host block */
    free(sp->host);
    free(sp);
}

static const comm_ops staged_ops = {
    .name = "gloo",
    .destroy = staged_destroy,
    .all_reduce = staged_all_reduce,
    .reduce = staged_reduce,
    .broadcast = staged_broadcast,
    .all_gather = staged_all_gather,
    .all_gather_list = staged_all_gather_list,
    .gather = staged_gather,
    .scatter = staged_scatter,
    .barrier = staged_barrier,
    .send_post = staged_send_post,
    .recv_post = staged_recv_post,
    .p2p_wait = staged_p2p_wait,
    .p2p_abort = staged_p2p_abort,
    .p2p_free = staged_p2p_free,
    .abort = NULL, /* Gloo cannot wake a collective in flight (comm.h), nor can this */
};

ddp_status comm_staged_new(comm *inner, int size, comm **out) {
    *out = NULL;
    staged_comm *c = ddp_malloc(sizeof *c);
    if (!c) {
        comm_destroy(inner);
        return DDP_FAIL(DDP_ERR_NOMEM, "init_process_group: out of host memory");
    }
    c->base.ops = &staged_ops;
    c->inner = inner;
    c->size = size;
    *out = &c->base;
    return DDP_OK;
}
