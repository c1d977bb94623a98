/* fingerprint.h — the text that describes one collective call, and the messages built
 * from several ranks' fingerprints when they disagree or do not arrive.
 *
 * A fingerprint is what must agree across the group for a collective to be safe to
 * enter: the op, the dtype and shape, the root or peer, the reduce op; for example
 * "all_reduce(float32[3], op=SUM)" or "broadcast(float32[2,3], src=0)". It travels as
 * text through the store, so the messages read exactly as what each rank called. */
#ifndef DDP_DIST_FINGERPRINT_H
#define DDP_DIST_FINGERPRINT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tensor/tensor.h"

#define FP_MAX 192 /* bytes of one fingerprint, NUL included */

/* "float32[2,3]" (a scalar is "float32[]") into out; returns out. */
const char *fp_shape(char *out, size_t len, dtype dt, int ndim, const int64_t *sizes);
/* "op(float32[3]<extra>)" where extra is "" or starts with ", ". */
void fp_format(char *out, size_t len, const char *op, dtype dt, int ndim, const int64_t *sizes,
               const char *extra);

/* Formats a list of ranks: "rank 2" or "ranks 0,1,3". */
void fp_rank_list(char *out, size_t len, const int *ranks, int n);

/* How messages name one collective call so that every rank of the group prints the same
 * words: "collective #2 of this chunk" (seq counts from 1 per chunk and group, the same
 * numbers the fingerprint keys use), plus " in group (ranks 0,1)" when `group` (the group's
 * ranks, NULL for the default group) is given. */
void fp_call_label(char *out, size_t len, uint64_t seq, const int *group, int group_size);

/* The mismatch message: fps[i] is what global rank ranks[i] called (NULL: it called
 * nothing and finished the chunk). Groups identical calls:
 * "collective #3 of this chunk: ranks 0,1 called all_reduce(float32[3], op=SUM); ranks
 *  2,3 called nothing and finished the chunk". It does not depend on which rank builds it,
 * so a mismatch reads the same on every rank. */
void fp_mismatch_message(char *out, size_t len, const char *label, const char *const *fps,
                         const int *ranks, int n);

/* The message for a wait that can never end because members wait elsewhere: this rank
 * called `mine`, and elsewhere[i] (NULL: not this member) is where global rank ranks[i]
 * waits instead, a call this rank has not made ("all_reduce(float32[1], op=SUM)
 * (collective #1 of this chunk)"); members waiting in the same place are grouped. */
void fp_crossed_message(char *out, size_t len, const char *label, const char *mine,
                        const char *const *elsewhere, const int *ranks, int n);

/* The watchdog message: fps[i] is NULL for a rank that has not arrived, unless
 * finished[i] (may be NULL) says it called nothing and finished the chunk; the ranks that
 * arrived are grouped by what they called. */
void fp_timeout_message(char *out, size_t len, const char *label, const char *const *fps,
                        const bool *finished, const int *ranks, int n, double timeout_s);

#endif
