// The calls that glibc declares only under _GNU_SOURCE. Defining it here, in a .c file,
// keeps it out of the module header (see CVRouterShims.h).
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <unistd.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include "CVRouterShims.h"

int vrt_setns_net(int fd) { return setns(fd, CLONE_NEWNET); }
int vrt_unshare_net(void) { return unshare(CLONE_NEWNET); }
pid_t vrt_gettid(void) { return (pid_t)syscall(SYS_gettid); }
int vrt_eventfd(unsigned int initval) { return eventfd(initval, EFD_CLOEXEC | EFD_NONBLOCK); }

int vrt_pin_current_thread(int cpu) {
    if (cpu < 0 || cpu >= CPU_SETSIZE) { errno = EINVAL; return -1; }
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return sched_setaffinity(0, sizeof set, &set);
}

int vrt_cpu_is_allowed(int cpu) {
    if (cpu < 0 || cpu >= CPU_SETSIZE) return 0;
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) != 0) return 0;
    return CPU_ISSET(cpu, &set) ? 1 : 0;
}

int vrt_current_cpu(void) { return sched_getcpu(); }
int vrt_set_thread_name(const char *name) { return prctl(PR_SET_NAME, name, 0, 0, 0); }
