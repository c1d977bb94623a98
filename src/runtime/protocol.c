/* protocol.c — framing on the control channel (see protocol.h): whole-frame writes,
 * a blocking single-frame read with a deadline, and a buffered reader for poll loops. */
#include "runtime/protocol.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "base/clock.h"

static const char *const type_names[MSG_TYPE_END] = {
    [MSG_HELLO] = "HELLO",
    [MSG_OUTPUT] = "OUTPUT",
    [MSG_DONE] = "DONE",
    [MSG_ERROR] = "ERROR",
    [MSG_INTERRUPTED] = "INTERRUPTED",
    [MSG_COMPLETIONS] = "COMPLETIONS",
    [MSG_STATE] = "STATE",
    [MSG_RUN] = "RUN",
    [MSG_RUN_FILE] = "RUN_FILE",
    [MSG_COMPLETE] = "COMPLETE",
    [MSG_BYE] = "BYE",
    [MSG_AGENT_HELLO] = "AGENT_HELLO",
    [MSG_SIGNAL_RANK] = "SIGNAL_RANK",
    [MSG_RANK_EXIT] = "RANK_EXIT",
    [MSG_START_RANKS] = "START_RANKS",
    [MSG_END_RANKS] = "END_RANKS",
    [MSG_RANKS_ENDED] = "RANKS_ENDED",
    [MSG_EVENT] = "EVENT",
    [MSG_GATHER] = "GATHER",
    [MSG_GATHERED] = "GATHERED",
    [MSG_DEVICE] = "DEVICE",
};

static const char *const verdict_names[] = {"pass", "fail", "defect"};

size_t proto_event_encode(const proto_event *ev, char *buf, size_t cap) {
    int n;
    if (ev->kind == PROTO_EVENT_ENDED) {
        n = snprintf(buf, cap, "ended");
    } else if (ev->kind == PROTO_EVENT_VERDICT) {
        n = snprintf(buf, cap, "verdict%c%s%c%s", 0, verdict_names[ev->verdict], 0,
                     ev->message ? ev->message : "");
    } else {
        n = snprintf(buf, cap, "progress%c%ld%c%ld%c%s", 0, ev->done, 0, ev->total, 0,
                     ev->label ? ev->label : "");
    }
    if (n < 0) return 0;
    return (size_t)n < cap ? (size_t)n : cap - 1;
}

ddp_status proto_event_decode(char *data, uint32_t len, proto_event *out) {
    char *f[4] = {0};
    int n = proto_split(data, len, f, 4);
    memset(out, 0, sizeof *out);
    if (n == 1 && strcmp(f[0], "ended") == 0) {
        out->kind = PROTO_EVENT_ENDED;
        return DDP_OK;
    }
    if (n == 3 && strcmp(f[0], "verdict") == 0) {
        out->kind = PROTO_EVENT_VERDICT;
        out->message = f[2];
        for (int v = 0; v < 3; v++)
            if (strcmp(f[1], verdict_names[v]) == 0) {
                out->verdict = (proto_verdict)v;
                return DDP_OK;
            }
    } else if (n == 4 && strcmp(f[0], "progress") == 0) {
        char *end1, *end2;
        out->kind = PROTO_EVENT_PROGRESS;
        out->done = strtol(f[1], &end1, 10);
        out->total = strtol(f[2], &end2, 10);
        out->label = f[3];
        if (*f[1] && !*end1 && *f[2] && !*end2) return DDP_OK;
    }
    return DDP_FAIL(DDP_ERR_FORMAT, "control channel: a corrupt EVENT frame (%s)",
                    n > 0 ? f[0] : "empty");
}

const char *proto_type_name(int type) {
    if (type <= 0 || type >= MSG_TYPE_END) return "unknown";
    return type_names[type];
}

/* Writes the 8-byte header: big-endian length, type, three zero bytes. */
static void encode_header(unsigned char *h, msg_type type, uint32_t len) {
    h[0] = (unsigned char)(len >> 24);
    h[1] = (unsigned char)(len >> 16);
    h[2] = (unsigned char)(len >> 8);
    h[3] = (unsigned char)len;
    h[4] = (unsigned char)type;
    h[5] = h[6] = h[7] = 0;
}

/* Checks a received header; on success sets *type and *len. */
static ddp_status decode_header(const unsigned char *h, msg_type *type, uint32_t *len) {
    uint32_t n = ((uint32_t)h[0] << 24) | ((uint32_t)h[1] << 16) | ((uint32_t)h[2] << 8) | h[3];
    if (h[5] || h[6] || h[7])
        return DDP_FAIL(DDP_ERR_FORMAT, "control channel: corrupt frame header (reserved "
                                        "bytes set); the peer does not speak ddplab");
    if (h[4] == 0 || h[4] >= MSG_TYPE_END)
        return DDP_FAIL(DDP_ERR_FORMAT, "control channel: unknown frame type %d", h[4]);
    if (n > PROTO_MAX_PAYLOAD)
        return DDP_FAIL(DDP_ERR_FORMAT,
                        "control channel: %s frame of %u bytes is above the "
                        "limit of %u bytes",
                        proto_type_name(h[4]), n, PROTO_MAX_PAYLOAD);
    *type = (msg_type)h[4];
    *len = n;
    return DDP_OK;
}

/* Writes all of buf, retrying short writes and EINTR; MSG_NOSIGNAL keeps a dead peer
 * from killing us with SIGPIPE (fall back to write() for a non-socket fd). */
static ddp_status write_all(int fd, const void *buf, size_t len) {
    const char *p = buf;
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == ENOTSOCK) n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                struct pollfd pfd = {.fd = fd, .events = POLLOUT};
                (void)poll(&pfd, 1, 100);
                continue;
            }
            return DDP_FAIL(DDP_ERR_COMM, "control channel: the peer is gone (%s)",
                            strerror(errno));
        }
        p += n;
        len -= (size_t)n;
    }
    return DDP_OK;
}

ddp_status proto_send(int fd, msg_type type, const void *data, size_t len) {
    if (len > PROTO_MAX_PAYLOAD)
        return DDP_FAIL(DDP_ERR_ARG,
                        "control channel: a %s message of %zu bytes is above the "
                        "limit of %u bytes",
                        proto_type_name(type), len, PROTO_MAX_PAYLOAD);
    unsigned char h[PROTO_HEADER_SIZE];
    encode_header(h, type, (uint32_t)len);
    /* One write for small frames keeps a frame in one segment. */
    if (len <= 4096) {
        char buf[PROTO_HEADER_SIZE + 4096];
        memcpy(buf, h, PROTO_HEADER_SIZE);
        if (len) memcpy(buf + PROTO_HEADER_SIZE, data, len);
        return write_all(fd, buf, PROTO_HEADER_SIZE + len);
    }
    DDP_CHECK(write_all(fd, h, PROTO_HEADER_SIZE));
    return write_all(fd, data, len);
}

/* Reads exactly len bytes before `deadline` (ms on the monotonic clock; -1: none). */
static ddp_status read_exact(int fd, void *buf, size_t len, int64_t deadline) {
    char *p = buf;
    while (len > 0) {
        int wait = 50;
        if (deadline >= 0) {
            int64_t left = deadline - ddp_now_ms();
            if (left <= 0) return DDP_FAIL(DDP_ERR_TIMEOUT, "control channel: no message in time");
            if (left < wait) wait = (int)left;
        }
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int pr = poll(&pfd, 1, wait);
        if (pr < 0 && errno != EINTR)
            return DDP_FAIL(DDP_ERR_IO, "control channel: poll failed (%s)", strerror(errno));
        if (pr <= 0) continue;
        ssize_t n = read(fd, p, len);
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) continue;
            return DDP_FAIL(DDP_ERR_COMM, "control channel: read failed (%s)", strerror(errno));
        }
        if (n == 0) return DDP_FAIL(DDP_ERR_COMM, "control channel: the peer closed it");
        p += n;
        len -= (size_t)n;
    }
    return DDP_OK;
}

ddp_status proto_recv(int fd, int timeout_ms, proto_frame *out) {
    out->data = NULL;
    out->len = 0;
    int64_t deadline = timeout_ms < 0 ? -1 : ddp_now_ms() + timeout_ms;
    unsigned char h[PROTO_HEADER_SIZE];
    DDP_CHECK(read_exact(fd, h, sizeof h, deadline));
    msg_type type;
    uint32_t len;
    DDP_CHECK(decode_header(h, &type, &len));
    char *data = malloc((size_t)len + 1);
    if (!data) return DDP_FAIL(DDP_ERR_NOMEM, "control channel: no memory for %u bytes", len);
    /* Once the header is in, the rest follows promptly: allow it a generous deadline. */
    ddp_status s = read_exact(fd, data, len, deadline < 0 ? -1 : ddp_now_ms() + 10000);
    if (s != DDP_OK) {
        free(data);
        return s;
    }
    data[len] = '\0';
    out->type = type;
    out->len = len;
    out->data = data;
    return DDP_OK;
}

void proto_frame_free(proto_frame *f) {
    if (!f) return;
    free(f->data);
    f->data = NULL;
    f->len = 0;
}

void proto_reader_init(proto_reader *r) {
    memset(r, 0, sizeof *r);
}

void proto_reader_free(proto_reader *r) {
    free(r->buf);
    memset(r, 0, sizeof *r);
}

ddp_status proto_reader_push(proto_reader *r, const void *bytes, size_t len) {
    if (r->start > 0) { /* what proto_reader_next took: moved once here, not once a frame */
        memmove(r->buf, r->buf + r->start, r->len - r->start);
        r->len -= r->start;
        r->start = 0;
    }
    if (r->len + len > r->cap) {
        size_t cap = r->cap ? r->cap : 4096;
        while (cap < r->len + len) cap *= 2;
        char *nb = realloc(r->buf, cap);
        if (!nb) return DDP_FAIL(DDP_ERR_NOMEM, "control channel: no memory to buffer input");
        r->buf = nb;
        r->cap = cap;
    }
    memcpy(r->buf + r->len, bytes, len);
    r->len += len;
    return DDP_OK;
}

ddp_status proto_reader_fill(proto_reader *r, int fd) {
    char chunk[65536];
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof chunk);
        if (n > 0) {
            DDP_CHECK(proto_reader_push(r, chunk, (size_t)n));
            if ((size_t)n < sizeof chunk) return DDP_OK;
            continue;
        }
        if (n == 0) {
            r->eof = true;
            return DDP_OK;
        }
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return DDP_OK;
        if (errno == ECONNRESET) {
            r->eof = true;
            return DDP_OK;
        }
        return DDP_FAIL(DDP_ERR_IO, "control channel: read failed (%s)", strerror(errno));
    }
}

ddp_status proto_reader_next(proto_reader *r, proto_frame *out, bool *got) {
    *got = false;
    out->data = NULL;
    out->len = 0;
    size_t avail = r->len - r->start;
    if (avail < PROTO_HEADER_SIZE) return DDP_OK;
    const char *frame = r->buf + r->start;
    msg_type type;
    uint32_t len;
    DDP_CHECK(decode_header((const unsigned char *)frame, &type, &len));
    if (avail - PROTO_HEADER_SIZE < len) return DDP_OK;
    char *data = malloc((size_t)len + 1);
    if (!data) return DDP_FAIL(DDP_ERR_NOMEM, "control channel: no memory for %u bytes", len);
    memcpy(data, frame + PROTO_HEADER_SIZE, len);
    data[len] = '\0';
    r->start += PROTO_HEADER_SIZE + (size_t)len;
    if (r->start == r->len) r->start = r->len = 0; /* all read: start over at no cost */
    out->type = type;
    out->len = len;
    out->data = data;
    *got = true;
    return DDP_OK;
}

int proto_split(char *data, uint32_t len, char **fields, int max) {
    int n = 0;
    uint32_t start = 0;
    if (max <= 0) return 0;
    for (uint32_t i = 0; i <= len && n < max; i++) {
        if (n == max - 1) {
            fields[n++] = data + start;
            break;
        }
        if (i == len || data[i] == '\0') {
            data[i] = '\0'; /* data[len] is the terminating NUL of a received frame */
            fields[n++] = data + start;
            start = i + 1;
            if (i == len) break;
        }
    }
    return n;
}

/* ---- TCP and authentication ------------------------------------------------------------ */

ddp_status proto_load_secret(unsigned char key[PROTO_KEY_BYTES]) {
    const char *hex = getenv("DDPLAB_SECRET");
    if (!hex || !*hex)
        return DDP_FAIL(DDP_ERR_ARG, "control channel: DDPLAB_SECRET is not set; every node "
                                     "of a session needs the same secret (hex digits)");
    if (sodium_init() < 0) return DDP_FAIL(DDP_ERR_IO, "control channel: libsodium failed");
    unsigned char raw[256];
    size_t rawlen = 0;
    if (strlen(hex) > 512 ||
        sodium_hex2bin(raw, sizeof raw, hex, strlen(hex), NULL, &rawlen, NULL) != 0 || rawlen == 0)
        return DDP_FAIL(DDP_ERR_ARG, "control channel: DDPLAB_SECRET must be hex digits");
    crypto_generichash(key, PROTO_KEY_BYTES, raw, rawlen, (const unsigned char *)"ddplab-control",
                       14);
    sodium_memzero(raw, sizeof raw);
    return DDP_OK;
}

#define AUTH_NONCE 32
static const unsigned char auth_magic[8] = {'D', 'D', 'P', 'L', 'A', 'U', 'T', '1'};

/* The tag over (role, server nonce, client nonce) for one side of the handshake. */
static void auth_tag(unsigned char tag[crypto_auth_BYTES], char role, const unsigned char *ns,
                     const unsigned char *nc, const unsigned char *key) {
    unsigned char msg[1 + 2 * AUTH_NONCE];
    msg[0] = (unsigned char)role;
    memcpy(msg + 1, ns, AUTH_NONCE);
    memcpy(msg + 1 + AUTH_NONCE, nc, AUTH_NONCE);
    crypto_auth(tag, msg, sizeof msg, key);
}

static bool auth_tag_ok(const unsigned char *tag, char role, const unsigned char *ns,
                        const unsigned char *nc, const unsigned char *key) {
    unsigned char want[crypto_auth_BYTES];
    auth_tag(want, role, ns, nc, key);
    return sodium_memcmp(want, tag, crypto_auth_BYTES) == 0;
}

ddp_status proto_auth_server(int fd, const unsigned char key[PROTO_KEY_BYTES], int timeout_ms) {
    if (sodium_init() < 0) return DDP_FAIL(DDP_ERR_IO, "control channel: libsodium failed");
    int64_t deadline = ddp_now_ms() + timeout_ms;
    unsigned char hello[sizeof auth_magic + AUTH_NONCE];
    memcpy(hello, auth_magic, sizeof auth_magic);
    unsigned char *ns = hello + sizeof auth_magic;
    randombytes_buf(ns, AUTH_NONCE);
    DDP_CHECK(write_all(fd, hello, sizeof hello));
    unsigned char reply[AUTH_NONCE + crypto_auth_BYTES];
    DDP_CHECK(read_exact(fd, reply, sizeof reply, deadline));
    if (!auth_tag_ok(reply + AUTH_NONCE, 'c', ns, reply, key))
        return DDP_FAIL(DDP_ERR_COMM, "control channel: a peer failed authentication (it does "
                                      "not hold this session's secret)");
    unsigned char tag[crypto_auth_BYTES];
    auth_tag(tag, 's', ns, reply, key);
    return write_all(fd, tag, sizeof tag);
}

ddp_status proto_auth_client(int fd, const unsigned char key[PROTO_KEY_BYTES], int timeout_ms) {
    if (sodium_init() < 0) return DDP_FAIL(DDP_ERR_IO, "control channel: libsodium failed");
    int64_t deadline = ddp_now_ms() + timeout_ms;
    unsigned char hello[sizeof auth_magic + AUTH_NONCE];
    DDP_CHECK(read_exact(fd, hello, sizeof hello, deadline));
    if (memcmp(hello, auth_magic, sizeof auth_magic) != 0)
        return DDP_FAIL(DDP_ERR_COMM, "control channel: the peer is not a ddplab driver");
    const unsigned char *ns = hello + sizeof auth_magic;
    unsigned char reply[AUTH_NONCE + crypto_auth_BYTES];
    randombytes_buf(reply, AUTH_NONCE);
    auth_tag(reply + AUTH_NONCE, 'c', ns, reply, key);
    DDP_CHECK(write_all(fd, reply, sizeof reply));
    unsigned char tag[crypto_auth_BYTES];
    ddp_status s = read_exact(fd, tag, sizeof tag, deadline);
    if (s != DDP_OK || !auth_tag_ok(tag, 's', ns, reply, key))
        return DDP_FAIL(DDP_ERR_COMM, "control channel: the driver did not prove it holds the "
                                      "session secret (is DDPLAB_SECRET the same on every node?)");
    return DDP_OK;
}

ddp_status proto_listen_tcp(const char *addr, int port, int *fd_out) {
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICHOST | AI_PASSIVE};
    struct addrinfo *ai = NULL;
    char portstr[16];
    snprintf(portstr, sizeof portstr, "%d", port);
    if (getaddrinfo(addr, portstr, &hints, &ai) != 0 || !ai)
        return DDP_FAIL(DDP_ERR_ARG, "control channel: '%s' is not a numeric address", addr);
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    int one = 1;
    if (fd >= 0) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (fd < 0 || bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, 128) != 0) {
        int e = errno;
        if (fd >= 0) close(fd);
        freeaddrinfo(ai);
        return DDP_FAIL(DDP_ERR_IO, "control channel: cannot listen on %s:%d (%s)", addr, port,
                        strerror(e));
    }
    freeaddrinfo(ai);
    *fd_out = fd;
    return DDP_OK;
}

ddp_status proto_connect_tcp(const char *host, int port, int timeout_ms, int *fd_out) {
    int64_t deadline = ddp_now_ms() + timeout_ms;
    char portstr[16];
    snprintf(portstr, sizeof portstr, "%d", port);
    int last = 0;
    for (;;) {
        struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
        struct addrinfo *ai = NULL;
        int g = getaddrinfo(host, portstr, &hints, &ai);
        if (g == 0) {
            for (struct addrinfo *a = ai; a; a = a->ai_next) {
                int fd = socket(a->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
                if (fd < 0) continue;
                if (connect(fd, a->ai_addr, a->ai_addrlen) == 0) {
                    int one = 1;
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    freeaddrinfo(ai);
                    *fd_out = fd;
                    return DDP_OK;
                }
                last = errno;
                close(fd);
            }
            freeaddrinfo(ai);
        }
        if (ddp_now_ms() >= deadline)
            return DDP_FAIL(DDP_ERR_TIMEOUT, "control channel: cannot reach %s:%d (%s)", host, port,
                            g ? gai_strerror(g) : strerror(last));
        struct timespec nap = {0, 100 * 1000000};
        nanosleep(&nap, NULL);
    }
}
