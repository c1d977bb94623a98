/* interrupt.h — the process-wide "the learner pressed Ctrl-C" flag.
 *
 * A rank's SIGINT handler (src/runtime/rank.c) raises it; every wait that can block for
 * long in the core (store waits, collective fingerprint exchange, polling loops) checks
 * it at least every 50 ms and returns DDP_ERR_INTERRUPTED; the rank clears it before
 * running the next chunk. Raising is async-signal-safe. */
#ifndef DDP_BASE_INTERRUPT_H
#define DDP_BASE_INTERRUPT_H

#include <stdbool.h>

void ddp_interrupt_raise(void); /* async-signal-safe */
bool ddp_interrupt_pending(void);
void ddp_interrupt_clear(void);

#endif
