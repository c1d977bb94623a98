/* repl.h — the interactive loop of the driver: read a chunk with libedit, check its syntax
 * in a plain Lua state (as lua.c does: `=expr`, try "return " first, continue incomplete
 * input on a second prompt), send it to the target ranks and show their results grouped;
 * plus the `:` commands (one table of them: repl_internal.h, commands.c). What the REPL
 * keeps while it runs is private to it (repl_internal.h). */
#ifndef DDP_RUNTIME_REPL_H
#define DDP_RUNTIME_REPL_H

#include <stdbool.h>
#include <stddef.h>

#include "base/status.h"
#include "runtime/driver.h"

/* What repl_run starts with (all optional: zero means a plain session). */
typedef struct {
    const char *lesson;  /* --lesson N: open this lesson ("3" or a path), NULL: none */
    bool offer_continue; /* plain `ddplab` at a terminal: offer to go on with the course */
} repl_options;

/* Runs the REPL on the ranks of `d` (which stays owned by the caller) until Ctrl-D or
 * :quit. Reads with line editing, history and completion when stdin is a terminal, else
 * plain lines. Returns the exit status for main (0; 1 when the driver cannot go on).
 * `opts` may be NULL. */
int repl_run(driver *d, const repl_options *opts);

/* Checks that `chunk` compiles, in a throwaway plain Lua state (no libraries), without
 * running it. Fails with DDP_ERR_ARG and Lua's syntax message ("stdin:1: ..."). */
ddp_status repl_check_syntax(const char *chunk, size_t len, const char *chunkname);

#endif
