/* launcher.h — starting and ending rank processes: a private directory for the control
 * socket, free ports, fork+exec with torchrun's environment, bounded reaping, and exit
 * statuses in words. Used by the driver (driver.c); nothing here knows about Lua. */
#ifndef DDP_RUNTIME_LAUNCHER_H
#define DDP_RUNTIME_LAUNCHER_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "base/status.h"
#include "runtime/driver.h"

/* Creates a fresh directory only this user can enter (mode 0700) under $XDG_RUNTIME_DIR,
 * else /tmp, and writes its path into out[cap]. Fails with DDP_ERR_IO. */
ddp_status launcher_private_dir(char *out, size_t cap);

/* Asks the kernel for a TCP port that is free on `addr` (NULL: 127.0.0.1) right now.
 * Fails with DDP_ERR_IO. (Another process may take it before we bind it again: callers
 * that can bind port 0 themselves should.) */
ddp_status launcher_free_port(const char *addr, int *port);

/* One environment variable for a child. `only_if_unset` keeps the parent's value when
 * there is one (OMP_NUM_THREADS=1 unless the user chose otherwise). */
typedef struct {
    const char *name;
    const char *value;
    bool only_if_unset;
} launcher_env;

/* Starts `exe` with argv {argv0, NULL} and the parent's environment plus `env[n]`. The
 * child gets stdin from /dev/null, `out_fd` (when >= 0) as its stdout and stderr, its own process
 * group (so the terminal's Ctrl-C only reaches the driver), and SIGKILL when the parent dies. Fails
 * with DDP_ERR_IO when fork fails; a failing exec shows up as the child's exit status 127. */
ddp_status launcher_spawn(const char *exe, const char *argv0, const launcher_env *env, int n,
                          int out_fd, pid_t *pid_out);

/* Where a rank sits in the world, and how to reach the driver: becomes torchrun's
 * environment plus ddplab's own variables (see spawn_rank in launcher.c). */
typedef struct {
    const char *control; /* DDPLAB_CONTROL: a Unix socket path, or "tcp:host:port" */
    int rank, local_rank, world_size, local_world_size, group_rank;
    const char *master_addr;
    int master_port;
    const launch_options *opts; /* backend, collective timeout and check */
    int out_fd; /* >= 0: the rank's stdout/stderr, read by the driver directly (so nothing
                 * printed is lost when the rank dies); -1: the rank forwards its output
                 * over the control channel (ranks on other nodes) */
} launcher_rank_spec;

/* Starts one rank worker (this same program, /proc/self/exe) as launcher_spawn does. */
ddp_status launcher_spawn_rank(const launcher_rank_spec *spec, pid_t *pid_out);

/* The agent on node K > 0 of a multi-node session (`ddplab --nnodes M --node-rank K
 * --master-addr A`): dials the driver on node 0 (port MASTER_PORT + 1, authenticated
 * with DDPLAB_SECRET), starts this node's ranks whenever the driver asks (START_RANKS: at
 * start-up and on :restart), relays Ctrl-C to them and reports their exits, and ends each
 * rank's whole process group when the driver asks (END_RANKS), says goodbye or goes away,
 * and on SIGTERM, SIGINT or SIGHUP. Returns the exit status for main(): 0 after goodbye,
 * 1 when the driver went away, 2 when it could not be reached, 128 + signal. */
int launcher_agent_main(const launch_options *opts);

/* The TCP port of the control channel across nodes: the store's port plus one. */
int launcher_control_port(int master_port);

/* Sleeps until one of pids[n] (children not yet reaped) has ended, or timeout_ms passed;
 * reaps nothing: the caller's waitpid(WNOHANG) looks next. Watches the children through
 * pidfds, so an exit wakes it at once; where pidfds are missing it naps 2 ms. Returns at
 * once when a pid is no longer this process's child. Cannot fail. */
void launcher_wait_exit(const pid_t *pids, int n, int timeout_ms);

/* Waits up to timeout_ms for `pid` to end; true and *status (waitpid's) if it did. */
bool launcher_reap(pid_t pid, int timeout_ms, int *status);

/* Ends `pid`: SIGTERM, then SIGKILL after grace_ms, and reaps it. Returns the waitpid
 * status, or -1 when the process was already reaped by someone else. */
int launcher_kill(pid_t pid, int grace_ms);

/* The waitpid status in words ("exited with status 3", "was killed by signal 9 (SIGKILL)")
 * into buf[cap]; returns the exit code, or -signal. */
int launcher_describe_exit(int status, char *buf, size_t cap);

/* The resident memory of `pid` in bytes from /proc/<pid>/statm, or -1. */
long long launcher_rss_bytes(pid_t pid);

#endif
