/* batchnorm.h — batch normalisation (nn.BatchNorm1d, nn.SyncBatchNorm) as one
 * differentiable op with PyTorch's CPU arithmetic.
 *
 * x is (N, C) or (N, C, L); statistics are per channel c over the N*L values. In training
 * (or without running statistics) the op normalises with the batch's mean and biased
 * variance, and updates running_mean / running_var in place (when given) with momentum,
 * the variance unbiased (divided by count - 1), as PyTorch does; in evaluation it uses
 * the running statistics. y = (x - mean) / sqrt(var + eps) * weight + bias.
 *
 * With a reducer, the batch is spread over processes: the op sums its per-channel
 * statistics over all of them (counts and sums, then centered squared sums, in forward;
 * the sums of dy and of dy * (x - mean) in backward), so N processes with b rows each
 * compute the statistics, outputs and input gradients of one process with N * b rows.
 * weight and bias get this process's share of their gradient, as in PyTorch (DDP's
 * all-reduce of parameter gradients adds the shares). This layer knows nothing of how the
 * sum is done: the caller supplies it. */
#ifndef DDP_NN_BATCHNORM_H
#define DDP_NN_BATCHNORM_H

#include "nn/autograd.h"

/* Sums buf[0..n) element-wise over every process of the batch, in place. Called in
 * forward and again in backward, in the same order on every process. */
typedef struct {
    ddp_status (*sum)(void *ctx, double *buf, int64_t n);
    void *ctx;
    void (*release)(void *ctx); /* NULL-safe ctx; called once nobody needs ctx */
} bn_reducer;

/* weight, bias, running_mean, running_var may each be NULL (affine=false,
 * track_running_stats=false); given, they are (C) tensors of x's dtype. `training` says
 * batch statistics are used (PyTorch's `training or running stats absent`). reducer may
 * be NULL (this process's batch alone); the op takes over reducer->ctx whatever happens.
 * Errors (wrong dimensions, C mismatch, one value per channel in training) name the
 * shapes as PyTorch's messages do. */
ddp_status ag_batch_norm(const tensor *x, const tensor *weight, const tensor *bias,
                         tensor *running_mean, tensor *running_var, bool training, double momentum,
                         double eps, const bn_reducer *reducer, tensor **out);

#endif
