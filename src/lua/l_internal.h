/* l_internal.h — what the torch/nn binding files (l_tensor.c, l_tensor_ops.c,
 * l_types.c, l_torch.c, l_cuda.c, l_io.c, l_nn.c, l_setup.c) share beyond bindings.h: the tensor
 * box, dtype and torch.Size objects, and the small argument parsers every binding uses
 * (sizes given as varargs or a table, trailing option tables). Nothing here is for other
 * layers; l_dist.c may use it too, but needs only bindings.h. */
#ifndef DDP_LUA_L_INTERNAL_H
#define DDP_LUA_L_INTERNAL_H

#include <lua.h>

#include "lua/bindings.h"

/* Registry name of the Tensor metatable (also its __name, so argument errors read
 * "tensor expected, got ..."). */
#define L_TENSOR_MT "torch.Tensor"

/* Pushes an empty ("closed") tensor box and returns its slot. A core call writes its
 * `out` straight into the slot, so the box owns the result the moment it exists and an
 * error never leaks it. Raises only a Lua memory error (nothing is owned yet). */
tensor **l_new_box(lua_State *L);

/* The tensor at idx, NULL when the value is not a tensor box at all; a released box
 * raises ("a released tensor ... cannot be used") instead of passing for "not a tensor",
 * so that an argument that may be a tensor or a number reports the real problem. */
tensor *l_opt_tensor(lua_State *L, int idx);

/* The tensor a method works on (argument 1), as ddp_lua_check_tensor; when argument 1
 * is not a tensor at all, the likely cause is `t.sum()` typed for `t:sum()` (Lua then
 * passes no t), and the error says so: "sum: call it as t:sum(), with a colon (in Lua,
 * t.sum() passes no tensor)". Costs a type test when all is well. */
tensor *l_check_self(lua_State *L);
/* Raises the colon hint when argument idx is missing from a call not written with a
 * colon (`t.mm(u)` passes u as t and nothing after it); returns otherwise. */
void l_check_operand(lua_State *L, int idx);
/* A second tensor operand at idx: l_check_operand, then ddp_lua_check_tensor. */
tensor *l_check_other(lua_State *L, int idx);

/* Raises ddp_lua_raise(L, s) unless s is DDP_OK; whatever result box is on the stack is
 * then left to the GC. */
void l_check(lua_State *L, ddp_status s);

/* Pushes a box for t, reusing the live box that already holds t when there is one
 * (so `p.grad` is the same Lua value every time). Takes a NEW reference from the
 * caller, like ddp_lua_push_tensor. */
void l_push_shared_tensor(lua_State *L, tensor *t);

/* l_types.c: creates the dtype objects and the torch.Size metatable (once per state). */
void l_types_open(lua_State *L);
/* Pushes a torch.Size (a Lua list, counted from 1) of the given sizes. */
void l_push_size(lua_State *L, const int64_t *sizes, int ndim);

/* Pushes the interned dtype object (torch.float32, ...). */
void l_push_dtype(lua_State *L, dtype dt);
/* The dtype at idx: a dtype object or a name ("float32"); raises an argument error. */
dtype l_check_dtype(lua_State *L, int idx);
/* True when the value at idx is a dtype object (not a string). */
int l_is_dtype(lua_State *L, int idx);

/* l_cuda.c: pushes the interned device object for d ("cpu", "cuda:1", "cuda"). */
void l_push_device(lua_State *L, device d);
/* True when the value at idx is a device object (not a string). */
int l_is_device(lua_State *L, int idx);
/* The device at idx: a device object or a name ("cuda:1"); raises on anything else. */
device l_check_device(lua_State *L, int idx);
/* Sets torch.device, torch.cuda and torch.backends.cuda into the torch table at the
 * top; each rank's default GPU becomes its LOCAL_RANK. */
void l_cuda_open(lua_State *L);

/* Reads tensor sizes given either as the integers at [first, last] or as one table at
 * `first` (`torch.zeros(2, 3)` or `torch.zeros({2, 3})`). Returns the count; raises a
 * Lua argument error naming `op` for anything else. */
int l_check_sizes(lua_State *L, int first, int last, const char *op,
                  int64_t sizes[TENSOR_MAX_DIMS]);

/* True when the value at idx is a table of options (has string keys and no [1]); used
 * to recognise a trailing `{dtype=..., requires_grad=...}`. */
int l_is_options(lua_State *L, int idx);

/* Gives the torch table at idx a metatable under which PyTorch's dtype names that ddplab
 * lacks (torch.float16, torch.int32, ...) raise an error naming the dtypes it has. */
void l_guard_missing_dtypes(lua_State *L, int idx);

/* In-place ops as PyTorch records them (l_tensor.c). l_inplace_clone returns NULL when
 * the op on t (with tensor operand `other`, or NULL) is a plain write, and raises when it
 * is refused; when it must be recorded it returns a differentiable clone of t (in a new
 * box on the stack) to compute the result from out of place. l_inplace_finish then makes
 * that result t's value and history (see ag_inplace_adopt) and leaves t on top. */
tensor *l_inplace_clone(lua_State *L, tensor *t, const tensor *other, const char *op);
void l_inplace_finish(lua_State *L, tensor *t, const tensor *result, const char *op);

/* Options every creation function takes. */
typedef struct {
    dtype dt;
    int has_dtype;
    device dev;
    int has_device;
    int requires_grad;
} l_create_options;
/* Reads {dtype=, device=, requires_grad=} at idx (absent or nil: defaults). */
void l_check_create_options(lua_State *L, int idx, dtype default_dt, l_create_options *o);
/* The same without the unknown-key check, for a function that takes more options than
 * these and has checked the keys itself (the random functions' generator=). */
void l_read_create_options(lua_State *L, int idx, dtype default_dt, l_create_options *o);

/* Reads field `name` of the options table at idx (which may be absent: 0 = none). */
int l_opt_boolean(lua_State *L, int idx, const char *name, int def);
double l_opt_number(lua_State *L, int idx, const char *name, double def);
/* Returns 1 and sets *out when the field is present and not nil. */
int l_opt_has_number(lua_State *L, int idx, const char *name, double *out);

/* Finishes a tensor that a torch.* creation function just made (in the box at the stack
 * top): version 0 (see tensor_bump_version), then the options: a device the options
 * name and the tensor is not on (torch.tensor and arange are made on the CPU) moves it
 * there in a new box pushed on top; then requires_grad. On failure raises (the boxes are
 * GC'd). */
void l_finish_created(lua_State *L, tensor *t, const l_create_options *o);

/* Creates the Tensor metatable (registry L_TENSOR_MT, with its methods table in the
 * field "methods") and the value types, once per state; later calls do nothing. */
void l_tensor_open(lua_State *L);
/* l_tensor_ops.c: sets the arithmetic metamethods into the metatable at the top, and
 * the arithmetic methods into the methods table at the top. */
void l_tensor_ops_register(lua_State *L);
void l_tensor_ops_methods(lua_State *L);
/* l_grad_hook.c: sets register_post_accumulate_grad_hook into the methods table at the
 * top. Around a backward pass: l_grad_hook_enter(L) makes L the thread hooks run on and
 * returns the previous one for l_grad_hook_leave; after a failed pass,
 * l_grad_hook_raise_pending raises the error a Lua hook raised (returns 0 when none). */
void l_grad_hook_methods(lua_State *L);
lua_State *l_grad_hook_enter(lua_State *L);
void l_grad_hook_leave(lua_State *prev);
int l_grad_hook_raise_pending(lua_State *L);
/* Inside a hook: the Lua thread backward runs on (fallback outside a backward), and a
 * pcall of the function and nargs arguments on its stack whose error backward raises
 * again (DDP_ERR_STATE with the message when it fails). */
lua_State *l_grad_hook_running(lua_State *fallback);
ddp_status l_grad_hook_pcall(lua_State *L, int nargs);
/* Pushes the Tensor methods table (the functions `t:add` etc. resolve to). */
void l_push_tensor_methods(lua_State *L);

/* Pushes Lua nested lists of the tensor's values (tolist). */
void l_push_tolist(lua_State *L, const tensor *t);

/* l_setup.c: require(name), leaving the module on the stack; raises as require does. */
void l_require(lua_State *L, const char *name);

/* l_random.c: sets torch.Generator, the seed and rng-state functions and
 * torch.default_generator into the torch table at the top. */
void l_random_open(lua_State *L);
/* The generator of an options table's `generator=` field (opts 0 or nil: none); NULL
 * when absent (the default generator); raises when it is not a torch.Generator. */
ddp_generator *l_opt_generator(lua_State *L, int opts);

/* l_batchnorm.c: sets F.batch_norm and F._sync_batch_norm into the table at the top. */
void l_batchnorm_register(lua_State *L);

/* l_io.c: pushes the module "ddp.io_core", the file primitives under torch.save and
 * torch.load (lua/torch/serialization.lua). */
int luaopen_ddp_io_core(lua_State *L);

#endif
