/* tensor_io.h — reading and writing tensors in the files the Python world uses:
 * `.safetensors` for a named set of tensors (a state dict) and `.npy` for one tensor.
 *
 * Both readers treat their input as hostile: every size in a header is checked against
 * the input's real size before anything is allocated, and a truncated, corrupt or absurd
 * file fails with DDP_ERR_FORMAT and a message naming the file and what is wrong. Each
 * reader takes a path or a buffer in memory (the same code behind both). Writers accept
 * any CPU tensor (a non-contiguous view is written in logical row-major order) and are
 * atomic: a temporary file beside the target, renamed into place; a second process saving
 * the same path at the same moment fails with DDP_ERR_STATE and an explanation.
 * Supported dtypes: float32, float64, int64, bool. */
#ifndef DDP_TENSOR_TENSOR_IO_H
#define DDP_TENSOR_TENSOR_IO_H

#include <stddef.h>

#include "base/status.h"
#include "tensor/tensor.h"

/* What a safetensors file holds: tensors in the order of their data offsets, and the
 * string entries of the header's "__metadata__" (in the header's order; entries whose
 * value is not a string are skipped, as the format allows only strings). Every pointer is
 * owned; tensor_file_free releases them all. */
typedef struct {
    int n;
    char **names;
    tensor **tensors;
    int n_meta;
    char **meta_keys;
    char **meta_values;
} tensor_file;

/* Releases everything in f and leaves it empty (safe on an empty or zeroed one). */
void tensor_file_free(tensor_file *f);

/* Writes `n` tensors under `names` (borrowed) to `path` in safetensors format, keys and
 * data in the caller's order, and `n_meta` string pairs into "__metadata__" after
 * "format": "pt" (a key "format" given here replaces that one). Fails with DDP_ERR_ARG on
 * a duplicate or empty name, the reserved name "__metadata__" or a non-CPU tensor,
 * DDP_ERR_STATE when another process is saving `path` right now, DDP_ERR_IO when the file
 * cannot be written (no partial file is left behind under `path` on failure). */
ddp_status tensor_save_safetensors_meta(const char *path, const char *const *names,
                                        tensor *const *tensors, int n, const char *const *meta_keys,
                                        const char *const *meta_values, int n_meta);

/* tensor_save_safetensors_meta without metadata. */
ddp_status tensor_save_safetensors(const char *path, const char *const *names,
                                   tensor *const *tensors, int n);

/* Reads a safetensors file (tensors and metadata) into *out. On failure *out is empty
 * and nothing leaks. A name or metadata entry holding a NUL character (\u0000) is refused
 * (DDP_ERR_FORMAT), since it could not be kept whole. */
ddp_status tensor_read_safetensors(const char *path, tensor_file *out);

/* The same from `len` bytes at `data` (borrowed), called `name` in messages. */
ddp_status tensor_read_safetensors_buffer(const void *data, size_t len, const char *name,
                                          tensor_file *out);

/* Reads every tensor of a safetensors file, in the order of their data offsets. On
 * success the caller owns the arrays: free names[i] and names, release tensors[i] and
 * free tensors. On failure nothing is returned (*names, *tensors NULL, *n 0) and nothing
 * leaks. */
ddp_status tensor_load_safetensors(const char *path, char ***names, tensor ***tensors, int *n);

/* Writes one CPU tensor to `path` as .npy version 1.0 (C order). Can fail with
 * DDP_ERR_ARG (non-CPU tensor), DDP_ERR_STATE (another process saving `path`) or
 * DDP_ERR_IO. */
ddp_status tensor_save_npy(const char *path, const tensor *t);

/* Reads a .npy file (versions 1.0-3.0, C order, dtypes <f4 <f8 <i8 |b1 and their '='
 * or '|' forms) into a new tensor the caller owns. Fortran-order files are refused with
 * a message saying how to save them in C order. */
ddp_status tensor_load_npy(const char *path, tensor **out);

/* The same from `len` bytes at `data` (borrowed), called `name` in messages. */
ddp_status tensor_load_npy_buffer(const void *data, size_t len, const char *name, tensor **out);

/* Opens `path` as the readers above do and closes it again: DDP_OK when it is a regular
 * file this process can read; DDP_ERR_IO otherwise, with the readers' message ("cannot
 * read 'p' as WHAT: it is not a regular file (a FIFO)"). Never blocks: for readers of
 * other formats (data.load_csv) that would hang in open() on a FIFO nobody writes to. */
ddp_status tensor_io_check_readable(const char *path, const char *what);

#endif
