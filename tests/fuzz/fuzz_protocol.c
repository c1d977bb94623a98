/* fuzz_protocol.c — libFuzzer target for the control channel's decoders
 * (src/runtime/protocol.c): the frame header check, the buffered reader fed in pieces of
 * every size, the blocking reader, the NUL-separated field splitter and the typed-event
 * decoder, on whatever bytes a confused or hostile peer could send.
 *
 * The first input byte chooses how the rest is cut into the pieces proto_reader_push
 * receives (a poll loop sees a stream in arbitrary pieces); the same bytes then go
 * through proto_recv on a socketpair, whose frames must be the same ones. */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "runtime/protocol.h"

/* Looks into one frame the way the driver and the ranks do. */
static void inspect(proto_frame *f) {
    char *fields[8];
    char *copy = malloc((size_t)f->len + 1);
    memcpy(copy, f->data, (size_t)f->len + 1);
    int n = proto_split(copy, f->len, fields, 8);
    assert(n >= 1 && n <= 8);
    for (int i = 0; i < n; i++) assert(fields[i] >= copy && fields[i] <= copy + f->len);
    free(copy);
    if (f->type == MSG_EVENT) {
        proto_event ev;
        if (proto_event_decode(f->data, f->len, &ev) == DDP_OK && ev.kind == PROTO_EVENT_VERDICT) {
            char buf[256];
            size_t w = proto_event_encode(&ev, buf, sizeof buf);
            assert(w < sizeof buf);
        }
    }
    (void)proto_type_name((int)f->type);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    size_t piece = (size_t)data[0] + 1;
    data++;
    size--;

    proto_reader r;
    proto_reader_init(&r);
    int frames_buffered = 0;
    bool bad = false;
    for (size_t at = 0; at < size && !bad; at += piece) {
        size_t n = size - at < piece ? size - at : piece;
        if (proto_reader_push(&r, data + at, n) != DDP_OK) break;
        for (;;) {
            proto_frame f;
            bool got = false;
            if (proto_reader_next(&r, &f, &got) != DDP_OK) {
                bad = true;
                break;
            }
            if (!got) break;
            assert(f.data && f.data[f.len] == '\0');
            inspect(&f);
            proto_frame_free(&f);
            frames_buffered++;
        }
    }
    proto_reader_free(&r);

    /* The blocking reader must find the same whole frames in the same bytes. */
    int sv[2];
    if (size > 100000 || socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) return 0;
    int buf = 1 << 20;
    setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &buf, sizeof buf);
    setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &buf, sizeof buf);
    if (size && write(sv[0], data, size) != (ssize_t)size) {
        close(sv[0]);
        close(sv[1]);
        return 0;
    }
    close(sv[0]);
    int frames_blocking = 0;
    for (;;) {
        proto_frame f;
        if (proto_recv(sv[1], 1000, &f) != DDP_OK) break;
        inspect(&f);
        proto_frame_free(&f);
        frames_blocking++;
    }
    close(sv[1]);
    assert(frames_blocking == frames_buffered);
    return 0;
}
