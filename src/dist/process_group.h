/* process_group.h — torch.distributed's process groups in C: the default group of this
 * process, subgroups, and the collectives with their mismatch checks.
 *
 * A process group wraps a communicator (comm.h) and a store client. Before entering the
 * backend, every collective publishes a fingerprint (sequence number, op, dtype, shape,
 * root, reduce op) in the store and compares it with every other member's; on a mismatch
 * every rank fails with the same message naming the ranks and what each called. A rank
 * that ends its chunk without calling publishes that fact (pg_chunk_end), so the others
 * can say "called nothing and finished the chunk" instead of hanging. Every wait is
 * bounded by the collective timeout (DDPLAB_COLLECTIVE_TIMEOUT seconds, default 5) and
 * checks ddp_interrupt_pending(). After any failure inside the backend the group's
 * communicator is replaced, so the group stays usable.
 *
 * Ranks in the API are GLOBAL ranks (as in PyTorch: `src`, `dst`, `peer`), translated to
 * group ranks inside. One process has at most one default group at a time; groups are
 * refcounted because Lua values hold them. Single-threaded: call from the Lua thread.
 * The backend call itself runs on a helper thread while the caller waits (pg_worker.c),
 * so that Ctrl-C returns at once even from inside Gloo (DDP_ERR_INTERRUPTED); the call
 * then finishes in the background and the group's connections are rebuilt. */
#ifndef DDP_DIST_PROCESS_GROUP_H
#define DDP_DIST_PROCESS_GROUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/status.h"
#include "dist/comm.h"
#include "tensor/tensor.h"

typedef struct process_group process_group;

typedef struct {
    const char *backend;     /* "gloo" (NULL = "gloo") or "nccl" (comm_backend_parse) */
    const char *init_method; /* "env://" (NULL), "tcp://host:port", "file:///path" */
    int rank;                /* -1: from RANK */
    int world_size;          /* -1: from WORLD_SIZE */
    double timeout_s;        /* rendezvous timeout; <= 0: 60 s (PyTorch: 30 min) */
} pg_init_options;

/* A contiguous buffer, where it lives, and the shape it stands for (for fingerprints and
 * messages). A zeroed `dev` is the CPU. */
typedef struct {
    void *data;
    device dev; /* the CPU, or the GPU that holds data (for the NCCL backend) */
    dtype dt;
    int ndim;
    int64_t sizes[TENSOR_MAX_DIMS];
    /* the tensor whose memory data is (borrowed; NULL for a raw buffer): a collective
     * interrupted inside the backend retains it until the backend lets go of data */
    tensor *owner;
} pg_buffer;

/* Fills b from a tensor (a CPU or a CUDA one: each collective checks that its group's
 * backend takes that device); DDP_ERR_ARG naming `op` when t is not contiguous or not of a
 * dtype collectives support (float32, float64, int64). */
ddp_status pg_buffer_from_tensor(const char *op, const tensor *t, pg_buffer *b);
int64_t pg_buffer_numel(const pg_buffer *b);

/* ---- the default group ---------------------------------------------------------- */

/* init_process_group. Fails with DDP_ERR_STATE when already initialised (PyTorch's
 * words), DDP_ERR_UNSUPPORTED for nccl without NCCL, DDP_ERR_ARG for bad options or
 * environment, DDP_ERR_TIMEOUT / DDP_ERR_INTERRUPTED / DDP_ERR_COMM from rendezvous. */
ddp_status pg_init(const pg_init_options *opts);
bool pg_is_initialized(void);
/* The default group (borrowed), or NULL with DDP_ERR_STATE and PyTorch's message. */
ddp_status pg_default(process_group **out);
/* Destroys the default group and every subgroup's communicator; a later pg_init works.
 * Lua handles to old groups stay valid objects that refuse collectives. */
ddp_status pg_destroy(void);

/* ---- groups --------------------------------------------------------------------- */

/* new_group(ranks): collective over the default group (every rank must call it, as in
 * PyTorch). n == 0 means all ranks. Non-members get a group that refuses collectives
 * (PyTorch's GroupMember.NON_GROUP_MEMBER). *out is a new reference. */
ddp_status pg_new_group(const int *ranks, int n, process_group **out);
process_group *pg_retain(process_group *g);
void pg_release(process_group *g); /* NULL-safe */
bool pg_is_member(const process_group *g);
/* This process's rank in g (-1 for a non-member) and g's size. */
int pg_rank(const process_group *g);
int pg_size(const process_group *g);
/* The global rank of group rank r. */
int pg_global_rank(const process_group *g, int r);
const char *pg_backend(const process_group *g);
/* False once destroy_process_group ran after g was made. */
bool pg_is_alive(const process_group *g);

/* ---- collectives (g NULL = the default group) ----------------------------------- */

ddp_status pg_broadcast(process_group *g, pg_buffer *buf, int src);
ddp_status pg_all_reduce(process_group *g, pg_buffer *buf, comm_reduce_op op);
typedef struct pg_work pg_work;
/* all_reduce with async_op=true: checks the call across ranks (as pg_all_reduce does,
 * so a mismatch fails here), queues the backend call on the helper thread and returns a
 * pending work at once (*out; pg_work_wait, pg_work_is_completed, pg_work_free). Calls
 * queued this way, and blocking collectives called after them, run in the order called.
 * buf->data must stay alive until pg_work_wait returned or pg_work_free (which waits for
 * a call still running). */
ddp_status pg_all_reduce_async(process_group *g, pg_buffer *buf, comm_reduce_op op, pg_work **out);
ddp_status pg_reduce(process_group *g, pg_buffer *buf, int dst, comm_reduce_op op);
/* outs[size]: each like in. */
ddp_status pg_all_gather(process_group *g, pg_buffer *outs, int nout, const pg_buffer *in);
/* out: size x in along dim 0 (numel = size * numel(in)). */
ddp_status pg_all_gather_into(process_group *g, pg_buffer *out, const pg_buffer *in);
/* ins[size], each like out. */
ddp_status pg_reduce_scatter(process_group *g, pg_buffer *out, const pg_buffer *ins, int nin,
                             comm_reduce_op op);
/* outs[size] on dst (outs NULL, nout 0 elsewhere). */
ddp_status pg_gather(process_group *g, const pg_buffer *in, pg_buffer *outs, int nout, int dst);
/* ins[size] on src (NULL elsewhere). */
ddp_status pg_scatter(process_group *g, pg_buffer *out, const pg_buffer *ins, int nin, int src);
ddp_status pg_barrier(process_group *g);
/* monitored_barrier: a barrier whose wait is bounded by timeout_s (<= 0: the collective
 * timeout) and always cross-checked, even under --no-collective-check, so that a rank
 * that does not arrive is named: DDP_ERR_TIMEOUT "monitored_barrier: ... rank 1 did not
 * arrive within 2 s ...". */
ddp_status pg_monitored_barrier(process_group *g, double timeout_s);

/* Point to point, blocking. */
ddp_status pg_send(process_group *g, const pg_buffer *buf, int dst);
ddp_status pg_recv(process_group *g, pg_buffer *buf, int src);

/* Asynchronous point to point: the buffer must stay alive until pg_work_wait returned
 * (the Lua work object holds the tensor). Posting publishes the fingerprint only; data
 * moves when some pg_work_wait runs (it first posts every pending op of this process in
 * order, so a ring of isend/irecv cannot deadlock). */
ddp_status pg_isend(process_group *g, const pg_buffer *buf, int dst, pg_work **out);
ddp_status pg_irecv(process_group *g, pg_buffer *buf, int src, pg_work **out);
ddp_status pg_work_wait(pg_work *w);
/* src of pg_irecv / pg_recv meaning "from any rank of the group" (PyTorch's src=None):
 * the sender is the first rank whose next send to this one is posted (it needs the
 * collective check, which publishes every send). */
#define PG_ANY_SOURCE (-1)
/* The global rank w exchanges with: for a recv from any rank, its sender once known
 * (after pg_work_wait), else -1. */
int pg_work_source(const pg_work *w);
bool pg_work_is_completed(const pg_work *w);
/* When an asynchronous collective's backend call started and ended on the helper thread
 * (CLOCK_MONOTONIC seconds), 0 while it runs and for point-to-point works. */
void pg_work_times(const pg_work *w, double *start, double *end);
/* NULL-safe; a pending isend/irecv is cancelled, a queued all_reduce waited for */
void pg_work_free(pg_work *w);

/* ---- hooks for the rank runtime ------------------------------------------------- */

/* Called around every chunk the rank runs (chunk ids increase). pg_chunk_end publishes
 * "rank r finished chunk c after k collectives" for every live group. Cannot fail. */
void pg_chunk_begin(uint64_t chunk_id);
void pg_chunk_end(void);
/* Called right after pg_chunk_begin with which global ranks run this chunk (running[r]
 * for r < world_size; the REPL's :on sends a chunk to some ranks only). A collective whose
 * group holds a rank that does not run the chunk then fails at once, on the calling
 * ranks, instead of waiting for the watchdog; so do a send/recv to such a rank,
 * new_group and init_process_group. Not calling it (or running NULL) means every rank
 * runs the chunk. The array is copied. Cannot fail (out of memory: treated as all). */
void pg_chunk_set_participants(const bool *running, int world_size);
/* "in all_reduce #3 float32[4]" while inside a collective (#3: the third collective this
 * chunk called on the group, the number every rank's messages use), else NULL. Safe to call from
 * another thread (the text is copied under a lock into a static buffer). */
const char *pg_current_activity(void);
/* The last non-empty activity set in this process ("in barrier #1"), kept after the
 * collective ended (so a collective too short for anyone to see still shows as the last),
 * or NULL before any. Thread-safe as pg_current_activity (a buffer of its own). */
const char *pg_last_activity(void);
/* How many collectives interrupted by Ctrl-C inside the backend are still finishing on
 * their helper threads (each holds its tensors and old connections until it returns;
 * they are freed by the next collective, pg_chunk_end or pg_destroy after that). */
int pg_abandoned_calls(void);

#endif
