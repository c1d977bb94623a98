/* lesson.h — the driver's handle on the lesson engine: a second, trusted Lua state that
 * holds lesson/engine.lua (the lessons' text, the learner's place and progress, the
 * chunks sent to the ranks for a step's setup and check). Learner code never runs in it:
 * checks run in the ranks (lesson/check.lua) and come back as typed verdicts
 * (driver.h's rank_result). docs/architecture.md says why the engine is split so. */
#ifndef DDP_RUNTIME_LESSON_H
#define DDP_RUNTIME_LESSON_H

#include <stdbool.h>

#include "base/status.h"
#include "runtime/driver.h"

typedef struct lesson_session lesson_session;

/* Opens the engine for a session of `world` ranks (0: not known yet, as for
 * lesson_min_ranks before the ranks start), with progress under the XDG state directory
 * (none when it cannot be created, or without keep_progress: --verify-lessons), the language from
 * LC_ALL / LANG ("zh..." picks Chinese) unless a :lang choice was saved. Fails when the engine
 * cannot load (a build bug). */
ddp_status lesson_open_session(int world, bool color, int width, bool keep_progress,
                               lesson_session **out);
void lesson_close_session(lesson_session *ls); /* NULL-safe */

/* Calls engine.<fn>(a1, a2) (NULL arguments are nil) and returns the first string among
 * its results, malloc'd (NULL when there is none); *flag (may be NULL) says whether the
 * first result was true (not nil or false). A Lua error becomes the returned text. */
char *lesson_call(lesson_session *ls, const char *fn, const char *a1, const char *a2, bool *flag);

/* engine.<fn>() is true (not nil or false). */
bool lesson_call_bool(lesson_session *ls, const char *fn);

/* The chunk that runs the current step's check on the ranks (NULL when no lesson is
 * open), and, after it ran, the lines that say what each rank concluded (every rank:
 * results[world]); *passed tells whether every rank passed (then the step is marked
 * done). `info` for the check: NULL means what the learner typed in this step. */
char *lesson_check_chunk(lesson_session *ls);
char *lesson_checked(lesson_session *ls, const rank_result *results, int world, bool *passed);

/* Notes a chunk the learner typed in this step, with each rank's error (for c.ran and
 * c.last_error). */
void lesson_record(lesson_session *ls, const char *chunk, const rank_result *results, int world);

/* The least number of ranks lesson `spec` (a number or a path) needs; 1 when unknown. */
int lesson_min_ranks(const char *spec);

/* The language to start in from the environment: "zh" when LC_ALL, or else LANG, starts
 * with "zh"; else "en". */
const char *lesson_env_lang(void);

#endif
