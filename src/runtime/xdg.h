/* xdg.h — where ddplab keeps what outlives a session: the REPL history and the transcript
 * of every chunk sent to the ranks, under the XDG state directory
 * ($XDG_STATE_HOME/ddplab, by default ~/.local/state/ddplab), created with mode 0700. */
#ifndef DDP_RUNTIME_XDG_H
#define DDP_RUNTIME_XDG_H

#include <stddef.h>
#include <stdio.h>

#include "base/status.h"

/* Writes $XDG_STATE_HOME/ddplab/<sub> (sub may be NULL or "") into buf and creates the
 * missing directories with mode 0700. Fails with DDP_ERR_IO naming the directory when one
 * cannot be created, or DDP_ERR_ARG when the path does not fit in buf. */
ddp_status xdg_state_path(const char *sub, char *buf, size_t size);

/* Path of the history file ($XDG_STATE_HOME/ddplab/history); creates the directory. */
ddp_status xdg_history_path(char *buf, size_t size);

/* Chooses this session's transcript path,
 * $XDG_STATE_HOME/ddplab/transcripts/<YYYYmmdd-HHMMSS>-<pid>.lua, creating the directory.
 * The file itself is created by xdg_transcript_append on the first chunk. */
ddp_status xdg_transcript_path(char *buf, size_t size);

/* Appends one chunk to the transcript at `path`: a comment line giving the targets and
 * the time, then the chunk, flushed and closed at once so that nothing is lost if ddplab
 * is killed. Fails with DDP_ERR_IO. */
ddp_status xdg_transcript_append(const char *path, const char *targets, const char *chunk);

#endif
