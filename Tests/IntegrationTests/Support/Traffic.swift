// The outside programs that carry and observe traffic between the lab's namespaces.

import Foundation
import Glibc
import Testing
import VRouterTestSupport

extension Lab {
    /// `ping -c count` from namespace `ns`; how many replies came back.
    func ping(from ns: String, _ address: String, count: Int = 3, wait: Int = 1) throws -> Int {
        let r = try run(
            inNS(ns, [Tool.ping, "-c", "\(count)", "-i", "0.2", "-W", "\(wait)", "-n", address]),
            timeout: Double(count * wait + 10)
        )
        // "3 packets transmitted, 3 received, ..."
        guard let m = r.output.firstMatch(of: /(\d+) received/) else { return 0 }
        return Int(m.1) ?? 0
    }

    /// Pings once a second until a reply comes (underlay ARP, taps coming up) or `timeout`.
    func waitForPing(from ns: String, _ address: String, timeout: Double = 15) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if try ping(from: ns, address, count: 1) == 1 { return }
        }
        throw Failure("no ping reply from \(address) in \(ns) after \(timeout) s")
    }

    /// Waits until `ifname` exists in namespace `ns` (vrouterd moved the tap in).
    func waitForLink(_ ifname: String, in ns: String, timeout: Double = 15) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if try run([Tool.ip, "-n", ns, "link", "show", ifname], timeout: 5).ok { return }
            usleep(50_000)
        }
        throw Failure("\(ifname) did not appear in \(ns)")
    }

    /// An iperf3 TCP run of `seconds` from `clientNS` to the server in `serverNS` at
    /// `address`: the bytes the receiver got, or a failure with iperf3's own error.
    func iperf3(
        server serverNS: String,
        client clientNS: String,
        address: String,
        seconds: Int = 2,
        streams: Int = 1,
        udpBitrate: String? = nil
    ) throws -> IperfResult {
        let server = try start(
            inNS(serverNS, [Tool.iperf3, "-s", "-1", "--rcv-timeout", "10000", "--forceflush"]),
            name: "iperf3-server-\(serverNS)"
        )
        defer { server.end(grace: 2) }
        let deadline = Date().addingTimeInterval(10)
        while !server.stdout.contains("Server listening") {
            guard Date() < deadline, server.isRunning else {
                throw Failure("iperf3 server did not start: \(server.stderr)")
            }
            usleep(20_000)
        }
        let r = try run(
            inNS(
                clientNS,
                [
                    Tool.iperf3, "-c", address, "-t", "\(seconds)", "-P", "\(streams)", "--json", "--connect-timeout",
                    "5000",
                ]
                    + (udpBitrate.map { ["-u", "-b", $0] } ?? [])
            ),
            timeout: Double(seconds + 20)
        )
        guard let obj = try? JSONSerialization.jsonObject(with: Data(r.output.utf8)) as? [String: Any] else {
            throw Failure("iperf3 printed no JSON (\(r.status)): \(r.output) \(r.error)")
        }
        let end = obj["end"] as? [String: Any]
        // UDP: one "sum" with the receiver's losses (iperf 3.12 has no sum_received for UDP).
        let received = end?[udpBitrate == nil ? "sum_received" : "sum"] as? [String: Any]
        return IperfResult(
            status: r.status,
            error: obj["error"] as? String,
            bytes: (received?["bytes"] as? NSNumber)?.uint64Value ?? 0,
            bitsPerSecond: (received?["bits_per_second"] as? NSNumber)?.doubleValue ?? 0,
            retransmits: ((end?["sum_sent"] as? [String: Any])?["retransmits"] as? NSNumber)?.uint64Value ?? 0,
            lostPercent: (received?["lost_percent"] as? NSNumber)?.doubleValue ?? 0
        )
    }

    /// tshark on `device` in `ns`, writing a capture file, started and ready.
    /// `count`: frames to capture at most (0: no limit).
    func capture(in ns: String, device: String, filter: String, name: String, count: Int = 0) throws -> Capture {
        let file = "\(dir)/\(name).pcapng"
        let c = try start(
            inNS(
                ns,
                [Tool.tshark, "-n", "-i", device, "-f", filter, "-a", "duration:60", "-w", file]
                    + (count > 0 ? ["-c", "\(count)"] : [])
            ),
            name: "tshark-\(name)"
        )
        let deadline = Date().addingTimeInterval(20)
        while !c.stderr.contains("Capturing on") {
            guard Date() < deadline, c.isRunning else { throw Failure("tshark did not start: \(c.stderr)") }
            usleep(50_000)
        }
        // "Capturing on" comes a moment before the socket takes frames (seen: the first
        // echo reply missing from a capture started just before the ping).
        usleep(1_000_000)
        return Capture(lab: self, child: c, file: file)
    }
}

struct IperfResult {
    var status: Int32
    var error: String?
    var bytes: UInt64
    var bitsPerSecond: Double
    var retransmits: UInt64
    /// UDP: datagrams the receiver missed, in percent.
    var lostPercent: Double
}

/// A running capture; `stop()` ends it and decodes what it saw.
struct Capture {
    let lab: Lab
    let child: Child
    let file: String

    /// Stops tshark (SIGINT flushes the file) and returns one row per packet with the given
    /// fields, MPLS decoded on UDP 6635 (tshark has no default for RFC 7510's port);
    /// `validatingChecksums`: IPv4, UDP and TCP checksums checked (their `.status` fields
    /// say 1 for good, 0 for bad).
    func stop(fields: [String], validatingChecksums: Bool = false) throws -> [[String]] {
        // libpcap hands frames over a ring block at a time, a block when full or after its
        // timeout: a frame that arrived just before SIGINT may still be in the kernel's block
        // and is lost if dumpcap exits now (seen: the last echo request missing).
        usleep(1_500_000)
        child.signal(SIGINT)
        // Killed, it would leave a truncated file that tshark cannot read back: give it time.
        if child.wait(seconds: 30) == nil { child.end(grace: 1) }
        let out = try lab.must(
            [Tool.tshark, "-n", "-r", file, "-d", "udp.port==6635,mpls", "-T", "fields"]
                + (validatingChecksums
                    ? [
                        "-o", "ip.check_checksum:TRUE", "-o", "udp.check_checksum:TRUE", "-o",
                        "tcp.check_checksum:TRUE",
                    ]
                    : [])
                + fields.flatMap { ["-e", $0] }
        )
        return out.split(separator: "\n").map {
            $0.split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
        }
    }
}
