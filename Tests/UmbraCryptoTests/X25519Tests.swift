import Testing
import UmbraCrypto

@Suite("X25519 (RFC 7748)")
struct X25519Tests {
    // RFC 7748 §6.1.
    let alicePrivate = hex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
    let alicePublic = hex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
    let bobPrivate = hex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb")
    let bobPublic = hex("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
    let shared = hex("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742")

    @Test func rfc7748DiffieHellman() throws {
        #expect(try X25519.publicKey(secretKey: alicePrivate) == alicePublic)
        #expect(try X25519.publicKey(secretKey: bobPrivate) == bobPublic)
        #expect(try X25519.sharedSecret(secretKey: alicePrivate, publicKey: bobPublic) == shared)
        #expect(try X25519.sharedSecret(secretKey: bobPrivate, publicKey: alicePublic) == shared)
    }

    @Test func lowOrderPointGivesWeakSharedSecret() {
        // The all-zero point (and the point of order 1, u = 1) give an all-zero shared secret.
        var one = [UInt8](repeating: 0, count: 32)
        one[0] = 1
        #expect(throws: CryptoError.weakSharedSecret) {
            try X25519.sharedSecret(secretKey: alicePrivate, publicKey: [UInt8](repeating: 0, count: 32))
        }
        #expect(throws: CryptoError.weakSharedSecret) {
            try X25519.sharedSecret(secretKey: alicePrivate, publicKey: one)
        }
    }

    @Test func wrongLengths() {
        #expect(throws: CryptoError.invalidLength(field: "x25519 public key", expected: 32, actual: 31)) {
            try X25519.sharedSecret(secretKey: alicePrivate, publicKey: Array(bobPublic.dropLast()))
        }
        #expect(throws: CryptoError.invalidLength(field: "x25519 secret key", expected: 32, actual: 0)) {
            try X25519.publicKey(secretKey: [])
        }
    }
}
