/* pid_file PIDFILE N [guarded]: N reads of a pid file and of the named process's
 * /proc/PID/stat, the work of a `process` check by pid_file with no limits (issue 17).
 *
 *   plain    open + read + close of the pid file, then pread at offset 0 of a
 *            /proc/PID/stat kept open: the fewest system calls that answer the check,
 *            safe only if the pid file can never sit on a hung filesystem
 *   guarded  the same, with the guards vigil's cached_fs keeps on the runtime thread:
 *            openat2(O_PATH, RESOLVE_CACHED), name_to_handle_at for the mount id, a poll
 *            of mountinfo, statx for the file type, a reopen through a kept
 *            /proc/thread-self/fd, preadv2(RWF_NOWAIT), two closes
 *
 * Prints CPU (user+sys of this process) per run, read around the whole loop, so this
 * floor carries none of the per-run clock reads that vigil-bench-checks pays. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
#include <linux/openat2.h>

#include "cpu.h"

int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: pid_file PIDFILE N [guarded]\n"); return 2; }
    const char *path = argv[1];
    int n = atoi(argv[2]);
    int guarded = argc > 3 && strcmp(argv[3], "guarded") == 0;
    char buf[256], statbuf[2048], name[32];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t k = fd < 0 ? -1 : read(fd, buf, sizeof buf - 1);
    if (k <= 0) { perror(path); return 1; }
    close(fd);
    buf[k] = 0;
    char statpath[64];
    snprintf(statpath, sizeof statpath, "/proc/%d/stat", atoi(buf));
    int stat_fd = open(statpath, O_RDONLY | O_CLOEXEC);
    int table = open("/proc/thread-self/mountinfo", O_RDONLY | O_CLOEXEC);
    int fds = open("/proc/thread-self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (stat_fd < 0 || table < 0 || fds < 0) { perror("open"); return 1; }
    struct open_how how = {.flags = O_PATH | O_CLOEXEC, .resolve = RESOLVE_CACHED};
    long failed = 0;
    double start = 0;
    for (int i = 0; i < n + n / 10; i++) {
        if (i == n / 10) start = cpu_us(); /* the first tenth warms up */
        if (guarded) {
            int located = syscall(SYS_openat2, AT_FDCWD, path, &how, sizeof how);
            if (located < 0) { failed++; continue; }
            struct { struct file_handle h; } fh = {.h = {.handle_bytes = 0}};
            int mnt = -1;
            name_to_handle_at(located, "", &fh.h, &mnt, AT_EMPTY_PATH);
            struct pollfd p = {.fd = table, .events = POLLPRI};
            poll(&p, 1, 0);
            struct statx st;
            statx(located, "", AT_EMPTY_PATH, STATX_TYPE, &st);
            snprintf(name, sizeof name, "%d", located);
            int file = openat(fds, name, O_RDONLY | O_CLOEXEC | O_NOATIME | O_NOCTTY);
            close(located);
            if (file < 0) { failed++; continue; }
            struct iovec v = {.iov_base = buf, .iov_len = sizeof buf};
            k = preadv2(file, &v, 1, 0, RWF_NOWAIT);
            close(file);
        } else {
            int file = open(path, O_RDONLY | O_CLOEXEC);
            if (file < 0) { failed++; continue; }
            k = read(file, buf, sizeof buf);
            close(file);
        }
        if (k <= 0 || pread(stat_fd, statbuf, sizeof statbuf, 0) <= 0) failed++;
    }
    printf("cpu_per_run_us=%.2f n=%d failed=%ld\n", (cpu_us() - start) / n, n, failed);
    return failed != 0;
}
