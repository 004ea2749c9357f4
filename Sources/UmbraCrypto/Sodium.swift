import CSodium

/// libsodium's one-time initialisation. Every API in this module calls `initialize()` itself.
public enum Sodium {
    /// `sodium_init` picks the fastest implementations for this CPU and seeds the RNG. A `static let`
    /// initialiser runs exactly once, thread-safely (swift_once).
    private static let initialized: Bool = sodium_init() >= 0

    /// Initialises libsodium. Idempotent and thread-safe; cheap after the first call.
    @inline(__always)
    public static func initialize() {
        guard initialized else { fatalError("sodium_init failed") }
    }
}

/// Cryptographically secure random bytes (`randombytes_buf`).
public enum SecureRandom {
    /// `count` fresh random bytes.
    public static func bytes(_ count: Int) -> [UInt8] {
        Sodium.initialize()
        guard count > 0 else { return [] }
        return [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
            randombytes_buf(buffer.baseAddress!, count)
            initialized = count
        }
    }

    /// Fills `buffer` with random bytes.
    public static func fill(_ buffer: UnsafeMutableRawBufferPointer) {
        Sodium.initialize()
        guard let base = buffer.baseAddress, buffer.count > 0 else { return }
        randombytes_buf(base, buffer.count)
    }
}

/// A CSPRNG `RandomNumberGenerator` (randombytes_buf) for the real runtime. Protocol cores take a seeded
/// generator instead; this one is for the shell.
public struct SecureRandomGenerator: RandomNumberGenerator, Sendable {
    public init() { Sodium.initialize() }

    public mutating func next() -> UInt64 {
        var value: UInt64 = 0
        withUnsafeMutableBytes(of: &value) { randombytes_buf($0.baseAddress!, 8) }
        return value
    }
}

/// Zeroing and constant-time comparison.
public enum SecureMemory {
    /// Overwrites `bytes` with zeros in a way the compiler cannot elide (`sodium_memzero`). Arrays are
    /// copy-on-write: only this array's storage is zeroed, not copies that share nothing with it anymore.
    public static func zero(_ bytes: inout [UInt8]) {
        bytes.withUnsafeMutableBytes { buffer in
            guard let base = buffer.baseAddress else { return }
            sodium_memzero(base, buffer.count)
        }
    }

    /// Constant-time equality (`sodium_memcmp`); false when the lengths differ (the length is not secret).
    public static func equals(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        Sodium.initialize()
        guard a.count == b.count else { return false }
        guard !a.isEmpty else { return true }
        return a.withUnsafeBytes { pa in
            b.withUnsafeBytes { pb in sodium_memcmp(pa.baseAddress!, pb.baseAddress!, a.count) == 0 }
        }
    }
}

// MARK: - Pointer helpers

/// One byte that empty buffers point at, so libsodium never sees a NULL pointer (always with length 0, so
/// it is never read or written). Allocated once and never freed.
nonisolated(unsafe) private let emptyBytePointer: UnsafeMutablePointer<UInt8> = {
    let pointer = UnsafeMutablePointer<UInt8>.allocate(capacity: 1)
    pointer.initialize(to: 0)
    return pointer
}()

extension UnsafeRawBufferPointer {
    /// The base address as a byte pointer, never nil (an empty buffer points at a dummy byte, length 0).
    @inline(__always)
    var bytePointer: UnsafePointer<UInt8> {
        if let base = baseAddress { return base.assumingMemoryBound(to: UInt8.self) }
        return UnsafePointer(emptyBytePointer)
    }
}

extension UnsafeMutableRawBufferPointer {
    /// The base address as a byte pointer, never nil (an empty buffer points at a dummy byte, length 0).
    @inline(__always)
    var mutableBytePointer: UnsafeMutablePointer<UInt8> {
        if let base = baseAddress { return base.assumingMemoryBound(to: UInt8.self) }
        return emptyBytePointer
    }
}
