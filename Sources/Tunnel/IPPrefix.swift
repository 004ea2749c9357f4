// CIDR prefixes of either IP family, for egress policies and routes. Dialogue's `IPv4Network` is
// the narrower type of an address *pool* (IPv4 only, /8 to /30, with a gateway); this one describes
// any block from a whole family (/0) to a single address (/32, /128).
//
// Strict like `IPAddress(parsing:)`: host bits must be clear (a typo such as 10.0.0.1/8 is refused
// with the block it probably meant), the length is decimal without sign or leading zeros, and the
// families never mix (a v4 prefix does not contain the IPv4-mapped v6 address ::ffff:a.b.c.d; policy
// lists the mapped range separately). `contains` is a mask and a compare, with no allocation.

import UmbraCore

/// Why a CIDR text was refused. Each `description` says what is wrong and shows an example.
public enum IPPrefixParseError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The text is empty.
    case empty
    /// No `/length` (the clipped text).
    case missingLength(String)
    /// The part before `/` is not an IP address (the clipped text).
    case invalidAddress(String)
    /// The part after `/` is not a decimal number (the clipped text).
    case invalidLength(String)
    /// The length is a number above the family's bit count (32 or 128).
    case lengthOutOfRange(length: Int, maximum: Int)
    /// Bits below the prefix length are set; `suggested` is the block with them cleared.
    case hostBitsSet(String, suggested: String)

    public var description: String {
        switch self {
        case .empty: "empty prefix, expected a CIDR block such as 10.0.0.0/8 or fc00::/7"
        case .missingLength(let text):
            "'\(text)' has no prefix length; write a CIDR block such as 10.0.0.0/8, or /32 (/128) for one address"
        case .invalidAddress(let text):
            "'\(text)' is not an IPv4 or IPv6 address; expected a CIDR block such as 10.0.0.0/8 or fc00::/7"
        case .invalidLength(let text): "'\(text)' is not a prefix length; expected a number as in 10.0.0.0/8"
        case .lengthOutOfRange(let length, let maximum):
            "prefix length \(length) is out of range 0-\(maximum) for IPv\(maximum == 32 ? 4 : 6)"
        case .hostBitsSet(let text, let suggested): "\(text) has host bits set; did you mean \(suggested)?"
        }
    }
}

/// A CIDR block: an IPv4 or IPv6 network address and a prefix length, with no host bits set.
public struct IPPrefix: Hashable, Sendable, CustomStringConvertible {
    /// The network address (every bit below `length` is zero).
    public let address: IPAddress
    /// The prefix length: 0...32 for IPv4, 0...128 for IPv6.
    public let length: UInt8

    /// A block from its network address and length. Throws when the length is out of range for the
    /// family or host bits are set.
    public init(_ address: IPAddress, length: Int) throws(IPPrefixParseError) {
        let maximum = address.bitCount
        guard (0...maximum).contains(length) else { throw .lengthOutOfRange(length: length, maximum: maximum) }
        let network = Self.masked(address, length: length)
        guard network == address else {
            throw .hostBitsSet("\(address)/\(length)", suggested: "\(network)/\(length)")
        }
        self.init(uncheckedAddress: address, length: UInt8(length))
    }

    /// Parses `a.b.c.d/n` or an IPv6 `x::/n` (any `IPAddress(parsing:)` form, no brackets).
    public init(parsing text: some StringProtocol) throws(IPPrefixParseError) {
        let text = Substring(text)
        guard !text.isEmpty else { throw .empty }
        guard let slash = text.firstIndex(of: "/") else { throw .missingLength(Self.clipped(text)) }
        let addressText = text[..<slash]
        let lengthText = text[text.index(after: slash)...]
        guard let address = IPAddress(parsing: addressText) else {
            throw .invalidAddress(Self.clipped(addressText))
        }
        guard !lengthText.isEmpty, lengthText.utf8.count <= 3,
            lengthText.utf8.allSatisfy({ (0x30...0x39).contains($0) }),
            lengthText == "0" || lengthText.first != "0",
            let length = Int(lengthText)
        else { throw .invalidLength(Self.clipped(lengthText)) }
        try self.init(address, length: length)
    }

    /// For the built-in tables: the caller guarantees a valid length and no host bits.
    init(uncheckedAddress address: IPAddress, length: UInt8) {
        self.address = address
        self.length = length
    }

    /// Whether `candidate` is in this block. Addresses of the other family never are.
    @inline(__always)
    public func contains(_ candidate: IPAddress) -> Bool {
        switch (address, candidate) {
        case (.v4(let network), .v4(let value)):
            return value & Self.mask32(length) == network
        case (.v6(let networkHigh, let networkLow), .v6(let high, let low)):
            if length <= 64 { return high & Self.mask64(length) == networkHigh }
            return high == networkHigh && low & Self.mask64(length - 64) == networkLow
        default:
            return false
        }
    }

    /// `10.0.0.0/8`, `fc00::/7` (the address in its canonical `IPAddress` form).
    public var description: String { "\(address)/\(length)" }

    // MARK: - Masks

    /// The top `length` bits set (0 for length 0; all for 32 and above).
    @inline(__always)
    static func mask32(_ length: UInt8) -> UInt32 {
        length == 0 ? 0 : length >= 32 ? .max : UInt32.max << (32 - UInt32(length))
    }

    /// The top `length` bits set (0 for length 0; all for 64 and above).
    @inline(__always)
    static func mask64(_ length: UInt8) -> UInt64 {
        length == 0 ? 0 : length >= 64 ? .max : UInt64.max << (64 - UInt64(length))
    }

    /// `address` with every bit below `length` cleared. Precondition: length within the family's range.
    static func masked(_ address: IPAddress, length: Int) -> IPAddress {
        let bits = UInt8(clamping: length)
        switch address {
        case .v4(let value): return .v4(value & mask32(bits))
        case .v6(let high, let low):
            if bits <= 64 { return .v6(high: high & mask64(bits), low: 0) }
            return .v6(high: high, low: low & mask64(bits - 64))
        }
    }

    private static func clipped(_ text: Substring) -> String {
        text.count <= 64 ? String(text) : String(text.prefix(64)) + "…"
    }
}

extension IPAddress {
    /// 32 for IPv4, 128 for IPv6.
    var bitCount: Int {
        switch self {
        case .v4: 32
        case .v6: 128
        }
    }
}
