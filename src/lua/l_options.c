/* l_options.c — one check for every options table a binding takes: a key that the
 * function does not know is an error naming the closest key it does know, so that a
 * misspelt option (`{opp=dist.ReduceOp.MAX}`) is never silently ignored. */
#include <lauxlib.h>
#include <lua.h>
#include <string.h>

#include "lua/bindings.h"

/* Levenshtein distance of two short keys, capped at 32 characters each (longer keys
 * are compared by their first 32: close enough for a suggestion). */
static int edit_distance(const char *a, const char *b) {
    enum { CAP = 32 };
    size_t n = strlen(a), m = strlen(b);
    if (n > CAP) n = CAP;
    if (m > CAP) m = CAP;
    int row[CAP + 1];
    for (size_t j = 0; j <= m; j++) row[j] = (int)j;
    for (size_t i = 1; i <= n; i++) {
        int diag = row[0];
        row[0] = (int)i;
        for (size_t j = 1; j <= m; j++) {
            int up = row[j];
            int best = diag + (a[i - 1] != b[j - 1]);
            if (row[j] + 1 < best) best = row[j] + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[m];
}

const char *ddp_lua_closest_name(const char *name, const char *const *known) {
    const char *best = NULL;
    int best_d = 0;
    for (int i = 0; known[i]; i++) {
        int d = edit_distance(name, known[i]);
        if (!best || d < best_d) best = known[i], best_d = d;
    }
    /* A suggestion further than half the key away helps nobody. */
    size_t len = strlen(name);
    return best && (size_t)best_d * 2 <= (len > 2 ? len : 2) ? best : NULL;
}

/* See bindings.h: the name is the one the call used (t:sum{dimm=0} says "sum"). */
void ddp_lua_check_option_keys_here(lua_State *L, int idx, const char *const *known) {
    lua_Debug ar;
    const char *fn = "options";
    if (lua_getstack(L, 0, &ar) && lua_getinfo(L, "n", &ar) && ar.name) fn = ar.name;
    ddp_lua_check_option_keys(L, idx, fn, known);
}

void ddp_lua_check_option_keys(lua_State *L, int idx, const char *fn, const char *const *known) {
    idx = lua_absindex(L, idx);
    if (!lua_istable(L, idx)) return;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1); /* the value */
        if (lua_type(L, -1) != LUA_TSTRING)
            luaL_error(L, "%s: options are given by name ({name = value}); found a %s key", fn,
                       luaL_typename(L, -1));
        const char *key = lua_tostring(L, -1);
        int ok = 0;
        for (int i = 0; known[i] && !ok; i++) ok = strcmp(key, known[i]) == 0;
        if (!ok) {
            const char *near = ddp_lua_closest_name(key, known);
            luaL_Buffer b;
            luaL_buffinit(L, &b);
            for (int i = 0; known[i]; i++) {
                if (i) luaL_addstring(&b, ", ");
                luaL_addstring(&b, known[i]);
            }
            luaL_pushresult(&b);
            if (near) luaL_error(L, "%s: unknown option '%s' (did you mean '%s'?)", fn, key, near);
            luaL_error(L, "%s: unknown option '%s' (it takes: %s)", fn, key, lua_tostring(L, -1));
        }
    }
}
