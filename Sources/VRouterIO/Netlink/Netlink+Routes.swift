// Routes (RTM_NEWROUTE/DELROUTE/GETROUTE), including default routes via a gateway and
// `onlink` gateways outside every local subnet (how pods reach the vRouter).

import CMnl
import Glibc
import VRouterCore

extension Netlink {
    public func addRoute(_ route: Route) throws(SystemError) {
        let nlh = try routeMessage(Int(RTM_NEWROUTE), flags: NLM_F_CREATE | NLM_F_EXCL, route, delete: false)
        try perform(nlh, call: "RTM_NEWROUTE", object: object("route \(route)"))
    }

    /// Removes a route matching destination, table, gateway and device as given (unset
    /// fields match anything, as with `ip route del`).
    public func removeRoute(_ route: Route) throws(SystemError) {
        let nlh = try routeMessage(Int(RTM_DELROUTE), flags: 0, route, delete: true)
        try perform(nlh, call: "RTM_DELROUTE", object: object("route \(route)"))
    }

    private func routeMessage(
        _ type: Int,
        flags: Int32,
        _ r: Route,
        delete: Bool
    ) throws(SystemError) -> UnsafeMutablePointer<nlmsghdr> {
        if let g = r.gateway, g.isIPv4 != r.destination.isIPv4 {
            throw SystemError(
                call: delete ? "RTM_DELROUTE" : "RTM_NEWROUTE",
                object: object("route \(r)"),
                errno: EINVAL,
                detail: "gateway and destination are of different families"
            )
        }
        let oif = try r.device.map { d throws(SystemError) in try linkIndex(d) }
        var dst = r.destination.address.bytes
        var gw = r.gateway?.bytes ?? []
        var src = r.preferredSource?.bytes ?? []
        return message(type, flags: flags, header: rtmsg.self) { nlh, rtm in
            rtm.pointee.rtm_family = r.destination.address.family
            rtm.pointee.rtm_dst_len = r.destination.length
            rtm.pointee.rtm_table = r.table < 256 ? UInt8(r.table) : 252  // RT_TABLE_COMPAT + RTA_TABLE
            if delete {
                rtm.pointee.rtm_scope = 255  // RT_SCOPE_NOWHERE: match any scope
            } else {
                rtm.pointee.rtm_protocol = r.proto
                rtm.pointee.rtm_type = 1  // RTN_UNICAST
                // A route without a gateway reaches hosts on the link itself.
                rtm.pointee.rtm_scope = r.gateway == nil && oif != nil ? 253 : 0  // RT_SCOPE_LINK / UNIVERSE
            }
            if r.onlink { rtm.pointee.rtm_flags = UInt32(RTNH_F_ONLINK) }
            if r.destination.length > 0 { mnl_attr_put(nlh, UInt16(RTA_DST.rawValue), dst.count, &dst) }
            if !gw.isEmpty { mnl_attr_put(nlh, UInt16(RTA_GATEWAY.rawValue), gw.count, &gw) }
            if !src.isEmpty { mnl_attr_put(nlh, UInt16(RTA_PREFSRC.rawValue), src.count, &src) }
            if let oif { mnl_attr_put_u32(nlh, UInt16(RTA_OIF.rawValue), UInt32(oif)) }
            if let m = r.metric { mnl_attr_put_u32(nlh, UInt16(RTA_PRIORITY.rawValue), m) }
            mnl_attr_put_u32(nlh, UInt16(RTA_TABLE.rawValue), r.table)
        }
    }

    /// Unicast routes of `table` (main by default), both families, as Route values with
    /// device names resolved. Cached (cloned) entries are left out.
    public func routes(table: UInt32 = Route.mainTable) throws(SystemError) -> [Route] {
        let names = Dictionary(uniqueKeysWithValues: try links().map { ($0.index, $0.name) })
        var result: [Route] = []
        try dump(
            { message(Int(RTM_GETROUTE), flags: 0, header: rtmsg.self) { _, _ in } },
            call: "RTM_GETROUTE(dump)",
            object: object("routes")
        ) { nlh in
            if let r = Self.parseRoute(nlh, table: table, names: names) { result.append(r) }
        }
        return result
    }

    /// An RTM_NEWROUTE message of `table` (a dump's entry) as a Route, device names from
    /// `names` ("#index" for others); nil for other types, tables, and non-unicast or
    /// cached routes.
    public static func parseRoute(
        _ nlh: UnsafeMutablePointer<nlmsghdr>,
        table: UInt32,
        names: [Int32: String]
    ) -> Route? {
        guard Int(nlh.pointee.nlmsg_type) == Int(RTM_NEWROUTE) else { return nil }
        guard let rtm = familyHeader(nlh, rtmsg.self) else { return nil }
        guard rtm.rtm_type == 1, rtm.rtm_flags & UInt32(RTM_F_CLONED) == 0 else { return nil }
        var tableID = UInt32(rtm.rtm_table)
        var dst: IPAddress? = nil
        var gateway: IPAddress? = nil
        var source: IPAddress? = nil
        var oif: Int32? = nil
        var metric: UInt32? = nil
        forEachAttribute(nlh, headerSize: MemoryLayout<rtmsg>.size) { type, data, len in
            switch UInt32(type) {
            case RTA_TABLE.rawValue where len >= 4: tableID = data.loadUnaligned(as: UInt32.self)
            case RTA_DST.rawValue: dst = IPAddress(bytes: data, count: len)
            case RTA_GATEWAY.rawValue: gateway = IPAddress(bytes: data, count: len)
            case RTA_PREFSRC.rawValue: source = IPAddress(bytes: data, count: len)
            case RTA_OIF.rawValue where len >= 4: oif = data.loadUnaligned(as: Int32.self)
            case RTA_PRIORITY.rawValue where len >= 4: metric = data.loadUnaligned(as: UInt32.self)
            default: break
            }
        }
        guard tableID == table else { return nil }
        let isIPv4 = Int32(rtm.rtm_family) == AF_INET_VALUE
        let destination = dst ?? (isIPv4 ? .v4(.any) : .v6(.any))
        // A prefix longer than its address is no route (a damaged reply, not a reason to trap).
        guard Int(rtm.rtm_dst_len) <= destination.bitWidth else { return nil }
        let prefix: IPPrefix
        switch destination {
        case .v4(let a): prefix = .v4(IPv4Prefix(truncating: a, length: Int(rtm.rtm_dst_len)))
        case .v6(let a): prefix = .v6(IPv6Prefix(truncating: a, length: Int(rtm.rtm_dst_len)))
        }
        return Route(
            prefix,
            via: gateway,
            device: oif.map { names[$0] ?? "#\($0)" },
            onlink: rtm.rtm_flags & UInt32(RTNH_F_ONLINK) != 0,
            preferredSource: source,
            metric: metric,
            table: tableID,
            proto: rtm.rtm_protocol
        )
    }
}
