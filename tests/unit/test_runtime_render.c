/* test_runtime_render.c — how rank results are grouped and printed, without processes:
 * rank ranges both ways, identical output collapsed, differing output aligned per group,
 * an error raised on several ranks shown once, deaths and interrupts, a world of 1 without
 * labels, colors only when asked, :show columns and agreement, :ranks, script labels. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/render.h"

static const render_style PLAIN = {.labels = true, .color = false};

/* A result that borrows its strings (render never frees them). */
static rank_result done(int rank, const char *output) {
    return (rank_result){.rank = rank,
                         .outcome = RANK_DONE,
                         .output = (char *)output,
                         .output_len = output ? strlen(output) : 0};
}

static rank_result failed(int rank, const char *output, const char *error) {
    rank_result r = done(rank, output);
    r.outcome = RANK_ERROR;
    r.error = (char *)error;
    return r;
}

/* What render_results prints for r[0..n-1], as a malloc'd string. */
static char *rendered(const rank_result *r, int n, const render_style *style) {
    char *text = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&text, &size);
    render_results(f, r, n, style);
    fclose(f);
    return text;
}

static void assert_renders(const rank_result *r, int n, const render_style *style,
                           const char *expected) {
    char *text = rendered(r, n, style);
    if (strcmp(text, expected) != 0) fail_msg("got:\n%s\nexpected:\n%s", text, expected);
    free(text);
}

static void test_ranges(void **state) {
    (void)state;
    char buf[64];
    bool all[4] = {1, 1, 1, 1}, even[4] = {1, 0, 1, 0}, none[4] = {0};
    bool mixed[6] = {1, 1, 1, 0, 0, 1}, pair[3] = {0, 1, 1};
    assert_string_equal(render_ranges(all, 4, buf, sizeof buf), "0-3");
    assert_string_equal(render_ranges(even, 4, buf, sizeof buf), "0,2");
    assert_string_equal(render_ranges(mixed, 6, buf, sizeof buf), "0-2,5");
    assert_string_equal(render_ranges(pair, 3, buf, sizeof buf), "1,2");
    assert_string_equal(render_ranges(none, 4, buf, sizeof buf), "");
    assert_string_equal(render_ranges(all, 4, buf, 3), "0-"); /* truncated, terminated */
}

static void test_parse_ranges(void **state) {
    (void)state;
    bool set[6];
    assert_int_equal(render_parse_ranges("all", 6, set), DDP_OK);
    for (int i = 0; i < 6; i++) assert_true(set[i]);
    assert_int_equal(render_parse_ranges("0,2", 6, set), DDP_OK);
    assert_true(set[0] && !set[1] && set[2] && !set[3] && !set[4] && !set[5]);
    assert_int_equal(render_parse_ranges(" 1-3 ", 6, set), DDP_OK);
    assert_true(!set[0] && set[1] && set[2] && set[3] && !set[4]);
    assert_int_equal(render_parse_ranges("0-2,5", 6, set), DDP_OK);
    char buf[32];
    assert_string_equal(render_ranges(set, 6, buf, sizeof buf), "0-2,5");
    /* errors leave the set alone and say what is wrong */
    assert_int_equal(render_parse_ranges("7", 6, set), DDP_ERR_ARG);
    assert_non_null(strstr(ddp_last_error(), "no rank 7"));
    assert_non_null(strstr(ddp_last_error(), "0-5"));
    assert_int_equal(render_parse_ranges("3-1", 6, set), DDP_ERR_ARG);
    assert_int_equal(render_parse_ranges("one", 6, set), DDP_ERR_ARG);
    assert_non_null(strstr(ddp_last_error(), "'one'"));
    assert_int_equal(render_parse_ranges("", 6, set), DDP_ERR_ARG);
    assert_int_equal(render_parse_ranges("1,,2", 6, set), DDP_ERR_ARG);
    assert_string_equal(render_ranges(set, 6, buf, sizeof buf), "0-2,5");
}

static void test_identical_output_collapses(void **state) {
    (void)state;
    rank_result r[4] = {done(0, "tensor([6., 6., 6.])\n"), done(1, "tensor([6., 6., 6.])\n"),
                        done(2, "tensor([6., 6., 6.])\n"), done(3, "tensor([6., 6., 6.])\n")};
    assert_renders(r, 4, &PLAIN, "[0-3] tensor([6., 6., 6.])\n");
}

static void test_differing_output_per_group_aligned(void **state) {
    (void)state;
    rank_result r[12];
    for (int i = 0; i < 12; i++) r[i] = done(i, i == 10 ? "b\n" : "a\n");
    r[11] = done(11, "c\nsecond line\n");
    assert_renders(r, 12, &PLAIN,
                   "[0-9] a\n"
                   "[10]  b\n"
                   "[11]  c\n"
                   "      second line\n");
    rank_result s[4] = {done(0, "0"), done(1, "1"), done(2, "0"), done(3, "1")};
    assert_renders(s, 4, &PLAIN, "[0,2] 0\n[1,3] 1\n");
}

static void test_skipped_and_silent_ranks(void **state) {
    (void)state;
    rank_result r[4] = {done(0, NULL), done(1, "x\n"), done(2, "x\n"), done(3, NULL)};
    r[0].outcome = RANK_SKIPPED;
    assert_renders(r, 4, &PLAIN, "[1,2] x\n");
    r[1].outcome = RANK_SKIPPED;
    assert_renders(r, 4, &PLAIN, "[2] x\n");
}

static void test_error_shown_once(void **state) {
    (void)state;
    const char *err = "stdin:1: attempt to call a nil value (global 'foo')\n"
                      "stack traceback:\n\tstdin:1: in main chunk";
    rank_result r[4] = {done(0, NULL), failed(1, NULL, err), done(2, NULL), failed(3, NULL, err)};
    assert_renders(r, 4, &PLAIN,
                   "[1,3] error: stdin:1: attempt to call a nil value (global 'foo')\n"
                   "      stack traceback:\n"
                   "      \tstdin:1: in main chunk\n");
    /* output before the error is grouped on its own; the error still appears once */
    rank_result s[2] = {failed(0, "hi 0\n", "stdin:1: boom"), failed(1, "hi 1\n", "stdin:1: boom")};
    assert_renders(s, 2, &PLAIN, "[0]   hi 0\n[1]   hi 1\n[0,1] error: stdin:1: boom\n");
}

static void test_died_and_interrupted(void **state) {
    (void)state;
    rank_result r[4] = {done(0, NULL), done(1, NULL), done(2, "last words\n"), done(3, NULL)};
    r[2].outcome = RANK_DIED;
    r[2].exit_status = -9;
    assert_renders(r, 4, &PLAIN,
                   "[2] last words\n"
                   "[2] rank 2 died: killed by signal 9 (SIGKILL)\n");
    rank_result s[4];
    for (int i = 0; i < 4; i++) {
        s[i] = done(i, NULL);
        s[i].outcome = RANK_INTERRUPTED;
    }
    assert_renders(s, 4, &PLAIN, "[0-3] interrupted\n");
    char buf[64];
    assert_string_equal(render_describe_exit(3, buf, sizeof buf), "exited with status 3");
    assert_string_equal(render_describe_exit(-11, buf, sizeof buf),
                        "killed by signal 11 (SIGSEGV)");
    rank_result t[2] = {done(0, NULL), done(1, NULL)};
    t[0].outcome = t[1].outcome = RANK_DIED;
    t[0].exit_status = t[1].exit_status = 1;
    t[0].error = "rank 0 exited with status 1"; /* the driver's words name the rank */
    t[1].error = "rank 1 exited with status 1";
    assert_renders(t, 2, &PLAIN, "[0,1] ranks 0,1 died: exited with status 1\n");
}

/* A death shows the rank's last output lines from the driver's message, unless this
 * chunk's output (already on screen) ends with them; ranks already dead before the chunk
 * say so with the :restart hint; ranks stopped because another died give that reason. */
static void test_death_shows_last_output_and_reasons(void **state) {
    (void)state;
    rank_result r[2] = {done(0, NULL), done(1, NULL)};
    r[1].outcome = RANK_DIED;
    r[1].exit_status = -9;
    r[1].error = "rank 1 was killed by signal 9 (SIGKILL); its last output:\nstep 1\nstep 2\n";
    r[0].outcome = RANK_INTERRUPTED;
    r[0].error = "stopped because rank 1 was killed by signal 9 (SIGKILL)";
    assert_renders(r, 2, &PLAIN,
                   "[0] stopped because rank 1 was killed by signal 9 (SIGKILL)\n"
                   "[1] rank 1 died: killed by signal 9 (SIGKILL); its last output:\n"
                   "      step 1\n"
                   "      step 2\n");
    /* the same lines printed by this chunk are not repeated */
    r[1].output = "step 1\nstep 2\n";
    r[1].output_len = strlen(r[1].output);
    assert_renders(r, 2, &PLAIN,
                   "[1] step 1\n"
                   "    step 2\n"
                   "[0] stopped because rank 1 was killed by signal 9 (SIGKILL)\n"
                   "[1] rank 1 died: killed by signal 9 (SIGKILL)\n");
    /* a Ctrl-C traceback is not shown: any interrupt text groups as "interrupted" */
    rank_result c[2] = {done(0, NULL), done(1, NULL)};
    c[0].outcome = c[1].outcome = RANK_INTERRUPTED;
    c[0].error = "stdin:1: interrupted!\nstack traceback:\n\tstdin:1: in main chunk";
    c[1].error = "stdin:2: interrupted!\nstack traceback:\n\tstdin:2: in main chunk";
    assert_renders(c, 2, &PLAIN, "[0,1] interrupted\n");
    /* ranks that were dead before the chunk */
    rank_result d[3] = {done(0, "ok\n"), done(1, NULL), done(2, NULL)};
    for (int i = 1; i < 3; i++) {
        d[i].outcome = RANK_DIED;
        d[i].exit_status = 3;
    }
    d[1].error = "rank 1 is not running (it exited with status 3); :restart starts the ranks "
                 "again";
    d[2].error = "rank 2 is not running (it exited with status 3); :restart starts the ranks "
                 "again";
    assert_renders(d, 3, &PLAIN,
                   "[0]   ok\n"
                   "[1,2] ranks 1,2 are not running: exited with status 3 earlier\n");
    /* two deaths with the same status: each rank's own last lines */
    rank_result t[2] = {done(0, NULL), done(1, NULL)};
    t[0].outcome = t[1].outcome = RANK_DIED;
    t[0].exit_status = t[1].exit_status = 1;
    t[0].error = "rank 0 exited with status 1; its last output:\nzero\n";
    t[1].error = "rank 1 exited with status 1; its last output:\none\n";
    assert_renders(t, 2, &PLAIN,
                   "[0,1] ranks 0,1 died: exited with status 1\n"
                   "      rank 0's last output:\n"
                   "        zero\n"
                   "      rank 1's last output:\n"
                   "        one\n");
}

/* The quiet status line groups ranks by state, says "waiting in" for a collective and
 * leaves out ranks that are not in the chunk. */
static void test_activity_line(void **state) {
    (void)state;
    rank_info info[5] = {{.rank = 0, .state = "in all_reduce #3 float32[4]"},
                         {.rank = 1, .state = "in all_reduce #3 float32[4]"},
                         {.rank = 2, .state = "running"},
                         {.rank = 3, .state = "running"},
                         {.rank = 4, .state = ""}};
    char *text = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&text, &size);
    render_activity(f, info, 5, &PLAIN);
    fclose(f);
    assert_string_equal(text, "[0,1] waiting in all_reduce #3 float32[4] · [2,3] running");
    free(text);
}

static void test_world_of_one_has_no_labels(void **state) {
    (void)state;
    render_style one = {.labels = false, .color = false};
    rank_result r[1] = {done(0, "2\nthree\n")};
    assert_renders(r, 1, &one, "2\nthree\n");
    rank_result e[1] = {failed(0, "x\n", "stdin:1: boom\nstack traceback:")};
    assert_renders(e, 1, &one, "x\nstdin:1: boom\nstack traceback:\n");
}

static void test_color_only_when_asked(void **state) {
    (void)state;
    render_style color = {.labels = true, .color = true};
    rank_result r[2] = {failed(0, NULL, "stdin:1: boom"), failed(1, NULL, "stdin:1: boom")};
    char *text = rendered(r, 2, &color);
    assert_non_null(strstr(text, "\033[36m[0,1]\033[0m"));
    assert_non_null(strstr(text, "\033[31merror: stdin:1: boom\033[0m"));
    free(text);
    text = rendered(r, 2, &PLAIN);
    assert_null(strchr(text, '\033'));
    free(text);
    /* NO_COLOR, with any value, and a non-terminal both turn color off */
    setenv("NO_COLOR", "", 1);
    assert_false(render_color_wanted(0));
    unsetenv("NO_COLOR");
    int fd = fileno(tmpfile());
    assert_false(render_color_wanted(fd));
}

/* What render_show prints, as a malloc'd string. */
static char *shown(const rank_result *r, int n, int width) {
    char *text = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&text, &size);
    render_show(f, r, n, width, &PLAIN);
    fclose(f);
    return text;
}

static void test_show_columns_and_agreement(void **state) {
    (void)state;
    rank_result same[3] = {done(0, "1.5\n"), done(1, "1.5\n"), done(2, "1.5\n")};
    char *text = shown(same, 3, 80);
    assert_string_equal(text, "[0]   [1]   [2]\n1.5   1.5   1.5\n✓ all equal\n");
    free(text);
    rank_result differ[4] = {done(0, "0\n"), done(1, "10\nx\n"), done(2, "0\n"), done(3, "3\n")};
    text = shown(differ, 4, 80);
    assert_string_equal(text, "[0]   [1]   [2]   [3]\n"
                              "0     10    0     3\n"
                              "      x\n"
                              "≠ 3 different values; equal within [0,2] [1] [3]\n");
    free(text);
    rank_result all_differ[2] = {done(0, "a\n"), done(1, "b\n")};
    text = shown(all_differ, 2, 80);
    assert_string_equal(text, "[0]   [1]\na     b\n≠ every rank differs\n");
    free(text);
    /* an error is marked as one, and ranks that all failed agree on no value */
    rank_result errors[2] = {failed(0, NULL, "stdin:1: boom\nstack traceback:"),
                             failed(1, NULL, "stdin:1: boom\nstack traceback:")};
    text = shown(errors, 2, 80);
    assert_string_equal(text, "[0]                    [1]\n"
                              "error: stdin:1: boom   error: stdin:1: boom\n");
    free(text);
    /* a dead rank has no value: the agreement is among the ranks that gave one */
    rank_result with_dead[3] = {done(0, "1\n"), done(1, NULL), done(2, "1\n")};
    with_dead[1].outcome = RANK_DIED;
    with_dead[1].exit_status = 2;
    text = shown(with_dead, 3, 80);
    assert_non_null(strstr(text, "✓ equal on the ranks that gave a value [0,2]\n"));
    free(text);
    rank_result one_left[2] = {done(0, "1\n"), done(1, NULL)};
    one_left[1].outcome = RANK_DIED;
    text = shown(one_left, 2, 80);
    assert_null(strstr(text, "differs"));
    free(text);
    /* too wide for the terminal: grouped blocks instead of columns */
    text = shown(differ, 4, 10);
    assert_non_null(strstr(text, "[0,2] 0\n"));
    assert_non_null(strstr(text, "≠ 3 different values"));
    free(text);
}

static void test_ranks_table(void **state) {
    (void)state;
    rank_info info[2] = {
        {.rank = 0,
         .pid = 4242,
         .host = "lab",
         .device = "cpu",
         .state = "idle",
         .rss_bytes = 3 * 1024 * 1024},
        {.rank = 1,
         .pid = 77,
         .host = "lab",
         .device = "cpu",
         .state = "in all_reduce #3 float32[4]",
         .rss_bytes = 512},
    };
    char *text = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&text, &size);
    render_ranks_table(f, info, 2, &PLAIN);
    fclose(f);
    assert_string_equal(text, "rank  host   pid  device  state                        memory\n"
                              "0     lab   4242  cpu     idle                         3.0 MiB\n"
                              "1     lab     77  cpu     in all_reduce #3 float32[4]  512 B\n");
    free(text);
}

/* A rank that used a GPU adds the GPU memory column (allocated / reserved); the others
 * show "-" there. */
static void test_ranks_table_gpu(void **state) {
    (void)state;
    rank_info info[2] = {
        {.rank = 0,
         .pid = 10,
         .host = "gpu1",
         .device = "cuda:0",
         .state = "idle",
         .rss_bytes = 2048,
         .has_gpu = true,
         .gpu_allocated = 12 * 1024 * 1024,
         .gpu_reserved = 20 * 1024 * 1024},
        {.rank = 1, .pid = 11, .host = "gpu1", .device = "cpu", .state = "idle", .rss_bytes = 512},
    };
    char *text = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&text, &size);
    render_ranks_table(f, info, 2, &PLAIN);
    fclose(f);
    assert_string_equal(
        text, "rank  host  pid  device  state  memory   gpu memory (allocated / reserved)\n"
              "0     gpu1   10  cuda:0  idle   2.0 KiB  12.0 MiB / 20.0 MiB\n"
              "1     gpu1   11  cpu     idle   512 B    -\n");
    free(text);
}

static void test_script_labels(void **state) {
    (void)state;
    char *text = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&text, &size);
    line_labeller *lab = labeller_new(12, &PLAIN, f);
    labeller_feed(lab, 2, "hel", 3);
    labeller_feed(lab, 11, "x\ny\n", 4);
    labeller_feed(lab, 2, "lo\npart", 7);
    labeller_free(lab); /* flushes "part" */
    fclose(f);
    assert_string_equal(text, "[11] x\n[11] y\n[2]  hello\n[2]  part\n");
    free(text);
    render_style one = {.labels = false};
    f = open_memstream(&text, &size);
    lab = labeller_new(1, &one, f);
    labeller_feed(lab, 0, "a\nb", 3);
    labeller_free(lab);
    fclose(f);
    assert_string_equal(text, "a\nb\n");
    free(text);
}

/* A rank that writes without newlines (io.write in a loop) is shown in pieces as it
 * comes, never held back whole: what is on the screen before the end already holds it,
 * and no piece is longer than the labeller's limit. */
static void test_script_labels_long_line(void **state) {
    (void)state;
    char *text = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&text, &size);
    line_labeller *lab = labeller_new(2, &PLAIN, f);
    char chunk[1000];
    memset(chunk, 'x', sizeof chunk);
    for (int i = 0; i < 100; i++) labeller_feed(lab, 1, chunk, sizeof chunk);
    fflush(f);
    size_t before_flush = size;
    assert_true(before_flush >= 90 * 1000); /* all but the last piece is out already */
    labeller_free(lab);
    fclose(f);
    size_t xs = 0;
    for (const char *line = text; *line;) {
        const char *nl = strchr(line, '\n');
        assert_non_null(nl);
        assert_memory_equal(line, "[1] ", 4);
        assert_true(nl - line - 4 <= 4096);
        xs += (size_t)(nl - line - 4);
        line = nl + 1;
    }
    assert_int_equal(xs, 100 * 1000); /* nothing lost */
    free(text);
}

/* Rank output cannot take over the terminal: colour stays, other escapes and control
 * characters show in caret notation, a carriage return keeps what follows it. */
static void test_control_characters_visible(void **state) {
    (void)state;
    struct {
        const char *in, *want;
    } cases[] = {
        {"\033[2Jcleared?", "^[[2Jcleared?"},
        {"\033[?1049h", "^[[?1049h"},
        {"\033[31mred\033[0m", "\033[31mred\033[0m"},
        {"bell\a", "bell^G"},
        {"10%\r20%\r30%", "30%"},
        {"done\r", "done"},
        {"a\tb\x7f", "a\tb^?"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        char *text = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&text, &len);
        render_write_visible(f, cases[k].in, strlen(cases[k].in));
        fclose(f);
        assert_string_equal(text, cases[k].want);
        free(text);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_control_characters_visible),
        cmocka_unit_test(test_ranges),
        cmocka_unit_test(test_parse_ranges),
        cmocka_unit_test(test_identical_output_collapses),
        cmocka_unit_test(test_differing_output_per_group_aligned),
        cmocka_unit_test(test_skipped_and_silent_ranks),
        cmocka_unit_test(test_error_shown_once),
        cmocka_unit_test(test_died_and_interrupted),
        cmocka_unit_test(test_death_shows_last_output_and_reasons),
        cmocka_unit_test(test_activity_line),
        cmocka_unit_test(test_world_of_one_has_no_labels),
        cmocka_unit_test(test_color_only_when_asked),
        cmocka_unit_test(test_show_columns_and_agreement),
        cmocka_unit_test(test_ranks_table),
        cmocka_unit_test(test_ranks_table_gpu),
        cmocka_unit_test(test_script_labels),
        cmocka_unit_test(test_script_labels_long_line),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
