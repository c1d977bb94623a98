/* l_cuda.c — torch.device objects and the torch.cuda module.
 *
 * A device object prints as its name ("cpu", "cuda:1", or "cuda" for the current GPU)
 * and has .type and .index (nil for "cpu" and plain "cuda", as in PyTorch). Objects are
 * interned by name, so `t.device == torch.device("cuda:0")` holds and t.device is the
 * same Lua value every time. Without a GPU (or in a build without CUDA) every request
 * that needs one raises the device layer's message, which says which of the two it is;
 * is_available(), device_count() and empty_cache() answer quietly, as in PyTorch. */
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#include "lua/l_internal.h"
#include "tensor/device.h"

#define DEVICE_MT "torch.device"
#define REG_DEVICES "ddplab.devices"

/* __tostring: the device's name. */
static int l_device_tostring(lua_State *L) {
    const device *d = luaL_checkudata(L, 1, DEVICE_MT);
    char buf[32];
    lua_pushstring(L, device_name(*d, buf, sizeof buf));
    return 1;
}

/* __index: .type ("cpu" or "cuda") and .index (nil unless a GPU ordinal was given). */
static int l_device_index(lua_State *L) {
    const device *d = luaL_checkudata(L, 1, DEVICE_MT);
    const char *k = luaL_checkstring(L, 2);
    if (strcmp(k, "type") == 0)
        lua_pushstring(L, d->type == DEVICE_CPU ? "cpu" : "cuda");
    else if (strcmp(k, "index") == 0 && d->type == DEVICE_CUDA && d->index >= 0)
        lua_pushinteger(L, d->index);
    else
        lua_pushnil(L);
    return 1;
}

/* __eq: the same type and index (interning makes this rarely needed). */
static int l_device_eq(lua_State *L) {
    const device *a = luaL_testudata(L, 1, DEVICE_MT), *b = luaL_testudata(L, 2, DEVICE_MT);
    lua_pushboolean(L, a && b && a->type == b->type && a->index == b->index);
    return 1;
}

/* See l_internal.h. */
void l_push_device(lua_State *L, device d) {
    char name[32];
    device_name(d, name, sizeof name);
    if (lua_getfield(L, LUA_REGISTRYINDEX, REG_DEVICES) != LUA_TTABLE) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushvalue(L, -1);
        lua_setfield(L, LUA_REGISTRYINDEX, REG_DEVICES);
    }
    if (lua_getfield(L, -1, name) == LUA_TNIL) {
        lua_pop(L, 1);
        device *u = lua_newuserdatauv(L, sizeof *u, 0);
        *u = d;
        if (luaL_newmetatable(L, DEVICE_MT)) {
            lua_pushcfunction(L, l_device_tostring);
            lua_setfield(L, -2, "__tostring");
            lua_pushcfunction(L, l_device_index);
            lua_setfield(L, -2, "__index");
            lua_pushcfunction(L, l_device_eq);
            lua_setfield(L, -2, "__eq");
        }
        lua_setmetatable(L, -2);
        lua_pushvalue(L, -1);
        lua_setfield(L, -3, name);
    }
    lua_remove(L, -2);
}

/* See l_internal.h. */
int l_is_device(lua_State *L, int idx) {
    return luaL_testudata(L, idx, DEVICE_MT) != NULL;
}

/* See l_internal.h. */
device l_check_device(lua_State *L, int idx) {
    const device *u = luaL_testudata(L, idx, DEVICE_MT);
    if (u) return *u;
    if (lua_type(L, idx) != LUA_TSTRING)
        luaL_typeerror(L, idx, "device (\"cpu\", \"cuda\", \"cuda:N\" or torch.device)");
    device d;
    l_check(L, device_parse(lua_tostring(L, idx), &d));
    return d;
}

/* torch.device("cuda:1"), torch.device("cuda", 1), torch.device(other_device). */
static int l_torch_device(lua_State *L) {
    device d = l_check_device(L, 1);
    if (!lua_isnoneornil(L, 2)) {
        lua_Integer i = luaL_checkinteger(L, 2);
        const char *s = lua_tostring(L, 1);
        if (d.type != DEVICE_CUDA || (s && strchr(s, ':')) || l_is_device(L, 1))
            return luaL_error(L, "device: an index goes with a type without one, as in "
                                 "torch.device(\"cuda\", 1)");
        if (i < 0 || i >= 1024)
            return luaL_error(L, "device: index %I is out of range (expected 0 to 1023)",
                              (LUAI_UACINT)i);
        d.index = (int)i;
    }
    l_push_device(L, d);
    return 1;
}

/* The GPU ordinal a torch.cuda function's optional device argument names: nil for the
 * current one, an integer, "cuda:N" or a device object. Raises when there is no GPU. */
static int l_cuda_index_arg(lua_State *L, int idx, const char *fn) {
    device d = {DEVICE_CUDA, DEVICE_INDEX_CURRENT};
    if (lua_isinteger(L, idx)) {
        lua_Integer i = lua_tointeger(L, idx);
        d.index = i >= 0 && i < 1024 ? (int)i : 1024;
    } else if (!lua_isnoneornil(L, idx)) {
        d = l_check_device(L, idx);
    }
    if (d.type != DEVICE_CUDA) luaL_error(L, "cuda.%s: expected a CUDA device, got cpu", fn);
    l_check(L, device_resolve(&d));
    return d.index;
}

/* torch.cuda.is_available(): a GPU can be used (false in a build without CUDA). */
static int l_cuda_is_available(lua_State *L) {
    lua_pushboolean(L, cuda_device_count() > 0);
    return 1;
}

/* torch.cuda.device_count() */
static int l_cuda_device_count(lua_State *L) {
    lua_pushinteger(L, cuda_device_count());
    return 1;
}

/* torch.cuda.set_device(i | "cuda:i" | device) */
static int l_cuda_set_device(lua_State *L) {
    luaL_checkany(L, 1);
    l_check(L, cuda_set_device(l_cuda_index_arg(L, 1, "set_device")));
    return 0;
}

/* torch.cuda.current_device() */
static int l_cuda_current_device(lua_State *L) {
    int i;
    l_check(L, cuda_current_device(&i));
    lua_pushinteger(L, i);
    return 1;
}

/* torch.cuda.synchronize(device=current) */
static int l_cuda_synchronize(lua_State *L) {
    l_cuda_index_arg(L, 1, "synchronize");
    l_check(L, cuda_synchronize());
    return 0;
}

typedef enum { STAT_ALLOCATED, STAT_MAX_ALLOCATED, STAT_RESERVED, STAT_MAX_RESERVED } stat_kind;

/* One of the memory statistics of a GPU (bytes), as the four functions below. */
static int l_cuda_stat(lua_State *L, stat_kind kind, const char *fn) {
    cache_stats st;
    l_check(L, cuda_memory_stats(l_cuda_index_arg(L, 1, fn), &st));
    size_t v = kind == STAT_ALLOCATED       ? st.allocated
               : kind == STAT_MAX_ALLOCATED ? st.max_allocated
               : kind == STAT_RESERVED      ? st.reserved
                                            : st.max_reserved;
    lua_pushinteger(L, (lua_Integer)v);
    return 1;
}
static int l_cuda_memory_allocated(lua_State *L) {
    return l_cuda_stat(L, STAT_ALLOCATED, "memory_allocated");
}
static int l_cuda_max_memory_allocated(lua_State *L) {
    return l_cuda_stat(L, STAT_MAX_ALLOCATED, "max_memory_allocated");
}
static int l_cuda_memory_reserved(lua_State *L) {
    return l_cuda_stat(L, STAT_RESERVED, "memory_reserved");
}
static int l_cuda_max_memory_reserved(lua_State *L) {
    return l_cuda_stat(L, STAT_MAX_RESERVED, "max_memory_reserved");
}

/* torch.cuda.reset_peak_memory_stats(device=current) */
static int l_cuda_reset_peak_memory_stats(lua_State *L) {
    l_check(L, cuda_reset_peak_memory_stats(l_cuda_index_arg(L, 1, "reset_peak_memory_stats")));
    return 0;
}

/* torch.backends.cuda.is_built(): whether this build has the CUDA backend (a GPU may
 * still be missing: that is is_available()). */
static int l_cuda_is_built(lua_State *L) {
    lua_pushboolean(L, cuda_built());
    return 1;
}

/* torch.cuda.empty_cache(): returns cached blocks to the driver; nothing to do (and no
 * error, as in PyTorch) when no GPU was ever used. */
static int l_cuda_empty_cache(lua_State *L) {
    if (cuda_device_count() > 0) l_check(L, cuda_empty_cache());
    return 0;
}

/* torch.backends.cuda.matmul.allow_tf32: read and set as a field, as in PyTorch. */
static int l_matmul_index(lua_State *L) {
    const char *key = luaL_checkstring(L, 2);
    if (strcmp(key, "allow_tf32") != 0) return 0;
    lua_pushboolean(L, cuda_allow_tf32());
    return 1;
}

static int l_matmul_newindex(lua_State *L) {
    const char *key = luaL_checkstring(L, 2);
    if (strcmp(key, "allow_tf32") != 0)
        return luaL_error(L, "torch.backends.cuda.matmul has no setting '%s' (it has allow_tf32)",
                          key);
    if (!lua_isboolean(L, 3))
        return luaL_error(L, "torch.backends.cuda.matmul.allow_tf32 takes true or false, got %s",
                          luaL_typename(L, 3));
    cuda_set_allow_tf32(lua_toboolean(L, 3));
    return 0;
}

static const luaL_Reg cuda_functions[] = {
    {"is_available", l_cuda_is_available},
    {"device_count", l_cuda_device_count},
    {"set_device", l_cuda_set_device},
    {"current_device", l_cuda_current_device},
    {"synchronize", l_cuda_synchronize},
    {"memory_allocated", l_cuda_memory_allocated},
    {"max_memory_allocated", l_cuda_max_memory_allocated},
    {"memory_reserved", l_cuda_memory_reserved},
    {"max_memory_reserved", l_cuda_max_memory_reserved},
    {"reset_peak_memory_stats", l_cuda_reset_peak_memory_stats},
    {"empty_cache", l_cuda_empty_cache},
    {NULL, NULL},
};

/* See l_internal.h. */
void l_cuda_open(lua_State *L) {
    /* Each rank's "cuda" is cuda:LOCAL_RANK (modulo the GPUs) until set_device, as
     * torchrun scripts arrange by hand; nothing touches a GPU here. */
    const char *local_rank = getenv("LOCAL_RANK");
    cuda_set_default_device(local_rank ? atoi(local_rank) : 0);
    lua_pushcfunction(L, l_torch_device);
    lua_setfield(L, -2, "device");
    luaL_newlib(L, cuda_functions);
    lua_setfield(L, -2, "cuda");
    lua_createtable(L, 0, 1); /* torch.backends.cuda */
    lua_createtable(L, 0, 2);
    lua_pushcfunction(L, l_cuda_is_built);
    lua_setfield(L, -2, "is_built");
    lua_newtable(L); /* torch.backends.cuda.matmul: its one setting lives in C */
    lua_createtable(L, 0, 2);
    lua_pushcfunction(L, l_matmul_index);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_matmul_newindex);
    lua_setfield(L, -2, "__newindex");
    lua_setmetatable(L, -2);
    lua_setfield(L, -2, "matmul");
    lua_setfield(L, -2, "cuda");
    lua_setfield(L, -2, "backends");
}
