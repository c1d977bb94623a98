/* store.c — the rendezvous store's client (the server is store_server.c) and the wire
 * helpers both share.
 *
 * Requests are short; every wait on a key is sliced into server-side waits of at most
 * 50 ms so that the client can check ddp_interrupt_pending() and its own deadline between
 * slices. A lock serialises requests so one client can be shared (the Gloo rendezvous
 * adapter and the process group use the same connection). */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "base/alloc.h"
#include "base/clock.h"
#include "base/interrupt.h"
#include "dist/store.h"
#include "dist/store_wire.h"

#define SLICE_MS 50
/* The longest a live server takes to answer: its waits end within STORE_MAX_WAIT_MS; a
 * server silent for this long is stuck (or not a ddplab store), and the request fails. */
#define ANSWER_TIMEOUT_S 30.0

struct store_client {
    int fd;
    pthread_mutex_t lock;
    bool lost;       /* a request broke off half-way: the stream is out of step, so every later
                      * request fails at once instead of reading someone else's answer */
    char where[300]; /* "host:port" for messages */
};

/* ---- wire helpers (store_wire.h) -------------------------------------------------- */

void store_put_u32(unsigned char *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}

uint32_t store_get_u32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

void store_put_i64(unsigned char *p, int64_t v) {
    uint64_t u = (uint64_t)v;
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(u >> (8 * i));
}

int64_t store_get_i64(const unsigned char *p) {
    uint64_t u = 0;
    for (int i = 0; i < 8; i++) u |= (uint64_t)p[i] << (8 * i);
    return (int64_t)u;
}

bool store_write_all(int fd, const void *buf, size_t len) {
    const char *p = buf;
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return false;
        p += n;
        len -= (size_t)n;
    }
    return true;
}

bool store_write_two(int fd, const void *a, size_t alen, const void *b, size_t blen) {
    struct iovec iov[2] = {{(void *)a, alen}, {(void *)b, blen}};
    struct msghdr m = {.msg_iov = iov, .msg_iovlen = blen ? 2 : 1};
    while (m.msg_iovlen > 0) {
        ssize_t n = sendmsg(fd, &m, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return false;
        /* a partial write: skip what went out and go on with the rest */
        size_t left = (size_t)n;
        while (m.msg_iovlen > 0 && left >= m.msg_iov[0].iov_len) {
            left -= m.msg_iov[0].iov_len;
            m.msg_iov++;
            m.msg_iovlen--;
        }
        if (m.msg_iovlen > 0) {
            m.msg_iov[0].iov_base = (char *)m.msg_iov[0].iov_base + left;
            m.msg_iov[0].iov_len -= left;
        }
    }
    return true;
}

bool store_read_all(int fd, void *buf, size_t len) {
    char *p = buf;
    while (len > 0) {
        ssize_t n = recv(fd, p, len, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            if (n == 0) errno = ECONNRESET;
            return false;
        }
        p += n;
        len -= (size_t)n;
    }
    return true;
}

bool store_secret_key(const char *secret_hex, unsigned char key[32]) {
    size_t hexlen = strlen(secret_hex);
    if (hexlen == 0 || hexlen > 512) return false;
    unsigned char raw[256];
    size_t rawlen = 0;
    if (sodium_hex2bin(raw, sizeof raw, secret_hex, hexlen, NULL, &rawlen, NULL) != 0 ||
        rawlen == 0)
        return false;
    crypto_generichash(key, 32, raw, rawlen, (const unsigned char *)"ddplab-store", 12);
    sodium_memzero(raw, sizeof raw);
    return true;
}

/* Seconds on the monotonic clock, for the client's deadlines. */
static double now_s(void) {
    return (double)ddp_now_ms() / 1000.0;
}

/* ---- connecting ----------------------------------------------------------------- */

/* Bounds every recv on fd (SO_RCVTIMEO): a read that waits longer fails. */
static void set_read_timeout(int fd, double seconds) {
    struct timeval tv = {.tv_sec = (time_t)seconds,
                         .tv_usec = (suseconds_t)((seconds - (double)(time_t)seconds) * 1e6)};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
}

/* One connection attempt to every address of host:port; the fd or -1. */
static int try_connect(const char *host, int port) {
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    char portstr[16];
    snprintf(portstr, sizeof portstr, "%d", port);
    if (getaddrinfo(host, portstr, &hints, &res) != 0) return -1;
    int fd = -1;
    for (struct addrinfo *a = res; a && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd >= 0 && connect(fd, a->ai_addr, a->ai_addrlen) != 0) {
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    return fd;
}

/* The client's half of the handshake (store_wire.h). */
static ddp_status handshake(store_client *c) {
    unsigned char hello[STORE_HELLO_BYTES];
    if (!store_read_all(c->fd, hello, sizeof hello) || memcmp(hello, STORE_MAGIC, 4) != 0 ||
        hello[4] != STORE_VERSION)
        return DDP_FAIL(DDP_ERR_COMM, "store: %s is not a ddplab store (bad greeting)", c->where);
    if (!hello[5]) return DDP_OK;
    const char *secret = getenv("DDPLAB_SECRET");
    unsigned char key[32];
    if (!secret || !store_secret_key(secret, key))
        return DDP_FAIL(DDP_ERR_ARG,
                        "store: %s asks for the session secret, but DDPLAB_SECRET is %s", c->where,
                        secret ? "not hex" : "not set");
    unsigned char mac[crypto_auth_BYTES];
    crypto_auth(mac, hello + 6, STORE_NONCE_BYTES, key);
    sodium_memzero(key, sizeof key);
    char ok = 0;
    if (!store_write_all(c->fd, mac, sizeof mac) || !store_read_all(c->fd, &ok, 1) || ok != 'K')
        return DDP_FAIL(DDP_ERR_COMM, "store: %s refused our session secret", c->where);
    return DDP_OK;
}

ddp_status store_connect(const char *host, int port, double timeout_s, store_client **out) {
    *out = NULL;
    if (sodium_init() < 0) return DDP_FAIL(DDP_ERR_IO, "store: libsodium failed to start");
    double until = now_s() + timeout_s;
    int fd;
    while ((fd = try_connect(host, port)) < 0) {
        if (ddp_interrupt_pending())
            return DDP_FAIL(DDP_ERR_INTERRUPTED, "store: interrupted while connecting to %s:%d",
                            host, port);
        if (now_s() >= until)
            return DDP_FAIL(DDP_ERR_TIMEOUT,
                            "store: could not reach the rendezvous store at %s:%d within "
                            "%.1f s (is MASTER_ADDR/MASTER_PORT right, and is the server up?)",
                            host, port, timeout_s);
        struct timespec ts = {0, SLICE_MS * 1000000L};
        nanosleep(&ts, NULL);
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    /* Something that accepts but never greets (a port of another service that waits for
     * its client to speak first, or a stopped server) must not hold us forever: the
     * greeting gets the connect timeout (at least a second), and every later answer a
     * bound far above the longest server-side wait (STORE_MAX_WAIT_MS). */
    set_read_timeout(fd, timeout_s > 1 ? timeout_s : 1);
    store_client *c = ddp_calloc(1, sizeof *c);
    if (!c) {
        close(fd);
        return DDP_FAIL(DDP_ERR_NOMEM, "store: out of memory");
    }
    c->fd = fd;
    snprintf(c->where, sizeof c->where, "%s:%d", host, port);
    pthread_mutex_init(&c->lock, NULL);
    ddp_status s = handshake(c);
    if (s != DDP_OK) {
        store_close(c);
        return s;
    }
    set_read_timeout(fd, ANSWER_TIMEOUT_S);
    *out = c;
    return DDP_OK;
}

void store_close(store_client *c) {
    if (!c) return;
    close(c->fd);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

/* ---- requests ------------------------------------------------------------------- */

/* Reads and drops the len bytes of an answer there was no memory for; false when the
 * connection failed. */
static bool skip_answer(int fd, size_t len) {
    unsigned char scratch[4096];
    while (len > 0) {
        size_t n = len < sizeof scratch ? len : sizeof scratch;
        if (!store_read_all(fd, scratch, n)) return false;
        len -= n;
    }
    return true;
}

/* One round trip. *data (malloc'd, NUL-terminated, may be NULL when len is 0) receives
 * the answer when data is not NULL. */
static ddp_status request(store_client *c, int op, const char *key, const void *value, size_t vlen,
                          uint32_t wait_ms, int *status, char **data, size_t *dlen) {
    size_t klen = key ? strlen(key) : 0;
    if (klen > STORE_MAX_KEY)
        return DDP_FAIL(DDP_ERR_ARG, "store: key of %zu bytes is longer than %d", klen,
                        STORE_MAX_KEY);
    if (vlen > STORE_MAX_VALUE)
        return DDP_FAIL(DDP_ERR_ARG, "store: value of %zu bytes is larger than %u", vlen,
                        STORE_MAX_VALUE);
    unsigned char h[STORE_REQ_HEADER + STORE_MAX_KEY]; /* the header and the key */
    h[0] = (unsigned char)op;
    store_put_u32(h + 1, (uint32_t)klen);
    store_put_u32(h + 5, (uint32_t)vlen);
    store_put_u32(h + 9, wait_ms);
    if (klen) memcpy(h + STORE_REQ_HEADER, key, klen);
    unsigned char r[STORE_RESP_HEADER];
    pthread_mutex_lock(&c->lock);
    bool ok = !c->lost && store_write_two(c->fd, h, STORE_REQ_HEADER + klen, value, vlen) &&
              store_read_all(c->fd, r, sizeof r);
    char *buf = NULL;
    size_t len = ok ? store_get_u32(r + 1) : 0;
    if (ok && len > STORE_MAX_MULTI_REPLY) ok = false;
    bool no_memory = false;
    if (ok) {
        buf = ddp_malloc(len + 1);
        no_memory = !buf;
        /* no room for the answer: read it past, so the next request gets its own */
        ok = buf ? store_read_all(c->fd, buf, len) : skip_answer(c->fd, len);
    }
    if (!ok) c->lost = true;
    pthread_mutex_unlock(&c->lock);
    if (ok && no_memory)
        return DDP_FAIL(DDP_ERR_NOMEM, "store: out of memory for a %zu-byte answer from %s", len,
                        c->where);
    if (!ok) {
        free(buf);
        return DDP_FAIL(DDP_ERR_COMM,
                        "store: lost the connection to the rendezvous store at "
                        "%s (did the driver or rank 0 exit?)",
                        c->where);
    }
    buf[len] = '\0';
    *status = r[0];
    if (r[0] == STORE_REFUSED) {
        free(buf);
        return DDP_FAIL(DDP_ERR_NOMEM, "store: the server at %s refused the request (full?)",
                        c->where);
    }
    if (data) {
        *data = buf;
        *dlen = len;
    } else {
        free(buf);
    }
    return DDP_OK;
}

ddp_status store_set(store_client *c, const char *key, const void *value, size_t len) {
    int st;
    return request(c, STORE_OP_SET, key, value, len, 0, &st, NULL, NULL);
}

ddp_status store_get(store_client *c, const char *key, double timeout_s, char **value,
                     size_t *len) {
    *value = NULL;
    *len = 0;
    double until = now_s() + timeout_s;
    for (;;) {
        double left = until - now_s();
        uint32_t slice = left <= 0                ? 0
                         : left * 1000 < SLICE_MS ? (uint32_t)(left * 1000)
                                                  : SLICE_MS;
        int st;
        char *data = NULL;
        size_t dlen = 0;
        DDP_CHECK(request(c, STORE_OP_GET, key, NULL, 0, slice, &st, &data, &dlen));
        if (st == STORE_FOUND) {
            *value = data;
            *len = dlen;
            return DDP_OK;
        }
        free(data);
        if (ddp_interrupt_pending())
            return DDP_FAIL(DDP_ERR_INTERRUPTED, "store: interrupted while waiting for '%s'", key);
        if (now_s() >= until)
            return DDP_FAIL(DDP_ERR_TIMEOUT, "store: '%s' did not appear within %.1f s", key,
                            timeout_s);
    }
}

ddp_status store_wait(store_client *c, const char *const *keys, int n, double timeout_s) {
    double until = now_s() + timeout_s;
    for (int i = 0; i < n; i++) {
        char *v;
        size_t len;
        double left = until - now_s();
        DDP_CHECK(store_get(c, keys[i], left > 0 ? left : 0, &v, &len));
        free(v);
    }
    return DDP_OK;
}

ddp_status store_add(store_client *c, const char *key, int64_t delta, int64_t *result) {
    unsigned char v[8];
    store_put_i64(v, delta);
    int st;
    char *data = NULL;
    size_t dlen = 0;
    DDP_CHECK(request(c, STORE_OP_ADD, key, v, 8, 0, &st, &data, &dlen));
    bool ok = dlen == 8;
    if (ok && result) *result = store_get_i64((unsigned char *)data);
    free(data);
    if (!ok) return DDP_FAIL(DDP_ERR_FORMAT, "store: bad answer to add('%s')", key);
    return DDP_OK;
}

ddp_status store_check(store_client *c, const char *key, bool *present) {
    int st;
    DDP_CHECK(request(c, STORE_OP_CHECK, key, NULL, 0, 0, &st, NULL, NULL));
    *present = st == STORE_FOUND;
    return DDP_OK;
}

ddp_status store_delete_key(store_client *c, const char *key, bool *deleted) {
    int st;
    DDP_CHECK(request(c, STORE_OP_DELETE, key, NULL, 0, 0, &st, NULL, NULL));
    if (deleted) *deleted = st == STORE_FOUND;
    return DDP_OK;
}

ddp_status store_multi_wait(store_client *c, const char *const *keys, int n, int wait_ms,
                            char **values, size_t *lens) {
    return store_exchange(c, NULL, NULL, 0, NULL, keys, n, wait_ms, values, lens);
}

ddp_status store_exchange(store_client *c, const char *set_key, const void *value, size_t len,
                          const char *del_key, const char *const *keys, int n, int wait_ms,
                          char **values, size_t *lens) {
    if (n <= 0 || n > STORE_MAX_MULTI)
        return DDP_FAIL(DDP_ERR_ARG, "store: multi-wait on %d keys (1..%d)", n, STORE_MAX_MULTI);
    size_t dlen = del_key ? strlen(del_key) : 0;
    if (dlen > STORE_MAX_KEY) return DDP_FAIL(DDP_ERR_ARG, "store: key too long");
    size_t head = set_key ? 8 + len + dlen : 0;
    size_t total = head;
    for (int i = 0; i < n; i++) {
        values[i] = NULL;
        lens[i] = 0;
        size_t kl = strlen(keys[i]);
        if (kl == 0 || kl > STORE_MAX_KEY)
            return DDP_FAIL(DDP_ERR_ARG, "store: key of %zu bytes (1..%d)", kl, STORE_MAX_KEY);
        total += 4 + kl;
    }
    if (total > STORE_MAX_VALUE)
        return DDP_FAIL(DDP_ERR_ARG, "store: exchange of %zu bytes is too large", total);
    unsigned char *packed = ddp_malloc(total);
    if (!packed) return DDP_FAIL(DDP_ERR_NOMEM, "store: out of memory");
    size_t at = 0;
    if (set_key) {
        store_put_u32(packed, (uint32_t)len);
        if (len) memcpy(packed + 4, value, len);
        store_put_u32(packed + 4 + len, (uint32_t)dlen);
        if (dlen) memcpy(packed + 8 + len, del_key, dlen);
        at = head;
    }
    for (int i = 0; i < n; i++) {
        size_t kl = strlen(keys[i]);
        store_put_u32(packed + at, (uint32_t)kl);
        memcpy(packed + at + 4, keys[i], kl);
        at += 4 + kl;
    }
    int st;
    char *data = NULL;
    size_t dlen_reply = 0;
    ddp_status s =
        request(c, set_key ? STORE_OP_EXCHANGE : STORE_OP_MULTI_WAIT, set_key ? set_key : "",
                packed, total, wait_ms < 0 ? 0 : (uint32_t)wait_ms, &st, &data, &dlen_reply);
    free(packed);
    if (s != DDP_OK) return s;
    at = 0;
    for (int i = 0; i < n; i++) {
        if (dlen_reply - at < 5) goto bad;
        uint32_t vl = store_get_u32((unsigned char *)data + at + 1);
        bool found = data[at] == STORE_FOUND;
        at += 5;
        if (vl > dlen_reply - at) goto bad;
        if (found) {
            values[i] = ddp_malloc(vl + 1);
            if (!values[i]) goto no_memory;
            memcpy(values[i], data + at, vl);
            values[i][vl] = '\0';
            lens[i] = vl;
        }
        at += vl;
    }
    free(data);
    return DDP_OK;
no_memory:
    s = DDP_FAIL(DDP_ERR_NOMEM, "store: out of memory for the values of a multi-wait");
    goto drop;
bad:
    s = DDP_FAIL(DDP_ERR_FORMAT, "store: malformed multi-wait answer from %s", c->where);
drop:
    free(data);
    for (int i = 0; i < n; i++) {
        free(values[i]);
        values[i] = NULL;
    }
    return s;
}
