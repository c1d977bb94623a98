/* main.c — ddplab's entry point. A process started by a driver is a rank worker; one
 * started by torchrun or SLURM runs its script as that rank; otherwise this is the driver:
 * parse the command line, start the ranks, run the script or -e chunks on every rank with
 * each output line labelled by its rank, and/or open the REPL. With --node-rank K > 0 it
 * is the agent of machine K, which starts that machine's ranks for the driver on node 0.
 * Only here does ddplab exit; the exit status is the first failing rank's, or 128 + the
 * signal (SIGTERM, SIGHUP, SIGPIPE) that ended the session, which still stops and reaps
 * every rank on the way out. */
#include <cblas.h>
#include <errno.h>
#include <lua.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "build_config.h"
#include "runtime/cli.h"
#include "runtime/driver.h"
#include "runtime/launcher.h"
#include "runtime/progress_bar.h"
#include "runtime/protocol.h"
#include "runtime/lesson.h"
#include "runtime/lesson_verify.h"
#include "runtime/rank.h"
#include "runtime/render.h"
#include "runtime/repl.h"

#ifdef __SANITIZE_ADDRESS__
/* LeakSanitizer's built-in suppressions for the sanitizer build: libedit's el_set keeps
 * wcsdup'd copies of the name and help text given to EL_ADDFN and never frees them, not
 * even in el_end (libedit 3.1, Debian 12). ddplab itself never calls wcsdup. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) {
    return "leak:wcsdup\nleak:el_set\n";
}
#endif

static driver *script_driver;

/* SIGTERM, SIGHUP, or SIGPIPE (`ddplab script.lua | head` once head is done): stop the
 * ranks as Ctrl-C does, run nothing more, and end through driver_stop, so that no rank,
 * process it started, or private directory is left behind. SIGTERM and SIGHUP are reset
 * after one use (a second one ends the driver at once); later SIGPIPEs are ignored (the
 * writes fail instead). */
static volatile sig_atomic_t script_terminated; /* the signal, or 0 */

static void on_script_terminate(int sig) {
    if (!script_terminated) script_terminated = sig;
    if (script_driver) driver_terminate(script_driver);
}

/* Script mode's Ctrl-C: ask every rank to stop; the driver reports them interrupted.
 * Before the ranks are up (start-up is bounded), it ends the session once they are. */
static void on_script_sigint(int sig) {
    if (script_driver)
        driver_interrupt(script_driver);
    else
        script_terminated = sig;
}

/* Installs script mode's signal handlers, kept until the driver stops (the REPL installs
 * its own for SIGINT, SIGTERM and SIGHUP while it runs). */
static void install_script_signals(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sigemptyset(&sa.sa_mask);
    sa.sa_handler = on_script_sigint;
    sigaction(SIGINT, &sa, NULL);
    sa.sa_handler = on_script_terminate;
    sigaction(SIGPIPE, &sa, NULL);
    sa.sa_flags = SA_RESETHAND;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
}

static void print_version(void) {
    const char *blas = openblas_get_config();
    if (blas && strncmp(blas, "OpenBLAS ", 9) == 0) blas += 9; /* said once is enough */
    printf("ddplab %s (%s, BLAS OpenBLAS %s, CUDA %s, NCCL %s, Gloo %s)\n", DDPLAB_VERSION,
           LUA_RELEASE, blas ? blas : "?", DDP_HAVE_CUDA ? "yes" : "no",
           DDP_HAVE_NCCL ? "yes" : "no", DDP_HAVE_GLOO ? "yes" : "no");
}

/* The exit status a rank's outcome stands for (0 when it ended normally). */
static int outcome_status(const rank_result *r) {
    switch (r->outcome) {
    case RANK_ERROR:
        return 1;
    case RANK_DIED:
        if (r->exit_status == RANK_EXIT_UNKNOWN) return 1; /* it may have failed: say so */
        return r->exit_status >= 0 ? r->exit_status : 128 - r->exit_status;
    case RANK_INTERRUPTED:
        return 130;
    default:
        return 0;
    }
}

/* Shows on stderr what failed and returns the status of the cause: the rank whose error or
 * death came first in time (the others usually failed because of it: a collective it never
 * joined), else 130 when ranks were only interrupted. The cause is shown first and named in
 * the last line. The output was already streamed, so it is left out here. */
static int report_failures(rank_result *results, int n, const render_style *style) {
    int status = 0, first = -1;
    /* the cause: the failure (not an interrupt) that came first in time, else an interrupt */
    for (int pass = 0; pass < 2 && first < 0; pass++)
        for (int i = 0; i < n; i++)
            if (outcome_status(&results[i]) != 0 &&
                (pass == 1 || results[i].outcome != RANK_INTERRUPTED) &&
                (first < 0 || (results[i].order > 0 && (results[first].order == 0 ||
                                                        results[i].order < results[first].order))))
                first = i;
    if (first < 0) return 0;
    status = outcome_status(&results[first]);
    for (int i = 0; i < n; i++) results[i].output_len = 0; /* streamed already */
    render_style err_style = *style;
    err_style.color = render_color_wanted(STDERR_FILENO);
    for (int i = 0; i < n; i++) /* a clean os.exit(0) is not worth a line */
        if (results[i].outcome == RANK_DIED && results[i].exit_status == 0)
            results[i].outcome = RANK_DONE;
    if (n == 1 && results[0].outcome == RANK_ERROR) { /* as lua.c: "lua: msg" */
        fprintf(stderr, "ddplab: %s\n", results[0].error ? results[0].error : "error");
    } else {
        /* the cause first, then the ranks that failed after it (shallow copies: the
         * strings stay owned by results) */
        rank_result *cause = calloc((size_t)n, sizeof *cause);
        rank_result *rest = calloc((size_t)n, sizeof *rest);
        if (cause && rest) {
            for (int i = 0; i < n; i++) {
                cause[i] = rest[i] = results[i];
                (i == first ? rest : cause)[i].outcome = RANK_SKIPPED;
            }
            render_results(stderr, cause, n, &err_style);
            render_results(stderr, rest, n, &err_style);
        } else {
            render_results(stderr, results, n, &err_style);
        }
        free(cause);
        free(rest);
    }
    bool *after = calloc((size_t)n, sizeof *after);
    int nafter = 0;
    for (int i = 0; i < n; i++)
        if (i != first && outcome_status(&results[i]) != 0 &&
            (results[first].outcome == RANK_INTERRUPTED ||
             results[i].outcome != RANK_INTERRUPTED)) {
            nafter++;
            if (after) after[i] = true;
        }
    char ranks[96] = "";
    if (after) render_ranges(after, n, ranks, sizeof ranks);
    free(after);
    if (results[first].outcome == RANK_INTERRUPTED)
        fprintf(stderr, "ddplab: interrupted (exit status %d)\n", status);
    else if (nafter == 0 && n > 1)
        fprintf(stderr, "ddplab: rank %d failed (exit status %d)\n", first, status);
    else if (n > 1)
        fprintf(stderr,
                "ddplab: rank %d failed first (exit status %d); rank%s %s failed after it\n", first,
                status, nafter == 1 ? "" : "s", ranks);
    return status;
}

/* Script mode's streaming: the line labeller, and the one progress bar on a terminal. */
typedef struct {
    line_labeller *lab;
    progress_bar *bar;
    int world;
} script_stream;

/* Feeds streamed output to the line labeller, above the progress bar. */
static void on_output(int rank, const char *bytes, size_t len, void *ctx) {
    script_stream *ss = ctx;
    progress_bar_hide(ss->bar);
    labeller_feed(ss->lab, rank, bytes, len);
    progress_bar_show(ss->bar);
}

/* progress() ticks from the ranks move one bar (only when stdout is a terminal). */
static void on_event(int rank, const struct proto_event *ev, void *ctx) {
    script_stream *ss = ctx;
    if (ev->kind != PROTO_EVENT_PROGRESS || !isatty(STDOUT_FILENO)) return;
    if (!ss->bar) ss->bar = progress_bar_new(ss->world, 80, stdout);
    progress_bar_tick(ss->bar, rank, ev->done, ev->total, ev->label);
}

/* Reads all of standard input (malloc'd, NUL-terminated) or returns NULL. */
static char *read_stdin(size_t *len) {
    char *buf = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&buf, &size);
    if (!f) return NULL;
    char chunk[8192];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, stdin)) > 0) fwrite(chunk, 1, n, f);
    fclose(f);
    *len = size;
    return buf;
}

/* A Lua chunk that sets `arg` as lua.c would: arg[0] = the script, arg[1..] its arguments
 * (every byte escaped, so any argument is safe). malloc'd. */
static char *arg_table_chunk(int argc, char **argv) {
    char *buf = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&buf, &size);
    if (!f) return NULL;
    fputs("arg = {", f);
    for (int i = 0; i < argc; i++) {
        fprintf(f, "[%d]=\"", i);
        for (const unsigned char *p = (const unsigned char *)argv[i]; *p; p++)
            fprintf(f, "\\%03u", *p);
        fputs("\",", f);
    }
    fputs("}", f);
    fclose(f);
    return buf;
}

/* Runs one chunk (or, with path, a script file) on every rank with labelled streaming
 * output. Returns the exit status: 0, a failing rank's, or 1 when the driver failed. */
static int run_everywhere(driver *d, const char *chunk, size_t len, const char *name,
                          const char *path, int argc, char **argv) {
    int n = driver_world_size(d);
    render_style style = {.labels = n > 1, .color = render_color_wanted(STDOUT_FILENO)};
    rank_result *results = calloc((size_t)n, sizeof *results);
    line_labeller *lab = labeller_new(n, &style, stdout);
    if (!results || !lab) {
        fprintf(stderr, "ddplab: out of memory\n");
        free(results);
        labeller_free(lab);
        return 1;
    }
    script_stream ss = {.lab = lab, .world = n};
    driver_set_event_handler(d, on_event, &ss);
    ddp_status st = path ? driver_run_file(d, path, argc, argv, on_output, &ss, results)
                         : driver_run(d, chunk, len, name, NULL, on_output, &ss, results);
    driver_set_event_handler(d, NULL, NULL);
    labeller_flush(lab);
    progress_bar_free(ss.bar);
    int status;
    if (script_terminated) { /* ended from outside: no report of the ranks we stopped */
        status = 128 + script_terminated;
    } else if (st != DDP_OK) {
        fprintf(stderr, "ddplab: %s\n", ddp_last_error());
        status = 1;
    } else {
        status = report_failures(results, n, &style);
    }
    rank_results_free(results, n);
    free(results);
    labeller_free(lab);
    return status;
}

/* Script mode: the -e chunks in order, then the script; stops at the first failure. */
static int run_script_mode(driver *d, const cli_options *o, char *stdin_text, size_t stdin_len) {
    int status = 0;
    for (int i = 0; i < o->nchunks && status == 0 && !script_terminated; i++)
        status =
            run_everywhere(d, o->chunks[i], strlen(o->chunks[i]), "=(command line)", NULL, 0, NULL);
    if (status != 0 || !o->script || script_terminated) return status;
    if (strcmp(o->script, "-") == 0) {
        char *args = arg_table_chunk(o->script_argc, o->script_argv);
        if (args) status = run_everywhere(d, args, strlen(args), "=(arg)", NULL, 0, NULL);
        free(args);
        if (status == 0) status = run_everywhere(d, stdin_text, stdin_len, "=stdin", NULL, 0, NULL);
        return status;
    }
    /* driver_run_file sets arg[0] = path and arg[1..] = the arguments after it */
    return run_everywhere(d, NULL, 0, NULL, o->script, o->script_argc - 1, o->script_argv + 1);
}

/* Checks what can be checked before any rank starts: -e syntax, the script readable. */
static int check_inputs(const cli_options *o, const char *stdin_text, size_t stdin_len) {
    for (int i = 0; i < o->nchunks; i++)
        if (repl_check_syntax(o->chunks[i], strlen(o->chunks[i]), "=(command line)") != DDP_OK) {
            fprintf(stderr, "ddplab: %s\n", ddp_last_error());
            return 1;
        }
    if (o->script && strcmp(o->script, "-") == 0) {
        if (repl_check_syntax(stdin_text, stdin_len, "=stdin") != DDP_OK) {
            fprintf(stderr, "ddplab: %s\n", ddp_last_error());
            return 1;
        }
    } else if (o->script && access(o->script, R_OK) != 0) {
        fprintf(stderr, "ddplab: cannot open %s: %s\n", o->script, strerror(errno));
        return 1;
    } else if (o->script) {
        struct stat st;
        if (stat(o->script, &st) == 0 && S_ISDIR(st.st_mode)) { /* said once, not per rank */
            fprintf(stderr, "ddplab: %s is a directory, not a Lua script\n", o->script);
            return 1;
        }
    }
    return 0;
}

int main(int argc, char **argv) {
    if (getenv("DDPLAB_RANK_WORKER")) return rank_worker_main();
    cli_options o;
    if (cli_parse(argc, argv, &o) != DDP_OK) {
        fprintf(stderr, "ddplab: %s\ntry 'ddplab --help'\n", ddp_last_error());
        return 2;
    }
    if (o.action == CLI_HELP) {
        fputs(cli_usage(), stdout);
        return 0;
    }
    if (o.action == CLI_VERSION) {
        print_version();
        return 0;
    }
    if (rank_launched_externally()) {
        if (!o.script && o.nchunks == 0) {
            fprintf(stderr, "ddplab: started by torchrun or SLURM, ddplab runs a script: give "
                            "one, or -e CHUNK\n");
            return 2;
        }
        if (o.nchunks > 1) {
            fprintf(stderr, "ddplab: under an outside launcher give one -e CHUNK\n");
            return 2;
        }
        return rank_run_standalone(o.script, o.nchunks ? o.chunks[0] : NULL,
                                   o.script ? o.script_argc - 1 : 0,
                                   o.script ? o.script_argv + 1 : NULL);
    }
    int nproc = o.nproc ? o.nproc : cli_default_nproc();
    if (o.lesson && o.nnodes == 1) { /* a lesson says how many ranks it needs at least */
        int need = lesson_min_ranks(o.lesson);
        if (nproc < need) {
            if (o.nproc)
                fprintf(stderr, "ddplab: lesson %s needs %d ranks: starting %d instead of %d\n",
                        o.lesson, need, need, nproc);
            nproc = need;
        }
    }
    launch_options lo = {
        .nproc = nproc,
        .backend = o.backend,
        .nnodes = o.nnodes,
        .node_rank = o.node_rank,
        .master_addr = o.master_addr,
        .master_port = o.master_port,
        .collective_timeout = o.collective_timeout,
        .collective_check = o.collective_check,
        .label_script_output = false, /* main.c labels the streamed lines itself */
    };
    if (o.node_rank > 0) /* another machine's agent: it starts and tends its own ranks */
        return launcher_agent_main(&lo);
    if (o.verify_lessons) {
        install_script_signals();
        driver *vd = NULL;
        if (driver_start(&lo, &vd) != DDP_OK) {
            fprintf(stderr, "ddplab: %s\n", ddp_last_error());
            return 1;
        }
        script_driver = vd;
        int vstatus = lesson_verify(vd, o.verify_which);
        script_driver = NULL;
        driver_stop(vd);
        return script_terminated ? 128 + script_terminated : vstatus;
    }
    /* lua.c: no script, no -e and stdin not a terminal means "run stdin as the script" */
    bool want_repl = o.interactive || o.lesson || (!o.script && o.nchunks == 0);
    if (!o.script && o.nchunks == 0 && !o.interactive && !o.lesson && !isatty(STDIN_FILENO)) {
        static char *dash[] = {"-", NULL};
        o.script = "-";
        o.script_argc = 1;
        o.script_argv = dash;
        want_repl = false;
    }
    char *stdin_text = NULL;
    size_t stdin_len = 0;
    if (o.script && strcmp(o.script, "-") == 0) {
        stdin_text = read_stdin(&stdin_len);
        if (!stdin_text) {
            fprintf(stderr, "ddplab: cannot read standard input\n");
            return 1;
        }
    }
    if (check_inputs(&o, stdin_text, stdin_len) != 0) {
        free(stdin_text);
        return 1;
    }
    /* from here on a signal that ends the session goes through driver_stop */
    install_script_signals();
    driver *d = NULL;
    if (driver_start(&lo, &d) != DDP_OK) {
        fprintf(stderr, "ddplab: %s\n", ddp_last_error());
        free(stdin_text);
        return 1;
    }
    int status = 0;
    if (o.script || o.nchunks > 0) {
        script_driver = d;
        status = run_script_mode(d, &o, stdin_text, stdin_len);
        script_driver = NULL;
    }
    if (script_terminated) status = 128 + script_terminated;
    free(stdin_text);
    if (want_repl && !script_terminated) {
        repl_options ro = {
            .lesson = o.lesson,
            /* plain `ddplab` at a terminal offers to go on with the course */
            .offer_continue =
                !o.script && o.nchunks == 0 && isatty(STDIN_FILENO) && isatty(STDOUT_FILENO),
        };
        status = repl_run(d, &ro);
    }
    driver_stop(d);
    return status;
}
