// The fixtures every test target shares (docs/architecture.md, "Shared pieces"): a start instant,
// the test network's ID, keys and identities from fixed bytes or a seed, and endpoints in the
// address ranges the tests use. Plain values only: no I/O, no clock, no unseeded randomness, and no
// test framework (each test target imports Testing itself).

import UmbraCore

// MARK: - Time

/// The instant the tests start at (2023-11-14 22:13:20 UTC), so timestamps look real.
public let t0 = Instant(nanoseconds: 1_700_000_000_000_000_000)

extension Instant {
    /// `instant + 5` is five seconds later.
    public static func + (lhs: Instant, rhs: Int) -> Instant { lhs + .seconds(rhs) }
}

// MARK: - Network

/// The network ID the tests sign records and proposals under.
public let network = "umbra-test"

// MARK: - Keys and identities

/// A public key whose 32 bytes are all `byte` (not a point anyone holds the secret of).
public func key(_ byte: UInt8) -> PublicKey {
    guard let key = try? PublicKey(bytes: [UInt8](repeating: byte, count: PublicKey.byteCount)) else {
        preconditionFailure("32 bytes")
    }
    return key
}

/// A public key of 32 bytes drawn from `rng`.
public func randomKey(_ rng: inout SeededRandom) -> PublicKey {
    guard let key = try? PublicKey(bytes: rng.bytes(PublicKey.byteCount)) else { preconditionFailure("32 bytes") }
    return key
}

/// The identity whose 32-byte seed is all `byte`.
public func identity(_ byte: UInt8) -> Identity {
    do { return try Identity(seed: [UInt8](repeating: byte, count: 32)) } catch { fatalError("\(error)") }
}

/// A distinct identity per index (for large sets): the seed is 0xA5 bytes with `index` written
/// little-endian over the first eight.
public func identity(index: Int) -> Identity {
    var seed = [UInt8](repeating: 0xA5, count: 32)
    withUnsafeBytes(of: UInt64(index).littleEndian) { for (offset, byte) in $0.enumerated() { seed[offset] = byte } }
    do { return try Identity(seed: seed) } catch { fatalError("\(error)") }
}

/// `count` identities generated one after another from `SeededRandom(seed:)`.
public func identities(_ count: Int, seed: UInt64) -> [Identity] {
    var rng = SeededRandom(seed: seed)
    return (0..<count).map { _ in Identity.generate(using: &rng) }
}

// MARK: - Endpoints

/// 10.0.0.0/8 plus `host`, at `port` (private: the diversity caps do not apply).
public func endpoint(_ host: UInt32, port: UInt16 = 4747) -> Endpoint {
    Endpoint(address: .v4(0x0A00_0000 | host), port: port)
}

/// 198.51.100.x:port (documentation range, treated as public).
public func publicEndpoint(_ host: UInt8, port: UInt16 = 4747) -> Endpoint {
    Endpoint(address: .v4(0xC633_6400 | UInt32(host)), port: port)
}

/// 192.168.1.x:port.
public func lanEndpoint(_ host: UInt8, port: UInt16 = 4747) -> Endpoint {
    Endpoint(address: .v4(0xC0A8_0100 | UInt32(host)), port: port)
}

/// [2001:db8:0:1:ffff::42]:65535, the largest port.
public let v6Endpoint = Endpoint(address: .v6(high: 0x2001_0DB8_0000_0001, low: 0xFFFF_0000_0000_0042), port: 65535)

/// [100::low]:port, in IPv6's discard-only 100::/64 (RFC 6666): never a usable endpoint.
public func discardOnly(_ low: UInt64 = 0, port: UInt16 = 0) -> Endpoint {
    Endpoint(address: .v6(high: 0x0100_0000_0000_0000, low: low), port: port)
}
