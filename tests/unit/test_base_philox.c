/* test_base_philox.c — the device generator, Philox-4x32-10 generator: known-answer vectors of
 * Random123, reproducibility from the seed, the documented word-to-value transforms, ranges and
 * rough moments of uniform / normal / randint, and positions advancing by whole blocks. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "base/philox.h"

/* Philox-4x32-10 with the full 128-bit counter and 64-bit key (two words), written from
 * the Random123 paper; rng.c's version is this one with counter words 2 and 3 zero. */
static void philox_full(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]) {
    uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3], k0 = key[0], k1 = key[1];
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

static void test_known_answers(void **state) {
    (void)state;
    uint32_t out[4];
    philox4x32_10(0, 0, out); /* Random123 kat_vectors: key and counter all zero */
    assert_int_equal(out[0], 0x6627e8d5u);
    assert_int_equal(out[1], 0xe169c58du);
    assert_int_equal(out[2], 0xbc57ac4cu);
    assert_int_equal(out[3], 0x9b00dbd8u);

    const uint32_t ones[4] = {0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu};
    philox_full(ones, ones, out);
    assert_int_equal(out[0], 0x408f276du);
    assert_int_equal(out[1], 0x41c83b0eu);
    assert_int_equal(out[2], 0xa20bc7c6u);
    assert_int_equal(out[3], 0x6d5451fdu);

    /* the full form agrees with rng.c wherever the upper counter words are zero */
    uint64_t key = 0x0123456789abcdefull, counter = 0xfedcba9876543210ull;
    for (int i = 0; i < 16; i++) {
        uint32_t ctr[4] = {(uint32_t)counter, (uint32_t)(counter >> 32), 0, 0};
        uint32_t k[2] = {(uint32_t)key, (uint32_t)(key >> 32)}, want[4];
        philox_full(ctr, k, want);
        philox4x32_10(key, counter, out);
        assert_memory_equal(out, want, sizeof want);
        key = key * 6364136223846793005ull + 1442695040888963407ull;
        counter += 0x9E3779B97F4A7C15ull;
    }
}

static void test_reproducible(void **state) {
    (void)state;
    philox_generator g1, g2, g3;
    philox_seed(&g1, 42);
    philox_seed(&g2, 42);
    philox_seed(&g3, 43);
    float a[100], b[100], c[100];
    philox_uniform_f32(&g1, a, 100, 0, 1);
    philox_uniform_f32(&g2, b, 100, 0, 1);
    philox_uniform_f32(&g3, c, 100, 0, 1);
    assert_memory_equal(a, b, sizeof a);
    assert_memory_not_equal(a, c, sizeof a);
    /* a second call continues the stream instead of repeating it */
    philox_uniform_f32(&g1, b, 100, 0, 1);
    assert_memory_not_equal(a, b, sizeof a);
    assert_int_equal(g1.position % 4, 0);
    assert_int_equal(g1.position, 200);

    /* positions advance by whole blocks even for odd counts */
    philox_generator g;
    philox_seed(&g, 1);
    float one;
    philox_uniform_f32(&g, &one, 1, 0, 1);
    assert_int_equal(g.position, 4);
    double two[1];
    philox_normal_f64(&g, two, 1, 0, 1);
    assert_int_equal(g.position, 8);

    /* the default generator is a process-wide one, reseedable */
    philox_seed(philox_default(), 42);
    philox_uniform_f32(philox_default(), b, 100, 0, 1);
    assert_memory_equal(a, b, sizeof a);
}

static void test_transforms(void **state) {
    (void)state;
    philox_generator g;
    philox_seed(&g, 7);
    uint32_t w[4];
    philox4x32_10(7, 0, w);
    float f[4];
    philox_uniform_f32(&g, f, 4, 0, 1);
    for (int i = 0; i < 4; i++) assert_true(f[i] == (float)((w[i] >> 8) * (1.0 / 16777216.0)));
    philox_seed(&g, 7);
    double d[1];
    philox_uniform_f64(&g, d, 1, 0, 1);
    uint64_t bits = (((uint64_t)w[0] << 21) ^ ((uint64_t)w[1] >> 11)) & ((1ull << 53) - 1);
    assert_true(d[0] == (double)bits / 9007199254740992.0);
}

static void test_uniform_range_and_moments(void **state) {
    (void)state;
    enum { N = 100000 };
    static float f[N];
    static double d[N];
    philox_generator g;
    philox_seed(&g, 3);
    philox_uniform_f32(&g, f, N, -2, 3);
    philox_uniform_f64(&g, d, N, -2, 3);
    double sf = 0, sd = 0;
    for (int i = 0; i < N; i++) {
        assert_true(f[i] >= -2 && f[i] < 3);
        assert_true(d[i] >= -2 && d[i] < 3);
        sf += f[i], sd += d[i];
    }
    /* mean 0.5, std of the mean 5/sqrt(12 N) ~ 0.0046 */
    assert_true(fabs(sf / N - 0.5) < 0.03);
    assert_true(fabs(sd / N - 0.5) < 0.03);
}

static void test_normal_moments(void **state) {
    (void)state;
    enum { N = 100001 }; /* odd: the last pair is half used */
    static float f[N];
    static double d[N];
    philox_generator g;
    philox_seed(&g, 11);
    philox_normal_f32(&g, f, N, 1.5, 2.0);
    philox_normal_f64(&g, d, N, 1.5, 2.0);
    double s1 = 0, s2 = 0, t1 = 0, t2 = 0;
    for (int i = 0; i < N; i++) {
        assert_true(isfinite(f[i]) && isfinite(d[i]));
        s1 += f[i], s2 += (double)f[i] * f[i];
        t1 += d[i], t2 += d[i] * d[i];
    }
    double mf = s1 / N, sdf = sqrt(s2 / N - mf * mf), md = t1 / N, sdd = sqrt(t2 / N - md * md);
    assert_true(fabs(mf - 1.5) < 0.03 && fabs(sdf - 2.0) < 0.03);
    assert_true(fabs(md - 1.5) < 0.03 && fabs(sdd - 2.0) < 0.03);
}

static void test_randint(void **state) {
    (void)state;
    enum { N = 10000 };
    static int64_t v[N];
    philox_generator g;
    philox_seed(&g, 5);
    philox_randint(&g, v, N, -3, 4);
    int seen[7] = {0};
    for (int i = 0; i < N; i++) {
        assert_true(v[i] >= -3 && v[i] < 4);
        seen[v[i] + 3]++;
    }
    for (int k = 0; k < 7; k++) assert_true(seen[k] > N / 7 / 2); /* every value, roughly evenly */
    int64_t big[4];
    philox_randint(&g, big, 4, INT64_MIN / 2, INT64_MAX / 2);
    for (int i = 0; i < 4; i++) assert_true(big[i] >= INT64_MIN / 2 && big[i] < INT64_MAX / 2);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_answers),  cmocka_unit_test(test_reproducible),
        cmocka_unit_test(test_transforms),     cmocka_unit_test(test_uniform_range_and_moments),
        cmocka_unit_test(test_normal_moments), cmocka_unit_test(test_randint),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
