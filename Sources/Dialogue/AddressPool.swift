// The provider's inner IPv4 address pool (DESIGN §5): one address per session, out of a CIDR block
// that is the provider's TUN network. In 10.182.0.0/16 the network address .0.0 and the broadcast
// address .255.255 are never handed out, .0.1 is the provider's own (the gateway), and consumers get
// .0.2 upwards. Allocation moves round-robin through the block (a released address is the last to
// be reused, so a stale packet for a departed consumer is unlikely to reach a new one), except that
// a consumer reconnecting gets its previous address back while nobody else holds it.
//
// Bounded: the block is never materialised; the tables hold one entry per live allocation plus at
// most `maximumRemembered` previous addresses.

import UmbraCore

/// Why a CIDR block was refused as an address pool.
public enum AddressPoolError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The text is not `a.b.c.d/n`.
    case malformed(String)
    /// The prefix length is outside 8...30 (a /31 or /32 has no room for a gateway and a consumer).
    case prefixLengthOutOfRange(Int)
    /// Bits below the prefix length are set (`10.182.0.5/16`).
    case hostBitsSet(String, suggested: String)

    public var description: String {
        switch self {
        case .malformed(let text): "\"\(text)\" is not an IPv4 CIDR block such as 10.182.0.0/16"
        case .prefixLengthOutOfRange(let length):
            "an address pool's prefix length must be between 8 and 30, not \(length)"
        case .hostBitsSet(let text, let suggested): "\(text) has host bits set; did you mean \(suggested)?"
        }
    }
}

/// An IPv4 CIDR block usable as an address pool: prefix length 8...30, no host bits set.
public struct IPv4Network: Hashable, Sendable, CustomStringConvertible {
    /// The network address, packed big-endian (10.182.0.0 == 0x0AB6_0000).
    public let network: UInt32
    public let prefixLength: UInt8

    public static let minimumPrefixLength = 8
    public static let maximumPrefixLength = 30

    /// The default pool, 10.182.0.0/16.
    public static let defaultPool = IPv4Network(uncheckedNetwork: 0x0AB6_0000, prefixLength: 16)

    public init(network: UInt32, prefixLength: Int) throws(AddressPoolError) {
        guard (Self.minimumPrefixLength...Self.maximumPrefixLength).contains(prefixLength) else {
            throw .prefixLengthOutOfRange(prefixLength)
        }
        let mask = UInt32.max << (32 - prefixLength)
        guard network & ~mask == 0 else {
            throw .hostBitsSet(
                "\(IPAddress.v4(network))/\(prefixLength)", suggested: "\(IPAddress.v4(network & mask))/\(prefixLength)"
            )
        }
        self.init(uncheckedNetwork: network, prefixLength: UInt8(prefixLength))
    }

    /// Parses `a.b.c.d/n`.
    public init(parsing text: String) throws(AddressPoolError) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, case .v4(let network)? = IPAddress(parsingIPv4: parts[0]),
            parts[1].utf8.count <= 2, parts[1].utf8.allSatisfy({ (0x30...0x39).contains($0) }),
            let length = Int(parts[1])
        else { throw .malformed(String(text.prefix(64))) }
        try self.init(network: network, prefixLength: length)
    }

    private init(uncheckedNetwork: UInt32, prefixLength: UInt8) {
        self.network = uncheckedNetwork
        self.prefixLength = prefixLength
    }

    /// Addresses in the block, network and broadcast included.
    public var size: UInt32 { UInt32(1) << (32 - UInt32(prefixLength)) }
    public var broadcast: UInt32 { network + size - 1 }
    /// The provider's own address: the first usable one.
    public var gateway: IPAddress { .v4(network + 1) }
    /// Addresses consumers can get: all but network, gateway and broadcast.
    public var consumerCapacity: Int { Int(size) - 3 }

    public func contains(_ address: IPAddress) -> Bool {
        guard case .v4(let value) = address else { return false }
        return value & (UInt32.max << (32 - UInt32(prefixLength))) == network
    }

    public var description: String { "\(IPAddress.v4(network))/\(prefixLength)" }
}

/// Hands out one inner address per consumer key. A value type; not thread safe.
public struct AddressPool: Sendable {
    public let network: IPv4Network
    /// Most previous assignments remembered for reconnecting consumers (oldest forgotten first).
    public let maximumRemembered: Int

    private var byKey: [PublicKey: UInt32] = [:]
    private var byAddress: [UInt32: PublicKey] = [:]
    private var previous: [PublicKey: UInt32] = [:]
    /// Keys of `previous`, oldest first.
    private var previousOrder: [PublicKey] = []
    /// Where the round-robin search starts next.
    private var cursor: UInt32

    public init(network: IPv4Network = .defaultPool, maximumRemembered: Int = 1024) {
        self.network = network
        self.maximumRemembered = max(0, maximumRemembered)
        self.cursor = network.network + 2
    }

    /// Addresses handed out now.
    public var count: Int { byKey.count }
    /// Addresses consumers can hold at once.
    public var capacity: Int { network.consumerCapacity }
    public var gateway: IPAddress { network.gateway }

    /// The address `key` holds, if any.
    public func address(of key: PublicKey) -> IPAddress? { byKey[key].map { .v4($0) } }

    /// The holder of `address`, if any.
    public func holder(of address: IPAddress) -> PublicKey? {
        guard case .v4(let value) = address else { return nil }
        return byAddress[value]
    }

    /// An address for `key`: the one it already holds; else its previous one while free; else the
    /// next free one round-robin from .2. `nil` when every consumer address is taken.
    public mutating func allocate(for key: PublicKey) -> IPAddress? {
        if let held = byKey[key] { return .v4(held) }
        if let earlier = previous[key], byAddress[earlier] == nil {
            assign(earlier, to: key)
            return .v4(earlier)
        }
        guard byKey.count < capacity else { return nil }
        let first = network.network + 2
        let last = network.broadcast - 1
        // At most `count + 1` probes: every address skipped is held by someone.
        var candidate = cursor
        while byAddress[candidate] != nil {
            candidate = candidate >= last ? first : candidate + 1
        }
        cursor = candidate >= last ? first : candidate + 1
        assign(candidate, to: key)
        return .v4(candidate)
    }

    /// Frees `key`'s address (remembering it for a reconnect). Returns the address it held.
    @discardableResult
    public mutating func release(_ key: PublicKey) -> IPAddress? {
        guard let held = byKey.removeValue(forKey: key) else { return nil }
        byAddress[held] = nil
        remember(held, for: key)
        return .v4(held)
    }

    private mutating func assign(_ address: UInt32, to key: PublicKey) {
        byKey[key] = address
        byAddress[address] = key
        if previous.removeValue(forKey: key) != nil { previousOrder.removeAll { $0 == key } }
    }

    private mutating func remember(_ address: UInt32, for key: PublicKey) {
        guard maximumRemembered > 0 else { return }
        if previous.updateValue(address, forKey: key) != nil {
            previousOrder.removeAll { $0 == key }
        }
        previousOrder.append(key)
        while previousOrder.count > maximumRemembered {
            previous[previousOrder.removeFirst()] = nil
        }
    }
}
