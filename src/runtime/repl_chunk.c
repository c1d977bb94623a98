/* repl_chunk.c — running one chunk for the REPL and its commands: syntax checked first in
 * a throwaway plain state (repl_check_syntax), then sent to the target ranks with
 * driver_run; the results are shown grouped (render.c), or line by line as they arrive
 * when a chunk runs for more than two seconds. Uses neither repl.c nor commands.c, so that
 * both can call it (repl_internal.h). */
#include <lauxlib.h>
#include <lua.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "base/clock.h"
#include "runtime/lesson.h"
#include "runtime/progress_bar.h"
#include "runtime/protocol.h"
#include "runtime/render.h"
#include "runtime/repl_internal.h"

volatile sig_atomic_t repl_chunk_running;
volatile sig_atomic_t repl_sigint_seen;

ddp_status repl_check_syntax(const char *chunk, size_t len, const char *chunkname) {
    lua_State *L = luaL_newstate();
    if (!L) return DDP_FAIL(DDP_ERR_NOMEM, "cannot create a Lua state to check syntax");
    char *msg = NULL;
    int st = luaL_loadbuffer(L, chunk, len, chunkname);
    if (st != LUA_OK) msg = strdup(lua_tostring(L, -1) ? lua_tostring(L, -1) : "syntax error");
    lua_close(L);
    if (st == LUA_OK) return DDP_OK;
    ddp_status s = DDP_FAIL(DDP_ERR_ARG, "%s", msg ? msg : "syntax error");
    free(msg);
    return s;
}

/* ---- running ---------------------------------------------------------------------------- */

/* Width of the terminal for :show columns. */
int repl_terminal_width(void) {
    struct winsize ws;
    if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) return ws.ws_col;
    const char *cols = getenv("COLUMNS");
    int c = cols ? atoi(cols) : 0;
    return c > 0 ? c : 80;
}

/* After a rank died: how to carry on. */
void repl_print_restart_hint(void) {
    printf(":restart starts every rank afresh; :restart replay also re-runs "
           "what succeeded so far\n");
}

/* A chunk's output is shown grouped once every rank has finished; a chunk that runs
 * longer than LIVE_AFTER_MS (a training loop printing its loss) switches to showing each
 * line as it arrives, labelled, so that the learner is not left staring at nothing. */
#define LIVE_AFTER_MS 2000
/* Output larger than this is streamed at once too: grouping it would hold it all. */
#define LIVE_AFTER_BYTES (256u * 1024u)

typedef struct {
    repl *r;
    int world;
    render_style style;
    int64_t start_ms; /* when the chunk was sent */
    char **held;      /* per rank: output held back for grouping (malloc'd) */
    size_t *held_len;
    size_t held_total;   /* bytes in held[] */
    line_labeller *live; /* non-NULL once streaming */
    progress_bar *bar;   /* the one bar of progress() ticks, on a terminal only */
    bool terminal;
    int width;
} live_output;

/* Keeps a line typed while the chunk runs for the next prompt. */
static void keep_pending(repl *r, const char *line, size_t n) {
    char **grown = realloc(r->pending, (size_t)(r->npending + 1) * sizeof *grown);
    if (!grown) return;
    r->pending = grown;
    char *copy = strndup(line, n);
    if (copy) r->pending[r->npending++] = copy;
}

/* One whole line typed while the chunk runs: a read-only command (:ranks, :help, a
 * lesson's text) answers now, above the output; anything else waits for the prompt. */
static void take_typed_line(live_output *lo, const char *line, size_t n) {
    repl *r = lo->r;
    const char *p = line;
    while (p < line + n && (*p == ' ' || *p == '\t')) p++;
    if (p < line + n && *p == ':' && r->npending == 0) {
        char name[32];
        size_t k = 0;
        for (const char *q = p + 1; q < line + n && *q != ' ' && k + 1 < sizeof name; q++)
            name[k++] = *q;
        name[k] = '\0';
        const repl_command_def *c = repl_command_find(name);
        if (c && c->while_running) {
            char *cmd = strndup(p + 1, (size_t)(line + n - p - 1));
            if (!cmd) return;
            progress_bar_hide(lo->bar);
            if (lo->live) labeller_flush(lo->live);
            repl_command(r, cmd);
            progress_bar_show(lo->bar);
            free(cmd);
            return;
        }
    }
    keep_pending(r, line, n);
}

/* driver_set_input_hook's callback (a terminal only): reads what was typed; Ctrl-D at the
 * start of a line (end of input) ends the session once the chunk ends. */
static void on_typed(void *ctx) {
    live_output *lo = ctx;
    repl *r = lo->r;
    char buf[4096];
    ssize_t got = read(STDIN_FILENO, buf, sizeof buf);
    if (got < 0) return;
    if (got == 0) {
        if (!r->eof_seen) {
            progress_bar_hide(lo->bar);
            printf("(Ctrl-D: the session ends when this chunk does; Ctrl-C stops it now)\n");
            fflush(stdout);
            progress_bar_show(lo->bar);
        }
        r->eof_seen = true;
        driver_set_input_hook(r->d, -1, NULL, NULL); /* nothing more to read */
        return;
    }
    char *grown = realloc(r->typeahead, r->typeahead_len + (size_t)got);
    if (!grown) return;
    memcpy(grown + r->typeahead_len, buf, (size_t)got);
    r->typeahead = grown;
    r->typeahead_len += (size_t)got;
    size_t start = 0;
    for (size_t i = 0; i < r->typeahead_len; i++)
        if (r->typeahead[i] == '\n') {
            take_typed_line(lo, r->typeahead + start, i - start);
            start = i + 1;
        }
    memmove(r->typeahead, r->typeahead + start, r->typeahead_len - start);
    r->typeahead_len -= start;
}

/* driver_set_event_handler's callback: progress ticks move the one bar. */
static void on_chunk_event(int rank, const struct proto_event *ev, void *ctx) {
    live_output *lo = ctx;
    if (ev->kind != PROTO_EVENT_PROGRESS || !lo->terminal) return;
    if (!lo->bar) lo->bar = progress_bar_new(lo->world, lo->width, stdout);
    progress_bar_tick(lo->bar, rank, ev->done, ev->total, ev->label);
}

/* driver_run's on_output: hold the bytes, or stream them once the chunk runs long. */
static void on_chunk_output(int rank, const char *bytes, size_t len, void *ctx) {
    live_output *lo = ctx;
    if (!lo->live &&
        (ddp_now_ms() - lo->start_ms >= LIVE_AFTER_MS || lo->held_total + len > LIVE_AFTER_BYTES)) {
        lo->live = labeller_new(lo->world, &lo->style, stdout);
        for (int i = 0; lo->live && i < lo->world; i++)
            if (lo->held_len[i] > 0) labeller_feed(lo->live, i, lo->held[i], lo->held_len[i]);
    }
    if (lo->live) {
        progress_bar_hide(lo->bar); /* lines go above the bar */
        labeller_feed(lo->live, rank, bytes, len);
        progress_bar_show(lo->bar);
        return;
    }
    if (rank < 0 || rank >= lo->world) return;
    char *grown = realloc(lo->held[rank], lo->held_len[rank] + len);
    if (!grown) return; /* the results still carry the output */
    memcpy(grown + lo->held_len[rank], bytes, len);
    lo->held[rank] = grown;
    lo->held_len[rank] += len;
    lo->held_total += len;
}

ddp_status repl_run_chunk(repl *r, const char *chunk, const bool *targets, bool show_mode,
                          bool *all_done) {
    rank_result *results = calloc((size_t)r->world, sizeof *results);
    live_output lo = {.r = r,
                      .world = r->world,
                      .style = r->style,
                      .start_ms = ddp_now_ms(),
                      .terminal = r->el != NULL,
                      .width = repl_terminal_width()};
    lo.held = calloc((size_t)r->world, sizeof *lo.held);
    lo.held_len = calloc((size_t)r->world, sizeof *lo.held_len);
    ddp_status st = DDP_OK;
    if (!results || !lo.held || !lo.held_len) {
        st = DDP_FAIL(DDP_ERR_NOMEM, "out of memory for the results of a chunk");
        goto out;
    }
    repl_sigint_seen = 0;
    repl_chunk_running = 1;
    driver_set_event_handler(r->d, on_chunk_event, &lo);
    if (r->el && !r->eof_seen) driver_set_input_hook(r->d, STDIN_FILENO, on_typed, &lo);
    st = driver_run(r->d, chunk, strlen(chunk), "=stdin", targets,
                    show_mode ? NULL : on_chunk_output, &lo, results);
    driver_set_input_hook(r->d, -1, NULL, NULL);
    driver_set_event_handler(r->d, NULL, NULL);
    repl_chunk_running = 0;
    if (lo.bar && lo.live) labeller_flush(lo.live); /* a last partial line, above the bar */
    progress_bar_free(lo.bar);
    lo.bar = NULL;
    if (repl_sigint_seen && r->el) fputc('\n', stdout); /* after the terminal's "^C" */
    if (st != DDP_OK) goto out;
    if (lo.live) { /* the output is on the screen already: only the outcomes are left */
        labeller_flush(lo.live);
        for (int i = 0; i < r->world; i++) results[i].output_len = 0;
    }
    if (r->lesson && r->recording) lesson_record(r->lesson, chunk, results, r->world);
    if (show_mode)
        render_show(stdout, results, r->world, repl_terminal_width(), &r->style);
    else
        render_results(stdout, results, r->world, &r->style);
    bool ok = true, died = false;
    if (!r->run_errored) r->run_errored = calloc((size_t)r->world, sizeof *r->run_errored);
    r->run_clean = r->run_errored != NULL;
    for (int i = 0; i < r->world; i++) {
        if (targets[i] && results[i].outcome != RANK_DONE) ok = false;
        if (targets[i] && results[i].outcome == RANK_DIED) died = true;
        bool errored = targets[i] && results[i].outcome == RANK_ERROR;
        if (r->run_errored) r->run_errored[i] = errored;
        if (targets[i] && results[i].outcome != RANK_DONE && !errored) r->run_clean = false;
    }
    if (died) repl_print_restart_hint();
    if (all_done) *all_done = ok;
out:
    if (results) rank_results_free(results, r->world);
    free(results);
    labeller_free(lo.live);
    for (int i = 0; lo.held && i < r->world; i++) free(lo.held[i]);
    free(lo.held);
    free(lo.held_len);
    fflush(stdout);
    return st;
}
