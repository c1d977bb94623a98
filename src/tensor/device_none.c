/* device_none.c — the device layer of a build without the CUDA toolkit (device.h): no GPU
 * exists, and every request for one says that this build has no CUDA support. */
#include "tensor/device.h"

/* The one message of every refusal. */
static ddp_status no_cuda(void) {
    return DDP_FAIL(DDP_ERR_UNSUPPORTED,
                    "cuda: this build has no CUDA support (ddplab was built without the CUDA "
                    "toolkit; torch.cuda.is_available() is false)");
}

bool cuda_built(void) {
    return false;
}

int cuda_device_count(void) {
    return 0;
}

ddp_status cuda_require(void) {
    return no_cuda();
}

void cuda_set_default_device(int index) {
    (void)index;
}

ddp_status cuda_set_device(int index) {
    (void)index;
    return no_cuda();
}

ddp_status cuda_current_device(int *index) {
    *index = 0;
    return no_cuda();
}

ddp_status cuda_synchronize(void) {
    return no_cuda();
}

ddp_status device_resolve(device *d) {
    return d->type == DEVICE_CPU ? DDP_OK : no_cuda();
}

bool cuda_was_used(void) {
    return false;
}

ddp_status cuda_allocator(int index, ddp_allocator **out) {
    (void)index;
    *out = NULL;
    return no_cuda();
}

ddp_status cuda_memory_stats(int index, cache_stats *out) {
    (void)index;
    *out = (cache_stats){0};
    return no_cuda();
}

ddp_status cuda_reset_peak_memory_stats(int index) {
    (void)index;
    return no_cuda();
}

ddp_status cuda_empty_cache(void) {
    return no_cuda();
}

bool cuda_is_device_memory(const void *p) {
    (void)p;
    return false;
}

ddp_status cuda_memcpy(void *dst, const void *src, size_t n, const char *op) {
    (void)dst, (void)src, (void)n, (void)op;
    return no_cuda();
}

ddp_status cuda_memset_zero(int index, void *dst, size_t n, const char *op) {
    (void)index, (void)dst, (void)n, (void)op;
    return no_cuda();
}

ddp_status cuda_fill(int index, void *dst, dtype dt, int64_t n, double value, const char *op) {
    (void)index, (void)dst, (void)dt, (void)n, (void)value, (void)op;
    return no_cuda();
}

ddp_status cuda_binary(const ddp_cuda_ewise_args *args, const char *op) {
    (void)args, (void)op;
    return no_cuda();
}

ddp_status cuda_unary(const ddp_cuda_ewise_args *args, const char *op) {
    (void)args, (void)op;
    return no_cuda();
}

ddp_status cuda_reduce(cuda_reduction kind, const ddp_cuda_reduce_args *args, const char *op) {
    (void)kind, (void)args, (void)op;
    return no_cuda();
}

ddp_status cuda_random(const ddp_cuda_random_args *args, const char *op) {
    (void)args, (void)op;
    return no_cuda();
}

ddp_status cuda_optim(const ddp_cuda_optim_args *args, const char *op) {
    (void)args, (void)op;
    return no_cuda();
}

ddp_status cuda_gemm(int index, dtype dt, bool ta, bool tb, int64_t m, int64_t n, int64_t k,
                     double alpha, cuda_matrix a, cuda_matrix b, double beta, void *c,
                     const char *op) {
    (void)index, (void)dt, (void)ta, (void)tb, (void)m, (void)n, (void)k, (void)alpha;
    (void)a, (void)b, (void)beta, (void)c, (void)op;
    return no_cuda();
}

/* The flag is kept, as PyTorch keeps it without a GPU; nothing reads it here. */
static bool allow_tf32;

void cuda_set_allow_tf32(bool allow) {
    allow_tf32 = allow;
}

bool cuda_allow_tf32(void) {
    return allow_tf32;
}
