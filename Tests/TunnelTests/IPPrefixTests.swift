// CIDR prefixes: parsing both families, canonical descriptions, membership at the block
// boundaries (including lengths that are not multiples of 8 or straddle IPv6's two words), and
// errors that say what is wrong with an example of what is right.

import Testing
import UmbraCore

@testable import Tunnel

@Suite struct IPPrefixTests {
    @Test(arguments: [
        ("10.0.0.0/8", "10.0.0.0/8"),
        ("0.0.0.0/0", "0.0.0.0/0"),
        ("169.254.169.254/32", "169.254.169.254/32"),
        ("100.64.0.0/10", "100.64.0.0/10"),
        ("fc00::/7", "fc00::/7"),
        ("::/0", "::/0"),
        ("::1/128", "::1/128"),
        ("2001:DB8:0:0::/32", "2001:db8::/32"),
        ("::ffff:0:0/96", "::ffff:0.0.0.0/96"),
        ("fd00:ec2::254/128", "fd00:ec2::254/128"),
    ])
    func parsesAndPrintsCanonically(text: String, canonical: String) throws {
        let prefix = try IPPrefix(parsing: text)
        #expect(prefix.description == canonical)
        #expect(try IPPrefix(parsing: canonical) == prefix)
    }

    @Test(arguments: [
        ("", IPPrefixParseError.empty),
        ("10.0.0.0", .missingLength("10.0.0.0")),
        ("10.0.0/8", .invalidAddress("10.0.0")),
        ("example.com/8", .invalidAddress("example.com")),
        ("[::1]/128", .invalidAddress("[::1]")),
        ("10.0.0.0/", .invalidLength("")),
        ("10.0.0.0/08", .invalidLength("08")),
        ("10.0.0.0/+8", .invalidLength("+8")),
        ("10.0.0.0/8/8", .invalidLength("8/8")),
        ("10.0.0.0/1000", .invalidLength("1000")),
        ("10.0.0.0/33", .lengthOutOfRange(length: 33, maximum: 32)),
        ("::/129", .lengthOutOfRange(length: 129, maximum: 128)),
        ("10.0.0.1/8", .hostBitsSet("10.0.0.1/8", suggested: "10.0.0.0/8")),
        ("fc00::1/7", .hostBitsSet("fc00::1/7", suggested: "fc00::/7")),
        ("172.20.0.0/11", .hostBitsSet("172.20.0.0/11", suggested: "172.0.0.0/11")),
    ])
    func refusals(text: String, error: IPPrefixParseError) {
        #expect(throws: error) { try IPPrefix(parsing: text) }
    }

    @Test func errorMessagesShowAnExample() {
        let errors: [IPPrefixParseError] = [
            .empty, .missingLength("10.0.0.0"), .invalidAddress("x"), .invalidLength("+8"),
        ]
        for error in errors { #expect(error.description.contains("10.0.0.0/8"), "\(error)") }
        #expect(IPPrefixParseError.lengthOutOfRange(length: 33, maximum: 32).description.contains("0-32 for IPv4"))
        #expect(
            IPPrefixParseError.hostBitsSet("10.0.0.1/8", suggested: "10.0.0.0/8").description
                == "10.0.0.1/8 has host bits set; did you mean 10.0.0.0/8?")
    }

    @Test(arguments: [
        ("172.16.0.0/12", "172.16.0.0", true), ("172.16.0.0/12", "172.31.255.255", true),
        ("172.16.0.0/12", "172.15.255.255", false), ("172.16.0.0/12", "172.32.0.0", false),
        ("100.64.0.0/10", "100.127.255.255", true), ("100.64.0.0/10", "100.128.0.0", false),
        ("0.0.0.0/0", "255.255.255.255", true), ("0.0.0.0/0", "::", false),
        ("1.2.3.4/32", "1.2.3.4", true), ("1.2.3.4/32", "1.2.3.5", false),
        ("::/0", "ffff::1", true), ("::/0", "0.0.0.0", false),
        ("fc00::/7", "fdff:ffff::1", true), ("fc00::/7", "fe00::", false), ("fc00::/7", "fbff::", false),
        ("fe80::/10", "febf:ffff::", true), ("fe80::/10", "fec0::", false),
        ("::ffff:0:0/96", "::ffff:10.0.0.1", true), ("::ffff:0:0/96", "::fffe:10.0.0.1", false),
        ("::ffff:0:0/96", "10.0.0.1", false),
        ("2001:db8::8000:0:0:0/65", "2001:db8::ffff:0:0:1", true),
        ("2001:db8::8000:0:0:0/65", "2001:db8::7fff:0:0:1", false),
        ("2001:db8::/64", "2001:db8::ffff:ffff:ffff:ffff", true), ("2001:db8::/64", "2001:db8:0:1::", false),
        ("::1/128", "::1", true), ("::1/128", "::2", false),
    ])
    func membership(prefix: String, address: String, expected: Bool) throws {
        #expect(try IPPrefix(parsing: prefix).contains(ip(address)) == expected)
    }

    @Test func programmaticConstructionChecksLikeParsing() throws {
        #expect(try IPPrefix(.v4(0x0A00_0000), length: 8).description == "10.0.0.0/8")
        #expect(throws: IPPrefixParseError.lengthOutOfRange(length: -1, maximum: 32)) {
            try IPPrefix(.v4(0), length: -1)
        }
        #expect(throws: IPPrefixParseError.hostBitsSet("::1/64", suggested: "::/64")) {
            try IPPrefix(ip("::1"), length: 64)
        }
    }
}
