/* host_device.h — DDP_HOST_DEVICE marks an inline function that the CPU code and the
 * CUDA kernels share (one definition, so both devices compute the same bits): empty for
 * gcc, __host__ __device__ for nvcc. */
#ifndef DDP_BASE_HOST_DEVICE_H
#define DDP_BASE_HOST_DEVICE_H

#ifdef __CUDACC__
#define DDP_HOST_DEVICE __host__ __device__
#else
#define DDP_HOST_DEVICE
#endif

#endif
