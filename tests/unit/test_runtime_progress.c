/* test_runtime_progress.c — the one progress bar: it counts the slowest rank, names it
 * when the ranks are apart, fills in proportion, and a finished bar stays as a line while
 * an unfinished one is erased. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "runtime/progress_bar.h"

static int count(const char *s, const char *what) {
    int n = 0;
    for (const char *p = s; (p = strstr(p, what)); p += strlen(what)) n++;
    return n;
}

static void test_format(void **state) {
    (void)state;
    char buf[512];
    progress_bar_format(buf, sizeof buf, 60, "train", 5, 5, 10, 0);
    assert_non_null(strstr(buf, "train ▕"));
    assert_non_null(strstr(buf, "▏ 5/10"));
    assert_null(strstr(buf, "behind"));
    assert_true(abs(count(buf, "█") - count(buf, "░")) <= 1); /* half full */
    progress_bar_format(buf, sizeof buf, 60, "", 3, 9, 10, 2);
    assert_non_null(strstr(buf, " 3/10  rank 2 behind"));
    progress_bar_format(buf, sizeof buf, 60, "x", 10, 10, 10, 0);
    assert_int_equal(count(buf, "░"), 0);
}

static void test_slowest_rank_and_end(void **state) {
    (void)state;
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    progress_bar *b = progress_bar_new(3, 60, f);
    progress_bar_tick(b, 0, 4, 4, "");
    progress_bar_tick(b, 1, 1, 4, "");
    progress_bar_tick(b, 2, 4, 4, "");
    fflush(f);
    assert_non_null(strstr(text, " 1/4  rank 1 behind"));
    progress_bar_tick(b, 1, 4, 4, "");
    progress_bar_free(b);
    fclose(f);
    size_t n = strlen(text);
    assert_true(n > 0 && text[n - 1] == '\n'); /* the full bar stays */
    free(text);

    f = open_memstream(&text, &len);
    b = progress_bar_new(2, 60, f);
    progress_bar_tick(b, 0, 1, 4, "");
    progress_bar_free(b);
    fclose(f);
    n = strlen(text);
    assert_true(n >= 4 && strcmp(text + n - 4, "\r\033[K") == 0); /* an unfinished one goes */
    free(text);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format),
        cmocka_unit_test(test_slowest_rank_and_end),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
