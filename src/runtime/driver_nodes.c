/* driver_nodes.c — the driver's side of a multi-node session (see launcher.h for the
 * agent): an authenticated TCP port that the agents of the other nodes and the ranks they
 * start dial, the agents' reports of how their ranks exited, and interrupts relayed to
 * remote ranks through their agent. Everything a remote rank prints arrives as frames on
 * its control connection, which driver.c reads like a local rank's. The agents stay
 * connected for the whole session: each world (start-up, every :restart) begins with
 * START_RANKS to each agent and ends with END_RANKS (a restart) or BYE (the end), and the
 * port is open only while a world's ranks are dialling in. */
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "runtime/driver_internal.h"
#include "runtime/launcher.h"

/* Closes agent k's connection; it stays `joined`, so driver_nodes_check names it as gone.
 * Cannot fail. */
static void drop_agent(driver *d, int k) {
    if (d->agents[k].fd >= 0) close(d->agents[k].fd);
    d->agents[k].fd = -1;
    proto_reader_free(&d->agents[k].in);
}

/* Reads what agent k sent: RANK_EXIT frames say how its ranks ended. Drops a gone agent. */
static void pump_agent(driver *d, int k) {
    proto_reader *in = &d->agents[k].in;
    if (proto_reader_fill(in, d->agents[k].fd) != DDP_OK) in->eof = true;
    proto_frame f;
    bool got;
    while (proto_reader_next(in, &f, &got) == DDP_OK && got) {
        char *fields[2] = {0};
        if (f.type == MSG_RANKS_ENDED && d->agents[k].ending > 0) d->agents[k].ending--;
        if (f.type == MSG_RANK_EXIT && d->agents[k].ending == 0 && d->ranks &&
            proto_split(f.data, f.len, fields, 2) == 2) {
            int r = atoi(fields[0]);
            if (r >= 0 && r < d->world && d->ranks[r].remote && r / d->nproc == k) {
                d->ranks[r].wait_status = atoi(fields[1]);
                d->ranks[r].reaped = true;
            }
        }
        proto_frame_free(&f);
    }
    if (in->eof) drop_agent(d, k);
}

void driver_nodes_poll(driver *d, int wait_ms) {
    if (!d->agents) return;
    for (int k = 1; k < d->opts.nnodes; k++) {
        if (d->agents[k].fd < 0) continue;
        struct pollfd p = {.fd = d->agents[k].fd, .events = POLLIN};
        if (poll(&p, 1, wait_ms) > 0) pump_agent(d, k);
        wait_ms = 0;
    }
}

void driver_nodes_accept(driver *d) {
    struct sockaddr_storage sa;
    socklen_t sl = sizeof sa;
    int fd = accept4(d->tcp_fd, (struct sockaddr *)&sa, &sl, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) return;
    char who[64] = "?";
    getnameinfo((struct sockaddr *)&sa, sl, who, sizeof who, NULL, 0, NI_NUMERICHOST);
    proto_frame f = {0};
    char *fields[4] = {0};
    const char *why = "its first message was neither an agent's nor a rank's hello";
    if (proto_auth_server(fd, d->key, 3000) != DDP_OK || proto_recv(fd, 3000, &f) != DDP_OK) {
        why = ddp_last_error();
    } else if (f.type == MSG_AGENT_HELLO) {
        int k = atoi(f.data);
        if (k >= 1 && k < d->opts.nnodes && !d->agents[k].joined) {
            proto_frame_free(&f);
            if (proto_send(fd, MSG_START_RANKS, NULL, 0) != DDP_OK) {
                fprintf(stderr, "ddplab: node %d's agent left as it joined\n", k);
                close(fd);
                return;
            }
            d->agents[k].fd = fd;
            d->agents[k].joined = true;
            proto_reader_init(&d->agents[k].in);
            return;
        }
        why = "an agent for a node that is not expected";
    } else if (f.type == MSG_HELLO && proto_split(f.data, f.len, fields, 4) == 4) {
        int r = atoi(fields[0]);
        rank_slot *s = r >= d->nproc && r < d->world ? &d->ranks[r] : NULL;
        if (s && s->remote && s->fd < 0 && s->state == SLOT_STARTING) {
            s->fd = fd;
            s->pid = atoi(fields[1]);
            proto_reader_init(&s->in);
            snprintf(s->host, sizeof s->host, "%s", fields[2]);
            snprintf(s->device, sizeof s->device, "%s", fields[3]);
            s->state = SLOT_IDLE;
            proto_frame_free(&f);
            return;
        }
        why = "a rank that is not expected";
    }
    fprintf(stderr, "ddplab: dropped a control connection from %s: %s\n", who, why);
    proto_frame_free(&f);
    close(fd);
}

ddp_status driver_nodes_listen(driver *d) {
    if (!d->agents) {
        d->agents = calloc((size_t)d->opts.nnodes, sizeof *d->agents);
        if (!d->agents) return DDP_FAIL(DDP_ERR_NOMEM, "driver: no memory");
        for (int k = 0; k < d->opts.nnodes; k++) d->agents[k].fd = -1;
    }
    if (d->tcp_fd < 0)
        DDP_CHECK(
            proto_listen_tcp(d->master_addr, launcher_control_port(d->master_port), &d->tcp_fd));
    for (int k = 1; k < d->opts.nnodes; k++) { /* a restart: the agents are in already */
        if (d->agents[k].fd >= 0 && proto_send(d->agents[k].fd, MSG_START_RANKS, NULL, 0) != DDP_OK)
            drop_agent(d, k);
    }
    return driver_nodes_check(d); /* an agent that was in and has gone away */
}

ddp_status driver_nodes_check(driver *d) {
    for (int k = 1; d->agents && k < d->opts.nnodes; k++)
        if (d->agents[k].joined && d->agents[k].fd < 0)
            return DDP_FAIL(DDP_ERR_STATE,
                            "node %d's agent (ddplab --node-rank %d) has gone away, so "
                            "that node's ranks cannot start: quit, then start the session "
                            "again (the driver, then the agent on each other node)",
                            k, k);
    return DDP_OK;
}

void driver_nodes_signal_rank(driver *d, int r) {
    int k = r / d->nproc;
    char msg[32];
    int len = snprintf(msg, sizeof msg, "%d%c%d", r, 0, d->chunk_id);
    if (d->agents && d->agents[k].fd >= 0)
        (void)proto_send(d->agents[k].fd, MSG_SIGNAL_RANK, msg, (size_t)len);
}

void driver_nodes_stop_listening(driver *d) {
    if (d->tcp_fd >= 0) close(d->tcp_fd);
    d->tcp_fd = -1;
}

void driver_nodes_end_ranks(driver *d) {
    for (int k = 1; d->agents && k < d->opts.nnodes; k++) {
        if (d->agents[k].fd < 0) continue;
        if (proto_send(d->agents[k].fd, MSG_END_RANKS, NULL, 0) == DDP_OK) d->agents[k].ending++;
    }
    driver_nodes_stop_listening(d);
}

void driver_nodes_close(driver *d) {
    for (int k = 1; d->agents && k < d->opts.nnodes; k++) { /* agents end their ranks */
        if (d->agents[k].fd >= 0) (void)proto_send(d->agents[k].fd, MSG_BYE, NULL, 0);
        drop_agent(d, k);
    }
    free(d->agents);
    d->agents = NULL;
    driver_nodes_stop_listening(d);
}
