/* cuda_device.c — the device layer over the CUDA runtime (device.h): GPU discovery, the
 * current device, one caching allocator per GPU over cudaMalloc/cudaFree, and copies.
 * The kernels are in tensor_cuda.cu; GEMM goes to cuBLAS (one handle per GPU, made on
 * first use, on the legacy default stream like everything else). cuBLAS is opened with
 * dlopen at the first GEMM on a GPU, not linked: loading it costs every process about
 * 70 ms and 200 MB of memory (its static initialisers), which a CPU-only session, or a
 * rank that never multiplies matrices on a GPU, must not pay.
 *
 * CUDA starts lazily: nothing here calls the runtime before a GPU is asked for, so a
 * CPU-only session on a machine with the toolkit but no GPU pays nothing. A runtime
 * failure becomes a status with the op, the device and CUDA's own words; nothing aborts.
 * State is per process and guarded by one mutex (the collectives' helper threads may
 * free tensors); the current device is set on each calling thread before it works. */
#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>

#include "tensor/cuda_kernels.h"
#include "tensor/device.h"
#include "tensor/tensor_internal.h"

#define MAX_GPUS 64

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t count_once = PTHREAD_ONCE_INIT;
static int gpu_count;                        /* visible GPUs, asked once */
static int default_device;                   /* what cuda_set_default_device gave */
static int current_device = -1;              /* -1 until set_device or the first use */
static _Thread_local int thread_device = -1; /* what this thread last told CUDA */
static cache_alloc *caches[MAX_GPUS];
static char cache_names[MAX_GPUS][16];

static void count_gpus(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) n = 0; /* no driver, no GPU: none visible */
    (void)cudaGetLastError(); /* the failure above must not surface in a later call */
    gpu_count = n < MAX_GPUS ? n : MAX_GPUS;
}

bool cuda_built(void) {
    return true;
}

int cuda_device_count(void) {
    pthread_once(&count_once, count_gpus);
    return gpu_count;
}

ddp_status cuda_require(void) {
    if (cuda_device_count() > 0) return DDP_OK;
    return DDP_FAIL(DDP_ERR_UNSUPPORTED,
                    "cuda: no GPU is visible (torch.cuda.is_available() is false)");
}

/* DDP_ERR_ARG unless index names a visible GPU. */
static ddp_status check_index(int index) {
    DDP_CHECK(cuda_require());
    int n = cuda_device_count();
    if (index < 0 || index >= n)
        return DDP_FAIL(DDP_ERR_ARG,
                        "cuda: there is no device cuda:%d (%d GPU%s visible: cuda:0 to cuda:%d)",
                        index, n, n == 1 ? " is" : "s are", n - 1);
    return DDP_OK;
}

/* A CUDA error as a status naming the op and the device. */
static ddp_status cuda_fail(cudaError_t e, const char *op, int index) {
    (void)cudaGetLastError();
    if (e == cudaErrorMemoryAllocation)
        return DDP_FAIL(DDP_ERR_NOMEM, "%s: cuda:%d is out of memory (%s)", op, index,
                        cudaGetErrorString(e));
    return DDP_FAIL(DDP_ERR_STATE, "%s: CUDA error on cuda:%d: %s (%s)", op, index,
                    cudaGetErrorString(e), cudaGetErrorName(e));
}

void cuda_set_default_device(int index) {
    pthread_mutex_lock(&lock);
    default_device = index < 0 ? 0 : index;
    pthread_mutex_unlock(&lock);
}

/* The current device, chosen from the default on first use; the lock is not held. */
static int current(void) {
    pthread_mutex_lock(&lock);
    if (current_device < 0) current_device = default_device % cuda_device_count();
    int d = current_device;
    pthread_mutex_unlock(&lock);
    return d;
}

/* Points this thread's CUDA calls at GPU d (none visible: the learner's message). */
static ddp_status enter_device(const char *op, int d) {
    DDP_CHECK(cuda_require());
    if (thread_device != d) {
        cudaError_t e = cudaSetDevice(d);
        if (e != cudaSuccess) return cuda_fail(e, op, d);
        thread_device = d;
    }
    return DDP_OK;
}

/* Points this thread's CUDA calls at the current device. */
static ddp_status enter(const char *op, int *index) {
    DDP_CHECK(cuda_require());
    int d = current();
    if (index) *index = d;
    return enter_device(op, d);
}

ddp_status cuda_set_device(int index) {
    DDP_CHECK(check_index(index));
    pthread_mutex_lock(&lock);
    current_device = index;
    pthread_mutex_unlock(&lock);
    return enter("set_device", NULL);
}

ddp_status cuda_current_device(int *index) {
    *index = 0;
    DDP_CHECK(cuda_require());
    *index = current();
    return DDP_OK;
}

ddp_status cuda_synchronize(void) {
    int d = 0;
    DDP_CHECK(enter("synchronize", &d));
    cudaError_t e = cudaDeviceSynchronize();
    return e == cudaSuccess ? DDP_OK : cuda_fail(e, "synchronize", d);
}

ddp_status device_resolve(device *d) {
    if (d->type == DEVICE_CPU) return DDP_OK;
    if (d->index == DEVICE_INDEX_CURRENT) {
        DDP_CHECK(cuda_require());
        d->index = current();
        return DDP_OK;
    }
    return check_index(d->index);
}

/* ---- the allocator backend: cudaMalloc/cudaFree on one GPU ------------------------ */

/* The backend's context is the GPU ordinal, stored in the pointer itself. */
static int gpu_alloc(void *ctx, size_t bytes, void **ptr, const char **why) {
    int index = (int)(intptr_t)ctx;
    cudaError_t e = cudaSetDevice(index);
    if (e == cudaSuccess) e = cudaMalloc(ptr, bytes);
    thread_device = -1; /* the caller's device is set again by its next enter() */
    if (e != cudaSuccess) {
        *why = cudaGetErrorString(e);
        (void)cudaGetLastError();
        return 1;
    }
    return 0;
}

static void gpu_free(void *ctx, void *ptr) {
    int index = (int)(intptr_t)ctx;
    if (cudaSetDevice(index) == cudaSuccess) (void)cudaFree(ptr);
    (void)cudaGetLastError();
    thread_device = -1;
}

/* Set once the first GPU allocator exists: cuda_was_used is asked for every buffer of
 * every Gloo call (comm_staged.c), so it reads one flag instead of taking the lock. */
static atomic_bool any_allocator;

bool cuda_was_used(void) {
    return atomic_load_explicit(&any_allocator, memory_order_acquire);
}

ddp_status cuda_allocator(int index, ddp_allocator **out) {
    *out = NULL;
    DDP_CHECK(check_index(index));
    pthread_mutex_lock(&lock);
    if (!caches[index]) {
        snprintf(cache_names[index], sizeof cache_names[index], "cuda:%d", index);
        cache_backend b = {(void *)(intptr_t)index, gpu_alloc, gpu_free};
        caches[index] = cache_alloc_new(b, (device){DEVICE_CUDA, index}, cache_names[index]);
        if (caches[index]) atomic_store_explicit(&any_allocator, true, memory_order_release);
    }
    cache_alloc *c = caches[index];
    pthread_mutex_unlock(&lock);
    if (!c) return DDP_FAIL(DDP_ERR_NOMEM, "cuda:%d: out of host memory for the allocator", index);
    *out = cache_alloc_allocator(c);
    return DDP_OK;
}

ddp_status cuda_memory_stats(int index, cache_stats *out) {
    *out = (cache_stats){0};
    DDP_CHECK(check_index(index));
    pthread_mutex_lock(&lock);
    cache_alloc *c = caches[index];
    pthread_mutex_unlock(&lock);
    if (c) *out = cache_alloc_stats(c);
    return DDP_OK;
}

ddp_status cuda_reset_peak_memory_stats(int index) {
    DDP_CHECK(check_index(index));
    pthread_mutex_lock(&lock);
    cache_alloc *c = caches[index];
    pthread_mutex_unlock(&lock);
    if (c) cache_alloc_reset_peak(c);
    return DDP_OK;
}

ddp_status cuda_empty_cache(void) {
    DDP_CHECK(cuda_require());
    for (int i = 0; i < cuda_device_count(); i++) {
        pthread_mutex_lock(&lock);
        cache_alloc *c = caches[i];
        pthread_mutex_unlock(&lock);
        if (c) cache_alloc_empty(c);
    }
    return DDP_OK;
}

/* ---- copies ------------------------------------------------------------------------ */

bool cuda_is_device_memory(const void *p) {
    /* only a process that allocated on a GPU holds device pointers; asking CUDA before
     * that would start it (a context per rank) in a session that never uses a GPU */
    if (!cuda_was_used()) return false;
    struct cudaPointerAttributes a;
    if (cudaPointerGetAttributes(&a, p) != cudaSuccess) {
        (void)cudaGetLastError();
        return false;
    }
    return a.type == cudaMemoryTypeDevice || a.type == cudaMemoryTypeManaged;
}

ddp_status cuda_memcpy(void *dst, const void *src, size_t n, const char *op) {
    int d = 0;
    DDP_CHECK(enter(op, &d));
    if (n == 0) return DDP_OK;
    /* cudaMemcpyDefault: unified addressing tells host from device pointers, and which
     * GPU a device pointer lives on (a copy between GPUs goes peer to peer or through
     * the host, as the driver decides). Synchronous for pageable host memory. */
    cudaError_t e = cudaMemcpy(dst, src, n, cudaMemcpyDefault);
    return e == cudaSuccess ? DDP_OK : cuda_fail(e, op, d);
}

ddp_status cuda_memset_zero(int d, void *dst, size_t n, const char *op) {
    DDP_CHECK(enter_device(op, d));
    if (n == 0) return DDP_OK;
    cudaError_t e = cudaMemset(dst, 0, n);
    return e == cudaSuccess ? DDP_OK : cuda_fail(e, op, d);
}

/* The status of a kernel launch on GPU d: the launcher's CUDA error code, in words. */
static ddp_status launched(int e, const char *op, int d) {
    return e == 0 ? DDP_OK : cuda_fail((cudaError_t)e, op, d);
}

ddp_status cuda_fill(int d, void *dst, dtype dt, int64_t n, double value, const char *op) {
    DDP_CHECK(enter_device(op, d));
    if (n == 0) return DDP_OK;
    /* the value converted once on the host, exactly as a CPU fill converts it */
    uint64_t pattern = 0;
    tensor_store(dt, &pattern, 0, value);
    return launched(ddp_cuda_fill_launch(dst, (int)dtype_size(dt), n, pattern), op, d);
}

ddp_status cuda_binary(const ddp_cuda_ewise_args *args, const char *op) {
    DDP_CHECK(enter_device(op, args->device));
    return launched(ddp_cuda_binary_launch(args), op, args->device);
}

ddp_status cuda_unary(const ddp_cuda_ewise_args *args, const char *op) {
    DDP_CHECK(enter_device(op, args->device));
    return launched(ddp_cuda_unary_launch(args), op, args->device);
}

ddp_status cuda_reduce(cuda_reduction kind, const ddp_cuda_reduce_args *args, const char *op) {
    DDP_CHECK(enter_device(op, args->device));
    int e = kind == CUDA_ACCUMULATE ? ddp_cuda_accumulate_launch(args)
            : kind == CUDA_EXTREME  ? ddp_cuda_extreme_launch(args)
                                    : ddp_cuda_softmax_launch(args);
    return launched(e, op, args->device);
}

ddp_status cuda_random(const ddp_cuda_random_args *args, const char *op) {
    DDP_CHECK(enter_device(op, args->device));
    return launched(ddp_cuda_random_launch(args), op, args->device);
}

ddp_status cuda_optim(const ddp_cuda_optim_args *args, const char *op) {
    DDP_CHECK(enter_device(op, args->device));
    return launched(ddp_cuda_optim_launch(args), op, args->device);
}

/* ---- GEMM through cuBLAS ----------------------------------------------------------- */

static cublasHandle_t blas_handles[MAX_GPUS];
static atomic_bool allow_tf32;

void cuda_set_allow_tf32(bool allow) {
    atomic_store(&allow_tf32, allow);
}

bool cuda_allow_tf32(void) {
    return atomic_load(&allow_tf32);
}

/* The cuBLAS functions used, found in the library opened at the first GEMM. */
static struct {
    __typeof__(cublasCreate_v2) *create;
    __typeof__(cublasSetMathMode) *set_math_mode;
    __typeof__(cublasSgemm_v2) *sgemm;
    __typeof__(cublasDgemm_v2) *dgemm;
    __typeof__(cublasGetStatusString) *status_string;
} blas;
static pthread_once_t blas_once = PTHREAD_ONCE_INIT;
static char blas_error[256]; /* why it could not be opened; empty once it is */

#define STR_(x) #x
#define STR(x) STR_(x)

static void open_blas(void) {
    /* the soname of the major version the build was compiled against */
    const char *name = "libcublas.so." STR(CUBLAS_VER_MAJOR);
    void *lib = dlopen(name, RTLD_NOW | RTLD_LOCAL);
    if (lib) {
        blas.create = (__typeof__(blas.create))dlsym(lib, "cublasCreate_v2");
        blas.set_math_mode = (__typeof__(blas.set_math_mode))dlsym(lib, "cublasSetMathMode");
        blas.sgemm = (__typeof__(blas.sgemm))dlsym(lib, "cublasSgemm_v2");
        blas.dgemm = (__typeof__(blas.dgemm))dlsym(lib, "cublasDgemm_v2");
        blas.status_string = (__typeof__(blas.status_string))dlsym(lib, "cublasGetStatusString");
    }
    if (lib && blas.create && blas.set_math_mode && blas.sgemm && blas.dgemm && blas.status_string)
        return;
    snprintf(blas_error, sizeof blas_error, "%s", lib ? "a cuBLAS function is missing" : dlerror());
    blas.create = NULL;
}

static ddp_status blas_fail(cublasStatus_t st, const char *op, int d) {
    return DDP_FAIL(st == CUBLAS_STATUS_ALLOC_FAILED ? DDP_ERR_NOMEM : DDP_ERR_STATE,
                    "%s: cuBLAS error on cuda:%d: %s", op, d, blas.status_string(st));
}

/* GPU d's handle (the calling thread already points at d), cuBLAS opened first. */
static ddp_status blas_handle(int d, const char *op, cublasHandle_t *out) {
    pthread_once(&blas_once, open_blas);
    if (!blas.create)
        return DDP_FAIL(DDP_ERR_UNSUPPORTED,
                        "%s: matrix products on CUDA tensors need cuBLAS, which could not be "
                        "loaded (%s); put the CUDA toolkit's lib64 on LD_LIBRARY_PATH",
                        op, blas_error);
    pthread_mutex_lock(&lock);
    cublasStatus_t st = CUBLAS_STATUS_SUCCESS;
    if (!blas_handles[d]) st = blas.create(&blas_handles[d]);
    *out = blas_handles[d];
    pthread_mutex_unlock(&lock);
    return st == CUBLAS_STATUS_SUCCESS ? DDP_OK : blas_fail(st, op, d);
}

ddp_status cuda_gemm(int d, dtype dt, bool ta, bool tb, int64_t m, int64_t n, int64_t k,
                     double alpha, cuda_matrix a, cuda_matrix b, double beta, void *c,
                     const char *op) {
    DDP_CHECK(enter_device(op, d));
    cublasHandle_t h = NULL;
    DDP_CHECK(blas_handle(d, op, &h));
    /* cuBLAS is column-major: the row-major c (m x n) is the column-major c^T, and
     * c^T = op(b)^T op(a)^T, so b comes first. A row-major matrix read column-major is
     * its transpose, which is why each operand's flag is (op transposes) != (stored
     * transposed), the same flag a row-major BLAS call would take. */
    cublasOperation_t opa = (ta != a.trans) ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasOperation_t opb = (tb != b.trans) ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasStatus_t st;
    if (dt == DTYPE_FLOAT32) {
        st = blas.set_math_mode(h, cuda_allow_tf32() ? CUBLAS_TF32_TENSOR_OP_MATH
                                                     : CUBLAS_DEFAULT_MATH);
        float fa = (float)alpha, fb = (float)beta;
        if (st == CUBLAS_STATUS_SUCCESS)
            st = blas.sgemm(h, opb, opa, (int)n, (int)m, (int)k, &fa, b.data, (int)b.ld, a.data,
                            (int)a.ld, &fb, c, (int)n);
    } else {
        st = blas.set_math_mode(h, CUBLAS_DEFAULT_MATH);
        if (st == CUBLAS_STATUS_SUCCESS)
            st = blas.dgemm(h, opb, opa, (int)n, (int)m, (int)k, &alpha, b.data, (int)b.ld, a.data,
                            (int)a.ld, &beta, c, (int)n);
    }
    return st == CUBLAS_STATUS_SUCCESS ? DDP_OK : blas_fail(st, op, d);
}
