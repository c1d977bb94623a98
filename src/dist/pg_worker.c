/* pg_worker.c — backend calls on a helper thread, so that Ctrl-C can leave a blocked one.
 *
 * The Lua thread hands each call to a helper thread and waits in 50 ms slices, looking at
 * the Ctrl-C flag. What Ctrl-C does then depends on the backend (comm_can_abort): NCCL's
 * non-blocking communicators can be woken (comm_abort), so the call is aborted and waited
 * for, and nothing is left behind. Gloo cannot be woken once a collective has started
 * (DESIGN.md, "Facts checked about Debian's Gloo"): a call ends by finishing, by a peer's
 * death or by its timeout. So with Gloo the Lua thread returns at once and ABANDONS the
 * call: the helper
 * thread keeps running it and from then on owns the group's communicator (Gloo contexts
 * are not thread-safe) and scratch buffer; the tensors whose memory the call uses are
 * retained by the Lua thread before it lets go (tensor refcounts are not atomic, so the
 * helper never touches them) and released by the Lua thread once the helper reported
 * that it is done. A fresh helper serves the next call. The helper never touches Lua,
 * the store or the process group. A point-to-point wait runs on the helper too, but Gloo
 * can wake that one, so on Ctrl-C it is aborted rather than abandoned.
 *
 * Calls queue: an asynchronous all_reduce (pg_call_post) returns as soon as its job is
 * queued, and the helper runs the queue in order, so several outstanding all_reduces
 * complete in the order they were posted and a blocking call posted after them runs
 * after them (every rank posts the same calls in the same order, which Gloo needs).
 * Abandoning a helper abandons its queue: the running job goes with it, the jobs that
 * have not started fail ("interrupted") without running, and every group they were for
 * is marked broken. A job is shared by its owner (a work object, or pg_call_run's frame)
 * and, once abandoned, the helper; both drop it on the Lua thread. */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/alloc.h"
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

struct pg_job {
    pg_call call;
    comm *comm;
    process_group *g; /* retained (Lua thread) */
    tensor *keep;     /* borrowed: what the call writes; retained when abandoned */
    bool sync;        /* pg_call_run's: it may use g's scratch buffer */
    bool abandoned;   /* Lua thread: it went with an abandoned helper while it ran */
    int refs;         /* Lua thread only: the owner, and an abandoned helper */
    atomic_bool done; /* set by the helper (or the Lua thread for a dropped job) */
    ddp_status status;
    char message[1024];
    double t_start, t_end; /* CLOCK_MONOTONIC seconds the backend call ran (helper) */
    struct pg_job *next;   /* the helper's queue */
};

typedef struct worker {
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond; /* a job was posted / finished / the worker should quit */
    /* under lock */
    pg_job *head, *tail; /* jobs not started yet, in order */
    pg_job *running;     /* the job the helper runs now */
    atomic_bool has_job; /* head != NULL; also read unlocked */
    bool quit;           /* leave once the queue is empty */
    bool stop;           /* leave after the running job (abandoned) */
    bool exited;         /* the helper thread returned */
    /* Lua thread only: what an abandoned helper holds until it is done */
    pg_job *held; /* the job it was running */
    comm *comm;   /* that job's communicator */
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

/* CLOCK_MONOTONIC in seconds (the reducer's timeline clock). */
static double mono_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void *worker_main(void *arg) {
    worker *w = arg;
    /* a communicator whose call failed: the calls queued behind it on the same one are
     * failed without running (Gloo's state is unknown after an exception) */
    comm *failed = NULL;
    pthread_mutex_lock(&w->lock);
    for (;;) {
        if (!w->head && !w->quit && !w->stop) { /* the next call often follows at once */
            pthread_mutex_unlock(&w->lock);
            spin_for(&w->has_job, SPIN_NEXT_US);
            pthread_mutex_lock(&w->lock);
        }
        if (!w->head) failed = NULL; /* drained: a communicator may be replaced now */
        while (!w->head && !w->quit && !w->stop) pthread_cond_wait(&w->cond, &w->lock);
        if (!w->head || w->stop) break; /* quit with nothing to do, or abandoned */
        pg_job *job = w->head;
        w->head = job->next;
        if (!w->head) w->tail = NULL;
        atomic_store_explicit(&w->has_job, w->head != NULL, memory_order_release);
        w->running = job;
        pthread_mutex_unlock(&w->lock);
        job->t_start = mono_seconds();
        ddp_status s;
        if (job->comm && job->comm == failed)
            s = DDP_FAIL(DDP_ERR_COMM,
                         "%s: an earlier collective on this group failed; this one did not run",
                         job->call.op);
        else
            s = run_call(job->comm, &job->call);
        if (s != DDP_OK && job->call.kind != PG_CALL_P2P_WAIT) failed = job->comm;
        char message[sizeof job->message] = "";
        if (s != DDP_OK) snprintf(message, sizeof message, "%s", ddp_last_error());
        job->t_end = mono_seconds();
        pthread_mutex_lock(&w->lock);
        job->status = s;
        memcpy(job->message, message, sizeof message);
        w->running = NULL;
        atomic_store_explicit(&job->done, true, memory_order_release);
        pthread_cond_broadcast(&w->cond);
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

/* Drops one reference to a job (Lua thread). */
static void job_unref(pg_job *job) {
    if (!job || --job->refs > 0) return;
    pg_release(job->g);
    free(job);
}

/* Joins w's thread (it must have quit or be about to) and frees what it held. */
static void worker_free(worker *w) {
    pthread_join(w->thread, NULL);
    comm_destroy(w->comm);
    job_unref(w->held);
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

void pg_worker_drain(void) {
    worker *w = idle_worker;
    if (!w) return;
    pthread_mutex_lock(&w->lock);
    while (w->head || w->running) pthread_cond_wait(&w->cond, &w->lock);
    pthread_mutex_unlock(&w->lock);
}

void pg_worker_stop_idle(void) {
    worker *w = idle_worker;
    if (!w) return;
    pg_worker_drain(); /* queued calls finish (or fail) first: their works are waited on */
    idle_worker = NULL;
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

/* Marks a job that will never run as failed by Ctrl-C (Lua thread, the job unlinked). */
static void drop_job(pg_job *job) {
    snprintf(job->message, sizeof job->message,
             "%s: interrupted (Ctrl-C) before it started: an earlier call was interrupted "
             "inside the backend, and the group's connections are rebuilt at the next "
             "collective",
             job->call.op);
    job->status = DDP_ERR_INTERRUPTED;
    atomic_store_explicit(&job->done, true, memory_order_release);
    if (job->g && !job->g->broken) pg_mark_broken(job->g);
}

/* Hands w, with the job it runs, that job's communicator (and scratch, for a blocking
 * call) to the helper for good; the jobs that have not started fail without running.
 * False (nothing changed) when the tensors cannot be retained for lack of memory: then
 * the caller must wait for the call instead. Lua thread. */
static bool abandon(worker *w, const pg_buffer *a, int na, const pg_buffer *b, int nb) {
    pthread_mutex_lock(&w->lock);
    int n = na + nb + 1;
    for (pg_job *j = w->head; j; j = j->next) n++;
    tensor **keep = malloc(sizeof *keep * (size_t)n);
    if (!keep) {
        pthread_mutex_unlock(&w->lock);
        return false;
    }
    n = 0;
    for (int i = 0; i < na; i++)
        if (a[i].owner) keep[n++] = tensor_retain(a[i].owner);
    for (int i = 0; i < nb; i++)
        if (b[i].owner) keep[n++] = tensor_retain(b[i].owner);
    pg_job *run = w->running, *queued = w->head;
    w->head = w->tail = NULL;
    atomic_store_explicit(&w->has_job, false, memory_order_release);
    w->stop = true;
    pthread_cond_broadcast(&w->cond); /* it may have finished and gone back to waiting */
    pthread_mutex_unlock(&w->lock);
    if (run) {
        if (run->keep) keep[n++] = tensor_retain(run->keep);
        run->refs++;
        run->abandoned = true;
        w->held = run;
        process_group *g = run->g;
        if (g && g->comm == run->comm) { /* owned by the helper now; destroyed in worker_free */
            w->comm = g->comm;
            g->comm = NULL;
        }
        if (g && run->sync) { /* the call may be gathering into the scratch buffer */
            w->scratch = g->scratch;
            g->scratch = NULL;
            g->scratch_cap = 0;
        }
        if (g) pg_mark_broken(g);
    }
    w->keep = keep;
    w->nkeep = n;
    while (queued) {
        pg_job *j = queued;
        queued = j->next;
        j->next = NULL;
        drop_job(j);
    }
    w->next = abandoned;
    abandoned = w;
    idle_worker = NULL;
    return true;
}

static struct timespec deadline_ms(int ms);

/* Ctrl-C while job waits on w, for a backend that can wake a call in flight: aborts the
 * communicator of each call that runs before job, and of job itself, until job is done
 * (true; its status says it was interrupted). False, having done nothing, when a call to
 * wake is on a backend that cannot (Gloo): then the caller abandons w. The communicators
 * stay alive meanwhile: only this (the Lua) thread destroys them. */
static bool wake_calls(worker *w, pg_job *job) {
    pthread_mutex_lock(&w->lock);
    for (;;) {
        if (atomic_load_explicit(&job->done, memory_order_acquire)) break;
        comm *c = w->running ? w->running->comm : NULL;
        if (w->running && !comm_can_abort(c)) {
            pthread_mutex_unlock(&w->lock);
            return false;
        }
        if (c) comm_abort(c);
        struct timespec until = deadline_ms(SLICE_MS / 5);
        pthread_cond_timedwait(&w->cond, &w->lock, &until);
    }
    pthread_mutex_unlock(&w->lock);
    return true;
}

/* Ctrl-C while job waits on w: wakes the calls through the backend where it can, else
 * abandons w (keeping a[0..na) and b[0..nb) alive). False when neither could be done
 * (then the caller waits for the call after all). */
static bool stop_calls(worker *w, pg_job *job, const pg_buffer *a, int na, const pg_buffer *b,
                       int nb) {
    return wake_calls(w, job) || abandon(w, a, na, b, nb);
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

/* Appends job to w's queue. */
static void post_job(worker *w, pg_job *job) {
    pthread_mutex_lock(&w->lock);
    job->next = NULL;
    if (w->tail)
        w->tail->next = job;
    else
        w->head = job;
    w->tail = job;
    atomic_store_explicit(&w->has_job, true, memory_order_release);
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

/* Waits until job is done (true) or Ctrl-C was pressed (false). */
static bool wait_job(worker *w, pg_job *job) {
    if (spin_for(&job->done, SPIN_CALL_US)) return true; /* a short call ends first */
    pthread_mutex_lock(&w->lock);
    bool done;
    while (!(done = atomic_load_explicit(&job->done, memory_order_acquire))) {
        struct timespec until = deadline_ms(SLICE_MS);
        int rc = pthread_cond_timedwait(&w->cond, &w->lock, &until);
        if (atomic_load_explicit(&job->done, memory_order_acquire)) {
            done = true;
            break;
        }
        if (rc == ETIMEDOUT && ddp_interrupt_pending()) break;
    }
    pthread_mutex_unlock(&w->lock);
    return done;
}

/* Waits for job without looking at Ctrl-C. */
static void wait_job_always(worker *w, pg_job *job) {
    pthread_mutex_lock(&w->lock);
    while (!atomic_load_explicit(&job->done, memory_order_acquire))
        pthread_cond_wait(&w->cond, &w->lock);
    pthread_mutex_unlock(&w->lock);
}

/* The outcome of a finished job, as this thread's status. */
static ddp_status job_status(const pg_job *job) {
    if (job->status != DDP_OK)
        return ddp_fail_at(__FILE__, __LINE__, job->status, "%s", job->message);
    return DDP_OK;
}

/* The helper the next call goes to, started if need be; NULL when none can be. */
static worker *helper(void) {
    pg_worker_reap();
    if (!idle_worker) idle_worker = worker_start();
    return idle_worker;
}

/* A new job for call on g (refs 1), or NULL. */
static pg_job *job_new(process_group *g, const pg_call *call, comm *c, tensor *keep, bool sync) {
    pg_job *job = ddp_calloc(1, sizeof *job);
    if (!job) return NULL;
    job->call = *call;
    job->comm = c;
    job->g = g ? pg_retain(g) : NULL;
    job->keep = keep;
    job->sync = sync;
    job->refs = 1;
    return job;
}

/* The interrupted-inside-the-backend error of `op`. */
static ddp_status interrupted(const char *op) {
    return DDP_FAIL(DDP_ERR_INTERRUPTED,
                    "%s: interrupted (Ctrl-C) inside the backend; the call finishes or times out "
                    "in the background, and the group's connections are rebuilt at the next "
                    "collective",
                    op);
}

ddp_status pg_call_run(process_group *g, const pg_call *call, const pg_buffer *keep_a, int na,
                       const pg_buffer *keep_b, int nb) {
    worker *w = helper();
    pg_job *job = w ? job_new(g, call, g->comm, NULL, true) : NULL;
    if (!job) return run_call(g->comm, call); /* no thread: as before, uninterruptible */
    post_job(w, job);
    if (!wait_job(w, job) && !stop_calls(w, job, keep_a, na, keep_b, nb))
        wait_job_always(w, job); /* cannot keep the tensors alive: wait after all */
    ddp_status s = pg_job_done(job) ? job_status(job) : interrupted(call->op);
    job_unref(job);
    return s;
}

ddp_status pg_call_post(process_group *g, const pg_call *call, tensor *keep, pg_job **out) {
    *out = NULL;
    worker *w = helper();
    pg_job *job = w ? job_new(g, call, g->comm, keep, false) : NULL;
    if (!job) { /* no thread: run it now, uninterruptible, and hand back a finished job */
        job = job_new(g, call, g->comm, keep, false);
        if (!job) return DDP_FAIL(DDP_ERR_NOMEM, "%s: out of memory", call->op);
        job->status = run_call(g->comm, call);
        if (job->status != DDP_OK)
            snprintf(job->message, sizeof job->message, "%s", ddp_last_error());
        atomic_store(&job->done, true);
        *out = job;
        return DDP_OK;
    }
    post_job(w, job);
    *out = job;
    return DDP_OK;
}

void pg_job_times(const pg_job *job, double *start, double *end) {
    bool done = pg_job_done(job);
    *start = done ? job->t_start : 0;
    *end = done ? job->t_end : 0;
}

bool pg_job_done(const pg_job *job) {
    return atomic_load_explicit(&job->done, memory_order_acquire);
}

ddp_status pg_job_wait(pg_job *job) {
    if (!pg_job_done(job) && !job->abandoned) {
        worker *w = idle_worker; /* a job not done is in the idle helper's queue */
        if (w && !wait_job(w, job) && !stop_calls(w, job, NULL, 0, NULL, 0))
            wait_job_always(w, job);
    }
    if (!pg_job_done(job)) return interrupted(job->call.op); /* abandoned while it ran */
    return job_status(job);
}

void pg_job_free(pg_job *job) {
    if (!job) return;
    if (!pg_job_done(job) && !job->abandoned && idle_worker) {
        /* nobody waits for it any more, but the helper writes into its tensor: finish */
        if (!wait_job(idle_worker, job) && !stop_calls(idle_worker, job, NULL, 0, NULL, 0))
            wait_job_always(idle_worker, job);
    }
    job_unref(job);
}

ddp_status pg_p2p_wait(comm_p2p *p, int timeout_ms) {
    worker *w = helper();
    pg_call call = {.kind = PG_CALL_P2P_WAIT, .op = "p2p", .p2p = p, .timeout_ms = timeout_ms};
    pg_job *job = w ? job_new(NULL, &call, NULL, NULL, true) : NULL;
    if (!job) return comm_p2p_wait(p, timeout_ms);
    post_job(w, job);
    bool aborted = false;
    if (!wait_job(w, job)) {
        /* Gloo's wait on one message can be woken, unlike a collective: no need to abandon
         * it (but an all_reduce queued before it and running now is abandoned) */
        pthread_mutex_lock(&w->lock);
        bool mine_runs = w->running == job || w->head == job;
        pthread_mutex_unlock(&w->lock);
        if (mine_runs || !abandon(w, NULL, 0, NULL, 0)) {
            comm_p2p_abort(p);
            wait_job_always(w, job);
        }
        aborted = true;
    }
    ddp_status s = DDP_OK;
    if (!pg_job_done(job) || (aborted && job->status != DDP_OK))
        s = DDP_FAIL(DDP_ERR_INTERRUPTED, "interrupted (Ctrl-C) while the message was in flight");
    else
        s = job_status(job); /* a message that arrived before the abort counts as done */
    job_unref(job);
    return s;
}
