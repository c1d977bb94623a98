/* comm.h — the small interface every collective backend implements (Gloo in
 * comm_gloo.cc, NCCL in comm_nccl.c), in the style of Redis's ae_* backends: each
 * backend's init fills a `struct comm` whose `ops` table holds its functions, and the
 * comm_* calls below dispatch through it (comm.c), so the process group never names a
 * backend past the one call that creates the communicator.
 *
 * A communicator is one group of `size` processes that rendezvoused through the store
 * under a key prefix. Everything works on raw contiguous buffers: a pointer, a dtype and
 * an element count. Ranks here are ranks WITHIN the communicator. Every call is bounded
 * by the communicator's timeout and returns ddp_status; the backend never lets a C++
 * exception or an abort escape. A communicator whose call failed may be in an unknown
 * state: callers destroy it and create a new one. */
#ifndef DDP_DIST_COMM_H
#define DDP_DIST_COMM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/status.h"
#include "dist/store.h"
#include "tensor/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    COMM_SUM,
    COMM_AVG, /* SUM then divide by the group size; float dtypes only (as PyTorch) */
    COMM_PRODUCT,
    COMM_MIN,
    COMM_MAX,
} comm_reduce_op;

/* "SUM", "AVG", ... */
const char *comm_reduce_op_name(comm_reduce_op op);

/* Which backend a process group uses. */
typedef enum {
    COMM_BACKEND_GLOO,
    COMM_BACKEND_NCCL,
} comm_backend;

/* The one reader of backend names (the CLI, the driver, the rank runtime and
 * init_process_group all call it): "gloo" (and NULL, the default) or "nccl", as PyTorch
 * spells them. False for any other name; the caller says so in its own words. */
bool comm_backend_parse(const char *name, comm_backend *out);
/* "gloo" or "nccl". */
const char *comm_backend_str(comm_backend b);

typedef struct comm comm;
typedef struct comm_p2p comm_p2p;

/* One backend's functions (see the comm_* wrappers below for each one's contract). A
 * backend that lacks a call leaves it NULL and the wrapper fails with DDP_ERR_UNSUPPORTED
 * naming the backend. */
typedef struct {
    const char *name; /* "gloo", "nccl": for messages */
    void (*destroy)(comm *c);
    ddp_status (*all_reduce)(comm *c, void *buf, dtype dt, size_t count, comm_reduce_op op);
    ddp_status (*reduce)(comm *c, void *buf, dtype dt, size_t count, comm_reduce_op op, int root);
    ddp_status (*broadcast)(comm *c, void *buf, dtype dt, size_t count, int root);
    ddp_status (*all_gather)(comm *c, const void *in, void *out, dtype dt, size_t count);
    ddp_status (*all_gather_list)(comm *c, const void *in, void *const *outs, dtype dt,
                                  size_t count);
    ddp_status (*gather)(comm *c, const void *in, void *out, dtype dt, size_t count, int root);
    ddp_status (*scatter)(comm *c, const void *in, void *out, dtype dt, size_t count, int root);
    ddp_status (*barrier)(comm *c);
    ddp_status (*send_post)(comm *c, const void *buf, size_t nbytes, int peer, uint64_t tag,
                            comm_p2p **out);
    ddp_status (*recv_post)(comm *c, void *buf, size_t nbytes, int peer, uint64_t tag,
                            comm_p2p **out);
    ddp_status (*p2p_wait)(comm_p2p *p, int timeout_ms);
    void (*p2p_abort)(comm_p2p *p);
    void (*p2p_free)(comm_p2p *p);
    /* Wakes the collective running on c in another thread (see comm_abort); NULL when the
     * backend cannot (Gloo: a started collective ends only by finishing, a peer's death or
     * its timeout). */
    void (*abort)(comm *c);
} comm_ops;

/* The head of every backend's communicator and posted message (a backend's own struct
 * begins with it). */
struct comm {
    const comm_ops *ops;
};
struct comm_p2p {
    const comm_ops *ops;
};

typedef struct {
    store_client *store;    /* borrowed; must outlive the init call only */
    const char *prefix;     /* store key prefix of this group and generation, e.g. "pg/0/g1/" */
    const char *iface_host; /* address whose interface the transport binds (MASTER_ADDR's
                             * route); NULL: 127.0.0.1 */
    int rank;
    int size;
    double timeout_s;            /* bound on every operation */
    double rendezvous_timeout_s; /* bound on connecting (0: timeout_s) */
    /* NULL, or a store key that another rank sets (to the reason, in words) when it gave
     * up on this rendezvous: once present, connecting fails at once with its text
     * instead of waiting out rendezvous_timeout_s */
    const char *abort_key;
} comm_init_options;

/* Creates a communicator (rendezvous through the store). Fails with DDP_ERR_COMM (the
 * backend's message in words), DDP_ERR_TIMEOUT or DDP_ERR_INTERRUPTED. */
ddp_status comm_gloo_init(const comm_init_options *opts, comm **out);
/* The same over NCCL (comm_nccl.c, in a build with CUDA and NCCL; elsewhere it fails with
 * DDP_ERR_UNSUPPORTED saying what the build lacks). Buffers are device memory of the
 * current GPU. */
ddp_status comm_nccl_init(const comm_init_options *opts, comm **out);
/* Wraps a Gloo communicator of `size` ranks so that its buffers may be CUDA device memory,
 * staged through host memory (comm_staged.c). Takes inner (destroyed on failure). */
ddp_status comm_staged_new(comm *inner, int size, comm **out);
/* The NCCL library's version (ncclGetVersion), for --version and dist.nccl_version();
 * false in a build without NCCL. */
bool comm_nccl_version(int *major, int *minor, int *patch);
/* The backend's name ("gloo"); "none" for NULL. */
const char *comm_backend_name(const comm *c);
/* Frees the communicator and closes its connections. NULL-safe. */
void comm_destroy(comm *c);

/* In place on buf (count elements of dt). */
ddp_status comm_all_reduce(comm *c, void *buf, dtype dt, size_t count, comm_reduce_op op);
/* Reduces into buf on root; other ranks' buf is used as scratch: Gloo leaves partial
 * results in it (checked: 4 ranks, a SUM to rank 0 leaves rank 1 with the sum of ranks
 * 1..3), as PyTorch's Gloo backend does, which documents only dst's result. */
ddp_status comm_reduce(comm *c, void *buf, dtype dt, size_t count, comm_reduce_op op, int root);
ddp_status comm_broadcast(comm *c, void *buf, dtype dt, size_t count, int root);
/* out holds size * count elements, rank i's in at [i * count]. in may alias its slot. */
ddp_status comm_all_gather(comm *c, const void *in, void *out, dtype dt, size_t count);
/* outs[i] (count elements) receives rank i's in, for each of the size ranks: the list form
 * of all_gather, without a staging buffer. in may alias outs[rank]. */
ddp_status comm_all_gather_list(comm *c, const void *in, void *const *outs, dtype dt, size_t count);
/* out (size * count elements) is used on root only (NULL elsewhere). */
ddp_status comm_gather(comm *c, const void *in, void *out, dtype dt, size_t count, int root);
/* in (size * count elements) is read on root only (NULL elsewhere). */
ddp_status comm_scatter(comm *c, const void *in, void *out, dtype dt, size_t count, int root);
ddp_status comm_barrier(comm *c);
/* Whether c's backend can wake a collective in flight (comm_abort). */
bool comm_can_abort(const comm *c);
/* Wakes a collective running on c in another thread: it returns soon with
 * DDP_ERR_INTERRUPTED, and every later call on c fails at once, so c must be replaced.
 * Safe to call from any thread while c is alive; a no-op for a backend that cannot
 * (comm_can_abort false). */
void comm_abort(comm *c);

/* Point to point. A posted send/recv is completed by comm_p2p_wait; the buffer must stay
 * alive until then. tag separates concurrent messages between the same two ranks. */
ddp_status comm_send_post(comm *c, const void *buf, size_t nbytes, int peer, uint64_t tag,
                          comm_p2p **out);
ddp_status comm_recv_post(comm *c, void *buf, size_t nbytes, int peer, uint64_t tag,
                          comm_p2p **out);
/* Waits up to timeout_ms. On DDP_ERR_TIMEOUT Gloo has closed the pair (checked: "Application
 * timeout caused pair closure"), so the communicator must be replaced; that is why the
 * process group only enters a wait once the peer is known to have posted its side. */
ddp_status comm_p2p_wait(comm_p2p *p, int timeout_ms);
/* Wakes a comm_p2p_wait on p blocked in another thread: it returns DDP_ERR_COMM
 * ("aborted"). The message may still be in flight, so the communicator must be replaced,
 * as after a timeout (checked: once p is freed, the peer's late message is dropped and a
 * later receive on the same slot times out). Safe to call from any thread while p is
 * alive. */
void comm_p2p_abort(comm_p2p *p);
/* Aborts a pending wait and frees p. NULL-safe. */
void comm_p2p_free(comm_p2p *p);

#ifdef __cplusplus
}
#endif

#endif
