// New TCP connections per second through a NAT (tools/compare-kernel's cps figure).
//
//   conn_rate server ADDRESS PORT            accepts and closes connections until killed
//   conn_rate client ADDRESS PORT SECONDS [CONCURRENT]
//                                            prints {"connections":N,"seconds":S,"cps":R,
//                                            "failures":F} after SECONDS
//
// The client keeps CONCURRENT (default 64) non-blocking connects in flight; each one that
// completes its handshake counts and is closed at once with an RST (SO_LINGER 0), so
// neither end keeps a TIME_WAIT and the client's ports cycle freely: what limits the rate
// is the path's connection setup (the NAT's new-flow work), not the endpoints' port
// space. A connect that fails (refused, reset, timed out after 1 s) counts as a failure.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int server(struct sockaddr_in *a) {
    int l = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (l < 0 || bind(l, (struct sockaddr *)a, sizeof *a) < 0 || listen(l, 4096) < 0) {
        perror("conn_rate server");
        return 1;
    }
    printf("listening\n");
    fflush(stdout);
    for (;;) {
        int c = accept4(l, NULL, NULL, SOCK_CLOEXEC);
        if (c >= 0) close(c);
    }
}

struct slot {
    int fd;
    double started;
};

static int open_one(struct sockaddr_in *a, int ep, struct slot *s, int i) {
    s->fd = -1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    struct linger lg = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    int r = connect(fd, (struct sockaddr *)a, sizeof *a);
    if (r < 0 && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    struct epoll_event ev = {.events = EPOLLOUT, .data.u32 = (uint32_t)i};
    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    s->fd = fd;
    s->started = now();
    return 0;
}

static int client(struct sockaddr_in *a, double seconds, int concurrent) {
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct slot *slots = calloc(concurrent, sizeof *slots);
    long done = 0, failures = 0;
    double t0 = now(), end = t0 + seconds;
    for (int i = 0; i < concurrent; i++)
        if (open_one(a, ep, &slots[i], i) < 0) failures++;
    // Slots whose socket could not be made are retried on the next round.
    struct epoll_event evs[256];
    while (now() < end) {
        int n = epoll_wait(ep, evs, 256, 10);
        for (int k = 0; k < n; k++) {
            int i = (int)evs[k].data.u32;
            if (slots[i].fd < 0) continue;
            int err = 0;
            socklen_t len = sizeof err;
            getsockopt(slots[i].fd, SOL_SOCKET, SO_ERROR, &err, &len);
            if (err == 0) done++; else failures++;
            close(slots[i].fd);  // RST: SO_LINGER 0
            if (open_one(a, ep, &slots[i], i) < 0) failures++;
        }
        double t = now();
        for (int i = 0; i < concurrent; i++) {
            if (slots[i].fd < 0) {
                if (open_one(a, ep, &slots[i], i) < 0) failures++;
                continue;
            }
            if (slots[i].fd >= 0 && t - slots[i].started > 1.0) {
                close(slots[i].fd);
                failures++;
                if (open_one(a, ep, &slots[i], i) < 0) failures++;
            }
        }
    }
    double took = now() - t0;
    printf("{\"connections\":%ld,\"seconds\":%.3f,\"cps\":%.0f,\"failures\":%ld}\n", done, took, done / took, failures);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: conn_rate server ADDRESS PORT | client ADDRESS PORT SECONDS [CONCURRENT]\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[3]))};
    if (inet_pton(AF_INET, argv[2], &a.sin_addr) != 1) {
        fprintf(stderr, "conn_rate: %s is not an IPv4 address\n", argv[2]);
        return 2;
    }
    if (strcmp(argv[1], "server") == 0) return server(&a);
    if (strcmp(argv[1], "client") == 0 && argc >= 5)
        return client(&a, atof(argv[4]), argc > 5 ? atoi(argv[5]) : 64);
    fprintf(stderr, "conn_rate: unknown mode %s\n", argv[1]);
    return 2;
}
