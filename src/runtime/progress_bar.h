/* progress_bar.h — one progress bar for every rank, drawn by the driver from the ranks'
 * progress ticks (typed events, protocol.h): the slowest rank's count, so that the bar is
 * full only when every rank is through. Drawn on one terminal line with \r; the output of
 * the ranks is printed above it (callers hide the bar before printing and show it after). */
#ifndef DDP_RUNTIME_PROGRESS_BAR_H
#define DDP_RUNTIME_PROGRESS_BAR_H

#include <stdbool.h>
#include <stdio.h>

typedef struct progress_bar progress_bar;

/* A bar for `world` ranks drawn on `out` (a terminal), `width` columns wide at most. */
progress_bar *progress_bar_new(int world, int width, FILE *out);
/* Takes a tick from `rank` (done of total, label) and redraws when the line changed. */
void progress_bar_tick(progress_bar *b, int rank, long done, long total, const char *label);
/* Erases the bar's line if it is drawn (before other output); progress_bar_show redraws. */
void progress_bar_hide(progress_bar *b);
void progress_bar_show(progress_bar *b);
/* Ends the bar: a finished bar stays as a line, an unfinished one is erased. NULL-safe. */
void progress_bar_free(progress_bar *b);

/* The bar's text for the given counts (exposed for the unit test): "label ▕███░░▏ 3/10",
 * then "  rank 2 behind" when the ranks differ. Writes at most cap bytes into buf. */
void progress_bar_format(char *buf, size_t cap, int width, const char *label, long slowest,
                         long fastest, long total, int slowest_rank);

#endif
