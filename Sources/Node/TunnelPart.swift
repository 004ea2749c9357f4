// The tunnel part of the node: IP packets on frame channel 0x50 inside the consumer↔provider
// session (DESIGN §5, docs/architecture.md §12). The shell owns the TUN device; this part decides,
// for every packet, which session it rides, whether it may pass, and what it costs.
//
// Outbound (a packet read from the TUN device, `tunnelOutbound`):
//   consumer: the packet goes to the provider of the attached tunnel;
//   provider: the packet's destination is a consumer's inner address -> that consumer's session.
//   A packet larger than the path allows (1420 direct over IPv4, 1400 over IPv6, 1332 relayed: a
//   relayed datagram must fit one relay `forward`) is answered with an ICMP "packet too big" written back to the TUN device.
//   On a direct path the frame is sealed straight into the shell's send buffer (no allocation);
//   on a relayed path, or without keys, it takes the ordinary frame path (queue, handshake, relay).
// Inbound (a tunnel frame from a session, `tunnelInbound`):
//   consumer: only from the attached provider, only to our inner address;
//   provider: only from a consumer with an open dialogue, only from its own inner address
//   (anti-spoofing), only to destinations the egress policy allows (no private, loopback,
//   link-local, carrier-grade NAT or metadata addresses, no SMTP).
// Accounting: per tunnel and per served consumer, bytes and packets each way; the provider hands
// its byte counts to the dialogue part once a second (`tunnelUsage`: its server enforces the
// session's byte limit; payments bill from it), the consumer its meters every 10 s
// (`tunnelMeters`: the dialogue sends them to the provider as `status`).
// Who is served: the dialogue part's notices (`serving`, `serviceEnded`) keep this part's table of
// served consumers and their inner addresses; the data plane reads only that table.

import Dialogue
import Relay
import Sessions
import Tunnel
import UmbraCore

public struct TunnelNodeConfig: Sendable {
    /// What consumers' packets may reach through this provider.
    public var egress = EgressPolicy.default
    /// Largest IP packet on a direct path: the TUN MTU (a sealed datagram then fits 1500 bytes).
    public var directMTU = 1420
    /// Accounting is handed to the dialogue server this often.
    public var accountingInterval: Duration = .seconds(1)
    /// A consumer tells its provider what its tunnel carried (a dialogue `status`) this often, so
    /// the provider can compare the consumer's meters with its own (what payments will check).
    public var statusReportInterval: Duration = .seconds(10)
    public init() {}

    /// Largest IP packet on a relayed path: the whole sealed datagram (header, channel byte,
    /// packet, tag) must fit one relay `forward`.
    public static let relayedMTU = RelayMessage.maximumForwardBytes - 1 - WireSize.transportMinimum
}

/// Why the node dropped a tunnel packet (counted in `TunnelCounters.drops`).
public enum TunnelDrop: Hashable, Sendable, CustomStringConvertible {
    /// A consumer read a packet while no tunnel is attached.
    case noTunnel
    /// A provider read a packet for an inner address nobody holds.
    case noRoute
    /// Not a parseable IP packet.
    case malformed
    /// Larger than the path's MTU (an ICMP "packet too big" went back when one was due).
    case tooBig
    /// A tunnel frame from a peer that is neither our provider nor a consumer we serve.
    case notServed
    /// Addressed to someone other than us (consumer side).
    case wrongDestination
    /// Refused by the egress policy (provider side).
    case egress(EgressDropReason)

    public var description: String {
        switch self {
        case .noTunnel: "no_tunnel"
        case .noRoute: "no_route"
        case .malformed: "malformed"
        case .tooBig: "too_big"
        case .notServed: "not_served"
        case .wrongDestination: "wrong_destination"
        case .egress(let reason):
            switch reason {
            case .malformed: "egress_malformed"
            case .spoofedSource: "egress_spoofed_source"
            case .blockedDestination(let category):
                "egress_blocked_destination_" + String(category.description.map { $0 == "-" ? "_" : $0 })
            case .blockedPort(let port): "egress_blocked_port_\(port)"
            case .fragmentedHeader: "egress_fragmented_header"
            case .ipOptions: "egress_ip_options"
            }
        }
    }
}

public struct TunnelCounters: Sendable, Equatable {
    public var packetsOut: UInt64 = 0
    public var bytesOut: UInt64 = 0
    public var packetsIn: UInt64 = 0
    public var bytesIn: UInt64 = 0
    /// Outbound packets that took the frame path (relayed, or waiting for keys).
    public var slowPath: UInt64 = 0
    public var icmpTooBigSent: UInt64 = 0
    public var drops: [TunnelDrop: UInt64] = [:]
    public init() {}
    public var dropped: UInt64 { drops.values.reduce(0, +) }
}

/// The consumer's tunnel: which provider, which inner address, and what it carried.
public struct ConsumerTunnel: Sendable {
    public var provider: PublicKey
    public var sessionID: UInt64
    public var innerAddress: IPAddress
    public var gateway: IPAddress
    public var mtu: Int
    public var attachedAt: Instant
    public var account: TunnelAccount
}

/// One consumer served by this provider, as `umbra status` shows it.
public struct ServedTunnel: Sendable {
    public var consumer: PublicKey
    public var sessionID: UInt64
    public var innerAddress: IPAddress
    public var account: TunnelAccount
    /// What the consumer's own meters said in its last `status` (its sent is our received).
    public var consumerReport: StatusReport?
}

public struct TunnelStatus: Sendable {
    public var consumer: ConsumerTunnel?
    /// What the host holds for the consumer's tunnel.
    public var host: ConsumerHost
    /// The consumer tunnel's current session path (nil: no session).
    public var consumerPath: PeerPath?
    public var served: [ServedTunnel]
    public var counters: TunnelCounters
}

/// What a served consumer's tunnel carried since the last report (to the dialogue part).
public struct TunnelUsage: Sendable, Equatable {
    public var consumer: PublicKey
    public var sessionID: UInt64
    public var bytesIn: UInt64
    public var bytesOut: UInt64
}

public struct TunnelPart: NodePart {
    public static let channels: [FrameChannel] = [.tunnel]

    struct ServedAccount: Sendable {
        var sessionID: UInt64
        var account: TunnelAccount
        var unreportedIn: UInt64 = 0
        var unreportedOut: UInt64 = 0
    }

    /// A served consumer's session (from the dialogue part's `serving` notice).
    struct Route: Sendable {
        var sessionID: UInt64
        var address: IPAddress
    }

    let config: TunnelNodeConfig
    /// With `--provide`: packets from the TUN device go to the consumer holding their destination.
    let isProvider: Bool
    /// The consumer's data plane: packets from the TUN device go to this tunnel's provider.
    var consumer: ConsumerTunnel?
    /// What the host holds for the consumer's tunnel (device, routes), as asked of the shell.
    var host = ConsumerHost.none
    /// Provider side: per served consumer, what its tunnel carried, and what the dialogue part has
    /// not been told yet.
    var served: [PublicKey: ServedAccount] = [:]
    /// Provider side: the consumers the dialogue server admitted, and who holds which inner address.
    var routes: [PublicKey: Route] = [:]
    var consumersByAddress: [IPAddress: PublicKey] = [:]
    var counters = TunnelCounters()
    var nextAccounting: Instant?
    /// When the consumer next reports its meters to the provider.
    var nextStatusReport: Instant?

    init(config: NodeConfig) {
        self.config = config.tunnel
        self.isProvider = config.market.provide != nil
    }

    public var nextDeadline: Instant? {
        switch (nextAccounting, nextStatusReport) {
        case (let a?, let b?): min(a, b)
        case (let a, let b): a ?? b
        }
    }

    public mutating func handle(
        _ event: PartEvent, node: inout NodeKernel, now: Instant, rng: inout some RandomNumberGenerator
    ) {
        switch event {
        case .start, .peerUp, .peerDown, .pathChanged:
            break
        case .tick:
            tick(&node, now: now)
        case .frame(_, let payload, let key):
            // The slow path (relayed, or in the simulator): the packet becomes a `.tunnelPacket`.
            let length = payload.withUnsafeBytes { inbound($0, from: key, now: now) }
            guard let length else { return }
            node.effects.append(.tunnelPacket(length == payload.count ? payload : Array(payload.prefix(length))))
        case .notice(.serving(let session)):
            if let previous = routes[session.consumer] { consumersByAddress[previous.address] = nil }
            routes[session.consumer] = Route(sessionID: session.sessionID, address: session.address)
            consumersByAddress[session.address] = session.consumer
        case .notice(.serviceEnded(let session)):
            guard let route = routes[session.consumer], route.sessionID == session.sessionID else { return }
            routes.removeValue(forKey: session.consumer)
            if consumersByAddress[route.address] == session.consumer { consumersByAddress[route.address] = nil }
        case .notice(.dialogueEnded(let provider)):
            // A dialogue ended: its tunnel carries nothing more (the host's routes stay until a
            // disconnect, so with the kill switch nothing leaves outside the tunnel).
            if consumer?.provider == provider { detach() }
        case .notice(.hostCompleted(let request, let outcome)):
            hostCompleted(request, outcome, now: now)
        case .notice:
            break
        }
    }

    // MARK: - Commands

    mutating func attach(_ session: ClientSession, now: Instant) {
        consumer = ConsumerTunnel(
            provider: session.provider, sessionID: session.sessionID, innerAddress: session.grant.innerIPv4.address,
            gateway: session.grant.gateway, mtu: Int(session.grant.mtu), attachedAt: now,
            account: TunnelAccount(openedAt: now))
        nextStatusReport = now + config.statusReportInterval
    }

    mutating func detach() {
        consumer = nil
        nextStatusReport = nil
    }

    /// Asks the shell to set the host up for `plan` (the host holds nothing: a previous tunnel
    /// was torn down first). Packets flow once the shell says it is done.
    mutating func setUpHost(_ plan: ConsumerTunnelPlan, _ node: inout NodeKernel) {
        host = .settingUp(node.requestHost(.setUpConsumerTunnel(plan)), plan)
    }

    /// Stops the data plane and asks the shell to undo the host's changes. Returns the provider
    /// the tunnel went to (nil: the host held nothing, or is being torn down already).
    mutating func tearDownHost(_ node: inout NodeKernel) -> PublicKey? {
        detach()
        guard let plan = host.plan else { return nil }
        host = .tearingDown(node.requestHost(.tearDownConsumerTunnel), provider: plan.provider)
        return plan.provider
    }

    private mutating func hostCompleted(_ request: HostRequest, _ outcome: HostOutcome, now: Instant) {
        switch (host, outcome) {
        case (.settingUp(let token, let plan), .done) where token == request.token:
            host = .up(plan)
            attach(plan.session, now: now)
        case (.settingUp(let token, _), .failed) where token == request.token:
            host = .none
        case (.tearingDown(let token, _), _) where token == request.token:
            // A failed tear-down is journalled by the shell and retried at its next start.
            host = .none
        default:
            break  // an answer to a request overtaken by a later one
        }
    }

    // MARK: - Data plane

    /// A packet read from the TUN device (see `NodeInstance.tunnelOutbound`).
    mutating func outbound(
        frame: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer, _ node: inout NodeKernel,
        now: Instant, rng: inout some RandomNumberGenerator
    ) -> (length: Int, path: PeerPath)? {
        guard frame.count > 1 else { return nil }
        let packet = UnsafeRawBufferPointer(rebasing: frame[1...])
        let peer: PublicKey
        var innerMTU = config.directMTU
        if let consumer {
            peer = consumer.provider
            innerMTU = consumer.mtu
        } else if isProvider {
            guard let destination = Self.destination(of: packet) else {
                drop(.malformed)
                return nil
            }
            guard let holder = consumersByAddress[destination], let route = routes[holder] else {
                drop(.noRoute)
                return nil
            }
            peer = holder
            if served[peer]?.sessionID != route.sessionID {
                served[peer] = ServedAccount(sessionID: route.sessionID, account: TunnelAccount(openedAt: now))
            }
        } else {
            drop(.noTunnel)
            return nil
        }
        let path = node.sessions.path(of: peer)
        let relayed = path?.isRelayed ?? false
        var mtu = relayed ? min(innerMTU, TunnelNodeConfig.relayedMTU) : innerMTU
        // An IPv6 underlay header is 20 bytes longer than IPv4's: 1400 keeps the datagram in 1500.
        if case .v6? = path?.directEndpoint?.address { mtu = min(mtu, innerMTU - 20) }
        guard packet.count <= mtu else {
            tooBig(packet, mtu: mtu, &node)
            return nil
        }
        if !relayed, let sealed = node.sessions.seal(frame, to: peer, into: output, now: now) {
            accountOut(peer, bytes: packet.count, now: now)
            return sealed
        }
        counters.slowPath += 1
        accountOut(peer, bytes: packet.count, now: now)
        node.sendFrame(.tunnel, Array(packet), to: peer, now: now, rng: &rng)
        return nil
    }

    /// A tunnel frame's payload (an IP packet) from `key`: the number of leading bytes to write to
    /// the TUN device (the IP total length), or nil when the packet must not pass.
    mutating func inbound(_ packet: UnsafeRawBufferPointer, from key: PublicKey, now: Instant) -> Int? {
        if let consumer, consumer.provider == key {
            guard let info = try? IPPacketInfo(parsing: packet) else {
                drop(.malformed)
                return nil
            }
            guard info.destination == consumer.innerAddress else {
                drop(.wrongDestination)
                return nil
            }
            self.consumer!.account.recordReceived(bytes: info.totalLength, now: now)
            counters.packetsIn += 1
            counters.bytesIn += UInt64(info.totalLength)
            return info.totalLength
        }
        guard let route = routes[key] else {
            drop(.notServed)
            return nil
        }
        switch config.egress.verdict(packet, sessionAddress: route.address) {
        case .drop(let reason):
            drop(.egress(reason))
            return nil
        case .forward(let length):
            if served[key]?.sessionID != route.sessionID {
                served[key] = ServedAccount(sessionID: route.sessionID, account: TunnelAccount(openedAt: now))
            }
            served[key]!.account.recordReceived(bytes: length, now: now)
            served[key]!.unreportedIn += UInt64(length)
            counters.packetsIn += 1
            counters.bytesIn += UInt64(length)
            if nextAccounting == nil { nextAccounting = now + config.accountingInterval }
            return length
        }
    }

    // MARK: - Timers

    private mutating func tick(_ node: inout NodeKernel, now: Instant) {
        if let due = nextStatusReport, due <= now {
            nextStatusReport = now + config.statusReportInterval
            if let consumer {
                let account = consumer.account
                let report = StatusReport(
                    bytesSent: account.sentBytes, bytesReceived: account.receivedBytes,
                    packetsSent: account.sentPackets, packetsReceived: account.receivedPackets)
                node.notify(.tunnelMeters(provider: consumer.provider, report))
            }
        }
        guard let due = nextAccounting, due <= now else { return }
        nextAccounting = nil
        var usage: [TunnelUsage] = []
        for key in served.keys.sorted(by: NodeKernel.keyOrder) {
            guard var entry = served[key] else { continue }
            // A consumer whose dialogue ended is forgotten (a new dialogue starts a new account).
            guard routes[key]?.sessionID == entry.sessionID else {
                served.removeValue(forKey: key)
                continue
            }
            guard entry.unreportedIn > 0 || entry.unreportedOut > 0 else { continue }
            usage.append(
                TunnelUsage(
                    consumer: key, sessionID: entry.sessionID, bytesIn: entry.unreportedIn,
                    bytesOut: entry.unreportedOut))
            entry.unreportedIn = 0
            entry.unreportedOut = 0
            served[key] = entry
        }
        if !usage.isEmpty { node.notify(.tunnelUsage(usage)) }
    }

    // MARK: - Helpers

    private mutating func accountOut(_ peer: PublicKey, bytes: Int, now: Instant) {
        counters.packetsOut += 1
        counters.bytesOut += UInt64(bytes)
        if consumer?.provider == peer {
            consumer!.account.recordSent(bytes: bytes, now: now)
        } else if served[peer] != nil {
            served[peer]!.account.recordSent(bytes: bytes, now: now)
            served[peer]!.unreportedOut += UInt64(bytes)
            if nextAccounting == nil { nextAccounting = now + config.accountingInterval }
        }
    }

    private mutating func tooBig(_ packet: UnsafeRawBufferPointer, mtu: Int, _ node: inout NodeKernel) {
        drop(.tooBig)
        // The reply's source: on the consumer, the tunnel's far end (the provider's gateway
        // address); on the provider, the consumer's inner address the packet was for — not the
        // gateway, which is local there and which the kernel would drop as a martian source when
        // it comes out of the TUN device. Conntrack relates the error to the flow and its
        // masquerade rewrites it on the way out.
        guard let source = consumer?.gateway ?? Self.destination(of: packet) else { return }
        var reply = [UInt8](repeating: 0, count: 1280)
        let length = reply.withUnsafeMutableBytes {
            ICMPTooBig.write(for: packet, mtu: mtu, from: source, into: $0)
        }
        guard let length else { return }
        counters.icmpTooBigSent += 1
        node.effects.append(.tunnelPacket(Array(reply.prefix(length))))
    }

    /// The destination address of an IP packet (nil: too short or not IP), without a full parse.
    static func destination(of packet: UnsafeRawBufferPointer) -> IPAddress? {
        guard let first = packet.first else { return nil }
        switch first >> 4 {
        case 4 where packet.count >= 20:
            return .v4(packet.loadUnaligned(fromByteOffset: 16, as: UInt32.self).bigEndian)
        case 6 where packet.count >= 40:
            return .v6(
                high: packet.loadUnaligned(fromByteOffset: 24, as: UInt64.self).bigEndian,
                low: packet.loadUnaligned(fromByteOffset: 32, as: UInt64.self).bigEndian)
        default: return nil
        }
    }

    private mutating func drop(_ reason: TunnelDrop) {
        counters.drops[reason, default: 0] += 1
    }
}
