/* lesson_commands.h — the course inside the REPL (the rows of the command table that
 * lessons add) and the check run shared with --verify-lessons (lesson_verify.c). */
#ifndef DDP_RUNTIME_LESSON_COMMANDS_H
#define DDP_RUNTIME_LESSON_COMMANDS_H

#include <stdbool.h>

#include "base/status.h"
#include "runtime/driver.h"
#include "runtime/lesson.h"
#include "runtime/repl.h"

struct repl;

/* Adds :lessons, :lesson, :next, :prev, :check, :hint, :solution, :solution!, :reset and
 * :lang to the REPL's command table. */
void lesson_commands_add(void);
/* At the REPL's start: opens --lesson N, or offers to continue the course. */
void lesson_repl_start(struct repl *r, const repl_options *opts);
/* Runs the current step's check on every rank; *lines (malloc'd) says what each rank
 * concluded, *passed whether all passed. Fails only when the driver cannot go on. */
ddp_status lesson_run_check(lesson_session *ls, driver *d, int world, char **lines, bool *passed);

#endif
