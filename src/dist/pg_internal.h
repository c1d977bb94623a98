/* pg_internal.h — what the process-group files share (process_group.c: groups and
 * collectives; pg_p2p.c: point to point; pg_world.c: init and rendezvous). Private to
 * src/dist. */
#ifndef DDP_DIST_PG_INTERNAL_H
#define DDP_DIST_PG_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "dist/comm.h"
#include "dist/process_group.h"
#include "dist/store.h"

struct process_group {
    int refcount;
    uint64_t world_gen; /* the init generation that made it (the store's numbering) */
    uint64_t epoch;     /* pg_W.epoch when it was made: alive only in that world */
    int id;             /* 0: the default group; then one per new_group call */
    int size;
    int *ranks;           /* global rank of each group rank */
    int my;               /* this process's group rank, -1 for a non-member */
    comm_backend backend; /* the world's (pg_W.backend), recorded once at creation */
    comm *comm;           /* NULL for non-members and groups of one */
    int comm_gen;         /* bumped each time a failed communicator is replaced */
    bool broken;          /* the last backend call failed: replace before the next */
    uint64_t chunk_seen;  /* the chunk the counters below belong to */
    uint64_t chunk_seq;   /* collectives called in that chunk (fingerprint sequence, and
                           * "collective #k of this chunk" in messages) */
    uint64_t *p2p_sent;   /* per group rank: sends to it in that chunk */
    uint64_t *p2p_recv;   /* per group rank: receives from it in that chunk */
    /* scratch for the collectives that go through a staging buffer (all_gather into a
     * list, reduce_scatter, gather, scatter): kept for the chunk, so that a loop does not
     * pay malloc and fresh page faults on every call; freed when the chunk ends */
    void *scratch;
    size_t scratch_cap;
    struct process_group *next_live;
};

typedef struct {
    bool initialized;
    uint64_t gen;
    /* counts this process's successful inits: unlike gen, which the store hands out and
     * a fresh store (another init_method) starts from 1 again, it never repeats */
    uint64_t epoch;
    int rank, size;
    comm_backend backend; /* init_process_group's, parsed once there */
    char host[256];       /* the store's host (127.0.0.1 for file://): Gloo binds its route */
    store_client *store;
    process_group *default_group;
    process_group *live; /* every group of this generation */
    int next_group_id;
    double timeout;            /* the collective watchdog, seconds */
    double rendezvous_timeout; /* init_process_group's timeout */
    bool check;                /* fingerprint exchange on */
    uint64_t chunk_id;
    /* which global ranks run the current chunk (pg_chunk_set_participants); all of them
     * while running_n is 0 */
    bool *running;
    int running_n;
} pg_world;

extern pg_world pg_W;

/* DDP_ERR_ARG naming op when b's device is not one the backend takes (Gloo: the CPU;
 * NCCL: a GPU). */
ddp_status pg_buffer_check_device(const char *op, comm_backend backend, const pg_buffer *b);
/* Copies n bytes from src's memory to dst's, either of them on the CPU or a GPU (the
 * tensor layer's copy for a GPU). */
ddp_status pg_buffer_copy(const pg_buffer *dst, const pg_buffer *src, size_t n);
/* Sets the activity text ("in all_reduce #3 float32[4]"); NULL clears it. */
void pg_set_activity(const char *text);
/* Seconds on the monotonic clock (base/clock.h), for deadlines. */
double pg_now(void);
/* The store keys of the collective check: member m's fingerprint of collective #seq
 * (0-based) of g in the current chunk, and the marker that m finished chunk `chunk` (its
 * value: how many collectives of g it called). */
void pg_key_fp(char *out, size_t len, const process_group *g, uint64_t seq, int member);
void pg_key_done(char *out, size_t len, const process_group *g, uint64_t chunk, int member);
/* Resets the per-chunk counters of g when a new chunk began. */
void pg_sync_chunk(process_group *g);
/* Makes (or re-makes, after a failure) g's communicator. */
ddp_status pg_connect(process_group *g, double rendezvous_timeout);
/* Checks that g may run a collective (initialised, alive, member) and replaces a broken
 * communicator. `op` names the call for messages. */
ddp_status pg_ready(process_group **g, const char *op);
/* The fingerprint exchange of a collective without a backend call, over g (with the
 * check on): every member must call it with the same fp, or all fail alike. */
ddp_status pg_agree(process_group *g, const char *op, const char *fp);
/* Fails at once (DDP_ERR_STATE) when one of the n global ranks does not run the current
 * chunk, naming them, the ranks it was sent to, and `why` a rank that is not running
 * matters; DDP_OK when every one runs it (or the runtime did not say). */
ddp_status pg_check_running(const char *op, const int *ranks, int n, const char *why);
/* Posts, without waiting, every queued isend/irecv whose peer has published its matching
 * side (every one with the check off): called while this rank waits in a collective, so
 * that the collective does not hold up data a peer waits for (PyTorch's isend starts at
 * once; here data moves once both sides are posted). Failures stay in the works. */
void pg_p2p_pump(void);
/* The group rank of global rank r in g, or -1. */
int pg_group_rank_of(const process_group *g, int global);
/* Frees g's scratch buffer (pg_chunk_end, pg_group_clear). */
void pg_scratch_release(process_group *g);
/* Frees a group's communicator and arrays, not the struct. */
void pg_group_clear(process_group *g);
/* Marks g's communicator for replacement after a failed backend call. With the check
 * off it also publishes the generation to rebuild to, so that the other members, which
 * may never see a failure themselves, rebuild too at their next chunk (pg_ready). */
void pg_mark_broken(process_group *g);
/* With the check off: marks g broken when another member published a newer generation
 * (best effort: one store round trip; a failure leaves g as it is). */
void pg_adopt_rebuild(process_group *g);

/* ---- backend calls on a helper thread (pg_worker.c) ----------------------------- */

typedef enum {
    PG_CALL_ALL_REDUCE,
    PG_CALL_REDUCE,
    PG_CALL_BROADCAST,
    PG_CALL_ALL_GATHER,
    PG_CALL_ALL_GATHER_LIST,
    PG_CALL_GATHER,
    PG_CALL_SCATTER,
    PG_CALL_BARRIER,
    PG_CALL_P2P_WAIT,
} pg_call_kind;

/* One comm.h call with its arguments (see comm.h for each). */
typedef struct {
    pg_call_kind kind;
    const char *op; /* the collective's name, for messages */
    const void *in;
    void *out;         /* the in-place buffer of all_reduce, reduce and broadcast */
    void *const *outs; /* all_gather into a list: one buffer per group rank */
    dtype dt;
    size_t count;
    comm_reduce_op rop;
    int root;
    comm_p2p *p2p; /* PG_CALL_P2P_WAIT: the posted message and how long to wait */
    int timeout_ms;
} pg_call;

/* Runs call on g->comm on the helper thread while this (the Lua) thread waits, looking
 * at ddp_interrupt_pending() every 50 ms. Returns the backend's status; on Ctrl-C it
 * returns DDP_ERR_INTERRUPTED at once and leaves the call to finish (or time out) on the
 * helper thread, which from then on owns g's communicator and scratch buffer; the
 * tensors owning keep_a[0..na) and keep_b[0..nb) are retained here, on this thread,
 * and released on this thread once the helper is done (pg_worker_reap); g is marked
 * broken, so the next collective rebuilds its connections. Without a helper thread (it
 * could not be started) the call runs here, uninterruptible, as before. */
ddp_status pg_call_run(process_group *g, const pg_call *call, const pg_buffer *keep_a, int na,
                       const pg_buffer *keep_b, int nb);
/* comm_p2p_wait(p, timeout_ms) on the helper thread while this thread waits, looking at
 * ddp_interrupt_pending() every 50 ms. On Ctrl-C it aborts the wait (comm_p2p_abort) and
 * returns DDP_ERR_INTERRUPTED once the helper is back, which is at once: nothing is
 * abandoned, but the message may still be in flight, so the caller marks the group
 * broken. A message that completed before the abort counts as done (DDP_OK). */
ddp_status pg_p2p_wait(comm_p2p *p, int timeout_ms);
/* An asynchronous backend call (all_reduce with async_op): queued on the helper behind
 * every call posted before it, so calls run in the order posted. pg_call_post returns at
 * once with the job (*out, owned by the caller: pg_job_free). keep is the tensor whose
 * memory the call writes (borrowed: the caller keeps it alive until pg_job_free; it is
 * retained should the helper be abandoned). Without a helper thread the call runs here
 * and the job comes back done. */
typedef struct pg_job pg_job;
ddp_status pg_call_post(process_group *g, const pg_call *call, tensor *keep, pg_job **out);
bool pg_job_done(const pg_job *job);
/* When a done job's backend call started and ended (CLOCK_MONOTONIC seconds; 0 when not
 * done). */
void pg_job_times(const pg_job *job, double *start, double *end);
/* Waits for the job (and so for every call queued before it), looking at Ctrl-C every
 * 50 ms: on Ctrl-C the helper is abandoned as in pg_call_run (with every job queued on
 * it, which then fail without running) and DDP_ERR_INTERRUPTED returned. Returns the
 * call's status; the caller marks the group broken on a failure. */
ddp_status pg_job_wait(pg_job *job);
/* Frees the caller's share of a job (NULL-safe); a job still running is waited for
 * first, since the helper writes into its tensor. */
void pg_job_free(pg_job *job);
/* A work object for an asynchronous collective on g: it takes over job (NULL: a work
 * that is complete already, for a group of one); b describes the buffer for messages.
 * On failure (memory) the job is freed. pg_work_wait waits for the job and marks g broken
 * when the call failed. */
ddp_status pg_work_for_job(process_group *g, const char *op, const pg_buffer *b, pg_job *job,
                           pg_work **out);
/* Waits, without looking at Ctrl-C, until the idle helper's queue is empty (before a
 * communicator that queued calls may use is destroyed). */
void pg_worker_drain(void);
/* Frees what every abandoned call that has finished held: joins its thread, destroys its
 * communicator, releases its tensors. Never blocks on a call still running. */
void pg_worker_reap(void);
/* Stops the idle helper thread (destroy_process_group); a later call starts a new one. */
void pg_worker_stop_idle(void);

#endif
