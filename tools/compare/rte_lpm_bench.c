// rte_lpm_bench: DPDK's rte_lpm (DIR-24-8) on the route table and keys that
// `vrouter-perf lpm --out DIR` wrote, timed the same way, and checked key by key against
// vrouter's answers: the check is what proves both sides ran the same table.
//
//   rte_lpm_bench DIR [--repeat N | --interactive] [--batch B] [--no-thp]
//
// DIR holds arrays of host-order uint32: routes.bin ({address, length, next hop} per
// route), keys.bin, expect.bin (vrouter's answer per key, 0xFFFFFFFF = no route) and
// expect-dep.bin (vrouter's answer per step of the dependent chain: step i looks up
// keys[i] ^ (answer[i-1] & 1)). Prints one JSON object; exits 3 if any answer differs.
//
// EAL runs without hugetlbfs, devices or shared config (--no-huge --no-pci --no-shconf),
// so it needs no setup. Production DPDK backs tbl24 (64 MiB) with huge pages; without them
// every random lookup would also pay a page walk. EAL's --no-huge memory is a memfd, which
// transparent huge pages don't back (shmem_enabled is usually "never"), so the table lives
// in an external malloc heap on anonymous memory marked MADV_HUGEPAGE instead; the JSON
// says how much the kernel actually backed with huge pages. --no-thp measures 4 KiB pages.

#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>

#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_lpm.h>
#include <rte_malloc.h>
#include <rte_memory.h>

#define MISS 0xFFFFFFFFu

static void die(const char *fmt, const char *arg) {
    fprintf(stderr, "rte_lpm_bench: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n");
    exit(1);
}

// Reads a whole file of uint32 words; *count gets the number of words.
static uint32_t *read_words(const char *dir, const char *name, size_t *count) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (!f) die("cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    if (size < 0 || size % 4 != 0) die("%s: size is not a whole number of words", path);
    uint32_t *words = malloc(size ? (size_t)size : 4);
    if (!words) die("out of memory reading %s", path);
    if (size && fread(words, 1, (size_t)size, f) != (size_t)size) die("%s: short read", path);
    fclose(f);
    *count = (size_t)size / 4;
    return words;
}

// EAL makes a runtime directory even with --no-shconf; it is empty when we exit.
static char runtime_dir[4096];
static void remove_runtime_dir(void) {
    if (runtime_dir[0]) rmdir(runtime_dir);
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static double best(const double *v, int n) {
    double b = v[0];
    for (int i = 1; i < n; i++) if (v[i] < b) b = v[i];
    return b;
}

static long anon_huge_kib(void) {
    FILE *f = fopen("/proc/self/smaps_rollup", "r");
    if (!f) return -1;
    char line[256];
    long kib = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "AnonHugePages: %ld kB", &kib) == 1) break;
    fclose(f);
    return kib;
}

// The lookups being timed. noinline keeps each a separate, comparable loop.
#define FRAME 256

__attribute__((noinline)) static void bulk(const struct rte_lpm *lpm, const uint32_t *keys, uint32_t *res,
                                           size_t n, unsigned batch) {
    size_t i = 0;
    if (batch == FRAME) {
        // A compile-time batch, as rte_lpm.h asks for best performance.
        for (; i + FRAME <= n; i += FRAME) rte_lpm_lookup_bulk(lpm, keys + i, res + i, FRAME);
    }
    for (; i < n; i += batch) {
        unsigned c = n - i < batch ? (unsigned)(n - i) : batch;
        rte_lpm_lookup_bulk(lpm, keys + i, res + i, c);
    }
}

__attribute__((noinline)) static void x4(const struct rte_lpm *lpm, const uint32_t *keys, uint32_t *res, size_t n) {
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        xmm_t ip = _mm_loadu_si128((const __m128i *)(keys + i));
        rte_lpm_lookupx4(lpm, ip, res + i, MISS);
    }
    for (; i < n; i++) {
        uint32_t nh;
        res[i] = rte_lpm_lookup(lpm, keys[i], &nh) == 0 ? nh : MISS;
    }
}

__attribute__((noinline)) static void dependent(const struct rte_lpm *lpm, const uint32_t *keys, uint32_t *res,
                                                size_t n) {
    uint32_t prev = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t nh;
        int ret = rte_lpm_lookup(lpm, keys[i] ^ (prev & 1), &nh);
        // Branch-free, so the chain costs the lookup and not a mispredicted miss test.
        prev = nh | (0u - (uint32_t)(ret != 0));
        res[i] = prev;
    }
}

// Compares answers; prints the first few differences. Returns the number of differences.
static size_t check(const char *what, const uint32_t *keys, const uint32_t *got, const uint32_t *want, size_t n,
                    int chained) {
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t key = chained && i > 0 ? keys[i] ^ (want[i - 1] & 1) : keys[i];
        if (got[i] != want[i]) {
            if (bad < 10)
                fprintf(stderr, "rte_lpm_bench: %s: key %zu (%u.%u.%u.%u): rte_lpm says %" PRId64 ", vrouter says %" PRId64 "\n",
                        what, i, key >> 24, key >> 16 & 255, key >> 8 & 255, key & 255,
                        got[i] == MISS ? (int64_t)-1 : (int64_t)got[i], want[i] == MISS ? (int64_t)-1 : (int64_t)want[i]);
            bad++;
        }
    }
    return bad;
}

int main(int argc, char **argv) {
    if (argc < 2 || argv[1][0] == '-') {
        fprintf(stderr, "usage: rte_lpm_bench DIR [--repeat N | --interactive] [--batch B] [--no-thp]\n");
        return 2;
    }
    const char *dir = argv[1];
    int repeat = 5;
    unsigned batch = FRAME;
    int thp = 1;
    int interactive = 0;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--repeat") && i + 1 < argc) repeat = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc) batch = (unsigned)atoi(argv[++i]);
        else if (!strcmp(argv[i], "--no-thp")) thp = 0;
        else if (!strcmp(argv[i], "--interactive")) interactive = 1;
        else die("unknown argument %s", argv[i]);
    }
    if (repeat < 1 || repeat > 1000) die("--repeat must be 1...1000%s", "");
    if (batch < 1 || batch > 4096) die("--batch must be 1...4096%s", "");

    size_t nwords, nkeys, nexpect, ndep;
    uint32_t *routes = read_words(dir, "routes.bin", &nwords);
    uint32_t *keys = read_words(dir, "keys.bin", &nkeys);
    uint32_t *expect = read_words(dir, "expect.bin", &nexpect);
    uint32_t *expect_dep = read_words(dir, "expect-dep.bin", &ndep);
    if (nwords % 3 || nexpect != nkeys || ndep != nkeys || nkeys == 0) die("%s: inconsistent input files", dir);
    size_t nroutes = nwords / 3;

    // tbl8 groups needed: one per /24 that holds a longer prefix. Sized exactly, the
    // least memory rte_lpm can hold this table in.
    uint32_t *groups = malloc((nroutes ? nroutes : 1) * sizeof *groups);
    size_t ng = 0;
    for (size_t i = 0; i < nroutes; i++)
        if (routes[3 * i + 1] > 24) groups[ng++] = routes[3 * i] >> 8;
    qsort(groups, ng, sizeof *groups, cmp_u32);
    size_t tbl8s = 0;
    for (size_t i = 0; i < ng; i++)
        if (i == 0 || groups[i] != groups[i - 1]) tbl8s++;
    free(groups);
    if (tbl8s == 0) tbl8s = 1;

    size_t tbl24_bytes = (size_t)RTE_LPM_TBL24_NUM_ENTRIES * sizeof(struct rte_lpm_tbl_entry);
    size_t tbl8_bytes = tbl8s * RTE_LPM_TBL8_GROUP_NUM_ENTRIES * sizeof(struct rte_lpm_tbl_entry);
    size_t rules_bytes = (nroutes ? nroutes : 1) * 8;  // struct rte_lpm_rule {ip, next_hop:24, depth}
    // The heap the table is allocated from: its size plus room for rte_lpm's own struct
    // and malloc headers, in whole 2 MiB pages, 2 MiB aligned so huge pages can back it.
    const size_t huge = 2u << 20;
    size_t heap_len = (tbl24_bytes + tbl8_bytes + rules_bytes + 8 * huge + huge - 1) / huge * huge;

    // EAL on the CPU this process is pinned to (taskset), nothing else.
    cpu_set_t set;
    int cpu = 0;
    if (sched_getaffinity(0, sizeof set, &set) == 0)
        for (int c = 0; c < CPU_SETSIZE; c++)
            if (CPU_ISSET(c, &set)) { cpu = c; break; }
    // A file prefix of our own, so that runs at the same time don't meet in /var/run/dpdk.
    char lcores[32], mem[32], prefix[64];
    snprintf(lcores, sizeof lcores, "%d", cpu);
    snprintf(mem, sizeof mem, "%d", 64);
    snprintf(prefix, sizeof prefix, "--file-prefix=vrt-lpm-%d", (int)getpid());
    char *eal[] = {argv[0], "-l", lcores, "--no-huge", "--no-pci", "--no-shconf", "--no-telemetry",
                   "-m", mem, "--log-level=lib.*:error", "--iova-mode=va", prefix, NULL};
    int eal_argc = (int)(sizeof eal / sizeof eal[0]) - 1;
    if (rte_eal_init(eal_argc, eal) < 0) die("rte_eal_init failed: %s", rte_strerror(rte_errno));
    snprintf(runtime_dir, sizeof runtime_dir, "%s", rte_eal_get_runtime_dir());
    atexit(remove_runtime_dir);
    char *raw = mmap(NULL, heap_len + huge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED) die("mmap of the table heap failed: %s", strerror(errno));
    char *heap = (char *)(((uintptr_t)raw + huge - 1) & ~(uintptr_t)(huge - 1));
    madvise(heap, heap_len, thp ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
    if (rte_malloc_heap_create("lpm") != 0) die("rte_malloc_heap_create failed: %s", rte_strerror(rte_errno));
    if (rte_malloc_heap_memory_add("lpm", heap, heap_len, NULL, 0, 4096) != 0)
        die("rte_malloc_heap_memory_add failed: %s", rte_strerror(rte_errno));
    int socket = rte_malloc_heap_get_socket("lpm");
    if (socket < 0) die("rte_malloc_heap_get_socket failed: %s", rte_strerror(rte_errno));

    struct rte_malloc_socket_stats before, after;
    rte_malloc_get_socket_stats(socket, &before);
    double t0 = now();
    struct rte_lpm_config cfg = {.max_rules = nroutes ? (uint32_t)nroutes : 1, .number_tbl8s = (uint32_t)tbl8s};
    struct rte_lpm *lpm = rte_lpm_create("bench", socket, &cfg);
    if (!lpm) die("rte_lpm_create failed: %s", rte_strerror(rte_errno));
    for (size_t i = 0; i < nroutes; i++) {
        int r = rte_lpm_add(lpm, routes[3 * i], (uint8_t)routes[3 * i + 1], routes[3 * i + 2]);
        if (r < 0) {
            char msg[128];
            snprintf(msg, sizeof msg, "route %zu (/%u): %s", i, routes[3 * i + 1], strerror(-r));
            die("rte_lpm_add failed: %s", msg);
        }
    }
    double build = now() - t0;
    rte_malloc_get_socket_stats(socket, &after);

    uint32_t *res = calloc(nkeys, 4), *res4 = calloc(nkeys, 4), *dep = calloc(nkeys, 4);
    if (!res || !res4 || !dep) die("out of memory%s", "");
    // A round runs each kind of lookup once untimed (warming caches and TLB after whatever
    // ran before) and once timed. --interactive runs one round per line read from stdin,
    // answering "pass", so a driver can alternate rounds with vrouter-perf's.
    int cap = interactive ? 1000 : repeat;
    double *tb = calloc((size_t)cap, sizeof(double)), *t4 = calloc((size_t)cap, sizeof(double)),
           *td = calloc((size_t)cap, sizeof(double));
    if (interactive) {
        printf("ready\n");
        fflush(stdout);
    }
    int rounds = 0;
    char line[64];
    while (rounds < cap && (!interactive || fgets(line, sizeof line, stdin))) {
        bulk(lpm, keys, res, nkeys, batch);
        double a = now();
        bulk(lpm, keys, res, nkeys, batch);
        tb[rounds] = now() - a;
        x4(lpm, keys, res4, nkeys);
        a = now();
        x4(lpm, keys, res4, nkeys);
        t4[rounds] = now() - a;
        dependent(lpm, keys, dep, nkeys);
        a = now();
        dependent(lpm, keys, dep, nkeys);
        td[rounds] = now() - a;
        rounds++;
        if (interactive) {
            printf("pass\n");
            fflush(stdout);
        }
    }
    if (rounds == 0) die("no round was run%s", "");
    repeat = rounds;
    long huge_kib = anon_huge_kib();

    for (size_t i = 0; i < nkeys; i++)
        res[i] = res[i] & RTE_LPM_LOOKUP_SUCCESS ? res[i] & 0x00FFFFFF : MISS;
    size_t bad = check("rte_lpm_lookup_bulk", keys, res, expect, nkeys, 0);
    bad += check("rte_lpm_lookupx4", keys, res4, expect, nkeys, 0);
    bad += check("rte_lpm_lookup (dependent chain)", keys, dep, expect_dep, nkeys, 1);
    if (bad) {
        fprintf(stderr, "rte_lpm_bench: FAIL: %zu answers differ between rte_lpm and vrouter\n", bad);
        return 3;
    }

    // Headline figures are the best pass (other work on a shared machine only slows a pass
    // down), medians next to them; the batched headline is the faster of bulk and x4.
    double n = (double)nkeys;
    double bb = best(tb, repeat), b4 = best(t4, repeat), bd = best(td, repeat);
    double mb = median(tb, repeat), m4 = median(t4, repeat), md = median(td, repeat);
    double bfast = bb < b4 ? bb : b4, mfast = mb < m4 ? mb : m4;
    printf("{\"rte_lpm_agree\":true,\"rte_lpm_checked_answers\":%zu,\"rte_lpm_build_seconds\":%.6f,"
           "\"rte_lpm_bytes\":%zu,\"rte_lpm_heap_bytes\":%zu,\"rte_lpm_tbl24_bytes\":%zu,"
           "\"rte_lpm_tbl8_bytes\":%zu,\"rte_lpm_rules_bytes\":%zu,\"rte_lpm_tbl8s\":%zu,"
           "\"rte_lpm_bulk_mlps\":%.3f,\"rte_lpm_bulk_mlps_median\":%.3f,"
           "\"rte_lpm_x4_mlps\":%.3f,\"rte_lpm_x4_mlps_median\":%.3f,"
           "\"rte_lpm_mlps\":%.3f,\"rte_lpm_mlps_median\":%.3f,\"rte_lpm_ns_per_lookup\":%.3f,"
           "\"rte_lpm_dependent_mlps\":%.3f,\"rte_lpm_dependent_mlps_median\":%.3f,"
           "\"rte_lpm_dependent_ns_per_lookup\":%.3f,\"rte_lpm_thp\":%s,\"rte_lpm_anon_huge_kib\":%ld,"
           "\"rte_lpm_rounds\":%d}\n",
           3 * nkeys, build, tbl24_bytes + tbl8_bytes + rules_bytes,
           after.heap_allocsz_bytes - before.heap_allocsz_bytes, tbl24_bytes, tbl8_bytes, rules_bytes, tbl8s,
           n / bb / 1e6, n / mb / 1e6, n / b4 / 1e6, n / m4 / 1e6, n / bfast / 1e6, n / mfast / 1e6,
           bfast * 1e9 / n, n / bd / 1e6, n / md / 1e6, bd * 1e9 / n, thp ? "true" : "false", huge_kib, rounds);
    rte_lpm_free(lpm);
    rte_malloc_heap_memory_remove("lpm", heap, heap_len);
    rte_malloc_heap_destroy("lpm");
    munmap(raw, heap_len + huge);
    rte_eal_cleanup();
    return 0;
}
