// Zero-copy parsing of the IP packets that cross the tunnel (DESIGN §5). The data plane reads a
// packet from a TUN device or out of a decrypted session datagram and needs a handful of facts
// about it: addresses, protocol, fragmentation, ports, whether it is itself an ICMP error. This file
// reads exactly those, straight from the caller's buffer, without copying or allocating.
//
// Bounded: an IPv4 header is at most 60 bytes; an IPv6 header chain is followed through at most
// `IPPacketInfo.maximumExtensionHeaders` extension headers, each checked against the packet's own
// length before it is read. Every byte read is bounds-checked here (UnsafeRawBufferPointer's
// subscript only checks in debug builds), and every failure is a typed `DecodeError` built from
// string literals, so a refusal does not allocate either.
//
// Not checked: the IPv4 header checksum and transport checksums (the kernel verifies them when the
// packet is written to a TUN device; a corrupt packet is dropped there), and the TTL.

import UmbraCore

/// IP protocol numbers (IANA "Assigned Internet Protocol Numbers") the tunnel cares about.
public enum IPProtocolNumber {
    public static let hopByHop: UInt8 = 0
    public static let icmp: UInt8 = 1
    public static let tcp: UInt8 = 6
    public static let udp: UInt8 = 17
    public static let routing: UInt8 = 43
    public static let fragment: UInt8 = 44
    public static let icmpv6: UInt8 = 58
    public static let noNextHeader: UInt8 = 59
    public static let destinationOptions: UInt8 = 60
}

/// What the tunnel needs to know about one IPv4 or IPv6 packet, read without copying it.
///
/// Lengths and offsets are in bytes from the start of the buffer. `totalLength` may be less than
/// the buffer (link padding, a reused buffer); callers forward only `totalLength` bytes.
public struct IPPacketInfo: Equatable, Sendable {
    /// The IP version of a packet.
    public enum Version: UInt8, Sendable {
        case v4 = 4
        case v6 = 6
    }

    /// The most IPv6 extension headers followed before a packet is refused. Real packets carry one
    /// or two; RFC 8200 §4.1 lists six kinds, most at most once.
    public static let maximumExtensionHeaders = 8

    public let version: Version
    /// The length the IP header declares: IPv4 total length, or IPv6 40 + payload length.
    /// Never more than the buffer, never less than the IP header.
    public let totalLength: Int
    /// Where the upper-layer data starts: after the IPv4 header with its options, or after the IPv6
    /// header and the extension headers followed. For a fragment with a non-zero offset this is
    /// where the fragment's data starts, not a transport header.
    public let payloadOffset: Int
    /// The upper-layer protocol: the IPv4 protocol field, or the IPv6 next header after the last
    /// extension header followed (for an IPv6 fragment with a non-zero offset, the fragment
    /// header's next header).
    public let `protocol`: UInt8
    public let source: IPAddress
    public let destination: IPAddress
    /// IPv4: the DF flag. IPv6: always true (IPv6 routers never fragment; RFC 8200 §5).
    public let dontFragment: Bool
    /// The MF flag (IPv4 header or IPv6 fragment header).
    public let moreFragments: Bool
    /// The fragment offset in 8-byte units, as on the wire (IPv4 header or IPv6 fragment header).
    public let fragmentOffset: UInt16
    /// True when this packet is a fragment: IPv4 with MF or a non-zero offset; IPv6 with a
    /// fragment header (including an "atomic" fragment with offset 0 and no MF).
    public let isFragment: Bool
    /// The TCP or UDP source port, when this is the first (or only) fragment and the bytes are there.
    public let sourcePort: UInt16?
    /// The TCP or UDP destination port, when this is the first (or only) fragment and the bytes are
    /// there.
    public let destinationPort: UInt16?
    /// The ICMP type (ICMP in IPv4, ICMPv6 in IPv6), when this is the first (or only) fragment and
    /// the byte is there.
    public let icmpType: UInt8?
    /// The ICMP code, under the same conditions as `icmpType`.
    public let icmpCode: UInt8?

    /// True for IPv4 whose header carries options (IHL above 5): source routes, record route, ….
    public var hasIPv4Options: Bool { version == .v4 && payloadOffset > 20 }

    /// True for the first fragment and for an unfragmented packet: the only ones whose transport
    /// header is present.
    public var isFirstFragment: Bool { fragmentOffset == 0 }

    /// True when the packet is ICMP of its own IP version (ICMP for IPv4, ICMPv6 for IPv6).
    public var isICMP: Bool {
        switch version {
        case .v4: `protocol` == IPProtocolNumber.icmp
        case .v6: `protocol` == IPProtocolNumber.icmpv6
        }
    }

    /// True when the packet is an ICMP error message (RFC 1812 §4.3.2.7, RFC 4443 §2.4 (e)): ICMP
    /// types 3, 4, 5, 11, 12, or ICMPv6 types below 128. No ICMP error may be sent about one.
    public var isICMPError: Bool {
        guard isICMP, let icmpType else { return false }
        switch version {
        case .v4:
            switch icmpType {
            case 3, 4, 5, 11, 12: return true
            default: return false
            }
        case .v6: return icmpType < 128
        }
    }

    /// Parses the IP header (and, for IPv6, the extension header chain) at the start of `packet`.
    ///
    /// Refuses: an empty buffer, a version other than 4 or 6, an IPv4 IHL below 5, a header or
    /// declared length beyond the buffer, a declared length below the header, more than
    /// `maximumExtensionHeaders` IPv6 extension headers, and an extension header that runs past the
    /// packet. A short transport header is not an error: its ports or ICMP type are just `nil`.
    public init(parsing packet: UnsafeRawBufferPointer) throws(DecodeError) {
        guard packet.count >= 1 else { throw .truncated(offset: 0, needed: 1) }
        switch packet[0] >> 4 {
        case 4: self = try Self.parseIPv4(packet)
        case 6: self = try Self.parseIPv6(packet)
        default: throw .invalid(field: "IP version", reason: "not 4 or 6")
        }
    }

    private init(
        version: Version, totalLength: Int, payloadOffset: Int, protocol: UInt8, source: IPAddress,
        destination: IPAddress, dontFragment: Bool, moreFragments: Bool, fragmentOffset: UInt16,
        isFragment: Bool, packet: UnsafeRawBufferPointer
    ) {
        self.version = version
        self.totalLength = totalLength
        self.payloadOffset = payloadOffset
        self.protocol = `protocol`
        self.source = source
        self.destination = destination
        self.dontFragment = dontFragment
        self.moreFragments = moreFragments
        self.fragmentOffset = fragmentOffset
        self.isFragment = isFragment

        // The transport header, only where it is: in the first fragment, within totalLength.
        var sourcePort: UInt16?
        var destinationPort: UInt16?
        var icmpType: UInt8?
        var icmpCode: UInt8?
        if fragmentOffset == 0 {
            let available = totalLength - payloadOffset
            let icmp = version == .v4 ? IPProtocolNumber.icmp : IPProtocolNumber.icmpv6
            if `protocol` == IPProtocolNumber.tcp || `protocol` == IPProtocolNumber.udp, available >= 4 {
                sourcePort = packet.bigEndianUInt16(at: payloadOffset)
                destinationPort = packet.bigEndianUInt16(at: payloadOffset + 2)
            } else if `protocol` == icmp, available >= 2 {
                icmpType = packet[payloadOffset]
                icmpCode = packet[payloadOffset + 1]
            }
        }
        self.sourcePort = sourcePort
        self.destinationPort = destinationPort
        self.icmpType = icmpType
        self.icmpCode = icmpCode
    }

    // MARK: - IPv4

    private static func parseIPv4(_ packet: UnsafeRawBufferPointer) throws(DecodeError) -> IPPacketInfo {
        guard packet.count >= 20 else { throw .truncated(offset: 0, needed: 20) }
        let headerLength = Int(packet[0] & 0x0F) * 4
        guard headerLength >= 20 else { throw .invalid(field: "IPv4 IHL", reason: "below 5") }
        guard packet.count >= headerLength else { throw .truncated(offset: 20, needed: headerLength - 20) }
        let totalLength = Int(packet.bigEndianUInt16(at: 2))
        guard totalLength >= headerLength else {
            throw .invalid(field: "IPv4 total length", reason: "shorter than the header")
        }
        guard totalLength <= packet.count else {
            throw .invalid(field: "IPv4 total length", reason: "longer than the buffer")
        }
        let flagsAndOffset = packet.bigEndianUInt16(at: 6)
        let fragmentOffset = flagsAndOffset & 0x1FFF
        let moreFragments = flagsAndOffset & 0x2000 != 0
        return IPPacketInfo(
            version: .v4, totalLength: totalLength, payloadOffset: headerLength, protocol: packet[9],
            source: .v4(packet.bigEndianUInt32(at: 12)), destination: .v4(packet.bigEndianUInt32(at: 16)),
            dontFragment: flagsAndOffset & 0x4000 != 0, moreFragments: moreFragments,
            fragmentOffset: fragmentOffset, isFragment: moreFragments || fragmentOffset != 0, packet: packet)
    }

    // MARK: - IPv6

    private static func parseIPv6(_ packet: UnsafeRawBufferPointer) throws(DecodeError) -> IPPacketInfo {
        guard packet.count >= 40 else { throw .truncated(offset: 0, needed: 40) }
        let totalLength = 40 + Int(packet.bigEndianUInt16(at: 4))
        guard totalLength <= packet.count else {
            throw .invalid(field: "IPv6 payload length", reason: "longer than the buffer")
        }
        var nextHeader = packet[6]
        var offset = 40
        var fragmentOffset: UInt16 = 0
        var moreFragments = false
        var isFragment = false
        var followed = 0
        chain: while true {
            switch nextHeader {
            case IPProtocolNumber.hopByHop, IPProtocolNumber.routing, IPProtocolNumber.destinationOptions,
                IPProtocolNumber.fragment:
                break
            default:
                break chain
            }
            guard followed < maximumExtensionHeaders else {
                throw .invalid(field: "IPv6 extension headers", reason: "more than 8")
            }
            followed += 1
            // Every extension header starts with next header and a length byte (RFC 8200 §4).
            guard offset + 8 <= totalLength else { throw .truncated(offset: offset, needed: 8) }
            let following = packet[offset]
            if nextHeader == IPProtocolNumber.fragment {
                // RFC 8200 §4.5: next header, reserved, offset (13 bits) | res (2) | M, identification.
                let field = packet.bigEndianUInt16(at: offset + 2)
                fragmentOffset = field >> 3
                moreFragments = field & 1 != 0
                isFragment = true
                offset += 8
                nextHeader = following
                // Past a non-first fragment's header the bytes are the middle of the original payload.
                if fragmentOffset != 0 { break chain }
            } else {
                let length = (Int(packet[offset + 1]) + 1) * 8
                guard offset + length <= totalLength else {
                    throw .truncated(offset: offset, needed: length)
                }
                offset += length
                nextHeader = following
            }
        }
        return IPPacketInfo(
            version: .v6, totalLength: totalLength, payloadOffset: offset, protocol: nextHeader,
            source: .v6(high: packet.bigEndianUInt64(at: 8), low: packet.bigEndianUInt64(at: 16)),
            destination: .v6(high: packet.bigEndianUInt64(at: 24), low: packet.bigEndianUInt64(at: 32)),
            dontFragment: true, moreFragments: moreFragments, fragmentOffset: fragmentOffset,
            isFragment: isFragment, packet: packet)
    }
}

// MARK: - Big-endian access

extension UnsafeRawBufferPointer {
    /// The big-endian 16-bit value at `offset`. Precondition (checked by the callers): offset + 2 <= count.
    @inline(__always)
    func bigEndianUInt16(at offset: Int) -> UInt16 {
        UInt16(self[offset]) << 8 | UInt16(self[offset + 1])
    }

    /// The big-endian 32-bit value at `offset`. Precondition: offset + 4 <= count.
    @inline(__always)
    func bigEndianUInt32(at offset: Int) -> UInt32 {
        UInt32(bigEndianUInt16(at: offset)) << 16 | UInt32(bigEndianUInt16(at: offset + 2))
    }

    /// The big-endian 64-bit value at `offset`. Precondition: offset + 8 <= count.
    @inline(__always)
    func bigEndianUInt64(at offset: Int) -> UInt64 {
        UInt64(bigEndianUInt32(at: offset)) << 32 | UInt64(bigEndianUInt32(at: offset + 4))
    }
}

extension UnsafeMutableRawBufferPointer {
    /// Stores `value` big-endian at `offset`. Precondition: offset + 2 <= count.
    @inline(__always)
    func storeBigEndian(_ value: UInt16, at offset: Int) {
        self[offset] = UInt8(truncatingIfNeeded: value >> 8)
        self[offset + 1] = UInt8(truncatingIfNeeded: value)
    }

    /// Stores `value` big-endian at `offset`. Precondition: offset + 4 <= count.
    @inline(__always)
    func storeBigEndian(_ value: UInt32, at offset: Int) {
        storeBigEndian(UInt16(truncatingIfNeeded: value >> 16), at: offset)
        storeBigEndian(UInt16(truncatingIfNeeded: value), at: offset + 2)
    }

    /// Stores `value` big-endian at `offset`. Precondition: offset + 8 <= count.
    @inline(__always)
    func storeBigEndian(_ value: UInt64, at offset: Int) {
        storeBigEndian(UInt32(truncatingIfNeeded: value >> 32), at: offset)
        storeBigEndian(UInt32(truncatingIfNeeded: value), at: offset + 4)
    }

    /// Stores the 4 or 16 bytes of `address` at `offset`. Precondition: they fit.
    func store(_ address: IPAddress, at offset: Int) {
        switch address {
        case .v4(let value): storeBigEndian(value, at: offset)
        case .v6(let high, let low):
            storeBigEndian(high, at: offset)
            storeBigEndian(low, at: offset + 8)
        }
    }
}
