// Text forms of IP addresses and endpoints. Parsing is strict and total: every input either yields
// exactly one value or fails, and `description` is the canonical form (RFC 5952 for IPv6), which
// parses back to the same value.

// MARK: - IPAddress parsing

extension IPAddress {
    /// The longest valid text form: `ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255`.
    public static let maximumTextLength = 45

    /// Parses a dotted-quad IPv4 address (exactly four decimal parts 0-255, no leading zeros) or an
    /// IPv6 address in any RFC 4291 §2.2 text form (`::` compression, an embedded IPv4 tail such as
    /// `::ffff:1.2.3.4`, either case). Zone ids (`%eth0`) and brackets are not accepted.
    /// Returns `nil` for anything else.
    public init?(parsing text: some StringProtocol) {
        if let value = IPAddress(parsingIPv4: text) {
            self = value
        } else if let value = IPAddress(parsingIPv6: text) {
            self = value
        } else {
            return nil
        }
    }

    /// Parses a dotted-quad IPv4 address only.
    public init?(parsingIPv4 text: some StringProtocol) {
        guard text.utf8.count <= 15, let value = IPTextParser.ipv4(Array(text.utf8)[...]) else { return nil }
        self = .v4(value)
    }

    /// Parses an IPv6 address only (any RFC 4291 text form, no zone id, no brackets).
    public init?(parsingIPv6 text: some StringProtocol) {
        guard text.utf8.count <= IPAddress.maximumTextLength,
            let (high, low) = IPTextParser.ipv6(Array(text.utf8)[...])
        else { return nil }
        self = .v6(high: high, low: low)
    }
}

/// The parsers behind `IPAddress(parsing:)`, on UTF-8 code units.
enum IPTextParser {
    /// Exactly four dot-separated decimal octets, each 0-255 without leading zeros.
    static func ipv4(_ units: ArraySlice<UInt8>) -> UInt32? {
        var result: UInt32 = 0
        var octets = 0
        var index = units.startIndex
        while true {
            let start = index
            var value: UInt32 = 0
            while index < units.endIndex, ASCII.isDigit(units[index]) {
                guard index - start < 3 else { return nil }
                value = value * 10 + UInt32(units[index] - 0x30)
                index += 1
            }
            let length = index - start
            guard length >= 1, value <= 255, length == 1 || units[start] != 0x30 else { return nil }
            result = result << 8 | value
            octets += 1
            if octets == 4 { return index == units.endIndex ? result : nil }
            guard index < units.endIndex, units[index] == 0x2E else { return nil }
            index += 1
        }
    }

    /// RFC 4291 §2.2: eight hex groups, optionally one `::` standing for one or more zero groups,
    /// optionally an IPv4 dotted quad in place of the last two groups.
    static func ipv6(_ units: ArraySlice<UInt8>) -> (high: UInt64, low: UInt64)? {
        let colon: UInt8 = 0x3A
        let end = units.endIndex
        guard units.count >= 2 else { return nil }
        var groups: [UInt16] = []
        groups.reserveCapacity(8)
        var gapAt: Int?
        var index = units.startIndex

        if units[index] == colon {
            guard units[index + 1] == colon else { return nil }
            gapAt = 0
            index += 2
        }
        while index < end {
            guard groups.count < 8 else { return nil }
            let start = index
            var value: UInt32 = 0
            while index < end, let nibble = ASCII.hexValue(units[index]) {
                guard index - start < 4 else { return nil }
                value = value << 4 | UInt32(nibble)
                index += 1
            }
            if index < end, units[index] == 0x2E {
                // An IPv4 tail: it must be the very end and fill the last two groups.
                guard groups.count <= 6, let v4 = ipv4(units[start..<end]) else { return nil }
                groups.append(UInt16(truncatingIfNeeded: v4 >> 16))
                groups.append(UInt16(truncatingIfNeeded: v4))
                index = end
                break
            }
            guard index > start else { return nil }
            groups.append(UInt16(value))
            if index == end { break }
            guard units[index] == colon else { return nil }
            index += 1
            if index < end, units[index] == colon {
                guard gapAt == nil else { return nil }
                gapAt = groups.count
                index += 1
            } else if index == end {
                return nil  // a single trailing colon
            }
        }

        if let gapAt {
            guard groups.count <= 7 else { return nil }
            groups.insert(contentsOf: repeatElement(0, count: 8 - groups.count), at: gapAt)
        } else {
            guard groups.count == 8 else { return nil }
        }
        var high: UInt64 = 0
        var low: UInt64 = 0
        for group in groups[0..<4] { high = high << 16 | UInt64(group) }
        for group in groups[4..<8] { low = low << 16 | UInt64(group) }
        return (high, low)
    }
}

// MARK: - IPAddress formatting and classification

extension IPAddress: CustomStringConvertible {
    /// IPv4 as a dotted quad; IPv6 per RFC 5952 (lowercase, no leading zeros, the longest run of two
    /// or more zero groups compressed to `::`, the leftmost on a tie), with IPv4-mapped addresses
    /// in the mixed form `::ffff:1.2.3.4` that RFC 5952 §5 recommends.
    public var description: String {
        switch self {
        case .v4(let value):
            return Self.dottedQuad(value)
        case .v6(let high, let low):
            if let mapped = ipv4Mapped { return "::ffff:" + Self.dottedQuad(mapped) }
            return Self.rfc5952(high: high, low: low)
        }
    }

    /// The embedded IPv4 address of an IPv4-mapped IPv6 address (`::ffff:0:0/96`), else `nil`.
    public var ipv4Mapped: UInt32? {
        guard case .v6(let high, let low) = self, high == 0, low >> 32 == 0xFFFF else { return nil }
        return UInt32(truncatingIfNeeded: low)
    }

    /// The 4 or 16 address bytes in network order.
    public var bytes: [UInt8] {
        switch self {
        case .v4(let value): return (0..<4).map { UInt8(truncatingIfNeeded: value >> (24 - 8 * $0)) }
        case .v6(let high, let low):
            return (0..<8).map { UInt8(truncatingIfNeeded: high >> (56 - 8 * $0)) }
                + (0..<8).map { UInt8(truncatingIfNeeded: low >> (56 - 8 * $0)) }
        }
    }

    /// 127.0.0.0/8 or ::1 (and IPv4-mapped loopback).
    public var isLoopback: Bool {
        switch self.unmapped {
        case .v4(let value): value >> 24 == 127
        case .v6(let high, let low): high == 0 && low == 1
        }
    }

    /// Private and shared address space: 10/8, 172.16/12, 192.168/16, 100.64/10 (RFC 6598 CGNAT),
    /// and fc00::/7 (unique local). IPv4-mapped addresses are judged by their IPv4 address.
    public var isPrivate: Bool {
        switch self.unmapped {
        case .v4(let value):
            value >> 24 == 10 || value >> 20 == 0xAC1 || value >> 16 == 0xC0A8 || value >> 22 == (100 << 2 | 1)
        case .v6(let high, _): high >> 57 == 0xFC >> 1
        }
    }

    /// 0.0.0.0 or ::.
    public var isUnspecified: Bool {
        switch self {
        case .v4(let value): value == 0
        case .v6(let high, let low): high == 0 && low == 0
        }
    }

    /// 169.254/16 or fe80::/10 (and IPv4-mapped link-local).
    public var isLinkLocal: Bool {
        switch self.unmapped {
        case .v4(let value): value >> 16 == 0xA9FE
        case .v6(let high, _): high >> 54 == 0xFE80 >> 6
        }
    }

    /// An IPv4-mapped IPv6 address as the IPv4 address it carries; anything else unchanged.
    public var unmapped: IPAddress {
        if let mapped = ipv4Mapped { return .v4(mapped) }
        return self
    }

    static func dottedQuad(_ value: UInt32) -> String {
        "\(value >> 24).\(value >> 16 & 0xFF).\(value >> 8 & 0xFF).\(value & 0xFF)"
    }

    static func rfc5952(high: UInt64, low: UInt64) -> String {
        let groups =
            (0..<4).map { UInt16(truncatingIfNeeded: high >> (48 - 16 * $0)) }
            + (0..<4).map { UInt16(truncatingIfNeeded: low >> (48 - 16 * $0)) }
        // The longest run of zero groups, leftmost on a tie; a single zero group is not compressed.
        var bestStart = -1
        var bestLength = 1
        var runStart = 0
        var runLength = 0
        for (index, group) in groups.enumerated() {
            if group == 0 {
                if runLength == 0 { runStart = index }
                runLength += 1
                if runLength > bestLength {
                    bestStart = runStart
                    bestLength = runLength
                }
            } else {
                runLength = 0
            }
        }
        func hex(_ slice: ArraySlice<UInt16>) -> String {
            slice.map { String($0, radix: 16) }.joined(separator: ":")
        }
        guard bestStart >= 0 else { return hex(groups[...]) }
        return hex(groups[0..<bestStart]) + "::" + hex(groups[(bestStart + bestLength)...])
    }
}

// MARK: - Endpoint text

/// Why a text endpoint was refused. Each case's `description` names the problem.
public enum EndpointParseError: Error, Equatable, Sendable, CustomStringConvertible {
    case empty
    case missingHost
    case missingPort
    /// The port text (clipped) is not a decimal number without sign or leading zeros.
    case invalidPort(String)
    /// The port is a number but not in 1...65535.
    case portOutOfRange(String)
    case invalidIPv4(String)
    case invalidIPv6(String)
    /// A host that is neither an IPv4 address nor a bracketed IPv6 address.
    case notAnIPAddress(String)
    case ipv6NeedsBrackets
    case unclosedBracket
    /// Something other than `:port` after a `]`.
    case unexpectedAfterBracket(String)

    public var description: String {
        switch self {
        case .empty: "empty endpoint, expected <ip>:<port> like 1.2.3.4:4747"
        case .missingHost: "missing host before ':<port>'"
        case .missingPort: "missing port, expected <host>:<port> like 1.2.3.4:4747"
        case .invalidPort(let text): "'\(text)' is not a port number"
        case .portOutOfRange(let text): "port \(text) is out of range 1-65535"
        case .invalidIPv4(let text): "'\(text)' is not an IPv4 address"
        case .invalidIPv6(let text): "'\(text)' is not an IPv6 address"
        case .notAnIPAddress(let text): "'\(text)' is not an IP address"
        case .ipv6NeedsBrackets: "IPv6 addresses need brackets, like [::1]:4747"
        case .unclosedBracket: "'[' is not closed by ']'"
        case .unexpectedAfterBracket(let text): "expected ':<port>' after ']', found '\(text)'"
        }
    }
}

/// `host:port` splitting and port parsing, shared by `Endpoint` and `Contact`.
enum HostPortText {
    /// How a `host:port` text splits. `portText` is `nil` when there is no port separator at all.
    struct Parts {
        var host: Substring
        var bracketed: Bool
        var portText: Substring?
    }

    static func split(_ text: Substring) throws(EndpointParseError) -> Parts {
        guard let first = text.first else { throw .empty }
        if first == "[" {
            guard let close = text.firstIndex(of: "]") else { throw .unclosedBracket }
            let host = text[text.index(after: text.startIndex)..<close]
            let rest = text[text.index(after: close)...]
            guard let separator = rest.first else { return Parts(host: host, bracketed: true, portText: nil) }
            guard separator == ":" else { throw .unexpectedAfterBracket(clipped(rest)) }
            return Parts(host: host, bracketed: true, portText: rest.dropFirst())
        }
        guard let colon = text.firstIndex(of: ":") else { return Parts(host: text, bracketed: false, portText: nil) }
        let portText = text[text.index(after: colon)...]
        if portText.contains(":") { throw .ipv6NeedsBrackets }
        return Parts(host: text[..<colon], bracketed: false, portText: portText)
    }

    /// A decimal port 1...65535 without sign or leading zeros.
    static func port(_ text: Substring?) throws(EndpointParseError) -> UInt16 {
        guard let text, !text.isEmpty else { throw .missingPort }
        guard text.utf8.allSatisfy(ASCII.isDigit), text == "0" || text.first != "0" else {
            throw .invalidPort(clipped(text))
        }
        guard text.utf8.count <= 5, let value = Int(text), value >= 1, value <= 65535 else {
            throw .portOutOfRange(clipped(text))
        }
        return UInt16(value)
    }

    /// True when `host` can only be meant as an IPv4 address (digits and dots only).
    static func looksLikeIPv4(_ host: Substring) -> Bool {
        !host.isEmpty && host.utf8.allSatisfy { ASCII.isDigit($0) || $0 == 0x2E }
    }
}

extension Endpoint: CustomStringConvertible {
    /// Parses `1.2.3.4:4747` or `[::1]:4747`. IPv6 needs brackets; host names are not accepted here
    /// (a `Contact` takes them).
    public init(parsing text: some StringProtocol) throws(EndpointParseError) {
        let parts = try HostPortText.split(String(text)[...])
        let address: IPAddress
        if parts.bracketed {
            guard let v6 = IPAddress(parsingIPv6: parts.host) else { throw .invalidIPv6(clipped(parts.host)) }
            address = v6
        } else if parts.host.isEmpty {
            throw .missingHost
        } else if HostPortText.looksLikeIPv4(parts.host) {
            guard let v4 = IPAddress(parsingIPv4: parts.host) else { throw .invalidIPv4(clipped(parts.host)) }
            address = v4
        } else {
            throw .notAnIPAddress(clipped(parts.host))
        }
        self.init(address: address, port: try HostPortText.port(parts.portText))
    }

    /// `1.2.3.4:4747` or `[2001:db8::1]:4747`.
    public var description: String {
        switch address {
        case .v4: "\(address):\(port)"
        case .v6: "[\(address)]:\(port)"
        }
    }
}
