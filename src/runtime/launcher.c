/* launcher.c — spawning and reaping rank processes (see launcher.h). Everything the
 * child does between fork and exec is async-signal-safe: the environment is built
 * before the fork. */
#include "runtime/launcher.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <sys/pidfd.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <poll.h>
#include <unistd.h>

#include "base/clock.h"
#include "runtime/protocol.h"

extern char **environ;

ddp_status launcher_private_dir(char *out, size_t cap) {
    const char *base = getenv("XDG_RUNTIME_DIR");
    struct stat st;
    if (!base || !*base || stat(base, &st) != 0 || !S_ISDIR(st.st_mode) ||
        access(base, W_OK | X_OK) != 0)
        base = "/tmp";
    int n = snprintf(out, cap, "%s/ddplab-XXXXXX", base);
    if (n < 0 || (size_t)n >= cap)
        return DDP_FAIL(DDP_ERR_IO, "launcher: the runtime directory path is too long");
    if (!mkdtemp(out)) /* mkdtemp creates it with mode 0700 */
        return DDP_FAIL(DDP_ERR_IO, "launcher: cannot create a private directory under %s (%s)",
                        base, strerror(errno));
    return DDP_OK;
}

ddp_status launcher_free_port(const char *addr, int *port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return DDP_FAIL(DDP_ERR_IO, "launcher: socket failed (%s)", strerror(errno));
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
    if (inet_pton(AF_INET, addr ? addr : "127.0.0.1", &sa.sin_addr) != 1) {
        close(fd);
        return DDP_FAIL(DDP_ERR_ARG, "launcher: '%s' is not an IPv4 address", addr);
    }
    socklen_t sl = sizeof sa;
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &sl) != 0) {
        int e = errno;
        close(fd);
        return DDP_FAIL(DDP_ERR_IO, "launcher: no free port on %s (%s)", addr ? addr : "127.0.0.1",
                        strerror(e));
    }
    *port = ntohs(sa.sin_port);
    close(fd);
    return DDP_OK;
}

/* Builds the child's environment: the parent's, with `env` applied. The strings of the
 * overrides are malloc'd and listed in *owned so that the caller can free them. */
static char **build_environment(const launcher_env *env, int n, char ***owned, int *nowned) {
    int count = 0;
    while (environ[count]) count++;
    char **out = calloc((size_t)(count + n + 1), sizeof *out);
    char **mine = calloc((size_t)(n + 1), sizeof *mine);
    if (!out || !mine) {
        free(out);
        free(mine);
        return NULL;
    }
    int k = 0, m = 0;
    for (int i = 0; i < count; i++) {
        bool replaced = false;
        for (int j = 0; j < n; j++) {
            size_t nl = strlen(env[j].name);
            if (!env[j].only_if_unset && strncmp(environ[i], env[j].name, nl) == 0 &&
                environ[i][nl] == '=')
                replaced = true;
        }
        if (!replaced) out[k++] = environ[i];
    }
    for (int j = 0; j < n; j++) {
        if (env[j].only_if_unset && getenv(env[j].name)) continue;
        size_t len = strlen(env[j].name) + strlen(env[j].value) + 2;
        char *s = malloc(len);
        if (!s) break;
        snprintf(s, len, "%s=%s", env[j].name, env[j].value);
        out[k++] = mine[m++] = s;
    }
    out[k] = NULL;
    *owned = mine;
    *nowned = m;
    return out;
}

ddp_status launcher_spawn(const char *exe, const char *argv0, const launcher_env *env, int n,
                          int out_fd, pid_t *pid_out) {
    char **owned = NULL;
    int nowned = 0;
    char **envp = build_environment(env, n, &owned, &nowned);
    if (!envp) return DDP_FAIL(DDP_ERR_NOMEM, "launcher: no memory for the environment");
    char *argv[] = {(char *)argv0, NULL};
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        /* Child: only async-signal-safe calls until exec. */
        setpgid(0, 0);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(127); /* the driver died before we got here */
        int null = open("/dev/null", O_RDONLY);
        if (null >= 0) {
            dup2(null, 0);
            if (null != 0) close(null);
        }
        if (out_fd >= 0) { /* dup2 clears O_CLOEXEC on 1 and 2 */
            dup2(out_fd, 1);
            dup2(out_fd, 2);
        }
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        signal(SIGINT, SIG_DFL);
        signal(SIGPIPE, SIG_DFL);
        execve(exe, argv, envp);
        _exit(127);
    }
    int e = errno;
    for (int i = 0; i < nowned; i++) free(owned[i]);
    free(owned);
    free(envp);
    if (pid < 0)
        return DDP_FAIL(DDP_ERR_IO, "launcher: cannot start a rank (fork: %s)", strerror(e));
    *pid_out = pid;
    return DDP_OK;
}

void launcher_wait_exit(const pid_t *pids, int n, int timeout_ms) {
    if (n <= 0 || timeout_ms <= 0) return;
    struct pollfd *pfd = calloc((size_t)n, sizeof *pfd);
    int opened = 0;
    bool gone = false; /* a pid that is no longer ours: the caller's waitpid will see it */
    bool no_pidfd = pfd == NULL;
    for (int i = 0; pfd && i < n; i++) {
        int fd = pidfd_open(pids[i], 0);
        if (fd < 0) {
            if (errno == ESRCH)
                gone = true;
            else
                no_pidfd = true;
            break;
        }
        pfd[opened].fd = fd;
        pfd[opened].events = POLLIN;
        opened++;
    }
    if (!gone && !no_pidfd) {
        while (poll(pfd, (nfds_t)opened, timeout_ms) < 0 && errno == EINTR) {
        }
    } else if (!gone) {
        /* no pidfds (an old kernel, or out of fds): a short nap, then the caller looks */
        struct timespec nap = {0, (timeout_ms < 2 ? timeout_ms : 2) * 1000000L};
        nanosleep(&nap, NULL);
    }
    for (int i = 0; i < opened; i++) close(pfd[i].fd);
    free(pfd);
}

bool launcher_reap(pid_t pid, int timeout_ms, int *status) {
    int64_t deadline = ddp_now_ms() + timeout_ms;
    for (;;) {
        pid_t r = waitpid(pid, status, WNOHANG);
        if (r == pid) return true;
        if (r < 0 && errno != EINTR) {
            *status = -1;
            return true; /* not our child any more (already reaped) */
        }
        int64_t left = deadline - ddp_now_ms();
        if (left <= 0) return false;
        launcher_wait_exit(&pid, 1, (int)left);
    }
}

int launcher_kill(pid_t pid, int grace_ms) {
    int status = -1;
    if (pid <= 0) return -1;
    if (launcher_reap(pid, 0, &status)) return status;
    kill(pid, SIGTERM);
    if (launcher_reap(pid, grace_ms, &status)) return status;
    kill(pid, SIGKILL);
    if (launcher_reap(pid, 5000, &status)) return status;
    return -1;
}

int launcher_describe_exit(int status, char *buf, size_t cap) {
    if (status == -1) {
        snprintf(buf, cap, "ended (status unknown)");
        return -1;
    }
    if (WIFEXITED(status)) {
        int code = WEXITSTATUS(status);
        if (code == 127)
            snprintf(buf, cap, "exited with status 127 (could the program be started?)");
        else
            snprintf(buf, cap, "exited with status %d", code);
        return code;
    }
    if (WIFSIGNALED(status)) {
        int sig = WTERMSIG(status);
        const char *abbrev = sigabbrev_np(sig);
        snprintf(buf, cap, "was killed by signal %d (SIG%s%s)", sig, abbrev ? abbrev : "?",
                 WCOREDUMP(status) ? ", core dumped" : "");
        return -sig;
    }
    snprintf(buf, cap, "stopped");
    return -1;
}

long long launcher_rss_bytes(pid_t pid) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/statm", (int)pid);
    FILE *f = fopen(path, "re");
    if (!f) return -1;
    long long size = 0, resident = 0;
    int got = fscanf(f, "%lld %lld", &size, &resident);
    fclose(f);
    if (got != 2) return -1;
    return resident * (long long)sysconf(_SC_PAGESIZE);
}

/* ---- ranks and the agent ----------------------------------------------------------- */

int launcher_control_port(int master_port) {
    return (master_port > 0 ? master_port : 29500) + 1;
}

ddp_status launcher_spawn_rank(const launcher_rank_spec *sp, pid_t *pid_out) {
    char rank[16], local[16], world[16], lworld[16], group[16], port[16], timeout[32];
    snprintf(rank, sizeof rank, "%d", sp->rank);
    snprintf(local, sizeof local, "%d", sp->local_rank);
    snprintf(world, sizeof world, "%d", sp->world_size);
    snprintf(lworld, sizeof lworld, "%d", sp->local_world_size);
    snprintf(group, sizeof group, "%d", sp->group_rank);
    snprintf(port, sizeof port, "%d", sp->master_port);
    const launch_options *o = sp->opts;
    snprintf(timeout, sizeof timeout, "%g",
             o->collective_timeout > 0 ? o->collective_timeout : 5.0);
    launcher_env env[] = {
        {"DDPLAB_RANK_WORKER", "1", false},
        {"DDPLAB_CONTROL", sp->control, false},
        {"RANK", rank, false},
        {"LOCAL_RANK", local, false},
        {"WORLD_SIZE", world, false},
        {"LOCAL_WORLD_SIZE", lworld, false},
        {"GROUP_RANK", group, false},
        {"MASTER_ADDR", sp->master_addr, false},
        {"MASTER_PORT", port, false},
        {"DDPLAB_COLLECTIVE_TIMEOUT", timeout, false},
        {"DDPLAB_COLLECTIVE_CHECK", o->collective_check ? "1" : "0", false},
        {"OMP_NUM_THREADS", "1", true},
        {"OPENBLAS_NUM_THREADS", "1", true},
        {"DDPLAB_BACKEND", o->backend ? o->backend : "gloo", false},
        {"DDPLAB_OUTPUT", sp->out_fd >= 0 ? "direct" : "forward", false},
    };
    ddp_status st = launcher_spawn("/proc/self/exe", "ddplab-rank", env,
                                   (int)(sizeof env / sizeof env[0]), sp->out_fd, pid_out);
    if (st != DDP_OK) return DDP_FAIL(st, "rank %d: %s", sp->rank, ddp_last_error());
    return DDP_OK;
}

/* The agent's view of its node: the ranks it started in this world, and how to reach the
 * driver. pids[i] is 0 once rank first + i is reaped; groups[i] stays set until the rank's
 * process group was ended (what a rank started in the background lives on in it). */
typedef struct {
    const launch_options *o;
    const char *control, *master;
    int port, fd, first;
    pid_t *pids, *groups;
} agent;

/* Set by SIGTERM, SIGINT and SIGHUP: the agent ends its ranks and leaves. */
static volatile sig_atomic_t agent_stop_signal;

static void agent_on_signal(int sig) {
    agent_stop_signal = sig;
}

/* Tells the driver how local rank i ended (waitpid status `st`). Cannot fail (a gone
 * driver is noticed by the main loop). */
static void agent_report_exit(agent *a, int i, int st) {
    char msg[48];
    int len = snprintf(msg, sizeof msg, "%d%c%d", a->first + i, 0, st);
    (void)proto_send(a->fd, MSG_RANK_EXIT, msg, (size_t)len);
}

/* Ends every rank this agent started, with everything in their process groups (as the
 * driver does on node 0): SIGTERM to each group, SIGKILL after a grace period, then
 * SIGKILL to each group again for what outlived its rank. Reaps the ranks and reports the
 * exits not reported yet. Cannot fail. */
static void agent_end_ranks(agent *a) {
    int n = a->o->nproc;
    for (int i = 0; i < n; i++)
        if (a->pids[i] > 0) kill(-a->pids[i], SIGTERM);
    for (int i = 0; i < n; i++) {
        if (a->pids[i] <= 0) continue;
        int st = launcher_kill(a->pids[i], 500);
        a->pids[i] = 0;
        agent_report_exit(a, i, st);
    }
    /* Each group's id stays taken while a member lives; with none left the kill finds
     * nothing (see kill_leftovers in driver.c). */
    for (int i = 0; i < n; i++) {
        if (a->groups[i] > 0) kill(-a->groups[i], SIGKILL);
        a->groups[i] = 0;
    }
}

/* Starts this node's ranks (ending any left from an earlier world first). A rank that
 * cannot be started is reported as exited with status 127, so that the driver names it
 * at once instead of waiting for its hello. Cannot fail. */
static void agent_start_ranks(agent *a) {
    const launch_options *o = a->o;
    agent_end_ranks(a);
    for (int i = 0; i < o->nproc; i++) {
        launcher_rank_spec sp = {a->control, a->first + i,
                                 i,          o->nnodes * o->nproc,
                                 o->nproc,   o->node_rank,
                                 a->master,  a->port,
                                 o,          -1};
        if (launcher_spawn_rank(&sp, &a->pids[i]) != DDP_OK) {
            fprintf(stderr, "ddplab agent (node %d): %s\n", o->node_rank, ddp_last_error());
            a->pids[i] = 0;
            agent_report_exit(a, i, 127 << 8);
            continue;
        }
        a->groups[i] = a->pids[i];
    }
}

/* Acts on one frame from the driver; returns false on BYE. */
static bool agent_take_frame(agent *a, proto_frame *f) {
    char *fields[2] = {0};
    switch (f->type) {
    case MSG_BYE:
        return false;
    case MSG_START_RANKS:
        agent_start_ranks(a);
        break;
    case MSG_END_RANKS:
        agent_end_ranks(a);
        (void)proto_send(a->fd, MSG_RANKS_ENDED, NULL, 0);
        break;
    case MSG_SIGNAL_RANK:
        if (proto_split(f->data, f->len, fields, 2) == 2) {
            int i = atoi(fields[0]) - a->first;
            union sigval v = {.sival_int = atoi(fields[1])};
            if (i >= 0 && i < a->o->nproc && a->pids[i] > 0) {
                sigqueue(a->pids[i], SIGINT, v);
                kill(-a->pids[i], SIGINT); /* and what it started, as on node 0 */
            }
        }
        break;
    default:
        break;
    }
    return true;
}

/* Dials the driver, proves the session secret and says which node this is. Returns the
 * connected fd, or -1 after printing why. */
static int agent_connect(const launch_options *o, const char *master, int port) {
    unsigned char key[PROTO_KEY_BYTES];
    int fd = -1;
    char node[16];
    int nlen = snprintf(node, sizeof node, "%d", o->node_rank);
    if (proto_load_secret(key) != DDP_OK ||
        proto_connect_tcp(master, launcher_control_port(port), 60000, &fd) != DDP_OK ||
        proto_auth_client(fd, key, 10000) != DDP_OK ||
        proto_send(fd, MSG_AGENT_HELLO, node, (size_t)nlen) != DDP_OK) {
        fprintf(stderr, "ddplab agent (node %d): %s\n", o->node_rank, ddp_last_error());
        if (fd >= 0) close(fd);
        fd = -1;
    }
    memset(key, 0, sizeof key); /* the ranks derive their own copy */
    return fd;
}

int launcher_agent_main(const launch_options *o) {
    if (!o->master_addr) {
        fprintf(stderr, "ddplab agent: --master-addr is needed on node %d\n", o->node_rank);
        return 2;
    }
    agent a = {.o = o, .master = o->master_addr, .first = o->node_rank * o->nproc};
    a.port = o->master_port > 0 ? o->master_port : 29500;
    char control[300];
    snprintf(control, sizeof control, "tcp:%s:%d", a.master, launcher_control_port(a.port));
    a.control = control;
    a.pids = calloc((size_t)o->nproc, sizeof *a.pids);
    a.groups = calloc((size_t)o->nproc, sizeof *a.groups);
    if (!a.pids || !a.groups) {
        fprintf(stderr, "ddplab agent (node %d): no memory\n", o->node_rank);
        free(a.pids);
        free(a.groups);
        return 2;
    }
    a.fd = agent_connect(o, a.master, a.port);
    /* From here on there are ranks to end first (until now the signals' default action,
     * ending the agent at once, was right). No SA_RESTART: the poll below wakes. */
    struct sigaction sa = {.sa_handler = agent_on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    int status = a.fd < 0 ? 2 : 0;
    proto_reader in;
    proto_reader_init(&in);
    bool done = a.fd < 0;
    while (!done) { /* the driver says when to start and end the ranks (START_RANKS) */
        struct pollfd p = {.fd = a.fd, .events = POLLIN};
        if (poll(&p, 1, 100) > 0) {
            if (proto_reader_fill(&in, a.fd) != DDP_OK) in.eof = true;
            proto_frame f;
            bool got;
            while (!done && proto_reader_next(&in, &f, &got) == DDP_OK && got) {
                done = !agent_take_frame(&a, &f);
                proto_frame_free(&f);
            }
            if (in.eof && !done) {
                fprintf(stderr, "ddplab agent (node %d): the driver went away\n", o->node_rank);
                status = 1;
                done = true;
            }
        }
        if (agent_stop_signal && !done) {
            fprintf(stderr, "ddplab agent (node %d): stopped by signal %d\n", o->node_rank,
                    (int)agent_stop_signal);
            status = 128 + agent_stop_signal;
            done = true;
        }
        for (int i = 0; i < o->nproc; i++) { /* report exits as they happen */
            int st;
            if (a.pids[i] <= 0 || waitpid(a.pids[i], &st, WNOHANG) != a.pids[i]) continue;
            a.pids[i] = 0;
            agent_report_exit(&a, i, st);
        }
    }
    if (a.fd >= 0) agent_end_ranks(&a);
    proto_reader_free(&in);
    free(a.pids);
    free(a.groups);
    if (a.fd >= 0) close(a.fd);
    return status;
}
