/* l_random.c — the random-number API of torch.*: torch.Generator objects, the seed
 * functions (manual_seed, seed, initial_seed), torch.get_rng_state / set_rng_state, and
 * the `generator=` option the random functions of l_torch.c and l_tensor.c take.
 *
 * A Generator box holds a pointer to the generator it works on: its own (a new
 * torch.Generator(), seeded like PyTorch's with 67280421310721) or the process-wide
 * default one (torch.default_generator), so both are used the same way. The generators
 * themselves, and the byte layout of their state, are src/base/generator.h's. */
#include <lauxlib.h>
#include <string.h>

#include "base/philox.h"
#include "lua/l_internal.h"

#define GENERATOR_MT "torch.Generator"

typedef struct {
    ddp_generator *g; /* &own, or the default generator */
    ddp_generator own;
} l_generator;

/* The Generator at idx; raises an argument error for anything else. */
static ddp_generator *l_check_generator(lua_State *L, int idx) {
    return ((l_generator *)luaL_checkudata(L, idx, GENERATOR_MT))->g;
}

/* A seed as PyTorch takes it: any integer; a negative one means its two's complement
 * (PyTorch reads -1 as 2^64 - 1). */
static uint64_t l_check_seed(lua_State *L, int idx, const char *fn) {
    int ok;
    lua_Integer v = lua_tointegerx(L, idx, &ok);
    if (!ok || lua_type(L, idx) != LUA_TNUMBER)
        luaL_error(L, "%s: the seed must be an integer, got %s", fn,
                   lua_type(L, idx) == LUA_TNUMBER ? luaL_tolstring(L, idx, NULL)
                                                   : luaL_typename(L, idx));
    return (uint64_t)v;
}

/* See l_internal.h. */
ddp_generator *l_opt_generator(lua_State *L, int opts) {
    if (opts == 0 || lua_isnoneornil(L, opts)) return NULL;
    ddp_generator *g = NULL;
    if (lua_getfield(L, opts, "generator") != LUA_TNIL) {
        l_generator *box = luaL_testudata(L, -1, GENERATOR_MT);
        if (!box)
            luaL_error(L, "generator: expected a torch.Generator (from torch.Generator()), got %s",
                       luaL_typename(L, -1));
        g = box->g;
    }
    lua_pop(L, 1);
    return g;
}

/* Pushes a new Generator box working on g (NULL: a generator of its own). */
static l_generator *l_push_generator(lua_State *L, ddp_generator *g) {
    l_generator *box = lua_newuserdatauv(L, sizeof *box, 0);
    generator_seed(&box->own, GENERATOR_DEFAULT_SEED);
    box->g = g ? g : &box->own;
    luaL_setmetatable(L, GENERATOR_MT);
    return box;
}

/* torch.Generator(device="cpu") */
static int l_generator_new(lua_State *L) {
    if (!lua_isnoneornil(L, 1)) {
        const char *dev = luaL_tolstring(L, 1, NULL);
        if (strcmp(dev, "cpu") != 0)
            return luaL_error(L,
                              "Generator: only CPU generators exist here (device='cpu'), got "
                              "'%s'; CUDA tensors draw from the device generator that "
                              "torch.manual_seed seeds",
                              dev);
    }
    l_push_generator(L, NULL);
    return 1;
}

/* g:manual_seed(seed): seeds g; returns g, as PyTorch does. */
static int l_generator_manual_seed(lua_State *L) {
    ddp_generator *g = l_check_generator(L, 1);
    generator_seed(g, l_check_seed(L, 2, "manual_seed"));
    lua_settop(L, 1);
    return 1;
}

/* g:seed(): seeds g from the operating system and returns that seed. */
static int l_generator_seed(lua_State *L) {
    ddp_generator *g = l_check_generator(L, 1);
    uint64_t s = generator_nondeterministic_seed();
    generator_seed(g, s);
    lua_pushinteger(L, (lua_Integer)s);
    return 1;
}

/* g:initial_seed(): the seed g was last seeded with. */
static int l_generator_initial_seed(lua_State *L) {
    lua_pushinteger(L, (lua_Integer)generator_initial_seed(l_check_generator(L, 1)));
    return 1;
}

/* Pushes g's state as a tensor of its 5056 bytes (int64 values 0..255: ddplab has no
 * uint8 dtype; the bytes are PyTorch's, in PyTorch's order). */
static void l_push_state(lua_State *L, const ddp_generator *g) {
    uint8_t bytes[GENERATOR_STATE_BYTES];
    generator_get_state(g, bytes);
    int64_t n = GENERATOR_STATE_BYTES;
    tensor **slot = l_new_box(L);
    l_check(L, tensor_empty(&n, 1, DTYPE_INT64, DEVICE_CPU_VALUE, slot));
    int64_t *v = tensor_data(*slot);
    for (int64_t i = 0; i < n; i++) v[i] = bytes[i];
}

/* Sets g's state from the tensor at idx, as l_push_state made it. */
static void l_set_state(lua_State *L, ddp_generator *g, int idx, const char *fn) {
    tensor *t = ddp_lua_check_tensor(L, idx);
    if (t->dtype != DTYPE_INT64 || t->ndim != 1 || tensor_numel(t) != GENERATOR_STATE_BYTES)
        luaL_error(L, "%s: expected the state from get_rng_state() (int64[%d]), got %s[%I]", fn,
                   GENERATOR_STATE_BYTES, dtype_name(t->dtype), (LUAI_UACINT)tensor_numel(t));
    uint8_t bytes[GENERATOR_STATE_BYTES];
    for (int64_t i = 0; i < GENERATOR_STATE_BYTES; i++) {
        int64_t b = (int64_t)tensor_get(t, i);
        if (b < 0 || b > 255)
            luaL_error(L, "%s: a state holds bytes (0 to 255); element %I is %I", fn,
                       (LUAI_UACINT)i, (LUAI_UACINT)b);
        bytes[i] = (uint8_t)b;
    }
    l_check(L, generator_set_state(g, bytes, sizeof bytes));
}

/* g:get_state() */
static int l_generator_get_state(lua_State *L) {
    l_push_state(L, l_check_generator(L, 1));
    return 1;
}

/* g:set_state(state): returns g. */
static int l_generator_set_state(lua_State *L) {
    l_set_state(L, l_check_generator(L, 1), 2, "set_state");
    lua_settop(L, 1);
    return 1;
}

static int l_generator_tostring(lua_State *L) {
    l_generator *box = luaL_checkudata(L, 1, GENERATOR_MT);
    lua_pushfstring(L, "torch.Generator(%s, initial_seed=%I)",
                    box->g == generator_default() ? "default" : "cpu",
                    (LUAI_UACINT)generator_initial_seed(box->g));
    return 1;
}

/* torch.manual_seed(seed): seeds the CPU generator and the device one. */
static int l_torch_manual_seed(lua_State *L) {
    uint64_t s = l_check_seed(L, 1, "manual_seed");
    generator_seed(generator_default(), s);
    philox_seed(philox_default(), s);
    return 0;
}

/* torch.seed(): a seed from the operating system for both, returned. */
static int l_torch_seed(lua_State *L) {
    uint64_t s = generator_nondeterministic_seed();
    generator_seed(generator_default(), s);
    philox_seed(philox_default(), s);
    lua_pushinteger(L, (lua_Integer)s);
    return 1;
}

/* torch._device_generator_preview(kind, n[, a, b]): the next n values the device
 * generator (CUDA tensors' random numbers) would give a fill of `kind` ("rand", "randn",
 * "rand64", "randn64" with bounds or mean and std a, b; "randint" in [a, b)), computed
 * on the CPU by philox.c without moving the generator: the reference the GPU tests hold
 * the CUDA kernels to. */
static int l_device_generator_preview(lua_State *L) {
    static const char *const kinds[] = {"rand", "randn", "rand64", "randn64", "randint", NULL};
    int kind = luaL_checkoption(L, 1, NULL, kinds);
    lua_Integer n = luaL_checkinteger(L, 2);
    if (n < 0 || n > 10000000)
        return luaL_error(L, "_device_generator_preview: n must be 0 to 10,000,000, got %I",
                          (LUAI_UACINT)n);
    double a = luaL_optnumber(L, 3, 0.0);
    double b = luaL_optnumber(L, 4, kind == 4 ? 2.0 : 1.0);
    if (kind == 4 && !(b > a && b - a < 9.0e18 && a > -9.0e18))
        return luaL_error(L, "_device_generator_preview: randint needs low < high");
    philox_generator copy = *philox_default();
    int64_t len = (int64_t)n;
    dtype dt = kind == 4 ? DTYPE_INT64 : kind >= 2 ? DTYPE_FLOAT64 : DTYPE_FLOAT32;
    tensor **slot = l_new_box(L);
    l_check(L, tensor_empty(&len, 1, dt, DEVICE_CPU_VALUE, slot));
    void *v = tensor_data(*slot);
    switch (kind) {
    case 0:
        philox_uniform_f32(&copy, v, len, a, b);
        break;
    case 1:
        philox_normal_f32(&copy, v, len, a, b);
        break;
    case 2:
        philox_uniform_f64(&copy, v, len, a, b);
        break;
    case 3:
        philox_normal_f64(&copy, v, len, a, b);
        break;
    default:
        philox_randint(&copy, v, len, (int64_t)a, (int64_t)b);
        break;
    }
    return 1;
}

/* torch.initial_seed(): the seed of the default generator. */
static int l_torch_initial_seed(lua_State *L) {
    lua_pushinteger(L, (lua_Integer)generator_initial_seed(generator_default()));
    return 1;
}

static int l_torch_get_rng_state(lua_State *L) {
    l_push_state(L, generator_default());
    return 1;
}

static int l_torch_set_rng_state(lua_State *L) {
    l_set_state(L, generator_default(), 1, "set_rng_state");
    return 0;
}

static const luaL_Reg generator_methods[] = {
    {"manual_seed", l_generator_manual_seed},   {"seed", l_generator_seed},
    {"initial_seed", l_generator_initial_seed}, {"get_state", l_generator_get_state},
    {"set_state", l_generator_set_state},       {NULL, NULL},
};

static const luaL_Reg random_functions[] = {
    {"Generator", l_generator_new},
    {"manual_seed", l_torch_manual_seed},
    {"seed", l_torch_seed},
    {"initial_seed", l_torch_initial_seed},
    {"_device_generator_preview", l_device_generator_preview},
    {"get_rng_state", l_torch_get_rng_state},
    {"set_rng_state", l_torch_set_rng_state},
    {NULL, NULL},
};

/* See l_internal.h. */
void l_random_open(lua_State *L) {
    if (luaL_newmetatable(L, GENERATOR_MT)) {
        luaL_newlib(L, generator_methods);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, l_generator_tostring);
        lua_setfield(L, -2, "__tostring");
    }
    lua_pop(L, 1);
    luaL_setfuncs(L, random_functions, 0);
    l_push_generator(L, generator_default());
    lua_setfield(L, -2, "default_generator");
}
