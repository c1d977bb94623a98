/* l_colon.c — the errors for a method called with a dot instead of a colon, the most
 * common slip of a learner coming from Python: `loss.backward()` runs Tensor.backward
 * with no tensor at all, `x.view(4, 5)` with 4 where the tensor goes, `x.add(y)` with y
 * as the tensor and nothing to add. The methods of Tensor check their arguments through
 * l_check_self / l_check_other, which cost a type test when all is well and, only when
 * the tensor is missing, work out the method's name and say what to type instead. The
 * Lua classes (nn.Module, the optimizers) do the same in lua/torch/util.lua. */
#include <lauxlib.h>
#include <stdio.h>
#include <string.h>

#include "lua/l_internal.h"

/* Writes the name of the running C function into buf: the name the call used when it
 * is the function's key in the Tensor methods table (t.nelement), else some key of it
 * there (a local alias `local f = t.sum`), else the name the call used. Sets *colon when
 * the call was written `t:name(...)`. */
static void l_running_name(lua_State *L, char *buf, size_t len, int *colon) {
    lua_Debug ar;
    snprintf(buf, len, "this method");
    *colon = 0;
    if (!lua_getstack(L, 0, &ar) || !lua_getinfo(L, "nf", &ar)) return;
    *colon = ar.namewhat && strcmp(ar.namewhat, "method") == 0;
    if (ar.name) snprintf(buf, len, "%s", ar.name);
    l_push_tensor_methods(L);
    if (ar.name) {
        lua_getfield(L, -1, ar.name);
        int same = lua_rawequal(L, -1, -3);
        lua_pop(L, 1);
        if (same) {
            lua_pop(L, 2); /* the methods table and the function */
            return;
        }
    }
    lua_pushnil(L);
    while (lua_next(L, -2)) {
        if (lua_rawequal(L, -1, -4) && lua_type(L, -2) == LUA_TSTRING) {
            snprintf(buf, len, "%s", lua_tostring(L, -2));
            lua_pop(L, 2);
            break;
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 2); /* the methods table and the function */
}

/* See l_internal.h. Only the error path looks further than a type test. */
tensor *l_check_self(lua_State *L) {
    tensor *t = ddp_lua_to_tensor(L, 1);
    if (t) return t;
    if (luaL_testudata(L, 1, L_TENSOR_MT)) return ddp_lua_check_tensor(L, 1); /* released */
    char name[64];
    int colon;
    l_running_name(L, name, sizeof name, &colon);
    const char *args = lua_gettop(L) > 0 ? "..." : "";
    if (lua_isnone(L, 1))
        ddp_lua_raise(L, DDP_FAIL(DDP_ERR_ARG,
                                  "%s: call it as t:%s(%s), with a colon (in Lua, t.%s(%s) "
                                  "passes no tensor)",
                                  name, name, args, name, args));
    /* a value that is no tensor: a Lua argument error, which names the colon too */
    lua_pushfstring(L, "tensor expected, got %s; a method is called with a colon: t:%s(%s)",
                    luaL_typename(L, 1), name, args);
    luaL_argerror(L, 1, lua_tostring(L, -1));
    return NULL; /* not reached: both raise */
}

/* See l_internal.h. */
void l_check_operand(lua_State *L, int idx) {
    if (!lua_isnone(L, idx)) return;
    char name[64];
    int colon;
    l_running_name(L, name, sizeof name, &colon);
    if (!colon) /* t.mm(u): u became the tensor and nothing is left for the operand */
        ddp_lua_raise(L, DDP_FAIL(DDP_ERR_ARG,
                                  "%s: missing an operand; call it as t:%s(other), with a colon "
                                  "(in Lua, t.%s(other) passes only other)",
                                  name, name, name));
}

/* See l_internal.h. */
tensor *l_check_other(lua_State *L, int idx) {
    l_check_operand(L, idx);
    return ddp_lua_check_tensor(L, idx);
}
