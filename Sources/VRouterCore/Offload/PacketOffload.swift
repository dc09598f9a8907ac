// Offload state carried with a packet: what the kernel's virtio-net header said about it
// on the way in (a taps's TSO superframe, a partial checksum), or what we want it to say
// on the way out (a superframe for a tap that takes them, a UDP GSO train for the fabric).
// Eight bytes of PacketMeta; all zero for an ordinary, fully checksummed packet.
//
// Header layout and constants: include/uapi/linux/virtio_net.h (virtio_net_hdr_v1,
// 12 bytes; tun and AF_PACKET read and write it in the host's byte order on a
// little-endian host, "legacy" virtio).

@frozen
public struct PacketOffload: Sendable, Equatable {
    /// Bytes of L4 payload per segment (the MSS of a TCP superframe; the outer UDP payload
    /// per datagram of a UDP GSO train). 0 when not a superframe.
    public var gsoSize: UInt16
    /// `VirtioNet.gso*`: what kind of superframe (0: none).
    public var gsoType: UInt8
    /// `PacketOffload.needsChecksum` / `.checksumValid`.
    public var flags: UInt8
    /// Buffer offset (like `PacketMeta.l4`) of the header whose checksum is partial: its
    /// checksum field holds only the pseudo-header sum and the rest is still to be added.
    public var checksumStart: UInt16
    /// Offset of that checksum field within the header (16 for TCP, 6 for UDP).
    public var checksumOffset: UInt8
    public var reserved: UInt8

    @inlinable public init() {
        gsoSize = 0
        gsoType = 0
        flags = 0
        checksumStart = 0
        checksumOffset = 0
        reserved = 0
    }

    /// The L4 checksum is partial (`checksumStart`, `checksumOffset`).
    public static let needsChecksum: UInt8 = 1
    /// The sender vouches for the checksums (the kernel's DATA_VALID).
    public static let checksumValid: UInt8 = 2

    /// Anything that needs attention before the packet is treated as an ordinary one.
    @inlinable public var isActive: Bool { gsoType != 0 || flags & Self.needsChecksum != 0 }
    @inlinable public var isSuperframe: Bool { gsoType != 0 }
}

public enum VirtioNet {
    /// Header we use on taps and AF_PACKET sockets: virtio_net_hdr_v1 (the 10-byte legacy
    /// header plus num_buffers, which tun and AF_PACKET ignore).
    public static let headerLength = 12

    // flags
    public static let needsChecksum: UInt8 = 1
    public static let dataValid: UInt8 = 2
    // gso_type
    public static let gsoNone: UInt8 = 0
    public static let gsoTCPv4: UInt8 = 1
    public static let gsoUDP: UInt8 = 3  // UFO (IP fragmentation): not produced or accepted
    public static let gsoTCPv6: UInt8 = 4
    public static let gsoUDPL4: UInt8 = 5
    public static let gsoECN: UInt8 = 0x80

    /// A header as read from the wire (little-endian fields on every host we run on).
    @frozen
    public struct Header: Sendable, Equatable {
        public var flags: UInt8
        public var gsoType: UInt8
        public var headerLength: UInt16
        public var gsoSize: UInt16
        public var checksumStart: UInt16
        public var checksumOffset: UInt16

        @inlinable
        public init(
            flags: UInt8 = 0,
            gsoType: UInt8 = 0,
            headerLength: UInt16 = 0,
            gsoSize: UInt16 = 0,
            checksumStart: UInt16 = 0,
            checksumOffset: UInt16 = 0
        ) {
            self.flags = flags
            self.gsoType = gsoType
            self.headerLength = headerLength
            self.gsoSize = gsoSize
            self.checksumStart = checksumStart
            self.checksumOffset = checksumOffset
        }

        @inlinable @inline(__always)
        public init(reading p: UnsafeRawPointer) {
            flags = p.load(fromByteOffset: 0, as: UInt8.self)
            gsoType = p.load(fromByteOffset: 1, as: UInt8.self)
            headerLength = UInt16(littleEndian: p.loadUnaligned(fromByteOffset: 2, as: UInt16.self))
            gsoSize = UInt16(littleEndian: p.loadUnaligned(fromByteOffset: 4, as: UInt16.self))
            checksumStart = UInt16(littleEndian: p.loadUnaligned(fromByteOffset: 6, as: UInt16.self))
            checksumOffset = UInt16(littleEndian: p.loadUnaligned(fromByteOffset: 8, as: UInt16.self))
        }

        /// Writes the 10 bytes of the legacy header (what AF_PACKET uses); a 12-byte
        /// header's num_buffers (bytes 10–11) is the caller's to zero.
        @inlinable @inline(__always)
        public func write(to p: UnsafeMutableRawPointer) {
            p.storeBytes(of: flags, toByteOffset: 0, as: UInt8.self)
            p.storeBytes(of: gsoType, toByteOffset: 1, as: UInt8.self)
            p.storeBytes(of: headerLength.littleEndian, toByteOffset: 2, as: UInt16.self)
            p.storeBytes(of: gsoSize.littleEndian, toByteOffset: 4, as: UInt16.self)
            p.storeBytes(of: checksumStart.littleEndian, toByteOffset: 6, as: UInt16.self)
            p.storeBytes(of: checksumOffset.littleEndian, toByteOffset: 8, as: UInt16.self)
        }
    }

    /// Records a received header in `m` (whose frame starts at `m.offset`). Returns false
    /// for a header that cannot be honoured (a GSO kind we never asked for, a checksum
    /// outside the frame); the caller drops the packet.
    @inlinable @inline(__always)
    public static func record(_ h: Header, in m: UnsafeMutablePointer<PacketMeta>) -> Bool {
        var o = PacketOffload()
        if h.flags & needsChecksum != 0 {
            let start = Int(h.checksumStart)
            guard start &+ Int(h.checksumOffset) &+ 2 <= Int(m.pointee.length), h.checksumOffset < 256 else {
                return false
            }
            o.flags = PacketOffload.needsChecksum
            o.checksumStart = UInt16(truncatingIfNeeded: Int(m.pointee.offset) &+ start)
            o.checksumOffset = UInt8(truncatingIfNeeded: h.checksumOffset)
        } else if h.flags & dataValid != 0 {
            o.flags = PacketOffload.checksumValid
        }
        if h.gsoType != gsoNone {
            let kind = h.gsoType & ~gsoECN
            guard kind == gsoTCPv4 || kind == gsoTCPv6 || kind == gsoUDPL4, h.gsoSize > 0,
                o.flags & PacketOffload.needsChecksum != 0
            else { return false }
            o.gsoType = h.gsoType
            o.gsoSize = h.gsoSize
        }
        m.pointee.offload = o
        return true
    }

    /// The header that describes packet `m` (frame at `m.offset`) to the kernel. `l4Length`
    /// is the length of the header at `checksumStart` (the TCP header with options, 8 for
    /// UDP), for the header-length hint.
    @inlinable @inline(__always)
    public static func header(for m: UnsafePointer<PacketMeta>, l4Length: Int) -> Header {
        let o = m.pointee.offload
        var h = Header()
        if o.flags & PacketOffload.needsChecksum != 0 {
            let start = Int(o.checksumStart) &- Int(m.pointee.offset)
            h.flags = needsChecksum
            h.checksumStart = UInt16(truncatingIfNeeded: start)
            h.checksumOffset = UInt16(o.checksumOffset)
            h.headerLength = UInt16(truncatingIfNeeded: start &+ l4Length)
            if o.gsoType != gsoNone {
                h.gsoType = o.gsoType
                h.gsoSize = o.gsoSize
            }
        } else if o.flags & PacketOffload.checksumValid != 0 {
            h.flags = dataValid
        }
        return h
    }
}
