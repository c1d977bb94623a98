/* tensor_io_safetensors.c — the .safetensors format: 8 bytes of little-endian header
 * length, a JSON header (padded with spaces to a multiple of 8, as the reference
 * implementation writes it) mapping each name to {"dtype", "shape", "data_offsets":
 * [begin, end]} plus an optional "__metadata__" object of string -> string, then the
 * data, offsets counted from the end of the header. The tensors must tile the data
 * section exactly, as the reference requires. Metadata carries what is not a tensor
 * (lua/torch/serialization.lua keeps an optimizer's param_groups there as JSON text), so
 * Python's safetensors still reads the file. Reading goes through io_source (a file or
 * memory), writing through io_sink (atomic), both in tensor_io.c. */
#include "tensor/tensor_io_internal.h"

#include "base/alloc.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* Largest integer a JSON double carries exactly. */
#define IO_MAX_JSON_INT 9007199254740992.0

/* A format error in `path`, prefixed the same way for every check. */
#define ST_FORMAT(path, fmt, ...)                                                                  \
    DDP_FAIL(DDP_ERR_FORMAT, "cannot read '%s' as safetensors: " fmt, (path), __VA_ARGS__)

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

/* cJSON allocates through the seam too, so that a test failing the k-th allocation
 * reaches cJSON's (it has one pair of hooks for the whole process; nothing else in
 * ddplab uses it). cJSON reports a parse that ran out of memory as any other failed
 * parse, so the hook notes it: the reader then says "out of memory", not "corrupt". */
static _Thread_local bool st_json_ran_out;

static void *st_json_malloc(size_t n) {
    void *p = ddp_malloc(n);
    if (!p) st_json_ran_out = true;
    return p;
}

static void st_json_hooks(void) {
    cJSON_Hooks hooks = {.malloc_fn = st_json_malloc, .free_fn = free};
    cJSON_InitHooks(&hooks);
}

/* Called before every use of cJSON here. */
static void st_json_init(void) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, st_json_hooks);
}

/* Builds the JSON header text for the save (caller frees with cJSON_free); NULL when
 * out of memory. Offsets follow the caller's order. */
static char *st_header_json(const char *const *names, tensor *const *tensors, int n,
                            const char *const *meta_keys, const char *const *meta_values,
                            int n_meta) {
    cJSON *root = cJSON_CreateObject();
    cJSON *meta = cJSON_AddObjectToObject(root, "__metadata__");
    bool has_format = false;
    for (int i = 0; i < n_meta; i++) has_format |= strcmp(meta_keys[i], "format") == 0;
    bool ok = root && meta && (has_format || cJSON_AddStringToObject(meta, "format", "pt"));
    for (int i = 0; ok && i < n_meta; i++)
        ok = cJSON_AddStringToObject(meta, meta_keys[i], meta_values[i]) != NULL;
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
    return tensor_save_safetensors_meta(path, names, tensors, n, NULL, NULL, 0);
}

ddp_status tensor_save_safetensors_meta(const char *path, const char *const *names,
                                        tensor *const *tensors, int n, const char *const *meta_keys,
                                        const char *const *meta_values, int n_meta) {
    if (n < 0 || n_meta < 0)
        return DDP_FAIL(DDP_ERR_ARG, "cannot save '%s': %d tensors, %d metadata entries", path, n,
                        n_meta);
    for (int i = 0; i < n_meta; i++) {
        if (!meta_keys[i] || !meta_values[i])
            return DDP_FAIL(DDP_ERR_ARG, "cannot save '%s': metadata entry %d is missing", path, i);
        for (int j = 0; j < i; j++)
            if (strcmp(meta_keys[i], meta_keys[j]) == 0)
                return DDP_FAIL(DDP_ERR_ARG,
                                "cannot save '%s': the metadata key '%s' appears twice", path,
                                meta_keys[i]);
    }
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
        DDP_CHECK(io_check_savable(path, what, tensors[i]));
        for (int j = 0; j < i; j++)
            if (strcmp(names[i], names[j]) == 0)
                return DDP_FAIL(DDP_ERR_ARG, "cannot save '%s': the name '%s' appears twice", path,
                                names[i]);
    }
    st_json_init();
    char *json = st_header_json(names, tensors, n, meta_keys, meta_values, n_meta);
    if (!json) return DDP_FAIL(DDP_ERR_NOMEM, "cannot save '%s': out of memory", path);
    size_t len = strlen(json);
    size_t padded = (len + 7) / 8 * 8; /* the reference pads the header with spaces */
    unsigned char prefix[8];
    for (int i = 0; i < 8; i++) prefix[i] = (unsigned char)((uint64_t)padded >> (8 * i));

    io_sink o;
    ddp_status s = io_sink_open(&o, path);
    if (s != DDP_OK) {
        cJSON_free(json);
        return s;
    }
    s = io_sink_write(&o, prefix, 8);
    if (s == DDP_OK) s = io_sink_write(&o, json, len);
    if (s == DDP_OK) s = io_sink_write(&o, "       ", padded - len); /* at most 7 */
    for (int i = 0; s == DDP_OK && i < n; i++) s = io_sink_write_tensor(&o, tensors[i]);
    cJSON_free(json);
    return io_sink_finish(&o, s);
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
    if (!io_checked_numel(e->sizes, ndim, dtype_size(e->dtype), &numel))
        return ST_FORMAT(path, "the shape %s of '%s' is too large", shape, name);
    uint64_t want = (uint64_t)numel * dtype_size(e->dtype);
    if (want != e->end - e->begin)
        return ST_FORMAT(path, "'%s' is %s %s = %llu bytes, but its data_offsets span %llu bytes",
                         name, st_dtype_name(e->dtype), shape, (unsigned long long)want,
                         (unsigned long long)(e->end - e->begin));
    return DDP_OK;
}

/* The header offset of a NUL character in `text` (a raw 0 byte, or a \u0000 escape inside
 * a JSON string), or -1. cJSON hands back C strings, so a name holding one would be cut
 * ("a\0b" read as "a"); the loader refuses such a file instead. */
static long st_find_nul(const char *text, size_t len) {
    bool in_string = false;
    for (size_t i = 0; i < len; i++) {
        if (text[i] == '\0') return (long)i;
        if (text[i] == '"') {
            in_string = !in_string;
        } else if (in_string && text[i] == '\\' && i + 1 < len) {
            if (text[i + 1] == 'u' && i + 5 < len && memcmp(text + i + 2, "0000", 4) == 0)
                return (long)i;
            i++; /* the escaped character (a quote or backslash) is not a delimiter */
        }
    }
    return -1;
}

/* Reads and parses the header: *root is the JSON object, *data_start the file offset of
 * the data section and *data_size its length. On failure nothing is left allocated. */
static ddp_status st_read_header(io_source *in, cJSON **root, uint64_t *data_start,
                                 uint64_t *data_size) {
    const char *path = in->path;
    unsigned char prefix[8];
    if (in->size < 8)
        return ST_FORMAT(path,
                         "the file has only %llu bytes (truncated, or not a safetensors file)",
                         (unsigned long long)in->size);
    DDP_CHECK(io_source_read(in, 0, prefix, 8));
    uint64_t hlen = io_read_le64(prefix);
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
    char *text = ddp_malloc((size_t)hlen + 1);
    if (!text)
        return DDP_FAIL(DDP_ERR_NOMEM, "cannot read '%s': out of memory for its %llu-byte header",
                        path, (unsigned long long)hlen);
    ddp_status s = io_source_read(in, 8, text, hlen);
    if (s != DDP_OK) {
        free(text);
        return s;
    }
    text[hlen] = '\0';
    long nul = st_find_nul(text, (size_t)hlen);
    if (nul >= 0) {
        free(text);
        return ST_FORMAT(path,
                         "its header holds a NUL character (byte %ld of the header); ddplab "
                         "cannot keep a name or metadata holding one whole, so it refuses the file",
                         nul);
    }
    const char *end = NULL;
    st_json_init();
    st_json_ran_out = false;
    *root = text[0] == '{' ? cJSON_ParseWithLengthOpts(text, (size_t)hlen, &end, 0) : NULL;
    if (!*root && st_json_ran_out) {
        free(text);
        return DDP_FAIL(DDP_ERR_NOMEM, "cannot read '%s': out of memory parsing its header", path);
    }
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
    st_entry *es = ddp_calloc(n > 0 ? (size_t)n : 1, sizeof *es);
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

void tensor_file_free(tensor_file *f) {
    for (int i = 0; i < f->n; i++) {
        if (f->names) free(f->names[i]);
        if (f->tensors) tensor_release(f->tensors[i]);
    }
    for (int i = 0; i < f->n_meta; i++) {
        if (f->meta_keys) free(f->meta_keys[i]);
        if (f->meta_values) free(f->meta_values[i]);
    }
    free(f->names);
    free(f->tensors);
    free(f->meta_keys);
    free(f->meta_values);
    memset(f, 0, sizeof *f);
}

/* Copies the string entries of root's "__metadata__" into out (already zeroed). */
static ddp_status st_copy_metadata(const char *path, const cJSON *root, tensor_file *out) {
    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(root, "__metadata__");
    if (!cJSON_IsObject(meta)) return DDP_OK; /* absent, or not an object: nothing to keep */
    int count = 0;
    const cJSON *item;
    cJSON_ArrayForEach(item, meta) count += cJSON_IsString(item);
    if (count == 0) return DDP_OK;
    out->meta_keys = ddp_calloc((size_t)count, sizeof *out->meta_keys);
    out->meta_values = ddp_calloc((size_t)count, sizeof *out->meta_values);
    if (!out->meta_keys || !out->meta_values)
        return DDP_FAIL(DDP_ERR_NOMEM, "cannot read '%s': out of memory", path);
    cJSON_ArrayForEach(item, meta) {
        if (!cJSON_IsString(item)) continue;
        int k = out->n_meta++;
        out->meta_keys[k] = ddp_strdup(item->string);
        out->meta_values[k] = ddp_strdup(item->valuestring);
        if (!out->meta_keys[k] || !out->meta_values[k])
            return DDP_FAIL(DDP_ERR_NOMEM, "cannot read '%s': out of memory", path);
    }
    return DDP_OK;
}

/* Reads everything from `in` into *out (zeroed first; emptied again on failure). */
static ddp_status st_read(io_source *in, tensor_file *out) {
    const char *path = in->path;
    memset(out, 0, sizeof *out);
    cJSON *root = NULL;
    st_entry *es = NULL;
    int count = 0;
    uint64_t data_start = 0, data_size = 0;
    ddp_status s = st_read_header(in, &root, &data_start, &data_size);
    if (s == DDP_OK) s = st_collect(path, root, data_size, &es, &count);
    if (s == DDP_OK) {
        out->names = ddp_calloc(count > 0 ? (size_t)count : 1, sizeof *out->names);
        out->tensors = ddp_calloc(count > 0 ? (size_t)count : 1, sizeof *out->tensors);
        if (!out->names || !out->tensors)
            s = DDP_FAIL(DDP_ERR_NOMEM, "cannot read '%s': out of memory", path);
        else
            out->n = count;
    }
    for (int i = 0; s == DDP_OK && i < count; i++) {
        const st_entry *e = &es[i];
        s = tensor_empty(e->sizes, e->ndim, e->dtype, DEVICE_CPU_VALUE, &out->tensors[i]);
        if (s == DDP_OK)
            s = io_source_read(in, data_start + e->begin, tensor_data(out->tensors[i]),
                               e->end - e->begin);
        if (s == DDP_OK && e->dtype == DTYPE_BOOL) io_normalise_bools(out->tensors[i]);
        if (s == DDP_OK && !(out->names[i] = ddp_strdup(e->name)))
            s = DDP_FAIL(DDP_ERR_NOMEM, "cannot read '%s': out of memory", path);
    }
    if (s == DDP_OK) s = st_copy_metadata(path, root, out);
    free(es);
    cJSON_Delete(root);
    if (s != DDP_OK) tensor_file_free(out);
    return s;
}

ddp_status tensor_read_safetensors(const char *path, tensor_file *out) {
    memset(out, 0, sizeof *out);
    io_source in;
    DDP_CHECK(io_source_open(&in, path, "safetensors"));
    ddp_status s = st_read(&in, out);
    io_source_close(&in);
    return s;
}

ddp_status tensor_read_safetensors_buffer(const void *data, size_t len, const char *name,
                                          tensor_file *out) {
    io_source in;
    io_source_buffer(&in, data, len, name);
    return st_read(&in, out);
}

ddp_status tensor_load_safetensors(const char *path, char ***names, tensor ***tensors, int *n) {
    *names = NULL;
    *tensors = NULL;
    *n = 0;
    tensor_file f;
    DDP_CHECK(tensor_read_safetensors(path, &f));
    *names = f.names;
    *tensors = f.tensors;
    *n = f.n;
    f.names = NULL;
    f.tensors = NULL;
    f.n = 0;
    tensor_file_free(&f);
    return DDP_OK;
}
