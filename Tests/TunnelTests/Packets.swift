// Hand-built packets for the tunnel tests: IPv4 and IPv6 headers (with options, extension headers
// and fragmentation) around TCP, UDP and ICMP, every checksum filled in. The checksum here is a
// separate, deliberately plain RFC 1071 implementation, so the tests do not check the module's
// InternetChecksum against itself.

import UmbraCore

@testable import Tunnel

// MARK: - Addresses

/// The consumer's inner address, 10.182.0.2, and the provider's gateway, 10.182.0.1.
let consumer4 = IPAddress.v4(0x0AB6_0002)
let gateway4 = IPAddress.v4(0x0AB6_0001)
/// 198.18.0.10: the benchmarking range the test network treats as public.
let public4 = IPAddress.v4(0xC612_000A)
/// 2001:db8:b6::2 and 2001:db8:b6::1.
let consumer6 = IPAddress.v6(high: 0x2001_0DB8_00B6_0000, low: 2)
let gateway6 = IPAddress.v6(high: 0x2001_0DB8_00B6_0000, low: 1)
/// 2606:4700::1111.
let public6 = IPAddress.v6(high: 0x2606_4700_0000_0000, low: 0x1111)

/// Parses an address literal the test wrote down.
func ip(_ text: String) -> IPAddress {
    guard let address = IPAddress(parsing: text) else { preconditionFailure("bad test address \(text)") }
    return address
}

// MARK: - Reference checksum

/// RFC 1071 over an array, the obvious way.
func referenceChecksum(_ bytes: [UInt8]) -> UInt16 {
    var sum: UInt32 = 0
    var index = 0
    while index < bytes.count {
        let high = UInt32(bytes[index]) << 8
        let low = index + 1 < bytes.count ? UInt32(bytes[index + 1]) : 0
        sum += high | low
        index += 2
    }
    while sum > 0xFFFF { sum = (sum & 0xFFFF) + (sum >> 16) }
    return ~UInt16(sum)
}

/// The pseudo-header bytes of RFC 8200 §8.1 (IPv6) or RFC 768 (IPv4).
func pseudoHeader(source: IPAddress, destination: IPAddress, protocol: UInt8, length: Int) -> [UInt8] {
    switch source {
    case .v4: source.bytes + destination.bytes + [0, `protocol`] + be16(length)
    case .v6: source.bytes + destination.bytes + be32(UInt32(length)) + [0, 0, 0, `protocol`]
    }
}

func be16(_ value: Int) -> [UInt8] { [UInt8(truncatingIfNeeded: value >> 8), UInt8(truncatingIfNeeded: value)] }
func be32(_ value: UInt32) -> [UInt8] { be16(Int(value >> 16)) + be16(Int(value & 0xFFFF)) }

func readBE16(_ bytes: [UInt8], _ offset: Int) -> Int { Int(bytes[offset]) << 8 | Int(bytes[offset + 1]) }
func readBE32(_ bytes: [UInt8], _ offset: Int) -> UInt32 {
    UInt32(readBE16(bytes, offset)) << 16 | UInt32(readBE16(bytes, offset + 2))
}

// MARK: - Transport

/// What rides inside the IP packet.
enum Transport {
    /// A 20-byte TCP SYN header (checksummed) followed by the payload.
    case tcp(source: UInt16, destination: UInt16)
    /// An 8-byte UDP header (checksummed) followed by the payload.
    case udp(source: UInt16, destination: UInt16)
    /// ICMP in IPv4, ICMPv6 in IPv6: type, code, checksum, 4 bytes of rest-of-header, the payload.
    case icmp(type: UInt8, code: UInt8)
    /// The payload as is, under this protocol number (for fragments and truncated headers).
    case raw(protocol: UInt8)

    func protocolNumber(v6: Bool) -> UInt8 {
        switch self {
        case .tcp: 6
        case .udp: 17
        case .icmp: v6 ? 58 : 1
        case .raw(let number): number
        }
    }

    /// The transport bytes with their checksum, given the addresses for the pseudo-header.
    func bytes(payload: [UInt8], source: IPAddress, destination: IPAddress) -> [UInt8] {
        let v6: Bool
        if case .v6 = source { v6 = true } else { v6 = false }
        var segment: [UInt8]
        let checksumAt: Int
        var pseudo = true
        switch self {
        case .tcp(let sourcePort, let destinationPort):
            segment =
                be16(Int(sourcePort)) + be16(Int(destinationPort)) + be32(1000) + be32(0)
                + [0x50, 0x02] + be16(64240) + [0, 0] + [0, 0] + payload
            checksumAt = 16
        case .udp(let sourcePort, let destinationPort):
            segment = be16(Int(sourcePort)) + be16(Int(destinationPort)) + be16(8 + payload.count) + [0, 0] + payload
            checksumAt = 6
        case .icmp(let type, let code):
            segment = [type, code, 0, 0, 0x12, 0x34, 0x00, 0x01] + payload
            checksumAt = 2
            pseudo = v6
        case .raw:
            return payload
        }
        let covered =
            (pseudo
                ? pseudoHeader(
                    source: source, destination: destination, protocol: protocolNumber(v6: v6),
                    length: segment.count) : []) + segment
        var checksum = referenceChecksum(covered)
        if case .udp = self, checksum == 0 { checksum = 0xFFFF }
        segment[checksumAt] = UInt8(checksum >> 8)
        segment[checksumAt + 1] = UInt8(checksum & 0xFF)
        return segment
    }
}

// MARK: - IPv4

/// An IPv4 packet with a correct header checksum. `options` (a multiple of 4 bytes) lengthen the
/// header; `padding` bytes after the packet are not counted in its total length.
func ipv4(
    from source: IPAddress = consumer4, to destination: IPAddress = public4, _ transport: Transport,
    payload: [UInt8] = Array(repeating: 0xAB, count: 32), dontFragment: Bool = true, moreFragments: Bool = false,
    fragmentOffset: Int = 0, options: [UInt8] = [], ttl: UInt8 = 64, padding: Int = 0
) -> [UInt8] {
    let body = transport.bytes(payload: payload, source: source, destination: destination)
    let headerLength = 20 + options.count
    let flags = (dontFragment ? 0x4000 : 0) | (moreFragments ? 0x2000 : 0) | fragmentOffset
    var header: [UInt8] =
        [UInt8(0x40 | headerLength / 4), 0] + be16(headerLength + body.count) + be16(0x1C46) + be16(flags)
        + [ttl, transport.protocolNumber(v6: false), 0, 0] + source.bytes + destination.bytes + options
    let checksum = referenceChecksum(header)
    header[10] = UInt8(checksum >> 8)
    header[11] = UInt8(checksum & 0xFF)
    return header + body + Array(repeating: 0, count: padding)
}

// MARK: - IPv6

/// An IPv6 extension header for `ipv6(...)`.
enum ExtensionHeader {
    case hopByHop
    case routing
    case destinationOptions
    case fragment(offset: Int, more: Bool)

    var number: UInt8 {
        switch self {
        case .hopByHop: 0
        case .routing: 43
        case .destinationOptions: 60
        case .fragment: 44
        }
    }

    /// The header, its next-header byte set to `next`. Options headers are 16 bytes (a length
    /// byte of 1), padded with PadN, to exercise the length arithmetic.
    func bytes(next: UInt8) -> [UInt8] {
        switch self {
        case .hopByHop, .destinationOptions: [next, 1, 1, 12] + Array(repeating: 0, count: 12)
        case .routing: [next, 0, 0, 0, 0, 0, 0, 0]  // type 0, segments left 0
        case .fragment(let offset, let more): [next, 0] + be16(offset << 3 | (more ? 1 : 0)) + be32(0xCAFE)
        }
    }
}

/// An IPv6 packet; transport checksums use the pseudo-header. `padding` as for `ipv4`.
func ipv6(
    from source: IPAddress = consumer6, to destination: IPAddress = public6, _ transport: Transport,
    payload: [UInt8] = Array(repeating: 0xAB, count: 32), extensionHeaders: [ExtensionHeader] = [],
    hopLimit: UInt8 = 64, padding: Int = 0
) -> [UInt8] {
    let body = transport.bytes(payload: payload, source: source, destination: destination)
    var chain: [UInt8] = []
    let numbers = extensionHeaders.map(\.number) + [transport.protocolNumber(v6: true)]
    for (index, header) in extensionHeaders.enumerated() {
        chain += header.bytes(next: numbers[index + 1])
    }
    let header: [UInt8] =
        [0x60, 0, 0, 0] + be16(chain.count + body.count) + [numbers[0], hopLimit] + source.bytes + destination.bytes
    return header + chain + body + Array(repeating: 0, count: padding)
}

// MARK: - Calling the module with arrays

func parse(_ packet: [UInt8]) throws -> IPPacketInfo {
    try packet.withUnsafeBytes { buffer in try IPPacketInfo(parsing: buffer) }
}

extension EgressPolicy {
    func verdict(_ packet: [UInt8], sessionAddress: IPAddress = consumer4) -> EgressVerdict {
        packet.withUnsafeBytes { verdict($0, sessionAddress: sessionAddress) }
    }
}

/// The too-big reply to `original`, or nil; `capacity` is the output buffer's size.
func tooBig(_ original: [UInt8], mtu: Int, from source: IPAddress = gateway4, capacity: Int = 2048) -> [UInt8]? {
    var output = [UInt8](repeating: 0xEE, count: capacity)
    let length = original.withUnsafeBytes { input in
        output.withUnsafeMutableBytes { ICMPTooBig.write(for: input, mtu: mtu, from: source, into: $0) }
    }
    guard let length else {
        precondition(output.allSatisfy { $0 == 0xEE }, "output written although no reply")
        return nil
    }
    return Array(output[..<length])
}

/// A deterministic generator for garbage inputs (SplitMix64).
struct SplitMix64 {
    var state: UInt64

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    mutating func bytes(_ count: Int) -> [UInt8] { (0..<count).map { _ in UInt8(truncatingIfNeeded: next()) } }
}
