/* cache_alloc.c — the size-class cache behind each GPU's memory (see cache_alloc.h).
 *
 * Each block the backend gave is described by a small host record (cache_block) that
 * travels with the storage as its allocator context, so taking a block back needs no
 * lookup: the record says its class. Free records sit on one list per class. The cache
 * never splits or merges blocks (PyTorch's allocator does, to waste less); the classes
 * bound the waste instead, and a training step asks for the same few sizes every
 * iteration, which is the case the cache is for. Reuse without synchronisation is sound
 * because every use of a block runs on one stream per device (the legacy default stream
 * today): work queued on a freed block finishes before the work of its next owner. */
#include "tensor/cache_alloc.h"

#include <pthread.h>
#include <stdlib.h>

#define SMALL_STEP ((size_t)512)
#define SMALL_MAX ((size_t)1 << 20)
#define SMALL_BINS (SMALL_MAX / SMALL_STEP) /* 512 .. 1 MiB in steps of 512 */
#define LARGE_MIN_LOG 20                    /* large blocks lie above 2^20 */
#define LARGE_MAX_LOG 40                    /* TENSOR_MAX_BYTES is 2^40 */
#define CACHE_BINS ((int)(SMALL_BINS + 4 * (LARGE_MAX_LOG - LARGE_MIN_LOG)))
#define MAX_REQUEST ((size_t)1 << LARGE_MAX_LOG)

typedef struct cache_block {
    void *ptr;
    size_t size;    /* the class size: what the backend gave */
    size_t counted; /* what `allocated` counts while it is live (request rounded to 512) */
    struct cache_block *next;
} cache_block;

struct cache_alloc {
    ddp_allocator as_allocator; /* first: cache_alloc_allocator hands out its address */
    cache_backend backend;
    pthread_mutex_t lock;
    cache_block *bins[CACHE_BINS];
    cache_stats stats;
};

/* The highest set bit of x > 0. */
static unsigned floor_log2(size_t x) {
    return 63u - (unsigned)__builtin_clzll((unsigned long long)x);
}

size_t cache_alloc_block_size(size_t nbytes) {
    if (nbytes == 0) return 0;
    size_t r = (nbytes + SMALL_STEP - 1) & ~(SMALL_STEP - 1);
    if (r <= SMALL_MAX) return r;
    unsigned k = floor_log2(r - 1); /* 2^k < r <= 2^(k+1) */
    size_t step = (size_t)1 << (k - 2);
    return (r + step - 1) / step * step; /* 1.25, 1.5, 1.75 or 2 times 2^k */
}

/* The free list of a class size (one cache_alloc_block_size returned, <= MAX_REQUEST). */
static int bin_of(size_t size) {
    if (size <= SMALL_MAX) return (int)(size / SMALL_STEP) - 1;
    unsigned k = floor_log2(size - 1);
    size_t step = (size_t)1 << (k - 2);
    return (int)(SMALL_BINS + 4 * (k - LARGE_MIN_LOG) + (size / step - 5));
}

static ddp_status cache_as_alloc(ddp_allocator *self, size_t nbytes, void **data, void **ctx) {
    return cache_alloc_get((cache_alloc *)self, nbytes, data, ctx);
}

static void cache_as_free(ddp_allocator *self, void *data, void *ctx, size_t nbytes) {
    (void)data;
    (void)nbytes;
    cache_alloc_put((cache_alloc *)self, ctx);
}

cache_alloc *cache_alloc_new(cache_backend backend, device dev, const char *name) {
    cache_alloc *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->as_allocator = (ddp_allocator){name, dev, cache_as_alloc, cache_as_free};
    c->backend = backend;
    pthread_mutex_init(&c->lock, NULL);
    return c;
}

/* Returns the free lists to the backend; the lock is held. */
static void empty_locked(cache_alloc *c) {
    for (int i = 0; i < CACHE_BINS; i++) {
        while (c->bins[i]) {
            cache_block *b = c->bins[i];
            c->bins[i] = b->next;
            c->backend.free(c->backend.ctx, b->ptr);
            c->stats.reserved -= b->size;
            c->stats.backend_frees++;
            free(b);
        }
    }
}

void cache_alloc_destroy(cache_alloc *c) {
    if (!c) return;
    pthread_mutex_lock(&c->lock);
    empty_locked(c);
    pthread_mutex_unlock(&c->lock);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

/* Counts a block going live; the lock is held. */
static void count_live(cache_alloc *c, cache_block *b, size_t nbytes) {
    b->counted = (nbytes + SMALL_STEP - 1) & ~(SMALL_STEP - 1);
    c->stats.allocated += b->counted;
    if (c->stats.allocated > c->stats.max_allocated) c->stats.max_allocated = c->stats.allocated;
}

/* A new block of `size` from the backend (the cache returned to it once if it refuses);
 * the lock is held. NULL with *why set when it still refuses. */
static cache_block *backend_block(cache_alloc *c, size_t size, const char **why) {
    cache_block *b = malloc(sizeof *b);
    if (!b) {
        *why = "out of host memory for the allocator's records";
        return NULL;
    }
    int rc = c->backend.alloc(c->backend.ctx, size, &b->ptr, why);
    if (rc != 0) {
        empty_locked(c);
        rc = c->backend.alloc(c->backend.ctx, size, &b->ptr, why);
    }
    if (rc != 0) {
        free(b);
        return NULL;
    }
    b->size = size;
    b->next = NULL;
    c->stats.backend_allocs++;
    c->stats.reserved += size;
    if (c->stats.reserved > c->stats.max_reserved) c->stats.max_reserved = c->stats.reserved;
    return b;
}

ddp_status cache_alloc_get(cache_alloc *c, size_t nbytes, void **ptr, void **block) {
    if (nbytes == 0) {
        *ptr = NULL;
        *block = NULL;
        return DDP_OK;
    }
    const char *name = c->as_allocator.name;
    if (nbytes > MAX_REQUEST)
        return DDP_FAIL(DDP_ERR_NOMEM,
                        "%s: out of memory: a tensor of %zu bytes is larger than the %zu GiB "
                        "a single tensor may have",
                        name, nbytes, MAX_REQUEST >> 30);
    size_t size = cache_alloc_block_size(nbytes);
    int bin = bin_of(size);
    pthread_mutex_lock(&c->lock);
    cache_block *b = c->bins[bin];
    const char *why = "the backend refused";
    if (b) {
        c->bins[bin] = b->next;
        c->stats.reuses++;
    } else {
        b = backend_block(c, size, &why);
    }
    if (!b) {
        cache_stats st = c->stats;
        pthread_mutex_unlock(&c->lock);
        return DDP_FAIL(DDP_ERR_NOMEM,
                        "%s: out of memory: a tensor of %zu bytes (%.1f MiB) could not be "
                        "allocated (%s; %.1f MiB held by live tensors, %.1f MiB reserved)",
                        name, nbytes, (double)nbytes / 1048576.0, why,
                        (double)st.allocated / 1048576.0, (double)st.reserved / 1048576.0);
    }
    count_live(c, b, nbytes);
    pthread_mutex_unlock(&c->lock);
    *ptr = b->ptr;
    *block = b;
    return DDP_OK;
}

void cache_alloc_put(cache_alloc *c, void *block) {
    cache_block *b = block;
    if (!b) return;
    int bin = bin_of(b->size);
    pthread_mutex_lock(&c->lock);
    c->stats.allocated -= b->counted;
    b->next = c->bins[bin];
    c->bins[bin] = b;
    pthread_mutex_unlock(&c->lock);
}

void cache_alloc_empty(cache_alloc *c) {
    pthread_mutex_lock(&c->lock);
    empty_locked(c);
    pthread_mutex_unlock(&c->lock);
}

cache_stats cache_alloc_stats(cache_alloc *c) {
    pthread_mutex_lock(&c->lock);
    cache_stats st = c->stats;
    pthread_mutex_unlock(&c->lock);
    return st;
}

void cache_alloc_reset_peak(cache_alloc *c) {
    pthread_mutex_lock(&c->lock);
    c->stats.max_allocated = c->stats.allocated;
    c->stats.max_reserved = c->stats.reserved;
    pthread_mutex_unlock(&c->lock);
}

ddp_allocator *cache_alloc_allocator(cache_alloc *c) {
    return &c->as_allocator;
}
