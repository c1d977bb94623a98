/* interrupt.c — the Ctrl-C flag (see interrupt.h). */
#include "base/interrupt.h"

#include <signal.h>

static volatile sig_atomic_t interrupt_pending;

void ddp_interrupt_raise(void) {
    interrupt_pending = 1;
}

bool ddp_interrupt_pending(void) {
    return interrupt_pending != 0;
}

void ddp_interrupt_clear(void) {
    interrupt_pending = 0;
}
