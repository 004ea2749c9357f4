// "Packet too big" replies checked byte by byte against the RFCs, with every checksum recomputed by
// the tests' own RFC 1071 code, and the cases where no reply is due: DF clear, later fragments, ICMP
// errors, packets that fit, MTUs below the minimum, non-unicast sources, buffers too small. Also the
// InternetChecksum accumulator against RFC 1071's worked example and a known IPv4 header.

import Testing
import UmbraCore

@testable import Tunnel

@Suite struct ICMPTooBigTests {
    // MARK: - IPv4

    @Test func ipv4ReplyFieldByField() throws {
        let original = ipv4(.tcp(source: 40000, destination: 443), payload: [UInt8](repeating: 0x5A, count: 1460))
        #expect(original.count == 1500)
        let reply = try #require(tooBig(original, mtu: 1420))
        #expect(reply.count == 576)

        // IPv4 header.
        #expect(reply[0] == 0x45)
        #expect(reply[1] == 0)
        #expect(readBE16(reply, 2) == 576)
        #expect(readBE16(reply, 6) & 0x3FFF == 0)  // not a fragment
        #expect(reply[8] == 64)
        #expect(reply[9] == 1)
        #expect(referenceChecksum(Array(reply[0..<20])) == 0)
        #expect(Array(reply[12..<16]) == gateway4.bytes)
        #expect(Array(reply[16..<20]) == consumer4.bytes)

        // ICMP: type 3 code 4, unused zero, next-hop MTU, the original's first 548 bytes.
        #expect(reply[20] == 3)
        #expect(reply[21] == 4)
        #expect(referenceChecksum(Array(reply[20...])) == 0)
        #expect(readBE16(reply, 24) == 0)
        #expect(readBE16(reply, 26) == 1420)
        #expect(Array(reply[28...]) == Array(original[..<548]))

        let info = try parse(reply)
        #expect(info.isICMPError && info.icmpType == 3 && info.icmpCode == 4)
        #expect(info.totalLength == reply.count)
    }

    @Test func aSmallOriginalIsQuotedWhole() throws {
        let original = ipv4(.udp(source: 1, destination: 2), payload: [UInt8](repeating: 1, count: 72), padding: 9)
        let reply = try #require(tooBig(original, mtu: 68))
        #expect(reply.count == 28 + 100)
        #expect(Array(reply[28...]) == Array(original[..<100]))  // not the padding
        #expect(referenceChecksum(Array(reply[20...])) == 0)
        #expect(referenceChecksum(Array(reply[..<20])) == 0)
    }

    @Test func ipv4OddLengthChecksum() throws {
        let original = ipv4(.udp(source: 1, destination: 2), payload: [UInt8](repeating: 0xC3, count: 71))
        let reply = try #require(tooBig(original, mtu: 68))
        #expect(reply.count % 2 == 1)
        #expect(referenceChecksum(Array(reply[20...])) == 0)
    }

    @Test func pingsWithDFGetAReply() throws {
        let ping = ipv4(.icmp(type: 8, code: 0), payload: [UInt8](repeating: 0, count: 1472))
        #expect(tooBig(ping, mtu: 1400) != nil)
    }

    @Test func noIPv4ReplyWhenNoneIsDue() {
        let big = [UInt8](repeating: 0x11, count: 1400)
        let mtu = 1280
        #expect(tooBig(ipv4(.udp(source: 1, destination: 2), payload: big, dontFragment: false), mtu: mtu) == nil)
        #expect(
            tooBig(ipv4(.raw(protocol: 17), payload: big, dontFragment: true, fragmentOffset: 100), mtu: mtu) == nil)
        #expect(tooBig(ipv4(.icmp(type: 3, code: 4), payload: big), mtu: mtu) == nil)
        #expect(tooBig(ipv4(.icmp(type: 11, code: 0), payload: big), mtu: mtu) == nil)
        // Fits the MTU.
        #expect(tooBig(ipv4(.udp(source: 1, destination: 2), payload: big), mtu: 1500) == nil)
        // MTU below 68 or above 16 bits.
        let small = ipv4(.udp(source: 1, destination: 2), payload: [UInt8](repeating: 0, count: 100))
        #expect(tooBig(small, mtu: 67) == nil)
        #expect(tooBig(small, mtu: -1) == nil)
        // Sources that are not unicast hosts.
        for source in ["0.0.0.0", "127.0.0.1", "224.0.0.1", "255.255.255.255"] {
            #expect(tooBig(ipv4(from: ip(source), .udp(source: 1, destination: 2), payload: big), mtu: mtu) == nil)
        }
        // The reply's source must be IPv4.
        #expect(tooBig(ipv4(.udp(source: 1, destination: 2), payload: big), mtu: mtu, from: gateway6) == nil)
        // Garbage.
        #expect(tooBig([0x45, 0, 0, 0], mtu: mtu) == nil)
        #expect(tooBig([], mtu: mtu) == nil)
    }

    @Test func aBufferTooSmallGetsNothing() throws {
        let original = ipv4(.udp(source: 1, destination: 2), payload: [UInt8](repeating: 0, count: 1400))
        #expect(tooBig(original, mtu: 1280, capacity: 575) == nil)
        #expect(try #require(tooBig(original, mtu: 1280, capacity: 576)).count == 576)
    }

    // MARK: - IPv6

    @Test func ipv6ReplyFieldByField() throws {
        let original = ipv6(.udp(source: 40000, destination: 443), payload: [UInt8](repeating: 0x5A, count: 1452))
        #expect(original.count == 1500)
        let reply = try #require(tooBig(original, mtu: 1420, from: gateway6))
        #expect(reply.count == 1280)

        // IPv6 header.
        #expect(readBE32(reply, 0) == 0x6000_0000)
        #expect(readBE16(reply, 4) == 1240)
        #expect(reply[6] == 58)
        #expect(reply[7] == 64)
        #expect(Array(reply[8..<24]) == gateway6.bytes)
        #expect(Array(reply[24..<40]) == consumer6.bytes)

        // ICMPv6: type 2 code 0, 32-bit MTU, the original's first 1232 bytes.
        #expect(reply[40] == 2)
        #expect(reply[41] == 0)
        #expect(readBE32(reply, 44) == 1420)
        #expect(Array(reply[48...]) == Array(original[..<1232]))
        let pseudo = pseudoHeader(source: gateway6, destination: consumer6, protocol: 58, length: 1240)
        #expect(referenceChecksum(pseudo + Array(reply[40...])) == 0)

        let info = try parse(reply)
        #expect(info.isICMPError && info.icmpType == 2)
        #expect(info.destination == consumer6)
    }

    @Test func ipv6ReplyToAFragmentedOriginal() throws {
        let original = ipv6(
            .udp(source: 1, destination: 2), payload: [UInt8](repeating: 1, count: 1400),
            extensionHeaders: [.fragment(offset: 0, more: true)])
        let reply = try #require(tooBig(original, mtu: 1280, from: gateway6))
        let pseudo = pseudoHeader(source: gateway6, destination: consumer6, protocol: 58, length: reply.count - 40)
        #expect(referenceChecksum(pseudo + Array(reply[40...])) == 0)
    }

    @Test func noIPv6ReplyWhenNoneIsDue() {
        let big = [UInt8](repeating: 0x22, count: 1400)
        #expect(tooBig(ipv6(.icmp(type: 1, code: 0), payload: big), mtu: 1280, from: gateway6) == nil)
        #expect(tooBig(ipv6(.icmp(type: 2, code: 0), payload: big), mtu: 1280, from: gateway6) == nil)
        #expect(tooBig(ipv6(.icmp(type: 128, code: 0), payload: big), mtu: 1280, from: gateway6) != nil)
        #expect(tooBig(ipv6(.udp(source: 1, destination: 2), payload: big), mtu: 1279, from: gateway6) == nil)
        #expect(tooBig(ipv6(.udp(source: 1, destination: 2), payload: big), mtu: 1500, from: gateway6) == nil)
        #expect(tooBig(ipv6(.udp(source: 1, destination: 2), payload: big), mtu: 1280, from: gateway4) == nil)
        #expect(
            tooBig(ipv6(from: ip("::"), .udp(source: 1, destination: 2), payload: big), mtu: 1280, from: gateway6)
                == nil)
        #expect(
            tooBig(ipv6(from: ip("ff02::1"), .udp(source: 1, destination: 2), payload: big), mtu: 1280, from: gateway6)
                == nil)
        #expect(
            tooBig(
                ipv6(.udp(source: 1, destination: 2), payload: big), mtu: 1280, from: gateway6, capacity: 1279) == nil)
    }

    // MARK: - InternetChecksum

    @Test func rfc1071WorkedExample() {
        // RFC 1071 §3: the words 0001 f203 f4f5 f6f7 sum to ddf2; the checksum is its complement.
        let bytes: [UInt8] = [0x00, 0x01, 0xF2, 0x03, 0xF4, 0xF5, 0xF6, 0xF7]
        #expect(bytes.withUnsafeBytes { InternetChecksum.checksum($0) } == ~UInt16(0xDDF2))
    }

    @Test func aKnownIPv4HeaderChecksum() {
        let header: [UInt8] = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00,
            0xC0, 0xA8, 0x00, 0x01, 0xC0, 0xA8, 0x00, 0xC7,
        ]
        #expect(header.withUnsafeBytes { InternetChecksum.checksum($0) } == 0xB861)
    }

    @Test func piecesOfAnyLengthSumLikeOneBuffer() {
        var random = SplitMix64(state: 7)
        for _ in 0..<200 {
            let bytes = random.bytes(Int(random.next() % 300))
            var accumulator = InternetChecksum()
            var start = 0
            while start < bytes.count {
                let end = min(bytes.count, start + Int(random.next() % 7))
                bytes[start..<end].withUnsafeBytes { accumulator.add($0) }
                start = end
            }
            #expect(accumulator.value == referenceChecksum(bytes))
        }
    }

    @Test func pseudoHeadersMatchTheirByteForms() {
        for (source, destination) in [(consumer4, public4), (consumer6, public6)] {
            var accumulator = InternetChecksum()
            accumulator.addPseudoHeader(source: source, destination: destination, protocol: 17, upperLayerLength: 1234)
            let bytes = pseudoHeader(source: source, destination: destination, protocol: 17, length: 1234)
            #expect(accumulator.value == referenceChecksum(bytes))
        }
        // The packets the tests build verify with the module's accumulator too.
        let packet = ipv6(.udp(source: 9, destination: 10), payload: [1, 2, 3])
        var accumulator = InternetChecksum()
        accumulator.addPseudoHeader(source: consumer6, destination: public6, protocol: 17, upperLayerLength: 11)
        packet[40...].withUnsafeBytes { accumulator.add($0) }
        #expect(accumulator.value == 0)
    }
}
