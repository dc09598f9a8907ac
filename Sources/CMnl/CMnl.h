// libmnl plus the rtnetlink UAPI headers the netlink code builds messages from.
// linux/if.h is not included: it clashes with glibc's net/if.h that SwiftGlibc exports.
#include <libmnl/libmnl.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/if_link.h>
#include <linux/if_addr.h>
#include <linux/veth.h>
