import Testing
import UmbraCore

@testable import Tunnel

@Suite struct InternetChecksumSpeedPathTests {
    /// The word-at-a-time path against the plain reference, over every alignment, odd lengths and
    /// pieces that split words.
    @Test(arguments: [0, 1, 2, 3, 7, 63, 64, 65, 1399, 1400, 1401, 4096])
    func matchesTheReference(length: Int) {
        let bytes = offloadPayload(length + 8, seed: length)
        for start in 0..<4 {
            let piece = Array(bytes[start..<start + length])
            let whole = piece.withUnsafeBytes { InternetChecksum.checksum($0) }
            #expect(whole == referenceChecksum(piece))
            for cut in [0, 1, length / 2, max(0, length - 1)] where cut <= length {
                var checksum = InternetChecksum()
                piece.withUnsafeBytes { buffer in
                    checksum.add(UnsafeRawBufferPointer(rebasing: buffer[..<cut]))
                    checksum.add(UnsafeRawBufferPointer(rebasing: buffer[cut...]))
                }
                #expect(checksum.value == referenceChecksum(piece), "length \(length) cut at \(cut)")
            }
        }
    }

    @Test func allOnesAndZeros() {
        let ones = [UInt8](repeating: 0xFF, count: 1500)
        #expect(ones.withUnsafeBytes { InternetChecksum.checksum($0) } == referenceChecksum(ones))
        let zeros = [UInt8](repeating: 0, count: 1500)
        #expect(zeros.withUnsafeBytes { InternetChecksum.checksum($0) } == 0xFFFF)
    }
}

@Suite struct VirtioNetHeaderTests {
    @Test func roundTripsLittleEndian() throws {
        let bytes = vnetHeader(
            flags: 1, gsoType: 0x84, headerLength: 0x0134, gsoSize: 1380, checksumStart: 40, checksumOffset: 16)
        let header = try bytes.withUnsafeBytes { try VirtioNetHeader(decoding: $0) }
        #expect(
            header
                == VirtioNetHeader(
                    flags: 1, gsoType: 0x84, headerLength: 0x0134, gsoSize: 1380, checksumStart: 40,
                    checksumOffset: 16))
        var encoded = [UInt8](repeating: 0xEE, count: 12)
        encoded.withUnsafeMutableBytes { header.encode(into: $0) }
        #expect(Array(encoded[..<10]) == bytes)
        #expect(encoded[10...] == [0xEE, 0xEE])
    }

    @Test func refusesAShortBuffer() {
        #expect(throws: DecodeError.truncated(offset: 0, needed: 10)) {
            try [UInt8](repeating: 0, count: 9).withUnsafeBytes { try VirtioNetHeader(decoding: $0) }
        }
    }
}

@Suite struct TSOSplitterTests {
    static let gsoSize = 1380

    /// A 20 000-byte TSO super-packet in IPv4 (with and without IP options) and IPv6, split into
    /// 15 segments, every field checked.
    @Test(arguments: [
        (consumer4, public4, [UInt8]()), (consumer4, public4, [1, 1, 1, 0]), (consumer6, public6, [UInt8]()),
    ])
    func splitsATSOSuperPacket(source: IPAddress, destination: IPAddress, ipOptions: [UInt8]) throws {
        let payload = offloadPayload(20_000)
        let flags = TCPFlags.ack | TCPFlags.psh | TCPFlags.fin | TCPFlags.cwr | TCPFlags.ece
        let superPacket = tcpSegment(
            from: source, to: destination, sequence: 0xFFFF_F000, flags: flags, identification: 0xFFFE,
            ipOptions: ipOptions, payload: payload, checksum: false)
        let v4 = source.bytes.count == 4
        let ipHeaderLength = v4 ? 20 + ipOptions.count : 40
        let headerLength = ipHeaderLength + 32

        let segments = try split(tsoRead(superPacket, gsoSize: Self.gsoSize))
        #expect(segments.count == 15)
        for (index, segment) in segments.enumerated() {
            let last = index == segments.count - 1
            let chunk = last ? 20_000 - 14 * Self.gsoSize : Self.gsoSize
            #expect(segment.count == headerLength + chunk)
            if v4 {
                #expect(readBE16(segment, 2) == segment.count)
                #expect(readBE16(segment, 4) == (0xFFFE + index) & 0xFFFF)
                #expect(readBE16(segment, 6) == 0x4000)
                #expect(Array(segment[8..<10]) == Array(superPacket[8..<10]))
                #expect(Array(segment[12..<ipHeaderLength]) == Array(superPacket[12..<ipHeaderLength]))
            } else {
                #expect(Array(segment[..<4]) == Array(superPacket[..<4]))
                #expect(readBE16(segment, 4) == segment.count - 40)
                #expect(Array(segment[6..<40]) == Array(superPacket[6..<40]))
            }
            let tcp = ipHeaderLength
            #expect(Array(segment[tcp..<tcp + 4]) == Array(superPacket[tcp..<tcp + 4]))  // ports
            #expect(readBE32(segment, tcp + 4) == 0xFFFF_F000 &+ UInt32(index * Self.gsoSize))
            #expect(Array(segment[tcp + 8..<tcp + 13]) == Array(superPacket[tcp + 8..<tcp + 13]))
            var expectedFlags = TCPFlags.ack | TCPFlags.ece
            if index == 0 { expectedFlags |= TCPFlags.cwr }
            if last { expectedFlags |= TCPFlags.psh | TCPFlags.fin }
            #expect(segment[tcp + 13] == expectedFlags)
            #expect(Array(segment[tcp + 14..<tcp + 16]) == Array(superPacket[tcp + 14..<tcp + 16]))  // window
            #expect(Array(segment[tcp + 18..<headerLength]) == Array(superPacket[tcp + 18..<headerLength]))
            #expect(
                Array(segment[headerLength...]) == Array(payload[index * Self.gsoSize..<index * Self.gsoSize + chunk]))
            #expect(checksumsVerify(segment), "segment \(index)")
            #expect(try parse(segment).totalLength == segment.count)
        }
    }

    /// hdr_len is a hint: the kernel may report the whole linear part of a forwarded packet.
    @Test(arguments: [0, 54, 1000])
    func computesTheHeaderLengthItself(hint: Int) throws {
        let superPacket = tcpSegment(payload: offloadPayload(3000), checksum: false)
        let segments = try split(tsoRead(superPacket, gsoSize: 1400, headerLength: hint))
        #expect(segments.map(\.count) == [1452, 1452, 252])
        #expect(segments.allSatisfy { checksumsVerify($0) })
    }

    @Test func splitsUDPSegmentation() throws {
        let payload = offloadPayload(4000)
        let datagram = ipv4(.udp(source: 5000, destination: 53), payload: payload)
        let read =
            vnetHeader(
                flags: 1, gsoType: VirtioNetHeader.gsoUDP, headerLength: 28, gsoSize: 1200, checksumStart: 20,
                checksumOffset: 6) + datagram
        let segments = try split(read)
        #expect(segments.map(\.count) == [1228, 1228, 1228, 428])
        for (index, segment) in segments.enumerated() {
            #expect(readBE16(segment, 24) == segment.count - 20)
            #expect(readBE16(segment, 4) == 0x1C46 + index)
            #expect(checksumsVerify(segment, protocol: 17))
            #expect(Array(segment[28...]) == Array(payload[index * 1200..<min(4000, index * 1200 + 1200)]))
        }
    }

    @Test func aPayloadOfExactlyOneSegmentIsOnePacket() throws {
        let superPacket = tcpSegment(payload: offloadPayload(1380), checksum: false)
        let segments = try split(tsoRead(superPacket, gsoSize: 1380))
        #expect(segments.count == 1)
        #expect(checksumsVerify(segments[0]))
    }

    @Test func leadingSpaceZeroPacksSlotsTightly() throws {
        let superPacket = tcpSegment(payload: offloadPayload(2760), checksum: false)
        let segments = try split(tsoRead(superPacket, gsoSize: 1380), stride: 1432, leadingSpace: 0, maximumSegments: 2)
        #expect(segments.map(\.count) == [1432, 1432])
    }

    // MARK: - gso_type NONE

    @Test(arguments: [false, true])
    func completesAPartialChecksum(v6: Bool) throws {
        let partial = tcpSegment(
            from: v6 ? consumer6 : consumer4, to: v6 ? public6 : public4, payload: offloadPayload(777),
            checksum: false)
        let ipHeaderLength = v6 ? 40 : 20
        let read = vnetHeader(flags: 1, checksumStart: ipHeaderLength, checksumOffset: 16) + partial
        let segments = try split(read)
        #expect(segments.count == 1)
        #expect(checksumsVerify(segments[0]))
        let complete = tcpSegment(
            from: v6 ? consumer6 : consumer4, to: v6 ? public6 : public4, payload: offloadPayload(777))
        #expect(segments[0] == complete)
    }

    @Test func completesAPartialUDPChecksum() throws {
        var datagram = ipv4(.udp(source: 1, destination: 2), payload: offloadPayload(99))
        // Replace the full checksum by the pseudo-header sum.
        let pseudo = pseudoHeader(source: consumer4, destination: public4, protocol: 17, length: datagram.count - 20)
        let partial = ~referenceChecksum(pseudo)
        let full = readBE16(datagram, 26)
        datagram[26] = UInt8(partial >> 8)
        datagram[27] = UInt8(partial & 0xFF)
        let segments = try split(vnetHeader(flags: 1, checksumStart: 20, checksumOffset: 6) + datagram)
        #expect(readBE16(segments[0], 26) == full)
    }

    @Test func passesAPlainPacketThrough() throws {
        let packet = ipv6(.icmp(type: 128, code: 0), payload: offloadPayload(56))
        #expect(try split(vnetHeader() + packet) == [packet])
        #expect(try split(vnetHeader(flags: VirtioNetHeader.dataValid) + packet, leadingSpace: 0) == [packet])
    }

    // MARK: - Refusals

    static let good = tcpSegment(payload: offloadPayload(3000), checksum: false)
    static let good6 = tcpSegment(from: consumer6, to: public6, payload: offloadPayload(3000), checksum: false)

    static let malformed: [(String, [UInt8])] = [
        ("no virtio header", [1, 0, 0]),
        ("header only", vnetHeader()),
        ("gso_size 0", tsoRead(good, gsoSize: 0)),
        ("hdr_len beyond the packet", tsoRead(good, gsoSize: 1400, headerLength: good.count + 1)),
        ("unknown gso_type", vnetHeader(gsoType: 2, gsoSize: 1400) + good),
        ("TCPV4 on IPv6", vnetHeader(gsoType: 1, gsoSize: 1400) + good6),
        ("TCPV6 on IPv4", vnetHeader(gsoType: 4, gsoSize: 1400) + good),
        ("TCPV4 on UDP", vnetHeader(gsoType: 1, gsoSize: 1400) + ipv4(.udp(source: 1, destination: 2))),
        ("UDP on TCP", vnetHeader(gsoType: 3, gsoSize: 1400) + good),
        (
            "IPv6 extension header",
            vnetHeader(gsoType: 4, gsoSize: 1000)
                + ipv6(.tcp(source: 1, destination: 2), payload: offloadPayload(3000), extensionHeaders: [.hopByHop])
        ),
        ("IPv4 fragment", vnetHeader(gsoType: 1, gsoSize: 1000) + withByte(good, 6, 0x20)),
        ("IHL below 5", vnetHeader(gsoType: 1, gsoSize: 1000) + withByte(good, 0, 0x44)),
        ("TCP data offset below 5", vnetHeader(gsoType: 1, gsoSize: 1000) + withByte(good, 32, 0x40)),
        (
            "TCP data offset past the end",
            tsoRead(withByte(tcpSegment(options: [], payload: []), 32, 0xF0), gsoSize: 1000)
        ),
        ("IPv4 total length past the read", tsoRead(Array(good.dropLast()), gsoSize: 1000)),
        ("IPv6 payload length past the read", tsoRead(Array(good6.dropLast()), gsoSize: 1000)),
        ("truncated IPv4 header", vnetHeader(gsoType: 1, gsoSize: 1000) + Array(good[..<19])),
        ("too many segments", tsoRead(good, gsoSize: 40)),
        ("segment larger than its slot", tsoRead(good, gsoSize: 1449)),
        ("checksum field beyond the packet", vnetHeader(flags: 1, checksumStart: 20, checksumOffset: 2999) + good),
        ("packet larger than its slot", vnetHeader() + good),
    ]

    @Test(arguments: malformed)
    func refusesMalformedInput(name: String, read: [UInt8]) {
        #expect(throws: DecodeError.self, "\(name)") { try split(read, maximumSegments: 64) }
    }

    @Test func refusesWhenOutputIsShort() throws {
        let read = tsoRead(Self.good, gsoSize: 1000)
        // Three segments of 1052 bytes: the third slot starts at 3000 and needs 1 + 1052 bytes.
        #expect(throws: DecodeError.self) { try split(read, outputSize: 3000 + 1052) }
        let fitting = try split(read, outputSize: 3000 + 1 + 1052)
        #expect(fitting.count == 3)
        #expect(throws: DecodeError.self) { try split(read, maximumSegments: 2) }
        #expect(throws: DecodeError.self) { try split(read, stride: 1, leadingSpace: 1) }
    }
}

/// `bytes` with byte `offset` replaced.
func withByte(_ bytes: [UInt8], _ offset: Int, _ value: UInt8) -> [UInt8] {
    var copy = bytes
    copy[offset] = value
    return copy
}
