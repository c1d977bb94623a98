/* fuzz_npy.c — libFuzzer target for the .npy reader (src/tensor/tensor_io_npy.c) through
 * its in-memory source: magic, version, header length, the Python-literal header (descr,
 * fortran_order, shape) and the data all come from the input. A tensor that loads must fit
 * in the input. */
#include <assert.h>
#include <stdint.h>

#include "tensor/tensor_io.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    tensor *t = NULL;
    if (tensor_load_npy_buffer(data, size, "fuzz.npy", &t) == DDP_OK) {
        assert(t);
        assert(tensor_numel(t) * (int64_t)dtype_size(t->dtype) <= (int64_t)size);
        tensor_release(t);
    } else {
        assert(t == NULL);
    }
    return 0;
}
