/* philox.h — the device generator: counter-based Philox-4x32-10, for CUDA tensors.
 *
 * On the CPU, random numbers come from PyTorch's MT19937 (generator.h); on GPUs, as in
 * PyTorch, from a counter-based stream that a kernel can enter anywhere.
 * torch.manual_seed seeds both. The fills below are the stream's reference on the
 * CPU: a CUDA kernel must give exactly these values.
 *
 * The stream is a pure function of (seed, position): value k of the stream is word k%4
 * of philox(key = seed, counter = k/4). A generator is just a seed and a position, so the
 * same seed gives the same numbers on any machine, and a GPU kernel can compute element
 * i of a call without seeing the others. Each call consumes a whole number of 4-word
 * blocks, so positions stay aligned for GPU threads.
 *
 * How values are made from words (a CUDA kernel must do exactly the same):
 *   uniform float32: word w -> (w >> 8) * 2^-24, in [0, 1)
 *   uniform float64: words (a, b) -> ((a << 21) ^ (b >> 11)) 53-bit -> * 2^-53, in [0, 1)
 *   normal (Box-Muller, in double): uniforms u1, u2 (of the dtype) for output pair
 *   (2j, 2j+1): r = sqrt(-2 log(1 - u1)), z0 = r cos(2 pi u2), z1 = r sin(2 pi u2). */
#ifndef DDP_BASE_PHILOX_H
#define DDP_BASE_PHILOX_H

#include <stdint.h>

typedef struct {
    uint64_t seed;
    uint64_t position; /* in 32-bit words; always a multiple of 4 between calls */
} philox_generator;

/* One Philox-4x32-10 block: four 32-bit words for (key, counter). Cannot fail. */
void philox4x32_10(uint64_t key, uint64_t counter, uint32_t out[4]);

void philox_seed(philox_generator *g, uint64_t seed);

/* The process-wide device generator (torch.manual_seed seeds it with the CPU one). Until
 * then its seed is drawn from the operating system, different in every process. */
philox_generator *philox_default(void);

/* Fill out[0..n) and advance the generator. Cannot fail. */
void philox_uniform_f32(philox_generator *g, float *out, int64_t n, double lo, double hi);
void philox_uniform_f64(philox_generator *g, double *out, int64_t n, double lo, double hi);
void philox_normal_f32(philox_generator *g, float *out, int64_t n, double mean, double std);
void philox_normal_f64(philox_generator *g, double *out, int64_t n, double mean, double std);
/* Integers uniform in [lo, hi), hi > lo (randint, randperm). */
void philox_randint(philox_generator *g, int64_t *out, int64_t n, int64_t lo, int64_t hi);

/* The kinds of fill, for philox_take (and philox_words_used in philox_math.h). */
enum {
    PHILOX_UNIFORM_F32 = 0,
    PHILOX_UNIFORM_F64 = 1,
    PHILOX_RANDINT = 1,
    PHILOX_NORMAL_F32 = 2,
    PHILOX_NORMAL_F64 = 3
};
/* Reserves the words a fill of n elements of `kind` consumes and returns the position it
 * starts at: what a CUDA kernel is given to compute the same values as the fills above.
 * Cannot fail. */
uint64_t philox_take(philox_generator *g, int kind, int64_t n);

#endif
