/* test_lua_alloc.c — every path out of a failed allocation of the Lua state: a training
 * step written in Lua (nn.Linear, MSELoss, backward, Adam, a tensor saved and loaded
 * through torch.save / torch.load) runs in a state whose lua_Alloc fails from the k-th
 * allocation of the chunk on, for every k until the step needs no more. Lua turns
 * a failed allocation into a "not enough memory" error, raised from wherever it happened
 * (inside a binding too, between its core calls): each run must either complete or end
 * with that error, never crash, and nothing may leak when the error unwinds the bindings
 * (LeakSanitizer, in the sanitizer build; the state is closed after each run, so a box
 * left without its tensor or a tensor without its box shows as a leak). The C core's
 * allocations go through its own seam (base/alloc.h), walked by the other *_alloc tests;
 * a second walk here fails those while the chunk runs, so that each core NOMEM must come
 * out of the bindings as a Lua error saying "out of memory". */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "base/alloc.h"
#include "lua/bindings.h"

static char dir[256];

/* The countdown of the Lua allocator: allocations (a new block or a larger one) are
 * counted while `counting`, and from the one numbered fail_at (>= 1) on, every one fails:
 * the memory runs out there. (Failing only that one would show nothing: Lua answers a
 * failed allocation with an emergency collection and tries again.) */
typedef struct {
    bool counting;
    long count, fail_at;
} lua_hook;

static void *failing_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
    lua_hook *h = ud;
    if (nsize == 0) {
        free(ptr);
        return NULL;
    }
    bool grows = ptr == NULL || nsize > osize;
    if (h->counting && grows && ++h->count >= h->fail_at && h->fail_at > 0) return NULL;
    return realloc(ptr, nsize);
}

/* The step. Modules are required before the countdown starts (their loading is the same
 * embedded Lua code every run, and not what this walks). */
static const char *const step = "local torch, nn, optim = torch, nn, optim\n"
                                "local path = ...\n"
                                "torch.manual_seed(0)\n"
                                "local model = nn.Linear(3, 2)\n"
                                "local opt = optim.Adam(model:parameters(), {lr = 1e-2})\n"
                                "local x, y = torch.randn(4, 3), torch.zeros(4, 2)\n"
                                "for _ = 1, 2 do\n"
                                "  opt:zero_grad()\n"
                                "  local loss = nn.MSELoss()(model(x), y)\n"
                                "  loss:backward()\n"
                                "  opt:step()\n"
                                "end\n"
                                "torch.save({w = model.weight, note = 'step'}, path)\n"
                                "local back = torch.load(path)\n"
                                "assert((back.w - model.weight):abs():max():item() == 0)\n"
                                "return model.weight:sum():item()\n";

/* Runs the step in a fresh state whose allocator fails the k-th Lua allocation (lua_k) and
 * whose core fails the k-th core allocation (core_k; 0: none). Returns 0 when it
 * completed (its result in *value), 1 when it ended with the expected error; fails the
 * test otherwise. *lua_count / *core_count: the allocations the chunk made. */
static int run_step(long lua_k, long core_k, double *value, long *lua_count, long *core_count) {
    lua_hook h = {.counting = false, .fail_at = lua_k};
    lua_State *L = lua_newstate(failing_alloc, &h);
    assert_non_null(L);
    assert_int_equal(ddp_lua_setup(L), DDP_OK);
    assert_int_equal(luaL_dostring(L, "require 'nn'; require 'optim'; require 'torch'"), LUA_OK);
    char path[300];
    snprintf(path, sizeof path, "%s/w.safetensors", dir);
    unlink(path);
    assert_int_equal(luaL_loadstring(L, step), LUA_OK);
    lua_pushstring(L, path);
    h.counting = true;
    ddp_alloc_fail_at(core_k);
    int st = lua_pcall(L, 1, 1, 0);
    if (core_count) *core_count = ddp_alloc_count();
    ddp_alloc_fail_at(0);
    h.counting = false;
    if (lua_count) *lua_count = h.count;
    int outcome = 0;
    if (st == LUA_OK) {
        *value = lua_tonumber(L, -1);
    } else {
        const char *msg = lua_tostring(L, -1);
        bool expected = msg && (lua_k ? strstr(msg, "not enough memory") != NULL
                                      : strstr(msg, "out of memory") != NULL);
        if (!expected)
            fail_msg("allocation %ld (%s): status %d: %s", lua_k ? lua_k : core_k,
                     lua_k ? "Lua" : "core", st, msg ? msg : "(no message)");
        outcome = 1;
    }
    lua_close(L);
    return outcome;
}

static void test_every_lua_allocation_can_fail(void **state) {
    (void)state;
    double reference = 0, value = 0;
    long needed = 0;
    assert_int_equal(run_step(0, 0, &reference, &needed, NULL), 0);
    print_message("Lua: %ld allocations of the state's allocator\n", needed);
    assert_true(needed > 100);
    int failed = 0;
    for (long k = 1; k <= needed; k++) failed += run_step(k, 0, &value, NULL, NULL);
    print_message("Lua: %d of them ended the step with \"not enough memory\"\n", failed);
    /* memory that runs out at any allocation of the step stops it (Lua can do without
     * some growth, a string table's, but none of those happens in this step) */
    assert_int_equal(failed, needed);
    assert_int_equal(run_step(needed + 1, 0, &value, NULL, NULL), 0);
    assert_true(value == reference);
}

static void test_every_core_allocation_is_a_lua_error(void **state) {
    (void)state;
    double reference = 0, value = 0;
    long needed = 0;
    assert_int_equal(run_step(0, 0, &reference, NULL, &needed), 0);
    print_message("core: %ld allocations through the seam during the step\n", needed);
    assert_true(needed > 50);
    for (long k = 1; k <= needed; k++)
        if (run_step(0, k, &value, NULL, NULL) != 1)
            fail_msg("core allocation %ld of %ld: the step did not fail", k, needed);
    assert_int_equal(run_step(0, needed + 1, &value, NULL, NULL), 0);
    assert_true(value == reference);
}

static int make_dir(void **state) {
    (void)state;
    snprintf(dir, sizeof dir, "%s/ddp_lua_alloc_XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    return mkdtemp(dir) ? 0 : -1;
}

static int remove_dir(void **state) {
    (void)state;
    char path[300];
    snprintf(path, sizeof path, "%s/w.safetensors", dir);
    unlink(path);
    return rmdir(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_lua_allocation_can_fail),
        cmocka_unit_test(test_every_core_allocation_is_a_lua_error),
    };
    return cmocka_run_group_tests(tests, make_dir, remove_dir);
}
