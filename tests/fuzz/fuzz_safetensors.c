/* fuzz_safetensors.c — libFuzzer target for the .safetensors reader
 * (src/tensor/tensor_io_safetensors.c) through its in-memory source: header length, JSON
 * header, dtypes, shapes, offsets and metadata all come from the input. A file that loads
 * must hold tensors whose sizes fit in the input. */
#include <assert.h>
#include <stdint.h>

#include "tensor/tensor_io.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    tensor_file f = {0};
    if (tensor_read_safetensors_buffer(data, size, "fuzz.safetensors", &f) == DDP_OK) {
        for (int i = 0; i < f.n; i++) {
            assert(f.names[i] && f.tensors[i]);
            assert(tensor_numel(f.tensors[i]) * (int64_t)dtype_size(f.tensors[i]->dtype) <=
                   (int64_t)size);
        }
    } else {
        assert(f.n == 0 && f.names == NULL && f.tensors == NULL);
    }
    tensor_file_free(&f);
    return 0;
}
