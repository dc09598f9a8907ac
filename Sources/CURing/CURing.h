// liburing.h defines _XOPEN_SOURCE/_GNU_SOURCE before including libc headers, which
// changes glibc's feature macros inside this module only; clang then refuses to merge
// fd_set with SwiftGlibc's. Including the libc headers first makes those defines inert.
#include <features.h>
#include <sys/types.h>
#include <sys/select.h>
#include <signal.h>
#include <sched.h>
#include <liburing.h>
