// Segmentation offload, read direction: turns one read(2) from a TUN device opened with
// IFF_VNET_HDR (a virtio_net_hdr, then a packet of up to 64 KiB) into plain IP packets, each small
// enough for the tunnel, the way the kernel's tcp_gso_segment / udp4_ufo_fragment would have cut it.
//
//   gso_type NONE, no NEEDS_CSUM   the packet, copied as is.
//   gso_type NONE, NEEDS_CSUM      the packet, its checksum at csum_start + csum_offset completed:
//                                  the field already holds the pseudo-header sum, so the ones'
//                                  complement of the sum of every byte from csum_start is the checksum.
//   gso_type TCPV4 / TCPV6         the payload cut into gso_size pieces; each segment gets a copy of
//                                  the IP and TCP headers with: IPv4 total length, identification
//                                  + index, a fresh header checksum / IPv6 payload length; TCP
//                                  sequence number + bytes before it; FIN and PSH only on the last
//                                  segment, CWR only on the first; a full TCP checksum.
//   gso_type UDP                   the same with the UDP length and checksum (0 sent as 0xFFFF).
//
// Trust: hdr_len is only a hint (for forwarded packets the kernel reports the whole linear part of
// the skb), so the header length is computed from the IPv4 IHL / the fixed IPv6 header and the TCP
// data offset, and hdr_len is only checked to lie within the packet. csum_start / csum_offset are
// ignored for GSO (every segment's checksum is computed from scratch). The packet's length is the
// one its IP header declares (at most the bytes read). Refused with a DecodeError, before anything
// is written: gso_size 0, an unknown gso_type, an IP version or protocol that does not match it,
// an IPv4 fragment, IPv6 extension headers, headers beyond the packet, more segments than allowed
// or a segment that does not fit its slot. No allocation; every byte written lies in `output`.

import UmbraCore

/// Where `TSOSplitter.split` put the packets: packet `i` starts at `offset(of: i)` in the output
/// and is `length(of: i)` bytes long. Every packet but the last has the same length.
public struct TSOSegments: Equatable, Sendable {
    /// How many packets were written (at least 1).
    public let count: Int
    /// The distance between the starts of consecutive slots.
    public let stride: Int
    /// Bytes left untouched at the start of every slot, before its packet.
    public let leadingSpace: Int
    /// The length of every packet but the last.
    public let segmentLength: Int
    /// The length of the last packet (at most `segmentLength`, except for a single packet).
    public let lastSegmentLength: Int

    /// Where packet `index` starts in the output: `index * stride + leadingSpace`.
    public func offset(of index: Int) -> Int { index * stride + leadingSpace }

    /// The length of packet `index`.
    public func length(of index: Int) -> Int { index == count - 1 ? lastSegmentLength : segmentLength }
}

/// Cuts what a TUN device with TSO returns into plain IP packets (see the file header).
public enum TSOSplitter {
    /// TCP flags (RFC 9293 §3.1, RFC 3168 §6.1): byte 13 of the TCP header.
    static let fin: UInt8 = 0x01
    static let psh: UInt8 = 0x08
    static let cwr: UInt8 = 0x80

    /// Splits `read` — a 10-byte virtio_net_hdr followed by the packet, exactly what read(2)
    /// returned — into plain IP packets in `output`.
    ///
    /// Packet `i` is written at `i * segmentStride + leadingSpace`; the `leadingSpace` bytes before
    /// it (a channel tag, say) and the rest of each slot are not touched. A packet may use at most
    /// `segmentStride - leadingSpace` bytes of its slot, and the last slot may be cut short by the
    /// end of `output`. At most `maximumSegments` packets are written. `output` must not overlap
    /// `read`. Throws (writing nothing) when the input is malformed or the packets do not fit.
    public static func split(
        _ read: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer, segmentStride: Int,
        leadingSpace: Int = 0, maximumSegments: Int
    ) throws(DecodeError) -> TSOSegments {
        let header = try VirtioNetHeader(decoding: read)
        guard segmentStride > 0, leadingSpace >= 0, leadingSpace < segmentStride, maximumSegments > 0 else {
            throw .invalid(field: "split layout", reason: "stride, leading space or segment limit out of range")
        }
        let packet = UnsafeRawBufferPointer(rebasing: read[VirtioNetHeader.size...])
        guard !packet.isEmpty else { throw .truncated(offset: VirtioNetHeader.size, needed: 1) }
        let layout = Layout(
            output: output, stride: segmentStride, leadingSpace: leadingSpace, maximumSegments: maximumSegments)
        switch header.gsoType & ~VirtioNetHeader.gsoECN {
        case VirtioNetHeader.gsoNone:
            return try single(packet, header: header, layout: layout)
        case VirtioNetHeader.gsoTCPv4, VirtioNetHeader.gsoTCPv6, VirtioNetHeader.gsoUDP:
            return try segment(packet, header: header, layout: layout)
        default:
            throw .unknownTag(field: "virtio gso_type", value: UInt64(header.gsoType))
        }
    }

    /// The caller's slots.
    private struct Layout {
        let output: UnsafeMutableRawBufferPointer
        let stride: Int
        let leadingSpace: Int
        let maximumSegments: Int

        func offset(of index: Int) -> Int { index * stride + leadingSpace }

        /// Checks that `count` packets fit: all but the last `length` bytes, the last `lastLength`.
        func check(count: Int, length: Int, lastLength: Int) throws(DecodeError) {
            guard count <= maximumSegments else {
                throw .lengthTooLarge(offset: 0, length: count, limit: maximumSegments)
            }
            guard length <= stride - leadingSpace else {
                throw .lengthTooLarge(offset: 0, length: length, limit: stride - leadingSpace)
            }
            // The last slot starts at (count - 1) * stride; it must hold lastLength after the space.
            let room = output.count - leadingSpace - lastLength
            guard room >= 0, (count - 1) <= room / stride else {
                throw .lengthTooLarge(offset: 0, length: count, limit: max(0, room / stride + 1))
            }
        }
    }

    // MARK: - One packet

    private static func single(
        _ packet: UnsafeRawBufferPointer, header: VirtioNetHeader, layout: Layout
    ) throws(DecodeError) -> TSOSegments {
        let length = packet.count
        try layout.check(count: 1, length: length, lastLength: length)
        let needsChecksum = header.flags & VirtioNetHeader.needsChecksum != 0
        let start = Int(header.checksumStart)
        let field = start + Int(header.checksumOffset)
        if needsChecksum, field + 2 > length {
            throw .invalid(field: "virtio csum_start/csum_offset", reason: "checksum field beyond the packet")
        }
        let slot = UnsafeMutableRawBufferPointer(
            rebasing: layout.output[layout.leadingSpace..<layout.leadingSpace + length])
        slot.copyMemory(from: packet)
        if needsChecksum {
            // The field holds the pseudo-header sum; summing it with the rest completes it. Like the
            // kernel's skb_checksum_help, a computed 0 goes out as 0xFFFF (the same in ones' complement,
            // and mandatory for UDP).
            var checksum = InternetChecksum()
            checksum.add(UnsafeRawBufferPointer(rebasing: slot[start...]))
            let value = checksum.value
            slot.storeBigEndian(value == 0 ? 0xFFFF : value, at: field)
        }
        return TSOSegments(
            count: 1, stride: layout.stride, leadingSpace: layout.leadingSpace, segmentLength: length,
            lastSegmentLength: length)
    }

    // MARK: - Segmentation

    private static func segment(
        _ packet: UnsafeRawBufferPointer, header: VirtioNetHeader, layout: Layout
    ) throws(DecodeError) -> TSOSegments {
        let gsoType = header.gsoType & ~VirtioNetHeader.gsoECN
        let isTCP = gsoType != VirtioNetHeader.gsoUDP
        let transportProtocol = isTCP ? IPProtocolNumber.tcp : IPProtocolNumber.udp

        // The IP header.
        let isIPv4: Bool
        let ipHeaderLength: Int
        let totalLength: Int
        switch packet[0] >> 4 {
        case 4 where gsoType != VirtioNetHeader.gsoTCPv6:
            isIPv4 = true
            guard packet.count >= 20 else { throw .truncated(offset: 0, needed: 20) }
            ipHeaderLength = Int(packet[0] & 0x0F) * 4
            guard ipHeaderLength >= 20 else { throw .invalid(field: "IPv4 IHL", reason: "below 5") }
            totalLength = Int(packet.bigEndianUInt16(at: 2))
            guard totalLength >= ipHeaderLength, totalLength <= packet.count else {
                throw .invalid(field: "IPv4 total length", reason: "shorter than the header or longer than the read")
            }
            guard packet.bigEndianUInt16(at: 6) & 0x3FFF == 0 else {
                throw .invalid(field: "IPv4 fragment", reason: "a GSO packet cannot be a fragment")
            }
            guard packet[9] == transportProtocol else {
                throw .invalid(field: "IPv4 protocol", reason: "does not match the virtio gso_type")
            }
        case 6 where gsoType != VirtioNetHeader.gsoTCPv4:
            isIPv4 = false
            guard packet.count >= 40 else { throw .truncated(offset: 0, needed: 40) }
            ipHeaderLength = 40
            totalLength = 40 + Int(packet.bigEndianUInt16(at: 4))
            guard totalLength <= packet.count else {
                throw .invalid(field: "IPv6 payload length", reason: "longer than the read")
            }
            guard packet[6] == transportProtocol else {
                throw .invalid(field: "IPv6 next header", reason: "extension headers or not the gso_type's protocol")
            }
        default:
            throw .invalid(field: "IP version", reason: "does not match the virtio gso_type")
        }

        // The transport header.
        let transportHeaderLength: Int
        if isTCP {
            guard ipHeaderLength + 20 <= totalLength else { throw .truncated(offset: ipHeaderLength, needed: 20) }
            transportHeaderLength = Int(packet[ipHeaderLength + 12] >> 4) * 4
            guard transportHeaderLength >= 20 else { throw .invalid(field: "TCP data offset", reason: "below 5") }
            guard ipHeaderLength + transportHeaderLength <= totalLength else {
                throw .truncated(offset: ipHeaderLength, needed: transportHeaderLength)
            }
        } else {
            transportHeaderLength = 8
            guard ipHeaderLength + 8 <= totalLength else { throw .truncated(offset: ipHeaderLength, needed: 8) }
        }
        let headerLength = ipHeaderLength + transportHeaderLength
        guard Int(header.headerLength) <= packet.count else {
            throw .invalid(field: "virtio hdr_len", reason: "beyond the packet")
        }
        let gsoSize = Int(header.gsoSize)
        guard gsoSize > 0 else { throw .invalid(field: "virtio gso_size", reason: "zero") }

        // The slots.
        let payload = totalLength - headerLength
        let count = payload == 0 ? 1 : (payload + gsoSize - 1) / gsoSize
        let segmentLength = headerLength + min(gsoSize, payload)
        let lastLength = headerLength + payload - (count - 1) * gsoSize
        try layout.check(count: count, length: segmentLength, lastLength: lastLength)

        // The pseudo-header without its length, which differs per segment.
        var pseudoHeader = InternetChecksum()
        let addressLength = isIPv4 ? 4 : 16
        let addressOffset = isIPv4 ? 12 : 8
        pseudoHeader.add(UnsafeRawBufferPointer(rebasing: packet[addressOffset..<addressOffset + 2 * addressLength]))
        pseudoHeader.add(UInt16(transportProtocol))

        let identification = isIPv4 ? packet.bigEndianUInt16(at: 4) : 0
        let firstSequence = isTCP ? packet.bigEndianUInt32(at: ipHeaderLength + 4) : 0
        let checksumField = ipHeaderLength + (isTCP ? 16 : 6)
        let source = packet.baseAddress!
        for index in 0..<count {
            let length = index == count - 1 ? lastLength : segmentLength
            let start = layout.offset(of: index)
            let segment = UnsafeMutableRawBufferPointer(rebasing: layout.output[start..<start + length])
            let target = segment.baseAddress!
            target.copyMemory(from: source, byteCount: headerLength)
            (target + headerLength).copyMemory(
                from: source + headerLength + index * gsoSize, byteCount: length - headerLength)

            if isIPv4 {
                segment.storeBigEndian(UInt16(length), at: 2)
                segment.storeBigEndian(identification &+ UInt16(truncatingIfNeeded: index), at: 4)
                segment.storeBigEndian(UInt16(0), at: 10)
                let checksum = InternetChecksum.checksum(UnsafeRawBufferPointer(rebasing: segment[..<ipHeaderLength]))
                segment.storeBigEndian(checksum, at: 10)
            } else {
                segment.storeBigEndian(UInt16(length - 40), at: 4)
            }

            if isTCP {
                segment.storeBigEndian(
                    firstSequence &+ UInt32(truncatingIfNeeded: index * gsoSize), at: ipHeaderLength + 4)
                var flags = segment[ipHeaderLength + 13]
                if index != count - 1 { flags &= ~(fin | psh) }
                if index != 0 { flags &= ~cwr }
                segment[ipHeaderLength + 13] = flags
            } else {
                segment.storeBigEndian(UInt16(length - ipHeaderLength), at: ipHeaderLength + 4)
            }
            segment.storeBigEndian(UInt16(0), at: checksumField)
            var checksum = pseudoHeader
            checksum.add(UInt16(length - ipHeaderLength))
            checksum.add(UnsafeRawBufferPointer(rebasing: segment[ipHeaderLength...]))
            let value = checksum.value
            segment.storeBigEndian(!isTCP && value == 0 ? 0xFFFF : value, at: checksumField)
        }
        return TSOSegments(
            count: count, stride: layout.stride, leadingSpace: layout.leadingSpace, segmentLength: segmentLength,
            lastSegmentLength: lastLength)
    }
}
