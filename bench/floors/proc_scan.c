/* proc_scan NAME N: N scans of /proc for a process named NAME, the way a `process` check
 * by name must look (issue 17): for every pid, /proc/PID/comm, then /proc/PID/cmdline
 * when comm differs (argv[0]'s base name may carry the name), then /proc/PID/stat of a
 * match; each file one open, one read, one close. Prints CPU (user+sys of this process)
 * per scan and the processes seen: the cost no scan by name can go below. */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cpu.h"

static ssize_t slurp(const char *pid, const char *file, char *buf, size_t len) {
    char path[300];
    snprintf(path, sizeof path, "/proc/%s/%s", pid, file);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t n = read(fd, buf, len);
    close(fd);
    return n;
}

int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: proc_scan NAME N\n"); return 2; }
    const char *name = argv[1];
    size_t name_len = strlen(name);
    int n = atoi(argv[2]), seen = 0, found = 0;
    double start = 0;
    char buf[4096];
    for (int i = 0; i < n + n / 10; i++) {
        if (i == n / 10) start = cpu_us(); /* the first tenth warms up */
        DIR *d = opendir("/proc");
        if (!d) return 1;
        seen = found = 0;
        struct dirent *e;
        while ((e = readdir(d))) {
            if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
            seen++;
            int match = 0;
            ssize_t k = slurp(e->d_name, "comm", buf, sizeof buf);
            if (k > 0 && buf[k - 1] == '\n') k--;
            if (k == (ssize_t)name_len && memcmp(buf, name, name_len) == 0) {
                match = 1;
            } else {
                k = slurp(e->d_name, "cmdline", buf, sizeof buf - 1);
                if (k > 0) {
                    buf[k] = 0;
                    const char *base = strrchr(buf, '/');
                    base = base ? base + 1 : buf;
                    match = strcmp(base, name) == 0;
                }
            }
            if (match && slurp(e->d_name, "stat", buf, sizeof buf) > 0) found++;
        }
        closedir(d);
    }
    printf("cpu_per_scan_us=%.1f n=%d processes=%d matches=%d\n", (cpu_us() - start) / n, n,
           seen, found);
    return 0;
}
