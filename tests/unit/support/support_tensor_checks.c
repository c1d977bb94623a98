/* support_tensor_checks.c — the shared tensor-test helpers declared in
 * support_tensor_checks.h: making small tensors from arrays or a seed, reading one value. */
#include "support_tensor_checks.h"

#include "base/generator.h"

/* Owned by the caller; any failure fails the running test. */
tensor *make_tensor(dtype dt, const int64_t *sizes, int ndim, const double *values) {
    tensor *t = NULL;
    OK(tensor_empty(sizes, ndim, dt, DEVICE_CPU_VALUE, &t));
    for (int64_t i = 0; i < tensor_numel(t); i++) tensor_set(t, i, values[i]);
    return t;
}

/* Owned by the caller; any failure fails the running test. */
tensor *randn_tensor(dtype dt, const int64_t *sizes, int ndim, uint64_t seed) {
    ddp_generator g;
    generator_seed(&g, seed);
    tensor *t = NULL;
    OK(tensor_empty(sizes, ndim, dt, DEVICE_CPU_VALUE, &t));
    OK(tensor_normal_(t, 0, 1, &g));
    return t;
}

/* Borrows t; fails the running test unless t holds exactly one element. */
double item_of(const tensor *t) {
    double v = 0;
    OK(tensor_item(t, &v));
    return v;
}
