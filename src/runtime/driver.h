/* driver.h — the driver's handle on its rank processes: start them, run a chunk of Lua
 * on some of them, stream and collect what they print, interrupt, restart.
 *
 * The driver never runs learner code (docs/architecture.md): a rank is a child process
 * with its own Lua state, reached over the control channel (a Unix socket in a private
 * 0700 directory). This interface is what the terminal side (repl.c, main.c) uses; how
 * the bytes travel is private to driver.c / rank.c / protocol.c. */
#ifndef DDP_RUNTIME_DRIVER_H
#define DDP_RUNTIME_DRIVER_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/status.h"

typedef struct driver driver;

typedef struct {
    int nproc;                 /* ranks on this node */
    const char *backend;       /* "gloo" / "nccl" / NULL for the default */
    int nnodes, node_rank;     /* 1, 0 for a single machine */
    const char *master_addr;   /* NULL: 127.0.0.1 */
    int master_port;           /* 0: pick a free port */
    double collective_timeout; /* seconds; the watchdog of the mismatch check */
    bool collective_check;     /* fingerprint every collective (default true) */
    bool label_script_output;  /* script mode: prefix each line with "[rank] " */
} launch_options;

/* Starts the ranks and waits until every one has connected and loaded its Lua state.
 * On failure nothing is left running and the message says which rank failed and why. */
ddp_status driver_start(const launch_options *opts, driver **out);
/* Stops every rank (politely, then SIGKILL after a grace period) and frees d. NULL-safe. */
void driver_stop(driver *d);
int driver_world_size(const driver *d);

typedef enum {
    RANK_DONE,        /* the chunk ran to the end */
    RANK_ERROR,       /* the chunk raised a Lua error (message + short traceback) */
    RANK_INTERRUPTED, /* Ctrl-C stopped it */
    RANK_DIED,        /* the process exited or was killed */
    RANK_SKIPPED,     /* not a target of this chunk */
} rank_outcome;

typedef struct {
    int rank;
    rank_outcome outcome;
    char *output; /* everything the rank printed for this chunk, values of `=expr` and
                   * bare expressions included, in order (owned; NULL if none) */
    size_t output_len;
    char *error;     /* RANK_ERROR / RANK_DIED: the message in words (owned) */
    int exit_status; /* RANK_DIED: exit code, or -signal, or RANK_EXIT_UNKNOWN */
    int order; /* when its outcome arrived among this run's ranks: 1 first, 0 never (skipped) */
    /* A lesson check's verdict sent during the chunk (the last one, if several) */
    bool has_verdict;
    int verdict;           /* PROTO_VERDICT_PASS / _FAIL / _DEFECT (protocol.h) */
    char *verdict_message; /* in words, "" when none (owned) */
} rank_result;

/* The exit_status of a rank whose end nobody could report: a rank on another node whose
 * connection was lost while its node's agent said nothing (gone too, say). */
#define RANK_EXIT_UNKNOWN INT_MIN

/* Called as output arrives, before driver_run returns (for live streaming, e.g. script
 * mode's "[2] ..." lines); may be NULL. */
typedef void (*rank_output_fn)(int rank, const char *bytes, size_t len, void *ctx);

/* A typed event a rank sent while a chunk runs (protocol.h's proto_event, already parsed:
 * the strings live only during the call). */
struct proto_event;
typedef void (*rank_event_fn)(int rank, const struct proto_event *ev, void *ctx);
/* Sets who receives the events of the chunks run from now on (a progress bar; verdicts are
 * also kept in the results). fn NULL: nobody (the default). */
void driver_set_event_handler(driver *d, rank_event_fn fn, void *ctx);

/* While driver_run waits for the ranks it also watches `fd` (the REPL's terminal, so
 * that read-only commands answer while a chunk runs) and calls fn(ctx) when it is
 * readable. fd -1 or fn NULL: nothing watched (the default). fn must not call driver_run. */
typedef void (*driver_input_fn)(void *ctx);
void driver_set_input_hook(driver *d, int fd, driver_input_fn fn, void *ctx);

/* Runs `chunk` (already known to compile: the terminal side checks syntax first) on the
 * ranks whose entries in `targets` (length world size; NULL: every rank) are true. The
 * chunk runs as sent and the values it returns are printed; a leading "=" means "return"
 * (the REPL turns bare expressions into "return ..." itself, as lua.c does). Fills
 * results[world size]; free them with rank_results_free. Returns DDP_OK even when ranks
 * raised errors or died (that is in the results); fails only when the driver itself cannot
 * go on. */
ddp_status driver_run(driver *d, const char *chunk, size_t len, const char *chunkname,
                      const bool *targets, rank_output_fn on_output, void *ctx,
                      rank_result *results);
/* Script mode: every rank runs the file at `path` with `arg` set from argv, as lua.c
 * does. */
ddp_status driver_run_file(driver *d, const char *path, int argc, char **argv,
                           rank_output_fn on_output, void *ctx, rank_result *results);
void rank_results_free(rank_result *results, int n);

/* Asks the running chunk on every rank to stop (Ctrl-C). Async-signal-safe: it only
 * writes a byte to a pipe that driver_run watches. */
void driver_interrupt(driver *d);
/* As driver_interrupt, for a session that is ending (SIGTERM, SIGHUP): it also holds for
 * a chunk that starts after the call, which is interrupted at once. Async-signal-safe. */
void driver_terminate(driver *d);

/* Completion candidates for `word` (a global, or fields after "." / ":") from the Lua
 * state of rank `rank`. *matches is a malloc'd array of malloc'd strings. */
ddp_status driver_complete(driver *d, int rank, const char *word, char ***matches, int *count);

typedef struct {
    int rank;
    int pid;
    char host[64];
    char device[16];   /* "cpu", "cuda:0" */
    char state[96];    /* "idle", "running", "in all_reduce #3 float32[4]", "dead (...)";
                        * an idle rank adds its last collective: "idle (last: all_reduce #3
                        * float32[4])" */
    int64_t rss_bytes; /* resident memory */
    /* the rank's GPU memory (torch.cuda.memory_allocated / memory_reserved of its current
     * device), as it reported at the end of its last chunk; has_gpu false until it used
     * a GPU */
    bool has_gpu;
    int64_t gpu_allocated, gpu_reserved;
} rank_info;

/* Fills info[world size] for the :ranks table. */
ddp_status driver_ranks(driver *d, rank_info *info);

/* Kills and restarts every rank with the same options (used by :restart). */
ddp_status driver_restart(driver *d);

/* Checks, without blocking, on the ranks that are not running a chunk (the REPL calls it
 * before each prompt and while it waits for a key): reaps those that exited, notices
 * closed channels, takes in what they printed. Fills results[world size] with RANK_DIED
 * (error: "rank 1 was killed by signal 9 (SIGKILL); its last output:\n...", as driver_run
 * words it) for each rank whose death was not reported yet, RANK_SKIPPED for the others;
 * returns how many died. Each death is reported once, here or in driver_run's results.
 * Free the results with rank_results_free. Cannot fail. */
int driver_check_idle(driver *d, rank_result *results);

/* While driver_run waits: called at most once per chunk, when the chunk has run for
 * `after_s` seconds without anyone printing, with what every rank is doing (info[world
 * size]: state "running", "in all_reduce #3 float32[4]", "finished", "failed", "dead";
 * "" for ranks that are not part of the chunk). fn NULL turns it off (the default). */
typedef void (*rank_quiet_fn)(const rank_info *info, int n, void *ctx);
void driver_set_quiet_report(driver *d, double after_s, rank_quiet_fn fn, void *ctx);

#endif
