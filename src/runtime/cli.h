/* cli.h — ddplab's command line, parsed into a struct before anything starts.
 *
 * Parsing is pure: no process is started and nothing is printed, so every option and
 * every error can be unit-tested. main.c turns the result into launch_options and decides
 * between script mode and the REPL. */
#ifndef DDP_RUNTIME_CLI_H
#define DDP_RUNTIME_CLI_H

#include <stdbool.h>

#include "base/status.h"

#define CLI_MAX_CHUNKS 16

typedef enum {
    CLI_RUN,     /* start ranks: script, -e chunks and/or the REPL */
    CLI_HELP,    /* -h / --help */
    CLI_VERSION, /* --version */
} cli_action;

typedef struct {
    cli_action action;
    int nproc;                          /* 0: not given (cli_default_nproc decides) */
    const char *backend;                /* NULL: the default */
    int nnodes, node_rank;              /* 1, 0 */
    const char *master_addr;            /* NULL: loopback */
    int master_port;                    /* 0: pick a free one */
    double collective_timeout;          /* seconds; 5 by default */
    bool collective_check;              /* false after --no-collective-check */
    bool interactive;                   /* -i */
    const char *lesson;                 /* --lesson N|path: open it in the REPL */
    bool verify_lessons;                /* --verify-lessons [N|path] */
    const char *verify_which;           /* that N or path; NULL: every built-in lesson */
    const char *chunks[CLI_MAX_CHUNKS]; /* -e CHUNK, in order (borrowed from argv) */
    int nchunks;
    const char *script; /* NULL, a path, or "-" for stdin (borrowed from argv) */
    int script_argc;    /* script_argv[0] is the script itself, then its arguments */
    char **script_argv; /* points into argv; NULL when there is no script */
} cli_options;

/* Parses argv (argv[0] is the program) into *out. Never prints and never exits; on a bad
 * option returns DDP_ERR_ARG with ddp_last_error() saying what was wrong in one line.
 * *out borrows strings from argv. */
ddp_status cli_parse(int argc, char **argv, cli_options *out);

/* The rank count when -n is not given: the number of GPUs when the build has CUDA and
 * there are some, else 4. Cannot fail. */
int cli_default_nproc(void);
/* The GPUs a process would see: the entries of the NVIDIA driver's folder driver_dir
 * (/proc/driver/nvidia/gpus), limited to the devices CUDA_VISIBLE_DEVICES lists when
 * `visible` is not NULL. 0 without a driver. Cannot fail. */
int cli_count_gpus(const char *driver_dir, const char *visible);

/* The --help text (a static string). */
const char *cli_usage(void);

#endif
