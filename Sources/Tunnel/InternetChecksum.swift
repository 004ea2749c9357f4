// The Internet checksum (RFC 1071): the ones' complement of the ones' complement sum of 16-bit
// big-endian words. Used for the IPv4 header, ICMP, and (with a pseudo-header) ICMPv6, TCP and UDP.
//
// An accumulator, so a checksum can cover pieces that are not adjacent in memory (a pseudo-header,
// then the message) without copying them together. Bytes may be added in pieces of any length: an
// odd byte at the end of one piece pairs with the first byte of the next, exactly as if the pieces
// were one buffer. The sum is kept in 64 bits and folded only at the end, which cannot overflow for
// anything smaller than 2^48 bytes. No allocation.

import UmbraCore

/// An RFC 1071 checksum accumulator.
public struct InternetChecksum: Sendable {
    private var sum: UInt64 = 0
    /// True when an odd number of bytes has been added: the next byte is a word's low half.
    private var odd = false

    public init() {}

    /// Adds `bytes` as if they followed everything added so far.
    public mutating func add(_ bytes: UnsafeRawBufferPointer) {
        var index = 0
        let count = bytes.count
        if odd, count > 0 {
            sum &+= UInt64(bytes[0])
            index = 1
            odd = false
        }
        while index + 1 < count {
            sum &+= UInt64(bytes[index]) << 8 | UInt64(bytes[index + 1])
            index += 2
        }
        if index < count {
            sum &+= UInt64(bytes[index]) << 8
            odd = true
        }
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

    /// The checksum of one buffer.
    public static func checksum(_ bytes: UnsafeRawBufferPointer) -> UInt16 {
        var accumulator = InternetChecksum()
        accumulator.add(bytes)
        return accumulator.value
    }
}
