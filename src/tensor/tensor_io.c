/* tensor_io.c — the parts of ddplab's tensor files that do not depend on the format: a
 * source of bytes (a file or memory) read only at checked offsets, and a sink that makes
 * a save atomic. The formats are tensor_io_safetensors.c and tensor_io_npy.c.
 *
 * Readers never trust a number in a header: the source's size is taken first, every
 * length and offset is checked against it, and only then is memory allocated, so a
 * hostile file costs at most its own size. The same code reads a path or a buffer, so
 * what a fuzz target proves about the buffer holds for files.
 *
 * A save writes a temporary file beside the target, flushes it to disk and renames it
 * over the target: a crash (of the rank or the machine) leaves either the old file or the
 * new one, never half of one. While it writes, the process holds `path.lock`, created
 * exclusively and holding its pid and rank; a second process saving the same path at the
 * same moment (every rank running `torch.save(sd, "ckpt.safetensors")`) finds the lock
 * and fails with an explanation instead of racing. A lock whose process is dead (killed
 * mid-save, or whose temporary file is gone) is taken over and its temporary removed. Data is
 * stored little-endian, which is this host's order (checked at compile time). */
#include "tensor/tensor_io_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "tensor_io.c writes host memory as little-endian data: port it for this host"
#endif

/* ---- reading ------------------------------------------------------------------------- */

/* " (a FIFO)" and so on, for a file that is not regular; "" when unknown. */
static const char *file_kind(const struct stat *st) {
    if (S_ISFIFO(st->st_mode)) return " (a FIFO)";
    if (S_ISDIR(st->st_mode)) return " (a directory)";
    if (S_ISCHR(st->st_mode) || S_ISBLK(st->st_mode)) return " (a device)";
    if (S_ISSOCK(st->st_mode)) return " (a socket)";
    return "";
}

ddp_status io_source_open(io_source *in, const char *path, const char *what) {
    in->path = path;
    in->mem = NULL;
    in->f = NULL;
    /* O_NONBLOCK: opening a FIFO nobody writes to would block for ever (and Ctrl-C cannot
     * end a blocked open); it is refused below like any file that is not regular. */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return DDP_FAIL(DDP_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
    struct stat st;
    memset(&st, 0, sizeof st);
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return DDP_FAIL(DDP_ERR_IO, "cannot read '%s' as %s: it is not a regular file%s", path,
                        what, file_kind(&st));
    }
    (void)fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    in->f = fdopen(fd, "rb");
    if (!in->f) {
        int e = errno;
        close(fd);
        return DDP_FAIL(DDP_ERR_IO, "cannot open '%s': %s", path, strerror(e));
    }
    in->size = (uint64_t)st.st_size;
    return DDP_OK;
}

ddp_status tensor_io_check_readable(const char *path, const char *what) {
    io_source in;
    ddp_status s = io_source_open(&in, path, what);
    if (s == DDP_OK) io_source_close(&in);
    return s;
}

void io_source_buffer(io_source *in, const void *data, size_t len, const char *name) {
    in->f = NULL;
    in->mem = data;
    in->path = name;
    in->size = (uint64_t)len;
}

ddp_status io_source_read(io_source *in, uint64_t offset, void *buf, uint64_t len) {
    if (len == 0) return DDP_OK;
    if (in->mem) {
        if (offset > in->size || len > in->size - offset) goto truncated;
        memcpy(buf, in->mem + offset, (size_t)len);
        return DDP_OK;
    }
    if (fseeko(in->f, (off_t)offset, SEEK_SET) == 0 && fread(buf, 1, len, in->f) == len)
        return DDP_OK;
truncated:
    return DDP_FAIL(DDP_ERR_FORMAT,
                    "cannot read '%s': the file is truncated (%llu bytes wanted at offset %llu)",
                    in->path, (unsigned long long)len, (unsigned long long)offset);
}

void io_source_close(io_source *in) {
    if (in->f) fclose(in->f);
    in->f = NULL;
}

uint64_t io_read_le64(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

bool io_checked_numel(const int64_t *sizes, int ndim, size_t esize, int64_t *numel) {
    uint64_t n = 1;
    bool empty = false;
    for (int i = 0; i < ndim; i++) {
        if (sizes[i] < 0) return false;
        if (sizes[i] == 0)
            empty = true;
        else if ((uint64_t)sizes[i] > TENSOR_MAX_BYTES / n)
            return false;
        else
            n *= (uint64_t)sizes[i];
    }
    if (n > TENSOR_MAX_BYTES / esize) return false;
    *numel = empty ? 0 : (int64_t)n;
    return true;
}

void io_normalise_bools(tensor *t) {
    unsigned char *p = tensor_data(t);
    int64_t n = tensor_numel(t);
    for (int64_t i = 0; i < n; i++) p[i] = p[i] != 0;
}

/* ---- the lock beside a file being saved ---------------------------------------------- */

/* The rank this process runs as, for the lock's text: RANK from the launcher, or -1. */
static long my_rank(void) {
    const char *r = getenv("RANK");
    char *end;
    long v = r ? strtol(r, &end, 10) : -1;
    return r && *r && !*end ? v : -1;
}

/* Whether process `pid` is alive (EPERM: alive, someone else's). */
static bool pid_alive(long pid) {
    if (pid <= 0 || pid == (long)getpid()) return false; /* our own: left by a failed save */
    return kill((pid_t)pid, 0) == 0 || errno == EPERM;
}

/* Reads the lock at o->lock: "pid rank\ntmpname". Returns false when it cannot be read or
 * parsed (a holder that has only just created it reads as empty). */
static bool read_lock(const char *lock, long *pid, long *rank, char *tmp, size_t cap) {
    FILE *f = fopen(lock, "r");
    if (!f) return false;
    char line[64];
    bool ok = fgets(line, sizeof line, f) && sscanf(line, "%ld %ld", pid, rank) == 2;
    tmp[0] = '\0';
    if (ok && fgets(tmp, (int)cap, f)) tmp[strcspn(tmp, "\n")] = '\0';
    fclose(f);
    return ok;
}

/* The learner's explanation of a save that met another process saving the same path. */
static ddp_status busy(const char *path, long pid, long rank) {
    char who[64];
    if (pid <= 0)
        snprintf(who, sizeof who, "another process");
    else if (rank >= 0)
        snprintf(who, sizeof who, "rank %ld (pid %ld)", rank, pid);
    else
        snprintf(who, sizeof who, "process %ld", pid);
    return DDP_FAIL(DDP_ERR_STATE,
                    "cannot save '%s': %s is saving the same file at this moment. When every "
                    "rank saves to one path, the writes race and the file holds whichever "
                    "finished last; save on one rank and let the others wait:\n"
                    "  if dist.get_rank() == 0 then torch.save(sd, path) end\n"
                    "  dist.barrier()",
                    path, who);
}

/* Creates o->lock exclusively, taking over a lock whose holder died. */
static ddp_status take_lock(io_sink *o) {
    for (int attempt = 0; attempt < 3; attempt++) {
        int fd = open(o->lock, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fd >= 0) {
            close(fd);
            return DDP_OK;
        }
        if (errno != EEXIST)
            return DDP_FAIL(DDP_ERR_IO, "cannot write '%s': %s", o->path, strerror(errno));
        long pid = 0, rank = -1;
        char stale_tmp[sizeof o->tmp];
        if (!read_lock(o->lock, &pid, &rank, stale_tmp, sizeof stale_tmp)) {
            /* just created by its holder, not yet written: give it a moment; one that
             * stays empty for long belongs to a process that died in that moment */
            usleep(2000);
            struct stat st;
            bool old = stat(o->lock, &st) == 0 && time(NULL) - st.st_mtime > 10;
            if (!read_lock(o->lock, &pid, &rank, stale_tmp, sizeof stale_tmp) && !old)
                return busy(o->path, 0, -1);
        }
        /* the holder writes its lock once its temporary file exists, and removes the lock
         * right after renaming that file: a live pid whose temporary is gone is another
         * process that reused a dead holder's pid */
        bool holding = pid_alive(pid) && stale_tmp[0] && access(stale_tmp, F_OK) == 0;
        if (holding) return busy(o->path, pid, rank);
        /* the holder died mid-save: its temporary file is garbage, its lock stale. Only a
         * name of the form "<path>.<pid>.<n>.tmp" is removed, never anything else. */
        size_t plen = strlen(o->path);
        if (strncmp(stale_tmp, o->path, plen) == 0 && strlen(stale_tmp) > plen + 4 &&
            strcmp(stale_tmp + strlen(stale_tmp) - 4, ".tmp") == 0)
            unlink(stale_tmp);
        unlink(o->lock);
    }
    return DDP_FAIL(DDP_ERR_IO, "cannot write '%s': its lock file '%s' keeps coming back", o->path,
                    o->lock);
}

/* Writes who holds the lock, once the temporary name is known. Best effort: a lock that
 * cannot be written still excludes others (they read it as just created). */
static void fill_lock(const io_sink *o) {
    FILE *f = fopen(o->lock, "w");
    if (!f) return;
    fprintf(f, "%ld %ld\n%s\n", (long)getpid(), my_rank(), o->tmp);
    fclose(f);
}

/* ---- writing ------------------------------------------------------------------------- */

ddp_status io_sink_open(io_sink *o, const char *path) {
    static unsigned counter;
    o->path = path;
    o->f = NULL;
    o->tmp[0] = o->lock[0] = '\0';
    if (strlen(path) > 4096)
        return DDP_FAIL(DDP_ERR_IO, "cannot write '%.60s...': the path is too long", path);
    /* the new file is renamed over the old name, which would replace a device such as
     * /dev/null (as root) or a FIFO with a plain file: only regular files are written */
    struct stat st;
    if (stat(path, &st) == 0 && !S_ISREG(st.st_mode))
        return DDP_FAIL(DDP_ERR_IO, "cannot write '%s': it is not a regular file%s", path,
                        file_kind(&st));
    snprintf(o->lock, sizeof o->lock, "%s.lock", path);
    DDP_CHECK(take_lock(o));
    for (int attempt = 0; attempt < 100; attempt++) {
        snprintf(o->tmp, sizeof o->tmp, "%s.%ld.%u.tmp", path, (long)getpid(), counter++);
        int fd = open(o->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd < 0 && errno == EEXIST) continue;
        if (fd >= 0) o->f = fdopen(fd, "wb");
        if (!o->f) {
            ddp_status s = DDP_FAIL(DDP_ERR_IO, "cannot write '%s': %s", path, strerror(errno));
            if (fd >= 0) {
                close(fd);
                unlink(o->tmp);
            }
            unlink(o->lock);
            return s;
        }
        fill_lock(o);
        return DDP_OK;
    }
    unlink(o->lock);
    return DDP_FAIL(DDP_ERR_IO, "cannot write '%s': no free temporary name beside it", path);
}

ddp_status io_sink_write(io_sink *o, const void *buf, size_t len) {
    if (len && fwrite(buf, 1, len, o->f) != len)
        return DDP_FAIL(DDP_ERR_IO, "cannot write '%s': %s", o->path, strerror(errno));
    return DDP_OK;
}

ddp_status io_sink_finish(io_sink *o, ddp_status s) {
    /* on disk before the rename, so that a machine crash cannot leave the new name
     * pointing at data that never reached the disk */
    if (s == DDP_OK && (fflush(o->f) != 0 || fsync(fileno(o->f)) != 0))
        s = DDP_FAIL(DDP_ERR_IO, "cannot write '%s': %s", o->path, strerror(errno));
    int closed = fclose(o->f);
    o->f = NULL;
    if (s == DDP_OK && closed != 0)
        s = DDP_FAIL(DDP_ERR_IO, "cannot write '%s': %s", o->path, strerror(errno));
    if (s == DDP_OK && rename(o->tmp, o->path) != 0)
        s = DDP_FAIL(DDP_ERR_IO, "cannot write '%s': %s", o->path, strerror(errno));
    if (s != DDP_OK) unlink(o->tmp);
    unlink(o->lock);
    return s;
}

ddp_status io_sink_write_tensor(io_sink *o, const tensor *t) {
    size_t esize = dtype_size(t->dtype);
    int64_t numel = tensor_numel(t);
    if (numel == 0) return DDP_OK;
    if (!tensor_is_cpu(t)) { /* a GPU's tensor is written from a host copy, as PyTorch does */
        tensor *h;
        DDP_CHECK(tensor_to_device(t, DEVICE_CPU_VALUE, t->dtype, &h));
        ddp_status s = io_sink_write_tensor(o, h);
        tensor_release(h);
        return s;
    }
    if (tensor_is_contiguous(t)) return io_sink_write(o, tensor_data(t), (size_t)numel * esize);
    unsigned char buf[1 << 16];
    size_t used = 0;
    const unsigned char *base = (const unsigned char *)t->storage->data;
    const int64_t *strides[1] = {t->strides};
    int64_t offsets[1] = {t->offset};
    tensor_iter it;
    tensor_iter_init(&it, t->ndim, t->sizes, 1, strides, offsets);
    for (int64_t r = 0; r < it.rows; r++) {
        for (int64_t i = 0; i < it.inner; i++) {
            size_t off = (size_t)(it.offsets[0] + i * it.inner_strides[0]);
            memcpy(buf + used, base + off * esize, esize);
            used += esize;
            if (used + esize > sizeof buf) {
                DDP_CHECK(io_sink_write(o, buf, used));
                used = 0;
            }
        }
        tensor_iter_next_row(&it);
    }
    return io_sink_write(o, buf, used);
}

ddp_status io_check_savable(const char *path, const char *what, const tensor *t) {
    if (!t) return DDP_FAIL(DDP_ERR_ARG, "cannot save '%s': %s is not a tensor", path, what);
    return DDP_OK;
}
