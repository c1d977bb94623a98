/* fingerprint.c — collective fingerprints and the messages that compare them (see
 * fingerprint.h). Pure string work: no I/O, cannot fail (texts are truncated to fit). */
#include "dist/fingerprint.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

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
    append(out, len, &at, "%s[", dtype_name(dt));
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

void fp_call_label(char *out, size_t len, uint64_t seq, const int *group, int group_size) {
    size_t at = 0;
    out[0] = '\0';
    append(out, len, &at, "collective #%llu of this chunk", (unsigned long long)seq);
    if (group) {
        char who[256];
        fp_rank_list(who, sizeof who, group, group_size);
        append(out, len, &at, " in group (%s)", who);
    }
}

/* Appends "; ranks 0,1 <verb> <fp>" for each distinct fingerprint among the ranks with
 * pick[i] set (in the order of their first rank); `first` tracks the separator. */
static void append_groups(char *out, size_t len, size_t *at, const char *const *fps,
                          const bool *pick, const int *ranks, int n, const char *one,
                          const char *many, bool *first) {
    bool done[4096] = {false};
    int members[4096];
    for (int i = 0; i < n && i < 4096; i++) {
        if (done[i] || !pick[i]) continue;
        int m = 0;
        for (int j = i; j < n && j < 4096; j++) {
            if (!done[j] && pick[j] && same(fps[i], fps[j])) {
                done[j] = true;
                members[m++] = ranks[j];
            }
        }
        char who[256];
        fp_rank_list(who, sizeof who, members, m);
        if (fps[i])
            append(out, len, at, "%s%s %s %s", *first ? "" : "; ", who, m == 1 ? one : many,
                   fps[i]);
        else
            append(out, len, at, "%s%s called nothing and finished the chunk", *first ? "" : "; ",
                   who);
        *first = false;
    }
}

void fp_mismatch_message(char *out, size_t len, const char *label, const char *const *fps,
                         const int *ranks, int n) {
    size_t at = 0;
    out[0] = '\0';
    append(out, len, &at, "%s: ", label);
    bool pick[4096];
    for (int i = 0; i < n && i < 4096; i++) pick[i] = true;
    bool first = true;
    append_groups(out, len, &at, fps, pick, ranks, n, "called", "called", &first);
}

void fp_crossed_message(char *out, size_t len, const char *label, const char *mine,
                        const char *const *elsewhere, const int *ranks, int n) {
    size_t at = 0;
    out[0] = '\0';
    append(out, len, &at, "%s: this rank called %s, but ", label, mine);
    bool pick[4096];
    for (int i = 0; i < n && i < 4096; i++) pick[i] = elsewhere[i] != NULL;
    bool first = true;
    append_groups(out, len, &at, elsewhere, pick, ranks, n, "is waiting in", "are waiting in",
                  &first);
    append(out, len, &at,
           ", which this rank has not called: each waits for the other (ranks that share "
           "several groups must call the collectives of those groups in the same order)");
}

void fp_timeout_message(char *out, size_t len, const char *label, const char *const *fps,
                        const bool *finished, const int *ranks, int n, double timeout_s) {
    int missing[4096] = {0}, done[4096] = {0}, nm = 0, nd = 0;
    bool waiting[4096] = {false};
    for (int i = 0; i < n && i < 4096; i++) {
        if (fps[i])
            waiting[i] = true;
        else if (finished && finished[i])
            done[nd++] = ranks[i];
        else
            missing[nm++] = ranks[i];
    }
    size_t at = 0;
    out[0] = '\0';
    char miss[256];
    fp_rank_list(miss, sizeof miss, missing, nm);
    append(out, len, &at, "%s: %s did not arrive within %.3g s; ", label, miss, timeout_s);
    bool first = true;
    append_groups(out, len, &at, fps, waiting, ranks, n, "is waiting in", "are waiting in", &first);
    if (nd > 0) {
        char who[200];
        fp_rank_list(who, sizeof who, done, nd);
        append(out, len, &at, "; %s called nothing and finished the chunk", who);
    }
    append(out, len, &at,
           " (a collective must be called by every rank of the group; "
           "DDPLAB_COLLECTIVE_TIMEOUT or --collective-timeout sets the limit)");
}
