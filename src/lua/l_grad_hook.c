/* l_grad_hook.c — t:register_post_accumulate_grad_hook(fn), as PyTorch's: fn(t) runs
 * once t's .grad is final for the running backward pass (the engine's gradient-ready
 * hook, src/nn/autograd.h), and the returned handle's :remove() takes it away again.
 * DDP's reducer is driven by these hooks (lua/nn/ddp.lua).
 *
 * A hook is a registry reference to the Lua function; the engine owns it with the leaf
 * and drops the reference when the hook is removed or the tensor is freed. The hook runs
 * on the Lua thread that called backward (l_grad_hook_enter records it), so a backward
 * inside a coroutine calls its hooks on that coroutine. An error a hook raises stops the
 * backward pass and is raised again, unchanged, by t:backward(). */
#include <lauxlib.h>
#include <stdlib.h>

#include "lua/l_internal.h"
#include "nn/autograd.h"

#define HANDLE_MT "torch.utils.hooks.RemovableHandle"
#define REG_HOOK_ERROR "ddplab.grad_hook_error"

typedef struct {
    lua_State *L; /* the state the function belongs to (its main thread is in there too) */
    int ref;      /* LUA_REGISTRYINDEX reference to the function */
} hook_ctx;

typedef struct {
    tensor *t; /* retained; NULL once the handle was collected */
    uint64_t id;
} handle_box;

/* The Lua thread inside t:backward() now (NULL outside one). */
static lua_State *running_L;

lua_State *l_grad_hook_enter(lua_State *L) {
    lua_State *prev = running_L;
    running_L = L;
    return prev;
}

void l_grad_hook_leave(lua_State *prev) {
    running_L = prev;
}

int l_grad_hook_raise_pending(lua_State *L) {
    if (lua_getfield(L, LUA_REGISTRYINDEX, REG_HOOK_ERROR) == LUA_TNIL) {
        lua_pop(L, 1);
        return 0;
    }
    lua_pushnil(L);
    lua_setfield(L, LUA_REGISTRYINDEX, REG_HOOK_ERROR);
    return lua_error(L);
}

static void hook_ctx_free(void *p) {
    hook_ctx *c = p;
    luaL_unref(c->L, LUA_REGISTRYINDEX, c->ref);
    free(c);
}

lua_State *l_grad_hook_running(lua_State *fallback) {
    return running_L ? running_L : fallback;
}

ddp_status l_grad_hook_pcall(lua_State *L, int nargs) {
    if (lua_pcall(L, nargs, 0, 0) == LUA_OK) return DDP_OK;
    const char *msg = lua_tostring(L, -1);
    ddp_status s = DDP_FAIL(DDP_ERR_STATE, "%s", msg ? msg : "error in a gradient hook");
    lua_setfield(L, LUA_REGISTRYINDEX, REG_HOOK_ERROR);
    return s;
}

/* The engine's side of a Lua hook: calls fn(leaf); a Lua error is kept for backward. */
static ddp_status run_lua_hook(tensor *leaf, void *p) {
    hook_ctx *c = p;
    lua_State *L = l_grad_hook_running(c->L);
    luaL_checkstack(L, 4, "grad hook");
    lua_rawgeti(L, LUA_REGISTRYINDEX, c->ref);
    l_push_shared_tensor(L, tensor_retain(leaf));
    return l_grad_hook_pcall(L, 1);
}

/* t:register_post_accumulate_grad_hook(fn) -> handle */
static int l_register_hook(lua_State *L) {
    tensor *t = l_check_self(L);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    handle_box *h = lua_newuserdatauv(L, sizeof *h, 0);
    h->t = NULL;
    h->id = 0;
    luaL_setmetatable(L, HANDLE_MT);
    hook_ctx *c = malloc(sizeof *c);
    if (!c) return luaL_error(L, "register_post_accumulate_grad_hook: out of memory");
    c->L = L;
    lua_pushvalue(L, 2);
    c->ref = luaL_ref(L, LUA_REGISTRYINDEX);
    uint64_t id;
    l_check(L, ag_add_grad_hook(t, run_lua_hook, c, hook_ctx_free, &id)); /* frees c on error */
    h->t = tensor_retain(t);
    h->id = id;
    return 1;
}

/* handle:remove(): the hook runs no more (removing twice does nothing, as PyTorch). */
static int l_handle_remove(lua_State *L) {
    handle_box *h = luaL_checkudata(L, 1, HANDLE_MT);
    if (h->t) ag_remove_grad_hook(h->t, h->id);
    return 0;
}

/* __gc: the handle lets go of the tensor; the hook stays (as PyTorch's handles). */
static int l_handle_gc(lua_State *L) {
    handle_box *h = luaL_checkudata(L, 1, HANDLE_MT);
    tensor_release(h->t);
    h->t = NULL;
    return 0;
}

static int l_handle_tostring(lua_State *L) {
    handle_box *h = luaL_checkudata(L, 1, HANDLE_MT);
    lua_pushfstring(L, "RemovableHandle(%d)", (int)h->id);
    return 1;
}

void l_grad_hook_methods(lua_State *L) {
    if (luaL_newmetatable(L, HANDLE_MT)) {
        static const luaL_Reg meta[] = {
            {"__gc", l_handle_gc}, {"__tostring", l_handle_tostring}, {NULL, NULL}};
        static const luaL_Reg methods[] = {{"remove", l_handle_remove}, {NULL, NULL}};
        luaL_setfuncs(L, meta, 0);
        luaL_newlib(L, methods);
        lua_setfield(L, -2, "__index");
    }
    lua_pop(L, 1);
    lua_pushcfunction(L, l_register_hook);
    lua_setfield(L, -2, "register_post_accumulate_grad_hook");
}
