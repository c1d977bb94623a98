/* l_tensor.c — the Tensor userdata: the box that holds one tensor reference, its
 * metatable (fields through __index, `t[i]` indexing from 0, __gc/__close), and the
 * methods that are about a tensor's shape and storage rather than arithmetic (views, copies, fills,
 * item/tolist, backward). Arithmetic methods are in l_tensor_ops.c.
 *
 * A box is created empty ("closed") before the core call that fills it, so a failing
 * call or a Lua error at any point leaves nothing leaked (STYLE.md habits 5 and 6).
 * Lua's == on tensors stays identity (Lua forces a boolean result): compare values with
 * t:eq(u) (element-wise) or torch.equal(t, u). */
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#include "lua/l_internal.h"
#include "nn/autograd.h"
#include "tensor/device.h"

typedef struct {
    tensor *t; /* owned reference; NULL once released */
} tensor_box;

static const char *const REG_BOX_CACHE = "ddp.tensor_boxes"; /* lightuserdata -> box */
static const char *const GRAD_FN_MT = "torch.grad_fn";

/* ---- the box ------------------------------------------------------------------------ */

tensor **l_new_box(lua_State *L) {
    tensor_box *box = lua_newuserdatauv(L, sizeof *box, 0);
    box->t = NULL;
    luaL_setmetatable(L, L_TENSOR_MT);
    return &box->t;
}

/* The one release path of a box (__gc, __close and t:free(), STYLE.md habit 6): drops
 * the box's reference at once (other views and the graph keep theirs) and leaves the
 * box empty, so a later use raises "tensor was released". Calling it again is harmless. */
static int l_tensor_release(lua_State *L) {
    tensor_box *box = luaL_checkudata(L, 1, L_TENSOR_MT);
    if (box->t) {
        tensor *t = box->t;
        box->t = NULL;
        tensor_release(t);
    }
    return 0;
}

/* t:free(): the release path above, for a box (released or not); t.free() is told to
 * use a colon. */
static int l_tensor_free(lua_State *L) {
    if (!luaL_testudata(L, 1, L_TENSOR_MT)) l_check_self(L);
    return l_tensor_release(L);
}

/* bindings.h: the tensor at idx or NULL (an empty box also gives NULL). */
tensor *ddp_lua_to_tensor(lua_State *L, int idx) {
    tensor_box *box = luaL_testudata(L, idx, L_TENSOR_MT);
    return box ? box->t : NULL;
}

/* See l_internal.h. */
tensor *l_opt_tensor(lua_State *L, int idx) {
    tensor_box *box = luaL_testudata(L, idx, L_TENSOR_MT);
    if (box && !box->t) /* raised at the learner's line, even from inside lua/optim.lua */
        ddp_lua_raise(L, DDP_FAIL(DDP_ERR_ARG, "a released tensor (by t:free() or a <close> "
                                               "variable) cannot be used"));
    return box ? box->t : NULL;
}

/* bindings.h: the live tensor at idx, or a Lua argument error. */
tensor *ddp_lua_check_tensor(lua_State *L, int idx) {
    tensor_box *box = luaL_testudata(L, idx, L_TENSOR_MT);
    if (!box) luaL_typeerror(L, idx, "tensor");
    if (!box->t) luaL_argerror(L, idx, "tensor was released (by t:free() or a <close> variable)");
    return box->t;
}

/* Makes the box for ddp_lua_push_tensor inside a protected call (arg: lightuserdata
 * slot to receive the box pointer). */
static int l_make_box_protected(lua_State *L) {
    tensor ***slot = lua_touserdata(L, 1);
    *slot = l_new_box(L);
    return 1;
}

/* bindings.h: the box is made in a protected call, so t is released if that fails. */
void ddp_lua_push_tensor(lua_State *L, tensor *t) {
    tensor **slot = NULL;
    lua_pushcfunction(L, l_make_box_protected);
    lua_pushlightuserdata(L, &slot);
    if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
        tensor_release(t);
        lua_error(L);
    }
    *slot = t;
}

/* See l_internal.h: reuses the live box of t from the weak cache. */
void l_push_shared_tensor(lua_State *L, tensor *t) {
    lua_getfield(L, LUA_REGISTRYINDEX, REG_BOX_CACHE);
    if (lua_rawgetp(L, -1, t) == LUA_TUSERDATA && ddp_lua_to_tensor(L, -1) == t) {
        lua_remove(L, -2);
        tensor_release(t); /* the live box already holds a reference */
        return;
    }
    lua_pop(L, 1);
    ddp_lua_push_tensor(L, t); /* releases t if the box cannot be made */
    lua_pushvalue(L, -1);
    lua_rawsetp(L, -3, t);
    lua_remove(L, -2);
}

/* Pushes "file:line:" of the innermost Lua function outside ddplab's own lua/ library,
 * so an error raised inside nn.Linear's forward points at the learner's line. */
static void l_learner_where(lua_State *L) {
    lua_Debug ar;
    const char *dir = getenv("DDPLAB_LUA_PATH"); /* modules may come from there instead */
    size_t dlen = dir ? strlen(dir) : 0;
    for (int level = 1; lua_getstack(L, level, &ar); level++) {
        if (!lua_getinfo(L, "Sl", &ar) || ar.currentline <= 0) continue;
        if (strncmp(ar.source, "@lua/", 5) == 0) continue; /* an embedded module */
        if (dlen && strncmp(ar.source + 1, dir, dlen) == 0 && ar.source[0] == '@') continue;
        lua_pushfstring(L, "%s:%d: ", ar.short_src, ar.currentline);
        return;
    }
    lua_pushliteral(L, "");
}

/* bindings.h: raises ddp_last_error(), positioned at the learner's line. */
int ddp_lua_raise(lua_State *L, ddp_status s) {
    const char *msg = ddp_last_error();
    if (!msg || !*msg) msg = ddp_status_name(s);
    l_learner_where(L);
    lua_pushstring(L, msg);
    lua_concat(L, 2);
    return lua_error(L);
}

/* See l_internal.h. */
void l_check(lua_State *L, ddp_status s) {
    if (s != DDP_OK) ddp_lua_raise(L, s);
}

/* ---- fields: __index / __newindex ----------------------------------------------------- */

/* Pushes the grad_fn object (`<AddBackward0>`) of t, or nil for a leaf. */
static void l_push_grad_fn(lua_State *L, const tensor *t) {
    const char *name = ag_grad_fn_name(t);
    if (!name) {
        lua_pushnil(L);
        return;
    }
    lua_createtable(L, 0, 1);
    lua_pushstring(L, name);
    lua_setfield(L, -2, "_name");
    luaL_setmetatable(L, GRAD_FN_MT);
}

/* grad_fn objects print as PyTorch shows them in a tensor: "<AddBackward0>". */
static int l_grad_fn_tostring(lua_State *L) {
    lua_getfield(L, 1, "_name");
    lua_pushfstring(L, "<%s>", lua_tostring(L, -1));
    return 1;
}

/* grad_fn:name() as in PyTorch. */
static int l_grad_fn_name(lua_State *L) {
    lua_getfield(L, 1, "_name");
    return 1;
}

/* The shape-changing view `t.T`: all dims reversed (a transpose for 2-D). */
static void l_push_T(lua_State *L, const tensor *t) {
    int64_t dims[TENSOR_MAX_DIMS];
    for (int i = 0; i < t->ndim; i++) dims[i] = t->ndim - 1 - i;
    tensor **slot = l_new_box(L);
    l_check(L, ag_permute(t, dims, t->ndim, slot));
}

/* t[i] -> t:select(0, i) */
static void l_push_row(lua_State *L, const tensor *t, lua_Integer i) {
    if (t->ndim == 0) luaL_error(L, "t[%I]: a 0-dim tensor cannot be indexed", (LUAI_UACINT)i);
    tensor **slot = l_new_box(L);
    l_check(L, ag_select(t, 0, (int64_t)i, slot));
}

/* The number key at 2 as an index: t[1.0] is t[1] (as 1.0 is for sizes), while t[1.5]
 * is an error rather than nil, which would only fail later and further away. */
static lua_Integer l_check_index(lua_State *L) {
    int is_int;
    lua_Integer i = lua_tointegerx(L, 2, &is_int);
    if (!is_int)
        luaL_error(L, "tensor indices must be integers (counted from 0), got %s",
                   lua_tostring(L, 2));
    return i;
}

/* Raises for t[k] with k neither a name nor a number: a PyTorch user's x[0, 1] written
 * x[{0, 1}] gets the indexing ddplab has (x[0][1]), a mask or a list a way to do it;
 * returning nil made a typo look like a missing value. */
static int l_bad_index_key(lua_State *L) {
    if (lua_type(L, 2) == LUA_TTABLE && !ddp_lua_to_tensor(L, 2)) {
        char ours[160] = "", theirs[160] = "";
        size_t n = lua_rawlen(L, 2), a = 0, b = 0;
        int ints = n > 0 && n <= 8;
        for (size_t i = 1; i <= n && ints; i++) {
            ints = lua_rawgeti(L, 2, (lua_Integer)i) == LUA_TNUMBER && lua_isinteger(L, -1);
            long long v = (long long)lua_tointeger(L, -1);
            lua_pop(L, 1);
            if (!ints) break;
            a += (size_t)snprintf(ours + a, sizeof ours - a, "[%lld]", v);
            b += (size_t)snprintf(theirs + b, sizeof theirs - b, i > 1 ? ", %lld" : "%lld", v);
        }
        if (ints)
            return luaL_error(L,
                              "x[{...}]: a tensor is indexed one dimension at a time; write "
                              "x%s (PyTorch's x[%s])",
                              ours, theirs);
        return luaL_error(L, "x[{...}]: index with integers one dimension at a time (x[0][1]); "
                             "for slices use x:narrow(dim, start, length), for a list of "
                             "indices x:index_select(dim, idx)");
    }
    if (ddp_lua_to_tensor(L, 2))
        return luaL_error(L, "x[t]: indexing with a tensor (a mask or a list of indices) is not "
                             "supported; use x:index_select(dim, idx) or torch.where");
    return luaL_error(L, "a tensor is indexed by an integer from 0 or a field name, got %s",
                      luaL_typename(L, 2));
}

/* __index: methods first (upvalue 1), then fields, then integer indices from 0. */
static int l_tensor_index(lua_State *L) {
    if (lua_type(L, 2) == LUA_TSTRING) {
        lua_pushvalue(L, 2);
        if (lua_rawget(L, lua_upvalueindex(1)) != LUA_TNIL) return 1;
        lua_pop(L, 1);
        tensor *t = l_check_self(L);
        const char *k = lua_tostring(L, 2);
        if (strcmp(k, "shape") == 0)
            l_push_size(L, t->sizes, t->ndim);
        else if (strcmp(k, "dtype") == 0)
            l_push_dtype(L, t->dtype);
        else if (strcmp(k, "device") == 0)
            l_push_device(L, t->storage->device);
        else if (strcmp(k, "grad") == 0) {
            if (t->grad)
                l_push_shared_tensor(L, tensor_retain(t->grad));
            else
                lua_pushnil(L);
        } else if (strcmp(k, "grad_fn") == 0)
            l_push_grad_fn(L, t);
        else if (strcmp(k, "requires_grad") == 0)
            lua_pushboolean(L, t->requires_grad);
        else if (strcmp(k, "_version") == 0) /* as PyTorch's t._version */
            lua_pushinteger(L, (lua_Integer)tensor_version(t));
        else if (strcmp(k, "is_leaf") == 0)
            lua_pushboolean(L, t->grad_fn == NULL);
        else if (strcmp(k, "ndim") == 0)
            lua_pushinteger(L, t->ndim);
        else if (strcmp(k, "T") == 0)
            l_push_T(L, t);
        else if (strcmp(k, "is_cuda") == 0)
            lua_pushboolean(L, t->storage->device.type == DEVICE_CUDA);
        else if (strcmp(k, "data") == 0) {
            tensor **slot = l_new_box(L);
            l_check(L, ag_detach(t, slot));
        } else
            lua_pushnil(L);
        return 1;
    }
    if (lua_type(L, 2) == LUA_TNUMBER) {
        l_push_row(L, l_check_self(L), l_check_index(L));
        return 1;
    }
    return l_bad_index_key(L);
}

/* t.grad = g (or nil): g must have t's shape. */
static void l_set_grad(lua_State *L, tensor *t) {
    tensor *g = NULL;
    if (!lua_isnil(L, 3)) {
        g = ddp_lua_check_tensor(L, 3);
        if (!tensor_same_shape(g, t)) {
            char a[64], b[64];
            luaL_error(L, "grad: assigned grad has shape %s, but the tensor has shape %s",
                       tensor_shape_str(g, a, sizeof a), tensor_shape_str(t, b, sizeof b));
        }
        if (g->dtype != t->dtype) /* as PyTorch: optimizers and accumulation expect it */
            luaL_error(L, "grad: assigned grad has dtype %s, but the tensor has dtype %s",
                       dtype_name(g->dtype), dtype_name(t->dtype));
    }
    tensor *old = t->grad;
    t->grad = tensor_retain(g);
    tensor_release(old);
}

/* t[i] = v: copies v (a number or a tensor broadcast to the row) into row i. */
static void l_set_row(lua_State *L, tensor *t) {
    lua_Integer i = l_check_index(L);
    int is_number = lua_type(L, 3) == LUA_TNUMBER || lua_type(L, 3) == LUA_TBOOLEAN;
    tensor *src = is_number ? NULL : ddp_lua_check_tensor(L, 3);
    if (t->ndim == 0) luaL_error(L, "t[%I] = v: a 0-dim tensor cannot be indexed", (LUAI_UACINT)i);
    tensor *c = l_inplace_clone(L, t, src, "index assignment");
    if (c) { /* recorded: t = old t * keep + placed, keep 0 on row i and 1 elsewhere */
        if (src && src->requires_grad)
            ddp_lua_raise(L, DDP_FAIL(DDP_ERR_ARG,
                                      "t[%lld] = v: ddplab cannot record an assignment of a "
                                      "tensor that requires grad; build the tensor with "
                                      "torch.cat or torch.stack instead",
                                      (long long)i));
        tensor **keep = l_new_box(L), **placed = l_new_box(L), **krow = l_new_box(L),
               **prow = l_new_box(L);
        l_check(L, tensor_full(t->sizes, t->ndim, t->dtype, t->storage->device, 1.0, keep));
        l_check(L, tensor_zeros(t->sizes, t->ndim, t->dtype, t->storage->device, placed));
        l_check(L, tensor_select(*keep, 0, (int64_t)i, krow));
        l_check(L, tensor_fill_(*krow, 0.0));
        l_check(L, tensor_select(*placed, 0, (int64_t)i, prow));
        double v = lua_type(L, 3) == LUA_TBOOLEAN ? lua_toboolean(L, 3) : lua_tonumber(L, 3);
        l_check(L, is_number ? tensor_fill_(*prow, v) : tensor_copy_(*prow, src));
        tensor **kept = l_new_box(L), **r = l_new_box(L);
        l_check(L, ag_binary(BINARY_MUL, c, *keep, kept));
        l_check(L, ag_binary(BINARY_ADD, *kept, *placed, r));
        l_inplace_finish(L, t, *r, "index assignment");
        return;
    }
    tensor **row = l_new_box(L);
    l_check(L, tensor_select(t, 0, (int64_t)i, row));
    double v = lua_type(L, 3) == LUA_TBOOLEAN ? lua_toboolean(L, 3) : lua_tonumber(L, 3);
    l_check(L, is_number ? tensor_fill_(*row, v) : tensor_copy_(*row, src));
    lua_pop(L, 1);
}

/* __newindex: requires_grad, grad, data, and integer rows; anything else is refused. */
static int l_tensor_newindex(lua_State *L) {
    tensor *t = l_check_self(L);
    if (lua_type(L, 2) == LUA_TNUMBER) {
        l_set_row(L, t);
        return 0;
    }
    if (lua_type(L, 2) != LUA_TSTRING) return l_bad_index_key(L);
    const char *k = luaL_checkstring(L, 2);
    if (strcmp(k, "requires_grad") == 0) {
        luaL_checktype(L, 3, LUA_TBOOLEAN);
        l_check(L, ag_set_requires_grad(t, lua_toboolean(L, 3)));
    } else if (strcmp(k, "grad") == 0) {
        l_set_grad(L, t);
    } else if (strcmp(k, "data") == 0) {
        /* t.data = src: t now holds src's values, on src's device and dtype (what
         * module:to does to each parameter, as PyTorch does) */
        tensor *src = ddp_lua_check_tensor(L, 3);
        if (t->grad_fn)
            luaL_error(L, "data: only a leaf tensor's data can be replaced (this one was "
                          "computed; use detach())");
        if (t->requires_grad && !dtype_is_float(src->dtype))
            luaL_error(L, "data: a tensor that requires grad needs float data, got %s",
                       dtype_name(src->dtype));
        tensor_set_data(t, src);
    } else {
        luaL_error(L,
                   "cannot set field '%s' of a tensor (settable: requires_grad, grad, "
                   "data, t[i])",
                   k);
    }
    return 0;
}

/* #t is t:size(0). */
static int l_tensor_len(lua_State *L) {
    tensor *t = l_check_self(L);
    if (t->ndim == 0) luaL_error(L, "len() of a 0-d tensor");
    lua_pushinteger(L, (lua_Integer)t->sizes[0]);
    return 1;
}

/* __tostring: PyTorch's format, written in lua/torch/format.lua. */
static int l_tensor_tostring(lua_State *L) {
    tensor_box *box = luaL_checkudata(L, 1, L_TENSOR_MT);
    if (!box->t) {
        lua_pushliteral(L, "tensor(<released>)");
        return 1;
    }
    l_require(L, "torch.format");
    lua_getfield(L, -1, "tensor_repr");
    lua_pushvalue(L, 1);
    lua_call(L, 1, 1);
    return 1;
}

/* ---- shape and storage methods -------------------------------------------------------- */

/* t:size() -> torch.Size and t:stride() -> list of strides (in elements); with a dim,
 * t:size(dim) / t:stride(dim) -> integer. `op` is "size" or "stride". */
static int l_per_dim(lua_State *L, const char *op, bool strides) {
    tensor *t = l_check_self(L);
    const int64_t *v = strides ? t->strides : t->sizes;
    if (lua_isnoneornil(L, 2)) {
        if (!strides) {
            l_push_size(L, v, t->ndim);
            return 1;
        }
        lua_createtable(L, t->ndim, 0);
        for (int i = 0; i < t->ndim; i++) {
            lua_pushinteger(L, (lua_Integer)v[i]);
            lua_rawseti(L, -2, i + 1);
        }
        return 1;
    }
    int d;
    lua_Integer dim = luaL_checkinteger(L, 2);
    if (t->ndim == 0) /* wrap_dim accepts 0 for a scalar, but there is no value to read */
        luaL_error(L, "%s: dimension %I given, but a 0-dim tensor has no dimensions", op,
                   (LUAI_UACINT)dim);
    l_check(L, tensor_wrap_dim(op, dim, t->ndim, &d));
    lua_pushinteger(L, (lua_Integer)v[d]);
    return 1;
}
/* t:size(dim?) and t:stride(dim?), see l_per_dim. */
static int l_tensor_size(lua_State *L) {
    return l_per_dim(L, "size", false);
}
static int l_tensor_stride(lua_State *L) {
    return l_per_dim(L, "stride", true);
}

/* Plain queries: dim/ndimension, numel/nelement, is_contiguous, is_floating_point. */
static int l_tensor_dim(lua_State *L) {
    lua_pushinteger(L, l_check_self(L)->ndim);
    return 1;
}

static int l_tensor_numel(lua_State *L) {
    lua_pushinteger(L, (lua_Integer)tensor_numel(l_check_self(L)));
    return 1;
}

static int l_tensor_is_contiguous(lua_State *L) {
    lua_pushboolean(L, tensor_is_contiguous(l_check_self(L)));
    return 1;
}

static int l_tensor_is_floating_point(lua_State *L) {
    lua_pushboolean(L, dtype_is_float(l_check_self(L)->dtype));
    return 1;
}

/* view/reshape/expand/permute share one shape: (self, sizes... | {sizes}). */
typedef ddp_status (*sizes_op)(const tensor *, const int64_t *, int, tensor **);
/* Runs a sizes_op on (self, sizes...); the result box is pushed. Raises on error. */
static int l_sizes_method(lua_State *L, sizes_op fn, const char *name) {
    tensor *t = l_check_self(L);
    int64_t sizes[TENSOR_MAX_DIMS];
    int n = l_check_sizes(L, 2, lua_gettop(L), name, sizes);
    tensor **slot = l_new_box(L);
    l_check(L, fn(t, sizes, n, slot));
    return 1;
}
/* view/reshape/expand/permute: the sizes (or dims) as varargs or one table. */
static int l_tensor_view(lua_State *L) {
    return l_sizes_method(L, ag_view, "view");
}
static int l_tensor_reshape(lua_State *L) {
    return l_sizes_method(L, ag_reshape, "reshape");
}
static int l_tensor_expand(lua_State *L) {
    return l_sizes_method(L, ag_expand, "expand");
}
static int l_tensor_permute(lua_State *L) {
    return l_sizes_method(L, ag_permute, "permute");
}

/* t:expand_as(other): a broadcast view with other's sizes. */
static int l_tensor_expand_as(lua_State *L) {
    tensor *t = l_check_self(L);
    tensor *other = l_check_other(L, 2);
    tensor **slot = l_new_box(L);
    l_check(L, ag_expand(t, other->sizes, other->ndim, slot));
    return 1;
}

/* t:narrow(dim, start, length): a view of `length` entries from `start`. */
static int l_tensor_narrow(lua_State *L) {
    tensor *t = l_check_self(L);
    lua_Integer dim = luaL_checkinteger(L, 2), start = luaL_checkinteger(L, 3);
    lua_Integer length = luaL_checkinteger(L, 4);
    tensor **slot = l_new_box(L);
    l_check(L, ag_narrow(t, dim, start, length, slot));
    return 1;
}

/* t:select(dim, index): a view without `dim` (t[i] is select(0, i)). */
static int l_tensor_select(lua_State *L) {
    tensor *t = l_check_self(L);
    lua_Integer dim = luaL_checkinteger(L, 2), index = luaL_checkinteger(L, 3);
    tensor **slot = l_new_box(L);
    l_check(L, ag_select(t, dim, index, slot));
    return 1;
}

/* t:transpose(dim0, dim1): a view with the two dims swapped. */
static int l_tensor_transpose(lua_State *L) {
    tensor *t = l_check_self(L);
    lua_Integer d0 = luaL_checkinteger(L, 2), d1 = luaL_checkinteger(L, 3);
    tensor **slot = l_new_box(L);
    l_check(L, ag_transpose(t, d0, d1, slot));
    return 1;
}

/* t:t(): transpose of a 2-D tensor; 0-D and 1-D come back as they are, as in PyTorch. */
static int l_tensor_t(lua_State *L) {
    tensor *t = l_check_self(L);
    if (t->ndim > 2)
        luaL_error(L, "t() expects a tensor with <= 2 dimensions, but self is %dD", t->ndim);
    if (t->ndim < 2) {
        lua_settop(L, 1);
        return 1;
    }
    tensor **slot = l_new_box(L);
    l_check(L, ag_transpose(t, 0, 1, slot));
    return 1;
}

/* t:unsqueeze(dim): a view with a size-1 dim inserted. */
static int l_tensor_unsqueeze(lua_State *L) {
    tensor *t = l_check_self(L);
    lua_Integer dim = luaL_checkinteger(L, 2);
    tensor **slot = l_new_box(L);
    l_check(L, ag_unsqueeze(t, dim, slot));
    return 1;
}

/* t:squeeze(dim?): drops size-1 dims (all of them, or the one named). */
static int l_tensor_squeeze(lua_State *L) {
    tensor *t = l_check_self(L);
    int64_t dim = 0;
    int has_dim = !lua_isnoneornil(L, 2);
    if (has_dim) dim = luaL_checkinteger(L, 2);
    tensor **slot = l_new_box(L);
    l_check(L, ag_squeeze(t, has_dim ? &dim : NULL, slot));
    return 1;
}

/* t:flatten(start_dim=0, end_dim=-1) */
static int l_tensor_flatten(lua_State *L) {
    tensor *t = l_check_self(L);
    lua_Integer start = luaL_optinteger(L, 2, 0), end = luaL_optinteger(L, 3, -1);
    tensor **slot = l_new_box(L);
    l_check(L, ag_flatten(t, start, end, slot));
    return 1;
}

/* t:contiguous() is t itself when already contiguous. */
static int l_tensor_contiguous(lua_State *L) {
    tensor *t = l_check_self(L);
    if (tensor_is_contiguous(t)) {
        lua_settop(L, 1);
        return 1;
    }
    tensor **slot = l_new_box(L);
    l_check(L, ag_contiguous(t, slot));
    return 1;
}

/* t:clone(): a contiguous copy that stays in the graph. */
static int l_tensor_clone(lua_State *L) {
    tensor *t = l_check_self(L);
    tensor **slot = l_new_box(L);
    l_check(L, ag_clone(t, slot));
    return 1;
}

/* t:detach(): shares storage, cut from the graph. */
static int l_tensor_detach(lua_State *L) {
    tensor *t = l_check_self(L);
    tensor **slot = l_new_box(L);
    l_check(L, ag_detach(t, slot));
    return 1;
}

/* See l_internal.h. */
tensor *l_inplace_clone(lua_State *L, tensor *t, const tensor *other, const char *op) {
    bool record;
    l_check(L, ag_inplace_begin(t, other, op, &record));
    if (!record) return NULL;
    tensor **c = l_new_box(L);
    l_check(L, ag_clone(t, c));
    return *c;
}

/* See l_internal.h. */
void l_inplace_finish(lua_State *L, tensor *t, const tensor *result, const char *op) {
    l_check(L, ag_inplace_adopt(t, result, op));
    lua_settop(L, 1);
}

/* The recorded form of filling t with v, or with src (broadcast, converted to t's dtype)
 * when src is given: old t * 0 + v, so the gradient of t's old value is zero and src's
 * is the incoming one summed to its shape, as PyTorch's fill_ and copy_. Leaves t on top. */
static void l_fill_recorded(lua_State *L, tensor *t, tensor *c, double v, tensor *src,
                            const char *op) {
    tensor **zero = l_new_box(L);
    l_check(L, ag_binary_scalar(BINARY_MUL, c, 0.0, zero));
    tensor **r = l_new_box(L);
    if (src) {
        tensor **conv = l_new_box(L);
        l_check(L, src->dtype == t->dtype ? ag_clone(src, conv) : ag_to_dtype(src, t->dtype, conv));
        l_check(L, ag_binary(BINARY_ADD, *zero, *conv, r));
    } else {
        l_check(L, ag_binary_scalar(BINARY_ADD, *zero, v, r));
    }
    l_inplace_finish(L, t, *r, op);
}

/* t:copy_(src): src broadcast into t, converting dtype. Returns t. */
static int l_tensor_copy_(lua_State *L) {
    tensor *t = l_check_self(L);
    tensor *src = l_check_other(L, 2);
    tensor *c = l_inplace_clone(L, t, src, "copy_");
    if (c) {
        l_fill_recorded(L, t, c, 0.0, src, "copy_");
        return 1;
    }
    l_check(L, tensor_copy_(t, src));
    lua_settop(L, 1);
    return 1;
}

/* t:fill_(v): every element set to v (a number or boolean). Returns t. */
static int l_tensor_fill_(lua_State *L) {
    tensor *t = l_check_self(L);
    double v = lua_isboolean(L, 2) ? lua_toboolean(L, 2) : luaL_checknumber(L, 2);
    tensor *c = l_inplace_clone(L, t, NULL, "fill_");
    if (c) {
        l_fill_recorded(L, t, c, v, NULL, "fill_");
        return 1;
    }
    l_check(L, tensor_fill_(t, v));
    lua_settop(L, 1);
    return 1;
}

/* t:zero_(): fill with 0. Returns t. */
static int l_tensor_zero_(lua_State *L) {
    tensor *t = l_check_self(L);
    tensor *c = l_inplace_clone(L, t, NULL, "zero_");
    if (c) {
        l_fill_recorded(L, t, c, 0.0, NULL, "zero_");
        return 1;
    }
    l_check(L, tensor_fill_(t, 0.0));
    lua_settop(L, 1);
    return 1;
}

/* The trailing {generator=} of t:uniform_ / t:normal_: its generator (NULL: the default
 * one); *nargs is set to the count of the arguments before it. */
static ddp_generator *l_fill_generator(lua_State *L, const char *fn, int *nargs) {
    static const char *const keys[] = {"generator", NULL};
    int top = lua_gettop(L);
    *nargs = top;
    if (top < 2 || !lua_istable(L, top)) return NULL;
    *nargs = top - 1;
    ddp_lua_check_option_keys(L, top, fn, keys);
    return l_opt_generator(L, top);
}

/* t:uniform_(a=0, b=1, {generator=}). Returns t. */
static int l_tensor_uniform_(lua_State *L) {
    tensor *t = l_check_self(L);
    int nargs;
    ddp_generator *g = l_fill_generator(L, "uniform_", &nargs);
    double lo = nargs >= 2 ? luaL_optnumber(L, 2, 0.0) : 0.0;
    double hi = nargs >= 3 ? luaL_optnumber(L, 3, 1.0) : 1.0;
    l_check(L, ag_check_inplace(t, "uniform_"));
    l_check(L, tensor_uniform_(t, lo, hi, g));
    lua_settop(L, 1);
    return 1;
}

/* t:normal_(mean=0, std=1, {generator=}). Returns t. */
static int l_tensor_normal_(lua_State *L) {
    tensor *t = l_check_self(L);
    int nargs;
    ddp_generator *g = l_fill_generator(L, "normal_", &nargs);
    double mean = nargs >= 2 ? luaL_optnumber(L, 2, 0.0) : 0.0;
    double std = nargs >= 3 ? luaL_optnumber(L, 3, 1.0) : 1.0;
    l_check(L, ag_check_inplace(t, "normal_"));
    l_check(L, tensor_normal_(t, mean, std, g));
    lua_settop(L, 1);
    return 1;
}

/* t:requires_grad_(on=true) on a leaf. Returns t. */
static int l_tensor_requires_grad_(lua_State *L) {
    tensor *t = l_check_self(L);
    int on = lua_isnoneornil(L, 2) ? 1 : lua_toboolean(L, 2);
    l_check(L, ag_set_requires_grad(t, on));
    lua_settop(L, 1);
    return 1;
}

/* Pushes element `flat` as an integer, boolean or number by dtype. */
static void l_push_element(lua_State *L, const tensor *t, int64_t flat) {
    switch (t->dtype) {
    case DTYPE_INT64:
        lua_pushinteger(L, (lua_Integer)tensor_get_int64(t, flat));
        break;
    case DTYPE_BOOL:
        lua_pushboolean(L, tensor_get(t, flat) != 0.0);
        break;
    default:
        lua_pushnumber(L, tensor_get(t, flat));
        break;
    }
}

/* t:item(): the value of a one-element tensor (integer for int64, boolean for bool). */
static int l_tensor_item(lua_State *L) {
    tensor *t = l_check_self(L);
    double v;
    l_check(L, tensor_item(t, &v));
    l_push_element(L, t, 0);
    return 1;
}

/* t:_item_at(flat): one element by row-major position, for lua/torch/format.lua. */
static int l_tensor_item_at(lua_State *L) {
    tensor *t = l_check_self(L);
    lua_Integer flat = luaL_checkinteger(L, 2);
    luaL_argcheck(L, flat >= 0 && flat < tensor_numel(t), 2, "position out of range");
    l_push_element(L, t, flat);
    return 1;
}

/* Builds the nested list of dims [d, ndim) starting at row-major position *flat. */
static void l_tolist_dim(lua_State *L, const tensor *t, int d, int64_t *flat) {
    lua_createtable(L, (int)t->sizes[d], 0);
    for (int64_t i = 0; i < t->sizes[d]; i++) {
        if (d == t->ndim - 1)
            l_push_element(L, t, (*flat)++);
        else
            l_tolist_dim(L, t, d + 1, flat);
        lua_rawseti(L, -2, (lua_Integer)(i + 1));
    }
}

/* See l_internal.h: a 0-dim tensor gives its value, others nested lists from 1. */
void l_push_tolist(lua_State *L, const tensor *t) {
    luaL_checkstack(L, t->ndim + 4, "tolist");
    if (t->ndim == 0) {
        l_push_element(L, t, 0);
        return;
    }
    int64_t flat = 0;
    l_tolist_dim(L, t, 0, &flat);
}

/* t:tolist() */
static int l_tensor_tolist(lua_State *L) {
    tensor *t = l_check_self(L);
    if (!tensor_is_cpu(t)) { /* one copy across, not one per element */
        tensor **host = l_new_box(L);
        l_check(L, tensor_to_device(t, DEVICE_CPU_VALUE, t->dtype, host));
        t = *host;
    }
    l_push_tolist(L, t);
    return 1;
}

/* t:backward(grad?, {retain_graph=}) */
static int l_tensor_backward(lua_State *L) {
    tensor *t = l_check_self(L);
    tensor *grad = NULL;
    int opts = 0;
    if (lua_istable(L, 2))
        opts = 2;
    else if (!lua_isnoneornil(L, 2))
        grad = ddp_lua_check_tensor(L, 2);
    if (lua_istable(L, 3)) opts = 3;
    static const char *const keys[] = {"retain_graph", NULL};
    if (opts) ddp_lua_check_option_keys(L, opts, "backward", keys);
    int retain = l_opt_boolean(L, opts, "retain_graph", 0);
    /* A graph lives on one device (moves between devices are not recorded): the
     * gradient given must be on the root's. */
    if (grad && !device_equal(t->storage->device, grad->storage->device)) {
        char dt[16], dg[16];
        return luaL_error(L, "backward: the gradient is on %s but the tensor is on %s",
                          device_name(grad->storage->device, dg, sizeof dg),
                          device_name(t->storage->device, dt, sizeof dt));
    }
    lua_State *prev = l_grad_hook_enter(L);
    ddp_status s = ag_backward(t, grad, retain);
    l_grad_hook_leave(prev);
    if (s != DDP_OK) l_grad_hook_raise_pending(L);
    l_check(L, s);
    return 0;
}

/* self converted to dt (differentiable), or self itself when it has dt already: to()
 * and its shorthands float()/double()/long()/bool(). */
static int l_to_dtype(lua_State *L, dtype dt) {
    tensor *t = l_check_self(L);
    if (t->dtype == dt) {
        lua_settop(L, 1);
        return 1;
    }
    tensor **slot = l_new_box(L);
    l_check(L, ag_to_dtype(t, dt, slot));
    return 1;
}

/* Moves self to dev as dtype dt (plain "cuda" is the current GPU), or converts its
 * dtype when the device stays. Differentiable, as in PyTorch: the gradient of the copy
 * flows back to self's device (module:to() moves detached parameters instead). */
static int l_to_device(lua_State *L, device dev, dtype dt) {
    tensor *t = l_check_self(L);
    l_check(L, device_resolve(&dev));
    if (device_equal(dev, t->storage->device)) return l_to_dtype(L, dt);
    tensor **slot = l_new_box(L);
    l_check(L, ag_to_device(t, dev, dt, slot));
    return 1;
}

/* t:to(dtype | device | "cpu" | "cuda:1" | other tensor | {dtype=, device=}) */
static int l_tensor_to(lua_State *L) {
    tensor *t = l_check_self(L);
    dtype dt = t->dtype;
    device dev = t->storage->device;
    tensor *other = l_opt_tensor(L, 2);
    if (other) {
        dt = other->dtype;
        dev = other->storage->device;
    } else if (l_is_dtype(L, 2)) {
        dt = l_check_dtype(L, 2);
    } else if (l_is_device(L, 2)) {
        dev = l_check_device(L, 2);
        if (!lua_isnoneornil(L, 3)) dt = l_check_dtype(L, 3);
    } else if (lua_type(L, 2) == LUA_TSTRING) {
        const char *s = lua_tostring(L, 2);
        if (!dtype_parse(s, &dt) && device_parse(s, &dev) != DDP_OK)
            luaL_argerror(L, 2, "expected a dtype, a device (\"cpu\", \"cuda\") or a tensor");
        if (lua_type(L, 3) == LUA_TSTRING || l_is_dtype(L, 3)) dt = l_check_dtype(L, 3);
    } else if (lua_istable(L, 2)) {
        static const char *const keys[] = {"dtype", "device", NULL};
        ddp_lua_check_option_keys(L, 2, "to", keys);
        l_create_options o;
        l_check_create_options(L, 2, t->dtype, &o);
        dt = o.dt;
        if (lua_getfield(L, 2, "device") != LUA_TNIL) dev = o.dev;
        lua_pop(L, 1);
    } else {
        luaL_typeerror(L, 2, "dtype, device or tensor");
    }
    lua_settop(L, 1);
    return l_to_device(L, dev, dt);
}

/* float(), double(), long(), bool() */
static int l_tensor_float(lua_State *L) {
    return l_to_dtype(L, DTYPE_FLOAT32);
}
static int l_tensor_double(lua_State *L) {
    return l_to_dtype(L, DTYPE_FLOAT64);
}
static int l_tensor_long(lua_State *L) {
    return l_to_dtype(L, DTYPE_INT64);
}
static int l_tensor_bool(lua_State *L) {
    return l_to_dtype(L, DTYPE_BOOL);
}

/* t:cpu(): t itself when on the CPU, else a copy there. */
static int l_tensor_cpu(lua_State *L) {
    tensor *t = l_check_self(L);
    lua_settop(L, 1);
    return l_to_device(L, DEVICE_CPU_VALUE, t->dtype);
}

/* t:cuda(device=current): t itself when already there, else a copy there. */
static int l_tensor_cuda(lua_State *L) {
    tensor *t = l_check_self(L);
    device dev = {DEVICE_CUDA, DEVICE_INDEX_CURRENT};
    if (lua_isinteger(L, 2)) {
        lua_Integer i = lua_tointeger(L, 2);
        dev.index = i >= 0 && i < 1024 ? (int)i : 1024;
    } else if (!lua_isnoneornil(L, 2)) {
        dev = l_check_device(L, 2);
        if (dev.type != DEVICE_CUDA) luaL_argerror(L, 2, "expected a CUDA device");
    }
    lua_settop(L, 1);
    return l_to_device(L, dev, t->dtype);
}

static const luaL_Reg tensor_methods[] = {
    {"size", l_tensor_size},
    {"stride", l_tensor_stride},
    {"dim", l_tensor_dim},
    {"ndimension", l_tensor_dim},
    {"numel", l_tensor_numel},
    {"nelement", l_tensor_numel},
    {"is_contiguous", l_tensor_is_contiguous},
    {"is_floating_point", l_tensor_is_floating_point},
    {"view", l_tensor_view},
    {"reshape", l_tensor_reshape},
    {"expand", l_tensor_expand},
    {"expand_as", l_tensor_expand_as},
    {"permute", l_tensor_permute},
    {"narrow", l_tensor_narrow},
    {"select", l_tensor_select},
    {"transpose", l_tensor_transpose},
    {"t", l_tensor_t},
    {"unsqueeze", l_tensor_unsqueeze},
    {"squeeze", l_tensor_squeeze},
    {"flatten", l_tensor_flatten},
    {"contiguous", l_tensor_contiguous},
    {"clone", l_tensor_clone},
    {"detach", l_tensor_detach},
    {"copy_", l_tensor_copy_},
    {"fill_", l_tensor_fill_},
    {"zero_", l_tensor_zero_},
    {"uniform_", l_tensor_uniform_},
    {"normal_", l_tensor_normal_},
    {"requires_grad_", l_tensor_requires_grad_},
    {"item", l_tensor_item},
    {"_item_at", l_tensor_item_at},
    {"tolist", l_tensor_tolist},
    {"backward", l_tensor_backward},
    {"to", l_tensor_to},
    {"float", l_tensor_float},
    {"double", l_tensor_double},
    {"long", l_tensor_long},
    {"bool", l_tensor_bool},
    {"cpu", l_tensor_cpu},
    {"cuda", l_tensor_cuda},
    {"free", l_tensor_free},
    {NULL, NULL},
};

static const luaL_Reg tensor_metamethods[] = {
    {"__len", l_tensor_len},           {"__tostring", l_tensor_tostring},
    {"__newindex", l_tensor_newindex}, {"__gc", l_tensor_release},
    {"__close", l_tensor_release},     {NULL, NULL},
};

/* See l_internal.h. */
void l_push_tensor_methods(lua_State *L) {
    luaL_getmetatable(L, L_TENSOR_MT);
    lua_getfield(L, -1, "methods");
    lua_remove(L, -2);
}

/* Creates the Tensor metatable, its methods table and the value types, once per state. */
void l_tensor_open(lua_State *L) {
    if (luaL_getmetatable(L, L_TENSOR_MT) != LUA_TNIL) {
        lua_pop(L, 1);
        return;
    }
    lua_pop(L, 1);
    l_types_open(L);

    luaL_newmetatable(L, GRAD_FN_MT);
    lua_pushcfunction(L, l_grad_fn_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_newtable(L);
    lua_pushcfunction(L, l_grad_fn_name);
    lua_setfield(L, -2, "name");
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);

    /* boxes by tensor pointer, weak values: a box leaves when it is collected */
    lua_newtable(L);
    lua_createtable(L, 0, 1);
    lua_pushliteral(L, "v");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
    lua_setfield(L, LUA_REGISTRYINDEX, REG_BOX_CACHE);

    luaL_newmetatable(L, L_TENSOR_MT);
    luaL_setfuncs(L, tensor_metamethods, 0);
    l_tensor_ops_register(L); /* arithmetic metamethods, from l_tensor_ops.c */
    lua_newtable(L);          /* methods */
    luaL_setfuncs(L, tensor_methods, 0);
    l_tensor_ops_methods(L);
    l_grad_hook_methods(L);
    lua_pushvalue(L, -1);
    lua_setfield(L, -3, "methods");
    lua_pushcclosure(L, l_tensor_index, 1);
    lua_setfield(L, -2, "__index");
    /* the fields l_tensor_index computes, for REPL completion (which never calls __index) */
    static const char *const computed_fields[] = {
        "shape",   "dtype", "device", "grad",    "grad_fn", "requires_grad",
        "is_leaf", "ndim",  "T",      "is_cuda", "data",    "_version"};
    int nfields = (int)(sizeof computed_fields / sizeof *computed_fields);
    lua_createtable(L, nfields, 0);
    for (int i = 0; i < nfields; i++) {
        lua_pushstring(L, computed_fields[i]);
        lua_rawseti(L, -2, i + 1);
    }
    lua_setfield(L, -2, "fields");
    lua_pop(L, 1);
}
