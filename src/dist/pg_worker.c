/* pg_worker.c — backend calls on a helper thread, so that Ctrl-C can leave a blocked one.
 *
 * Gloo cannot be woken once a collective has started (DESIGN.md, "Facts checked about
 * Debian's Gloo"): a call ends by finishing, by a peer's death or by its timeout. So the
 * Lua thread hands each call to a helper thread and waits in 50 ms slices, looking at the
 * Ctrl-C flag. On Ctrl-C the Lua thread returns at once and ABANDONS the call: the helper
 * thread keeps running it and from then on owns the group's communicator (Gloo contexts
 * are not thread-safe) and scratch buffer; the tensors whose memory the call uses are
 * retained by the Lua thread before it lets go (tensor refcounts are not atomic, so the
 * helper never touches them) and released by the Lua thread once the helper reported
 * that it is done. A fresh helper serves the next call. The helper never touches Lua,
 * the store or the process group. A point-to-point wait runs on the helper too, but Gloo
 * can wake that one, so on Ctrl-C it is aborted rather than abandoned. */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/interrupt.h"
#include "dist/pg_internal.h"

#define SLICE_MS 50
/* How long a waiting side spins, yielding the CPU, before it sleeps on the condition
 * variable. Each call hands off twice between threads (job posted, job done), and a
 * wake-up through the scheduler cost 30 to 50 us a call on the 2-core development machine
 * (measured: a 1 MiB broadcast took 230 to 340 us against 180 to 250 us for raw Gloo, and
 * as much as raw Gloo once the call ran on the Lua thread or both sides spun). The Lua
 * thread spins through calls of up to a millisecond (a 1 MiB all_reduce on 2 ranks takes
 * about 600 us there: with a 250 us spin it stayed 8 to 29% slower than raw Gloo, with
 * 1 ms it was not); the helper spins through the gap between back-to-back calls. */
#define SPIN_CALL_US 1000
#define SPIN_NEXT_US 250

typedef struct worker {
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond; /* a job was posted / finished / the worker should quit */
    /* under lock */
    atomic_bool has_job;  /* a job waits for (or is in) the helper; also read unlocked */
    atomic_bool job_done; /* the helper finished the last job; also read unlocked */
    bool quit;            /* leave after the current job */
    bool exited;          /* the helper thread returned */
    pg_call call;
    comm *comm;
    ddp_status status;
    char message[1024];
    /* Lua thread only: what an abandoned job holds until its helper is done */
    tensor **keep;
    int nkeep;
    void *scratch;
    struct worker *next;
} worker;

static worker *idle_worker; /* the helper the next call goes to (Lua thread only) */
static worker *abandoned;   /* helpers still running (or not yet reaped) abandoned calls */

/* Runs one comm.h call (on the helper thread). */
static ddp_status run_call(comm *c, const pg_call *k) {
    switch (k->kind) {
    case PG_CALL_ALL_REDUCE:
        return comm_all_reduce(c, k->out, k->dt, k->count, k->rop);
    case PG_CALL_REDUCE:
        return comm_reduce(c, k->out, k->dt, k->count, k->rop, k->root);
    case PG_CALL_BROADCAST:
        return comm_broadcast(c, k->out, k->dt, k->count, k->root);
    case PG_CALL_ALL_GATHER:
        return comm_all_gather(c, k->in, k->out, k->dt, k->count);
    case PG_CALL_ALL_GATHER_LIST:
        return comm_all_gather_list(c, k->in, k->outs, k->dt, k->count);
    case PG_CALL_GATHER:
        return comm_gather(c, k->in, k->out, k->dt, k->count, k->root);
    case PG_CALL_SCATTER:
        return comm_scatter(c, k->in, k->out, k->dt, k->count, k->root);
    case PG_CALL_BARRIER:
        return comm_barrier(c);
    case PG_CALL_P2P_WAIT:
        return comm_p2p_wait(k->p2p, k->timeout_ms);
    }
    return DDP_FAIL(DDP_ERR_ARG, "collective: unknown backend call %d", (int)k->kind);
}

/* Spins for at most limit_us until *flag is true, yielding the CPU; true when it is.
 * Called without the worker's lock. */
static bool spin_for(const atomic_bool *flag, long limit_us) {
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        if (atomic_load_explicit(flag, memory_order_acquire)) return true;
        sched_yield();
        clock_gettime(CLOCK_MONOTONIC, &t);
        long us = (t.tv_sec - t0.tv_sec) * 1000000L + (t.tv_nsec - t0.tv_nsec) / 1000L;
        if (us >= limit_us) return false;
    }
}

static void *worker_main(void *arg) {
    worker *w = arg;
    pthread_mutex_lock(&w->lock);
    for (;;) {
        if (!w->has_job && !w->quit) { /* the next call often follows at once */
            pthread_mutex_unlock(&w->lock);
            spin_for(&w->has_job, SPIN_NEXT_US);
            pthread_mutex_lock(&w->lock);
        }
        while (!w->has_job && !w->quit) pthread_cond_wait(&w->cond, &w->lock);
        if (!w->has_job) break; /* quit with nothing to do */
        pg_call call = w->call;
        comm *c = w->comm;
        pthread_mutex_unlock(&w->lock);
        ddp_status s = run_call(c, &call);
        char message[sizeof w->message] = "";
        if (s != DDP_OK) snprintf(message, sizeof message, "%s", ddp_last_error());
        pthread_mutex_lock(&w->lock);
        w->status = s;
        memcpy(w->message, message, sizeof message);
        w->has_job = false;
        w->job_done = true;
        pthread_cond_broadcast(&w->cond);
        if (w->quit) break;
    }
    w->exited = true;
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

/* A new helper thread, or NULL when one cannot be started. */
static worker *worker_start(void) {
    worker *w = calloc(1, sizeof *w);
    if (!w) return NULL;
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->cond, &attr);
    pthread_condattr_destroy(&attr);
    if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
        pthread_mutex_destroy(&w->lock);
        pthread_cond_destroy(&w->cond);
        free(w);
        return NULL;
    }
    return w;
}

/* Joins w's thread (it must have quit or be about to) and frees what it held. */
static void worker_free(worker *w) {
    pthread_join(w->thread, NULL);
    comm_destroy(w->comm);
    for (int i = 0; i < w->nkeep; i++) tensor_release(w->keep[i]);
    free(w->keep);
    free(w->scratch);
    pthread_mutex_destroy(&w->lock);
    pthread_cond_destroy(&w->cond);
    free(w);
}

void pg_worker_reap(void) {
    for (worker **p = &abandoned; *p;) {
        worker *w = *p;
        pthread_mutex_lock(&w->lock);
        bool finished = w->exited;
        pthread_mutex_unlock(&w->lock);
        if (!finished) {
            p = &w->next;
            continue;
        }
        *p = w->next;
        worker_free(w);
    }
}

void pg_worker_stop_idle(void) {
    worker *w = idle_worker;
    idle_worker = NULL;
    if (!w) return;
    pthread_mutex_lock(&w->lock);
    w->quit = true;
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->lock);
    worker_free(w);
}

int pg_abandoned_calls(void) {
    pg_worker_reap();
    int n = 0;
    for (worker *w = abandoned; w; w = w->next) n++;
    return n;
}

/* Hands the running job of w, with g's communicator and scratch, to the helper for good.
 * False (nothing changed) when the tensors cannot be retained for lack of memory: then
 * the caller must wait for the call instead. Lua thread. */
static bool abandon(worker *w, process_group *g, const pg_buffer *a, int na, const pg_buffer *b,
                    int nb) {
    tensor **keep = malloc(sizeof *keep * (size_t)(na + nb > 0 ? na + nb : 1));
    if (!keep) return false;
    int n = 0;
    for (int i = 0; i < na; i++)
        if (a[i].owner) keep[n++] = tensor_retain(a[i].owner);
    for (int i = 0; i < nb; i++)
        if (b[i].owner) keep[n++] = tensor_retain(b[i].owner);
    w->keep = keep;
    w->nkeep = n;
    /* the call may be gathering into the scratch buffer: it goes with the call */
    w->scratch = g->scratch;
    g->scratch = NULL;
    g->scratch_cap = 0;
    g->comm = NULL; /* owned by the helper now; destroyed in worker_free */
    pthread_mutex_lock(&w->lock);
    w->quit = true;
    pthread_cond_broadcast(&w->cond); /* it may have finished and gone back to waiting */
    pthread_mutex_unlock(&w->lock);
    w->next = abandoned;
    abandoned = w;
    idle_worker = NULL;
    pg_mark_broken(g);
    return true;
}

/* CLOCK_MONOTONIC deadline `ms` from now. */
static struct timespec deadline_ms(int ms) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_nsec += (long)ms * 1000000L;
    while (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

/* Posts call to w, whose lock the caller holds. */
static void post_job(worker *w, const pg_call *call, comm *c) {
    w->call = *call;
    w->comm = c;
    w->has_job = true;
    w->job_done = false;
    pthread_cond_broadcast(&w->cond);
}

/* Waits, holding w's lock, until w's job is done (true) or Ctrl-C was pressed (false). */
static bool wait_job(worker *w) {
    pthread_mutex_unlock(&w->lock);
    spin_for(&w->job_done, SPIN_CALL_US); /* a short call ends before a sleep would begin */
    pthread_mutex_lock(&w->lock);
    while (!w->job_done) {
        struct timespec until = deadline_ms(SLICE_MS);
        int rc = pthread_cond_timedwait(&w->cond, &w->lock, &until);
        if (w->job_done) break;
        if (rc == ETIMEDOUT && ddp_interrupt_pending()) return false;
    }
    return true;
}

/* The outcome of w's finished job, as this thread's status; releases w's lock. */
static ddp_status finish_job(worker *w) {
    ddp_status s = w->status;
    w->comm = NULL;
    pthread_mutex_unlock(&w->lock);
    if (s != DDP_OK) return ddp_fail_at(__FILE__, __LINE__, s, "%s", w->message);
    return DDP_OK;
}

/* The helper the next call goes to, started if need be; NULL when none can be. */
static worker *helper(void) {
    pg_worker_reap();
    if (!idle_worker) idle_worker = worker_start();
    return idle_worker;
}

ddp_status pg_call_run(process_group *g, const pg_call *call, const pg_buffer *keep_a, int na,
                       const pg_buffer *keep_b, int nb) {
    worker *w = helper();
    if (!w) return run_call(g->comm, call); /* no thread: as before, uninterruptible */
    pthread_mutex_lock(&w->lock);
    post_job(w, call, g->comm);
    if (wait_job(w)) return finish_job(w);
    pthread_mutex_unlock(&w->lock);
    if (!abandon(w, g, keep_a, na, keep_b, nb)) {
        /* cannot keep the tensors alive: wait for the call after all */
        pthread_mutex_lock(&w->lock);
        while (!w->job_done) pthread_cond_wait(&w->cond, &w->lock);
        return finish_job(w);
    }
    return DDP_FAIL(DDP_ERR_INTERRUPTED,
                    "%s: interrupted (Ctrl-C) inside the backend; the call finishes or times out "
                    "in the background, and the group's connections are rebuilt at the next "
                    "collective",
                    call->op);
}

ddp_status pg_p2p_wait(comm_p2p *p, int timeout_ms) {
    worker *w = helper();
    if (!w) return comm_p2p_wait(p, timeout_ms);
    pg_call call = {.kind = PG_CALL_P2P_WAIT, .op = "p2p", .p2p = p, .timeout_ms = timeout_ms};
    pthread_mutex_lock(&w->lock);
    post_job(w, &call, NULL);
    if (wait_job(w)) return finish_job(w);
    /* Gloo's wait on one message can be woken, unlike a collective: no need to abandon */
    pthread_mutex_unlock(&w->lock);
    comm_p2p_abort(p);
    pthread_mutex_lock(&w->lock);
    while (!w->job_done) pthread_cond_wait(&w->cond, &w->lock);
    if (finish_job(w) == DDP_OK) return DDP_OK; /* it arrived before the abort */
    return DDP_FAIL(DDP_ERR_INTERRUPTED, "interrupted (Ctrl-C) while the message was in flight");
}
