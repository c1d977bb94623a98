/* test_runtime_launcher.c — waiting for rank processes to end (launcher_wait_exit,
 * launcher_reap, launcher_kill) on real forked children. No assertion is about durations:
 * waits are given a whole minute, so a wait that did not wake on the exit itself would
 * show up as a test stuck until ctest's timeout, and every check is about who reaped
 * what with which status. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "runtime/launcher.h"

enum { A_MINUTE_MS = 60 * 1000 };

/* A child that waits until a byte (its exit code) arrives on its pipe, then exits with it;
 * *go is the write end the test keeps. */
static pid_t child_on_cue(int *go) {
    int p[2];
    assert_int_equal(pipe(p), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(p[1]);
        unsigned char code = 99;
        ssize_t n = read(p[0], &code, 1);
        _exit(n == 1 ? code : 98);
    }
    close(p[0]);
    *go = p[1];
    return pid;
}

/* Waits with launcher_wait_exit until waitpid finds `pid` ended; returns its status. With
 * pidfds one wait is enough; where they are missing the wait is a short nap, hence the loop. */
static int wait_then_waitpid(pid_t *pids, int n, pid_t pid) {
    int status = 0;
    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        assert_true(r == 0 || r == pid);
        if (r == pid) return status;
        launcher_wait_exit(pids, n, A_MINUTE_MS);
    }
}

static void cue(int go, unsigned char code) {
    assert_int_equal(write(go, &code, 1), 1);
    close(go);
}

/* The wait wakes on the exit and leaves the reaping to the caller. */
static void test_wait_exit_wakes_on_the_exit_and_reaps_nothing(void **state) {
    (void)state;
    int go;
    pid_t pid = child_on_cue(&go);
    cue(go, 7);
    int status = wait_then_waitpid(&pid, 1, pid); /* ended, and still ours to reap */
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 7);
}

/* Among several children, one exit is enough to wake the wait; the others keep running. */
static void test_wait_exit_wakes_on_any_of_several(void **state) {
    (void)state;
    int go[3];
    pid_t pids[3];
    for (int i = 0; i < 3; i++) pids[i] = child_on_cue(&go[i]);
    cue(go[1], 1);
    int status = wait_then_waitpid(pids, 3, pids[1]);
    assert_int_equal(WEXITSTATUS(status), 1);
    assert_int_equal(waitpid(pids[0], &status, WNOHANG), 0); /* still waiting for its cue */
    assert_int_equal(waitpid(pids[2], &status, WNOHANG), 0);
    cue(go[0], 0);
    cue(go[2], 0);
    for (int i = 0; i < 3; i += 2) {
        assert_true(launcher_reap(pids[i], A_MINUTE_MS, &status));
        assert_int_equal(WEXITSTATUS(status), 0);
    }
}

/* A child that keeps running is neither reaped nor reported by a short wait. */
static void test_wait_exit_times_out_on_a_running_child(void **state) {
    (void)state;
    int go;
    pid_t pid = child_on_cue(&go);
    launcher_wait_exit(&pid, 1, 20);
    int status;
    assert_false(launcher_reap(pid, 0, &status));
    cue(go, 3);
    assert_true(launcher_reap(pid, A_MINUTE_MS, &status));
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 3);
}

/* A pid that is no longer this process's child ends the wait at once (it would otherwise
 * take the whole minute), and launcher_reap says "status unknown". */
static void test_wait_exit_returns_for_a_pid_reaped_elsewhere(void **state) {
    (void)state;
    int go;
    pid_t pid = child_on_cue(&go);
    cue(go, 0);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    launcher_wait_exit(&pid, 1, A_MINUTE_MS);
    assert_true(launcher_reap(pid, A_MINUTE_MS, &status));
    assert_int_equal(status, -1);
}

/* launcher_kill ends a running child with SIGTERM (it does not ignore it), and its status
 * says so. */
static void test_kill_ends_a_running_child(void **state) {
    (void)state;
    int go;
    pid_t pid = child_on_cue(&go);
    int status = launcher_kill(pid, A_MINUTE_MS);
    close(go);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGTERM);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wait_exit_wakes_on_the_exit_and_reaps_nothing),
        cmocka_unit_test(test_wait_exit_wakes_on_any_of_several),
        cmocka_unit_test(test_wait_exit_times_out_on_a_running_child),
        cmocka_unit_test(test_wait_exit_returns_for_a_pid_reaped_elsewhere),
        cmocka_unit_test(test_kill_ends_a_running_child),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
