/* l_tensor_ops.c — the arithmetic face of Tensor: element-wise ops with tensors or
 * numbers on either side (methods, `_` in-place forms and the + - * / ^ unary-
 * metamethods), unary math, clamp, reductions, comparisons, matmul, softmax and
 * chunk/split.
 *
 * Differentiable ops go through the autograd layer (ag_*), so a graph is recorded
 * whenever an input requires grad; comparisons, argmax and in-place ops call the tensor
 * core directly (in-place ops after ag_check_inplace). The same C functions serve as
 * methods (`t:add(u)`) and as torch.* functions (`torch.add(t, u)`): l_torch.c copies
 * them from the methods table. */
#include <lauxlib.h>
#include <stdio.h>

#include "lua/l_internal.h"
#include "nn/autograd.h"

/* A real number (not a numeric string, which Lua would otherwise accept). */
static int l_is_number(lua_State *L, int idx) {
    return lua_type(L, idx) == LUA_TNUMBER;
}

/* The `alpha` of add/sub: a number at idx or {alpha=} there; 1 by default. */
static double l_alpha(lua_State *L, int idx) {
    if (l_is_number(L, idx)) return lua_tonumber(L, idx);
    if (lua_istable(L, idx)) {
        static const char *const keys[] = {"alpha", NULL};
        ddp_lua_check_option_keys_here(L, idx, keys);
        return l_opt_number(L, idx, "alpha", 1.0);
    }
    if (!lua_isnoneornil(L, idx)) luaL_typeerror(L, idx, "number or {alpha=...}");
    return 1.0;
}

/* True when the value at idx is a Lua float (2.0, 0.5) and t holds integers or bools.
 * PyTorch types a Python float as floating point whatever its value (torch.tensor([1, 2])
 * + 2.0 is float32), but the core sees only a double and keeps integers for a whole
 * value; the bindings, which can tell 2 from 2.0, make the tensor float first. */
static int l_float_meets_ints(lua_State *L, int idx, const tensor *t) {
    return lua_type(L, idx) == LUA_TNUMBER && !lua_isinteger(L, idx) && !dtype_is_float(t->dtype);
}

/* a op b with a tensor on at least one side; `grad` picks ag_* over tensor_*. */
static int l_binary_common(lua_State *L, binary_op op, int grad, double alpha) {
    tensor *a = l_opt_tensor(L, 1), *b = l_opt_tensor(L, 2); /* a released box raises */
    if (a) {
        if (!b && !l_is_number(L, 2) && !lua_isboolean(L, 2)) {
            l_check_operand(L, 2); /* t.add(u) says to use a colon */
            return luaL_typeerror(L, 2, "tensor or number");
        }
    } else if (b) {
        if (!l_is_number(L, 1)) return luaL_typeerror(L, 1, "tensor or number");
    } else {
        l_check_self(L); /* raises: no tensor at all, as in t.add(2) for t:add(2) */
        return 0;        /* not reached */
    }
    /* (grad is 0 only for comparisons, which compare a scalar exactly as it is) */
    if (grad && a && !b && l_float_meets_ints(L, 2, a)) {
        tensor **as_float = l_new_box(L);
        l_check(L, tensor_to_dtype(a, DTYPE_FLOAT32, as_float));
        a = *as_float;
    } else if (grad && b && !a && l_float_meets_ints(L, 1, b)) {
        tensor **as_float = l_new_box(L);
        l_check(L, tensor_to_dtype(b, DTYPE_FLOAT32, as_float));
        b = *as_float;
    }
    tensor **slot = l_new_box(L);
    if (a && b) {
        if (alpha != 1.0) {
            tensor **scaled = l_new_box(L);
            l_check(L,
                    (grad ? ag_binary_scalar : tensor_binary_scalar)(BINARY_MUL, b, alpha, scaled));
            l_check(L, (grad ? ag_binary : tensor_binary)(op, a, *scaled, slot));
            lua_pop(L, 1);
        } else {
            l_check(L, (grad ? ag_binary : tensor_binary)(op, a, b, slot));
        }
    } else if (a) {
        double s = lua_isboolean(L, 2) ? lua_toboolean(L, 2) : lua_tonumber(L, 2);
        l_check(L, (grad ? ag_binary_scalar : tensor_binary_scalar)(op, a, s * alpha, slot));
    } else {
        l_check(L,
                (grad ? ag_scalar_binary : tensor_scalar_binary)(op, lua_tonumber(L, 1), b, slot));
    }
    return 1;
}

/* add/sub (with alpha), mul, div, pow, maximum, minimum: differentiable. */
static int l_add(lua_State *L) {
    return l_binary_common(L, BINARY_ADD, 1, l_alpha(L, 3));
}
static int l_sub(lua_State *L) {
    return l_binary_common(L, BINARY_SUB, 1, l_alpha(L, 3));
}
static int l_mul(lua_State *L) {
    return l_binary_common(L, BINARY_MUL, 1, 1.0);
}
static int l_div(lua_State *L) {
    return l_binary_common(L, BINARY_DIV, 1, 1.0);
}
static int l_pow(lua_State *L) {
    return l_binary_common(L, BINARY_POW, 1, 1.0);
}
static int l_maximum(lua_State *L) {
    return l_binary_common(L, BINARY_MAXIMUM, 1, 1.0);
}
static int l_minimum(lua_State *L) {
    return l_binary_common(L, BINARY_MINIMUM, 1, 1.0);
}
/* Comparisons give bool tensors and record no graph. */
static int l_eq(lua_State *L) {
    return l_binary_common(L, BINARY_EQ, 0, 1.0);
}
static int l_ne(lua_State *L) {
    return l_binary_common(L, BINARY_NE, 0, 1.0);
}
static int l_lt(lua_State *L) {
    return l_binary_common(L, BINARY_LT, 0, 1.0);
}
static int l_le(lua_State *L) {
    return l_binary_common(L, BINARY_LE, 0, 1.0);
}
static int l_gt(lua_State *L) {
    return l_binary_common(L, BINARY_GT, 0, 1.0);
}
static int l_ge(lua_State *L) {
    return l_binary_common(L, BINARY_GE, 0, 1.0);
}

/* t:square() = t ^ 2 */
static int l_square(lua_State *L) {
    tensor *t = l_check_self(L);
    tensor **slot = l_new_box(L);
    l_check(L, ag_binary_scalar(BINARY_POW, t, 2.0, slot));
    return 1;
}

/* In place: t = t op other (tensor or number). Returns t. */
static int l_binary_inplace(lua_State *L, binary_op op, double alpha) {
    tensor *t = l_check_self(L);
    tensor *b = l_opt_tensor(L, 2); /* a released box raises */
    if (!b && !l_is_number(L, 2)) {
        l_check_operand(L, 2); /* t.add_(u) says to use a colon */
        return luaL_typeerror(L, 2, "tensor or number");
    }
    char name[32];
    snprintf(name, sizeof name, "%s_", binary_op_name(op));
    tensor *c = l_inplace_clone(L, t, b, name);
    if (c) { /* recorded, as PyTorch records it: the result computed from a clone */
        tensor **r = l_new_box(L);
        if (b && (op == BINARY_ADD || op == BINARY_SUB) && alpha != 1.0) {
            tensor **scaled = l_new_box(L);
            l_check(L, ag_binary_scalar(BINARY_MUL, b, alpha, scaled));
            l_check(L, ag_binary(op, c, *scaled, r));
        } else if (b) {
            l_check(L, ag_binary(op, c, b, r));
        } else {
            l_check(L, ag_binary_scalar(op, c, lua_tonumber(L, 2) * alpha, r));
        }
        l_inplace_finish(L, t, *r, name);
        return 1;
    }
    if (!b && l_float_meets_ints(L, 2, t)) /* int64 t:add_(2.0): a float result (PyTorch) */
        ddp_lua_raise(L, DDP_FAIL(DDP_ERR_ARG,
                                  "%s: the result is float32 and cannot be stored in place into "
                                  "a tensor of dtype %s (use the out-of-place form, or convert "
                                  "the tensor first)",
                                  name, dtype_name(t->dtype)));
    if (b && (op == BINARY_ADD || op == BINARY_SUB) && alpha != 1.0)
        l_check(L, tensor_add_scaled_(t, b, op == BINARY_SUB ? -alpha : alpha));
    else if (b)
        l_check(L, tensor_binary_(op, t, b));
    else
        l_check(L, tensor_binary_scalar_(op, t, lua_tonumber(L, 2) * alpha));
    lua_settop(L, 1);
    return 1;
}
/* In-place forms: add_/sub_ (with alpha), mul_, div_, pow_. Return self. */
static int l_add_(lua_State *L) {
    return l_binary_inplace(L, BINARY_ADD, l_alpha(L, 3));
}
static int l_sub_(lua_State *L) {
    return l_binary_inplace(L, BINARY_SUB, l_alpha(L, 3));
}
static int l_mul_(lua_State *L) {
    return l_binary_inplace(L, BINARY_MUL, 1.0);
}
static int l_div_(lua_State *L) {
    return l_binary_inplace(L, BINARY_DIV, 1.0);
}
static int l_pow_(lua_State *L) {
    return l_binary_inplace(L, BINARY_POW, 1.0);
}

/* ---- unary ------------------------------------------------------------------------- */

static int l_unary(lua_State *L, unary_op op) {
    tensor *t = l_check_self(L);
    tensor **slot = l_new_box(L);
    l_check(L, ag_unary(op, t, slot));
    return 1;
}
/* In place, after checking the graph allows it. Returns self. */
static int l_unary_inplace(lua_State *L, unary_op op) {
    tensor *t = l_check_self(L);
    char name[32];
    snprintf(name, sizeof name, "%s_", unary_op_name(op));
    tensor *c = l_inplace_clone(L, t, NULL, name);
    if (c) { /* recorded: h:relu_() on a layer's output works as in PyTorch */
        tensor **r = l_new_box(L);
        l_check(L, ag_unary(op, c, r));
        l_inplace_finish(L, t, *r, name);
        return 1;
    }
    l_check(L, tensor_unary_(op, t));
    lua_settop(L, 1);
    return 1;
}
#define L_UNARY(fname, op)                                                                         \
    static int l_##fname(lua_State *L) {                                                           \
        return l_unary(L, op);                                                                     \
    }                                                                                              \
    static int l_##fname##_(lua_State *L) {                                                        \
        return l_unary_inplace(L, op);                                                             \
    }
/* Plain functions, one pair per op; the macro only spares repeating the two lines. */
L_UNARY(neg, UNARY_NEG)
L_UNARY(sqrt, UNARY_SQRT)
L_UNARY(exp, UNARY_EXP)
L_UNARY(log, UNARY_LOG)
L_UNARY(abs, UNARY_ABS)
L_UNARY(relu, UNARY_RELU)
L_UNARY(tanh, UNARY_TANH)
L_UNARY(sigmoid, UNARY_SIGMOID)
L_UNARY(sign, UNARY_SIGN)
#undef L_UNARY

/* True when the field `name` of the table at idx is a Lua float (see l_float_meets_ints). */
static int l_field_is_float(lua_State *L, int idx, const char *name) {
    int is_float = lua_getfield(L, idx, name) == LUA_TNUMBER && !lua_isinteger(L, -1);
    lua_pop(L, 1);
    return is_float;
}

/* Reads the bounds of clamp(min, max) or clamp{min=, max=} (either may be nil); returns
 * whether one of them is a Lua float (2.0 included), which makes the result of an
 * integer tensor float, as a Python float does in PyTorch. */
static int l_clamp_args(lua_State *L, int *has_lo, double *lo, int *has_hi, double *hi) {
    int float_bound;
    *has_lo = *has_hi = 0;
    *lo = *hi = 0;
    if (lua_istable(L, 2)) {
        static const char *const keys[] = {"min", "max", NULL};
        ddp_lua_check_option_keys_here(L, 2, keys);
        *has_lo = l_opt_has_number(L, 2, "min", lo);
        *has_hi = l_opt_has_number(L, 2, "max", hi);
        float_bound = l_field_is_float(L, 2, "min") || l_field_is_float(L, 2, "max");
    } else {
        if (!lua_isnoneornil(L, 2)) *lo = luaL_checknumber(L, 2), *has_lo = 1;
        if (!lua_isnoneornil(L, 3)) *hi = luaL_checknumber(L, 3), *has_hi = 1;
        float_bound = (*has_lo && !lua_isinteger(L, 2)) || (*has_hi && !lua_isinteger(L, 3));
    }
    if (!*has_lo && !*has_hi) luaL_error(L, "clamp: at least one of 'min' or 'max' must be given");
    return float_bound;
}

/* t:clamp(min, max) / t:clamp{min=, max=}: differentiable. */
static int l_clamp(lua_State *L) {
    tensor *t = l_check_self(L);
    int has_lo, has_hi;
    double lo, hi;
    if (l_clamp_args(L, &has_lo, &lo, &has_hi, &hi) && !dtype_is_float(t->dtype)) {
        tensor **as_float = l_new_box(L); /* int64 t:clamp(0.0, 1.0) is float32 */
        l_check(L, tensor_to_dtype(t, DTYPE_FLOAT32, as_float));
        t = *as_float;
    }
    tensor **slot = l_new_box(L);
    l_check(L, ag_clamp(t, has_lo, lo, has_hi, hi, slot));
    return 1;
}

/* t:clamp_(min, max) in place. Returns self. */
static int l_clamp_(lua_State *L) {
    tensor *t = l_check_self(L);
    int has_lo, has_hi;
    double lo, hi;
    if (l_clamp_args(L, &has_lo, &lo, &has_hi, &hi) && !dtype_is_float(t->dtype))
        ddp_lua_raise(L, DDP_FAIL(DDP_ERR_ARG,
                                  "clamp_: the result is float32 and cannot be stored in place "
                                  "into a tensor of dtype %s (use clamp, or convert the tensor "
                                  "first)",
                                  dtype_name(t->dtype)));
    tensor *c = l_inplace_clone(L, t, NULL, "clamp_");
    if (c) {
        tensor **r = l_new_box(L);
        l_check(L, ag_clamp(c, has_lo, lo, has_hi, hi, r));
        l_inplace_finish(L, t, *r, "clamp_");
        return 1;
    }
    l_check(L, tensor_clamp_(t, has_lo, lo, has_hi, hi));
    lua_settop(L, 1);
    return 1;
}

/* ---- reductions -------------------------------------------------------------------- */

/* Reads (dim?, keepdim?) or {dim=, keepdim=} starting at idx; returns whether a dim was
 * given. */
static int l_dim_args(lua_State *L, int idx, int64_t *dim, int *keepdim) {
    *keepdim = 0;
    if (lua_istable(L, idx) && lua_rawlen(L, idx) > 0) /* {1, 2}: see l_reduce_dims */
        luaL_argerror(L, idx, "a list of dims is taken by sum, mean and norm only; give one dim");
    if (lua_istable(L, idx)) {
        static const char *const keys[] = {"dim", "keepdim", NULL};
        ddp_lua_check_option_keys_here(L, idx, keys);
        int has = lua_getfield(L, idx, "dim") != LUA_TNIL;
        int is_int;
        lua_Integer d = lua_tointegerx(L, -1, &is_int);
        if (has && !is_int) /* also refuses 1.5 and 1e300, which would not convert */
            luaL_error(L, "option 'dim' must be an integer, got %s",
                       lua_type(L, -1) == LUA_TNUMBER ? lua_tostring(L, -1) : luaL_typename(L, -1));
        lua_pop(L, 1);
        *dim = has ? (int64_t)d : 0;
        *keepdim = l_opt_boolean(L, idx, "keepdim", 0);
        return has;
    }
    if (lua_isnoneornil(L, idx)) return 0;
    *dim = luaL_checkinteger(L, idx);
    if (!lua_isnoneornil(L, idx + 1)) {
        luaL_checktype(L, idx + 1, LUA_TBOOLEAN);
        *keepdim = lua_toboolean(L, idx + 1);
    }
    return 1;
}

/* sum/mean/norm over a list of dims at idx ({1, 2}, as PyTorch's dim=(1, 2)), keepdim
 * (a boolean) after it: one dim at a time, the highest first so that the lower dims keep
 * their numbers. Exact for these three: a sum of sums, a mean of equal-sized means, a
 * norm of norms. */
static int l_reduce_dims(lua_State *L, reduce_op op, tensor *t, int idx) {
    int keepdim = 0;
    if (!lua_isnoneornil(L, idx + 1)) {
        luaL_checktype(L, idx + 1, LUA_TBOOLEAN);
        keepdim = lua_toboolean(L, idx + 1);
    }
    lua_Integer n = (lua_Integer)lua_rawlen(L, idx);
    int dims[TENSOR_MAX_DIMS];
    bool seen[TENSOR_MAX_DIMS] = {false};
    if (n > TENSOR_MAX_DIMS || n > (t->ndim > 0 ? t->ndim : 1))
        luaL_argerror(L, idx, "more dims listed than the tensor has");
    for (lua_Integer i = 1; i <= n; i++) {
        int is_int;
        lua_rawgeti(L, idx, i);
        lua_Integer d = lua_tointegerx(L, -1, &is_int);
        lua_pop(L, 1);
        if (!is_int) luaL_argerror(L, idx, "dims must be integers");
        l_check(L, tensor_wrap_dim(reduce_op_name(op), d, t->ndim, &dims[i - 1]));
        if (seen[dims[i - 1]])
            luaL_error(L, "%s: dim %d appears more than once in the list of dims",
                       reduce_op_name(op), dims[i - 1]);
        seen[dims[i - 1]] = true;
    }
    tensor **slot = l_new_box(L);
    *slot = tensor_retain(t);
    for (int d = TENSOR_MAX_DIMS - 1; d >= 0; d--) {
        if (!seen[d]) continue;
        tensor *cur = *slot;
        slot = l_new_box(L);
        l_check(L, ag_reduce_dim(op, cur, d, keepdim, slot));
    }
    return 1;
}

/* A reduction over all elements or one dim (see l_dim_args). */
static int l_reduce(lua_State *L, reduce_op op, int grad) {
    tensor *t = l_check_self(L);
    if ((op == REDUCE_SUM || op == REDUCE_MEAN || op == REDUCE_NORM) && lua_istable(L, 2) &&
        lua_rawlen(L, 2) > 0)
        return l_reduce_dims(L, op, t, 2);
    int64_t dim = 0;
    int keepdim;
    int has_dim = l_dim_args(L, 2, &dim, &keepdim);
    tensor **slot = l_new_box(L);
    if (has_dim)
        l_check(L, (grad ? ag_reduce_dim : tensor_reduce_dim)(op, t, dim, keepdim, slot));
    else
        l_check(L, (grad ? ag_reduce_all : tensor_reduce_all)(op, t, slot));
    return 1;
}
/* sum, mean, prod (differentiable); argmax, argmin (indices, int64). */
static int l_sum(lua_State *L) {
    return l_reduce(L, REDUCE_SUM, 1);
}
static int l_mean(lua_State *L) {
    return l_reduce(L, REDUCE_MEAN, 1);
}
static int l_prod(lua_State *L) {
    return l_reduce(L, REDUCE_PROD, 1);
}
static int l_argmax(lua_State *L) {
    return l_reduce(L, REDUCE_ARGMAX, 0);
}
static int l_argmin(lua_State *L) {
    return l_reduce(L, REDUCE_ARGMIN, 0);
}

/* t:norm(p=2, dim?, keepdim?): only the 2-norm. */
static int l_norm(lua_State *L) {
    l_check_self(L);
    if (!lua_isnoneornil(L, 2) && !lua_istable(L, 2)) {
        if (luaL_checknumber(L, 2) != 2.0)
            luaL_argerror(L, 2, "only the 2-norm (p=2) is supported");
        lua_remove(L, 2);
    }
    return l_reduce(L, REDUCE_NORM, 1);
}

/* max/min: (t) -> 0-dim; (t, other tensor) -> element-wise; (t, dim[, keepdim]) ->
 * values, indices. */
static int l_max_min(lua_State *L, int is_min) {
    tensor *t = l_check_self(L);
    if (l_opt_tensor(L, 2)) return is_min ? l_minimum(L) : l_maximum(L);
    int64_t dim = 0;
    int keepdim;
    if (!l_dim_args(L, 2, &dim, &keepdim)) return l_reduce(L, is_min ? REDUCE_MIN : REDUCE_MAX, 1);
    tensor **values = l_new_box(L);
    tensor **indices = l_new_box(L);
    if (grad_mode_enabled() && t->requires_grad) {
        l_check(L, ag_reduce_dim(is_min ? REDUCE_MIN : REDUCE_MAX, t, dim, keepdim, values));
        l_check(
            L, tensor_reduce_dim(is_min ? REDUCE_ARGMIN : REDUCE_ARGMAX, t, dim, keepdim, indices));
    } else {
        l_check(L, tensor_max_dim(t, dim, keepdim, is_min, values, indices));
    }
    return 2;
}
/* t:max(...) / t:min(...): see l_max_min. */
static int l_max(lua_State *L) {
    return l_max_min(L, 0);
}
static int l_min(lua_State *L) {
    return l_max_min(L, 1);
}

/* ---- comparison, linear algebra, softmax -------------------------------------------- */

static int l_equal(lua_State *L) {
    tensor *a = l_check_self(L), *b = l_check_other(L, 2);
    lua_pushboolean(L, tensor_equal(a, b));
    return 1;
}

/* allclose(other, rtol=1e-5, atol=1e-8, equal_nan=false) or (other, {rtol=, atol=}) */
static int l_allclose(lua_State *L) {
    tensor *a = l_check_self(L), *b = l_check_other(L, 2);
    double rtol = 1e-5, atol = 1e-8;
    int equal_nan = 0;
    if (lua_istable(L, 3)) {
        static const char *const keys[] = {"rtol", "atol", "equal_nan", NULL};
        ddp_lua_check_option_keys(L, 3, "allclose", keys);
        rtol = l_opt_number(L, 3, "rtol", rtol);
        atol = l_opt_number(L, 3, "atol", atol);
        equal_nan = l_opt_boolean(L, 3, "equal_nan", 0);
    } else {
        rtol = luaL_optnumber(L, 3, rtol);
        atol = luaL_optnumber(L, 4, atol);
        equal_nan = lua_toboolean(L, 5);
    }
    bool result;
    l_check(L, tensor_allclose(a, b, rtol, atol, equal_nan, &result));
    lua_pushboolean(L, result);
    return 1;
}

/* torch.matmul: 1-D dot, 2-D mm, batched. */
static int l_matmul(lua_State *L) {
    tensor *a = l_check_self(L), *b = l_check_other(L, 2);
    tensor **slot = l_new_box(L);
    l_check(L, ag_matmul(a, b, slot));
    return 1;
}

/* mm of two 2-D tensors. */
static int l_mm(lua_State *L) {
    tensor *a = l_check_self(L), *b = l_check_other(L, 2);
    tensor **slot = l_new_box(L);
    l_check(L, ag_mm(a, b, slot));
    return 1;
}

/* softmax(dim) / log_softmax(dim); dim may also come as {dim=}. */
static int l_softmax_common(lua_State *L, int is_log) {
    tensor *t = l_check_self(L);
    int64_t dim = 0;
    int keepdim;
    if (!l_dim_args(L, 2, &dim, &keepdim))
        luaL_error(L, "%s: give the dimension to normalise over, e.g. %s(1)",
                   is_log ? "log_softmax" : "softmax", is_log ? "log_softmax" : "softmax");
    tensor **slot = l_new_box(L);
    l_check(L, (is_log ? ag_log_softmax : ag_softmax)(t, dim, slot));
    return 1;
}
/* softmax(dim) / log_softmax(dim) */
static int l_softmax(lua_State *L) {
    return l_softmax_common(L, 0);
}
static int l_log_softmax(lua_State *L) {
    return l_softmax_common(L, 1);
}

/* t:index_select(dim, index) */
static int l_index_select(lua_State *L) {
    tensor *t = l_check_self(L);
    lua_Integer dim = luaL_checkinteger(L, 2);
    tensor *index = ddp_lua_check_tensor(L, 3);
    tensor **slot = l_new_box(L);
    l_check(L, tensor_index_select(t, dim, index, slot));
    return 1;
}

/* ---- splitting ------------------------------------------------------------------- */

/* t:chunk(n, dim=0) / t:split(size, dim=0): a Lua list of narrow views. */
static int l_split_common(lua_State *L, int by_count) {
    tensor *t = l_check_self(L);
    lua_Integer k = luaL_checkinteger(L, 2);
    if (t->ndim == 0)
        luaL_error(L, "%s: expects a tensor with at least 1 dimension, got a 0-dim tensor",
                   by_count ? "chunk" : "split");
    int d;
    l_check(L,
            tensor_wrap_dim(by_count ? "chunk" : "split", luaL_optinteger(L, 3, 0), t->ndim, &d));
    luaL_argcheck(L, k > 0, 2, "must be positive");
    int64_t n = t->sizes[d];
    /* ceil(n / k) for chunk, written so that a huge k cannot overflow */
    int64_t step = by_count ? n / k + (n % k != 0) : k;
    if (step == 0) step = 1;
    lua_newtable(L);
    lua_Integer i = 1;
    for (int64_t start = 0; start < n; i++) {
        int64_t len = step > n - start ? n - start : step;
        tensor **slot = l_new_box(L);
        l_check(L, ag_narrow(t, d, start, len, slot));
        lua_rawseti(L, -2, i);
        start += len;
    }
    return 1;
}
/* t:chunk(n, dim=0): n nearly equal parts; t:split(size, dim=0): parts of `size`. */
static int l_tensor_chunk(lua_State *L) {
    return l_split_common(L, 1);
}
static int l_tensor_split(lua_State *L) {
    return l_split_common(L, 0);
}

/* ---- metamethods ------------------------------------------------------------------- */

/* __add, __sub and __unm; alpha never applies to operators. */
static int l_meta_add(lua_State *L) {
    return l_binary_common(L, BINARY_ADD, 1, 1.0);
}
static int l_meta_sub(lua_State *L) {
    return l_binary_common(L, BINARY_SUB, 1, 1.0);
}
static int l_meta_unm(lua_State *L) {
    return l_unary(L, UNARY_NEG);
}
/* The value at idx when it is a number or a one-element tensor (a loss, say). */
static bool compare_operand(lua_State *L, int idx, double *v) {
    if (lua_type(L, idx) == LUA_TNUMBER) {
        *v = lua_tonumber(L, idx);
        return true;
    }
    tensor *t = ddp_lua_to_tensor(L, idx);
    return t && tensor_numel(t) == 1 && tensor_item(t, v) == DDP_OK;
}

/* __lt and __le. Lua turns whatever these return into true or false, so `t > 0` cannot
 * give PyTorch's tensor of bools. For one-element tensors it gives what PyTorch's
 * `if loss < 0.1:` means; for others it says what can give the tensor. */
static int compare(lua_State *L, bool or_equal) {
    double a, b;
    if (compare_operand(L, 1, &a) && compare_operand(L, 2, &b)) {
        lua_pushboolean(L, or_equal ? a <= b : a < b);
        return 1;
    }
    return luaL_error(L, "comparing a tensor of several elements with <, <=, > or >= cannot "
                         "give a tensor in Lua (Lua makes every comparison true or false): use "
                         "the methods, e.g. t:gt(0) for t > 0 (also :lt, :le, :ge, :eq, :ne)");
}
static int l_meta_lt(lua_State *L) {
    return compare(L, false);
}
static int l_meta_le(lua_State *L) {
    return compare(L, true);
}

static const luaL_Reg ops_methods[] = {
    {"add", l_add},
    {"sub", l_sub},
    {"mul", l_mul},
    {"div", l_div},
    {"pow", l_pow},
    {"maximum", l_maximum},
    {"minimum", l_minimum},
    {"square", l_square},
    {"add_", l_add_},
    {"sub_", l_sub_},
    {"mul_", l_mul_},
    {"div_", l_div_},
    {"pow_", l_pow_},
    {"neg", l_neg},
    {"neg_", l_neg_},
    {"sqrt", l_sqrt},
    {"sqrt_", l_sqrt_},
    {"exp", l_exp},
    {"exp_", l_exp_},
    {"log", l_log},
    {"log_", l_log_},
    {"abs", l_abs},
    {"abs_", l_abs_},
    {"relu", l_relu},
    {"relu_", l_relu_},
    {"tanh", l_tanh},
    {"tanh_", l_tanh_},
    {"sigmoid", l_sigmoid},
    {"sigmoid_", l_sigmoid_},
    {"sign", l_sign},
    {"sign_", l_sign_},
    {"clamp", l_clamp},
    {"clamp_", l_clamp_},
    {"sum", l_sum},
    {"mean", l_mean},
    {"prod", l_prod},
    {"norm", l_norm},
    {"max", l_max},
    {"min", l_min},
    {"argmax", l_argmax},
    {"argmin", l_argmin},
    {"eq", l_eq},
    {"ne", l_ne},
    {"lt", l_lt},
    {"le", l_le},
    {"gt", l_gt},
    {"ge", l_ge},
    {"equal", l_equal},
    {"allclose", l_allclose},
    {"matmul", l_matmul},
    {"mm", l_mm},
    {"softmax", l_softmax},
    {"log_softmax", l_log_softmax},
    {"index_select", l_index_select},
    {"chunk", l_tensor_chunk},
    {"split", l_tensor_split},
    {NULL, NULL},
};

static const luaL_Reg ops_metamethods[] = {
    {"__add", l_meta_add}, {"__sub", l_meta_sub}, {"__mul", l_mul},
    {"__div", l_div},      {"__pow", l_pow},      {"__unm", l_meta_unm},
    {"__lt", l_meta_lt},   {"__le", l_meta_le},   {NULL, NULL},
};

/* See l_internal.h. */
void l_tensor_ops_register(lua_State *L) {
    luaL_setfuncs(L, ops_metamethods, 0);
}

void l_tensor_ops_methods(lua_State *L) {
    luaL_setfuncs(L, ops_methods, 0);
}
