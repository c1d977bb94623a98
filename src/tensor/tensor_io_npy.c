/* tensor_io_npy.c — the .npy format: the magic "\x93NUMPY", a version, a Python dict
 * literal giving 'descr', 'fortran_order' and 'shape', then the data in C order. Versions
 * 1.0 to 3.0 are read; 1.0 is written, padded so the data starts at a multiple of 64 as
 * numpy does. Fortran-order files are refused (not transposed), with a message saying how
 * to save them in C order. Reading goes through io_source (a file or memory), writing
 * through io_sink (atomic), both in tensor_io.c. */
#include "tensor/tensor_io_internal.h"

#include "base/alloc.h"

#include <stdlib.h>
#include <string.h>

#define NPY_FORMAT(path, fmt, ...)                                                                 \
    DDP_FAIL(DDP_ERR_FORMAT, "cannot read '%s' as .npy: " fmt, (path), __VA_ARGS__)

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
    DDP_CHECK(io_check_savable(path, "the tensor", t));
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
    io_sink o;
    DDP_CHECK(io_sink_open(&o, path));
    ddp_status s = io_sink_write(&o, prefix, sizeof prefix);
    if (s == DDP_OK) s = io_sink_write(&o, header, (size_t)len);
    if (s == DDP_OK) s = io_sink_write_tensor(&o, t);
    return io_sink_finish(&o, s);
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
static ddp_status npy_read_header(io_source *in, dtype *dt, int64_t *sizes, int *ndim,
                                  uint64_t *data_start) {
    const char *path = in->path;
    unsigned char pre[12];
    if (in->size < 10)
        return NPY_FORMAT(path, "the file has only %llu bytes (truncated, or not an .npy file)",
                          (unsigned long long)in->size);
    DDP_CHECK(io_source_read(in, 0, pre, 10));
    if (memcmp(pre, "\x93NUMPY", 6) != 0)
        return NPY_FORMAT(path, "%s",
                          "it does not start with numpy's magic bytes (not an .npy file)");
    uint64_t hlen, start;
    if (pre[6] == 1) {
        hlen = pre[8] | (uint64_t)pre[9] << 8;
        start = 10;
    } else if (pre[6] == 2 || pre[6] == 3) {
        if (in->size < 12) return NPY_FORMAT(path, "%s", "the file is truncated");
        DDP_CHECK(io_source_read(in, 10, pre + 10, 2));
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
    char *text = ddp_malloc((size_t)hlen + 1);
    if (!text) return DDP_FAIL(DDP_ERR_NOMEM, "cannot read '%s': out of memory", path);
    ddp_status s = io_source_read(in, start, text, hlen);
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

/* Reads the whole .npy from `in` into a new tensor (*out); the caller closes `in`. */
static ddp_status npy_read(io_source *in, tensor **out) {
    const char *path = in->path;
    dtype dt = DTYPE_FLOAT32;
    int64_t sizes[TENSOR_MAX_DIMS];
    int ndim = 0;
    uint64_t start = 0;
    int64_t numel = 0;
    ddp_status s = npy_read_header(in, &dt, sizes, &ndim, &start);
    if (s == DDP_OK && !io_checked_numel(sizes, ndim, dtype_size(dt), &numel)) {
        char shape[200];
        tensor_sizes_str(sizes, ndim, shape, sizeof shape);
        s = NPY_FORMAT(path, "the shape %s is too large", shape);
    }
    uint64_t nbytes = (uint64_t)numel * dtype_size(dt);
    if (s == DDP_OK && nbytes != in->size - start) {
        char shape[200];
        tensor_sizes_str(sizes, ndim, shape, sizeof shape);
        s = NPY_FORMAT(path, "%s %s needs %llu data bytes but the file has %llu%s", dtype_name(dt),
                       shape, (unsigned long long)nbytes, (unsigned long long)(in->size - start),
                       nbytes > in->size - start ? " (truncated file)" : "");
    }
    tensor *t = NULL;
    if (s == DDP_OK) s = tensor_empty(sizes, ndim, dt, DEVICE_CPU_VALUE, &t);
    if (s == DDP_OK) s = io_source_read(in, start, tensor_data(t), nbytes);
    if (s != DDP_OK) {
        tensor_release(t);
        return s;
    }
    if (dt == DTYPE_BOOL) io_normalise_bools(t);
    *out = t;
    return DDP_OK;
}

ddp_status tensor_load_npy(const char *path, tensor **out) {
    *out = NULL;
    io_source in;
    DDP_CHECK(io_source_open(&in, path, ".npy"));
    ddp_status s = npy_read(&in, out);
    io_source_close(&in);
    return s;
}

ddp_status tensor_load_npy_buffer(const void *data, size_t len, const char *name, tensor **out) {
    *out = NULL;
    io_source in;
    io_source_buffer(&in, data, len, name);
    return npy_read(&in, out);
}
