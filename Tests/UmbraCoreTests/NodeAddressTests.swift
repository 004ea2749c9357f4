import Testing

@testable import UmbraCore

@Suite("Base32")
struct Base32Tests {
    /// RFC 4648 §10, lowercased and without padding.
    static let rfc4648Vectors: [(String, String)] = [
        ("", ""), ("f", "my"), ("fo", "mzxq"), ("foo", "mzxw6"), ("foob", "mzxw6yq"), ("fooba", "mzxw6ytb"),
        ("foobar", "mzxw6ytboi"),
    ]

    @Test("RFC 4648 test vectors", arguments: rfc4648Vectors)
    func vectors(plain: String, encoded: String) throws {
        #expect(Base32.encode(Array(plain.utf8)) == encoded)
        #expect(try Base32.decode(encoded) == Array(plain.utf8))
        #expect(try Base32.decode(encoded.uppercased()) == Array(plain.utf8))
        #expect(Base32.encodedLength(byteCount: plain.utf8.count) == encoded.count)
    }

    @Test("random byte strings round-trip", arguments: 0..<40)
    func roundTrip(length: Int) throws {
        var rng = SeededRandom(seed: UInt64(length))
        let bytes = rng.bytes(length)
        let text = Base32.encode(bytes)
        #expect(text.count == Base32.encodedLength(byteCount: length))
        #expect(try Base32.decode(text) == bytes)
    }

    @Test(
        "bad base32 is refused with a typed error",
        arguments: [
            ("m", Base32.DecodeError.invalidLength(1)), ("mzx", .invalidLength(3)), ("mzxw6y", .invalidLength(6)),
            ("mz", .nonZeroPadding), ("mzxr", .nonZeroPadding), ("mzxw7", .nonZeroPadding),
            ("mzxw1", .invalidCharacter("1", offset: 4)), ("my=", .invalidCharacter("=", offset: 2)),
            ("8a", .invalidCharacter("8", offset: 0)), ("m y", .invalidCharacter(" ", offset: 1)),
            ("mé", .invalidCharacter("é", offset: 1)), ("my\r\n", .invalidCharacter("\r\n", offset: 2)),
        ] as [(String, Base32.DecodeError)]
    )
    func rejects(text: String, error: Base32.DecodeError) {
        #expect(throws: error) { try Base32.decode(text) }
    }

    @Test("hex round-trips and refuses odd or non-hex input")
    func hex() {
        #expect(Hex.encode([0x00, 0xAB, 0xFF]) == "00abff")
        #expect(Hex.decode("00ABff") == [0x00, 0xAB, 0xFF])
        #expect(Hex.decode("") == [])
        #expect(Hex.decode("abc") == nil)
        #expect(Hex.decode("zz") == nil)
        #expect(Hex.decode("é1") == nil)
    }
}

/// A fixed public key: bytes 0, 1, ..., 31.
let sampleKey = try! PublicKey(bytes: (0..<32).map { UInt8($0) })

@Suite("NodeAddress")
struct NodeAddressTests {
    @Test("a public key must be exactly 32 bytes", arguments: [0, 31, 33, 64])
    func publicKeyLength(count: Int) {
        #expect(throws: PublicKey.LengthError.wrongLength(count)) {
            try PublicKey(bytes: [UInt8](repeating: 1, count: count))
        }
    }

    @Test("the text form is umbra1 plus 52 lowercase base32 characters, and round-trips")
    func roundTrip() throws {
        let address = NodeAddress(publicKey: sampleKey)
        let text = address.description
        #expect(text == "umbra1" + Base32.encode(sampleKey.bytes))
        #expect(text.count == 58)
        #expect(text == "umbra1aaaqeayeaudaocajbifqydiob4ibceqtcqkrmfyydenbwha5dypq")
        #expect(try NodeAddress(parsing: text) == address)
        #expect(try NodeAddress(parsing: text.uppercased()) == address)
        #expect(sampleKey.description == text)
    }

    @Test("random keys round-trip through text", arguments: [UInt64(1), 2, 3, 4, 5, 6, 7, 8])
    func randomRoundTrip(seed: UInt64) throws {
        var rng = SeededRandom(seed: seed)
        let key = try PublicKey(bytes: rng.bytes(32))
        let address = NodeAddress(publicKey: key)
        #expect(try NodeAddress(parsing: address.description).publicKey == key)
    }

    static let valid = NodeAddress(publicKey: sampleKey).description

    @Test(
        "bad addresses say what is wrong",
        arguments: [
            ("", AddressParseError.missingPrefix, "must start with umbra1"),
            ("umbra", .missingPrefix, "must start with umbra1"),
            ("umbra2" + valid.dropFirst(6), .missingPrefix, "must start with umbra1"),
            ("bc1" + valid.dropFirst(3), .missingPrefix, "must start with umbra1"),
            (String(valid.dropLast()), .wrongLength(51), "has 51 characters after umbra1, expected 52"),
            (valid + "a", .wrongLength(53), "has 53 characters after umbra1, expected 52"),
            ("umbra1", .wrongLength(0), "has 0 characters after umbra1"),
            ("umbra1aa1", .invalidCharacter("1", position: 9), "character '1' at position 9 is not base32"),
            ("umbra1" + valid.dropFirst(6).dropLast() + "8", .invalidCharacter("8", position: 58), "at position 58"),
            ("umbra1 " + valid.dropFirst(6), .invalidCharacter(" ", position: 7), "character ' ' at position 7"),
            ("umbra1\u{301}" + valid.dropFirst(6), .invalidCharacter("\u{301}", position: 7), "at position 7"),
            (String(valid.dropLast()) + "b", .nonZeroPadding, "non-zero padding bits"),
            (String(valid.dropLast()) + "7", .nonZeroPadding, "non-zero padding bits"),
        ] as [(String, AddressParseError, String)]
    )
    func parseErrors(text: String, error: AddressParseError, message: String) {
        #expect(throws: error) { try NodeAddress(parsing: text) }
        #expect(error.description.contains(message), "\(error.description)")
    }

    @Test("node ids are BLAKE2b-256 of the public key")
    func nodeID() {
        let id = NodeAddress(publicKey: sampleKey).nodeID
        #expect(id.bytes.count == 32)
        #expect(id == NodeID(publicKey: sampleKey))
        #expect(id.description.count == 64)
        var other = sampleKey.bytes
        other[0] ^= 1
        #expect(id != NodeID(publicKey: try! PublicKey(bytes: other)))
        // Pinned: BLAKE2b-256 of bytes 0...31, computed independently (Python hashlib.blake2b).
        #expect(id.description == "cb2f5160fc1f7e05a55ef49d340b48da2e5a78099d53393351cd579dd42503d6")
    }

    @Test("keys and public keys round-trip through the binary codec")
    func binaryCodec() throws {
        var writer = ByteWriter()
        writer.write(sampleKey)
        writer.write(sampleKey.nodeID)
        #expect(writer.count == 64)
        var reader = ByteReader(writer.bytes)
        #expect(try reader.readPublicKey() == sampleKey)
        #expect(try reader.readKey256() == sampleKey.nodeID)
        #expect(throws: DecodeError.truncated(offset: 64, needed: 32)) { try reader.readKey256() }
    }
}

@Suite("Key256 XOR metric")
struct Key256Tests {
    static func randomKeys(seed: UInt64, count: Int) -> [Key256] {
        var rng = SeededRandom(seed: seed)
        return (0..<count).map { _ in Key256.random(using: &rng) }
    }

    @Test("distance is zero exactly for equal keys, and symmetric", arguments: [UInt64(1), 2, 3])
    func identityAndSymmetry(seed: UInt64) {
        let keys = Self.randomKeys(seed: seed, count: 30)
        for a in keys {
            #expect(a.xorDistance(to: a).value == .zero)
            #expect(a.commonPrefixLength(with: a) == 256)
            for b in keys where a != b {
                #expect(a.xorDistance(to: b) == b.xorDistance(to: a))
                #expect(a.xorDistance(to: b).value != .zero)
            }
        }
    }

    @Test("distances compose by XOR, and each distance from a key belongs to one key", arguments: [UInt64(10), 11])
    func metric(seed: UInt64) {
        let keys = Self.randomKeys(seed: seed, count: 12)
        for a in keys {
            var distances: Set<Key256.Distance> = []
            for b in keys {
                distances.insert(a.xorDistance(to: b))
                for c in keys {
                    // d(a,c) = d(a,b) XOR d(b,c), which is what makes the metric consistent for lookups.
                    let ab = a.xorDistance(to: b).value
                    let bc = b.xorDistance(to: c).value
                    let ac = a.xorDistance(to: c).value
                    #expect(ac == ab.xorDistance(to: bc).value)
                }
            }
            #expect(distances.count == keys.count, "for a fixed key, each distance belongs to one key")
        }
    }

    @Test("common prefix length counts leading equal bits", arguments: [0, 1, 7, 63, 64, 65, 128, 200, 255])
    func prefix(bit: Int) {
        for key in Self.randomKeys(seed: UInt64(bit), count: 5) {
            let other = key.flippingBit(bit)
            #expect(key.commonPrefixLength(with: other) == bit)
            #expect(key.xorDistance(to: other).leadingZeroBitCount == bit)
            // Flipping a later bit keeps the prefix no shorter.
            if bit < 255 {
                #expect(key.commonPrefixLength(with: key.flippingBit(bit + 1)) == bit + 1)
                // Later differences do not matter: only the first differing bit counts.
                #expect(key.commonPrefixLength(with: other.flippingBit(255)) == bit)
                #expect(key.commonPrefixLength(with: other.flippingBit(bit + 1)) == bit)
            }
        }
    }

    @Test("distances order numerically: a higher differing bit is farther")
    func ordering() {
        let key = Self.randomKeys(seed: 77, count: 1)[0]
        let near = key.xorDistance(to: key.flippingBit(255))
        let mid = key.xorDistance(to: key.flippingBit(100))
        let far = key.xorDistance(to: key.flippingBit(0))
        #expect(near < mid && mid < far)
        #expect([far, near, mid].sorted() == [near, mid, far])
        #expect(Key256(words: (0, 0, 0, 1)) < Key256(words: (0, 0, 1, 0)))
        #expect(Key256(words: (1, 0, 0, 0)) > Key256(words: (0, .max, .max, .max)))
    }

    @Test("bytes, hex and words agree")
    func representations() throws {
        let bytes = (0..<32).map { UInt8($0 * 7 & 0xFF) }
        let key = try #require(Key256(bytes: bytes))
        #expect(key.bytes == bytes)
        #expect(key.words.0 == 0x0007_0E15_1C23_2A31)
        #expect(Key256(hex: key.description) == key)
        #expect(Key256(hex: key.description.uppercased()) == key)
        #expect(Key256(hex: "00") == nil)
        #expect(Key256(bytes: bytes.dropLast()) == nil)
    }

    @Test("Key256 hashing agrees with equality")
    func hashing() {
        let keys = Self.randomKeys(seed: 3, count: 50)
        #expect(Set(keys + keys).count == 50)
    }
}
