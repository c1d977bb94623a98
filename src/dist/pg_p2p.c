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

#include "base/alloc.h"
#include "base/interrupt.h"
#include "dist/fingerprint.h"
#include "dist/pg_internal.h"

typedef enum { WORK_QUEUED, WORK_POSTED, WORK_DONE, WORK_FAILED } work_state;

struct pg_work {
    process_group *g; /* retained */
    bool is_send;
    int peer;   /* group rank; -1 for a recv from any rank until its sender is known */
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
    double t_start, t_end; /* when its backend call ran, once waited for */
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

/* The key under which rank `member` of w's group says which message key it is blocked
 * waiting for (empty when it waits for none): two ranks each waiting for a message the
 * other would post only after its own wait are deadlocked, and both can tell at once. */
static void waiting_key(char *out, size_t len, const pg_work *w, int member) {
    snprintf(out, len, "pg/%llu/%d/p2p/c%llu/waiting/%d", (unsigned long long)w->g->world_gen,
             w->g->id, (unsigned long long)w->chunk, member);
}

/* Describes the direction for messages: "send #1 from rank 0 to rank 1". */
static void describe(char *out, size_t len, const pg_work *w) {
    int me = w->g->ranks[w->g->my];
    if (w->peer < 0) {
        snprintf(out, len, "recv (from any rank) on rank %d", me);
        return;
    }
    int peer = w->g->ranks[w->peer];
    snprintf(out, len, "%s #%llu from rank %d to rank %d", w->is_send ? "send" : "recv",
             (unsigned long long)w->k + 1, w->is_send ? me : peer, w->is_send ? peer : me);
}

/* Waits for the peer's matching fingerprint and compares. Fails at once when the peer
 * finished the chunk, or (in the chunk the message belongs to) waits in a collective of
 * the same group that this rank has not called: the two would wait for each other. */
/* When rank `peer` is blocked waiting for `theirs` (its waiting key's value), a message
 * key that this rank would post, and this rank has not posted it, the two wait for each
 * other: fails naming both sides ("both ranks are in send"). DDP_OK otherwise. */
static ddp_status check_crossed_wait(const pg_work *w, const char *what, const char *theirs) {
    if (!theirs || !theirs[0]) return DDP_OK;
    unsigned long long gen, chunk, k;
    int gid, src, dst;
    char role[8];
    if (sscanf(theirs, "pg/%llu/%d/p2p/c%llu/%d>%d/n%llu/%7s", &gen, &gid, &chunk, &src, &dst, &k,
               role) != 7)
        return DDP_OK;
    int me = w->g->my;
    bool mine = strcmp(role, "recv") == 0 ? dst == me : src == me; /* a key this rank posts */
    if (!mine || (int)gid != w->g->id || chunk != w->chunk) return DDP_OK;
    const char *k1[1] = {theirs};
    char *v[1] = {NULL};
    size_t l[1];
    DDP_CHECK(store_multi_wait(pg_W.store, k1, 1, 0, v, l));
    bool posted = v[0] != NULL;
    free(v[0]);
    if (posted) return DDP_OK;                   /* it is there: the peer is about to go on */
    bool peer_sends = strcmp(role, "recv") == 0; /* it waits for our recv: it is sending */
    int peer = w->g->ranks[w->peer];
    int their_peer = w->g->ranks[peer_sends ? dst : src];
    if (peer_sends == w->is_send)
        return DDP_FAIL(DDP_ERR_MISMATCH,
                        "%s: rank %d is in its own %s #%llu %s rank %d at the same time; both "
                        "ranks are in %s and would wait for each other (a blocking %s returns "
                        "only when the peer's %s is there): let one of them %s first, or post "
                        "both sides with isend/irecv",
                        what, peer, peer_sends ? "send" : "recv", k + 1, peer_sends ? "to" : "from",
                        their_peer, peer_sends ? "send" : "recv", peer_sends ? "send" : "recv",
                        peer_sends ? "recv" : "send", peer_sends ? "receive" : "send");
    return DDP_FAIL(DDP_ERR_MISMATCH,
                    "%s: rank %d waits in its %s #%llu %s rank %d, which this rank has not "
                    "posted; the two ranks would wait for each other (their sends and recvs "
                    "are in different orders)",
                    what, peer, peer_sends ? "send" : "recv", k + 1, peer_sends ? "to" : "from",
                    their_peer);
}

/* Whether this rank's waiting key still names a wait that failed as crossed. */
static bool left_waiting;

/* Sets (or with NULL clears) this rank's waiting key for w; best effort. */
static void set_waiting(const pg_work *w, const char *key) {
    char wk[128];
    waiting_key(wk, sizeof wk, w, w->g->my);
    (void)store_set(pg_W.store, wk, key ? key : "", key ? strlen(key) : 0);
}

static ddp_status match_peer_wait(pg_work *w, const char *peer_key, bool *waiting);

/* Waits for the peer's side of w (see match_peer_wait). The waiting key is cleared on the
 * way out, except after a crossed wait: the peer, which may look a moment later, must
 * find the same evidence rather than "finished the chunk" (the chunk is over anyway). */
static ddp_status match_peer(pg_work *w) {
    char peer_key[192];
    p2p_key(peer_key, sizeof peer_key, w, false);
    bool waiting = false;
    ddp_status s = match_peer_wait(w, peer_key, &waiting);
    bool crossed = s == DDP_ERR_MISMATCH && strstr(ddp_last_error(), "would wait for each");
    if (crossed) {
        /* The message never went out, and its peer's crossed one neither: withdraw it and
         * its number (both sides do), so the pair's next messages match as if these two
         * had not been tried. The waiting key stays until this rank's next message. */
        char own[192];
        p2p_key(own, sizeof own, w, true);
        (void)store_delete_key(pg_W.store, own, NULL);
        uint64_t *count = w->is_send ? &w->g->p2p_sent[w->peer] : &w->g->p2p_recv[w->peer];
        if (*count == w->k + 1) (*count)--;
        left_waiting = true;
    }
    if (waiting && !crossed) {
        char keep[768];
        snprintf(keep, sizeof keep, "%s", ddp_last_error());
        set_waiting(w, NULL);
        if (s != DDP_OK) s = ddp_fail_at(__FILE__, __LINE__, s, "%s", keep);
    }
    return s;
}

/* match_peer's loop; sets *waiting once it has published that it waits. */
static ddp_status match_peer_wait(pg_work *w, const char *peer_key, bool *waiting) {
    char done_key[128], coll_key[128], their_wait_key[128], what[96];
    pg_key_done(done_key, sizeof done_key, w->g, w->chunk, w->peer);
    bool same_chunk = w->chunk == pg_W.chunk_id;
    uint64_t next_seq = w->g->chunk_seq; /* the collective the peer would be waiting in */
    pg_key_fp(coll_key, sizeof coll_key, w->g, next_seq, w->peer);
    waiting_key(their_wait_key, sizeof their_wait_key, w, w->peer);
    describe(what, sizeof what, w);
    int peer = w->g->ranks[w->peer];
    const char *role = w->is_send ? "recv" : "send";
    double until = pg_now() + pg_W.timeout;
    char dead_key[48];
    snprintf(dead_key, sizeof dead_key, "ddplab/dead/%d", peer); /* the driver's word */
    const char *pk[1] = {peer_key}, *dk[4] = {done_key, dead_key, their_wait_key, coll_key};
    for (;;) {
        char *v[1], *dv[4];
        size_t l[1], dl[4];
        DDP_CHECK(store_multi_wait(pg_W.store, pk, 1, *waiting || !same_chunk ? 50 : 0, v, l));
        if (!v[0] && !*waiting && same_chunk) { /* blocked: say so, then look again */
            set_waiting(w, peer_key);
            *waiting = true;
            continue;
        }
        if (!v[0]) {
            DDP_CHECK(store_multi_wait(pg_W.store, dk, same_chunk ? 4 : 2, 0, dv, dl));
            if (dv[1]) { /* it died: the message can never move */
                char how[128];
                snprintf(how, sizeof how, "%.*s", (int)dl[1], dv[1]);
                for (int i = 0; i < (same_chunk ? 4 : 2); i++) free(dv[i]);
                return DDP_FAIL(DDP_ERR_STATE,
                                "%s: rank %d %s, so it can never %s (:restart starts the ranks "
                                "again)",
                                what, peer, how, role);
            }
            free(dv[1]);
            dv[1] = same_chunk ? dv[2] : NULL;
            dl[1] = same_chunk ? dl[2] : 0;
            dv[2] = same_chunk ? dv[3] : NULL;
            bool finished = dv[0] != NULL;
            char crossed[192] = "";
            if (same_chunk && dv[1]) snprintf(crossed, sizeof crossed, "%.*s", (int)dl[1], dv[1]);
            if (same_chunk) free(dv[1]);
            if (crossed[0]) {
                ddp_status cs = check_crossed_wait(w, what, crossed);
                if (cs != DDP_OK) {
                    free(dv[0]);
                    if (same_chunk) free(dv[2]);
                    return cs;
                }
            }
            dv[1] = same_chunk ? dv[2] : NULL;
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

/* Publishes the recv side of w (its key and fingerprint) once its sender is known. */
static ddp_status publish(pg_work *w) {
    char key[192], value[FP_MAX + 64];
    p2p_key(key, sizeof key, w, true);
    snprintf(value, sizeof value, "%s\n%s", w->mine, w->layout);
    return store_set(pg_W.store, key, value, strlen(value));
}

/* For a recv from any rank (w->peer < 0): looks for the first rank of the group whose
 * next send to this rank is posted, waiting for one up to the watchdog when `block`, and
 * makes w a recv from that rank (numbered and published as any recv). Without `block`,
 * DDP_OK with w->peer still -1 means no sender yet. Fails when every other rank finished
 * the chunk, on Ctrl-C, or after the watchdog. */
static ddp_status find_any_sender(pg_work *w, bool block) {
    process_group *g = w->g;
    int n = g->size;
    char(*keys)[192] = ddp_malloc((size_t)n * 2 * sizeof *keys);
    const char **kp = ddp_malloc((size_t)n * 2 * sizeof *kp);
    char **v = ddp_calloc((size_t)n * 2, sizeof *v);
    size_t *l = ddp_malloc((size_t)n * 2 * sizeof *l);
    ddp_status s = DDP_OK;
    if (!keys || !kp || !v || !l) {
        s = DDP_FAIL(DDP_ERR_NOMEM, "recv: out of memory");
        goto out;
    }
    int nk = 0;
    for (int r = 0; r < n; r++) {
        if (r == g->my) continue;
        snprintf(keys[nk], sizeof keys[nk], "pg/%llu/%d/p2p/c%llu/%d>%d/n%llu/send",
                 (unsigned long long)g->world_gen, g->id, (unsigned long long)w->chunk, r, g->my,
                 (unsigned long long)g->p2p_recv[r]);
        kp[nk] = keys[nk];
        nk++;
    }
    int senders = nk;
    for (int r = 0; r < n; r++) {
        if (r == g->my) continue;
        pg_key_done(keys[nk], sizeof keys[nk], g, w->chunk, r);
        kp[nk] = keys[nk];
        nk++;
    }
    double until = pg_now() + pg_W.timeout;
    char what[96];
    describe(what, sizeof what, w);
    for (;;) {
        s = store_multi_wait(pg_W.store, kp, senders, block ? 50 : 0, v, l);
        if (s != DDP_OK) goto out;
        int found = -1;
        for (int i = 0; i < senders; i++) {
            if (v[i] && found < 0) found = i;
            free(v[i]);
            v[i] = NULL;
        }
        if (found >= 0) {
            int r = found < g->my ? found : found + 1;
            w->peer = r;
            w->k = g->p2p_recv[r]++;
            s = publish(w);
            goto out;
        }
        if (!block) goto out;
        s = store_multi_wait(pg_W.store, kp + senders, senders, 0, v + senders, l + senders);
        if (s != DDP_OK) goto out;
        int finished = 0;
        for (int i = senders; i < 2 * senders; i++) {
            finished += v[i] != NULL;
            free(v[i]);
            v[i] = NULL;
        }
        if (finished == senders) {
            /* each sender's key is set before its chunk ends: one last look */
            s = store_multi_wait(pg_W.store, kp, senders, 0, v, l);
            bool any = false;
            for (int i = 0; i < senders; i++) {
                any = any || v[i];
                free(v[i]);
                v[i] = NULL;
            }
            if (s == DDP_OK && any) continue;
            if (s == DDP_OK)
                s = DDP_FAIL(DDP_ERR_MISMATCH,
                             "%s: every other rank finished the chunk without sending to it", what);
            goto out;
        }
        if (ddp_interrupt_pending()) {
            s = DDP_FAIL(DDP_ERR_INTERRUPTED, "%s: interrupted (Ctrl-C) while waiting for a sender",
                         what);
            goto out;
        }
        if (pg_now() >= until) {
            s = DDP_FAIL(DDP_ERR_TIMEOUT, "%s: no rank sent to it within %.3g s", what,
                         pg_W.timeout);
            goto out;
        }
    }
out:
    if (v)
        for (int i = 0; i < 2 * n; i++) free(v[i]);
    free(keys);
    free(kp);
    free(v);
    free(l);
    return s;
}

/* Matches (with the check on) and posts one work taken off the queue; a failure is kept
 * in the work, for its wait to raise. */
static void resolve(pg_work *w) {
    ddp_status s = DDP_OK;
    if (w->peer < 0 && pg_is_alive(w->g) && !w->g->broken && w->g->comm) {
        s = find_any_sender(w, true);
        if (s != DDP_OK) {
            fail_work(w, s);
            return;
        }
    }
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
        if (w->peer < 0 && pg_is_alive(w->g) && !w->g->broken && w->g->comm) {
            ddp_status s = find_any_sender(w, false);
            if (s == DDP_OK && w->peer < 0) { /* no sender yet: later */
                p = &w->next_queued;
                continue;
            }
            if (s != DDP_OK) { /* its wait raises the error */
                *p = w->next_queued;
                w->next_queued = NULL;
                fail_work(w, s);
                continue;
            }
        }
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
    DDP_CHECK(pg_buffer_check_device(op, g->backend, b));
    bool any_source = !is_send && peer_global == PG_ANY_SOURCE;
    if (any_source && !pg_W.check)
        return DDP_FAIL(DDP_ERR_ARG,
                        "recv: without src (from any rank) needs the collective check, which "
                        "finds the sender; pass src, or run without --no-collective-check");
    if (any_source && g->size < 2)
        return DDP_FAIL(DDP_ERR_ARG, "recv: from any rank, but this rank is alone in its group");
    int peer = any_source ? -1 : pg_group_rank_of(g, peer_global);
    if (!any_source && (peer < 0 || peer == g->my))
        return DDP_FAIL(DDP_ERR_ARG, "%s: %s=%d is %s", op, is_send ? "dst" : "src", peer_global,
                        peer == g->my ? "this rank itself (a rank cannot message itself)"
                                      : "not a rank of the group");
    if (!any_source)
        DDP_CHECK(pg_check_running(op, &peer_global, 1,
                                   is_send ? "a send needs its receiver running too"
                                           : "a recv needs its sender running too"));
    if (g->broken)
        return DDP_FAIL(DDP_ERR_COMM,
                        "%s: this group's connections broke in an earlier call; "
                        "every rank must call a collective (e.g. dist.barrier()) "
                        "to rebuild them before sending again",
                        op);
    pg_work *w = ddp_calloc(1, sizeof *w);
    if (!w) return DDP_FAIL(DDP_ERR_NOMEM, "%s: out of memory", op);
    if (left_waiting && pg_W.check) { /* the evidence of an old crossed wait goes now */
        char wk[128];
        snprintf(wk, sizeof wk, "pg/%llu/%d/p2p/c%llu/waiting/%d", (unsigned long long)g->world_gen,
                 g->id, (unsigned long long)pg_W.chunk_id, g->my);
        (void)store_set(pg_W.store, wk, "", 0);
        left_waiting = false;
    }
    w->g = pg_retain(g);
    w->is_send = is_send;
    w->peer = peer;
    w->chunk = pg_W.chunk_id;
    if (!any_source) w->k = is_send ? g->p2p_sent[peer]++ : g->p2p_recv[peer]++;
    w->data = b->data;
    w->nbytes = (size_t)pg_buffer_numel(b) * dtype_size(b->dt);
    fp_shape(w->mine, sizeof w->mine, b->dt, b->ndim, b->sizes);
    snprintf(w->layout, sizeof w->layout, "%s %zu", dtype_name(b->dt), w->nbytes);
    if (pg_W.check && !any_source) { /* a recv from any rank publishes once it has a sender */
        ddp_status s = publish(w);
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
    pg_work *w = ddp_calloc(1, sizeof *w);
    if (!w) {
        pg_job_free(job);
        return DDP_FAIL(DDP_ERR_NOMEM, "%s: out of memory", op);
    }
    w->g = pg_retain(g);
    w->peer = -1; /* a collective has no peer */
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
    pg_job_times(w->job, &w->t_start, &w->t_end);
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

void pg_work_times(const pg_work *w, double *start, double *end) {
    if (w->job) {
        pg_job_times(w->job, start, end);
        return;
    }
    *start = w->t_start;
    *end = w->t_end;
}

int pg_work_source(const pg_work *w) {
    return w->peer < 0 ? -1 : w->g->ranks[w->peer];
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
