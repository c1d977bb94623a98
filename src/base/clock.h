/* clock.h — the monotonic clock in milliseconds, for deadlines and timeouts (a wall clock
 * can jump when the time is set; this one never goes back). */
#ifndef DDP_BASE_CLOCK_H
#define DDP_BASE_CLOCK_H

#include <stdint.h>

/* Milliseconds on CLOCK_MONOTONIC since an arbitrary start. Cannot fail. */
int64_t ddp_now_ms(void);

#endif
