// Who a node is: its Ed25519 public key, the 256-bit DHT id derived from it, and the text address
// people paste into configs (`umbra1` + base32 of the key).

import UmbraCrypto

// MARK: - PublicKey

/// An Ed25519 public key: exactly 32 bytes. Only the length is checked here; whether the bytes are a
/// valid curve point is found out when the key is used (signature check, X25519 conversion).
public struct PublicKey: Hashable, Sendable, CustomStringConvertible {
    public static let byteCount = 32

    /// Why bytes are not a public key.
    public enum LengthError: Error, Equatable, Sendable, CustomStringConvertible {
        case wrongLength(Int)

        public var description: String {
            switch self {
            case .wrongLength(let count): "a public key is \(PublicKey.byteCount) bytes, not \(count)"
            }
        }
    }

    /// The 32 key bytes.
    public let bytes: [UInt8]

    public init(bytes: some Collection<UInt8>) throws(LengthError) {
        guard bytes.count == Self.byteCount else { throw .wrongLength(bytes.count) }
        self.bytes = Array(bytes)
    }

    /// The node id of this key (BLAKE2b-256 of the key bytes).
    public var nodeID: NodeID { NodeID(publicKey: self) }

    public static func == (lhs: PublicKey, rhs: PublicKey) -> Bool { lhs.bytes == rhs.bytes }

    /// Hashes the first 16 bytes only: keys are uniformly random (finding many keys that share
    /// 128 bits is infeasible), and peers are looked up by key on every transport packet.
    public func hash(into hasher: inout Hasher) {
        bytes.withUnsafeBytes { raw in
            hasher.combine(raw.loadUnaligned(fromByteOffset: 0, as: UInt64.self))
            hasher.combine(raw.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
        }
    }

    /// The `umbra1…` address of this key.
    public var description: String { NodeAddress(publicKey: self).description }
}

// MARK: - Key256 / NodeID

/// A 256-bit key in the DHT key space, stored inline as four big-endian words (word 0 holds the most
/// significant bits), so ids compare and XOR without heap traffic. `Comparable` is numeric order.
public struct Key256: Hashable, Sendable, Comparable, CustomStringConvertible {
    public static let byteCount = 32
    public static let bitCount = 256
    public static let zero = Key256(words: (0, 0, 0, 0))

    public var words: (UInt64, UInt64, UInt64, UInt64)

    public init(words: (UInt64, UInt64, UInt64, UInt64)) { self.words = words }

    /// The key of exactly 32 bytes (big-endian); `nil` for any other length.
    public init?(bytes: some Collection<UInt8>) {
        guard bytes.count == Self.byteCount else { return nil }
        var parts: [UInt64] = [0, 0, 0, 0]
        for (index, byte) in bytes.enumerated() { parts[index / 8] = parts[index / 8] << 8 | UInt64(byte) }
        words = (parts[0], parts[1], parts[2], parts[3])
    }

    /// Parses the 64-character hex form that `description` prints.
    public init?(hex: some StringProtocol) {
        guard hex.utf8.count == 64, let bytes = Hex.decode(hex) else { return nil }
        self.init(bytes: bytes)
    }

    /// A uniformly random key (for bucket refresh lookups).
    public static func random(using rng: inout some RandomNumberGenerator) -> Key256 {
        Key256(words: (rng.next(), rng.next(), rng.next(), rng.next()))
    }

    /// The 32 bytes, most significant first.
    public var bytes: [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(32)
        for word in wordArray {
            for shift in stride(from: 56, through: 0, by: -8) {
                out.append(UInt8(truncatingIfNeeded: word >> UInt64(shift)))
            }
        }
        return out
    }

    var wordArray: [UInt64] { [words.0, words.1, words.2, words.3] }

    /// The XOR metric: `a.xorDistance(to: b) == b.xorDistance(to: a)`, zero only for equal keys.
    public func xorDistance(to other: Key256) -> Distance {
        Distance(
            Key256(
                words: (
                    words.0 ^ other.words.0, words.1 ^ other.words.1, words.2 ^ other.words.2, words.3 ^ other.words.3
                )
            )
        )
    }

    /// The number of leading bits (0...256) on which the two keys agree.
    public func commonPrefixLength(with other: Key256) -> Int { xorDistance(to: other).leadingZeroBitCount }

    /// The key with bit `index` (0 = most significant) flipped; for building ids in a given bucket.
    public func flippingBit(_ index: Int) -> Key256 {
        precondition(index >= 0 && index < Self.bitCount, "bit index out of range")
        var parts = wordArray
        parts[index / 64] ^= 1 << UInt64(63 - index % 64)
        return Key256(words: (parts[0], parts[1], parts[2], parts[3]))
    }

    public static func == (lhs: Key256, rhs: Key256) -> Bool { lhs.words == rhs.words }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(words.0)
        hasher.combine(words.1)
        hasher.combine(words.2)
        hasher.combine(words.3)
    }

    public static func < (lhs: Key256, rhs: Key256) -> Bool {
        (lhs.words.0, lhs.words.1, lhs.words.2, lhs.words.3) < (rhs.words.0, rhs.words.1, rhs.words.2, rhs.words.3)
    }

    /// 64 lowercase hex digits.
    public var description: String { Hex.encode(bytes) }

    /// An XOR distance between two keys. Smaller is closer; `Comparable` is numeric order.
    public struct Distance: Hashable, Sendable, Comparable, CustomStringConvertible {
        public let value: Key256

        public init(_ value: Key256) { self.value = value }

        /// Leading zero bits (0...256): the length of the common prefix of the two keys.
        public var leadingZeroBitCount: Int {
            for (index, word) in value.wordArray.enumerated() where word != 0 {
                return index * 64 + word.leadingZeroBitCount
            }
            return Key256.bitCount
        }

        public static func < (lhs: Distance, rhs: Distance) -> Bool { lhs.value < rhs.value }

        public var description: String { value.description }
    }
}

/// A node's id in the DHT: BLAKE2b-256 of its Ed25519 public key.
public typealias NodeID = Key256

extension Key256 {
    /// The node id of `publicKey`: BLAKE2b with a 32-byte output over the 32 key bytes.
    public init(publicKey: PublicKey) {
        let digest = BLAKE2b.hash(publicKey.bytes, outputLength: Key256.byteCount)
        guard let key = Key256(bytes: digest) else { preconditionFailure("BLAKE2b returned \(digest.count) bytes") }
        self = key
    }
}

// MARK: - NodeAddress

/// Why a node address text was refused. Positions are 1-based character positions in the whole text.
public enum AddressParseError: Error, Equatable, Sendable, CustomStringConvertible {
    case missingPrefix
    case wrongLength(Int)
    case invalidCharacter(Character, position: Int)
    case nonZeroPadding

    public var description: String {
        switch self {
        case .missingPrefix: "a node address must start with umbra1"
        case .wrongLength(let count):
            "node address has \(count) characters after umbra1, expected \(NodeAddress.encodedKeyLength)"
        case .invalidCharacter(let character, let position):
            "character '\(shown(character))' at position \(position) is not base32 (a-z, 2-7)"
        case .nonZeroPadding: "node address has non-zero padding bits in its last character (expected a or q there)"
        }
    }
}

/// A node's text address: `umbra1` followed by the lowercase, unpadded base32 of its 32-byte public
/// key (52 characters). Parsing accepts either case; `description` is lowercase.
public struct NodeAddress: Hashable, Sendable, CustomStringConvertible {
    public static let prefix = "umbra1"
    public static let encodedKeyLength = Base32.encodedLength(byteCount: PublicKey.byteCount)
    public static let textLength = prefix.count + encodedKeyLength

    public let publicKey: PublicKey

    public init(publicKey: PublicKey) { self.publicKey = publicKey }

    public init(parsing text: some StringProtocol) throws(AddressParseError) {
        let prefixLength = Self.prefix.count
        guard text.utf8.count >= prefixLength,
            String(decoding: text.utf8.prefix(prefixLength).map(ASCII.lowercased), as: UTF8.self) == Self.prefix
        else { throw .missingPrefix }
        // Slice by UTF-8 offset, not by Characters: a combining mark after "umbra1" must not merge
        // with the '1' and vanish from the body.
        let body = text[text.utf8.index(text.utf8.startIndex, offsetBy: prefixLength)...]
        // Check characters before the length so a typo is reported where it is, not as a count.
        var count = 0
        for character in body {
            count += 1
            guard Base32.value(of: character) != nil else {
                throw .invalidCharacter(character, position: prefixLength + count)
            }
        }
        guard count == Self.encodedKeyLength else { throw .wrongLength(count) }
        let bytes: [UInt8]
        do throws(Base32.DecodeError) {
            bytes = try Base32.decode(body)
        } catch {
            switch error {
            case .nonZeroPadding: throw .nonZeroPadding
            case .invalidCharacter(let character, let offset):
                throw .invalidCharacter(character, position: prefixLength + offset + 1)
            case .invalidLength(let count): throw .wrongLength(count)
            }
        }
        guard let key = try? PublicKey(bytes: bytes) else { throw .wrongLength(count) }
        self.publicKey = key
    }

    /// The node id of this address's key.
    public var nodeID: NodeID { publicKey.nodeID }

    /// `umbra1` + 52 lowercase base32 characters.
    public var description: String { Self.prefix + Base32.encode(publicKey.bytes) }
}

// MARK: - Binary codec

extension ByteWriter {
    /// The 32 raw bytes of `key`.
    public mutating func write(_ key: Key256) { write(raw: key.bytes) }

    /// The 32 raw bytes of `publicKey`.
    public mutating func write(_ publicKey: PublicKey) { write(raw: publicKey.bytes) }
}

extension ByteReader {
    /// 32 raw bytes as a `Key256`.
    public mutating func readKey256() throws(DecodeError) -> Key256 {
        guard let key = Key256(bytes: try readBytes(Key256.byteCount)) else {
            preconditionFailure("readBytes returned the wrong count")
        }
        return key
    }

    /// 32 raw bytes as a `PublicKey`.
    public mutating func readPublicKey() throws(DecodeError) -> PublicKey {
        let bytes = try readBytes(PublicKey.byteCount)
        do { return try PublicKey(bytes: bytes) } catch { preconditionFailure("readBytes returned the wrong count") }
    }
}
