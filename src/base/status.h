/* status.h — the core's error layer: a status code returned up the stack, with one
 * message in the learner's words kept per thread.
 *
 * Every core function that can fail returns ddp_status. On failure it records a message
 * with DDP_FAIL (which also notes file:line for debugging) and returns the code; callers
 * pass it up with DDP_CHECK. Only the Lua bindings turn a status into a Lua error, and
 * only main() exits. Nothing here allocates. */
#ifndef DDP_BASE_STATUS_H
#define DDP_BASE_STATUS_H

typedef enum {
    DDP_OK = 0,
    DDP_ERR_ARG,         /* bad argument: shape, dtype, index, value */
    DDP_ERR_NOMEM,       /* an allocation failed or was refused as too large */
    DDP_ERR_IO,          /* a file or socket operation failed */
    DDP_ERR_FORMAT,      /* a file or message is truncated, corrupt or hostile */
    DDP_ERR_UNSUPPORTED, /* not in this build (e.g. built without CUDA) */
    DDP_ERR_COMM,        /* a collective or the control channel failed */
    DDP_ERR_TIMEOUT,     /* a wait ran past its deadline */
    DDP_ERR_INTERRUPTED, /* the learner pressed Ctrl-C */
    DDP_ERR_MISMATCH,    /* ranks called different collectives */
    DDP_ERR_STATE,       /* called in the wrong state (e.g. before init_process_group) */
} ddp_status;

/* Records `fmt` as this thread's last error, with where it was raised, and returns
 * `code` so that a failing function can end with `return DDP_FAIL(...)`. */
ddp_status ddp_fail_at(const char *file, int line, ddp_status code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
#define DDP_FAIL(code, ...) ddp_fail_at(__FILE__, __LINE__, (code), __VA_ARGS__)

/* Passes a failing status up unchanged (the message stays as recorded). */
#define DDP_CHECK(expr)                                                                            \
    do {                                                                                           \
        ddp_status ddp_check_s_ = (expr);                                                          \
        if (ddp_check_s_ != DDP_OK) return ddp_check_s_;                                           \
    } while (0)

/* The message of this thread's last failure ("" when none); valid until the next one. */
const char *ddp_last_error(void);
/* "file.c:123" of this thread's last failure, for debugging output. */
const char *ddp_last_error_where(void);
/* A short name for a status code ("argument error", "out of memory", ...). */
const char *ddp_status_name(ddp_status s);
/* Forgets the last error. */
void ddp_clear_error(void);

#endif
