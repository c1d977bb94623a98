/* comm.c — the comm_* calls of comm.h, dispatched through the communicator's table of
 * operations, so that the process group calls one interface whatever the backend. A
 * NULL entry (a call the backend lacks) fails in words naming the backend and the call. */
#include "build_config.h"
#include "dist/comm.h"

#include <string.h>

const char *comm_reduce_op_name(comm_reduce_op op) {
    switch (op) {
    case COMM_SUM:
        return "SUM";
    case COMM_AVG:
        return "AVG";
    case COMM_PRODUCT:
        return "PRODUCT";
    case COMM_MIN:
        return "MIN";
    case COMM_MAX:
        return "MAX";
    }
    return "?";
}

bool comm_backend_parse(const char *name, comm_backend *out) {
    if (!name || strcmp(name, "gloo") == 0) {
        *out = COMM_BACKEND_GLOO;
        return true;
    }
    if (strcmp(name, "nccl") == 0) {
        *out = COMM_BACKEND_NCCL;
        return true;
    }
    return false;
}

const char *comm_backend_str(comm_backend b) {
    return b == COMM_BACKEND_NCCL ? "nccl" : "gloo";
}

const char *comm_backend_name(const comm *c) {
    return c ? c->ops->name : "none";
}

#define MISSING(c, call)                                                                           \
    DDP_FAIL(DDP_ERR_UNSUPPORTED, "%s: the %s backend has no %s", call, (c)->ops->name, call)

void comm_destroy(comm *c) {
    if (c) c->ops->destroy(c);
}

ddp_status comm_all_reduce(comm *c, void *buf, dtype dt, size_t count, comm_reduce_op op) {
    if (!c->ops->all_reduce) return MISSING(c, "all_reduce");
    return c->ops->all_reduce(c, buf, dt, count, op);
}

ddp_status comm_reduce(comm *c, void *buf, dtype dt, size_t count, comm_reduce_op op, int root) {
    if (!c->ops->reduce) return MISSING(c, "reduce");
    return c->ops->reduce(c, buf, dt, count, op, root);
}

ddp_status comm_broadcast(comm *c, void *buf, dtype dt, size_t count, int root) {
    if (!c->ops->broadcast) return MISSING(c, "broadcast");
    return c->ops->broadcast(c, buf, dt, count, root);
}

ddp_status comm_all_gather(comm *c, const void *in, void *out, dtype dt, size_t count) {
    if (!c->ops->all_gather) return MISSING(c, "all_gather");
    return c->ops->all_gather(c, in, out, dt, count);
}

ddp_status comm_all_gather_list(comm *c, const void *in, void *const *outs, dtype dt,
                                size_t count) {
    if (!c->ops->all_gather_list) return MISSING(c, "all_gather");
    return c->ops->all_gather_list(c, in, outs, dt, count);
}

ddp_status comm_gather(comm *c, const void *in, void *out, dtype dt, size_t count, int root) {
    if (!c->ops->gather) return MISSING(c, "gather");
    return c->ops->gather(c, in, out, dt, count, root);
}

ddp_status comm_scatter(comm *c, const void *in, void *out, dtype dt, size_t count, int root) {
    if (!c->ops->scatter) return MISSING(c, "scatter");
    return c->ops->scatter(c, in, out, dt, count, root);
}

ddp_status comm_barrier(comm *c) {
    if (!c->ops->barrier) return MISSING(c, "barrier");
    return c->ops->barrier(c);
}

bool comm_can_abort(const comm *c) {
    return c && c->ops->abort;
}

void comm_abort(comm *c) {
    if (comm_can_abort(c)) c->ops->abort(c);
}

ddp_status comm_send_post(comm *c, const void *buf, size_t nbytes, int peer, uint64_t tag,
                          comm_p2p **out) {
    *out = NULL;
    if (!c->ops->send_post) return MISSING(c, "send");
    return c->ops->send_post(c, buf, nbytes, peer, tag, out);
}

ddp_status comm_recv_post(comm *c, void *buf, size_t nbytes, int peer, uint64_t tag,
                          comm_p2p **out) {
    *out = NULL;
    if (!c->ops->recv_post) return MISSING(c, "recv");
    return c->ops->recv_post(c, buf, nbytes, peer, tag, out);
}

ddp_status comm_p2p_wait(comm_p2p *p, int timeout_ms) {
    return p->ops->p2p_wait(p, timeout_ms);
}

void comm_p2p_abort(comm_p2p *p) {
    if (p->ops->p2p_abort) p->ops->p2p_abort(p);
}

void comm_p2p_free(comm_p2p *p) {
    if (p) p->ops->p2p_free(p);
}

#if !DDP_HAVE_NCCL
bool comm_nccl_version(int *major, int *minor, int *patch) {
    *major = *minor = *patch = 0;
    return false;
}

ddp_status comm_nccl_init(const comm_init_options *opts, comm **out) {
    (void)opts;
    *out = NULL;
    return DDP_FAIL(
        DDP_ERR_UNSUPPORTED,
        DDP_HAVE_CUDA ? "init_process_group: this build has no NCCL; use backend=\"gloo\""
                      : "init_process_group: this build has no CUDA support; use backend=\"gloo\"");
}
#endif
