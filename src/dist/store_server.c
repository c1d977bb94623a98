/* store_server.c — the rendezvous store's server: a hash table of key -> bytes behind one
 * lock, a listening thread, and one thread per connected peer.
 *
 * A thread per peer keeps the code short and a misbehaving peer harmless to the others:
 * it can only stall its own thread, and every size it announces is checked against the
 * bounds of store.h before anything is allocated. Waiters sleep on one condition
 * variable that every change broadcasts. Authentication (store_wire.h) happens before a
 * single request byte is read; failures are logged to stderr and the peer is dropped. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "base/alloc.h"
#include "dist/store.h"
#include "dist/store_wire.h"

#define STORE_BUCKETS 1024
#define STORE_MAX_PEERS 4096

typedef struct entry {
    struct entry *next;
    char *key;
    unsigned char *value;
    size_t len;
} entry;

typedef struct peer {
    struct peer *next;
    int fd;
    char name[64];
    struct store_server *server;
} peer;

struct store_server {
    int listen_fd;
    int wake_fd[2]; /* a pipe: store_server_stop writes a byte, the accept thread wakes */
    int port;
    bool auth;
    uint32_t max_wait_ms;
    unsigned char key[32];
    pthread_t accept_thread;
    pthread_mutex_t lock;
    pthread_cond_t changed; /* a key was set / the server is stopping */
    pthread_cond_t peers_gone;
    bool stopping;
    peer *peers;
    int npeers;
    entry *buckets[STORE_BUCKETS];
    size_t total_bytes;
};

/* ---- the table (all under s->lock) ----------------------------------------------- */

static uint32_t hash_key(const char *key) {
    uint32_t h = 2166136261u; /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)key; *p; p++) {
        h ^= *p;
        h *= 16777619u;
    }
    return h % STORE_BUCKETS;
}

static entry **find_slot(store_server *s, const char *key) {
    entry **e = &s->buckets[hash_key(key)];
    while (*e && strcmp((*e)->key, key) != 0) e = &(*e)->next;
    return e;
}

static entry *find(store_server *s, const char *key) {
    return *find_slot(s, key);
}

/* Sets key to a copy of value; false when the server's byte budget would be exceeded
 * or memory is short. */
static bool table_set(store_server *s, const char *key, const void *value, size_t len) {
    entry **slot = find_slot(s, key);
    entry *e = *slot;
    size_t old = e ? e->len : 0;
    size_t klen = strlen(key);
    if (s->total_bytes - old + len + (e ? 0 : klen) > STORE_MAX_TOTAL) return false;
    unsigned char *copy = ddp_malloc(len ? len : 1);
    if (!copy) return false;
    memcpy(copy, value, len);
    if (!e) {
        e = ddp_calloc(1, sizeof *e);
        char *k = ddp_strdup(key);
        if (!e || !k) {
            free(e);
            free(k);
            free(copy);
            return false;
        }
        e->key = k;
        *slot = e;
        s->total_bytes += klen;
    }
    free(e->value);
    e->value = copy;
    e->len = len;
    s->total_bytes = s->total_bytes - old + len;
    return true;
}

static bool table_delete(store_server *s, const char *key) {
    entry **slot = find_slot(s, key);
    entry *e = *slot;
    if (!e) return false;
    *slot = e->next;
    s->total_bytes -= e->len + strlen(e->key);
    free(e->key);
    free(e->value);
    free(e);
    return true;
}

static void table_free(store_server *s) {
    for (int i = 0; i < STORE_BUCKETS; i++) {
        while (s->buckets[i]) {
            entry *e = s->buckets[i];
            s->buckets[i] = e->next;
            free(e->key);
            free(e->value);
            free(e);
        }
    }
}

/* Absolute CLOCK_REALTIME deadline wait_ms from now, for pthread_cond_timedwait. */
static struct timespec deadline_in(uint32_t wait_ms) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += wait_ms / 1000;
    ts.tv_nsec += (long)(wait_ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

/* ---- one peer ------------------------------------------------------------------- */

static bool reply(int fd, int status, const void *data, size_t len) {
    unsigned char h[STORE_RESP_HEADER];
    h[0] = (unsigned char)status;
    store_put_u32(h + 1, (uint32_t)len);
    return store_write_two(fd, h, sizeof h, data, len);
}

static void drop(peer *p, const char *why) {
    fprintf(stderr, "ddplab store: dropped peer %s: %s\n", p->name, why);
}

/* Answers a multi-wait: waits until all keys in the packed list are present (or the
 * wait ends), then sends what is there. Returns false when the peer must be dropped. */
static bool serve_multi_wait(peer *p, const unsigned char *list, size_t len, uint32_t wait_ms) {
    store_server *s = p->server;
    /* unpack and validate the key list: n x (u32 len | key) */
    const char *keys[STORE_MAX_MULTI];
    char *buf = ddp_malloc(len + STORE_MAX_MULTI);
    if (!buf) return false;
    size_t at = 0, out = 0;
    int n = 0;
    while (at < len) {
        if (n == STORE_MAX_MULTI || len - at < 4) goto bad;
        uint32_t kl = store_get_u32(list + at);
        at += 4;
        if (kl == 0 || kl > STORE_MAX_KEY || kl > len - at || memchr(list + at, 0, kl)) goto bad;
        memcpy(buf + out, list + at, kl);
        buf[out + kl] = '\0';
        keys[n++] = buf + out;
        out += kl + 1;
        at += kl;
    }
    pthread_mutex_lock(&s->lock);
    struct timespec until = deadline_in(wait_ms);
    for (;;) {
        int present = 0;
        for (int i = 0; i < n; i++) present += find(s, keys[i]) != NULL;
        if (present == n || s->stopping) break;
        if (pthread_cond_timedwait(&s->changed, &s->lock, &until) == ETIMEDOUT) break;
    }
    entry *found[STORE_MAX_MULTI]; /* looked up once for the size and the answer */
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        found[i] = find(s, keys[i]);
        total += 5 + (found[i] ? found[i]->len : 0);
    }
    unsigned char *answer = total <= STORE_MAX_MULTI_REPLY ? ddp_malloc(total ? total : 1) : NULL;
    if (answer) {
        size_t w = 0;
        for (int i = 0; i < n; i++) {
            const entry *e = found[i];
            answer[w] = e ? STORE_FOUND : STORE_ABSENT;
            store_put_u32(answer + w + 1, e ? (uint32_t)e->len : 0);
            if (e && e->len) memcpy(answer + w + 5, e->value, e->len);
            w += 5 + (e ? e->len : 0);
        }
    }
    pthread_mutex_unlock(&s->lock);
    free(buf);
    bool ok =
        answer ? reply(p->fd, STORE_FOUND, answer, total) : reply(p->fd, STORE_REFUSED, NULL, 0);
    free(answer);
    return ok;
bad:
    free(buf);
    drop(p, "malformed multi-wait request");
    return false;
}

/* Answers an exchange: set one key unless it is present already, delete another, then a
 * multi-wait (one round trip for the fingerprint exchange of a collective). The first
 * write wins so that every reader of a fingerprint slot sees one value: its owner's call,
 * or the mark of a member that gave up waiting for it (process_group.c). False when the
 * peer must be dropped. */
static bool serve_exchange(peer *p, const char *key, const unsigned char *v, size_t len,
                           uint32_t wait_ms) {
    store_server *s = p->server;
    if (len < 4) goto bad;
    uint32_t slen = store_get_u32(v);
    if (slen > len - 4 || len - 4 - slen < 4) goto bad;
    const unsigned char *set = v + 4;
    size_t at = 4 + slen;
    uint32_t dlen = store_get_u32(v + at);
    at += 4;
    if (dlen > STORE_MAX_KEY || dlen > len - at || memchr(v + at, 0, dlen)) goto bad;
    char del[STORE_MAX_KEY + 1];
    memcpy(del, v + at, dlen);
    del[dlen] = '\0';
    at += dlen;
    pthread_mutex_lock(&s->lock);
    bool stored = find(s, key) != NULL || table_set(s, key, set, slen);
    if (dlen) table_delete(s, del);
    pthread_cond_broadcast(&s->changed);
    pthread_mutex_unlock(&s->lock);
    if (!stored) return reply(p->fd, STORE_REFUSED, NULL, 0);
    return serve_multi_wait(p, v + at, len - at, wait_ms);
bad:
    drop(p, "malformed exchange request");
    return false;
}

/* Serves one request; false when the connection must end. */
static bool serve_request(peer *p) {
    store_server *s = p->server;
    unsigned char h[STORE_REQ_HEADER];
    if (!store_read_all(p->fd, h, sizeof h)) return false;
    int op = h[0];
    uint32_t klen = store_get_u32(h + 1), vlen = store_get_u32(h + 5);
    uint32_t wait_ms = store_get_u32(h + 9);
    if (op < STORE_OP_SET || op > STORE_OP_EXCHANGE || klen > STORE_MAX_KEY ||
        vlen > STORE_MAX_VALUE || (op != STORE_OP_MULTI_WAIT && klen == 0)) {
        drop(p, "request out of bounds (not a ddplab store client?)");
        return false;
    }
    if (wait_ms > s->max_wait_ms) wait_ms = s->max_wait_ms;
    char key[STORE_MAX_KEY + 1];
    unsigned char *value = ddp_malloc(vlen ? vlen : 1);
    if (!value) return false;
    bool ok = store_read_all(p->fd, key, klen) && store_read_all(p->fd, value, vlen);
    key[klen] = '\0';
    if (ok && strlen(key) != klen) {
        drop(p, "key with a NUL byte");
        ok = false;
    }
    if (!ok) {
        free(value);
        return false;
    }
    if (op == STORE_OP_EXCHANGE) {
        ok = serve_exchange(p, key, value, vlen, wait_ms);
        free(value);
        return ok;
    }
    if (op == STORE_OP_MULTI_WAIT) {
        ok = serve_multi_wait(p, value, vlen, wait_ms);
        free(value);
        return ok;
    }
    pthread_mutex_lock(&s->lock);
    int status = STORE_FOUND;
    unsigned char *data = NULL, number[8];
    size_t dlen = 0;
    switch (op) {
    case STORE_OP_SET:
        if (table_set(s, key, value, vlen))
            pthread_cond_broadcast(&s->changed);
        else
            status = STORE_REFUSED;
        break;
    case STORE_OP_GET: {
        struct timespec until = deadline_in(wait_ms);
        while (!find(s, key) && !s->stopping &&
               pthread_cond_timedwait(&s->changed, &s->lock, &until) != ETIMEDOUT) {
        }
        entry *e = find(s, key);
        if (!e) {
            status = STORE_ABSENT;
        } else if ((data = ddp_malloc(e->len ? e->len : 1)) != NULL) {
            memcpy(data, e->value, e->len);
            dlen = e->len;
        } else {
            status = STORE_REFUSED;
        }
        break;
    }
    case STORE_OP_ADD: {
        entry *e = find(s, key);
        int64_t v = 0;
        if (e && e->len == 8) v = store_get_i64(e->value);
        if (vlen != 8) {
            status = STORE_REFUSED;
            break;
        }
        /* a counter past INT64_MAX is refused, not wrapped (the fuzzer's first find) */
        if (__builtin_add_overflow(v, store_get_i64(value), &v)) {
            status = STORE_REFUSED;
            break;
        }
        store_put_i64(number, v);
        if (table_set(s, key, number, 8)) {
            pthread_cond_broadcast(&s->changed);
            data = number;
            dlen = 8;
        } else {
            status = STORE_REFUSED;
        }
        break;
    }
    case STORE_OP_CHECK:
        status = find(s, key) ? STORE_FOUND : STORE_ABSENT;
        break;
    case STORE_OP_DELETE:
        status = table_delete(s, key) ? STORE_FOUND : STORE_ABSENT;
        break;
    }
    pthread_mutex_unlock(&s->lock);
    free(value);
    ok = reply(p->fd, status, data, dlen);
    if (data != number) free(data);
    return ok;
}

/* The server's side of the handshake: hello, then (if required) the peer's proof. */
static bool greet(peer *p) {
    store_server *s = p->server;
    unsigned char hello[STORE_HELLO_BYTES];
    memcpy(hello, STORE_MAGIC, 4);
    hello[4] = STORE_VERSION;
    hello[5] = s->auth ? 1 : 0;
    randombytes_buf(hello + 6, STORE_NONCE_BYTES);
    if (!store_write_all(p->fd, hello, sizeof hello)) return false;
    if (!s->auth) return true;
    /* a silent peer must not hold its thread forever */
    struct timeval tv = {.tv_sec = 10, .tv_usec = 0};
    setsockopt(p->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    unsigned char mac[crypto_auth_BYTES];
    if (!store_read_all(p->fd, mac, sizeof mac)) {
        drop(p, "no authentication before the deadline");
        return false;
    }
    if (crypto_auth_verify(mac, hello + 6, STORE_NONCE_BYTES, s->key) != 0) {
        drop(p, "authentication failed (wrong or missing session secret)");
        return false;
    }
    tv.tv_sec = 0;
    setsockopt(p->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return store_write_all(p->fd, "K", 1);
}

static void *peer_main(void *arg) {
    peer *p = arg;
    store_server *s = p->server;
    if (greet(p)) {
        while (serve_request(p)) {
        }
    }
    pthread_mutex_lock(&s->lock);
    for (peer **q = &s->peers; *q; q = &(*q)->next) {
        if (*q == p) {
            *q = p->next;
            break;
        }
    }
    close(p->fd);
    free(p);
    if (--s->npeers == 0) pthread_cond_broadcast(&s->peers_gone);
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

static void *peer_thread(void *arg) {
    ddp_alloc_share();
    return peer_main(arg);
}

/* Accepts peers until store_server_stop writes to the wake pipe. It sleeps in poll with no
 * timeout: the pipe is the only way it learns to stop, so a stop never waits for a tick. */
static void *accept_main(void *arg) {
    store_server *s = arg;
    ddp_alloc_share(); /* the server's threads: one countdown for the tests' walk */
    for (;;) {
        struct pollfd pfd[2] = {{.fd = s->listen_fd, .events = POLLIN},
                                {.fd = s->wake_fd[0], .events = POLLIN}};
        int r = poll(pfd, 2, -1);
        if (pfd[1].revents) return NULL;
        if (r <= 0 || !(pfd[0].revents & POLLIN)) continue;
        struct sockaddr_storage addr;
        socklen_t alen = sizeof addr;
        int fd = accept4(s->listen_fd, (struct sockaddr *)&addr, &alen, SOCK_CLOEXEC);
        if (fd < 0) continue;
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        peer *p = ddp_calloc(1, sizeof *p);
        pthread_mutex_lock(&s->lock);
        if (!p || s->npeers >= STORE_MAX_PEERS) {
            pthread_mutex_unlock(&s->lock);
            fprintf(stderr, "ddplab store: refused a peer (%s)\n",
                    p ? "too many connections" : "out of memory");
            free(p);
            close(fd);
            continue;
        }
        p->fd = fd;
        p->server = s;
        char host[48] = "?", serv[16] = "?";
        getnameinfo((struct sockaddr *)&addr, alen, host, sizeof host, serv, sizeof serv,
                    NI_NUMERICHOST | NI_NUMERICSERV);
        snprintf(p->name, sizeof p->name, "%s:%s", host, serv);
        pthread_t th;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        if (pthread_create(&th, &attr, peer_thread, p) != 0) {
            pthread_mutex_unlock(&s->lock);
            close(fd);
            free(p);
        } else {
            p->next = s->peers;
            s->peers = p;
            s->npeers++;
            pthread_mutex_unlock(&s->lock);
        }
        pthread_attr_destroy(&attr);
    }
}

/* ---- life cycle ------------------------------------------------------------------ */

static bool is_loopback(const struct sockaddr *a) {
    if (a->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)a;
        return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
    }
    if (a->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)a;
        return IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr);
    }
    return false;
}

ddp_status store_server_start(const char *bind_addr, int port, store_server **out) {
    store_server_options o = {.bind_addr = bind_addr, .port = port};
    return store_server_start_opts(&o, out);
}

ddp_status store_server_start_opts(const store_server_options *opts, store_server **out) {
    *out = NULL;
    const char *addr = opts->bind_addr ? opts->bind_addr : "127.0.0.1";
    if (opts->port < 0 || opts->port > 65535)
        return DDP_FAIL(DDP_ERR_ARG, "store: port %d is not a TCP port (0-65535)", opts->port);
    if (sodium_init() < 0) return DDP_FAIL(DDP_ERR_IO, "store: libsodium failed to start");
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
    struct addrinfo *res = NULL;
    char portstr[16];
    snprintf(portstr, sizeof portstr, "%d", opts->port);
    int gai = getaddrinfo(addr, portstr, &hints, &res);
    if (gai != 0)
        return DDP_FAIL(DDP_ERR_ARG, "store: cannot use address '%s': %s", addr, gai_strerror(gai));
    store_server *s = calloc(1, sizeof *s);
    if (!s) {
        freeaddrinfo(res);
        return DDP_FAIL(DDP_ERR_NOMEM, "store: out of memory");
    }
    s->auth = opts->force_auth || !is_loopback(res->ai_addr);
    s->max_wait_ms = opts->max_wait_ms && opts->max_wait_ms < STORE_MAX_WAIT_MS ? opts->max_wait_ms
                                                                                : STORE_MAX_WAIT_MS;
    if (s->auth) {
        const char *secret = opts->secret_hex ? opts->secret_hex : getenv("DDPLAB_SECRET");
        if (!secret || !store_secret_key(secret, s->key)) {
            freeaddrinfo(res);
            free(s);
            return DDP_FAIL(DDP_ERR_ARG,
                            "store: listening on %s needs the session secret in "
                            "DDPLAB_SECRET (hex); it is %s",
                            addr, secret ? "not hex" : "not set");
        }
    }
    s->listen_fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    if (s->listen_fd >= 0) setsockopt(s->listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (s->listen_fd < 0 || bind(s->listen_fd, res->ai_addr, res->ai_addrlen) != 0 ||
        listen(s->listen_fd, 128) != 0) {
        int err = errno;
        freeaddrinfo(res);
        if (s->listen_fd >= 0) close(s->listen_fd);
        free(s);
        return DDP_FAIL(DDP_ERR_IO, "store: cannot listen on %s:%d: %s", addr, opts->port,
                        strerror(err));
    }
    freeaddrinfo(res);
    struct sockaddr_storage bound;
    socklen_t blen = sizeof bound;
    getsockname(s->listen_fd, (struct sockaddr *)&bound, &blen);
    s->port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                                : ((struct sockaddr_in *)&bound)->sin_port);
    if (pipe2(s->wake_fd, O_CLOEXEC | O_NONBLOCK) != 0) {
        close(s->listen_fd);
        free(s);
        return DDP_FAIL(DDP_ERR_IO, "store: cannot create the wake-up pipe: %s", strerror(errno));
    }
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->changed, NULL);
    pthread_cond_init(&s->peers_gone, NULL);
    if (pthread_create(&s->accept_thread, NULL, accept_main, s) != 0) {
        close(s->listen_fd);
        close(s->wake_fd[0]);
        close(s->wake_fd[1]);
        pthread_mutex_destroy(&s->lock);
        pthread_cond_destroy(&s->changed);
        pthread_cond_destroy(&s->peers_gone);
        free(s);
        return DDP_FAIL(DDP_ERR_IO, "store: cannot start the server thread");
    }
    *out = s;
    return DDP_OK;
}

void store_server_serve_fd(store_server *s, int fd) {
    peer *p = ddp_calloc(1, sizeof *p);
    if (!p) {
        close(fd);
        return;
    }
    p->fd = fd;
    p->server = s;
    snprintf(p->name, sizeof p->name, "fd %d", fd);
    pthread_mutex_lock(&s->lock);
    p->next = s->peers;
    s->peers = p;
    s->npeers++;
    pthread_mutex_unlock(&s->lock);
    peer_main(p); /* unlinks, closes and frees p */
}

int store_server_port(const store_server *s) {
    return s->port;
}

void store_server_stop(store_server *s) {
    if (!s) return;
    pthread_mutex_lock(&s->lock);
    s->stopping = true;
    pthread_cond_broadcast(&s->changed);
    pthread_mutex_unlock(&s->lock);
    /* the pipe has room (it is written once), so this byte is there when poll looks */
    while (write(s->wake_fd[1], "x", 1) < 0 && errno == EINTR) {
    }
    pthread_join(s->accept_thread, NULL);
    close(s->listen_fd);
    close(s->wake_fd[0]);
    close(s->wake_fd[1]);
    pthread_mutex_lock(&s->lock);
    for (peer *p = s->peers; p; p = p->next) shutdown(p->fd, SHUT_RDWR);
    while (s->npeers > 0) pthread_cond_wait(&s->peers_gone, &s->lock);
    pthread_mutex_unlock(&s->lock);
    table_free(s);
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->changed);
    pthread_cond_destroy(&s->peers_gone);
    sodium_memzero(s->key, sizeof s->key);
    free(s);
}
