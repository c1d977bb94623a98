/* mt19937.c — MT19937 with init_genrand seeding and the state walk of mt19937.h. */
#include "base/mt19937.h"

#define MT19937_SHIFT 397
#define MT19937_MATRIX_A 0x9908b0dfu

void mt19937_seed(mt19937 *m, uint64_t seed) {
    m->seed = seed;
    m->seeded = true;
    m->state[0] = (uint32_t)seed;
    for (uint32_t j = 1; j < MT19937_STATE_N; j++)
        m->state[j] = 1812433253u * (m->state[j - 1] ^ (m->state[j - 1] >> 30)) + j;
    /* left = 1: the first draw twists the whole state before reading word 0 */
    m->left = 1;
    m->next = 0;
}

/* One step of the recurrence: the top bit of u and the low 31 bits of v, shifted, with
 * the matrix added when v is odd. */
static inline uint32_t twist(uint32_t u, uint32_t v) {
    uint32_t mixed = (u & 0x80000000u) | (v & 0x7fffffffu);
    return (mixed >> 1) ^ ((v & 1u) ? MT19937_MATRIX_A : 0u);
}

/* Regenerates all 624 words in place. */
static void next_state(mt19937 *m) {
    uint32_t *s = m->state;
    int i = 0;
    for (; i < MT19937_STATE_N - MT19937_SHIFT; i++)
        s[i] = s[i + MT19937_SHIFT] ^ twist(s[i], s[i + 1]);
    for (; i < MT19937_STATE_N - 1; i++)
        s[i] = s[i + MT19937_SHIFT - MT19937_STATE_N] ^ twist(s[i], s[i + 1]);
    s[i] = s[i + MT19937_SHIFT - MT19937_STATE_N] ^ twist(s[i], s[0]);
    m->left = MT19937_STATE_N;
    m->next = 0;
}

uint32_t mt19937_next(mt19937 *m) {
    if (--m->left == 0) next_state(m);
    uint32_t y = m->state[m->next++];
    y ^= y >> 11;
    y ^= (y << 7) & 0x9d2c5680u;
    y ^= (y << 15) & 0xefc60000u;
    y ^= y >> 18;
    return y;
}

bool mt19937_is_valid(const mt19937 *m) {
    return m->seeded && m->left > 0 && m->left <= MT19937_STATE_N && m->next <= MT19937_STATE_N;
}
