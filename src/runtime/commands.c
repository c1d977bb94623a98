/* commands.c — the REPL's `:` commands: :on (choose target ranks), :show (a value on
 * every rank side by side), :ranks (the table of rank processes), :restart [replay],
 * :help and :quit. Each prints what it did or one helpful line; none can end the session
 * except :quit. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/render.h"
#include "runtime/repl.h"

static const char *const command_names[] = {":on", ":show", ":ranks", ":restart", ":help", ":quit"};

int repl_command_candidates(const char *word, char ***out) {
    size_t total = sizeof command_names / sizeof command_names[0];
    char **c = calloc(total, sizeof *c);
    int n = 0;
    for (size_t i = 0; c && i < total; i++)
        if (strncmp(command_names[i], word, strlen(word)) == 0) {
            c[n] = strdup(command_names[i]);
            if (c[n]) n++;
        }
    *out = c;
    return n;
}

/* :help — the commands, three Lua idioms, and where the transcript is. */
static void command_help(repl *r) {
    printf(":on 0,2  :on 1-3  :on all  choose the ranks that run what you type\n"
           ":show expr                 the value of expr on every rank, side by side\n"
           ":ranks                     each rank's host, pid, device, state and memory\n"
           ":restart                   restart every rank, on every node (state is lost)\n"
           ":restart replay            restart, then re-run what succeeded this session\n"
           ":help                      this help\n"
           ":quit                      stop the ranks and leave (or Ctrl-D)\n"
           "\n"
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

/* :show EXPR — the value of EXPR on each target rank, in columns. */
static void command_show(repl *r, const char *arg) {
    if (!*arg) {
        printf("usage: :show expr   (for example :show dist.get_rank())\n");
        return;
    }
    char *chunk = NULL;
    if (asprintf(&chunk, "return %s", arg) < 0) return;
    if (repl_check_syntax(chunk, strlen(chunk), "=stdin") != DDP_OK) {
        printf("%s\n", ddp_last_error());
    } else if (repl_run_chunk(r, chunk, r->targets, true, NULL) != DDP_OK) {
        fprintf(stderr, "ddplab: %s\n", ddp_last_error());
    }
    free(chunk);
}

/* :ranks — one row per rank. */
static void command_ranks(repl *r) {
    rank_info *info = calloc((size_t)r->world, sizeof *info);
    if (!info) return;
    if (driver_ranks(r->d, info) == DDP_OK)
        render_ranks_table(stdout, info, r->world, &r->style);
    else
        fprintf(stderr, "ddplab: %s\n", ddp_last_error());
    free(info);
}

/* :restart [replay] — a fresh world; with replay, the chunks that succeeded, in order. */
static void command_restart(repl *r, const char *arg) {
    bool replay = strcmp(arg, "replay") == 0;
    if (*arg && !replay) {
        printf("usage: :restart   or   :restart replay\n");
        return;
    }
    printf("restarting %d rank%s...\n", r->world, r->world == 1 ? "" : "s");
    fflush(stdout);
    if (driver_restart(r->d) != DDP_OK) {
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
        if (!ok) {
            printf("replay stopped at chunk %d of %d, which failed this time:\n%s\n", i + 1,
                   r->nkept, r->kept[i].chunk);
            return;
        }
    }
    printf("replay done\n");
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
    bool go_on = true;
    if (strcmp(name, "on") == 0)
        command_on(r, trimmed);
    else if (strcmp(name, "show") == 0)
        command_show(r, trimmed);
    else if (strcmp(name, "ranks") == 0)
        command_ranks(r);
    else if (strcmp(name, "restart") == 0)
        command_restart(r, trimmed);
    else if (strcmp(name, "help") == 0 || strcmp(name, "h") == 0 || strcmp(name, "?") == 0)
        command_help(r);
    else if (strcmp(name, "quit") == 0 || strcmp(name, "q") == 0 || strcmp(name, "exit") == 0)
        go_on = false;
    else
        printf("unknown command ':%s': the commands are :on :show :ranks :restart :help "
               ":quit (:help explains them)\n",
               name);
    fflush(stdout);
    free(trimmed);
    return go_on;
}
