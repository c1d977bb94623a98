/* repl.h — the interactive loop of the driver: read a chunk with libedit, check its syntax
 * in a plain Lua state (as lua.c does: `=expr`, try "return " first, continue incomplete
 * input on a second prompt), send it to the target ranks and show their results grouped;
 * plus the `:` commands (:on, :show, :ranks, :restart, :help, :quit). */
#ifndef DDP_RUNTIME_REPL_H
#define DDP_RUNTIME_REPL_H

#include <stdbool.h>
#include <stddef.h>

#include "base/status.h"
#include "runtime/driver.h"

/* Runs the REPL on the ranks of `d` (which stays owned by the caller) until Ctrl-D or
 * :quit. Reads with line editing, history and completion when stdin is a terminal, else
 * plain lines. Returns the exit status for main (0; 1 when the driver cannot go on). */
int repl_run(driver *d);

/* Checks that `chunk` compiles, in a throwaway plain Lua state (no libraries), without
 * running it. Fails with DDP_ERR_ARG and Lua's syntax message ("stdin:1: ..."). */
ddp_status repl_check_syntax(const char *chunk, size_t len, const char *chunkname);

/* ---- shared by repl.c and commands.c only (the : commands) ---------------------------- */

#include <limits.h>

#include "runtime/render.h"

struct editline;
struct history;
struct lua_State;

typedef struct {
    char *chunk;   /* owned */
    bool *targets; /* owned, world size */
} kept_chunk;

/* The state of one REPL session (repl_run owns it). */
typedef struct {
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
    kept_chunk *kept; /* chunks that ran without error, in order, for :restart replay */
    int nkept, capkept;
    int exit_status;
    rank_result *notice; /* deaths found while waiting for a key, not shown yet (owned) */
} repl;

/* Runs one `:` command (text after the colon). Returns false for :quit. Cannot fail: a
 * bad command prints a helpful line. (commands.c) */
bool repl_command(repl *r, const char *cmd);
/* The `:` commands starting with `word` (which starts with ':'), as a malloc'd array of
 * malloc'd strings; returns how many. (commands.c) */
int repl_command_candidates(const char *word, char ***out);
/* Sends `chunk` (known to compile) to `targets` and renders the results (as :show does
 * when show_mode). *all_done tells whether every target finished without error. Fails
 * only when the driver cannot go on. (repl.c) */
ddp_status repl_run_chunk(repl *r, const char *chunk, const bool *targets, bool show_mode,
                          bool *all_done);
/* Columns of the terminal (80 when unknown). (repl.c) */
int repl_terminal_width(void);

#endif
