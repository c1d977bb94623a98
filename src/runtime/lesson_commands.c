/* lesson_commands.c — the course's rows of the `:` command table (:lessons, :lesson N,
 * :next, :prev, :check, :hint, :solution, :solution!, :reset, :lang) and what the REPL
 * does for a lesson at start-up (--lesson N, or the offer to continue). The text comes
 * from the engine (lesson.h); a step's setup and check run on every rank through the
 * driver like any chunk, and a check's verdicts come back typed in the results. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/lesson.h"
#include "runtime/lesson_commands.h"
#include "runtime/repl_internal.h"

/* Prints malloc'd text (NULL-safe) and frees it. */
static void put(char *text) {
    if (text) fputs(text, stdout);
    if (text && *text && text[strlen(text) - 1] != '\n') fputc('\n', stdout);
    free(text);
    fflush(stdout);
}

/* Whether the engine is there; says so when it is not. */
static bool have_engine(repl *r) {
    if (r->lesson) return true;
    printf("the lessons are not available in this session (the engine did not start)\n");
    return false;
}

/* Runs the current step's setup (if any) on every rank, showing what it printed. */
static void run_setup(repl *r) {
    char *setup = lesson_call(r->lesson, "setup_chunk", NULL, NULL, NULL);
    if (!setup) return;
    bool *all = malloc((size_t)r->world * sizeof *all);
    if (all) {
        for (int i = 0; i < r->world; i++) all[i] = true;
        if (repl_check_syntax(setup, strlen(setup), "=setup") != DDP_OK)
            printf("lesson defect: the step's setup does not compile: %s\n", ddp_last_error());
        else if (repl_run_chunk(r, setup, all, false, NULL) != DDP_OK)
            fprintf(stderr, "ddplab: %s\n", ddp_last_error());
    }
    free(all);
    free(setup);
}

/* Shows a step just entered (text from the engine) and runs its setup. */
static void entered(repl *r, char *text) {
    put(text);
    run_setup(r);
}

static void command_lessons(repl *r, const char *arg) {
    (void)arg;
    if (have_engine(r)) put(lesson_call(r->lesson, "index", NULL, NULL, NULL));
}

static void command_lesson(repl *r, const char *arg) {
    if (!have_engine(r)) return;
    bool ok = false;
    char *text;
    if (!*arg && lesson_call_bool(r->lesson, "is_open")) { /* the current step again */
        put(lesson_call(r->lesson, "step_text", NULL, NULL, NULL));
        return;
    }
    if (!*arg) /* none open: where the learner left off, if anywhere */
        text = lesson_call(r->lesson, "resume", NULL, NULL, &ok);
    else
        text = lesson_call(r->lesson, "open", arg, NULL, &ok);
    if (ok)
        entered(r, text);
    else
        put(text);
}

/* :next and :prev */
static void move(repl *r, const char *delta) {
    if (!have_engine(r)) return;
    bool moved = false;
    char *text = lesson_call(r->lesson, "move", delta, NULL, &moved);
    if (moved)
        entered(r, text);
    else
        put(text);
}

static void command_next(repl *r, const char *arg) {
    (void)arg;
    move(r, "1");
}

static void command_prev(repl *r, const char *arg) {
    (void)arg;
    move(r, "-1");
}

static void command_hint(repl *r, const char *arg) {
    (void)arg;
    if (have_engine(r)) put(lesson_call(r->lesson, "hint", NULL, NULL, NULL));
}

static void command_solution(repl *r, const char *arg) {
    (void)arg;
    if (have_engine(r)) put(lesson_call(r->lesson, "solution", NULL, NULL, NULL));
}

static void command_solution_now(repl *r, const char *arg) {
    (void)arg;
    if (have_engine(r)) put(lesson_call(r->lesson, "solution", "force", NULL, NULL));
}

static void command_lang(repl *r, const char *arg) {
    if (!have_engine(r)) return;
    if (!*arg) {
        put(lesson_call(r->lesson, "lang", NULL, NULL, NULL));
        return;
    }
    bool ok = false;
    put(lesson_call(r->lesson, "set_lang", arg, NULL, &ok));
    if (ok && lesson_call_bool(r->lesson, "is_open"))
        put(lesson_call(r->lesson, "step_text", NULL, NULL, NULL));
}

/* Runs the check on every rank: the verdicts come back typed in the results. */
ddp_status lesson_run_check(lesson_session *ls, driver *d, int world, char **lines, bool *passed) {
    *lines = NULL;
    *passed = false;
    char *chunk = lesson_check_chunk(ls);
    if (!chunk) {
        *lines = lesson_call(ls, "step_text", NULL, NULL, NULL);
        return DDP_OK;
    }
    rank_result *results = calloc((size_t)world, sizeof *results);
    if (!results) {
        free(chunk);
        return DDP_FAIL(DDP_ERR_NOMEM, "no memory for a check");
    }
    ddp_status st = driver_run(d, chunk, strlen(chunk), "=check", NULL, NULL, NULL, results);
    free(chunk);
    if (st == DDP_OK) *lines = lesson_checked(ls, results, world, passed);
    rank_results_free(results, world);
    free(results);
    return st;
}

static void command_check(repl *r, const char *arg) {
    (void)arg;
    if (!have_engine(r)) return;
    if (!lesson_call_bool(r->lesson, "is_open")) {
        put(lesson_call(r->lesson, "step_text", NULL, NULL, NULL));
        return;
    }
    char *lines = NULL;
    bool passed = false;
    if (lesson_run_check(r->lesson, r->d, r->world, &lines, &passed) != DDP_OK)
        fprintf(stderr, "ddplab: %s\n", ddp_last_error());
    put(lines);
    /* a check compares the ranks, so it looks at all of them: say so when :on chose some */
    bool all = true;
    for (int i = 0; i < r->world; i++) all = all && r->targets[i];
    if (!all) {
        char ranks[64];
        printf("(:check looked at every rank; :on %s only chooses where typed lines run)\n",
               render_ranges(r->targets, r->world, ranks, sizeof ranks));
    }
}

static void command_reset(repl *r, const char *arg) {
    (void)arg;
    if (!have_engine(r)) return;
    if (!lesson_call_bool(r->lesson, "is_open")) {
        put(lesson_call(r->lesson, "step_text", NULL, NULL, NULL));
        return;
    }
    fflush(stdout);
    if (driver_restart(r->d) != DDP_OK) {
        fprintf(stderr, "ddplab: restart failed: %s\n", ddp_last_error());
        return;
    }
    put(lesson_call(r->lesson, "reset_line", NULL, NULL, NULL));
    run_setup(r);
}

static int complete_lesson(repl *r, const char *word, char ***out) {
    (void)word;
    char *list = lesson_call(r->lesson, "numbers", NULL, NULL, NULL);
    int n = 0;
    char **c = calloc(32, sizeof *c);
    for (char *tok = list ? strtok(list, " ") : NULL; c && tok && n < 32; tok = strtok(NULL, " "))
        c[n++] = strdup(tok);
    free(list);
    *out = c;
    return c ? n : 0;
}

static const repl_command_def lesson_command_rows[] = {
    {"lessons", NULL, ":lessons", "the course: every lesson, with your progress", NULL, NULL,
     command_lessons, true},
    {"lesson", NULL, ":lesson N", "open lesson N (or a lesson file); alone: this step again", NULL,
     complete_lesson, command_lesson, true},
    {"next", "n", ":next", "the next step, or the next lesson", NULL, NULL, command_next, false},
    {"prev", NULL, ":prev", "the previous step", NULL, NULL, command_prev, false},
    {"check", NULL, ":check", "check this step on every rank", NULL, NULL, command_check, false},
    {"hint", NULL, ":hint", "one more hint for this step", NULL, NULL, command_hint, true},
    {"solution", NULL, ":solution", "the reference solution, once you have tried", NULL, NULL,
     command_solution, true},
    {"solution!", NULL, ":solution!", "the reference solution, without trying first", NULL, NULL,
     command_solution_now, true},
    {"reset", NULL, ":reset", "fresh ranks for this step, then its setup", NULL, NULL,
     command_reset, false},
    {"lang", NULL, ":lang en|zh", "the language of the lessons (English, 中文)", "en zh", NULL,
     command_lang, true},
};

void lesson_commands_add(void) {
    repl_commands_add(lesson_command_rows,
                      (int)(sizeof lesson_command_rows / sizeof lesson_command_rows[0]));
}

/* Reads a yes/no answer (default yes) from a terminal line. */
static bool ask_yes(const char *question) {
    fputs(question, stdout);
    fflush(stdout);
    char line[64];
    if (!fgets(line, sizeof line, stdin)) return false;
    char *p = line;
    while (isspace((unsigned char)*p)) p++;
    return *p == '\0' || *p == 'y' || *p == 'Y';
}

void lesson_repl_start(repl *r, const repl_options *opts) {
    if (!r->lesson) return;
    if (opts && opts->lesson) {
        command_lesson(r, opts->lesson);
        return;
    }
    if (!opts || !opts->offer_continue) return;
    char *offer = lesson_call(r->lesson, "offer_text", NULL, NULL, NULL);
    if (!offer) {
        put(lesson_call(r->lesson, "welcome", NULL, NULL, NULL));
        return;
    }
    put(offer);
    char *q = lesson_call(r->lesson, "offer_question", NULL, NULL, NULL);
    bool yes = ask_yes(q ? q : "Continue? [Y/n] ");
    free(q);
    if (!yes) {
        put(lesson_call(r->lesson, "welcome", NULL, NULL, NULL));
        return;
    }
    bool ok = false;
    char *text = lesson_call(r->lesson, "resume", NULL, NULL, &ok);
    if (ok)
        entered(r, text);
    else
        put(text);
}
