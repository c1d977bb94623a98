/* driver_nodes.c — the driver's side of a multi-node session (see launcher.h for the
 * agent): an authenticated TCP port that the agents of the other nodes and the ranks they
 * start dial, the agents' reports of how their ranks exited, and interrupts relayed to
 * remote ranks through their agent. Everything a remote rank prints arrives as frames on
 * its control connection, which driver.c reads like a local rank's. The agents stay
 * connected for the whole session: each world (start-up, every :restart) begins with
 * START_RANKS to each agent and ends with END_RANKS (a restart) or BYE (the end), and the
 * port is open only while a world's ranks are dialling in. Each connection proves it holds
 * the session secret on a thread of its own, so that a peer that never finishes (a
 * slow-loris) or a crowd of them cannot hold up the start of a session. */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "runtime/driver_internal.h"
#include "runtime/launcher.h"

static void take_handshakes(driver *d);

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
    /* twice: a short read returns before the end of the stream is seen, and an agent that
     * ends sends its last frames just before it closes (a :restart must see it gone) */
    for (int i = 0; i < 2 && !in->eof; i++)
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
    take_handshakes(d);
    for (int k = 1; k < d->opts.nnodes; k++) {
        if (d->agents[k].fd < 0) continue;
        struct pollfd p = {.fd = d->agents[k].fd, .events = POLLIN};
        if (poll(&p, 1, wait_ms) > 0) pump_agent(d, k);
        wait_ms = 0;
    }
}

/* At most this many handshakes run at once; more connections are refused at once. */
#define MAX_HANDSHAKES 32
/* A handshake's deadlines: the proof, then the hello (as before they ran on a thread). */
#define HANDSHAKE_AUTH_MS 3000
#define HANDSHAKE_HELLO_MS 3000

/* Handshakes run on detached threads; each sends its outcome (a pointer to its job) on a
 * datagram socketpair that the driver reads without blocking. A thread owns a duplicate
 * of the sending end, so it never touches the driver's memory: if the driver is gone by
 * the time it ends, the send fails and it cleans up after itself. */
struct node_handshakes {
    int sock[2]; /* [0]: the driver reads outcomes; [1]: duplicated into each job */
    int pending; /* jobs started whose outcome has not been taken in */
};

typedef struct {
    int fd;
    int report_fd;
    char who[64];
    unsigned char key[PROTO_KEY_BYTES];
    bool ok;
    proto_frame f;
    char why[256];
} handshake_job;

static void job_free(handshake_job *j) {
    if (j->fd >= 0) close(j->fd);
    proto_frame_free(&j->f);
    sodium_memzero(j->key, sizeof j->key);
    free(j);
}

static void *handshake_main(void *arg) {
    handshake_job *j = arg;
    if (proto_auth_server(j->fd, j->key, HANDSHAKE_AUTH_MS) != DDP_OK ||
        proto_recv(j->fd, HANDSHAKE_HELLO_MS, &j->f) != DDP_OK) {
        snprintf(j->why, sizeof j->why, "%s", ddp_last_error());
    } else {
        j->ok = true;
    }
    int report = j->report_fd;
    if (send(report, &j, sizeof j, MSG_NOSIGNAL) != (ssize_t)sizeof j) job_free(j);
    close(report);
    return NULL;
}

/* What to do with a connection that passed the handshake and sent its first frame f. */
static void admit(driver *d, int fd, const char *who, proto_frame *f) {
    char *fields[4] = {0};
    const char *why = "its first message was neither an agent's nor a rank's hello";
    if (f->type == MSG_AGENT_HELLO) {
        int k = atoi(f->data);
        if (k >= 1 && k < d->opts.nnodes && !d->agents[k].joined) {
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
    } else if (f->type == MSG_HELLO && proto_split(f->data, f->len, fields, 4) == 4) {
        int r = atoi(fields[0]);
        rank_slot *s = r >= d->nproc && r < d->world ? &d->ranks[r] : NULL;
        if (s && s->remote && s->fd < 0 && s->state == SLOT_STARTING) {
            s->fd = fd;
            s->pid = atoi(fields[1]);
            proto_reader_init(&s->in);
            snprintf(s->host, sizeof s->host, "%s", fields[2]);
            snprintf(s->device, sizeof s->device, "%s", fields[3]);
            s->state = SLOT_IDLE;
            return;
        }
        why = "a rank that is not expected";
    }
    fprintf(stderr, "ddplab: dropped a control connection from %s: %s\n", who, why);
    close(fd);
}

/* Takes in every handshake that ended since the last call. */
static void take_handshakes(driver *d) {
    struct node_handshakes *h = d->handshakes;
    handshake_job *j;
    while (h && recv(h->sock[0], &j, sizeof j, MSG_DONTWAIT) == (ssize_t)sizeof j) {
        h->pending--;
        if (!j->ok) {
            fprintf(stderr, "ddplab: dropped a control connection from %s: %s\n", j->who, j->why);
        } else if (d->ranks && d->agents) {
            admit(d, j->fd, j->who, &j->f);
            j->fd = -1; /* admit kept or closed it */
        }
        job_free(j);
    }
}

void driver_nodes_accept(driver *d) {
    struct sockaddr_storage sa;
    socklen_t sl = sizeof sa;
    int fd = accept4(d->tcp_fd, (struct sockaddr *)&sa, &sl, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) return;
    char who[64] = "?";
    getnameinfo((struct sockaddr *)&sa, sl, who, sizeof who, NULL, 0, NI_NUMERICHOST);
    struct node_handshakes *h = d->handshakes;
    take_handshakes(d);
    const char *why = NULL;
    handshake_job *j = NULL;
    if (!h) {
        why = "the driver cannot take connections now";
    } else if (h->pending >= MAX_HANDSHAKES) {
        why = "too many connections are proving the secret at once";
    } else if (!(j = calloc(1, sizeof *j))) {
        why = "no memory";
    }
    if (j) {
        j->fd = fd;
        j->report_fd = fcntl(h->sock[1], F_DUPFD_CLOEXEC, 0);
        snprintf(j->who, sizeof j->who, "%s", who);
        memcpy(j->key, d->key, sizeof j->key);
        pthread_t th;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        bool started = j->report_fd >= 0 && pthread_create(&th, &attr, handshake_main, j) == 0;
        pthread_attr_destroy(&attr);
        if (started) {
            h->pending++;
            return;
        }
        if (j->report_fd >= 0) close(j->report_fd);
        j->fd = -1;
        job_free(j);
        why = "cannot start a thread for its handshake";
    }
    fprintf(stderr, "ddplab: dropped a control connection from %s: %s\n", who, why);
    close(fd);
}

ddp_status driver_nodes_listen(driver *d) {
    if (!d->agents) {
        d->agents = calloc((size_t)d->opts.nnodes, sizeof *d->agents);
        if (!d->agents) return DDP_FAIL(DDP_ERR_NOMEM, "driver: no memory");
        for (int k = 0; k < d->opts.nnodes; k++) d->agents[k].fd = -1;
    }
    if (!d->handshakes) {
        struct node_handshakes *h = calloc(1, sizeof *h);
        if (!h) return DDP_FAIL(DDP_ERR_NOMEM, "driver: no memory");
        if (socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, h->sock) != 0) {
            free(h);
            return DDP_FAIL(DDP_ERR_IO, "driver: cannot create a socket pair (%s)",
                            strerror(errno));
        }
        d->handshakes = h;
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

int driver_nodes_expect_again(driver *d, int wait_s) {
    int n = 0;
    for (int k = 1; d->agents && k < d->opts.nnodes; k++) {
        /* a running session had every agent in: one not connected now went away (or has
         * not come back since the last :restart) */
        if (d->agents[k].fd >= 0) continue;
        d->agents[k].joined = false; /* admit takes its successor's hello */
        fprintf(stderr,
                "ddplab: node %d's agent (ddplab --node-rank %d) has gone away: start it again "
                "on that node, with the session's options; the restart waits %d s for it "
                "(Ctrl-C stops waiting)\n",
                k, k, wait_s);
        n++;
    }
    return n;
}

bool driver_nodes_agent_in(const driver *d, int k) {
    return k == 0 || (d->agents && d->agents[k].fd >= 0);
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
    struct node_handshakes *h = d->handshakes;
    if (h) { /* outcomes not taken in: their connections close; later ones fail to send */
        handshake_job *j;
        while (recv(h->sock[0], &j, sizeof j, MSG_DONTWAIT) == (ssize_t)sizeof j) job_free(j);
        close(h->sock[0]);
        close(h->sock[1]);
        free(h);
        d->handshakes = NULL;
    }
}
