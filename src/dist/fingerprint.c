/* fingerprint.c — collective fingerprints and the messages that compare them (see
 * fingerprint.h). Pure string work: no I/O, cannot fail (texts are truncated to fit). */
#include "dist/fingerprint.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

const char *fp_dtype_name(dtype dt) {
    switch (dt) {
    case DTYPE_FLOAT32:
        return "float32";
    case DTYPE_FLOAT64:
        return "float64";
    case DTYPE_INT64:
        return "int64";
    case DTYPE_BOOL:
        return "bool";
    }
    return "?";
}

/* Appends formatted text at *at without overflowing out[len]. */
static void append(char *out, size_t len, size_t *at, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void append(char *out, size_t len, size_t *at, const char *fmt, ...) {
    if (*at >= len) return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out + *at, len - *at, fmt, ap);
    va_end(ap);
    if (n > 0) *at += (size_t)n < len - *at ? (size_t)n : len - *at - 1;
}

const char *fp_shape(char *out, size_t len, dtype dt, int ndim, const int64_t *sizes) {
    size_t at = 0;
    out[0] = '\0';
    append(out, len, &at, "%s[", fp_dtype_name(dt));
    for (int i = 0; i < ndim; i++) append(out, len, &at, i ? ",%lld" : "%lld", (long long)sizes[i]);
    append(out, len, &at, "]");
    return out;
}

void fp_format(char *out, size_t len, const char *op, dtype dt, int ndim, const int64_t *sizes,
               const char *extra) {
    char shape[96];
    snprintf(out, len, "%s(%s%s)", op, fp_shape(shape, sizeof shape, dt, ndim, sizes),
             extra ? extra : "");
}

void fp_rank_list(char *out, size_t len, const int *ranks, int n) {
    size_t at = 0;
    out[0] = '\0';
    append(out, len, &at, n == 1 ? "rank " : "ranks ");
    for (int i = 0; i < n; i++) append(out, len, &at, i ? ",%d" : "%d", ranks[i]);
}

static bool same(const char *a, const char *b) {
    if (!a || !b) return a == b;
    return strcmp(a, b) == 0;
}

void fp_mismatch_message(char *out, size_t len, const char *op, uint64_t seq,
                         const char *const *fps, const int *ranks, int n) {
    size_t at = 0;
    out[0] = '\0';
    append(out, len, &at, "%s #%llu: ", op, (unsigned long long)seq);
    bool done[4096] = {false};
    bool first = true;
    for (int i = 0; i < n && i < 4096; i++) {
        if (done[i]) continue;
        int members[4096], m = 0;
        for (int j = i; j < n && j < 4096; j++) {
            if (!done[j] && same(fps[i], fps[j])) {
                done[j] = true;
                members[m++] = ranks[j];
            }
        }
        char who[256];
        fp_rank_list(who, sizeof who, members, m);
        if (fps[i])
            append(out, len, &at, "%s%s called %s", first ? "" : "; ", who, fps[i]);
        else
            append(out, len, &at, "%s%s called nothing and finished the chunk", first ? "" : "; ",
                   who);
        first = false;
    }
}

void fp_timeout_message(char *out, size_t len, const char *op, uint64_t seq, const char *mine,
                        const char *const *fps, const bool *finished, const int *ranks, int n,
                        double timeout_s) {
    int missing[4096] = {0}, waiting[4096] = {0}, done[4096] = {0}, nm = 0, nw = 0, nd = 0;
    for (int i = 0; i < n && i < 4096; i++) {
        if (fps[i])
            waiting[nw++] = ranks[i];
        else if (finished && finished[i])
            done[nd++] = ranks[i];
        else
            missing[nm++] = ranks[i];
    }
    char miss[256], wait[256], fin[256] = "";
    fp_rank_list(miss, sizeof miss, missing, nm);
    fp_rank_list(wait, sizeof wait, waiting, nw);
    if (nd > 0) {
        char who[200];
        fp_rank_list(who, sizeof who, done, nd);
        snprintf(fin, sizeof fin, "; %s called nothing and finished the chunk", who);
    }
    snprintf(out, len,
             "%s #%llu: %s did not arrive within %.3g s; %s %s waiting in %s%s (a collective "
             "must be called by every rank of the group; DDPLAB_COLLECTIVE_TIMEOUT or "
             "--collective-timeout sets the limit)",
             op, (unsigned long long)seq, miss, timeout_s, wait, nw == 1 ? "is" : "are", mine, fin);
}
