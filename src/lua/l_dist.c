/* l_dist.c — torch.distributed for Lua: init_process_group and friends, process-group
 * and work objects, and every collective with PyTorch's signatures, over
 * src/dist/process_group.h.
 *
 * Lua has no keyword arguments, so each collective takes its PyTorch positional
 * arguments and, in any trailing position, an options table {op=, group=, async_op=,
 * src=, dst=}. Extra positional arguments are told apart by type: a number is a rank, a
 * string (dist.ReduceOp.SUM is "SUM") a reduce op, a ProcessGroup a group, a boolean
 * async_op. Every argument is checked before anything is sent, so a wrong call fails on
 * the rank that made it and never leaves the others waiting in the backend. all_reduce
 * with async_op=true returns a pending work (the call runs on the helper thread, in
 * order with the others); the other collectives run synchronously and with async_op
 * return an already completed work object (isend/irecv return real pending ones). */
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "build_config.h"
#include "dist/process_group.h"
#include "lua/bindings.h"
#include "tensor/device.h"

#define GROUP_MT "dist.ProcessGroup"
#define WORK_MT "dist.Work"

typedef struct {
    process_group *g; /* owned reference; NULL for the NON_GROUP_MEMBER constant */
    int non_member;   /* this box stands for GroupMember.NON_GROUP_MEMBER */
} group_box;

typedef struct {
    pg_work *w; /* owned; NULL when completed at creation (synchronous collectives) */
} work_box;

/* The reduce ops in enum order; comm_reduce_op_name gives each one's name ("SUM"), which
 * is what parse_op accepts and what dist.ReduceOp holds. */
#define N_REDUCE_OPS (COMM_MAX + 1)

/* ---- argument parsing ------------------------------------------------------------- */

typedef struct {
    int has_op;
    comm_reduce_op op;
    process_group *group; /* borrowed from a box on the stack; NULL: default */
    int async_op;
    int ranks[2]; /* numbers seen, in order */
    int nranks;
    int has_src, src, has_dst, dst;
} call_args;

/* The one tensor a collective takes, with a message for the classic mistake of passing
 * a whole state_dict or parameter list (the seed tutorial's all_reduce of a state_dict
 * meant to synchronise training: the gradients are what DDP averages). It recommends
 * only what works today: the loop over model:parameters(), a list in the same order on every rank.
 * (Not pairs() over a state_dict: Lua's pairs order may differ from rank to rank, which pairs up
 * different tensors. Name nn.DistributedDataParallel here once it exists.) */
static tensor *check_one_tensor(lua_State *L, int idx, const char *op) {
    tensor *t = ddp_lua_to_tensor(L, idx);
    if (t) return t;
    if (lua_istable(L, idx) && strcmp(op, "all_reduce") == 0)
        luaL_error(L, /* what DDP does with all_reduce: average the gradients */
                   "all_reduce: a collective takes one tensor, got a table (a state_dict or a "
                   "list of tensors?). To average a model's gradients after backward, as DDP "
                   "does, call it once per parameter:\n"
                   "  for _, p in ipairs(model:parameters()) do dist.all_reduce(p.grad, "
                   "dist.ReduceOp.AVG) end");
    if (lua_istable(L, idx))
        luaL_error(L,
                   "%s: a collective takes one tensor, got a table (a state_dict or a list of "
                   "tensors?). For a whole model, call it once per tensor:\n"
                   "  for _, p in ipairs(model:parameters()) do dist.%s(p%s) end",
                   op, op, strcmp(op, "broadcast") == 0 || strcmp(op, "reduce") == 0 ? ", 0" : "");
    if (lua_isnoneornil(L, idx))
        luaL_error(L,
                   "%s: got nil where a tensor goes (a parameter's .grad stays nil until "
                   "loss:backward() has run)",
                   op);
    return ddp_lua_check_tensor(L, idx); /* raises "tensor expected, got ..." */
}

/* The reduce op named by the string at idx (any case: "sum" is SUM); raises otherwise. */
static comm_reduce_op parse_op(lua_State *L, int idx, const char *op) {
    const char *s = lua_tostring(L, idx);
    for (int i = 0; s && i < N_REDUCE_OPS; i++)
        if (strcasecmp(s, comm_reduce_op_name((comm_reduce_op)i)) == 0) return (comm_reduce_op)i;
    luaL_error(L, "%s: unknown reduce op '%s' (use dist.ReduceOp.SUM, AVG, PRODUCT, MIN or MAX)",
               op, s ? s : luaL_typename(L, idx));
    return COMM_SUM;
}

/* The process group at idx, for a member of it; raises for anything else. */
static process_group *check_group(lua_State *L, int idx, const char *op) {
    group_box *b = luaL_testudata(L, idx, GROUP_MT);
    if (!b) luaL_error(L, "%s: group must be a process group from dist.new_group", op);
    if (b->non_member)
        luaL_error(L,
                   "%s: this rank is not a member of the group (new_group returned "
                   "GroupMember.NON_GROUP_MEMBER here); only members may use it",
                   op);
    return b->g;
}

/* The rank at idx: an integer from 0 to 2^20; raises otherwise, naming the value as
 * given (a huge one is not cut to an int first, which made math.maxinteger "rank -1"). */
static int check_rank(lua_State *L, int idx, const char *op) {
    if (lua_type(L, idx) == LUA_TSTRING)
        luaL_error(L, "%s: a rank must be an integer, got the string \"%s\" (write %s, no quotes)",
                   op, lua_tostring(L, idx), lua_tostring(L, idx));
    if (!lua_isinteger(L, idx))
        luaL_error(L, "%s: a rank must be an integer, got %s", op,
                   lua_type(L, idx) == LUA_TNUMBER ? lua_tostring(L, idx) : luaL_typename(L, idx));
    lua_Integer r = lua_tointeger(L, idx);
    if (r < 0 || r > 1 << 20)
        luaL_error(L, "%s: rank %I is out of range (ranks count from 0 to the world size - 1)", op,
                   (LUAI_UACINT)r);
    return (int)r;
}

/* What each call takes besides its tensors: the names of its options table, and whether
 * a positional string is its reduce op. Unknown options are errors naming the closest
 * one (a misspelt {opp=MAX} used to reduce with SUM in silence). */
typedef struct {
    const char *op;
    int takes_reduce_op;
    const char *const *keys;
} call_spec;

static const char *const KEYS_REDUCE[] = {"op", "group", "async_op", NULL};
static const char *const KEYS_REDUCE_DST[] = {"dst", "op", "group", "async_op", NULL};
static const char *const KEYS_SRC[] = {"src", "group", "async_op", NULL};
static const char *const KEYS_DST[] = {"dst", "group", "async_op", NULL};
static const char *const KEYS_GROUP[] = {"group", "async_op", NULL};
static const char *const KEYS_SEND[] = {"dst", "group", NULL};
static const char *const KEYS_RECV[] = {"src", "group", NULL};
static const call_spec CALL_SPECS[] = {
    {"all_reduce", 1, KEYS_REDUCE}, {"reduce_scatter", 1, KEYS_REDUCE},
    {"reduce", 1, KEYS_REDUCE_DST}, {"broadcast", 0, KEYS_SRC},
    {"scatter", 0, KEYS_SRC},       {"gather", 0, KEYS_DST},
    {"all_gather", 0, KEYS_GROUP},  {"all_gather_into_tensor", 0, KEYS_GROUP},
    {"barrier", 0, KEYS_GROUP},     {"send", 0, KEYS_SEND},
    {"isend", 0, KEYS_SEND},        {"recv", 0, KEYS_RECV},
    {"irecv", 0, KEYS_RECV},
};

static const call_spec *find_call_spec(const char *op) {
    for (size_t i = 0; i < sizeof CALL_SPECS / sizeof CALL_SPECS[0]; i++)
        if (strcmp(CALL_SPECS[i].op, op) == 0) return &CALL_SPECS[i];
    return NULL;
}

/* Whether the value at idx is an options table: a plain table without [1]. */
static int is_options(lua_State *L, int idx) {
    if (lua_type(L, idx) != LUA_TTABLE || ddp_lua_to_tensor(L, idx)) return 0;
    int list = lua_rawgeti(L, idx, 1) != LUA_TNIL;
    lua_pop(L, 1);
    return !list;
}

/* Reads the positional extras from `first` to `top` (the caller's last argument, taken
 * before any scratch value was pushed) and a trailing options table. */
static void parse_args(lua_State *L, int first, int top, const char *op, call_args *a) {
    memset(a, 0, sizeof *a);
    const call_spec *spec = find_call_spec(op);
    for (int i = first; i <= top; i++) {
        int t = lua_type(L, i);
        if (t == LUA_TNIL) continue;
        if (t == LUA_TNUMBER || (t == LUA_TSTRING && spec && !spec->takes_reduce_op)) {
            if (a->nranks == 2) luaL_error(L, "%s: too many rank arguments", op);
            a->ranks[a->nranks++] = check_rank(L, i, op);
        } else if (t == LUA_TSTRING) {
            a->op = parse_op(L, i, op);
            a->has_op = 1;
        } else if (t == LUA_TBOOLEAN) {
            a->async_op = lua_toboolean(L, i);
        } else if (t == LUA_TUSERDATA && luaL_testudata(L, i, GROUP_MT)) {
            a->group = check_group(L, i, op);
        } else if (i == top && is_options(L, i)) {
            if (spec) ddp_lua_check_option_keys(L, i, op, spec->keys);
            if (lua_getfield(L, i, "op") != LUA_TNIL) {
                a->op = parse_op(L, -1, op);
                a->has_op = 1;
            }
            if (lua_getfield(L, i, "group") != LUA_TNIL) a->group = check_group(L, -1, op);
            if (lua_getfield(L, i, "async_op") != LUA_TNIL) a->async_op = lua_toboolean(L, -1);
            if (lua_getfield(L, i, "src") != LUA_TNIL) {
                a->has_src = 1;
                a->src = check_rank(L, -1, op);
            }
            if (lua_getfield(L, i, "dst") != LUA_TNIL) {
                a->has_dst = 1;
                a->dst = check_rank(L, -1, op);
            }
            lua_pop(L, 5);
        } else {
            luaL_error(L, "%s: unexpected argument #%d (%s)", op, i, luaL_typename(L, i));
        }
    }
}

/* The root rank: the first positional number, else {src=}/{dst=}, else def. */
static int root_arg(const call_args *a, int def) {
    if (a->nranks > 0) return a->ranks[0];
    if (a->has_src) return a->src;
    if (a->has_dst) return a->dst;
    return def;
}

/* The buffer of t for a collective; `written` when the collective writes into t, which
 * then counts as an in-place change (autograd's version counter, as PyTorch's collectives
 * bump it), so a tensor saved for backward and overwritten by a collective is caught. */
static void to_buffer(lua_State *L, const char *op, tensor *t, pg_buffer *b, bool written) {
    ddp_status s = pg_buffer_from_tensor(op, t, b);
    if (s != DDP_OK) ddp_lua_raise(L, s);
    if (written) tensor_bump_version(t);
}

/* Reads a Lua list of tensors into malloc'd buffers (*n entries); raises on errors. The
 * array is left on the Lua stack as a userdata so an error cannot leak it. */
static pg_buffer *list_arg(lua_State *L, int idx, const char *op, const char *what, int *n,
                           bool written) {
    if (!lua_istable(L, idx) || ddp_lua_to_tensor(L, idx))
        luaL_error(L, "%s: %s must be a list of tensors, got %s", op, what, luaL_typename(L, idx));
    lua_Integer len = luaL_len(L, idx);
    if (len < 1) luaL_error(L, "%s: %s is empty (it needs one tensor per rank)", op, what);
    if (len > 1 << 16)
        luaL_error(L, "%s: %s holds %d tensors; it needs one per rank", op, what, (int)len);
    pg_buffer *bufs = lua_newuserdatauv(L, sizeof(pg_buffer) * (size_t)len, 0);
    for (lua_Integer i = 1; i <= len; i++) {
        lua_rawgeti(L, idx, i);
        tensor *t = ddp_lua_to_tensor(L, -1);
        if (!t)
            luaL_error(L, "%s: %s[%d] is %s, not a tensor", op, what, (int)i, luaL_typename(L, -1));
        to_buffer(L, op, t, &bufs[i - 1], written);
        lua_pop(L, 1);
    }
    *n = (int)len;
    return bufs;
}

/* Pushes the result of a collective: nothing, or a completed work with async_op. */
static int finish(lua_State *L, ddp_status s, const call_args *a) {
    if (s != DDP_OK) return ddp_lua_raise(L, s);
    if (!a->async_op) return 0;
    work_box *w = lua_newuserdatauv(L, sizeof *w, 1);
    w->w = NULL;
    luaL_setmetatable(L, WORK_MT);
    return 1;
}

/* ---- init and groups ---------------------------------------------------------------- */

/* init_process_group{backend=, init_method=, rank=, world_size=, timeout=} or
 * init_process_group("gloo"[, {...}]). */
static int l_init_process_group(lua_State *L) {
    pg_init_options o = {
        .backend = "gloo", .init_method = NULL, .rank = -1, .world_size = -1, .timeout_s = 0};
    int opts = 0;
    if (lua_type(L, 1) == LUA_TSTRING) {
        o.backend = lua_tostring(L, 1);
        if (lua_istable(L, 2)) opts = 2;
    } else if (lua_istable(L, 1)) {
        opts = 1;
    } else if (!lua_isnoneornil(L, 1)) {
        return luaL_error(L,
                          "init_process_group: expected {backend=\"gloo\", init_method="
                          "\"env://\"}, got %s",
                          luaL_typename(L, 1));
    }
    if (opts) {
        static const char *const keys[] = {"backend",    "init_method", "rank",
                                           "world_size", "timeout",     NULL};
        ddp_lua_check_option_keys(L, opts, "init_process_group", keys);
        if (lua_getfield(L, opts, "backend") != LUA_TNIL) o.backend = luaL_checkstring(L, -1);
        if (lua_getfield(L, opts, "init_method") != LUA_TNIL)
            o.init_method = luaL_checkstring(L, -1);
        if (lua_getfield(L, opts, "rank") != LUA_TNIL) o.rank = (int)luaL_checkinteger(L, -1);
        if (lua_getfield(L, opts, "world_size") != LUA_TNIL)
            o.world_size = (int)luaL_checkinteger(L, -1);
        if (lua_getfield(L, opts, "timeout") != LUA_TNIL) {
            o.timeout_s = luaL_checknumber(L, -1);
            if (!(o.timeout_s > 0) || o.timeout_s > 86400.0 * 365)
                luaL_error(L,
                           "init_process_group: timeout must be a positive number of seconds "
                           "(e.g. timeout=30), got %s",
                           lua_tostring(L, -1));
        }
        lua_pop(L, 5);
        /* strings stay alive: they are fields of the options table */
    }
    ddp_status s = pg_init(&o);
    if (s != DDP_OK) return ddp_lua_raise(L, s);
    process_group *g = NULL;
    if (o.backend && strcmp(o.backend, "nccl") == 0 && pg_default(&g) == DDP_OK &&
        strcmp(pg_backend(g), "gloo") == 0) {
        const char *local = getenv("LOCAL_WORLD_SIZE");
        fprintf(stderr,
                "init_process_group: %s ranks share %d GPU%s on this machine and NCCL needs a "
                "GPU for each, so the Gloo backend runs instead (CUDA tensors go through host "
                "memory; dist.get_backend() says \"gloo\")\n",
                local ? local : "?", cuda_device_count(), cuda_device_count() == 1 ? "" : "s");
        fflush(stderr);
    }
    return 0;
}

/* dist.is_available() and dist.is_gloo_available(): always true in ddplab. */
static int l_is_available(lua_State *L) {
    lua_pushboolean(L, 1);
    return 1;
}

/* dist.is_initialized() */
static int l_is_initialized(lua_State *L) {
    lua_pushboolean(L, pg_is_initialized());
    return 1;
}

/* dist.is_nccl_available(): whether this build has NCCL. */
static int l_is_nccl_available(lua_State *L) {
    lua_pushboolean(L, DDP_HAVE_NCCL);
    return 1;
}

/* The group at idx (absent: the default; NULL for a non-member); raises before init. */
static process_group *group_or_default(lua_State *L, int idx) {
    if (!lua_isnoneornil(L, idx)) {
        group_box *b = luaL_checkudata(L, idx, GROUP_MT);
        return b->non_member ? NULL : b->g;
    }
    process_group *g;
    ddp_status s = pg_default(&g);
    if (s != DDP_OK) ddp_lua_raise(L, s);
    return g;
}

/* bindings.h */
process_group *ddp_lua_check_group(lua_State *L, int idx) {
    return group_or_default(L, idx);
}

/* dist.get_rank(group?): -1 on a rank outside the group, as PyTorch. */
static int l_get_rank(lua_State *L) {
    process_group *g = group_or_default(L, 1);
    lua_pushinteger(L, g ? pg_rank(g) : -1);
    return 1;
}

/* dist.get_world_size(group?): -1 on a rank outside the group. */
static int l_get_world_size(lua_State *L) {
    process_group *g = group_or_default(L, 1);
    lua_pushinteger(L, g ? pg_size(g) : -1);
    return 1;
}

/* dist.get_backend(group?): "gloo", or "undefined" outside the group. */
static int l_get_backend(lua_State *L) {
    process_group *g = group_or_default(L, 1);
    lua_pushstring(L, g ? pg_backend(g) : "undefined");
    return 1;
}

/* dist.destroy_process_group() */
static int l_destroy_process_group(lua_State *L) {
    ddp_status s = pg_destroy();
    if (s != DDP_OK) return ddp_lua_raise(L, s);
    return 0;
}

/* new_group(ranks) or new_group{ranks=...}: every rank must call it, as in PyTorch. */
static int l_new_group(lua_State *L) {
    int idx = 1;
    if (is_options(L, 1)) {
        static const char *const keys[] = {"ranks", NULL};
        ddp_lua_check_option_keys(L, 1, "new_group", keys);
    }
    if (lua_istable(L, 1) && lua_getfield(L, 1, "ranks") != LUA_TNIL) {
        idx = lua_gettop(L);
    } else if (lua_istable(L, 1)) {
        lua_pop(L, 1);
    }
    int ranks[4096], n = 0;
    if (!lua_isnoneornil(L, idx)) {
        luaL_checktype(L, idx, LUA_TTABLE);
        lua_Integer len = luaL_len(L, idx);
        if (len > 4096) return luaL_error(L, "new_group: too many ranks");
        for (lua_Integer i = 1; i <= len; i++) {
            lua_rawgeti(L, idx, i);
            ranks[n++] = check_rank(L, -1, "new_group");
            lua_pop(L, 1);
        }
        if (n == 0) return luaL_error(L, "new_group: the list of ranks is empty");
    }
    group_box *b = lua_newuserdatauv(L, sizeof *b, 0); /* closed box first */
    b->g = NULL;
    b->non_member = 0;
    luaL_setmetatable(L, GROUP_MT);
    process_group *g;
    ddp_status s = pg_new_group(ranks, n, &g);
    if (s != DDP_OK) return ddp_lua_raise(L, s);
    b->g = g;
    if (!pg_is_member(g)) b->non_member = 1; /* equal to GroupMember.NON_GROUP_MEMBER */
    return 1;
}

/* __gc of a group box: drops the box's reference to the group. */
static int l_group_gc(lua_State *L) {
    group_box *b = luaL_checkudata(L, 1, GROUP_MT);
    process_group *g = b->g;
    b->g = NULL;
    pg_release(g);
    return 0;
}

/* Two group boxes are equal when they are the same box, or both NON_GROUP_MEMBER. */
static int l_group_eq(lua_State *L) {
    group_box *a = luaL_checkudata(L, 1, GROUP_MT), *b = luaL_checkudata(L, 2, GROUP_MT);
    lua_pushboolean(L, a == b || (a->non_member && b->non_member));
    return 1;
}

/* "ProcessGroup(ranks={0, 2}, rank=1, backend=gloo)" or "GroupMember.NON_GROUP_MEMBER". */
static int l_group_tostring(lua_State *L) {
    group_box *b = luaL_checkudata(L, 1, GROUP_MT);
    if (b->non_member || !b->g) {
        lua_pushliteral(L, "GroupMember.NON_GROUP_MEMBER");
        return 1;
    }
    luaL_Buffer buf;
    luaL_buffinit(L, &buf);
    luaL_addstring(&buf, "ProcessGroup(ranks={");
    for (int i = 0; i < pg_size(b->g); i++) {
        lua_pushfstring(L, i ? ", %d" : "%d", pg_global_rank(b->g, i));
        luaL_addvalue(&buf);
    }
    lua_pushfstring(L, "}, rank=%d, backend=%s%s)", pg_rank(b->g), pg_backend(b->g),
                    pg_is_alive(b->g) ? "" : ", destroyed");
    luaL_addvalue(&buf);
    luaL_pushresult(&buf);
    return 1;
}

/* group:rank() and group:size(): -1 for NON_GROUP_MEMBER. */
static int l_group_rank(lua_State *L) {
    group_box *b = luaL_checkudata(L, 1, GROUP_MT);
    lua_pushinteger(L, b->g ? pg_rank(b->g) : -1);
    return 1;
}

static int l_group_size(lua_State *L) {
    group_box *b = luaL_checkudata(L, 1, GROUP_MT);
    lua_pushinteger(L, b->g ? pg_size(b->g) : -1);
    return 1;
}

/* ---- work objects --------------------------------------------------------------------- */

/* Pushes a work box holding w and keeping tensor box `tidx` alive until it is freed. */
static void push_work(lua_State *L, pg_work *w, int tidx) {
    luaL_checkstack(L, 2, "work");
    work_box *b = lua_newuserdatauv(L, sizeof *b, 1);
    b->w = w;
    luaL_setmetatable(L, WORK_MT);
    lua_pushvalue(L, tidx);
    lua_setiuservalue(L, -2, 1);
}

/* work:wait(): blocks until the work completes; raises its error. Returns true. */
static int l_work_wait(lua_State *L) {
    work_box *b = luaL_checkudata(L, 1, WORK_MT);
    if (b->w) {
        ddp_status s = pg_work_wait(b->w);
        if (s != DDP_OK) return ddp_lua_raise(L, s);
    }
    lua_pushboolean(L, 1);
    return 1;
}

/* work:is_completed() */
static int l_work_is_completed(lua_State *L) {
    work_box *b = luaL_checkudata(L, 1, WORK_MT);
    lua_pushboolean(L, !b->w || pg_work_is_completed(b->w));
    return 1;
}

/* __gc and __close of a work box: frees the work (a pending isend/irecv is cancelled; an
 * all_reduce already queued is waited for, since the helper writes into its tensor). */
static int l_work_gc(lua_State *L) {
    work_box *b = luaL_checkudata(L, 1, WORK_MT);
    pg_work *w = b->w;
    b->w = NULL;
    pg_work_free(w);
    return 0;
}

/* ---- collectives ---------------------------------------------------------------------- */

/* broadcast(t, src): src's t into every rank's t. */
static int l_broadcast(lua_State *L) {
    int top = lua_gettop(L);
    tensor *t = check_one_tensor(L, 1, "broadcast");
    call_args a;
    parse_args(L, 2, top, "broadcast", &a);
    if (a.nranks == 0 && !a.has_src)
        return luaL_error(L, "broadcast: which rank sends? pass src, e.g. dist.broadcast(t, 0)");
    pg_buffer b;
    to_buffer(L, "broadcast", t, &b, true);
    return finish(L, pg_broadcast(a.group, &b, root_arg(&a, 0)), &a);
}

/* all_reduce(t, op=SUM): t reduced over the group, on every rank. */
static int l_all_reduce(lua_State *L) {
    int top = lua_gettop(L);
    tensor *t = check_one_tensor(L, 1, "all_reduce");
    call_args a;
    parse_args(L, 2, top, "all_reduce", &a);
    if (a.nranks) return luaL_error(L, "all_reduce: takes no rank (every rank gets the result)");
    pg_buffer b;
    to_buffer(L, "all_reduce", t, &b, true);
    comm_reduce_op op = a.has_op ? a.op : COMM_SUM;
    if (!a.async_op) return finish(L, pg_all_reduce(a.group, &b, op), &a);
    push_work(L, NULL, 1); /* the box exists before the work, so an error cannot leak it */
    work_box *box = lua_touserdata(L, -1);
    ddp_status s = pg_all_reduce_async(a.group, &b, op, &box->w);
    if (s != DDP_OK) return ddp_lua_raise(L, s);
    return 1;
}

/* reduce(t, dst, op=SUM): t reduced over the group into dst's t. */
static int l_reduce(lua_State *L) {
    int top = lua_gettop(L);
    tensor *t = check_one_tensor(L, 1, "reduce");
    call_args a;
    parse_args(L, 2, top, "reduce", &a);
    if (a.nranks == 0 && !a.has_dst)
        return luaL_error(L, "reduce: which rank receives? pass dst, e.g. dist.reduce(t, 0)");
    pg_buffer b;
    to_buffer(L, "reduce", t, &b, true);
    return finish(L, pg_reduce(a.group, &b, root_arg(&a, 0), a.has_op ? a.op : COMM_SUM), &a);
}

/* all_gather(tensor_list, t): every rank's t into tensor_list, in rank order. */
static int l_all_gather(lua_State *L) {
    int top = lua_gettop(L);
    int n;
    pg_buffer *outs = list_arg(L, 1, "all_gather", "tensor_list", &n, true);
    tensor *t = check_one_tensor(L, 2, "all_gather");
    call_args a;
    parse_args(L, 3, top, "all_gather", &a);
    pg_buffer in;
    to_buffer(L, "all_gather", t, &in, false);
    return finish(L, pg_all_gather(a.group, outs, n, &in), &a);
}

/* all_gather_into_tensor(out, t): every rank's t, concatenated into out. */
static int l_all_gather_into_tensor(lua_State *L) {
    int top = lua_gettop(L);
    tensor *out = check_one_tensor(L, 1, "all_gather_into_tensor");
    tensor *t = check_one_tensor(L, 2, "all_gather_into_tensor");
    call_args a;
    parse_args(L, 3, top, "all_gather_into_tensor", &a);
    pg_buffer ob, ib;
    to_buffer(L, "all_gather_into_tensor", out, &ob, true);
    to_buffer(L, "all_gather_into_tensor", t, &ib, false);
    return finish(L, pg_all_gather_into(a.group, &ob, &ib), &a);
}

/* reduce_scatter(out, input_list, op=SUM): the lists reduced over the group, rank r
 * getting entry r in out. */
static int l_reduce_scatter(lua_State *L) {
    int top = lua_gettop(L);
    tensor *out = check_one_tensor(L, 1, "reduce_scatter");
    int n;
    pg_buffer *ins = list_arg(L, 2, "reduce_scatter", "input_list", &n, false);
    call_args a;
    parse_args(L, 3, top, "reduce_scatter", &a);
    pg_buffer ob;
    to_buffer(L, "reduce_scatter", out, &ob, true);
    return finish(L, pg_reduce_scatter(a.group, &ob, ins, n, a.has_op ? a.op : COMM_SUM), &a);
}

/* gather(t, gather_list, dst) and scatter(t, scatter_list, src) take the same arguments:
 * the list is nil (or left out) on the ranks other than the root. */
static int rooted_list_call(lua_State *L, bool is_gather) {
    const char *op = is_gather ? "gather" : "scatter";
    int top = lua_gettop(L);
    tensor *t = check_one_tensor(L, 1, op);
    int n = 0;
    pg_buffer *bufs = NULL;
    int list = lua_istable(L, 2) && !ddp_lua_to_tensor(L, 2) && !is_options(L, 2);
    if (list) bufs = list_arg(L, 2, op, is_gather ? "gather_list" : "scatter_list", &n, is_gather);
    call_args a;
    parse_args(L, list || lua_isnil(L, 2) ? 3 : 2, top, op, &a);
    pg_buffer mine;
    to_buffer(L, op, t, &mine, !is_gather);
    int root = root_arg(&a, 0);
    return finish(L,
                  is_gather ? pg_gather(a.group, &mine, bufs, n, root)
                            : pg_scatter(a.group, &mine, bufs, n, root),
                  &a);
}

/* gather(t, gather_list, dst): gather_list is nil on ranks other than dst. */
static int l_gather(lua_State *L) {
    return rooted_list_call(L, true);
}

/* scatter(t, scatter_list, src): scatter_list is nil on ranks other than src. */
static int l_scatter(lua_State *L) {
    return rooted_list_call(L, false);
}

/* barrier(): returns once every rank of the group has called it. */
static int l_barrier(lua_State *L) {
    int top = lua_gettop(L);
    call_args a;
    parse_args(L, 1, top, "barrier", &a);
    return finish(L, pg_barrier(a.group), &a);
}

/* The timeout at idx for monitored_barrier: a positive, finite number of seconds. */
static double check_timeout(lua_State *L, int idx) {
    if (lua_type(L, idx) != LUA_TNUMBER)
        luaL_error(L, "monitored_barrier: timeout must be a number of seconds, got %s",
                   luaL_typename(L, idx));
    double t = lua_tonumber(L, idx);
    if (!(t > 0) || t > 1e6) {
        char got[64];
        snprintf(got, sizeof got, "%g", t);
        luaL_error(L, "monitored_barrier: timeout must be a positive number of seconds, got %s",
                   got);
    }
    return t;
}

/* monitored_barrier([group][, timeout][, wait_all_ranks]) or monitored_barrier{timeout=,
 * group=, wait_all_ranks=}: a barrier that names the ranks that did not arrive within the
 * timeout (seconds; default: the collective timeout). Every missing rank is named, which
 * is PyTorch's wait_all_ranks=true; the flag is accepted for PyTorch's signature. */
static int l_monitored_barrier(lua_State *L) {
    static const char *const known[] = {"timeout", "group", "wait_all_ranks", NULL};
    int top = lua_gettop(L);
    process_group *group = NULL;
    double timeout = 0;
    for (int i = 1; i <= top; i++) {
        int t = lua_type(L, i);
        if (t == LUA_TNIL || t == LUA_TBOOLEAN) continue;
        if (t == LUA_TNUMBER) {
            timeout = check_timeout(L, i);
        } else if (t == LUA_TUSERDATA && luaL_testudata(L, i, GROUP_MT)) {
            group = check_group(L, i, "monitored_barrier");
        } else if (t == LUA_TTABLE && i == top) {
            ddp_lua_check_option_keys(L, i, "monitored_barrier", known);
            if (lua_getfield(L, i, "timeout") != LUA_TNIL) timeout = check_timeout(L, -1);
            if (lua_getfield(L, i, "group") != LUA_TNIL)
                group = check_group(L, -1, "monitored_barrier");
            lua_pop(L, 2);
        } else {
            luaL_error(L, "monitored_barrier: unexpected argument #%d (%s)", i,
                       luaL_typename(L, i));
        }
    }
    ddp_status s = pg_monitored_barrier(group, timeout);
    if (s != DDP_OK) return ddp_lua_raise(L, s);
    return 0;
}

/* send/recv/isend/irecv share this: is_send picks the direction, is_async the result. */
static int p2p(lua_State *L, int is_send, int is_async) {
    int top = lua_gettop(L);
    const char *op = is_send ? (is_async ? "isend" : "send") : (is_async ? "irecv" : "recv");
    tensor *t = check_one_tensor(L, 1, op);
    call_args a;
    parse_args(L, 2, top, op, &a);
    int has = a.nranks > 0 || (is_send ? a.has_dst : a.has_src);
    if (!has && is_send)
        return luaL_error(L, "%s: which rank? pass dst, e.g. dist.%s(t, 1)", op, op);
    /* recv without src receives from any rank, as PyTorch's src=None */
    int peer = !has ? PG_ANY_SOURCE : a.nranks > 0 ? a.ranks[0] : is_send ? a.dst : a.src;
    pg_buffer b;
    to_buffer(L, op, t, &b, !is_send);
    pg_work *w = NULL;
    work_box *box = NULL;
    if (is_async) { /* the box exists before the work, so an error cannot leak it */
        push_work(L, NULL, 1);
        box = lua_touserdata(L, -1);
    }
    ddp_status s = is_send ? pg_isend(a.group, &b, peer, &w) : pg_irecv(a.group, &b, peer, &w);
    if (s != DDP_OK) return ddp_lua_raise(L, s);
    if (is_async) {
        box->w = w;
        return 1;
    }
    s = pg_work_wait(w);
    if (s != DDP_OK) {
        pg_work_free(w);
        return ddp_lua_raise(L, s);
    }
    if (is_send) {
        pg_work_free(w);
        return 0;
    }
    lua_pushinteger(L, pg_work_source(w)); /* recv returns the sender's rank, as PyTorch */
    pg_work_free(w);
    return 1;
}

/* send(t, dst), recv(t, src), isend(t, dst), irecv(t, src): see p2p. */
static int l_send(lua_State *L) {
    return p2p(L, 1, 0);
}

static int l_recv(lua_State *L) {
    return p2p(L, 0, 0);
}

static int l_isend(lua_State *L) {
    return p2p(L, 1, 1);
}

static int l_irecv(lua_State *L) {
    return p2p(L, 0, 1);
}

/* ---- module --------------------------------------------------------------------------- */

static const luaL_Reg dist_functions[] = {
    {"is_available", l_is_available},
    {"is_initialized", l_is_initialized},
    {"is_nccl_available", l_is_nccl_available},
    {"is_gloo_available", l_is_available},
    {"init_process_group", l_init_process_group},
    {"destroy_process_group", l_destroy_process_group},
    {"get_rank", l_get_rank},
    {"get_world_size", l_get_world_size},
    {"get_backend", l_get_backend},
    {"new_group", l_new_group},
    {"broadcast", l_broadcast},
    {"all_reduce", l_all_reduce},
    {"reduce", l_reduce},
    {"all_gather", l_all_gather},
    {"all_gather_into_tensor", l_all_gather_into_tensor},
    {"reduce_scatter", l_reduce_scatter},
    {"gather", l_gather},
    {"scatter", l_scatter},
    {"barrier", l_barrier},
    {"monitored_barrier", l_monitored_barrier},
    {"send", l_send},
    {"recv", l_recv},
    {"isend", l_isend},
    {"irecv", l_irecv},
    {NULL, NULL},
};

static const luaL_Reg group_methods[] = {
    {"rank", l_group_rank},
    {"size", l_group_size},
    {NULL, NULL},
};

static const luaL_Reg group_meta[] = {
    {"__gc", l_group_gc}, {"__eq", l_group_eq}, {"__tostring", l_group_tostring},
    {"__index", NULL},    {NULL, NULL},
};

static const luaL_Reg work_methods[] = {
    {"wait", l_work_wait},
    {"is_completed", l_work_is_completed},
    {NULL, NULL},
};

static const luaL_Reg work_meta[] = {
    {"__gc", l_work_gc},
    {"__close", l_work_gc},
    {"__index", NULL},
    {NULL, NULL},
};

/* __index of dist.ReduceOp: a name it lacks raises (dist.ReduceOp.MEAN was nil, and a
 * nil op is SUM), naming the ops there are. */
static int l_reduce_op_missing(lua_State *L) {
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (int i = 0; i < N_REDUCE_OPS; i++) {
        if (i) luaL_addstring(&b, i == N_REDUCE_OPS - 1 ? " or " : ", ");
        luaL_addstring(&b, comm_reduce_op_name((comm_reduce_op)i));
    }
    luaL_pushresult(&b);
    const char *have = lua_tostring(L, -1);
    const char *name = luaL_tolstring(L, 2, NULL);
    const char *mean = lua_type(L, 2) == LUA_TSTRING && strcasecmp(lua_tostring(L, 2), "mean") == 0
                           ? " (the mean is AVG)"
                           : "";
    return luaL_error(L, "dist.ReduceOp has no %s%s; it has %s", name, mean, have);
}

/* Makes metatable `name` with metamethods `meta` and methods as __index. */
static void create_meta(lua_State *L, const char *name, const luaL_Reg *meta,
                        const luaL_Reg *methods) {
    luaL_newmetatable(L, name);
    luaL_setfuncs(L, meta, 0);
    lua_newtable(L);
    luaL_setfuncs(L, methods, 0);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
}

int luaopen_ddp_dist(lua_State *L) {
    create_meta(L, GROUP_MT, group_meta, group_methods);
    create_meta(L, WORK_MT, work_meta, work_methods);
    luaL_newlib(L, dist_functions);
    /* dist.ReduceOp.SUM == "SUM", ... (strings print well and compare simply) */
    lua_createtable(L, 0, N_REDUCE_OPS);
    for (int i = 0; i < N_REDUCE_OPS; i++) {
        const char *name = comm_reduce_op_name((comm_reduce_op)i);
        lua_pushstring(L, name);
        lua_setfield(L, -2, name);
    }
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, l_reduce_op_missing);
    lua_setfield(L, -2, "__index");
    lua_setmetatable(L, -2);
    lua_setfield(L, -2, "ReduceOp");
    /* dist.GroupMember.NON_GROUP_MEMBER: what new_group returns on non-members */
    lua_createtable(L, 0, 2);
    group_box *b = lua_newuserdatauv(L, sizeof *b, 0);
    b->g = NULL;
    b->non_member = 1;
    luaL_setmetatable(L, GROUP_MT);
    lua_setfield(L, -2, "NON_GROUP_MEMBER");
    lua_setfield(L, -2, "GroupMember");
    return 1;
}
