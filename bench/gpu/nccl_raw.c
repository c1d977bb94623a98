/* nccl_raw.c — the reference of bench/gpu/run.sh's NCCL cases: ncclAllReduce called
 * straight from C on one rank and one GPU, with no ddplab in between, timed as
 * gpu_bench.lua times dist.all_reduce (median over 7 windows after 5 warm-up calls, each
 * window closed by synchronising the stream; 50 calls a window, 5 from 64 MiB up), for
 * 4 B to 1 GiB of float32. Prints "RESULT nccl_<bytes> <seconds> s" lines and the NCCL
 * version. Exit status 2 when CUDA or NCCL fails. */
#include <cuda_runtime_api.h>
#include <nccl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

#define CHECK(call, what)                                                                          \
    do {                                                                                           \
        if (!(call)) {                                                                             \
            fprintf(stderr, "nccl_raw: %s failed\n", what);                                        \
            return 2;                                                                              \
        }                                                                                          \
    } while (0)

int main(void) {
    int version = 0, dev = 0;
    ncclComm_t comm;
    cudaStream_t stream;
    float *buf;
    size_t max_bytes = (size_t)1 << 30;
    CHECK(ncclGetVersion(&version) == ncclSuccess, "ncclGetVersion");
    printf("NCCL %d\n", version);
    CHECK(cudaSetDevice(0) == cudaSuccess, "cudaSetDevice");
    CHECK(cudaStreamCreate(&stream) == cudaSuccess, "cudaStreamCreate");
    CHECK(cudaMalloc((void **)&buf, max_bytes) == cudaSuccess, "cudaMalloc");
    CHECK(ncclCommInitAll(&comm, 1, &dev) == ncclSuccess, "ncclCommInitAll");
    for (size_t bytes = 4; bytes <= max_bytes; bytes *= 16) {
        int calls = bytes >= ((size_t)1 << 26) ? 5 : 50;
        double per[7];
        for (int w = -1; w < 7; w++) { /* window -1: the warm-up */
            double t0 = now();
            for (int c = 0; c < (w < 0 ? 5 : calls); c++)
                CHECK(ncclAllReduce(buf, buf, bytes / 4, ncclFloat, ncclSum, comm, stream) ==
                          ncclSuccess,
                      "ncclAllReduce");
            CHECK(cudaStreamSynchronize(stream) == cudaSuccess, "cudaStreamSynchronize");
            if (w >= 0) per[w] = (now() - t0) / calls;
        }
        qsort(per, 7, sizeof per[0], cmp);
        printf("RESULT nccl_%zu %.9g s\n", bytes, per[3]);
    }
    ncclCommDestroy(comm);
    cudaFree(buf);
    return 0;
}
