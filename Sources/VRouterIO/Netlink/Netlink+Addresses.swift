// Interface addresses (RTM_NEWADDR/DELADDR/GETADDR).

import CMnl
import Glibc

extension Netlink {
    /// Adds `address` to link `name`. IPv6 addresses skip duplicate address detection by
    /// default (`noDAD`), so they are usable at once instead of "tentative" for ~1 s.
    public func addAddress(_ address: InterfaceAddress, to name: String, noDAD: Bool = true) throws(SystemError) {
        let index = try linkIndex(name)
        let nlh = addressMessage(
            Int(RTM_NEWADDR),
            flags: NLM_F_CREATE | NLM_F_EXCL,
            address,
            index: index,
            noDAD: noDAD
        )
        try perform(nlh, call: "RTM_NEWADDR(\(address))", object: object("link \(name)"))
    }

    public func removeAddress(_ address: InterfaceAddress, from name: String) throws(SystemError) {
        let index = try linkIndex(name)
        let nlh = addressMessage(Int(RTM_DELADDR), flags: 0, address, index: index, noDAD: false)
        try perform(nlh, call: "RTM_DELADDR(\(address))", object: object("link \(name)"))
    }

    private func addressMessage(
        _ type: Int,
        flags: Int32,
        _ address: InterfaceAddress,
        index: Int32,
        noDAD: Bool
    ) -> UnsafeMutablePointer<nlmsghdr> {
        var bytes = address.address.bytes
        return message(type, flags: flags, header: ifaddrmsg.self) { nlh, ifa in
            ifa.pointee.ifa_family = address.address.family
            ifa.pointee.ifa_prefixlen = address.prefixLength
            ifa.pointee.ifa_index = UInt32(index)
            ifa.pointee.ifa_scope = 0  // RT_SCOPE_UNIVERSE
            mnl_attr_put(nlh, UInt16(IFA_LOCAL), bytes.count, &bytes)
            mnl_attr_put(nlh, UInt16(IFA_ADDRESS), bytes.count, &bytes)
            if noDAD && !address.address.isIPv4 { mnl_attr_put_u32(nlh, UInt16(IFA_FLAGS), UInt32(IFA_F_NODAD)) }
        }
    }

    /// Addresses in the namespace, of every link or of link `name`.
    public func addresses(of name: String? = nil) throws(SystemError) -> [AddressInfo] {
        let names = Dictionary(uniqueKeysWithValues: try links().map { ($0.index, $0.name) })
        let only = try name.map { n throws(SystemError) in try linkIndex(n) }
        var result: [AddressInfo] = []
        try dump(
            { message(Int(RTM_GETADDR), flags: 0, header: ifaddrmsg.self) { _, _ in } },
            call: "RTM_GETADDR(dump)",
            object: object("addresses")
        ) { nlh in
            guard let a = Self.parseAddress(nlh, names: names), only == nil || only == a.interfaceIndex else { return }
            result.append(a)
        }
        return result
    }

    /// An RTM_NEWADDR message (a dump's entry); nil for other types or without an address.
    /// `names` gives interface names by index ("#index" for others).
    public static func parseAddress(_ nlh: UnsafeMutablePointer<nlmsghdr>, names: [Int32: String]) -> AddressInfo? {
        guard Int(nlh.pointee.nlmsg_type) == Int(RTM_NEWADDR) else { return nil }
        guard let ifa = familyHeader(nlh, ifaddrmsg.self) else { return nil }
        let index = Int32(bitPattern: ifa.ifa_index)
        var local: IPAddress? = nil
        var peer: IPAddress? = nil
        forEachAttribute(nlh, headerSize: MemoryLayout<ifaddrmsg>.size) { type, data, len in
            if Int(type) == Int(IFA_LOCAL) { local = IPAddress(bytes: data, count: len) }
            if Int(type) == Int(IFA_ADDRESS) { peer = IPAddress(bytes: data, count: len) }
        }
        // IFA_LOCAL is the address itself (IPv4); IPv6 reports only IFA_ADDRESS. A prefix
        // longer than the address is no address (a damaged reply, not a reason to trap).
        guard let a = local ?? peer, Int(ifa.ifa_prefixlen) <= a.bitWidth else { return nil }
        return AddressInfo(
            interfaceIndex: index,
            interface: names[index] ?? "#\(index)",
            address: InterfaceAddress(a, prefixLength: Int(ifa.ifa_prefixlen)),
            scope: ifa.ifa_scope
        )
    }
}
