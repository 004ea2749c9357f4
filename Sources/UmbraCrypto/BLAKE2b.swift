import CSodium

/// BLAKE2b (libsodium `crypto_generichash`). Output 16...64 bytes, key empty or 16...64 bytes; other sizes
/// are programming errors and trap (they are never attacker-controlled).
public enum BLAKE2b {
    public static let maxOutputBytes = 64
    public static let minOutputBytes = 16
    public static let maxKeyBytes = 64
    public static let minKeyBytes = 16

    @inline(__always)
    static func checkParameters(outputLength: Int, keyLength: Int) {
        precondition(
            outputLength >= minOutputBytes && outputLength <= maxOutputBytes,
            "BLAKE2b output length must be 16...64, got \(outputLength)")
        precondition(
            keyLength == 0 || (keyLength >= minKeyBytes && keyLength <= maxKeyBytes),
            "BLAKE2b key length must be 0 or 16...64, got \(keyLength)")
    }

    /// The BLAKE2b digest of `data`, optionally keyed.
    public static func hash(_ data: [UInt8], outputLength: Int = 64, key: [UInt8] = []) -> [UInt8] {
        checkParameters(outputLength: outputLength, keyLength: key.count)
        Sodium.initialize()
        return [UInt8](unsafeUninitializedCapacity: outputLength) { out, initialized in
            data.withUnsafeBytes { d in
                key.withUnsafeBytes { k in
                    _ = crypto_generichash(
                        out.baseAddress!, outputLength, d.bytePointer, UInt64(d.count),
                        k.count == 0 ? nil : k.bytePointer, k.count)
                }
            }
            initialized = outputLength
        }
    }

    /// The BLAKE2b digest of the concatenation of `parts`, without building the concatenation.
    public static func hash(_ parts: [[UInt8]], outputLength: Int = 64, key: [UInt8] = []) -> [UInt8] {
        var hasher = Hasher(outputLength: outputLength, key: key)
        for part in parts { hasher.update(part) }
        return hasher.finalize()
    }

    /// Streaming BLAKE2b. A value type: copying a hasher forks the hash state (copy on write).
    public struct Hasher: Sendable {
        private var state: State
        private let outputLength: Int

        public init(outputLength: Int = 64, key: [UInt8] = []) {
            BLAKE2b.checkParameters(outputLength: outputLength, keyLength: key.count)
            Sodium.initialize()
            self.outputLength = outputLength
            self.state = State()
            key.withUnsafeBytes { k in
                _ = crypto_generichash_init(state.pointer, k.count == 0 ? nil : k.bytePointer, k.count, outputLength)
            }
        }

        public mutating func update(_ data: [UInt8]) {
            data.withUnsafeBytes { update($0) }
        }

        public mutating func update(_ data: UnsafeRawBufferPointer) {
            guard data.count > 0 else { return }
            if !isKnownUniquelyReferenced(&state) { state = state.copy() }
            _ = crypto_generichash_update(state.pointer, data.bytePointer, UInt64(data.count))
        }

        public consuming func finalize() -> [UInt8] {
            if !isKnownUniquelyReferenced(&state) { state = state.copy() }
            let length = outputLength
            let pointer = state.pointer
            return [UInt8](unsafeUninitializedCapacity: length) { out, initialized in
                _ = crypto_generichash_final(pointer, out.baseAddress!, length)
                initialized = length
            }
        }

        /// The libsodium state in its own 64-byte-aligned allocation (the C type is CRYPTO_ALIGN(64)),
        /// zeroed and freed on deinit. Only mutated through a uniquely referenced `Hasher`.
        private final class State: @unchecked Sendable {
            /// Swift cannot import the over-aligned C struct, so libsodium's functions take an OpaquePointer.
            let pointer: OpaquePointer
            private let raw: UnsafeMutableRawPointer
            private static let byteCount = crypto_generichash_statebytes()

            init() {
                raw = UnsafeMutableRawPointer.allocate(byteCount: State.byteCount, alignment: 64)
                raw.initializeMemory(as: UInt8.self, repeating: 0, count: State.byteCount)
                pointer = OpaquePointer(raw)
            }

            func copy() -> State {
                let other = State()
                other.raw.copyMemory(from: raw, byteCount: State.byteCount)
                return other
            }

            deinit {
                sodium_memzero(raw, State.byteCount)
                raw.deallocate()
            }
        }
    }
}
