/* l_dist.c — torch.distributed for Lua: process groups and collectives over src/dist.
 * (Grows with the runtime issue; today only what needs no process group.) */
#include <lauxlib.h>

#include "lua/bindings.h"

/* dist.is_available(): whether this build has distributed support (always: Gloo). */
static int l_dist_is_available(lua_State *L) {
    lua_pushboolean(L, 1);
    return 1;
}

/* dist.is_initialized(): no process group yet. */
static int l_dist_is_initialized(lua_State *L) {
    lua_pushboolean(L, 0);
    return 1;
}

static const luaL_Reg dist_functions[] = {
    {"is_available", l_dist_is_available},
    {"is_initialized", l_dist_is_initialized},
    {NULL, NULL},
};

int luaopen_ddp_dist(lua_State *L) {
    luaL_newlib(L, dist_functions);
    return 1;
}
