/* alloc.c — the allocation seam (alloc.h): a per-thread countdown that fails the k-th
 * allocation, for the tests of every out-of-memory path. */
#include "base/alloc.h"

#include <stdlib.h>
#include <string.h>

static _Thread_local long fail_at;   /* 0: off */
static _Thread_local long allocated; /* allocations seen since ddp_alloc_fail_at */

void ddp_alloc_fail_at(long k) {
    fail_at = k > 0 ? k : 0;
    allocated = 0;
}

long ddp_alloc_count(void) {
    return allocated;
}

bool ddp_alloc_should_fail(void) {
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
