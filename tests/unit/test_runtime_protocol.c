/* test_runtime_protocol.c — control-channel framing: round trips over a socket pair,
 * frames that arrive a byte at a time, large frames, and corrupt headers rejected; the
 * handshake that authenticates peers across nodes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "runtime/protocol.h"

static void make_pair(int sv[2]) {
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
}

static void test_round_trip_blocking(void **state) {
    (void)state;
    int sv[2];
    make_pair(sv);
    assert_int_equal(proto_send(sv[0], MSG_RUN, "chunk\0x = 1", 11), DDP_OK);
    assert_int_equal(proto_send(sv[0], MSG_DONE, NULL, 0), DDP_OK);
    proto_frame f;
    assert_int_equal(proto_recv(sv[1], 1000, &f), DDP_OK);
    assert_int_equal(f.type, MSG_RUN);
    assert_int_equal(f.len, 11);
    assert_memory_equal(f.data, "chunk\0x = 1", 11);
    assert_int_equal(f.data[11], '\0');
    char *fields[2];
    assert_int_equal(proto_split(f.data, f.len, fields, 2), 2);
    assert_string_equal(fields[0], "chunk");
    assert_string_equal(fields[1], "x = 1");
    proto_frame_free(&f);
    assert_int_equal(proto_recv(sv[1], 1000, &f), DDP_OK);
    assert_int_equal(f.type, MSG_DONE);
    assert_int_equal(f.len, 0);
    assert_non_null(f.data);
    proto_frame_free(&f);
    close(sv[0]);
    close(sv[1]);
}

static void test_reader_byte_at_a_time(void **state) {
    (void)state;
    int sv[2];
    make_pair(sv);
    assert_int_equal(proto_send(sv[0], MSG_OUTPUT, "hello\n", 6), DDP_OK);
    assert_int_equal(proto_send(sv[0], MSG_ERROR, "boom", 4), DDP_OK);
    char wire[64];
    ssize_t n = read(sv[1], wire, sizeof wire);
    assert_int_equal(n, 2 * PROTO_HEADER_SIZE + 10);
    proto_reader r;
    proto_reader_init(&r);
    int frames = 0;
    for (ssize_t i = 0; i < n; i++) {
        assert_int_equal(proto_reader_push(&r, wire + i, 1), DDP_OK);
        proto_frame f;
        bool got;
        assert_int_equal(proto_reader_next(&r, &f, &got), DDP_OK);
        if (!got) continue;
        frames++;
        if (frames == 1) {
            assert_int_equal(i, PROTO_HEADER_SIZE + 6 - 1); /* complete exactly at its end */
            assert_int_equal(f.type, MSG_OUTPUT);
            assert_string_equal(f.data, "hello\n");
        } else {
            assert_int_equal(f.type, MSG_ERROR);
            assert_string_equal(f.data, "boom");
        }
        proto_frame_free(&f);
    }
    assert_int_equal(frames, 2);
    proto_reader_free(&r);
    close(sv[0]);
    close(sv[1]);
}

/* Several frames arrive in one read, the last cut short: the reader hands them out one by
 * one and completes the cut one when its rest arrives. */
static void test_reader_frames_in_one_read(void **state) {
    (void)state;
    int sv[2];
    make_pair(sv);
    assert_int_equal(proto_send(sv[0], MSG_OUTPUT, "one\n", 4), DDP_OK);
    assert_int_equal(proto_send(sv[0], MSG_STATE, "running", 7), DDP_OK);
    assert_int_equal(proto_send(sv[0], MSG_ERROR, "third frame", 11), DDP_OK);
    char wire[64];
    ssize_t n = read(sv[1], wire, sizeof wire);
    assert_int_equal(n, 3 * PROTO_HEADER_SIZE + 22);
    proto_reader r;
    proto_reader_init(&r);
    size_t cut = (size_t)n - 5; /* the third frame misses its last 5 bytes */
    assert_int_equal(proto_reader_push(&r, wire, cut), DDP_OK);
    const char *expected[] = {"one\n", "running"};
    proto_frame f;
    bool got;
    for (int i = 0; i < 2; i++) {
        assert_int_equal(proto_reader_next(&r, &f, &got), DDP_OK);
        assert_true(got);
        assert_string_equal(f.data, expected[i]);
        proto_frame_free(&f);
    }
    assert_int_equal(proto_reader_next(&r, &f, &got), DDP_OK);
    assert_false(got);
    assert_int_equal(proto_reader_push(&r, wire + cut, 5), DDP_OK);
    assert_int_equal(proto_reader_next(&r, &f, &got), DDP_OK);
    assert_true(got);
    assert_int_equal(f.type, MSG_ERROR);
    assert_string_equal(f.data, "third frame");
    proto_frame_free(&f);
    assert_int_equal(proto_reader_next(&r, &f, &got), DDP_OK);
    assert_false(got);
    proto_reader_free(&r);
    close(sv[0]);
    close(sv[1]);
}

/* A frame larger than the socket buffer: the writer runs in a child process. */
static void test_large_frame(void **state) {
    (void)state;
    int sv[2];
    make_pair(sv);
    size_t len = 5u * 1024u * 1024u + 3;
    char *big = malloc(len);
    assert_non_null(big);
    for (size_t i = 0; i < len; i++) big[i] = (char)(i * 7 + 1);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(sv[1]);
        _exit(proto_send(sv[0], MSG_OUTPUT, big, len) == DDP_OK ? 0 : 1);
    }
    close(sv[0]);
    proto_frame f;
    assert_int_equal(proto_recv(sv[1], 10000, &f), DDP_OK);
    assert_int_equal(f.type, MSG_OUTPUT);
    assert_int_equal(f.len, len);
    assert_memory_equal(f.data, big, len);
    proto_frame_free(&f);
    free(big);
    close(sv[1]);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

static void test_bad_frames_rejected(void **state) {
    (void)state;
    proto_reader r;
    proto_frame f;
    bool got;
    /* unknown type */
    unsigned char bad_type[8] = {0, 0, 0, 1, 200, 0, 0, 0};
    proto_reader_init(&r);
    assert_int_equal(proto_reader_push(&r, bad_type, 8), DDP_OK);
    assert_int_equal(proto_reader_next(&r, &f, &got), DDP_ERR_FORMAT);
    assert_false(got);
    proto_reader_free(&r);
    /* reserved bytes set: e.g. an HTTP request on the control socket */
    proto_reader_init(&r);
    assert_int_equal(proto_reader_push(&r, "GET / HTTP/1.1\r\n", 16), DDP_OK);
    assert_int_equal(proto_reader_next(&r, &f, &got), DDP_ERR_FORMAT);
    proto_reader_free(&r);
    /* a length above the limit never allocates */
    unsigned char huge[8] = {0xff, 0xff, 0xff, 0xff, MSG_OUTPUT, 0, 0, 0};
    proto_reader_init(&r);
    assert_int_equal(proto_reader_push(&r, huge, 8), DDP_OK);
    assert_int_equal(proto_reader_next(&r, &f, &got), DDP_ERR_FORMAT);
    assert_non_null(strstr(ddp_last_error(), "limit"));
    proto_reader_free(&r);
    /* the blocking reader rejects them too */
    int sv[2];
    make_pair(sv);
    assert_int_equal(write(sv[0], huge, 8), 8);
    assert_int_equal(proto_recv(sv[1], 1000, &f), DDP_ERR_FORMAT);
    close(sv[0]);
    close(sv[1]);
    /* the sender refuses too */
    assert_int_equal(proto_send(-1, MSG_OUTPUT, NULL, (size_t)PROTO_MAX_PAYLOAD + 1), DDP_ERR_ARG);
}

static void test_eof_and_timeout(void **state) {
    (void)state;
    int sv[2];
    make_pair(sv);
    proto_frame f;
    assert_int_equal(proto_recv(sv[1], 60, &f), DDP_ERR_TIMEOUT);
    /* half a frame, then the peer goes away */
    assert_int_equal(write(sv[0], "\0\0\0\5", 4), 4);
    close(sv[0]);
    assert_int_equal(proto_recv(sv[1], 1000, &f), DDP_ERR_COMM);
    assert_non_null(strstr(ddp_last_error(), "closed"));
    /* the buffered reader sees end of stream */
    proto_reader r;
    proto_reader_init(&r);
    assert_int_equal(proto_reader_fill(&r, sv[1]), DDP_OK);
    assert_true(r.eof);
    proto_reader_free(&r);
    close(sv[1]);
    /* writing to a closed peer is an error, not SIGPIPE */
    make_pair(sv);
    close(sv[1]);
    assert_int_equal(proto_send(sv[0], MSG_DONE, NULL, 0), DDP_ERR_COMM);
    close(sv[0]);
}

static void test_split_fields(void **state) {
    (void)state;
    char hello[] = "3\0"
                   "1234\0"
                   "node1\0"
                   "cpu";
    char *fields[4];
    assert_int_equal(proto_split(hello, sizeof hello - 1, fields, 4), 4);
    assert_string_equal(fields[0], "3");
    assert_string_equal(fields[2], "node1");
    assert_string_equal(fields[3], "cpu");
    char one[] = "";
    assert_int_equal(proto_split(one, 0, fields, 4), 1);
    assert_string_equal(fields[0], "");
}

/* Runs the client side of the handshake in a child with `secret`; returns its verdict
 * (0: authenticated) after the server side ran here with the session's key. */
static void handshake(const char *server_secret, const char *client_secret, ddp_status *server,
                      int *client_ok) {
    int sv[2];
    make_pair(sv);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(sv[0]);
        unsigned char ck[PROTO_KEY_BYTES];
        setenv("DDPLAB_SECRET", client_secret, 1);
        if (proto_load_secret(ck) != DDP_OK) _exit(2);
        _exit(proto_auth_client(sv[1], ck, 2000) == DDP_OK ? 0 : 1);
    }
    close(sv[1]);
    unsigned char key[PROTO_KEY_BYTES];
    setenv("DDPLAB_SECRET", server_secret, 1);
    assert_int_equal(proto_load_secret(key), DDP_OK);
    *server = proto_auth_server(sv[0], key, 2000);
    close(sv[0]);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    *client_ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    unsetenv("DDPLAB_SECRET");
}

static void test_auth_same_secret(void **state) {
    (void)state;
    ddp_status server;
    int client_ok;
    handshake("c0ffee00c0ffee00", "c0ffee00c0ffee00", &server, &client_ok);
    assert_int_equal(server, DDP_OK);
    assert_true(client_ok);
}

static void test_auth_wrong_secret_refused(void **state) {
    (void)state;
    ddp_status server;
    int client_ok;
    handshake("c0ffee00c0ffee00", "deadbeefdeadbeef", &server, &client_ok);
    assert_int_equal(server, DDP_ERR_COMM);
    assert_non_null(strstr(ddp_last_error(), "authentication"));
    assert_false(client_ok); /* nor does the client trust a server without the secret */
}

/* A peer that just sends a command gets refused before anything is read as a frame. */
static void test_auth_rejects_raw_frames(void **state) {
    (void)state;
    int sv[2];
    make_pair(sv);
    char frame[PROTO_HEADER_SIZE + 40] = {0, 0, 0, 40, MSG_RUN};
    memset(frame + PROTO_HEADER_SIZE, 'x', 40); /* as long as a handshake reply */
    assert_int_equal(write(sv[1], frame, 80 - 32), 80 - 32);
    assert_int_equal(write(sv[1], frame, 32), 32);
    unsigned char key[PROTO_KEY_BYTES];
    setenv("DDPLAB_SECRET", "c0ffee00", 1);
    assert_int_equal(proto_load_secret(key), DDP_OK);
    assert_int_equal(proto_auth_server(sv[0], key, 500), DDP_ERR_COMM);
    setenv("DDPLAB_SECRET", "not hex!", 1);
    assert_int_equal(proto_load_secret(key), DDP_ERR_ARG);
    unsetenv("DDPLAB_SECRET");
    assert_int_equal(proto_load_secret(key), DDP_ERR_ARG);
    close(sv[0]);
    close(sv[1]);
}

/* Typed events survive encoding, and a corrupt one is refused rather than half-read. */
static void test_events_round_trip(void **state) {
    (void)state;
    char buf[128];
    proto_event v = {.kind = PROTO_EVENT_VERDICT,
                     .verdict = PROTO_VERDICT_FAIL,
                     .message = "w differs from rank 0's"};
    size_t n = proto_event_encode(&v, buf, sizeof buf);
    proto_event got;
    assert_int_equal(proto_event_decode(buf, (uint32_t)n, &got), DDP_OK);
    assert_int_equal(got.kind, PROTO_EVENT_VERDICT);
    assert_int_equal(got.verdict, PROTO_VERDICT_FAIL);
    assert_string_equal(got.message, "w differs from rank 0's");
    proto_event p = {.kind = PROTO_EVENT_PROGRESS, .done = 42, .total = 100, .label = "epoch"};
    n = proto_event_encode(&p, buf, sizeof buf);
    assert_int_equal(proto_event_decode(buf, (uint32_t)n, &got), DDP_OK);
    assert_int_equal(got.kind, PROTO_EVENT_PROGRESS);
    assert_int_equal(got.done, 42);
    assert_int_equal(got.total, 100);
    assert_string_equal(got.label, "epoch");
    char bad1[] = "verdict\0maybe\0x";
    assert_int_equal(proto_event_decode(bad1, sizeof bad1 - 1, &got), DDP_ERR_FORMAT);
    char bad2[] = "progress\0ten\0100\0";
    assert_int_equal(proto_event_decode(bad2, sizeof bad2 - 1, &got), DDP_ERR_FORMAT);
    char bad3[] = "sparkles";
    assert_int_equal(proto_event_decode(bad3, sizeof bad3 - 1, &got), DDP_ERR_FORMAT);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_blocking),
        cmocka_unit_test(test_reader_byte_at_a_time),
        cmocka_unit_test(test_reader_frames_in_one_read),
        cmocka_unit_test(test_large_frame),
        cmocka_unit_test(test_bad_frames_rejected),
        cmocka_unit_test(test_eof_and_timeout),
        cmocka_unit_test(test_split_fields),
        cmocka_unit_test(test_auth_same_secret),
        cmocka_unit_test(test_auth_wrong_secret_refused),
        cmocka_unit_test(test_auth_rejects_raw_frames),
        cmocka_unit_test(test_events_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
