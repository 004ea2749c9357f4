// The control API's JSON documents (docs/api.md). Keys are snake_case on the wire.

import Node
import NodeRuntime
import Sessions
import UmbraCore

public struct StatusReport: Codable, Sendable, Equatable {
    public struct Datagrams: Codable, Sendable, Equatable {
        public var received: UInt64
        public var sent: UInt64
        public var bytesReceived: UInt64
        public var bytesSent: UInt64
    }

    public struct Handshakes: Codable, Sendable, Equatable {
        public var initiated: UInt64
        public var completed: UInt64
        public var cookieRepliesSent: UInt64
    }

    public struct Frames: Codable, Sendable, Equatable {
        public var received: UInt64
        public var rejected: UInt64
        public var pingsSent: UInt64
        public var pongsReceived: UInt64
        public var redials: UInt64
    }

    public var address: String
    public var listen: String
    public var startedAtUnix: Double
    public var uptimeSeconds: Double
    /// Peers the node knows (established, handshaking or idle).
    public var peers: Int
    /// Peers with an authenticated, established session.
    public var sessions: Int
    public var datagrams: Datagrams
    public var handshakes: Handshakes
    public var frames: Frames
    /// Dropped datagrams by reason; every reason is present, zero or not.
    public var dropped: [String: UInt64]
    public var droppedTotal: UInt64
    /// Reachability, reservations, relayed circuits and session paths (RelayReports.swift).
    public var relay: RelayStatusReport?
    /// The tunnel (consumer or provider side), when there is one.
    public var tunnel: TunnelReport?

    public init(_ snapshot: NodeSnapshot) {
        address = snapshot.address.description
        listen = snapshot.listen.description
        startedAtUnix = Double(snapshot.startedAt.nanoseconds) / 1e9
        uptimeSeconds = snapshot.now.since(snapshot.startedAt).seconds
        peers = snapshot.knownPeerCount
        sessions = snapshot.establishedPeerCount
        let counters = snapshot.sessionCounters
        datagrams = Datagrams(
            received: counters.datagramsReceived, sent: counters.datagramsSent, bytesReceived: counters.bytesReceived,
            bytesSent: counters.bytesSent)
        handshakes = Handshakes(
            initiated: counters.handshakesInitiated, completed: counters.handshakesCompleted,
            cookieRepliesSent: counters.cookieRepliesSent)
        let node = snapshot.nodeCounters
        frames = Frames(
            received: node.framesReceived, rejected: node.framesRejected, pingsSent: node.pingsSent,
            pongsReceived: node.pongsReceived, redials: node.redials)
        var dropped: [String: UInt64] = [:]
        for reason in DropReason.allCases { dropped[reason.rawValue] = counters.dropped[reason, default: 0] }
        self.dropped = dropped
        droppedTotal = counters.droppedTotal
    }
}

public struct PeerReport: Codable, Sendable, Equatable {
    public var address: String
    public var endpoint: String?
    public var state: String
    public var bootstrap: Bool
    public var rttMs: Double?
    public var lastHandshakeSecondsAgo: Double?
    public var lastReceivedSecondsAgo: Double?
    public var bytesSent: UInt64
    public var bytesReceived: UInt64

    public init(_ peer: PeerStatus, now: Instant) {
        address = NodeAddress(publicKey: peer.session.publicKey).description
        endpoint = peer.session.path.map(Self.endpointText)
        state = peer.session.state.rawValue
        bootstrap = peer.isBootstrap
        rttMs = peer.rtt.map { $0.seconds * 1000 }
        lastHandshakeSecondsAgo = peer.session.lastHandshake.map { now.since($0).seconds }
        lastReceivedSecondsAgo = peer.session.lastReceived.map { now.since($0).seconds }
        bytesSent = peer.session.bytesSent
        bytesReceived = peer.session.bytesReceived
    }

    /// A peer's path as this report has always shown it: a direct path's endpoint, a relayed path i
    /// as `[100::i]:0` (in the discard-only 100::/64, RFC 6666, so no one takes it for an address).
    static func endpointText(_ path: PeerPath) -> String {
        switch path {
        case .direct(let endpoint):
            endpoint.description
        case .relayed(let id):
            Endpoint(address: .v6(high: 0x0100_0000_0000_0000, low: UInt64(id.index)), port: 0).description
        }
    }
}

public struct PeersReport: Codable, Sendable, Equatable {
    public var peers: [PeerReport]
}

public struct ErrorReport: Codable, Sendable, Equatable {
    public var error: String
}
