/* status.c — per-thread storage of the last error message (see status.h). */
#include "base/status.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char last_message[1024];
static _Thread_local char last_where[128];

ddp_status ddp_fail_at(const char *file, int line, ddp_status code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_message, sizeof last_message, fmt, ap);
    va_end(ap);
    const char *slash = strrchr(file, '/');
    snprintf(last_where, sizeof last_where, "%s:%d", slash ? slash + 1 : file, line);
    return code;
}

const char *ddp_last_error(void) {
    return last_message;
}

const char *ddp_last_error_where(void) {
    return last_where;
}

void ddp_clear_error(void) {
    last_message[0] = '\0';
    last_where[0] = '\0';
}

const char *ddp_status_name(ddp_status s) {
    switch (s) {
    case DDP_OK:
        return "ok";
    case DDP_ERR_ARG:
        return "argument error";
    case DDP_ERR_NOMEM:
        return "out of memory";
    case DDP_ERR_IO:
        return "I/O error";
    case DDP_ERR_FORMAT:
        return "format error";
    case DDP_ERR_UNSUPPORTED:
        return "not supported";
    case DDP_ERR_COMM:
        return "communication error";
    case DDP_ERR_TIMEOUT:
        return "timeout";
    case DDP_ERR_INTERRUPTED:
        return "interrupted";
    case DDP_ERR_MISMATCH:
        return "collective mismatch";
    case DDP_ERR_STATE:
        return "wrong state";
    }
    return "unknown error";
}
