/* philox.c — Philox-4x32-10 and the value transforms described in philox.h. */
#include "base/philox.h"
#include "base/generator.h"

#include <math.h>

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

static inline uint32_t mulhilo(uint32_t a, uint32_t b, uint32_t *hi) {
    uint64_t p = (uint64_t)a * b;
    *hi = (uint32_t)(p >> 32);
    return (uint32_t)p;
}

void philox4x32_10(uint64_t key, uint64_t counter, uint32_t out[4]) {
    uint32_t c0 = (uint32_t)counter, c1 = (uint32_t)(counter >> 32), c2 = 0, c3 = 0;
    uint32_t k0 = (uint32_t)key, k1 = (uint32_t)(key >> 32);
    for (int round = 0; round < 10; round++) {
        uint32_t hi0, hi1;
        uint32_t lo0 = mulhilo(PHILOX_M0, c0, &hi0);
        uint32_t lo1 = mulhilo(PHILOX_M1, c2, &hi1);
        uint32_t n0 = hi1 ^ c1 ^ k0, n1 = lo1, n2 = hi0 ^ c3 ^ k1, n3 = lo0;
        c0 = n0, c1 = n1, c2 = n2, c3 = n3;
        k0 += PHILOX_W0;
        k1 += PHILOX_W1;
    }
    out[0] = c0, out[1] = c1, out[2] = c2, out[3] = c3;
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

/* Word `k` of the stream starting at the generator's position. Cached per block, since
 * callers read words in order. */
typedef struct {
    const philox_generator *g;
    uint64_t block;
    uint32_t words[4];
} word_reader;

static uint32_t word_at(word_reader *r, uint64_t k) {
    uint64_t pos = r->g->position + k;
    if (pos / 4 != r->block) {
        r->block = pos / 4;
        philox4x32_10(r->g->seed, r->block, r->words);
    }
    return r->words[pos % 4];
}

static void advance(philox_generator *g, uint64_t words) {
    g->position += (words + 3) & ~(uint64_t)3;
}

static inline double u32_to_unit_f32(uint32_t w) {
    return (double)(w >> 8) * (1.0 / 16777216.0);
}

static inline double u64_to_unit_f64(uint32_t a, uint32_t b) {
    uint64_t bits = (((uint64_t)a << 21) ^ ((uint64_t)b >> 11)) & ((1ull << 53) - 1);
    return (double)bits * (1.0 / 9007199254740992.0);
}

void philox_uniform_f32(philox_generator *g, float *out, int64_t n, double lo, double hi) {
    word_reader r = {g, UINT64_MAX, {0}};
    for (int64_t i = 0; i < n; i++)
        out[i] = (float)(lo + (hi - lo) * u32_to_unit_f32(word_at(&r, i)));
    advance(g, (uint64_t)n);
}

void philox_uniform_f64(philox_generator *g, double *out, int64_t n, double lo, double hi) {
    word_reader r = {g, UINT64_MAX, {0}};
    for (int64_t i = 0; i < n; i++) {
        double u = u64_to_unit_f64(word_at(&r, 2 * i), word_at(&r, 2 * i + 1));
        out[i] = lo + (hi - lo) * u;
    }
    advance(g, 2 * (uint64_t)n);
}

static void box_muller(double u1, double u2, double *z0, double *z1) {
    double radius = sqrt(-2.0 * log(1.0 - u1));
    double angle = 2.0 * M_PI * u2;
    *z0 = radius * cos(angle);
    *z1 = radius * sin(angle);
}

void philox_normal_f32(philox_generator *g, float *out, int64_t n, double mean, double std) {
    word_reader r = {g, UINT64_MAX, {0}};
    for (int64_t j = 0; 2 * j < n; j++) {
        double z0, z1;
        box_muller(u32_to_unit_f32(word_at(&r, 2 * j)), u32_to_unit_f32(word_at(&r, 2 * j + 1)),
                   &z0, &z1);
        out[2 * j] = (float)(mean + std * z0);
        if (2 * j + 1 < n) out[2 * j + 1] = (float)(mean + std * z1);
    }
    advance(g, (uint64_t)(n + 1) / 2 * 2);
}

void philox_normal_f64(philox_generator *g, double *out, int64_t n, double mean, double std) {
    word_reader r = {g, UINT64_MAX, {0}};
    for (int64_t j = 0; 2 * j < n; j++) {
        double u1 = u64_to_unit_f64(word_at(&r, 4 * j), word_at(&r, 4 * j + 1));
        double u2 = u64_to_unit_f64(word_at(&r, 4 * j + 2), word_at(&r, 4 * j + 3));
        double z0, z1;
        box_muller(u1, u2, &z0, &z1);
        out[2 * j] = mean + std * z0;
        if (2 * j + 1 < n) out[2 * j + 1] = mean + std * z1;
    }
    advance(g, (uint64_t)(n + 1) / 2 * 4);
}

void philox_randint(philox_generator *g, int64_t *out, int64_t n, int64_t lo, int64_t hi) {
    word_reader r = {g, UINT64_MAX, {0}};
    uint64_t range = (uint64_t)(hi - lo);
    for (int64_t i = 0; i < n; i++) {
        uint64_t bits = ((uint64_t)word_at(&r, 2 * i) << 32) | word_at(&r, 2 * i + 1);
        out[i] = lo + (int64_t)(bits % range); /* bias below 2^-32 for any realistic range */
    }
    advance(g, 2 * (uint64_t)n);
}
