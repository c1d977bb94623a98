/* l_ddp.c — the C half of nn.DistributedDataParallel (lua/nn/ddp.lua): a Reducer object
 * over src/dist/reducer.h whose gradient-ready hooks (src/nn/autograd.h) are C functions,
 * so the per-parameter work of a backward pass (copy into the bucket, launch its
 * all_reduce, and after the last one wait and write back) never goes through Lua. With a
 * comm hook written in Lua, the hook asks the Lua side to launch the ready buckets and to
 * finish the pass (a callback set by set_external).
 *
 * package.loaded["ddp.reducer_core"] = {new = Reducer.new}. Bucket and parameter indices
 * are 0-based, as PyTorch's. */
#include <lauxlib.h>
#include <stdlib.h>

#include "dist/reducer.h"
#include "lua/l_internal.h"
#include "nn/autograd.h"

#define REDUCER_MT "ddp.Reducer"

typedef struct reducer_box reducer_box;

typedef struct {
    reducer_box *box;
    int index;
} hook_ctx;

struct reducer_box {
    reducer *r; /* owned; NULL once freed */
    int n;
    tensor **params; /* retained, for removing the hooks */
    uint64_t *hook_ids;
    bool external;
    int callback; /* registry ref of the Lua side's launcher, or LUA_NOREF */
    lua_State *L;
};

static reducer_box *check_box(lua_State *L) {
    reducer_box *b = luaL_checkudata(L, 1, REDUCER_MT);
    if (!b->r) luaL_error(L, "DistributedDataParallel: this reducer was freed");
    return b;
}

/* The gradient-ready hook of parameter c->index. */
static ddp_status on_grad_ready(tensor *leaf, void *p) {
    (void)leaf;
    hook_ctx *c = p;
    reducer_box *b = c->box;
    if (!b->r || !reducer_armed(b->r)) return DDP_OK;
    DDP_CHECK(reducer_mark_ready(b->r, c->index));
    if (b->external) {
        lua_State *L = l_grad_hook_running(b->L);
        luaL_checkstack(L, 2, "DistributedDataParallel");
        lua_rawgeti(L, LUA_REGISTRYINDEX, b->callback);
        return l_grad_hook_pcall(L, 0);
    }
    if (reducer_all_launched(b->r)) return reducer_finalize(b->r);
    return DDP_OK;
}

static void remove_hooks(reducer_box *b) {
    for (int i = 0; b->params && i < b->n; i++) {
        if (b->hook_ids && b->hook_ids[i]) ag_remove_grad_hook(b->params[i], b->hook_ids[i]);
        tensor_release(b->params[i]);
    }
    free(b->params);
    free(b->hook_ids);
    b->params = NULL;
    b->hook_ids = NULL;
}

static int l_reducer_gc(lua_State *L) {
    reducer_box *b = luaL_checkudata(L, 1, REDUCER_MT);
    remove_hooks(b);
    if (b->callback != LUA_NOREF) luaL_unref(L, LUA_REGISTRYINDEX, b->callback);
    b->callback = LUA_NOREF;
    reducer_free(b->r);
    b->r = NULL;
    return 0;
}

/* Reducer.new(params, names, {first_cap=, cap=, gradient_as_bucket_view=,
 * find_unused_parameters=}, group) */
static int l_reducer_new(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_checktype(L, 2, LUA_TTABLE);
    luaL_checktype(L, 3, LUA_TTABLE);
    static const char *const known[] = {"first_cap", "cap", "gradient_as_bucket_view",
                                        "find_unused_parameters", NULL};
    ddp_lua_check_option_keys(L, 3, "Reducer", known);
    process_group *g = ddp_lua_check_group(L, 4);
    if (!g) return luaL_error(L, "DistributedDataParallel: this rank is not a member of the group");
    int n = (int)luaL_len(L, 1);
    if ((int)luaL_len(L, 2) != n) return luaL_error(L, "Reducer: one name per parameter");
    reducer_options o = {
        .first_cap = (size_t)l_opt_number(L, 3, "first_cap", 1 << 20),
        .cap = (size_t)l_opt_number(L, 3, "cap", 25 << 20),
        .gradient_as_bucket_view = l_opt_boolean(L, 3, "gradient_as_bucket_view", 0),
        .find_unused_parameters = l_opt_boolean(L, 3, "find_unused_parameters", 0),
    };
    reducer_box *b = lua_newuserdatauv(L, sizeof *b, 0);
    b->r = NULL;
    b->n = 0;
    b->params = NULL;
    b->hook_ids = NULL;
    b->external = false;
    b->callback = LUA_NOREF;
    b->L = L;
    luaL_setmetatable(L, REDUCER_MT);
    tensor **params = calloc((size_t)(n > 0 ? n : 1), sizeof *params);
    const char **names = calloc((size_t)(n > 0 ? n : 1), sizeof *names);
    hook_ctx *ctxs = NULL;
    if (!params || !names) {
        free(params);
        free(names);
        return luaL_error(L, "DistributedDataParallel: out of memory");
    }
    for (int i = 0; i < n; i++) {
        lua_geti(L, 1, i + 1);
        params[i] = ddp_lua_to_tensor(L, -1);
        lua_pop(L, 1);
        lua_geti(L, 2, i + 1);
        names[i] = lua_tostring(L, -1); /* kept alive by the names table */
        lua_pop(L, 1);
        if (!params[i]) {
            free(params);
            free(names);
            return luaL_error(L, "Reducer: parameter %d is not a tensor", i + 1);
        }
    }
    ddp_status s = reducer_new(g, params, names, n, &o, &b->r);
    free(names);
    if (s != DDP_OK) {
        free(params);
        return ddp_lua_raise(L, s);
    }
    b->n = n;
    b->params = params;
    for (int i = 0; i < n; i++) tensor_retain(params[i]);
    b->hook_ids = calloc((size_t)(n > 0 ? n : 1), sizeof *b->hook_ids);
    if (!b->hook_ids) return luaL_error(L, "DistributedDataParallel: out of memory");
    for (int i = 0; i < n; i++) {
        ctxs = malloc(sizeof *ctxs);
        if (!ctxs) return luaL_error(L, "DistributedDataParallel: out of memory");
        ctxs->box = b;
        ctxs->index = i;
        l_check(L, ag_add_grad_hook(params[i], on_grad_ready, ctxs, free, &b->hook_ids[i]));
    }
    return 1;
}

/* Marks used[i] for each parameter the visited leaf is. */
typedef struct {
    reducer_box *b;
    bool *used;
} reach;

static void visit_leaf(tensor *leaf, void *p) {
    reach *x = p;
    for (int i = 0; i < x->b->n; i++)
        if (x->b->params[i] == leaf) x->used[i] = true;
}

/* Collects the tensors in the value at idx (a tensor, or tables of them) into out. */
static void collect_tensors(lua_State *L, int idx, tensor ***out, int *n, int *cap, int depth) {
    tensor *t = ddp_lua_to_tensor(L, idx);
    if (t) {
        if (*n == *cap) {
            *cap = *cap ? *cap * 2 : 8;
            tensor **grown = realloc(*out, sizeof **out * (size_t)*cap);
            if (!grown) return;
            *out = grown;
        }
        (*out)[(*n)++] = t;
        return;
    }
    if (!lua_istable(L, idx) || depth > 8) return;
    idx = lua_absindex(L, idx);
    luaL_checkstack(L, 3, "DistributedDataParallel");
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        collect_tensors(L, -1, out, n, cap, depth + 1);
        lua_pop(L, 1);
    }
}

/* r:prepare(outputs?): arms the next backward; with outputs, finds the parameters they
 * do not reach (find_unused_parameters). */
static int l_reducer_prepare(lua_State *L) {
    reducer_box *b = check_box(L);
    bool *used = NULL;
    if (!lua_isnoneornil(L, 2)) {
        tensor **roots = NULL;
        int n = 0, cap = 0;
        collect_tensors(L, 2, &roots, &n, &cap, 0);
        used = calloc((size_t)(b->n > 0 ? b->n : 1), sizeof *used);
        reach x = {b, used};
        ddp_status s = used ? ag_reachable_leaves(roots, n, visit_leaf, &x)
                            : DDP_FAIL(DDP_ERR_NOMEM, "DistributedDataParallel: out of memory");
        free(roots);
        if (s != DDP_OK) {
            free(used);
            return ddp_lua_raise(L, s);
        }
    }
    ddp_status s = reducer_prepare(b->r, used);
    free(used);
    l_check(L, s);
    return 0;
}

static int l_reducer_check_finished(lua_State *L) {
    l_check(L, reducer_check_finished(check_box(L)->r));
    return 0;
}

static int l_reducer_rebuild(lua_State *L) {
    bool did;
    l_check(L, reducer_rebuild(check_box(L)->r, &did));
    lua_pushboolean(L, did);
    return 1;
}

static int l_reducer_finalize(lua_State *L) {
    l_check(L, reducer_finalize(check_box(L)->r));
    return 0;
}

/* r:take_launch(): the next ready bucket for the Lua comm hook (0-based), or nil. */
static int l_reducer_take_launch(lua_State *L) {
    int b = reducer_next_launch(check_box(L)->r);
    if (b < 0) return 0;
    lua_pushinteger(L, b);
    return 1;
}

static int l_reducer_all_launched(lua_State *L) {
    lua_pushboolean(L, reducer_all_launched(check_box(L)->r));
    return 1;
}

static int l_reducer_armed(lua_State *L) {
    lua_pushboolean(L, reducer_armed(check_box(L)->r));
    return 1;
}

/* r:set_external(callback or nil): a Lua comm hook takes over launching. */
static int l_reducer_set_external(lua_State *L) {
    reducer_box *b = check_box(L);
    if (b->callback != LUA_NOREF) luaL_unref(L, LUA_REGISTRYINDEX, b->callback);
    b->callback = LUA_NOREF;
    b->external = !lua_isnoneornil(L, 2);
    if (b->external) {
        luaL_checktype(L, 2, LUA_TFUNCTION);
        lua_pushvalue(L, 2);
        b->callback = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    reducer_set_external_hook(b->r, b->external);
    return 0;
}

static int l_reducer_shadow_backward(lua_State *L) {
    l_check(L, reducer_shadow_backward(check_box(L)->r));
    return 0;
}

static int l_reducer_zero_buckets(lua_State *L) {
    reducer_zero_buckets(check_box(L)->r);
    return 0;
}

static int l_reducer_bucket_count(lua_State *L) {
    lua_pushinteger(L, reducer_bucket_count(check_box(L)->r));
    return 1;
}

/* The bucket index at 2, checked (0-based). */
static int check_bucket(lua_State *L, reducer_box *b) {
    lua_Integer i = luaL_checkinteger(L, 2);
    int nb = reducer_bucket_count(b->r);
    if (i < 0 || i >= nb)
        luaL_error(L, "DistributedDataParallel: bucket %d does not exist (0 to %d)", (int)i,
                   nb - 1);
    return (int)i;
}

/* r:bucket_buffer(i): the flat buffer tensor (shares the bucket's memory). */
static int l_reducer_bucket_buffer(lua_State *L) {
    reducer_box *b = check_box(L);
    int i = check_bucket(L, b);
    l_push_shared_tensor(L, tensor_retain(reducer_bucket_buffer(b->r, i)));
    return 1;
}

/* r:bucket_params(i): a list of the bucket's parameter indices (0-based). */
static int l_reducer_bucket_params(lua_State *L) {
    reducer_box *b = check_box(L);
    int i = check_bucket(L, b), n;
    const int *idx = reducer_bucket_params(b->r, i, &n);
    lua_createtable(L, n, 0);
    for (int k = 0; k < n; k++) {
        lua_pushinteger(L, idx[k]);
        lua_rawseti(L, -2, k + 1);
    }
    return 1;
}

/* r:bucket_times(i) -> ready, start, end (seconds; 0 when unknown). */
static int l_reducer_bucket_times(lua_State *L) {
    reducer_box *b = check_box(L);
    double t[3];
    reducer_bucket_times(b->r, check_bucket(L, b), &t[0], &t[1], &t[2]);
    for (int k = 0; k < 3; k++) lua_pushnumber(L, t[k]);
    return 3;
}

static int l_reducer_finalize_times(lua_State *L) {
    double a, z;
    reducer_finalize_times(check_box(L)->r, &a, &z);
    lua_pushnumber(L, a);
    lua_pushnumber(L, z);
    return 2;
}

static int l_reducer_now(lua_State *L) {
    lua_pushnumber(L, reducer_now());
    return 1;
}

static int l_reducer_rebuilt(lua_State *L) {
    lua_pushboolean(L, reducer_rebuilt(check_box(L)->r));
    return 1;
}

int luaopen_ddp_reducer(lua_State *L) {
    static const luaL_Reg methods[] = {
        {"prepare", l_reducer_prepare},
        {"check_finished", l_reducer_check_finished},
        {"rebuild", l_reducer_rebuild},
        {"finalize", l_reducer_finalize},
        {"take_launch", l_reducer_take_launch},
        {"all_launched", l_reducer_all_launched},
        {"armed", l_reducer_armed},
        {"set_external", l_reducer_set_external},
        {"shadow_backward", l_reducer_shadow_backward},
        {"zero_buckets", l_reducer_zero_buckets},
        {"bucket_count", l_reducer_bucket_count},
        {"bucket_buffer", l_reducer_bucket_buffer},
        {"bucket_params", l_reducer_bucket_params},
        {"bucket_times", l_reducer_bucket_times},
        {"finalize_times", l_reducer_finalize_times},
        {"rebuilt", l_reducer_rebuilt},
        {"free", l_reducer_gc},
        {NULL, NULL},
    };
    if (luaL_newmetatable(L, REDUCER_MT)) {
        lua_pushcfunction(L, l_reducer_gc);
        lua_setfield(L, -2, "__gc");
        luaL_newlib(L, methods);
        lua_setfield(L, -2, "__index");
    }
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushcfunction(L, l_reducer_new);
    lua_setfield(L, -2, "new");
    lua_pushcfunction(L, l_reducer_now);
    lua_setfield(L, -2, "now");
    return 1;
}
