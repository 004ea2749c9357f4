// What a consumer's packet may reach through a provider (DESIGN §5), and what a consumer accepts
// back. The provider runs `EgressPolicy.verdict` on every packet that comes out of a session before
// writing it to its TUN device; the consumer runs `InboundFilter.verdict` on every packet before
// writing it to its own.
//
// Provider, in this order (the first failing check decides the reason that is counted):
//   1. the packet parses (`IPPacketInfo`), else `.malformed`;
//   2. anti-spoofing: the source is exactly the session's inner address, else `.spoofedSource`
//      (a session assigned only an IPv4 address cannot send IPv6 at all);
//   2b. IPv4 with header options (IHL > 5) is `.ipOptions`: loose and strict source routes (LSRR,
//      SSRR) would let a consumer steer the provider's packet past its policy, record-route and
//      timestamp leak the path, and no ordinary traffic carries options (RFC 7126 §4);
//   3. fragments that hide the transport header (RFC 1858: a first TCP/UDP fragment too short to hold
//      the ports, a TCP fragment at offset 8 bytes) are `.fragmentedHeader`;
//   4. the destination: operator `allowed` prefixes win; otherwise the first `blocked` prefix that
//      contains it gives `.blockedDestination(category)` (so order matters: 169.254.169.254/32 is
//      listed before 169.254.0.0/16 to report "cloud metadata", not "link-local");
//   5. TCP to a port in `blockedTCPPorts` (25 by default: no spam from a provider's address) is
//      `.blockedPort` even for an allowed destination.
// Non-first fragments carry no ports; they pass on their addresses alone. They are harmless without
// their first fragment, which was checked, and the provider's kernel reassembles before it NATs.
//
// Cost: one parse plus one mask-and-compare per prefix; no allocation (the lists are only read).

import UmbraCore

/// Why a destination is blocked by default, for counters and logs.
public enum EgressBlockCategory: UInt8, CaseIterable, Hashable, Sendable, CustomStringConvertible {
    /// 0.0.0.0/8 ("this network", RFC 791) and ::/128 (unspecified).
    case thisNetwork
    /// RFC 1918: 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16.
    case privateNetwork
    /// RFC 6598 shared address space: 100.64.0.0/10.
    case carrierGradeNAT
    /// 127.0.0.0/8 and ::1/128.
    case loopback
    /// Cloud instance metadata services: 169.254.169.254, fd00:ec2::254 (AWS's IPv6 endpoint) and
    /// 168.63.129.16 (Azure's wireserver).
    case cloudMetadata
    /// 169.254.0.0/16 and fe80::/10.
    case linkLocal
    /// RFC 6890 IETF protocol assignments: 192.0.0.0/24.
    case protocolAssignments
    /// 224.0.0.0/4 and ff00::/8.
    case multicast
    /// 240.0.0.0/4 (reserved, including the limited broadcast 255.255.255.255).
    case reserved
    /// ::ffff:0:0/96, IPv4-mapped IPv6, which would reach IPv4 destinations past the IPv4 list.
    case ipv4Mapped
    /// RFC 4193 unique local IPv6: fc00::/7.
    case uniqueLocal
    /// A prefix an operator added to the block list.
    case operatorPolicy

    public var description: String {
        switch self {
        case .thisNetwork: "this-network"
        case .privateNetwork: "private"
        case .carrierGradeNAT: "carrier-grade-nat"
        case .loopback: "loopback"
        case .cloudMetadata: "cloud-metadata"
        case .linkLocal: "link-local"
        case .protocolAssignments: "ietf-protocol-assignments"
        case .multicast: "multicast"
        case .reserved: "reserved"
        case .ipv4Mapped: "ipv4-mapped"
        case .uniqueLocal: "unique-local"
        case .operatorPolicy: "operator-policy"
        }
    }
}

/// Why a consumer's packet was not forwarded.
public enum EgressDropReason: Hashable, Sendable, CustomStringConvertible {
    /// Not a well-formed IPv4 or IPv6 packet (see `IPPacketInfo(parsing:)`).
    case malformed
    /// The source is not the session's inner address.
    case spoofedSource
    /// The destination is in a blocked prefix of this category.
    case blockedDestination(EgressBlockCategory)
    /// TCP to a blocked destination port.
    case blockedPort(UInt16)
    /// A fragment that hides or overwrites the transport header (RFC 1858).
    case fragmentedHeader
    /// IPv4 with header options (source routes, record route, …).
    case ipOptions

    public var description: String {
        switch self {
        case .malformed: "malformed"
        case .spoofedSource: "spoofed-source"
        case .blockedDestination(let category): "blocked-destination(\(category))"
        case .blockedPort(let port): "blocked-port(\(port))"
        case .fragmentedHeader: "fragmented-header"
        case .ipOptions: "ip-options"
        }
    }
}

/// The provider's decision about one packet from a consumer.
public enum EgressVerdict: Hashable, Sendable {
    /// Forward the first `length` bytes (the IP total length; the buffer may be longer).
    case forward(length: Int)
    /// Do not forward; count the reason.
    case drop(EgressDropReason)
}

/// What a provider lets a consumer's packets reach. A value; `verdict` only reads it.
public struct EgressPolicy: Sendable {
    /// Destination prefixes refused, each with the category counted; the first match decides the
    /// category, so list more specific prefixes first.
    public var blocked: [(prefix: IPPrefix, category: EgressBlockCategory)]
    /// Operator overrides: a destination in one of these is never refused by `blocked`.
    public var allowed: [IPPrefix]
    /// TCP destination ports refused (to any destination).
    public var blockedTCPPorts: Set<UInt16>

    /// A policy from its three lists.
    public init(
        blocked: [(prefix: IPPrefix, category: EgressBlockCategory)] = EgressPolicy.defaultBlocked,
        allowed: [IPPrefix] = [], blockedTCPPorts: Set<UInt16> = [25]
    ) {
        self.blocked = blocked
        self.allowed = allowed
        self.blockedTCPPorts = blockedTCPPorts
    }

    /// The default: `defaultBlocked`, nothing allowed, TCP port 25 (SMTP) blocked.
    public static let `default` = EgressPolicy()

    /// Destinations a consumer must not reach through a provider by default: the provider's own
    /// networks and host, its cloud's metadata service, and addresses that are not unicast on the
    /// internet. 198.18.0.0/15 (benchmarking) is deliberately absent: test networks use it as public.
    public static let defaultBlocked: [(prefix: IPPrefix, category: EgressBlockCategory)] = [
        // IPv4
        (v4(0x0000_0000, 8), .thisNetwork),  // 0.0.0.0/8
        (v4(0x0A00_0000, 8), .privateNetwork),  // 10.0.0.0/8
        (v4(0xAC10_0000, 12), .privateNetwork),  // 172.16.0.0/12
        (v4(0xC0A8_0000, 16), .privateNetwork),  // 192.168.0.0/16
        (v4(0x6440_0000, 10), .carrierGradeNAT),  // 100.64.0.0/10
        (v4(0x7F00_0000, 8), .loopback),  // 127.0.0.0/8
        (v4(0xA9FE_A9FE, 32), .cloudMetadata),  // 169.254.169.254/32, before link-local
        (v4(0xA83F_8110, 32), .cloudMetadata),  // 168.63.129.16/32, Azure's wireserver (DHCP, DNS, agent)
        (v4(0xA9FE_0000, 16), .linkLocal),  // 169.254.0.0/16
        (v4(0xC000_0000, 24), .protocolAssignments),  // 192.0.0.0/24
        (v4(0xE000_0000, 4), .multicast),  // 224.0.0.0/4
        (v4(0xF000_0000, 4), .reserved),  // 240.0.0.0/4, 255.255.255.255 included
        // IPv6
        (v6(0, 0, 128), .thisNetwork),  // ::/128
        (v6(0, 1, 128), .loopback),  // ::1/128
        (v6(0, 0x0000_FFFF_0000_0000, 96), .ipv4Mapped),  // ::ffff:0:0/96
        (v6(0xFD00_0EC2_0000_0000, 0x254, 128), .cloudMetadata),  // fd00:ec2::254/128, before fc00::/7
        (v6(0xFC00_0000_0000_0000, 0, 7), .uniqueLocal),  // fc00::/7
        (v6(0xFE80_0000_0000_0000, 0, 10), .linkLocal),  // fe80::/10
        (v6(0xFF00_0000_0000_0000, 0, 8), .multicast),  // ff00::/8
    ]

    private static func v4(_ network: UInt32, _ length: UInt8) -> IPPrefix {
        IPPrefix(uncheckedAddress: .v4(network), length: length)
    }

    private static func v6(_ high: UInt64, _ low: UInt64, _ length: UInt8) -> IPPrefix {
        IPPrefix(uncheckedAddress: .v6(high: high, low: low), length: length)
    }

    // MARK: - Verdict

    /// Whether a packet from a consumer whose session holds `sessionAddress` may be forwarded.
    /// See the file header for the order of the checks. Allocation-free.
    public func verdict(_ packet: UnsafeRawBufferPointer, sessionAddress: IPAddress) -> EgressVerdict {
        let info: IPPacketInfo
        do throws(DecodeError) {
            info = try IPPacketInfo(parsing: packet)
        } catch {
            return .drop(.malformed)
        }
        guard info.source == sessionAddress else { return .drop(.spoofedSource) }
        if info.hasIPv4Options { return .drop(.ipOptions) }

        let isTCP = info.protocol == IPProtocolNumber.tcp
        if info.isFragment, isTCP || info.protocol == IPProtocolNumber.udp {
            if info.isFirstFragment, info.destinationPort == nil { return .drop(.fragmentedHeader) }
            if isTCP, info.fragmentOffset == 1 { return .drop(.fragmentedHeader) }
        } else if info.isFirstFragment, isTCP || info.protocol == IPProtocolNumber.udp,
            info.destinationPort == nil
        {
            return .drop(.malformed)  // unfragmented TCP/UDP shorter than its ports
        }

        if let category = blockedCategory(of: info.destination) { return .drop(.blockedDestination(category)) }
        if isTCP, let port = info.destinationPort, blockedTCPPorts.contains(port) {
            return .drop(.blockedPort(port))
        }
        return .forward(length: info.totalLength)
    }

    /// The category `destination` is blocked under, or nil when it may be reached (not in
    /// `blocked`, or in `allowed`).
    public func blockedCategory(of destination: IPAddress) -> EgressBlockCategory? {
        // Indexing buffer pointers rather than iterating the arrays: in unoptimised builds the
        // generic iterator over tuples allocates a coroutine frame per element.
        guard let category = Self.firstMatch(blocked, destination) else { return nil }
        let isAllowed = allowed.withUnsafeBufferPointer { prefixes in
            var index = 0
            while index < prefixes.count {
                if prefixes[index].contains(destination) { return true }
                index += 1
            }
            return false
        }
        return isAllowed ? nil : category
    }

    private static func firstMatch(
        _ entries: [(prefix: IPPrefix, category: EgressBlockCategory)], _ destination: IPAddress
    ) -> EgressBlockCategory? {
        entries.withUnsafeBufferPointer { entries in
            var index = 0
            while index < entries.count {
                if entries[index].prefix.contains(destination) { return entries[index].category }
                index += 1
            }
            return nil
        }
    }
}

// MARK: - Consumer side

/// Why a consumer refused a packet that arrived from its provider.
public enum InboundDropReason: Hashable, Sendable, CustomStringConvertible {
    /// Not a well-formed IPv4 or IPv6 packet.
    case malformed
    /// Addressed to someone other than this consumer's inner address.
    case misaddressed

    public var description: String {
        switch self {
        case .malformed: "malformed"
        case .misaddressed: "misaddressed"
        }
    }
}

/// The consumer's decision about one packet from its provider.
public enum InboundVerdict: Hashable, Sendable {
    /// Write the first `length` bytes (the IP total length) to the TUN device.
    case deliver(length: Int)
    /// Do not deliver; count the reason.
    case drop(InboundDropReason)
}

/// The consumer's check on packets arriving through the tunnel: a provider may only send what is
/// addressed to the inner address it assigned, so a misbehaving provider cannot inject packets for
/// other local addresses (the consumer's LAN, loopback services) via the TUN device.
public enum InboundFilter {
    /// Deliver a well-formed packet addressed exactly to `innerAddress`; drop anything else.
    /// Allocation-free.
    public static func verdict(_ packet: UnsafeRawBufferPointer, innerAddress: IPAddress) -> InboundVerdict {
        let info: IPPacketInfo
        do throws(DecodeError) {
            info = try IPPacketInfo(parsing: packet)
        } catch {
            return .drop(.malformed)
        }
        guard info.destination == innerAddress else { return .drop(.misaddressed) }
        return .deliver(length: info.totalLength)
    }
}
