/* commands.c — the table of the REPL's `:` commands and the core rows: :on (choose target
 * ranks), :show (a value on every rank side by side), :ranks (the table of rank processes),
 * :restart [replay], :help and :quit. One row per command holds its name, aliases, help
 * line, argument completion and handler; :help, completion and dispatch all read the table,
 * and other files (lesson_commands.c) add their rows. Each command prints what it did or one
 * helpful line; none can end the session except :quit. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/render.h"
#include "runtime/repl_internal.h"

/* ---- the table ------------------------------------------------------------------------ */

#define MAX_GROUPS 64

static struct {
    const repl_command_def *defs;
    int n;
} groups[MAX_GROUPS];
static int ngroups;

bool repl_commands_add(const repl_command_def *defs, int n) {
    for (int g = 0; g < ngroups; g++)
        if (groups[g].defs == defs) return true; /* added already */
    if (ngroups == MAX_GROUPS) return false;
    groups[ngroups].defs = defs;
    groups[ngroups].n = n;
    ngroups++;
    return true;
}

/* Whether `name` is one of the space-separated words in `list`. */
static bool in_word_list(const char *list, const char *name) {
    size_t n = strlen(name);
    for (const char *p = list; p && *p;) {
        while (*p == ' ') p++;
        const char *end = p;
        while (*end && *end != ' ') end++;
        if ((size_t)(end - p) == n && n > 0 && strncmp(p, name, n) == 0) return true;
        p = end;
    }
    return false;
}

const repl_command_def *repl_command_find(const char *name) {
    for (int g = 0; g < ngroups; g++)
        for (int i = 0; i < groups[g].n; i++) {
            const repl_command_def *c = &groups[g].defs[i];
            if (strcmp(c->name, name) == 0 || in_word_list(c->aliases, name)) return c;
        }
    return NULL;
}

/* Appends strdup(s) to the candidate list when it starts with prefix. */
static void add_candidate(char ***list, int *n, int *cap, const char *s, const char *prefix) {
    if (strncmp(s, prefix, strlen(prefix)) != 0) return;
    if (*n == *cap) {
        int grown_cap = *cap ? 2 * *cap : 16;
        char **grown = realloc(*list, (size_t)grown_cap * sizeof *grown);
        if (!grown) return;
        *list = grown;
        *cap = grown_cap;
    }
    char *copy = strdup(s);
    if (copy) (*list)[(*n)++] = copy;
}

int repl_command_candidates(repl *r, const char *cmd, const char *word, bool line_start,
                            char ***out) {
    char **list = NULL;
    int n = 0, cap = 0;
    if (line_start) {
        for (int g = 0; g < ngroups; g++)
            for (int i = 0; i < groups[g].n; i++) {
                char name[40];
                snprintf(name, sizeof name, ":%s", groups[g].defs[i].name);
                add_candidate(&list, &n, &cap, name, word);
            }
        *out = list;
        return n;
    }
    const repl_command_def *c = cmd ? repl_command_find(cmd) : NULL;
    if (!c) return -1;
    if (!c->words && !c->complete) return -1; /* its argument is Lua (:show) */
    for (const char *p = c->words; p && *p;) {
        while (*p == ' ') p++;
        const char *end = p;
        while (*end && *end != ' ') end++;
        char w[64];
        snprintf(w, sizeof w, "%.*s", (int)(end - p), p);
        if (w[0]) add_candidate(&list, &n, &cap, w, word);
        p = end;
    }
    if (c->complete) {
        char **more = NULL;
        int m = c->complete(r, word, &more);
        for (int i = 0; i < m; i++) {
            add_candidate(&list, &n, &cap, more[i], word);
            free(more[i]);
        }
        free(more);
    }
    *out = list;
    return n;
}

/* ---- the core commands ------------------------------------------------------------------ */

/* :help — every row of the table, three Lua idioms, and where the transcript is. */
static void command_help(repl *r, const char *arg) {
    (void)arg;
    for (int g = 0; g < ngroups; g++)
        for (int i = 0; i < groups[g].n; i++)
            printf("%-26s %s\n", groups[g].defs[i].usage, groups[g].defs[i].help);
    printf("\n"
           "Lua:\n"
           "  =expr or a bare expression shows its value:  =dist.get_rank()\n"
           "  local x lasts one line only; x = ... (a global) stays for the next lines\n"
           "  obj:method(a) passes obj (t:add(1)); module.fn(a) does not (torch.zeros(3))\n"
           "Ranks and tensor dims count from 0, as in PyTorch; Lua tables count from 1.\n"
           "Tab completes names, Ctrl-C stops what runs on every rank.\n");
    if (r->transcript_path[0]) printf("This session is saved in %s\n", r->transcript_path);
    fflush(stdout);
}

/* :on RANKS — changes the targets; the prompt shows them. */
static void command_on(repl *r, const char *arg) {
    if (!*arg) {
        char ranks[64];
        printf("running on ranks %s; :on 0,2 or :on 1-3 or :on all to change\n",
               render_ranges(r->targets, r->world, ranks, sizeof ranks));
        return;
    }
    if (render_parse_ranges(arg, r->world, r->targets) != DDP_OK) printf("%s\n", ddp_last_error());
}

/* :show EXPR — the value of EXPR on each target rank, in columns. The values are shown
 * by value (lua/torch/show.lua: lists, modules by their parameters), so that ranks holding
 * equal tables compare equal; the syntax is checked on EXPR as typed, so that a mistake
 * is reported in the learner's terms. */
static void command_show(repl *r, const char *arg) {
    if (!*arg) {
        printf("usage: :show expr   (for example :show dist.get_rank())\n");
        return;
    }
    char *plain = NULL, *chunk = NULL;
    if (asprintf(&plain, "return %s", arg) < 0) return;
    /* with a comment in EXPR, a newline keeps it from swallowing the closing parenthesis
     * (only then: it would move the line of an error message to 2) */
    if (asprintf(&chunk, "return require('torch.show').values(%s%s)", arg,
                 strstr(arg, "--") ? "\n" : "") < 0)
        chunk = NULL;
    if (repl_check_syntax(plain, strlen(plain), "=stdin") != DDP_OK) {
        printf("%s\n", ddp_last_error());
    } else if (chunk && repl_run_chunk(r, chunk, r->targets, true, NULL) != DDP_OK) {
        fprintf(stderr, "ddplab: %s\n", ddp_last_error());
    }
    free(plain);
    free(chunk);
}

/* :ranks — one row per rank. */
static void command_ranks(repl *r, const char *arg) {
    (void)arg;
    rank_info *info = calloc((size_t)r->world, sizeof *info);
    if (!info) return;
    if (driver_ranks(r->d, info) == DDP_OK)
        render_ranks_table(stdout, info, r->world, &r->style);
    else
        fprintf(stderr, "ddplab: %s\n", ddp_last_error());
    free(info);
}

/* :restart [replay] — a fresh world; with replay, every chunk that ran to an outcome, in
 * order, on the ranks it ran on, so that each rank gets back the state it had: a chunk
 * that raised an error on some ranks is replayed there too (what it did before the error
 * counts), and only a rank whose outcome differs from the first time stops the replay. */
static void command_restart(repl *r, const char *arg) {
    bool replay = strcmp(arg, "replay") == 0;
    if (*arg && !replay) {
        printf("usage: :restart   or   :restart replay\n");
        return;
    }
    printf("restarting %d rank%s...\n", r->world, r->world == 1 ? "" : "s");
    fflush(stdout);
    repl_chunk_running = 1; /* Ctrl-C stops a start that waits (for a node's agent) */
    ddp_status started = driver_restart(r->d);
    repl_chunk_running = 0;
    if (started != DDP_OK) {
        fprintf(stderr, "ddplab: restart failed: %s\n", ddp_last_error());
        return;
    }
    if (!replay) {
        printf("restarted: every rank starts fresh\n");
        return;
    }
    printf("replaying %d chunk%s from this session's transcript\n", r->nkept,
           r->nkept == 1 ? "" : "s");
    for (int i = 0; i < r->nkept; i++) {
        bool ok = false;
        if (repl_run_chunk(r, r->kept[i].chunk, r->kept[i].targets, false, &ok) != DDP_OK) {
            fprintf(stderr, "ddplab: %s\n", ddp_last_error());
            return;
        }
        bool same = r->run_clean;
        for (int k = 0; same && k < r->world; k++)
            same = !r->kept[i].targets[k] || r->kept[i].errored[k] == r->run_errored[k];
        if (!ok && !same) {
            printf("replay stopped at chunk %d of %d, which failed this time:\n%s\n", i + 1,
                   r->nkept, r->kept[i].chunk);
            return;
        }
    }
    printf("replay done\n");
}

/* :quit */
static void command_quit(repl *r, const char *arg) {
    (void)arg;
    r->quit = true;
}

static const repl_command_def core_commands[] = {
    {"on", NULL, ":on 0,2  :on 1-3  :on all", "choose the ranks that run what you type", "all",
     NULL, command_on, false},
    {"show", NULL, ":show expr", "the value of expr on every rank, side by side", NULL, NULL,
     command_show, false},
    {"ranks", NULL, ":ranks", "each rank's host, pid, device, state and memory", NULL, NULL,
     command_ranks, true},
    {"restart", NULL, ":restart [replay]", "fresh ranks everywhere; replay re-runs what succeeded",
     "replay", NULL, command_restart, false},
    {"help", "h ?", ":help", "this help", NULL, NULL, command_help, true},
    {"quit", "q exit", ":quit", "stop the ranks and leave (or Ctrl-D)", NULL, NULL, command_quit,
     false},
};

void repl_commands_add_core(void) {
    repl_commands_add(core_commands, (int)(sizeof core_commands / sizeof core_commands[0]));
}

/* The names of every command, for the "unknown command" line (":on :show ..."). */
static void print_command_names(void) {
    for (int g = 0; g < ngroups; g++)
        for (int i = 0; i < groups[g].n; i++) printf(" :%s", groups[g].defs[i].name);
}

bool repl_command(repl *r, const char *cmd) {
    char name[32];
    size_t n = 0;
    while (cmd[n] && !isspace((unsigned char)cmd[n]) && n + 1 < sizeof name) {
        name[n] = cmd[n];
        n++;
    }
    name[n] = '\0';
    const char *arg = cmd + n;
    while (isspace((unsigned char)*arg)) arg++;
    char *trimmed = strdup(arg);
    if (!trimmed) return true;
    for (size_t k = strlen(trimmed); k > 0 && isspace((unsigned char)trimmed[k - 1]); k--)
        trimmed[k - 1] = '\0';
    const repl_command_def *c = repl_command_find(name);
    if (c) {
        c->run(r, trimmed);
    } else {
        printf("unknown command ':%s': the commands are", name);
        print_command_names();
        printf(" (:help explains them)\n");
    }
    fflush(stdout);
    free(trimmed);
    return !r->quit;
}
