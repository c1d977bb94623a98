/* lesson.c — the lesson engine's trusted Lua state in the driver (see lesson.h): the
 * standard libraries and the embedded modules only (no torch, no dist), lesson/engine.lua
 * loaded once, and thin calls into it. Every call is protected: a broken lesson file gives
 * a message, never a crash of the driver. */
#include "runtime/lesson.h"

#include <lauxlib.h>
#include <limits.h>
#include <lua.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lua/bindings.h"
#include "runtime/protocol.h"
#include "runtime/xdg.h"

struct lesson_session {
    lua_State *L;
    int engine; /* registry reference to the engine's table */
};

const char *lesson_env_lang(void) {
    const char *vars[] = {"LC_ALL", "LANG"};
    for (int i = 0; i < 2; i++) {
        const char *v = getenv(vars[i]);
        if (v && *v) return strncmp(v, "zh", 2) == 0 ? "zh" : "en";
    }
    return "en";
}

ddp_status lesson_open_session(int world, bool color, int width, bool keep_progress,
                               lesson_session **out) {
    *out = NULL;
    lesson_session *ls = calloc(1, sizeof *ls);
    if (!ls) return DDP_FAIL(DDP_ERR_NOMEM, "no memory for the lesson engine");
    ls->L = luaL_newstate();
    if (!ls->L) {
        free(ls);
        return DDP_FAIL(DDP_ERR_NOMEM, "no memory for the lesson engine");
    }
    ddp_status s = ddp_lua_setup_plain(ls->L);
    if (s != DDP_OK) {
        lesson_close_session(ls);
        return s;
    }
    lua_State *L = ls->L;
    lua_getglobal(L, "require");
    lua_pushliteral(L, "lesson.engine");
    if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
        s = DDP_FAIL(DDP_ERR_STATE, "the lesson engine cannot load: %s", lua_tostring(L, -1));
        lesson_close_session(ls);
        return s;
    }
    ls->engine = luaL_ref(L, LUA_REGISTRYINDEX);
    char path[PATH_MAX];
    bool have_path = keep_progress && xdg_state_path(NULL, path, sizeof path - 16) == DDP_OK;
    if (have_path) strcat(path, "/lessons.lua");
    lua_rawgeti(L, LUA_REGISTRYINDEX, ls->engine);
    lua_getfield(L, -1, "init");
    lua_createtable(L, 0, 5);
    if (have_path) {
        lua_pushstring(L, path);
        lua_setfield(L, -2, "state_path");
    }
    lua_pushboolean(L, color);
    lua_setfield(L, -2, "color");
    lua_pushinteger(L, width);
    lua_setfield(L, -2, "width");
    lua_pushinteger(L, world);
    lua_setfield(L, -2, "world");
    lua_pushstring(L, lesson_env_lang());
    lua_setfield(L, -2, "lang");
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
        s = DDP_FAIL(DDP_ERR_STATE, "the lesson engine cannot start: %s", lua_tostring(L, -1));
        lesson_close_session(ls);
        return s;
    }
    lua_settop(L, 0);
    *out = ls;
    return DDP_OK;
}

void lesson_close_session(lesson_session *ls) {
    if (!ls) return;
    if (ls->L) lua_close(ls->L);
    free(ls);
}

/* Pushes engine.<fn>; returns false (and pushes nothing) when there is no such function. */
static bool push_fn(lesson_session *ls, const char *fn) {
    lua_rawgeti(ls->L, LUA_REGISTRYINDEX, ls->engine);
    lua_getfield(ls->L, -1, fn);
    lua_remove(ls->L, -2);
    if (lua_isfunction(ls->L, -1)) return true;
    lua_pop(ls->L, 1);
    return false;
}

/* Calls the function pushed with nargs arguments above it; returns the first string
 * result (malloc'd) and sets *flag from the first result. */
static char *finish_call(lesson_session *ls, int nargs, bool *flag) {
    lua_State *L = ls->L;
    int base = lua_gettop(L) - nargs - 1;
    if (flag) *flag = false;
    if (lua_pcall(L, nargs, LUA_MULTRET, 0) != LUA_OK) {
        char *m = NULL;
        if (asprintf(&m, "lesson engine: %s\n", lua_tostring(L, -1)) < 0) m = NULL;
        lua_settop(L, base);
        return m;
    }
    char *text = NULL;
    int top = lua_gettop(L);
    if (flag && top > base) *flag = lua_toboolean(L, base + 1);
    for (int i = base + 1; i <= top && !text; i++)
        if (lua_type(L, i) == LUA_TSTRING) text = strdup(lua_tostring(L, i));
    lua_settop(L, base);
    return text;
}

char *lesson_call(lesson_session *ls, const char *fn, const char *a1, const char *a2, bool *flag) {
    if (flag) *flag = false;
    if (!ls || !push_fn(ls, fn)) return NULL;
    if (a1)
        lua_pushstring(ls->L, a1);
    else
        lua_pushnil(ls->L);
    if (a2)
        lua_pushstring(ls->L, a2);
    else
        lua_pushnil(ls->L);
    return finish_call(ls, 2, flag);
}

bool lesson_call_bool(lesson_session *ls, const char *fn) {
    bool flag = false;
    free(lesson_call(ls, fn, NULL, NULL, &flag));
    return flag;
}

char *lesson_check_chunk(lesson_session *ls) {
    if (!ls || !push_fn(ls, "check_chunk")) return NULL;
    return finish_call(ls, 0, NULL);
}

char *lesson_checked(lesson_session *ls, const rank_result *results, int world, bool *passed) {
    static const char *const kinds[] = {"pass", "fail", "defect"};
    *passed = false;
    if (!ls || !push_fn(ls, "checked")) return NULL;
    lua_State *L = ls->L;
    lua_createtable(L, world, 0);
    for (int r = 0; r < world; r++) {
        const rank_result *res = &results[r];
        lua_createtable(L, 0, 2);
        if (res->has_verdict && res->verdict >= 0 && res->verdict <= 2) {
            lua_pushstring(L, kinds[res->verdict]);
            lua_setfield(L, -2, "kind");
            lua_pushstring(L, res->verdict_message ? res->verdict_message : "");
        } else if (res->outcome == RANK_ERROR) { /* the check chunk itself raised there */
            lua_pushliteral(L, "defect");
            lua_setfield(L, -2, "kind");
            lua_pushstring(L, res->error ? res->error : "the check gave no answer");
        } else { /* the rank is dead or was interrupted: said as it is, not as a defect */
            lua_pushliteral(L, "fail");
            lua_setfield(L, -2, "kind");
            lua_pushstring(L, res->error ? res->error : "this rank gave no answer");
        }
        lua_setfield(L, -2, "message");
        lua_rawseti(L, -2, r);
    }
    lua_pushinteger(L, world);
    if (lua_pcall(L, 2, 2, 0) != LUA_OK) {
        char *m = NULL;
        if (asprintf(&m, "lesson engine: %s\n", lua_tostring(L, -1)) < 0) m = NULL;
        lua_settop(L, 0);
        return m;
    }
    char *text = lua_isstring(L, -2) ? strdup(lua_tostring(L, -2)) : NULL;
    *passed = lua_toboolean(L, -1);
    lua_settop(L, 0);
    return text;
}

void lesson_record(lesson_session *ls, const char *chunk, const rank_result *results, int world) {
    if (!ls || !push_fn(ls, "record")) return;
    lua_State *L = ls->L;
    lua_pushstring(L, chunk);
    lua_newtable(L);
    for (int r = 0; results && r < world; r++)
        if ((results[r].outcome == RANK_ERROR || results[r].outcome == RANK_INTERRUPTED) &&
            results[r].error) {
            lua_pushstring(L, results[r].error);
            lua_rawseti(L, -2, r);
        }
    free(finish_call(ls, 2, NULL));
}

int lesson_min_ranks(const char *spec) {
    lesson_session *ls = NULL;
    if (lesson_open_session(0, false, 80, false, &ls) != DDP_OK) return 1;
    int n = 1;
    if (push_fn(ls, "min_ranks")) {
        lua_pushstring(ls->L, spec);
        if (lua_pcall(ls->L, 1, 1, 0) == LUA_OK && lua_isinteger(ls->L, -1))
            n = (int)lua_tointeger(ls->L, -1);
        lua_settop(ls->L, 0);
    }
    lesson_close_session(ls);
    return n > 0 ? n : 1;
}
