/* generator.h — the CPU random number generator: PyTorch's, number for number.
 *
 * A generator is PyTorch's CPUGeneratorImpl: an MT19937 engine (mt19937.h) plus the
 * second normal of the last Box-Muller pair, kept for the next one-at-a-time draw. The
 * fills below are PyTorch's CPU kernels for the same calls, in the same order of draws
 * and the same floating-point operations (fused multiply-adds where PyTorch's x86-64
 * AVX2 build has them), so `torch.manual_seed(0); torch.randn(3)` gives PyTorch's
 * `1.5410, -0.2934, -2.1788`, and the same seed gives the same weights, data and
 * shuffles as a PyTorch script, bit for bit:
 *
 *   32-bit word r = engine(); 64-bit word = (r1 << 32) | r2, two words in order.
 *   uniform float32 in [a, b): x = (r & (2^24 - 1)) * 2^-24, fmaf(x, b - a, a) with a
 *     and b rounded to float first; float64: 53 bits of a 64-bit word, fma in double.
 *   normal, one at a time (fewer than 16 values, or a non-contiguous tensor), float32
 *     and float64 alike: the cached second value if there is one, else u1, u2 uniform
 *     float64, r = sqrt(-2 log(1 - u2)), theta = 2 pi u1, r sin(theta) kept for next
 *     time, r cos(theta) used; the value is fma(z, std, mean) in double.
 *   normal, 16 or more contiguous values: all n uniforms drawn first, then each block
 *     of 16 turned into normals in place (u[j] and u[j+8] give values j and j+8); when
 *     n is not a multiple of 16, the last 16 positions are drawn again and recomputed.
 *     float32 uses PyTorch's 8-wide log and sincos polynomials (normal16.c); float64
 *     uses libm's log, sin and cos.
 *   randint in [lo, hi): 32-bit word, or a 64-bit one when hi - lo >= 2^32; lo + w % range.
 *   randperm(n): Fisher-Yates from the front, swap i with i + r % (n - i), 32-bit r;
 *     from n >= 2^32 / 20 PyTorch's "inside-out" variant with 64-bit words.
 *
 * Nothing here allocates except generator_randperm's callers; nothing can fail except
 * generator_set_state. */
#ifndef DDP_BASE_GENERATOR_H
#define DDP_BASE_GENERATOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/mt19937.h"
#include "base/status.h"

typedef struct {
    mt19937 engine;
    bool has_next_double_normal; /* the cached second value of a Box-Muller pair */
    double next_double_normal;
    bool has_next_float_normal; /* kept for PyTorch's state layout; no fill sets it */
    float next_float_normal;
} ddp_generator;

/* The seed of a new torch.Generator() (PyTorch's default_rng_seed_val). */
#define GENERATOR_DEFAULT_SEED 67280421310721ull

/* Seeds the engine and forgets any cached normal (torch.manual_seed). Cannot fail. */
void generator_seed(ddp_generator *g, uint64_t seed);
/* The seed it was last seeded with (initial_seed). */
uint64_t generator_initial_seed(const ddp_generator *g);

/* A seed from the operating system (53 bits, so that it is a Lua integer and a double
 * alike); each call gives another. */
uint64_t generator_nondeterministic_seed(void);

/* The process-wide default generator (torch.* functions without generator=). Until
 * torch.manual_seed it is seeded from generator_nondeterministic_seed, different in
 * every process, as PyTorch's is. */
ddp_generator *generator_default(void);

/* One 32-bit and one 64-bit word of the stream (PyTorch's random() and random64()). */
uint32_t generator_random(ddp_generator *g);
uint64_t generator_random64(ddp_generator *g);

/* torch.get_rng_state()'s bytes: PyTorch's CPUGeneratorImplState on x86-64 (seed, left,
 * seeded, next, the 624 state words as uint64, the cached float64 and float32 normals
 * with their flags), so a state moves between ddplab and PyTorch. */
#define GENERATOR_STATE_BYTES 5056
void generator_get_state(const ddp_generator *g, uint8_t out[GENERATOR_STATE_BYTES]);
/* Restores a state from those bytes; fails (and changes nothing) when the size is wrong
 * or the engine fields are out of range. */
ddp_status generator_set_state(ddp_generator *g, const uint8_t *bytes, size_t n);

/* Fill out[0..n) and advance the generator. Cannot fail; lo <= hi, std >= 0 are the
 * caller's to check. `contiguous` says whether out is the whole of a contiguous tensor
 * (PyTorch fills those of 16 or more elements 16 at a time; others one at a time). */
void generator_uniform_f32(ddp_generator *g, float *out, int64_t n, double lo, double hi);
void generator_uniform_f64(ddp_generator *g, double *out, int64_t n, double lo, double hi);
void generator_normal_f32(ddp_generator *g, float *out, int64_t n, double mean, double std,
                          bool contiguous);
void generator_normal_f64(ddp_generator *g, double *out, int64_t n, double mean, double std,
                          bool contiguous);
/* Integers uniform in [lo, hi), hi > lo. */
void generator_randint(ddp_generator *g, int64_t *out, int64_t n, int64_t lo, int64_t hi);
/* A random permutation of 0..n-1 into out[0..n). */
void generator_randperm(ddp_generator *g, int64_t *out, int64_t n);
/* The large-n algorithm of generator_randperm on any n, so tests can reach it. */
void generator_randperm_inside_out(ddp_generator *g, int64_t *out, int64_t n);

#endif
