/* support_tensor_checks.h — helpers the tensor-level unit tests share: status checks
 * (OK, ERR_CONTAINS) and small tensors made from arrays or a seeded generator. Built into
 * the ddp_test_tensor library and linked into tests of the tensor layer and above; every
 * helper fails the running cmocka test instead of returning an error. */
#ifndef DDP_SUPPORT_TENSOR_CHECKS_H
#define DDP_SUPPORT_TENSOR_CHECKS_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "tensor/tensor.h"

/* The call must succeed. */
#define OK(expr) assert_int_equal((expr), DDP_OK)

/* The call must fail with `code` and a message that contains `text`. */
#define ERR_CONTAINS(expr, code, text)                                                             \
    do {                                                                                           \
        assert_int_equal((expr), (code));                                                          \
        if (!strstr(ddp_last_error(), (text)))                                                     \
            fail_msg("error \"%s\" lacks \"%s\"", ddp_last_error(), (text));                       \
    } while (0)

/* A new CPU tensor of the given dtype and shape holding values[0..numel) in row-major
 * order; the caller releases it. Fails the test if it cannot be made. */
tensor *make_tensor(dtype dt, const int64_t *sizes, int ndim, const double *values);

/* A new CPU tensor of standard-normal values from a generator seeded with `seed` (the
 * same seed gives the same values; never all zeros); the caller releases it. */
tensor *randn_tensor(dtype dt, const int64_t *sizes, int ndim, uint64_t seed);

/* The value of a one-element tensor; fails the test for any other tensor. */
double item_of(const tensor *t);

#endif
