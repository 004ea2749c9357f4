// The provider's egress policy and the consumer's inbound filter on hand-built packets: every
// default blocked category (cloud metadata reported as such, not as link-local), the public ranges
// that must stay reachable, SMTP blocked but submission not, anti-spoofing across families, operator
// overrides, fragments that hide the ports, and malformed input.

import Testing
import UmbraCore

@testable import Tunnel

@Suite struct EgressPolicyTests {
    let policy = EgressPolicy.default

    @Test(arguments: [
        ("0.1.2.3", EgressBlockCategory.thisNetwork),
        ("10.0.0.1", .privateNetwork), ("10.182.0.1", .privateNetwork), ("10.255.255.255", .privateNetwork),
        ("172.16.0.1", .privateNetwork), ("172.31.255.254", .privateNetwork),
        ("192.168.0.1", .privateNetwork), ("192.168.255.255", .privateNetwork),
        ("100.64.0.1", .carrierGradeNAT), ("100.127.255.254", .carrierGradeNAT),
        ("127.0.0.1", .loopback), ("127.255.0.1", .loopback),
        ("169.254.169.254", .cloudMetadata), ("168.63.129.16", .cloudMetadata),
        ("169.254.0.1", .linkLocal), ("169.254.169.253", .linkLocal),
        ("192.0.0.8", .protocolAssignments), ("192.0.0.170", .protocolAssignments),
        ("224.0.0.251", .multicast), ("239.255.255.250", .multicast),
        ("240.0.0.1", .reserved), ("255.255.255.255", .reserved),
    ])
    func blockedIPv4Destinations(destination: String, category: EgressBlockCategory) {
        for transport in [Transport.udp(source: 40000, destination: 53), .tcp(source: 40000, destination: 80)] {
            #expect(policy.verdict(ipv4(to: ip(destination), transport)) == .drop(.blockedDestination(category)))
        }
    }

    @Test(arguments: [
        "198.18.0.10", "198.19.255.255", "8.8.8.8", "1.1.1.1", "11.0.0.1", "9.255.255.255", "172.15.255.255",
        "172.32.0.1", "192.167.255.255", "192.169.0.1", "100.63.255.255", "100.128.0.1", "169.253.255.255",
        "169.255.0.1", "192.0.1.1", "192.0.2.1", "223.255.255.255", "126.255.255.255", "128.0.0.1", "1.0.0.0",
    ])
    func publicIPv4DestinationsAreForwarded(destination: String) {
        let packet = ipv4(to: ip(destination), .udp(source: 40000, destination: 443))
        #expect(policy.verdict(packet) == .forward(length: packet.count))
    }

    @Test(arguments: [
        ("::", EgressBlockCategory.thisNetwork), ("::1", .loopback),
        ("::ffff:10.0.0.1", .ipv4Mapped), ("::ffff:8.8.8.8", .ipv4Mapped), ("::ffff:169.254.169.254", .ipv4Mapped),
        ("fd00:ec2::254", .cloudMetadata), ("fd00:ec2::253", .uniqueLocal),
        ("fc00::1", .uniqueLocal), ("fdff:ffff:ffff:ffff::1", .uniqueLocal),
        ("fe80::1", .linkLocal), ("febf::1", .linkLocal),
        ("ff02::1", .multicast), ("ff0e::101", .multicast),
    ])
    func blockedIPv6Destinations(destination: String, category: EgressBlockCategory) {
        let packet = ipv6(to: ip(destination), .udp(source: 40000, destination: 53))
        #expect(policy.verdict(packet, sessionAddress: consumer6) == .drop(.blockedDestination(category)))
    }

    @Test(arguments: ["2606:4700::1111", "2001:4860:4860::8888", "fec0::1", "fbff::1", "::2", "64:ff9b::808:808"])
    func publicIPv6DestinationsAreForwarded(destination: String) {
        let packet = ipv6(to: ip(destination), .tcp(source: 40000, destination: 443), padding: 5)
        #expect(policy.verdict(packet, sessionAddress: consumer6) == .forward(length: packet.count - 5))
    }

    // MARK: - Ports

    @Test func smtpIsBlockedButSubmissionIsNot() {
        #expect(policy.verdict(ipv4(.tcp(source: 40000, destination: 25))) == .drop(.blockedPort(25)))
        let submission = ipv4(.tcp(source: 40000, destination: 587))
        #expect(policy.verdict(submission) == .forward(length: submission.count))
        let smtps = ipv4(.tcp(source: 40000, destination: 465))
        #expect(policy.verdict(smtps) == .forward(length: smtps.count))
        // A source port of 25 is not a connection to SMTP.
        let fromPort25 = ipv4(.tcp(source: 25, destination: 40000))
        #expect(policy.verdict(fromPort25) == .forward(length: fromPort25.count))
        // Only TCP: UDP to port 25 is not mail.
        let udp = ipv4(.udp(source: 40000, destination: 25))
        #expect(policy.verdict(udp) == .forward(length: udp.count))
        #expect(
            policy.verdict(
                ipv6(.tcp(source: 1, destination: 25), extensionHeaders: [.hopByHop]), sessionAddress: consumer6)
                == .drop(.blockedPort(25)))
    }

    @Test func theBlockedPortsAreConfigurable() {
        let open = EgressPolicy(blockedTCPPorts: [])
        let smtp = ipv4(.tcp(source: 40000, destination: 25))
        #expect(open.verdict(smtp) == .forward(length: smtp.count))
        let strict = EgressPolicy(blockedTCPPorts: [25, 587])
        #expect(strict.verdict(ipv4(.tcp(source: 40000, destination: 587))) == .drop(.blockedPort(587)))
    }

    // MARK: - Spoofing

    @Test func onlyTheSessionAddressMaySend() {
        #expect(policy.verdict(ipv4(from: ip("10.182.0.3"), .udp(source: 1, destination: 53))) == .drop(.spoofedSource))
        #expect(policy.verdict(ipv4(from: public4, .udp(source: 1, destination: 53))) == .drop(.spoofedSource))
        // Spoofing is judged before the destination: the reason names the real problem.
        #expect(
            policy.verdict(ipv4(from: ip("10.182.0.3"), to: ip("10.0.0.1"), .udp(source: 1, destination: 53)))
                == .drop(.spoofedSource))
    }

    @Test func theOtherFamilyIsSpoofed() {
        // A session with only an IPv4 address cannot send IPv6, not even from a mapped address.
        #expect(
            policy.verdict(ipv6(.udp(source: 1, destination: 53)), sessionAddress: consumer4) == .drop(.spoofedSource))
        #expect(
            policy.verdict(
                ipv6(from: ip("::ffff:10.182.0.2"), .udp(source: 1, destination: 53)), sessionAddress: consumer4)
                == .drop(.spoofedSource))
        #expect(
            policy.verdict(ipv4(.udp(source: 1, destination: 53)), sessionAddress: consumer6) == .drop(.spoofedSource))
        #expect(
            policy.verdict(ipv6(from: ip("fe80::1"), .udp(source: 1, destination: 53)), sessionAddress: consumer6)
                == .drop(.spoofedSource))
    }

    // MARK: - Overrides

    @Test func allowedPrefixesWinOverBlockedOnes() throws {
        let lan = try IPPrefix(parsing: "192.168.1.0/24")
        let policy = EgressPolicy(allowed: [lan, try IPPrefix(parsing: "fd12::/16")])
        let allowed = ipv4(to: ip("192.168.1.5"), .udp(source: 1, destination: 53))
        #expect(policy.verdict(allowed) == .forward(length: allowed.count))
        #expect(policy.blockedCategory(of: ip("192.168.1.5")) == nil)
        #expect(
            policy.verdict(ipv4(to: ip("192.168.2.5"), .udp(source: 1, destination: 53)))
                == .drop(.blockedDestination(.privateNetwork)))
        let allowed6 = ipv6(to: ip("fd12::1"), .udp(source: 1, destination: 53))
        #expect(policy.verdict(allowed6, sessionAddress: consumer6) == .forward(length: allowed6.count))
        // The override is about destinations: SMTP stays blocked.
        #expect(
            policy.verdict(ipv4(to: ip("192.168.1.5"), .tcp(source: 1, destination: 25))) == .drop(.blockedPort(25)))
        // Allowing something that was never blocked changes nothing.
        let wide = EgressPolicy(allowed: [try IPPrefix(parsing: "0.0.0.0/0")])
        let metadata = ipv4(to: ip("169.254.169.254"), .tcp(source: 1, destination: 80))
        #expect(wide.verdict(metadata) == .forward(length: metadata.count))
    }

    @Test func operatorsCanBlockMore() throws {
        var policy = EgressPolicy.default
        policy.blocked.insert((try IPPrefix(parsing: "198.18.5.0/24"), .operatorPolicy), at: 0)
        #expect(
            policy.verdict(ipv4(to: ip("198.18.5.1"), .udp(source: 1, destination: 53)))
                == .drop(.blockedDestination(.operatorPolicy)))
        let other = ipv4(to: ip("198.18.6.1"), .udp(source: 1, destination: 53))
        #expect(policy.verdict(other) == .forward(length: other.count))
    }

    @Test func theDefaultListIsWhatTheDesignSays() {
        let listed = EgressPolicy.defaultBlocked.map { "\($0.prefix) \($0.category)" }
        #expect(
            listed == [
                "0.0.0.0/8 this-network", "10.0.0.0/8 private", "172.16.0.0/12 private", "192.168.0.0/16 private",
                "100.64.0.0/10 carrier-grade-nat", "127.0.0.0/8 loopback", "169.254.169.254/32 cloud-metadata",
                "168.63.129.16/32 cloud-metadata", "169.254.0.0/16 link-local",
                "192.0.0.0/24 ietf-protocol-assignments", "224.0.0.0/4 multicast",
                "240.0.0.0/4 reserved", "::/128 this-network", "::1/128 loopback", "::ffff:0.0.0.0/96 ipv4-mapped",
                "fd00:ec2::254/128 cloud-metadata", "fc00::/7 unique-local", "fe80::/10 link-local",
                "ff00::/8 multicast",
            ])
        // Every built-in prefix is valid (no host bits), as parsing would have required.
        for entry in EgressPolicy.defaultBlocked {
            #expect((try? IPPrefix(parsing: entry.prefix.description)) == entry.prefix)
        }
        #expect(EgressPolicy.default.blockedTCPPorts == [25])
        #expect(EgressPolicy.default.allowed.isEmpty)
    }

    // MARK: - IPv4 options

    /// Loose and strict source routes (RFC 791: types 131, 137) name the hops a packet must take:
    /// a consumer could steer the provider's packet past its policy. Record route (7), timestamps
    /// (68) and even a lone NOP leak or serve nothing; no ordinary traffic carries options.
    @Test(arguments: [
        [131, 7, 4, 8, 8, 8, 8, 0] as [UInt8],  // LSRR via 8.8.8.8, then end of options
        [137, 7, 4, 1, 1, 1, 1, 0],  // SSRR
        [7, 7, 4, 0, 0, 0, 0, 0],  // record route
        [1, 1, 1, 0],  // NOPs
    ])
    func ipv4WithOptionsIsDropped(options: [UInt8]) {
        let packet = ipv4(.udp(source: 40000, destination: 53), options: options)
        #expect(policy.verdict(packet) == .drop(.ipOptions))
        let info = packet.withUnsafeBytes { try? IPPacketInfo(parsing: $0) }
        #expect(info?.hasIPv4Options == true)
        let plain = ipv4(.udp(source: 40000, destination: 53))
        #expect(plain.withUnsafeBytes { try? IPPacketInfo(parsing: $0) }?.hasIPv4Options == false)
        #expect(policy.verdict(plain) == .forward(length: plain.count))
    }

    // MARK: - Fragments and malformed packets

    @Test func fragmentsThatHideThePortsAreDropped() {
        // A first fragment too short to hold the ports (RFC 1858's tiny fragment).
        let tiny = ipv4(.raw(protocol: 6), payload: [0x9C, 0x40], dontFragment: false, moreFragments: true)
        #expect(policy.verdict(tiny) == .drop(.fragmentedHeader))
        // A TCP fragment at offset 8 bytes, which could overwrite the first one's flags.
        let overlap = ipv4(
            .raw(protocol: 6), payload: [UInt8](repeating: 0, count: 16), dontFragment: false, fragmentOffset: 1)
        #expect(policy.verdict(overlap) == .drop(.fragmentedHeader))
        let tiny6 = ipv6(.raw(protocol: 17), payload: [0, 1], extensionHeaders: [.fragment(offset: 0, more: true)])
        #expect(policy.verdict(tiny6, sessionAddress: consumer6) == .drop(.fragmentedHeader))
    }

    @Test func laterFragmentsPassOnTheirAddresses() {
        let later = ipv4(
            .raw(protocol: 6), payload: [UInt8](repeating: 7, count: 64), dontFragment: false, fragmentOffset: 185)
        #expect(policy.verdict(later) == .forward(length: later.count))
        let blocked = ipv4(
            to: ip("169.254.169.254"), .raw(protocol: 6), payload: [UInt8](repeating: 7, count: 64),
            dontFragment: false,
            fragmentOffset: 185)
        #expect(policy.verdict(blocked) == .drop(.blockedDestination(.cloudMetadata)))
        let first = ipv4(.tcp(source: 1, destination: 25), dontFragment: false, moreFragments: true)
        #expect(policy.verdict(first) == .drop(.blockedPort(25)))
    }

    @Test func malformedPacketsAreDropped() {
        #expect(policy.verdict([]) == .drop(.malformed))
        #expect(policy.verdict([0x45]) == .drop(.malformed))
        #expect(policy.verdict([UInt8](repeating: 0xFF, count: 100)) == .drop(.malformed))
        let packet = ipv4(.tcp(source: 1, destination: 2))
        #expect(policy.verdict(Array(packet[..<(packet.count - 1)])) == .drop(.malformed))
        // An unfragmented TCP packet whose header stops before the ports.
        #expect(policy.verdict(ipv4(.raw(protocol: 6), payload: [0, 1, 0])) == .drop(.malformed))
        // ICMP and other protocols need no ports.
        let ping = ipv4(.icmp(type: 8, code: 0))
        #expect(policy.verdict(ping) == .forward(length: ping.count))
        let gre = ipv4(.raw(protocol: 47), payload: [])
        #expect(policy.verdict(gre) == .forward(length: gre.count))
    }

    @Test func randomBytesNeverCrash() {
        var random = SplitMix64(state: 42)
        for _ in 0..<20_000 {
            var bytes = random.bytes(Int(random.next() % 100))
            if bytes.count >= 20, random.next() % 2 == 0 {
                bytes[0] = 0x45
                bytes[12...15] = [10, 182, 0, 2]  // the session's address, to get past the spoofing check
            }
            if case .forward(let length) = policy.verdict(bytes) {
                #expect(length <= bytes.count && length >= 20)
            }
        }
    }

    // MARK: - Inbound

    @Test func consumersOnlyAcceptTheirOwnAddress() {
        let reply = ipv4(from: public4, to: consumer4, .udp(source: 53, destination: 40000), padding: 2)
        #expect(
            reply.withUnsafeBytes { InboundFilter.verdict($0, innerAddress: consumer4) }
                == .deliver(length: reply.count - 2))
        let other = ipv4(from: public4, to: ip("192.168.1.10"), .tcp(source: 80, destination: 22))
        #expect(other.withUnsafeBytes { InboundFilter.verdict($0, innerAddress: consumer4) } == .drop(.misaddressed))
        let v6 = ipv6(from: public6, to: consumer6, .udp(source: 53, destination: 40000))
        #expect(v6.withUnsafeBytes { InboundFilter.verdict($0, innerAddress: consumer4) } == .drop(.misaddressed))
        #expect(v6.withUnsafeBytes { InboundFilter.verdict($0, innerAddress: consumer6) } == .deliver(length: v6.count))
        let garbage: [UInt8] = [0x45, 0, 0, 3]
        #expect(garbage.withUnsafeBytes { InboundFilter.verdict($0, innerAddress: consumer4) } == .drop(.malformed))
    }
}
