// vrouter-cni: the CNI plugin (type "vrouter-cni") that attaches pods to the vRouter.
// A runtime execs it with CNI_* in the environment and the network config on stdin; the
// work is in VRouterCNI (CNIPlugin) and in vrouterd, reached over its control socket.

import Glibc
import VRouterCNI

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

var environment: [String: String] = [:]
var ep = environ
while let p = ep.pointee {
    let s = String(cString: p)
    if let eq = s.firstIndex(of: "=") { environment[String(s[..<eq])] = String(s[s.index(after: eq)...]) }
    ep += 1
}
var input: [UInt8] = []
var buf = [UInt8](repeating: 0, count: 65536)
while true {
    let n = buf.withUnsafeMutableBytes { read(0, $0.baseAddress!, $0.count) }
    if n > 0 { input += buf[0..<n] } else if n == 0 || errno != EINTR { break }
}
let (code, out) = CNIPlugin().main(environment: environment, stdin: Data(input))
out.withUnsafeBytes { raw in
    var off = 0
    while off < raw.count {
        let n = write(1, raw.baseAddress! + off, raw.count - off)
        if n <= 0 { break }
        off += n
    }
}
exit(code)
