// pcap_read_bench: the floor for reading a capture: a bare libpcap pcap_next_ex loop over
// the whole file (opened with nanosecond timestamps, as vrouter opens it), touching every
// packet (the sum of its middle and last bytes), timed on the monotonic clock.
//
//   pcap_read_bench FILE [--repeat N]
//
// Prints one JSON object: packets, bytes and checksum (to compare with vrouter's reader)
// and the best and median rate of the timed reads (after one untimed warm-up read).

#include <pcap/pcap.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

struct tally { uint64_t packets, bytes, checksum; };

__attribute__((noinline)) static struct tally read_all(const char *path) {
    char err[PCAP_ERRBUF_SIZE];
    pcap_t *p = pcap_open_offline_with_tstamp_precision(path, PCAP_TSTAMP_PRECISION_NANO, err);
    if (!p) {
        fprintf(stderr, "pcap_read_bench: %s\n", err);
        exit(1);
    }
    struct tally t = {0, 0, 0};
    struct pcap_pkthdr *h;
    const u_char *data;
    int r;
    while ((r = pcap_next_ex(p, &h, &data)) == 1) {
        t.packets++;
        t.bytes += h->caplen;
        if (h->caplen) t.checksum += (uint64_t)data[h->caplen / 2] + data[h->caplen - 1];
    }
    if (r != PCAP_ERROR_BREAK) {
        fprintf(stderr, "pcap_read_bench: %s: %s\n", path, pcap_geterr(p));
        exit(1);
    }
    pcap_close(p);
    return t;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: pcap_read_bench FILE [--repeat N]\n");
        return 2;
    }
    int repeat = 5;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--repeat") && i + 1 < argc) repeat = atoi(argv[++i]);
        else { fprintf(stderr, "pcap_read_bench: unknown argument %s\n", argv[i]); return 2; }
    }
    if (repeat < 1 || repeat > 1000) { fprintf(stderr, "pcap_read_bench: --repeat must be 1...1000\n"); return 2; }
    struct tally t = read_all(argv[1]);
    double *s = calloc((size_t)repeat, sizeof *s);
    for (int r = 0; r < repeat; r++) {
        double a = now();
        struct tally u = read_all(argv[1]);
        s[r] = now() - a;
        if (u.packets != t.packets || u.checksum != t.checksum) { fprintf(stderr, "pcap_read_bench: reads differ\n"); return 1; }
    }
    qsort(s, (size_t)repeat, sizeof *s, cmp_double);
    double best = s[0], med = repeat % 2 ? s[repeat / 2] : (s[repeat / 2 - 1] + s[repeat / 2]) / 2;
    double n = (double)t.packets;
    printf("{\"packets\":%llu,\"bytes\":%llu,\"checksum\":%llu,\"libpcap_mpps\":%.3f,\"libpcap_mpps_median\":%.3f,"
           "\"libpcap_ns_per_packet\":%.3f}\n",
           (unsigned long long)t.packets, (unsigned long long)t.bytes, (unsigned long long)t.checksum,
           n / best / 1e6, n / med / 1e6, best * 1e9 / (n > 0 ? n : 1));
    return 0;
}
