// Which CPUs and NUMA nodes there are, as the worker placement needs them.

import CNuma
import CVRouterShims
import Glibc

public enum CPU {
    /// CPUs configured in the machine (online or not).
    public static var configured: Int { Int(sysconf(Int32(_SC_NPROCESSORS_CONF))) }

    /// CPUs this process may run on (its affinity mask), ascending.
    public static var allowed: [Int] { (0..<max(configured, 1)).filter { vrt_cpu_is_allowed(Int32($0)) == 1 } }

    /// The CPU the calling thread is on right now.
    public static var current: Int { Int(vrt_current_cpu()) }

    /// Whether libnuma works here (false in many containers and VMs without NUMA).
    public static var numaAvailable: Bool { numa_available() >= 0 }

    /// The NUMA node of `cpu`, or nil without NUMA support.
    public static func node(of cpu: Int) -> Int? {
        guard numaAvailable else { return nil }
        let n = numa_node_of_cpu(Int32(cpu))
        return n >= 0 ? Int(n) : nil
    }
}
