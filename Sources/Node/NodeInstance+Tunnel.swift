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
// its byte counts to the dialogue server once a second (it enforces the session's byte limit;
// the payments issue bills from it).

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
    /// The consumer tunnel's current path (nil: no session endpoint).
    public var consumerPath: Endpoint?
    public var served: [ServedTunnel]
    public var counters: TunnelCounters
}

struct TunnelState: Sendable {
    var consumer: ConsumerTunnel?
    /// Provider side: per served consumer, what its tunnel carried, and what the dialogue server
    /// has not been told yet.
    var served: [PublicKey: ServedAccount] = [:]
    var counters = TunnelCounters()
    var nextAccounting: Instant?
    /// When the consumer next reports its meters to the provider.
    var nextStatusReport: Instant?

    struct ServedAccount: Sendable {
        var sessionID: UInt64
        var account: TunnelAccount
        var unreportedIn: UInt64 = 0
        var unreportedOut: UInt64 = 0
    }
}

extension NodeInstance {
    // MARK: - Commands

    /// Consumer: routes packets read from the TUN device to the provider of `session` (an open
    /// dialogue). Replaces any previous tunnel.
    public mutating func attachTunnel(_ session: ClientSession, now: Instant) {
        tunnel.consumer = ConsumerTunnel(
            provider: session.provider, sessionID: session.sessionID, innerAddress: session.grant.innerIPv4.address,
            gateway: session.grant.gateway, mtu: Int(session.grant.mtu), attachedAt: now,
            account: TunnelAccount(openedAt: now))
        tunnel.nextStatusReport = now + config.tunnel.statusReportInterval
    }

    /// Consumer: stops routing packets (the shell has torn the TUN device down).
    public mutating func detachTunnel() {
        tunnel.consumer = nil
        tunnel.nextStatusReport = nil
    }

    public var tunnelStatus: TunnelStatus {
        let served = tunnel.served.keys.sorted(by: Self.keyOrder).compactMap { key -> ServedTunnel? in
            guard let entry = tunnel.served[key], let session = dialogue.server?.session(of: key) else { return nil }
            return ServedTunnel(
                consumer: key, sessionID: entry.sessionID, innerAddress: session.address, account: entry.account,
                consumerReport: session.lastReport)
        }
        return TunnelStatus(
            consumer: tunnel.consumer, consumerPath: tunnel.consumer.flatMap { sessions.endpoint(of: $0.provider) },
            served: served, counters: tunnel.counters)
    }

    // MARK: - Data plane

    /// A packet read from the TUN device. `frame` is the tunnel frame: the channel byte 0x50, then
    /// the IP packet. On a direct path with keys the frame is sealed into `output` and the datagram
    /// (length, destination) returned for the shell to send; otherwise the outcome (a frame-path
    /// send, an ICMP reply for the TUN device, a drop) is in `effects` and the result is nil.
    /// `output` needs `frame.count + WireSize.transportMinimum` bytes.
    public mutating func tunnelOutbound(
        frame: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer, now: Instant,
        rng: inout some RandomNumberGenerator, effects: inout [NodeEffect]
    ) -> (length: Int, endpoint: Endpoint)? {
        guard frame.count > 1 else { return nil }
        let packet = UnsafeRawBufferPointer(rebasing: frame[1...])
        let peer: PublicKey
        var innerMTU = config.tunnel.directMTU
        if let consumer = tunnel.consumer {
            peer = consumer.provider
            innerMTU = consumer.mtu
        } else if let server = dialogue.server {
            guard let destination = Self.destination(of: packet) else {
                tunnelDrop(.malformed)
                return nil
            }
            guard let session = server.session(at: destination) else {
                tunnelDrop(.noRoute)
                return nil
            }
            peer = session.consumer
            if tunnel.served[peer]?.sessionID != session.sessionID {
                tunnel.served[peer] = TunnelState.ServedAccount(
                    sessionID: session.sessionID, account: TunnelAccount(openedAt: now))
            }
        } else {
            tunnelDrop(.noTunnel)
            return nil
        }
        let endpoint = sessions.endpoint(of: peer)
        let relayed = endpoint?.isRelayPath ?? false
        var mtu = relayed ? min(innerMTU, TunnelNodeConfig.relayedMTU) : innerMTU
        // An IPv6 underlay header is 20 bytes longer than IPv4's: 1400 keeps the datagram in 1500.
        if case .v6? = endpoint?.address, !relayed { mtu = min(mtu, innerMTU - 20) }
        guard packet.count <= mtu else {
            tunnelTooBig(packet, mtu: mtu, into: &effects)
            return nil
        }
        if !relayed, let sealed = sessions.seal(frame, to: peer, into: output, now: now) {
            tunnelAccountOut(peer, bytes: packet.count, now: now)
            return sealed
        }
        tunnel.counters.slowPath += 1
        tunnelAccountOut(peer, bytes: packet.count, now: now)
        sendFrame(.tunnel, Array(packet), to: peer, now: now, rng: &rng, into: &effects)
        return nil
    }

    /// A tunnel frame's payload (an IP packet) from `key`: the number of leading bytes to write to
    /// the TUN device (the IP total length), or nil when the packet must not pass.
    public mutating func tunnelInbound(_ packet: UnsafeRawBufferPointer, from key: PublicKey, now: Instant) -> Int? {
        if let consumer = tunnel.consumer, consumer.provider == key {
            guard let info = try? IPPacketInfo(parsing: packet) else {
                tunnelDrop(.malformed)
                return nil
            }
            guard info.destination == consumer.innerAddress else {
                tunnelDrop(.wrongDestination)
                return nil
            }
            tunnel.consumer!.account.recordReceived(bytes: info.totalLength, now: now)
            tunnel.counters.packetsIn += 1
            tunnel.counters.bytesIn += UInt64(info.totalLength)
            return info.totalLength
        }
        guard let server = dialogue.server, let session = server.session(of: key) else {
            tunnelDrop(.notServed)
            return nil
        }
        switch config.tunnel.egress.verdict(packet, sessionAddress: session.address) {
        case .drop(let reason):
            tunnelDrop(.egress(reason))
            return nil
        case .forward(let length):
            if tunnel.served[key]?.sessionID != session.sessionID {
                tunnel.served[key] = TunnelState.ServedAccount(
                    sessionID: session.sessionID, account: TunnelAccount(openedAt: now))
            }
            tunnel.served[key]!.account.recordReceived(bytes: length, now: now)
            tunnel.served[key]!.unreportedIn += UInt64(length)
            tunnel.counters.packetsIn += 1
            tunnel.counters.bytesIn += UInt64(length)
            if tunnel.nextAccounting == nil { tunnel.nextAccounting = now + config.tunnel.accountingInterval }
            return length
        }
    }

    /// The slow path of `tunnelInbound`: a tunnel frame that came through `handleFrame` (relayed,
    /// or in the simulator) becomes a `.tunnelPacket` effect.
    mutating func tunnelFrame(
        _ payload: [UInt8], from key: PublicKey, now: Instant, into effects: inout [NodeEffect]
    ) {
        let length = payload.withUnsafeBytes { tunnelInbound($0, from: key, now: now) }
        guard let length else { return }
        effects.append(.tunnelPacket(length == payload.count ? payload : Array(payload.prefix(length))))
    }

    /// Handles one datagram from the network in place. Transport data is opened where it lies; a
    /// tunnel packet that may pass is handed to `tunnel` (the shell writes it to the TUN device)
    /// without a copy. Everything else takes the ordinary path.
    public mutating func receive(
        datagram: UnsafeMutableRawBufferPointer, from source: Endpoint, now: Instant,
        rng: inout some RandomNumberGenerator, tunnel deliver: (UnsafeRawBufferPointer) -> Void
    ) -> [NodeEffect] {
        guard datagram.count >= WireSize.transportMinimum, datagram[0] == MessageType.transportData.rawValue else {
            return receive(Array(datagram), from: source, now: now, rng: &rng)
        }
        var sessionEffects: [SessionEffect] = []
        let result = sessions.receiveTransport(datagram, from: source, now: now, effects: &sessionEffects)
        var effects: [NodeEffect] = []
        if case .frame(let key, let range) = result, !range.isEmpty {
            if datagram[range.lowerBound] == FrameChannel.tunnel.rawValue {
                counters.framesReceived += 1
                let packet = UnsafeRawBufferPointer(rebasing: datagram[(range.lowerBound + 1)..<range.upperBound])
                if let length = tunnelInbound(packet, from: key, now: now) {
                    deliver(UnsafeRawBufferPointer(rebasing: packet[..<length]))
                }
            } else {
                sessionEffects.append(.deliver(peer: key, frame: Array(datagram[range])))
            }
        }
        if !sessionEffects.isEmpty { absorb(sessionEffects, now: now, rng: &rng, into: &effects) }
        return effects
    }

    // MARK: - Hooks

    mutating func tunnelTick(now: Instant, rng: inout some RandomNumberGenerator, into effects: inout [NodeEffect]) {
        if let due = tunnel.nextStatusReport, due <= now {
            tunnel.nextStatusReport = now + config.tunnel.statusReportInterval
            if let consumer = tunnel.consumer, var client = dialogue.clients[consumer.provider] {
                let account = consumer.account
                let report = StatusReport(
                    bytesSent: account.sentBytes, bytesReceived: account.receivedBytes,
                    packetsSent: account.sentPackets, packetsReceived: account.receivedPackets)
                let clientEffects = client.reportStatus(report, now: now)
                dialogue.clients[consumer.provider] = client
                absorbDialogue(clientEffects, provider: consumer.provider, now: now, rng: &rng, into: &effects)
            }
        }
        guard let due = tunnel.nextAccounting, due <= now else { return }
        tunnel.nextAccounting = nil
        guard var server = dialogue.server else {
            tunnel.served.removeAll()
            return
        }
        var serverEffects: [DialogueServerEffect] = []
        for key in tunnel.served.keys.sorted(by: Self.keyOrder) {
            guard var entry = tunnel.served[key] else { continue }
            // A consumer whose dialogue ended is forgotten (a new dialogue starts a new account).
            guard server.session(of: key)?.sessionID == entry.sessionID else {
                tunnel.served.removeValue(forKey: key)
                continue
            }
            guard entry.unreportedIn > 0 || entry.unreportedOut > 0 else { continue }
            serverEffects += server.account(
                entry.sessionID, bytesIn: entry.unreportedIn, bytesOut: entry.unreportedOut, now: now)
            entry.unreportedIn = 0
            entry.unreportedOut = 0
            tunnel.served[key] = entry
        }
        dialogue.server = server
        absorbServer(serverEffects, now: now, rng: &rng, into: &effects)
    }

    var tunnelDeadline: Instant? { [tunnel.nextAccounting, tunnel.nextStatusReport].compactMap { $0 }.min() }

    /// A dialogue ended: its tunnel carries nothing more.
    mutating func tunnelDialogueEnded(provider: PublicKey) {
        if tunnel.consumer?.provider == provider { detachTunnel() }
    }

    // MARK: - Helpers

    private mutating func tunnelAccountOut(_ peer: PublicKey, bytes: Int, now: Instant) {
        tunnel.counters.packetsOut += 1
        tunnel.counters.bytesOut += UInt64(bytes)
        if tunnel.consumer?.provider == peer {
            tunnel.consumer!.account.recordSent(bytes: bytes, now: now)
        } else if tunnel.served[peer] != nil {
            tunnel.served[peer]!.account.recordSent(bytes: bytes, now: now)
            tunnel.served[peer]!.unreportedOut += UInt64(bytes)
            if tunnel.nextAccounting == nil { tunnel.nextAccounting = now + config.tunnel.accountingInterval }
        }
    }

    private mutating func tunnelTooBig(_ packet: UnsafeRawBufferPointer, mtu: Int, into effects: inout [NodeEffect]) {
        tunnelDrop(.tooBig)
        // The reply's source: on the consumer, the tunnel's far end (the provider's gateway
        // address); on the provider, the consumer's inner address the packet was for — not the
        // gateway, which is local there and which the kernel would drop as a martian source when
        // it comes out of the TUN device. Conntrack relates the error to the flow and its
        // masquerade rewrites it on the way out.
        guard let source = tunnel.consumer?.gateway ?? Self.destination(of: packet) else { return }
        var reply = [UInt8](repeating: 0, count: 1280)
        let length = reply.withUnsafeMutableBytes {
            ICMPTooBig.write(for: packet, mtu: mtu, from: source, into: $0)
        }
        guard let length else { return }
        tunnel.counters.icmpTooBigSent += 1
        effects.append(.tunnelPacket(Array(reply.prefix(length))))
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

    private mutating func tunnelDrop(_ reason: TunnelDrop) {
        tunnel.counters.drops[reason, default: 0] += 1
    }
}
