/* acceptor PORT_FILE: listens on 127.0.0.1 (port 0, backlog 4096), writes the port to
 * PORT_FILE, then accepts every connection until killed. The `tcp` floor and vigil's
 * `tcp` probe connect to it: a listener that spawns a thread per connection (the bench
 * sink) falls behind on a fast host, its accept queue overflows, and the SYNs it drops
 * come back only after the 1 s retransmit, which stalls the measured loop.
 *
 * A connection is closed only KEEP accepts later, when its client (which connects and
 * closes one connection at a time) has long closed it: the client closes first, as it
 * does against a real server, so the TIME_WAIT is the client's. Closing at once made
 * the server close first, and the next SYNs to its TIME_WAIT sockets cost the clients
 * 5x the CPU and millisecond stalls. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: acceptor PORT_FILE\n"); return 2; }
    int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof a) != 0 || listen(l, 4096) != 0 ||
        getsockname(l, (struct sockaddr *)&a, &len) != 0) {
        perror("listen");
        return 1;
    }
    FILE *f = fopen(argv[1], "w");
    if (!f || fprintf(f, "%d\n", ntohs(a.sin_port)) < 0 || fclose(f) != 0) {
        perror(argv[1]);
        return 1;
    }
    enum { KEEP = 256 };
    int kept[KEEP];
    for (int i = 0; i < KEEP; i++) kept[i] = -1;
    for (unsigned long n = 0;; n++) {
        int c = accept4(l, NULL, NULL, SOCK_CLOEXEC);
        if (c < 0) continue;
        if (kept[n % KEEP] >= 0) close(kept[n % KEEP]);
        kept[n % KEEP] = c;
    }
}
