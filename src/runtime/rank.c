/* rank.c — a rank process: one Lua state running what the driver sends (worker mode) or
 * one script on its own under an outside launcher (standalone mode).
 *
 * In worker mode fd 1 and 2 are a pipe. On the driver's node the driver reads it itself
 * (DDPLAB_OUTPUT=direct), so output written before a crash still arrives; on other nodes
 * a reader thread here forwards it as OUTPUT frames. Either way, before a chunk's
 * DONE/ERROR frame the main thread flushes stdio (and waits until the reader forwarded
 * every byte written so far), so output always precedes the outcome. The reader thread
 * also reports what the rank is doing while a chunk runs (STATE frames from
 * pg_current_activity). Ctrl-C arrives as SIGINT carrying the chunk id: the handler only
 * sets a Lua hook (as lua.c's laction) and raises the core's interrupt flag, so the Lua
 * state stays intact and the next chunk runs normally. */
#include "runtime/rank.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "base/interrupt.h"
#include "dist/process_group.h"
#include "dist/store.h"
#include "lua/bindings.h"
#include "runtime/protocol.h"
#include "runtime/rank_complete.h"
#include "runtime/rank_events.h"
#include "tensor/device.h"

/* ---- the Lua side: running chunks and files, Ctrl-C (completion: rank_complete.c) -- */

typedef enum { RUN_OK, RUN_ERROR, RUN_INTERRUPTED } run_outcome;

typedef struct {
    run_outcome outcome;
    char *message; /* malloc'd for RUN_ERROR / RUN_INTERRUPTED, else NULL */
} run_result;

static lua_State *volatile interrupt_target; /* the state whose hook SIGINT sets */
/* Chunk ids come from the driver. SIGINT from the driver carries the id of the chunk it
 * means (sigqueue), so an interrupt that arrives just before its chunk starts is kept and
 * one that arrives just after a chunk ended does not leak into the next. */
static volatile sig_atomic_t current_chunk;     /* 0 while idle */
static volatile sig_atomic_t interrupted_chunk; /* the last chunk someone interrupted */
static volatile sig_atomic_t standalone;        /* no driver: a second Ctrl-C kills */
/* A second Ctrl-C for the same chunk: the hook stays and raises at every instruction, so
 * a loop that catches the interrupt with pcall still ends (the state is kept). */
static volatile sig_atomic_t interrupt_sticky;

/* The hook SIGINT installs: raises the error at the next Lua instruction (lua.c's lstop). */
static void interrupt_hook(lua_State *L, lua_Debug *ar) {
    (void)ar;
    if (!interrupt_sticky) {
        lua_sethook(L, NULL, 0, 0);
        luaL_error(L, "interrupted!");
    }
    luaL_error(L, "interrupted! (a second Ctrl-C: pcall cannot catch this one)");
}

/* Stops the running chunk: the core's flag for C waits, a hook for Lua code. */
static void stop_running_chunk(void) {
    ddp_interrupt_raise();
    lua_State *L = interrupt_target;
    if (L)
        lua_sethook(L, interrupt_hook, LUA_MASKCALL | LUA_MASKRET | LUA_MASKLINE | LUA_MASKCOUNT,
                    1);
}

/* SIGINT: only records the request and sets the hook (lua.c's laction): async-signal-safe.
 * A plain SIGINT (from a terminal or kill) means whatever chunk is running. */
static void on_sigint(int sig, siginfo_t *info, void *uctx) {
    (void)sig;
    (void)uctx;
    int id = info && info->si_code == SI_QUEUE ? info->si_value.sival_int : current_chunk;
    if (standalone && (id == 0 || interrupted_chunk == id)) {
        /* Under torchrun nobody else can stop a rank stuck in C: the second Ctrl-C ends it. */
        signal(SIGINT, SIG_DFL);
        raise(SIGINT);
        return;
    }
    if (id == 0) return;
    if (id == current_chunk && interrupted_chunk == id) interrupt_sticky = 1;
    interrupted_chunk = id;
    if (id == current_chunk) stop_running_chunk();
}

/* Routes SIGINT to on_sigint for the state L (SA_RESTART: idle reads go on). */
static void install_sigint(lua_State *L) {
    interrupt_target = L;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_sigint;
    sa.sa_flags = SA_RESTART | SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
}

/* Back to the default SIGINT before the state is closed. */
static void uninstall_sigint(void) {
    signal(SIGINT, SIG_DFL);
    interrupt_target = NULL;
}

/* os.execute as the standard one (its upvalue), except that a command ended by Ctrl-C
 * ends the chunk too: system() ignores SIGINT while it waits, so the rank never sees the
 * Ctrl-C that stopped its command (the driver sends it to the rank's whole process group),
 * and a loop of commands would otherwise go on after every Ctrl-C. */
static int l_execute_interruptible(lua_State *L) {
    int n = lua_gettop(L);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, n, LUA_MULTRET);
    if (current_chunk != 0 && lua_gettop(L) == 3 && lua_isstring(L, 2) &&
        strcmp(lua_tostring(L, 2), "signal") == 0 && lua_tointeger(L, 3) == SIGINT) {
        interrupted_chunk = current_chunk;
        return luaL_error(L, "interrupted!");
    }
    return lua_gettop(L);
}

/* Replaces os.execute with l_execute_interruptible (when the os library is there). */
static void wrap_os_execute(lua_State *L) {
    if (lua_getglobal(L, "os") == LUA_TTABLE) {
        if (lua_getfield(L, -1, "execute") == LUA_TFUNCTION) {
            lua_pushcclosure(L, l_execute_interruptible, 1);
            lua_setfield(L, -2, "execute");
        } else {
            lua_pop(L, 1);
        }
    }
    lua_pop(L, 1);
}

/* Opens a Lua state with ddplab's modules. Fails with the bindings' status. */
static ddp_status open_lua(lua_State **out) {
    lua_State *L = luaL_newstate();
    if (!L) return DDP_FAIL(DDP_ERR_NOMEM, "rank: cannot create a Lua state");
    ddp_status s = ddp_lua_setup(L);
    if (s != DDP_OK) {
        lua_close(L);
        return s;
    }
    wrap_os_execute(L);
    rank_events_open(L);
    *out = L;
    return DDP_OK;
}

/* Whether a chunk name or traceback position (without its '@') is in ddplab's own lua/
 * library: embedded ("lua/nn.lua") or loaded from DDPLAB_LUA_PATH. */
static bool is_library_source(const char *src, size_t len) {
    const char *dir = getenv("DDPLAB_LUA_PATH");
    size_t dlen = dir ? strlen(dir) : 0;
    if (len >= 4 && memcmp(src, "lua/", 4) == 0) return true;
    return dlen && len > dlen && memcmp(src, dir, dlen) == 0 && src[dlen] == '/';
}

/* The length of a leading "lua/nn.lua:499: " in msg when it names the library, else 0. */
static size_t library_position_length(const char *msg) {
    const char *colon = strchr(msg, ':');
    if (!colon || !is_library_source(msg, (size_t)(colon - msg))) return 0;
    const char *p = colon + 1;
    if (*p < '0' || *p > '9') return 0;
    while (*p >= '0' && *p <= '9') p++;
    return p[0] == ':' && p[1] == ' ' ? (size_t)(p + 2 - msg) : 0;
}

/* Pushes msg with a position inside ddplab's lua/ library (an argument error that a C
 * function raised for a call the library made: `m.weight = nil; m(x)`) replaced by the
 * learner's line, the innermost frame outside the library (none: no position), as
 * util.raise does for the library's own errors. */
static const char *push_learner_message(lua_State *L, const char *msg) {
    size_t cut = library_position_length(msg);
    if (cut == 0) return lua_pushstring(L, msg);
    lua_Debug ar;
    for (int level = 1; lua_getstack(L, level, &ar); level++) {
        if (!lua_getinfo(L, "Sl", &ar) || ar.currentline <= 0) continue;
        if (ar.source[0] == '@' && is_library_source(ar.source + 1, strlen(ar.source + 1)))
            continue;
        return lua_pushfstring(L, "%s:%d: %s", ar.short_src, ar.currentline, msg + cut);
    }
    return lua_pushstring(L, msg + cut);
}

/* Keeps a traceback short: drops the C frames that only show how ddplab called the chunk
 * and the frames inside ddplab's own lua/ library (the learner's lines are what help). */
static void push_trimmed_traceback(lua_State *L, const char *msg) {
    luaL_traceback(L, L, msg, 1);
    const char *tb = lua_tostring(L, -1);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    int kept = 0;
    for (const char *line = tb; *line;) {
        const char *end = strchr(line, '\n');
        size_t n = end ? (size_t)(end - line) : strlen(line);
        const char *frame = line + (n > 0 && line[0] == '\t');
        bool internal = memmem(line, n, "[C]: in ?", 9) != NULL ||
                        (kept > 0 && is_library_source(frame, n - (size_t)(frame - line)));
        if (!internal && kept < 12) {
            if (kept) luaL_addchar(&b, '\n');
            luaL_addlstring(&b, line, n);
            kept++;
        }
        line += n + (end ? 1 : 0);
    }
    luaL_pushresult(&b);
    lua_remove(L, -2);
}

/* The message handler of every chunk: the message plus a short traceback (lua.c's). */
static int message_handler(lua_State *L) {
    const char *msg = lua_tostring(L, 1);
    if (msg == NULL) {
        if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING) return 1;
        msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    }
    msg = push_learner_message(L, msg);
    push_trimmed_traceback(L, msg);
    return 1;
}

/* Calls the function below `narg` arguments with the handler; fills res on failure. */
static int protected_call(lua_State *L, int narg, int nres, run_result *res) {
    int base = lua_gettop(L) - narg;
    lua_pushcfunction(L, message_handler);
    lua_insert(L, base);
    int status = lua_pcall(L, narg, nres, base);
    lua_remove(L, base);
    lua_sethook(L, NULL, 0, 0);
    if (status != LUA_OK) {
        const char *msg = lua_tostring(L, -1);
        res->outcome = interrupted_chunk == current_chunk ? RUN_INTERRUPTED : RUN_ERROR;
        res->message = strdup(msg ? msg : "(error object is not a string)");
        lua_pop(L, 1);
    }
    return status;
}

/* Calls the global print with every argument. Runs protected: looking the global up can
 * run the learner's own __index on _G (which may raise), and print itself may be gone. */
static int call_global_print(lua_State *L) {
    int n = lua_gettop(L);
    lua_getglobal(L, "print");
    lua_insert(L, 1);
    lua_call(L, n, 0);
    return 0;
}

/* Prints the values on the stack above `base` with the global print, in protected mode
 * since a __tostring or the lookup of `print` itself can fail (lua.c's l_print); a
 * failure becomes the chunk's error, never an unprotected one that would abort the rank. */
static void print_results(lua_State *L, int base, run_result *res) {
    int n = lua_gettop(L) - base;
    if (n <= 0) return;
    if (!lua_checkstack(L, 3)) {
        res->outcome = RUN_ERROR;
        res->message = strdup("too many results to print");
        return;
    }
    lua_pushcfunction(L, call_global_print);
    lua_insert(L, base + 1);
    if (protected_call(L, n, 0, res) != LUA_OK) {
        char *m = res->message;
        size_t len = strlen(m ? m : "") + 32;
        res->message = malloc(len);
        if (res->message) snprintf(res->message, len, "error calling 'print' (%s)", m ? m : "");
        free(m);
    }
    fflush(stdout);
}

/* Before chunk `id`: forget an old Ctrl-C, and honour one that came for this chunk
 * before it started. */
static void begin_run(lua_State *L, int id, run_result *res) {
    res->outcome = RUN_OK;
    res->message = NULL;
    lua_sethook(L, NULL, 0, 0);
    ddp_interrupt_clear();
    interrupt_sticky = 0;
    current_chunk = id;
    if (interrupted_chunk == id) stop_running_chunk();
}

/* After a chunk: nothing may interrupt the idle state. */
static void end_run(lua_State *L) {
    current_chunk = 0;
    lua_sethook(L, NULL, 0, 0);
    interrupt_sticky = 0;
    ddp_interrupt_clear();
}

/* Compiles a chunk as sent. The REPL already turned bare expressions into "return ..."
 * (repl.c, as lua.c does), so -e chunks and scripts run as plain statements, like
 * `lua -e`; a leading "=" still means "return". Leaves the function on the stack. */
static int load_chunk(lua_State *L, const char *chunk, size_t len, const char *name) {
    if (len > 0 && chunk[0] == '=') {
        lua_pushliteral(L, "return ");
        lua_pushlstring(L, chunk + 1, len - 1);
        lua_concat(L, 2);
        size_t rlen;
        const char *ret = lua_tolstring(L, -1, &rlen);
        int status = luaL_loadbuffer(L, ret, rlen, name);
        lua_remove(L, -2);
        return status;
    }
    return luaL_loadbuffer(L, chunk, len, name);
}

/* Runs one chunk; its values (if any) are printed. Never raises. */
static void run_chunk(lua_State *L, int id, const char *chunk, size_t len, const char *name,
                      run_result *res) {
    begin_run(L, id, res);
    int base = lua_gettop(L);
    if (load_chunk(L, chunk, len, name) != LUA_OK) {
        const char *msg = lua_tostring(L, -1);
        res->outcome = RUN_ERROR;
        res->message = strdup(msg ? msg : "cannot compile the chunk");
        lua_settop(L, base);
        return;
    }
    if (protected_call(L, 0, LUA_MULTRET, res) == LUA_OK) print_results(L, base, res);
    lua_settop(L, base);
}

/* Runs a script file with the global `arg` as lua.c sets it (arg[0] = path, arg[1..] =
 * argv) and the arguments also passed as `...`. Never raises. */
static void run_file(lua_State *L, int id, const char *path, int argc, char **argv,
                     run_result *res) {
    begin_run(L, id, res);
    int base = lua_gettop(L);
    lua_createtable(L, argc, 1);
    lua_pushstring(L, path);
    lua_rawseti(L, -2, 0);
    for (int i = 0; i < argc; i++) {
        lua_pushstring(L, argv[i]);
        lua_rawseti(L, -2, i + 1);
    }
    /* raw: a metatable the learner gave _G must not run (unprotected) here */
    lua_pushglobaltable(L);
    lua_pushliteral(L, "arg");
    lua_pushvalue(L, -3);
    lua_rawset(L, -3);
    lua_pop(L, 2);
    if (luaL_loadfile(L, path) != LUA_OK) {
        const char *msg = lua_tostring(L, -1);
        res->outcome = RUN_ERROR;
        res->message = strdup(msg ? msg : "cannot load the script");
        lua_settop(L, base);
        return;
    }
    for (int i = 0; i < argc; i++) lua_pushstring(L, argv[i]);
    (void)protected_call(L, argc, 0, res);
    lua_settop(L, base);
}

/* ---- the control channel and output forwarding (worker mode) ------------------- */

static int control_fd = -1;
static pthread_mutex_t control_lock = PTHREAD_MUTEX_INITIALIZER;

static int output_read_fd = -1; /* the pipe behind fd 1 and 2 */
static int sync_write_fd = -1, sync_read_fd = -1;
static pthread_t reader_thread;
static bool reader_running;
static pthread_mutex_t sync_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t sync_cond = PTHREAD_COND_INITIALIZER;
static unsigned long syncs_requested, syncs_done;

/* Sends one frame under the lock (the reader thread and the main thread share the fd).
 * Errors are returned; a lost driver shows up as DDP_ERR_COMM. */
static ddp_status control_send(msg_type type, const void *data, size_t len);

ddp_status rank_control_send(int type, const void *data, size_t len) {
    return control_send((msg_type)type, data, len);
}

int rank_control_fd(void) {
    return control_fd;
}

static ddp_status control_send(msg_type type, const void *data, size_t len) {
    if (control_fd < 0) return DDP_FAIL(DDP_ERR_COMM, "rank: no control channel");
    pthread_mutex_lock(&control_lock);
    ddp_status s = proto_send(control_fd, type, data, len);
    pthread_mutex_unlock(&control_lock);
    return s;
}

/* Forwards everything readable on the output pipe; returns false at end of stream. */
static bool forward_output(void) {
    char buf[65536];
    if (output_read_fd < 0) return true; /* the driver reads our output itself */
    for (;;) {
        ssize_t n = read(output_read_fd, buf, sizeof buf);
        if (n > 0) {
            (void)control_send(MSG_OUTPUT, buf, (size_t)n);
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        return n < 0; /* EAGAIN: drained; 0: every writer closed */
    }
}

/* Reports a change of activity ("in all_reduce #3 float32[4]" / "running"). */
static void report_activity(char *last, size_t cap) {
    const char *now = current_chunk ? pg_current_activity() : NULL;
    if (!now) now = current_chunk ? "running" : "idle";
    if (strncmp(now, last, cap) == 0) return;
    snprintf(last, cap, "%s", now);
    (void)control_send(MSG_STATE, last, strlen(last));
}

/* The reader thread: output pipe -> OUTPUT frames; sync requests -> drain, then signal. */
static void *reader_main(void *arg) {
    (void)arg;
    char last_state[96] = "idle";
    for (;;) {
        struct pollfd p[2] = {{.fd = output_read_fd, .events = POLLIN},
                              {.fd = sync_read_fd, .events = POLLIN}};
        int r = poll(p, 2, 200);
        if (r < 0 && errno != EINTR) break;
        bool open = true;
        if (r > 0 && (p[0].revents & (POLLIN | POLLHUP))) open = forward_output();
        if (r > 0 && (p[1].revents & POLLIN)) {
            char tokens[64];
            ssize_t n = read(sync_read_fd, tokens, sizeof tokens);
            /* Everything written before the token is in the pipe already: drain it. */
            open = forward_output() && open;
            if (n > 0) {
                pthread_mutex_lock(&sync_lock);
                syncs_done += (unsigned long)n;
                pthread_cond_broadcast(&sync_cond);
                pthread_mutex_unlock(&sync_lock);
            }
        }
        report_activity(last_state, sizeof last_state);
        if (!open) break;
    }
    pthread_mutex_lock(&sync_lock);
    syncs_done = (unsigned long)-1 / 2; /* nobody waits on a dead reader */
    pthread_cond_broadcast(&sync_cond);
    pthread_mutex_unlock(&sync_lock);
    return NULL;
}

/* Makes sure every byte printed so far reached the driver (bounded: 5 s). Also registered
 * with atexit, so that output printed before os.exit or a normal exit still arrives. */
static void output_sync(void) {
    fflush(stdout);
    fflush(stderr);
    if (!reader_running) return;
    pthread_mutex_lock(&sync_lock);
    unsigned long target = ++syncs_requested;
    pthread_mutex_unlock(&sync_lock);
    if (write(sync_write_fd, "s", 1) != 1) return;
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += 5;
    pthread_mutex_lock(&sync_lock);
    while (syncs_done < target) {
        if (pthread_cond_timedwait(&sync_cond, &sync_lock, &deadline) == ETIMEDOUT) break;
    }
    pthread_mutex_unlock(&sync_lock);
}

/* Starts the reader thread. With `forward`, fd 1 and 2 become a pipe that the thread
 * forwards as OUTPUT frames (ranks on other nodes); without, they already are a pipe the
 * local driver reads itself (nothing is lost if this process dies) and the thread only
 * reports activity. */
static ddp_status start_output_forwarding(bool forward) {
    int out[2] = {-1, -1}, sync[2];
    if (forward && pipe2(out, O_CLOEXEC) != 0)
        return DDP_FAIL(DDP_ERR_IO, "rank: cannot create the output pipe (%s)", strerror(errno));
    if (pipe2(sync, O_CLOEXEC) != 0) {
        if (forward) {
            close(out[0]);
            close(out[1]);
        }
        return DDP_FAIL(DDP_ERR_IO, "rank: cannot create a pipe (%s)", strerror(errno));
    }
    fflush(stdout);
    fflush(stderr);
    if (forward) {
        /* dup2 clears O_CLOEXEC on 1 and 2, so os.execute's children print through us. */
        dup2(out[1], 1);
        dup2(out[1], 2);
        close(out[1]);
        fcntl(out[0], F_SETFL, fcntl(out[0], F_GETFL) | O_NONBLOCK);
    }
    output_read_fd = out[0];
    sync_read_fd = sync[0];
    sync_write_fd = sync[1];
    setvbuf(stdout, NULL, _IOLBF, 0); /* a script's lines stream live */
    setvbuf(stderr, NULL, _IONBF, 0);
    if (pthread_create(&reader_thread, NULL, reader_main, NULL) != 0)
        return DDP_FAIL(DDP_ERR_IO, "rank: cannot start the output thread");
    reader_running = true;
    atexit(output_sync);
    return DDP_OK;
}

/* ---- worker mode ------------------------------------------------------------------ */

/* Connects to the driver named by DDPLAB_CONTROL: a Unix socket path on the driver's
 * node, or "tcp:host:port" from another node (then both sides prove they hold the
 * session secret before anything else is said). */
static ddp_status connect_control(const char *path) {
    if (strncmp(path, "tcp:", 4) == 0) {
        char host[256];
        const char *colon = strrchr(path + 4, ':');
        if (!colon || (size_t)(colon - path - 4) >= sizeof host)
            return DDP_FAIL(DDP_ERR_ARG, "rank: bad control address %s", path);
        snprintf(host, sizeof host, "%.*s", (int)(colon - path - 4), path + 4);
        unsigned char key[PROTO_KEY_BYTES];
        int fd = -1;
        DDP_CHECK(proto_load_secret(key));
        ddp_status s = proto_connect_tcp(host, atoi(colon + 1), 30000, &fd);
        if (s == DDP_OK) s = proto_auth_client(fd, key, 10000);
        memset(key, 0, sizeof key);
        if (s != DDP_OK) {
            if (fd >= 0) close(fd);
            return s;
        }
        control_fd = fd;
        return DDP_OK;
    }
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof sa.sun_path)
        return DDP_FAIL(DDP_ERR_ARG, "rank: control socket path too long: %s", path);
    strcpy(sa.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return DDP_FAIL(DDP_ERR_IO, "rank: socket failed (%s)", strerror(errno));
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        int e = errno;
        close(fd);
        return DDP_FAIL(DDP_ERR_COMM, "rank: cannot reach the driver at %s (%s)", path,
                        strerror(e));
    }
    control_fd = fd;
    return DDP_OK;
}

/* Sends DEVICE (protocol.h) when this rank has used a GPU and its device or memory
 * changed since the last report: what :ranks shows. Starts no CUDA in a rank that never
 * touched a GPU. */
static void report_device(void) {
    static char last[96];
    int index = 0;
    cache_stats st;
    if (!cuda_was_used() || cuda_current_device(&index) != DDP_OK ||
        cuda_memory_stats(index, &st) != DDP_OK)
        return;
    char buf[96];
    int n = snprintf(buf, sizeof buf, "cuda:%d%c%lld%c%lld", index, 0, (long long)st.allocated, 0,
                     (long long)st.reserved);
    if (n <= 0 || (size_t)n >= sizeof buf || memcmp(buf, last, (size_t)n + 1) == 0) return;
    memcpy(last, buf, (size_t)n + 1);
    (void)control_send(MSG_DEVICE, buf, (size_t)n);
}

/* Sends HELLO: "rank\0pid\0host\0device". */
static ddp_status send_hello(int rank) {
    char host[64] = "?";
    gethostname(host, sizeof host - 1);
    char dev[16] = "cpu";
    const char *local = getenv("LOCAL_RANK");
    comm_backend b;
    if (comm_backend_parse(getenv("DDPLAB_BACKEND"), &b) && b == COMM_BACKEND_NCCL)
        snprintf(dev, sizeof dev, "cuda:%d", local ? atoi(local) : 0);
    char buf[160];
    int n = snprintf(buf, sizeof buf, "%d%c%d%c%s%c%s", rank, 0, (int)getpid(), 0, host, 0, dev);
    return control_send(MSG_HELLO, buf, (size_t)n);
}

/* Tells the process groups which global ranks run this chunk (the REPL's :on), so that a
 * collective that waits for a rank outside the chunk fails at once instead of after the
 * watchdog. `targets` holds '1' / '0' per global rank. */
static void set_participants(const char *targets, size_t n) {
    bool stack[64], *running = n <= 64 ? stack : malloc(n * sizeof *running);
    bool all = true;
    for (size_t r = 0; running && r < n; r++) {
        running[r] = targets[r] == '1';
        all = all && running[r];
    }
    /* all ranks (or no memory to say otherwise): as if it had not been called */
    pg_chunk_set_participants(running && !all ? running : NULL, (int)n);
    if (running != stack) free(running);
}

/* Before a chunk's outcome: its last collective, as a STATE frame ("in barrier #1"), when
 * it is new, so that :ranks can say "idle (last: ...)" even for a collective that began
 * and ended between two of the reader thread's looks (a rank that arrived last). */
static void report_last_collective(void) {
    static char told[160];
    const char *last = pg_last_activity();
    if (!last || strcmp(last, told) == 0) return;
    snprintf(told, sizeof told, "%s", last);
    (void)control_send(MSG_STATE, told, strlen(told));
}

/* Runs one chunk ("id\0targets\0chunkname\0chunk") or file ("id\0targets\0path\0arg1...";
 * targets: '1' or '0' per global rank, who runs this chunk) and reports its outcome to the
 * driver. */
static void serve_run(lua_State *L, const proto_frame *f) {
    run_result res;
    const char *nul = memchr(f->data, '\0', f->len);
    const char *targets = nul ? nul + 1 : NULL;
    const char *targets_end =
        targets ? memchr(targets, '\0', f->len - (size_t)(targets - f->data)) : NULL;
    int id = atoi(f->data);
    if (!targets_end || id <= 0) {
        const char *m = "rank: a corrupt RUN message (no chunk id or targets)";
        (void)control_send(MSG_ERROR, m, strlen(m));
        return;
    }
    char *rest = (char *)targets_end + 1;
    uint32_t rest_len = f->len - (uint32_t)(rest - f->data);
    pg_chunk_begin((uint64_t)id);
    set_participants(targets, (size_t)(targets_end - targets));
    if (f->type == MSG_RUN) {
        const char *name_end = memchr(rest, '\0', rest_len);
        const char *chunk = name_end ? name_end + 1 : rest;
        size_t len = name_end ? rest_len - (size_t)(name_end + 1 - rest) : rest_len;
        run_chunk(L, id, chunk, len, name_end ? rest : "=input", &res);
    } else {
        char *fields[256];
        int n = proto_split(rest, rest_len, fields, 256);
        run_file(L, id, fields[0], n - 1, fields + 1, &res);
    }
    /* who ended first, said before the peers can learn it from the store (pg_chunk_end):
     * the driver names the first failure as the cause of the others */
    (void)control_send(MSG_EVENT, "ended", 5);
    pg_chunk_end();
    end_run(L);
    output_sync();
    report_last_collective();
    report_device();
    if (res.outcome == RUN_OK)
        (void)control_send(MSG_DONE, NULL, 0);
    else
        (void)control_send(res.outcome == RUN_INTERRUPTED ? MSG_INTERRUPTED : MSG_ERROR,
                           res.message, strlen(res.message));
    free(res.message);
}

typedef struct {
    const char *word;
    char *list;
    size_t len;
} complete_request;

/* rank_complete_word under lua_pcall: it reads raw and calls no Lua function, but a Lua
 * string it pushes can still fail for memory, and nothing may abort an idle rank. */
static int complete_protected(lua_State *L) {
    complete_request *r = lua_touserdata(L, 1);
    rank_complete_word(L, r->word, &r->list, &r->len);
    return 0;
}

/* Answers a COMPLETE request with the candidates, NUL-separated. */
static void serve_complete(lua_State *L, const char *word) {
    complete_request r = {word, NULL, 0};
    lua_pushcfunction(L, complete_protected);
    lua_pushlightuserdata(L, &r);
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) lua_pop(L, 1);
    char *list = r.list;
    size_t len = r.len;
    (void)control_send(MSG_COMPLETIONS, list ? list : "", list ? len : 0);
    free(list);
}

int rank_worker_main(void) {
    const char *path = getenv("DDPLAB_CONTROL");
    const char *rank_env = getenv("RANK");
    if (!path || !rank_env) {
        fprintf(stderr, "ddplab: a rank worker needs DDPLAB_CONTROL and RANK (it is started "
                        "by the ddplab driver, not by hand)\n");
        return 2;
    }
    int rank = atoi(rank_env);
    if (connect_control(path) != DDP_OK) {
        fprintf(stderr, "ddplab rank %d: %s\n", rank, ddp_last_error());
        return 2;
    }
    const char *output = getenv("DDPLAB_OUTPUT");
    if (start_output_forwarding(!output || strcmp(output, "direct") != 0) != DDP_OK) {
        const char *m = ddp_last_error();
        (void)proto_send(control_fd, MSG_ERROR, m, strlen(m));
        return 2;
    }
    lua_State *L = NULL;
    if (open_lua(&L) != DDP_OK) {
        const char *m = ddp_last_error();
        output_sync();
        (void)control_send(MSG_ERROR, m, strlen(m));
        return 2;
    }
    install_sigint(L);
    if (send_hello(rank) != DDP_OK) return 2;
    for (;;) {
        proto_frame f;
        ddp_status s = proto_recv(control_fd, -1, &f);
        if (s == DDP_ERR_COMM) break; /* the driver went away: end quietly */
        if (s != DDP_OK) {
            fprintf(stderr, "ddplab rank %d: %s\n", rank, ddp_last_error());
            break;
        }
        if (f.type == MSG_BYE) {
            proto_frame_free(&f);
            break;
        }
        if (f.type == MSG_RUN || f.type == MSG_RUN_FILE)
            serve_run(L, &f);
        else if (f.type == MSG_COMPLETE)
            serve_complete(L, f.data);
        proto_frame_free(&f);
    }
    uninstall_sigint();
    output_sync();
    lua_close(L);
    output_sync();
    return 0;
}

/* ---- standalone mode (torchrun / SLURM) --------------------------------------------- */

bool rank_launched_externally(void) {
    if (getenv("DDPLAB_RANK_WORKER")) return false;
    return (getenv("RANK") && getenv("WORLD_SIZE")) ||
           (getenv("SLURM_PROCID") && getenv("SLURM_NTASKS"));
}

/* Fills torchrun's variables from SLURM's when only those are set, and the rendezvous
 * address defaults, so that init_method="env://" works the same under both. */
static void normalise_environment(void) {
    if (!getenv("RANK") && getenv("SLURM_PROCID")) setenv("RANK", getenv("SLURM_PROCID"), 1);
    if (!getenv("WORLD_SIZE") && getenv("SLURM_NTASKS"))
        setenv("WORLD_SIZE", getenv("SLURM_NTASKS"), 1);
    if (!getenv("LOCAL_RANK")) {
        const char *l = getenv("SLURM_LOCALID");
        setenv("LOCAL_RANK", l ? l : getenv("RANK"), 1);
    }
    if (!getenv("MASTER_ADDR")) setenv("MASTER_ADDR", "127.0.0.1", 1);
    if (!getenv("MASTER_PORT")) setenv("MASTER_PORT", "29500", 1);
    setenv("OMP_NUM_THREADS", "1", 0);
    setenv("OPENBLAS_NUM_THREADS", "1", 0);
}

int rank_run_standalone(const char *script, const char *chunk, int argc, char **argv) {
    normalise_environment();
    standalone = 1;
    int rank = atoi(getenv("RANK"));
    store_server *store = NULL;
    if (rank == 0) {
        /* Rank 0 hosts the rendezvous store, as torchrun's c10d store does; bind to all
         * addresses only when the master address is not loopback. */
        const char *addr = getenv("MASTER_ADDR");
        bool loopback = strncmp(addr, "127.", 4) == 0 || strcmp(addr, "localhost") == 0;
        if (store_server_start(loopback ? addr : "0.0.0.0", atoi(getenv("MASTER_PORT")), &store) !=
            DDP_OK) {
            fprintf(stderr, "ddplab rank 0: cannot host the rendezvous store on %s:%s: %s\n", addr,
                    getenv("MASTER_PORT"), ddp_last_error());
            return 1;
        }
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    lua_State *L = NULL;
    if (open_lua(&L) != DDP_OK) {
        fprintf(stderr, "ddplab rank %d: %s\n", rank, ddp_last_error());
        store_server_stop(store);
        return 1;
    }
    install_sigint(L);
    run_result res;
    pg_chunk_begin(1);
    if (script)
        run_file(L, 1, script, argc, argv, &res);
    else
        run_chunk(L, 1, chunk ? chunk : "", chunk ? strlen(chunk) : 0, "=(command line)", &res);
    pg_chunk_end();
    end_run(L);
    int status = 0;
    if (res.outcome != RUN_OK) {
        fflush(stdout);
        fprintf(stderr, "ddplab rank %d: %s\n", rank, res.message);
        status = res.outcome == RUN_INTERRUPTED ? 130 : 1;
    }
    free(res.message);
    uninstall_sigint();
    lua_close(L);
    fflush(stdout);
    store_server_stop(store);
    return status;
}
