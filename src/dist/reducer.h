/* reducer.h — DDP's gradient reducer, as PyTorch's (torch/csrc/distributed/c10d/
 * reducer.cpp): the parameters' gradients are packed into a few flat buckets, each
 * all-reduced as soon as its last gradient is ready, while backward goes on.
 *
 * Buckets: the parameters are walked in reverse order (the order backward usually
 * finishes them) and cut into buckets of at most `first_cap` bytes for the first and
 * `cap` for the others (a bucket closes once it reaches its cap; one dtype per bucket).
 * After the first synchronised iteration the buckets are built again the same way over
 * the order in which the gradients became ready, with rank 0's order used by every rank
 * (reducer_rebuild), unless find_unused_parameters is set (as PyTorch).
 *
 * One backward pass: reducer_prepare (end of forward), then reducer_mark_ready for each
 * parameter whose gradient became final (its autograd hook): the gradient is copied into
 * its bucket, multiplied by 1/world_size (with no comm hook), and a bucket whose every
 * gradient is in becomes ready; ready buckets are launched in bucket order: with the
 * default hook here (an async all_reduce SUM), otherwise handed to the caller
 * (reducer_next_launch) for its own hook. Once every bucket is launched the caller calls
 * reducer_finalize, which waits for every all_reduce and writes the averaged gradients
 * back into each parameter's .grad (or leaves .grad a view of the bucket).
 *
 * The reducer holds references to the parameters, the group and its bucket tensors; it
 * knows nothing about autograd (the caller wires the hooks) or Lua. Lua thread only. */
#ifndef DDP_DIST_REDUCER_H
#define DDP_DIST_REDUCER_H

#include <stdbool.h>
#include <stddef.h>

#include "dist/process_group.h"
#include "tensor/tensor.h"

typedef struct reducer reducer;

typedef struct {
    size_t first_cap; /* bytes: the first bucket's cap */
    size_t cap;       /* bytes: every other bucket's cap */
    bool gradient_as_bucket_view;
    bool find_unused_parameters;
} reducer_options;

/* A reducer over params[0..n) (float tensors that require grad, contiguous, on the CPU;
 * retained) named names[0..n) (copied; for messages) on group g (retained; NULL: the
 * default group). DDP_ERR_ARG naming the parameter otherwise. */
ddp_status reducer_new(process_group *g, tensor *const *params, const char *const *names, int n,
                       const reducer_options *o, reducer **out);
void reducer_free(reducer *r); /* NULL-safe; waits for all_reduces still running */

/* The forward pass's checks and set-up, PyTorch's prepare_for_forward/backward:
 * reducer_check_finished fails (DDP_ERR_STATE, PyTorch's words, naming the parameters
 * and their indices) when the last synchronised backward did not reduce every bucket;
 * reducer_prepare arms the next backward: used[i] false for a parameter the forward's
 * output does not reach (only with find_unused_parameters; used may be NULL). */
ddp_status reducer_check_finished(reducer *r);
ddp_status reducer_prepare(reducer *r, const bool *used);
/* Whether a backward is armed (prepare ran and finalize has not). */
bool reducer_armed(const reducer *r);

/* Parameter i's gradient is final: copy it in, launch what became ready. A parameter
 * marked twice in one pass is an error (PyTorch's). Does nothing when not armed. */
ddp_status reducer_mark_ready(reducer *r, int i);
/* The next ready bucket that the caller's comm hook must launch, in order, or -1. */
int reducer_next_launch(reducer *r);
/* Every bucket of this pass has been launched. */
bool reducer_all_launched(const reducer *r);
/* Waits for every default all_reduce, then writes the gradients back; disarms. */
ddp_status reducer_finalize(reducer *r);

/* Rebuilds the buckets in gradient-ready order (rank 0's, broadcast) when the first
 * synchronised iteration has recorded one and they were not rebuilt yet: a collective,
 * so every rank calls it at the same point (the start of a forward). *did says whether
 * it rebuilt. */
ddp_status reducer_rebuild(reducer *r, bool *did);

/* Uses a comm hook of the caller's from now on: gradients go in undivided and ready
 * buckets wait for reducer_next_launch (PyTorch: the hook divides). */
void reducer_set_external_hook(reducer *r, bool external);

/* Join's shadow of one backward pass on a rank out of data: every bucket zeroed and
 * all-reduced in order with the default hook (a caller with its own hook launches them
 * itself: zero with reducer_zero_buckets), and, with find_unused_parameters, the
 * used-parameter map; .grad is not touched. */
ddp_status reducer_shadow_backward(reducer *r);
void reducer_zero_buckets(reducer *r);

/* ---- what the summary shows --------------------------------------------------------- */
int reducer_bucket_count(const reducer *r);
/* Bucket b: its flat buffer (borrowed), its parameter indices (borrowed, *n of them). */
tensor *reducer_bucket_buffer(const reducer *r, int b);
const int *reducer_bucket_params(const reducer *r, int b, int *n);
/* The last synchronised pass's times (seconds on the monotonic clock, 0 when unknown):
 * when bucket b became ready (its all_reduce was launched), when its backend call
 * started and ended on the helper thread; and the finalize call's start and end. */
void reducer_bucket_times(const reducer *r, int b, double *ready, double *start, double *end);
void reducer_finalize_times(const reducer *r, double *start, double *end);
/* Seconds on CLOCK_MONOTONIC, the clock of every time above. */
double reducer_now(void);
/* Buckets rebuilt in ready order yet; iterations synchronised so far. */
bool reducer_rebuilt(const reducer *r);

#endif
