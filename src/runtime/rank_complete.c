/* rank_complete.c — Tab completion on a rank (see rank_complete.h): globals, an object's
 * fields and methods, found by reading tables and metatables raw, so that pressing Tab can
 * never run learner code. */
#include "runtime/rank_complete.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

/* Completion reads values and metatables raw and never calls a function, so Tab cannot run
 * learner code. Besides an object's own keys and the methods reached through __index
 * tables, it honours two plain-data fields a metatable may carry (the library's Tensor and
 * nn.Module instances do):
 *   methods       where the methods live when __index is a function (l_tensor.c, nn.lua)
 *   fields        a list of field names an __index function computes (Tensor: shape, ...)
 *   field_tables  a list of raw keys of the object whose tables' keys are fields too
 *                 (nn.Module: _parameters, _modules, _buffers, so model.fc1 completes) */

/* Replaces the metatable on top with where its methods live: __index when it is a table,
 * else its `methods` table, else nil. */
static void metatable_to_methods(lua_State *L) {
    lua_pushliteral(L, "__index");
    if (lua_rawget(L, -2) != LUA_TTABLE) {
        lua_pop(L, 1);
        lua_pushliteral(L, "methods");
        if (lua_rawget(L, -2) != LUA_TTABLE) {
            lua_pop(L, 1);
            lua_pushnil(L);
        }
    }
    lua_remove(L, -2);
}

/* Pushes the list `name` of the metatable of the value at `obj` (fields, field_tables),
 * or nothing and returns false. */
static bool push_metatable_list(lua_State *L, int obj, const char *name) {
    if (!lua_getmetatable(L, obj)) return false;
    lua_pushstring(L, name);
    if (lua_rawget(L, -2) != LUA_TTABLE) {
        lua_pop(L, 2);
        return false;
    }
    lua_remove(L, -2);
    return true;
}

/* [.., obj, key] -> [.., obj, key, value]: key looked up in the tables named by obj's
 * metatable `field_tables`; nil when absent. */
static void push_from_field_tables(lua_State *L) {
    int obj = lua_gettop(L) - 1, key = obj + 1;
    if (lua_type(L, obj) == LUA_TTABLE && push_metatable_list(L, obj, "field_tables")) {
        for (lua_Integer i = 1; lua_rawgeti(L, -1, i) == LUA_TSTRING; i++) {
            if (lua_rawget(L, obj) == LUA_TTABLE) {
                lua_pushvalue(L, key);
                if (lua_rawget(L, -2) != LUA_TNIL) {
                    lua_replace(L, key + 1); /* over the list */
                    lua_settop(L, key + 1);
                    return;
                }
                lua_pop(L, 1);
            }
            lua_pop(L, 1);
        }
        lua_pop(L, 2); /* the non-string end marker and the list */
    }
    lua_pushnil(L);
}

/* Pushes the value named by the dotted path `prefix[0..len)` (from _G), or nil. */
static void push_path(lua_State *L, const char *prefix, size_t len) {
    lua_pushglobaltable(L);
    size_t start = 0;
    while (start < len) {
        const char *dot = memchr(prefix + start, '.', len - start);
        size_t end = dot ? (size_t)(dot - prefix) : len;
        lua_pushlstring(L, prefix + start, end - start);
        int depth = 0;
        for (;;) { /* [.., obj, key] */
            if (lua_type(L, -2) == LUA_TTABLE) {
                lua_pushvalue(L, -1);
                if (lua_rawget(L, -3) != LUA_TNIL) break;
                lua_pop(L, 1);
            }
            if (depth == 0) {
                push_from_field_tables(L);
                if (!lua_isnil(L, -1)) break;
                lua_pop(L, 1);
            }
            if (depth++ > 8 || !lua_getmetatable(L, -2)) {
                lua_pushnil(L);
                break;
            }
            metatable_to_methods(L);
            if (lua_type(L, -1) != LUA_TTABLE) {
                lua_pop(L, 1);
                lua_pushnil(L);
                break;
            }
            lua_replace(L, -3); /* continue the search in the __index table */
        }
        /* [.., obj, key, value] */
        lua_replace(L, -3);
        lua_pop(L, 1);
        start = end + 1;
    }
}

/* Whether s is a Lua name (only those are offered as completions). */
static bool is_identifier(const char *s) {
    if (!(*s == '_' || (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z'))) return false;
    for (s++; *s; s++)
        if (!(*s == '_' || (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
              (*s >= '0' && *s <= '9')))
            return false;
    return true;
}

/* qsort order for completion candidates. */
static int compare_strings(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The candidates gathered for one word: whole words ("model.fc1"), before sorting. */
typedef struct {
    const char *word; /* what the learner typed */
    size_t keep;      /* how much of word stays in front of each name ("model.") */
    const char *stem; /* the part being completed */
    char **names;
    size_t n, cap;
} candidates;

/* Adds `name` when it is a Lua name that extends the stem. Names starting with "_" are
 * offered only when the stem does too (internals stay out of sight, as in Python). */
static void candidates_add(candidates *c, const char *name) {
    if (!is_identifier(name) || strncmp(name, c->stem, strlen(c->stem)) != 0) return;
    if (name[0] == '_' && c->stem[0] != '_') return;
    if (c->n == 4096) return;
    if (c->n == c->cap) {
        size_t cap = c->cap ? 2 * c->cap : 64;
        char **grown = realloc(c->names, cap * sizeof *grown);
        if (!grown) return;
        c->names = grown;
        c->cap = cap;
    }
    size_t size = c->keep + strlen(name) + 1;
    char *whole = malloc(size);
    if (!whole) return;
    snprintf(whole, size, "%.*s%s", (int)c->keep, c->word, name);
    c->names[c->n++] = whole;
}

/* Adds the string keys of the table on top (functions only when methods_only). */
static void candidates_add_keys(candidates *c, lua_State *L, bool methods_only) {
    lua_pushnil(L);
    while (lua_next(L, -2)) {
        if (lua_type(L, -2) == LUA_TSTRING && (!methods_only || lua_type(L, -1) == LUA_TFUNCTION))
            candidates_add(c, lua_tostring(L, -2));
        lua_pop(L, 1);
    }
}

/* Adds the names the metatable of the value at `obj` declares: `fields`, and the keys of
 * the tables named by `field_tables`. */
static void candidates_add_declared(candidates *c, lua_State *L, int obj) {
    if (push_metatable_list(L, obj, "fields")) {
        for (lua_Integer i = 1; lua_rawgeti(L, -1, i) == LUA_TSTRING; i++) {
            candidates_add(c, lua_tostring(L, -1));
            lua_pop(L, 1);
        }
        lua_pop(L, 2);
    }
    if (lua_type(L, obj) == LUA_TTABLE && push_metatable_list(L, obj, "field_tables")) {
        for (lua_Integer i = 1; lua_rawgeti(L, -1, i) == LUA_TSTRING; i++) {
            if (lua_rawget(L, obj) == LUA_TTABLE) candidates_add_keys(c, L, false);
            lua_pop(L, 1);
        }
        lua_pop(L, 2);
    }
}

/* Completion candidates for `word`: globals, or the fields (after ".") or methods (after
 * ":") of what comes before. *out is a malloc'd NUL-separated list of whole words (sorted,
 * without duplicates), *len its size; nothing when there are none. */
void rank_complete_word(lua_State *L, const char *word, char **out, size_t *len) {
    *out = NULL;
    *len = 0;
    int top = lua_gettop(L);
    const char *dot = strrchr(word, '.');
    const char *colon = strrchr(word, ':');
    const char *sep = dot > colon ? dot : colon;
    size_t plen = sep ? (size_t)(sep - word) : 0;
    bool methods_only = sep && *sep == ':';
    if (sep && memchr(word, ':', plen)) return; /* "a:b.c" cannot be completed */
    candidates c = {word, sep ? plen + 1 : 0, sep ? sep + 1 : word, NULL, 0, 0};
    if (sep)
        push_path(L, word, plen);
    else
        lua_pushglobaltable(L);
    if (sep && !methods_only) candidates_add_declared(&c, L, lua_gettop(L));
    for (int depth = 0; depth < 8 && !lua_isnil(L, -1); depth++) {
        if (lua_type(L, -1) == LUA_TTABLE) candidates_add_keys(&c, L, methods_only);
        if (!sep || !lua_getmetatable(L, -1)) break; /* globals: no __index walk */
        metatable_to_methods(L);
        lua_remove(L, -2);
        if (lua_type(L, -1) != LUA_TTABLE) break;
    }
    lua_settop(L, top);
    if (c.n == 0) {
        free(c.names);
        return;
    }
    qsort(c.names, c.n, sizeof *c.names, compare_strings);
    size_t total = 0;
    for (size_t i = 0; i < c.n; i++) total += strlen(c.names[i]) + 1;
    char *buf = malloc(total + 1);
    size_t at = 0;
    for (size_t i = 0; i < c.n; i++) {
        if (buf && (i == 0 || strcmp(c.names[i], c.names[i - 1]) != 0)) {
            size_t l = strlen(c.names[i]) + 1;
            memcpy(buf + at, c.names[i], l);
            at += l;
        }
    }
    for (size_t i = 0; i < c.n; i++) free(c.names[i]);
    free(c.names);
    if (buf && at > 0) {
        *out = buf;
        *len = at - 1; /* no NUL after the last name */
    } else {
        free(buf);
    }
}
