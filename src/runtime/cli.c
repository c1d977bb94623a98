/* cli.c — parses ddplab's command line (torchrun's options plus lua.c's -e / -i / script)
 * into a cli_options struct. Everything after the script name belongs to the script, as
 * in lua.c. Errors are one line in the learner's words; main.c adds the hint to --help. */
#include "runtime/cli.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "build_config.h"
#include "dist/comm.h"

static const char usage_text[] =
    "usage: ddplab [options] [script.lua [args]]\n"
    "\n"
    "Runs Lua on N rank processes, one terminal for all of them, to learn how\n"
    "PyTorch's DistributedDataParallel works. Without a script it opens the REPL:\n"
    "every line you type runs on every rank and their outputs are shown side by side.\n"
    "\n"
    "options:\n"
    "  -n, --nproc-per-node N   ranks on this machine (default: number of GPUs, else 4)\n"
    "  --backend gloo|nccl      collective backend (default: gloo on CPU)\n"
    "  --nnodes M               machines taking part (default 1)\n"
    "  --node-rank K            this machine's index, 0..M-1 (default 0)\n"
    "  --master-addr A          address of node 0 (default 127.0.0.1)\n"
    "  --master-port P          port of the rendezvous store (default: a free one)\n"
    "  --collective-timeout S   seconds before a stuck collective is reported (default 5)\n"
    "  --no-collective-check    do not cross-check collectives (for benchmarks)\n"
    "  -e CHUNK                 run the Lua CHUNK on every rank\n"
    "  -i                       enter the REPL after running the script or -e\n"
    "  --lesson N               open lesson N of the course (or a lesson file's path)\n"
    "  --verify-lessons [N]     run every lesson's (or lesson N's) steps: each check must\n"
    "                           fail from the step's setup and pass after its solution\n"
    "  -h, --help               show this help\n"
    "  --version                show the version and what this build has\n"
    "  script.lua [args]        run a script on every rank ('-' reads standard input)\n"
    "\n"
    "examples:\n"
    "  ddplab -n 2                          open the REPL on 2 ranks\n"
    "  ddplab --lesson 1                    start the course at lesson 1\n"
    "  ddplab -n 4 -e 'dist.init_process_group{backend=\"gloo\"}; print(dist.get_rank())'\n"
    "                                       run one line on 4 ranks and exit\n";

const char *cli_usage(void) {
    return usage_text;
}

int cli_count_gpus(const char *driver_dir, const char *visible) {
    int n = 0;
    DIR *d = opendir(driver_dir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL)
            if (e->d_name[0] != '.') n++;
        closedir(d);
    }
    if (!visible) return n;
    /* CUDA_VISIBLE_DEVICES: a comma-separated list; CUDA reads it up to the first entry
     * that is not a device (so "" and "-1" hide every GPU) */
    int listed = 0;
    for (const char *p = visible; *p;) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 0 || (*end != ',' && *end != '\0')) {
            /* a UUID ("GPU-...") names one device too */
            if (strncmp(p, "GPU-", 4) != 0 && strncmp(p, "MIG-", 4) != 0) break;
            end = strchr(p, ',');
            if (!end) end = (char *)p + strlen(p);
        }
        listed++;
        p = *end == ',' ? end + 1 : end;
    }
    return listed < n ? listed : n;
}

int cli_default_nproc(void) {
    if (!DDP_HAVE_CUDA) return 4;
    /* counted from the driver's files, without starting CUDA (which takes a GPU machine
     * tenths of a second, before every session) */
    int n = cli_count_gpus("/proc/driver/nvidia/gpus", getenv("CUDA_VISIBLE_DEVICES"));
    return n > 0 ? n : 4;
}

/* Parses a whole decimal int in [lo, hi] for option `name`. Fails with a learner's message. */
static ddp_status parse_int(const char *name, const char *text, int lo, int hi, int *out) {
    char *end = NULL;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (text[0] == '\0' || *end != '\0' || errno != 0)
        return DDP_FAIL(DDP_ERR_ARG, "%s expects a whole number, got '%s'", name, text);
    if (v < lo || v > hi)
        return DDP_FAIL(DDP_ERR_ARG, "%s must be between %d and %d, got %ld", name, lo, hi, v);
    *out = (int)v;
    return DDP_OK;
}

/* Parses a positive number of seconds for option `name`. */
static ddp_status parse_seconds(const char *name, const char *text, double *out) {
    char *end = NULL;
    errno = 0;
    double v = strtod(text, &end);
    if (text[0] == '\0' || *end != '\0' || errno != 0 || !(v > 0) || v > 1e6)
        return DDP_FAIL(DDP_ERR_ARG, "%s expects a number of seconds above 0, got '%s'", name,
                        text);
    *out = v;
    return DDP_OK;
}

/* If argv[*i] is the long option `name` (as "--name V" or "--name=V") or the short option
 * `shortname` (as "-n V" or "-nV"), stores its value in *value, advances *i past it and
 * sets *matched; leaves *matched 0 for another option; fails when the value is missing. */
static ddp_status take_value(int argc, char **argv, int *i, const char *name, const char *shortname,
                             const char **value, int *matched) {
    const char *a = argv[*i];
    size_t n = strlen(name);
    *matched = 0;
    if (name[1] == '-' && strncmp(a, name, n) == 0 && (a[n] == '\0' || a[n] == '=')) {
        *matched = 1;
        if (a[n] == '=') {
            *value = a + n + 1;
            return DDP_OK;
        }
    } else if (shortname && strncmp(a, shortname, 2) == 0) {
        *matched = 1;
        if (a[2] != '\0') {
            *value = a + 2;
            return DDP_OK;
        }
    } else {
        return DDP_OK;
    }
    if (*i + 1 >= argc)
        return DDP_FAIL(DDP_ERR_ARG, "option %s needs a value",
                        strncmp(a, "--", 2) == 0 ? name : shortname);
    *i += 1;
    *value = argv[*i];
    return DDP_OK;
}

/* The options that take a value, and where each one goes. */
static ddp_status apply_valued(cli_options *o, const char *name, const char *v) {
    if (strcmp(name, "--nproc-per-node") == 0)
        return parse_int("-n/--nproc-per-node", v, 1, 1024, &o->nproc); /* driver_start's */
    if (strcmp(name, "--backend") == 0) {
        comm_backend b;
        if (!comm_backend_parse(v, &b))
            return DDP_FAIL(DDP_ERR_ARG, "--backend must be gloo or nccl, got '%s'", v);
        o->backend = v;
        return DDP_OK;
    }
    if (strcmp(name, "--nnodes") == 0) return parse_int("--nnodes", v, 1, 4096, &o->nnodes);
    if (strcmp(name, "--node-rank") == 0)
        return parse_int("--node-rank", v, 0, 4095, &o->node_rank);
    if (strcmp(name, "--master-addr") == 0) {
        if (v[0] == '\0') return DDP_FAIL(DDP_ERR_ARG, "--master-addr needs a host name");
        o->master_addr = v;
        return DDP_OK;
    }
    if (strcmp(name, "--master-port") == 0)
        return parse_int("--master-port", v, 1, 65535, &o->master_port);
    if (strcmp(name, "--collective-timeout") == 0)
        return parse_seconds("--collective-timeout", v, &o->collective_timeout);
    if (strcmp(name, "--lesson") == 0) {
        if (v[0] == '\0') return DDP_FAIL(DDP_ERR_ARG, "--lesson needs a lesson number or file");
        o->lesson = v;
        return DDP_OK;
    }
    if (strcmp(name, "-e") == 0) {
        if (o->nchunks == CLI_MAX_CHUNKS)
            return DDP_FAIL(DDP_ERR_ARG, "too many -e chunks (at most %d)", CLI_MAX_CHUNKS);
        o->chunks[o->nchunks++] = v;
        return DDP_OK;
    }
    return DDP_FAIL(DDP_ERR_ARG, "internal: unhandled option %s", name);
}

ddp_status cli_parse(int argc, char **argv, cli_options *out) {
    static const struct {
        const char *name, *shortname;
    } valued[] = {
        {"--nproc-per-node", "-n"},     {"--backend", NULL},     {"--nnodes", NULL},
        {"--node-rank", NULL},          {"--master-addr", NULL}, {"--master-port", NULL},
        {"--collective-timeout", NULL}, {"--lesson", NULL},      {"-e", "-e"},
    };
    cli_options o = {
        .action = CLI_RUN, .nnodes = 1, .collective_timeout = 5.0, .collective_check = true};
    int i = 1;
    for (; i < argc; i++) {
        const char *a = argv[i];
        if (a[0] != '-' || strcmp(a, "-") == 0) break; /* the script */
        if (strcmp(a, "--") == 0) {
            i++;
            break;
        }
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            o.action = CLI_HELP;
            *out = o;
            return DDP_OK;
        }
        if (strcmp(a, "--version") == 0) {
            o.action = CLI_VERSION;
            *out = o;
            return DDP_OK;
        }
        if (strcmp(a, "-i") == 0) {
            o.interactive = true;
            continue;
        }
        if (strcmp(a, "--verify-lessons") == 0) {
            o.verify_lessons = true;
            if (i + 1 < argc && argv[i + 1][0] != '-') o.verify_which = argv[++i];
            continue;
        }
        if (strcmp(a, "--no-collective-check") == 0) {
            o.collective_check = false;
            continue;
        }
        int matched = 0;
        for (size_t k = 0; k < sizeof valued / sizeof valued[0] && !matched; k++) {
            const char *v = NULL;
            DDP_CHECK(
                take_value(argc, argv, &i, valued[k].name, valued[k].shortname, &v, &matched));
            if (matched) DDP_CHECK(apply_valued(&o, valued[k].name, v));
        }
        if (!matched) return DDP_FAIL(DDP_ERR_ARG, "unknown option '%s'", a);
    }
    if (i < argc) {
        o.script = argv[i];
        o.script_argc = argc - i;
        o.script_argv = argv + i;
    }
    if (o.verify_lessons && (o.script || o.nchunks || o.lesson || o.interactive))
        return DDP_FAIL(DDP_ERR_ARG, "--verify-lessons runs on its own: no script, -e, -i or "
                                     "--lesson with it");
    if (o.node_rank >= o.nnodes)
        return DDP_FAIL(DDP_ERR_ARG,
                        "--node-rank %d is out of range: with --nnodes %d it must be 0..%d",
                        o.node_rank, o.nnodes, o.nnodes - 1);
    if (o.node_rank > 0 && o.master_addr == NULL)
        return DDP_FAIL(DDP_ERR_ARG, "--node-rank %d needs --master-addr (the address of node 0)",
                        o.node_rank);
    *out = o;
    return DDP_OK;
}
