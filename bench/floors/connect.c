/* connect PORT N [rst]: N blocking TCP connects to 127.0.0.1:PORT, each closed at once
 * (with rst: SO_LINGER 0, a reset instead of FIN). Prints CPU (user+sys of this process)
 * per connect+close: the kernel's cost of a loopback handshake and close, which a `tcp`
 * check cannot go below. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "cpu.h"

int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: connect PORT N [rst]\n"); return 2; }
    int n = atoi(argv[2]), rst = argc > 3 && strcmp(argv[3], "rst") == 0;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[1])),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    double start = 0;
    for (int i = 0; i < n + n / 10; i++) {
        if (i == n / 10) start = cpu_us(); /* the first tenth warms up */
        int s = socket(AF_INET, SOCK_STREAM, 0);
        if (rst) {
            struct linger l = {1, 0};
            setsockopt(s, SOL_SOCKET, SO_LINGER, &l, sizeof l);
        }
        if (connect(s, (struct sockaddr *)&a, sizeof a) != 0) { perror("connect"); return 1; }
        close(s);
    }
    printf("cpu_per_run_us=%.2f n=%d close=%s\n", (cpu_us() - start) / n, n, rst ? "rst" : "fin");
    return 0;
}
