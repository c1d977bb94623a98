/* l_nn.c — the C half of nn and optim: torch.nn.functional (relu, linear, mse_loss,
 * cross_entropy, softmax, log_softmax) and the per-group optimizer steps that
 * lua/optim.lua calls once per param group, so the loop over parameters runs in C and a
 * training step costs Lua almost nothing.
 *
 * The step functions own no state: the Lua optimizer keeps the state tensors in lists
 * parallel to the group's params, and the step makes missing ones (zeros) on first use. */
#include <lauxlib.h>
#include <string.h>

#include "lua/l_internal.h"
#include "nn/autograd.h"
#include "nn/optim.h"

/* reduction="mean"|"sum"|"none", given as a string or {reduction=} at idx. */
static loss_reduction l_check_reduction(lua_State *L, int idx, const char *op) {
    const char *name = "mean";
    if (lua_type(L, idx) == LUA_TSTRING) {
        name = lua_tostring(L, idx);
    } else if (lua_istable(L, idx)) {
        static const char *const keys[] = {"reduction", NULL};
        ddp_lua_check_option_keys(L, idx, op, keys);
        if (lua_getfield(L, idx, "reduction") != LUA_TNIL) name = luaL_checkstring(L, -1);
        lua_pop(L, 1);
    } else if (!lua_isnoneornil(L, idx)) {
        luaL_typeerror(L, idx, "{reduction=...}");
    }
    loss_reduction r;
    if (!loss_reduction_parse(name, &r))
        luaL_error(L, "%s: reduction must be \"mean\", \"sum\" or \"none\", got \"%s\"", op, name);
    return r;
}

/* F.relu(x) */
static int l_f_relu(lua_State *L) {
    tensor *x = ddp_lua_check_tensor(L, 1);
    tensor **slot = l_new_box(L);
    l_check(L, ag_unary(UNARY_RELU, x, slot));
    return 1;
}

/* F.linear(x, weight, bias?): x @ weight^T + bias */
static int l_f_linear(lua_State *L) {
    tensor *x = ddp_lua_check_tensor(L, 1), *w = ddp_lua_check_tensor(L, 2);
    tensor *b = lua_isnoneornil(L, 3) ? NULL : ddp_lua_check_tensor(L, 3);
    tensor **slot = l_new_box(L);
    l_check(L, ag_linear(x, w, b, slot));
    return 1;
}

/* The losses of autograd.h share one signature. */
typedef ddp_status (*loss_fn)(const tensor *, const tensor *, loss_reduction, tensor **);

/* F.<op>(input, target, {reduction=}) computed by fn. */
static int l_f_loss(lua_State *L, const char *op, loss_fn fn) {
    tensor *input = ddp_lua_check_tensor(L, 1), *target = ddp_lua_check_tensor(L, 2);
    loss_reduction r = l_check_reduction(L, 3, op);
    tensor **slot = l_new_box(L);
    l_check(L, fn(input, target, r, slot));
    return 1;
}
/* F.mse_loss and F.cross_entropy */
static int l_f_mse_loss(lua_State *L) {
    return l_f_loss(L, "mse_loss", ag_mse_loss);
}
static int l_f_cross_entropy(lua_State *L) {
    return l_f_loss(L, "cross_entropy", ag_cross_entropy);
}

/* The tensor in list[i], or NULL when that entry is nil; raises for other values. */
static tensor *l_list_tensor(lua_State *L, int list, lua_Integer i, const char *what) {
    lua_rawgeti(L, list, i);
    tensor *t = NULL;
    if (!lua_isnil(L, -1)) {
        t = l_opt_tensor(L, -1); /* a released box raises, rather than "is a userdata" */
        if (!t)
            luaL_error(L, "%s %I is a %s, expected a tensor", what, (LUAI_UACINT)i,
                       luaL_typename(L, -1));
    }
    lua_pop(L, 1);
    return t;
}

/* The state tensor list[i], made as zeros like p (and stored) when missing. */
static tensor *l_state_tensor(lua_State *L, int list, lua_Integer i, const tensor *p, int *fresh) {
    tensor *s = l_list_tensor(L, list, i, "optimizer state");
    *fresh = s == NULL;
    if (s) return s;
    tensor **slot = l_new_box(L);
    l_check(L, tensor_zeros_like(p, slot));
    s = *slot;
    lua_rawseti(L, list, i);
    return s;
}

/* An array of n optim_param on the Lua stack (a userdata, so an error cannot leak it). */
static optim_param *param_array(lua_State *L, lua_Integer n) {
    if (n > 1 << 24) luaL_error(L, "optimizer: %I parameters are too many", (LUAI_UACINT)n);
    return lua_newuserdatauv(L, sizeof(optim_param) * (size_t)(n > 0 ? n : 1), 0);
}

/* _sgd_step(params, momentum_bufs, lr, momentum, dampening, weight_decay, nesterov):
 * updates every param that has a grad, all in one call (sgd_steps). */
static int l_sgd_step(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_checktype(L, 2, LUA_TTABLE);
    double lr = luaL_checknumber(L, 3), momentum = luaL_checknumber(L, 4);
    double dampening = luaL_checknumber(L, 5), wd = luaL_checknumber(L, 6);
    int nesterov = lua_toboolean(L, 7);
    lua_Integer n = (lua_Integer)lua_rawlen(L, 1);
    optim_param *ps = param_array(L, n);
    int count = 0;
    for (lua_Integer i = 1; i <= n; i++) {
        tensor *p = l_list_tensor(L, 1, i, "parameter");
        if (!p || !p->grad) continue;
        optim_param *q = &ps[count++];
        memset(q, 0, sizeof *q);
        q->param = p;
        q->grad = p->grad;
        int first = 0;
        if (momentum != 0.0) q->momentum_buf = l_state_tensor(L, 2, i, p, &first);
        q->first_step = first;
    }
    l_check(L, sgd_steps(ps, count, lr, momentum, dampening, wd, nesterov));
    return 0;
}

/* _adam_step(params, exp_avgs, exp_avg_sqs, steps, lr, beta1, beta2, eps, weight_decay,
 * decoupled): Adam (decoupled false) or AdamW (true) on every param that has a grad, all
 * in one call (adam_steps); steps[i] counts that param's updates. */
static int l_adam_step(lua_State *L) {
    for (int i = 1; i <= 4; i++) luaL_checktype(L, i, LUA_TTABLE);
    double lr = luaL_checknumber(L, 5), beta1 = luaL_checknumber(L, 6);
    double beta2 = luaL_checknumber(L, 7), eps = luaL_checknumber(L, 8);
    double wd = luaL_checknumber(L, 9);
    int decoupled = lua_toboolean(L, 10);
    lua_Integer n = (lua_Integer)lua_rawlen(L, 1);
    optim_param *ps = param_array(L, n);
    lua_Integer *at = lua_newuserdatauv(L, sizeof(lua_Integer) * (size_t)(n > 0 ? n : 1), 0);
    int count = 0;
    for (lua_Integer i = 1; i <= n; i++) {
        tensor *p = l_list_tensor(L, 1, i, "parameter");
        if (!p || !p->grad) continue;
        at[count] = i; /* where its step count goes back */
        optim_param *q = &ps[count++];
        memset(q, 0, sizeof *q);
        q->param = p;
        q->grad = p->grad;
        int fresh;
        q->exp_avg = l_state_tensor(L, 2, i, p, &fresh);
        q->exp_avg_sq = l_state_tensor(L, 3, i, p, &fresh);
        lua_rawgeti(L, 4, i);
        q->step = lua_tointeger(L, -1) + 1;
        lua_pop(L, 1);
    }
    l_check(L, adam_steps(ps, count, lr, beta1, beta2, eps, wd, decoupled));
    /* the counts move only once every step was taken */
    for (int k = 0; k < count; k++) {
        lua_pushinteger(L, ps[k].step);
        lua_rawseti(L, 4, at[k]);
    }
    return 0;
}

static const luaL_Reg functional_functions[] = {
    {"relu", l_f_relu},
    {"linear", l_f_linear},
    {"mse_loss", l_f_mse_loss},
    {"cross_entropy", l_f_cross_entropy},
    {NULL, NULL},
};

/* Tensor methods that F also offers (F.softmax(x, 1) is x:softmax(1)). */
static const char *const functional_twins[] = {"softmax", "log_softmax", "sigmoid", "tanh", NULL};

/* bindings.h: {functional = F, _sgd_step, _adam_step} (package.loaded["ddp.nn_core"]). */
int luaopen_ddp_nn(lua_State *L) {
    l_tensor_open(L);
    lua_newtable(L);
    luaL_newlib(L, functional_functions);
    l_batchnorm_register(L);
    l_push_tensor_methods(L);
    for (int i = 0; functional_twins[i]; i++) {
        lua_getfield(L, -1, functional_twins[i]);
        lua_setfield(L, -3, functional_twins[i]);
    }
    lua_pop(L, 1);
    lua_setfield(L, -2, "functional");
    lua_pushcfunction(L, l_sgd_step);
    lua_setfield(L, -2, "_sgd_step");
    lua_pushcfunction(L, l_adam_step);
    lua_setfield(L, -2, "_adam_step");
    return 1;
}
