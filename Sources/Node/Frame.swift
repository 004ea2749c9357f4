// Frames: what rides inside an authenticated session. One channel byte, then the payload
// (docs/protocol.md §Frames). Later cores (DHT, gossip, dialogue, relay, tunnel) get their own
// channels; a frame on a channel this node does not know is counted and dropped.

import Kademlia
import UmbraCore

/// The first byte of every frame.
public enum FrameChannel: UInt8, Sendable, CaseIterable {
    /// Node-level liveness and RTT probe: `nonce(8)`.
    case ping = 0x01
    /// Answer to a ping, echoing its nonce: `nonce(8)`.
    case pong = 0x02
    /// A Kademlia RPC (request or response): a `DHTMessage`.
    case dht = 0x10
    /// A gossip RPC (`Gossip.GossipMessage`): subscriptions, published messages, IHAVE/IWANT, GRAFT/PRUNE.
    case gossip = 0x20
    /// Proposal join sync (`Proposals.ProposalSyncMessage`): range requests and pages.
    case proposalSync = 0x21
    /// Relay, reachability and hole-punch control (`Relay.RelayMessage`).
    case relay = 0x30
    /// The consumer↔provider dialogue (`Dialogue.DialogueMessage`), inside their end-to-end session.
    case dialogue = 0x40
    /// One IP packet of the tunnel data plane (DESIGN §5): the payload is the packet, as read from
    /// or written to the TUN device. Only between a consumer and the provider serving it.
    case tunnel = 0x50
    /// The ledger (`Ledger.LedgerMessage`): vote requests, votes and refusals between a client and
    /// the members of the epoch's committee.
    case ledger = 0x60
    /// Ledger catch-up (`Ledger.LedgerSyncMessage`): frontier pages and ranges of certified
    /// entries, between any two replicas.
    case ledgerSync = 0x61
}

/// A decoded frame.
public enum Frame: Equatable, Sendable {
    case ping(nonce: UInt64)
    case pong(nonce: UInt64)
    case dht(DHTMessage)
    /// Channels whose payload another core decodes: the node only routes the bytes.
    case opaque(FrameChannel, [UInt8])

    /// Control frames must fit one datagram with room for headers and relaying (DESIGN §3).
    public static let maximumControlSize = 1200

    public func encoded() -> [UInt8] {
        var writer = ByteWriter(capacity: 9)
        switch self {
        case .ping(let nonce):
            writer.write(FrameChannel.ping.rawValue)
            writer.write(nonce)
        case .pong(let nonce):
            writer.write(FrameChannel.pong.rawValue)
            writer.write(nonce)
        case .dht(let message):
            writer.write(FrameChannel.dht.rawValue)
            writer.write(raw: message.encoded())
        case .opaque(let channel, let payload):
            writer.write(channel.rawValue)
            writer.write(raw: payload)
        }
        return writer.bytes
    }

    public init(decoding bytes: [UInt8]) throws(DecodeError) {
        var reader = ByteReader(bytes)
        let channel = try reader.readUInt8()
        switch FrameChannel(rawValue: channel) {
        case .ping: self = .ping(nonce: try reader.readUInt64())
        case .pong: self = .pong(nonce: try reader.readUInt64())
        case .dht:
            self = .dht(try DHTMessage(decoding: reader.readRemaining()))
            return
        case .gossip, .proposalSync, .relay, .dialogue, .tunnel, .ledger, .ledgerSync:
            self = .opaque(FrameChannel(rawValue: channel)!, reader.readRemaining())
            return
        case nil: throw .unknownTag(field: "frame channel", value: UInt64(channel))
        }
        try reader.expectEnd()
    }
}
