/* process_group.c — the collectives of a process group: argument checks, the
 * fingerprint exchange that catches mismatched calls before they can hang, and the call
 * into the backend (comm.h).
 *
 * The exchange: each member sets "pg/<gen>/<group>/fp/c<chunk>/s<seq>/r<rank>" to its
 * fingerprint, then waits (50 ms slices, so Ctrl-C and the watchdog are checked) until
 * every member's key is there, or a missing member has published that it finished the
 * chunk. Every rank then holds the same data and so raises the same message. Only once
 * all agree does anyone enter Gloo, through pg_call_run (pg_worker.c), which Ctrl-C can
 * leave. Keys are per chunk, so a chunk interrupted half-way leaves no offset in the
 * numbering of the next. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/interrupt.h"
#include "dist/fingerprint.h"
#include "dist/pg_internal.h"

#define SLICE_MS 50

int64_t pg_buffer_numel(const pg_buffer *b) {
    int64_t n = 1;
    for (int i = 0; i < b->ndim; i++) n *= b->sizes[i];
    return n;
}

static size_t buffer_bytes(const pg_buffer *b) {
    return (size_t)pg_buffer_numel(b) * dtype_size(b->dt);
}

/* ---- readiness ---------------------------------------------------------------------- */

/* The error for a communicator that could not be rebuilt (keeps the backend's reason). */
static ddp_status rebuild_failed(const char *op) {
    char why[512];
    snprintf(why, sizeof why, "%s", ddp_last_error());
    return DDP_FAIL(DDP_ERR_COMM,
                    "%s: the group's connections broke in an earlier call and could not be "
                    "rebuilt (%s); call destroy_process_group() and init_process_group() again",
                    op, why);
}

ddp_status pg_ready(process_group **gp, const char *op) {
    if (!*gp) DDP_CHECK(pg_default(gp));
    process_group *g = *gp;
    if (!pg_is_alive(g))
        return DDP_FAIL(DDP_ERR_STATE,
                        "%s: this process group was destroyed by destroy_process_group(); "
                        "call init_process_group (and new_group) again",
                        op);
    if (g->my < 0) {
        char who[256];
        fp_rank_list(who, sizeof who, g->ranks, g->size);
        return DDP_FAIL(DDP_ERR_ARG,
                        "%s: rank %d is not a member of this group (%s); new_group gave it "
                        "GroupMember.NON_GROUP_MEMBER, so only the members may call collectives "
                        "on it (test with `if group ~= dist.GroupMember.NON_GROUP_MEMBER`)",
                        op, pg_W.rank, who);
    }
    bool new_chunk = g->chunk_seen != pg_W.chunk_id;
    pg_sync_chunk(g);
    /* With the check on, a broken communicator is rebuilt by every member together
     * inside the next collective's exchange (enter). Without it, a member whose call
     * broke published the generation to rebuild to (pg_mark_broken); the others look
     * for it once per chunk, since they may never have seen a failure themselves (a
     * member interrupted while alone in a collective). */
    if (new_chunk && !pg_W.check && !g->broken) pg_adopt_rebuild(g);
    if (g->broken && (!pg_W.check || g->size == 1)) { /* a group of one has no exchange */
        g->comm_gen++;
        if (pg_connect(g, pg_W.rendezvous_timeout) != DDP_OK) return rebuild_failed(op);
    }
    return DDP_OK;
}

/* ---- the fingerprint exchange --------------------------------------------------------- */

void pg_key_fp(char *out, size_t len, const process_group *g, uint64_t seq, int member) {
    snprintf(out, len, "pg/%llu/%d/fp/c%llu/s%llu/r%d", (unsigned long long)g->world_gen, g->id,
             (unsigned long long)pg_W.chunk_id, (unsigned long long)seq, member);
}

void pg_key_done(char *out, size_t len, const process_group *g, uint64_t chunk, int member) {
    snprintf(out, len, "pg/%llu/%d/done/c%llu/r%d", (unsigned long long)g->world_gen, g->id,
             (unsigned long long)chunk, member);
}

/* Allocated key arrays for the n members. */
typedef struct {
    int n;
    char (*fp)[128];
    char (*done)[128];
    const char **fp_ptr;
    const char **done_ptr;
    char **vals;  /* what each member called (NULL: not yet / finished) */
    char **got;   /* one store answer, before it is sorted into vals */
    size_t *lens; /* the lengths of got */
    bool *finished;
    int *ranks;
} exchange;

static void exchange_free(exchange *x) {
    for (int i = 0; x->vals && i < x->n; i++) free(x->vals[i]);
    free(x->fp);
    free(x->done);
    free(x->fp_ptr);
    free(x->done_ptr);
    free(x->vals);
    free(x->got);
    free(x->lens);
    free(x->finished);
    free(x->ranks);
}

static ddp_status exchange_alloc(exchange *x, int n) {
    memset(x, 0, sizeof *x);
    x->n = n;
    x->fp = ddp_calloc((size_t)n, sizeof *x->fp);
    x->done = ddp_calloc((size_t)n, sizeof *x->done);
    x->fp_ptr = ddp_calloc((size_t)n, sizeof *x->fp_ptr);
    x->done_ptr = ddp_calloc((size_t)n, sizeof *x->done_ptr);
    x->vals = ddp_calloc((size_t)n, sizeof *x->vals);
    x->got = ddp_calloc((size_t)n, sizeof *x->got);
    x->lens = ddp_calloc((size_t)n, sizeof *x->lens);
    x->finished = ddp_calloc((size_t)n, sizeof *x->finished);
    x->ranks = ddp_calloc((size_t)n, sizeof *x->ranks);
    if (!x->fp || !x->done || !x->fp_ptr || !x->done_ptr || !x->vals || !x->got || !x->lens ||
        !x->finished || !x->ranks) {
        exchange_free(x);
        return DDP_FAIL(DDP_ERR_NOMEM, "collective check: out of memory");
    }
    return DDP_OK;
}

/* How many members neither published their call nor finished the chunk. */
static int count_missing(const exchange *x) {
    int missing = 0;
    for (int i = 0; i < x->n; i++) missing += !x->vals[i] && !x->finished[i];
    return missing;
}

/* Looks at the done markers of the members still missing; marks those that finished
 * the chunk having called at most seq collectives (so they will never call #seq). Also
 * looks whether a missing member is dead (the driver publishes "ddplab/dead/<rank>" with
 * how it ended) or left the group (pg_destroy publishes "pg/<gen>/gone/<rank>"): then
 * the collective fails at once, naming it, instead of waiting for the watchdog. */
static ddp_status check_finished(exchange *x, const process_group *g, uint64_t seq, const char *op,
                                 const char *label) {
    int cap = 3 * x->n;
    const char **keys = ddp_calloc((size_t)cap, sizeof *keys);
    int *idx = ddp_calloc((size_t)x->n, sizeof *idx);
    char(*extra)[2][64] = ddp_calloc((size_t)x->n, sizeof *extra);
    char **got = ddp_calloc((size_t)cap, sizeof *got);
    size_t *lens = ddp_calloc((size_t)cap, sizeof *lens);
    ddp_status s = DDP_OK;
    if (!keys || !idx || !extra || !got || !lens) {
        s = DDP_FAIL(DDP_ERR_NOMEM, "collective check: out of memory");
        goto out;
    }
    int m = 0;
    for (int i = 0; i < x->n; i++) {
        if (x->vals[i] || x->finished[i]) continue;
        idx[m++] = i;
    }
    if (m == 0) goto out;
    for (int j = 0; j < m; j++) {
        int i = idx[j];
        snprintf(extra[j][0], sizeof extra[j][0], "ddplab/dead/%d", x->ranks[i]);
        snprintf(extra[j][1], sizeof extra[j][1], "pg/%llu/gone/%d",
                 (unsigned long long)g->world_gen, x->ranks[i]);
        keys[j] = x->done_ptr[i];
        keys[m + j] = extra[j][0];
        keys[2 * m + j] = extra[j][1];
    }
    s = store_multi_wait(pg_W.store, keys, 3 * m, 0, got, lens);
    int dead = -1;
    const char *why = NULL;
    for (int j = 0; s == DDP_OK && j < m; j++) {
        if (got[j] && strtoull(got[j], NULL, 10) <= seq) x->finished[idx[j]] = true;
        /* one that finished the chunk first is told as such ("called nothing") */
        if (dead < 0 && !x->finished[idx[j]] && (got[m + j] || got[2 * m + j])) {
            dead = x->ranks[idx[j]];
            why = got[m + j] ? got[m + j] : got[2 * m + j];
        }
    }
    if (dead >= 0)
        s = DDP_FAIL(DDP_ERR_STATE, "%s (%s): rank %d %s, so this collective can never complete%s",
                     op, label, dead, why,
                     strncmp(why, "called ", 7) == 0
                         ? " (every rank must call destroy_process_group, or none)"
                         : " (:restart starts the ranks again)");
    for (int j = 0; j < 3 * m; j++) free(got[j]);
out:
    free(keys);
    free(idx);
    free(extra);
    free(got);
    free(lens);
    return s;
}

/* Looks whether a missing member waits in a collective of another group that this rank
 * is in too, a call this rank has not made yet (the member's fingerprint for that group's
 * next call is there): then each waits for the other, so the call fails at once, naming
 * where the member waits, instead of at the watchdog. The usual case: some ranks skipped
 * a subgroup's collective and went on to the world's. A last look at the member's key
 * for this call keeps one that just moved on from being blamed. */
static ddp_status check_crossed(const exchange *x, const process_group *g, const char *mine,
                                const char *label) {
    int cap = x->n; /* the last look below reads x->n keys */
    for (const process_group *h = pg_W.live; h; h = h->next_live) cap += x->n;
    char(*keys)[128] = ddp_calloc((size_t)cap, sizeof *keys);
    const char **key_ptr = ddp_calloc((size_t)cap, sizeof *key_ptr);
    int *member = ddp_calloc((size_t)cap, sizeof *member);
    const process_group **group = ddp_calloc((size_t)cap, sizeof *group);
    char **got = ddp_calloc((size_t)cap, sizeof *got);
    size_t *lens = ddp_calloc((size_t)cap, sizeof *lens);
    char(*where)[FP_MAX + 320] = ddp_calloc((size_t)x->n, sizeof *where);
    const char **elsewhere = ddp_calloc((size_t)x->n, sizeof *elsewhere);
    ddp_status s = DDP_OK;
    int m = 0;
    if (!keys || !key_ptr || !member || !group || !got || !lens || !where || !elsewhere) {
        s = DDP_FAIL(DDP_ERR_NOMEM, "collective check: out of memory");
        goto out;
    }
    for (const process_group *h = pg_W.live; h; h = h->next_live) {
        if (h == g || h->my < 0 || h->size == 1 || !pg_is_alive(h)) continue;
        uint64_t next = h->chunk_seen == pg_W.chunk_id ? h->chunk_seq : 0; /* not called yet */
        for (int i = 0; i < x->n; i++) {
            if (x->vals[i] || x->finished[i]) continue;
            int j = pg_group_rank_of(h, x->ranks[i]);
            if (j < 0) continue;
            pg_key_fp(keys[m], sizeof keys[m], h, next, j);
            key_ptr[m] = keys[m];
            member[m] = i;
            group[m++] = h;
        }
    }
    if (m == 0) goto out;
    s = store_multi_wait(pg_W.store, key_ptr, m, 0, got, lens);
    int crossed = 0;
    for (int k = 0; s == DDP_OK && k < m; k++) {
        int i = member[k];
        if (!got[k] || elsewhere[i]) continue;
        const process_group *h = group[k];
        char *nl = strchr(got[k], '\n');
        if (nl) *nl = '\0';
        char where_label[320];
        uint64_t next = h->chunk_seen == pg_W.chunk_id ? h->chunk_seq : 0;
        fp_call_label(where_label, sizeof where_label, next + 1, h->id == 0 ? NULL : h->ranks,
                      h->size);
        snprintf(where[i], sizeof where[i], "%s (%s)", got[k], where_label);
        elsewhere[i] = where[i];
        crossed++;
    }
    if (s != DDP_OK || crossed == 0) goto out;
    /* one last look: a member that arrived here meanwhile is not stuck over there */
    for (int k = 0; k < m; k++) {
        free(got[k]);
        got[k] = NULL;
    }
    s = store_multi_wait(pg_W.store, x->fp_ptr, x->n, 0, got, lens);
    for (int i = 0; i < x->n; i++) {
        if (s == DDP_OK && elsewhere[i] && got[i]) crossed = 0;
        free(got[i]);
        got[i] = NULL;
    }
    if (s == DDP_OK && crossed > 0) {
        char msg[1024];
        fp_crossed_message(msg, sizeof msg, label, mine, elsewhere, x->ranks, x->n);
        s = DDP_FAIL(DDP_ERR_MISMATCH, "%s", msg);
    }
out:
    for (int k = 0; got && k < m; k++) free(got[k]);
    free(keys);
    free(key_ptr);
    free(member);
    free(group);
    free(got);
    free(lens);
    free(where);
    free(elsewhere);
    return s;
}

/* Splits a published value "fingerprint\ncomm_gen broken" in place; notes whether the
 * group's communicator must be rebuilt and the highest generation seen. */
static void split_state(char *value, const process_group *g, bool *rebuild, int *max_gen) {
    char *nl = strchr(value, '\n');
    int gen = 0, broken = 0;
    if (nl) {
        *nl = '\0';
        if (sscanf(nl + 1, "%d %d", &gen, &broken) != 2) gen = broken = 0;
    }
    if (broken || gen != g->comm_gen) *rebuild = true;
    if (gen > *max_gen) *max_gen = gen;
}

/* A member that gives up waiting (the timeout, Ctrl-C) writes a mark into the slot of a
 * member still missing: "\x01<its rank> <missing rank> <why>". The store's exchange lets
 * the first write of a slot win, so every reader sees one value in each slot, its owner's
 * call or the mark, and all members fail the call together: a rank that arrives late
 * reads the mark in its own slot and is told so at once, instead of entering the backend
 * alone and timing out inside Gloo. */
#define GAVE_UP_MARK '\x01'

static bool is_gave_up(const char *value) {
    return value && value[0] == GAVE_UP_MARK;
}

/* Sorts one store answer (x->got) into x->vals; returns whether it held a mark. */
static bool take_answers(exchange *x, const process_group *g, bool *rebuild, int *max_gen) {
    bool marked = false;
    for (int i = 0; i < x->n; i++) {
        if (x->got[i] && !x->vals[i]) {
            if (is_gave_up(x->got[i]))
                marked = true;
            else
                split_state(x->got[i], g, rebuild, max_gen);
            x->vals[i] = x->got[i];
            x->finished[i] = false;
        } else {
            free(x->got[i]);
        }
        x->got[i] = NULL;
    }
    return marked;
}

/* Marks the slot of a missing member (of the next one, when the owner filled it just
 * before). Returns true when the call fails (a mark is in some slot now, or the store is
 * gone), false when every member arrived after all. */
static bool give_up(exchange *x, const process_group *g, const char *why, bool *rebuild,
                    int *max_gen) {
    for (int i = 0; i < x->n; i++) {
        if (x->vals[i] || x->finished[i]) continue;
        char mark[160];
        snprintf(mark, sizeof mark, "%c%d %d %s", GAVE_UP_MARK, g->ranks[g->my], x->ranks[i], why);
        if (store_exchange(pg_W.store, x->fp[i], mark, strlen(mark), NULL, x->fp_ptr, x->n, 0,
                           x->got, x->lens) != DDP_OK)
            break; /* the store is gone: the call fails anyway */
        if (take_answers(x, g, rebuild, max_gen)) break;
    }
    bool fails = count_missing(x) > 0;
    for (int i = 0; i < x->n; i++) {
        if (!is_gave_up(x->vals[i])) continue;
        fails = true;
        free(x->vals[i]); /* the caller's message names the missing members as such */
        x->vals[i] = NULL;
    }
    return fails;
}

/* The failure of a call in which some member gave up waiting (`mark` is what it wrote). */
static ddp_status gave_up_failure(const char *label, const char *mark, int me) {
    int giver = -1, missing = -1, at = 0;
    if (sscanf(mark + 1, "%d %d %n", &giver, &missing, &at) < 2) at = 0;
    const char *why = at > 0 ? mark + 1 + at : "gave up";
    const char *hint = "a collective must be called by every rank of the group; "
                       "DDPLAB_COLLECTIVE_TIMEOUT or --collective-timeout sets the limit";
    if (giver == missing) /* it marked its own slot: it failed before it could publish */
        return DDP_FAIL(DDP_ERR_TIMEOUT,
                        "%s: rank %d %s before it could join the call, so the "
                        "call fails on every rank",
                        label, giver, why);
    if (missing == me)
        return DDP_FAIL(DDP_ERR_TIMEOUT,
                        "%s: this rank arrived after rank %d had stopped waiting for it (rank %d "
                        "%s), so the call fails on every rank (%s)",
                        label, giver, giver, why, hint);
    return DDP_FAIL(DDP_ERR_TIMEOUT,
                    "%s: rank %d stopped waiting for rank %d (it %s), so the call fails on "
                    "every rank (%s)",
                    label, giver, missing, why, hint);
}

/* Publishes `mine` as this rank's call #seq and waits for every member's. On success,
 * *rebuild_gen is -1, or the communicator generation every member now moves to because
 * some member's communicator broke. */
static ddp_status exchange_run(process_group *g, const char *op, uint64_t seq, const char *mine,
                               int *rebuild_gen) {
    *rebuild_gen = -1;
    exchange x;
    DDP_CHECK(exchange_alloc(&x, g->size));
    for (int i = 0; i < g->size; i++) {
        pg_key_fp(x.fp[i], sizeof x.fp[i], g, seq, i);
        pg_key_done(x.done[i], sizeof x.done[i], g, pg_W.chunk_id, i);
        x.fp_ptr[i] = x.fp[i];
        x.done_ptr[i] = x.done[i];
        x.ranks[i] = g->ranks[i];
    }
    char published[FP_MAX + 32];
    snprintf(published, sizeof published, "%s\n%d %d", mine, g->comm_gen, g->broken ? 1 : 0);
    /* #seq-2 can go: publishing #seq-1 took everyone past reading #seq-2 */
    char old[128];
    if (seq >= 2) pg_key_fp(old, sizeof old, g, seq - 2, g->my);
    bool first = true;
    ddp_status s = DDP_OK;
    bool rebuild = false;
    int max_gen = g->comm_gen;
    double until = pg_now() + pg_W.timeout;
    /* the same words on every rank: the call's number in this chunk, not this rank's count */
    char label[320];
    fp_call_label(label, sizeof label, seq + 1, g->id == 0 ? NULL : g->ranks, g->size);
    while (s == DDP_OK && count_missing(&x) > 0) {
        if (first) /* publish ours, drop the old one and wait: one round trip */
            s = store_exchange(pg_W.store, x.fp[g->my], published, strlen(published),
                               seq >= 2 ? old : NULL, x.fp_ptr, g->size, SLICE_MS, x.got, x.lens);
        else
            s = store_multi_wait(pg_W.store, x.fp_ptr, g->size, SLICE_MS, x.got, x.lens);
        first = false;
        if (s != DDP_OK) break;
        if (take_answers(&x, g, &rebuild, &max_gen) || count_missing(&x) == 0) break;
        s = check_finished(&x, g, seq, op, label);
        if (s != DDP_OK) break;
        /* the last missing members may have finished the chunk just now: a mismatch, to
         * be told as one, not a timeout with nobody missing ("ranks  did not arrive") */
        if (count_missing(&x) == 0) break;
        s = check_crossed(&x, g, mine, label);
        if (s != DDP_OK) break;
        pg_p2p_pump(); /* a missing member may be waiting for a message we queued */
        if (ddp_interrupt_pending()) {
            if (!give_up(&x, g, "was interrupted (Ctrl-C)", &rebuild, &max_gen)) break;
            s = DDP_FAIL(DDP_ERR_INTERRUPTED,
                         "%s (%s): interrupted (Ctrl-C) while waiting for the other ranks", op,
                         label);
            break;
        }
        if (pg_now() >= until) {
            char why[64];
            snprintf(why, sizeof why, "timed out after %.3g s", pg_W.timeout);
            if (!give_up(&x, g, why, &rebuild, &max_gen)) break;
            char msg[1024];
            fp_timeout_message(msg, sizeof msg, label, (const char *const *)x.vals, x.finished,
                               x.ranks, g->size, pg_W.timeout);
            s = DDP_FAIL(DDP_ERR_TIMEOUT, "%s", msg);
            break;
        }
    }
    /* Out of memory while waiting: the others must neither wait for this rank nor enter
     * the call without it. A mark tells them, or every member arrived after all and the
     * call goes on (the allocation that failed was only needed to wait). */
    if (s == DDP_ERR_NOMEM) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", ddp_last_error());
        if (give_up(&x, g, "ran out of memory", &rebuild, &max_gen))
            s = DDP_FAIL(DDP_ERR_NOMEM, "%s", msg);
        else
            s = DDP_OK;
    }
    int marked = -1;
    for (int i = 0; s == DDP_OK && i < g->size && marked < 0; i++)
        if (is_gave_up(x.vals[i])) marked = i;
    if (marked >= 0) {
        s = gave_up_failure(label, x.vals[marked], g->ranks[g->my]);
    } else if (s == DDP_OK) {
        bool agree = true;
        for (int i = 0; i < g->size; i++)
            if (!x.vals[i] || strcmp(x.vals[i], mine) != 0) agree = false;
        if (!agree) {
            char msg[1024];
            fp_mismatch_message(msg, sizeof msg, label, (const char *const *)x.vals, x.ranks,
                                g->size);
            s = DDP_FAIL(DDP_ERR_MISMATCH, "%s", msg);
        } else if (rebuild) {
            *rebuild_gen = max_gen + 1;
        }
    }
    exchange_free(&x);
    return s;
}

/* Everything before the backend call: readiness, numbering, activity, exchange. */
static ddp_status enter(process_group **gp, const char *op, const char *fp, const pg_buffer *b) {
    DDP_CHECK(pg_ready(gp, op));
    process_group *g = *gp;
    if (b) DDP_CHECK(pg_buffer_check_device(op, g->backend, b));
    /* a member that does not run this chunk (:on) would leave the others waiting */
    DDP_CHECK(pg_check_running(op, g->ranks, g->size,
                               "a collective needs every rank of its "
                               "group"));
    pg_p2p_pump(); /* queued messages a peer may be waiting for go out first */
    uint64_t seq = g->chunk_seq++;
    char act[160], shape[96] = "";
    if (b) fp_shape(shape, sizeof shape, b->dt, b->ndim, b->sizes);
    snprintf(act, sizeof act, "in %s #%llu%s%s", op, (unsigned long long)seq + 1,
             shape[0] ? " " : "", shape); /* a barrier has no shape: no trailing space */
    pg_set_activity(act);
    if (!pg_W.check || g->size == 1) return DDP_OK;
    int rebuild_gen;
    ddp_status s = exchange_run(g, op, seq, fp, &rebuild_gen);
    if (s == DDP_OK && rebuild_gen >= 0) {
        /* every member saw the same states, so all rebuild to the same generation now */
        g->comm_gen = rebuild_gen;
        if (pg_connect(g, pg_W.rendezvous_timeout) != DDP_OK) s = rebuild_failed(op);
    }
    if (s != DDP_OK) pg_set_activity(NULL);
    return s;
}

ddp_status pg_agree(process_group *g, const char *op, const char *fp) {
    ddp_status s = enter(&g, op, fp, NULL);
    pg_set_activity(NULL);
    return s;
}

/* After the backend call: a failure marks the communicator for replacement. */
static ddp_status leave(process_group *g, ddp_status s) {
    pg_set_activity(NULL);
    if (s != DDP_OK && s != DDP_ERR_ARG && !g->broken) pg_mark_broken(g);
    return s;
}

/* ---- argument checks ------------------------------------------------------------------ */

static ddp_status check_dtype(const char *op, const pg_buffer *b) {
    if (b->dt == DTYPE_BOOL)
        return DDP_FAIL(DDP_ERR_ARG,
                        "%s: collectives take float32, float64 or int64 tensors, "
                        "not bool",
                        op);
    return DDP_OK;
}

static ddp_status check_reduce(const char *op, const pg_buffer *b, comm_reduce_op rop) {
    DDP_CHECK(check_dtype(op, b));
    if (rop == COMM_AVG && b->dt == DTYPE_INT64)
        return DDP_FAIL(DDP_ERR_ARG,
                        "%s: ReduceOp.AVG needs a float tensor (got int64): the "
                        "average of integers is not an integer; convert with "
                        ":to(torch.float32) or use SUM and divide",
                        op);
    if ((int)rop < COMM_SUM || (int)rop > COMM_MAX)
        return DDP_FAIL(DDP_ERR_ARG, "%s: unknown reduce op %d", op, (int)rop);
    return DDP_OK;
}

/* Translates a global root rank into g's numbering, with a clear error. */
static ddp_status root_of(process_group *g, const char *op, const char *name, int global,
                          int *out) {
    if (!g) DDP_CHECK(pg_default(&g));
    *out = pg_group_rank_of(g, global);
    if (*out < 0) {
        char who[256];
        fp_rank_list(who, sizeof who, g->ranks, g->size);
        return DDP_FAIL(DDP_ERR_ARG, "%s: %s=%d is not a rank of the group (%s)", op, name, global,
                        who);
    }
    return DDP_OK;
}

static bool same_layout(const pg_buffer *a, const pg_buffer *b) {
    return a->dt == b->dt && pg_buffer_numel(a) == pg_buffer_numel(b) &&
           a->dev.type == b->dev.type && a->dev.index == b->dev.index;
}

/* Checks a list of `n` buffers that must each be like `like` and number `size`. */
static ddp_status check_list(const char *op, const char *what, const pg_buffer *list, int n,
                             int size, const pg_buffer *like) {
    if (n != size)
        return DDP_FAIL(DDP_ERR_ARG,
                        "%s: %s must hold one tensor per rank of the group (%d), "
                        "got %d",
                        op, what, size, n);
    char a[96], b[96];
    for (int i = 0; i < n; i++) {
        if (!same_layout(&list[i], like))
            return DDP_FAIL(DDP_ERR_ARG, "%s: %s[%d] is %s but the tensor is %s", op, what, i + 1,
                            fp_shape(a, sizeof a, list[i].dt, list[i].ndim, list[i].sizes),
                            fp_shape(b, sizeof b, like->dt, like->ndim, like->sizes));
    }
    return DDP_OK;
}

/* reduce_scatter, gather and scatter go through the host scratch buffer, which NCCL
 * cannot read: refused there, in words, until they get device scratch. */
static ddp_status staged_only(const process_group *g, const char *op) {
    if (g->backend != COMM_BACKEND_NCCL) return DDP_OK;
    return DDP_FAIL(DDP_ERR_UNSUPPORTED,
                    "%s: not on the NCCL backend yet (all_reduce, broadcast, reduce, "
                    "all_gather, barrier, send and recv are); use backend=\"gloo\"",
                    op);
}

/* ---- collectives -------------------------------------------------------------------- */

ddp_status pg_all_reduce(process_group *g, pg_buffer *b, comm_reduce_op op) {
    DDP_CHECK(check_reduce("all_reduce", b, op));
    char fp[FP_MAX], extra[32];
    snprintf(extra, sizeof extra, ", op=%s", comm_reduce_op_name(op));
    fp_format(fp, sizeof fp, "all_reduce", b->dt, b->ndim, b->sizes, extra);
    DDP_CHECK(enter(&g, "all_reduce", fp, b));
    if (!g->comm) return leave(g, DDP_OK); /* a group of one (NCCL's has a communicator) */
    pg_call k = {.kind = PG_CALL_ALL_REDUCE,
                 .op = "all_reduce",
                 .out = b->data,
                 .dt = b->dt,
                 .count = (size_t)pg_buffer_numel(b),
                 .rop = op};
    return leave(g, pg_call_run(g, &k, b, 1, NULL, 0));
}

ddp_status pg_all_reduce_async(process_group *g, pg_buffer *b, comm_reduce_op op, pg_work **out) {
    *out = NULL;
    DDP_CHECK(check_reduce("all_reduce", b, op));
    char fp[FP_MAX], extra[32];
    snprintf(extra, sizeof extra, ", op=%s", comm_reduce_op_name(op));
    fp_format(fp, sizeof fp, "all_reduce", b->dt, b->ndim, b->sizes, extra);
    /* the check runs now, so a mismatch fails here, on every rank, before Gloo */
    DDP_CHECK(enter(&g, "all_reduce", fp, b));
    pg_set_activity(NULL); /* the rank is not blocked: the call runs on the helper */
    if (!g->comm) return pg_work_for_job(g, "all_reduce", b, NULL, out);
    pg_call k = {.kind = PG_CALL_ALL_REDUCE,
                 .op = "all_reduce",
                 .out = b->data,
                 .dt = b->dt,
                 .count = (size_t)pg_buffer_numel(b),
                 .rop = op};
    pg_job *job;
    DDP_CHECK(pg_call_post(g, &k, b->owner, &job));
    return pg_work_for_job(g, "all_reduce", b, job, out);
}

ddp_status pg_broadcast(process_group *g, pg_buffer *b, int src) {
    DDP_CHECK(check_dtype("broadcast", b));
    int root;
    DDP_CHECK(root_of(g, "broadcast", "src", src, &root));
    char fp[FP_MAX], extra[32];
    snprintf(extra, sizeof extra, ", src=%d", src);
    fp_format(fp, sizeof fp, "broadcast", b->dt, b->ndim, b->sizes, extra);
    DDP_CHECK(enter(&g, "broadcast", fp, b));
    if (!g->comm) return leave(g, DDP_OK); /* a group of one (NCCL's has a communicator) */
    pg_call k = {.kind = PG_CALL_BROADCAST,
                 .op = "broadcast",
                 .out = b->data,
                 .dt = b->dt,
                 .count = (size_t)pg_buffer_numel(b),
                 .root = root};
    return leave(g, pg_call_run(g, &k, b, 1, NULL, 0));
}

ddp_status pg_reduce(process_group *g, pg_buffer *b, int dst, comm_reduce_op op) {
    DDP_CHECK(check_reduce("reduce", b, op));
    int root;
    DDP_CHECK(root_of(g, "reduce", "dst", dst, &root));
    char fp[FP_MAX], extra[48];
    snprintf(extra, sizeof extra, ", dst=%d, op=%s", dst, comm_reduce_op_name(op));
    fp_format(fp, sizeof fp, "reduce", b->dt, b->ndim, b->sizes, extra);
    DDP_CHECK(enter(&g, "reduce", fp, b));
    if (!g->comm) return leave(g, DDP_OK); /* a group of one (NCCL's has a communicator) */
    pg_call k = {.kind = PG_CALL_REDUCE,
                 .op = "reduce",
                 .out = b->data,
                 .dt = b->dt,
                 .count = (size_t)pg_buffer_numel(b),
                 .rop = op,
                 .root = root};
    return leave(g, pg_call_run(g, &k, b, 1, NULL, 0));
}

/* g's scratch area of at least `bytes`, or NULL with a status. Borrowed: valid until the
 * next call or the end of the chunk. */
static void *scratch(process_group *g, size_t bytes, ddp_status *s) {
    *s = DDP_OK;
    if (g->scratch_cap >= bytes && g->scratch) return g->scratch;
    pg_scratch_release(g);
    g->scratch = ddp_malloc(bytes ? bytes : 1);
    if (!g->scratch)
        *s = DDP_FAIL(DDP_ERR_NOMEM, "collective: out of memory for %zu bytes of scratch", bytes);
    else
        g->scratch_cap = bytes;
    return g->scratch;
}

void pg_scratch_release(process_group *g) {
    free(g->scratch);
    g->scratch = NULL;
    g->scratch_cap = 0;
}

ddp_status pg_all_gather(process_group *g, pg_buffer *outs, int nout, const pg_buffer *in) {
    DDP_CHECK(check_dtype("all_gather", in));
    DDP_CHECK(pg_ready(&g, "all_gather"));
    DDP_CHECK(check_list("all_gather", "the output list", outs, nout, g->size, in));
    char fp[FP_MAX];
    fp_format(fp, sizeof fp, "all_gather", in->dt, in->ndim, in->sizes, "");
    DDP_CHECK(enter(&g, "all_gather", fp, in));
    size_t n = buffer_bytes(in);
    ddp_status s = DDP_OK;
    if (!g->comm) return leave(g, pg_buffer_copy(&outs[0], in, n));
    /* When the list's tensors lie back to back (views of one tensor, e.g. from :chunk),
     * Gloo's own allgather writes them as one buffer; otherwise the ring of
     * comm_all_gather_list writes each tensor in place */
    bool adjacent = true;
    for (int i = 1; i < g->size; i++)
        if ((char *)outs[i].data != (char *)outs[0].data + (size_t)i * n) adjacent = false;
    pg_call k = {.kind = PG_CALL_ALL_GATHER,
                 .op = "all_gather",
                 .in = in->data,
                 .out = outs[0].data,
                 .dt = in->dt,
                 .count = (size_t)pg_buffer_numel(in)};
    if (adjacent) return leave(g, pg_call_run(g, &k, in, 1, outs, g->size));
    /* the pointer array lives in the scratch area, which an interrupted call takes along */
    void **ptrs = scratch(g, sizeof *ptrs * (size_t)g->size, &s);
    if (!ptrs) return leave(g, s);
    for (int i = 0; i < g->size; i++) ptrs[i] = outs[i].data;
    k.kind = PG_CALL_ALL_GATHER_LIST;
    k.outs = ptrs;
    return leave(g, pg_call_run(g, &k, in, 1, outs, g->size));
}

ddp_status pg_all_gather_into(process_group *g, pg_buffer *out, const pg_buffer *in) {
    DDP_CHECK(check_dtype("all_gather_into_tensor", in));
    DDP_CHECK(pg_ready(&g, "all_gather_into_tensor"));
    char a[96], b[96];
    DDP_CHECK(pg_buffer_check_device("all_gather_into_tensor", g->backend, out));
    if (out->dt != in->dt || pg_buffer_numel(out) != pg_buffer_numel(in) * g->size)
        return DDP_FAIL(DDP_ERR_ARG,
                        "all_gather_into_tensor: the output is %s but must hold "
                        "%d x %s (world size times the input)",
                        fp_shape(a, sizeof a, out->dt, out->ndim, out->sizes), g->size,
                        fp_shape(b, sizeof b, in->dt, in->ndim, in->sizes));
    char fp[FP_MAX];
    fp_format(fp, sizeof fp, "all_gather_into_tensor", in->dt, in->ndim, in->sizes, "");
    DDP_CHECK(enter(&g, "all_gather_into_tensor", fp, in));
    if (!g->comm) return leave(g, pg_buffer_copy(out, in, buffer_bytes(in)));
    pg_call k = {.kind = PG_CALL_ALL_GATHER,
                 .op = "all_gather_into_tensor",
                 .in = in->data,
                 .out = out->data,
                 .dt = in->dt,
                 .count = (size_t)pg_buffer_numel(in)};
    return leave(g, pg_call_run(g, &k, in, 1, out, 1));
}

ddp_status pg_reduce_scatter(process_group *g, pg_buffer *out, const pg_buffer *ins, int nin,
                             comm_reduce_op op) {
    DDP_CHECK(check_reduce("reduce_scatter", out, op));
    DDP_CHECK(pg_ready(&g, "reduce_scatter"));
    DDP_CHECK(staged_only(g, "reduce_scatter"));
    DDP_CHECK(check_list("reduce_scatter", "the input list", ins, nin, g->size, out));
    char fp[FP_MAX], extra[32];
    snprintf(extra, sizeof extra, ", op=%s", comm_reduce_op_name(op));
    fp_format(fp, sizeof fp, "reduce_scatter", out->dt, out->ndim, out->sizes, extra);
    DDP_CHECK(enter(&g, "reduce_scatter", fp, out));
    size_t n = buffer_bytes(out);
    if (!g->comm) return leave(g, pg_buffer_copy(out, &ins[0], n));
    /* All-reduce the concatenation and keep our block. This moves 2(n-1)/n of the whole
     * input where a true reduce-scatter moves (n-1)/n, and copies the inputs once into
     * scratch (they must stay as they are). Gloo's own reduce-scatter (the old
     * ReduceScatterHalvingDoubling class) was measured 2 to 4 times SLOWER than this on
     * loopback (it builds its buffers on every call): 2 ranks x 4 MiB, 43 ms against
     * 9-12 ms; 3 ranks x 256 KiB, 11 ms against 4 ms. */
    ddp_status s;
    char *tmp = scratch(g, n * (size_t)g->size, &s);
    if (!tmp) return leave(g, s);
    for (int i = 0; i < g->size; i++) memcpy(tmp + i * n, ins[i].data, n);
    pg_call k = {.kind = PG_CALL_ALL_REDUCE,
                 .op = "reduce_scatter",
                 .out = tmp,
                 .dt = out->dt,
                 .count = (size_t)pg_buffer_numel(out) * (size_t)g->size,
                 .rop = op};
    s = pg_call_run(g, &k, out, 1, ins, nin);
    if (s == DDP_OK) memcpy(out->data, tmp + (size_t)g->my * n, n);
    return leave(g, s);
}

ddp_status pg_gather(process_group *g, const pg_buffer *in, pg_buffer *outs, int nout, int dst) {
    DDP_CHECK(check_dtype("gather", in));
    DDP_CHECK(pg_ready(&g, "gather"));
    DDP_CHECK(staged_only(g, "gather"));
    int root;
    DDP_CHECK(root_of(g, "gather", "dst", dst, &root));
    if (g->my == root) {
        DDP_CHECK(check_list("gather", "gather_list", outs, nout, g->size, in));
    } else if (outs && nout > 0) {
        return DDP_FAIL(DDP_ERR_ARG,
                        "gather: gather_list must be nil on ranks other than dst=%d "
                        "(only the destination receives)",
                        dst);
    }
    char fp[FP_MAX], extra[32];
    snprintf(extra, sizeof extra, ", dst=%d", dst);
    fp_format(fp, sizeof fp, "gather", in->dt, in->ndim, in->sizes, extra);
    DDP_CHECK(enter(&g, "gather", fp, in));
    size_t n = buffer_bytes(in);
    if (!g->comm) return leave(g, pg_buffer_copy(&outs[0], in, n));
    ddp_status s = DDP_OK;
    char *tmp = g->my == root ? scratch(g, n * (size_t)g->size, &s) : NULL;
    if (s != DDP_OK) return leave(g, s);
    pg_call k = {.kind = PG_CALL_GATHER,
                 .op = "gather",
                 .in = in->data,
                 .out = tmp,
                 .dt = in->dt,
                 .count = (size_t)pg_buffer_numel(in),
                 .root = root};
    s = pg_call_run(g, &k, in, 1, outs, nout);
    for (int i = 0; s == DDP_OK && tmp && i < g->size; i++) memcpy(outs[i].data, tmp + i * n, n);
    return leave(g, s);
}

ddp_status pg_scatter(process_group *g, pg_buffer *out, const pg_buffer *ins, int nin, int src) {
    DDP_CHECK(check_dtype("scatter", out));
    DDP_CHECK(pg_ready(&g, "scatter"));
    DDP_CHECK(staged_only(g, "scatter"));
    int root;
    DDP_CHECK(root_of(g, "scatter", "src", src, &root));
    if (g->my == root) {
        DDP_CHECK(check_list("scatter", "scatter_list", ins, nin, g->size, out));
    } else if (ins && nin > 0) {
        return DDP_FAIL(DDP_ERR_ARG,
                        "scatter: scatter_list must be nil on ranks other than "
                        "src=%d (only the source sends)",
                        src);
    }
    char fp[FP_MAX], extra[32];
    snprintf(extra, sizeof extra, ", src=%d", src);
    fp_format(fp, sizeof fp, "scatter", out->dt, out->ndim, out->sizes, extra);
    DDP_CHECK(enter(&g, "scatter", fp, out));
    size_t n = buffer_bytes(out);
    if (!g->comm) return leave(g, pg_buffer_copy(out, &ins[0], n));
    ddp_status s = DDP_OK;
    char *tmp = g->my == root ? scratch(g, n * (size_t)g->size, &s) : NULL;
    if (s != DDP_OK) return leave(g, s);
    for (int i = 0; tmp && i < g->size; i++) memcpy(tmp + i * n, ins[i].data, n);
    pg_call k = {.kind = PG_CALL_SCATTER,
                 .op = "scatter",
                 .in = tmp,
                 .out = out->data,
                 .dt = out->dt,
                 .count = (size_t)pg_buffer_numel(out),
                 .root = root};
    s = pg_call_run(g, &k, out, 1, ins, nin);
    return leave(g, s);
}

ddp_status pg_barrier(process_group *g) {
    DDP_CHECK(enter(&g, "barrier", "barrier()", NULL));
    if (!g->comm) return leave(g, DDP_OK); /* a group of one (NCCL's has a communicator) */
    pg_call k = {.kind = PG_CALL_BARRIER, .op = "barrier"};
    return leave(g, pg_call_run(g, &k, NULL, 0, NULL, 0));
}

ddp_status pg_monitored_barrier(process_group *g, double timeout_s) {
    /* the fingerprint exchange is what tells who arrived, so it runs even when the check
     * is off (every member runs this same call, so all of them exchange), bounded by the
     * caller's timeout instead of the watchdog's */
    double saved_timeout = pg_W.timeout;
    bool saved_check = pg_W.check;
    if (timeout_s > 0) pg_W.timeout = timeout_s;
    pg_W.check = true;
    ddp_status s = enter(&g, "monitored_barrier", "monitored_barrier()", NULL);
    pg_W.timeout = saved_timeout;
    pg_W.check = saved_check;
    if (s == DDP_ERR_TIMEOUT) {
        char msg[1200];
        snprintf(msg, sizeof msg, "%s", ddp_last_error());
        /* the watchdog's hint names its own setting; here the caller's timeout is the limit */
        char *hint = strstr(msg, " (a collective must be called");
        if (hint) *hint = '\0';
        return DDP_FAIL(s, "monitored_barrier: %s (timeout= sets the limit)", msg);
    }
    DDP_CHECK(s);
    if (!g->comm) return leave(g, DDP_OK); /* a group of one (NCCL's has a communicator) */
    pg_call k = {.kind = PG_CALL_BARRIER, .op = "monitored_barrier"};
    return leave(g, pg_call_run(g, &k, NULL, 0, NULL, 0));
}
