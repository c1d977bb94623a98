/* rank_complete.h — Tab completion on a rank: the candidates for a word from the rank's
 * Lua state, found without running any learner code (rank.c answers the driver's COMPLETE
 * requests with it). */
#ifndef DDP_RUNTIME_RANK_COMPLETE_H
#define DDP_RUNTIME_RANK_COMPLETE_H

#include <stddef.h>

#include <lua.h>

/* Completion candidates for `word`: globals, or the fields (after ".") or methods (after
 * ":") of what comes before. *out is a malloc'd NUL-separated list of whole words (sorted,
 * without duplicates), *len its size; *out is NULL when there are none (or memory ran
 * out). Leaves the Lua stack as it found it; never calls a Lua function. */
void rank_complete_word(lua_State *L, const char *word, char **out, size_t *len);

#endif
