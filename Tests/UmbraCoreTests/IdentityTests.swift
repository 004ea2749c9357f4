import Testing
import UmbraCrypto

@testable import UmbraCore

private let seed = (0..<32).map { UInt8(0xA0 &+ $0) }

@Suite("Identity")
struct IdentityTests {
    @Test("an identity is fully determined by its seed")
    func deterministic() throws {
        let a = try Identity(seed: seed)
        let b = try Identity(seed: seed)
        #expect(a.publicKey == b.publicKey)
        #expect(a.x25519SecretKey == b.x25519SecretKey)
        #expect(a.seed == seed)
        #expect(a.nodeID == NodeID(publicKey: a.publicKey))
        #expect(a.address == NodeAddress(publicKey: a.publicKey))
        #expect(a.x25519PublicKey == (try X25519.publicKey(secretKey: a.x25519SecretKey)))
    }

    @Test("the seed must be 32 bytes", arguments: [0, 31, 33, 64])
    func seedLength(count: Int) {
        #expect(throws: IdentityError.wrongSeedLength(count)) {
            try Identity(seed: [UInt8](repeating: 7, count: count))
        }
    }

    @Test("generate draws the seed from the given generator")
    func generate() {
        var rng1 = SeededRandom(seed: 1)
        var rng2 = SeededRandom(seed: 1)
        var rng3 = SeededRandom(seed: 2)
        let a = Identity.generate(using: &rng1)
        #expect(a.publicKey == Identity.generate(using: &rng2).publicKey)
        #expect(a.publicKey != Identity.generate(using: &rng3).publicKey)
        var replay = SeededRandom(seed: 1)
        #expect(a.seed == replay.bytes(32))
    }

    @Test("signatures verify under the public key and not for another message")
    func sign() throws {
        let identity = try Identity(seed: seed)
        let message = Array("umbra/test/v1 hello".utf8)
        let signature = identity.sign(message)
        #expect(signature.count == 64)
        #expect(Ed25519.verify(signature: signature, message: message, publicKey: identity.publicKey.bytes))
        #expect(!Ed25519.verify(signature: signature, message: message + [0], publicKey: identity.publicKey.bytes))
    }

    @Test("description and reflection never show secret bytes")
    func redacted() throws {
        let identity = try Identity(seed: seed)
        let hexSeed = Hex.encode(seed)
        var dumped = ""
        dump(identity, to: &dumped)
        for text in [identity.description, String(describing: identity), String(reflecting: identity), dumped] {
            #expect(!text.contains(hexSeed))
            #expect(!text.contains("\(seed[0]), \(seed[1])"))
            #expect(text.contains(identity.address.description))
        }
    }
}

@Suite("IdentityFile")
struct IdentityFileTests {
    let identity = try! Identity(seed: seed)

    var encoded: String { IdentityFile.encode(identity) }

    @Test("encode writes the documented format")
    func format() {
        #expect(
            encoded
                == "# umbra identity v1 — keep secret\nseed: \(Hex.encode(seed))\naddress: \(identity.address)\n"
        )
    }

    @Test("round trip, including CRLF, extra comments, blank lines and uppercase hex")
    func roundTrip() throws {
        let variants = [
            encoded,
            encoded.replacing("\n", with: "\r\n"),
            "# umbra identity v1\n\n# made by hand\n  address:   \(identity.address)  \nseed:\(Hex.encode(seed).uppercased())",
        ]
        for text in variants {
            let decoded = try IdentityFile.decode(text)
            #expect(decoded.seed == identity.seed)
            #expect(decoded.publicKey == identity.publicKey)
        }
    }

    @Test("random identities round-trip", arguments: [UInt64(1), 2, 3, 4])
    func randomRoundTrip(rngSeed: UInt64) throws {
        var rng = SeededRandom(seed: rngSeed)
        let identity = Identity.generate(using: &rng)
        #expect(try IdentityFile.decode(IdentityFile.encode(identity)).seed == identity.seed)
    }

    @Test("a seed edited by one digit is caught by the address check")
    func tamperedSeed() {
        var hexSeed = Array(Hex.encode(seed))
        hexSeed[10] = hexSeed[10] == "0" ? "1" : "0"
        let text = encoded.replacing(Hex.encode(seed), with: String(hexSeed))
        do {
            _ = try IdentityFile.decode(text)
            Issue.record("a tampered seed was accepted")
        } catch {
            guard case .addressMismatch(let inFile, let fromSeed) = error else {
                Issue.record("unexpected error \(error)")
                return
            }
            #expect(inFile == identity.address)
            #expect(fromSeed != identity.address)
            #expect(error.description.contains("does not match the seed"))
        }
    }

    @Test("an address replaced by another node's is caught")
    func swappedAddress() {
        var rng = SeededRandom(seed: 9)
        let other = Identity.generate(using: &rng)
        let text = encoded.replacing(identity.address.description, with: other.address.description)
        #expect(throws: IdentityFileError.addressMismatch(inFile: other.address, fromSeed: identity.address)) {
            try IdentityFile.decode(text)
        }
    }

    @Test("structural errors say what is wrong")
    func errors() {
        let seedLine = "seed: \(Hex.encode(seed))"
        let addressLine = "address: \(identity.address)"
        let header = IdentityFile.header
        let cases: [(String, IdentityFileError, String)] = [
            ("", .missingHeader, "not an umbra identity file"),
            ("\(seedLine)\n\(addressLine)", .missingHeader, "first line must be"),
            ("# umbra identity v2\n\(seedLine)\n\(addressLine)", .unsupportedVersion("v2"), "'v2' is not supported"),
            ("\(header)\n\(addressLine)", .missingField("seed"), "missing 'seed:' line"),
            ("\(header)\n\(seedLine)", .missingField("address"), "missing 'address:' line"),
            ("\(header)\n\(seedLine)\n\(seedLine)\n\(addressLine)", .duplicateKey(line: 3, key: "seed"), "line 3"),
            ("\(header)\n\(seedLine)\nnonsense\n\(addressLine)", .malformedLine(line: 3), "line 3 is not 'key: value'"),
            ("\(header)\n\(seedLine)\nsecret: x\n\(addressLine)", .unknownKey(line: 3, key: "secret"), "unknown key"),
            (
                "\(header)\nseed: \(Hex.encode(seed).dropLast())\n\(addressLine)",
                .invalidSeed("expected 64 hex digits, found 63 characters"), "found 63"
            ),
            (
                "\(header)\nseed: \(Hex.encode(seed).dropLast())g\n\(addressLine)",
                .invalidSeed("'g' is not a hex digit"),
                "'g' is not a hex digit"
            ),
            ("\(header)\n\(seedLine)\naddress: umbra1xyz", .invalidAddress(.wrongLength(3)), "bad address"),
            (
                "\(header)\n\(seedLine)\naddress: \(identity.address.description.dropLast())1",
                .invalidAddress(.invalidCharacter("1", position: 58)), "position 58"
            ),
            (String(repeating: "#", count: 5000), .tooLarge(5000), "limit is 4096"),
        ]
        for (text, error, message) in cases {
            #expect(throws: error, "\(text.prefix(80))") { try IdentityFile.decode(text) }
            #expect(error.description.contains(message), "\(error.description)")
        }
    }
}
