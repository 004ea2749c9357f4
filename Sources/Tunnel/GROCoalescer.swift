// Receive offload, write direction: the packets a batch of session datagrams brought are written to
// a TUN device opened with IFF_VNET_HDR, and every write needs a virtio_net_hdr in front. Writing
// each TCP segment on its own costs a syscall and a trip through the kernel's stack per 1.4 KB; the
// kernel takes instead one "super-packet" of up to 64 KiB per flow (gso_type TCPV4/TCPV6), which
// its stack handles as one skb, the way its own GRO would have built it.
//
// 1. add(packet), once per packet of a batch: TCP segments that continue a flow's super-packet are
//    chained to it; everything else is noted as a plain packet. Nothing is copied yet.
// 2. flush(emit), once per batch: in the order in which each packet or flow first arrived, emits a
//    virtio_net_hdr + packet ready for write(2), built in one preallocated 64 KiB buffer.
//
// A segment joins the newest flow with its addresses, ports and IP version when: the flow is still
// open (its last segment neither had PSH nor was shorter than the flow's segment size); the IP
// headers agree (IPv4: header length and options, TOS, DF and reserved bits, TTL, and with DF clear
// the next identification; IPv6: version, traffic class, flow label, hop limit; no extension
// headers); the TCP headers agree (data offset, options, acknowledgment number, window, flags but
// PSH); only ACK and optionally PSH and ECE are set; its sequence number follows the flow's data;
// its payload is not empty and at most the flow's segment size (the first segment's payload); the
// super-packet stays within 65535 bytes; and its checksums (like the flow's first's) are valid —
// the kernel trusts a NEEDS_CSUM packet's data, so a corrupt segment must not hide in one. Any other
// TCP packet of the flow closes it, so a flow's packets keep their order.
//
// A super-packet goes out with NEEDS_CSUM, csum_start at the TCP header, csum_offset 16, the
// pseudo-header sum in the TCP checksum field (CHECKSUM_PARTIAL), gso_size the segment size,
// hdr_len the IP + TCP headers, PSH when its last segment had it, the IPv4 total length and header
// checksum or the IPv6 payload length rewritten. A flow of one segment and every other packet go
// out unchanged after a zero header.
//
// Bounded: at most `maximumPackets` packets and `maximumFlows` flows per batch; the state is arrays
// reserved at init and one 10 + 65535-byte buffer, so add and flush never allocate.
// NOTE: Not thread safe; one coalescer per writer. The packets handed to add are read again by
// flush: they must stay valid and unchanged until flush or reset.

import UmbraCore

/// Coalesces a batch of IP packets into TCP super-packets for a TUN device with IFF_VNET_HDR
/// (see the file header).
public struct GROCoalescer: ~Copyable {
    /// The largest IP packet: a super-packet never exceeds it, a longer packet is refused.
    public static let maximumPacketLength = 65535

    public let maximumPackets: Int
    public let maximumFlows: Int

    private var packets: [UnsafeRawBufferPointer]
    /// For each packet in a flow, the index of the flow's next segment, or -1.
    private var nextInFlow: [Int]
    private var flows: [Flow]
    private var units: [Unit]
    /// Where emitted packets are built: a virtio header and up to 65535 bytes.
    private let buffer: UnsafeMutableRawBufferPointer

    /// A coalescer for batches of at most `maximumPackets` packets and `maximumFlows` flows (both
    /// at least 1).
    public init(maximumPackets: Int = 64, maximumFlows: Int = 64) {
        precondition(maximumPackets > 0 && maximumFlows > 0, "a coalescer needs room for a packet and a flow")
        self.maximumPackets = maximumPackets
        self.maximumFlows = maximumFlows
        packets = []
        packets.reserveCapacity(maximumPackets)
        nextInFlow = []
        nextInFlow.reserveCapacity(maximumPackets)
        flows = []
        flows.reserveCapacity(maximumFlows)
        units = []
        units.reserveCapacity(maximumPackets)
        buffer = .allocate(byteCount: VirtioNetHeader.size + Self.maximumPacketLength, alignment: 16)
    }

    deinit { buffer.deallocate() }

    /// The number of packets added since the last flush or reset.
    public var pendingCount: Int { packets.count }

    /// Forgets the batch without emitting anything.
    public mutating func reset() {
        packets.removeAll(keepingCapacity: true)
        nextInFlow.removeAll(keepingCapacity: true)
        flows.removeAll(keepingCapacity: true)
        units.removeAll(keepingCapacity: true)
    }

    /// Adds one plain IP packet to the batch. Returns false, without taking it, when the batch
    /// already holds `maximumPackets` packets (flush, then add it again) or the packet is longer
    /// than 65535 bytes (no IP packet is; drop it). `packet` must stay valid and unchanged until
    /// the next flush or reset.
    public mutating func add(_ packet: UnsafeRawBufferPointer) -> Bool {
        guard packets.count < maximumPackets, packet.count <= Self.maximumPacketLength else { return false }
        let index = packets.count
        packets.append(packet)
        nextInFlow.append(-1)
        guard let segment = Segment(parsing: packet) else {
            units.append(.single(index))
            return true
        }
        if let flowIndex = newestFlow(segment.key) {
            if segment.isMergeable, append(segment, index: index, to: flowIndex) { return true }
            flows[flowIndex].closed = true
        }
        if segment.isMergeable, segment.flags & TCPFlag.psh == 0, flows.count < maximumFlows {
            units.append(.flow(flows.count))
            flows.append(Flow(segment, index: index))
        } else {
            units.append(.single(index))
        }
        return true
    }

    /// Emits every packet of the batch — a virtio_net_hdr followed by the packet, ready for
    /// write(2) — in the order in which each packet or flow first arrived, then forgets the batch.
    /// The buffer handed to `emit` is valid only during the call.
    public mutating func flush(_ emit: (UnsafeRawBufferPointer) -> Void) {
        for unit in units {
            switch unit {
            case .single(let index):
                emitPlain(packets[index], emit)
            case .flow(let flowIndex):
                let flow = flows[flowIndex]
                if flow.segments == 1 {
                    emitPlain(packets[flow.first], emit)
                } else {
                    emitSuperPacket(flow, emit)
                }
            }
        }
        reset()
    }

    // MARK: - Batch state

    private enum Unit {
        case single(Int)
        case flow(Int)
    }

    /// The addresses, ports and IP version of a TCP packet, as native words (only compared).
    private struct FlowKey: Equatable {
        var a: UInt64
        var b: UInt64
        var c: UInt64
        var d: UInt64
        var ports: UInt32
        var isIPv4: Bool
    }

    private enum TCPFlag {
        static let fin: UInt8 = 0x01
        static let syn: UInt8 = 0x02
        static let rst: UInt8 = 0x04
        static let psh: UInt8 = 0x08
        static let ack: UInt8 = 0x10
        static let urg: UInt8 = 0x20
        static let cwr: UInt8 = 0x80
    }

    /// What `add` reads of a TCP packet.
    private struct Segment {
        let key: FlowKey
        let ipHeaderLength: Int
        let headerLength: Int
        let totalLength: Int
        let sequence: UInt32
        let flags: UInt8

        var payload: Int { totalLength - headerLength }
        /// May join or start a flow (checksum aside): carries data, ACK set, nothing but PSH or ECE
        /// besides.
        var isMergeable: Bool {
            payload > 0 && flags & TCPFlag.ack != 0
                && flags & (TCPFlag.fin | TCPFlag.syn | TCPFlag.rst | TCPFlag.urg | TCPFlag.cwr) == 0
        }

        /// Parses an unfragmented TCP packet (IPv4, or IPv6 without extension headers); nil for
        /// anything else.
        init?(parsing packet: UnsafeRawBufferPointer) {
            guard packet.count >= 40, let base = packet.baseAddress else { return nil }
            var key: FlowKey
            switch packet[0] >> 4 {
            case 4:
                ipHeaderLength = Int(packet[0] & 0x0F) * 4
                totalLength = Int(packet.bigEndianUInt16(at: 2))
                // The header checksum too: a super-packet gets a fresh one, which must not launder
                // a corrupt header (the kernel checks it on every write).
                guard ipHeaderLength >= 20, packet[9] == IPProtocolNumber.tcp,
                    packet.bigEndianUInt16(at: 6) & 0x3FFF == 0, totalLength <= packet.count,
                    ipHeaderLength <= totalLength,
                    InternetChecksum.checksum(UnsafeRawBufferPointer(rebasing: packet[..<ipHeaderLength])) == 0
                else { return nil }
                let addresses = base.loadUnaligned(fromByteOffset: 12, as: UInt64.self)
                key = FlowKey(a: addresses, b: 0, c: 0, d: 0, ports: 0, isIPv4: true)
            case 6:
                ipHeaderLength = 40
                totalLength = 40 + Int(packet.bigEndianUInt16(at: 4))
                guard packet[6] == IPProtocolNumber.tcp, totalLength <= packet.count else { return nil }
                key = FlowKey(
                    a: base.loadUnaligned(fromByteOffset: 8, as: UInt64.self),
                    b: base.loadUnaligned(fromByteOffset: 16, as: UInt64.self),
                    c: base.loadUnaligned(fromByteOffset: 24, as: UInt64.self),
                    d: base.loadUnaligned(fromByteOffset: 32, as: UInt64.self), ports: 0, isIPv4: false)
            default:
                return nil
            }
            guard ipHeaderLength + 20 <= totalLength else { return nil }
            let tcpHeaderLength = Int(packet[ipHeaderLength + 12] >> 4) * 4
            guard tcpHeaderLength >= 20, ipHeaderLength + tcpHeaderLength <= totalLength else { return nil }
            headerLength = ipHeaderLength + tcpHeaderLength
            key.ports = base.loadUnaligned(fromByteOffset: ipHeaderLength, as: UInt32.self)
            self.key = key
            sequence = packet.bigEndianUInt32(at: ipHeaderLength + 4)
            flags = packet[ipHeaderLength + 13]
        }
    }

    /// A super-packet being assembled: a chain of packet indices through `nextInFlow`.
    private struct Flow {
        let key: FlowKey
        let first: Int
        var last: Int
        var segments = 1
        let ipHeaderLength: Int
        let headerLength: Int
        /// The payload of every segment but possibly the last.
        let segmentSize: Int
        let flags: UInt8
        var nextSequence: UInt32
        var nextIdentification: UInt16
        var totalLength: Int
        var closed = false
        var push = false
        var firstChecked = false

        init(_ segment: Segment, index: Int) {
            key = segment.key
            first = index
            last = index
            ipHeaderLength = segment.ipHeaderLength
            headerLength = segment.headerLength
            segmentSize = segment.payload
            flags = segment.flags
            nextSequence = segment.sequence &+ UInt32(segment.payload)
            nextIdentification = 0
            totalLength = segment.totalLength
        }
    }

    private func newestFlow(_ key: FlowKey) -> Int? {
        var index = flows.count - 1
        while index >= 0 {
            if flows[index].key == key { return index }
            index -= 1
        }
        return nil
    }

    /// Chains `segment` (packet `index`) to flow `flowIndex` when the file header's rules allow.
    private mutating func append(_ segment: Segment, index: Int, to flowIndex: Int) -> Bool {
        let flow = flows[flowIndex]
        guard !flow.closed, segment.sequence == flow.nextSequence, segment.payload <= flow.segmentSize,
            segment.headerLength == flow.headerLength, segment.ipHeaderLength == flow.ipHeaderLength,
            segment.flags & ~TCPFlag.psh == flow.flags,
            flow.totalLength + segment.payload <= Self.maximumPacketLength
        else { return false }
        let packet = packets[index]
        let head = packets[flow.first]
        let ip = flow.ipHeaderLength
        var identification: UInt16 = 0
        if flow.key.isIPv4 {
            // TOS; DF and reserved bits; TTL; options. Without DF the identifications must count up.
            guard packet[1] == head[1], packet[6] >> 5 == head[6] >> 5, packet[8] == head[8],
                Self.equal(packet, head, 20..<ip)
            else { return false }
            identification = packet.bigEndianUInt16(at: 4)
            let dontFragment = packet[6] & 0x40 != 0
            if !dontFragment {
                let expected =
                    flow.segments == 1 ? head.bigEndianUInt16(at: 4) &+ 1 : flow.nextIdentification
                guard identification == expected else { return false }
            }
        } else {
            // Version, traffic class, flow label; hop limit.
            guard Self.equal(packet, head, 0..<4), packet[7] == head[7] else { return false }
        }
        // Acknowledgment number; window; options.
        guard Self.equal(packet, head, ip + 8..<ip + 12), Self.equal(packet, head, ip + 14..<ip + 16),
            Self.equal(packet, head, ip + 20..<flow.headerLength)
        else { return false }
        guard Self.checksumIsValid(packet, ipHeaderLength: ip, totalLength: segment.totalLength) else { return false }
        if !flow.firstChecked {
            guard Self.checksumIsValid(head, ipHeaderLength: ip, totalLength: flow.totalLength) else { return false }
            flows[flowIndex].firstChecked = true
        }

        nextInFlow[flow.last] = index
        flows[flowIndex].last = index
        flows[flowIndex].segments += 1
        flows[flowIndex].nextSequence = segment.sequence &+ UInt32(segment.payload)
        flows[flowIndex].nextIdentification = identification &+ 1
        flows[flowIndex].totalLength += segment.payload
        if segment.flags & TCPFlag.psh != 0 || segment.payload < flow.segmentSize {
            flows[flowIndex].closed = true
            flows[flowIndex].push = segment.flags & TCPFlag.psh != 0
        }
        return true
    }

    private static func equal(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer, _ range: Range<Int>) -> Bool {
        for offset in range where a[offset] != b[offset] { return false }
        return true
    }

    /// Whether the TCP checksum of a parsed packet is right.
    private static func checksumIsValid(
        _ packet: UnsafeRawBufferPointer, ipHeaderLength: Int, totalLength: Int
    ) -> Bool {
        var checksum = InternetChecksum()
        let isIPv4 = packet[0] >> 4 == 4
        let addresses = isIPv4 ? 12..<20 : 8..<40
        checksum.add(UnsafeRawBufferPointer(rebasing: packet[addresses]))
        checksum.add(UInt16(IPProtocolNumber.tcp))
        checksum.add(UInt16(totalLength - ipHeaderLength))
        checksum.add(UnsafeRawBufferPointer(rebasing: packet[ipHeaderLength..<totalLength]))
        return checksum.value == 0
    }

    // MARK: - Emitting

    private func emitPlain(_ packet: UnsafeRawBufferPointer, _ emit: (UnsafeRawBufferPointer) -> Void) {
        VirtioNetHeader().encode(into: buffer)
        let body = UnsafeMutableRawBufferPointer(
            rebasing: buffer[VirtioNetHeader.size..<VirtioNetHeader.size + packet.count])
        body.copyMemory(from: packet)
        emit(UnsafeRawBufferPointer(start: buffer.baseAddress, count: VirtioNetHeader.size + packet.count))
    }

    private func emitSuperPacket(_ flow: Flow, _ emit: (UnsafeRawBufferPointer) -> Void) {
        let ip = flow.ipHeaderLength
        let packet = UnsafeMutableRawBufferPointer(
            rebasing: buffer[VirtioNetHeader.size..<VirtioNetHeader.size + flow.totalLength])
        let head = packets[flow.first]
        packet.baseAddress!.copyMemory(from: head.baseAddress!, byteCount: flow.headerLength)
        var offset = flow.headerLength
        var index = flow.first
        while index >= 0 {
            let segment = packets[index]
            let end =
                segment[0] >> 4 == 4 ? Int(segment.bigEndianUInt16(at: 2)) : 40 + Int(segment.bigEndianUInt16(at: 4))
            let payload = end - flow.headerLength
            (packet.baseAddress! + offset).copyMemory(
                from: segment.baseAddress! + flow.headerLength, byteCount: payload)
            offset += payload
            index = nextInFlow[index]
        }

        var pseudoHeader = InternetChecksum()
        if flow.key.isIPv4 {
            packet.storeBigEndian(UInt16(flow.totalLength), at: 2)
            packet.storeBigEndian(UInt16(0), at: 10)
            packet.storeBigEndian(InternetChecksum.checksum(UnsafeRawBufferPointer(rebasing: packet[..<ip])), at: 10)
            pseudoHeader.add(UnsafeRawBufferPointer(rebasing: packet[12..<20]))
        } else {
            packet.storeBigEndian(UInt16(flow.totalLength - 40), at: 4)
            pseudoHeader.add(UnsafeRawBufferPointer(rebasing: packet[8..<40]))
        }
        if flow.push { packet[ip + 13] |= TCPFlag.psh }
        pseudoHeader.add(UInt16(IPProtocolNumber.tcp))
        pseudoHeader.add(UInt16(flow.totalLength - ip))
        packet.storeBigEndian(pseudoHeader.partialValue, at: ip + 16)

        VirtioNetHeader(
            flags: VirtioNetHeader.needsChecksum,
            gsoType: flow.key.isIPv4 ? VirtioNetHeader.gsoTCPv4 : VirtioNetHeader.gsoTCPv6,
            headerLength: UInt16(flow.headerLength), gsoSize: UInt16(flow.segmentSize), checksumStart: UInt16(ip),
            checksumOffset: 16
        ).encode(into: buffer)
        emit(UnsafeRawBufferPointer(start: buffer.baseAddress, count: VirtioNetHeader.size + flow.totalLength))
    }
}
