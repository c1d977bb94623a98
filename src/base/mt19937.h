/* mt19937.h — the Mersenne Twister MT19937 engine, as PyTorch's CPU generator runs it.
 *
 * PyTorch's at::mt19937 keeps the reference algorithm (Matsumoto and Nishimura's
 * init_genrand seeding, Cokus's "left/next" walk through the state) and seeds it with
 * the low 32 bits of a 64-bit seed, remembering the whole seed. Our engine keeps the
 * same fields, in the same meaning, so that torch.get_rng_state() can be written in
 * PyTorch's byte layout (see generator.h) and a state saved by either side restores on
 * the other. */
#ifndef DDP_BASE_MT19937_H
#define DDP_BASE_MT19937_H

#include <stdbool.h>
#include <stdint.h>

#define MT19937_STATE_N 624

typedef struct {
    uint64_t seed; /* the whole 64-bit seed (only its low 32 bits enter the state) */
    int left;      /* words left before the next twist, plus one */
    bool seeded;
    uint32_t next; /* index of the next word of state to temper */
    uint32_t state[MT19937_STATE_N];
} mt19937;

/* Seeds as init_genrand(seed & 0xffffffff), remembering seed. Cannot fail. */
void mt19937_seed(mt19937 *m, uint64_t seed);

/* The next 32-bit output. Cannot fail. */
uint32_t mt19937_next(mt19937 *m);

/* Whether the fields describe a state the engine can run from (what PyTorch checks in
 * set_state: seeded, 0 < left <= 624, next <= 624). */
bool mt19937_is_valid(const mt19937 *m);

#endif
