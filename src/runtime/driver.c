/* driver.c — the driver's side of the rank processes (see driver.h): it hosts the
 * rendezvous store, starts the ranks through the launcher, accepts their connections on
 * a Unix socket in a private directory (checking with SO_PEERCRED that each peer is one
 * of the children it started), routes chunks to them and collects their output and
 * outcomes in one poll loop. The driver never runs learner code, so the loop stays
 * responsive: Ctrl-C (a byte on a self-pipe) becomes SIGINT to every running rank, and a
 * rank that dies is reported at once while the others are interrupted so that nobody
 * waits for it forever. A local rank's stdout and stderr are a pipe that the driver reads
 * itself, so what a rank printed just before it crashed is never lost; ranks on other
 * nodes (multi-node: started by an agent, see launcher.h) dial a TCP port that first
 * authenticates them with the session secret, and forward their output as frames; that
 * part is driver_nodes.c. */
#include "runtime/driver_internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sodium.h>

#include "base/clock.h"
#include "dist/comm.h"
#include "runtime/launcher.h"

#define START_TIMEOUT_MS 10000
#define START_TIMEOUT_MULTINODE_MS 60000 /* the other nodes are started by hand */
#define TAIL_LINES 5
/* A chunk's output kept per rank for grouping: beyond it the bytes are only streamed (and
 * the rank's tail kept), so that a rank printing in a loop cannot make the driver's memory
 * grow without bound. */
#define OUTPUT_KEEP_BYTES (1u << 20)
#define OUTPUT_CUT_NOTE                                                                            \
    "\n... (output cut: ddplab keeps the first 1 MiB a rank prints in a chunk)\n"
/* The most one drain_output call reads: a rank (or a child it left behind) that prints
 * without pause must not keep the poll loop from Ctrl-C and the other ranks. Larger than
 * a pipe's buffer, so one call still takes everything a rank printed before its outcome. */
#define DRAIN_BUDGET_BYTES (1u << 20)

/* ---- the rendezvous store ------------------------------------------------------------ */

/* Hosts the store at master_addr (port from the options, or a free one). The one place
 * the driver touches src/dist/store.h. */
static ddp_status host_store(driver *d) {
    const char *addr = d->master_addr;
    bool loopback = strncmp(addr, "127.", 4) == 0 || strcmp(addr, "localhost") == 0;
    if (!loopback && !getenv("DDPLAB_SECRET")) {
        /* A store reachable from the network wants a per-session secret; the ranks
         * inherit it through the environment (readable only by this user). */
        unsigned char key[32];
        char hex[65];
        if (sodium_init() < 0) return DDP_FAIL(DDP_ERR_IO, "driver: libsodium failed to start");
        randombytes_buf(key, sizeof key);
        sodium_bin2hex(hex, sizeof hex, key, sizeof key);
        setenv("DDPLAB_SECRET", hex, 1);
        sodium_memzero(key, sizeof key);
    }
    struct in_addr a4;
    struct in6_addr a6;
    bool numeric = inet_pton(AF_INET, addr, &a4) == 1 || inet_pton(AF_INET6, addr, &a6) == 1;
    DDP_CHECK(
        store_server_start(numeric || loopback ? addr : "0.0.0.0", d->opts.master_port, &d->store));
    d->master_port = store_server_port(d->store);
    return DDP_OK;
}

/* ---- output bookkeeping -------------------------------------------------------------- */

/* Keeps the last TAIL_BYTES a rank printed, for the report when it dies. */
static void remember_tail(rank_slot *s, const char *bytes, size_t len) {
    if (len >= TAIL_BYTES) {
        memcpy(s->tail, bytes + len - TAIL_BYTES, TAIL_BYTES);
        s->tail_len = TAIL_BYTES;
        return;
    }
    if (s->tail_len + len > TAIL_BYTES) {
        size_t drop = s->tail_len + len - TAIL_BYTES;
        memmove(s->tail, s->tail + drop, s->tail_len - drop);
        s->tail_len -= drop;
    }
    memcpy(s->tail + s->tail_len, bytes, len);
    s->tail_len += len;
}

void driver_append_tail(const rank_slot *s, char *msg, size_t cap) {
    size_t n = s->tail_len;
    while (n > 0 && s->tail[n - 1] == '\n') n--;
    if (n == 0) return;
    size_t start = n;
    int lines = 0;
    while (start > 0) {
        if (s->tail[start - 1] == '\n' && ++lines == TAIL_LINES) break;
        start--;
    }
    size_t used = strlen(msg);
    snprintf(msg + used, cap - used, "; its last output:\n%.*s", (int)(n - start), s->tail + start);
}

/* Appends to a result's output (kept NUL-terminated) up to OUTPUT_KEEP_BYTES, then the
 * note that it was cut, once; on no memory the bytes are only streamed. */
static void append_output(rank_result *r, const char *bytes, size_t len) {
    if (r->output_len > OUTPUT_KEEP_BYTES) return; /* cut already: only streamed */
    size_t room = OUTPUT_KEEP_BYTES - r->output_len;
    bool cut = len > room;
    size_t take = cut ? room : len, note = cut ? sizeof OUTPUT_CUT_NOTE - 1 : 0;
    char *nb = realloc(r->output, r->output_len + take + note + 1);
    if (!nb) return; /* keep what we have; the bytes were already streamed */
    memcpy(nb + r->output_len, bytes, take);
    memcpy(nb + r->output_len + take, OUTPUT_CUT_NOTE, note);
    r->output_len += take + note;
    nb[r->output_len] = '\0';
    r->output = nb;
}

/* How long a session that is ending waits for ranks to stop at the interrupt before it
 * kills them. */
#define TERMINATE_GRACE_MS 2000

/* What a run collects, passed through the frame and output handlers. */
typedef struct {
    rank_result *results;
    rank_output_fn on_output;
    void *ctx;
    int first_dead;         /* the first rank that died during this run, or -1 */
    bool user_interrupt;    /* Ctrl-C was pressed during this run */
    int presses;            /* how many times */
    int64_t terminate_ms;   /* when this run saw the session end (SIGTERM...), or 0 */
    int64_t last_output_ms; /* when a rank last printed (or the chunk started) */
    bool quiet_told;        /* the quiet report was made for this chunk */
    gather_state gather;    /* c.gather in progress (driver_events.c) */
    int outcomes;           /* outcomes taken so far, for rank_result.order */
} run_ctx;

/* Takes in what rank r printed (local ranks write straight into a pipe we read, so their
 * last words survive a crash): into its tail, and into the run's results and stream when
 * it is running a chunk (rc may be NULL). Reads until the pipe is empty, or
 * DRAIN_BUDGET_BYTES were read (the rest waits for the next poll). */
static void drain_output(rank_slot *s, int r, run_ctx *rc) {
    char buf[65536];
    for (size_t total = 0; s->out_fd >= 0 && total < DRAIN_BUDGET_BYTES;) {
        ssize_t n = read(s->out_fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) { /* all writers gone */
                close(s->out_fd);
                s->out_fd = -1;
            }
            return;
        }
        total += (size_t)n;
        remember_tail(s, buf, (size_t)n);
        if (rc && s->state == SLOT_RUNNING) {
            rc->last_output_ms = ddp_now_ms();
            append_output(&rc->results[r], buf, (size_t)n);
            if (rc->on_output) rc->on_output(r, buf, (size_t)n, rc->ctx);
        }
    }
}

/* Empties the Ctrl-C self-pipe (non-blocking): presses from before now are not for what
 * starts next. Cannot fail. */
static int drain_interrupts(driver *d) {
    char drain[64];
    int presses = 0;
    ssize_t n;
    while ((n = read(d->interrupt_pipe[0], drain, sizeof drain)) > 0) presses += (int)n;
    return presses;
}

/* ---- rank lifetime ------------------------------------------------------------------- */

/* Closes a rank's control connection and output pipe. Cannot fail. */
static void close_slot_fd(rank_slot *s) {
    if (s->fd >= 0) close(s->fd);
    if (s->out_fd >= 0) close(s->out_fd);
    s->fd = s->out_fd = -1;
    proto_reader_free(&s->in);
}

/* Tells the other ranks, through the store ("ddplab/dead/<rank>" = how it ended), that
 * rank s died: a collective or message that waits for it then fails at once, naming it
 * and the cause, instead of waiting for the watchdog. Best effort (the store connection
 * is made on the first death, bounded to 1 s). */
static void publish_death(rank_slot *s) {
    driver *d = s->owner;
    if (!d || !d->store) return;
    if (!d->board && store_connect(d->master_addr, d->master_port, 1.0, &d->board) != DDP_OK) {
        d->board = NULL;
        return;
    }
    char key[48];
    snprintf(key, sizeof key, "ddplab/dead/%d", s->rank);
    (void)store_set(d->board, key, s->death, strlen(s->death));
}

void driver_mark_dead(rank_slot *s) {
    if (s->state == SLOT_DEAD) return;
    drain_output(s, -1, NULL);
    close_slot_fd(s);
    s->state = SLOT_DEAD;
    if (s->remote && !s->reaped && s->owner) {
        /* its agent may have said how it ended, or have gone away itself: take in what
         * the agents sent first */
        driver_nodes_poll(s->owner, 0);
    }
    if (s->remote && !s->reaped) {
        int k = s->owner ? s->rank / s->owner->nproc : -1;
        if (k > 0 && !driver_nodes_agent_in(s->owner, k))
            snprintf(s->death, sizeof s->death,
                     "lost with node %d's agent (ddplab --node-rank %d), which has gone away "
                     "(exit status unknown)",
                     k, k);
        else
            snprintf(s->death, sizeof s->death, "lost its connection (exit status unknown)");
        return;
    }
    if (!s->reaped) {
        int st;
        if (!launcher_reap(s->pid, 2000, &st)) st = launcher_kill(s->pid, 200);
        s->wait_status = st;
        s->reaped = true;
    }
    launcher_describe_exit(s->wait_status, s->death, sizeof s->death);
    if (s->killed_by_interrupt) {
        size_t n = strlen(s->death);
        snprintf(s->death + n, sizeof s->death - n, "; the third Ctrl-C killed it");
    }
    publish_death(s);
}

int driver_exit_status(const rank_slot *s) {
    if (!s->reaped) return RANK_EXIT_UNKNOWN; /* a remote rank whose agent said nothing */
    char scratch[128];
    return launcher_describe_exit(s->wait_status, scratch, sizeof scratch);
}

void driver_check_exits(driver *d) {
    for (int r = 0; r < d->world; r++) {
        rank_slot *s = &d->ranks[r];
        if (s->state == SLOT_DEAD || s->reaped || s->remote) continue;
        int st;
        if (waitpid(s->pid, &st, WNOHANG) == s->pid) {
            s->wait_status = st;
            s->reaped = true;
        }
    }
}

/* Starts local rank r with a pipe for its output that only we read. */
static ddp_status spawn_rank(driver *d, int r) {
    int out[2];
    if (pipe2(out, O_CLOEXEC) != 0)
        return DDP_FAIL(DDP_ERR_IO, "rank %d: cannot create its output pipe (%s)", r,
                        strerror(errno));
    launcher_rank_spec sp = {d->socket_path, r,        r,     d->world, d->nproc, 0, d->master_addr,
                             d->master_port, &d->opts, out[1]};
    ddp_status st = launcher_spawn_rank(&sp, &d->ranks[r].pid);
    close(out[1]);
    fcntl(out[0], F_SETFL, O_NONBLOCK);
    d->ranks[r].out_fd = out[0];
    DDP_CHECK(st);
    d->ranks[r].state = SLOT_STARTING;
    return DDP_OK;
}

/* Accepts one connection and hands it to the rank whose pid it comes from; strangers
 * (any process that is not one of our children) are dropped and logged. */
static void accept_one(driver *d) {
    int fd = accept4(d->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) return;
    struct ucred cred;
    socklen_t len = sizeof cred;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0) {
        for (int r = 0; r < d->world; r++) {
            rank_slot *s = &d->ranks[r];
            if (s->pid == cred.pid && s->state == SLOT_STARTING && s->fd < 0) {
                s->fd = fd;
                proto_reader_init(&s->in);
                return;
            }
        }
        fprintf(stderr, "ddplab: dropped a control connection from pid %d (not a rank)\n",
                (int)cred.pid);
    }
    close(fd);
}

/* Applies one frame from rank r outside a run (start-up, completion, idle output). */
static void take_side_frame(rank_slot *s, proto_frame *f) {
    switch (f->type) {
    case MSG_HELLO: {
        char *fields[4] = {0};
        if (proto_split(f->data, f->len, fields, 4) == 4) {
            snprintf(s->host, sizeof s->host, "%s", fields[2]);
            snprintf(s->device, sizeof s->device, "%s", fields[3]);
        }
        if (s->state == SLOT_STARTING) s->state = SLOT_IDLE;
        break;
    }
    case MSG_OUTPUT:
        remember_tail(s, f->data, f->len);
        break;
    case MSG_DEVICE: {
        char *fields[3] = {0};
        if (proto_split(f->data, f->len, fields, 3) == 3) {
            snprintf(s->device, sizeof s->device, "%s", fields[0]);
            s->gpu_allocated = strtoll(fields[1], NULL, 10);
            s->gpu_reserved = strtoll(fields[2], NULL, 10);
            s->has_gpu = true;
        }
        break;
    }
    case MSG_STATE:
        snprintf(s->activity, sizeof s->activity, "%s", f->data);
        if (strncmp(f->data, "in ", 3) == 0)
            snprintf(s->last_collective, sizeof s->last_collective, "%s", f->data + 3);
        break;
    case MSG_COMPLETIONS:
        free(s->completions);
        s->completions = f->data;
        s->completions_len = f->len;
        s->completions_ready = true;
        f->data = NULL;
        break;
    case MSG_ERROR:
        if (s->state == SLOT_STARTING) {
            free(s->start_error);
            s->start_error = f->data;
            f->data = NULL;
        }
        break;
    default:
        break;
    }
}

bool driver_pump_rank(driver *d, int r, frame_fn on_frame, void *ctx) {
    rank_slot *s = &d->ranks[r];
    if (proto_reader_fill(&s->in, s->fd) != DDP_OK) return false;
    for (;;) {
        proto_frame f;
        bool got;
        if (proto_reader_next(&s->in, &f, &got) != DDP_OK) {
            fprintf(stderr, "ddplab: rank %d: %s\n", r, ddp_last_error());
            return false;
        }
        if (!got) break;
        bool keep = on_frame ? on_frame(d, r, &f, ctx) : (take_side_frame(s, &f), true);
        proto_frame_free(&f);
        if (!keep) return false;
    }
    return !s->in.eof;
}

/* Sends `sig` to every started rank that is not reaped yet. */
static void signal_unreaped(driver *d, int sig) {
    for (int r = 0; r < d->world; r++)
        if (!d->ranks[r].remote && d->ranks[r].pid > 0 && !d->ranks[r].reaped)
            kill(d->ranks[r].pid, sig);
}

/* Ends what the ranks left behind (`os.execute("sleep 100 &")`): each local rank leads
 * its own process group (launcher.c), so its children are in it unless they moved out
 * themselves. While a member lives the group's id stays taken; with none left the kill
 * finds nothing (only pids wrapping around in between could let it reach a new group of
 * that id). Cannot fail. */
static void kill_leftovers(driver *d) {
    for (int r = 0; r < d->world; r++)
        if (!d->ranks[r].remote && d->ranks[r].pid > 0) kill(-d->ranks[r].pid, SIGKILL);
}

/* Reaps what ended before `deadline`; returns how many are still running. Sleeps on the
 * children's exits (launcher_wait_exit), not in fixed steps. */
static int reap_until(driver *d, int64_t deadline) {
    pid_t *running = calloc((size_t)d->world + 1, sizeof *running); /* NULL: wait on one */
    for (;;) {
        int left_running = 0;
        pid_t first = 0;
        for (int r = 0; r < d->world; r++) {
            rank_slot *s = &d->ranks[r];
            if (s->remote || s->pid <= 0 || s->reaped) continue;
            int st;
            if (launcher_reap(s->pid, 0, &st)) {
                s->wait_status = st;
                s->reaped = true;
                continue;
            }
            if (running) running[left_running] = s->pid;
            if (!first) first = s->pid;
            left_running++;
        }
        int64_t left_ms = deadline - ddp_now_ms();
        if (left_running == 0 || left_ms <= 0) {
            free(running);
            return left_running;
        }
        launcher_wait_exit(running ? running : &first, running ? left_running : 1, (int)left_ms);
    }
}

/* Ends every rank that was started (goodbye, then SIGTERM, then SIGKILL, each after a
 * short grace period) and reaps it; closes the socket and the store. The other nodes'
 * agents end theirs: with keep_nodes (a restart) they stay connected for the next world,
 * else they are told goodbye. */
static void stop_world(driver *d, bool keep_nodes) {
    if (!d->ranks) return;
    for (int r = 0; r < d->world; r++) {
        rank_slot *s = &d->ranks[r];
        if (s->state == SLOT_IDLE && s->fd >= 0) (void)proto_send(s->fd, MSG_BYE, NULL, 0);
    }
    if (keep_nodes)
        driver_nodes_end_ranks(d);
    else
        driver_nodes_close(d);
    if (reap_until(d, ddp_now_ms() + 1000) > 0) {
        signal_unreaped(d, SIGTERM);
        if (reap_until(d, ddp_now_ms() + 500) > 0) {
            signal_unreaped(d, SIGKILL);
            reap_until(d, ddp_now_ms() + 5000);
        }
    }
    kill_leftovers(d);
    for (int r = 0; r < d->world; r++) {
        rank_slot *s = &d->ranks[r];
        close_slot_fd(s);
        free(s->completions);
        free(s->start_error);
    }
    free(d->ranks);
    d->ranks = NULL;
    if (d->listen_fd >= 0) close(d->listen_fd);
    d->listen_fd = -1;
    if (d->socket_path[0]) unlink(d->socket_path);
    if (d->dir[0]) rmdir(d->dir);
    d->socket_path[0] = d->dir[0] = '\0';
    store_close(d->board);
    d->board = NULL;
    store_server_stop(d->store);
    d->store = NULL;
}

/* Opens the private directory and the listening Unix socket. */
static ddp_status open_control_socket(driver *d) {
    DDP_CHECK(launcher_private_dir(d->dir, sizeof d->dir));
    snprintf(d->socket_path, sizeof d->socket_path, "%s/control", d->dir);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(d->socket_path) >= sizeof sa.sun_path)
        return DDP_FAIL(DDP_ERR_IO, "driver: the socket path %s is too long", d->socket_path);
    strcpy(sa.sun_path, d->socket_path);
    d->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (d->listen_fd < 0 || bind(d->listen_fd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
        listen(d->listen_fd, 128) != 0)
        return DDP_FAIL(DDP_ERR_IO, "driver: cannot listen on %s (%s)", d->socket_path,
                        strerror(errno));
    chmod(d->socket_path, 0600);
    return DDP_OK;
}

/* Waits (bounded) until every rank said hello; names the first rank that failed. */
static ddp_status wait_for_hellos(driver *d) {
    int timeout_ms = d->opts.nnodes > 1 ? START_TIMEOUT_MULTINODE_MS : START_TIMEOUT_MS;
    int64_t deadline = ddp_now_ms() + timeout_ms;
    struct pollfd *p = calloc((size_t)d->world + 3, sizeof *p);
    if (!p) return DDP_FAIL(DDP_ERR_NOMEM, "driver: no memory");
    ddp_status result = DDP_OK;
    for (;;) {
        int ready = 0;
        for (int r = 0; r < d->world; r++) ready += d->ranks[r].state == SLOT_IDLE;
        if (ready == d->world) break;
        int64_t left = deadline - ddp_now_ms();
        if (left <= 0) {
            for (int r = 0; r < d->world; r++) {
                if (d->ranks[r].state == SLOT_IDLE) continue;
                int k = r / d->nproc;
                if (d->ranks[r].remote && !driver_nodes_agent_in(d, k)) {
                    char who[48];
                    if (d->nproc == 1)
                        snprintf(who, sizeof who, "rank %d", r);
                    else
                        snprintf(who, sizeof who, "ranks %d-%d", k * d->nproc,
                                 (k + 1) * d->nproc - 1);
                    result = DDP_FAIL(DDP_ERR_TIMEOUT,
                                      "node %d's agent (ddplab --node-rank %d) did not connect "
                                      "within %d s, so %s cannot start (start it on that node, "
                                      "with the session's options)",
                                      k, k, timeout_ms / 1000, who);
                } else {
                    result = DDP_FAIL(DDP_ERR_TIMEOUT,
                                      "rank %d did not start within %d s "
                                      "(it never %s)",
                                      r, timeout_ms / 1000,
                                      d->ranks[r].fd < 0 ? "connected" : "said hello");
                }
                break;
            }
            break;
        }
        int n = 0;
        p[n++] = (struct pollfd){.fd = d->listen_fd, .events = POLLIN};
        p[n++] = (struct pollfd){.fd = d->interrupt_pipe[0], .events = POLLIN};
        for (int r = 0; r < d->world; r++)
            p[n++] = (struct pollfd){.fd = d->ranks[r].fd, .events = POLLIN};
        p[n++] = (struct pollfd){.fd = d->tcp_fd, .events = POLLIN};
        if (poll(p, (nfds_t)n, left < 50 ? (int)left : 50) < 0 && errno != EINTR) {
            result = DDP_FAIL(DDP_ERR_IO, "driver: poll failed (%s)", strerror(errno));
            break;
        }
        if (p[0].revents & POLLIN) accept_one(d);
        if (p[n - 1].revents & POLLIN) driver_nodes_accept(d);
        driver_nodes_poll(d, 0);
        if ((result = driver_nodes_check(d)) != DDP_OK) break; /* its ranks never come */
        if (p[1].revents & POLLIN) {
            result = DDP_FAIL(DDP_ERR_INTERRUPTED, "interrupted while the ranks were starting");
            break;
        }
        driver_check_exits(d);
        for (int r = 0; r < d->world && result == DDP_OK; r++) {
            rank_slot *s = &d->ranks[r];
            bool open = true;
            /* A rank that exited may have left its last frames (an ERROR) unread. */
            if (s->fd >= 0 && (s->reaped || (p[2 + r].revents & (POLLIN | POLLHUP | POLLERR))))
                open = driver_pump_rank(d, r, NULL, NULL);
            if (s->start_error) {
                result = DDP_FAIL(DDP_ERR_STATE, "rank %d could not start: %s", r, s->start_error);
            } else if (!open || (s->reaped && s->state == SLOT_STARTING)) {
                driver_mark_dead(s);
                char msg[TAIL_BYTES + 256];
                snprintf(msg, sizeof msg, "%s", s->death);
                driver_append_tail(s, msg, sizeof msg);
                result = DDP_FAIL(DDP_ERR_STATE, "rank %d %s before it was ready", r, msg);
            }
        }
        if (result != DDP_OK) break;
    }
    free(p);
    return result;
}

/* Hosts the store, opens the socket, starts every rank and waits for them. On failure
 * nothing is left running and the message says why. */
static ddp_status start_world(driver *d) {
    d->ranks = calloc((size_t)d->world, sizeof *d->ranks);
    if (!d->ranks) return DDP_FAIL(DDP_ERR_NOMEM, "driver: no memory for %d ranks", d->world);
    for (int r = 0; r < d->world; r++) {
        d->ranks[r].owner = d;
        d->ranks[r].rank = r;
        d->ranks[r].fd = d->ranks[r].out_fd = -1;
        d->ranks[r].remote = r >= d->nproc;
        d->ranks[r].state = SLOT_STARTING;
    }
    ddp_status s = open_control_socket(d);
    if (s == DDP_OK) s = host_store(d);
    if (s == DDP_OK && d->opts.nnodes > 1) s = driver_nodes_listen(d);
    for (int r = 0; r < d->nproc && s == DDP_OK; r++) s = spawn_rank(d, r);
    if (s == DDP_OK) s = wait_for_hellos(d);
    if (s == DDP_OK) driver_nodes_stop_listening(d); /* everyone is in */
    if (s != DDP_OK) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", ddp_last_error());
        stop_world(d, true); /* the agents stay for a :restart (driver_start ends them) */
        return DDP_FAIL(s, "%s", msg);
    }
    return DDP_OK;
}

ddp_status driver_start(const launch_options *opts, driver **out) {
    *out = NULL;
    int nnodes = opts->nnodes > 1 ? opts->nnodes : 1;
    if (opts->nproc < 1 || opts->nproc > 1024 || nnodes > 4096)
        return DDP_FAIL(DDP_ERR_ARG,
                        "driver: %d ranks on %d nodes asked for; use 1 to 1024 "
                        "ranks per node",
                        opts->nproc, nnodes);
    if (nnodes > 1 && opts->node_rank != 0)
        return DDP_FAIL(DDP_ERR_UNSUPPORTED,
                        "node %d of a multi-node session runs the agent "
                        "(launcher_agent_main), not a driver",
                        opts->node_rank);
    comm_backend backend;
    if (!comm_backend_parse(opts->backend, &backend))
        return DDP_FAIL(DDP_ERR_ARG, "driver: unknown backend '%s' (use gloo or nccl)",
                        opts->backend);
    driver *d = calloc(1, sizeof *d);
    if (!d) return DDP_FAIL(DDP_ERR_NOMEM, "driver: no memory");
    d->opts = *opts;
    d->opts.nnodes = nnodes;
    d->nproc = opts->nproc;
    d->world = opts->nproc * nnodes;
    d->listen_fd = d->tcp_fd = -1;
    d->backend = opts->backend ? strdup(opts->backend) : NULL;
    d->master_addr = strdup(opts->master_addr ? opts->master_addr : "127.0.0.1");
    d->opts.backend = d->backend;
    d->opts.master_addr = d->master_addr;
    /* The other nodes must know where to dial: torchrun's default port when none given. */
    if (nnodes > 1 && d->opts.master_port == 0) d->opts.master_port = 29500;
    ddp_status s = DDP_OK;
    if (!d->master_addr || pipe2(d->interrupt_pipe, O_CLOEXEC | O_NONBLOCK) != 0) {
        free(d->backend);
        free(d->master_addr);
        free(d);
        return DDP_FAIL(DDP_ERR_IO, "driver: cannot set up (%s)", strerror(errno));
    }
    if (nnodes > 1) s = proto_load_secret(d->key);
    if (s == DDP_OK) {
        drain_interrupts(d);
        s = start_world(d);
    }
    if (s != DDP_OK) {
        driver_stop(d); /* start_world left no ranks: this ends the agents and frees d */
        return s;
    }
    *out = d;
    return DDP_OK;
}

void driver_stop(driver *d) {
    if (!d) return;
    stop_world(d, false);
    driver_nodes_close(d); /* when a failed :restart left no ranks, stop_world did nothing */
    close(d->interrupt_pipe[0]);
    close(d->interrupt_pipe[1]);
    free(d->backend);
    free(d->master_addr);
    free(d);
}

int driver_world_size(const driver *d) {
    return d ? d->world : 0;
}

ddp_status driver_restart(driver *d) {
    /* An agent that went away can be started again by hand: the new world waits for it. */
    driver_nodes_poll(d, 0);
    /* a Ctrl-C from before is not for this restart; one from now on stops its start */
    drain_interrupts(d);
    (void)driver_nodes_expect_again(d, START_TIMEOUT_MULTINODE_MS / 1000);
    stop_world(d, true);
    return start_world(d);
}

void driver_interrupt(driver *d) {
    if (!d) return;
    int saved = errno;
    ssize_t n = write(d->interrupt_pipe[1], "i", 1);
    (void)n;
    errno = saved;
}

void driver_terminate(driver *d) {
    if (!d) return;
    d->terminating = 1;
    driver_interrupt(d);
}

/* ---- running chunks --------------------------------------------------------------------- */

/* One frame from a rank during a run. Returns false if the channel must be dropped. */
static bool take_run_frame(driver *d, int r, proto_frame *f, void *arg) {
    run_ctx *rc = arg;
    rank_slot *s = &d->ranks[r];
    rank_result *res = &rc->results[r];
    switch (f->type) {
    case MSG_OUTPUT:
        remember_tail(s, f->data, f->len);
        if (s->state != SLOT_RUNNING) break; /* late output of a rank that is not running */
        rc->last_output_ms = ddp_now_ms();
        append_output(res, f->data, f->len);
        if (rc->on_output) rc->on_output(r, f->data, f->len, rc->ctx);
        break;
    case MSG_DONE:
    case MSG_ERROR:
    case MSG_INTERRUPTED:
        if (s->state != SLOT_RUNNING) break;
        drain_output(s, r, rc); /* every byte printed before the outcome, first */
        res->outcome = f->type == MSG_DONE    ? RANK_DONE
                       : f->type == MSG_ERROR ? RANK_ERROR
                                              : RANK_INTERRUPTED;
        if (res->order == 0) res->order = ++rc->outcomes; /* else its "ended" event set it */
        if (f->type != MSG_DONE) {
            res->error = f->data;
            f->data = NULL;
        }
        s->state = SLOT_IDLE;
        s->activity[0] = '\0';
        break;
    case MSG_EVENT:
        if (s->state == SLOT_RUNNING) driver_take_event(d, r, f, res, &rc->outcomes);
        break;
    case MSG_GATHER:
        if (s->state == SLOT_RUNNING) driver_gather_take(&rc->gather, r, f);
        break;
    default:
        take_side_frame(s, f);
        break;
    }
    return true;
}

/* SIGINT carrying the chunk id, so that the rank knows which chunk it is meant for. */
static void interrupt_rank(driver *d, int r) {
    if (d->ranks[r].remote) { /* its agent signals it */
        driver_nodes_signal_rank(d, r);
        return;
    }
    union sigval v = {.sival_int = d->chunk_id};
    sigqueue(d->ranks[r].pid, SIGINT, v);
    /* And the programs it started (os.execute, io.popen), as a terminal's Ctrl-C reaches
     * its whole foreground group: system() ignores SIGINT while it waits, so the rank
     * alone would not stop before its command ends. The rank takes this plain SIGINT as
     * meant for its current chunk, the same one. */
    if (!d->ranks[r].reaped) kill(-d->ranks[r].pid, SIGINT);
}

/* Records rank r's death in its result (if it was part of this run) and asks the other
 * running ranks to stop, so that a collective waiting for the dead rank ends. A rank
 * that ended with status 0 (os.exit(0), os.exit(true)) finished, as a torchrun worker
 * that returns 0 does: the others go on (a collective that waits for it fails on its
 * own, naming it). */
static void report_death(driver *d, int r, rank_result *results, run_ctx *rc) {
    rank_slot *s = &d->ranks[r];
    bool was_running = s->state == SLOT_RUNNING;
    /* its agent says how it ended, unless the agent is gone too (then nobody will) */
    for (int64_t until = ddp_now_ms() + 1000;
         s->remote && !s->reaped && ddp_now_ms() < until && driver_nodes_agent_in(d, r / d->nproc);)
        driver_nodes_poll(d, 50);
    if (was_running && !s->remote && !s->reaped) {
        /* Let it finish exiting (driver_mark_dead would wait as long), so that everything
         * it printed is in its pipe: its last words belong to this chunk's output. */
        int st;
        if (launcher_reap(s->pid, 2000, &st)) {
            s->wait_status = st;
            s->reaped = true;
        }
    }
    if (was_running) drain_output(s, r, rc);
    driver_mark_dead(s);
    if (!was_running) return; /* driver_check_idle reports it */
    driver_death_result(s, r, &results[r]);
    if (results[r].order == 0) results[r].order = ++rc->outcomes;
    if (s->reaped && driver_exit_status(s) == 0) return;
    if (rc->first_dead < 0) rc->first_dead = r;
    for (int o = 0; o < d->world; o++)
        if (d->ranks[o].state == SLOT_RUNNING) interrupt_rank(d, o);
}

/* The payload of a RUN / RUN_FILE frame: "chunk id\0targets\0" (targets: one '1' or '0'
 * per global rank, so that every rank knows who else runs this chunk), then `body`.
 * Returns a malloc'd payload and its length in *len, or NULL when out of memory. */
static char *run_payload(const driver *d, const bool *targets, const char *body, size_t body_len,
                         size_t *len) {
    char id[16];
    int idlen = snprintf(id, sizeof id, "%d", d->chunk_id) + 1;
    size_t n = (size_t)idlen + (size_t)d->world + 1 + body_len;
    char *payload = malloc(n);
    if (!payload) return NULL;
    memcpy(payload, id, (size_t)idlen);
    for (int r = 0; r < d->world; r++) payload[idlen + r] = !targets || targets[r] ? '1' : '0';
    payload[(size_t)idlen + (size_t)d->world] = '\0';
    memcpy(payload + n - body_len, body, body_len);
    *len = n;
    return payload;
}

/* Calls the quiet report once the chunk has gone quiet_after_s without output. */
static void maybe_report_quiet(driver *d, run_ctx *rc) {
    if (!d->quiet_fn || rc->quiet_told ||
        ddp_now_ms() - rc->last_output_ms < (int64_t)(d->quiet_after_s * 1000))
        return;
    rc->quiet_told = true;
    driver_quiet_report(d, rc->results);
}

/* Sends one RUN / RUN_FILE frame (body: what follows the chunk id and the targets) to
 * the targets and collects every outcome. */
static ddp_status run_frame(driver *d, msg_type type, const char *body, size_t body_len,
                            const bool *targets, rank_output_fn on_output, void *ctx,
                            rank_result *results) {
    if (!d->ranks)
        return DDP_FAIL(DDP_ERR_STATE, "driver: the ranks are not running "
                                       "(:restart starts them)");
    for (int r = 0; r < d->world; r++)
        results[r] = (rank_result){.rank = r, .outcome = RANK_SKIPPED};
    if (body_len > PROTO_MAX_PAYLOAD - 32 - (size_t)d->world) /* id and targets come first */
        return DDP_FAIL(DDP_ERR_ARG,
                        "this chunk is %zu MiB, and a chunk sent to the ranks can be at most "
                        "%u MiB: keep large data in a file and read it there (io.open, "
                        "torch.load)",
                        body_len >> 20, PROTO_MAX_PAYLOAD >> 20);
    d->chunk_id++;
    size_t len = 0;
    char *payload = run_payload(d, targets, body, body_len, &len);
    if (!payload)
        return DDP_FAIL(DDP_ERR_NOMEM, "driver: no memory for a chunk of %zu bytes", body_len);
    drain_interrupts(d); /* a Ctrl-C from before this chunk is not for it */
    driver_check_exits(d);
    run_ctx rc = {.results = results,
                  .on_output = on_output,
                  .ctx = ctx,
                  .first_dead = -1,
                  .last_output_ms = ddp_now_ms()};
    driver_gather_init(&rc.gather, d->world);
    for (int r = 0; r < d->world; r++) {
        rank_slot *s = &d->ranks[r];
        if (targets && !targets[r]) continue;
        if (s->state == SLOT_IDLE && s->reaped) driver_mark_dead(s);
        if (s->state == SLOT_DEAD) {
            char msg[256];
            results[r].outcome = RANK_DIED;
            results[r].exit_status = driver_exit_status(s);
            snprintf(msg, sizeof msg,
                     "rank %d is not running (it %s); :restart starts the "
                     "ranks again",
                     r, s->death);
            results[r].error = strdup(msg);
            s->death_told = true;
            continue;
        }
        drain_output(s, r, NULL); /* what it printed while idle is not this chunk's */
        s->state = SLOT_RUNNING;
        s->activity[0] = '\0';
        if (proto_send(s->fd, type, payload, len) != DDP_OK) report_death(d, r, results, &rc);
    }
    free(payload);
    struct pollfd *p = calloc(2 * (size_t)d->world + 2, sizeof *p);
    int *who = calloc(2 * (size_t)d->world + 2, sizeof *who); /* r, or -1 - r for output */
    if (!p || !who) {
        free(p);
        free(who);
        driver_gather_free(&rc.gather, d->world);
        return DDP_FAIL(DDP_ERR_NOMEM, "driver: no memory");
    }
    for (;;) {
        int n = 0, running = 0;
        p[n++] = (struct pollfd){.fd = d->interrupt_pipe[0], .events = POLLIN};
        for (int r = 0; r < d->world; r++) {
            if (d->ranks[r].state == SLOT_RUNNING) running++;
            if (d->ranks[r].state == SLOT_DEAD) continue;
            if (d->ranks[r].out_fd >= 0) {
                who[n] = -1 - r;
                p[n++] = (struct pollfd){.fd = d->ranks[r].out_fd, .events = POLLIN};
            }
            if (d->ranks[r].fd < 0) continue;
            who[n] = r;
            p[n++] = (struct pollfd){.fd = d->ranks[r].fd, .events = POLLIN};
        }
        if (running == 0) break;
        int input_at = -1; /* the input hook's fd, polled last */
        if (d->input_fn && d->input_fd >= 0) {
            input_at = n;
            who[n] = INT32_MIN;
            p[n++] = (struct pollfd){.fd = d->input_fd, .events = POLLIN};
        }
        if (poll(p, (nfds_t)n, 100) < 0 && errno != EINTR) {
            free(p);
            free(who);
            return DDP_FAIL(DDP_ERR_IO, "driver: poll failed (%s)", strerror(errno));
        }
        /* a session that is ending stops every chunk, even one that started after */
        if ((p[0].revents & POLLIN) || (d->terminating && !rc.user_interrupt)) {
            rc.presses += drain_interrupts(d);
            rc.user_interrupt = true;
            /* The first Ctrl-C interrupts (lua.c's hook); the second makes it one that
             * pcall cannot keep (the rank raises it at every instruction); a rank still
             * running at the third is stuck in C code (a read that never ends) and is
             * killed, as a terminal's repeated Ctrl-C would end a plain lua. */
            for (int r = 0; r < d->world; r++) {
                if (d->ranks[r].state != SLOT_RUNNING) continue;
                if (rc.presses >= 3 && !d->ranks[r].remote) {
                    kill(-d->ranks[r].pid, SIGKILL);
                    kill(d->ranks[r].pid, SIGKILL);
                    d->ranks[r].killed_by_interrupt = true;
                } else {
                    interrupt_rank(d, r);
                }
            }
        }
        if (input_at >= 0 && (p[input_at].revents & (POLLIN | POLLHUP))) d->input_fn(d->input_ctx);
        /* A session asked to end (SIGTERM, SIGHUP) does, even when a rank stuck in C does not
         * stop at the interrupt: after a grace of 2 s its ranks are killed. */
        if (d->terminating && rc.terminate_ms == 0) rc.terminate_ms = ddp_now_ms();
        if (rc.terminate_ms && ddp_now_ms() - rc.terminate_ms > TERMINATE_GRACE_MS)
            for (int r = 0; r < d->world; r++)
                if (d->ranks[r].state == SLOT_RUNNING && !d->ranks[r].remote) {
                    kill(-d->ranks[r].pid, SIGKILL);
                    kill(d->ranks[r].pid, SIGKILL);
                }
        for (int i = 1; i < n; i++) {
            int r = who[i];
            if (i == input_at || !(p[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            if (r < 0)
                drain_output(&d->ranks[-1 - r], -1 - r, &rc);
            else if (d->ranks[r].state != SLOT_DEAD && !driver_pump_rank(d, r, take_run_frame, &rc))
                report_death(d, r, results, &rc);
        }
        /* A rank can die while something else still holds its socket: check pids too. */
        driver_check_exits(d);
        driver_nodes_poll(d, 0);
        for (int r = 0; r < d->world; r++)
            if (d->ranks[r].state == SLOT_RUNNING && d->ranks[r].reaped) {
                if (d->ranks[r].fd >= 0) (void)driver_pump_rank(d, r, take_run_frame, &rc);
                if (d->ranks[r].state == SLOT_RUNNING) report_death(d, r, results, &rc);
            }
        driver_gather_answer(d, &rc.gather);
        maybe_report_quiet(d, &rc);
    }
    free(p);
    free(who);
    driver_gather_free(&rc.gather, d->world);
    /* Ranks we stopped because another died: say so, not "interrupted!". */
    if (rc.first_dead >= 0 && !rc.user_interrupt)
        for (int r = 0; r < d->world; r++) {
            if (results[r].outcome != RANK_INTERRUPTED) continue;
            char msg[256];
            snprintf(msg, sizeof msg, "stopped because rank %d %s", rc.first_dead,
                     d->ranks[rc.first_dead].death);
            free(results[r].error);
            results[r].error = strdup(msg);
        }
    return DDP_OK;
}

ddp_status driver_run(driver *d, const char *chunk, size_t len, const char *chunkname,
                      const bool *targets, rank_output_fn on_output, void *ctx,
                      rank_result *results) {
    const char *name = chunkname ? chunkname : "=input";
    size_t nlen = strlen(name) + 1;
    char *body = malloc(nlen + len); /* "chunkname\0chunk bytes" */
    if (!body) return DDP_FAIL(DDP_ERR_NOMEM, "driver: no memory for a chunk of %zu bytes", len);
    memcpy(body, name, nlen);
    memcpy(body + nlen, chunk, len);
    ddp_status s = run_frame(d, MSG_RUN, body, nlen + len, targets, on_output, ctx, results);
    free(body);
    return s;
}

ddp_status driver_run_file(driver *d, const char *path, int argc, char **argv,
                           rank_output_fn on_output, void *ctx, rank_result *results) {
    size_t len = strlen(path) + 1; /* "path\0arg1\0arg2..." */
    for (int i = 0; i < argc; i++) len += strlen(argv[i]) + 1;
    char *body = malloc(len);
    if (!body) return DDP_FAIL(DDP_ERR_NOMEM, "driver: no memory");
    char *at = stpcpy(body, path) + 1;
    for (int i = 0; i < argc; i++) at = stpcpy(at, argv[i]) + 1;
    /* The last NUL is implied by the frame (received payloads are NUL-terminated). */
    ddp_status s = run_frame(d, MSG_RUN_FILE, body, len - 1, NULL, on_output, ctx, results);
    free(body);
    return s;
}

void rank_results_free(rank_result *results, int n) {
    if (!results) return;
    for (int i = 0; i < n; i++) {
        free(results[i].output);
        free(results[i].error);
        free(results[i].verdict_message);
        results[i].verdict_message = NULL;
        results[i].has_verdict = false;
        results[i].output = results[i].error = NULL;
        results[i].output_len = 0;
    }
}

void driver_drain_idle_output(rank_slot *s) {
    drain_output(s, -1, NULL);
}
