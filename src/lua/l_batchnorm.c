/* l_batchnorm.c — F.batch_norm and F._sync_batch_norm over the C op of
 * src/nn/batchnorm.h, for nn.BatchNorm1d and nn.SyncBatchNorm (lua/nn.lua).
 *
 * SyncBatchNorm's sums over the process group are done by a Lua function the module
 * supplies (it calls dist.all_reduce), so that src/nn knows nothing of processes or Lua:
 * the op gets a C reducer whose context is a registry reference to that function, called
 * in forward and again in backward (during t:backward(), on the thread that runs it, as
 * the gradient hooks of l_grad_hook.c are). */
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#include "lua/l_internal.h"
#include "nn/batchnorm.h"

typedef struct {
    lua_State *L; /* the state the function belongs to */
    int ref;      /* LUA_REGISTRYINDEX reference to fn(t), which sums t over the group */
} sum_ctx;

static void sum_ctx_release(void *p) {
    sum_ctx *c = p;
    if (!c) return;
    luaL_unref(c->L, LUA_REGISTRYINDEX, c->ref);
    free(c);
}

/* The reducer's sum: buf goes into a float64 tensor, fn(t) sums it in place, and the
 * result comes back. A Lua error becomes the op's error, with its message. */
static ddp_status lua_sum(void *p, double *buf, int64_t n) {
    sum_ctx *c = p;
    lua_State *running = l_grad_hook_enter(NULL); /* the thread inside t:backward(), if any */
    l_grad_hook_leave(running);
    lua_State *L = running ? running : c->L;
    tensor *t;
    DDP_CHECK(tensor_from_data(buf, &n, 1, DTYPE_FLOAT64, &t));
    luaL_checkstack(L, 4, "SyncBatchNorm");
    lua_rawgeti(L, LUA_REGISTRYINDEX, c->ref);
    ddp_lua_push_tensor(L, tensor_retain(t));
    ddp_status s = DDP_OK;
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
        const char *msg = lua_tostring(L, -1);
        s = DDP_FAIL(DDP_ERR_COMM, "SyncBatchNorm: %s", msg ? msg : "the group sum failed");
        lua_pop(L, 1);
    } else {
        memcpy(buf, tensor_data(t), sizeof(double) * (size_t)n);
    }
    tensor_release(t);
    return s;
}

/* An optional (C) tensor argument: nil or a tensor. */
static tensor *l_opt_param(lua_State *L, int idx) {
    return lua_isnoneornil(L, idx) ? NULL : ddp_lua_check_tensor(L, idx);
}

/* F.batch_norm(input, running_mean, running_var, weight, bias, training=false,
 * momentum=0.1, eps=1e-5) and, with a summing function at 9, F._sync_batch_norm. */
static int l_batch_norm_common(lua_State *L, bool sync) {
    tensor *x = ddp_lua_check_tensor(L, 1);
    tensor *rm = l_opt_param(L, 2), *rv = l_opt_param(L, 3);
    tensor *w = l_opt_param(L, 4), *b = l_opt_param(L, 5);
    bool training = lua_toboolean(L, 6);
    double momentum = luaL_optnumber(L, 7, 0.1), eps = luaL_optnumber(L, 8, 1e-5);
    if (sync) luaL_checktype(L, 9, LUA_TFUNCTION);
    if ((rm == NULL) != (rv == NULL))
        return luaL_error(L, "batch_norm: give both running_mean and running_var, or neither");
    if ((rm && rm->requires_grad) || (rv && rv->requires_grad))
        return luaL_error(L, "batch_norm: running_mean and running_var are buffers and must "
                             "not require grad");
    tensor **slot = l_new_box(L);
    bn_reducer r = {lua_sum, NULL, sum_ctx_release};
    if (sync) {
        sum_ctx *c = malloc(sizeof *c);
        if (!c) return luaL_error(L, "SyncBatchNorm: out of memory");
        lua_pushvalue(L, 9);
        c->ref = luaL_ref(L, LUA_REGISTRYINDEX);
        lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
        c->L = lua_tothread(L, -1);
        lua_pop(L, 1);
        r.ctx = c;
    }
    lua_State *prev = l_grad_hook_enter(L); /* forward's sums run on this thread */
    ddp_status s = ag_batch_norm(x, w, b, rm, rv, training, momentum, eps, sync ? &r : NULL, slot);
    l_grad_hook_leave(prev);
    l_check(L, s);
    return 1;
}

static int l_f_batch_norm(lua_State *L) {
    return l_batch_norm_common(L, false);
}

static int l_f_sync_batch_norm(lua_State *L) {
    return l_batch_norm_common(L, true);
}

/* See l_internal.h. */
void l_batchnorm_register(lua_State *L) {
    lua_pushcfunction(L, l_f_batch_norm);
    lua_setfield(L, -2, "batch_norm");
    lua_pushcfunction(L, l_f_sync_batch_norm);
    lua_setfield(L, -2, "_sync_batch_norm");
}
