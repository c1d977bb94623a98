/* test_tensor_random.c — the random fills at the tensor layer: PyTorch's large-n randperm
 * algorithm against its fixture (tests/fixtures/rng.safetensors, randperm_inside_out.n100,
 * PyTorch's 64-bit words run through that algorithm), which no test can reach through
 * torch.randperm (it takes over at n = 214748364), and the fill order of views. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tensor/tensor.h"
#include "tensor/tensor_io.h"

static tensor *fixture(const char *name) {
    char **names;
    tensor **ts;
    int n;
    assert_int_equal(tensor_load_safetensors(DDP_TEST_FIXTURES "/rng.safetensors", &names, &ts, &n),
                     DDP_OK);
    tensor *found = NULL;
    for (int i = 0; i < n; i++) {
        if (!found && strcmp(names[i], name) == 0)
            found = ts[i];
        else
            tensor_release(ts[i]);
        free(names[i]);
    }
    free(names);
    free(ts);
    assert_non_null(found);
    return found;
}

static void test_randperm_inside_out(void **state) {
    (void)state;
    tensor *want = fixture("randperm_inside_out.n100");
    ddp_generator g;
    generator_seed(&g, 6);
    int64_t p[100];
    generator_randperm_inside_out(&g, p, 100);
    assert_int_equal(tensor_numel(want), 100);
    assert_memory_equal(p, tensor_data(want), sizeof p);
    tensor_release(want);
}

/* A view with a size-1 dimension between two others is filled in memory order too. */
static void test_fill_order_with_unit_dims(void **state) {
    (void)state;
    int64_t sizes[3] = {4, 1, 3}, perm[3] = {2, 1, 0};
    tensor *base, *view, *flat;
    assert_int_equal(tensor_empty(sizes, 3, DTYPE_FLOAT64, DEVICE_CPU_VALUE, &base), DDP_OK);
    assert_int_equal(tensor_permute(base, perm, 3, &view), DDP_OK);
    ddp_generator g;
    generator_seed(&g, 2);
    assert_int_equal(tensor_uniform_(view, 0, 1, &g), DDP_OK);
    int64_t n = 12;
    assert_int_equal(tensor_empty(&n, 1, DTYPE_FLOAT64, DEVICE_CPU_VALUE, &flat), DDP_OK);
    generator_seed(&g, 2);
    assert_int_equal(tensor_uniform_(flat, 0, 1, &g), DDP_OK);
    assert_memory_equal(tensor_data(base), tensor_data(flat), 12 * sizeof(double));
    tensor_release(flat);
    tensor_release(view);
    tensor_release(base);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_randperm_inside_out),
        cmocka_unit_test(test_fill_order_with_unit_dims),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
