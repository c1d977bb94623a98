/* support_dist_ranks.c — the shared forked-rank helpers declared in support_dist_ranks.h:
 * a free port, forking ranks around a hosted store, waiting for the ranks, and the cue
 * pipe. */
#include "support_dist_ranks.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "dist/process_group.h"
#include "dist/store.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

/* Binds port 0 on loopback to learn a free port, then closes it; -1 on any failure. */
int ranks_free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
        if (fd >= 0) close(fd);
        return -1;
    }
    close(fd);
    return ntohs(a.sin_port);
}

/* Joins the world through the store at 127.0.0.1:port; can fail as pg_init does. */
ddp_status ranks_pg_init(int port, int rank, int size, double timeout_s) {
    char method[64];
    snprintf(method, sizeof method, "tcp://127.0.0.1:%d", port);
    pg_init_options o = {.backend = "gloo",
                         .init_method = method,
                         .rank = rank,
                         .world_size = size,
                         .timeout_s = timeout_s};
    return pg_init(&o);
}

/* Blocks until every rank has ended; a rank killed by a signal counts as failed. */
int ranks_wait_all(const pid_t *pids, int n) {
    int failures = 0;
    for (int r = 0; r < n; r++) {
        int st;
        waitpid(pids[r], &st, 0);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) failures++;
    }
    return failures;
}

/* The ranks wait for one byte each on a pipe before they start, so that they are forked
 * before the store's threads exist; end-of-file (no store) sends them away with 3. */
void ranks_run_hosted(int size, int (*body)(int rank, int size, int port)) {
    int port = ranks_free_port();
    assert_true(port > 0);
    assert_true(size >= 1 && size <= 8);
    int go[2];
    assert_int_equal(pipe(go), 0);
    pid_t pids[8];
    for (int r = 0; r < size; r++) {
        pids[r] = fork();
        assert_true(pids[r] >= 0);
        if (pids[r] == 0) {
            char c;
            close(go[1]);
            if (read(go[0], &c, 1) != 1) _exit(3);
            close(go[0]);
            _exit(body(r, size, port));
        }
    }
    close(go[0]);
    store_server *server = NULL;
    ddp_status started = store_server_start("127.0.0.1", port, &server);
    if (started == DDP_OK)
        for (int r = 0; r < size; r++)
            if (write(go[1], "x", 1) != 1) break;
    close(go[1]);
    int failures = ranks_wait_all(pids, size);
    store_server_stop(server);
    assert_int_equal(started, DDP_OK);
    assert_int_equal(failures, 0);
}

/* The pipe of the cue; both ends are inherited by the ranks forked after cue_open. */
static int cue_fd[2] = {-1, -1};

/* Fails the running test if the pipe cannot be made. */
void cue_open(void) {
    assert_int_equal(pipe(cue_fd), 0);
}

/* Cannot fail; safe to call twice. */
void cue_close(void) {
    if (cue_fd[0] >= 0) close(cue_fd[0]);
    if (cue_fd[1] >= 0) close(cue_fd[1]);
    cue_fd[0] = cue_fd[1] = -1;
}

/* Gives up quietly when the pipe is gone: the waiting ranks then time out and fail. */
void cue_give(int n) {
    for (int i = 0; i < n; i++)
        if (write(cue_fd[1], "x", 1) != 1) return;
}

/* False when no cue came within a minute or the pipe is closed. */
bool cue_take(void) {
    struct pollfd p = {.fd = cue_fd[0], .events = POLLIN};
    char c;
    return poll(&p, 1, 60 * 1000) == 1 && read(cue_fd[0], &c, 1) == 1;
}
