/* test_runtime_cli.c — ddplab's command line: every option, the script and its arguments,
 * and every kind of bad option (one clear message, no crash). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime/cli.h"

/* Parses a NULL-terminated list of arguments after "ddplab". */
static ddp_status parse(cli_options *o, ...) {
    static char *argv[64];
    int argc = 0;
    argv[argc++] = "ddplab";
    va_list ap;
    va_start(ap, o);
    for (char *a; (a = va_arg(ap, char *)) != NULL;) argv[argc++] = a;
    va_end(ap);
    argv[argc] = NULL;
    return cli_parse(argc, argv, o);
}

static void test_defaults(void **state) {
    (void)state;
    cli_options o;
    assert_int_equal(parse(&o, NULL), DDP_OK);
    assert_int_equal(o.action, CLI_RUN);
    assert_int_equal(o.nproc, 0);
    assert_null(o.backend);
    assert_int_equal(o.nnodes, 1);
    assert_int_equal(o.node_rank, 0);
    assert_null(o.master_addr);
    assert_int_equal(o.master_port, 0);
    assert_true(o.collective_check);
    assert_true(o.collective_timeout == 5.0);
    assert_false(o.interactive);
    assert_int_equal(o.nchunks, 0);
    assert_null(o.script);
    assert_int_equal(cli_default_nproc(), 4);
}

/* The default -n counts the driver's GPU entries, limited by CUDA_VISIBLE_DEVICES as
 * CUDA reads it. */
static void test_count_gpus(void **state) {
    (void)state;
    char dir[] = "/tmp/ddp-gpus-XXXXXX";
    assert_non_null(mkdtemp(dir));
    assert_int_equal(cli_count_gpus("/nonexistent/driver", NULL), 0);
    assert_int_equal(cli_count_gpus(dir, NULL), 0);
    char path[64];
    for (int i = 0; i < 4; i++) {
        snprintf(path, sizeof path, "%s/0000:%02d:00.0", dir, i);
        assert_int_equal(mkdir(path, 0700), 0);
    }
    assert_int_equal(cli_count_gpus(dir, NULL), 4);
    assert_int_equal(cli_count_gpus(dir, "0,1"), 2);
    assert_int_equal(cli_count_gpus(dir, "3"), 1);
    assert_int_equal(cli_count_gpus(dir, ""), 0);
    assert_int_equal(cli_count_gpus(dir, "-1"), 0);
    assert_int_equal(cli_count_gpus(dir, "1,-1,2"), 1); /* CUDA stops at the first bad one */
    assert_int_equal(cli_count_gpus(dir, "GPU-8d1c,GPU-77aa"), 2);
    assert_int_equal(cli_count_gpus(dir, "0,1,2,3,4,5"), 4); /* no more than exist */
    for (int i = 0; i < 4; i++) {
        snprintf(path, sizeof path, "%s/0000:%02d:00.0", dir, i);
        rmdir(path);
    }
    rmdir(dir);
}

static void test_every_option(void **state) {
    (void)state;
    cli_options o;
    assert_int_equal(parse(&o, "-n", "3", "--backend", "gloo", "--nnodes", "2", "--node-rank", "1",
                           "--master-addr", "10.0.0.1", "--master-port", "29500",
                           "--collective-timeout", "2.5", "--no-collective-check", "-e", "x=1",
                           "-e", "print(x)", "-i", NULL),
                     DDP_OK);
    assert_int_equal(o.nproc, 3);
    assert_string_equal(o.backend, "gloo");
    assert_int_equal(o.nnodes, 2);
    assert_int_equal(o.node_rank, 1);
    assert_string_equal(o.master_addr, "10.0.0.1");
    assert_int_equal(o.master_port, 29500);
    assert_true(o.collective_timeout == 2.5);
    assert_false(o.collective_check);
    assert_int_equal(o.nchunks, 2);
    assert_string_equal(o.chunks[0], "x=1");
    assert_string_equal(o.chunks[1], "print(x)");
    assert_true(o.interactive);
    assert_null(o.script);
}

static void test_spellings(void **state) {
    (void)state;
    cli_options o;
    assert_int_equal(parse(&o, "--nproc-per-node", "8", NULL), DDP_OK);
    assert_int_equal(o.nproc, 8);
    assert_int_equal(parse(&o, "--nproc-per-node=2", "--backend=nccl", NULL), DDP_OK);
    assert_int_equal(o.nproc, 2);
    assert_string_equal(o.backend, "nccl");
    assert_int_equal(parse(&o, "-n2", "-eprint(1)", NULL), DDP_OK);
    assert_int_equal(o.nproc, 2);
    assert_string_equal(o.chunks[0], "print(1)");
}

static void test_script_and_its_arguments(void **state) {
    (void)state;
    cli_options o;
    /* everything after the script is the script's, even what looks like our options */
    assert_int_equal(parse(&o, "-n", "2", "train.lua", "-n", "5", "--lr", "x", NULL), DDP_OK);
    assert_int_equal(o.nproc, 2);
    assert_string_equal(o.script, "train.lua");
    assert_int_equal(o.script_argc, 5);
    assert_string_equal(o.script_argv[0], "train.lua");
    assert_string_equal(o.script_argv[1], "-n");
    assert_string_equal(o.script_argv[4], "x");
    assert_int_equal(parse(&o, "-", "a", NULL), DDP_OK);
    assert_string_equal(o.script, "-");
    assert_int_equal(o.script_argc, 2);
    assert_int_equal(parse(&o, "--", "-weird.lua", NULL), DDP_OK);
    assert_string_equal(o.script, "-weird.lua");
}

static void test_help_and_version(void **state) {
    (void)state;
    cli_options o;
    assert_int_equal(parse(&o, "-h", NULL), DDP_OK);
    assert_int_equal(o.action, CLI_HELP);
    assert_int_equal(parse(&o, "-n", "2", "--help", NULL), DDP_OK);
    assert_int_equal(o.action, CLI_HELP);
    assert_int_equal(parse(&o, "--version", NULL), DDP_OK);
    assert_int_equal(o.action, CLI_VERSION);
    assert_non_null(strstr(cli_usage(), "usage: ddplab"));
    assert_non_null(strstr(cli_usage(), "examples:"));
}

/* Parsing must fail with a message containing `needle`. */
static void expect_error(const char *needle, ddp_status st) {
    assert_int_equal(st, DDP_ERR_ARG);
    if (!strstr(ddp_last_error(), needle)) fail_msg("message was: %s", ddp_last_error());
    assert_null(strchr(ddp_last_error(), '\n'));
}

static void test_bad_options(void **state) {
    (void)state;
    cli_options o;
    expect_error("unknown option '--frobnicate'", parse(&o, "--frobnicate", NULL));
    expect_error("unknown option '-x'", parse(&o, "-x", NULL));
    expect_error("whole number, got 'four'", parse(&o, "-n", "four", NULL));
    expect_error("between 1 and", parse(&o, "-n", "0", NULL));
    expect_error("between 1 and", parse(&o, "-n", "-3", NULL));
    /* the most ranks a node's driver starts, said before anything starts */
    expect_error("between 1 and 1024, got 2000", parse(&o, "-n", "2000", NULL));
    expect_error("needs a value", parse(&o, "-n", NULL));
    expect_error("needs a value", parse(&o, "-e", NULL));
    expect_error("needs a value", parse(&o, "--master-port", NULL));
    expect_error("gloo or nccl, got 'mpi'", parse(&o, "--backend", "mpi", NULL));
    expect_error("between 1 and 65535", parse(&o, "--master-port", "70000", NULL));
    expect_error("seconds above 0", parse(&o, "--collective-timeout", "0", NULL));
    expect_error("seconds above 0", parse(&o, "--collective-timeout", "soon", NULL));
    expect_error("must be 0..1", parse(&o, "--nnodes", "2", "--node-rank", "2", NULL));
    expect_error("needs --master-addr", parse(&o, "--nnodes", "2", "--node-rank", "1", NULL));
    expect_error("needs a host", parse(&o, "--master-addr", "", NULL));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_count_gpus),
        cmocka_unit_test(test_every_option),
        cmocka_unit_test(test_spellings),
        cmocka_unit_test(test_script_and_its_arguments),
        cmocka_unit_test(test_help_and_version),
        cmocka_unit_test(test_bad_options),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
