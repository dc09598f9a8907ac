// pcap and pcapng files through libpcap: reading a capture into a PacketSet (a replay's
// input), and writing what a port transmitted (a replay's output) in a form tshark,
// tcpdump and wireshark read. Timestamps are kept in nanoseconds end to end.

import CPcap
import Glibc
import VRouterCore

public struct PcapError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ d: String) { description = d }
}

public enum PcapFile {
    /// Reads every packet of `path` (pcap or pcapng, Ethernet link type) into `set`,
    /// tagged with `port`. Returns the number of packets read. Errors name the file and,
    /// for damage inside it, the packet number where reading stopped.
    @discardableResult
    public static func read(path: String, port: UInt16, into set: inout PacketSet) throws(PcapError) -> Int {
        var errbuf = [CChar](repeating: 0, count: Int(PCAP_ERRBUF_SIZE) + 1)
        guard let h = pcap_open_offline_with_tstamp_precision(path, UInt32(PCAP_TSTAMP_PRECISION_NANO), &errbuf) else {
            throw PcapError("\(path): \(Self.string(errbuf))")
        }
        defer { pcap_close(h) }
        let link = pcap_datalink(h)
        guard link == DLT_EN10MB else {
            let name = pcap_datalink_val_to_name(link).map { String(cString: $0) } ?? "unknown"
            throw PcapError("\(path): link type \(link) (\(name)) is not Ethernet (DLT_EN10MB)")
        }
        reserve(for: path, in: &set)
        var count = 0
        var header: UnsafeMutablePointer<pcap_pkthdr>? = nil
        var data: UnsafePointer<UInt8>? = nil
        while true {
            let r = pcap_next_ex(h, &header, &data)
            if r == 1, let hdr = header, let bytes = data {
                let caplen = Int(hdr.pointee.caplen)
                guard caplen <= Int(UInt16.max) else {
                    throw PcapError("\(path): packet \(count + 1) is \(caplen) bytes, more than 65535")
                }
                // Seconds and nanoseconds (the handle is opened for nanosecond precision). A
                // damaged record can say anything: out of range is an error, not a wrap.
                let seconds = hdr.pointee.ts.tv_sec
                let nanoseconds = hdr.pointee.ts.tv_usec
                guard seconds >= 0, seconds <= Self.maxSeconds, nanoseconds >= 0, nanoseconds < 1_000_000_000 else {
                    throw PcapError(
                        "\(path): packet \(count + 1) has timestamp \(seconds) s + \(nanoseconds) ns, "
                            + "outside 1970 to 2554 (or a fraction of a second that is not one)"
                    )
                }
                let ts = UInt64(seconds) * 1_000_000_000 + UInt64(nanoseconds)
                set.append(UnsafeRawBufferPointer(start: bytes, count: caplen), port: port, timestamp: ts)
                count += 1
            } else if r == PCAP_ERROR_BREAK {  // -2: end of file
                return count
            } else {
                throw PcapError("\(path): after packet \(count): \(String(cString: pcap_geterr(h)))")
            }
        }
    }

    /// The last whole second whose nanoseconds fit a UInt64 (in 2554).
    static let maxSeconds = Int(UInt64.max / 1_000_000_000) - 1

    /// Sizes `set` for the file up front, so that reading never regrows (and recopies) its
    /// arrays: the packet bytes can't exceed the file, and a pcap record is at least a
    /// 16-byte header and a 60-byte frame (runts only make the packet arrays grow once).
    /// Capacity past what the capture fills is address space the kernel never backs.
    static func reserve(for path: String, in set: inout PacketSet) {
        var st = stat()
        guard stat(path, &st) == 0, st.st_mode & S_IFMT == S_IFREG, st.st_size > 0 else { return }
        let size = Int(st.st_size)
        set.reserve(packets: set.count + size / 76, bytes: set.bytes.count + size)
        // Big captures: ask for transparent huge pages for the packet bytes, one page fault
        // per 2 MiB instead of per 4 KiB (a fifth of the load time at 64-byte packets).
        // Advisory only: the kernel may decline, and nothing else depends on it.
        let huge = 2 << 20
        guard size >= 4 * huge else { return }
        let capacity = set.bytes.capacity
        set.bytes.withUnsafeBufferPointer { b in
            guard let base = b.baseAddress else { return }
            let start = (Int(bitPattern: base) + huge - 1) & ~(huge - 1)
            let end = (Int(bitPattern: base) + capacity) & ~(huge - 1)
            if end > start { _ = madvise(UnsafeMutableRawPointer(bitPattern: start), end - start, MADV_HUGEPAGE) }
        }
    }

    static func string(_ buf: [CChar]) -> String {
        buf.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    }
}

/// Writes packets to a classic pcap file (nanosecond timestamps, Ethernet).
public final class PcapWriter {
    public let path: String
    private let dead: OpaquePointer
    private let dumper: OpaquePointer
    public private(set) var packets = 0
    private var closed = false

    public init(path: String, snaplen: Int32 = 65535) throws(PcapError) {
        self.path = path
        guard let d = pcap_open_dead_with_tstamp_precision(DLT_EN10MB, snaplen, UInt32(PCAP_TSTAMP_PRECISION_NANO))
        else {
            throw PcapError("\(path): libpcap could not make a capture handle")
        }
        guard let dump = pcap_dump_open(d, path) else {
            let message = String(cString: pcap_geterr(d))
            pcap_close(d)
            throw PcapError("\(path): \(message)")
        }
        dead = d
        dumper = dump
    }

    /// Appends one frame; `timestamp` in nanoseconds since the epoch.
    public func write(_ bytes: UnsafeRawBufferPointer, timestamp: UInt64) {
        var hdr = pcap_pkthdr()
        hdr.ts.tv_sec = Int(timestamp / 1_000_000_000)
        hdr.ts.tv_usec = Int(timestamp % 1_000_000_000)
        hdr.caplen = UInt32(bytes.count)
        hdr.len = UInt32(bytes.count)
        withUnsafePointer(to: &hdr) { h in
            pcap_dump(
                UnsafeMutableRawPointer(dumper).assumingMemoryBound(to: UInt8.self),
                h,
                bytes.baseAddress?.assumingMemoryBound(to: UInt8.self) ?? UnsafePointer(bitPattern: 1)!
            )
        }
        packets += 1
    }

    /// Flushes and closes; reports a write error (disk full) instead of losing it.
    public func close() throws(PcapError) {
        guard !closed else { return }
        closed = true
        let flushed = pcap_dump_flush(dumper)
        pcap_dump_close(dumper)
        pcap_close(dead)
        if flushed != 0 { throw PcapError("\(path): write failed (disk full or I/O error)") }
    }

    deinit { try? close() }
}
