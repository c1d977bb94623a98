/* l_torch.c — the torch.* functions: creation (tensor{...}, zeros, rand, arange, ...),
 * the dtype constants, the random seed, grad mode (no_grad, enable_grad,
 * set_grad_enabled), joining (cat, stack, where), and the module-level twins of Tensor
 * methods (torch.add(t, u) is the very function t:add(u) runs).
 *
 * Every function checks all its arguments before it allocates, and creates the result
 * box before the core call fills it, so an error never leaks a tensor. */
#include <lauxlib.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "lua/l_internal.h"
#include "nn/autograd.h"

/* Whether the value at idx is {}: a table with no metatable and no entries. */
static int l_is_empty_plain_table(lua_State *L, int idx) {
    if (lua_type(L, idx) != LUA_TTABLE) return 0;
    if (lua_getmetatable(L, idx)) {
        lua_pop(L, 1);
        return 0;
    }
    lua_pushnil(L);
    if (lua_next(L, idx)) {
        lua_pop(L, 2);
        return 0;
    }
    return 1;
}

/* The index of a trailing options table, or 0; *last is set to the last other arg. */
static int l_trailing_options(lua_State *L, int *last) {
    int top = lua_gettop(L);
    /* {} after other arguments is an empty options table (torch.zeros(2, {})); alone it
     * is the sizes of a 0-dim tensor (torch.zeros({})) */
    int empty_after_args = top > 1 && l_is_empty_plain_table(L, top);
    if (top > 0 && (empty_after_args || l_is_options(L, top))) {
        *last = top - 1;
        return top;
    }
    *last = top;
    return 0;
}

/* ---- torch.tensor ------------------------------------------------------------------- */

/* torch.tensor reads every element into two scratch buffers of 8 bytes each. */
#define TENSOR_DATA_MAX_ELEMENTS ((int64_t)(TENSOR_MAX_BYTES / 16))

typedef struct {
    int ndim;
    int64_t sizes[TENSOR_MAX_DIMS];
    int64_t numel, pos;
    double *values; /* every element as a double */
    int64_t *ints;  /* every element as an int64 (exact for integers) */
    int has_float;  /* a non-integer number was seen: float32 */
    int all_bool;   /* only booleans: bool */
    char path[128]; /* "[2][1]" of the element being read, for errors */
} nested_reader;

/* Appends "[i]" to the path for error messages (Lua positions, from 1). */
static void l_path_push(nested_reader *r, lua_Integer i, size_t *saved) {
    *saved = strlen(r->path);
    if (*saved + 24 < sizeof r->path)
        snprintf(r->path + *saved, sizeof r->path - *saved, "[%lld]", (long long)i);
}

/* Reads one leaf (number, boolean, one-element tensor) at the stack top. */
static void l_read_leaf(lua_State *L, nested_reader *r) {
    double v;
    int64_t iv;
    int t = lua_type(L, -1);
    tensor *tt;
    if (t == LUA_TNUMBER) {
        r->all_bool = 0;
        if (lua_isinteger(L, -1)) {
            iv = (int64_t)lua_tointeger(L, -1);
            v = (double)iv;
        } else {
            v = lua_tonumber(L, -1);
            iv = 0; /* unused: a float makes the tensor float (converting here could be UB) */
            r->has_float = 1;
        }
    } else if (t == LUA_TBOOLEAN) {
        iv = lua_toboolean(L, -1);
        v = (double)iv;
    } else if ((tt = l_opt_tensor(L, -1)) != NULL && tensor_numel(tt) == 1) {
        r->all_bool = 0;
        v = tensor_get(tt, 0);
        iv = dtype_is_float(tt->dtype) ? 0 : tensor_get_int64(tt, 0);
        if (dtype_is_float(tt->dtype)) r->has_float = 1;
    } else if (tt) {
        luaL_error(L,
                   "tensor: element t%s is a tensor of %I elements; only one-element tensors "
                   "can be elements (join tensors with torch.stack or torch.cat)",
                   r->path, (LUAI_UACINT)tensor_numel(tt));
        return;
    } else {
        luaL_error(L, "tensor: element t%s is a %s; expected a number or a boolean", r->path,
                   luaL_typename(L, -1));
        return;
    }
    r->values[r->pos] = v;
    r->ints[r->pos] = iv;
    r->pos++;
}

/* "[1][1]" for depth d: where the reference size of dim d was read, for errors. */
static const char *l_first_path(int d) {
    static const char ones[] = "[1][1][1][1][1][1][1][1]";
    return ones + sizeof ones - 1 - 3 * (size_t)d;
}

/* Walks the nested table at the stack top, depth d, checking it is not ragged. */
static void l_read_nested(lua_State *L, nested_reader *r, int d) {
    if (d == r->ndim) {
        if (lua_istable(L, -1) && !ddp_lua_to_tensor(L, -1))
            luaL_error(L,
                       "tensor: ragged nested table: t%s is a table, but its neighbours are "
                       "numbers",
                       r->path);
        l_read_leaf(L, r);
        return;
    }
    if (!lua_istable(L, -1))
        luaL_error(L,
                   "tensor: ragged nested table: t%s is a %s, expected a table of %I "
                   "elements like its neighbours",
                   r->path, luaL_typename(L, -1), (LUAI_UACINT)r->sizes[d]);
    lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
    if (n != r->sizes[d])
        luaL_error(L, "tensor: ragged nested table: t%s has %I elements, expected %I (like t%s)",
                   r->path, (LUAI_UACINT)n, (LUAI_UACINT)r->sizes[d], l_first_path(d));
    luaL_checkstack(L, 4, "tensor: nesting too deep");
    for (lua_Integer i = 1; i <= n; i++) {
        size_t saved;
        l_path_push(r, i, &saved);
        lua_rawgeti(L, -1, i);
        l_read_nested(L, r, d + 1);
        lua_pop(L, 1);
        r->path[saved] = '\0';
    }
}

/* Finds the shape from the first element at every depth. */
static void l_nested_shape(lua_State *L, int idx, nested_reader *r) {
    lua_pushvalue(L, idx);
    r->ndim = 0;
    r->numel = 1;
    while (lua_istable(L, -1) && !ddp_lua_to_tensor(L, -1)) {
        if (r->ndim == TENSOR_MAX_DIMS)
            luaL_error(L, "tensor: more than %d levels of nesting", TENSOR_MAX_DIMS);
        int64_t n = (int64_t)lua_rawlen(L, -1);
        /* Nested tables may share rows, so a few small tables can describe more elements
         * than int64 counts: refuse before the product overflows (it sizes the buffers
         * that l_read_nested fills). */
        if (n > 0 && r->numel > TENSOR_DATA_MAX_ELEMENTS / n)
            luaL_error(L, "tensor: the nested table holds more than %I elements, too many",
                       (LUAI_UACINT)TENSOR_DATA_MAX_ELEMENTS);
        r->sizes[r->ndim++] = n;
        r->numel *= n;
        if (n == 0) break;
        lua_rawgeti(L, -1, 1);
        lua_remove(L, -2);
    }
    lua_pop(L, 1);
}

/* Raises, as PyTorch does, when a number read as float cannot become an int64 (NaN, an
 * infinity, or beyond +-2^63): a silent conversion would give garbage. */
static void l_check_int64_range(lua_State *L, const nested_reader *r) {
    for (int64_t i = 0; i < r->numel; i++) {
        double v = r->values[i];
        if (!(v >= -9223372036854775808.0 && v < 9223372036854775808.0))
            luaL_error(L, "tensor: the value %f cannot be converted to int64 without overflow", v);
    }
}

/* t itself when it has dtype dt, else a converted copy in a new box pushed on the stack.
 * Raises on failure. */
static tensor *l_convert_new(lua_State *L, tensor *t, dtype dt) {
    if (t->dtype == dt) return t;
    tensor **conv = l_new_box(L);
    l_check(L, tensor_to_dtype(t, dt, conv));
    return *conv;
}

/* torch.tensor(data, {dtype=, requires_grad=}) */
static int l_torch_tensor(lua_State *L) {
    l_create_options o;
    luaL_checkany(L, 1);
    l_check_create_options(L, 2, DTYPE_FLOAT32, &o);
    tensor *src = l_opt_tensor(L, 1);
    if (src) { /* torch.tensor(t): a detached copy */
        tensor **slot = l_new_box(L);
        l_check(L, tensor_clone(src, slot));
        l_finish_created(L, o.has_dtype ? l_convert_new(L, *slot, o.dt) : *slot, &o);
        return 1;
    }
    int t = lua_type(L, 1);
    if (t != LUA_TTABLE && t != LUA_TNUMBER && t != LUA_TBOOLEAN)
        return luaL_typeerror(L, 1, "number, boolean or nested table of numbers");
    nested_reader r;
    memset(&r, 0, sizeof r);
    r.all_bool = 1;
    l_nested_shape(L, 1, &r);
    size_t n = (size_t)(r.numel > 0 ? r.numel : 1);
    r.values = lua_newuserdatauv(L, n * sizeof(double), 0); /* GC'd scratch */
    r.ints = lua_newuserdatauv(L, n * sizeof(int64_t), 0);
    lua_pushvalue(L, 1);
    l_read_nested(L, &r, 0);
    lua_pop(L, 1);
    /* floats are read as float64 and rounded once to the dtype asked for; tensor({}) is
     * float32, as in PyTorch */
    dtype base = (r.has_float || r.numel == 0) ? DTYPE_FLOAT64
                 : r.all_bool                  ? DTYPE_BOOL
                                               : DTYPE_INT64;
    dtype want = o.has_dtype ? o.dt : base == DTYPE_FLOAT64 ? DTYPE_FLOAT32 : base;
    const void *data = r.values;
    if (base == DTYPE_INT64) data = r.ints;
    if (base == DTYPE_BOOL) {
        bool *b = (bool *)r.ints; /* in place: byte i lies in ints[i / 8], already read */
        for (int64_t i = 0; i < r.numel; i++) b[i] = r.ints[i] != 0;
        data = b;
    }
    if (base == DTYPE_FLOAT64 && want == DTYPE_INT64) l_check_int64_range(L, &r);
    tensor **slot = l_new_box(L);
    l_check(L, tensor_from_data(data, r.sizes, r.ndim, base, slot));
    l_finish_created(L, l_convert_new(L, *slot, want), &o);
    return 1;
}

/* ---- creation from sizes ------------------------------------------------------------ */

typedef enum { FILL_EMPTY, FILL_ZEROS, FILL_ONES, FILL_RAND, FILL_RANDN } fill_kind;

/* Fills a fresh tensor (in the box at the top) as `kind` says, random ones from g (NULL:
 * the default generator). */
static void l_fill_new(lua_State *L, tensor *t, fill_kind kind, ddp_generator *g) {
    switch (kind) {
    case FILL_EMPTY:
    case FILL_ZEROS: /* made by tensor_zeros */
        break;
    case FILL_ONES:
        l_check(L, tensor_fill_(t, 1.0));
        break;
    case FILL_RAND:
        l_check(L, tensor_uniform_(t, 0.0, 1.0, g));
        break;
    case FILL_RANDN:
        l_check(L, tensor_normal_(t, 0.0, 1.0, g));
        break;
    }
}

/* The options of the random creation functions. */
static const char *const random_option_keys[] = {"dtype", "device", "requires_grad", "generator",
                                                 NULL};

/* torch.zeros/ones/empty/rand/randn(sizes..., {dtype=, device=, requires_grad=}); rand
 * and randn also take generator=. */
static int l_create(lua_State *L, fill_kind kind, const char *op) {
    int last;
    int opts = l_trailing_options(L, &last);
    int64_t sizes[TENSOR_MAX_DIMS];
    int n = l_check_sizes(L, 1, last, op, sizes);
    l_create_options o;
    ddp_generator *g = NULL;
    if (kind == FILL_RAND || kind == FILL_RANDN) {
        ddp_lua_check_option_keys(L, opts, op, random_option_keys);
        g = l_opt_generator(L, opts);
        l_read_create_options(L, opts, DTYPE_FLOAT32, &o);
    } else {
        l_check_create_options(L, opts, DTYPE_FLOAT32, &o);
    }
    if ((kind == FILL_RAND || kind == FILL_RANDN) && !dtype_is_float(o.dt))
        luaL_error(L, "%s: needs a floating point dtype, got %s", op, dtype_name(o.dt));
    tensor **slot = l_new_box(L);
    if (kind == FILL_ZEROS)
        l_check(L, tensor_zeros(sizes, n, o.dt, o.dev, slot));
    else
        l_check(L, tensor_empty(sizes, n, o.dt, o.dev, slot));
    l_fill_new(L, *slot, kind, g);
    l_finish_created(L, *slot, &o);
    return 1;
}
/* The creation functions, one line each over l_create. */
static int l_torch_zeros(lua_State *L) {
    return l_create(L, FILL_ZEROS, "zeros");
}
static int l_torch_ones(lua_State *L) {
    return l_create(L, FILL_ONES, "ones");
}
static int l_torch_empty(lua_State *L) {
    return l_create(L, FILL_EMPTY, "empty");
}
static int l_torch_rand(lua_State *L) {
    return l_create(L, FILL_RAND, "rand");
}
static int l_torch_randn(lua_State *L) {
    return l_create(L, FILL_RANDN, "randn");
}

/* The dtype PyTorch infers from a fill value: int64, bool or float32. */
static dtype l_value_dtype(lua_State *L, int idx) {
    if (lua_isboolean(L, idx)) return DTYPE_BOOL;
    return lua_isinteger(L, idx) ? DTYPE_INT64 : DTYPE_FLOAT32;
}

/* A fill value: a number, or a boolean as 0/1. */
static double l_check_value(lua_State *L, int idx) {
    if (lua_isboolean(L, idx)) return lua_toboolean(L, idx);
    return luaL_checknumber(L, idx);
}

/* torch.full({sizes}, value, opts) */
static int l_torch_full(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    int64_t sizes[TENSOR_MAX_DIMS];
    int n = l_check_sizes(L, 1, 1, "full", sizes);
    double v = l_check_value(L, 2);
    l_create_options o;
    l_check_create_options(L, 3, l_value_dtype(L, 2), &o);
    tensor **slot = l_new_box(L);
    l_check(L, tensor_full(sizes, n, o.dt, o.dev, v, slot));
    l_finish_created(L, *slot, &o);
    return 1;
}

/* *_like(t, opts): same sizes, t's dtype unless opts say otherwise. */
static int l_create_like(lua_State *L, fill_kind kind, int has_value) {
    tensor *like = ddp_lua_check_tensor(L, 1);
    double v = has_value ? l_check_value(L, 2) : 0.0;
    l_create_options o;
    l_check_create_options(L, has_value ? 3 : 2, like->dtype, &o);
    if (!lua_isnoneornil(L, has_value ? 3 : 2)) {
        lua_getfield(L, has_value ? 3 : 2, "device");
        if (lua_isnil(L, -1)) o.dev = like->storage->device;
        lua_pop(L, 1);
    } else {
        o.dev = like->storage->device;
    }
    tensor **slot = l_new_box(L);
    if (has_value)
        l_check(L, tensor_full(like->sizes, like->ndim, o.dt, o.dev, v, slot));
    else if (kind == FILL_ZEROS)
        l_check(L, tensor_zeros(like->sizes, like->ndim, o.dt, o.dev, slot));
    else
        l_check(L, tensor_empty(like->sizes, like->ndim, o.dt, o.dev, slot));
    l_fill_new(L, *slot, kind, NULL);
    l_finish_created(L, *slot, &o);
    return 1;
}
/* The *_like functions over l_create_like. */
static int l_torch_zeros_like(lua_State *L) {
    return l_create_like(L, FILL_ZEROS, 0);
}
static int l_torch_ones_like(lua_State *L) {
    return l_create_like(L, FILL_ONES, 0);
}
static int l_torch_empty_like(lua_State *L) {
    return l_create_like(L, FILL_EMPTY, 0);
}
static int l_torch_rand_like(lua_State *L) {
    return l_create_like(L, FILL_RAND, 0);
}
static int l_torch_randn_like(lua_State *L) {
    return l_create_like(L, FILL_RANDN, 0);
}
static int l_torch_full_like(lua_State *L) {
    return l_create_like(L, FILL_EMPTY, 1);
}

/* torch.randint(high, {sizes}) or torch.randint(low, high, {sizes}), opts */
static int l_torch_randint(lua_State *L) {
    int last;
    int opts = l_trailing_options(L, &last);
    lua_Integer lo = 0, hi;
    int size_idx;
    if (last >= 3) {
        lo = luaL_checkinteger(L, 1);
        hi = luaL_checkinteger(L, 2);
        size_idx = 3;
    } else {
        hi = luaL_checkinteger(L, 1);
        size_idx = 2;
    }
    luaL_checktype(L, size_idx, LUA_TTABLE);
    int64_t sizes[TENSOR_MAX_DIMS];
    int n = l_check_sizes(L, size_idx, size_idx, "randint", sizes);
    if (hi <= lo)
        luaL_error(L, "randint: empty range: low (%I) must be below high (%I)", (LUAI_UACINT)lo,
                   (LUAI_UACINT)hi);
    ddp_lua_check_option_keys(L, opts, "randint", random_option_keys);
    ddp_generator *g = l_opt_generator(L, opts);
    l_create_options o;
    l_read_create_options(L, opts, DTYPE_INT64, &o);
    tensor **slot = l_new_box(L);
    l_check(L, tensor_empty(sizes, n, DTYPE_INT64, o.dev, slot));
    l_check(L, tensor_randint_(*slot, lo, hi, g));
    l_finish_created(L, l_convert_new(L, *slot, o.dt), &o);
    return 1;
}

/* torch.randperm(n, opts) */
static int l_torch_randperm(lua_State *L) {
    lua_Integer n = luaL_checkinteger(L, 1);
    ddp_lua_check_option_keys(L, 2, "randperm", random_option_keys);
    ddp_generator *g = l_opt_generator(L, 2);
    l_create_options o;
    l_read_create_options(L, 2, DTYPE_INT64, &o);
    tensor **slot = l_new_box(L);
    l_check(L, tensor_randperm(n, g, slot));
    l_convert_new(L, *slot, o.dt);
    return 1;
}

/* torch.arange(end) / arange(start, end, step=1), opts */
static int l_torch_arange(lua_State *L) {
    int last;
    int opts = l_trailing_options(L, &last);
    double start = 0, end, step = 1;
    int integral;
    if (last <= 1) {
        end = luaL_checknumber(L, 1);
        integral = lua_isinteger(L, 1);
    } else {
        start = luaL_checknumber(L, 1);
        end = luaL_checknumber(L, 2);
        step = luaL_optnumber(L, 3, 1.0);
        integral = lua_isinteger(L, 1) && lua_isinteger(L, 2) &&
                   (lua_isnoneornil(L, 3) || lua_isinteger(L, 3));
    }
    l_create_options o;
    l_check_create_options(L, opts, DTYPE_FLOAT32, &o);
    /* PyTorch infers from the Lua types: arange(5) is int64, arange(5.0) float32 */
    dtype inferred = integral ? DTYPE_INT64 : DTYPE_FLOAT32;
    tensor **slot = l_new_box(L);
    l_check(L, tensor_arange(start, end, step, o.has_dtype ? &o.dt : &inferred, slot));
    l_finish_created(L, *slot, &o);
    return 1;
}

/* torch.linspace(start, end, steps, opts) */
static int l_torch_linspace(lua_State *L) {
    double start = luaL_checknumber(L, 1), end = luaL_checknumber(L, 2);
    lua_Integer steps = luaL_checkinteger(L, 3);
    l_create_options o;
    l_check_create_options(L, 4, DTYPE_FLOAT32, &o);
    tensor **slot = l_new_box(L);
    l_check(L, tensor_linspace(start, end, steps, o.dt, slot));
    l_finish_created(L, *slot, &o);
    return 1;
}

/* torch.eye(n, m=n, opts) */
static int l_torch_eye(lua_State *L) {
    int last;
    int opts = l_trailing_options(L, &last);
    lua_Integer n = luaL_checkinteger(L, 1);
    lua_Integer m = last >= 2 ? luaL_checkinteger(L, 2) : n;
    l_create_options o;
    l_check_create_options(L, opts, DTYPE_FLOAT32, &o);
    tensor **slot = l_new_box(L);
    l_check(L, tensor_eye(n, m, o.dt, slot));
    l_finish_created(L, *slot, &o);
    return 1;
}

/* ---- joining ------------------------------------------------------------------------ */

/* Reads a Lua list of tensors at idx into a GC'd scratch array (pushed). */
static tensor **l_check_tensor_list(lua_State *L, int idx, const char *op, int *n) {
    luaL_checktype(L, idx, LUA_TTABLE);
    lua_Integer len = (lua_Integer)lua_rawlen(L, idx);
    if (len == 0) luaL_error(L, "%s: expected a non-empty list of tensors", op);
    if (len > 1000000) luaL_error(L, "%s: too many tensors (%I)", op, (LUAI_UACINT)len);
    tensor **ts = lua_newuserdatauv(L, (size_t)len * sizeof *ts, 0);
    for (lua_Integer i = 1; i <= len; i++) {
        lua_rawgeti(L, idx, i);
        ts[i - 1] = l_opt_tensor(L, -1);
        if (!ts[i - 1])
            luaL_error(L, "%s: element %I of the list is a %s, expected a tensor", op,
                       (LUAI_UACINT)i, luaL_typename(L, -1));
        lua_pop(L, 1);
    }
    *n = (int)len;
    return ts;
}

/* torch.cat(list, dim=0) / torch.stack(list, dim=0): differentiable. */
static int l_join(lua_State *L, int stack) {
    lua_Integer dim = luaL_optinteger(L, 2, 0);
    int n;
    tensor **ts = l_check_tensor_list(L, 1, stack ? "stack" : "cat", &n);
    tensor **slot = l_new_box(L);
    l_check(L, (stack ? ag_stack : ag_cat)(ts, n, dim, slot));
    return 1;
}
static int l_torch_cat(lua_State *L) {
    return l_join(L, 0);
}
static int l_torch_stack(lua_State *L) {
    return l_join(L, 1);
}

/* A tensor argument that may be given as a number: pushes a 0-dim box for numbers. */
static tensor *l_tensor_or_scalar(lua_State *L, int idx, dtype like) {
    tensor *t = l_opt_tensor(L, idx);
    if (t) return t;
    if (lua_type(L, idx) != LUA_TNUMBER) luaL_typeerror(L, idx, "tensor or number");
    dtype dt = lua_isinteger(L, idx) ? (dtype_is_float(like) ? like : DTYPE_INT64) : like;
    if (!dtype_is_float(dt) && !lua_isinteger(L, idx)) dt = DTYPE_FLOAT32;
    tensor **slot = l_new_box(L);
    l_check(L, tensor_scalar(lua_tonumber(L, idx), dt, slot));
    return *slot;
}

/* torch.where(cond, a, b): a and b may be numbers. */
static int l_torch_where(lua_State *L) {
    tensor *cond = ddp_lua_check_tensor(L, 1);
    tensor *ta = l_opt_tensor(L, 2), *tb = l_opt_tensor(L, 3);
    dtype like = ta ? ta->dtype : tb ? tb->dtype : DTYPE_FLOAT32;
    tensor *a = l_tensor_or_scalar(L, 2, like);
    tensor *b = l_tensor_or_scalar(L, 3, like);
    tensor **slot = l_new_box(L);
    l_check(L, tensor_where(cond, a, b, slot));
    return 1;
}

/* torch.is_tensor(v) */
static int l_torch_is_tensor(lua_State *L) {
    lua_pushboolean(L, ddp_lua_to_tensor(L, 1) != NULL);
    return 1;
}

/* torch.time(): seconds on a monotonic clock, for timing code (Lua's os.clock is CPU
 * time and os.time has whole seconds). Python's time.perf_counter is the twin. */
static int l_torch_time(lua_State *L) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec * 1e-9);
    return 1;
}

/* ---- grad mode ---------------------------------------------------------------------- */

static const char *const GRAD_GUARD_MT = "torch.grad_mode_guard";

/* A to-be-closed value that restores the grad mode it saw when made. */
static void l_push_grad_guard(lua_State *L, int previous) {
    int *saved = lua_newuserdatauv(L, sizeof *saved, 0);
    *saved = previous;
    luaL_setmetatable(L, GRAD_GUARD_MT);
}

/* __close of the guard: puts the saved grad mode back. */
static int l_grad_guard_close(lua_State *L) {
    int *saved = luaL_checkudata(L, 1, GRAD_GUARD_MT);
    grad_mode_set(*saved);
    return 0;
}

/* Runs fn(...) with grad mode `on`, restoring the mode even when fn raises. Without fn,
 * sets the mode and returns a guard for `local _ <close> = torch.no_grad()`. Called
 * alone (`torch.no_grad()` as a statement, a habit from Python's `with`), it therefore
 * leaves the mode set until torch.set_grad_enabled(true): a call cannot tell whether its
 * result goes into a <close> variable, and refusing the bare form would break that one.
 * The surprise is caught where it shows: a backward pass that finds nothing to
 * differentiate while gradients are off says so and what to type (ag_backward). */
static int l_with_grad_mode(lua_State *L, int on) {
    int previous = grad_mode_enabled();
    if (lua_isnoneornil(L, 1)) {
        l_push_grad_guard(L, previous);
        grad_mode_set(on);
        return 1;
    }
    luaL_checktype(L, 1, LUA_TFUNCTION);
    grad_mode_set(on);
    int rc = lua_pcall(L, lua_gettop(L) - 1, LUA_MULTRET, 0);
    grad_mode_set(previous);
    if (rc != LUA_OK) return lua_error(L);
    return lua_gettop(L); /* fn and its arguments were replaced by fn's results */
}
/* torch.no_grad(fn?) / torch.enable_grad(fn?) */
static int l_torch_no_grad(lua_State *L) {
    return l_with_grad_mode(L, 0);
}
static int l_torch_enable_grad(lua_State *L) {
    return l_with_grad_mode(L, 1);
}

/* torch.set_grad_enabled(bool): sets the mode; the returned guard restores it. */
static int l_torch_set_grad_enabled(lua_State *L) {
    luaL_checktype(L, 1, LUA_TBOOLEAN);
    int previous = grad_mode_enabled();
    grad_mode_set(lua_toboolean(L, 1));
    l_push_grad_guard(L, previous);
    return 1;
}

/* torch.is_grad_enabled() */
static int l_torch_is_grad_enabled(lua_State *L) {
    lua_pushboolean(L, grad_mode_enabled());
    return 1;
}

/* torch.set_printoptions{precision=, threshold=, edgeitems=, linewidth=} (the printing
 * lives in lua/torch/format.lua). */
static int l_torch_set_printoptions(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    l_require(L, "torch.format");
    lua_getfield(L, -1, "set_printoptions");
    lua_pushvalue(L, 1);
    lua_call(L, 1, 0);
    return 0;
}

static const luaL_Reg torch_functions[] = {
    {"tensor", l_torch_tensor},
    {"zeros", l_torch_zeros},
    {"ones", l_torch_ones},
    {"empty", l_torch_empty},
    {"rand", l_torch_rand},
    {"randn", l_torch_randn},
    {"full", l_torch_full},
    {"zeros_like", l_torch_zeros_like},
    {"ones_like", l_torch_ones_like},
    {"empty_like", l_torch_empty_like},
    {"rand_like", l_torch_rand_like},
    {"randn_like", l_torch_randn_like},
    {"full_like", l_torch_full_like},
    {"randint", l_torch_randint},
    {"randperm", l_torch_randperm},
    {"arange", l_torch_arange},
    {"linspace", l_torch_linspace},
    {"eye", l_torch_eye},
    {"cat", l_torch_cat},
    {"stack", l_torch_stack},
    {"where", l_torch_where},
    {"is_tensor", l_torch_is_tensor},
    {"time", l_torch_time},
    {"no_grad", l_torch_no_grad},
    {"enable_grad", l_torch_enable_grad},
    {"set_grad_enabled", l_torch_set_grad_enabled},
    {"is_grad_enabled", l_torch_is_grad_enabled},
    {"set_printoptions", l_torch_set_printoptions},
    {NULL, NULL},
};

/* Tensor methods that are also torch.* functions, as in PyTorch. */
static const char *const method_twins[] = {
    "add",    "sub",          "mul",         "div",       "pow",     "neg",      "sqrt",
    "exp",    "log",          "abs",         "relu",      "tanh",    "sigmoid",  "sign",
    "square", "clamp",        "sum",         "mean",      "prod",    "norm",     "max",
    "min",    "argmax",       "argmin",      "maximum",   "minimum", "eq",       "ne",
    "lt",     "le",           "gt",          "ge",        "equal",   "allclose", "matmul",
    "mm",     "softmax",      "log_softmax", "numel",     "reshape", "flatten",  "transpose",
    "t",      "permute",      "squeeze",     "unsqueeze", "narrow",  "select",   "clone",
    "detach", "index_select", "chunk",       "split",     NULL,
};

/* bindings.h: the torch table with functions, method twins, dtypes, cuda, save/load. */
int luaopen_ddp_torch(lua_State *L) {
    l_tensor_open(L);
    luaL_newmetatable(L, GRAD_GUARD_MT);
    lua_pushcfunction(L, l_grad_guard_close);
    lua_setfield(L, -2, "__close");
    lua_pop(L, 1);

    luaL_newlib(L, torch_functions);
    l_push_tensor_methods(L);
    for (int i = 0; method_twins[i]; i++) {
        lua_getfield(L, -1, method_twins[i]);
        lua_setfield(L, -3, method_twins[i]);
    }
    lua_setfield(L, -2, "Tensor"); /* torch.Tensor: the methods table */

    static const struct {
        const char *name;
        dtype dt;
    } dtypes[] = {
        {"float32", DTYPE_FLOAT32}, {"float", DTYPE_FLOAT32}, {"float64", DTYPE_FLOAT64},
        {"double", DTYPE_FLOAT64},  {"int64", DTYPE_INT64},   {"long", DTYPE_INT64},
        {"bool", DTYPE_BOOL},
    };
    for (size_t i = 0; i < sizeof dtypes / sizeof dtypes[0]; i++) {
        l_push_dtype(L, dtypes[i].dt);
        lua_setfield(L, -2, dtypes[i].name);
    }
    l_cuda_open(L); /* torch.device, torch.cuda */
    l_random_open(L);
    l_guard_missing_dtypes(L, -1);
    return 1;
}
