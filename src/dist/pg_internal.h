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
    uint64_t world_gen; /* the init generation that made it */
    int id;             /* 0: the default group; then one per new_group call */
    int size;
    int *ranks;          /* global rank of each group rank */
    int my;              /* this process's group rank, -1 for a non-member */
    comm *comm;          /* NULL for non-members and groups of one */
    int comm_gen;        /* bumped each time a failed communicator is replaced */
    bool broken;         /* the last backend call failed: replace before the next */
    uint64_t chunk_seen; /* the chunk the counters below belong to */
    uint64_t chunk_seq;  /* collectives called in that chunk (fingerprint sequence, and
                          * "collective #k of this chunk" in messages) */
    uint64_t *p2p_sent;  /* per group rank: sends to it in that chunk */
    uint64_t *p2p_recv;  /* per group rank: receives from it in that chunk */
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
    int rank, size;
    char host[256];
    int port;
    store_client *store;
    char backend[16];
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

/* Sets the activity text ("in all_reduce #3 float32[4]"); NULL clears it. */
void pg_set_activity(const char *text);
double pg_now(void);
/* Resets the per-chunk counters of g when a new chunk began. */
void pg_sync_chunk(process_group *g);
/* Makes (or re-makes, after a failure) g's communicator. */
ddp_status pg_connect(process_group *g, double rendezvous_timeout);
/* Checks that g may run a collective (initialised, alive, member) and replaces a broken
 * communicator. `op` names the call for messages. */
ddp_status pg_ready(process_group **g, const char *op);
/* Fails at once (DDP_ERR_STATE) when one of the n global ranks does not run the current
 * chunk, naming them, the ranks it was sent to, and `why` a rank that is not running
 * matters; DDP_OK when every one runs it (or the runtime did not say). */
ddp_status pg_check_running(const char *op, const int *ranks, int n, const char *why);
/* The group rank of global rank r in g, or -1. */
int pg_group_rank_of(const process_group *g, int global);
/* Frees g's scratch buffer (pg_chunk_end, pg_group_clear). */
void pg_scratch_release(process_group *g);
/* Frees a group's communicator and arrays, not the struct. */
void pg_group_clear(process_group *g);

#endif
