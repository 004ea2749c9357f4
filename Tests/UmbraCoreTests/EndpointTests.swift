import Testing

@testable import UmbraCore

@Suite("IP address text")
struct IPAddressTextTests {
    @Test(
        "IPv4 dotted quads parse and print back",
        arguments: [
            ("0.0.0.0", 0x0000_0000), ("1.2.3.4", 0x0102_0304), ("10.0.0.1", 0x0A00_0001),
            ("255.255.255.255", 0xFFFF_FFFF), ("192.168.100.200", 0xC0A8_64C8), ("127.0.0.1", 0x7F00_0001),
        ] as [(String, UInt32)]
    )
    func ipv4(text: String, value: UInt32) throws {
        let address = try #require(IPAddress(parsing: text))
        #expect(address == .v4(value))
        #expect(address.description == text)
        #expect(IPAddress(parsingIPv4: text) == address)
        #expect(IPAddress(parsingIPv6: text) == nil)
    }

    @Test(
        "malformed IPv4 is refused",
        arguments: [
            "", "1", "1.2.3", "1.2.3.4.5", "256.0.0.1", "1.2.3.256", "01.2.3.4", "1.2.3.04", "00.0.0.0", "1..2.3",
            ".1.2.3", "1.2.3.", "1.2.3.4 ", " 1.2.3.4", "+1.2.3.4", "1.2.3.-4", "0x1.2.3.4", "1234.1.1.1",
            "1.2.3.4/8", "١.٢.٣.٤", "1.2.3.4:80", "999.999.999.999",
        ]
    )
    func ipv4Rejects(text: String) {
        #expect(IPAddress(parsingIPv4: text) == nil)
        #expect(IPAddress(parsing: text) == nil)
    }

    /// (input, canonical RFC 5952 output). Includes the examples of RFC 5952 §4 and §5.
    static let ipv6Cases: [(String, String)] = [
        ("::", "::"),
        ("0:0:0:0:0:0:0:0", "::"),
        ("::1", "::1"),
        ("0:0:0:0:0:0:0:1", "::1"),
        ("1::", "1::"),
        ("1:0:0:0:0:0:0:0", "1::"),
        ("2001:0db8:0000:0000:0000:0000:0000:0001", "2001:db8::1"),
        ("2001:db8:0:0:0:0:2:1", "2001:db8::2:1"),
        ("2001:db8::0:1", "2001:db8::1"),
        ("2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"),  // §4.2.2: one zero group is not compressed
        ("2001:db8::1:1:1:1:1", "2001:db8:0:1:1:1:1:1"),
        ("2001:0:0:1:0:0:0:1", "2001:0:0:1::1"),  // §4.2.3: the longest run
        ("2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"),  // §4.2.3: leftmost on a tie
        ("2001:db8::aaaa:0:0:1", "2001:db8::aaaa:0:0:1"),
        ("2001:DB8::AAAA:BBBB", "2001:db8::aaaa:bbbb"),  // §4.3: lowercase
        ("2001:db8:aaaa:bbbb:cccc:dddd:eeee:0001", "2001:db8:aaaa:bbbb:cccc:dddd:eeee:1"),  // §4.1
        ("fe80::1:2", "fe80::1:2"),
        ("1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8"),
        ("1:2:3:4:5:6:7::", "1:2:3:4:5:6:7:0"),
        ("::2:3:4:5:6:7:8", "0:2:3:4:5:6:7:8"),
        ("1:0:0:4:5:0:0:0", "1:0:0:4:5::"),
        ("0:0:3:0:0:0:7:8", "0:0:3::7:8"),
        ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
        ("::ffff:192.0.2.1", "::ffff:192.0.2.1"),  // §5: IPv4-mapped keeps the mixed form
        ("::FFFF:c000:0201", "::ffff:192.0.2.1"),
        ("0:0:0:0:0:ffff:1.2.3.4", "::ffff:1.2.3.4"),
        ("::1.2.3.4", "::102:304"),  // IPv4-compatible (deprecated) is plain hex
        ("64:ff9b::192.0.2.33", "64:ff9b::c000:221"),
        ("1:2:3:4:5:6:1.2.3.4", "1:2:3:4:5:6:102:304"),
        ("ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
    ]

    @Test("IPv6 text forms parse and print per RFC 5952", arguments: ipv6Cases)
    func ipv6(input: String, canonical: String) throws {
        let address = try #require(IPAddress(parsing: input))
        #expect(address.description == canonical)
        // The canonical form parses back to the same address and is a fixed point.
        let again = try #require(IPAddress(parsing: canonical))
        #expect(again == address)
        #expect(again.description == canonical)
    }

    @Test("IPv6 values are packed big-endian")
    func ipv6Value() {
        #expect(IPAddress(parsing: "2001:db8::1") == .v6(high: 0x2001_0DB8_0000_0000, low: 1))
        #expect(IPAddress(parsing: "::ffff:10.0.0.1") == .v6(high: 0, low: 0x0000_FFFF_0A00_0001))
        #expect(IPAddress(parsing: "1:2:3:4:5:6:7:8")?.bytes == [0, 1, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6, 0, 7, 0, 8])
    }

    @Test(
        "malformed IPv6 is refused",
        arguments: [
            ":", ":::", "1:::2", "1::2::3", ":1::", ":1:2:3:4:5:6:7:8", "1::2:", "1:2:3:4:5:6:7:8:",
            "1:2:3:4:5:6:7:8:9",
            "1:2:3:4:5:6:7", "1:2:3:4:5:6:7:8::", "::1:2:3:4:5:6:7:8", "12345::", "g::", "::g", "::ffff:1.2.3",
            "::ffff:01.2.3.4", "::ffff:256.1.1.1", "::1.2.3.4:5", "1.2.3.4::", "::1.2.3.4.5", "fe80::1%eth0", "[::1]",
            " ::1", "::1 ", "1:2:3:4:5:6:7:1.2.3.4", "::ffff:1.2.3.4:", ":: 1", "::-1", "0x1::",
            "1:2:3:4:5:6:7:8:1.2.3.4",
            "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.2555",
        ]
    )
    func ipv6Rejects(text: String) {
        #expect(IPAddress(parsingIPv6: text) == nil)
        #expect(IPAddress(parsing: text) == nil)
    }

    /// (address, loopback, private, unspecified, link-local)
    static let classes: [(String, Bool, Bool, Bool, Bool)] = [
        ("127.0.0.1", true, false, false, false),
        ("127.255.255.254", true, false, false, false),
        ("128.0.0.1", false, false, false, false),
        ("10.0.0.0", false, true, false, false),
        ("10.255.255.255", false, true, false, false),
        ("11.0.0.1", false, false, false, false),
        ("172.16.0.1", false, true, false, false),
        ("172.31.255.255", false, true, false, false),
        ("172.15.255.255", false, false, false, false),
        ("172.32.0.0", false, false, false, false),
        ("192.168.1.1", false, true, false, false),
        ("192.169.0.1", false, false, false, false),
        ("100.64.0.1", false, true, false, false),
        ("100.127.255.255", false, true, false, false),
        ("100.63.255.255", false, false, false, false),
        ("100.128.0.0", false, false, false, false),
        ("0.0.0.0", false, false, true, false),
        ("169.254.1.1", false, false, false, true),
        ("169.253.1.1", false, false, false, false),
        ("8.8.8.8", false, false, false, false),
        ("::1", true, false, false, false),
        ("::2", false, false, false, false),
        ("::", false, false, true, false),
        ("fc00::1", false, true, false, false),
        ("fdff:ffff::1", false, true, false, false),
        ("fbff::1", false, false, false, false),
        ("fe00::1", false, false, false, false),
        ("fe80::1", false, false, false, true),
        ("febf:ffff::1", false, false, false, true),
        ("fec0::1", false, false, false, false),
        ("2001:db8::1", false, false, false, false),
        ("::ffff:127.0.0.1", true, false, false, false),
        ("::ffff:192.168.0.1", false, true, false, false),
        ("::ffff:169.254.0.1", false, false, false, true),
        ("::ffff:8.8.8.8", false, false, false, false),
    ]

    @Test("address classes", arguments: classes)
    func classification(text: String, loopback: Bool, isPrivate: Bool, unspecified: Bool, linkLocal: Bool) throws {
        let address = try #require(IPAddress(parsing: text))
        #expect(address.isLoopback == loopback)
        #expect(address.isPrivate == isPrivate)
        #expect(address.isUnspecified == unspecified)
        #expect(address.isLinkLocal == linkLocal)
    }

    @Test("mapped addresses unmap to IPv4; others are unchanged")
    func unmapped() {
        #expect(IPAddress(parsing: "::ffff:1.2.3.4")?.unmapped == .v4(0x0102_0304))
        #expect(IPAddress(parsing: "::1.2.3.4")?.ipv4Mapped == nil)
        #expect(IPAddress(parsing: "1.2.3.4")?.unmapped == .v4(0x0102_0304))
    }

    @Test("random addresses print canonically and parse back")
    func randomRoundTrip() throws {
        var rng = SeededRandom(seed: 5952)
        for _ in 0..<2000 {
            // Bias towards zero groups so `::` placement gets exercised.
            var words: [UInt64] = [0, 0]
            for group in 0..<8 where Bool.random(using: &rng) {
                words[group / 4] |=
                    UInt64(UInt16.random(in: 0...UInt16.max, using: &rng)) << (48 - 16 * UInt64(group % 4))
            }
            let address = IPAddress.v6(high: words[0], low: words[1])
            let text = address.description
            #expect(IPAddress(parsing: text) == address, "\(text)")
            #expect(!text.contains(":::") && text == text.lowercased())
            let v4 = IPAddress.v4(UInt32(truncatingIfNeeded: rng.next()))
            #expect(IPAddress(parsing: v4.description) == v4)
        }
    }
}

@Suite("Endpoint")
struct EndpointTests {
    @Test(
        "text endpoints parse and print back",
        arguments: [
            ("1.2.3.4:4747", "1.2.3.4:4747"), ("0.0.0.0:1", "0.0.0.0:1"),
            ("255.255.255.255:65535", "255.255.255.255:65535"),
            ("[::1]:4747", "[::1]:4747"), ("[2001:DB8:0:0:0:0:0:1]:80", "[2001:db8::1]:80"),
            ("[::ffff:1.2.3.4]:4747", "[::ffff:1.2.3.4]:4747"),
        ]
    )
    func parse(text: String, canonical: String) throws {
        let endpoint = try Endpoint(parsing: text)
        #expect(endpoint.description == canonical)
        #expect(try Endpoint(parsing: canonical) == endpoint)
    }

    @Test("parsed fields are right")
    func fields() throws {
        #expect(try Endpoint(parsing: "10.0.0.1:4747") == Endpoint(address: .v4(0x0A00_0001), port: 4747))
        #expect(try Endpoint(parsing: "[::1]:1") == Endpoint(address: .v6(high: 0, low: 1), port: 1))
    }

    @Test(
        "bad text endpoints say what is wrong",
        arguments: [
            ("", EndpointParseError.empty, "empty endpoint"),
            ("1.2.3.4", .missingPort, "missing port"),
            ("1.2.3.4:", .missingPort, "missing port"),
            ("[::1]", .missingPort, "missing port"),
            ("[::1]:", .missingPort, "missing port"),
            (":4747", .missingHost, "missing host"),
            ("1.2.3.4:70000", .portOutOfRange("70000"), "port 70000 is out of range 1-65535"),
            ("1.2.3.4:0", .portOutOfRange("0"), "port 0 is out of range 1-65535"),
            ("1.2.3.4:99999999999999999999999", .portOutOfRange("99999999999999999999999"), "out of range"),
            ("1.2.3.4:http", .invalidPort("http"), "'http' is not a port number"),
            ("1.2.3.4:-1", .invalidPort("-1"), "'-1' is not a port number"),
            ("1.2.3.4:+80", .invalidPort("+80"), "'+80' is not a port number"),
            ("1.2.3.4:080", .invalidPort("080"), "'080' is not a port number"),
            ("1.2.3.4: 80", .invalidPort(" 80"), "is not a port number"),
            ("1.2.3:4747", .invalidIPv4("1.2.3"), "'1.2.3' is not an IPv4 address"),
            ("256.1.1.1:4747", .invalidIPv4("256.1.1.1"), "'256.1.1.1' is not an IPv4 address"),
            ("::1:4747", .ipv6NeedsBrackets, "IPv6 addresses need brackets, like [::1]:4747"),
            ("2001:db8::1", .ipv6NeedsBrackets, "IPv6 addresses need brackets"),
            ("[1.2.3.4]:80", .invalidIPv6("1.2.3.4"), "'1.2.3.4' is not an IPv6 address"),
            ("[::g]:80", .invalidIPv6("::g"), "'::g' is not an IPv6 address"),
            ("[]:80", .invalidIPv6(""), "'' is not an IPv6 address"),
            ("[::1:80", .unclosedBracket, "'[' is not closed by ']'"),
            ("[::1]80", .unexpectedAfterBracket("80"), "expected ':<port>' after ']'"),
            ("example.com:80", .notAnIPAddress("example.com"), "'example.com' is not an IP address"),
        ]
    )
    func parseErrors(text: String, error: EndpointParseError, message: String) {
        #expect(throws: error) { try Endpoint(parsing: text) }
        #expect(error.description.contains(message))
    }

    @Test("huge inputs are clipped in error messages")
    func clipping() {
        let long = String(repeating: "9", count: 10_000)
        do {
            _ = try Endpoint(parsing: "1.2.3.4:" + long)
            Issue.record("should have thrown")
        } catch {
            #expect(error.description.count < 120)
        }
    }

    @Test(
        "binary endpoints round-trip",
        arguments: [
            "1.2.3.4:4747", "0.0.0.0:65535", "[::1]:1", "[2001:db8::1]:4747",
            "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:9",
        ]
    )
    func binaryRoundTrip(text: String) throws {
        let endpoint = try Endpoint(parsing: text)
        var writer = ByteWriter()
        writer.write(endpoint)
        writer.write(UInt8(0xEE))
        var reader = ByteReader(writer.bytes)
        #expect(try reader.readEndpoint() == endpoint)
        #expect(try reader.readUInt8() == 0xEE)
        try reader.expectEnd()
    }

    @Test("binary layout: family, network-order address, little-endian port")
    func binaryLayout() throws {
        var writer = ByteWriter()
        writer.write(try Endpoint(parsing: "1.2.3.4:4747"))
        #expect(writer.bytes == [4, 1, 2, 3, 4, 0x8B, 0x12])
        var v6 = ByteWriter()
        v6.write(try Endpoint(parsing: "[2001:db8::1]:258"))
        #expect(v6.bytes == [6, 0x20, 0x01, 0x0D, 0xB8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 1])
    }

    @Test(
        "bad binary endpoints throw typed errors",
        arguments: [
            ([], DecodeError.truncated(offset: 0, needed: 1)),
            ([5, 1, 2, 3, 4, 1, 0], .unknownTag(field: "address family", value: 5)),
            ([0], .unknownTag(field: "address family", value: 0)),
            ([4, 1, 2, 3], .truncated(offset: 1, needed: 1)),
            ([4, 1, 2, 3, 4, 1], .truncated(offset: 5, needed: 1)),
            ([6, 1, 2, 3, 4, 5, 6, 7, 8, 9], .truncated(offset: 9, needed: 7)),
            ([6] + [UInt8](repeating: 0, count: 16), .truncated(offset: 17, needed: 2)),
            ([4, 1, 2, 3, 4, 0, 0], .invalid(field: "endpoint port", reason: "port 0")),
        ] as [([UInt8], DecodeError)]
    )
    func binaryErrors(bytes: [UInt8], error: DecodeError) {
        var reader = ByteReader(bytes)
        #expect(throws: error) { try reader.readEndpoint() }
    }
}
