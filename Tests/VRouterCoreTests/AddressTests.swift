import Testing

@testable import VRouterCore

@Suite struct AddressTests {
    @Test func ipv4Parsing() {
        #expect(IPv4Address("198.18.0.1")?.value == 0xC612_0001)
        #expect(IPv4Address("198.18.0.1")?.description == "198.18.0.1")
        for bad in ["", "1.2.3", "1.2.3.4.5", "256.1.1.1", "01.2.3.4", "1..2.3", "a.b.c.d", "1.2.3.4 "] {
            #expect(IPv4Address(bad) == nil, "\(bad)")
        }
    }
    @Test func ipv6Parsing() {
        let cases: [(String, String)] = [
            ("2001:db8::1", "2001:db8::1"),
            ("2001:DB8:0:0:0:0:0:1", "2001:db8::1"),
            ("::", "::"),
            ("::1", "::1"),
            ("fe80::", "fe80::"),
            ("2001:db8:0:1:0:0:0:0", "2001:db8:0:1::"),
            ("2001:db8::ffff:198.51.100.7", "2001:db8::ffff:c633:6407"),
            ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2:3:4:5:6"),
            ("2001:0:0:1:0:0:0:1", "2001:0:0:1::1"),
        ]
        for (text, canon) in cases {
            #expect(IPv6Address(text)?.description == canon, "\(text)")
        }
        for bad in ["", ":", ":::", "1::2::3", "2001:db8", "12345::", "g::", "1:2:3:4:5:6:7:8:9", "2001:db8::1:"] {
            #expect(IPv6Address(bad) == nil, "\(bad)")
        }
    }
    @Test func macAndPrefixes() {
        #expect(MACAddress("00:00:5e:00:01:00") == MACAddress.vrouter)
        #expect(MACAddress.vrouter.description == "00:00:5e:00:01:00")
        #expect(MACAddress("00:00:5e:00:01") == nil)
        #expect(IPv4Prefix("198.51.100.0/24")?.length == 24)
        #expect(IPv4Prefix("198.51.100.1/24") == nil)  // host bits set
        #expect(IPv4Prefix("198.51.100.0/33") == nil)
        #expect(IPv4Prefix("0.0.0.0/0")?.contains(IPv4Address("203.0.113.9")!) == true)
        #expect(IPv6Prefix("2001:db8::/32")?.contains(IPv6Address("2001:db8:ffff::1")!) == true)
        #expect(IPv6Prefix("2001:db8::/129") == nil)
    }
}
