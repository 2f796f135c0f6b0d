/* listen_dump N [v2|legacy] [STATE]: N sock_diag dumps of the TCP sockets in LISTEN (or in
 * STATE, the kernel's number: 8 is CLOSE-WAIT) on one kept netlink socket, both families
 * in one legacy TCPDIAG_GETSOCK dump as the `listening` and `sockets` checks ask (with v2:
 * one SOCK_DIAG_BY_FAMILY dump per family, IPv4 then IPv6). Nothing is filtered or parsed
 * beyond finding the end. Prints CPU per run: the kernel's floor for counting sockets in a
 * state this way (for LISTEN a walk of the listening hash, for any other state a walk of
 * every bucket of the established hash). */
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "cpu.h"

static char buf[65536];

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: listen_dump N [v2|legacy] [STATE]\n"); return 2; }
    int n = atoi(argv[1]), v2 = argc > 2 && strcmp(argv[2], "v2") == 0;
    int state = argc > 3 ? atoi(argv[3]) : 10; /* TCP_LISTEN */
    if (state < 1 || state > 11) { fprintf(stderr, "listen_dump: STATE is 1..11\n"); return 2; }
    int s = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
    if (s < 0) { perror("netlink"); return 1; }
    struct { struct nlmsghdr h; struct inet_diag_req_v2 r; } req;
    struct { struct nlmsghdr h; struct inet_diag_req r; } legacy;
    double start = 0;
    long recvs = 0;
    for (int i = 0; i < n + n / 10; i++) {
        if (i == n / 10) { start = cpu_us(); recvs = 0; }
        for (int v6 = 0; v6 < (v2 ? 2 : 1); v6++) {
            memset(&req, 0, sizeof req);
            memset(&legacy, 0, sizeof legacy);
            legacy.h.nlmsg_len = sizeof legacy;
            legacy.h.nlmsg_type = TCPDIAG_GETSOCK;
            legacy.h.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
            legacy.h.nlmsg_seq = i;
            legacy.r.idiag_states = 1u << state;
            req.h.nlmsg_len = sizeof req;
            req.h.nlmsg_type = SOCK_DIAG_BY_FAMILY;
            req.h.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
            req.h.nlmsg_seq = i;
            req.r.sdiag_family = v6 ? AF_INET6 : AF_INET;
            req.r.sdiag_protocol = IPPROTO_TCP;
            req.r.idiag_states = 1u << state;
            int sent = v2 ? send(s, &req, sizeof req, 0) : send(s, &legacy, sizeof legacy, 0);
            if (sent < 0) { perror("send"); return 1; }
            for (int done = 0; !done;) {
                int k = recv(s, buf, sizeof buf, 0);
                if (k < 0) { perror("recv"); return 1; }
                recvs++;
                for (struct nlmsghdr *h = (void *)buf; NLMSG_OK(h, k); h = NLMSG_NEXT(h, k))
                    if (h->nlmsg_type == NLMSG_DONE || h->nlmsg_type == NLMSG_ERROR) done = 1;
            }
        }
    }
    printf("cpu_per_run_us=%.2f n=%d recvs_per_run=%.2f request=%s state=%d\n",
           (cpu_us() - start) / n, n, (double)recvs / n, v2 ? "per-family" : "legacy-both-families",
           state);
    return 0;
}
