/* render.h — how the driver shows what ranks did: rank sets as compressed ranges
 * ("0-3", "0,2"), chunk results grouped so that identical ranks collapse into one block,
 * :show's side-by-side columns, the :ranks table, and script mode's per-line labels.
 *
 * Nothing here starts processes or reads the terminal: each function writes to a FILE*
 * given by the caller, so unit tests render into memory (open_memstream). */
#ifndef DDP_RUNTIME_RENDER_H
#define DDP_RUNTIME_RENDER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "base/status.h"
#include "runtime/driver.h"

typedef struct {
    bool labels; /* "[0-3] " before each block; false for a world of 1, as plain lua */
    bool color;  /* ANSI colors: labels cyan, errors red */
} render_style;

/* True when output to `fd` should be colored: a terminal, and NO_COLOR unset (any value,
 * even empty, turns color off: no-color.org). Cannot fail. */
bool render_color_wanted(int fd);

/* Writes the members of set[0..n-1] as compressed ranges ("0-3", "0,2", "0-2,5") into
 * buf (always NUL-terminated; "" for an empty set; truncated to fit). Returns buf. */
char *render_ranges(const bool *set, int n, char *buf, size_t size);

/* Parses "all", "0,2", "1-3", "0-2,5" (spaces allowed) into set[0..n-1]. Fails with
 * DDP_ERR_ARG and a message naming the bad part and the valid ranks; set is then
 * untouched. */
ddp_status render_parse_ranges(const char *text, int n, bool *set);

/* "exited with status 3" / "killed by signal 9 (SIGKILL)" / "lost its connection (exit
 * status unknown)" for a RANK_DIED exit_status. Writes into buf and returns it. */
char *render_describe_exit(int exit_status, char *buf, size_t size);

/* Prints the results of one chunk (n = world size; RANK_SKIPPED entries are ignored):
 * first the output, ranks with identical output in one block labelled with their ranges
 * and blocks in rank order; then what did not end normally (errors, deaths,
 * interruptions), each distinct one once with the ranks it happened on. Labels are padded
 * to one width; lines after the first of a block are indented to align. Cannot fail. */
void render_results(FILE *out, const rank_result *results, int n, const render_style *style);

/* Writes one line of a rank's output so that it cannot take over the terminal: colour
 * (SGR: ESC [ digits ; m) is kept; other control characters show in caret notation (ESC
 * as ^[, so "\27[2J" cannot clear the screen); after carriage returns only the text after
 * the last one is kept (what a "\r 40%" progress line leaves on a terminal), so that the
 * rank's label is never overwritten. */
void render_write_visible(FILE *out, const char *line, size_t n);

/* :show: the value (output) of each target rank in columns side by side when they fit in
 * `width` columns, else as grouped blocks; then which ranks agree ("✓ all equal", or the
 * groups). Cannot fail. */
void render_show(FILE *out, const rank_result *results, int n, int width,
                 const render_style *style);

/* The status line of a chunk that has gone quiet: the ranks grouped by what they are
 * doing, in rank order of each group's first member, e.g. "[0,1] waiting in all_reduce #3
 * float32[4] · [2,3] running"; ranks with an empty state (not in the chunk) are left out.
 * Writes no newline. Cannot fail. */
void render_activity(FILE *out, const rank_info *info, int n, const render_style *style);

/* :ranks: one row per rank (rank, host, pid, device, state, memory). Cannot fail. */
void render_ranks_table(FILE *out, const rank_info *info, int n, const render_style *style);

/* Script mode: turns streamed bytes from each rank into whole lines, labelled "[2] "
 * when labels are on, written to `out` as each line completes. Owns one buffer per rank. */
typedef struct line_labeller line_labeller;
/* Returns NULL when out of memory. */
line_labeller *labeller_new(int nranks, const render_style *style, FILE *out);
/* Buffers a partial line; writes every completed one. Bytes from a rank outside
 * 0..nranks-1 are written unlabelled. */
void labeller_feed(line_labeller *lab, int rank, const char *bytes, size_t len);
/* Writes what is left of each rank's partial line (with a newline). */
void labeller_flush(line_labeller *lab);
/* Flushes and frees. NULL-safe. */
void labeller_free(line_labeller *lab);

#endif
