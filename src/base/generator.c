/* generator.c — PyTorch's CPU generator and its fills, as generator.h describes them.
 *
 * Compiled without floating-point contraction (CMakeLists.txt): the fused multiply-adds
 * PyTorch's build has are written out as fma/fmaf, and no others may appear. */
#include "base/generator.h"

#include "base/normal16.h"

#include <math.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#define PI 3.14159265358979323846

void generator_seed(ddp_generator *g, uint64_t seed) {
    mt19937_seed(&g->engine, seed);
    g->has_next_double_normal = false;
    g->next_double_normal = 0;
    g->has_next_float_normal = false;
    g->next_float_normal = 0;
}

uint64_t generator_initial_seed(const ddp_generator *g) {
    return g->engine.seed;
}

uint64_t generator_nondeterministic_seed(void) {
    uint64_t seed;
    if (getrandom(&seed, sizeof seed, GRND_NONBLOCK) != (ssize_t)sizeof seed) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        seed = ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)ts.tv_sec ^ ((uint64_t)getpid() << 32);
    }
    return seed & ((1ull << 53) - 1);
}

ddp_generator *generator_default(void) {
    static ddp_generator g;
    static bool seeded;
    if (!seeded) {
        generator_seed(&g, generator_nondeterministic_seed());
        seeded = true;
    }
    return &g;
}

uint32_t generator_random(ddp_generator *g) {
    return mt19937_next(&g->engine);
}

uint64_t generator_random64(ddp_generator *g) {
    uint64_t hi = mt19937_next(&g->engine);
    uint64_t lo = mt19937_next(&g->engine);
    return hi << 32 | lo;
}

/* ---- state bytes: PyTorch's CPUGeneratorImplState, x86-64 layout ---------------- */

enum {
    ST_SEED = 0,            /* uint64 the_initial_seed */
    ST_LEFT = 8,            /* int left */
    ST_SEEDED = 12,         /* int seeded */
    ST_NEXT = 16,           /* uint64 next */
    ST_WORDS = 24,          /* uint64 state[624] */
    ST_NORMAL_Y = 5024,     /* double normal_y: the cached float64 normal (normal_x, _rho unused) */
    ST_NORMAL_VALID = 5040, /* int */
    ST_FLOAT_NORMAL = 5048, /* float */
    ST_FLOAT_VALID = 5052,  /* bool */
};

static void put(uint8_t *out, size_t at, const void *v, size_t n) {
    memcpy(out + at, v, n); /* x86-64 and every machine we build for are little-endian */
}

static void get(const uint8_t *in, size_t at, void *v, size_t n) {
    memcpy(v, in + at, n);
}

void generator_get_state(const ddp_generator *g, uint8_t out[GENERATOR_STATE_BYTES]) {
    memset(out, 0, GENERATOR_STATE_BYTES);
    const mt19937 *m = &g->engine;
    int32_t left = m->left, seeded = m->seeded, valid = g->has_next_double_normal;
    uint64_t next = m->next;
    put(out, ST_SEED, &m->seed, 8);
    put(out, ST_LEFT, &left, 4);
    put(out, ST_SEEDED, &seeded, 4);
    put(out, ST_NEXT, &next, 8);
    for (int i = 0; i < MT19937_STATE_N; i++) {
        uint64_t w = m->state[i];
        put(out, ST_WORDS + 8 * (size_t)i, &w, 8);
    }
    if (g->has_next_double_normal) put(out, ST_NORMAL_Y, &g->next_double_normal, 8);
    put(out, ST_NORMAL_VALID, &valid, 4);
    if (g->has_next_float_normal) put(out, ST_FLOAT_NORMAL, &g->next_float_normal, 4);
    out[ST_FLOAT_VALID] = g->has_next_float_normal;
}

ddp_status generator_set_state(ddp_generator *g, const uint8_t *bytes, size_t n) {
    if (n != GENERATOR_STATE_BYTES)
        return DDP_FAIL(DDP_ERR_ARG,
                        "set_rng_state: expected a state of %d bytes (from get_rng_state), got "
                        "%zu",
                        GENERATOR_STATE_BYTES, n);
    ddp_generator r;
    int32_t left, seeded, valid;
    uint64_t next;
    get(bytes, ST_SEED, &r.engine.seed, 8);
    get(bytes, ST_LEFT, &left, 4);
    get(bytes, ST_SEEDED, &seeded, 4);
    get(bytes, ST_NEXT, &next, 8);
    for (int i = 0; i < MT19937_STATE_N; i++) {
        uint64_t w;
        get(bytes, ST_WORDS + 8 * (size_t)i, &w, 8);
        r.engine.state[i] = (uint32_t)w; /* PyTorch keeps the low 32 bits as well */
    }
    r.engine.left = left;
    r.engine.seeded = seeded != 0;
    r.engine.next = (uint32_t)next;
    if (!mt19937_is_valid(&r.engine) || next > MT19937_STATE_N)
        return DDP_FAIL(DDP_ERR_ARG, "set_rng_state: not a valid generator state (the engine's "
                                     "position is out of range)");
    get(bytes, ST_NORMAL_VALID, &valid, 4);
    r.has_next_double_normal = valid != 0;
    r.next_double_normal = 0;
    if (valid) get(bytes, ST_NORMAL_Y, &r.next_double_normal, 8);
    r.has_next_float_normal = bytes[ST_FLOAT_VALID] != 0;
    r.next_float_normal = 0;
    if (r.has_next_float_normal) get(bytes, ST_FLOAT_NORMAL, &r.next_float_normal, 4);
    *g = r;
    return DDP_OK;
}

/* ---- values ------------------------------------------------------------------------ */

/* Uniform in [0, 1) from 24 bits of a 32-bit word, or 53 bits of a 64-bit one. */
static inline __attribute__((always_inline)) float unit_f32(ddp_generator *g) {
    return (float)(generator_random(g) & 0xffffffu) * (1.0f / 16777216.0f);
}

static inline __attribute__((always_inline)) double unit_f64(ddp_generator *g) {
    return (double)(generator_random64(g) & ((1ull << 53) - 1)) * (1.0 / 9007199254740992.0);
}

/* The uniform fills, inlined twice like normal16.c's block: as written, and on x86-64
 * for CPUs with FMA, where fma/fmaf is one instruction instead of a libm call. */
static inline __attribute__((always_inline)) void uniform_f32(ddp_generator *g, float *out,
                                                              int64_t n, float from, float to) {
    for (int64_t i = 0; i < n; i++) out[i] = fmaf(unit_f32(g), to - from, from);
}

static inline __attribute__((always_inline)) void uniform_f64(ddp_generator *g, double *out,
                                                              int64_t n, double lo, double hi) {
    for (int64_t i = 0; i < n; i++) out[i] = fma(unit_f64(g), hi - lo, lo);
}

#if defined(__x86_64__) && defined(__GNUC__)
#define HAVE_FMA_PATH 1
__attribute__((target("fma"))) static void uniform_f32_fma(ddp_generator *g, float *out, int64_t n,
                                                           float from, float to) {
    uniform_f32(g, out, n, from, to);
}
__attribute__((target("fma"))) static void uniform_f64_fma(ddp_generator *g, double *out, int64_t n,
                                                           double lo, double hi) {
    uniform_f64(g, out, n, lo, hi);
}
#endif

void generator_uniform_f32(ddp_generator *g, float *out, int64_t n, double lo, double hi) {
    float from = (float)lo, to = (float)hi;
#ifdef HAVE_FMA_PATH
    if (__builtin_cpu_supports("fma")) {
        uniform_f32_fma(g, out, n, from, to);
        return;
    }
#endif
    uniform_f32(g, out, n, from, to);
}

void generator_uniform_f64(ddp_generator *g, double *out, int64_t n, double lo, double hi) {
#ifdef HAVE_FMA_PATH
    if (__builtin_cpu_supports("fma")) {
        uniform_f64_fma(g, out, n, lo, hi);
        return;
    }
#endif
    uniform_f64(g, out, n, lo, hi);
}

/* One normal, one at a time (PyTorch's normal_distribution<double>): the cached second
 * value of the last pair, or a new pair of which the second value is cached. */
static double normal_one(ddp_generator *g, double mean, double std) {
    double z;
    if (g->has_next_double_normal) {
        z = g->next_double_normal;
        g->has_next_double_normal = false;
    } else {
        double u1 = unit_f64(g), u2 = unit_f64(g);
        double r = sqrt(-2.0 * log(1.0 - u2));
        double theta = 2.0 * PI * u1;
        g->next_double_normal = r * sin(theta);
        g->has_next_double_normal = true;
        z = r * cos(theta);
    }
    return fma(z, std, mean);
}

void generator_normal_f32(ddp_generator *g, float *out, int64_t n, double mean, double std,
                          bool contiguous) {
    if (n < 16 || !contiguous) {
        for (int64_t i = 0; i < n; i++) out[i] = (float)normal_one(g, mean, std);
        return;
    }
    for (int64_t i = 0; i < n; i++) out[i] = unit_f32(g);
    for (int64_t i = 0; i + 16 <= n; i += 16) normal16_f32(out + i, (float)mean, (float)std);
    if (n % 16 != 0) {
        float *tail = out + n - 16; /* overlaps the last full block: drawn anew */
        for (int i = 0; i < 16; i++) tail[i] = unit_f32(g);
        normal16_f32(tail, (float)mean, (float)std);
    }
}

void generator_normal_f64(ddp_generator *g, double *out, int64_t n, double mean, double std,
                          bool contiguous) {
    if (n < 16 || !contiguous) {
        for (int64_t i = 0; i < n; i++) out[i] = normal_one(g, mean, std);
        return;
    }
    for (int64_t i = 0; i < n; i++) out[i] = unit_f64(g);
    for (int64_t i = 0; i + 16 <= n; i += 16) normal16_f64(out + i, mean, std);
    if (n % 16 != 0) {
        double *tail = out + n - 16;
        for (int i = 0; i < 16; i++) tail[i] = unit_f64(g);
        normal16_f64(tail, mean, std);
    }
}

void generator_randint(ddp_generator *g, int64_t *out, int64_t n, int64_t lo, int64_t hi) {
    uint64_t range = (uint64_t)hi - (uint64_t)lo;
    bool wide = range >= (1ull << 32);
    for (int64_t i = 0; i < n; i++) {
        uint64_t w = wide ? generator_random64(g) : generator_random(g);
        out[i] = (int64_t)(w % range + (uint64_t)lo);
    }
}

void generator_randperm_inside_out(ddp_generator *g, int64_t *out, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        int64_t z = (int64_t)(generator_random64(g) % (uint64_t)(i + 1));
        out[i] = i; /* so that z == i reads a written value */
        out[i] = out[z];
        out[z] = i;
    }
}

void generator_randperm(ddp_generator *g, int64_t *out, int64_t n) {
    /* PyTorch keeps its first algorithm below 2^32 / 20, where a 32-bit word modulo n - i
     * is still close enough to uniform, and changes to 64-bit words above */
    if (n >= (int64_t)(UINT32_MAX / 20)) {
        generator_randperm_inside_out(g, out, n);
        return;
    }
    for (int64_t i = 0; i < n; i++) out[i] = i;
    for (int64_t i = 0; i < n - 1; i++) {
        int64_t z = (int64_t)(generator_random(g) % (uint64_t)(n - i));
        int64_t t = out[i];
        out[i] = out[z + i];
        out[z + i] = t;
    }
}
