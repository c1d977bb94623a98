/* optim.h — one-pass parameter updates with PyTorch's exact formulas.
 *
 * Each step function updates one parameter tensor in place from its gradient and its
 * state tensors, in a single loop over the elements (the Lua optimizer classes in
 * lua/optim.lua own the per-parameter state and call these). All tensors of one call
 * must be contiguous float tensors of the same shape, dtype and device; DDP_ERR_ARG
 * otherwise. Cannot fail for valid arguments on the CPU (on a GPU a kernel launch may:
 * DDP_ERR_STATE naming the step). Each step counts one in-place write in the version
 * counter of the parameter and of its state tensors (tensor_bump_version). */
#ifndef DDP_NN_OPTIM_H
#define DDP_NN_OPTIM_H

#include "tensor/tensor.h"

/* torch.optim.SGD: g = grad + wd * p; with momentum: buf = first_step ? g
 * : momentum * buf + (1 - dampening) * g; g = nesterov ? g + momentum * buf : buf;
 * p -= lr * g. momentum_buf may be NULL when momentum == 0. */
ddp_status sgd_step(tensor *param, const tensor *grad, tensor *momentum_buf, double lr,
                    double momentum, double dampening, double weight_decay, bool nesterov,
                    bool first_step);

/* torch.optim.Adam (decoupled = false: L2, g = grad + wd * p) and AdamW (decoupled =
 * true: p *= 1 - lr * wd first). step counts from 1 (already incremented).
 * m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2;
 * p -= lr / (1 - b1^step) * m / (sqrt(v) / sqrt(1 - b2^step) + eps). */
ddp_status adam_step(tensor *param, const tensor *grad, tensor *exp_avg, tensor *exp_avg_sq,
                     int64_t step, double lr, double beta1, double beta2, double eps,
                     double weight_decay, bool decoupled);

/* One parameter of a step over many (sgd_steps, adam_steps). */
typedef struct {
    tensor *param;
    const tensor *grad;
    tensor *exp_avg, *exp_avg_sq; /* Adam's moments */
    int64_t step;                 /* Adam: this parameter's step, counting from 1 */
    tensor *momentum_buf;         /* SGD: NULL when momentum is 0 */
    bool first_step;              /* SGD: the buffer starts as the gradient */
} optim_param;

/* The steps above over n parameters at once, as torch.optim's foreach and fused forms:
 * every parameter is checked before any is updated, then each run of parameters on one
 * device, of one dtype and one step goes to the tensor layer together (on a GPU one
 * kernel launch for up to 32 of them). The same numbers as one call per parameter. */
ddp_status sgd_steps(optim_param *ps, int n, double lr, double momentum, double dampening,
                     double weight_decay, bool nesterov);
ddp_status adam_steps(optim_param *ps, int n, double lr, double beta1, double beta2, double eps,
                      double weight_decay, bool decoupled);

#endif
