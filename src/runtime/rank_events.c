/* rank_events.c — `ddplab.rank`, the typed events a rank sends the driver while a chunk
 * runs (protocol.h): a lesson check's verdict, a progress bar's tick, and c.gather's
 * exchange through the driver (so that a check can compare ranks without the learner's
 * process group, and without counting as one of the learner's collectives).
 *
 * gather blocks the chunk until the driver answers; it waits in 50 ms slices so that
 * Ctrl-C (the core's interrupt flag) ends it, as every other wait of a rank. Progress ticks
 * are thinned to one per 50 ms (plus the first and the last), so a tight loop cannot flood
 * the channel. */
#include "runtime/rank_events.h"

#include <lauxlib.h>
#include <lua.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/interrupt.h"
#include "runtime/protocol.h"

#define PROGRESS_EVERY_MS 50

/* verdict("pass"|"fail"|"defect", message) */
static int l_verdict(lua_State *L) {
    static const char *const kinds[] = {"pass", "fail", "defect", NULL};
    proto_event ev = {.kind = PROTO_EVENT_VERDICT};
    ev.verdict = (proto_verdict)luaL_checkoption(L, 1, NULL, kinds);
    ev.message = luaL_optstring(L, 2, "");
    size_t cap = strlen(ev.message) + 32;
    char *buf = malloc(cap);
    if (!buf) return luaL_error(L, "no memory for a verdict");
    size_t n = proto_event_encode(&ev, buf, cap);
    ddp_status s = rank_control_send(MSG_EVENT, buf, n);
    free(buf);
    lua_pushboolean(L, s == DDP_OK);
    return 1;
}

/* progress(done, total, label): sends a tick unless one went out less than 50 ms ago
 * (the first and the last always go). */
static int l_progress(lua_State *L) {
    static int64_t last_ms;
    proto_event ev = {.kind = PROTO_EVENT_PROGRESS};
    ev.done = (long)luaL_checkinteger(L, 1);
    ev.total = (long)luaL_checkinteger(L, 2);
    ev.label = luaL_optstring(L, 3, "");
    int64_t now = ddp_now_ms();
    if (ev.done != 0 && ev.done < ev.total && now - last_ms < PROGRESS_EVERY_MS) return 0;
    last_ms = now;
    char buf[256];
    size_t n = proto_event_encode(&ev, buf, sizeof buf);
    (void)rank_control_send(MSG_EVENT, buf, n);
    return 0;
}

/* Reads big-endian u32 at p. */
static uint32_t get_u32(const unsigned char *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

/* gather(bytes) -> a list with every rank's bytes at index rank+1 (false for a rank that
 * sent nothing: it ended, or is not part of the chunk). */
static int l_gather(lua_State *L) {
    size_t len;
    const char *bytes = luaL_checklstring(L, 1, &len);
    int fd = rank_control_fd();
    if (fd < 0) return luaL_error(L, "gather needs the ddplab driver (this rank has none)");
    if (rank_control_send(MSG_GATHER, bytes, len) != DDP_OK)
        return luaL_error(L, "gather: the driver is gone");
    proto_frame f = {0};
    for (;;) {
        if (ddp_interrupt_pending()) return luaL_error(L, "interrupted!");
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 50) <= 0) continue;
        if (proto_recv(fd, -1, &f) != DDP_OK) return luaL_error(L, "gather: %s", ddp_last_error());
        if (f.type == MSG_GATHERED) break;
        proto_frame_free(&f); /* nothing else is sent to a running rank */
    }
    lua_newtable(L);
    const unsigned char *p = (const unsigned char *)f.data, *end = p + f.len;
    for (int r = 1; p + 4 <= end; r++) {
        uint32_t n = get_u32(p);
        p += 4;
        if (n == PROTO_GATHER_MISSING) {
            lua_pushboolean(L, 0);
        } else {
            if (n > (size_t)(end - p)) break;
            lua_pushlstring(L, (const char *)p, n);
            p += n;
        }
        lua_rawseti(L, -2, r);
    }
    proto_frame_free(&f);
    return 1;
}

void rank_events_open(lua_State *L) {
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    lua_newtable(L);
    static const luaL_Reg fns[] = {
        {"verdict", l_verdict}, {"progress", l_progress}, {"gather", l_gather}, {NULL, NULL}};
    luaL_setfuncs(L, fns, 0);
    lua_pushboolean(L, rank_control_fd() >= 0);
    lua_setfield(L, -2, "connected");
    lua_setfield(L, -2, "ddplab.rank");
    lua_pop(L, 1);
}
