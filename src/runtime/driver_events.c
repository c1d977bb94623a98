/* driver_events.c — the driver's side of the typed events ranks send while a chunk runs
 * (protocol.h): a lesson check's verdict (kept in the rank's result), progress ticks (to
 * the handler the REPL or script mode set: one progress bar), "ended" (which failure came
 * first), and the lesson checks' gather, answered once every running rank has sent its
 * value, so that a check can compare ranks without the learner's process group. Also the
 * two setters of driver.h for the handler and the input hook. Shared with driver.c
 * through driver_internal.h. */
#include <stdlib.h>
#include <string.h>

#include "runtime/driver_internal.h"

void driver_set_input_hook(driver *d, int fd, driver_input_fn fn, void *ctx) {
    d->input_fd = fn ? fd : -1;
    d->input_fn = fn;
    d->input_ctx = ctx;
}

void driver_set_event_handler(driver *d, rank_event_fn fn, void *ctx) {
    d->event_fn = fn;
    d->event_ctx = ctx;
}

void driver_take_event(driver *d, int r, proto_frame *f, rank_result *res, int *outcomes) {
    proto_event ev;
    if (proto_event_decode(f->data, f->len, &ev) != DDP_OK) return;
    if (ev.kind == PROTO_EVENT_ENDED) {
        if (res->order == 0) res->order = ++*outcomes;
        return;
    }
    if (ev.kind == PROTO_EVENT_VERDICT) {
        free(res->verdict_message);
        res->verdict_message = strdup(ev.message);
        res->has_verdict = true;
        res->verdict = (int)ev.verdict;
    }
    if (d->event_fn) d->event_fn(r, &ev, d->event_ctx);
}

void driver_gather_init(gather_state *g, int world) {
    g->data = calloc((size_t)world, sizeof *g->data);
    g->len = calloc((size_t)world, sizeof *g->len);
    g->n = 0;
    if (!g->data || !g->len) {
        free(g->data);
        free(g->len);
        g->data = NULL;
        g->len = NULL;
    }
}

void driver_gather_free(gather_state *g, int world) {
    for (int r = 0; g->data && r < world; r++) free(g->data[r]);
    free(g->data);
    free(g->len);
    g->data = NULL;
    g->len = NULL;
    g->n = 0;
}

void driver_gather_take(gather_state *g, int r, proto_frame *f) {
    if (!g->data || g->data[r]) return; /* one value per rank and round */
    g->data[r] = f->data;
    g->len[r] = f->len;
    g->n++;
    f->data = NULL;
}

void driver_gather_answer(driver *d, gather_state *g) {
    if (!g->data || g->n == 0) return;
    for (int r = 0; r < d->world; r++)
        if (d->ranks[r].state == SLOT_RUNNING && !g->data[r]) return; /* not yet */
    size_t len = 0;
    for (int r = 0; r < d->world; r++) len += 4 + (g->data[r] ? g->len[r] : 0);
    unsigned char *payload = malloc(len ? len : 1);
    size_t at = 0;
    for (int r = 0; payload && r < d->world; r++) {
        uint32_t n = g->data[r] ? g->len[r] : PROTO_GATHER_MISSING;
        payload[at++] = (unsigned char)(n >> 24);
        payload[at++] = (unsigned char)(n >> 16);
        payload[at++] = (unsigned char)(n >> 8);
        payload[at++] = (unsigned char)n;
        if (g->data[r]) {
            memcpy(payload + at, g->data[r], g->len[r]);
            at += g->len[r];
        }
    }
    for (int r = 0; r < d->world; r++) {
        /* no memory: an empty answer, which the rank reports as a failed gather; a rank
         * that cannot be written to shows up as dead in the run loop */
        if (g->data[r] && d->ranks[r].state == SLOT_RUNNING && d->ranks[r].fd >= 0)
            (void)proto_send(d->ranks[r].fd, MSG_GATHERED, payload, payload ? len : 0);
        free(g->data[r]);
        g->data[r] = NULL;
    }
    g->n = 0;
    free(payload);
}
