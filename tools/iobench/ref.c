// C reference for the port-layer speed measurements (vrouter-iobench --ref): the same
// kernel interfaces and the same batching as VRouterIO's IOLoop, without Swift, so the
// numbers say how much of a rate is the kernel's and how much is ours (goal G16).
//
//   ref MODE IFNAME CPU SECONDS
//   tap-rx       io_uring READ_FIXED, 32 reads outstanding, re-armed per completion
//   tap-tx       io_uring WRITE_FIXED, batches of 256 64-byte frames
//   tap-reflect  reads, each written back to the tap when read (RX+TX)
//   tap-rw-rx    plain read() per frame (one syscall per packet)
//   tap-rw-tx    plain write() per frame
//   af-rx        TPACKET_V3 RX ring walked from user space, poll() when empty, each frame
//                copied into a buffer (as IOLoop copies into the pool)
//   af-tx        TPACKET_V3 TX ring, 256 frames then send(NULL, 0, MSG_DONTWAIT)
//   *-drain      (tap-rx, tap-reflect, af-rx) capacity without a generator in the way:
//                set up, print "ready", wait for a line on stdin (meanwhile the caller
//                fills the tap queue / RX ring), then drain until 200 ms pass without a
//                frame; rate and CPU are over first-to-last frame
// The tap is attached by name (it must exist, persistent); the AF_PACKET socket binds
// IFNAME. Run it inside the right namespace (ip netns exec). Prints one line:
//   packets=N seconds=S mpps=R cpu=C   (cpu: process CPU seconds, user+sys)
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <linux/if_packet.h>
#include <linux/if_tun.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BUF 2048
#define NBUF 4096
#define BATCH 256
#define READS 32

static double now(clockid_t c) {
    struct timespec ts;
    clock_gettime(c, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *what) {
    perror(what);
    exit(1);
}

static int tap_attach(const char *name) {
    int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) die("open /dev/net/tun");
    struct ifreq ifr = {0};
    strncpy(ifr.ifr_name, name, IFNAMSIZ - 1);
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
    if (ioctl(fd, TUNSETIFF, &ifr) < 0) die("TUNSETIFF");
    return fd;
}

static void frame64(uint8_t *p) {
    static const uint8_t f[64] = {
        0x02, 0x00, 0x5e, 0x99, 0x00, 0x01, 0x02, 0x00, 0x5e, 0x99, 0x00, 0x02, 0x08, 0x00,
        0x45, 0x00, 0x00, 0x32, 0x00, 0x00, 0x00, 0x00, 0x40, 0x11, 0x00, 0x00,
        198, 18, 0, 1, 198, 18, 0, 2, 0x9c, 0x40, 0x00, 0x09, 0x00, 0x1e, 0x00, 0x00};
    memcpy(p, f, 64);
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: ref MODE IFNAME CPU SECONDS\n");
        return 2;
    }
    const char *mode = argv[1], *ifname = argv[2];
    int cpu = atoi(argv[3]);
    double seconds = atof(argv[4]);
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof set, &set) < 0) die("sched_setaffinity");

    uint8_t *mem = aligned_alloc(4096, (size_t)NBUF * BUF);
    memset(mem, 0, (size_t)NBUF * BUF);
    for (int i = 0; i < NBUF; i++) frame64(mem + (size_t)i * BUF);
    unsigned long long packets = 0;
    char m[32];
    snprintf(m, sizeof m, "%s", mode);
    char *suffix = strstr(m, "-drain");
    int drain = suffix != NULL;
    if (drain) *suffix = 0;
    mode = m;
    double t0 = now(CLOCK_MONOTONIC), c0 = now(CLOCK_PROCESS_CPUTIME_ID), end = t0 + seconds;
    double last = 0, clast = 0;  // drain: time and CPU at the last frame
#define READY_GO()                                                           \
    do {                                                                     \
        if (drain) {                                                         \
            char line[16];                                                   \
            printf("ready\n");                                               \
            fflush(stdout);                                                  \
            if (!fgets(line, sizeof line, stdin)) exit(1);                   \
            t0 = now(CLOCK_MONOTONIC);                                       \
            c0 = now(CLOCK_PROCESS_CPUTIME_ID);                              \
            end = t0 + 3600;                                                 \
            last = t0;                                                       \
            clast = c0;                                                      \
        }                                                                    \
    } while (0)
#define DRAIN_TICK(got)                                                      \
    do {                                                                     \
        if (drain) {                                                         \
            double tn = now(CLOCK_MONOTONIC);                                \
            if (got) { last = tn; clast = now(CLOCK_PROCESS_CPUTIME_ID); }   \
            else if (packets > 0 && tn - last > 0.2) end = 0;                \
            else if (packets == 0 && tn - t0 > 5) end = 0;                   \
        }                                                                    \
    } while (0)

    if (!strncmp(mode, "tap-", 4)) {
        int fd = tap_attach(ifname);
        if (!strcmp(mode, "tap-rw-rx") || !strcmp(mode, "tap-rw-tx")) {
            int rx = !strcmp(mode, "tap-rw-rx");
            if (rx) {
                struct pollfd p = {fd, POLLIN, 0};
                while (now(CLOCK_MONOTONIC) < end) {
                    for (int i = 0; i < BATCH; i++) {
                        ssize_t n = read(fd, mem, BUF);
                        if (n > 0) packets++;
                        else if (errno == EAGAIN) { poll(&p, 1, 10); break; }
                    }
                }
            } else {
                while (now(CLOCK_MONOTONIC) < end)
                    for (int i = 0; i < BATCH; i++)
                        if (write(fd, mem, 64) == 64) packets++;
            }
        } else {
            struct io_uring ring;
            struct io_uring_params pr = {0};
            pr.flags = IORING_SETUP_CQSIZE | IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SUBMIT_ALL;
            pr.cq_entries = 8192;
            if (io_uring_queue_init_params(1024, &ring, &pr) < 0) die("io_uring_queue_init");
            struct iovec iov = {mem, (size_t)NBUF * BUF};
            if (io_uring_register_buffers(&ring, &iov, 1) < 0) die("register_buffers");
            int reflect = !strcmp(mode, "tap-reflect");
            if (!strcmp(mode, "tap-rx") || reflect) {
                for (int i = 0; i < READS; i++) {
                    struct io_uring_sqe *s = io_uring_get_sqe(&ring);
                    io_uring_prep_read_fixed(s, fd, mem + (size_t)i * BUF, BUF, 0, 0);
                    io_uring_sqe_set_data64(s, (uint64_t)i);
                }
                READY_GO();
                io_uring_submit(&ring);
                struct __kernel_timespec ts = {0, 10000000};
                while (now(CLOCK_MONOTONIC) < end) {
                    struct io_uring_cqe *cqe;
                    io_uring_submit_and_wait_timeout(&ring, &cqe, 1, &ts, NULL);
                    unsigned head, seen = 0;
                    io_uring_for_each_cqe(&ring, head, cqe) {
                        uint64_t d = cqe->user_data;
                        int i = (int)(d & 0xffff);
                        seen++;
                        struct io_uring_sqe *s = io_uring_get_sqe(&ring);
                        if (d >> 32) {  // a reflected write finished: read into the buffer again
                            io_uring_prep_read_fixed(s, fd, mem + (size_t)i * BUF, BUF, 0, 0);
                            io_uring_sqe_set_data64(s, (uint64_t)i);
                        } else if (cqe->res > 0) {
                            packets++;
                            if (reflect) {
                                io_uring_prep_write_fixed(s, fd, mem + (size_t)i * BUF, cqe->res, 0, 0);
                                io_uring_sqe_set_data64(s, (1ull << 32) | (uint64_t)i);
                            } else {
                                io_uring_prep_read_fixed(s, fd, mem + (size_t)i * BUF, BUF, 0, 0);
                                io_uring_sqe_set_data64(s, (uint64_t)i);
                            }
                        } else {
                            io_uring_prep_read_fixed(s, fd, mem + (size_t)i * BUF, BUF, 0, 0);
                            io_uring_sqe_set_data64(s, (uint64_t)i);
                        }
                    }
                    io_uring_cq_advance(&ring, seen);
                    DRAIN_TICK(seen > 0);
                }
            } else {  // tap-tx
                unsigned inflight = 0;
                while (now(CLOCK_MONOTONIC) < end) {
                    for (int i = 0; i < BATCH && inflight < NBUF; i++, inflight++) {
                        struct io_uring_sqe *s = io_uring_get_sqe(&ring);
                        if (!s) { io_uring_submit(&ring); s = io_uring_get_sqe(&ring); }
                        io_uring_prep_write_fixed(s, fd, mem + (size_t)(i % NBUF) * BUF, 64, 0, 0);
                    }
                    io_uring_submit(&ring);
                    struct io_uring_cqe *cqe;
                    unsigned head, seen = 0;
                    io_uring_for_each_cqe(&ring, head, cqe) {
                        seen++;
                        if (cqe->res > 0) packets++;
                    }
                    io_uring_cq_advance(&ring, seen);
                    inflight -= seen;
                }
            }
        }
    } else if (!strncmp(mode, "af-", 3)) {
        int rx = !strcmp(mode, "af-rx");
        int fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0);
        if (fd < 0) die("socket");
        int v = TPACKET_V3, one = 1;
        if (setsockopt(fd, SOL_PACKET, PACKET_VERSION, &v, sizeof v) < 0) die("PACKET_VERSION");
        setsockopt(fd, SOL_PACKET, PACKET_LOSS, &one, sizeof one);
        setsockopt(fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof one);
        struct tpacket_req3 req = {0};
        size_t len;
        if (rx) {  // same geometry as AFPacketPort's defaults
            req.tp_block_size = 256 * 1024;
            req.tp_block_nr = 32;
            req.tp_frame_size = 2048;
            req.tp_frame_nr = req.tp_block_size / 2048 * req.tp_block_nr;
            req.tp_retire_blk_tov = drain ? 100 : 1;  // drain: blocks retire full, the burst fits
            if (setsockopt(fd, SOL_PACKET, PACKET_RX_RING, &req, sizeof req) < 0) die("PACKET_RX_RING");
        } else {
            req.tp_block_size = 65536;
            req.tp_block_nr = 32;
            req.tp_frame_size = 2048;
            req.tp_frame_nr = 32 * 32;
            if (setsockopt(fd, SOL_PACKET, PACKET_TX_RING, &req, sizeof req) < 0) die("PACKET_TX_RING");
            setsockopt(fd, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof one);
        }
        len = (size_t)req.tp_block_size * req.tp_block_nr;
        uint8_t *map = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0);
        if (map == MAP_FAILED) die("mmap");
        struct sockaddr_ll sll = {0};
        sll.sll_family = AF_PACKET;
        sll.sll_protocol = rx ? htons(ETH_P_ALL) : 0;
        sll.sll_ifindex = if_nametoindex(ifname);
        if (bind(fd, (struct sockaddr *)&sll, sizeof sll) < 0) die("bind");
        if (rx) {
            unsigned block = 0, nb = 0;
            struct pollfd p = {fd, POLLIN, 0};
            READY_GO();
            while (now(CLOCK_MONOTONIC) < end) {
                struct tpacket_block_desc *d = (void *)(map + (size_t)block * req.tp_block_size);
                if (!(__atomic_load_n(&d->hdr.bh1.block_status, __ATOMIC_ACQUIRE) & TP_STATUS_USER)) {
                    DRAIN_TICK(0);
                    poll(&p, 1, 10);
                    continue;
                }
                struct tpacket3_hdr *h = (void *)((uint8_t *)d + d->hdr.bh1.offset_to_first_pkt);
                for (unsigned i = 0; i < d->hdr.bh1.num_pkts; i++) {
                    memcpy(mem + (size_t)(nb++ % NBUF) * BUF + 128, (uint8_t *)h + h->tp_mac, h->tp_snaplen);
                    packets++;
                    h = (void *)((uint8_t *)h + h->tp_next_offset);
                }
                __atomic_store_n(&d->hdr.bh1.block_status, TP_STATUS_KERNEL, __ATOMIC_RELEASE);
                block = (block + 1) % req.tp_block_nr;
                DRAIN_TICK(1);
            }
        } else {
            unsigned head = 0, frames = req.tp_frame_nr;
            while (now(CLOCK_MONOTONIC) < end) {
                for (int i = 0; i < BATCH; i++) {
                    struct tpacket3_hdr *h = (void *)(map + (size_t)head * req.tp_frame_size);
                    if (__atomic_load_n(&h->tp_status, __ATOMIC_ACQUIRE) != TP_STATUS_AVAILABLE) break;
                    memcpy((uint8_t *)h + TPACKET3_HDRLEN - sizeof(struct sockaddr_ll), mem + (size_t)i * BUF, 64);
                    h->tp_next_offset = 0;
                    h->tp_len = h->tp_snaplen = 64;
                    __atomic_store_n(&h->tp_status, TP_STATUS_SEND_REQUEST, __ATOMIC_RELEASE);
                    head = (head + 1) % frames;
                    packets++;
                }
                send(fd, NULL, 0, MSG_DONTWAIT);
            }
        }
    } else {
        fprintf(stderr, "unknown mode %s\n", mode);
        return 2;
    }
    double t = now(CLOCK_MONOTONIC) - t0, c = now(CLOCK_PROCESS_CPUTIME_ID) - c0;
    if (drain) {
        t = last - t0;
        c = clast - c0;
    }
    printf("packets=%llu seconds=%.6f mpps=%.4f cpu=%.6f\n", packets, t, packets / t / 1e6, c);
    return 0;
}
