/* softmax_math.h — one softmax or log_softmax row, and the exp of its float32 form, one
 * definition for the CPU kernel (tensor_cpu_reduce.c) and the CUDA one (tensor_cuda.cu),
 * so that both devices give the same bits. Read by gcc and nvcc. */
#ifndef DDP_TENSOR_SOFTMAX_MATH_H
#define DDP_TENSOR_SOFTMAX_MATH_H

#include <math.h>
#include <stdbool.h>
#include <stdint.h>

#include "base/host_device.h"

/* exp for float32 softmax rows, where arguments are x - max <= 0 (or NaN): Cephes'
 * expf polynomial on [-ln2/2, ln2/2] scaled by 2^n, within 2 ulp of expf, with no call
 * so that rows vectorise. Below -87 the result is 0 (expf would give a denormal). */
DDP_HOST_DEVICE static inline float softmax_expf(float x) {
    float xc = x != x ? 0.0f : (x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x));
    float n = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f; /* round to nearest */
    float r = xc - n * 0.693359375f + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    union {
        uint32_t u;
        float f;
    } scale;
    scale.u = (uint32_t)((int32_t)n + 127) << 23;
    float y = p * scale.f;
    return x != x ? x : (x < -87.0f ? 0.0f : y);
}

/* One float32 row of length len: o = softmax(x) or log_softmax(x). */
DDP_HOST_DEVICE static inline void softmax_row_f32(const float *x, int64_t xs, float *o, int64_t os,
                                                   int64_t len, bool log_form) {
    float m = -INFINITY;
    for (int64_t k = 0; k < len; k++) {
        float v = x[k * xs];
        if (v > m || v != v) m = v;
    }
    if (m == -INFINITY) m = 0; /* all -inf: the result is NaN, as in PyTorch */
    double sum = 0;
    if (log_form) {
        for (int64_t k = 0; k < len; k++) sum += softmax_expf(x[k * xs] - m);
        float lse = (float)log(sum);
        for (int64_t k = 0; k < len; k++) o[k * os] = (x[k * xs] - m) - lse;
    } else {
        for (int64_t k = 0; k < len; k++) o[k * os] = softmax_expf(x[k * xs] - m);
        for (int64_t k = 0; k < len; k++) sum += o[k * os];
        float inv = (float)(1.0 / sum);
        for (int64_t k = 0; k < len; k++) o[k * os] *= inv;
    }
}

/* One float64 row of length len: o = softmax(x) or log_softmax(x), with libm's exp. */
DDP_HOST_DEVICE static inline void softmax_row_f64(const double *x, int64_t xs, double *o,
                                                   int64_t os, int64_t len, bool log_form) {
    double m = -INFINITY, sum = 0;
    for (int64_t k = 0; k < len; k++) {
        double v = x[k * xs];
        if (v > m || v != v) m = v;
    }
    if (m == -INFINITY) m = 0; /* all -inf: the result is NaN, as in PyTorch */
    for (int64_t k = 0; k < len; k++) {
        double e = exp(x[k * xs] - m);
        sum += e;
        if (!log_form) o[k * os] = e;
    }
    if (log_form) {
        double lse = log(sum);
        for (int64_t k = 0; k < len; k++) o[k * os] = (x[k * xs] - m) - lse;
    } else {
        for (int64_t k = 0; k < len; k++) o[k * os] /= sum;
    }
}

#endif
