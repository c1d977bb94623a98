/* pg_p2p.c — point-to-point send/recv (blocking and isend/irecv) with fingerprints
 * checked between the two peers only.
 *
 * Posting an isend/irecv publishes "pg/<gen>/<group>/p2p/c<chunk>/<src>><dst>/n<k>/<role>"
 * (the k-th message in that direction in this chunk) and queues the work. Data moves when
 * some wait runs: it first resolves every queued work of this process in order (waits
 * for the peer's matching fingerprint, compares, posts to Gloo), then waits on its own.
 * So a ring of isend/irecv pairs cannot deadlock, and a Gloo wait starts only when the
 * peer has posted its side (Gloo closes the pair on a timed-out wait, see comm.h). A rank
 * waiting in a collective posts the queued works whose peers have posted (pg_p2p_pump). */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/interrupt.h"
#include "dist/fingerprint.h"
#include "dist/pg_internal.h"

typedef enum { WORK_QUEUED, WORK_POSTED, WORK_DONE, WORK_FAILED } work_state;

struct pg_work {
    process_group *g; /* retained */
    bool is_send;
    int peer;   /* group rank */
    uint64_t k; /* message number in this direction in the chunk */
    uint64_t chunk;
    void *data;
    size_t nbytes;
    char mine[FP_MAX]; /* "float32[3]" */
    char layout[64];   /* "float32 12": what must match */
    work_state state;
    comm_p2p *p2p;
    ddp_status status;
    char message[768];
    struct pg_work *next_queued;
    /* an asynchronous collective (all_reduce with async_op): its backend call, queued on
     * the helper thread; the fields above except g, mine and state are unused */
    pg_job *job;
    const char *op;
};

static pg_work *queue_head;

static void queue_remove(pg_work *w) {
    for (pg_work **p = &queue_head; *p; p = &(*p)->next_queued) {
        if (*p == w) {
            *p = w->next_queued;
            break;
        }
    }
    w->next_queued = NULL;
}

static void p2p_key(char *out, size_t len, const pg_work *w, bool own_role) {
    int src = w->is_send ? w->g->my : w->peer;
    int dst = w->is_send ? w->peer : w->g->my;
    bool send_role = own_role ? w->is_send : !w->is_send;
    snprintf(out, len, "pg/%llu/%d/p2p/c%llu/%d>%d/n%llu/%s", (unsigned long long)w->g->world_gen,
             w->g->id, (unsigned long long)w->chunk, src, dst, (unsigned long long)w->k,
             send_role ? "send" : "recv");
}

static void fail_work(pg_work *w, ddp_status s) {
    w->state = WORK_FAILED;
    w->status = s;
    snprintf(w->message, sizeof w->message, "%s", ddp_last_error());
}

/* Describes the direction for messages: "send #1 from rank 0 to rank 1". */
static void describe(char *out, size_t len, const pg_work *w) {
    int me = w->g->ranks[w->g->my], peer = w->g->ranks[w->peer];
    snprintf(out, len, "%s #%llu from rank %d to rank %d", w->is_send ? "send" : "recv",
             (unsigned long long)w->k + 1, w->is_send ? me : peer, w->is_send ? peer : me);
}

/* Waits for the peer's matching fingerprint and compares. Fails at once when the peer
 * finished the chunk, or (in the chunk the message belongs to) waits in a collective of
 * the same group that this rank has not called: the two would wait for each other. */
static ddp_status match_peer(pg_work *w) {
    char peer_key[192], done_key[128], coll_key[128], what[96];
    p2p_key(peer_key, sizeof peer_key, w, false);
    pg_key_done(done_key, sizeof done_key, w->g, w->chunk, w->peer);
    bool same_chunk = w->chunk == pg_W.chunk_id;
    uint64_t next_seq = w->g->chunk_seq; /* the collective the peer would be waiting in */
    pg_key_fp(coll_key, sizeof coll_key, w->g, next_seq, w->peer);
    describe(what, sizeof what, w);
    int peer = w->g->ranks[w->peer];
    const char *role = w->is_send ? "recv" : "send";
    double until = pg_now() + pg_W.timeout;
    const char *pk[1] = {peer_key}, *dk[2] = {done_key, coll_key};
    for (;;) {
        char *v[1], *dv[2];
        size_t l[1], dl[2];
        DDP_CHECK(store_multi_wait(pg_W.store, pk, 1, 50, v, l));
        if (!v[0]) {
            DDP_CHECK(store_multi_wait(pg_W.store, dk, same_chunk ? 2 : 1, 0, dv, dl));
            bool finished = dv[0] != NULL;
            char theirs[FP_MAX] = "";
            if (same_chunk && dv[1]) {
                char *nl = strchr(dv[1], '\n');
                snprintf(theirs, sizeof theirs, "%.*s", nl ? (int)(nl - dv[1]) : 0, dv[1]);
            }
            free(dv[0]);
            if (same_chunk) free(dv[1]);
            /* its fingerprint would have been set before it went on to a collective or
             * ended the chunk, but maybe after our first look: one last look */
            if (theirs[0] || finished) DDP_CHECK(store_multi_wait(pg_W.store, pk, 1, 0, v, l));
            if (!v[0] && theirs[0])
                return DDP_FAIL(DDP_ERR_MISMATCH,
                                "%s: rank %d called %s (collective #%llu of this chunk) instead "
                                "of a matching %s; the two ranks would wait for each other",
                                what, peer, theirs, (unsigned long long)next_seq + 1, role);
            if (finished) {
                if (!v[0] && !same_chunk)
                    return DDP_FAIL(DDP_ERR_MISMATCH,
                                    "%s, posted in an earlier chunk: rank %d posted no matching "
                                    "%s in that chunk (a message's send and recv must be posted "
                                    "in the same chunk; waiting may come later)",
                                    what, peer, role);
                if (!v[0])
                    return DDP_FAIL(DDP_ERR_MISMATCH,
                                    "%s: rank %d called no matching %s and finished the chunk",
                                    what, peer, role);
            }
        }
        if (v[0]) {
            char *nl = strchr(v[0], '\n');
            bool ok = nl && strcmp(nl + 1, w->layout) == 0;
            char theirs[FP_MAX];
            snprintf(theirs, sizeof theirs, "%.*s", nl ? (int)(nl - v[0]) : 0, v[0]);
            free(v[0]);
            if (ok) return DDP_OK;
            return DDP_FAIL(DDP_ERR_MISMATCH,
                            "%s: rank %d %s %s but rank %d %s %s (dtype and number of elements "
                            "must match)",
                            what, w->g->ranks[w->g->my], w->is_send ? "sends" : "receives into",
                            w->mine, peer, w->is_send ? "receives into" : "sends", theirs);
        }
        if (ddp_interrupt_pending())
            return DDP_FAIL(DDP_ERR_INTERRUPTED,
                            "%s: interrupted (Ctrl-C) while waiting for rank "
                            "%d's %s",
                            what, peer, role);
        if (pg_now() >= until)
            return DDP_FAIL(DDP_ERR_TIMEOUT,
                            "%s: rank %d did not call a matching %s within %.3g s (every send "
                            "needs a recv on the peer; two ranks that both call a blocking send "
                            "first wait for each other: use isend/irecv)",
                            what, peer, role, pg_W.timeout);
    }
}

/* Matches (with the check on) and posts one work taken off the queue; a failure is kept
 * in the work, for its wait to raise. */
static void resolve(pg_work *w) {
    ddp_status s = DDP_OK;
    if (!pg_is_alive(w->g)) {
        s = DDP_FAIL(DDP_ERR_STATE,
                     "%s: the process group was destroyed before the message "
                     "was sent",
                     w->is_send ? "isend" : "irecv");
    } else if (w->g->broken || !w->g->comm) {
        s = DDP_FAIL(DDP_ERR_COMM,
                     "%s: this group's connections broke before the message was sent; "
                     "every rank must call a collective (e.g. dist.barrier()) to rebuild "
                     "them, then send again",
                     w->is_send ? "isend" : "irecv");
    } else if (pg_W.check) {
        s = match_peer(w);
    }
    if (s == DDP_OK) {
        uint64_t slot = (1ull << 62) | ((w->chunk & 0xfffffffull) << 32) | (w->k & 0xffffffffull);
        s = w->is_send ? comm_send_post(w->g->comm, w->data, w->nbytes, w->peer, slot, &w->p2p)
                       : comm_recv_post(w->g->comm, w->data, w->nbytes, w->peer, slot, &w->p2p);
        if (s != DDP_OK) pg_mark_broken(w->g);
    }
    if (s == DDP_OK)
        w->state = WORK_POSTED;
    else
        fail_work(w, s);
}

/* Resolves and posts every queued work, oldest first, waiting for each peer's side. */
static void flush_queue(void) {
    while (queue_head) {
        pg_work *w = queue_head;
        queue_head = w->next_queued;
        w->next_queued = NULL;
        resolve(w);
    }
}

void pg_p2p_pump(void) {
    for (pg_work **p = &queue_head; *p;) {
        pg_work *w = *p;
        if (pg_W.check && pg_is_alive(w->g) && !w->g->broken && w->g->comm) {
            char key[192];
            p2p_key(key, sizeof key, w, false);
            const char *k[1] = {key};
            char *v[1] = {NULL};
            size_t l[1];
            bool posted = store_multi_wait(pg_W.store, k, 1, 0, v, l) == DDP_OK && v[0];
            free(v[0]);
            if (!posted) { /* the peer has not posted its side yet: later */
                p = &w->next_queued;
                continue;
            }
        }
        *p = w->next_queued;
        w->next_queued = NULL;
        resolve(w);
    }
}

/* Validates, numbers and publishes one message; queues it. */
static ddp_status post(process_group *g, const pg_buffer *b, int peer_global, bool is_send,
                       pg_work **out) {
    const char *op = is_send ? "send" : "recv";
    *out = NULL;
    if (b->dt == DTYPE_BOOL)
        return DDP_FAIL(DDP_ERR_ARG, "%s: takes float32, float64 or int64 tensors, not bool", op);
    DDP_CHECK(pg_ready(&g, op));
    int peer = pg_group_rank_of(g, peer_global);
    if (peer < 0 || peer == g->my)
        return DDP_FAIL(DDP_ERR_ARG, "%s: %s=%d is %s", op, is_send ? "dst" : "src", peer_global,
                        peer == g->my ? "this rank itself (a rank cannot message itself)"
                                      : "not a rank of the group");
    DDP_CHECK(pg_check_running(op, &peer_global, 1,
                               is_send ? "a send needs its receiver running too"
                                       : "a recv needs its sender running too"));
    if (g->broken)
        return DDP_FAIL(DDP_ERR_COMM,
                        "%s: this group's connections broke in an earlier call; "
                        "every rank must call a collective (e.g. dist.barrier()) "
                        "to rebuild them before sending again",
                        op);
    pg_work *w = calloc(1, sizeof *w);
    if (!w) return DDP_FAIL(DDP_ERR_NOMEM, "%s: out of memory", op);
    w->g = pg_retain(g);
    w->is_send = is_send;
    w->peer = peer;
    w->chunk = pg_W.chunk_id;
    w->k = is_send ? g->p2p_sent[peer]++ : g->p2p_recv[peer]++;
    w->data = b->data;
    w->nbytes = (size_t)pg_buffer_numel(b) * dtype_size(b->dt);
    fp_shape(w->mine, sizeof w->mine, b->dt, b->ndim, b->sizes);
    snprintf(w->layout, sizeof w->layout, "%s %zu", dtype_name(b->dt), w->nbytes);
    if (pg_W.check) {
        char key[192], value[FP_MAX + 64];
        p2p_key(key, sizeof key, w, true);
        snprintf(value, sizeof value, "%s\n%s", w->mine, w->layout);
        ddp_status s = store_set(pg_W.store, key, value, strlen(value));
        if (s != DDP_OK) {
            pg_release(w->g);
            free(w);
            return s;
        }
    }
    pg_work **tail = &queue_head;
    while (*tail) tail = &(*tail)->next_queued;
    *tail = w;
    *out = w;
    return DDP_OK;
}

ddp_status pg_isend(process_group *g, const pg_buffer *buf, int dst, pg_work **out) {
    return post(g, buf, dst, true, out);
}

ddp_status pg_irecv(process_group *g, pg_buffer *buf, int src, pg_work **out) {
    return post(g, buf, src, false, out);
}

ddp_status pg_work_for_job(process_group *g, const char *op, const pg_buffer *b, pg_job *job,
                           pg_work **out) {
    *out = NULL;
    pg_work *w = calloc(1, sizeof *w);
    if (!w) {
        pg_job_free(job);
        return DDP_FAIL(DDP_ERR_NOMEM, "%s: out of memory", op);
    }
    w->g = pg_retain(g);
    w->job = job;
    w->op = op;
    w->state = job ? WORK_POSTED : WORK_DONE;
    if (b) fp_shape(w->mine, sizeof w->mine, b->dt, b->ndim, b->sizes);
    *out = w;
    return DDP_OK;
}

/* pg_work_wait of an asynchronous collective. */
static ddp_status wait_collective(pg_work *w) {
    char line[FP_MAX + 64];
    snprintf(line, sizeof line, "waiting for %s %s (async_op)", w->op, w->mine);
    pg_set_activity(line);
    ddp_status s = pg_job_wait(w->job);
    pg_set_activity(NULL);
    pg_job_free(w->job);
    w->job = NULL;
    if (s != DDP_OK) {
        if (!w->g->broken) pg_mark_broken(w->g);
        fail_work(w, s);
        return s;
    }
    w->state = WORK_DONE;
    return DDP_OK;
}

ddp_status pg_work_wait(pg_work *w) {
    if (w->state == WORK_FAILED)
        return ddp_fail_at(__FILE__, __LINE__, w->status, "%s", w->message);
    if (w->job) return wait_collective(w);
    if (w->state == WORK_DONE) return DDP_OK;
    flush_queue();
    if (w->state == WORK_FAILED)
        return ddp_fail_at(__FILE__, __LINE__, w->status, "%s", w->message);
    if (w->state == WORK_DONE) return DDP_OK;
    char act[160];
    describe(act, sizeof act, w);
    char line[400];
    snprintf(line, sizeof line, "in %s %s", act, w->mine);
    pg_set_activity(line);
    /* the watchdog in ms; an absurd --collective-timeout must not overflow an int */
    double ms = pg_W.timeout * 1000;
    ddp_status s = pg_p2p_wait(w->p2p, ms < INT_MAX ? (int)ms : INT_MAX);
    pg_set_activity(NULL);
    comm_p2p_free(w->p2p);
    w->p2p = NULL;
    if (s == DDP_ERR_INTERRUPTED)
        s = DDP_FAIL(s,
                     "%s: interrupted (Ctrl-C) while the message was in flight; this group's "
                     "connections are rebuilt at the next collective",
                     act);
    if (s != DDP_OK) {
        pg_mark_broken(w->g);
        fail_work(w, s);
        return s;
    }
    w->state = WORK_DONE;
    return DDP_OK;
}

bool pg_work_is_completed(const pg_work *w) {
    if (w->job) return pg_job_done(w->job);
    return w->state == WORK_DONE || w->state == WORK_FAILED;
}

void pg_work_free(pg_work *w) {
    if (!w) return;
    pg_job_free(w->job);
    queue_remove(w);
    comm_p2p_free(w->p2p);
    pg_release(w->g);
    free(w);
}

ddp_status pg_send(process_group *g, const pg_buffer *buf, int dst) {
    pg_work *w;
    DDP_CHECK(pg_isend(g, buf, dst, &w));
    ddp_status s = pg_work_wait(w);
    pg_work_free(w);
    return s;
}

ddp_status pg_recv(process_group *g, pg_buffer *buf, int src) {
    pg_work *w;
    DDP_CHECK(pg_irecv(g, buf, src, &w));
    ddp_status s = pg_work_wait(w);
    pg_work_free(w);
    return s;
}
