/* tensor_io.c — .safetensors and .npy files, the two formats ddplab shares with Python.
 *
 * safetensors: 8 bytes of little-endian header length, a JSON header (padded with spaces
 * to a multiple of 8, as the reference implementation writes it) mapping each name to
 * {"dtype", "shape", "data_offsets": [begin, end]}, then the data, offsets counted from
 * the end of the header. .npy: the magic "\x93NUMPY", a version, a Python dict literal
 * giving 'descr', 'fortran_order' and 'shape', then the data in C order. Readers never
 * trust a number in a header: the file's size is taken first, every length and offset is
 * checked against it, and only then is memory allocated, so a hostile file costs at most
 * its own size. Fortran-order .npy files are refused (not transposed), with a message
 * saying how to save them in C order. Writers go through a temporary file renamed into
 * place, so a failed save never leaves a half-written file under the target name. Data is
 * stored little-endian, which is this host's order (checked at compile time). */
#include "tensor/tensor_io.h"
#include "tensor/tensor_internal.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "tensor_io.c writes host memory as little-endian data: port it for this host"
#endif

/* A header larger than this is refused before it is read (real ones are kilobytes). */
#define IO_MAX_HEADER_BYTES ((uint64_t)100 * 1000 * 1000)
/* Largest integer a JSON double carries exactly. */
#define IO_MAX_JSON_INT 9007199254740992.0

/* A format error in file `path`, prefixed the same way for every check. */
#define ST_FORMAT(path, fmt, ...)                                                                  \
    DDP_FAIL(DDP_ERR_FORMAT, "cannot read '%s' as safetensors: " fmt, (path), __VA_ARGS__)
#define NPY_FORMAT(path, fmt, ...)                                                                 \
    DDP_FAIL(DDP_ERR_FORMAT, "cannot read '%s' as .npy: " fmt, (path), __VA_ARGS__)

/* ---- reading: a file whose size is known before anything is believed ---------------- */

typedef struct {
    FILE *f;
    const char *path;
    uint64_t size;
} in_file;

/* Opens `path` for reading and takes its size. DDP_ERR_IO when it cannot be opened or is
 * not a regular file. On success the caller closes in->f. */
static ddp_status in_open(in_file *in, const char *path, const char *what) {
    in->path = path;
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
                        what,
                        S_ISFIFO(st.st_mode)   ? " (a FIFO)"
                        : S_ISDIR(st.st_mode)  ? " (a directory)"
                        : S_ISCHR(st.st_mode)  ? " (a device)"
                        : S_ISSOCK(st.st_mode) ? " (a socket)"
                                               : "");
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

/* Reads exactly `len` bytes at `offset`. The caller checked the range against in->size,
 * so a short read means the file changed under us: reported as truncated. */
static ddp_status in_read(in_file *in, uint64_t offset, void *buf, uint64_t len) {
    if (len == 0) return DDP_OK;
    if (fseeko(in->f, (off_t)offset, SEEK_SET) != 0 || fread(buf, 1, len, in->f) != len)
        return DDP_FAIL(
            DDP_ERR_FORMAT,
            "cannot read '%s': the file is truncated (%llu bytes wanted at offset %llu)", in->path,
            (unsigned long long)len, (unsigned long long)offset);
    return DDP_OK;
}

/* The little-endian 64-bit number at p. */
static uint64_t read_le64(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

/* numel of (sizes, ndim), refusing negative sizes and any product (of the non-zero
 * sizes, so that an "empty" tensor cannot smuggle absurd dims) whose bytes would pass
 * TENSOR_MAX_BYTES. Returns false when refused. */
static bool checked_numel(const int64_t *sizes, int ndim, size_t esize, int64_t *numel) {
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

/* Bool data from a file may hold any byte; C's bool must hold 0 or 1. */
static void normalise_bools(tensor *t) {
    unsigned char *p = tensor_data(t);
    int64_t n = tensor_numel(t);
    for (int64_t i = 0; i < n; i++) p[i] = p[i] != 0;
}

/* ---- writing: a temporary file renamed into place ------------------------------------ */

typedef struct {
    FILE *f;
    const char *path;
    char tmp[4096 + 64];
} out_file;

/* Creates a fresh temporary file beside `path`. DDP_ERR_IO when it cannot. */
static ddp_status out_open(out_file *o, const char *path) {
    static unsigned counter;
    o->path = path;
    o->f = NULL;
    if (strlen(path) > 4096)
        return DDP_FAIL(DDP_ERR_IO, "cannot write '%.60s...': the path is too long", path);
    for (int attempt = 0; attempt < 100; attempt++) {
        snprintf(o->tmp, sizeof o->tmp, "%s.%ld.%u.tmp", path, (long)getpid(), counter++);
        int fd = open(o->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd < 0 && errno == EEXIST) continue;
        if (fd < 0) return DDP_FAIL(DDP_ERR_IO, "cannot write '%s': %s", path, strerror(errno));
        o->f = fdopen(fd, "wb");
        if (!o->f) {
            close(fd);
            unlink(o->tmp);
            return DDP_FAIL(DDP_ERR_IO, "cannot write '%s': %s", path, strerror(errno));
        }
        return DDP_OK;
    }
    return DDP_FAIL(DDP_ERR_IO, "cannot write '%s': no free temporary name beside it", path);
}

/* Appends len bytes; DDP_ERR_IO (disk full, ...) naming the target file. */
static ddp_status out_write(out_file *o, const void *buf, size_t len) {
    if (len && fwrite(buf, 1, len, o->f) != len)
        return DDP_FAIL(DDP_ERR_IO, "cannot write '%s': %s", o->path, strerror(errno));
    return DDP_OK;
}

/* Closes the temporary file and, when `s` is DDP_OK, renames it to the target; otherwise
 * (or when closing fails) removes it. Returns `s` unless finishing itself failed. */
static ddp_status out_finish(out_file *o, ddp_status s) {
    int closed = fclose(o->f);
    o->f = NULL;
    if (s == DDP_OK && closed != 0)
        s = DDP_FAIL(DDP_ERR_IO, "cannot write '%s': %s", o->path, strerror(errno));
    if (s == DDP_OK && rename(o->tmp, o->path) != 0)
        s = DDP_FAIL(DDP_ERR_IO, "cannot write '%s': %s", o->path, strerror(errno));
    if (s != DDP_OK) unlink(o->tmp);
    return s;
}

/* Writes t's elements in logical row-major order: straight from memory when contiguous,
 * otherwise gathered through a small buffer (no copy of the whole tensor). */
static ddp_status out_write_tensor(out_file *o, const tensor *t) {
    size_t esize = dtype_size(t->dtype);
    int64_t numel = tensor_numel(t);
    if (numel == 0) return DDP_OK;
    if (tensor_is_contiguous(t)) return out_write(o, tensor_data(t), (size_t)numel * esize);
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
                DDP_CHECK(out_write(o, buf, used));
                used = 0;
            }
        }
        tensor_iter_next_row(&it);
    }
    return out_write(o, buf, used);
}

/* DDP_ERR_ARG unless t is a CPU tensor; `what` names it in the message. */
static ddp_status check_savable(const char *path, const char *what, const tensor *t) {
    if (!t) return DDP_FAIL(DDP_ERR_ARG, "cannot save '%s': %s is not a tensor", path, what);
    if (t->storage->device.type != DEVICE_CPU)
        return DDP_FAIL(
            DDP_ERR_ARG,
            "cannot save '%s': %s is on the GPU; move it to the CPU first (t:to(\"cpu\"))", path,
            what);
    return DDP_OK;
}

/* ---- safetensors --------------------------------------------------------------------- */

/* safetensors' name of a dtype ("F32", ...). */
static const char *st_dtype_name(dtype dt) {
    switch (dt) {
    case DTYPE_FLOAT32:
        return "F32";
    case DTYPE_FLOAT64:
        return "F64";
    case DTYPE_INT64:
        return "I64";
    case DTYPE_BOOL:
        return "BOOL";
    }
    return "?";
}

/* The dtype a safetensors name means; false for one ddplab has no dtype for. */
static bool st_dtype_parse(const char *s, dtype *dt) {
    static const dtype all[] = {DTYPE_FLOAT32, DTYPE_FLOAT64, DTYPE_INT64, DTYPE_BOOL};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (strcmp(s, st_dtype_name(all[i])) == 0) {
            *dt = all[i];
            return true;
        }
    return false;
}

/* Builds the JSON header text for the save (caller frees with cJSON_free); NULL when
 * out of memory. Offsets follow the caller's order. */
static char *st_header_json(const char *const *names, tensor *const *tensors, int n) {
    cJSON *root = cJSON_CreateObject();
    cJSON *meta = cJSON_AddObjectToObject(root, "__metadata__");
    bool ok = root && meta && cJSON_AddStringToObject(meta, "format", "pt");
    uint64_t offset = 0;
    for (int i = 0; ok && i < n; i++) {
        const tensor *t = tensors[i];
        uint64_t nbytes = (uint64_t)tensor_numel(t) * dtype_size(t->dtype);
        cJSON *entry = cJSON_AddObjectToObject(root, names[i]);
        ok = entry && cJSON_AddStringToObject(entry, "dtype", st_dtype_name(t->dtype));
        cJSON *shape = ok ? cJSON_AddArrayToObject(entry, "shape") : NULL;
        cJSON *offs = shape ? cJSON_AddArrayToObject(entry, "data_offsets") : NULL;
        ok = offs != NULL;
        for (int d = 0; ok && d < t->ndim; d++)
            ok = cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t->sizes[d]));
        ok = ok && cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)offset)) &&
             cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)(offset + nbytes)));
        offset += nbytes;
    }
    char *text = ok ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    return text;
}

ddp_status tensor_save_safetensors(const char *path, const char *const *names,
                                   tensor *const *tensors, int n) {
    if (n < 0) return DDP_FAIL(DDP_ERR_ARG, "cannot save '%s': %d tensors", path, n);
    for (int i = 0; i < n; i++) {
        if (!names[i] || !names[i][0])
            return DDP_FAIL(DDP_ERR_ARG, "cannot save '%s': tensor %d has an empty name", path, i);
        if (strcmp(names[i], "__metadata__") == 0)
            return DDP_FAIL(
                DDP_ERR_ARG,
                "cannot save '%s': the name '__metadata__' is reserved by the safetensors format",
                path);
        char what[300];
        snprintf(what, sizeof what, "'%s'", names[i]);
        DDP_CHECK(check_savable(path, what, tensors[i]));
        for (int j = 0; j < i; j++)
            if (strcmp(names[i], names[j]) == 0)
                return DDP_FAIL(DDP_ERR_ARG, "cannot save '%s': the name '%s' appears twice", path,
                                names[i]);
    }
    char *json = st_header_json(names, tensors, n);
    if (!json) return DDP_FAIL(DDP_ERR_NOMEM, "cannot save '%s': out of memory", path);
    size_t len = strlen(json);
    size_t padded = (len + 7) / 8 * 8; /* the reference pads the header with spaces */
    unsigned char prefix[8];
    for (int i = 0; i < 8; i++) prefix[i] = (unsigned char)((uint64_t)padded >> (8 * i));

    out_file o;
    ddp_status s = out_open(&o, path);
    if (s != DDP_OK) {
        cJSON_free(json);
        return s;
    }
    s = out_write(&o, prefix, 8);
    if (s == DDP_OK) s = out_write(&o, json, len);
    if (s == DDP_OK) s = out_write(&o, "       ", padded - len); /* at most 7 */
    for (int i = 0; s == DDP_OK && i < n; i++) s = out_write_tensor(&o, tensors[i]);
    cJSON_free(json);
    return out_finish(&o, s);
}

/* One tensor described by a safetensors header, checked but not yet read. */
typedef struct {
    const char *name; /* borrowed from the parsed JSON */
    dtype dtype;
    int ndim;
    int64_t sizes[TENSOR_MAX_DIMS];
    uint64_t begin, end;
} st_entry;

/* A JSON number that is a whole number in [0, 2^53]; false otherwise. */
static bool json_count(const cJSON *item, double *v) {
    if (!cJSON_IsNumber(item)) return false;
    double x = item->valuedouble;
    if (!isfinite(x) || x != floor(x) || x < 0 || x > IO_MAX_JSON_INT) return false;
    *v = x;
    return true;
}

/* Checks one header entry `item` (named item->string) against the data section size. */
static ddp_status st_parse_entry(const char *path, const cJSON *item, uint64_t data_size,
                                 st_entry *e) {
    const char *name = item->string;
    e->name = name;
    if (!cJSON_IsObject(item))
        return ST_FORMAT(path, "the entry for '%s' is not a JSON object", name);
    const cJSON *jdt = cJSON_GetObjectItemCaseSensitive(item, "dtype");
    const cJSON *jshape = cJSON_GetObjectItemCaseSensitive(item, "shape");
    const cJSON *joffs = cJSON_GetObjectItemCaseSensitive(item, "data_offsets");
    if (!cJSON_IsString(jdt) || !cJSON_IsArray(jshape) || !cJSON_IsArray(joffs))
        return ST_FORMAT(path,
                         "the entry for '%s' needs \"dtype\" (a string), \"shape\" and "
                         "\"data_offsets\" (arrays)",
                         name);
    if (!st_dtype_parse(jdt->valuestring, &e->dtype))
        return ST_FORMAT(path, "'%s' has dtype \"%.20s\"; ddplab reads F32, F64, I64 and BOOL",
                         name, jdt->valuestring);
    int ndim = cJSON_GetArraySize(jshape);
    if (ndim > TENSOR_MAX_DIMS)
        return ST_FORMAT(path, "'%s' has %d dims; ddplab tensors have at most %d", name, ndim,
                         TENSOR_MAX_DIMS);
    e->ndim = ndim;
    int d = 0;
    const cJSON *dim;
    cJSON_ArrayForEach(dim, jshape) {
        double v;
        if (!json_count(dim, &v)) {
            if (cJSON_IsNumber(dim) && dim->valuedouble < 0)
                return ST_FORMAT(path, "'%s' has a negative size (%g) in dim %d", name,
                                 dim->valuedouble, d);
            return ST_FORMAT(path, "dim %d of the shape of '%s' is not a whole number", d, name);
        }
        e->sizes[d++] = (int64_t)v;
    }
    double b, en;
    if (cJSON_GetArraySize(joffs) != 2 || !json_count(cJSON_GetArrayItem(joffs, 0), &b) ||
        !json_count(cJSON_GetArrayItem(joffs, 1), &en))
        return ST_FORMAT(path, "\"data_offsets\" of '%s' must be two whole numbers [begin, end]",
                         name);
    e->begin = (uint64_t)b;
    e->end = (uint64_t)en;
    if (e->end < e->begin)
        return ST_FORMAT(path, "'%s' ends (%llu) before it begins (%llu)", name,
                         (unsigned long long)e->end, (unsigned long long)e->begin);
    if (e->end > data_size)
        return ST_FORMAT(path,
                         "the data of '%s' (bytes %llu to %llu) lies outside the file's %llu data "
                         "bytes (truncated file?)",
                         name, (unsigned long long)e->begin, (unsigned long long)e->end,
                         (unsigned long long)data_size);
    int64_t numel;
    char shape[200];
    tensor_sizes_str(e->sizes, ndim, shape, sizeof shape);
    if (!checked_numel(e->sizes, ndim, dtype_size(e->dtype), &numel))
        return ST_FORMAT(path, "the shape %s of '%s' is too large", shape, name);
    uint64_t want = (uint64_t)numel * dtype_size(e->dtype);
    if (want != e->end - e->begin)
        return ST_FORMAT(path, "'%s' is %s %s = %llu bytes, but its data_offsets span %llu bytes",
                         name, st_dtype_name(e->dtype), shape, (unsigned long long)want,
                         (unsigned long long)(e->end - e->begin));
    return DDP_OK;
}

/* Reads and parses the header: *root is the JSON object, *data_start the file offset of
 * the data section and *data_size its length. On failure nothing is left allocated. */
static ddp_status st_read_header(in_file *in, cJSON **root, uint64_t *data_start,
                                 uint64_t *data_size) {
    const char *path = in->path;
    unsigned char prefix[8];
    if (in->size < 8)
        return ST_FORMAT(path,
                         "the file has only %llu bytes (truncated, or not a safetensors file)",
                         (unsigned long long)in->size);
    DDP_CHECK(in_read(in, 0, prefix, 8));
    uint64_t hlen = read_le64(prefix);
    if (hlen > IO_MAX_HEADER_BYTES)
        return ST_FORMAT(path,
                         "its header claims %llu bytes, more than the 100 MB a real header could "
                         "need (corrupt, or not a safetensors file)",
                         (unsigned long long)hlen);
    if (hlen > in->size - 8)
        return ST_FORMAT(path,
                         "its header claims %llu bytes but the file has only %llu after the length "
                         "(truncated, or not a safetensors file)",
                         (unsigned long long)hlen, (unsigned long long)(in->size - 8));
    if (hlen < 2)
        return ST_FORMAT(path, "its header is %llu bytes long, too short for a JSON object",
                         (unsigned long long)hlen);
    char *text = malloc((size_t)hlen + 1);
    if (!text)
        return DDP_FAIL(DDP_ERR_NOMEM, "cannot read '%s': no memory for its %llu-byte header", path,
                        (unsigned long long)hlen);
    ddp_status s = in_read(in, 8, text, hlen);
    if (s != DDP_OK) {
        free(text);
        return s;
    }
    text[hlen] = '\0';
    const char *end = NULL;
    *root = text[0] == '{' ? cJSON_ParseWithLengthOpts(text, (size_t)hlen, &end, 0) : NULL;
    if (!*root) {
        long at = end ? (long)(end - text) : 0;
        free(text);
        return ST_FORMAT(path,
                         "its header is not a JSON object (error near byte %ld of the header)", at);
    }
    for (const char *p = end; p < text + hlen; p++)
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
            long at = (long)(p - text);
            free(text);
            cJSON_Delete(*root);
            *root = NULL;
            return ST_FORMAT(path, "unexpected bytes after the JSON header (byte %ld)", at);
        }
    free(text);
    *data_start = 8 + hlen;
    *data_size = in->size - 8 - hlen;
    return DDP_OK;
}

static int st_cmp_name(const void *a, const void *b) {
    return strcmp(((const st_entry *)a)->name, ((const st_entry *)b)->name);
}

static int st_cmp_begin(const void *a, const void *b) {
    const st_entry *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

/* Checks every entry of `root` and returns them sorted by data offset in *entries
 * (caller frees; names borrowed from root). The tensors must tile the data section
 * exactly, without gaps or overlaps, as the reference implementation requires. */
static ddp_status st_collect(const char *path, const cJSON *root, uint64_t data_size,
                             st_entry **entries, int *count) {
    int n = 0;
    const cJSON *item;
    cJSON_ArrayForEach(item, root) n += strcmp(item->string, "__metadata__") != 0;
    st_entry *es = calloc(n > 0 ? (size_t)n : 1, sizeof *es);
    if (!es) return DDP_FAIL(DDP_ERR_NOMEM, "cannot read '%s': out of memory", path);
    int k = 0;
    ddp_status s = DDP_OK;
    cJSON_ArrayForEach(item, root) {
        if (strcmp(item->string, "__metadata__") == 0) continue; /* free-form; ignored */
        s = st_parse_entry(path, item, data_size, &es[k++]);
        if (s != DDP_OK) break;
    }
    if (s == DDP_OK && n > 1) {
        qsort(es, (size_t)n, sizeof *es, st_cmp_name);
        for (int i = 1; i < n && s == DDP_OK; i++)
            if (strcmp(es[i].name, es[i - 1].name) == 0)
                s = ST_FORMAT(path, "the name '%s' appears twice in the header", es[i].name);
        qsort(es, (size_t)n, sizeof *es, st_cmp_begin);
    }
    uint64_t expected = 0;
    for (int i = 0; i < n && s == DDP_OK; i++) {
        /* empty tensors occupy no bytes and may sit anywhere */
        if (es[i].begin == es[i].end && es[i].begin <= expected) continue;
        if (es[i].begin < expected)
            s = ST_FORMAT(
                path,
                "the data of '%s' (from byte %llu) overlaps the tensor before it (to byte %llu)",
                es[i].name, (unsigned long long)es[i].begin, (unsigned long long)expected);
        else if (es[i].begin > expected)
            s = ST_FORMAT(path, "bytes %llu to %llu of the data belong to no tensor (before '%s')",
                          (unsigned long long)expected, (unsigned long long)es[i].begin,
                          es[i].name);
        expected = es[i].end;
    }
    if (s == DDP_OK && expected != data_size)
        s = ST_FORMAT(path, "the header describes %llu data bytes but the file holds %llu",
                      (unsigned long long)expected, (unsigned long long)data_size);
    if (s != DDP_OK) {
        free(es);
        return s;
    }
    *entries = es;
    *count = n;
    return DDP_OK;
}

ddp_status tensor_load_safetensors(const char *path, char ***names, tensor ***tensors, int *n) {
    *names = NULL;
    *tensors = NULL;
    *n = 0;
    in_file in;
    DDP_CHECK(in_open(&in, path, "safetensors"));
    cJSON *root = NULL;
    st_entry *es = NULL;
    int count = 0;
    uint64_t data_start = 0, data_size = 0;
    ddp_status s = st_read_header(&in, &root, &data_start, &data_size);
    if (s == DDP_OK) s = st_collect(path, root, data_size, &es, &count);
    char **out_names = NULL;
    tensor **out_tensors = NULL;
    if (s == DDP_OK) {
        out_names = calloc(count > 0 ? (size_t)count : 1, sizeof *out_names);
        out_tensors = calloc(count > 0 ? (size_t)count : 1, sizeof *out_tensors);
        if (!out_names || !out_tensors)
            s = DDP_FAIL(DDP_ERR_NOMEM, "cannot read '%s': out of memory", path);
    }
    for (int i = 0; s == DDP_OK && i < count; i++) {
        const st_entry *e = &es[i];
        s = tensor_empty(e->sizes, e->ndim, e->dtype, DEVICE_CPU_VALUE, &out_tensors[i]);
        if (s == DDP_OK)
            s = in_read(&in, data_start + e->begin, tensor_data(out_tensors[i]), e->end - e->begin);
        if (s == DDP_OK && e->dtype == DTYPE_BOOL) normalise_bools(out_tensors[i]);
        if (s == DDP_OK && !(out_names[i] = strdup(e->name)))
            s = DDP_FAIL(DDP_ERR_NOMEM, "cannot read '%s': out of memory", path);
    }
    fclose(in.f);
    free(es);
    cJSON_Delete(root);
    if (s != DDP_OK) {
        for (int i = 0; out_names && i < count; i++) {
            free(out_names[i]);
            tensor_release(out_tensors[i]);
        }
        free(out_names);
        free(out_tensors);
        return s;
    }
    *names = out_names;
    *tensors = out_tensors;
    *n = count;
    return DDP_OK;
}

/* ---- .npy ---------------------------------------------------------------------------- */

static const char *npy_descr(dtype dt) {
    switch (dt) {
    case DTYPE_FLOAT32:
        return "<f4";
    case DTYPE_FLOAT64:
        return "<f8";
    case DTYPE_INT64:
        return "<i8";
    case DTYPE_BOOL:
        return "|b1";
    }
    return "?";
}

/* Accepts numpy's spellings of our four dtypes: '<' or '=' (native, little-endian here)
 * for the wide ones, and any byte-order mark for the one-byte bool. */
static bool npy_descr_parse(const char *s, dtype *dt) {
    if (s[0] == '\0' || strchr("<=|>", s[0]) == NULL) return false;
    const char *code = s + 1;
    if (strcmp(code, "b1") == 0) {
        *dt = DTYPE_BOOL;
        return true;
    }
    if (s[0] != '<' && s[0] != '=') return false;
    if (strcmp(code, "f4") == 0)
        *dt = DTYPE_FLOAT32;
    else if (strcmp(code, "f8") == 0)
        *dt = DTYPE_FLOAT64;
    else if (strcmp(code, "i8") == 0)
        *dt = DTYPE_INT64;
    else
        return false;
    return true;
}

ddp_status tensor_save_npy(const char *path, const tensor *t) {
    DDP_CHECK(check_savable(path, "the tensor", t));
    char header[512];
    int len = snprintf(header, sizeof header, "{'descr': '%s', 'fortran_order': False, 'shape': (",
                       npy_descr(t->dtype));
    for (int d = 0; d < t->ndim; d++)
        len += snprintf(header + len, sizeof header - (size_t)len, "%s%lld%s", d ? " " : "",
                        (long long)t->sizes[d], (d < t->ndim - 1 || t->ndim == 1) ? "," : "");
    len += snprintf(header + len, sizeof header - (size_t)len, "), }");
    /* numpy pads so that the data starts at a multiple of 64; the header ends in '\n' */
    int total = 10 + len + 1;
    int pad = (64 - total % 64) % 64;
    memset(header + len, ' ', (size_t)pad);
    len += pad;
    header[len++] = '\n';
    unsigned char prefix[10] = {0x93,
                                'N',
                                'U',
                                'M',
                                'P',
                                'Y',
                                1,
                                0,
                                (unsigned char)(len & 0xff),
                                (unsigned char)(len >> 8)};
    out_file o;
    DDP_CHECK(out_open(&o, path));
    ddp_status s = out_write(&o, prefix, sizeof prefix);
    if (s == DDP_OK) s = out_write(&o, header, (size_t)len);
    if (s == DDP_OK) s = out_write_tensor(&o, t);
    return out_finish(&o, s);
}

/* A cursor over the header's Python dict literal. */
typedef struct {
    const char *p, *end;
} npy_cursor;

static void npy_skip(npy_cursor *c) {
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
        c->p++;
}

static bool npy_eat(npy_cursor *c, char ch) {
    npy_skip(c);
    if (c->p < c->end && *c->p == ch) {
        c->p++;
        return true;
    }
    return false;
}

/* A quoted Python string without escapes, into out (cap bytes); false if malformed. */
static bool npy_string(npy_cursor *c, char *out, size_t cap) {
    npy_skip(c);
    if (c->p >= c->end || (*c->p != '\'' && *c->p != '"')) return false;
    char quote = *c->p++;
    size_t n = 0;
    while (c->p < c->end && *c->p != quote) {
        if (*c->p == '\\' || n + 1 >= cap) return false;
        out[n++] = *c->p++;
    }
    if (c->p >= c->end) return false;
    c->p++;
    out[n] = '\0';
    return true;
}

static bool npy_word(npy_cursor *c, const char *word) {
    npy_skip(c);
    size_t n = strlen(word);
    if ((size_t)(c->end - c->p) < n || memcmp(c->p, word, n) != 0) return false;
    c->p += n;
    return true;
}

/* Parses "(3, 4)" into sizes. Returns a message fragment on failure, NULL on success. */
static const char *npy_shape(npy_cursor *c, int64_t *sizes, int *ndim) {
    if (!npy_eat(c, '(')) return "'shape' is not a tuple";
    *ndim = 0;
    for (;;) {
        if (npy_eat(c, ')')) return NULL;
        npy_skip(c);
        if (c->p < c->end && *c->p == '-') return "the shape has a negative dimension";
        if (c->p >= c->end || *c->p < '0' || *c->p > '9') return "the shape is malformed";
        int64_t v = 0;
        while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
            if (v > (INT64_MAX - 9) / 10) return "a dimension of the shape is too large";
            v = v * 10 + (*c->p++ - '0');
        }
        if (c->p < c->end && *c->p == 'L') c->p++; /* Python 2 longs */
        if (*ndim == TENSOR_MAX_DIMS) return "the shape has more dims than ddplab's 8";
        sizes[(*ndim)++] = v;
        if (npy_eat(c, ')')) return NULL;
        if (!npy_eat(c, ',')) return "the shape is malformed";
    }
}

/* Parses the whole dict; on failure returns a message fragment, NULL on success. */
static const char *npy_parse_header(npy_cursor *c, char *descr, size_t cap, bool *fortran,
                                    int64_t *sizes, int *ndim) {
    bool have_descr = false, have_fortran = false, have_shape = false;
    if (!npy_eat(c, '{')) return "the header is not a Python dict";
    while (!npy_eat(c, '}')) {
        char key[32];
        if (!npy_string(c, key, sizeof key) || !npy_eat(c, ':'))
            return "the header dict is malformed";
        if (strcmp(key, "descr") == 0) {
            if (!npy_string(c, descr, cap)) return "'descr' is not a simple dtype string";
            have_descr = true;
        } else if (strcmp(key, "fortran_order") == 0) {
            if (npy_word(c, "True"))
                *fortran = true;
            else if (npy_word(c, "False"))
                *fortran = false;
            else
                return "'fortran_order' is neither True nor False";
            have_fortran = true;
        } else if (strcmp(key, "shape") == 0) {
            const char *why = npy_shape(c, sizes, ndim);
            if (why) return why;
            have_shape = true;
        } else {
            return "the header has an unknown key";
        }
        if (!npy_eat(c, ',')) {
            if (!npy_eat(c, '}')) return "the header dict is malformed";
            break;
        }
    }
    npy_skip(c);
    if (c->p != c->end) return "there is text after the header dict";
    if (!have_descr || !have_fortran || !have_shape)
        return "the header lacks 'descr', 'fortran_order' or 'shape'";
    return NULL;
}

/* Reads the magic, version and header of an .npy file: dtype, shape and data offset. */
static ddp_status npy_read_header(in_file *in, dtype *dt, int64_t *sizes, int *ndim,
                                  uint64_t *data_start) {
    const char *path = in->path;
    unsigned char pre[12];
    if (in->size < 10)
        return NPY_FORMAT(path, "the file has only %llu bytes (truncated, or not an .npy file)",
                          (unsigned long long)in->size);
    DDP_CHECK(in_read(in, 0, pre, 10));
    if (memcmp(pre, "\x93NUMPY", 6) != 0)
        return NPY_FORMAT(path, "%s",
                          "it does not start with numpy's magic bytes (not an .npy file)");
    uint64_t hlen, start;
    if (pre[6] == 1) {
        hlen = pre[8] | (uint64_t)pre[9] << 8;
        start = 10;
    } else if (pre[6] == 2 || pre[6] == 3) {
        if (in->size < 12) return NPY_FORMAT(path, "%s", "the file is truncated");
        DDP_CHECK(in_read(in, 10, pre + 10, 2));
        hlen = pre[8] | (uint64_t)pre[9] << 8 | (uint64_t)pre[10] << 16 | (uint64_t)pre[11] << 24;
        start = 12;
    } else {
        return NPY_FORMAT(path, "format version %d.%d is unknown (ddplab reads 1.0 to 3.0)", pre[6],
                          pre[7]);
    }
    if (hlen > IO_MAX_HEADER_BYTES || hlen > in->size - start)
        return NPY_FORMAT(
            path,
            "its header claims %llu bytes but the file has only %llu after the prefix (truncated?)",
            (unsigned long long)hlen, (unsigned long long)(in->size - start));
    char *text = malloc((size_t)hlen + 1);
    if (!text) return DDP_FAIL(DDP_ERR_NOMEM, "cannot read '%s': out of memory", path);
    ddp_status s = in_read(in, start, text, hlen);
    if (s != DDP_OK) {
        free(text);
        return s;
    }
    char descr[32];
    bool fortran = false;
    npy_cursor c = {text, text + hlen};
    const char *why = npy_parse_header(&c, descr, sizeof descr, &fortran, sizes, ndim);
    free(text);
    if (why) return NPY_FORMAT(path, "%s", why);
    if (!npy_descr_parse(descr, dt))
        return NPY_FORMAT(
            path,
            "dtype '%s' is not supported; ddplab reads float32 ('<f4'), float64 ('<f8'), int64 "
            "('<i8') and bool ('|b1') (in numpy: a.astype(np.float32))",
            descr);
    if (fortran)
        return NPY_FORMAT(path, "%s",
                          "it is stored in Fortran order; save it in C order (np.save(path, "
                          "np.ascontiguousarray(a)))");
    *data_start = start + hlen;
    return DDP_OK;
}

ddp_status tensor_load_npy(const char *path, tensor **out) {
    *out = NULL;
    in_file in;
    DDP_CHECK(in_open(&in, path, ".npy"));
    dtype dt = DTYPE_FLOAT32;
    int64_t sizes[TENSOR_MAX_DIMS];
    int ndim = 0;
    uint64_t start = 0;
    int64_t numel = 0;
    ddp_status s = npy_read_header(&in, &dt, sizes, &ndim, &start);
    if (s == DDP_OK && !checked_numel(sizes, ndim, dtype_size(dt), &numel)) {
        char shape[200];
        tensor_sizes_str(sizes, ndim, shape, sizeof shape);
        s = NPY_FORMAT(path, "the shape %s is too large", shape);
    }
    uint64_t nbytes = (uint64_t)numel * dtype_size(dt);
    if (s == DDP_OK && nbytes != in.size - start) {
        char shape[200];
        tensor_sizes_str(sizes, ndim, shape, sizeof shape);
        s = NPY_FORMAT(path, "%s %s needs %llu data bytes but the file has %llu%s", dtype_name(dt),
                       shape, (unsigned long long)nbytes, (unsigned long long)(in.size - start),
                       nbytes > in.size - start ? " (truncated file)" : "");
    }
    tensor *t = NULL;
    if (s == DDP_OK) s = tensor_empty(sizes, ndim, dt, DEVICE_CPU_VALUE, &t);
    if (s == DDP_OK) s = in_read(&in, start, tensor_data(t), nbytes);
    fclose(in.f);
    if (s != DDP_OK) {
        tensor_release(t);
        return s;
    }
    if (dt == DTYPE_BOOL) normalise_bools(t);
    *out = t;
    return DDP_OK;
}
