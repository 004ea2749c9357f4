import Testing
import UmbraCore

@testable import Tunnel

@Suite struct GROCoalescerTests {
    static let size = 1380

    /// `count` in-order data segments of one flow, `size` payload bytes each, consecutive IDs.
    static func run(
        _ count: Int, v6: Bool = false, sourcePort: UInt16 = 40000, firstSequence: UInt32 = 0xFFFF_F000,
        lastFlags: UInt8 = TCPFlags.ack, size: Int = size, seed: Int = 0
    ) -> [[UInt8]] {
        (0..<count).map { index in
            tcpSegment(
                from: v6 ? consumer6 : consumer4, to: v6 ? public6 : public4, sourcePort: sourcePort,
                sequence: firstSequence &+ UInt32(index * size),
                flags: index == count - 1 ? lastFlags : TCPFlags.ack, identification: 0xFFF0 + index,
                payload: offloadPayload(size, seed: seed + index))
        }
    }

    /// Checks a super-packet's virtio header and its fixed-up IP/TCP header against its segments.
    static func checkSuperPacket(
        _ emitted: (header: VirtioNetHeader, packet: [UInt8]), of segments: [[UInt8]]
    ) {
        let v4 = segments[0][0] >> 4 == 4
        let ip = v4 ? 20 : 40
        let headerLength = ip + 32
        let total = headerLength + segments.reduce(0) { $0 + $1.count - headerLength }
        #expect(
            emitted.header
                == VirtioNetHeader(
                    flags: VirtioNetHeader.needsChecksum,
                    gsoType: v4 ? VirtioNetHeader.gsoTCPv4 : VirtioNetHeader.gsoTCPv6,
                    headerLength: UInt16(headerLength), gsoSize: UInt16(segments[0].count - headerLength),
                    checksumStart: UInt16(ip), checksumOffset: 16))
        let packet = emitted.packet
        #expect(packet.count == total)
        if v4 {
            #expect(readBE16(packet, 2) == total)
            #expect(referenceChecksum(Array(packet[..<20])) == 0)
            #expect(readBE16(packet, 4) == readBE16(segments[0], 4))
        } else {
            #expect(readBE16(packet, 4) == total - 40)
        }
        #expect(readBE32(packet, ip + 4) == readBE32(segments[0], ip + 4))
        #expect(packet[ip + 13] == segments.last![ip + 13])
        // The checksum field holds the pseudo-header sum, folded, not complemented.
        let source = v4 ? IPAddress.v4(readBE32(packet, 12)) : ipv6Address(packet, at: 8)
        let destination = v4 ? IPAddress.v4(readBE32(packet, 16)) : ipv6Address(packet, at: 24)
        let pseudo = pseudoHeader(source: source, destination: destination, protocol: 6, length: total - ip)
        #expect(UInt16(readBE16(packet, ip + 16)) == ~referenceChecksum(pseudo))
        #expect(Array(packet[headerLength...]) == segments.flatMap { $0[headerLength...] })
    }

    /// The splitter's view of a coalesced write: the kernel's segmentation, simulated.
    static func resplit(_ emitted: (header: VirtioNetHeader, packet: [UInt8])) throws -> [[UInt8]] {
        var header = [UInt8](repeating: 0, count: 10)
        header.withUnsafeMutableBytes { emitted.header.encode(into: $0) }
        return try split(header + emitted.packet, stride: 1500, leadingSpace: 0)
    }

    @Test(arguments: [false, true])
    func anInOrderRunBecomesOneSuperPacket(v6: Bool) throws {
        let segments = Self.run(44, v6: v6, lastFlags: TCPFlags.ack | TCPFlags.psh)
        let emitted = coalesce(segments)
        try #require(emitted.count == 1)
        Self.checkSuperPacket(emitted[0], of: segments)
        // Cut again, the super-packet gives back the very segments.
        #expect(try Self.resplit(emitted[0]) == segments)
    }

    @Test func aShorterLastSegmentJoinsAndEndsTheFlow() throws {
        var segments = Self.run(3)
        segments.append(
            tcpSegment(
                sequence: 0xFFFF_F000 &+ UInt32(3 * Self.size), identification: 0xFFF3, payload: offloadPayload(600)))
        let after = tcpSegment(
            sequence: 0xFFFF_F000 &+ UInt32(3 * Self.size + 600), identification: 0xFFF4,
            payload: offloadPayload(Self.size))
        let emitted = coalesce(segments + [after])
        try #require(emitted.count == 2)
        Self.checkSuperPacket(emitted[0], of: segments)
        #expect(try Self.resplit(emitted[0]) == segments)
        #expect(emitted[1].header == VirtioNetHeader())
        #expect(emitted[1].packet == after)
    }

    @Test func aSuperPacketStaysWithin65535Bytes() throws {
        let segments = Self.run(50)
        let emitted = coalesce(segments)
        try #require(emitted.count == 2)
        // 52 + 47 * 1380 = 64 912; one more would be 66 292.
        Self.checkSuperPacket(emitted[0], of: Array(segments[..<47]))
        Self.checkSuperPacket(emitted[1], of: Array(segments[47...]))
    }

    @Test func flowsAreKeptApartAndInArrivalOrder() throws {
        let a = Self.run(3, sourcePort: 1111, seed: 1)
        let b = Self.run(3, sourcePort: 2222, seed: 2)
        let c = Self.run(2, v6: true, sourcePort: 1111, seed: 3)
        let udp = ipv4(.udp(source: 1111, destination: 443))
        let emitted = coalesce([a[0], b[0], udp, c[0], a[1], b[1], c[1], a[2], b[2]])
        try #require(emitted.count == 4)
        Self.checkSuperPacket(emitted[0], of: a)
        Self.checkSuperPacket(emitted[1], of: b)
        #expect(emitted[2].header == VirtioNetHeader() && emitted[2].packet == udp)
        Self.checkSuperPacket(emitted[3], of: c)
    }

    @Test func outOfOrderSegmentsAreNotMerged() throws {
        let segments = Self.run(4)
        let emitted = coalesce([segments[0], segments[2], segments[1], segments[3]])
        // Each segment fails to follow the newest flow's data, closes it and starts its own: all go
        // out alone, in arrival order.
        #expect(emitted.map(\.packet) == [segments[0], segments[2], segments[1], segments[3]])
        #expect(emitted.allSatisfy { $0.header == VirtioNetHeader() })
    }

    @Test func pushEndsTheFlow() throws {
        let segments = Self.run(4)
        var pushed = segments
        pushed[1] = tcpSegment(
            sequence: 0xFFFF_F000 &+ UInt32(Self.size), flags: TCPFlags.ack | TCPFlags.psh, identification: 0xFFF1,
            payload: offloadPayload(Self.size, seed: 1))
        let emitted = coalesce(pushed)
        try #require(emitted.count == 2)
        Self.checkSuperPacket(emitted[0], of: Array(pushed[..<2]))
        #expect(emitted[0].packet[33] & TCPFlags.psh != 0)
        Self.checkSuperPacket(emitted[1], of: Array(pushed[2...]))
    }

    /// SYN, FIN, RST, URG, CWR, no ACK, a pure ACK: none is merged, and each closes the flow so the
    /// flow's order holds.
    @Test(arguments: [
        TCPFlags.syn | TCPFlags.ack, TCPFlags.fin | TCPFlags.ack, TCPFlags.rst | TCPFlags.ack,
        TCPFlags.urg | TCPFlags.ack, TCPFlags.cwr | TCPFlags.ack, 0,
    ])
    func controlSegmentsAreNotMerged(flags: UInt8) throws {
        let segments = Self.run(3)
        var odd = segments
        odd[1] = tcpSegment(
            sequence: 0xFFFF_F000 &+ UInt32(Self.size), flags: flags, identification: 0xFFF1,
            payload: offloadPayload(Self.size, seed: 1))
        let emitted = coalesce(odd)
        #expect(emitted.map(\.packet) == odd)
        #expect(emitted.allSatisfy { $0.header == VirtioNetHeader() })
    }

    @Test func aPureACKInTheMiddleKeepsItsPlace() {
        let segments = Self.run(2)
        let ack = tcpSegment(sequence: 0xFFFF_F000 &+ UInt32(Self.size), identification: 0xFFF1, payload: [])
        let emitted = coalesce([segments[0], ack, segments[1]])
        #expect(emitted.map(\.packet) == [segments[0], ack, segments[1]])
    }

    @Test func differingHeadersAreNotMerged() {
        let first = Self.run(1)[0]
        let sequence = 0xFFFF_F000 &+ UInt32(Self.size)
        let payload = offloadPayload(Self.size)
        let variants: [(String, [UInt8])] = [
            ("options", tcpSegment(sequence: sequence, options: timestampOption(0x0102_0305), payload: payload)),
            ("no options", tcpSegment(sequence: sequence, options: [], payload: payload)),
            ("acknowledgment", tcpSegment(sequence: sequence, acknowledgment: 1, payload: payload)),
            ("window", tcpSegment(sequence: sequence, window: 9, payload: payload)),
            ("ECE", tcpSegment(sequence: sequence, flags: TCPFlags.ack | TCPFlags.ece, payload: payload)),
            ("DF", tcpSegment(sequence: sequence, dontFragment: false, payload: payload)),
            ("IP options", tcpSegment(sequence: sequence, ipOptions: [1, 1, 1, 0], payload: payload)),
            ("larger", tcpSegment(sequence: sequence, payload: offloadPayload(Self.size + 1))),
            ("port", tcpSegment(destinationPort: 444, sequence: sequence, payload: payload)),
            ("address", tcpSegment(to: gateway4, sequence: sequence, payload: payload)),
            ("corrupt", withByte(tcpSegment(sequence: sequence, payload: payload), 100, 0)),
            (
                "corrupt IP header",
                withByte(
                    tcpSegment(sequence: sequence, payload: payload), 11,
                    tcpSegment(sequence: sequence, payload: payload)[11] ^ 0xFF)
            ),
        ]
        for (name, second) in variants {
            let emitted = coalesce([first, second])
            #expect(emitted.map(\.packet) == [first, second], "\(name)")
        }
    }

    @Test func withoutDFTheIdentificationsMustCount() throws {
        let sequence = 0xFFFF_F000 &+ UInt32(Self.size)
        let first = tcpSegment(identification: 7, dontFragment: false, payload: offloadPayload(Self.size))
        let next = tcpSegment(
            sequence: sequence, identification: 8, dontFragment: false, payload: offloadPayload(Self.size))
        let skipped = tcpSegment(
            sequence: sequence, identification: 9, dontFragment: false, payload: offloadPayload(Self.size))
        #expect(coalesce([first, next]).count == 1)
        #expect(coalesce([first, skipped]).count == 2)
    }

    @Test func otherPacketsPassThroughUntouched() {
        let packets = [
            ipv4(.udp(source: 1, destination: 2)), ipv6(.icmp(type: 128, code: 0)), [0x45, 0, 0],
            ipv4(.tcp(source: 1, destination: 2)), [], ipv4(.raw(protocol: 6), payload: [1, 2, 3]),
        ]
        let emitted = coalesce(packets)
        #expect(emitted.map(\.packet) == packets)
        #expect(emitted.allSatisfy { $0.header == VirtioNetHeader() })
    }

    @Test func aFullBatchRefusesAndRecovers() {
        var coalescer = GROCoalescer(maximumPackets: 2, maximumFlows: 1)
        let packet = ipv4(.udp(source: 1, destination: 2))
        var writes = 0
        packet.withUnsafeBytes { buffer in
            let first = coalescer.add(buffer)
            let second = coalescer.add(buffer)
            let third = coalescer.add(buffer)
            #expect(first && second && !third)
            #expect(coalescer.pendingCount == 2)
            coalescer.flush { _ in writes += 1 }
            #expect(coalescer.pendingCount == 0)
            let again = coalescer.add(buffer)
            #expect(again)
            coalescer.reset()
            coalescer.flush { _ in writes += 1 }
        }
        #expect(writes == 2)
        let huge = [UInt8](repeating: 0x45, count: 65536)
        let taken = huge.withUnsafeBytes { coalescer.add($0) }
        #expect(!taken)
    }

    @Test func theFlowLimitLeavesTheRestPlain() {
        let a = Self.run(2, sourcePort: 1)
        let b = Self.run(2, sourcePort: 2)
        let emitted = coalesce([a[0], b[0], a[1], b[1]], maximumFlows: 1)
        #expect(emitted.count == 3)
        #expect(emitted[1].packet == b[0] && emitted[2].packet == b[1])
    }

    /// The round trip the data plane makes: TSO read on one side, split, (tunnel), coalesced on the
    /// other side into a super-packet carrying the same bytes.
    @Test(arguments: [false, true])
    func splitThenCoalescePreservesThePayload(v6: Bool) throws {
        let payload = offloadPayload(60_000, seed: 9)
        let superPacket = tcpSegment(
            from: v6 ? consumer6 : consumer4, to: v6 ? public6 : public4, flags: TCPFlags.ack | TCPFlags.psh,
            payload: payload, checksum: false)
        let segments = try split(tsoRead(superPacket, gsoSize: 1368))
        #expect(segments.count == 44)
        let emitted = coalesce(segments)
        try #require(emitted.count == 1)
        Self.checkSuperPacket(emitted[0], of: segments)
        let headerLength = (v6 ? 40 : 20) + 32
        #expect(Array(emitted[0].packet[headerLength...]) == payload)
        #expect(Array(emitted[0].packet[..<headerLength]).count == headerLength)
    }
}
/// What the coalescer emits for `packets`, each as (virtio header, packet).
func coalesce(
    _ packets: [[UInt8]], maximumPackets: Int = 64, maximumFlows: Int = 64
) -> [(
    header: VirtioNetHeader, packet: [UInt8]
)] {
    var coalescer = GROCoalescer(maximumPackets: maximumPackets, maximumFlows: maximumFlows)
    var emitted: [(header: VirtioNetHeader, packet: [UInt8])] = []
    // The coalescer reads the packets again at flush: keep them in one stable allocation.
    let flat = packets.flatMap { $0 }
    flat.withUnsafeBytes { all in
        var offset = 0
        for packet in packets {
            let slice = UnsafeRawBufferPointer(rebasing: all[offset..<offset + packet.count])
            if !coalescer.add(slice) {
                coalescer.flush { emitted.append(decodeWrite($0)) }
                precondition(coalescer.add(slice), "a packet refused by an empty batch")
            }
            offset += packet.count
        }
        coalescer.flush { emitted.append(decodeWrite($0)) }
    }
    return emitted
}

func decodeWrite(_ write: UnsafeRawBufferPointer) -> (header: VirtioNetHeader, packet: [UInt8]) {
    let header = try! VirtioNetHeader(decoding: write)
    return (header, Array(write[VirtioNetHeader.size...]))
}
