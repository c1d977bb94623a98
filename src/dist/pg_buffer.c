/* pg_buffer.c — the one place src/dist looks inside a tensor: turning a tensor into the
 * raw buffer a collective works on (with the device it lives on, which each collective
 * checks against its group's backend) (kept apart so that the rest of the layer, and its
 * tests, need nothing from the tensor library but its header). */
#include "dist/fingerprint.h"
#include <string.h>

#include "dist/pg_internal.h"
#include "tensor/device.h"

/* Gloo takes CUDA tensors too (comm_staged.c moves them through host memory); NCCL
 * takes CUDA tensors only. */
ddp_status pg_buffer_check_device(const char *op, comm_backend backend, const pg_buffer *b) {
    bool cuda = b->dev.type == DEVICE_CUDA;
    if (backend == COMM_BACKEND_NCCL && !cuda)
        return DDP_FAIL(DDP_ERR_ARG,
                        "%s: the NCCL backend takes CUDA tensors; move it with "
                        ":to(\"cuda\") (or use backend=\"gloo\" for CPU tensors)",
                        op);
    return DDP_OK;
}

ddp_status pg_buffer_copy(const pg_buffer *dst, const pg_buffer *src, size_t n) {
    if (n == 0 || dst->data == src->data) return DDP_OK;
    if (dst->dev.type == DEVICE_CUDA || src->dev.type == DEVICE_CUDA)
        return cuda_memcpy(dst->data, src->data, n, "collective");
    memmove(dst->data, src->data, n);
    return DDP_OK;
}

ddp_status pg_buffer_from_tensor(const char *op, const tensor *t, pg_buffer *b) {
    char shape[96];
    if (t->dtype == DTYPE_BOOL)
        return DDP_FAIL(DDP_ERR_ARG,
                        "%s: collectives take float32, float64 or int64 tensors, "
                        "not bool",
                        op);
    if (!tensor_is_contiguous(t))
        return DDP_FAIL(DDP_ERR_ARG,
                        "%s: the tensor %s is not contiguous (a transposed or "
                        "narrowed view); collectives work in place on contiguous "
                        "memory: call :contiguous() first and use the result",
                        op, fp_shape(shape, sizeof shape, t->dtype, t->ndim, t->sizes));
    b->data = tensor_device_data(t); /* a device pointer for a CUDA tensor */
    b->dev = t->storage->device;
    b->dt = t->dtype;
    b->ndim = t->ndim;
    b->owner = (tensor *)t;
    for (int i = 0; i < t->ndim; i++) b->sizes[i] = t->sizes[i];
    return DDP_OK;
}
