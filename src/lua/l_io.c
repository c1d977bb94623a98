/* l_io.c — the C half of torch.save / torch.load: reading and writing `.safetensors` and
 * `.npy` files (src/tensor/tensor_io.c) for Lua, as the module "ddp.io_core". What goes
 * into a file and how it comes back (state dicts, an optimizer's nested tables kept as
 * JSON in the metadata, map_location) is lua/torch/serialization.lua's; this file only
 * moves lists of names, tensors and strings across. */
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#include "lua/l_internal.h"
#include "tensor/tensor_io.h"

/* The string at index i of the list at idx, refusing one with a NUL byte (a C string
 * would cut it: "a\0b" would be saved as "a"). `what` names the list in messages. */
static const char *list_string(lua_State *L, int idx, lua_Integer i, const char *what) {
    lua_rawgeti(L, idx, i);
    size_t len;
    const char *s = lua_tolstring(L, -1, &len);
    if (!s || lua_type(L, -1) != LUA_TSTRING)
        luaL_error(L, "save: %s %d is a %s, not a string", what, (int)i, luaL_typename(L, -1));
    if (strlen(s) != len)
        luaL_error(L,
                   "save: the %s '%s\\0...' holds a NUL byte (\\0); a safetensors file cannot keep "
                   "it whole, so choose a name without one",
                   what, s);
    lua_pop(L, 1); /* still referenced by the list */
    return s;
}

/* write_safetensors(path, names, tensors[, meta_keys, meta_values]) */
static int l_write_safetensors(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    luaL_checktype(L, 3, LUA_TTABLE);
    lua_Integer n = luaL_len(L, 2), n_meta = 0;
    if (luaL_len(L, 3) != n)
        return luaL_error(L, "save: %d names for %d tensors", (int)n, (int)luaL_len(L, 3));
    if (!lua_isnoneornil(L, 4)) {
        luaL_checktype(L, 4, LUA_TTABLE);
        luaL_checktype(L, 5, LUA_TTABLE);
        n_meta = luaL_len(L, 4);
        if (luaL_len(L, 5) != n_meta) return luaL_error(L, "save: metadata keys and values differ");
    }
    if (n > 1 << 24 || n_meta > 1 << 24) return luaL_error(L, "save: too many entries");
    const char **names = lua_newuserdatauv(L, (size_t)(n + 1) * sizeof *names, 0);
    tensor **ts = lua_newuserdatauv(L, (size_t)(n + 1) * sizeof *ts, 0);
    const char **keys = lua_newuserdatauv(L, (size_t)(n_meta + 1) * sizeof *keys, 0);
    const char **values = lua_newuserdatauv(L, (size_t)(n_meta + 1) * sizeof *values, 0);
    for (lua_Integer i = 1; i <= n; i++) {
        names[i - 1] = list_string(L, 2, i, "name");
        lua_rawgeti(L, 3, i);
        ts[i - 1] = ddp_lua_check_tensor(L, -1);
        lua_pop(L, 1);
    }
    for (lua_Integer i = 1; i <= n_meta; i++) {
        keys[i - 1] = list_string(L, 4, i, "name");
        values[i - 1] = list_string(L, 5, i, "metadata value");
    }
    l_check(L, tensor_save_safetensors_meta(path, names, ts, (int)n, keys, values, (int)n_meta));
    return 0;
}

/* Protected part of read_safetensors: pushes the names list, the tensors list (boxing
 * each tensor as it goes, so the file struct no longer owns it) and the metadata as two
 * lists, keys and values (arg 1: lightuserdata tensor_file). */
static int l_push_file(lua_State *L) {
    tensor_file *f = lua_touserdata(L, 1);
    lua_createtable(L, f->n, 0);
    lua_createtable(L, f->n, 0);
    for (int i = 0; i < f->n; i++) {
        lua_pushstring(L, f->names[i]);
        lua_rawseti(L, -3, i + 1);
        tensor **slot = l_new_box(L);
        *slot = f->tensors[i];
        f->tensors[i] = NULL;
        lua_rawseti(L, -2, i + 1);
    }
    lua_createtable(L, f->n_meta, 0);
    lua_createtable(L, f->n_meta, 0);
    for (int i = 0; i < f->n_meta; i++) {
        lua_pushstring(L, f->meta_keys[i]);
        lua_rawseti(L, -3, i + 1);
        lua_pushstring(L, f->meta_values[i]);
        lua_rawseti(L, -2, i + 1);
    }
    return 4;
}

/* read_safetensors(path) -> names, tensors, meta_keys, meta_values (lists in file order) */
static int l_read_safetensors(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    tensor_file f;
    l_check(L, tensor_read_safetensors(path, &f));
    lua_pushcfunction(L, l_push_file);
    lua_pushlightuserdata(L, &f);
    int rc = lua_pcall(L, 1, 4, 0);
    tensor_file_free(&f); /* what was boxed is NULL here */
    if (rc != LUA_OK) return lua_error(L);
    return 4;
}

/* write_npy(path, tensor) */
static int l_write_npy(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    l_check(L, tensor_save_npy(path, ddp_lua_check_tensor(L, 2)));
    return 0;
}

/* read_npy(path) -> tensor */
static int l_read_npy(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    l_check(L, tensor_load_npy(path, l_new_box(L)));
    return 1;
}

/* check_readable(path, what) -> true, or false and the reason (see
 * tensor_io_check_readable): lets a reader written in Lua refuse a FIFO before io.open
 * blocks on it. */
static int l_check_readable(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    const char *what = luaL_checkstring(L, 2);
    if (tensor_io_check_readable(path, what) == DDP_OK) {
        lua_pushboolean(L, 1);
        return 1;
    }
    lua_pushboolean(L, 0);
    lua_pushstring(L, ddp_last_error());
    return 2;
}

static const luaL_Reg io_functions[] = {
    {"check_readable", l_check_readable},
    {"write_safetensors", l_write_safetensors},
    {"read_safetensors", l_read_safetensors},
    {"write_npy", l_write_npy},
    {"read_npy", l_read_npy},
    {NULL, NULL},
};

/* See l_internal.h. */
int luaopen_ddp_io_core(lua_State *L) {
    luaL_newlib(L, io_functions);
    return 1;
}
