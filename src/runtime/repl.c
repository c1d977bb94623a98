/* repl.c — the driver's interactive loop, after lua.c: every chunk is compiled first in a
 * plain Lua state of the driver (never run there: the driver runs no learner code); a
 * bare expression or `=expr` becomes "return expr"; a syntax error ending in <eof> means
 * incomplete input and reading continues on "...>"; other syntax errors are printed once
 * and never reach the ranks. What compiled is appended to the transcript, sent to the
 * target ranks with driver_run, and the results are shown grouped (render.c), or line by
 * line as they arrive when a chunk runs for more than two seconds; a chunk silent for five
 * seconds gets one line saying what each rank is doing. Ctrl-C while a chunk runs asks the
 * ranks to stop (driver_interrupt); at the prompt it clears the line. A rank that dies
 * between chunks is reported before the next prompt, or at once while libedit waits for a
 * key (its key reader polls the ranks). The `:` commands live in commands.c (their table)
 * and running a chunk in repl_chunk.c. */
#include "runtime/repl_internal.h"

#include <ctype.h>
#include <errno.h>
#include <histedit.h>
#include <lauxlib.h>
#include <lua.h>
#include <limits.h>
#include <locale.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>
#include <wchar.h>

#include "base/clock.h"
#include "build_config.h"
#include "runtime/lesson.h"
#include "runtime/lesson_commands.h"
#include "runtime/render.h"
#include "runtime/xdg.h"

/* ---- Ctrl-C ----------------------------------------------------------------------------- */

/* The handler only sets flags and, while a chunk runs, calls the async-signal-safe
 * driver_interrupt (lua.c's laction does no more). */
static driver *sigint_driver;

static void on_sigint(int sig) {
    (void)sig;
    repl_sigint_seen = 1;
    if (repl_chunk_running && sigint_driver) driver_interrupt(sigint_driver);
}

/* SIGTERM or SIGHUP (the terminal closed): the session ends as at Ctrl-D, so that the
 * terminal gets its settings back and every rank is stopped and reaped, rather than the
 * driver dying with the terminal left raw and the private directory behind. A running
 * chunk is interrupted first (and one about to start, at once). The handler is reset
 * after one use: a second signal ends the driver at once (its ranks die with it:
 * launcher.c's parent-death signal). */
static volatile sig_atomic_t terminate_seen; /* the signal, or 0 */

static void on_terminate(int sig) {
    terminate_seen = sig;
    if (sigint_driver) driver_terminate(sigint_driver); /* also a chunk about to start */
}

/* Installs on_sigint and on_terminate without SA_RESTART, so that a read at the prompt
 * returns EINTR. */
static void install_sigint(driver *d) {
    sigint_driver = d;
    terminate_seen = 0;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sa.sa_handler = on_terminate;
    sa.sa_flags = SA_RESETHAND;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
}

/* ---- syntax ------------------------------------------------------------------------------ */

/* Compiles buf in L and pops the function. LUA_OK, or the status with the message left
 * in *msg (a copy, malloc'd) when msg is not NULL. */
static int compile(lua_State *L, const char *buf, size_t len, const char *name, char **msg) {
    int st = luaL_loadbuffer(L, buf, len, name);
    if (st != LUA_OK && msg) {
        const char *m = lua_tostring(L, -1);
        *msg = strdup(m ? m : "syntax error");
    }
    lua_pop(L, 1);
    return st;
}

/* lua.c's incomplete(): a syntax error at the end of the input. */
static bool is_incomplete(int st, const char *msg) {
    static const char eof[] = "<eof>";
    size_t n = msg ? strlen(msg) : 0;
    return st == LUA_ERRSYNTAX && n >= sizeof eof - 1 &&
           strcmp(msg + n - (sizeof eof - 1), eof) == 0;
}

/* ---- reading lines ------------------------------------------------------------------------- */

/* The prompt function libedit calls. */
static char *prompt_of(EditLine *el) {
    repl *r = NULL;
    el_get(el, EL_CLIENTDATA, &r);
    return r->prompt;
}

/* The current targets in words, for the prompt and the transcript: "all", or their
 * ranges ("0,2") written into buf. */
static const char *targets_label(const repl *r, char *buf, size_t size) {
    bool all = true;
    for (int i = 0; i < r->world; i++) all = all && r->targets[i];
    return all ? "all" : render_ranges(r->targets, r->world, buf, size);
}

/* Sets r->prompt for the targets ("[all]> ", "[0,2]> ") or the continuation ("...> ",
 * right-aligned under it). A world of 1 gets lua's "> " and ">> ". */
static void set_prompt(repl *r, bool continuation) {
    char ranks[48], main_prompt[64];
    if (r->world == 1) {
        snprintf(r->prompt, sizeof r->prompt, "%s", continuation ? ">> " : "> ");
        return;
    }
    snprintf(main_prompt, sizeof main_prompt, "[%s]> ", targets_label(r, ranks, sizeof ranks));
    if (!continuation) {
        snprintf(r->prompt, sizeof r->prompt, "%s", main_prompt);
        return;
    }
    int pad = (int)strlen(main_prompt) - 5;
    snprintf(r->prompt, sizeof r->prompt, "%*s...> ", pad > 0 ? pad : 0, "");
}

static void keep_raw_bytes(char *s);

/* Reads one line (malloc'd, without its newline). NULL at end of input, or when Ctrl-C
 * was pressed (then *interrupted is set). */
static char *read_line(repl *r, bool *interrupted) {
    *interrupted = false;
    repl_sigint_seen = 0;
    if (terminate_seen) return NULL;
    if (r->npending > 0) { /* typed while a chunk ran (and echoed then) */
        char *line = r->pending[0];
        memmove(r->pending, r->pending + 1, (size_t)(r->npending - 1) * sizeof *r->pending);
        r->npending--;
        if (r->el) printf("%s%s\n", r->prompt, line); /* where it ran, in the transcript */
        fflush(stdout);
        return line;
    }
    if (r->eof_seen) return NULL; /* Ctrl-D came while a chunk ran */
    if (r->el) {
        int count = 0;
        el_resize(r->el); /* the terminal may have changed size while a chunk ran */
        const char *line = el_gets(r->el, &count);
        if (terminate_seen) return NULL;
        if (!line || count <= 0) {
            if (repl_sigint_seen || (count < 0 && errno == EINTR)) {
                *interrupted = true;
                fputc('\n', stdout);
                el_reset(r->el);
            }
            return NULL;
        }
        size_t n = strlen(line);
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) n--;
        char *copy = strndup(line, n);
        if (copy) keep_raw_bytes(copy);
        return copy;
    }
    fputs(r->prompt, stdout); /* not a terminal: plain lines, prompt shown as lua.c does */
    fflush(stdout);
    char *line = NULL;
    size_t cap = 0;
    ssize_t n = getline(&line, &cap, stdin);
    if (n < 0 || terminate_seen) {
        free(line);
        if (repl_sigint_seen && !terminate_seen) {
            *interrupted = true;
            clearerr(stdin);
            fputc('\n', stdout);
        }
        return NULL;
    }
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = '\0';
    return line;
}

/* Adds a whole chunk (its lines joined) to the history and saves the history file. */
static void remember(repl *r, const char *text) {
    if (!r->hist || !text[0]) return;
    HistEvent ev;
    history(r->hist, &ev, H_ENTER, text);
    if (r->history_path[0]) history(r->hist, &ev, H_SAVE, r->history_path);
}

/* ---- running chunks ---------------------------------------------------------------------- */

/* A chunk that has printed nothing for QUIET_AFTER_S gets one status line saying what
 * each rank is doing (the "explain a hang" of the design): who waits in which collective,
 * who still runs. */
#define QUIET_AFTER_S 5.0

/* driver_set_quiet_report's callback: one line, then the chunk goes on. */
static void on_quiet(const rank_info *info, int n, void *ctx) {
    repl *r = ctx;
    printf("no output for %g s: ", QUIET_AFTER_S);
    render_activity(stdout, info, n, &r->style);
    printf(" (Ctrl-C interrupts)\n");
    fflush(stdout);
}

/* ---- ranks that die between chunks --------------------------------------------------------- */

/* Ranks that died while no chunk ran, as driver_check_idle reports them: a malloc'd
 * results array (free with free_notice), or NULL when nobody died. */
static rank_result *find_idle_deaths(repl *r) {
    rank_result *res = calloc((size_t)r->world, sizeof *res);
    if (res && driver_check_idle(r->d, res) > 0) return res;
    free(res); /* nothing to free inside: every entry is RANK_SKIPPED */
    return NULL;
}

static void free_notice(repl *r, rank_result *res) {
    if (!res) return;
    rank_results_free(res, r->world);
    free(res);
}

/* Shows each death once (the one read_key found, else any found now) with the rank's
 * last output and the :restart hint. Returns whether there was one. */
static bool report_idle_deaths(repl *r, bool new_line) {
    rank_result *res = r->notice ? r->notice : find_idle_deaths(r);
    r->notice = NULL;
    bool died = res != NULL;
    if (died) {
        if (new_line) fputc('\n', stdout);
        render_results(stdout, res, r->world, &r->style);
        repl_print_restart_hint();
        fflush(stdout);
    }
    free_notice(r, res);
    return died;
}

/* While libedit waits for a key, ranks are checked every IDLE_CHECK_MS; a death found
 * there is shown at once by a key binding (NOTICE_KEY, which nobody types: ^]) that prints
 * above the prompt and redraws the half-typed line, as the completion list does. */
#define IDLE_CHECK_MS 250
/* A byte that is not UTF-8 travels through libedit as U+F700 + byte (private use). */
#define RAW_BYTE_BASE 0xf700
#define NOTICE_KEY 0x1d

/* libedit's key reader (EL_GETCFN): as the built-in one (a byte at a time, decoded with
 * mbrtowc, invalid bytes dropped; -1 with errno EINTR when Ctrl-C interrupts the wait),
 * but waiting in poll() so that the ranks can be checked meanwhile, and reading first the
 * start of a line typed while the last chunk ran (r->typeahead). Returns 1 with *wc
 * set, 0 at end of input, -1 on error. */
static int read_key(EditLine *el, wchar_t *wc) {
    repl *r = NULL;
    el_get(el, EL_CLIENTDATA, &r);
    /* bytes read after an invalid lead byte, given back one call later */
    static char back[MB_LEN_MAX];
    static size_t nback;
    char buf[MB_LEN_MAX];
    size_t n = 0;
    mbstate_t mbs;
    memset(&mbs, 0, sizeof mbs);
    for (;;) {
        char c;
        if (nback > 0) {
            c = back[0];
            memmove(back, back + 1, --nback);
        } else if (r->typeahead_len > 0) { /* a line begun while the last chunk ran */
            c = r->typeahead[0];
            memmove(r->typeahead, r->typeahead + 1, --r->typeahead_len);
        } else {
            struct pollfd p = {.fd = STDIN_FILENO, .events = POLLIN};
            int ready = poll(&p, 1, n == 0 ? IDLE_CHECK_MS : -1);
            if (ready < 0) {
                if (errno == EINTR && !repl_sigint_seen && !terminate_seen)
                    continue; /* keep waiting */
                return -1;
            }
            if (ready == 0) {
                if (r->notice || !(r->notice = find_idle_deaths(r))) continue;
                *wc = NOTICE_KEY;
                return 1;
            }
            ssize_t got = read(STDIN_FILENO, &c, 1);
            if (got == 0) return 0;
            if (got < 0) {
                if ((errno == EINTR && !repl_sigint_seen && !terminate_seen) || errno == EAGAIN)
                    continue;
                return -1;
            }
        }
        buf[n++] = c;
        size_t used = mbrtowc(wc, &c, 1, &mbs); /* mbs holds the bytes before this one */
        if (used == (size_t)-2 && n < sizeof buf) continue; /* more bytes of this character */
        if (used == (size_t)-1 || used == (size_t)-2) {
            /* not UTF-8: the first byte travels as a private-use character, turned back into
             * the byte by keep_raw_bytes; the bytes after it are read again */
            *wc = (wchar_t)(RAW_BYTE_BASE + (unsigned char)buf[0]);
            memcpy(back + nback, buf + 1, n - 1);
            nback += n - 1;
            return 1;
        }
        return 1;
    }
}

/* Turns the private-use characters read_key made of bytes that are not UTF-8 (U+F780 ..
 * U+F7FF, encoded EF 9E 80 .. EF 9F BF) back into those bytes, in place, so that a chunk
 * keeps every byte typed or pasted, as script mode does. */
static void keep_raw_bytes(char *s) {
    char *out = s;
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        if (p[0] == 0xef && (p[1] == 0x9e || p[1] == 0x9f) && p[2] >= 0x80 && p[2] <= 0xbf) {
            unsigned cp = 0xf000u | ((p[1] & 0x3fu) << 6) | (p[2] & 0x3fu);
            *out++ = (char)(cp - RAW_BYTE_BASE);
            p += 3;
        } else {
            *out++ = (char)*p++;
        }
    }
    *out = '\0';
}

/* The NOTICE_KEY binding: shows the deaths found while waiting, then redraws the prompt
 * and what was typed. */
static unsigned char show_notice(EditLine *el, int ch) {
    (void)ch;
    repl *r = NULL;
    el_get(el, EL_CLIENTDATA, &r);
    if (!r->notice) return CC_NORM;
    return report_idle_deaths(r, true) ? CC_REDISPLAY : CC_NORM;
}

/* Records a chunk that ran to an outcome on every target, for :restart replay: with the
 * ranks where it raised an error, since what it did there before the error (and all it
 * did on the others) is state a replay must give back. */
static void keep_for_replay(repl *r, const char *chunk) {
    if (r->nkept == r->capkept) {
        int cap = r->capkept ? 2 * r->capkept : 16;
        kept_chunk *grown = realloc(r->kept, (size_t)cap * sizeof *grown);
        if (!grown) return;
        r->kept = grown;
        r->capkept = cap;
    }
    kept_chunk *k = &r->kept[r->nkept];
    k->chunk = strdup(chunk);
    k->targets = malloc((size_t)r->world * sizeof *k->targets);
    k->errored = malloc((size_t)r->world * sizeof *k->errored);
    if (!k->chunk || !k->targets || !k->errored || !r->run_errored) {
        free(k->chunk);
        free(k->targets);
        free(k->errored);
        return;
    }
    memcpy(k->targets, r->targets, (size_t)r->world * sizeof *k->targets);
    memcpy(k->errored, r->run_errored, (size_t)r->world * sizeof *k->errored);
    r->nkept++;
}

/* Sends one compiled chunk to the current targets: transcript first, then the ranks. */
static void send_chunk(repl *r, const char *chunk) {
    char ranks[64];
    if (r->transcript_path[0] &&
        xdg_transcript_append(r->transcript_path, targets_label(r, ranks, sizeof ranks), chunk) !=
            DDP_OK) {
        fprintf(stderr, "ddplab: %s (the session goes on without a transcript)\n",
                ddp_last_error());
        r->transcript_path[0] = '\0';
    }
    bool ok = false;
    r->recording = true; /* a lesson's c.ran and c.last_error see what the learner typed */
    ddp_status st = repl_run_chunk(r, chunk, r->targets, false, &ok);
    r->recording = false;
    if (st != DDP_OK) {
        fprintf(stderr, "ddplab: %s\n", ddp_last_error());
        return;
    }
    if (ok || r->run_clean) keep_for_replay(r, chunk);
}

/* Prints a syntax error once, in red on a terminal. */
static void print_syntax_error(repl *r, const char *msg) {
    if (r->style.color)
        fprintf(stdout, "\033[31m%s\033[0m\n", msg);
    else
        fprintf(stdout, "%s\n", msg);
    fflush(stdout);
}

/* Reads and handles one chunk (or : command). Returns false at end of input or :quit. */
static bool read_and_run(repl *r) {
    bool interrupted;
    report_idle_deaths(r, false); /* a rank that died since the last chunk, before the prompt */
    set_prompt(r, false);
    char *line = read_line(r, &interrupted);
    if (!line) return interrupted;
    const char *p = line;
    while (isspace((unsigned char)*p)) p++;
    if (*p == '\0') {
        free(line);
        return true;
    }
    /* Input from a pipe arrives without a wait at the prompt, where deaths are looked
     * for: a rank that died meanwhile is told now, not taken for one that dies in this
     * chunk (which would stop the others). */
    if (!r->el) report_idle_deaths(r, false);
    if (*p == ':') {
        remember(r, line);
        bool go_on = repl_command(r, p + 1);
        free(line);
        return go_on;
    }
    /* lua.c: "=expr" is "return expr"; a bare expression is tried with "return " first */
    char *buf = NULL;
    if (asprintf(&buf, "return %s", line[0] == '=' ? line + 1 : line) < 0) {
        free(line);
        return true;
    }
    if (compile(r->L, buf, strlen(buf), "=stdin", NULL) == LUA_OK) {
        remember(r, line);
        free(line);
        send_chunk(r, buf);
        free(buf);
        return true;
    }
    free(buf);
    buf = line;           /* a statement, perhaps continued on more lines */
    if (line[0] == '=') { /* "=f(1," continues as an expression */
        if (asprintf(&buf, "return %s", line + 1) < 0) buf = NULL;
        free(line);
        if (!buf) return true;
    }
    for (;;) {
        char *msg = NULL;
        int st = compile(r->L, buf, strlen(buf), "=stdin", &msg);
        if (st == LUA_OK) {
            remember(r, buf);
            send_chunk(r, buf);
            break;
        }
        if (!is_incomplete(st, msg)) {
            remember(r, buf);
            print_syntax_error(r, msg);
            free(msg);
            break;
        }
        free(msg);
        set_prompt(r, true);
        char *more = read_line(r, &interrupted);
        if (!more) { /* Ctrl-C drops the unfinished chunk; end of input ends the session */
            free(buf);
            return interrupted;
        }
        char *joined = NULL;
        if (asprintf(&joined, "%s\n%s", buf, more) < 0) joined = NULL;
        free(more);
        free(buf);
        if (!joined) return true;
        buf = joined;
    }
    free(buf);
    return true;
}

/* ---- completion ----------------------------------------------------------------------------- */

static bool is_word_char(char c) {
    return isalnum((unsigned char)c) || c == '_' || c == '.' || c == ':';
}

/* Lists completion candidates under the line, shortened to what follows the last "."
 * or ":" (as shells list file names), wrapped to the terminal width. */
static void list_candidates(char **cands, int n) {
    int width = repl_terminal_width(), col = 0;
    fputc('\n', stdout);
    for (int i = 0; i < n; i++) {
        const char *tail = cands[i] + strlen(cands[i]);
        while (tail > cands[i] && tail[-1] != '.' && tail[-1] != ':') tail--;
        if (tail == cands[i] + 1 && cands[i][0] == ':') tail = cands[i]; /* ":show" */
        int w = (int)strlen(tail);
        if (col > 0 && col + 2 + w > width) {
            fputc('\n', stdout);
            col = 0;
        }
        fprintf(stdout, "%s%s", col > 0 ? "  " : "", tail);
        col += (col > 0 ? 2 : 0) + w;
    }
    fputc('\n', stdout);
    fflush(stdout);
}

/* Lua names starting with `word` from the first target rank (driver_complete), as whole
 * words in a malloc'd array; returns how many, or -1 when no rank can answer. */
static int lua_candidates(repl *r, const char *word, char ***out) {
    size_t wlen = strlen(word);
    int first = 0, n = 0;
    while (first < r->world && !r->targets[first]) first++;
    char **matches = NULL;
    int count = 0;
    if (first == r->world || driver_complete(r->d, first, word, &matches, &count) != DDP_OK)
        return -1;
    /* the driver may answer with whole words ("torch.zeros") or with the field after
     * the last "." / ":" ("zeros"): accept both */
    const char *sep = word + wlen;
    while (sep > word && sep[-1] != '.' && sep[-1] != ':') sep--;
    size_t stem = (size_t)(sep - word);
    char **cands = calloc((size_t)count + 1, sizeof *cands);
    for (int i = 0; cands && i < count; i++) {
        char *full = NULL;
        if (strncmp(matches[i], word, wlen) == 0)
            full = strdup(matches[i]);
        else if (asprintf(&full, "%.*s%s", (int)stem, word, matches[i]) < 0)
            full = NULL;
        if (full && strncmp(full, word, wlen) == 0)
            cands[n++] = full;
        else
            free(full);
    }
    for (int i = 0; i < count; i++) free(matches[i]);
    free(matches);
    *out = cands;
    return n;
}

/* libedit's Tab: completes `:` commands at the start of the line and their arguments (the
 * command table), else Lua names from the first target rank. Inserts the common prefix; lists the
 * candidates when there is more than one. */
static unsigned char complete(EditLine *el, int ch) {
    (void)ch;
    repl *r = NULL;
    el_get(el, EL_CLIENTDATA, &r);
    const LineInfo *li = el_line(el);
    const char *start = li->cursor;
    while (start > li->buffer && is_word_char(start[-1])) start--;
    size_t wlen = (size_t)(li->cursor - start);
    char word[256];
    if (wlen >= sizeof word) return CC_REFRESH_BEEP;
    memcpy(word, start, wlen);
    word[wlen] = '\0';
    char **cands = NULL;
    int n = 0;
    const char *lead = li->buffer;
    while (lead < start && isspace((unsigned char)*lead)) lead++;
    n = -1;               /* not a command's word: a Lua name */
    if (lead[0] == ':') { /* a command name at the start, or that command's argument */
        const char *name_end = lead + 1;
        while (*name_end && !isspace((unsigned char)*name_end)) name_end++;
        char name[32];
        snprintf(name, sizeof name, "%.*s", (int)(name_end - lead - 1), lead + 1);
        n = repl_command_candidates(r, lead == start ? NULL : name, word, lead == start, &cands);
    }
    if (n < 0 && (n = lua_candidates(r, word, &cands)) < 0) return CC_REFRESH_BEEP;
    unsigned char result = CC_REFRESH_BEEP;
    if (n > 0) {
        size_t common = strlen(cands[0]);
        for (int i = 1; i < n; i++) {
            size_t k = 0;
            while (k < common && cands[i][k] == cands[0][k]) k++;
            common = k;
        }
        if (common > wlen) {
            char *ins = strndup(cands[0] + wlen, common - wlen);
            if (ins) el_insertstr(el, ins);
            free(ins);
            result = CC_REFRESH;
        } else if (n > 1) {
            list_candidates(cands, n);
            result = CC_REDISPLAY;
        }
    }
    for (int i = 0; i < n; i++) free(cands[i]);
    free(cands);
    return result;
}

/* ---- the loop ------------------------------------------------------------------------------- */

/* Sets up libedit and the history file when stdin and stdout are terminals. */
static void setup_editline(repl *r) {
    if (!isatty(STDIN_FILENO) || !isatty(STDOUT_FILENO)) return;
    /* libedit reads characters: it needs a UTF-8 LC_CTYPE to take Chinese (or any
     * non-ASCII) input at all; the C locale would drop every byte above 0x7f. Only
     * LC_CTYPE: numbers keep the C format. */
    const char *ctype = setlocale(LC_CTYPE, "");
    if (!ctype || (!strstr(ctype, "UTF-8") && !strstr(ctype, "utf8")))
        setlocale(LC_CTYPE, "C.UTF-8");
    r->el = el_init("ddplab", stdin, stdout, stderr);
    if (!r->el) return;
    el_set(r->el, EL_CLIENTDATA, r);
    el_set(r->el, EL_PROMPT, prompt_of);
    el_set(r->el, EL_EDITOR, "emacs");
    el_set(r->el, EL_ADDFN, "ddplab-complete", "complete a Lua name or : command", complete);
    el_set(r->el, EL_BIND, "^I", "ddplab-complete", NULL);
    el_set(r->el, EL_ADDFN, "ddplab-notice", "show ranks that died while idle", show_notice);
    el_set(r->el, EL_BIND, "^]", "ddplab-notice", NULL);
    el_set(r->el, EL_GETCFN, read_key);
    r->hist = history_init();
    if (r->hist) {
        HistEvent ev;
        history(r->hist, &ev, H_SETSIZE, 1000);
        history(r->hist, &ev, H_SETUNIQUE, 1);
        if (xdg_history_path(r->history_path, sizeof r->history_path) == DDP_OK)
            history(r->hist, &ev, H_LOAD, r->history_path);
        else
            r->history_path[0] = '\0';
        el_set(r->el, EL_HIST, history, r->hist);
    }
    el_source(r->el, NULL); /* the learner's ~/.editrc, if any */
}

int repl_run(driver *d, const repl_options *opts) {
    repl r;
    memset(&r, 0, sizeof r);
    r.d = d;
    r.world = driver_world_size(d);
    r.targets = malloc((size_t)r.world * sizeof *r.targets);
    r.L = luaL_newstate();
    if (!r.targets || !r.L) {
        fprintf(stderr, "ddplab: out of memory starting the REPL\n");
        free(r.targets);
        if (r.L) lua_close(r.L);
        return 1;
    }
    for (int i = 0; i < r.world; i++) r.targets[i] = true;
    r.style.labels = r.world > 1;
    r.style.color = render_color_wanted(STDOUT_FILENO);
    if (xdg_transcript_path(r.transcript_path, sizeof r.transcript_path) != DDP_OK) {
        fprintf(stderr, "ddplab: %s (the session goes on without a transcript)\n",
                ddp_last_error());
        r.transcript_path[0] = '\0';
    }
    repl_commands_add_core();
    lesson_commands_add();
    if (lesson_open_session(r.world, r.style.color, repl_terminal_width(), true, &r.lesson) !=
        DDP_OK) {
        fprintf(stderr, "ddplab: %s (the session goes on without lessons)\n", ddp_last_error());
        r.lesson = NULL;
    }
    setup_editline(&r);
    install_sigint(d);
    if (r.el) /* for someone at a terminal, who can press Ctrl-C; piped input is not */
        driver_set_quiet_report(d, QUIET_AFTER_S, on_quiet, &r);
    if (r.el)
        printf("ddplab %s on %d rank%s. :help for help, Ctrl-D to quit.\n", DDPLAB_VERSION, r.world,
               r.world == 1 ? "" : "s");
    lesson_repl_start(&r, opts);
    while (!terminate_seen && read_and_run(&r)) {
    }
    if (r.el) fputc('\n', stdout);
    fflush(stdout);
    if (terminate_seen) r.exit_status = 128 + terminate_seen;
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGHUP, SIG_DFL);
    sigint_driver = NULL;
    driver_set_quiet_report(d, 0, NULL, NULL);
    if (r.el) el_end(r.el);
    if (r.hist) history_end(r.hist);
    for (int i = 0; i < r.nkept; i++) {
        free(r.kept[i].chunk);
        free(r.kept[i].targets);
        free(r.kept[i].errored);
    }
    free(r.kept);
    free(r.run_errored);
    free_notice(&r, r.notice);
    lesson_close_session(r.lesson);
    for (int i = 0; i < r.npending; i++) free(r.pending[i]);
    free(r.pending);
    free(r.typeahead);
    free(r.targets);
    lua_close(r.L);
    return r.exit_status;
}
