/* driver_internal.h — private to driver.c and driver_nodes.c: the driver's bookkeeping
 * of its rank processes, shared so that the multi-node part (agents on the other nodes and
 * the ranks they start, reached over authenticated TCP) lives in a file of its own. The
 * terminal side never includes this: it uses driver.h. */
#ifndef DDP_RUNTIME_DRIVER_INTERNAL_H
#define DDP_RUNTIME_DRIVER_INTERNAL_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "dist/store.h"
#include "runtime/driver.h"
#include "runtime/protocol.h"

#define TAIL_BYTES 2048

typedef enum { SLOT_STARTING, SLOT_IDLE, SLOT_RUNNING, SLOT_DEAD } slot_state;

struct driver;

typedef struct {
    struct driver *owner; /* the driver whose world this rank belongs to */
    int rank;
    pid_t pid;   /* on its own node: never signal or wait for a remote rank's pid */
    bool remote; /* started by the agent of another node, reached over TCP */
    int fd;      /* control connection (non-blocking), -1 before it connects */
    int out_fd;  /* local ranks: read end of the pipe that is their stdout and stderr */
    proto_reader in;
    slot_state state;
    bool reaped;
    int wait_status; /* waitpid's, once reaped */
    char death[128]; /* "exited with status 3" */
    char host[64], device[16];
    bool has_gpu; /* a DEVICE frame came: it used a GPU; the figures are from then */
    int64_t gpu_allocated, gpu_reserved;
    char activity[96];        /* last STATE frame */
    char last_collective[96]; /* the last "in <collective>" activity seen, for :ranks */
    bool death_told;          /* its death was reported (driver_run or driver_check_idle) */
    bool killed_by_interrupt; /* the driver killed it at a third Ctrl-C in one chunk */
    char tail[TAIL_BYTES];
    size_t tail_len;   /* the last bytes it printed, for death reports */
    char *completions; /* reply to a COMPLETE request (owned) */
    uint32_t completions_len;
    bool completions_ready;
    char *start_error; /* an ERROR frame before HELLO (owned) */
} rank_slot;

struct driver {
    launch_options opts;
    char *backend, *master_addr; /* owned copies of the option strings */
    int world;
    char dir[200];
    char socket_path[240];
    int listen_fd;
    int interrupt_pipe[2];
    store_server *store;
    store_client *board; /* our own client of it, to tell the ranks who died (lazy) */
    int master_port;
    rank_slot *ranks;
    int chunk_id;                      /* the last chunk sent; ids keep growing across restarts */
    volatile sig_atomic_t terminating; /* driver_terminate was called */
    /* multi-node: ranks [0, nproc) are ours, the others belong to the agents */
    int nproc;
    int tcp_fd;
    unsigned char key[PROTO_KEY_BYTES];
    struct {
        int fd;
        proto_reader in;
        bool joined; /* it said hello once: fd < 0 now means it went away */
        int ending;  /* END_RANKS sent minus RANKS_ENDED back: while > 0, the RANK_EXITs
                      * it sends are about ranks of a world that is over */
    } * agents;      /* [nnodes]; entry 0 unused */
    struct node_handshakes *handshakes; /* driver_nodes.c: handshakes under way */
    /* driver_set_quiet_report */
    rank_quiet_fn quiet_fn;
    void *quiet_ctx;
    double quiet_after_s;
    /* driver_set_event_handler */
    rank_event_fn event_fn;
    void *event_ctx;
    /* driver_set_input_hook */
    int input_fd;
    driver_input_fn input_fn;
    void *input_ctx;
};

/* ---- driver.c: shared with driver_query.c and driver_nodes.c ------------------------ */

/* Appends the last few lines a rank printed to `msg` ("; its last output:\n..."), for
 * death reports. */
void driver_append_tail(const rank_slot *s, char *msg, size_t cap);
/* Marks a rank dead: closes its channel, reaps it (killing it if it lingers) and words the
 * reason in s->death. Cannot fail. */
void driver_mark_dead(rank_slot *s);
/* Fills *res for rank r, already marked dead: RANK_DIED, the message "rank r <reason>"
 * with its last output (res->error, owned by res; NULL when memory is short) and the exit
 * code. Marks the death told, so it is reported once. */
void driver_death_result(rank_slot *s, int r, rank_result *res);
/* The exit_status of a dead rank's result (rank_result): its exit code or -signal, or
 * RANK_EXIT_UNKNOWN when it was never reaped (a remote rank whose agent said nothing). */
int driver_exit_status(const rank_slot *s);
/* Notices ranks that exited without closing their channel yet (cheap: WNOHANG). */
void driver_check_exits(driver *d);
/* Reads what rank r sent; returns false when its channel ended or is corrupt. Frames go
 * to `on_frame` when given (the run loop), else to the bookkeeping of an idle rank
 * (hello, state, completions, output into its tail). */
typedef bool (*frame_fn)(driver *d, int r, proto_frame *f, void *ctx);
bool driver_pump_rank(driver *d, int r, frame_fn on_frame, void *ctx);
/* Takes in what an idle local rank printed (into its tail only). */
void driver_drain_idle_output(rank_slot *s);

/* ---- driver_events.c: typed events and the checks' gather during a run --------------- */

/* What the ranks of a run sent for one c.gather (NULL: nothing yet). */
typedef struct {
    char **data;
    uint32_t *len;
    int n; /* how many sent */
} gather_state;

void driver_gather_init(gather_state *g, int world); /* no memory: gathers are ignored */
void driver_gather_free(gather_state *g, int world);
/* Keeps rank r's MSG_GATHER payload (taken from f) for the round in progress. */
void driver_gather_take(gather_state *g, int r, proto_frame *f);
/* Answers the round once every rank still running has sent: each sender gets every
 * rank's bytes (PROTO_GATHER_MISSING for a rank that ended without sending); then the next
 * round starts empty. Cannot fail: a rank that cannot be written to shows up as dead. */
void driver_gather_answer(driver *d, gather_state *g);
/* Takes rank r's MSG_EVENT: a verdict goes into its result, "ended" sets its place in the
 * order of outcomes (res->order from ++*outcomes), and every event goes to the handler
 * set with driver_set_event_handler. A corrupt event is ignored. */
void driver_take_event(driver *d, int r, proto_frame *f, rank_result *res, int *outcomes);

/* ---- driver_query.c --------------------------------------------------------------- */

/* Calls d->quiet_fn (set) with what every rank is doing in the chunk whose results so far
 * are results[world]. Cannot fail (out of memory: no report). */
void driver_quiet_report(driver *d, const rank_result *results);

/* ---- driver_nodes.c: the other nodes ------------------------------------------------- */

/* Opens the authenticated TCP port that the agents and remote ranks dial (multi-node
 * only) and asks every agent already in (a restart) to start its ranks; agents that dial
 * later are asked when they say hello. Fails with the reason when the port cannot be bound,
 * memory runs out or an agent that was in has gone away. */
ddp_status driver_nodes_listen(driver *d);
/* Accepts one TCP connection: it must prove it holds the session secret and say who it is
 * (an expected agent or remote rank); anyone else is dropped and logged. The handshake runs
 * on a thread of its own and its outcome is taken in by driver_nodes_poll, so a peer that
 * never finishes it (a slow-loris) delays nobody. Cannot fail. */
void driver_nodes_accept(driver *d);
/* Takes in the handshakes that ended and what the agents sent (how their ranks exited),
 * waiting up to wait_ms for the first of it. No-op on a single node. Cannot fail: a gone
 * agent is dropped. */
void driver_nodes_poll(driver *d, int wait_ms);
/* Fails (DDP_ERR_STATE, naming the node) when an agent that was in has gone away while a
 * world starts, so that its ranks can never start: the start stops at once instead of
 * waiting for them. Cannot fail otherwise; no-op on a single node. */
ddp_status driver_nodes_check(driver *d);
/* Before a :restart: an agent that went away may be started again on its node, so it is
 * expected anew (the new world's start waits for it, as at the session's start) and a
 * line on stderr says so. Returns how many are expected again. Cannot fail. */
int driver_nodes_expect_again(driver *d, int wait_s);
/* Whether node k's agent is connected now (node 0 always is). */
bool driver_nodes_agent_in(const driver *d, int k);
/* Asks remote rank r's agent to interrupt it for the current chunk. Cannot fail. */
void driver_nodes_signal_rank(driver *d, int r);
/* Stops listening for nodes (everyone is in). Cannot fail. */
void driver_nodes_stop_listening(driver *d);
/* Asks every agent to end its ranks and their process groups, keeping the agents for the
 * next world (:restart); stops listening. Cannot fail: a gone agent is skipped. */
void driver_nodes_end_ranks(driver *d);
/* Says goodbye to every agent (they end their ranks) and frees the node bookkeeping.
 * Cannot fail; NULL-safe parts; calling it twice is harmless. */
void driver_nodes_close(driver *d);

#endif
