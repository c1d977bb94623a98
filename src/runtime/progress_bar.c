/* progress_bar.c — see progress_bar.h. The bar counts the slowest rank (a training step
 * is done when every rank has done it) and names it when the ranks are apart. */
#include "runtime/progress_bar.h"

#include <stdlib.h>
#include <string.h>

struct progress_bar {
    int world, width;
    FILE *out;
    long *done, *total; /* per rank; total -1: no tick yet */
    char label[64];
    char line[512]; /* what is drawn now ("" when nothing) */
    bool visible, finished;
};

progress_bar *progress_bar_new(int world, int width, FILE *out) {
    progress_bar *b = calloc(1, sizeof *b);
    if (!b) return NULL;
    b->done = calloc((size_t)world, sizeof *b->done);
    b->total = calloc((size_t)world, sizeof *b->total);
    if (!b->done || !b->total) {
        free(b->done);
        free(b->total);
        free(b);
        return NULL;
    }
    for (int r = 0; r < world; r++) b->total[r] = -1;
    b->world = world;
    b->width = width > 100 ? 100 : width;
    b->out = out;
    return b;
}

void progress_bar_format(char *buf, size_t cap, int width, const char *label, long slowest,
                         long fastest, long total, int slowest_rank) {
    char counts[64], behind[32] = "";
    snprintf(counts, sizeof counts, " %ld/%ld", slowest, total);
    if (fastest != slowest) snprintf(behind, sizeof behind, "  rank %d behind", slowest_rank);
    int cells = width - (int)strlen(label) - (label[0] ? 1 : 0) - 2 - (int)strlen(counts) -
                (int)strlen(behind);
    if (cells < 10) cells = 10;
    if (cells > 50) cells = 50;
    int full = total > 0 ? (int)((double)slowest / (double)total * cells) : cells;
    if (full > cells) full = cells;
    size_t at = 0;
    at += (size_t)snprintf(buf + at, cap - at, "%s%s▕", label, label[0] ? " " : "");
    for (int i = 0; i < cells && at + 4 < cap; i++) {
        const char *cell = i < full ? "█" : "░";
        memcpy(buf + at, cell, strlen(cell));
        at += strlen(cell);
    }
    snprintf(buf + at, cap - at, "▏%s%s", counts, behind);
}

static void draw(progress_bar *b) {
    fprintf(b->out, "\r%s\033[K", b->line);
    fflush(b->out);
    b->visible = true;
}

void progress_bar_tick(progress_bar *b, int rank, long done, long total, const char *label) {
    if (!b || rank < 0 || rank >= b->world) return;
    b->done[rank] = done;
    b->total[rank] = total;
    snprintf(b->label, sizeof b->label, "%s", label ? label : "");
    long slowest = -1, fastest = -1, tot = total;
    int slow_rank = rank;
    for (int r = 0; r < b->world; r++) {
        if (b->total[r] < 0) continue; /* not ticking (yet): not part of the bar */
        if (slowest < 0 || b->done[r] < slowest) {
            slowest = b->done[r];
            slow_rank = r;
        }
        if (b->done[r] > fastest) fastest = b->done[r];
        if (b->total[r] > tot) tot = b->total[r];
    }
    char line[sizeof b->line];
    progress_bar_format(line, sizeof line, b->width, b->label, slowest, fastest, tot, slow_rank);
    b->finished = tot > 0 && slowest >= tot;
    if (strcmp(line, b->line) == 0 && b->visible) return;
    snprintf(b->line, sizeof b->line, "%s", line);
    draw(b);
}

void progress_bar_hide(progress_bar *b) {
    if (!b || !b->visible) return;
    fputs("\r\033[K", b->out);
    fflush(b->out);
    b->visible = false;
}

void progress_bar_show(progress_bar *b) {
    if (b && b->line[0] && !b->visible) draw(b);
}

void progress_bar_free(progress_bar *b) {
    if (!b) return;
    if (b->visible && b->finished)
        fputc('\n', b->out); /* the full bar stays */
    else
        progress_bar_hide(b);
    fflush(b->out);
    free(b->done);
    free(b->total);
    free(b);
}
