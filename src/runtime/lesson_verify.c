/* lesson_verify.c — `ddplab -n N --verify-lessons [N]`: for every step of every built-in
 * lesson (or of one), on fresh ranks: the step's setup, its check (which must FAIL: a
 * check that cannot fail teaches nothing), the reference solution typed as the learner
 * would, the check again (which must PASS on every rank). Lessons that need more ranks
 * than the session has are skipped and said so. Returns the exit status: 0 when every
 * step held, 1 when one did not (each failure names its lesson, step and ranks). */
#include "runtime/lesson_verify.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/lesson.h"
#include "runtime/lesson_commands.h"
#include "runtime/render.h"
#include "runtime/repl.h"

/* Runs `chunk` on every rank; fills results[world]. */
static ddp_status run_all(driver *d, const char *chunk, const char *name, rank_result *results) {
    return driver_run(d, chunk, strlen(chunk), name, NULL, NULL, NULL, results);
}

/* The ranks whose outcome is not RANK_DONE, and the first one's error, into msg. Returns
 * whether there was one. */
static bool failed_ranks(const rank_result *res, int world, char *msg, size_t cap) {
    bool *bad = calloc((size_t)world, sizeof *bad);
    int first = -1;
    for (int r = 0; r < world; r++)
        if (res[r].outcome != RANK_DONE) {
            if (bad) bad[r] = true;
            if (first < 0) first = r;
        }
    if (first >= 0) {
        char ranks[96] = "?";
        if (bad) render_ranges(bad, world, ranks, sizeof ranks);
        snprintf(msg, cap, "rank%s %s: %s", strchr(ranks, ',') || strchr(ranks, '-') ? "s" : "",
                 ranks, res[first].error ? res[first].error : "failed");
    }
    free(bad);
    return first >= 0;
}

/* One step; prints its line; returns whether it held. */
static bool verify_step(driver *d, lesson_session *ls, int world, const char *spec,
                        const char *label, int step) {
    char stepno[16];
    snprintf(stepno, sizeof stepno, "%d", step);
    rank_result *res = calloc((size_t)world, sizeof *res);
    char msg[2048];
    bool ok = false, opened = false, passed = false;
    char *lines = NULL, *text = NULL, *setup = NULL, *solution = NULL;
    if (!res) return false;
    if (driver_restart(d) != DDP_OK) {
        printf("%s step %d: FAIL: the ranks cannot restart: %s\n", label, step, ddp_last_error());
        goto out;
    }
    text = lesson_call(ls, "open", spec, stepno, &opened);
    if (!opened) {
        printf("%s step %d: FAIL: %s", label, step, text ? text : "cannot open\n");
        goto out;
    }
    setup = lesson_call(ls, "setup_chunk", NULL, NULL, NULL);
    if (setup) {
        if (repl_check_syntax(setup, strlen(setup), "=setup") != DDP_OK) {
            printf("%s step %d: FAIL: the setup does not compile: %s\n", label, step,
                   ddp_last_error());
            goto out;
        }
        if (run_all(d, setup, "=setup", res) != DDP_OK) goto driver_failed;
        if (failed_ranks(res, world, msg, sizeof msg)) {
            printf("%s step %d: FAIL: the setup raised an error on %s\n", label, step, msg);
            goto out;
        }
        rank_results_free(res, world);
    }
    if (lesson_run_check(ls, d, world, &lines, &passed) != DDP_OK) goto driver_failed;
    if (passed) {
        printf("%s step %d: FAIL: the check passes before the solution was typed (a check "
               "that cannot fail)\n",
               label, step);
        goto out;
    }
    if (lines && strstr(lines, "✗") && strstr(lines, "defect")) {
        printf("%s step %d: FAIL: before the solution the check is broken:\n%s", label, step,
               lines);
        goto out;
    }
    free(lines);
    lines = NULL;
    solution = lesson_call(ls, "solution_chunk", NULL, NULL, NULL);
    if (!solution) {
        printf("%s step %d: FAIL: the step has no solution\n", label, step);
        goto out;
    }
    if (repl_check_syntax(solution, strlen(solution), "=solution") != DDP_OK) {
        printf("%s step %d: FAIL: the solution does not compile: %s\n", label, step,
               ddp_last_error());
        goto out;
    }
    if (run_all(d, solution, "=stdin", res) != DDP_OK) goto driver_failed;
    lesson_record(ls, solution, res, world); /* as if typed: c.ran and c.last_error see it */
    rank_results_free(res, world);
    if (lesson_run_check(ls, d, world, &lines, &passed) != DDP_OK) goto driver_failed;
    if (!passed) {
        printf("%s step %d: FAIL: the check does not pass after the solution:\n%s", label, step,
               lines ? lines : "(no verdict)\n");
        goto out;
    }
    printf("%s step %d: ok\n", label, step);
    ok = true;
    goto out;
driver_failed:
    printf("%s step %d: FAIL: %s\n", label, step, ddp_last_error());
out:
    fflush(stdout);
    rank_results_free(res, world);
    free(res);
    free(lines);
    free(text);
    free(setup);
    free(solution);
    return ok;
}

int lesson_verify(driver *d, const char *which) {
    int world = driver_world_size(d);
    lesson_session *ls = NULL;
    if (lesson_open_session(world, false, 80, false, &ls) != DDP_OK) {
        fprintf(stderr, "ddplab: %s\n", ddp_last_error());
        return 1;
    }
    free(lesson_call(ls, "set_lang", "en", NULL, NULL)); /* its lines are read below */
    bool ok = false;
    char *plan = lesson_call(ls, "plan", which, NULL, &ok);
    if (!ok) {
        fprintf(stderr, "ddplab: %s\n", plan ? plan : "no lessons");
        free(plan);
        lesson_close_session(ls);
        return 1;
    }
    int steps = 0, failures = 0, skipped = 0;
    for (char *line = plan ? strtok(plan, "\n") : NULL; line; line = strtok(NULL, "\n")) {
        char *f[4] = {0};
        int n = 0;
        for (char *p = line; n < 4 && p; n++) {
            f[n] = p;
            p = strchr(p, '\t');
            if (p) *p++ = '\0';
        }
        if (n < 4) continue;
        int nsteps = atoi(f[1]), min_ranks = atoi(f[2]);
        if (min_ranks > world) {
            printf("%s: skipped (it needs %d ranks, this run has %d)\n", f[3], min_ranks, world);
            skipped++;
            continue;
        }
        /* strtok is not re-entered below: the step runs use no strtok */
        char *saved = strdup(f[0]), *label = strdup(f[3]);
        for (int s = 1; saved && label && s <= nsteps; s++) {
            steps++;
            if (!verify_step(d, ls, world, saved, label, s)) failures++;
        }
        free(saved);
        free(label);
    }
    free(plan);
    lesson_close_session(ls);
    printf("%d step%s verified on %d rank%s: %d failed%s\n", steps, steps == 1 ? "" : "s", world,
           world == 1 ? "" : "s", failures, skipped ? " (some lessons skipped)" : "");
    return failures ? 1 : 0;
}
