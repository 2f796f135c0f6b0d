/* keepalive PORT CONNS RATE SECONDS TICK_S: GETs over CONNS keep-alive connections to
 * 127.0.0.1:PORT, RATE a second, sent in bursts every TICK_S seconds (0.01: ten a burst
 * at 1,000/s, as vigil's 10 ms check grid), responses read as epoll reports them (one
 * read: the sink's answers are small). Prints CPU per request: what the system calls and
 * the loopback TCP path of a keep-alive check cost a client with no logic at all. */
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static double cpu_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc < 6) { fprintf(stderr, "usage: keepalive PORT CONNS RATE SECONDS TICK_S\n"); return 2; }
    int port = atoi(argv[1]), n = atoi(argv[2]), rate = atoi(argv[3]);
    double secs = atof(argv[4]), tick_s = atof(argv[5]);
    int per_tick = (int)(rate * tick_s + 0.5);
    int *fd = malloc(n * sizeof(int));
    int ep = epoll_create1(0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    for (int i = 0; i < n; i++) {
        fd[i] = socket(AF_INET, SOCK_STREAM, 0);
        if (connect(fd[i], (struct sockaddr *)&a, sizeof a) != 0) { perror("connect"); return 1; }
        int one = 1;
        setsockopt(fd[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct epoll_event e = {.events = EPOLLIN, .data.u32 = i};
        epoll_ctl(ep, EPOLL_CTL_ADD, fd[i], &e);
    }
    char req[256], buf[4096];
    long answered = 0, next = 0;
    double t0 = now_s(), c0 = cpu_s(), tick = t0;
    while (now_s() - t0 < secs) {
        double wait = tick - now_s();
        struct epoll_event ev[64];
        int k = epoll_wait(ep, ev, 64, wait > 0 ? (int)(wait * 1000) + 1 : 0);
        for (int j = 0; j < k; j++) {
            if (recv(fd[ev[j].data.u32], buf, sizeof buf, 0) <= 0) { fprintf(stderr, "closed\n"); return 1; }
            answered++;
        }
        if (now_s() >= tick) {
            for (int j = 0; j < per_tick; j++, next++) {
                int i = next % n;
                int len = snprintf(req, sizeof req,
                                   "GET /c%d HTTP/1.1\r\nhost: 127.0.0.1:%d\r\naccept: */*\r\n"
                                   "user-agent: floor\r\n\r\n", i, port);
                send(fd[i], req, len, 0);
            }
            tick += tick_s;
        }
    }
    printf("cpu_per_request_us=%.2f answered=%ld tick_s=%g\n", (cpu_s() - c0) / answered * 1e6,
           answered, tick_s);
    return 0;
}
