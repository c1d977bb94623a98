/* philox.c — the device generator's state and its reference fills on the CPU (philox.h);
 * the arithmetic is philox_math.h's, shared with the CUDA kernels. */
#include "base/philox.h"
#include "base/generator.h"
#include "base/philox_math.h"

#include <stdbool.h>

void philox4x32_10(uint64_t key, uint64_t counter, uint32_t out[4]) {
    philox_block(key, counter, out);
}

void philox_seed(philox_generator *g, uint64_t seed) {
    g->seed = seed;
    g->position = 0;
}

philox_generator *philox_default(void) {
    static philox_generator g;
    static bool seeded;
    if (!seeded) {
        philox_seed(&g, generator_nondeterministic_seed());
        seeded = true;
    }
    return &g;
}

uint64_t philox_take(philox_generator *g, int kind, int64_t n) {
    uint64_t start = g->position;
    g->position += philox_words_used(kind, n);
    return start;
}

void philox_uniform_f32(philox_generator *g, float *out, int64_t n, double lo, double hi) {
    uint64_t pos = philox_take(g, PHILOX_UNIFORM_F32, n);
    for (int64_t i = 0; i < n; i++) out[i] = philox_uniform_f32_at(g->seed, pos, i, lo, hi);
}

void philox_uniform_f64(philox_generator *g, double *out, int64_t n, double lo, double hi) {
    uint64_t pos = philox_take(g, PHILOX_UNIFORM_F64, n);
    for (int64_t i = 0; i < n; i++) out[i] = philox_uniform_f64_at(g->seed, pos, i, lo, hi);
}

void philox_normal_f32(philox_generator *g, float *out, int64_t n, double mean, double std) {
    uint64_t pos = philox_take(g, PHILOX_NORMAL_F32, n);
    for (int64_t j = 0; 2 * j < n; j++) {
        double z0, z1;
        philox_normal_f32_pair(g->seed, pos, j, &z0, &z1);
        out[2 * j] = (float)(mean + std * z0);
        if (2 * j + 1 < n) out[2 * j + 1] = (float)(mean + std * z1);
    }
}

void philox_normal_f64(philox_generator *g, double *out, int64_t n, double mean, double std) {
    uint64_t pos = philox_take(g, PHILOX_NORMAL_F64, n);
    for (int64_t j = 0; 2 * j < n; j++) {
        double z0, z1;
        philox_normal_f64_pair(g->seed, pos, j, &z0, &z1);
        out[2 * j] = mean + std * z0;
        if (2 * j + 1 < n) out[2 * j + 1] = mean + std * z1;
    }
}

void philox_randint(philox_generator *g, int64_t *out, int64_t n, int64_t lo, int64_t hi) {
    uint64_t pos = philox_take(g, PHILOX_RANDINT, n);
    for (int64_t i = 0; i < n; i++)
        out[i] = philox_randint_at(g->seed, pos, i, lo, (uint64_t)(hi - lo));
}
