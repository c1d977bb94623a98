/* xdg.c — the XDG state directory of ddplab: history and per-session transcripts.
 * Directories are created 0700 (what is typed may contain secrets); files are appended
 * and closed at once so that a killed session keeps everything it was sent. */
#include "runtime/xdg.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <pwd.h>

/* Creates every missing directory along `path` with mode 0700. */
static ddp_status make_dirs(char *path) {
    for (char *p = path + 1;; p++) {
        if (*p != '/' && *p != '\0') continue;
        char saved = *p;
        *p = '\0';
        if (mkdir(path, 0700) != 0 && errno != EEXIST) {
            int e = errno;
            ddp_status st =
                DDP_FAIL(DDP_ERR_IO, "cannot create the directory %s: %s", path, strerror(e));
            *p = saved;
            return st;
        }
        *p = saved;
        if (saved == '\0') return DDP_OK;
    }
}

ddp_status xdg_state_path(const char *sub, char *buf, size_t size) {
    const char *state = getenv("XDG_STATE_HOME");
    int n;
    if (state && state[0] == '/') { /* the spec says relative values are to be ignored */
        n = snprintf(buf, size, "%s/ddplab%s%s", state, sub && *sub ? "/" : "", sub ? sub : "");
    } else {
        const char *home = getenv("HOME");
        if (!home || !*home) {
            struct passwd *pw = getpwuid(getuid());
            home = pw ? pw->pw_dir : NULL;
        }
        if (!home)
            return DDP_FAIL(DDP_ERR_IO, "cannot find a home directory for the ddplab state: "
                                        "set HOME or XDG_STATE_HOME");
        n = snprintf(buf, size, "%s/.local/state/ddplab%s%s", home, sub && *sub ? "/" : "",
                     sub ? sub : "");
    }
    if (n < 0 || (size_t)n >= size)
        return DDP_FAIL(DDP_ERR_ARG, "the ddplab state path is too long");
    return make_dirs(buf);
}

ddp_status xdg_history_path(char *buf, size_t size) {
    DDP_CHECK(xdg_state_path(NULL, buf, size));
    size_t len = strlen(buf);
    if (len + sizeof "/history" > size)
        return DDP_FAIL(DDP_ERR_ARG, "the ddplab history path is too long");
    memcpy(buf + len, "/history", sizeof "/history");
    return DDP_OK;
}

/* The local time now in strftime's `format`, into out[cap]. */
static void local_stamp(char *out, size_t cap, const char *format) {
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    if (strftime(out, cap, format, &tm) == 0) out[0] = '\0';
}

ddp_status xdg_transcript_path(char *buf, size_t size) {
    DDP_CHECK(xdg_state_path("transcripts", buf, size));
    char stamp[32];
    local_stamp(stamp, sizeof stamp, "%Y%m%d-%H%M%S");
    size_t len = strlen(buf);
    int n = snprintf(buf + len, size - len, "/%s-%d.lua", stamp, (int)getpid());
    if (n < 0 || (size_t)n >= size - len)
        return DDP_FAIL(DDP_ERR_ARG, "the ddplab transcript path is too long");
    return DDP_OK;
}

ddp_status xdg_transcript_append(const char *path, const char *targets, const char *chunk) {
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    FILE *f = fd >= 0 ? fdopen(fd, "a") : NULL;
    if (!f) {
        int e = errno;
        if (fd >= 0) close(fd);
        return DDP_FAIL(DDP_ERR_IO, "cannot write the transcript %s: %s", path, strerror(e));
    }
    char stamp[32];
    local_stamp(stamp, sizeof stamp, "%H:%M:%S");
    size_t len = strlen(chunk);
    fprintf(f, "-- [%s] %s\n%s%s", targets, stamp, chunk,
            len && chunk[len - 1] == '\n' ? "" : "\n");
    if (fclose(f) != 0)
        return DDP_FAIL(DDP_ERR_IO, "cannot write the transcript %s: %s", path, strerror(errno));
    return DDP_OK;
}
