/* normal16.c — the 16-value Box-Muller block of PyTorch's CPU normal_ (normal16.h).
 *
 * For float32, PyTorch's x86-64 build (AVX2, the kernel a CPU of the last decade runs)
 * computes log, sin and cos with the 8-wide Cephes polynomials of Pommier's
 * "sse_mathfun" (avx_mathfun.h in ATen), not with libm, and its compiler fused some of
 * their multiply-adds. The results differ from libm's logf/sinf/cosf in the last bit
 * now and then, so to give PyTorch's numbers we evaluate the same polynomials, one lane
 * at a time, with the same roundings: every `fmaf` below is a fused multiply-add of that
 * build (read from its machine code), every other operation is rounded on its own. This
 * file must be compiled without floating-point contraction (CMakeLists.txt says
 * -ffp-contract=off), or the compiler would fuse more than PyTorch did.
 *
 * The inputs are known: 1 - u lies in [2^-24, 1] and theta in [0, 2 pi), so the
 * polynomials' guards for zero, negative, denormal and huge arguments are not needed. */
#include "base/normal16.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

static uint32_t bits_of(float x) {
    uint32_t b;
    memcpy(&b, &x, sizeof b);
    return b;
}

static float float_of(uint32_t b) {
    float x;
    memcpy(&x, &b, sizeof x);
    return x;
}

/* Natural log of x in [2^-24, 1]: x = m 2^e with m in [sqrt(1/2), sqrt(2)), then
 * log(m) by a degree-9 polynomial in m - 1, and e log(2) added in two parts. */
static inline __attribute__((always_inline)) float cephes_logf(float x) {
    uint32_t b = bits_of(x);
    float e = (float)((int32_t)(b >> 23) - 0x7f) + 1.0f;
    float m = float_of((b & ~0x7f800000u) | 0x3f000000u); /* mantissa in [0.5, 1) */
    float below = m < 0.707106781186547524f ? m : 0.0f;
    if (m < 0.707106781186547524f) e = e - 1.0f;
    x = (m + -1.0f) + below; /* m - 1, or 2m - 1 when m was below sqrt(1/2) */
    float z = x * x;
    float y = 7.0376836292E-2f;
    y = fmaf(y, x, -1.1514610310E-1f);
    y = fmaf(y, x, 1.1676998740E-1f);
    y = fmaf(y, x, -1.2420140846E-1f);
    y = fmaf(y, x, 1.4249322787E-1f);
    y = fmaf(y, x, -1.6668057665E-1f);
    y = fmaf(y, x, 2.0000714765E-1f);
    y = fmaf(y, x, -2.4999993993E-1f);
    y = fmaf(y, x, 3.3333331174E-1f);
    y = x * y;
    y = fmaf(y, z, e * -2.12194440e-4f);
    y = fmaf(-z, 0.5f, y);
    x = x + y;
    return fmaf(e, 0.693359375f, x);
}

/* sin and cos of x in [0, 2 pi): reduced to [-pi/4, pi/4] by octant j (pi/4 taken off in
 * three parts), one polynomial for each, swapped and signed by the octant. */
static inline __attribute__((always_inline)) void cephes_sincosf(float x, float *s, float *c) {
    int32_t j = (int32_t)(x * 1.27323954473516f); /* x * 4/pi, truncated */
    j = (j + 1) & ~1;
    float y = (float)j;
    uint32_t sin_sign = (uint32_t)(j & 4) << 29;
    uint32_t cos_sign = (uint32_t)(~(j - 2) & 4) << 29;
    int sin_poly = (j & 2) != 0; /* the octants where sin takes the cosine polynomial */
    x = fmaf(y, -0.78515625f, x);
    x = fmaf(y, -2.4187564849853515625e-4f, x);
    x = fmaf(y, -3.77489497744594108e-8f, x);
    float z = x * x;
    float yc = 2.443315711809948E-005f;
    yc = fmaf(yc, z, -1.388731625493765E-003f);
    yc = fmaf(yc, z, 4.166664568298827E-002f);
    yc = z * yc;
    yc = fmaf(yc, z, -(z * 0.5f));
    yc = yc + 1.0f;
    float ys = -1.9515295891E-4f;
    ys = fmaf(ys, z, 8.3321608736E-3f);
    ys = fmaf(ys, z, -1.6666654611E-1f);
    ys = z * ys;
    ys = fmaf(ys, x, x);
    /* PyTorch picks the polynomials with masks and adds a zero: + 0.0f keeps its -0 -> +0 */
    float sin_v = (sin_poly ? yc : ys) + 0.0f;
    float cos_v = (sin_poly ? ys : yc) + 0.0f;
    *s = float_of(bits_of(sin_v) ^ sin_sign);
    *c = float_of(bits_of(cos_v) ^ cos_sign);
}

/* The block, inlined twice: as written (fmaf may then be a libm call), and, on x86-64,
 * for CPUs with FMA, where each fmaf is one instruction. Both round the same: fmaf is
 * exact either way. */
static inline __attribute__((always_inline)) void block_f32(float d[16], float mean, float std) {
    const float two_pi = (float)(2.0 * 3.14159265358979323846);
    for (int j = 0; j < 8; j++) {
        float radius = sqrtf(cephes_logf(1.0f - d[j]) * -2.0f);
        float s, c;
        cephes_sincosf(two_pi * d[j + 8], &s, &c);
        d[j] = fmaf(radius * c, std, mean);
        d[j + 8] = fmaf(radius * s, std, mean);
    }
}

#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("fma"))) static void block_f32_fma(float d[16], float mean, float std) {
    block_f32(d, mean, std);
}
#endif

void normal16_f32(float d[16], float mean, float std) {
#if defined(__x86_64__) && defined(__GNUC__)
    if (__builtin_cpu_supports("fma")) {
        block_f32_fma(d, mean, std);
        return;
    }
#endif
    block_f32(d, mean, std);
}

void normal16_f64(double d[16], double mean, double std) {
    const double two_pi = 2.0 * 3.14159265358979323846;
    for (int j = 0; j < 8; j++) {
        double radius = sqrt(-2.0 * log(1.0 - d[j]));
        double theta = two_pi * d[j + 8];
        d[j] = fma(radius * cos(theta), std, mean);
        d[j + 8] = fma(radius * sin(theta), std, mean);
    }
}
