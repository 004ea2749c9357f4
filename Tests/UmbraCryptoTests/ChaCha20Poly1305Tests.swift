import Testing
import UmbraCrypto

@Suite("ChaCha20-Poly1305 (RFC 8439)")
struct ChaCha20Poly1305Tests {
    // RFC 8439 §2.8.2.
    let key = (0x80...0x9f).map { UInt8($0) }
    let nonce = hex("07000000 4041424344454647")
    let aad = hex("50515253c0c1c2c3c4c5c6c7")
    let plaintext = Array(
        "Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it."
            .utf8)
    let expected = hex(
        """
        d31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d6\
        3dbea45e8ca9671282fafb69da92728b1a71de0a9e060b2905d6a5b67ecd3b36\
        92ddbd7f2d778b8c9803aee328091b58fab324e4fad675945585808b4831d7bc\
        3ff4def08e4b7a9de576d26586cec64b6116\
        1ae10b594f09e26a7e902ecbd0600691
        """)

    @Test func rfc8439Section2_8_2() throws {
        #expect(plaintext.count == 114)
        let sealed = try ChaCha20Poly1305.seal(key: key, nonce: nonce, plaintext: plaintext, associatedData: aad)
        #expect(sealed == expected)
        #expect(try ChaCha20Poly1305.open(key: key, nonce: nonce, ciphertext: sealed, associatedData: aad) == plaintext)
    }

    @Test func rfc8439AppendixA5Decryption() throws {
        let key = hex("1c9240a5eb55d38af333888604f6b5f0473917c1402b80099dca5cbc207075c0")
        let nonce = hex("000000000102030405060708")
        let aad = hex("f33388860000000000004e91")
        let ciphertext = hex(
            """
            64a0861575861af460f062c79be643bd5e805cfd345cf389f108670ac76c8cb2\
            4c6cfc18755d43eea09ee94e382d26b0bdb7b73c321b0100d4f03b7f355894cf\
            332f830e710b97ce98c8a84abd0b948114ad176e008d33bd60f982b1ff37c855\
            9797a06ef4f0ef61c186324e2b3506383606907b6a7c02b0f9f6157b53c867e4\
            b9166c767b804d46a59b5216cde7a4e99040c5a40433225ee282a1b0a06c523e\
            af4534d7f83fa1155b0047718cbc546a0d072b04b3564eea1b422273f548271a\
            0bb2316053fa76991955ebd63159434ecebb4e466dae5a1073a6727627097a10\
            49e617d91d361094fa68f0ff77987130305beaba2eda04df997b714d6c6f2c29\
            a6ad5cb4022b02709b
            """)
        let tag = hex("eead9d67890cbb22392336fea1851f38")
        let expectedPlaintext = Array(
            ("Internet-Drafts are draft documents valid for a maximum of six months and may be updated, replaced, "
                + "or obsoleted by other documents at any time. It is inappropriate to use Internet-Drafts as "
                + "reference material or to cite them other than as /\u{201C}work in progress./\u{201D}").utf8)
        let opened = try ChaCha20Poly1305.open(
            key: key, nonce: nonce, ciphertext: ciphertext + tag, associatedData: aad)
        #expect(opened == expectedPlaintext)
        #expect(
            try ChaCha20Poly1305.seal(key: key, nonce: nonce, plaintext: opened, associatedData: aad)
                == ciphertext + tag)
    }

    @Test func tamperingFailsAuthentication() throws {
        let sealed = try ChaCha20Poly1305.seal(key: key, nonce: nonce, plaintext: plaintext, associatedData: aad)
        for index in [0, 57, sealed.count - 16, sealed.count - 1] {
            #expect(throws: CryptoError.authenticationFailed) {
                try ChaCha20Poly1305.open(
                    key: key, nonce: nonce, ciphertext: sealed.flippingBit(at: index), associatedData: aad)
            }
        }
        #expect(throws: CryptoError.authenticationFailed) {
            try ChaCha20Poly1305.open(
                key: key, nonce: nonce, ciphertext: sealed, associatedData: aad.flippingBit(at: 0))
        }
        #expect(throws: CryptoError.authenticationFailed) {
            try ChaCha20Poly1305.open(
                key: key, nonce: nonce.flippingBit(at: 11), ciphertext: sealed, associatedData: aad)
        }
        #expect(throws: CryptoError.authenticationFailed) {
            try ChaCha20Poly1305.open(
                key: key.flippingBit(at: 31), nonce: nonce, ciphertext: sealed, associatedData: aad)
        }
        #expect(throws: CryptoError.authenticationFailed) {
            try ChaCha20Poly1305.open(key: key, nonce: nonce, ciphertext: Array(sealed.prefix(15)))
        }
        #expect(throws: CryptoError.invalidLength(field: "nonce", expected: 12, actual: 8)) {
            try ChaCha20Poly1305.seal(key: key, nonce: Array(nonce.prefix(8)), plaintext: plaintext)
        }
    }

    @Test func emptyPlaintextAndAAD() throws {
        let sealed = try ChaCha20Poly1305.seal(key: key, nonce: nonce, plaintext: [])
        #expect(sealed.count == 16)
        #expect(try ChaCha20Poly1305.open(key: key, nonce: nonce, ciphertext: sealed) == [])
        #expect(throws: CryptoError.authenticationFailed) {
            try ChaCha20Poly1305.open(key: key, nonce: nonce, ciphertext: sealed.flippingBit(at: 3))
        }
    }

    @Test func noiseNonceLayout() {
        #expect(ChaCha20Poly1305.nonce(counter: 0) == [UInt8](repeating: 0, count: 12))
        #expect(ChaCha20Poly1305.nonce(counter: 0x0102_0304_0506_0708) == hex("00000000 0807060504030201"))
        #expect(ChaCha20Poly1305.nonce(counter: .max) == hex("00000000 ffffffffffffffff"))
    }

    @Test("SymmetricKey agrees with the array API, in place and out of place", arguments: [0, 1, 63, 64, 1400])
    func symmetricKeyAgrees(length: Int) throws {
        let symmetric = try SymmetricKey(bytes: key)
        let counter: UInt64 = 0x1122_3344_5566_7788
        let message = (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 3) }
        let reference = try ChaCha20Poly1305.seal(
            key: key, nonce: ChaCha20Poly1305.nonce(counter: counter), plaintext: message, associatedData: aad)

        // Out of place.
        var sealed = [UInt8](repeating: 0, count: length + 16)
        let written = message.withUnsafeBytes { m in
            aad.withUnsafeBytes { ad in
                sealed.withUnsafeMutableBytes { out in
                    symmetric.seal(counter: counter, plaintext: m, associatedData: ad, into: out)
                }
            }
        }
        #expect(written == length + 16)
        #expect(sealed == reference)

        var opened = [UInt8](repeating: 0, count: length)
        let openedLength = try sealed.withUnsafeBytes { c in
            try aad.withUnsafeBytes { ad in
                try opened.withUnsafeMutableBytes { out in
                    try symmetric.open(counter: counter, ciphertext: c, associatedData: ad, into: out)
                }
            }
        }
        #expect(openedLength == length)
        #expect(opened == message)

        // In place: one buffer holds the plaintext, then the ciphertext, then the plaintext again.
        var buffer = message + [UInt8](repeating: 0, count: 16)
        buffer.withUnsafeMutableBytes { raw in
            aad.withUnsafeBytes { ad in
                _ = symmetric.seal(
                    counter: counter, plaintext: UnsafeRawBufferPointer(rebasing: raw[0..<length]), associatedData: ad,
                    into: raw)
            }
        }
        #expect(buffer == reference)
        let inPlaceLength = try buffer.withUnsafeMutableBytes { raw in
            try aad.withUnsafeBytes { ad in
                try symmetric.open(
                    counter: counter, ciphertext: UnsafeRawBufferPointer(raw), associatedData: ad, into: raw)
            }
        }
        #expect(inPlaceLength == length)
        #expect(Array(buffer.prefix(length)) == message)

        // Wrong counter, tampering, short input and a small output buffer all throw, never trap.
        var scratch = [UInt8](repeating: 0, count: length + 16)
        for (ciphertext, openCounter) in [(reference, counter + 1), (reference.flippingBit(at: length), counter)] {
            #expect(throws: CryptoError.authenticationFailed) {
                try ciphertext.withUnsafeBytes { c in
                    try scratch.withUnsafeMutableBytes { out in
                        try symmetric.open(
                            counter: openCounter, ciphertext: c,
                            associatedData: UnsafeRawBufferPointer(start: nil, count: 0),
                            into: out)
                    }
                }
            }
        }
        #expect(throws: CryptoError.authenticationFailed) {
            try reference.prefix(15).withUnsafeBytes { c in
                try scratch.withUnsafeMutableBytes { out in
                    try symmetric.open(counter: counter, ciphertext: c, associatedData: c, into: out)
                }
            }
        }
        if length > 0 {
            #expect(throws: CryptoError.invalidLength(field: "output", expected: length, actual: length - 1)) {
                try reference.withUnsafeBytes { c in
                    try scratch.withUnsafeMutableBytes { out in
                        try symmetric.open(
                            counter: counter, ciphertext: c, associatedData: c,
                            into: UnsafeMutableRawBufferPointer(rebasing: out[0..<(length - 1)]))
                    }
                }
            }
        }
        #expect(symmetric.withUnsafeBytes { Array($0) } == key)
    }

    @Test func symmetricKeyLength() {
        #expect(throws: CryptoError.invalidLength(field: "symmetric key", expected: 32, actual: 16)) {
            try SymmetricKey(bytes: [UInt8](repeating: 0, count: 16))
        }
    }
}

@Suite("XChaCha20-Poly1305")
struct XChaCha20Poly1305Tests {
    // draft-irtf-cfrg-xchacha-03 §A.3.1 (AEAD_XChaCha20_Poly1305), the sunscreen plaintext.
    @Test func draftXChaChaVector() throws {
        let key = (0x80...0x9f).map { UInt8($0) }
        let nonce = (0x40...0x57).map { UInt8($0) }
        let aad = hex("50515253c0c1c2c3c4c5c6c7")
        let plaintext = Array(
            "Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it."
                .utf8)
        let expected = hex(
            """
            bd6d179d3e83d43b9576579493c0e939572a1700252bfaccbed2902c21396cbb\
            731c7f1b0b4aa6440bf3a82f4eda7e39ae64c6708c54c216cb96b72e1213b452\
            2f8c9ba40db5d945b11b69b982c1bb9e3f3fac2bc369488f76b2383565d3fff9\
            21f9664c97637da9768812f615c68b13b52e\
            c0875924c1c7987947deafd8780acf49
            """)
        let sealed = try XChaCha20Poly1305.seal(key: key, nonce: nonce, plaintext: plaintext, associatedData: aad)
        #expect(sealed == expected)
        #expect(
            try XChaCha20Poly1305.open(key: key, nonce: nonce, ciphertext: sealed, associatedData: aad) == plaintext)
        #expect(throws: CryptoError.authenticationFailed) {
            try XChaCha20Poly1305.open(
                key: key, nonce: nonce, ciphertext: sealed.flippingBit(at: 9), associatedData: aad)
        }
        #expect(throws: CryptoError.invalidLength(field: "nonce", expected: 24, actual: 12)) {
            try XChaCha20Poly1305.open(key: key, nonce: Array(nonce.prefix(12)), ciphertext: sealed)
        }
    }
}
