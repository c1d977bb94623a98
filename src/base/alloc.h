/* alloc.h — the allocation seam: the C library's malloc, calloc and realloc behind a
 * test hook that makes the k-th allocation from now fail, so that tests can walk every
 * path out of a failed allocation (each must be a clear DDP_ERR_NOMEM error, with nothing
 * leaked). The layers allocate through ddp_malloc / ddp_calloc / ddp_realloc where they
 * report running out of memory; production code never sets the hook, and then they cost
 * one branch over malloc. */
#ifndef DDP_BASE_ALLOC_H
#define DDP_BASE_ALLOC_H

#include <stdbool.h>
#include <stddef.h>

/* malloc / calloc / realloc, unless the hook says this allocation fails (then NULL;
 * a failed ddp_realloc leaves p as it was, as realloc does). Each call counts as one
 * allocation, a realloc that grows a block included. */
void *ddp_malloc(size_t n);
void *ddp_calloc(size_t count, size_t size);
void *ddp_realloc(void *p, size_t n);
/* strdup through the seam (one allocation): a copy the caller frees, or NULL. */
char *ddp_strdup(const char *s);

/* Tests: the k-th allocation through the seam from now fails (k >= 1), and only that
 * one; 0 turns the hook off. Per thread. */
void ddp_alloc_fail_at(long k);
/* Tests: how many allocations went through the seam on this thread since the last
 * ddp_alloc_fail_at (so a test knows when k went past everything it ran). */
long ddp_alloc_count(void);
/* Tests of code that runs on threads of its own (the store server's): every thread that
 * called ddp_alloc_share counts in one countdown shared by all of them instead of its own,
 * and ddp_alloc_fail_shared_at(k) makes the k-th allocation among them fail (0: off);
 * ddp_alloc_shared_count says how many they made since. */
void ddp_alloc_share(void);
void ddp_alloc_fail_shared_at(long k);
long ddp_alloc_shared_count(void);
/* For allocators that do not call malloc (aligned_alloc): counts one allocation and
 * returns true when it is the one that must fail. */
bool ddp_alloc_should_fail(void);

#endif
