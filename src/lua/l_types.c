/* l_types.c — the small value types of the Lua API and the argument parsers every
 * binding shares: interned dtype objects (torch.float32 prints "torch.float32" and
 * compares with ==), torch.Size (a Lua list counted from 1 that prints
 * "torch.Size([4, 5])" and compares by value), sizes given as varargs or a table, and
 * trailing option tables ({dtype=, device=, requires_grad=}). */
#include <lauxlib.h>
#include <string.h>

#include "lua/l_internal.h"
#include "tensor/device.h"
#include "nn/autograd.h"

static const char *const REG_DTYPES = "ddp.dtypes"; /* enum -> dtype object */
static const char *const DTYPE_MT = "torch.dtype";
static const char *const SIZE_MT = "torch.Size";

/* ---- dtype objects ------------------------------------------------------------------- */

void l_push_dtype(lua_State *L, dtype dt) {
    lua_getfield(L, LUA_REGISTRYINDEX, REG_DTYPES);
    lua_rawgeti(L, -1, (lua_Integer)dt);
    lua_remove(L, -2);
}

/* See l_internal.h. */
int l_is_dtype(lua_State *L, int idx) {
    return luaL_testudata(L, idx, DTYPE_MT) != NULL;
}

/* See l_internal.h: a dtype object or its name; raises an argument error otherwise. */
dtype l_check_dtype(lua_State *L, int idx) {
    const dtype *d = luaL_testudata(L, idx, DTYPE_MT);
    if (d) return *d;
    dtype dt;
    if (lua_type(L, idx) == LUA_TSTRING && dtype_parse(lua_tostring(L, idx), &dt)) return dt;
    luaL_argerror(L, idx,
                  "dtype expected (torch.float32, torch.float64, torch.int64 or "
                  "torch.bool)");
    return DTYPE_FLOAT32;
}

/* dtype objects print as "torch.float32". */
static int l_dtype_tostring(lua_State *L) {
    const dtype *d = luaL_checkudata(L, 1, DTYPE_MT);
    lua_pushfstring(L, "torch.%s", dtype_name(*d));
    return 1;
}

/* dtype fields: is_floating_point, itemsize, name. */
static int l_dtype_index(lua_State *L) {
    const dtype *d = luaL_checkudata(L, 1, DTYPE_MT);
    const char *k = luaL_checkstring(L, 2);
    if (strcmp(k, "is_floating_point") == 0)
        lua_pushboolean(L, dtype_is_float(*d));
    else if (strcmp(k, "itemsize") == 0)
        lua_pushinteger(L, (lua_Integer)dtype_size(*d));
    else if (strcmp(k, "name") == 0)
        lua_pushstring(L, dtype_name(*d));
    else
        lua_pushnil(L);
    return 1;
}

/* ---- torch.Size ---------------------------------------------------------------------- */

/* torch.Size([4, 5]). The metamethods and numel may be called on any value (they are
 * reachable through getmetatable), so they take a table and its raw length only: luaL_len
 * also measures strings and tensors, and obeys a __len that may say 2^63. */
static int l_size_tostring(lua_State *L) {
    luaL_Buffer b;
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_Integer n = (lua_Integer)lua_rawlen(L, 1);
    luaL_buffinit(L, &b);
    luaL_addstring(&b, "torch.Size([");
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, 1, i);
        lua_pushfstring(L, i > 1 ? ", %I" : "%I", (LUAI_UACINT)lua_tointeger(L, -1));
        lua_remove(L, -2);
        luaL_addvalue(&b);
    }
    luaL_addstring(&b, "])");
    luaL_pushresult(&b);
    return 1;
}

/* Two sizes are equal when they list the same numbers (`a.shape == b.shape`). */
static int l_size_eq(lua_State *L) {
    if (!lua_istable(L, 1) || !lua_istable(L, 2)) {
        lua_pushboolean(L, 0);
        return 1;
    }
    lua_Integer n = (lua_Integer)lua_rawlen(L, 1);
    int same = n == (lua_Integer)lua_rawlen(L, 2);
    for (lua_Integer i = 1; same && i <= n; i++) {
        lua_rawgeti(L, 1, i);
        lua_rawgeti(L, 2, i);
        same = lua_rawequal(L, -1, -2);
        lua_pop(L, 2);
    }
    lua_pushboolean(L, same);
    return 1;
}

/* size:numel(): the product of the sizes. A torch.Size is a plain table that its owner
 * may edit, so each entry is checked, and so is the product (no signed overflow). */
static int l_size_numel(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_Integer n = (lua_Integer)lua_rawlen(L, 1), p = 1;
    for (lua_Integer i = 1; i <= n; i++) {
        int is_int = 0;
        lua_rawgeti(L, 1, i);
        lua_Integer v = lua_tointegerx(L, -1, &is_int);
        if (!is_int || v < 0)
            return luaL_error(L, "numel: size %I is %s, not a size (a whole number >= 0)",
                              (LUAI_UACINT)i, luaL_tolstring(L, -1, NULL));
        if (v != 0 && p > LUA_MAXINTEGER / v)
            return luaL_error(L, "numel: the product of the sizes does not fit in 64 bits");
        p *= v;
        lua_pop(L, 1);
    }
    lua_pushinteger(L, p);
    return 1;
}

/* See l_internal.h. */
void l_push_size(lua_State *L, const int64_t *sizes, int ndim) {
    lua_createtable(L, ndim, 0);
    for (int i = 0; i < ndim; i++) {
        lua_pushinteger(L, (lua_Integer)sizes[i]);
        lua_rawseti(L, -2, i + 1);
    }
    luaL_setmetatable(L, SIZE_MT);
}

/* ---- argument helpers ---------------------------------------------------------------- */

int l_check_sizes(lua_State *L, int first, int last, const char *op,
                  int64_t sizes[TENSOR_MAX_DIMS]) {
    if (first <= last && lua_istable(L, first) && !l_is_options(L, first)) {
        if (first != last) luaL_argerror(L, first + 1, "sizes go in one table or as numbers");
        lua_Integer n = luaL_len(L, first);
        if (n > TENSOR_MAX_DIMS)
            luaL_error(L, "%s: %d dimensions given, at most %d are supported", op, (int)n,
                       TENSOR_MAX_DIMS);
        for (lua_Integer i = 1; i <= n; i++) {
            int is_int = 0;
            lua_Integer v = 0;
            /* whole floats (1e3, 2^10) count, as they do for sizes given as arguments */
            if (lua_rawgeti(L, first, i) == LUA_TNUMBER) v = lua_tointegerx(L, -1, &is_int);
            if (!is_int)
                luaL_error(L, "%s: size %d must be an integer, got %s", op, (int)i,
                           lua_type(L, -1) == LUA_TNUMBER ? lua_tostring(L, -1)
                                                          : luaL_typename(L, -1));
            sizes[i - 1] = (int64_t)v;
            lua_pop(L, 1);
        }
        return (int)n;
    }
    int n = last - first + 1;
    if (n < 0) n = 0;
    if (n > TENSOR_MAX_DIMS)
        luaL_error(L, "%s: %d dimensions given, at most %d are supported", op, n, TENSOR_MAX_DIMS);
    for (int i = 0; i < n; i++) sizes[i] = (int64_t)luaL_checkinteger(L, first + i);
    return n;
}

/* See l_internal.h: a plain table (no metatable) with keys and no [1]. */
int l_is_options(lua_State *L, int idx) {
    idx = lua_absindex(L, idx);
    if (!lua_istable(L, idx)) return 0;
    if (lua_getmetatable(L, idx)) { /* a state dict or torch.Size is not options */
        lua_pop(L, 1);
        return 0;
    }
    int is_list = lua_rawgeti(L, idx, 1) != LUA_TNIL;
    lua_pop(L, 1);
    if (is_list) return 0;
    lua_pushnil(L);
    if (lua_next(L, idx)) {
        lua_pop(L, 2);
        return 1;
    }
    return 0;
}

/* Option readers: idx 0 or a non-table means "no options". */
int l_opt_boolean(lua_State *L, int idx, const char *name, int def) {
    if (idx == 0 || !lua_istable(L, idx)) return def;
    int r = def;
    if (lua_getfield(L, idx, name) != LUA_TNIL) r = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return r;
}

int l_opt_has_number(lua_State *L, int idx, const char *name, double *out) {
    if (idx == 0 || !lua_istable(L, idx)) return 0;
    int t = lua_getfield(L, idx, name);
    if (t == LUA_TNIL) {
        lua_pop(L, 1);
        return 0;
    }
    if (t != LUA_TNUMBER)
        luaL_error(L, "option '%s' must be a number, got %s", name, luaL_typename(L, -1));
    *out = lua_tonumber(L, -1);
    lua_pop(L, 1);
    return 1;
}

double l_opt_number(lua_State *L, int idx, const char *name, double def) {
    double v = def;
    l_opt_has_number(L, idx, name, &v);
    return v;
}

/* See l_internal.h. Raises on a bad dtype or device name. */
void l_check_create_options(lua_State *L, int idx, dtype default_dt, l_create_options *o) {
    if (!(idx == 0 || lua_isnoneornil(L, idx))) luaL_checktype(L, idx, LUA_TTABLE);
    static const char *const keys[] = {"dtype", "device", "requires_grad", NULL};
    ddp_lua_check_option_keys_here(L, idx, keys);
    l_read_create_options(L, idx, default_dt, o);
}

/* See l_internal.h. */
void l_read_create_options(lua_State *L, int idx, dtype default_dt, l_create_options *o) {
    o->dt = default_dt;
    o->has_dtype = 0;
    o->dev = DEVICE_CPU_VALUE;
    o->has_device = 0;
    o->requires_grad = 0;
    if (idx == 0 || lua_isnoneornil(L, idx)) return;
    luaL_checktype(L, idx, LUA_TTABLE);
    if (lua_getfield(L, idx, "dtype") != LUA_TNIL) {
        o->dt = l_check_dtype(L, lua_gettop(L));
        o->has_dtype = 1;
    }
    lua_pop(L, 1);
    if (lua_getfield(L, idx, "device") != LUA_TNIL) {
        const char *name = luaL_tolstring(L, -1, NULL);
        if (device_parse(name, &o->dev) != DDP_OK) ddp_lua_raise(L, DDP_ERR_ARG);
        o->has_device = 1;
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    o->requires_grad = l_opt_boolean(L, idx, "requires_grad", 0);
}

/* See l_internal.h. */
void l_finish_created(lua_State *L, tensor *t, const l_create_options *o) {
    /* the fills that made it were no in-place writes of the learner's: a new tensor is
     * at version 0, as after PyTorch's creation functions */
    t->storage->version = 0;
    if (o->has_device && !device_equal(o->dev, t->storage->device)) {
        device dev = o->dev;
        l_check(L, device_resolve(&dev));
        if (!device_equal(dev, t->storage->device)) {
            tensor **moved = l_new_box(L);
            l_check(L, tensor_to_device(t, dev, t->dtype, moved));
            t = *moved;
        }
    }
    if (o->requires_grad) l_check(L, ag_set_requires_grad(t, true));
}

/* PyTorch's dtype names that ddplab does not have: reading one from torch raises, so
 * that torch.zeros(2, {dtype=torch.float16}) cannot quietly become float32 (a nil dtype
 * is no option at all). */
static const char *const MISSING_DTYPES[] = {
    "float16",   "half",   "bfloat16",  "int32",         "int",         "int16",
    "short",     "int8",   "uint8",     "uint16",        "uint32",      "uint64",
    "complex32", "chalf",  "complex64", "cfloat",        "complex128",  "cdouble",
    "qint8",     "quint8", "qint32",    "float8_e4m3fn", "float8_e5m2", NULL};

/* __index of the torch table: a missing PyTorch dtype raises; anything else is nil. */
static int l_torch_missing_index(lua_State *L) {
    const char *k = lua_tostring(L, 2);
    for (int i = 0; k && lua_type(L, 2) == LUA_TSTRING && MISSING_DTYPES[i]; i++) {
        if (strcmp(k, MISSING_DTYPES[i]) != 0) continue;
        int is_float = k[0] == 'f' || k[0] == 'h' || k[0] == 'b';
        const char *use = k[0] == 'c' ? "(complex numbers are not supported)"
                          : is_float  ? "(use torch.float32)"
                                      : "(use torch.int64 for integers)";
        return luaL_error(L,
                          "torch.%s: ddplab has no such dtype %s; it has torch.float32 "
                          "(torch.float), torch.float64 (torch.double), torch.int64 "
                          "(torch.long) and torch.bool",
                          k, use);
    }
    return 0;
}

/* See l_internal.h. */
void l_guard_missing_dtypes(lua_State *L, int idx) {
    idx = lua_absindex(L, idx);
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, l_torch_missing_index);
    lua_setfield(L, -2, "__index");
    lua_setmetatable(L, idx);
}

/* Creates the dtype objects (userdata holding the enum) into the registry. */
static void l_create_dtypes(lua_State *L) {
    luaL_newmetatable(L, DTYPE_MT);
    lua_pushcfunction(L, l_dtype_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushcfunction(L, l_dtype_index);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
    lua_newtable(L);
    const dtype all[] = {DTYPE_FLOAT32, DTYPE_FLOAT64, DTYPE_INT64, DTYPE_BOOL};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        dtype *d = lua_newuserdatauv(L, sizeof *d, 0);
        *d = all[i];
        luaL_setmetatable(L, DTYPE_MT);
        lua_rawseti(L, -2, (lua_Integer)all[i]);
    }
    lua_setfield(L, LUA_REGISTRYINDEX, REG_DTYPES);
}

/* See l_internal.h. */
void l_types_open(lua_State *L) {
    l_create_dtypes(L);

    luaL_newmetatable(L, SIZE_MT);
    lua_pushcfunction(L, l_size_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushcfunction(L, l_size_eq);
    lua_setfield(L, -2, "__eq");
    lua_newtable(L);
    lua_pushcfunction(L, l_size_numel);
    lua_setfield(L, -2, "numel");
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
}
