// The little C that Swift cannot import: function-like macros, compiler builtins and
// sizeof-based constants. Everything here is `static inline` (inlined into Swift in
// release builds) or a constant; each item carries the vrt_/VRT_ prefix. Calls that
// need _GNU_SOURCE (setns, unshare, CPU_SET, eventfd) are real functions in shims.c so
// that this header never changes glibc's feature macros (which would break module
// merging with SwiftGlibc, see the CURing header).
#ifndef CVROUTER_SHIMS_H
#define CVROUTER_SHIMS_H

#include <stdint.h>
#include <stddef.h>
#include <time.h>
#include <sys/types.h>
#include <sys/ioctl.h>        // _IOW: linux/if_tun.h uses it without including it
#include <linux/if_packet.h>  // never together with <netpacket/packet.h> (both define sockaddr_ll)
#include <linux/if_ether.h>
#include <linux/if_tun.h>
#include <linux/filter.h>     // sock_filter, sock_fprog: the fabric's fanout steering program

// Software prefetch: Swift has no spelling for it. Read and write (prefetchw) variants.
static inline void vrt_prefetch(const void *p) { __builtin_prefetch(p, 0, 3); }
static inline void vrt_prefetch_write(const void *p) { __builtin_prefetch(p, 1, 3); }

// Monotonic nanoseconds (vDSO, ~20 ns): used per frame for per-node timing, never per packet.
static inline uint64_t vrt_monotonic_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

// Acquire/release on memory Swift does not own (mmap'd rings, published table pointers).
static inline uint32_t vrt_load_acquire_u32(const void *p) {
    return __atomic_load_n((const uint32_t *)p, __ATOMIC_ACQUIRE);
}
static inline void vrt_store_release_u32(void *p, uint32_t v) {
    __atomic_store_n((uint32_t *)p, v, __ATOMIC_RELEASE);
}
static inline uint64_t vrt_load_acquire_u64(const void *p) {
    return __atomic_load_n((const uint64_t *)p, __ATOMIC_ACQUIRE);
}
static inline void vrt_store_release_u64(void *p, uint64_t v) {
    __atomic_store_n((uint64_t *)p, v, __ATOMIC_RELEASE);
}

// tun/tap ioctls (_IOW macros are invisible to Swift).
static const unsigned long VRT_TUNSETIFF = TUNSETIFF;
static const unsigned long VRT_TUNSETPERSIST = TUNSETPERSIST;
static const unsigned long VRT_TUNSETOFFLOAD = TUNSETOFFLOAD;
static const unsigned long VRT_TUNGETIFF = TUNGETIFF;
static const unsigned long VRT_TUNSETVNETHDRSZ = TUNSETVNETHDRSZ;

// TPACKET layout: sizeof-based macros.
static const size_t VRT_TPACKET3_HDRLEN = TPACKET3_HDRLEN;
static inline size_t vrt_tpacket_align(size_t x) { return TPACKET_ALIGN(x); }
// Where a TX ring frame's data starts when PACKET_TX_HAS_OFF is not set: the kernel
// uses tp_hdrlen - sizeof(struct sockaddr_ll).
static const size_t VRT_TPACKET3_TX_DATA_OFFSET = TPACKET3_HDRLEN - sizeof(struct sockaddr_ll);
// Byte offsets of the fields the ring walkers touch (offsetof through unions is nil in Swift).
static const size_t VRT_TPACKET_BLOCK_STATUS_OFFSET =
    offsetof(struct tpacket_block_desc, hdr) + offsetof(struct tpacket_hdr_v1, block_status);
static const size_t VRT_TPACKET_BLOCK_NUM_PKTS_OFFSET =
    offsetof(struct tpacket_block_desc, hdr) + offsetof(struct tpacket_hdr_v1, num_pkts);
static const size_t VRT_TPACKET_BLOCK_FIRST_PKT_OFFSET =
    offsetof(struct tpacket_block_desc, hdr) + offsetof(struct tpacket_hdr_v1, offset_to_first_pkt);
static const size_t VRT_TPACKET3_VLAN_TCI_OFFSET =
    offsetof(struct tpacket3_hdr, hv1) + offsetof(struct tpacket_hdr_variant1, tp_vlan_tci);
static const size_t VRT_TPACKET3_VLAN_TPID_OFFSET =
    offsetof(struct tpacket3_hdr, hv1) + offsetof(struct tpacket_hdr_variant1, tp_vlan_tpid);

// Namespaces and threads (real functions in shims.c, built with _GNU_SOURCE).
int vrt_setns_net(int fd);         // setns(fd, CLONE_NEWNET) for the calling thread
int vrt_unshare_net(void);         // unshare(CLONE_NEWNET) for the calling thread
pid_t vrt_gettid(void);
int vrt_eventfd(unsigned int initval);  // EFD_CLOEXEC | EFD_NONBLOCK
int vrt_pin_current_thread(int cpu);    // sched_setaffinity(0, {cpu}); 0 or -1/errno
int vrt_cpu_is_allowed(int cpu);        // 1 if the process may run on cpu
int vrt_current_cpu(void);              // sched_getcpu()
int vrt_set_thread_name(const char *name);  // prctl(PR_SET_NAME), 15 chars

#endif
