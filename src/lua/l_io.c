/* l_io.c — torch.save(obj, path) and torch.load(path): a table of name -> tensor (a
 * state dict) goes to `.safetensors`, a single tensor to `.npy`, chosen by the file's
 * extension, so files move to and from Python (safetensors, numpy) unchanged. The file
 * formats themselves are src/tensor/tensor_io.c's; this file only maps Lua values. */
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#include "lua/l_internal.h"
#include "tensor/tensor_io.h"

typedef enum { FILE_NPY, FILE_SAFETENSORS, FILE_UNKNOWN } file_kind;

/* True when s ends with suffix. */
static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* The file kind comes from the name's extension only. */
static file_kind l_file_kind(const char *path) {
    if (ends_with(path, ".npy")) return FILE_NPY;
    if (ends_with(path, ".safetensors")) return FILE_SAFETENSORS;
    return FILE_UNKNOWN;
}

/* Raises the error for a file name that is neither .npy nor .safetensors. */
static int l_unknown_kind(lua_State *L, const char *op, const char *path) {
    return luaL_error(L,
                      "%s: cannot tell the format of '%s' from its name: use .safetensors for a "
                      "table of named tensors (a state dict) or .npy for one tensor",
                      op, path);
}

/* torch.save(obj, path) */
static int l_torch_save(lua_State *L) {
    luaL_checkany(L, 1);
    const char *path = luaL_checkstring(L, 2);
    file_kind kind = l_file_kind(path);
    if (kind == FILE_UNKNOWN) return l_unknown_kind(L, "save", path);
    tensor *single = ddp_lua_to_tensor(L, 1);
    if (kind == FILE_NPY) {
        if (!single)
            return luaL_error(L,
                              "save: a .npy file holds one tensor, got a %s (save a table of "
                              "tensors as .safetensors)",
                              luaL_typename(L, 1));
        l_check(L, tensor_save_npy(path, ddp_lua_check_tensor(L, 1)));
        return 0;
    }
    if (single || !lua_istable(L, 1))
        return luaL_error(L,
                          "save: a .safetensors file holds a table of name -> tensor (like "
                          "model:state_dict()), got a %s (save one tensor as .npy)",
                          single ? "tensor" : luaL_typename(L, 1));
    /* collect (name, tensor) in pairs() order, which a state dict keeps */
    lua_newtable(L); /* names, index 3 */
    lua_newtable(L); /* tensors, index 4 */
    int n = 0;
    lua_getglobal(L, "pairs");
    lua_pushvalue(L, 1);
    lua_call(L, 1, 3); /* iterator, state, control at 5, 6, 7 */
    for (;;) {
        lua_pushvalue(L, 5);
        lua_pushvalue(L, 6);
        lua_pushvalue(L, 7);
        lua_call(L, 2, 2);
        if (lua_isnil(L, -2)) {
            lua_pop(L, 2);
            break;
        }
        if (lua_type(L, -2) != LUA_TSTRING)
            return luaL_error(L, "save: every key must be a string name, got a %s key",
                              luaL_typename(L, -2));
        if (!ddp_lua_to_tensor(L, -1))
            return luaL_error(L, "save: '%s' is a %s; a .safetensors file holds only tensors",
                              lua_tostring(L, -2), luaL_typename(L, -1));
        n++;
        lua_rawseti(L, 4, n);
        lua_pushvalue(L, -1);
        lua_rawseti(L, 3, n);
        lua_replace(L, 7);
    }
    if (n == 0) return luaL_error(L, "save: the table has no tensors to save");
    const char **names = lua_newuserdatauv(L, (size_t)n * sizeof *names, 0);
    tensor **ts = lua_newuserdatauv(L, (size_t)n * sizeof *ts, 0);
    for (int i = 0; i < n; i++) {
        lua_rawgeti(L, 3, i + 1);
        names[i] = lua_tostring(L, -1); /* kept alive by the names table */
        lua_pop(L, 1);
        lua_rawgeti(L, 4, i + 1);
        ts[i] = ddp_lua_check_tensor(L, -1);
        lua_pop(L, 1);
    }
    l_check(L, tensor_save_safetensors(path, names, ts, n));
    return 0;
}

typedef struct {
    char **names;
    tensor **tensors;
    int n;
} loaded_file;

/* Frees what is still owned in a loaded file (entries already boxed are NULL). */
static void loaded_file_free(loaded_file *f) {
    for (int i = 0; i < f->n; i++) {
        tensor_release(f->tensors[i]);
        free(f->names[i]);
    }
    free(f->tensors);
    free(f->names);
    f->tensors = NULL;
    f->names = NULL;
    f->n = 0;
}

/* Protected part of load: builds the ordered dict, boxing each tensor as it goes
 * (arg 1: lightuserdata loaded_file). */
static int l_build_dict(lua_State *L) {
    loaded_file *f = lua_touserdata(L, 1);
    l_require(L, "torch.ordered");
    lua_getfield(L, -1, "new");
    lua_call(L, 0, 1);
    for (int i = 0; i < f->n; i++) {
        tensor **slot = l_new_box(L);
        *slot = f->tensors[i];
        f->tensors[i] = NULL;
        lua_setfield(L, -2, f->names[i]); /* through __newindex: keeps the order */
    }
    return 1;
}

/* torch.load(path) -> tensor (.npy) or ordered table of tensors (.safetensors) */
static int l_torch_load(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    file_kind kind = l_file_kind(path);
    if (kind == FILE_UNKNOWN) return l_unknown_kind(L, "load", path);
    if (kind == FILE_NPY) {
        l_check(L, tensor_load_npy(path, l_new_box(L)));
        return 1;
    }
    loaded_file f = {NULL, NULL, 0};
    l_check(L, tensor_load_safetensors(path, &f.names, &f.tensors, &f.n));
    lua_pushcfunction(L, l_build_dict);
    lua_pushlightuserdata(L, &f);
    int rc = lua_pcall(L, 1, 1, 0);
    loaded_file_free(&f);
    if (rc != LUA_OK) return lua_error(L);
    return 1;
}

static const luaL_Reg io_functions[] = {
    {"save", l_torch_save},
    {"load", l_torch_load},
    {NULL, NULL},
};

/* See l_internal.h. */
int luaopen_ddp_torch_io(lua_State *L) {
    luaL_setfuncs(L, io_functions, 0);
    return 0;
}
