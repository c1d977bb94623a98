/* test_tensor_core.c — the tensor object: dtypes and devices, life cycle and refcounts,
 * inspection, views sharing storage, copies, fill, and the error messages of each. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <string.h>

#include <cmocka.h>

#include "build_config.h"
#include "support/support_tensor_checks.h"
#include "tensor/device.h"
#include "tensor/tensor.h"

/* What a CUDA request meets on a machine without a GPU, in this build. */
#if DDP_HAVE_CUDA
#define NO_GPU_MESSAGE "cuda: no GPU is visible (torch.cuda.is_available() is false)"
#else
#define NO_GPU_MESSAGE "this build has no CUDA support"
#endif

/* A float32 tensor 0, 1, 2, ... of the given shape. */
static tensor *iota(const int64_t *sizes, int ndim) {
    tensor *t = NULL;
    OK(tensor_empty(sizes, ndim, DTYPE_FLOAT32, DEVICE_CPU_VALUE, &t));
    for (int64_t i = 0; i < tensor_numel(t); i++) tensor_set(t, i, (double)i);
    return t;
}

static void test_dtypes(void **state) {
    (void)state;
    assert_int_equal(dtype_size(DTYPE_FLOAT32), 4);
    assert_int_equal(dtype_size(DTYPE_FLOAT64), 8);
    assert_int_equal(dtype_size(DTYPE_INT64), 8);
    assert_int_equal(dtype_size(DTYPE_BOOL), 1);
    assert_string_equal(dtype_name(DTYPE_FLOAT64), "float64");
    dtype dt;
    assert_true(dtype_parse("double", &dt));
    assert_int_equal(dt, DTYPE_FLOAT64);
    assert_true(dtype_parse("long", &dt));
    assert_int_equal(dt, DTYPE_INT64);
    assert_true(dtype_parse("float", &dt));
    assert_int_equal(dt, DTYPE_FLOAT32);
    assert_false(dtype_parse("complex64", &dt));
    assert_true(dtype_is_float(DTYPE_FLOAT32));
    assert_false(dtype_is_float(DTYPE_INT64));
    assert_int_equal(dtype_promote(DTYPE_INT64, DTYPE_FLOAT32), DTYPE_FLOAT32);
    assert_int_equal(dtype_promote(DTYPE_FLOAT32, DTYPE_FLOAT64), DTYPE_FLOAT64);
    assert_int_equal(dtype_promote(DTYPE_BOOL, DTYPE_INT64), DTYPE_INT64);
    assert_int_equal(dtype_promote(DTYPE_INT64, DTYPE_INT64), DTYPE_INT64);
}

static void test_devices(void **state) {
    (void)state;
    device d;
    char buf[16];
    OK(device_parse("cpu", &d));
    assert_int_equal(d.type, DEVICE_CPU);
    OK(device_parse("cuda:3", &d));
    assert_int_equal(d.type, DEVICE_CUDA);
    assert_int_equal(d.index, 3);
    assert_string_equal(device_name(d, buf, sizeof buf), "cuda:3");
    OK(device_parse("cuda", &d));
    assert_int_equal(d.index, DEVICE_INDEX_CURRENT);
    assert_string_equal(device_name(d, buf, sizeof buf), "cuda");
    ERR_CONTAINS(device_parse("gpu", &d), DDP_ERR_ARG, "unknown device 'gpu'");
    ERR_CONTAINS(device_parse("cuda:x", &d), DDP_ERR_ARG, "cuda:x");
    assert_true(device_equal(DEVICE_CPU_VALUE, DEVICE_CPU_VALUE));
    assert_false(device_equal((device){DEVICE_CUDA, 0}, (device){DEVICE_CUDA, 1}));
    int64_t sizes[1] = {3};
    tensor *t = (tensor *)1;
    if (cuda_device_count() > 0) return; /* tests/gpu covers creation on a GPU */
    ERR_CONTAINS(tensor_empty(sizes, 1, DTYPE_FLOAT32, (device){DEVICE_CUDA, 0}, &t),
                 DDP_ERR_UNSUPPORTED, NO_GPU_MESSAGE);
    assert_null(t);
    t = (tensor *)1;
    ERR_CONTAINS(
        tensor_zeros(sizes, 1, DTYPE_FLOAT32, (device){DEVICE_CUDA, DEVICE_INDEX_CURRENT}, &t),
        DDP_ERR_UNSUPPORTED, NO_GPU_MESSAGE);
    assert_null(t);
}

static void test_create_and_errors(void **state) {
    (void)state;
    int64_t sizes[2] = {3, 4};
    tensor *t;
    OK(tensor_zeros(sizes, 2, DTYPE_FLOAT64, DEVICE_CPU_VALUE, &t));
    assert_int_equal(tensor_numel(t), 12);
    assert_int_equal(t->strides[0], 4);
    assert_int_equal(t->strides[1], 1);
    assert_true(tensor_is_contiguous(t));
    assert_int_equal(t->storage->device.type, DEVICE_CPU);
    assert_int_equal((uintptr_t)tensor_data(t) % 64, 0);
    for (int i = 0; i < 12; i++) assert_true(tensor_get(t, i) == 0.0);
    tensor_release(t);

    OK(tensor_full(sizes, 2, DTYPE_INT64, DEVICE_CPU_VALUE, 7, &t));
    assert_int_equal(tensor_get_int64(t, 11), 7);
    tensor_release(t);

    float data[6] = {1, 2, 3, 4, 5, 6};
    int64_t s23[2] = {2, 3};
    OK(tensor_from_data(data, s23, 2, DTYPE_FLOAT32, &t));
    assert_true(tensor_get(t, 4) == 5.0);
    char buf[64];
    assert_string_equal(tensor_shape_str(t, buf, sizeof buf), "(2x3)");
    tensor *like;
    OK(tensor_zeros_like(t, &like));
    assert_true(tensor_same_shape(t, like));
    assert_int_equal(like->dtype, DTYPE_FLOAT32);
    tensor_release(like);
    tensor_release(t);

    OK(tensor_scalar(2.5, DTYPE_FLOAT32, &t));
    assert_int_equal(t->ndim, 0);
    assert_int_equal(tensor_numel(t), 1);
    assert_string_equal(tensor_shape_str(t, buf, sizeof buf), "()");
    double v;
    OK(tensor_item(t, &v));
    assert_true(v == 2.5);
    tensor_release(t);

    int64_t bad[2] = {3, -1};
    t = (tensor *)1;
    ERR_CONTAINS(tensor_empty(bad, 2, DTYPE_FLOAT32, DEVICE_CPU_VALUE, &t), DDP_ERR_ARG,
                 "negative dimension -1 in size (3x-1)");
    assert_null(strstr(ddp_last_error(), "empty")); /* zeros/ones/rand use it too */
    assert_null(t);
    int64_t many[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
    ERR_CONTAINS(tensor_empty(many, 9, DTYPE_FLOAT32, DEVICE_CPU_VALUE, &t), DDP_ERR_ARG,
                 "at most 8");
    int64_t huge[3] = {1 << 20, 1 << 20, 1 << 20};
    ERR_CONTAINS(tensor_empty(huge, 3, DTYPE_FLOAT32, DEVICE_CPU_VALUE, &t), DDP_ERR_NOMEM,
                 "too large");
    int64_t overflow[3] = {INT64_MAX / 2, 4, 4};
    ERR_CONTAINS(tensor_empty(overflow, 3, DTYPE_FLOAT32, DEVICE_CPU_VALUE, &t), DDP_ERR_NOMEM,
                 "too large");
    int64_t empty[2] = {0, INT64_MAX / 2};
    OK(tensor_empty(empty, 2, DTYPE_FLOAT32, DEVICE_CPU_VALUE, &t));
    assert_int_equal(tensor_numel(t), 0);
    tensor_release(t);
}

static int destroyed;
static void count_destroy(grad_node_header *node) {
    (void)node;
    destroyed++;
}

static void test_refcounts_and_autograd_fields(void **state) {
    (void)state;
    int64_t sizes[1] = {4};
    tensor *t = iota(sizes, 1), *g = iota(sizes, 1);
    grad_node_header node = {2, count_destroy};
    t->grad = g; /* owned by t now */
    t->grad_fn = &node;
    assert_ptr_equal(tensor_retain(t), t);
    assert_int_equal(t->refcount, 2);
    tensor_release(t);
    assert_int_equal(destroyed, 0);
    tensor_release(t);
    assert_int_equal(node.refcount, 1); /* another holder remains: not destroyed */
    assert_int_equal(destroyed, 0);

    tensor *u = iota(sizes, 1);
    u->grad_fn = &node;
    tensor_release(u);
    assert_int_equal(destroyed, 1);
    tensor_release(NULL);
    assert_null(tensor_retain(NULL));

    /* a view keeps the storage alive after the base goes */
    tensor *base = iota(sizes, 1), *v;
    OK(tensor_narrow(base, 0, 1, 2, &v));
    assert_int_equal(base->storage->refcount, 2);
    tensor_release(base);
    assert_true(tensor_get(v, 1) == 2.0);
    tensor_release(v);
}

static void test_item_and_dims(void **state) {
    (void)state;
    int64_t sizes[2] = {2, 3};
    tensor *t = iota(sizes, 2);
    double v;
    ERR_CONTAINS(tensor_item(t, &v), DDP_ERR_ARG, "6 elements");
    int d;
    OK(tensor_wrap_dim("sum", -1, 2, &d));
    assert_int_equal(d, 1);
    ERR_CONTAINS(tensor_wrap_dim("sum", 2, 2, &d), DDP_ERR_ARG, "sum: dimension 2 is out of range");
    ERR_CONTAINS(tensor_wrap_dim("sum", -3, 2, &d), DDP_ERR_ARG, "[-2, 1]");
    OK(tensor_wrap_dim("sum", -1, 0, &d));
    assert_int_equal(d, 0);
    OK(tensor_wrap_dim("sum", 0, 0, &d));
    ERR_CONTAINS(tensor_wrap_dim("sum", 1, 0, &d), DDP_ERR_ARG, "out of range");
    tensor_release(t);
}

static void test_views_share_storage(void **state) {
    (void)state;
    int64_t sizes[2] = {3, 4};
    tensor *t = iota(sizes, 2), *row, *col, *n;
    OK(tensor_select(t, 0, 1, &row));
    assert_int_equal(row->ndim, 1);
    assert_true(tensor_get(row, 2) == 6.0);
    OK(tensor_select(t, -1, -1, &col));
    assert_int_equal(col->strides[0], 4);
    assert_true(tensor_get(col, 2) == 11.0);
    tensor_set(row, 0, 100);
    assert_true(tensor_get(t, 4) == 100.0); /* writing through a view is seen */
    OK(tensor_narrow(t, 1, 1, 2, &n));
    assert_int_equal(n->sizes[1], 2);
    assert_false(tensor_is_contiguous(n));
    assert_true(tensor_get(n, 0) == 1.0);
    assert_true(tensor_get(n, 2) == 5.0);
    assert_ptr_equal(n->storage, t->storage);
    tensor *bad = (tensor *)1;
    ERR_CONTAINS(tensor_narrow(t, 1, 3, 2, &bad), DDP_ERR_ARG, "exceeds size 4");
    assert_null(bad);
    ERR_CONTAINS(tensor_select(t, 0, 3, &bad), DDP_ERR_ARG, "index 3 is out of range");
    tensor_release(row);
    tensor_release(col);
    tensor_release(n);
    tensor_release(t);
}

static void test_transpose_permute_expand(void **state) {
    (void)state;
    int64_t sizes[3] = {2, 3, 4};
    tensor *t = iota(sizes, 3), *tt, *p, *u, *s, *e;
    OK(tensor_transpose(t, 0, 2, &tt));
    assert_int_equal(tt->sizes[0], 4);
    assert_int_equal(tt->strides[0], 1);
    assert_int_equal(tt->strides[2], 12);
    assert_false(tensor_is_contiguous(tt));
    /* element [1][2][0] of the transpose is element [0][2][1] of t = 9 */
    assert_true(tensor_get(tt, 1 * 6 + 2 * 2 + 0) == 9.0);
    int64_t perm[3] = {1, 2, 0};
    OK(tensor_permute(t, perm, 3, &p));
    assert_int_equal(p->sizes[0], 3);
    assert_int_equal(p->sizes[2], 2);
    assert_int_equal(p->strides[2], 12);
    int64_t dup[3] = {0, 0, 1};
    tensor *bad;
    ERR_CONTAINS(tensor_permute(t, dup, 3, &bad), DDP_ERR_ARG, "appears twice");
    ERR_CONTAINS(tensor_permute(t, dup, 2, &bad), DDP_ERR_ARG, "2 dims given");

    OK(tensor_unsqueeze(t, 1, &u));
    assert_int_equal(u->ndim, 4);
    assert_int_equal(u->sizes[1], 1);
    OK(tensor_squeeze(u, NULL, &s));
    assert_true(tensor_same_shape(s, t));
    tensor_release(s);
    int64_t d0 = 0;
    OK(tensor_squeeze(u, &d0, &s)); /* size 2: unchanged, as in PyTorch */
    assert_int_equal(s->ndim, 4);
    tensor_release(s);
    int64_t dm = -1;
    OK(tensor_unsqueeze(t, -1, &s));
    assert_int_equal(s->sizes[3], 1);
    tensor *s2;
    OK(tensor_squeeze(s, &dm, &s2));
    assert_int_equal(s2->ndim, 3);
    tensor_release(s2);
    tensor_release(s);

    int64_t csz[2] = {3, 1};
    tensor *c = iota(csz, 2);
    int64_t esz[3] = {2, -1, 5};
    OK(tensor_expand(c, esz, 3, &e));
    assert_int_equal(e->sizes[0], 2);
    assert_int_equal(e->sizes[1], 3);
    assert_int_equal(e->sizes[2], 5);
    assert_int_equal(e->strides[0], 0);
    assert_int_equal(e->strides[2], 0);
    assert_true(tensor_get(e, 5 * 3 + 5 + 4) == 1.0); /* [1][1][4] -> c[1] */
    int64_t ebad[2] = {3, 4};
    int64_t three[1] = {3};
    tensor *c2 = iota(three, 1);
    ERR_CONTAINS(tensor_expand(c2, ebad, 2, &bad), DDP_ERR_ARG, "must match");
    tensor_release(c2);
    tensor_release(e);
    tensor_release(c);
    tensor_release(u);
    tensor_release(p);
    tensor_release(tt);
    tensor_release(t);
}

static void test_view_reshape_flatten(void **state) {
    (void)state;
    int64_t sizes[2] = {4, 6};
    tensor *t = iota(sizes, 2), *v, *r, *tt, *f;
    int64_t vs[3] = {2, -1, 3};
    OK(tensor_view(t, vs, 3, &v));
    assert_int_equal(v->sizes[1], 4);
    assert_ptr_equal(v->storage, t->storage);
    int64_t wrong[2] = {5, 5};
    tensor *bad;
    ERR_CONTAINS(tensor_view(t, wrong, 2, &bad), DDP_ERR_ARG,
                 "invalid for a tensor of shape (4x6)");
    int64_t two[2] = {-1, -1};
    ERR_CONTAINS(tensor_view(t, two, 2, &bad), DDP_ERR_ARG, "only one size may be -1");

    OK(tensor_transpose(t, 0, 1, &tt));
    int64_t flat[1] = {24};
    ERR_CONTAINS(tensor_view(tt, flat, 1, &bad), DDP_ERR_ARG, "use reshape");
    OK(tensor_reshape(tt, flat, 1, &r));
    assert_ptr_not_equal(r->storage, t->storage);
    assert_true(tensor_get(r, 1) == 6.0); /* tt[0][1] = t[1][0] */
    tensor_release(r);
    /* a view of a transposed tensor that splits a dim is still possible */
    int64_t split[3] = {3, 2, 4};
    OK(tensor_view(tt, split, 3, &r));
    assert_ptr_equal(r->storage, t->storage);
    assert_true(tensor_get(r, 1 * 8 + 0 * 4 + 2) == tensor_get(tt, 2 * 4 + 2));
    tensor_release(r);

    OK(tensor_flatten(v, 0, -1, &f));
    assert_int_equal(f->ndim, 1);
    assert_int_equal(f->sizes[0], 24);
    tensor_release(f);
    OK(tensor_flatten(v, 1, 2, &f));
    assert_int_equal(f->ndim, 2);
    assert_int_equal(f->sizes[1], 12);
    tensor_release(f);
    ERR_CONTAINS(tensor_flatten(v, 2, 1, &bad), DDP_ERR_ARG, "start_dim 2 comes after");
    tensor_release(tt);
    tensor_release(v);
    tensor_release(t);
}

static void test_copies(void **state) {
    (void)state;
    int64_t sizes[2] = {3, 4};
    tensor *t = iota(sizes, 2), *c, *tt, *cc, *cl;
    OK(tensor_contiguous(t, &c));
    assert_ptr_equal(c, t); /* already contiguous: the same tensor */
    tensor_release(c);
    OK(tensor_transpose(t, 0, 1, &tt));
    OK(tensor_contiguous(tt, &cc));
    assert_ptr_not_equal(cc, tt);
    assert_true(tensor_is_contiguous(cc));
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 3; j++) assert_true(tensor_get(cc, i * 3 + j) == i + 4 * j);
    OK(tensor_clone(t, &cl));
    assert_ptr_not_equal(cl->storage, t->storage);
    tensor_set(cl, 0, -5);
    assert_true(tensor_get(t, 0) == 0.0);

    /* copy_ broadcasts and converts */
    tensor *dst, *row;
    OK(tensor_zeros(sizes, 2, DTYPE_INT64, DEVICE_CPU_VALUE, &dst));
    int64_t rs[1] = {4};
    OK(tensor_empty(rs, 1, DTYPE_FLOAT64, DEVICE_CPU_VALUE, &row));
    for (int i = 0; i < 4; i++) tensor_set(row, i, i + 0.75);
    OK(tensor_copy_(dst, row));
    assert_int_equal(tensor_get_int64(dst, 9), 1); /* 1.75 truncates to 1 */
    int64_t bs[1] = {5};
    tensor *bad_src;
    OK(tensor_zeros(bs, 1, DTYPE_FLOAT32, DEVICE_CPU_VALUE, &bad_src));
    ERR_CONTAINS(tensor_copy_(dst, bad_src), DDP_ERR_ARG, "(5) cannot be broadcast to shape (3x4)");
    /* copy into a transposed view */
    OK(tensor_copy_(tt, cc));
    assert_true(tensor_get(t, 5) == 5.0);

    tensor *as64;
    OK(tensor_to_dtype(t, DTYPE_FLOAT64, &as64));
    assert_int_equal(as64->dtype, DTYPE_FLOAT64);
    assert_true(tensor_get(as64, 7) == 7.0);
    tensor *same;
    OK(tensor_to_dtype(t, DTYPE_FLOAT32, &same));
    assert_ptr_equal(same, t);
    tensor_release(same);

    OK(tensor_fill_(tt, 2.5)); /* through a view */
    assert_true(tensor_get(t, 11) == 2.5);
    tensor *b;
    OK(tensor_zeros(sizes, 2, DTYPE_BOOL, DEVICE_CPU_VALUE, &b));
    OK(tensor_copy_(b, t));
    assert_true(tensor_get(b, 3) == 1.0);
    tensor_release(b);
    tensor_release(as64);
    tensor_release(bad_src);
    tensor_release(row);
    tensor_release(dst);
    tensor_release(cl);
    tensor_release(cc);
    tensor_release(tt);
    tensor_release(t);
}

/* Large blocks are reused after release: a reused block must still give zeros from
 * tensor_zeros, and live tensors never share one. */
static void test_large_blocks_reused_safely(void **state) {
    (void)state;
    int64_t big[2] = {512, 1024};
    for (int round = 0; round < 3; round++) {
        tensor *a, *b, *z;
        OK(tensor_full(big, 2, DTYPE_FLOAT32, DEVICE_CPU_VALUE, 7, &a));
        OK(tensor_full(big, 2, DTYPE_FLOAT32, DEVICE_CPU_VALUE, 3, &b));
        assert_ptr_not_equal(a->storage, b->storage);
        tensor_release(a);
        OK(tensor_zeros(big, 2, DTYPE_FLOAT32, DEVICE_CPU_VALUE, &z));
        assert_true(tensor_get(z, 0) == 0.0 && tensor_get(z, 512 * 1024 - 1) == 0.0);
        assert_true(tensor_get(b, 12345) == 3.0);
        assert_ptr_not_equal(z->storage, b->storage);
        tensor_release(z);
        tensor_release(b);
    }
}

static void test_ranges(void **state) {
    (void)state;
    tensor *t;
    OK(tensor_arange(0, 5, 1, NULL, &t));
    assert_int_equal(t->dtype, DTYPE_INT64);
    assert_int_equal(t->sizes[0], 5);
    assert_int_equal(tensor_get_int64(t, 4), 4);
    tensor_release(t);
    OK(tensor_arange(1, 2, 0.25, NULL, &t));
    assert_int_equal(t->dtype, DTYPE_FLOAT32);
    assert_int_equal(t->sizes[0], 4);
    assert_true(tensor_get(t, 3) == 1.75);
    tensor_release(t);
    OK(tensor_arange(5, 0, -2, NULL, &t)); /* 5, 3, 1 */
    assert_int_equal(t->sizes[0], 3);
    assert_int_equal(tensor_get_int64(t, 2), 1);
    tensor_release(t);
    dtype f64 = DTYPE_FLOAT64;
    OK(tensor_arange(0, 3, 1, &f64, &t));
    assert_int_equal(t->dtype, DTYPE_FLOAT64);
    tensor_release(t);
    ERR_CONTAINS(tensor_arange(0, 3, 0, NULL, &t), DDP_ERR_ARG, "step must be a non-zero");
    ERR_CONTAINS(tensor_arange(0, 3, -1, NULL, &t), DDP_ERR_ARG, "sign is wrong");

    OK(tensor_linspace(0, 1, 5, DTYPE_FLOAT32, &t));
    assert_int_equal(t->sizes[0], 5);
    assert_true(tensor_get(t, 0) == 0.0 && tensor_get(t, 1) == 0.25 && tensor_get(t, 4) == 1.0);
    tensor_release(t);
    OK(tensor_linspace(-1, 1, 1, DTYPE_FLOAT64, &t));
    assert_true(tensor_get(t, 0) == -1.0);
    tensor_release(t);
    ERR_CONTAINS(tensor_linspace(0, 1, -1, DTYPE_FLOAT32, &t), DDP_ERR_ARG, "non-negative");

    OK(tensor_eye(2, 3, DTYPE_FLOAT32, &t));
    assert_true(tensor_get(t, 0) == 1.0 && tensor_get(t, 1) == 0.0 && tensor_get(t, 4) == 1.0);
    assert_true(tensor_get(t, 5) == 0.0);
    tensor_release(t);
}

static void test_random_fills(void **state) {
    (void)state;
    int64_t sizes[2] = {4, 6}, tsizes[2] = {6, 4};
    ddp_generator g;
    tensor *a, *base, *view, *c;
    OK(tensor_empty(sizes, 2, DTYPE_FLOAT32, DEVICE_CPU_VALUE, &a));
    generator_seed(&g, 9);
    OK(tensor_uniform_(a, -1, 1, &g));
    for (int i = 0; i < 24; i++) assert_true(tensor_get(a, i) >= -1 && tensor_get(a, i) < 1);
    /* a transposed view is filled in memory order, as PyTorch's TensorIterator visits
     * it: its storage gets the numbers a contiguous tensor would, the view sees them
     * transposed */
    OK(tensor_empty(tsizes, 2, DTYPE_FLOAT32, DEVICE_CPU_VALUE, &base));
    OK(tensor_transpose(base, 0, 1, &view));
    generator_seed(&g, 9);
    OK(tensor_uniform_(view, -1, 1, &g));
    OK(tensor_contiguous(view, &c));
    assert_false(tensor_equal(a, c));
    assert_memory_equal(tensor_data(a), tensor_data(base), 24 * sizeof(float));
    tensor_release(c);
    /* g == NULL is the default generator */
    generator_seed(generator_default(), 9);
    OK(tensor_normal_(base, 0, 1, NULL));
    tensor *b2;
    OK(tensor_empty(tsizes, 2, DTYPE_FLOAT32, DEVICE_CPU_VALUE, &b2));
    generator_seed(&g, 9);
    OK(tensor_normal_(b2, 0, 1, &g));
    assert_true(tensor_equal(base, b2));
    ERR_CONTAINS(tensor_normal_(b2, 0, -1, &g), DDP_ERR_ARG, "std must be non-negative");

    tensor *ints;
    OK(tensor_empty(sizes, 2, DTYPE_INT64, DEVICE_CPU_VALUE, &ints));
    ERR_CONTAINS(tensor_uniform_(ints, 0, 1, &g), DDP_ERR_ARG, "floating point");
    OK(tensor_randint_(ints, 3, 6, &g));
    for (int i = 0; i < 24; i++)
        assert_true(tensor_get_int64(ints, i) >= 3 && tensor_get_int64(ints, i) < 6);
    ERR_CONTAINS(tensor_randint_(ints, 3, 3, &g), DDP_ERR_ARG, "is empty");
    OK(tensor_randint_(a, 0, 10, &g)); /* a float target holds the integers */
    assert_true(tensor_get(a, 0) == floor(tensor_get(a, 0)));

    tensor *p, *q;
    generator_seed(&g, 4);
    OK(tensor_randperm(50, &g, &p));
    generator_seed(&g, 4);
    OK(tensor_randperm(50, &g, &q));
    assert_true(tensor_equal(p, q));
    bool seen[50] = {false};
    bool moved = false;
    for (int i = 0; i < 50; i++) {
        int64_t v = tensor_get_int64(p, i);
        assert_in_range(v, 0, 49);
        size_t k = (size_t)v % 50; /* in range, as just checked; the modulo tells the compiler */
        assert_false(seen[k]);
        seen[k] = true;
        if (v != i) moved = true;
    }
    assert_true(moved);
    tensor_release(q);
    OK(tensor_randperm(0, &g, &q));
    assert_int_equal(tensor_numel(q), 0);
    tensor_release(q);
    ERR_CONTAINS(tensor_randperm(-1, &g, &q), DDP_ERR_ARG, "non-negative");
    tensor_release(p);
    tensor_release(ints);
    tensor_release(b2);
    tensor_release(view);
    tensor_release(base);
    tensor_release(a);
}

/* The remaining argument errors of views and creation, each naming its op. */
static void test_more_error_paths(void **state) {
    (void)state;
    int64_t sizes[2] = {2, 3};
    tensor *t = iota(sizes, 2), *s, *bad = NULL;
    OK(tensor_scalar(1, DTYPE_FLOAT32, &s));
    ERR_CONTAINS(tensor_narrow(s, 0, 0, 1, &bad), DDP_ERR_ARG, "narrow: cannot narrow a 0-dim");
    ERR_CONTAINS(tensor_select(s, 0, 0, &bad), DDP_ERR_ARG, "select: cannot index a 0-dim");
    int64_t neg[2] = {-2, 3};
    ERR_CONTAINS(tensor_view(t, neg, 2, &bad), DDP_ERR_ARG, "view: invalid size -2");
    int64_t e1[1] = {3};
    ERR_CONTAINS(tensor_expand(t, e1, 1, &bad), DDP_ERR_ARG,
                 "expand: cannot expand a tensor of shape (2x3) to 1 dims");
    int64_t e3[3] = {-1, 2, 3};
    ERR_CONTAINS(tensor_expand(t, e3, 3, &bad), DDP_ERR_ARG,
                 "-1 is not allowed for a new leading dim");
    int64_t eight[8] = {1, 1, 1, 1, 1, 1, 1, 1};
    tensor *t8;
    OK(tensor_zeros(eight, 8, DTYPE_FLOAT32, DEVICE_CPU_VALUE, &t8));
    ERR_CONTAINS(tensor_unsqueeze(t8, 0, &bad), DDP_ERR_ARG,
                 "unsqueeze: a tensor can have at most 8");
    ERR_CONTAINS(tensor_eye(-1, 2, DTYPE_FLOAT32, &bad), DDP_ERR_ARG,
                 "eye: sizes must be non-negative");
    ERR_CONTAINS(tensor_uniform_(t, 1, 0, NULL), DDP_ERR_ARG, "uniform_: expects from <= to");
    ERR_CONTAINS(tensor_transpose(t, 0, 2, &bad), DDP_ERR_ARG, "transpose: dimension 2");
    assert_null(bad);
    tensor_release(t8);
    tensor_release(s);
    tensor_release(t);
}

/* A tensor whose storage claims to be on a GPU: mixing it with a CPU tensor names both
 * devices, and without a GPU every op on it (a kernel, a copy, item, the ops staged
 * through the host) says that none is visible (or that the build has no CUDA). The host
 * never reads the fake's memory. */
static void test_cuda_tensors_refused(void **state) {
    (void)state;
    int64_t sizes[1] = {3};
    tensor *cpu = iota(sizes, 1), *bad = NULL;
    storage fake_storage = *cpu->storage;
    fake_storage.device = (device){DEVICE_CUDA, 0};
    tensor fake = *cpu;
    fake.storage = &fake_storage;
    ERR_CONTAINS(tensor_binary(BINARY_ADD, cpu, &fake, &bad), DDP_ERR_ARG,
                 "add: tensors are on different devices (cpu and cuda:0)");
    ERR_CONTAINS(tensor_matmul(cpu, &fake, &bad), DDP_ERR_ARG,
                 "matmul: tensors are on different devices (cpu and cuda:0)");
    assert_null(tensor_data(&fake)); /* the host gets no address to read */
    assert_false(tensor_equal(cpu, &fake));
    if (cuda_device_count() == 0) {
        /* ops with a CUDA kernel get as far as asking for a GPU */
        ERR_CONTAINS(tensor_unary(UNARY_EXP, &fake, &bad), DDP_ERR_UNSUPPORTED, NO_GPU_MESSAGE);
        ERR_CONTAINS(tensor_binary_scalar(BINARY_ADD, &fake, 1.0, &bad), DDP_ERR_UNSUPPORTED,
                     NO_GPU_MESSAGE);
        ERR_CONTAINS(tensor_add_scaled_(&fake, &fake, 2.0), DDP_ERR_UNSUPPORTED, NO_GPU_MESSAGE);
        ERR_CONTAINS(tensor_where(&fake, &fake, &fake, &bad), DDP_ERR_UNSUPPORTED, NO_GPU_MESSAGE);
        tensor *pair[2] = {&fake, &fake};
        ERR_CONTAINS(tensor_cat(pair, 2, 0, &bad), DDP_ERR_UNSUPPORTED, NO_GPU_MESSAGE);
        ERR_CONTAINS(tensor_cat((tensor *[]){cpu, &fake}, 2, 0, &bad), DDP_ERR_ARG,
                     "cat: tensors are on different devices (cpu and cuda:0)");
        ERR_CONTAINS(tensor_clamp(&fake, true, 0.0, false, 0.0, &bad), DDP_ERR_UNSUPPORTED,
                     NO_GPU_MESSAGE);
        ERR_CONTAINS(tensor_reduce_all(REDUCE_SUM, &fake, &bad), DDP_ERR_UNSUPPORTED,
                     NO_GPU_MESSAGE);
        ERR_CONTAINS(tensor_matmul(&fake, &fake, &bad), DDP_ERR_UNSUPPORTED, NO_GPU_MESSAGE);
        ERR_CONTAINS(tensor_copy_(cpu, &fake), DDP_ERR_UNSUPPORTED, NO_GPU_MESSAGE);
        ERR_CONTAINS(tensor_copy_(&fake, cpu), DDP_ERR_UNSUPPORTED, NO_GPU_MESSAGE);
        ERR_CONTAINS(tensor_empty_like(&fake, &bad), DDP_ERR_UNSUPPORTED, NO_GPU_MESSAGE);
        double v;
        tensor one = fake; /* a one-element view of the fake GPU storage */
        one.ndim = 0;
        ERR_CONTAINS(tensor_item(&one, &v), DDP_ERR_UNSUPPORTED, NO_GPU_MESSAGE);
        tensor *moved = (tensor *)1;
        ERR_CONTAINS(tensor_to_device(cpu, (device){DEVICE_CUDA, DEVICE_INDEX_CURRENT},
                                      DTYPE_FLOAT32, &moved),
                     DDP_ERR_UNSUPPORTED, NO_GPU_MESSAGE);
        assert_null(moved);
    }
    assert_null(bad);
    tensor_release(cpu);
}

/* Review findings: sizes from the learner that would overflow int64 when multiplied
 * (view, expand) or added (narrow) are refused with a message, not computed with signed
 * overflow; narrow names a negative length. */
static void test_size_arithmetic_never_overflows(void **state) {
    (void)state;
    int64_t s4[1] = {4}, s1[1] = {1};
    tensor *t = NULL, *one = NULL, *r = NULL;
    OK(tensor_zeros(s4, 1, DTYPE_FLOAT32, DEVICE_CPU_VALUE, &t));
    OK(tensor_zeros(s1, 1, DTYPE_FLOAT32, DEVICE_CPU_VALUE, &one));
    int64_t huge3[3] = {(int64_t)1 << 40, (int64_t)1 << 40, (int64_t)1 << 40};
    ERR_CONTAINS(tensor_view(t, huge3, 3, &r), DDP_ERR_ARG, "view: shape");
    assert_null(r);
    int64_t infer_huge[3] = {-1, (int64_t)1 << 62, (int64_t)1 << 62};
    ERR_CONTAINS(tensor_reshape(t, infer_huge, 3, &r), DDP_ERR_ARG, "is invalid");
    int64_t huge2[2] = {(int64_t)1 << 62, (int64_t)1 << 62};
    ERR_CONTAINS(tensor_expand(one, huge2, 2, &r), DDP_ERR_ARG,
                 "more elements than a tensor can count");
    assert_null(r);
    /* with a size-0 dim too (PyTorch refuses it the same way): strides or the numel of
     * the other dims would still overflow */
    int64_t huge_then_zero[3] = {(int64_t)1 << 62, (int64_t)1 << 62, 0};
    ERR_CONTAINS(tensor_expand(one, huge_then_zero, 3, &r), DDP_ERR_ARG, "more elements");
    ERR_CONTAINS(tensor_empty(huge_then_zero, 3, DTYPE_FLOAT32, DEVICE_CPU_VALUE, &r),
                 DDP_ERR_NOMEM, "too large");
    int64_t big_empty[3] = {(int64_t)1 << 40, 0, (int64_t)1 << 20};
    OK(tensor_empty(big_empty, 3, DTYPE_FLOAT32, DEVICE_CPU_VALUE, &r)); /* fits: fine */
    assert_int_equal(tensor_numel(r), 0);
    tensor_release(r);
    ERR_CONTAINS(tensor_narrow(t, 0, 1, INT64_MAX, &r), DDP_ERR_ARG,
                 "start 1 + length 9223372036854775807 exceeds size 4");
    ERR_CONTAINS(tensor_narrow(t, 0, 0, -1, &r), DDP_ERR_ARG,
                 "narrow: length must be non-negative, got -1");
    ERR_CONTAINS(tensor_narrow(t, 0, INT64_MIN, 1, &r), DDP_ERR_ARG, "start");
    OK(tensor_narrow(t, 0, -1, 1, &r)); /* negative start counts from the end */
    assert_int_equal(r->offset, 3);
    tensor_release(r);
    OK(tensor_narrow(t, 0, 4, 0, &r)); /* an empty slice at the end */
    assert_int_equal(tensor_numel(r), 0);
    tensor_release(r);
    tensor_release(one);
    tensor_release(t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dtypes),
        cmocka_unit_test(test_devices),
        cmocka_unit_test(test_create_and_errors),
        cmocka_unit_test(test_refcounts_and_autograd_fields),
        cmocka_unit_test(test_item_and_dims),
        cmocka_unit_test(test_views_share_storage),
        cmocka_unit_test(test_transpose_permute_expand),
        cmocka_unit_test(test_view_reshape_flatten),
        cmocka_unit_test(test_copies),
        cmocka_unit_test(test_large_blocks_reused_safely),
        cmocka_unit_test(test_ranges),
        cmocka_unit_test(test_more_error_paths),
        cmocka_unit_test(test_cuda_tensors_refused),
        cmocka_unit_test(test_random_fills),
        cmocka_unit_test(test_size_arithmetic_never_overflows),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
