// Hand-built TCP segments with every field chosen by the test, TSO super-packets as the kernel hands
// them to a TUN reader (virtio_net_hdr, partial checksum), and an array wrapper around the splitter.
// Checksums come from Packets.swift's reference implementation.

import UmbraCore

@testable import Tunnel

/// TCP flag bits.
enum TCPFlags {
    static let fin: UInt8 = 0x01
    static let syn: UInt8 = 0x02
    static let rst: UInt8 = 0x04
    static let psh: UInt8 = 0x08
    static let ack: UInt8 = 0x10
    static let urg: UInt8 = 0x20
    static let ece: UInt8 = 0x40
    static let cwr: UInt8 = 0x80
}

/// NOP, NOP, timestamps (kind 8, length 10): the 12 option bytes of a typical Linux data segment.
func timestampOption(_ value: UInt32 = 0x0102_0304, echo: UInt32 = 0x0A0B_0C0D) -> [UInt8] {
    [1, 1, 8, 10] + be32(value) + be32(echo)
}

/// A TCP segment in IPv4 or IPv6 (chosen by the addresses). `checksum: false` leaves the TCP
/// checksum field holding the pseudo-header sum (folded, not complemented), as a CHECKSUM_PARTIAL
/// packet from the kernel carries it. `ipOptions` (IPv4 only) is a multiple of 4 bytes.
func tcpSegment(
    from source: IPAddress = consumer4, to destination: IPAddress = public4, sourcePort: UInt16 = 40000,
    destinationPort: UInt16 = 443, sequence: UInt32 = 0xFFFF_F000, acknowledgment: UInt32 = 0x1234_5678,
    flags: UInt8 = TCPFlags.ack, window: Int = 502, options: [UInt8] = timestampOption(),
    identification: Int = 0x1C46, dontFragment: Bool = true, ipOptions: [UInt8] = [], payload: [UInt8],
    checksum: Bool = true
) -> [UInt8] {
    var tcp =
        be16(Int(sourcePort)) + be16(Int(destinationPort)) + be32(sequence) + be32(acknowledgment)
        + [UInt8((20 + options.count) / 4) << 4, flags] + be16(window) + [0, 0] + [0, 0] + options + payload
    let pseudo = pseudoHeader(source: source, destination: destination, protocol: 6, length: tcp.count)
    let value = checksum ? referenceChecksum(pseudo + tcp) : ~referenceChecksum(pseudo)
    tcp[16] = UInt8(value >> 8)
    tcp[17] = UInt8(value & 0xFF)
    switch source {
    case .v4:
        let headerLength = 20 + ipOptions.count
        var header: [UInt8] =
            [UInt8(0x40 | headerLength / 4), 0x02] + be16(headerLength + tcp.count) + be16(identification)
            + be16(dontFragment ? 0x4000 : 0) + [64, 6, 0, 0] + source.bytes + destination.bytes + ipOptions
        let headerChecksum = referenceChecksum(header)
        header[10] = UInt8(headerChecksum >> 8)
        header[11] = UInt8(headerChecksum & 0xFF)
        return header + tcp
    case .v6:
        return [0x60, 0x01, 0x23, 0x45] + be16(tcp.count) + [6, 64] + source.bytes + destination.bytes + tcp
    }
}

/// The 10 bytes of a virtio_net_hdr, little-endian.
func vnetHeader(
    flags: UInt8 = 0, gsoType: UInt8 = 0, headerLength: Int = 0, gsoSize: Int = 0, checksumStart: Int = 0,
    checksumOffset: Int = 0
) -> [UInt8] {
    func le16(_ value: Int) -> [UInt8] { [UInt8(truncatingIfNeeded: value), UInt8(truncatingIfNeeded: value >> 8)] }
    return [flags, gsoType] + le16(headerLength) + le16(gsoSize) + le16(checksumStart) + le16(checksumOffset)
}

/// A deterministic payload of `count` bytes (no two nearby 16-bit words alike).
func offloadPayload(_ count: Int, seed: Int = 0) -> [UInt8] {
    (0..<count).map { UInt8(truncatingIfNeeded: ($0 &* 131) ^ ($0 >> 8) ^ seed) }
}

/// What read(2) returns for a TSO super-packet: NEEDS_CSUM, TCPV4/TCPV6, the given gso_size, the
/// checksum field holding the pseudo-header sum.
func tsoRead(_ segment: [UInt8], gsoSize: Int, headerLength: Int? = nil, ecn: Bool = false) -> [UInt8] {
    let v4 = segment[0] >> 4 == 4
    let ipHeaderLength = v4 ? Int(segment[0] & 0x0F) * 4 : 40
    let tcpHeaderLength = Int(segment[ipHeaderLength + 12] >> 4) * 4
    return vnetHeader(
        flags: VirtioNetHeader.needsChecksum,
        gsoType: (v4 ? VirtioNetHeader.gsoTCPv4 : VirtioNetHeader.gsoTCPv6) | (ecn ? VirtioNetHeader.gsoECN : 0),
        headerLength: headerLength ?? ipHeaderLength + tcpHeaderLength, gsoSize: gsoSize,
        checksumStart: ipHeaderLength, checksumOffset: 16) + segment
}

/// The packets `TSOSplitter.split` writes for `read`, after checking that it left the leading
/// space and the slack of every slot alone.
func split(
    _ read: [UInt8], stride: Int = 1500, leadingSpace: Int = 1, maximumSegments: Int = 64, outputSize: Int? = nil
) throws(DecodeError) -> [[UInt8]] {
    var output = [UInt8](repeating: 0xEE, count: outputSize ?? stride * maximumSegments)
    let result = read.withUnsafeBytes { input in
        output.withUnsafeMutableBytes { output in
            Result { () throws(DecodeError) in
                try TSOSplitter.split(
                    input, into: output, segmentStride: stride, leadingSpace: leadingSpace,
                    maximumSegments: maximumSegments)
            }
        }
    }
    let segments = try result.get()
    var packets: [[UInt8]] = []
    var written = Set<Int>()
    for index in 0..<segments.count {
        let start = segments.offset(of: index)
        packets.append(Array(output[start..<start + segments.length(of: index)]))
        written.formUnion(start..<start + segments.length(of: index))
    }
    for offset in output.indices where !written.contains(offset) {
        precondition(output[offset] == 0xEE, "split wrote outside its packets at \(offset)")
    }
    return packets
}

/// True when the IPv4 header checksum (if IPv4) and the TCP/UDP checksum of `packet` verify.
func checksumsVerify(_ packet: [UInt8], protocol: UInt8 = 6) -> Bool {
    let v4 = packet[0] >> 4 == 4
    let ipHeaderLength = v4 ? Int(packet[0] & 0x0F) * 4 : 40
    if v4, referenceChecksum(Array(packet[..<ipHeaderLength])) != 0 { return false }
    let source = v4 ? IPAddress.v4(readBE32(packet, 12)) : ipv6Address(packet, at: 8)
    let destination = v4 ? IPAddress.v4(readBE32(packet, 16)) : ipv6Address(packet, at: 24)
    let transport = Array(packet[ipHeaderLength...])
    let pseudo = pseudoHeader(
        source: source, destination: destination, protocol: `protocol`, length: transport.count)
    return referenceChecksum(pseudo + transport) == 0
}

func ipv6Address(_ bytes: [UInt8], at offset: Int) -> IPAddress {
    func word(_ at: Int) -> UInt64 { UInt64(readBE32(bytes, at)) << 32 | UInt64(readBE32(bytes, at + 4)) }
    return .v6(high: word(offset), low: word(offset + 8))
}
