// Parsing IP packets: the fields of IPv4 (with options, padding and fragments) and IPv6 (with
// extension header chains and fragment headers), ports and ICMP types only where they really are,
// and refusal, never a crash, for truncated, oversized and random inputs.

import Testing
import UmbraCore

@testable import Tunnel

@Suite struct IPPacketTests {
    // MARK: - IPv4

    @Test func ipv4TCPFields() throws {
        let packet = ipv4(.tcp(source: 40000, destination: 443))
        let info = try parse(packet)
        #expect(info.version == .v4)
        #expect(info.totalLength == packet.count)
        #expect(info.payloadOffset == 20)
        #expect(info.protocol == IPProtocolNumber.tcp)
        #expect(info.source == consumer4)
        #expect(info.destination == public4)
        #expect(info.dontFragment)
        #expect(!info.moreFragments && info.fragmentOffset == 0 && !info.isFragment && info.isFirstFragment)
        #expect(info.sourcePort == 40000 && info.destinationPort == 443)
        #expect(info.icmpType == nil && !info.isICMP && !info.isICMPError)
    }

    @Test func ipv4OptionsMoveTheTransportHeader() throws {
        let packet = ipv4(.udp(source: 5353, destination: 53), options: [0x94, 0x04, 0, 0, 1, 1, 1, 0])
        let info = try parse(packet)
        #expect(info.payloadOffset == 28)
        #expect(info.protocol == IPProtocolNumber.udp)
        #expect(info.sourcePort == 5353 && info.destinationPort == 53)
    }

    @Test func paddingBeyondTheTotalLengthIsNotPartOfThePacket() throws {
        let packet = ipv4(.udp(source: 1, destination: 2), payload: [1, 2, 3], padding: 17)
        let info = try parse(packet)
        #expect(info.totalLength == 20 + 8 + 3)
        #expect(info.totalLength == packet.count - 17)
    }

    @Test func ipv4FragmentsCarryPortsOnlyInTheFirst() throws {
        let first = try parse(ipv4(.udp(source: 9, destination: 53), dontFragment: false, moreFragments: true))
        #expect(first.isFragment && first.isFirstFragment && first.moreFragments)
        #expect(first.destinationPort == 53)

        let later = try parse(
            ipv4(
                .raw(protocol: 17), payload: be16(7) + be16(25) + [0, 0, 0, 0], dontFragment: false, fragmentOffset: 185
            ))
        #expect(later.isFragment && !later.isFirstFragment && !later.moreFragments)
        #expect(later.fragmentOffset == 185)
        #expect(later.sourcePort == nil && later.destinationPort == nil)
        #expect(!later.dontFragment)
    }

    @Test(arguments: [
        (UInt8(3), true), (4, true), (5, true), (11, true), (12, true), (0, false), (8, false), (13, false),
    ])
    func icmpErrorTypes(type: UInt8, isError: Bool) throws {
        let info = try parse(ipv4(.icmp(type: type, code: 0)))
        #expect(info.isICMP)
        #expect(info.icmpType == type && info.icmpCode == 0)
        #expect(info.isICMPError == isError)
    }

    // MARK: - IPv6

    @Test func ipv6UDPFields() throws {
        let packet = ipv6(.udp(source: 51820, destination: 443), padding: 3)
        let info = try parse(packet)
        #expect(info.version == .v6)
        #expect(info.totalLength == packet.count - 3)
        #expect(info.payloadOffset == 40)
        #expect(info.source == consumer6 && info.destination == public6)
        #expect(info.dontFragment && !info.isFragment)
        #expect(info.sourcePort == 51820 && info.destinationPort == 443)
    }

    @Test func ipv6ExtensionHeadersAreSkipped() throws {
        let packet = ipv6(
            .tcp(source: 1234, destination: 25), extensionHeaders: [.hopByHop, .routing, .destinationOptions])
        let info = try parse(packet)
        #expect(info.protocol == IPProtocolNumber.tcp)
        #expect(info.payloadOffset == 40 + 16 + 8 + 16)
        #expect(info.destinationPort == 25 && info.sourcePort == 1234)
        #expect(!info.isFragment)
    }

    @Test func ipv6FragmentHeader() throws {
        let first = try parse(
            ipv6(.udp(source: 1, destination: 53), extensionHeaders: [.fragment(offset: 0, more: true)]))
        #expect(first.isFragment && first.isFirstFragment && first.moreFragments)
        #expect(first.protocol == IPProtocolNumber.udp && first.destinationPort == 53)

        let later = try parse(
            ipv6(
                .raw(protocol: 6), payload: be16(1) + be16(25), extensionHeaders: [.fragment(offset: 181, more: false)])
        )
        #expect(later.isFragment && !later.isFirstFragment && !later.moreFragments)
        #expect(later.fragmentOffset == 181)
        #expect(later.protocol == IPProtocolNumber.tcp)
        #expect(later.destinationPort == nil)

        let atomic = try parse(
            ipv6(.udp(source: 1, destination: 2), extensionHeaders: [.fragment(offset: 0, more: false)]))
        #expect(atomic.isFragment && atomic.destinationPort == 2)
    }

    @Test func ipv6ICMPErrorsAreTypesBelow128() throws {
        #expect(try parse(ipv6(.icmp(type: 1, code: 3))).isICMPError)
        #expect(try parse(ipv6(.icmp(type: 2, code: 0))).isICMPError)
        #expect(try !parse(ipv6(.icmp(type: 128, code: 0))).isICMPError)
        // ICMP (1) inside IPv6 is not ICMPv6: not recognised as an error.
        #expect(try !parse(ipv6(.raw(protocol: 1), payload: [3, 4, 0, 0])).isICMP)
    }

    @Test func atMostEightExtensionHeaders() throws {
        let eight = [ExtensionHeader](repeating: .destinationOptions, count: 8)
        #expect(try parse(ipv6(.udp(source: 1, destination: 2), extensionHeaders: eight)).destinationPort == 2)
        #expect(throws: DecodeError.self) {
            try parse(ipv6(.udp(source: 1, destination: 2), extensionHeaders: eight + [.routing]))
        }
    }

    @Test func anExtensionHeaderPastThePayloadIsRefused() throws {
        var packet = ipv6(.raw(protocol: 59), payload: [], extensionHeaders: [.hopByHop])
        packet[41] = 2  // claims 24 bytes, 16 present
        #expect(throws: DecodeError.self) { try parse(packet) }
        // The payload length bounds the chain, not the buffer.
        var short = ipv6(.raw(protocol: 59), payload: [], extensionHeaders: [.hopByHop], padding: 64)
        short[41] = 2
        #expect(throws: DecodeError.self) { try parse(short) }
    }

    // MARK: - Refusals

    @Test(arguments: [
        ("empty", [UInt8]()),
        ("version 5", [0x55] + [UInt8](repeating: 0, count: 39)),
        ("version 0", [UInt8](repeating: 0, count: 60)),
        ("IPv4 shorter than 20", Array(ipv4(.udp(source: 1, destination: 2))[..<19])),
        (
            "IHL 4",
            {
                var p = ipv4(.udp(source: 1, destination: 2)); p[0] = 0x44; return p
            }()
        ),
        (
            "IHL 15 beyond the buffer",
            {
                var p = ipv4(.raw(protocol: 17), payload: []); p[0] = 0x4F; return p
            }()
        ),
        (
            "total length beyond the buffer",
            {
                var p = ipv4(.udp(source: 1, destination: 2)); p[3] &+= 1; return p
            }()
        ),
        (
            "total length below the header",
            {
                var p = ipv4(.udp(source: 1, destination: 2)); p[2] = 0; p[3] = 19; return p
            }()
        ),
        ("IPv6 shorter than 40", Array(ipv6(.udp(source: 1, destination: 2))[..<39])),
        (
            "IPv6 payload beyond the buffer",
            {
                var p = ipv6(.udp(source: 1, destination: 2)); p[5] &+= 1; return p
            }()
        ),
    ])
    func malformedPacketsAreRefused(name: String, packet: [UInt8]) {
        #expect(throws: DecodeError.self, "\(name)") { try parse(packet) }
    }

    @Test func everyTruncationIsRefused() {
        let packets = [
            ipv4(.tcp(source: 1, destination: 2), options: [1, 1, 1, 0]),
            ipv6(.udp(source: 1, destination: 2), extensionHeaders: [.hopByHop, .fragment(offset: 0, more: true)]),
        ]
        for packet in packets {
            for length in 0..<packet.count {
                #expect(throws: DecodeError.self, "prefix of \(length)") { try parse(Array(packet[..<length])) }
            }
        }
    }

    @Test func shortTransportHeadersGiveNoPorts() throws {
        let info = try parse(ipv4(.raw(protocol: 6), payload: [0x01, 0xBB, 0x00]))
        #expect(info.protocol == IPProtocolNumber.tcp)
        #expect(info.sourcePort == nil && info.destinationPort == nil)
        let icmp = try parse(ipv6(.raw(protocol: 58), payload: [1]))
        #expect(icmp.isICMP && icmp.icmpType == nil && !icmp.isICMPError)
    }

    @Test(arguments: [1, 2, 3])
    func randomBytesNeverCrashAndParsesAreConsistent(seed: UInt64) {
        var random = SplitMix64(state: seed)
        var parsed = 0
        for _ in 0..<20_000 {
            var bytes = random.bytes(Int(random.next() % 120))
            // Steer half the inputs to a plausible version nibble so the deeper paths run.
            if !bytes.isEmpty, random.next() % 2 == 0 {
                bytes[0] = (random.next() % 2 == 0 ? 0x45 : 0x60) | (bytes[0] & 0x0F)
            }
            guard let info = try? parse(bytes) else { continue }
            parsed += 1
            #expect(info.totalLength <= bytes.count)
            #expect(info.payloadOffset <= info.totalLength)
            #expect((info.destinationPort == nil) == (info.sourcePort == nil))
            if info.destinationPort != nil { #expect(info.payloadOffset + 4 <= info.totalLength) }
        }
        #expect(parsed > 0)
    }
}
