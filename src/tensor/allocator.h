/* allocator.h — where a storage's bytes come from, and who takes them back.
 *
 * A storage (tensor.h) records the allocator that made its data block and hands the
 * block back to it when the last reference goes, so host and device memory share one
 * release path. Two allocators exist: the CPU one (64-byte aligned host blocks, large
 * ones kept per thread for reuse, allocator_cpu.c) and one caching allocator per GPU
 * (cache_alloc.c over cudaMalloc/cudaFree, cuda_device.c). Tests may bring their own,
 * to check that every block comes back to the allocator that made it. */
#ifndef DDP_TENSOR_ALLOCATOR_H
#define DDP_TENSOR_ALLOCATOR_H

#include <stddef.h>

#include "base/status.h"
#include "tensor/tensor.h"

typedef struct ddp_allocator ddp_allocator;
struct ddp_allocator {
    const char *name; /* "cpu", "cuda:0", ...: used in messages */
    device device;    /* where the blocks live */
    /* Gives nbytes (0 allowed: *data may then be NULL) in *data, and in *ctx whatever
     * free needs to take the block back. On failure sets neither and returns
     * DDP_ERR_NOMEM with a message naming the size and the device. */
    ddp_status (*alloc)(ddp_allocator *self, size_t nbytes, void **data, void **ctx);
    /* Takes back a block alloc gave (data, ctx and nbytes as they were then). Cannot
     * fail. */
    void (*free)(ddp_allocator *self, void *data, void *ctx, size_t nbytes);
};

/* The host allocator (one for the process; its block cache is per thread). */
ddp_allocator *allocator_cpu(void);

/* Like tensor_empty, with the bytes taken from `a` (the tensor's device is a's device).
 * The tensor keeps `a` until its storage is freed: `a` must outlive it. Fails as
 * tensor_empty does, or with the allocator's DDP_ERR_NOMEM. */
ddp_status tensor_empty_from(ddp_allocator *a, const int64_t *sizes, int ndim, dtype dt,
                             tensor **out);

#endif
