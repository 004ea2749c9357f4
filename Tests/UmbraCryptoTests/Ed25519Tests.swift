import Testing
import UmbraCrypto

struct Ed25519Vector: Sendable, CustomTestStringConvertible {
    let name: String
    let seed: String
    let publicKey: String
    let message: String
    let signature: String
    var testDescription: String { name }
}

/// RFC 8032 §7.1.
let rfc8032Vectors: [Ed25519Vector] = [
    Ed25519Vector(
        name: "TEST 1",
        seed: "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        publicKey: "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        message: "",
        signature: """
            e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46b\
            d25bf5f0595bbe24655141438e7a100b
            """),
    Ed25519Vector(
        name: "TEST 2",
        seed: "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        publicKey: "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        message: "72",
        signature: """
            92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c\
            387b2eaeb4302aeeb00d291612bb0c00
            """),
    Ed25519Vector(
        name: "TEST 3",
        seed: "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
        publicKey: "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
        message: "af82",
        signature: """
            6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc659\
            4a7c15e9716ed28dc027beceea1ec40a
            """),
    Ed25519Vector(
        name: "TEST SHA(abc)",
        seed: "833fe62409237b9d62ec77587520911e9a759cec1d19755b7da901b96dca3d42",
        publicKey: "ec172b93ad5e563bf4932c70e1245034c35467ef2efd4d64ebf819683467e2bf",
        message: """
            ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd\
            454d4423643ce80e2a9ac94fa54ca49f
            """,
        signature: """
            dc2a4459e7369633a52b1bf277839a00201009a3efbf3ecb69bea2186c26b58909351fc9ac90b3ecfdfbc7c66431e030\
            3dca179c138ac17ad9bef1177331a704
            """),
]

@Suite("Ed25519 (RFC 8032)")
struct Ed25519Tests {
    @Test("RFC 8032 §7.1 vectors", arguments: rfc8032Vectors)
    func rfcVector(_ vector: Ed25519Vector) throws {
        let pair = try Ed25519.KeyPair(seed: hex(vector.seed))
        #expect(pair.publicKey == hex(vector.publicKey))
        #expect(pair.seed == hex(vector.seed))
        #expect(pair.secretKey == hex(vector.seed) + hex(vector.publicKey))

        let message = hex(vector.message)
        let signature = pair.sign(message)
        #expect(signature == hex(vector.signature))
        #expect(Ed25519.verify(signature: signature, message: message, publicKey: pair.publicKey))

        // Any flipped bit in the signature, the message or the key must fail.
        #expect(!Ed25519.verify(signature: signature.flippingBit(at: 0), message: message, publicKey: pair.publicKey))
        #expect(
            !Ed25519.verify(
                signature: signature.flippingBit(at: 63, bit: 3), message: message, publicKey: pair.publicKey))
        #expect(!Ed25519.verify(signature: signature, message: message + [0], publicKey: pair.publicKey))
        if !message.isEmpty {
            #expect(
                !Ed25519.verify(signature: signature, message: message.flippingBit(at: 0), publicKey: pair.publicKey))
        }
        #expect(!Ed25519.verify(signature: signature, message: message, publicKey: pair.publicKey.flippingBit(at: 5)))
    }

    @Test func wrongLengthsAreRejectedNotTrapped() throws {
        let pair = Ed25519.KeyPair.generate()
        let signature = pair.sign([1, 2, 3])
        #expect(Ed25519.verify(signature: signature, message: [1, 2, 3], publicKey: pair.publicKey))
        #expect(!Ed25519.verify(signature: Array(signature.dropLast()), message: [1, 2, 3], publicKey: pair.publicKey))
        #expect(!Ed25519.verify(signature: [], message: [1, 2, 3], publicKey: pair.publicKey))
        #expect(!Ed25519.verify(signature: signature, message: [1, 2, 3], publicKey: Array(pair.publicKey.prefix(31))))
        #expect(throws: CryptoError.invalidLength(field: "seed", expected: 32, actual: 31)) {
            try Ed25519.KeyPair(seed: [UInt8](repeating: 7, count: 31))
        }
    }

    @Test func generatedKeysDiffer() {
        let a = Ed25519.KeyPair.generate()
        let b = Ed25519.KeyPair.generate()
        #expect(a.publicKey != b.publicKey)
        #expect(a.secretKey.count == Ed25519.secretKeyBytes)
        #expect(Array(a.secretKey.suffix(32)) == a.publicKey)
    }

    @Test func conversionToX25519AgreesOnBothSides() throws {
        let alice = try Ed25519.KeyPair(seed: hex(rfc8032Vectors[0].seed))
        let bob = try Ed25519.KeyPair(seed: hex(rfc8032Vectors[1].seed))
        let aliceSecret = try Ed25519.x25519SecretKey(fromEd25519: alice.secretKey)
        let alicePublic = try Ed25519.x25519PublicKey(fromEd25519: alice.publicKey)
        let bobSecret = try Ed25519.x25519SecretKey(fromEd25519: bob.secretKey)
        let bobPublic = try Ed25519.x25519PublicKey(fromEd25519: bob.publicKey)
        // The converted public key is the X25519 public key of the converted secret.
        #expect(try X25519.publicKey(secretKey: aliceSecret) == alicePublic)
        #expect(try X25519.publicKey(secretKey: bobSecret) == bobPublic)
        let ab = try X25519.sharedSecret(secretKey: aliceSecret, publicKey: bobPublic)
        let ba = try X25519.sharedSecret(secretKey: bobSecret, publicKey: alicePublic)
        #expect(ab == ba)
        #expect(ab != [UInt8](repeating: 0, count: 32))
    }

    @Test func conversionRejectsInvalidPoint() {
        // y = 2 is not on the Ed25519 curve.
        var notOnCurve = [UInt8](repeating: 0, count: 32)
        notOnCurve[0] = 2
        #expect(throws: CryptoError.self) { try Ed25519.x25519PublicKey(fromEd25519: notOnCurve) }
        #expect(throws: CryptoError.invalidLength(field: "ed25519 public key", expected: 32, actual: 3)) {
            try Ed25519.x25519PublicKey(fromEd25519: [1, 2, 3])
        }
        #expect(throws: CryptoError.invalidLength(field: "ed25519 secret key", expected: 64, actual: 32)) {
            try Ed25519.x25519SecretKey(fromEd25519: [UInt8](repeating: 1, count: 32))
        }
    }
}
