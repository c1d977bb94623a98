/* test_tensor_io_alloc.c — every path out of a failed allocation in the file writers and
 * readers: a save of a .safetensors file (three tensors, one of them a view, and
 * metadata) and of an .npy file, then a load of each, run again and again with the k-th
 * allocation failing (the seam in base/alloc.h; cJSON's allocations go through it too),
 * for every k until the walk needs no more. Each call either succeeds, giving back what
 * was saved, or fails with DDP_ERR_NOMEM and "out of memory"; a failed save leaves no
 * file under the target's name, no temporary file and no lock behind. Leaks are
 * LeakSanitizer's to find (the san label runs this in the sanitizer build too). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/alloc.h"
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

/* One call: fails the test for any outcome but OK or a clear NOMEM. */
static bool step_ok(ddp_status s, int *nomem) {
    if (s == DDP_OK) return true;
    if (s != DDP_ERR_NOMEM) fail_msg("status %d: %s", (int)s, ddp_last_error());
    if (!strstr(ddp_last_error(), "out of memory"))
        fail_msg("NOMEM without \"out of memory\": %s", ddp_last_error());
    (*nomem)++;
    return false;
}

/* How many entries of the folder are not one of the two saved files. */
static int stray_files(void) {
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        n += e->d_name[0] != '.' && strcmp(e->d_name, "m.safetensors") != 0 &&
             strcmp(e->d_name, "t.npy") != 0;
    closedir(d);
    return n;
}

static bool exists(const char *path) {
    return access(path, F_OK) == 0;
}

/* True when a and b have the same dtype, shape and values. */
static bool same(const tensor *a, const tensor *b) {
    if (a->dtype != b->dtype || !tensor_same_shape(a, b)) return false;
    for (int64_t i = 0; i < tensor_numel(a); i++)
        if (tensor_get(a, i) != tensor_get(b, i)) return false;
    return true;
}

typedef struct {
    tensor *t[3]; /* float32 (2, 3), its transpose (a view), int64 (4) */
} fixture;

static void fixture_make(fixture *fx) {
    int64_t s23[2] = {2, 3};
    dtype i64 = DTYPE_INT64;
    assert_int_equal(tensor_full(s23, 2, DTYPE_FLOAT32, DEVICE_CPU_VALUE, 0.0, &fx->t[0]), DDP_OK);
    float *f = tensor_data(fx->t[0]);
    for (int i = 0; i < 6; i++) f[i] = 0.5f * (float)i - 1.0f;
    assert_int_equal(tensor_transpose(fx->t[0], 0, 1, &fx->t[1]), DDP_OK);
    assert_int_equal(tensor_arange(-2, 2, 1, &i64, &fx->t[2]), DDP_OK);
}

static void fixture_free(fixture *fx) {
    for (int i = 0; i < 3; i++) tensor_release(fx->t[i]);
}

static const char *const names[3] = {"weight", "weight_t", "steps"};
static const char *const meta_keys[2] = {"param_groups", "note"};
static const char *const meta_values[2] = {"[{\"lr\": 0.01}]", "saved by test_tensor_io_alloc"};

/* Saves both files; returns how many saves failed for memory. */
static int run_saves(const fixture *fx) {
    int nomem = 0;
    const char *st = tmp_path("m.safetensors"), *npy = tmp_path("t.npy");
    unlink(st);
    unlink(npy);
    if (!step_ok(tensor_save_safetensors_meta(st, names, fx->t, 3, meta_keys, meta_values, 2),
                 &nomem))
        assert_false(exists(st)); /* nothing half-written under the target's name */
    else if (!step_ok(tensor_save_npy(npy, fx->t[1]), &nomem))
        assert_false(exists(npy));
    assert_int_equal(stray_files(), 0); /* no temporary file, no lock */
    return nomem;
}

/* Loads both files (saved with memory to spare) and checks what came back when a load
 * succeeded; returns how many loads failed for memory. */
static int run_loads(const fixture *fx) {
    int nomem = 0;
    tensor_file f;
    tensor *t = NULL;
    if (step_ok(tensor_read_safetensors(tmp_path("m.safetensors"), &f), &nomem)) {
        assert_int_equal(f.n, 3);
        for (int i = 0; i < 3; i++) {
            assert_string_equal(f.names[i], names[i]);
            assert_true(same(f.tensors[i], fx->t[i]));
        }
        assert_int_equal(f.n_meta, 3); /* "format": "pt" first */
        assert_string_equal(f.meta_values[1], meta_values[0]);
        tensor_file_free(&f);
        if (step_ok(tensor_load_npy(tmp_path("t.npy"), &t), &nomem)) assert_true(same(t, fx->t[1]));
        tensor_release(t);
    } else {
        assert_int_equal(f.n, 0); /* empty on failure */
        assert_null(f.names);
    }
    return nomem;
}

/* Runs `run` once to count its allocations, then once with each of them failing: each
 * time exactly one call must fail. Returns how many allocations the walk covered. */
static long walk(int (*run)(const fixture *), const fixture *fx) {
    ddp_alloc_fail_at(0);
    assert_int_equal(run(fx), 0);
    long needed = ddp_alloc_count();
    for (long k = 1; k <= needed; k++) {
        ddp_alloc_fail_at(k);
        int failed = run(fx);
        ddp_alloc_fail_at(0);
        if (failed != 1) fail_msg("allocation %ld of %ld: %d calls failed", k, needed, failed);
    }
    ddp_alloc_fail_at(needed + 1); /* past the end: nothing fails */
    assert_int_equal(run(fx), 0);
    ddp_alloc_fail_at(0);
    return needed;
}

static void test_every_allocation_of_a_save_can_fail(void **state) {
    (void)state;
    fixture fx;
    fixture_make(&fx);
    long n = walk(run_saves, &fx);
    print_message("saves: %ld allocations through the seam\n", n);
    assert_true(n > 20); /* cJSON's, mostly */
    fixture_free(&fx);
}

static void test_every_allocation_of_a_load_can_fail(void **state) {
    (void)state;
    fixture fx;
    fixture_make(&fx);
    assert_int_equal(run_saves(&fx), 0);
    long n = walk(run_loads, &fx);
    print_message("loads: %ld allocations through the seam\n", n);
    assert_true(n > 20);
    fixture_free(&fx);
}

static int make_dir(void **state) {
    (void)state;
    snprintf(dir, sizeof dir, "%s/ddp_tensor_io_alloc_XXXXXX",
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
        cmocka_unit_test(test_every_allocation_of_a_save_can_fail),
        cmocka_unit_test(test_every_allocation_of_a_load_can_fail),
    };
    return cmocka_run_group_tests(tests, make_dir, remove_dir);
}
