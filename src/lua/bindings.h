/* bindings.h — what the Lua binding files share: opening ddplab's modules into a Lua
 * state, reaching the tensor inside a Lua value, and turning a core status into a Lua
 * error. Only this layer (src/lua) includes both lua.h and the core headers. */
#ifndef DDP_LUA_BINDINGS_H
#define DDP_LUA_BINDINGS_H

#include <lua.h>

#include "base/status.h"
#include "tensor/tensor.h"

/* Opens the standard libraries and ddplab's modules into L: the globals `torch`, `nn`,
 * `optim` and `dist` (also reachable as torch.nn, torch.optim, torch.distributed), and a
 * package searcher for the embedded lua/ library. Returns DDP_ERR_* with the message in
 * ddp_last_error() when a module fails to load (a build bug, never a learner's). */
ddp_status ddp_lua_setup(lua_State *L);

/* Opens only the standard libraries and the searcher for the embedded files (lua/ and the
 * lessons/ built into the binary, as modules "lessons.NN-slug"), and sets
 * package.embedded to the list of embedded module names: a trusted state without torch,
 * for the driver's lesson engine. Returns DDP_ERR_* as ddp_lua_setup. */
ddp_status ddp_lua_setup_plain(lua_State *L);

/* Module openers (each pushes its table). */
int luaopen_ddp_torch(lua_State *L);   /* l_torch.c: torch.*, with Tensor methods */
int luaopen_ddp_nn(lua_State *L);      /* l_nn.c: the C half of nn / functional / optim */
int luaopen_ddp_dist(lua_State *L);    /* l_dist.c: torch.distributed */
int luaopen_ddp_reducer(lua_State *L); /* l_ddp.c: DDP's reducer, for lua/nn/ddp.lua */

/* The tensor in box `idx`; raises a Lua argument error ("tensor expected, got table")
 * when it is not a live tensor. The reference stays owned by the box. */
tensor *ddp_lua_check_tensor(lua_State *L, int idx);
/* The tensor at idx, or NULL when the value is not a tensor. */
tensor *ddp_lua_to_tensor(lua_State *L, int idx);
/* Pushes a new box that takes over the reference `t` (the caller gives up ownership;
 * if the box cannot be made, t is released before the Lua error propagates). */
void ddp_lua_push_tensor(lua_State *L, tensor *t);

/* Raises the Lua error for a failed core call: the message of ddp_last_error(). Never
 * returns. Call only after releasing what the failed call's caller owned. */
int ddp_lua_raise(lua_State *L, ddp_status s);

/* l_dist.c: the process group at idx (a ProcessGroup; nil or none: the default group,
 * raising before init_process_group); NULL for GroupMember.NON_GROUP_MEMBER. Borrowed. */
struct process_group *ddp_lua_check_group(lua_State *L, int idx);

/* l_options.c: raises "fn: unknown option 'opp' (did you mean 'op'?)" when the options
 * table at idx has a key not in `known` (a NULL-terminated list); a non-table at idx
 * passes. Call it before anything is allocated. */
void ddp_lua_check_option_keys(lua_State *L, int idx, const char *fn, const char *const *known);
/* The same, naming the running C function as the call named it ("zeros", "sum"), for
 * option readers that several functions share. */
void ddp_lua_check_option_keys_here(lua_State *L, int idx, const char *const *known);
/* The entry of `known` (NULL-terminated) closest to `name` by edit distance, or NULL
 * when none is close enough to suggest. */
const char *ddp_lua_closest_name(const char *name, const char *const *known);

#endif
