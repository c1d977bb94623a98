/* philox_math.h — the device generator's arithmetic (philox.h), element by element, one
 * definition for the CPU reference fills (philox.c) and the CUDA kernels
 * (tensor_cuda.cu), so that a CUDA tensor gets exactly the values philox.h documents.
 * Every value is a pure function of (seed, start position, element index). Read by gcc
 * and nvcc. */
#ifndef DDP_BASE_PHILOX_MATH_H
#define DDP_BASE_PHILOX_MATH_H

#include <math.h>
#include <stdint.h>

#include "base/host_device.h"

/* One Philox-4x32-10 block: four 32-bit words for (key, counter). */
DDP_HOST_DEVICE static inline void philox_block(uint64_t key, uint64_t counter, uint32_t out[4]) {
    uint32_t c0 = (uint32_t)counter, c1 = (uint32_t)(counter >> 32), c2 = 0, c3 = 0;
    uint32_t k0 = (uint32_t)key, k1 = (uint32_t)(key >> 32);
    for (int round = 0; round < 10; round++) {
        uint64_t p0 = (uint64_t)0xD2511F53u * c0, p1 = (uint64_t)0xCD9E8D57u * c2;
        uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0, n1 = (uint32_t)p1;
        uint32_t n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1, n3 = (uint32_t)p0;
        c0 = n0, c1 = n1, c2 = n2, c3 = n3;
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    out[0] = c0, out[1] = c1, out[2] = c2, out[3] = c3;
}

/* Word `pos` of the stream of `seed`: word pos % 4 of block pos / 4. */
DDP_HOST_DEVICE static inline uint32_t philox_word(uint64_t seed, uint64_t pos) {
    uint32_t w[4];
    philox_block(seed, pos / 4, w);
    return w[pos % 4];
}

DDP_HOST_DEVICE static inline double philox_unit_f32(uint32_t w) {
    return (double)(w >> 8) * (1.0 / 16777216.0);
}

DDP_HOST_DEVICE static inline double philox_unit_f64(uint32_t a, uint32_t b) {
    uint64_t bits = (((uint64_t)a << 21) ^ ((uint64_t)b >> 11)) & ((1ull << 53) - 1);
    return (double)bits * (1.0 / 9007199254740992.0);
}

/* Element i of a uniform fill starting at word `pos`. */
DDP_HOST_DEVICE static inline float philox_uniform_f32_at(uint64_t seed, uint64_t pos, int64_t i,
                                                          double lo, double hi) {
    return (float)(lo + (hi - lo) * philox_unit_f32(philox_word(seed, pos + (uint64_t)i)));
}

DDP_HOST_DEVICE static inline double philox_uniform_f64_at(uint64_t seed, uint64_t pos, int64_t i,
                                                           double lo, double hi) {
    uint64_t k = pos + 2 * (uint64_t)i;
    return lo + (hi - lo) * philox_unit_f64(philox_word(seed, k), philox_word(seed, k + 1));
}

/* Box-Muller in double: the pair (2j, 2j+1) of a normal fill from uniforms u1, u2. */
DDP_HOST_DEVICE static inline void philox_box_muller(double u1, double u2, double *z0, double *z1) {
    double radius = sqrt(-2.0 * log(1.0 - u1));
    double angle = 2.0 * 3.14159265358979323846 * u2;
    *z0 = radius * cos(angle);
    *z1 = radius * sin(angle);
}

DDP_HOST_DEVICE static inline void philox_normal_f32_pair(uint64_t seed, uint64_t pos, int64_t j,
                                                          double *z0, double *z1) {
    uint64_t k = pos + 2 * (uint64_t)j;
    philox_box_muller(philox_unit_f32(philox_word(seed, k)),
                      philox_unit_f32(philox_word(seed, k + 1)), z0, z1);
}

DDP_HOST_DEVICE static inline void philox_normal_f64_pair(uint64_t seed, uint64_t pos, int64_t j,
                                                          double *z0, double *z1) {
    uint64_t k = pos + 4 * (uint64_t)j;
    philox_box_muller(philox_unit_f64(philox_word(seed, k), philox_word(seed, k + 1)),
                      philox_unit_f64(philox_word(seed, k + 2), philox_word(seed, k + 3)), z0, z1);
}

/* Element i of an integer fill in [lo, lo + range). */
DDP_HOST_DEVICE static inline int64_t philox_randint_at(uint64_t seed, uint64_t pos, int64_t i,
                                                        int64_t lo, uint64_t range) {
    uint64_t k = pos + 2 * (uint64_t)i;
    uint64_t bits = ((uint64_t)philox_word(seed, k) << 32) | philox_word(seed, k + 1);
    return lo + (int64_t)(bits % range); /* bias below 2^-32 for any realistic range */
}

/* Words a fill of n elements consumes, rounded up to whole blocks (kind: 0 uniform f32,
 * 1 uniform f64 or randint, 2 normal f32, 3 normal f64). */
DDP_HOST_DEVICE static inline uint64_t philox_words_used(int kind, int64_t n) {
    uint64_t w = kind == 0   ? (uint64_t)n
                 : kind == 1 ? 2 * (uint64_t)n
                 : kind == 2 ? (uint64_t)(n + 1) / 2 * 2
                             : (uint64_t)(n + 1) / 2 * 4;
    return (w + 3) & ~(uint64_t)3;
}

#endif
