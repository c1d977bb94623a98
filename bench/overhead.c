/* overhead.c — bench_overhead: what ddplab adds to a collective, measured against raw
 * Gloo on the same connections, in the same processes, window by window.
 *
 * Two separate programs (ddplab and bench/gloo_raw.cc) differ run to run by 20 to 40% on
 * a shared virtual machine (thread placement, the host's load), far more than the 5%
 * this benchmark has to resolve. So here both sides share everything but the path of
 * the call: N forked ranks initialise ddplab's process group (tcp://, rank 0 hosting the
 * store), open a Lua state with ddplab's modules, and run bench/overhead.lua, which
 * alternates windows of `dist.*` calls (ddplab: the Lua binding, argument checks, the
 * process-group layer, the collective check when on, the helper-thread hand-off) with
 * windows of `raw.*` calls defined here, which hand the tensor's memory straight to
 * comm.h on the Lua thread: gloo::allreduce / broadcast / allgather with the options
 * comm_gloo.cc sets, nothing of ddplab around them.
 *
 * usage: bench_overhead [-n N] [--no-collective-check] overhead.lua [script arguments]
 * A benchmark, not a test: it asserts nothing about time. Exits non-zero when a rank
 * fails (the reason is printed). */
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "dist/pg_internal.h" /* the default group's communicator: a benchmark may look in */
#include "lua/bindings.h"
#include "runtime/launcher.h"

/* The default group's communicator; raises a Lua error when there is none. */
static comm *raw_comm(lua_State *L) {
    process_group *g = pg_W.initialized ? pg_W.default_group : NULL;
    if (!g || !g->comm) luaL_error(L, "raw: no process group of more than one rank");
    return g->comm;
}

/* Raises the error of a failed call. */
static void raw_check(lua_State *L, ddp_status s) {
    if (s != DDP_OK) ddp_lua_raise(L, s);
}

/* The contiguous CPU buffer of the tensor at idx. */
static pg_buffer raw_buffer(lua_State *L, int idx) {
    pg_buffer b;
    raw_check(L, pg_buffer_from_tensor("raw", ddp_lua_check_tensor(L, idx), &b));
    return b;
}

/* raw.all_reduce(t): SUM in place. */
static int l_raw_all_reduce(lua_State *L) {
    pg_buffer b = raw_buffer(L, 1);
    raw_check(L, comm_all_reduce(raw_comm(L), b.data, b.dt, (size_t)pg_buffer_numel(&b), COMM_SUM));
    return 0;
}

/* raw.broadcast(t, src) */
static int l_raw_broadcast(lua_State *L) {
    pg_buffer b = raw_buffer(L, 1);
    int root = (int)luaL_checkinteger(L, 2);
    raw_check(L, comm_broadcast(raw_comm(L), b.data, b.dt, (size_t)pg_buffer_numel(&b), root));
    return 0;
}

/* raw.all_gather_into_tensor(out, t): Gloo's allgather into one buffer, the reference of
 * both forms of dist.all_gather. */
static int l_raw_all_gather(lua_State *L) {
    pg_buffer out = raw_buffer(L, 1), in = raw_buffer(L, 2);
    raw_check(L,
              comm_all_gather(raw_comm(L), in.data, out.data, in.dt, (size_t)pg_buffer_numel(&in)));
    return 0;
}

/* raw.pause(): sleeps 1 ms, so that neither side's window starts while the other side's
 * helper thread still spins (pg_worker.c spins up to 250 us after a call). */
static int l_raw_pause(lua_State *L) {
    (void)L;
    struct timespec ts = {0, 1000000L};
    nanosleep(&ts, NULL);
    return 0;
}

/* raw.barrier() */
static int l_raw_barrier(lua_State *L) {
    raw_check(L, comm_barrier(raw_comm(L)));
    return 0;
}

static const luaL_Reg raw_functions[] = {
    {"all_reduce", l_raw_all_reduce},
    {"broadcast", l_raw_broadcast},
    {"all_gather_into_tensor", l_raw_all_gather},
    {"barrier", l_raw_barrier},
    {"pause", l_raw_pause},
    {NULL, NULL},
};

/* One rank: process group, Lua state with `raw`, the script as one chunk. Returns the
 * process's exit status. */
static int run_rank(int rank, int size, int port, const char *script, char **args, int nargs) {
    char method[64];
    snprintf(method, sizeof method, "tcp://127.0.0.1:%d", port);
    pg_init_options o = {.backend = "gloo",
                         .init_method = method,
                         .rank = rank,
                         .world_size = size,
                         .timeout_s = 60};
    if (pg_init(&o) != DDP_OK) {
        fprintf(stderr, "rank %d: init: %s\n", rank, ddp_last_error());
        return 2;
    }
    lua_State *L = luaL_newstate();
    int status = 0;
    if (!L || ddp_lua_setup(L) != DDP_OK) {
        fprintf(stderr, "rank %d: Lua: %s\n", rank, L ? ddp_last_error() : "no memory");
        status = 2;
    } else {
        luaL_newlib(L, raw_functions);
        lua_setglobal(L, "raw");
        lua_createtable(L, nargs, 1); /* arg, as lua.c makes it: arg[0] is the script */
        lua_pushstring(L, script);
        lua_rawseti(L, -2, 0);
        for (int i = 0; i < nargs; i++) {
            lua_pushstring(L, args[i]);
            lua_rawseti(L, -2, i + 1);
        }
        lua_setglobal(L, "arg");
        pg_chunk_begin(1);
        if (luaL_dofile(L, script) != LUA_OK) {
            fprintf(stderr, "rank %d: %s\n", rank, lua_tostring(L, -1));
            status = 1;
        }
        pg_chunk_end();
    }
    if (L) lua_close(L);
    if (pg_is_initialized()) pg_destroy();
    return status;
}

int main(int argc, char **argv) {
    int size = 2, i = 1;
    bool check = true;
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (strcmp(argv[i], "-n") == 0 && i + 1 < argc)
            size = atoi(argv[++i]);
        else if (strcmp(argv[i], "--no-collective-check") == 0)
            check = false;
        else
            break;
    }
    if (i >= argc || size < 2 || size > 64) {
        fprintf(stderr, "usage: %s [-n N] [--no-collective-check] overhead.lua [args]\n", argv[0]);
        return 2;
    }
    int port;
    if (launcher_free_port("127.0.0.1", &port) != DDP_OK) {
        fprintf(stderr, "bench_overhead: %s\n", ddp_last_error());
        return 2;
    }
    setenv("DDPLAB_COLLECTIVE_CHECK", check ? "1" : "0", 1);
    fflush(stdout);
    pid_t *pids = calloc((size_t)size, sizeof *pids);
    if (!pids) return 2;
    for (int r = 0; r < size; r++) { /* no threads yet in this process: fork is safe */
        pids[r] = fork();
        if (pids[r] == 0) {
            int st = run_rank(r, size, port, argv[i], argv + i + 1, argc - i - 1);
            fflush(NULL);
            _exit(st);
        }
    }
    int failed = 0;
    for (int r = 0; r < size; r++) {
        int st = 0;
        if (pids[r] < 0 || waitpid(pids[r], &st, 0) != pids[r] || !WIFEXITED(st) ||
            WEXITSTATUS(st) != 0)
            failed = 1;
    }
    free(pids);
    return failed;
}
