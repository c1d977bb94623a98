/* allocator_cpu.c — the host allocator behind every CPU storage: 64-byte aligned blocks
 * from the C library, with large blocks kept for reuse.
 *
 * Large blocks are kept instead of going back to the C library: a training step frees
 * and re-allocates the same few activation and gradient sizes every iteration, and glibc
 * returns big blocks to the kernel, so each step would pay page faults and kernel
 * zeroing again. The cache is per thread (no locks), holds only blocks of at least
 * BLOCK_CACHE_MIN bytes, reuses a block only for the same rounded size, and is bounded
 * in count and bytes. Off under AddressSanitizer, so that it still sees every use after
 * free. (A block freed on another thread than the one that made it joins that thread's
 * cache; both are plain malloc blocks, so that is fine.) */
#include "tensor/allocator.h"

#include "base/alloc.h"

#include <stdlib.h>

#if defined(__SANITIZE_ADDRESS__)
#define BLOCK_CACHE_ON 0
#else
#define BLOCK_CACHE_ON 1
#endif
#define BLOCK_CACHE_SLOTS 16
#define BLOCK_CACHE_MIN ((size_t)256 << 10)
#define BLOCK_CACHE_MAX_BYTES ((size_t)256 << 20)

typedef struct {
    void *blocks[BLOCK_CACHE_SLOTS];
    size_t bytes[BLOCK_CACHE_SLOTS];
    int count;
    size_t total;
} block_cache;
static _Thread_local block_cache cache;

/* Bytes of the block behind nbytes of data: rounded to 64 bytes (to 4 KiB for cacheable
 * sizes, so that near sizes share blocks); never 0, so a block always exists. */
static size_t block_bytes(size_t nbytes) {
    size_t total = (nbytes + 63) & ~(size_t)63;
    if (total == 0) total = 64;
    if (total >= BLOCK_CACHE_MIN) total = (total + 4095) & ~(size_t)4095;
    return total;
}

static void cpu_free(ddp_allocator *self, void *data, void *ctx, size_t nbytes) {
    (void)self;
    (void)ctx;
    size_t bytes = block_bytes(nbytes);
    if (BLOCK_CACHE_ON && bytes >= BLOCK_CACHE_MIN && cache.count < BLOCK_CACHE_SLOTS &&
        cache.total + bytes <= BLOCK_CACHE_MAX_BYTES) {
        cache.blocks[cache.count] = data;
        cache.bytes[cache.count++] = bytes;
        cache.total += bytes;
        return;
    }
    free(data);
}

static ddp_status cpu_alloc(ddp_allocator *self, size_t nbytes, void **data, void **ctx) {
    (void)self;
    size_t bytes = block_bytes(nbytes);
    *ctx = NULL;
    for (int i = cache.count - 1; i >= 0; i--) {
        if (cache.bytes[i] != bytes) continue;
        *data = cache.blocks[i];
        cache.total -= bytes;
        cache.count--;
        cache.blocks[i] = cache.blocks[cache.count];
        cache.bytes[i] = cache.bytes[cache.count];
        return DDP_OK;
    }
    void *p = ddp_alloc_should_fail() ? NULL : aligned_alloc(64, bytes);
    if (!p)
        return DDP_FAIL(DDP_ERR_NOMEM,
                        "out of memory: a tensor of %zu bytes (%.1f GiB) could not be allocated",
                        nbytes, (double)nbytes / (double)((size_t)1 << 30));
    *data = p;
    return DDP_OK;
}

ddp_allocator *allocator_cpu(void) {
    static ddp_allocator cpu = {"cpu", {DEVICE_CPU, 0}, cpu_alloc, cpu_free};
    return &cpu;
}
