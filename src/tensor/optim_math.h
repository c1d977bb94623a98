/* optim_math.h — one element of the optimizer steps, one definition for the CPU loop
 * (tensor_cpu.c) and the CUDA kernel (tensor_cuda.cu), so that a model trained on a GPU
 * takes the same steps, to the bit, as on the CPU. The formulas are PyTorch's
 * single-tensor ones (src/nn/optim.h); the scalars PyTorch computes in Python (bias
 * corrections, step size) arrive computed in double and are used in the parameter's
 * own precision. Read by gcc and nvcc. */
#ifndef DDP_TENSOR_OPTIM_MATH_H
#define DDP_TENSOR_OPTIM_MATH_H

#include <math.h>
#include <stdbool.h>

#include "base/host_device.h"

/* The scalars of an SGD step (see tensor_sgd_update in tensor.h). */
typedef struct {
    double lr, momentum, dampening, weight_decay;
    bool nesterov, first_step;
} optim_sgd_scalars;

/* The scalars of an Adam / AdamW step: step_size = lr / (1 - b1^step), bc2_sqrt =
 * sqrt(1 - b2^step), decay = 1 - lr * wd for AdamW (1 for Adam), l2 = wd for Adam (0 for
 * AdamW). */
typedef struct {
    double beta1, beta2, eps, step_size, bc2_sqrt, decay, l2;
    bool decoupled_decay; /* AdamW with wd != 0: p *= decay first */
} optim_adam_scalars;

/* SGD on element i (buf may be NULL when momentum is 0). */
DDP_HOST_DEVICE static inline void sgd_element_f32(float *p, const float *g, float *buf,
                                                   const optim_sgd_scalars *k) {
    float d = *g;
    if (k->weight_decay != 0.0) d += (float)k->weight_decay * *p;
    if (k->momentum != 0.0) {
        float fm = (float)k->momentum;
        *buf = k->first_step ? d : fm * *buf + (float)(1.0 - k->dampening) * d;
        d = k->nesterov ? d + fm * *buf : *buf;
    }
    *p -= (float)k->lr * d;
}

DDP_HOST_DEVICE static inline void sgd_element_f64(double *p, const double *g, double *buf,
                                                   const optim_sgd_scalars *k) {
    double d = *g;
    if (k->weight_decay != 0.0) d += k->weight_decay * *p;
    if (k->momentum != 0.0) {
        *buf = k->first_step ? d : k->momentum * *buf + (1.0 - k->dampening) * d;
        d = k->nesterov ? d + k->momentum * *buf : *buf;
    }
    *p -= k->lr * d;
}

/* Adam on one element, PyTorch 1.13's order: exp_avg.mul_(b1).add_(g, alpha=1 - b1),
 * exp_avg_sq.mul_(b2).addcmul_(g, g, value=1 - b2), p.addcdiv_(m, denom, -step_size). */
DDP_HOST_DEVICE static inline void adam_element_f32(float *p, const float *g, float *m, float *v,
                                                    const optim_adam_scalars *k) {
    float pi = *p;
    if (k->decoupled_decay) pi *= (float)k->decay;
    float gi = *g;
    if (k->l2 != 0.0) gi += (float)k->l2 * pi;
    *m = (float)k->beta1 * *m + (float)(1.0 - k->beta1) * gi;
    *v = (float)k->beta2 * *v + (float)(1.0 - k->beta2) * gi * gi;
    float denom = sqrtf(*v) / (float)k->bc2_sqrt + (float)k->eps;
    *p = pi - (float)k->step_size * (*m / denom);
}

DDP_HOST_DEVICE static inline void adam_element_f64(double *p, const double *g, double *m,
                                                    double *v, const optim_adam_scalars *k) {
    double pi = *p;
    if (k->decoupled_decay) pi *= k->decay;
    double gi = *g + k->l2 * pi;
    *m = k->beta1 * *m + (1.0 - k->beta1) * gi;
    *v = k->beta2 * *v + (1.0 - k->beta2) * gi * gi;
    double denom = sqrt(*v) / k->bc2_sqrt + k->eps;
    *p = pi - k->step_size * (*m / denom);
}

#endif
