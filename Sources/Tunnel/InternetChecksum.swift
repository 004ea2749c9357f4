// The Internet checksum (RFC 1071): the ones' complement of the ones' complement sum of 16-bit
// big-endian words. Used for the IPv4 header, ICMP, and (with a pseudo-header) ICMPv6, TCP and UDP.
//
// An accumulator, so a checksum can cover pieces that are not adjacent in memory (a pseudo-header,
// then the message) without copying them together. Bytes may be added in pieces of any length: an
// odd byte at the end of one piece pairs with the first byte of the next, exactly as if the pieces
// were one buffer. The sum is kept in 64 bits and folded only at the end, which cannot overflow for
// anything smaller than 2^48 bytes. No allocation.
//
// Speed: the bytes of a piece are summed as native-order 64-bit words (unaligned loads) with
// end-around carries, 16 bytes a round (about 20 GB/s). The ones' complement sum does not depend on
// byte order (RFC 1071 §2 (B)) and 2^16 ≡ 1 modulo 0xFFFF, so folding that sum to 16 bits and
// swapping its bytes gives the sum of the big-endian 16-bit words.

import UmbraCore

/// An RFC 1071 checksum accumulator.
public struct InternetChecksum: Sendable {
    private var sum: UInt64 = 0
    /// True when an odd number of bytes has been added: the next byte is a word's low half.
    private var odd = false

    public init() {}

    /// Adds `bytes` as if they followed everything added so far.
    public mutating func add(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        var index = 0
        let count = bytes.count
        if odd {
            sum &+= UInt64(bytes[0])
            index = 1
            odd = false
        }
        let pairs = (count - index) & ~1
        if pairs > 0 {
            sum &+= UInt64(Self.bigEndianWordSum(base + index, byteCount: pairs))
            index += pairs
        }
        if index < count {
            sum &+= UInt64(bytes[index]) << 8
            odd = true
        }
    }

    /// The ones' complement sum of the big-endian 16-bit words in `byteCount` (even) bytes at
    /// `start`, folded to 16 bits.
    @inline(__always)
    private static func bigEndianWordSum(_ start: UnsafeRawPointer, byteCount: Int) -> UInt16 {
        // Two independent 64-bit accumulators (16 bytes a round); each carry out of bit 63 is worth
        // 1, as 2^64 ≡ 1 modulo 0xFFFF, so carries are counted and added back at the end.
        var first: UInt64 = 0
        var second: UInt64 = 0
        var carries: UInt64 = 0
        var offset = 0
        while offset + 16 <= byteCount {
            let (sum1, carry1) = first.addingReportingOverflow(
                start.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
            let (sum2, carry2) = second.addingReportingOverflow(
                start.loadUnaligned(fromByteOffset: offset + 8, as: UInt64.self))
            first = sum1
            second = sum2
            carries &+= (carry1 ? 1 : 0) &+ (carry2 ? 1 : 0)
            offset += 16
        }
        var sum = (first & 0xFFFF_FFFF) &+ (first >> 32) &+ (second & 0xFFFF_FFFF) &+ (second >> 32) &+ carries
        if offset + 8 <= byteCount {
            let word = start.loadUnaligned(fromByteOffset: offset, as: UInt64.self)
            sum &+= (word & 0xFFFF_FFFF) &+ (word >> 32)
            offset += 8
        }
        if offset + 4 <= byteCount {
            sum &+= UInt64(start.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
            offset += 4
        }
        if offset < byteCount {
            sum &+= UInt64(start.loadUnaligned(fromByteOffset: offset, as: UInt16.self))
        }
        sum = (sum & 0xFFFF_FFFF) &+ (sum >> 32)
        sum = (sum & 0xFFFF_FFFF) &+ (sum >> 32)
        sum = (sum & 0xFFFF) &+ (sum >> 16)
        sum = (sum & 0xFFFF) &+ (sum >> 16)
        sum = (sum & 0xFFFF) &+ (sum >> 16)
        return UInt16(bigEndian: UInt16(truncatingIfNeeded: sum))
    }

    /// Adds one 16-bit word. Precondition: an even number of bytes was added before (true for
    /// every header field this module adds).
    public mutating func add(_ word: UInt16) {
        sum &+= UInt64(word)
    }

    /// Adds a 32-bit value as two words. Same precondition as `add(_: UInt16)`.
    public mutating func add(_ value: UInt32) {
        add(UInt16(truncatingIfNeeded: value >> 16))
        add(UInt16(truncatingIfNeeded: value))
    }

    /// Adds the 4 or 16 bytes of an address. Same precondition as `add(_: UInt16)`.
    public mutating func add(_ address: IPAddress) {
        switch address {
        case .v4(let value): add(value)
        case .v6(let high, let low):
            add(UInt32(truncatingIfNeeded: high >> 32))
            add(UInt32(truncatingIfNeeded: high))
            add(UInt32(truncatingIfNeeded: low >> 32))
            add(UInt32(truncatingIfNeeded: low))
        }
    }

    /// Adds the pseudo-header that TCP, UDP (RFC 768, RFC 9293) and ICMPv6 (RFC 8200 §8.1) checksums
    /// cover: source, destination, the upper-layer length and the protocol number. For IPv4 the
    /// length is 16 bits (`0, protocol, length`); for IPv6 it is 32 bits followed by three zero
    /// bytes and the next header. Both forms sum to the same words, so one function serves both.
    public mutating func addPseudoHeader(
        source: IPAddress, destination: IPAddress, protocol: UInt8, upperLayerLength: Int
    ) {
        add(source)
        add(destination)
        add(UInt32(truncatingIfNeeded: upperLayerLength))
        add(UInt16(`protocol`))
    }

    /// The checksum to store: the ones' complement of the folded sum. Over data that already holds
    /// a correct checksum this is 0.
    public var value: UInt16 {
        var folded = sum
        while folded >> 16 != 0 { folded = (folded & 0xFFFF) + (folded >> 16) }
        return ~UInt16(truncatingIfNeeded: folded)
    }

    /// The folded sum, not complemented: what a packet handed on with a partial checksum
    /// (CHECKSUM_PARTIAL, virtio NEEDS_CSUM) carries in its checksum field, the pseudo-header sum
    /// that the kernel or device completes over the rest of the segment.
    public var partialValue: UInt16 { ~value }

    /// The checksum of one buffer.
    public static func checksum(_ bytes: UnsafeRawBufferPointer) -> UInt16 {
        var accumulator = InternetChecksum()
        accumulator.add(bytes)
        return accumulator.value
    }
}
