/* test_tensor_io.c — .safetensors and .npy: round trips of every dtype and odd shape
 * (0-d, empty, non-contiguous views), the exact bytes other tools expect, and hostile
 * files: each corruption the readers must name, plus a fuzz-ish pass that truncates a
 * valid file at every byte and flips bytes of its header (run under ASan in CI). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tensor/tensor.h"
#include "tensor/tensor_io.h"

static char dir[256];

/* A path inside this run's temporary folder (static buffer, rotated over four). */
static const char *tmp_path(const char *name) {
    static char bufs[4][512];
    static int next;
    char *b = bufs[next++ % 4];
    snprintf(b, 512, "%s/%s", dir, name);
    return b;
}

static void write_bytes(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

/* The whole file in a malloc'd buffer (caller frees). */
static unsigned char *read_bytes(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return buf;
}

/* A safetensors file from a header text and raw data bytes. */
static void write_st(const char *path, const char *json, const void *data, size_t len) {
    size_t hlen = strlen(json);
    unsigned char *buf = malloc(8 + hlen + len + 1);
    assert_non_null(buf);
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)hlen >> (8 * i));
    memcpy(buf + 8, json, hlen);
    if (len) memcpy(buf + 8 + hlen, data, len);
    write_bytes(path, buf, 8 + hlen + len);
    free(buf);
}

/* An .npy v1.0 file from a header dict text and raw data bytes. */
static void write_npy(const char *path, const char *dict, const void *data, size_t len) {
    size_t hlen = strlen(dict);
    unsigned char *buf = malloc(10 + hlen + len + 1);
    assert_non_null(buf);
    memcpy(buf, "\x93NUMPY\x01\x00", 8);
    buf[8] = (unsigned char)(hlen & 0xff);
    buf[9] = (unsigned char)(hlen >> 8);
    memcpy(buf + 10, dict, hlen);
    if (len) memcpy(buf + 10 + hlen, data, len);
    write_bytes(path, buf, 10 + hlen + len);
    free(buf);
}

static tensor *make(dtype dt, const int64_t *sizes, int ndim) {
    tensor *t = NULL;
    assert_int_equal(tensor_empty(sizes, ndim, dt, DEVICE_CPU_VALUE, &t), DDP_OK);
    for (int64_t i = 0; i < tensor_numel(t); i++)
        tensor_set(t, i, dt == DTYPE_BOOL ? (double)(i % 3 == 0) : (double)i * 1.25 - 3.0);
    return t;
}

static void assert_same(const tensor *a, const tensor *b) {
    assert_int_equal(a->dtype, b->dtype);
    assert_int_equal(a->ndim, b->ndim);
    for (int d = 0; d < a->ndim; d++) assert_int_equal(a->sizes[d], b->sizes[d]);
    assert_true(tensor_equal(a, b));
}

/* Loading `path` fails with DDP_ERR_FORMAT, the message names the file and holds `word`,
 * and nothing is returned. */
static void expect_st_error(const char *path, const char *word) {
    char **names = (char **)1;
    tensor **ts = (tensor **)1;
    int n = -1;
    ddp_status s = tensor_load_safetensors(path, &names, &ts, &n);
    if (s != DDP_ERR_FORMAT || !strstr(ddp_last_error(), word))
        fail_msg("%s: got status %d, message \"%s\"; wanted a format error with \"%s\"", path, s,
                 ddp_last_error(), word);
    assert_non_null(strstr(ddp_last_error(), path));
    assert_null(names);
    assert_null(ts);
    assert_int_equal(n, 0);
}

static void expect_npy_error(const char *path, const char *word) {
    tensor *t = (tensor *)1;
    ddp_status s = tensor_load_npy(path, &t);
    if (s != DDP_ERR_FORMAT || !strstr(ddp_last_error(), word))
        fail_msg("%s: got status %d, message \"%s\"; wanted a format error with \"%s\"", path, s,
                 ddp_last_error(), word);
    assert_non_null(strstr(ddp_last_error(), path));
    assert_null(t);
}

static void free_loaded(char **names, tensor **ts, int n) {
    for (int i = 0; i < n; i++) {
        free(names[i]);
        tensor_release(ts[i]);
    }
    free(names);
    free(ts);
}

/* ---- round trips ----------------------------------------------------------------- */

static void test_safetensors_round_trip(void **state) {
    (void)state;
    const int64_t s23[] = {2, 3}, s4[] = {4}, s03[] = {0, 3}, s222[] = {2, 2, 2};
    tensor *ts[6] = {make(DTYPE_FLOAT32, s23, 2),  make(DTYPE_FLOAT64, s4, 1),
                     make(DTYPE_INT64, s222, 3),   make(DTYPE_BOOL, s4, 1),
                     make(DTYPE_FLOAT32, NULL, 0), make(DTYPE_FLOAT32, s03, 2)};
    /* names deliberately out of alphabetical order: the file keeps the caller's order */
    const char *names[6] = {"fc2.weight", "fc1.bias", "steps", "mask", "scale", "empty"};
    const char *path = tmp_path("all.safetensors");
    assert_int_equal(tensor_save_safetensors(path, names, ts, 6), DDP_OK);
    char **got_names;
    tensor **got;
    int n;
    assert_int_equal(tensor_load_safetensors(path, &got_names, &got, &n), DDP_OK);
    assert_int_equal(n, 6);
    for (int i = 0; i < 6; i++) {
        /* the empty tensor occupies no bytes; it sorts beside the others by offset */
        int j = 0;
        while (j < n && strcmp(got_names[j], names[i]) != 0) j++;
        assert_true(j < n);
        assert_same(got[j], ts[i]);
        if (i < 5) assert_string_equal(got_names[i], names[i]);
    }
    free_loaded(got_names, got, n);
    for (int i = 0; i < 6; i++) tensor_release(ts[i]);
}

static void test_safetensors_layout(void **state) {
    (void)state;
    const int64_t s3[] = {3};
    tensor *ts[2] = {make(DTYPE_FLOAT32, s3, 1), make(DTYPE_INT64, s3, 1)};
    const char *names[2] = {"b", "a"};
    const char *path = tmp_path("layout.safetensors");
    assert_int_equal(tensor_save_safetensors(path, names, ts, 2), DDP_OK);
    size_t len;
    unsigned char *buf = read_bytes(path, &len);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | buf[i];
    assert_int_equal(hlen % 8, 0);             /* padded as the reference does */
    assert_int_equal(len, 8 + hlen + 12 + 24); /* 3 floats then 3 int64 */
    assert_int_equal(buf[8], '{');
    char *json = strndup((char *)buf + 8, hlen);
    assert_non_null(strstr(json, "\"b\":{\"dtype\":\"F32\",\"shape\":[3],"
                                 "\"data_offsets\":[0,12]}"));
    assert_non_null(strstr(json, "\"a\":{\"dtype\":\"I64\",\"shape\":[3],"
                                 "\"data_offsets\":[12,36]}"));
    assert_true(strstr(json, "\"b\"") < strstr(json, "\"a\""));
    float first;
    memcpy(&first, buf + 8 + hlen, 4);
    assert_true(first == -3.0f);
    free(json);
    free(buf);
    tensor_release(ts[0]);
    tensor_release(ts[1]);
}

static void test_non_contiguous_saved_in_logical_order(void **state) {
    (void)state;
    const int64_t s34[] = {3, 4};
    tensor *base = make(DTYPE_FLOAT32, s34, 2);
    tensor *tr = NULL, *nar = NULL;
    assert_int_equal(tensor_transpose(base, 0, 1, &tr), DDP_OK);
    assert_int_equal(tensor_narrow(base, 1, 1, 2, &nar), DDP_OK);
    assert_false(tensor_is_contiguous(tr));
    assert_false(tensor_is_contiguous(nar));
    tensor *ts[2] = {tr, nar};
    const char *names[2] = {"t", "n"};
    const char *path = tmp_path("views.safetensors");
    assert_int_equal(tensor_save_safetensors(path, names, ts, 2), DDP_OK);
    char **got_names;
    tensor **got;
    int n;
    assert_int_equal(tensor_load_safetensors(path, &got_names, &got, &n), DDP_OK);
    assert_int_equal(n, 2);
    assert_same(got[0], tr);
    assert_same(got[1], nar);
    assert_true(got[0]->sizes[0] == 4 && tensor_get(got[0], 1) == tensor_get(base, 4));
    free_loaded(got_names, got, n);

    const char *npath = tmp_path("view.npy");
    assert_int_equal(tensor_save_npy(npath, tr), DDP_OK);
    tensor *back = NULL;
    assert_int_equal(tensor_load_npy(npath, &back), DDP_OK);
    assert_same(back, tr);
    tensor_release(back);
    tensor_release(tr);
    tensor_release(nar);
    tensor_release(base);
}

static void test_npy_round_trip(void **state) {
    (void)state;
    const int64_t s23[] = {2, 3}, s5[] = {5}, s0[] = {0}, s2111[] = {2, 1, 1, 1};
    struct {
        dtype dt;
        const int64_t *sizes;
        int ndim;
        const char *shape_text;
    } cases[] = {{DTYPE_FLOAT32, s23, 2, "'shape': (2, 3), }"},
                 {DTYPE_FLOAT64, s5, 1, "'shape': (5,), }"},
                 {DTYPE_INT64, s2111, 4, "'shape': (2, 1, 1, 1), }"},
                 {DTYPE_BOOL, s5, 1, "'shape': (5,), }"},
                 {DTYPE_FLOAT32, NULL, 0, "'shape': (), }"},
                 {DTYPE_FLOAT64, s0, 1, "'shape': (0,), }"}};
    const char *descr[] = {"'<f4'", "'<f8'", "'<i8'", "'|b1'", "'<f4'", "'<f8'"};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        tensor *t = make(cases[i].dt, cases[i].sizes, cases[i].ndim);
        const char *path = tmp_path("x.npy");
        assert_int_equal(tensor_save_npy(path, t), DDP_OK);
        size_t len;
        unsigned char *buf = read_bytes(path, &len);
        size_t hlen = buf[8] | (size_t)buf[9] << 8;
        assert_int_equal((10 + hlen) % 64, 0); /* numpy aligns the data to 64 bytes */
        assert_int_equal(buf[10 + hlen - 1], '\n');
        char *header = strndup((char *)buf + 10, hlen);
        assert_non_null(strstr(header, cases[i].shape_text));
        assert_non_null(strstr(header, descr[i]));
        assert_non_null(strstr(header, "'fortran_order': False"));
        assert_int_equal(len, 10 + hlen + (size_t)tensor_numel(t) * dtype_size(t->dtype));
        free(header);
        free(buf);
        tensor *back = NULL;
        assert_int_equal(tensor_load_npy(path, &back), DDP_OK);
        assert_same(back, t);
        tensor_release(back);
        tensor_release(t);
    }
}

static void test_npy_reads_other_spellings(void **state) {
    (void)state;
    /* numpy may write '=' for native order, other key orders, version 2.0, 'L' suffixes */
    const float data[] = {1.5f, -2.0f};
    const char *path = tmp_path("spell.npy");
    write_npy(path, "{'shape': (2L,), 'fortran_order': False, 'descr': '=f4'}  \n", data,
              sizeof data);
    tensor *t = NULL;
    assert_int_equal(tensor_load_npy(path, &t), DDP_OK);
    assert_int_equal(t->dtype, DTYPE_FLOAT32);
    assert_true(tensor_get(t, 1) == -2.0);
    tensor_release(t);

    const char *dict = "{\"descr\": \"<f4\", \"fortran_order\": False, \"shape\": (2, ), }\n";
    size_t hlen = strlen(dict);
    unsigned char buf[256];
    memcpy(buf, "\x93NUMPY\x02\x00", 8);
    buf[8] = (unsigned char)hlen;
    buf[9] = buf[10] = buf[11] = 0;
    memcpy(buf + 12, dict, hlen);
    memcpy(buf + 12 + hlen, data, sizeof data);
    write_bytes(path, buf, 12 + hlen + sizeof data);
    assert_int_equal(tensor_load_npy(path, &t), DDP_OK);
    assert_true(tensor_get(t, 0) == 1.5);
    tensor_release(t);
}

static void test_bool_bytes_normalised(void **state) {
    (void)state;
    const unsigned char data[] = {0, 1, 7, 255};
    const char *path = tmp_path("b.safetensors");
    write_st(path, "{\"m\":{\"dtype\":\"BOOL\",\"shape\":[4],\"data_offsets\":[0,4]}}", data, 4);
    char **names;
    tensor **ts;
    int n;
    assert_int_equal(tensor_load_safetensors(path, &names, &ts, &n), DDP_OK);
    const unsigned char *p = tensor_data(ts[0]);
    assert_true(p[0] == 0 && p[1] == 1 && p[2] == 1 && p[3] == 1);
    free_loaded(names, ts, n);
}

/* ---- save errors ----------------------------------------------------------------- */

static int count_files(void) {
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

static void test_save_errors(void **state) {
    (void)state;
    const int64_t s2[] = {2};
    tensor *t = make(DTYPE_FLOAT32, s2, 1);
    tensor *ts[2] = {t, t};
    const char *dup[2] = {"w", "w"};
    int before = count_files();
    assert_int_equal(tensor_save_safetensors(tmp_path("dup.safetensors"), dup, ts, 2), DDP_ERR_ARG);
    assert_non_null(strstr(ddp_last_error(), "'w' appears twice"));
    const char *meta[1] = {"__metadata__"};
    assert_int_equal(tensor_save_safetensors(tmp_path("m.safetensors"), meta, ts, 1), DDP_ERR_ARG);
    const char *ok[1] = {"w"};
    assert_int_equal(tensor_save_safetensors(tmp_path("no/such/dir.safetensors"), ok, ts, 1),
                     DDP_ERR_IO);
    assert_non_null(strstr(ddp_last_error(), "no/such/dir.safetensors"));
    assert_int_equal(tensor_save_npy(tmp_path("no/such/dir.npy"), t), DDP_ERR_IO);
    assert_int_equal(count_files(), before); /* no partial or temporary file left */
    /* saving over an existing file replaces it */
    assert_int_equal(tensor_save_safetensors(tmp_path("twice.safetensors"), ok, ts, 1), DDP_OK);
    assert_int_equal(tensor_save_safetensors(tmp_path("twice.safetensors"), ok, ts, 1), DDP_OK);
    assert_int_equal(count_files(), before + 1);
    tensor_release(t);
}

static void test_missing_files(void **state) {
    (void)state;
    char **names;
    tensor **ts;
    int n;
    tensor *t;
    assert_int_equal(tensor_load_safetensors(tmp_path("nope.safetensors"), &names, &ts, &n),
                     DDP_ERR_IO);
    assert_non_null(strstr(ddp_last_error(), "nope.safetensors"));
    assert_int_equal(tensor_load_npy(tmp_path("nope.npy"), &t), DDP_ERR_IO);
    assert_int_equal(tensor_load_npy(dir, &t), DDP_ERR_IO); /* a directory */
    assert_non_null(strstr(ddp_last_error(), "not a regular file"));
}

/* A save over something that is not a regular file is refused and leaves it as it was:
 * the rename into place would have replaced a FIFO or a device (/dev/null, as root) with a
 * plain file. No lock or temporary file is left beside it. */
static void test_save_refuses_non_regular(void **state) {
    (void)state;
    const int64_t s3[] = {3};
    tensor *t = make(DTYPE_FLOAT32, s3, 1);
    const char *fifo = tmp_path("pipe.npy");
    assert_int_equal(mkfifo(fifo, 0600), 0);
    const char *names[1] = {"w"};
    assert_int_equal(tensor_save_npy(fifo, t), DDP_ERR_IO);
    assert_non_null(strstr(ddp_last_error(), "not a regular file (a FIFO)"));
    assert_int_equal(tensor_save_safetensors(fifo, names, &t, 1), DDP_ERR_IO);
    assert_int_equal(tensor_save_npy(dir, t), DDP_ERR_IO);
    assert_non_null(strstr(ddp_last_error(), "not a regular file (a directory)"));
    struct stat st;
    assert_int_equal(stat(fifo, &st), 0);
    assert_true(S_ISFIFO(st.st_mode));
    char lock[4200];
    snprintf(lock, sizeof lock, "%s.lock", fifo);
    assert_int_not_equal(access(lock, F_OK), 0);
    unlink(fifo);
    tensor_release(t);
}

/* ---- hostile safetensors --------------------------------------------------------- */

/* A hostile header, how many (zero) data bytes follow it, and a word the load error must
 * hold. */
struct header_case {
    const char *header;
    size_t data_len;
    const char *word;
};

/* Safetensors headers that must be refused, in the order the loader checks them. */
static const struct header_case ST_BAD_HEADERS[] = {
    {"[1, 2, 3]", 0, "not a JSON object"},
    {"{\"a\": ", 0, "not a JSON object"},
    {"{} x", 0, "after the JSON header"},
    {"{\"a\": 5}", 0, "not a JSON object"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, "data_offsets"},
    {"{\"a\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4, "dtype \"F16\""},
    {"{\"a\":{\"dtype\":7,\"shape\":[2],\"data_offsets\":[0,4]}}", 4, "\"dtype\" (a string)"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],"
     "\"data_offsets\":[0,4]}}",
     4, "too large"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[0,9007199254740992],"
     "\"data_offsets\":[0,0]}}",
     0, "too large"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, "12 bytes"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8, "negative"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,8]}}", 8, "not a whole number"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],"
     "\"data_offsets\":[0,4]}}",
     4, "9 dims"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8, "outside"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}}", 8, "before it begins"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", 8, "two whole numbers"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
     "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
     12, "overlaps"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
     "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}",
     12, "belong to no tensor"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 12, "the file holds 12"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
     "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
     8, "appears twice"},
};

static void test_safetensors_corrupt(void **state) {
    (void)state;
    const char *p = tmp_path("bad.safetensors");
    unsigned char d[64] = {0};

    write_bytes(p, "\x10\x00\x00", 3);
    expect_st_error(p, "only 3 bytes");

    unsigned char big[16] = {0x00, 0x01, 0, 0, 0, 0, 0, 0, '{', '}'}; /* 256 > file */
    write_bytes(p, big, 10);
    expect_st_error(p, "truncated");

    unsigned char absurd[16] = {0, 0, 0, 0, 0, 0x01, 0, 0, '{', '}'}; /* 2^40 bytes */
    write_bytes(p, absurd, 10);
    expect_st_error(p, "100 MB");

    for (size_t i = 0; i < sizeof ST_BAD_HEADERS / sizeof ST_BAD_HEADERS[0]; i++) {
        write_st(p, ST_BAD_HEADERS[i].header, d, ST_BAD_HEADERS[i].data_len);
        expect_st_error(p, ST_BAD_HEADERS[i].word);
    }
}

/* ---- hostile .npy ---------------------------------------------------------------- */

/* .npy headers that must be refused. */
static const struct header_case NPY_BAD_HEADERS[] = {
    {"{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }\n", 16, "Fortran order"},
    {"{'descr': '<i4', 'fortran_order': False, 'shape': (2,), }\n", 8, "dtype '<i4'"},
    {"{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }\n", 8, "dtype '>f4'"},
    {"{'descr': '|O', 'fortran_order': False, 'shape': (2,), }\n", 16, "dtype '|O'"},
    {"{'descr': '<f4', 'fortran_order': False, 'shape': (-2,), }\n", 8, "negative"},
    {"{'descr': '<f4', 'fortran_order': False, 'shape': (1,1,1,1,1,1,1,1,1), }\n", 4, "more dims"},
    {"{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, "
     "4294967296, 4294967296), }\n",
     4, "too large"},
    {"{'descr': '<f4', 'fortran_order': False, "
     "'shape': (99999999999999999999,), }\n",
     4, "too large"},
    {"{'descr': '<f4', 'fortran_order': False, 'shape': (4,), }\n", 8, "truncated file"},
    {"{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }\n", 8,
     "needs 4 data bytes but the file has 8"},
    {"{'descr': '<f4', 'shape': (1,), }\n", 4, "lacks"},
    {"{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'x': 1}\n", 4, "unknown key"},
    {"{'descr': '<f4' 'fortran_order': False}\n", 4, "malformed"},
    {"[1, 2]\n", 4, "not a Python dict"},
    {"{'descr': '<f4', 'fortran_order': False, 'shape': (1,)} junk\n", 4, "after the header"},
};

static void test_npy_corrupt(void **state) {
    (void)state;
    const char *p = tmp_path("bad.npy");
    unsigned char d[64] = {0};
    write_bytes(p, "\x93NUM", 4);
    expect_npy_error(p, "only 4 bytes");
    write_bytes(p, "PK\x03\x04zipfile!", 12);
    expect_npy_error(p, "magic");
    write_bytes(p, "\x93NUMPY\x09\x00\x10\x00{}", 12);
    expect_npy_error(p, "version 9.0");
    write_bytes(p, "\x93NUMPY\x01\x00\xff\x00{}", 12);
    expect_npy_error(p, "truncated");

    for (size_t i = 0; i < sizeof NPY_BAD_HEADERS / sizeof NPY_BAD_HEADERS[0]; i++) {
        write_npy(p, NPY_BAD_HEADERS[i].header, d, NPY_BAD_HEADERS[i].data_len);
        expect_npy_error(p, NPY_BAD_HEADERS[i].word);
    }
}

/* ---- fuzz-ish: truncation at every byte, flipped header bytes --------------------- */

/* Loads `path` and accepts only success (everything released) or a format error. */
static void load_any(const char *path, bool npy) {
    ddp_status s;
    if (npy) {
        tensor *t = NULL;
        s = tensor_load_npy(path, &t);
        tensor_release(t);
    } else {
        char **names;
        tensor **ts;
        int n;
        s = tensor_load_safetensors(path, &names, &ts, &n);
        if (s == DDP_OK) free_loaded(names, ts, n);
    }
    if (s != DDP_OK && s != DDP_ERR_FORMAT)
        fail_msg("%s: status %d (%s)", path, s, ddp_last_error());
}

static void fuzz_file(const char *path, size_t header_end, bool npy) {
    size_t len;
    unsigned char *good = read_bytes(path, &len);
    const char *cut = tmp_path(npy ? "cut.npy" : "cut.safetensors");
    for (size_t k = 0; k < len; k++) { /* every proper prefix is truncated: must fail */
        write_bytes(cut, good, k);
        char **names;
        tensor **ts;
        tensor *t;
        int n;
        ddp_status s =
            npy ? tensor_load_npy(cut, &t) : tensor_load_safetensors(cut, &names, &ts, &n);
        if (s != DDP_ERR_FORMAT) fail_msg("prefix of %zu bytes: status %d", k, s);
    }
    static const unsigned char flips[] = {0x01, 0x02, 0x08, 0x20, 0x40, 0x80, 0xff};
    unsigned char *bad = malloc(len);
    assert_non_null(bad);
    for (size_t k = 0; k < header_end; k++)
        for (size_t f = 0; f < sizeof flips; f++) {
            memcpy(bad, good, len);
            bad[k] ^= flips[f];
            write_bytes(cut, bad, len);
            load_any(cut, npy);
        }
    free(bad);
    free(good);
}

static void test_fuzz_truncate_and_flip(void **state) {
    (void)state;
    const int64_t s23[] = {2, 3}, s2[] = {2};
    tensor *ts[3] = {make(DTYPE_FLOAT32, s23, 2), make(DTYPE_INT64, s2, 1),
                     make(DTYPE_BOOL, s2, 1)};
    const char *names[3] = {"w", "step", "mask"};
    const char *path = tmp_path("fuzz.safetensors");
    assert_int_equal(tensor_save_safetensors(path, names, ts, 3), DDP_OK);
    size_t len;
    unsigned char *buf = read_bytes(path, &len);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | buf[i];
    free(buf);
    fuzz_file(path, 8 + (size_t)hlen, false);

    const char *npath = tmp_path("fuzz.npy");
    assert_int_equal(tensor_save_npy(npath, ts[0]), DDP_OK);
    buf = read_bytes(npath, &len);
    size_t npy_header_end = 10 + (buf[8] | (size_t)buf[9] << 8);
    free(buf);
    fuzz_file(npath, npy_header_end, true);
    for (int i = 0; i < 3; i++) tensor_release(ts[i]);
}

/* ---- readers over memory, metadata, NUL names, the save lock ---------------------- */

/* The buffer readers give what the path readers give, and name the caller's label. */
static void test_buffer_readers(void **state) {
    (void)state;
    const int64_t s23[] = {2, 3}, s4[] = {4};
    tensor *ts[2] = {make(DTYPE_FLOAT32, s23, 2), make(DTYPE_INT64, s4, 1)};
    const char *names[2] = {"w", "steps"};
    const char *path = tmp_path("buf.safetensors");
    assert_int_equal(tensor_save_safetensors(path, names, ts, 2), DDP_OK);
    size_t len;
    unsigned char *bytes = read_bytes(path, &len);
    tensor_file f;
    assert_int_equal(tensor_read_safetensors_buffer(bytes, len, "<fuzz input>", &f), DDP_OK);
    assert_int_equal(f.n, 2);
    assert_string_equal(f.names[0], "w");
    assert_same(f.tensors[0], ts[0]);
    assert_same(f.tensors[1], ts[1]);
    tensor_file_free(&f);
    assert_int_equal(f.n, 0);
    for (size_t k = 0; k < len; k++) { /* every proper prefix fails cleanly */
        ddp_status s = tensor_read_safetensors_buffer(bytes, k, "<fuzz input>", &f);
        if (s != DDP_ERR_FORMAT) fail_msg("prefix of %zu bytes: status %d", k, s);
        assert_non_null(strstr(ddp_last_error(), "<fuzz input>"));
        assert_int_equal(f.n, 0);
        assert_null(f.tensors);
    }
    free(bytes);

    const char *npath = tmp_path("buf.npy");
    assert_int_equal(tensor_save_npy(npath, ts[0]), DDP_OK);
    bytes = read_bytes(npath, &len);
    tensor *t = NULL;
    assert_int_equal(tensor_load_npy_buffer(bytes, len, "<npy bytes>", &t), DDP_OK);
    assert_same(t, ts[0]);
    tensor_release(t);
    assert_int_equal(tensor_load_npy_buffer(bytes, len - 1, "<npy bytes>", &t), DDP_ERR_FORMAT);
    assert_non_null(strstr(ddp_last_error(), "<npy bytes>"));
    assert_null(t);
    free(bytes);
    for (int i = 0; i < 2; i++) tensor_release(ts[i]);
}

/* Metadata strings go into the header and come back in order, beside "format": "pt". */
static void test_metadata_round_trip(void **state) {
    (void)state;
    const int64_t s2[] = {2};
    tensor *t = make(DTYPE_FLOAT32, s2, 1);
    const char *names[1] = {"w"};
    const char *keys[2] = {"param_groups", "ddplab.keys"};
    const char *values[2] = {"[{\"lr\":0.1}]", "[\"w\",\"param_groups\"]"};
    const char *path = tmp_path("meta.safetensors");
    assert_int_equal(tensor_save_safetensors_meta(path, names, &t, 1, keys, values, 2), DDP_OK);
    tensor_file f;
    assert_int_equal(tensor_read_safetensors(path, &f), DDP_OK);
    assert_int_equal(f.n_meta, 3);
    assert_string_equal(f.meta_keys[0], "format");
    assert_string_equal(f.meta_values[0], "pt");
    assert_string_equal(f.meta_keys[1], "param_groups");
    assert_string_equal(f.meta_values[1], values[0]);
    assert_string_equal(f.meta_values[2], values[1]);
    tensor_file_free(&f);
    const char *dup[2] = {"a", "a"};
    assert_int_equal(tensor_save_safetensors_meta(path, names, &t, 1, dup, values, 2), DDP_ERR_ARG);
    assert_non_null(strstr(ddp_last_error(), "'a' appears twice"));
    tensor_release(t);
}

/* Issue 10, defect 13: a NUL in a header name would be cut ("a\0b" read as "a"); the
 * reader refuses it, escaped or raw, and leaves an escaped backslash alone. */
static void test_nul_in_header_refused(void **state) {
    (void)state;
    const char *p = tmp_path("nul.safetensors");
    float four[1] = {1};
    write_st(p, "{\"a\\u0000b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", four,
             4);
    expect_st_error(p, "NUL character");
    write_st(p,
             "{\"__metadata__\":{\"x\":\"1\\u0000\"},\"a\":{\"dtype\":\"F32\",\"shape\":[1],"
             "\"data_offsets\":[0,4]}}",
             four, 4);
    expect_st_error(p, "NUL character");
    static const char raw[] = "{\"a\0b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}";
    unsigned char buf[128];
    size_t hlen = sizeof raw - 1;
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)hlen >> (8 * i));
    memcpy(buf + 8, raw, hlen);
    memcpy(buf + 8 + hlen, four, 4);
    write_bytes(p, buf, 8 + hlen + 4);
    expect_st_error(p, "NUL character");
    /* "\\u0000" is a backslash followed by text, not a NUL: accepted and kept */
    write_st(p, "{\"a\\\\u0000b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", four,
             4);
    tensor_file f;
    assert_int_equal(tensor_read_safetensors(p, &f), DDP_OK);
    assert_string_equal(f.names[0], "a\\u0000b");
    tensor_file_free(&f);
}

/* A save that finds the lock of a live process fails with the explanation and leaves the
 * old file alone; a lock left by a dead process is taken over and its temporary removed. */
static void test_save_lock(void **state) {
    (void)state;
    const int64_t s2[] = {2}, s3[] = {3};
    tensor *old = make(DTYPE_FLOAT32, s2, 1), *fresh = make(DTYPE_FLOAT32, s3, 1);
    const char *names[1] = {"w"};
    char path[512], lock[600], tmp[700];
    snprintf(path, sizeof path, "%s", tmp_path("locked.safetensors"));
    snprintf(lock, sizeof lock, "%s.lock", path);
    assert_int_equal(tensor_save_safetensors(path, names, &old, 1), DDP_OK);
    int before = count_files();

    FILE *f = fopen(lock, "w"); /* held by our parent, alive, "rank 3", writing */
    assert_non_null(f);
    snprintf(tmp, sizeof tmp, "%s.%ld.0.tmp", path, (long)getppid());
    fprintf(f, "%ld 3\n%s\n", (long)getppid(), tmp);
    fclose(f);
    write_bytes(tmp, "being written", 13);
    assert_int_equal(tensor_save_safetensors(path, names, &fresh, 1), DDP_ERR_STATE);
    assert_non_null(strstr(ddp_last_error(), "rank 3 (pid"));
    assert_non_null(strstr(ddp_last_error(), "is saving the same file at this moment"));
    assert_non_null(strstr(ddp_last_error(), "if dist.get_rank() == 0 then torch.save"));
    assert_int_equal(tensor_save_npy(path, fresh), DDP_ERR_STATE); /* the same for .npy */
    assert_int_equal(access(lock, F_OK), 0);                       /* not ours to remove */
    assert_int_equal(access(tmp, F_OK), 0);
    char **got_names;
    tensor **got;
    int n;
    assert_int_equal(tensor_load_safetensors(path, &got_names, &got, &n), DDP_OK);
    assert_same(got[0], old); /* the old checkpoint is intact */
    free_loaded(got_names, got, n);
    /* the same live pid without its temporary file: a reused pid, not a writer */
    unlink(tmp);
    assert_int_equal(tensor_save_safetensors(path, names, &old, 1), DDP_OK);
    assert_int_equal(access(lock, F_OK), -1);

    pid_t child = fork(); /* a process that is gone by the time we save */
    assert_true(child >= 0);
    if (child == 0) _exit(0);
    assert_int_equal(waitpid(child, NULL, 0), child);
    snprintf(tmp, sizeof tmp, "%s.%ld.0.tmp", path, (long)child);
    write_bytes(tmp, "half a checkpoint", 17);
    f = fopen(lock, "w");
    assert_non_null(f);
    fprintf(f, "%ld 1\n%s\n", (long)child, tmp);
    fclose(f);
    assert_int_equal(tensor_save_safetensors(path, names, &fresh, 1), DDP_OK);
    assert_int_equal(access(lock, F_OK), -1);
    assert_int_equal(access(tmp, F_OK), -1);
    assert_int_equal(count_files(), before); /* the lock and the stale temporary gone */
    assert_int_equal(tensor_load_safetensors(path, &got_names, &got, &n), DDP_OK);
    assert_same(got[0], fresh);
    free_loaded(got_names, got, n);
    tensor_release(old);
    tensor_release(fresh);
}

static int make_dir(void **state) {
    (void)state;
    snprintf(dir, sizeof dir, "%s/ddp_tensor_io_XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    return mkdtemp(dir) ? 0 : -1;
}

static int remove_dir(void **state) {
    (void)state;
    DIR *d = opendir(dir);
    if (!d) return -1;
    char path[600];
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        unlink(path);
    }
    closedir(d);
    return rmdir(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_safetensors_round_trip),
        cmocka_unit_test(test_safetensors_layout),
        cmocka_unit_test(test_non_contiguous_saved_in_logical_order),
        cmocka_unit_test(test_npy_round_trip),
        cmocka_unit_test(test_npy_reads_other_spellings),
        cmocka_unit_test(test_bool_bytes_normalised),
        cmocka_unit_test(test_save_errors),
        cmocka_unit_test(test_missing_files),
        cmocka_unit_test(test_save_refuses_non_regular),
        cmocka_unit_test(test_safetensors_corrupt),
        cmocka_unit_test(test_npy_corrupt),
        cmocka_unit_test(test_fuzz_truncate_and_flip),
        cmocka_unit_test(test_buffer_readers),
        cmocka_unit_test(test_metadata_round_trip),
        cmocka_unit_test(test_nul_in_header_refused),
        cmocka_unit_test(test_save_lock),
    };
    return cmocka_run_group_tests(tests, make_dir, remove_dir);
}
