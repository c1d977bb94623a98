/* alloc.c — the allocation seam (alloc.h): a per-thread countdown that fails the k-th
 * allocation, for the tests of every out-of-memory path, and one shared by the threads
 * that opted in (a server's). */
#include "base/alloc.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

static _Thread_local long fail_at;   /* 0: off */
static _Thread_local long allocated; /* allocations seen since ddp_alloc_fail_at */
static _Thread_local bool shares;    /* this thread counts in the shared countdown */
static atomic_long shared_fail_at, shared_allocated;

void ddp_alloc_share(void) {
    shares = true;
}

void ddp_alloc_fail_shared_at(long k) {
    atomic_store(&shared_fail_at, k > 0 ? k : 0);
    atomic_store(&shared_allocated, 0);
}

long ddp_alloc_shared_count(void) {
    return atomic_load(&shared_allocated);
}

void ddp_alloc_fail_at(long k) {
    fail_at = k > 0 ? k : 0;
    allocated = 0;
}

long ddp_alloc_count(void) {
    return allocated;
}

bool ddp_alloc_should_fail(void) {
    if (shares) {
        long n = atomic_fetch_add(&shared_allocated, 1) + 1;
        long k = atomic_load(&shared_fail_at);
        return k > 0 && n == k;
    }
    allocated++;
    return fail_at > 0 && allocated == fail_at;
}

void *ddp_malloc(size_t n) {
    return ddp_alloc_should_fail() ? NULL : malloc(n);
}

void *ddp_calloc(size_t count, size_t size) {
    return ddp_alloc_should_fail() ? NULL : calloc(count, size);
}

void *ddp_realloc(void *p, size_t n) {
    return ddp_alloc_should_fail() ? NULL : realloc(p, n);
}

char *ddp_strdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *copy = ddp_malloc(n);
    return copy ? memcpy(copy, s, n) : NULL;
}
