/* spawn PROGRAM N [epoll]: N runs of PROGRAM (no arguments) the way vigil's one spawn
 * site runs an `exec` check, with no logic around it: the kernel's floor for that check.
 *
 *   plain  two pipes (stdout, stderr), posix_spawn (glibc: clone3 with CLONE_VM |
 *          CLONE_VFORK) with its own process group, stdin from a kept /dev/null and the
 *          pipes as stdout and stderr; a pidfd; poll on the pidfd until the leader exits;
 *          a read of each pipe (EOF); SIGKILL to the group while the leader is unreaped
 *          (vigil's Leftovers::Kill); waitid on the pidfd to reap; closes
 *   epoll  the same with the waiting done as a runtime does it: the pidfd and both pipes
 *          added to a kept epoll set (edge-triggered, as tokio registers them),
 *          epoll_wait until the pidfd is ready, and removed again
 *
 * Prints CPU (user+sys of this process, not the child's) per run, read around the whole
 * loop, as vigil-bench-checks counts vigil's side of an `exec` check. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cpu.h"

extern char **environ;

static int run(const char *program, int devnull, int ep) {
    int out[2], err[2];
    if (pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0) return -1;
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, devnull, 0);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    posix_spawn_file_actions_adddup2(&fa, err[1], 2);
    posix_spawnattr_init(&attr);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
    posix_spawnattr_setpgroup(&attr, 0);
    char *argv[] = {(char *)program, NULL};
    pid_t pid;
    int rc = posix_spawn(&pid, program, &fa, &attr, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    close(out[1]);
    close(err[1]);
    if (rc != 0) return -1;
    int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (pidfd < 0) return -1;
    if (ep >= 0) {
        int fds[3] = {pidfd, out[0], err[0]};
        for (int i = 0; i < 3; i++) {
            struct epoll_event ev = {.events = EPOLLIN | EPOLLET, .data.fd = fds[i]};
            epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &ev);
        }
        struct epoll_event got[3];
        for (int exited = 0; !exited;) {
            int n = epoll_wait(ep, got, 3, -1);
            for (int i = 0; i < n; i++) exited |= got[i].data.fd == pidfd;
        }
        for (int i = 0; i < 3; i++) epoll_ctl(ep, EPOLL_CTL_DEL, fds[i], NULL);
    } else {
        struct pollfd p = {.fd = pidfd, .events = POLLIN};
        while (poll(&p, 1, -1) != 1) {}
    }
    char buf[4096];
    while (read(out[0], buf, sizeof buf) > 0) {}
    while (read(err[0], buf, sizeof buf) > 0) {}
    kill(-pid, SIGKILL);
    siginfo_t info;
    if (waitid(P_PIDFD, pidfd, &info, WEXITED) != 0) return -1;
    close(pidfd);
    close(out[0]);
    close(err[0]);
    return info.si_code == CLD_EXITED && info.si_status == 0 ? 0 : 1;
}

int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: spawn PROGRAM N [epoll]\n"); return 2; }
    int n = atoi(argv[2]), use_epoll = argc > 3 && strcmp(argv[3], "epoll") == 0;
    int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
    int ep = use_epoll ? epoll_create1(EPOLL_CLOEXEC) : -1;
    if (devnull < 0 || (use_epoll && ep < 0)) { perror("setup"); return 1; }
    int failed = 0;
    double start = 0;
    for (int i = 0; i < n + n / 10; i++) {
        if (i == n / 10) start = cpu_us(); /* the first tenth warms up */
        int rc = run(argv[1], devnull, ep);
        if (rc < 0) { perror("spawn"); return 1; }
        failed += i >= n / 10 && rc != 0;
    }
    printf("cpu_per_run_us=%.2f n=%d failed=%d wait=%s\n", (cpu_us() - start) / n, n, failed,
           use_epoll ? "epoll" : "poll");
    return 0;
}
