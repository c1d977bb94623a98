/* repl_internal.h — private to the REPL's files: the state of one session (repl.c owns
 * it), the table of `:` commands (commands.c holds the core ones, lesson_commands.c the
 * course's; each registers its rows), and running a chunk for a command (repl_chunk.c).
 *
 * The files depend on each other in one direction only: repl.c (reading lines, completion)
 * uses commands.c (the table) and repl_chunk.c (running chunks, rendering results);
 * commands.c uses repl_chunk.c; repl_chunk.c uses neither. */
#ifndef DDP_RUNTIME_REPL_INTERNAL_H
#define DDP_RUNTIME_REPL_INTERNAL_H

#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>

#include "base/status.h"
#include "runtime/driver.h"
#include "runtime/render.h"
#include "runtime/repl.h"

struct editline;
struct history;
struct lua_State;
struct lesson_session;

typedef struct {
    char *chunk;   /* owned */
    bool *targets; /* owned, world size */
    bool *errored; /* owned, world size: the ranks where it raised an error (replayed too:
                    * what ran before the error is part of that rank's state) */
} kept_chunk;

/* The state of one REPL session (repl_run owns it). */
typedef struct repl {
    driver *d;
    int world;
    bool *targets;        /* who runs what is typed (:on) */
    struct lua_State *L;  /* plain state, only to compile chunks */
    struct editline *el;  /* NULL when stdin is not a terminal */
    struct history *hist; /* NULL without libedit */
    char history_path[PATH_MAX];
    char transcript_path[PATH_MAX]; /* "" when the transcript cannot be written */
    char prompt[64];
    render_style style;
    kept_chunk *kept;  /* chunks that ran to an outcome on every target (done or error), in
                        * order, for :restart replay */
    bool *run_errored; /* after repl_run_chunk: which targets raised an error (world size) */
    bool run_clean;    /* after repl_run_chunk: every target ended done or with an error
                        * (none died or was interrupted) */
    int nkept, capkept;
    int exit_status;
    rank_result *notice;           /* deaths found while waiting for a key, not shown yet */
    struct lesson_session *lesson; /* the course (lesson.h), NULL when it cannot start */
    bool quit;                     /* a command asked to end the session */
    bool recording;                /* the chunk running was typed: the lesson notes it */
    /* typed while a chunk ran (a terminal in cooked mode gives whole lines): read-only
     * commands answered at once, the rest kept for the prompt, in order */
    char *typeahead; /* a partial line (owned): the terminal hands one over when its mode
                      * changes under it, or at Ctrl-D; the next prompt starts with it */
    size_t typeahead_len;
    char **pending; /* whole lines (owned) */
    int npending;
    bool eof_seen; /* Ctrl-D while a chunk ran: the session ends when it does */
} repl;

/* ---- the table of `:` commands (commands.c) ------------------------------------------- */

/* Runs the command with its argument (trimmed, "" when none). Prints what it did or one
 * helpful line; cannot fail. Sets r->quit to end the session. */
typedef void (*command_run_fn)(repl *r, const char *arg);
/* Completion of the command's argument: the candidates starting with `word`, as a malloc'd
 * array of malloc'd strings; returns how many. */
typedef int (*command_complete_fn)(repl *r, const char *word, char ***out);

typedef struct {
    const char *name;             /* "show": typed as :show */
    const char *aliases;          /* other names, space-separated ("h ?"), or NULL */
    const char *usage;            /* the left column of :help (":show expr") */
    const char *help;             /* one line: what it does */
    const char *words;            /* the fixed words its argument completes to ("all"), or NULL */
    command_complete_fn complete; /* argument completion beyond `words`, or NULL */
    command_run_fn run;
    bool while_running; /* it only reads state: it also answers while a chunk runs */
} repl_command_def;

/* Adds rows to the table (kept by pointer: `defs` must outlive the session). Rows added
 * later are listed later in :help. Returns false when the table is full (64 groups). */
bool repl_commands_add(const repl_command_def *defs, int n);
/* The core rows (:on, :show, :ranks, :restart, :help, :quit); idempotent. */
void repl_commands_add_core(void);
/* The row called `name` (or one of its aliases), or NULL. */
const repl_command_def *repl_command_find(const char *name);
/* Runs one `:` command line (the text after the colon). Returns false when the session
 * should end (:quit). */
bool repl_command(repl *r, const char *line);
/* Candidates for the word at the cursor: a command name (word starts with ':') when
 * `line_start` is true, else an argument of the command `cmd` (its name, no colon). */
int repl_command_candidates(repl *r, const char *cmd, const char *word, bool line_start,
                            char ***out);

/* ---- running chunks (repl_chunk.c) ------------------------------------------------------ */

/* Sends `chunk` (known to compile) to `targets` and renders the results (as :show does
 * when show_mode). *all_done tells whether every target finished without error. Fails
 * only when the driver cannot go on. */
ddp_status repl_run_chunk(repl *r, const char *chunk, const bool *targets, bool show_mode,
                          bool *all_done);
/* Columns of the terminal (80 when unknown). */
int repl_terminal_width(void);
/* After a rank died: how to carry on (one line). */
void repl_print_restart_hint(void);
/* The chunk running flag and Ctrl-C seen flag the signal handlers share (repl.c sets the
 * handlers; repl_chunk.c marks a chunk running). */
extern volatile sig_atomic_t repl_chunk_running;
extern volatile sig_atomic_t repl_sigint_seen;

#endif
