/* fuzz_cli.c — libFuzzer target for ddplab's command-line parser (src/runtime/cli.c).
 * The input is split at NUL bytes into argv[1..] (at most 64 words). A parse that
 * succeeds must describe a launch that makes sense; one that fails must say why. */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/cli.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 4096) return 0;
    char *text = malloc(size + 1);
    memcpy(text, data, size);
    text[size] = '\0';
    char *argv[66];
    int argc = 0;
    argv[argc++] = "ddplab";
    for (size_t at = 0; at <= size && argc < 65;) {
        argv[argc++] = text + at;
        at += strlen(text + at) + 1;
    }
    argv[argc] = NULL;
    cli_options o;
    ddp_status st = cli_parse(argc, argv, &o);
    /* --help and --version end the parse: what came before them is not checked */
    if (st == DDP_OK && o.action == CLI_RUN) {
        assert(o.nchunks >= 0 && o.nchunks <= CLI_MAX_CHUNKS);
        assert(o.nproc >= 0);
        assert(o.nnodes >= 1 && o.node_rank >= 0 && o.node_rank < o.nnodes);
        assert(o.master_port >= 0 && o.master_port <= 65535);
        if (o.script) assert(o.script_argc >= 1 && o.script_argv[0] == o.script);
    } else if (st != DDP_OK) {
        const char *why = ddp_last_error();
        assert(why && *why);
    }
    free(text);
    return 0;
}
