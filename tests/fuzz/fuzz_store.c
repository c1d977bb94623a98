/* fuzz_store.c — libFuzzer target for the rendezvous store's request handler
 * (src/dist/store_server.c): every byte after the server's greeting is the peer's, so
 * request headers, sizes, key lists, exchanges and waits all come from the input.
 *
 * The input is written to one end of a socketpair and the server serves the other end on
 * this thread (store_server_serve_fd, the same code as a network peer); a helper thread
 * drains the replies so the server never blocks on a full socket. Waits are capped at 1 ms
 * (store_server_options.max_wait_ms). One server lives for the whole run, as one does for a
 * session, so keys set by earlier inputs stay: the table's byte budget is exercised too.
 * The first input byte chooses whether the server requires the secret. */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "dist/store.h"

static store_server *open_server, *auth_server;

static void *drain(void *arg) {
    int fd = *(int *)arg;
    char sink[65536];
    while (read(fd, sink, sizeof sink) > 0) {
    }
    return NULL;
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    store_server_options o = {.max_wait_ms = 1};
    if (store_server_start_opts(&o, &open_server) != DDP_OK) abort();
    o.force_auth = true;
    o.secret_hex = "00112233445566778899aabbccddeeff";
    if (store_server_start_opts(&o, &auth_server) != DDP_OK) abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1 || size > 100000) return 0;
    store_server *s = data[0] & 1 ? auth_server : open_server;
    data++;
    size--;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return 0;
    int buf = 1 << 20;
    setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &buf, sizeof buf);
    setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &buf, sizeof buf);
    if (size && write(sv[0], data, size) != (ssize_t)size) {
        close(sv[0]);
        close(sv[1]);
        return 0;
    }
    shutdown(sv[0], SHUT_WR);
    pthread_t th;
    if (pthread_create(&th, NULL, drain, &sv[0]) != 0) abort();
    store_server_serve_fd(s, sv[1]); /* closes sv[1] */
    pthread_join(th, NULL);
    close(sv[0]);
    return 0;
}
