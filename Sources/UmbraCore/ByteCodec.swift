// Canonical binary codec. Every multi-byte integer is little-endian (like WireGuard and Noise's
// nonce), every variable-length field carries an explicit length, and every read is bounded: a
// reader never allocates more than the bytes it was given, and every failure is a typed error.

/// Why a decoder refused its input.
public enum DecodeError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The input ended before a field of `needed` bytes at `offset`.
    case truncated(offset: Int, needed: Int)
    /// A length prefix at `offset` declared `length`, above the field's `limit`.
    case lengthTooLarge(offset: Int, length: Int, limit: Int)
    /// Bytes were left over after a complete message.
    case trailingBytes(count: Int)
    /// An enum tag or type byte that this version does not know.
    case unknownTag(field: String, value: UInt64)
    /// A field that parsed but is not valid (a bad address family, a zero port, ...).
    case invalid(field: String, reason: String)

    public var description: String {
        switch self {
        case .truncated(let offset, let needed): "input ends at byte \(offset), \(needed) more byte(s) needed"
        case .lengthTooLarge(let offset, let length, let limit):
            "length \(length) at byte \(offset) exceeds the limit of \(limit)"
        case .trailingBytes(let count): "\(count) unexpected trailing byte(s)"
        case .unknownTag(let field, let value): "unknown \(field) \(value)"
        case .invalid(let field, let reason): "invalid \(field): \(reason)"
        }
    }
}

/// Appends canonical encodings to a growable buffer.
public struct ByteWriter: Sendable {
    public private(set) var bytes: [UInt8]

    public init(capacity: Int = 64) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    public var count: Int { bytes.count }

    public mutating func write(_ value: UInt8) { bytes.append(value) }

    public mutating func write(_ value: UInt16) { appendLittleEndian(value) }
    public mutating func write(_ value: UInt32) { appendLittleEndian(value) }
    public mutating func write(_ value: UInt64) { appendLittleEndian(value) }

    public mutating func write(_ value: Bool) { bytes.append(value ? 1 : 0) }

    /// Raw bytes with no length prefix (fixed-size fields such as keys).
    public mutating func write<C: Collection>(raw: C) where C.Element == UInt8 { bytes.append(contentsOf: raw) }

    /// Bytes prefixed by a 16-bit length. Precondition: `value.count <= UInt16.max`.
    public mutating func write<C: Collection>(lengthPrefixed value: C) where C.Element == UInt8 {
        precondition(value.count <= Int(UInt16.max), "field too long for a 16-bit length prefix")
        write(UInt16(value.count))
        bytes.append(contentsOf: value)
    }

    /// A UTF-8 string prefixed by a 16-bit length.
    public mutating func write(string: String) { write(lengthPrefixed: Array(string.utf8)) }

    private mutating func appendLittleEndian<T: FixedWidthInteger>(_ value: T) {
        withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
    }
}

/// Reads canonical encodings from untrusted bytes. Never traps on bad input.
public struct ByteReader: Sendable {
    public let bytes: [UInt8]
    public private(set) var offset: Int

    public init(_ bytes: [UInt8]) {
        self.bytes = bytes
        self.offset = 0
    }

    public init<C: Collection>(_ bytes: C) where C.Element == UInt8 {
        self.init(Array(bytes))
    }

    public var remaining: Int { bytes.count - offset }
    public var isAtEnd: Bool { offset >= bytes.count }

    private mutating func need(_ count: Int) throws(DecodeError) {
        guard count >= 0, remaining >= count else { throw .truncated(offset: offset, needed: count - remaining) }
    }

    public mutating func readUInt8() throws(DecodeError) -> UInt8 {
        try need(1)
        defer { offset += 1 }
        return bytes[offset]
    }

    public mutating func readUInt16() throws(DecodeError) -> UInt16 { try readInteger() }
    public mutating func readUInt32() throws(DecodeError) -> UInt32 { try readInteger() }
    public mutating func readUInt64() throws(DecodeError) -> UInt64 { try readInteger() }

    public mutating func readBool(field: String = "bool") throws(DecodeError) -> Bool {
        switch try readUInt8() {
        case 0: return false
        case 1: return true
        case let other: throw .invalid(field: field, reason: "boolean byte \(other) is neither 0 nor 1")
        }
    }

    /// Exactly `count` raw bytes.
    public mutating func readBytes(_ count: Int) throws(DecodeError) -> [UInt8] {
        try need(count)
        defer { offset += count }
        return Array(bytes[offset..<offset + count])
    }

    /// A 16-bit length-prefixed field of at most `limit` bytes.
    public mutating func readLengthPrefixed(limit: Int) throws(DecodeError) -> [UInt8] {
        let start = offset
        let length = Int(try readUInt16())
        guard length <= limit else { throw .lengthTooLarge(offset: start, length: length, limit: limit) }
        return try readBytes(length)
    }

    /// A 16-bit length-prefixed UTF-8 string of at most `limit` bytes.
    public mutating func readString(limit: Int, field: String = "string") throws(DecodeError) -> String {
        let raw = try readLengthPrefixed(limit: limit)
        guard let string = String(validating: raw, as: UTF8.self) else {
            throw .invalid(field: field, reason: "not valid UTF-8")
        }
        return string
    }

    /// Everything that is left.
    public mutating func readRemaining() -> [UInt8] {
        defer { offset = bytes.count }
        return Array(bytes[offset...])
    }

    /// Throws unless every byte was consumed.
    public func expectEnd() throws(DecodeError) {
        if remaining > 0 { throw .trailingBytes(count: remaining) }
    }

    private mutating func readInteger<T: FixedWidthInteger>() throws(DecodeError) -> T {
        let size = MemoryLayout<T>.size
        try need(size)
        var value: T = 0
        for index in 0..<size { value |= T(bytes[offset + index]) << (8 * index) }
        offset += size
        return value
    }
}
