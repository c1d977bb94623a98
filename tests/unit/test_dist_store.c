/* test_dist_store.c — the rendezvous store: set/get/wait/add/check/delete, timeouts,
 * Ctrl-C during a wait, many clients at once, a peer sending garbage, and the secret
 * handshake refusing a peer that does not know the session secret. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "base/interrupt.h"
#include "dist/store.h"

static store_server *server;
static store_client *client;

static int setup(void **state) {
    (void)state;
    assert_int_equal(store_server_start("127.0.0.1", 0, &server), DDP_OK);
    assert_true(store_server_port(server) > 0);
    assert_int_equal(store_connect("127.0.0.1", store_server_port(server), 2.0, &client), DDP_OK);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    store_close(client);
    store_server_stop(server);
    client = NULL;
    server = NULL;
    return 0;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void test_set_get_check_delete(void **state) {
    (void)state;
    assert_int_equal(store_set(client, "a", "hello", 5), DDP_OK);
    char *v;
    size_t len;
    assert_int_equal(store_get(client, "a", 1.0, &v, &len), DDP_OK);
    assert_int_equal(len, 5);
    assert_string_equal(v, "hello");
    free(v);
    assert_int_equal(store_set(client, "a", "", 0), DDP_OK); /* replace with empty */
    assert_int_equal(store_get(client, "a", 1.0, &v, &len), DDP_OK);
    assert_int_equal(len, 0);
    free(v);
    bool present, deleted;
    assert_int_equal(store_check(client, "a", &present), DDP_OK);
    assert_true(present);
    assert_int_equal(store_delete_key(client, "a", &deleted), DDP_OK);
    assert_true(deleted);
    assert_int_equal(store_delete_key(client, "a", &deleted), DDP_OK);
    assert_false(deleted);
    assert_int_equal(store_check(client, "a", &present), DDP_OK);
    assert_false(present);
}

static void test_get_times_out(void **state) {
    (void)state;
    char *v = (char *)1;
    size_t len;
    double t0 = now_s();
    assert_int_equal(store_get(client, "missing", 0.2, &v, &len), DDP_ERR_TIMEOUT);
    assert_null(v);
    assert_true(now_s() - t0 >= 0.19);
    assert_non_null(strstr(ddp_last_error(), "missing"));
}

static void test_add_is_a_counter(void **state) {
    (void)state;
    int64_t r;
    assert_int_equal(store_add(client, "n", 5, &r), DDP_OK);
    assert_int_equal(r, 5);
    assert_int_equal(store_add(client, "n", -7, &r), DDP_OK);
    assert_int_equal(r, -2);
}

static void *set_later(void *arg) {
    (void)arg;
    store_client *c;
    if (store_connect("127.0.0.1", store_server_port(server), 2.0, &c) != DDP_OK) return NULL;
    struct timespec ts = {0, 100000000L};
    nanosleep(&ts, NULL);
    store_set(c, "k1", "1", 1);
    store_set(c, "k2", "22", 2);
    store_close(c);
    return NULL;
}

static void test_wait_and_multi_wait(void **state) {
    (void)state;
    pthread_t th;
    pthread_create(&th, NULL, set_later, NULL);
    const char *keys[] = {"k1", "k2"};
    assert_int_equal(store_wait(client, keys, 2, 3.0), DDP_OK);
    pthread_join(th, NULL);
    char *vals[3];
    size_t lens[3];
    const char *three[] = {"k1", "k2", "k3"};
    assert_int_equal(store_multi_wait(client, three, 3, 20, vals, lens), DDP_OK);
    assert_string_equal(vals[0], "1");
    assert_int_equal(lens[1], 2);
    assert_string_equal(vals[1], "22");
    assert_null(vals[2]);
    free(vals[0]);
    free(vals[1]);
    /* exchange: set k3, delete k1 and wait, in one round trip */
    assert_int_equal(store_exchange(client, "k3", "333", 3, "k1", three, 3, 20, vals, lens),
                     DDP_OK);
    assert_null(vals[0]);
    assert_string_equal(vals[1], "22");
    assert_string_equal(vals[2], "333");
    free(vals[1]);
    free(vals[2]);
    /* the first write wins: an exchange does not replace a key that is present */
    assert_int_equal(store_exchange(client, "k3", "4", 1, NULL, three + 2, 1, 20, vals, lens),
                     DDP_OK);
    assert_string_equal(vals[0], "333");
    free(vals[0]);
}

static void *interrupt_later(void *arg) {
    (void)arg;
    struct timespec ts = {0, 150000000L};
    nanosleep(&ts, NULL);
    ddp_interrupt_raise();
    return NULL;
}

static void test_interrupt_ends_a_wait(void **state) {
    (void)state;
    pthread_t th;
    pthread_create(&th, NULL, interrupt_later, NULL);
    char *v;
    size_t len;
    /* INTERRUPTED, not TIMEOUT: the interrupt, not the 10 s bound, ended the wait */
    assert_int_equal(store_get(client, "never", 10.0, &v, &len), DDP_ERR_INTERRUPTED);
    pthread_join(th, NULL);
    ddp_interrupt_clear();
}

static void *add_many(void *arg) {
    (void)arg;
    store_client *c;
    if (store_connect("127.0.0.1", store_server_port(server), 2.0, &c) != DDP_OK) return NULL;
    for (int i = 0; i < 200; i++) store_add(c, "counter", 1, NULL);
    store_close(c);
    return NULL;
}

static void test_concurrent_adds(void **state) {
    (void)state;
    pthread_t th[8];
    for (int i = 0; i < 8; i++) pthread_create(&th[i], NULL, add_many, NULL);
    for (int i = 0; i < 8; i++) pthread_join(th[i], NULL);
    int64_t r;
    assert_int_equal(store_add(client, "counter", 0, &r), DDP_OK);
    assert_int_equal(r, 1600);
}

/* A raw TCP connection to the server. */
static int raw_connect(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    return fd;
}

/* Reads until the server closes (true) or 2 s pass (false); counts bytes read. */
static bool wait_closed(int fd, size_t *nread) {
    *nread = 0;
    char buf[256];
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 2000) <= 0) return false;
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n <= 0) return true;
        *nread += (size_t)n;
    }
}

static void test_garbage_peer_is_dropped(void **state) {
    (void)state;
    int fd = raw_connect(store_server_port(server));
    /* an op byte out of range and a 4 GiB value length */
    unsigned char junk[13] = {0x77, 1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0};
    assert_int_equal(send(fd, junk, sizeof junk, 0), (ssize_t)sizeof junk);
    size_t n;
    assert_true(wait_closed(fd, &n));
    assert_int_equal(n, 38); /* only the greeting came back */
    close(fd);
    /* a second one announcing a huge key length */
    fd = raw_connect(store_server_port(server));
    unsigned char huge[13] = {1, 0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0, 0, 0, 0, 0};
    assert_int_equal(send(fd, huge, sizeof huge, 0), (ssize_t)sizeof huge);
    assert_true(wait_closed(fd, &n));
    close(fd);
    /* the server goes on */
    assert_int_equal(store_set(client, "still", "ok", 2), DDP_OK);
    bool present;
    assert_int_equal(store_check(client, "still", &present), DDP_OK);
    assert_true(present);
}

static void test_auth_refuses_strangers(void **state) {
    (void)state;
    const char *secret = "00112233445566778899aabbccddeeff";
    store_server_options o = {.bind_addr = "127.0.0.1", .force_auth = true, .secret_hex = secret};
    store_server *s;
    assert_int_equal(store_server_start_opts(&o, &s), DDP_OK);
    int port = store_server_port(s);

    /* a stranger sends a well-formed SET without proving anything */
    int fd = raw_connect(port);
    unsigned char hello[38];
    assert_int_equal(recv(fd, hello, sizeof hello, MSG_WAITALL), 38);
    assert_int_equal(hello[5], 1); /* auth required */
    unsigned char set[13 + 3 + 2] = {1, 3, 0, 0, 0,   2,   0,   0,   0,
                                     0, 0, 0, 0, 'b', 'a', 'd', 'x', 'x'};
    /* pad so that the server has its 32 "MAC" bytes */
    unsigned char frame[64] = {0};
    memcpy(frame, set, sizeof set);
    assert_int_equal(send(fd, frame, sizeof frame, 0), (ssize_t)sizeof frame);
    size_t n;
    assert_true(wait_closed(fd, &n));
    assert_int_equal(n, 0); /* nothing after the greeting: no 'K', no answer */
    close(fd);

    /* a client with the wrong secret is refused */
    store_client *c = NULL;
    setenv("DDPLAB_SECRET", "ffeeddccbbaa99887766554433221100", 1);
    assert_int_not_equal(store_connect("127.0.0.1", port, 1.0, &c), DDP_OK);
    assert_null(c);
    /* no secret at all: a clear message */
    unsetenv("DDPLAB_SECRET");
    assert_int_equal(store_connect("127.0.0.1", port, 1.0, &c), DDP_ERR_ARG);
    assert_non_null(strstr(ddp_last_error(), "DDPLAB_SECRET"));

    /* the right secret works, and the stranger's key was never written */
    setenv("DDPLAB_SECRET", secret, 1);
    assert_int_equal(store_connect("127.0.0.1", port, 1.0, &c), DDP_OK);
    bool present = true;
    assert_int_equal(store_check(c, "bad", &present), DDP_OK);
    assert_false(present);
    assert_int_equal(store_set(c, "good", "1", 1), DDP_OK);
    unsetenv("DDPLAB_SECRET");
    store_close(c);
    store_server_stop(s);
}

static void test_non_loopback_needs_a_secret(void **state) {
    (void)state;
    unsetenv("DDPLAB_SECRET");
    store_server *s = NULL;
    assert_int_equal(store_server_start("0.0.0.0", 0, &s), DDP_ERR_ARG);
    assert_null(s);
    assert_non_null(strstr(ddp_last_error(), "DDPLAB_SECRET"));
}

static void test_connect_times_out(void **state) {
    (void)state;
    /* a port that was free a moment ago */
    store_server *s;
    assert_int_equal(store_server_start("127.0.0.1", 0, &s), DDP_OK);
    int port = store_server_port(s);
    store_server_stop(s);
    store_client *c = NULL;
    assert_int_equal(store_connect("127.0.0.1", port, 0.2, &c), DDP_ERR_TIMEOUT);
    assert_non_null(strstr(ddp_last_error(), "MASTER_ADDR"));
}

typedef struct {
    store_client *c;
    ddp_status status;
} long_wait;

static void *wait_long(void *arg) {
    long_wait *w = arg;
    char *v = NULL;
    size_t len;
    w->status = store_get(w->c, "never", 60.0, &v, &len);
    free(v);
    return NULL;
}

/* The accept thread sleeps in poll with no timeout: store_server_stop returning at all
 * shows that it woke the thread (without the wake-up the test hangs until ctest's
 * timeout fails it). A peer inside a 60 s wait is let go too, with an error. */
static void test_stop_wakes_the_server_threads(void **state) {
    (void)state;
    store_server *idle;
    assert_int_equal(store_server_start("127.0.0.1", 0, &idle), DDP_OK);
    store_server_stop(idle); /* nobody ever connected: only the wake-up can end it */

    store_server *s;
    assert_int_equal(store_server_start("127.0.0.1", 0, &s), DDP_OK);
    long_wait w = {.status = DDP_OK};
    assert_int_equal(store_connect("127.0.0.1", store_server_port(s), 2.0, &w.c), DDP_OK);
    assert_int_equal(store_set(w.c, "k", "v", 1), DDP_OK); /* the peer is being served */
    pthread_t th;
    pthread_create(&th, NULL, wait_long, &w);
    store_server_stop(s);
    pthread_join(th, NULL);
    assert_int_not_equal(w.status, DDP_OK);
    store_close(w.c);
}

static void test_oversized_value_refused_by_client(void **state) {
    (void)state;
    static char big[STORE_MAX_VALUE + 1];
    assert_int_equal(store_set(client, "big", big, sizeof big), DDP_ERR_ARG);
    assert_int_equal(store_set(client, "ok", "1", 1), DDP_OK); /* connection still fine */
}

/* Peers that connect and then say nothing, or stop half-way through a request (one of
 * them announcing a 16 MiB value), hold only their own threads: the other clients are
 * served, and stopping the server (teardown) does not wait for them. */
static void test_silent_peers_block_nobody(void **state) {
    (void)state;
    int port = store_server_port(server);
    int silent = raw_connect(port);
    int half = raw_connect(port);
    unsigned char part[5] = {1, 3, 0, 0, 0};
    assert_int_equal(send(half, part, sizeof part, 0), (ssize_t)sizeof part);
    int big = raw_connect(port);
    unsigned char head[13 + 1] = {1, 1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 'k'};
    assert_int_equal(send(big, head, sizeof head, 0), (ssize_t)sizeof head);
    assert_int_equal(store_set(client, "served", "yes", 3), DDP_OK);
    char *v = NULL;
    size_t len = 0;
    assert_int_equal(store_get(client, "served", 1.0, &v, &len), DDP_OK);
    assert_string_equal(v, "yes");
    free(v);
    store_client *other;
    assert_int_equal(store_connect("127.0.0.1", port, 2.0, &other), DDP_OK);
    assert_int_equal(store_set(other, "also", "1", 1), DDP_OK);
    store_close(other);
    close(silent);
    close(half);
    close(big);
}

/* A port where something accepts connections but never speaks (a listening socket
 * nobody serves: the kernel completes the handshake): connecting fails in bounded time
 * instead of waiting forever for the greeting. */
static void test_silent_listener_is_not_a_store(void **state) {
    (void)state;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(fd, 4), 0);
    socklen_t alen = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &alen);
    store_client *c = NULL;
    assert_int_equal(store_connect("127.0.0.1", ntohs(a.sin_port), 0.2, &c), DDP_ERR_COMM);
    assert_null(c);
    assert_true(strstr(ddp_last_error(), "not a ddplab store") != NULL);
    close(fd);
}

/* A stand-in server that greets like a ddplab store and then answers every request with
 * "refused" (what a full store says). */
typedef struct {
    int listen_fd;
    int requests;
} refusing_server;

static void *refuse_all(void *arg) {
    refusing_server *rs = arg;
    int fd = accept(rs->listen_fd, NULL, NULL);
    if (fd < 0) return NULL;
    unsigned char hello[38] = {'D', 'D', 'P', 'S', 1, 0};
    if (send(fd, hello, sizeof hello, 0) != (ssize_t)sizeof hello) goto out;
    for (;;) {
        unsigned char h[13];
        if (recv(fd, h, sizeof h, MSG_WAITALL) != (ssize_t)sizeof h) break;
        size_t body =
            (size_t)(h[1] | h[2] << 8 | h[3] << 16) + (size_t)(h[5] | h[6] << 8 | h[7] << 16);
        char sink[4096];
        while (body > 0) {
            ssize_t n = recv(fd, sink, body < sizeof sink ? body : sizeof sink, 0);
            if (n <= 0) goto out;
            body -= (size_t)n;
        }
        unsigned char answer[5] = {2, 0, 0, 0, 0};
        if (send(fd, answer, sizeof answer, 0) != (ssize_t)sizeof answer) break;
        rs->requests++;
    }
out:
    close(fd);
    return NULL;
}

/* Every kind of request meets a refusal with an error and frees what it got (the
 * sanitizer build's leak check fails the test otherwise). */
static void test_refused_answers_leak_nothing(void **state) {
    (void)state;
    refusing_server rs = {.listen_fd = socket(AF_INET, SOCK_STREAM, 0)};
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(rs.listen_fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(rs.listen_fd, 1), 0);
    socklen_t alen = sizeof a;
    getsockname(rs.listen_fd, (struct sockaddr *)&a, &alen);
    pthread_t th;
    pthread_create(&th, NULL, refuse_all, &rs);
    store_client *c;
    assert_int_equal(store_connect("127.0.0.1", ntohs(a.sin_port), 2.0, &c), DDP_OK);
    char *v = NULL;
    size_t len = 0;
    assert_int_equal(store_get(c, "k", 1.0, &v, &len), DDP_ERR_NOMEM);
    assert_null(v);
    int64_t sum = 0;
    assert_int_equal(store_add(c, "n", 1, &sum), DDP_ERR_NOMEM);
    const char *keys[2] = {"a", "b"};
    char *vals[2];
    size_t lens[2];
    assert_int_equal(store_multi_wait(c, keys, 2, 0, vals, lens), DDP_ERR_NOMEM);
    assert_null(vals[0]);
    assert_null(vals[1]);
    assert_int_equal(store_exchange(c, "a", "1", 1, NULL, keys, 2, 0, vals, lens), DDP_ERR_NOMEM);
    assert_int_equal(store_set(c, "k", "1", 1), DDP_ERR_NOMEM);
    assert_true(strstr(ddp_last_error(), "refused") != NULL);
    store_close(c);
    pthread_join(th, NULL);
    close(rs.listen_fd);
    assert_int_equal(rs.requests, 5);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_set_get_check_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_get_times_out, setup, teardown),
        cmocka_unit_test_setup_teardown(test_add_is_a_counter, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wait_and_multi_wait, setup, teardown),
        cmocka_unit_test_setup_teardown(test_interrupt_ends_a_wait, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_adds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_garbage_peer_is_dropped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_oversized_value_refused_by_client, setup, teardown),
        cmocka_unit_test_setup_teardown(test_silent_peers_block_nobody, setup, teardown),
        cmocka_unit_test(test_refused_answers_leak_nothing),
        cmocka_unit_test(test_silent_listener_is_not_a_store),
        cmocka_unit_test(test_auth_refuses_strangers),
        cmocka_unit_test(test_non_loopback_needs_a_secret),
        cmocka_unit_test(test_connect_times_out),
        cmocka_unit_test(test_stop_wakes_the_server_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
