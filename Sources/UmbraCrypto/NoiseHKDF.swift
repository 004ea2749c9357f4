import CSodium

/// Noise's HMAC and HKDF over BLAKE2b (HASHLEN 64, BLOCKLEN 128), exactly as in the Noise spec §4.3.
public enum NoiseHKDF {
    public static let hashLength = 64
    public static let blockLength = 128

    /// HMAC-BLAKE2b-512 (RFC 2104 construction with unkeyed BLAKE2b as the hash).
    public static func hmac(key: [UInt8], data: [UInt8]) -> [UInt8] {
        var pad = [UInt8](repeating: 0, count: blockLength)
        defer { SecureMemory.zero(&pad) }
        if key.count > blockLength {
            var hashedKey = BLAKE2b.hash(key)
            pad.replaceSubrange(0..<hashLength, with: hashedKey)
            SecureMemory.zero(&hashedKey)
        } else {
            pad.replaceSubrange(0..<key.count, with: key)
        }
        for i in 0..<blockLength { pad[i] ^= 0x36 }
        var inner = BLAKE2b.Hasher()
        inner.update(pad)
        inner.update(data)
        var innerHash = inner.finalize()
        defer { SecureMemory.zero(&innerHash) }
        for i in 0..<blockLength { pad[i] ^= 0x36 ^ 0x5c }
        var outer = BLAKE2b.Hasher()
        outer.update(pad)
        outer.update(innerHash)
        return outer.finalize()
    }

    /// HKDF(chaining_key, input_key_material, num_outputs): 2 or 3 outputs of 64 bytes each. Any other
    /// `outputs` is a programming error and traps.
    public static func hkdf(chainingKey: [UInt8], inputKeyMaterial: [UInt8], outputs: Int) -> [[UInt8]] {
        precondition(outputs == 2 || outputs == 3, "Noise HKDF produces 2 or 3 outputs, not \(outputs)")
        var tempKey = hmac(key: chainingKey, data: inputKeyMaterial)
        defer { SecureMemory.zero(&tempKey) }
        var result: [[UInt8]] = []
        result.reserveCapacity(outputs)
        var previous: [UInt8] = []
        for index in 1...outputs {
            previous = hmac(key: tempKey, data: previous + [UInt8(index)])
            result.append(previous)
        }
        return result
    }
}
