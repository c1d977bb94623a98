/* lesson_verify.h — `ddplab --verify-lessons [N]` (lesson_verify.c). */
#ifndef DDP_RUNTIME_LESSON_VERIFY_H
#define DDP_RUNTIME_LESSON_VERIFY_H

#include "runtime/driver.h"

/* Verifies every step of the built-in lessons (which NULL) or of lesson `which` (a number
 * or a path) on the ranks of d; prints one line per step. Returns the exit status. */
int lesson_verify(driver *d, const char *which);

#endif
