/* tensor_io.h — reading and writing tensors in the files the Python world uses:
 * `.safetensors` for a named set of tensors (a state dict) and `.npy` for one tensor.
 *
 * Both readers treat the file as hostile: every size in a header is checked against the
 * file's real size before anything is allocated, and a truncated, corrupt or absurd file
 * fails with DDP_ERR_FORMAT and a message naming the file and what is wrong. Writers
 * accept any CPU tensor (a non-contiguous view is written in logical row-major order).
 * Supported dtypes: float32, float64, int64, bool. */
#ifndef DDP_TENSOR_TENSOR_IO_H
#define DDP_TENSOR_TENSOR_IO_H

#include "base/status.h"
#include "tensor/tensor.h"

/* Writes `n` tensors under `names` (borrowed) to `path` in safetensors format, keys and
 * data in the caller's order. Fails with DDP_ERR_ARG on a duplicate or empty name or a
 * non-CPU tensor, DDP_ERR_IO when the file cannot be written (no partial file is left
 * behind under `path` on failure). */
ddp_status tensor_save_safetensors(const char *path, const char *const *names,
                                   tensor *const *tensors, int n);

/* Reads every tensor of a safetensors file, in the order of their data offsets. On
 * success the caller owns the arrays: free names[i] and names, release tensors[i] and
 * free tensors. On failure nothing is returned (*names, *tensors NULL, *n 0) and nothing
 * leaks. */
ddp_status tensor_load_safetensors(const char *path, char ***names, tensor ***tensors, int *n);

/* Writes one CPU tensor to `path` as .npy version 1.0 (C order). Can fail with
 * DDP_ERR_ARG (non-CPU tensor) or DDP_ERR_IO. */
ddp_status tensor_save_npy(const char *path, const tensor *t);

/* Reads a .npy file (versions 1.0-3.0, C order, dtypes <f4 <f8 <i8 |b1 and their '='
 * or '|' forms) into a new tensor the caller owns. Fortran-order files are refused with
 * a message saying how to save them in C order. */
ddp_status tensor_load_npy(const char *path, tensor **out);

#endif
