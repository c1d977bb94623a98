/* store_wire.h — what the store server (store_server.c) and client (store.c) agree on:
 * the framing of the wire protocol and two helpers for whole-buffer socket I/O.
 *
 * Connection: the server speaks first with a hello (magic "DDPS", version, auth flag,
 * 32-byte nonce). If the auth flag is set, the client answers with crypto_auth(nonce)
 * keyed by the session secret and the server confirms with one byte 'K' (or drops the
 * peer). Then requests and responses alternate:
 *   request:  u8 op | u32 key_len | u32 value_len | u32 wait_ms | key | value
 *   response: u8 status | u32 len | data
 * All integers little-endian. Private to src/dist. */
#ifndef DDP_DIST_STORE_WIRE_H
#define DDP_DIST_STORE_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define STORE_MAGIC "DDPS"
#define STORE_VERSION 1
#define STORE_NONCE_BYTES 32
#define STORE_HELLO_BYTES (4 + 1 + 1 + STORE_NONCE_BYTES)
#define STORE_REQ_HEADER 13
#define STORE_RESP_HEADER 5
#define STORE_MAX_WAIT_MS 1000
/* A multi-wait answer holds up to this many bytes of values. */
#define STORE_MAX_MULTI_REPLY ((size_t)64 << 20)

enum {
    STORE_OP_SET = 1,
    STORE_OP_GET = 2, /* waits up to wait_ms for the key */
    STORE_OP_ADD = 3,
    STORE_OP_CHECK = 4,
    STORE_OP_DELETE = 5,
    STORE_OP_MULTI_WAIT = 6, /* value: n x (u32 len | key); reply: n x (u8 | u32 | bytes) */
    /* key: set this key; value: u32 len | bytes to set | u32 len | key to delete (len 0:
     * none) | the key list of a multi-wait; reply: as MULTI_WAIT */
    STORE_OP_EXCHANGE = 7,
};

enum { STORE_FOUND = 0, STORE_ABSENT = 1, STORE_REFUSED = 2 };

/* Little-endian encoding of the integers on the wire. */
void store_put_u32(unsigned char *p, uint32_t v);
uint32_t store_get_u32(const unsigned char *p);
void store_put_i64(unsigned char *p, int64_t v);
int64_t store_get_i64(const unsigned char *p);

/* Writes/reads exactly len bytes; false on error or end of stream (errno tells). */
bool store_write_all(int fd, const void *buf, size_t len);
/* Writes a then b (b may be NULL with blen 0) with as few system calls as possible, so a
 * small request or answer leaves as one TCP segment: split writes cost the peer one
 * wake-up per piece, which showed as a third of a small collective's time. */
bool store_write_two(int fd, const void *a, size_t alen, const void *b, size_t blen);
bool store_read_all(int fd, void *buf, size_t len);
/* Derives the 32-byte crypto_auth key from the hex secret; false if it is not hex. */
bool store_secret_key(const char *secret_hex, unsigned char key[32]);

#endif
