/* test_base_generator.c — PyTorch's CPU generator: MT19937 against the reference
 * implementation's known outputs, 64-bit words as two 32-bit ones (high first), the cached
 * normal, torch.get_rng_state's byte layout round-tripping and refusing bad states, and
 * randperm's two algorithms. The values PyTorch itself gives are checked by
 * tests/lua/test_random.lua against fixtures; the large-n randperm algorithm, out of
 * reach there, against its fixture here. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/generator.h"

static void test_mt19937_reference(void **state) {
    (void)state;
    /* mt19937ar.c with init_genrand(5489), C++'s std::mt19937 default: output 1 is
     * 3499211612 and output 10000 is 4123659995 (the C++ standard's check value) */
    mt19937 m;
    mt19937_seed(&m, 5489);
    assert_int_equal(mt19937_next(&m), 3499211612u);
    for (int i = 2; i < 10000; i++) mt19937_next(&m);
    assert_int_equal(mt19937_next(&m), 4123659995u);
    /* only the low 32 bits of the seed enter the state; the seed is kept whole */
    mt19937 a, b;
    mt19937_seed(&a, 5489 + (7ull << 32));
    mt19937_seed(&b, 5489);
    assert_int_equal(mt19937_next(&a), mt19937_next(&b));
    assert_true(a.seed == 5489 + (7ull << 32));
}

static void test_words(void **state) {
    (void)state;
    ddp_generator g, h;
    generator_seed(&g, 6);
    generator_seed(&h, 6);
    uint64_t hi = generator_random(&h), lo = generator_random(&h);
    assert_true(generator_random64(&g) == (hi << 32 | lo));
    /* torch.manual_seed(6); torch.empty(1, dtype=torch.int64).random_(-2**63, None) */
    generator_seed(&g, 6);
    assert_true((int64_t)generator_random64(&g) == -1976381449757144375);
}

static void test_cached_normal(void **state) {
    (void)state;
    ddp_generator g, h;
    generator_seed(&g, 1);
    double three[3], one;
    generator_normal_f64(&g, three, 3, 0, 1, true);
    assert_true(g.has_next_double_normal); /* the second value of the second pair */
    generator_normal_f64(&g, &one, 1, 0, 1, true);
    assert_false(g.has_next_double_normal);
    /* calls of 3 and 1 values give what calls of 2 and 2 give: the pair is split across
     * the calls, not drawn again */
    double two[2], two_more[2];
    generator_seed(&h, 1);
    generator_normal_f64(&h, two, 2, 0, 1, true);
    generator_normal_f64(&h, two_more, 2, 0, 1, true);
    assert_true(three[0] == two[0] && three[1] == two[1]);
    assert_true(three[2] == two_more[0] && one == two_more[1]);
    /* float32 tensors share the float64 cache, as in PyTorch */
    float f;
    generator_normal_f64(&g, three, 1, 0, 1, true);
    assert_true(g.has_next_double_normal);
    double cached = g.next_double_normal;
    generator_normal_f32(&g, &f, 1, 0, 1, true);
    assert_true(f == (float)cached && !g.has_next_double_normal);
    generator_seed(&g, 1);
    assert_false(g.has_next_double_normal);
}

static void test_state_bytes(void **state) {
    (void)state;
    ddp_generator g, h;
    generator_seed(&g, 3);
    double z[3];
    generator_normal_f64(&g, z, 3, 0, 1, true);
    uint8_t bytes[GENERATOR_STATE_BYTES];
    generator_get_state(&g, bytes);
    uint64_t seed;
    memcpy(&seed, bytes, 8);
    assert_true(seed == 3);
    generator_seed(&h, 77);
    assert_int_equal(generator_set_state(&h, bytes, sizeof bytes), DDP_OK);
    assert_true(h.has_next_double_normal && h.next_double_normal == g.next_double_normal);
    for (int i = 0; i < 2000; i++) assert_int_equal(generator_random(&h), generator_random(&g));

    assert_int_equal(generator_set_state(&h, bytes, 100), DDP_ERR_ARG);
    assert_non_null(strstr(ddp_last_error(), "expected a state of 5056 bytes"));
    uint8_t bad[GENERATOR_STATE_BYTES];
    memcpy(bad, bytes, sizeof bad);
    memset(bad + 8, 0, 4); /* left = 0 */
    ddp_generator before = h;
    assert_int_equal(generator_set_state(&h, bad, sizeof bad), DDP_ERR_ARG);
    assert_non_null(strstr(ddp_last_error(), "not a valid generator state"));
    assert_memory_equal(&before, &h, sizeof h); /* unchanged */
}

static void test_randperm(void **state) {
    (void)state;
    ddp_generator g;
    int64_t p[1000];
    generator_seed(&g, 6);
    generator_randperm(&g, p, 1000);
    char seen[1000] = {0};
    for (int i = 0; i < 1000; i++) {
        assert_true(p[i] >= 0 && p[i] < 1000 && !seen[p[i]]);
        seen[p[i]] = 1;
    }
    /* the inside-out variant is a permutation too, drawing one 64-bit word per element */
    generator_seed(&g, 6);
    generator_randperm_inside_out(&g, p, 1000);
    memset(seen, 0, sizeof seen);
    for (int i = 0; i < 1000; i++) {
        assert_true(p[i] >= 0 && p[i] < 1000 && !seen[p[i]]);
        seen[p[i]] = 1;
    }
    ddp_generator h;
    generator_seed(&h, 6);
    for (int i = 0; i < 2000; i++) generator_random(&h);
    assert_int_equal(generator_random(&g), generator_random(&h));
}

static void test_nondeterministic_seeds(void **state) {
    (void)state;
    uint64_t a = generator_nondeterministic_seed(), b = generator_nondeterministic_seed();
    assert_true(a != b);
    assert_true(a < (1ull << 53) && b < (1ull << 53));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mt19937_reference), cmocka_unit_test(test_words),
        cmocka_unit_test(test_cached_normal),     cmocka_unit_test(test_state_bytes),
        cmocka_unit_test(test_randperm),          cmocka_unit_test(test_nondeterministic_seeds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
