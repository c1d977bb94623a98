/* test_runtime_driver.c — the driver against real rank processes: this test program is
 * its own rank worker (main() turns into rank_worker_main when the driver starts it with
 * DDPLAB_RANK_WORKER set, since the driver execs /proc/self/exe). Covers start/stop on 1,
 * 2 and 4 ranks, values of expressions, globals that persist, errors, output before the
 * outcome, targets, Ctrl-C, a rank that calls os.exit or is killed, restart, completion,
 * the :ranks table and script files; and what a mischievous learner tries: output floods
 * (memory bounded, Ctrl-C still heard), a chunk too big to send, Ctrl-C during os.execute,
 * processes left running in the background, a SIGTERM just before a chunk starts. */
#include <setjmp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "runtime/driver.h"
#include "runtime/launcher.h"
#include "runtime/protocol.h"
#include "runtime/rank.h"

static launch_options options(int n) {
    launch_options o = {.nproc = n, .nnodes = 1, .collective_timeout = 5, .collective_check = true};
    return o;
}

static driver *start(int n) {
    launch_options o = options(n);
    driver *d = NULL;
    ddp_status s = driver_start(&o, &d);
    if (s != DDP_OK) fprintf(stderr, "driver_start: %s\n", ddp_last_error());
    assert_int_equal(s, DDP_OK);
    assert_non_null(d);
    assert_int_equal(driver_world_size(d), n);
    return d;
}

/* Runs chunk on every rank; results must hold world-size entries. */
static void run(driver *d, const char *chunk, rank_result *results) {
    assert_int_equal(driver_run(d, chunk, strlen(chunk), "=test", NULL, NULL, NULL, results),
                     DDP_OK);
}

static void expect_all_output(driver *d, const char *chunk, const char *const *expected) {
    int n = driver_world_size(d);
    rank_result res[8];
    run(d, chunk, res);
    for (int r = 0; r < n; r++) {
        assert_int_equal(res[r].rank, r);
        if (res[r].outcome != RANK_DONE)
            fprintf(stderr, "rank %d: %s\n", r, res[r].error ? res[r].error : "?");
        assert_int_equal(res[r].outcome, RANK_DONE);
        assert_non_null(res[r].output);
        assert_string_equal(res[r].output, expected[r]);
    }
    rank_results_free(res, n);
}

/* Start, `=expr`, bare expressions, globals across chunks, errors: on n ranks. */
static void check_basics(int n) {
    driver *d = start(n);
    const char *two[] = {"2\n", "2\n", "2\n", "2\n"};
    expect_all_output(d, "=1+1", two);
    expect_all_output(d, "return 1+1", two);
    rank_result res[8];
    run(d, "x = tonumber(os.getenv('RANK')) * 10 + tonumber(os.getenv('WORLD_SIZE'))", res);
    for (int r = 0; r < n; r++) {
        assert_int_equal(res[r].outcome, RANK_DONE);
        assert_null(res[r].output);
    }
    rank_results_free(res, n);
    char expected[4][16];
    const char *ptrs[4] = {0};
    for (int r = 0; r < n; r++) {
        snprintf(expected[r], sizeof expected[r], "%d\tok\n", r * 10 + n);
        ptrs[r] = expected[r];
    }
    expect_all_output(d, "return x, 'ok'", ptrs);
    run(d, "local t = nil; return t.field", res);
    for (int r = 0; r < n; r++) {
        assert_int_equal(res[r].outcome, RANK_ERROR);
        assert_non_null(res[r].error);
        assert_non_null(strstr(res[r].error, "attempt to index"));
        assert_non_null(strstr(res[r].error, "stack traceback"));
        assert_null(strstr(res[r].error, "[C]: in ?"));
    }
    rank_results_free(res, n);
    /* a __tostring that fails is an error of the chunk, not a crash of the rank */
    run(d, "=setmetatable({}, {__tostring = function() error('no words') end})", res);
    for (int r = 0; r < n; r++) {
        assert_int_equal(res[r].outcome, RANK_ERROR);
        assert_non_null(strstr(res[r].error, "no words"));
    }
    rank_results_free(res, n);
    /* the state survived the errors */
    expect_all_output(d, "=x - x + 2", two);
    driver_stop(d);
}

static void test_basics_1(void **state) {
    (void)state;
    check_basics(1);
}
static void test_basics_2(void **state) {
    (void)state;
    check_basics(2);
}
static void test_basics_4(void **state) {
    (void)state;
    check_basics(4);
}

typedef struct {
    size_t streamed[4];
    driver *d;
    int interrupts;
    pid_t kill_pid;
} stream_ctx;

static void count_output(int rank, const char *bytes, size_t len, void *ctx) {
    (void)bytes;
    stream_ctx *c = ctx;
    c->streamed[rank] += len;
}

/* Every byte printed reaches the driver before DONE, and is streamed as it arrives. */
static void test_output_before_done(void **state) {
    (void)state;
    driver *d = start(2);
    const char *chunk = "for i = 1, 3000 do print(i) end io.write('tail\\n') io.stderr:write('!')";
    size_t expected = 0;
    char line[16];
    for (int i = 1; i <= 3000; i++) expected += (size_t)snprintf(line, sizeof line, "%d\n", i);
    expected += 6;
    stream_ctx c = {0};
    rank_result res[2];
    assert_int_equal(driver_run(d, chunk, strlen(chunk), "=test", NULL, count_output, &c, res),
                     DDP_OK);
    for (int r = 0; r < 2; r++) {
        assert_int_equal(res[r].outcome, RANK_DONE);
        assert_int_equal(res[r].output_len, expected);
        assert_int_equal(c.streamed[r], expected);
        assert_memory_equal(res[r].output + expected - 6, "tail\n!", 6);
    }
    rank_results_free(res, 2);
    driver_stop(d);
}

static void test_targets(void **state) {
    (void)state;
    driver *d = start(2);
    bool targets[2] = {false, true};
    rank_result res[2];
    assert_int_equal(driver_run(d, "=os.getenv('RANK')", 18, "=t", targets, NULL, NULL, res),
                     DDP_OK);
    assert_int_equal(res[0].outcome, RANK_SKIPPED);
    assert_null(res[0].output);
    assert_int_equal(res[1].outcome, RANK_DONE);
    assert_string_equal(res[1].output, "1\n");
    rank_results_free(res, 2);
    driver_stop(d);
}

static void interrupt_on_output(int rank, const char *bytes, size_t len, void *ctx) {
    (void)rank;
    (void)bytes;
    (void)len;
    stream_ctx *c = ctx;
    c->interrupts++;
    driver_interrupt(c->d);
}

/* Runs chunk with Ctrl-C pressed at each piece of output; every rank must end
 * interrupted. res gets world-size results (the caller frees them); returns how many
 * times Ctrl-C was pressed. */
static int run_until_ctrl_c(driver *d, const char *chunk, rank_result *res) {
    stream_ctx c = {.d = d};
    assert_int_equal(driver_run(d, chunk, strlen(chunk), "=t", NULL, interrupt_on_output, &c, res),
                     DDP_OK);
    for (int r = 0; r < driver_world_size(d); r++)
        assert_int_equal(res[r].outcome, RANK_INTERRUPTED);
    return c.interrupts;
}

/* The ranks still run chunks: "=1" prints 1 on every rank. */
static void expect_still_answering(driver *d) {
    const char *one[8];
    for (int r = 0; r < 8; r++) one[r] = "1\n";
    expect_all_output(d, "=1", one);
}

/* Ctrl-C stops `while true do end` on every rank and leaves the globals in place. */
static void test_interrupt_keeps_state(void **state) {
    (void)state;
    driver *d = start(2);
    rank_result res[2];
    run(d, "y = 7", res);
    rank_results_free(res, 2);
    assert_true(run_until_ctrl_c(d, "print('looping') while true do end", res) >= 1);
    for (int r = 0; r < 2; r++) assert_non_null(strstr(res[r].error, "interrupted!"));
    rank_results_free(res, 2);
    const char *seven[] = {"7\n", "7\n"};
    expect_all_output(d, "=y", seven);
    driver_stop(d);
}

/* os.exit(3) on one rank: reported as died with status 3 and its last output; the
 * other rank is not left waiting; later chunks say the rank is gone; restart revives. */
static void test_exit_reported_and_restart(void **state) {
    (void)state;
    driver *d = start(2);
    rank_result res[2];
    /* Rank 1 exits once rank 0 is done (a flag file): a death stops the ranks still
     * running, and rank 0 must not be one of them however slow the machine is. Rank 0
     * still has to report DONE after making the flag, so rank 1 gives it one to two seconds more
     * (a loaded machine once descheduled rank 0 in between). */
    char flag[64], chunk[400];
    snprintf(flag, sizeof flag, "/tmp/ddplab-exit3-%d", (int)getpid());
    unlink(flag);
    snprintf(chunk, sizeof chunk,
             "if os.getenv('RANK') == '1' then while not io.open('%s') do end "
             "local t = os.time() + 2 while os.time() < t do end "
             "print('last words') os.exit(3) end print('fine') io.open('%s', 'w'):close()",
             flag, flag);
    run(d, chunk, res);
    unlink(flag);
    assert_int_equal(res[0].outcome, RANK_DONE);
    assert_string_equal(res[0].output, "fine\n");
    assert_int_equal(res[1].outcome, RANK_DIED);
    assert_int_equal(res[1].exit_status, 3);
    assert_non_null(strstr(res[1].error, "status 3"));
    assert_non_null(strstr(res[1].error, "last words"));
    assert_string_equal(res[1].output, "last words\n");
    rank_results_free(res, 2);

    rank_info info[2];
    assert_int_equal(driver_ranks(d, info), DDP_OK);
    assert_string_equal(info[0].state, "idle");
    assert_non_null(strstr(info[1].state, "dead"));

    run(d, "=1", res);
    assert_int_equal(res[0].outcome, RANK_DONE);
    assert_int_equal(res[1].outcome, RANK_DIED);
    assert_non_null(strstr(res[1].error, "restart"));
    rank_results_free(res, 2);

    assert_int_equal(driver_restart(d), DDP_OK);
    expect_still_answering(d);
    driver_stop(d);
}

/* A rank printing far more than anyone reads: every byte is streamed, but the driver keeps
 * only the first MiB for grouping (its memory must not grow with the output), and says so. */
static void test_output_flood_bounded(void **state) {
    (void)state;
    driver *d = start(1);
    const char *chunk = "for i = 1, 64 do io.write(string.rep('x', 65536)) end";
    stream_ctx c = {0};
    rank_result res[1];
    assert_int_equal(driver_run(d, chunk, strlen(chunk), "=t", NULL, count_output, &c, res),
                     DDP_OK);
    assert_int_equal(res[0].outcome, RANK_DONE);
    assert_int_equal(c.streamed[0], (size_t)64 * 65536);
    assert_true(res[0].output_len <= (1u << 20) + 128);
    assert_int_equal(res[0].output_len, strlen(res[0].output));
    assert_non_null(strstr(res[0].output, "output cut"));
    rank_results_free(res, 1);
    const char *ok[] = {"ok\n"};
    expect_all_output(d, "print('ok')", ok); /* the next chunk keeps all of its output */
    driver_stop(d);
}

/* Streams slowly (as a terminal does) and presses Ctrl-C once. */
static void slow_interrupt_on_output(int rank, const char *bytes, size_t len, void *ctx) {
    (void)rank;
    (void)bytes;
    (void)len;
    stream_ctx *c = ctx;
    usleep(2000);
    if (c->interrupts++ == 0) driver_interrupt(c->d);
}

/* Ctrl-C during a flood that the reader cannot keep up with: the pipe never runs dry, and
 * the driver must still get to the interrupt (alarm: a driver that never does fails the
 * test rather than hanging it). */
static void test_interrupt_during_flood(void **state) {
    (void)state;
    driver *d = start(1);
    stream_ctx c = {.d = d};
    rank_result res[1];
    const char *chunk = "local s = string.rep('x', 65536) while true do io.write(s) end";
    alarm(120);
    assert_int_equal(
        driver_run(d, chunk, strlen(chunk), "=t", NULL, slow_interrupt_on_output, &c, res), DDP_OK);
    alarm(0);
    assert_int_equal(res[0].outcome, RANK_INTERRUPTED);
    rank_results_free(res, 1);
    driver_stop(d);
}

/* SIGTERM that lands just before a chunk starts (the REPL read the line, the chunk is not
 * sent yet): the chunk is stopped at once rather than left to loop forever, and the
 * session still ends cleanly. */
static void test_terminate_holds_for_next_chunk(void **state) {
    (void)state;
    driver *d = start(2);
    driver_terminate(d);
    rank_result res[2];
    alarm(120); /* a driver that never stops the chunk fails here, not by hanging */
    run(d, "while true do end", res);
    alarm(0);
    for (int r = 0; r < 2; r++) assert_int_equal(res[r].outcome, RANK_INTERRUPTED);
    rank_results_free(res, 2);
    driver_stop(d);
}

/* A chunk too big for the control channel is refused before it is sent, with a message,
 * and the ranks are left as they were (not reported dead). */
static void test_oversized_chunk_refused(void **state) {
    (void)state;
    driver *d = start(2);
    size_t len = PROTO_MAX_PAYLOAD + 16;
    char *chunk = malloc(len);
    assert_non_null(chunk);
    memset(chunk, ' ', len);
    rank_result res[2];
    assert_int_equal(driver_run(d, chunk, len, "=t", NULL, NULL, NULL, res), DDP_ERR_ARG);
    free(chunk);
    assert_non_null(strstr(ddp_last_error(), "at most 64 MiB"));
    rank_results_free(res, 2);
    expect_still_answering(d);
    driver_stop(d);
}

/* Ctrl-C while a rank waits for a command (os.execute ignores SIGINT while it waits): the
 * command is stopped too and the chunk ends interrupted, in a loop of commands as well. */
static void test_interrupt_reaches_commands(void **state) {
    (void)state;
    driver *d = start(2);
    rank_result res[2];
    const char *chunk = "for i = 1, 3 do os.execute('echo started; sleep 20') end";
    assert_true(run_until_ctrl_c(d, chunk, res) >= 1);
    for (int r = 0; r < 2; r++) {
        assert_non_null(strstr(res[r].error, "interrupted!"));
        /* the loop did not go on (a rank stopped before its command ran printed nothing) */
        assert_true(!res[r].output || !strstr(res[r].output, "started\nstarted"));
    }
    rank_results_free(res, 2);
    const char *fine[] = {"true\texit\t0\n", "true\texit\t0\n"};
    expect_all_output(d, "return os.execute('true')", fine); /* a normal command still works */
    driver_stop(d);
}

/* Whether process `pid` is gone (or a zombie waiting for init: it runs no more). */
static bool process_gone(pid_t pid) {
    char path[64], stat[256] = "";
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return true;
    size_t n = fread(stat, 1, sizeof stat - 1, f);
    fclose(f);
    stat[n] = '\0';
    const char *paren = strrchr(stat, ')');
    return paren && paren[1] == ' ' && (paren[2] == 'Z' || paren[2] == 'X');
}

/* A process a rank left running in the background ends with the session: no orphans. */
static void test_stop_ends_background_processes(void **state) {
    (void)state;
    driver *d = start(1);
    char file[64], chunk[160];
    snprintf(file, sizeof file, "/tmp/ddplab-bg-%d", (int)getpid());
    snprintf(chunk, sizeof chunk, "os.execute('sleep 60 > /dev/null 2>&1 & echo $! > %s')", file);
    rank_result res[1];
    run(d, chunk, res);
    assert_int_equal(res[0].outcome, RANK_DONE);
    rank_results_free(res, 1);
    FILE *f = fopen(file, "r");
    assert_non_null(f);
    int pid = 0;
    assert_int_equal(fscanf(f, "%d", &pid), 1);
    fclose(f);
    unlink(file);
    assert_true(pid > 0);
    assert_false(process_gone(pid));
    driver_stop(d);
    for (int i = 0; i < 200 && !process_gone(pid); i++) usleep(10000); /* SIGKILL lands */
    bool gone = process_gone(pid);
    if (!gone) kill(pid, SIGKILL); /* leave nothing behind, even when failing */
    assert_true(gone);
}

static void kill_on_output(int rank, const char *bytes, size_t len, void *ctx) {
    (void)bytes;
    (void)len;
    stream_ctx *c = ctx;
    if (rank == 1 && c->kill_pid > 0) {
        kill(c->kill_pid, SIGKILL);
        c->kill_pid = 0;
    }
}

/* kill -9 of a rank in a loop: reported with the signal; the other rank, stuck in its own
 * loop, is interrupted rather than left running. */
static void test_kill9_reported(void **state) {
    (void)state;
    driver *d = start(2);
    rank_info info[2];
    assert_int_equal(driver_ranks(d, info), DDP_OK);
    stream_ctx c = {.kill_pid = info[1].pid};
    rank_result res[2];
    const char *chunk = "if os.getenv('RANK') == '1' then print('ready') end while true do end";
    assert_int_equal(driver_run(d, chunk, strlen(chunk), "=t", NULL, kill_on_output, &c, res),
                     DDP_OK);
    assert_int_equal(res[1].outcome, RANK_DIED);
    assert_int_equal(res[1].exit_status, -SIGKILL);
    assert_non_null(strstr(res[1].error, "SIGKILL"));
    assert_int_equal(res[0].outcome, RANK_INTERRUPTED);
    assert_non_null(strstr(res[0].error, "stopped because rank 1 was killed by signal 9"));
    rank_results_free(res, 2);
    driver_stop(d);
}

static void test_complete_and_ranks(void **state) {
    (void)state;
    driver *d = start(2);
    rank_result res[2];
    run(d, "myvar_alpha = 1 myvar_beta = {gamma = 1, delta = 2} s = 'x'", res);
    rank_results_free(res, 2);
    char **m;
    int n;
    assert_int_equal(driver_complete(d, 1, "myvar_", &m, &n), DDP_OK);
    assert_int_equal(n, 2);
    assert_string_equal(m[0], "myvar_alpha");
    assert_string_equal(m[1], "myvar_beta");
    for (int i = 0; i < n; i++) free(m[i]);
    free(m);
    assert_int_equal(driver_complete(d, 0, "myvar_beta.g", &m, &n), DDP_OK);
    assert_int_equal(n, 1);
    assert_string_equal(m[0], "myvar_beta.gamma");
    free(m[0]);
    free(m);
    assert_int_equal(driver_complete(d, 0, "s:upp", &m, &n), DDP_OK);
    assert_int_equal(n, 1);
    assert_string_equal(m[0], "s:upper");
    free(m[0]);
    free(m);
    assert_int_equal(driver_complete(d, 0, "nothing_like_this", &m, &n), DDP_OK);
    assert_int_equal(n, 0);
    free(m);

    rank_info info[2];
    assert_int_equal(driver_ranks(d, info), DDP_OK);
    for (int r = 0; r < 2; r++) {
        assert_int_equal(info[r].rank, r);
        assert_true(info[r].pid > 0);
        assert_true(info[r].host[0] != '\0');
        assert_string_equal(info[r].device, "cpu");
        assert_string_equal(info[r].state, "idle");
        assert_true(info[r].rss_bytes > 0);
    }
    assert_int_not_equal(info[0].pid, info[1].pid);
    driver_stop(d);
}

/* Completes `word` on rank 0 and checks that exactly `expected` (NULL-terminated) come back. */
static void assert_completes(driver *d, const char *word, const char *const *expected) {
    char **m;
    int n, want = 0;
    while (expected[want]) want++;
    assert_int_equal(driver_complete(d, 0, word, &m, &n), DDP_OK);
    for (int i = 0; i < n && i < want; i++) assert_string_equal(m[i], expected[i]);
    assert_int_equal(n, want);
    for (int i = 0; i < n; i++) free(m[i]);
    free(m);
}

/* The library's objects declare what their __index functions compute: a tensor's fields,
 * a module's parameters and children; internals ("_...") only when asked for. */
static void test_complete_library_objects(void **state) {
    (void)state;
    driver *d = start(1);
    rank_result res[1];
    run(d, "t = torch.ones(2) net = nn.Sequential(nn.Linear(2, 3)) lin = nn.Linear(2, 2)", res);
    rank_results_free(res, 1);
    assert_completes(d, "t.sh", (const char *const[]){"t.shape", NULL});
    assert_completes(d, "t.requires_g",
                     (const char *const[]){"t.requires_grad", "t.requires_grad_", NULL});
    assert_completes(d, "lin.we", (const char *const[]){"lin.weight", NULL});
    assert_completes(d, "lin.weight.sh", (const char *const[]){"lin.weight.shape", NULL});
    assert_completes(
        d, "lin.weight:su",
        (const char *const[]){"lin.weight:sub", "lin.weight:sub_", "lin.weight:sum", NULL});
    assert_completes(d, "lin.b", (const char *const[]){"lin.bias", "lin.buffers", NULL});
    assert_completes(d, "lin._parame", (const char *const[]){"lin._parameters", NULL});
    assert_completes(d, "lin.z", (const char *const[]){"lin.zero_grad", NULL});
    assert_completes(d, "lin:we", (const char *const[]){NULL}); /* a field is no method */
    driver_stop(d);
}

static void test_run_file_with_args(void **state) {
    (void)state;
    char path[] = "/tmp/ddplab-test-script-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char *script = "local a, b = ...\nprint(arg[0] ~= nil, arg[1], arg[2], a, b, #arg)\n"
                         "error('script failed on ' .. os.getenv('RANK'))\n";
    assert_int_equal(write(fd, script, strlen(script)), (ssize_t)strlen(script));
    close(fd);
    driver *d = start(2);
    char *args[] = {"one", "two"};
    rank_result res[2];
    assert_int_equal(driver_run_file(d, path, 2, args, NULL, NULL, res), DDP_OK);
    for (int r = 0; r < 2; r++) {
        assert_string_equal(res[r].output, "true\tone\ttwo\tone\ttwo\t2\n");
        assert_int_equal(res[r].outcome, RANK_ERROR);
        assert_non_null(strstr(res[r].error, r == 0 ? "failed on 0" : "failed on 1"));
    }
    rank_results_free(res, 2);
    driver_stop(d);
    unlink(path);
}

/* A process that is not one of the driver's ranks can reach the control socket (same
 * user) but gets nothing run and nothing back; the ranks carry on. */
static void test_stranger_gets_nothing(void **state) {
    (void)state;
    driver *d = start(1);
    rank_info info[1];
    assert_int_equal(driver_ranks(d, info), DDP_OK);
    /* The rank's environment names the socket; read it as a same-user attacker could. */
    char path[64], env[8192];
    snprintf(path, sizeof path, "/proc/%d/environ", info[0].pid);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    size_t n = fread(env, 1, sizeof env - 1, f);
    fclose(f);
    env[n] = '\0';
    const char *sock = NULL;
    for (size_t i = 0; i < n; i += strlen(env + i) + 1)
        if (strncmp(env + i, "DDPLAB_CONTROL=", 15) == 0) sock = env + i + 15;
    assert_non_null(sock);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", sock);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0) {
        const char chunk[] = "1\0"
                             "1\0"
                             "=evil\0os.exit(42)"; /* id, targets, name, chunk */
        (void)proto_send(fd, MSG_RUN, chunk, sizeof chunk - 1);
        proto_frame fr;
        assert_int_not_equal(proto_recv(fd, 300, &fr), DDP_OK); /* nothing comes back */
    }
    expect_still_answering(d);
    assert_int_equal(driver_ranks(d, info), DDP_OK);
    assert_string_equal(info[0].state, "idle");
    close(fd);
    driver_stop(d);
}

/* Forks a process that runs the agent of node 1 (as `ddplab --nnodes 2 --node-rank 1`)
 * once a byte arrives on `go` (so that the stranger knocks first). */
static pid_t fork_agent(const launch_options *o, int go) {
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct pollfd p = {.fd = go, .events = POLLIN};
        (void)poll(&p, 1, 20000);
        launch_options a = *o;
        a.node_rank = 1;
        _exit(launcher_agent_main(&a));
    }
    return pid;
}

/* Whether nothing listens on 127.0.0.1:port right now (binding it works). */
static bool port_is_free(int port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return false;
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    bool ok = bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
    close(fd);
    return ok;
}

/* A free master port whose control port (the next one) is free too: a loaded machine
 * hands out ephemeral ports all the time, so check both rather than hope. */
static int free_port_pair(void) {
    int port = 0;
    for (int tries = 0; tries < 100; tries++) {
        assert_int_equal(launcher_free_port("127.0.0.1", &port), DDP_OK);
        if (port < 65535 && port_is_free(launcher_control_port(port))) return port;
    }
    return port;
}

/* A stranger without the secret dials the node port: the handshake fails, nothing runs.
 * Then it lets the agent go (a byte on `done`). */
static pid_t fork_stranger(int port, int done) {
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        setenv("DDPLAB_SECRET", "0badc0de", 1);
        unsigned char key[PROTO_KEY_BYTES];
        int fd = -1, verdict = 3;
        if (proto_load_secret(key) == DDP_OK &&
            proto_connect_tcp("127.0.0.1", port, 20000, &fd) == DDP_OK)
            verdict = proto_auth_client(fd, key, 5000) == DDP_OK ? 1 : 0;
        if (write(done, "g", 1) != 1) verdict = 4;
        _exit(verdict);
    }
    return pid;
}

/* Two nodes on loopback: node 1's agent starts rank 1, which dials the driver over TCP
 * with the session secret; chunks, Ctrl-C (relayed by the agent), a remote exit and
 * driver_restart work as on one node, and a peer without the secret is turned away. */
static void test_two_nodes_on_loopback(void **state) {
    (void)state;
    setenv("DDPLAB_SECRET", "00112233445566778899aabbccddeeff", 1);
    int port = free_port_pair();
    launch_options o = options(1);
    o.nnodes = 2;
    o.master_addr = "127.0.0.1";
    o.master_port = port;
    int go[2];
    assert_int_equal(pipe(go), 0);
    pid_t stranger = fork_stranger(launcher_control_port(port), go[1]);
    pid_t agent = fork_agent(&o, go[0]);
    close(go[0]);
    close(go[1]);
    driver *d = NULL;
    ddp_status st = driver_start(&o, &d);
    if (st != DDP_OK) fprintf(stderr, "driver_start: %s\n", ddp_last_error());
    assert_int_equal(st, DDP_OK);
    assert_int_equal(driver_world_size(d), 2);
    int status;
    assert_int_equal(waitpid(stranger, &status, 0), stranger);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0); /* the stranger was refused */

    const char *who[] = {"0\t0\t2\n", "1\t1\t2\n"};
    expect_all_output(d, "=os.getenv('RANK'), os.getenv('GROUP_RANK'), os.getenv('WORLD_SIZE')",
                      who);
    rank_result res[2];
    run_until_ctrl_c(d, "print('looping') while true do end", res);
    rank_results_free(res, 2);
    rank_info info[2];
    assert_int_equal(driver_ranks(d, info), DDP_OK);
    assert_string_equal(info[1].state, "idle");
    assert_true(info[1].pid > 0);
    run(d, "if os.getenv('RANK') == '1' then os.exit(3) end", res);
    assert_int_equal(res[0].outcome, RANK_DONE);
    assert_int_equal(res[1].outcome, RANK_DIED);
    assert_int_equal(res[1].exit_status, 3);
    rank_results_free(res, 2);
    assert_int_equal(driver_restart(d), DDP_OK); /* both nodes' ranks start again */
    expect_all_output(d, "=os.getenv('RANK'), os.getenv('GROUP_RANK'), os.getenv('WORLD_SIZE')",
                      who);
    driver_stop(d);
    assert_int_equal(waitpid(agent, &status, 0), agent);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    unsetenv("DDPLAB_SECRET");
}

/* Without the shared secret a multi-node driver refuses to start. */
static void test_two_nodes_need_a_secret(void **state) {
    (void)state;
    unsetenv("DDPLAB_SECRET");
    launch_options o = options(1);
    o.nnodes = 2;
    driver *d = NULL;
    assert_int_equal(driver_start(&o, &d), DDP_ERR_ARG);
    assert_non_null(strstr(ddp_last_error(), "DDPLAB_SECRET"));
}

static void test_bad_options(void **state) {
    (void)state;
    driver *d = NULL;
    launch_options o = options(0);
    assert_int_equal(driver_start(&o, &d), DDP_ERR_ARG);
    assert_null(d);
    o = options(2);
    o.nnodes = 2;
    o.node_rank = 1;
    assert_int_equal(driver_start(&o, &d), DDP_ERR_UNSUPPORTED);
    assert_non_null(strstr(ddp_last_error(), "agent"));
    driver_stop(NULL);
}

/* The targets travel with the chunk: a collective in a chunk sent to ranks 0,1 of 3 fails
 * at once on them, naming rank 2, instead of waiting for the watchdog; with every rank
 * targeted again the same collective works. */
static void test_targets_reach_collectives(void **state) {
    (void)state;
    driver *d = start(3);
    rank_result res[3];
    run(d, "dist.init_process_group{backend = 'gloo'}", res);
    for (int r = 0; r < 3; r++) assert_int_equal(res[r].outcome, RANK_DONE);
    rank_results_free(res, 3);
    const char *chunk = "local t = torch.ones(2); dist.all_reduce(t); return t:tolist()[1]";
    bool some[3] = {true, true, false};
    assert_int_equal(driver_run(d, chunk, strlen(chunk), "=t", some, NULL, NULL, res), DDP_OK);
    for (int r = 0; r < 2; r++) {
        assert_int_equal(res[r].outcome, RANK_ERROR);
        assert_non_null(strstr(res[r].error, "rank 2"));
        assert_non_null(strstr(res[r].error, "not running this chunk"));
    }
    assert_int_equal(res[2].outcome, RANK_SKIPPED);
    rank_results_free(res, 3);
    const char *three[] = {"3.0\n", "3.0\n", "3.0\n"};
    expect_all_output(d, chunk, three);
    driver_stop(d);
}

/* A rank killed between chunks is found by driver_check_idle, reported once with its exit
 * and its last output; the next chunk says it is not running. */
static void test_idle_death_reported_once(void **state) {
    (void)state;
    driver *d = start(2);
    rank_result res[2];
    run(d, "if os.getenv('RANK') == '1' then print('last words') end", res);
    rank_results_free(res, 2);
    assert_int_equal(driver_check_idle(d, res), 0);
    assert_int_equal(res[0].outcome, RANK_SKIPPED);
    assert_int_equal(res[1].outcome, RANK_SKIPPED);
    rank_info info[2];
    assert_int_equal(driver_ranks(d, info), DDP_OK);
    assert_int_equal(kill(info[1].pid, SIGKILL), 0);
    int died = 0;
    for (int tries = 0; tries < 1000 && died == 0; tries++) { /* bounded: 20 s */
        died = driver_check_idle(d, res);
        if (died == 0) usleep(20000);
    }
    assert_int_equal(died, 1);
    assert_int_equal(res[0].outcome, RANK_SKIPPED);
    assert_int_equal(res[1].outcome, RANK_DIED);
    assert_int_equal(res[1].exit_status, -SIGKILL);
    assert_non_null(strstr(res[1].error, "rank 1 was killed by signal 9"));
    assert_non_null(strstr(res[1].error, "last words"));
    rank_results_free(res, 2);
    assert_int_equal(driver_check_idle(d, res), 0); /* once */
    run(d, "=1", res);
    assert_int_equal(res[0].outcome, RANK_DONE);
    assert_int_equal(res[1].outcome, RANK_DIED);
    assert_non_null(strstr(res[1].error, "not running"));
    rank_results_free(res, 2);
    assert_int_equal(driver_check_idle(d, res), 0); /* driver_run reported it already */
    driver_stop(d);
}

typedef struct {
    int calls;
    char states[2][96];
    char flag[64];
} quiet_ctx;

/* Records what the quiet report said, then lets the spinning rank go (the flag file). */
static void on_quiet(const rank_info *info, int n, void *arg) {
    quiet_ctx *q = arg;
    q->calls++;
    for (int r = 0; r < n && r < 2; r++)
        snprintf(q->states[r], sizeof q->states[r], "%s", info[r].state);
    FILE *f = fopen(q->flag, "w");
    if (f) fclose(f);
}

/* A chunk that prints nothing for a while gets one quiet report with each rank's state;
 * ranks outside the chunk have an empty state. */
static void test_quiet_report(void **state) {
    (void)state;
    driver *d = start(2);
    quiet_ctx q = {0};
    snprintf(q.flag, sizeof q.flag, "/tmp/ddplab-quiet-%d", (int)getpid());
    unlink(q.flag);
    driver_set_quiet_report(d, 0.2, on_quiet, &q);
    char chunk[160];
    snprintf(chunk, sizeof chunk, "while not io.open('%s') do end", q.flag);
    bool only0[2] = {true, false};
    rank_result res[2];
    assert_int_equal(driver_run(d, chunk, strlen(chunk), "=t", only0, NULL, NULL, res), DDP_OK);
    assert_int_equal(res[0].outcome, RANK_DONE);
    rank_results_free(res, 2);
    assert_int_equal(q.calls, 1);
    assert_string_equal(q.states[0], "running");
    assert_string_equal(q.states[1], "");
    unlink(q.flag);
    driver_set_quiet_report(d, 0, NULL, NULL);
    driver_stop(d);
}

int main(void) {
    if (getenv("DDPLAB_RANK_WORKER")) return rank_worker_main();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_basics_1),
        cmocka_unit_test(test_basics_2),
        cmocka_unit_test(test_basics_4),
        cmocka_unit_test(test_output_before_done),
        cmocka_unit_test(test_targets),
        cmocka_unit_test(test_targets_reach_collectives),
        cmocka_unit_test(test_idle_death_reported_once),
        cmocka_unit_test(test_quiet_report),
        cmocka_unit_test(test_interrupt_keeps_state),
        cmocka_unit_test(test_output_flood_bounded),
        cmocka_unit_test(test_oversized_chunk_refused),
        cmocka_unit_test(test_interrupt_during_flood),
        cmocka_unit_test(test_terminate_holds_for_next_chunk),
        cmocka_unit_test(test_interrupt_reaches_commands),
        cmocka_unit_test(test_stop_ends_background_processes),
        cmocka_unit_test(test_exit_reported_and_restart),
        cmocka_unit_test(test_kill9_reported),
        cmocka_unit_test(test_complete_and_ranks),
        cmocka_unit_test(test_complete_library_objects),
        cmocka_unit_test(test_run_file_with_args),
        cmocka_unit_test(test_stranger_gets_nothing),
        cmocka_unit_test(test_two_nodes_on_loopback),
        cmocka_unit_test(test_two_nodes_need_a_secret),
        cmocka_unit_test(test_bad_options),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
