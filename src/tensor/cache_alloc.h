/* cache_alloc.h — a caching allocator over a raw allocation backend: the bookkeeping
 * behind each GPU's memory (cudaMalloc per tensor is far too slow, and it synchronises).
 *
 * Requests are rounded up to a size class; a freed block goes onto its class's free list
 * and the next request of that class takes it back without calling the backend. Classes
 * are multiples of 512 bytes up to 1 MiB, then four per power of two (so a block wastes
 * under a quarter of itself). When the backend refuses a block, the cache is returned to
 * it and the request tried once more. The statistics follow PyTorch's names: `allocated`
 * counts the bytes of live blocks as PyTorch's memory_allocated does (each request
 * rounded up to 512 bytes), `reserved` the bytes held from the backend (live and
 * cached blocks, class sizes). The logic knows nothing of CUDA, so it is unit-tested on
 * the host over a malloc backend (tests/unit/test_tensor_cache_alloc.c). Thread-safe (one
 * mutex): a tensor may be freed on a helper thread of the collectives. */
#ifndef DDP_TENSOR_CACHE_ALLOC_H
#define DDP_TENSOR_CACHE_ALLOC_H

#include <stddef.h>
#include <stdint.h>

#include "base/status.h"
#include "tensor/allocator.h"

/* The raw memory a cache draws on (cudaMalloc/cudaFree on a GPU). */
typedef struct {
    void *ctx;
    /* bytes > 0; returns 0 and sets *ptr, or nonzero (out of memory or another failure)
     * and leaves *ptr alone; `why` receives a short reason (for messages) on failure. */
    int (*alloc)(void *ctx, size_t bytes, void **ptr, const char **why);
    void (*free)(void *ctx, void *ptr);
} cache_backend;

typedef struct {
    size_t allocated;     /* live blocks, requests rounded up to 512 bytes */
    size_t max_allocated; /* the peak of allocated since creation or the last reset */
    size_t reserved;      /* held from the backend: live and cached blocks */
    size_t max_reserved;
    uint64_t backend_allocs; /* calls to backend.alloc that succeeded */
    uint64_t backend_frees;
    uint64_t reuses; /* requests served from the cache */
} cache_stats;

typedef struct cache_alloc cache_alloc;

/* A new, empty cache over `backend` for `dev` (named `name` in messages, e.g.
 * "cuda:0"; the string must outlive the cache). NULL when out of host memory. */
cache_alloc *cache_alloc_new(cache_backend backend, device dev, const char *name);
/* Returns the cached blocks to the backend and frees the cache. Blocks still live are
 * the backend's to keep (they belong to storages that outlive it). NULL-safe. */
void cache_alloc_destroy(cache_alloc *c);

/* The block size a request of nbytes gets (its class); 0 for 0. */
size_t cache_alloc_block_size(size_t nbytes);

/* A block of at least nbytes in *ptr, its bookkeeping in *block (give both back to
 * cache_alloc_put). nbytes 0 gives NULL and NULL without touching the backend.
 * DDP_ERR_NOMEM names the device, the size, and what is allocated and cached when the
 * backend refuses even after the cache was returned to it. */
ddp_status cache_alloc_get(cache_alloc *c, size_t nbytes, void **ptr, void **block);
/* Takes a block back onto its free list (NULL-safe). Cannot fail. */
void cache_alloc_put(cache_alloc *c, void *block);
/* Returns every cached (free) block to the backend; live blocks stay. */
void cache_alloc_empty(cache_alloc *c);
cache_stats cache_alloc_stats(cache_alloc *c);
/* Sets max_allocated and max_reserved to the current values. */
void cache_alloc_reset_peak(cache_alloc *c);

/* The cache as a storage allocator (tensor_empty_from, storages on its device). */
ddp_allocator *cache_alloc_allocator(cache_alloc *c);

#endif
