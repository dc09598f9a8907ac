// The little C that Swift cannot import: function-like macros, compiler builtins and
// sizeof-based constants. Everything here is `static inline` (inlined into Swift in
// release builds) or a constant; each item carries the vrt_/VRT_ prefix.
#ifndef CVROUTER_SHIMS_H
#define CVROUTER_SHIMS_H

#include <stdint.h>
#include <stddef.h>
#include <time.h>

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

#endif
