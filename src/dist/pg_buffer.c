/* pg_buffer.c — the one place src/dist looks inside a tensor: turning a tensor into the
 * raw buffer a collective works on (kept apart so that the rest of the layer, and its
 * tests, need nothing from the tensor library but its header). */
#include "dist/fingerprint.h"
#include "dist/process_group.h"

ddp_status pg_buffer_from_tensor(const char *op, const tensor *t, pg_buffer *b) {
    char shape[96];
    if (t->storage->device.type != DEVICE_CPU)
        return DDP_FAIL(DDP_ERR_ARG,
                        "%s: the Gloo backend takes CPU tensors; move it with "
                        ":to(\"cpu\") (or use backend=\"nccl\" for GPU tensors)",
                        op);
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
    b->data = tensor_data(t);
    b->dt = t->dtype;
    b->ndim = t->ndim;
    b->owner = (tensor *)t;
    for (int i = 0; i < t->ndim; i++) b->sizes[i] = t->sizes[i];
    return DDP_OK;
}
