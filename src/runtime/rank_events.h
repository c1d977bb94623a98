/* rank_events.h — the rank's side of the typed events (protocol.h): the module
 * `ddplab.rank` that the lesson engine and progress() use inside a rank's Lua state. */
#ifndef DDP_RUNTIME_RANK_EVENTS_H
#define DDP_RUNTIME_RANK_EVENTS_H

#include <stddef.h>

#include "base/status.h"

struct lua_State;

/* Registers package.loaded["ddplab.rank"] in L: verdict(kind, message), progress(done,
 * total, label), gather(bytes) and `connected` (false without a driver: standalone
 * scripts). */
void rank_events_open(struct lua_State *L);

/* rank.c: one frame to the driver (thread-safe), and the control socket (-1 when there is
 * no driver). */
ddp_status rank_control_send(int type, const void *data, size_t len);
int rank_control_fd(void);

#endif
