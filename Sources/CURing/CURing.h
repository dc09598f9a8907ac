// liburing.h defines _XOPEN_SOURCE/_GNU_SOURCE before including libc headers, which
// changes glibc's feature macros inside this module only; clang then refuses to merge
// fd_set with SwiftGlibc's. Including the libc headers first makes those defines inert.
#include <features.h>
#include <sys/types.h>
#include <sys/select.h>
#include <signal.h>
#include <sched.h>
#include <liburing.h>

// Newer than Debian 12's liburing 2.3 (its enum stops at IORING_OP_SENDMSG_ZC, 48): a read
// that stays armed and posts one completion per read into provided buffers (kernel 6.7+;
// the loop probes for it and falls back to one read per completion).
static const unsigned char VRT_IORING_OP_READ_MULTISHOT = 49;
