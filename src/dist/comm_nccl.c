/* comm_nccl.c — the NCCL backend of comm.h: collectives on CUDA buffers, for one rank per
 * GPU (built only when CMake finds CUDA and NCCL; comm.c answers for a build without).
 *
 * The communicator is created NON-BLOCKING (ncclConfig_t.blocking = 0): every NCCL call
 * returns at once, possibly with ncclInProgress, and this file polls
 * ncclCommGetAsyncError in short slices. That is what lets a stuck collective end: each
 * poll looks at the communicator's abort flag (comm_abort, set by the Lua thread on
 * Ctrl-C), at Ctrl-C itself and at the watchdog deadline, and on any of them calls
 * ncclCommAbort, after which every call on the communicator fails at once and the process
 * group replaces it (the group can then be created again). A blocking communicator would
 * sit inside NCCL with nothing able to wake it.
 *
 * Ordering: the tensor layer queues all its work on the legacy default stream. Each call
 * here makes its own stream wait for that work (an event), enqueues NCCL on the
 * communicator's stream and then waits for an event recorded after it, polling as above,
 * so the call returns with the result in place, and the tensor layer's later work is
 * after it. The unique id travels through the store under the group's key prefix. The
 * calls run on pg_worker.c's helper thread while a send or receive may be posted from the
 * Lua thread, so every call into NCCL that enqueues work holds the communicator's lock. */
#include <cuda_runtime_api.h>
#include <nccl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/clock.h"
#include "base/interrupt.h"
#include "dist/comm.h"
#include "tensor/device.h"

#define POLL_US 200 /* between two looks at NCCL's state while a call runs */

typedef struct {
    comm base;
    ncclComm_t nccl; /* NULL once aborted */
    int rank, size;
    int dev;               /* the GPU this rank's communicator runs on */
    cudaStream_t stream;   /* the communicator's stream */
    cudaEvent_t ready;     /* recorded on the default stream before each call */
    cudaEvent_t done;      /* recorded on the communicator's stream after it */
    float *barrier_buf;    /* one float of device memory for barrier */
    double timeout_s;      /* the watchdog */
    atomic_bool abort_req; /* comm_abort: wake the call that runs */
    pthread_mutex_t lock;  /* around every call that enqueues work */
    char why[256];         /* why the communicator was aborted, for later calls */
} nccl_comm;

typedef struct {
    comm_p2p base;
    nccl_comm *c;
    cudaEvent_t done;
    bool is_send;
    atomic_bool abort_req;
} nccl_p2p;

static const comm_ops nccl_ops;

static double now(void) {
    return (double)ddp_now_ms() / 1000.0;
}

static void nap(void) {
    struct timespec ts = {0, POLL_US * 1000L};
    nanosleep(&ts, NULL);
}

static ddp_status cuda_failed(const char *op, cudaError_t e) {
    return DDP_FAIL(DDP_ERR_COMM, "%s: CUDA error %s (%s)", op, cudaGetErrorName(e),
                    cudaGetErrorString(e));
}

/* Aborts the communicator (lock held or not needed) and says why in later calls. */
static void kill_comm(nccl_comm *c, const char *why) {
    if (!c->nccl) return;
    (void)ncclCommAbort(c->nccl);
    c->nccl = NULL;
    snprintf(c->why, sizeof c->why, "%s", why);
}

/* Why a call cannot start: the communicator was aborted. */
static ddp_status dead(const nccl_comm *c, const char *op) {
    return DDP_FAIL(DDP_ERR_COMM,
                    "%s: the NCCL communicator was aborted (%s); the group is "
                    "rebuilt at the next collective",
                    op, c->why);
}

/* Waits until `finished` says the work is done or NCCL's state leaves ncclInProgress,
 * watching the abort flags, Ctrl-C and the deadline; aborts the communicator on those.
 * finished(arg) may be NULL: then only NCCL's state is waited on. */
static ddp_status settle(nccl_comm *c, const char *op, double timeout_s, bool (*finished)(void *),
                         void *arg, atomic_bool *also) {
    double deadline = now() + timeout_s;
    for (;;) {
        if (!c->nccl) return dead(c, op);
        ncclResult_t async = ncclSuccess;
        ncclResult_t r = ncclCommGetAsyncError(c->nccl, &async);
        if (r != ncclSuccess) async = r;
        if (async != ncclSuccess && async != ncclInProgress) {
            char why[200];
            snprintf(why, sizeof why, "NCCL error: %s", ncclGetErrorString(async));
            kill_comm(c, why);
            return DDP_FAIL(DDP_ERR_COMM, "%s: %s (%s)", op, why, ncclGetLastError(NULL));
        }
        if (async == ncclSuccess && (!finished || finished(arg))) return DDP_OK;
        if (atomic_load(&c->abort_req) || (also && atomic_load(also)) || ddp_interrupt_pending()) {
            kill_comm(c, "interrupted (Ctrl-C)");
            return DDP_FAIL(DDP_ERR_INTERRUPTED,
                            "%s: interrupted (Ctrl-C) inside NCCL; the communicator was aborted "
                            "(ncclCommAbort) and the group's connections are rebuilt at the "
                            "next collective",
                            op);
        }
        if (now() > deadline) {
            kill_comm(c, "the watchdog's timeout");
            return DDP_FAIL(DDP_ERR_TIMEOUT,
                            "%s: NCCL did not finish within %.1f s (the collective timeout); a "
                            "rank may not have called it; the communicator was aborted",
                            op, timeout_s);
        }
        nap();
    }
}

static bool event_done(void *ev) {
    return cudaEventQuery((cudaEvent_t)ev) != cudaErrorNotReady;
}

static ncclDataType_t nccl_dtype(dtype dt, bool *ok) {
    *ok = true;
    switch (dt) {
    case DTYPE_FLOAT32:
        return ncclFloat32;
    case DTYPE_FLOAT64:
        return ncclFloat64;
    case DTYPE_INT64:
        return ncclInt64;
    case DTYPE_BOOL:
        break;
    }
    *ok = false;
    return ncclUint8;
}

static ncclRedOp_t nccl_op(comm_reduce_op op) {
    switch (op) {
    case COMM_SUM:
        return ncclSum;
    case COMM_AVG:
        return ncclAvg;
    case COMM_PRODUCT:
        return ncclProd;
    case COMM_MIN:
        return ncclMin;
    case COMM_MAX:
        break;
    }
    return ncclMax;
}

/* Starts a call: the communicator's GPU current on this thread, the lock held, the
 * communicator's stream behind the default stream's work. On failure the lock is not
 * held. */
static ddp_status begin(nccl_comm *c, const char *op) {
    pthread_mutex_lock(&c->lock);
    if (!c->nccl) {
        pthread_mutex_unlock(&c->lock);
        return dead(c, op);
    }
    cudaError_t e = cudaSetDevice(c->dev);
    if (e == cudaSuccess) e = cudaEventRecord(c->ready, cudaStreamLegacy);
    if (e == cudaSuccess) e = cudaStreamWaitEvent(c->stream, c->ready, 0);
    if (e != cudaSuccess) {
        pthread_mutex_unlock(&c->lock);
        return cuda_failed(op, e);
    }
    return DDP_OK;
}

/* Ends a call whose NCCL calls returned r: settles the enqueue, records the done event,
 * lets go of the lock and waits for the work. */
static ddp_status finish(nccl_comm *c, const char *op, ncclResult_t r) {
    ddp_status s = DDP_OK;
    if (r != ncclSuccess && r != ncclInProgress) {
        char why[200];
        snprintf(why, sizeof why, "NCCL error: %s", ncclGetErrorString(r));
        s = DDP_FAIL(DDP_ERR_COMM, "%s: %s (%s)", op, why, ncclGetLastError(c->nccl));
        kill_comm(c, why);
    }
    if (s == DDP_OK && r == ncclInProgress) s = settle(c, op, c->timeout_s, NULL, NULL, NULL);
    cudaError_t e = s == DDP_OK ? cudaEventRecord(c->done, c->stream) : cudaSuccess;
    pthread_mutex_unlock(&c->lock);
    if (s != DDP_OK) return s;
    if (e != cudaSuccess) return cuda_failed(op, e);
    return settle(c, op, c->timeout_s, event_done, c->done, NULL);
}

/* ---- init and destroy ------------------------------------------------------------------ */

/* Waits for the unique id rank 0 put under key, or for abort_key; bounded by timeout_s. */
static ddp_status fetch_id(const comm_init_options *o, const char *key, ncclUniqueId *id) {
    double deadline =
        now() + (o->rendezvous_timeout_s > 0 ? o->rendezvous_timeout_s : o->timeout_s);
    const char *keys[2] = {key, o->abort_key};
    int n = o->abort_key ? 2 : 1;
    for (;;) {
        char *v[2] = {NULL, NULL};
        size_t len[2] = {0, 0};
        DDP_CHECK(store_multi_wait(o->store, keys, 1, 200, v, len));
        if (n == 2 && !v[0]) DDP_CHECK(store_multi_wait(o->store, keys + 1, 1, 0, v + 1, len + 1));
        if (v[0]) {
            bool ok = len[0] == sizeof *id;
            if (ok) memcpy(id, v[0], sizeof *id);
            free(v[0]);
            free(v[1]);
            if (!ok) return DDP_FAIL(DDP_ERR_COMM, "nccl: the unique id in the store is malformed");
            return DDP_OK;
        }
        if (v[1]) {
            ddp_status s = DDP_FAIL(DDP_ERR_COMM, "%.*s", (int)len[1], v[1]);
            free(v[1]);
            return s;
        }
        if (ddp_interrupt_pending())
            return DDP_FAIL(DDP_ERR_INTERRUPTED,
                            "init_process_group: interrupted (Ctrl-C) while waiting for rank 0's "
                            "NCCL id");
        if (now() > deadline)
            return DDP_FAIL(DDP_ERR_TIMEOUT,
                            "init_process_group: rank 0's NCCL id did not arrive in the store");
    }
}

ddp_status comm_nccl_init(const comm_init_options *o, comm **out) {
    *out = NULL;
    if (o->size < 1 || o->rank < 0 || o->rank >= o->size)
        return DDP_FAIL(DDP_ERR_ARG, "nccl: rank %d is not in a group of %d", o->rank, o->size);
    int dev;
    DDP_CHECK(cuda_current_device(&dev));
    char key[256];
    snprintf(key, sizeof key, "%snccl_id", o->prefix ? o->prefix : "");
    ncclUniqueId id;
    if (o->rank == 0) {
        ncclResult_t r = ncclGetUniqueId(&id);
        if (r != ncclSuccess)
            return DDP_FAIL(DDP_ERR_COMM, "nccl: ncclGetUniqueId failed: %s",
                            ncclGetErrorString(r));
        DDP_CHECK(store_set(o->store, key, &id, sizeof id));
    } else {
        DDP_CHECK(fetch_id(o, key, &id));
    }
    nccl_comm *c = calloc(1, sizeof *c);
    if (!c) return DDP_FAIL(DDP_ERR_NOMEM, "nccl: out of memory");
    c->base.ops = &nccl_ops;
    c->rank = o->rank;
    c->size = o->size;
    c->dev = dev;
    c->timeout_s = o->timeout_s;
    atomic_init(&c->abort_req, false);
    pthread_mutex_init(&c->lock, NULL);
    snprintf(c->why, sizeof c->why, "never connected");
    cudaError_t e = cudaSetDevice(dev);
    if (e == cudaSuccess) e = cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking);
    if (e == cudaSuccess) e = cudaEventCreateWithFlags(&c->ready, cudaEventDisableTiming);
    if (e == cudaSuccess) e = cudaEventCreateWithFlags(&c->done, cudaEventDisableTiming);
    if (e == cudaSuccess) e = cudaMalloc((void **)&c->barrier_buf, sizeof(float));
    if (e != cudaSuccess) {
        ddp_status s = cuda_failed("init_process_group (NCCL)", e);
        comm_destroy(&c->base);
        return s;
    }
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0; /* so that a stuck call can be aborted (see the top) */
    ncclResult_t r = ncclCommInitRankConfig(&c->nccl, o->size, id, o->rank, &config);
    ddp_status s = DDP_OK;
    if (r != ncclSuccess && r != ncclInProgress) {
        s = DDP_FAIL(DDP_ERR_COMM, "init_process_group (NCCL): %s (%s)", ncclGetErrorString(r),
                     ncclGetLastError(NULL));
        if (c->nccl) kill_comm(c, "its init failed");
    } else {
        snprintf(c->why, sizeof c->why, "-");
        double rdv = o->rendezvous_timeout_s > 0 ? o->rendezvous_timeout_s : o->timeout_s;
        s = settle(c, "init_process_group (NCCL)", rdv, NULL, NULL, NULL);
    }
    if (s != DDP_OK) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", ddp_last_error());
        comm_destroy(&c->base);
        return ddp_fail_at(__FILE__, __LINE__, s, "%s", msg);
    }
    *out = &c->base;
    return DDP_OK;
}

static void nccl_destroy(comm *base) {
    nccl_comm *c = (nccl_comm *)base;
    (void)cudaSetDevice(c->dev);
    if (c->nccl) {
        /* a clean communicator is finalised; one in an unknown state is aborted */
        ncclResult_t async = ncclSuccess;
        if (ncclCommGetAsyncError(c->nccl, &async) == ncclSuccess && async == ncclSuccess)
            (void)ncclCommDestroy(c->nccl);
        else
            (void)ncclCommAbort(c->nccl);
    }
    if (c->barrier_buf) (void)cudaFree(c->barrier_buf);
    if (c->done) (void)cudaEventDestroy(c->done);
    if (c->ready) (void)cudaEventDestroy(c->ready);
    if (c->stream) (void)cudaStreamDestroy(c->stream);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

static void nccl_abort(comm *base) {
    atomic_store(&((nccl_comm *)base)->abort_req, true);
}

/* ---- collectives ---------------------------------------------------------------------- */

#define DTYPE_OR_FAIL(op, dt, var)                                                                 \
    bool var##_ok;                                                                                 \
    ncclDataType_t var = nccl_dtype(dt, &var##_ok);                                                \
    if (!var##_ok) return DDP_FAIL(DDP_ERR_ARG, "%s: dtype %s is not supported", op, dtype_name(dt))

static ddp_status nccl_all_reduce(comm *base, void *buf, dtype dt, size_t count,
                                  comm_reduce_op op) {
    nccl_comm *c = (nccl_comm *)base;
    DTYPE_OR_FAIL("all_reduce", dt, t);
    if (count == 0) return DDP_OK;
    DDP_CHECK(begin(c, "all_reduce"));
    return finish(c, "all_reduce",
                  ncclAllReduce(buf, buf, count, t, nccl_op(op), c->nccl, c->stream));
}

static ddp_status nccl_reduce(comm *base, void *buf, dtype dt, size_t count, comm_reduce_op op,
                              int root) {
    nccl_comm *c = (nccl_comm *)base;
    DTYPE_OR_FAIL("reduce", dt, t);
    if (count == 0) return DDP_OK;
    DDP_CHECK(begin(c, "reduce"));
    return finish(c, "reduce",
                  ncclReduce(buf, buf, count, t, nccl_op(op), root, c->nccl, c->stream));
}

static ddp_status nccl_broadcast(comm *base, void *buf, dtype dt, size_t count, int root) {
    nccl_comm *c = (nccl_comm *)base;
    DTYPE_OR_FAIL("broadcast", dt, t);
    if (count == 0) return DDP_OK;
    DDP_CHECK(begin(c, "broadcast"));
    return finish(c, "broadcast", ncclBroadcast(buf, buf, count, t, root, c->nccl, c->stream));
}

static ddp_status nccl_all_gather(comm *base, const void *in, void *out, dtype dt, size_t count) {
    nccl_comm *c = (nccl_comm *)base;
    DTYPE_OR_FAIL("all_gather", dt, t);
    if (count == 0) return DDP_OK;
    DDP_CHECK(begin(c, "all_gather"));
    return finish(c, "all_gather", ncclAllGather(in, out, count, t, c->nccl, c->stream));
}

/* Gathering into separate tensors: one broadcast from each rank into its tensor, grouped
 * so that NCCL runs them together (no staging buffer, as for Gloo). */
static ddp_status nccl_all_gather_list(comm *base, const void *in, void *const *outs, dtype dt,
                                       size_t count) {
    nccl_comm *c = (nccl_comm *)base;
    DTYPE_OR_FAIL("all_gather", dt, t);
    if (count == 0) return DDP_OK;
    DDP_CHECK(begin(c, "all_gather"));
    ncclResult_t r = ncclGroupStart();
    for (int i = 0; i < c->size && (r == ncclSuccess || r == ncclInProgress); i++)
        r = ncclBroadcast(i == c->rank ? in : outs[i], outs[i], count, t, i, c->nccl, c->stream);
    ncclResult_t end = ncclGroupEnd();
    return finish(c, "all_gather", r == ncclSuccess || r == ncclInProgress ? end : r);
}

/* gather and scatter: root exchanges a message with every other rank, in one group. */
static ddp_status gather_scatter(nccl_comm *c, const char *op, bool gather, const void *in,
                                 void *out, dtype dt, size_t count, int root) {
    DTYPE_OR_FAIL(op, dt, t);
    if (count == 0) return DDP_OK;
    size_t n = count * dtype_size(dt);
    DDP_CHECK(begin(c, op));
    ncclResult_t r = ncclSuccess;
    if (c->rank == root) {
        void *mine = gather ? (char *)out + (size_t)root * n : out;
        const void *src = gather ? in : (const char *)in + (size_t)root * n;
        cudaError_t e = mine != src
                            ? cudaMemcpyAsync(mine, src, n, cudaMemcpyDeviceToDevice, c->stream)
                            : cudaSuccess;
        if (e != cudaSuccess) {
            pthread_mutex_unlock(&c->lock);
            return cuda_failed(op, e);
        }
    }
    r = ncclGroupStart();
    for (int i = 0; i < c->size && (r == ncclSuccess || r == ncclInProgress); i++) {
        if (i == root && c->rank == root) continue;
        if (c->rank == root)
            r = gather
                    ? ncclRecv((char *)out + (size_t)i * n, count, t, i, c->nccl, c->stream)
                    : ncclSend((const char *)in + (size_t)i * n, count, t, i, c->nccl, c->stream);
        else if (i == root)
            r = gather ? ncclSend(in, count, t, root, c->nccl, c->stream)
                       : ncclRecv(out, count, t, root, c->nccl, c->stream);
    }
    ncclResult_t end = ncclGroupEnd();
    return finish(c, op, r == ncclSuccess || r == ncclInProgress ? end : r);
}

static ddp_status nccl_gather(comm *base, const void *in, void *out, dtype dt, size_t count,
                              int root) {
    return gather_scatter((nccl_comm *)base, "gather", true, in, out, dt, count, root);
}

static ddp_status nccl_scatter(comm *base, const void *in, void *out, dtype dt, size_t count,
                               int root) {
    return gather_scatter((nccl_comm *)base, "scatter", false, in, out, dt, count, root);
}

/* NCCL has no barrier: an all_reduce of one float does it, as PyTorch's does. */
static ddp_status nccl_barrier(comm *base) {
    nccl_comm *c = (nccl_comm *)base;
    DDP_CHECK(begin(c, "barrier"));
    return finish(
        c, "barrier",
        ncclAllReduce(c->barrier_buf, c->barrier_buf, 1, ncclFloat32, ncclSum, c->nccl, c->stream));
}

/* ---- point to point ------------------------------------------------------------------- */

/* NCCL messages between two ranks pair up in the order they were posted (it has no
 * tags); the process group posts a message only once its peer published the matching
 * side, in the same order on both. */
static ddp_status p2p_post(nccl_comm *c, void *buf, size_t nbytes, int peer, bool is_send,
                           comm_p2p **out) {
    const char *op = is_send ? "send" : "recv";
    if (peer < 0 || peer >= c->size || peer == c->rank)
        return DDP_FAIL(DDP_ERR_ARG, "%s: peer %d is not another rank of the group", op, peer);
    nccl_p2p *p = calloc(1, sizeof *p);
    if (!p) return DDP_FAIL(DDP_ERR_NOMEM, "%s: out of memory", op);
    p->base.ops = &nccl_ops;
    p->c = c;
    p->is_send = is_send;
    atomic_init(&p->abort_req, false);
    ddp_status s = begin(c, op);
    if (s != DDP_OK) {
        free(p);
        return s;
    }
    cudaError_t e = cudaEventCreateWithFlags(&p->done, cudaEventDisableTiming);
    ncclResult_t r = ncclSuccess;
    if (e == cudaSuccess && nbytes > 0)
        r = is_send ? ncclSend(buf, nbytes, ncclUint8, peer, c->nccl, c->stream)
                    : ncclRecv(buf, nbytes, ncclUint8, peer, c->nccl, c->stream);
    if (e == cudaSuccess && r == ncclInProgress)
        s = settle(c, op, c->timeout_s, NULL, NULL, NULL);
    else if (e == cudaSuccess && r != ncclSuccess)
        s = DDP_FAIL(DDP_ERR_COMM, "%s: NCCL error: %s", op, ncclGetErrorString(r));
    if (e == cudaSuccess && s == DDP_OK) e = cudaEventRecord(p->done, c->stream);
    pthread_mutex_unlock(&c->lock);
    if (s == DDP_OK && e != cudaSuccess) s = cuda_failed(op, e);
    if (s != DDP_OK) {
        if (p->done) (void)cudaEventDestroy(p->done);
        free(p);
        return s;
    }
    *out = &p->base;
    return DDP_OK;
}

static ddp_status nccl_send_post(comm *base, const void *buf, size_t nbytes, int peer, uint64_t tag,
                                 comm_p2p **out) {
    (void)tag;
    return p2p_post((nccl_comm *)base, (void *)buf, nbytes, peer, true, out);
}

static ddp_status nccl_recv_post(comm *base, void *buf, size_t nbytes, int peer, uint64_t tag,
                                 comm_p2p **out) {
    (void)tag;
    return p2p_post((nccl_comm *)base, buf, nbytes, peer, false, out);
}

static ddp_status nccl_p2p_wait(comm_p2p *base, int timeout_ms) {
    nccl_p2p *p = (nccl_p2p *)base;
    (void)cudaSetDevice(p->c->dev);
    return settle(p->c, p->is_send ? "send" : "recv", timeout_ms / 1000.0, event_done, p->done,
                  &p->abort_req);
}

static void nccl_p2p_abort(comm_p2p *base) {
    atomic_store(&((nccl_p2p *)base)->abort_req, true);
}

static void nccl_p2p_free(comm_p2p *base) {
    nccl_p2p *p = (nccl_p2p *)base;
    (void)cudaSetDevice(p->c->dev);
    (void)cudaEventDestroy(p->done);
    free(p);
}

static const comm_ops nccl_ops = {
    .name = "nccl",
    .destroy = nccl_destroy,
    .all_reduce = nccl_all_reduce,
    .reduce = nccl_reduce,
    .broadcast = nccl_broadcast,
    .all_gather = nccl_all_gather,
    .all_gather_list = nccl_all_gather_list,
    .gather = nccl_gather,
    .scatter = nccl_scatter,
    .barrier = nccl_barrier,
    .send_post = nccl_send_post,
    .recv_post = nccl_recv_post,
    .p2p_wait = nccl_p2p_wait,
    .p2p_abort = nccl_p2p_abort,
    .p2p_free = nccl_p2p_free,
    .abort = nccl_abort,
};

bool comm_nccl_version(int *major, int *minor, int *patch) {
    int v = 0;
    if (ncclGetVersion(&v) != ncclSuccess) return false;
    /* NCCL_VERSION_CODE: 1000 * major + 100 * minor + patch up to 2.8, then
     * 10000 * major + 100 * minor + patch */
    if (v >= 20900) {
        *major = v / 10000;
        *minor = v / 100 % 100;
    } else {
        *major = v / 1000;
        *minor = v / 100 % 10;
    }
    *patch = v % 100;
    return true;
}
