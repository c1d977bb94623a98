/* protocol.h — framing on the control channel between the driver and its ranks.
 *
 * A frame is an 8-byte header (payload length as a big-endian u32, a type byte, three
 * zero bytes) followed by the payload. Lengths above PROTO_MAX_PAYLOAD, unknown types
 * and non-zero reserved bytes are rejected as corrupt, so a hostile or confused peer
 * can never make the reader allocate without bound. Payloads that carry several
 * strings separate them with NUL bytes (see proto_split). Writers send whole frames;
 * readers either block for one frame (proto_recv) or feed a buffered reader from a
 * non-blocking socket as poll() reports data (proto_reader). */
#ifndef DDP_RUNTIME_PROTOCOL_H
#define DDP_RUNTIME_PROTOCOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/status.h"

#define PROTO_HEADER_SIZE 8
#define PROTO_MAX_PAYLOAD (64u * 1024u * 1024u)

typedef enum {
    /* rank -> driver */
    MSG_HELLO = 1,   /* "rank\0pid\0host\0device" */
    MSG_OUTPUT,      /* bytes the rank printed */
    MSG_DONE,        /* the chunk ran to the end (empty) */
    MSG_ERROR,       /* the chunk raised an error: message with traceback */
    MSG_INTERRUPTED, /* Ctrl-C stopped the chunk: message */
    MSG_COMPLETIONS, /* candidates, NUL-separated */
    MSG_STATE,       /* what the rank is doing now ("running", "in all_reduce #3 ...") */
    /* driver -> rank */
    /* RUN and RUN_FILE start with "chunk id\0targets\0": targets has one '1' or '0' per
     * global rank, saying who runs this chunk (the REPL's :on) */
    MSG_RUN,      /* "chunk id\0targets\0chunkname\0chunk bytes" */
    MSG_RUN_FILE, /* "chunk id\0targets\0path\0arg1\0arg2..." */
    MSG_COMPLETE, /* the word to complete */
    MSG_BYE,      /* exit now (empty) */
    /* agent (ddplab --node-rank K) <-> driver */
    MSG_AGENT_HELLO, /* agent -> driver: "node_rank" */
    MSG_SIGNAL_RANK, /* driver -> agent: "rank\0chunk id": interrupt that local rank */
    MSG_RANK_EXIT,   /* agent -> driver: "rank\0waitpid status" */
    /* Each world of ranks (start-up, every :restart) starts with START_RANKS and, on a
     * restart, the old one ends with END_RANKS first. The agent takes them in order on its
     * one connection, so what it sends before RANKS_ENDED is about the old ranks and what
     * follows about the new ones. */
    MSG_START_RANKS, /* driver -> agent: start this node's ranks (empty) */
    MSG_END_RANKS,   /* driver -> agent: end this node's ranks and their process groups */
    MSG_RANKS_ENDED, /* agent -> driver: they are all reaped (empty) */
    /* Typed events, rank -> driver, while a chunk runs (proto_event below): what a lesson's
     * check concluded, a progress bar's tick. The driver renders them; it never parses a
     * rank's printed output for meaning. */
    MSG_EVENT,
    /* c.gather of the lesson checks, without the learner's process group: every rank of
     * the chunk sends its value (serialised by the engine, opaque here); once each one has
     * sent or ended, the driver answers every sender with all of them. */
    MSG_GATHER,   /* rank -> driver: the value's bytes */
    MSG_GATHERED, /* driver -> rank: per global rank a u32 big-endian length (or
                   * PROTO_GATHER_MISSING: that rank sent nothing) and the bytes */
    /* rank -> driver, at the end of a chunk in which it used a GPU (when it changed):
     * "cuda:N\0allocated bytes\0reserved bytes" (decimal), for :ranks */
    MSG_DEVICE,
    MSG_TYPE_END, /* one past the last valid type */
} msg_type;

typedef struct {
    msg_type type;
    uint32_t len;
    char *data; /* owned, len bytes plus a terminating NUL (never NULL after a receive) */
} proto_frame;

#define PROTO_GATHER_MISSING 0xffffffffu

/* ---- typed events (MSG_EVENT) ------------------------------------------------------------ */

typedef enum {
    PROTO_EVENT_VERDICT = 1, /* "verdict\0pass|fail|defect\0message" */
    PROTO_EVENT_PROGRESS,    /* "progress\0done\0total\0label" */
    PROTO_EVENT_ENDED,       /* "ended": the chunk's Lua code is over (sent before the rank
                              * tells its peers, so the driver learns who ended first) */
} proto_event_kind;

typedef enum { PROTO_VERDICT_PASS, PROTO_VERDICT_FAIL, PROTO_VERDICT_DEFECT } proto_verdict;

typedef struct proto_event {
    proto_event_kind kind;
    proto_verdict verdict;
    const char *message; /* verdict: in words ("" when none); points into the payload */
    long done, total;    /* progress: done of total steps */
    const char *label;   /* progress: "" when none; points into the payload */
} proto_event;

/* Writes the payload of a MSG_EVENT into buf (cap bytes; the message or label is cut to
 * fit). Returns its length. */
size_t proto_event_encode(const proto_event *ev, char *buf, size_t cap);
/* Parses a MSG_EVENT payload in place (fields become NUL-terminated strings in data).
 * Fails with DDP_ERR_FORMAT on an unknown kind or missing fields. */
ddp_status proto_event_decode(char *data, uint32_t len, proto_event *out);

/* A short name for a frame type ("HELLO", "RUN", ...), for messages. */
const char *proto_type_name(int type);

/* Sends one frame on a blocking fd (loops over short writes, retries EINTR, never raises
 * SIGPIPE). Fails with DDP_ERR_COMM when the peer is gone, DDP_ERR_ARG when len is
 * above PROTO_MAX_PAYLOAD. Not thread-safe per fd: callers that share an fd lock. */
ddp_status proto_send(int fd, msg_type type, const void *data, size_t len);

/* Blocks until one whole frame arrived on fd, or `timeout_ms` ran out (-1: forever).
 * On success *out owns a new payload (free with proto_frame_free). Fails with
 * DDP_ERR_COMM on end of stream (the message says "closed"), DDP_ERR_FORMAT on a bad
 * header, DDP_ERR_TIMEOUT when the deadline passed. */
ddp_status proto_recv(int fd, int timeout_ms, proto_frame *out);

void proto_frame_free(proto_frame *f);

/* A buffered reader for one non-blocking fd, fed when poll() says it is readable. */
typedef struct {
    char *buf;
    size_t start, len, cap; /* unread bytes are buf[start, len) */
    bool eof;
} proto_reader;

void proto_reader_init(proto_reader *r);
void proto_reader_free(proto_reader *r);
/* Reads what is available without blocking. Sets r->eof at end of stream. Fails with
 * DDP_ERR_IO on a read error, DDP_ERR_NOMEM when the buffer cannot grow. */
ddp_status proto_reader_fill(proto_reader *r, int fd);
/* Appends bytes as if they had been read (used by tests and by proto_reader_fill). */
ddp_status proto_reader_push(proto_reader *r, const void *bytes, size_t len);
/* Takes the next whole frame out of the buffer: returns DDP_OK and sets *got to true with
 * *out filled (owned by the caller), or DDP_OK with *got false when more bytes are
 * needed, or DDP_ERR_FORMAT when the buffered header is corrupt. */
ddp_status proto_reader_next(proto_reader *r, proto_frame *out, bool *got);

/* ---- TCP and authentication (control channel across nodes) ------------------------- */

#define PROTO_KEY_BYTES 32

/* The control channel's key, derived from the session secret in DDPLAB_SECRET (hex, as
 * the store reads it). Fails with DDP_ERR_ARG when it is missing or not hex. */
ddp_status proto_load_secret(unsigned char key[PROTO_KEY_BYTES]);

/* Mutual challenge-response over fresh nonces (libsodium's crypto_auth, HMAC-SHA512-256):
 * each side proves it holds the key before a single frame is read or sent, so a peer
 * without the secret can neither run code on the ranks nor pose as the driver. Bounded by
 * timeout_ms; fails with DDP_ERR_COMM when the peer does not hold the key. */
ddp_status proto_auth_server(int fd, const unsigned char key[PROTO_KEY_BYTES], int timeout_ms);
ddp_status proto_auth_client(int fd, const unsigned char key[PROTO_KEY_BYTES], int timeout_ms);

/* A listening TCP socket (CLOEXEC, non-blocking) on a numeric address and port. */
ddp_status proto_listen_tcp(const char *addr, int port, int *fd_out);
/* Connects to host:port, retrying until timeout_ms passes (the peer may start later). */
ddp_status proto_connect_tcp(const char *host, int port, int timeout_ms, int *fd_out);

/* Splits a NUL-separated payload in place into at most `max` strings; returns how many.
 * The last field runs to the end of the payload (it may hold NULs when max is reached). */
int proto_split(char *data, uint32_t len, char **fields, int max);

#endif
