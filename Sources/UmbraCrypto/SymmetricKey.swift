import CSodium

/// A 32-byte ChaCha20-Poly1305 key in its own allocation, zeroed on deinit, for the data-plane hot path.
///
/// Immutable after init, so it is safe to share between threads (the transport encrypts in parallel).
/// `seal` and `open` do not allocate: the key lives in a buffer allocated once, and the 12-byte Noise nonce
/// is built in a stack tuple.
public final class SymmetricKey: @unchecked Sendable {
    public static let byteCount = 32

    private let storage: UnsafeMutableRawPointer

    /// Copies `bytes` (exactly 32) into the key's own allocation.
    public init(bytes: [UInt8]) throws {
        try requireLength(bytes, SymmetricKey.byteCount, "symmetric key")
        Sodium.initialize()
        storage = UnsafeMutableRawPointer.allocate(byteCount: SymmetricKey.byteCount, alignment: 16)
        bytes.withUnsafeBytes { storage.copyMemory(from: $0.baseAddress!, byteCount: SymmetricKey.byteCount) }
    }

    deinit {
        sodium_memzero(storage, SymmetricKey.byteCount)
        storage.deallocate()
    }

    /// Gives `body` read access to the 32 key bytes. Do not let the pointer escape.
    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try body(UnsafeRawBufferPointer(start: storage, count: SymmetricKey.byteCount))
    }

    @inline(__always)
    private var keyPointer: UnsafePointer<UInt8> {
        UnsafePointer(storage.assumingMemoryBound(to: UInt8.self))
    }

    /// Seals `plaintext` into `output` with the Noise nonce for `counter` and returns the bytes written
    /// (plaintext.count + 16). `output` must have room for that (a programming error otherwise: traps).
    /// `output` may start at `plaintext`'s first byte (in-place). No heap allocation.
    public func seal(
        counter: UInt64,
        plaintext: UnsafeRawBufferPointer,
        associatedData: UnsafeRawBufferPointer,
        into output: UnsafeMutableRawBufferPointer
    ) -> Int {
        let total = plaintext.count + ChaCha20Poly1305.tagBytes
        precondition(output.count >= total, "SymmetricKey.seal: output has \(output.count) bytes, needs \(total)")
        var nonce = SymmetricKey.nonceTuple(counter)
        var written: UInt64 = 0
        Swift.withUnsafeBytes(of: &nonce) { n in
            _ = crypto_aead_chacha20poly1305_ietf_encrypt(
                output.mutableBytePointer, &written, plaintext.bytePointer, UInt64(plaintext.count),
                associatedData.bytePointer, UInt64(associatedData.count), nil,
                n.baseAddress!.assumingMemoryBound(to: UInt8.self), keyPointer)
        }
        return total
    }

    /// Opens `ciphertext` (ciphertext || tag) into `output` and returns the plaintext length
    /// (ciphertext.count - 16). Throws `authenticationFailed` for a bad tag or input shorter than a tag,
    /// and `invalidLength` when `output` is too small. In-place (output starting at the ciphertext) works.
    /// No heap allocation.
    public func open(
        counter: UInt64,
        ciphertext: UnsafeRawBufferPointer,
        associatedData: UnsafeRawBufferPointer,
        into output: UnsafeMutableRawBufferPointer
    ) throws(CryptoError) -> Int {
        guard ciphertext.count >= ChaCha20Poly1305.tagBytes else { throw .authenticationFailed }
        let plaintextLength = ciphertext.count - ChaCha20Poly1305.tagBytes
        guard output.count >= plaintextLength else {
            throw .invalidLength(field: "output", expected: plaintextLength, actual: output.count)
        }
        var nonce = SymmetricKey.nonceTuple(counter)
        var written: UInt64 = 0
        let rc = Swift.withUnsafeBytes(of: &nonce) { n in
            crypto_aead_chacha20poly1305_ietf_decrypt(
                output.mutableBytePointer, &written, nil, ciphertext.bytePointer, UInt64(ciphertext.count),
                associatedData.bytePointer, UInt64(associatedData.count),
                n.baseAddress!.assumingMemoryBound(to: UInt8.self), keyPointer)
        }
        guard rc == 0 else { throw .authenticationFailed }
        return plaintextLength
    }

    typealias NonceTuple = (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8)

    /// The Noise nonce (4 zero bytes, then the counter little-endian) as 12 contiguous bytes on the stack.
    @inline(__always)
    static func nonceTuple(_ counter: UInt64) -> NonceTuple {
        (
            0, 0, 0, 0,
            UInt8(truncatingIfNeeded: counter), UInt8(truncatingIfNeeded: counter >> 8),
            UInt8(truncatingIfNeeded: counter >> 16), UInt8(truncatingIfNeeded: counter >> 24),
            UInt8(truncatingIfNeeded: counter >> 32), UInt8(truncatingIfNeeded: counter >> 40),
            UInt8(truncatingIfNeeded: counter >> 48), UInt8(truncatingIfNeeded: counter >> 56)
        )
    }
}
