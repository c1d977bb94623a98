/* store.h — the rendezvous key-value store: a small server (hosted by the driver, or by
 * rank 0 under an outside launcher) and the client every rank uses to reach it.
 *
 * Keys are strings, values are bytes. The server runs on its own thread; the client is
 * blocking but every wait is bounded by a timeout and checks ddp_interrupt_pending() at
 * least every 50 ms, so Ctrl-C always gets through. The wire protocol is a framed binary
 * protocol over TCP with bounded sizes (STORE_MAX_KEY, STORE_MAX_VALUE): a hostile or
 * confused peer is dropped and the server goes on. When the server listens on a
 * non-loopback address, every peer must first prove it holds the session secret
 * (environment DDPLAB_SECRET, hex) with an HMAC over a fresh server nonce (libsodium's
 * crypto_auth); a peer that fails is logged to stderr and dropped before a single request
 * is read. */
#ifndef DDP_DIST_STORE_H
#define DDP_DIST_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/status.h"

#define STORE_MAX_KEY 1024                /* bytes in one key */
#define STORE_MAX_VALUE (16u << 20)       /* bytes in one value */
#define STORE_MAX_TOTAL ((size_t)1 << 28) /* bytes held by one server, keys + values */
#define STORE_MAX_MULTI 4096              /* keys in one store_multi_wait request */

/* ---- server -------------------------------------------------------------------- */

typedef struct store_server store_server;

typedef struct {
    const char *bind_addr;  /* numeric IPv4/IPv6 address or "localhost"; NULL: 127.0.0.1 */
    int port;               /* 0: the kernel picks a free port (see store_server_port) */
    bool force_auth;        /* require the secret even on loopback (tests) */
    const char *secret_hex; /* NULL: the environment's DDPLAB_SECRET */
    unsigned max_wait_ms;   /* 0: STORE_MAX_WAIT_MS; a lower cap on every request's wait
                             * (the fuzz target, which must not sleep a second an input) */
} store_server_options;

/* Starts a server listening on bind_addr:port (port 0 = a free port) on its own thread.
 * Authentication is required when bind_addr is not a loopback address; then a secret
 * must be in DDPLAB_SECRET (DDP_ERR_ARG otherwise). Fails with DDP_ERR_IO when the
 * address cannot be bound. The caller owns *out and stops it with store_server_stop. */
ddp_status store_server_start(const char *bind_addr, int port, store_server **out);
/* Same, with every option spelled out. */
ddp_status store_server_start_opts(const store_server_options *opts, store_server **out);
/* Serves one connected peer (greeting, authentication when required, then requests) on
 * the calling thread until it disconnects or misbehaves; takes ownership of fd and closes
 * it. The same code as a peer accepted from the network: the seam for the store's fuzz
 * target (tests/fuzz/fuzz_store.c), which feeds it bytes through a socketpair. */
void store_server_serve_fd(store_server *s, int fd);
/* The port the server listens on (useful after asking for port 0). */
int store_server_port(const store_server *s);
/* Closes every connection, joins the threads and frees s. The listening thread is woken
 * at once (a pipe in its poll set), so stopping takes no polling tick. NULL-safe. Cannot
 * fail. */
void store_server_stop(store_server *s);

/* ---- client -------------------------------------------------------------------- */

typedef struct store_client store_client;

/* Connects to host:port, retrying until timeout_s (the server may not be up yet), and
 * authenticates with DDPLAB_SECRET when the server asks for it. Fails with DDP_ERR_TIMEOUT,
 * DDP_ERR_INTERRUPTED, DDP_ERR_IO or DDP_ERR_ARG (server wants a secret we lack).
 * One client may be shared by threads: requests are serialised by a lock. */
ddp_status store_connect(const char *host, int port, double timeout_s, store_client **out);
/* Closes the connection and frees c. NULL-safe. */
void store_close(store_client *c);

/* Sets key to the len bytes at value (replacing any old value). */
ddp_status store_set(store_client *c, const char *key, const void *value, size_t len);
/* Waits until key is present (or timeout_s passes: DDP_ERR_TIMEOUT; Ctrl-C:
 * DDP_ERR_INTERRUPTED) and returns a malloc'd copy of its value (NUL-terminated for
 * convenience; *len excludes the NUL) that the caller frees. */
ddp_status store_get(store_client *c, const char *key, double timeout_s, char **value, size_t *len);
/* Waits until every one of the n keys is present. */
ddp_status store_wait(store_client *c, const char *const *keys, int n, double timeout_s);
/* Atomically adds delta to the integer held at key (absent = 0) and returns the new
 * value in *result (may be NULL). */
ddp_status store_add(store_client *c, const char *key, int64_t delta, int64_t *result);
/* Whether key is present now; never blocks on the key. */
ddp_status store_check(store_client *c, const char *key, bool *present);
/* Removes key; *deleted (may be NULL) says whether it was there. */
ddp_status store_delete_key(store_client *c, const char *key, bool *deleted);

/* One server round trip that waits up to wait_ms (at most 1000) until ALL n keys are
 * present, then answers with whatever is present: values[i] is a malloc'd copy (or NULL
 * when key i is absent) and lens[i] its length. The caller frees every values[i]. This is
 * the building block of interruptible multi-key waits (the fingerprint exchange). */
ddp_status store_multi_wait(store_client *c, const char *const *keys, int n, int wait_ms,
                            char **values, size_t *lens);

/* store_multi_wait preceded, in the same round trip, by setting set_key to value unless
 * set_key is present already (the first write wins) and deleting del_key (NULL: none).
 * The fingerprint exchange of every collective is one of these, so checking costs one
 * store round trip. */
ddp_status store_exchange(store_client *c, const char *set_key, const void *value, size_t len,
                          const char *del_key, const char *const *keys, int n, int wait_ms,
                          char **values, size_t *lens);

#endif
