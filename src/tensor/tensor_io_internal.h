/* tensor_io_internal.h — what the two file formats (tensor_io_safetensors.c,
 * tensor_io_npy.c) share, implemented in tensor_io.c: a source of bytes whose size is
 * known before anything in it is believed (a file or a buffer in memory, so that fuzz
 * targets and tests can feed the readers bytes), and a writer that goes through a
 * temporary file beside the target, renamed into place, with a lock file that tells a
 * second process saving the same path at the same moment (several ranks saving one
 * checkpoint) to stop. Not for use outside src/tensor. */
#ifndef DDP_TENSOR_TENSOR_IO_INTERNAL_H
#define DDP_TENSOR_TENSOR_IO_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "tensor/tensor_internal.h"
#include "tensor/tensor_io.h"

/* A header larger than this is refused before it is read (real ones are kilobytes). */
#define IO_MAX_HEADER_BYTES ((uint64_t)100 * 1000 * 1000)

/* ---- reading ------------------------------------------------------------------------- */

typedef struct {
    FILE *f;                  /* the open file, or NULL when reading from memory */
    const unsigned char *mem; /* borrowed bytes when reading from memory */
    const char *path;         /* the name every message uses (a path, or the caller's name) */
    uint64_t size;
} io_source;

/* Opens `path` for reading and takes its size. DDP_ERR_IO when it cannot be opened or is
 * not a regular file (a FIFO or a device could block for ever or never end). On success
 * the caller calls io_source_close. `what` names the format in the message. */
ddp_status io_source_open(io_source *in, const char *path, const char *what);

/* A source over `len` bytes at `data` (borrowed; must outlive the source), called `name`
 * in messages. Cannot fail. */
void io_source_buffer(io_source *in, const void *data, size_t len, const char *name);

/* Reads exactly `len` bytes at `offset`. The caller checked the range against in->size,
 * so a short read means the file changed under us: reported as truncated. */
ddp_status io_source_read(io_source *in, uint64_t offset, void *buf, uint64_t len);

/* Closes the file, if any. */
void io_source_close(io_source *in);

/* The little-endian 64-bit number at p. */
uint64_t io_read_le64(const unsigned char *p);

/* numel of (sizes, ndim), refusing negative sizes and any product (of the non-zero
 * sizes, so that an "empty" tensor cannot smuggle absurd dims) whose bytes would pass
 * TENSOR_MAX_BYTES. Returns false when refused. */
bool io_checked_numel(const int64_t *sizes, int ndim, size_t esize, int64_t *numel);

/* Bool data from a file may hold any byte; C's bool must hold 0 or 1. */
void io_normalise_bools(tensor *t);

/* ---- writing ------------------------------------------------------------------------- */

typedef struct {
    FILE *f;
    const char *path;
    char tmp[4096 + 64];  /* the temporary file, renamed to path on success */
    char lock[4096 + 64]; /* path.lock while this process writes path */
} io_sink;

/* Takes the lock beside `path` and creates a fresh temporary file there. DDP_ERR_STATE
 * when another live process holds the lock (its rank and pid named, with the rank-0 save
 * pattern), DDP_ERR_IO when the files cannot be made. A lock left by a process that died
 * is taken over, and that process's temporary file removed. */
ddp_status io_sink_open(io_sink *o, const char *path);

/* Appends len bytes; DDP_ERR_IO (disk full, ...) naming the target file. */
ddp_status io_sink_write(io_sink *o, const void *buf, size_t len);

/* Writes t's elements in logical row-major order (a view is gathered, not copied). */
ddp_status io_sink_write_tensor(io_sink *o, const tensor *t);

/* Flushes the temporary file to disk and, when `s` is DDP_OK, renames it to the target;
 * otherwise (or when that fails) removes it. Releases the lock. Returns `s` unless
 * finishing itself failed. */
ddp_status io_sink_finish(io_sink *o, ddp_status s);

/* DDP_ERR_ARG when t is missing (not a tensor); `what` names it in the message. A GPU's
 * tensor is savable: io_sink_write_tensor writes it from a host copy. */
ddp_status io_check_savable(const char *path, const char *what, const tensor *t);

#endif
