/* driver_query.c — what the terminal side asks the driver between chunks: completion
 * candidates from a rank's Lua state, the :ranks table (pid, host, device, state, memory,
 * the last collective seen), and the ranks that died while no chunk ran (so that the REPL
 * reports a death before the next prompt, or while it waits at one); and the status line
 * of a chunk that has gone quiet (who waits in which collective, who still runs). */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "runtime/driver_internal.h"
#include "runtime/launcher.h"

ddp_status driver_complete(driver *d, int rank, const char *word, char ***matches, int *count) {
    *matches = NULL;
    *count = 0;
    if (!d->ranks || rank < 0 || rank >= d->world)
        return DDP_FAIL(DDP_ERR_ARG, "complete: there is no rank %d", rank);
    rank_slot *s = &d->ranks[rank];
    if (s->state != SLOT_IDLE)
        return DDP_FAIL(DDP_ERR_STATE, "complete: rank %d is %s", rank,
                        s->state == SLOT_DEAD ? "dead" : "busy");
    s->completions_ready = false;
    if (proto_send(s->fd, MSG_COMPLETE, word, strlen(word)) != DDP_OK) {
        driver_mark_dead(s);
        return DDP_FAIL(DDP_ERR_COMM, "complete: rank %d %s", rank, s->death);
    }
    int64_t deadline = ddp_now_ms() + 2000;
    while (!s->completions_ready) {
        int64_t left = deadline - ddp_now_ms();
        if (left <= 0) return DDP_FAIL(DDP_ERR_TIMEOUT, "complete: rank %d did not answer", rank);
        struct pollfd p = {.fd = s->fd, .events = POLLIN};
        if (poll(&p, 1, (int)left) > 0 && !driver_pump_rank(d, rank, NULL, NULL)) {
            driver_mark_dead(s);
            return DDP_FAIL(DDP_ERR_COMM, "complete: rank %d %s", rank, s->death);
        }
    }
    int n = 0;
    for (uint32_t i = 0; i < s->completions_len; i++) n += s->completions[i] == '\0';
    if (s->completions_len > 0) n++;
    char **list = calloc((size_t)n + 1, sizeof *list);
    if (!list) return DDP_FAIL(DDP_ERR_NOMEM, "complete: no memory");
    const char *at = s->completions;
    for (int i = 0; i < n; i++) {
        list[i] = strdup(at);
        at += strlen(at) + 1;
    }
    free(s->completions);
    s->completions = NULL;
    s->completions_ready = false;
    *matches = list;
    *count = n;
    return DDP_OK;
}

ddp_status driver_ranks(driver *d, rank_info *info) {
    if (!d->ranks) return DDP_FAIL(DDP_ERR_STATE, "driver: the ranks are not running");
    driver_check_exits(d);
    for (int r = 0; r < d->world; r++) {
        rank_slot *s = &d->ranks[r];
        /* Pick up state reports and notice closed channels of idle ranks. */
        if (s->fd >= 0 && s->state != SLOT_DEAD) {
            struct pollfd p = {.fd = s->fd, .events = POLLIN};
            if (s->state == SLOT_IDLE && poll(&p, 1, 0) > 0 && !driver_pump_rank(d, r, NULL, NULL))
                driver_mark_dead(s);
        }
        if (s->state == SLOT_IDLE && s->reaped) driver_mark_dead(s);
        rank_info *in = &info[r];
        memset(in, 0, sizeof *in);
        in->rank = r;
        in->pid = (int)s->pid;
        snprintf(in->host, sizeof in->host, "%s", s->host);
        snprintf(in->device, sizeof in->device, "%s", s->device);
        if (s->state == SLOT_DEAD)
            snprintf(in->state, sizeof in->state, "dead (%.80s)", s->death);
        else if (s->state == SLOT_RUNNING)
            snprintf(in->state, sizeof in->state, "%s", s->activity[0] ? s->activity : "running");
        else if (s->state == SLOT_IDLE && s->last_collective[0])
            snprintf(in->state, sizeof in->state, "idle (last: %.80s)", s->last_collective);
        else
            snprintf(in->state, sizeof in->state, "%s",
                     s->state == SLOT_STARTING ? "starting" : "idle");
        in->rss_bytes = s->state == SLOT_DEAD || s->remote ? -1 : launcher_rss_bytes(s->pid);
        in->has_gpu = s->has_gpu && s->state != SLOT_DEAD;
        in->gpu_allocated = s->gpu_allocated;
        in->gpu_reserved = s->gpu_reserved;
    }
    return DDP_OK;
}

void driver_death_result(rank_slot *s, int r, rank_result *res) {
    s->death_told = true;
    char msg[TAIL_BYTES + 256];
    snprintf(msg, sizeof msg, "rank %d %s", r, s->death);
    driver_append_tail(s, msg, sizeof msg);
    res->outcome = RANK_DIED;
    res->error = strdup(msg);
    res->exit_status = driver_exit_status(s);
}

int driver_check_idle(driver *d, rank_result *results) {
    for (int r = 0; r < d->world; r++)
        results[r] = (rank_result){.rank = r, .outcome = RANK_SKIPPED};
    if (!d->ranks) return 0;
    driver_check_exits(d);
    driver_nodes_poll(d, 0);
    int died = 0;
    for (int r = 0; r < d->world; r++) {
        rank_slot *s = &d->ranks[r];
        if (s->state == SLOT_IDLE) {
            driver_drain_idle_output(s); /* into its tail: the last words of a dying rank */
            bool gone = s->reaped;
            struct pollfd p = {.fd = s->fd, .events = POLLIN};
            if (!gone && s->fd >= 0 && poll(&p, 1, 0) > 0)
                gone = !driver_pump_rank(d, r, NULL, NULL);
            if (gone) driver_mark_dead(s);
        }
        if (s->state != SLOT_DEAD || s->death_told) continue;
        driver_death_result(s, r, &results[r]);
        died++;
    }
    return died;
}

/* ---- the quiet report of a long chunk --------------------------------------------- */

/* What rank r is doing, for a quiet report: its activity while it runs the chunk, how it
 * ended once it did, "" when it is not part of the chunk. */
static void quiet_state(const driver *d, int r, const rank_result *res, char *buf, size_t size) {
    const rank_slot *s = &d->ranks[r];
    if (s->state == SLOT_RUNNING)
        snprintf(buf, size, "%s",
                 s->activity[0] && strcmp(s->activity, "idle") != 0 ? s->activity : "running");
    else if (res->outcome == RANK_SKIPPED)
        buf[0] = '\0';
    else
        snprintf(buf, size, "%s",
                 res->outcome == RANK_DONE   ? "finished"
                 : res->outcome == RANK_DIED ? "dead"
                                             : "failed");
}

void driver_quiet_report(driver *d, const rank_result *results) {
    rank_info *info = calloc((size_t)d->world, sizeof *info);
    if (!info) return;
    for (int r = 0; r < d->world; r++) {
        info[r].rank = r;
        info[r].pid = (int)d->ranks[r].pid;
        quiet_state(d, r, &results[r], info[r].state, sizeof info[r].state);
    }
    d->quiet_fn(info, d->world, d->quiet_ctx);
    free(info);
}

void driver_set_quiet_report(driver *d, double after_s, rank_quiet_fn fn, void *ctx) {
    d->quiet_fn = fn;
    d->quiet_ctx = ctx;
    d->quiet_after_s = after_s;
}
